//! The integration test binary: drives the real `drctl` executable.

mod backend_aws;
mod backend_kube;
mod backend_ssh;
mod backend_vault;
mod cli;
mod e2e;
mod engine;
mod fixtures;
mod fuzz;
mod lab;
mod print;
mod pty;
mod schema;
mod term;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (tests run with it as the working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run drctl with arguments from the repository root, without colour or a user
/// runbook directory from the environment.
pub fn drctl(args: &[&str]) -> Output {
    drctl_in(&root(), args)
}

pub fn drctl_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("DRCTL_RUNBOOKS")
        .env("NO_COLOR", "1")
        .output()
        .expect("drctl binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The thirteen built-in runbooks the seeds call for.
pub const BUILTIN: &[&str] = &[
    "argocd-app-stuck",
    "cluster-rebuild",
    "eso-degraded",
    "etcd-restore",
    "nas-outage",
    "node-destruction-rebuild",
    "node-failure",
    "power-failure-recovery",
    "vault-data-loss",
    "vault-kms-credentials-lost",
    "vault-kms-key-deletion",
    "vault-stuck-sealed",
    "vault-unseal-rotation",
];
