//! `drctl run` and `drctl resume`: settings, inputs, lock, journal, then the engine.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::cli::{OutputFormat, RunArgs};
use crate::exec::backend::{Cancel, EventBus};
use crate::exec::context::{RunInfo, Values};
use crate::exec::engine::{self, Engine, Options, Setup};
use crate::exec::events::RunEvent;
use crate::exec::inputs::{self, Sources};
use crate::exec::journal::{
    FORMAT, Journal, JournalStore, LocalStore, Mode, RunState, StepRecord, StepState, VERSION,
};
use crate::exec::lock::{LockInfo, RunLock};
use crate::exec::prompt::{InterruptedDecision, NoPrompter, Prompter, TtyPrompter};
use crate::plan::{self, Plan, PlannedStep};
use crate::render::progress::{AuditLog, HumanReporter, JsonReporter};
use crate::runbook::Runbook;
use crate::runbook::action::{Action, ActionSpec};
use crate::runbook::catalog::{Catalog, Entry};
use crate::secret::Redactor;
use crate::{Error, Outcome, exit};

/// `run` or `resume`.
pub enum Start {
    New {
        entry: Entry,
        dry_run: bool,
        from: Option<String>,
        only: Vec<String>,
        new: bool,
    },
    Resume {
        run_id: Option<String>,
        resolve: Vec<String>,
        allow_changed: bool,
        /// The runbook the operator named (`--runbook`, or the one of `drctl run`).
        runbook: Option<Entry>,
        /// `--allow-kubeconfig-exec`.
        allow_kube_exec: bool,
    },
}

/// The state directory: the flag/env, else `$XDG_STATE_HOME/drctl`, else
/// `~/.local/state/drctl`.
pub fn state_dir(flag: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(p) = flag {
        return Ok(p.to_owned());
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("drctl"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/state/drctl")),
        None => Err(Error::Usage(
            "no HOME to put the state directory in; give --state-dir or DRCTL_STATE_DIR".into(),
        )),
    }
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_owned()
    }
}

/// The login name: `USER`, `LOGNAME`, else the passwd entry of the real uid.
fn user_name() -> String {
    if let Some(u) = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|u| !u.is_empty())
    {
        return u;
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the name
    // out before any other passwd call.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    "unknown".to_owned()
}

/// `user@host`, recorded in journals, locks and reports.
pub fn operator() -> String {
    format!("{}@{}", user_name(), hostname())
}

fn new_run_id(name: &str) -> String {
    let suffix: u16 = rand::random();
    format!("{name}-{}-{suffix:04x}", Utc::now().format("%Y%m%d-%H%M%S"))
}

fn step_record(p: &PlannedStep<'_>) -> StepRecord {
    let s = p.step;
    StepRecord {
        id: s.id.value.clone(),
        title: s.title.clone(),
        action: s.action.name().to_owned(),
        mutates: s.action.mutates(),
        fingerprint: p.fingerprint.clone(),
        state: StepState::Pending,
        attempts: 0,
        started_at: None,
        finished_at: None,
        rendered: Vec::new(),
        message: None,
        output_excerpt: Vec::new(),
        decided_by: None,
        rehearsed: false,
    }
}

type Pairs = BTreeMap<String, String>;

/// The runs whose journals parse; the others become notices (never silently ignored).
fn readable_runs(store: &LocalStore, notices: &mut Vec<String>) -> Result<Vec<Journal>, Error> {
    let mut out = Vec::new();
    for j in store.list()? {
        match j {
            Ok(j) => out.push(j),
            Err(e) => notices.push(format!("skipping an unreadable run: {e}")),
        }
    }
    Ok(out)
}

/// Split `--set` into runbook inputs and answers to decision steps.
fn split_sets(rb: &Runbook, sets: Pairs) -> Result<(Pairs, Pairs), Error> {
    let decision_steps: BTreeSet<&str> = rb
        .main_steps()
        .filter(|s| matches!(s.action, Action::Choose(_) | Action::Input(_)))
        .map(|s| s.id.as_str())
        .collect();
    let mut inputs = BTreeMap::new();
    let mut answers = BTreeMap::new();
    for (k, v) in sets {
        if rb.inputs.contains_key(&k) {
            inputs.insert(k, v);
        } else if decision_steps.contains(k.as_str()) {
            answers.insert(k, v);
        } else {
            return Err(Error::Usage(format!(
                "`--set {k}=...`: runbook `{}` has no input `{k}` and no decision step `{k}`",
                rb.name
            )));
        }
    }
    Ok((inputs, answers))
}

fn parse_pairs(list: &[String], what: &str) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for s in list {
        let Some((k, v)) = s.split_once('=') else {
            return Err(Error::Usage(format!("`{what} {s}` is not KEY=VALUE")));
        };
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(out)
}

/// `DRCTL_INPUT_*`, `DRCTL_ANSWER_*` and `DRCTL_OUTPUT_*` variables naming nothing in this
/// runbook. A misspelt name would otherwise fall back to a default without a word, on the
/// one day it matters; other runbooks' variables may be set too, so this warns, not fails.
fn stray_env(rb: &Runbook, names: impl Iterator<Item = String>) -> Vec<String> {
    let upper = |s: &str| s.to_uppercase().replace('-', "_");
    let inputs: BTreeSet<String> = rb.inputs.keys().map(|k| inputs::env_name(k)).collect();
    let steps = || rb.main_steps().chain(rb.cleanup.iter());
    let answers: BTreeSet<String> = steps()
        .filter(|s| matches!(s.action, Action::Choose(_) | Action::Input(_)))
        .map(|s| format!("DRCTL_ANSWER_{}", upper(s.id.as_str())))
        .collect();
    let outputs: BTreeSet<String> = steps()
        .flat_map(|s| s.outputs.iter())
        .map(|o| format!("DRCTL_OUTPUT_{}", o.name.as_str().to_uppercase()))
        .collect();
    let mut out = Vec::new();
    for name in names {
        let (known, what) = if name.starts_with("DRCTL_INPUT_") {
            (&inputs, "input")
        } else if name.starts_with("DRCTL_ANSWER_") {
            (&answers, "decision step")
        } else if name.starts_with("DRCTL_OUTPUT_") {
            (&outputs, "output")
        } else {
            continue;
        };
        if !known.contains(&name) {
            let expected: Vec<&str> = known.iter().map(String::as_str).collect();
            out.push(format!(
                "{name} is set, but runbook `{}` has no {what} of that name: it is ignored{}",
                rb.name,
                if expected.is_empty() {
                    String::new()
                } else {
                    format!(" (did you mean one of {}?)", expected.join(", "))
                }
            ));
        }
    }
    out
}

/// With --yes, every decision that will be reached must have an answer before step 1
/// (`--set`, `DRCTL_ANSWER_<STEP>`, or the journal). A step behind a `when` may be on a
/// branch the run does not take: it is asked for only if reached (then the run waits for
/// the operator, resumable).
fn unanswered(
    rb: &Runbook,
    answers: &BTreeMap<String, String>,
    recorded: &BTreeMap<String, String>,
) -> Vec<String> {
    rb.main_steps()
        .filter(|s| s.when.is_none())
        .filter(|s| {
            let var = format!(
                "DRCTL_ANSWER_{}",
                s.id.as_str().to_uppercase().replace('-', "_")
            );
            std::env::var_os(var).is_none()
        })
        .filter_map(|s| {
            let has_default = match &s.action {
                Action::Choose(c) => c.default.is_some(),
                Action::Input(i) => i.default.is_some(),
                _ => return None,
            };
            let id = s.id.as_str();
            (!has_default && !answers.contains_key(id) && !recorded.contains_key(id)).then(|| {
                format!(
                    "`{id}` (--set {id}=VALUE, or DRCTL_ANSWER_{} for a secret answer)",
                    id.to_uppercase().replace('-', "_")
                )
            })
        })
        .collect()
}

/// How this invocation runs: where state lives, who answers, what was given.
struct Settings {
    state: PathBuf,
    store: LocalStore,
    yes: bool,
    interactive: bool,
    prompter: Box<dyn Prompter>,
    op: String,
    sets: Pairs,
    set_files: BTreeMap<String, PathBuf>,
}

fn settings(start: &Start, args: &RunArgs) -> Result<Settings, Error> {
    let state = state_dir(args.state_dir.as_deref())?;
    let mut store = LocalStore::new(state.clone());
    store.disabled = args.no_journal;
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    // A rehearsal changes nothing, so without a terminal it runs unattended on its own.
    let rehearsal = matches!(start, Start::New { dry_run: true, .. });
    let yes = args.yes || (rehearsal && !tty);
    let interactive = !yes && tty;
    let prompter: Box<dyn Prompter> = if interactive {
        Box::new(TtyPrompter::default())
    } else {
        Box::new(NoPrompter)
    };
    if !yes && !interactive {
        return Err(Error::Usage(
            "not a terminal, so nobody can answer prompts: pass --yes for an unattended run (with --set / DRCTL_INPUT_* for inputs)".into(),
        ));
    }
    let op = operator();
    let sets = parse_pairs(&args.set, "--set")?;
    let set_files: BTreeMap<String, PathBuf> = parse_pairs(&args.set_file, "--set-file")?
        .into_iter()
        .map(|(k, v)| (k, PathBuf::from(v)))
        .collect();
    Ok(Settings {
        state,
        store,
        yes,
        interactive,
        prompter,
        op,
        sets,
        set_files,
    })
}

/// What to run: a new run of a runbook, or the journal of one to continue.
struct Resolved {
    entry: Entry,
    journal: Option<Journal>,
    resumed: bool,
    dry_run: bool,
    from: Option<String>,
    only: Vec<String>,
    resolve: BTreeMap<String, InterruptedDecision>,
    allow_changed: bool,
    allow_kube_exec: bool,
}

enum Begin {
    Run(Box<Resolved>),
    /// The operator chose to resume this unfinished run (of the runbook they named) instead.
    ResumeInstead(String, Box<Entry>),
    /// Nothing to do (the run already finished).
    Done(Outcome),
}

fn resolve(
    catalog: &Catalog,
    start: Start,
    s: &mut Settings,
    early_notices: &mut Vec<String>,
) -> Result<Begin, Error> {
    // Resolve what to run: a new run, or an existing journal.
    let resolved = match start {
        Start::New {
            entry,
            dry_run,
            from,
            only,
            new,
        } => {
            if !dry_run
                && let Some(holder) =
                    crate::exec::lock::live_holder(&s.state, &entry.name, &hostname())
            {
                return Err(Error::Run {
                    code: exit::LOCKED,
                    message: crate::exec::lock::LockError::Held {
                        runbook: entry.name.clone(),
                        holder,
                    }
                    .to_string(),
                });
            }
            if !dry_run && !new {
                let unfinished = readable_runs(&s.store, early_notices)?
                    .into_iter()
                    .find(|j| {
                        j.runbook == entry.name && j.mode == Mode::Run && !j.state.is_finished()
                    });
                if let Some(j) = unfinished {
                    let ask = format!(
                        "An unfinished run of `{}` exists ({}, {}, started {} by {}). Resume it?",
                        entry.name,
                        j.run_id,
                        j.state.as_str(),
                        j.started_at.format("%Y-%m-%d %H:%M UTC"),
                        j.operator
                    );
                    if s.interactive {
                        let yes = s
                            .prompter
                            .yes_no(&ask, true)
                            .map_err(|e| Error::Usage(e.to_string()))?;
                        if yes {
                            return Ok(Begin::ResumeInstead(j.run_id, Box::new(entry)));
                        }
                    } else {
                        return Err(Error::Run {
                            code: exit::NEEDS_OPERATOR,
                            message: format!(
                                "run {} of `{}` is unfinished ({}); continue it with `drctl resume {}`, or start over with `--new`",
                                j.run_id,
                                entry.name,
                                j.state.as_str(),
                                j.run_id
                            ),
                        });
                    }
                }
            }
            Resolved {
                entry,
                journal: None,
                resumed: false,
                dry_run,
                from,
                only,
                resolve: BTreeMap::new(),
                allow_changed: false,
                allow_kube_exec: false,
            }
        }
        Start::Resume {
            run_id,
            resolve,
            allow_changed,
            runbook,
            allow_kube_exec,
        } => {
            let run_id = match run_id {
                Some(id) => id,
                None => readable_runs(&s.store, early_notices)?
                    .into_iter()
                    .find(|j| j.mode == Mode::Run && !j.state.is_finished())
                    .map(|j| j.run_id)
                    .ok_or_else(|| Error::Run {
                        code: exit::NOT_FOUND,
                        message: "no unfinished run to resume; `drctl runs` lists the runs".into(),
                    })?,
            };
            // The run's files are checked (ours, not writable by others) before a word of
            // them is trusted.
            early_notices.extend(s.store.secure_run(&run_id)?);
            let j = s.store.load(&run_id)?;
            if j.state.is_finished() {
                // Nothing to do is not an error: said on stderr, exit 0.
                return Ok(Begin::Done(Outcome {
                    stdout: String::new(),
                    stderr: format!(
                        "run {} already finished; `drctl report {}` shows it\n",
                        j.run_id, j.run_id
                    ),
                    code: exit::OK,
                }));
            }
            let entry = super::resume::runbook_for(
                catalog,
                &j,
                runbook,
                if s.interactive {
                    Some(s.prompter.as_mut())
                } else {
                    None
                },
                early_notices,
            )?;
            let mut decisions = BTreeMap::new();
            for (k, v) in parse_pairs(&resolve, "--resolve")? {
                let d = match v.as_str() {
                    "rerun" => InterruptedDecision::Rerun,
                    "done" => InterruptedDecision::MarkDone,
                    "skip" => InterruptedDecision::Skip,
                    other => {
                        return Err(Error::Usage(format!(
                            "--resolve {k}={other}: say rerun, done or skip"
                        )));
                    }
                };
                decisions.insert(k, d);
            }
            let dry = j.mode == Mode::Rehearsal;
            Resolved {
                entry,
                journal: Some(j),
                resumed: true,
                dry_run: dry,
                from: None,
                only: Vec::new(),
                resolve: decisions,
                allow_changed,
                allow_kube_exec,
            }
        }
    };
    Ok(Begin::Run(Box::new(resolved)))
}

pub fn run(catalog: &Catalog, start: Start, args: &RunArgs, color: bool) -> Result<Outcome, Error> {
    let mut s = settings(&start, args)?;
    let mut early_notices: Vec<String> = Vec::new();
    let Resolved {
        entry,
        mut journal,
        resumed,
        dry_run,
        from,
        only,
        resolve,
        allow_changed,
        allow_kube_exec,
    } = match self::resolve(catalog, start, &mut s, &mut early_notices)? {
        Begin::Run(r) => *r,
        Begin::Done(out) => return Ok(out),
        Begin::ResumeInstead(run_id, entry) => {
            let start = Start::Resume {
                run_id: Some(run_id),
                resolve: Vec::new(),
                allow_changed: false,
                runbook: Some(*entry),
                allow_kube_exec: false,
            };
            return run(catalog, start, args, color);
        }
    };
    let Settings {
        state,
        store,
        yes,
        interactive,
        mut prompter,
        op,
        sets,
        set_files,
    } = s;
    let (rb, warnings) = super::load_valid(&entry, color)?;
    if let Some(j) = &journal {
        super::resume::same_runbook(j, &entry, &rb.name.value)?;
    }
    let (set_inputs, answers) = split_sets(&rb, sets)?;
    let plan = Plan::compile(&rb, &entry.text, &set_inputs);
    let fingerprint = plan.fingerprint.clone();

    if let Some(j) = &journal
        && j.fingerprint != fingerprint
    {
        let before: Vec<(String, String)> = j
            .steps
            .iter()
            .map(|s| (s.id.clone(), s.fingerprint.clone()))
            .collect();
        let changes = plan::describe_changes(&before, &plan.fingerprints());
        if !allow_changed {
            return Err(Error::Run {
                code: exit::CHANGED,
                message: format!(
                    "runbook `{}` changed since run {} began: {}; check the changes, then resume with --allow-changed",
                    rb.name,
                    j.run_id,
                    changes.join(", ")
                ),
            });
        }
    }

    early_notices.extend(stray_env(
        &rb,
        std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()),
    ));
    let redactor = Redactor::new();
    let recorded = journal
        .as_ref()
        .map(|j| j.inputs.clone())
        .unwrap_or_default();
    // Secrets are asked when needed: never in a rehearsal that only shows the steps
    // using them; in an interactive run, when the first step using them is reached.
    let (rehearsal_uses, before_step_one) = (
        crate::exec::needs::used_by_rehearsal(&rb),
        crate::exec::needs::used_before_step_one(&rb),
    );
    let defer = rb
        .inputs
        .iter()
        .filter(|(n, spec)| {
            spec.is_secret()
                && if dry_run {
                    !rehearsal_uses.contains(*n)
                } else {
                    interactive && !spec.upfront && !before_step_one.contains(*n)
                }
        })
        .map(|(n, _)| n.clone())
        .collect();
    let sources = Sources {
        sets: set_inputs,
        set_files,
        recorded,
        env: None,
        defer,
    };
    let collected = inputs::collect(
        &rb,
        &sources,
        if interactive {
            Some(prompter.as_mut())
        } else {
            None
        },
        &redactor,
    )
    .map_err(|e| Error::Run {
        code: if matches!(e, inputs::InputError::Aborted) {
            exit::ABORTED
        } else {
            exit::USAGE
        },
        message: e.to_string(),
    })?;
    if yes {
        let decided = journal
            .as_ref()
            .map(|j| j.decisions.clone())
            .unwrap_or_default();
        let missing = unanswered(&rb, &answers, &decided);
        if !missing.is_empty() {
            return Err(Error::Usage(format!(
                "--yes asks nothing, and these decisions have no answer: {}",
                missing.join(", ")
            )));
        }
    }
    for id in args.confirm.iter().chain(resolve.keys()) {
        if !rb
            .main_steps()
            .chain(rb.cleanup.iter())
            .any(|s| &s.id.value == id)
        {
            return Err(Error::Usage(format!(
                "no step `{id}` in runbook `{}`",
                rb.name
            )));
        }
    }

    let run_id = journal
        .as_ref()
        .map(|j| j.run_id.clone())
        .unwrap_or_else(|| new_run_id(&rb.name.value));
    // Held until the run ends (dropped with this function).
    let lock = if dry_run {
        None
    } else {
        Some(
            RunLock::acquire(
                &state,
                &rb.name.value,
                LockInfo {
                    run_id: run_id.clone(),
                    operator: op.clone(),
                    host: hostname(),
                    pid: std::process::id(),
                    since: Utc::now(),
                },
                args.take_over_lock,
            )
            .map_err(|e| Error::Run {
                code: exit::LOCKED,
                message: e.to_string(),
            })?,
        )
    };
    if let Some(h) = lock.as_ref().and_then(|l| l.taken_over.as_ref()) {
        early_notices.push(format!(
            "took over the lock of run {} left by {} (pid {}, gone) since {}",
            h.run_id,
            h.operator,
            h.pid,
            h.since.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    early_notices.extend(store.ensure_run_dir(&run_id)?);

    let mut j = journal_for(
        journal.take(),
        &plan,
        &entry,
        &run_id,
        dry_run,
        &op,
        &collected,
    );
    // Rehearsals start fresh problem lists on each resume.
    if resumed {
        j.problems.clear();
        j.caveats.clear();
    }

    let mut values = Values::new(
        RunInfo {
            id: run_id.clone(),
            runbook: rb.name.value.clone(),
            operator: op.clone(),
            dry_run,
            started_at: j.started_at.to_rfc3339(),
            failed_step: None,
        },
        redactor.clone(),
    );
    values.inputs = collected.values;
    let mut deferred = collected.deferred.clone();
    if dry_run && !deferred.is_empty() {
        // Only steps a rehearsal shows without performing use them.
        for n in &deferred {
            values.inputs.insert(
                n.clone(),
                minijinja::Value::from(format!("<{n}: not asked in a rehearsal>")),
            );
            values.secret_names.insert(n.clone());
        }
        early_notices.push(format!(
            "rehearsal: secret input(s) {} not asked for: only steps that change things use them, and a rehearsal does not perform those",
            deferred.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ));
        deferred.clear();
    }
    // Asked when first needed; until then shown as placeholders.
    values.secret_names.extend(deferred.iter().cloned());
    values.scrub_env = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            k.starts_with("DRCTL_INPUT_")
                || k.starts_with("DRCTL_ANSWER_")
                || k.starts_with(crate::backends::vault::KV_ENV_PREFIX)
                || crate::runbook::action::WITHHELD_CREDENTIALS.contains(&k.as_str())
        })
        .chain(
            rb.inputs
                .values()
                .filter(|s| s.is_secret())
                .filter_map(|s| s.env.clone()),
        )
        .collect();
    values.secret_names.extend(collected.secret_names);
    for (k, v) in &j.outputs {
        values
            .outputs
            .insert(k.clone(), minijinja::Value::from_serialize(v));
    }
    // A `kube.use` of this run wins over the command line, which wins over the defaults;
    // one that runs programs for credentials, only once the operator agreed.
    super::resume::kube_exec_consent(
        &j,
        allow_kube_exec,
        if interactive {
            Some(prompter.as_mut())
        } else {
            None
        },
        &mut early_notices,
    )?;
    values.kube.kubeconfig = j
        .connections
        .get("kubeconfig")
        .cloned()
        .or_else(|| args.kubeconfig.as_ref().map(|p| p.display().to_string()));
    values.kube.context = j
        .connections
        .get("context")
        .cloned()
        .or_else(|| args.context.clone());
    recover_secret_outputs(
        &mut values,
        &j,
        &rb,
        if interactive {
            Some(prompter.as_mut())
        } else {
            None
        },
        &redactor,
        &mut early_notices,
    );

    let notices: Vec<String> = early_notices
        .into_iter()
        .chain(collected.notices.iter().cloned())
        .collect();
    let bus = event_bus(args, &store, &run_id, &op, &redactor, &warnings, &notices)?;

    let opts = Options {
        dry_run,
        yes,
        from,
        only,
        confirmed: args.confirm.iter().cloned().collect(),
        resolve,
        answers,
        deferred,
    };
    let backends = crate::backends::registry();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Run {
            code: exit::FAILED,
            message: format!("cannot start the async runtime: {e}"),
        })?;
    let report_hint = format!("drctl report {run_id}");
    let final_journal = runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(0u32);
        // First Ctrl-C: stop the current step safely and journal it; second: exit now
        // (the journal then shows the step as interrupted, as after a crash).
        tokio::spawn(async move {
            let mut n = 0u32;
            while tokio::signal::ctrl_c().await.is_ok() {
                n += 1;
                let _ = tx.send(n);
                if n >= 2 {
                    std::process::exit(exit::ABORTED);
                }
            }
        });
        let engine = Engine::new(Setup {
            plan: &plan,
            journal: j,
            store: &store,
            values,
            prompter,
            interactive,
            bus,
            backends: &backends,
            opts,
            cancel: Cancel::new(rx),
            resumed,
            report_hint,
        });
        engine.run().await
    })?;
    let code = exit_code(&final_journal);
    Ok(Outcome {
        stdout: String::new(),
        stderr: String::new(),
        code,
    })
}

/// Whether a step not yet done (or a cleanup step) uses the output `name` in a template.
/// The journal this run writes: the resumed one (steps brought in line with an allowed
/// change of the runbook), or a new one.
fn journal_for(
    journal: Option<Journal>,
    plan: &Plan<'_>,
    entry: &Entry,
    run_id: &str,
    dry_run: bool,
    op: &str,
    collected: &inputs::Collected,
) -> Journal {
    let rb = plan.runbook;
    let fingerprint = plan.fingerprint.clone();
    match journal {
        Some(mut j) => {
            j.fingerprint = fingerprint;
            j.runbook_source = super::resume::source_of(entry);
            // Steps added by an allowed change start pending; removed ones are dropped.
            let old: BTreeMap<String, StepRecord> =
                j.steps.drain(..).map(|s| (s.id.clone(), s)).collect();
            j.steps = plan
                .steps
                .iter()
                .map(|p| {
                    old.get(&p.step.id.value)
                        .cloned()
                        .unwrap_or_else(|| step_record(p))
                })
                .collect();
            j
        }
        None => Journal {
            format: FORMAT.into(),
            version: VERSION,
            seq: 0,
            run_id: run_id.to_owned(),
            runbook: rb.name.value.clone(),
            runbook_title: rb.title.clone(),
            runbook_source: super::resume::source_of(entry),
            fingerprint,
            mode: engine::mode(dry_run),
            state: RunState::Running,
            operator: op.to_owned(),
            started_at: Utc::now(),
            updated_at: Utc::now(),
            inputs: collected.recorded.clone(),
            // Asked already or when first needed: all asked again on resume.
            secret_inputs: collected
                .secret_names
                .union(&collected.deferred)
                .cloned()
                .collect(),
            outputs: BTreeMap::new(),
            secret_outputs: Vec::new(),
            steps: plan.steps.iter().map(step_record).collect(),
            cleanup: plan.cleanup.iter().map(step_record).collect(),
            problems: Vec::new(),
            caveats: Vec::new(),
            decisions: BTreeMap::new(),
            connections: BTreeMap::new(),
            touched: Default::default(),
        },
    }
}

/// Where the run's events go: the terminal (or JSON lines), and the audit log.
fn event_bus(
    args: &RunArgs,
    store: &LocalStore,
    run_id: &str,
    op: &str,
    redactor: &Redactor,
    warnings: &str,
    notices: &[String],
) -> Result<EventBus, Error> {
    let bus = EventBus::new(redactor.clone());
    let stdout_tty = std::io::stdout().is_terminal();
    match args.output {
        OutputFormat::Human => bus.add(Box::new(HumanReporter::new(
            Box::new(std::io::stdout()),
            stdout_tty,
        ))),
        OutputFormat::Json => bus.add(Box::new(JsonReporter::new(Box::new(std::io::stdout())))),
    }
    if !args.no_journal {
        let audit = store.audit_path(run_id);
        let log = AuditLog::open(&audit, op).map_err(|source| Error::Write {
            path: audit.display().to_string(),
            source,
        })?;
        bus.add(Box::new(log));
    }
    if !warnings.is_empty() {
        bus.emit(RunEvent::Notice {
            message: warnings.trim_end().to_owned(),
        });
    }
    for n in notices {
        bus.emit(RunEvent::Notice { message: n.clone() });
    }
    Ok(bus)
}

/// Secret outputs of a resumed run are gone with the earlier process (secrets are never
/// written down), but the operator may hold them: shown once, or stored (a Secret, the
/// password manager). One that a step still to run needs comes from
/// DRCTL_OUTPUT_<NAME> or, masked, from the operator; otherwise it is marked lost and that
/// step says which step to re-run.
fn recover_secret_outputs(
    values: &mut Values,
    j: &Journal,
    rb: &Runbook,
    mut prompter: Option<&mut dyn Prompter>,
    redactor: &Redactor,
    early_notices: &mut Vec<String>,
) {
    for name in &j.secret_outputs {
        let step = rb
            .main_steps()
            .find(|s| s.outputs.iter().any(|o| &o.name.value == name))
            .map(|s| s.id.value.clone())
            .unwrap_or_default();
        if !still_needed(rb, j, name) {
            values.lost_secrets.insert(name.clone(), step);
            continue;
        }
        let var = format!("DRCTL_OUTPUT_{}", name.to_uppercase());
        let given = match std::env::var(&var) {
            Ok(v) if !v.is_empty() => {
                values.scrub_env.push(var.clone());
                Some(v)
            }
            _ => prompter.as_mut().and_then(|p| {
                p.input(
                    &format!(
                        "The secret output `{name}` of step `{step}` ended with the earlier drctl process (secrets are never written down). Enter it to go on (empty: re-run `{step}` instead)"
                    ),
                    true,
                    None,
                )
                .ok()
                .filter(|v| !v.is_empty())
            }),
        };
        match given {
            Some(v) => {
                redactor.add(&v);
                values
                    .outputs
                    .insert(name.clone(), minijinja::Value::from(v));
                early_notices.push(format!(
                    "the secret output `{name}` of step `{step}` was given again by the operator"
                ));
            }
            None => {
                values.lost_secrets.insert(name.clone(), step);
            }
        }
    }
}

/// The exit code of a run that ended in this journal.
fn exit_code(j: &Journal) -> i32 {
    match j.state {
        RunState::Succeeded if j.mode == Mode::Rehearsal && !j.problems.is_empty() => exit::FAILED,
        RunState::Succeeded => exit::OK,
        RunState::Failed => exit::FAILED,
        RunState::Paused => exit::NEEDS_OPERATOR,
        RunState::Aborted => exit::ABORTED,
        RunState::Running => exit::FAILED,
    }
}

fn still_needed(rb: &Runbook, j: &Journal, name: &str) -> bool {
    let open = |id: &str| {
        j.step(id)
            .is_none_or(|r| !matches!(r.state, StepState::Succeeded | StepState::Skipped))
    };
    rb.main_steps()
        .filter(|s| open(&s.id.value))
        .chain(rb.cleanup.iter())
        .any(|s| engine::uses_output(s, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn stray_drctl_variables_are_named_and_known_ones_are_not() {
        let src = "apiVersion: drctl/v1\nkind: Runbook\nname: t\ntitle: T\nsummary: S\ninputs:\n  host: { description: h }\nsteps:\n  - id: pick-source\n    title: Pick\n    choose:\n      prompt: From\n      options: [{value: s3}, {value: nas}]\n    outputs:\n      - name: source\n        from: result.value\n";
        let rb = crate::runbook::load::parse("t.yaml", &Arc::from(src)).expect("parses");
        let names = [
            "DRCTL_INPUT_HOST",
            "DRCTL_ANSWER_PICK_SOURCE",
            "DRCTL_OUTPUT_SOURCE",
            "DRCTL_ANSWER_PICK_SORCE",
            "DRCTL_INPUT_HSOT",
            "PATH",
            "DRCTL_STATE_DIR",
        ];
        let notes = stray_env(&rb, names.iter().map(|s| (*s).to_owned()));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with(
                "DRCTL_ANSWER_PICK_SORCE is set, but runbook `t` has no decision step"
            ) && notes[0].contains("DRCTL_ANSWER_PICK_SOURCE"),
            "{}",
            notes[0]
        );
        assert!(
            notes[1].starts_with("DRCTL_INPUT_HSOT") && notes[1].contains("DRCTL_INPUT_HOST"),
            "{}",
            notes[1]
        );
    }
}
