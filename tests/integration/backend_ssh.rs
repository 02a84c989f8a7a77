//! SSH and etcd backends against the lab's real sshd and etcd (started per test): the
//! backends are driven directly through `Backend::execute` with a small harness, and the
//! etcd-restore procedure end to end through the drctl binary.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use drctl::backends::Backends;
use drctl::backends::etcd::EtcdBackend;
use drctl::backends::ssh::{SshBackend, SshOptions};
use drctl::exec::backend::ActionError;
use drctl::runbook::Action;

use super::lab::{Etcd, EtcdSupervisor, Sshd, wait_until};
use crate::support::cli::{drctl_cmd, root, unique};
use crate::support::harness::{Alone, CtrlC, Opts, Run, perform};
use crate::support::operator::FakeOperator;
use crate::support::process::pid_alive;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// One action from its YAML (the value under the step).
fn action(yaml: &str) -> Action {
    let body: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
    let src = format!(
        "apiVersion: drctl/v1\nkind: Runbook\nname: t\ntitle: T\nsummary: S\nsteps:\n  - id: s\n    title: S\n{body}"
    );
    let rb = drctl::runbook::load::parse("test.yaml", &Arc::from(src.as_str()))
        .unwrap_or_else(|d| panic!("parse {yaml}: {d:?}"));
    rb.main_steps().next().expect("one step").action.clone()
}

/// Runs `a` like the engine, unattended: a rehearsal sets dry_run, a timeout drops the
/// future.
fn exec(b: &Backends, a: &Action, dry_run: bool, timeout: Option<Duration>) -> Run {
    perform(
        b,
        a,
        &FakeOperator::unattended(),
        Opts {
            dry_run,
            timeout,
            ..Default::default()
        },
    )
}

fn ssh_backend(sshd: &Sshd) -> Backends {
    SshBackend::new(SshOptions {
        config: Some(sshd.config_path()),
    })
    .alone()
}

fn etcd_backend(sshd: &Sshd) -> Backends {
    EtcdBackend::new(SshOptions {
        config: Some(sshd.config_path()),
    })
    .alone()
}

/// Every process's command line (NULs as spaces).
fn all_cmdlines() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
            out.push(String::from_utf8_lossy(&b).replace('\0', " "));
        }
    }
    out
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

/// `SHA256:...` of a public key file.
fn fingerprint(pubkey: &Path) -> String {
    let o = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pubkey)
        .output()
        .expect("ssh-keygen -l");
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in {s}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// ssh.run
// ---------------------------------------------------------------------------------------

#[test]
fn ssh_run_streams_and_captures_output_and_fails_on_nonzero_exit() {
    let sshd = Sshd::start();
    let b = ssh_backend(&sshd);
    let a = action(
        "ssh.run:\n  host: control-plane\n  command: |\n    echo first\n    sleep 1\n    echo second; echo warn >&2",
    );
    let o = exec(&b, &a, false, Some(Duration::from_secs(30)));
    let r = o.ok();
    assert_eq!(r.value["exit_code"], 0, "{:?}", r.value);
    assert_eq!(r.value["stdout"], "first\nsecond\n");
    assert_eq!(r.value["stderr"], "warn\n");
    assert_eq!(r.value["host"], "control-plane");
    // Live: the first line arrived while the command was still sleeping.
    let first = o
        .output
        .iter()
        .find(|(_, l)| l == "first")
        .expect("first line");
    let second = o
        .output
        .iter()
        .find(|(_, l)| l == "second")
        .expect("second line");
    assert!(
        second.0.duration_since(first.0) >= Duration::from_millis(800),
        "not streamed: {:?}",
        o.text()
    );

    let a = action(
        "ssh.run:\n  host: control-plane\n  command: 'echo partial; echo disk full >&2; exit 3'",
    );
    let e = exec(&b, &a, false, None).err();
    assert!(e.contains("on control-plane"), "{e}");
    assert!(e.contains("exit code 3"), "{e}");
    assert!(e.contains("disk full"), "{e}");

    // A multi-line command stops at its first failing line (`set -e`); conditions are not
    // failures.
    let a = action(
        "ssh.run:\n  host: control-plane\n  command: |\n    if false; then echo no; fi\n    false || echo handled\n    mv /nonexistent/a /tmp/\n    echo after-the-failure",
    );
    let e = exec(&b, &a, false, None).err();
    assert!(e.contains("exit code 1"), "{e}");
    assert!(!e.contains("after-the-failure"), "{e}");
}

#[test]
fn ssh_run_with_sudo_runs_as_root_through_sudo() {
    let sshd = Sshd::start();
    let b = ssh_backend(&sshd);
    // SUDO_USER is set by sudo only: proof that sudo -n ran, not just a root login.
    let a = action(
        "ssh.run:\n  host: control-plane\n  sudo: true\n  mutates: false\n  command: 'id -u; echo \"sudo_user=$SUDO_USER\"'",
    );
    let o = exec(&b, &a, false, None);
    let out = o.ok().value["stdout"].as_str().expect("stdout").to_owned();
    let me = Command::new("id").arg("-un").output().expect("id");
    let me = String::from_utf8_lossy(&me.stdout).trim().to_owned();
    assert_eq!(out, format!("0\nsudo_user={me}\n"));
    let a = action(
        "ssh.run:\n  host: control-plane\n  mutates: false\n  command: 'echo \"sudo_user=$SUDO_USER\"'",
    );
    assert_eq!(
        exec(&b, &a, false, None).ok().value["stdout"],
        "sudo_user=\n"
    );

    // A rehearsal of a mutating command proves access and sudo, and runs nothing.
    let marker = sshd.dir().join("rehearsed");
    let a = action(&format!(
        "ssh.run:\n  host: control-plane\n  sudo: true\n  command: 'touch {}'",
        marker.display()
    ));
    let o = exec(&b, &a, true, None);
    o.ok();
    assert!(!marker.exists(), "a rehearsal ran the command");
    let text = o.text().join("\n");
    assert!(text.contains("sudo -n works"), "{text}");
    assert!(
        text.contains("would run on control-plane as root (sudo):"),
        "{text}"
    );
}

#[test]
fn ssh_run_env_secret_goes_through_stdin_never_argv() {
    let sshd = Sshd::start();
    let b = ssh_backend(&sshd);
    let secret = unique("PLANTED-ssh-secret");
    let a = action(&format!(
        "ssh.run:\n  host: control-plane\n  sudo: true\n  env:\n    DRCTL_T_SECRET: '{secret}'\n  command: 'sleep 2; printf %s \"$DRCTL_T_SECRET\" | sha256sum'"
    ));
    let (o, leaks, scans) = std::thread::scope(|s| {
        let h = s.spawn(|| exec(&b, &a, false, Some(Duration::from_secs(30))));
        let mut leaks = Vec::new();
        let mut scans = 0;
        while !h.is_finished() {
            for c in all_cmdlines() {
                if c.contains(&secret) {
                    leaks.push(c);
                }
            }
            scans += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        (h.join().expect("action thread"), leaks, scans)
    });
    assert!(scans > 20, "the scan ran only {scans} times");
    assert!(leaks.is_empty(), "secret in a command line: {leaks:?}");
    let want = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(secret.as_bytes()))
    };
    let out = o.ok().value["stdout"].as_str().expect("stdout").to_owned();
    assert!(
        out.starts_with(&want),
        "the command did not get the secret: {out}"
    );
}

#[test]
fn ssh_run_timeout_stops_the_remote_command() {
    let sshd = Sshd::start();
    let b = ssh_backend(&sshd);
    let tag = format!("31.{}", rand::random::<u32>() % 100_000);
    let a = action(&format!(
        "ssh.run:\n  host: control-plane\n  sudo: true\n  command: 'echo started; sleep {tag}; echo never'"
    ));
    let running = |tag: &str| {
        all_cmdlines()
            .iter()
            .any(|c| c.trim_end() == format!("sleep {tag}"))
    };
    let (o, seen) = std::thread::scope(|s| {
        let h = s.spawn(|| exec(&b, &a, false, Some(Duration::from_secs(2))));
        let seen = wait_until(Duration::from_secs(2), || running(&tag));
        (h.join().expect("action thread"), seen)
    });
    assert!(seen, "the remote `sleep {tag}` never ran");
    assert!(o.elapsed < Duration::from_secs(4), "took {:?}", o.elapsed);
    let e = o.err();
    assert!(e.contains("timed out"), "{e}");
    assert!(o.text().contains(&"started"), "{:?}", o.text());
    assert!(
        wait_until(Duration::from_secs(8), || !running(&tag)),
        "the remote `sleep {tag}` still runs after the timeout"
    );
}

#[test]
fn ssh_run_ctrl_c_stops_the_remote_command() {
    let sshd = Sshd::start();
    let b = ssh_backend(&sshd);
    let tag = format!("32.{}", rand::random::<u32>() % 100_000);
    let a = action(&format!(
        "ssh.run:\n  host: control-plane\n  command: 'sleep {tag}; echo never'"
    ));
    // Ctrl-C after 1.5 s.
    let o = perform(
        &b,
        &a,
        &FakeOperator::unattended(),
        Opts {
            timeout: None,
            ctrl_c: CtrlC::After(Duration::from_millis(1500)),
            ..Default::default()
        },
    );
    assert!(
        matches!(o.result, Err(ActionError::Cancelled)),
        "{:?}",
        o.result.as_ref().err()
    );
    assert!(o.elapsed < Duration::from_secs(8), "took {:?}", o.elapsed);
    assert!(
        wait_until(Duration::from_secs(8), || !all_cmdlines()
            .iter()
            .any(|c| c.trim_end() == format!("sleep {tag}"))),
        "the remote `sleep {tag}` still runs after Ctrl-C"
    );
}

#[test]
fn ssh_refuses_changed_and_unknown_host_keys_and_explains_missing_keys() {
    let sshd = Sshd::start();
    let b = ssh_backend(&sshd);
    let real = fingerprint(&sshd.dir().join("ssh_host_ed25519_key.pub"));
    let a = action("ssh.run:\n  host: control-plane\n  mutates: false\n  command: 'echo reached'");

    // Pin another key for the host: the connection is refused with the server's fingerprint.
    let other = sshd.dir().join("other_key");
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .expect("ssh-keygen");
    assert!(o.status.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let other_pub: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let pinned = std::fs::read_to_string(sshd.known_hosts_path()).expect("known_hosts");
    std::fs::write(
        sshd.known_hosts_path(),
        format!("[127.0.0.1]:{} {}\n", sshd.port(), other_pub.join(" ")),
    )
    .expect("rewrite known_hosts");
    let o = exec(&b, &a, false, None);
    let e = o.err();
    assert!(e.contains("has CHANGED"), "{e}");
    assert!(e.contains(&real), "no fingerprint {real} in: {e}");
    assert!(e.contains("ssh-keygen -R"), "{e}");
    assert!(!o.text().contains(&"reached"));

    // No key pinned at all: refused too, with the fingerprint to compare.
    std::fs::write(sshd.known_hosts_path(), "").expect("empty known_hosts");
    let e = exec(&b, &a, false, None).err();
    assert!(e.contains("is not in known_hosts"), "{e}");
    assert!(e.contains(&real), "no fingerprint {real} in: {e}");

    // The right key again, but a client key the server does not know: no prompt, a reason.
    std::fs::write(sshd.known_hosts_path(), pinned).expect("restore known_hosts");
    let cfg = std::fs::read_to_string(sshd.config_path()).expect("config");
    let cfg = cfg.replace(
        &format!("IdentityFile {}", sshd.identity_path().display()),
        &format!("IdentityFile {}", other.display()),
    );
    let bad = sshd.dir().join("config-wrong-key");
    std::fs::write(&bad, cfg).expect("write config");
    let b = SshBackend::new(SshOptions { config: Some(bad) }).alone();
    let e = exec(&b, &a, false, None).err();
    assert!(e.contains("no key was accepted for user"), "{e}");
    assert!(e.contains("never asks for passwords"), "{e}");
}

// ---------------------------------------------------------------------------------------
// ssh.copy
// ---------------------------------------------------------------------------------------

#[test]
fn ssh_copy_uploads_and_downloads_with_modes() {
    let sshd = Sshd::start();
    let b = ssh_backend(&sshd);
    let dir = sshd.dir();
    let data: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let local = dir.join("local.bin");
    std::fs::write(&local, &data).expect("write local");
    let remote = dir.join("remote dir");
    std::fs::create_dir(&remote).expect("mkdir");
    let remote_file = remote.join("snap.db");
    let a = action(&format!(
        "ssh.copy:\n  host: control-plane\n  direction: upload\n  local: '{}'\n  remote: '{}'\n  sudo: true\n  mode: '0640'",
        local.display(),
        remote_file.display()
    ));
    // The rehearsal writes nothing.
    let o = exec(&b, &a, true, None);
    o.ok();
    assert!(!remote_file.exists());
    assert!(
        o.text().iter().any(|l| l.contains("would upload")),
        "{:?}",
        o.text()
    );

    let o = exec(&b, &a, false, Some(Duration::from_secs(30)));
    let r = o.ok();
    assert_eq!(std::fs::read(&remote_file).expect("uploaded"), data);
    assert_eq!(mode_of(&remote_file), 0o640);
    assert_eq!(r.value["bytes"], data.len());
    assert_eq!(r.value["mode"], "0640");
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("drctl-upload."))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    let back = dir.join("back.bin");
    let a = action(&format!(
        "ssh.copy:\n  host: control-plane\n  direction: download\n  local: '{}'\n  remote: '{}'\n  mode: '0600'",
        back.display(),
        remote_file.display()
    ));
    let r = exec(&b, &a, false, None);
    let v = &r.ok().value;
    assert_eq!(std::fs::read(&back).expect("downloaded"), data);
    assert_eq!(mode_of(&back), 0o600);
    assert_eq!(v["sha256"], {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&data))
    });

    let a = action(&format!(
        "ssh.copy:\n  host: control-plane\n  direction: download\n  local: '{}'\n  remote: /nonexistent/file",
        back.display()
    ));
    let e = exec(&b, &a, false, None).err();
    assert!(
        e.contains("cannot read /nonexistent/file on control-plane"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------------------

#[test]
fn etcd_snapshot_status_reads_real_snapshots_and_rejects_corrupt_ones() {
    let sshd = Sshd::start();
    let etcd = Etcd::start();
    for i in 0..5 {
        etcd.put(&format!("/registry/k{i}"), "v");
    }
    let snap = etcd.dir().join("snapshot.db");
    etcd.snapshot_save(&snap);
    let b = etcd_backend(&sshd);
    for host in ["", "  host: control-plane\n  sudo: true\n"] {
        let a = action(&format!(
            "etcd.snapshot-status:\n{host}  snapshot: {}",
            snap.display()
        ));
        let o = exec(&b, &a, false, None);
        let v = &o.ok().value;
        assert!(v["hash"].as_u64().is_some(), "{v}");
        assert!(v["revision"].as_i64() >= Some(6), "{v}");
        assert!(v["total_keys"].as_u64() > Some(5), "{v}");
        assert_eq!(v["total_size"].as_u64().map(|s| s > 0), Some(true), "{v}");
        assert_eq!(v["integrity"], "verified", "{v}");
        assert_eq!(v["tool"], "etcdctl");
    }

    let bytes = std::fs::read(&snap).expect("read snapshot");
    let truncated = etcd.dir().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let flipped = etcd.dir().join("flipped.db");
    let mut f = bytes.clone();
    let mid = f.len() / 2;
    for x in &mut f[mid..mid + 64] {
        *x ^= 0x5a;
    }
    std::fs::write(&flipped, f).expect("write");
    let junk = etcd.dir().join("junk.db");
    std::fs::write(&junk, vec![0x42u8; 20_000]).expect("write");
    for bad in [&truncated, &flipped, &junk] {
        let a = action(&format!(
            "etcd.snapshot-status:\n  host: control-plane\n  snapshot: {}",
            bad.display()
        ));
        let e = exec(&b, &a, false, None).err();
        assert!(
            e.contains("is corrupt or truncated")
                || e.contains("is truncated")
                || e.contains("is damaged"),
            "{}: {e}",
            bad.display()
        );
        assert!(e.contains("Do not restore it"), "{e}");
        assert!(
            !e.contains("goroutine"),
            "a Go stack dump in the message: {e}"
        );
    }
    let a = action("etcd.snapshot-status:\n  host: control-plane\n  snapshot: /nope/snap.db");
    let e = exec(&b, &a, false, None).err();
    assert!(
        e.contains("no snapshot at /nope/snap.db on control-plane"),
        "{e}"
    );
}

#[test]
fn etcd_snapshot_restore_over_ssh_brings_back_the_snapshot_keys() {
    let sshd = Sshd::start();
    let mut etcd = Etcd::start();
    etcd.put("/registry/namespaces/vault", "vault");
    etcd.put("/lab/seeded-by", "backend_ssh");
    let snap = etcd.dir().join("snapshot.db");
    etcd.snapshot_save(&snap);
    etcd.put("/lab/after-snapshot", "lost");
    let data = etcd.data_dir().to_path_buf();
    let restore = etcd.dir().join("data-restore");
    let b = etcd_backend(&sshd);
    let a = action(&format!(
        "etcd.snapshot-restore:\n  host: control-plane\n  sudo: true\n  snapshot: {}\n  data_dir: {}\n  restore_dir: {}",
        snap.display(),
        data.display(),
        restore.display()
    ));

    // etcd still runs on the data dir: refused, nothing touched.
    let e = exec(&b, &a, false, None).err();
    assert!(e.contains("etcd still uses"), "{e}");
    etcd.stop();

    // The rehearsal checks the snapshot and shows the three commands.
    let o = exec(&b, &a, true, None);
    o.ok();
    let text = o.text().join("\n");
    assert!(text.contains("SHA-256 trailer verified"), "{text}");
    for c in [
        format!(
            "sudo ETCDCTL_API=3 etcdctl snapshot restore {} --data-dir={}",
            snap.display(),
            restore.display()
        ),
        format!("sudo rm -rf {}", data.display()),
        format!("sudo mv {} {}", restore.display(), data.display()),
    ] {
        assert!(text.contains(&c), "missing `{c}` in:\n{text}");
    }
    assert!(!restore.exists() && data.join("member").exists());
    // Rehearsed before the snapshot reached the host: the commands, no error.
    let early = action(&format!(
        "etcd.snapshot-restore:\n  host: control-plane\n  sudo: true\n  snapshot: /nope/snap.db\n  data_dir: {}",
        data.display()
    ));
    let o = exec(&b, &early, true, None);
    o.ok();
    assert!(
        o.text().iter().any(|l| l.contains("rm -rf")),
        "{:?}",
        o.text()
    );

    // A restore dir left behind by an earlier attempt: refused with what to do.
    std::fs::create_dir(&restore).expect("mkdir");
    let e = exec(&b, &a, false, None).err();
    assert!(e.contains("already exists on control-plane"), "{e}");
    assert!(e.contains("rm -rf"), "{e}");
    std::fs::remove_dir(&restore).expect("rmdir");

    let o = exec(&b, &a, false, Some(Duration::from_secs(60)));
    let v = &o.ok().value;
    assert_eq!(v["data_dir"], data.display().to_string());
    assert!(!restore.exists(), "the restore dir was moved into place");
    etcd.restart();
    assert_eq!(
        etcd.get("/registry/namespaces/vault").as_deref(),
        Some("vault")
    );
    assert_eq!(etcd.get("/lab/seeded-by").as_deref(), Some("backend_ssh"));
    assert_eq!(
        etcd.get("/lab/after-snapshot"),
        None,
        "a key written after the snapshot survived"
    );
}

/// The etcd-restore procedure through the drctl binary against the static-pod etcd.
#[test]
fn drctl_restores_etcd_from_a_snapshot_on_the_lab_control_plane() {
    let sshd = Sshd::start();
    let sup = EtcdSupervisor::start();
    sup.put("/registry/namespaces/vault", "vault");
    sup.put("/registry/secrets/vault/unseal", "keys");
    let snap = sup.dir().join("snapshot-20260101-000000.db");
    sup.snapshot_save(&snap);
    sup.put("/lab/after-snapshot", "lost");
    sup.put("/registry/namespaces/vault", "changed");
    let first = sup.etcd_pid().expect("etcd runs");
    let parked = sup.dir().join("parked");
    std::fs::create_dir(&parked).expect("mkdir");
    let state = sup.dir().join("state");
    let set = |k: &str, v: &Path| format!("{k}={}", v.display());
    let args = [
        set("local_snapshot", &snap),
        set("snapshot_path", &sup.dir().join("on-node.db")),
        set("manifests_dir", &sup.manifests_dir()),
        set("parked_dir", &parked),
        set("etcd_data_dir", &sup.data_dir()),
        set("etcd_restore_dir", &sup.dir().join("etcd").join("restore")),
        format!("etcd_endpoint={}", sup.client_url()),
    ];
    let rb = root().join("tests/fixtures/ssh/etcd-restore-lab.yaml");
    let run = |extra: &[&str]| {
        let mut cmd = drctl_cmd(&state);
        cmd.arg("run").arg(&rb).arg("--yes").args(extra);
        for a in &args {
            cmd.arg("--set").arg(a);
        }
        let o = cmd
            .env("DRCTL_SSH_CONFIG", sshd.config_path())
            .env_remove("ETCDCTL_ENDPOINTS")
            .stdin(Stdio::null())
            .output()
            .expect("drctl runs");
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code(), text)
    };
    // The rehearsal reaches the host and shows the restore, and changes nothing. It reads
    // the snapshot for real, so one is there already (an older copy; the run replaces it).
    let on_node = sup.dir().join("on-node.db");
    std::fs::copy(&snap, &on_node).expect("pre-place the snapshot");
    std::fs::set_permissions(
        &on_node,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod");
    let (_, text) = run(&["--dry-run"]);
    assert!(text.contains("would upload"), "{text}");
    assert!(text.contains("SHA-256 trailer verified"), "{text}");
    // etcd still runs in a rehearsal: the restore's read-only half says so.
    assert!(
        text.contains("problem: restore-snapshot: etcd still uses"),
        "{text}"
    );
    assert_eq!(
        sup.etcd_pid(),
        Some(first),
        "the rehearsal touched etcd:\n{text}"
    );
    assert_eq!(mode_of(&on_node), 0o644, "the rehearsal uploaded");

    let (code, text) = run(&[]);
    assert_eq!(code, Some(0), "{text}");
    // The lab's own view: a new etcd process, on the restored data, serving the snapshot.
    assert!(
        sup.wait_healthy(Duration::from_secs(20)),
        "etcd not healthy:\n{text}"
    );
    let second = sup.etcd_pid().expect("etcd runs again");
    assert_ne!(first, second, "etcd was not restarted");
    assert!(!pid_alive(first));
    assert_eq!(
        sup.get("/registry/namespaces/vault").as_deref(),
        Some("vault")
    );
    assert_eq!(
        sup.get("/registry/secrets/vault/unseal").as_deref(),
        Some("keys")
    );
    assert_eq!(sup.get("/lab/after-snapshot"), None, "{text}");
    let st = sup.status();
    assert_eq!(st["manifests"]["etcd.yaml"], true, "{st}");
    assert_eq!(st["manifests"]["kube-apiserver.yaml"], true, "{st}");
    assert_eq!(mode_of(&sup.dir().join("on-node.db")), 0o600);
}
