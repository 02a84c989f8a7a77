//! The plan stage: a validated runbook compiled, with its inputs, into what each step
//! will do: a stable fingerprint (resume tells a changed step from an unchanged one) and
//! the commands a person would type for it (print, the run's step view, dry-run).
//! Pure and synchronous; the engine executes a plan and print renders one.

pub mod equivalent;
pub mod fingerprint;
pub mod resolver;

pub use fingerprint::{describe_changes, fingerprint, step_fingerprint};
pub use resolver::Resolver;

use std::collections::BTreeMap;

use crate::runbook::{Runbook, Step};

/// A runbook compiled for one run or one printout. Immutable once built.
pub struct Plan<'rb> {
    pub runbook: &'rb Runbook,
    /// Hash of the runbook's source text: an unchanged file resumes without questions.
    pub fingerprint: String,
    /// Templates filled with the inputs known now (`--set`, defaults); secrets, outputs
    /// and unknown inputs as `<name>` placeholders.
    pub resolver: Resolver,
    /// The inputs given with `--set` (not secrets: those are never given on a command line).
    pub sets: BTreeMap<String, String>,
    pub steps: Vec<PlannedStep<'rb>>,
    pub cleanup: Vec<PlannedStep<'rb>>,
}

/// One step of a plan.
pub struct PlannedStep<'rb> {
    pub step: &'rb Step,
    /// Stable hash of the step's meaning (see `fingerprint::step_fingerprint`).
    pub fingerprint: String,
    /// What a person would type for the action, with the values known at plan time.
    pub commands: Vec<String>,
    /// The same for the step's `check`.
    pub check: Vec<String>,
}

impl<'rb> Plan<'rb> {
    /// Compile a validated runbook; `source` is its text, `sets` the inputs given now.
    pub fn compile(rb: &'rb Runbook, source: &str, sets: &BTreeMap<String, String>) -> Self {
        let resolver = Resolver::new(rb, sets);
        let planned = |step: &'rb Step| PlannedStep {
            step,
            fingerprint: step_fingerprint(step),
            commands: equivalent::commands(&step.action, &resolver),
            check: step
                .check
                .as_ref()
                .map(|c| equivalent::commands(&c.action, &resolver))
                .unwrap_or_default(),
        };
        let steps = rb.main_steps().map(planned).collect();
        let cleanup = rb.cleanup.iter().map(planned).collect();
        Plan {
            runbook: rb,
            fingerprint: fingerprint(source),
            resolver,
            sets: sets.clone(),
            steps,
            cleanup,
        }
    }

    /// The planned step with this id (main steps, then cleanup).
    pub fn step(&self, id: &str) -> Option<&PlannedStep<'rb>> {
        self.steps
            .iter()
            .chain(self.cleanup.iter())
            .find(|p| p.step.id.value == id)
    }

    /// `(id, fingerprint)` of the main steps, as a journal records them.
    pub fn fingerprints(&self) -> Vec<(String, String)> {
        self.steps
            .iter()
            .map(|p| (p.step.id.value.clone(), p.fingerprint.clone()))
            .collect()
    }
}
