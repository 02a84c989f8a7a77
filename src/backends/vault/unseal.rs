//! `vault.unseal`: key shares from the runbook's inputs, the named holders in turn or the
//! operator (masked) until the Shamir threshold is reached; a wrong combination resets the
//! progress and starts a new round.

use serde_json::json;

use super::conn::{ACTIVE_WAIT, Method, SealStatus, api_detail, inactive_note};
use super::shares::{ROUNDS, ask_secret, render_keys};
use super::{Out, Res, VaultBackend, VaultError, short};
use crate::exec::backend::{ActionCtx, ActionResult};
use crate::runbook::action::VaultUnseal;

impl VaultBackend {
    pub(super) async fn unseal(&self, a: &VaultUnseal, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), None, &mut out)?;
        let s = conn.seal_status(ctx).await?;
        if !s.initialized {
            return Err(VaultError::NotInitialized {
                addr: conn.addr,
                what: "an unseal".into(),
            });
        }
        let result = |s: &SealStatus, entered: usize| {
            json!({
                "address": conn.addr,
                "sealed": s.sealed,
                "progress": s.progress,
                "threshold": s.t,
                "shares": s.n,
                "entered": entered,
            })
        };
        if !s.sealed {
            out.say(ctx, format!("Vault at {} is already unsealed", conn.addr));
            return out.done(result(&s, 0));
        }
        if s.recovery_seal || s.seal_type != "shamir" {
            return Err(VaultError::Invalid(format!(
                "Vault at {} uses the `{}` seal: it unseals itself when its KMS answers, and unseal keys do not apply; check the seal's KMS credentials and key (see the vault-kms-* runbooks)",
                conn.addr, s.seal_type
            )));
        }
        let keys = render_keys(ctx, &a.keys)?;
        let source = if !keys.is_empty() {
            format!("{} key share(s) from the runbook's inputs", keys.len())
        } else if !a.holders.is_empty() {
            format!("asking {} in turn (masked)", a.holders.join(", "))
        } else {
            "asking for key shares (masked)".to_owned()
        };
        if ctx.dry_run {
            out.say(
                ctx,
                format!(
                    "Vault at {} is sealed (progress {}/{}, {} shares): would submit key shares until {} are in; {source}",
                    conn.addr, s.progress, s.t, s.n, s.t
                ),
            );
            return out.done(result(&s, 0));
        }
        if keys.is_empty() && !ctx.operator.interactive() {
            return Err(VaultError::NeedsOperator(format!(
                "Vault at {} is sealed and this step asks the key holders for their shares; run it without --yes, or give the shares as secret inputs in `keys`",
                conn.addr
            )));
        }
        if s.progress > 0 {
            out.say(
                ctx,
                format!(
                    "{} of {} shares were already entered (earlier, or by someone else); continuing",
                    s.progress, s.t
                ),
            );
        }
        let mut status = s;
        let mut entered = 0usize;
        for round in 1..=ROUNDS {
            let mut next_key = 0usize;
            let mut next_holder = 0usize;
            let mut asked = 0usize;
            let mut rejected = false;
            while status.sealed {
                let share = if next_key < keys.len() {
                    next_key += 1;
                    keys[next_key - 1].clone()
                } else if next_holder < a.holders.len() {
                    next_holder += 1;
                    let h = &a.holders[next_holder - 1];
                    ask_secret(
                        ctx,
                        &format!(
                            "{h}: your unseal key share ({}/{} entered so far)",
                            status.progress, status.t
                        ),
                    )?
                } else if a.holders.is_empty() && ctx.operator.interactive() {
                    asked += 1;
                    ask_secret(
                        ctx,
                        &format!(
                            "Unseal key share {asked} ({}/{} entered so far)",
                            status.progress, status.t
                        ),
                    )?
                } else {
                    let who = if keys.is_empty() {
                        format!("every holder ({}) gave a share", a.holders.join(", "))
                    } else {
                        format!("all {} given share(s) are in", keys.len())
                    };
                    return Err(VaultError::Invalid(format!(
                        "Vault at {} is still sealed: {who}, but it needs {} (progress {}/{}); add the missing shares",
                        conn.addr, status.t, status.progress, status.t
                    )));
                };
                let (code, v) = conn
                    .call(
                        ctx,
                        Method::Put,
                        "sys/unseal",
                        Some(&json!({ "key": share })),
                    )
                    .await?;
                if code == 200 {
                    let before = status.progress;
                    status = serde_json::from_value(v).unwrap_or(status);
                    entered += 1;
                    if status.sealed && status.progress <= before {
                        out.say(
                            ctx,
                            "that share was already entered; progress unchanged".into(),
                        );
                    } else if status.sealed {
                        ctx.progress(format!(
                            "share accepted: {}/{} toward the threshold",
                            status.progress, status.t
                        ));
                    }
                    continue;
                }
                let detail = api_detail(&v);
                if detail.contains("valid hex or base64") {
                    // Refused before it counted: the progress stands.
                    out.say(ctx, "that is not a key share (not hex or base64 of the right length); enter it again".into());
                    if !keys.is_empty() && next_key <= keys.len() && next_holder == 0 && asked == 0
                    {
                        return Err(VaultError::Invalid(format!(
                            "key share {next_key} of the runbook's inputs is not a key share (Vault: {}); check the input",
                            short(&detail)
                        )));
                    }
                    next_holder = next_holder.saturating_sub(1);
                    continue;
                }
                // The threshold was reached with a wrong share: Vault keeps nothing useful.
                let _ = conn
                    .call(
                        ctx,
                        Method::Put,
                        "sys/unseal",
                        Some(&json!({ "reset": true })),
                    )
                    .await?;
                status = conn.seal_status(ctx).await?;
                rejected = true;
                out.say(
                    ctx,
                    format!(
                        "Vault rejected the shares at the threshold: one of them is wrong or belongs to another Vault ({}); progress reset to {}/{}",
                        short(&detail),
                        status.progress,
                        status.t
                    ),
                );
                break;
            }
            if !status.sealed {
                break;
            }
            if rejected && (!keys.is_empty() || !ctx.operator.interactive() || round == ROUNDS) {
                return Err(VaultError::Invalid(format!(
                    "Vault at {} is still sealed: a key share was wrong{}; check the shares against your offline copies",
                    conn.addr,
                    if keys.is_empty() {
                        ""
                    } else {
                        " (the runbook's `keys` inputs hold a wrong one)"
                    }
                )));
            }
            if rejected {
                out.say(ctx, "every holder enters their share again".into());
            }
        }
        let active = conn.wait_active(ctx, ACTIVE_WAIT).await?;
        out.say(
            ctx,
            format!(
                "Vault at {} is unsealed ({} share(s) entered, threshold {}){}",
                conn.addr,
                entered,
                status.t,
                inactive_note(active)
            ),
        );
        out.done(result(&status, entered))
    }
}
