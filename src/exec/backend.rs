//! What every action shares: its context (values, events, cancellation, the operator),
//! its result, and its typed error. `engine::perform` routes each action to the code
//! that performs it (local, interactive, or a backend of `crate::backends`).

use std::sync::{Arc, Mutex};

use super::context::Values;
use super::events::{Reporter, RunEvent};
use crate::secret::Redactor;

/// What an action produced: `result` for outputs and `expect`, and output lines for the
/// report.
#[derive(Clone, Debug, Default)]
pub struct ActionResult {
    pub value: serde_json::Value,
    pub lines: Vec<String>,
}

/// What kind of failure an action met: decides whether waiting can heal it (the retry
/// loop) and which exit code a run that ends on it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Connection refused, reset, DNS: the system may come back.
    Unreachable,
    /// The server is there but overloaded or failing (5xx, 429).
    Unavailable,
    /// Someone else changed the object meanwhile: a fresh attempt may succeed.
    Conflict,
    /// A request or wait ran out of time.
    TimedOut,
    /// Credentials rejected or expired; TLS verification failed.
    Unauthorised,
    /// Authenticated but not permitted.
    Forbidden,
    /// The object the step needs does not exist.
    NotFound,
    /// No connection to the system is configured: no kubeconfig or an unknown context,
    /// no Vault address or token, no AWS region or credentials, no ssh client.
    Unconfigured,
    /// The step's own input is wrong (a bad value, a template that does not render).
    Invalid,
    /// The action ran and reported failure (a command's exit status, a failed check):
    /// retried by the step's policy, as a flaky command may pass the next time.
    Failed,
}

impl ErrorKind {
    /// Whether waiting and trying again can change the outcome.
    pub fn is_transient(self) -> bool {
        match self {
            ErrorKind::Unreachable
            | ErrorKind::Unavailable
            | ErrorKind::Conflict
            | ErrorKind::TimedOut
            | ErrorKind::Failed => true,
            ErrorKind::Unauthorised
            | ErrorKind::Forbidden
            | ErrorKind::NotFound
            | ErrorKind::Unconfigured
            | ErrorKind::Invalid => false,
        }
    }

    /// Whether the failure is the system's, not the step's: every step that talks to
    /// the same system meets it too (a rehearsal says it once and names those steps).
    pub fn is_system_wide(self) -> bool {
        matches!(
            self,
            ErrorKind::Unconfigured | ErrorKind::Unreachable | ErrorKind::Unauthorised
        )
    }

    /// An HTTP status's kind (for APIs that answer with one).
    pub fn of_status(code: u16) -> ErrorKind {
        match code {
            401 => ErrorKind::Unauthorised,
            403 => ErrorKind::Forbidden,
            404 | 410 => ErrorKind::NotFound,
            409 | 412 => ErrorKind::Conflict,
            408 | 504 => ErrorKind::TimedOut,
            429 | 500..=599 => ErrorKind::Unavailable,
            400..=499 => ErrorKind::Invalid,
            _ => ErrorKind::Failed,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The action failed; `kind` says whether trying again can help.
    #[error("{message}")]
    Failed { kind: ErrorKind, message: String },
    #[error("cancelled by the operator (Ctrl-C)")]
    Cancelled,
    #[error("timed out after {0}")]
    Timeout(String),
    #[error("{0}")]
    NeedsOperator(String),
    #[error("skipped by the operator")]
    SkippedByOperator,
    #[error("aborted by the operator")]
    AbortedByOperator,
}

impl ActionError {
    /// A failure of the action itself (`ErrorKind::Failed`).
    pub fn failed(message: impl Into<String>) -> Self {
        ActionError::Failed {
            kind: ErrorKind::Failed,
            message: message.into(),
        }
    }

    pub fn of_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        ActionError::Failed {
            kind,
            message: message.into(),
        }
    }

    /// Whether the retry loop may try again: only failures that can heal by waiting.
    /// An operator's decision (Ctrl-C, skip, abort) and a question only they can
    /// answer are never retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            ActionError::Failed { kind, .. } => kind.is_transient(),
            ActionError::Timeout(_) => true,
            ActionError::Cancelled
            | ActionError::NeedsOperator(_)
            | ActionError::SkippedByOperator
            | ActionError::AbortedByOperator => false,
        }
    }
}

/// Sends events to every reporter, redacting every text first.
#[derive(Clone)]
pub struct EventBus {
    reporters: Arc<Mutex<Vec<Box<dyn Reporter>>>>,
    redactor: Redactor,
}

impl EventBus {
    pub fn new(redactor: Redactor) -> Self {
        EventBus {
            reporters: Arc::new(Mutex::new(Vec::new())),
            redactor,
        }
    }

    pub fn add(&self, r: Box<dyn Reporter>) {
        let mut g = match self.reporters.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.push(r);
    }

    pub fn emit(&self, e: RunEvent) {
        let e = self.redact(e);
        let mut g = match self.reporters.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for r in g.iter_mut() {
            r.event(&e);
        }
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// A last line of defence: every string of the event goes through the redactor.
    fn redact(&self, e: RunEvent) -> RunEvent {
        let v = match serde_json::to_value(&e) {
            Ok(v) => v,
            Err(_) => return e,
        };
        let red = self.redactor.redact_json(&v);
        if red == v {
            return e;
        }
        match e {
            RunEvent::StepOutput { id, line } => RunEvent::StepOutput {
                id,
                line: self.redactor.redact(&line),
            },
            RunEvent::StepProgress { id, message } => RunEvent::StepProgress {
                id,
                message: self.redactor.redact(&message),
            },
            RunEvent::Notice { message } => RunEvent::Notice {
                message: self.redactor.redact(&message),
            },
            RunEvent::Problem { step, message } => RunEvent::Problem {
                step,
                message: self.redactor.redact(&message),
            },
            RunEvent::StepStarted {
                index,
                total,
                id,
                title,
                action,
                mutates,
                rendered,
                description,
                cleanup,
            } => RunEvent::StepStarted {
                index,
                total,
                id,
                title: self.redactor.redact(&title),
                action,
                mutates,
                rendered: rendered.iter().map(|l| self.redactor.redact(l)).collect(),
                description: description.map(|d| self.redactor.redact(&d)),
                cleanup,
            },
            RunEvent::StepRetry {
                id,
                attempt,
                attempts,
                error,
                wait_ms,
            } => RunEvent::StepRetry {
                id,
                attempt,
                attempts,
                error: self.redactor.redact(&error),
                wait_ms,
            },
            RunEvent::StepFinished {
                id,
                title,
                started,
                outcome,
                duration_ms,
            } => {
                use super::events::StepOutcome as O;
                let outcome = match outcome {
                    O::Failed { error, fallback } => O::Failed {
                        error: self.redactor.redact(&error),
                        fallback: fallback.map(|f| self.redactor.redact(&f)),
                    },
                    O::Skipped { reason } => O::Skipped {
                        reason: self.redactor.redact(&reason),
                    },
                    O::NeedsOperator { reason } => O::NeedsOperator {
                        reason: self.redactor.redact(&reason),
                    },
                    other => other,
                };
                RunEvent::StepFinished {
                    id,
                    title,
                    started,
                    outcome,
                    duration_ms,
                }
            }
            RunEvent::RunFinished {
                run_id,
                state,
                mode,
                succeeded,
                skipped,
                failed,
                done_before_resume,
                would_run,
                problems,
                caveats,
                skipped_steps,
                report,
            } => RunEvent::RunFinished {
                run_id,
                state,
                mode,
                succeeded,
                skipped,
                failed,
                done_before_resume,
                would_run,
                problems: problems.iter().map(|p| self.redactor.redact(p)).collect(),
                caveats: caveats.iter().map(|p| self.redactor.redact(p)).collect(),
                skipped_steps: skipped_steps
                    .iter()
                    .map(|p| self.redactor.redact(p))
                    .collect(),
                report,
            },
            other => other,
        }
    }
}

/// Cancellation: the number of Ctrl-C presses so far.
#[derive(Clone)]
pub struct Cancel {
    rx: tokio::sync::watch::Receiver<u32>,
    /// Presses that came before this token was made do not count.
    base: u32,
}

impl Cancel {
    pub fn new(rx: tokio::sync::watch::Receiver<u32>) -> Self {
        Cancel { rx, base: 0 }
    }

    /// A token that ignores the presses so far: cleanup after a Ctrl-C still runs, and
    /// only a further Ctrl-C stops it.
    pub fn rebased(&self) -> Self {
        Cancel {
            rx: self.rx.clone(),
            base: *self.rx.borrow(),
        }
    }

    /// A token that is never cancelled (tests, benchmarks).
    pub fn never() -> (tokio::sync::watch::Sender<u32>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(0);
        (tx, Cancel { rx, base: 0 })
    }

    /// Resolves at the first Ctrl-C (at once if one came already).
    pub async fn cancelled(&self) {
        let mut rx = self.rx.clone();
        loop {
            if *rx.borrow_and_update() > self.base {
                return;
            }
            if rx.changed().await.is_err() {
                // The sender is gone: nobody can cancel any more.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What an action may use while it runs.
pub struct ActionCtx<'a> {
    pub step_id: &'a str,
    pub values: &'a Values,
    /// A rehearsal: perform only the read-only half of a mutating action.
    pub dry_run: bool,
    pub bus: &'a EventBus,
    pub cancel: &'a Cancel,
    /// The step's timeout, for actions that wait.
    pub timeout: Option<std::time::Duration>,
    /// The step captures a secret from its output: no output line is shown or kept,
    /// since the secret is only known (and redactable) once captured.
    pub quiet: bool,
    /// Questions to the operator, and showing a secret once.
    pub operator: &'a dyn super::prompt::Operator,
}

impl ActionCtx<'_> {
    pub fn output(&self, line: impl Into<String>) {
        if self.quiet {
            return;
        }
        self.bus.emit(RunEvent::StepOutput {
            id: self.step_id.to_owned(),
            line: line.into(),
        });
    }

    pub fn progress(&self, message: impl Into<String>) {
        self.bus.emit(RunEvent::StepProgress {
            id: self.step_id.to_owned(),
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn only_what_waiting_can_heal_is_retried() {
        let retried = |e: ActionError| e.is_retryable();
        for k in [
            ErrorKind::Unreachable,
            ErrorKind::Unavailable,
            ErrorKind::Conflict,
            ErrorKind::TimedOut,
            ErrorKind::Failed,
        ] {
            assert!(retried(ActionError::of_kind(k, "x")), "{k:?}");
        }
        for k in [
            ErrorKind::Unauthorised,
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::Unconfigured,
            ErrorKind::Invalid,
        ] {
            assert!(!retried(ActionError::of_kind(k, "x")), "{k:?}");
        }
        // What every step of the system meets: said once in a rehearsal.
        assert!(ErrorKind::Unconfigured.is_system_wide());
        assert!(ErrorKind::Unreachable.is_system_wide());
        assert!(!ErrorKind::NotFound.is_system_wide());
        // The operator's decisions and questions only they can answer.
        assert!(!retried(ActionError::Cancelled));
        assert!(!retried(ActionError::SkippedByOperator));
        assert!(!retried(ActionError::AbortedByOperator));
        assert!(!retried(ActionError::NeedsOperator("x".into())));
        assert!(retried(ActionError::Timeout("1m".into())));
    }

    #[test]
    fn http_statuses_have_kinds() {
        assert_eq!(ErrorKind::of_status(401), ErrorKind::Unauthorised);
        assert_eq!(ErrorKind::of_status(403), ErrorKind::Forbidden);
        assert_eq!(ErrorKind::of_status(404), ErrorKind::NotFound);
        assert_eq!(ErrorKind::of_status(409), ErrorKind::Conflict);
        assert_eq!(ErrorKind::of_status(422), ErrorKind::Invalid);
        assert_eq!(ErrorKind::of_status(429), ErrorKind::Unavailable);
        assert_eq!(ErrorKind::of_status(503), ErrorKind::Unavailable);
        assert_eq!(ErrorKind::of_status(504), ErrorKind::TimedOut);
    }
}
