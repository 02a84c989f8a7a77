//! End-to-end runs of the Kubernetes-side runbooks on kubesim (and sshd, and the stand-ins
//! for the user's repository commands): argocd-app-stuck, eso-degraded, nas-outage,
//! node-failure, node-destruction-rebuild. Each runbook gets a rehearsal on a lab in the
//! right state (no problem) and on a broken one (the problem named), a full run with `--yes`
//! checked against the lab (kubectl on the simulator, ssh on the host), and a SIGKILL at a
//! seeded step followed by `resume` to the same lab state.

use std::path::Path;
use std::time::Duration;

use crate::lab::KubeSim;
use crate::support::cli::root;
use crate::support::drive::Drive;
use crate::support::kube::{condition, kget, kitems, object_name};

/// Generous: the machine is shared by several compiling engineers.
const LAB_DEADLINE: Duration = Duration::from_secs(60);

/// A scenario of tests/fixtures/e2e/kube.
fn scenario(name: &str) -> String {
    let p = root().join("tests/fixtures/e2e/kube").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Polls the lab until `cond` holds (the simulator's controllers run every 50 ms).
fn eventually(what: &str, cond: impl FnMut() -> bool) {
    super::eventually_within(LAB_DEADLINE, what, cond);
}

/// The resolution an operator gives a read-only step interrupted by the crash: nothing
/// changed, so run it again.
fn rerun_reads(step: &str) -> String {
    panic!("step `{step}` was interrupted and needs a decision, but this test expected none")
}

// ---------------------------------------------------------------------------------------
// argocd-app-stuck
// ---------------------------------------------------------------------------------------

/// Every Application of the lab Synced and Healthy, and no refresh annotation left.
fn assert_apps_synced(sim: &KubeSim) {
    let apps = kitems(sim, &["applications", "-n", "argocd"]);
    assert_eq!(apps.len(), 4, "{apps:#?}");
    for a in &apps {
        assert_eq!(a["status"]["sync"]["status"], "Synced", "{a:#}");
        assert_eq!(a["status"]["health"]["status"], "Healthy", "{a:#}");
        assert!(
            a["metadata"]["annotations"]
                .get("argocd.argoproj.io/refresh")
                .is_none(),
            "Argo CD consumed the hard-refresh annotation: {a:#}"
        );
    }
}

fn argocd_lab() -> KubeSim {
    let sim = KubeSim::start_with_scenario(&scenario("argocd-app-stuck.yaml"));
    // The healthy apps sync by themselves; nextcloud stays OutOfSync: the incident.
    eventually(
        "vault, immich, authentik Synced and nextcloud stuck",
        || {
            let apps = kitems(&sim, &["applications", "-n", "argocd"]);
            apps.len() == 4
                && apps.iter().all(|a| {
                    let synced = a["status"]["sync"]["status"] == "Synced";
                    if object_name(a) == "nextcloud" {
                        a["status"]["sync"]["status"] == "OutOfSync"
                    } else {
                        synced
                    }
                })
        },
    );
    sim
}

#[test]
fn argocd_app_stuck_rehearsal_is_clean_and_names_a_missing_app() {
    let sim = argocd_lab();
    let d = Drive::new("argocd-app-stuck")
        .envs(sim.env())
        .set("app", "nextcloud");
    let r = d.rehearse();
    r.assert_clean_rehearsal("rehearsal with nextcloud stuck");
    assert_eq!(r.outcome_of("hard-refresh").as_deref(), Some("would_run"));
    assert!(
        r.output_of("list-apps").contains("nextcloud"),
        "{}",
        r.dump()
    );
    // A rehearsal changes nothing: nextcloud is still stuck, no refresh was asked.
    let a = kget(&sim, &["application", "-n", "argocd", "nextcloud"]).expect("nextcloud");
    assert_eq!(a["status"]["sync"]["status"], "OutOfSync", "{a:#}");
    assert!(a["metadata"]["annotations"].is_null(), "{a:#}");

    // Broken: the application the operator names does not exist (a typo, or Argo CD lost it).
    let d = Drive::new("argocd-app-stuck")
        .envs(sim.env())
        .set("app", "nextclod");
    let r = d.rehearse();
    r.assert_problem(
        "nextclod",
        "rehearsal for an application that does not exist",
    );
    assert_eq!(r.outcome_of("describe-app").as_deref(), Some("failed"));
}

#[test]
fn argocd_app_stuck_runs_to_the_end_and_every_app_is_synced() {
    let sim = argocd_lab();
    let d = Drive::new("argocd-app-stuck")
        .envs(sim.env())
        .set("app", "nextcloud");
    let r = d.run();
    r.assert_ok("full run");
    assert_apps_synced(&sim);
}

#[test]
fn argocd_app_stuck_resumes_after_sigkill_to_the_same_state() {
    let sim = argocd_lab();
    let d = Drive::new("argocd-app-stuck")
        .envs(sim.env())
        .set("app", "nextcloud");
    let steps = [
        "list-apps",
        "describe-app",
        "hard-refresh",
        "wait-app-synced",
    ]
    .map(String::from);
    // Every step reads, or is idempotent (the refresh): a resume re-runs the interrupted one
    // by itself or asks; the reads are answered `rerun` (they changed nothing).
    d.crash_and_resume(&steps, &|step| match step {
        "list-apps" | "describe-app" | "wait-app-synced" => "rerun".to_owned(),
        other => rerun_reads(other),
    });
    assert_apps_synced(&sim);
}

// ---------------------------------------------------------------------------------------
// eso-degraded
// ---------------------------------------------------------------------------------------

const ESO_DEPLOYMENTS: [&str; 3] = [
    "external-secrets",
    "external-secrets-webhook",
    "external-secrets-cert-controller",
];

fn eso_lab() -> KubeSim {
    let sim = KubeSim::start_with_scenario(&scenario("eso-degraded.yaml"));
    // Vault is up (vault-0 Ready); the store is degraded and the secrets are not synced.
    eventually("vault-0 Ready and k8s-secrets degraded", || {
        let ready = kget(&sim, &["pod", "-n", "security", "vault-0"])
            .is_some_and(|p| condition(&p, "Ready").as_deref() == Some("True"));
        let degraded = kget(&sim, &["clustersecretstore", "k8s-secrets"])
            .is_some_and(|s| condition(&s, "Ready").as_deref() == Some("False"));
        ready && degraded
    });
    sim
}

/// The store Ready, every ExternalSecret Ready and its Secret written with the right keys.
fn assert_secrets_synced(sim: &KubeSim) {
    let store = kget(sim, &["clustersecretstore", "k8s-secrets"]).expect("the store");
    assert_eq!(
        condition(&store, "Ready").as_deref(),
        Some("True"),
        "{store:#}"
    );
    let es = kitems(sim, &["externalsecrets", "-A"]);
    assert_eq!(es.len(), 2, "{es:#?}");
    for e in &es {
        assert_eq!(condition(e, "Ready").as_deref(), Some("True"), "{e:#}");
    }
    let s = kget(sim, &["secret", "-n", "nextcloud", "nextcloud-db"]).expect("nextcloud-db");
    let data = s["data"].as_object().expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["password"], "{s:#}");
    let pw = sim.kubectl_ok(&[
        "get",
        "secret",
        "-n",
        "nextcloud",
        "nextcloud-db",
        "-o",
        "go-template={{.data.password | base64decode}}",
    ]);
    assert_eq!(pw, "from-vault-nextcloud");
    let s = kget(sim, &["secret", "-n", "immich", "immich-db"]).expect("immich-db");
    let mut keys: Vec<&String> = s["data"].as_object().expect("data").keys().collect();
    keys.sort();
    assert_eq!(keys, ["password", "username"], "{s:#}");
    for dep in ESO_DEPLOYMENTS {
        let d = kget(sim, &["deploy", "-n", "security", dep]).expect("an ESO deployment");
        assert!(
            d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                .is_string(),
            "{dep} was restarted: {d:#}"
        );
        assert_eq!(d["status"]["readyReplicas"], 1, "{dep} rolled out: {d:#}");
    }
}

#[test]
fn eso_degraded_rehearsal_is_clean_and_names_a_missing_eso_deployment() {
    let sim = eso_lab();
    let d = Drive::new("eso-degraded").envs(sim.env());
    let r = d.rehearse();
    r.assert_clean_rehearsal("rehearsal with the store degraded");
    assert_eq!(r.outcome_of("restart-eso").as_deref(), Some("would_run"));
    // Nothing restarted, the store still degraded.
    let dep = kget(&sim, &["deploy", "-n", "security", "external-secrets"]).expect("ESO");
    assert!(
        dep["spec"]["template"]["metadata"]["annotations"].is_null(),
        "{dep:#}"
    );
    let store = kget(&sim, &["clustersecretstore", "k8s-secrets"]).expect("the store");
    assert_eq!(condition(&store, "Ready").as_deref(), Some("False"));

    // Broken: the ESO controller's deployment is gone (a failed upgrade deleted it).
    sim.kubectl_ok(&[
        "delete",
        "deploy",
        "-n",
        "security",
        "external-secrets-webhook",
    ]);
    let d = Drive::new("eso-degraded").envs(sim.env());
    let r = d.rehearse();
    r.assert_problem(
        "external-secrets-webhook",
        "rehearsal without the ESO webhook deployment",
    );
    assert_eq!(r.outcome_of("restart-eso").as_deref(), Some("would_run"));
}

#[test]
fn eso_degraded_runs_to_the_end_and_the_secrets_sync() {
    let sim = eso_lab();
    let d = Drive::new("eso-degraded").envs(sim.env());
    let r = d.run();
    r.assert_ok("full run");
    assert_secrets_synced(&sim);
    assert!(
        r.output_of("check-store").contains("False"),
        "the store was degraded before: {}",
        r.dump()
    );
}

#[test]
fn eso_degraded_resumes_after_sigkill_to_the_same_state() {
    let sim = eso_lab();
    let d = Drive::new("eso-degraded").envs(sim.env());
    let steps = [
        "check-store",
        "restart-eso",
        "wait-eso-ready",
        "wait-store-ready",
    ]
    .map(String::from);
    d.crash_and_resume(&steps, &|step| match step {
        "check-store" | "wait-eso-ready" | "wait-store-ready" => "rerun".to_owned(),
        other => rerun_reads(other),
    });
    assert_secrets_synced(&sim);
}

// ---------------------------------------------------------------------------------------
// node-failure
// ---------------------------------------------------------------------------------------

/// The failed node of the node-failure lab, and the cluster's hosts.
const FAILED_NODE: &str = "k8s-worker2";
const NODES: [&str; 3] = ["k8s-cp1", "k8s-worker1", "k8s-worker2"];

/// A checkout of the "homelab repository": a git repository whose Makefile includes the
/// stand-ins for `make k8s-infra` and `make k8s-configure`, its inventory, and the lab's
/// hypervisor (`.lab/vms/`), where the failed node's VM is gone.
fn homelab_repo(standins: &str, vms: &[&str]) -> tempfile::TempDir {
    let repo = tempfile::Builder::new()
        .prefix("drctl-e2e-homelab-")
        .tempdir()
        .expect("a temporary repository");
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(repo.path())
        .output()
        .expect("run git init");
    assert!(git.status.success(), "git init: {git:?}");
    let standins = root().join("tests/lab/standins").join(standins);
    std::fs::write(
        repo.path().join("Makefile"),
        format!("include {}/Makefile\n", standins.display()),
    )
    .expect("write the Makefile");
    std::fs::write(repo.path().join("inventory"), NODES.join("\n") + "\n")
        .expect("write the inventory");
    let vm_dir = repo.path().join(".lab/vms");
    std::fs::create_dir_all(&vm_dir).expect("create the VM dir");
    for vm in vms {
        std::fs::write(vm_dir.join(vm), "created before the incident\n").expect("write a VM");
    }
    repo
}

fn node_failure_lab() -> (KubeSim, tempfile::TempDir) {
    let sim = KubeSim::start_with_scenario(&scenario("node-failure.yaml"));
    let repo = homelab_repo("node-failure", &["k8s-cp1", "k8s-worker1"]);
    eventually("the nextcloud pods rescheduled and Running", || {
        let pods = kitems(&sim, &["pods", "-n", "nextcloud"]);
        pods.len() == 2 && pods.iter().all(|p| p["status"]["phase"] == "Running")
    });
    (sim, repo)
}

fn node_failure_drive(sim: &KubeSim, repo: &Path) -> Drive {
    Drive::new("node-failure")
        .envs(sim.env())
        .set("repo_dir", repo.display().to_string())
}

/// The resourceVersion of every node (a healthy node must not be touched).
fn node_versions(sim: &KubeSim) -> Vec<(String, String)> {
    kitems(sim, &["nodes"])
        .iter()
        .map(|n| {
            (
                object_name(n),
                n["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// The failed node re-provisioned and Ready, the healthy ones untouched, every pod Running.
fn assert_node_rejoined(sim: &KubeSim, repo: &Path, before: &[(String, String)]) {
    assert!(
        repo.join(".lab/vms").join(FAILED_NODE).exists(),
        "Terraform (stand-in) recreated the VM"
    );
    let nodes = kitems(sim, &["nodes"]);
    assert_eq!(nodes.len(), 3, "{nodes:#?}");
    for n in &nodes {
        assert_eq!(condition(n, "Ready").as_deref(), Some("True"), "{n:#}");
    }
    let after = node_versions(sim);
    for (node, rv) in before {
        if node != FAILED_NODE {
            let now = after.iter().find(|(n, _)| n == node).map(|(_, v)| v);
            assert_eq!(now, Some(rv), "the healthy node {node} was left as it was");
        }
    }
    let w2 = kget(sim, &["node", FAILED_NODE]).expect("the re-joined node");
    assert!(
        w2["status"]["nodeInfo"]["bootID"].is_string(),
        "a new kubelet registered: {w2:#}"
    );
    for p in kitems(sim, &["pods", "-A"]) {
        assert_eq!(p["status"]["phase"], "Running", "{p:#}");
    }
}

/// The API server refuses connections for `secs` seconds (then comes back with its state).
fn api_down(sim: &KubeSim, secs: u32) {
    let healthz = format!("{}/healthz", sim.url());
    for _ in 0..5 {
        let r = crate::lab::http(
            "POST",
            &format!("{}/_sim/down?seconds={secs}", sim.url()),
            &[],
            b"",
        )
        .expect("take the API server down");
        assert_eq!(r.status, 200, "{}", r.text());
        // The simulator may miss a request that arrives while it accepts a connection.
        if crate::lab::wait_until(Duration::from_secs(2), || {
            crate::lab::http("GET", &healthz, &[], b"").is_err()
        }) {
            return;
        }
    }
    panic!("kubesim at {} never went down", sim.url());
}

#[test]
fn node_failure_rehearsal_is_clean_and_names_an_unreachable_api_server() {
    let (sim, repo) = node_failure_lab();
    let d = node_failure_drive(&sim, repo.path());
    let r = d.rehearse();
    r.assert_clean_rehearsal("rehearsal with k8s-worker2 down");
    assert!(
        r.output_of("show-nodes").contains(FAILED_NODE),
        "{}",
        r.dump()
    );
    assert_eq!(r.outcome_of("reprovision").as_deref(), Some("would_run"));
    // Nothing was re-provisioned.
    assert!(!repo.path().join(".lab/vms").join(FAILED_NODE).exists());
    let w2 = kget(&sim, &["node", FAILED_NODE]).expect("the failed node");
    assert_eq!(condition(&w2, "Ready").as_deref(), Some("Unknown"));

    // Broken: the API server does not answer (the control plane is down too).
    // Down for longer than the test lives: the rehearsal cannot outlast the outage.
    api_down(&sim, 3000);
    let d = node_failure_drive(&sim, repo.path());
    let r = d.rehearse();
    r.assert_problem("show-nodes", "rehearsal with the API server down");
    r.assert_problem("127.0.0.1", "the problem says which API server");
}

#[test]
fn node_failure_runs_to_the_end_and_the_node_is_ready_again() {
    let (sim, repo) = node_failure_lab();
    let before = node_versions(&sim);
    let d = node_failure_drive(&sim, repo.path());
    let r = d.run();
    r.assert_ok("full run");
    assert!(
        r.output_of("reprovision")
            .contains("changed: [k8s-worker2]"),
        "{}",
        r.dump()
    );
    assert_node_rejoined(&sim, repo.path(), &before);
}

#[test]
fn node_failure_resumes_after_sigkill_to_the_same_state() {
    let (sim, repo) = node_failure_lab();
    let before = node_versions(&sim);
    let d = node_failure_drive(&sim, repo.path());
    let steps = [
        "show-nodes",
        "reprovision",
        "wait-nodes-ready",
        "check-pods-rescheduled",
    ]
    .map(String::from);
    d.crash_and_resume(&steps, &|step| match step {
        "show-nodes" | "wait-nodes-ready" | "check-pods-rescheduled" => "rerun".to_owned(),
        other => rerun_reads(other),
    });
    assert_node_rejoined(&sim, repo.path(), &before);
}
