//! Commands for the add-on actions: Velero, Argo CD, External Secrets, Longhorn.

use crate::runbook::Text;
use crate::runbook::action::*;

use super::quote::*;
use super::*;

/// -------------------------------------------------------------------------------
pub(super) fn velero_backups(a: &VeleroBackups, r: &Resolver, out: &mut Vec<String>) {
    let ns = ns_or(r, a.namespace.as_ref(), "velero");
    let mut cmd = format!("velero backup get -n {ns}");
    if let Some(loc) = &a.storage_location {
        let sel = Word::flag("velero.io/storage-location=").then(word(r, loc));
        cmd.push_str(&format!(" -l {}", sel.quoted()));
    }
    if a.require_completed {
        cmd.push_str("  # expect at least one Completed backup; the newest is used");
    }
    out.push(cmd);
}

pub(super) fn velero_restore(a: &VeleroRestore, r: &Resolver, out: &mut Vec<String>) {
    let ns = ns_or(r, a.namespace.as_ref(), "velero");
    let name = a.name.as_ref().map(|n| q(r, n));
    let mut cmd = format!(
        "velero restore create{} -n {ns} --from-backup {}",
        name.as_ref().map(|n| format!(" {n}")).unwrap_or_default(),
        q(r, &a.backup)
    );
    if !a.include_namespaces.is_empty() {
        let mut list = Word::default();
        for (i, n) in a.include_namespaces.iter().enumerate() {
            if i > 0 {
                list = list.then(Word::lit(","));
            }
            list = list.then(word(r, n));
        }
        cmd.push_str(&format!(" --include-namespaces {}", list.quoted()));
    }
    if a.wait {
        cmd.push_str(" --wait");
    }
    out.push(cmd);
    match name {
        Some(n) => out.push(format!("velero restore describe {n} -n {ns} --details")),
        None => out.push(format!(
            "velero restore get -n {ns}  # the new restore is named after the backup: BACKUP-YYYYMMDDHHMMSS"
        )),
    }
    out.push(
        "# PartiallyFailed: read the errors (velero restore logs NAME) and decide before going on"
            .to_owned(),
    );
}

pub(super) fn argocd_apps(a: &ArgocdApps, r: &Resolver, out: &mut Vec<String>) {
    let ns = ns_or(r, a.namespace.as_ref(), "argocd");
    let names: Vec<String> = a.names.iter().map(|n| format!(" {}", q(r, n))).collect();
    out.push(format!("kubectl get {ARGO_APPS}{} -n {ns}", names.concat()));
}

pub(super) fn argocd_wait(a: &ArgocdWait, r: &Resolver, out: &mut Vec<String>, w: &Wait) {
    let ns = ns_or(r, a.namespace.as_ref(), "argocd");
    let which = if a.names.is_empty() {
        " --all".to_owned()
    } else {
        a.names.iter().map(|n| format!(" {}", q(r, n))).collect()
    };
    for (path, value) in [
        ("{.status.sync.status}", "Synced"),
        ("{.status.health.status}", "Healthy"),
    ] {
        out.push(format!(
            "kubectl wait {ARGO_APPS}{which} -n {ns} --for=jsonpath='{path}'={value}{}",
            w.flag()
        ));
    }
}

pub(super) fn argocd_refresh(a: &ArgocdRefresh, r: &Resolver, out: &mut Vec<String>) {
    let ns = ns_or(r, a.namespace.as_ref(), "argocd");
    let name = q(r, &a.name);
    let (mode, flag) = if a.hard {
        ("hard", "--hard-refresh")
    } else {
        ("normal", "--refresh")
    };
    out.push(format!(
        "kubectl patch {ARGO_APPS} {name} -n {ns} --type merge -p '{{\"metadata\":{{\"annotations\":{{\"argocd.argoproj.io/refresh\":\"{mode}\"}}}}}}'"
    ));
    out.push(format!(
        "# or with the argocd CLI: argocd app get {name} {flag}"
    ));
}

pub(super) fn eso_wait(a: &EsoWait, r: &Resolver, out: &mut Vec<String>, w: &Wait) {
    for s in &a.cluster_secret_stores {
        let target = Word::flag("clustersecretstore/").then(word(r, s));
        out.push(format!(
            "kubectl wait {} --for=condition=Ready{}",
            target.quoted(),
            w.flag()
        ));
    }
    if a.external_secrets {
        let scope = a
            .namespace
            .as_ref()
            .map(|n| format!("-n {}", q(r, n)))
            .unwrap_or_else(|| "-A".to_owned());
        out.push(format!(
            "kubectl wait externalsecret --all {scope} --for=condition=Ready{}",
            w.flag()
        ));
    }
}

pub(super) fn longhorn_backups(a: &LonghornBackups, r: &Resolver, out: &mut Vec<String>) {
    let ns = ns_or(r, a.namespace.as_ref(), "longhorn-system");
    let mut cmd = format!("kubectl get backups.longhorn.io -n {ns}");
    if let Some(v) = &a.volume {
        let sel = Word::flag("backup-volume=").then(word(r, v));
        cmd.push_str(&format!(" -l {}", sel.quoted()));
    }
    out.push(cmd);
}

pub(super) fn longhorn_restore(a: &LonghornRestore, r: &Resolver, out: &mut Vec<String>) {
    let ns_word = a
        .namespace
        .as_ref()
        .map(|n| word(r, n))
        .unwrap_or_else(|| Word::lit("longhorn-system"));
    let ns = ns_word.quoted();
    let volumes: Vec<Word> = if a.volumes.is_empty() {
        out.push(format!(
            "kubectl get backupvolumes.longhorn.io -n {ns}  # every volume listed here is restored"
        ));
        vec![Word::hole("<volume>")]
    } else {
        a.volumes.iter().map(|v| word(r, v)).collect()
    };
    for v in &volumes {
        let cols = "-o custom-columns=NAME:.metadata.name,STATE:.status.state,CREATED:.status.snapshotCreatedAt,SIZE:.status.volumeSize,URL:.status.url";
        match &a.backup {
            Some(b) => out.push(format!(
                "kubectl get backups.longhorn.io {} -n {ns} {cols}",
                q(r, b)
            )),
            None => out.push(format!(
                "kubectl get backups.longhorn.io -n {ns} -l {} --sort-by=.status.snapshotCreatedAt {cols}",
                Word::flag("backup-volume=").then(v.clone()).quoted()
            )),
        }
        let manifest = format!(
            "apiVersion: longhorn.io/v1beta2\nkind: Volume\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  fromBackup: \"<backup-url>\"\n  size: \"<volume-size>\"\n  numberOfReplicas: 3\n  frontend: blockdev\n",
            v.plain(),
            ns_word.plain()
        );
        out.push(format!("kubectl apply -f - {}", heredoc(&manifest)));
    }
    out.push(
        "# <backup-url>, <volume-size>: URL and SIZE of the newest Completed backup listed above"
            .to_owned(),
    );
    out.push(
        "# or in the Longhorn UI: Backup > the volume > Restore Latest Backup, keeping the volume name".to_owned(),
    );
}

pub(super) const ARGO_APPS: &str = "applications.argoproj.io";

pub(super) fn ns_or(r: &Resolver, ns: Option<&Text>, default: &str) -> String {
    ns.map(|n| q(r, n)).unwrap_or_else(|| default.to_owned())
}
