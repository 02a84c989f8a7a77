//! Issue 15: Vault over TLS like production. OpenBao serves three certificates of a lab
//! CA side by side (valid; expired; issued for another name); drctl verifies them the way
//! the vault CLI does (VAULT_CACERT, VAULT_CAPATH, VAULT_SKIP_VERIFY), and every failure
//! stops at once (never retried) with an error that names what to set.

use std::process::Stdio;

use serde_json::Value;

use crate::lab::OpenBao;
use crate::support::cli::{both, code, drctl_cmd, events, stdout};
use crate::support::tls::{LAB_NAME, LabCa, Validity};

const RUNBOOK: &str = "apiVersion: drctl/v1\nkind: Runbook\nname: tls-status\ntitle: Vault over TLS\nsummary: Reads Vault's status.\nsteps:\n  - id: status\n    title: Vault status\n    vault.status: {}\n    retries: { attempts: 3, backoff: 1s }\n";

struct Seen {
    ok: bool,
    /// The step's error, or empty.
    error: String,
    retried: bool,
    printed: String,
}

/// `drctl run` of a one-step `vault.status` runbook with `env` on top of a clean
/// environment (no VAULT_* of the caller's).
fn status(env: &[(&str, String)]) -> Seen {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rb = tmp.path().join("tls-status.yaml");
    std::fs::write(&rb, RUNBOOK).expect("write runbook");
    let mut cmd = drctl_cmd(&tmp.path().join("state"));
    for v in [
        "VAULT_ADDR",
        "BAO_ADDR",
        "VAULT_CACERT",
        "BAO_CACERT",
        "VAULT_CAPATH",
        "BAO_CAPATH",
        "VAULT_SKIP_VERIFY",
        "BAO_SKIP_VERIFY",
    ] {
        cmd.env_remove(v);
    }
    let o = cmd
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args([
            "run",
            &rb.display().to_string(),
            "--yes",
            "--output",
            "json",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("drctl runs");
    let evs = events(&stdout(&o));
    let finished: Option<&Value> = evs
        .iter()
        .find(|e| e["event"] == "step_finished" && e["id"] == "status");
    Seen {
        ok: code(&o) == 0 && finished.is_some_and(|f| f["outcome"] == "succeeded"),
        error: finished
            .and_then(|f| f["error"].as_str())
            .unwrap_or_default()
            .to_owned(),
        retried: evs.iter().any(|e| e["event"] == "step_retry"),
        printed: both(&o),
    }
}

#[test]
fn vault_over_tls_is_verified_like_the_vault_cli_and_failures_say_what_to_set() {
    let ca = LabCa::new("drctl lab CA");
    let other = LabCa::new("a CA nobody trusts");
    let good = ca.server("good", &[LAB_NAME, "127.0.0.1"], Validity::Current);
    let expired = ca.server("expired", &[LAB_NAME, "127.0.0.1"], Validity::Expired);
    let elsewhere = ca.server("elsewhere", &["elsewhere.lab.test"], Validity::Current);
    let (bao, _init) = OpenBao::start_unsealed_with_tls(&[good, expired, elsewhere]);
    let ports = bao.tls_ports();
    let url = |i: usize| format!("https://127.0.0.1:{}", ports[i]);
    let pem = ca.pem().display().to_string();

    // Trusted through VAULT_CACERT, BAO_CACERT, and VAULT_CAPATH.
    for (var, value) in [
        ("VAULT_CACERT", pem.clone()),
        ("BAO_CACERT", pem.clone()),
        ("VAULT_CAPATH", ca.dir().display().to_string()),
    ] {
        let s = status(&[("VAULT_ADDR", url(0)), (var, value)]);
        assert!(s.ok, "{var}: {}", s.printed);
    }

    // Failures: each names its cause and what to set, and is not retried.
    let cases = [
        ("no CA given", vec![("VAULT_ADDR", url(0))], "VAULT_CACERT"),
        (
            "another CA",
            vec![
                ("VAULT_ADDR", url(0)),
                ("VAULT_CACERT", other.pem().display().to_string()),
            ],
            "VAULT_CACERT",
        ),
        (
            "expired certificate",
            vec![("VAULT_ADDR", url(1)), ("VAULT_CACERT", pem.clone())],
            "validity period",
        ),
        (
            "certificate for another name",
            vec![("VAULT_ADDR", url(2)), ("VAULT_CACERT", pem.clone())],
            "not valid for the host name",
        ),
    ];
    for (what, env, want) in cases {
        let s = status(&env);
        assert!(!s.ok, "{what}: {}", s.printed);
        assert!(
            s.error
                .contains("cannot verify the TLS certificate of Vault")
                && s.error.contains(want)
                && s.error.contains("VAULT_SKIP_VERIFY"),
            "{what}: {}",
            s.printed
        );
        assert!(
            !s.retried,
            "{what}: a certificate is not retried: {}",
            s.printed
        );
    }

    // VAULT_SKIP_VERIFY: works without a CA, and says verification is off.
    let s = status(&[
        ("VAULT_ADDR", url(0)),
        ("VAULT_SKIP_VERIFY", "true".to_owned()),
    ]);
    assert!(s.ok, "{}", s.printed);
    assert!(
        s.printed
            .contains("TLS certificate verification is OFF (VAULT_SKIP_VERIFY)"),
        "{}",
        s.printed
    );
}
