//! Questions to the operator: confirmations, masked secrets, choices. On a terminal they
//! are dialoguer prompts on stderr; with `--yes` there is nobody to ask, and a question
//! that needs a person stops the run (journalled, resumable) instead of guessing.

use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Input, Password, Select};

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// `--yes` (or no terminal) and the question needs a person.
    #[error("{0}")]
    NoOperator(String),
    #[error("the operator aborted")]
    Aborted,
    #[error("cannot ask on the terminal: {0}")]
    Io(String),
}

impl From<dialoguer::Error> for PromptError {
    fn from(e: dialoguer::Error) -> Self {
        match e {
            dialoguer::Error::IO(io) if io.kind() == std::io::ErrorKind::Interrupted => {
                PromptError::Aborted
            }
            dialoguer::Error::IO(io) => PromptError::Io(io.to_string()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepDecision {
    Run,
    Skip,
    Abort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManualDecision {
    Done,
    Skip,
    Abort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptedDecision {
    Rerun,
    MarkDone,
    Skip,
    Abort,
}

/// What a confirmation shows about a step.
pub struct StepView<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub action: &'a str,
    /// Everything known about the step, for "details".
    pub details: &'a str,
}

/// A question asked of the operator.
pub trait Prompter: Send {
    fn confirm_step(&mut self, step: &StepView<'_>) -> Result<StepDecision, PromptError>;
    fn manual_done(&mut self, step: &StepView<'_>) -> Result<ManualDecision, PromptError>;
    fn interrupted(&mut self, step: &StepView<'_>) -> Result<InterruptedDecision, PromptError>;
    /// A value; `secret` masks it. `default` is offered when not secret.
    fn input(
        &mut self,
        prompt: &str,
        secret: bool,
        default: Option<&str>,
    ) -> Result<String, PromptError>;
    /// One of `options` (value, label); returns the value.
    fn choose(
        &mut self,
        prompt: &str,
        options: &[(String, String)],
        default: Option<&str>,
    ) -> Result<String, PromptError>;
    /// A yes/no question (resume an unfinished run?).
    fn yes_no(&mut self, prompt: &str, default: bool) -> Result<bool, PromptError>;
    /// A line for the operator between questions (why an answer was refused).
    fn tell(&mut self, _line: &str) {}
}

/// How often an answer is asked again before drctl gives up on the prompt.
const MAX_TRIES: usize = 20;

/// Ask until `valid` accepts the answer: an empty or invalid answer is said why, then
/// asked again; it never ends the run (Ctrl-C still does).
pub fn ask_until(
    p: &mut dyn Prompter,
    prompt: &str,
    secret: bool,
    default: Option<&str>,
    valid: &dyn Fn(&str) -> Result<(), String>,
) -> Result<String, PromptError> {
    for _ in 0..MAX_TRIES {
        let v = p.input(prompt, secret, default)?;
        match valid(&v) {
            Ok(()) => return Ok(v),
            Err(why) => p.tell(&format!("  {why}; try again (Ctrl-C aborts)")),
        }
    }
    Err(PromptError::Io(format!(
        "no valid answer after {MAX_TRIES} tries"
    )))
}

/// The usual rule for a secret typed at a prompt.
pub fn secret_answer(v: &str) -> Result<(), String> {
    if v.is_empty() {
        Err("nothing was entered".to_owned())
    } else if v.len() < crate::secret::MIN_SECRET_LEN {
        Err(format!(
            "a secret must be at least {} characters (a shorter one could not be hidden from output)",
            crate::secret::MIN_SECRET_LEN
        ))
    } else {
        Ok(())
    }
}

/// Prompts on the terminal (stderr), with dialoguer.
pub struct TtyPrompter {
    theme: ColorfulTheme,
    term: console::Term,
}

impl Default for TtyPrompter {
    fn default() -> Self {
        TtyPrompter {
            theme: ColorfulTheme::default(),
            term: console::Term::stderr(),
        }
    }
}

impl TtyPrompter {
    fn select(&self, prompt: &str, items: &[&str], default: usize) -> Result<usize, PromptError> {
        Select::with_theme(&self.theme)
            .with_prompt(prompt)
            .items(items)
            .default(default)
            .interact_on_opt(&self.term)?
            .ok_or(PromptError::Aborted)
    }
}

impl Prompter for TtyPrompter {
    fn tell(&mut self, line: &str) {
        let _ = self.term.write_line(line);
    }

    fn confirm_step(&mut self, step: &StepView<'_>) -> Result<StepDecision, PromptError> {
        loop {
            let i = self.select(
                &format!("Run step `{}` ({})?", step.id, step.action),
                &["run", "skip", "abort", "details"],
                0,
            )?;
            match i {
                0 => return Ok(StepDecision::Run),
                1 => return Ok(StepDecision::Skip),
                2 => return Ok(StepDecision::Abort),
                _ => {
                    let _ = self.term.write_line(step.details);
                }
            }
        }
    }

    fn manual_done(&mut self, step: &StepView<'_>) -> Result<ManualDecision, PromptError> {
        loop {
            let i = self.select(
                &format!("Manual step `{}`: is it done?", step.id),
                &["done", "skip", "abort", "details"],
                0,
            )?;
            match i {
                0 => return Ok(ManualDecision::Done),
                1 => return Ok(ManualDecision::Skip),
                2 => return Ok(ManualDecision::Abort),
                _ => {
                    let _ = self.term.write_line(step.details);
                }
            }
        }
    }

    fn interrupted(&mut self, step: &StepView<'_>) -> Result<InterruptedDecision, PromptError> {
        let _ = self.term.write_line(&format!(
            "Step `{}` ({}) was running when drctl stopped: it may have been done in part, in full, or not at all.",
            step.id, step.title
        ));
        loop {
            let i = self.select(
                "What now?",
                &[
                    "re-run it",
                    "mark it done (I checked)",
                    "skip it",
                    "abort",
                    "details",
                ],
                0,
            )?;
            match i {
                0 => return Ok(InterruptedDecision::Rerun),
                1 => return Ok(InterruptedDecision::MarkDone),
                2 => return Ok(InterruptedDecision::Skip),
                3 => return Ok(InterruptedDecision::Abort),
                _ => {
                    let _ = self.term.write_line(step.details);
                }
            }
        }
    }

    fn input(
        &mut self,
        prompt: &str,
        secret: bool,
        default: Option<&str>,
    ) -> Result<String, PromptError> {
        // Empty answers come back to the caller, which says why it asks again.
        if secret {
            return Ok(Password::with_theme(&self.theme)
                .with_prompt(prompt)
                .allow_empty_password(true)
                // No "✔ prompt · ****" line: a refused answer would look accepted.
                .report(false)
                .interact_on(&self.term)?);
        }
        let mut q = Input::<String>::with_theme(&self.theme)
            .with_prompt(prompt)
            .allow_empty(true);
        if let Some(d) = default {
            q = q.default(d.to_owned());
        }
        Ok(q.interact_text_on(&self.term)?)
    }

    fn choose(
        &mut self,
        prompt: &str,
        options: &[(String, String)],
        default: Option<&str>,
    ) -> Result<String, PromptError> {
        let labels: Vec<String> = options
            .iter()
            .map(|(v, l)| {
                if l.is_empty() {
                    v.clone()
                } else {
                    format!("{v}: {l}")
                }
            })
            .collect();
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let d = default
            .and_then(|d| options.iter().position(|(v, _)| v == d))
            .unwrap_or(0);
        let i = self.select(prompt, &refs, d)?;
        options
            .get(i)
            .map(|(v, _)| v.clone())
            .ok_or(PromptError::Aborted)
    }

    fn yes_no(&mut self, prompt: &str, default: bool) -> Result<bool, PromptError> {
        Ok(Confirm::with_theme(&self.theme)
            .with_prompt(prompt)
            .default(default)
            .interact_on(&self.term)?)
    }
}

/// `--yes`: nobody to ask. Mutations proceed; questions that need a person stop the run.
pub struct NoPrompter;

impl Prompter for NoPrompter {
    fn confirm_step(&mut self, _: &StepView<'_>) -> Result<StepDecision, PromptError> {
        Ok(StepDecision::Run)
    }

    fn manual_done(&mut self, step: &StepView<'_>) -> Result<ManualDecision, PromptError> {
        Err(PromptError::NoOperator(format!(
            "manual step `{}` needs the operator: do it, then resume with `--confirm {}` (or run without --yes)",
            step.id, step.id
        )))
    }

    fn interrupted(&mut self, step: &StepView<'_>) -> Result<InterruptedDecision, PromptError> {
        Err(PromptError::NoOperator(format!(
            "step `{}` was interrupted and may be half done; check it, then resume with `--resolve {}=rerun`, `--resolve {}=done` or `--resolve {}=skip`",
            step.id, step.id, step.id, step.id
        )))
    }

    fn input(&mut self, prompt: &str, _: bool, _: Option<&str>) -> Result<String, PromptError> {
        Err(PromptError::NoOperator(format!(
            "no value for \"{prompt}\" and --yes asks nothing; give it with --set"
        )))
    }

    fn choose(
        &mut self,
        prompt: &str,
        _: &[(String, String)],
        _: Option<&str>,
    ) -> Result<String, PromptError> {
        Err(PromptError::NoOperator(format!(
            "no answer for \"{prompt}\" and --yes asks nothing; give it with --set"
        )))
    }

    fn yes_no(&mut self, _: &str, default: bool) -> Result<bool, PromptError> {
        Ok(default)
    }
}

/// What a backend may ask of the operator while its action runs (a key share, a
/// confirmation), and the one way to show a secret: once, on the terminal itself, never
/// through the reporters, the journal or the audit log.
pub trait Operator {
    /// Whether a person is at the keyboard.
    fn interactive(&self) -> bool;
    /// A masked answer; it is added to the run's redactor at once.
    fn ask_secret(&self, prompt: &str) -> Result<String, PromptError>;
    fn ask(&self, prompt: &str, default: Option<&str>) -> Result<String, PromptError>;
    fn confirm(&self, prompt: &str, default: bool) -> Result<bool, PromptError>;
    /// Show secret text once on the controlling terminal (`/dev/tty`), then wait for the
    /// operator to say it is stored. Fails when there is no terminal.
    fn show_secret_once(&self, title: &str, body: &str) -> Result<(), PromptError>;
}

/// The engine's operator: the run's prompter behind a lock, and its redactor.
pub struct PromptOperator<'a> {
    pub prompter: &'a std::sync::Mutex<Box<dyn Prompter>>,
    pub interactive: bool,
    pub redactor: &'a crate::secret::Redactor,
}

impl PromptOperator<'_> {
    fn with<T>(&self, f: impl FnOnce(&mut dyn Prompter) -> T) -> T {
        let mut g = match self.prompter.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(g.as_mut())
    }
}

impl Operator for PromptOperator<'_> {
    fn interactive(&self) -> bool {
        self.interactive
    }

    fn ask_secret(&self, prompt: &str) -> Result<String, PromptError> {
        let v = self.with(|p| ask_until(p, prompt, true, None, &secret_answer))?;
        self.redactor.add(&v);
        Ok(v)
    }

    fn ask(&self, prompt: &str, default: Option<&str>) -> Result<String, PromptError> {
        self.with(|p| p.input(prompt, false, default))
    }

    fn confirm(&self, prompt: &str, default: bool) -> Result<bool, PromptError> {
        self.with(|p| p.yes_no(prompt, default))
    }

    fn show_secret_once(&self, title: &str, body: &str) -> Result<(), PromptError> {
        use std::io::Write as _;
        if !self.interactive {
            return Err(PromptError::NoOperator(format!(
                "{title}: secrets are shown once on a terminal, and there is none (or --yes); run this step interactively"
            )));
        }
        let mut tty = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/tty")
            .map_err(|e| PromptError::Io(format!("cannot open the terminal: {e}")))?;
        let rule = "=".repeat(72);
        writeln!(tty, "\n{rule}\n{title}\n{rule}\n{body}\n{rule}")
            .map_err(|e| PromptError::Io(e.to_string()))?;
        loop {
            let stored = self.with(|p| {
                p.yes_no(
                    "Stored safely (password manager / offline copy)? The values are not shown again",
                    false,
                )
            })?;
            if stored {
                break;
            }
        }
        // Scroll the secret off the screen's visible part.
        writeln!(tty, "{}", "\n".repeat(60)).map_err(|e| PromptError::Io(e.to_string()))?;
        Ok(())
    }
}
