//! Running child processes on this machine: the one implementation behind `shell` steps
//! and the local commands of the ssh and etcd backends, plus the output reader that the
//! ssh backend also uses for commands on a host.
//!
//! A child runs in its own process group (the terminal's Ctrl-C reaches drctl only, which
//! then stops the step in order), without the run's secret variables in its environment,
//! and dies with drctl (`PR_SET_PDEATHSIG`) rather than running on unobserved while a
//! resume starts it again. Its stdout and stderr are read line by line (shown live when
//! streaming), keeping up to `MAX_CAPTURE` of each and the last `EXCERPT_LINES` lines
//! for the report. Ctrl-C sends SIGTERM to the group and waits up to `STOP_GRACE`;
//! whatever way the run ends (done, cancelled, timed out: the step future dropped), the
//! whole group then gets SIGKILL, so no grandchild outlives the step.

use std::ffi::OsStr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::exec::backend::ActionCtx;

/// Most output kept in `result.stdout` / `result.stderr`.
pub(crate) const MAX_CAPTURE: usize = 1024 * 1024;
/// Lines of output kept for the journal and report.
pub const EXCERPT_LINES: usize = 20;
/// How long a cancelled command has to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why a command could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error("cannot start the command: {0}")]
    Start(std::io::Error),
    #[error("cannot write the command's stdin: {0}")]
    Stdin(std::io::Error),
    #[error("cannot wait for the command: {0}")]
    Wait(std::io::Error),
    #[error("cancelled by the operator (Ctrl-C)")]
    Cancelled,
}

/// What a command did.
#[derive(Debug, Default)]
pub(crate) struct Exec {
    /// None: killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The last lines of output, for the report.
    pub excerpt: Vec<String>,
}

/// How output is kept in `Exec::stdout` / `Exec::stderr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// As the command wrote it (a `\r\n` stays).
    AsWritten,
    /// As the lines shown, each ended by `\n`.
    Lines,
}

/// How to read a command's output.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reading {
    /// Show each output line live.
    pub stream: bool,
    pub keep: Keep,
}

/// A local path as a runbook gives it: a leading `~/` is the operator's home directory
/// (`HOME`), as in a shell, so a runbook can keep files out of shared places like /tmp.
pub fn local_path(p: &str) -> std::path::PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) if !home.is_empty() => std::path::PathBuf::from(home).join(rest),
        _ => std::path::PathBuf::from(p),
    }
}

/// A command for this machine, without the run's secret variables (`scrub`) in its
/// environment and with stdin closed.
pub(crate) fn command(program: impl AsRef<OsStr>, scrub: &[String]) -> Command {
    let mut c = Command::new(program);
    for k in scrub {
        c.env_remove(k);
    }
    c.stdin(Stdio::null());
    c
}

/// Dies with drctl (SIGKILL, a closed laptop) instead of running on unobserved.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and only affects the child being started.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Runs `cmd` to its end in its own process group, with `stdin` written to it (else
/// stdin is closed), reading its output as `how` says.
pub(crate) async fn run(
    mut cmd: Command,
    ctx: &ActionCtx<'_>,
    stdin: Option<&[u8]>,
    how: Reading,
) -> Result<Exec, RunError> {
    die_with_parent(&mut cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(RunError::Start)?;
    let group = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).await.map_err(RunError::Stdin)?;
        drop(pipe);
    }
    let out = child.stdout.take();
    let err = child.stderr.take();
    let (captured, status) = tokio::select! {
        r = async { let c = pump(out, err, ctx, how).await; (c, child.wait().await) } => r,
        _ = ctx.cancel.cancelled() => {
            group.signal(libc::SIGTERM);
            let _ = tokio::time::timeout(STOP_GRACE, child.wait()).await;
            return Err(RunError::Cancelled);
        }
    };
    drop(group);
    let status = status.map_err(RunError::Wait)?;
    Ok(captured.exited(status.code()))
}

/// Runs `cmd` attached to the operator's terminal (stdin and stderr inherited, stdout to
/// `stdout`): nothing is captured, and Ctrl-C reaches it as it reaches drctl.
pub(crate) async fn attached(mut cmd: Command, stdout: Stdio) -> Result<ExitStatus, RunError> {
    die_with_parent(&mut cmd);
    cmd.stdin(Stdio::inherit())
        .stdout(stdout)
        .stderr(Stdio::inherit());
    cmd.status().await.map_err(RunError::Start)
}

/// The output of a short helper command (`ssh -G`, `ssh-add -l`), or None when it could
/// not start or did not finish within `limit` (it is killed then).
pub(crate) async fn output_within(
    mut cmd: Command,
    limit: Duration,
) -> Option<std::process::Output> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(limit, cmd.output()).await {
        Ok(Ok(o)) => Some(o),
        _ => None,
    }
}

/// Kills a command's process group when dropped (done, timeout, cancel, a crash of the
/// step future).
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn signal(&self, sig: i32) {
        if let Some(pgid) = self.0 {
            // SAFETY: signalling a process group this module created.
            unsafe {
                libc::killpg(pgid, sig);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// A command's output, before its exit status is known.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub stdout: String,
    pub stderr: String,
    pub excerpt: Vec<String>,
}

impl Captured {
    pub(crate) fn exited(self, code: Option<i32>) -> Exec {
        Exec {
            code,
            stdout: self.stdout,
            stderr: self.stderr,
            excerpt: self.excerpt,
        }
    }
}

/// Reads stdout and stderr line by line until both end (showing each line live when
/// `how.stream`), keeping up to `MAX_CAPTURE` of each and, unless the step is quiet, the
/// last `EXCERPT_LINES` lines. Bytes that are not UTF-8 are read as U+FFFD.
pub(crate) async fn pump<O, E>(
    out: Option<O>,
    err: Option<E>,
    ctx: &ActionCtx<'_>,
    how: Reading,
) -> Captured
where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
{
    let mut c = Captured::default();
    let mut o = out.map(BufReader::new);
    let mut e = err.map(BufReader::new);
    let mut ob = Vec::new();
    let mut eb = Vec::new();
    while o.is_some() || e.is_some() {
        let (n, is_err) = tokio::select! {
            n = async { match o.as_mut() { Some(r) => r.read_until(b'\n', &mut ob).await, None => std::future::pending().await } } => (n, false),
            n = async { match e.as_mut() { Some(r) => r.read_until(b'\n', &mut eb).await, None => std::future::pending().await } } => (n, true),
        };
        if matches!(n, Ok(0) | Err(_)) {
            if is_err {
                e = None;
            } else {
                o = None;
            }
        }
        let (buf, capture) = if is_err {
            (&mut eb, &mut c.stderr)
        } else {
            (&mut ob, &mut c.stdout)
        };
        if buf.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(buf).into_owned();
        buf.clear();
        let line = text.trim_end_matches(['\n', '\r']);
        if capture.len() < MAX_CAPTURE {
            match how.keep {
                Keep::AsWritten => {
                    capture.push_str(&text);
                    if !text.ends_with('\n') {
                        capture.push('\n');
                    }
                }
                Keep::Lines => {
                    capture.push_str(line);
                    capture.push('\n');
                }
            }
        }
        if how.stream {
            ctx.output(line);
        }
        if !ctx.quiet {
            c.excerpt.push(line.to_owned());
            if c.excerpt.len() > EXCERPT_LINES {
                c.excerpt.remove(0);
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::exec::backend::{Cancel, EventBus};
    use crate::exec::context::{RunInfo, Values};
    use crate::exec::events::{Reporter, RunEvent};
    use crate::exec::prompt::{Operator, PromptError};
    use crate::secret::Redactor;

    struct NoOperator;

    impl Operator for NoOperator {
        fn interactive(&self) -> bool {
            false
        }
        fn ask_secret(&self, _: &str) -> Result<String, PromptError> {
            Err(PromptError::NoOperator("test".into()))
        }
        fn ask(&self, _: &str, _: Option<&str>) -> Result<String, PromptError> {
            Err(PromptError::NoOperator("test".into()))
        }
        fn confirm(&self, _: &str, _: bool) -> Result<bool, PromptError> {
            Err(PromptError::NoOperator("test".into()))
        }
        fn show_secret_once(&self, _: &str, _: &str) -> Result<(), PromptError> {
            Err(PromptError::NoOperator("test".into()))
        }
    }

    /// The output lines a step showed.
    struct Shown(Arc<Mutex<Vec<String>>>);

    impl Reporter for Shown {
        fn event(&mut self, e: &RunEvent) {
            if let RunEvent::StepOutput { line, .. } = e
                && let Ok(mut v) = self.0.lock()
            {
                v.push(line.clone());
            }
        }
    }

    /// Runs `f` with a step context; `cancel_after` presses Ctrl-C.
    fn with_ctx<T>(
        quiet: bool,
        cancel_after: Option<Duration>,
        f: impl AsyncFnOnce(&ActionCtx<'_>) -> T,
    ) -> (T, Vec<String>) {
        let shown = Arc::new(Mutex::new(Vec::new()));
        let bus = EventBus::new(Redactor::new());
        bus.add(Box::new(Shown(shown.clone())));
        let run = RunInfo {
            id: "t".into(),
            runbook: "t".into(),
            operator: "test".into(),
            dry_run: false,
            started_at: "now".into(),
            failed_step: None,
        };
        let values = Values::new(run, Redactor::new());
        let (tx, cancel) = Cancel::never();
        let ctx = ActionCtx {
            step_id: "s",
            values: &values,
            dry_run: false,
            bus: &bus,
            cancel: &cancel,
            timeout: None,
            quiet,
            operator: &NoOperator,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let r = rt.block_on(async {
            if let Some(after) = cancel_after {
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(1);
                });
            }
            f(&ctx).await
        });
        let lines = shown.lock().map(|v| v.clone()).unwrap_or_default();
        (r, lines)
    }

    fn sh(script: &str) -> Command {
        let mut c = command("sh", &[]);
        c.arg("-c").arg(script);
        c
    }

    const STREAM_LINES: Reading = Reading {
        stream: true,
        keep: Keep::Lines,
    };

    #[test]
    fn output_is_read_line_by_line_with_the_exit_code() {
        let script =
            "printf 'a\\r\\nb\\n'; echo e >&2; printf 'bad \\377\\n'; printf 'last'; exit 3";
        let (r, shown) = with_ctx(false, None, async |ctx| {
            run(sh(script), ctx, None, STREAM_LINES).await
        });
        let e = r.expect("ran");
        assert_eq!(e.code, Some(3));
        assert_eq!(e.stdout, "a\nb\nbad \u{fffd}\nlast\n");
        assert_eq!(e.stderr, "e\n");
        assert_eq!(shown.len(), 5, "{shown:?}");
        assert_eq!(e.excerpt.len(), 5);
        assert!(shown.contains(&"a".to_owned()) && shown.contains(&"last".to_owned()));

        let how = Reading {
            stream: false,
            keep: Keep::AsWritten,
        };
        let (r, shown) = with_ctx(false, None, async |ctx| {
            run(sh("printf 'a\\r\\nb'"), ctx, None, how).await
        });
        let e = r.expect("ran");
        assert_eq!((e.code, e.stdout.as_str()), (Some(0), "a\r\nb\n"));
        assert_eq!(e.excerpt, ["a", "b"]);
        assert!(shown.is_empty());
    }

    #[test]
    fn a_quiet_step_shows_and_keeps_no_line() {
        let (r, shown) = with_ctx(true, None, async |ctx| {
            run(sh("echo secret"), ctx, None, STREAM_LINES).await
        });
        let e = r.expect("ran");
        assert_eq!(e.stdout, "secret\n");
        assert!(e.excerpt.is_empty() && shown.is_empty());
    }

    #[test]
    fn stdin_reaches_the_command_and_the_excerpt_keeps_the_last_lines() {
        let (r, _) = with_ctx(false, None, async |ctx| {
            run(
                sh("cat; seq 1 30"),
                ctx,
                Some(b"from stdin\n"),
                STREAM_LINES,
            )
            .await
        });
        let e = r.expect("ran");
        assert!(e.stdout.starts_with("from stdin\n1\n"), "{}", e.stdout);
        assert_eq!(e.excerpt.len(), EXCERPT_LINES);
        assert_eq!(e.excerpt.last().map(String::as_str), Some("30"));
    }

    #[test]
    fn cancelling_stops_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let start = std::time::Instant::now();
        let (r, _) = with_ctx(false, Some(Duration::from_millis(300)), async |ctx| {
            run(sh(&script), ctx, None, STREAM_LINES).await
        });
        assert!(matches!(r, Err(RunError::Cancelled)), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        // The grandchild got the group's signals: gone, or a zombie nobody reaped yet.
        let gone = (0..100).any(|_| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let alive = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'));
            if alive {
                std::thread::sleep(Duration::from_millis(20));
            }
            !alive
        });
        assert!(gone, "the background sleep {pid} outlived the step");
    }

    #[test]
    fn a_missing_program_is_a_start_error() {
        let (r, _) = with_ctx(false, None, async |ctx| {
            run(
                command("/nonexistent/drctl-test", &[]),
                ctx,
                None,
                STREAM_LINES,
            )
            .await
        });
        assert!(matches!(r, Err(RunError::Start(_))), "{r:?}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cmd = command("/nonexistent/drctl-test", &[]);
        assert!(
            rt.block_on(output_within(cmd, Duration::from_secs(5)))
                .is_none()
        );
    }
}
