//! Velero, Argo CD, External Secrets and Longhorn, through their custom resources.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::conn::Conn;
use super::core::MANAGER;
use super::resource::{self, Kind, age, condition, condition_message, name_of, str_at, table};
use super::watch::{self, Verdict};
use super::{KubeError, Out, Result};
use crate::runbook::action::{
    ArgocdApps, ArgocdRefresh, ArgocdWait, EsoWait, LonghornBackups, LonghornRestore,
    VeleroBackups, VeleroRestore,
};

async fn kind(conn: &Conn, out: &Out<'_>, group: &str, versions: &[&str], k: &str) -> Result<Kind> {
    resource::discover(conn, out, group, versions, k).await
}

fn ns_or(out: &Out<'_>, t: &Option<crate::runbook::Text>, default: &str) -> Result<String> {
    Ok(out.shown_opt(t)?.unwrap_or_else(|| default.to_owned()))
}

async fn list(conn: &Conn, out: &Out<'_>, k: &Kind, ns: Option<&str>) -> Result<Vec<Value>> {
    let api = k.api(conn, ns);
    let what = match ns {
        Some(ns) => format!("{} in namespace {ns}", k.resource_name()),
        None => k.resource_name(),
    };
    let lp = kube::api::ListParams::default();
    let l = conn.retry(out, &what, || api.list(&lp)).await?;
    Ok(l.items.iter().map(watch::to_value).collect())
}

pub(super) fn time_of(v: &Value, fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| str_at(v, f))
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| str_at(v, "/metadata/creationTimestamp"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// Velero
// ---------------------------------------------------------------------------------------

pub(super) fn backup_info(b: &Value) -> Value {
    let created = time_of(b, &["/status/startTimestamp"]);
    let loc = match str_at(b, "/spec/storageLocation") {
        "" => str_at(b, "/metadata/labels/velero.io~1storage-location"),
        l => l,
    };
    json!({
        "name": name_of(b),
        "phase": str_at(b, "/status/phase"),
        "created": created,
        "age": age(&created),
        "storage_location": loc,
        "errors": b.pointer("/status/errors").and_then(Value::as_i64).unwrap_or(0),
        "warnings": b.pointer("/status/warnings").and_then(Value::as_i64).unwrap_or(0),
    })
}

pub(crate) async fn velero_backups(
    conn: &Conn,
    a: &VeleroBackups,
    out: &mut Out<'_>,
) -> Result<Value> {
    let ns = ns_or(out, &a.namespace, "velero")?;
    let loc = out.shown_opt(&a.storage_location)?;
    let k = kind(conn, out, "velero.io", &["v1"], "Backup").await?;
    let mut backups: Vec<Value> = list(conn, out, &k, Some(&ns))
        .await?
        .iter()
        .map(backup_info)
        .filter(|b| loc.as_deref().is_none_or(|l| b["storage_location"] == l))
        .collect();
    // Newest first (RFC 3339 times in UTC sort as text).
    backups.sort_by(|x, y| y["created"].as_str().cmp(&x["created"].as_str()));
    let rows: Vec<Vec<String>> = backups
        .iter()
        .map(|b| {
            [
                "name",
                "phase",
                "age",
                "storage_location",
                "errors",
                "warnings",
            ]
            .iter()
            .map(|f| resource::text(&b[*f]))
            .collect()
        })
        .collect();
    let at = loc
        .as_deref()
        .map(|l| format!(" at storage location {l}"))
        .unwrap_or_default();
    if backups.is_empty() {
        out.line(format!("no Velero backups in {ns}{at}"));
    } else {
        for l in table(
            &["NAME", "PHASE", "AGE", "LOCATION", "ERRORS", "WARNINGS"],
            &rows,
        ) {
            out.line(l);
        }
    }
    let newest = backups.iter().find(|b| b["phase"] == "Completed").cloned();
    match &newest {
        Some(n) => out.line(format!(
            "newest Completed backup: {} ({} old)",
            n["name"].as_str().unwrap_or(""),
            n["age"].as_str().unwrap_or("")
        )),
        None if a.require_completed => {
            return Err(KubeError::Failed(format!(
                "no Completed Velero backup in namespace {ns}{at} ({} backup(s) listed); check the storage location (`velero backup-location get`) and `velero backup get`",
                backups.len()
            )));
        }
        None => out.line("no Completed backup"),
    }
    Ok(json!({ "backups": backups, "newest": newest, "count": backups.len() }))
}

const RESTORE_DONE: &[&str] = &["Completed", "PartiallyFailed", "Failed", "FailedValidation"];

pub(crate) async fn velero_restore(
    conn: &Conn,
    a: &VeleroRestore,
    out: &mut Out<'_>,
) -> Result<Value> {
    let ns = ns_or(out, &a.namespace, "velero")?;
    let backup = out.shown(&a.backup)?;
    if backup.is_empty() {
        return Err(KubeError::Invalid(
            "velero.restore: the backup name is empty".into(),
        ));
    }
    // The default name comes from the run, not the clock: a step re-run after a crash or
    // a PartiallyFailed decision finds its own Restore (409) and follows it instead of
    // starting a second restore over the first.
    let name = match out.shown_opt(&a.name)? {
        Some(n) => n,
        None => restore_name(&backup, &out.ctx.values.run.id, &out.ctx.values.run.runbook),
    };
    let namespaces: Vec<String> = a
        .include_namespaces
        .iter()
        .map(|t| out.shown(t))
        .collect::<Result<_>>()?;
    let backups = kind(conn, out, "velero.io", &["v1"], "Backup").await?;
    let restores = kind(conn, out, "velero.io", &["v1"], "Restore").await?;
    let bapi = backups.api(conn, Some(&ns));
    let bwhat = backups.describe(&backup, Some(&ns));
    let b = conn
        .retry(out, &bwhat, || bapi.get_opt(&backup))
        .await?
        .ok_or_else(|| KubeError::NotFound {
            what: format!("Velero backup {backup} in namespace {ns}"),
        })?;
    let b = backup_info(&watch::to_value(&b));
    if b["phase"] != "Completed" {
        out.line(format!(
            "note: backup {backup} is {}, not Completed",
            b["phase"].as_str().unwrap_or("?")
        ));
    }
    let scope = if namespaces.is_empty() {
        "every namespace".to_owned()
    } else {
        namespaces.join(", ")
    };
    if out.dry_run() {
        out.line(format!(
            "would create Restore {ns}/{name} from backup {backup} ({}, {} old) for {scope}",
            b["phase"].as_str().unwrap_or("?"),
            b["age"].as_str().unwrap_or("?")
        ));
        return Ok(json!({ "name": name, "backup": backup, "phase": Value::Null }));
    }
    let rapi = restores.api(conn, Some(&ns));
    let rwhat = restores.describe(&name, Some(&ns));
    let mut spec = json!({ "backupName": backup });
    if !namespaces.is_empty() {
        spec["includedNamespaces"] = json!(namespaces);
    }
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": restores.ar.api_version, "kind": "Restore",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .map_err(|e| KubeError::Failed(format!("building the Restore: {e}")))?;
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match rapi.create(&pp, &obj).await {
        Ok(_) => out.line(format!("restore {ns}/{name} created from backup {backup}")),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Resumed: the same restore is already there.
            let live = conn.retry(out, &rwhat, || rapi.get(&name)).await?;
            let v = watch::to_value(&live);
            if str_at(&v, "/spec/backupName") != backup {
                return Err(KubeError::Conflict {
                    what: rwhat,
                    detail: format!(
                        "it restores backup {}, not {backup}",
                        str_at(&v, "/spec/backupName")
                    ),
                });
            }
            out.line(format!(
                "restore {ns}/{name} exists already (from backup {backup}): following it"
            ));
        }
        Err(e) => return Err(conn.error(e, &rwhat)),
    }
    if !a.wait {
        return Ok(json!({ "name": name, "backup": backup, "phase": "New" }));
    }
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let key = format!("{ns}/{name}");
    let judge = |objs: &BTreeMap<String, Value>| {
        let (phase, progress) = objs
            .get(&key)
            .map(|v| {
                (
                    str_at(v, "/status/phase").to_owned(),
                    format!(
                        "{}/{} items",
                        v.pointer("/status/progress/itemsRestored")
                            .map(resource::text)
                            .unwrap_or_else(|| "0".into()),
                        v.pointer("/status/progress/totalItems")
                            .map(resource::text)
                            .unwrap_or_else(|| "?".into())
                    ),
                )
            })
            .unwrap_or_default();
        Verdict {
            done: RESTORE_DONE.contains(&phase.as_str()),
            summary: format!(
                "restore {name}: {} ({progress})",
                if phase.is_empty() { "New" } else { &phase }
            ),
            late: vec![],
            failed: None,
        }
    };
    let objs = watch::until(conn, out, rapi.clone(), cfg, &rwhat, judge).await?;
    let v = objs.get(&key).cloned().unwrap_or(Value::Null);
    let phase = str_at(&v, "/status/phase").to_owned();
    let warnings = v
        .pointer("/status/warnings")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let errors = v
        .pointer("/status/errors")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let result = json!({ "name": name, "backup": backup, "phase": phase, "warnings": warnings, "errors": errors });
    let details = format!(
        "`velero restore describe {name} -n {ns} --details` and `velero restore logs {name} -n {ns}`"
    );
    match phase.as_str() {
        "Completed" => {
            out.line(format!(
                "restore {name} Completed with {warnings} warning(s), {errors} error(s)"
            ));
            if warnings > 0 {
                out.line(format!("read the warnings: {details}"));
            }
            Ok(result)
        }
        "PartiallyFailed" => {
            out.line(format!("restore {name} ended PartiallyFailed: {errors} error(s), {warnings} warning(s); see {details}"));
            if !out.ctx.operator.interactive() {
                return Err(KubeError::NeedsOperator(format!(
                    "Velero restore {name} ended PartiallyFailed ({errors} error(s), {warnings} warning(s)); accepting a partial restore is the operator's decision and --yes does not make it: read {details}, then `drctl resume` interactively (the same Restore is followed, not created again)"
                )));
            }
            let ok = out
                .ctx
                .operator
                .confirm(
                    &format!("Velero restore {name} ended PartiallyFailed ({errors} error(s), {warnings} warning(s)). Accept it and continue?"),
                    false,
                )
                .map_err(|e| KubeError::Failed(e.to_string()))?;
            if ok {
                out.line("the operator accepted the partial restore");
                Ok(result)
            } else {
                Err(KubeError::Failed(format!(
                    "the operator did not accept the PartiallyFailed restore {name}; read {details}"
                )))
            }
        }
        other => {
            let mut why = str_at(&v, "/status/failureReason").to_owned();
            if let Some(ve) = v
                .pointer("/status/validationErrors")
                .and_then(Value::as_array)
            {
                why.push_str(&ve.iter().map(resource::text).collect::<Vec<_>>().join("; "));
            }
            Err(KubeError::Failed(format!(
                "Velero restore {name} ended {other}: {why}; read {details}"
            )))
        }
    }
}

/// `BACKUP-YYYYMMDD-HHMMSS-XXXX` from the run id (`RUNBOOK-YYYYMMDD-HHMMSS-XXXX`), cut to
/// the 63 characters Velero puts in its `velero.io/restore-name` label.
pub(super) fn restore_name(backup: &str, run_id: &str, runbook: &str) -> String {
    let stamp = run_id
        .strip_prefix(runbook)
        .map(|s| s.trim_start_matches('-'))
        .filter(|s| !s.is_empty())
        .unwrap_or(run_id);
    let keep = 63usize.saturating_sub(stamp.len() + 1);
    let head: String = backup.chars().take(keep).collect();
    format!("{}-{stamp}", head.trim_end_matches(['-', '.']))
}

// ---------------------------------------------------------------------------------------
// Argo CD
// ---------------------------------------------------------------------------------------

const REFRESH: &str = "argocd.argoproj.io/refresh";

pub(super) fn app_ready(v: &Value) -> bool {
    str_at(v, "/status/sync/status") == "Synced" && str_at(v, "/status/health/status") == "Healthy"
}

pub(super) fn app_info(v: &Value) -> Value {
    json!({
        "name": name_of(v),
        "sync": str_at(v, "/status/sync/status"),
        "health": str_at(v, "/status/health/status"),
        "operation": str_at(v, "/status/operationState/phase"),
        "message": str_at(v, "/status/operationState/message"),
    })
}

pub(crate) async fn argocd_apps(conn: &Conn, a: &ArgocdApps, out: &mut Out<'_>) -> Result<Value> {
    let ns = ns_or(out, &a.namespace, "argocd")?;
    let names: Vec<String> = a
        .names
        .iter()
        .map(|t| out.shown(t))
        .collect::<Result<_>>()?;
    let k = kind(conn, out, "argoproj.io", &["v1alpha1"], "Application").await?;
    let all = list(conn, out, &k, Some(&ns)).await?;
    let apps: Vec<&Value> = all
        .iter()
        .filter(|v| names.is_empty() || names.iter().any(|n| n == name_of(v)))
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !apps.iter().any(|v| name_of(v) == n.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(KubeError::NotFound {
            what: format!(
                "Argo CD application(s) {} in namespace {ns}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let infos: Vec<Value> = apps.iter().map(|v| app_info(v)).collect();
    let rows: Vec<Vec<String>> = infos
        .iter()
        .map(|i| {
            ["name", "sync", "health", "operation", "message"]
                .iter()
                .map(|f| resource::text(&i[*f]))
                .collect()
        })
        .collect();
    for l in table(&["NAME", "SYNC", "HEALTH", "OPERATION", "MESSAGE"], &rows) {
        out.line(l);
    }
    let not_ready: Vec<&str> = apps
        .iter()
        .filter(|v| !app_ready(v))
        .map(|v| name_of(v))
        .collect();
    out.line(format!(
        "{}/{} applications synced and healthy",
        apps.len() - not_ready.len(),
        apps.len()
    ));
    Ok(
        json!({ "apps": infos, "count": apps.len(), "ready": apps.len() - not_ready.len(), "not_ready": not_ready }),
    )
}

pub(crate) async fn argocd_wait(conn: &Conn, a: &ArgocdWait, out: &mut Out<'_>) -> Result<Value> {
    let ns = ns_or(out, &a.namespace, "argocd")?;
    let names: Vec<String> = a
        .names
        .iter()
        .map(|t| out.shown(t))
        .collect::<Result<_>>()?;
    let k = kind(conn, out, "argoproj.io", &["v1alpha1"], "Application").await?;
    let mut cfg = watcher::Config::default();
    if let [one] = names.as_slice() {
        cfg = cfg.fields(&format!("metadata.name={one}"));
    }
    let judge = |objs: &BTreeMap<String, Value>| {
        let mut late = Vec::new();
        let mut total = 0;
        if names.is_empty() {
            for v in objs.values() {
                total += 1;
                if !app_ready(v) {
                    late.push(name_of(v).to_owned());
                }
            }
        } else {
            for n in &names {
                total += 1;
                match objs.get(&format!("{ns}/{n}")) {
                    Some(v) if app_ready(v) => {}
                    Some(v) => late.push(format!(
                        "{n} ({}/{})",
                        str_at(v, "/status/sync/status"),
                        str_at(v, "/status/health/status")
                    )),
                    None => late.push(format!("{n} (missing)")),
                }
            }
        }
        Verdict {
            done: total > 0 && late.is_empty(),
            summary: format!(
                "{}/{total} applications synced and healthy",
                total - late.len()
            ),
            late,
            failed: None,
        }
    };
    let what = format!("Argo CD applications in {ns}");
    let objs = watch::until(conn, out, k.api(conn, Some(&ns)), cfg, &what, judge).await?;
    let total = if names.is_empty() {
        objs.len()
    } else {
        names.len()
    };
    Ok(json!({ "count": total, "ready": total }))
}

pub(crate) async fn argocd_refresh(
    conn: &Conn,
    a: &ArgocdRefresh,
    out: &mut Out<'_>,
) -> Result<Value> {
    let ns = ns_or(out, &a.namespace, "argocd")?;
    let name = out.shown(&a.name)?;
    let mode = if a.hard { "hard" } else { "normal" };
    let k = kind(conn, out, "argoproj.io", &["v1alpha1"], "Application").await?;
    let api = k.api(conn, Some(&ns));
    let what = k.describe(&name, Some(&ns));
    let live = conn
        .retry(out, &what, || api.get_opt(&name))
        .await?
        .ok_or_else(|| KubeError::NotFound { what: what.clone() })?;
    let v = watch::to_value(&live);
    let state = format!(
        "{}/{}",
        str_at(&v, "/status/sync/status"),
        str_at(&v, "/status/health/status")
    );
    if out.dry_run() {
        let now = v
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(REFRESH))
            .map(resource::text)
            .unwrap_or_else(|| "(absent)".into());
        out.line(format!(
            "would set annotation {REFRESH} on application {ns}/{name} ({state}): {now} -> {mode}"
        ));
        return Ok(json!({ "name": name, "namespace": ns, "refresh": mode }));
    }
    let patch = json!({"metadata": {"annotations": {REFRESH: mode}}});
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let p = Patch::Merge(&patch);
    conn.retry(out, &what, || api.patch(&name, &pp, &p)).await?;
    out.line(format!(
        "{mode} refresh requested for application {ns}/{name} (was {state})"
    ));
    Ok(json!({ "name": name, "namespace": ns, "refresh": mode }))
}

// ---------------------------------------------------------------------------------------
// External Secrets
// ---------------------------------------------------------------------------------------

const ESO_VERSIONS: &[&str] = &["v1", "v1beta1"];

fn ready_judge<'a>(
    noun: &'a str,
    wanted: &'a [String],
) -> impl FnMut(&BTreeMap<String, Value>) -> Verdict + 'a {
    move |objs| {
        let mut late = Vec::new();
        let mut total = 0;
        let mut check = |key: &str, v: Option<&Value>| {
            total += 1;
            match v {
                Some(v) if condition(v, "Ready") == "True" => {}
                Some(v) => late.push(match condition_message(v, "Ready") {
                    m if m.is_empty() => key.to_owned(),
                    m => format!("{key} ({m})"),
                }),
                None => late.push(format!("{key} (missing)")),
            }
        };
        if wanted.is_empty() {
            for (k, v) in objs {
                check(k, Some(v));
            }
        } else {
            for n in wanted {
                check(n, objs.get(n));
            }
        }
        Verdict {
            done: late.is_empty(),
            summary: format!("{}/{total} {noun} Ready", total - late.len()),
            late,
            failed: None,
        }
    }
}

pub(crate) async fn eso_wait(conn: &Conn, a: &EsoWait, out: &mut Out<'_>) -> Result<Value> {
    let stores: Vec<String> = a
        .cluster_secret_stores
        .iter()
        .map(|t| out.shown(t))
        .collect::<Result<_>>()?;
    let ns = out.shown_opt(&a.namespace)?;
    let store_kind = kind(
        conn,
        out,
        "external-secrets.io",
        ESO_VERSIONS,
        "ClusterSecretStore",
    )
    .await?;
    // The stores first: ExternalSecrets cannot sync before their store is Ready.
    let objs = watch::until(
        conn,
        out,
        store_kind.api(conn, None),
        watcher::Config::default(),
        "ClusterSecretStores",
        ready_judge("ClusterSecretStores", &stores),
    )
    .await?;
    let store_names: Vec<String> = if stores.is_empty() {
        objs.keys().cloned().collect()
    } else {
        stores.clone()
    };
    let mut count = 0;
    if a.external_secrets {
        let es_kind = kind(
            conn,
            out,
            "external-secrets.io",
            ESO_VERSIONS,
            "ExternalSecret",
        )
        .await?;
        let what = match &ns {
            Some(ns) => format!("ExternalSecrets in {ns}"),
            None => "ExternalSecrets in every namespace".to_owned(),
        };
        let objs = watch::until(
            conn,
            out,
            es_kind.api(conn, ns.as_deref()),
            watcher::Config::default(),
            &what,
            ready_judge("ExternalSecrets", &[]),
        )
        .await?;
        count = objs.len();
    }
    Ok(json!({ "stores": store_names, "external_secrets": count }))
}

// ---------------------------------------------------------------------------------------
// Longhorn
// ---------------------------------------------------------------------------------------

pub(super) fn lh_backup_info(b: &Value) -> Value {
    let created = time_of(b, &["/status/backupCreatedAt"]);
    let volume = match str_at(b, "/status/volumeName") {
        "" => str_at(b, "/metadata/labels/backup-volume"),
        v => v,
    };
    json!({
        "name": name_of(b),
        "volume": volume,
        "state": str_at(b, "/status/state"),
        "created": created,
        "age": age(&created),
        "url": str_at(b, "/status/url"),
        "size": str_at(b, "/status/volumeSize"),
    })
}

async fn lh_backups(
    conn: &Conn,
    out: &Out<'_>,
    ns: &str,
    volume: Option<&str>,
) -> Result<Vec<Value>> {
    let k = kind(conn, out, "longhorn.io", &["v1beta2"], "Backup").await?;
    let mut bs: Vec<Value> = list(conn, out, &k, Some(ns))
        .await?
        .iter()
        .map(lh_backup_info)
        .filter(|b| volume.is_none_or(|v| b["volume"] == v))
        .collect();
    bs.sort_by(|x, y| {
        (x["volume"].as_str(), y["created"].as_str())
            .cmp(&(y["volume"].as_str(), x["created"].as_str()))
    });
    Ok(bs)
}

/// The newest Completed backup per volume.
pub(super) fn newest_per_volume(bs: &[Value]) -> BTreeMap<String, Value> {
    let mut m: BTreeMap<String, Value> = BTreeMap::new();
    for b in bs.iter().filter(|b| b["state"] == "Completed") {
        let v = b["volume"].as_str().unwrap_or("").to_owned();
        let newer = m
            .get(&v)
            .is_none_or(|cur| b["created"].as_str() > cur["created"].as_str());
        if newer {
            m.insert(v, b.clone());
        }
    }
    m
}

pub(crate) async fn longhorn_backups(
    conn: &Conn,
    a: &LonghornBackups,
    out: &mut Out<'_>,
) -> Result<Value> {
    let ns = ns_or(out, &a.namespace, "longhorn-system")?;
    let volume = out.shown_opt(&a.volume)?;
    let bs = lh_backups(conn, out, &ns, volume.as_deref()).await?;
    let rows: Vec<Vec<String>> = bs
        .iter()
        .map(|b| {
            ["volume", "name", "state", "created", "age"]
                .iter()
                .map(|f| resource::text(&b[*f]))
                .collect()
        })
        .collect();
    if bs.is_empty() {
        out.line(format!("no Longhorn backups in {ns}"));
    } else {
        for l in table(&["VOLUME", "BACKUP", "STATE", "CREATED", "AGE"], &rows) {
            out.line(l);
        }
    }
    let newest = newest_per_volume(&bs);
    let volumes: Vec<&String> = newest.keys().collect();
    Ok(json!({ "backups": bs, "newest": newest, "volumes": volumes, "count": bs.len() }))
}

pub(crate) async fn longhorn_restore(
    conn: &Conn,
    a: &LonghornRestore,
    out: &mut Out<'_>,
) -> Result<Value> {
    let ns = ns_or(out, &a.namespace, "longhorn-system")?;
    let wanted: Vec<String> = a
        .volumes
        .iter()
        .map(|t| out.shown(t))
        .collect::<Result<_>>()?;
    let named = out.shown_opt(&a.backup)?;
    if named.is_some() && wanted.len() != 1 {
        return Err(KubeError::Invalid(
            "longhorn.restore: `backup` needs exactly one volume in `volumes`".into(),
        ));
    }
    let bs = lh_backups(conn, out, &ns, None).await?;
    let newest = newest_per_volume(&bs);
    let mut plan: Vec<(String, Value)> = Vec::new();
    if let (Some(b), [v]) = (&named, wanted.as_slice()) {
        let found = bs
            .iter()
            .find(|x| x["name"] == b.as_str() && x["volume"] == v.as_str())
            .cloned();
        plan.push((
            v.clone(),
            found.ok_or_else(|| KubeError::NotFound {
                what: format!("Longhorn backup {b} of volume {v} in {ns}"),
            })?,
        ));
    } else if wanted.is_empty() {
        plan.extend(newest.iter().map(|(v, b)| (v.clone(), b.clone())));
    } else {
        for v in &wanted {
            let b = newest.get(v).cloned().ok_or_else(|| {
                KubeError::Failed(format!(
                    "volume {v} has no Completed backup in {ns}; check Longhorn's backup target"
                ))
            })?;
            plan.push((v.clone(), b));
        }
    }
    if plan.is_empty() {
        return Err(KubeError::Failed(format!(
            "no Longhorn volume in {ns} has a Completed backup; check the backup target (Longhorn UI → Backup)"
        )));
    }
    let vk = kind(conn, out, "longhorn.io", &["v1beta2"], "Volume").await?;
    let api = vk.api(conn, Some(&ns));
    let mut skipped = BTreeSet::new();
    for (v, b) in &plan {
        let what = vk.describe(v, Some(&ns));
        let live = conn.retry(out, &what, || api.get_opt(v)).await?;
        let bname = b["name"].as_str().unwrap_or("");
        let url = b["url"].as_str().unwrap_or("");
        if let Some(l) = live {
            let l = watch::to_value(&l);
            if str_at(&l, "/spec/fromBackup") == url {
                out.line(format!(
                    "volume {v} is already restoring from {bname}: following it"
                ));
            } else {
                out.line(format!(
                    "volume {v} exists already: left as it is (delete it first to restore it)"
                ));
                skipped.insert(v.clone());
            }
            continue;
        }
        if out.dry_run() {
            out.line(format!(
                "would restore volume {v} from backup {bname} ({} old)",
                b["age"].as_str().unwrap_or("?")
            ));
            continue;
        }
        let mut spec = json!({ "fromBackup": url, "numberOfReplicas": 3, "frontend": "blockdev" });
        if let Some(size) = b["size"].as_str().filter(|s| !s.is_empty()) {
            spec["size"] = json!(size);
        }
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": vk.ar.api_version, "kind": "Volume",
            "metadata": {"name": v, "namespace": ns}, "spec": spec,
        }))
        .map_err(|e| KubeError::Failed(format!("building the Volume: {e}")))?;
        let pp = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let o = &obj;
        conn.retry(out, &what, || api.create(&pp, o)).await?;
        out.line(format!("volume {v}: restore from backup {bname} started"));
    }
    let restored: Vec<Value> = plan
        .iter()
        .filter(|(v, _)| !skipped.contains(v))
        .map(|(v, b)| json!({ "volume": v, "backup": b["name"] }))
        .collect();
    if out.dry_run() {
        return Ok(json!({ "restored": [], "count": 0 }));
    }
    let keys: Vec<String> = restored
        .iter()
        .map(|r| format!("{ns}/{}", r["volume"].as_str().unwrap_or("")))
        .collect();
    let judge = |objs: &BTreeMap<String, Value>| {
        let late: Vec<String> = keys
            .iter()
            .filter(|k| {
                objs.get(*k).is_none_or(|v| {
                    v.pointer("/status/restoreRequired")
                        .and_then(Value::as_bool)
                        != Some(false)
                        || !matches!(str_at(v, "/status/state"), "detached" | "attached")
                })
            })
            .cloned()
            .collect();
        Verdict {
            done: late.is_empty(),
            summary: format!(
                "{}/{} volumes restored",
                keys.len() - late.len(),
                keys.len()
            ),
            late,
            failed: None,
        }
    };
    let what = format!("Longhorn volumes in {ns}");
    watch::until(
        conn,
        out,
        api.clone(),
        watcher::Config::default(),
        &what,
        judge,
    )
    .await?;
    Ok(json!({ "restored": restored, "count": restored.len() }))
}

#[cfg(test)]
mod tests {
    use super::restore_name;

    #[test]
    fn restore_names_come_from_the_run_and_fit_velero_labels() {
        assert_eq!(
            restore_name(
                "daily-offsite-20250101030000",
                "cluster-rebuild-20261122-031500-a1b2",
                "cluster-rebuild"
            ),
            "daily-offsite-20250101030000-20261122-031500-a1b2"
        );
        let long = restore_name(&"b".repeat(80), "x-20261122-031500-a1b2", "x");
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("-20261122-031500-a1b2"));
    }
}
