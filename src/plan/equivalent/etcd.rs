//! etcdctl/etcdutl commands, run on the control-plane host, for the etcd.* actions.

use crate::runbook::action::*;

use super::quote::*;
use super::ssh::on_host;
use super::*;

pub(super) fn snapshot_status(a: &EtcdSnapshotStatus, r: &Resolver, out: &mut Vec<String>) {
    let snap = q(r, &a.snapshot);
    out.push(on_host(
        r,
        a.host.as_ref(),
        a.sudo,
        &format!("ETCDCTL_API=3 etcdctl snapshot status {snap} -w table"),
    ));
    out.push(format!(
        "# etcd 3.6 moved this to etcdutl: etcdutl snapshot status {snap} -w table"
    ));
}

pub(super) fn snapshot_restore(a: &EtcdSnapshotRestore, r: &Resolver, out: &mut Vec<String>) {
    let snap = q(r, &a.snapshot);
    let data = a
        .data_dir
        .as_ref()
        .map(|d| word(r, d))
        .unwrap_or_else(|| Word::lit("/var/lib/etcd"));
    let restore = a
        .restore_dir
        .as_ref()
        .map(|d| word(r, d))
        .unwrap_or_else(|| data.clone().then(Word::lit("-restore")));
    let restore_flag = Word::flag("--data-dir=").then(restore.clone()).quoted();
    let (data, restore) = (data.quoted(), restore.quoted());
    let host = a.host.as_ref();
    out.push(on_host(
        r,
        host,
        a.sudo,
        &format!("ETCDCTL_API=3 etcdctl snapshot restore {snap} {restore_flag}"),
    ));
    out.push(on_host(r, host, a.sudo, &format!("rm -rf {data}")));
    out.push(on_host(r, host, a.sudo, &format!("mv {restore} {data}")));
    out.push(format!(
        "# etcd 3.6 moved restore to etcdutl: etcdutl snapshot restore {snap} {restore_flag}"
    ));
}
