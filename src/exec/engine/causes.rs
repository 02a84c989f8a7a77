//! A rehearsal's causes: a failure that is the system's (no kubeconfig, the API server
//! unreachable, credentials rejected) is met by every step that talks to that system,
//! and a step that needs an output of a failed step cannot do its part either. Each
//! cause is said once, where it was first met; the steps it blocks are not tried, and
//! the report names them under it.

use std::collections::BTreeMap;
use std::time::Instant;

use super::super::backend::{ActionError, ErrorKind};
use super::super::events::StepOutcome;
use super::super::journal::StepState;
use super::{Engine, EngineError, Flow};
use crate::exec::needs::mentions_output;
use crate::runbook::action::{Action, ActionSpec};
use crate::runbook::model::Output;

/// One cause and the steps it blocked.
pub(super) struct Cause {
    /// The report entry as first written (`step: message`).
    entry: String,
    /// Where the entry is: (caveat list?, index).
    at: (bool, usize),
    blocked: Vec<String>,
}

#[derive(Default)]
pub(super) struct Causes {
    list: Vec<Cause>,
    by_system: BTreeMap<&'static str, usize>,
    /// Outputs of failed or blocked steps: name -> (cause, step that makes it).
    by_output: BTreeMap<String, (usize, String)>,
}

/// The system an action talks to, where one failure there stands for all its steps.
/// SSH and etcd go to hosts named per step: only a missing client counts for all.
fn system_of(action: &Action, kind: Option<ErrorKind>) -> Option<&'static str> {
    let name = action.name();
    let prefix = name.split('.').next().unwrap_or(name);
    match prefix {
        "kube" | "argocd" | "eso" | "velero" | "longhorn" => Some("Kubernetes"),
        "vault" => Some("Vault"),
        "s3" | "kms" => Some("AWS"),
        "ssh" | "etcd" if kind == Some(ErrorKind::Unconfigured) => Some("SSH"),
        _ => None,
    }
}

/// An error's kind, where it has one.
pub(super) fn kind_of(e: &ActionError) -> Option<ErrorKind> {
    match e {
        ActionError::Failed { kind, .. } => Some(*kind),
        ActionError::Timeout(_) => Some(ErrorKind::TimedOut),
        _ => None,
    }
}

impl Engine<'_> {
    /// A rehearsal failure just reported (the last problem or caveat) at `id`: a cause
    /// for the steps after it that talk to the same system or use its outputs.
    pub(super) fn met(
        &mut self,
        action: &Action,
        id: &str,
        outputs: &[Output],
        kind: Option<ErrorKind>,
    ) {
        // Where `problem` put it.
        let caveat = self.opts.dry_run && self.rehearsed_mutation;
        let list = if caveat {
            &self.journal.caveats
        } else {
            &self.journal.problems
        };
        let Some(entry) = list.last().cloned() else {
            return;
        };
        let n = self.causes.list.len();
        self.causes.list.push(Cause {
            entry,
            at: (caveat, list.len() - 1),
            blocked: Vec::new(),
        });
        if kind.is_some_and(ErrorKind::is_system_wide)
            && let Some(system) = system_of(action, kind)
        {
            self.causes.by_system.entry(system).or_insert(n);
        }
        self.outputs_not_made(n, id, outputs);
    }

    /// The outputs of a step that failed or was not tried: what needs them is blocked
    /// by the same cause, and a change that uses them shows a placeholder.
    fn outputs_not_made(&mut self, n: usize, id: &str, outputs: &[Output]) {
        for o in outputs {
            let name = o.name.value.clone();
            self.values.outputs.insert(
                name.clone(),
                minijinja::Value::from(format!(
                    "<{name} from step {id}: not made in this rehearsal>"
                )),
            );
            self.causes.by_output.insert(name, (n, id.to_owned()));
        }
    }

    /// A `kube.use` that worked points the Kubernetes steps at another cluster: what
    /// the earlier one lacked says nothing about it.
    pub(super) fn connection_changed(&mut self, action: &Action) {
        if matches!(action, Action::KubeUse(_)) {
            self.causes.by_system.remove("Kubernetes");
        }
    }

    /// The cause that blocks this step in a rehearsal, and why, if any.
    pub(super) fn blocked_by(&self, action: &Action) -> Option<(usize, String)> {
        if let Some(system) = system_of(action, None)
            && let Some(&n) = self.causes.by_system.get(system)
        {
            return Some((
                n,
                format!("{system} is not usable (see step `{}`)", self.cause_step(n)),
            ));
        }
        let mut texts = Vec::new();
        action.visit_texts(&mut |t, _| texts.push(t.value.as_str()));
        for (name, (n, maker)) in &self.causes.by_output {
            if texts.iter().any(|t| mentions_output(t, name)) {
                return Some((
                    *n,
                    format!("needs output `{name}` of step `{maker}`, which could not run"),
                ));
            }
        }
        None
    }

    fn cause_step(&self, n: usize) -> &str {
        let e = &self.causes.list[n].entry;
        e.split(": ").next().unwrap_or(e)
    }

    /// Not tried in a rehearsal: blocked by cause `n`. Said in one line; the cause's
    /// report entry names it.
    pub(super) fn blocked(
        &mut self,
        id: &str,
        outputs: &[Output],
        (n, reason): (usize, String),
        started: Instant,
    ) -> Result<Flow, EngineError> {
        self.mark(
            id,
            StepState::Skipped,
            Some(format!("rehearsal: not tried, {reason}")),
            Some("--dry-run"),
        )?;
        self.finished(id, StepOutcome::Blocked { reason }, started.elapsed());
        self.outputs_not_made(n, id, outputs);
        self.also_blocks(n, id);
        Ok(Flow::Next)
    }

    /// Name `id` under cause `n` in the report.
    pub(super) fn also_blocks(&mut self, n: usize, id: &str) {
        let cause = &mut self.causes.list[n];
        cause.blocked.push(id.to_owned());
        let text = format!(
            "{} (also blocks: {})",
            cause.entry,
            cause.blocked.join(", ")
        );
        let (caveat, i) = cause.at;
        let list = if caveat {
            &mut self.journal.caveats
        } else {
            &mut self.journal.problems
        };
        if let Some(e) = list.get_mut(i) {
            *e = text;
        }
    }
}
