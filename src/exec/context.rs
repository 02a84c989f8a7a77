//! The values templates see during a run (`inputs`, `outputs`, `run`, `result`), and
//! rendering with them. Secret values live here and in the redactor only.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::Value;

use crate::plan::resolver::{Resolver, placeholder};
use crate::runbook::action::Sink;
use crate::runbook::template::{environment, template_name};
use crate::runbook::{Text, shellctx};
use crate::secret::Redactor;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot render {what}: {detail}")]
    Render { what: String, detail: String },
    #[error(
        "output `{name}` is a secret held in memory by an earlier drctl process, so it is gone after the restart; if you hold it (it was shown once), resume interactively and enter it, or pass it as DRCTL_OUTPUT_{}; otherwise start a new run from the step that made it (`drctl run RUNBOOK --new --from {step}`)", name.to_uppercase()
    )]
    LostSecret { name: String, step: String },
    #[error(
        "{what} would carry a secret into {sink}; refused. A secret may only go where drctl carries it hidden: a step's `env` or `stdin`, kube.secret data, vault keys and tokens"
    )]
    Secret { what: String, sink: &'static str },
    #[error("{what}: {message}; refused")]
    UnsafePlace { what: String, message: String },
}

/// A result with the named fields replaced by `<field>` placeholders.
fn mask_result(r: &serde_json::Value, fields: &[&str]) -> serde_json::Value {
    let mut r = r.clone();
    if let serde_json::Value::Object(map) = &mut r {
        for f in fields {
            if let Some(v) = map.get_mut(*f) {
                *v = serde_json::Value::String(format!("<{f}>"));
            }
        }
    }
    r
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

    /// The context templates see. `masked`: every secret (inputs, outputs, lost outputs,
    /// and the fields of `result` named in `secret_fields`) replaced by its `<name>`
    /// placeholder, which is what anything shown is rendered from.
    fn context(&self, result: Value, masked: bool) -> Value {
        if !masked {
            return minijinja::context! {
                inputs => self.inputs.clone(),
                outputs => self.outputs.clone(),
                run => self.run_context(),
                result => result,
            };
        }
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
        let mut inputs = mask(&self.inputs);
        // Secrets not asked yet (asked when first needed) show as placeholders too.
        for name in &self.secret_names {
            if !inputs.contains_key(name) && !outputs.contains_key(name) {
                inputs.insert(name.clone(), placeholder(name));
            }
        }
        minijinja::context! {
            inputs => inputs,
            outputs => outputs,
            run => self.run_context(),
            result => result,
        }
    }

    /// `result` as templates see it, with `secret_fields` masked or not.
    fn result(r: Option<&serde_json::Value>, masked: bool, secret_fields: &[&str]) -> Value {
        match r {
            Some(r) if masked => Value::from_serialize(mask_result(r, secret_fields)),
            Some(r) => Value::from_serialize(r),
            None => Value::UNDEFINED,
        }
    }

    /// Whether anything in this run (or in `secret_fields` of a result) is secret: if
    /// not, the masked and the real context are the same and one render is enough.
    fn holds_secrets(&self, secret_fields: &[&str]) -> bool {
        !self.secret_names.is_empty() || !self.lost_secrets.is_empty() || !secret_fields.is_empty()
    }

    /// A resolver for showing what a step will do: real values, but secret inputs and
    /// outputs (and lost ones) as `<name>` placeholders.
    pub fn shown_resolver(&self) -> Resolver {
        Resolver::from_context(self.context(placeholder("result"), true))
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

    /// Render a field for its sink. Only a hidden field sees real secrets. A shown or
    /// command field is rendered from the masked context and from the real one; if
    /// they differ, the field depends on a secret, however it was spelt (a subscript,
    /// an alias, a whole map, a filter), and it is refused rather than run or shown.
    /// A command field is first checked for values placed where quoting cannot hold.
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
        let what = || format!("`{}` (line {})", self.redactor.redact(&t.value), t.pos.line);
        if sink == Sink::Command
            && let Some((message, _)) = shellctx::placements(&t.value)
                .into_iter()
                .find_map(|(_, p)| p.explain())
        {
            return Err(ContextError::UnsafePlace {
                what: what(),
                message: message.to_owned(),
            });
        }
        let render = |ctx: Value| {
            self.env
                .template_from_named_str(template_name(sink), &t.value)
                .and_then(|tmpl| tmpl.render(ctx))
        };
        let fail = |e: minijinja::Error| ContextError::Render {
            what: what(),
            detail: self.redactor.redact(&error_text(&e)),
        };
        if sink == Sink::Hidden || !self.holds_secrets(&[]) {
            return render(self.context(Self::result(result, false, &[]), false)).map_err(fail);
        }
        let shown = render(self.context(Self::result(result, true, &[]), true));
        let real = render(self.context(Self::result(result, false, &[]), false));
        match (shown, real) {
            (Ok(shown), Ok(real)) if shown == real => Ok(real),
            // Failing either way: the error of the masked render says nothing secret.
            (Err(e), Err(_)) => Err(fail(e)),
            _ => Err(ContextError::Secret {
                what: what(),
                sink: match sink {
                    Sink::Command => "a command line, which is shown, logged and visible in `ps`",
                    _ => "text that is shown, printed and logged",
                },
            }),
        }
    }

    /// Evaluate an expression (`when`) with the real values.
    pub fn eval(
        &self,
        t: &Text,
        result: Option<&serde_json::Value>,
    ) -> Result<Value, ContextError> {
        self.eval_in(t, self.context(Self::result(result, false, &[]), false))
    }

    /// Evaluate an output's `from` over a step's result; also says whether the value
    /// depends on a secret (it changes when every secret, and the result's
    /// `secret_fields`, are masked): such a value is secret whatever the runbook says.
    pub fn eval_output(
        &self,
        t: &Text,
        result: &serde_json::Value,
        secret_fields: &[&str],
    ) -> Result<(Value, bool), ContextError> {
        let real = self.eval_in(
            t,
            self.context(Self::result(Some(result), false, &[]), false),
        )?;
        if !self.holds_secrets(secret_fields) {
            return Ok((real, false));
        }
        let derived = match self.eval_in(
            t,
            self.context(Self::result(Some(result), true, secret_fields), true),
        ) {
            Ok(masked) => masked != real,
            Err(_) => true,
        };
        Ok((real, derived))
    }

    fn eval_in(&self, t: &Text, ctx: Value) -> Result<Value, ContextError> {
        self.check_lost(&t.value)?;
        self.env
            .compile_expression(&t.value)
            .and_then(|e| e.eval(ctx))
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

    /// Attack: a secret reached by any spelling the validator might miss never renders
    /// into a shown or command field; hidden fields get the real value.
    #[test]
    fn no_spelling_of_a_secret_renders_into_a_shown_or_command_field() {
        let mut v = values();
        v.inputs
            .insert("token".into(), Value::from("PLANTED-s3cr3t"));
        v.inputs.insert("host".into(), Value::from("db1"));
        v.secret_names.insert("token".into());
        let spellings = [
            "echo {{ inputs['token'] }}",
            "{% set i = inputs %}echo {{ i.token }}",
            "echo {{ inputs }}",
            "echo {{ inputs | items | list }}",
            "{% for k, x in inputs | items %}{{ x }}{% endfor %}",
            "echo {{ inputs.token | upper }}",
            "echo {{ inputs.token | reverse }}",
            "echo {{ inputs.token[2:] }}",
            "echo {{ inputs.token | length }}",
        ];
        for t in spellings {
            for sink in [Sink::Command, Sink::Shown] {
                let e = v.render(&Text::new(t), sink).expect_err(t);
                let msg = e.to_string();
                assert!(msg.contains("would carry a secret"), "{t}: {msg}");
                assert!(!msg.contains("PLANTED") && !msg.contains("S3CR3T"), "{msg}");
            }
        }
        assert_eq!(
            v.render(&Text::new("{{ inputs['token'] }}"), Sink::Hidden)
                .expect("hidden"),
            "PLANTED-s3cr3t"
        );
        // What names no secret renders as before.
        assert_eq!(
            v.render(&Text::new("ssh {{ inputs['host'] }}"), Sink::Command)
                .expect("no secret"),
            "ssh db1"
        );
        // The shown resolver never has the value at all.
        let r = v.shown_resolver();
        let shown = r.text(&Text::new("{{ inputs | items | list }}"), Sink::Shown);
        assert!(!shown.contains("PLANTED"), "{shown}");
    }

    /// Attack: outputs computed from a secret (by subscript, whole result, filters) are
    /// secret whatever the runbook declared.
    #[test]
    fn values_derived_from_secrets_are_secret() {
        let mut v = values();
        v.inputs
            .insert("token".into(), Value::from("PLANTED-s3cr3t"));
        v.inputs.insert("host".into(), Value::from("db1"));
        v.secret_names.insert("token".into());
        let none = serde_json::json!({});
        for from in [
            "inputs['token']",
            "inputs.token | upper",
            "inputs",
            "inputs.token[0:4]",
        ] {
            let (_, derived) = v.eval_output(&Text::new(from), &none, &[]).expect(from);
            assert!(derived, "{from}");
        }
        let (host, derived) = v
            .eval_output(&Text::new("inputs['host']"), &none, &[])
            .expect("host");
        assert_eq!((host.as_str(), derived), (Some("db1"), false));
        // A vault.init result captured whole, or its keys by subscript.
        let init =
            serde_json::json!({"root_token": "hvs.PLANTED", "keys": ["k1", "k2"], "shares": 2});
        let fields = ["root_token", "keys"];
        for from in [
            "result",
            "result['keys']",
            "result.root_token",
            "result | items | list",
        ] {
            let (_, derived) = v.eval_output(&Text::new(from), &init, &fields).expect(from);
            assert!(derived, "{from}");
        }
        let (n, derived) = v
            .eval_output(&Text::new("result.shares"), &init, &fields)
            .expect("shares");
        assert_eq!((n.as_i64(), derived), (Some(2), false));
    }

    /// Attack: values placed where shell quoting cannot hold, or carrying a line break,
    /// are refused before a command is rendered.
    #[test]
    fn command_fields_refuse_places_quoting_cannot_protect() {
        let mut v = values();
        v.inputs.insert("x".into(), Value::from("$(touch PWNED)"));
        v.inputs.insert("nl".into(), Value::from("a\ntouch PWNED"));
        for t in [
            "true # {{ inputs.x }}",
            "cat <<EOF\n{{ inputs.x }}\nEOF",
            "cat <<'EOF'\n{{ inputs.x }}\nEOF",
            "echo \\{{ inputs.x }}",
            "echo '{{ inputs.x }}'",
            "echo \"{{ inputs.x }}\"",
            "echo `{{ inputs.x }}`",
        ] {
            let e = v.render(&Text::new(t), Sink::Command).expect_err(t);
            assert!(e.to_string().contains("refused"), "{t}: {e}");
        }
        let e = v
            .render(&Text::new("echo {{ inputs.nl }}"), Sink::Command)
            .expect_err("line break");
        assert!(e.to_string().contains("a line break"), "{e}");
        assert_eq!(
            v.render(
                &Text::new("{% autoescape false %}echo {{ inputs.x }}{% endautoescape %}"),
                Sink::Command
            )
            .expect("still quoted"),
            "echo '$(touch PWNED)'"
        );
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
