//! `drctl runs`: the recorded runs, newest first.

use std::path::Path;

use crate::exec::journal::{JournalStore, LocalStore, Mode};
use crate::{Error, Outcome};

pub fn run(state_dir: &Path) -> Result<Outcome, Error> {
    let store = LocalStore::new(state_dir.to_owned());
    let mut rows: Vec<[String; 6]> = Vec::new();
    let mut stderr = String::new();
    for j in store.list()? {
        match j {
            Ok(j) => {
                let state = match j.mode {
                    Mode::Rehearsal if !j.problems.is_empty() => format!(
                        "{} (rehearsal, {} problem(s))",
                        j.state.as_str(),
                        j.problems.len()
                    ),
                    Mode::Rehearsal => format!("{} (rehearsal)", j.state.as_str()),
                    Mode::Run => j.state.as_str().to_owned(),
                };
                let last = j
                    .last_step()
                    .map(|s| format!("{} ({})", s.id, s.state.as_str()))
                    .unwrap_or_else(|| "-".to_owned());
                rows.push([
                    j.run_id,
                    state,
                    j.runbook,
                    j.operator,
                    j.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    last,
                ]);
            }
            Err(e) => stderr.push_str(&format!("warning: {e}\n")),
        }
    }
    if rows.is_empty() {
        return Ok(Outcome {
            stdout: format!("no runs recorded in {}\n", state_dir.display()),
            stderr,
            code: 0,
        });
    }
    let header = [
        "RUN",
        "STATE",
        "RUNBOOK",
        "OPERATOR",
        "STARTED",
        "LAST STEP",
    ]
    .map(str::to_owned);
    let mut widths = [0usize; 6];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(rows.iter()) {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 5 {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    Ok(Outcome {
        stdout: out,
        stderr,
        code: 0,
    })
}
