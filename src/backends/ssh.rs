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
//! `Target` (this machine or a host) is shared with the etcd backend.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio as StdStdio;
use std::time::{Duration, Instant};

use openssh::{Session, Stdio};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backends::process::{self, Keep, Reading, RunError};
use crate::exec::backend::{ActionCtx, ActionError, ActionFuture, ActionResult, Backend};
use crate::runbook::Action;
use crate::runbook::action::{CopyDirection, Sink, SshCopy, SshRun};
use crate::runbook::template::shell_quote;

/// An ssh config file used instead of `~/.ssh/config` (passed as `ssh -F`).
pub const CONFIG_ENV: &str = "DRCTL_SSH_CONFIG";

/// How long connecting (TCP, host key, authentication) may take at most.
const CONNECT_LIMIT: Duration = Duration::from_secs(120);
/// Copy buffer; also the granularity of cancellation while copying.
const CHUNK: usize = 256 * 1024;

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
            other => ActionError::Failed(other.to_string()),
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

    /// `ssh` with `-F` when a config file is set, and the scrubbed environment.
    fn command(&self, scrub: &[String]) -> tokio::process::Command {
        let mut c = process::command("ssh", scrub);
        if let Some(cfg) = &self.config {
            c.arg("-F").arg(cfg);
        }
        c
    }

    fn check_config(&self) -> Result<(), SshError> {
        match &self.config {
            Some(p) if !p.is_file() => Err(SshError::Invalid(format!(
                "{CONFIG_ENV} names {}, which is not a readable file: fix the path or unset {CONFIG_ENV} to use ~/.ssh/config",
                p.display()
            ))),
            _ => Ok(()),
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
}

impl Backend for SshBackend {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn handles(&self, action: &Action) -> bool {
        matches!(action, Action::SshRun(_) | Action::SshCopy(_))
    }

    fn execute<'a>(&'a self, action: &'a Action, ctx: &'a ActionCtx<'a>) -> ActionFuture<'a> {
        Box::pin(async move {
            match action {
                Action::SshRun(a) => ssh_run(&self.opts, a, ctx).await.map_err(Into::into),
                Action::SshCopy(a) => ssh_copy(&self.opts, a, ctx).await.map_err(Into::into),
                other => Err(ActionError::Unsupported {
                    action: other.name(),
                }),
            }
        })
    }
}

fn render(ctx: &ActionCtx<'_>, t: &crate::runbook::Text, sink: Sink) -> Result<String, SshError> {
    ctx.values
        .render(t, sink)
        .map_err(|e| SshError::Invalid(e.to_string()))
}

// ---------------------------------------------------------------------------------------
// ssh.run
// ---------------------------------------------------------------------------------------

async fn ssh_run(
    opts: &SshOptions,
    a: &SshRun,
    ctx: &ActionCtx<'_>,
) -> Result<ActionResult, SshError> {
    let host = render(ctx, &a.host, Sink::Shown)?;
    let user = match &a.user {
        Some(u) => Some(render(ctx, u, Sink::Shown)?),
        None => None,
    };
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
        for l in &lines {
            ctx.output(l.clone());
        }
        let user = conn.user.clone();
        conn.close().await;
        return Ok(ActionResult {
            value: serde_json::json!({ "host": host, "user": user, "dry_run": true }),
            lines,
        });
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

pub(crate) fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit code {c}"),
        None => "a signal (the remote command was killed)".to_owned(),
    }
}

/// `: LAST STDERR LINE`, or nothing.
pub(crate) fn last_line(stderr: &str, quiet: bool) -> String {
    if quiet {
        return String::new();
    }
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default()
}

/// The command for messages: its first line, shortened.
pub(crate) fn short_command(command: &str) -> String {
    let mut lines = command.trim().lines();
    let first = lines.next().unwrap_or_default().trim();
    let mut s: String = first.chars().take(120).collect();
    if s.len() < first.len() || lines.next().is_some() {
        s.push_str(" ...");
    }
    s
}

fn is_env_name(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// A clear message when `sudo -n` could not run the command.
pub(crate) fn sudo_problem(e: &Exec, host: &str, user: &str, command: &str) -> Option<SshError> {
    let low = e.stderr.to_lowercase();
    if !low.contains("sudo") {
        return None;
    }
    if low.contains("password is required") || low.contains("a terminal is required") {
        return Some(SshError::Sudo(format!(
            "on {host}: sudo wants a password for {user}, and drctl runs sudo without prompts (`sudo -n`), so `{command}` did not run. \
             Give {user} passwordless sudo on {host} (a sudoers rule with NOPASSWD), or connect as a user that has it \
             (`user:` of the step, or User in your ssh config)"
        )));
    }
    if low.contains("not in the sudoers file") || low.contains("is not allowed to") {
        return Some(SshError::Sudo(format!(
            "on {host}: {user} may not use sudo, so `{command}` did not run: {}. Connect as a user with sudo rights (`user:` of the step, or User in your ssh config)",
            e.stderr.trim()
        )));
    }
    if e.code == Some(127)
        && (low.contains("sudo: not found") || low.contains("sudo: command not found"))
    {
        return Some(SshError::Sudo(format!(
            "on {host}: sudo is not installed, so `{command}` did not run; install it or connect as root (`user: root`)"
        )));
    }
    None
}

// ---------------------------------------------------------------------------------------
// ssh.copy
// ---------------------------------------------------------------------------------------

fn parse_mode(m: Option<&str>) -> Result<Option<u32>, SshError> {
    let Some(m) = m else { return Ok(None) };
    let ok = (3..=4).contains(&m.len()) && m.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(m, 8) {
        Ok(v) if ok => Ok(Some(v)),
        _ => Err(SshError::Invalid(format!(
            "mode `{m}` is not an octal file mode such as 0600 or 644"
        ))),
    }
}

async fn ssh_copy(
    opts: &SshOptions,
    a: &SshCopy,
    ctx: &ActionCtx<'_>,
) -> Result<ActionResult, SshError> {
    let host = render(ctx, &a.host, Sink::Shown)?;
    let user = match &a.user {
        Some(u) => Some(render(ctx, u, Sink::Shown)?),
        None => None,
    };
    let local = PathBuf::from(render(ctx, &a.local, Sink::Shown)?);
    let remote = render(ctx, &a.remote, Sink::Shown)?;
    if remote.is_empty() {
        return Err(SshError::Invalid("ssh.copy: `remote` is empty".into()));
    }
    let mode = parse_mode(a.mode.as_deref())?;
    match a.direction {
        CopyDirection::Upload => {
            upload(
                opts,
                ctx,
                &host,
                user.as_deref(),
                &local,
                &remote,
                a.sudo,
                mode,
            )
            .await
        }
        CopyDirection::Download => {
            download(
                opts,
                ctx,
                &host,
                user.as_deref(),
                &local,
                &remote,
                a.sudo,
                mode,
            )
            .await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn upload(
    opts: &SshOptions,
    ctx: &ActionCtx<'_>,
    host: &str,
    user: Option<&str>,
    local: &Path,
    remote: &str,
    sudo: bool,
    mode: Option<u32>,
) -> Result<ActionResult, SshError> {
    let meta = match tokio::fs::metadata(local).await {
        Ok(m) => m,
        // In a rehearsal an earlier step (a download) may not have made the file yet.
        Err(e) if ctx.dry_run && e.kind() == std::io::ErrorKind::NotFound => {
            let conn = Conn::open(opts, host, user, ctx).await?;
            let lines = vec![
                format!("connected to {}", conn.describe()),
                format!(
                    "{} is not on this machine yet (an earlier step may make it); would then upload it to {host}:{remote}",
                    local.display()
                ),
            ];
            for l in &lines {
                ctx.output(l.clone());
            }
            conn.close().await;
            return Ok(ActionResult {
                value: serde_json::json!({ "host": host, "direction": "upload", "remote": remote, "dry_run": true }),
                lines,
            });
        }
        Err(e) => {
            return Err(SshError::Copy(format!(
                "cannot read {} on this machine: {e}; check the path (did the download step run?)",
                local.display()
            )));
        }
    };
    if !meta.is_file() {
        return Err(SshError::Copy(format!(
            "{} on this machine is not a regular file",
            local.display()
        )));
    }
    let size = meta.len();
    // Like scp for a new file: the local file's permission bits unless a mode is given.
    let mode = mode.unwrap_or(meta.permissions().mode() & 0o777);
    let mode_s = format!("{mode:04o}");
    let conn = Conn::open(opts, host, user, ctx).await?;
    let r = shell_quote(remote);
    let base = serde_json::json!({
        "host": host,
        "direction": "upload",
        "local": local.display().to_string(),
        "remote": remote,
        "bytes": size,
        "mode": mode_s,
    });
    if ctx.dry_run {
        let probe = format!(
            "if [ -e {r} ]; then ls -ld -- {r}; else echo missing; fi; d=$(dirname -- {r}); [ -d \"$d\" ] || echo \"nodir $d\""
        );
        let e = conn.simple(ctx, &probe, sudo).await?;
        if let Some(err) = sudo_problem(&e, host, &conn.user, &format!("ls -ld {r}")) {
            return Err(err);
        }
        let mut lines = vec![format!("connected to {}", conn.describe())];
        for l in e.stdout.lines() {
            if let Some(d) = l.strip_prefix("nodir ") {
                lines.push(format!(
                    "problem: the directory {d} does not exist on {host}"
                ));
            } else if l == "missing" {
                lines.push(format!("{remote} does not exist on {host} yet"));
            } else {
                lines.push(format!("would replace: {l}"));
            }
        }
        lines.push(format!(
            "would upload {} ({size} bytes) to {host}:{remote} with mode {mode_s}{}",
            local.display(),
            if sudo {
                " (as root via sudo install)"
            } else {
                ""
            }
        ));
        for l in &lines {
            ctx.output(l.clone());
        }
        conn.close().await;
        return Ok(ActionResult { value: base, lines });
    }

    // 1. Stream into a private temp file; a short upload (cancelled, timed out) is removed.
    let receive = format!(
        "umask 077; t=$(mktemp \"${{TMPDIR:-/tmp}}/drctl-upload.XXXXXX\") || exit 1; cat > \"$t\" || {{ rm -f \"$t\"; exit 1; }}; \
         n=$(wc -c < \"$t\" | tr -d ' '); if [ \"$n\" != {size} ]; then rm -f \"$t\"; echo \"received $n of {size} bytes\" >&2; exit 3; fi; echo \"$t\""
    );
    let mut file = tokio::fs::File::open(local).await.map_err(|e| {
        SshError::Copy(format!(
            "cannot open {} on this machine: {e}",
            local.display()
        ))
    })?;
    let mut child = conn.spawn(&receive, false, true).await?;
    let mut stdin = child.stdin().take();
    let mut hasher = Sha256::new();
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    let mut next_report = 64u64 << 20;
    let send = async {
        loop {
            let n = file.read(&mut buf).await.map_err(|e| {
                SshError::Copy(format!(
                    "cannot read {} on this machine: {e}",
                    local.display()
                ))
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if let Some(p) = stdin.as_mut() {
                p.write_all(&buf[..n]).await.map_err(|e| {
                    SshError::Copy(format!(
                        "the upload to {host} stopped after {sent} of {size} bytes: {e}"
                    ))
                })?;
            }
            sent += n as u64;
            if sent >= next_report {
                ctx.progress(format!("uploaded {} of {} MiB", sent >> 20, size >> 20));
                next_report += 64 << 20;
            }
        }
        if let Some(mut p) = stdin.take() {
            let _ = p.flush().await;
        }
        Ok::<(), SshError>(())
    };
    tokio::select! {
        r = send => r?,
        _ = ctx.cancel.cancelled() => return Err(SshError::Cancelled),
    }
    let out = child_output(child, ctx).await.map_err(|e| conn.lost(e))?;
    if out.code != Some(0) {
        conn.close().await;
        return Err(SshError::Copy(format!(
            "uploading {} to {host} failed with {}{}; check free space in the host's temp directory",
            local.display(),
            exit_text(out.code),
            last_line(&out.stderr, false)
        )));
    }
    let tmp = out.stdout.trim().to_owned();
    let sha = hex::encode(hasher.finalize());

    // 2. Verify what arrived, then put it in place with its mode (as root with sudo).
    let t = shell_quote(&tmp);
    let place = format!(
        "t={t}; if command -v sha256sum >/dev/null 2>&1; then h=$(sha256sum < \"$t\" | cut -d' ' -f1); \
         if [ \"$h\" != {sha} ]; then rm -f \"$t\"; echo \"checksum mismatch: the host has $h\" >&2; exit 4; fi; fi; \
         install -m {mode_s} -- \"$t\" {r}; rc=$?; rm -f \"$t\"; exit $rc"
    );
    let e = conn.simple(ctx, &place, sudo).await?;
    if e.code != Some(0) {
        // The temp file may remain when sudo refused to run: remove it as the login user.
        let _ = conn.simple(ctx, &format!("rm -f {t}"), false).await;
        let login = conn.user.clone();
        conn.close().await;
        let cmd = format!(
            "{}install -m {mode_s} {tmp} {remote}",
            if sudo { "sudo " } else { "" }
        );
        if let Some(err) = sudo_problem(&e, host, &login, &cmd) {
            return Err(err);
        }
        return Err(SshError::Copy(format!(
            "on {host}: `{cmd}` failed with {}{}; check that the directory exists and that {} may write there{}",
            exit_text(e.code),
            last_line(&e.stderr, false),
            if sudo { "root" } else { login.as_str() },
            if sudo { "" } else { " (or set `sudo: true`)" }
        )));
    }
    conn.close().await;
    let line = format!(
        "uploaded {} to {host}:{remote} ({size} bytes, mode {mode_s}, sha256 {sha})",
        local.display()
    );
    ctx.output(line.clone());
    let mut value = base;
    value["sha256"] = serde_json::Value::from(sha);
    Ok(ActionResult {
        value,
        lines: vec![line],
    })
}

#[allow(clippy::too_many_arguments)]
async fn download(
    opts: &SshOptions,
    ctx: &ActionCtx<'_>,
    host: &str,
    user: Option<&str>,
    local: &Path,
    remote: &str,
    sudo: bool,
    mode: Option<u32>,
) -> Result<ActionResult, SshError> {
    // What was copied from a host is often secret (snapshots, keys): private by default.
    let mode = mode.unwrap_or(0o600);
    let mode_s = format!("{mode:04o}");
    let dir = match local.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(SshError::Copy(format!(
            "the local directory {} does not exist; create it or choose another `local` path",
            dir.display()
        )));
    }
    let conn = Conn::open(opts, host, user, ctx).await?;
    let r = shell_quote(remote);
    let probe = format!(
        "if [ ! -f {r} ]; then echo \"not a regular file or missing\" >&2; exit 66; fi; \
         if command -v sha256sum >/dev/null 2>&1; then h=$(sha256sum < {r} | cut -d' ' -f1) || exit 1; else h=-; fi; \
         n=$(wc -c < {r} | tr -d ' ') || exit 1; echo \"$h $n\""
    );
    let e = conn.simple(ctx, &probe, sudo).await?;
    if let Some(err) = sudo_problem(&e, host, &conn.user, &format!("sha256sum {r}")) {
        return Err(err);
    }
    if e.code != Some(0) {
        conn.close().await;
        return Err(SshError::Copy(format!(
            "cannot read {remote} on {host}{}; check the path{}",
            last_line(&e.stderr, false),
            if sudo {
                ""
            } else {
                " and its permissions (or set `sudo: true`)"
            }
        )));
    }
    let mut parts = e.stdout.split_whitespace();
    let want_sha = parts.next().unwrap_or("-").to_owned();
    let size: u64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let base = serde_json::json!({
        "host": host,
        "direction": "download",
        "local": local.display().to_string(),
        "remote": remote,
        "bytes": size,
        "mode": mode_s,
    });
    if ctx.dry_run {
        let mut lines = vec![format!("connected to {}", conn.describe())];
        lines.push(format!(
            "would download {host}:{remote} ({size} bytes) to {} with mode {mode_s}{}",
            local.display(),
            if local.exists() {
                ", replacing the local file"
            } else {
                ""
            }
        ));
        for l in &lines {
            ctx.output(l.clone());
        }
        conn.close().await;
        return Ok(ActionResult { value: base, lines });
    }
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    let part = dir.join(format!(".{name}.drctl-part"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&part)
        .map(tokio::fs::File::from_std)
        .map_err(|e| SshError::Copy(format!("cannot write {}: {e}", part.display())))?;
    let cat = if sudo {
        format!("sudo -n cat -- {r}")
    } else {
        format!("cat -- {r}")
    };
    let mut child = conn.spawn(&cat, false, false).await?;
    let mut stdout = child.stdout().take();
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    let receive = async {
        if let Some(s) = stdout.as_mut() {
            loop {
                let n = s.read(&mut buf).await.map_err(|e| {
                    SshError::Copy(format!("the download from {host} broke off: {e}"))
                })?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])
                    .await
                    .map_err(|e| SshError::Copy(format!("cannot write {}: {e}", part.display())))?;
                got += n as u64;
            }
        }
        file.sync_all()
            .await
            .map_err(|e| SshError::Copy(format!("cannot write {}: {e}", part.display())))?;
        Ok::<(), SshError>(())
    };
    let received = tokio::select! {
        r = receive => r,
        _ = ctx.cancel.cancelled() => Err(SshError::Cancelled),
    };
    if let Err(e) = received {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    let out = child_output(child, ctx).await.map_err(|e| conn.lost(e))?;
    conn.close().await;
    let sha = hex::encode(hasher.finalize());
    let bad = if out.code != Some(0) {
        Some(format!(
            "`{cat}` failed with {}{}",
            exit_text(out.code),
            last_line(&out.stderr, false)
        ))
    } else if got != size {
        Some(format!(
            "received {got} bytes, the file had {size}: it changed while being copied or the transfer broke; run the step again"
        ))
    } else if want_sha != "-" && want_sha != sha {
        Some(format!(
            "the copy's sha256 {sha} differs from the host's {want_sha}: the file changed while being copied; run the step again"
        ))
    } else {
        None
    };
    if let Some(why) = bad {
        let _ = std::fs::remove_file(&part);
        return Err(SshError::Copy(format!(
            "downloading {remote} from {host}: {why}"
        )));
    }
    std::fs::set_permissions(&part, std::fs::Permissions::from_mode(mode))
        .and_then(|_| std::fs::rename(&part, local))
        .map_err(|e| {
            SshError::Copy(format!(
                "cannot put the download in place at {}: {e}",
                local.display()
            ))
        })?;
    let line = format!(
        "downloaded {host}:{remote} to {} ({got} bytes, mode {mode_s}, sha256 {sha})",
        local.display()
    );
    ctx.output(line.clone());
    let mut value = base;
    value["sha256"] = serde_json::Value::from(sha);
    Ok(ActionResult {
        value,
        lines: vec![line],
    })
}

/// Collects a spawned child's output (not streamed) and exit status.
async fn child_output(
    mut child: openssh::Child<&Session>,
    ctx: &ActionCtx<'_>,
) -> Result<Exec, openssh::Error> {
    drop(child.stdin().take());
    let out = child.stdout().take();
    let err = child.stderr().take();
    let captured = process::pump(out, err, ctx, reading(false)).await;
    let code = exit_code(child.wait().await)?;
    Ok(captured.exited(code))
}

// ---------------------------------------------------------------------------------------
// Running commands: on this machine or on a host
// ---------------------------------------------------------------------------------------

/// A shell command to run: `script` by `sh`, with `env` exported, optionally under sudo.
pub(crate) struct RunSpec<'a> {
    pub script: &'a str,
    pub env: &'a [(String, String)],
    pub sudo: bool,
    /// Show each output line live.
    pub stream: bool,
}

pub(crate) use crate::backends::process::Exec;

/// Output of a command (on a host, or here for a `Target`) as it was written, shown live
/// when `stream`.
fn reading(stream: bool) -> Reading {
    Reading {
        stream,
        keep: Keep::AsWritten,
    }
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
    process::run(cmd, ctx, None, reading(spec.stream))
        .await
        .map_err(|e| match e {
            RunError::Start(e) => {
                SshError::Command(format!("cannot start `{program}` on this machine: {e}"))
            }
            RunError::Cancelled => SshError::Cancelled,
            other => SshError::Command(other.to_string()),
        })
}

/// A private directory for the control socket and the master's log.
struct ControlDir(PathBuf);

impl ControlDir {
    fn new() -> std::io::Result<ControlDir> {
        let p = std::env::temp_dir().join(format!("drctl-ssh-{:016x}", rand::random::<u64>()));
        std::fs::DirBuilder::new().mode(0o700).create(&p)?;
        Ok(ControlDir(p))
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `ssh -G` says about a host: the values the connection will use.
#[derive(Debug, Default)]
struct Resolved {
    user: String,
    hostname: String,
    port: String,
    connect_timeout: bool,
    identity_files: Vec<String>,
}

/// One ssh connection (a master process, a child of drctl) to a host.
pub(crate) struct Conn {
    pub host: String,
    pub user: String,
    hostname: String,
    port: String,
    // Drop order matters: the session is only a handle; killing the master closes the
    // connection, which makes each remote bootstrap stop its command; then the dir goes.
    session: Session,
    master: tokio::process::Child,
    _dir: ControlDir,
}

/// The remote side of `Conn::run`: reads `export ...` lines and the command from stdin up
/// to the END line, runs them in a subshell, and while it runs keeps reading stdin: EOF
/// means drctl stopped waiting (timeout, Ctrl-C, crash, lost connection), so it stops the
/// session's whole process group. One line, so it survives any login shell's `-c`.
fn bootstrap(end: &str) -> String {
    [
        "exec 3<&0",
        "nl=$(printf '\\nx')",
        "nl=${nl%x}",
        "ok=",
        "s=",
        &format!("while IFS= read -r l; do if [ \"$l\" = {end} ]; then ok=1; break; fi; s=$s$l$nl; done"),
        "if [ -z \"$ok\" ]; then exit 125; fi",
        // `set -e` as for local scripts (`bash -euo pipefail`): a multi-line command stops at
        // its first failing line instead of reporting the last line's status.
        "(set -e; eval \"$s\") </dev/null 3<&- & j=$!",
        "(while IFS= read -r l; do :; done; trap '' TERM; kill -TERM 0; sleep 2; kill -KILL 0) <&3 >/dev/null 2>&1 & w=$!",
        "exec 3<&-",
        "wait $j",
        "rc=$?",
        "kill $w 2>/dev/null",
        "exit $rc",
    ]
    .join("; ")
}

fn exit_code(
    r: Result<std::process::ExitStatus, openssh::Error>,
) -> Result<Option<i32>, openssh::Error> {
    match r {
        Ok(st) => Ok(st.code()),
        // The crate turns exit code 127 into an error; it is the command's exit code.
        Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(127)),
        Err(openssh::Error::RemoteProcessTerminated) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Conn {
    pub(crate) async fn open(
        opts: &SshOptions,
        host: &str,
        user: Option<&str>,
        ctx: &ActionCtx<'_>,
    ) -> Result<Conn, SshError> {
        if host.is_empty() || host.starts_with('-') || host.chars().any(char::is_whitespace) {
            return Err(SshError::Invalid(format!(
                "`{host}` is not a host name or ssh config alias"
            )));
        }
        if let Some(u) = user
            && (u.is_empty() || u.starts_with('-') || u.chars().any(char::is_whitespace))
        {
            return Err(SshError::Invalid(format!("`{u}` is not a user name")));
        }
        opts.check_config()?;
        let scrub = &ctx.values.scrub_env;
        let r = resolve(opts, host, user, scrub).await?;
        let dir = ControlDir::new().map_err(|e| {
            SshError::Connect(format!(
                "cannot create a private directory in {} for the ssh control socket: {e}",
                std::env::temp_dir().display()
            ))
        })?;
        let ctl = dir.0.join("ctl");
        let log = dir.0.join("log");
        let mut cmd = opts.command(scrub);
        cmd.arg("-M")
            .arg("-N")
            .arg("-S")
            .arg(&ctl)
            .arg("-E")
            .arg(&log);
        for o in [
            "ControlPersist=no",
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "ClearAllForwardings=yes",
            "RemoteCommand=none",
            "RequestTTY=no",
            "PermitLocalCommand=no",
            "ServerAliveInterval=15",
            "ServerAliveCountMax=4",
        ] {
            cmd.arg("-o").arg(o);
        }
        if !r.connect_timeout {
            cmd.args(["-o", "ConnectTimeout=20"]);
        }
        if let Some(u) = user {
            cmd.arg("-l").arg(u);
        }
        cmd.arg("--").arg(host);
        cmd.stdout(StdStdio::null())
            .stderr(StdStdio::null())
            .kill_on_drop(true);
        process::die_with_parent(&mut cmd);
        ctx.progress(format!("connecting to {host}"));
        let mut master = cmd.spawn().map_err(|e| SshError::NoClient(e.to_string()))?;
        let started = Instant::now();
        let mut session = None;
        loop {
            if let Ok(Some(_)) = master.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(classify(opts, host, user, &r, &text, scrub).await);
            }
            if ctl.exists() {
                let s = session.get_or_insert_with(|| {
                    Session::resume_mux(ctl.clone().into_boxed_path(), None)
                });
                if s.check().await.is_ok() {
                    break;
                }
            }
            if started.elapsed() > CONNECT_LIMIT {
                return Err(SshError::Connect(format!(
                    "ssh to {} did not complete within {}s; check the network path to {} port {} (and any ProxyJump host)",
                    r.describe(host),
                    CONNECT_LIMIT.as_secs(),
                    r.hostname,
                    r.port
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = ctx.cancel.cancelled() => return Err(SshError::Cancelled),
            }
        }
        let session = session.ok_or_else(|| SshError::Connect("no ssh session".into()))?;
        Ok(Conn {
            host: host.to_owned(),
            user: r.user.clone(),
            hostname: r.hostname.clone(),
            port: r.port.clone(),
            session,
            master,
            _dir: dir,
        })
    }

    /// `user@hostname:port (host alias)`.
    fn describe(&self) -> String {
        let mut s = format!("{}@{} port {}", self.user, self.hostname, self.port);
        if self.hostname != self.host {
            s.push_str(&format!(" ({})", self.host));
        }
        s
    }

    /// Ends the connection cleanly (the master says goodbye to the server).
    pub(crate) async fn close(mut self) {
        if let Some(pid) = self.master.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: signalling our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), self.master.wait()).await;
        }
    }

    fn lost(&self, e: openssh::Error) -> SshError {
        SshError::Connect(format!(
            "the ssh connection to {} broke: {e}; check that the host is up and reachable, then run the step again",
            self.describe()
        ))
    }

    /// A fixed command line on the host (no secrets: it is visible in `ps` there).
    async fn spawn(
        &self,
        script: &str,
        sudo: bool,
        stdin: bool,
    ) -> Result<openssh::Child<&Session>, SshError> {
        let line = if sudo {
            format!("sudo -n sh -c {}", shell_quote(script))
        } else {
            format!("sh -c {}", shell_quote(script))
        };
        self.session
            .raw_command(line)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .map_err(|e| self.lost(e))
    }

    /// A short command whose output is only captured.
    async fn simple(
        &self,
        ctx: &ActionCtx<'_>,
        script: &str,
        sudo: bool,
    ) -> Result<Exec, SshError> {
        self.run(
            ctx,
            &RunSpec {
                script,
                env: &[],
                sudo,
                stream: false,
            },
        )
        .await
    }

    async fn check_sudo(&self, ctx: &ActionCtx<'_>) -> Result<(), SshError> {
        let e = self.simple(ctx, "true", true).await?;
        if let Some(err) = sudo_problem(&e, &self.host, &self.user, "sudo -n true") {
            return Err(err);
        }
        if e.code != Some(0) {
            return Err(SshError::Sudo(format!(
                "on {}: `sudo -n true` failed with {}{}",
                self.host,
                exit_text(e.code),
                last_line(&e.stderr, false)
            )));
        }
        Ok(())
    }

    /// Runs `spec` through the bootstrap: env and script go over stdin, never argv.
    pub(crate) async fn run(
        &self,
        ctx: &ActionCtx<'_>,
        spec: &RunSpec<'_>,
    ) -> Result<Exec, SshError> {
        let end = format!(
            "__drctl_end_{:016x}{:016x}__",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let mut payload = String::new();
        for (k, v) in spec.env {
            payload.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
        payload.push_str(spec.script);
        if !payload.ends_with('\n') {
            payload.push('\n');
        }
        payload.push_str(&end);
        payload.push('\n');
        let mut child = self.spawn(&bootstrap(&end), spec.sudo, true).await?;
        // Kept open while the command runs: closing it stops the command on the host.
        let mut stdin = child.stdin().take();
        if let Some(p) = stdin.as_mut() {
            // A failed write (sudo refused and exited) shows in the exit status.
            let _ = p.write_all(payload.as_bytes()).await;
            let _ = p.flush().await;
        }
        drop(payload);
        let out = child.stdout().take();
        let err = child.stderr().take();
        let work = async {
            let r = process::pump(out, err, ctx, reading(spec.stream)).await;
            (r, child.wait().await)
        };
        tokio::pin!(work);
        let (captured, status) = tokio::select! {
            r = &mut work => r,
            _ = ctx.cancel.cancelled() => {
                drop(stdin.take());
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut work).await;
                return Err(SshError::Cancelled);
            }
        };
        drop(stdin);
        let code = exit_code(status).map_err(|e| self.lost(e))?;
        Ok(captured.exited(code))
    }
}

impl Resolved {
    fn describe(&self, host: &str) -> String {
        let mut s = format!(
            "{host} ({}@{} port {})",
            self.user, self.hostname, self.port
        );
        if self.hostname == host {
            s = format!("{}@{host} port {}", self.user, self.port);
        }
        s
    }
}

/// `ssh -G`: the user, address and port the connection will use, for clear messages.
async fn resolve(
    opts: &SshOptions,
    host: &str,
    user: Option<&str>,
    scrub: &[String],
) -> Result<Resolved, SshError> {
    let mut cmd = opts.command(scrub);
    cmd.arg("-G");
    if let Some(u) = user {
        cmd.arg("-l").arg(u);
    }
    cmd.arg("--").arg(host);
    let out = cmd
        .output()
        .await
        .map_err(|e| SshError::NoClient(e.to_string()))?;
    if !out.status.success() {
        let cfg = match &opts.config {
            Some(p) => p.display().to_string(),
            None => "~/.ssh/config".into(),
        };
        return Err(SshError::Invalid(format!(
            "ssh cannot read its configuration for {host}: {}; check {cfg}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut r = Resolved::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((k, v)) = line.split_once(' ') else {
            continue;
        };
        match k {
            "user" => r.user = v.to_owned(),
            "hostname" => r.hostname = v.to_owned(),
            "port" => r.port = v.to_owned(),
            "connecttimeout" => r.connect_timeout = v != "none",
            "identityfile" => r.identity_files.push(expand_home(v)),
            _ => {}
        }
    }
    Ok(r)
}

fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p.to_owned(),
    }
}

/// Turns the master's log into a message that says what failed and what to do.
async fn classify(
    opts: &SshOptions,
    host: &str,
    user: Option<&str>,
    r: &Resolved,
    log: &str,
    scrub: &[String],
) -> SshError {
    let low = log.to_lowercase();
    let who = r.describe(host);
    let known = if r.port == "22" {
        r.hostname.clone()
    } else {
        format!("[{}]:{}", r.hostname, r.port)
    };
    if low.contains("remote host identification has changed") {
        let fp = match fingerprint_in(log) {
            Some(f) => f,
            None => probe_fingerprint(opts, host, user, scrub).await,
        };
        let offending = log
            .lines()
            .find(|l| l.contains("Offending"))
            .map(|l| format!(" ({})", l.trim()))
            .unwrap_or_default();
        return SshError::HostKey(format!(
            "the host key of {who} has CHANGED: the server now presents {fp}, which does not match the key pinned in known_hosts{offending}. \
             Someone may be intercepting the connection, or the host was reinstalled. Compare that fingerprint with the host's own \
             (on its console: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`); only if they match, remove the old entry \
             (`ssh-keygen -R '{known}'`), add the new key, and run the step again. drctl never accepts a changed key"
        ));
    }
    if low.contains("host key verification failed") || low.contains("host key is known for") {
        let fp = probe_fingerprint(opts, host, user, scrub).await;
        return SshError::HostKey(format!(
            "the host key of {who} is not in known_hosts, and drctl always checks host keys strictly. The server presents {fp}. \
             Compare it with the host's own (on its console: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`); if it matches, \
             add it (`ssh-keyscan -p {} {} >> ~/.ssh/known_hosts`, or to the UserKnownHostsFile of your ssh config) and run the step again",
            r.port, r.hostname
        ));
    }
    if low.contains("permission denied (") || low.contains("too many authentication failures") {
        let agent = agent_state(scrub).await;
        let existing: Vec<&str> = r
            .identity_files
            .iter()
            .map(String::as_str)
            .filter(|p| Path::new(p).is_file())
            .collect();
        let files = if existing.is_empty() {
            "none of the key files ssh looks for exists".to_owned()
        } else {
            format!("key files tried: {}", existing.join(", "))
        };
        let reason = log
            .lines()
            .rev()
            .find(|l| {
                l.to_lowercase().contains("permission denied")
                    || l.to_lowercase().contains("too many")
            })
            .unwrap_or("Permission denied")
            .trim();
        return SshError::Auth(format!(
            "ssh to {who} was refused: no key was accepted for user {} ({reason}). drctl never asks for passwords (BatchMode). \
             {agent}; {files}. Check: the key is loaded (`ssh-add -l`, `ssh-add ~/.ssh/id_ed25519`), the user is right \
             (`user:` of the step, or User in your ssh config), and the public key is in ~{}/.ssh/authorized_keys on the host",
            r.user, r.user
        ));
    }
    let tail: Vec<&str> = log.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().map(str::trim).collect();
    let detail = tail.join(" / ");
    let hint = if low.contains("could not resolve hostname") {
        "check the host name, or that the Host alias exists in your ssh config (~/.ssh/config or DRCTL_SSH_CONFIG)".to_owned()
    } else if low.contains("connection refused") {
        format!(
            "nothing listens on {} port {}: check that sshd runs on the host and the port is right",
            r.hostname, r.port
        )
    } else if low.contains("timed out")
        || low.contains("no route to host")
        || low.contains("unreachable")
    {
        format!(
            "{} port {} cannot be reached: check the host is up, the network, VPN or ProxyJump",
            r.hostname, r.port
        )
    } else {
        "check that `ssh` to the host works from this terminal".to_owned()
    };
    SshError::Connect(format!("ssh to {who} failed: {detail}; {hint}"))
}

/// `SHA256:...` with its key type, from ssh's changed-key warning.
fn fingerprint_in(log: &str) -> Option<String> {
    let mut lines = log.lines();
    while let Some(l) = lines.next() {
        if let Some(rest) = l.split("The fingerprint for the ").nth(1) {
            let kind = rest.split_whitespace().next().unwrap_or("a").to_owned();
            let next = lines.next().unwrap_or_default();
            let fp = next
                .split_whitespace()
                .find(|w| w.starts_with("SHA256:"))?
                .trim_end_matches('.');
            return Some(format!("{kind} key {fp}"));
        }
    }
    None
}

/// The server's host key fingerprint, read by a verbose strict connection attempt that
/// cannot accept the key (it is only read, never trusted).
async fn probe_fingerprint(
    opts: &SshOptions,
    host: &str,
    user: Option<&str>,
    scrub: &[String],
) -> String {
    let mut cmd = opts.command(scrub);
    cmd.arg("-v");
    for o in [
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "ControlMaster=no",
        "ControlPath=none",
        "ClearAllForwardings=yes",
        "ConnectTimeout=10",
        "RemoteCommand=none",
    ] {
        cmd.arg("-o").arg(o);
    }
    if let Some(u) = user {
        cmd.arg("-l").arg(u);
    }
    cmd.arg("--").arg(host).arg("true");
    let Some(out) = process::output_within(cmd, Duration::from_secs(20)).await else {
        return "a key whose fingerprint could not be read".into();
    };
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.split("Server host key: ").nth(1))
        .map(|k| {
            let mut w = k.split_whitespace();
            let kind = w.next().unwrap_or("a");
            let fp = w.next().unwrap_or("?");
            format!("{kind} key {fp}")
        })
        .unwrap_or_else(|| "a key whose fingerprint could not be read".into())
}

/// What the ssh agent holds, in words.
async fn agent_state(scrub: &[String]) -> String {
    let Some(sock) = std::env::var_os("SSH_AUTH_SOCK") else {
        return "No ssh agent is available to drctl (SSH_AUTH_SOCK is not set)".into();
    };
    let mut cmd = process::command("ssh-add", scrub);
    cmd.arg("-l");
    match process::output_within(cmd, Duration::from_secs(5)).await {
        Some(o) => match o.status.code() {
            Some(0) => {
                let n = String::from_utf8_lossy(&o.stdout).lines().count();
                format!("The ssh agent holds {n} key(s), none accepted")
            }
            Some(1) => {
                "The ssh agent holds no keys (`ssh-add -l`: The agent has no identities)".into()
            }
            _ => format!(
                "The ssh agent at {} cannot be reached",
                Path::new(&sock).display()
            ),
        },
        None => "The ssh agent could not be asked (`ssh-add -l` failed)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_fingerprint_of_a_changed_key() {
        let log = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nIT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
                   The fingerprint for the ED25519 key sent by the remote host is\nSHA256:abcDEF123.\nOffending ED25519 key in /k:1\nHost key verification failed.";
        assert_eq!(
            fingerprint_in(log).as_deref(),
            Some("ED25519 key SHA256:abcDEF123")
        );
    }

    #[test]
    fn sudo_password_is_explained() {
        let e = Exec {
            code: Some(1),
            stderr: "sudo: a password is required\n".into(),
            ..Exec::default()
        };
        let m = sudo_problem(&e, "cp1", "ops", "true")
            .expect("sudo problem")
            .to_string();
        assert!(m.contains("sudo wants a password for ops"), "{m}");
        assert!(m.contains("NOPASSWD"), "{m}");
        let ok = Exec {
            code: Some(1),
            stderr: "grep: nothing\n".into(),
            ..Exec::default()
        };
        assert!(sudo_problem(&ok, "cp1", "ops", "true").is_none());
    }

    #[test]
    fn modes_and_names() {
        assert_eq!(parse_mode(Some("0600")).ok().flatten(), Some(0o600));
        assert_eq!(parse_mode(Some("644")).ok().flatten(), Some(0o644));
        assert!(parse_mode(Some("0900")).is_err());
        assert!(parse_mode(Some("rw")).is_err());
        assert!(is_env_name("VAULT_TOKEN") && !is_env_name("1X") && !is_env_name("A-B"));
    }

    #[test]
    fn the_bootstrap_is_one_line() {
        let b = bootstrap("__drctl_end_x__");
        assert!(!b.contains('\n'), "{b}");
    }
}
