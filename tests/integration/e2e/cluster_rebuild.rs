//! cluster-rebuild end to end: moto (the KMS key Vault auto-unseals with; the local MinIO
//! bucket `velero` and the offsite bucket `velero-offsite-homelab` with Velero backups and
//! etcd snapshots) and kubesim started EMPTY (the cluster is gone). The runbook's `make
//! k8s-deploy` and `make k8s-kubeconfig` are the stand-ins of
//! tests/lab/standins/cluster-rebuild: the first fills kubesim as the real rebuild would and
//! starts `cluster-controller` (Vault sealed until the KMS Secret exists and the key is
//! Enabled; the offsite BackupStorageLocation Unavailable until its credentials Secret exists;
//! Velero's backup sync from the buckets; a Restore writing its backup's objects back). drctl
//! runs with KUBECONFIG pointing at a file that does not exist, so every Kubernetes step
//! works only through the kubeconfig `make k8s-kubeconfig` wrote and `kube.use` switched to.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::lab::{KubeSim, Moto, kubectl_path, wait_until};
use crate::support::base64;
use crate::support::cli::root;
use crate::support::drive::{Drive, Outcome};
use crate::support::process::pid_alive;
use crate::support::secrets::{assert_not_written, files_under};

const RUNBOOK: &str = "cluster-rebuild";
const LOCAL_BUCKET: &str = "velero";
const OFFSITE_BUCKET: &str = "velero-offsite-homelab";
const LOCAL_BACKUPS: [(&str, &str); 2] = [
    ("daily-20260607020000", "2026-06-07T02:00:00Z"),
    ("daily-20260608020000", "2026-06-08T02:00:00Z"),
];
const OFFSITE_BACKUPS: [(&str, &str); 2] = [
    ("offsite-20260606030000", "2026-06-06T03:00:00Z"),
    ("offsite-20260607030000", "2026-06-07T03:00:00Z"),
];
const APPS: [&str; 4] = ["external-secrets", "nextcloud", "vault", "velero"];

fn standins() -> PathBuf {
    root().join("tests/lab/standins/cluster-rebuild")
}

fn scenario() -> String {
    std::fs::read_to_string(root().join("tests/fixtures/e2e/cluster-rebuild/scenario.yaml"))
        .expect("the cluster-rebuild kubesim scenario")
}

/// What is wrong with the lab.
#[derive(Clone, Copy, PartialEq)]
enum Broken {
    Nothing,
    KmsPendingDeletion,
    NoOffsiteBackups,
}

/// An AWS-looking access key pair, unique per call (the lab's IAM users).
fn access_key(tag: &str) -> (String, String) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = format!("{:032X}", t ^ (u128::from(std::process::id()) << 64));
    let id = format!("AKIA{tag}{}", &n[n.len() - 12..]);
    let secret = format!("{tag}-secret-{n}-wJalrXUtnFEMI");
    (id, secret)
}

/// moto + empty kubesim + a Git checkout stand-in, for one test.
struct Lab {
    sim: KubeSim,
    moto: Moto,
    dir: tempfile::TempDir,
    kms_key: String,
    kms_creds: (String, String),
    offsite_creds: (String, String),
}

impl Lab {
    fn start(broken: Broken) -> Lab {
        let sim = KubeSim::start_with_scenario(&scenario());
        let moto = Moto::start();
        let dir = tempfile::Builder::new()
            .prefix("drctl-e2e-cluster-rebuild-lab-")
            .tempdir()
            .expect("a lab directory");
        let kms_key = moto.create_kms_key("vault unseal");
        moto.create_alias("alias/vault-unseal", &kms_key);
        if broken == Broken::KmsPendingDeletion {
            moto.schedule_key_deletion(&kms_key, 7);
        }
        moto.create_bucket(LOCAL_BUCKET);
        moto.create_bucket(OFFSITE_BUCKET);
        for (name, at) in LOCAL_BACKUPS {
            put_backup(&moto, LOCAL_BUCKET, "", name, at, "default");
        }
        if broken != Broken::NoOffsiteBackups {
            for (name, at) in OFFSITE_BACKUPS {
                put_backup(&moto, OFFSITE_BUCKET, "velero/", name, at, "offsite");
            }
        }
        for stamp in ["20260607-031500", "20260608-031500"] {
            moto.put_object(
                OFFSITE_BUCKET,
                &format!("etcd-snapshots/snapshot-{stamp}.db"),
                b"etcd snapshot",
            );
            moto.put_object(
                OFFSITE_BUCKET,
                &format!("etcd-snapshots/pki-{stamp}.tar.gz"),
                b"pki tarball",
            );
        }
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).expect("the repository directory");
        let o = Command::new("git")
            .args(["init", "-q"])
            .arg(&repo)
            .output()
            .expect("git runs");
        assert!(o.status.success(), "git init: {o:?}");
        Lab {
            sim,
            moto,
            dir,
            kms_key,
            kms_creds: access_key("KMS"),
            offsite_creds: access_key("OFF"),
        }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn controller_dir(&self) -> PathBuf {
        self.dir.path().join("controller")
    }

    /// drctl for this lab: AWS at moto, NO working kubeconfig (only the one the runbook's
    /// `make k8s-kubeconfig` writes), the stand-ins as the make targets, the KMS credentials
    /// as DRCTL_INPUT_*. `source` answers the local/offsite decision.
    fn drive(&self, source: &str) -> Drive {
        let mut d = Drive::new(RUNBOOK)
            .envs(self.moto.env())
            .env(
                "KUBECONFIG",
                self.dir
                    .path()
                    .join("no-kubeconfig-yet")
                    .display()
                    .to_string(),
            )
            .env("KUBECTL", kubectl_path().display().to_string())
            .env(
                "DRCTL_LAB_KUBECONFIG",
                self.sim.kubeconfig_path().display().to_string(),
            )
            .env(
                "DRCTL_LAB_CONTROLLER_DIR",
                self.controller_dir().display().to_string(),
            )
            .env("DRCTL_LAB_PARENT_PID", std::process::id().to_string())
            .env("DRCTL_INPUT_KMS_AWS_ACCESS_KEY_ID", &self.kms_creds.0)
            .env("DRCTL_INPUT_KMS_AWS_SECRET_ACCESS_KEY", &self.kms_creds.1)
            .set("repo_dir", self.repo().display().to_string())
            .set(
                "deploy_command",
                standins().join("k8s-deploy").display().to_string(),
            )
            .set(
                "kubeconfig_command",
                standins().join("k8s-kubeconfig").display().to_string(),
            )
            .set("kms_key_id", &self.kms_key)
            .set("choose-backup-source", source);
        // On the local branch the offsite questions are never reached: no answer at all.
        if source != "offsite" {
            return d;
        }
        let (id, secret) = self.offsite_creds.clone();
        // Secret answers through the environment only, never argv.
        d = d
            .env("DRCTL_ANSWER_OFFSITE_ACCESS_KEY_ID", &id)
            .env("DRCTL_ANSWER_OFFSITE_SECRET_ACCESS_KEY", &secret);
        d
    }

    fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.sim.kubectl_ok(&a)).expect("kubectl -o json")
    }

    /// A Secret's decoded data, None when it does not exist.
    fn secret(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let o = self
            .sim
            .kubectl()
            .args(["get", "secret", "-n", ns, name, "-o", "json"])
            .output()
            .expect("kubectl runs");
        if !o.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&o.stdout).expect("a Secret as JSON");
        Some(
            v["data"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let raw = base64::decode(v.as_str().unwrap_or_default());
                    (k.clone(), String::from_utf8_lossy(&raw).into_owned())
                })
                .collect(),
        )
    }

    fn restores(&self) -> Vec<Value> {
        self.kubectl_json(&["get", "restores.velero.io", "-n", "backups"])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Nothing in the cluster: a rehearsal created nothing.
    fn assert_cluster_empty(&self, what: &str) {
        for kind in ["nodes", "applications.argoproj.io", "secrets"] {
            let all = self.kubectl_json(&["get", kind, "-A"]);
            assert_eq!(
                all["items"].as_array().map(Vec::len),
                Some(0),
                "{what}: a rehearsal must not create {kind}: {all:#}"
            );
        }
        assert!(
            !self.repo().join("kubeconfig").exists(),
            "{what}: a rehearsal must not run `make k8s-kubeconfig`"
        );
    }

    /// The lab after a full run restored `backup` from `source`: checked on the cluster,
    /// not in drctl's report.
    fn assert_rebuilt(&self, source: &str, backup: &str) {
        // The kubeconfig `make k8s-kubeconfig` wrote, the only way drctl could reach kubesim.
        assert!(
            self.repo().join("kubeconfig").exists(),
            "kubeconfig written"
        );
        let nodes = self.kubectl_json(&["get", "nodes"]);
        assert_eq!(
            nodes["items"].as_array().map(Vec::len),
            Some(3),
            "{nodes:#}"
        );
        // The KMS Secret, with the values given, and Vault auto-unsealed (Ready) with it.
        let kms = self
            .secret("vault", "vault-aws-kms")
            .expect("Secret vault/vault-aws-kms exists");
        let want: BTreeMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", self.kms_creds.0.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.kms_creds.1.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("VAULT_AWSKMS_SEAL_KEY_ID", self.kms_key.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(kms, want, "the vault-aws-kms Secret");
        let pod = self.kubectl_json(&["get", "pod", "-n", "vault", "vault-0"]);
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(ready, "vault-0 is Ready (auto-unsealed): {pod:#}");
        // Exactly one Restore, of the expected backup, Completed.
        let restores = self.restores();
        assert_eq!(
            restores.len(),
            1,
            "one Restore (no restore ran twice): {restores:#?}"
        );
        assert_eq!(restores[0]["spec"]["backupName"], backup, "{restores:#?}");
        assert_eq!(restores[0]["status"]["phase"], "Completed", "{restores:#?}");
        // The backup's objects are back (written by the restore, from that backup).
        let cm = self.kubectl_json(&["get", "configmap", "-n", "nextcloud", "nextcloud-restored"]);
        assert_eq!(cm["data"]["backup"], backup, "{cm:#}");
        assert_eq!(
            cm["data"]["location"],
            if source == "offsite" {
                "offsite"
            } else {
                "default"
            },
            "{cm:#}"
        );
        self.sim
            .kubectl_ok(&["get", "deployment", "-n", "nextcloud", "nextcloud"]);
        // Every Application Synced and Healthy.
        let apps = self.kubectl_json(&["get", "applications.argoproj.io", "-n", "argocd"]);
        let mut names: Vec<String> = Vec::new();
        for a in apps["items"].as_array().into_iter().flatten() {
            assert_eq!(a["status"]["sync"]["status"], "Synced", "{a:#}");
            assert_eq!(a["status"]["health"]["status"], "Healthy", "{a:#}");
            names.push(
                a["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        names.sort();
        assert_eq!(names, APPS, "the Applications of the ApplicationSet");
        // The offsite branch: the credentials file, and the location Velero validated with it.
        let offsite = self.secret("backups", "velero-offsite-credentials");
        let bsl = self.kubectl_json(&[
            "get",
            "backupstoragelocations.velero.io",
            "-n",
            "backups",
            "offsite",
        ]);
        if source == "offsite" {
            let cloud = offsite.expect("Secret backups/velero-offsite-credentials exists");
            assert_eq!(
                cloud.get("cloud").map(String::as_str),
                Some(
                    format!(
                        "[default]\naws_access_key_id={}\naws_secret_access_key={}\n",
                        self.offsite_creds.0, self.offsite_creds.1
                    )
                    .as_str()
                ),
                "the offsite credentials file"
            );
            assert_eq!(cloud.len(), 1, "only the key `cloud`: {:?}", cloud.keys());
            assert_eq!(bsl["status"]["phase"], "Available", "{bsl:#}");
        } else {
            assert!(
                offsite.is_none(),
                "the local branch creates no offsite Secret"
            );
            assert_eq!(bsl["status"]["phase"], "Unavailable", "{bsl:#}");
        }
    }

    /// No secret value in drctl's state directory or in what it printed.
    fn assert_no_secret_leak(&self, d: &Drive, outputs: &[&Outcome]) {
        assert!(
            !files_under(d.state()).is_empty(),
            "the state directory holds the run"
        );
        assert_not_written(
            d.state(),
            outputs,
            &[
                &self.kms_creds.0,
                &self.kms_creds.1,
                &self.offsite_creds.1,
                &self.offsite_creds.0,
            ],
        );
    }
}

impl Drop for Lab {
    /// Stops the cluster controller the deploy stand-in started (by its pid file).
    fn drop(&mut self) {
        let pidfile = self.controller_dir().join("controller.pid");
        let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            return;
        };
        // SAFETY: signalling a process id this test's stand-in started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if !wait_until(Duration::from_secs(10), || !pid_alive(pid as u32)) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if std::thread::panicking() {
            let log = self.controller_dir().join("controller.log");
            eprintln!(
                "--- cluster-controller log\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// A Velero backup in a bucket as Velero lays it out (`PREFIX/backups/NAME/velero-backup.json`)
/// plus the lab's stand-in for its tarball: the objects a restore writes back.
fn put_backup(moto: &Moto, bucket: &str, prefix: &str, name: &str, at: &str, loc: &str) {
    let base = format!("{prefix}backups/{name}");
    let backup = json!({
        "apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": name},
        "spec": {"storageLocation": loc, "includedNamespaces": ["*"]},
        "status": {"phase": "Completed", "startTimestamp": at, "completionTimestamp": at,
                   "errors": 0, "warnings": 0},
    });
    moto.put_object(
        bucket,
        &format!("{base}/velero-backup.json"),
        backup.to_string().as_bytes(),
    );
    let objects = json!([
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "nextcloud-restored", "namespace": "nextcloud"},
         "data": {"backup": name, "location": loc}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "nextcloud-data", "namespace": "nextcloud"},
         "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "50Gi"}}}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "nextcloud", "namespace": "nextcloud"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nextcloud"}},
                  "template": {"metadata": {"labels": {"app": "nextcloud"}},
                               "spec": {"containers": [{"name": "nextcloud", "image": "nextcloud:31"}]}}}},
    ]);
    moto.put_object(
        bucket,
        &format!("{base}/{name}-lab-objects.json"),
        objects.to_string().as_bytes(),
    );
}

/// The built-in runbook as it ships: after the deploy step it did not perform, a rehearsal
/// tries each read once and waits at most 5 s.
fn rehearse(lab: &Lab) -> Outcome {
    lab.drive("local").rehearse()
}

#[test]
fn rehearsal_on_a_healthy_lab_finds_no_problem_and_reads_for_real() {
    let lab = Lab::start(Broken::Nothing);
    let r = rehearse(&lab);
    r.assert_clean_rehearsal("healthy rehearsal");
    // The prerequisite checks are real reads: the KMS key, the newest offsite backup, the
    // newest etcd snapshot, the Git checkout.
    let notices: Vec<String> = r
        .events
        .iter()
        .filter(|e| e["event"] == "notice")
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    for title in [
        "The KMS key exists and is not pending deletion",
        "Velero backups exist on MinIO (local) or AWS S3 (offsite)",
        "etcd snapshots and PKI tarballs exist on the NAS or in S3",
        "A checkout of this homelab's Git repository",
    ] {
        assert!(
            notices
                .iter()
                .any(|n| n == &format!("prerequisite met: {title}")),
            "{title}: {notices:#?}\n{}",
            r.dump()
        );
    }
    // The rebuild is only shown; what cannot be read without it is a caveat, not a problem.
    for id in [
        "deploy-infrastructure",
        "fetch-kubeconfig",
        "create-kms-secret",
        "restore-local",
    ] {
        assert_eq!(
            r.outcome_of(id).as_deref(),
            Some("would_run"),
            "{id}: {}",
            r.dump()
        );
    }
    let caveats = r.caveats();
    for id in ["use-kubeconfig", "list-nodes"] {
        assert!(
            caveats.iter().any(|c| c.starts_with(&format!("{id}:"))),
            "{id} is a caveat: {caveats:#?}"
        );
    }
    // The later reads of the cluster meet the same cause: said once, not tried, named
    // under it.
    for id in ["wait-vault-ready", "list-local-backups", "check-pods"] {
        assert_eq!(
            r.outcome_of(id).as_deref(),
            Some("blocked"),
            "{id}: {}",
            r.dump()
        );
        assert!(
            caveats.iter().any(|c| c.starts_with("list-nodes:")
                && c.contains("also blocks:")
                && c.contains(id)),
            "{id} is named under its cause: {caveats:#?}"
        );
    }
    assert!(
        caveats
            .iter()
            .all(|c| c.contains("may follow from a change this rehearsal did not make")),
        "{caveats:#?}"
    );
    lab.assert_cluster_empty("healthy rehearsal");
}

#[test]
fn rehearsal_names_a_kms_key_pending_deletion() {
    let lab = Lab::start(Broken::KmsPendingDeletion);
    let r = rehearse(&lab);
    r.assert_problem(
        "kms-key-usable: prerequisite not met",
        "KMS key pending deletion",
    );
    let p = r.problems().join("\n");
    assert!(
        p.contains("PendingDeletion") && p.contains("vault-kms-key-deletion"),
        "the problem says what and what to do: {p}"
    );
    assert_eq!(r.problems().len(), 1, "only that problem: {p}");
    lab.assert_cluster_empty("broken rehearsal");
}

#[test]
fn rehearsal_names_missing_offsite_backups() {
    let lab = Lab::start(Broken::NoOffsiteBackups);
    let r = rehearse(&lab);
    r.assert_problem(
        "velero-backups-exist: prerequisite not met",
        "no Velero backup in the offsite bucket",
    );
    assert_eq!(
        r.problems().len(),
        1,
        "only that problem: {:#?}",
        r.problems()
    );
}

fn newest(backups: &[(&str, &str)]) -> String {
    backups
        .iter()
        .max_by_key(|(_, at)| *at)
        .map(|(n, _)| (*n).to_owned())
        .expect("a backup")
}

#[test]
fn full_run_restores_from_local_minio() {
    let lab = Lab::start(Broken::Nothing);
    let d = lab.drive("local");
    let o = d.run();
    o.assert_ok("full run, local");
    for id in [
        "offsite-access-key-id",
        "create-offsite-credentials",
        "restore-offsite",
    ] {
        assert_eq!(o.outcome_of(id).as_deref(), Some("skipped"), "{id}");
    }
    lab.assert_rebuilt("local", &newest(&LOCAL_BACKUPS));
    lab.assert_no_secret_leak(&d, &[&o]);
}

#[test]
fn full_run_restores_from_offsite_s3() {
    let lab = Lab::start(Broken::Nothing);
    let d = lab.drive("offsite");
    let o = d.run();
    o.assert_ok("full run, offsite");
    for id in ["list-local-backups", "restore-local"] {
        assert_eq!(o.outcome_of(id).as_deref(), Some("skipped"), "{id}");
    }
    assert_eq!(
        o.outcome_of("wait-offsite-location").as_deref(),
        Some("succeeded")
    );
    lab.assert_rebuilt("offsite", &newest(&OFFSITE_BACKUPS));
    lab.assert_no_secret_leak(&d, &[&o]);
}

/// SIGKILL at a random step of a full run on `source`, resume, same end state.
fn crash_and_resume(source: &str) {
    // The steps a full run starts, from a run on a first lab.
    let steps = {
        let lab = Lab::start(Broken::Nothing);
        let o = lab.drive(source).run();
        o.assert_ok("the reference run");
        o.started()
    };
    let lab = Lab::start(Broken::Nothing);
    let d = lab.drive(source);
    let backup = newest(if source == "offsite" {
        &OFFSITE_BACKUPS
    } else {
        &LOCAL_BACKUPS
    });
    let c = d.crash_and_resume(&steps, &|step| {
        // The operator looks at the cluster: a Restore of that backup exists, so the
        // interrupted restore was created; wait for it to end and call the step done.
        if step.starts_with("restore-") {
            let t = Instant::now();
            loop {
                let rs: Vec<Value> = lab
                    .restores()
                    .into_iter()
                    .filter(|r| r["spec"]["backupName"] == backup.as_str())
                    .collect();
                if rs.is_empty() {
                    return "rerun".to_owned();
                }
                if rs.iter().all(|r| r["status"]["phase"] == "Completed") {
                    return "done".to_owned();
                }
                assert!(
                    t.elapsed() < Duration::from_secs(120),
                    "the interrupted restore does not complete: {rs:#?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        "rerun".to_owned()
    });
    lab.assert_rebuilt(source, &backup);
    lab.assert_no_secret_leak(&d, &[c.outcome()]);
}

#[test]
fn sigkill_at_a_random_step_then_resume_local() {
    crash_and_resume("local");
}

#[test]
fn sigkill_at_a_random_step_then_resume_offsite() {
    crash_and_resume("offsite");
}

// ---------------------------------------------------------------------------------------
// An operator at a terminal (expectrl): every prompt answered by typing.
// ---------------------------------------------------------------------------------------

const PTY_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn an_operator_rebuilds_from_offsite_on_a_terminal() {
    use crate::term::{ENTER, Pty};
    let lab = Lab::start(Broken::Nothing);
    // The same drive as the unattended runs, but no --yes, no --set answers and no
    // DRCTL_INPUT_* / DRCTL_ANSWER_* secrets: the operator types them.
    let d = lab.drive("offsite");
    let mut cmd = d.command();
    cmd.env_remove("DRCTL_INPUT_KMS_AWS_ACCESS_KEY_ID")
        .env_remove("DRCTL_INPUT_KMS_AWS_SECRET_ACCESS_KEY")
        .env_remove("DRCTL_ANSWER_OFFSITE_ACCESS_KEY_ID")
        .env_remove("DRCTL_ANSWER_OFFSITE_SECRET_ACCESS_KEY")
        .args(["run", RUNBOOK]);
    for (k, v) in [
        ("repo_dir", lab.repo().display().to_string()),
        (
            "deploy_command",
            standins().join("k8s-deploy").display().to_string(),
        ),
        (
            "kubeconfig_command",
            standins().join("k8s-kubeconfig").display().to_string(),
        ),
        ("kms_key_id", lab.kms_key.clone()),
    ] {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    let mut p = Pty::spawn(cmd, 120, PTY_TIMEOUT);
    // What drctl cannot check (the root token, the AWS keys), the operator confirms.
    p.expect("Do you have everything listed above at hand?");
    p.send("y");
    // Reads run without a question; every change asks.
    for step in [
        "deploy-infrastructure` (shell)?",
        "fetch-kubeconfig` (shell)?",
        "create-kms-secret` (kube.secret)?",
    ] {
        p.confirm_run(&format!("Run step `{step}"));
    }
    // The masked inputs, asked when the step that uses them is confirmed.
    p.expect("kms_aws_access_key_id (");
    p.send_secret(&format!("{}{ENTER}", lab.kms_creds.0));
    p.expect("kms_aws_secret_access_key (");
    p.send_secret(&format!("{}{ENTER}", lab.kms_creds.1));
    // The decision: the NAS is lost.
    p.expect("? Where do you restore from?");
    p.expect("❯ local: Local MinIO (NAS intact)");
    p.pick(
        &[
            "local: Local MinIO (NAS intact)",
            "offsite: Offsite AWS S3 (NAS lost or unavailable)",
        ],
        1,
    );
    p.expect("? AWS access key ID of the offsite IAM user");
    p.send_secret(&format!("{}{ENTER}", lab.offsite_creds.0));
    p.expect("? AWS secret access key of the offsite IAM user");
    p.send_secret(&format!("{}{ENTER}", lab.offsite_creds.1));
    for step in [
        "create-offsite-credentials` (kube.secret)?",
        "restore-offsite` (velero.restore)?",
    ] {
        p.confirm_run(&format!("Run step `{step}"));
    }
    p.expect("finished:");
    let exit = p.exit_code();
    let screen = p.screen();
    assert_eq!(exit, 0, "{screen}");
    let raw = String::from_utf8_lossy(&p.raw).into_owned();
    for s in [
        &lab.kms_creds.0,
        &lab.kms_creds.1,
        &lab.offsite_creds.0,
        &lab.offsite_creds.1,
    ] {
        assert!(
            !raw.contains(s.as_str()),
            "a typed secret was shown:\n{screen}"
        );
    }
    assert!(
        !screen.contains("Run step `list-nodes`") && !screen.contains("Run step `show-restores`"),
        "reads do not ask:\n{screen}"
    );
    lab.assert_rebuilt("offsite", &newest(&OFFSITE_BACKUPS));
    lab.assert_no_secret_leak(&d, &[]);
}
