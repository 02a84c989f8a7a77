//! Scripted controllers, driven through kubectl the way the runbooks drive a real cluster.

mod common;

use common::{KUBECTL_TIMEOUT, PATIENCE, Sim, b64decode, wait_until};

const FAST: &str = r#"
podReadyAfterMs: 200
jobCompleteAfterMs: 200
restoreInProgressAfterMs: 100
restoreCompleteAfterMs: 600
restoresPartiallyFailed: [daily-broken]
applicationSyncAfterMs: 300
applicationsStuck: [argocd/stuck]
hardRefreshAfterMs: 200
secretStoreReadyAfterMs: 100
secretStoresDegraded: [vault-backend]
esoDeployment: security/external-secrets
externalSecretReadyAfterMs: 100
externalSecretValues:
  security/vault-unseal-key: {key: the-unseal-key}
longhornRestoreAfterMs: 300
podLogs:
  vault-auto-unseal: "unsealing vault-0\nvault-0 unsealed\n"
"#;

#[test]
fn statefulset_pod_comes_back_ready_after_delete() {
    let sim = Sim::start_with(FAST);
    sim.kubectl(&["create", "namespace", "vault"]);
    sim.apply(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: vault, namespace: vault}\nspec:\n  replicas: 1\n  serviceName: vault\n  selector: {matchLabels: {app: vault}}\n  template:\n    metadata: {labels: {app: vault}}\n    spec: {containers: [{name: vault, image: openbao}]}\n",
    );
    // The controller creates vault-0 on its next tick; `kubectl wait` on a name that does not
    // exist yet fails at once, as against a real cluster.
    wait_until("vault-0 created", PATIENCE, || {
        sim.kubectl_output(&["-n", "vault", "get", "pod", "vault-0"])
            .status
            .success()
    });
    sim.kubectl(&[
        "-n",
        "vault",
        "wait",
        "--for=condition=ready",
        "pod/vault-0",
        KUBECTL_TIMEOUT,
    ]);
    let uid = sim.kubectl(&[
        "-n",
        "vault",
        "get",
        "pod",
        "vault-0",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    sim.kubectl(&["-n", "vault", "delete", "pod", "vault-0"]);
    wait_until("vault-0 re-created", PATIENCE, || {
        let out = sim.kubectl_output(&[
            "-n",
            "vault",
            "get",
            "pod",
            "vault-0",
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        out.status.success() && String::from_utf8_lossy(&out.stdout) != uid
    });
    sim.kubectl(&[
        "-n",
        "vault",
        "wait",
        "--for=condition=ready",
        "pod/vault-0",
        KUBECTL_TIMEOUT,
    ]);
    sim.kubectl(&[
        "-n",
        "vault",
        "wait",
        "--for=jsonpath={.status.readyReplicas}=1",
        "sts/vault",
        KUBECTL_TIMEOUT,
    ]);
}

#[test]
fn deployment_rollout_restart_rolls_pods() {
    let sim = Sim::start_with(FAST);
    sim.kubectl(&["create", "namespace", "security"]);
    sim.kubectl(&[
        "-n",
        "security",
        "create",
        "deployment",
        "external-secrets",
        "--image=eso",
        "--replicas=2",
    ]);
    let out = sim.kubectl(&[
        "-n",
        "security",
        "rollout",
        "status",
        "deployment/external-secrets",
        KUBECTL_TIMEOUT,
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let before = sim.kubectl(&[
        "-n",
        "security",
        "get",
        "pods",
        "-l",
        "app=external-secrets",
        "-o",
        "name",
    ]);
    assert_eq!(before.lines().count(), 2, "{before}");
    sim.kubectl(&[
        "-n",
        "security",
        "rollout",
        "restart",
        "deployment/external-secrets",
    ]);
    let out = sim.kubectl(&[
        "-n",
        "security",
        "rollout",
        "status",
        "deployment/external-secrets",
        KUBECTL_TIMEOUT,
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_until("old pods gone", PATIENCE, || {
        let after = sim.kubectl(&[
            "-n",
            "security",
            "get",
            "pods",
            "-l",
            "app=external-secrets",
            "-o",
            "name",
        ]);
        after.lines().count() == 2 && after.lines().all(|p| !before.contains(p))
    });
}

/// FAST, except that the timings start when a client first watches the type, and that a
/// Restore stays InProgress long enough for the controller (a 50 ms loop) never to skip it.
const FAST_FROM_WATCH: &str = r#"
clocksStartAtWatch: true
restoreInProgressAfterMs: 100
restoreCompleteAfterMs: 2000
restoresPartiallyFailed: [daily-broken]
"#;

#[test]
fn velero_restore_completes_or_partially_fails() {
    let sim = Sim::start_with(FAST_FROM_WATCH);
    sim.kubectl(&["create", "namespace", "velero"]);
    sim.apply("apiVersion: velero.io/v1\nkind: Restore\nmetadata: {name: r1, namespace: velero}\nspec: {backupName: daily-20250101}\n");
    // Nothing moves before a client watches Restores: the phases are seen in order, through the
    // watch, however slowly kubectl starts.
    let mut watch = sim.kubectl_stream(&[
        "-n",
        "velero",
        "get",
        "restores",
        "-w",
        "-o",
        "custom-columns=NAME:.metadata.name,PHASE:.status.phase",
    ]);
    let row = |name: &'static str, phase: &'static str| {
        move |l: &str| l.split_whitespace().collect::<Vec<_>>() == [name, phase]
    };
    watch.wait_for("r1 InProgress", row("r1", "InProgress"));
    assert!(
        !watch.seen.iter().any(|l| row("r1", "Completed")(l)),
        "Completed before InProgress: {:?}",
        watch.seen
    );
    watch.wait_for("r1 Completed, after InProgress", row("r1", "Completed"));
    sim.kubectl(&[
        "-n",
        "velero",
        "wait",
        "--for=jsonpath={.status.phase}=Completed",
        "restore/r1",
        KUBECTL_TIMEOUT,
    ]);
    sim.apply("apiVersion: velero.io/v1\nkind: Restore\nmetadata: {name: r2, namespace: velero}\nspec: {backupName: daily-broken}\n");
    watch.wait_for("r2 InProgress", row("r2", "InProgress"));
    sim.kubectl(&[
        "-n",
        "velero",
        "wait",
        "--for=jsonpath={.status.phase}=PartiallyFailed",
        "restore/r2",
        KUBECTL_TIMEOUT,
    ]);
    watch.wait_for("r2 PartiallyFailed", row("r2", "PartiallyFailed"));
    assert_eq!(
        sim.kubectl(&[
            "-n",
            "velero",
            "get",
            "restore",
            "r2",
            "-o",
            "jsonpath={.status.errors}"
        ]),
        "1"
    );
}

#[test]
fn argocd_application_syncs_and_hard_refresh_unsticks() {
    let sim = Sim::start_with(FAST);
    sim.kubectl(&["create", "namespace", "argocd"]);
    sim.apply("apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: vault, namespace: argocd}\nspec: {project: default}\n---\napiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: stuck, namespace: argocd}\nspec: {project: default}\n");
    sim.kubectl(&[
        "-n",
        "argocd",
        "wait",
        "--for=jsonpath={.status.sync.status}=Synced",
        "application/vault",
        KUBECTL_TIMEOUT,
    ]);
    assert_eq!(
        sim.kubectl(&[
            "-n",
            "argocd",
            "get",
            "application",
            "vault",
            "-o",
            "jsonpath={.status.health.status}"
        ]),
        "Healthy"
    );
    let table = sim.kubectl(&["-n", "argocd", "get", "applications"]);
    assert!(
        table.contains("SYNC STATUS") && table.contains("OutOfSync"),
        "{table}"
    );
    sim.kubectl(&[
        "-n",
        "argocd",
        "annotate",
        "application",
        "stuck",
        "argocd.argoproj.io/refresh=hard",
    ]);
    sim.kubectl(&[
        "-n",
        "argocd",
        "wait",
        "--for=jsonpath={.status.sync.status}=Synced",
        "application/stuck",
        KUBECTL_TIMEOUT,
    ]);
    let ann = sim.kubectl(&[
        "-n",
        "argocd",
        "get",
        "application",
        "stuck",
        "-o",
        "jsonpath={.metadata.annotations}",
    ]);
    assert!(
        !ann.contains("refresh"),
        "the controller removes the refresh annotation: {ann}"
    );
}

#[test]
fn external_secrets_wait_for_a_degraded_store_until_eso_restarts() {
    let sim = Sim::start_with(FAST);
    sim.kubectl(&["create", "namespace", "security"]);
    sim.kubectl(&[
        "-n",
        "security",
        "create",
        "deployment",
        "external-secrets",
        "--image=eso",
    ]);
    sim.apply("apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: vault-backend}\nspec: {provider: {vault: {server: http://vault:8200}}}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: vault-unseal-key, namespace: security}\nspec:\n  secretStoreRef: {kind: ClusterSecretStore, name: vault-backend}\n  target: {name: vault-unseal-key}\n  data: [{secretKey: key, remoteRef: {key: unseal}}]\n");
    wait_until("store degraded", PATIENCE, || {
        sim.kubectl(&[
            "get",
            "clustersecretstore",
            "vault-backend",
            "-o",
            "jsonpath={.status.conditions[0].reason}",
        ]) == "ValidationFailed"
    });
    let err = sim.kubectl_fails(&[
        "-n",
        "security",
        "wait",
        "--for=condition=Ready",
        "externalsecret/vault-unseal-key",
        "--timeout=1s",
    ]);
    assert!(err.contains("timed out"), "{err}");
    sim.kubectl(&[
        "-n",
        "security",
        "rollout",
        "restart",
        "deployment/external-secrets",
    ]);
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "clustersecretstore/vault-backend",
        KUBECTL_TIMEOUT,
    ]);
    sim.kubectl(&[
        "-n",
        "security",
        "wait",
        "--for=condition=Ready",
        "externalsecret/vault-unseal-key",
        KUBECTL_TIMEOUT,
    ]);
    let key = sim.kubectl(&[
        "-n",
        "security",
        "get",
        "secret",
        "vault-unseal-key",
        "-o",
        "jsonpath={.data.key}",
    ]);
    assert_eq!(b64decode(&key), "the-unseal-key");
    // Served at v1beta1 too.
    let v1beta1 = sim.kubectl(&[
        "-n",
        "security",
        "get",
        "externalsecrets.v1beta1.external-secrets.io",
        "vault-unseal-key",
        "-o",
        "jsonpath={.apiVersion}",
    ]);
    assert_eq!(v1beta1, "external-secrets.io/v1beta1");
}

#[test]
fn cronjob_job_runs_and_has_logs() {
    let sim = Sim::start_with(FAST);
    sim.kubectl(&["create", "namespace", "security"]);
    sim.kubectl(&[
        "-n",
        "security",
        "create",
        "cronjob",
        "vault-auto-unseal",
        "--image=openbao",
        "--schedule=* * * * *",
    ]);
    sim.kubectl(&[
        "-n",
        "security",
        "create",
        "job",
        "vault-auto-unseal-manual",
        "--from=cronjob/vault-auto-unseal",
    ]);
    sim.kubectl(&[
        "-n",
        "security",
        "wait",
        "--for=condition=complete",
        "job/vault-auto-unseal-manual",
        KUBECTL_TIMEOUT,
    ]);
    let logs = sim.kubectl(&[
        "-n",
        "security",
        "logs",
        "-l",
        "job-name=vault-auto-unseal-manual",
        "--tail=30",
    ]);
    assert!(logs.contains("vault-0 unsealed"), "{logs}");
    let jobs = sim.kubectl(&[
        "-n",
        "security",
        "get",
        "jobs",
        "--sort-by=.metadata.creationTimestamp",
    ]);
    assert!(
        jobs.contains("vault-auto-unseal-manual") && jobs.contains("Complete"),
        "{jobs}"
    );
}

#[test]
fn cronjob_schedules_jobs_when_asked() {
    let sim = Sim::start_with("cronJobEveryMs: 300\njobCompleteAfterMs: 100\njobsFailing: [flaky]");
    sim.kubectl(&["create", "namespace", "ops"]);
    sim.kubectl(&[
        "-n",
        "ops",
        "create",
        "cronjob",
        "flaky",
        "--image=x",
        "--schedule=* * * * *",
    ]);
    wait_until("a scheduled job failed", PATIENCE, || {
        sim.kubectl(&[
            "-n",
            "ops",
            "get",
            "jobs",
            "-o",
            "jsonpath={.items[*].status.failed}",
        ])
        .contains('1')
    });
    assert!(
        !sim.kubectl(&[
            "-n",
            "ops",
            "get",
            "cronjob",
            "flaky",
            "-o",
            "jsonpath={.status.lastScheduleTime}"
        ])
        .is_empty()
    );
}

#[test]
fn longhorn_volume_restores_from_backup() {
    let sim = Sim::start_with(FAST);
    sim.kubectl(&["create", "namespace", "longhorn-system"]);
    sim.apply("apiVersion: longhorn.io/v1beta2\nkind: Volume\nmetadata: {name: vault-data, namespace: longhorn-system}\nspec: {fromBackup: \"s3://longhorn@us-east-1/?backup=backup-abc&volume=vault-data\", numberOfReplicas: 1, size: \"1073741824\"}\n");
    sim.kubectl(&[
        "-n",
        "longhorn-system",
        "wait",
        "--for=jsonpath={.status.state}=detached",
        "volume.longhorn.io/vault-data",
        KUBECTL_TIMEOUT,
    ]);
    let s = sim.kubectl(&[
        "-n",
        "longhorn-system",
        "get",
        "volume.longhorn.io",
        "vault-data",
        "-o",
        "jsonpath={.status.restoreRequired} {.status.lastBackup}",
    ]);
    assert_eq!(s, "false backup-abc");
}

#[test]
fn scenario_objects_are_seeded_with_status() {
    let sim = Sim::start_with(
        r#"
objects:
- apiVersion: velero.io/v1
  kind: Backup
  metadata: {name: daily-20250101, namespace: velero}
  spec: {storageLocation: offsite}
  status: {phase: Completed, completionTimestamp: "2025-01-01T03:00:00Z"}
- apiVersion: v1
  kind: Node
  metadata: {name: control-plane}
  status: {conditions: [{type: Ready, status: "True"}]}
"#,
    );
    assert_eq!(
        sim.kubectl(&[
            "-n",
            "velero",
            "get",
            "backups.velero.io",
            "daily-20250101",
            "-o",
            "jsonpath={.status.completionTimestamp}"
        ]),
        "2025-01-01T03:00:00Z"
    );
    let nodes = sim.kubectl(&["get", "nodes"]);
    assert!(
        nodes.contains("control-plane") && nodes.contains("Ready"),
        "{nodes}"
    );
}
