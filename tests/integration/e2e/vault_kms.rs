//! End-to-end runs of the Vault KMS runbooks (`vault-kms-credentials-lost`,
//! `vault-kms-key-deletion`, `vault-data-loss`: Vault auto-unsealed by AWS KMS, first seed).
//!
//! The lab ([`VaultLab`]): a real OpenBao whose seal is `transit` on a [`BaoTransit`] (the
//! build has no `awskms` seal: the transit server plays the KMS's cryptography), moto for the
//! KMS key's identity and state and for the IAM user `vault` and its access keys, and kubesim
//! with the homelab's Vault StatefulSet (`tests/fixtures/e2e/vault-kms/scenario.yaml`): pod
//! `vault-0` port-forwards to the real OpenBao, is Ready exactly while OpenBao's
//! `/v1/sys/health` answers 200 (initialised, unsealed, active), and deleting it runs the
//! stand-in `tests/lab/standins/vault-kms/vault-pod restart`, which restarts the real OpenBao
//! the way the kubelet would start Vault from what the cluster and AWS hold:
//!
//! - the Secret `vault-aws-kms` in `vault` must exist with its four keys (read with kubectl
//!   from kubesim);
//! - its `AWS_ACCESS_KEY_ID` must be an Active access key of the IAM user `vault` in moto;
//! - its `VAULT_AWSKMS_SEAL_KEY_ID` must be the lab's KMS key (the one Vault's data is sealed
//!   with) and moto must describe that key as Enabled (with the Secret's credentials and
//!   region).
//!
//! Then OpenBao starts with its real transit key and auto-unseals; otherwise with a transit
//! key that cannot unwrap its root key, so it comes up sealed and the pod never turns Ready.
//! The decisions are logged to `standin.log` in the lab's dir. The OpenBao processes that
//! script starts are stopped by [`VaultLab`]'s drop (PID file).
//!
//! Every check after a run reads the lab: kubectl (the Secret's decoded keys, the pod's
//! Ready condition, ExternalSecrets), moto (key state, deletion date), OpenBao
//! (`sys/seal-status`, KV reads with a token the test holds).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::lab::{BaoInit, BaoTransit, KubeSim, Moto, OpenBao, kubectl_path, wait_until};
use crate::support::cli::{both, root};
use crate::support::crash::{Recovery, Remedy};
use crate::support::drive::{Drive, Outcome, builtin};
use crate::support::process::alive;
use crate::support::secrets::assert_not_written;

const NS: &str = "vault";
const SECRET: &str = "vault-aws-kms";
const IAM_USER: &str = "vault";
const KV_MOUNT: &str = "homelab";

/// One IAM access key of the `vault` user.
#[derive(Clone, Debug)]
struct AccessKey {
    id: String,
    secret: String,
}

/// The lab of the three runbooks (see the module's doc).
struct VaultLab {
    dir: tempfile::TempDir,
    kms_key: String,
    root: Option<BaoInit>,
    sim: KubeSim,
    moto: Moto,
    bao: OpenBao,
    /// The KMS stand-in: kept alive (stopped on drop) while the lab runs.
    _transit: BaoTransit,
}

impl Drop for VaultLab {
    fn drop(&mut self) {
        // The OpenBao the stand-in started (detached): stop it by its PID file.
        let pidfile = self.pidfile();
        let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            return;
        };
        // SAFETY: signalling a process this test started (through the stand-in) by its PID.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        if !wait_until(Duration::from_secs(8), || !alive(pid)) {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "---- vault-pod stand-in log ----\n{}\n---- OpenBao log (tail) ----\n{}",
                std::fs::read_to_string(self.dir.path().join("standin.log")).unwrap_or_default(),
                crate::lab::log_tail(self.bao.log_path(), 40)
            );
        }
    }
}

fn stand_in() -> PathBuf {
    root().join("tests/lab/standins/vault-kms/vault-pod")
}

impl VaultLab {
    /// Transit "KMS", a transit-sealed OpenBao (not initialised), moto with the KMS key and
    /// the IAM user `vault`, kubesim with the Vault StatefulSet wired to that OpenBao.
    fn start() -> VaultLab {
        let transit = BaoTransit::start();
        let bao = OpenBao::start_with_transit(&transit);
        let moto = Moto::start();
        let kms_key = moto.create_kms_key("vault auto-unseal (lab)");
        moto.create_alias("alias/vault-unseal", &kms_key);
        let dir = tempfile::Builder::new()
            .prefix("drctl-e2e-vault-kms-")
            .tempdir()
            .expect("a temp dir for the vault lab");
        let envfile = dir.path().join("vault-pod.env");
        let on_delete = format!("sh {} restart {}", stand_in().display(), envfile.display());
        let scenario =
            std::fs::read_to_string(root().join("tests/fixtures/e2e/vault-kms/scenario.yaml"))
                .expect("the vault-kms scenario")
                .replace("@BAO_HOSTPORT@", &format!("127.0.0.1:{}", bao.port()))
                .replace("@ON_DELETE@", &on_delete);
        let sim = KubeSim::start_with_scenario(&scenario);
        let lab = VaultLab {
            dir,
            kms_key,
            root: None,
            sim,
            moto,
            bao,
            _transit: transit,
        };
        lab.write_envfile();
        lab.aws_ok(&["iam", "create-user", "--user-name", IAM_USER]);
        lab
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("bao.pid")
    }

    fn write_envfile(&self) {
        let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let vars = [
            ("KUBECTL", kubectl_path().display().to_string()),
            (
                "KUBECONFIG",
                self.sim.kubeconfig_path().display().to_string(),
            ),
            ("VAULT_POD_NS", NS.to_owned()),
            ("KMS_SECRET_NAME", SECRET.to_owned()),
            ("AWS_ENDPOINT_URL", self.moto.endpoint()),
            ("ADMIN_AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("ADMIN_AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("IAM_USER", IAM_USER.to_owned()),
            ("LAB_KMS_KEY_ID", self.kms_key.clone()),
            ("BAO_BIN", crate::lab::bao_bin().display().to_string()),
            ("BAO_CONFIG", self.bao.config_path().display().to_string()),
            ("BAO_LOG", self.bao.log_path().display().to_string()),
            ("BAO_ADDR", self.bao.addr()),
            ("BAO_PIDFILE", self.pidfile().display().to_string()),
            (
                "BAO_FIRST_PID",
                self.bao.pid().map(|p| p.to_string()).unwrap_or_default(),
            ),
            (
                "STANDIN_LOG",
                self.dir.path().join("standin.log").display().to_string(),
            ),
        ];
        let body: String = vars
            .iter()
            .map(|(k, v)| format!("{k}={}\nexport {k}\n", q(v)))
            .collect();
        std::fs::write(self.dir.path().join("vault-pod.env"), body).expect("write vault-pod.env");
    }

    /// The aws CLI against moto with the administrator's (moto's) credentials.
    fn aws(&self, args: &[&str]) -> Output {
        Command::new("aws")
            .args(args)
            .args(["--output", "json"])
            .envs(self.moto.env())
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .stdin(Stdio::null())
            .output()
            .expect("run the aws CLI")
    }

    fn aws_ok(&self, args: &[&str]) -> Value {
        let o = self.aws(args);
        assert!(o.status.success(), "aws {args:?}: {}", both(&o));
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
    }

    /// A new access key of the IAM user `vault` (what the operator generates in IAM).
    fn new_access_key(&self) -> AccessKey {
        let v = self.aws_ok(&["iam", "create-access-key", "--user-name", IAM_USER]);
        AccessKey {
            id: v["AccessKey"]["AccessKeyId"]
                .as_str()
                .expect("AccessKeyId")
                .to_owned(),
            secret: v["AccessKey"]["SecretAccessKey"]
                .as_str()
                .expect("SecretAccessKey")
                .to_owned(),
        }
    }

    fn delete_access_key(&self, key: &AccessKey) {
        self.aws_ok(&[
            "iam",
            "delete-access-key",
            "--user-name",
            IAM_USER,
            "--access-key-id",
            &key.id,
        ]);
    }

    /// `kubectl create secret generic vault-aws-kms` as the homelab had it.
    fn create_kms_secret(&self, key: &AccessKey) {
        self.sim.kubectl_ok(&[
            "create",
            "secret",
            "generic",
            SECRET,
            "-n",
            NS,
            &format!("--from-literal=AWS_ACCESS_KEY_ID={}", key.id),
            &format!("--from-literal=AWS_SECRET_ACCESS_KEY={}", key.secret),
            "--from-literal=AWS_REGION=us-east-1",
            &format!("--from-literal=VAULT_AWSKMS_SEAL_KEY_ID={}", self.kms_key),
        ]);
    }

    /// The Secret's keys, decoded; None when it does not exist.
    fn kms_secret(&self) -> Option<serde_json::Map<String, Value>> {
        let o = self
            .sim
            .kubectl()
            .args([
                "get",
                "secret",
                SECRET,
                "-n",
                NS,
                "-o",
                r#"go-template={{range $k, $v := .data}}{{$k}}={{$v | base64decode}}{{"\n"}}{{end}}"#,
            ])
            .output()
            .expect("run kubectl");
        if !o.status.success() {
            return None;
        }
        let mut out = serde_json::Map::new();
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.to_owned(), json!(v));
            }
        }
        Some(out)
    }

    /// Initialises OpenBao (recovery shares with the transit seal), waits until it auto-unseals
    /// and is active, enables KV v2 at `homelab/` and writes the homelab's secret.
    fn initialise_vault(&mut self) {
        let init = self.bao.init(5, 3);
        assert!(
            self.bao.wait_unsealed(Duration::from_secs(30)),
            "OpenBao auto-unseals after init"
        );
        self.bao.wait_active();
        self.bao.enable_kv2(&init.root_token, KV_MOUNT);
        // A new KV v2 mount answers 400 ("upgrading") for a moment: poll.
        let mut last = Value::Null;
        let written = wait_until(Duration::from_secs(30), || {
            let (status, v) = self.bao.request(
                "POST",
                &format!("{KV_MOUNT}/data/infrastructure/cloudflare"),
                Some(&init.root_token),
                Some(json!({"data": {"api_token": "cf-token-before-the-disaster"}})),
            );
            last = v;
            status == 200
        });
        assert!(written, "kv put: {last}");
        self.root = Some(init);
    }

    fn root_token(&self) -> &str {
        &self
            .root
            .as_ref()
            .expect("the lab initialised Vault")
            .root_token
    }

    /// The stand-in restart, as the kubelet would do it: the Vault pod restarted in the
    /// situation the lab is in now.
    fn restart_vault(&self) {
        let o = Command::new("sh")
            .arg(stand_in())
            .arg("restart")
            .arg(self.dir.path().join("vault-pod.env"))
            .stdin(Stdio::null())
            .output()
            .expect("run the vault-pod stand-in");
        assert!(o.status.success(), "vault-pod restart: {}", both(&o));
    }

    /// The pod `vault-0` exists and reports Ready=True.
    fn pod_ready(&self) -> bool {
        let o = self
            .sim
            .kubectl()
            .args([
                "get",
                "pod",
                "vault-0",
                "-n",
                NS,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .output()
            .expect("run kubectl");
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "True"
    }

    /// The pod's uid (a new pod after a delete has a new one).
    fn pod_uid(&self) -> Option<String> {
        let o = self
            .sim
            .kubectl()
            .args([
                "get",
                "pod",
                "vault-0",
                "-n",
                NS,
                "-o",
                "jsonpath={.metadata.uid}",
            ])
            .output()
            .expect("run kubectl");
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    }

    fn standin_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("standin.log")).unwrap_or_default()
    }

    /// The value of `key` at `homelab/PATH`, read with the root token.
    fn kv(&self, token: &str, path: &str, key: &str) -> Option<String> {
        let (status, v) =
            self.bao
                .request("GET", &format!("{KV_MOUNT}/data/{path}"), Some(token), None);
        (status == 200)
            .then(|| v["data"]["data"][key].as_str().map(str::to_owned))
            .flatten()
    }

    fn key_state(&self) -> String {
        self.moto.describe_key(&self.kms_key)["KeyState"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Vault as the homelab has it before the disaster: initialised with data, the KMS
    /// Secret holding a valid access key, unsealed; returns that key.
    fn healthy_vault(&mut self) -> AccessKey {
        self.initialise_vault();
        let key = self.new_access_key();
        self.create_kms_secret(&key);
        key
    }

    /// Vault auto-unsealed and active with its data, the pod Ready.
    fn assert_vault_back(&self) {
        self.wait_sealed(false);
        self.bao.wait_active();
        assert_eq!(
            self.kv(self.root_token(), "infrastructure/cloudflare", "api_token")
                .as_deref(),
            Some("cf-token-before-the-disaster"),
            "Vault's data is back"
        );
        assert!(
            wait_until(Duration::from_secs(30), || self.pod_ready()),
            "vault-0 Ready"
        );
    }

    /// Waits until OpenBao reports the expected seal state.
    fn wait_sealed(&self, sealed: bool) {
        assert!(
            wait_until(Duration::from_secs(30), || self.bao.seal_status().sealed
                == sealed),
            "OpenBao sealed={} expected; stand-in log:\n{}",
            sealed,
            self.standin_log()
        );
    }
}

// ---------------------------------------------------------------------------------------
// vault-kms-key-deletion
// ---------------------------------------------------------------------------------------

/// The homelab after someone scheduled the KMS key for deletion and Vault restarted: the key
/// is PendingDeletion, Vault is sealed, the pod is not Ready.
fn key_pending_deletion_lab() -> VaultLab {
    let mut lab = VaultLab::start();
    lab.healthy_vault();
    let v = lab.moto.schedule_key_deletion(&lab.kms_key, 7);
    assert!(v["DeletionDate"].is_number(), "{v}");
    lab.restart_vault();
    lab.wait_sealed(true);
    assert!(lab.standin_log().contains("kms-key-PendingDeletion"));
    lab
}

fn key_deletion_drive(lab: &VaultLab) -> Drive {
    Drive::new("vault-kms-key-deletion")
        .envs(lab.sim.env())
        .envs(lab.moto.env())
        .set("kms_key_id", &lab.kms_key)
}

/// After the run: the key is Enabled with no deletion date, Vault auto-unsealed with its data,
/// the pod is Ready.
fn assert_key_recovered(lab: &VaultLab) {
    let meta = lab.moto.describe_key(&lab.kms_key);
    assert_eq!(meta["KeyState"], "Enabled", "{meta}");
    assert!(
        meta["DeletionDate"].is_null(),
        "no deletion scheduled: {meta}"
    );
    lab.assert_vault_back();
    assert_eq!(lab.bao.seal_status().seal_type, "transit");
}

#[test]
fn key_deletion_rehearsal_run_and_crash() {
    let lab = key_pending_deletion_lab();
    let d = key_deletion_drive(&lab);
    let r = d.rehearse();
    r.assert_clean_rehearsal("vault-kms-key-deletion rehearsal, key PendingDeletion");
    assert_eq!(
        r.outcome_of("cancel-deletion").as_deref(),
        Some("would_run")
    );
    assert_eq!(
        lab.key_state(),
        "PendingDeletion",
        "a rehearsal changes nothing"
    );

    // Broken: the key is already gone (unknown to KMS).
    let gone = Drive::new("vault-kms-key-deletion")
        .envs(lab.sim.env())
        .envs(lab.moto.env())
        .set("kms_key_id", "0b7c1a3e-0000-4000-8000-000000000000");
    gone.rehearse()
        .assert_problem("not found", "rehearsal with a deleted key");

    let full = d.run();
    full.assert_ok("vault-kms-key-deletion run");
    assert_key_recovered(&lab);
    assert!(lab.standin_log().contains("KMS usable"));
    let steps = full.started();
    drop(lab);

    let lab = key_pending_deletion_lab();
    let d = key_deletion_drive(&lab);
    let uid = lab.pod_uid();
    d.crash_and_resume(&steps, &|step| match step {
        // Deleting the pod: done when the pod was replaced, else do it again.
        "restart-vault" if lab.pod_uid() != uid => "done".to_owned(),
        _ => "rerun".to_owned(),
    });
    assert_key_recovered(&lab);
}

// ---------------------------------------------------------------------------------------
// vault-kms-credentials-lost
// ---------------------------------------------------------------------------------------

/// The homelab after the KMS credentials were lost: the old access key is revoked in IAM and
/// the Secret is gone; Vault restarted and stays sealed. Returns the new access key the
/// operator generated (the runbook's prerequisite).
fn credentials_lost_lab() -> (VaultLab, AccessKey) {
    let mut lab = VaultLab::start();
    let old = lab.healthy_vault();
    lab.delete_access_key(&old);
    lab.sim.kubectl_ok(&["delete", "secret", SECRET, "-n", NS]);
    lab.restart_vault();
    lab.wait_sealed(true);
    assert!(lab.standin_log().contains("secret-missing"));
    let new = lab.new_access_key();
    (lab, new)
}

fn credentials_drive(lab: &VaultLab, key: &AccessKey) -> Drive {
    Drive::new("vault-kms-credentials-lost")
        .envs(lab.sim.env())
        .envs(lab.moto.env())
        .env("DRCTL_INPUT_AWS_ACCESS_KEY_ID", &key.id)
        .env("DRCTL_INPUT_AWS_SECRET_ACCESS_KEY", &key.secret)
        .set("kms_key_id", &lab.kms_key)
        .confirm("generate-access-keys")
}

fn assert_credentials_recovered(lab: &VaultLab, key: &AccessKey) {
    let s = lab.kms_secret().expect("the vault-aws-kms Secret exists");
    assert_eq!(s["AWS_ACCESS_KEY_ID"], key.id.as_str());
    assert!(
        s["AWS_SECRET_ACCESS_KEY"] == key.secret.as_str(),
        "the new secret key"
    );
    assert_eq!(s["AWS_REGION"], "us-east-1");
    assert_eq!(s["VAULT_AWSKMS_SEAL_KEY_ID"], lab.kms_key.as_str());
    assert_eq!(s.len(), 4, "exactly the four keys: {:?}", s.keys());
    lab.assert_vault_back();
}

#[test]
fn credentials_lost_rehearsal_run_and_crash() {
    let (lab, key) = credentials_lost_lab();
    let d = credentials_drive(&lab, &key);
    let r = d.rehearse();
    r.assert_clean_rehearsal("vault-kms-credentials-lost rehearsal");
    assert!(lab.kms_secret().is_none(), "a rehearsal changes nothing");

    // Broken: the KMS key itself is pending deletion (the other runbook's situation).
    lab.moto.schedule_key_deletion(&lab.kms_key, 7);
    let b = d.rehearse();
    b.assert_problem("PendingDeletion", "rehearsal with the key pending deletion");
    lab.moto
        .kms("CancelKeyDeletion", json!({"KeyId": lab.kms_key}));
    lab.moto.kms("EnableKey", json!({"KeyId": lab.kms_key}));

    let full = d.run();
    full.assert_ok("vault-kms-credentials-lost run");
    assert_credentials_recovered(&lab, &key);
    assert!(lab.standin_log().contains("KMS usable"));
    assert_eq!(
        full.outcome_of("vault-status").as_deref(),
        Some("succeeded")
    );
    assert_not_written(d.state(), &[&r, &b, &full], &[&key.secret, &key.id]);
    let steps = full.started();
    drop(lab);

    let (lab, key) = credentials_lost_lab();
    let d = credentials_drive(&lab, &key);
    let uid = lab.pod_uid();
    let c = d.crash_and_resume(&steps, &|step| match step {
        "restart-vault" if lab.pod_uid() != uid => "done".to_owned(),
        _ => "rerun".to_owned(),
    });
    assert_credentials_recovered(&lab, &key);
    assert_not_written(d.state(), &[c.outcome()], &[&key.secret, &key.id]);
}

// ---------------------------------------------------------------------------------------
// vault-data-loss
// ---------------------------------------------------------------------------------------

/// A git checkout of the example repository (tests/fixtures/vault/repo) in a temp dir.
fn example_repo() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("drctl-e2e-homelab-repo-")
        .tempdir()
        .expect("a temp dir for the repository");
    let o = Command::new("cp")
        .arg("-a")
        .arg(root().join("tests/fixtures/vault/repo/."))
        .arg(dir.path())
        .output()
        .expect("run cp");
    assert!(o.status.success(), "copy the example repo: {}", both(&o));
    let o = Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir.path())
        .output()
        .expect("run git init");
    assert!(o.status.success(), "git init: {}", both(&o));
    dir
}

/// The homelab after Vault's data is gone: an empty OpenBao (its pod restarted without the
/// KMS Secret), the Secret gone, the KMS key usable, a new access key for the Vault IAM user.
fn data_lost_lab() -> (VaultLab, AccessKey) {
    let lab = VaultLab::start();
    lab.restart_vault();
    assert!(lab.standin_log().contains("secret-missing"));
    let s = lab.bao.seal_status();
    assert!(!s.initialized && s.sealed, "{s:?}");
    let key = lab.new_access_key();
    (lab, key)
}

fn data_loss_drive(lab: &VaultLab, key: &AccessKey, repo: &Path) -> Drive {
    Drive::new("vault-data-loss")
        .envs(lab.sim.env())
        .envs(lab.moto.env())
        .env("DRCTL_INPUT_AWS_ACCESS_KEY_ID", &key.id)
        .env("DRCTL_INPUT_AWS_SECRET_ACCESS_KEY", &key.secret)
        .set("kms_key_id", &lab.kms_key)
        .set("repo_dir", repo.display().to_string())
        .set("vault_cli", crate::lab::bao_bin().display().to_string())
        .confirm("locate-example-files")
        .confirm("vault-init")
}

/// The value of every key the example repository names, as the operator sets them for an
/// unattended run: (kv path, key, `DRCTL_KV_<PATH>__<KEY>` variable, value). The variable
/// names are written out here: they are the documented rule (docs/runbook-format.md).
const KV_VALUES: &[(&str, &str, &str, &str)] = &[
    (
        "infrastructure/cloudflare",
        "api_token",
        "DRCTL_KV_INFRASTRUCTURE_CLOUDFLARE__API_TOKEN",
        "cf-token-new-3f9a1c",
    ),
    (
        "infrastructure/velero-offsite",
        "aws_access_key_id",
        "DRCTL_KV_INFRASTRUCTURE_VELERO_OFFSITE__AWS_ACCESS_KEY_ID",
        "AKIAVELERONEW7Q2",
    ),
    (
        "infrastructure/velero-offsite",
        "aws_secret_access_key",
        "DRCTL_KV_INFRASTRUCTURE_VELERO_OFFSITE__AWS_SECRET_ACCESS_KEY",
        "velero-secret-8d2c0e91",
    ),
    (
        "apps/authentik",
        "secret_key",
        "DRCTL_KV_APPS_AUTHENTIK__SECRET_KEY",
        "authentik-sk-71b0aa42",
    ),
    (
        "apps/authentik",
        "postgres_password",
        "DRCTL_KV_APPS_AUTHENTIK__POSTGRES_PASSWORD",
        "authentik-pg-55e1fd07",
    ),
    (
        "apps/immich",
        "DB_PASSWORD",
        "DRCTL_KV_APPS_IMMICH__DB_PASSWORD",
        "immich-db-9c4d3b18",
    ),
    (
        "apps/immich",
        "JWT_SECRET",
        "DRCTL_KV_APPS_IMMICH__JWT_SECRET",
        "immich-jwt-2a6f8e50",
    ),
];

/// The drive of an unattended run: `init_keys_file` set, every `DRCTL_KV_*` value in the
/// environment except the variables in `without`.
fn unattended_drive(
    lab: &VaultLab,
    key: &AccessKey,
    repo: &Path,
    keys_file: &Path,
    without: &[&str],
) -> Drive {
    let mut d =
        data_loss_drive(lab, key, repo).set("init_keys_file", keys_file.display().to_string());
    for (_, _, var, value) in KV_VALUES {
        if !without.contains(var) {
            d = d.env(*var, *value);
        }
    }
    d
}

/// What `vault-init` wrote to `init_keys_file`.
struct SavedKeys {
    root_token: String,
    recovery_keys: Vec<String>,
}

fn saved_keys(file: &Path) -> Option<SavedKeys> {
    let text = std::fs::read_to_string(file).ok()?;
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is JSON: {e}", file.display()));
    Some(SavedKeys {
        root_token: v["root_token"]
            .as_str()
            .expect("root_token in the keys file")
            .to_owned(),
        recovery_keys: v["recovery_keys_base64"]
            .as_array()
            .expect("recovery_keys_base64 in the keys file")
            .iter()
            .map(|k| k.as_str().expect("a recovery key").to_owned())
            .collect(),
    })
}

/// The root token for a resume, as the operator reads it from the saved file.
fn root_token_env(keys_file: &Path) -> Vec<(&'static str, String)> {
    saved_keys(keys_file)
        .map(|k| vec![("DRCTL_OUTPUT_ROOT_TOKEN", k.root_token)])
        .unwrap_or_default()
}

impl VaultLab {
    /// Every ExternalSecret in kubesim, as (namespace/name, Ready status).
    fn external_secrets(&self) -> Vec<(String, String)> {
        let out = self
            .sim
            .kubectl_ok(&["get", "externalsecret", "-A", "-o", "json"]);
        let v: Value = serde_json::from_str(&out).expect("kubectl -o json");
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|es| {
                let ready = es["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "Ready")
                    .and_then(|c| c["status"].as_str())
                    .unwrap_or("none")
                    .to_owned();
                (
                    format!(
                        "{}/{}",
                        es["metadata"]["namespace"].as_str().unwrap_or_default(),
                        es["metadata"]["name"].as_str().unwrap_or_default()
                    ),
                    ready,
                )
            })
            .collect()
    }

    /// The operator deletes Vault's storage and pod (the runbook's cleanup when the root
    /// token of an init was not saved).
    fn wipe_vault(&self) {
        let o = Command::new("sh")
            .arg(stand_in())
            .arg("wipe")
            .arg(self.dir.path().join("vault-pod.env"))
            .stdin(Stdio::null())
            .output()
            .expect("run the vault-pod stand-in");
        assert!(o.status.success(), "vault-pod wipe: {}", both(&o));
    }

    /// Whether `homelab/` is mounted as KV, read with `token`.
    fn kv_mounted(&self, token: &str) -> bool {
        let (status, v) = self.bao.request("GET", "sys/mounts", Some(token), None);
        status == 200
            && payload_of(&v)[format!("{KV_MOUNT}/")]["type"]
                .as_str()
                .is_some_and(|t| t == "kv")
    }
}

fn payload_of(v: &Value) -> &Value {
    if v.get("data").is_some_and(Value::is_object) {
        &v["data"]
    } else {
        v
    }
}

/// The lab after a complete vault-data-loss run: the keys file (mode 0600) holds the root
/// token and 5 recovery keys; OpenBao is initialised with recovery shares, unsealed and
/// seals with the lab's KMS; every path and key of the example files holds its value; every
/// ExternalSecret is Ready in kubesim and the Vault pod is Ready. Returns the saved keys.
fn assert_data_loss_recovered(lab: &VaultLab, key: &AccessKey, keys_file: &Path) -> SavedKeys {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(keys_file)
        .expect("the init keys file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the keys file is private");
    let saved = saved_keys(keys_file).expect("the keys file");
    assert_eq!(saved.recovery_keys.len(), 5, "5 recovery keys saved");
    let s = lab.kms_secret().expect("the vault-aws-kms Secret exists");
    assert_eq!(s["AWS_ACCESS_KEY_ID"], key.id.as_str());
    assert!(s["AWS_SECRET_ACCESS_KEY"] == key.secret.as_str());
    assert_eq!(s["VAULT_AWSKMS_SEAL_KEY_ID"], lab.kms_key.as_str());
    lab.wait_sealed(false);
    lab.bao.wait_active();
    let (_, v) = lab.bao.request("GET", "sys/seal-status", None, None);
    assert_eq!(v["initialized"], true, "{v}");
    assert_eq!(v["recovery_seal"], true, "recovery shares: {v}");
    assert_eq!(v["n"], 5, "{v}");
    assert_eq!(v["t"], 3, "{v}");
    // The saved root token is the new Vault's: it reads the secrets below.
    for (path, k, _, value) in KV_VALUES {
        assert_eq!(
            lab.kv(&saved.root_token, path, k).as_deref(),
            Some(*value),
            "{KV_MOUNT}/{path} {k}"
        );
    }
    for (path, _, _, _) in KV_VALUES {
        let (status, v) = lab.bao.request(
            "GET",
            &format!("{KV_MOUNT}/data/{path}"),
            Some(&saved.root_token),
            None,
        );
        assert_eq!(status, 200, "{v}");
        let keys = v["data"]["data"]
            .as_object()
            .map(|m| m.len())
            .unwrap_or_default();
        let expected = KV_VALUES.iter().filter(|(p, ..)| p == path).count();
        assert_eq!(
            keys, expected,
            "{KV_MOUNT}/{path} holds exactly its keys: {v}"
        );
    }
    let distinct: std::collections::BTreeSet<&String> = saved.recovery_keys.iter().collect();
    assert_eq!(distinct.len(), 5, "5 distinct recovery keys");
    assert!(
        saved.recovery_keys.iter().all(|k| k.len() >= 40),
        "recovery keys look like keys (base64 of 32+ bytes)"
    );
    let es = lab.external_secrets();
    assert!(!es.is_empty(), "ExternalSecrets exist");
    assert!(
        es.iter().all(|(_, r)| r == "True"),
        "every ExternalSecret Ready: {es:?}"
    );
    lab.sim
        .kubectl_ok(&["get", "secret", "immich-db", "-n", "apps"]);
    assert!(
        wait_until(Duration::from_secs(30), || lab.pod_ready()),
        "vault-0 Ready"
    );
    saved
}

/// Every value that must never reach drctl's output or state: the KV values, the AWS
/// secret key, and (once known) the root token and recovery keys.
fn data_loss_secrets(key: &AccessKey, saved: Option<&SavedKeys>) -> Vec<String> {
    let mut out: Vec<String> = KV_VALUES.iter().map(|(.., v)| (*v).to_owned()).collect();
    out.push(key.secret.clone());
    if let Some(s) = saved {
        out.push(s.root_token.clone());
        out.extend(s.recovery_keys.iter().cloned());
    }
    out
}

#[test]
fn data_loss_rehearsal_and_unattended_run() {
    let repo = example_repo();
    let (lab, key) = data_lost_lab();
    let keys_file = lab.dir.path().join("vault-init-keys.json");
    let d = unattended_drive(&lab, &key, repo.path(), &keys_file, &[]);
    let r = d.rehearse();
    r.assert_clean_rehearsal("vault-data-loss rehearsal");
    assert_eq!(r.outcome_of("vault-init").as_deref(), Some("would_run"));
    assert!(
        !lab.bao.seal_status().initialized,
        "a rehearsal changes nothing"
    );
    assert!(lab.kms_secret().is_none(), "a rehearsal changes nothing");
    assert!(!keys_file.exists(), "a rehearsal writes no keys file");

    // Broken: the KMS key Vault would seal with is pending deletion.
    lab.moto.schedule_key_deletion(&lab.kms_key, 7);
    let b = d.rehearse();
    b.assert_problem("PendingDeletion", "rehearsal with the key pending deletion");
    lab.moto
        .kms("CancelKeyDeletion", json!({"KeyId": lab.kms_key}));
    lab.moto.kms("EnableKey", json!({"KeyId": lab.kms_key}));
    // Broken: the file named for the new keys exists (it would never be overwritten).
    std::fs::write(&keys_file, "old keys\n").expect("write a stale keys file");
    // (After the rehearsed pod restart, vault-init only previews: a caveat, not a problem.)
    let b2 = d.rehearse();
    assert!(
        b2.caveats()
            .iter()
            .any(|c| c.starts_with("vault-init") && c.contains("exists already")),
        "{}",
        b2.dump()
    );
    std::fs::remove_file(&keys_file).expect("remove the stale keys file");

    // Unattended without a file for the keys: refused before Vault is initialised.
    let d0 = data_loss_drive(&lab, &key, repo.path());
    let refused = d0.run();
    assert_eq!(refused.code, 4, "{}", refused.dump());
    assert_eq!(
        refused.outcome_of("vault-init").as_deref(),
        Some("needs_operator"),
        "{}",
        refused.dump()
    );
    assert!(
        refused.dump().contains("init_keys_file"),
        "{}",
        refused.dump()
    );
    assert!(
        !lab.bao.seal_status().initialized,
        "nothing initialised without a place for the keys"
    );

    // Unattended, one secret value not given: everything else is written, and the run stops
    // at populate-secrets naming the variable that is missing.
    let missing = "DRCTL_KV_APPS_IMMICH__JWT_SECRET";
    let d = unattended_drive(&lab, &key, repo.path(), &keys_file, &[missing]);
    let first = d.run();
    assert_eq!(first.code, 4, "{}", first.dump());
    for step in [
        "check-kms-key",
        "recreate-kms-secret",
        "restart-vault",
        "check-uninitialised",
        "vault-init",
        "wait-unsealed",
        "enable-kv-mount",
    ] {
        assert_eq!(
            first.outcome_of(step).as_deref(),
            Some("succeeded"),
            "{step}\n{}",
            first.dump()
        );
    }
    assert_eq!(
        first.outcome_of("populate-secrets").as_deref(),
        Some("needs_operator"),
        "{}",
        first.dump()
    );
    assert!(first.dump().contains(missing), "{}", first.dump());
    let saved = saved_keys(&keys_file).expect("vault-init wrote the keys file");
    assert_eq!(
        lab.kv(&saved.root_token, "apps/authentik", "secret_key")
            .as_deref(),
        Some("authentik-sk-71b0aa42"),
        "the complete secrets are written"
    );
    assert_eq!(
        lab.kv(&saved.root_token, "apps/immich", "DB_PASSWORD"),
        None,
        "a secret with a value missing is not written in part"
    );

    // The operator sets the missing value and resumes; the root token (gone with the first
    // process) comes from the saved file.
    let run_id = first.run_id();
    let mut extra = root_token_env(&keys_file);
    extra.push((missing, "immich-jwt-2a6f8e50".to_owned()));
    let done = d.resume_with(&run_id, &[], &extra);
    done.assert_ok("vault-data-loss resumed with the last value");
    assert_eq!(
        done.outcome_of("wait-external-secrets").as_deref(),
        Some("succeeded")
    );
    let saved = assert_data_loss_recovered(&lab, &key, &keys_file);
    // Restarted again, the new Vault unseals by itself with the KMS the Secret names.
    lab.restart_vault();
    assert!(
        lab.standin_log()
            .lines()
            .rev()
            .find(|l| l.contains("KMS"))
            .is_some_and(|l| l.contains("KMS usable")),
        "{}",
        lab.standin_log()
    );
    lab.wait_sealed(false);
    assert!(
        wait_until(Duration::from_secs(30), || lab.pod_ready()),
        "vault-0 Ready"
    );
    let secrets = data_loss_secrets(&key, Some(&saved));
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_not_written(d.state(), &[&r, &b, &b2, &first, &done], &secrets);
    assert_not_written(d0.state(), &[&refused], &secrets);
}

/// The main steps of vault-data-loss, in order.
fn data_loss_steps() -> Vec<String> {
    builtin("vault-data-loss")
        .main_steps()
        .map(|s| s.id.to_string())
        .collect()
}

/// The operator of vault-data-loss after the SIGKILL: gives the root token from the saved
/// file once it exists, answers interrupted steps after looking at the lab, and, killed
/// while Vault initialised before the keys reached the file (nobody holds the root token),
/// does the cleanup's answer: wipe Vault, run again.
struct DataLossOperator<'a> {
    lab: &'a VaultLab,
    keys_file: &'a Path,
    /// The Vault pod's uid before the crash.
    uid: Option<String>,
}

impl Recovery for DataLossOperator<'_> {
    fn resolve(&self, step: &str) -> String {
        match step {
            "restart-vault" if self.lab.pod_uid() != self.uid => "done",
            "enable-kv-mount" => match saved_keys(self.keys_file) {
                Some(k) if self.lab.kv_mounted(&k.root_token) => "done",
                _ => "rerun",
            },
            _ => "rerun",
        }
        .to_owned()
    }

    fn rounds(&self) -> usize {
        6
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        root_token_env(self.keys_file)
    }

    fn remedy(&mut self, d: &Drive, last: &Outcome) -> Option<Remedy> {
        (last.lost_secret("root_token")
            && !self.keys_file.exists()
            && self.lab.bao.seal_status().initialized)
            .then(|| {
                self.lab.wipe_vault();
                Remedy::NewRun(
                    "wiped Vault (init interrupted, no keys saved), new run".to_owned(),
                    d.finish(&d.run_args(&["run", &d.runbook, "--new"]), &[]),
                )
            })
    }
}

#[test]
fn data_loss_crash_and_resume() {
    let repo = example_repo();
    let (lab, key) = data_lost_lab();
    let keys_file = lab.dir.path().join("vault-init-keys.json");
    let d = unattended_drive(&lab, &key, repo.path(), &keys_file, &[]);
    let c = d.crash_and_recover(
        &data_loss_steps(),
        &mut DataLossOperator {
            lab: &lab,
            keys_file: &keys_file,
            uid: lab.pod_uid(),
        },
    );
    // vault-init (guarded by its check) initialised Vault exactly once: the keys file was
    // created once (never overwritten) and its token is the one that works.
    let saved = assert_data_loss_recovered(&lab, &key, &keys_file);
    let secrets = data_loss_secrets(&key, Some(&saved));
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let all: Vec<&Outcome> = c.outcomes.iter().collect();
    assert_not_written(d.state(), &all, &secrets);
}

#[test]
fn data_loss_refuses_to_initialise_a_vault_with_data() {
    let repo = example_repo();
    let mut lab = VaultLab::start();
    let key = lab.healthy_vault();
    let d = data_loss_drive(&lab, &key, repo.path());
    // The rehearsal sees it (after the restart it only previewed: a caveat).
    let r = d.rehearse();
    assert!(
        r.caveats()
            .iter()
            .any(|c| c.starts_with("check-uninitialised") && c.contains("initialized")),
        "{}",
        r.dump()
    );
    let run = d.run();
    assert_ne!(run.code, 0, "{}", run.dump());
    assert_eq!(
        run.outcome_of("check-uninitialised").as_deref(),
        Some("failed"),
        "{}",
        run.dump()
    );
    assert_eq!(run.outcome_of("vault-init"), None, "{}", run.dump());
    // The data is untouched and Vault came back by itself with it.
    lab.wait_sealed(false);
    lab.bao.wait_active();
    assert_eq!(
        lab.kv(lab.root_token(), "infrastructure/cloudflare", "api_token")
            .as_deref(),
        Some("cf-token-before-the-disaster")
    );
}
