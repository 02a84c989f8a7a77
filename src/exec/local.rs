//! The actions that need no remote system: shell, sleep, http. A shell step's command runs
//! through `backends::process` (process group, output, cancellation).

use std::process::Stdio;
use std::time::Duration;

use super::backend::{ActionCtx, ActionError, ActionResult};
use crate::backends::process::{self, Keep, MAX_CAPTURE, Reading, RunError};
use crate::runbook::action::{Http, HttpMethod, Shell, Sink, Sleep, WITHHELD_CREDENTIALS};

pub use crate::backends::process::EXCERPT_LINES;

fn render_err(e: super::context::ContextError) -> ActionError {
    ActionError::failed(e.to_string())
}

fn run_err(e: RunError) -> ActionError {
    match e {
        RunError::Cancelled => ActionError::Cancelled,
        other => ActionError::failed(other.to_string()),
    }
}

pub async fn shell(a: &Shell, ctx: &ActionCtx<'_>) -> Result<ActionResult, ActionError> {
    let v = ctx.values;
    // The run's withheld variables, but for the credentials this step asks for.
    let scrub: Vec<String> = v
        .scrub_env
        .iter()
        .filter(|k| !(a.inherit_env.contains(k) && WITHHELD_CREDENTIALS.contains(&k.as_str())))
        .cloned()
        .collect();
    let mut cmd = if a.argv.is_empty() {
        let script = match &a.script {
            Some(s) => v.render(s, Sink::Command).map_err(render_err)?,
            None => {
                return Err(ActionError::failed("shell step has no argv or script"));
            }
        };
        let mut c = process::command("bash", &scrub);
        c.arg("-euo").arg("pipefail").arg("-c").arg(script);
        c
    } else {
        let argv: Vec<String> = a
            .argv
            .iter()
            .map(|t| v.render(t, Sink::Shown))
            .collect::<Result<_, _>>()
            .map_err(render_err)?;
        let mut c = process::command(&argv[0], &scrub);
        c.args(&argv[1..]);
        c
    };
    if let Some(cwd) = &a.cwd {
        cmd.current_dir(v.render(cwd, Sink::Shown).map_err(render_err)?);
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
        let status = process::attached(cmd, out).await.map_err(run_err)?;
        return match status.code() {
            Some(0) => Ok(ActionResult {
                value: serde_json::json!({ "exit_code": 0 }),
                lines: Vec::new(),
            }),
            Some(c) => Err(ActionError::failed(format!(
                "the command failed with exit code {c}"
            ))),
            None => Err(ActionError::failed("the command was killed by a signal")),
        };
    }
    let how = Reading {
        stream: true,
        keep: Keep::Lines,
    };
    let e = process::run(cmd, ctx, stdin.as_deref().map(str::as_bytes), how)
        .await
        .map_err(run_err)?;
    let value = serde_json::json!({
        "exit_code": e.code,
        "stdout": e.stdout,
        "stderr": e.stderr,
    });
    if e.code == Some(0) {
        return Ok(ActionResult {
            value,
            lines: e.excerpt,
        });
    }
    let last = if ctx.quiet {
        String::new()
    } else {
        e.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {l}"))
            .unwrap_or_default()
    };
    let how = match e.code {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".to_owned(),
    };
    Err(ActionError::failed(format!(
        "the command failed with {how}{last}"
    )))
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
