//! The drctl binary as the tests run it: the repository root, drctl with a state directory
//! (`DRCTL_STATE_DIR`) and a clean environment, its output, JSON events and journals, a
//! drctl in the background read event by event, and unique values.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::signal;

/// The repository root (tests run with it as the working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The thirteen built-in runbooks the seeds call for.
pub const BUILTIN: &[&str] = &[
    "argocd-app-stuck",
    "cluster-rebuild",
    "eso-degraded",
    "etcd-restore",
    "nas-outage",
    "node-destruction-rebuild",
    "node-failure",
    "power-failure-recovery",
    "vault-data-loss",
    "vault-kms-credentials-lost",
    "vault-kms-key-deletion",
    "vault-stuck-sealed",
    "vault-unseal-rotation",
];

/// Run drctl with arguments from the repository root, without colour or a user
/// runbook directory from the environment.
pub fn drctl(args: &[&str]) -> Output {
    drctl_in(&root(), args)
}

pub fn drctl_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("DRCTL_RUNBOOKS")
        .env("NO_COLOR", "1")
        .output()
        .expect("drctl binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A runbook of `tests/fixtures/engine/`.
pub fn fixture(name: &str) -> PathBuf {
    root()
        .join("tests/fixtures/engine")
        .join(format!("{name}.yaml"))
}

/// drctl with its state in `state` (through `DRCTL_STATE_DIR`), no colour, no user
/// runbook directory and no `DRCTL_INPUT_*` inherited from the test's environment.
pub fn drctl_cmd(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drctl"));
    c.current_dir(root())
        .env_remove("DRCTL_RUNBOOKS")
        .env("NO_COLOR", "1")
        .env("DRCTL_STATE_DIR", state);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DRCTL_INPUT_") {
            c.env_remove(k);
        }
    }
    c
}

/// Run drctl to the end and collect its output.
pub fn run_drctl(state: &Path, args: &[&str]) -> Output {
    drctl_cmd(state)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("drctl runs")
}

/// The exit code (`-1` when killed by a signal).
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// The exit code, stdout and stderr of a finished process, for assertion messages.
pub fn both(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// The JSON events of `--output json`; every line must be one.
pub fn events(out: &str) -> Vec<Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event ({e}): {l}")))
        .collect()
}

/// The run id of the `run_started` event.
pub fn run_id_of(evs: &[Value]) -> String {
    evs.iter()
        .find(|e| e["event"] == "run_started")
        .and_then(|e| e["run_id"].as_str())
        .expect("a run_started event with a run id")
        .to_owned()
}

/// The single run recorded in a state directory.
pub fn only_run(state: &Path) -> String {
    let runs: Vec<String> = std::fs::read_dir(state.join("runs"))
        .expect("a runs directory")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "exactly one run in {}: {runs:?}",
        state.display()
    );
    runs[0].clone()
}

pub fn journal_path(state: &Path, run_id: &str) -> PathBuf {
    state.join("runs").join(run_id).join("journal.json")
}

/// The journal of a run: it must parse and be a drctl journal.
pub fn journal(state: &Path, run_id: &str) -> Value {
    let p = journal_path(state, run_id);
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("cannot read the journal {}: {e}", p.display()));
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the journal {} does not parse: {e}\n{text}", p.display()));
    assert_eq!(v["format"], "drctl-journal", "{text}");
    v
}

/// A step's record in a journal (main or cleanup steps).
pub fn step<'a>(j: &'a Value, id: &str) -> &'a Value {
    j["steps"]
        .as_array()
        .into_iter()
        .chain(j["cleanup"].as_array())
        .flatten()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step `{id}` in the journal: {j:#}"))
}

pub fn step_state(j: &Value, id: &str) -> String {
    step(j, id)["state"].as_str().unwrap_or_default().to_owned()
}

/// How often `line` stands alone on a line of the file `log` (0 without the file).
pub fn count_lines(log: &Path, line: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == line)
        .count()
}

/// A value nobody else uses: `prefix-` and 24 hex digits.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{:024x}",
        rand::random::<u128>() & ((1u128 << 96) - 1)
    )
}

/// Collects a pipe in a thread (so a child never blocks on a full pipe).
pub fn drain(r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let mut r = r;
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// A drctl started in the background (`--output json`), read event by event. Dropping it
/// interrupts it (Ctrl-C, then SIGKILL) and kills the process group of a step it left.
pub struct Background {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    err: Option<std::thread::JoinHandle<String>>,
    pub seen: Vec<Value>,
    /// A file holding the pid (= process group) of a step's shell, killed on drop.
    pub step_pid_file: Option<PathBuf>,
}

impl Background {
    pub fn start(state: &Path, args: &[&str]) -> Background {
        let mut cmd = drctl_cmd(state);
        cmd.args(args);
        Background::spawn(cmd)
    }

    /// Start a prepared drctl command (its stdin, stdout and stderr are set here).
    pub fn spawn(mut cmd: Command) -> Background {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("drctl starts");
        let out = child.stdout.take().expect("stdout");
        let err = drain(child.stderr.take().expect("stderr"));
        Background {
            child,
            lines: BufReader::new(out).lines(),
            err: Some(err),
            seen: Vec::new(),
            step_pid_file: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Read events until one matches; it is returned.
    pub fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        for line in self.lines.by_ref() {
            let line = line.expect("read drctl's stdout");
            let ev: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
            self.seen.push(ev.clone());
            if pred(&ev) {
                return ev;
            }
        }
        panic!(
            "drctl ended before {what}; events: {:#?}",
            self.seen
                .iter()
                .map(|e| e["event"].to_string())
                .collect::<Vec<_>>()
        );
    }

    /// Wait for the end; the exit code, the rest of the events and stderr.
    pub fn finish(&mut self) -> (Option<i32>, Vec<Value>, String) {
        let mut rest = Vec::new();
        for line in self.lines.by_ref() {
            let line = line.expect("read drctl's stdout");
            let ev: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
            rest.push(ev);
        }
        let status = self.child.wait().expect("wait for drctl");
        let err = self
            .err
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status.code(), rest, err)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), libc::SIGINT);
            let t = Instant::now();
            while matches!(self.child.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(pid) = self
            .step_pid_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // SAFETY: killing the process group of a step this test started.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
    }
}
