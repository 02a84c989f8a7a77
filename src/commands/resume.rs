//! What a resumed run may take from its journal. The journal is a file on disk: a path in
//! it is a claim, not a decision of the operator's. So the runbook a run continues with is
//! the binary's own copy of a built-in, the operator's `--runbooks` file of that name, the
//! one `--runbook` names, or the recorded path once the operator confirmed it; and a
//! kubeconfig chosen by a `kube.use` step that would run a program (an exec or
//! auth-provider plugin) is shown and confirmed before anything uses it.

use std::path::{Path, PathBuf};

use crate::exec::journal::Journal;
use crate::exec::prompt::Prompter;
use crate::runbook::catalog::{self, Catalog, Entry, Origin};
use crate::{Error, exit};

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned())
}

/// How a journal names the runbook it ran: `built-in` or the canonical path of the file.
pub(super) fn source_of(entry: &Entry) -> String {
    match &entry.origin {
        Origin::Builtin => "built-in".into(),
        Origin::File(p) => canonical(p).display().to_string(),
    }
}

/// The runbook run `j` continues with (see the module comment). `named` is the operator's
/// `--runbook` (or the runbook of `drctl run` that offered the resume); `prompter` is
/// there when someone is at the terminal.
pub(super) fn runbook_for(
    catalog: &Catalog,
    j: &Journal,
    named: Option<Entry>,
    prompter: Option<&mut dyn Prompter>,
    notices: &mut Vec<String>,
) -> Result<Entry, Error> {
    let recorded_file = (j.runbook_source != "built-in").then(|| PathBuf::from(&j.runbook_source));
    if let Some(entry) = named {
        if let (Origin::File(p), Some(rec)) = (&entry.origin, &recorded_file)
            && canonical(p) != canonical(rec)
        {
            notices.push(format!(
                "run {} began with the runbook file {}; it continues with {}, as named",
                j.run_id,
                rec.display(),
                p.display()
            ));
        }
        return Ok(entry);
    }
    let Some(recorded) = recorded_file else {
        return catalog::builtin(&j.runbook).ok_or_else(|| {
            Error::Usage(format!(
                "run {} is a run of the built-in runbook `{}`, which this drctl does not have; use the drctl that started it, or name the runbook with `drctl resume {} --runbook NAME|FILE`",
                j.run_id, j.runbook, j.run_id
            ))
        });
    };
    // The operator's runbook directory naming the very file the run began with.
    if let Ok(e) = catalog.get(&j.runbook)
        && let Origin::File(p) = &e.origin
        && canonical(p) == canonical(&recorded)
    {
        return Ok(e.clone());
    }
    let refuse = |why: &str| {
        Error::Usage(format!(
            "run {} began with the runbook file {} (the path its journal records); {why}: name the runbook with `drctl resume {} --runbook {}` (or keep it in your --runbooks directory)",
            j.run_id,
            recorded.display(),
            j.run_id,
            recorded.display()
        ))
    };
    let Some(p) = prompter else {
        return Err(refuse(
            "drctl does not load a runbook from a path it only read in a journal, and nobody is at a terminal to confirm it",
        ));
    };
    let ask = format!(
        "Run {} (runbook `{}`) began with the runbook file {}, as its journal records. Continue it with that file?",
        j.run_id,
        j.runbook,
        recorded.display()
    );
    let yes = p
        .yes_no(&ask, false)
        .map_err(|e| Error::Usage(e.to_string()))?;
    if !yes {
        return Err(refuse("you did not confirm it"));
    }
    notices.push(format!(
        "the runbook file {} of run {} was confirmed by the operator",
        recorded.display(),
        j.run_id
    ));
    Ok(catalog::read_file(&recorded)?)
}

/// The runbook loaded must be the one the run is of.
pub(super) fn same_runbook(j: &Journal, entry: &Entry, name: &str) -> Result<(), Error> {
    if name == j.runbook {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{} is the runbook `{name}`, but run {} is a run of `{}`; name that runbook with `drctl resume {} --runbook NAME|FILE`",
        entry.label(),
        j.run_id,
        j.runbook,
        j.run_id
    )))
}

/// A credential program a kubeconfig runs: who uses it and the command line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ExecPlugin {
    pub user: String,
    pub command: String,
}

fn yaml_str(v: &serde_json::Value) -> Option<&str> {
    v.as_str()
}

/// The exec and auth-provider plugins of a kubeconfig's users (every user: a context can be
/// switched by the next step). A file that cannot be read or parsed has none here; the
/// Kubernetes steps report it.
pub(super) fn exec_plugins(text: &str) -> Vec<ExecPlugin> {
    let Ok(doc) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for u in doc["users"].as_array().into_iter().flatten() {
        let user = yaml_str(&u["name"]).unwrap_or("(unnamed)").to_owned();
        let exec = &u["user"]["exec"];
        if let Some(cmd) = yaml_str(&exec["command"]) {
            let args: Vec<String> = exec["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                .map(crate::runbook::template::shell_quote)
                .collect();
            let mut line = crate::runbook::template::shell_quote(cmd);
            for a in args {
                line.push(' ');
                line.push_str(&a);
            }
            out.push(ExecPlugin {
                user: user.clone(),
                command: line,
            });
        }
        if let Some(name) = yaml_str(&u["user"]["auth-provider"]["name"]) {
            out.push(ExecPlugin {
                user,
                command: format!("the `{name}` auth-provider plugin"),
            });
        }
    }
    out
}

/// A kubeconfig chosen by a `kube.use` step of run `j` that runs programs: shown and
/// confirmed at a terminal, allowed by `--allow-kubeconfig-exec`, refused otherwise.
pub(super) fn kube_exec_consent(
    j: &Journal,
    allowed: bool,
    prompter: Option<&mut dyn Prompter>,
    notices: &mut Vec<String>,
) -> Result<(), Error> {
    let Some(path) = j.connections.get("kubeconfig") else {
        return Ok(());
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let plugins = exec_plugins(&text);
    if plugins.is_empty() {
        return Ok(());
    }
    let list = plugins
        .iter()
        .map(|p| format!("user `{}` runs {}", p.user, p.command))
        .collect::<Vec<_>>()
        .join("; ");
    let what = format!(
        "the kubeconfig {path}, chosen by a `kube.use` step of run {} (as its journal records), runs programs for credentials: {list}",
        j.run_id
    );
    if allowed {
        notices.push(format!("{what} (allowed by --allow-kubeconfig-exec)"));
        return Ok(());
    }
    let refuse = |why: &str| Error::Run {
        code: exit::NEEDS_OPERATOR,
        message: format!(
            "{what}; {why}: check the kubeconfig, then resume at a terminal to confirm, or pass --allow-kubeconfig-exec"
        ),
    };
    let Some(p) = prompter else {
        return Err(refuse("nobody is at a terminal to confirm"));
    };
    let yes = p
        .yes_no(&format!("{what}. Let it run them?"), false)
        .map_err(|e| Error::Usage(e.to_string()))?;
    if !yes {
        return Err(refuse("you did not confirm it"));
    }
    notices.push(format!("{what} (confirmed by the operator)"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_and_auth_provider_plugins_are_found_with_their_command() {
        let cfg = r#"
apiVersion: v1
kind: Config
users:
  - name: plain
    user: { token: abc }
  - name: eks
    user:
      exec:
        apiVersion: client.authentication.k8s.io/v1beta1
        command: aws
        args: [eks, get-token, --cluster-name, "my cluster"]
  - name: gcp
    user:
      auth-provider: { name: gcp }
"#;
        assert_eq!(
            exec_plugins(cfg),
            vec![
                ExecPlugin {
                    user: "eks".into(),
                    command: "aws eks get-token --cluster-name 'my cluster'".into()
                },
                ExecPlugin {
                    user: "gcp".into(),
                    command: "the `gcp` auth-provider plugin".into()
                },
            ]
        );
        assert!(exec_plugins("users: [{name: a, user: {token: t}}]").is_empty());
        assert!(exec_plugins("not: [valid").is_empty());
    }
}
