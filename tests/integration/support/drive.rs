//! A built-in runbook driven through the drctl binary as an operator drives it ([`Drive`]:
//! its state directory, environment, `--set` values and `--confirm` answers), and what one
//! drctl process reported ([`Outcome`]: its JSON events).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::Value;

use super::cli::{code, drctl_cmd, events};

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

    /// `first` and then `--yes --output json` with this drive's `--set` and `--confirm`.
    pub fn run_args(&self, first: &[&str]) -> Vec<String> {
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

    /// drctl with `args` to the end, with `env` for this process only.
    pub fn finish(&self, args: &[String], env: &[(&str, String)]) -> Outcome {
        let o = self
            .command()
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
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
        self.finish(
            &self.run_args(&["run", &self.runbook, "--dry-run", "--new"]),
            &[],
        )
    }

    /// `drctl run NAME --yes --output json`.
    pub fn run(&self) -> Outcome {
        self.finish(&self.run_args(&["run", &self.runbook]), &[])
    }

    /// `drctl resume RUN_ID --yes --output json`, with `--resolve` answers.
    pub fn resume(&self, run_id: &str, resolve: &[String]) -> Outcome {
        self.resume_with(run_id, resolve, &[])
    }

    /// `resume`, with `env` for this process only (what the operator gives again).
    pub fn resume_with(&self, run_id: &str, resolve: &[String], env: &[(&str, String)]) -> Outcome {
        // The killed run's lock names a dead process: the operator takes it over, as
        // drctl's message says.
        let mut args = self.run_args(&["resume", run_id]);
        for r in resolve {
            args.push("--resolve".to_owned());
            args.push(r.clone());
        }
        self.finish(&args, env)
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

    /// The `step_finished` events with this outcome.
    pub fn finished_with(&self, outcome: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["event"] == "step_finished" && e["outcome"] == outcome)
            .collect()
    }

    /// The steps left interrupted by a killed drctl, waiting for the operator's decision.
    pub fn interrupted(&self) -> Vec<String> {
        self.finished_with("needs_operator")
            .into_iter()
            .filter(|e| {
                e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("interrupted"))
            })
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Whether a step failed because the secret output `name` died with an earlier drctl
    /// process (a secret output is never written down).
    pub fn lost_secret(&self, name: &str) -> bool {
        self.finished_with("failed").iter().any(|e| {
            e["error"].as_str().is_some_and(|r| {
                r.contains(&format!("`{name}`")) && r.contains("earlier drctl process")
            })
        })
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

/// A built-in runbook, parsed.
pub fn builtin(runbook: &str) -> drctl::runbook::Runbook {
    let catalog = drctl::runbook::catalog::Catalog::load(None).expect("the built-in catalog");
    let entry = catalog.get(runbook).expect("a built-in runbook");
    let text: Arc<str> = entry.text.clone();
    drctl::runbook::load::parse(&entry.label(), &text)
        .unwrap_or_else(|d| panic!("{runbook} parses: {d:?}"))
}
