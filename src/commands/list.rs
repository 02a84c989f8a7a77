//! `drctl list`.

use crate::cli::ListFormat;
use crate::runbook::catalog::Catalog;
use crate::{Error, Outcome};

pub fn run(catalog: &Catalog, format: ListFormat) -> Result<Outcome, Error> {
    // Titles come from a cheap parse; a broken file is still listed, marked invalid.
    let rows: Vec<(String, String, String)> = catalog
        .entries
        .iter()
        .map(|e| {
            let title = match super::load_checked(e) {
                (Some(rb), _) => rb.title,
                (None, _) => "(invalid: run `drctl validate`)".to_owned(),
            };
            (e.name.clone(), title, e.origin_text())
        })
        .collect();
    let stdout = match format {
        ListFormat::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|(n, t, o)| serde_json::json!({"name": n, "title": t, "source": o}))
                .collect();
            let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
            s.push('\n');
            s
        }
        ListFormat::Text => {
            let w_name = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
            let w_title = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
            rows.iter()
                .map(|(n, t, o)| {
                    let pad = w_title - t.chars().count();
                    format!("{n:<w_name$}  {t}{}  {o}\n", " ".repeat(pad))
                })
                .collect()
        }
    };
    Ok(Outcome {
        stdout,
        ..Outcome::default()
    })
}
