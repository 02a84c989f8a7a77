//! `drctl validate`: every problem of every file, in one pass.

use std::path::PathBuf;

use crate::runbook::catalog::{self, Catalog};
use crate::{Error, Outcome, exit};

pub fn run(catalog: &Catalog, paths: &[PathBuf], color: bool) -> Result<Outcome, Error> {
    let entries = if paths.is_empty() {
        catalog.entries.clone()
    } else {
        let mut v = Vec::new();
        for p in paths {
            v.push(catalog::read_file(p)?);
        }
        v
    };
    let mut stderr = String::new();
    let mut stdout = String::new();
    let (mut errors, mut warnings, mut bad_files) = (0usize, 0usize, 0usize);
    for e in &entries {
        let (_, diags) = super::load_checked(e);
        let n_err = diags.iter().filter(|d| d.is_error()).count();
        errors += n_err;
        warnings += diags.len() - n_err;
        if n_err > 0 {
            bad_files += 1;
        }
        for d in &diags {
            stderr.push_str(&d.render(color));
            stderr.push('\n');
        }
        let status = if n_err > 0 { "FAIL" } else { "ok  " };
        stdout.push_str(&format!("{status} {}\n", e.label()));
    }
    stdout.push_str(&format!(
        "{} runbook(s) checked: {} with errors, {errors} error(s), {warnings} warning(s)\n",
        entries.len(),
        bad_files
    ));
    Ok(Outcome {
        stdout,
        stderr,
        code: if errors > 0 { exit::FAILED } else { exit::OK },
    })
}
