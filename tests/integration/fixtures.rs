//! Broken runbooks give exact, located diagnostics (snapshots of the rendered text).

use crate::support::cli::{drctl, stderr, stdout};

fn check(name: &str) -> String {
    let path = format!("tests/fixtures/broken/{name}.yaml");
    let o = drctl(&["--color", "never", "validate", &path]);
    assert_eq!(o.status.code(), Some(1), "{name} must fail validation");
    assert!(stdout(&o).contains(&format!("FAIL {path}")));
    stderr(&o)
}

macro_rules! fixture_tests {
    ($($test:ident => $file:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                insta::assert_snapshot!($file, check($file));
            }
        )*
    };
}

fixture_tests! {
    yaml_syntax => "yaml-syntax",
    duplicate_key => "duplicate-key",
    unknown_field => "unknown-field",
    unknown_action => "unknown-action",
    unknown_action_field => "unknown-action-field",
    two_actions => "two-actions",
    bad_duration => "bad-duration",
    semantic => "semantic",
}

#[test]
fn every_problem_of_every_file_in_one_pass() {
    let o = drctl(&[
        "--color",
        "never",
        "validate",
        "tests/fixtures/broken/semantic.yaml",
        "tests/fixtures/broken/unknown-field.yaml",
        "runbooks/etcd-restore.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("FAIL tests/fixtures/broken/semantic.yaml"));
    assert!(out.contains("FAIL tests/fixtures/broken/unknown-field.yaml"));
    assert!(out.contains("ok   runbooks/etcd-restore.yaml"));
    assert!(
        out.contains("3 runbook(s) checked: 2 with errors, 11 error(s)"),
        "{out}"
    );
    // Each diagnostic starts with FILE:LINE:COL.
    let located = stderr(&o)
        .lines()
        .filter(|l| l.starts_with("tests/fixtures/broken/") && l.contains(": error: "))
        .count();
    assert_eq!(located, 11);
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let o = drctl(&["validate", "tests/fixtures/none.yaml"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).starts_with("error: cannot read runbook tests/fixtures/none.yaml: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn print_refuses_an_invalid_runbook() {
    let o = drctl(&[
        "--color",
        "never",
        "print",
        "tests/fixtures/broken/semantic.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("has errors; fix them first"));
    assert!(stdout(&o).is_empty());
}
