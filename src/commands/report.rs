//! `drctl report RUN_ID`: the incident timeline.

use std::path::Path;

use crate::cli::ReportFormat;
use crate::exec::journal::{JournalStore, LocalStore};
use crate::render::report;
use crate::{Error, Outcome};

pub fn run(state_dir: &Path, run_id: &str, format: ReportFormat) -> Result<Outcome, Error> {
    let store = LocalStore::new(state_dir.to_owned());
    let j = store.load(run_id)?;
    let stdout = match format {
        ReportFormat::Markdown => report::markdown(&j),
        ReportFormat::Json => report::json(&j),
    };
    Ok(Outcome {
        stdout,
        stderr: String::new(),
        code: 0,
    })
}
