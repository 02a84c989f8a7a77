//! The object store: every object of every type, one global resourceVersion counter, and the
//! event log that watches replay from. All writes go through here so that every change bumps
//! the resourceVersion and reaches the watchers in order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::status::{self, ApiError};
use crate::types::{self, ResourceType};

/// A receiver of every event after the moment it was taken.
pub type Subscription = broadcast::Receiver<Arc<Event>>;

/// How many events a watch can replay; older versions answer 410 Gone.
const LOG_CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub key: String,
    pub kind: EventType,
    pub object: Arc<Value>,
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource: status is kept as stored when the type has a status subresource.
    Main,
    /// The status subresource: only status changes.
    Status,
    /// The simulator's own controllers and seeding: everything.
    Internal,
}

pub struct Store {
    rv: u64,
    types: Vec<ResourceType>,
    objects: HashMap<String, BTreeMap<(String, String), Value>>,
    log: VecDeque<Arc<Event>>,
    /// Watches asking for a version below this get 410 Gone.
    floor: u64,
    tx: broadcast::Sender<Arc<Event>>,
    /// When each object (by uid) was created, on the simulator's monotonic clock.
    born: HashMap<String, Instant>,
    /// Watches of each type (by storage key): when each opened and, once ended, when; see `age`.
    watches: HashMap<String, Vec<(Instant, Option<Instant>)>>,
    /// The scenario's `clocksStartAtWatch`.
    clocks_start_at_watch: bool,
    seed: u64,
    /// Pods with an on-delete command deleted since the simulator last took them.
    deleted_hooked_pods: Vec<Value>,
}

pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// RFC 3339 in UTC from Unix seconds (civil-from-days, Howard Hinnant's algorithm).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn spec_part(obj: &Value) -> Value {
    match obj {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl Store {
    pub fn new(clocks_start_at_watch: bool) -> Self {
        let (tx, _) = broadcast::channel(4096);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        let mut store = Store {
            rv: 0,
            types: types::builtin_types(),
            objects: HashMap::new(),
            log: VecDeque::new(),
            floor: 0,
            tx,
            born: HashMap::new(),
            watches: HashMap::new(),
            clocks_start_at_watch,
            seed,
            deleted_hooked_pods: Vec::new(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let ns_type = store.core("namespaces");
            // Cannot fail: the store is empty.
            let _ = store.create(
                &ns_type,
                "",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                Scope::Internal,
            );
        }
        let crd_type = store.core_group("apiextensions.k8s.io", "customresourcedefinitions");
        for crd in types::builtin_crds() {
            let _ = store.create(&crd_type, "", crd, Scope::Internal);
        }
        store
    }

    fn core_group(&self, group: &str, plural: &str) -> ResourceType {
        self.types
            .iter()
            .find(|t| t.group == group && t.plural == plural)
            .cloned()
            .unwrap_or_else(|| panic!("built-in type {group}/{plural} missing"))
    }

    /// A built-in core type; the names used in code are compiled in, so absence is a bug.
    pub fn core(&self, plural: &str) -> ResourceType {
        self.core_group("", plural)
    }

    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| {
                t.group == group && t.plural == plural && t.versions.iter().any(|v| v == version)
            })
            .cloned()
    }

    pub fn find_kind(&self, group: &str, kind: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
            .cloned()
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// How long ago `obj` was created (kubectl's AGE column).
    pub fn since_created(&self, obj: &Value) -> Option<std::time::Duration> {
        self.born.get(meta_str(obj, "uid")).map(Instant::elapsed)
    }

    /// How long the controllers have seen `obj`: since its creation or, with
    /// `clocksStartAtWatch`, since the first watch of its type that was open at its creation or
    /// opened after it (None until there is one: its clock has not started).
    pub fn age(&self, obj: &Value) -> Option<std::time::Duration> {
        let born = *self.born.get(meta_str(obj, "uid"))?;
        if !self.clocks_start_at_watch {
            return Some(born.elapsed());
        }
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let start = self
            .find_kind(group, kind)
            .and_then(|rt| self.watches.get(&rt.key()))
            .and_then(|ws| {
                ws.iter()
                    .filter(|(_, closed)| closed.is_none_or(|c| c > born))
                    .map(|(opened, _)| (*opened).max(born))
                    .min()
            });
        start.map(|t| t.elapsed())
    }

    /// A client opened a watch on the type stored under `key`; the number to end it with.
    pub fn watch_opened(&mut self, key: &str) -> usize {
        let ws = self.watches.entry(key.to_string()).or_default();
        ws.push((Instant::now(), None));
        ws.len() - 1
    }

    /// The watch `n` of `watch_opened` ended.
    pub fn watch_closed(&mut self, key: &str, n: usize) {
        if let Some(w) = self.watches.get_mut(key).and_then(|ws| ws.get_mut(n)) {
            w.1 = Some(Instant::now());
        }
    }

    /// Events after `rv` for `key`, plus a receiver for what follows, taken atomically.
    pub fn watch_from(
        &self,
        key: &str,
        rv: u64,
    ) -> Result<(Vec<Arc<Event>>, Subscription), ApiError> {
        if rv < self.floor {
            return Err(ApiError::Gone {
                requested: rv,
                oldest: self.floor,
            });
        }
        let replay = self
            .log
            .iter()
            .filter(|e| e.rv > rv && e.key == key)
            .cloned()
            .collect();
        Ok((replay, self.tx.subscribe()))
    }

    /// Forgets the event log, so every older resourceVersion is expired (tests of 410 Gone).
    pub fn compact(&mut self) {
        self.log.clear();
        self.floor = self.rv;
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: names and uids only need to be unique, not unpredictable.
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn random_suffix(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut r = self.random();
        (0..len)
            .map(|_| {
                let c = ALPHABET[(r % ALPHABET.len() as u64) as usize] as char;
                r /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    fn uid(&mut self) -> String {
        let a = self.random();
        let b = self.random();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    fn emit(&mut self, key: &str, kind: EventType, obj: &Value) {
        let event = Arc::new(Event {
            rv: self.rv,
            key: key.to_string(),
            kind,
            object: Arc::new(obj.clone()),
        });
        if self.log.len() >= LOG_CAPACITY
            && let Some(old) = self.log.pop_front()
        {
            self.floor = old.rv;
        }
        self.log.push_back(event.clone());
        // No receivers is fine.
        let _ = self.tx.send(event);
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&rt.key())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| status::not_found(&rt.group, &rt.plural, name))
    }

    /// Objects of a type, in one namespace or (None) all of them, sorted by namespace and name.
    pub fn list(&self, rt: &ResourceType, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .get(&rt.key())
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn check_namespace(&self, rt: &ResourceType, ns: &str) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        if ns.is_empty() {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        let ns_obj = self
            .objects
            .get("/namespaces")
            .and_then(|m| m.get(&(String::new(), ns.to_string())))
            .ok_or_else(|| status::not_found("", "namespaces", ns))?;
        if ns_obj.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::Forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                rt.plural,
                meta_str(ns_obj, "name")
            )));
        }
        Ok(())
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        scope: Scope,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            ));
        }
        let ns = if rt.namespaced { ns } else { "" };
        self.check_namespace(rt, ns)?;
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&obj, "generateName").to_string();
            if prefix.is_empty() {
                return Err(ApiError::Invalid(format!(
                    "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    rt.kind
                )));
            }
            name = format!("{prefix}{}", self.random_suffix(5));
        }
        let key = (ns.to_string(), name.clone());
        if self
            .objects
            .get(&rt.key())
            .is_some_and(|m| m.contains_key(&key))
        {
            return Err(status::already_exists(&rt.group, &rt.plural, &name));
        }
        if rt.status_subresource
            && scope != Scope::Internal
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        let rv = self.bump();
        let uid = self.uid();
        let meta = obj
            .as_object_mut()
            .map(|m| m.entry("metadata").or_insert_with(|| json!({})));
        let Some(Value::Object(meta)) = meta else {
            return Err(ApiError::BadRequest("metadata must be an object".into()));
        };
        meta.insert("name".into(), json!(name));
        if rt.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        obj["apiVersion"] = json!(rt.api_version(rt.preferred_version()));
        obj["kind"] = json!(rt.kind);
        self.defaults_on_create(rt, &mut obj)?;
        self.born.insert(uid, Instant::now());
        self.objects
            .entry(rt.key())
            .or_default()
            .insert(key, obj.clone());
        self.emit(&rt.key(), EventType::Added, &obj);
        Ok(obj)
    }

    fn defaults_on_create(&mut self, rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "namespaces") => {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
                obj["status"] = json!({"phase": "Active"});
            }
            ("", "pods") if obj.get("status").is_none() => {
                obj["status"] = json!({"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()},
                    {"type": "Ready", "status": "False", "lastTransitionTime": now_rfc3339()}
                ]});
            }
            ("", "secrets")
                if obj
                    .get("type")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty) =>
            {
                obj["type"] = json!("Opaque");
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let defined = types::from_crd(obj).map_err(|e| ApiError::Invalid(e.to_string()))?;
                self.types
                    .retain(|t| !(t.group == defined.group && t.plural == defined.plural));
                let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
                obj["status"] = json!({
                    "acceptedNames": names,
                    "storedVersions": [defined.preferred_version()],
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now_rfc3339()},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now_rfc3339()}
                    ]
                });
                self.types.push(defined);
            }
            _ => {}
        }
        Ok(())
    }

    /// Replaces an object. `expected_rv`, when set, must match the stored version.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        scope: Scope,
    ) -> Result<Value, ApiError> {
        let ns = if rt.namespaced { ns } else { "" };
        let current = self.get(rt, ns, name)?;
        if !obj.is_object() {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            ));
        }
        let body_name = meta_str(&obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let sent_rv = meta_str(&obj, "resourceVersion");
        if !sent_rv.is_empty() && sent_rv != meta_str(&current, "resourceVersion") {
            return Err(status::conflict(&rt.group, &rt.plural, name));
        }
        match scope {
            Scope::Main if rt.status_subresource => match current.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            },
            Scope::Status => {
                // Only status changes; metadata changes other than labels/annotations are ignored.
                let mut next = current.clone();
                next["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
                obj = next;
            }
            _ => {}
        }
        // Fields the server owns.
        let mut meta = obj
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_else(Map::new);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "namespace",
            "name",
        ] {
            match current.pointer(&format!("/metadata/{f}")) {
                Some(v) => {
                    meta.insert(f.into(), v.clone());
                }
                None => {
                    meta.remove(f);
                }
            }
        }
        let mut generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if spec_part(&obj) != spec_part(&current) {
            generation += 1;
        }
        meta.insert("generation".into(), json!(generation));
        meta.insert(
            "resourceVersion".into(),
            current
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(json!("0")),
        );
        obj["metadata"] = Value::Object(meta);
        obj["apiVersion"] = json!(rt.api_version(rt.preferred_version()));
        obj["kind"] = json!(rt.kind);
        if rt.group == "apiextensions.k8s.io" {
            let defined = types::from_crd(&obj).map_err(|e| ApiError::Invalid(e.to_string()))?;
            self.types
                .retain(|t| !(t.group == defined.group && t.plural == defined.plural));
            self.types.push(defined);
        }
        if obj == current {
            // A no-op write does not bump the resourceVersion (as kube-apiserver).
            return Ok(current);
        }
        let rv = self.bump();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let finalizers_empty = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if obj.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers_empty
            && rt.plural != "namespaces"
        {
            return Ok(self.remove(rt, ns, name, obj));
        }
        self.objects
            .entry(rt.key())
            .or_default()
            .insert((ns.to_string(), name.to_string()), obj.clone());
        self.emit(&rt.key(), EventType::Modified, &obj);
        Ok(obj)
    }

    fn remove(&mut self, rt: &ResourceType, ns: &str, name: &str, mut last: Value) -> Value {
        if let Some(m) = self.objects.get_mut(&rt.key()) {
            m.remove(&(ns.to_string(), name.to_string()));
        }
        self.born.remove(meta_str(&last, "uid"));
        let rv = self.bump();
        last["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(&rt.key(), EventType::Deleted, &last);
        if rt.group == "apiextensions.k8s.io"
            && let Ok(defined) = types::from_crd(&last)
        {
            self.types
                .retain(|t| !(t.group == defined.group && t.plural == defined.plural));
            let key = defined.key();
            for obj in self.list(&defined, None) {
                let (n, nm) = (
                    meta_str(&obj, "namespace").to_string(),
                    meta_str(&obj, "name").to_string(),
                );
                if let Some(m) = self.objects.get_mut(&key) {
                    m.remove(&(n, nm));
                }
                self.bump();
                self.emit(&key, EventType::Deleted, &obj);
            }
        }
        last
    }

    /// Deletes an object, or marks it for deletion while finalizers remain.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        precondition_uid: Option<&str>,
        precondition_rv: Option<&str>,
    ) -> Result<Value, ApiError> {
        let ns = if rt.namespaced { ns } else { "" };
        let current = self.get(rt, ns, name)?;
        if precondition_uid.is_some_and(|u| !u.is_empty() && u != meta_str(&current, "uid"))
            || precondition_rv
                .is_some_and(|r| !r.is_empty() && r != meta_str(&current, "resourceVersion"))
        {
            return Err(status::conflict(&rt.group, &rt.plural, name));
        }
        if rt.group.is_empty()
            && rt.plural == "pods"
            && current.pointer("/metadata/deletionTimestamp").is_none()
            && crate::pod_hooks::annotation(&current, crate::pod_hooks::ON_DELETE_ANNOTATION)
                .is_some()
        {
            self.deleted_hooked_pods.push(current.clone());
        }
        let has_finalizers = current
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if rt.plural == "namespaces" && rt.group.is_empty() || has_finalizers {
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(current);
            }
            let mut next = current.clone();
            next["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if rt.plural == "namespaces" {
                next["status"] = json!({"phase": "Terminating"});
            }
            let rv = self.bump();
            next["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.objects
                .entry(rt.key())
                .or_default()
                .insert((ns.to_string(), name.to_string()), next.clone());
            self.emit(&rt.key(), EventType::Modified, &next);
            return Ok(next);
        }
        Ok(self.remove(rt, ns, name, current))
    }

    /// Pods carrying `kubesim.drctl.dev/on-delete` that were deleted (or marked for deletion)
    /// since the last call: their commands are to be run.
    pub fn take_deleted_hooked_pods(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.deleted_hooked_pods)
    }

    /// The namespace controller: empties terminating namespaces, then removes them.
    pub fn reap_namespaces(&mut self) {
        let ns_type = self.core("namespaces");
        let terminating: Vec<String> = self
            .list(&ns_type, None)
            .into_iter()
            .filter(|n| n.pointer("/metadata/deletionTimestamp").is_some())
            .map(|n| meta_str(&n, "name").to_string())
            .collect();
        for ns in terminating {
            let mut remaining = 0;
            let namespaced: Vec<ResourceType> = self
                .types
                .iter()
                .filter(|t| t.namespaced)
                .cloned()
                .collect();
            for rt in namespaced {
                for obj in self.list(&rt, Some(&ns)) {
                    remaining += 1;
                    let name = meta_str(&obj, "name").to_string();
                    let _ = self.delete(&rt, &ns, &name, None, None);
                }
            }
            if remaining == 0
                && let Ok(obj) = self.get(&ns_type, "", &ns)
            {
                self.remove(&ns_type, "", &ns, obj);
            }
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }
}
