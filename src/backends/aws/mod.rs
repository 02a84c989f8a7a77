//! The AWS backend: S3 (list, newest, download, upload) and KMS (describe, cancel-deletion,
//! enable, verify).
//!
//! Credentials and region come from aws-config exactly as for the aws CLI (environment,
//! profiles, SSO, credential process); the step's `region` wins. `AWS_ENDPOINT_URL` (or
//! `AWS_ENDPOINT_URL_S3` / `_KMS`) and the step's `endpoint` point at MinIO or moto; S3
//! then uses path-style addressing, which such servers need.
//!
//! Errors name the bucket, object or key, the identity (the access key id, masked as the
//! aws CLI's `configure list` does, and the profile) and what to check. Secrets never reach
//! output: the secret key is never read here, KMS plaintexts are random and never shown.
//!
//! Submodules: `error` (`AwsError`, SDK errors as messages), `s3` (the S3 actions and the
//! helpers they share), `download` and `upload` (moving an object's bytes), `digest`,
//! `kms` (the KMS actions).

mod digest;
mod download;
#[doc(hidden)]
pub use download::fuzz_state as fuzz_download_state;
mod error;
mod kms;
mod s3;
mod upload;

use std::collections::HashMap;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};

use self::kms::Kms;
use self::s3::S3;
use crate::exec::backend::{ActionCtx, ActionError, ActionResult};
use crate::runbook::action::{
    KmsCancelDeletion, KmsDescribe, KmsEnable, KmsVerify, S3Download, S3List, S3Newest, S3Upload,
};
use crate::runbook::{Sink, Text};
use crate::secret::Secret;

pub use self::download::Tuning;
pub use self::error::AwsError;

/// Connecting to an endpoint; a dead one must fail the step quickly, not hang it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One non-streaming call (KMS, list, HEAD).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

type Res<T> = Result<T, AwsError>;

/// Who the calls run as, for error messages: never the secret key.
#[derive(Clone, Debug)]
struct Identity {
    /// "access key ****WXYZ (profile `prod`)".
    text: String,
    profile: String,
}

/// A loaded configuration: region, credentials chain, endpoint, HTTP client.
#[derive(Clone)]
struct Conn {
    sdk: SdkConfig,
    region: String,
    identity: Identity,
}

pub struct AwsBackend {
    /// Loaded configurations by region override: loading resolves credentials (an SSO
    /// token, a credential process) once per run, not once per step.
    conns: tokio::sync::Mutex<HashMap<Option<String>, Conn>>,
    settings: Settings,
}

/// Explicit connection settings over aws-config's own (environment, profiles): for tests
/// in one process, where the environment is shared, and for embedding.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret<String>>,
    pub tuning: Tuning,
}

impl AwsBackend {
    pub fn from_env() -> Self {
        Self::with_settings(Settings {
            tuning: Tuning::from_env(),
            ..Settings::default()
        })
    }

    pub fn with_settings(settings: Settings) -> Self {
        AwsBackend {
            conns: tokio::sync::Mutex::new(HashMap::new()),
            settings,
        }
    }

    async fn conn(&self, region: Option<String>, what: &str) -> Res<Conn> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&region) {
            return Ok(c.clone());
        }
        let s = &self.settings;
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
        if let Some(r) = region.as_ref().or(s.region.as_ref()) {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(e) = &s.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        let profile = match (&s.access_key_id, &s.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                    id,
                    secret.expose(),
                    None,
                    None,
                    "drctl settings",
                ));
                "given to drctl".to_owned()
            }
            _ => profile_name(),
        };
        let sdk = loader.load().await;
        let Some(reg) = sdk.region().map(|r| r.to_string()) else {
            return Err(AwsError::NoRegion {
                what: what.to_owned(),
                profile,
            });
        };
        let identity = identity(&sdk, &profile, what).await?;
        let c = Conn {
            sdk,
            region: reg,
            identity,
        };
        conns.insert(region, c.clone());
        Ok(c)
    }

    async fn s3(
        &self,
        ctx: &ActionCtx<'_>,
        endpoint: &Option<Text>,
        region: &Option<Text>,
        what: &str,
    ) -> Res<S3> {
        let region = render_opt(ctx, region)?;
        let endpoint = render_opt(ctx, endpoint)?;
        let conn = self.conn(region, what).await?;
        let mut b = aws_sdk_s3::config::Builder::from(&conn.sdk)
            // MinIO, s3rver and older S3-compatible servers reject the aws-chunked bodies
            // that the SDK's default checksum calculation sends; uploads send their
            // SHA-256 explicitly instead.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            );
        let custom = endpoint.is_some()
            || conn.sdk.endpoint_url().is_some()
            || env_set("AWS_ENDPOINT_URL_S3");
        if let Some(e) = &endpoint {
            b = b.endpoint_url(e);
        }
        if custom {
            b = b.force_path_style(true);
        }
        Ok(S3 {
            client: aws_sdk_s3::Client::from_conf(b.build()),
            conn,
        })
    }

    /// The step's key id, rendered, and a KMS client for its region.
    async fn kms(
        &self,
        ctx: &ActionCtx<'_>,
        key_id: &Text,
        region: &Option<Text>,
    ) -> Res<(String, Kms)> {
        let key = render(ctx, key_id)?;
        let region = render_opt(ctx, region)?;
        let conn = self.conn(region, &format!("KMS key `{key}`")).await?;
        let kms = Kms {
            client: aws_sdk_kms::Client::new(&conn.sdk),
            conn,
        };
        Ok((key, kms))
    }

    pub async fn perform(
        &self,
        op: AwsOp<'_>,
        ctx: &ActionCtx<'_>,
    ) -> Result<ActionResult, ActionError> {
        let work = async {
            match op {
                AwsOp::S3List(a) => Box::pin(self.s3_list(a, ctx)).await,
                AwsOp::S3Newest(a) => Box::pin(self.s3_newest(a, ctx)).await,
                AwsOp::S3Download(a) => Box::pin(self.s3_download(a, ctx)).await,
                AwsOp::S3Upload(a) => Box::pin(self.s3_upload(a, ctx)).await,
                AwsOp::KmsDescribe(a) => Box::pin(self.kms_describe(a, ctx)).await,
                AwsOp::KmsCancelDeletion(a) => Box::pin(self.kms_cancel_deletion(a, ctx)).await,
                AwsOp::KmsEnable(a) => Box::pin(self.kms_enable(a, ctx)).await,
                AwsOp::KmsVerify(a) => Box::pin(self.kms_verify(a, ctx)).await,
            }
        };
        if matches!(op, AwsOp::S3Upload(_)) {
            // Handles Ctrl-C itself: a multipart upload is aborted (and the abort awaited)
            // before the step ends, which dropping it here would prevent.
            return work.await.map_err(ActionError::from);
        }
        tokio::select! {
            r = work => r.map_err(ActionError::from),
            _ = ctx.cancel.cancelled() => Err(ActionError::Cancelled),
        }
    }
}

/// The actions this backend performs (routed here by `exec::engine::perform`).
#[derive(Clone, Copy)]
pub enum AwsOp<'a> {
    S3List(&'a S3List),
    S3Newest(&'a S3Newest),
    S3Download(&'a S3Download),
    S3Upload(&'a S3Upload),
    KmsDescribe(&'a KmsDescribe),
    KmsCancelDeletion(&'a KmsCancelDeletion),
    KmsEnable(&'a KmsEnable),
    KmsVerify(&'a KmsVerify),
}

// ---------------------------------------------------------------------------------------
// Configuration and identity
// ---------------------------------------------------------------------------------------

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

fn profile_name() -> String {
    match std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()) {
        Some(p) => format!("profile `{p}`"),
        None if env_set("AWS_ACCESS_KEY_ID") => "from AWS_ACCESS_KEY_ID".to_owned(),
        None => "profile `default`".to_owned(),
    }
}

/// The aws CLI's `configure list` masking: only the last four characters.
fn mask_key_id(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("****{tail}")
}

async fn identity(sdk: &SdkConfig, profile: &str, what: &str) -> Res<Identity> {
    use aws_sdk_s3::config::ProvideCredentials;
    let no_creds = |detail: String| AwsError::NoCredentials {
        what: what.to_owned(),
        profile: profile.to_owned(),
        detail,
    };
    let Some(provider) = sdk.credentials_provider() else {
        return Err(no_creds("no credentials provider is configured".into()));
    };
    let creds = provider
        .provide_credentials()
        .await
        .map_err(|e| no_creds(DisplayErrorContext(&e).to_string()))?;
    Ok(Identity {
        text: format!(
            "access key {} ({profile})",
            mask_key_id(creds.access_key_id())
        ),
        profile: profile.to_owned(),
    })
}

fn render(ctx: &ActionCtx<'_>, t: &Text) -> Res<String> {
    ctx.values
        .render(t, Sink::Shown)
        .map_err(|e| AwsError::Invalid(e.to_string()))
}

fn render_opt(ctx: &ActionCtx<'_>, t: &Option<Text>) -> Res<Option<String>> {
    match t {
        Some(t) => {
            let s = render(ctx, t)?;
            Ok((!s.trim().is_empty()).then(|| s.trim().to_owned()))
        }
        None => Ok(None),
    }
}

/// `fut`, or `Cancelled` at a Ctrl-C (for actions that handle it themselves).
async fn cancellable<T>(ctx: &ActionCtx<'_>, fut: impl Future<Output = T>) -> Res<T> {
    tokio::select! {
        r = fut => Ok(r),
        _ = ctx.cancel.cancelled() => Err(AwsError::Cancelled),
    }
}

/// A call bounded by `CALL_TIMEOUT`.
async fn bounded<T, E>(
    fut: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
) -> Result<T, SdkError<E, HttpResponse>> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(elapsed) => Err(SdkError::timeout_error(Box::new(elapsed))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_masked() {
        assert_eq!(mask_key_id("AKIAIOSFODNN7EXAMPLE"), "****MPLE");
        assert_eq!(mask_key_id("ab"), "****ab");
    }
}
