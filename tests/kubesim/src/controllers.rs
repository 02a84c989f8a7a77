//! Scripted controllers: level-triggered loops that move objects through the states the real
//! controllers would, on the timings of the scenario. They run every 50 ms under the store lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::Sim;
use crate::scenario::Scenario;
use crate::store::{Scope, Store, meta_str, now_rfc3339};
use crate::types::ResourceType;

/// Controller memory that does not belong in objects.
#[derive(Default)]
struct Memory {
    /// Application uid -> when its hard-refresh annotation was first seen.
    refresh_seen: HashMap<String, Instant>,
    /// CronJob uid -> when it last started a Job.
    cron_last: HashMap<String, Instant>,
}

pub async fn run(sim: Arc<Sim>) {
    let mut mem = Memory::default();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        let mut store = sim.store();
        reconcile(&sim, &mut store, &mut mem);
    }
}

fn ms(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| d.as_millis() as u64)
}

/// An object's age on the scenario's clock in ms; None while its clock has not started
/// (`clocksStartAtWatch` before any watch of its type).
fn age_ms(store: &Store, obj: &Value) -> Option<u64> {
    store.age(obj).map(|d| d.as_millis() as u64)
}

/// Whether `after_ms` has passed on an object's clock (its age in ms; None while the clock
/// has not started: `clocksStartAtWatch` before any watch of its type).
fn passed(age_ms: Option<u64>, after_ms: u64) -> bool {
    age_ms.is_some_and(|a| a >= after_ms)
}

fn id(obj: &Value) -> String {
    format!("{}/{}", meta_str(obj, "namespace"), meta_str(obj, "name"))
}

fn crd_type(store: &Store, group: &str, kind: &str) -> Option<ResourceType> {
    store.find_kind(group, kind)
}

/// Writes `obj` back (everything, status included); errors mean it changed or vanished, and
/// the next tick sees the new state.
fn put(store: &mut Store, rt: &ResourceType, obj: Value) {
    let (ns, name) = (
        meta_str(&obj, "namespace").to_string(),
        meta_str(&obj, "name").to_string(),
    );
    let _ = store.update(rt, &ns, &name, obj, Scope::Internal);
}

fn condition(kind: &str, status: bool, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": if status { "True" } else { "False" }, "reason": reason,
           "message": message, "lastTransitionTime": now_rfc3339()})
}

fn cond_true(obj: &Value, kind: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(kind)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn terminating(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
}

fn reconcile(sim: &Arc<Sim>, store: &mut Store, mem: &mut Memory) {
    let sc = &sim.scenario;
    store.reap_namespaces();
    // Deleted pods' on-delete commands start before any replacement is considered.
    crate::pod_hooks::start_on_delete(sim, store);
    let blocked = crate::pod_hooks::blocked_owners(sim);
    workloads(store, &blocked);
    crate::pod_hooks::start_on_delete(sim, store);
    jobs(store, sc, mem);
    pods(store, sc);
    velero(store, sc);
    argocd(store, sc, mem);
    external_secrets(store, sc);
    longhorn(store, sc);
}

fn pod_ready(pod: &Value) -> bool {
    cond_true(pod, "Ready")
}

fn pods(store: &mut Store, sc: &Scenario) {
    let rt = store.core("pods");
    for pod in store.list(&rt, None) {
        if terminating(&pod)
            || pod.pointer("/status/phase").and_then(Value::as_str) != Some("Pending")
        {
            continue;
        }
        let age = age_ms(store, &pod);
        let job = pod
            .pointer("/metadata/labels/job-name")
            .and_then(Value::as_str);
        let mut next = pod.clone();
        let containers: Vec<Value> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let statuses = |ready: bool, state: Value| -> Value {
            Value::Array(
                containers
                    .iter()
                    .map(|c| {
                        json!({"name": c.get("name").cloned().unwrap_or(json!("main")),
                        "image": c.get("image").cloned().unwrap_or(json!("")),
                        "ready": ready, "restartCount": 0, "started": state.get("running").is_some(), "state": state})
                    })
                    .collect(),
            )
        };
        if let Some(job) = job {
            if !passed(age, sc.job_complete_after_ms) {
                continue;
            }
            let failed = sc
                .jobs_failing
                .iter()
                .any(|j| job == j || job.starts_with(&format!("{j}-")));
            let phase = if failed { "Failed" } else { "Succeeded" };
            let code = i32::from(failed);
            next["status"] = json!({
                "phase": phase,
                "startTime": now_rfc3339(),
                "conditions": [condition("Ready", false, "PodCompleted", ""), condition("PodScheduled", true, "", "")],
                "containerStatuses": statuses(false, json!({"terminated": {"exitCode": code, "reason": if failed { "Error" } else { "Completed" }}})),
            });
        } else {
            let key = id(&pod);
            if sc.pods_never_ready.contains(&key) {
                continue;
            }
            let after = sc
                .pod_ready_after_ms_for
                .get(&key)
                .copied()
                .unwrap_or(sc.pod_ready_after_ms);
            if !passed(age, after) {
                continue;
            }
            // With a ready-url, Running is not Ready: the prober decides (pod_hooks).
            let ready = crate::pod_hooks::annotation(&pod, crate::pod_hooks::READY_URL_ANNOTATION)
                .is_none();
            next["status"] = json!({
                "phase": "Running",
                "podIP": "10.244.0.10",
                "hostIP": "127.0.0.1",
                "startTime": now_rfc3339(),
                "conditions": [
                    condition("PodScheduled", true, "", ""),
                    condition("Initialized", true, "", ""),
                    condition("ContainersReady", ready, "", ""),
                    condition("Ready", ready, "", ""),
                ],
                "containerStatuses": statuses(ready, json!({"running": {"startedAt": now_rfc3339()}})),
            });
        }
        put(store, &rt, next);
    }
}

/// A stable short hash of a pod template (the role of pod-template-hash).
fn template_hash(template: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in template.to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}

fn owner_ref(owner: &Value) -> Value {
    json!([{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta_str(owner, "name"),
            "uid": meta_str(owner, "uid"), "controller": true, "blockOwnerDeletion": true}])
}

fn new_pod(owner: &Value, name: &str, hash: &str, extra_labels: Value) -> Value {
    let template = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    if let (Some(l), Some(extra)) = (labels.as_object_mut(), extra_labels.as_object()) {
        for (k, v) in extra {
            l.insert(k.clone(), v.clone());
        }
    }
    let mut annotations = template
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(json!({}));
    annotations["kubesim.drctl.dev/template-hash"] = json!(hash);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": meta_str(owner, "namespace"), "labels": labels,
                     "annotations": annotations, "ownerReferences": owner_ref(owner)},
        "spec": template.get("spec").cloned().unwrap_or(json!({"containers": [{"name": "main", "image": "kubesim"}]})),
    })
}

fn owned_pods(store: &Store, owner: &Value) -> Vec<Value> {
    let rt = store.core("pods");
    let uid = meta_str(owner, "uid");
    store
        .list(&rt, Some(meta_str(owner, "namespace")))
        .into_iter()
        .filter(|p| {
            p.pointer("/metadata/ownerReferences/0/uid")
                .and_then(Value::as_str)
                == Some(uid)
        })
        .collect()
}

fn pod_hash(p: &Value) -> &str {
    p.pointer("/metadata/annotations/kubesim.drctl.dev~1template-hash")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn delete_pod(store: &mut Store, p: &Value) {
    let rt = store.core("pods");
    let _ = store.delete(
        &rt,
        meta_str(p, "namespace"),
        meta_str(p, "name"),
        None,
        None,
    );
}

/// `blocked`: controllers (by uid) that create no pod while an on-delete command of one of
/// their pods runs.
fn workloads(store: &mut Store, blocked: &std::collections::HashSet<String>) {
    let pods_rt = store.core("pods");
    let Some(deploy_rt) = store.find_kind("apps", "Deployment") else {
        return;
    };
    for d in store.list(&deploy_rt, None) {
        if terminating(&d) {
            continue;
        }
        let want = d
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(0) as usize;
        let hash = template_hash(d.pointer("/spec/template").unwrap_or(&Value::Null));
        let pods: Vec<Value> = owned_pods(store, &d)
            .into_iter()
            .filter(|p| !terminating(p))
            .collect();
        let (new, old): (Vec<Value>, Vec<Value>) =
            pods.into_iter().partition(|p| pod_hash(p) == hash);
        let creatable = if blocked.contains(meta_str(&d, "uid")) {
            0
        } else {
            want
        };
        for _ in new.len()..creatable {
            let name = format!(
                "{}-{}-{}",
                meta_str(&d, "name"),
                &hash[..10],
                store.random_suffix(5)
            );
            let pod = new_pod(&d, &name, &hash, json!({"pod-template-hash": &hash[..10]}));
            let _ = store.create(&pods_rt, meta_str(&d, "namespace"), pod, Scope::Internal);
        }
        for extra in new.iter().skip(want) {
            delete_pod(store, extra);
        }
        let new_ready = new.iter().take(want).filter(|p| pod_ready(p)).count();
        // Surge-all rollout: old pods go once the new ones are all Ready.
        if new_ready >= want {
            for p in &old {
                delete_pod(store, p);
            }
        }
        let old_ready = old.iter().filter(|p| pod_ready(p)).count();
        let total = new.len().min(want) + if new_ready >= want { 0 } else { old.len() };
        let available = new_ready + if new_ready >= want { 0 } else { old_ready };
        let updated = new.len().min(want);
        let complete = updated == want && new_ready == want;
        let mut next = d.clone();
        next["status"] = json!({
            "observedGeneration": d.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
            "replicas": total, "updatedReplicas": updated, "readyReplicas": available,
            "availableReplicas": available, "unavailableReplicas": total.saturating_sub(available),
            "conditions": [
                condition("Available", available >= want, if available >= want { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }, ""),
                condition("Progressing", true, if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" }, ""),
            ],
        });
        keep_transition_times(&d, &mut next);
        if next["status"] != d["status"] {
            put(store, &deploy_rt, next);
        }
    }

    let Some(sts_rt) = store.find_kind("apps", "StatefulSet") else {
        return;
    };
    for s in store.list(&sts_rt, None) {
        if terminating(&s) {
            continue;
        }
        let want = s
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(0) as usize;
        let hash = template_hash(s.pointer("/spec/template").unwrap_or(&Value::Null));
        let ns = meta_str(&s, "namespace").to_string();
        let base = meta_str(&s, "name").to_string();
        let mut ready = 0;
        let mut updated = 0;
        let mut rolling = false;
        for i in 0..want {
            let name = format!("{base}-{i}");
            match store.get(&pods_rt, &ns, &name) {
                Err(_) if blocked.contains(meta_str(&s, "uid")) => rolling = true,
                Err(_) => {
                    let pod = new_pod(
                        &s,
                        &name,
                        &hash,
                        json!({"statefulset.kubernetes.io/pod-name": name}),
                    );
                    let _ = store.create(&pods_rt, &ns, pod, Scope::Internal);
                    rolling = true;
                }
                Ok(p) if terminating(&p) => rolling = true,
                Ok(p) => {
                    if pod_hash(&p) == hash {
                        updated += 1;
                    }
                    if pod_ready(&p) {
                        ready += 1;
                    }
                }
            }
        }
        // Rolling update, highest ordinal first, one pod at a time once all are Ready.
        if !rolling && ready == want {
            for i in (0..want).rev() {
                if let Ok(p) = store.get(&pods_rt, &ns, &format!("{base}-{i}"))
                    && pod_hash(&p) != hash
                {
                    delete_pod(store, &p);
                    break;
                }
            }
        }
        let mut next = s.clone();
        next["status"] = json!({
            "observedGeneration": s.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
            "replicas": want, "readyReplicas": ready, "currentReplicas": updated,
            "updatedReplicas": updated, "availableReplicas": ready,
            "currentRevision": format!("{base}-{hash}"), "updateRevision": format!("{base}-{hash}"),
        });
        if next["status"] != s["status"] {
            put(store, &sts_rt, next);
        }
    }

    let Some(ds_rt) = store.find_kind("apps", "DaemonSet") else {
        return;
    };
    let nodes = store.list(&store.core("nodes"), None).len().max(1);
    for d in store.list(&ds_rt, None) {
        let mut next = d.clone();
        next["status"] = json!({
            "observedGeneration": d.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
            "desiredNumberScheduled": nodes, "currentNumberScheduled": nodes, "numberReady": nodes,
            "updatedNumberScheduled": nodes, "numberAvailable": nodes, "numberMisscheduled": 0,
        });
        if next["status"] != d["status"] {
            put(store, &ds_rt, next);
        }
    }
}

/// Keeps lastTransitionTime of conditions whose status did not change (as real controllers).
fn keep_transition_times(old: &Value, next: &mut Value) {
    let Some(old_conds) = old.pointer("/status/conditions").and_then(Value::as_array) else {
        return;
    };
    let Some(new_conds) = next
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for c in new_conds {
        if let Some(o) = old_conds
            .iter()
            .find(|o| o.get("type") == c.get("type") && o.get("status") == c.get("status"))
        {
            c["lastTransitionTime"] = o["lastTransitionTime"].clone();
        }
    }
}

fn jobs(store: &mut Store, sc: &Scenario, mem: &mut Memory) {
    let pods_rt = store.core("pods");
    let Some(job_rt) = store.find_kind("batch", "Job") else {
        return;
    };
    let Some(cron_rt) = store.find_kind("batch", "CronJob") else {
        return;
    };
    if sc.cron_job_every_ms > 0 {
        for cj in store.list(&cron_rt, None) {
            if terminating(&cj)
                || cj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true)
            {
                continue;
            }
            let uid = meta_str(&cj, "uid").to_string();
            let due = mem
                .cron_last
                .get(&uid)
                .is_none_or(|t| ms(Some(t.elapsed())) >= sc.cron_job_every_ms)
                && passed(age_ms(store, &cj), sc.cron_job_every_ms);
            if !due {
                continue;
            }
            mem.cron_last.insert(uid, Instant::now());
            let template = cj
                .pointer("/spec/jobTemplate")
                .cloned()
                .unwrap_or(json!({}));
            let name = format!("{}-{}", meta_str(&cj, "name"), store.resource_version());
            let mut labels = template
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            labels["cronjob-name"] = json!(meta_str(&cj, "name"));
            let job = json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": name, "labels": labels, "ownerReferences": owner_ref(&cj)},
                "spec": template.get("spec").cloned().unwrap_or(json!({}))});
            let _ = store.create(&job_rt, meta_str(&cj, "namespace"), job, Scope::Internal);
            let mut next = cj.clone();
            next["status"]["lastScheduleTime"] = json!(now_rfc3339());
            put(store, &cron_rt, next);
        }
    }
    for job in store.list(&job_rt, None) {
        if terminating(&job) || cond_true(&job, "Complete") || cond_true(&job, "Failed") {
            continue;
        }
        let name = meta_str(&job, "name").to_string();
        let ns = meta_str(&job, "namespace").to_string();
        let pods = owned_pods(store, &job);
        let Some(pod) = pods.first() else {
            let mut template = job.clone();
            template["spec"]["template"]["metadata"]["labels"]["job-name"] = json!(name);
            template["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"] =
                json!(name);
            template["spec"]["template"]["metadata"]["labels"]["controller-uid"] =
                json!(meta_str(&job, "uid"));
            let pod_name = format!("{name}-{}", store.random_suffix(5));
            let pod = new_pod(&template, &pod_name, "job", json!({}));
            let _ = store.create(&pods_rt, &ns, pod, Scope::Internal);
            let mut next = job.clone();
            next["status"] = json!({"startTime": now_rfc3339(), "active": 1});
            put(store, &job_rt, next);
            continue;
        };
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if phase != "Succeeded" && phase != "Failed" {
            continue;
        }
        let ok = phase == "Succeeded";
        let mut next = job.clone();
        let start = job
            .pointer("/status/startTime")
            .cloned()
            .unwrap_or(json!(now_rfc3339()));
        next["status"] = if ok {
            json!({"startTime": start, "completionTime": now_rfc3339(), "succeeded": 1, "active": 0,
                   "conditions": [condition("SuccessCriteriaMet", true, "CompletionsReached", ""), condition("Complete", true, "CompletionsReached", "")]})
        } else {
            json!({"startTime": start, "failed": 1, "active": 0,
                   "conditions": [condition("FailureTarget", true, "BackoffLimitExceeded", ""), condition("Failed", true, "BackoffLimitExceeded", "Job has reached the specified backoff limit")]})
        };
        put(store, &job_rt, next);
        if ok
            && let Some(cj_name) = job
                .pointer("/metadata/labels/cronjob-name")
                .and_then(Value::as_str)
            && let Ok(mut cj) = store.get(&cron_rt, &ns, cj_name)
        {
            cj["status"]["lastSuccessfulTime"] = json!(now_rfc3339());
            put(store, &cron_rt, cj);
        }
    }
}

/// The log of a pod: scenario text (by "ns/name", name, job-name or app label), then lines
/// added through `/_sim/pod-log`, then a default line naming the pod.
pub fn pod_log(sim: &Sim, pod: &Value, query: &HashMap<String, String>) -> String {
    let key = id(pod);
    let name = meta_str(pod, "name");
    let labels = pod.pointer("/metadata/labels");
    let label = |k: &str| {
        labels
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let logs = &sim.scenario.pod_logs;
    let mut text = [
        key.as_str(),
        name,
        label("job-name"),
        label("cronjob-name"),
        label("app"),
        label("app.kubernetes.io/name"),
    ]
    .iter()
    .filter(|k| !k.is_empty())
    .find_map(|k| logs.get(*k).cloned())
    .or_else(|| {
        // A CronJob's Job is named "<cronjob>-<n>": match on the CronJob's name too.
        let job = label("job-name");
        logs.iter()
            .find(|(k, _)| !job.is_empty() && job.starts_with(&format!("{k}-")))
            .map(|(_, v)| v.clone())
    })
    .unwrap_or_else(|| format!("kubesim: pod {key} started\n"));
    if let Some(extra) = sim
        .pod_logs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
    {
        text.push_str(extra);
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    if let Some(n) = query.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(n);
        text = lines[start..].iter().map(|l| format!("{l}\n")).collect();
    }
    text
}

fn velero(store: &mut Store, sc: &Scenario) {
    if let Some(rt) = crd_type(store, "velero.io", "Backup") {
        for b in store.list(&rt, None) {
            if b.pointer("/status/phase").is_none() {
                let mut next = b.clone();
                next["status"] = json!({"phase": "Completed", "startTimestamp": now_rfc3339(),
                    "completionTimestamp": now_rfc3339(), "errors": 0, "warnings": 0});
                put(store, &rt, next);
            }
        }
    }
    if let Some(rt) = crd_type(store, "velero.io", "BackupStorageLocation") {
        for b in store.list(&rt, None) {
            if b.pointer("/status/phase").is_none() {
                let mut next = b.clone();
                next["status"] = json!({"phase": "Available", "lastValidationTime": now_rfc3339()});
                put(store, &rt, next);
            }
        }
    }
    let Some(rt) = crd_type(store, "velero.io", "Restore") else {
        return;
    };
    for r in store.list(&rt, None) {
        let phase = r
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if matches!(phase, "Completed" | "PartiallyFailed" | "Failed") {
            continue;
        }
        let age = age_ms(store, &r);
        let target = if passed(age, sc.restore_complete_after_ms) {
            let backup = r
                .pointer("/spec/backupName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let partial = sc
                .restores_partially_failed
                .iter()
                .any(|n| n == meta_str(&r, "name") || n == backup);
            if partial {
                "PartiallyFailed"
            } else {
                "Completed"
            }
        } else if passed(age, sc.restore_in_progress_after_ms) {
            "InProgress"
        } else {
            "New"
        };
        // One phase per pass, as Velero's own: a restore always passes through InProgress (an
        // event a watch sees) however late this loop runs on a busy machine.
        let target = match (phase, target) {
            ("" | "New", "Completed" | "PartiallyFailed") => "InProgress",
            (_, t) => t,
        };
        if target == phase {
            continue;
        }
        let mut next = r.clone();
        let mut status = r.get("status").cloned().unwrap_or(json!({}));
        status["phase"] = json!(target);
        match target {
            "InProgress" => {
                status["startTimestamp"] = json!(now_rfc3339());
                status["progress"] = json!({"itemsRestored": 0, "totalItems": 10});
            }
            "Completed" | "PartiallyFailed" => {
                status["completionTimestamp"] = json!(now_rfc3339());
                status["progress"] = json!({"itemsRestored": 10, "totalItems": 10});
                status["warnings"] = json!(0);
                status["errors"] = json!(if target == "PartiallyFailed" { 1 } else { 0 });
            }
            _ => {}
        }
        next["status"] = status;
        put(store, &rt, next);
    }
}

const REFRESH: &str = "argocd.argoproj.io/refresh";

fn argocd(store: &mut Store, sc: &Scenario, mem: &mut Memory) {
    let Some(rt) = crd_type(store, "argoproj.io", "Application") else {
        return;
    };
    for app in store.list(&rt, None) {
        let uid = meta_str(&app, "uid").to_string();
        let refresh = app
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(REFRESH))
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut next = app.clone();
        if app.pointer("/status/sync/status").is_none() {
            next["status"] =
                json!({"sync": {"status": "OutOfSync"}, "health": {"status": "Missing"}});
        }
        let stuck = sc.applications_stuck.contains(&id(&app));
        let age = age_ms(store, &app);
        if refresh.is_some() {
            let seen = *mem
                .refresh_seen
                .entry(uid.clone())
                .or_insert_with(Instant::now);
            if ms(Some(seen.elapsed())) >= sc.hard_refresh_after_ms {
                // The application controller removes the annotation once it has refreshed.
                if let Some(a) = next
                    .pointer_mut("/metadata/annotations")
                    .and_then(Value::as_object_mut)
                {
                    a.remove(REFRESH);
                }
                mem.refresh_seen.remove(&uid);
                next["status"]["reconciledAt"] = json!(now_rfc3339());
                next["status"]["sync"] = json!({"status": "Synced", "revision": "kubesim"});
                next["status"]["health"] = json!({"status": "Healthy"});
                next["status"]["operationState"] =
                    json!({"phase": "Succeeded", "finishedAt": now_rfc3339()});
            }
        } else if !stuck
            && passed(age, sc.application_sync_after_ms)
            && next.pointer("/status/sync/status").and_then(Value::as_str) != Some("Synced")
        {
            next["status"]["reconciledAt"] = json!(now_rfc3339());
            next["status"]["sync"] = json!({"status": "Synced", "revision": "kubesim"});
            next["status"]["health"] = json!({"status": "Healthy"});
            next["status"]["operationState"] =
                json!({"phase": "Succeeded", "finishedAt": now_rfc3339()});
        } else if next
            .pointer("/status/health/status")
            .and_then(Value::as_str)
            == Some("Missing")
            && age.is_some_and(|a| a > 0)
        {
            next["status"]["health"] = json!({"status": "Progressing"});
        }
        if next != app {
            // Annotations live in the main resource: write everything.
            put(store, &rt, next);
        }
    }
}

fn eso_restarted(store: &Store, sc: &Scenario) -> bool {
    let Some((ns, name)) = sc.eso_deployment.split_once('/') else {
        return false;
    };
    store
        .find_kind("apps", "Deployment")
        .and_then(|rt| store.get(&rt, ns, name).ok())
        .is_some_and(|d| {
            d.pointer("/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt")
                .is_some()
        })
}

fn external_secrets(store: &mut Store, sc: &Scenario) {
    let restarted = eso_restarted(store, sc);
    let mut ready_stores = Vec::new();
    if let Some(rt) = crd_type(store, "external-secrets.io", "ClusterSecretStore") {
        for s in store.list(&rt, None) {
            let name = meta_str(&s, "name").to_string();
            let degraded = sc.secret_stores_degraded.contains(&name) && !restarted;
            let ready = !degraded && passed(age_ms(store, &s), sc.secret_store_ready_after_ms);
            if ready {
                ready_stores.push(name.clone());
            }
            let cond = if ready {
                condition("Ready", true, "Valid", "store validated")
            } else if degraded {
                condition(
                    "Ready",
                    false,
                    "ValidationFailed",
                    "unable to validate store",
                )
            } else {
                continue;
            };
            let mut next = s.clone();
            next["status"] = json!({"capabilities": "ReadWrite", "conditions": [cond]});
            keep_transition_times(&s, &mut next);
            if next["status"]["conditions"][0]["status"]
                != s.pointer("/status/conditions/0/status")
                    .cloned()
                    .unwrap_or(Value::Null)
            {
                put(store, &rt, next);
            }
        }
    }
    let Some(rt) = crd_type(store, "external-secrets.io", "ExternalSecret") else {
        return;
    };
    let secrets_rt = store.core("secrets");
    for es in store.list(&rt, None) {
        if cond_true(&es, "Ready") || !passed(age_ms(store, &es), sc.external_secret_ready_after_ms)
        {
            continue;
        }
        let store_ref = es
            .pointer("/spec/secretStoreRef/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let cluster_store = es
            .pointer("/spec/secretStoreRef/kind")
            .and_then(Value::as_str)
            == Some("ClusterSecretStore");
        let mut next = es.clone();
        if cluster_store && !ready_stores.iter().any(|s| s == store_ref) {
            let cond = condition(
                "Ready",
                false,
                "SecretSyncedError",
                &format!("could not get ClusterSecretStore {store_ref:?}, is it ready?"),
            );
            if es.pointer("/status/conditions/0/reason") != Some(&json!("SecretSyncedError")) {
                next["status"] = json!({"conditions": [cond]});
                put(store, &rt, next);
            }
            continue;
        }
        let ns = meta_str(&es, "namespace").to_string();
        let target = es
            .pointer("/spec/target/name")
            .and_then(Value::as_str)
            .unwrap_or(meta_str(&es, "name"))
            .to_string();
        let values = sc.external_secret_values.get(&id(&es));
        let mut data = serde_json::Map::new();
        for item in es
            .pointer("/spec/data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(k) = item.get("secretKey").and_then(Value::as_str) {
                let v = values
                    .and_then(|m| m.get(k))
                    .cloned()
                    .unwrap_or_else(|| format!("kubesim-{k}"));
                use base64::Engine;
                data.insert(
                    k.to_string(),
                    json!(base64::engine::general_purpose::STANDARD.encode(v)),
                );
            }
        }
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": target, "namespace": ns, "ownerReferences": owner_ref(&es),
                         "labels": {"reconcile.external-secrets.io/managed": "true"}},
            "data": data});
        match store.get(&secrets_rt, &ns, &target) {
            Ok(mut existing) => {
                existing["data"] = secret["data"].clone();
                put(store, &secrets_rt, existing);
            }
            Err(_) => {
                let _ = store.create(&secrets_rt, &ns, secret, Scope::Internal);
            }
        }
        next["status"] = json!({"refreshTime": now_rfc3339(), "syncedResourceVersion": "1-kubesim",
            "binding": {"name": target},
            "conditions": [condition("Ready", true, "SecretSynced", "secret synced")]});
        put(store, &rt, next);
    }
}

fn longhorn(store: &mut Store, sc: &Scenario) {
    if let Some(rt) = crd_type(store, "longhorn.io", "Backup") {
        for b in store.list(&rt, None) {
            if b.pointer("/status/state").is_none() {
                let mut next = b.clone();
                let volume = b
                    .pointer("/metadata/labels/backup-volume")
                    .cloned()
                    .unwrap_or(json!(""));
                next["status"] = json!({"state": "Completed", "progress": 100, "volumeName": volume,
                    "snapshotName": b.pointer("/spec/snapshotName").cloned().unwrap_or(json!("")),
                    "url": format!("s3://longhorn-backups@us-east-1/?backup={}&volume={}", meta_str(&b, "name"), volume.as_str().unwrap_or_default()),
                    "backupCreatedAt": now_rfc3339()});
                put(store, &rt, next);
            }
        }
    }
    let Some(rt) = crd_type(store, "longhorn.io", "Volume") else {
        return;
    };
    for v in store.list(&rt, None) {
        let state = v
            .pointer("/status/state")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let restoring = v
            .pointer("/status/restoreRequired")
            .and_then(Value::as_bool)
            == Some(true);
        if matches!(state, "detached" | "attached") && !restoring {
            continue;
        }
        let from_backup = v
            .pointer("/spec/fromBackup")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut next = v.clone();
        if !passed(age_ms(store, &v), sc.longhorn_restore_after_ms) && !from_backup.is_empty() {
            if state.is_empty() {
                next["status"] = json!({"state": "attached", "robustness": "degraded", "restoreRequired": true,
                    "restoreInitiated": true, "isStandby": false});
                put(store, &rt, next);
            }
            continue;
        }
        let backup = from_backup
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("backup="))
            .unwrap_or_default()
            .to_string();
        next["status"] = json!({"state": "detached", "robustness": "unknown", "restoreRequired": false,
            "restoreInitiated": !from_backup.is_empty(), "lastBackup": backup, "isStandby": false});
        put(store, &rt, next);
    }
}
