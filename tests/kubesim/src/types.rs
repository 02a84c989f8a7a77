//! The resource registry: built-in kinds plus whatever CustomResourceDefinitions define.

use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum TypesError {
    #[error("invalid CustomResourceDefinition: {0}")]
    InvalidCrd(String),
}

#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub json_path: String,
}

#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    /// Served versions, preferred (storage) first.
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    pub columns: Vec<PrinterColumn>,
    /// Defined by a CRD object in the store (removed with it).
    pub from_crd: bool,
}

impl ResourceType {
    /// Storage key: objects are shared between the served versions.
    pub fn key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    pub fn preferred_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    all: bool,
}

const BUILTINS: &[Builtin] = &[
    b(
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        &["ns"],
        true,
        false,
    ),
    b("", "v1", "Pod", "pods", true, &["po"], true, true),
    b("", "v1", "Secret", "secrets", true, &[], false, false),
    b(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        &["cm"],
        false,
        false,
    ),
    b(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
        false,
    ),
    b("", "v1", "Service", "services", true, &["svc"], true, true),
    b("", "v1", "Node", "nodes", false, &["no"], true, false),
    b(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        true,
        false,
    ),
    b(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
        true,
        false,
    ),
    b("", "v1", "Event", "events", true, &["ev"], false, false),
    b(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        true,
        &["ep"],
        false,
        false,
    ),
    b(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        true,
        true,
    ),
    b(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        &["sts"],
        true,
        true,
    ),
    b(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        &["ds"],
        true,
        true,
    ),
    b(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        true,
        true,
    ),
    b("batch", "v1", "Job", "jobs", true, &[], true, true),
    b(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        true,
        &["cj"],
        true,
        true,
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        true,
        false,
    ),
];

#[allow(clippy::too_many_arguments)]
const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    all: bool,
) -> Builtin {
    Builtin {
        group,
        version,
        kind,
        plural,
        namespaced,
        short,
        status,
        all,
    }
}

pub fn builtin_types() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|b| ResourceType {
            group: b.group.to_string(),
            versions: vec![b.version.to_string()],
            kind: b.kind.to_string(),
            plural: b.plural.to_string(),
            singular: b.kind.to_lowercase(),
            namespaced: b.namespaced,
            short_names: b.short.iter().map(|s| s.to_string()).collect(),
            categories: if b.all {
                vec!["all".to_string()]
            } else {
                vec![]
            },
            status_subresource: b.status,
            columns: vec![],
            from_crd: false,
        })
        .collect()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// Reads the resource type a CRD object defines.
pub fn from_crd(crd: &Value) -> Result<ResourceType, TypesError> {
    let spec = crd
        .get("spec")
        .ok_or_else(|| TypesError::InvalidCrd("spec is required".into()))?;
    let group = str_at(spec, &["group"])
        .ok_or_else(|| TypesError::InvalidCrd("spec.group is required".into()))?;
    let kind = str_at(spec, &["names", "kind"])
        .ok_or_else(|| TypesError::InvalidCrd("spec.names.kind is required".into()))?;
    let plural = str_at(spec, &["names", "plural"])
        .ok_or_else(|| TypesError::InvalidCrd("spec.names.plural is required".into()))?;
    let expected = format!("{plural}.{group}");
    let name = str_at(crd, &["metadata", "name"]).unwrap_or_default();
    if name != expected {
        return Err(TypesError::InvalidCrd(format!(
            "metadata.name must be spec.names.plural+\".\"+spec.group: {expected:?}, got {name:?}"
        )));
    }
    let singular = str_at(spec, &["names", "singular"])
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let namespaced = str_at(spec, &["scope"]).unwrap_or("Namespaced") == "Namespaced";
    let strings = |key: &str| -> Vec<String> {
        spec.get("names")
            .and_then(|n| n.get(key))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let versions_json = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or_else(|| TypesError::InvalidCrd("spec.versions is required".into()))?;
    let mut versions = Vec::new();
    let mut status_subresource = false;
    let mut columns = Vec::new();
    for v in versions_json {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let Some(name) = v.get("name").and_then(Value::as_str) else {
            return Err(TypesError::InvalidCrd(
                "spec.versions[].name is required".into(),
            ));
        };
        // The storage version is preferred in discovery.
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            versions.insert(0, name.to_string());
        } else {
            versions.push(name.to_string());
        }
        if v.pointer("/subresources/status").is_some() {
            status_subresource = true;
        }
        if columns.is_empty()
            && let Some(cols) = v.get("additionalPrinterColumns").and_then(Value::as_array)
        {
            for c in cols {
                if let (Some(n), Some(p)) = (
                    c.get("name").and_then(Value::as_str),
                    c.get("jsonPath").and_then(Value::as_str),
                ) {
                    columns.push(PrinterColumn {
                        name: n.to_string(),
                        kind: c
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("string")
                            .to_string(),
                        json_path: p.to_string(),
                    });
                }
            }
        }
    }
    if versions.is_empty() {
        return Err(TypesError::InvalidCrd("no served version".into()));
    }
    Ok(ResourceType {
        group: group.to_string(),
        versions,
        kind: kind.to_string(),
        plural: plural.to_string(),
        singular,
        namespaced,
        short_names: strings("shortNames"),
        categories: strings("categories"),
        status_subresource,
        columns,
        from_crd: true,
    })
}

fn col(name: &str, path: &str) -> Value {
    json!({"name": name, "type": "string", "jsonPath": path})
}

#[allow(clippy::too_many_arguments)]
fn crd(
    group: &str,
    versions: &[&str],
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    categories: &[&str],
    columns: Vec<Value>,
) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({
                "name": v,
                "served": true,
                "storage": i == 0,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
            })
        })
        .collect();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "names": {
                "kind": kind,
                "listKind": format!("{kind}List"),
                "plural": plural,
                "singular": kind.to_lowercase(),
                "shortNames": short,
                "categories": categories,
            },
            "versions": versions,
        }
    })
}

/// CRDs of the operators drctl's runbooks drive, with the printer columns their charts ship.
pub fn builtin_crds() -> Vec<Value> {
    let age = col("Age", ".metadata.creationTimestamp");
    vec![
        crd(
            "velero.io",
            &["v1"],
            "Backup",
            "backups",
            true,
            &[],
            &["velero"],
            vec![col("Status", ".status.phase"), age.clone()],
        ),
        crd(
            "velero.io",
            &["v1"],
            "Restore",
            "restores",
            true,
            &[],
            &["velero"],
            vec![col("Status", ".status.phase"), age.clone()],
        ),
        crd(
            "velero.io",
            &["v1"],
            "BackupStorageLocation",
            "backupstoragelocations",
            true,
            &["bsl"],
            &["velero"],
            vec![col("Phase", ".status.phase"), age.clone()],
        ),
        crd(
            "argoproj.io",
            &["v1alpha1"],
            "Application",
            "applications",
            true,
            &["app", "apps"],
            &[],
            vec![
                col("Sync Status", ".status.sync.status"),
                col("Health Status", ".status.health.status"),
            ],
        ),
        // Current ESO serves v1 and still v1beta1; the simulator serves both (no conversion).
        crd(
            "external-secrets.io",
            &["v1", "v1beta1"],
            "ExternalSecret",
            "externalsecrets",
            true,
            &["es"],
            &["external-secrets"],
            vec![
                col("Store", ".spec.secretStoreRef.name"),
                col("Refresh Interval", ".spec.refreshInterval"),
                col("Status", ".status.conditions[?(@.type==\"Ready\")].reason"),
                col("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
            ],
        ),
        crd(
            "external-secrets.io",
            &["v1", "v1beta1"],
            "ClusterSecretStore",
            "clustersecretstores",
            false,
            &["css"],
            &["external-secrets"],
            vec![
                age.clone(),
                col("Status", ".status.conditions[?(@.type==\"Ready\")].reason"),
                col("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
            ],
        ),
        crd(
            "longhorn.io",
            &["v1beta2"],
            "Volume",
            "volumes",
            true,
            &["lhv"],
            &["longhorn"],
            vec![
                col("State", ".status.state"),
                col("Robustness", ".status.robustness"),
                age.clone(),
            ],
        ),
        crd(
            "longhorn.io",
            &["v1beta2"],
            "Backup",
            "backups",
            true,
            &["lhb"],
            &["longhorn"],
            vec![
                col("SnapshotName", ".status.snapshotName"),
                col("State", ".status.state"),
                age,
            ],
        ),
    ]
}
