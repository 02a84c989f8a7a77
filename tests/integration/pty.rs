//! Interactive runs through a pseudo-terminal (expectrl): dialoguer reads keys from the
//! terminal, so piped stdin cannot drive it. The tests answer a confirmation, a skip, a
//! masked secret prompt, a decision and a manual step, and abort a run mid-way.
//!
//! Keys are sent only once the prompt is on the screen *and* drctl reads the terminal
//! (echo switched off by the prompt), so nothing typed is echoed or flushed by accident.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::term::{ENTER, Pty};
use crate::support::cli::{
    Background, both, code, count_lines, drctl_cmd, fixture, journal, journal_path, only_run,
    run_drctl, run_id_of, step, step_state, unique,
};
use crate::support::process::{descendants, signal, wait_for, wait_gone};

const TIMEOUT: Duration = Duration::from_secs(60);

/// drctl with `args` on a 120-column terminal, state in `state`, no input from the
/// environment but `envs`.
fn spawn(state: &Path, args: &[&str], envs: &[(&str, &str)]) -> Pty {
    let mut cmd = drctl_cmd(state);
    cmd.args(args).envs(envs.iter().copied());
    Pty::spawn(cmd, 120, TIMEOUT)
}

const CONFIRM_ITEMS: [&str; 4] = ["run", "skip", "abort", "details"];

/// Start engine-pty.yaml on a terminal. Its secret is asked when `apply`, the step
/// that uses it, is about to run (`answer_token`).
fn start(state: &Path, work: &Path, token: &str) -> Pty {
    let rb = fixture("engine-pty").display().to_string();
    let wd = format!("workdir={}", work.display());
    spawn(
        state,
        &["run", &rb, "--set", &wd],
        &[("ENGINE_TEST_EXPECTED_TOKEN", token)],
    )
}

/// engine-pty.yaml started in fresh state and scratch directories, with its secret.
struct Started {
    _tmp: tempfile::TempDir,
    state: std::path::PathBuf,
    work: std::path::PathBuf,
    /// Unique per test run; at least 12 characters; never on a command line.
    token: String,
    p: Pty,
}

fn start_fresh() -> Started {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let token = unique("PTY-secret");
    let p = start(&state, &work, &token);
    Started {
        _tmp: tmp,
        state,
        work,
        token,
        p,
    }
}

/// The masked prompt for the secret, once `apply` is confirmed.
fn answer_token(p: &mut Pty, token: &str) {
    p.expect("token (the API token), needed by step `apply`");
    p.send_secret(&format!("{token}{ENTER}"));
}

#[test]
fn an_operator_answers_every_kind_of_prompt_on_a_terminal() {
    let Started {
        _tmp,
        state,
        work,
        token,
        mut p,
    } = start_fresh();

    // The read-only step runs without a question; the mutation asks: Enter on "run".
    p.confirm_run("Run step `apply` (shell)?");
    answer_token(&mut p, &token);
    // The next mutation: arrow down to "skip", Enter.
    p.expect("Run step `risky` (shell)?");
    p.expect("❯ run");
    p.pick(&CONFIRM_ITEMS, 1);
    // A decision: the second option.
    p.expect("Which backup do we restore?");
    p.expect("❯ local: the NAS copy");
    p.pick(&["local: the NAS copy", "offsite: the S3 copy"], 1);
    // A manual step: "done".
    p.expect("Manual step `swap-disk`: is it done?");
    p.expect("❯ done");
    p.send(ENTER);
    p.expect("finished:");
    let exit = p.exit_code();
    let screen = p.screen();
    assert_eq!(exit, 0, "{screen}");

    assert!(
        !String::from_utf8_lossy(&p.raw).contains(&token),
        "the masked secret was shown on the terminal:\n{screen}"
    );
    assert!(
        !screen.contains("Run step `look`"),
        "a read-only step runs without a question:\n{screen}"
    );
    assert!(work.join("look.marker").exists());
    assert!(
        work.join("apply.marker").exists(),
        "`apply` ran with the typed secret in its environment:\n{screen}"
    );
    assert!(
        !work.join("risky.marker").exists(),
        "the skipped step did not run"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("fetch.marker")).expect("fetch ran"),
        "offsite\n",
        "the chosen branch"
    );
    assert!(work.join("finish.marker").exists());

    let run_id = only_run(&state);
    let j = journal(&state, &run_id);
    assert_eq!(j["state"], "succeeded", "{j:#}");
    assert_eq!(step(&j, "apply")["decided_by"], "operator");
    assert_eq!(step_state(&j, "risky"), "skipped");
    assert_eq!(step(&j, "risky")["message"], "skipped by the operator");
    assert_eq!(j["decisions"]["restore-source"], "offsite");
    assert_eq!(step_state(&j, "swap-disk"), "succeeded");
    assert_eq!(step(&j, "swap-disk")["decided_by"], "operator");
    assert_eq!(j["secret_inputs"], serde_json::json!(["token"]));
    assert!(
        !std::fs::read_to_string(journal_path(&state, &run_id))
            .expect("journal")
            .contains(&token)
    );
}

/// Issue 18: an empty or too short secret is asked again with the reason, never ends
/// the run; the secret is asked only when the step that uses it is about to run.
#[test]
fn an_empty_or_short_secret_is_asked_again_with_the_reason() {
    let Started {
        _tmp,
        state: _,
        work,
        token,
        mut p,
    } = start_fresh();
    // `look` runs before anything is asked: the secret is not needed yet.
    p.expect("Run step `apply` (shell)?");
    assert!(work.join("look.marker").exists(), "{}", p.screen());
    p.expect("❯ run");
    p.send(ENTER);
    p.expect("token (the API token), needed by step `apply`");
    p.send_secret(ENTER);
    p.expect("nothing was entered; try again (Ctrl-C aborts)");
    p.send_secret(&format!("ab{ENTER}"));
    p.expect("at least 4 characters");
    p.send_secret(&format!("{token}{ENTER}"));
    // Accepted: `apply` ran with it; abort at the next question.
    p.expect("Run step `risky` (shell)?");
    p.expect("❯ run");
    p.pick(&CONFIRM_ITEMS, 2);
    let exit = p.exit_code();
    let screen = p.screen();
    assert_eq!(exit, 130, "{screen}");
    assert!(work.join("apply.marker").exists(), "{screen}");
    assert!(!String::from_utf8_lossy(&p.raw).contains(&token));
}

#[test]
fn an_operator_aborts_mid_run_and_the_run_can_be_resumed() {
    let Started {
        _tmp,
        state,
        work,
        token,
        mut p,
    } = start_fresh();

    p.expect("Run step `apply` (shell)?");
    p.expect("❯ run");
    p.pick(&CONFIRM_ITEMS, 2);
    let exit = p.exit_code();
    let screen = p.screen();
    assert_eq!(exit, 130, "abort → exit 130\n{screen}");
    assert!(screen.contains("aborted"), "{screen}");
    assert!(!String::from_utf8_lossy(&p.raw).contains(&token));
    assert!(work.join("look.marker").exists());
    assert!(
        !work.join("apply.marker").exists(),
        "aborted before `apply`"
    );

    let run_id = only_run(&state);
    let j = journal(&state, &run_id);
    assert_eq!(j["state"], "aborted", "{j:#}");
    assert_eq!(step_state(&j, "look"), "succeeded");
    assert_eq!(step_state(&j, "apply"), "pending");

    // Resumable: the secret is asked again (here from the environment), the rest runs.
    let o = drctl_cmd(&state)
        .args([
            "resume",
            &run_id,
            "--runbook",
            &fixture("engine-pty").display().to_string(),
            "--yes",
            "--set",
            "restore-source=local",
            "--confirm",
            "swap-disk",
        ])
        .env("DRCTL_INPUT_TOKEN", &token)
        .env("ENGINE_TEST_EXPECTED_TOKEN", &token)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("drctl runs");
    assert_eq!(code(&o), 0, "{}", both(&o));
    // The summary says the run was resumed and what the aborted process had done.
    assert!(
        both(&o).contains("finished")
            && both(&o).contains("(resumed: 1 of the done and skipped steps were before it)"),
        "{}",
        both(&o)
    );
    assert!(work.join("apply.marker").exists());
    assert_eq!(
        std::fs::read_to_string(work.join("fetch.marker")).expect("fetch ran"),
        "local\n"
    );
    let j: Value = journal(&state, &run_id);
    assert_eq!(j["state"], "succeeded", "{j:#}");
    assert_eq!(step_state(&j, "look"), "succeeded");
    let runs = run_drctl(&state, &["runs"]);
    assert!(crate::support::cli::stdout(&runs).contains(&run_id));
}

#[test]
fn an_operator_marks_an_interrupted_step_done_after_checking() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let log = tmp.path().join("steps.log");
    let rb = fixture("engine-crash").display().to_string();
    let lg = format!("log={}", log.display());
    // drctl dies (SIGKILL) in the middle of the non-idempotent step `long`.
    let mut bg = Background::start(
        &state,
        &["run", &rb, "--yes", "--output", "json", "--set", &lg],
    );
    bg.until("`long` starts", |e| {
        e["event"] == "step_started" && e["id"] == "long"
    });
    let run_id = run_id_of(&bg.seen);
    wait_for("`long` to write its first line", TIMEOUT, || {
        (count_lines(&log, "start") == 1).then_some(())
    });
    let kids = descendants(i32::try_from(bg.pid()).expect("pid"));
    signal(bg.pid(), libc::SIGKILL);
    let _ = bg.finish();
    wait_gone(&kids, TIMEOUT);
    assert_eq!(
        count_lines(&log, "end"),
        0,
        "the step's process died with drctl (it is started with PR_SET_PDEATHSIG)"
    );

    // The operator resumes on a terminal, confirms the runbook file the journal names,
    // checks, and says the step is done.
    let mut p = spawn(&state, &["resume", &run_id], &[]);
    p.expect("began with the runbook file ");
    p.expect("engine-crash.yaml, as its journal records");
    p.expect("Continue it with that file?");
    p.send("y");
    p.expect("Step `long` (Long (runs once, takes a while)) was running when drctl stopped");
    p.expect("What now?");
    p.expect("❯ re-run it");
    p.pick(
        &[
            "re-run it",
            "mark it done (I checked)",
            "skip it",
            "abort",
            "details",
        ],
        1,
    );
    for s in ["five", "six"] {
        p.confirm_run(&format!("Run step `{s}` (shell)?"));
    }
    let exit = p.exit_code();
    let screen = p.screen();
    assert_eq!(exit, 0, "{screen}");
    assert_eq!(count_lines(&log, "start"), 1, "`long` was not run again");
    assert_eq!(count_lines(&log, "end"), 0, "`long` was not run again");
    assert_eq!(count_lines(&log, "six"), 1);
    let j = journal(&state, &run_id);
    assert_eq!(j["state"], "succeeded", "{j:#}");
    assert_eq!(step_state(&j, "long"), "succeeded");
    assert_eq!(step(&j, "long")["decided_by"], "operator");
    assert!(
        step(&j, "long")["message"]
            .as_str()
            .is_some_and(|m| m.contains("marked done by the operator")),
        "{j:#}"
    );
}

/// Prerequisites drctl cannot check are confirmed by the operator before step 1: "no"
/// ends the run before anything changed; its resume asks again; "yes" starts it.
#[test]
fn an_operator_confirms_the_prerequisites_drctl_cannot_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let backup = tmp.path().join("backup.db");
    std::fs::write(&backup, "b").expect("backup");
    let rb = fixture("engine-prereq").display().to_string();
    let sets = [
        format!("workdir={}", work.display()),
        format!("backup={}", backup.display()),
    ];
    let mut p = spawn(
        &state,
        &["run", &rb, "--set", &sets[0], "--set", &sets[1]],
        &[],
    );
    p.expect("have at hand before you start: The unseal key, from the password manager");
    p.expect("prerequisite met: The backup file exists");
    p.expect("Do you have everything listed above at hand?");
    p.send("n");
    let exit = p.exit_code();
    let screen = p.screen();
    assert_eq!(exit, 130, "not ready → aborted before step 1\n{screen}");
    assert!(screen.contains("the run did not start"), "{screen}");
    assert!(!work.join("change-ran").exists(), "step 1 ran:\n{screen}");
    assert!(
        !work.join("cleanup-ran").exists(),
        "cleanup ran with nothing to undo"
    );
    let run_id = only_run(&state);
    assert_eq!(step_state(&journal(&state, &run_id), "change"), "pending");

    let mut p = spawn(&state, &["resume", &run_id, "--runbook", &rb], &[]);
    p.expect("Do you have everything listed above at hand?");
    p.send("y");
    p.confirm_run("Run step `change` (shell)?");
    p.expect("finished:");
    let exit = p.exit_code();
    let screen = p.screen();
    assert_eq!(exit, 0, "{screen}");
    assert!(work.join("change-ran").exists(), "{screen}");
}
