//! One ssh connection to a host: the `ssh` command line (config file, the options drctl
//! always sets), what `ssh -G` resolves for a host (user, address, port, key files), the
//! master process and its private control directory, and commands over the connection
//! (the remote bootstrap that takes the environment and the script over stdin).

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::Stdio as StdStdio;
use std::time::{Duration, Instant};

use openssh::{Session, Stdio};
use tokio::io::AsyncWriteExt;

use super::diagnose::{classify, exit_text, last_line, sudo_problem};
use super::run::RunSpec;
use super::{CONFIG_ENV, SshError, SshOptions};
use crate::backends::process::{self, Exec, Keep, Reading};
use crate::exec::backend::ActionCtx;
use crate::runbook::template::shell_quote;

/// How long connecting (TCP, host key, authentication) may take at most.
const CONNECT_LIMIT: Duration = Duration::from_secs(120);

impl SshOptions {
    /// `ssh` with `-F` when a config file is set, and the scrubbed environment.
    pub(super) fn command(&self, scrub: &[String]) -> tokio::process::Command {
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
pub(super) struct Resolved {
    pub user: String,
    pub hostname: String,
    pub port: String,
    connect_timeout: bool,
    pub identity_files: Vec<String>,
}

impl Resolved {
    pub(super) fn describe(&self, host: &str) -> String {
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

/// Output of a command on a host as it was written, shown live when `stream`.
fn reading(stream: bool) -> Reading {
    Reading {
        stream,
        keep: Keep::AsWritten,
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
    pub(super) fn describe(&self) -> String {
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

    pub(super) fn lost(&self, e: openssh::Error) -> SshError {
        SshError::Connect(format!(
            "the ssh connection to {} broke: {e}; check that the host is up and reachable, then run the step again",
            self.describe()
        ))
    }

    /// A fixed command line on the host (no secrets: it is visible in `ps` there).
    pub(super) async fn spawn(
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

    /// Collects a spawned command's output (not streamed) and exit status.
    pub(super) async fn output(
        &self,
        mut child: openssh::Child<&Session>,
        ctx: &ActionCtx<'_>,
    ) -> Result<Exec, SshError> {
        drop(child.stdin().take());
        let out = child.stdout().take();
        let err = child.stderr().take();
        let captured = process::pump(out, err, ctx, reading(false)).await;
        let code = exit_code(child.wait().await).map_err(|e| self.lost(e))?;
        Ok(captured.exited(code))
    }

    /// A short command whose output is only captured.
    pub(super) async fn simple(
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

    pub(super) async fn check_sudo(&self, ctx: &ActionCtx<'_>) -> Result<(), SshError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_is_one_line() {
        let b = bootstrap("__drctl_end_x__");
        assert!(!b.contains('\n'), "{b}");
    }
}
