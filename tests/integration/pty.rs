//! Interactive runs through a pseudo-terminal (expectrl): dialoguer reads keys from the
//! terminal, so piped stdin cannot drive it. The tests answer a confirmation, a skip, a
//! masked secret prompt, a decision and a manual step, and abort a run mid-way.
//!
//! Keys are sent only once the prompt is on the screen *and* drctl reads the terminal
//! (echo switched off by the prompt), so nothing typed is echoed or flushed by accident.

use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession;
use expectrl::{Expect, Session};
use serde_json::Value;

use super::engine::{
    Background, both, code, count_lines, descendants, fixture, journal, journal_path, only_run,
    run_drctl, run_id_of, signal, step, step_state, wait_for, wait_gone,
};
use super::root;

const TIMEOUT: Duration = Duration::from_secs(60);
const DOWN: &str = "\x1b[B";
const ENTER: &str = "\r";

/// drctl on a pseudo-terminal, with everything it wrote kept.
struct Pty {
    s: OsSession,
    raw: Vec<u8>,
    /// Where the next `expect` starts looking, in the text without escape sequences.
    cursor: usize,
    eof: bool,
}

/// The text without terminal escape sequences; an unfinished sequence at the end is left
/// out (it is completed by a later read).
fn strip_ansi(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match it.next() {
            // CSI: parameters, then a final byte in @..~
            Some('[') => loop {
                match it.next() {
                    Some(f) if ('@'..='~').contains(&f) => break,
                    Some(_) => {}
                    None => return out,
                }
            },
            // OSC: up to BEL or ESC \
            Some(']') => loop {
                match it.next() {
                    Some('\x07') => break,
                    Some('\x1b') => {
                        it.next();
                        break;
                    }
                    Some(_) => {}
                    None => return out,
                }
            },
            Some(_) => {}
            None => return out,
        }
    }
    out
}

impl Pty {
    fn spawn(state: &Path, args: &[&str], envs: &[(&str, &str)]) -> Pty {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_drctl"));
        cmd.args(args)
            .current_dir(root())
            .env_remove("DRCTL_RUNBOOKS")
            .env("TERM", "xterm")
            .env("NO_COLOR", "1")
            .env("DRCTL_STATE_DIR", state);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("DRCTL_INPUT_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut s = Session::spawn(cmd).expect("drctl starts on a pseudo-terminal");
        s.get_process_mut()
            .set_window_size(120, 40)
            .expect("set the terminal size");
        Pty {
            s,
            raw: Vec::new(),
            cursor: 0,
            eof: false,
        }
    }

    /// Read whatever is there without blocking.
    fn pump(&mut self) {
        let mut buf = [0u8; 4096];
        while !self.eof {
            match self.s.try_read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EIO: the other side of the terminal is closed.
                Err(_) => self.eof = true,
            }
        }
    }

    fn screen(&self) -> String {
        strip_ansi(&self.raw)
    }

    /// Wait for `needle` after what earlier calls matched.
    fn expect(&mut self, needle: &str) {
        let t = Instant::now();
        loop {
            self.pump();
            let text = self.screen();
            if let Some(i) = text.get(self.cursor..).and_then(|t| t.find(needle)) {
                self.cursor += i + needle.len();
                return;
            }
            assert!(
                !self.eof,
                "drctl ended before showing {needle:?}; the screen:\n{}",
                text
            );
            assert!(
                t.elapsed() < TIMEOUT,
                "no {needle:?} after {TIMEOUT:?}; the screen:\n{}",
                text
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether a thread of drctl is blocked in `read` on its terminal. The pseudo-terminal
    /// starts with echo off, so "echo off" alone does not prove a prompt has set up (a
    /// password prompt's TCSAFLUSH discards what was typed before it).
    fn reading_terminal(&self) -> bool {
        let pid = self.s.get_process().pid().as_raw();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.filter_map(Result::ok).any(|t| {
            let Ok(sc) = std::fs::read_to_string(t.path().join("syscall")) else {
                return false;
            };
            let mut f = sc.split_whitespace();
            // x86_64: read is syscall 0; the first argument is the fd (hex).
            if f.next() != Some("0") {
                return false;
            }
            let Some(fd) = f
                .next()
                .and_then(|x| i64::from_str_radix(x.trim_start_matches("0x"), 16).ok())
            else {
                return false;
            };
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|l| {
                    let l = l.to_string_lossy();
                    l.starts_with("/dev/pts/") || l == "/dev/tty"
                })
                .unwrap_or(false)
        })
    }

    /// Wait until drctl reads the terminal: its prompt switched echo off (and, for a
    /// password prompt, which discards earlier input, it is blocked reading the terminal).
    fn wait_reading_for(&mut self, password: bool) {
        let t = Instant::now();
        loop {
            self.pump();
            if !self
                .s
                .get_process()
                .get_echo()
                .expect("read the terminal mode")
                && (!password || self.reading_terminal())
            {
                return;
            }
            assert!(!self.eof, "drctl ended; the screen:\n{}", self.screen());
            assert!(
                t.elapsed() < TIMEOUT,
                "drctl does not read the terminal; the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_reading(&mut self) {
        self.wait_reading_for(false);
    }

    /// Type, once drctl listens.
    fn send(&mut self, keys: &str) {
        self.wait_reading();
        self.s.send(keys).expect("type on the terminal");
    }

    /// Type a secret at a masked prompt, once it is set up.
    fn send_secret(&mut self, keys: &str) {
        self.wait_reading_for(true);
        self.s.send(keys).expect("type on the terminal");
    }

    /// In a select list that has just been drawn, move down `n` items (waiting for each
    /// redraw) and press Enter.
    fn pick(&mut self, items: &[&str], n: usize) {
        for item in items.iter().take(n + 1).skip(1) {
            self.send(DOWN);
            self.expect(&format!("❯ {item}"));
        }
        self.send(ENTER);
    }

    /// Wait for the end; the exit code.
    fn exit_code(&mut self) -> i32 {
        let t = Instant::now();
        while !self.eof {
            self.pump();
            assert!(
                t.elapsed() < TIMEOUT,
                "drctl did not end; the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        match self.s.get_process().wait().expect("wait for drctl") {
            WaitStatus::Exited(_, c) => c,
            other => panic!("drctl ended with {other:?}; the screen:\n{}", self.screen()),
        }
    }
}

fn secret() -> String {
    // Unique per test run; at least 12 characters; never on a command line.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("PTY-secret-{:x}-{:x}", t, std::process::id())
}

const CONFIRM_ITEMS: [&str; 4] = ["run", "skip", "abort", "details"];

/// Start engine-pty.yaml on a terminal and answer the masked secret prompt.
fn start(state: &Path, work: &Path, token: &str) -> Pty {
    let rb = fixture("engine-pty").display().to_string();
    let wd = format!("workdir={}", work.display());
    let mut p = Pty::spawn(
        state,
        &["run", &rb, "--set", &wd],
        &[("ENGINE_TEST_EXPECTED_TOKEN", token)],
    );
    p.expect("token (the API token)");
    p.send_secret(&format!("{token}{ENTER}"));
    p
}

#[test]
fn an_operator_answers_every_kind_of_prompt_on_a_terminal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let token = secret();
    let mut p = start(&state, &work, &token);

    // The read-only step runs without a question; the mutation asks: Enter on "run".
    p.expect("Run step `apply` (shell)?");
    p.expect("❯ run");
    p.send(ENTER);
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

#[test]
fn an_operator_aborts_mid_run_and_the_run_can_be_resumed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("workdir");
    let token = secret();
    let mut p = start(&state, &work, &token);

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
    let o = super::engine::drctl_cmd(&state)
        .args([
            "resume",
            &run_id,
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
    assert!(work.join("apply.marker").exists());
    assert_eq!(
        std::fs::read_to_string(work.join("fetch.marker")).expect("fetch ran"),
        "local\n"
    );
    let j: Value = journal(&state, &run_id);
    assert_eq!(j["state"], "succeeded", "{j:#}");
    assert_eq!(step_state(&j, "look"), "succeeded");
    let runs = run_drctl(&state, &["runs"]);
    assert!(super::stdout(&runs).contains(&run_id));
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

    // The operator resumes on a terminal, checks, and says it is done.
    let mut p = Pty::spawn(&state, &["resume", &run_id, "--take-over-lock"], &[]);
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
        p.expect(&format!("Run step `{s}` (shell)?"));
        p.expect("❯ run");
        p.send(ENTER);
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
