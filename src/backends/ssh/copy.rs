//! `ssh.copy`: one file up to or down from a host over the ssh connection, streamed in
//! chunks (cancellable between them) and checked by SHA-256 on both ends. An upload lands
//! in a private temp file on the host, is verified, then put in place with `install`
//! (as root with sudo); a download lands in a private `.NAME.drctl-part` file that is
//! renamed into place only when size and digest match.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::diagnose::{exit_text, last_line, sudo_problem};
use super::{Conn, SshError, SshOptions, rehearsed, render, render_user};
use crate::exec::backend::{ActionCtx, ActionResult};
use crate::runbook::action::{CopyDirection, Sink, SshCopy};
use crate::runbook::template::shell_quote;

/// Copy buffer; also the granularity of cancellation while copying.
const CHUNK: usize = 256 * 1024;

/// One copy, rendered.
struct Transfer<'a> {
    opts: &'a SshOptions,
    ctx: &'a ActionCtx<'a>,
    host: &'a str,
    user: Option<&'a str>,
    local: &'a Path,
    remote: &'a str,
    sudo: bool,
    mode: Option<u32>,
}

impl Transfer<'_> {
    async fn connect(&self) -> Result<Conn, SshError> {
        Conn::open(self.opts, self.host, self.user, self.ctx).await
    }
}

/// A finished copy: its line shown, its result with the SHA-256.
fn copied(
    ctx: &ActionCtx<'_>,
    line: String,
    mut value: serde_json::Value,
    sha: String,
) -> ActionResult {
    ctx.output(line.clone());
    value["sha256"] = serde_json::Value::from(sha);
    ActionResult {
        value,
        lines: vec![line],
    }
}

pub(super) fn parse_mode(m: Option<&str>) -> Result<Option<u32>, SshError> {
    let Some(m) = m else { return Ok(None) };
    let ok = (3..=4).contains(&m.len()) && m.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(m, 8) {
        Ok(v) if ok => Ok(Some(v)),
        _ => Err(SshError::Invalid(format!(
            "mode `{m}` is not an octal file mode such as 0600 or 644"
        ))),
    }
}

pub(super) async fn ssh_copy(
    opts: &SshOptions,
    a: &SshCopy,
    ctx: &ActionCtx<'_>,
) -> Result<ActionResult, SshError> {
    let host = render(ctx, &a.host, Sink::Shown)?;
    let user = render_user(ctx, a.user.as_ref())?;
    let local = crate::backends::process::local_path(&render(ctx, &a.local, Sink::Shown)?);
    let remote = render(ctx, &a.remote, Sink::Shown)?;
    if remote.is_empty() {
        return Err(SshError::Invalid("ssh.copy: `remote` is empty".into()));
    }
    let job = Transfer {
        opts,
        ctx,
        host: &host,
        user: user.as_deref(),
        local: &local,
        remote: &remote,
        sudo: a.sudo,
        mode: parse_mode(a.mode.as_deref())?,
    };
    match a.direction {
        CopyDirection::Upload => upload(&job).await,
        CopyDirection::Download => download(&job).await,
    }
}

async fn upload(job: &Transfer<'_>) -> Result<ActionResult, SshError> {
    let Transfer {
        ctx,
        host,
        local,
        remote,
        sudo,
        ..
    } = *job;
    let meta = match tokio::fs::metadata(local).await {
        Ok(m) => m,
        // In a rehearsal an earlier step (a download) may not have made the file yet.
        Err(e) if ctx.dry_run && e.kind() == std::io::ErrorKind::NotFound => {
            let conn = job.connect().await?;
            let lines = vec![
                format!("connected to {}", conn.describe()),
                format!(
                    "{} is not on this machine yet (an earlier step may make it); would then upload it to {host}:{remote}",
                    local.display()
                ),
            ];
            let value = serde_json::json!({ "host": host, "direction": "upload", "remote": remote, "dry_run": true });
            return Ok(rehearsed(conn, ctx, lines, value).await);
        }
        Err(e) => {
            return Err(SshError::Copy(format!(
                "cannot read {} on this machine: {e}; check the path (did the download step run?)",
                local.display()
            )));
        }
    };
    if !meta.is_file() {
        return Err(SshError::Copy(format!(
            "{} on this machine is not a regular file",
            local.display()
        )));
    }
    let size = meta.len();
    // Like scp for a new file: the local file's permission bits unless a mode is given.
    let mode = job.mode.unwrap_or(meta.permissions().mode() & 0o777);
    let mode_s = format!("{mode:04o}");
    let conn = job.connect().await?;
    let r = shell_quote(remote);
    let base = serde_json::json!({
        "host": host,
        "direction": "upload",
        "local": local.display().to_string(),
        "remote": remote,
        "bytes": size,
        "mode": mode_s,
    });
    if ctx.dry_run {
        let probe = format!(
            "if [ -e {r} ]; then ls -ld -- {r}; else echo missing; fi; d=$(dirname -- {r}); [ -d \"$d\" ] || echo \"nodir $d\""
        );
        let e = conn.simple(ctx, &probe, sudo).await?;
        if let Some(err) = sudo_problem(&e, host, &conn.user, &format!("ls -ld {r}")) {
            return Err(err);
        }
        let mut lines = vec![format!("connected to {}", conn.describe())];
        for l in e.stdout.lines() {
            if let Some(d) = l.strip_prefix("nodir ") {
                lines.push(format!(
                    "problem: the directory {d} does not exist on {host}"
                ));
            } else if l == "missing" {
                lines.push(format!("{remote} does not exist on {host} yet"));
            } else {
                lines.push(format!("would replace: {l}"));
            }
        }
        lines.push(format!(
            "would upload {} ({size} bytes) to {host}:{remote} with mode {mode_s}{}",
            local.display(),
            if sudo {
                " (as root via sudo install)"
            } else {
                ""
            }
        ));
        return Ok(rehearsed(conn, ctx, lines, base).await);
    }

    // 1. Stream into a private temp file; a short upload (cancelled, timed out) is removed.
    let receive = format!(
        "umask 077; t=$(mktemp \"${{TMPDIR:-/tmp}}/drctl-upload.XXXXXX\") || exit 1; cat > \"$t\" || {{ rm -f \"$t\"; exit 1; }}; \
         n=$(wc -c < \"$t\" | tr -d ' '); if [ \"$n\" != {size} ]; then rm -f \"$t\"; echo \"received $n of {size} bytes\" >&2; exit 3; fi; echo \"$t\""
    );
    let mut file = tokio::fs::File::open(local).await.map_err(|e| {
        SshError::Copy(format!(
            "cannot open {} on this machine: {e}",
            local.display()
        ))
    })?;
    let mut child = conn.spawn(&receive, false, true).await?;
    let mut stdin = child.stdin().take();
    let mut hasher = Sha256::new();
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    let mut next_report = 64u64 << 20;
    let send = async {
        loop {
            let n = file.read(&mut buf).await.map_err(|e| {
                SshError::Copy(format!(
                    "cannot read {} on this machine: {e}",
                    local.display()
                ))
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if let Some(p) = stdin.as_mut() {
                p.write_all(&buf[..n]).await.map_err(|e| {
                    SshError::Copy(format!(
                        "the upload to {host} stopped after {sent} of {size} bytes: {e}"
                    ))
                })?;
            }
            sent += n as u64;
            if sent >= next_report {
                ctx.progress(format!("uploaded {} of {} MiB", sent >> 20, size >> 20));
                next_report += 64 << 20;
            }
        }
        if let Some(mut p) = stdin.take() {
            let _ = p.flush().await;
        }
        Ok::<(), SshError>(())
    };
    tokio::select! {
        r = send => r?,
        _ = ctx.cancel.cancelled() => return Err(SshError::Cancelled),
    }
    let out = conn.output(child, ctx).await?;
    if out.code != Some(0) {
        conn.close().await;
        return Err(SshError::Copy(format!(
            "uploading {} to {host} failed with {}{}; check free space in the host's temp directory",
            local.display(),
            exit_text(out.code),
            last_line(&out.stderr, false)
        )));
    }
    let tmp = out.stdout.trim().to_owned();
    let sha = hex::encode(hasher.finalize());

    // 2. Verify what arrived, then put it in place with its mode (as root with sudo).
    let t = shell_quote(&tmp);
    let place = format!(
        "t={t}; if command -v sha256sum >/dev/null 2>&1; then h=$(sha256sum < \"$t\" | cut -d' ' -f1); \
         if [ \"$h\" != {sha} ]; then rm -f \"$t\"; echo \"checksum mismatch: the host has $h\" >&2; exit 4; fi; fi; \
         install -m {mode_s} -- \"$t\" {r}; rc=$?; rm -f \"$t\"; exit $rc"
    );
    let e = conn.simple(ctx, &place, sudo).await?;
    if e.code != Some(0) {
        // The temp file may remain when sudo refused to run: remove it as the login user.
        let _ = conn.simple(ctx, &format!("rm -f {t}"), false).await;
        let login = conn.user.clone();
        conn.close().await;
        let cmd = format!(
            "{}install -m {mode_s} {tmp} {remote}",
            if sudo { "sudo " } else { "" }
        );
        if let Some(err) = sudo_problem(&e, host, &login, &cmd) {
            return Err(err);
        }
        return Err(SshError::Copy(format!(
            "on {host}: `{cmd}` failed with {}{}; check that the directory exists and that {} may write there{}",
            exit_text(e.code),
            last_line(&e.stderr, false),
            if sudo { "root" } else { login.as_str() },
            if sudo { "" } else { " (or set `sudo: true`)" }
        )));
    }
    conn.close().await;
    let line = format!(
        "uploaded {} to {host}:{remote} ({size} bytes, mode {mode_s}, sha256 {sha})",
        local.display()
    );
    Ok(copied(ctx, line, base, sha))
}

async fn download(job: &Transfer<'_>) -> Result<ActionResult, SshError> {
    let Transfer {
        ctx,
        host,
        local,
        remote,
        sudo,
        ..
    } = *job;
    // What was copied from a host is often secret (snapshots, keys): private by default.
    let mode = job.mode.unwrap_or(0o600);
    let mode_s = format!("{mode:04o}");
    let dir = match local.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(SshError::Copy(format!(
            "the local directory {} does not exist; create it or choose another `local` path",
            dir.display()
        )));
    }
    let conn = job.connect().await?;
    let r = shell_quote(remote);
    let probe = format!(
        "if [ ! -f {r} ]; then echo \"not a regular file or missing\" >&2; exit 66; fi; \
         if command -v sha256sum >/dev/null 2>&1; then h=$(sha256sum < {r} | cut -d' ' -f1) || exit 1; else h=-; fi; \
         n=$(wc -c < {r} | tr -d ' ') || exit 1; echo \"$h $n\""
    );
    let e = conn.simple(ctx, &probe, sudo).await?;
    if let Some(err) = sudo_problem(&e, host, &conn.user, &format!("sha256sum {r}")) {
        return Err(err);
    }
    if e.code != Some(0) {
        conn.close().await;
        return Err(SshError::Copy(format!(
            "cannot read {remote} on {host}{}; check the path{}",
            last_line(&e.stderr, false),
            if sudo {
                ""
            } else {
                " and its permissions (or set `sudo: true`)"
            }
        )));
    }
    let mut parts = e.stdout.split_whitespace();
    let want_sha = parts.next().unwrap_or("-").to_owned();
    let size: u64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let base = serde_json::json!({
        "host": host,
        "direction": "download",
        "local": local.display().to_string(),
        "remote": remote,
        "bytes": size,
        "mode": mode_s,
    });
    if ctx.dry_run {
        let mut lines = vec![format!("connected to {}", conn.describe())];
        lines.push(format!(
            "would download {host}:{remote} ({size} bytes) to {} with mode {mode_s}{}",
            local.display(),
            if local.exists() {
                ", replacing the local file"
            } else {
                ""
            }
        ));
        return Ok(rehearsed(conn, ctx, lines, base).await);
    }
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    let part = dir.join(format!(".{name}.drctl-part"));
    // Never through a link planted at the `.part` path.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(&part)
        .map(tokio::fs::File::from_std)
        .map_err(|e| SshError::Copy(format!("cannot write {}: {e}", part.display())))?;
    let cat = if sudo {
        format!("sudo -n cat -- {r}")
    } else {
        format!("cat -- {r}")
    };
    let mut child = conn.spawn(&cat, false, false).await?;
    let mut stdout = child.stdout().take();
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    let receive = async {
        if let Some(s) = stdout.as_mut() {
            loop {
                let n = s.read(&mut buf).await.map_err(|e| {
                    SshError::Copy(format!("the download from {host} broke off: {e}"))
                })?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])
                    .await
                    .map_err(|e| SshError::Copy(format!("cannot write {}: {e}", part.display())))?;
                got += n as u64;
            }
        }
        file.sync_all()
            .await
            .map_err(|e| SshError::Copy(format!("cannot write {}: {e}", part.display())))?;
        Ok::<(), SshError>(())
    };
    let received = tokio::select! {
        r = receive => r,
        _ = ctx.cancel.cancelled() => Err(SshError::Cancelled),
    };
    if let Err(e) = received {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    let out = conn.output(child, ctx).await?;
    conn.close().await;
    let sha = hex::encode(hasher.finalize());
    let bad = if out.code != Some(0) {
        Some(format!(
            "`{cat}` failed with {}{}",
            exit_text(out.code),
            last_line(&out.stderr, false)
        ))
    } else if got != size {
        Some(format!(
            "received {got} bytes, the file had {size}: it changed while being copied or the transfer broke; run the step again"
        ))
    } else if want_sha != "-" && want_sha != sha {
        Some(format!(
            "the copy's sha256 {sha} differs from the host's {want_sha}: the file changed while being copied; run the step again"
        ))
    } else {
        None
    };
    if let Some(why) = bad {
        let _ = std::fs::remove_file(&part);
        return Err(SshError::Copy(format!(
            "downloading {remote} from {host}: {why}"
        )));
    }
    std::fs::set_permissions(&part, std::fs::Permissions::from_mode(mode))
        .and_then(|_| std::fs::rename(&part, local))
        .map_err(|e| {
            SshError::Copy(format!(
                "cannot put the download in place at {}: {e}",
                local.display()
            ))
        })?;
    let line = format!(
        "downloaded {host}:{remote} to {} ({got} bytes, mode {mode_s}, sha256 {sha})",
        local.display()
    );
    Ok(copied(ctx, line, base, sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode(Some("0600")).ok().flatten(), Some(0o600));
        assert_eq!(parse_mode(Some("644")).ok().flatten(), Some(0o644));
        assert!(parse_mode(Some("0900")).is_err());
        assert!(parse_mode(Some("rw")).is_err());
        assert!(matches!(parse_mode(None), Ok(None)));
    }
}
