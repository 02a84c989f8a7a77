//! The Kubernetes backend: every `kube.*` action except `kube.use` (the engine's), and the
//! Velero, Argo CD, External Secrets and Longhorn actions, against the API server the
//! run's kubeconfig names. Waits are watches (one per step, resumed after a dropped
//! connection), never polling loops.
//!
//! Submodules: `conn` (connection, error mapping, retries), `resource` (kinds, discovery,
//! field paths, previews), `watch` (the one wait loop), `core` (get, wait, namespace,
//! secret, delete, apply, patch), `workload` (rollouts, logs, port-forward), `addons`
//! (Velero, Argo CD, ESO, Longhorn). They share `KubeError`.

mod addons;
mod conn;
mod core;
#[doc(hidden)]
pub mod fuzz;
mod resource;
mod watch;
mod workload;

use std::sync::Mutex;

use crate::exec::backend::{ActionCtx, ActionError, ActionResult, ErrorKind};
use crate::runbook::Text;
use crate::runbook::action::Sink;
use crate::runbook::action::{
    ArgocdApps, ArgocdRefresh, ArgocdWait, EsoWait, KubeApply, KubeDelete, KubeGet, KubeLogs,
    KubeNamespace, KubePatch, KubePortForward, KubeRolloutRestart, KubeRolloutStatus, KubeSecret,
    KubeWait, LonghornBackups, LonghornRestore, VeleroBackups, VeleroRestore,
};

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "cannot load the Kubernetes connection from {source_of}: {detail}; check KUBECONFIG, --kubeconfig and --context (or the `kube.use` step)"
    )]
    Config { source_of: String, detail: String },
    #[error(
        "cannot reach the Kubernetes API server at {server}: {detail}; check that the cluster is up, the network or VPN to it, and the server address in the kubeconfig"
    )]
    Unreachable { server: String, detail: String },
    #[error(
        "the API server at {server} rejected the credentials ({detail}); the kubeconfig's token or client certificate has probably expired: log in again or fetch a fresh kubeconfig"
    )]
    Credentials { server: String, detail: String },
    #[error(
        "cannot verify the TLS certificate of the API server at {server} ({detail}); {hint}; drctl never falls back to an unverified connection"
    )]
    Tls {
        server: String,
        detail: String,
        hint: &'static str,
    },
    #[error(
        "forbidden: {detail}; the kubeconfig's user lacks the RBAC permission (check with `kubectl auth can-i`), or use a more privileged context"
    )]
    Forbidden { detail: String },
    #[error("{what} not found; check the name and namespace (`kubectl get` it)")]
    NotFound { what: String },
    #[error(
        "conflict on {what}: {detail}; it changed meanwhile (another controller or operator): run the step again"
    )]
    Conflict { what: String, detail: String },
    #[error(
        "the cluster does not serve {kind} ({api_version}): the {component} CRDs are missing; install {component} first, or check that this is the right cluster (`kubectl get crd | grep {group}`)"
    )]
    MissingCrd {
        kind: String,
        api_version: String,
        group: String,
        component: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: the API server answered {code}: {detail}")]
    Api {
        what: String,
        code: u16,
        detail: String,
    },
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    NeedsOperator(String),
    #[error("cancelled")]
    Cancelled,
}

impl From<KubeError> for ActionError {
    fn from(e: KubeError) -> Self {
        let kind = match &e {
            KubeError::Cancelled => return ActionError::Cancelled,
            KubeError::Timeout(s) => return ActionError::Timeout(s.clone()),
            KubeError::NeedsOperator(s) => return ActionError::NeedsOperator(s.clone()),
            KubeError::Config { .. } => ErrorKind::Unconfigured,
            KubeError::Invalid(_) => ErrorKind::Invalid,
            KubeError::Unreachable { .. } => ErrorKind::Unreachable,
            KubeError::Credentials { .. } | KubeError::Tls { .. } => ErrorKind::Unauthorised,
            KubeError::Forbidden { .. } => ErrorKind::Forbidden,
            KubeError::NotFound { .. } | KubeError::MissingCrd { .. } => ErrorKind::NotFound,
            KubeError::Conflict { .. } => ErrorKind::Conflict,
            KubeError::Api { code, .. } => ErrorKind::of_status(*code),
            KubeError::Failed(_) => ErrorKind::Failed,
        };
        ActionError::of_kind(kind, e.to_string())
    }
}

type Result<T, E = KubeError> = std::result::Result<T, E>;

/// Port-forwards opened by `kube.port-forward`, open until the backend is dropped (the end
/// of the run).
#[derive(Default)]
pub struct KubeBackend {
    forwards: Mutex<Vec<workload::Forward>>,
}

impl KubeBackend {
    pub fn from_env() -> Self {
        KubeBackend::default()
    }
}

/// The actions this backend performs: the dispatch in `exec::engine::perform` routes
/// each `Action` variant here, and this enum's match below is exhaustive, so a new kube
/// action does not compile until both places handle it.
pub enum KubeOp<'a> {
    Apply(&'a KubeApply),
    Namespace(&'a KubeNamespace),
    Secret(&'a KubeSecret),
    Delete(&'a KubeDelete),
    Get(&'a KubeGet),
    Wait(&'a KubeWait),
    RolloutRestart(&'a KubeRolloutRestart),
    RolloutStatus(&'a KubeRolloutStatus),
    Patch(&'a KubePatch),
    Logs(&'a KubeLogs),
    PortForward(&'a KubePortForward),
    VeleroBackups(&'a VeleroBackups),
    VeleroRestore(&'a VeleroRestore),
    ArgocdApps(&'a ArgocdApps),
    ArgocdWait(&'a ArgocdWait),
    ArgocdRefresh(&'a ArgocdRefresh),
    EsoWait(&'a EsoWait),
    LonghornBackups(&'a LonghornBackups),
    LonghornRestore(&'a LonghornRestore),
}

impl KubeBackend {
    pub async fn perform(
        &self,
        op: KubeOp<'_>,
        ctx: &ActionCtx<'_>,
    ) -> std::result::Result<ActionResult, ActionError> {
        // Every wait and request ends at the operator's Ctrl-C.
        tokio::select! {
            r = self.run(op, ctx) => r.map_err(ActionError::from),
            _ = ctx.cancel.cancelled() => Err(ActionError::Cancelled),
        }
    }

    async fn run(&self, op: KubeOp<'_>, ctx: &ActionCtx<'_>) -> Result<ActionResult> {
        let mut out = Out::new(ctx);
        // Read at each action: a kubeconfig written by an earlier step is picked up.
        let conn = conn::connect(&ctx.values.kube).await?;
        let value = match op {
            KubeOp::Get(a) => core::get(&conn, a, &mut out).await?,
            KubeOp::Wait(a) => core::wait(&conn, a, &mut out).await?,
            KubeOp::Namespace(a) => core::namespace(&conn, a, &mut out).await?,
            KubeOp::Secret(a) => core::secret(&conn, a, &mut out).await?,
            KubeOp::Delete(a) => core::delete(&conn, a, &mut out).await?,
            KubeOp::Apply(a) => core::apply(&conn, a, &mut out).await?,
            KubeOp::Patch(a) => core::patch(&conn, a, &mut out).await?,
            KubeOp::RolloutRestart(a) => workload::rollout_restart(&conn, a, &mut out).await?,
            KubeOp::RolloutStatus(a) => workload::rollout_status(&conn, a, &mut out).await?,
            KubeOp::Logs(a) => workload::logs(&conn, a, &mut out).await?,
            KubeOp::PortForward(a) => {
                let (value, fwd) = workload::port_forward(&conn, a, &mut out).await?;
                if let Some(f) = fwd {
                    self.forwards
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(f);
                }
                value
            }
            KubeOp::VeleroBackups(a) => addons::velero_backups(&conn, a, &mut out).await?,
            KubeOp::VeleroRestore(a) => addons::velero_restore(&conn, a, &mut out).await?,
            KubeOp::ArgocdApps(a) => addons::argocd_apps(&conn, a, &mut out).await?,
            KubeOp::ArgocdWait(a) => addons::argocd_wait(&conn, a, &mut out).await?,
            KubeOp::ArgocdRefresh(a) => addons::argocd_refresh(&conn, a, &mut out).await?,
            KubeOp::EsoWait(a) => addons::eso_wait(&conn, a, &mut out).await?,
            KubeOp::LonghornBackups(a) => addons::longhorn_backups(&conn, a, &mut out).await?,
            KubeOp::LonghornRestore(a) => addons::longhorn_restore(&conn, a, &mut out).await?,
        };
        Ok(ActionResult {
            value,
            lines: out.lines,
        })
    }
}

/// The action's context plus the output lines it produced (shown live and kept for the
/// journal's excerpt).
pub(crate) struct Out<'a> {
    pub ctx: &'a ActionCtx<'a>,
    pub lines: Vec<String>,
    /// When the action began: a step with several waits shares one timeout.
    pub started: std::time::Instant,
}

impl<'a> Out<'a> {
    fn new(ctx: &'a ActionCtx<'a>) -> Self {
        Out {
            ctx,
            lines: Vec::new(),
            started: std::time::Instant::now(),
        }
    }

    pub fn line(&mut self, s: impl Into<String>) {
        let s = s.into();
        self.ctx.output(s.clone());
        self.lines.push(s);
    }

    pub fn progress(&self, s: impl Into<String>) {
        self.ctx.progress(s);
    }

    pub fn dry_run(&self) -> bool {
        self.ctx.dry_run
    }

    /// A template field shown to the operator (names, namespaces, selectors).
    pub fn shown(&self, t: &Text) -> Result<String> {
        self.ctx
            .values
            .render(t, Sink::Shown)
            .map_err(|e| KubeError::Invalid(e.to_string()))
    }

    pub fn shown_opt(&self, t: &Option<Text>) -> Result<Option<String>> {
        t.as_ref()
            .map(|t| self.shown(t))
            .transpose()
            .map(|o| o.filter(|s| !s.is_empty()))
    }

    /// A template field carried to the cluster without being shown (Secret data).
    pub fn hidden(&self, t: &Text) -> Result<String> {
        self.ctx
            .values
            .render(t, Sink::Hidden)
            .map_err(|e| KubeError::Invalid(e.to_string()))
    }
}
