//! Connecting like kubectl (kubeconfig from `--kubeconfig`/`kube.use`, else `KUBECONFIG` or
//! `~/.kube/config`, else the in-cluster service account), turning client errors into
//! messages that say what to check, and retrying transient failures with backoff.

use std::future::Future;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::{KubeError, Out, Result};
use crate::exec::context::KubeTarget;

/// A client and what error messages need to name.
pub(crate) struct Conn {
    pub client: Client,
    pub server: String,
    /// The context's default namespace (`default` when it names none).
    pub namespace: String,
}

fn no_kubeconfig_file() -> bool {
    let env_set = std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty());
    let home = std::env::var_os("HOME")
        .map(|h| std::path::Path::new(&h).join(".kube/config").exists())
        .unwrap_or(false);
    !env_set && !home
}

/// KUBECONFIG when it is set and names no file that exists (kubectl's rule: the files
/// that exist are merged, so only "none of them" is an error).
fn missing_kubeconfig_files() -> Option<String> {
    let v = std::env::var_os("KUBECONFIG")?;
    let paths: Vec<_> = std::env::split_paths(&v)
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    if paths.is_empty() || paths.iter().any(|p| p.exists()) {
        return None;
    }
    Some(v.to_string_lossy().into_owned())
}

pub(crate) async fn connect(target: &KubeTarget) -> Result<Conn> {
    let opts = KubeConfigOptions {
        context: target.context.clone(),
        cluster: None,
        user: None,
    };
    let config = match &target.kubeconfig {
        Some(path) => {
            let err = |detail: String| KubeError::Config {
                source_of: format!("kubeconfig {path}"),
                detail,
            };
            let kc = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
            Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| err(e.to_string()))?
        }
        None if no_kubeconfig_file() && target.context.is_none() => {
            // Inside a pod without a kubeconfig: the service account, as kubectl does.
            Config::incluster().map_err(|_| KubeError::Config {
                source_of: "anywhere".into(),
                detail: "KUBECONFIG is not set, ~/.kube/config does not exist, and drctl is not running in a pod (no service account)".into(),
            })?
        }
        None => {
            if let Some(missing) = missing_kubeconfig_files() {
                return Err(KubeError::Config {
                    source_of: format!("KUBECONFIG={missing}"),
                    detail: "no such file".into(),
                });
            }
            Config::from_kubeconfig(&opts)
                .await
                .map_err(|e| KubeError::Config {
                    source_of: "KUBECONFIG or ~/.kube/config".into(),
                    // kube-rs quotes a path twice ('"/path"').
                    detail: e.to_string().replace("'\"", "'").replace("\"'", "'"),
                })?
        }
    };
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/').to_owned();
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| KubeError::Config {
        source_of: format!("the kubeconfig's cluster {server}"),
        detail: error_chain(&e),
    })?;
    Ok(Conn {
        client,
        server,
        namespace,
    })
}

/// The error and its causes on one line (hyper's top-level text alone says little).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// Whether trying again later may succeed (the server busy, restarting, unreachable).
pub(crate) fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            let chain = error_chain(e);
            !is_credential_failure(&chain) && tls_failure(&chain).is_none()
        }
        _ => false,
    }
}

pub(super) fn is_credential_failure(text: &str) -> bool {
    if tls_failure(text).is_some() {
        return false;
    }
    let t = text.to_ascii_lowercase();
    t.contains("expired") || t.contains("certificate") && t.contains("invalid")
}

/// What to do when the client could not verify the server's certificate (rustls's words in the
/// error chain), or None when the error is not that. Waiting never heals it.
pub(crate) fn tls_failure(text: &str) -> Option<&'static str> {
    if !text.contains("invalid peer certificate") {
        return None;
    }
    Some(
        if text.contains("UnknownIssuer") || text.contains("BadSignature") {
            "the CA in the kubeconfig (certificate-authority-data) did not sign the server's certificate: take the cluster's CA (kubeadm: /etc/kubernetes/pki/ca.crt; k3s: /var/lib/rancher/k3s/server/tls/server-ca.crt) or a fresh kubeconfig"
        } else if text.contains("NotValidForName") || text.contains("not valid for name") {
            "the server's certificate does not name the address in the kubeconfig: use an address it was issued for (its subject alternative names), or add this one to the API server's certificate"
        } else if ["Expired", "expired", "NotValidYet", "not valid yet"]
            .iter()
            .any(|w| text.contains(w))
        {
            "the server's certificate is outside its validity period: check this machine's clock, then renew the API server's certificates (kubeadm certs renew all)"
        } else {
            "check the CA and server address in the kubeconfig"
        },
    )
}

impl Conn {
    /// The error in the operator's terms; `what` names the object or request.
    pub fn error(&self, e: kube::Error, what: &str) -> KubeError {
        match e {
            kube::Error::Api(s) => match s.code {
                401 => KubeError::Credentials {
                    server: self.server.clone(),
                    detail: format!("401 Unauthorized: {}", s.message),
                },
                403 => KubeError::Forbidden {
                    detail: if s.message.is_empty() {
                        what.to_owned()
                    } else {
                        s.message
                    },
                },
                // A missing namespace answers 404 for an object inside it: name the namespace.
                404 if s.message.starts_with("namespaces \"")
                    && !what.starts_with("namespaces") =>
                {
                    KubeError::NotFound {
                        what: s.message.trim_end_matches(" not found").to_owned(),
                    }
                }
                404 => KubeError::NotFound {
                    what: what.to_owned(),
                },
                409 => KubeError::Conflict {
                    what: what.to_owned(),
                    detail: s.message,
                },
                code => KubeError::Api {
                    what: what.to_owned(),
                    code,
                    detail: s.message,
                },
            },
            kube::Error::Auth(a) => KubeError::Credentials {
                server: self.server.clone(),
                detail: error_chain(&a),
            },
            e @ (kube::Error::HyperError(_)
            | kube::Error::Service(_)
            | kube::Error::ReadEvents(_)) => {
                let detail = error_chain(&e);
                if let Some(tls) = self.tls_error(&detail) {
                    tls
                } else if is_credential_failure(&detail) {
                    KubeError::Credentials {
                        server: self.server.clone(),
                        detail,
                    }
                } else {
                    KubeError::Unreachable {
                        server: self.server.clone(),
                        detail,
                    }
                }
            }
            other => KubeError::Failed(format!("{what}: {}", error_chain(&other))),
        }
    }

    /// The TLS error for a client error chain that says the server's certificate could not be
    /// verified, or None.
    pub(crate) fn tls_error(&self, detail: &str) -> Option<KubeError> {
        tls_failure(detail).map(|hint| KubeError::Tls {
            server: self.server.clone(),
            detail: detail.to_owned(),
            hint,
        })
    }

    /// A request, tried again with backoff while it fails transiently (about 3 s in all).
    pub async fn retry<T, F, Fut>(&self, out: &Out<'_>, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, kube::Error>>,
    {
        const ATTEMPTS: u32 = 5;
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                    out.progress(format!(
                        "{what}: {}; trying again in {} ms",
                        short(&e),
                        delay.as_millis()
                    ));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(3));
                    attempt += 1;
                }
                Err(e) => return Err(self.error(e, what)),
            }
        }
    }
}

/// A short form of a client error for progress lines.
pub(crate) fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.message),
        other => error_chain(other),
    }
}

#[cfg(test)]
mod tests {
    use super::{is_credential_failure, tls_failure};

    // rustls's words, as seen from the lab's kube-apiserver (tests/integration/backend_kube/real.rs).
    const UNKNOWN_CA: &str =
        "ServiceError: client error (Connect): invalid peer certificate: UnknownIssuer";
    const WRONG_NAME: &str = "ServiceError: client error (Connect): invalid peer certificate: certificate not valid for name \"api.elsewhere.lab\"; certificate is only valid for IpAddress(127.0.0.1)";
    const EXPIRED: &str = "client error (Connect): invalid peer certificate: certificate expired: verification time 1767225600 (UNIX), but certificate is not valid after 1735689600 (31536000 seconds ago)";

    #[test]
    fn a_server_certificate_that_cannot_be_verified_is_tls_not_credentials() {
        for (text, words) in [
            (UNKNOWN_CA, "did not sign"),
            (WRONG_NAME, "does not name"),
            (EXPIRED, "validity period"),
        ] {
            let hint = tls_failure(text).unwrap_or_else(|| panic!("not TLS: {text}"));
            assert!(hint.contains(words), "{text}: {hint}");
            assert!(!is_credential_failure(text), "{text}");
        }
        assert_eq!(tls_failure("tcp connect error: Connection refused"), None);
        assert!(is_credential_failure("exec plugin: token expired"));
    }
}
