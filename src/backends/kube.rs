//! The kube backend (being built): handles no action yet, so the engine reports its
//! actions as not available in this build.

use crate::exec::backend::{ActionCtx, ActionFuture, Backend};
use crate::runbook::Action;

pub struct KubeBackend;

impl KubeBackend {
    pub fn from_env() -> Self {
        KubeBackend
    }
}

impl Backend for KubeBackend {
    fn name(&self) -> &'static str {
        "kube"
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
