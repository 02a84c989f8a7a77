//! The one place every action is routed: local, the operator's, or a backend.

use super::super::backend::{ActionCtx, ActionError, ActionResult, ErrorKind};
use super::super::local;
use crate::backends::Backends;
use crate::runbook::Action;

/// Perform one action: the one place every action is routed, with no catch-all arm, so a
/// new action does not compile until it is routed here (and, in its backend, performed).
/// A backend's future is boxed: inline, this function's future would be as large as the
/// largest of them (an S3 transfer's) and overflow a thread's stack.
pub async fn perform(
    action: &Action,
    ctx: &ActionCtx<'_>,
    backends: &Backends,
) -> Result<ActionResult, ActionError> {
    use crate::backends::aws::AwsOp as A;
    use crate::backends::etcd::EtcdOp as E;
    use crate::backends::kube::KubeOp as K;
    use crate::backends::ssh::SshOp as S;
    use crate::backends::vault::VaultOp as V;
    let (kube, vault, aws) = (&backends.kube, &backends.vault, &backends.aws);
    match action {
        Action::Shell(a) => local::shell(a, ctx).await,
        Action::Sleep(a) => local::sleep(a, ctx).await,
        Action::Http(a) => local::http(a, ctx).await,
        // The engine performs these itself (`Engine::attempts`); here only as a check.
        Action::Manual(_) | Action::Input(_) | Action::Choose(_) | Action::KubeUse(_) => {
            Err(ActionError::of_kind(
                ErrorKind::Invalid,
                format!(
                    "`{}` needs the operator and cannot be used as a check",
                    action.name()
                ),
            ))
        }
        Action::KubeApply(a) => Box::pin(kube.perform(K::Apply(a), ctx)).await,
        Action::KubeNamespace(a) => Box::pin(kube.perform(K::Namespace(a), ctx)).await,
        Action::KubeSecret(a) => Box::pin(kube.perform(K::Secret(a), ctx)).await,
        Action::KubeDelete(a) => Box::pin(kube.perform(K::Delete(a), ctx)).await,
        Action::KubeGet(a) => Box::pin(kube.perform(K::Get(a), ctx)).await,
        Action::KubeWait(a) => Box::pin(kube.perform(K::Wait(a), ctx)).await,
        Action::KubeRolloutRestart(a) => Box::pin(kube.perform(K::RolloutRestart(a), ctx)).await,
        Action::KubeRolloutStatus(a) => Box::pin(kube.perform(K::RolloutStatus(a), ctx)).await,
        Action::KubePatch(a) => Box::pin(kube.perform(K::Patch(a), ctx)).await,
        Action::KubeLogs(a) => Box::pin(kube.perform(K::Logs(a), ctx)).await,
        Action::KubePortForward(a) => Box::pin(kube.perform(K::PortForward(a), ctx)).await,
        Action::VeleroBackups(a) => Box::pin(kube.perform(K::VeleroBackups(a), ctx)).await,
        Action::VeleroRestore(a) => Box::pin(kube.perform(K::VeleroRestore(a), ctx)).await,
        Action::ArgocdApps(a) => Box::pin(kube.perform(K::ArgocdApps(a), ctx)).await,
        Action::ArgocdWait(a) => Box::pin(kube.perform(K::ArgocdWait(a), ctx)).await,
        Action::ArgocdRefresh(a) => Box::pin(kube.perform(K::ArgocdRefresh(a), ctx)).await,
        Action::EsoWait(a) => Box::pin(kube.perform(K::EsoWait(a), ctx)).await,
        Action::LonghornBackups(a) => Box::pin(kube.perform(K::LonghornBackups(a), ctx)).await,
        Action::LonghornRestore(a) => Box::pin(kube.perform(K::LonghornRestore(a), ctx)).await,
        Action::VaultStatus(a) => Box::pin(vault.perform(V::Status(a), ctx)).await,
        Action::VaultWaitUnsealed(a) => Box::pin(vault.perform(V::WaitUnsealed(a), ctx)).await,
        Action::VaultUnseal(a) => Box::pin(vault.perform(V::Unseal(a), ctx)).await,
        Action::VaultInit(a) => Box::pin(vault.perform(V::Init(a), ctx)).await,
        Action::VaultKvPut(a) => Box::pin(vault.perform(V::KvPut(a), ctx)).await,
        Action::VaultKvGet(a) => Box::pin(vault.perform(V::KvGet(a), ctx)).await,
        Action::VaultKvPopulate(a) => Box::pin(vault.perform(V::KvPopulate(a), ctx)).await,
        Action::VaultRekey(a) => Box::pin(vault.perform(V::Rekey(a), ctx)).await,
        Action::VaultRekeyVerify(a) => Box::pin(vault.perform(V::RekeyVerify(a), ctx)).await,
        Action::S3List(a) => Box::pin(aws.perform(A::S3List(a), ctx)).await,
        Action::S3Newest(a) => Box::pin(aws.perform(A::S3Newest(a), ctx)).await,
        Action::S3Download(a) => Box::pin(aws.perform(A::S3Download(a), ctx)).await,
        Action::S3Upload(a) => Box::pin(aws.perform(A::S3Upload(a), ctx)).await,
        Action::KmsDescribe(a) => Box::pin(aws.perform(A::KmsDescribe(a), ctx)).await,
        Action::KmsCancelDeletion(a) => Box::pin(aws.perform(A::KmsCancelDeletion(a), ctx)).await,
        Action::KmsEnable(a) => Box::pin(aws.perform(A::KmsEnable(a), ctx)).await,
        Action::KmsVerify(a) => Box::pin(aws.perform(A::KmsVerify(a), ctx)).await,
        Action::SshRun(a) => Box::pin(backends.ssh.perform(S::Run(a), ctx)).await,
        Action::SshCopy(a) => Box::pin(backends.ssh.perform(S::Copy(a), ctx)).await,
        Action::EtcdSnapshotStatus(a) => {
            Box::pin(backends.etcd.perform(E::SnapshotStatus(a), ctx)).await
        }
        Action::EtcdSnapshotRestore(a) => {
            Box::pin(backends.etcd.perform(E::SnapshotRestore(a), ctx)).await
        }
    }
}

/// Whether a backend performs the action (and so can rehearse it against the live
/// system); everything else is local or the operator's.
pub(super) fn performed_by_backend(action: &Action) -> bool {
    !matches!(
        action,
        Action::Shell(_)
            | Action::Sleep(_)
            | Action::Http(_)
            | Action::Manual(_)
            | Action::Input(_)
            | Action::Choose(_)
            | Action::KubeUse(_)
    )
}
