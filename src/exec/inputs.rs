//! Collecting a run's inputs: `--set`, `--set-file`, the environment
//! (`DRCTL_INPUT_<NAME>` or the variable the runbook names), the default, or a prompt.
//! Every value is checked against its type, pattern and choices.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use minijinja::Value;

use super::prompt::{PromptError, Prompter, ask_until};
use crate::runbook::Runbook;
use crate::runbook::action::InputKind;
use crate::runbook::model::InputSpec;
use crate::secret::{MIN_SECRET_LEN, Redactor};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("missing input(s): {}", .0.join("; "))]
    Missing(Vec<String>),
    #[error("input `{name}`: {problem}")]
    Invalid { name: String, problem: String },
    #[error("cannot read the file for input `{name}` ({path}): {source}")]
    File {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the operator aborted")]
    Aborted,
    #[error("cannot ask for input `{name}`: {detail}")]
    Prompt { name: String, detail: String },
}

/// Reads an environment variable (tests pass a closure over a map).
pub type EnvLookup = Box<dyn Fn(&str) -> Option<String>>;

/// Where values come from, besides prompts.
#[derive(Default)]
pub struct Sources {
    pub sets: BTreeMap<String, String>,
    pub set_files: BTreeMap<String, PathBuf>,
    /// Values recorded by the run being resumed (never secrets).
    pub recorded: BTreeMap<String, String>,
    /// Read the environment (tests pass a closure over a map).
    pub env: Option<EnvLookup>,
    /// Secret inputs not asked for now when no source gives them (`Collected::deferred`).
    pub defer: BTreeSet<String>,
}

/// The collected values.
pub struct Collected {
    pub values: BTreeMap<String, Value>,
    /// Plain text of the non-secret values, for the journal.
    pub recorded: BTreeMap<String, String>,
    pub secret_names: BTreeSet<String>,
    /// Warnings for the operator (a secret on the command line).
    pub notices: Vec<String>,
    /// Secret inputs in `Sources::defer` that no source gave: asked when first needed.
    pub deferred: BTreeSet<String>,
}

pub fn env_name(input: &str) -> String {
    format!("DRCTL_INPUT_{}", input.to_uppercase())
}

fn how_to_give(name: &str, spec: &InputSpec) -> String {
    let mut ways = vec![format!("--set {name}=..."), env_name(name)];
    if let Some(e) = &spec.env {
        ways.push(e.clone());
    }
    if spec.kind == InputKind::Secret {
        ways.retain(|w| !w.starts_with("--set"));
        ways.push("a masked prompt (run without --yes)".to_owned());
    }
    format!("`{name}` ({})", ways.join(" or "))
}

/// Collect every input; `prompter` is None when nobody can be asked (--yes).
pub fn collect(
    rb: &Runbook,
    sources: &Sources,
    mut prompter: Option<&mut dyn Prompter>,
    redactor: &Redactor,
) -> Result<Collected, InputError> {
    let mut out = Collected {
        values: BTreeMap::new(),
        recorded: BTreeMap::new(),
        secret_names: BTreeSet::new(),
        notices: Vec::new(),
        deferred: BTreeSet::new(),
    };
    let mut missing = Vec::new();
    let env = |k: &str| match &sources.env {
        Some(f) => f(k),
        None => std::env::var(k).ok(),
    };
    for (name, spec) in &rb.inputs {
        let secret = spec.is_secret();
        let mut raw: Option<String> = sources.recorded.get(name).cloned();
        if raw.is_none()
            && let Some(v) = sources.sets.get(name)
        {
            if secret {
                out.notices.push(format!(
                    "secret input `{name}` was given with --set: it shows in `ps` and your shell history; prefer {} or the prompt",
                    env_name(name)
                ));
            }
            raw = Some(v.clone());
        }
        if raw.is_none()
            && let Some(path) = sources.set_files.get(name)
        {
            let text = std::fs::read_to_string(path).map_err(|source| InputError::File {
                name: name.clone(),
                path: path.clone(),
                source,
            })?;
            raw = Some(text.strip_suffix('\n').unwrap_or(&text).to_owned());
        }
        if raw.is_none() {
            raw = env(&env_name(name)).or_else(|| spec.env.as_deref().and_then(env));
        }
        if raw.is_none() {
            raw = spec.default.as_ref().map(|d| d.value.clone());
        }
        if raw.is_none() && secret && sources.defer.contains(name) {
            out.deferred.insert(name.clone());
            continue;
        }
        if raw.is_none()
            && let Some(p) = prompter.as_deref_mut()
        {
            let prompt = match &spec.description {
                Some(d) => format!("{name} ({d})"),
                None => name.clone(),
            };
            let answer = if spec.kind == InputKind::Choice {
                let opts: Vec<(String, String)> = spec
                    .choices
                    .iter()
                    .map(|c| (c.value.clone(), c.label.clone().unwrap_or_default()))
                    .collect();
                p.choose(&prompt, &opts, None)
            } else {
                // Asked again, with the reason, until the value is valid.
                let valid = |v: &str| -> Result<(), String> {
                    if v.is_empty() {
                        return Err(format!("`{name}` needs a value"));
                    }
                    match check(name, spec, v) {
                        Err(InputError::Invalid { problem, .. }) => Err(problem),
                        _ => Ok(()),
                    }
                };
                ask_until(p, &prompt, secret, None, &valid)
            };
            raw = Some(match answer {
                Ok(v) => v,
                Err(PromptError::Aborted) => return Err(InputError::Aborted),
                Err(e) => {
                    return Err(InputError::Prompt {
                        name: name.clone(),
                        detail: e.to_string(),
                    });
                }
            });
        }
        let Some(raw) = raw else {
            missing.push(how_to_give(name, spec));
            continue;
        };
        let value = check(name, spec, &raw)?;
        if secret {
            redactor.add(&raw);
            out.secret_names.insert(name.clone());
        } else {
            out.recorded.insert(name.clone(), raw);
        }
        out.values.insert(name.clone(), value);
    }
    if !missing.is_empty() {
        return Err(InputError::Missing(missing));
    }
    Ok(out)
}

/// Check a value against its input's type, pattern and choices.
pub fn check(name: &str, spec: &InputSpec, raw: &str) -> Result<Value, InputError> {
    let invalid = |problem: String| InputError::Invalid {
        name: name.to_owned(),
        problem,
    };
    if let Some(p) = &spec.pattern
        && !(raw.is_empty() && spec.default.as_ref().is_some_and(|d| d.value.is_empty()))
    {
        let re = regex::Regex::new(&format!("^(?:{})$", p.value))
            .map_err(|e| invalid(format!("its pattern does not compile: {e}")))?;
        if !re.is_match(raw) {
            let shown = if spec.is_secret() { "the value" } else { raw };
            return Err(invalid(format!("`{shown}` does not match `{}`", p.value)));
        }
    }
    Ok(match spec.kind {
        InputKind::String => Value::from(raw),
        InputKind::Secret => {
            if raw.len() < MIN_SECRET_LEN {
                return Err(invalid(format!(
                    "a secret must be at least {MIN_SECRET_LEN} characters (shorter ones cannot be redacted from output)"
                )));
            }
            Value::from(raw)
        }
        InputKind::Bool => match raw {
            "true" | "yes" => Value::from(true),
            "false" | "no" => Value::from(false),
            other => return Err(invalid(format!("`{other}` is not true or false"))),
        },
        InputKind::Int => Value::from(
            raw.trim()
                .parse::<i64>()
                .map_err(|_| invalid(format!("`{raw}` is not an integer")))?,
        ),
        InputKind::Choice => {
            if !spec.choices.iter().any(|c| c.value == raw) {
                let valid: Vec<&str> = spec.choices.iter().map(|c| c.value.as_str()).collect();
                return Err(invalid(format!(
                    "`{raw}` is not one of {}",
                    valid.join(", ")
                )));
            }
            Value::from(raw)
        }
        InputKind::File => {
            if !std::path::Path::new(raw).is_file() {
                return Err(invalid(format!("{raw} is not a readable file")));
            }
            Value::from(raw)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rb() -> Runbook {
        let src = "apiVersion: drctl/v1\nkind: Runbook\nname: t\ntitle: T\nsummary: S\ninputs:\n  host: { description: h }\n  port: { type: int, default: 22 }\n  key: { type: secret }\n  mode: { type: choice, choices: [{value: a}, {value: b}], default: a }\nsteps:\n  - id: a\n    title: A\n    sleep: { duration: 1s }\n";
        crate::runbook::load::parse("t.yaml", &Arc::from(src)).expect("parses")
    }

    fn sources(sets: &[(&str, &str)], env: &[(&str, &str)]) -> Sources {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Sources {
            sets: sets
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            env: Some(Box::new(move |k| env.get(k).cloned())),
            ..Sources::default()
        }
    }

    #[test]
    fn missing_inputs_are_all_named_with_how_to_give_them() {
        let e = collect(&rb(), &sources(&[], &[]), None, &Redactor::new()).err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            "missing input(s): `host` (--set host=... or DRCTL_INPUT_HOST); `key` (DRCTL_INPUT_KEY or a masked prompt (run without --yes))"
        );
    }

    #[test]
    fn values_come_from_set_env_and_defaults_and_are_typed() {
        let red = Redactor::new();
        let c = collect(
            &rb(),
            &sources(&[("host", "cp1")], &[("DRCTL_INPUT_KEY", "s3cret-key")]),
            None,
            &red,
        )
        .expect("collects");
        assert_eq!(c.values["host"].as_str(), Some("cp1"));
        assert_eq!(c.values["port"].as_i64(), Some(22));
        assert!(c.secret_names.contains("key"));
        assert!(
            !c.recorded.contains_key("key"),
            "secrets are never recorded"
        );
        assert_eq!(red.redact("x s3cret-key"), "x ****");
        assert!(c.notices.is_empty());
    }

    #[test]
    fn bad_values_and_secrets_on_the_command_line() {
        let red = Redactor::new();
        let e = collect(
            &rb(),
            &sources(&[("host", "h"), ("port", "x"), ("key", "abcd1234")], &[]),
            None,
            &red,
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("input `port`: `x` is not an integer"));
        let c = collect(
            &rb(),
            &sources(&[("host", "h"), ("key", "abcd1234")], &[]),
            None,
            &red,
        )
        .expect("collects");
        assert_eq!(c.notices.len(), 1);
        assert!(c.notices[0].contains("shows in `ps`"));
        let e = collect(
            &rb(),
            &sources(&[("host", "h"), ("key", "abc")], &[]),
            None,
            &red,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("at least 4 characters"), "{e}");
    }
}
