//! The built-in runbooks end to end on the lab, driven through the drctl binary as an
//! operator drives them: a rehearsal on a healthy lab (no problems) and on a broken one
//! (the problem named), a full run with `--yes` checked against the lab's state, and a
//! SIGKILL at a step chosen at random followed by `resume` to the same end state.
//!
//! [`Drive`] holds one runbook's state directory, environment and `--set` values;
//! [`Outcome`] is what one drctl process reported (its JSON events). The submodules hold
//! the tests, one per area of the lab.

mod cluster_rebuild;
mod etcd;
mod kube;
mod kube_nodes;
mod vault_kms;
mod vault_shamir;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::Value;

use super::engine::{Background, code, drctl_cmd, events, journal, signal};

/// One runbook driven against one lab.
pub struct Drive {
    pub runbook: String,
    state: tempfile::TempDir,
    envs: Vec<(String, String)>,
    sets: Vec<String>,
    confirms: Vec<String>,
}

/// What one drctl process reported.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub events: Vec<Value>,
    pub stderr: String,
}

/// Where the crash test killed drctl, and how the run ended after resuming.
#[derive(Debug)]
pub struct Crash {
    pub seed: u64,
    pub step: String,
    /// Killed while the step ran (after `step_running`), or right after it finished.
    pub mid_step: bool,
    /// The `--resolve` answers the resume needed (`STEP=ACTION`).
    pub resolved: Vec<String>,
    /// The last resume.
    pub outcome: Outcome,
    /// The run's journal at the end.
    pub journal: Value,
}

impl Drive {
    pub fn new(runbook: &str) -> Drive {
        Drive {
            runbook: runbook.to_owned(),
            state: tempfile::Builder::new()
                .prefix(&format!("drctl-e2e-{runbook}-"))
                .tempdir()
                .expect("a temporary state directory"),
            envs: Vec::new(),
            sets: Vec::new(),
            confirms: Vec::new(),
        }
    }

    /// An environment variable for every drctl process of this drive.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Drive {
        self.envs.push((k.into(), v.into()));
        self
    }

    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        kv: impl IntoIterator<Item = (K, V)>,
    ) -> Drive {
        for (k, v) in kv {
            self.envs.push((k.into(), v.into()));
        }
        self
    }

    /// `--set KEY=VALUE` (an input or a decision) for `run` and `resume`.
    pub fn set(mut self, k: &str, v: impl AsRef<str>) -> Drive {
        self.sets.push(format!("{k}={}", v.as_ref()));
        self
    }

    /// `--confirm STEP` (a manual step done by the operator) for `run` and `resume`.
    pub fn confirm(mut self, step: &str) -> Drive {
        self.confirms.push(step.to_owned());
        self
    }

    pub fn state(&self) -> &Path {
        self.state.path()
    }

    /// drctl with this drive's state directory and environment.
    pub fn command(&self) -> Command {
        let mut c = drctl_cmd(self.state.path());
        c.envs(self.envs.iter().map(|(k, v)| (k, v)));
        c
    }

    fn run_args(&self, first: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = first.iter().map(|s| (*s).to_owned()).collect();
        a.extend(["--yes", "--output", "json"].map(str::to_owned));
        for s in &self.sets {
            a.push("--set".to_owned());
            a.push(s.clone());
        }
        for s in &self.confirms {
            a.push("--confirm".to_owned());
            a.push(s.clone());
        }
        a
    }

    fn finish(&self, args: &[String]) -> Outcome {
        let o = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("drctl runs");
        Outcome {
            code: code(&o),
            events: events(&String::from_utf8_lossy(&o.stdout)),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// `drctl run NAME --dry-run --yes --new --output json`.
    pub fn rehearse(&self) -> Outcome {
        self.finish(&self.run_args(&["run", &self.runbook, "--dry-run", "--new"]))
    }

    /// `drctl run NAME --yes --output json`.
    pub fn run(&self) -> Outcome {
        self.finish(&self.run_args(&["run", &self.runbook]))
    }

    /// `drctl resume RUN_ID --yes --output json`, with `--resolve` answers.
    pub fn resume(&self, run_id: &str, resolve: &[String]) -> Outcome {
        // The killed run's lock names a dead process: the operator takes it over, as
        // drctl's message says.
        let mut args = self.run_args(&["resume", run_id]);
        for r in resolve {
            args.push("--resolve".to_owned());
            args.push(r.clone());
        }
        self.finish(&args)
    }

    /// Run with `--yes`, SIGKILL drctl at one of `steps` (chosen from the seed, printed;
    /// `DRCTL_E2E_SEED` replays one), then resume until the run ends. An interrupted
    /// step that drctl will not re-run by itself is answered by `resolve(step)`
    /// (`rerun`, `done` or `skip`), the way an operator who looked at the system would.
    /// Fails unless the run ends successfully with every non-idempotent mutating step
    /// performed once (twice only for the killed step when `resolve` said `rerun`).
    pub fn crash_and_resume(&self, steps: &[String], resolve: &dyn Fn(&str) -> String) -> Crash {
        assert!(!steps.is_empty(), "no step to crash at");
        let seed = seed();
        let step = steps[(seed % steps.len() as u64) as usize].clone();
        let mid_step = (seed / steps.len() as u64).is_multiple_of(2);
        eprintln!(
            "e2e {}: SIGKILL {} `{step}` (seed {seed}; replay with DRCTL_E2E_SEED={seed})",
            self.runbook,
            if mid_step {
                "while running"
            } else {
                "right after"
            }
        );
        let mut cmd = self.command();
        cmd.args(self.run_args(&["run", &self.runbook]));
        let mut bg = Background::spawn(cmd);
        let started = bg.until("run_started", |e| e["event"] == "run_started");
        let run_id = started["run_id"].as_str().expect("a run id").to_owned();
        let target = step.clone();
        bg.until(&format!("step `{step}`"), move |e| {
            let ev = if mid_step {
                "step_running"
            } else {
                "step_finished"
            };
            e["event"] == ev && e["id"] == target.as_str()
        });
        signal(bg.pid(), libc::SIGKILL);
        let (status, _, _) = bg.finish();
        assert_eq!(status, None, "drctl was killed by the signal");

        let mut resolved: Vec<String> = Vec::new();
        let mut outcome = self.resume(&run_id, &resolved);
        for _ in 0..3 {
            if outcome.code != 4 {
                break;
            }
            let waiting: Vec<String> = outcome
                .events
                .iter()
                .filter(|e| {
                    e["event"] == "step_finished"
                        && e["outcome"] == "needs_operator"
                        && e["reason"]
                            .as_str()
                            .is_some_and(|r| r.contains("interrupted"))
                })
                .filter_map(|e| e["id"].as_str().map(str::to_owned))
                .collect();
            if waiting.is_empty() {
                break;
            }
            for id in waiting {
                let answer = resolve(&id);
                resolved.push(format!("{id}={answer}"));
            }
            outcome = self.resume(&run_id, &resolved);
        }
        outcome.assert_ok(&format!(
            "resume after SIGKILL at `{step}` (seed {seed}, resolved {resolved:?})"
        ));
        let journal = journal(self.state.path(), &run_id);
        let once = non_idempotent_mutations(&self.runbook);
        for rec in journal["steps"].as_array().into_iter().flatten() {
            let id = rec["id"].as_str().unwrap_or_default();
            if !once.contains_key(id) {
                continue;
            }
            let attempts = rec["attempts"].as_u64().unwrap_or(0);
            let allowed = if resolved.iter().any(|r| r == &format!("{id}=rerun")) {
                2
            } else {
                1
            };
            assert!(
                attempts <= allowed,
                "the non-idempotent step `{id}` ran {attempts} times after SIGKILL at `{step}` \
                 (seed {seed}, resolved {resolved:?}): {rec:#}"
            );
        }
        Crash {
            seed,
            step,
            mid_step,
            resolved,
            outcome,
            journal,
        }
    }
}

impl Outcome {
    /// The `run_finished` event.
    pub fn finished(&self) -> &Value {
        self.events
            .iter()
            .rev()
            .find(|e| e["event"] == "run_finished")
            .unwrap_or_else(|| panic!("no run_finished event:\n{}", self.dump()))
    }

    pub fn run_id(&self) -> String {
        self.events
            .iter()
            .find_map(|e| e["run_id"].as_str())
            .unwrap_or_else(|| panic!("no run id:\n{}", self.dump()))
            .to_owned()
    }

    /// The problems a rehearsal found (or a run's failure reasons).
    pub fn problems(&self) -> Vec<String> {
        strings(&self.finished()["problems"])
    }

    pub fn caveats(&self) -> Vec<String> {
        strings(&self.finished()["caveats"])
    }

    /// The final outcome of a step (`succeeded`, `would_run`, `skipped`, `failed`...).
    pub fn outcome_of(&self, step: &str) -> Option<String> {
        self.events
            .iter()
            .rev()
            .find(|e| e["event"] == "step_finished" && e["id"] == step)
            .and_then(|e| e["outcome"].as_str().map(str::to_owned))
    }

    /// The ids of the steps that started, in order (the crash test picks among them).
    pub fn started(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["event"] == "step_started" && e["cleanup"] != true)
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Every output line of a step, joined.
    pub fn output_of(&self, step: &str) -> String {
        self.events
            .iter()
            .filter(|e| e["event"] == "step_output" && e["id"] == step)
            .filter_map(|e| e["line"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Exit 0 and a run that succeeded; else fail with what happened.
    pub fn assert_ok(&self, what: &str) {
        assert!(
            self.code == 0 && self.finished()["state"] == "succeeded",
            "{what}: expected a successful run\n{}",
            self.dump()
        );
    }

    /// A rehearsal that found no problem.
    pub fn assert_clean_rehearsal(&self, what: &str) {
        assert!(
            self.code == 0 && self.problems().is_empty(),
            "{what}: expected a rehearsal without problems\n{}",
            self.dump()
        );
    }

    /// A rehearsal (or run) whose problems name `needle`.
    pub fn assert_problem(&self, needle: &str, what: &str) {
        assert!(
            self.code != 0 && self.problems().iter().any(|p| p.contains(needle)),
            "{what}: expected a problem mentioning {needle:?}\n{}",
            self.dump()
        );
    }

    /// A readable account of the run for assertion messages.
    pub fn dump(&self) -> String {
        let mut s = format!("exit {}\n", self.code);
        for e in &self.events {
            match e["event"].as_str().unwrap_or_default() {
                "step_finished" => {
                    s += &format!(
                        "  {} -> {} {}\n",
                        e["id"].as_str().unwrap_or_default(),
                        e["outcome"].as_str().unwrap_or_default(),
                        e["error"]
                            .as_str()
                            .or(e["reason"].as_str())
                            .unwrap_or_default()
                    );
                }
                "step_output" | "step_progress" => {
                    s += &format!(
                        "      | {}\n",
                        e["line"]
                            .as_str()
                            .or(e["message"].as_str())
                            .unwrap_or_default()
                    );
                }
                "problem" | "notice" | "run_finished" => s += &format!("  {e}\n"),
                _ => {}
            }
        }
        let tail: Vec<&str> = self.stderr.lines().rev().take(40).collect();
        s += "--- stderr (end)\n";
        for l in tail.into_iter().rev() {
            s += l;
            s += "\n";
        }
        s
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect()
}

/// The crash test's seed: `DRCTL_E2E_SEED`, or from the clock.
fn seed() -> u64 {
    if let Some(s) = std::env::var("DRCTL_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    u64::from(nanos) ^ u64::from(std::process::id()).rotate_left(17)
}

/// The mutating steps of a built-in runbook that are neither idempotent nor guarded by a
/// `check`: re-running them after a crash would do the change twice.
pub fn non_idempotent_mutations(runbook: &str) -> BTreeMap<String, String> {
    use drctl::runbook::ActionSpec;
    let catalog = drctl::runbook::catalog::Catalog::load(None).expect("the built-in catalog");
    let entry = catalog.get(runbook).expect("a built-in runbook");
    let text: Arc<str> = entry.text.clone();
    let rb = drctl::runbook::load::parse(&entry.label(), &text)
        .unwrap_or_else(|d| panic!("{runbook} parses: {d:?}"));
    rb.main_steps()
        .filter(|s| s.action.mutates() && !s.idempotent && s.check.is_none())
        .map(|s| (s.id.to_string(), s.title.clone()))
        .collect()
}

/// Every file below `dir` (none when it cannot be read).
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// `secret` absent from the outputs of drctl and from every file of its state directory.
pub fn assert_never_written(d: &Drive, outcomes: &[&Outcome], secret: &str) {
    for o in outcomes {
        for e in &o.events {
            assert!(
                !e.to_string().contains(secret),
                "a secret reached drctl's output: {e}"
            );
        }
        assert!(
            !o.stderr.contains(secret),
            "a secret reached drctl's stderr"
        );
    }
    for f in files_under(d.state()) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "a secret was written to {}",
            f.display()
        );
    }
}

/// Polls the lab until `cond` holds, for at most `deadline`.
pub fn eventually_within(
    deadline: std::time::Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) {
    assert!(
        crate::lab::wait_until(deadline, &mut cond),
        "the lab never reached: {what}"
    );
}

/// `kubectl get -o json ARGS` against the simulator; None when the object does not exist.
pub fn kget(sim: &impl crate::lab::Cluster, args: &[&str]) -> Option<Value> {
    let o = sim
        .kubectl()
        .args(["get", "-o", "json"])
        .args(args)
        .output()
        .expect("run kubectl get");
    if !o.status.success() {
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("NotFound") || e.contains("not found"),
            "kubectl get {args:?}: {e}"
        );
        return None;
    }
    Some(serde_json::from_slice(&o.stdout).expect("kubectl prints JSON"))
}

/// The items of a `kubectl get -o json` list.
pub fn kitems(sim: &crate::lab::KubeSim, args: &[&str]) -> Vec<Value> {
    kget(sim, args)
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

/// The status of an object's condition of this type.
pub fn condition(obj: &Value, kind: &str) -> Option<String> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

/// An object's `metadata.name`.
pub fn object_name(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
