//! One step, in named phases: what an earlier process left (resume), the `when`
//! condition, the check that shows it already done, a rehearsal's stand-in for a
//! mutation, the confirmation, then the action with its record in the journal.

use std::ops::ControlFlow::{self, Break, Continue};
use std::time::Instant;

use minijinja::Value;

use super::super::backend::ActionError;
use super::super::events::{RunEvent, StepOutcome};
use super::super::journal::{RunState, StepState};
use super::super::local;
use super::super::prompt::{InterruptedDecision, PromptError, StepDecision, StepView};
use super::dispatch::performed_by_backend;
use super::{Engine, EngineError, Flow};
use crate::runbook::action::{Action, ActionSpec};
use crate::runbook::model::{Confirm, Step};

type Phase<T = ()> = Result<ControlFlow<Flow, T>, EngineError>;

impl Engine<'_> {
    pub(super) async fn step(
        &mut self,
        step: &Step,
        index: usize,
        total: usize,
        cleanup: bool,
    ) -> Result<Flow, EngineError> {
        let id = step.id.value.clone();
        let started = Instant::now();
        let dry = self.opts.dry_run;
        let mut decided_by = match self.resume_decision(step, &id, started, cleanup).await? {
            Break(flow) => return Ok(flow),
            Continue(by) => by,
        };
        if let Break(flow) = self.when_condition(step, &id, started, cleanup)? {
            return Ok(flow);
        }
        // A read that would meet a cause already reported is not tried; a change is
        // still shown as it would run (what the rehearsal is for).
        if dry
            && !step.action.mutates()
            && let Some(cause) = self.blocked_by(&step.action)
        {
            return self.blocked(&id, &step.outputs, cause, started);
        }

        let rendered = self.rendered(&step.action);
        if let Some(rec) = self.journal.step_mut(&id) {
            let red = self.bus.redactor().clone();
            rec.rendered = rendered.iter().map(|l| red.redact(l)).collect();
        }

        // "Already done?": a passing check makes the action unnecessary.
        if let Some(check) = &step.check
            && step.action.mutates()
            && self.check(step, check).await.is_ok()
        {
            return self.already_done(&id, "already done (its check passed)", started);
        }

        let details = self.details(step, &rendered);
        let view = StepView {
            id: &id,
            title: &step.title,
            action: step.action.name(),
            details: &details,
        };

        let interactive_action = matches!(
            step.action,
            Action::Manual(_) | Action::Input(_) | Action::Choose(_)
        );
        // Show the step (what, why, what it touches) before anything is asked or done.
        let ev = self.started_event(step, index, total, &rendered, cleanup);
        self.bus.emit(ev);

        if dry && step.action.mutates() {
            return self.rehearse(step, &id, started).await;
        }
        let phase = self.confirm(
            step,
            &id,
            &view,
            started,
            cleanup,
            interactive_action,
            &mut decided_by,
        )?;
        if let Break(flow) = phase {
            return Ok(flow);
        }
        // A secret left to be asked when needed: now, once the operator chose to run it.
        match self.ask_deferred(step) {
            Ok(()) => {}
            Err(ActionError::AbortedByOperator) => return Ok(Flow::Stop(RunState::Aborted)),
            Err(ActionError::NeedsOperator(r)) => return self.needs_operator(&id, r, started),
            Err(e) => return self.fail(&id, e.to_string(), started, cleanup),
        }
        let flow = self
            .execute_and_record(step, &id, &view, decided_by, cleanup)
            .await?;
        if dry {
            if self.state_of(&id) == StepState::Failed {
                let kind = self.last_kind.take();
                self.met(&step.action, &id, &step.outputs, kind);
            } else {
                self.connection_changed(&step.action);
            }
        }
        Ok(flow)
    }

    /// What an earlier drctl process left: done, or interrupted mid-way (re-run, mark
    /// done, skip: the step's idempotence, its check or the operator decide). Continues
    /// with who decided to run it, if anyone did.
    async fn resume_decision(
        &mut self,
        step: &Step,
        id: &str,
        started: Instant,
        cleanup: bool,
    ) -> Phase<Option<String>> {
        let id = id.to_owned();
        let dry = self.opts.dry_run;
        let mut decided_by: Option<String> = None;
        match self.state_of(&id) {
            // Done by an earlier drctl process, but what it opened died with that process:
            // open it again so the steps after it reach something.
            StepState::Succeeded if step.action.process_bound() => {
                self.bus.emit(RunEvent::Notice {
                    message: format!(
                        "step `{id}` opened something that ended with the earlier drctl process; opening it again"
                    ),
                });
            }
            StepState::Succeeded | StepState::Skipped => return Ok(Break(Flow::Next)),
            StepState::Pending | StepState::Failed => {}
            StepState::Running => {
                // drctl stopped while this step ran: it may be done, half done or not. A
                // read changed nothing (and its result may simply not have been written
                // yet, see LAZY_FLUSH): run it again like an idempotent step.
                if step.idempotent || !step.action.mutates() {
                    self.bus.emit(RunEvent::Notice {
                        message: format!(
                            "step `{id}` was interrupted; it is {}, running it again",
                            if step.idempotent {
                                "idempotent"
                            } else {
                                "read-only"
                            }
                        ),
                    });
                } else {
                    if let Some(check) = &step.check
                        && !dry
                        && self.check(step, check).await.is_ok()
                    {
                        return self
                            .already_done(&id, "interrupted, but its check shows it done", started)
                            .map(Break);
                    }
                    let rendered = self.rendered(&step.action);
                    let details = self.details(step, &rendered);
                    let view = StepView {
                        id: &id,
                        title: &step.title,
                        action: step.action.name(),
                        details: &details,
                    };
                    let choice = match self.opts.resolve.get(&id) {
                        Some(d) => Ok(*d),
                        None => {
                            self.flush()?;
                            self.prompt(|p| p.interrupted(&view))
                        }
                    };
                    match choice {
                        Ok(InterruptedDecision::Rerun) => {
                            decided_by = Some("operator: re-run after interruption".into());
                        }
                        Ok(InterruptedDecision::MarkDone) => {
                            self.mark(
                                &id,
                                StepState::Succeeded,
                                Some(
                                    "interrupted; marked done by the operator after checking"
                                        .into(),
                                ),
                                Some("operator"),
                            )?;
                            self.finished(&id, StepOutcome::Succeeded, started.elapsed());
                            return Ok(Break(Flow::Next));
                        }
                        Ok(InterruptedDecision::Skip) => {
                            return self
                                .skip(&id, "interrupted; skipped by the operator", started)
                                .map(Break);
                        }
                        Ok(InterruptedDecision::Abort) | Err(PromptError::Aborted) => {
                            return Ok(Break(Flow::Stop(RunState::Aborted)));
                        }
                        Err(PromptError::NoOperator(reason)) => {
                            // Still `running` in the journal: it stays interrupted until
                            // the operator says what happened.
                            return self
                                .needs_operator_with(&id, reason, started, StepState::Running)
                                .map(Break);
                        }
                        Err(PromptError::Io(e)) => {
                            return self
                                .fail(
                                    &id,
                                    format!("cannot ask the operator: {e}"),
                                    started,
                                    cleanup,
                                )
                                .map(Break);
                        }
                    }
                }
            }
        }
        Ok(Continue(decided_by))
    }

    /// `when`: skip the step when its condition is false.
    fn when_condition(&mut self, step: &Step, id: &str, started: Instant, cleanup: bool) -> Phase {
        let id = id.to_owned();
        // `when`: skip the step when its condition is false.
        if let Some(w) = &step.when {
            match self.values.eval(w, None) {
                Ok(v) if !v.is_true() => {
                    return self
                        .skip(&id, &format!("condition `{}` is false", w.value), started)
                        .map(Break);
                }
                Ok(_) => {}
                Err(e) => return self.fail(&id, e.to_string(), started, cleanup).map(Break),
            }
        }
        Ok(Continue(()))
    }

    /// A rehearsal shows a mutation instead of performing it.
    async fn rehearse(
        &mut self,
        step: &Step,
        id: &str,
        started: Instant,
    ) -> Result<Flow, EngineError> {
        let id = id.to_owned();
        // A backend shows what would change against the live system (its read-only
        // half: ctx.dry_run is set); local commands and manual work are only shown.
        if performed_by_backend(&step.action) && self.blocked_by(&step.action).is_none() {
            match self.once(step).await {
                Ok(res) => {
                    let red = self.bus.redactor().clone();
                    if let Some(rec) = self.journal.step_mut(&id) {
                        let keep = res.lines.len().saturating_sub(local::EXCERPT_LINES);
                        rec.output_excerpt =
                            res.lines[keep..].iter().map(|l| red.redact(l)).collect();
                    }
                }
                Err(ActionError::Cancelled) => return Ok(Flow::Stop(RunState::Aborted)),
                Err(e) => {
                    self.problem(Some(&id), e.to_string());
                    self.met(&step.action, &id, &[], super::causes::kind_of(&e));
                }
            }
        }
        for o in &step.outputs {
            let placeholder = format!(
                "<{} from step {id}: not captured in a rehearsal>",
                o.name.value
            );
            self.values
                .outputs
                .insert(o.name.value.clone(), Value::from(placeholder));
        }
        if let Some(rec) = self.journal.step_mut(&id) {
            rec.rehearsed = true;
        }
        self.rehearsed_mutation = true;
        self.mark(
            &id,
            StepState::Skipped,
            Some("rehearsal: would run".into()),
            Some("--dry-run"),
        )?;
        self.finished(&id, StepOutcome::WouldRun, started.elapsed());
        Ok(Flow::Next)
    }

    /// Confirmation before a mutation (or when the runbook asks for one).
    #[allow(clippy::too_many_arguments)]
    fn confirm(
        &mut self,
        step: &Step,
        id: &str,
        view: &StepView<'_>,
        started: Instant,
        cleanup: bool,
        interactive_action: bool,
        decided_by: &mut Option<String>,
    ) -> Phase {
        let id = id.to_owned();
        let dry = self.opts.dry_run;
        // Confirmation before a mutation (or when the runbook asks for one).
        let wants_confirm = !interactive_action
            && !dry
            && match step.confirm {
                Confirm::Always => true,
                Confirm::Never => false,
                Confirm::Auto => step.action.mutates(),
            };
        if wants_confirm {
            if self.opts.confirmed.contains(&id) {
                *decided_by = Some(format!("--confirm {id}"));
            } else if self.opts.yes {
                if step.confirm == Confirm::Always {
                    return self.needs_operator(
                        &id,
                        format!("step `{id}` asks for a confirmation even with --yes; check it, then resume with `--confirm {id}`"),
                        started,
                    ).map(Break);
                }
                decided_by.get_or_insert_with(|| "--yes".into());
            } else {
                self.flush()?;
                match self.prompt(|p| p.confirm_step(view)) {
                    Ok(StepDecision::Run) => {
                        decided_by.get_or_insert_with(|| "operator".into());
                    }
                    Ok(StepDecision::Skip) => {
                        return self
                            .skip(&id, "skipped by the operator", started)
                            .map(Break);
                    }
                    Ok(StepDecision::Abort) | Err(PromptError::Aborted) => {
                        return Ok(Break(Flow::Stop(RunState::Aborted)));
                    }
                    Err(PromptError::NoOperator(r)) => {
                        return self.needs_operator(&id, r, started).map(Break);
                    }
                    Err(PromptError::Io(e)) => {
                        return self
                            .fail(
                                &id,
                                format!("cannot ask the operator: {e}"),
                                started,
                                cleanup,
                            )
                            .map(Break);
                    }
                }
            }
        }
        Ok(Continue(()))
    }

    /// Run the action (with its retries), check it, capture its outputs, record it.
    async fn execute_and_record(
        &mut self,
        step: &Step,
        id: &str,
        view: &StepView<'_>,
        decided_by: Option<String>,
        cleanup: bool,
    ) -> Result<Flow, EngineError> {
        let id = id.to_owned();
        let dry = self.opts.dry_run;
        self.mark(&id, StepState::Running, None, decided_by.as_deref())?;
        // The step's duration counts from here, not from the question before it.
        let started = Instant::now();
        self.bus.emit(RunEvent::StepRunning {
            id: id.clone(),
            timeout_secs: step.timeout.map(|t| t.value.as_secs()),
            interactive: step.action.interactive(),
        });

        let result = self.attempts(step, view).await;
        match result {
            Ok(res) => {
                // "Did it work?"
                if let Some(check) = &step.check
                    && !dry
                    && let Err(e) = self.check(step, check).await
                {
                    return self.fail(
                        &id,
                        format!("the action finished but its check did not pass: {e}"),
                        started,
                        cleanup,
                    );
                }
                if let Err(e) = self.capture(step, &res) {
                    return self.fail(&id, e, started, cleanup);
                }
                let red = self.bus.redactor().clone();
                let quiet = step.outputs.iter().any(|o| o.secret);
                if let Some(rec) = self.journal.step_mut(&id)
                    && !quiet
                {
                    let keep = res.lines.len().saturating_sub(local::EXCERPT_LINES);
                    rec.output_excerpt = res.lines[keep..].iter().map(|l| red.redact(l)).collect();
                }
                let by = match &step.action {
                    Action::Manual(_) => Some(if self.opts.confirmed.contains(&id) {
                        format!("--confirm {id}")
                    } else {
                        "operator".to_owned()
                    }),
                    _ => None,
                };
                self.mark(&id, StepState::Succeeded, None, by.as_deref())?;
                self.finished(&id, StepOutcome::Succeeded, started.elapsed());
                Ok(Flow::Next)
            }
            Err(ActionError::Cancelled) => {
                self.mark(
                    &id,
                    StepState::Failed,
                    Some("interrupted by the operator (Ctrl-C)".into()),
                    None,
                )?;
                self.finished(
                    &id,
                    StepOutcome::Failed {
                        error: "interrupted (Ctrl-C)".into(),
                        fallback: None,
                    },
                    started.elapsed(),
                );
                Ok(Flow::Stop(RunState::Aborted))
            }
            Err(ActionError::NeedsOperator(reason)) => self.needs_operator(&id, reason, started),
            Err(ActionError::SkippedByOperator) => {
                self.skip(&id, "skipped by the operator", started)
            }
            Err(ActionError::AbortedByOperator) => {
                self.mark(
                    &id,
                    StepState::Pending,
                    Some("aborted by the operator".into()),
                    None,
                )?;
                Ok(Flow::Stop(RunState::Aborted))
            }
            Err(e) => {
                self.last_kind = super::causes::kind_of(&e);
                self.fail(&id, e.to_string(), started, cleanup)
            }
        }
    }
}
