//! What the engine tells the world. Reporters (terminal, plain lines, JSON lines, the
//! audit log) consume these; the engine never prints. Every text in an event has already
//! been through the run's redactor.

use serde::Serialize;

use super::journal::{Mode, RunState};

/// How a step ended.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepOutcome {
    Succeeded,
    /// The `check` showed it was already done; the action did not run.
    AlreadyDone,
    Skipped {
        reason: String,
    },
    Failed {
        error: String,
        /// The step's `fallback`: what to do by hand (not shown in a rehearsal).
        #[serde(skip_serializing_if = "Option::is_none")]
        fallback: Option<String>,
    },
    /// A rehearsal: the mutation was shown, not performed.
    WouldRun,
    /// A rehearsal did not try it: a cause met earlier blocks it (its system is not
    /// usable, or an output it needs could not be made); the report lists it there.
    Blocked {
        reason: String,
    },
    /// Waiting for the operator (a manual step under --yes, an interrupted step).
    NeedsOperator {
        reason: String,
    },
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted {
        run_id: String,
        runbook: String,
        title: String,
        mode: Mode,
        steps: usize,
        resumed: bool,
        journal: String,
    },
    /// A note for the operator (a secret passed on the command line, a changed runbook).
    Notice {
        message: String,
    },
    StepStarted {
        index: usize,
        total: usize,
        id: String,
        title: String,
        action: String,
        mutates: bool,
        /// The action as it will be performed, one line each.
        rendered: Vec<String>,
        /// Why the step exists and what it touches (markdown).
        description: Option<String>,
        cleanup: bool,
    },
    /// The step's action begins (after any confirmation).
    StepRunning {
        id: String,
        /// The step's bound, in seconds.
        timeout_secs: Option<u64>,
        /// The step talks to the operator (prompts, a command on the terminal).
        interactive: bool,
    },
    /// A line of a command's output, or a progress message of a wait.
    StepOutput {
        id: String,
        line: String,
    },
    /// A wait's progress, e.g. "12/40 applications synced".
    StepProgress {
        id: String,
        message: String,
    },
    /// Running longer than the runbook's `warn_after`: this milestone is late.
    StepLate {
        id: String,
        elapsed_secs: u64,
        warn_after_secs: u64,
    },
    StepRetry {
        id: String,
        attempt: u32,
        attempts: u32,
        error: String,
        wait_ms: u64,
    },
    StepFinished {
        id: String,
        title: String,
        /// Whether a `StepStarted` came before (skipped steps have none).
        started: bool,
        #[serde(flatten)]
        outcome: StepOutcome,
        duration_ms: u64,
    },
    /// Something a rehearsal found that would stop the real run.
    Problem {
        step: Option<String>,
        message: String,
    },
    CleanupStarted {
        reason: String,
    },
    RunFinished {
        run_id: String,
        state: RunState,
        mode: Mode,
        succeeded: usize,
        skipped: usize,
        failed: usize,
        /// Of `succeeded` and `skipped`, how many an earlier process of this run did
        /// (non-zero only for a resumed run).
        done_before_resume: usize,
        would_run: usize,
        problems: Vec<String>,
        /// Rehearsal findings that may only follow from changes it did not make.
        caveats: Vec<String>,
        /// The steps skipped in this run, each `id: why` (a postmortem wants them named).
        skipped_steps: Vec<String>,
        /// How to see the report.
        report: String,
    },
}

/// Something that consumes events.
pub trait Reporter: Send {
    fn event(&mut self, e: &RunEvent);
}
