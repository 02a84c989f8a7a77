//! Issue 18, the operator's time, as a new user meets drctl: a laptop with no
//! kubeconfig, a rehearsal before any incident, `show` before a run.

use std::process::Stdio;

use serde_json::Value;

use crate::support::cli::{both, code, drctl_cmd, events, stdout};

/// `drctl run vault-stuck-sealed --dry-run` on a machine without a kubeconfig (KUBECONFIG
/// naming a file that does not exist, and none at all): the unseal key is not asked
/// for, the missing kubeconfig is said once (with the path as written), nothing is
/// retried, every Kubernetes step is named as blocked by it, and the report has one
/// problem, not one per step.
#[test]
fn a_rehearsal_without_a_kubeconfig_says_it_once_and_asks_for_no_secret() {
    for kubeconfig in [Some("nokube"), None] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).expect("home");
        let mut cmd = drctl_cmd(&tmp.path().join("state"));
        cmd.env("HOME", &home)
            .env_remove("KUBECONFIG")
            .env_remove("DRCTL_INPUT_UNSEAL_KEY")
            .env_remove("KUBERNETES_SERVICE_HOST");
        let missing = tmp.path().join("nokube");
        if kubeconfig.is_some() {
            cmd.env("KUBECONFIG", &missing);
        }
        let o = cmd
            .args([
                "run",
                "vault-stuck-sealed",
                "--dry-run",
                "--yes",
                "--output",
                "json",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("drctl runs");
        let all = both(&o);
        let evs = events(&stdout(&o));
        assert!(
            !all.contains("missing input"),
            "a rehearsal asks for no secret only changes use: {all}"
        );
        assert!(
            evs.iter().any(|e| e["event"] == "notice"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("`unseal_key` not asked for"))),
            "{all}"
        );
        assert!(
            !evs.iter().any(|e| e["event"] == "step_retry"),
            "a missing kubeconfig is never retried: {all}"
        );
        let said = evs
            .iter()
            .filter(|e| {
                e.to_string()
                    .contains("cannot load the Kubernetes connection")
            })
            .count();
        // The problem event, and the report's one entry.
        assert_eq!(said, 2, "{all}");
        if kubeconfig.is_some() {
            assert!(
                all.contains(&format!("KUBECONFIG={}: no such file", missing.display())),
                "{all}"
            );
            assert!(!all.contains("'\""), "a path quoted twice: {all}");
        } else {
            assert!(all.contains("KUBECONFIG is not set"), "{all}");
        }
        let blocked: Vec<&str> = evs
            .iter()
            .filter(|e| e["event"] == "step_finished" && e["outcome"] == "blocked")
            .filter_map(|e| e["id"].as_str())
            .collect();
        for id in [
            "list-jobs",
            "check-vault-pod",
            "port-forward",
            "vault-status",
        ] {
            assert!(blocked.contains(&id), "{id} blocked: {blocked:?}\n{all}");
        }
        // A change is still shown as it would run: that is what a rehearsal is for.
        assert!(
            evs.iter().any(|e| e["event"] == "step_finished"
                && e["id"] == "unseal"
                && e["outcome"] == "would_run"),
            "{all}"
        );
        assert!(
            !all.contains("{{ outputs."),
            "no raw template is shown: {all}"
        );
        let finished = evs
            .iter()
            .find(|e| e["event"] == "run_finished")
            .expect("run_finished");
        let problems: Vec<&Value> = finished["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(problems.len(), 1, "{finished}");
        let p = problems[0].as_str().unwrap_or_default();
        assert!(
            p.starts_with("kube-access: ") && p.contains("also blocks: list-jobs, cronjob-logs"),
            "{p}"
        );
        assert_ne!(
            code(&o),
            0,
            "a rehearsal with a problem does not pass: {all}"
        );
    }
}

/// A real run under --yes cannot ask later: a missing secret is still refused before
/// step one, naming how to give it.
#[test]
fn a_run_under_yes_still_needs_its_secrets_up_front() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = drctl_cmd(&tmp.path().join("state"))
        .env_remove("DRCTL_INPUT_UNSEAL_KEY")
        .args(["run", "vault-stuck-sealed", "--yes"])
        .stdin(Stdio::null())
        .output()
        .expect("drctl runs");
    let all = both(&o);
    assert_ne!(code(&o), 0, "{all}");
    assert!(
        all.contains("missing input(s): `unseal_key` (DRCTL_INPUT_UNSEAL_KEY"),
        "{all}"
    );
}

/// `show` renders callouts with the inputs' defaults, as `print` does: no template
/// reaches the operator raw, for any built-in runbook.
#[test]
fn show_renders_every_callout_of_every_builtin_runbook() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let list = drctl_cmd(&tmp.path().join("state"))
        .args(["list", "--output", "json"])
        .output()
        .expect("drctl runs");
    let names: Vec<String> = serde_json::from_str::<Value>(&stdout(&list))
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    assert!(names.len() >= 13, "{}", both(&list));
    for n in names {
        let o = drctl_cmd(&tmp.path().join("state"))
            .args(["show", &n])
            .output()
            .expect("drctl runs");
        assert_eq!(code(&o), 0, "{}", both(&o));
        assert!(!stdout(&o).contains("{{"), "{n}: {}", stdout(&o));
    }
}
