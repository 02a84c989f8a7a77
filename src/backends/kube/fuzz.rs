//! Entry points for the fuzz targets (`fuzz/`): every judge of what the API server answers
//! (objects, lists, status conditions, timestamps) and of the client's error text, fed any
//! JSON. Not part of drctl's interface.

use serde_json::Value;

use super::{addons, conn, core, resource, workload};
use crate::runbook::action::{Assertion, WorkloadKind};

/// Every judge of an API object or list, on one JSON document.
pub fn server_json(v: &Value) {
    for kind in [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
    ] {
        let _ = workload::rolled_out(kind, v);
    }
    let name = resource::str_at(v, "/name");
    let _ = workload::named_container_port(v, name);
    let _ = addons::time_of(
        v,
        &["/status/startTimestamp", "/status/completionTimestamp"],
    );
    let _ = addons::backup_info(v);
    let _ = addons::app_ready(v);
    let _ = addons::app_info(v);
    let infos: Vec<Value> = match v.as_array() {
        Some(items) => items.iter().map(addons::lh_backup_info).collect(),
        None => vec![addons::lh_backup_info(v)],
    };
    let _ = addons::newest_per_volume(&infos);
    let _ = addons::restore_name(
        name,
        resource::str_at(v, "/run"),
        resource::str_at(v, "/runbook"),
    );
    let _ = resource::age(resource::str_at(v, "/metadata/creationTimestamp"));
    let _ = resource::age(resource::str_at(v, "/ts"));
    let _ = resource::condition(v, "Ready");
    let _ = resource::key_of(v);
    let _ = resource::strip_nulls(v);
    let (a, b) = (
        v.get("live").unwrap_or(&Value::Null),
        v.get("doc").unwrap_or(v),
    );
    let mut out = Vec::new();
    resource::diff_into("", a, b, &mut out);
    let _ = core::secret_doc_changes(a, b);
    let _ = core::json_patch_preview(a, v.get("ops").unwrap_or(v));
    if let Some(path) = v.get("path").and_then(Value::as_str)
        && let Ok(segs) = resource::path(path)
    {
        let _ = resource::field(v, &segs);
    }
    if let Some(asn) = v
        .get("assertion")
        .and_then(|a| serde_json::from_value::<Assertion>(a.clone()).ok())
    {
        let equals = v.get("equals").and_then(Value::as_str);
        let items: Vec<&Value> = match v.get("items").and_then(Value::as_array) {
            Some(items) => items.iter().collect(),
            None => vec![v],
        };
        for item in items {
            let _ = core::assertion_failure(&asn, equals, item);
        }
    }
}

/// The judges of the client's error text (TLS, credentials).
pub fn error_text(text: &str) {
    let _ = conn::tls_failure(text);
    let _ = conn::is_credential_failure(text);
}

/// A kubeconfig as drctl reads it (`--kubeconfig`, `kube.use`): parsed only. Loading goes on
/// in kube-rs, which may run the kubeconfig's exec and auth-provider commands and read the
/// files it names, so a fuzzer must not go further.
pub fn kubeconfig(text: &str) {
    let _ = kube::config::Kubeconfig::from_yaml(text);
}
