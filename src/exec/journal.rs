//! The journal: one versioned JSON document per run, rewritten atomically (temp file,
//! fsync, rename, fsync of the directory) at every step transition. It never holds a
//! secret: secret inputs and outputs are recorded by name only.
//!
//! Storage goes through `JournalStore`, so a remote store (an S3 bucket with conditional
//! writes on `seq`) can replace the local directory.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "drctl-journal";
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "cannot create the state directory {path}: {source}; set --state-dir or DRCTL_STATE_DIR to a writable place"
    )]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the journal {path}: {source}; the step was not started")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the journal {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the journal {path} is corrupt ({detail}); this run cannot be resumed from it, other runs are unaffected, and its audit log {audit} still holds the history"
    )]
    Corrupt {
        path: PathBuf,
        audit: PathBuf,
        detail: String,
    },
    #[error(
        "the journal {path} is version {found}, this drctl reads version {VERSION}; use the drctl that wrote it"
    )]
    Version { path: PathBuf, found: u32 },
    /// State drctl will not trust or write (a link, another user's, writable by others).
    #[error("{source}")]
    Unsafe {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no run `{0}` in the state directory; `drctl runs` lists them")]
    NotFound(String),
}

/// Whether the run acts or rehearses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Run,
    Rehearsal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    /// Stopped by the operator (Ctrl-C, abort at a prompt).
    Aborted,
    /// Stopped waiting for the operator (a manual step under --yes, an interrupted step).
    Paused,
}

impl RunState {
    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Succeeded)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Aborted => "aborted",
            RunState::Paused => "paused",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
        }
    }
}

/// One step's record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    pub title: String,
    pub action: String,
    pub mutates: bool,
    /// Hash of the step's definition, to tell what changed on resume.
    pub fingerprint: String,
    pub state: StepState,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The action as it was performed (or would be, in a rehearsal), redacted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rendered: Vec<String>,
    /// Why it ended this way: an error, a skip reason, "already done (check passed)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last lines of its output, redacted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_excerpt: Vec<String>,
    /// Who decided: `operator`, `--yes`, `--confirm STEP`, `check`, `resume: marked done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// A rehearsal did not perform this mutation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rehearsed: bool,
}

/// The whole run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Journal {
    pub format: String,
    pub version: u32,
    /// Bumped at every write; a remote store makes it the condition of its write.
    pub seq: u64,
    pub run_id: String,
    pub runbook: String,
    pub runbook_title: String,
    /// `built-in` or the path of the file.
    pub runbook_source: String,
    pub fingerprint: String,
    pub mode: Mode,
    pub state: RunState,
    pub operator: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Non-secret inputs with their values.
    pub inputs: BTreeMap<String, String>,
    /// Names of secret inputs (asked again on resume).
    pub secret_inputs: Vec<String>,
    /// Non-secret captured outputs.
    pub outputs: BTreeMap<String, serde_json::Value>,
    /// Names of secret outputs (held in memory only).
    pub secret_outputs: Vec<String>,
    pub steps: Vec<StepRecord>,
    pub cleanup: Vec<StepRecord>,
    /// Problems a rehearsal found.
    #[serde(default)]
    pub problems: Vec<String>,
    /// Findings of a rehearsal that may only follow from a change it did not make.
    #[serde(default)]
    pub caveats: Vec<String>,
    /// Answers to decisions (choose/input steps), so a resume does not ask again.
    #[serde(default)]
    pub decisions: BTreeMap<String, String>,
    /// Connection choices made by steps (`kube.use`: kubeconfig, context).
    #[serde(default)]
    pub connections: BTreeMap<String, String>,
    /// Steps changed since the last write (through `step_mut`); not stored.
    #[serde(skip)]
    pub touched: std::collections::BTreeSet<String>,
}

/// Everything of a journal but its step lists, serialized as the head of the document.
#[derive(Serialize)]
struct Head<'a> {
    format: &'a str,
    version: u32,
    seq: u64,
    run_id: &'a str,
    runbook: &'a str,
    runbook_title: &'a str,
    runbook_source: &'a str,
    fingerprint: &'a str,
    mode: Mode,
    state: RunState,
    operator: &'a str,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    inputs: &'a BTreeMap<String, String>,
    secret_inputs: &'a [String],
    outputs: &'a BTreeMap<String, serde_json::Value>,
    secret_outputs: &'a [String],
    problems: &'a [String],
    caveats: &'a [String],
    decisions: &'a BTreeMap<String, String>,
    connections: &'a BTreeMap<String, String>,
}

impl Journal {
    /// A step's record, to change it (which marks it for re-serialization).
    pub fn step_mut(&mut self, id: &str) -> Option<&mut StepRecord> {
        self.touched.insert(id.to_owned());
        self.steps
            .iter_mut()
            .chain(self.cleanup.iter_mut())
            .find(|s| s.id == id)
    }

    pub fn step(&self, id: &str) -> Option<&StepRecord> {
        self.steps
            .iter()
            .chain(self.cleanup.iter())
            .find(|s| s.id == id)
    }

    /// The last step that started, for `drctl runs`.
    pub fn last_step(&self) -> Option<&StepRecord> {
        self.steps
            .iter()
            .filter(|s| s.started_at.is_some())
            .max_by_key(|s| s.started_at)
    }
}

/// Where journals live.
pub trait JournalStore {
    fn save(&self, journal: &mut Journal) -> Result<(), JournalError>;
    fn load(&self, run_id: &str) -> Result<Journal, JournalError>;
    /// Every run, newest first; unreadable journals are reported, not fatal.
    fn list(&self) -> Result<Vec<Result<Journal, JournalError>>, JournalError>;
    /// Where a human finds the run's files.
    fn describe(&self, run_id: &str) -> String;
}

/// Journals in `STATE_DIR/runs/RUN_ID/journal.json`.
#[derive(Debug)]
pub struct LocalStore {
    pub root: PathBuf,
    /// For the benchmark only: no writes at all.
    pub disabled: bool,
    /// Serialized step records of the run being written, so a write re-serializes only
    /// the steps that changed (a whole rewrite stays a copy of bytes, not of work).
    cache: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Clone for LocalStore {
    fn clone(&self) -> Self {
        LocalStore::new(self.root.clone())
    }
}

impl LocalStore {
    pub fn new(root: PathBuf) -> Self {
        LocalStore {
            root,
            disabled: false,
            cache: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join("runs").join(run_id)
    }

    pub fn journal_path(&self, run_id: &str) -> PathBuf {
        self.run_dir(run_id).join("journal.json")
    }

    pub fn audit_path(&self, run_id: &str) -> PathBuf {
        self.run_dir(run_id).join("audit.jsonl")
    }

    /// Creates the run's directory (mode 0700), then `secure_run` (which checks the state
    /// directory, `runs/` and the run's directory): what was made private comes back as
    /// notes for the operator.
    pub fn ensure_run_dir(&self, run_id: &str) -> Result<Tightened, JournalError> {
        check_run_id(run_id)?;
        let dir = self.run_dir(run_id);
        private_dirs()
            .create(&dir)
            .map_err(|source| JournalError::StateDir {
                path: dir.clone(),
                source,
            })?;
        self.secure_run(run_id)
    }
}

/// A run id is one name in `runs/`, never a path out of it.
fn check_run_id(run_id: &str) -> Result<(), JournalError> {
    if run_id.is_empty() || run_id == "." || run_id == ".." || run_id.contains('/') {
        return Err(JournalError::NotFound(run_id.to_owned()));
    }
    Ok(())
}

/// Creates directories (and parents) with mode 0700.
fn private_dirs() -> fs::DirBuilder {
    use std::os::unix::fs::DirBuilderExt;
    let mut b = fs::DirBuilder::new();
    b.recursive(true).mode(0o700);
    b
}

/// Create a directory (and parents) readable by the owner only, and refuse one that is not
/// safe to keep a run's state in: a symbolic link (writes would land where it points), a
/// directory of another user, or one that group or others may write to (they could plant
/// links or swap the journal).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    private_dirs().create(dir)?;
    check_private_dir(dir)
}

/// See `create_private_dir`: an existing directory must be a real one of this user that
/// group and others cannot write to (`open_own`).
pub fn check_private_dir(dir: &Path) -> std::io::Result<()> {
    open_own(dir, true).map(|_| ())
}

/// What `secure_run` found and did: a directory or file others could read, tightened.
pub type Tightened = Vec<String>;

/// Opens `path` without following a link (a directory when `dir`) and checks what it
/// opened: a real directory or regular file of this user that group and others cannot
/// write. Returns it with its mode, so what follows acts on the opened descriptor and a
/// link swapped in between cannot redirect it.
fn open_own(path: &Path, dir: bool) -> std::io::Result<(File, u32)> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let refuse = |why: String| std::io::Error::new(std::io::ErrorKind::PermissionDenied, why);
    // Not blocking on a planted FIFO either.
    let flags = libc::O_NOFOLLOW
        | if dir {
            libc::O_DIRECTORY
        } else {
            libc::O_NONBLOCK
        };
    let f = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(f) => f,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            return Err(refuse(format!(
                "{} is a symbolic link or not a {}; drctl keeps state only in real files and directories of its own (remove it, or choose another state directory with --state-dir)",
                path.display(),
                if dir { "directory" } else { "file" }
            )));
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    let what = if dir { "directory" } else { "file" };
    if (dir && !meta.is_dir()) || (!dir && !meta.is_file()) {
        return Err(refuse(format!(
            "{} is not a {what}; remove it, or choose another state directory with --state-dir",
            path.display()
        )));
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let me = unsafe { libc::getuid() };
    if meta.uid() != me {
        return Err(refuse(format!(
            "{} belongs to another user (uid {}); drctl trusts only state of its own: remove it as that user, or choose another state directory with --state-dir",
            path.display(),
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!(
            "{} is writable by group or others (mode {mode:04o}), so its content cannot be trusted; check it, then fix it with `chmod go-w {}`",
            path.display(),
            path.display()
        )));
    }
    Ok((f, mode))
}

/// `open_own`, then takes read access away from group and others (mode 0700 / 0600) when
/// they have it, saying so.
fn secure_path(path: &Path, dir: bool, notes: &mut Tightened) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (f, mode) = open_own(path, dir)?;
    let what = if dir { "directory" } else { "file" };
    if mode & 0o077 != 0 {
        let private = mode & !0o077;
        f.set_permissions(fs::Permissions::from_mode(private))?;
        notes.push(format!(
            "the state {what} {} was readable by group or others (mode {mode:04o}); drctl made it private (mode {private:04o})",
            path.display()
        ));
    }
    Ok(())
}

impl LocalStore {
    /// Checks the state a run is kept in before it is trusted or written: the state
    /// directory, `runs/`, the run's directory, and its journal and audit log when they
    /// exist. A link, another user's, or a group/other-writable one is refused with the fix;
    /// one only readable by others is made private, with a note for the operator.
    pub fn secure_run(&self, run_id: &str) -> Result<Tightened, JournalError> {
        check_run_id(run_id)?;
        let mut notes = Vec::new();
        let runs = self.root.join("runs");
        let run = self.run_dir(run_id);
        let dirs = [self.root.as_path(), runs.as_path(), run.as_path()];
        let files = [self.journal_path(run_id), self.audit_path(run_id)];
        for d in dirs {
            match secure_path(d, true, &mut notes) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(notes),
                r => r.map_err(|source| JournalError::Unsafe {
                    path: d.to_owned(),
                    source,
                })?,
            }
        }
        for f in &files {
            match secure_path(f, false, &mut notes) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                r => r.map_err(|source| JournalError::Unsafe {
                    path: f.clone(),
                    source,
                })?,
            }
        }
        Ok(notes)
    }
}

/// Write `bytes` to `path` atomically: a temp file in the same directory, fsync, rename
/// over the target, fsync of the directory so the rename itself survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("journal"),
        std::process::id()
    ));
    {
        // A leftover of this pid (or a planted link): removed, never written through.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

impl LocalStore {
    /// Compact JSON (`drctl report --format json` is the readable form), built from the
    /// head and the cached records of unchanged steps.
    fn serialize(&self, j: &mut Journal) -> Result<Vec<u8>, serde_json::Error> {
        let head = Head {
            format: &j.format,
            version: j.version,
            seq: j.seq,
            run_id: &j.run_id,
            runbook: &j.runbook,
            runbook_title: &j.runbook_title,
            runbook_source: &j.runbook_source,
            fingerprint: &j.fingerprint,
            mode: j.mode,
            state: j.state,
            operator: &j.operator,
            started_at: j.started_at,
            updated_at: j.updated_at,
            inputs: &j.inputs,
            secret_inputs: &j.secret_inputs,
            outputs: &j.outputs,
            secret_outputs: &j.secret_outputs,
            problems: &j.problems,
            caveats: &j.caveats,
            decisions: &j.decisions,
            connections: &j.connections,
        };
        let mut out = serde_json::to_vec(&head)?;
        out.pop(); // the closing brace
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        for (name, list, prefix) in [("steps", &j.steps, "s:"), ("cleanup", &j.cleanup, "c:")] {
            out.extend_from_slice(format!(",\"{name}\":[").as_bytes());
            for (i, rec) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let key = format!("{prefix}{}", rec.id);
                if j.touched.contains(&rec.id) || !cache.contains_key(&key) {
                    cache.insert(key.clone(), serde_json::to_string(rec)?);
                }
                if let Some(s) = cache.get(&key) {
                    out.extend_from_slice(s.as_bytes());
                }
            }
            out.push(b']');
        }
        out.push(b'}');
        j.touched.clear();
        Ok(out)
    }
}

impl JournalStore for LocalStore {
    fn save(&self, journal: &mut Journal) -> Result<(), JournalError> {
        journal.seq += 1;
        journal.updated_at = Utc::now();
        if self.disabled {
            return Ok(());
        }
        let path = self.journal_path(&journal.run_id);
        let mut bytes = self.serialize(journal).map_err(|e| JournalError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes).map_err(|source| JournalError::Write { path, source })
    }

    fn load(&self, run_id: &str) -> Result<Journal, JournalError> {
        let path = self.journal_path(run_id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(JournalError::NotFound(run_id.to_owned()));
            }
            Err(source) => return Err(JournalError::Read { path, source }),
        };
        parse(&path, &self.audit_path(run_id), &bytes)
    }

    fn list(&self) -> Result<Vec<Result<Journal, JournalError>>, JournalError> {
        let runs = self.root.join("runs");
        let rd = match fs::read_dir(&runs) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(JournalError::Read { path: runs, source }),
        };
        let mut ids: Vec<String> = rd
            .filter_map(Result::ok)
            .filter(|e| e.path().join("journal.json").exists())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        ids.sort();
        let mut out: Vec<Result<Journal, JournalError>> =
            ids.iter().map(|id| self.load(id)).collect();
        out.sort_by(|a, b| match (a, b) {
            (Ok(a), Ok(b)) => b.started_at.cmp(&a.started_at),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => std::cmp::Ordering::Equal,
        });
        Ok(out)
    }

    fn describe(&self, run_id: &str) -> String {
        self.run_dir(run_id).display().to_string()
    }
}

/// Parse journal bytes, telling corruption apart from a version this drctl cannot read.
pub fn parse(path: &Path, audit: &Path, bytes: &[u8]) -> Result<Journal, JournalError> {
    let corrupt = |detail: String| JournalError::Corrupt {
        path: path.to_owned(),
        audit: audit.to_owned(),
        detail,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(corrupt("not a drctl journal".to_owned()));
    }
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| corrupt("no version".to_owned()))?;
    if version != VERSION {
        return Err(JournalError::Version {
            path: path.to_owned(),
            found: version,
        });
    }
    serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attack (issue 19, items 3 and 4): a state directory others can write to, a run
    /// directory or journal temp file that is a planted symbolic link. Each is refused or
    /// removed; the victim file is never written or chmod'ed.
    #[test]
    fn state_is_never_written_through_links_or_into_shared_directories() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let victim = tmp.path().join("victim");
        fs::write(&victim, "precious").expect("victim");
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).expect("chmod");

        // A state directory writable by others.
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).expect("shared");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = LocalStore::new(shared.clone())
            .ensure_run_dir("r1")
            .expect_err("refused");
        assert!(e.to_string().contains("chmod go-w"), "{e}");

        // A run directory that is a link to elsewhere.
        let state = tmp.path().join("state");
        let store = LocalStore::new(state.clone());
        store.ensure_run_dir("r0").expect("a first run");
        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir(&elsewhere).expect("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, store.run_dir("r2")).expect("plant");
        let e = store.ensure_run_dir("r2").expect_err("refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");

        // The journal's temp file planted as a link to the victim.
        let target = state.join("journal.json");
        let tmp_name = state.join(format!(".journal.json.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp_name).expect("plant");
        write_atomic(&target, b"{}").expect("written");
        assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious");
        let mode = fs::metadata(&victim).expect("victim").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(fs::read_to_string(&target).expect("journal"), "{}");
    }

    fn journal(id: &str) -> Journal {
        Journal {
            format: FORMAT.into(),
            version: VERSION,
            seq: 0,
            run_id: id.into(),
            runbook: "t".into(),
            runbook_title: "T".into(),
            runbook_source: "built-in".into(),
            fingerprint: "f".into(),
            mode: Mode::Run,
            state: RunState::Running,
            operator: "op@host".into(),
            started_at: Utc::now(),
            updated_at: Utc::now(),
            inputs: BTreeMap::new(),
            secret_inputs: vec![],
            outputs: BTreeMap::new(),
            secret_outputs: vec![],
            steps: vec![],
            cleanup: vec![],
            problems: vec![],
            caveats: vec![],
            decisions: BTreeMap::new(),
            connections: BTreeMap::new(),
            touched: Default::default(),
        }
    }

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().to_owned());
        store.ensure_run_dir("r1").expect("dir");
        let mut j = journal("r1");
        store.save(&mut j).expect("save");
        store.save(&mut j).expect("save again");
        let back = store.load("r1").expect("load");
        assert_eq!(back.seq, 2);
        let leftovers: Vec<_> = fs::read_dir(store.run_dir("r1"))
            .expect("read")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("journal.json")]);
    }

    #[test]
    fn cached_serialization_equals_plain_serde() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().to_owned());
        store.ensure_run_dir("r1").expect("dir");
        let mut j = journal("r1");
        let rec = |id: &str| StepRecord {
            id: id.into(),
            title: "T".into(),
            action: "sleep".into(),
            mutates: false,
            fingerprint: "f".into(),
            state: StepState::Pending,
            attempts: 0,
            started_at: None,
            finished_at: None,
            rendered: vec![],
            message: None,
            output_excerpt: vec![],
            decided_by: None,
            rehearsed: false,
        };
        j.steps = vec![rec("a"), rec("b")];
        j.cleanup = vec![rec("c")];
        store.save(&mut j).expect("save");
        if let Some(r) = j.step_mut("b") {
            r.state = StepState::Succeeded;
        }
        store.save(&mut j).expect("save");
        let on_disk: serde_json::Value =
            serde_json::from_slice(&fs::read(store.journal_path("r1")).expect("read"))
                .expect("json");
        assert_eq!(on_disk, serde_json::to_value(&j).expect("value"));
        assert_eq!(
            store.load("r1").expect("load").steps[1].state,
            StepState::Succeeded
        );
    }

    /// Attack (issue 19, item 3): a run id that climbs out of `runs/` would have drctl check
    /// (and make private) directories that are not its own.
    #[test]
    fn a_run_id_is_never_a_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let store = LocalStore::new(state.clone());
        store.ensure_run_dir("r1").expect("dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        for id in ["..", "../..", "r1/../..", ""] {
            let e = store.secure_run(id).expect_err(id);
            assert!(matches!(e, JournalError::NotFound(_)), "{id}: {e}");
        }
        let mode = fs::metadata(dir.path()).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "a directory outside the state was left alone");
    }

    #[test]
    fn corrupt_and_truncated_journals_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().to_owned());
        store.ensure_run_dir("r1").expect("dir");
        let mut j = journal("r1");
        store.save(&mut j).expect("save");
        let path = store.journal_path("r1");
        let full = fs::read(&path).expect("read");
        fs::write(&path, &full[..full.len() / 2]).expect("truncate");
        let e = store.load("r1").expect_err("truncated");
        assert!(matches!(e, JournalError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("other runs are unaffected"));
        // Listing still works and reports the broken one.
        store.ensure_run_dir("r2").expect("dir");
        store.save(&mut journal("r2")).expect("save");
        let all = store.list().expect("list");
        assert_eq!(all.len(), 2);
        assert!(all[0].is_ok() && all[1].is_err());
    }

    #[test]
    fn other_versions_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("journal.json");
        let e = parse(&p, &p, br#"{"format":"drctl-journal","version":9}"#).expect_err("version");
        assert!(matches!(e, JournalError::Version { found: 9, .. }));
    }
}
