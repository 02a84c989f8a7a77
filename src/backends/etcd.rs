//! The etcd backend: `etcd.snapshot-status` and `etcd.snapshot-restore`, on this machine
//! or on a host over ssh (the ssh backend's `Target`). `etcdutl` where it exists (etcd 3.5
//! and newer ship it; 3.6 removed the snapshot commands from etcdctl), else
//! `ETCDCTL_API=3 etcdctl`.
//!
//! The restore is the first seed's procedure, step for step: `snapshot restore SNAP
//! --data-dir=RESTORE`, `rm -rf DATA`, `mv RESTORE DATA`; before it, the snapshot's
//! integrity is checked (readable by etcd, keys, and its SHA-256 trailer) and a left-over
//! RESTORE or an etcd still using DATA stops the step.

use super::ssh::{Exec, RunSpec, SshError, SshOptions, Target, exit_text, last_line, sudo_problem};
use crate::exec::backend::{ActionCtx, ActionError, ActionResult, ErrorKind};

use crate::runbook::action::{EtcdSnapshotRestore, EtcdSnapshotStatus, Sink};
use crate::runbook::template::shell_quote;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NoTool(String),
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl From<EtcdError> for ActionError {
    fn from(e: EtcdError) -> Self {
        match e {
            EtcdError::Ssh(s) => s.into(),
            other => {
                let kind = match &other {
                    // Waiting does not install a tool, repair a snapshot or change what
                    // the step refused to overwrite.
                    EtcdError::Invalid(_)
                    | EtcdError::NoTool(_)
                    | EtcdError::Corrupt(_)
                    | EtcdError::Refused(_) => ErrorKind::Invalid,
                    EtcdError::Missing(_) => ErrorKind::NotFound,
                    EtcdError::Failed(_) | EtcdError::Ssh(_) => ErrorKind::Failed,
                };
                ActionError::of_kind(kind, other.to_string())
            }
        }
    }
}

pub struct EtcdBackend {
    ssh: SshOptions,
}

impl EtcdBackend {
    pub fn from_env() -> Self {
        EtcdBackend::new(SshOptions::from_env())
    }

    pub fn new(ssh: SshOptions) -> Self {
        EtcdBackend { ssh }
    }

    pub async fn perform(
        &self,
        op: EtcdOp<'_>,
        ctx: &ActionCtx<'_>,
    ) -> Result<ActionResult, ActionError> {
        match op {
            EtcdOp::SnapshotStatus(a) => status(&self.ssh, a, ctx).await.map_err(Into::into),
            EtcdOp::SnapshotRestore(a) => restore(&self.ssh, a, ctx).await.map_err(Into::into),
        }
    }
}

/// The actions this backend performs (routed here by `exec::engine::perform`).
pub enum EtcdOp<'a> {
    SnapshotStatus(&'a EtcdSnapshotStatus),
    SnapshotRestore(&'a EtcdSnapshotRestore),
}

fn render(ctx: &ActionCtx<'_>, t: &crate::runbook::Text) -> Result<String, EtcdError> {
    ctx.values
        .render(t, Sink::Shown)
        .map_err(|e| EtcdError::Invalid(e.to_string()))
}

fn render_opt(
    ctx: &ActionCtx<'_>,
    t: Option<&crate::runbook::Text>,
) -> Result<Option<String>, EtcdError> {
    t.map(|t| render(ctx, t)).transpose()
}

/// Which program reads and restores snapshots on the target.
#[derive(Clone, Debug)]
struct Tool {
    /// `etcdutl` or `etcdctl`.
    name: &'static str,
    /// Its first `version` line.
    version: String,
}

impl Tool {
    fn status_cmd(&self, snap: &str) -> String {
        match self.name {
            "etcdutl" => format!("etcdutl snapshot status {} -w json", shell_quote(snap)),
            _ => format!(
                "ETCDCTL_API=3 etcdctl snapshot status {} -w json",
                shell_quote(snap)
            ),
        }
    }

    fn restore_cmd(&self, snap: &str, dir: &str) -> String {
        let flag = shell_quote(&format!("--data-dir={dir}"));
        match self.name {
            "etcdutl" => format!("etcdutl snapshot restore {} {flag}", shell_quote(snap)),
            _ => format!(
                "ETCDCTL_API=3 etcdctl snapshot restore {} {flag}",
                shell_quote(snap)
            ),
        }
    }
}

/// What the probe script printed: the tool on the target and the snapshot file's state
/// (`missing`, `other` or `file` with its size).
#[derive(Debug)]
pub(crate) struct Probe {
    tool: Option<Tool>,
    file: &'static str,
    size: u64,
}

/// Reads the probe's `tool NAME VERSION...` and `snap file|other|missing` lines.
pub(crate) fn parse_probe(stdout: &str) -> Probe {
    let mut probe = Probe {
        tool: None,
        file: "missing",
        size: 0,
    };
    for l in stdout.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["tool", "none"] => {}
            ["tool", name, rest @ ..] => {
                let version = rest.last().copied().unwrap_or("version unknown").to_owned();
                probe.tool = Some(Tool {
                    name: if *name == "etcdutl" {
                        "etcdutl"
                    } else {
                        "etcdctl"
                    },
                    version,
                });
            }
            ["snap", "file", n] => {
                probe.file = "file";
                probe.size = n.parse().unwrap_or(0);
            }
            ["snap", "other"] => probe.file = "other",
            _ => {}
        }
    }
    probe
}

/// The fields of `snapshot status -w json` drctl uses.
#[derive(Debug)]
pub(crate) struct StatusJson {
    hash: u64,
    revision: i64,
    total_keys: u64,
    total_size: u64,
    version: Option<String>,
}

/// Why `snapshot status -w json` output could not be read.
#[derive(Debug)]
pub(crate) enum StatusProblem {
    /// No line of the output is a JSON object.
    NoJson,
    /// JSON without the numbers drctl needs.
    Unexpected(serde_json::Value),
}

/// Reads the first JSON line of `snapshot status -w json`.
pub(crate) fn parse_status(stdout: &str) -> Result<StatusJson, StatusProblem> {
    let json = stdout
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .ok_or(StatusProblem::NoJson)?;
    let num = |k: &str| json.get(k).and_then(serde_json::Value::as_u64);
    let (Some(hash), Some(total_keys), Some(total_size)) =
        (num("hash"), num("totalKey"), num("totalSize"))
    else {
        return Err(StatusProblem::Unexpected(json));
    };
    let revision = json
        .get("revision")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let version = json
        .get("version")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    Ok(StatusJson {
        hash,
        revision,
        total_keys,
        total_size,
        version,
    })
}

/// The integrity script's verdict: `verified`, `absent` or `unchecked`; None for a
/// `mismatch` (the snapshot is damaged).
pub(crate) fn parse_integrity(verdict: &str) -> Option<&'static str> {
    match verdict.split_whitespace().next() {
        Some("verified") => Some("verified"),
        Some("absent") => Some("absent"),
        Some("mismatch") => None,
        _ => Some("unchecked"),
    }
}

/// Everything drctl reads from etcd's tools, for the fuzz targets (`fuzz/`): the probe, the
/// status JSON, the integrity verdict, a Go program's stderr and version strings.
#[doc(hidden)]
pub fn fuzz_outputs(text: &str) {
    let probe = parse_probe(text);
    if let Some(t) = &probe.tool {
        let _ = (t.status_cmd(text), t.restore_cmd(text, text));
        let _ = version_at_least(&t.version, 3, 6);
    }
    let _ = parse_status(text);
    let _ = parse_integrity(text);
    let _ = go_error(text);
    let _ = version_at_least(text, 3, 5);
    let _ = trim_dir(text);
}

/// What `snapshot status` and the SHA-256 trailer say about a snapshot file.
#[derive(Debug)]
struct SnapStatus {
    hash: u64,
    revision: i64,
    total_keys: u64,
    total_size: u64,
    version: Option<String>,
    /// `verified` (the SHA-256 trailer matches), `absent` (no trailer: a copied db file,
    /// not `snapshot save` output) or `unchecked` (no sha256sum/od on the target).
    integrity: &'static str,
    tool: Tool,
}

impl SnapStatus {
    fn line(&self, snap: &str, on: &str) -> String {
        let integrity = match self.integrity {
            "verified" => "SHA-256 trailer verified",
            "absent" => "no SHA-256 trailer (not written by `snapshot save`)",
            _ => "SHA-256 trailer not checked (no sha256sum on the host)",
        };
        format!(
            "snapshot {snap} on {on}: hash {:08x}, revision {}, {} keys, {} bytes; {integrity} ({} {})",
            self.hash,
            self.revision,
            self.total_keys,
            self.total_size,
            self.tool.name,
            self.tool.version
        )
    }

    fn json(&self, host: Option<&str>, snap: &str) -> serde_json::Value {
        serde_json::json!({
            "host": host,
            "snapshot": snap,
            "hash": self.hash,
            "revision": self.revision,
            "total_keys": self.total_keys,
            "total_size": self.total_size,
            "version": self.version,
            "integrity": self.integrity,
            "tool": self.tool.name,
        })
    }
}

async fn quiet(
    t: &Target,
    ctx: &ActionCtx<'_>,
    script: &str,
    sudo: bool,
) -> Result<Exec, EtcdError> {
    let e = t
        .run(
            ctx,
            &RunSpec {
                script,
                env: &[],
                sudo,
                stream: false,
            },
        )
        .await?;
    if sudo && let Some(err) = sudo_problem(&e, t.label(), &t.user(), script) {
        return Err(err.into());
    }
    Ok(e)
}

/// The first meaningful error line of a Go program's stderr (not its goroutine dump).
fn go_error(stderr: &str) -> String {
    let mut lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let fatal = stderr.lines().find(|l| {
        l.starts_with("fatal error:") || l.starts_with("panic:") || l.starts_with("Error:")
    });
    match fatal {
        Some(f) => {
            let sig = stderr
                .lines()
                .find(|l| l.starts_with("[signal "))
                .map(|s| format!(" {}", s.trim()))
                .unwrap_or_default();
            format!("{}{sig}", f.trim())
        }
        None => lines.next_back().unwrap_or("no error message").to_owned(),
    }
}

async fn snapshot_status(
    t: &Target,
    ctx: &ActionCtx<'_>,
    snap: &str,
    sudo: bool,
) -> Result<SnapStatus, EtcdError> {
    let on = t.label().to_owned();
    let s = shell_quote(snap);
    let probe = format!(
        "if command -v etcdutl >/dev/null 2>&1; then echo \"tool etcdutl $(etcdutl version 2>/dev/null | head -n 1)\"; \
         elif command -v etcdctl >/dev/null 2>&1; then echo \"tool etcdctl $(ETCDCTL_API=3 etcdctl version 2>/dev/null | head -n 1)\"; \
         else echo 'tool none'; fi; \
         if [ -f {s} ]; then echo \"snap file $(wc -c < {s} | tr -d ' ')\"; elif [ -e {s} ]; then echo 'snap other'; else echo 'snap missing'; fi"
    );
    let p = quiet(t, ctx, &probe, sudo).await?;
    let Probe { tool, file, size } = parse_probe(&p.stdout);
    let Some(tool) = tool else {
        return Err(EtcdError::NoTool(format!(
            "neither etcdutl nor etcdctl is installed on {on}{}; install the etcd client tools of the cluster's etcd version \
             (etcd 3.5+: etcdutl; Debian: etcd-client) on {on}",
            if sudo { " (in sudo's PATH)" } else { "" }
        )));
    };
    if tool.name == "etcdctl" && version_at_least(&tool.version, 3, 6) {
        return Err(EtcdError::NoTool(format!(
            "etcdctl {} on {on} has no snapshot commands any more (moved to etcdutl in 3.6) and etcdutl is not installed; install etcdutl",
            tool.version
        )));
    }
    match file {
        "missing" => {
            return Err(EtcdError::Missing(format!(
                "there is no snapshot at {snap} on {on}; check the path (did the upload or copy step run?)"
            )));
        }
        "other" => {
            return Err(EtcdError::Missing(format!(
                "{snap} on {on} is not a regular file; name the snapshot file itself"
            )));
        }
        _ => {}
    }
    if size == 0 {
        return Err(EtcdError::Corrupt(format!(
            "the snapshot {snap} on {on} is empty (0 bytes): the copy or download failed; fetch it again"
        )));
    }
    let cmd = tool.status_cmd(snap);
    let e = quiet(t, ctx, &cmd, sudo).await?;
    if e.code != Some(0) {
        let why = go_error(&e.stderr);
        let low = e.stderr.to_lowercase();
        let corrupt = [
            "fatal error",
            "sigbus",
            "panic",
            "invalid database",
            "unexpected",
            "page",
            "checksum",
        ]
        .iter()
        .any(|k| low.contains(k));
        if corrupt {
            return Err(EtcdError::Corrupt(format!(
                "the snapshot {snap} on {on} is corrupt or truncated ({size} bytes): `{cmd}` failed with {}: {why}. \
                 Do not restore it: take another snapshot or fetch the file again, and compare its size with the original",
                exit_text(e.code)
            )));
        }
        return Err(EtcdError::Failed(format!(
            "on {on}: `{cmd}` failed with {}: {why}; check that {} may read {snap}",
            exit_text(e.code),
            if sudo {
                "root"
            } else {
                "the ssh user (or set `sudo: true`)"
            }
        )));
    }
    let StatusJson {
        hash,
        revision,
        total_keys,
        total_size,
        version,
    } = parse_status(&e.stdout).map_err(|problem| {
        EtcdError::Failed(match problem {
            StatusProblem::NoJson => format!(
                "on {on}: `{cmd}` printed no JSON status: {}",
                e.stdout.trim()
            ),
            StatusProblem::Unexpected(json) => {
                format!("on {on}: `{cmd}` answered an unexpected status: {json}")
            }
        })
    })?;
    // bolt may read a cut-off file without faulting when the lost pages are unused.
    if size < total_size {
        return Err(EtcdError::Corrupt(format!(
            "the snapshot {snap} on {on} is truncated: its database is {total_size} bytes but the file has only {size}. \
             Do not restore it: fetch the file again and compare its size with the original"
        )));
    }
    if total_keys == 0 {
        return Err(EtcdError::Corrupt(format!(
            "the snapshot {snap} on {on} holds no keys: it is empty or damaged; do not restore it"
        )));
    }
    // `snapshot status` reads the bolt database only; the SHA-256 that `snapshot save`
    // appends catches damage it does not (restore checks it too, but only after stopping).
    let integrity_script = format!(
        "f={s}; sz=$(wc -c < \"$f\" | tr -d ' '); if [ $(( (sz - 32) % 512 )) -ne 0 ]; then echo absent; exit 0; fi; \
         if ! command -v sha256sum >/dev/null 2>&1 || ! command -v od >/dev/null 2>&1; then echo unchecked; exit 0; fi; \
         a=$(head -c $((sz - 32)) \"$f\" | sha256sum | cut -d' ' -f1); b=$(tail -c 32 \"$f\" | od -An -v -tx1 | tr -d ' \\n'); \
         if [ \"$a\" = \"$b\" ]; then echo verified; else echo \"mismatch $a $b\"; fi"
    );
    let i = quiet(t, ctx, &integrity_script, sudo).await?;
    let verdict = i.stdout.trim();
    let Some(integrity) = parse_integrity(verdict) else {
        return Err(EtcdError::Corrupt(format!(
            "the snapshot {snap} on {on} is damaged: its content does not match the SHA-256 that `etcdctl snapshot save` \
             appended ({verdict}). Do not restore it: fetch the file again or use another snapshot"
        )));
    };
    Ok(SnapStatus {
        hash,
        revision,
        total_keys,
        total_size,
        version,
        integrity,
        tool,
    })
}

/// `etcdctl version: 3.6.1` (or a bare version) is at least major.minor.
fn version_at_least(v: &str, major: u64, minor: u64) -> bool {
    let mut parts = v
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

async fn status(
    opts: &SshOptions,
    a: &EtcdSnapshotStatus,
    ctx: &ActionCtx<'_>,
) -> Result<ActionResult, EtcdError> {
    let host = render_opt(ctx, a.host.as_ref())?;
    let snap = render(ctx, &a.snapshot)?;
    let t = Target::open(opts, host.as_deref(), ctx).await?;
    let st = snapshot_status(&t, ctx, &snap, a.sudo).await;
    let on = t.label().to_owned();
    t.close().await;
    let st = st?;
    let line = st.line(&snap, &on);
    ctx.output(line.clone());
    Ok(ActionResult {
        value: st.json(host.as_deref(), &snap),
        lines: vec![line],
    })
}

fn trim_dir(d: &str) -> String {
    let t = d.trim_end_matches('/');
    if t.is_empty() {
        d.to_owned()
    } else {
        t.to_owned()
    }
}

async fn restore(
    opts: &SshOptions,
    a: &EtcdSnapshotRestore,
    ctx: &ActionCtx<'_>,
) -> Result<ActionResult, EtcdError> {
    let host = render_opt(ctx, a.host.as_ref())?;
    let snap = render(ctx, &a.snapshot)?;
    let data =
        trim_dir(&render_opt(ctx, a.data_dir.as_ref())?.unwrap_or_else(|| "/var/lib/etcd".into()));
    let restore_dir = trim_dir(
        &render_opt(ctx, a.restore_dir.as_ref())?.unwrap_or_else(|| format!("{data}-restore")),
    );
    if data.is_empty() || data == "/" || restore_dir.is_empty() || restore_dir == "/" {
        return Err(EtcdError::Invalid(format!(
            "refusing data_dir `{data}` / restore_dir `{restore_dir}`: name etcd's own directories"
        )));
    }
    if data == restore_dir || restore_dir.starts_with(&format!("{data}/")) {
        return Err(EtcdError::Invalid(format!(
            "restore_dir `{restore_dir}` must be outside data_dir `{data}`: the data dir is deleted before the restored one moves in"
        )));
    }
    let t = Target::open(opts, host.as_deref(), ctx).await?;
    let r = restore_on(&t, ctx, a.sudo, host.as_deref(), &snap, &data, &restore_dir).await;
    t.close().await;
    r
}

#[allow(clippy::too_many_arguments)]
async fn restore_on(
    t: &Target,
    ctx: &ActionCtx<'_>,
    sudo: bool,
    host: Option<&str>,
    snap: &str,
    data: &str,
    restore_dir: &str,
) -> Result<ActionResult, EtcdError> {
    let on = t.label().to_owned();
    let st = match snapshot_status(t, ctx, snap, sudo).await {
        Ok(st) => st,
        // A rehearsal does not copy the snapshot, so it may not be on the host yet.
        Err(EtcdError::Missing(why)) if ctx.dry_run => {
            return rehearse_without_snapshot(t, ctx, sudo, host, snap, data, restore_dir, &why)
                .await;
        }
        Err(e) => return Err(e),
    };
    ctx.output(st.line(snap, &on));
    if st.integrity == "absent" {
        return Err(EtcdError::Refused(format!(
            "{snap} on {on} has no SHA-256 trailer: it is a copy of a member's db file, not `etcdctl snapshot save` output, \
             and `snapshot restore` refuses it. If you trust it, restore by hand with `--skip-hash-check` (see the step's fallback)"
        )));
    }
    let (d, r) = (shell_quote(data), shell_quote(restore_dir));
    let pre = format!(
        "if [ -e {r} ]; then echo exists; fi; p=$(dirname -- {r}); if [ ! -d \"$p\" ]; then echo \"noparent $p\"; fi; \
         for x in $(find /proc/[0-9]*/fd -maxdepth 1 -lname {d}'/*' 2>/dev/null | cut -d/ -f3 | sort -u); do \
         echo \"busy $x $(tr '\\0' ' ' < /proc/$x/cmdline 2>/dev/null | cut -c1-100)\"; done"
    );
    let p = quiet(t, ctx, &pre, sudo).await?;
    let su = if sudo { "sudo " } else { "" };
    for l in p.stdout.lines() {
        if l == "exists" {
            return Err(EtcdError::Refused(format!(
                "{restore_dir} already exists on {on} (left by an earlier attempt?), and the restore needs a new directory. \
                 Check it holds nothing you need, remove it (`{su}rm -rf {r}`), and run the step again"
            )));
        }
        if let Some(parent) = l.strip_prefix("noparent ") {
            return Err(EtcdError::Refused(format!(
                "the parent directory {parent} of restore_dir {restore_dir} does not exist on {on}; create it or choose another restore_dir"
            )));
        }
        if let Some(busy) = l.strip_prefix("busy ") {
            return Err(EtcdError::Refused(format!(
                "etcd still uses {data} on {on} (pid {busy}); stop it first (move its static pod manifest out of the \
                 manifests directory and wait until the container is gone), then run the step again"
            )));
        }
    }
    let restore_cmd = st.tool.restore_cmd(snap, restore_dir);
    let rm_cmd = format!("rm -rf {d}");
    let mv_cmd = format!("mv {r} {d}");
    let mut value = st.json(host, snap);
    value["data_dir"] = data.into();
    value["restore_dir"] = restore_dir.into();
    if ctx.dry_run {
        let mut lines = vec![format!(
            "would run on {on}{}:",
            if sudo { " as root (sudo)" } else { "" }
        )];
        for c in [&restore_cmd, &rm_cmd, &mv_cmd] {
            lines.push(format!("  {su}{c}"));
        }
        for l in &lines {
            ctx.output(l.clone());
        }
        value["dry_run"] = true.into();
        return Ok(ActionResult { value, lines });
    }
    let mut lines = vec![st.line(snap, &on)];
    let run = |cmd: String, stream: bool| async move {
        ctx.output(format!("$ {su}{cmd}"));
        t.run(
            ctx,
            &RunSpec {
                script: &cmd,
                env: &[],
                sudo,
                stream,
            },
        )
        .await
    };
    let e = run(restore_cmd.clone(), true).await?;
    if e.code != Some(0) {
        // The directory did not exist before: whatever is there is this attempt's.
        let _ = quiet(t, ctx, &format!("rm -rf {r}"), sudo).await;
        return Err(EtcdError::Failed(format!(
            "on {on}: `{su}{restore_cmd}` failed with {}: {}; {restore_dir} was removed again and {data} is untouched",
            exit_text(e.code),
            go_error(&e.stderr)
        )));
    }
    lines.push(format!("{su}{restore_cmd}"));
    let e = run(rm_cmd.clone(), false).await?;
    if e.code != Some(0) {
        return Err(EtcdError::Failed(format!(
            "on {on}: `{su}{rm_cmd}` failed with {}{}; {data} may be partly deleted and the restored member is in {restore_dir}: \
             finish by hand (`{su}rm -rf {d} && {su}mv {r} {d}`)",
            exit_text(e.code),
            last_line(&e.stderr, false)
        )));
    }
    lines.push(format!("{su}{rm_cmd}"));
    let e = run(mv_cmd.clone(), false).await?;
    if e.code != Some(0) {
        return Err(EtcdError::Failed(format!(
            "on {on}: `{su}{mv_cmd}` failed with {}{}; {data} is gone and the restored member is in {restore_dir}: \
             move it by hand (`{su}{mv_cmd}`) before starting etcd",
            exit_text(e.code),
            last_line(&e.stderr, false)
        )));
    }
    lines.push(format!("{su}{mv_cmd}"));
    let check = quiet(t, ctx, &format!("test -d {d}/member"), sudo).await?;
    if check.code != Some(0) {
        return Err(EtcdError::Failed(format!(
            "on {on}: after the restore {data}/member does not exist; check {data} before starting etcd"
        )));
    }
    let done = format!(
        "{data} on {on} now holds the member restored from {snap} (revision {})",
        st.revision
    );
    ctx.output(done.clone());
    lines.push(done);
    Ok(ActionResult { value, lines })
}

/// The rehearsal when the snapshot is not on the host yet: the commands, with the tool
/// the host has.
#[allow(clippy::too_many_arguments)]
async fn rehearse_without_snapshot(
    t: &Target,
    ctx: &ActionCtx<'_>,
    sudo: bool,
    host: Option<&str>,
    snap: &str,
    data: &str,
    restore_dir: &str,
    why: &str,
) -> Result<ActionResult, EtcdError> {
    let on = t.label().to_owned();
    let probe = "if command -v etcdutl >/dev/null 2>&1; then echo etcdutl; else echo etcdctl; fi";
    let e = quiet(t, ctx, probe, sudo).await?;
    let tool = Tool {
        name: if e.stdout.trim() == "etcdutl" {
            "etcdutl"
        } else {
            "etcdctl"
        },
        version: String::new(),
    };
    let su = if sudo { "sudo " } else { "" };
    let (d, r) = (shell_quote(data), shell_quote(restore_dir));
    let mut lines = vec![
        format!("{why} (an earlier step copies it; it is checked before the restore)"),
        format!(
            "would run on {on}{}:",
            if sudo { " as root (sudo)" } else { "" }
        ),
    ];
    for c in [
        tool.restore_cmd(snap, restore_dir),
        format!("rm -rf {d}"),
        format!("mv {r} {d}"),
    ] {
        lines.push(format!("  {su}{c}"));
    }
    for l in &lines {
        ctx.output(l.clone());
    }
    Ok(ActionResult {
        value: serde_json::json!({
            "host": host, "snapshot": snap, "data_dir": data, "restore_dir": restore_dir,
            "tool": tool.name, "dry_run": true,
        }),
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare() {
        assert!(version_at_least("3.6.1", 3, 6));
        assert!(version_at_least("v3.10.0", 3, 6));
        assert!(!version_at_least("3.4.23", 3, 6));
        assert!(!version_at_least("unknown", 3, 5));
    }

    #[test]
    fn go_errors_are_summarised() {
        let crash = "unexpected fault address 0x7f\nfatal error: fault\n[signal SIGBUS: bus error code=0x2 addr=0x7f pc=0x8f]\n\ngoroutine 115 [running]:\nruntime.throw(...)\n";
        assert_eq!(
            go_error(crash),
            "fatal error: fault [signal SIGBUS: bus error code=0x2 addr=0x7f pc=0x8f]"
        );
        assert_eq!(
            go_error("Error: invalid database\n"),
            "Error: invalid database"
        );
    }

    #[test]
    fn commands_match_the_seed() {
        let t = Tool {
            name: "etcdctl",
            version: "3.4.23".into(),
        };
        assert_eq!(
            t.restore_cmd("/tmp/snapshot.db", "/var/lib/etcd-restore"),
            "ETCDCTL_API=3 etcdctl snapshot restore /tmp/snapshot.db --data-dir=/var/lib/etcd-restore"
        );
    }
}
