//! A cluster's state as the checks read it: kubectl, not drctl's word.

use serde_json::Value;

use crate::lab::{Cluster, KubeSim};

/// `kubectl get -o json ARGS`; None when the object does not exist.
pub fn kget(sim: &impl Cluster, args: &[&str]) -> Option<Value> {
    let o = sim
        .kubectl()
        .args(["get", "-o", "json"])
        .args(args)
        .output()
        .expect("run kubectl get");
    if !o.status.success() {
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("NotFound") || e.contains("not found"),
            "kubectl get {args:?}: {e}"
        );
        return None;
    }
    Some(serde_json::from_slice(&o.stdout).expect("kubectl prints JSON"))
}

/// The items of a `kubectl get -o json` list.
pub fn kitems(sim: &KubeSim, args: &[&str]) -> Vec<Value> {
    kget(sim, args)
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

/// The status of an object's condition of this type.
pub fn condition(obj: &Value, kind: &str) -> Option<String> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

/// An object's `metadata.name`.
pub fn object_name(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
