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

mod digest;
mod download;
mod upload;

use std::collections::HashMap;
use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::types::KeyMetadata;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::exec::backend::{ActionCtx, ActionError, ActionFuture, ActionResult, Backend};
use crate::runbook::action::{
    KeyState, KmsCancelDeletion, KmsDescribe, KmsEnable, KmsVerify, S3Download, S3List, S3Newest,
    S3Upload,
};
use crate::runbook::{Action, Sink, Text};
use crate::secret::Secret;

pub use download::Tuning;

/// Connecting to an endpoint; a dead one must fail the step quickly, not hang it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One non-streaming call (KMS, list, HEAD).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines shown for a listing; the result keeps every object.
const LIST_LINES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "no AWS region for {what}: set the step's `region`, AWS_REGION, or `region` in the profile ({profile})"
    )]
    NoRegion { what: String, profile: String },
    #[error(
        "no AWS credentials for {what} ({profile}): {detail}; set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (for SSO run `aws sso login` first)"
    )]
    NoCredentials {
        what: String,
        profile: String,
        detail: String,
    },
    #[error(
        "access denied to {what} for {identity}: check that its IAM policy{kms_policy} allows {op} there"
    )]
    AccessDenied {
        what: String,
        identity: String,
        op: String,
        kms_policy: &'static str,
    },
    #[error(
        "the credentials of {identity} have expired ({what}): refresh them (`aws sso login`, or a new session token) and retry"
    )]
    Expired { what: String, identity: String },
    #[error(
        "AWS does not accept {identity} ({what}): {detail}; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile's keys (deleted, rotated or mistyped)"
    )]
    BadCredentials {
        what: String,
        identity: String,
        detail: String,
    },
    #[error(
        "bucket `{bucket}` does not exist (region {region}, {identity}); check the bucket name and the region"
    )]
    NoBucket {
        bucket: String,
        region: String,
        identity: String,
    },
    #[error(
        "no object `{key}` in bucket `{bucket}`; check the key (list the prefix: s3.list, or `aws s3 ls s3://{bucket}/`)"
    )]
    NoObject { bucket: String, key: String },
    #[error("{what} is in region {actual}, not {region}: set the step's `region: {actual}`")]
    WrongRegion {
        what: String,
        region: String,
        actual: String,
    },
    #[error(
        "KMS key `{key}` not found in region {region} ({identity}): a mistyped id or alias, the wrong region or account, or a key already deleted (then contact AWS support)"
    )]
    NoKey {
        key: String,
        region: String,
        identity: String,
    },
    #[error("KMS key `{key}` cannot {op} in its current state: {detail}")]
    KeyState {
        key: String,
        op: String,
        detail: String,
    },
    #[error(
        "cannot reach {service} for {what}: {detail}; check the network, the region and the endpoint (AWS_ENDPOINT_URL or the step's `endpoint`)"
    )]
    Unreachable {
        service: &'static str,
        what: String,
        detail: String,
    },
    #[error("{op} on {what} failed ({identity}): {detail}")]
    Api {
        op: String,
        what: String,
        identity: String,
        detail: String,
    },
    #[error("{0}")]
    Expect(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Verify(String),
    #[error("{what}: {detail}")]
    Io { what: String, detail: String },
    #[error("cancelled")]
    Cancelled,
}

impl From<AwsError> for ActionError {
    fn from(e: AwsError) -> Self {
        match e {
            AwsError::Cancelled => ActionError::Cancelled,
            other => ActionError::failed(other.to_string()),
        }
    }
}

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

    async fn kms(&self, ctx: &ActionCtx<'_>, region: &Option<Text>, what: &str) -> Res<Kms> {
        let region = render_opt(ctx, region)?;
        let conn = self.conn(region, what).await?;
        Ok(Kms {
            client: aws_sdk_kms::Client::new(&conn.sdk),
            conn,
        })
    }

    async fn run(&self, action: &Action, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        match action {
            Action::S3List(a) => self.s3_list(a, ctx).await,
            Action::S3Newest(a) => self.s3_newest(a, ctx).await,
            Action::S3Download(a) => self.s3_download(a, ctx).await,
            Action::S3Upload(a) => self.s3_upload(a, ctx).await,
            Action::KmsDescribe(a) => self.kms_describe(a, ctx).await,
            Action::KmsCancelDeletion(a) => self.kms_cancel_deletion(a, ctx).await,
            Action::KmsEnable(a) => self.kms_enable(a, ctx).await,
            Action::KmsVerify(a) => self.kms_verify(a, ctx).await,
            other => Err(AwsError::Invalid(format!(
                "the aws backend does not perform `{}`",
                other.name()
            ))),
        }
    }
}

impl Backend for AwsBackend {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn handles(&self, action: &Action) -> bool {
        matches!(
            action,
            Action::S3List(_)
                | Action::S3Newest(_)
                | Action::S3Download(_)
                | Action::S3Upload(_)
                | Action::KmsDescribe(_)
                | Action::KmsCancelDeletion(_)
                | Action::KmsEnable(_)
                | Action::KmsVerify(_)
        )
    }

    fn execute<'a>(&'a self, action: &'a Action, ctx: &'a ActionCtx<'a>) -> ActionFuture<'a> {
        Box::pin(async move {
            let work = self.run(action, ctx);
            if matches!(action, Action::S3Upload(_)) {
                // Handles Ctrl-C itself: a multipart upload is aborted (and the abort
                // awaited) before the step ends, which dropping it here would prevent.
                return work.await.map_err(ActionError::from);
            }
            tokio::select! {
                r = work => r.map_err(ActionError::from),
                _ = ctx.cancel.cancelled() => Err(ActionError::Cancelled),
            }
        })
    }
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

/// What a failed call was about, to turn an SDK error into a message that names it.
enum Target<'a> {
    Bucket(&'a str),
    Object(&'a str, &'a str),
    Key(&'a str),
}

impl Target<'_> {
    fn describe(&self) -> String {
        match self {
            Target::Bucket(b) => format!("bucket `{b}`"),
            Target::Object(b, k) => format!("s3://{b}/{k}"),
            Target::Key(k) => format!("KMS key `{k}`"),
        }
    }
}

/// Turn an SDK error into a message naming the target, the identity and what to check.
fn explain<E>(e: SdkError<E, HttpResponse>, op: &str, target: Target<'_>, conn: &Conn) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let what = target.describe();
    let identity = conn.identity.text.clone();
    let service = match target {
        Target::Key(_) => "KMS",
        _ => "S3",
    };
    let status = e.raw_response().map(|r| r.status().as_u16());
    let bucket_region = e
        .raw_response()
        .and_then(|r| r.headers().get("x-amz-bucket-region"))
        .map(str::to_owned);
    let detail = DisplayErrorContext(&e).to_string();
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            return AwsError::Unreachable {
                service,
                what,
                detail,
            };
        }
        SdkError::ConstructionFailure(_) if detail.contains("credentials") => {
            return AwsError::NoCredentials {
                what,
                profile: conn.identity.profile.clone(),
                detail,
            };
        }
        _ => {}
    }
    // S3 names the bucket's region on a wrong-region answer, whatever the status (301 for
    // most calls, 400 for HEAD).
    if let Some(actual) = bucket_region.as_ref().filter(|r| **r != conn.region)
        && status.is_some_and(|s| s == 301 || s == 400)
    {
        return AwsError::WrongRegion {
            what,
            region: conn.region.clone(),
            actual: actual.clone(),
        };
    }
    let code = e.code().unwrap_or_default().to_owned();
    let message = e.message().unwrap_or_default().to_owned();
    let short = if message.is_empty() {
        code.clone()
    } else {
        format!("{code}: {message}")
    };
    match (code.as_str(), status) {
        (
            "ExpiredToken" | "ExpiredTokenException" | "TokenRefreshRequired" | "RequestExpired",
            _,
        ) => AwsError::Expired { what, identity },
        (
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "InvalidClientTokenId"
            | "IncompleteSignature",
            _,
        ) => AwsError::BadCredentials {
            what,
            identity,
            detail: short,
        },
        ("AccessDenied" | "AccessDeniedException", _) | ("", Some(403)) => AwsError::AccessDenied {
            what,
            identity,
            op: op.to_owned(),
            kms_policy: if service == "KMS" {
                " (and the key policy)"
            } else {
                ""
            },
        },
        (
            "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException",
            _,
        )
        | ("", Some(301)) => AwsError::WrongRegion {
            what,
            region: conn.region.clone(),
            actual: bucket_region.unwrap_or_else(|| "another region".into()),
        },
        ("NoSuchBucket", _) => AwsError::NoBucket {
            bucket: match target {
                Target::Bucket(b) | Target::Object(b, _) => b.to_owned(),
                Target::Key(k) => k.to_owned(),
            },
            region: conn.region.clone(),
            identity,
        },
        ("NoSuchKey" | "NotFound", _) | ("", Some(404)) if matches!(target, Target::Object(..)) => {
            match target {
                Target::Object(b, k) => AwsError::NoObject {
                    bucket: b.to_owned(),
                    key: k.to_owned(),
                },
                _ => AwsError::Api {
                    op: op.to_owned(),
                    what,
                    identity,
                    detail: short,
                },
            }
        }
        ("NotFoundException", _) => AwsError::NoKey {
            key: match target {
                Target::Key(k) => k.to_owned(),
                _ => what.clone(),
            },
            region: conn.region.clone(),
            identity,
        },
        ("KMSInvalidStateException" | "DisabledException" | "IncorrectKeyException", _) => {
            AwsError::KeyState {
                key: match target {
                    Target::Key(k) => k.to_owned(),
                    _ => what.clone(),
                },
                op: op.to_owned(),
                detail: short,
            }
        }
        _ => AwsError::Api {
            op: op.to_owned(),
            what,
            identity,
            detail: if code.is_empty() { detail } else { short },
        },
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

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn rfc3339(t: &aws_sdk_s3::primitives::DateTime) -> String {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.secs().to_string())
}

fn io_err(what: impl Display) -> impl FnOnce(std::io::Error) -> AwsError {
    let what = what.to_string();
    move |e| AwsError::Io {
        what,
        detail: e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// S3
// ---------------------------------------------------------------------------------------

struct S3 {
    client: aws_sdk_s3::Client,
    conn: Conn,
}

#[derive(Clone, Debug)]
struct Object {
    key: String,
    size: u64,
    modified: aws_sdk_s3::primitives::DateTime,
}

impl Object {
    fn json(&self) -> Value {
        json!({
            "key": self.key,
            "size": self.size,
            "last_modified": rfc3339(&self.modified),
        })
    }
}

impl S3 {
    async fn list(&self, bucket: &str, prefix: &str) -> Res<Vec<Object>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client.list_objects_v2().bucket(bucket);
            if !prefix.is_empty() {
                req = req.prefix(prefix);
            }
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let page = bounded(req.send())
                .await
                .map_err(|e| explain(e, "s3:ListBucket", Target::Bucket(bucket), &self.conn))?;
            for o in page.contents() {
                let (Some(key), Some(modified)) = (o.key(), o.last_modified()) else {
                    continue;
                };
                out.push(Object {
                    key: key.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified: *modified,
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// A shell-style glob (`*`, `?`, `[abc]`, `[!abc]`, `\x`) as an anchored regex; `*` also
/// matches `/`, as the printed `grep -E` equivalent does.
fn glob_regex(glob: &str) -> Res<regex::Regex> {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                re.push_str(".*");
            }
            '?' => re.push('.'),
            '\\' => {
                if let Some(n) = chars.next() {
                    re.push_str(&regex::escape(&n.to_string()));
                }
            }
            '[' => {
                let class: String = chars.clone().take_while(|&c| c != ']').collect();
                if chars.clone().any(|c| c == ']') && !class.is_empty() {
                    for _ in 0..=class.chars().count() {
                        chars.next();
                    }
                    let class = match class.strip_prefix('!') {
                        Some(rest) => format!("^{rest}"),
                        None => class,
                    };
                    re.push('[');
                    re.push_str(&class.replace('\\', "\\\\").replace('[', "\\["));
                    re.push(']');
                } else {
                    re.push_str("\\[");
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re)
        .map_err(|e| AwsError::Invalid(format!("the pattern `{glob}` is not a valid glob: {e}")))
}

impl AwsBackend {
    async fn s3_list(&self, a: &S3List, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let bucket = render(ctx, &a.bucket)?;
        let prefix = render_opt(ctx, &a.prefix)?.unwrap_or_default();
        let url = format!("s3://{bucket}/{prefix}");
        let s3 = self.s3(ctx, &a.endpoint, &a.region, &url).await?;
        let objects = s3.list(&bucket, &prefix).await?;
        let total: u64 = objects.iter().map(|o| o.size).sum();
        let mut lines = Vec::new();
        for o in objects.iter().take(LIST_LINES) {
            lines.push(format!(
                "{}  {:>10}  {}",
                rfc3339(&o.modified),
                human_bytes(o.size),
                o.key
            ));
        }
        if objects.len() > LIST_LINES {
            lines.push(format!("... and {} more", objects.len() - LIST_LINES));
        }
        lines.push(format!(
            "{} object(s) under {url}, {}",
            objects.len(),
            human_bytes(total)
        ));
        for l in &lines {
            ctx.output(l.clone());
        }
        Ok(ActionResult {
            value: json!({
                "bucket": bucket,
                "prefix": prefix,
                "count": objects.len(),
                "total_size": total,
                "objects": objects.iter().map(Object::json).collect::<Vec<_>>(),
            }),
            lines,
        })
    }

    async fn s3_newest(&self, a: &S3Newest, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let bucket = render(ctx, &a.bucket)?;
        let prefix = render_opt(ctx, &a.prefix)?.unwrap_or_default();
        let pattern = render(ctx, &a.pattern)?;
        let re = glob_regex(&pattern)?;
        let url = format!("s3://{bucket}/{prefix}");
        let s3 = self.s3(ctx, &a.endpoint, &a.region, &url).await?;
        let objects = s3.list(&bucket, &prefix).await?;
        let count = objects.len();
        // Newest by time; the greater key on a tie (timestamped names sort by date).
        let newest = objects
            .into_iter()
            .filter(|o| o.key.strip_prefix(&prefix).is_some_and(|r| re.is_match(r)))
            .max_by(|x, y| {
                (x.modified.secs(), x.modified.subsec_nanos(), &x.key).cmp(&(
                    y.modified.secs(),
                    y.modified.subsec_nanos(),
                    &y.key,
                ))
            });
        let Some(o) = newest else {
            return Err(AwsError::Expect(format!(
                "no object under {url} matches `{pattern}` ({count} object(s) there); check the prefix and the pattern (s3.list shows the names)"
            )));
        };
        let line = format!(
            "newest matching `{pattern}`: {} ({}, {})",
            o.key,
            human_bytes(o.size),
            rfc3339(&o.modified)
        );
        ctx.output(line.clone());
        let mut value = o.json();
        if let Value::Object(m) = &mut value {
            m.insert("bucket".into(), json!(bucket));
            m.insert(
                "name".into(),
                json!(o.key.strip_prefix(&prefix).unwrap_or(&o.key)),
            );
        }
        Ok(ActionResult {
            value,
            lines: vec![line],
        })
    }

    async fn s3_download(&self, a: &S3Download, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let bucket = render(ctx, &a.bucket)?;
        let key = render(ctx, &a.key)?;
        let to = PathBuf::from(render(ctx, &a.to)?);
        let sha256 = render_opt(ctx, &a.sha256)?.map(|s| s.to_ascii_lowercase());
        if let Some(s) = &sha256
            && (s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(AwsError::Invalid(format!(
                "`sha256` must be 64 hexadecimal digits, not `{s}`"
            )));
        }
        let url = format!("s3://{bucket}/{key}");
        let s3 = self.s3(ctx, &a.endpoint, &a.region, &url).await?;
        let job = download::Job {
            s3: &s3,
            bucket: &bucket,
            key: &key,
            to: &to,
            sha256: sha256.as_deref(),
            tuning: self.settings.tuning,
        };
        download::run(job, ctx).await
    }

    async fn s3_upload(&self, a: &S3Upload, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let bucket = render(ctx, &a.bucket)?;
        let key = render(ctx, &a.key)?;
        let from = PathBuf::from(render(ctx, &a.from)?);
        let url = format!("s3://{bucket}/{key}");
        let meta = std::fs::metadata(&from).map_err(io_err(format!(
            "cannot read `{}` to upload it",
            from.display()
        )))?;
        if !meta.is_file() {
            return Err(AwsError::Invalid(format!(
                "`{}` is not a file",
                from.display()
            )));
        }
        let size = meta.len();
        if size > upload::MAX_OBJECT {
            return Err(AwsError::Invalid(format!(
                "`{}` is {}: S3 objects hold at most 5 TiB",
                from.display(),
                human_bytes(size)
            )));
        }
        // One PutObject up to a part's size, a multipart upload above (S3 takes at most
        // 5 GiB in one PUT).
        let part_size = upload::part_size(size, self.settings.tuning.upload_part_size);
        let multipart = size > part_size;
        let s3 = self.s3(ctx, &a.endpoint, &a.region, &url).await?;
        let existing = cancellable(
            ctx,
            bounded(s3.client.head_object().bucket(&bucket).key(&key).send()),
        )
        .await?;
        let exists = match existing {
            Ok(h) => Some(h.content_length().unwrap_or(0).max(0) as u64),
            Err(e) => match explain(e, "s3:GetObject", Target::Object(&bucket, &key), &s3.conn) {
                AwsError::NoObject { .. } => None,
                // A missing bucket or a denied HEAD is worth knowing before the upload.
                other @ (AwsError::NoBucket { .. } | AwsError::Unreachable { .. }) => {
                    return Err(other);
                }
                _ => None,
            },
        };
        if ctx.dry_run {
            let what = match exists {
                Some(n) => format!("replacing the existing object ({})", human_bytes(n)),
                None => "a new object".to_owned(),
            };
            let how = if multipart {
                format!(
                    " in a multipart upload of {} part(s) of {}",
                    size.div_ceil(part_size),
                    human_bytes(part_size)
                )
            } else {
                String::new()
            };
            let line = format!(
                "would upload `{}` ({}) to {url}{how}: {what}",
                from.display(),
                human_bytes(size)
            );
            ctx.output(line.clone());
            return Ok(ActionResult {
                value: json!({
                    "bucket": bucket, "key": key, "size": size, "exists": exists.is_some(),
                    "multipart": multipart,
                }),
                lines: vec![line],
            });
        }
        if multipart {
            let job = upload::Job {
                s3: &s3,
                bucket: &bucket,
                key: &key,
                from: &from,
                size,
                part_size,
                parallel: self.settings.tuning.upload_parallel,
            };
            let up = upload::run(job, ctx).await?;
            let line = format!(
                "uploaded `{}` to {url} ({}, multipart: {} part(s) of {}, sha256 {})",
                from.display(),
                human_bytes(size),
                up.parts,
                human_bytes(part_size),
                hex::encode(&up.sha256)
            );
            ctx.output(line.clone());
            return Ok(ActionResult {
                value: json!({
                    "bucket": bucket,
                    "key": key,
                    "size": size,
                    "etag": up.etag,
                    "sha256": hex::encode(&up.sha256),
                    "replaced": exists.is_some(),
                    "multipart": true,
                    "parts": up.parts,
                    "part_size": part_size,
                }),
                lines: vec![line],
            });
        }
        let path = from.clone();
        let hashing = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            use std::io::Read;
            let mut f = std::fs::File::open(&path)?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(h.finalize().to_vec())
        });
        let digest = cancellable(ctx, async {
            hashing
                .await
                .map_err(|e| AwsError::Io {
                    what: "hashing the upload".into(),
                    detail: e.to_string(),
                })?
                .map_err(io_err(format!("cannot read `{}`", from.display())))
        })
        .await??;
        let body = aws_sdk_s3::primitives::ByteStream::from_path(&from)
            .await
            .map_err(|e| AwsError::Io {
                what: format!("cannot read `{}`", from.display()),
                detail: e.to_string(),
            })?;
        ctx.progress(format!("uploading {} to {url}", human_bytes(size)));
        // S3 checks the SHA-256 on arrival, so a corrupted transfer is refused.
        let put = s3
            .client
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .content_length(size as i64)
            .checksum_sha256(digest::base64(&digest))
            .body(body)
            .send();
        let out = cancellable(ctx, async {
            put.await
                .map_err(|e| explain(e, "s3:PutObject", Target::Object(&bucket, &key), &s3.conn))
        })
        .await??;
        let etag = out.e_tag().unwrap_or_default().trim_matches('"').to_owned();
        let line = format!(
            "uploaded `{}` to {url} ({}, sha256 {})",
            from.display(),
            human_bytes(size),
            hex::encode(&digest)
        );
        ctx.output(line.clone());
        Ok(ActionResult {
            value: json!({
                "bucket": bucket,
                "key": key,
                "size": size,
                "etag": etag,
                "sha256": hex::encode(&digest),
                "replaced": exists.is_some(),
                "multipart": false,
            }),
            lines: vec![line],
        })
    }
}

// ---------------------------------------------------------------------------------------
// KMS
// ---------------------------------------------------------------------------------------

struct Kms {
    client: aws_sdk_kms::Client,
    conn: Conn,
}

/// A key's description, as runbooks capture it.
struct KeyInfo {
    state: String,
    arn: String,
    key_id: String,
    deletion: Option<chrono::DateTime<chrono::Utc>>,
    manager: String,
    description: String,
}

impl KeyInfo {
    fn from_meta(m: &KeyMetadata) -> Self {
        KeyInfo {
            state: m
                .key_state()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|| "Unknown".into()),
            arn: m.arn().unwrap_or_default().to_owned(),
            key_id: m.key_id().to_owned(),
            deletion: m
                .deletion_date()
                .and_then(|d| chrono::DateTime::from_timestamp(d.secs(), d.subsec_nanos())),
            manager: m
                .key_manager()
                .map(|k| k.as_str().to_owned())
                .unwrap_or_default(),
            description: m.description().unwrap_or_default().to_owned(),
        }
    }

    fn deletion_text(&self) -> Option<String> {
        self.deletion
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }

    fn json(&self) -> Value {
        json!({
            "state": self.state,
            "arn": self.arn,
            "key_id": self.key_id,
            "deletion_date": self.deletion_text(),
            "key_manager": self.manager,
            "description": self.description,
            "enabled": self.state == "Enabled",
        })
    }

    fn summary(&self) -> String {
        let manager = match self.manager.as_str() {
            "CUSTOMER" => "customer managed",
            "AWS" => "AWS managed",
            _ => "manager unknown",
        };
        let mut s = format!("KMS key {}: {} ({manager})", self.arn, self.state);
        if let Some(d) = self.deletion {
            let days = (d - chrono::Utc::now()).num_hours() as f64 / 24.0;
            s.push_str(&format!(
                "; deletion scheduled for {} (in {days:.1} days)",
                d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        s
    }
}

impl Kms {
    async fn describe(&self, key: &str) -> Res<KeyInfo> {
        let out = bounded(self.client.describe_key().key_id(key).send())
            .await
            .map_err(|e| explain(e, "kms:DescribeKey", Target::Key(key), &self.conn))?;
        match out.key_metadata() {
            Some(m) => Ok(KeyInfo::from_meta(m)),
            None => Err(AwsError::Api {
                op: "kms:DescribeKey".into(),
                what: format!("KMS key `{key}`"),
                identity: self.conn.identity.text.clone(),
                detail: "the answer has no key metadata".into(),
            }),
        }
    }

    async fn enable(&self, key: &str) -> Res<()> {
        bounded(self.client.enable_key().key_id(key).send())
            .await
            .map_err(|e| explain(e, "kms:EnableKey", Target::Key(key), &self.conn))?;
        Ok(())
    }
}

impl AwsBackend {
    async fn kms_describe(&self, a: &KmsDescribe, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let key = render(ctx, &a.key_id)?;
        let kms = self
            .kms(ctx, &a.region, &format!("KMS key `{key}`"))
            .await?;
        let info = kms.describe(&key).await?;
        let line = info.summary();
        ctx.output(line.clone());
        if let Some(want) = a.expect_state
            && info.state != want.as_str()
        {
            let hint = match (want, info.state.as_str()) {
                (KeyState::Enabled, "PendingDeletion") => {
                    " (cancel the deletion: the vault-kms-key-deletion runbook)"
                }
                (KeyState::Enabled, "Disabled") => " (enable it: kms.enable)",
                _ => "",
            };
            let when = info
                .deletion_text()
                .map(|d| format!(", deletion scheduled for {d}"))
                .unwrap_or_default();
            return Err(AwsError::Expect(format!(
                "KMS key `{key}` is {}{when}, expected {}{hint}",
                info.state,
                want.as_str()
            )));
        }
        Ok(ActionResult {
            value: info.json(),
            lines: vec![line],
        })
    }

    async fn kms_cancel_deletion(
        &self,
        a: &KmsCancelDeletion,
        ctx: &ActionCtx<'_>,
    ) -> Res<ActionResult> {
        let key = render(ctx, &a.key_id)?;
        let kms = self
            .kms(ctx, &a.region, &format!("KMS key `{key}`"))
            .await?;
        let before = kms.describe(&key).await?;
        let mut lines = vec![before.summary()];
        let pending = before.state == "PendingDeletion";
        let enable = a.enable && (pending || before.state == "Disabled");
        if !pending && !matches!(before.state.as_str(), "Enabled" | "Disabled") {
            return Err(AwsError::KeyState {
                key,
                op: "cancel a deletion".into(),
                detail: format!(
                    "it is {}, not PendingDeletion; contact AWS support",
                    before.state
                ),
            });
        }
        if ctx.dry_run {
            let mut would = Vec::new();
            if pending {
                would.push(format!(
                    "would cancel the deletion scheduled for {}",
                    before.deletion_text().unwrap_or_default()
                ));
            } else {
                would.push(format!(
                    "no deletion is scheduled (the key is {}): nothing to cancel",
                    before.state
                ));
            }
            if enable {
                would.push("would enable the key (CancelKeyDeletion leaves it Disabled)".into());
            }
            lines.extend(would);
            for l in &lines {
                ctx.output(l.clone());
            }
            return Ok(ActionResult {
                value: before.json(),
                lines,
            });
        }
        ctx.output(lines[0].clone());
        if pending {
            bounded(kms.client.cancel_key_deletion().key_id(&key).send())
                .await
                .map_err(|e| explain(e, "kms:CancelKeyDeletion", Target::Key(&key), &kms.conn))?;
            let l = "deletion cancelled (the key is now Disabled)".to_owned();
            ctx.output(l.clone());
            lines.push(l);
        } else {
            let l = format!("no deletion was scheduled (the key is {})", before.state);
            ctx.output(l.clone());
            lines.push(l);
        }
        if enable {
            kms.enable(&key).await?;
            let l = "key enabled".to_owned();
            ctx.output(l.clone());
            lines.push(l);
        }
        let after = kms.describe(&key).await?;
        let l = after.summary();
        ctx.output(l.clone());
        lines.push(l);
        let mut value = after.json();
        if let Value::Object(m) = &mut value {
            m.insert("cancelled".into(), json!(pending));
            m.insert("previous_state".into(), json!(before.state));
        }
        Ok(ActionResult { value, lines })
    }

    async fn kms_enable(&self, a: &KmsEnable, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let key = render(ctx, &a.key_id)?;
        let kms = self
            .kms(ctx, &a.region, &format!("KMS key `{key}`"))
            .await?;
        let before = kms.describe(&key).await?;
        let mut lines = vec![before.summary()];
        ctx.output(lines[0].clone());
        if before.state == "PendingDeletion" {
            return Err(AwsError::KeyState {
                key,
                op: "be enabled".into(),
                detail: format!(
                    "it is pending deletion (on {}); cancel the deletion first (kms.cancel-deletion)",
                    before.deletion_text().unwrap_or_default()
                ),
            });
        }
        if ctx.dry_run {
            let l = if before.state == "Enabled" {
                "the key is already Enabled: nothing to do".to_owned()
            } else {
                format!("would enable the key (now {})", before.state)
            };
            ctx.output(l.clone());
            lines.push(l);
            return Ok(ActionResult {
                value: before.json(),
                lines,
            });
        }
        if before.state != "Enabled" {
            kms.enable(&key).await?;
        }
        let after = kms.describe(&key).await?;
        let l = after.summary();
        ctx.output(l.clone());
        lines.push(l);
        let mut value = after.json();
        if let Value::Object(m) = &mut value {
            m.insert("previous_state".into(), json!(before.state));
        }
        Ok(ActionResult { value, lines })
    }

    async fn kms_verify(&self, a: &KmsVerify, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let key = render(ctx, &a.key_id)?;
        let kms = self
            .kms(ctx, &a.region, &format!("KMS key `{key}`"))
            .await?;
        // Random bytes: nothing worth protecting, and never shown.
        let plain: [u8; 32] = rand::random();
        let enc = bounded(
            kms.client
                .encrypt()
                .key_id(&key)
                .plaintext(aws_sdk_kms::primitives::Blob::new(plain.to_vec()))
                .send(),
        )
        .await
        .map_err(|e| explain(e, "kms:Encrypt", Target::Key(&key), &kms.conn))?;
        let Some(blob) = enc.ciphertext_blob() else {
            return Err(AwsError::Verify(format!(
                "KMS key `{key}`: Encrypt answered without a ciphertext"
            )));
        };
        let used = enc.key_id().unwrap_or(&key).to_owned();
        let dec = bounded(
            kms.client
                .decrypt()
                .key_id(&key)
                .ciphertext_blob(blob.clone())
                .send(),
        )
        .await
        .map_err(|e| explain(e, "kms:Decrypt", Target::Key(&key), &kms.conn))?;
        if dec.plaintext().map(|p| p.as_ref()) != Some(&plain[..]) {
            return Err(AwsError::Verify(format!(
                "KMS key `{key}` did not give back the bytes it encrypted: the key is not usable as it is; check the key id and region"
            )));
        }
        let line = format!("KMS key {used}: encrypt and decrypt of 32 random bytes round-trip");
        ctx.output(line.clone());
        Ok(ActionResult {
            value: json!({"ok": true, "arn": used, "key_id": key}),
            lines: vec![line],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_the_shell_but_across_slashes() {
        let re = glob_regex("snapshot-*.db").unwrap();
        assert!(re.is_match("snapshot-20250101-000000.db"));
        assert!(!re.is_match("snapshot-20250101-000000.db.part"));
        assert!(!re.is_match("pki-20250101.tar.gz"));
        assert!(glob_regex("a/*").unwrap().is_match("a/b/c"));
        assert!(glob_regex("x[!0-9]?").unwrap().is_match("xab"));
        assert!(!glob_regex("x[!0-9]?").unwrap().is_match("x1b"));
        assert!(glob_regex("a\\*b").unwrap().is_match("a*b"));
        assert!(glob_regex("a[").unwrap().is_match("a["));
    }

    #[test]
    fn key_ids_are_masked() {
        assert_eq!(mask_key_id("AKIAIOSFODNN7EXAMPLE"), "****MPLE");
        assert_eq!(mask_key_id("ab"), "****ab");
    }
}
