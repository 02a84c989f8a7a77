//! One module per verb. Commands return an `Outcome`; only `lib::run` writes to the
//! terminal.

mod list;
mod print;
mod report;
mod resume;
pub mod run;
mod runs;
mod schema;
mod show;
mod validate;

use std::collections::BTreeMap;

use crate::cli::{Cli, Command};
use crate::runbook::catalog::{Catalog, Entry};
use crate::runbook::{Diagnostic, Runbook, load, validate as checks};
use crate::{Error, Outcome};

pub use schema::schema_json;

pub fn dispatch(cli: &Cli, color: bool) -> Result<Outcome, Error> {
    match &cli.command {
        Command::List { output } => list::run(&catalog(cli)?, *output),
        Command::Show { name } => show::run(&catalog(cli)?.resolve(name)?, color),
        Command::Validate { paths } => validate::run(&catalog(cli)?, paths, color),
        Command::Print {
            name,
            format,
            set,
            output,
        } => print::run(
            &catalog(cli)?.resolve(name)?,
            *format,
            &parse_sets(set)?,
            output.as_deref(),
            color,
        ),
        Command::Run {
            name,
            dry_run,
            from,
            only,
            new,
            args,
        } => {
            let catalog = catalog(cli)?;
            let entry = catalog.resolve(name)?;
            run::run(
                &catalog,
                run::Start::New {
                    entry,
                    dry_run: *dry_run,
                    from: from.clone(),
                    only: only.clone(),
                    new: *new,
                },
                args,
                color,
            )
        }
        Command::Resume {
            run_id,
            resolve,
            allow_changed,
            runbook,
            allow_kubeconfig_exec,
            args,
        } => {
            let catalog = catalog(cli)?;
            let runbook = match runbook {
                Some(r) => Some(catalog.resolve(r)?),
                None => None,
            };
            run::run(
                &catalog,
                run::Start::Resume {
                    run_id: run_id.clone(),
                    resolve: resolve.clone(),
                    allow_changed: *allow_changed,
                    runbook,
                    allow_kube_exec: *allow_kubeconfig_exec,
                },
                args,
                color,
            )
        }
        Command::Runs { state_dir } => runs::run(&run::state_dir(state_dir.as_deref())?),
        Command::Report {
            run_id,
            format,
            state_dir,
        } => report::run(&run::state_dir(state_dir.as_deref())?, run_id, *format),
        Command::Schema => Ok(Outcome {
            stdout: schema_json(),
            ..Outcome::default()
        }),
        Command::Man { dir } => man_pages(dir),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "drctl", &mut buf);
            Ok(Outcome {
                stdout: String::from_utf8_lossy(&buf).into_owned(),
                ..Outcome::default()
            })
        }
    }
}

/// `drctl man DIR`: one page for drctl and one per command (`drctl-run.1`), the
/// convention of clap_mangen and git.
fn man_pages(dir: &std::path::Path) -> Result<Outcome, Error> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let write = |source: std::io::Error| Error::Write {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(write)?;
    clap_mangen::generate_to(cmd, dir).map_err(write)?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)
        .map_err(write)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("drctl") && n.ends_with(".1"))
        .collect();
    pages.sort();
    Ok(Outcome {
        stdout: format!(
            "wrote {} manual pages to {}: {}\n",
            pages.len(),
            dir.display(),
            pages.join(" ")
        ),
        ..Outcome::default()
    })
}

fn catalog(cli: &Cli) -> Result<Catalog, Error> {
    Ok(Catalog::load(cli.runbooks.as_deref())?)
}

/// `KEY=VALUE` pairs of `--set`.
pub fn parse_sets(sets: &[String]) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for s in sets {
        let Some((k, v)) = s.split_once('=') else {
            return Err(Error::Usage(format!(
                "`--set {s}` is not KEY=VALUE; write e.g. `--set control_plane=cp1`"
            )));
        };
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(out)
}

/// Parse and check one runbook: the runbook when it has no errors, and every diagnostic.
pub fn load_checked(entry: &Entry) -> (Option<Runbook>, Vec<Diagnostic>) {
    let label = entry.label();
    match load::parse(&label, &entry.text) {
        Ok(rb) => {
            // Runbooks are found by file name, so the two must agree.
            let diags = checks::check(&label, &entry.text, &rb, Some(entry.name.as_str()));
            let ok = !diags.iter().any(Diagnostic::is_error);
            (ok.then_some(rb), diags)
        }
        Err(d) => (None, vec![*d]),
    }
}

/// Load a runbook for a command that needs a valid one; its errors become the failure.
pub fn load_valid(entry: &Entry, color: bool) -> Result<(Runbook, String), Error> {
    let (rb, diags) = load_checked(entry);
    let rendered: String = diags.iter().map(|d| d.render(color)).collect();
    match rb {
        Some(rb) => Ok((rb, rendered)),
        None => Err(Error::Invalid(format!(
            "{} has errors; fix them first (`drctl validate {}`)\n{rendered}",
            entry.label(),
            entry.label()
        ))),
    }
}
