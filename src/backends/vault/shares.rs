//! Key shares: masked questions, the shares a step's inputs give, and their entry at a
//! rekey or its verification (the runbook's inputs first, then the operator; Vault's
//! progress; rounds started over after Vault rejects a combination).

use std::fmt::Write as _;

use serde_json::Value;

use super::conn::{Conn, Method, api_detail, payload};
use super::rekey::{RekeyApi, completes};
use super::{Out, Res, VaultError, render, short};
use crate::exec::backend::ActionCtx;
use crate::exec::prompt::PromptError;
use crate::runbook::{Sink, Text};

/// Rounds of share collection after Vault rejects a combination of shares.
pub(super) const ROUNDS: usize = 3;
/// Attempts at one masked answer that the prompt refuses (too short).
pub(super) const ASK_ATTEMPTS: usize = 3;

/// What a seal's shares are called: recovery shares (auto-unseal) or unseal key shares.
pub(super) fn share_kind(recovery: bool) -> &'static str {
    if recovery { "recovery" } else { "unseal key" }
}

/// The shares a step's `keys` give (hidden inputs, trimmed; empty ones left out).
pub(super) fn render_keys(ctx: &ActionCtx<'_>, keys: &[Text]) -> Res<Vec<String>> {
    Ok(keys
        .iter()
        .map(|k| render(ctx, k, Sink::Hidden).map(|v| v.trim().to_owned()))
        .collect::<Res<Vec<_>>>()?
        .into_iter()
        .filter(|k| !k.is_empty())
        .collect())
}

/// New shares to show once, a line each: `{label} {n}: {share}`, numbered from 1.
pub(super) fn share_lines(label: &str, shares: &[String]) -> String {
    let mut body = String::new();
    for (i, k) in shares.iter().enumerate() {
        let _ = writeln!(body, "{label} {}: {k}", i + 1);
    }
    body
}

/// The shares entered at a rekey or its verification: the runbook's inputs first, then
/// the operator (masked); Vault's count; how many times the operator started over.
pub(super) struct ShareEntry<'k> {
    keys: &'k [String],
    required: u64,
    next_key: usize,
    asked: usize,
    rounds: usize,
    progress: u64,
}

impl<'k> ShareEntry<'k> {
    pub(super) fn new(keys: &'k [String], required: u64) -> Self {
        ShareEntry {
            keys,
            required,
            next_key: 0,
            asked: 0,
            rounds: 1,
            progress: 0,
        }
    }

    /// The next share; `prompt(asked, progress, required)` words the masked question.
    pub(super) fn next(
        &mut self,
        ctx: &ActionCtx<'_>,
        prompt: impl FnOnce(usize, u64, u64) -> String,
    ) -> Res<String> {
        if let Some(k) = self.keys.get(self.next_key) {
            self.next_key += 1;
            return Ok(k.clone());
        }
        self.asked += 1;
        ask_secret(ctx, &prompt(self.asked, self.progress, self.required))
    }

    /// Vault took the share without completing: its progress moved, or it was a repeat.
    pub(super) fn accepted(
        &mut self,
        ctx: &ActionCtx<'_>,
        out: &mut Out,
        st: &Value,
        stage: &str,
        which: &str,
    ) {
        let p = st["progress"].as_u64().unwrap_or(self.progress);
        if p <= self.progress {
            out.say(
                ctx,
                "that share was already entered; progress unchanged".into(),
            );
        }
        self.progress = p;
        ctx.progress(format!(
            "{stage}: {}/{} {which} shares entered",
            self.progress, self.required
        ));
    }

    /// Vault refused (400): a share that is not one is asked again; wrong shares at the
    /// threshold start a new round with the operator, or end the step when they came
    /// from the runbook, nobody is at the terminal, or the rounds are used up.
    pub(super) fn rejected(
        &mut self,
        ctx: &ActionCtx<'_>,
        out: &mut Out,
        detail: &str,
        not_a_share: impl FnOnce(usize) -> String,
        wrong_at_threshold: impl FnOnce() -> String,
        again: &str,
    ) -> Res<()> {
        let from_inputs = self.asked == 0;
        if detail.contains("valid hex or base64") {
            if from_inputs {
                return Err(VaultError::Invalid(not_a_share(self.next_key)));
            }
            out.say(
                ctx,
                "that is not a key share (not hex or base64 of the right length); enter it again"
                    .into(),
            );
            return Ok(());
        }
        if from_inputs || self.rounds >= ROUNDS || !ctx.operator.interactive() {
            return Err(VaultError::Invalid(wrong_at_threshold()));
        }
        self.rounds += 1;
        self.progress = 0;
        self.next_key = self.keys.len();
        self.asked = 0;
        out.say(ctx, again.to_owned());
        Ok(())
    }
}

/// A masked answer; a refused one (too short) is asked again a few times.
pub(super) fn ask_secret(ctx: &ActionCtx<'_>, prompt: &str) -> Res<String> {
    let mut last = String::new();
    for _ in 0..ASK_ATTEMPTS {
        match ctx.operator.ask_secret(prompt) {
            Ok(v) => return Ok(v.trim().to_owned()),
            Err(PromptError::Io(e)) if e.starts_with("a secret must be") => {
                ctx.progress(format!("{e}; try again"));
                last = e;
            }
            Err(e) => return Err(VaultError::Operator(e)),
        }
    }
    Err(VaultError::Operator(PromptError::Io(last)))
}

/// Whether Vault's error says the key shares do not combine into its key.
pub(super) fn wrong_shares(detail: &str) -> bool {
    [
        "message authentication failed",
        "invalid key",
        "incorrect key",
    ]
    .iter()
    .any(|m| detail.contains(m))
}

/// The shares a rekey takes, and the words for them.
#[derive(Clone, Copy)]
pub(super) enum Stage<'a> {
    /// The current shares, at `update`, to generate the new ones. A wrong share at the
    /// threshold: Vault resets the progress and keeps the nonce.
    Current { nonce: &'a str },
    /// The new (`kind`) shares entered back at `verify`. Wrong shares at the threshold:
    /// Vault restarts the verification with a new nonce (read before each share); the
    /// rekey stays pending and the current shares keep working.
    New { kind: &'a str },
}

impl Stage<'_> {
    /// The endpoint below the rekey API's base.
    fn op(self) -> &'static str {
        match self {
            Stage::Current { .. } => "update",
            Stage::New { .. } => "verify",
        }
    }

    /// What the stage is called in errors, and (stage, shares) in progress lines.
    fn words(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Stage::Current { .. } => ("the rekey", "rekey", "current"),
            Stage::New { .. } => ("the verification", "verification", "new"),
        }
    }

    fn prompt(self, asked: usize, progress: u64, required: u64) -> String {
        match self {
            Stage::Current { .. } => {
                format!("Current key share {asked} for the rekey ({progress}/{required} entered)")
            }
            Stage::New { kind } => {
                format!("New {kind} share {asked} to verify ({progress}/{required} entered)")
            }
        }
    }

    /// Whether Vault refused the shares (what `ShareEntry::rejected` handles) rather
    /// than failed: 400, and at the verification also sys/rekey's 500 for shares that do
    /// not combine.
    fn refused(self, code: u16, detail: &str) -> bool {
        match self {
            Stage::Current { .. } => code == 400,
            Stage::New { .. } => code == 400 || (code == 500 && wrong_shares(detail)),
        }
    }

    /// Share `n` of the runbook's inputs is not a key share.
    fn not_a_share(self, n: usize, detail: &str) -> String {
        match self {
            Stage::Current { .. } => format!(
                "key share {n} of the runbook's inputs is not a key share ({})",
                short(detail)
            ),
            Stage::New { .. } => format!(
                "new share {n} of the runbook is not a key share ({})",
                short(detail)
            ),
        }
    }

    /// Wrong shares at the threshold, and no new round.
    fn wrong_at_threshold(self, detail: &str) -> String {
        match self {
            Stage::Current { .. } => format!(
                "Vault rejected the current shares at the threshold: one is wrong or from another Vault ({})",
                short(detail)
            ),
            Stage::New { kind } => format!(
                "Vault rejected the new {kind} shares at the verification: they are not the shares of the pending rekey (from another attempt?) ({}); the rekey stays pending and the current shares still work: run the rekey step again to start over",
                short(detail)
            ),
        }
    }

    /// Wrong shares at the threshold, before a new round.
    fn again(self, detail: &str) -> String {
        match self {
            Stage::Current { .. } => format!(
                "Vault rejected the shares at the threshold ({}): one is wrong; enter them again",
                short(detail)
            ),
            Stage::New { .. } => format!(
                "Vault rejected the new shares at the verification ({}): one is wrong; enter them again",
                short(detail)
            ),
        }
    }
}

/// Enters shares at `stage` of the rekey through `api` until Vault completes it: the
/// runbook's `keys` first, then the operator's (masked). Returns the completing answer.
pub(super) async fn enter_shares(
    conn: &Conn,
    ctx: &ActionCtx<'_>,
    api: &RekeyApi,
    stage: Stage<'_>,
    required: u64,
    keys: &[String],
    out: &mut Out,
) -> Res<Value> {
    let (what, name, which) = stage.words();
    let mut entry = ShareEntry::new(keys, required);
    loop {
        let nonce = match stage {
            Stage::Current { nonce } => nonce.to_owned(),
            Stage::New { .. } => {
                let (code, v) = conn
                    .call(ctx, Method::Get, &api.path("verify"), None)
                    .await?;
                if code != 200 {
                    return Err(VaultError::Invalid(format!(
                        "the pending verification at {} went away while drctl entered the new shares ({}): someone cancelled or completed it; check with `vault operator rekey -status`",
                        conn.addr,
                        short(&api_detail(&v))
                    )));
                }
                payload(&v)["nonce"].as_str().unwrap_or_default().to_owned()
            }
        };
        let share = entry.next(ctx, |asked, progress, required| {
            stage.prompt(asked, progress, required)
        })?;
        let (code, v) = api.submit(conn, ctx, stage.op(), &share, &nonce).await?;
        let st = payload(&v);
        if code == 200 {
            if completes(st) {
                return Ok(st.clone());
            }
            entry.accepted(ctx, out, st, name, which);
            continue;
        }
        let detail = api_detail(&v);
        if !stage.refused(code, &detail) {
            return Err(conn
                .classify(
                    ctx,
                    &format!("{what} ({})", api.path(stage.op())),
                    code,
                    &detail,
                )
                .await);
        }
        entry.rejected(
            ctx,
            out,
            &detail,
            |n| stage.not_a_share(n, &detail),
            || stage.wrong_at_threshold(&detail),
            &stage.again(&detail),
        )?;
    }
}
