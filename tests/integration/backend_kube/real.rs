//! The Kubernetes backend against the real control plane of the lab (`RealKube`:
//! kube-apiserver over TLS with RBAC, the real controllers, kwok nodes, upstream CRDs), with
//! the identities an operator's kubeconfig may carry. Checked with kubectl against the API
//! server, never with drctl's word. (Issue 11, first slice; the kubesim tests beside it remain
//! the fast tier with fault injection.)

use std::time::Duration;

use serde_json::{Value, json};

use super::{H, Opts, get, wait};
use crate::lab::RealKube;
use drctl::runbook::Action;

fn act<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    super::act(yaml)
}

fn h(k: &RealKube, kubeconfig_var: &str) -> H {
    H::with_kubeconfig(k.var(kubeconfig_var))
}

fn kget(k: &RealKube, args: &[&str]) -> Option<Value> {
    let o = k
        .kubectl()
        .arg("get")
        .args(args)
        .args(["-o", "json"])
        .output()
        .expect("kubectl get");
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).expect("kubectl json"))
}

#[test]
fn every_kind_of_credential_connects_over_tls() {
    let k = RealKube::start();
    // kubeadm's admin.conf (RSA client certificate), k3s's (EC P-256 client certificate), a
    // ServiceAccount token bound to a read-only role, an exec credential plugin.
    for var in [
        "K8S_ADMIN_KUBECONFIG",
        "K8S_K3S_KUBECONFIG",
        "K8S_READONLY_KUBECONFIG",
        "K8S_EXEC_KUBECONFIG",
    ] {
        let r = h(&k, var).ok(get("resource: { kind: Namespace }"));
        let names = r.value().to_string();
        assert!(
            names.contains("kube-system") && names.contains("default"),
            "{var}: {names}"
        );
    }
}

#[test]
fn a_read_only_identity_rehearses_and_a_mutation_names_what_rbac_refused() {
    let k = RealKube::start();
    k.kubectl_ok(&["create", "namespace", "vault"]);
    let ro = h(&k, "K8S_READONLY_KUBECONFIG");
    let secret = || {
        Action::KubeSecret(act(
            "name: vault-unseal-key\nnamespace: vault\nliterals: { key: '{{ inputs.k }}' }",
        ))
    };
    let inputs = || vec![("k", "c2hhcmUtb25l".to_owned(), true)];
    // The rehearsal reads (is there a Secret already?) and changes nothing.
    let r = ro.run(
        secret(),
        Opts {
            dry_run: true,
            inputs: inputs(),
            ..Default::default()
        },
    );
    assert!(
        r.lines()
            .contains("would create secret vault/vault-unseal-key"),
        "{}",
        r.lines()
    );
    let r = ro.run(
        secret(),
        Opts {
            inputs: inputs(),
            ..Default::default()
        },
    );
    let e = r.err();
    // The API server's own words: verb, resource, namespace and the identity refused.
    assert!(e.starts_with("forbidden: "), "{e}");
    for part in [
        "cannot create resource \"secrets\"",
        "in the namespace \"vault\"",
        "system:serviceaccount:",
        "kubectl auth can-i",
    ] {
        assert!(e.contains(part), "missing {part:?} in: {e}");
    }
    // Nothing written; the value never shown.
    assert!(kget(&k, &["secret", "-n", "vault", "vault-unseal-key"]).is_none());
    assert!(!r.visible().contains("c2hhcmUtb25l"), "{}", r.visible());
    // The same step with the admin identity creates it.
    h(&k, "K8S_ADMIN_KUBECONFIG")
        .run(
            secret(),
            Opts {
                inputs: inputs(),
                ..Default::default()
            },
        )
        .ok();
    let s = kget(&k, &["secret", "-n", "vault", "vault-unseal-key"]).expect("created");
    assert_eq!(s["data"]["key"], json!("YzJoaGNtVXRiMjVs"));
}

/// A copy of admin.conf with `edit` applied to its YAML text.
fn kubeconfig_variant(k: &RealKube, name: &str, edit: impl FnOnce(String) -> String) -> String {
    let text = std::fs::read_to_string(k.kubeconfig_path()).expect("admin.conf");
    let path = k.state_dir().join(name);
    std::fs::write(&path, edit(text)).expect("write kubeconfig");
    path.display().to_string()
}

#[test]
fn tls_failures_are_named_and_never_fall_back_to_insecure() {
    let k = RealKube::start();
    let ca = std::fs::read_to_string(k.var("K8S_CA_FILE")).expect("ca.crt");
    let ca_b64 = base64_of(&ca);
    let front_proxy = std::fs::read_to_string(k.state_dir().join("pki/front-proxy-ca.crt"))
        .expect("another CA of the lab (front-proxy-ca.crt)");
    // A CA that did not sign the server's certificate.
    let wrong_ca = kubeconfig_variant(&k, "wrong-ca.conf", |t| {
        t.replace(&ca_b64, &base64_of(&front_proxy))
    });
    assert_ne!(
        std::fs::read_to_string(&wrong_ca).unwrap(),
        std::fs::read_to_string(k.kubeconfig_path()).unwrap(),
        "the CA was replaced"
    );
    let e = H::with_kubeconfig(wrong_ca)
        .run(get("resource: { kind: Namespace }"), Opts::default())
        .err();
    assert!(
        e.contains("cannot verify the TLS certificate") && e.contains("did not sign"),
        "{e}"
    );
    assert!(
        !e.contains("rejected the credentials"),
        "a TLS failure is not a credential failure: {e}"
    );
    // A server name its certificate does not carry (tls-server-name, as for a load balancer
    // in front of the API server whose name is missing from the certificate).
    let url = k.url();
    let mismatch = kubeconfig_variant(&k, "mismatch.conf", |t| {
        t.replace(
            &format!("server: {url}"),
            &format!("server: {url}\n    tls-server-name: api.elsewhere.lab"),
        )
    });
    assert!(
        std::fs::read_to_string(&mismatch)
            .unwrap()
            .contains("tls-server-name: api.elsewhere.lab"),
        "the kubeconfig names another server"
    );
    let e = H::with_kubeconfig(mismatch)
        .run(get("resource: { kind: Namespace }"), Opts::default())
        .err();
    assert!(
        e.contains("cannot verify the TLS certificate") && e.contains("does not name"),
        "{e}"
    );
}

fn base64_of(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("base64");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let o = child.wait_with_output().expect("base64");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn waits_for_a_deployment_scheduled_on_kwok_nodes_by_the_real_controllers() {
    let k = RealKube::start();
    k.kubectl_ok(&["create", "namespace", "security"]);
    k.kubectl_ok(&[
        "create",
        "deployment",
        "external-secrets",
        "-n",
        "security",
        "--image=ghcr.io/external-secrets/external-secrets:v0.16.2",
        "--replicas=2",
    ]);
    let admin = h(&k, "K8S_ADMIN_KUBECONFIG");
    let r = admin.run(
        wait("resource: { kind: Pod, namespace: security, selector: app=external-secrets }\nfor: { condition: Ready }"),
        Opts {
            timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        },
    );
    assert_eq!(r.value()["count"], 2, "{}", r.events);
    // The real scheduler bound them to kwok nodes; the ReplicaSet controller made them.
    let pods = kget(&k, &["pods", "-n", "security"]).expect("pods");
    for p in pods["items"].as_array().expect("items") {
        assert!(
            p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty()),
            "{p}"
        );
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet",
            "{p}"
        );
    }
    // A rollout restart goes through the real Deployment controller to new pods.
    let before: Vec<String> = pod_names(&k, "security");
    admin
        .run(
            Action::KubeRolloutRestart(act(
                "kind: deployment\nnamespace: security\nnames: [external-secrets]",
            )),
            Opts {
                timeout: Some(Duration::from_secs(120)),
                ..Default::default()
            },
        )
        .ok();
    let r = admin.run(
        Action::KubeRolloutStatus(act(
            "kind: deployment\nnamespace: security\nnames: [external-secrets]",
        )),
        Opts {
            timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        },
    );
    r.ok();
    let d = kget(&k, &["deployment", "-n", "security", "external-secrets"]).expect("deployment");
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{d}"
    );
    assert_eq!(d["status"]["updatedReplicas"], 2, "{d}");
    let after = pod_names(&k, "security");
    assert!(
        !after.iter().any(|p| before.contains(p)) || after.len() > 2,
        "new pods after the restart: before {before:?}, after {after:?}"
    );
}

fn pod_names(k: &RealKube, ns: &str) -> Vec<String> {
    k.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        ns,
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}
