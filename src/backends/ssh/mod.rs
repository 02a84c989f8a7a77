//! The ssh backend: `ssh.run` and `ssh.copy` through the operator's own `ssh` client, so
//! `~/.ssh/config` (Include, Match, ProxyJump), the agent and known_hosts behave exactly as
//! on the command line. drctl starts one ssh master per action (`ssh -M -N`, a child of
//! drctl, killed with it) and opens the action's commands over it with the `openssh`
//! crate's native mux client.
//!
//! Always: `StrictHostKeyChecking=yes` (an unknown or changed host key stops the step,
//! with the fingerprint) and `BatchMode=yes` (no password prompt ever waits on a tired
//! operator). `DRCTL_SSH_CONFIG` names an ssh config file used instead of
//! `~/.ssh/config` (`ssh -F`), for the lab and tests.
//!
//! Remote commands run under a small fixed `sh` bootstrap that reads the environment
//! (secrets) and the command from stdin, never from argv, then keeps watching stdin: when
//! drctl closes it (timeout, Ctrl-C, drctl or the connection dying), the bootstrap stops
//! the remote command's whole process group.
//!
//! Submodules: `conn` (the master connection, ssh's argv and config, commands over the
//! connection), `run` (`ssh.run`, and `Target`: this machine or a host, shared with the
//! etcd backend), `copy` (`ssh.copy`), `diagnose` (ssh and sudo failures as clear errors).
//! Local commands run through `backends::process`.

mod conn;
mod copy;
mod diagnose;
#[doc(hidden)]
pub mod fuzz;
mod run;

use std::path::PathBuf;

use crate::exec::backend::{ActionCtx, ActionError, ActionResult, ErrorKind};
use crate::runbook::action::Sink;
use crate::runbook::action::{SshCopy, SshRun};

use self::conn::Conn;

pub(crate) use self::diagnose::{exit_text, last_line, sudo_problem};
pub(crate) use self::run::{RunSpec, Target};
pub(crate) use crate::backends::process::Exec;

/// An ssh config file used instead of `~/.ssh/config` (passed as `ssh -F`).
pub const CONFIG_ENV: &str = "DRCTL_SSH_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "cannot start the OpenSSH client `ssh` on this machine ({0}); install it (Debian: openssh-client)"
    )]
    NoClient(String),
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    HostKey(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Sudo(String),
    #[error("{0}")]
    Command(String),
    #[error("{0}")]
    Copy(String),
    #[error("cancelled by the operator (Ctrl-C)")]
    Cancelled,
}

impl From<SshError> for ActionError {
    fn from(e: SshError) -> Self {
        match e {
            SshError::Cancelled => ActionError::Cancelled,
            other => {
                let kind = match &other {
                    SshError::NoClient(_) => ErrorKind::Unconfigured,
                    SshError::Invalid(_) => ErrorKind::Invalid,
                    SshError::Connect(_) => ErrorKind::Unreachable,
                    // A changed host key or refused key: never tried again unattended.
                    SshError::HostKey(_) | SshError::Auth(_) => ErrorKind::Unauthorised,
                    SshError::Sudo(_) => ErrorKind::Forbidden,
                    SshError::Command(_) | SshError::Copy(_) | SshError::Cancelled => {
                        ErrorKind::Failed
                    }
                };
                ActionError::of_kind(kind, other.to_string())
            }
        }
    }
}

/// How drctl reaches hosts, from the environment.
#[derive(Clone, Debug, Default)]
pub struct SshOptions {
    /// `DRCTL_SSH_CONFIG`: an ssh config file used instead of `~/.ssh/config`.
    pub config: Option<PathBuf>,
}

impl SshOptions {
    pub fn from_env() -> Self {
        SshOptions {
            config: std::env::var_os(CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
}

pub struct SshBackend {
    opts: SshOptions,
}

impl SshBackend {
    pub fn from_env() -> Self {
        SshBackend::new(SshOptions::from_env())
    }

    pub fn new(opts: SshOptions) -> Self {
        SshBackend { opts }
    }

    pub async fn perform(
        &self,
        op: SshOp<'_>,
        ctx: &ActionCtx<'_>,
    ) -> Result<ActionResult, ActionError> {
        match op {
            SshOp::Run(a) => run::ssh_run(&self.opts, a, ctx).await.map_err(Into::into),
            SshOp::Copy(a) => copy::ssh_copy(&self.opts, a, ctx).await.map_err(Into::into),
        }
    }
}

/// The actions this backend performs (routed here by `exec::engine::perform`).
pub enum SshOp<'a> {
    Run(&'a SshRun),
    Copy(&'a SshCopy),
}

fn render(ctx: &ActionCtx<'_>, t: &crate::runbook::Text, sink: Sink) -> Result<String, SshError> {
    ctx.values
        .render(t, sink)
        .map_err(|e| SshError::Invalid(e.to_string()))
}

/// The step's `user`, rendered.
fn render_user(
    ctx: &ActionCtx<'_>,
    user: Option<&crate::runbook::Text>,
) -> Result<Option<String>, SshError> {
    user.map(|u| render(ctx, u, Sink::Shown)).transpose()
}

/// A rehearsal's report: shows `lines`, closes the connection.
async fn rehearsed(
    conn: Conn,
    ctx: &ActionCtx<'_>,
    lines: Vec<String>,
    value: serde_json::Value,
) -> ActionResult {
    for l in &lines {
        ctx.output(l.clone());
    }
    conn.close().await;
    ActionResult { value, lines }
}
