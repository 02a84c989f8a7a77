//! The built-in runbooks end to end on the lab, driven through the drctl binary as an
//! operator drives them: a rehearsal on a healthy lab (no problems) and on a broken one
//! (the problem named), a full run with `--yes` checked against the lab's state, and a
//! SIGKILL at a step chosen at random followed by `resume` to the same end state.
//!
//! The drive of a runbook and the crash test are test support (`support/drive.rs`,
//! `support/crash.rs`). The submodules hold the tests, one per area of the lab.

mod cluster_rebuild;
mod etcd;
mod kube;
mod kube_nodes;
mod vault_kms;
mod vault_shamir;

/// Polls the lab until `cond` holds, for at most `deadline`.
pub fn eventually_within(
    deadline: std::time::Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) {
    assert!(
        crate::lab::wait_until(deadline, &mut cond),
        "the lab never reached: {what}"
    );
}
