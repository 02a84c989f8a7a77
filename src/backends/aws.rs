//! The aws backend (being built): handles no action yet, so the engine reports its
//! actions as not available in this build.

use crate::exec::backend::{ActionCtx, ActionFuture, Backend};
use crate::runbook::Action;

pub struct AwsBackend;

impl AwsBackend {
    pub fn from_env() -> Self {
        AwsBackend
    }
}

impl Backend for AwsBackend {
    fn name(&self) -> &'static str {
        "aws"
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
