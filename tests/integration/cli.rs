//! list / show / validate / completions / help on the built-in runbooks.

use crate::support::cli::{BUILTIN, drctl, root, stderr, stdout};

#[test]
fn list_shows_all_thirteen_builtins_name_first() {
    let o = drctl(&["list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let names: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(names, BUILTIN);
    for line in out.lines() {
        assert!(line.trim_end().ends_with("built-in"), "{line}");
        assert!(!line.contains("(invalid"), "{line}");
    }
}

#[test]
fn list_json_has_name_title_source() {
    let o = drctl(&["list", "--output", "json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), BUILTIN.len());
    for e in arr {
        assert!(e["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(e["source"], "built-in");
    }
}

#[test]
fn validate_passes_on_every_builtin() {
    let o = drctl(&["validate"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(err, "", "no warnings either");
    let out = stdout(&o);
    for name in BUILTIN {
        assert!(out.contains(&format!("ok   builtin:{name}.yaml")), "{out}");
    }
    assert!(out.ends_with(&format!(
        "{} runbook(s) checked: 0 with errors, 0 error(s), 0 warning(s)\n",
        BUILTIN.len()
    )));
}

#[test]
fn validate_checks_files_on_disk_too() {
    let files: Vec<String> = BUILTIN
        .iter()
        .map(|n| format!("runbooks/{n}.yaml"))
        .collect();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let o = drctl(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn show_lists_inputs_prerequisites_and_step_classes() {
    let o = drctl(&["show", "etcd-restore"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("etcd-restore: "), "{out}");
    assert!(out.contains("Inputs:"));
    assert!(out.contains("Prerequisites:"));
    assert!(out.contains("[reads  ]"), "read-only steps are marked");
    assert!(out.contains("[mutates]"), "mutating steps are marked");
}

#[test]
fn unknown_runbook_suggests_the_close_name() {
    let o = drctl(&["show", "etcd-restor"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        stderr(&o),
        "error: no runbook named `etcd-restor` (did you mean `etcd-restore`?); `drctl list` shows the known ones\n"
    );
}

#[test]
fn user_directory_overrides_builtins_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src =
        std::fs::read_to_string(root().join("runbooks/etcd-restore.yaml")).expect("builtin source");
    let custom = src.replacen("title: ", "title: Custom ", 1);
    std::fs::write(dir.path().join("etcd-restore.yaml"), custom).expect("write");
    let o = drctl(&["--runbooks", &dir.path().display().to_string(), "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with("etcd-restore "))
        .expect("listed");
    assert!(line.contains("Custom "), "{line}");
    assert!(line.trim_end().ends_with("etcd-restore.yaml"), "{line}");
    assert_eq!(out.lines().count(), BUILTIN.len());
}

#[test]
fn every_command_has_help_with_examples() {
    for cmd in [
        "list",
        "show",
        "validate",
        "print",
        "schema",
        "completions",
        "man",
    ] {
        let o = drctl(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd}");
        assert!(stdout(&o).contains("Example"), "{cmd} --help has examples");
    }
}

#[test]
fn completions_are_generated() {
    let o = drctl(&["completions", "bash"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("_drctl()"));
}

/// Issue 15: manual pages from the CLI definition, one per command, that `man` renders
/// with every option of `run`.
#[test]
fn man_pages_are_written_and_render() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("man1");
    let o = drctl(&["man", &dir.display().to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for page in ["drctl.1", "drctl-run.1", "drctl-resume.1", "drctl-print.1"] {
        assert!(dir.join(page).is_file(), "{page}: {}", stdout(&o));
    }
    let rendered = std::process::Command::new("man")
        .arg("-l")
        .arg(dir.join("drctl-run.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man runs");
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    for want in ["drctl-run", "--dry-run", "--set-file", "--kubeconfig"] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
}

#[test]
fn bad_set_is_a_usage_error() {
    let o = drctl(&["print", "etcd-restore", "--set", "novalue"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not KEY=VALUE"));
}
