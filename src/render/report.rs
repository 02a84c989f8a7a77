//! The incident report of a run: who, when, each step's action as performed (secrets
//! redacted at the source), its result, an output excerpt and its duration.

use std::fmt::Write as _;

use crate::exec::journal::{Journal, Mode, StepRecord, StepState};

fn duration(s: &StepRecord) -> String {
    match (s.started_at, s.finished_at) {
        (Some(a), Some(b)) => {
            let ms = (b - a).num_milliseconds().max(0);
            if ms >= 60_000 {
                format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
            } else {
                format!("{:.1}s", ms as f64 / 1000.0)
            }
        }
        _ => "-".to_owned(),
    }
}

fn result(s: &StepRecord) -> String {
    let base = match (s.state, s.rehearsed) {
        (StepState::Skipped, true) => "would run (rehearsal)".to_owned(),
        (st, _) => st.as_str().to_owned(),
    };
    match &s.message {
        Some(m) => format!("{base}: {m}"),
        None => base,
    }
}

fn step_md(o: &mut String, n: usize, s: &StepRecord) {
    let _ = writeln!(o, "### {n}. {} (`{}`)\n", s.title, s.id);
    let when = s
        .started_at
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "not started".to_owned());
    let class = if s.mutates {
        "changes things"
    } else {
        "read-only"
    };
    let _ = writeln!(o, "- action: `{}` ({class})", s.action);
    let _ = writeln!(
        o,
        "- started: {when} · duration: {} · attempts: {}",
        duration(s),
        s.attempts
    );
    let _ = writeln!(o, "- result: {}", result(s));
    if let Some(d) = &s.decided_by {
        let _ = writeln!(o, "- decided by: {d}");
    }
    if !s.rendered.is_empty() {
        let _ = writeln!(o, "\n```sh");
        for l in &s.rendered {
            let _ = writeln!(o, "{l}");
        }
        let _ = writeln!(o, "```");
    }
    if !s.output_excerpt.is_empty() {
        let _ = writeln!(o, "\nOutput (last lines):\n\n```");
        for l in &s.output_excerpt {
            let _ = writeln!(o, "{l}");
        }
        let _ = writeln!(o, "```");
    }
    let _ = writeln!(o);
}

pub fn markdown(j: &Journal) -> String {
    let mut o = String::new();
    let kind = match j.mode {
        Mode::Run => "Incident report",
        Mode::Rehearsal => "Rehearsal report",
    };
    let _ = writeln!(o, "# {kind}: {}\n", j.runbook_title);
    let _ = writeln!(o, "| | |\n| --- | --- |");
    let _ = writeln!(o, "| Run | `{}` |", j.run_id);
    let _ = writeln!(o, "| Runbook | `{}` ({}) |", j.runbook, j.runbook_source);
    let _ = writeln!(o, "| Operator | {} |", j.operator);
    let _ = writeln!(
        o,
        "| Started | {} |",
        j.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(
        o,
        "| Last update | {} |",
        j.updated_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(o, "| State | {} |", j.state.as_str());
    let _ = writeln!(
        o,
        "| Runbook fingerprint | `{}` |\n",
        &j.fingerprint[..j.fingerprint.len().min(16)]
    );
    if !j.inputs.is_empty() || !j.secret_inputs.is_empty() {
        let _ = writeln!(o, "## Inputs\n");
        for (k, v) in &j.inputs {
            let _ = writeln!(o, "- `{k}` = `{v}`");
        }
        for k in &j.secret_inputs {
            let _ = writeln!(o, "- `{k}` = (secret, not recorded)");
        }
        let _ = writeln!(o);
    }
    if !j.decisions.is_empty() {
        let _ = writeln!(o, "## Decisions\n");
        for (k, v) in &j.decisions {
            let _ = writeln!(o, "- `{k}`: {v}");
        }
        let _ = writeln!(o);
    }
    if !j.problems.is_empty() {
        let _ = writeln!(o, "## Problems found\n");
        for p in &j.problems {
            let _ = writeln!(o, "- {p}");
        }
        let _ = writeln!(o);
    }
    if !j.caveats.is_empty() {
        let _ = writeln!(o, "## Findings after changes the rehearsal did not make\n");
        for p in &j.caveats {
            let _ = writeln!(o, "- {p}");
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "## Timeline\n");
    for (i, s) in j.steps.iter().enumerate() {
        step_md(&mut o, i + 1, s);
    }
    if j.cleanup.iter().any(|s| s.started_at.is_some()) {
        let _ = writeln!(o, "## Cleanup\n");
        for (i, s) in j.cleanup.iter().enumerate() {
            step_md(&mut o, i + 1, s);
        }
    }
    if !j.outputs.is_empty() || !j.secret_outputs.is_empty() {
        let _ = writeln!(o, "## Captured values\n");
        for (k, v) in &j.outputs {
            let _ = writeln!(o, "- `{k}` = `{v}`");
        }
        for k in &j.secret_outputs {
            let _ = writeln!(o, "- `{k}` = (secret, not recorded)");
        }
    }
    o
}

pub fn json(j: &Journal) -> String {
    let mut s = serde_json::to_string_pretty(j).unwrap_or_default();
    s.push('\n');
    s
}
