//! Which inputs a part of a runbook needs, so a secret is asked for only when it is
//! needed: a rehearsal never asks for one that only a change would use, and a run asks
//! for it when the first step that uses it is reached (`upfront: true` asks before step
//! one).

use std::collections::BTreeSet;

use crate::runbook::action::ActionSpec;
use crate::runbook::model::{Runbook, Step};

/// How `text` reaches `root.name` (`root` is `inputs` or `outputs`): by its name
/// (`root.name`, `root['name']`), and whether it uses `root` whole (a subscript by
/// variable, an alias, a loop), which may read any of them.
fn reaches(text: &str, root: &str, name: &str) -> (bool, bool) {
    let mut whole = false;
    let mut rest = text;
    while let Some(i) = rest.find(root) {
        let before = &rest[..i];
        let after = &rest[i + root.len()..];
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
                    return (true, whole);
                }
                if lit.starts_with(['\'', '"']) {
                    continue;
                }
            }
            whole = true;
            continue;
        };
        if field.starts_with(name)
            && !field[name.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        {
            return (true, whole);
        }
    }
    (false, whole)
}

/// Whether `text` uses input `name`: `inputs.name`, `inputs['name']`, or `inputs` whole,
/// which may read any input.
pub fn mentions_input(text: &str, name: &str) -> bool {
    let (named, whole) = reaches(text, "inputs", name);
    named || whole
}

/// Whether `text` names output `name` (`outputs.name`, `outputs['name']`).
pub fn mentions_output(text: &str, name: &str) -> bool {
    reaches(text, "outputs", name).0
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

/// The template texts of the prerequisites' checks (run before step one).
fn prerequisite_texts(rb: &Runbook) -> Vec<&str> {
    let mut texts: Vec<&str> = Vec::new();
    for p in &rb.prerequisites {
        if let Some(c) = &p.check {
            c.action
                .visit_texts(&mut |t, _| texts.push(t.value.as_str()));
        }
    }
    texts
}

/// The inputs (of the runbook) that one of `texts` uses.
fn inputs_in(rb: &Runbook, texts: &[&str]) -> BTreeSet<String> {
    rb.inputs
        .keys()
        .filter(|n| texts.iter().any(|t| mentions_input(t, n)))
        .cloned()
        .collect()
}

/// The inputs a rehearsal uses: everything but the fields of actions that change
/// things (a rehearsal shows those, it does not perform them).
pub fn used_by_rehearsal(rb: &Runbook) -> BTreeSet<String> {
    let mut texts = prerequisite_texts(rb);
    for s in rb.main_steps().chain(rb.cleanup.iter()) {
        texts.extend(step_texts(s, !s.action.mutates()));
    }
    inputs_in(rb, &texts)
}

/// The inputs used before step one (prerequisite checks): asked up front.
pub fn used_before_step_one(rb: &Runbook) -> BTreeSet<String> {
    inputs_in(rb, &prerequisite_texts(rb))
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

    #[test]
    fn output_references_by_name_only() {
        assert!(mentions_output("{{ outputs.vault_addr }}/v1", "vault_addr"));
        assert!(mentions_output("{{ outputs['vault_addr'] }}", "vault_addr"));
        assert!(mentions_output(
            "{{ outputs[\"vault_addr\"] }}",
            "vault_addr"
        ));
        assert!(!mentions_output("{{ outputs.vault }}", "vault_addr"));
        assert!(!mentions_output("{{ outputs.vault_addr }}", "vault"));
        assert!(mentions_output("{{ outputs.vault.x }}", "vault"));
        assert!(!mentions_output("{{ outputs | items }}", "vault"));
    }
}
