//! Processes of a test: which are alive, a process's descendants and process group,
//! signals, and waiting for a condition or for processes to end.

use std::time::{Duration, Instant};

/// Whether a process with this PID exists (signal 0); a zombie counts.
pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for the process; no signal is sent.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// One line of `/proc/PID/stat`.
struct ProcStat {
    pid: i32,
    state: char,
    ppid: i32,
    pgrp: i32,
}

fn proc_stats() -> Vec<ProcStat> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let rest = &s[s.rfind(')')? + 1..];
            let mut f = rest.split_whitespace();
            let state = f.next()?.chars().next()?;
            let ppid = f.next()?.parse().ok()?;
            let pgrp = f.next()?.parse().ok()?;
            Some(ProcStat {
                pid,
                state,
                ppid,
                pgrp,
            })
        })
        .collect()
}

/// Every live descendant of `pid`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let all = proc_stats();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for s in all.iter().filter(|s| s.ppid == p && s.state != 'Z') {
            out.push(s.pid);
            frontier.push(s.pid);
        }
    }
    out
}

/// Live (not zombie) processes of a process group.
pub fn group_members(pgid: i32) -> Vec<i32> {
    proc_stats()
        .into_iter()
        .filter(|s| s.pgrp == pgid && s.state != 'Z')
        .map(|s| s.pid)
        .collect()
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    proc_stats().iter().any(|s| s.pid == pid && s.state != 'Z')
}

/// Wait until none of `pids` is alive; how long it took. `limit` only turns a hang into a
/// failure: on a busy machine it is at least a minute (issue 17).
pub fn wait_gone(pids: &[i32], limit: Duration) -> Duration {
    let limit = limit.max(FAIL_NOT_HANG);
    let t = Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            t.elapsed() < limit,
            "processes {pids:?} still alive after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    // SAFETY: signalling a child process this test started.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The shortest deadline of `wait_for` and `wait_gone`: they assert that something happens,
/// never how fast, so a loaded machine must not fail them.
const FAIL_NOT_HANG: Duration = Duration::from_secs(60);

/// Poll `f` until it returns Some, or fail after `limit` (at least a minute; see above).
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let limit = limit.max(FAIL_NOT_HANG);
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
