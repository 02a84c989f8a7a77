//! Which secrets a template's value depends on, found by rendering it twice: once with
//! every secret set to one stand-in, once with one secret changed. Reference tracking
//! (`undeclared_variables`) misses some spellings (a slice, `inputs.token[1:]`, names
//! nothing); a value that changes with the secret depends on it however it is spelt.
//! The engine applies the same rule to real values at run time.

use std::collections::BTreeMap;

use minijinja::{UndefinedBehavior, Value};

use super::action::Sink;
use super::template::{environment, template_name};

/// What may be secret where a template is checked.
pub struct Probe {
    env: minijinja::Environment<'static>,
    /// Every input with whether it is secret and its default (a stand-in when absent).
    pub inputs: Vec<(String, bool, Option<String>)>,
    /// Every output with whether it is secret.
    pub outputs: Vec<(String, bool)>,
}

/// A template (of a sink) or an expression.
#[derive(Clone, Copy)]
pub enum Form {
    Template(Sink),
    Expression,
}

impl Probe {
    pub fn new(inputs: Vec<(String, bool, Option<String>)>, outputs: Vec<(String, bool)>) -> Self {
        let mut env = environment();
        // Absent values (a result's other fields, an output of a later step) are not
        // this check's business: other checks report them.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        Probe {
            env,
            inputs,
            outputs,
        }
    }

    /// The secrets (`input `x``, `output `y``, `result `z``) whose value changes the
    /// value of `src`. `result_secrets`: the secret fields of the step's result, when
    /// `result` is in scope.
    pub fn secrets_used(
        &self,
        src: &str,
        form: Form,
        result_secrets: Option<&[&str]>,
    ) -> Vec<String> {
        let mut candidates: Vec<(&str, &str)> = Vec::new();
        candidates.extend(
            self.inputs
                .iter()
                .filter(|i| i.1)
                .map(|i| ("input", i.0.as_str())),
        );
        candidates.extend(
            self.outputs
                .iter()
                .filter(|o| o.1)
                .map(|o| ("output", o.0.as_str())),
        );
        candidates.extend(
            result_secrets
                .unwrap_or_default()
                .iter()
                .map(|f| ("result", *f)),
        );
        if candidates.is_empty() {
            return Vec::new();
        }
        let Some(base) = self.value(src, form, None, result_secrets) else {
            return Vec::new();
        };
        candidates
            .into_iter()
            .filter(|&(kind, name)| {
                self.value(src, form, Some((kind, name)), result_secrets)
                    .is_some_and(|v| v != base)
            })
            .map(|(kind, name)| format!("{kind} `{name}`"))
            .collect()
    }

    /// The rendered text (or evaluated value, as text) with every secret at its first
    /// stand-in, or `changed` at a second one. None when it does not render.
    fn value(
        &self,
        src: &str,
        form: Form,
        changed: Option<(&str, &str)>,
        result_secrets: Option<&[&str]>,
    ) -> Option<String> {
        let secret = |kind: &str, name: &str| {
            let n = if changed == Some((kind, name)) { 2 } else { 1 };
            Value::from(format!("drctl-stand-in-{n}-{kind}-{name}"))
        };
        let inputs: BTreeMap<&str, Value> = self
            .inputs
            .iter()
            .map(|(name, is_secret, default)| {
                let v = if *is_secret {
                    secret("input", name)
                } else {
                    Value::from(default.clone().unwrap_or_else(|| format!("x-{name}")))
                };
                (name.as_str(), v)
            })
            .collect();
        let outputs: BTreeMap<&str, Value> = self
            .outputs
            .iter()
            .map(|(name, is_secret)| {
                let v = if *is_secret {
                    secret("output", name)
                } else {
                    Value::from(format!("x-{name}"))
                };
                (name.as_str(), v)
            })
            .collect();
        let result = match result_secrets {
            Some(fields) => Value::from(
                fields
                    .iter()
                    .map(|f| (*f, secret("result", f)))
                    .collect::<BTreeMap<&str, Value>>(),
            ),
            None => Value::UNDEFINED,
        };
        let ctx = minijinja::context! { inputs, outputs, result, run => minijinja::context! {} };
        match form {
            Form::Template(sink) => self
                .env
                .template_from_named_str(template_name(sink), src)
                .and_then(|t| t.render(ctx))
                .ok(),
            Form::Expression => self
                .env
                .compile_expression(src)
                .and_then(|e| e.eval(ctx))
                .ok()
                .map(|v| format!("{v:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Probe {
        Probe::new(
            vec![
                ("token".into(), true, None),
                ("host".into(), false, Some("db1".into())),
            ],
            vec![("root".into(), true), ("count".into(), false)],
        )
    }

    #[test]
    fn finds_secrets_however_spelt() {
        let p = probe();
        let t = |s: &str| p.secrets_used(s, Form::Template(Sink::Command), None);
        assert_eq!(t("echo {{ inputs.token[1:] }}"), ["input `token`"]);
        assert_eq!(t("echo {{ (inputs.token)[1:] }}"), ["input `token`"]);
        assert_eq!(
            t("{% for k, v in inputs | items %}{{ v }}{% endfor %}{{ outputs | items | list }}"),
            ["input `token`", "output `root`"]
        );
        assert!(t("echo {{ inputs.host }} {{ outputs.count }}").is_empty());
        let e = |s: &str, r: &[&str]| p.secrets_used(s, Form::Expression, Some(r));
        assert_eq!(e("result", &["keys"]), ["result `keys`"]);
        assert_eq!(e("result['keys'][1:]", &["keys"]), ["result `keys`"]);
        assert!(e("result.shares", &["keys"]).is_empty());
    }
}
