//! Pod annotations that tie a simulated pod to a real process in the lab:
//!
//! - `kubesim.drctl.dev/ready-url`: the pod is Ready exactly while a GET of that URL answers
//!   200, probed every 500 ms once the pod is Running (a readinessProbe with periodSeconds).
//! - `kubesim.drctl.dev/on-delete`: `sh -c COMMAND` runs when the pod is deleted; the
//!   replacement a StatefulSet/Deployment creates waits until the command has finished.
//!
//! (`kubesim.drctl.dev/port-forward` is read by [`crate::portforward`].)

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::api::Sim;
use crate::store::{Scope, Store, meta_str, now_rfc3339};

pub const READY_URL_ANNOTATION: &str = "kubesim.drctl.dev/ready-url";
pub const ON_DELETE_ANNOTATION: &str = "kubesim.drctl.dev/on-delete";

/// How often readiness URLs are probed, and how long one probe may take (the kubelet's
/// default timeoutSeconds is 1).
const PROBE_PERIOD: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub fn annotation<'a>(obj: &'a Value, name: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(name))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

// ---------------------------------------------------------------------------------------------
// Readiness

/// `(host:port, path)` of a plain-HTTP URL.
fn parse_http_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    let authority = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// One probe: `Ok(status)` of a GET, or why there was none. Loopback targets only.
async fn http_status(url: &str) -> Result<u16, String> {
    let (authority, path) = parse_http_url(url)?;
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&authority)
        .await
        .map_err(|e| format!("resolving {authority}: {e}"))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| format!("kubesim probes loopback addresses only, not {authority}"))?;
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .filter(|_| line.starts_with("HTTP/"))
        .ok_or_else(|| format!("not an HTTP response: {:?}", line.lines().next()))
}

async fn probe(url: &str) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, http_status(url)).await,
        Ok(Ok(200))
    )
}

fn terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some()
}

fn running(pod: &Value) -> bool {
    pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
}

/// `pod` with Ready/ContainersReady and every container's `ready` set to `ready`; the
/// lastTransitionTime of a condition changes only when its status does.
pub fn with_readiness(pod: &Value, ready: bool) -> Value {
    let mut next = pod.clone();
    let want = if ready { "True" } else { "False" };
    if !next["status"]["conditions"].is_array() {
        next["status"]["conditions"] = json!([]);
    }
    if let Some(conds) = next["status"]["conditions"].as_array_mut() {
        for kind in ["ContainersReady", "Ready"] {
            match conds
                .iter_mut()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
            {
                Some(c) if c.get("status").and_then(Value::as_str) == Some(want) => {}
                Some(c) => {
                    c["status"] = json!(want);
                    c["lastTransitionTime"] = json!(now_rfc3339());
                }
                None => conds.push(json!({"type": kind, "status": want,
                    "lastTransitionTime": now_rfc3339(), "reason": "", "message": ""})),
            }
        }
    }
    if let Some(statuses) = next["status"]["containerStatuses"].as_array_mut() {
        for s in statuses {
            s["ready"] = json!(ready);
        }
    }
    next
}

/// Probes every Running pod that has a ready-url, every 500 ms, and writes Ready when it
/// changes (a real update: new resourceVersion, a MODIFIED event; nothing when unchanged).
pub async fn readiness(sim: Arc<Sim>) {
    let mut tick = tokio::time::interval(PROBE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let targets: Vec<(String, String, String, String)> = {
            let store = sim.store();
            let rt = store.core("pods");
            store
                .list(&rt, None)
                .into_iter()
                .filter(|p| running(p) && !terminating(p))
                .filter_map(|p| {
                    let url = annotation(&p, READY_URL_ANNOTATION)?.to_string();
                    Some((
                        meta_str(&p, "namespace").to_string(),
                        meta_str(&p, "name").to_string(),
                        meta_str(&p, "uid").to_string(),
                        url,
                    ))
                })
                .collect()
        };
        if targets.is_empty() {
            continue;
        }
        let results = futures_util::future::join_all(targets.into_iter().map(|t| async move {
            let ok = probe(&t.3).await;
            (t, ok)
        }))
        .await;
        let mut store = sim.store();
        let rt = store.core("pods");
        for ((ns, name, uid, url), ok) in results {
            let Ok(pod) = store.get(&rt, &ns, &name) else {
                continue;
            };
            // The pod may have been replaced, stopped or re-annotated meanwhile.
            if meta_str(&pod, "uid") != uid
                || !running(&pod)
                || terminating(&pod)
                || annotation(&pod, READY_URL_ANNOTATION) != Some(url.as_str())
            {
                continue;
            }
            let next = with_readiness(&pod, ok);
            if next != pod {
                eprintln!(
                    "kubesim: pod {ns}/{name} is {} ({url})",
                    if ok { "Ready" } else { "not Ready" }
                );
                let _ = store.update(&rt, &ns, &name, next, Scope::Internal);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// On-delete commands

/// Commands still running, by pod uid: the uid of the pod's controller (empty if none).
pub type RunningHooks = HashMap<String, String>;

/// Controllers (by uid) whose replacement pods must wait for an on-delete command.
pub fn blocked_owners(sim: &Sim) -> HashSet<String> {
    sim.hooks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .filter(|o| !o.is_empty())
        .cloned()
        .collect()
}

/// Starts the commands of pods deleted since the last call. Called with the store locked,
/// right after API deletes and at the start of every controller pass, so a controller never
/// sees a deleted pod without seeing its running command.
pub fn start_on_delete(sim: &Arc<Sim>, store: &mut Store) {
    for pod in store.take_deleted_hooked_pods() {
        let Some(cmd) = annotation(&pod, ON_DELETE_ANNOTATION) else {
            continue;
        };
        let uid = meta_str(&pod, "uid").to_string();
        let owner = pod
            .pointer("/metadata/ownerReferences/0/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        sim.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.clone(), owner);
        tokio::spawn(run_hook(
            sim.clone(),
            meta_str(&pod, "namespace").to_string(),
            meta_str(&pod, "name").to_string(),
            uid,
            cmd.to_string(),
        ));
    }
}

async fn run_hook(sim: Arc<Sim>, ns: String, name: String, uid: String, cmd: String) {
    let tag = format!("kubesim: on-delete {ns}/{name}:");
    let limit = Duration::from_millis(sim.scenario.on_delete_timeout_ms);
    eprintln!("{tag} running sh -c {cmd:?}");
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c")
        .arg(&cmd)
        .env("KUBESIM_POD_NAMESPACE", &ns)
        .env("KUBESIM_POD_NAME", &name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout stops what it started too.
        .process_group(0);
    match c.spawn() {
        Err(e) => eprintln!("{tag} cannot start sh: {e}"),
        Ok(mut child) => {
            // Output is logged until the pipes close, which may be after the command ends
            // when it started something in the background.
            if let Some(out) = child.stdout.take() {
                tokio::spawn(log_lines(tag.clone(), out));
            }
            if let Some(err) = child.stderr.take() {
                tokio::spawn(log_lines(tag.clone(), err));
            }
            match tokio::time::timeout(limit, child.wait()).await {
                Ok(Ok(status)) => eprintln!("{tag} finished ({status})"),
                Ok(Err(e)) => eprintln!("{tag} waiting for it: {e}"),
                Err(_) => {
                    eprintln!("{tag} still running after {limit:?}: killed");
                    if let Some(pid) = child.id() {
                        let _ = tokio::process::Command::new("kill")
                            .args(["-KILL", "--", &format!("-{pid}")])
                            .stdin(Stdio::null())
                            .status()
                            .await;
                    }
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
        }
    }
    sim.hooks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&uid);
}

async fn log_lines(tag: String, pipe: impl tokio::io::AsyncRead + Unpin) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{tag} {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8200/v1/sys/health?standbyok=true"),
            Ok((
                "127.0.0.1:8200".into(),
                "/v1/sys/health?standbyok=true".into()
            ))
        );
        assert_eq!(
            parse_http_url("http://localhost"),
            Ok(("localhost:80".into(), "/".into()))
        );
        assert!(parse_http_url("https://127.0.0.1/").is_err());
    }

    #[test]
    fn readiness_changes_only_what_differs() {
        let pod = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "t0"},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": "t0"}],
            "containerStatuses": [{"name": "c", "ready": true}]}});
        assert_eq!(with_readiness(&pod, true), pod);
        let down = with_readiness(&pod, false);
        assert_eq!(down["status"]["conditions"][0]["status"], "False");
        assert_eq!(down["status"]["conditions"][1]["status"], "False");
        assert_eq!(down["status"]["containerStatuses"][0]["ready"], false);
        assert_ne!(down["status"]["conditions"][0]["lastTransitionTime"], "t0");
    }
}
