//! Key shares from the operators: masked questions, and the entry of shares at a rekey or
//! its verification (the runbook's inputs first, then the operator; Vault's progress;
//! rounds started over after Vault rejects a combination).

use serde_json::Value;

use super::{Out, Res, VaultError};
use crate::exec::backend::ActionCtx;
use crate::exec::prompt::PromptError;

/// Rounds of share collection after Vault rejects a combination of shares.
pub(super) const ROUNDS: usize = 3;
/// Attempts at one masked answer that the prompt refuses (too short).
pub(super) const ASK_ATTEMPTS: usize = 3;

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
