//! The command an operator would type for each action (kubectl, vault, aws, ssh,
//! etcdctl, velero), so a printed checklist works when drctl cannot run; one file per
//! family of actions.
//!
//! Every template value is filled in by the resolver and shell-quoted; the `<name>`
//! placeholders the resolver shows for secrets and unknown values stay bare so the
//! operator sees exactly what to replace. An entry may span lines (heredocs); lines
//! starting with `#` are notes.

mod addons;
mod aws;
mod etcd;
mod kube;
mod local;
mod quote;
mod ssh;
mod vault;

use std::time::Duration;

use crate::runbook::Action;

pub use super::resolver::Resolver;

/// Command lines equivalent to the action, one per entry, without the step's timeout.
pub fn commands(action: &Action, r: &Resolver) -> Vec<String> {
    commands_with_timeout(action, r, None)
}

/// The step's timeout, for the commands that wait (`kubectl wait --timeout`...).
pub(crate) struct Wait(Option<Duration>);

impl Wait {
    /// ` --timeout=DURATION`, or nothing when the step has no timeout.
    pub(crate) fn flag(&self) -> String {
        self.0
            .map(|t| format!(" --timeout={}", go_duration(t)))
            .unwrap_or_default()
    }
}

/// Command lines equivalent to the action; `timeout` (the step's) bounds the commands
/// that wait (`kubectl wait --timeout`, `kubectl rollout status --timeout`...).
pub fn commands_with_timeout(
    action: &Action,
    r: &Resolver,
    timeout: Option<Duration>,
) -> Vec<String> {
    let w = Wait(timeout);
    let mut out = Vec::new();
    // One arm per action, no catch-all: a new action does not compile until it is
    // described here.
    match action {
        // The instructions and the question are printed with the step itself.
        Action::Manual(_) | Action::Input(_) | Action::Choose(_) => {}
        Action::Shell(a) => local::shell(a, r, &mut out),
        Action::Sleep(a) => local::sleep(a, &mut out),
        Action::Http(a) => local::http(a, r, &mut out),
        Action::KubeApply(a) => kube::apply(a, r, &mut out),
        Action::KubeUse(a) => kube::use_(a, r, &mut out),
        Action::KubeNamespace(a) => kube::namespace(a, r, &mut out),
        Action::KubeSecret(a) => kube::secret(a, r, &mut out),
        Action::KubeDelete(a) => kube::delete(a, r, &mut out, &w),
        Action::KubeGet(a) => kube::get(a, r, &mut out),
        Action::KubeWait(a) => kube::wait(a, r, &mut out, &w),
        Action::KubeRolloutRestart(a) => kube::rollout_restart(a, r, &mut out),
        Action::KubeRolloutStatus(a) => kube::rollout_status(a, r, &mut out, &w),
        Action::KubePatch(a) => kube::patch(a, r, &mut out),
        Action::KubeLogs(a) => kube::logs(a, r, &mut out),
        Action::KubePortForward(a) => kube::port_forward(a, r, &mut out),
        Action::VaultStatus(a) => vault::status(a, r, &mut out),
        Action::VaultWaitUnsealed(a) => vault::wait_unsealed(a, r, &mut out, &w),
        Action::VaultUnseal(a) => vault::unseal(a, r, &mut out),
        Action::VaultInit(a) => vault::init(a, r, &mut out),
        Action::VaultKvPut(a) => vault::kv_put(a, r, &mut out),
        Action::VaultKvGet(a) => vault::kv_get(a, r, &mut out),
        Action::VaultKvPopulate(a) => vault::kv_populate(a, r, &mut out),
        Action::VaultRekey(a) => vault::rekey(a, r, &mut out),
        Action::VaultRekeyVerify(a) => vault::rekey_verify(a, r, &mut out),
        Action::S3List(a) => aws::s3_list(a, r, &mut out),
        Action::S3Newest(a) => aws::s3_newest(a, r, &mut out),
        Action::S3Download(a) => aws::s3_download(a, r, &mut out),
        Action::S3Upload(a) => aws::s3_upload(a, r, &mut out),
        Action::KmsDescribe(a) => aws::kms_describe(a, r, &mut out),
        Action::KmsCancelDeletion(a) => aws::kms_cancel_deletion(a, r, &mut out),
        Action::KmsEnable(a) => aws::kms_enable(a, r, &mut out),
        Action::KmsVerify(a) => aws::kms_verify(a, r, &mut out),
        Action::SshRun(a) => ssh::run(a, r, &mut out),
        Action::SshCopy(a) => ssh::copy(a, r, &mut out),
        Action::EtcdSnapshotStatus(a) => etcd::snapshot_status(a, r, &mut out),
        Action::EtcdSnapshotRestore(a) => etcd::snapshot_restore(a, r, &mut out),
        Action::VeleroBackups(a) => addons::velero_backups(a, r, &mut out),
        Action::VeleroRestore(a) => addons::velero_restore(a, r, &mut out),
        Action::ArgocdApps(a) => addons::argocd_apps(a, r, &mut out),
        Action::ArgocdWait(a) => addons::argocd_wait(a, r, &mut out, &w),
        Action::ArgocdRefresh(a) => addons::argocd_refresh(a, r, &mut out),
        Action::EsoWait(a) => addons::eso_wait(a, r, &mut out, &w),
        Action::LonghornBackups(a) => addons::longhorn_backups(a, r, &mut out),
        Action::LonghornRestore(a) => addons::longhorn_restore(a, r, &mut out),
    }
    out
}

/// `--timeout` for kubectl: Go's duration syntax has no days.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests;
