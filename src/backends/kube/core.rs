//! kube.get, kube.wait, kube.namespace, kube.secret, kube.delete, kube.apply, kube.patch.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::conn::Conn;
use super::resource::{
    self, Kind, condition, diff, diff_subset, field, merge_patch, name_of, ns_of, path, scrub,
    scrub_value, str_at, table, text,
};
use super::watch::{self, Verdict};
use super::{KubeError, Out, Result};
use crate::runbook::action::{
    AssertScope, Assertion, FileSource, KubeApply, KubeDelete, KubeGet, KubeNamespace, KubePatch,
    KubeSecret, KubeWait, PatchType, Resource, WaitFor,
};

/// The field manager drctl's writes are recorded under.
pub(crate) const MANAGER: &str = "drctl";

/// A `Resource` with its templates rendered and its kind resolved.
pub(crate) struct Target {
    pub kind: Kind,
    /// `None`: every namespace (or a cluster-scoped kind).
    pub ns: Option<String>,
    pub name: Option<String>,
    pub labels: Option<String>,
    pub fields: Option<String>,
}

impl Target {
    pub async fn new(conn: &Conn, out: &Out<'_>, r: &Resource) -> Result<Target> {
        let kind = resource::resolve(conn, out, r.api_version.as_deref(), &r.kind).await?;
        let ns = if !kind.namespaced || r.all_namespaces {
            None
        } else {
            Some(
                out.shown_opt(&r.namespace)?
                    .unwrap_or_else(|| conn.namespace.clone()),
            )
        };
        Ok(Target {
            kind,
            ns,
            name: out.shown_opt(&r.name)?,
            labels: out.shown_opt(&r.selector)?,
            fields: out.shown_opt(&r.field_selector)?,
        })
    }

    pub fn api(&self, conn: &Conn) -> Api<kube::api::DynamicObject> {
        self.kind.api(conn, self.ns.as_deref())
    }

    /// `pods in namespace vault`, `pods "vault-0" in namespace "vault"`.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(n) => self.kind.describe(n, self.ns.as_deref()),
            None => {
                let mut s = self.kind.resource_name();
                if let Some(l) = &self.labels {
                    s.push_str(&format!(" matching `{l}`"));
                }
                if let Some(f) = &self.fields {
                    s.push_str(&format!(" with `{f}`"));
                }
                match &self.ns {
                    Some(ns) => s.push_str(&format!(" in namespace \"{ns}\"")),
                    None if self.kind.namespaced => s.push_str(" in every namespace"),
                    None => {}
                }
                s
            }
        }
    }

    /// The watch config that sees exactly these objects (by name through a field
    /// selector, so an object that does not exist yet is seen when it appears).
    pub fn watch_config(&self) -> watcher::Config {
        let mut fields: Vec<String> = self.fields.iter().cloned().collect();
        if let Some(n) = &self.name {
            fields.push(format!("metadata.name={n}"));
        }
        let mut cfg = watcher::Config::default();
        if !fields.is_empty() {
            cfg = cfg.fields(&fields.join(","));
        }
        if let Some(l) = &self.labels {
            cfg = cfg.labels(l);
        }
        cfg
    }

    /// The matching objects (scrubbed of secret values).
    pub async fn list(&self, conn: &Conn, out: &Out<'_>) -> Result<Vec<Value>> {
        let api = self.api(conn);
        let what = self.describe();
        match &self.name {
            Some(n) => {
                let got = conn.retry(out, &what, || api.get_opt(n)).await?;
                Ok(got.map(|o| scrub(&o, &self.kind)).into_iter().collect())
            }
            None => {
                let mut lp = ListParams::default();
                if let Some(l) = &self.labels {
                    lp = lp.labels(l);
                }
                if let Some(f) = &self.fields {
                    lp = lp.fields(f);
                }
                let list = conn.retry(out, &what, || api.list(&lp)).await?;
                Ok(list.items.iter().map(|o| scrub(o, &self.kind)).collect())
            }
        }
    }
}

/// A one-word state of an object for listings.
pub(crate) fn summary(v: &Value) -> String {
    if let Some(p) = v.pointer("/status/phase").and_then(Value::as_str) {
        return p.to_owned();
    }
    let sync = str_at(v, "/status/sync/status");
    if !sync.is_empty() {
        return format!("{sync}/{}", str_at(v, "/status/health/status"));
    }
    if let Some(r) = v
        .pointer("/status/readyReplicas")
        .or(v.pointer("/status/numberReady"))
    {
        let want = v
            .pointer("/spec/replicas")
            .or(v.pointer("/status/desiredNumberScheduled"))
            .map(text)
            .unwrap_or_else(|| "?".into());
        return format!("{}/{want} ready", text(r));
    }
    for c in ["Ready", "Available", "Complete", "Established"] {
        let s = condition(v, c);
        if !s.is_empty() {
            return format!("{c}={s}");
        }
    }
    String::new()
}

// ---------------------------------------------------------------------------------------
// kube.get
// ---------------------------------------------------------------------------------------

pub(crate) async fn get(conn: &Conn, a: &KubeGet, out: &mut Out<'_>) -> Result<Value> {
    let t = Target::new(conn, out, &a.resource).await?;
    let items = t.list(conn, out).await?;
    let columns: Vec<(String, Vec<_>)> = a
        .columns
        .iter()
        .map(|c| Ok((c.clone(), path(c)?)))
        .collect::<Result<_>>()?;
    let all_ns = t.ns.is_none() && t.kind.namespaced;
    let mut header = vec![];
    if all_ns {
        header.push("NAMESPACE".to_owned());
    }
    // Asked-for columns replace the summary (STATUS, AGE): both would not fit 100 columns.
    let own = columns.is_empty();
    header.push("NAME".to_owned());
    if own {
        header.extend(["STATUS".to_owned(), "AGE".to_owned()]);
    }
    header.extend(crate::runbook::fieldpath::column_titles(&a.columns));
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|v| {
            let mut r = vec![];
            if all_ns {
                r.push(ns_of(v).to_owned());
            }
            r.push(name_of(v).to_owned());
            if own {
                r.push(summary(v));
                r.push(resource::age(str_at(v, "/metadata/creationTimestamp")));
            }
            for (_, p) in &columns {
                r.push(field(v, p).map(text).unwrap_or_else(|| "<none>".into()));
            }
            r
        })
        .collect();
    if items.is_empty() {
        out.line(format!("no {} found", t.describe()));
    } else {
        let h: Vec<&str> = header.iter().map(String::as_str).collect();
        for l in table(&h, &rows) {
            out.line(l);
        }
    }
    // With a name and no bounds, the object must exist.
    let min = a
        .min_items
        .or(if t.name.is_some() && a.max_items.is_none() {
            Some(1)
        } else {
            None
        });
    let n = items.len() as u32;
    if let Some(min) = min
        && n < min
    {
        if t.name.is_some() {
            return Err(KubeError::NotFound { what: t.describe() });
        }
        return Err(KubeError::Failed(format!(
            "expected at least {min} of {}, found {n}",
            t.describe()
        )));
    }
    if let Some(max) = a.max_items
        && n > max
    {
        return Err(KubeError::Failed(format!(
            "expected at most {max} of {}, found {n}: {}",
            t.describe(),
            items
                .iter()
                .map(|v| name_of(v).to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for asn in &a.assert {
        check_assertion(asn, &items, out)?;
    }
    if !a.assert.is_empty() {
        out.line(format!("{} assertion(s) passed", a.assert.len()));
    }
    let names: Vec<&str> = items.iter().map(name_of).collect();
    Ok(json!({
        "count": items.len(),
        "names": names,
        "item": items.first().cloned().unwrap_or(Value::Null),
        "items": items,
    }))
}

/// Why one object fails an assertion, or None when it passes.
pub(super) fn assertion_failure(
    asn: &Assertion,
    equals: Option<&str>,
    v: &Value,
) -> Result<Option<String>> {
    let segs = path(&asn.path)?;
    let got = field(v, &segs).filter(|x| !x.is_null());
    let shown = got.map(text);
    let name = name_of(v);
    if let Some(want) = asn.exists
        && want != got.is_some()
    {
        return Ok(Some(if want {
            format!("{name}: `{}` is absent", asn.path)
        } else {
            format!(
                "{name}: `{}` is present ({})",
                asn.path,
                shown.unwrap_or_default()
            )
        }));
    }
    if let Some(e) = equals
        && shown.as_deref() != Some(e)
    {
        return Ok(Some(format!(
            "{name}: `{}` is {}, expected {e:?}",
            asn.path,
            shown
                .map(|s| format!("{s:?}"))
                .unwrap_or_else(|| "absent".into())
        )));
    }
    if !asn.one_of.is_empty() && !shown.as_ref().is_some_and(|s| asn.one_of.contains(s)) {
        return Ok(Some(format!(
            "{name}: `{}` is {}, expected one of {}",
            asn.path,
            shown
                .map(|s| format!("{s:?}"))
                .unwrap_or_else(|| "absent".into()),
            asn.one_of.join(", ")
        )));
    }
    if let Some(re) = &asn.matches {
        let re = regex::Regex::new(&format!("^(?:{re})$"))
            .map_err(|e| KubeError::Invalid(format!("assertion pattern `{re}`: {e}")))?;
        if !shown.as_deref().is_some_and(|s| re.is_match(s)) {
            return Ok(Some(format!(
                "{name}: `{}` is {}, which does not match `{}`",
                asn.path,
                shown
                    .map(|s| format!("{s:?}"))
                    .unwrap_or_else(|| "absent".into()),
                re.as_str()
            )));
        }
    }
    Ok(None)
}

fn check_assertion(asn: &Assertion, items: &[Value], out: &Out<'_>) -> Result<()> {
    let equals = match &asn.equals {
        Some(t) => Some(out.shown(t)?),
        None => None,
    };
    let mut failures = Vec::new();
    for v in items {
        if let Some(f) = assertion_failure(asn, equals.as_deref(), v)? {
            failures.push(f);
        }
    }
    let failed = match asn.scope {
        AssertScope::All => !failures.is_empty(),
        AssertScope::Any => failures.len() == items.len(),
    };
    if !failed {
        return Ok(());
    }
    let detail = if items.is_empty() {
        "no object matched".to_owned()
    } else {
        failures.join("; ")
    };
    let msg = match &asn.message {
        Some(m) => format!("{} ({detail})", out.shown(m)?),
        None => format!("assertion on `{}` failed: {detail}", asn.path),
    };
    Err(KubeError::Failed(msg))
}

// ---------------------------------------------------------------------------------------
// kube.wait
// ---------------------------------------------------------------------------------------

pub(crate) async fn wait(conn: &Conn, a: &KubeWait, out: &mut Out<'_>) -> Result<Value> {
    let t = Target::new(conn, out, &a.resource).await?;
    let plural = t.kind.ar.plural.clone();
    let what = t.describe();
    let (field_path, equals) = match &a.wait_for {
        WaitFor::Field { path: p, equals } => {
            (Some((p.clone(), path(p)?)), Some(out.shown(equals)?))
        }
        _ => (None, None),
    };
    let cond = match &a.wait_for {
        WaitFor::Condition(c) => Some(c.clone()),
        _ => None,
    };
    let deleted = matches!(a.wait_for, WaitFor::Deleted);
    let want = match (&cond, &field_path, &equals) {
        (Some(c), _, _) => c.clone(),
        (_, Some((p, _)), Some(e)) => format!("{p}={e}"),
        _ => "deleted".to_owned(),
    };
    out.progress(format!("waiting for {what}: {want}"));
    let judge = |objs: &BTreeMap<String, Value>| -> Verdict {
        if deleted {
            return Verdict {
                done: objs.is_empty(),
                summary: if objs.is_empty() {
                    format!("{what}: gone")
                } else {
                    format!("{} {plural} still present", objs.len())
                },
                late: objs.keys().cloned().collect(),
                failed: None,
            };
        }
        let mut late = Vec::new();
        let mut failed = None;
        for (k, v) in objs {
            let ok = match (&cond, &field_path) {
                (Some(c), _) => {
                    if c != "Failed" && condition(v, "Failed") == "True" {
                        failed = Some(format!(
                            "{k} failed: {}",
                            resource::condition_message(v, "Failed")
                        ));
                    }
                    condition(v, c) == "True"
                }
                (_, Some((_, segs))) => field(v, segs).map(text).as_deref() == equals.as_deref(),
                _ => true,
            };
            if !ok {
                late.push(k.clone());
            }
        }
        let total = objs.len();
        Verdict {
            done: total > 0 && late.is_empty(),
            summary: if total == 0 {
                format!("no {what} yet")
            } else {
                format!("{}/{total} {plural} {want}", total - late.len())
            },
            late,
            failed,
        }
    };
    let objs = watch::until(conn, out, t.api(conn), t.watch_config(), &what, judge).await?;
    let names: Vec<String> = objs.values().map(|v| name_of(v).to_owned()).collect();
    Ok(json!({ "count": names.len(), "names": names }))
}

// ---------------------------------------------------------------------------------------
// kube.namespace
// ---------------------------------------------------------------------------------------

pub(crate) async fn namespace(conn: &Conn, a: &KubeNamespace, out: &mut Out<'_>) -> Result<Value> {
    let name = out.shown(&a.name)?;
    let api: Api<Namespace> = Api::all(conn.client.clone());
    let what = format!("namespaces \"{name}\"");
    let live = conn.retry(out, &what, || api.get_opt(&name)).await?;
    if let Some(ns) = live {
        let phase = ns.status.and_then(|s| s.phase).unwrap_or_default();
        if phase == "Terminating" {
            return Err(KubeError::Failed(format!(
                "namespace {name} is being deleted (Terminating); wait until it is gone (`kubectl get ns {name}`), then run the step again"
            )));
        }
        out.line(format!("namespace {name} exists"));
        return Ok(json!({ "name": name, "created": false }));
    }
    if out.dry_run() {
        out.line(format!("would create namespace {name} (it does not exist)"));
        return Ok(json!({ "name": name, "created": false }));
    }
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match api.create(&pp, &ns).await {
        Ok(_) => out.line(format!("namespace {name} created")),
        // Created meanwhile (a resume, another operator): the goal holds.
        Err(kube::Error::Api(s)) if s.code == 409 => out.line(format!("namespace {name} exists")),
        Err(e) => return Err(conn.error(e, &what)),
    }
    Ok(json!({ "name": name, "created": true }))
}

// ---------------------------------------------------------------------------------------
// kube.secret
// ---------------------------------------------------------------------------------------

pub(crate) async fn secret(conn: &Conn, a: &KubeSecret, out: &mut Out<'_>) -> Result<Value> {
    let name = out.shown(&a.name)?;
    let ns = out.shown(&a.namespace)?;
    let stype = a.secret_type.clone().unwrap_or_else(|| "Opaque".into());
    let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
    for (k, v) in &a.literals {
        data.insert(k.clone(), ByteString(out.hidden(v)?.into_bytes()));
    }
    for (k, src) in &a.files {
        let bytes = match src {
            FileSource::Content(t) => out.hidden(t)?.into_bytes(),
            FileSource::Path(p) => {
                let p = out.shown(p)?;
                std::fs::read(&p).map_err(|e| {
                    KubeError::Invalid(format!("cannot read file {p} for key `{k}`: {e}"))
                })?
            }
        };
        data.insert(k.clone(), ByteString(bytes));
    }
    let keys: Vec<String> = data.keys().cloned().collect();
    let api: Api<Secret> = Api::namespaced(conn.client.clone(), &ns);
    let what = format!("secrets \"{name}\" in namespace \"{ns}\"");
    let live = conn.retry(out, &what, || api.get_opt(&name)).await?;
    let result = |action: &str| json!({ "name": name, "namespace": ns, "type": stype, "keys": keys, "action": action });
    let Some(live) = live else {
        if out.dry_run() {
            out.line(format!(
                "would create secret {ns}/{name} (type {stype}) with keys: {}",
                keys.join(", ")
            ));
            return Ok(result("create"));
        }
        create_secret(conn, &api, &name, &stype, data, &what).await?;
        out.line(format!(
            "secret {ns}/{name} created with keys: {}",
            keys.join(", ")
        ));
        return Ok(result("created"));
    };
    let old = live.data.clone().unwrap_or_default();
    let old_type = live.type_.clone().unwrap_or_else(|| "Opaque".into());
    if old == data && old_type == stype {
        out.line(format!(
            "secret {ns}/{name} already holds exactly these keys and values: unchanged"
        ));
        return Ok(result("unchanged"));
    }
    if !a.replace {
        let msg = format!(
            "secret {ns}/{name} already exists with other content and the step says `replace: false`; delete it first or allow replacing"
        );
        if out.dry_run() {
            out.line(format!("would fail: {msg}"));
            return Ok(result("exists"));
        }
        return Err(KubeError::Failed(msg));
    }
    let key_diff = key_changes(&old, &data);
    if out.dry_run() {
        let mut l = format!("would replace secret {ns}/{name}: {key_diff}");
        if old_type != stype {
            l.push_str(&format!(
                "; type {old_type} -> {stype} (deleted and re-created)"
            ));
        }
        out.line(l);
        return Ok(result("replace"));
    }
    if old_type != stype {
        // The type of a Secret is immutable: replace it whole.
        let dp = DeleteParams::default();
        conn.retry(out, &what, || api.delete(&name, &dp)).await?;
        create_secret(conn, &api, &name, &stype, data, &what).await?;
    } else {
        let mut next = live.clone();
        next.data = Some(data);
        next.string_data = None;
        let pp = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        api.replace(&name, &pp, &next)
            .await
            .map_err(|e| conn.error(e, &what))?;
    }
    out.line(format!("secret {ns}/{name} replaced: {key_diff}"));
    Ok(result("replaced"))
}

async fn create_secret(
    conn: &Conn,
    api: &Api<Secret>,
    name: &str,
    stype: &str,
    data: BTreeMap<String, ByteString>,
    what: &str,
) -> Result<()> {
    let mut s = Secret::default();
    s.metadata.name = Some(name.to_owned());
    s.type_ = Some(stype.to_owned());
    s.data = Some(data);
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    api.create(&pp, &s).await.map_err(|e| conn.error(e, what))?;
    Ok(())
}

/// Which keys a replace adds, removes and changes (names only, never values).
fn key_changes(old: &BTreeMap<String, ByteString>, new: &BTreeMap<String, ByteString>) -> String {
    let added: Vec<&str> = new
        .keys()
        .filter(|k| !old.contains_key(*k))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(String::as_str)
        .collect();
    let changed: Vec<&str> = new
        .iter()
        .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
        .map(|(k, _)| k.as_str())
        .collect();
    let same: Vec<&str> = new
        .iter()
        .filter(|(k, v)| old.get(*k).is_some_and(|o| o == *v))
        .map(|(k, _)| k.as_str())
        .collect();
    let mut parts = Vec::new();
    for (label, list) in [
        ("added", added),
        ("removed", removed),
        ("changed", changed),
        ("unchanged", same),
    ] {
        if !list.is_empty() {
            parts.push(format!("keys {label}: {}", list.join(", ")));
        }
    }
    if parts.is_empty() {
        "type only".into()
    } else {
        parts.join("; ")
    }
}

// ---------------------------------------------------------------------------------------
// kube.delete
// ---------------------------------------------------------------------------------------

pub(crate) async fn delete(conn: &Conn, a: &KubeDelete, out: &mut Out<'_>) -> Result<Value> {
    let t = Target::new(conn, out, &a.resource).await?;
    if t.name.is_none() && t.labels.is_none() && t.fields.is_none() {
        return Err(KubeError::Invalid(format!(
            "refusing to delete every {}: name one, or give a selector",
            t.kind.resource_name()
        )));
    }
    let what = t.describe();
    let items = t.list(conn, out).await?;
    if items.is_empty() {
        if a.ignore_not_found {
            out.line(format!("no {what}: nothing to delete"));
            return Ok(json!({ "deleted": [], "count": 0 }));
        }
        return Err(KubeError::NotFound { what });
    }
    let kind = t.kind.ar.kind.to_lowercase();
    let names: Vec<String> = items.iter().map(|v| name_of(v).to_owned()).collect();
    if out.dry_run() {
        for v in &items {
            out.line(format!(
                "would delete {kind} {} ({})",
                resource::key_of(v),
                summary(v)
            ));
        }
        return Ok(json!({ "deleted": names, "count": names.len() }));
    }
    let uids: BTreeSet<String> = items
        .iter()
        .map(|v| str_at(v, "/metadata/uid").to_owned())
        .collect();
    for v in &items {
        let api = t.kind.api(conn, Some(ns_of(v)).filter(|s| !s.is_empty()));
        let n = name_of(v);
        let obj_what = t.kind.describe(n, Some(ns_of(v)));
        let dp = DeleteParams::background();
        match conn.retry(out, &obj_what, || api.delete(n, &dp)).await {
            Ok(_) | Err(KubeError::NotFound { .. }) => {
                out.line(format!("{kind} {} deleted", resource::key_of(v)))
            }
            Err(e) => return Err(e),
        }
    }
    if a.wait {
        // Gone means: none of the deleted objects (by uid) is left; a replacement with
        // the same name (a StatefulSet pod) is a new object.
        let judge = |objs: &BTreeMap<String, Value>| {
            let left: Vec<String> = objs
                .iter()
                .filter(|(_, v)| uids.contains(str_at(v, "/metadata/uid")))
                .map(|(k, _)| k.clone())
                .collect();
            Verdict {
                done: left.is_empty(),
                summary: if left.is_empty() {
                    format!("{} {kind}(s) gone", uids.len())
                } else {
                    format!("{}/{} {kind}(s) gone", uids.len() - left.len(), uids.len())
                },
                late: left,
                failed: None,
            }
        };
        watch::until(conn, out, t.api(conn), t.watch_config(), &what, judge).await?;
    }
    Ok(json!({ "deleted": names, "count": names.len() }))
}

// ---------------------------------------------------------------------------------------
// kube.apply
// ---------------------------------------------------------------------------------------

pub(crate) async fn apply(conn: &Conn, a: &KubeApply, out: &mut Out<'_>) -> Result<Value> {
    let text = match (&a.manifest, &a.file) {
        (Some(m), _) => out.shown(m)?,
        (None, Some(f)) => {
            let p = out.shown(f)?;
            std::fs::read_to_string(&p)
                .map_err(|e| KubeError::Invalid(format!("cannot read manifest {p}: {e}")))?
        }
        (None, None) => {
            return Err(KubeError::Invalid(
                "kube.apply needs `manifest` or `file`".into(),
            ));
        }
    };
    let default_ns = out.shown_opt(&a.namespace)?;
    let docs = resource::parse_docs(&text, "the manifest")?;
    let mut applied = Vec::new();
    for mut doc in docs {
        let av = str_at(&doc, "/apiVersion").to_owned();
        let kind_name = str_at(&doc, "/kind").to_owned();
        let name = str_at(&doc, "/metadata/name").to_owned();
        if av.is_empty() || kind_name.is_empty() || name.is_empty() {
            return Err(KubeError::Invalid(
                "every manifest document needs apiVersion, kind and metadata.name".into(),
            ));
        }
        let kind = resource::resolve(conn, out, Some(&av), &kind_name).await?;
        let ns = if kind.namespaced {
            let ns = match ns_of(&doc) {
                "" => default_ns.clone().unwrap_or_else(|| conn.namespace.clone()),
                n => n.to_owned(),
            };
            doc["metadata"]["namespace"] = Value::String(ns.clone());
            Some(ns)
        } else {
            None
        };
        let api = kind.api(conn, ns.as_deref());
        let what = kind.describe(&name, ns.as_deref());
        let label = format!("{}/{name}", kind.ar.kind.to_lowercase());
        let live = conn.retry(out, &what, || api.get_opt(&name)).await?;
        let live_v = live.as_ref().map(watch::to_value);
        let secret = kind.ar.kind == "Secret";
        if out.dry_run() {
            match &live_v {
                None => out.line(format!("would create {label}")),
                Some(l) => {
                    let changes = if secret {
                        secret_doc_changes(l, &doc)
                    } else {
                        diff_subset(l, &doc)
                    };
                    if changes.is_empty() {
                        out.line(format!("{label} unchanged"));
                    } else {
                        out.line(format!("would change {label}:"));
                        for c in changes {
                            out.line(format!("  {c}"));
                        }
                    }
                }
            }
            applied.push(label);
            continue;
        }
        let pp = PatchParams::apply(MANAGER).force();
        let p = Patch::Apply(&doc);
        let after = conn.retry(out, &what, || api.patch(&name, &pp, &p)).await?;
        let verb = match &live {
            None => "created",
            Some(l) if l.metadata.resource_version == after.metadata.resource_version => {
                "unchanged"
            }
            Some(_) => "configured",
        };
        out.line(format!("{label} {verb}"));
        applied.push(label);
    }
    Ok(json!({ "applied": applied, "count": applied.len() }))
}

/// For a Secret in a manifest: which keys would change (names only).
pub(super) fn secret_doc_changes(live: &Value, doc: &Value) -> Vec<String> {
    let mut v = doc.clone();
    scrub_value(&mut v);
    let live_keys: BTreeSet<&str> = live
        .get("data")
        .and_then(Value::as_object)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for key in ["data", "stringData"] {
        if let Some(m) = doc.get(key).and_then(Value::as_object) {
            for k in m.keys() {
                if live_keys.contains(k.as_str()) {
                    out.push(format!("{key}.{k}: (value not shown; may change)"));
                } else {
                    out.push(format!("{key}.{k}: added"));
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// kube.patch
// ---------------------------------------------------------------------------------------

pub(crate) async fn patch(conn: &Conn, a: &KubePatch, out: &mut Out<'_>) -> Result<Value> {
    let t = Target::new(conn, out, &a.resource).await?;
    let Some(name) = t.name.clone() else {
        return Err(KubeError::Invalid(
            "kube.patch patches one object: set `resource.name`".into(),
        ));
    };
    let doc = resource::parse_doc(&out.shown(&a.patch)?, "the patch")?;
    let api = t.api(conn);
    let what = t.describe();
    let label = format!("{}/{name}", t.kind.ar.kind.to_lowercase());
    if out.dry_run() {
        let live = conn
            .retry(out, &what, || api.get_opt(&name))
            .await?
            .ok_or_else(|| KubeError::NotFound { what: what.clone() })?;
        let live = scrub(&live, &t.kind);
        let changes = match a.patch_type {
            PatchType::Merge | PatchType::Strategic => {
                let mut after = live.clone();
                merge_patch(&mut after, &doc);
                diff(&live, &after)
            }
            PatchType::Json => json_patch_preview(&live, &doc)?,
        };
        if changes.is_empty() {
            out.line(format!("{label}: the patch changes nothing"));
        } else {
            out.line(format!("would patch {label} ({}):", a.patch_type.as_str()));
            for c in &changes {
                out.line(format!("  {c}"));
            }
        }
        return Ok(json!({ "name": name, "namespace": t.ns, "changes": changes }));
    }
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let after = match a.patch_type {
        PatchType::Merge => {
            let p = Patch::Merge(&doc);
            conn.retry(out, &what, || api.patch(&name, &pp, &p)).await?
        }
        PatchType::Strategic => {
            let p = Patch::Strategic(&doc);
            conn.retry(out, &what, || api.patch(&name, &pp, &p)).await?
        }
        PatchType::Json => {
            let ops = serde_json::from_value(doc.clone()).map_err(|e| {
                KubeError::Invalid(format!("the JSON patch is not a list of operations: {e}"))
            })?;
            let p: Patch<()> = Patch::Json(ops);
            conn.retry(out, &what, || api.patch(&name, &pp, &p)).await?
        }
    };
    out.line(format!("{label} patched ({})", a.patch_type.as_str()));
    Ok(json!({
        "name": name,
        "namespace": t.ns,
        "resource_version": after.metadata.resource_version,
    }))
}

/// Each JSON-patch operation against the live value at its path.
pub(super) fn json_patch_preview(live: &Value, ops: &Value) -> Result<Vec<String>> {
    let ops = ops
        .as_array()
        .ok_or_else(|| KubeError::Invalid("a JSON patch is a list of operations".into()))?;
    let mut out = Vec::new();
    for op in ops {
        let kind = str_at(op, "/op");
        let p = str_at(op, "/path");
        let cur = live
            .pointer(p)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "(absent)".into());
        let line = match kind {
            "add" | "replace" => format!(
                "{kind} {p}: {cur} -> {}",
                op.get("value").map(|v| v.to_string()).unwrap_or_default()
            ),
            "remove" => format!("remove {p} (now {cur})"),
            "test" => format!(
                "test {p} == {} (now {cur})",
                op.get("value").map(|v| v.to_string()).unwrap_or_default()
            ),
            other => format!("{other} {} -> {p}", str_at(op, "/from")),
        };
        out.push(line);
    }
    Ok(out)
}
