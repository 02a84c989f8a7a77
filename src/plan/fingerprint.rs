//! Fingerprints: of a runbook (its source text) and of each step (its definition without
//! source positions), so resume can tell whether and where a runbook changed.

use sha2::{Digest, Sha256};

use crate::runbook::Step;

pub fn fingerprint(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

/// Hash of a step's meaning: moving it down a line does not change it, editing it does.
///
/// Taken from a canonical serialization (values only, no source positions, object keys
/// sorted, absent/empty/false fields left out), not from `Debug`: a new drctl release
/// that adds an optional field, reorders a struct or changes a `Debug` impl leaves the
/// fingerprints of unchanged runbooks as they were, so their unfinished runs resume.
pub fn step_fingerprint(step: &Step) -> String {
    let canon = match serde_json::to_value(step) {
        Ok(v) => {
            let mut out = String::new();
            write_canonical(&v, &mut out);
            out
        }
        // Not reachable with the runbook types (no non-string map keys); still a stable
        // hash of the step rather than a panic.
        Err(e) => format!("unserializable step {}: {e}", step.id.value),
    };
    hex::encode(&Sha256::digest(canon.as_bytes())[..12])
}

/// Whether a field carries nothing (left out, so a new optional field changes nothing).
fn is_empty(v: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match v {
        V::Null | V::Bool(false) => true,
        V::Array(a) => a.is_empty(),
        V::Object(o) => o.values().all(is_empty),
        _ => false,
    }
}

/// JSON with sorted keys and empty fields left out.
fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value as V;
    match v {
        V::Object(o) => {
            let mut keys: Vec<&String> = o
                .iter()
                .filter(|(_, v)| !is_empty(v))
                .map(|(k, _)| k)
                .collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&V::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&o[k.as_str()], out);
            }
            out.push('}');
        }
        V::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// What changed between the steps a journal recorded and the runbook now.
pub fn describe_changes(before: &[(String, String)], after: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (id, fp) in before {
        match after.iter().find(|(a, _)| a == id) {
            None => out.push(format!("step `{id}` was removed")),
            Some((_, fp2)) if fp2 != fp => out.push(format!("step `{id}` changed")),
            _ => {}
        }
    }
    for (id, _) in after {
        if !before.iter().any(|(b, _)| b == id) {
            out.push(format!("step `{id}` was added"));
        }
    }
    let order_before: Vec<&String> = before
        .iter()
        .map(|(id, _)| id)
        .filter(|id| after.iter().any(|(a, _)| a == *id))
        .collect();
    let order_after: Vec<&String> = after
        .iter()
        .map(|(id, _)| id)
        .filter(|id| before.iter().any(|(b, _)| b == *id))
        .collect();
    if order_before != order_after {
        out.push("steps were reordered".to_owned());
    }
    if out.is_empty() {
        out.push("the file changed outside its steps (metadata, inputs, callouts)".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn steps(src: &str) -> Vec<(String, String)> {
        let rb = crate::runbook::load::parse("t.yaml", &Arc::from(src)).expect("parses");
        rb.main_steps()
            .map(|s| (s.id.value.clone(), step_fingerprint(s)))
            .collect()
    }

    const RB: &str = "apiVersion: drctl/v1\nkind: Runbook\nname: t\ntitle: T\nsummary: S\nsteps:\n  - id: a\n    title: A\n    sleep: { duration: 1s }\n  - id: b\n    title: B\n    sleep: { duration: 2s }\n";

    #[test]
    fn positions_do_not_count_content_does() {
        let base = steps(RB);
        let moved = steps(&RB.replace("summary: S\n", "summary: S\ntags: [x]\n\n\n"));
        assert_eq!(base, moved);
        let edited = steps(&RB.replace("2s", "3s"));
        assert_eq!(base[0], edited[0]);
        assert_ne!(base[1], edited[1]);
        assert_eq!(describe_changes(&base, &edited), vec!["step `b` changed"]);
        // The same duration spelt differently is the same step.
        let respelt = steps(&RB.replace("2s", "2000ms"));
        assert_eq!(base, respelt);
        // An explicit default-off flag is the flag left out.
        let explicit =
            steps(&RB.replace("    title: B\n", "    title: B\n    idempotent: false\n"));
        assert_eq!(base, explicit);
    }

    /// The fingerprints of every built-in runbook's steps, pinned: a change to drctl that
    /// moves one makes every unfinished run of that runbook "changed" after an upgrade,
    /// so it must be deliberate (update the snapshot and say so in the release notes).
    #[test]
    fn built_in_fingerprints_are_stable_across_builds() {
        let mut all = String::new();
        for (name, text) in crate::runbook::catalog::BUILTIN {
            let rb = crate::runbook::load::parse(name, &Arc::from(*text)).expect("parses");
            for s in rb.main_steps().chain(rb.cleanup.iter()) {
                all.push_str(&format!(
                    "{} {} {}\n",
                    rb.name.value,
                    s.id.value,
                    step_fingerprint(s)
                ));
            }
        }
        insta::assert_snapshot!(all);
    }
}
