//! A scripted operator for the in-process harness: it answers from a script and records
//! what it was asked and shown.

use std::collections::VecDeque;
use std::sync::Mutex;

use drctl::exec::prompt::{Operator, PromptError};

/// Answers from a script; records what was asked and shown. Unattended (`default()`) it
/// refuses to show a secret and fails the test on a masked question it has no answer for.
#[derive(Default)]
pub struct FakeOperator {
    pub interactive: bool,
    /// Answers to masked questions; `None` is the operator pressing Ctrl-C.
    pub secrets: Mutex<VecDeque<Option<String>>>,
    /// Answers to confirmations; the question's default once they run out.
    pub confirms: Mutex<VecDeque<bool>>,
    /// Answers to plain questions; empty once they run out.
    pub answers: Mutex<VecDeque<String>>,
    pub asked: Mutex<Vec<String>>,
    pub shown: Mutex<Vec<(String, String)>>,
    /// Enter the shown shares back when asked next (after one typo), as a holder would.
    pub echo_shown: bool,
}

impl FakeOperator {
    /// An operator at the keyboard who types `secrets` at the masked questions, in order.
    pub fn new(secrets: &[&str]) -> Self {
        FakeOperator {
            interactive: true,
            secrets: Mutex::new(secrets.iter().map(|s| Some(s.to_string())).collect()),
            ..Default::default()
        }
    }

    /// An operator at the keyboard who answers the confirmations with `confirms`, in order.
    pub fn confirming(confirms: &[bool]) -> Self {
        FakeOperator {
            interactive: true,
            confirms: Mutex::new(confirms.iter().copied().collect()),
            ..Default::default()
        }
    }

    /// Nobody at the keyboard (`--yes`).
    pub fn unattended() -> Self {
        FakeOperator::default()
    }

    pub fn push_secret(&self, s: Option<&str>) {
        self.secrets
            .lock()
            .expect("operator lock")
            .push_back(s.map(str::to_owned));
    }

    /// Every question asked so far, in order.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("operator lock").clone()
    }

    /// Every secret shown once so far: (title, body).
    pub fn shown(&self) -> Vec<(String, String)> {
        self.shown.lock().expect("operator lock").clone()
    }

    fn record(&self, prompt: &str) {
        self.asked
            .lock()
            .expect("operator lock")
            .push(prompt.to_owned());
    }
}

impl Operator for FakeOperator {
    fn interactive(&self) -> bool {
        self.interactive
    }

    fn ask_secret(&self, prompt: &str) -> Result<String, PromptError> {
        self.record(prompt);
        match self.secrets.lock().expect("operator lock").pop_front() {
            Some(Some(s)) => Ok(s),
            Some(None) => Err(PromptError::Aborted),
            None => panic!("unexpected masked question: {prompt}"),
        }
    }

    fn ask(&self, prompt: &str, _default: Option<&str>) -> Result<String, PromptError> {
        self.record(prompt);
        Ok(self
            .answers
            .lock()
            .expect("operator lock")
            .pop_front()
            .unwrap_or_default())
    }

    fn confirm(&self, prompt: &str, default: bool) -> Result<bool, PromptError> {
        self.record(prompt);
        Ok(self
            .confirms
            .lock()
            .expect("operator lock")
            .pop_front()
            .unwrap_or(default))
    }

    fn show_secret_once(&self, title: &str, body: &str) -> Result<(), PromptError> {
        assert!(self.interactive, "shown without an operator: {title}");
        self.shown
            .lock()
            .expect("operator lock")
            .push((title.to_owned(), body.to_owned()));
        if self.echo_shown {
            let mut q = self.secrets.lock().expect("operator lock");
            let shares: Vec<String> = body
                .lines()
                .filter(|l| l.starts_with("New "))
                .filter_map(|l| l.rsplit(' ').next().map(str::to_owned))
                .collect();
            for k in shares.iter().rev() {
                q.push_front(Some(k.clone()));
            }
            q.push_front(Some("AAAA-a-typo-in-the-copy".into()));
        }
        Ok(())
    }
}
