//! Server-side printing: the `Table` kubectl asks for in `kubectl get` (meta.k8s.io/v1).

use serde_json::{Value, json};

use crate::store::{Store, meta_str};
use crate::types::ResourceType;

fn human_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn age(store: &Store, obj: &Value) -> String {
    store
        .since_created(obj)
        .map(|d| human_age(d.as_secs()))
        .unwrap_or_else(|| "<unknown>".into())
}

/// A small JSONPath subset for printer columns: `.a.b`, `.a[0].b`, `.a[?(@.k=="v")].b`.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    rest = rest.strip_prefix('.').unwrap_or(rest);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = r[end + 1..].strip_prefix('.').unwrap_or(&r[end + 1..]);
            let arr = cur.as_array()?;
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, v) = filter.split_once("==")?;
                let v = v.trim().trim_matches('"').trim_matches('\'');
                cur = arr
                    .iter()
                    .find(|e| e.get(k.trim()).and_then(Value::as_str) == Some(v))?;
            } else {
                cur = arr.get(inner.parse::<usize>().ok()?)?;
            }
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        cur = cur.get(&rest[..end])?;
        rest = &rest[end..];
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some(cur)
}

fn cell(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => json!("<none>"),
        Some(v) => v.clone(),
    }
}

fn int_at(obj: &Value, p: &str) -> i64 {
    obj.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn condition(obj: &Value, kind: &str) -> Option<String> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .and_then(|c| c.get("status").and_then(Value::as_str))
        .map(str::to_string)
}

fn columns(rt: &ResourceType, obj: &Value) -> (Vec<(String, String)>, Vec<Value>) {
    let s = |n: &str| (n.to_string(), "string".to_string());
    let i = |n: &str| (n.to_string(), "integer".to_string());
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => {
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(1, Vec::len);
            let ready = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |c| {
                    c.iter()
                        .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
                        .count()
                });
            let phase = if obj.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating".to_string()
            } else if obj.pointer("/status/phase").and_then(Value::as_str) == Some("Succeeded") {
                "Completed".to_string()
            } else {
                obj.pointer("/status/phase")
                    .and_then(Value::as_str)
                    .unwrap_or("Pending")
                    .to_string()
            };
            (
                vec![s("Ready"), s("Status"), i("Restarts")],
                vec![json!(format!("{ready}/{total}")), json!(phase), json!(0)],
            )
        }
        ("", "namespaces") => (vec![s("Status")], vec![cell(obj.pointer("/status/phase"))]),
        ("", "nodes") => (
            vec![s("Status")],
            vec![json!(
                if condition(obj, "Ready").as_deref() == Some("True") {
                    "Ready"
                } else {
                    "NotReady"
                }
            )],
        ),
        ("", "secrets") => (
            vec![s("Type"), i("Data")],
            vec![
                cell(obj.get("type")),
                json!(
                    obj.get("data")
                        .and_then(Value::as_object)
                        .map_or(0, |m| m.len())
                ),
            ],
        ),
        ("", "configmaps") => (
            vec![i("Data")],
            vec![json!(
                obj.get("data")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            )],
        ),
        ("", "persistentvolumeclaims") => {
            (vec![s("Status")], vec![cell(obj.pointer("/status/phase"))])
        }
        ("apps", "deployments") => {
            let want = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            (
                vec![s("Ready"), i("Up-to-date"), i("Available")],
                vec![
                    json!(format!("{}/{want}", int_at(obj, "/status/readyReplicas"))),
                    json!(int_at(obj, "/status/updatedReplicas")),
                    json!(int_at(obj, "/status/availableReplicas")),
                ],
            )
        }
        ("apps", "statefulsets") => {
            let want = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            (
                vec![s("Ready")],
                vec![json!(format!(
                    "{}/{want}",
                    int_at(obj, "/status/readyReplicas")
                ))],
            )
        }
        ("batch", "jobs") => {
            let status = if condition(obj, "Complete").as_deref() == Some("True") {
                "Complete"
            } else if condition(obj, "Failed").as_deref() == Some("True") {
                "Failed"
            } else {
                "Running"
            };
            (
                vec![s("Status"), s("Completions")],
                vec![
                    json!(status),
                    json!(format!("{}/1", int_at(obj, "/status/succeeded"))),
                ],
            )
        }
        ("batch", "cronjobs") => (
            vec![s("Schedule"), s("Suspend"), s("Last Schedule")],
            vec![
                cell(obj.pointer("/spec/schedule")),
                json!(
                    obj.pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                ),
                cell(obj.pointer("/status/lastScheduleTime")),
            ],
        ),
        _ if rt.from_crd => {
            let mut names = Vec::new();
            let mut cells = Vec::new();
            for c in &rt.columns {
                if c.json_path == ".metadata.creationTimestamp" {
                    continue;
                }
                names.push((c.name.clone(), c.kind.clone()));
                cells.push(cell(json_path(obj, &c.json_path)));
            }
            (names, cells)
        }
        _ => (vec![], vec![]),
    }
}

pub fn table(
    store: &Store,
    rt: &ResourceType,
    items: &[Value],
    rv: &str,
    include_object: &str,
) -> Value {
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}),
    ];
    let mut rows = Vec::new();
    let mut header_done = false;
    for obj in items {
        let (cols, mut cells) = columns(rt, obj);
        if !header_done {
            for (n, t) in &cols {
                defs.push(
                    json!({"name": n, "type": t, "format": "", "description": n, "priority": 0}),
                );
            }
            defs.push(json!({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}));
            header_done = true;
        }
        cells.insert(0, json!(meta_str(obj, "name")));
        cells.push(json!(age(store, obj)));
        let object = match include_object {
            "None" => Value::Null,
            "Object" => obj.clone(),
            _ => {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
            }
        };
        rows.push(json!({"cells": cells, "object": object}));
    }
    if !header_done {
        let (cols, _) = columns(rt, &json!({}));
        for (n, t) in &cols {
            defs.push(json!({"name": n, "type": t, "format": "", "description": n, "priority": 0}));
        }
        defs.push(json!({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}));
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": defs,
        "rows": rows,
    })
}

pub fn bookmark_table(bm: &Value) -> Value {
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": bm.get("metadata").cloned().unwrap_or(json!({})), "columnDefinitions": [], "rows": []})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_subset() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True", "reason": "Valid"}], "sync": {"status": "Synced"}}});
        assert_eq!(json_path(&o, ".status.sync.status"), Some(&json!("Synced")));
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].reason"),
            Some(&json!("Valid"))
        );
        assert_eq!(
            json_path(&o, ".status.conditions[0].type"),
            Some(&json!("A"))
        );
        assert_eq!(json_path(&o, ".status.missing"), None);
    }
}
