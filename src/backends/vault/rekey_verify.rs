//! `vault.rekey-verify`: completes a rekey left pending verification by entering the new
//! shares; with nothing pending, checks with a test rekey (cancelled again) whether the
//! given shares are already Vault's current ones.

use serde_json::json;

use super::conn::{Conn, Method, SealStatus, api_detail, payload};
use super::rekey::{RekeyApi, completes};
use super::shares::{Stage, enter_shares, render_keys, share_kind, wrong_shares};
use super::{Out, Res, VaultBackend, VaultError, short};
use crate::exec::backend::{ActionCtx, ActionResult};
use crate::runbook::action::VaultRekeyVerify;

/// How a `vault.rekey-verify` ended without error.
const VERIFY_COMPLETED: &str = "completed";
const VERIFY_ALREADY_CURRENT: &str = "already-current";

impl VaultBackend {
    pub(super) async fn rekey_verify(
        &self,
        a: &VaultRekeyVerify,
        ctx: &ActionCtx<'_>,
    ) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), a.token.as_ref(), &mut out)?;
        let kind = share_kind(a.recovery);
        let what = "a rekey verification";
        let s = conn.seal_status(ctx).await?;
        if ctx.dry_run && !s.open() {
            out.say(
                ctx,
                format!(
                    "Vault at {} is {} now; would verify the pending rekey with the new {kind} shares once it is unsealed",
                    conn.addr,
                    s.summary()
                ),
            );
            return out.done(json!({ "address": conn.addr, "verified": false }));
        }
        conn.require_open(ctx, what).await?;
        let (api, state) = self.rekey_api(&conn, ctx, a.method, a.recovery).await?;
        let keys = render_keys(ctx, &a.keys)?;
        let started = state["started"].as_bool().unwrap_or(false);
        let pending = state["verification_nonce"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        if started && !pending {
            // The first stage never finished: no new shares exist, nothing to verify.
            return Err(VaultError::Invalid(format!(
                "a rekey is in progress at {} through {} but its new {kind} shares were never generated (not all current shares were entered), so there is nothing to verify and the current shares still work; run the rekey step again (it cancels this attempt and starts over)",
                conn.addr, api.base
            )));
        }
        if !started {
            return self
                .rekey_verify_nothing_pending(ctx, out, &conn, &api, a, &s, &keys)
                .await;
        }
        // Pending: the verification's own status has the new threshold and its nonce.
        let v = conn
            .call_ok(
                ctx,
                Method::Get,
                &api.path("verify"),
                None,
                "reading the verification",
            )
            .await?;
        let vs = payload(&v);
        let required = vs["t"]
            .as_u64()
            .or_else(|| state["t"].as_u64())
            .unwrap_or(1);
        let progress = vs["progress"].as_u64().unwrap_or(0);
        if ctx.dry_run {
            out.say(ctx, format!(
                "a rekey is pending verification at {} through {} ({}): {progress}/{required} new {kind} share(s) entered; would enter {} from the inputs{} and complete it (the old shares would stop working)",
                conn.addr, api.base, api.name, keys.len(),
                if (keys.len() as u64) < required { ", the rest asked" } else { "" }
            ));
            return out
                .done(json!({ "address": conn.addr, "method": api.name, "verified": false }));
        }
        if (keys.len() as u64) < required && !ctx.operator.interactive() {
            return Err(VaultError::NeedsOperator(format!(
                "the verification needs {required} new {kind} share(s) and the runbook gives {}; run this step interactively to enter the rest",
                keys.len()
            )));
        }
        out.say(
            ctx,
            format!(
                "a rekey is pending verification at {} through {} ({}): {required} new {kind} share(s) needed",
                conn.addr, api.base, api.name
            ),
        );
        enter_shares(
            &conn,
            ctx,
            &api,
            Stage::New { kind },
            required,
            &keys,
            &mut out,
        )
        .await?;
        out.say(ctx, format!(
            "verified: the rekey is complete; from now on only the new {kind} shares unseal Vault, the old ones no longer work"
        ));
        out.done(json!({
            "address": conn.addr,
            "method": api.name,
            "recovery": a.recovery,
            "verified": true,
            "state": VERIFY_COMPLETED,
        }))
    }

    /// No rekey pending verification: it completed already (a resumed run whose earlier
    /// process was stopped right after Vault accepted the verification), or it was
    /// cancelled, or never started. Vault does not say which; drctl checks whether the
    /// given shares are Vault's current ones with a test rekey (verification required,
    /// so nothing changes) that it cancels again.
    #[allow(clippy::too_many_arguments)]
    async fn rekey_verify_nothing_pending(
        &self,
        ctx: &ActionCtx<'_>,
        mut out: Out,
        conn: &Conn,
        api: &RekeyApi,
        a: &VaultRekeyVerify,
        s: &SealStatus,
        keys: &[String],
    ) -> Res<ActionResult> {
        let kind = share_kind(a.recovery);
        // The verify status endpoint says the same ("no rekey configuration found").
        let (code, v) = conn
            .call(ctx, Method::Get, &api.path("verify"), None)
            .await?;
        let status = if code == 200 {
            "the verify endpoint reports one, but the rekey status does not".to_owned()
        } else {
            short(&api_detail(&v))
        };
        out.say(ctx, format!(
            "no rekey is pending verification at {} through {} ({status}): it was verified already (e.g. a resumed run stopped right after Vault accepted the verification), or cancelled, or never started",
            conn.addr, api.base
        ));
        let how = format!(
            "to check by hand: `vault operator rekey -status` shows no rekey in progress; then restart (or `vault operator seal`) Vault and unseal it with the new {kind} shares: if they are refused, the rekey never completed and the old key still unseals"
        );
        let threshold = s.t.max(1);
        if ctx.dry_run {
            out.say(ctx, format!(
                "would check whether the {} given share(s) are Vault's current {kind} shares (a test rekey that is cancelled again; {threshold} needed)",
                keys.len()
            ));
            return out
                .done(json!({ "address": conn.addr, "method": api.name, "verified": false }));
        }
        if (keys.len() as u64) < threshold {
            return Err(VaultError::Invalid(format!(
                "no rekey is pending verification at {}, and drctl cannot check whether the new {kind} shares are Vault's current ones ({} given, the current threshold is {threshold}); {how}",
                conn.addr,
                keys.len()
            )));
        }
        match self
            .rekey_test_current(conn, ctx, api, s, &keys[..threshold as usize])
            .await
        {
            Ok(true) => {
                out.say(ctx, format!(
                    "the given shares are Vault's current {kind} shares (checked with a test rekey, cancelled again): the rekey was completed earlier; the old shares no longer work"
                ));
                out.done(json!({
                    "address": conn.addr,
                    "method": api.name,
                    "recovery": a.recovery,
                    "verified": true,
                    "state": VERIFY_ALREADY_CURRENT,
                }))
            }
            Ok(false) => Err(VaultError::Invalid(format!(
                "no rekey is pending verification at {}, and the given shares are NOT Vault's current {kind} shares (Vault refused them in a test rekey, cancelled again; nothing changed): the rekey was cancelled or never started, or these are not the shares it generated. The key from before the rekey most likely still unseals Vault; {how}",
                conn.addr
            ))),
            Err(VaultError::Cancelled) => Err(VaultError::Cancelled),
            Err(e) => Err(VaultError::Invalid(format!(
                "no rekey is pending verification at {}, and drctl could not check whether the given shares are Vault's current {kind} shares ({e}); {how}",
                conn.addr
            ))),
        }
    }

    /// Whether `keys` (a threshold of them) are the current shares: starts a rekey with
    /// verification required, enters them, and cancels it whatever happened. The shares
    /// it generates are dropped unseen; without verification they never take effect.
    async fn rekey_test_current(
        &self,
        conn: &Conn,
        ctx: &ActionCtx<'_>,
        api: &RekeyApi,
        s: &SealStatus,
        keys: &[String],
    ) -> Res<bool> {
        let st = api
            .start(conn, ctx, s.n.max(1), s.t.max(1), "starting a test rekey")
            .await?;
        let nonce = st["nonce"].as_str().unwrap_or_default().to_owned();
        let mut answer = Ok(false);
        for k in keys {
            match api.submit(conn, ctx, "update", k, &nonce).await {
                Ok((200, v)) if completes(payload(&v)) => {
                    answer = Ok(true);
                    break;
                }
                Ok((200, _)) => {}
                Ok((400, v)) if api_detail(&v).contains("valid hex or base64") => {
                    answer = Err(VaultError::Invalid(format!(
                        "a given share is not a key share ({})",
                        short(&api_detail(&v))
                    )));
                    break;
                }
                // Refused at the threshold: not the current shares (sys/rekey says so
                // with a 500, "cipher: message authentication failed").
                Ok((400, _)) => break,
                Ok((500, v)) if wrong_shares(&api_detail(&v)) => break,
                Ok((code, v)) => {
                    answer = Err(conn.api("the test rekey", code, &v));
                    break;
                }
                Err(e) => {
                    answer = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = self.rekey_cancel(conn, ctx, api).await {
            if matches!(e, VaultError::Cancelled) || matches!(answer, Err(VaultError::Cancelled)) {
                return Err(VaultError::Cancelled);
            }
            return Err(VaultError::Invalid(format!(
                "cancelling the test rekey failed ({e}); it is harmless (nothing is verified) but cancel it with `vault operator rekey -cancel`"
            )));
        }
        answer
    }
}
