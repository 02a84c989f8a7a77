//! Running a shell command: the `ssh.run` action, and `Target` (this machine, through
//! `backends::process`, or a host, through `Conn::run`) that the etcd backend shares.

use super::diagnose::{exit_text, last_line, short_command, sudo_problem};
use super::{Conn, Exec, SshError, SshOptions, rehearsed, render, render_user};
use crate::backends::process::{self, Keep, Reading, RunError};
use crate::exec::backend::{ActionCtx, ActionResult};
use crate::runbook::action::{Sink, SshRun};

/// A shell command to run: `script` by `sh`, with `env` exported, optionally under sudo.
pub(crate) struct RunSpec<'a> {
    pub script: &'a str,
    pub env: &'a [(String, String)],
    pub sudo: bool,
    /// Show each output line live.
    pub stream: bool,
}

pub(super) async fn ssh_run(
    opts: &SshOptions,
    a: &SshRun,
    ctx: &ActionCtx<'_>,
) -> Result<ActionResult, SshError> {
    let host = render(ctx, &a.host, Sink::Shown)?;
    let user = render_user(ctx, a.user.as_ref())?;
    let command = render(ctx, &a.command, Sink::Command)?;
    let mut env = Vec::new();
    for (k, v) in &a.env {
        if !is_env_name(k) {
            return Err(SshError::Invalid(format!(
                "env name `{k}` is not a valid shell variable name (letters, digits, `_`, not starting with a digit)"
            )));
        }
        env.push((k.clone(), render(ctx, v, Sink::Hidden)?));
    }
    let conn = Conn::open(opts, &host, user.as_deref(), ctx).await?;
    if ctx.dry_run && a.mutates {
        // The read-only half: the host is reachable with a key, and sudo works.
        let mut lines = vec![format!("connected to {}", conn.describe())];
        if a.sudo {
            conn.check_sudo(ctx).await?;
            lines.push(format!("sudo -n works for {}", conn.user));
        }
        let who = if a.sudo { " as root (sudo)" } else { "" };
        lines.push(format!("would run on {host}{who}:"));
        lines.extend(command.trim_end().lines().map(|l| format!("  {l}")));
        if !env.is_empty() {
            let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
            lines.push(format!(
                "with environment {} (sent over stdin, values not shown)",
                names.join(", ")
            ));
        }
        let value = serde_json::json!({ "host": host, "user": conn.user, "dry_run": true });
        return Ok(rehearsed(conn, ctx, lines, value).await);
    }
    let spec = RunSpec {
        script: &command,
        env: &env,
        sudo: a.sudo,
        stream: true,
    };
    let exec = conn.run(ctx, &spec).await?;
    let user = conn.user.clone();
    conn.close().await;
    let shown = short_command(&command);
    if let Some(e) = sudo_problem(&exec, &host, &user, &shown) {
        return Err(e);
    }
    let value = serde_json::json!({
        "host": host,
        "user": user,
        "exit_code": exec.code,
        "stdout": exec.stdout,
        "stderr": exec.stderr,
    });
    if exec.code == Some(0) {
        return Ok(ActionResult {
            value,
            lines: exec.excerpt,
        });
    }
    Err(SshError::Command(format!(
        "on {host}: `{shown}` failed with {}{}",
        exit_text(exec.code),
        last_line(&exec.stderr, ctx.quiet)
    )))
}

fn is_env_name(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Where a command runs: this machine, or a host over ssh.
pub(crate) enum Target {
    Local,
    Remote(Box<Conn>),
}

impl Target {
    pub(crate) async fn open(
        opts: &SshOptions,
        host: Option<&str>,
        ctx: &ActionCtx<'_>,
    ) -> Result<Target, SshError> {
        match host {
            None => Ok(Target::Local),
            Some(h) => Ok(Target::Remote(Box::new(
                Conn::open(opts, h, None, ctx).await?,
            ))),
        }
    }

    /// The host, or "this machine".
    pub(crate) fn label(&self) -> &str {
        match self {
            Target::Local => "this machine",
            Target::Remote(c) => &c.host,
        }
    }

    pub(crate) fn user(&self) -> String {
        match self {
            Target::Local => local_user(),
            Target::Remote(c) => c.user.clone(),
        }
    }

    pub(crate) async fn run(
        &self,
        ctx: &ActionCtx<'_>,
        spec: &RunSpec<'_>,
    ) -> Result<Exec, SshError> {
        match self {
            Target::Local => run_local(ctx, spec).await,
            Target::Remote(c) => c.run(ctx, spec).await,
        }
    }

    pub(crate) async fn close(self) {
        if let Target::Remote(c) = self {
            c.close().await;
        }
    }
}

fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "the current user".into())
}

/// `spec` on this machine: `sh -c` (under `sudo -n` for sudo), `env` in its environment.
async fn run_local(ctx: &ActionCtx<'_>, spec: &RunSpec<'_>) -> Result<Exec, SshError> {
    let program = if spec.sudo { "sudo" } else { "sh" };
    let mut cmd = process::command(program, &ctx.values.scrub_env);
    if spec.sudo {
        cmd.args(["-n", "sh"]);
    }
    cmd.arg("-c").arg(spec.script);
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    let how = Reading {
        stream: spec.stream,
        keep: Keep::AsWritten,
    };
    process::run(cmd, ctx, None, how)
        .await
        .map_err(|e| match e {
            RunError::Start(e) => {
                SshError::Command(format!("cannot start `{program}` on this machine: {e}"))
            }
            RunError::Cancelled => SshError::Cancelled,
            other => SshError::Command(other.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        assert!(is_env_name("VAULT_TOKEN") && !is_env_name("1X") && !is_env_name("A-B"));
        assert!(is_env_name("_x1") && !is_env_name(""));
    }
}
