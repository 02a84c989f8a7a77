//! Printed checklists: snapshots of every built-in runbook in every format, and the
//! properties a paper copy must have.

use crate::support::cli::{BUILTIN, drctl, stderr, stdout};

fn print(name: &str, format: &str, extra: &[&str]) -> String {
    let mut args = vec!["print", name, "--format", format];
    args.extend_from_slice(extra);
    let o = drctl(&args);
    assert!(o.status.success(), "{name} {format}: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn snapshots_of_every_builtin_in_every_format() {
    for name in BUILTIN {
        for (format, ext) in [("markdown", "md"), ("text", "txt"), ("html", "html")] {
            let out = print(name, format, &[]);
            insta::assert_snapshot!(format!("{name}.{ext}"), out);
        }
    }
}

#[test]
fn markdown_has_a_checkbox_per_step_and_sign_off() {
    for name in BUILTIN {
        let out = print(name, "markdown", &[]);
        let steps = out.lines().filter(|l| l.starts_with("### ")).count();
        let done = out
            .lines()
            .filter(|l| l.starts_with("- [ ] Done · by "))
            .count();
        assert!(steps > 0, "{name}");
        assert_eq!(steps, done, "{name}: one checkbox per step");
        assert!(out.contains("Run ID: ____"), "{name}");
        assert!(out.contains("## Sign-off"), "{name}");
    }
}

#[test]
fn html_is_one_self_contained_printable_file() {
    for name in BUILTIN {
        let out = print(name, "html", &[]);
        assert!(out.starts_with("<!DOCTYPE html>"));
        assert!(out.contains("@media print"));
        for needle in ["src=\"http", "href=\"http", "<link", "<script", "@import"] {
            assert!(!out.contains(needle), "{name}: external asset {needle}");
        }
    }
}

#[test]
fn secrets_stay_placeholders_even_when_set() {
    let secret = "SuperSecretValue-4711";
    let o = drctl(&[
        "print",
        "cluster-rebuild",
        "--set",
        &format!("kms_aws_secret_access_key={secret}"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains(secret));
    assert!(stderr(&o).contains("is a secret input"));
}

#[test]
fn set_values_fill_the_printed_commands() {
    let out = print(
        "etcd-restore",
        "text",
        &["--set", "control_plane=cp9.example"],
    );
    assert!(out.contains("cp9.example"), "{out}");
}

#[test]
fn unknown_set_key_is_rejected() {
    let o = drctl(&["print", "etcd-restore", "--set", "nope=1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no input `nope`"));
}

#[test]
fn writes_to_a_file_with_dash_o() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("binder.html");
    let o = drctl(&[
        "print",
        "etcd-restore",
        "--format",
        "html",
        "-o",
        &path.display().to_string(),
    ]);
    assert!(o.status.success());
    assert!(stdout(&o).is_empty());
    let html = std::fs::read_to_string(&path).expect("written");
    assert!(html.contains("</html>"));
}
