//! `vault.rekey`: Vault's `sys/rekey`, OpenBao's `sys/rotate/root` (and their recovery-key
//! variants). New shares are verified at once, or left pending verification (the current
//! shares keep working) for `vault.rekey-verify`.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::conn::{Conn, Method, api_detail, payload, strings};
use super::shares::{
    ASK_ATTEMPTS, Stage, ask_secret, enter_shares, render_keys, share_kind, share_lines,
};
use super::{Out, Res, VaultBackend, VaultError};
use crate::exec::backend::{ActionCtx, ActionResult};
use crate::runbook::action::{RekeyMethod, VaultRekey};

pub(super) struct RekeyApi {
    /// `sys/rekey`, `sys/rekey-recovery-key`, `sys/rotate/root` or `sys/rotate/recovery`.
    pub(super) base: &'static str,
    pub(super) name: &'static str,
}

impl RekeyApi {
    fn vault(recovery: bool) -> Self {
        RekeyApi {
            base: if recovery {
                "sys/rekey-recovery-key"
            } else {
                "sys/rekey"
            },
            name: "rekey",
        }
    }

    fn openbao(recovery: bool) -> Self {
        RekeyApi {
            base: if recovery {
                "sys/rotate/recovery"
            } else {
                "sys/rotate/root"
            },
            name: "rotate-root",
        }
    }

    pub(super) fn path(&self, op: &str) -> String {
        format!("{}/{op}", self.base)
    }

    /// Starts a rekey to `shares` shares with `threshold`, verification required (so the
    /// new shares take effect only once entered back); Vault's answer, or the error for
    /// `what`.
    pub(super) async fn start(
        &self,
        conn: &Conn,
        ctx: &ActionCtx<'_>,
        shares: u64,
        threshold: u64,
        what: &str,
    ) -> Res<Value> {
        let body = json!({
            "secret_shares": shares,
            "secret_threshold": threshold,
            "require_verification": true,
        });
        let v = conn
            .call_ok(ctx, Method::Put, &self.path("init"), Some(&body), what)
            .await?;
        Ok(payload(&v).clone())
    }

    /// One share entered at `op`: `update` (a current share) or `verify` (a new one).
    pub(super) async fn submit(
        &self,
        conn: &Conn,
        ctx: &ActionCtx<'_>,
        op: &str,
        key: &str,
        nonce: &str,
    ) -> Res<(u16, Value)> {
        conn.call(
            ctx,
            Method::Put,
            &self.path(op),
            Some(&json!({ "key": key, "nonce": nonce })),
        )
        .await
    }
}

/// Whether an answer of `update` or `verify` (its payload) says the stage is complete.
pub(super) fn completes(st: &Value) -> bool {
    st["complete"].as_bool().unwrap_or(false)
}

/// Shows the new shares once on the terminal, `note` after their count and threshold.
fn show_new_shares(ctx: &ActionCtx<'_>, a: &VaultRekey, new_b64: &[String], note: &str) -> Res<()> {
    let kind = share_kind(a.recovery);
    let mut body = share_lines(&format!("New {kind} share"), new_b64);
    let _ = write!(
        body,
        "\n{} shares, threshold {}. {note}",
        a.shares, a.threshold
    );
    ctx.operator
        .show_secret_once(&format!("New {kind} shares (shown once)"), &body)
        .map_err(VaultError::Operator)
}

impl VaultBackend {
    /// Which rekey API the server offers: Vault's unauthenticated `sys/rekey` where it
    /// answers, else OpenBao's authenticated `sys/rotate/root` (OpenBao 2.5+ answers 405 on
    /// `sys/rekey` unless `disable_unauthed_rekey_endpoints = false`).
    pub(super) async fn rekey_api(
        &self,
        conn: &Conn,
        ctx: &ActionCtx<'_>,
        method: RekeyMethod,
        recovery: bool,
    ) -> Res<(RekeyApi, Value)> {
        let candidates = match method {
            RekeyMethod::Rekey => vec![RekeyApi::vault(recovery)],
            RekeyMethod::RotateRoot => vec![RekeyApi::openbao(recovery)],
            RekeyMethod::Auto => vec![RekeyApi::vault(recovery), RekeyApi::openbao(recovery)],
        };
        let mut answers = Vec::new();
        let mut denied = None;
        for api in candidates {
            let (code, v) = conn.call(ctx, Method::Get, &api.path("init"), None).await?;
            if code == 200 {
                return Ok((api, payload(&v).clone()));
            }
            if code == 403 {
                denied = Some(
                    conn.classify(
                        ctx,
                        &format!("the rekey ({})", api.path("init")),
                        code,
                        &api_detail(&v),
                    )
                    .await,
                );
            }
            answers.push(format!(
                "{} answers {code} ({})",
                api.path("init"),
                api_detail(&v)
            ));
        }
        if let Some(e) = denied
            && method != RekeyMethod::Rekey
        {
            return Err(e);
        }
        Err(VaultError::Invalid(format!(
            "Vault at {} offers no rekey API drctl can use: {}; on OpenBao 2.5+ use a token with sudo on sys/rotate/root (or `disable_unauthed_rekey_endpoints = false` on the listener for sys/rekey)",
            conn.addr,
            answers.join("; ")
        )))
    }

    pub(super) async fn rekey(&self, a: &VaultRekey, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), a.token.as_ref(), &mut out)?;
        if a.threshold == 0 || a.threshold > a.shares {
            return Err(VaultError::Invalid(format!(
                "vault.rekey: threshold {} must be between 1 and shares ({})",
                a.threshold, a.shares
            )));
        }
        let what = "a rekey";
        let s = conn.seal_status(ctx).await?;
        if ctx.dry_run && !s.open() {
            out.say(ctx, format!("Vault at {} is {} now; would rekey to {} shares, threshold {}, once it is unsealed", conn.addr, s.summary(), a.shares, a.threshold));
            return out.done(
                json!({ "address": conn.addr, "shares": a.shares, "threshold": a.threshold }),
            );
        }
        conn.require_open(ctx, what).await?;
        let kind = share_kind(a.recovery);
        let (api, state) = self.rekey_api(&conn, ctx, a.method, a.recovery).await?;
        let started = state["started"].as_bool().unwrap_or(false);
        let required = state["required"].as_u64().unwrap_or(s.t);
        let keys = render_keys(ctx, &a.keys)?;
        if ctx.dry_run {
            if started {
                out.say(ctx, format!("a rekey is already in progress ({} of {} current shares entered); it would be cancelled first", state["progress"].as_u64().unwrap_or(0), required));
            }
            out.say(ctx, format!(
                "would rekey Vault at {} through {} ({}): {required} current {kind} share(s) needed ({} from the inputs{}), then {} new shares with threshold {}, {}",
                conn.addr, api.base, api.name, keys.len(),
                if (keys.len() as u64) < required { ", the rest asked" } else { "" },
                a.shares, a.threshold,
                if a.verify { "shown once and verified" } else { "left pending verification (the current shares keep working until vault.rekey-verify)" }
            ));
            return out.done(json!({ "address": conn.addr, "method": api.name, "shares": a.shares, "threshold": a.threshold, "verified": false }));
        }
        // The new shares must be shown or captured, or the rekey would lock Vault away.
        let show = ctx.operator.interactive();
        if !show && !ctx.quiet {
            return Err(VaultError::NeedsOperator(format!(
                "vault.rekey shows the new {kind} shares once on a terminal, and there is none (--yes or no tty); run this step interactively, or capture `result.keys` as a secret output"
            )));
        }
        if (keys.len() as u64) < required && !ctx.operator.interactive() {
            return Err(VaultError::NeedsOperator(format!(
                "the rekey needs {required} current {kind} share(s) and the runbook gives {}; run this step interactively to enter the rest",
                keys.len()
            )));
        }
        if started {
            if !a.verify {
                out.say(ctx, format!(
                    "a rekey is already in progress at {} ({}; an interrupted attempt?): nothing was verified, so the current {kind} shares still work",
                    conn.addr,
                    if state["verification_nonce"].as_str().is_some_and(|n| !n.is_empty()) {
                        "its new shares are pending verification"
                    } else {
                        "its new shares were not generated yet"
                    }
                ));
            }
            let cancel = !ctx.operator.interactive()
                || ctx
                    .operator
                    .confirm("A rekey started earlier is still in progress (an interrupted attempt?). Cancel it and start again?", true)
                    .map_err(VaultError::Operator)?;
            if !cancel {
                return Err(VaultError::Invalid("a rekey is already in progress; finish or cancel it (`vault operator rekey -cancel`) first".into()));
            }
            self.rekey_cancel(&conn, ctx, &api).await?;
            out.say(
                ctx,
                "cancelled the rekey left over from an earlier attempt".into(),
            );
        }
        let st = api
            .start(
                &conn,
                ctx,
                u64::from(a.shares),
                u64::from(a.threshold),
                "starting the rekey",
            )
            .await?;
        let nonce = st["nonce"].as_str().unwrap_or_default().to_owned();
        let required = st["required"].as_u64().unwrap_or(required);
        out.say(
            ctx,
            format!(
                "rekey started through {} ({}): {required} current {kind} share(s) needed",
                api.base, api.name
            ),
        );
        let done = match enter_shares(
            &conn,
            ctx,
            &api,
            Stage::Current { nonce: &nonce },
            required,
            &keys,
            &mut out,
        )
        .await
        {
            Ok(d) => d,
            Err(e) => {
                // Leave nothing half-started behind: the old keys stay valid.
                let _ = self.rekey_cancel(&conn, ctx, &api).await;
                return Err(e);
            }
        };
        let new_hex = strings(&done, "keys");
        let new_b64 = strings(&done, "keys_base64");
        let vnonce = done["verification_nonce"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let red = ctx.bus.redactor();
        for k in new_hex.iter().chain(&new_b64) {
            red.add(k);
        }
        if !a.verify {
            return self.rekey_pending(ctx, out, &conn, &api, a, new_hex, new_b64, &vnonce, show);
        }
        let verified = self
            .rekey_show_and_verify(&conn, ctx, &api, a, &new_b64, &new_hex, &vnonce, show)
            .await;
        if let Err(e) = verified {
            let _ = self.rekey_cancel(&conn, ctx, &api).await;
            return Err(VaultError::Invalid(format!(
                "the rekey was cancelled and the current {kind} shares stay valid: {e}"
            )));
        }
        out.say(ctx, format!("rekeyed and verified: {} new {kind} shares, threshold {}; the old shares no longer work", a.shares, a.threshold));
        out.done(json!({
            "address": conn.addr,
            "method": api.name,
            "recovery": a.recovery,
            "shares": a.shares,
            "threshold": a.threshold,
            "verified": true,
            "keys": new_hex,
            "keys_base64": new_b64,
        }))
    }

    /// `verify: false`: the new shares are shown (on a terminal) and returned; the rekey
    /// stays pending verification, so the current shares keep working until
    /// `vault.rekey-verify` enters the new ones back.
    #[allow(clippy::too_many_arguments)]
    fn rekey_pending(
        &self,
        ctx: &ActionCtx<'_>,
        mut out: Out,
        conn: &Conn,
        api: &RekeyApi,
        a: &VaultRekey,
        new_hex: Vec<String>,
        new_b64: Vec<String>,
        vnonce: &str,
        show: bool,
    ) -> Res<ActionResult> {
        let kind = share_kind(a.recovery);
        if vnonce.is_empty() {
            // Vault completed the rekey without a verification stage: the old shares are
            // gone already. Never expected (drctl asks for the verification), but say so.
            return Err(VaultError::Invalid(format!(
                "Vault at {} completed the rekey without the verification drctl asked for: the old {kind} shares no longer work and the new ones exist only in this process; store them now",
                conn.addr
            )));
        }
        if show {
            show_new_shares(
                ctx,
                a,
                &new_b64,
                &format!(
                    "They are pending: the current shares keep working until {} of these are entered at the verification (the vault.rekey-verify step).",
                    a.threshold
                ),
            )?;
        }
        out.say(ctx, format!(
            "new {kind} shares generated through {} ({}): {}, threshold {}; pending verification (nonce {vnonce}): the current shares still work until vault.rekey-verify completes it",
            api.base, api.name, a.shares, a.threshold
        ));
        out.done(json!({
            "address": conn.addr,
            "method": api.name,
            "recovery": a.recovery,
            "shares": a.shares,
            "threshold": a.threshold,
            "verified": false,
            "nonce": vnonce,
            "keys": new_hex,
            "keys_base64": new_b64,
        }))
    }

    pub(super) async fn rekey_cancel(
        &self,
        conn: &Conn,
        ctx: &ActionCtx<'_>,
        api: &RekeyApi,
    ) -> Res<()> {
        let (code, v) = conn
            .call(ctx, Method::Delete, &api.path("init"), None)
            .await?;
        if code == 200 || code == 204 {
            Ok(())
        } else {
            Err(conn
                .classify(ctx, "cancelling the rekey", code, &api_detail(&v))
                .await)
        }
    }

    /// Shows the new shares once and has them entered back (or, with no terminal, uses
    /// the ones in memory), then completes the verification.
    #[allow(clippy::too_many_arguments)]
    async fn rekey_show_and_verify(
        &self,
        conn: &Conn,
        ctx: &ActionCtx<'_>,
        api: &RekeyApi,
        a: &VaultRekey,
        new_b64: &[String],
        new_hex: &[String],
        vnonce: &str,
        show: bool,
    ) -> Res<()> {
        let mut proof: Vec<String> = Vec::new();
        if show {
            show_new_shares(
                ctx,
                a,
                new_b64,
                &format!(
                    "They replace the current ones only once {} of them are entered back to verify.",
                    a.threshold
                ),
            )?;
            let mut wrong = 0;
            while (proof.len() as u64) < u64::from(a.threshold) {
                let k = ask_secret(
                    ctx,
                    &format!(
                        "Verify: enter a new share as you stored it ({}/{} verified)",
                        proof.len(),
                        a.threshold
                    ),
                )?;
                let known = new_b64.iter().chain(new_hex).any(|n| *n == k);
                if !known {
                    wrong += 1;
                    if wrong >= ASK_ATTEMPTS {
                        return Err(VaultError::Invalid(format!(
                            "{wrong} entries did not match any new share; the new shares were not stored correctly"
                        )));
                    }
                    ctx.progress(
                        "that is not one of the new shares; check your copy and enter it again"
                            .to_owned(),
                    );
                    continue;
                }
                if proof.contains(&k) {
                    ctx.progress("that share was verified already; enter another".to_owned());
                    continue;
                }
                proof.push(k);
            }
        } else {
            proof = new_b64
                .iter()
                .take(usize::from(a.threshold))
                .cloned()
                .collect();
        }
        for k in &proof {
            let (code, v) = api.submit(conn, ctx, "verify", k, vnonce).await?;
            if code != 200 {
                return Err(conn.api("verifying the new shares", code, &v));
            }
            if completes(payload(&v)) {
                return Ok(());
            }
        }
        Err(VaultError::Invalid(
            "the verification did not complete after the threshold of new shares".into(),
        ))
    }
}
