//! The actions the operator performs: manual work, answers to questions and choices,
//! the cluster to talk to (`kube.use`), and commands that need the terminal.

use super::super::backend::{ActionError, ActionResult, ErrorKind};
use super::super::events::RunEvent;
use super::super::prompt::{ManualDecision, PromptError, StepView, ask_until, secret_answer};
use super::Engine;
use crate::runbook::action::{Action, Choose, Input, KubeUse, Sink};
use crate::runbook::model::Step;
use crate::secret::MIN_SECRET_LEN;

impl Engine<'_> {
    /// Performs the step when the operator is the one to act; `None` when a backend or
    /// the local runner does.
    pub(super) fn interactive(
        &mut self,
        step: &Step,
        view: &StepView<'_>,
    ) -> Option<Result<ActionResult, ActionError>> {
        let id = step.id.value.clone();
        Some(match &step.action {
            Action::Manual(_) => self.manual(&id, view),
            Action::Input(a) => self.input(&id, a),
            Action::Choose(c) => self.choose(&id, c),
            Action::KubeUse(a) => self.kube_use(a),
            Action::Shell(a) if a.tty && self.opts.yes && !self.opts.confirmed.contains(&id) => {
                Err(ActionError::NeedsOperator(format!(
                    "step `{id}` runs a command that talks to the operator on the terminal; run without --yes (or resume interactively)"
                )))
            }
            _ => return None,
        })
    }

    fn manual(&mut self, id: &str, view: &StepView<'_>) -> Result<ActionResult, ActionError> {
        if self.opts.confirmed.contains(id) {
            return Ok(ActionResult {
                value: serde_json::json!({ "confirmed": true }),
                lines: vec![],
            });
        }
        self.flush()
            .map_err(|e| ActionError::failed(e.to_string()))?;
        match self.prompt(|p| p.manual_done(view)) {
            Ok(ManualDecision::Done) => Ok(ActionResult {
                value: serde_json::json!({ "confirmed": true }),
                lines: vec![],
            }),
            Ok(ManualDecision::Skip) => Err(ActionError::SkippedByOperator),
            Ok(ManualDecision::Abort) | Err(PromptError::Aborted) => {
                Err(ActionError::AbortedByOperator)
            }
            Err(PromptError::NoOperator(r)) => Err(ActionError::NeedsOperator(r)),
            Err(PromptError::Io(e)) => {
                Err(ActionError::failed(format!("cannot ask the operator: {e}")))
            }
        }
    }

    fn input(&mut self, id: &str, a: &Input) -> Result<ActionResult, ActionError> {
        let secret = a.kind == crate::runbook::action::InputKind::Secret;
        let prompt = self.render_shown(&a.prompt);
        let default = match &a.default {
            Some(d) => Some(
                self.values
                    .render(d, Sink::Shown)
                    .map_err(|e| ActionError::failed(e.to_string()))?,
            ),
            None => None,
        };
        let pattern = a.pattern.as_ref().and_then(|pat| {
            regex::Regex::new(&format!("^(?:{pat})$"))
                .ok()
                .map(|re| (pat, re))
        });
        let valid = |v: &str| -> Result<(), String> {
            if secret {
                secret_answer(v)?;
            } else if v.is_empty() && default.is_none() {
                return Err("nothing was entered".to_owned());
            }
            match &pattern {
                Some((pat, re)) if !re.is_match(v) => {
                    Err(format!("the answer does not match `{pat}`"))
                }
                _ => Ok(()),
            }
        };
        let value = self.answer(
            id,
            secret,
            |p| ask_until(p, &prompt, secret, default.as_deref(), &valid),
            default.clone(),
        )?;
        if let Some(pat) = &a.pattern
            && let Ok(re) = regex::Regex::new(&format!("^(?:{pat})$"))
            && !re.is_match(&value)
        {
            return Err(ActionError::failed(format!(
                "the answer does not match `{pat}`"
            )));
        }
        if secret {
            if value.len() < MIN_SECRET_LEN {
                return Err(ActionError::failed(format!(
                    "a secret must be at least {MIN_SECRET_LEN} characters"
                )));
            }
            self.bus.redactor().add(&value);
        }
        Ok(ActionResult {
            value: serde_json::json!({ "value": value }),
            lines: vec![],
        })
    }

    fn choose(&mut self, id: &str, c: &Choose) -> Result<ActionResult, ActionError> {
        let prompt = self.render_shown(&c.prompt);
        let options: Vec<(String, String)> = c
            .options
            .iter()
            .map(|o| (o.value.clone(), o.label.clone().unwrap_or_default()))
            .collect();
        let default = c.default.as_ref().map(|d| d.value.clone());
        let value = self.answer(
            id,
            false,
            |p| p.choose(&prompt, &options, default.as_deref()),
            default.clone(),
        )?;
        if !options.iter().any(|(v, _)| *v == value) {
            let valid: Vec<&str> = options.iter().map(|(v, _)| v.as_str()).collect();
            return Err(ActionError::failed(format!(
                "`{value}` is not one of {}",
                valid.join(", ")
            )));
        }
        // Shown also when it came from --set, DRCTL_ANSWER_* or the default.
        self.bus.emit(RunEvent::StepOutput {
            id: id.to_owned(),
            line: format!("answer: {value}"),
        });
        Ok(ActionResult {
            value: serde_json::json!({ "value": value }),
            lines: vec![format!("chose {value}")],
        })
    }

    fn kube_use(&mut self, a: &KubeUse) -> Result<ActionResult, ActionError> {
        let path = self
            .values
            .render(&a.kubeconfig, Sink::Shown)
            .map_err(|e| ActionError::failed(e.to_string()))?;
        let context = match &a.context {
            Some(c) => Some(
                self.values
                    .render(c, Sink::Shown)
                    .map_err(|e| ActionError::failed(e.to_string()))?,
            ),
            None => None,
        };
        let abs = std::fs::canonicalize(&path).map_err(|e| {
            ActionError::of_kind(ErrorKind::Invalid, format!("kubeconfig {path}: {e}"))
        })?;
        std::fs::File::open(&abs).map_err(|e| {
            ActionError::of_kind(ErrorKind::Invalid, format!("kubeconfig {path}: {e}"))
        })?;
        let abs = abs.display().to_string();
        self.values.kube.kubeconfig = Some(abs.clone());
        self.values.kube.context = context.clone();
        self.journal
            .connections
            .insert("kubeconfig".into(), abs.clone());
        match &context {
            Some(c) => self.journal.connections.insert("context".into(), c.clone()),
            None => self.journal.connections.remove("context"),
        };
        Ok(ActionResult {
            value: serde_json::json!({ "kubeconfig": abs, "context": context }),
            lines: vec![format!("kubeconfig {abs}")],
        })
    }

    /// Secret inputs this step uses that were left to be asked when needed: asked now,
    /// masked, again with the reason until valid.
    pub(super) fn ask_deferred(&mut self, step: &Step) -> Result<(), ActionError> {
        if self.opts.deferred.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = crate::exec::needs::used_by_step(step, &self.opts.deferred)
            .into_iter()
            .cloned()
            .collect();
        let rb = self.plan.runbook;
        for name in names {
            let Some(spec) = rb.inputs.get(&name) else {
                continue;
            };
            let prompt = match &spec.description {
                Some(d) => format!("{name} ({d}), needed by step `{}`", step.id.value),
                None => format!("{name}, needed by step `{}`", step.id.value),
            };
            let valid = |v: &str| -> Result<(), String> {
                secret_answer(v)?;
                match crate::exec::inputs::check(&name, spec, v) {
                    Err(e) => Err(e.to_string()),
                    Ok(_) => Ok(()),
                }
            };
            self.flush()
                .map_err(|e| ActionError::failed(e.to_string()))?;
            let v = match self.prompt(|p| ask_until(p, &prompt, true, None, &valid)) {
                Ok(v) => v,
                Err(PromptError::Aborted) => return Err(ActionError::AbortedByOperator),
                Err(PromptError::NoOperator(r)) => return Err(ActionError::NeedsOperator(r)),
                Err(PromptError::Io(e)) => {
                    return Err(ActionError::failed(format!(
                        "cannot ask for input `{name}`: {e}"
                    )));
                }
            };
            self.bus.redactor().add(&v);
            self.values.secret_names.insert(name.clone());
            self.values
                .inputs
                .insert(name.clone(), minijinja::Value::from(v));
            self.opts.deferred.remove(&name);
        }
        Ok(())
    }
}
