//! Kinds (typed metadata for built-in kinds, discovery for custom resources), field paths,
//! and the helpers that show objects without their secrets and diff them for previews.

use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::Value;

use super::conn::Conn;
use super::{KubeError, Out, Result};
use crate::runbook::fieldpath::{PathSegment, parse_field_path};

/// A kind the cluster serves.
#[derive(Clone, Debug)]
pub(crate) struct Kind {
    pub ar: ApiResource,
    pub namespaced: bool,
}

impl Kind {
    fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        let api_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        Kind {
            ar: ApiResource {
                group: group.to_owned(),
                version: version.to_owned(),
                api_version,
                kind: kind.to_owned(),
                plural: plural.to_owned(),
            },
            namespaced,
        }
    }

    /// The API for this kind in `ns` (or cluster-wide for cluster-scoped kinds / `None`).
    pub fn api(&self, conn: &Conn, ns: Option<&str>) -> Api<DynamicObject> {
        match ns {
            Some(ns) if self.namespaced => Api::namespaced_with(conn.client.clone(), ns, &self.ar),
            _ => Api::all_with(conn.client.clone(), &self.ar),
        }
    }

    /// `deployments.apps`, as kubectl names a resource in messages.
    pub fn resource_name(&self) -> String {
        if self.ar.group.is_empty() {
            self.ar.plural.clone()
        } else {
            format!("{}.{}", self.ar.plural, self.ar.group)
        }
    }

    /// `deployments.apps "x" in namespace "y"`.
    pub fn describe(&self, name: &str, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if self.namespaced => {
                format!("{} \"{name}\" in namespace \"{ns}\"", self.resource_name())
            }
            _ => format!("{} \"{name}\"", self.resource_name()),
        }
    }
}

/// Built-in kinds: (group, version, kind, plural, namespaced, short names).
/// (group, version, kind, plural, namespaced, short names).
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
);

const BUILTIN: &[Builtin] = &[
    ("", "v1", "Pod", "pods", true, &["po"]),
    ("", "v1", "Secret", "secrets", true, &[]),
    ("", "v1", "ConfigMap", "configmaps", true, &["cm"]),
    ("", "v1", "Namespace", "namespaces", false, &["ns"]),
    ("", "v1", "Node", "nodes", false, &["no"]),
    ("", "v1", "Service", "services", true, &["svc"]),
    ("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"]),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
    ),
    (
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
    ),
    ("", "v1", "Event", "events", true, &["ev"]),
    ("", "v1", "Endpoints", "endpoints", true, &["ep"]),
    ("apps", "v1", "Deployment", "deployments", true, &["deploy"]),
    ("apps", "v1", "StatefulSet", "statefulsets", true, &["sts"]),
    ("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"]),
    ("apps", "v1", "ReplicaSet", "replicasets", true, &["rs"]),
    ("batch", "v1", "Job", "jobs", true, &[]),
    ("batch", "v1", "CronJob", "cronjobs", true, &["cj"]),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
    ),
];

/// Custom kinds drctl knows, with the component whose CRDs provide them: (group,
/// versions to try, kind, plural).
const CUSTOM: &[(&str, &[&str], &str, &str)] = &[
    ("velero.io", &["v1"], "Backup", "backups"),
    ("velero.io", &["v1"], "Restore", "restores"),
    (
        "velero.io",
        &["v1"],
        "BackupStorageLocation",
        "backupstoragelocations",
    ),
    ("argoproj.io", &["v1alpha1"], "Application", "applications"),
    (
        "external-secrets.io",
        &["v1", "v1beta1"],
        "ExternalSecret",
        "externalsecrets",
    ),
    (
        "external-secrets.io",
        &["v1", "v1beta1"],
        "ClusterSecretStore",
        "clustersecretstores",
    ),
    (
        "external-secrets.io",
        &["v1", "v1beta1"],
        "SecretStore",
        "secretstores",
    ),
    ("longhorn.io", &["v1beta2"], "Volume", "volumes"),
    ("longhorn.io", &["v1beta2"], "Backup", "backups"),
];

/// The component that installs a group's CRDs, for "CRD missing" errors.
pub(crate) fn component(group: &str) -> String {
    match group {
        "velero.io" => "Velero".into(),
        "argoproj.io" => "Argo CD".into(),
        "external-secrets.io" => "External Secrets".into(),
        "longhorn.io" => "Longhorn".into(),
        other => format!("operator providing `{other}`"),
    }
}

fn matches_kind<S: AsRef<str>>(kind: &str, plural: &str, shorts: &[S], want: &str) -> bool {
    kind.eq_ignore_ascii_case(want)
        || plural.eq_ignore_ascii_case(want)
        || plural.trim_end_matches('s').eq_ignore_ascii_case(want)
        || shorts.iter().any(|s| s.as_ref().eq_ignore_ascii_case(want))
}

/// The kind `kind` (a Kind or plural name), of `api_version` when given.
pub(crate) async fn resolve(
    conn: &Conn,
    out: &Out<'_>,
    api_version: Option<&str>,
    kind: &str,
) -> Result<Kind> {
    let (group, version) = match api_version {
        Some(av) => match av.split_once('/') {
            Some((g, v)) => (Some(g), Some(v)),
            None => (Some(""), Some(av)),
        },
        None => (None, None),
    };
    if let Some((g, v, k, p, ns, _)) = BUILTIN.iter().find(|(g, v, k, p, _, s)| {
        group.is_none_or(|x| x == *g)
            && version.is_none_or(|x| x == *v)
            && matches_kind(k, p, s, kind)
    }) {
        return Ok(Kind::new(g, v, k, p, *ns));
    }
    if let (Some(g), Some(v)) = (group, version) {
        return discover(conn, out, g, &[v], kind).await;
    }
    let known: Vec<_> = CUSTOM
        .iter()
        .filter(|(_, _, k, p)| matches_kind::<&str>(k, p, &[], kind))
        .collect();
    match known.as_slice() {
        [(g, versions, k, _)] => discover(conn, out, g, versions, k).await,
        [] => discover_everywhere(conn, out, kind).await,
        many => Err(KubeError::Invalid(format!(
            "kind `{kind}` is served by several API groups ({}); set `api_version` on the resource",
            many.iter()
                .map(|(g, v, _, _)| format!("{g}/{}", v[0]))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// One discovery request per version tried (`/apis/GROUP/VERSION`).
pub(crate) async fn discover(
    conn: &Conn,
    out: &Out<'_>,
    group: &str,
    versions: &[&str],
    kind: &str,
) -> Result<Kind> {
    for v in versions {
        let gv = if group.is_empty() {
            (*v).to_owned()
        } else {
            format!("{group}/{v}")
        };
        let list = conn
            .retry(out, &format!("discovery of {gv}"), || {
                conn.client.list_api_group_resources(&gv)
            })
            .await;
        let list = match list {
            Ok(l) => l,
            Err(KubeError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        if let Some(r) = list.resources.iter().find(|r| {
            !r.name.contains('/')
                && matches_kind(
                    &r.kind,
                    &r.name,
                    r.short_names.as_deref().unwrap_or(&[]),
                    kind,
                )
        }) {
            return Ok(Kind::new(group, v, &r.kind, &r.name, r.namespaced));
        }
    }
    Err(KubeError::MissingCrd {
        kind: kind.to_owned(),
        api_version: match versions.first() {
            Some(v) if !group.is_empty() => format!("{group}/{v}"),
            Some(v) => (*v).to_owned(),
            None => group.to_owned(),
        },
        group: group.to_owned(),
        component: component(group),
    })
}

/// A kind with no `api_version` that drctl does not know: full discovery.
async fn discover_everywhere(conn: &Conn, out: &Out<'_>, kind: &str) -> Result<Kind> {
    let groups = conn
        .retry(out, "discovery", || conn.client.list_api_groups())
        .await?;
    let mut found = Vec::new();
    for g in &groups.groups {
        let Some(pv) = g.preferred_version.as_ref().or(g.versions.first()) else {
            continue;
        };
        let list = conn
            .retry(out, "discovery", || {
                conn.client.list_api_group_resources(&pv.group_version)
            })
            .await?;
        for r in &list.resources {
            if !r.name.contains('/')
                && matches_kind(
                    &r.kind,
                    &r.name,
                    r.short_names.as_deref().unwrap_or(&[]),
                    kind,
                )
            {
                found.push(Kind::new(
                    &g.name,
                    &pv.version,
                    &r.kind,
                    &r.name,
                    r.namespaced,
                ));
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(KubeError::Invalid(format!(
            "the cluster serves no kind `{kind}`; check the spelling, or the CRD that should provide it (`kubectl api-resources`)"
        ))),
        _ => Err(KubeError::Invalid(format!(
            "kind `{kind}` is served by several API groups ({}); set `api_version` on the resource",
            found
                .iter()
                .map(|k| k.ar.api_version.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Field paths
// ---------------------------------------------------------------------------------------

pub(crate) fn path(p: &str) -> Result<Vec<PathSegment>> {
    parse_field_path(p).map_err(|e| KubeError::Invalid(format!("field path `{p}`: {e}")))
}

/// The value at a field path; `[key=value]` picks the first list element that matches.
pub(crate) fn field<'a>(obj: &'a Value, segs: &[PathSegment]) -> Option<&'a Value> {
    let mut cur = obj;
    for s in segs {
        cur = match s {
            PathSegment::Key(k) => cur.get(k)?,
            PathSegment::Index(i) => cur.get(*i)?,
            PathSegment::Filter { key, value } => cur
                .as_array()?
                .iter()
                .find(|e| e.get(key).map(text).as_deref() == Some(value.as_str()))?,
        };
    }
    Some(cur)
}

/// A field's value as text: strings as they are, anything else as compact JSON.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The status of condition `type` (`True`, `False`, `Unknown`, or "" when absent).
pub(crate) fn condition<'a>(obj: &'a Value, kind: &str) -> &'a str {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        })
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub(crate) fn condition_message(obj: &Value, kind: &str) -> String {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        })
        .map(|c| {
            let reason = str_at(c, "/reason");
            let msg = str_at(c, "/message");
            match (reason.is_empty(), msg.is_empty()) {
                (false, false) => format!("{reason}: {msg}"),
                (false, true) => reason.to_owned(),
                _ => msg.to_owned(),
            }
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Objects as results and lines
// ---------------------------------------------------------------------------------------

/// The object as JSON for results: no managedFields, and a Secret's values replaced (its
/// key names stay), so no secret reaches the journal or a template.
pub(crate) fn scrub(obj: &DynamicObject, kind: &Kind) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if v.get("apiVersion").is_none() {
        v["apiVersion"] = Value::String(kind.ar.api_version.clone());
        v["kind"] = Value::String(kind.ar.kind.clone());
    }
    scrub_value(&mut v);
    v
}

pub(crate) fn scrub_value(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    if v.get("kind").and_then(Value::as_str) == Some("Secret") {
        for key in ["data", "stringData"] {
            if let Some(d) = v.get_mut(key).and_then(Value::as_object_mut) {
                for val in d.values_mut() {
                    *val = Value::String("(hidden)".into());
                }
            }
        }
        if let Some(a) = v
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
}

pub(crate) fn name_of(v: &Value) -> &str {
    str_at(v, "/metadata/name")
}

pub(crate) fn ns_of(v: &Value) -> &str {
    str_at(v, "/metadata/namespace")
}

/// `ns/name` or `name`.
pub(crate) fn key_of(v: &Value) -> String {
    match ns_of(v) {
        "" => name_of(v).to_owned(),
        ns => format!("{ns}/{}", name_of(v)),
    }
}

/// How long ago an RFC 3339 time was, kubectl style (`3d4h`, `12m`, `40s`).
pub(crate) fn age(ts: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
        return "?".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Rows as aligned columns.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let fmt = |cells: Vec<&str>| {
        let n = cells.len();
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == n {
                    (*c).to_owned()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("   ")
    };
    let mut lines = vec![fmt(header.to_vec())];
    for r in rows {
        lines.push(fmt(r.iter().map(String::as_str).collect()));
    }
    lines
}

// ---------------------------------------------------------------------------------------
// Previews
// ---------------------------------------------------------------------------------------

/// RFC 7386 merge patch, applied locally for previews.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The leaf fields that differ between `before` and `after`, as `path: old -> new`.
/// Fields the server owns (resourceVersion, managedFields, status) are left out.
pub(crate) fn diff(before: &Value, after: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("", before, after, &mut out);
    out.retain(|l| {
        !l.starts_with("metadata.resourceVersion")
            && !l.starts_with("metadata.managedFields")
            && !l.starts_with("metadata.generation")
            && !l.starts_with("metadata.uid")
            && !l.starts_with("metadata.creationTimestamp")
            && !l.starts_with("status")
    });
    out
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "(absent)".into(),
        Some(v) => {
            let t = v.to_string();
            if t.chars().count() > 80 {
                format!("{}…", t.chars().take(80).collect::<String>())
            } else {
                t
            }
        }
    }
}

pub(super) fn diff_into(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, bv) in y {
                match x.get(k) {
                    Some(av) => diff_into(&join(k), av, bv, out),
                    None => out.push(format!("{}: (absent) -> {}", join(k), show(Some(bv)))),
                }
            }
            for (k, av) in x {
                if !y.contains_key(k) {
                    out.push(format!("{}: {} -> (absent)", join(k), show(Some(av))));
                }
            }
        }
        (x, y) if x == y => {}
        (x, y) => out.push(format!("{prefix}: {} -> {}", show(Some(x)), show(Some(y)))),
    }
}

/// Only the fields of `desired` (what a manifest or patch sets) compared with `live`.
pub(crate) fn diff_subset(live: &Value, desired: &Value) -> Vec<String> {
    let mut merged = live.clone();
    merge_patch(&mut merged, &strip_nulls(desired));
    diff(live, &merged)
}

pub(super) fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A YAML or JSON document (patches, manifests) as JSON.
pub(crate) fn parse_doc(text: &str, what: &str) -> Result<Value> {
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| KubeError::Invalid(format!("{what} is not valid YAML or JSON: {e}")))
}

pub(crate) fn parse_docs(text: &str, what: &str) -> Result<Vec<Value>> {
    let docs = serde_saphyr::from_multiple::<Value>(text)
        .map_err(|e| KubeError::Invalid(format!("{what} is not valid YAML: {e}")))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}
