//! `drctl show NAME`: what a runbook needs and does, at a glance.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::plan::resolver::Resolver;
use crate::runbook::ActionSpec;
use crate::runbook::action::Sink;
use crate::runbook::catalog::Entry;
use crate::{Error, Outcome};

pub fn run(entry: &Entry, color: bool) -> Result<Outcome, Error> {
    let (rb, warnings) = super::load_valid(entry, color)?;
    let mut o = String::new();
    let _ = writeln!(o, "{}: {}", rb.name, rb.title);
    let _ = writeln!(o, "source: {}", entry.origin_text());
    let mut meta = vec![format!("severity: {}", rb.severity.as_str())];
    if let Some(d) = rb.estimated_duration {
        meta.push(format!("estimated duration: {d}"));
    }
    if !rb.tags.is_empty() {
        meta.push(format!("tags: {}", rb.tags.join(", ")));
    }
    let _ = writeln!(o, "{}\n", meta.join("  |  "));
    let _ = writeln!(o, "{}\n", rb.summary.trim());
    if let Some(w) = &rb.when_to_use {
        let _ = writeln!(o, "When to use:\n{}\n", indent(w.trim(), "  "));
    }
    // Callouts read with the inputs' defaults filled in, as `print` shows them.
    let resolver = Resolver::new(&rb, &BTreeMap::new());
    for c in &rb.callouts {
        let text = resolver.text(&c.text, Sink::Shown);
        let _ = writeln!(o, "[{}] {}\n", c.kind.label(), first_para(&text));
    }
    if !rb.inputs.is_empty() {
        let _ = writeln!(o, "Inputs:");
        for (name, spec) in &rb.inputs {
            let kind = format!("{:?}", spec.kind).to_lowercase();
            let req = match &spec.default {
                Some(d) if d.value.is_empty() => "optional".to_owned(),
                Some(d) => format!("default {}", d.value),
                None => "required".to_owned(),
            };
            let desc = spec.description.as_deref().unwrap_or("");
            let _ = writeln!(o, "  {name:<28} {kind:<7} {req:<30} {desc}");
        }
        let _ = writeln!(o);
    }
    if !rb.prerequisites.is_empty() {
        let _ = writeln!(o, "Prerequisites:");
        for p in &rb.prerequisites {
            let how = match &p.check {
                Some(c) => format!("checked by {}", c.action.name()),
                None => "confirmed by the operator".to_owned(),
            };
            let _ = writeln!(o, "  - {} ({how})", p.title);
        }
        let _ = writeln!(o);
    }
    let mut n = 0;
    for section in rb.all_sections() {
        if let Some(t) = section.title {
            let _ = writeln!(o, "{t}");
        } else {
            let _ = writeln!(o, "Steps");
        }
        for s in section.steps {
            n += 1;
            let class = if s.action.mutates() {
                "mutates"
            } else {
                "reads"
            };
            let when = s
                .when
                .as_ref()
                .map(|w| format!("  (only if {})", w.value))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  {n:>2}. [{class:<7}] {:<28} {}{when}",
                s.id.value, s.title
            );
        }
        let _ = writeln!(o);
    }
    if !rb.cleanup.is_empty() {
        let _ = writeln!(o, "Cleanup (on failure or abort)");
        for s in &rb.cleanup {
            let class = if s.action.mutates() {
                "mutates"
            } else {
                "reads"
            };
            let _ = writeln!(o, "   - [{class:<7}] {:<28} {}", s.id.value, s.title);
        }
    }
    Ok(Outcome {
        stdout: o,
        stderr: warnings,
        code: 0,
    })
}

fn indent(s: &str, pad: &str) -> String {
    s.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn first_para(s: &str) -> String {
    s.trim()
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .replace('\n', " ")
}
