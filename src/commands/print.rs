//! `drctl print`: the checklist.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cli::PrintFormat;
use crate::plan::Plan;
use crate::render::checklist;
use crate::runbook::catalog::Entry;
use crate::{Error, Outcome};

pub fn run(
    entry: &Entry,
    format: PrintFormat,
    sets: &BTreeMap<String, String>,
    output: Option<&Path>,
    color: bool,
) -> Result<Outcome, Error> {
    let (rb, warnings) = super::load_valid(entry, color)?;
    let mut stderr = warnings;
    for k in sets.keys() {
        if !rb.inputs.contains_key(k) {
            return Err(Error::Usage(format!(
                "`--set {k}=...`: runbook `{}` has no input `{k}`",
                rb.name
            )));
        }
        if rb.inputs.get(k).is_some_and(|s| s.is_secret()) {
            stderr.push_str(&format!(
                "warning: `{k}` is a secret input; the checklist shows a placeholder, not the value\n"
            ));
        }
    }
    let format = match format {
        PrintFormat::Markdown => checklist::Format::Markdown,
        PrintFormat::Text => checklist::Format::Text,
        PrintFormat::Html => checklist::Format::Html,
    };
    let text = checklist::render(&Plan::compile(&rb, &entry.text, sets), format);
    match output {
        Some(path) => {
            std::fs::write(path, &text).map_err(|source| Error::Write {
                path: path.display().to_string(),
                source,
            })?;
            stderr.push_str(&format!("wrote {}\n", path.display()));
            Ok(Outcome {
                stdout: String::new(),
                stderr,
                code: 0,
            })
        }
        None => Ok(Outcome {
            stdout: text,
            stderr,
            code: 0,
        }),
    }
}
