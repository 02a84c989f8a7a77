//! One active run per runbook per state directory: `STATE_DIR/locks/NAME.lock`, created
//! exclusively, naming who holds it and since when. A lock whose process is gone on the
//! same host can be taken over explicitly.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("runbook `{runbook}` is being run by {} (pid {} on {}) since {}, run {}; wait for it, or run `drctl runs` to see it", .holder.operator, .holder.pid, .holder.host, .holder.since.format("%Y-%m-%d %H:%M:%S UTC"), .holder.run_id)]
    Held { runbook: String, holder: LockInfo },
    #[error("runbook `{runbook}` is locked by run {} of {}, whose process (pid {}) is gone; take the lock over with --take-over-lock after checking nobody else is working on it", .holder.run_id, .holder.operator, .holder.pid)]
    Stale { runbook: String, holder: LockInfo },
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    pub run_id: String,
    pub operator: String,
    pub host: String,
    pub pid: u32,
    pub since: DateTime<Utc>,
}

/// A held lock; released (file removed) on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    info: LockInfo,
    /// The dead holder whose lock this one replaced, if any (to tell the operator).
    pub taken_over: Option<LockInfo>,
}

impl RunLock {
    /// Take the lock of `runbook`, or say who holds it.
    pub fn acquire(
        state_dir: &Path,
        runbook: &str,
        info: LockInfo,
        take_over: bool,
    ) -> Result<RunLock, LockError> {
        let dir = state_dir.join("locks");
        let path = dir.join(format!("{runbook}.lock"));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        super::journal::create_private_dir(&dir).map_err(io)?;
        let body = serde_json::to_vec_pretty(&info).map_err(|e| io(std::io::Error::other(e)))?;
        let mut taken_over = None;
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    f.write_all(&body).map_err(io)?;
                    f.sync_all().map_err(io)?;
                    return Ok(RunLock {
                        path,
                        info,
                        taken_over,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = read(&path).map_err(io)?;
                    let Some(holder) = holder else {
                        // Unreadable or half-written by a process that died while
                        // creating it: nobody can hold it.
                        fs::remove_file(&path).map_err(io)?;
                        continue;
                    };
                    if holder.run_id == info.run_id && holder.pid == info.pid {
                        return Ok(RunLock {
                            path,
                            info,
                            taken_over,
                        });
                    }
                    let gone = holder.host == info.host && !process_alive(holder.pid);
                    // Resuming the very run whose process died here (a crash, a SIGKILL)
                    // needs no flag: nobody else can be working on it under that lock.
                    if gone && (take_over || holder.run_id == info.run_id) {
                        match fs::remove_file(&path) {
                            Ok(()) => {}
                            // Another resume removed it first; create_new settles who wins.
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(io(e)),
                        }
                        taken_over = Some(holder);
                        continue;
                    }
                    let runbook = runbook.to_owned();
                    return Err(if gone {
                        LockError::Stale { runbook, holder }
                    } else {
                        LockError::Held { runbook, holder }
                    });
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(io(std::io::Error::other(
            "the lock changed hands while taking it",
        )))
    }

    pub fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Only remove the lock if it is still ours.
        if let Ok(Some(h)) = read(&self.path)
            && h == self.info
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn read(path: &Path) -> std::io::Result<Option<LockInfo>> {
    match fs::read(path) {
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The lock's holder of a runbook, if another live process on this host (or any process
/// on another host) holds it: `run` refuses before asking anything.
pub fn live_holder(state_dir: &Path, runbook: &str, host: &str) -> Option<LockInfo> {
    let path = state_dir.join("locks").join(format!("{runbook}.lock"));
    let holder = read(&path).ok().flatten()?;
    let alive = holder.host != host || process_alive(holder.pid);
    alive.then_some(holder)
}

/// Whether a process of this host is still alive (signal 0 probes without signalling);
/// a zombie, dead but not yet reaped, counts as gone.
pub fn process_alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(p, 0) };
    let exists = r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    // /proc/PID/stat: "PID (comm) STATE ..."; comm may hold spaces and parentheses.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_none_or(|state| state != "Z"),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(run: &str, pid: u32) -> LockInfo {
        LockInfo {
            run_id: run.into(),
            operator: "op@host".into(),
            host: "host".into(),
            pid,
            since: Utc::now(),
        }
    }

    #[test]
    fn second_run_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = std::process::id();
        let lock = RunLock::acquire(dir.path(), "rb", info("r1", me), false).expect("first");
        let e = RunLock::acquire(dir.path(), "rb", info("r2", me), false).expect_err("held");
        assert!(matches!(e, LockError::Held { .. }));
        assert!(e.to_string().contains("run r1"), "{e}");
        drop(lock);
        RunLock::acquire(dir.path(), "rb", info("r2", me), false).expect("free again");
    }

    #[test]
    fn a_dead_holder_is_taken_over_only_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A pid that cannot exist (above pid_max).
        let dead = info("r1", 99_999_999);
        let stale = RunLock::acquire(dir.path(), "rb", dead, false).expect("taken");
        std::mem::forget(stale);
        let me = std::process::id();
        let e = RunLock::acquire(dir.path(), "rb", info("r2", me), false).expect_err("stale");
        assert!(matches!(e, LockError::Stale { .. }), "{e}");
        let l = RunLock::acquire(dir.path(), "rb", info("r2", me), true).expect("taken over");
        assert_eq!(l.taken_over.as_ref().map(|h| h.pid), Some(99_999_999));
    }

    #[test]
    fn resuming_the_run_of_a_dead_holder_takes_its_lock_without_the_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::forget(
            RunLock::acquire(dir.path(), "rb", info("r1", 99_999_999), false).expect("taken"),
        );
        let me = std::process::id();
        let l = RunLock::acquire(dir.path(), "rb", info("r1", me), false).expect("same run");
        assert_eq!(l.taken_over.as_ref().map(|h| h.run_id.as_str()), Some("r1"));
        // A live holder of the same run (another terminal) is still refused.
        let e = RunLock::acquire(dir.path(), "rb", info("r1", 1), false).expect_err("held");
        assert!(matches!(e, LockError::Held { .. }), "{e}");
    }
}
