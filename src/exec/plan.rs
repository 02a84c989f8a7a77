//! Fingerprints: of a runbook (its source text) and of each step (its definition without
//! source positions), so resume can tell whether and where a runbook changed.

use sha2::{Digest, Sha256};

use crate::runbook::Step;

pub fn fingerprint(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

/// Hash of a step's meaning: moving it down a line does not change it, editing it does.
pub fn step_fingerprint(step: &Step) -> String {
    let debug = format!("{step:?}");
    // Drop every `Pos { .. }` (line, column, offset): positions are not meaning.
    let mut canon = String::with_capacity(debug.len());
    let mut rest = debug.as_str();
    while let Some(i) = rest.find("Pos {") {
        canon.push_str(&rest[..i]);
        match rest[i..].find('}') {
            Some(j) => rest = &rest[i + j + 1..],
            None => {
                rest = "";
            }
        }
    }
    canon.push_str(rest);
    hex::encode(&Sha256::digest(canon.as_bytes())[..12])
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
    }
}
