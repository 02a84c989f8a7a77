//! The connection to Vault: defaults from the environment, the client for one action, raw
//! requests below `/v1/`, seal status and health, and failed answers turned into errors
//! that say what to check.
//!
//! Connection is the vault CLI's: `VAULT_ADDR`/`BAO_ADDR`, `VAULT_TOKEN`/`BAO_TOKEN` (else
//! `~/.vault-token`), `VAULT_CACERT`/`VAULT_CAPATH`, `VAULT_NAMESPACE`, `VAULT_SKIP_VERIFY`;
//! an action's `addr` / `token` win. TLS is verified unless `VAULT_SKIP_VERIFY` says otherwise.
//!
//! vaultrs does KV v2. The `sys/*` endpoints go through the same reqwest client with tolerant
//! JSON: vaultrs has no seal-status or rekey, its health type rejects OpenBao 2.7's answer, and
//! its init type drops the recovery keys.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use vaultrs::client::{VaultClient, VaultClientSettings};
use vaultrs::error::ClientError;

use super::{Out, Res, VaultBackend, VaultError, render_set};
use crate::exec::backend::ActionCtx;
use crate::runbook::{Sink, Text};
use crate::secret::Secret;

/// One HTTP request; a hung server must not hang the step without a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// After an unseal, how long to wait for the node to become active (raft election).
pub(super) const ACTIVE_WAIT: Duration = Duration::from_secs(20);

/// Connection defaults, from the environment like the vault CLI.
#[derive(Clone, Default)]
pub(super) struct Defaults {
    addr: Option<String>,
    token: Option<Secret<String>>,
    ca_certs: Vec<String>,
    namespace: Option<String>,
    skip_verify: bool,
}

impl Defaults {
    /// Defaults from `get` (tests give a map; `from_env` the environment).
    pub(super) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
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
        Defaults {
            addr: first(&["VAULT_ADDR", "BAO_ADDR"]),
            token: token.map(Secret::new),
            ca_certs,
            namespace: first(&["VAULT_NAMESPACE", "BAO_NAMESPACE"]),
            skip_verify,
        }
    }
}

impl VaultBackend {
    /// A connection for one action: its `addr`/`token` fields over the defaults.
    pub(super) fn connect(
        &self,
        ctx: &ActionCtx<'_>,
        addr: Option<&Text>,
        token: Option<&Text>,
        out: &mut Out,
    ) -> Res<Conn> {
        let addr = render_set(ctx, addr, Sink::Shown)?
            .or_else(|| self.defaults.addr.clone())
            .ok_or(VaultError::NoAddress)?;
        let addr = addr.trim_end_matches('/').to_owned();
        if !(addr.starts_with("http://") || addr.starts_with("https://")) {
            return Err(VaultError::BadAddress {
                addr,
                detail: "it must start with http:// or https://".into(),
            });
        }
        let token = render_set(ctx, token, Sink::Hidden)?
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

/// `s` parsed as whatever type the caller needs (the client settings' URL type, which this
/// crate does not name).
fn parse_as<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| e.to_string())
}

/// A request that got no answer: a TLS verification failure (which waiting does not
/// fix, and which says which variable to set) or an unreachable server.
pub(super) fn not_reached(addr: &str, detail: String) -> VaultError {
    let d = detail.to_ascii_lowercase();
    let hint = if d.contains("expired") || d.contains("notvalidyet") || d.contains("not valid yet")
    {
        Some(
            "the server's certificate is outside its validity period (expired, or the clock is wrong): renew the certificate",
        )
    } else if d.contains("notvalidforname")
        || d.contains("not valid for name")
        || d.contains("hostname mismatch")
    {
        Some(
            "the certificate is not valid for the host name in the address: use a name it was issued for in VAULT_ADDR (or the step's `addr`)",
        )
    } else if d.contains("unknownissuer")
        || d.contains("unknown issuer")
        || d.contains("self signed")
        || d.contains("self-signed")
        || d.contains("unable to get local issuer")
    {
        Some(
            "the CA that signed it is not trusted: give its PEM file in VAULT_CACERT, or a directory of CA files in VAULT_CAPATH",
        )
    } else if d.contains("certificate")
        && (d.contains("invalid") || d.contains("tls") || d.contains("handshake"))
    {
        Some(
            "check the certificate against VAULT_CACERT / VAULT_CAPATH and the host name in VAULT_ADDR",
        )
    } else {
        None
    };
    match hint {
        Some(hint) => VaultError::Tls {
            addr: addr.to_owned(),
            detail,
            hint,
        },
        None => VaultError::Unreachable {
            addr: addr.to_owned(),
            detail,
        },
    }
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
pub(super) async fn cancellable<T>(
    ctx: &ActionCtx<'_>,
    fut: impl std::future::Future<Output = T>,
) -> Res<T> {
    tokio::select! {
        r = fut => Ok(r),
        _ = ctx.cancel.cancelled() => Err(VaultError::Cancelled),
    }
}

#[derive(Clone, Copy)]
pub(super) enum Method {
    Get,
    Put,
    Delete,
}

pub(super) struct Conn {
    pub(super) addr: String,
    pub(super) client: VaultClient,
    token: Option<Secret<String>>,
}

/// `sys/seal-status`, every field optional (Vault and OpenBao versions differ).
#[derive(Clone, Debug, Deserialize)]
pub(super) struct SealStatus {
    #[serde(rename = "type", default)]
    pub(super) seal_type: String,
    #[serde(default)]
    pub(super) initialized: bool,
    #[serde(default = "yes")]
    pub(super) sealed: bool,
    #[serde(default)]
    pub(super) t: u64,
    #[serde(default)]
    pub(super) n: u64,
    #[serde(default)]
    pub(super) progress: u64,
    #[serde(default)]
    pub(super) version: String,
    #[serde(default)]
    pub(super) cluster_name: Option<String>,
    #[serde(default)]
    pub(super) storage_type: Option<String>,
    #[serde(default)]
    pub(super) recovery_seal: bool,
}

fn yes() -> bool {
    true
}

impl SealStatus {
    /// Initialised and unsealed: its data can be read and written.
    pub(super) fn open(&self) -> bool {
        self.initialized && !self.sealed
    }

    pub(super) fn summary(&self) -> String {
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
pub(super) fn api_detail(v: &Value) -> String {
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
pub(super) fn payload(v: &Value) -> &Value {
    match v.get("data") {
        Some(d) if d.is_object() => d,
        _ => v,
    }
}

impl Conn {
    /// One request below `/v1/`. The namespace header is left off: `sys/*` seal, init and
    /// rekey endpoints belong to the root namespace.
    pub(super) async fn call(
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
            let resp = req
                .send()
                .await
                .map_err(|e| not_reached(&addr, error_chain(&e)))?;
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

    pub(super) async fn seal_status(&self, ctx: &ActionCtx<'_>) -> Res<SealStatus> {
        let (status, v) = self.call(ctx, Method::Get, "sys/seal-status", None).await?;
        if status != 200 {
            return Err(self.api("reading the seal status", status, &v));
        }
        serde_json::from_value(v).map_err(|e| VaultError::Invalid(format!(
            "{} answered sys/seal-status with something that is not a seal status ({e}); is this a Vault or OpenBao address?",
            self.addr
        )))
    }

    /// A request that must answer 200: the answer, else the error for `what` (named
    /// with the path), as `classify` words it.
    pub(super) async fn call_ok(
        &self,
        ctx: &ActionCtx<'_>,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Res<Value> {
        let (code, v) = self.call(ctx, method, path, body).await?;
        if code != 200 {
            return Err(self
                .classify(ctx, &format!("{what} ({path})"), code, &api_detail(&v))
                .await);
        }
        Ok(v)
    }

    pub(super) fn api(&self, what: &str, status: u16, v: &Value) -> VaultError {
        VaultError::Api {
            addr: self.addr.clone(),
            what: what.to_owned(),
            status,
            detail: api_detail(v),
        }
    }

    /// A clear error for a failed authenticated request.
    pub(super) async fn classify(
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
    pub(super) async fn client_error(
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
            other => not_reached(&self.addr, error_chain(&other)),
        }
    }

    /// Initialised and unsealed, for actions that need a token and data.
    pub(super) async fn require_open(&self, ctx: &ActionCtx<'_>, what: &str) -> Res<SealStatus> {
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

    pub(super) fn require_token(&self, what: &str) -> Res<()> {
        match self.token {
            Some(_) => Ok(()),
            None => Err(VaultError::NoToken { what: what.into() }),
        }
    }

    /// Waits (bounded) until the node serves requests: after an unseal, raft elects a
    /// leader first and writes fail with "local node not active" meanwhile.
    pub(super) async fn wait_active(&self, ctx: &ActionCtx<'_>, limit: Duration) -> Res<bool> {
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

    /// `sys/leader`: (ha_enabled, is_self, leader_address); None when it cannot say
    /// (sealed, or not allowed).
    pub(super) async fn leader(&self, ctx: &ActionCtx<'_>) -> Res<Option<(bool, bool, String)>> {
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

/// What a line about an unsealed Vault adds when [`Conn::wait_active`] gave up.
pub(super) fn inactive_note(active: bool) -> &'static str {
    if active {
        ""
    } else {
        "; not yet active (leader election)"
    }
}

/// Strings of a JSON array field (empty when absent).
pub(super) fn strings(v: &Value, field: &str) -> Vec<String> {
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
