//! Rollouts (restart and status), logs, port-forward.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::conn::Conn;
use super::core::MANAGER;
use super::resource::{self, Kind, condition, name_of, str_at};
use super::watch::{self, Verdict};
use super::{KubeError, Out, Result};
use crate::runbook::action::{
    KubeLogs, KubePortForward, KubeRolloutRestart, KubeRolloutStatus, WorkloadKind,
};

const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

fn workload_kind(k: WorkloadKind) -> Kind {
    let (kind, plural) = match k {
        WorkloadKind::Deployment => ("Deployment", "deployments"),
        WorkloadKind::StatefulSet => ("StatefulSet", "statefulsets"),
        WorkloadKind::DaemonSet => ("DaemonSet", "daemonsets"),
    };
    Kind {
        ar: kube::api::ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        },
        namespaced: true,
    }
}

fn names(out: &Out<'_>, names: &[crate::runbook::Text]) -> Result<Vec<String>> {
    names.iter().map(|n| out.shown(n)).collect()
}

// ---------------------------------------------------------------------------------------
// kube.rollout-restart
// ---------------------------------------------------------------------------------------

pub(crate) async fn rollout_restart(
    conn: &Conn,
    a: &KubeRolloutRestart,
    out: &mut Out<'_>,
) -> Result<Value> {
    let ns = out.shown(&a.namespace)?;
    let kind = workload_kind(a.kind);
    let api = kind.api(conn, Some(&ns));
    let names = names(out, &a.names)?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let label = a.kind.as_str();
    // Check every workload exists before restarting any.
    let mut live = Vec::new();
    for n in &names {
        let what = kind.describe(n, Some(&ns));
        let obj = conn
            .retry(out, &what, || api.get_opt(n))
            .await?
            .ok_or(KubeError::NotFound { what })?;
        live.push(watch::to_value(&obj));
    }
    if out.dry_run() {
        for (n, v) in names.iter().zip(&live) {
            let prev = v
                .pointer("/spec/template/metadata/annotations")
                .and_then(|a| a.get(RESTARTED_AT))
                .map(resource::text)
                .unwrap_or_else(|| "(never)".into());
            out.line(format!(
                "would restart {label}/{n} in {ns}: pod template annotation {RESTARTED_AT}: {prev} -> {now}"
            ));
        }
        return Ok(json!({ "restarted": [], "restarted_at": now }));
    }
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let p = Patch::Strategic(&patch);
    for n in &names {
        let what = kind.describe(n, Some(&ns));
        conn.retry(out, &what, || api.patch(n, &pp, &p)).await?;
        out.line(format!("{label}/{n} restarted"));
    }
    Ok(json!({ "restarted": names, "restarted_at": now }))
}

// ---------------------------------------------------------------------------------------
// kube.rollout-status
// ---------------------------------------------------------------------------------------

fn num(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

/// Whether a workload has rolled out, kubectl's rules; Err for a rollout that cannot end.
pub(super) fn rolled_out(
    kind: WorkloadKind,
    v: &Value,
) -> std::result::Result<(bool, String), String> {
    let generation = num(v, "/metadata/generation");
    let observed = num(v, "/status/observedGeneration");
    if observed < generation {
        return Ok((false, "waiting for the controller to see the change".into()));
    }
    match kind {
        WorkloadKind::Deployment => {
            let progressing = v
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| str_at(c, "/type") == "Progressing"));
            if progressing.is_some_and(|c| str_at(c, "/reason") == "ProgressDeadlineExceeded") {
                return Err("exceeded its progress deadline".into());
            }
            let want = v
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let updated = num(v, "/status/updatedReplicas");
            let total = num(v, "/status/replicas");
            let available = num(v, "/status/availableReplicas");
            if updated < want {
                Ok((false, format!("{updated}/{want} replicas updated")))
            } else if total > updated {
                Ok((
                    false,
                    format!("{} old replicas pending termination", total - updated),
                ))
            } else if available < updated {
                Ok((
                    false,
                    format!("{available}/{updated} updated replicas available"),
                ))
            } else {
                Ok((true, format!("{available}/{want} available")))
            }
        }
        WorkloadKind::StatefulSet => {
            let want = v
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let ready = num(v, "/status/readyReplicas");
            let updated = num(v, "/status/updatedReplicas");
            let rev_done =
                str_at(v, "/status/updateRevision") == str_at(v, "/status/currentRevision");
            if ready < want {
                Ok((false, format!("{ready}/{want} pods ready")))
            } else if updated < want || !rev_done {
                Ok((false, format!("{updated}/{want} pods updated")))
            } else {
                Ok((true, format!("{ready}/{want} ready")))
            }
        }
        WorkloadKind::DaemonSet => {
            let want = num(v, "/status/desiredNumberScheduled");
            let updated = num(v, "/status/updatedNumberScheduled");
            let available = num(v, "/status/numberAvailable");
            if updated < want {
                Ok((false, format!("{updated}/{want} pods updated")))
            } else if available < want {
                Ok((false, format!("{available}/{want} pods available")))
            } else {
                Ok((true, format!("{available}/{want} available")))
            }
        }
    }
}

pub(crate) async fn rollout_status(
    conn: &Conn,
    a: &KubeRolloutStatus,
    out: &mut Out<'_>,
) -> Result<Value> {
    let ns = out.shown(&a.namespace)?;
    let kind = workload_kind(a.kind);
    let names = names(out, &a.names)?;
    let label = a.kind.as_str();
    let mut cfg = watcher::Config::default();
    if let [one] = names.as_slice() {
        cfg = cfg.fields(&format!("metadata.name={one}"));
    }
    let what = format!("{} in namespace {ns}", kind.resource_name());
    let judge = |objs: &BTreeMap<String, Value>| {
        let mut late = Vec::new();
        let mut failed = None;
        let mut details = Vec::new();
        for n in &names {
            match objs.get(&format!("{ns}/{n}")) {
                None => late.push(format!("{n} (not found)")),
                Some(v) => match rolled_out(a.kind, v) {
                    Ok((true, d)) => details.push(format!("{label}/{n}: {d}")),
                    Ok((false, d)) => late.push(format!("{n} ({d})")),
                    Err(e) => {
                        failed = Some(format!(
                            "{label}/{n} in {ns} {e}; `kubectl describe {label} {n} -n {ns}` says why"
                        ))
                    }
                },
            }
        }
        Verdict {
            done: late.is_empty(),
            summary: if late.is_empty() {
                format!(
                    "{} {label}(s) rolled out: {}",
                    names.len(),
                    details.join(", ")
                )
            } else {
                format!(
                    "{}/{} {label}(s) rolled out",
                    names.len() - late.len(),
                    names.len()
                )
            },
            late,
            failed,
        }
    };
    watch::until(conn, out, kind.api(conn, Some(&ns)), cfg, &what, judge).await?;
    Ok(json!({ "rolled_out": names }))
}

// ---------------------------------------------------------------------------------------
// kube.logs
// ---------------------------------------------------------------------------------------

/// Log text kept in the result (the lines are shown whole).
const RESULT_TEXT_MAX: usize = 64 * 1024;

pub(crate) async fn logs(conn: &Conn, a: &KubeLogs, out: &mut Out<'_>) -> Result<Value> {
    let ns = out.shown(&a.namespace)?;
    let pods_api: Api<Pod> = Api::namespaced(conn.client.clone(), &ns);
    let container = out.shown_opt(&a.container)?;
    let mut job_name = None;
    let pods: Vec<String> = if let Some(p) = out.shown_opt(&a.pod)? {
        vec![p]
    } else {
        let selector = if let Some(s) = out.shown_opt(&a.selector)? {
            s
        } else if let Some(j) = out.shown_opt(&a.job)? {
            job_name = Some(j.clone());
            format!("job-name={j}")
        } else if let Some(cj) = out.shown_opt(&a.cronjob)? {
            let j = newest_job(conn, out, &ns, &cj).await?;
            out.line(format!("newest job of cronjob/{cj}: {j}"));
            job_name = Some(j.clone());
            format!("job-name={j}")
        } else {
            return Err(KubeError::Invalid(
                "kube.logs needs one of pod, selector, job, cronjob".into(),
            ));
        };
        let lp = ListParams::default().labels(&selector);
        let what = format!("pods matching `{selector}` in namespace {ns}");
        let list = conn.retry(out, &what, || pods_api.list(&lp)).await?;
        let mut items: Vec<_> = list.items;
        items.sort_by(|x, y| {
            x.metadata
                .creation_timestamp
                .cmp(&y.metadata.creation_timestamp)
        });
        if items.is_empty() {
            return Err(KubeError::NotFound { what });
        }
        items.into_iter().filter_map(|p| p.metadata.name).collect()
    };
    let lp = LogParams {
        container: container.clone(),
        tail_lines: Some(i64::from(a.tail.unwrap_or(100))),
        ..Default::default()
    };
    let mut text = String::new();
    let mut count = 0usize;
    let many = pods.len() > 1;
    for p in &pods {
        let what = format!("pods \"{p}\" in namespace \"{ns}\"");
        let log = conn.retry(out, &what, || pods_api.logs(p, &lp)).await?;
        for l in log.lines() {
            count += 1;
            out.line(if many {
                format!("[{p}] {l}")
            } else {
                l.to_owned()
            });
        }
        text.push_str(&log);
    }
    if text.len() > RESULT_TEXT_MAX {
        let mut cut = text.len() - RESULT_TEXT_MAX;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text = text[cut..].to_owned();
    }
    Ok(json!({ "pods": pods, "job": job_name, "lines": count, "text": text }))
}

/// The newest Job a CronJob started (owner reference, else the `CRONJOB-` name prefix that
/// `kubectl create job --from=cronjob/...` and the controller use).
async fn newest_job(conn: &Conn, out: &Out<'_>, ns: &str, cj: &str) -> Result<String> {
    let jobs: Api<Job> = Api::namespaced(conn.client.clone(), ns);
    let what = format!("jobs in namespace {ns}");
    let lp = ListParams::default();
    let list = conn.retry(out, &what, || jobs.list(&lp)).await?;
    list.items
        .into_iter()
        .filter(|j| {
            let owned = j.metadata.owner_references.as_ref().is_some_and(|o| {
                o.iter().any(|r| r.kind == "CronJob" && r.name == cj)
            });
            owned
                || j.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&format!("{cj}-")))
        })
        .max_by(|x, y| {
            x.metadata
                .creation_timestamp
                .cmp(&y.metadata.creation_timestamp)
        })
        .and_then(|j| j.metadata.name)
        .ok_or_else(|| {
            KubeError::Failed(format!(
                "cronjob/{cj} in {ns} has started no job yet; start one with `kubectl create job -n {ns} --from=cronjob/{cj} {cj}-manual`"
            ))
        })
}

// ---------------------------------------------------------------------------------------
// kube.port-forward
// ---------------------------------------------------------------------------------------

/// An open port-forward; closed when dropped (the end of the run).
pub(crate) struct Forward {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The port of a Service's pods behind its service port `port`, as kubectl resolves it:
/// `targetPort` as a number, or a container port name looked up in the pod.
enum PodPort {
    Number(u16),
    Named(String),
}

/// The pod behind `pod/NAME`, `svc/NAME` or `deployment/NAME` (a Ready one when several),
/// and the pod port that `port` reaches (a Service maps its port to its `targetPort`).
async fn target_pod(
    conn: &Conn,
    out: &Out<'_>,
    ns: &str,
    target: &str,
    port: u16,
) -> Result<(String, u16)> {
    let (kind, name) = target.split_once('/').unwrap_or(("pod", target));
    let mut pod_port = PodPort::Number(port);
    let selector: BTreeMap<String, String> = match kind {
        "pod" | "pods" | "po" => return Ok((name.to_owned(), port)),
        "svc" | "service" | "services" => {
            let api: Api<k8s_openapi::api::core::v1::Service> =
                Api::namespaced(conn.client.clone(), ns);
            let what = format!("services \"{name}\" in namespace \"{ns}\"");
            let svc = conn.retry(out, &what, || api.get(name)).await?;
            let spec = svc.spec.unwrap_or_default();
            let ports = spec.ports.unwrap_or_default();
            let Some(sp) = ports.iter().find(|p| p.port == i32::from(port)) else {
                let have: Vec<String> = ports.iter().map(|p| p.port.to_string()).collect();
                return Err(KubeError::Invalid(format!(
                    "service {ns}/{name} has no port {port} (its ports: {}); give one of them as `port`",
                    if have.is_empty() {
                        "none".to_owned()
                    } else {
                        have.join(", ")
                    }
                )));
            };
            use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
            pod_port = match &sp.target_port {
                Some(IntOrString::Int(n)) => PodPort::Number(u16::try_from(*n).map_err(|_| {
                    KubeError::Invalid(format!("service {ns}/{name}: targetPort {n} is not a port"))
                })?),
                Some(IntOrString::String(n)) => PodPort::Named(n.clone()),
                None => PodPort::Number(port),
            };
            spec.selector.unwrap_or_default()
        }
        "deployment" | "deploy" | "deployments" | "statefulset" | "sts" => {
            let k = if kind.starts_with('d') {
                WorkloadKind::Deployment
            } else {
                WorkloadKind::StatefulSet
            };
            let api = workload_kind(k).api(conn, Some(ns));
            let what = workload_kind(k).describe(name, Some(ns));
            let obj = conn.retry(out, &what, || api.get(name)).await?;
            let v = watch::to_value(&obj);
            v.pointer("/spec/selector/matchLabels")
                .and_then(|m| serde_json::from_value(m.clone()).ok())
                .unwrap_or_default()
        }
        other => {
            return Err(KubeError::Invalid(format!(
                "port-forward target `{target}`: `{other}` is not pod, svc or deployment"
            )));
        }
    };
    if selector.is_empty() {
        return Err(KubeError::Failed(format!(
            "{target} in {ns} selects no pods (no selector)"
        )));
    }
    let sel = selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let api: Api<Pod> = Api::namespaced(conn.client.clone(), ns);
    let lp = ListParams::default().labels(&sel);
    let what = format!("pods of {target} in namespace {ns}");
    let pods = conn.retry(out, &what, || api.list(&lp)).await?;
    let values: Vec<Value> = pods
        .items
        .iter()
        .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
        .collect();
    let pod = values
        .iter()
        .find(|p| condition(p, "Ready") == "True")
        .or(values.first())
        .ok_or(KubeError::NotFound { what })?;
    let port = match pod_port {
        PodPort::Number(n) => n,
        PodPort::Named(want) => named_container_port(pod, &want).ok_or_else(|| {
            KubeError::Invalid(format!(
                "{target} in {ns}: targetPort `{want}` names no container port of pod {}",
                name_of(pod)
            ))
        })?,
    };
    Ok((name_of(pod).to_owned(), port))
}

/// The number of the container port called `name` in a pod (JSON form).
pub(super) fn named_container_port(pod: &Value, name: &str) -> Option<u16> {
    pod.pointer("/spec/containers")?
        .as_array()?
        .iter()
        .filter_map(|c| c.get("ports")?.as_array())
        .flatten()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("containerPort")?.as_u64())
        .and_then(|n| u16::try_from(n).ok())
}

pub(crate) async fn port_forward(
    conn: &Conn,
    a: &KubePortForward,
    out: &mut Out<'_>,
) -> Result<(Value, Option<Forward>)> {
    let ns = out.shown(&a.namespace)?;
    let target = out.shown(&a.target)?;
    let (pod, port) = target_pod(conn, out, &ns, &target, a.port).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", a.local_port.unwrap_or(0)))
        .await
        .map_err(|e| {
            KubeError::Failed(format!(
                "cannot listen on 127.0.0.1:{}: {e}",
                a.local_port.unwrap_or(0)
            ))
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| KubeError::Failed(format!("local port: {e}")))?;
    let api: Api<Pod> = Api::namespaced(conn.client.clone(), &ns);
    // Prove the tunnel opens now, so the step fails here rather than a later one.
    let what = format!("port-forward to pods \"{pod}\" in namespace \"{ns}\" port {port}");
    let ports = [port];
    let probe = conn
        .retry(out, &what, || api.portforward(&pod, &ports))
        .await?;
    probe.abort();
    let pod_name = pod.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                // Out of file descriptors, say: wait rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let api = api.clone();
            let pod = pod_name.clone();
            tokio::spawn(async move {
                let Ok(mut pf) = api.portforward(&pod, &[port]).await else {
                    return;
                };
                if let Some(mut upstream) = pf.take_stream(port) {
                    let _ = tokio::io::copy_bidirectional(&mut sock, &mut upstream).await;
                }
                pf.abort();
            });
        }
    });
    let address = local.to_string();
    out.line(format!(
        "forwarding {address} -> {ns}/{pod}:{port} ({target}{}) until the run ends",
        if port == a.port {
            String::new()
        } else {
            format!(" port {}", a.port)
        }
    ));
    Ok((
        json!({ "address": address, "url": format!("http://{address}"), "port": local.port(), "pod": pod }),
        Some(Forward { task }),
    ))
}
