//! drctl on a pseudo-terminal (expectrl), shared by the interactive tests (tests/integration/
//! pty.rs and the e2e runs at a terminal): dialoguer reads keys from the terminal, so piped
//! stdin cannot drive it.
//!
//! Keys are sent only once the prompt is on the screen *and* drctl reads the terminal
//! (echo switched off by the prompt), so nothing typed is echoed or flushed by accident.

use std::io::ErrorKind;
use std::process::Command;
use std::time::{Duration, Instant};

use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession;
use expectrl::{Expect, Session};

pub const DOWN: &str = "\x1b[B";
pub const ENTER: &str = "\r";

/// drctl on a pseudo-terminal, with everything it wrote kept.
pub struct Pty {
    s: OsSession,
    /// Every byte drctl wrote, escape sequences included.
    pub raw: Vec<u8>,
    /// Where the next `expect` starts looking, in the text without escape sequences.
    cursor: usize,
    eof: bool,
    /// How long each wait (a text, the terminal read, the end) may take.
    timeout: Duration,
}

/// The text without terminal escape sequences; an unfinished sequence at the end is left
/// out (it is completed by a later read).
pub fn strip_ansi(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
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
    /// Start `cmd` (with `TERM=xterm`) on a terminal of `cols` columns and 40 rows; every
    /// wait fails after `timeout`.
    pub fn spawn(mut cmd: Command, cols: u16, timeout: Duration) -> Pty {
        cmd.env("TERM", "xterm");
        let mut s = Session::spawn(cmd).expect("drctl starts on a pseudo-terminal");
        s.get_process_mut()
            .set_window_size(cols, 40)
            .expect("set the terminal size");
        Pty {
            s,
            raw: Vec::new(),
            cursor: 0,
            eof: false,
            timeout,
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

    pub fn screen(&self) -> String {
        strip_ansi(&self.raw)
    }

    /// Wait for `needle` after what earlier calls matched.
    pub fn expect(&mut self, needle: &str) {
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
                "drctl ended before showing {needle:?}; the screen:\n{text}"
            );
            assert!(
                t.elapsed() < self.timeout,
                "no {needle:?} after {:?}; the screen:\n{text}",
                self.timeout
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
    fn wait_reading(&mut self, password: bool) {
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
                t.elapsed() < self.timeout,
                "drctl does not read the terminal; the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Type, once drctl listens.
    pub fn send(&mut self, keys: &str) {
        self.wait_reading(false);
        self.s.send(keys).expect("type on the terminal");
    }

    /// Type a secret at a masked prompt, once it is set up.
    pub fn send_secret(&mut self, keys: &str) {
        self.wait_reading(true);
        self.s.send(keys).expect("type on the terminal");
    }

    /// In a select list that has just been drawn, move down `n` items (waiting for each
    /// redraw) and press Enter.
    pub fn pick(&mut self, items: &[&str], n: usize) {
        for item in items.iter().take(n + 1).skip(1) {
            self.send(DOWN);
            self.expect(&format!("❯ {item}"));
        }
        self.send(ENTER);
    }

    /// At the confirmation `question`, Enter on its first item, "run".
    pub fn confirm_run(&mut self, question: &str) {
        self.expect(question);
        self.expect("❯ run");
        self.send(ENTER);
    }

    /// Wait for the end; the exit code.
    pub fn exit_code(&mut self) -> i32 {
        let t = Instant::now();
        while !self.eof {
            self.pump();
            assert!(
                t.elapsed() < self.timeout,
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
