//! Which inputs a part of a runbook needs, so a secret is asked for only when it is
//! needed: a rehearsal never asks for one that only a change would use, and a run asks
//! for it when the first step that uses it is reached (`upfront: true` asks before step
//! one).

use std::collections::BTreeSet;

use crate::runbook::action::ActionSpec;
use crate::runbook::model::{Runbook, Step};

/// Whether `text` uses input `name`: `inputs.name`, `inputs['name']`, or `inputs` whole
/// (a subscript by variable, an alias, a loop), which may read any input.
pub fn mentions_input(text: &str, name: &str) -> bool {
    let mut rest = text;
    while let Some(i) = rest.find("inputs") {
        let before = &rest[..i];
        let after = &rest[i + "inputs".len()..];
        rest = after;
        if before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        let Some(field) = after.strip_prefix('.') else {
            if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(sub) = after.strip_prefix('[') {
                let lit = sub.trim_start();
                let quoted = [format!("'{name}'"), format!("\"{name}\"")];
                if quoted.iter().any(|q| lit.starts_with(q.as_str())) {
                    return true;
                }
                if lit.starts_with(['\'', '"']) {
                    continue;
                }
            }
            // `inputs` whole: it may read this one.
            return true;
        };
        if field.starts_with(name)
            && !field[name.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        {
            return true;
        }
    }
    false
}

/// The template texts of a step that are used when it runs, and (`with_action`) those
/// of its action.
fn step_texts(step: &Step, with_action: bool) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    if with_action {
        step.action
            .visit_texts(&mut |t, _| out.push(t.value.as_str()));
    }
    if let Some(c) = &step.check {
        c.action.visit_texts(&mut |t, _| out.push(t.value.as_str()));
    }
    if let Some(w) = &step.when {
        out.push(&w.value);
    }
    out.extend(step.outputs.iter().map(|o| o.from.value.as_str()));
    out
}

/// The inputs (of `names`) this step uses.
pub fn used_by_step<'n>(step: &Step, names: &'n BTreeSet<String>) -> Vec<&'n String> {
    let texts = step_texts(step, true);
    names
        .iter()
        .filter(|n| texts.iter().any(|t| mentions_input(t, n)))
        .collect()
}

/// The inputs a rehearsal uses: everything but the fields of actions that change
/// things (a rehearsal shows those, it does not perform them).
pub fn used_by_rehearsal(rb: &Runbook) -> BTreeSet<String> {
    let mut texts: Vec<&str> = Vec::new();
    for p in &rb.prerequisites {
        if let Some(c) = &p.check {
            c.action
                .visit_texts(&mut |t, _| texts.push(t.value.as_str()));
        }
    }
    for s in rb.main_steps().chain(rb.cleanup.iter()) {
        texts.extend(step_texts(s, !s.action.mutates()));
    }
    rb.inputs
        .keys()
        .filter(|n| texts.iter().any(|t| mentions_input(t, n)))
        .cloned()
        .collect()
}

/// The inputs used before step one (prerequisite checks): asked up front.
pub fn used_before_step_one(rb: &Runbook) -> BTreeSet<String> {
    let mut texts: Vec<&str> = Vec::new();
    for p in &rb.prerequisites {
        if let Some(c) = &p.check {
            c.action
                .visit_texts(&mut |t, _| texts.push(t.value.as_str()));
        }
    }
    rb.inputs
        .keys()
        .filter(|n| texts.iter().any(|t| mentions_input(t, n)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_references_in_every_spelling() {
        assert!(mentions_input("{{ inputs.key }}", "key"));
        assert!(mentions_input("{{ inputs['key'] }}", "key"));
        assert!(mentions_input("{{ inputs[ \"key\" ] }}", "key"));
        assert!(mentions_input("{% set i = inputs %}{{ i.k }}", "key"));
        assert!(mentions_input("{{ inputs[n] }}", "key"));
        assert!(!mentions_input("{{ inputs.keys }}", "key"));
        assert!(!mentions_input("{{ inputs['other'] }}", "key"));
        assert!(!mentions_input("{{ myinputs.key }}", "key"));
        assert!(!mentions_input("{{ inputs_x }}", "key"));
        assert!(!mentions_input("no template", "key"));
    }
}
