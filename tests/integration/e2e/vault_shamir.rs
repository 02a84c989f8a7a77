//! End-to-end runs of the runbooks for the second seed's Shamir-sealed Vault on k3s:
//! `vault-unseal-rotation`, `vault-stuck-sealed` and `power-failure-recovery`.
//!
//! The lab: a real OpenBao initialised as the seed's homelab is (one key share, threshold
//! one) and kubesim with the `security` namespace (tests/fixtures/e2e/vault-shamir/
//! cluster.yaml): the StatefulSet `vault` whose pod `vault-0` port-forwards 8200 to the real
//! OpenBao and is Ready exactly while OpenBao answers its health check (initialised,
//! unsealed, active), the Service `vault`, the unseal key in the Secret `vault-unseal-key`,
//! the `vault-auto-unseal` and `eso-recovery` CronJobs, the Longhorn PVC, ESO with its
//! ClusterSecretStore and ExternalSecrets, Argo CD Applications. drctl gets no Vault address:
//! every Vault step goes through the runbook's own port-forward (VAULT_ADDR points at a
//! closed port to prove it). The cluster's self-healing after a reboot (the two CronJobs,
//! Longhorn reattaching the volume) is [`SelfHealing`], a thread doing what they do.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::lab::{BaoInit, KubeSim, OpenBao, http, wait_until};
use crate::support::base64;
use crate::support::cli::root;
use crate::support::crash::{Recovery, Remedy};
use crate::support::drive::{Drive, Outcome};
use crate::support::secrets::assert_not_written;
use crate::support::worker::Worker;

const NS: &str = "security";
/// Generous: the machine is shared.
const SETTLE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------

/// How the cluster looks when the runbook starts.
struct Setup {
    /// The key the `vault-unseal-key` Secret holds: None = the right one.
    secret_key: Option<String>,
    /// The newest `vault-auto-unseal` Job's log.
    unseal_log: &'static str,
    /// The ClusterSecretStore `k8s-secrets` stays degraded until ESO is restarted (as after
    /// a reboot: ESO backed off while Vault was sealed).
    store_degraded: bool,
    /// Extra top-level scenario settings (YAML lines).
    extra: &'static str,
    /// OpenBao restarted (sealed) before the cluster starts: a reboot.
    sealed: bool,
    /// Vault's PVC is Bound (else Pending: Longhorn has not reattached it yet).
    pvc_bound: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            secret_key: None,
            unseal_log: "vault-0 is unsealed, nothing to do\\n",
            store_degraded: false,
            extra: "",
            sealed: false,
            pvc_bound: true,
        }
    }
}

struct Lab {
    bao: OpenBao,
    init: BaoInit,
    sim: KubeSim,
}

impl Lab {
    /// An OpenBao initialised like the seed's (1 share, threshold 1), unsealed and active,
    /// and kubesim with the cluster of `cluster.yaml`.
    fn start(setup: &Setup) -> Lab {
        let mut bao = OpenBao::start();
        let init = bao.init(1, 1);
        bao.unseal(&init.keys);
        if setup.sealed {
            bao.restart();
            assert!(bao.seal_status().sealed, "OpenBao restarted sealed");
        }
        let key = setup.secret_key.clone().unwrap_or(init.keys[0].clone());
        let template =
            std::fs::read_to_string(root().join("tests/fixtures/e2e/vault-shamir/cluster.yaml"))
                .expect("the vault-shamir cluster fixture");
        let degraded = if setup.store_degraded {
            "secretStoresDegraded: [k8s-secrets]\n"
        } else {
            "secretStoresDegraded: []\n"
        };
        let scenario = format!(
            "{degraded}{}\n{}",
            setup.extra,
            template
                .replace("@BAO_PORT@", &bao.port().to_string())
                .replace("@UNSEAL_KEY_B64@", &base64::encode(key.as_bytes()))
                .replace("@UNSEAL_LOG@", setup.unseal_log)
                .replace(
                    "@PVC_PHASE@",
                    if setup.pvc_bound { "Bound" } else { "Pending" }
                )
        );
        let sim = KubeSim::start_with_scenario(&scenario);
        Lab { bao, init, sim }
    }

    fn key(&self) -> &str {
        &self.init.keys[0]
    }

    fn root_token(&self) -> &str {
        &self.init.root_token
    }

    /// A drive of `runbook` against this lab: the kubeconfig, and a Vault address that
    /// answers nothing (the runbooks reach Vault through their port-forward).
    fn drive(&self, runbook: &str) -> Drive {
        Drive::new(runbook)
            .envs(self.sim.env())
            .env("VAULT_ADDR", "http://127.0.0.1:9")
            .env("BAO_ADDR", "http://127.0.0.1:9")
    }

    /// Restarts OpenBao (a reboot): a Shamir-sealed server comes back sealed.
    fn reboot_vault(&mut self) {
        self.bao.restart();
        assert!(self.bao.seal_status().sealed, "OpenBao restarted sealed");
    }

    fn kubectl_out(&self, args: &[&str]) -> String {
        self.sim.kubectl_ok(args)
    }

    /// The `key` of the `vault-unseal-key` Secret, as kubectl reads it.
    fn secret_key(&self) -> String {
        let b64 = self.kubectl_out(&[
            "get",
            "secret",
            "vault-unseal-key",
            "-n",
            NS,
            "-o",
            "jsonpath={.data.key}",
        ]);
        String::from_utf8(base64::decode(b64.trim())).expect("the unseal key is text")
    }

    /// vault-0's Ready condition, as kubectl reads it.
    fn vault_pod_ready(&self) -> bool {
        self.kubectl_out(&[
            "get",
            "pod",
            "vault-0",
            "-n",
            NS,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ])
        .trim()
            == "True"
    }

    fn wait_vault_pod_ready(&self, ready: bool) {
        assert!(
            wait_until(SETTLE, || self.vault_pod_ready() == ready),
            "vault-0 Ready={} within {SETTLE:?} (OpenBao: {:?})",
            ready,
            self.bao.seal_status()
        );
    }

    /// Waits until vault-0 runs (the cluster has settled; sealed or not).
    fn wait_vault_pod_running(&self) {
        assert!(
            wait_until(SETTLE, || self
                .kubectl_out(&[
                    "get",
                    "pod",
                    "vault-0",
                    "-n",
                    NS,
                    "-o",
                    "jsonpath={.status.phase}"
                ])
                .trim()
                == "Running"),
            "vault-0 Running within {SETTLE:?}"
        );
    }

    /// Every object of `kind` (all namespaces) as kubectl prints it: name and the fields.
    fn kubectl_jsonpath_all(&self, kind: &str, range: &str) -> Vec<String> {
        self.kubectl_out(&["get", kind, "-A", "-o", &format!("jsonpath={range}")])
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The lab's word that the cluster is healthy after Vault came back: OpenBao unsealed,
    /// vault-0 Ready, the ClusterSecretStore and every ExternalSecret Ready with their
    /// target Secrets written, every Application Synced and Healthy.
    fn assert_cluster_healthy(&self) {
        assert!(!self.bao.seal_status().sealed, "OpenBao is unsealed");
        self.wait_vault_pod_ready(true);
        let store = self.kubectl_out(&[
            "get",
            "clustersecretstore",
            "k8s-secrets",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        assert_eq!(store.trim(), "True", "ClusterSecretStore k8s-secrets Ready");
        let es = self.kubectl_jsonpath_all(
            "externalsecrets",
            r#"{range .items[*]}{.metadata.namespace}/{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
        );
        assert_eq!(es.len(), 2, "{es:?}");
        for l in &es {
            assert!(l.ends_with(" True"), "ExternalSecret not Ready: {l}");
        }
        for (ns, name) in [("nextcloud", "nextcloud-db"), ("immich", "immich-db")] {
            self.kubectl_out(&["get", "secret", name, "-n", ns]);
        }
        let apps = self.kubectl_jsonpath_all(
            "applications",
            r#"{range .items[*]}{.metadata.name} {.status.sync.status} {.status.health.status}{"\n"}{end}"#,
        );
        assert_eq!(apps.len(), 3, "{apps:?}");
        for l in &apps {
            assert!(l.ends_with(" Synced Healthy"), "Application: {l}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The cluster's self-healing after a reboot
// ---------------------------------------------------------------------------------------

/// What the seed's cluster does by itself after a reboot, on a shortened clock: Longhorn
/// binds Vault's PVC, the `vault-auto-unseal` CronJob unseals Vault with the key from the
/// `vault-unseal-key` Secret (a wrong key is refused by OpenBao, as in the real CronJob),
/// and the `eso-recovery` CronJob restarts ESO once vault-0 is Ready and the
/// ClusterSecretStore is degraded. A thread talking to kubesim's API and to OpenBao.
struct SelfHealing {
    _loop: Worker,
}

struct HealingPlan {
    /// When Longhorn binds the PVC (None: never touched).
    bind_pvc_after: Option<Duration>,
    /// When the auto-unseal CronJob starts running (None: never runs).
    unseal_after: Option<Duration>,
    /// Whether the eso-recovery CronJob runs.
    eso_recovery: bool,
}

impl SelfHealing {
    fn start(lab: &Lab, plan: HealingPlan) -> SelfHealing {
        let k8s = lab.sim.url().to_owned();
        let bao = lab.bao.addr();
        let t0 = Instant::now();
        let mut bound = false;
        let _loop = Worker::spawn(Duration::from_millis(250), move || {
            let now = t0.elapsed();
            if !bound && plan.bind_pvc_after.is_some_and(|d| now >= d) {
                bound = k8s_patch(
                    &k8s,
                    &format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/vault-data-lh/status"),
                    &json!({"status": {"phase": "Bound"}}),
                );
            }
            if plan.unseal_after.is_some_and(|d| now >= d) {
                auto_unseal(&k8s, &bao);
            }
            if plan.eso_recovery {
                eso_recovery(&k8s);
            }
            true
        });
        SelfHealing { _loop }
    }
}

fn k8s_get(base: &str, path: &str) -> Option<Value> {
    let r = http("GET", &format!("{base}{path}"), &[], b"").ok()?;
    (r.status == 200).then(|| r.json())
}

fn k8s_patch(base: &str, path: &str, patch: &Value) -> bool {
    http(
        "PATCH",
        &format!("{base}{path}"),
        &[("Content-Type", "application/merge-patch+json")],
        patch.to_string().as_bytes(),
    )
    .is_ok_and(|r| r.status == 200)
}

fn ready_condition(v: &Value) -> bool {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// One run of the `vault-auto-unseal` CronJob: when Vault is sealed, read the key from the
/// Secret and submit it.
fn auto_unseal(k8s: &str, bao: &str) {
    let Ok(r) = http("GET", &format!("{bao}/v1/sys/seal-status"), &[], b"") else {
        return;
    };
    if r.json()["sealed"] != true {
        return;
    }
    let Some(secret) = k8s_get(
        k8s,
        &format!("/api/v1/namespaces/{NS}/secrets/vault-unseal-key"),
    ) else {
        return;
    };
    let Some(key) = secret["data"]["key"].as_str() else {
        return;
    };
    let key = String::from_utf8(base64::decode(key)).unwrap_or_default();
    let _ = http(
        "PUT",
        &format!("{bao}/v1/sys/unseal"),
        &[("Content-Type", "application/json")],
        json!({ "key": key }).to_string().as_bytes(),
    );
}

/// One run of the `eso-recovery` CronJob: Vault ready + ClusterSecretStore degraded →
/// restart ESO (the rollout-restart annotation).
fn eso_recovery(k8s: &str) {
    let vault_ready = k8s_get(k8s, &format!("/api/v1/namespaces/{NS}/pods/vault-0"))
        .is_some_and(|p| ready_condition(&p));
    let store_ready = k8s_get(
        k8s,
        "/apis/external-secrets.io/v1/clustersecretstores/k8s-secrets",
    )
    .is_some_and(|s| ready_condition(&s));
    if vault_ready && !store_ready {
        let at = format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default()
        );
        k8s_patch(
            k8s,
            &format!("/apis/apps/v1/namespaces/{NS}/deployments/external-secrets"),
            &json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": at}}}}}),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Secrets never in drctl's output or state
// ---------------------------------------------------------------------------------------

/// None of `secrets` (in any of the forms a key is written: base64 or hex) appears in the
/// outcomes' events and stderr, nor anywhere in the drive's state directory.
fn assert_no_secrets(drive: &Drive, outcomes: &[&Outcome], secrets: &[&str]) {
    let mut forms: Vec<String> = Vec::new();
    for s in secrets {
        forms.push((*s).to_owned());
        forms.extend(b64_to_hex(s));
    }
    for f in &forms {
        assert!(f.len() >= 8, "a secret of fewer than 8 characters");
    }
    let forms: Vec<&str> = forms.iter().map(String::as_str).collect();
    assert_not_written(drive.state(), outcomes, &forms);
}

/// The hex form of a base64 key share (OpenBao gives both), when `s` is base64.
fn b64_to_hex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(4) || !s.bytes().all(|b| base64::is_base64_char(b) || b == b'=') {
        return None;
    }
    Some(
        base64::decode(s)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

#[test]
fn base64_round_trips() {
    for s in ["", "a", "ab", "abc", "abcd", "hvs.CAESI-key+/="] {
        assert_eq!(base64::decode(&base64::encode(s.as_bytes())), s.as_bytes());
    }
    assert_eq!(base64::encode(b"key"), "a2V5");
    assert_eq!(b64_to_hex("a2V5").as_deref(), Some("6b6579"));
}

// ---------------------------------------------------------------------------------------
// vault-unseal-rotation
// ---------------------------------------------------------------------------------------

fn rotation_drive(lab: &Lab) -> Drive {
    lab.drive("vault-unseal-rotation")
        .env("DRCTL_INPUT_CURRENT_UNSEAL_KEY", lab.key())
        .env("DRCTL_INPUT_ROOT_TOKEN", lab.root_token())
        // `confirm: always`: the operator has written down nothing yet, but says go.
        .confirm("rekey")
        .confirm("update-offline-backup")
}

/// Declares OpenBao's file audit device (OpenBao refuses to enable one through the API)
/// and restarts and unseals it: every request path is logged from then on (values HMAC'd).
fn enable_audit(lab: &mut Lab) -> std::path::PathBuf {
    let path = lab.bao.dir().join("audit.log");
    let mut cfg = std::fs::read_to_string(lab.bao.config_path()).expect("read config.hcl");
    cfg.push_str(&format!(
        "audit \"file\" \"lab\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
        path.display()
    ));
    std::fs::write(lab.bao.config_path(), cfg).expect("write config.hcl");
    lab.bao.restart();
    lab.bao.unseal(&lab.init.keys);
    path
}

/// The rekey API OpenBao saw used, from its audit log: `sys/rekey` (Vault's
/// unauthenticated API) or `sys/rotate/root` (OpenBao's authenticated one).
fn rekey_api_used(audit: &std::path::Path) -> Vec<&'static str> {
    let text = std::fs::read_to_string(audit).expect("read OpenBao's audit log");
    ["sys/rekey/verify", "sys/rotate/root/verify"]
        .into_iter()
        .filter(|p| {
            text.lines().any(|l| {
                serde_json::from_str::<Value>(l)
                    .is_ok_and(|v| v["type"] == "response" && v["request"]["path"] == *p)
            })
        })
        .map(|p| p.trim_end_matches("/verify"))
        .collect()
}

#[test]
fn vault_unseal_rotation_rehearsal_is_clean_when_unsealed_and_names_a_sealed_vault() {
    let mut lab = Lab::start(&Setup::default());
    lab.wait_vault_pod_ready(true);
    let d = rotation_drive(&lab);
    let r = d.rehearse();
    r.assert_clean_rehearsal("rehearsal on an unsealed Vault");
    assert_eq!(r.outcome_of("check-unsealed").as_deref(), Some("succeeded"));
    assert_eq!(lab.secret_key(), lab.key(), "a rehearsal changes no Secret");

    // Vault sealed (restarted): the status step names it. (The prerequisite `vault-unsealed`
    // should too, but drctl does not run prerequisite checks: reported.)
    lab.reboot_vault();
    lab.wait_vault_pod_ready(false);
    let b = rotation_drive(&lab).rehearse();
    b.assert_problem(
        "check-unsealed: Vault at http://127.0.0.1:",
        "rehearsal on a sealed Vault",
    );
    b.assert_problem(
        "expected sealed false, it is true",
        "rehearsal on a sealed Vault",
    );
    // The old key still unseals: neither rehearsal rekeyed anything.
    lab.bao.unseal(&lab.init.keys);
    assert_no_secrets(&d, &[&r, &b], &[lab.key(), lab.root_token()]);
}

/// After a rotation: the Secret holds a new key; restarted, Vault comes back sealed, the
/// old key is refused and the Secret's unseals. Returns the new key.
fn assert_only_the_new_key_unseals(lab: &mut Lab) -> String {
    let new_key = lab.secret_key();
    assert_ne!(new_key, lab.key(), "the Secret holds a new key");
    lab.reboot_vault();
    assert!(
        lab.bao.unseal_key(lab.key()).is_err(),
        "the old key no longer unseals"
    );
    assert!(lab.bao.seal_status().sealed);
    lab.bao.unseal(&[new_key.as_str()]);
    lab.wait_vault_pod_ready(true);
    new_key
}

#[test]
fn vault_unseal_rotation_runs_to_the_end_and_only_the_new_key_unseals() {
    let mut lab = Lab::start(&Setup::default());
    let audit = enable_audit(&mut lab);
    lab.wait_vault_pod_ready(true);
    let d = rotation_drive(&lab);
    let out = d.run();
    out.assert_ok("full run");
    // The lab's unauthenticated sys/rekey endpoints are enabled: drctl used them.
    assert_eq!(rekey_api_used(&audit), ["sys/rekey"]);
    let new_key = assert_only_the_new_key_unseals(&mut lab);
    assert_no_secrets(&d, &[&out], &[lab.key(), &new_key, lab.root_token()]);
}

// ---------------------------------------------------------------------------------------
// vault-stuck-sealed
// ---------------------------------------------------------------------------------------

/// A key share OpenBao will refuse (32 bytes, the size of a one-share key).
const WRONG_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// The newest auto-unseal Job's log when the Secret holds a wrong key (the CronJob's `bao
/// operator unseal` output).
const LOG_WRONG_KEY: &str = "vault-0 is sealed, unsealing with the key from vault-unseal-key\\nError unsealing: Error making API request.\\n\\nURL: PUT http://vault.security:8200/v1/sys/unseal\\nCode: 400. Errors:\\n\\n* cipher: message authentication failed\\n";

/// ... when the CronJob ran before Vault's volume was attached.
const LOG_NOT_UP: &str = "Error checking seal status: Get \\\"http://vault.security:8200/v1/sys/seal-status\\\": dial tcp 10.43.0.20:8200: connect: connection refused\\n";

fn stuck_drive(lab: &Lab) -> Drive {
    lab.drive("vault-stuck-sealed")
        .env("DRCTL_INPUT_UNSEAL_KEY", lab.key())
}

#[test]
fn vault_stuck_sealed_rehearsal_is_clean_on_a_sealed_vault_and_names_a_missing_key_secret() {
    let lab = Lab::start(&Setup {
        sealed: true,
        unseal_log: LOG_NOT_UP,
        store_degraded: true,
        ..Setup::default()
    });
    lab.wait_vault_pod_running();
    lab.wait_vault_pod_ready(false);
    let d = stuck_drive(&lab);
    let r = d.rehearse();
    r.assert_clean_rehearsal("rehearsal on a Vault stuck sealed");
    assert!(
        r.output_of("cronjob-logs").contains("connection refused"),
        "the CronJob's log is shown:\n{}",
        r.dump()
    );
    assert_eq!(r.outcome_of("vault-status").as_deref(), Some("succeeded"));
    assert!(lab.bao.seal_status().sealed, "a rehearsal unseals nothing");

    // The unseal key Secret is gone: the CronJob cannot unseal, and the rehearsal says so.
    lab.kubectl_out(&["delete", "secret", "vault-unseal-key", "-n", NS]);
    let b = stuck_drive(&lab).rehearse();
    b.assert_problem(
        "check-unseal-secret: ",
        "rehearsal without the unseal key Secret",
    );
    b.assert_problem(
        "vault-unseal-key",
        "rehearsal without the unseal key Secret",
    );
    assert!(lab.bao.seal_status().sealed);
    assert_no_secrets(&d, &[&r, &b], &[lab.key(), lab.root_token()]);
}

fn wrong_key_lab() -> Lab {
    let lab = Lab::start(&Setup {
        sealed: true,
        secret_key: Some(WRONG_KEY.to_owned()),
        unseal_log: LOG_WRONG_KEY,
        store_degraded: true,
        ..Setup::default()
    });
    lab.wait_vault_pod_running();
    lab
}

/// The CronJobs of a cluster whose Vault is stuck sealed: the auto-unseal one runs (and
/// fails while the Secret's key is wrong), eso-recovery restarts ESO once Vault is Ready.
fn stuck_cluster(lab: &Lab) -> SelfHealing {
    SelfHealing::start(
        lab,
        HealingPlan {
            bind_pvc_after: None,
            unseal_after: Some(Duration::ZERO),
            eso_recovery: true,
        },
    )
}

/// After the runbook: Vault unsealed, the cluster healthy, the Secret holds the right key,
/// and the next auto-unseal run after a Vault restart unseals it.
fn assert_stuck_sealed_fixed(lab: &mut Lab, healing: &SelfHealing) {
    let _ = healing;
    lab.assert_cluster_healthy();
    assert_eq!(
        lab.secret_key(),
        lab.key(),
        "the Secret holds the key that works"
    );
    lab.bao.restart();
    assert!(
        lab.bao.wait_unsealed(SETTLE),
        "the auto-unseal CronJob unseals a restarted Vault with the fixed Secret"
    );
    lab.wait_vault_pod_ready(true);
}

#[test]
fn vault_stuck_sealed_runs_to_the_end_and_replaces_the_wrong_key() {
    let mut lab = wrong_key_lab();
    let healing = stuck_cluster(&lab);
    assert!(lab.bao.seal_status().sealed, "the CronJob cannot unseal");
    let d = stuck_drive(&lab).set("choose-key-wrong", "key-wrong");
    let out = d.run();
    out.assert_ok("full run");
    assert!(
        out.output_of("cronjob-logs")
            .contains("message authentication failed")
    );
    assert_eq!(
        out.outcome_of("fix-unseal-secret").as_deref(),
        Some("succeeded")
    );
    assert_stuck_sealed_fixed(&mut lab, &healing);
    assert_no_secrets(&d, &[&out], &[lab.key(), WRONG_KEY, lab.root_token()]);

    // SIGKILL at a random step of that run, on a fresh lab, then resume.
    let mut lab2 = wrong_key_lab();
    let healing2 = stuck_cluster(&lab2);
    let d2 = stuck_drive(&lab2).set("choose-key-wrong", "key-wrong");
    let c = d2.crash_and_resume(&out.started(), &|step| {
        // Every step of this runbook reads, or is idempotent: an interrupted one is safe
        // to run again.
        eprintln!("resolve: `{step}` interrupted; running it again");
        "rerun".to_owned()
    });
    assert_stuck_sealed_fixed(&mut lab2, &healing2);
    assert_no_secrets(
        &d2,
        &[c.outcome()],
        &[lab2.key(), WRONG_KEY, lab2.root_token()],
    );
}

// ---------------------------------------------------------------------------------------
// power-failure-recovery
// ---------------------------------------------------------------------------------------

/// Just after a reboot: Vault sealed, its PVC not bound yet, vault-0 not running yet, the
/// ClusterSecretStore degraded (ESO backed off while Vault was down), Applications syncing.
fn rebooted_lab() -> Lab {
    Lab::start(&Setup {
        sealed: true,
        pvc_bound: false,
        store_degraded: true,
        extra: "podReadyAfterMsFor: {\"security/vault-0\": 1500}\n",
        ..Setup::default()
    })
}

/// The self-healing sequence on a short clock: Longhorn binds the PVC at 1 s, the auto-unseal
/// CronJob unseals Vault from 2.5 s, eso-recovery restarts ESO once vault-0 is Ready.
fn self_healing(lab: &Lab) -> SelfHealing {
    SelfHealing::start(
        lab,
        HealingPlan {
            bind_pvc_after: Some(Duration::from_millis(1000)),
            unseal_after: Some(Duration::from_millis(2500)),
            eso_recovery: true,
        },
    )
}

#[test]
fn power_failure_recovery_rehearsal_watches_the_healing_and_names_a_missing_cronjob() {
    let lab = rebooted_lab();
    let healing = self_healing(&lab);
    let d = lab.drive("power-failure-recovery");
    let r = d.rehearse();
    r.assert_clean_rehearsal("rehearsal during the self-healing after a reboot");
    assert_eq!(r.outcome_of("vault-unsealed").as_deref(), Some("succeeded"));
    lab.assert_cluster_healthy();
    drop(healing);

    // The auto-unseal CronJob is gone: the next reboot would not heal. The rehearsal names it.
    lab.kubectl_out(&["delete", "cronjob", "vault-auto-unseal", "-n", NS]);
    let b = lab.drive("power-failure-recovery").rehearse();
    b.assert_problem(
        "unseal-cronjob-present: ",
        "rehearsal without the auto-unseal CronJob",
    );
    b.assert_problem(
        "vault-auto-unseal",
        "rehearsal without the auto-unseal CronJob",
    );
}

#[test]
fn power_failure_recovery_runs_to_the_end_and_the_cluster_is_healed() {
    let lab = rebooted_lab();
    let _healing = self_healing(&lab);
    let d = lab.drive("power-failure-recovery");
    let out = d.run();
    out.assert_ok("full run");
    lab.assert_cluster_healthy();
    assert_eq!(
        lab.secret_key(),
        lab.key(),
        "nothing changed the unseal key"
    );

    let lab2 = rebooted_lab();
    let _healing2 = self_healing(&lab2);
    let d2 = lab2.drive("power-failure-recovery");
    d2.crash_and_resume(&out.started(), &|step| {
        // Every step only reads: reading again is safe.
        eprintln!("resolve: `{step}` interrupted; it only reads, running it again");
        "rerun".to_owned()
    });
    lab2.assert_cluster_healthy();
}

/// How many times step `id` failed for want of the lost `new_unseal_key` (before its action).
fn lost_key_failures(outcomes: &[Outcome], id: &str) -> u64 {
    outcomes
        .iter()
        .flat_map(|o| &o.events)
        .filter(|e| {
            e["event"] == "step_finished"
                && e["id"] == id
                && e["error"]
                    .as_str()
                    .is_some_and(|r| r.contains("`new_unseal_key`"))
        })
        .count() as u64
}

/// The operator of vault-unseal-rotation after the SIGKILL, by drctl's messages: an
/// interrupted step is answered by `resolve`; a step that needs the new key, which died
/// with the killed process (a secret output is never written down), gets it again from the
/// `vault-unseal-key` Secret when it reached it (the key pending verification,
/// `DRCTL_OUTPUT_NEW_UNSEAL_KEY`), else nobody holds it and the operator starts a new run
/// (safe: until `verify-rekey`, the old key still unseals and the new run's rekey cancels
/// the pending one).
struct RotationOperator<'a> {
    lab: &'a Lab,
    resolve: &'a dyn Fn(&str) -> String,
    /// The new key, given again.
    key: Option<String>,
}

impl Recovery for RotationOperator<'_> {
    fn resolve(&self, step: &str) -> String {
        (self.resolve)(step)
    }

    fn rounds(&self) -> usize {
        6
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        self.key
            .iter()
            .map(|k| ("DRCTL_OUTPUT_NEW_UNSEAL_KEY", k.clone()))
            .collect()
    }

    fn remedy(&mut self, d: &Drive, last: &Outcome) -> Option<Remedy> {
        if !last.lost_secret("new_unseal_key") {
            None
        } else if self.key.is_none() && self.lab.secret_key() != self.lab.key() {
            self.key = Some(self.lab.secret_key());
            Some(Remedy::Resume("gave the key from the Secret".to_owned()))
        } else {
            self.key = None;
            Some(Remedy::NewRun(
                "started over (nobody holds the new key)".to_owned(),
                d.finish(&d.run_args(&["run", &d.runbook, "--new"]), &[]),
            ))
        }
    }

    /// An attempt that failed because the new key was gone reached no system.
    fn spared(&self, step: &str, outcomes: &[Outcome]) -> u64 {
        lost_key_failures(outcomes, step)
    }
}

#[test]
fn vault_unseal_rotation_through_rotate_root_survives_a_sigkill_and_resume() {
    let mut lab = Lab::start(&Setup::default());
    lab.bao.disable_unauthed_rekey(&lab.init.keys);
    let audit = enable_audit(&mut lab);
    lab.wait_vault_pod_ready(true);
    let d = rotation_drive(&lab);
    let steps: Vec<String> = [
        "port-forward",
        "check-unsealed",
        "rekey",
        "update-unseal-secret",
        "verify-rekey",
        "update-offline-backup",
    ]
    .map(str::to_owned)
    .to_vec();
    let root = lab.root_token().to_owned();
    let bao = lab.bao.addr();
    let resolve = |step: &str| {
        if step == "verify-rekey" {
            // As the runbook's fallback says (`bao operator rotate-keys -verify -status`): a
            // rekey still pending verification was not verified, so the step runs again;
            // none pending means OpenBao accepted the verification before drctl died.
            let r = http(
                "GET",
                &format!("{bao}/v1/sys/rotate/root/init"),
                &[("X-Vault-Token", root.as_str())],
                b"",
            )
            .expect("OpenBao answers");
            eprintln!("resolve: rekey status {} {}", r.status, r.text());
            let pending = r.json()["data"]["verification_nonce"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            return if pending { "rerun" } else { "done" }.to_owned();
        }
        // The rekey (verify: false) is idempotent; a manual step asks the operator again;
        // anything else only reads.
        "rerun".to_owned()
    };
    let c = d.crash_and_recover(
        &steps,
        &mut RotationOperator {
            lab: &lab,
            resolve: &resolve,
            key: None,
        },
    );
    assert_eq!(rekey_api_used(&audit), ["sys/rotate/root"]);
    let new_key = assert_only_the_new_key_unseals(&mut lab);
    let outcomes: Vec<&Outcome> = c.outcomes.iter().collect();
    assert_no_secrets(&d, &outcomes, &[lab.key(), &new_key, lab.root_token()]);
}
