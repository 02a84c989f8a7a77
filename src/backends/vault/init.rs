//! `vault.init`: initialises a new Vault (unseal key or recovery shares) and hands the new
//! shares and root token to the operator once: on the terminal, and in a new 0600 file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::conn::{Method, strings};
use super::shares::{ASK_ATTEMPTS, share_kind, share_lines};
use super::{Out, Res, VaultBackend, VaultError, render_set};
use crate::exec::backend::{ActionCtx, ActionResult};
use crate::runbook::Sink;
use crate::runbook::action::VaultInit;

/// Writes `doc` (pretty JSON) to a new file with mode 0600 (never over an existing file).
fn write_private(path: &Path, doc: &Value) -> Res<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |e: std::io::Error| VaultError::Io {
        what: format!("cannot write {}", path.display()),
        detail: e.to_string(),
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let text = serde_json::to_string_pretty(doc).unwrap_or_default();
    f.write_all(format!("{text}\n").as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// `save_to` of `vault.init`: a file that must not exist yet, in a directory that does
/// (checked before Vault creates secrets that would have nowhere to go).
fn check_new_file(path: &Path) -> Res<()> {
    if path.symlink_metadata().is_ok() {
        return Err(VaultError::Invalid(format!(
            "{} exists already: vault.init writes the new shares and root token only to a new file (never over one); name another file or move that one away",
            path.display()
        )));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(VaultError::Invalid(format!(
            "cannot write the new shares and root token to {}: {} is not a directory",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Offers to also write the secrets to a file the operator names (mode 0600).
fn offer_file(ctx: &ActionCtx<'_>, out: &mut Out, what: &str, doc: &Value) -> Res<()> {
    let want = ctx
        .operator
        .confirm(
            &format!("Also write the {what} to a file of your choice (mode 0600)?"),
            false,
        )
        .map_err(VaultError::Operator)?;
    if !want {
        return Ok(());
    }
    for _ in 0..ASK_ATTEMPTS {
        let path = ctx
            .operator
            .ask("File to create (it must not exist yet)", None)
            .map_err(VaultError::Operator)?;
        let path = PathBuf::from(path.trim());
        if path.as_os_str().is_empty() {
            return Ok(());
        }
        match write_private(&path, doc) {
            Ok(()) => {
                out.say(
                    ctx,
                    format!("wrote the {what} to {} (mode 0600)", path.display()),
                );
                return Ok(());
            }
            Err(e) => ctx.progress(format!("{e}; choose another file (empty: none)")),
        }
    }
    Ok(())
}

impl VaultBackend {
    pub(super) async fn init(&self, a: &VaultInit, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), None, &mut out)?;
        if a.threshold == 0 || a.threshold > a.shares {
            return Err(VaultError::Invalid(format!(
                "vault.init: threshold {} must be between 1 and shares ({})",
                a.threshold, a.shares
            )));
        }
        let save_to = render_set(ctx, a.save_to.as_ref(), Sink::Shown)?.map(PathBuf::from);
        let s = conn.seal_status(ctx).await?;
        let kind = share_kind(a.recovery);
        if s.initialized {
            return Err(VaultError::Invalid(format!(
                "Vault at {} is already initialised ({}): its data is not lost and initialising again is impossible; stop here and check which Vault this is",
                conn.addr,
                s.summary()
            )));
        }
        let shamir = s.seal_type == "shamir" || s.seal_type.is_empty();
        if a.recovery && shamir {
            return Err(VaultError::Invalid(format!(
                "vault.init asks for recovery shares, but Vault at {} uses the Shamir seal (no auto-unseal): its seal configuration did not load (check the KMS Secret and the pod's seal stanza), or set `recovery: false`",
                conn.addr
            )));
        }
        if !a.recovery && !shamir {
            return Err(VaultError::Invalid(format!(
                "Vault at {} auto-unseals (`{}` seal): initialise it with `recovery: true` (recovery shares)",
                conn.addr, s.seal_type
            )));
        }
        if let Some(p) = &save_to {
            check_new_file(p)?;
        }
        if ctx.dry_run {
            out.say(
                ctx,
                format!(
                    "Vault at {} is not initialised ({} seal): would initialise it with {} {kind} shares, threshold {}; the shares and the root token would be shown once{}",
                    conn.addr,
                    s.seal_type,
                    a.shares,
                    a.threshold,
                    match &save_to {
                        Some(p) => format!(" and written to the new file {} (mode 0600)", p.display()),
                        None => " (an unattended run needs `save_to`, a file to write them to)".to_owned(),
                    }
                ),
            );
            return out.done(json!({ "address": conn.addr, "initialized": false }));
        }
        // The new secrets must land somewhere the operator keeps before Vault creates them:
        // the terminal, or the file `save_to` names. Secret outputs alone die with drctl.
        let show = ctx.operator.interactive();
        if !show && save_to.is_none() {
            return Err(VaultError::NeedsOperator(format!(
                "vault.init shows the new {kind} shares and root token once on a terminal, and there is none (--yes or no tty): nothing was initialised. Name a new file to write them to (mode 0600) in the step's `save_to` (the built-in runbooks take it from the input `init_keys_file`: --set init_keys_file=PATH), or run this step interactively"
            )));
        }
        let body = if a.recovery {
            json!({ "recovery_shares": a.shares, "recovery_threshold": a.threshold })
        } else {
            json!({ "secret_shares": a.shares, "secret_threshold": a.threshold })
        };
        let (code, v) = conn.call(ctx, Method::Put, "sys/init", Some(&body)).await?;
        if code != 200 {
            return Err(conn.api("initialising Vault", code, &v));
        }
        let keys = strings(&v, "keys");
        let keys_b64 = strings(&v, "keys_base64");
        let rec_b64 = strings(&v, "recovery_keys_base64");
        let rec_hex = strings(&v, "recovery_keys");
        let root = v["root_token"].as_str().unwrap_or_default().to_owned();
        let red = ctx.bus.redactor();
        for k in keys.iter().chain(&keys_b64).chain(&rec_b64).chain(&rec_hex) {
            red.add(k);
        }
        red.add(&root);
        let shown: &[String] = if a.recovery { &rec_b64 } else { &keys_b64 };
        let label = if a.recovery {
            "Recovery key"
        } else {
            "Unseal key"
        };
        let mut body = share_lines(label, shown);
        let _ = writeln!(body, "\nInitial root token: {root}");
        let _ = write!(
            body,
            "\nVault at {} was initialised with {} {kind} shares and a threshold of {}. Give each share to its holder now; they are not shown again and drctl never stores them.",
            conn.addr, a.shares, a.threshold
        );
        let result = json!({
            "address": conn.addr,
            "initialized": true,
            "recovery": a.recovery,
            "shares": a.shares,
            "threshold": a.threshold,
            "root_token": root,
            "keys": keys,
            "keys_base64": keys_b64,
            "recovery_keys": rec_b64,
        });
        let doc = json!({
            "address": conn.addr,
            "root_token": result["root_token"],
            "keys_base64": if a.recovery { Value::Null } else { result["keys_base64"].clone() },
            "recovery_keys_base64": if a.recovery { result["recovery_keys"].clone() } else { Value::Null },
        });
        if let Some(p) = &save_to {
            match write_private(p, &doc) {
                Ok(()) => out.say(
                    ctx,
                    format!(
                        "wrote the {kind} shares and root token to {} (mode 0600): move them offline and delete the file",
                        p.display()
                    ),
                ),
                // Vault is initialised: the result must still come back.
                Err(e) => out.say(
                    ctx,
                    format!(
                        "WARNING: Vault is initialised but the shares and root token could not be written ({e}); they exist only in this step's secret outputs now"
                    ),
                ),
            }
        }
        if show {
            // Vault is initialised now: whatever happens on the terminal, the result
            // (and its secret outputs) must still come back.
            match ctx
                .operator
                .show_secret_once(&format!("Vault {kind} shares and initial root token (shown once)"), &body)
            {
                Ok(()) => {
                    out.say(
                        ctx,
                        format!(
                            "initialised: {} {kind} shares (threshold {}) and the root token were shown once",
                            a.shares, a.threshold
                        ),
                    );
                    if save_to.is_none()
                        && let Err(e) = offer_file(ctx, &mut out, "shares and root token", &doc)
                    {
                        out.say(ctx, format!("not written to a file: {e}"));
                    }
                }
                Err(e) => out.say(
                    ctx,
                    format!(
                        "WARNING: Vault is initialised but the shares could not be shown ({e}); they exist only in this step's secret outputs now"
                    ),
                ),
            }
        } else {
            out.say(
                ctx,
                format!(
                    "initialised: {} {kind} shares (threshold {}); no terminal, so they and the root token are in the file named above and this step's secret outputs",
                    a.shares, a.threshold
                ),
            );
        }
        out.done(result)
    }
}
