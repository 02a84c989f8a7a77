//! Attacks on what drctl trusts (issue 19, items 3 and 6): a journal whose runbook path or
//! kubeconfig was swapped, state files others can read or write, and credentials in
//! drctl's environment that would reach every child process. Each test plants the payload,
//! then proves nothing ran or leaked.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::support::cli::{
    both, code, drctl_cmd, fixture, journal, journal_path, only_run, run_drctl, stderr, step_state,
};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("drctl-trust-")
        .tempdir()
        .expect("a temporary directory")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o7777
}

fn write_journal(state: &Path, run_id: &str, j: &Value) {
    std::fs::write(
        journal_path(state, run_id),
        serde_json::to_vec(j).expect("json"),
    )
    .expect("rewrite the journal");
}

/// A run of `engine-pause` (a copy in `dir`) that paused at its manual step.
fn paused_run(dir: &Path, state: &Path, work: &Path) -> (PathBuf, String) {
    let rb = dir.join("engine-pause.yaml");
    std::fs::copy(fixture("engine-pause"), &rb).expect("copy the runbook");
    std::fs::create_dir_all(work).expect("workdir");
    let wd = format!("workdir={}", work.display());
    let o = run_drctl(
        state,
        &["run", rb.to_str().expect("utf-8"), "--yes", "--set", &wd],
    );
    assert_eq!(code(&o), 4, "paused at the manual step\n{}", both(&o));
    (rb, only_run(state))
}

/// Attack (item 3): the journal's runbook path is swapped to another runbook of the same
/// name, with the fingerprints recomputed (they are plain hashes) so nothing looks changed.
/// An unattended resume refuses to load a runbook from a path it only read in the journal,
/// and names the flag; the other runbook's command never runs. Named with --runbook, the
/// run continues with the operator's file.
#[test]
fn a_swapped_runbook_path_in_the_journal_is_never_loaded_silently() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    let (rb, run_id) = paused_run(tmp.path(), &state, &work);

    // The attacker's runbook: same name and steps, `finish` plants a marker.
    let pwned = tmp.path().join("PWNED");
    let evil_dir = tmp.path().join("evil");
    std::fs::create_dir(&evil_dir).expect("evil dir");
    let evil = evil_dir.join("engine-pause.yaml");
    let text = std::fs::read_to_string(&rb).expect("runbook");
    let payload = format!("touch {}", pwned.display());
    std::fs::write(&evil, text.replace("echo finish-v1 >> steps.log", &payload)).expect("evil");
    // Its fingerprints, as the attacker computes them (here: by a rehearsal elsewhere).
    let scratch = tmp.path().join("scratch-state");
    let wd = format!("workdir={}", work.display());
    let o = run_drctl(
        &scratch,
        &[
            "run",
            evil.to_str().expect("utf-8"),
            "--dry-run",
            "--yes",
            "--set",
            &wd,
        ],
    );
    assert!(code(&o) == 0 || code(&o) == 4, "{}", both(&o));
    let evil_j = journal(&scratch, &only_run(&scratch));
    assert!(!pwned.exists(), "a rehearsal runs no mutation");

    let mut j = journal(&state, &run_id);
    j["runbook_source"] = Value::from(evil.display().to_string());
    j["fingerprint"] = evil_j["fingerprint"].clone();
    let evil_steps = evil_j["steps"].as_array().expect("steps").clone();
    for (s, e) in j["steps"]
        .as_array_mut()
        .expect("steps")
        .iter_mut()
        .zip(evil_steps)
    {
        s["fingerprint"] = e["fingerprint"].clone();
    }
    write_journal(&state, &run_id, &j);

    let o = run_drctl(
        &state,
        &["resume", &run_id, "--yes", "--confirm", "swap-disk"],
    );
    assert_eq!(code(&o), 2, "{}", both(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("began with the runbook file {}", evil.display()))
            && e.contains("drctl does not load a runbook from a path it only read in a journal")
            && e.contains(&format!("drctl resume {run_id} --runbook")),
        "{e}"
    );
    assert!(!pwned.exists(), "the swapped-in runbook ran:\n{}", both(&o));
    assert_eq!(step_state(&journal(&state, &run_id), "finish"), "pending");

    // The operator names their runbook: the change shows, the swapped file is never read.
    let o = run_drctl(
        &state,
        &[
            "resume",
            &run_id,
            "--yes",
            "--confirm",
            "swap-disk",
            "--runbook",
            rb.to_str().expect("utf-8"),
        ],
    );
    assert!(!pwned.exists(), "the swapped-in runbook ran:\n{}", both(&o));
    // The attacker's fingerprints no longer match the operator's runbook.
    assert_eq!(code(&o), 6, "{}", both(&o));
    let o = run_drctl(
        &state,
        &[
            "resume",
            &run_id,
            "--yes",
            "--confirm",
            "swap-disk",
            "--allow-changed",
            "--runbook",
            rb.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code(&o), 0, "{}", both(&o));
    assert!(!pwned.exists(), "the swapped-in runbook ran:\n{}", both(&o));
    let log = std::fs::read_to_string(work.join("steps.log")).expect("steps.log");
    assert_eq!(log, "prepare\nfinish-v1\n");
    assert_eq!(
        journal(&state, &run_id)["runbook_source"],
        Value::from(
            std::fs::canonicalize(&rb)
                .expect("canonical")
                .display()
                .to_string()
        ),
        "the journal records the runbook the run continued with"
    );
}

/// A runbook named with --runbook that is another runbook than the run's is refused.
#[test]
fn a_runbook_of_another_name_cannot_continue_a_run() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    let (_rb, run_id) = paused_run(tmp.path(), &state, &work);
    let other = fixture("engine-secrets").display().to_string();
    let o = run_drctl(&state, &["resume", &run_id, "--yes", "--runbook", &other]);
    assert_eq!(code(&o), 2, "{}", both(&o));
    assert!(
        stderr(&o).contains(&format!(
            "is the runbook `engine-secrets`, but run {run_id} is a run of `engine-pause`"
        )),
        "{}",
        both(&o)
    );
}

/// Attack (item 3): a kubeconfig recorded by `kube.use` (or swapped in the journal) whose
/// user has an exec plugin that would `touch PWNED`. An unattended resume shows the command
/// and stops (exit 4) without running it; --allow-kubeconfig-exec lets it through.
#[test]
fn a_recorded_kubeconfig_with_an_exec_plugin_is_not_used_without_consent() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    let (rb, run_id) = paused_run(tmp.path(), &state, &work);
    let pwned = tmp.path().join("PWNED");
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            r#"apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:1"}}}}]
contexts: [{{name: x, context: {{cluster: c, user: pwn}}}}]
current-context: x
users:
  - name: pwn
    user:
      exec:
        apiVersion: client.authentication.k8s.io/v1beta1
        command: touch
        args: ["{}"]
"#,
            pwned.display()
        ),
    )
    .expect("kubeconfig");
    let mut j = journal(&state, &run_id);
    j["connections"]["kubeconfig"] = Value::from(kubeconfig.display().to_string());
    write_journal(&state, &run_id, &j);

    let rbs = rb.display().to_string();
    let resume = |extra: &[&str]| {
        let mut a = vec![
            "resume",
            run_id.as_str(),
            "--yes",
            "--confirm",
            "swap-disk",
            "--runbook",
            rbs.as_str(),
        ];
        a.extend_from_slice(extra);
        run_drctl(&state, &a)
    };
    let o = resume(&[]);
    assert_eq!(code(&o), 4, "{}", both(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("the kubeconfig {}", kubeconfig.display()))
            && e.contains(&format!("user `pwn` runs touch {}", pwned.display()))
            && e.contains("--allow-kubeconfig-exec"),
        "{e}"
    );
    assert!(!pwned.exists(), "the exec plugin ran");
    assert_eq!(step_state(&journal(&state, &run_id), "finish"), "pending");

    let o = resume(&["--allow-kubeconfig-exec"]);
    assert_eq!(code(&o), 0, "{}", both(&o));
    assert!(
        both(&o).contains("(allowed by --allow-kubeconfig-exec)"),
        "{}",
        both(&o)
    );
}

/// Attack (item 3): state others may read (a 0755 state directory made by hand, a journal
/// left 0644) is made private with a notice; state others may write (a 0666 journal) or
/// that another user owns is refused before a word of it is trusted, with the fix.
#[test]
fn state_others_can_read_is_made_private_and_state_others_can_write_is_refused() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).expect("state");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let work = tmp.path().join("work");
    let rb = tmp.path().join("engine-pause.yaml");
    std::fs::copy(fixture("engine-pause"), &rb).expect("copy the runbook");
    std::fs::create_dir_all(&work).expect("workdir");
    let wd = format!("workdir={}", work.display());
    let o = run_drctl(
        &state,
        &["run", rb.to_str().expect("utf-8"), "--yes", "--set", &wd],
    );
    assert_eq!(code(&o), 4, "{}", both(&o));
    assert_eq!(mode(&state), 0o700, "the state directory was made private");
    assert!(
        both(&o).contains(&format!(
            "the state directory {} was readable by group or others (mode 0755); drctl made it private (mode 0700)",
            state.display()
        )),
        "{}",
        both(&o)
    );
    let run_id = only_run(&state);
    let jp = journal_path(&state, &run_id);
    assert_eq!(mode(&jp), 0o600);

    // A journal left readable by others: private again, said on resume.
    std::fs::set_permissions(&jp, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let rbs = rb.display().to_string();
    let o = run_drctl(&state, &["resume", &run_id, "--yes", "--runbook", &rbs]);
    assert_eq!(
        code(&o),
        4,
        "still waiting at the manual step\n{}",
        both(&o)
    );
    assert!(
        both(&o).contains("was readable by group or others (mode 0644); drctl made it private"),
        "{}",
        both(&o)
    );
    assert_eq!(mode(&jp), 0o600);

    // A journal others can write: its content cannot be trusted. Refused, nothing runs.
    std::fs::set_permissions(&jp, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let o = run_drctl(
        &state,
        &[
            "resume",
            &run_id,
            "--yes",
            "--confirm",
            "swap-disk",
            "--runbook",
            &rbs,
        ],
    );
    assert_ne!(code(&o), 0, "{}", both(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{} is writable by group or others (mode 0666), so its content cannot be trusted; check it, then fix it with `chmod go-w {}`",
            jp.display(),
            jp.display()
        )),
        "{}",
        both(&o)
    );
    assert_eq!(
        mode(&jp),
        0o666,
        "a refused file is left as it is, for a person to look at"
    );
    let log = std::fs::read_to_string(work.join("steps.log")).expect("steps.log");
    assert_eq!(log, "prepare\n", "`finish` did not run");

    // A run directory that is a link: refused.
    let run_dir = state.join("runs").join(&run_id);
    let moved = tmp.path().join("moved-run");
    std::fs::rename(&run_dir, &moved).expect("move");
    std::os::unix::fs::symlink(&moved, &run_dir).expect("link");
    let o = drctl_cmd(&state)
        .args(["resume", &run_id, "--yes", "--runbook", &rbs])
        .stdin(Stdio::null())
        .output()
        .expect("drctl runs");
    assert_ne!(code(&o), 0, "{}", both(&o));
    assert!(
        stderr(&o).contains("is a symbolic link or not a directory"),
        "{}",
        both(&o)
    );
}

const INHERITED: [(&str, &str); 5] = [
    ("VAULT_TOKEN", "hvs.inherited-root-token"),
    ("BAO_TOKEN", "inherited-bao-token"),
    ("AWS_ACCESS_KEY_ID", "AKIAINHERITEDKEYID"),
    ("AWS_SECRET_ACCESS_KEY", "inherited-aws-secret"),
    ("AWS_SESSION_TOKEN", "inherited-aws-session"),
];

/// Attack (item 6): credentials in drctl's own environment (VAULT_TOKEN, BAO_TOKEN, the AWS
/// keys) would reach every command a runbook runs. A step's command sees none of them; one
/// that names a value in its `env` gets exactly that value; one that declares
/// `inherit_env` gets the credentials it names and no other.
#[test]
fn inherited_credentials_reach_only_the_commands_that_ask_for_them() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let rb = fixture("engine-credentials").display().to_string();
    let workdir = format!("workdir={}", work.display());
    let o = drctl_cmd(&state)
        .envs(INHERITED)
        .env("STEP_TOKEN", "the-token-the-step-names")
        .args(["run", rb.as_str(), "--yes", "--set", workdir.as_str()])
        .stdin(Stdio::null())
        .output()
        .expect("drctl runs");
    assert_eq!(code(&o), 0, "{}", both(&o));
    let read = |f: &str| std::fs::read_to_string(work.join(f)).expect(f);
    let (plain, named, inherited) = (read("env-plain"), read("env-named"), read("env-inherited"));
    for (var, value) in INHERITED {
        assert!(
            !plain.contains(value),
            "{var} reached the command:\n{plain}"
        );
        assert!(
            !named.contains(value),
            "{var} reached the command:\n{named}"
        );
        let asked = var.starts_with("AWS_");
        assert_eq!(
            inherited.lines().any(|l| l == format!("{var}={value}")),
            asked,
            "{var} (asked for: {asked}):\n{inherited}"
        );
    }
    assert!(
        named
            .lines()
            .any(|l| l == "VAULT_TOKEN=the-token-the-step-names"),
        "{named}"
    );
}

/// Attack (item 6): the ssh client drctl starts (the `ssh -G` lookup and the connection
/// master) never sees drctl's credentials. A stand-in `ssh` first in PATH records its
/// environment at every start.
#[test]
fn an_ssh_master_never_sees_inherited_credentials() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let dump = tmp.path().join("ssh-env");
    let ssh = bin.join("ssh");
    std::fs::write(
        &ssh,
        format!(
            "#!/bin/sh\n{{ echo \"ARGS $*\"; env; }} >> '{}'\ncase \" $* \" in *\" -G \"*) printf 'hostname lab-host\\nuser op\\nport 22\\n'; exit 0;; esac\nexit 255\n",
            dump.display()
        ),
    )
    .expect("stand-in ssh");
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let rb = tmp.path().join("ssh-env.yaml");
    std::fs::write(
        &rb,
        "apiVersion: drctl/v1\nkind: Runbook\nname: ssh-env\ntitle: T\nsummary: S\nsteps:\n  - id: look\n    title: Look\n    ssh.run: { host: lab-host, command: 'true', mutates: false }\n",
    )
    .expect("runbook");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = drctl_cmd(&state)
        .envs(INHERITED)
        .env("PATH", path)
        .args(["run", rb.to_str().expect("utf-8"), "--yes"])
        .stdin(Stdio::null())
        .output()
        .expect("drctl runs");
    assert_ne!(code(&o), 0, "the stand-in refuses to connect\n{}", both(&o));
    let seen = std::fs::read_to_string(&dump).expect("ssh was started");
    assert!(seen.contains(" -G "), "the lookup ran:\n{seen}");
    assert!(seen.contains(" -M "), "the master was started:\n{seen}");
    for (var, value) in INHERITED {
        assert!(!seen.contains(value), "{var} reached ssh:\n{seen}");
    }
}
