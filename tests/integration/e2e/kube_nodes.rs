//! End-to-end runs of nas-outage and node-destruction-rebuild on the lab: kubesim for the
//! cluster, sshd for the Kubernetes node (nas-outage) and the new server
//! (node-destruction-rebuild), and the stand-ins of tests/lab/standins/ for what the lab
//! cannot have (`showmount` against a NAS modelled as an exports file, `lsb_release`, `sudo`
//! with a sudoers.d, the homelab repository's `./provision/*.sh`). Each runbook gets a
//! rehearsal on a lab in the right state (no problem) and on a broken one (the problem
//! named), a full run with `--yes` checked against the lab, and a SIGKILL at a seeded step
//! followed by `resume` to the same lab state.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::lab::{KubeSim, Sshd, kubectl_path};
use crate::support::cli::root;
use crate::support::drive::Drive;
use crate::support::kube::{condition, kget, kitems, object_name};
use crate::support::secrets::assert_not_written;
use crate::support::worker::Worker;

/// Generous: the machine is shared by several compiling engineers.
const LAB_DEADLINE: Duration = Duration::from_secs(90);

/// PATH of a lab host after its stand-ins.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn scenario(name: &str) -> String {
    let p = root().join("tests/fixtures/e2e/kube-nodes").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn standins(name: &str) -> PathBuf {
    root().join("tests/lab/standins").join(name)
}

fn current_user() -> String {
    let o = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// kubectl on the simulator without borrowing the `KubeSim` (for the kubelet thread).
fn kubectl_for(kubeconfig: &Path, cache: &Path) -> Command {
    let mut c = Command::new(kubectl_path());
    c.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null());
    c
}

fn eventually(what: &str, cond: impl FnMut() -> bool) {
    super::eventually_within(LAB_DEADLINE, what, cond);
}

/// The state of step `id` in the journal of any run under `state` ("running", ...).
fn journal_step_states(state: &Path, id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(state.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(e.path().join("journal.json")) else {
            continue;
        };
        let Ok(j) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        for s in j["steps"].as_array().into_iter().flatten() {
            if s["id"] == id
                && let Some(st) = s["state"].as_str()
            {
                out.push(st.to_owned());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// nas-outage
// ---------------------------------------------------------------------------------------

const NAS_HOST: &str = "nas.lab";
/// The pods that mount NFS-backed PVCs (namespace, name).
const NFS_PODS: [(&str, &str); 2] = [("nextcloud", "nextcloud-0"), ("immich", "immich-server-0")];
const EXPORTS: &str = "/volume1/k8s   10.0.0.0/24\n/volume1/immich 10.0.0.0/24\n";

struct NasLab {
    sim: KubeSim,
    sshd: Sshd,
    nas: tempfile::TempDir,
    _kubelet: Worker,
}

/// The simulated kubelet of the NFS pods: while the NAS exports are missing, a pending pod
/// waits in ContainerCreating (its volume cannot mount); once they are back, it starts.
fn nfs_kubelet(sim: &KubeSim, exports: PathBuf) -> Worker {
    let kc = sim.kubeconfig_path();
    let cache = sim.cache_dir();
    Worker::spawn(Duration::from_millis(100), move || {
        let nas_up = exports.exists();
        let Ok(o) = kubectl_for(&kc, &cache)
            .args(["get", "pods", "-A", "-o", "json"])
            .output()
        else {
            return true;
        };
        let list: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        for p in list["items"].as_array().into_iter().flatten() {
            let ns = p["metadata"]["namespace"].as_str().unwrap_or_default();
            let n = object_name(p);
            if !NFS_PODS.contains(&(ns, n.as_str()))
                || p["status"]["phase"] != "Pending"
                || !p["metadata"]["deletionTimestamp"].is_null()
            {
                continue;
            }
            let container = p["spec"]["containers"][0]["name"].clone();
            let status = if nas_up {
                json!({"status": {"phase": "Running", "conditions": [
                    {"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
                    {"type": "ContainersReady", "status": "True"}, {"type": "Ready", "status": "True"}],
                  "containerStatuses": [{"name": container, "ready": true, "restartCount": 0, "started": true,
                    "state": {"running": {"startedAt": "2026-06-08T10:00:00Z"}}}]}})
            } else if p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                != "ContainerCreating"
            {
                json!({"status": {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
                  "containerStatuses": [{"name": container, "ready": false, "restartCount": 0, "started": false,
                    "state": {"waiting": {"reason": "ContainerCreating"}}}]}})
            } else {
                continue;
            };
            let _ = kubectl_for(&kc, &cache)
                .args(["patch", "pod", "-n", ns, &n, "--subresource=status"])
                .args(["--type=merge", "-p", &status.to_string()])
                .output();
        }
        true
    })
}

impl NasLab {
    fn start() -> NasLab {
        let sim = KubeSim::start_with_scenario(&scenario("nas-outage.yaml"));
        let nas = tempfile::Builder::new()
            .prefix("drctl-e2e-nas-")
            .tempdir()
            .expect("a temporary NAS directory");
        let mut sshd = Sshd::start();
        sshd.set_session_env(&[
            (
                "PATH",
                format!("{}:{SYSTEM_PATH}", standins("nas-outage").display()),
            ),
            ("LAB_NAS_DIR", nas.path().display().to_string()),
        ]);
        let kubelet = nfs_kubelet(&sim, nas.path().join(format!("{NAS_HOST}.exports")));
        let lab = NasLab {
            sim,
            sshd,
            nas,
            _kubelet: kubelet,
        };
        eventually(
            "the NFS pods stuck in ContainerCreating, whoami Running",
            || lab.nfs_pods_stuck() && lab.whoami_running(),
        );
        lab
    }

    fn exports(&self) -> PathBuf {
        self.nas.path().join(format!("{NAS_HOST}.exports"))
    }

    /// The NAS is repaired: its NFS exports are back.
    fn restore_nas(&self) {
        let tmp = self.nas.path().join("exports.tmp");
        std::fs::write(&tmp, EXPORTS).expect("write the NAS exports");
        std::fs::rename(&tmp, self.exports()).expect("publish the NAS exports");
    }

    fn nas_up(&self) -> bool {
        self.exports().exists()
    }

    fn pod(&self, ns: &str, n: &str) -> Option<Value> {
        kget(&self.sim, &["pod", "-n", ns, n])
    }

    fn nfs_pods_stuck(&self) -> bool {
        NFS_PODS.iter().all(|(ns, n)| {
            self.pod(ns, n).is_some_and(|p| {
                p["status"]["phase"] == "Pending"
                    && p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                        == "ContainerCreating"
            })
        })
    }

    fn whoami_running(&self) -> bool {
        let pods = kitems(&self.sim, &["pods", "-n", "default", "-l", "app=whoami"]);
        pods.len() == 1 && pods[0]["status"]["phase"] == "Running"
    }

    fn drive(&self) -> Drive {
        Drive::new("nas-outage")
            .envs(self.sim.env())
            .env(
                "DRCTL_SSH_CONFIG",
                self.sshd.config_path().display().to_string(),
            )
            .set("node", "control-plane")
            .set("nas_host", NAS_HOST)
    }

    /// The NAS exports its shares (seen from the node, as the runbook looks), and every pod
    /// is Running and Ready: the NFS pods recovered, nothing is left Pending.
    fn assert_recovered(&self) {
        let shown = self.sshd.ssh_ok(&format!("showmount -e {NAS_HOST}"));
        assert!(shown.contains("/volume1/k8s"), "{shown}");
        eventually("every pod Running and Ready", || {
            let pods = kitems(&self.sim, &["pods", "-A"]);
            pods.len() == 3
                && pods.iter().all(|p| {
                    p["status"]["phase"] == "Running"
                        && condition(p, "Ready").as_deref() == Some("True")
                })
        });
        for (ns, n) in NFS_PODS {
            let p = self.pod(ns, n).expect("the NFS pod");
            assert_eq!(p["status"]["phase"], "Running", "{p:#}");
        }
        let pending = kitems(
            &self.sim,
            &["pods", "-A", "--field-selector", "status.phase=Pending"],
        );
        assert!(pending.is_empty(), "{pending:#?}");
    }
}

#[test]
fn nas_outage_rehearsal_is_clean_and_names_an_unreachable_node() {
    let mut lab = NasLab::start();
    let d = lab.drive().set("choose-outage-length", "extended");
    let r = d.rehearse();
    r.assert_clean_rehearsal("rehearsal with the NAS down");
    let listed = r.output_of("show-hanging-pods");
    for (_, n) in NFS_PODS {
        assert!(listed.contains(n), "{n} is listed as hanging: {}", r.dump());
    }
    assert!(!listed.contains("whoami"), "{}", r.dump());
    assert_eq!(
        r.outcome_of("delete-hanging-pods").as_deref(),
        Some("would_run")
    );
    assert_eq!(r.outcome_of("restore-nas").as_deref(), Some("would_run"));
    // The NAS is still down after restore-nas (not done in a rehearsal): a caveat.
    assert!(
        r.caveats().iter().any(|c| c.contains("check-nfs-exports")),
        "{}",
        r.dump()
    );
    // A rehearsal deletes nothing: the same pods (same uid) still hang.
    assert!(lab.nfs_pods_stuck());

    // Broken: the node the runbook checks the NAS from does not answer over SSH.
    lab.sshd.stop();
    let r = lab.drive().rehearse();
    r.assert_problem("ssh-node", "rehearsal with the node unreachable");
    r.assert_problem("control-plane", "the problem names the host");
}

#[test]
fn nas_outage_runs_to_the_end_and_the_pods_recover() {
    let lab = NasLab::start();
    let uids: Vec<Value> = NFS_PODS
        .iter()
        .map(|(ns, n)| lab.pod(ns, n).expect("pod")["metadata"]["uid"].clone())
        .collect();
    let d = lab
        .drive()
        .set("choose-outage-length", "extended")
        .confirm("delete-hanging-pods");
    // The run stops at the manual NAS repair: an operator's work.
    let first = d.run();
    assert_eq!(first.code, 4, "{}", first.dump());
    assert_eq!(
        first.outcome_of("restore-nas").as_deref(),
        Some("needs_operator"),
        "{}",
        first.dump()
    );
    assert_eq!(
        first.outcome_of("delete-hanging-pods").as_deref(),
        Some("succeeded")
    );
    // The hanging pods were deleted; their StatefulSets recreated them, and they hang again.
    eventually("the NFS pods recreated and hanging again", || {
        lab.nfs_pods_stuck()
            && NFS_PODS
                .iter()
                .zip(&uids)
                .all(|((ns, n), uid)| lab.pod(ns, n).is_some_and(|p| &p["metadata"]["uid"] != uid))
    });
    // The operator repairs the NAS and says so.
    lab.restore_nas();
    let d = d.confirm("restore-nas");
    let r = d.resume(&first.run_id(), &[]);
    r.assert_ok("resume after the NAS repair");
    assert!(
        r.output_of("check-nfs-exports").contains("/volume1/k8s"),
        "{}",
        r.dump()
    );
    lab.assert_recovered();
}

#[test]
fn nas_outage_resumes_after_sigkill_to_the_same_state() {
    let lab = Arc::new(NasLab::start());
    let d = lab
        .drive()
        .set("choose-outage-length", "extended")
        .confirm("delete-hanging-pods")
        .confirm("restore-nas");
    // The operator repairs the NAS while drctl deletes the hanging pods, and confirms
    // restore-nas (given upfront here): the exports come back once the journal shows the
    // deletion done or the repair step reached (the journal is the run's own record).
    let state = d.state().to_path_buf();
    let l = lab.clone();
    let _operator = Worker::spawn(Duration::from_millis(100), move || {
        let deleted = journal_step_states(&state, "delete-hanging-pods");
        let repair = journal_step_states(&state, "restore-nas");
        if deleted.iter().any(|s| s == "succeeded")
            || repair.iter().any(|s| s == "running" || s == "succeeded")
        {
            l.restore_nas();
            return false;
        }
        true
    });
    let steps = [
        "show-hanging-pods",
        "choose-outage-length",
        "delete-hanging-pods",
        "restore-nas",
        "check-nfs-exports",
        "wait-pods-recovered",
    ]
    .map(String::from);
    d.crash_and_resume(&steps, &|step| match step {
        // Reads: nothing changed, run them again.
        "show-hanging-pods"
        | "choose-outage-length"
        | "check-nfs-exports"
        | "wait-pods-recovered" => "rerun".to_owned(),
        // The operator looks at the NAS: exporting again means the repair is done.
        "restore-nas" if lab.nas_up() => "done".to_owned(),
        "restore-nas" => "rerun".to_owned(),
        other => panic!("step `{other}` was interrupted and needs a decision, unexpectedly"),
    });
    lab.assert_recovered();
}

// ---------------------------------------------------------------------------------------
// node-destruction-rebuild
// ---------------------------------------------------------------------------------------

const UNSEAL_KEY: &str = "lab-unseal-Zq8v3Tn1Wx7Kc4Rm";
const CLOUDFLARE_TOKEN: &str = "lab-cf-Hy2Lp9Bd6Ns0Jf5Gt";

/// The Longhorn backups on the NAS: volume, backup, created, size. vault-data has two: the
/// restore must take the newer.
const LONGHORN_BACKUPS: [(&str, &str, &str, &str); 6] = [
    (
        "vault-data",
        "backup-vault-20260607",
        "2026-06-07T03:00:00Z",
        "10Gi",
    ),
    (
        "vault-data",
        "backup-vault-20260608",
        "2026-06-08T03:00:00Z",
        "10Gi",
    ),
    (
        "postgres-data",
        "backup-postgres-20260608",
        "2026-06-08T03:05:00Z",
        "20Gi",
    ),
    (
        "nextcloud-data",
        "backup-nextcloud-20260608",
        "2026-06-08T03:10:00Z",
        "50Gi",
    ),
    (
        "immich-data",
        "backup-immich-20260608",
        "2026-06-08T03:15:00Z",
        "30Gi",
    ),
    (
        "authentik-data",
        "backup-authentik-20260608",
        "2026-06-08T03:20:00Z",
        "5Gi",
    ),
];

/// The newest backup of each volume.
fn newest_backups() -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<(&str, &str)> = Vec::new();
    for (vol, b, _, _) in LONGHORN_BACKUPS {
        match v.iter_mut().find(|(x, _)| *x == vol) {
            Some(e) => e.1 = b, // listed oldest first
            None => v.push((vol, b)),
        }
    }
    v
}

struct RebuildLab {
    sim: KubeSim,
    sshd: Sshd,
    server: tempfile::TempDir,
    nas: tempfile::TempDir,
    repo: tempfile::TempDir,
    user: String,
}

impl RebuildLab {
    /// The old server is gone; the new one (sshd, root dir `server`) has no OS yet; the NAS
    /// holds the Longhorn backups (or none); the homelab repository is checked out.
    fn start(with_backups: bool) -> RebuildLab {
        let sim = KubeSim::start_with_scenario(&scenario("node-destruction-rebuild.yaml"));
        let tmp = |p: &str| {
            tempfile::Builder::new()
                .prefix(p)
                .tempdir()
                .expect("a temporary directory")
        };
        let server = tmp("drctl-e2e-server-");
        let nas = tmp("drctl-e2e-nas-");
        let repo = tmp("drctl-e2e-homelab-");
        if with_backups {
            let lines: String = LONGHORN_BACKUPS
                .iter()
                .map(|(v, b, c, s)| format!("{v} {b} {c} {s}\n"))
                .collect();
            std::fs::write(nas.path().join("longhorn-backups"), lines)
                .expect("write the NAS backups");
        }
        let git = Command::new("git")
            .args(["init", "-q"])
            .arg(repo.path())
            .output()
            .expect("run git init");
        assert!(git.status.success(), "git init: {git:?}");
        let provision = repo.path().join("provision");
        std::fs::create_dir_all(&provision).expect("create provision/");
        for (script, standin) in [
            ("rebuild.sh", "rebuild"),
            ("activate-gitops.sh", "activate-gitops"),
        ] {
            let p = provision.join(script);
            std::fs::write(
                &p,
                format!(
                    "#!/bin/sh\n# The lab's stand-in for the homelab repository's {script}.\nexec {} \"$@\"\n",
                    standins("node-destruction-rebuild").join(standin).display()
                ),
            )
            .expect("write a provision script");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                .expect("chmod a provision script");
        }
        let mut sshd = Sshd::start();
        sshd.set_session_env(&[
            (
                "PATH",
                format!(
                    "{}:{}:{SYSTEM_PATH}",
                    standins("node-destruction-rebuild/server-bin").display(),
                    server.path().join("usr/local/bin").display()
                ),
            ),
            ("LAB_SERVER_ROOT", server.path().display().to_string()),
        ]);
        RebuildLab {
            sim,
            sshd,
            server,
            nas,
            repo,
            user: current_user(),
        }
    }

    /// Step 1 by hand: Ubuntu RELEASE installed on the new server.
    fn provision(&self, release: &str) {
        let etc = self.server.path().join("etc");
        std::fs::create_dir_all(&etc).expect("create the server's /etc");
        std::fs::write(
            etc.join("os-release"),
            format!(
                "PRETTY_NAME=\"Ubuntu {release} LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"{release}\"\nID=ubuntu\n"
            ),
        )
        .expect("write os-release");
    }

    /// Step 2 by hand: the SSH user gets passwordless sudo (the seed's sudoers line).
    fn setup_ssh(&self) {
        let d = self.server.path().join("etc/sudoers.d");
        std::fs::create_dir_all(&d).expect("create sudoers.d");
        std::fs::write(
            d.join(&self.user),
            format!("{} ALL=(ALL) NOPASSWD:ALL\n", self.user),
        )
        .expect("write the sudoers rule");
    }

    fn kubeconfig(&self) -> PathBuf {
        self.repo.path().join("kubeconfig")
    }

    fn lab_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "DRCTL_SSH_CONFIG".into(),
                self.sshd.config_path().display().to_string(),
            ),
            ("KUBECTL".into(), kubectl_path().display().to_string()),
            (
                "DRCTL_LAB_KUBECONFIG".into(),
                self.sim.kubeconfig_path().display().to_string(),
            ),
            (
                "LAB_SERVER_ROOT".into(),
                self.server.path().display().to_string(),
            ),
            ("LAB_NAS_DIR".into(), self.nas.path().display().to_string()),
            // The operator's answers to rebuild.sh's questions.
            ("LAB_ANSWER_FRESH".into(), "no".into()),
            ("LAB_ANSWER_UNSEAL_KEY".into(), UNSEAL_KEY.into()),
            (
                "LAB_ANSWER_CLOUDFLARE_TOKEN".into(),
                CLOUDFLARE_TOKEN.into(),
            ),
        ]
    }

    fn drive(&self) -> Drive {
        Drive::new("node-destruction-rebuild")
            .envs(self.lab_env())
            .env_remove_kubeconfig()
            .set("server", "control-plane")
            .set("ssh_user", &self.user)
            .set("repo_dir", self.repo.path().display().to_string())
            .set("kubeconfig", self.kubeconfig().display().to_string())
            .confirm("gather-secrets")
            .confirm("run-rebuild")
    }

    /// The operator ran ./provision/rebuild.sh in a terminal of their own (the fallback).
    fn rebuild_by_hand(&self) {
        let o = Command::new(self.repo.path().join("provision/rebuild.sh"))
            .current_dir(self.repo.path())
            .envs(self.lab_env())
            .stdin(Stdio::null())
            .output()
            .expect("run rebuild.sh");
        assert!(
            o.status.success(),
            "rebuild.sh: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn k3s_installed(&self) -> bool {
        self.server.path().join("usr/local/bin/k3s").exists()
    }

    /// The lab after the whole runbook: k3s on the new server, its node Ready, every
    /// Longhorn volume restored from its newest backup, the unseal key in its Secret,
    /// Vault Ready, the store and every ExternalSecret synced, every app Synced/Healthy.
    fn assert_rebuilt(&self) {
        let nodes = self.sshd.ssh_ok("sudo -n k3s kubectl get nodes -o name");
        assert_eq!(nodes.trim(), "node/homelab", "k3s on the server: {nodes}");
        let node = kget(&self.sim, &["node", "homelab"]).expect("the new node");
        assert_eq!(
            condition(&node, "Ready").as_deref(),
            Some("True"),
            "{node:#}"
        );

        let vols = kitems(&self.sim, &["volumes.longhorn.io", "-n", "longhorn-system"]);
        let newest = newest_backups();
        assert_eq!(vols.len(), newest.len(), "{vols:#?}");
        for (vol, backup) in &newest {
            let v = vols
                .iter()
                .find(|v| object_name(v) == *vol)
                .unwrap_or_else(|| panic!("volume {vol} restored: {vols:#?}"));
            let from = v["spec"]["fromBackup"].as_str().unwrap_or_default();
            assert!(
                from.contains(&format!("backup={backup}&")),
                "{vol} from its newest backup {backup}: {v:#}"
            );
            assert_eq!(v["status"]["restoreRequired"], false, "{v:#}");
            assert_eq!(v["status"]["lastBackup"], *backup, "{v:#}");
        }

        let key = self.sim.kubectl_ok(&[
            "get",
            "secret",
            "-n",
            "security",
            "vault-unseal-key",
            "-o",
            "go-template={{.data.key | base64decode}}",
        ]);
        assert!(
            key == UNSEAL_KEY,
            "the unseal key given to rebuild.sh is in vault-unseal-key"
        );

        eventually("vault-0 Ready", || {
            kget(&self.sim, &["pod", "-n", "security", "vault-0"])
                .is_some_and(|p| condition(&p, "Ready").as_deref() == Some("True"))
        });
        let store = kget(&self.sim, &["clustersecretstore", "k8s-secrets"]).expect("the store");
        assert_eq!(
            condition(&store, "Ready").as_deref(),
            Some("True"),
            "{store:#}"
        );
        let es = kitems(&self.sim, &["externalsecrets", "-A"]);
        assert_eq!(es.len(), 3, "{es:#?}");
        for e in &es {
            assert_eq!(condition(e, "Ready").as_deref(), Some("True"), "{e:#}");
        }
        let pw = self.sim.kubectl_ok(&[
            "get",
            "secret",
            "-n",
            "nextcloud",
            "nextcloud-db",
            "-o",
            "go-template={{.data.password | base64decode}}",
        ]);
        assert_eq!(pw, "from-vault-nextcloud");
        let s = kget(&self.sim, &["secret", "-n", "immich", "immich-db"]).expect("immich-db");
        let mut keys: Vec<&String> = s["data"].as_object().expect("data").keys().collect();
        keys.sort();
        assert_eq!(keys, ["password", "username"], "{s:#}");

        let apps = kitems(&self.sim, &["applications", "-n", "argocd"]);
        assert_eq!(apps.len(), 5, "{apps:#?}");
        for a in &apps {
            assert_eq!(a["status"]["sync"]["status"], "Synced", "{a:#}");
            assert_eq!(a["status"]["health"]["status"], "Healthy", "{a:#}");
        }
    }
}

trait NoKubeconfig {
    fn env_remove_kubeconfig(self) -> Self;
}

impl NoKubeconfig for Drive {
    /// The operator's KUBECONFIG pointed at the destroyed cluster: drctl talks to the new one
    /// only through the runbook's `kube.use`.
    fn env_remove_kubeconfig(self) -> Self {
        self.env("KUBECONFIG", "/nonexistent/old-cluster-kubeconfig")
    }
}

#[test]
fn node_destruction_rebuild_rehearsals_are_clean_and_name_missing_backups() {
    let lab = RebuildLab::start(true);
    lab.provision("26.04");
    lab.setup_ssh();

    // Before the rebuild: the new server is ready (steps 1 and 2 done, their checks pass).
    let d = lab.drive();
    let r = d.rehearse();
    r.assert_clean_rehearsal("rehearsal with the new server ready");
    assert_eq!(
        r.outcome_of("provision-server").as_deref(),
        Some("already_done"),
        "{}",
        r.dump()
    );
    assert!(
        r.output_of("provision-server").contains("Ubuntu 26.04"),
        "{}",
        r.dump()
    );
    assert_eq!(r.outcome_of("setup-ssh").as_deref(), Some("already_done"));
    assert_eq!(r.outcome_of("run-rebuild").as_deref(), Some("would_run"));
    assert!(!lab.k3s_installed(), "a rehearsal rebuilt nothing");
    assert!(!lab.kubeconfig().exists());
    assert!(kitems(&lab.sim, &["nodes"]).is_empty());

    // After the rebuild (run by hand): the rest is rehearsed against the new cluster.
    lab.rebuild_by_hand();
    let r = lab.drive().rehearse();
    r.assert_clean_rehearsal("rehearsal after the rebuild");
    assert_eq!(r.outcome_of("run-rebuild").as_deref(), Some("already_done"));
    assert!(
        r.output_of("list-longhorn-backups")
            .contains("backup-vault-20260608"),
        "{}",
        r.dump()
    );
    let restore = r.output_of("restore-longhorn-volumes");
    assert!(
        restore.contains("would restore volume vault-data from backup backup-vault-20260608"),
        "{}",
        r.dump()
    );
    assert_eq!(
        r.outcome_of("activate-gitops").as_deref(),
        Some("would_run")
    );
    assert!(
        kitems(&lab.sim, &["volumes.longhorn.io", "-A"]).is_empty(),
        "a rehearsal restored nothing"
    );
    assert!(kitems(&lab.sim, &["applications", "-A"]).is_empty());

    // Broken: the NAS holds no Longhorn backup (the backup target is empty).
    let empty = RebuildLab::start(false);
    empty.provision("26.04");
    empty.setup_ssh();
    empty.rebuild_by_hand();
    let r = empty.drive().rehearse();
    r.assert_problem(
        "has a Completed backup",
        "rehearsal with no Longhorn backup on the NAS",
    );
    assert_eq!(
        r.outcome_of("restore-longhorn-volumes").as_deref(),
        Some("would_run")
    );

    // Broken: the homelab repository is not checked out where the runbook is told.
    let not_a_repo = tempfile::tempdir().expect("a temporary directory");
    let r = lab
        .drive()
        .set("repo_dir", not_a_repo.path().display().to_string())
        .rehearse();
    r.assert_problem("git-repository", "rehearsal without the Git checkout");
}

#[test]
fn node_destruction_rebuild_runs_to_the_end_and_the_cluster_is_back() {
    let lab = RebuildLab::start(true);
    let d = lab.drive();
    // Step 1 is the operator's: the run waits for it.
    let first = d.run();
    assert_eq!(first.code, 4, "{}", first.dump());
    assert_eq!(
        first.outcome_of("provision-server").as_deref(),
        Some("needs_operator"),
        "{}",
        first.dump()
    );
    let run_id = first.run_id();
    lab.provision("26.04");
    let d = d.confirm("provision-server");
    let second = d.resume(&run_id, &[]);
    // Step 2 too: without the sudoers rule its check fails, so drctl waits again.
    assert_eq!(second.code, 4, "{}", second.dump());
    assert_eq!(
        second.outcome_of("setup-ssh").as_deref(),
        Some("needs_operator"),
        "{}",
        second.dump()
    );
    lab.setup_ssh();
    let d = d.confirm("setup-ssh");
    let last = d.resume(&run_id, &[]);
    last.assert_ok("the rebuild to the end");
    assert!(
        last.output_of("restore-longhorn-volumes")
            .contains("restore from backup backup-vault-20260608 started"),
        "{}",
        last.dump()
    );
    lab.assert_rebuilt();
    assert_not_written(
        d.state(),
        &[&first, &second, &last],
        &[UNSEAL_KEY, CLOUDFLARE_TOKEN],
    );
}

#[test]
fn node_destruction_rebuild_resumes_after_sigkill_to_the_same_state() {
    let lab = RebuildLab::start(true);
    lab.provision("26.04");
    lab.setup_ssh();
    let d = lab.drive();
    let steps = [
        "gather-secrets",
        "run-rebuild",
        "use-kubeconfig",
        "list-nodes",
        "list-longhorn-backups",
        "restore-longhorn-volumes",
        "activate-gitops",
        "wait-vault-ready",
        "wait-secrets-synced",
        "wait-apps",
    ]
    .map(String::from);
    let c = d.crash_and_resume(&steps, &|step| match step {
        // Reads (and the operator's look at the secrets): nothing changed.
        "gather-secrets"
        | "use-kubeconfig"
        | "list-nodes"
        | "list-longhorn-backups"
        | "wait-vault-ready"
        | "wait-secrets-synced"
        | "wait-apps" => "rerun".to_owned(),
        // rebuild.sh converges (its check said k3s is not up yet); activate-gitops applies;
        // the restore follows volumes already restoring from the same backup.
        "run-rebuild" | "activate-gitops" | "restore-longhorn-volumes" => "rerun".to_owned(),
        other => panic!("step `{other}` was interrupted and needs a decision, unexpectedly"),
    });
    lab.assert_rebuilt();
    assert_not_written(d.state(), &[c.outcome()], &[UNSEAL_KEY]);
}
