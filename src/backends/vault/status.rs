//! `vault.status` (seal status, HA, expectations) and `vault.wait-unsealed` (polls until
//! an operator or the auto-unseal has unsealed Vault).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::conn::{ACTIVE_WAIT, cancellable, inactive_note};
use super::{Out, Res, VaultBackend, VaultError, render, short};
use crate::exec::backend::{ActionCtx, ActionResult};
use crate::runbook::action::{VaultStatus, VaultWaitUnsealed};
use crate::runbook::{Dur, Sink};

/// Seal status is polled this often while waiting (Vault has no watch).
const POLL: Duration = Duration::from_secs(2);

impl VaultBackend {
    pub(super) async fn status(&self, a: &VaultStatus, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), None, &mut out)?;
        let s = conn.seal_status(ctx).await?;
        let leader = if s.sealed {
            None
        } else {
            conn.leader(ctx).await?
        };
        out.say(
            ctx,
            format!(
                "Vault at {}: initialized {}, sealed {}, unseal progress {}/{} ({} of {} shares needed), {} seal, version {}",
                conn.addr, s.initialized, s.sealed, s.progress, s.t, s.t, s.n, s.seal_type, s.version
            ),
        );
        let (ha_enabled, active, leader_address) = match &leader {
            Some((ha, me, l)) => {
                out.say(
                    ctx,
                    if *ha {
                        format!(
                            "HA enabled: {} (leader {l})",
                            if *me {
                                "this node is active"
                            } else {
                                "this node is a standby"
                            }
                        )
                    } else {
                        "HA disabled".to_owned()
                    },
                );
                (json!(ha), json!(me), json!(l))
            }
            None => (Value::Null, Value::Null, Value::Null),
        };
        let mut wrong = Vec::new();
        if let Some(i) = a.expect.initialized
            && i != s.initialized
        {
            wrong.push(format!("expected initialized {i}, it is {}", s.initialized));
        }
        if let Some(x) = a.expect.sealed
            && x != s.sealed
        {
            wrong.push(format!("expected sealed {x}, it is {}", s.sealed));
        }
        if !wrong.is_empty() {
            return Err(VaultError::Expect {
                addr: conn.addr,
                detail: wrong.join("; "),
            });
        }
        out.done(json!({
            "address": conn.addr,
            "initialized": s.initialized,
            "sealed": s.sealed,
            "progress": s.progress,
            "threshold": s.t,
            "shares": s.n,
            "seal_type": s.seal_type,
            "recovery_seal": s.recovery_seal,
            "version": s.version,
            "cluster_name": s.cluster_name,
            "storage_type": s.storage_type,
            "ha_enabled": ha_enabled,
            "active": active,
            "leader_address": leader_address,
        }))
    }

    pub(super) async fn wait_unsealed(
        &self,
        a: &VaultWaitUnsealed,
        ctx: &ActionCtx<'_>,
    ) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), None, &mut out)?;
        let by = match &a.unsealed_by {
            Some(t) => render(ctx, t, Sink::Shown)?,
            None => "an operator or the auto-unseal".to_owned(),
        };
        let start = Instant::now();
        // Finish a little before the engine's own timeout, to say what was last seen.
        let deadline = ctx
            .timeout
            .map(|t| start + t.saturating_sub(Duration::from_millis(250)));
        let mut last;
        let mut polls = 0u32;
        loop {
            polls += 1;
            match conn.seal_status(ctx).await {
                Ok(s) if s.open() => {
                    let left = deadline
                        .map(|d| d.saturating_duration_since(Instant::now()))
                        .unwrap_or(ACTIVE_WAIT)
                        .min(ACTIVE_WAIT);
                    let active = conn.wait_active(ctx, left).await?;
                    let waited = start.elapsed();
                    out.say(
                        ctx,
                        format!(
                            "Vault at {} is unsealed after {} ({} seal, version {}){}",
                            conn.addr,
                            Dur::human(Duration::from_secs(waited.as_secs())),
                            s.seal_type,
                            s.version,
                            inactive_note(active)
                        ),
                    );
                    return out.done(json!({
                        "address": conn.addr,
                        "sealed": false,
                        "initialized": true,
                        "waited_secs": waited.as_secs(),
                        "polls": polls,
                        "active": active,
                        "seal_type": s.seal_type,
                        "version": s.version,
                    }));
                }
                Ok(s) => {
                    last = if s.initialized {
                        format!("sealed, progress {}/{}", s.progress, s.t)
                    } else {
                        "not initialised".to_owned()
                    };
                }
                Err(VaultError::Cancelled) => return Err(VaultError::Cancelled),
                // The pod may be restarting or the port-forward reconnecting: keep waiting.
                Err(e @ VaultError::Unreachable { .. }) => {
                    last = format!("unreachable ({})", short(&e.to_string()));
                }
                Err(e) => return Err(e),
            }
            ctx.progress(format!("{last}, waiting for {by}"));
            let mut pause = POLL;
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(VaultError::Timeout(format!(
                        "{}: Vault at {} is still {last}; it was waiting for {by}",
                        Dur::human(ctx.timeout.unwrap_or_default()),
                        conn.addr
                    )));
                }
                pause = pause.min(left);
            }
            cancellable(ctx, tokio::time::sleep(pause)).await?;
        }
    }
}
