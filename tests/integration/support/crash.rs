//! The crash test of a runbook: `drctl run --yes`, SIGKILL at a step chosen from a seed
//! (printed; `DRCTL_E2E_SEED` replays one), then what an operator does by drctl's messages
//! until the run ends: resume, answer the steps left interrupted, and whatever else the
//! runbook's situation asks for ([`Recovery`]). Then every non-idempotent mutating step
//! must have been performed once (twice only when the operator said to re-run it).

use std::collections::BTreeMap;

use drctl::runbook::ActionSpec;
use serde_json::Value;

use super::cli::{Background, journal};
use super::drive::{Drive, Outcome, builtin};
use super::process::signal;

/// Where the crash test killed drctl (whether mid-step, and what the operator did after,
/// are printed), and how the run ended after resuming.
#[derive(Debug)]
pub struct Crash {
    pub seed: u64,
    pub step: String,
    /// Every drctl process after the SIGKILL.
    pub outcomes: Vec<Outcome>,
    /// The run's journal at the end.
    pub journal: Value,
}

impl Crash {
    /// The last drctl process, which ended the run.
    pub fn outcome(&self) -> &Outcome {
        self.outcomes.last().expect("an outcome")
    }
}

/// What the operator does after a resume that did not end the run.
pub enum Remedy {
    /// Resume again (the operator changed something: what, for the record).
    Resume(String),
    /// The operator started a new run in its place (what, and how that run ended).
    NewRun(String, Outcome),
}

/// How an operator brings a killed run to its end.
pub trait Recovery {
    /// The answer to a step drctl left interrupted: `rerun`, `done` or `skip`, as an
    /// operator who looked at the system would give it.
    fn resolve(&self, step: &str) -> String;

    /// How many drctl processes after the first resume the operator may need.
    fn rounds(&self) -> usize {
        3
    }

    /// Environment for the next resume (what the operator gives drctl again).
    fn env(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// A resume that neither ended the run nor waits for an answer: what the operator does
    /// (None: nothing; the crash test then fails with what happened).
    fn remedy(&mut self, _d: &Drive, _last: &Outcome) -> Option<Remedy> {
        None
    }

    /// Attempts of the non-idempotent `step` that reached no system (they failed before
    /// their action), allowed on top of the one.
    fn spared(&self, _step: &str, _outcomes: &[Outcome]) -> u64 {
        0
    }
}

/// An operator who only answers interrupted steps.
struct Answers<'a>(&'a dyn Fn(&str) -> String);

impl Recovery for Answers<'_> {
    fn resolve(&self, step: &str) -> String {
        (self.0)(step)
    }
}

impl Drive {
    /// The crash test with an operator who answers interrupted steps by `resolve`.
    pub fn crash_and_resume(&self, steps: &[String], resolve: &dyn Fn(&str) -> String) -> Crash {
        self.crash_and_recover(steps, &mut Answers(resolve))
    }

    /// Run with `--yes`, SIGKILL drctl at one of `steps` (chosen from the seed), then let
    /// `operator` bring the run to its end. Fails unless the run ends successfully with
    /// every non-idempotent mutating step performed once (twice for a step the operator
    /// said to re-run, more for attempts `operator` spares).
    pub fn crash_and_recover(&self, steps: &[String], operator: &mut dyn Recovery) -> Crash {
        assert!(!steps.is_empty(), "no step to crash at");
        let seed = seed();
        let n = steps.len() as u64;
        let step = steps[(seed % n) as usize].clone();
        let mid_step = (seed / n).is_multiple_of(2);
        eprintln!(
            "e2e {}: SIGKILL {} `{step}` (seed {seed}; replay with DRCTL_E2E_SEED={seed})",
            self.runbook,
            if mid_step {
                "while running"
            } else {
                "right after"
            }
        );
        let mut cmd = self.command();
        cmd.args(self.run_args(&["run", &self.runbook]));
        let mut bg = Background::spawn(cmd);
        let started = bg.until("run_started", |e| e["event"] == "run_started");
        let mut run_id = started["run_id"].as_str().expect("a run id").to_owned();
        let target = step.clone();
        bg.until(&format!("step `{step}`"), move |e| {
            let ev = if mid_step {
                "step_running"
            } else {
                "step_finished"
            };
            e["event"] == ev && e["id"] == target.as_str()
        });
        signal(bg.pid(), libc::SIGKILL);
        let (status, _, _) = bg.finish();
        assert_eq!(status, None, "drctl was killed by the signal");

        let mut resolved: Vec<String> = Vec::new();
        let mut actions: Vec<String> = Vec::new();
        let mut outcomes = vec![self.resume_with(&run_id, &resolved, &operator.env())];
        for _ in 0..operator.rounds() {
            let last = outcomes.last().expect("an outcome");
            if last.code == 0 {
                break;
            }
            let waiting = last.interrupted();
            if last.code == 4 && !waiting.is_empty() {
                for id in waiting {
                    let answer = operator.resolve(&id);
                    resolved.push(format!("{id}={answer}"));
                    actions.push(format!("resolve {id}={answer}"));
                }
            } else {
                match operator.remedy(self, last) {
                    Some(Remedy::Resume(what)) => actions.push(what),
                    Some(Remedy::NewRun(what, o)) => {
                        actions.push(what);
                        run_id = o.run_id();
                        resolved.clear();
                        outcomes.push(o);
                        continue;
                    }
                    None => break,
                }
            }
            outcomes.push(self.resume_with(&run_id, &resolved, &operator.env()));
        }
        let what = format!("SIGKILL at `{step}` (seed {seed}, {actions:?})");
        outcomes
            .last()
            .expect("an outcome")
            .assert_ok(&format!("recovery after {what}"));
        eprintln!(
            "e2e {}: crash at `{step}` (mid-step {mid_step}), then {actions:?}",
            self.runbook
        );
        let journal = journal(self.state(), &run_id);
        for (id, _) in non_idempotent_mutations(&self.runbook) {
            let rec = journal["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["id"] == id.as_str());
            let attempts = rec.and_then(|r| r["attempts"].as_u64()).unwrap_or(0);
            let rerun = resolved.iter().any(|r| r == &format!("{id}=rerun"));
            let allowed = 1 + u64::from(rerun) + operator.spared(&id, &outcomes);
            assert!(
                attempts <= allowed,
                "the non-idempotent step `{id}` ran {attempts} times after {what}: {rec:#?}"
            );
        }
        Crash {
            seed,
            step,
            outcomes,
            journal,
        }
    }
}

/// The crash test's seed: `DRCTL_E2E_SEED`, or from the clock.
fn seed() -> u64 {
    if let Some(s) = std::env::var("DRCTL_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    u64::from(nanos) ^ u64::from(std::process::id()).rotate_left(17)
}

/// The mutating steps of a built-in runbook that are neither idempotent nor guarded by a
/// `check`: re-running them after a crash would do the change twice.
pub fn non_idempotent_mutations(runbook: &str) -> BTreeMap<String, String> {
    builtin(runbook)
        .main_steps()
        .filter(|s| s.action.mutates() && !s.idempotent && s.check.is_none())
        .map(|s| (s.id.to_string(), s.title.clone()))
        .collect()
}
