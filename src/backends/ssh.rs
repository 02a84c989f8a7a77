//! The ssh backend (being built): handles no action yet, so the engine reports its
//! actions as not available in this build.

use crate::exec::backend::{ActionCtx, ActionFuture, Backend};
use crate::runbook::Action;

pub struct SshBackend;

impl SshBackend {
    pub fn from_env() -> Self {
        SshBackend
    }
}

impl Backend for SshBackend {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn handles(&self, _action: &Action) -> bool {
        false
    }

    fn execute<'a>(&'a self, action: &'a Action, _ctx: &'a ActionCtx<'a>) -> ActionFuture<'a> {
        Box::pin(async move {
            Err(crate::exec::backend::ActionError::Unsupported {
                action: action.name(),
            })
        })
    }
}
