//! The JSON Schema accepts every built-in runbook and rejects shape errors.

use crate::support::cli::{BUILTIN, drctl, root};

fn validator() -> jsonschema::Validator {
    let o = drctl(&["schema"]);
    assert!(o.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema is a valid JSON Schema")
}

fn as_json(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root().join(path)).expect("read runbook");
    serde_saphyr::from_str::<serde_json::Value>(&text).expect("YAML to JSON")
}

#[test]
fn schema_accepts_every_builtin_runbook() {
    let v = validator();
    for name in BUILTIN {
        let doc = as_json(&format!("runbooks/{name}.yaml"));
        let errors: Vec<String> = v
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}

#[test]
fn schema_rejects_shape_errors() {
    let v = validator();
    for f in [
        "unknown-field",
        "unknown-action",
        "unknown-action-field",
        "two-actions",
    ] {
        let doc = as_json(&format!("tests/fixtures/broken/{f}.yaml"));
        assert!(!v.is_valid(&doc), "{f} should not pass the schema");
    }
}
