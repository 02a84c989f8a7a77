//! The scenario file (`--scenario`, YAML or JSON): timings of the scripted controllers, objects
//! to create at start, pod logs and faults. Every field has a default, so `{}` is a scenario.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::faults::Faults;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid scenario {path}: {source}")]
    Parse {
        path: String,
        source: serde_yaml::Error,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Scenario {
    /// A pod turns Ready this long after it is created (or re-created).
    pub pod_ready_after_ms: u64,
    /// Per pod ("namespace/name") overrides of `pod_ready_after_ms`.
    pub pod_ready_after_ms_for: HashMap<String, u64>,
    /// Pods ("namespace/name") that never become Ready.
    pub pods_never_ready: Vec<String>,
    /// A Job's pod succeeds this long after it starts.
    pub job_complete_after_ms: u64,
    /// Jobs (or CronJobs, by name) whose pod fails.
    pub jobs_failing: Vec<String>,
    /// Each unsuspended CronJob starts a Job this often (0: only `kubectl create job --from`).
    pub cron_job_every_ms: u64,
    /// Log text by pod "namespace/name", pod name, or job/app label value.
    pub pod_logs: HashMap<String, String>,
    pub restore_in_progress_after_ms: u64,
    pub restore_complete_after_ms: u64,
    /// Restores (by name or by backup name) that end PartiallyFailed.
    pub restores_partially_failed: Vec<String>,
    pub application_sync_after_ms: u64,
    /// Applications ("namespace/name") that stay OutOfSync until a hard refresh.
    pub applications_stuck: Vec<String>,
    pub hard_refresh_after_ms: u64,
    pub secret_store_ready_after_ms: u64,
    /// ClusterSecretStores (by name) that stay degraded until `eso_deployment` is restarted.
    pub secret_stores_degraded: Vec<String>,
    /// The ESO deployment ("namespace/name") whose rollout restart clears degraded stores.
    pub eso_deployment: String,
    pub external_secret_ready_after_ms: u64,
    /// Values the target Secret gets, by ExternalSecret "namespace/name", then by key.
    pub external_secret_values: HashMap<String, HashMap<String, String>>,
    pub longhorn_restore_after_ms: u64,
    /// A pod's `kubesim.drctl.dev/on-delete` command is killed after this long.
    pub on_delete_timeout_ms: u64,
    /// Objects (any kind the simulator serves) created at start, status included.
    pub objects: Vec<Value>,
    /// Timed transitions (the `*AfterMs` fields) count from when a client first watches the
    /// object's type, not from the object's creation: a test that must see a state before a
    /// change sees it however slow the machine is, since no change happens before its watch.
    pub clocks_start_at_watch: bool,
    pub faults: Faults,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            pod_ready_after_ms: 300,
            pod_ready_after_ms_for: HashMap::new(),
            pods_never_ready: vec![],
            job_complete_after_ms: 300,
            jobs_failing: vec![],
            cron_job_every_ms: 0,
            pod_logs: HashMap::new(),
            restore_in_progress_after_ms: 200,
            restore_complete_after_ms: 800,
            restores_partially_failed: vec![],
            application_sync_after_ms: 500,
            applications_stuck: vec![],
            hard_refresh_after_ms: 200,
            secret_store_ready_after_ms: 200,
            secret_stores_degraded: vec![],
            eso_deployment: "external-secrets/external-secrets".into(),
            external_secret_ready_after_ms: 300,
            external_secret_values: HashMap::new(),
            longhorn_restore_after_ms: 500,
            on_delete_timeout_ms: 60_000,
            objects: vec![],
            clocks_start_at_watch: false,
            faults: Faults::default(),
        }
    }
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        // YAML is a superset of JSON: one parser for both.
        serde_yaml::from_str(&text).map_err(|source| ScenarioError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}
