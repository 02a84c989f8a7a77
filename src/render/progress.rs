//! Reporters: how a run looks on a terminal (spinners with elapsed time and timeout),
//! as plain lines (not a terminal), as JSON lines (`--output json`), and the audit log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::exec::events::{Reporter, RunEvent, StepOutcome};
use crate::exec::journal::{Mode, RunState};

fn secs(ms: u64) -> String {
    let d = Duration::from_millis(ms);
    if d.as_secs() >= 60 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Human output: spinners on a terminal, plain lines otherwise.
pub struct HumanReporter {
    out: Box<dyn Write + Send>,
    spinner: Option<ProgressBar>,
    tty: bool,
    mode: Mode,
    /// The step that just failed and its error: a rehearsal's problem that repeats it
    /// is not printed again.
    last_failure: Option<(String, String)>,
}

impl HumanReporter {
    pub fn new(out: Box<dyn Write + Send>, tty: bool) -> Self {
        HumanReporter {
            out,
            spinner: None,
            tty,
            mode: Mode::Run,
            last_failure: None,
        }
    }

    fn line(&mut self, s: &str) {
        match &self.spinner {
            Some(pb) => pb.println(s),
            None => {
                let _ = writeln!(self.out, "{s}");
                let _ = self.out.flush();
            }
        }
    }

    fn stop_spinner(&mut self) {
        if let Some(pb) = self.spinner.take() {
            pb.finish_and_clear();
        }
    }
}

impl Reporter for HumanReporter {
    fn event(&mut self, e: &RunEvent) {
        match e {
            RunEvent::RunStarted {
                run_id,
                title,
                mode,
                steps,
                resumed,
                journal,
                ..
            } => {
                self.mode = *mode;
                let what = match (mode, resumed) {
                    (Mode::Rehearsal, _) => "Rehearsal (dry-run: reads for real, no change)",
                    (Mode::Run, true) => "Resuming",
                    (Mode::Run, false) => "Running",
                };
                self.line(&format!("{what}: {title}"));
                self.line(&format!("run {run_id} · {steps} steps · journal {journal}"));
            }
            RunEvent::Notice { message } => {
                // Notes (warnings) go to stderr, apart from the run's own output.
                let msg = format!("note: {message}");
                match &self.spinner {
                    Some(pb) => pb.suspend(|| eprintln!("{msg}")),
                    None => eprintln!("{msg}"),
                }
            }
            RunEvent::StepStarted {
                index,
                total,
                id,
                title,
                action,
                mutates,
                rendered,
                description,
                cleanup,
            } => {
                let class = if *mutates {
                    "changes things"
                } else {
                    "read-only"
                };
                let n = if *cleanup {
                    format!("cleanup {index}/{total}")
                } else {
                    format!("{index}/{total}")
                };
                self.line("");
                self.line(&format!("[{n}] {title}  ({id} · {action} · {class})"));
                // Why: the description's first paragraph; the rest is under "details".
                if let Some(d) = description {
                    let para = d.split("\n\n").next().unwrap_or_default();
                    for l in para.lines() {
                        self.line(&format!("      {}", l.trim()));
                    }
                }
                // Commands get a prompt sign; instructions and questions do not.
                let sign = if matches!(action.as_str(), "manual" | "input" | "choose") {
                    ""
                } else {
                    "$ "
                };
                for l in rendered {
                    for (i, part) in l.lines().enumerate() {
                        let lead = if i == 0 && !part.starts_with('#') {
                            sign
                        } else {
                            "  "
                        };
                        self.line(&format!("      {lead}{part}"));
                    }
                }
            }
            RunEvent::StepRunning {
                timeout_secs,
                interactive,
                ..
            } => {
                if self.tty && !*interactive {
                    let pb = ProgressBar::with_draw_target(
                        None,
                        indicatif::ProgressDrawTarget::stdout(),
                    );
                    let limit = timeout_secs
                        .map(|t| {
                            format!(" of {}", crate::runbook::Dur::human(Duration::from_secs(t)))
                        })
                        .unwrap_or_default();
                    let style = ProgressStyle::with_template(&format!(
                        "      {{spinner}} {{elapsed}}{limit} {{msg}}"
                    ))
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                    pb.set_style(style);
                    pb.enable_steady_tick(Duration::from_millis(120));
                    self.spinner = Some(pb);
                }
            }
            RunEvent::StepOutput { line, .. } => self.line(&format!("      │ {line}")),
            RunEvent::StepProgress { message, .. } => match &self.spinner {
                Some(pb) => pb.set_message(message.clone()),
                None => self.line(&format!("      … {message}")),
            },
            RunEvent::StepLate {
                id,
                warn_after_secs,
                ..
            } => self.line(&format!(
                "      ! `{id}` is late: still running after {}; it goes on until its timeout",
                secs(warn_after_secs * 1000)
            )),
            RunEvent::StepRetry {
                attempt,
                attempts,
                error,
                wait_ms,
                ..
            } => self.line(&format!(
                "      ↻ attempt {attempt}/{attempts} failed: {error}; retrying in {}",
                secs(*wait_ms)
            )),
            RunEvent::StepFinished {
                id,
                title,
                started,
                outcome,
                duration_ms,
            } => {
                self.stop_spinner();
                if !started {
                    self.line(&format!("[-] {title}  ({id})"));
                }
                self.last_failure = match outcome {
                    StepOutcome::Failed { error, .. } => Some((id.clone(), error.clone())),
                    _ => None,
                };
                let took = secs(*duration_ms);
                let s = match outcome {
                    StepOutcome::Succeeded => format!("      ✓ done in {took}"),
                    StepOutcome::AlreadyDone => {
                        "      ✓ already done (its check passed)".to_owned()
                    }
                    StepOutcome::Skipped { reason } => format!("      ↷ skipped: {reason}"),
                    StepOutcome::Failed { error, fallback } => {
                        let mut s = format!("      ✗ failed after {took}: {error}");
                        if let Some(f) = fallback {
                            s.push_str("\n      what to do by hand:");
                            for l in f.trim_end().lines() {
                                s.push_str(&format!("\n        {l}"));
                            }
                        }
                        s
                    }
                    StepOutcome::WouldRun => {
                        "      ~ would run (rehearsal: not performed)".to_owned()
                    }
                    StepOutcome::Blocked { reason } => format!("      ⊘ not tried: {reason}"),
                    StepOutcome::NeedsOperator { reason } => {
                        format!("      ⏸ waiting for the operator: {reason}")
                    }
                };
                self.line(&s);
            }
            RunEvent::Problem { step, message } => {
                if let (Some(s), Some((failed, error))) = (step, &self.last_failure)
                    && s == failed
                    && message == error
                {
                    // Just printed as the step's failure; the report lists it.
                    return;
                }
                let at = step
                    .as_deref()
                    .map(|s| format!("{s}: "))
                    .unwrap_or_default();
                self.line(&format!("      problem: {at}{message}"));
            }
            RunEvent::CleanupStarted { reason } => {
                self.line("");
                self.line(&format!("Cleanup ({reason}):"));
            }
            RunEvent::RunFinished {
                run_id,
                state,
                mode,
                succeeded,
                skipped,
                failed,
                done_before_resume,
                would_run,
                problems,
                caveats,
                skipped_steps,
                report,
            } => {
                self.stop_spinner();
                self.line("");
                if *mode == Mode::Rehearsal {
                    self.line(&format!(
                        "Rehearsal report: {would_run} step(s) would change things, {succeeded} step(s) ran and passed (reads, checks, decisions), {} problem(s)",
                        problems.len()
                    ));
                    for p in problems {
                        self.line(&format!("  - {p}"));
                    }
                    if problems.is_empty() && caveats.is_empty() {
                        self.line("  no problems found: the real run has what it needs");
                    } else if problems.is_empty() {
                        self.line("  no problems found before the first change the rehearsal did not make; what follows it could not be checked:");
                    }
                    if !caveats.is_empty() {
                        self.line(&format!(
                            "  {} finding(s) after changes the rehearsal did not make (check them, they may be only that):",
                            caveats.len()
                        ));
                        for c in caveats {
                            self.line(&format!("  ~ {c}"));
                        }
                    }
                } else {
                    let verdict = match state {
                        RunState::Succeeded => "finished",
                        RunState::Failed => "FAILED",
                        RunState::Aborted => "aborted",
                        RunState::Paused => "paused, waiting for the operator",
                        RunState::Running => "stopped",
                    };
                    let resumed = if *done_before_resume > 0 {
                        format!(
                            " (resumed: {done_before_resume} of the done and skipped steps were before it)"
                        )
                    } else {
                        String::new()
                    };
                    self.line(&format!(
                        "Run {run_id} {verdict}: {succeeded} done, {skipped} skipped, {failed} failed{resumed}."
                    ));
                    for s in skipped_steps {
                        self.line(&format!("  skipped {s}"));
                    }
                    if !matches!(state, RunState::Succeeded) {
                        self.line(&format!("Continue with: drctl resume {run_id}"));
                    }
                }
                self.line(&format!("Report: {report}"));
            }
        }
    }
}

/// `--output json`: one event per line.
pub struct JsonReporter {
    out: Box<dyn Write + Send>,
}

impl JsonReporter {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonReporter { out }
    }
}

impl Reporter for JsonReporter {
    fn event(&mut self, e: &RunEvent) {
        if let Ok(s) = serde_json::to_string(e) {
            let _ = writeln!(self.out, "{s}");
            let _ = self.out.flush();
        }
    }
}

/// The audit log of a run: every event as a JSON line with time and operator, appended
/// to `runs/RUN_ID/audit.jsonl`.
pub struct AuditLog {
    file: File,
    operator: String,
}

impl AuditLog {
    pub fn open(path: &Path, operator: &str) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        // Never through a symbolic link planted in its place.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(path)?;
        Ok(AuditLog {
            file,
            operator: operator.to_owned(),
        })
    }
}

impl Reporter for AuditLog {
    fn event(&mut self, e: &RunEvent) {
        let v = serde_json::json!({
            "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "operator": self.operator,
            "e": e,
        });
        if let Ok(s) = serde_json::to_string(&v) {
            let _ = writeln!(self.file, "{s}");
        }
    }
}

#[cfg(test)]
mod audit_tests {
    /// Attack (issue 19, item 4): the audit log planted as a link to a victim file.
    #[test]
    fn the_audit_log_is_never_written_through_a_link() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "precious").expect("victim");
        let audit = tmp.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&victim, &audit).expect("plant");
        assert!(super::AuditLog::open(&audit, "op").is_err());
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "precious"
        );
    }
}
