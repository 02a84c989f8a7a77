//! Secrets never written down: not in what drctl printed, not in its state directory.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::drive::Outcome;

/// Every file below `dir` (none when it cannot be read).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// None of `secrets` in what drctl printed (the events and stderr of `outcomes`), nor in
/// any file of the state directory `state`.
pub fn assert_not_written(state: &Path, outcomes: &[&Outcome], secrets: &[&str]) {
    for o in outcomes {
        let printed = format!(
            "{}\n{}",
            o.events
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            o.stderr
        );
        for s in secrets {
            assert!(
                !printed.contains(s),
                "a secret value reached drctl's output"
            );
        }
    }
    for f in files_under(state) {
        let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        let text = String::from_utf8_lossy(&bytes);
        for s in secrets {
            assert!(
                !text.contains(s),
                "a secret value was written to {}",
                f.display()
            );
        }
    }
}
