//! The Kubernetes backend against the real control plane of the lab (`RealKube`:
//! kube-apiserver over TLS with RBAC, the real controllers, kwok nodes, upstream CRDs), with
//! the identities an operator's kubeconfig may carry. Checked with kubectl against the API
//! server, never with drctl's word. (Issue 11, first slice; the kubesim tests beside it remain
//! the fast tier with fault injection.)

use std::time::Duration;

use serde_json::json;

use super::{H, get, wait};
use crate::lab::Cluster;
use crate::lab::RealKube;
use crate::support::base64;
use crate::support::harness::Opts;
use crate::support::kube::kget;
use drctl::runbook::Action;

fn act<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    super::act(yaml)
}

fn h(k: &RealKube, kubeconfig_var: &str) -> H {
    H::with_kubeconfig(k.var(kubeconfig_var))
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
            ..super::opts()
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
            ..super::opts()
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
    assert!(
        !r.visible_with_value().contains("c2hhcmUtb25l"),
        "{}",
        r.visible_with_value()
    );
    // The same step with the admin identity creates it.
    h(&k, "K8S_ADMIN_KUBECONFIG")
        .run(
            secret(),
            Opts {
                inputs: inputs(),
                ..super::opts()
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
        .run(get("resource: { kind: Namespace }"), super::opts())
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
        .run(get("resource: { kind: Namespace }"), super::opts())
        .err();
    assert!(
        e.contains("cannot verify the TLS certificate") && e.contains("does not name"),
        "{e}"
    );
}

/// admin.conf with a client certificate signed by the cluster's CA for `system:masters` that
/// expired yesterday (minted with Python's cryptography, which moto brings).
fn expired_client_kubeconfig(k: &RealKube) -> String {
    let out = k.state_dir().join("expired.conf");
    let script = r#"
import base64, datetime, re, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
pki, src, dst = sys.argv[1:4]
ca_cert = x509.load_pem_x509_certificate(open(f"{pki}/ca.crt", "rb").read())
ca_key = serialization.load_pem_private_key(open(f"{pki}/ca.key", "rb").read(), None)
key = ec.generate_private_key(ec.SECP256R1())
now = datetime.datetime.now(datetime.timezone.utc)
name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                  x509.NameAttribute(NameOID.COMMON_NAME, "expired-admin")])
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256()))
b64 = lambda b: base64.b64encode(b).decode()
cert_b64 = b64(cert.public_bytes(serialization.Encoding.PEM))
key_b64 = b64(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()))
text = open(src).read()
text = re.sub(r"client-certificate-data: \S+", "client-certificate-data: " + cert_b64, text)
text = re.sub(r"client-key-data: \S+", "client-key-data: " + key_b64, text)
open(dst, "w").write(text)
"#;
    let o = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(k.state_dir().join("pki"))
        .arg(k.kubeconfig_path())
        .arg(&out)
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "minting an expired certificate: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out.display().to_string()
}

#[test]
fn an_expired_client_certificate_says_to_log_in_again_and_is_not_retried() {
    let k = RealKube::start();
    let expired = expired_client_kubeconfig(&k);
    let r = H::with_kubeconfig(expired).run(get("resource: { kind: Namespace }"), super::opts());
    let e = r.err();
    assert!(
        e.contains("rejected the credentials") && e.contains("401"),
        "{e}"
    );
    assert!(
        e.contains("log in again or fetch a fresh kubeconfig"),
        "{e}"
    );
    assert!(!r.events.contains("trying again"), "{}", r.events);
    // Nothing was listed.
    assert!(
        !r.events.contains("kube-system"),
        "nothing was listed with an expired certificate: {}",
        r.events
    );
}

fn base64_of(text: &str) -> String {
    base64::encode(text.as_bytes())
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
            ..super::opts()
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
}

// The backend's test bodies shared with kubesim (backend_kube.rs, `*_on`): the same
// assertions against the real API server, its admission, its controllers and kwok's kubelets.

#[test]
fn namespace_is_created_once_and_previewed() {
    super::namespace_is_created_once_and_previewed_on(&RealKube::start());
}

#[test]
fn secret_create_or_replace_is_idempotent_and_never_shows_values() {
    super::secret_create_or_replace_is_idempotent_and_never_shows_values_on(&RealKube::start());
}

#[test]
fn rollout_restart_and_status_for_deployments_statefulsets_daemonsets() {
    super::rollout_restart_and_status_for_deployments_statefulsets_daemonsets_on(&RealKube::start());
}

#[test]
fn delete_waits_until_gone_and_a_statefulset_pod_comes_back() {
    super::delete_waits_until_gone_and_a_statefulset_pod_comes_back_on(&RealKube::start());
}

#[test]
fn patch_and_apply_preview_against_the_live_object_then_change_it() {
    super::patch_and_apply_preview_against_the_live_object_then_change_it_on(&RealKube::start());
}
