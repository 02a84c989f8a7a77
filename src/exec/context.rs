//! The values templates see during a run (`inputs`, `outputs`, `run`, `result`), and
//! rendering with them. Secret values live here and in the redactor only.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::Value;

use crate::plan::resolver::{Resolver, placeholder};
use crate::runbook::Text;
use crate::runbook::action::Sink;
use crate::runbook::template::{environment, template_name};
use crate::secret::Redactor;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot render {what}: {detail}")]
    Render { what: String, detail: String },
    #[error(
        "output `{name}` is a secret held in memory by an earlier drctl process, so it is gone after the restart; if you hold it (it was shown once), resume interactively and enter it, or pass it as DRCTL_OUTPUT_{}; otherwise start a new run from the step that made it (`drctl run RUNBOOK --new --from {step}`)", name.to_uppercase()
    )]
    LostSecret { name: String, step: String },
}

/// Facts about the run that templates may use as `run.*`.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub id: String,
    pub runbook: String,
    pub operator: String,
    pub dry_run: bool,
    pub started_at: String,
    pub failed_step: Option<String>,
}

/// Typed input and output values of a run.
pub struct Values {
    env: minijinja::Environment<'static>,
    pub inputs: BTreeMap<String, Value>,
    pub outputs: BTreeMap<String, Value>,
    pub secret_names: BTreeSet<String>,
    /// Secret outputs of the journal that this process never saw: name -> step id.
    pub lost_secrets: BTreeMap<String, String>,
    pub run: RunInfo,
    pub redactor: Redactor,
    /// The cluster the kube actions talk to, set by `kube.use` (else the environment's).
    pub kube: KubeTarget,
    /// Environment variables that carried inputs or answers into drctl: removed from
    /// every child process, so a secret reaches only the steps that name it.
    pub scrub_env: Vec<String>,
}

/// Which kubeconfig and context the Kubernetes backend uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeTarget {
    pub kubeconfig: Option<String>,
    pub context: Option<String>,
}

impl Values {
    pub fn new(run: RunInfo, redactor: Redactor) -> Self {
        Values {
            env: environment(),
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            secret_names: BTreeSet::new(),
            lost_secrets: BTreeMap::new(),
            run,
            redactor,
            kube: KubeTarget::default(),
            scrub_env: Vec::new(),
        }
    }

    /// `run.*` as templates see it.
    fn run_context(&self) -> Value {
        minijinja::context! {
            id => self.run.id.clone(),
            runbook => self.run.runbook.clone(),
            operator => self.run.operator.clone(),
            dry_run => self.run.dry_run,
            started_at => self.run.started_at.clone(),
            failed_step => self.run.failed_step.clone(),
        }
    }

    fn context(&self, result: Option<&serde_json::Value>) -> Value {
        let result = result
            .map(Value::from_serialize)
            .unwrap_or(Value::UNDEFINED);
        minijinja::context! {
            inputs => self.inputs.clone(),
            outputs => self.outputs.clone(),
            run => self.run_context(),
            result => result,
        }
    }

    /// A resolver for showing what a step will do: real values, but secret inputs and
    /// outputs (and lost ones) as `<name>` placeholders.
    pub fn shown_resolver(&self) -> Resolver {
        let mask = |m: &BTreeMap<String, Value>| -> BTreeMap<String, Value> {
            m.iter()
                .map(|(k, v)| {
                    let v = if self.secret_names.contains(k) {
                        placeholder(k)
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect()
        };
        let mut outputs = mask(&self.outputs);
        for name in self.lost_secrets.keys() {
            outputs.insert(name.clone(), placeholder(name));
        }
        Resolver::from_context(minijinja::context! {
            inputs => mask(&self.inputs),
            outputs => outputs,
            run => self.run_context(),
            result => placeholder("result"),
        })
    }

    /// Which lost secret (if any) a template needs, for a clear error instead of
    /// "undefined value".
    fn check_lost(&self, t: &str) -> Result<(), ContextError> {
        for (name, step) in &self.lost_secrets {
            if t.contains(&format!("outputs.{name}")) {
                return Err(ContextError::LostSecret {
                    name: name.clone(),
                    step: step.clone(),
                });
            }
        }
        Ok(())
    }

    /// Render a template field.
    pub fn render(&self, t: &Text, sink: Sink) -> Result<String, ContextError> {
        self.render_with(t, sink, None)
    }

    pub fn render_with(
        &self,
        t: &Text,
        sink: Sink,
        result: Option<&serde_json::Value>,
    ) -> Result<String, ContextError> {
        if !t.is_template() {
            return Ok(t.value.clone());
        }
        self.check_lost(&t.value)?;
        self.env
            .template_from_named_str(template_name(sink), &t.value)
            .and_then(|tmpl| tmpl.render(self.context(result)))
            .map_err(|e| ContextError::Render {
                what: format!("`{}` (line {})", self.redactor.redact(&t.value), t.pos.line),
                detail: self.redactor.redact(&error_text(&e)),
            })
    }

    /// Evaluate an expression (`when`, an output's `from`).
    pub fn eval(
        &self,
        t: &Text,
        result: Option<&serde_json::Value>,
    ) -> Result<Value, ContextError> {
        self.check_lost(&t.value)?;
        self.env
            .compile_expression(&t.value)
            .and_then(|e| e.eval(self.context(result)))
            .map_err(|e| ContextError::Render {
                what: format!("`{}` (line {})", t.value, t.pos.line),
                detail: self.redactor.redact(&error_text(&e)),
            })
    }

    /// The JSON form of a value, for the journal.
    pub fn to_json(v: &Value) -> serde_json::Value {
        serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
    }
}

fn error_text(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        let run = RunInfo {
            id: "r".into(),
            runbook: "rb".into(),
            operator: "op".into(),
            dry_run: false,
            started_at: "now".into(),
            failed_step: None,
        };
        Values::new(run, Redactor::new())
    }

    #[test]
    fn renders_and_quotes_commands() {
        let mut v = values();
        v.inputs.insert("x".into(), Value::from("$(touch PWNED)"));
        let t = Text::new("echo {{ inputs.x }}");
        assert_eq!(
            v.render(&t, Sink::Command).expect("renders"),
            "echo '$(touch PWNED)'"
        );
        assert_eq!(
            v.render(&t, Sink::Shown).expect("renders"),
            "echo $(touch PWNED)"
        );
    }

    #[test]
    fn evaluates_expressions_over_results() {
        let v = values();
        let r = serde_json::json!({"value": "offsite", "n": 3});
        let out = v.eval(&Text::new("result.value"), Some(&r)).expect("eval");
        assert_eq!(out.as_str(), Some("offsite"));
        let out = v.eval(&Text::new("result.n > 2"), Some(&r)).expect("eval");
        assert!(out.is_true());
    }

    #[test]
    fn a_lost_secret_is_named() {
        let mut v = values();
        v.lost_secrets.insert("root_token".into(), "init".into());
        let e = v
            .render(&Text::new("{{ outputs.root_token }}"), Sink::Hidden)
            .expect_err("lost");
        assert!(e.to_string().contains("DRCTL_OUTPUT_ROOT_TOKEN"), "{e}");
    }
}
