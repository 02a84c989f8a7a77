//! The built-in `etcd-restore` runbook end to end on the lab, as an operator runs it: the
//! "control plane" is the lab's sshd (host alias `control-plane`) with etcd as a static pod
//! (`EtcdSupervisor`), `crictl` and `sudo` from `tests/lab/standins/etcd` on its PATH; the
//! snapshot and PKI tarball are in moto's `velero-offsite-homelab/etcd-snapshots/`; the
//! API server is kubesim. Every input points at the lab's paths; nothing else is changed.
//!
//! The checks read the lab itself: etcdctl against the restarted etcd (the snapshot's keys
//! back, the key written after the snapshot gone), the supervisor's state (a new etcd on
//! the data dir, both manifests back), the files on the node, `crictl ps` over ssh.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::lab::{EtcdSupervisor, KubeSim, Moto, Sshd, wait_until};
use crate::support::cli::{journal, only_run, root, step_state, unique};
use crate::support::drive::{Drive, Outcome};
use crate::support::secrets::{assert_not_written, files_under};
use crate::term::{ENTER, Pty};

const BUCKET: &str = "velero-offsite-homelab";
const PREFIX: &str = "etcd-snapshots/";
const STAMP: &str = "20260101-030000";
/// Keys in the snapshot, with their values.
const SNAPSHOT_KEYS: &[(&str, &str)] = &[
    ("/registry/namespaces/vault", "vault"),
    ("/registry/secrets/security/vault-unseal-key", "sealed-blob"),
    ("/registry/configmaps/default/settings", "good"),
];
/// Written after the snapshot: gone after the restore.
const LATER_KEY: &str = "/registry/configmaps/default/bad-change";

/// What the bucket holds.
#[derive(Clone, Copy, PartialEq)]
enum Bucket {
    SnapshotAndPki,
    /// Only the PKI tarball: no snapshot to restore.
    NoSnapshot,
}

/// One lab for one test: the control plane (sshd + static-pod etcd), moto, kubesim.
/// Dropping it stops every server.
struct Lab {
    sshd: Sshd,
    sup: EtcdSupervisor,
    moto: Moto,
    sim: KubeSim,
    work: tempfile::TempDir,
    /// The AWS secret key drctl gets (moto accepts any): it must never show.
    aws_secret: String,
    /// The PKI tarball's ca.crt.
    ca_crt: String,
    /// etcd's PID before the restore.
    etcd_pid: u32,
}

fn sh(script: &str) {
    let o = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    assert!(
        o.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

impl Lab {
    /// etcd seeded and snapshotted, then changed after the snapshot (the "corruption");
    /// the snapshot and a PKI tarball of the same timestamp in the bucket; the node's PKI
    /// intact or lost.
    fn start(bucket: Bucket, pki_lost: bool) -> Lab {
        let sup = EtcdSupervisor::start();
        for (k, v) in SNAPSHOT_KEYS {
            sup.put(k, v);
        }
        let work = tempfile::Builder::new()
            .prefix("drctl-e2e-etcd-")
            .tempdir()
            .expect("a work dir");
        let w = work.path();
        let snap = w.join(format!("snapshot-{STAMP}.db"));
        sup.snapshot_save(&snap);
        sup.put(LATER_KEY, "oops");
        sup.put("/registry/configmaps/default/settings", "CORRUPTED");

        // A kubeadm-shaped pki/ directory, its tarball, and the node's copy (if intact).
        let ca_crt = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            unique("lab-ca")
        );
        let seed = w.join("seed");
        std::fs::create_dir_all(seed.join("pki/etcd")).expect("mkdir pki");
        for (f, text) in [
            ("ca.crt", ca_crt.as_str()),
            ("ca.key", "lab ca key\n"),
            ("apiserver.crt", "lab apiserver cert\n"),
            ("etcd/ca.crt", ca_crt.as_str()),
            ("etcd/ca.key", "lab etcd ca key\n"),
        ] {
            std::fs::write(seed.join("pki").join(f), text).expect("write pki file");
        }
        let tarball = w.join(format!("pki-{STAMP}.tar.gz"));
        sh(&format!(
            "tar -C '{}' -czf '{}' pki",
            seed.display(),
            tarball.display()
        ));
        for d in ["kubernetes", "parked", "node", "local"] {
            std::fs::create_dir_all(w.join(d)).expect("mkdir");
        }
        if !pki_lost {
            sh(&format!(
                "cp -r '{}' '{}'",
                seed.join("pki").display(),
                w.join("kubernetes").display()
            ));
        }

        let moto = Moto::start();
        moto.create_bucket(BUCKET);
        moto.put_object(
            BUCKET,
            &format!("{PREFIX}pki-{STAMP}.tar.gz"),
            &std::fs::read(&tarball).expect("read tarball"),
        );
        if bucket == Bucket::SnapshotAndPki {
            moto.put_object(
                BUCKET,
                &format!("{PREFIX}snapshot-{STAMP}.db"),
                &std::fs::read(&snap).expect("read snapshot"),
            );
        }

        let mut sshd = Sshd::start();
        sshd.as_control_plane_of(&sup);
        let scenario =
            std::fs::read_to_string(root().join("tests/fixtures/e2e/etcd/scenario.yaml"))
                .expect("the etcd kubesim scenario");
        let sim = KubeSim::start_with_scenario(&scenario);
        let etcd_pid = sup.etcd_pid().expect("etcd runs");
        Lab {
            sshd,
            sup,
            moto,
            sim,
            work,
            aws_secret: unique("lab-aws-secret"),
            ca_crt,
            etcd_pid,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.work.path().join(p)
    }

    fn snapshot_on_node(&self) -> PathBuf {
        self.path("node/snapshot.db")
    }

    fn restore_dir(&self) -> PathBuf {
        self.sup.dir().join("etcd").join("restore")
    }

    /// Every input of the runbook that names a place, pointed at the lab.
    fn inputs(&self) -> Vec<(&'static str, String)> {
        let p = |x: PathBuf| x.display().to_string();
        vec![
            ("control_plane", "control-plane".to_owned()),
            ("bucket", BUCKET.to_owned()),
            ("snapshot_prefix", PREFIX.to_owned()),
            ("aws_region", "us-east-1".to_owned()),
            ("local_snapshot_path", p(self.path("local/snapshot.db"))),
            ("local_pki_path", p(self.path("local/pki.tar.gz"))),
            ("snapshot_path", p(self.snapshot_on_node())),
            ("pki_path", p(self.path("node/pki.tar.gz"))),
            ("kubernetes_dir", p(self.path("kubernetes"))),
            ("manifests_dir", p(self.sup.manifests_dir())),
            ("parked_dir", p(self.path("parked"))),
            ("etcd_data_dir", p(self.sup.data_dir())),
            ("etcd_restore_dir", p(self.restore_dir())),
        ]
    }

    /// The environment of every drctl process: AWS (moto, our secret key), kubesim,
    /// the lab's ssh config.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.moto.env();
        env.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
        env.push(("AWS_SECRET_ACCESS_KEY".into(), self.aws_secret.clone()));
        env.extend(self.sim.env());
        env.push((
            "DRCTL_SSH_CONFIG".into(),
            self.sshd.config_path().display().to_string(),
        ));
        env
    }

    fn drive(&self) -> Drive {
        let mut d = Drive::new("etcd-restore").envs(self.env());
        for (k, v) in self.inputs() {
            d = d.set(k, v);
        }
        d
    }

    /// Nothing changed: the same etcd on the corrupt data, manifests in place, nothing on
    /// the node.
    fn assert_untouched(&self, what: &str) {
        assert_eq!(
            self.sup.etcd_pid(),
            Some(self.etcd_pid),
            "{what}: etcd was restarted"
        );
        assert_eq!(self.sup.get(LATER_KEY).as_deref(), Some("oops"), "{what}");
        let st = self.sup.status();
        assert_eq!(st["manifests"]["etcd.yaml"], true, "{what}: {st}");
        assert_eq!(st["manifests"]["kube-apiserver.yaml"], true, "{what}: {st}");
        assert!(
            !self.snapshot_on_node().exists(),
            "{what}: a snapshot was copied to the node"
        );
        assert!(!self.restore_dir().exists(), "{what}: a restore dir exists");
    }

    /// The lab after a successful restore, read from the lab itself.
    fn assert_restored(&self, what: &str) {
        assert!(
            self.sup.wait_healthy(Duration::from_secs(60)),
            "{what}: etcd is not healthy after the restore: {}",
            self.sup.status()
        );
        let st = self.sup.status();
        let pid = st["etcd"]["pid"].as_u64().expect("etcd pid") as u32;
        assert_ne!(pid, self.etcd_pid, "{what}: etcd was not restarted: {st}");
        assert_eq!(st["etcd"]["running"], true, "{what}: {st}");
        assert_eq!(
            st["etcd"]["dataDir"].as_str(),
            Some(self.sup.data_dir().to_str().expect("UTF-8")),
            "{what}: etcd runs on another data dir: {st}"
        );
        assert_eq!(st["manifests"]["etcd.yaml"], true, "{what}: {st}");
        assert_eq!(st["manifests"]["kube-apiserver.yaml"], true, "{what}: {st}");
        for (k, v) in SNAPSHOT_KEYS {
            assert_eq!(
                self.sup.get(k).as_deref(),
                Some(*v),
                "{what}: {k} is not the snapshot's value"
            );
        }
        assert_eq!(
            self.sup.get(LATER_KEY),
            None,
            "{what}: a key written after the snapshot survived the restore"
        );
        let parked: Vec<_> = std::fs::read_dir(self.path("parked"))
            .expect("read parked dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert!(
            parked.is_empty(),
            "{what}: manifests left parked: {parked:?}"
        );
        assert!(
            !self.restore_dir().exists(),
            "{what}: the restore dir is left"
        );
        assert!(self.sup.data_dir().join("member").is_dir(), "{what}");
        assert_eq!(
            std::fs::read_to_string(self.path("kubernetes/pki/ca.crt")).ok(),
            Some(self.ca_crt.clone()),
            "{what}: the node's PKI is not the tarball's"
        );
        assert_eq!(
            std::fs::read_to_string(self.path("kubernetes/pki/etcd/ca.crt")).ok(),
            Some(self.ca_crt.clone()),
            "{what}"
        );
        assert_eq!(mode_of(&self.snapshot_on_node()), 0o600, "{what}");
        // The node's container runtime (the crictl stand-in) sees etcd and the API server.
        let ps = self.sshd.ssh_ok("sudo -n crictl ps");
        assert!(
            ps.contains(" etcd ") && ps.contains("kube-apiserver"),
            "{what}: crictl ps on the node:\n{ps}"
        );
    }

    /// The AWS secret key appears in no output and no file of the state directory.
    fn assert_secret_kept(&self, d: &Drive, outcomes: &[&Outcome]) {
        assert!(
            !files_under(d.state()).is_empty(),
            "no journal in {}",
            d.state().display()
        );
        assert_not_written(d.state(), outcomes, &[&self.aws_secret]);
    }

    /// Until no process on this machine (the node) names `path` in its command line: a
    /// command of a killed drctl may still be finishing on the host.
    fn wait_no_process_using(&self, path: &Path) {
        let needle = path.display().to_string();
        let me = std::process::id().to_string();
        let busy = || {
            std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.chars().all(|c| c.is_ascii_digit()) && n != me.as_str()
                })
                .any(|e| {
                    std::fs::read(e.path().join("cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                        .unwrap_or(false)
                })
        };
        assert!(
            wait_until(Duration::from_secs(60), || !busy()),
            "a process still uses {needle}"
        );
    }

    /// Move each of the two manifests from `from` to `to` unless it is there already.
    fn move_manifests(&self, from: &Path, to: &Path) {
        for f in ["kube-apiserver.yaml", "etcd.yaml"] {
            match std::fs::rename(from.join(f), to.join(f)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => panic!("mv {f}: {e}"),
            }
        }
    }

    /// What an operator does with a step drctl was killed in, after looking at the node.
    fn resolve(&self, step: &str) -> String {
        match step {
            // Killed half-way through `mv; mv`: finish parking by hand, it is done.
            // (The parked dir is on the `mv` command lines, and only there: the supervisor's
            // names the manifests dir.)
            "stop-control-plane" => {
                self.wait_no_process_using(&self.path("parked"));
                self.move_manifests(&self.sup.manifests_dir(), &self.path("parked"));
                "done".to_owned()
            }
            "start-control-plane" => {
                self.wait_no_process_using(&self.path("parked"));
                self.move_manifests(&self.path("parked"), &self.sup.manifests_dir());
                "done".to_owned()
            }
            // etcd is stopped (the manifests are parked): restoring again is safe once the
            // half-restored directory is gone (the step's fallback says so).
            "restore-snapshot" => {
                self.wait_no_process_using(&self.restore_dir());
                self.wait_no_process_using(&self.sup.data_dir());
                if self.restore_dir().exists() {
                    std::fs::remove_dir_all(self.restore_dir()).expect("rm the restore dir");
                }
                "rerun".to_owned()
            }
            _ => "rerun".to_owned(),
        }
    }
}

#[test]
fn etcd_restore_rehearsal_on_a_healthy_lab_finds_no_problem_and_changes_nothing() {
    let lab = Lab::start(Bucket::SnapshotAndPki, false);
    let d = lab
        .drive()
        .set("choose-pki", "lost")
        .set("choose-source", "s3");
    let r = d.rehearse();
    r.assert_clean_rehearsal("healthy lab");
    // The reads ran for real: the bucket listed, the newest snapshot named, the node reached.
    assert_eq!(r.outcome_of("pick-snapshot").as_deref(), Some("succeeded"));
    assert!(
        r.output_of("pick-snapshot")
            .contains(&format!("snapshot-{STAMP}.db")),
        "{}",
        r.dump()
    );
    assert_eq!(r.outcome_of("inspect-pki").as_deref(), Some("succeeded"));
    assert_eq!(
        r.outcome_of("restore-snapshot").as_deref(),
        Some("would_run"),
        "{}",
        r.dump()
    );
    lab.assert_untouched("after the rehearsal");
    assert!(
        !lab.path("local/snapshot.db").exists(),
        "the rehearsal downloaded"
    );
    lab.assert_secret_kept(&d, &[&r]);
}

#[test]
fn etcd_restore_rehearsal_names_a_bucket_without_snapshot() {
    let lab = Lab::start(Bucket::NoSnapshot, false);
    let d = lab.drive();
    let r = d.rehearse();
    r.assert_problem("pick-snapshot", "no snapshot in the bucket");
    r.assert_problem("snapshot-*.db", "no snapshot in the bucket");
    lab.assert_untouched("after the rehearsal");
}

#[test]
fn etcd_restore_rehearsal_names_an_unreachable_control_plane() {
    let mut lab = Lab::start(Bucket::SnapshotAndPki, false);
    lab.sshd.stop();
    let d = lab.drive();
    let r = d.rehearse();
    // The prerequisite (ssh with sudo, crictl and etcdctl there) names the host, and so
    // does the first step that reaches it, with its address and what is wrong.
    r.assert_problem("ssh-control-plane", "sshd stopped");
    r.assert_problem("inspect-pki: ssh to control-plane", "sshd stopped");
    r.assert_problem(
        &format!("nothing listens on 127.0.0.1 port {}", lab.sshd.port()),
        "sshd stopped",
    );
    lab.assert_untouched("after the rehearsal");
}

/// From S3 with the PKI lost, every change confirmed.
fn s3_drive(lab: &Lab) -> Drive {
    lab.drive()
        .set("choose-pki", "lost")
        .set("choose-source", "s3")
        .confirm("stop-control-plane")
        .confirm("restore-snapshot")
}

#[test]
fn etcd_restore_runs_to_the_end_from_s3_with_the_pki_lost() {
    let lab = Lab::start(Bucket::SnapshotAndPki, true);
    let d = s3_drive(&lab);
    let r = d.run();
    r.assert_ok("full run");
    assert_eq!(r.outcome_of("copy-from-nas").as_deref(), Some("skipped"));
    assert_eq!(r.outcome_of("restore-pki").as_deref(), Some("succeeded"));
    lab.assert_restored("after the run");
    lab.assert_secret_kept(&d, &[&r]);
}

/// The steps a run from S3 with the PKI lost goes through: every main step of the
/// built-in but the NAS branch.
fn s3_steps() -> Vec<String> {
    use drctl::runbook::catalog::Catalog;
    let catalog = Catalog::load(None).expect("the built-in catalog");
    let entry = catalog
        .get("etcd-restore")
        .expect("etcd-restore is built in");
    let rb = drctl::runbook::load::parse(&entry.label(), &entry.text).expect("it parses");
    let steps: Vec<String> = rb
        .main_steps()
        .map(|s| s.id.to_string())
        .filter(|id| id != "copy-from-nas")
        .collect();
    assert!(steps.len() > 10, "{steps:?}");
    steps
}

#[test]
fn etcd_restore_killed_at_a_random_step_resumes_to_the_same_state() {
    let lab = Lab::start(Bucket::SnapshotAndPki, true);
    let d = s3_drive(&lab);
    let c = d.crash_and_resume(&s3_steps(), &|step| lab.resolve(step));
    lab.assert_restored(&format!(
        "after SIGKILL at `{}` (seed {}) and resume",
        c.step, c.seed
    ));
    // The restore itself ran once, or twice only when the operator said to re-run it.
    let restore = c.journal["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["id"] == "restore-snapshot")
        .expect("restore-snapshot in the journal");
    assert_eq!(restore["state"], "succeeded", "{restore:#}");
    lab.assert_secret_kept(&d, &[c.outcome()]);
}

// ---------------------------------------------------------------------------------------------
// An operator at a terminal
// ---------------------------------------------------------------------------------------------

const PTY_TIMEOUT: Duration = Duration::from_secs(120);

/// The NAS branch with the PKI intact, answered at the terminal: both decisions picked
/// from their lists, the snapshot copied "from the NAS" when the manual step asks, every
/// change confirmed.
#[test]
fn etcd_restore_interactive_from_the_nas_on_a_terminal() {
    let lab = Lab::start(Bucket::SnapshotAndPki, false);
    let d = lab.drive();
    let mut args = vec!["run".to_owned(), "etcd-restore".to_owned()];
    for (k, v) in lab.inputs() {
        args.push("--set".to_owned());
        args.push(format!("{k}={v}"));
    }
    let mut cmd = d.command();
    cmd.args(&args);
    let mut p = Pty::spawn(cmd, 140, PTY_TIMEOUT);

    // What drctl cannot check, the operator confirms before step 1.
    p.expect("Do you have everything listed above at hand?");
    p.send("y");
    p.expect("State of the certificates in");
    p.expect("❯ intact");
    p.send(ENTER);
    p.expect("Retrieve the snapshot from");
    p.expect("❯ s3");
    p.pick(&["s3", "nas"], 1);

    // The manual step: the operator copies the snapshot from "the NAS" (the lab's copy of
    // it), then says it is done; its check then finds the file on the node.
    p.expect("Manual step `copy-from-nas`");
    p.expect("❯ done");
    let on_node = lab.snapshot_on_node();
    std::fs::copy(lab.path(&format!("snapshot-{STAMP}.db")), &on_node)
        .expect("copy the snapshot to the node");
    std::fs::set_permissions(&on_node, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p.send(ENTER);

    p.confirm_run("Run step `stop-control-plane`");
    p.confirm_run("Run step `restore-snapshot`");
    p.confirm_run("Run step `start-control-plane`");
    p.expect("finished:");
    let code = p.exit_code();
    let screen = p.screen();
    assert_eq!(code, 0, "{screen}");
    assert!(
        !screen.contains("Run step `download-snapshot`"),
        "the S3 branch ran:\n{screen}"
    );
    assert!(
        !screen.contains(&lab.aws_secret),
        "the AWS secret key was shown"
    );
    lab.assert_restored("after the interactive run");
    let run_id = only_run(d.state());
    let j = journal(d.state(), &run_id);
    assert_eq!(step_state(&j, "restore-pki"), "skipped");
    assert_eq!(step_state(&j, "download-snapshot"), "skipped");
}
