//! Checklists in markdown, plain text and HTML, for the paper binder: a checkbox per
//! step, the equivalent command of each action with inputs filled in (secrets as
//! placeholders), expected results, fallbacks, callouts in place, decision points as
//! visible branches, and sign-off lines.
//!
//! The runbook is first turned into a small document model, so the three formats show
//! the same content and differ only in markup.

use std::fmt::Write as _;

use crate::runbook::Dur;
use crate::runbook::action::{Action, ActionSpec, Sink};
use crate::runbook::model::{Callout, CalloutKind};

use crate::plan::Resolver;
use crate::plan::{Plan, PlannedStep};

/// The checklist's file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Text,
    Html,
}

pub fn render(plan: &Plan<'_>, format: Format) -> String {
    let doc = Doc::build(plan);
    match format {
        Format::Markdown => markdown(&doc),
        Format::Text => text(&doc),
        Format::Html => html(&doc),
    }
}

// ---------------------------------------------------------------------------------------
// Document model
// ---------------------------------------------------------------------------------------

struct Doc {
    name: String,
    title: String,
    meta: Vec<(String, String)>,
    summary: String,
    when_to_use: Option<String>,
    callouts: Vec<Note>,
    inputs: Vec<InputRow>,
    prerequisites: Vec<Prereq>,
    sections: Vec<SectionDoc>,
    cleanup: Vec<StepDoc>,
    appendix: Vec<Note>,
}

struct Note {
    kind: CalloutKind,
    title: Option<String>,
    text: String,
}

struct InputRow {
    name: String,
    value: String,
    description: String,
}

struct Prereq {
    title: String,
    description: Option<String>,
    check: Vec<String>,
}

struct SectionDoc {
    title: Option<String>,
    description: Option<String>,
    callouts: Vec<Note>,
    steps: Vec<StepDoc>,
}

struct StepDoc {
    number: String,
    id: String,
    title: String,
    mutates: bool,
    action: &'static str,
    when: Option<String>,
    description: Option<String>,
    callouts: Vec<Note>,
    instructions: Option<String>,
    prompt: Option<String>,
    options: Vec<(String, String)>,
    commands: Vec<String>,
    check: Vec<String>,
    expect: Option<String>,
    fallback: Option<String>,
    outputs: Vec<String>,
    /// Secret outputs: named, never to be written on paper.
    secret_outputs: Vec<String>,
    limits: Vec<String>,
}

fn note(c: &Callout, r: &Resolver) -> Note {
    Note {
        kind: c.kind,
        title: c.title.clone(),
        text: r.text(&c.text, Sink::Shown).trim().to_owned(),
    }
}

impl Doc {
    fn build(plan: &Plan<'_>) -> Doc {
        let rb = plan.runbook;
        let sets = &plan.sets;
        let r = &plan.resolver;
        let mut meta = vec![
            ("Runbook".to_owned(), rb.name.value.clone()),
            ("Severity".to_owned(), rb.severity.as_str().to_owned()),
        ];
        if let Some(d) = rb.estimated_duration {
            meta.push(("Estimated duration".to_owned(), d.to_string()));
        }
        if !rb.tags.is_empty() {
            meta.push(("Tags".to_owned(), rb.tags.join(", ")));
        }
        let inputs = rb
            .inputs
            .iter()
            .map(|(name, spec)| {
                let value = if spec.is_secret() {
                    "secret: type it when asked, never write it here".to_owned()
                } else if let Some(v) = sets.get(name) {
                    v.clone()
                } else {
                    match &spec.default {
                        Some(d) if d.value.is_empty() => "(empty by default) ________".to_owned(),
                        Some(d) => format!("{} (default)", d.value),
                        None => "________________".to_owned(),
                    }
                };
                let mut description = spec.description.clone().unwrap_or_default();
                if let Some(ex) = &spec.example {
                    description.push_str(&format!(" (e.g. {ex})"));
                }
                if !spec.choices.is_empty() {
                    let opts: Vec<&str> = spec.choices.iter().map(|c| c.value.as_str()).collect();
                    description.push_str(&format!(" One of: {}.", opts.join(", ")));
                }
                InputRow {
                    name: name.clone(),
                    value,
                    description: description.trim().to_owned(),
                }
            })
            .collect();
        let prerequisites = rb
            .prerequisites
            .iter()
            .map(|p| Prereq {
                title: p.title.clone(),
                description: p
                    .description
                    .as_ref()
                    .map(|d| r.text(d, Sink::Shown).trim().to_owned()),
                check: p
                    .check
                    .as_ref()
                    .map(|c| crate::plan::equivalent::commands(&c.action, r))
                    .unwrap_or_default(),
            })
            .collect();
        let mut n = 0usize;
        // Sections hold the main steps in plan order.
        let mut planned = plan.steps.iter();
        let sections = rb
            .all_sections()
            .into_iter()
            .map(|s| SectionDoc {
                title: s.title.map(str::to_owned),
                description: s.description.map(|d| d.trim().to_owned()),
                callouts: s.callouts.iter().map(|c| note(c, r)).collect(),
                steps: planned
                    .by_ref()
                    .take(s.steps.len())
                    .map(|st| {
                        n += 1;
                        step_doc(st, n.to_string(), r)
                    })
                    .collect(),
            })
            .collect();
        let cleanup = plan
            .cleanup
            .iter()
            .enumerate()
            .map(|(i, st)| step_doc(st, format!("C{}", i + 1), r))
            .collect();
        Doc {
            name: rb.name.value.clone(),
            title: rb.title.clone(),
            meta,
            summary: rb.summary.trim().to_owned(),
            when_to_use: rb.when_to_use.as_ref().map(|w| w.trim().to_owned()),
            callouts: rb.callouts.iter().map(|c| note(c, r)).collect(),
            inputs,
            prerequisites,
            sections,
            cleanup,
            appendix: rb.appendix.iter().map(|c| note(c, r)).collect(),
        }
    }
}

fn output_label(o: &crate::runbook::model::Output) -> String {
    match &o.description {
        Some(d) => format!("`{}`: {d}", o.name.value),
        None => format!("`{}`", o.name.value),
    }
}

const SECRET_OUTPUTS: &str = "Store in your password manager, never on paper";

fn step_doc(p: &PlannedStep<'_>, number: String, r: &Resolver) -> StepDoc {
    let s = p.step;
    let (instructions, prompt, options) = match &s.action {
        Action::Manual(m) => (
            Some(r.text(&m.instructions, Sink::Shown).trim().to_owned()),
            None,
            Vec::new(),
        ),
        Action::Choose(c) => (
            None,
            Some(r.text(&c.prompt, Sink::Shown)),
            c.options
                .iter()
                .map(|o| {
                    let mut label = o.label.clone().unwrap_or_default();
                    if let Some(d) = &o.description {
                        if !label.is_empty() {
                            label.push_str(": ");
                        }
                        label.push_str(d.trim());
                    }
                    (o.value.clone(), label)
                })
                .collect(),
        ),
        Action::Input(i) => (None, Some(r.text(&i.prompt, Sink::Shown)), Vec::new()),
        _ => (None, None, Vec::new()),
    };
    let mut limits = Vec::new();
    if let Some(t) = s.timeout {
        limits.push(format!("give up after {t}"));
    }
    if let Some(w) = s.warn_after {
        limits.push(format!("late after {w}"));
    }
    if let Some(rt) = &s.retries {
        let backoff = rt
            .backoff
            .map(|b| format!(", {} apart (doubling)", Dur::human(b.value)))
            .unwrap_or_default();
        limits.push(format!("{} attempts{backoff}", rt.attempts));
    }
    if s.idempotent {
        limits.push("safe to repeat".to_owned());
    }
    StepDoc {
        number,
        id: s.id.value.clone(),
        title: s.title.clone(),
        mutates: s.action.mutates(),
        action: s.action.name(),
        when: s.when.as_ref().map(|w| w.value.trim().to_owned()),
        description: s
            .description
            .as_ref()
            .map(|d| r.text(d, Sink::Shown).trim().to_owned()),
        callouts: s.callouts.iter().map(|c| note(c, r)).collect(),
        instructions,
        prompt,
        options,
        commands: p.commands.clone(),
        check: p.check.clone(),
        expect: s
            .expect
            .as_ref()
            .map(|e| r.text(e, Sink::Shown).trim().to_owned()),
        fallback: s
            .fallback
            .as_ref()
            .map(|f| r.text(f, Sink::Shown).trim().to_owned()),
        outputs: s
            .outputs
            .iter()
            .filter(|o| !o.secret)
            .map(output_label)
            .collect(),
        secret_outputs: s
            .outputs
            .iter()
            .filter(|o| o.secret)
            .map(output_label)
            .collect(),
        limits,
    }
}

// ---------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------

fn md_alert(kind: CalloutKind) -> &'static str {
    match kind {
        CalloutKind::Critical => "CAUTION",
        CalloutKind::Warning => "WARNING",
        CalloutKind::Tip => "TIP",
        CalloutKind::Note => "NOTE",
    }
}

fn md_note(o: &mut String, n: &Note) {
    let _ = writeln!(o, "> [!{}]", md_alert(n.kind));
    if let Some(t) = &n.title {
        let _ = writeln!(o, "> **{t}**");
        let _ = writeln!(o, ">");
    }
    for line in n.text.lines() {
        if line.is_empty() {
            let _ = writeln!(o, ">");
        } else {
            let _ = writeln!(o, "> {line}");
        }
    }
    let _ = writeln!(o);
}

fn md_code(o: &mut String, cmds: &[String]) {
    if cmds.is_empty() {
        return;
    }
    let _ = writeln!(o, "```sh");
    for c in cmds {
        let _ = writeln!(o, "{c}");
    }
    let _ = writeln!(o, "```\n");
}

fn md_step(o: &mut String, s: &StepDoc) {
    let class = if s.mutates {
        "changes things"
    } else {
        "read-only"
    };
    let _ = writeln!(o, "### {}. {}\n", s.number, s.title);
    let _ = writeln!(o, "`{}` · `{}` · {class}\n", s.id, s.action);
    if let Some(w) = &s.when {
        let _ = writeln!(o, "**Only if** `{w}`; otherwise skip to the next step.\n");
    }
    for c in &s.callouts {
        md_note(o, c);
    }
    if let Some(d) = &s.description {
        let _ = writeln!(o, "{d}\n");
    }
    if let Some(i) = &s.instructions {
        let _ = writeln!(o, "{i}\n");
    }
    if let Some(p) = &s.prompt {
        let _ = writeln!(o, "**Decide:** {p}\n");
    }
    if !s.options.is_empty() {
        for (v, label) in &s.options {
            let sep = if label.is_empty() { "" } else { ": " };
            let _ = writeln!(o, "- [ ] `{v}`{sep}{label}");
        }
        let _ = writeln!(
            o,
            "\nSteps marked **Only if** with this choice follow the branch you ticked.\n"
        );
    }
    md_code(o, &s.commands);
    if !s.check.is_empty() {
        let _ = writeln!(o, "Check (already done / did it work?):\n");
        md_code(o, &s.check);
    }
    if let Some(e) = &s.expect {
        let _ = writeln!(o, "**Expected:** {e}\n");
    }
    if let Some(f) = &s.fallback {
        let _ = writeln!(o, "**If it fails:** {f}\n");
    }
    if !s.outputs.is_empty() {
        let _ = writeln!(o, "**Write down:** {}\n", s.outputs.join("; "));
    }
    if !s.secret_outputs.is_empty() {
        let _ = writeln!(o, "**{SECRET_OUTPUTS}:** {}\n", s.secret_outputs.join("; "));
    }
    if !s.limits.is_empty() {
        let _ = writeln!(o, "*{}*\n", s.limits.join(" · "));
    }
    let _ = writeln!(o, "- [ ] Done · by ________ · at ________\n");
}

fn markdown(d: &Doc) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {}\n", d.title);
    let meta: Vec<String> = d.meta.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(o, "{}\n", meta.join(" · "));
    let _ = writeln!(
        o,
        "Run ID: ____________ · Operator: ____________ · Started: ____________\n"
    );
    let _ = writeln!(o, "{}\n", d.summary);
    if let Some(w) = &d.when_to_use {
        let _ = writeln!(o, "## When to use\n\n{w}\n");
    }
    for c in &d.callouts {
        md_note(&mut o, c);
    }
    if !d.inputs.is_empty() {
        let _ = writeln!(o, "## Inputs\n");
        let _ = writeln!(o, "| Input | Value | Description |");
        let _ = writeln!(o, "| --- | --- | --- |");
        for i in &d.inputs {
            let _ = writeln!(
                o,
                "| `{}` | {} | {} |",
                i.name,
                i.value.replace('|', "\\|"),
                i.description.replace('|', "\\|").replace('\n', " ")
            );
        }
        let _ = writeln!(o);
    }
    if !d.prerequisites.is_empty() {
        let _ = writeln!(o, "## Prerequisites\n");
        for p in &d.prerequisites {
            let _ = writeln!(o, "- [ ] **{}**", p.title);
            if let Some(desc) = &p.description {
                for line in desc.lines() {
                    let _ = writeln!(o, "  {line}");
                }
            }
            if !p.check.is_empty() {
                let _ = writeln!(o, "\n  ```sh");
                for c in &p.check {
                    for line in c.lines() {
                        let _ = writeln!(o, "  {line}");
                    }
                }
                let _ = writeln!(o, "  ```");
            }
        }
        let _ = writeln!(o);
    }
    for s in &d.sections {
        let _ = writeln!(o, "## {}\n", s.title.as_deref().unwrap_or("Procedure"));
        if let Some(desc) = &s.description {
            let _ = writeln!(o, "{desc}\n");
        }
        for c in &s.callouts {
            md_note(&mut o, c);
        }
        for st in &s.steps {
            md_step(&mut o, st);
        }
    }
    if !d.cleanup.is_empty() {
        let _ = writeln!(o, "## Cleanup: only if the run failed or was aborted\n");
        for st in &d.cleanup {
            md_step(&mut o, st);
        }
    }
    if !d.appendix.is_empty() {
        let _ = writeln!(o, "## Appendix\n");
        for c in &d.appendix {
            md_note(&mut o, c);
        }
    }
    let _ = writeln!(o, "## Sign-off\n");
    let _ = writeln!(o, "- [ ] Procedure completed · by ________ · at ________");
    let _ = writeln!(o, "- [ ] Result verified · by ________ · at ________");
    let _ = writeln!(
        o,
        "\nPrinted by `drctl print {}`. Keep this copy with the offline secrets binder.",
        d.name
    );
    o
}

// ---------------------------------------------------------------------------------------
// Plain text
// ---------------------------------------------------------------------------------------

fn text_note(o: &mut String, n: &Note, pad: &str) {
    let head = match &n.title {
        Some(t) => format!("{}: {t}", n.kind.label()),
        None => n.kind.label().to_owned(),
    };
    let _ = writeln!(o, "{pad}!! {head}");
    for line in n.text.lines() {
        let _ = writeln!(o, "{pad}!! {line}");
    }
    let _ = writeln!(o);
}

/// One command entry: `$ ` before its first line only (later lines are a heredoc body
/// or a continuation), and notes (`# ...`) without a prompt.
fn text_command(o: &mut String, pad: &str, cmd: &str) {
    for (i, line) in cmd.lines().enumerate() {
        let lead = if i > 0 {
            "    "
        } else if line.starts_with('#') {
            "  "
        } else {
            "  $ "
        };
        let _ = writeln!(o, "{pad}{lead}{line}");
    }
}

/// `LABEL text`, with the text's later lines indented under the first.
fn text_labelled(o: &mut String, pad: &str, label: &str, text: &str) {
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            let _ = writeln!(o, "{pad}{label}{line}");
        } else if line.trim().is_empty() {
            let _ = writeln!(o);
        } else {
            let _ = writeln!(o, "{pad}  {line}");
        }
    }
}

fn text_step(o: &mut String, s: &StepDoc) {
    let class = if s.mutates {
        "changes things"
    } else {
        "read-only"
    };
    let _ = writeln!(o, "[ ] {}. {}", s.number, s.title);
    let _ = writeln!(o, "      ({} / {} / {class})", s.id, s.action);
    let pad = "      ";
    if let Some(w) = &s.when {
        let _ = writeln!(o, "{pad}ONLY IF {w}; otherwise skip to the next step.");
    }
    let _ = writeln!(o);
    for c in &s.callouts {
        text_note(o, c, pad);
    }
    for block in [&s.description, &s.instructions].into_iter().flatten() {
        for line in block.lines() {
            let _ = writeln!(o, "{pad}{line}");
        }
        let _ = writeln!(o);
    }
    if let Some(p) = &s.prompt {
        let _ = writeln!(o, "{pad}DECIDE: {p}");
        for (v, label) in &s.options {
            let sep = if label.is_empty() { "" } else { ": " };
            let _ = writeln!(o, "{pad}  [ ] {v}{sep}{label}");
        }
        let _ = writeln!(o);
    }
    for c in &s.commands {
        text_command(o, pad, c);
    }
    if !s.commands.is_empty() {
        let _ = writeln!(o);
    }
    if !s.check.is_empty() {
        let _ = writeln!(o, "{pad}CHECK:");
        for c in &s.check {
            text_command(o, pad, c);
        }
        let _ = writeln!(o);
    }
    if let Some(e) = &s.expect {
        text_labelled(o, pad, "EXPECTED: ", e);
    }
    if let Some(f) = &s.fallback {
        text_labelled(o, pad, "IF IT FAILS: ", f);
    }
    if !s.outputs.is_empty() {
        let _ = writeln!(o, "{pad}WRITE DOWN: {}", s.outputs.join("; "));
    }
    if !s.secret_outputs.is_empty() {
        let _ = writeln!(
            o,
            "{pad}{}: {}",
            SECRET_OUTPUTS.to_uppercase(),
            s.secret_outputs.join("; ")
        );
    }
    if !s.limits.is_empty() {
        let _ = writeln!(o, "{pad}({})", s.limits.join(", "));
    }
    let _ = writeln!(o, "{pad}Done by ____________ at ____________\n");
}

fn text(d: &Doc) -> String {
    let mut o = String::new();
    let rule = "=".repeat(d.title.chars().count().min(100));
    let _ = writeln!(o, "{}\n{rule}", d.title);
    for (k, v) in &d.meta {
        let _ = writeln!(o, "{k}: {v}");
    }
    let _ = writeln!(
        o,
        "Run ID: ____________  Operator: ____________  Started: ____________\n"
    );
    let _ = writeln!(o, "{}\n", d.summary);
    if let Some(w) = &d.when_to_use {
        let _ = writeln!(o, "WHEN TO USE\n{w}\n");
    }
    for c in &d.callouts {
        text_note(&mut o, c, "");
    }
    if !d.inputs.is_empty() {
        let _ = writeln!(o, "INPUTS");
        let w = d.inputs.iter().map(|i| i.name.len()).max().unwrap_or(0);
        for i in &d.inputs {
            let _ = writeln!(o, "  {:<w$}  {}", i.name, i.value);
            if !i.description.is_empty() {
                let _ = writeln!(o, "  {:<w$}  {}", "", i.description.replace('\n', " "));
            }
        }
        let _ = writeln!(o);
    }
    if !d.prerequisites.is_empty() {
        let _ = writeln!(o, "PREREQUISITES");
        for p in &d.prerequisites {
            let _ = writeln!(o, "[ ] {}", p.title);
            if let Some(desc) = &p.description {
                for line in desc.lines() {
                    let _ = writeln!(o, "    {line}");
                }
            }
            for c in &p.check {
                text_command(&mut o, "    ", c);
            }
        }
        let _ = writeln!(o);
    }
    for s in &d.sections {
        let title = s.title.as_deref().unwrap_or("PROCEDURE");
        let _ = writeln!(
            o,
            "{}\n{}",
            title.to_uppercase(),
            "-".repeat(title.chars().count())
        );
        if let Some(desc) = &s.description {
            let _ = writeln!(o, "{desc}\n");
        }
        for c in &s.callouts {
            text_note(&mut o, c, "");
        }
        for st in &s.steps {
            text_step(&mut o, st);
        }
    }
    if !d.cleanup.is_empty() {
        let _ = writeln!(o, "CLEANUP: ONLY IF THE RUN FAILED OR WAS ABORTED\n");
        for st in &d.cleanup {
            text_step(&mut o, st);
        }
    }
    for c in &d.appendix {
        text_note(&mut o, c, "");
    }
    let _ = writeln!(o, "SIGN-OFF");
    let _ = writeln!(
        o,
        "[ ] Procedure completed   by ____________ at ____________"
    );
    let _ = writeln!(
        o,
        "[ ] Result verified       by ____________ at ____________"
    );
    let _ = writeln!(o, "\nPrinted by `drctl print {}`.", d.name);
    o
}

// ---------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------

const CSS: &str = r#"
body { font: 11pt/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 50em; margin: 2em auto; padding: 0 1em; color: #111; }
h1 { font-size: 1.7em; margin-bottom: .2em; }
h2 { border-bottom: 2px solid #333; padding-bottom: .15em; margin-top: 1.8em; }
h3 { margin: 0 0 .3em; font-size: 1.1em; }
.meta, .tags { color: #444; }
.fill { border-bottom: 1px solid #333; display: inline-block; min-width: 9em; }
.step { border: 1px solid #999; border-radius: 4px; padding: .6em .9em; margin: 1em 0; break-inside: avoid; page-break-inside: avoid; }
.step.mutates { border-left: 6px solid #b45309; }
.step.reads { border-left: 6px solid #15803d; }
.box { display: inline-block; width: .9em; height: .9em; border: 1.5px solid #111; margin-right: .4em; vertical-align: -0.1em; }
.class { font-size: .85em; color: #444; }
.when { background: #eef2ff; padding: .2em .5em; border-radius: 3px; }
pre { background: #f4f4f4; border: 1px solid #ddd; padding: .5em .7em; white-space: pre-wrap; word-break: break-all; font-size: .9em; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.callout { border-left: 5px solid; padding: .4em .8em; margin: .8em 0; break-inside: avoid; }
.callout.critical { border-color: #b91c1c; background: #fef2f2; }
.callout.warning { border-color: #b45309; background: #fffbeb; }
.callout.tip { border-color: #15803d; background: #f0fdf4; }
.callout.note { border-color: #1d4ed8; background: #eff6ff; }
.callout .label { font-weight: bold; }
table { border-collapse: collapse; width: 100%; }
td, th { border: 1px solid #bbb; padding: .25em .5em; text-align: left; vertical-align: top; }
ul.options { list-style: none; padding-left: .5em; }
.signoff p { margin: .6em 0; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  a { color: inherit; text-decoration: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  pre { background: none; }
}
"#;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// Inline markdown: `code` and **bold**, on escaped text.
fn inline(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{}</code>", esc(part)));
        } else {
            for (j, b) in esc(part).split("**").enumerate() {
                if j % 2 == 1 {
                    out.push_str(&format!("<strong>{b}</strong>"));
                } else {
                    out.push_str(b);
                }
            }
        }
    }
    out
}

/// A small markdown subset: paragraphs, `-`/`1.` lists, fenced code, inline code/bold.
fn md_html(s: &str) -> String {
    let mut out = String::new();
    let mut para: Vec<&str> = Vec::new();
    let mut list: Option<(&str, Vec<String>)> = None;
    let mut code: Option<Vec<&str>> = None;
    fn flush_para(out: &mut String, para: &mut Vec<&str>) {
        if !para.is_empty() {
            out.push_str(&format!("<p>{}</p>\n", inline(&para.join(" "))));
            para.clear();
        }
    }
    fn flush_list(out: &mut String, list: &mut Option<(&str, Vec<String>)>) {
        if let Some((tag, items)) = list.take() {
            out.push_str(&format!("<{tag}>"));
            for i in items {
                out.push_str(&format!("<li>{}</li>", inline(&i)));
            }
            out.push_str(&format!("</{tag}>\n"));
        }
    }
    for line in s.lines() {
        if let Some(buf) = code.as_mut() {
            if line.trim_start().starts_with("```") {
                out.push_str(&format!(
                    "<pre><code>{}</code></pre>\n",
                    esc(&buf.join("\n"))
                ));
                code = None;
            } else {
                buf.push(line);
            }
            continue;
        }
        let t = line.trim();
        if t.starts_with("```") {
            flush_para(&mut out, &mut para);
            flush_list(&mut out, &mut list);
            code = Some(Vec::new());
        } else if t.is_empty() {
            flush_para(&mut out, &mut para);
            flush_list(&mut out, &mut list);
        } else if let Some(item) = t.strip_prefix("- ").or_else(|| t.strip_prefix("* ")) {
            flush_para(&mut out, &mut para);
            if list.as_ref().is_some_and(|(tag, _)| *tag != "ul") {
                flush_list(&mut out, &mut list);
            }
            list.get_or_insert(("ul", Vec::new()))
                .1
                .push(item.to_owned());
        } else if let Some(item) = numbered(t) {
            flush_para(&mut out, &mut para);
            if list.as_ref().is_some_and(|(tag, _)| *tag != "ol") {
                flush_list(&mut out, &mut list);
            }
            list.get_or_insert(("ol", Vec::new()))
                .1
                .push(item.to_owned());
        } else if let Some((_, items)) = list.as_mut() {
            // A continuation line of the last list item.
            if let Some(last) = items.last_mut() {
                last.push(' ');
                last.push_str(t);
            }
        } else {
            para.push(t);
        }
    }
    if let Some(buf) = code {
        out.push_str(&format!(
            "<pre><code>{}</code></pre>\n",
            esc(&buf.join("\n"))
        ));
    }
    flush_para(&mut out, &mut para);
    flush_list(&mut out, &mut list);
    out
}

fn numbered(t: &str) -> Option<&str> {
    let digits = t.find(|c: char| !c.is_ascii_digit())?;
    if digits == 0 {
        return None;
    }
    t[digits..].strip_prefix(". ")
}

fn html_note(o: &mut String, n: &Note) {
    let _ = write!(
        o,
        "<div class=\"callout {}\"><span class=\"label\">{}</span>",
        n.kind.as_str(),
        n.kind.label()
    );
    if let Some(t) = &n.title {
        let _ = write!(o, " <strong>{}</strong>", esc(t));
    }
    let _ = writeln!(o, "{}</div>", md_html(&n.text));
}

fn html_pre(o: &mut String, cmds: &[String]) {
    if !cmds.is_empty() {
        let _ = writeln!(o, "<pre><code>{}</code></pre>", esc(&cmds.join("\n")));
    }
}

fn html_step(o: &mut String, s: &StepDoc) {
    let (cls, class) = if s.mutates {
        ("mutates", "changes things")
    } else {
        ("reads", "read-only")
    };
    let _ = writeln!(o, "<div class=\"step {cls}\" id=\"step-{}\">", esc(&s.id));
    let _ = writeln!(
        o,
        "<h3><span class=\"box\"></span>{}. {}</h3>",
        esc(&s.number),
        esc(&s.title)
    );
    let _ = writeln!(
        o,
        "<div class=\"class\"><code>{}</code> · <code>{}</code> · {class}</div>",
        esc(&s.id),
        esc(s.action)
    );
    if let Some(w) = &s.when {
        let _ = writeln!(
            o,
            "<p class=\"when\"><strong>Only if</strong> <code>{}</code>; otherwise skip to the next step.</p>",
            esc(w)
        );
    }
    for c in &s.callouts {
        html_note(o, c);
    }
    for block in [&s.description, &s.instructions].into_iter().flatten() {
        o.push_str(&md_html(block));
    }
    if let Some(p) = &s.prompt {
        let _ = writeln!(o, "<p><strong>Decide:</strong> {}</p>", inline(p));
    }
    if !s.options.is_empty() {
        let _ = writeln!(o, "<ul class=\"options\">");
        for (v, label) in &s.options {
            let sep = if label.is_empty() { "" } else { ": " };
            let _ = writeln!(
                o,
                "<li><span class=\"box\"></span><code>{}</code>{sep}{}</li>",
                esc(v),
                inline(label)
            );
        }
        let _ = writeln!(o, "</ul>");
    }
    html_pre(o, &s.commands);
    if !s.check.is_empty() {
        let _ = writeln!(o, "<p>Check (already done / did it work?):</p>");
        html_pre(o, &s.check);
    }
    if let Some(e) = &s.expect {
        let _ = writeln!(o, "<div><strong>Expected:</strong>{}</div>", md_html(e));
    }
    if let Some(f) = &s.fallback {
        let _ = writeln!(o, "<div><strong>If it fails:</strong>{}</div>", md_html(f));
    }
    if !s.outputs.is_empty() {
        let _ = writeln!(
            o,
            "<p><strong>Write down:</strong> {} <span class=\"fill\"></span></p>",
            inline(&s.outputs.join("; "))
        );
    }
    if !s.secret_outputs.is_empty() {
        let _ = writeln!(
            o,
            "<p><strong>{SECRET_OUTPUTS}:</strong> {}</p>",
            inline(&s.secret_outputs.join("; "))
        );
    }
    if !s.limits.is_empty() {
        let _ = writeln!(
            o,
            "<p class=\"class\"><em>{}</em></p>",
            esc(&s.limits.join(" · "))
        );
    }
    let _ = writeln!(
        o,
        "<p>Done by <span class=\"fill\"></span> at <span class=\"fill\"></span></p>\n</div>"
    );
}

fn html(d: &Doc) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>",
        esc(&d.title)
    );
    let _ = writeln!(o, "<h1>{}</h1>", esc(&d.title));
    let meta: Vec<String> = d
        .meta
        .iter()
        .map(|(k, v)| format!("{}: <strong>{}</strong>", esc(k), esc(v)))
        .collect();
    let _ = writeln!(o, "<p class=\"meta\">{}</p>", meta.join(" · "));
    let _ = writeln!(
        o,
        "<p>Run ID <span class=\"fill\"></span> Operator <span class=\"fill\"></span> Started <span class=\"fill\"></span></p>"
    );
    o.push_str(&md_html(&d.summary));
    if let Some(w) = &d.when_to_use {
        let _ = writeln!(o, "<h2>When to use</h2>\n{}", md_html(w));
    }
    for c in &d.callouts {
        html_note(&mut o, c);
    }
    if !d.inputs.is_empty() {
        let _ = writeln!(
            o,
            "<h2>Inputs</h2>\n<table>\n<tr><th>Input</th><th>Value</th><th>Description</th></tr>"
        );
        for i in &d.inputs {
            let _ = writeln!(
                o,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&i.name),
                esc(&i.value),
                inline(&i.description)
            );
        }
        let _ = writeln!(o, "</table>");
    }
    if !d.prerequisites.is_empty() {
        let _ = writeln!(o, "<h2>Prerequisites</h2>\n<ul class=\"options\">");
        for p in &d.prerequisites {
            let _ = writeln!(
                o,
                "<li><span class=\"box\"></span><strong>{}</strong>{}",
                esc(&p.title),
                p.description.as_deref().map(md_html).unwrap_or_default()
            );
            html_pre(&mut o, &p.check);
            let _ = writeln!(o, "</li>");
        }
        let _ = writeln!(o, "</ul>");
    }
    for s in &d.sections {
        let _ = writeln!(
            o,
            "<h2>{}</h2>",
            esc(s.title.as_deref().unwrap_or("Procedure"))
        );
        if let Some(desc) = &s.description {
            o.push_str(&md_html(desc));
        }
        for c in &s.callouts {
            html_note(&mut o, c);
        }
        for st in &s.steps {
            html_step(&mut o, st);
        }
    }
    if !d.cleanup.is_empty() {
        let _ = writeln!(o, "<h2>Cleanup: only if the run failed or was aborted</h2>");
        for st in &d.cleanup {
            html_step(&mut o, st);
        }
    }
    if !d.appendix.is_empty() {
        let _ = writeln!(o, "<h2>Appendix</h2>");
        for c in &d.appendix {
            html_note(&mut o, c);
        }
    }
    let _ = writeln!(
        o,
        "<h2>Sign-off</h2>\n<div class=\"signoff\">\n<p><span class=\"box\"></span>Procedure completed by <span class=\"fill\"></span> at <span class=\"fill\"></span></p>\n<p><span class=\"box\"></span>Result verified by <span class=\"fill\"></span> at <span class=\"fill\"></span></p>\n</div>"
    );
    let _ = writeln!(
        o,
        "<p class=\"meta\">Printed by <code>drctl print {}</code>.</p>\n</body>\n</html>",
        esc(&d.name)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_subset_to_html() {
        assert_eq!(
            md_html("Run `make x` **now**.\n\n- a\n- b <c>\n\n1. one\n2. two"),
            "<p>Run <code>make x</code> <strong>now</strong>.</p>\n<ul><li>a</li><li>b &lt;c&gt;</li></ul>\n<ol><li>one</li><li>two</li></ol>\n"
        );
        assert_eq!(
            md_html("```\nrm -rf <x>\n```"),
            "<pre><code>rm -rf &lt;x&gt;</code></pre>\n"
        );
    }
}
