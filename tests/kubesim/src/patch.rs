//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and an approximation of strategic merge
//! patch: lists of objects that all carry a `name` are merged by name, `$patch: delete` removes
//! an element and other `$` directives are dropped. Everything else behaves as merge patch.

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("invalid JSON patch: {0}")]
    InvalidJsonPatch(String),
    #[error("JSON patch test failed at {0}")]
    TestFailed(String),
    #[error("JSON patch path {0} does not exist")]
    MissingPath(String),
}

pub fn merge_patch(target: &mut Value, patch: &Value) {
    merge(target, patch, false);
}

pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    merge(target, patch, true);
}

fn named_list(v: &[Value]) -> bool {
    !v.is_empty()
        && v.iter()
            .all(|e| e.get("name").and_then(Value::as_str).is_some())
}

fn merge(target: &mut Value, patch: &Value, strategic: bool) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if strategic && k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(existing @ Value::Object(_)), Value::Object(_)) => merge(existing, v, strategic),
            (Some(Value::Array(existing)), Value::Array(items))
                if strategic && named_list(items) && named_list(existing) =>
            {
                for item in items {
                    let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
                    let pos = existing
                        .iter()
                        .position(|e| e.get("name").and_then(Value::as_str) == Some(name));
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (pos, delete) {
                        (Some(i), true) => {
                            existing.remove(i);
                        }
                        (Some(i), false) => merge(&mut existing[i], item, true),
                        (None, false) => {
                            let mut fresh = Value::Null;
                            merge(&mut fresh, item, true);
                            existing.push(fresh);
                        }
                        (None, true) => {}
                    }
                }
            }
            _ => {
                let mut fresh = Value::Null;
                if v.is_object() {
                    merge(&mut fresh, v, strategic);
                } else {
                    fresh = v.clone();
                }
                t.insert(k.clone(), fresh);
            }
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(String, String), PatchError> {
    let idx = path
        .rfind('/')
        .ok_or_else(|| PatchError::InvalidJsonPatch(format!("bad path {path:?}")))?;
    Ok((path[..idx].to_string(), unescape(&path[idx + 1..])))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| PatchError::MissingPath(parent.clone()))?;
    match target {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| PatchError::InvalidJsonPatch(format!("bad index in {path}")))?;
                if i > a.len() {
                    return Err(PatchError::MissingPath(path.to_string()));
                }
                a.insert(i, value);
            }
        }
        _ => return Err(PatchError::MissingPath(path.to_string())),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parent, last) = split_pointer(path)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| PatchError::MissingPath(parent.clone()))?;
    match target {
        Value::Object(m) => m
            .remove(&last)
            .ok_or_else(|| PatchError::MissingPath(path.to_string())),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| PatchError::InvalidJsonPatch(format!("bad index in {path}")))?;
            if i >= a.len() {
                return Err(PatchError::MissingPath(path.to_string()));
            }
            Ok(a.remove(i))
        }
        _ => Err(PatchError::MissingPath(path.to_string())),
    }
}

pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), PatchError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| PatchError::InvalidJsonPatch("expected an array of operations".into()))?;
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::InvalidJsonPatch("operation without path".into()))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| PatchError::InvalidJsonPatch(format!("{name} without value")))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| PatchError::InvalidJsonPatch(format!("{name} without from")))
        };
        match name {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                remove(doc, path)?;
                add(doc, path, value()?)?;
            }
            "move" => {
                let v = remove(doc, from()?)?;
                add(doc, path, v)?;
            }
            "copy" => {
                let v = doc
                    .pointer(from()?)
                    .cloned()
                    .ok_or_else(|| PatchError::MissingPath(path.to_string()))?;
                add(doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(PatchError::TestFailed(path.to_string()));
                }
            }
            other => {
                return Err(PatchError::InvalidJsonPatch(format!(
                    "unknown operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_removes_nulls_and_replaces_lists() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_merges_named_lists() {
        let mut t =
            json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]});
        strategic_merge_patch(
            &mut t,
            &json!({"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "a", "image": "z"}, {"name": "b", "$patch": "delete"}]}),
        );
        assert_eq!(t, json!({"containers": [{"name": "a", "image": "z"}]}));
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"metadata": {"labels": {"a": "1"}}, "l": [1, 2]});
        json_patch(
            &mut t,
            &json!([
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
                {"op": "replace", "path": "/metadata/labels/a", "value": "x"},
                {"op": "remove", "path": "/l/0"},
                {"op": "add", "path": "/l/-", "value": 9},
                {"op": "test", "path": "/l", "value": [2, 9]}
            ]),
        )
        .expect("patch applies");
        assert_eq!(
            t,
            json!({"metadata": {"labels": {"a": "x", "b": "2"}}, "l": [2, 9]})
        );
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }
}
