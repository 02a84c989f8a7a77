//! Every input a fuzz target (`fuzz/`, `tests/fuzz/run`) ever crashed drctl with, kept in
//! `tests/fuzz/regressions/TARGET/`, and every seed of `tests/fuzz/seeds/TARGET/`, replayed
//! through the same entry points (`drctl::fuzzing`): none may panic again.

use std::path::Path;

use drctl::fuzzing;

use crate::support::cli::root;

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    out.retain(|p| p.is_file());
    out.sort();
    out
}

#[test]
fn every_crash_and_seed_replays_without_a_panic() {
    let mut replayed = 0;
    for target in fuzzing::TARGETS {
        for kind in ["regressions", "seeds"] {
            for f in files(&root().join("tests/fuzz").join(kind).join(target)) {
                let data = std::fs::read(&f).expect("read");
                assert!(fuzzing::run(target, &data), "unknown target {target}");
                replayed += 1;
            }
        }
    }
    assert!(
        replayed > 40,
        "only {replayed} inputs: are the seeds there?"
    );
}

/// A journal cut at any byte (a crash mid-write without the atomic rename, a disk that
/// filled up): never read as a whole one, and the error says the run cannot be resumed
/// from it (issue 16).
#[test]
fn a_journal_cut_at_any_byte_is_refused_clearly() {
    let dir = root().join("tests/fuzz/seeds/journal");
    let journals = files(&dir);
    assert!(journals.len() >= 4, "{journals:?}");
    for f in journals {
        let full = std::fs::read(&f).expect("read");
        let step = if full.len() > 8000 { 7 } else { 1 };
        for cut in (0..=full.len()).step_by(step) {
            fuzzing::journal_truncated(&full, cut);
        }
    }
}
