//! `drctl schema`: the JSON Schema of the runbook format.

use crate::runbook::Runbook;

pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Runbook);
    let mut v = schema.to_value();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "$id".into(),
            serde_json::Value::String("https://drctl.dev/schema/runbook-v1.json".into()),
        );
        obj.insert(
            "title".into(),
            serde_json::Value::String("drctl runbook (apiVersion drctl/v1)".into()),
        );
    }
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}
