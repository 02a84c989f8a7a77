//! The Vault / OpenBao backend: status, wait until unsealed, unseal, init, KV v2 put / get /
//! populate-from-`.example`-files, and rekey (Vault's `sys/rekey`, OpenBao's
//! `sys/rotate/root`): in one step, or left pending verification (the old shares keep
//! working) and completed by `vault.rekey-verify` once the new shares are stored.
//!
//! Connection is the vault CLI's: `VAULT_ADDR`/`BAO_ADDR`, `VAULT_TOKEN`/`BAO_TOKEN` (else
//! `~/.vault-token`), `VAULT_CACERT`/`VAULT_CAPATH`, `VAULT_NAMESPACE`, `VAULT_SKIP_VERIFY`;
//! an action's `addr` / `token` win. TLS is verified unless `VAULT_SKIP_VERIFY` says otherwise.
//!
//! vaultrs does KV v2. The `sys/*` endpoints go through the same reqwest client with tolerant
//! JSON: vaultrs has no seal-status or rekey, its health type rejects OpenBao 2.7's answer, and
//! its init type drops the recovery keys.
//!
//! Secrets: key shares, tokens and KV values are only ever rendered from `Sink::Hidden`
//! fields or asked masked; new ones (init, rekey) go to the run's redactor the moment they
//! arrive, are shown once on the terminal, and are returned only in the result fields the
//! action declares secret.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use vaultrs::client::{VaultClient, VaultClientSettings};
use vaultrs::error::ClientError;

use crate::exec::backend::{ActionCtx, ActionError, ActionFuture, ActionResult, Backend};
use crate::exec::prompt::PromptError;
use crate::runbook::action::{
    RekeyMethod, VaultInit, VaultKvGet, VaultKvPopulate, VaultKvPut, VaultRekey, VaultRekeyVerify,
    VaultStatus, VaultUnseal, VaultWaitUnsealed,
};
use crate::runbook::{Action, Dur, Sink, Text};
use crate::secret::Secret;

/// Seal status is polled this often while waiting (Vault has no watch).
const POLL: Duration = Duration::from_secs(2);
/// One HTTP request; a hung server must not hang the step without a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// After an unseal, how long to wait for the node to become active (raft election).
const ACTIVE_WAIT: Duration = Duration::from_secs(20);
/// Rounds of share collection after Vault rejects a combination of shares.
const ROUNDS: usize = 3;
/// Attempts at one masked answer that the prompt refuses (too short).
const ASK_ATTEMPTS: usize = 3;

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
            other => ActionError::Failed(other.to_string()),
        }
    }
}

type Res<T> = Result<T, VaultError>;

/// Connection defaults, from the environment like the vault CLI.
#[derive(Clone, Default)]
struct Defaults {
    addr: Option<String>,
    token: Option<Secret<String>>,
    ca_certs: Vec<String>,
    namespace: Option<String>,
    skip_verify: bool,
}

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
        let first = |names: &[&str]| {
            names.iter().find_map(|n| {
                get(n)
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
            })
        };
        let token = first(&["VAULT_TOKEN", "BAO_TOKEN"]).or_else(|| {
            // The vault CLI's default token helper, filled by `vault login`.
            let home = get("HOME")?;
            ["vault", "bao"].iter().find_map(|t| {
                std::fs::read_to_string(Path::new(&home).join(format!(".{t}-token")))
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
            })
        });
        let mut ca_certs: Vec<String> =
            first(&["VAULT_CACERT", "BAO_CACERT"]).into_iter().collect();
        if let Some(dir) = first(&["VAULT_CAPATH", "BAO_CAPATH"])
            && let Ok(rd) = std::fs::read_dir(&dir)
        {
            let mut files: Vec<String> = rd
                .filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .map(|e| e.path().display().to_string())
                .collect();
            files.sort();
            ca_certs.extend(files);
        }
        let skip_verify = first(&["VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"])
            .is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "0" | "f" | "false"));
        VaultBackend {
            defaults: Defaults {
                addr: first(&["VAULT_ADDR", "BAO_ADDR"]),
                token: token.map(Secret::new),
                ca_certs,
                namespace: first(&["VAULT_NAMESPACE", "BAO_NAMESPACE"]),
                skip_verify,
            },
            kv_env: std::sync::Arc::new(|_| None),
        }
    }

    async fn run(&self, action: &Action, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        match action {
            Action::VaultStatus(a) => self.status(a, ctx).await,
            Action::VaultWaitUnsealed(a) => self.wait_unsealed(a, ctx).await,
            Action::VaultUnseal(a) => self.unseal(a, ctx).await,
            Action::VaultInit(a) => self.init(a, ctx).await,
            Action::VaultKvPut(a) => self.kv_put(a, ctx).await,
            Action::VaultKvGet(a) => self.kv_get(a, ctx).await,
            Action::VaultKvPopulate(a) => self.kv_populate(a, ctx).await,
            Action::VaultRekey(a) => self.rekey(a, ctx).await,
            Action::VaultRekeyVerify(a) => self.rekey_verify(a, ctx).await,
            other => Err(VaultError::Invalid(format!(
                "the vault backend does not perform `{}`",
                other.name()
            ))),
        }
    }

    /// A connection for one action: its `addr`/`token` fields over the defaults.
    fn connect(
        &self,
        ctx: &ActionCtx<'_>,
        addr: Option<&Text>,
        token: Option<&Text>,
        out: &mut Out,
    ) -> Res<Conn> {
        let addr = match addr {
            Some(t) => Some(render(ctx, t, Sink::Shown)?),
            None => None,
        }
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .or_else(|| self.defaults.addr.clone())
        .ok_or(VaultError::NoAddress)?;
        let addr = addr.trim_end_matches('/').to_owned();
        if !(addr.starts_with("http://") || addr.starts_with("https://")) {
            return Err(VaultError::BadAddress {
                addr,
                detail: "it must start with http:// or https://".into(),
            });
        }
        let token = match token {
            Some(t) => Some(render(ctx, t, Sink::Hidden)?),
            None => None,
        }
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .or_else(|| self.defaults.token.clone());
        if self.defaults.skip_verify && addr.starts_with("https://") {
            out.say(
                ctx,
                "warning: TLS certificate verification is OFF (VAULT_SKIP_VERIFY)".to_owned(),
            );
        }
        // `parse` into the settings' own URL type (no direct dependency on `url`).
        let address = parse_as(&addr).map_err(|detail| VaultError::BadAddress {
            addr: addr.clone(),
            detail,
        })?;
        let settings = VaultClientSettings {
            address,
            ca_certs: self.defaults.ca_certs.clone(),
            identity: None,
            timeout: Some(REQUEST_TIMEOUT),
            token: token
                .as_ref()
                .map(|t| t.expose().clone())
                .unwrap_or_default(),
            verify: !self.defaults.skip_verify,
            version: 1,
            wrapping: false,
            namespace: self.defaults.namespace.clone(),
            proxy: None,
        };
        let client = VaultClient::new(settings).map_err(|e| {
            VaultError::Invalid(format!(
                "cannot set up the Vault client for {addr}: {} (check VAULT_CACERT / VAULT_CAPATH)",
                error_chain(&e)
            ))
        })?;
        Ok(Conn {
            addr,
            client,
            token,
        })
    }
}

impl Backend for VaultBackend {
    fn name(&self) -> &'static str {
        "vault"
    }

    fn handles(&self, action: &Action) -> bool {
        matches!(
            action,
            Action::VaultStatus(_)
                | Action::VaultWaitUnsealed(_)
                | Action::VaultUnseal(_)
                | Action::VaultInit(_)
                | Action::VaultKvPut(_)
                | Action::VaultKvGet(_)
                | Action::VaultKvPopulate(_)
                | Action::VaultRekey(_)
                | Action::VaultRekeyVerify(_)
        )
    }

    fn execute<'a>(&'a self, action: &'a Action, ctx: &'a ActionCtx<'a>) -> ActionFuture<'a> {
        Box::pin(async move { self.run(action, ctx).await.map_err(ActionError::from) })
    }
}

// ---------------------------------------------------------------------------------------
// Plumbing: output lines, rendering, operator questions, the HTTP connection
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

/// `s` parsed as whatever type the caller needs (the client settings' URL type, which this
/// crate does not name).
fn parse_as<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| e.to_string())
}

fn render(ctx: &ActionCtx<'_>, t: &Text, sink: Sink) -> Res<String> {
    ctx.values
        .render(t, sink)
        .map_err(|e| VaultError::Template(e.to_string()))
}

/// An error and its causes on one line (reqwest's top-level message alone says little).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            let _ = write!(s, ": {t}");
        }
        cur = c.source();
    }
    s
}

/// Runs `fut` unless the operator presses Ctrl-C first.
async fn cancellable<T>(ctx: &ActionCtx<'_>, fut: impl std::future::Future<Output = T>) -> Res<T> {
    tokio::select! {
        r = fut => Ok(r),
        _ = ctx.cancel.cancelled() => Err(VaultError::Cancelled),
    }
}

/// The shares entered at a rekey or its verification: the runbook's inputs first, then
/// the operator (masked); Vault's count; how many times the operator started over.
struct ShareEntry<'k> {
    keys: &'k [String],
    required: u64,
    next_key: usize,
    asked: usize,
    rounds: usize,
    progress: u64,
}

impl<'k> ShareEntry<'k> {
    fn new(keys: &'k [String], required: u64) -> Self {
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
    fn next(
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
    fn accepted(
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
    fn rejected(
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
fn ask_secret(ctx: &ActionCtx<'_>, prompt: &str) -> Res<String> {
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

#[derive(Clone, Copy)]
enum Method {
    Get,
    Put,
    Delete,
}

struct Conn {
    addr: String,
    client: VaultClient,
    token: Option<Secret<String>>,
}

/// `sys/seal-status`, every field optional (Vault and OpenBao versions differ).
#[derive(Clone, Debug, Deserialize)]
struct SealStatus {
    #[serde(rename = "type", default)]
    seal_type: String,
    #[serde(default)]
    initialized: bool,
    #[serde(default = "yes")]
    sealed: bool,
    #[serde(default)]
    t: u64,
    #[serde(default)]
    n: u64,
    #[serde(default)]
    progress: u64,
    #[serde(default)]
    version: String,
    #[serde(default)]
    cluster_name: Option<String>,
    #[serde(default)]
    storage_type: Option<String>,
    #[serde(default)]
    recovery_seal: bool,
}

fn yes() -> bool {
    true
}

impl SealStatus {
    fn summary(&self) -> String {
        if !self.initialized {
            return "not initialised, sealed".to_owned();
        }
        if self.sealed {
            format!(
                "sealed, unseal progress {}/{} ({} seal)",
                self.progress, self.t, self.seal_type
            )
        } else {
            format!("unsealed ({} seal)", self.seal_type)
        }
    }
}

/// The `errors` of a Vault error body, joined.
fn api_detail(v: &Value) -> String {
    match v.get("errors").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|e| {
                e.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.to_string())
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => "no error message".to_owned(),
    }
}

/// The payload of a `sys/*` answer: logical endpoints wrap it in `data`, older ones do not.
fn payload(v: &Value) -> &Value {
    match v.get("data") {
        Some(d) if d.is_object() => d,
        _ => v,
    }
}

impl Conn {
    /// One request below `/v1/`. The namespace header is left off: `sys/*` seal, init and
    /// rekey endpoints belong to the root namespace.
    async fn call(
        &self,
        ctx: &ActionCtx<'_>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Res<(u16, Value)> {
        let url = format!("{}/v1/{}", self.addr, path.trim_start_matches('/'));
        let http = &self.client.http.http;
        let mut req = match method {
            Method::Get => http.get(&url),
            Method::Put => http.put(&url),
            Method::Delete => http.delete(&url),
        };
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t.expose().as_str());
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let addr = self.addr.clone();
        let fut = async move {
            let resp = req.send().await.map_err(|e| VaultError::Unreachable {
                addr: addr.clone(),
                detail: error_chain(&e),
            })?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.map_err(|e| VaultError::Unreachable {
                addr: addr.clone(),
                detail: error_chain(&e),
            })?;
            Ok::<_, VaultError>((
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ))
        };
        cancellable(ctx, fut).await?
    }

    async fn seal_status(&self, ctx: &ActionCtx<'_>) -> Res<SealStatus> {
        let (status, v) = self.call(ctx, Method::Get, "sys/seal-status", None).await?;
        if status != 200 {
            return Err(self.api("reading the seal status", status, &v));
        }
        serde_json::from_value(v).map_err(|e| VaultError::Invalid(format!(
            "{} answered sys/seal-status with something that is not a seal status ({e}); is this a Vault or OpenBao address?",
            self.addr
        )))
    }

    fn api(&self, what: &str, status: u16, v: &Value) -> VaultError {
        VaultError::Api {
            addr: self.addr.clone(),
            what: what.to_owned(),
            status,
            detail: api_detail(v),
        }
    }

    /// A clear error for a failed authenticated request.
    async fn classify(
        &self,
        ctx: &ActionCtx<'_>,
        what: &str,
        status: u16,
        detail: &str,
    ) -> VaultError {
        let addr = self.addr.clone();
        match status {
            403 => {
                if self.token.is_none() {
                    return VaultError::NoToken { what: what.into() };
                }
                // Vault says "permission denied" both for a bad token and a missing policy.
                match self
                    .call(ctx, Method::Get, "auth/token/lookup-self", None)
                    .await
                {
                    Ok((200, _)) => VaultError::PermissionDenied {
                        addr,
                        what: what.into(),
                    },
                    Ok((403, _)) => VaultError::BadToken {
                        addr,
                        what: what.into(),
                    },
                    Err(VaultError::Cancelled) => VaultError::Cancelled,
                    _ => VaultError::PermissionDenied {
                        addr,
                        what: what.into(),
                    },
                }
            }
            503 if detail.contains("sealed") => VaultError::Sealed {
                addr,
                what: what.into(),
            },
            _ => VaultError::Api {
                addr,
                what: what.into(),
                status,
                detail: detail.into(),
            },
        }
    }

    /// A vaultrs error as one of ours.
    async fn client_error(
        &self,
        ctx: &ActionCtx<'_>,
        what: &str,
        mount: &str,
        e: ClientError,
    ) -> VaultError {
        match e {
            ClientError::APIError { code, errors } => {
                let detail = if errors.is_empty() {
                    "no error message".to_owned()
                } else {
                    errors.join("; ")
                };
                if code == 404 && detail.contains("no handler for route") {
                    return VaultError::NoMount {
                        addr: self.addr.clone(),
                        mount: mount.into(),
                    };
                }
                self.classify(ctx, what, code, &detail).await
            }
            other => VaultError::Unreachable {
                addr: self.addr.clone(),
                detail: error_chain(&other),
            },
        }
    }

    /// Initialised and unsealed, for actions that need a token and data.
    async fn require_open(&self, ctx: &ActionCtx<'_>, what: &str) -> Res<SealStatus> {
        let s = self.seal_status(ctx).await?;
        if !s.initialized {
            return Err(VaultError::NotInitialized {
                addr: self.addr.clone(),
                what: what.into(),
            });
        }
        if s.sealed {
            return Err(VaultError::Sealed {
                addr: self.addr.clone(),
                what: what.into(),
            });
        }
        Ok(s)
    }

    fn require_token(&self, what: &str) -> Res<()> {
        match self.token {
            Some(_) => Ok(()),
            None => Err(VaultError::NoToken { what: what.into() }),
        }
    }

    /// Waits (bounded) until the node serves requests: after an unseal, raft elects a
    /// leader first and writes fail with "local node not active" meanwhile.
    async fn wait_active(&self, ctx: &ActionCtx<'_>, limit: Duration) -> Res<bool> {
        let start = Instant::now();
        loop {
            // 200: active. A standby (429, 472, 473) serves once another node leads; a
            // lone node answers 429 until it has won its own election.
            match self.call(ctx, Method::Get, "sys/health", None).await {
                Ok((200, _)) => return Ok(true),
                Ok((429 | 472 | 473, _)) => {
                    if let Some((true, false, leader)) = self.leader(ctx).await?
                        && !leader.is_empty()
                    {
                        return Ok(true);
                    }
                }
                Err(VaultError::Cancelled) => return Err(VaultError::Cancelled),
                _ => {}
            }
            if start.elapsed() >= limit {
                return Ok(false);
            }
            cancellable(ctx, tokio::time::sleep(Duration::from_millis(200))).await?;
        }
    }

    /// KV v2 data and version at `mount/path`; None when absent (or its latest version
    /// is deleted).
    async fn kv_read(
        &self,
        ctx: &ActionCtx<'_>,
        mount: &str,
        path: &str,
    ) -> Res<Option<BTreeMap<String, Value>>> {
        let what = format!("reading `{mount}/{path}`");
        let start = Instant::now();
        let r = loop {
            let r = cancellable(
                ctx,
                vaultrs::kv2::read::<BTreeMap<String, Value>>(&self.client, mount, path),
            )
            .await?;
            if !kv_upgrading(&r, start, ctx).await? {
                break r;
            }
        };
        match r {
            Ok(d) => Ok(Some(d)),
            Err(ClientError::APIError { code: 404, errors })
                if !errors.iter().any(|e| e.contains("no handler for route")) =>
            {
                Ok(None)
            }
            // A deleted latest version reads as data: null.
            Err(ClientError::JsonParseError { .. }) => Ok(None),
            Err(e) => Err(self.client_error(ctx, &what, mount, e).await),
        }
    }

    /// KV v2 write; `cas` 0 creates only, Some(v) replaces version v only.
    async fn kv_write(
        &self,
        ctx: &ActionCtx<'_>,
        mount: &str,
        path: &str,
        data: &BTreeMap<String, String>,
        cas: Option<u64>,
    ) -> Res<u64> {
        let what = format!("writing `{mount}/{path}`");
        let start = Instant::now();
        let r = loop {
            let r = match cas {
                Some(v) => {
                    let opts = vaultrs::api::kv2::requests::SetSecretRequestOptions {
                        cas: u32::try_from(v).unwrap_or(u32::MAX),
                    };
                    cancellable(
                        ctx,
                        vaultrs::kv2::set_with_options(&self.client, mount, path, data, opts),
                    )
                    .await?
                }
                None => {
                    cancellable(ctx, vaultrs::kv2::set(&self.client, mount, path, data)).await?
                }
            };
            if !kv_upgrading(&r, start, ctx).await? {
                break r;
            }
        };
        match r {
            Ok(meta) => Ok(meta.version),
            Err(ClientError::APIError { code: 400, errors })
                if errors.iter().any(|e| e.contains("check-and-set")) =>
            {
                Err(VaultError::Invalid(format!(
                    "`{mount}/{path}` changed while drctl was writing it (someone else wrote it); run the step again"
                )))
            }
            Err(e) => Err(self.client_error(ctx, &what, mount, e).await),
        }
    }

    /// `sys/leader`: (ha_enabled, is_self, leader_address); None when it cannot say
    /// (sealed, or not allowed).
    async fn leader(&self, ctx: &ActionCtx<'_>) -> Res<Option<(bool, bool, String)>> {
        match self.call(ctx, Method::Get, "sys/leader", None).await {
            Ok((200, v)) => Ok(Some((
                v["ha_enabled"].as_bool().unwrap_or(false),
                v["is_self"].as_bool().unwrap_or(false),
                v["leader_address"].as_str().unwrap_or_default().to_owned(),
            ))),
            Err(VaultError::Cancelled) => Err(VaultError::Cancelled),
            _ => Ok(None),
        }
    }
}

/// A KV v2 mount answers "Upgrading from non-versioned to versioned data" for a moment
/// after it is mounted or Vault is unsealed: true (after a pause) while that lasts.
async fn kv_upgrading<T>(
    r: &Result<T, ClientError>,
    since: Instant,
    ctx: &ActionCtx<'_>,
) -> Res<bool> {
    let upgrading = matches!(r, Err(ClientError::APIError { code: 400, errors })
        if errors.iter().any(|e| e.contains("Upgrading from non-versioned")));
    if !upgrading || since.elapsed() > ACTIVE_WAIT {
        return Ok(false);
    }
    ctx.progress("the KV mount is upgrading to versioned data; retrying".to_owned());
    cancellable(ctx, tokio::time::sleep(Duration::from_millis(300))).await?;
    Ok(true)
}

fn kv_path(ctx: &ActionCtx<'_>, mount: &Text, path: &Text) -> Res<(String, String)> {
    let mount = render(ctx, mount, Sink::Shown)?
        .trim()
        .trim_matches('/')
        .to_owned();
    let path = render(ctx, path, Sink::Shown)?
        .trim()
        .trim_matches('/')
        .to_owned();
    if mount.is_empty() || path.is_empty() {
        return Err(VaultError::Invalid(
            "the KV `mount` and `path` must not be empty".into(),
        ));
    }
    Ok((mount, path))
}

fn names<'a>(keys: impl IntoIterator<Item = &'a String>) -> String {
    let v: Vec<&str> = keys.into_iter().map(String::as_str).collect();
    if v.is_empty() {
        "no keys".to_owned()
    } else {
        v.join(", ")
    }
}

// ---------------------------------------------------------------------------------------
// status, wait-unsealed, unseal
// ---------------------------------------------------------------------------------------

impl VaultBackend {
    async fn status(&self, a: &VaultStatus, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
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

    async fn wait_unsealed(&self, a: &VaultWaitUnsealed, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
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
                Ok(s) if s.initialized && !s.sealed => {
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
                            if active {
                                ""
                            } else {
                                "; not yet active (leader election)"
                            }
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

    async fn unseal(&self, a: &VaultUnseal, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
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
        let keys: Vec<String> = a
            .keys
            .iter()
            .map(|k| render(ctx, k, Sink::Hidden).map(|v| v.trim().to_owned()))
            .collect::<Res<Vec<_>>>()?
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect();
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
                if active {
                    ""
                } else {
                    "; not yet active (leader election)"
                }
            ),
        );
        out.done(result(&status, entered))
    }
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

// ---------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------

/// Strings of a JSON array field (empty when absent).
fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `text` to a new file with mode 0600 (never over an existing file).
fn write_private(path: &Path, text: &str) -> Res<()> {
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
    f.write_all(text.as_bytes()).map_err(io)?;
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
        let text = serde_json::to_string_pretty(doc).unwrap_or_default();
        match write_private(&path, &format!("{text}\n")) {
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
    async fn init(&self, a: &VaultInit, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), None, &mut out)?;
        if a.threshold == 0 || a.threshold > a.shares {
            return Err(VaultError::Invalid(format!(
                "vault.init: threshold {} must be between 1 and shares ({})",
                a.threshold, a.shares
            )));
        }
        let save_to = match &a.save_to {
            Some(t) => Some(render(ctx, t, Sink::Shown)?.trim().to_owned()),
            None => None,
        }
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
        let s = conn.seal_status(ctx).await?;
        let kind = if a.recovery { "recovery" } else { "unseal key" };
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
        let mut body = String::new();
        for (i, k) in shown.iter().enumerate() {
            let _ = writeln!(body, "{label} {}: {k}", i + 1);
        }
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
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            match write_private(p, &format!("{text}\n")) {
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

// ---------------------------------------------------------------------------------------
// KV v2 put / get
// ---------------------------------------------------------------------------------------

/// A KV value as the text it was written from (strings as is, others as JSON).
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl VaultBackend {
    async fn kv_put(&self, a: &VaultKvPut, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), a.token.as_ref(), &mut out)?;
        let (mount, path) = kv_path(ctx, &a.mount, &a.path)?;
        let what = format!("writing `{mount}/{path}`");
        let mut data = BTreeMap::new();
        for (k, v) in &a.data {
            data.insert(k.clone(), render(ctx, v, Sink::Hidden)?);
        }
        let keys: Vec<&String> = a.data.keys().collect();
        conn.require_token(&what)?;
        let s = conn.seal_status(ctx).await?;
        if ctx.dry_run && (s.sealed || !s.initialized) {
            out.say(
                ctx,
                format!(
                    "Vault at {} is {} now, so the current secret cannot be read; would write `{mount}/{path}` with keys {}",
                    conn.addr,
                    s.summary(),
                    names(keys.iter().copied())
                ),
            );
            return out.done(json!({ "mount": mount, "path": path, "keys": keys }));
        }
        conn.require_open(ctx, &what).await?;
        let current = conn.kv_read(ctx, &mount, &path).await?;
        let (changed, added, removed) = match &current {
            Some(cur) => (
                keys.iter()
                    .filter(|k| {
                        cur.get(k.as_str())
                            .is_some_and(|v| value_text(v) != data[k.as_str()])
                    })
                    .map(|k| (*k).clone())
                    .collect::<Vec<_>>(),
                keys.iter()
                    .filter(|k| !cur.contains_key(k.as_str()))
                    .map(|k| (*k).clone())
                    .collect::<Vec<_>>(),
                cur.keys()
                    .filter(|k| !data.contains_key(k.as_str()))
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            None => (
                Vec::new(),
                keys.iter().map(|k| (*k).clone()).collect(),
                Vec::new(),
            ),
        };
        let same =
            current.is_some() && changed.is_empty() && added.is_empty() && removed.is_empty();
        let plan = match &current {
            None => format!(
                "create `{mount}/{path}` with keys {}",
                names(keys.iter().copied())
            ),
            Some(_) if same => format!(
                "`{mount}/{path}` already holds these values (keys {})",
                names(keys.iter().copied())
            ),
            Some(_) => {
                let mut p = format!("replace `{mount}/{path}`:");
                if !changed.is_empty() {
                    let _ = write!(p, " new value for {};", names(&changed));
                }
                if !added.is_empty() {
                    let _ = write!(p, " add {};", names(&added));
                }
                if !removed.is_empty() {
                    let _ = write!(
                        p,
                        " REMOVE {} (kv put replaces the whole secret);",
                        names(&removed)
                    );
                }
                let unchanged: Vec<String> = keys
                    .iter()
                    .filter(|k| !changed.contains(k) && !added.contains(k))
                    .map(|k| (*k).clone())
                    .collect();
                if !unchanged.is_empty() {
                    let _ = write!(p, " unchanged {};", names(&unchanged));
                }
                p.trim_end_matches(';').to_owned()
            }
        };
        if ctx.dry_run {
            out.say(ctx, if same { plan } else { format!("would {plan}") });
            return out
                .done(json!({ "mount": mount, "path": path, "keys": keys, "unchanged": same }));
        }
        if same {
            out.say(ctx, format!("{plan}; nothing written"));
            return out.done(json!({ "mount": mount, "path": path, "keys": keys, "unchanged": true, "version": Value::Null }));
        }
        let version = conn.kv_write(ctx, &mount, &path, &data, None).await?;
        out.say(
            ctx,
            format!(
                "wrote `{mount}/{path}` version {version}: {}",
                plan.trim_start_matches("replace ")
                    .trim_start_matches("create ")
            ),
        );
        out.done(json!({
            "mount": mount,
            "path": path,
            "keys": keys,
            "version": version,
            "unchanged": false,
            "removed": removed,
        }))
    }

    async fn kv_get(&self, a: &VaultKvGet, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), a.token.as_ref(), &mut out)?;
        let (mount, path) = kv_path(ctx, &a.mount, &a.path)?;
        let what = format!("reading `{mount}/{path}`");
        conn.require_token(&what)?;
        conn.require_open(ctx, &what).await?;
        let Some(data) = conn.kv_read(ctx, &mount, &path).await? else {
            return Err(VaultError::NoSecret {
                addr: conn.addr,
                mount,
                path,
            });
        };
        let present: Vec<String> = data.keys().cloned().collect();
        let missing: Vec<String> = a
            .keys
            .iter()
            .filter(|k| !data.contains_key(k.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(VaultError::MissingKeys {
                mount,
                path,
                missing: names(&missing),
                present: names(&present),
            });
        }
        // Values never leave this function: only key names and whether they are empty.
        let checked: Vec<&String> = if a.keys.is_empty() {
            present.iter().collect()
        } else {
            a.keys.iter().collect()
        };
        for k in &checked {
            let empty = data
                .get(k.as_str())
                .is_some_and(|v| value_text(v).is_empty() || v.is_null());
            out.say(
                ctx,
                format!("{k}: present{}", if empty { " (empty)" } else { "" }),
            );
        }
        out.done(json!({
            "mount": mount,
            "path": path,
            "keys": present,
            "present": checked.iter().map(|k| ((*k).clone(), Value::Bool(true))).collect::<serde_json::Map<_, _>>(),
        }))
    }
}

// ---------------------------------------------------------------------------------------
// KV populate from `.example` files
// ---------------------------------------------------------------------------------------
//
// Format (docs: runbook-format, vault.kv-populate). Every file matching the pattern (default
// `**/*.example`, `.git` skipped) describes secrets by key name; placeholder values are
// ignored. By what is left of the name once `.example` is dropped:
//   - `*.yaml` / `*.yml` / `*.json`: a mapping of key -> placeholder (one secret), or of
//     kv path -> mapping of key -> placeholder (several secrets), or a Kubernetes Secret
//     manifest (keys of `stringData` and `data`);
//   - anything else (`.env`, `secret.example`): `KEY=placeholder` lines (`export ` allowed,
//     `#` comments).
// The kv path of a one-secret file is its path under the repository without `.example` and
// its extension (`apps/immich/db.yaml.example` -> `apps/immich/db`; `apps/x/.env.example`
// -> `apps/x`), unless a comment line `# vault-path: some/path` names it.

/// One secret to write: its kv path, its keys, and the file(s) that named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExampleSecret {
    pub path: String,
    pub keys: Vec<String>,
    pub files: Vec<String>,
}

/// Whether `name` (one path segment) matches `pat` (`*` and `?` wildcards).
fn seg_match(pat: &[char], name: &[char]) -> bool {
    match (pat.first(), name.first()) {
        (None, None) => true,
        (Some('*'), _) => {
            seg_match(&pat[1..], name) || (!name.is_empty() && seg_match(pat, &name[1..]))
        }
        (Some('?'), Some(_)) => seg_match(&pat[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => seg_match(&pat[1..], &name[1..]),
        _ => false,
    }
}

fn glob_segments(pat: &[&str], path: &[&str]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(&"**") => (0..=path.len()).any(|i| glob_segments(&pat[1..], &path[i..])),
        Some(p) => {
            !path.is_empty()
                && seg_match(
                    &p.chars().collect::<Vec<_>>(),
                    &path[0].chars().collect::<Vec<_>>(),
                )
                && glob_segments(&pat[1..], &path[1..])
        }
    }
}

/// Glob over a `/`-separated relative path; a pattern without `/` matches the file name at
/// any depth (as in .gitignore).
pub fn glob_match(pattern: &str, rel: &str) -> bool {
    let path: Vec<&str> = rel.split('/').collect();
    if !pattern.contains('/') {
        return path.last().is_some_and(|n| {
            seg_match(
                &pattern.chars().collect::<Vec<_>>(),
                &n.chars().collect::<Vec<_>>(),
            )
        });
    }
    let pat: Vec<&str> = pattern.trim_start_matches("./").split('/').collect();
    glob_segments(&pat, &path)
}

fn walk(root: &Path, dir: &Path, pattern: &str, found: &mut Vec<String>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let ft = e.file_type()?;
        let p = e.path();
        if ft.is_dir() {
            if name != ".git" {
                walk(root, &p, pattern, found)?;
            }
        } else if ft.is_file()
            && let Ok(rel) = p.strip_prefix(root)
        {
            let rel = rel.to_string_lossy().replace('\\', "/");
            if glob_match(pattern, &rel) {
                found.push(rel);
            }
        }
    }
    Ok(())
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn valid_kv_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(char::is_whitespace))
}

/// The secrets one example file describes.
fn parse_example(rel: &str, text: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let directive = text.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix('#')?.trim();
        rest.strip_prefix("vault-path:")
            .map(|p| p.trim().trim_matches('/').to_owned())
    });
    let base = rel.strip_suffix(".example").unwrap_or(rel);
    let (stem, ext) = match base.rsplit_once('.') {
        Some((s, e)) if !e.contains('/') => (s, e.to_ascii_lowercase()),
        _ => (base, String::new()),
    };
    let derived = || -> Result<String, String> {
        if let Some(d) = &directive {
            return Ok(d.clone());
        }
        let p = stem.trim_matches('/').to_owned();
        if p.is_empty() {
            Err(
                "cannot derive a kv path from the file name; add a line `# vault-path: some/path`"
                    .into(),
            )
        } else {
            Ok(p)
        }
    };
    let keys_of = |m: &serde_json::Map<String, Value>| -> Result<Vec<String>, String> {
        let mut ks = Vec::new();
        for (k, v) in m {
            if v.is_object() || v.is_array() {
                return Err(format!(
                    "key `{k}` holds a nested value; a secret's keys map to placeholder strings"
                ));
            }
            ks.push(k.clone());
        }
        Ok(ks)
    };
    let mut out = Vec::new();
    if matches!(ext.as_str(), "yaml" | "yml" | "json") {
        let v: Value = if ext == "json" {
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?
        } else {
            serde_saphyr::from_str(text).map_err(|e| format!("not YAML: {e}"))?
        };
        let Some(m) = v.as_object() else {
            return Err("expected a mapping of keys to placeholder values".into());
        };
        if m.get("kind").and_then(Value::as_str) == Some("Secret") {
            let mut ks = Vec::new();
            for f in ["stringData", "data"] {
                if let Some(d) = m.get(f).and_then(Value::as_object) {
                    ks.extend(keys_of(d)?);
                }
            }
            out.push((derived()?, ks));
        } else if !m.is_empty() && m.values().all(Value::is_object) {
            for (p, d) in m {
                let Some(d) = d.as_object() else { continue };
                out.push((p.trim_matches('/').to_owned(), keys_of(d)?));
            }
        } else {
            out.push((derived()?, keys_of(m)?));
        }
    } else {
        let mut ks = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let l = l.strip_prefix("export ").unwrap_or(l);
            let Some((k, _)) = l.split_once('=') else {
                return Err(format!("line {}: expected KEY=placeholder", n + 1));
            };
            ks.push(k.trim().to_owned());
        }
        out.push((derived()?, ks));
    }
    for (p, ks) in &out {
        if !valid_kv_path(p) {
            return Err(format!("`{p}` is not a usable kv path"));
        }
        if ks.is_empty() {
            return Err(format!("no keys for `{p}`"));
        }
        if let Some(k) = ks.iter().find(|k| !valid_key(k)) {
            return Err(format!(
                "`{k}` is not a usable key name (letters, digits, _ - .)"
            ));
        }
    }
    Ok(out)
}

/// Every secret named by the example files under `repo`, merged by path, in path order.
pub fn example_secrets(repo: &Path, pattern: &str) -> Result<Vec<ExampleSecret>, String> {
    if !repo.is_dir() {
        return Err(format!(
            "{} is not a directory (the repository checkout)",
            repo.display()
        ));
    }
    let mut files = Vec::new();
    walk(repo, repo, pattern, &mut files)
        .map_err(|e| format!("cannot read {}: {e}", repo.display()))?;
    if files.is_empty() {
        return Err(format!(
            "no file under {} matches `{pattern}`",
            repo.display()
        ));
    }
    let mut by_path: BTreeMap<String, ExampleSecret> = BTreeMap::new();
    let mut problems = Vec::new();
    for rel in files {
        let text = match std::fs::read_to_string(repo.join(&rel)) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{rel}: {e}"));
                continue;
            }
        };
        match parse_example(&rel, &text) {
            Ok(list) => {
                for (p, ks) in list {
                    let e = by_path.entry(p.clone()).or_insert_with(|| ExampleSecret {
                        path: p,
                        keys: Vec::new(),
                        files: Vec::new(),
                    });
                    for k in ks {
                        if !e.keys.contains(&k) {
                            e.keys.push(k);
                        }
                    }
                    if !e.files.contains(&rel) {
                        e.files.push(rel.clone());
                    }
                }
            }
            Err(e) => problems.push(format!("{rel}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "cannot read the example files: {}",
            problems.join("; ")
        ));
    }
    Ok(by_path.into_values().collect())
}

/// The environment variable `vault.kv-populate` takes the value of `key` at the kv `path`
/// (under the mount) from: `DRCTL_KV_<PATH>__<KEY>`, upper-cased, every character other
/// than a letter or digit written `_` (`apps/immich`, `DB_PASSWORD` ->
/// `DRCTL_KV_APPS_IMMICH__DB_PASSWORD`).
pub fn kv_env_name(path: &str, key: &str) -> String {
    let part = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{KV_ENV_PREFIX}{}__{}", part(path), part(key))
}

/// The prefix of [`kv_env_name`]'s variables (scrubbed from child processes).
pub const KV_ENV_PREFIX: &str = "DRCTL_KV_";

/// Two (path, key) pairs whose variable names collide cannot be told apart.
fn kv_env_collisions(secrets: &[ExampleSecret]) -> Res<()> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for e in secrets {
        for k in &e.keys {
            let name = kv_env_name(&e.path, k);
            let this = format!("{} {k}", e.path);
            if let Some(other) = seen.insert(name.clone(), this.clone())
                && other != this
            {
                return Err(VaultError::Invalid(format!(
                    "`{other}` and `{this}` would both take their value from {name}: rename one of them in the example files"
                )));
            }
        }
    }
    Ok(())
}

/// A secret still to write: what the files name, what Vault holds, the keys to ask for.
type Todo = (ExampleSecret, Option<BTreeMap<String, Value>>, Vec<String>);

impl VaultBackend {
    async fn kv_populate(&self, a: &VaultKvPopulate, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), a.token.as_ref(), &mut out)?;
        let mount = render(ctx, &a.mount, Sink::Shown)?
            .trim()
            .trim_matches('/')
            .to_owned();
        let repo = PathBuf::from(render(ctx, &a.repo, Sink::Shown)?.trim());
        let pattern = a.pattern.as_deref().unwrap_or("**/*.example");
        let secrets = example_secrets(&repo, pattern).map_err(VaultError::Invalid)?;
        kv_env_collisions(&secrets)?;
        let interactive = ctx.operator.interactive();
        let what = format!("populating `{mount}/`");
        conn.require_token(&what)?;
        let s = conn.seal_status(ctx).await?;
        let total_keys: usize = secrets.iter().map(|s| s.keys.len()).sum();
        out.say(
            ctx,
            format!(
                "{} secret(s), {total_keys} key(s), from {} file(s) matching `{pattern}` in {}",
                secrets.len(),
                secrets
                    .iter()
                    .flat_map(|s| &s.files)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                repo.display()
            ),
        );
        if ctx.dry_run && (s.sealed || !s.initialized) {
            out.say(ctx, format!("Vault at {} is {} now, so what exists cannot be read; would ask for and write:", conn.addr, s.summary()));
            for e in &secrets {
                out.say(ctx, format!("  {mount}/{}: {}", e.path, names(&e.keys)));
            }
            return out.done(json!({ "mount": mount, "total": secrets.len(), "written": [], "present": [], "remaining": secrets.iter().map(|e| &e.path).collect::<Vec<_>>() }));
        }
        conn.require_open(ctx, &what).await?;
        // What is there already: re-running resumes where the last run stopped.
        let mut todo: Vec<Todo> = Vec::new();
        let mut present = Vec::new();
        for e in &secrets {
            let cur = conn.kv_read(ctx, &mount, &e.path).await?;
            let missing: Vec<String> = match &cur {
                Some(d) => e
                    .keys
                    .iter()
                    .filter(|k| !d.contains_key(k.as_str()))
                    .cloned()
                    .collect(),
                None => e.keys.clone(),
            };
            if missing.is_empty() {
                present.push(e.path.clone());
            } else {
                todo.push((e.clone(), cur, missing));
            }
        }
        if !present.is_empty() {
            out.say(
                ctx,
                format!(
                    "already in Vault, skipped: {}",
                    present
                        .iter()
                        .map(|p| format!("{mount}/{p}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let remaining_text = |todo: &[Todo]| -> Vec<String> {
            todo.iter()
                .map(|(e, _, m)| format!("{mount}/{} ({})", e.path, names(m)))
                .collect()
        };
        if ctx.dry_run {
            for (e, cur, missing) in &todo {
                out.say(ctx, match cur {
                    None => format!("would ask for and write {mount}/{}: {}", e.path, names(missing)),
                    Some(_) => format!("{mount}/{} exists without {}: would ask for them and write the secret with its other keys kept", e.path, names(missing)),
                });
                let vars: Vec<String> = missing
                    .iter()
                    .map(|k| {
                        let n = kv_env_name(&e.path, k);
                        let set = (self.kv_env)(&n).is_some();
                        format!("{n} ({})", if set { "set" } else { "not set" })
                    })
                    .collect();
                out.say(
                    ctx,
                    format!("  values from the environment: {}", vars.join(", ")),
                );
            }
            return out.done(json!({ "mount": mount, "total": secrets.len(), "written": [], "present": present, "remaining": todo.iter().map(|t| &t.0.path).collect::<Vec<_>>() }));
        }
        if todo.is_empty() {
            out.say(
                ctx,
                format!("every secret is in `{mount}/`; nothing to ask"),
            );
            return out.done(json!({ "mount": mount, "total": secrets.len(), "written": [], "present": present, "remaining": [] }));
        }
        let n = todo.len();
        let mut written = Vec::new();
        // Unattended: the secrets some of whose values are in no DRCTL_KV_* variable
        // (left as they are), and those variables.
        let mut blocked: Vec<Todo> = Vec::new();
        let mut unset: Vec<String> = Vec::new();
        let red = ctx.bus.redactor();
        let mut i = 0;
        while i < todo.len() {
            let (e, cur, missing) = &todo[i];
            // Values from the environment first (no prompt), then the operator.
            let mut from_env: BTreeMap<String, String> = BTreeMap::new();
            let mut absent = Vec::new();
            for k in missing {
                let var = kv_env_name(&e.path, k);
                match (self.kv_env)(&var) {
                    Some(v) => {
                        red.add(&v);
                        from_env.insert(k.clone(), v);
                    }
                    None => absent.push(var),
                }
            }
            if !interactive && !absent.is_empty() {
                blocked.push(todo[i].clone());
                unset.extend(absent);
                i += 1;
                continue;
            }
            ctx.progress(format!(
                "secret {}/{n}: {mount}/{}",
                written.len() + 1,
                e.path
            ));
            let mut data: BTreeMap<String, String> = cur
                .as_ref()
                .map(|d| d.iter().map(|(k, v)| (k.clone(), value_text(v))).collect())
                .unwrap_or_default();
            let mut stop = None;
            for k in missing {
                if let Some(v) = from_env.remove(k) {
                    data.insert(k.clone(), v);
                    continue;
                }
                match ask_secret(ctx, &format!("{mount}/{} {k}", e.path)) {
                    Ok(v) => {
                        data.insert(k.clone(), v);
                    }
                    Err(err) => {
                        stop = Some(err);
                        break;
                    }
                }
            }
            let res = match stop {
                Some(err) => Err(err),
                None => {
                    let cas = cur.as_ref().map(|_| None).unwrap_or(Some(0));
                    // An existing secret is merged: its version is not known from the read,
                    // so it is written without check-and-set.
                    conn.kv_write(ctx, &mount, &e.path, &data, cas).await
                }
            };
            match res {
                Ok(v) => {
                    out.say(
                        ctx,
                        format!("wrote {mount}/{} (version {v}): {}", e.path, names(missing)),
                    );
                    written.push(e.path.clone());
                    i += 1;
                }
                Err(err) => {
                    let mut left = remaining_text(&blocked);
                    left.extend(remaining_text(&todo[i..]));
                    out.say(
                        ctx,
                        format!(
                            "stopped: {} of {n} secret(s) written this time; still to do:",
                            written.len()
                        ),
                    );
                    for l in &left {
                        out.say(ctx, format!("  {l}"));
                    }
                    out.say(
                        ctx,
                        "run the step again to continue: secrets already in Vault are skipped"
                            .into(),
                    );
                    return Err(err);
                }
            }
        }
        if !blocked.is_empty() {
            out.say(
                ctx,
                format!(
                    "{} secret(s) written this time; still to do (their values are in no {KV_ENV_PREFIX}* variable):",
                    written.len()
                ),
            );
            for l in remaining_text(&blocked) {
                out.say(ctx, format!("to do: {l}"));
            }
            return Err(VaultError::NeedsOperator(format!(
                "{} secret(s) still to write to `{mount}/` ({}); with nobody to ask (--yes), set {} (one variable per key), or run this step without --yes to be asked (masked)",
                blocked.len(),
                blocked
                    .iter()
                    .map(|t| t.0.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                unset.join(", ")
            )));
        }
        out.say(
            ctx,
            format!(
                "done: {} secret(s) written, {} already present",
                written.len(),
                present.len()
            ),
        );
        out.done(json!({ "mount": mount, "total": secrets.len(), "written": written, "present": present, "remaining": [] }))
    }
}

// ---------------------------------------------------------------------------------------
// rekey: Vault's sys/rekey, OpenBao's sys/rotate/root (and their recovery-key variants)
// ---------------------------------------------------------------------------------------

struct RekeyApi {
    /// `sys/rekey`, `sys/rekey-recovery-key`, `sys/rotate/root` or `sys/rotate/recovery`.
    base: &'static str,
    name: &'static str,
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

    fn path(&self, op: &str) -> String {
        format!("{}/{op}", self.base)
    }
}

impl VaultBackend {
    /// Which rekey API the server offers: Vault's unauthenticated `sys/rekey` where it
    /// answers, else OpenBao's authenticated `sys/rotate/root` (OpenBao 2.5+ answers 405 on
    /// `sys/rekey` unless `disable_unauthed_rekey_endpoints = false`).
    async fn rekey_api(
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

    async fn rekey(&self, a: &VaultRekey, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
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
        if ctx.dry_run && (s.sealed || !s.initialized) {
            out.say(ctx, format!("Vault at {} is {} now; would rekey to {} shares, threshold {}, once it is unsealed", conn.addr, s.summary(), a.shares, a.threshold));
            return out.done(
                json!({ "address": conn.addr, "shares": a.shares, "threshold": a.threshold }),
            );
        }
        conn.require_open(ctx, what).await?;
        let kind = if a.recovery { "recovery" } else { "unseal key" };
        let (api, state) = self.rekey_api(&conn, ctx, a.method, a.recovery).await?;
        let started = state["started"].as_bool().unwrap_or(false);
        let required = state["required"].as_u64().unwrap_or(s.t);
        let keys: Vec<String> = a
            .keys
            .iter()
            .map(|k| render(ctx, k, Sink::Hidden).map(|v| v.trim().to_owned()))
            .collect::<Res<Vec<_>>>()?
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect();
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
        let body = json!({ "secret_shares": a.shares, "secret_threshold": a.threshold, "require_verification": true });
        let (code, v) = conn
            .call(ctx, Method::Put, &api.path("init"), Some(&body))
            .await?;
        if code != 200 {
            return Err(conn
                .classify(
                    ctx,
                    &format!("starting the rekey ({})", api.path("init")),
                    code,
                    &api_detail(&v),
                )
                .await);
        }
        let st = payload(&v);
        let nonce = st["nonce"].as_str().unwrap_or_default().to_owned();
        let required = st["required"].as_u64().unwrap_or(required);
        out.say(
            ctx,
            format!(
                "rekey started through {} ({}): {required} current {kind} share(s) needed",
                api.base, api.name
            ),
        );
        let done = match self
            .rekey_collect(&conn, ctx, &api, &nonce, required, &keys, &mut out)
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
        let kind = if a.recovery { "recovery" } else { "unseal key" };
        if vnonce.is_empty() {
            // Vault completed the rekey without a verification stage: the old shares are
            // gone already. Never expected (drctl asks for the verification), but say so.
            return Err(VaultError::Invalid(format!(
                "Vault at {} completed the rekey without the verification drctl asked for: the old {kind} shares no longer work and the new ones exist only in this process; store them now",
                conn.addr
            )));
        }
        if show {
            let mut body = String::new();
            for (i, k) in new_b64.iter().enumerate() {
                let _ = writeln!(body, "New {kind} share {}: {k}", i + 1);
            }
            let _ = write!(
                body,
                "\n{} shares, threshold {}. They are pending: the current shares keep working until {} of these are entered at the verification (the vault.rekey-verify step).",
                a.shares, a.threshold, a.threshold
            );
            ctx.operator
                .show_secret_once(&format!("New {kind} shares (shown once)"), &body)
                .map_err(VaultError::Operator)?;
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

    async fn rekey_cancel(&self, conn: &Conn, ctx: &ActionCtx<'_>, api: &RekeyApi) -> Res<()> {
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

    /// Submits current shares until the rekey completes; returns the completing answer.
    #[allow(clippy::too_many_arguments)]
    async fn rekey_collect(
        &self,
        conn: &Conn,
        ctx: &ActionCtx<'_>,
        api: &RekeyApi,
        nonce: &str,
        required: u64,
        keys: &[String],
        out: &mut Out,
    ) -> Res<Value> {
        let mut entry = ShareEntry::new(keys, required);
        loop {
            let share = entry.next(ctx, |asked, progress, required| {
                format!("Current key share {asked} for the rekey ({progress}/{required} entered)")
            })?;
            let (code, v) = conn
                .call(
                    ctx,
                    Method::Put,
                    &api.path("update"),
                    Some(&json!({ "key": share, "nonce": nonce })),
                )
                .await?;
            let st = payload(&v);
            if code == 200 {
                if st["complete"].as_bool().unwrap_or(false) {
                    return Ok(st.clone());
                }
                entry.accepted(ctx, out, st, "rekey", "current");
                continue;
            }
            let detail = api_detail(&v);
            if code != 400 {
                return Err(conn
                    .classify(
                        ctx,
                        &format!("the rekey ({})", api.path("update")),
                        code,
                        &detail,
                    )
                    .await);
            }
            // A wrong share at the threshold: Vault resets the progress, keeps the nonce.
            entry.rejected(
                ctx,
                out,
                &detail,
                |n| format!("key share {n} of the runbook's inputs is not a key share ({})", short(&detail)),
                || format!(
                    "Vault rejected the current shares at the threshold: one is wrong or from another Vault ({})",
                    short(&detail)
                ),
                &format!("Vault rejected the shares at the threshold ({}): one is wrong; enter them again", short(&detail)),
            )?;
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
        let kind = if a.recovery { "recovery" } else { "unseal key" };
        let mut proof: Vec<String> = Vec::new();
        if show {
            let mut body = String::new();
            for (i, k) in new_b64.iter().enumerate() {
                let _ = writeln!(body, "New {kind} share {}: {k}", i + 1);
            }
            let _ = write!(
                body,
                "\n{} shares, threshold {}. They replace the current ones only once {} of them are entered back to verify.",
                a.shares, a.threshold, a.threshold
            );
            ctx.operator
                .show_secret_once(&format!("New {kind} shares (shown once)"), &body)
                .map_err(VaultError::Operator)?;
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
            let (code, v) = conn
                .call(
                    ctx,
                    Method::Put,
                    &api.path("verify"),
                    Some(&json!({ "key": k, "nonce": vnonce })),
                )
                .await?;
            if code != 200 {
                return Err(conn.api("verifying the new shares", code, &v));
            }
            if payload(&v)["complete"].as_bool().unwrap_or(false) {
                return Ok(());
            }
        }
        Err(VaultError::Invalid(
            "the verification did not complete after the threshold of new shares".into(),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// rekey-verify: complete a rekey left pending verification
// ---------------------------------------------------------------------------------------

/// Whether Vault's error says the key shares do not combine into its key.
fn wrong_shares(detail: &str) -> bool {
    [
        "message authentication failed",
        "invalid key",
        "incorrect key",
    ]
    .iter()
    .any(|m| detail.contains(m))
}

/// How a `vault.rekey-verify` ended without error.
const VERIFY_COMPLETED: &str = "completed";
const VERIFY_ALREADY_CURRENT: &str = "already-current";

impl VaultBackend {
    async fn rekey_verify(&self, a: &VaultRekeyVerify, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), a.token.as_ref(), &mut out)?;
        let kind = if a.recovery { "recovery" } else { "unseal key" };
        let what = "a rekey verification";
        let s = conn.seal_status(ctx).await?;
        if ctx.dry_run && (s.sealed || !s.initialized) {
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
        let keys: Vec<String> = a
            .keys
            .iter()
            .map(|k| render(ctx, k, Sink::Hidden).map(|v| v.trim().to_owned()))
            .collect::<Res<Vec<_>>>()?
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect();
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
        let (code, v) = conn
            .call(ctx, Method::Get, &api.path("verify"), None)
            .await?;
        if code != 200 {
            return Err(conn
                .classify(
                    ctx,
                    &format!("reading the verification ({})", api.path("verify")),
                    code,
                    &api_detail(&v),
                )
                .await);
        }
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
        self.rekey_verify_collect(&conn, ctx, &api, required, &keys, kind, &mut out)
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

    /// Enters new shares at the verification until it completes. A wrong share makes
    /// Vault restart the verification with a new nonce: the nonce is read before each.
    #[allow(clippy::too_many_arguments)]
    async fn rekey_verify_collect(
        &self,
        conn: &Conn,
        ctx: &ActionCtx<'_>,
        api: &RekeyApi,
        required: u64,
        keys: &[String],
        kind: &str,
        out: &mut Out,
    ) -> Res<()> {
        let mut entry = ShareEntry::new(keys, required);
        loop {
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
            let nonce = payload(&v)["nonce"].as_str().unwrap_or_default().to_owned();
            let share = entry.next(ctx, |asked, progress, required| {
                format!("New {kind} share {asked} to verify ({progress}/{required} entered)")
            })?;
            let (code, v) = conn
                .call(
                    ctx,
                    Method::Put,
                    &api.path("verify"),
                    Some(&json!({ "key": share, "nonce": nonce })),
                )
                .await?;
            let st = payload(&v);
            if code == 200 {
                if st["complete"].as_bool().unwrap_or(false) {
                    return Ok(());
                }
                entry.accepted(ctx, out, st, "verification", "new");
                continue;
            }
            let detail = api_detail(&v);
            if code != 400 && !(code == 500 && wrong_shares(&detail)) {
                return Err(conn
                    .classify(
                        ctx,
                        &format!("the verification ({})", api.path("verify")),
                        code,
                        &detail,
                    )
                    .await);
            }
            // Wrong shares at the threshold: Vault restarts the verification (new nonce);
            // the rekey stays pending and the current shares keep working.
            entry.rejected(
                ctx,
                out,
                &detail,
                |n| format!("new share {n} of the runbook is not a key share ({})", short(&detail)),
                || format!(
                    "Vault rejected the new {kind} shares at the verification: they are not the shares of the pending rekey (from another attempt?) ({}); the rekey stays pending and the current shares still work: run the rekey step again to start over",
                    short(&detail)
                ),
                &format!("Vault rejected the new shares at the verification ({}): one is wrong; enter them again", short(&detail)),
            )?;
        }
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
        let kind = if a.recovery { "recovery" } else { "unseal key" };
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
        let body = json!({
            "secret_shares": s.n.max(1),
            "secret_threshold": s.t.max(1),
            "require_verification": true,
        });
        let (code, v) = conn
            .call(ctx, Method::Put, &api.path("init"), Some(&body))
            .await?;
        if code != 200 {
            return Err(conn
                .classify(
                    ctx,
                    &format!("starting a test rekey ({})", api.path("init")),
                    code,
                    &api_detail(&v),
                )
                .await);
        }
        let nonce = payload(&v)["nonce"].as_str().unwrap_or_default().to_owned();
        let mut answer = Ok(false);
        for k in keys {
            let r = conn
                .call(
                    ctx,
                    Method::Put,
                    &api.path("update"),
                    Some(&json!({ "key": k, "nonce": nonce })),
                )
                .await;
            match r {
                Ok((200, v)) if payload(&v)["complete"].as_bool().unwrap_or(false) => {
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
