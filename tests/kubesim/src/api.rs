//! HTTP routing and the Kubernetes API verbs on top of the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::body::SimBody;
use crate::faults::Faults;
use crate::scenario::Scenario;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{self, ApiError};
use crate::store::{Scope, Store, meta_str};
use crate::types::ResourceType;
use crate::{discovery, patch, proto, table};

impl From<crate::patch::PatchError> for ApiError {
    fn from(e: crate::patch::PatchError) -> Self {
        ApiError::Invalid(e.to_string())
    }
}

impl From<crate::selector::SelectorError> for ApiError {
    fn from(e: crate::selector::SelectorError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<crate::proto::ProtoError> for ApiError {
    fn from(e: crate::proto::ProtoError) -> Self {
        ApiError::UnsupportedMediaType(e.to_string())
    }
}

/// Shared simulator state.
pub struct Sim {
    store: Mutex<Store>,
    pub faults: Mutex<Faults>,
    pub scenario: Scenario,
    /// Bumped to abort every open watch stream (fault injection).
    pub drop_watches: watch::Sender<u64>,
    pub addr: Mutex<String>,
    /// Extra log lines per pod, appended by controllers (job pods) or the admin API.
    pub pod_logs: Mutex<HashMap<String, String>>,
    /// Wakes the accept loop to close the listener (`/_sim/down`).
    pub down: tokio::sync::Notify,
    /// Bumped to close every open connection.
    pub kill_conns: watch::Sender<u64>,
    /// API requests served (admin requests excluded), by verb: `GET /_sim/requests`.
    pub requests: Mutex<RequestCounts>,
    /// On-delete commands still running (pod uid -> controller uid).
    pub hooks: Mutex<crate::pod_hooks::RunningHooks>,
}

/// What clients asked for, so tests and benchmarks can count a client's requests.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RequestCounts {
    pub total: u64,
    pub list: u64,
    pub watch: u64,
    pub get: u64,
    pub other: u64,
}

impl RequestCounts {
    fn count(&mut self, method: &hyper::Method, query: Option<&str>, path: &str) {
        self.total += 1;
        let watch =
            query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=1" || kv == "watch=true"));
        if watch {
            self.watch += 1;
        } else if *method == hyper::Method::GET {
            // A list names a resource collection: an even number of segments after the
            // group-version, or a single segment (`/api/v1/pods`).
            if crate::api::is_collection_path(path) {
                self.list += 1;
            } else {
                self.get += 1;
            }
        } else {
            self.other += 1;
        }
    }
}

impl Sim {
    pub fn new(scenario: Scenario) -> Self {
        let (drop_watches, _) = watch::channel(0);
        let (kill_conns, _) = watch::channel(0);
        Sim {
            store: Mutex::new(Store::new(scenario.clocks_start_at_watch)),
            faults: Mutex::new(Faults::default()),
            scenario,
            drop_watches,
            addr: Mutex::new(String::new()),
            pod_logs: Mutex::new(HashMap::new()),
            down: tokio::sync::Notify::new(),
            kill_conns,
            requests: Mutex::new(RequestCounts::default()),
            hooks: Mutex::new(Default::default()),
        }
    }

    /// The store lock. A panic while holding it is a simulator bug; keep serving regardless.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub type Resp = Response<SimBody>;

pub fn json_response(code: u16, v: &Value) -> Resp {
    json_typed(code, v, "application/json")
}

fn json_typed(code: u16, v: &Value, content_type: &str) -> Resp {
    let mut r = Response::new(SimBody::full(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(ct) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, ct);
    }
    r
}

pub fn error_response(e: &ApiError) -> Resp {
    json_response(e.code(), &e.to_status())
}

fn text_response(code: u16, text: String) -> Resp {
    let mut r = Response::new(SimBody::full(text));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r
}

pub fn query_map(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A resolved resource path.
struct Target {
    rt: ResourceType,
    version: String,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

fn resolve(store: &Store, segs: &[&str]) -> Result<Target, ApiError> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::NoRoute),
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if store
                .find_type(group, version, plural)
                .is_some_and(|t| t.namespaced) =>
        {
            (ns.to_string(), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        other => (String::new(), other.to_vec()),
    };
    let plural = rest.first().ok_or(ApiError::NoRoute)?;
    let rt = store
        .find_type(group, version, plural)
        .ok_or(ApiError::NoRoute)?;
    if rest.len() > 3 {
        return Err(ApiError::NoRoute);
    }
    Ok(Target {
        rt,
        version: version.to_string(),
        ns,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

/// Sets apiVersion to the version the client asked for (versions share storage, unconverted).
fn as_version(mut obj: Value, rt: &ResourceType, version: &str) -> Value {
    obj["apiVersion"] = json!(rt.api_version(version));
    obj
}

pub async fn handle(sim: Arc<Sim>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    if std::env::var_os("KUBESIM_DEBUG").is_some() {
        let h = |n: hyper::header::HeaderName| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        eprintln!(
            "kubesim: {} {} content-type={} accept={}",
            req.method(),
            req.uri(),
            h(hyper::header::CONTENT_TYPE),
            h(hyper::header::ACCEPT)
        );
    }
    if let Some(admin) = path.strip_prefix("/_sim/") {
        return crate::faults::admin(&sim, req.method().clone(), admin, req).await;
    }
    sim.requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .count(req.method(), req.uri().query(), &path);
    if let Some(injected) = crate::faults::before_request(&sim, &path).await {
        return error_response(&injected);
    }
    if let Some((ns, name)) = crate::portforward::match_path(&path) {
        return crate::portforward::handle(sim, req, ns, name).await;
    }
    match route(&sim, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

/// `/api/v1/pods`, `/api/v1/namespaces/x/pods`, `/apis/g/v/namespaces/x/things`: a
/// collection (a list when read); `/api/v1/namespaces/x/pods/p` is one object.
pub fn is_collection_path(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.first() {
        Some(&"api") => segs.get(2..),
        Some(&"apis") => segs.get(3..),
        _ => None,
    };
    matches!(rest, Some([_]) | Some(["namespaces", _, _]))
}

async fn read_body(req: Request<Incoming>) -> Result<(String, Bytes), ApiError> {
    let ct = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?
        .to_bytes();
    Ok((ct, bytes))
}

fn parse_object(ct: &str, body: &[u8]) -> Result<Value, ApiError> {
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        return Ok(proto::decode(body)?);
    }
    if ct.contains("yaml") {
        return serde_yaml::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid YAML body: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

async fn route(sim: &Arc<Sim>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = query_map(req.uri().query());
    let accept = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let method = req.method().clone();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();

    if method == Method::GET
        && let Some(r) = discovery::serve(sim, &segs, &accept)
    {
        return Ok(r);
    }
    let target = {
        let store = sim.store();
        resolve(&store, &segs)?
    };
    let Target {
        rt,
        version,
        ns,
        name,
        sub,
    } = target;
    let wants_table = accept.contains("as=Table");
    let include_object = query
        .get("includeObject")
        .map(String::as_str)
        .unwrap_or("Metadata");
    let dry_run = query.contains_key("dryRun");

    match (method.clone(), name, sub.as_deref()) {
        (Method::GET, None, None) => {
            let labels =
                LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
            let fields =
                FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))?;
            let ns_filter = if rt.namespaced && !ns.is_empty() {
                Some(ns.as_str())
            } else {
                None
            };
            if matches!(query.get("watch").map(String::as_str), Some("1" | "true")) {
                let params = WatchParams {
                    ns: ns_filter.map(str::to_string),
                    rt,
                    version,
                    labels,
                    fields,
                    wants_table,
                    include_object: include_object.to_string(),
                };
                return watch(sim, params, &query);
            }
            let store = sim.store();
            let items: Vec<Value> = store
                .list(&rt, ns_filter)
                .into_iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .map(|o| as_version(o, &rt, &version))
                .collect();
            let rv = store.resource_version().to_string();
            if wants_table {
                let t = table::table(&store, &rt, &items, &rv, include_object);
                return Ok(json_typed(
                    200,
                    &t,
                    "application/json;as=Table;v=v1;g=meta.k8s.io",
                ));
            }
            Ok(json_response(
                200,
                &json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(&version),
                    "metadata": {"resourceVersion": rv},
                    "items": items,
                }),
            ))
        }
        (Method::GET, Some(name), None | Some("status")) => {
            let store = sim.store();
            let obj = as_version(store.get(&rt, &ns, &name)?, &rt, &version);
            if wants_table {
                let rv = store.resource_version().to_string();
                let t = table::table(&store, &rt, &[obj], &rv, include_object);
                return Ok(json_typed(
                    200,
                    &t,
                    "application/json;as=Table;v=v1;g=meta.k8s.io",
                ));
            }
            Ok(json_response(200, &obj))
        }
        (Method::GET, Some(name), Some("log")) if rt.key() == "/pods" => {
            let obj = sim.store().get(&rt, &ns, &name)?;
            Ok(text_response(
                200,
                crate::controllers::pod_log(sim, &obj, &query),
            ))
        }
        (Method::POST, None, None) => {
            let (ct, body) = read_body(req).await?;
            let obj = parse_object(&ct, &body)?;
            let body_ns = meta_str(&obj, "namespace");
            if rt.namespaced && !body_ns.is_empty() && !ns.is_empty() && body_ns != ns {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
            if dry_run {
                return Err(ApiError::BadRequest(
                    "dryRun is not supported by kubesim".into(),
                ));
            }
            let created = sim.store().create(&rt, &ns, obj, Scope::Main)?;
            Ok(json_response(201, &as_version(created, &rt, &version)))
        }
        (Method::PUT, Some(name), sub @ (None | Some("status" | "finalize"))) => {
            let (ct, body) = read_body(req).await?;
            let obj = parse_object(&ct, &body)?;
            let scope = scope_for(&rt, sub);
            let updated = sim.store().update(&rt, &ns, &name, obj, scope)?;
            Ok(json_response(200, &as_version(updated, &rt, &version)))
        }
        (Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let (ct, body) = read_body(req).await?;
            let patch_doc: Value = if ct.contains("yaml") {
                serde_yaml::from_slice(&body)
                    .map_err(|e| ApiError::BadRequest(format!("invalid YAML patch: {e}")))?
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch body: {e}")))?
            };
            let scope = scope_for(&rt, sub);
            let mut store = sim.store();
            let current = match store.get(&rt, &ns, &name) {
                Ok(c) => c,
                // Server-side apply creates what does not exist yet.
                Err(ApiError::NotFound { .. }) if ct.starts_with("application/apply-patch") => {
                    let created = store.create(&rt, &ns, patch_doc, Scope::Main)?;
                    return Ok(json_response(201, &as_version(created, &rt, &version)));
                }
                Err(e) => return Err(e),
            };
            let mut next = current.clone();
            if ct.starts_with("application/json-patch+json") {
                patch::json_patch(&mut next, &patch_doc)?;
            } else if ct.starts_with("application/merge-patch+json") {
                patch::merge_patch(&mut next, &patch_doc);
            } else if ct.starts_with("application/strategic-merge-patch+json")
                || ct.starts_with("application/apply-patch")
            {
                patch::strategic_merge_patch(&mut next, &patch_doc);
            } else {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {ct}"
                )));
            }
            // The stored version is checked only when the patch itself names one.
            let sent_rv = patch_doc
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            next["metadata"]["resourceVersion"] = match sent_rv {
                Some(rv) => json!(rv),
                None => current["metadata"]["resourceVersion"].clone(),
            };
            let updated = store.update(&rt, &ns, &name, next, scope)?;
            Ok(json_response(200, &as_version(updated, &rt, &version)))
        }
        (Method::DELETE, Some(name), None) => {
            let (_, body) = read_body(req).await?;
            let opts: Value = if body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&body).unwrap_or(json!({}))
            };
            let deleted = {
                let mut store = sim.store();
                let deleted = store.delete(
                    &rt,
                    &ns,
                    &name,
                    opts.pointer("/preconditions/uid").and_then(Value::as_str),
                    opts.pointer("/preconditions/resourceVersion")
                        .and_then(Value::as_str),
                );
                crate::pod_hooks::start_on_delete(sim, &mut store);
                deleted?
            };
            Ok(json_response(200, &as_version(deleted, &rt, &version)))
        }
        (Method::DELETE, None, None) => {
            let labels =
                LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
            let fields =
                FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))?;
            let mut store = sim.store();
            let ns_filter = if rt.namespaced && !ns.is_empty() {
                Some(ns.as_str())
            } else {
                None
            };
            for obj in store.list(&rt, ns_filter) {
                if labels.matches(&obj) && fields.matches(&obj) {
                    let (n, nm) = (
                        meta_str(&obj, "namespace").to_string(),
                        meta_str(&obj, "name").to_string(),
                    );
                    if let Err(e) = store.delete(&rt, &n, &nm, None, None) {
                        crate::pod_hooks::start_on_delete(sim, &mut store);
                        return Err(e);
                    }
                }
            }
            crate::pod_hooks::start_on_delete(sim, &mut store);
            Ok(json_response(200, &status::success()))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn scope_for(rt: &ResourceType, sub: Option<&str>) -> Scope {
    match sub {
        Some("status") if rt.status_subresource => Scope::Status,
        // namespaces/finalize and types without a status subresource write everything.
        Some(_) => Scope::Internal,
        None => Scope::Main,
    }
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

pub struct WatchParams {
    pub rt: ResourceType,
    pub version: String,
    pub ns: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub wants_table: bool,
    pub include_object: String,
}

impl WatchParams {
    fn matches(&self, o: &Value) -> bool {
        self.ns
            .as_deref()
            .is_none_or(|n| meta_str(o, "namespace") == n)
            && self.labels.matches(o)
            && self.fields.matches(o)
    }

    fn render(&self, store: &Store, o: &Value) -> Value {
        let o = as_version(o.clone(), &self.rt, &self.version);
        if self.wants_table {
            let rv = meta_str(&o, "resourceVersion").to_string();
            table::table(store, &self.rt, &[o], &rv, &self.include_object)
        } else {
            o
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let mut bm = json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(&self.version), "metadata": meta});
        if self.wants_table {
            bm = table::bookmark_table(&bm);
        }
        watch_line("BOOKMARK", &bm)
    }
}

fn stream_response(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>, table: bool) -> Resp {
    let mut r = Response::new(SimBody::Stream(rx));
    let ct = if table {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else {
        "application/json"
    };
    if let Ok(v) = ct.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// An open watch stream; dropping it tells the store the watch ended.
struct WatchOpen {
    sim: Arc<Sim>,
    key: String,
    n: usize,
}

impl Drop for WatchOpen {
    fn drop(&mut self) {
        self.sim.store().watch_closed(&self.key, self.n);
    }
}

fn watch(
    sim: &Arc<Sim>,
    p: WatchParams,
    query: &HashMap<String, String>,
) -> Result<Resp, ApiError> {
    let requested_rv: Option<u64> = query.get("resourceVersion").and_then(|v| v.parse().ok());
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let initial_events = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let key = p.rt.key();

    // Under one lock: the initial state or the replay, and the subscription for what follows.
    let watch_no;
    let (mut initial, mut events, start_rv) = {
        let mut store = sim.store();
        watch_no = store.watch_opened(&key);
        let current = store.resource_version();
        match requested_rv {
            Some(rv) if rv > 0 && !initial_events => match store.watch_from(&key, rv) {
                Ok((replay, rx_events)) => {
                    let lines: Vec<Bytes> = replay
                        .iter()
                        .filter(|e| p.matches(&e.object))
                        .map(|e| watch_line(e.kind.as_str(), &p.render(&store, &e.object)))
                        .collect();
                    (lines, rx_events, current)
                }
                Err(e) => {
                    // kube-apiserver answers an expired version with 200 and an ERROR event.
                    let _ = tx.try_send(Ok(watch_line("ERROR", &e.to_status())));
                    store.watch_closed(&key, watch_no);
                    return Ok(stream_response(rx, p.wants_table));
                }
            },
            _ => {
                // No version, 0, or sendInitialEvents: synthetic ADDED for what exists now.
                let mut lines: Vec<Bytes> = store
                    .list(&p.rt, None)
                    .iter()
                    .filter(|o| p.matches(o))
                    .map(|o| watch_line("ADDED", &p.render(&store, o)))
                    .collect();
                if initial_events {
                    lines.push(p.bookmark(current, true));
                }
                (lines, store.subscribe(), current)
            }
        }
    };
    let mut dropped = sim.drop_watches.subscribe();
    let sim = sim.clone();
    let wants_table = p.wants_table;
    tokio::spawn(async move {
        // The simulator's clocks (`clocksStartAtWatch`) learn when this watch ends, however.
        let _open = WatchOpen {
            sim: sim.clone(),
            key: key.clone(),
            n: watch_no,
        };
        for line in initial.drain(..) {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_rv = start_rv;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = dropped.changed() => {
                    let _ = tx.send(Err(std::io::Error::other("watch dropped by fault injection"))).await;
                    return;
                }
                _ = tick.tick(), if bookmarks => {
                    if tx.send(Ok(p.bookmark(last_rv, false))).await.is_err() { return; }
                }
                ev = events.recv() => {
                    // Lagging or a closed channel ends the watch; the client re-lists.
                    let Ok(ev) = ev else { return };
                    if ev.key != key || ev.rv <= start_rv { continue; }
                    last_rv = ev.rv;
                    if !p.matches(&ev.object) { continue; }
                    let line = {
                        let store = sim.store();
                        watch_line(ev.kind.as_str(), &p.render(&store, &ev.object))
                    };
                    if tx.send(Ok(line)).await.is_err() { return; }
                }
            }
        }
    });
    Ok(stream_response(rx, wants_table))
}
