//! The actions that need no remote system: shell, sleep, http.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::backend::{ActionCtx, ActionError, ActionResult};
use crate::runbook::action::{Http, HttpMethod, Shell, Sink, Sleep};

/// Most output kept in `result.stdout` / `result.stderr`.
const MAX_CAPTURE: usize = 1024 * 1024;
/// Lines of output kept for the journal and report.
pub const EXCERPT_LINES: usize = 20;

fn render_err(e: super::context::ContextError) -> ActionError {
    ActionError::failed(e.to_string())
}

/// Kills the whole process group of a child when dropped (timeout, cancel, crash of the
/// step future), so no grandchild outlives the step.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn signal(&self, sig: i32) {
        if let Some(pgid) = self.0 {
            // SAFETY: signalling a process group we created.
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

pub async fn shell(a: &Shell, ctx: &ActionCtx<'_>) -> Result<ActionResult, ActionError> {
    let v = ctx.values;
    let mut cmd = if a.argv.is_empty() {
        let script = match &a.script {
            Some(s) => v.render(s, Sink::Command).map_err(render_err)?,
            None => {
                return Err(ActionError::failed(
                    "shell step has no argv or script",
                ));
            }
        };
        let mut c = tokio::process::Command::new("bash");
        c.arg("-euo").arg("pipefail").arg("-c").arg(script);
        c
    } else {
        let argv: Vec<String> = a
            .argv
            .iter()
            .map(|t| v.render(t, Sink::Shown))
            .collect::<Result<_, _>>()
            .map_err(render_err)?;
        let mut c = tokio::process::Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    if let Some(cwd) = &a.cwd {
        cmd.current_dir(v.render(cwd, Sink::Shown).map_err(render_err)?);
    }
    for k in &v.scrub_env {
        cmd.env_remove(k);
    }
    // If drctl dies (SIGKILL, a closed laptop), the step's command dies with it rather
    // than running on unobserved while a resume starts it again.
    // SAFETY: prctl is async-signal-safe and only affects the child being started.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    for (k, val) in &a.env {
        // Secrets reach the command here, never through argv.
        cmd.env(k, v.render(val, Sink::Hidden).map_err(render_err)?);
    }
    let stdin = match &a.stdin {
        Some(s) => Some(v.render(s, Sink::Hidden).map_err(render_err)?),
        None => None,
    };
    if a.tty {
        // The operator talks to the command directly; nothing is captured. When drctl's
        // stdout is not the terminal (`--output json` into a pipe), the command writes to
        // stderr instead, so it cannot corrupt the event stream.
        use std::io::IsTerminal;
        let out = if std::io::stdout().is_terminal() {
            Stdio::inherit()
        } else {
            use std::os::fd::AsFd;
            std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map(Stdio::from)
                .map_err(|e| ActionError::failed(format!("cannot pass stderr on: {e}")))?
        };
        cmd.stdin(Stdio::inherit())
            .stdout(out)
            .stderr(Stdio::inherit());
        let status = cmd
            .status()
            .await
            .map_err(|e| ActionError::failed(format!("cannot start the command: {e}")))?;
        return match status.code() {
            Some(0) => Ok(ActionResult {
                value: serde_json::json!({ "exit_code": 0 }),
                lines: Vec::new(),
            }),
            Some(c) => Err(ActionError::failed(format!(
                "the command failed with exit code {c}"
            ))),
            None => Err(ActionError::failed(
                "the command was killed by a signal",
            )),
        };
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own process group: the terminal's Ctrl-C reaches drctl only, which then stops
    // the step in order.
    cmd.process_group(0);
    cmd.kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| ActionError::failed(format!("cannot start the command: {e}")))?;
    let guard = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| ActionError::failed(format!("cannot write the command's stdin: {e}")))?;
        drop(pipe);
    }
    let out = child.stdout.take();
    let err = child.stderr.take();
    let read = async {
        let mut stdout = String::new();
        let mut stderr = String::new();
        let mut excerpt: Vec<String> = Vec::new();
        let mut o = out.map(|s| BufReader::new(s).lines());
        let mut e = err.map(|s| BufReader::new(s).lines());
        loop {
            let (line, is_err) = tokio::select! {
                l = async { match o.as_mut() { Some(r) => r.next_line().await, None => std::future::pending().await } } => (l, false),
                l = async { match e.as_mut() { Some(r) => r.next_line().await, None => std::future::pending().await } } => (l, true),
            };
            match line {
                Ok(Some(l)) => {
                    ctx.output(l.clone());
                    let buf = if is_err { &mut stderr } else { &mut stdout };
                    if buf.len() < MAX_CAPTURE {
                        buf.push_str(&l);
                        buf.push('\n');
                    }
                    excerpt.push(l);
                    if excerpt.len() > EXCERPT_LINES {
                        excerpt.remove(0);
                    }
                }
                Ok(None) | Err(_) => {
                    if is_err {
                        e = None;
                    } else {
                        o = None;
                    }
                    if o.is_none() && e.is_none() {
                        break;
                    }
                }
            }
        }
        (stdout, stderr, excerpt)
    };
    let ((stdout, stderr, excerpt), status) = tokio::select! {
        r = async { let r = read.await; let s = child.wait().await; (r, s) } => r,
        _ = ctx.cancel.cancelled() => {
            guard.signal(libc::SIGTERM);
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            return Err(ActionError::Cancelled);
        }
    };
    let status =
        status.map_err(|e| ActionError::failed(format!("cannot wait for the command: {e}")))?;
    drop(guard);
    let code = status.code();
    let value = serde_json::json!({
        "exit_code": code,
        "stdout": stdout,
        "stderr": stderr,
    });
    if status.success() {
        Ok(ActionResult {
            value,
            lines: excerpt,
        })
    } else {
        let last = if ctx.quiet {
            String::new()
        } else {
            stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        };
        let how = match code {
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal".to_owned(),
        };
        Err(ActionError::failed(format!(
            "the command failed with {how}{last}"
        )))
    }
}

pub async fn sleep(a: &Sleep, ctx: &ActionCtx<'_>) -> Result<ActionResult, ActionError> {
    if let Some(r) = &a.reason {
        ctx.progress(ctx.values.render(r, Sink::Shown).map_err(render_err)?);
    }
    let done = ActionResult {
        value: serde_json::json!({ "slept_ms": u64::try_from(a.duration.value.as_millis()).unwrap_or(u64::MAX) }),
        lines: Vec::new(),
    };
    // A zero sleep returns at once (a timer would round it up to the next tick).
    if a.duration.value.is_zero() {
        return Ok(done);
    }
    tokio::select! {
        _ = tokio::time::sleep(a.duration.value) => Ok(done),
        _ = ctx.cancel.cancelled() => Err(ActionError::Cancelled),
    }
}

pub async fn http(a: &Http, ctx: &ActionCtx<'_>) -> Result<ActionResult, ActionError> {
    let v = ctx.values;
    let url = v.render(&a.url, Sink::Shown).map_err(render_err)?;
    let contains = match &a.contains {
        Some(c) => Some(v.render(c, Sink::Shown).map_err(render_err)?),
        None => None,
    };
    let ca = match &a.ca_cert {
        Some(c) => Some(v.render(c, Sink::Shown).map_err(render_err)?),
        None => None,
    };
    let expect: Vec<u16> = if a.expect_status.is_empty() {
        vec![200]
    } else {
        a.expect_status.clone()
    };
    let method = a.method;
    let timeout = ctx.timeout.unwrap_or(Duration::from_secs(30));
    let task =
        tokio::task::spawn_blocking(move || http_blocking(&url, method, ca.as_deref(), timeout));
    let (status, body) = tokio::select! {
        r = task => r.map_err(|e| ActionError::failed(format!("the HTTP check did not finish: {e}")))??,
        _ = ctx.cancel.cancelled() => return Err(ActionError::Cancelled),
    };
    ctx.output(format!("HTTP {status}"));
    if !expect.contains(&status) {
        return Err(ActionError::failed(format!(
            "answered HTTP {status}, expected {}",
            expect
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    if let Some(c) = contains
        && !body.contains(&c)
    {
        return Err(ActionError::failed(format!(
            "the answer does not contain `{c}`"
        )));
    }
    Ok(ActionResult {
        value: serde_json::json!({ "status": status, "body": body }),
        lines: vec![format!("HTTP {status}")],
    })
}

fn http_blocking(
    url: &str,
    method: HttpMethod,
    ca: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), ActionError> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if let Some(path) = ca {
        let pem = std::fs::read(path)
            .map_err(|e| ActionError::failed(format!("cannot read the CA file {path}: {e}")))?;
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(ActionError::failed(format!(
                "{path} holds no PEM certificate"
            )));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .tls_config(tls.build())
        .build()
        .into();
    let resp = match method {
        HttpMethod::Get => agent.get(url).call(),
        HttpMethod::Head => agent.head(url).call(),
    };
    let mut resp = resp.map_err(|e| ActionError::failed(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let body = if method == HttpMethod::Get {
        resp.body_mut()
            .with_config()
            .limit(MAX_CAPTURE as u64)
            .read_to_string()
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok((status, body))
}
