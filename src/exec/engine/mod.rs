//! The engine: walks the steps of a runbook, asks, acts, checks, captures, and records
//! every transition in the journal before moving on. It emits events; it never prints.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::backend::{ActionCtx, ActionError, ActionResult, Cancel, ErrorKind, EventBus};
use super::context::Values;
use super::events::{RunEvent, StepOutcome};
use super::journal::{Journal, JournalError, JournalStore, Mode, RunState, StepState};
use super::prompt::{
    InterruptedDecision, Operator, PromptError, PromptOperator, Prompter, StepView,
};
use crate::backends::Backends;

mod causes;
mod dispatch;
mod interactive;
mod step;

use crate::plan::{Plan, equivalent};
use crate::runbook::Dur;
use crate::runbook::action::{Action, ActionSpec, Sink};
use crate::runbook::model::{ActionBlock, Step};
pub use dispatch::perform;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Choices of the operator that shape a run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub dry_run: bool,
    /// No prompts.
    pub yes: bool,
    /// Start at this step (earlier pending steps are skipped).
    pub from: Option<String>,
    /// Run only these steps.
    pub only: Vec<String>,
    /// Manual (or `confirm: always`) steps the operator confirms from the command line.
    pub confirmed: BTreeSet<String>,
    /// Decisions for interrupted steps, from `--resolve STEP=rerun|done|skip`.
    pub resolve: BTreeMap<String, InterruptedDecision>,
    /// Answers to `choose` / `input` steps, by step id (from `--set STEP=VALUE`).
    pub answers: BTreeMap<String, String>,
    /// Secret inputs asked when the first step that uses them is reached.
    pub deferred: BTreeSet<String>,
}

/// A secret output a step needs, lost with an earlier process.
enum Lost {
    No,
    /// Run again from this step index (the step that makes it).
    Rewind(usize),
    /// Cannot be made again: fail the step with this error.
    Fail(String),
}

/// Whether a step uses the output `name` in a template (action, `when`, `check`).
pub fn uses_output(step: &Step, name: &str) -> bool {
    let needle = format!("outputs.{name}");
    let mut hit = step
        .when
        .as_ref()
        .is_some_and(|w| w.as_str().contains(&needle));
    let mut look = |t: &crate::runbook::Text, _| hit |= t.as_str().contains(&needle);
    step.action.visit_texts(&mut look);
    if let Some(c) = &step.check {
        c.action.visit_texts(&mut look);
    }
    hit
}

/// What to do after a step.
enum Flow {
    Next,
    Stop(RunState),
}

/// What a run is made of, given by the command that starts or resumes it.
pub struct Setup<'a> {
    pub plan: &'a Plan<'a>,
    pub journal: Journal,
    pub store: &'a dyn JournalStore,
    pub values: Values,
    pub prompter: Box<dyn Prompter>,
    /// Whether a person answers the prompter.
    pub interactive: bool,
    pub bus: EventBus,
    pub backends: &'a Backends,
    pub opts: Options,
    pub cancel: Cancel,
    pub resumed: bool,
    /// How the report of this run is shown (`drctl report RUN_ID`).
    pub report_hint: String,
}

/// A run in progress. Built with `Engine::new`; its state is its own.
pub struct Engine<'a> {
    plan: &'a Plan<'a>,
    journal: Journal,
    store: &'a dyn JournalStore,
    values: Values,
    prompter: std::sync::Mutex<Box<dyn Prompter>>,
    interactive: bool,
    bus: EventBus,
    backends: &'a Backends,
    opts: Options,
    cancel: Cancel,
    resumed: bool,
    report_hint: String,
    /// Steps whose `StepStarted` was emitted.
    announced: BTreeSet<String>,
    /// Read-only results not yet written (see `mark`).
    dirty: bool,
    /// A rehearsal showed a mutation without performing it (see `problem`).
    rehearsed_mutation: bool,
    last_save: Instant,
    /// Steps an earlier process of this run had done (set when `run` starts).
    done_before_resume: usize,
    /// A rehearsal's causes shared by many steps (see `causes`).
    causes: causes::Causes,
    /// The kind of the last action error, for `causes`.
    last_kind: Option<ErrorKind>,
}

impl<'a> Engine<'a> {
    pub fn new(s: Setup<'a>) -> Self {
        Engine {
            plan: s.plan,
            journal: s.journal,
            store: s.store,
            values: s.values,
            prompter: std::sync::Mutex::new(s.prompter),
            interactive: s.interactive,
            bus: s.bus,
            backends: s.backends,
            opts: s.opts,
            cancel: s.cancel,
            resumed: s.resumed,
            report_hint: s.report_hint,
            announced: BTreeSet::new(),
            dirty: false,
            rehearsed_mutation: false,
            last_save: Instant::now(),
            done_before_resume: 0,
            causes: causes::Causes::default(),
            last_kind: None,
        }
    }
}

/// The bound of a prerequisite's check (prerequisites have no timeout of their own).
const PREREQUISITE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a rehearsal waits for a condition after a change it did not perform.
const REHEARSAL_WAIT: Duration = Duration::from_secs(5);

/// Longest a read-only step's result waits for the next journal write.
const LAZY_FLUSH: Duration = Duration::from_millis(250);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Engine<'_> {
    /// Run (or resume) to the end, a failure, an abort or a question nobody can answer.
    pub async fn run(mut self) -> Result<Journal, EngineError> {
        let steps: Vec<&Step> = self.plan.steps.iter().map(|p| p.step).collect();
        self.done_before_resume = if self.resumed {
            self.journal
                .steps
                .iter()
                .filter(|s| {
                    !s.rehearsed && matches!(s.state, StepState::Succeeded | StepState::Skipped)
                })
                .count()
        } else {
            0
        };
        self.bus.emit(RunEvent::RunStarted {
            run_id: self.journal.run_id.clone(),
            runbook: self.plan.runbook.name.value.clone(),
            title: self.plan.runbook.title.clone(),
            mode: self.journal.mode,
            steps: steps.len(),
            resumed: self.resumed,
            journal: self.store.describe(&self.journal.run_id),
        });
        self.journal.state = RunState::Running;
        self.save()?;

        if let Some(from) = &self.opts.from
            && !steps.iter().any(|s| &s.id.value == from)
        {
            self.bus.emit(RunEvent::Notice {
                message: format!("--from: no step `{from}` in this runbook"),
            });
            return self.finish(RunState::Failed).await;
        }
        if self
            .journal
            .steps
            .iter()
            .all(|s| s.state == StepState::Pending)
            && let Some(state) = self.prerequisites().await?
        {
            return self.finish(state).await;
        }
        let mut before_from = self.opts.from.is_some();
        let total = steps.len();
        let mut i = 0;
        while i < steps.len() {
            let step = steps[i];
            i += 1;
            if before_from && Some(&step.id.value) == self.opts.from.as_ref() {
                before_from = false;
            }
            let skip_reason = if before_from {
                Some("before --from".to_owned())
            } else if !self.opts.only.is_empty() && !self.opts.only.contains(&step.id.value) {
                Some("not selected with --only".to_owned())
            } else {
                None
            };
            if let Some(reason) = skip_reason {
                if self.state_of(&step.id.value) == StepState::Pending {
                    self.mark(
                        &step.id.value,
                        StepState::Skipped,
                        Some(reason.clone()),
                        None,
                    )?;
                    self.finished(
                        &step.id.value,
                        StepOutcome::Skipped { reason },
                        Duration::ZERO,
                    );
                }
                continue;
            }
            match self.lost_input(&steps, i - 1)? {
                Lost::No => {}
                Lost::Rewind(to) => {
                    i = to;
                    continue;
                }
                Lost::Fail(error) => {
                    if let Flow::Stop(state) =
                        self.fail(&step.id.value, error, Instant::now(), false)?
                    {
                        return self.finish(state).await;
                    }
                    continue;
                }
            }
            match self.step(step, i, total, false).await? {
                Flow::Next => {}
                Flow::Stop(state) => return self.finish(state).await,
            }
        }
        self.finish(RunState::Succeeded).await
    }

    /// A step still to run needs a secret output that an earlier drctl process captured
    /// and took with it (secrets are never written down). When the step that made it is
    /// safe to run again (idempotent or read-only), run it again, with the done steps in
    /// between that used the old value; otherwise fail the step now, saying so (retrying
    /// cannot bring the secret back).
    fn lost_input(&mut self, steps: &[&Step], at: usize) -> Result<Lost, EngineError> {
        let step = steps[at];
        if matches!(
            self.state_of(&step.id.value),
            StepState::Succeeded | StepState::Skipped
        ) {
            return Ok(Lost::No);
        }
        let Some((name, maker)) = self
            .values
            .lost_secrets
            .iter()
            .find(|(name, _)| uses_output(step, name))
            .map(|(n, m)| (n.clone(), m.clone()))
        else {
            return Ok(Lost::No);
        };
        let found = steps[..at]
            .iter()
            .position(|s| s.id.value == maker)
            .filter(|&p| {
                let s = steps[p];
                (s.idempotent || !s.action.mutates())
                    && self.state_of(&s.id.value) == StepState::Succeeded
            });
        let Some(p) = found else {
            let error = super::context::ContextError::LostSecret { name, step: maker };
            return Ok(Lost::Fail(error.to_string()));
        };
        let mut again = vec![maker.clone()];
        for s in &steps[p + 1..at] {
            if uses_output(s, &name) && self.state_of(&s.id.value) == StepState::Succeeded {
                again.push(s.id.value.clone());
            }
        }
        for id in &again {
            self.mark(
                id,
                StepState::Pending,
                Some(format!(
                    "run again: the secret output `{name}` ended with an earlier drctl process"
                )),
                None,
            )?;
        }
        self.values.lost_secrets.remove(&name);
        self.bus.emit(RunEvent::Notice {
            message: format!(
                "step `{}` needs the secret output `{name}`, which ended with the earlier drctl process; step `{maker}` is safe to run again, so it runs again{}",
                step.id.value,
                if again.len() > 1 {
                    format!(
                        ", with {} that used the old value",
                        again[1..]
                            .iter()
                            .map(|s| format!("`{s}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    String::new()
                }
            ),
        });
        self.save()?;
        Ok(Lost::Rewind(p))
    }

    /// Before step 1 of a run: list what the operator must hold, test each prerequisite
    /// that has a `check`, then (at a terminal) have the operator confirm the others. A
    /// rehearsal reports a failed check as a problem; a run stops before changing anything
    /// unless the operator chooses to go on (never under --yes). Returns the state to end
    /// in, if the run must not start.
    async fn prerequisites(&mut self) -> Result<Option<RunState>, EngineError> {
        let rb = self.plan.runbook;
        let by_hand: Vec<&str> = rb
            .prerequisites
            .iter()
            .filter(|p| p.check.is_none())
            .map(|p| p.title.as_str())
            .collect();
        if !by_hand.is_empty() {
            self.bus.emit(RunEvent::Notice {
                message: format!("have at hand before you start: {}", by_hand.join("; ")),
            });
        }
        for p in &rb.prerequisites {
            let Some(check) = &p.check else { continue };
            let id = p.id.value.clone();
            if self.opts.dry_run
                && let Some((n, _)) = self.blocked_by(&check.action)
            {
                // The same system failed an earlier check: said once.
                self.also_blocks(n, &id);
                continue;
            }
            let res = {
                let operator = self.operator();
                let ctx = ActionCtx {
                    step_id: &id,
                    values: &self.values,
                    dry_run: false,
                    bus: &self.bus,
                    cancel: &self.cancel,
                    timeout: Some(PREREQUISITE_TIMEOUT),
                    quiet: false,
                    operator: &operator,
                };
                match tokio::time::timeout(
                    PREREQUISITE_TIMEOUT,
                    perform(&check.action, &ctx, self.backends),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(ActionError::Timeout(Dur::human(PREREQUISITE_TIMEOUT))),
                }
            };
            let err = match res {
                Ok(_) => {
                    self.bus.emit(RunEvent::Notice {
                        message: format!("prerequisite met: {}", p.title),
                    });
                    continue;
                }
                Err(ActionError::Cancelled) => return Ok(Some(RunState::Aborted)),
                Err(e) => {
                    self.last_kind = causes::kind_of(&e);
                    e.to_string()
                }
            };
            self.problem(
                Some(&id),
                format!("prerequisite not met: {}: {err}", p.title),
            );
            if self.opts.dry_run {
                let kind = self.last_kind.take();
                self.met(&check.action, &id, &[], kind);
                continue;
            }
            if self.opts.yes || !self.interactive {
                self.bus.emit(RunEvent::Notice {
                    message: format!(
                        "the run did not start: prerequisite `{id}` ({}) is not met; fix it, then `drctl resume {}` (interactively you may go on without it)",
                        p.title, self.journal.run_id
                    ),
                });
                return Ok(Some(RunState::Failed));
            }
            self.flush()?;
            let go_on = self
                .operator()
                .confirm(
                    &format!(
                        "Prerequisite `{id}` ({}) is not met: {err}. Start the run anyway?",
                        p.title
                    ),
                    false,
                )
                .unwrap_or(false);
            if !go_on {
                return Ok(Some(RunState::Aborted));
            }
            self.bus.emit(RunEvent::Notice {
                message: format!("the operator started the run although `{id}` is not met"),
            });
        }
        // drctl cannot check these: at a terminal, a run that has not begun asks, so nobody
        // reaches step 1 (and its first irreversible change) still missing one.
        if !by_hand.is_empty() && self.interactive && !self.opts.yes && !self.opts.dry_run {
            self.flush()?;
            let ready = self
                .operator()
                .confirm("Do you have everything listed above at hand?", true)
                .unwrap_or(false);
            if !ready {
                self.bus.emit(RunEvent::Notice {
                    message: format!(
                        "the run did not start: gather what it needs, then `drctl resume {}`",
                        self.journal.run_id
                    ),
                });
                return Ok(Some(RunState::Aborted));
            }
            self.bus.emit(RunEvent::Notice {
                message: format!("the operator has at hand: {}", by_hand.join("; ")),
            });
        }
        Ok(None)
    }

    fn operator(&self) -> PromptOperator<'_> {
        PromptOperator {
            prompter: &self.prompter,
            interactive: self.interactive,
            redactor: self.bus.redactor(),
        }
    }

    fn prompt<T>(&self, f: impl FnOnce(&mut dyn Prompter) -> T) -> T {
        let mut g = match self.prompter.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(g.as_mut())
    }

    fn state_of(&self, id: &str) -> StepState {
        self.journal
            .step(id)
            .map(|s| s.state)
            .unwrap_or(StepState::Pending)
    }

    /// Record a transition and write the journal before anything else happens.
    fn mark(
        &mut self,
        id: &str,
        state: StepState,
        message: Option<String>,
        decided_by: Option<&str>,
    ) -> Result<(), EngineError> {
        let redactor = self.bus.redactor().clone();
        if let Some(rec) = self.journal.step_mut(id) {
            rec.state = state;
            let now = Utc::now();
            match state {
                StepState::Running => {
                    rec.started_at = Some(now);
                    rec.finished_at = None;
                    rec.attempts += 1;
                    rec.message = None;
                }
                StepState::Pending => {}
                _ => {
                    if rec.started_at.is_none() {
                        rec.started_at = Some(now);
                    }
                    rec.finished_at = Some(now);
                }
            }
            if let Some(m) = message {
                rec.message = Some(redactor.redact(&m));
            }
            if let Some(d) = decided_by {
                rec.decided_by = Some(d.to_owned());
            }
        }
        // Group commit for reads: a mutating step's transitions are written (and fsync'd)
        // at once, so a resume never repeats a change silently; a read-only step's are
        // written with the next durable write, before any prompt, at the end of the run,
        // or within LAZY_FLUSH. A crash loses at most reads, which a resume redoes.
        let mutates = self.journal.step(id).map(|r| r.mutates).unwrap_or(true);
        if mutates || state == StepState::Pending {
            self.save()
        } else {
            self.dirty = true;
            if self.last_save.elapsed() >= LAZY_FLUSH {
                self.save()?;
            }
            Ok(())
        }
    }

    /// Write the journal now.
    fn save(&mut self) -> Result<(), EngineError> {
        self.store.save(&mut self.journal)?;
        self.dirty = false;
        self.last_save = Instant::now();
        Ok(())
    }

    /// Write pending read-only results before something that waits for a person.
    fn flush(&mut self) -> Result<(), EngineError> {
        if self.dirty {
            self.save()?;
        }
        Ok(())
    }

    fn finished(&self, id: &str, outcome: StepOutcome, took: Duration) {
        let title = self
            .journal
            .step(id)
            .map(|s| s.title.clone())
            .unwrap_or_default();
        self.bus.emit(RunEvent::StepFinished {
            id: id.to_owned(),
            title,
            started: self.announced.contains(id),
            outcome,
            duration_ms: ms(took),
        });
    }

    /// A rehearsal's finding. After a mutation the rehearsal did not perform, a failing
    /// read may just be its consequence (the unseal that did not happen keeps Vault
    /// sealed): such findings are caveats, reported apart and not failing the rehearsal.
    fn problem(&mut self, step: Option<&str>, message: String) {
        let mut message = self.bus.redactor().redact(&message);
        let caveat = self.opts.dry_run && self.rehearsed_mutation;
        if caveat {
            message.push_str(" (may follow from a change this rehearsal did not make)");
        }
        let entry = match step {
            Some(s) => format!("{s}: {message}"),
            None => message.clone(),
        };
        if caveat {
            self.journal.caveats.push(entry);
        } else {
            self.journal.problems.push(entry);
        }
        self.bus.emit(RunEvent::Problem {
            step: step.map(str::to_owned),
            message,
        });
    }

    /// Everything about a step, for the "details" answer.
    fn details(&self, step: &Step, rendered: &[String]) -> String {
        let mut d = format!("{} ({})\n", step.title, step.action.name());
        if let Some(desc) = &step.description {
            d.push_str(&format!("\n{}\n", self.render_shown(desc)));
        }
        if !rendered.is_empty() {
            d.push_str("\nWhat it does:\n");
            for l in rendered {
                d.push_str(&format!("  {l}\n"));
            }
        }
        if let Some(e) = &step.expect {
            d.push_str(&format!("\nExpected: {}\n", self.render_shown(e)));
        }
        if let Some(f) = &step.fallback {
            d.push_str(&format!("\nIf it fails: {}\n", self.render_shown(f)));
        }
        if let Some(t) = step.timeout {
            d.push_str(&format!("\nTimeout: {t}\n"));
        }
        d
    }

    fn render_shown(&self, t: &crate::runbook::Text) -> String {
        self.values
            .render(t, Sink::Shown)
            .unwrap_or_else(|_| t.value.clone())
    }

    /// What the action will do, with secrets as placeholders.
    fn rendered(&self, action: &Action) -> Vec<String> {
        let r = self.values.shown_resolver();
        let mut lines = match action {
            Action::Manual(m) => vec![r.text(&m.instructions, Sink::Shown)],
            // The prompt itself asks the question; shown here: what each answer means.
            Action::Choose(c) => c
                .options
                .iter()
                .map(|o| {
                    let label = o.label.as_deref().unwrap_or(&o.value);
                    match &o.description {
                        Some(d) => format!(
                            "{}: {label} — {}",
                            o.value,
                            d.split_whitespace().collect::<Vec<_>>().join(" ")
                        ),
                        None => format!("{}: {label}", o.value),
                    }
                })
                .collect(),
            Action::Input(_) => Vec::new(),
            _ => Vec::new(),
        };
        lines.extend(equivalent::commands(action, &r));
        lines
    }

    fn started_event(
        &mut self,
        step: &Step,
        index: usize,
        total: usize,
        rendered: &[String],
        cleanup: bool,
    ) -> RunEvent {
        self.announced.insert(step.id.value.clone());
        RunEvent::StepStarted {
            index,
            total,
            id: step.id.value.clone(),
            title: step.title.clone(),
            action: step.action.name().to_owned(),
            mutates: step.action.mutates(),
            rendered: rendered.to_vec(),
            description: step
                .description
                .as_ref()
                .map(|d| self.render_shown(d).trim().to_owned()),
            cleanup,
        }
    }

    /// The step's `check` shows its work done: record it without running the action.
    fn already_done(
        &mut self,
        id: &str,
        message: &str,
        started: Instant,
    ) -> Result<Flow, EngineError> {
        self.mark(
            id,
            StepState::Succeeded,
            Some(message.to_owned()),
            Some("check"),
        )?;
        self.finished(id, StepOutcome::AlreadyDone, started.elapsed());
        Ok(Flow::Next)
    }

    fn skip(&mut self, id: &str, reason: &str, started: Instant) -> Result<Flow, EngineError> {
        self.mark(id, StepState::Skipped, Some(reason.to_owned()), None)?;
        self.finished(
            id,
            StepOutcome::Skipped {
                reason: reason.to_owned(),
            },
            started.elapsed(),
        );
        Ok(Flow::Next)
    }

    fn needs_operator(
        &mut self,
        id: &str,
        reason: String,
        started: Instant,
    ) -> Result<Flow, EngineError> {
        // Pending, not failed: nothing was done, the step waits for a person.
        self.needs_operator_with(id, reason, started, StepState::Pending)
    }

    fn needs_operator_with(
        &mut self,
        id: &str,
        reason: String,
        started: Instant,
        state: StepState,
    ) -> Result<Flow, EngineError> {
        if state == StepState::Running {
            // Keep the record as it was (started, attempts); note why it waits.
            if let Some(rec) = self.journal.step_mut(id) {
                rec.message = Some(reason.clone());
            }
            self.save()?;
        } else {
            self.mark(id, state, Some(reason.clone()), None)?;
        }
        self.finished(
            id,
            StepOutcome::NeedsOperator {
                reason: reason.clone(),
            },
            started.elapsed(),
        );
        if self.opts.dry_run {
            self.problem(Some(id), reason);
            return Ok(Flow::Next);
        }
        Ok(Flow::Stop(RunState::Paused))
    }

    fn fail(
        &mut self,
        id: &str,
        error: String,
        started: Instant,
        cleanup: bool,
    ) -> Result<Flow, EngineError> {
        let error = self.bus.redactor().redact(&error);
        self.mark(id, StepState::Failed, Some(error.clone()), None)?;
        // What to do next belongs with the error, not only behind `details`.
        let fallback = if self.opts.dry_run {
            None
        } else {
            self.plan
                .step(id)
                .and_then(|p| p.step.fallback.as_ref())
                .map(|f| self.render_shown(f))
        };
        self.finished(
            id,
            StepOutcome::Failed {
                error: error.clone(),
                fallback,
            },
            started.elapsed(),
        );
        if self.opts.dry_run {
            // A rehearsal goes on, to find every problem at once.
            self.problem(Some(id), error);
            return Ok(Flow::Next);
        }
        if cleanup {
            return Ok(Flow::Next);
        }
        self.values.run.failed_step = Some(id.to_owned());
        Ok(Flow::Stop(RunState::Failed))
    }

    /// Capture the step's outputs from its result.
    fn capture(&mut self, step: &Step, res: &ActionResult) -> Result<(), String> {
        let secret_fields = step.action.secret_results();
        for o in &step.outputs {
            let (v, derived) = self
                .values
                .eval_output(&o.from, &res.value, secret_fields)
                .map_err(|e| format!("cannot capture output `{}`: {e}", o.name.value))?;
            if v.is_undefined() {
                return Err(format!(
                    "output `{}`: `{}` is undefined in the step's result",
                    o.name.value, o.from.value
                ));
            }
            let name = o.name.value.clone();
            if derived && !o.secret {
                // Validation refuses what it can see; this catches every other spelling.
                self.bus.emit(RunEvent::Notice {
                    message: format!(
                        "output `{name}` of step `{}` is computed from a secret, so it is kept secret (never shown or journalled); mark it `secret: true`",
                        step.id.value
                    ),
                });
            }
            if o.secret || derived {
                // Every string in it (a list of key shares too), and the whole as text.
                let json = Values::to_json(&v);
                add_secret_strings(self.bus.redactor(), &json);
                if v.as_str().is_none() {
                    self.bus.redactor().add(&v.to_string());
                }
                self.values.secret_names.insert(name.clone());
                if !self.journal.secret_outputs.contains(&name) {
                    self.journal.secret_outputs.push(name.clone());
                }
            } else {
                self.journal
                    .outputs
                    .insert(name.clone(), Values::to_json(&v));
            }
            self.values.lost_secrets.remove(&name);
            self.values.outputs.insert(name, v);
        }
        Ok(())
    }

    /// Run a read-only check; Ok when it passes.
    async fn check(&mut self, step: &Step, check: &ActionBlock) -> Result<(), ActionError> {
        let operator = self.operator();
        let ctx = ActionCtx {
            step_id: &step.id.value,
            values: &self.values,
            dry_run: false,
            bus: &self.bus,
            cancel: &self.cancel,
            timeout: step.timeout.map(|t| t.value),
            quiet: step.outputs.iter().any(|o| o.secret),
            operator: &operator,
        };
        let fut = perform(&check.action, &ctx, self.backends);
        let res = match step.timeout {
            Some(t) => match tokio::time::timeout(t.value, fut).await {
                Ok(r) => r,
                Err(_) => Err(ActionError::Timeout(t.to_string())),
            },
            None => fut.await,
        };
        res.map(|_| ())
    }

    /// The action with its timeout and retries; interactive actions go to the prompter.
    async fn attempts(
        &mut self,
        step: &Step,
        view: &StepView<'_>,
    ) -> Result<ActionResult, ActionError> {
        if let Some(done) = self.interactive(step, view) {
            return done;
        }
        let id = step.id.value.clone();

        // A rehearsal after a change it did not make tries once: retrying a read whose
        // failure follows from that change would only spend the retries' backoff.
        let attempts = if self.opts.dry_run && self.rehearsed_mutation {
            1
        } else {
            step.retries
                .as_ref()
                .map(|r| r.attempts.max(1))
                .unwrap_or(1)
        };
        let mut backoff = step
            .retries
            .as_ref()
            .and_then(|r| r.backoff)
            .map(|b| b.value)
            .unwrap_or(Duration::from_secs(2));
        let max_backoff = step
            .retries
            .as_ref()
            .and_then(|r| r.max_backoff)
            .map(|b| b.value)
            .unwrap_or(Duration::from_secs(300));
        let mut attempt = 1;
        loop {
            let res = self.once(step).await;
            match res {
                Ok(r) => return Ok(r),
                // Only what waiting can heal is tried again (see `is_retryable`).
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let wait = backoff.min(max_backoff);
                    self.bus.emit(RunEvent::StepRetry {
                        id: id.clone(),
                        attempt,
                        attempts,
                        error: e.to_string(),
                        wait_ms: ms(wait),
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.cancel.cancelled() => return Err(ActionError::Cancelled),
                    }
                    if let Some(rec) = self.journal.step_mut(&id) {
                        rec.attempts += 1;
                    }
                    self.save()
                        .map_err(|e| ActionError::failed(e.to_string()))?;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// An answer to a decision: the journal (on resume), `--set STEP=VALUE`, the operator,
    /// or (with --yes only) the default.
    fn answer(
        &mut self,
        id: &str,
        secret: bool,
        ask: impl FnOnce(&mut dyn Prompter) -> Result<String, PromptError>,
        default: Option<String>,
    ) -> Result<String, ActionError> {
        if let Some(v) = self.journal.decisions.get(id) {
            return Ok(v.clone());
        }
        // Secret answers can come from the environment, never only from argv.
        let env_key = format!("DRCTL_ANSWER_{}", id.to_uppercase().replace('-', "_"));
        let v = if let Some(v) = self.opts.answers.get(id) {
            v.clone()
        } else if let Some(v) = std::env::var(&env_key).ok().filter(|v| !v.is_empty()) {
            v
        } else if self.opts.yes || self.opts.dry_run && default.is_some() {
            match default {
                Some(d) => d,
                None => {
                    return Err(ActionError::NeedsOperator(format!(
                        "step `{id}` asks a question and --yes asks nothing; answer it with `--set {id}=VALUE` or {env_key}"
                    )));
                }
            }
        } else {
            self.flush()
                .map_err(|e| ActionError::failed(e.to_string()))?;
            match self.prompt(ask) {
                Ok(v) => v,
                Err(PromptError::Aborted) => return Err(ActionError::AbortedByOperator),
                Err(PromptError::NoOperator(r)) => return Err(ActionError::NeedsOperator(r)),
                Err(PromptError::Io(e)) => {
                    return Err(ActionError::failed(format!("cannot ask the operator: {e}")));
                }
            }
        };
        if !secret {
            self.journal.decisions.insert(id.to_owned(), v.clone());
        }
        Ok(v)
    }

    /// One attempt, bounded by the step's timeout, with a "late" warning past `warn_after`.
    async fn once(&mut self, step: &Step) -> Result<ActionResult, ActionError> {
        let operator = self.operator();
        let ctx = ActionCtx {
            step_id: &step.id.value,
            values: &self.values,
            dry_run: self.opts.dry_run,
            bus: &self.bus,
            cancel: &self.cancel,
            timeout: step.timeout.map(|t| t.value),
            quiet: step.outputs.iter().any(|o| o.secret),
            operator: &operator,
        };
        let fut = perform(&step.action, &ctx, self.backends);
        let warn = step.warn_after.map(|w| w.value);
        let bus = self.bus.clone();
        let id = step.id.value.clone();
        let late = async move {
            if let Some(w) = warn {
                tokio::time::sleep(w).await;
                bus.emit(RunEvent::StepLate {
                    id,
                    elapsed_secs: w.as_secs(),
                    warn_after_secs: w.as_secs(),
                });
            }
            std::future::pending::<()>().await;
        };
        let bounded = async {
            tokio::select! {
                r = fut => r,
                _ = late => Err(ActionError::failed("the late-warning timer ended")),
            }
        };
        // A rehearsal does not wait out a condition an unperformed change would have made
        // true: it looks for a short while and reports.
        let bound = match step.timeout {
            Some(t) if self.opts.dry_run && self.rehearsed_mutation && step.action.waits() => {
                Some(t.value.min(REHEARSAL_WAIT))
            }
            Some(t) => Some(t.value),
            None => None,
        };
        match bound {
            Some(t) => match tokio::time::timeout(t, bounded).await {
                Ok(r) => r,
                Err(_) => Err(ActionError::Timeout(Dur::human(t))),
            },
            None => bounded.await,
        }
    }

    /// End the run: cleanup after a failure or an abort, the summary, the journal.
    async fn finish(mut self, state: RunState) -> Result<Journal, EngineError> {
        // Cleanup undoes what steps did: nothing to undo when none has run.
        if matches!(state, RunState::Failed | RunState::Aborted)
            && !self.opts.dry_run
            && !self.plan.cleanup.is_empty()
            && self
                .journal
                .steps
                .iter()
                .any(|s| s.state != StepState::Pending)
        {
            let reason = match state {
                RunState::Failed => format!(
                    "step `{}` failed",
                    self.values.run.failed_step.clone().unwrap_or_default()
                ),
                _ => "the run was aborted".to_owned(),
            };
            self.bus.emit(RunEvent::CleanupStarted { reason });
            self.cancel = self.cancel.rebased();
            if self.values.run.failed_step.is_none() {
                self.values.run.failed_step = self.journal.last_step().map(|s| s.id.clone());
            }
            let total = self.plan.cleanup.len();
            let cleanup: Vec<&Step> = self.plan.cleanup.iter().map(|p| p.step).collect();
            for (i, s) in cleanup.into_iter().enumerate() {
                // Cleanup is best effort: a failure is recorded and the next one runs.
                let _ = self.step(s, i + 1, total, true).await?;
            }
        }
        self.journal.state = state;
        self.save()?;
        let count = |st: StepState, rehearsed: bool| {
            self.journal
                .steps
                .iter()
                .filter(|s| s.state == st && s.rehearsed == rehearsed)
                .count()
        };
        self.bus.emit(RunEvent::RunFinished {
            run_id: self.journal.run_id.clone(),
            state,
            mode: self.journal.mode,
            succeeded: count(StepState::Succeeded, false),
            skipped: count(StepState::Skipped, false),
            failed: count(StepState::Failed, false),
            done_before_resume: self.done_before_resume,
            would_run: count(StepState::Skipped, true),
            problems: self.journal.problems.clone(),
            caveats: self.journal.caveats.clone(),
            skipped_steps: self
                .journal
                .steps
                .iter()
                .filter(|s| s.state == StepState::Skipped && !s.rehearsed)
                .map(|s| match &s.message {
                    Some(m) => format!("{}: {m}", s.id),
                    None => s.id.clone(),
                })
                .collect(),
            report: self.report_hint.clone(),
        });
        Ok(self.journal)
    }
}

/// Remember every string inside a secret value.
fn add_secret_strings(r: &crate::secret::Redactor, v: &serde_json::Value) {
    match v {
        serde_json::Value::String(s) => r.add(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| add_secret_strings(r, x)),
        serde_json::Value::Object(o) => o.values().for_each(|x| add_secret_strings(r, x)),
        _ => {}
    }
}

/// The journal's view of the run mode.
pub fn mode(dry_run: bool) -> Mode {
    if dry_run { Mode::Rehearsal } else { Mode::Run }
}
