//! Rendering a runbook's templates for print: inputs given with `--set` or their
//! defaults are filled in; secrets, missing inputs and outputs stay visible placeholders.

use std::collections::BTreeMap;

use minijinja::Value;

use crate::runbook::action::Sink;
use crate::runbook::template::{environment, template_name};
use crate::runbook::{Runbook, Text};

/// Renders texts of one runbook for a printed checklist.
pub struct Resolver {
    env: minijinja::Environment<'static>,
    ctx: Value,
}

impl Resolver {
    pub fn new(rb: &Runbook, sets: &BTreeMap<String, String>) -> Self {
        let mut inputs = BTreeMap::new();
        for (name, spec) in &rb.inputs {
            let v = if spec.is_secret() {
                placeholder(name)
            } else if let Some(v) = sets.get(name) {
                Value::from(v.clone())
            } else if let Some(d) = &spec.default {
                Value::from(d.value.clone())
            } else {
                placeholder(name)
            };
            inputs.insert(name.clone(), v);
        }
        let mut outputs = BTreeMap::new();
        for s in rb.main_steps().chain(rb.cleanup.iter()) {
            for o in &s.outputs {
                outputs.insert(o.name.value.clone(), placeholder(&o.name.value));
            }
        }
        let run = minijinja::context! {
            id => placeholder("run-id"),
            runbook => rb.name.value.clone(),
            operator => placeholder("operator"),
            dry_run => false,
            started_at => placeholder("start time"),
            failed_step => placeholder("failed step"),
        };
        let result = placeholder("result");
        let ctx = minijinja::context! { inputs, outputs, run, result };
        Resolver {
            env: environment(),
            ctx,
        }
    }

    /// A resolver over a context the caller built (a running run's values, with its
    /// secrets already placeholders: `exec::context::Values::shown_resolver`).
    pub fn from_context(ctx: Value) -> Self {
        Resolver {
            env: environment(),
            ctx,
        }
    }

    /// The text with templates filled in; on a render error the raw template is kept
    /// (print must work for a paper copy even when a value is unknown).
    pub fn text(&self, t: &Text, sink: Sink) -> String {
        if !t.is_template() {
            return t.value.clone();
        }
        self.env
            .template_from_named_str(template_name(sink), &t.value)
            .and_then(|tmpl| tmpl.render(&self.ctx))
            .unwrap_or_else(|_| t.value.clone())
    }
}

/// `<name>`: marked safe so a command template does not quote it.
pub fn placeholder(name: &str) -> Value {
    Value::from_safe_string(format!("<{name}>"))
}
