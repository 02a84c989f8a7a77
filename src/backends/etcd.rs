//! The etcd backend (being built): handles no action yet, so the engine reports its
//! actions as not available in this build.

use crate::exec::backend::{ActionCtx, ActionFuture, Backend};
use crate::runbook::Action;

pub struct EtcdBackend;

impl EtcdBackend {
    pub fn from_env() -> Self {
        EtcdBackend
    }
}

impl Backend for EtcdBackend {
    fn name(&self) -> &'static str {
        "etcd"
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
