//! The Vault / OpenBao backend: status, wait until unsealed, unseal, init, KV v2 put / get /
//! populate-from-`.example`-files, and rekey (Vault's `sys/rekey`, OpenBao's
//! `sys/rotate/root`): in one step, or left pending verification (the old shares keep
//! working) and completed by `vault.rekey-verify` once the new shares are stored.
//!
//! Secrets: key shares, tokens and KV values are only ever rendered from `Sink::Hidden`
//! fields or asked masked; new ones (init, rekey) go to the run's redactor the moment they
//! arrive, are shown once on the terminal, and are returned only in the result fields the
//! action declares secret.
//!
//! Submodules, one concern each: `conn` (environment defaults, the client, requests and
//! their errors), `shares` (key shares from the runbook or asked masked), `status` (status,
//! wait-unsealed), `unseal`, `init`, `kv` (put, get, populate), `examples` (the `.example`
//! files kv-populate reads), `rekey` and `rekey_verify`. They share `VaultError` and `Out`.

mod conn;
mod examples;
#[doc(hidden)]
pub mod fuzz;
mod init;
mod kv;
mod rekey;
mod rekey_verify;
mod shares;
mod status;
mod unseal;

use serde_json::Value;

use crate::exec::backend::{ActionCtx, ActionError, ActionResult, ErrorKind};
use crate::exec::prompt::PromptError;
use crate::runbook::action::{
    VaultInit, VaultKvGet, VaultKvPopulate, VaultKvPut, VaultRekey, VaultRekeyVerify, VaultStatus,
    VaultUnseal, VaultWaitUnsealed,
};
use crate::runbook::{Sink, Text};

use conn::Defaults;

pub use examples::{ExampleSecret, example_secrets, glob_match};
pub use kv::{KV_ENV_PREFIX, kv_env_name};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "no Vault address: set VAULT_ADDR (or BAO_ADDR), or the step's `addr` (an earlier port-forward's `result.url`)"
    )]
    NoAddress,
    #[error("`{addr}` is not a Vault address ({detail}); it looks like https://vault.example:8200")]
    BadAddress { addr: String, detail: String },
    #[error(
        "no Vault token for {what}: set VAULT_TOKEN (or BAO_TOKEN, or `vault login`), or the step's `token`"
    )]
    NoToken { what: String },
    #[error(
        "cannot reach Vault at {addr}: {detail}; check the address (VAULT_ADDR or the step's `addr`), that Vault (or the port-forward to it) is running, and for https the CA (VAULT_CACERT)"
    )]
    Unreachable { addr: String, detail: String },
    #[error(
        "cannot verify the TLS certificate of Vault at {addr} ({detail}); {hint}; drctl connects unverified only when VAULT_SKIP_VERIFY=true"
    )]
    Tls {
        addr: String,
        detail: String,
        hint: &'static str,
    },
    #[error(
        "Vault at {addr} is sealed, so {what} cannot run; unseal it first (vault.unseal, or wait for the auto-unseal: vault.wait-unsealed)"
    )]
    Sealed { addr: String, what: String },
    #[error(
        "Vault at {addr} is not initialised, so {what} cannot run; this is a new or wiped Vault (see the vault-data-loss runbook)"
    )]
    NotInitialized { addr: String, what: String },
    #[error(
        "Vault at {addr} rejected the token for {what} (invalid, expired or revoked); check VAULT_TOKEN / the step's `token` (`vault token lookup`)"
    )]
    BadToken { addr: String, what: String },
    #[error(
        "permission denied for {what} at {addr}: the token is valid but its policies do not allow this; use a token whose policy grants it (`vault token capabilities <path>`)"
    )]
    PermissionDenied { addr: String, what: String },
    #[error(
        "no secrets engine is mounted at `{mount}/` on {addr}; enable KV v2 there (`vault secrets enable -path={mount} kv-v2`) or fix the step's `mount`"
    )]
    NoMount { addr: String, mount: String },
    #[error("{what} failed at {addr} (HTTP {status}): {detail}")]
    Api {
        addr: String,
        what: String,
        status: u16,
        detail: String,
    },
    #[error("Vault at {addr} is not in the expected state: {detail}")]
    Expect { addr: String, detail: String },
    #[error("no secret at `{mount}/{path}` on {addr}")]
    NoSecret {
        addr: String,
        mount: String,
        path: String,
    },
    #[error("`{mount}/{path}` lacks the key(s) {missing} (it has {present})")]
    MissingKeys {
        mount: String,
        path: String,
        missing: String,
        present: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Template(String),
    #[error("{0}")]
    Operator(PromptError),
    #[error("{0}")]
    NeedsOperator(String),
    #[error("{0}")]
    Timeout(String),
    #[error("cancelled")]
    Cancelled,
    #[error("{what}: {detail}")]
    Io { what: String, detail: String },
}

impl From<VaultError> for ActionError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Cancelled => ActionError::Cancelled,
            VaultError::Operator(PromptError::Aborted) => ActionError::AbortedByOperator,
            VaultError::Operator(PromptError::NoOperator(r)) | VaultError::NeedsOperator(r) => {
                ActionError::NeedsOperator(r)
            }
            VaultError::Timeout(t) => ActionError::Timeout(t),
            other => {
                let kind = match &other {
                    VaultError::NoAddress | VaultError::NoToken { .. } => ErrorKind::Unconfigured,
                    VaultError::BadAddress { .. }
                    | VaultError::Invalid(_)
                    | VaultError::Template(_) => ErrorKind::Invalid,
                    VaultError::Unreachable { .. } => ErrorKind::Unreachable,
                    // Waiting does not fix a certificate.
                    VaultError::Tls { .. } => ErrorKind::Unauthorised,
                    VaultError::BadToken { .. } => ErrorKind::Unauthorised,
                    VaultError::PermissionDenied { .. } => ErrorKind::Forbidden,
                    VaultError::NoMount { .. }
                    | VaultError::NoSecret { .. }
                    | VaultError::MissingKeys { .. } => ErrorKind::NotFound,
                    VaultError::Api { status, .. } => ErrorKind::of_status(*status),
                    // States another process may change (an auto-unseal, a leader
                    // election): the step's retry policy decides.
                    VaultError::Sealed { .. }
                    | VaultError::NotInitialized { .. }
                    | VaultError::Expect { .. }
                    | VaultError::Io { .. }
                    | VaultError::Operator(_)
                    | VaultError::NeedsOperator(_)
                    | VaultError::Timeout(_)
                    | VaultError::Cancelled => ErrorKind::Failed,
                };
                ActionError::of_kind(kind, other.to_string())
            }
        }
    }
}

type Res<T> = Result<T, VaultError>;

/// Where `vault.kv-populate` looks up `DRCTL_KV_*` values (the process environment).
type KvLookup = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct VaultBackend {
    defaults: Defaults,
    /// Values for `vault.kv-populate`, by variable name (see [`kv_env_name`]).
    kv_env: KvLookup,
}

impl VaultBackend {
    /// Defaults from the process environment (and `~/.vault-token`, as the vault CLI).
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
            .with_kv_env(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Where `vault.kv-populate` finds `DRCTL_KV_<PATH>__<KEY>` values (`from_lookup`:
    /// nowhere; `from_env`: the process environment).
    pub fn with_kv_env(
        mut self,
        get: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.kv_env = std::sync::Arc::new(get);
        self
    }

    /// Defaults from `get` (tests give a map; `from_env` the environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        VaultBackend {
            defaults: Defaults::from_lookup(get),
            kv_env: std::sync::Arc::new(|_| None),
        }
    }

    pub async fn perform(
        &self,
        op: VaultOp<'_>,
        ctx: &ActionCtx<'_>,
    ) -> Result<ActionResult, ActionError> {
        let res = match op {
            VaultOp::Status(a) => Box::pin(self.status(a, ctx)).await,
            VaultOp::WaitUnsealed(a) => Box::pin(self.wait_unsealed(a, ctx)).await,
            VaultOp::Unseal(a) => Box::pin(self.unseal(a, ctx)).await,
            VaultOp::Init(a) => Box::pin(self.init(a, ctx)).await,
            VaultOp::KvPut(a) => Box::pin(self.kv_put(a, ctx)).await,
            VaultOp::KvGet(a) => Box::pin(self.kv_get(a, ctx)).await,
            VaultOp::KvPopulate(a) => Box::pin(self.kv_populate(a, ctx)).await,
            VaultOp::Rekey(a) => Box::pin(self.rekey(a, ctx)).await,
            VaultOp::RekeyVerify(a) => Box::pin(self.rekey_verify(a, ctx)).await,
        };
        res.map_err(ActionError::from)
    }
}

/// The actions this backend performs (routed here by `exec::engine::perform`).
pub enum VaultOp<'a> {
    Status(&'a VaultStatus),
    WaitUnsealed(&'a VaultWaitUnsealed),
    Unseal(&'a VaultUnseal),
    Init(&'a VaultInit),
    KvPut(&'a VaultKvPut),
    KvGet(&'a VaultKvGet),
    KvPopulate(&'a VaultKvPopulate),
    Rekey(&'a VaultRekey),
    RekeyVerify(&'a VaultRekeyVerify),
}

// ---------------------------------------------------------------------------------------
// Shared by every action: output lines, rendering, messages
// ---------------------------------------------------------------------------------------

/// Output lines: shown live and kept for the report.
#[derive(Default)]
struct Out {
    lines: Vec<String>,
}

impl Out {
    fn say(&mut self, ctx: &ActionCtx<'_>, line: String) {
        ctx.output(line.clone());
        self.lines.push(line);
    }

    fn done(self, value: Value) -> Res<ActionResult> {
        Ok(ActionResult {
            value,
            lines: self.lines,
        })
    }
}

fn render(ctx: &ActionCtx<'_>, t: &Text, sink: Sink) -> Res<String> {
    ctx.values
        .render(t, sink)
        .map_err(|e| VaultError::Template(e.to_string()))
}

/// An optional field rendered and trimmed: None when it is absent or blank.
fn render_set(ctx: &ActionCtx<'_>, t: Option<&Text>, sink: Sink) -> Res<Option<String>> {
    Ok(match t {
        Some(t) => Some(render(ctx, t, sink)?.trim().to_owned()),
        None => None,
    }
    .filter(|s| !s.is_empty()))
}

/// The first line of a message, shortened for a progress line.
fn short(s: &str) -> String {
    let l = s.lines().next().unwrap_or_default();
    if l.chars().count() > 160 {
        let mut t: String = l.chars().take(157).collect();
        t.push_str("...");
        t
    } else {
        l.to_owned()
    }
}
