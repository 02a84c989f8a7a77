//! Discovery (/api, /apis, group versions, /version) and the minimal OpenAPI documents kubectl
//! needs: v3 advertises the `fieldValidation` parameter so `kubectl create -f` validates on the
//! server; v2 is an empty (valid) protobuf document for kubectl's fallbacks.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::Response;
use serde_json::{Value, json};

use crate::api::{Resp, Sim, json_response};
use crate::body::SimBody;
use crate::types::ResourceType;

pub const KUBE_VERSION: (&str, &str) = ("1", "32");

fn verbs(rt: &ResourceType) -> Vec<&'static str> {
    vec![
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ]
    .into_iter()
    .filter(|v| rt.plural != "namespaces" || *v != "deletecollection")
    .collect()
}

fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for rt in types
        .iter()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
    {
        resources.push(json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": verbs(rt),
            "shortNames": rt.short_names,
            "categories": rt.categories,
        }));
        if rt.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", rt.plural),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if rt.key() == "/pods" {
            resources.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": if group.is_empty() { version.to_string() } else { format!("{group}/{version}") },
        "resources": resources,
    })
}

/// group -> versions (preferred first), in a stable order.
fn groups(types: &[ResourceType]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        let vs = out.entry(t.group.clone()).or_default();
        for v in &t.versions {
            if !vs.contains(v) {
                vs.push(v.clone());
            }
        }
    }
    out
}

fn openapi_v3_doc(types: &[ResourceType], group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    for rt in types
        .iter()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
    {
        let path = if rt.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", rt.plural)
        } else {
            format!("{prefix}/{}/{{name}}", rt.plural)
        };
        let op = json!({
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": rt.kind},
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}}
            ],
            "responses": {"200": {"description": "OK"}}
        });
        paths.insert(path, json!({"patch": op.clone(), "put": op}));
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kubesim)", "version": format!("v{}.{}", KUBE_VERSION.0, KUBE_VERSION.1)},
        "paths": paths,
        "components": {"schemas": {}},
    })
}

pub fn serve(sim: &Arc<Sim>, segs: &[&str], _accept: &str) -> Option<Resp> {
    let store = sim.store();
    let types = store.types();
    let ok = |v: Value| Some(json_response(200, &v));
    match segs {
        ["version"] => ok(json!({
            "major": KUBE_VERSION.0,
            "minor": KUBE_VERSION.1,
            "gitVersion": format!("v{}.{}.0", KUBE_VERSION.0, KUBE_VERSION.1),
            "gitCommit": "kubesim",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.23.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        })),
        ["healthz" | "livez" | "readyz"] => Some(Response::new(SimBody::full("ok"))),
        ["api"] => {
            let addr = sim.addr.lock().map(|a| a.clone()).unwrap_or_default();
            ok(json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}],
            }))
        }
        ["apis"] => {
            let gs: Vec<Value> = groups(types)
                .into_iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            ok(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs}))
        }
        ["api", "v1"] => ok(resource_list(types, "", "v1")),
        ["apis", g] => {
            let vs = groups(types).remove(*g)?;
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            ok(
                json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": versions, "preferredVersion": versions[0]}),
            )
        }
        ["apis", g, v] => {
            if !groups(types).get(*g)?.iter().any(|x| x == v) {
                return None;
            }
            ok(resource_list(types, g, v))
        }
        ["openapi", "v2"] => {
            // An openapi_v2.Document with only `swagger: "2.0"` (field 1), protobuf-encoded.
            let mut r = Response::new(SimBody::full(&b"\x0a\x032.0"[..]));
            if let Ok(ct) = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf".parse() {
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, ct);
            }
            Some(r)
        }
        ["openapi", "v3"] => {
            let mut paths = serde_json::Map::new();
            paths.insert(
                "api/v1".into(),
                json!({"serverRelativeURL": format!("/openapi/v3/api/v1?hash={}", store.resource_version())}),
            );
            for (g, vs) in groups(types) {
                for v in vs {
                    paths.insert(
                        format!("apis/{g}/{v}"),
                        json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash={}", store.resource_version())}),
                    );
                }
            }
            ok(json!({"paths": paths}))
        }
        ["openapi", "v3", "api", v] => ok(openapi_v3_doc(types, "", v)),
        ["openapi", "v3", "apis", g, v] => ok(openapi_v3_doc(types, g, v)),
        _ => None,
    }
}
