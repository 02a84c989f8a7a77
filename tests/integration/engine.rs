//! Acceptance tests of the execution engine: `run`, `resume`, `runs` and `report` driven as
//! child processes, with runbooks from `tests/fixtures/engine/`, a temporary state
//! directory per test (`DRCTL_STATE_DIR`) and temporary working directories.
//!
//! - crash safety: SIGKILL at every step boundary and in the middle of a long step;
//! - dry-run rehearsals;
//! - secrets (files, streams, reports, the argv of every process);
//! - injection through input values;
//! - the lock, changed runbooks, corrupt journals, manual steps;
//! - Ctrl-C during a long step.

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::cli::{
    Background, both, code, count_lines, drain, drctl_cmd, events, fixture, journal, journal_path,
    only_run, root, run_drctl, run_id_of, stderr, stdout, step, step_state, unique,
};
use crate::support::process::{descendants, group_members, signal, wait_for, wait_gone};
use crate::support::secrets::files_under;

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("drctl-engine-")
        .tempdir()
        .expect("a temporary directory")
}

fn set(k: &str, v: &Path) -> String {
    format!("{k}={}", v.display())
}

// ---------------------------------------------------------------------------------------
// 1. Crash safety
// ---------------------------------------------------------------------------------------

/// Where the crash test kills drctl.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// Right after the `step_finished` event of this step.
    After(&'static str),
    /// While this step runs (a while after its `step_started`).
    Mid(&'static str),
}

/// The steps of engine-crash.yaml: id, idempotent, the line that proves it ran to the end.
const CRASH_STEPS: [(&str, bool, &str); 6] = [
    ("one", false, "one"),
    ("two", true, "two"),
    ("three", false, "three"),
    ("long", false, "end"),
    ("five", true, "five"),
    ("six", false, "six"),
];

fn idempotent(id: &str) -> bool {
    CRASH_STEPS.iter().any(|(s, i, _)| *s == id && *i)
}

#[test]
fn sigkill_at_every_step_boundary_and_mid_step_then_resume_runs_each_step_once() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let log = tmp.path().join("steps.log");
    let rb = fixture("engine-crash");
    let mut plan: VecDeque<KillAt> = VecDeque::from([
        KillAt::After("one"),
        KillAt::After("two"),
        KillAt::After("three"),
        KillAt::Mid("long"),
        KillAt::After("long"),
        KillAt::After("five"),
        KillAt::After("six"),
    ]);
    let mut run_id: Option<String> = None;
    // The next resume's `--resolve` answers.
    let mut resolve: Vec<(String, &'static str)> = Vec::new();
    // Resumes that took the killed process's lock (no flag needed for the same run).
    let mut takeovers = 0usize;
    // Non-idempotent steps left interrupted, or asked about: they may only start again
    // in a resume that says `--resolve STEP=rerun`.
    let mut guarded: BTreeSet<String> = BTreeSet::new();
    let mut violations: Vec<String> = Vec::new();
    let mut story: Vec<String> = Vec::new();
    let mut kills = 0;
    let mut asked_about_long = false;
    let mut long_reruns = 0;
    let mut finished = false;

    for attempt in 1..=40 {
        let mut args: Vec<String> = match &run_id {
            None => vec![
                "run".into(),
                rb.display().to_string(),
                "--set".into(),
                set("log", &log),
            ],
            Some(id) => vec![
                "resume".into(),
                id.clone(),
                "--runbook".into(),
                rb.display().to_string(),
            ],
        };
        args.extend(["--yes", "--output", "json"].map(String::from));
        for (s, d) in &resolve {
            args.push("--resolve".into());
            args.push(format!("{s}={d}"));
        }
        let shown = args.join(" ");
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = drctl_cmd(&state)
            .args(&refs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("drctl starts");
        let pid = child.id();
        let err = drain(child.stderr.take().expect("stderr"));
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut evs: Vec<Value> = Vec::new();
        let mut killed: Option<(KillAt, Vec<i32>)> = None;
        for line in lines {
            let line = line.expect("read drctl's stdout");
            let ev: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
            let kind = ev["event"].as_str().unwrap_or_default().to_owned();
            let id = ev["id"].as_str().unwrap_or_default().to_owned();
            if kind == "notice"
                && ev["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("took over the lock of run"))
            {
                takeovers += 1;
            }
            if run_id.is_none() && kind == "run_started" {
                run_id = ev["run_id"].as_str().map(str::to_owned);
            }
            if kind == "step_started" {
                let rerun_asked = resolve.iter().any(|(s, d)| *s == id && *d == "rerun");
                if guarded.contains(&id) && !rerun_asked {
                    violations.push(format!(
                        "`{shown}` started the interrupted, non-idempotent step `{id}` again although the operator did not choose to re-run it (resolve: {resolve:?})"
                    ));
                }
                if id == "long" && rerun_asked {
                    long_reruns += 1;
                }
            }
            if kind == "step_finished" && ev["outcome"] == "succeeded" {
                guarded.remove(&id);
            }
            let hit = match plan.front() {
                // A boundary: the step is over (not waiting for the operator).
                Some(KillAt::After(s)) => {
                    kind == "step_finished"
                        && id == *s
                        && matches!(ev["outcome"].as_str(), Some("succeeded" | "already_done"))
                }
                Some(KillAt::Mid(s)) => kind == "step_started" && id == *s,
                None => false,
            };
            evs.push(ev);
            if hit {
                let point = plan.pop_front().expect("a kill point");
                if matches!(point, KillAt::Mid(_)) {
                    std::thread::sleep(Duration::from_millis(400));
                }
                let kids = descendants(i32::try_from(pid).expect("pid"));
                signal(pid, libc::SIGKILL);
                killed = Some((point, kids));
                break;
            }
            // A boundary already behind this process (it finished in an earlier one) can
            // no longer be hit: drop it, loudly.
            if let Some(KillAt::After(s)) = plan.front()
                && kind == "step_started"
            {
                let pos = |x: &str| CRASH_STEPS.iter().position(|(c, _, _)| *c == x);
                if pos(&id) > pos(s) {
                    story.push(format!("  (kill point after `{s}` missed: `{s}` had finished before the kill landed)"));
                    plan.pop_front();
                }
            }
        }
        let status = child.wait().expect("wait for drctl");
        let err = err.join().unwrap_or_default();
        let id = run_id.clone().expect("the first run announced its id");

        if let Some((point, kids)) = killed {
            kills += 1;
            // drctl is gone; the step's own process group may outlive it (it is not
            // drctl's to kill any more). An operator makes sure nothing still runs.
            let waited = wait_gone(&kids, Duration::from_secs(10));
            let j = journal(&state, &id);
            let running: Vec<String> = j["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .filter(|s| s["state"] == "running")
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect();
            for r in &running {
                if !idempotent(r) {
                    guarded.insert(r.clone());
                }
            }
            story.push(format!("`drctl {shown}`"));
            story.push(format!(
                "  kill #{kills}: SIGKILL {} (pid {pid}); journal parses (state {}, seq {}), left running: {running:?}{}",
                match point {
                    KillAt::After(s) => format!("after step_finished `{s}`"),
                    KillAt::Mid(s) => format!("in the middle of `{s}` (400 ms after step_started)"),
                },
                j["state"],
                j["seq"],
                if kids.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; step processes {kids:?} outlived drctl, waited {} ms for them",
                        waited.as_millis()
                    )
                }
            ));
            resolve.clear();
            continue;
        }

        let evs_text = || {
            evs.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        match status.code() {
            Some(0) => {
                story.push(format!("`drctl {shown}` → exit 0 (process #{attempt})"));
                finished = true;
                break;
            }
            Some(5) => {
                panic!(
                    "`drctl {shown}`: resuming the killed run must take its dead process's lock without --take-over-lock: {err}\n{}",
                    evs_text()
                );
            }
            Some(4) => {
                let asked: Vec<(String, String)> = evs
                    .iter()
                    .filter(|e| e["event"] == "step_finished" && e["outcome"] == "needs_operator")
                    .map(|e| {
                        (
                            e["id"].as_str().unwrap_or_default().to_owned(),
                            e["reason"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                assert_eq!(
                    asked.len(),
                    1,
                    "exit 4 names one waiting step: {}\n{err}",
                    evs_text()
                );
                let (step_id, reason) = &asked[0];
                assert!(
                    reason.contains("interrupted")
                        && reason.contains(&format!("--resolve {step_id}=")),
                    "the pause explains the interruption and names --resolve: {reason}"
                );
                if idempotent(step_id) {
                    violations.push(format!(
                        "idempotent step `{step_id}` was not re-run on its own: {reason}"
                    ));
                }
                guarded.insert(step_id.clone());
                if step_id == "long" {
                    asked_about_long = true;
                }
                // The operator looks at the file: the step's last line is there or not.
                let proof = CRASH_STEPS
                    .iter()
                    .find(|(s, _, _)| s == step_id)
                    .map(|(_, _, l)| *l)
                    .expect("a known step");
                let decision = if count_lines(&log, proof) > 0 {
                    "done"
                } else {
                    "rerun"
                };
                story.push(format!(
                    "`drctl {shown}` → exit 4: `{step_id}` was interrupted; `{proof}` is {} in the file → --resolve {step_id}={decision}",
                    if decision == "done" { "present" } else { "absent" }
                ));
                resolve = vec![(step_id.clone(), decision)];
            }
            other => panic!(
                "`drctl {shown}` ended with {other:?}\n--- events\n{}\n--- stderr\n{err}",
                evs_text()
            ),
        }
    }

    println!("crash-safety kill points and resumes:");
    for l in &story {
        println!("{l}");
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    println!("steps.log:\n{text}");
    assert!(finished, "the run never finished:\n{}", story.join("\n"));
    assert!(
        takeovers >= 1,
        "no resume took the killed process's lock over:\n{}",
        story.join("\n")
    );
    assert!(
        kills >= 6,
        "drctl was killed {kills} times only:\n{}",
        story.join("\n")
    );
    assert!(
        asked_about_long,
        "the non-idempotent step `long`, killed mid-way, must stop the resume (exit 4, --resolve):\n{}",
        story.join("\n")
    );
    assert!(
        violations.is_empty(),
        "steps re-ran without the operator's say-so:\n{}\n\nstory:\n{}\n\nsteps.log:\n{text}",
        violations.join("\n"),
        story.join("\n")
    );
    for (id, idem, proof) in CRASH_STEPS {
        let n = count_lines(&log, proof);
        if idem {
            assert!(n >= 1, "`{id}` never ran:\n{text}");
        } else {
            assert_eq!(n, 1, "`{id}` must run exactly once:\n{text}");
        }
    }
    // A kill can land after drctl journalled `long` as running but before its command
    // wrote "start": the operator is then asked (and may choose a re-run) although the
    // command never began. So `long` began at most once plus once per chosen re-run, and
    // never more: no silent re-run.
    let starts = count_lines(&log, "start");
    assert!(
        (1..=1 + long_reruns).contains(&starts),
        "`long` began {starts} times; at most once plus once per re-run the operator chose ({long_reruns}):\n{text}"
    );
    let j = journal(&state, run_id.as_deref().expect("run id"));
    assert_eq!(j["state"], "succeeded", "{j:#}");
    for (id, _, _) in CRASH_STEPS {
        assert_eq!(step_state(&j, id), "succeeded", "{j:#}");
    }
}

/// The pause an interrupted step causes must survive: a plain `resume` after it must not
/// run the step, and `--resolve STEP=done` must mark it done without running it.
#[test]
fn an_interrupted_step_stays_interrupted_until_the_operator_resolves_it() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let log = tmp.path().join("steps.log");
    let rb = fixture("engine-crash");
    let mut bg = Background::start(
        &state,
        &[
            "run",
            &rb.display().to_string(),
            "--yes",
            "--output",
            "json",
            "--set",
            &set("log", &log),
        ],
    );
    bg.until("`long` starts", |e| {
        e["event"] == "step_started" && e["id"] == "long"
    });
    let run_id = run_id_of(&bg.seen);
    wait_for(
        "`long` to write its first line",
        Duration::from_secs(10),
        || (count_lines(&log, "start") == 1).then_some(()),
    );
    let kids = descendants(i32::try_from(bg.pid()).expect("pid"));
    signal(bg.pid(), libc::SIGKILL);
    let _ = bg.finish();
    // Let the orphaned step end, as after a crash of drctl alone.
    wait_gone(&kids, Duration::from_secs(10));
    assert_eq!(step_state(&journal(&state, &run_id), "long"), "running");

    let resume = |extra: &[&str]| {
        let rbs = rb.display().to_string();
        let mut a = vec![
            "resume",
            run_id.as_str(),
            "--yes",
            "--take-over-lock",
            "--runbook",
            rbs.as_str(),
        ];
        a.extend_from_slice(extra);
        run_drctl(&state, &a)
    };
    let o = resume(&[]);
    assert_eq!(code(&o), 4, "{}", both(&o));
    assert!(stdout(&o).contains("--resolve long=done"), "{}", both(&o));
    let starts = count_lines(&log, "start");

    // The operator has not decided yet: asking again must not run the step.
    let o = resume(&[]);
    assert_eq!(
        code(&o),
        4,
        "a second plain resume must stop at the interrupted step again, not run it:\n{}",
        both(&o)
    );
    assert_eq!(count_lines(&log, "start"), starts, "`long` ran again");

    // "I checked, it is done": drctl marks it done and does not run it.
    let o = resume(&["--resolve", "long=done"]);
    assert_eq!(code(&o), 0, "{}", both(&o));
    assert_eq!(
        count_lines(&log, "start"),
        starts,
        "`--resolve long=done` re-ran `long`:\n{}",
        both(&o)
    );
    let j = journal(&state, &run_id);
    assert_eq!(step_state(&j, "long"), "succeeded");
    assert_eq!(step(&j, "long")["decided_by"], "operator", "{j:#}");
}

// ---------------------------------------------------------------------------------------
// 2. Dry-run
// ---------------------------------------------------------------------------------------

#[test]
fn dry_run_reads_for_real_changes_nothing_and_reports_problems() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let rb = fixture("engine-dry").display().to_string();
    let missing = work.join("missing-backup.tar");

    // A rehearsal that finds a problem: the backup is not there.
    let o = run_drctl(
        &state,
        &[
            "run",
            &rb,
            "--dry-run",
            "--yes",
            "--output",
            "json",
            "--set",
            &set("workdir", &work),
            "--set",
            &set("backup", &missing),
        ],
    );
    assert_eq!(code(&o), 1, "problems found → exit 1\n{}", both(&o));
    let evs = events(&stdout(&o));
    let bad_run = run_id_of(&evs);
    assert!(
        work.join("read-ran").exists(),
        "a read-only step runs for real"
    );
    assert!(
        !work.join("mutation-ran").exists(),
        "a mutating shell step must not run in a rehearsal"
    );
    assert!(
        !work.join("restore-ran").exists(),
        "a mutating shell step must not run in a rehearsal"
    );
    let finished = |id: &str| {
        evs.iter()
            .find(|e| e["event"] == "step_finished" && e["id"] == id)
            .unwrap_or_else(|| panic!("no step_finished for `{id}`"))
            .clone()
    };
    assert_eq!(finished("look")["outcome"], "succeeded");
    assert_eq!(finished("find-backup")["outcome"], "failed");
    assert_eq!(finished("create-volume")["outcome"], "would_run");
    assert_eq!(finished("restore")["outcome"], "would_run");
    assert_eq!(finished("describe")["outcome"], "succeeded");
    // The placeholder of the skipped mutation's output, in the later steps.
    let placeholder = "<volume from step create-volume: not captured in a rehearsal>";
    let restore_started = evs
        .iter()
        .find(|e| e["event"] == "step_started" && e["id"] == "restore")
        .expect("restore is shown");
    assert!(
        restore_started["rendered"]
            .to_string()
            .contains(placeholder),
        "{restore_started}"
    );
    assert!(
        evs.iter().any(|e| e["event"] == "step_output"
            && e["id"] == "describe"
            && e["line"].as_str().is_some_and(|l| l.contains(placeholder))),
        "a later read-only step renders the placeholder and runs:\n{}",
        stdout(&o)
    );
    let problems: Vec<&Value> = evs.iter().filter(|e| e["event"] == "problem").collect();
    assert_eq!(problems.len(), 1, "{}", stdout(&o));
    assert_eq!(problems[0]["step"], "find-backup");
    assert!(
        problems[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not found")),
        "{}",
        problems[0]
    );
    let end = evs.last().expect("events");
    assert_eq!(end["event"], "run_finished");
    assert_eq!(end["mode"], "rehearsal");
    assert_eq!(end["would_run"], 2);
    assert_eq!(end["problems"].as_array().map(Vec::len), Some(1), "{end}");
    let j = journal(&state, &bad_run);
    assert_eq!(j["mode"], "rehearsal");
    assert_eq!(step(&j, "create-volume")["rehearsed"], true);
    assert!(j["outputs"].get("volume").is_none() || j["outputs"]["volume"] != "vol-0123");

    // The same rehearsal with the backup in place: no problem, exit 0 (human output).
    let backup = work.join("backup.tar");
    std::fs::write(&backup, "tar").expect("backup");
    let o = run_drctl(
        &state,
        &[
            "run",
            &rb,
            "--dry-run",
            "--yes",
            "--set",
            &set("workdir", &work),
            "--set",
            &set("backup", &backup),
        ],
    );
    assert_eq!(code(&o), 0, "no problems → exit 0\n{}", both(&o));
    let out = stdout(&o);
    assert!(out.contains("Rehearsal report:"), "{out}");
    assert!(out.contains("0 problem(s)"), "{out}");
    assert!(!work.join("mutation-ran").exists());
    let good_run = out
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.split_whitespace().next())
        .expect("the run id line")
        .to_owned();

    // Both are journalled as rehearsals and listed so.
    let o = run_drctl(&state, &["runs"]);
    assert_eq!(code(&o), 0, "{}", both(&o));
    let runs = stdout(&o);
    for id in [&bad_run, &good_run] {
        let line = runs
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap_or_else(|| panic!("`drctl runs` does not list {id}:\n{runs}"));
        assert!(line.contains("(rehearsal"), "{line}");
    }

    // The report of the rehearsal, later.
    let o = run_drctl(&state, &["report", &bad_run]);
    assert_eq!(code(&o), 0, "{}", both(&o));
    let md = stdout(&o);
    assert!(md.starts_with("# Rehearsal report: "), "{md}");
    assert!(md.contains("## Problems found"), "{md}");
    assert!(md.contains("- find-backup: "), "{md}");
    assert!(md.contains("would run (rehearsal)"), "{md}");
}

// ---------------------------------------------------------------------------------------
// 3. Secrets
// ---------------------------------------------------------------------------------------

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p).is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(needle))
        })
        .map(|p| p.display().to_string())
        .collect()
}

/// Runs engine-secrets.yaml (once with JSON events, once human) with a planted token
/// (`DRCTL_INPUT_TOKEN`) and a planted session key (read by a step, captured as a secret
/// output); returns every place the value `watched` showed up.
fn secret_leaks(watch_token: bool) -> Vec<String> {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let token = unique("PLANTED-token");
    let session = unique("PLANTED-session");
    let watched = if watch_token { &token } else { &session };
    let mut leaks = Vec::new();
    for json in [true, false] {
        let mode = if json { "json" } else { "human" };
        let work = tmp.path().join(format!("work-{mode}"));
        std::fs::create_dir(&work).expect("workdir");
        let rb = fixture("engine-secrets").display().to_string();
        let mut args = vec!["run", rb.as_str(), "--yes"];
        if json {
            args.extend(["--output", "json"]);
        }
        let wd = set("workdir", &work);
        args.extend(["--set", wd.as_str()]);
        let o = drctl_cmd(&state)
            .args(&args)
            .env("DRCTL_INPUT_TOKEN", &token)
            .env("ENGINE_TEST_SESSION_KEY", &session)
            .stdin(Stdio::null())
            .output()
            .expect("drctl runs");
        assert_eq!(code(&o), 0, "{}", both(&o).replace(watched, "<WATCHED>"));
        let out = stdout(&o);
        // The steps did receive the values (they print them, redacted).
        assert!(
            out.contains("stdout token=****"),
            "{}",
            out.replace(watched, "<WATCHED>")
        );
        assert!(
            out.contains("read from stdin: ****"),
            "{}",
            out.replace(watched, "<WATCHED>")
        );
        assert!(
            out.contains("session=****"),
            "{}",
            out.replace(watched, "<WATCHED>")
        );
        let run_id = if json {
            run_id_of(&events(&out))
        } else {
            out.lines()
                .find_map(|l| l.strip_prefix("run ")?.split_whitespace().next())
                .expect("the run id line")
                .to_owned()
        };
        if out.contains(watched.as_str()) {
            let line = out
                .lines()
                .find(|l| l.contains(watched.as_str()))
                .unwrap_or("");
            leaks.push(format!(
                "drctl's stdout ({mode}): {}",
                line.replace(watched, "<WATCHED>")
            ));
        }
        if stderr(&o).contains(watched.as_str()) {
            leaks.push(format!("drctl's stderr ({mode})"));
        }
        // The argv of every process, dumped while the step's children ran.
        let argv = std::fs::read_to_string(work.join("argv.txt")).expect("argv.txt");
        assert!(
            argv.contains("drctl") && argv.contains("sleep 5"),
            "the dump covers drctl and the step's children:\n{argv}"
        );
        if argv.contains(watched.as_str()) {
            leaks.push(format!("the argv of a process ({mode})"));
        }
        for format in ["markdown", "json"] {
            let r = run_drctl(&state, &["report", &run_id, "--format", format]);
            assert_eq!(code(&r), 0, "{}", both(&r));
            let text = stdout(&r);
            assert!(text.contains("use-session"), "{text}");
            if text.contains(watched.as_str()) || stderr(&r).contains(watched.as_str()) {
                leaks.push(format!("drctl report --format {format} ({mode})"));
            }
        }
    }
    let runs = run_drctl(&state, &["runs"]);
    if stdout(&runs).contains(watched.as_str()) {
        leaks.push("drctl runs".into());
    }
    for f in files_containing(&state, watched) {
        leaks.push(format!("the file {f}"));
    }
    leaks
}

#[test]
fn a_secret_input_never_reaches_files_streams_reports_or_argv() {
    let leaks = secret_leaks(true);
    assert!(
        leaks.is_empty(),
        "the planted secret input showed up in:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn a_secret_output_captured_from_stdout_never_reaches_files_streams_reports_or_argv() {
    let leaks = secret_leaks(false);
    assert!(
        leaks.is_empty(),
        "the secret output (`secret: true`, captured from the step's stdout) showed up in:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn a_secret_given_with_set_gets_a_warning_about_ps_and_shell_history() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let token = unique("PLANTED-set");
    let rb = fixture("engine-secrets").display().to_string();
    for json in [false, true] {
        let mut args = vec!["run", rb.as_str(), "--yes", "--only", "use-env"];
        if json {
            args.extend(["--output", "json"]);
        }
        let wd = set("workdir", &work);
        let tk = format!("token={token}");
        args.extend(["--set", wd.as_str(), "--set", tk.as_str()]);
        let o = run_drctl(&state, &args);
        assert_eq!(code(&o), 0, "{}", both(&o));
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(
            all.contains("secret input `token` was given with --set")
                && all.contains("`ps`")
                && all.contains("shell history"),
            "{all}"
        );
        assert!(
            all.contains("DRCTL_INPUT_TOKEN"),
            "the warning says what to use instead: {all}"
        );
        assert!(!all.contains(&token), "{all}");
        if json {
            assert!(
                events(&stdout(&o)).iter().any(|e| e["event"] == "notice"
                    && e["message"].as_str().is_some_and(|m| m.contains("`ps`"))),
                "{all}"
            );
        }
    }
    assert!(files_containing(&state, &token).is_empty());
}

// ---------------------------------------------------------------------------------------
// 4. Injection
// ---------------------------------------------------------------------------------------

#[test]
fn input_values_that_look_like_shell_syntax_stay_data() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let rb = fixture("engine-inject").display().to_string();
    let hostile = [
        "x; touch PWNED",
        "$(touch PWNED)",
        "`touch PWNED`",
        "a && touch PWNED || touch PWNED",
        "it's $(touch PWNED) \"q\" \\ | touch PWNED",
    ];
    // A value with a line break is refused in a command line:
    // attack_templates::a_value_with_a_line_break_never_reaches_a_command_line.
    for v in hostile {
        let o = drctl_cmd(&state)
            .current_dir(&work)
            .args([
                "run",
                &rb,
                "--yes",
                "--new",
                "--output",
                "json",
                "--set",
                &format!("v={v}"),
                "--set",
                &set("workdir", &work),
            ])
            .stdin(Stdio::null())
            .output()
            .expect("drctl runs");
        assert_eq!(code(&o), 0, "value {v:?}\n{}", both(&o));
        let pwned: Vec<_> = std::fs::read_dir(&work)
            .expect("workdir")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert!(
            pwned.is_empty(),
            "value {v:?} executed: {pwned:?} appeared\n{}",
            both(&o)
        );
        assert!(!root().join("PWNED").exists() && !state.join("PWNED").exists());
        let evs = events(&stdout(&o));
        let out = |id: &str| -> Vec<String> {
            evs.iter()
                .filter(|e| e["event"] == "step_output" && e["id"] == id)
                .filter_map(|e| e["line"].as_str().map(str::to_owned))
                .collect()
        };
        let lines: Vec<&str> = v.lines().collect();
        assert_eq!(out("echo-script"), lines, "value {v:?}");
        let first = format!("[value={}", lines[0]);
        assert!(
            out("echo-script-words")
                .first()
                .is_some_and(|l| l.starts_with(&first)),
            "value {v:?}: {:?}",
            out("echo-script-words")
        );
        assert_eq!(
            out("echo-script-words").last().map(String::as_str),
            Some("[end]"),
            "the value stays one word"
        );
        let argv = out("echo-argv").join("\n");
        assert_eq!(argv, format!("<{v}>"), "value {v:?}");
        // The rendered command shows the value quoted, as it ran.
        let started = evs
            .iter()
            .find(|e| e["event"] == "step_started" && e["id"] == "echo-script")
            .expect("echo-script started");
        assert!(
            started["rendered"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r.as_str().is_some_and(|r| r.starts_with("echo '"))),
            "{started}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. Lock, changed runbooks, corrupt journals, manual steps
// ---------------------------------------------------------------------------------------

#[test]
fn a_second_run_of_a_runbook_in_progress_is_refused_naming_the_holder() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let rb = fixture("engine-ctrlc").display().to_string();
    let wd = set("workdir", &work);
    let mut first = Background::start(
        &state,
        &["run", &rb, "--yes", "--output", "json", "--set", &wd],
    );
    first.step_pid_file = Some(work.join("long.pid"));
    first.until("the long step starts", |e| {
        e["event"] == "step_started" && e["id"] == "long-wait"
    });
    let holder = run_id_of(&first.seen);
    let holder_pid = first.pid().to_string();
    let names_holder = |o: &Output| {
        let e = stderr(o);
        e.contains(&holder) && e.contains(&holder_pid) && e.contains('@') && e.contains("since")
    };

    let o = run_drctl(&state, &["run", &rb, "--yes", "--new", "--set", &wd]);
    assert_eq!(code(&o), 5, "{}", both(&o));
    assert!(names_holder(&o), "{}", both(&o));
    assert_eq!(
        std::fs::read_dir(state.join("runs")).expect("runs").count(),
        1,
        "a refused run leaves no journal behind"
    );

    let o = run_drctl(&state, &["resume", &holder, "--yes", "--runbook", &rb]);
    assert_eq!(code(&o), 5, "{}", both(&o));
    assert!(names_holder(&o), "{}", both(&o));

    let o = run_drctl(
        &state,
        &[
            "resume",
            &holder,
            "--yes",
            "--take-over-lock",
            "--runbook",
            &rb,
        ],
    );
    assert_eq!(
        code(&o),
        5,
        "a live holder's lock cannot be taken over\n{}",
        both(&o)
    );

    // The plain form an operator types first.
    let o = run_drctl(&state, &["run", &rb, "--yes", "--set", &wd]);
    assert!(
        code(&o) == 5 && names_holder(&o),
        "`drctl run` of a runbook that another drctl is running right now must exit 5 naming the holder (not offer to resume the run in progress):\n{}",
        both(&o)
    );
}

#[test]
fn a_changed_step_refuses_resume_until_allowed() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    // A copy we can edit, keeping the file name the runbook name asks for.
    let rb = tmp.path().join("engine-pause.yaml");
    std::fs::copy(fixture("engine-pause"), &rb).expect("copy the runbook");
    let rbs = rb.display().to_string();
    let o = run_drctl(
        &state,
        &["run", &rbs, "--yes", "--set", &set("workdir", &work)],
    );
    assert_eq!(code(&o), 4, "paused at the manual step\n{}", both(&o));
    let run_id = only_run(&state);

    let text = std::fs::read_to_string(&rb).expect("read");
    std::fs::write(&rb, text.replace("finish-v1", "finish-v2")).expect("edit");
    let o = run_drctl(
        &state,
        &[
            "resume",
            &run_id,
            "--yes",
            "--confirm",
            "swap-disk",
            "--runbook",
            &rbs,
        ],
    );
    assert_eq!(code(&o), 6, "{}", both(&o));
    let e = stderr(&o);
    assert!(e.contains("step `finish` changed"), "{e}");
    assert!(e.contains("--allow-changed"), "{e}");
    assert!(
        !e.contains("`prepare`") && !e.contains("`swap-disk` changed"),
        "{e}"
    );
    let j = journal(&state, &run_id);
    assert_eq!(j["state"], "paused");
    assert_eq!(step_state(&j, "swap-disk"), "pending");
    assert_eq!(step_state(&j, "finish"), "pending");

    let o = run_drctl(
        &state,
        &[
            "resume",
            &run_id,
            "--runbook",
            &rbs,
            "--yes",
            "--allow-changed",
            "--confirm",
            "swap-disk",
        ],
    );
    assert_eq!(code(&o), 0, "{}", both(&o));
    let log = std::fs::read_to_string(work.join("steps.log")).expect("steps.log");
    assert_eq!(log, "prepare\nfinish-v2\n", "the edited step ran, once");
    assert_eq!(journal(&state, &run_id)["state"], "succeeded");
}

#[test]
fn a_truncated_journal_is_a_clear_error_and_other_runs_are_unaffected() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let rb = fixture("engine-pause").display().to_string();
    let wd = set("workdir", &work);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let o = run_drctl(
            &state,
            &[
                "run", &rb, "--yes", "--new", "--output", "json", "--set", &wd,
            ],
        );
        assert_eq!(code(&o), 4, "{}", both(&o));
        ids.push(run_id_of(&events(&stdout(&o))));
    }
    let (broken, intact) = (&ids[0], &ids[1]);
    let p = journal_path(&state, broken);
    let full = std::fs::read(&p).expect("journal");
    std::fs::write(&p, &full[..full.len() / 2]).expect("truncate");

    let o = run_drctl(
        &state,
        &[
            "resume",
            broken,
            "--yes",
            "--confirm",
            "swap-disk",
            "--runbook",
            &rb,
        ],
    );
    assert_ne!(code(&o), 0, "{}", both(&o));
    let e = stderr(&o);
    assert!(e.contains("corrupt"), "{e}");
    assert!(e.contains(&p.display().to_string()), "names the file: {e}");
    assert!(e.contains("other runs are unaffected"), "{e}");
    assert!(e.contains("audit.jsonl"), "points at the audit log: {e}");
    assert_eq!(
        std::fs::read(&p).expect("journal"),
        &full[..full.len() / 2],
        "the broken journal is left as it was, for a person to look at"
    );
    assert!(
        std::fs::metadata(state.join("runs").join(broken).join("audit.jsonl"))
            .is_ok_and(|m| m.len() > 0),
        "the audit log still holds the history"
    );

    let o = run_drctl(&state, &["runs"]);
    assert_eq!(code(&o), 0, "{}", both(&o));
    assert!(stdout(&o).contains(intact.as_str()), "{}", both(&o));
    assert!(stderr(&o).contains("corrupt"), "{}", both(&o));

    let o = run_drctl(&state, &["report", intact]);
    assert_eq!(code(&o), 0, "{}", both(&o));
    let o = run_drctl(
        &state,
        &[
            "resume",
            intact,
            "--yes",
            "--confirm",
            "swap-disk",
            "--runbook",
            &rb,
        ],
    );
    assert_eq!(code(&o), 0, "the intact run resumes\n{}", both(&o));
}

#[test]
fn a_manual_step_under_yes_pauses_until_confirmed_by_name() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let rb = fixture("engine-pause").display().to_string();
    let o = run_drctl(
        &state,
        &["run", &rb, "--yes", "--set", &set("workdir", &work)],
    );
    assert_eq!(code(&o), 4, "{}", both(&o));
    assert!(stdout(&o).contains("--confirm swap-disk"), "{}", both(&o));
    let run_id = only_run(&state);
    let j = journal(&state, &run_id);
    assert_eq!(j["state"], "paused");
    assert_eq!(step_state(&j, "prepare"), "succeeded");
    assert_eq!(step_state(&j, "swap-disk"), "pending");
    assert_eq!(step_state(&j, "finish"), "pending");
    let log = work.join("steps.log");
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "prepare\n");

    // --yes alone never reports a manual step done.
    let o = run_drctl(&state, &["resume", &run_id, "--yes", "--runbook", &rb]);
    assert_eq!(code(&o), 4, "{}", both(&o));
    assert_eq!(
        step_state(&journal(&state, &run_id), "swap-disk"),
        "pending"
    );

    let o = run_drctl(
        &state,
        &[
            "resume",
            &run_id,
            "--yes",
            "--confirm",
            "swap-disk",
            "--runbook",
            &rb,
        ],
    );
    assert_eq!(code(&o), 0, "{}", both(&o));
    let j = journal(&state, &run_id);
    assert_eq!(j["state"], "succeeded");
    assert_eq!(step_state(&j, "swap-disk"), "succeeded");
    assert_eq!(step(&j, "swap-disk")["decided_by"], "--confirm swap-disk");
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "prepare\nfinish-v1\n",
        "each step ran once"
    );
}

// ---------------------------------------------------------------------------------------
// 6. Ctrl-C
// ---------------------------------------------------------------------------------------

#[test]
fn ctrl_c_during_a_long_step_stops_it_journals_and_runs_cleanup() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let rb = fixture("engine-ctrlc").display().to_string();
    let pid_file = work.join("long.pid");
    let mut bg = Background::start(
        &state,
        &[
            "run",
            &rb,
            "--yes",
            "--output",
            "json",
            "--set",
            &set("workdir", &work),
        ],
    );
    bg.step_pid_file = Some(pid_file.clone());
    bg.until("the long step starts", |e| {
        e["event"] == "step_started" && e["id"] == "long-wait"
    });
    let run_id = run_id_of(&bg.seen);
    let pgid: i32 = wait_for("the step's shell to start", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    wait_for("`sleep 300` to run", Duration::from_secs(10), || {
        (group_members(pgid).len() >= 2).then_some(())
    });

    let t = Instant::now();
    signal(bg.pid(), libc::SIGINT);
    let (status, rest, err) = bg.finish();
    let took = t.elapsed();
    assert_eq!(status, Some(130), "{err}\n{rest:#?}");
    // Stopped the step instead of waiting out its `sleep 300` (a bound by order, not speed).
    assert!(
        took < Duration::from_secs(240),
        "drctl took {took:?} to stop after Ctrl-C"
    );
    let left = wait_for(
        "the step's processes to die",
        Duration::from_secs(3),
        || {
            let m = group_members(pgid);
            m.is_empty().then_some(m)
        },
    );
    assert!(left.is_empty());
    let log = std::fs::read_to_string(work.join("steps.log")).unwrap_or_default();
    assert_eq!(
        log, "before\n",
        "the long step did not finish, `after` did not run"
    );

    let interrupted = rest
        .iter()
        .find(|e| e["event"] == "step_finished" && e["id"] == "long-wait")
        .expect("the long step's end is reported");
    assert_eq!(interrupted["outcome"], "failed", "{interrupted}");
    let j = journal(&state, &run_id);
    assert_eq!(j["state"], "aborted", "{j:#}");
    assert_eq!(step_state(&j, "long-wait"), "failed");
    assert!(
        step(&j, "long-wait")["message"]
            .as_str()
            .is_some_and(|m| m.contains("interrupted")),
        "{j:#}"
    );
    assert_eq!(step_state(&j, "after"), "pending");

    // Cleanup runs after an abort, to its end.
    assert_eq!(
        step_state(&j, "tidy-up"),
        "succeeded",
        "the cleanup step must run after Ctrl-C: {:#}",
        step(&j, "tidy-up")
    );
    let marker = work.join("cleanup.marker");
    assert!(
        marker.exists(),
        "the cleanup step did not run after Ctrl-C; journal: {:#}\nevents: {rest:#?}",
        step(&j, "tidy-up")
    );
    assert_eq!(
        std::fs::read_to_string(&marker).expect("marker"),
        "cleanup after long-wait\n"
    );
}

// ---------------------------------------------------------------------------------------
// Prerequisites, and retries in a rehearsal
// ---------------------------------------------------------------------------------------

#[test]
fn prerequisites_are_listed_and_checked_before_step_one() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let rb = fixture("engine-prereq").display().to_string();
    let backup = work.join("backup.tar");
    let args = |mode: &[&'static str]| {
        let mut a: Vec<String> = vec!["run".into(), rb.clone()];
        a.extend(mode.iter().map(|s| (*s).to_owned()));
        a.extend([
            "--yes".into(),
            "--new".into(),
            "--output".into(),
            "json".into(),
            "--set".into(),
            set("workdir", &work),
            "--set".into(),
            set("backup", &backup),
        ]);
        a
    };
    let run = |mode: &[&'static str]| {
        let a = args(mode);
        run_drctl(&state, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let notices = |evs: &[Value]| -> Vec<String> {
        evs.iter()
            .filter(|e| e["event"] == "notice")
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect()
    };

    // The backup is missing: the rehearsal names the prerequisite as a problem, and its
    // retried read after the unperformed change is tried once, not four times.
    let o = run(&["--dry-run"]);
    assert_eq!(code(&o), 1, "{}", both(&o));
    let evs = events(&stdout(&o));
    let fin = evs.last().expect("events");
    let problems = fin["problems"].to_string();
    assert!(
        problems.contains("backup-exists: prerequisite not met: The backup file exists"),
        "{}",
        both(&o)
    );
    assert!(
        evs.iter().any(|e| e["event"] == "step_output"
            && e["id"] == "backup-exists"
            && e["line"]
                .as_str()
                .is_some_and(|l| l.starts_with("no backup at"))),
        "{}",
        both(&o)
    );
    assert!(
        notices(&evs)
            .iter()
            .any(|n| n.contains("have at hand before you start: The unseal key")),
        "{}",
        both(&o)
    );
    let attempts = std::fs::read_to_string(work.join("look-attempts")).unwrap_or_default();
    assert_eq!(attempts.lines().count(), 1, "{}", both(&o));
    assert!(
        !evs.iter().any(|e| e["event"] == "step_retry"),
        "{}",
        both(&o)
    );

    // A real run does not start: nothing changed, no cleanup, exit 1, the reason named.
    let o = run(&[]);
    assert_eq!(code(&o), 1, "{}", both(&o));
    let evs = events(&stdout(&o));
    assert!(
        notices(&evs)
            .iter()
            .any(|n| n.contains("the run did not start: prerequisite `backup-exists`")),
        "{}",
        both(&o)
    );
    assert!(!work.join("change-ran").exists(), "{}", both(&o));
    assert!(!work.join("cleanup-ran").exists(), "{}", both(&o));
    assert!(
        !evs.iter().any(|e| e["event"] == "step_started"),
        "{}",
        both(&o)
    );

    // With the backup there, the prerequisite is met and the run goes through.
    std::fs::write(&backup, "data").expect("backup");
    let o = run(&[]);
    assert_eq!(code(&o), 0, "{}", both(&o));
    let evs = events(&stdout(&o));
    assert!(
        notices(&evs)
            .iter()
            .any(|n| n == "prerequisite met: The backup file exists"),
        "{}",
        both(&o)
    );
    assert!(work.join("change-ran").exists());
}

#[test]
fn a_terminal_command_never_writes_into_the_json_event_stream() {
    let tmp = tempdir();
    let rb = tmp.path().join("tty-json.yaml");
    std::fs::write(
        &rb,
        "apiVersion: drctl/v1\nkind: Runbook\nname: tty-json\ntitle: Terminal command\nsummary: A tty step under --output json.\nsteps:\n  - id: installer\n    title: Run the installer\n    shell: { script: echo hello-from-the-installer, tty: true }\n",
    )
    .expect("write the runbook");
    let o = run_drctl(
        &tmp.path().join("state"),
        &[
            "run",
            &rb.display().to_string(),
            "--yes",
            "--confirm",
            "installer",
            "--output",
            "json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", both(&o));
    // Every stdout line is an event; the command's output went to stderr.
    let evs = events(&stdout(&o));
    assert!(evs.iter().any(|e| e["event"] == "run_finished"));
    assert!(
        stderr(&o).contains("hello-from-the-installer"),
        "{}",
        both(&o)
    );
}

#[test]
fn a_lost_secret_output_is_given_again_by_the_operator_on_resume() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let rb = fixture("engine-lost-secret").display().to_string();
    let minted = unique("minted-token");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        drctl_cmd(&state)
            .args(args)
            .env("ENGINE_TEST_MINTED", &minted)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("drctl runs")
    };
    let o = run(
        &[
            "run",
            &rb,
            "--yes",
            "--output",
            "json",
            "--set",
            &set("workdir", &work),
        ],
        &[],
    );
    assert_eq!(code(&o), 4, "stops at the manual step\n{}", both(&o));
    let run_id = run_id_of(&events(&stdout(&o)));

    // Without it: the step that needs it fails, naming both ways out.
    let o = run(
        &[
            "resume",
            &run_id,
            "--runbook",
            &rb,
            "--yes",
            "--confirm",
            "pause",
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(code(&o), 1, "{}", both(&o));
    assert!(
        both(&o).contains("DRCTL_OUTPUT_TOKEN") && both(&o).contains("--from mint"),
        "{}",
        both(&o)
    );
    assert!(!work.join("token-ok").exists());

    // Given again: the step runs with it, and it reaches no file, event or report.
    let o = run(
        &[
            "resume",
            &run_id,
            "--runbook",
            &rb,
            "--yes",
            "--output",
            "json",
        ],
        &[("DRCTL_OUTPUT_TOKEN", &minted)],
    );
    assert_eq!(code(&o), 0, "{}", both(&o));
    assert!(work.join("token-ok").exists(), "{}", both(&o));
    assert!(
        stdout(&o).contains("the secret output `token` of step `mint` was given again"),
        "{}",
        both(&o)
    );
    assert!(!both(&o).contains(&minted), "{}", both(&o));
    assert!(
        files_containing(&state, &minted).is_empty(),
        "{:?}",
        files_containing(&state, &minted)
    );
}

#[test]
fn a_lost_secret_output_is_made_again_when_its_step_is_safe_to_rerun() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let rb = fixture("engine-remint").display().to_string();
    let o = run_drctl(
        &state,
        &[
            "run",
            &rb,
            "--yes",
            "--output",
            "json",
            "--set",
            &set("workdir", &work),
        ],
    );
    assert_eq!(code(&o), 4, "stops at the manual step\n{}", both(&o));
    let run_id = run_id_of(&events(&stdout(&o)));
    let first = std::fs::read_to_string(work.join("stored")).expect("stored");

    let o = run_drctl(
        &state,
        &[
            "resume",
            &run_id,
            "--runbook",
            &rb,
            "--yes",
            "--confirm",
            "pause",
            "--output",
            "json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", both(&o));
    assert!(
        stdout(&o).contains("step `mint` is safe to run again, so it runs again, with `store` that used the old value"),
        "{}",
        both(&o)
    );
    assert!(work.join("token-ok").exists(), "{}", both(&o));
    let second = std::fs::read_to_string(work.join("stored")).expect("stored");
    assert_ne!(first, second, "a new token was made and stored");
    assert_eq!(count_lines(&work.join("mint-runs"), "minted"), 2);
    assert_eq!(count_lines(&work.join("store-runs"), "stored"), 2);
    assert!(!both(&o).contains(&second), "{}", both(&o));
}

#[test]
fn unattended_decisions_come_from_the_environment_and_untaken_branches_are_not_asked() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let rb = fixture("engine-answers").display().to_string();
    let o = drctl_cmd(&state)
        .args(["run", &rb, "--yes", "--output", "json", "--set"])
        .arg(set("workdir", &work))
        .env("DRCTL_ANSWER_PICK_SOURCE", "local")
        .stdin(Stdio::null())
        .output()
        .expect("drctl runs");
    assert_eq!(code(&o), 0, "{}", both(&o));
    assert_eq!(
        std::fs::read_to_string(work.join("restored-from")).expect("restored"),
        "local\n"
    );
    // Without the answer, --yes stops before step 1 and names it.
    let o = run_drctl(
        &state,
        &[
            "run",
            &rb,
            "--yes",
            "--new",
            "--set",
            &set("workdir", &work),
        ],
    );
    assert_eq!(code(&o), 2, "{}", both(&o));
    assert!(
        both(&o).contains("`pick-source` (--set pick-source=VALUE, or DRCTL_ANSWER_PICK_SOURCE"),
        "{}",
        both(&o)
    );
    assert!(!both(&o).contains("`offsite-key`"), "{}", both(&o));
}

// ---------------------------------------------------------------------------------------
// Retries follow the kind of failure
// ---------------------------------------------------------------------------------------

/// A missing kubeconfig cannot heal by waiting: one attempt, no "retrying in 10m", even
/// with a retry policy; a command that failed is tried again by the same policy.
#[test]
fn only_failures_that_can_heal_are_retried() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let rb = fixture("engine-no-retry").display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", rb.as_str(), "--yes", "--new", "--output", "json"];
        args.extend_from_slice(extra);
        let workdir = set("workdir", &work);
        args.extend(["--set", workdir.as_str()]);
        drctl_cmd(&state)
            .env("KUBECONFIG", tmp.path().join("no-such-kubeconfig"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("drctl runs")
    };
    let retries = |evs: &[Value], id: &str| {
        evs.iter()
            .filter(|e| e["event"] == "step_retry" && e["id"] == id)
            .count()
    };

    let o = run(&[]);
    assert_eq!(code(&o), 1, "{}", both(&o));
    let evs = events(&stdout(&o));
    assert_eq!(retries(&evs, "read-cluster"), 0, "{}", both(&o));
    let j = journal(&state, &run_id_of(&evs));
    assert_eq!(step_state(&j, "read-cluster"), "failed");
    assert!(
        step(&j, "read-cluster")["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot load the Kubernetes connection")),
        "{j}"
    );

    let o = run(&["--from", "flaky"]);
    assert_eq!(code(&o), 0, "{}", both(&o));
    let evs = events(&stdout(&o));
    assert_eq!(retries(&evs, "flaky"), 1, "{}", both(&o));
    let attempts = std::fs::read_to_string(work.join("flaky-attempts")).expect("attempts");
    assert_eq!(attempts.lines().count(), 2);
}
