//! The kube backend against kubesim (tests/integration/lab.rs), one simulator per test:
//! every action, dry-run previews, the failure modes (unreachable, credentials, RBAC, not
//! found, conflict, transient 5xx, a dropped watch, the API down mid-wait, a missing CRD),
//! a 2,000-Application wait that counts its API requests, and runbooks end to end through
//! the drctl binary. Each test checks the cluster's state with kubectl, not drctl's word.

use std::time::Duration;

use drctl::exec::backend::ActionError;
use drctl::runbook::Action;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

mod real;

use super::lab::{Cluster, KubeSim, http, wait_until};
use crate::support::base64;
use crate::support::cli::{drctl_cmd, events, journal_path, only_run, run_id_of, stderr, stdout};
use crate::support::harness::{Bound, Harness, Opts, Run};
use crate::support::kube::kget;
use crate::support::operator::FakeOperator;
use drctl::backends::Backends;

// ---------------------------------------------------------------------------------------
// One action in-process against a simulator
// ---------------------------------------------------------------------------------------

/// How a kube action runs here unless a test says otherwise: a timeout that only turns a
/// hang into a failure (the real control plane on a busy machine is slow), and the
/// harness's bound after it, so that the backend's own timeout error is the one seen.
fn opts() -> Opts<'static> {
    Opts {
        timeout: Some(Duration::from_secs(120)),
        bound: Bound::AfterTimeout,
        ..Default::default()
    }
}

/// A backend and a runtime that outlive single actions (port-forwards stay open).
struct H {
    harness: Harness,
    backend: Backends,
    kubeconfig: String,
}

impl H {
    fn new(cluster: &impl Cluster) -> H {
        H::with_kubeconfig(cluster.kubeconfig_path().display().to_string())
    }

    fn with_kubeconfig(kubeconfig: String) -> H {
        let harness = Harness::new();
        H {
            harness,
            backend: Backends::from_env(),
            kubeconfig,
        }
    }

    /// Runs `action` unattended.
    fn run(&self, action: Action, o: Opts) -> Run {
        self.run_as(&FakeOperator::unattended(), action, o)
    }

    /// Runs `action` with `op` at the keyboard.
    fn run_as(&self, op: &FakeOperator, action: Action, o: Opts) -> Run {
        let o = Opts {
            kubeconfig: Some(self.kubeconfig.clone()),
            ..o
        };
        self.harness.perform(&self.backend, &action, op, o)
    }

    fn ok(&self, action: Action) -> Run {
        let r = self.run(action, opts());
        r.ok();
        r
    }
}

fn act<T: DeserializeOwned>(yaml: &str) -> T {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("action yaml: {e}\n{yaml}"))
}

fn get(yaml: &str) -> Action {
    Action::KubeGet(act(yaml))
}
fn wait(yaml: &str) -> Action {
    Action::KubeWait(act(yaml))
}

fn admin(sim: &KubeSim, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let r = http(
        method,
        &format!("{}/_sim/{path}", sim.url()),
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .expect("kubesim admin request");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// Watch requests kubesim has served since its counters were last reset.
fn watches_served(url: &str) -> u64 {
    let r = http("GET", &format!("{url}/_sim/requests"), &[], b"").expect("kubesim requests");
    serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null)["watch"]
        .as_u64()
        .unwrap_or(0)
}

/// Runs `f` on another thread once kubesim has served `n` watch requests: a fault or change
/// meant to happen during a wait happens after the client's watch is open, however slow the
/// machine (never on a timer racing the client).
fn when_watching(
    url: &str,
    n: u64,
    f: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        assert!(
            wait_until(Duration::from_secs(120), || watches_served(&url) >= n),
            "the client never opened watch number {n}"
        );
        f()
    })
}

/// `kubectl run NAME -n NS`, retried while the API server is unreachable (after `/_sim/down`).
fn kubectl_run_pod(kubeconfig: &std::path::Path, ns: &str, name: &str) {
    let run = || {
        std::process::Command::new(super::lab::kubectl_path())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["run", name, "-n", ns, "--image=busybox"])
            .output()
            .expect("run kubectl")
    };
    let mut last = run();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !last.status.success() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        last = run();
    }
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
}

fn pod(ns: &str, name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
}

fn scenario(extra: &str, objects: &[Value]) -> String {
    let objs: Vec<String> = objects.iter().map(|o| format!("  - {o}")).collect();
    format!("{extra}\nobjects:\n{}\n", objs.join("\n"))
}

// ---------------------------------------------------------------------------------------
// kube.get
// ---------------------------------------------------------------------------------------

#[test]
fn get_lists_shows_columns_and_checks_assertions_and_bounds() {
    let sim = KubeSim::start_with_scenario(&scenario(
        "podReadyAfterMs: 0\npodsNeverReady: [\"vault/vault-2\"]",
        &[
            pod("vault", "vault-0", json!({"app": "vault"})),
            pod("vault", "vault-1", json!({"app": "vault"})),
            pod("vault", "vault-2", json!({"app": "vault"})),
            pod("vault", "other", json!({"app": "other"})),
        ],
    ));
    let h = H::new(&sim);
    // Pods turn Ready after the first controller tick.
    h.ok(wait(
        "resource: { kind: Pod, namespace: vault, name: vault-1 }\nfor: { condition: Ready }",
    ));
    let r = h.ok(get(
        "resource: { kind: pods, namespace: vault, selector: app=vault }\ncolumns: [\"status.conditions[type=Ready].status\", spec.containers]\nmin_items: 3\nmax_items: 3",
    ));
    assert_eq!(r.value()["count"], 3);
    assert_eq!(r.value()["names"], json!(["vault-0", "vault-1", "vault-2"]));
    let lines = r.lines();
    assert!(
        lines.contains("NAME") && lines.contains("READY") && lines.contains("CONTAINERS"),
        "{lines}"
    );
    assert!(lines.contains("busybox"), "{lines}");
    assert_eq!(r.value()["items"][0]["metadata"]["labels"]["app"], "vault");

    // all (default) fails naming the pod; any passes.
    let r = h.run(
        get(
            r#"resource: { kind: Pod, namespace: vault, selector: app=vault }
assert:
  - path: "status.conditions[type=Ready].status"
    equals: "True"
    message: a Vault pod is not Ready"#,
        ),
        opts(),
    );
    let e = r.err();
    assert!(e.starts_with("a Vault pod is not Ready (vault-2: `status.conditions[type=Ready].status` is \"False\", expected \"True\")"), "{e}");
    h.ok(get(
        r#"resource: { kind: Pod, namespace: vault, selector: app=vault }
assert:
  - { path: "status.conditions[type=Ready].status", equals: "True", scope: any }
  - { path: metadata.labels.app, one_of: [vault, x] }
  - { path: metadata.name, matches: "vault-[0-9]" }
  - { path: spec.nodeName, exists: false }"#,
    ));

    let e = h
        .run(
            get("resource: { kind: Pod, namespace: vault, selector: app=vault }\nmax_items: 2"),
            opts(),
        )
        .err();
    assert!(
        e.contains("expected at most 2") && e.contains("found 3"),
        "{e}"
    );
    let e = h
        .run(
            get("resource: { kind: Pod, namespace: vault, selector: app=nope }\nmin_items: 1"),
            opts(),
        )
        .err();
    assert!(
        e.contains("expected at least 1") && e.contains("found 0"),
        "{e}"
    );
    // A named object that is missing: a clear not-found (unless bounds allow it).
    let e = h
        .run(
            get("resource: { kind: Pod, namespace: vault, name: vault-9 }"),
            opts(),
        )
        .err();
    assert_eq!(
        e,
        "pods \"vault-9\" in namespace \"vault\" not found; check the name and namespace (`kubectl get` it)"
    );
    let r = h.ok(get(
        "resource: { kind: Pod, namespace: vault, name: vault-9 }\nmax_items: 0",
    ));
    assert_eq!(r.value()["count"], 0);
    // Every namespace, field selector.
    let r = h.ok(get(
        "resource: { kind: Pod, all_namespaces: true, field_selector: metadata.name=other }",
    ));
    assert_eq!(r.value()["names"], json!(["other"]));
    assert!(r.lines().contains("NAMESPACE"), "{}", r.lines());
}

#[test]
fn get_custom_resources_by_discovery_and_a_missing_crd_names_its_component() {
    let sim = KubeSim::start_with_scenario(&scenario(
        "applicationSyncAfterMs: 0",
        &[
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "nextcloud", "namespace": "argocd"}, "spec": {"project": "default"}}),
        ],
    ));
    let h = H::new(&sim);
    let r = h.ok(get(
        "resource: { kind: Application, api_version: argoproj.io/v1alpha1, namespace: argocd, name: nextcloud }\ncolumns: [status.sync.status]",
    ));
    assert_eq!(r.value()["item"]["spec"]["project"], "default");
    // Without api_version: drctl knows the group.
    let r = h.ok(get("resource: { kind: applications, namespace: argocd }"));
    assert_eq!(r.value()["count"], 1);
    // Cluster-scoped custom kind.
    h.ok(get("resource: { kind: ClusterSecretStore }\nmax_items: 0"));
    // Backup is both Velero's and Longhorn's.
    let e = h
        .run(get("resource: { kind: Backup, namespace: velero }"), opts())
        .err();
    assert!(
        e.contains("several API groups")
            && e.contains("velero.io/v1")
            && e.contains("longhorn.io/v1beta2"),
        "{e}"
    );

    sim.kubectl_ok(&["delete", "crd", "applications.argoproj.io"]);
    let e = h
        .run(get("resource: { kind: Application, api_version: argoproj.io/v1alpha1, namespace: argocd }"), opts())
        .err();
    assert!(e.contains("the Argo CD CRDs are missing"), "{e}");
    assert!(e.contains("Application (argoproj.io/v1alpha1)"), "{e}");
    let e = h
        .run(Action::ArgocdApps(act("namespace: argocd")), opts())
        .err();
    assert!(e.contains("the Argo CD CRDs are missing"), "{e}");
    let e = h.run(get("resource: { kind: Gizmo }"), opts()).err();
    assert!(e.contains("the cluster serves no kind `Gizmo`"), "{e}");
}

// ---------------------------------------------------------------------------------------
// kube.wait: conditions, fields, deletion, objects that appear later, faults
// ---------------------------------------------------------------------------------------

#[test]
fn wait_for_an_object_that_does_not_exist_yet_and_for_a_field() {
    let sim = KubeSim::start_with_scenario("podReadyAfterMs: 300\n");
    sim.kubectl_ok(&["create", "namespace", "vault"]);
    let h = H::new(&sim);
    let kc = sim.kubeconfig_path().to_path_buf();
    // The pod appears only once drctl watches: it must have seen it missing first.
    let t = when_watching(sim.url(), 1, move || {
        kubectl_run_pod(&kc, "vault", "vault-0")
    });
    let r = h.run(
        wait("resource: { kind: Pod, namespace: vault, name: vault-0 }\nfor: { condition: Ready }"),
        Opts {
            timeout: Some(Duration::from_secs(120)),
            ..opts()
        },
    );
    t.join().unwrap();
    assert_eq!(r.value()["names"], json!(["vault-0"]));
    // Created after the watch opened, Ready 300 ms after its creation.
    assert!(r.elapsed >= Duration::from_millis(300), "{:?}", r.elapsed);
    assert!(
        r.events
            .contains("no pods \\\"vault-0\\\" in namespace \\\"vault\\\" yet")
            || r.events.contains("0/1"),
        "{}",
        r.events
    );
    let pod = kget(&sim, &["pod", "vault-0", "-n", "vault"]).unwrap();
    assert_eq!(pod["status"]["phase"], "Running");
    // A field value, on a selector.
    let r = h.ok(wait(
        "resource: { kind: Pod, namespace: vault, selector: run=vault-0 }\nfor: { field: { path: status.phase, equals: Running } }",
    ));
    assert_eq!(r.value()["count"], 1);
}

#[test]
fn wait_times_out_naming_what_is_late() {
    let sim = KubeSim::start_with_scenario(&scenario(
        "podReadyAfterMs: 0\npodsNeverReady: [\"vault/vault-1\"]",
        &[
            pod("vault", "vault-0", json!({"app": "vault"})),
            pod("vault", "vault-1", json!({"app": "vault"})),
        ],
    ));
    let h = H::new(&sim);
    let r = h.run(
        wait("resource: { kind: Pod, namespace: vault, selector: app=vault }\nfor: { condition: Ready }"),
        Opts { timeout: Some(Duration::from_secs(2)), ..opts() },
    );
    let e = r.err();
    // The wait's own deadline (with its state), not the engine's bound, ended the step.
    assert_eq!(
        e,
        "timed out after 2s (1/2 pods Ready, late: vault/vault-1)"
    );
}

#[test]
fn wait_survives_a_watch_dropped_mid_wait_with_one_list() {
    let sim = KubeSim::start_with_scenario("podReadyAfterMs: 300\n");
    sim.kubectl_ok(&["create", "namespace", "vault"]);
    let h = H::new(&sim);
    admin(&sim, "DELETE", "requests", None);
    // Each drop follows the watch it drops; the pod appears on the third watch.
    let (url, kc) = (sim.url().to_owned(), sim.kubeconfig_path());
    let t = when_watching(sim.url(), 1, move || {
        for n in 2..=3 {
            let r = http("POST", &format!("{url}/_sim/drop-watches"), &[], b"").unwrap();
            assert_eq!(r.status, 200);
            assert!(
                wait_until(Duration::from_secs(120), || watches_served(&url) >= n),
                "no watch number {n} after a dropped watch"
            );
        }
        kubectl_run_pod(&kc, "vault", "vault-0");
    });
    let r = h.run(
        wait("resource: { kind: Pod, namespace: vault, name: vault-0 }\nfor: { condition: Ready }"),
        Opts {
            timeout: Some(Duration::from_secs(120)),
            ..opts()
        },
    );
    t.join().unwrap();
    r.ok();
    // Resumed from the last resourceVersion: no new list, one watch per connection.
    let n = admin(&sim, "GET", "requests", None);
    assert_eq!(n["list"], 1, "{n}");
    assert!(n["watch"].as_u64().unwrap() >= 3, "{n}");
}

#[test]
fn wait_survives_the_api_server_down_for_seconds() {
    let sim = KubeSim::start_with_scenario("podReadyAfterMs: 300\n");
    sim.kubectl_ok(&["create", "namespace", "vault"]);
    let h = H::new(&sim);
    let (url, kc) = (sim.url().to_owned(), sim.kubeconfig_path());
    // Down while drctl watches; the pod it waits for appears once the server is back.
    let t = when_watching(sim.url(), 1, move || {
        let r = http("POST", &format!("{url}/_sim/down?seconds=2.5"), &[], b"").unwrap();
        assert_eq!(r.status, 200);
        kubectl_run_pod(&kc, "vault", "vault-0");
    });
    let r = h.run(
        wait("resource: { kind: Pod, namespace: vault, name: vault-0 }\nfor: { condition: Ready }"),
        Opts {
            timeout: Some(Duration::from_secs(120)),
            ..opts()
        },
    );
    t.join().unwrap();
    r.ok();
    assert!(r.events.contains("resuming"), "{}", r.events);
    assert!(r.lines().contains("the watch was resumed"), "{}", r.lines());
}

// ---------------------------------------------------------------------------------------
// kube.namespace, kube.secret, kube.delete
// ---------------------------------------------------------------------------------------

#[test]
fn namespace_is_created_once_and_previewed() {
    namespace_is_created_once_and_previewed_on(&KubeSim::start());
}

/// Also run against the real control plane (`real.rs`), like the other `*_on` bodies.
fn namespace_is_created_once_and_previewed_on(sim: &impl Cluster) {
    let h = H::new(sim);
    let ns = || Action::KubeNamespace(act("name: velero"));
    let r = h.run(
        ns(),
        Opts {
            dry_run: true,
            ..opts()
        },
    );
    assert_eq!(
        r.lines(),
        "would create namespace velero (it does not exist)"
    );
    assert!(
        kget(sim, &["namespace", "velero"]).is_none(),
        "dry-run created nothing"
    );
    let r = h.ok(ns());
    assert_eq!(r.value()["created"], true);
    assert_eq!(
        kget(sim, &["namespace", "velero"]).unwrap()["status"]["phase"],
        "Active"
    );
    let r = h.ok(ns());
    assert_eq!(r.value()["created"], false);
    assert_eq!(r.lines(), "namespace velero exists");
}

#[test]
fn secret_create_or_replace_is_idempotent_and_never_shows_values() {
    secret_create_or_replace_is_idempotent_and_never_shows_values_on(&KubeSim::start());
}

fn secret_create_or_replace_is_idempotent_and_never_shows_values_on(sim: &impl Cluster) {
    sim.kubectl_ok(&["create", "namespace", "velero"]);
    let h = H::new(sim);
    let key_id = "AKIA-SECRET-KEY-ID-123".to_string();
    let secret_key = "s3cr3t/Value+With=Chars".to_string();
    let inputs = || {
        vec![
            ("key_id", key_id.clone(), true),
            ("secret_key", secret_key.clone(), true),
        ]
    };
    let yaml = r#"name: velero-offsite-credentials
namespace: velero
literals: { region: us-east-1 }
files:
  cloud:
    content: |
      [default]
      aws_access_key_id={{ inputs.key_id }}
      aws_secret_access_key={{ inputs.secret_key }}"#;
    let secret = || Action::KubeSecret(act(yaml));
    let r = h.run(
        secret(),
        Opts {
            dry_run: true,
            inputs: inputs(),
            ..opts()
        },
    );
    assert_eq!(
        r.lines(),
        "would create secret velero/velero-offsite-credentials (type Opaque) with keys: cloud, region"
    );
    assert!(
        kget(
            sim,
            &["secret", "-n", "velero", "velero-offsite-credentials"]
        )
        .is_none()
    );

    let r = h.run(
        secret(),
        Opts {
            inputs: inputs(),
            ..opts()
        },
    );
    assert_eq!(r.value()["action"], "created");
    let visible = r.visible_with_value();
    assert!(
        !visible.contains(&key_id) && !visible.contains(&secret_key),
        "{visible}"
    );
    let live = kget(
        sim,
        &["secret", "-n", "velero", "velero-offsite-credentials"],
    )
    .unwrap();
    let cloud = decode(&live["data"]["cloud"]);
    assert_eq!(
        cloud,
        format!("[default]\naws_access_key_id={key_id}\naws_secret_access_key={secret_key}\n")
    );
    assert_eq!(decode(&live["data"]["region"]), "us-east-1");
    let rv = live["metadata"]["resourceVersion"].clone();

    // Again: unchanged, nothing written.
    let r = h.run(
        secret(),
        Opts {
            inputs: inputs(),
            ..opts()
        },
    );
    assert_eq!(r.value()["action"], "unchanged");
    let live = kget(
        sim,
        &["secret", "-n", "velero", "velero-offsite-credentials"],
    )
    .unwrap();
    assert_eq!(live["metadata"]["resourceVersion"], rv);

    // Someone added a key: replace leaves exactly the given keys; the preview names keys only.
    sim.kubectl_ok(&[
        "patch",
        "secret",
        "-n",
        "velero",
        "velero-offsite-credentials",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"stray":"eA=="}}"#,
    ]);
    let new_key = "NEW-SECRET-VALUE-456".to_string();
    let inputs2 = vec![
        ("key_id", new_key.clone(), true),
        ("secret_key", secret_key.clone(), true),
    ];
    let r = h.run(
        secret(),
        Opts {
            dry_run: true,
            inputs: inputs2.clone(),
            ..opts()
        },
    );
    assert_eq!(
        r.lines(),
        "would replace secret velero/velero-offsite-credentials: keys removed: stray; keys changed: cloud; keys unchanged: region"
    );
    assert!(!r.visible_with_value().contains(&new_key));
    let r = h.run(
        secret(),
        Opts {
            inputs: inputs2,
            ..opts()
        },
    );
    assert_eq!(r.value()["action"], "replaced");
    assert!(
        !r.visible_with_value().contains(&new_key) && !r.visible_with_value().contains(&secret_key)
    );
    let live = kget(
        sim,
        &["secret", "-n", "velero", "velero-offsite-credentials"],
    )
    .unwrap();
    let keys: Vec<&String> = live["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["cloud", "region"]);
    assert!(decode(&live["data"]["cloud"]).contains(&new_key));

    // replace: false refuses to overwrite other content.
    let e = h
        .run(
            Action::KubeSecret(act("name: velero-offsite-credentials\nnamespace: velero\nliterals: { region: eu-west-1 }\nreplace: false")),
            opts(),
        )
        .err();
    assert!(e.contains("`replace: false`"), "{e}");
    // A kube.get of a Secret shows key names, never values.
    let r = h.ok(get(
        "resource: { kind: Secret, namespace: velero, name: velero-offsite-credentials }",
    ));
    assert!(
        !r.visible_with_value().contains(&new_key)
            && !r.visible_with_value().contains("dXMtZWFzdC0x"),
        "{}",
        r.visible_with_value()
    );
    assert_eq!(r.value()["item"]["data"]["cloud"], "(hidden)");
}

fn decode(v: &Value) -> String {
    base64::decode_text(v.as_str().expect("base64 text"))
}

#[test]
fn delete_waits_until_gone_and_a_statefulset_pod_comes_back() {
    delete_waits_until_gone_and_a_statefulset_pod_comes_back_on(&KubeSim::start_with_scenario(
        "podReadyAfterMs: 200\n",
    ));
}

fn delete_waits_until_gone_and_a_statefulset_pod_comes_back_on(sim: &impl Cluster) {
    sim.kubectl_ok(&["create", "namespace", "vault"]);
    sim.apply(&[
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "vault", "namespace": "vault"},
        "spec": {"replicas": 1, "serviceName": "vault", "selector": {"matchLabels": {"app": "vault"}},
            "template": {"metadata": {"labels": {"app": "vault"}}, "spec": {"containers": [{"name": "vault", "image": "vault"}]}}}}),
        pod("vault", "scratch", json!({"app": "scratch"})),
    ]);
    let h = H::new(sim);
    h.ok(wait(
        "resource: { kind: Pod, namespace: vault, name: vault-0 }\nfor: { condition: Ready }",
    ));
    let old_uid = kget(sim, &["pod", "-n", "vault", "vault-0"]).unwrap()["metadata"]["uid"].clone();
    let del = |y: &str| Action::KubeDelete(act(y));
    let r = h.run(
        del("resource: { kind: Pod, namespace: vault, name: vault-0 }"),
        Opts {
            dry_run: true,
            ..opts()
        },
    );
    assert!(
        r.lines().starts_with("would delete pod vault/vault-0"),
        "{}",
        r.lines()
    );
    assert_eq!(
        kget(sim, &["pod", "-n", "vault", "vault-0"]).unwrap()["metadata"]["uid"],
        old_uid
    );
    let r = h.ok(del(
        "resource: { kind: Pod, namespace: vault, name: vault-0 }",
    ));
    assert_eq!(r.value()["deleted"], json!(["vault-0"]));
    // Its replacement (same name, new uid) turns Ready again.
    h.ok(wait(
        "resource: { kind: Pod, namespace: vault, name: vault-0 }\nfor: { condition: Ready }",
    ));
    let new_uid = kget(sim, &["pod", "-n", "vault", "vault-0"]).unwrap()["metadata"]["uid"].clone();
    assert_ne!(new_uid, old_uid);
    // By selector; then gone; not found unless ignored.
    h.ok(del(
        "resource: { kind: Pod, namespace: vault, selector: app=scratch }",
    ));
    assert!(kget(sim, &["pod", "-n", "vault", "scratch"]).is_none());
    let e = h
        .run(
            del("resource: { kind: Pod, namespace: vault, name: scratch }"),
            opts(),
        )
        .err();
    assert!(
        e.contains("pods \"scratch\" in namespace \"vault\" not found"),
        "{e}"
    );
    let r = h.ok(del(
        "resource: { kind: Pod, namespace: vault, name: scratch }\nignore_not_found: true",
    ));
    assert_eq!(r.value()["count"], 0);
    // Waiting for deletion of something already gone is immediate.
    h.ok(wait(
        "resource: { kind: Pod, namespace: vault, name: scratch }\nfor: deleted",
    ));
}

// ---------------------------------------------------------------------------------------
// Failure modes
// ---------------------------------------------------------------------------------------

#[test]
fn errors_say_what_to_check_and_transient_ones_are_retried() {
    let sim = KubeSim::start_with_scenario(&scenario("", &[pod("vault", "vault-0", json!({}))]));
    let h = H::new(&sim);
    let g = || get("resource: { kind: Pod, namespace: vault, name: vault-0 }");
    // Transient 5xx: retried with backoff (503 by the client itself, 500 by drctl).
    admin(
        &sim,
        "POST",
        "faults",
        Some(json!({"failNext": 2, "failCode": 503, "failPath": "/pods"})),
    );
    h.ok(g());
    admin(
        &sim,
        "POST",
        "faults",
        Some(json!({"failNext": 3, "failCode": 500, "failPath": "/pods"})),
    );
    let r = h.ok(g());
    assert!(
        r.events
            .contains("injected failure (500); trying again in 200 ms"),
        "{}",
        r.events
    );
    assert_eq!(admin(&sim, "GET", "faults", None)["failNext"], 0);
    // RBAC.
    admin(
        &sim,
        "POST",
        "faults",
        Some(json!({"failNext": 1, "failCode": 403, "failPath": "/pods"})),
    );
    let e = h.run(g(), opts()).err();
    assert!(
        e.starts_with("forbidden: ")
            && e.contains("RBAC permission")
            && e.contains("kubectl auth can-i"),
        "{e}"
    );
    // Expired credentials.
    admin(
        &sim,
        "POST",
        "faults",
        Some(json!({"failNext": 1, "failCode": 401, "failPath": "/pods"})),
    );
    let e = h.run(g(), opts()).err();
    assert!(
        e.contains("rejected the credentials") && e.contains("expired"),
        "{e}"
    );
    // Conflict.
    admin(
        &sim,
        "POST",
        "faults",
        Some(json!({"failNext": 1, "failCode": 409, "failPath": "/namespaces/x"})),
    );
    let e = h
        .run(
            Action::KubePatch(act("resource: { kind: Namespace, name: x }\npatch: '{}'")),
            opts(),
        )
        .err();
    assert!(e.contains("not found") || e.contains("conflict"), "{e}");
    admin(&sim, "POST", "faults", Some(json!({})));

    // Unreachable: a kubeconfig naming a closed port.
    let dir = tempfile::tempdir().unwrap();
    let port = super::lab::free_port();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(&kc, format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{ server: http://127.0.0.1:{port} }}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context: {{ cluster: c, user: u }}\ncurrent-context: x\n")).unwrap();
    let h2 = H::with_kubeconfig(kc.display().to_string());
    let r = h2.run(g(), opts());
    let e = r.err();
    assert!(
        e.starts_with(&format!(
            "cannot reach the Kubernetes API server at http://127.0.0.1:{port}"
        )),
        "{e}"
    );
    assert!(e.contains("check that the cluster is up"), "{e}");
    // A broken kubeconfig / unknown context.
    std::fs::write(&kc, "not: [a kubeconfig").unwrap();
    let e = h2.run(g(), opts()).err();
    assert!(
        e.starts_with(&format!(
            "cannot load the Kubernetes connection from kubeconfig {}",
            kc.display()
        )),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// Rollouts, patch, apply, logs
// ---------------------------------------------------------------------------------------

fn deployment(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
}

#[test]
fn rollout_restart_and_status_for_deployments_statefulsets_daemonsets() {
    let sim = KubeSim::start_with_scenario("podReadyAfterMs: 200\n");
    // kubesim has no nodes of its own; the real control plane has kwok's.
    sim.apply(&[json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})]);
    rollout_restart_and_status_for_deployments_statefulsets_daemonsets_on(&sim);
}

fn rollout_restart_and_status_for_deployments_statefulsets_daemonsets_on(sim: &impl Cluster) {
    sim.kubectl_ok(&["create", "namespace", "security"]);
    sim.apply(&[
        deployment("security", "external-secrets"),
        deployment("security", "external-secrets-webhook"),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "vault", "namespace": "security"},
            "spec": {"replicas": 2, "serviceName": "vault", "selector": {"matchLabels": {"app": "vault"}},
                "template": {"metadata": {"labels": {"app": "vault"}}, "spec": {"containers": [{"name": "v", "image": "v"}]}}}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "security"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "a"}]}}}}),
    ]);
    let h = H::new(sim);
    let status = |k: &str, names: &str| {
        Action::KubeRolloutStatus(act(&format!(
            "kind: {k}\nnamespace: security\nnames: [{names}]"
        )))
    };
    h.ok(status(
        "deployment",
        "external-secrets, external-secrets-webhook",
    ));
    h.ok(status("statefulset", "vault"));
    h.ok(status("daemonset", "agent"));
    let restart = |dry_run| {
        h.run(
            Action::KubeRolloutRestart(act("kind: deployment\nnamespace: security\nnames: [external-secrets, external-secrets-webhook]")),
            Opts { dry_run, ..opts() },
        )
    };
    let r = restart(true);
    assert!(r.lines().contains("would restart deployment/external-secrets in security: pod template annotation kubectl.kubernetes.io/restartedAt: (never) -> "), "{}", r.lines());
    assert!(
        kget(sim, &["deploy", "-n", "security", "external-secrets"]).unwrap()["spec"]["template"]
            ["metadata"]
            .get("annotations")
            .is_none()
    );
    let r = restart(false);
    let at = r.value()["restarted_at"].as_str().unwrap().to_owned();
    let d = kget(sim, &["deploy", "-n", "security", "external-secrets"]).unwrap();
    assert_eq!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        at.as_str()
    );
    let r = h.ok(status(
        "deployment",
        "external-secrets, external-secrets-webhook",
    ));
    assert!(
        r.lines().contains("2 deployment(s) rolled out"),
        "{}",
        r.lines()
    );
    let d = kget(sim, &["deploy", "-n", "security", "external-secrets"]).unwrap();
    assert!(d["status"]["observedGeneration"].as_i64() >= d["metadata"]["generation"].as_i64());
    // StatefulSet restart rolls its pods; status waits for them.
    h.ok(Action::KubeRolloutRestart(act(
        "kind: statefulset\nnamespace: security\nnames: [vault]",
    )));
    h.ok(status("statefulset", "vault"));
    // A missing workload.
    let e = h
        .run(
            Action::KubeRolloutRestart(act("kind: deployment\nnamespace: security\nnames: [nope]")),
            opts(),
        )
        .err();
    assert!(
        e.contains("deployments.apps \"nope\" in namespace \"security\" not found"),
        "{e}"
    );
    let e = h
        .run(
            status("deployment", "nope"),
            Opts {
                timeout: Some(Duration::from_secs(1)),
                ..opts()
            },
        )
        .err();
    assert!(e.contains("late: nope (not found)"), "{e}");
}

#[test]
fn patch_and_apply_preview_against_the_live_object_then_change_it() {
    patch_and_apply_preview_against_the_live_object_then_change_it_on(&KubeSim::start());
}

fn patch_and_apply_preview_against_the_live_object_then_change_it_on(sim: &impl Cluster) {
    sim.kubectl_ok(&["create", "namespace", "app"]);
    sim.apply(&[
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "app"}, "data": {"a": "1", "b": "2"}}),
    ]);
    let h = H::new(sim);
    let p = |t: &str, body: &str| {
        Action::KubePatch(act(&format!(
            "resource: {{ kind: ConfigMap, namespace: app, name: cfg }}\ntype: {t}\npatch: '{body}'"
        )))
    };
    let r = h.run(
        p("merge", r#"{"data":{"a":"9","b":null,"c":"3"}}"#),
        Opts {
            dry_run: true,
            ..opts()
        },
    );
    let l = r.lines();
    assert!(
        l.contains("data.a: \"1\" -> \"9\"")
            && l.contains("data.c: (absent) -> \"3\"")
            && l.contains("data.b: \"2\" -> (absent)"),
        "{l}"
    );
    assert_eq!(
        kget(sim, &["cm", "-n", "app", "cfg"]).unwrap()["data"],
        json!({"a": "1", "b": "2"})
    );
    h.ok(p("merge", r#"{"data":{"a":"9","b":null,"c":"3"}}"#));
    assert_eq!(
        kget(sim, &["cm", "-n", "app", "cfg"]).unwrap()["data"],
        json!({"a": "9", "c": "3"})
    );
    let r = h.run(
        p(
            "json",
            r#"[{"op":"replace","path":"/data/a","value":"10"}]"#,
        ),
        Opts {
            dry_run: true,
            ..opts()
        },
    );
    assert!(
        r.lines().contains("replace /data/a: \"9\" -> \"10\""),
        "{}",
        r.lines()
    );
    h.ok(p(
        "json",
        r#"[{"op":"replace","path":"/data/a","value":"10"}]"#,
    ));
    assert_eq!(
        kget(sim, &["cm", "-n", "app", "cfg"]).unwrap()["data"]["a"],
        "10"
    );
    let e = h
        .run(
            p("json", r#"[{"op":"test","path":"/data/a","value":"0"}]"#),
            opts(),
        )
        .err();
    assert!(e.contains("configmaps \"cfg\""), "{e}");

    let manifest = r#"manifest: |
  apiVersion: v1
  kind: ConfigMap
  metadata: { name: cfg, namespace: app }
  data: { a: "10", d: "4" }
  ---
  apiVersion: argoproj.io/v1alpha1
  kind: Application
  metadata: { name: vault, namespace: argocd }
  spec:
    project: default
    destination: { server: "https://kubernetes.default.svc", namespace: vault }
    source: { repoURL: "https://git.example.invalid/homelab.git", path: apps/vault }"#;
    let r = h.run(
        Action::KubeApply(act(manifest)),
        Opts {
            dry_run: true,
            ..opts()
        },
    );
    let l = r.lines();
    assert!(
        l.contains("would change configmap/cfg:\n  data.d: (absent) -> \"4\""),
        "{l}"
    );
    assert!(l.contains("would create application/vault"), "{l}");
    assert!(kget(sim, &["application", "-n", "argocd", "vault"]).is_none());
    // (The real CRD's schema requires spec.destination: kubesim does not validate schemas.)
    let e = h.run(Action::KubeApply(act(manifest)), opts()).err();
    assert_eq!(
        e,
        "namespaces \"argocd\" not found; check the name and namespace (`kubectl get` it)"
    );
    sim.kubectl_ok(&["create", "namespace", "argocd"]);
    let r = h.ok(Action::KubeApply(act(manifest)));
    assert!(
        r.lines().contains("configmap/cfg unchanged")
            && r.lines().contains("application/vault created"),
        "{}",
        r.lines()
    );
    assert_eq!(
        kget(sim, &["cm", "-n", "app", "cfg"]).unwrap()["data"]["d"],
        "4"
    );
    assert_eq!(
        kget(sim, &["application", "-n", "argocd", "vault"]).unwrap()["spec"]["project"],
        "default"
    );
    let r = h.run(
        Action::KubeApply(act(manifest)),
        Opts {
            dry_run: true,
            ..opts()
        },
    );
    assert!(
        r.lines().contains("configmap/cfg unchanged"),
        "{}",
        r.lines()
    );
}

#[test]
fn logs_of_a_pod_a_selector_a_job_and_the_newest_job_of_a_cronjob() {
    let sim = KubeSim::start_with_scenario(&scenario(
        "jobCompleteAfterMs: 100\npodLogs: { \"vault/vault-0\": \"line one\\nline two\\nsealed: true\\n\", \"eso-recovery\": \"restarted external-secrets\\n\" }",
        &[
            pod("vault", "vault-0", json!({"app": "vault"})),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "eso-recovery", "namespace": "security"},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "r", "image": "r"}]}}}}}}),
        ],
    ));
    let h = H::new(&sim);
    let logs = |y: &str| Action::KubeLogs(act(y));
    let r = h.ok(logs("namespace: vault\npod: vault-0\ntail: 2"));
    assert_eq!(r.lines(), "line two\nsealed: true");
    assert_eq!(r.value()["lines"], 2);
    let r = h.ok(logs("namespace: vault\nselector: app=vault"));
    assert!(r.lines().contains("line one"), "{}", r.lines());
    let e = h
        .run(logs("namespace: security\ncronjob: eso-recovery"), opts())
        .err();
    assert!(e.contains("has started no job yet"), "{e}");
    sim.kubectl_ok(&[
        "create",
        "job",
        "-n",
        "security",
        "--from=cronjob/eso-recovery",
        "eso-recovery-1",
    ]);
    std::thread::sleep(Duration::from_millis(50));
    sim.kubectl_ok(&[
        "create",
        "job",
        "-n",
        "security",
        "--from=cronjob/eso-recovery",
        "eso-recovery-2",
    ]);
    h.ok(wait("resource: { kind: Job, namespace: security, name: eso-recovery-2 }\nfor: { condition: Complete }"));
    let r = h.ok(logs("namespace: security\ncronjob: eso-recovery"));
    assert_eq!(r.value()["job"], "eso-recovery-2");
    assert!(
        r.lines().contains("restarted external-secrets"),
        "{}",
        r.lines()
    );
    let r = h.ok(logs("namespace: security\njob: eso-recovery-1"));
    assert!(
        r.lines().contains("restarted external-secrets"),
        "{}",
        r.lines()
    );
}

// ---------------------------------------------------------------------------------------
// Velero, Argo CD, External Secrets, Longhorn
// ---------------------------------------------------------------------------------------

fn velero_backup(name: &str, loc: &str, phase: &str, start: &str) -> Value {
    json!({"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": name, "namespace": "velero"},
        "spec": {"storageLocation": loc},
        "status": {"phase": phase, "startTimestamp": start, "errors": 0, "warnings": 0}})
}

#[test]
fn velero_lists_backups_restores_and_puts_partially_failed_to_the_operator() {
    let sim = KubeSim::start_with_scenario(&scenario(
        // Clocks from drctl's watch: it sees each restore before it completes.
        "restoreInProgressAfterMs: 100\nrestoreCompleteAfterMs: 400\nrestoresPartiallyFailed: [daily-partial]\nclocksStartAtWatch: true",
        &[
            velero_backup("daily-1", "default", "Completed", "2025-01-01T00:00:00Z"),
            velero_backup("daily-2", "default", "Completed", "2025-01-02T00:00:00Z"),
            velero_backup("daily-3", "default", "Failed", "2025-01-03T00:00:00Z"),
            velero_backup("offsite-1", "offsite", "Completed", "2025-01-04T00:00:00Z"),
            velero_backup(
                "daily-partial",
                "default",
                "Completed",
                "2024-12-01T00:00:00Z",
            ),
        ],
    ));
    let h = H::new(&sim);
    let r = h.ok(Action::VeleroBackups(act("storage_location: default")));
    assert_eq!(r.value()["newest"]["name"], "daily-2");
    assert_eq!(r.value()["count"], 4);
    assert_eq!(r.value()["backups"][0]["name"], "daily-3");
    assert_eq!(r.value()["backups"][0]["phase"], "Failed");
    assert!(
        r.lines().contains("NAME") && r.lines().contains("newest Completed backup: daily-2"),
        "{}",
        r.lines()
    );
    let r = h.ok(Action::VeleroBackups(act("storage_location: offsite")));
    assert_eq!(r.value()["newest"]["name"], "offsite-1");
    let e = h
        .run(
            Action::VeleroBackups(act("storage_location: nowhere")),
            opts(),
        )
        .err();
    assert!(
        e.contains("no Completed Velero backup in namespace velero at storage location nowhere"),
        "{e}"
    );
    let r = h.ok(Action::VeleroBackups(act(
        "storage_location: nowhere\nrequire_completed: false",
    )));
    assert_eq!(r.value()["newest"], Value::Null);

    let restore = |y: &str| Action::VeleroRestore(act(y));
    let r = h.run(
        restore("backup: daily-2\nname: r1"),
        Opts {
            dry_run: true,
            ..opts()
        },
    );
    assert!(
        r.lines()
            .contains("would create Restore velero/r1 from backup daily-2 (Completed"),
        "{}",
        r.lines()
    );
    assert!(kget(&sim, &["restores.velero.io", "-n", "velero", "r1"]).is_none());
    let r = h.ok(restore(
        "backup: daily-2\nname: r1\ninclude_namespaces: [vault]",
    ));
    assert_eq!(r.value()["phase"], "Completed");
    assert_eq!(r.value()["errors"], 0);
    assert!(
        r.events.contains("restore r1: InProgress") || r.events.contains("restore r1: New"),
        "{}",
        r.events
    );
    let live = kget(&sim, &["restores.velero.io", "-n", "velero", "r1"]).unwrap();
    assert_eq!(
        live["spec"],
        json!({"backupName": "daily-2", "includedNamespaces": ["vault"]})
    );
    assert_eq!(live["status"]["phase"], "Completed");
    // Resumed: the same restore is followed, not duplicated.
    h.ok(restore("backup: daily-2\nname: r1"));
    let e = h.run(restore("backup: daily-1\nname: r1"), opts()).err();
    assert!(e.contains("conflict on restores.velero.io \"r1\""), "{e}");
    // Default name BACKUP-<the run id without the runbook name> (here run `test-run` of
    // runbook `test`): the same in a re-run of the step, which follows its own Restore.
    let r = h.ok(restore("backup: daily-1"));
    assert_eq!(r.value()["name"], "daily-1-run");
    let again = h.ok(restore("backup: daily-1"));
    assert!(
        again.lines().contains("exists already"),
        "{}",
        again.lines()
    );

    // PartiallyFailed: --yes waits for the operator (resumable); an operator decides.
    let r = h.run(restore("backup: daily-partial\nname: p1"), opts());
    assert!(
        matches!(r.result, Err(ActionError::NeedsOperator(_))),
        "{:?}",
        r.result.as_ref().err()
    );
    let e = r.err();
    assert!(
        e.contains("Velero restore p1 ended PartiallyFailed (1 error(s), 0 warning(s))")
            && e.contains("--yes does not make it")
            && e.contains("velero restore describe p1"),
        "{e}"
    );
    let op = FakeOperator::confirming(&[false]);
    let r = h.run_as(&op, restore("backup: daily-partial\nname: p2"), opts());
    assert!(r.err().contains("did not accept"));
    assert!(
        op.asked()[0].contains("Velero restore p2 ended PartiallyFailed"),
        "{:?}",
        op.asked()
    );
    let r = h.run_as(
        &FakeOperator::confirming(&[true]),
        restore("backup: daily-partial\nname: p3"),
        opts(),
    );
    assert_eq!(r.value()["phase"], "PartiallyFailed");
    assert_eq!(r.value()["errors"], 1);
    let e = h.run(restore("backup: nope"), opts()).err();
    assert!(
        e.contains("Velero backup nope in namespace velero not found"),
        "{e}"
    );
}

fn app(name: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name, "namespace": "argocd"},
        "spec": {"project": "default"}})
}

#[test]
fn argocd_lists_refreshes_and_waits_with_progress() {
    let sim = KubeSim::start_with_scenario(&scenario(
        "applicationSyncAfterMs: 300\napplicationsStuck: [\"argocd/nextcloud\"]\nhardRefreshAfterMs: 200",
        &[app("vault"), app("immich"), app("nextcloud")],
    ));
    let h = H::new(&sim);
    let r = h.run(
        Action::ArgocdWait(act("namespace: argocd")),
        Opts {
            timeout: Some(Duration::from_secs(2)),
            ..opts()
        },
    );
    let e = r.err();
    assert!(
        e.contains("2/3 applications synced and healthy, late: nextcloud"),
        "{e}"
    );
    assert!(
        r.events.contains("applications synced and healthy"),
        "{}",
        r.events
    );
    let r = h.ok(Action::ArgocdApps(act("namespace: argocd")));
    assert_eq!(r.value()["not_ready"], json!(["nextcloud"]));
    assert_eq!(r.value()["ready"], 2);
    let r = h.run(
        Action::ArgocdRefresh(act("name: nextcloud")),
        Opts {
            dry_run: true,
            ..opts()
        },
    );
    assert!(r.lines().contains("would set annotation argocd.argoproj.io/refresh on application argocd/nextcloud (OutOfSync/"), "{}", r.lines());
    assert!(
        kget(&sim, &["application", "-n", "argocd", "nextcloud"]).unwrap()["metadata"]
            .get("annotations")
            .is_none()
    );
    h.ok(Action::ArgocdRefresh(act("name: nextcloud")));
    let r = h.ok(Action::ArgocdWait(act("names: [nextcloud]")));
    assert_eq!(r.value()["ready"], 1);
    let a = kget(&sim, &["application", "-n", "argocd", "nextcloud"]).unwrap();
    assert_eq!(a["status"]["sync"]["status"], "Synced");
    assert_eq!(a["status"]["health"]["status"], "Healthy");
    let e = h
        .run(Action::ArgocdApps(act("names: [ghost]")), opts())
        .err();
    assert!(
        e.contains("Argo CD application(s) ghost in namespace argocd not found"),
        "{e}"
    );
}

#[test]
fn eso_waits_for_stores_and_external_secrets() {
    let sim = KubeSim::start_with_scenario(&scenario(
        "secretStoresDegraded: [k8s-secrets]\nesoDeployment: security/external-secrets\nexternalSecretReadyAfterMs: 100\npodReadyAfterMs: 100",
        &[
            json!({"apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore", "metadata": {"name": "k8s-secrets"}, "spec": {"provider": {}}}),
            json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret", "metadata": {"name": "db", "namespace": "apps"},
                "spec": {"secretStoreRef": {"kind": "ClusterSecretStore", "name": "k8s-secrets"}, "target": {"name": "db"}, "data": [{"secretKey": "password", "remoteRef": {"key": "db"}}]}}),
            deployment("security", "external-secrets"),
        ],
    ));
    let h = H::new(&sim);
    let w = || Action::EsoWait(act("cluster_secret_stores: [k8s-secrets]"));
    let e = h
        .run(
            w(),
            Opts {
                timeout: Some(Duration::from_secs(1)),
                ..opts()
            },
        )
        .err();
    assert!(
        e.contains("0/1 ClusterSecretStores Ready, late: k8s-secrets (ValidationFailed"),
        "{e}"
    );
    h.ok(Action::KubeRolloutRestart(act(
        "kind: deployment\nnamespace: security\nnames: [external-secrets]",
    )));
    let r = h.ok(w());
    assert_eq!(r.value()["external_secrets"], 1);
    assert!(
        r.lines().contains("1/1 ExternalSecrets Ready"),
        "{}",
        r.lines()
    );
    let s = kget(&sim, &["secret", "-n", "apps", "db"]).unwrap();
    assert!(s["data"]["password"].is_string());
}

#[test]
fn longhorn_lists_backups_and_restores_every_volume() {
    let lh = |name: &str, vol: &str| {
        json!({"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
        "metadata": {"name": name, "namespace": "longhorn-system", "labels": {"backup-volume": vol}}, "spec": {"snapshotName": "s"}})
    };
    let sim = KubeSim::start_with_scenario(&scenario(
        "longhornRestoreAfterMs: 300",
        &[lh("backup-a1", "pvc-vault"), lh("backup-b1", "pvc-db")],
    ));
    let h = H::new(&sim);
    // Backups get their state from the controller a tick after start: wait for it.
    assert!(wait_until(Duration::from_secs(60), || {
        sim.kubectl_ok(&[
            "get",
            "backups.longhorn.io",
            "-n",
            "longhorn-system",
            "-o",
            "jsonpath={.items[*].status.state}",
        ])
        .split_whitespace()
        .count()
            == 2
    }));
    let r = h.ok(Action::LonghornBackups(act("{}")));
    assert_eq!(r.value()["count"], 2);
    assert_eq!(r.value()["newest"]["pvc-vault"]["name"], "backup-a1");
    let r = h.run(
        Action::LonghornRestore(act("{}")),
        Opts {
            dry_run: true,
            ..opts()
        },
    );
    assert!(
        r.lines()
            .contains("would restore volume pvc-db from backup backup-b1"),
        "{}",
        r.lines()
    );
    assert!(
        kget(
            &sim,
            &["volumes.longhorn.io", "-n", "longhorn-system", "pvc-db"]
        )
        .is_none()
    );
    let r = h.ok(Action::LonghornRestore(act("{}")));
    assert_eq!(r.value()["count"], 2);
    let v = kget(
        &sim,
        &["volumes.longhorn.io", "-n", "longhorn-system", "pvc-vault"],
    )
    .unwrap();
    assert_eq!(v["status"]["restoreRequired"], false);
    assert_eq!(v["status"]["lastBackup"], "backup-a1");
    assert!(
        v["spec"]["fromBackup"]
            .as_str()
            .unwrap()
            .contains("backup=backup-a1")
    );
}

#[test]
fn waiting_for_2000_applications_costs_one_list_and_one_watch() {
    let apps: Vec<Value> = (0..2000).map(|i| app(&format!("app-{i:04}"))).collect();
    // Nothing syncs before drctl's list and watch: its first progress line names them.
    let sim = KubeSim::start_with_scenario(&scenario(
        "applicationSyncAfterMs: 0\nclocksStartAtWatch: true",
        &apps,
    ));
    let h = H::new(&sim);
    admin(&sim, "DELETE", "requests", None);
    let r = h.run(
        Action::ArgocdWait(act("namespace: argocd")),
        Opts {
            timeout: Some(Duration::from_secs(300)),
            ..opts()
        },
    );
    assert_eq!(r.value()["count"], 2000);
    assert!(
        r.events
            .contains("/2000 applications synced and healthy, waiting for: app-"),
        "progress names the ones it waits for"
    );
    let n = admin(&sim, "GET", "requests", None);
    // One discovery request, one list, one watch (a second if the server closed it).
    assert_eq!(n["list"], 1, "{n}");
    assert!(n["total"].as_u64().unwrap() <= 4, "{n}");
    let synced = sim.kubectl_ok(&[
        "get",
        "applications",
        "-n",
        "argocd",
        "-o",
        "jsonpath={.items[*].status.sync.status}",
    ]);
    assert_eq!(
        synced.split_whitespace().filter(|s| *s == "Synced").count(),
        2000
    );
    // How fast: tests/bench/kube-wait (a timed assertion here would flake on a busy machine).
}

// ---------------------------------------------------------------------------------------
// kube.port-forward: through kubesim's pods/portforward to a real OpenBao
// ---------------------------------------------------------------------------------------

/// A Vault pod and Service whose port 8200 kubesim forwards to `bao_hostport`, Ready while
/// OpenBao's health answers 200 (initialised, unsealed, active).
fn vault_behind_kubesim(bao_hostport: &str) -> KubeSim {
    let labels = json!({"app.kubernetes.io/name": "vault", "component": "server"});
    let mut p = pod("vault", "vault-0", labels.clone());
    p["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": 8200}]);
    p["metadata"]["annotations"] = json!({
        "kubesim.drctl.dev/port-forward": format!("8200={bao_hostport}"),
        "kubesim.drctl.dev/ready-url": format!("http://{bao_hostport}/v1/sys/health"),
    });
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "vault", "namespace": "vault"},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 8200, "targetPort": 8200}]}});
    // Service ports that differ from the pod's: one by number, one by container port name.
    let ui = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "vault-ui", "namespace": "vault"},
        "spec": {"selector": labels, "ports": [
            {"name": "web", "port": 80, "targetPort": "http"},
            {"name": "alt", "port": 443, "targetPort": 8200}]}});
    KubeSim::start_with_scenario(&scenario("podReadyAfterMs: 100", &[p, svc, ui]))
}

fn connect_refused(address: &str) -> bool {
    matches!(
        std::net::TcpStream::connect(address),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[test]
fn port_forward_to_svc_and_pod_reaches_openbao_in_later_steps_and_closes_after_the_run() {
    let (bao, _init) = super::lab::OpenBao::start_unsealed();
    let hostport = bao.addr().trim_start_matches("http://").to_string();
    let sim = vault_behind_kubesim(&hostport);
    let dir = tempfile::tempdir().unwrap();
    let runbook = dir.path().join("vault-forward.yaml");
    std::fs::write(
        &runbook,
        r#"apiVersion: drctl/v1
kind: Runbook
name: vault-forward
title: Reach OpenBao through port-forwards
summary: Port-forward to the Vault service and pod, then use them in later steps.
steps:
  - id: ready
    title: Wait for the Vault pod to be Ready
    timeout: 30s
    kube.wait:
      resource: { kind: Pod, namespace: vault, name: vault-0 }
      for: { condition: Ready }
  - id: forward-svc
    title: Forward to the Vault service
    kube.port-forward: { namespace: vault, target: svc/vault, port: 8200 }
    outputs:
      - { name: svc_url, from: result.url }
      - { name: svc_pod, from: result.pod }
  - id: status
    title: Read the seal status through the service forward
    vault.status:
      addr: "{{ outputs.svc_url }}"
      expect: { initialized: true, sealed: false }
  - id: forward-pod
    title: Forward to the pod
    kube.port-forward: { namespace: vault, target: pod/vault-0, port: 8200 }
    outputs:
      - { name: pod_url, from: result.url }
  - id: health
    title: OpenBao's health through the pod forward
    http:
      url: "{{ outputs.pod_url }}/v1/sys/health"
      contains: '"sealed":false'
"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = drctl_cmd(&state)
        .args(["run", runbook.to_str().unwrap(), "--yes"])
        .arg("--state-dir")
        .arg(&state)
        .env_remove("VAULT_ADDR")
        .env_remove("BAO_ADDR")
        .envs(sim.env())
        .output()
        .unwrap();
    let stdout = stdout(&out);
    let stderr = stderr(&out);
    let all = format!("{stdout}{stderr}");
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // Both forwards went to the pod, through local ports that are not OpenBao's.
    let forwards: Vec<String> = all
        .lines()
        .filter_map(|l| l.split("forwarding ").nth(1))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert_eq!(forwards.len(), 2, "{all}");
    for (address, target) in forwards.iter().zip(["(svc/vault)", "(pod/vault-0)"]) {
        assert!(
            all.contains(&format!(
                "forwarding {address} -> vault/vault-0:8200 {target}"
            )),
            "{all}"
        );
        assert_ne!(address, &hostport);
        // The run is over: its forwards are closed.
        assert!(
            connect_refused(address),
            "{address} still accepts after the run"
        );
    }
    let j = std::fs::read_to_string(journal_path(&state, &only_run(&state))).unwrap();
    assert!(j.contains(&format!("http://{}", forwards[0])), "{j}");
    assert!(j.contains("\"svc_pod\""), "{j}");
    // kubesim served the tunnels (its log names each one).
    let log = std::fs::read_dir(sim.dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        log.contains("port-forward to pod vault/vault-0 opened"),
        "{log}"
    );
}

/// A raw HTTP GET through a forward on the backend's runtime (which drives the forward).
fn http_get(h: &H, address: &str, path: &str) -> String {
    h.harness.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(address).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: vault\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
            .await
            .expect("OpenBao answers through the forward in time")
            .unwrap();
        String::from_utf8_lossy(&raw).into_owned()
    })
}

#[test]
fn port_forward_action_in_process_result_errors_and_end() {
    let (bao, _init) = super::lab::OpenBao::start_unsealed();
    let hostport = bao.addr().trim_start_matches("http://").to_string();
    let sim = vault_behind_kubesim(&hostport);
    sim.kubectl_ok(&[
        "wait",
        "-n",
        "vault",
        "--for=condition=Ready",
        "pod/vault-0",
        "--timeout=20s",
    ]);
    let h = H::new(&sim);
    let r = h.ok(Action::KubePortForward(act(
        "namespace: vault\ntarget: pod/vault-0\nport: 8200",
    )));
    let v = r.value().clone();
    assert_eq!(v["pod"], "vault-0");
    let address = v["address"].as_str().unwrap().to_string();
    assert_eq!(v["url"], format!("http://{address}"));
    assert_eq!(
        v["port"].as_u64().unwrap().to_string(),
        address.rsplit(':').next().unwrap()
    );
    // The forward runs on the backend's runtime: drive it while asking OpenBao through it.
    let body = http_get(&h, &address, "/v1/sys/seal-status");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("\"sealed\":false"), "{body}");

    // A Service port reaches the pod at its targetPort, named or numbered (as kubectl).
    for svc_port in [80, 443] {
        let r = h.ok(Action::KubePortForward(act(&format!(
            "namespace: vault\ntarget: svc/vault-ui\nport: {svc_port}"
        ))));
        let address = r.value()["address"].as_str().unwrap().to_string();
        let body = http_get(&h, &address, "/v1/sys/health");
        assert!(body.starts_with("HTTP/1.1 200"), "port {svc_port}: {body}");
    }
    // A port the Service does not have is named with the ones it has.
    let e = h
        .run(
            Action::KubePortForward(act("namespace: vault\ntarget: svc/vault-ui\nport: 8200")),
            opts(),
        )
        .err();
    assert!(
        e.contains("has no port 8200") && e.contains("80, 443"),
        "{e}"
    );

    // A pod that does not exist, and a service that selects none.
    let e = h
        .run(
            Action::KubePortForward(act("namespace: vault\ntarget: pod/nope\nport: 8200")),
            opts(),
        )
        .err();
    assert!(e.contains("nope") && e.contains("not found"), "{e}");
    sim.kubectl_ok(&[
        "create",
        "service",
        "clusterip",
        "empty",
        "-n",
        "vault",
        "--tcp=8200:8200",
    ]);
    let e = h
        .run(
            Action::KubePortForward(act("namespace: vault\ntarget: svc/empty\nport: 8200")),
            opts(),
        )
        .err();
    assert!(e.contains("empty"), "{e}");

    // The run ends (the backend goes): the forward closes.
    drop(h);
    assert!(connect_refused(&address), "{address} still accepts");
}

/// A resumed run opens its port-forwards again: the earlier process's forward died with it,
/// and the steps after it must not use its dead address.
#[test]
fn a_resumed_run_opens_its_port_forward_again() {
    let (bao, _init) = super::lab::OpenBao::start_unsealed();
    let hostport = bao.addr().trim_start_matches("http://").to_string();
    let sim = vault_behind_kubesim(&hostport);
    let dir = tempfile::tempdir().expect("a temp dir");
    let runbook = dir.path().join("forward-resume.yaml");
    std::fs::write(
        &runbook,
        r#"apiVersion: drctl/v1
kind: Runbook
name: forward-resume
title: A forward across a resume
summary: The run stops at a manual step after the forward; the resume uses the forward.
steps:
  - id: ready
    title: Wait for the Vault pod to be Ready
    timeout: 30s
    kube.wait:
      resource: { kind: Pod, namespace: vault, name: vault-0 }
      for: { condition: Ready }
  - id: forward
    title: Forward to Vault
    kube.port-forward: { namespace: vault, target: svc/vault, port: 8200 }
    outputs:
      - { name: vault_url, from: result.url }
  - id: pause
    title: The operator does something by hand
    manual: { instructions: Nothing to do. }
  - id: status
    title: Read the seal status through the forward
    vault.status:
      addr: "{{ outputs.vault_url }}"
      expect: { initialized: true, sealed: false }
"#,
    )
    .expect("write the runbook");
    let state = dir.path().join("state");
    let drctl = |args: &[&str]| {
        drctl_cmd(&state)
            .args(args)
            .args(["--yes", "--output", "json"])
            .arg("--state-dir")
            .arg(&state)
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_ADDR")
            .envs(sim.env())
            .output()
            .expect("drctl runs")
    };
    let first = drctl(&["run", runbook.to_str().expect("utf-8 path")]);
    assert_eq!(first.status.code(), Some(4), "{}", stdout(&first));
    let evs = events(&stdout(&first));
    let run_id = run_id_of(&evs);
    let url_of = |evs: &[Value]| {
        evs.iter()
            .filter(|e| e["event"] == "step_output" && e["id"] == "forward")
            .filter_map(|e| e["line"].as_str())
            .find_map(|l| l.strip_prefix("forwarding "))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .expect("a forwarding line")
    };
    let old = url_of(&evs);
    assert!(connect_refused(&old), "{old} outlived its drctl process");

    let second = drctl(&[
        "resume",
        &run_id,
        "--confirm",
        "pause",
        "--runbook",
        runbook.to_str().expect("utf-8 path"),
    ]);
    let out = stdout(&second);
    assert_eq!(second.status.code(), Some(0), "{out}\n{}", stderr(&second));
    let evs = events(&out);
    assert!(
        evs.iter().any(|e| e["event"] == "notice"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("step `forward` opened something"))),
        "{out}"
    );
    let new = url_of(&evs);
    let status = evs
        .iter()
        .find(|e| e["event"] == "step_finished" && e["id"] == "status")
        .expect("the status step finished");
    assert_eq!(status["outcome"], "succeeded", "{out}");
    assert!(connect_refused(&new), "{new} outlived the run");
}

/// With no kubeconfig anywhere and not in a pod, drctl says it looked for the in-cluster
/// service account and what to set; a `--kubeconfig` that does not exist is named.
#[test]
fn no_kubeconfig_and_no_service_account_say_where_drctl_looked() {
    let dir = tempfile::tempdir().unwrap();
    let runbook = dir.path().join("kube-read.yaml");
    std::fs::write(
        &runbook,
        "apiVersion: drctl/v1\nkind: Runbook\nname: kube-read\ntitle: Read\nsummary: One read.\nsteps:\n  - id: pods\n    title: List pods\n    kube.get: { resource: { kind: Pod, namespace: default } }\n",
    )
    .unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let run = |extra: &[&str]| {
        let state = dir.path().join("state");
        let mut cmd = drctl_cmd(&state);
        cmd.args(["run", runbook.to_str().unwrap(), "--yes", "--state-dir"])
            .arg(&state)
            .args(extra)
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env("HOME", &home);
        let o = cmd.output().unwrap();
        (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
    };
    let (ok, all) = run(&[]);
    assert!(!ok, "{all}");
    assert!(
        all.contains("KUBECONFIG is not set, ~/.kube/config does not exist, and drctl is not running in a pod (no service account)")
            && all.contains("check KUBECONFIG, --kubeconfig and --context"),
        "{all}"
    );
    let missing = dir.path().join("nope.yaml");
    let (ok, all) = run(&["--new", "--kubeconfig", missing.to_str().unwrap()]);
    assert!(!ok, "{all}");
    assert!(
        all.contains(&format!("kubeconfig {}", missing.display())),
        "{all}"
    );
}
