//! The AWS backend's errors: `AwsError`, and turning an SDK error into the variant that
//! names the bucket, object or key, the identity and what to check.

use std::fmt::Display;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::Conn;
use crate::exec::backend::{ActionError, ErrorKind};

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
            other => {
                let kind = match &other {
                    AwsError::NoRegion { .. } | AwsError::NoCredentials { .. } => {
                        ErrorKind::Unconfigured
                    }
                    AwsError::WrongRegion { .. } | AwsError::Invalid(_) => ErrorKind::Invalid,
                    AwsError::AccessDenied { .. } => ErrorKind::Forbidden,
                    AwsError::Expired { .. } | AwsError::BadCredentials { .. } => {
                        ErrorKind::Unauthorised
                    }
                    AwsError::NoBucket { .. }
                    | AwsError::NoObject { .. }
                    | AwsError::NoKey { .. } => ErrorKind::NotFound,
                    AwsError::Unreachable { .. } => ErrorKind::Unreachable,
                    // States a step may change (a key re-enabled) and answers without a
                    // status: the step's retry policy decides.
                    AwsError::KeyState { .. }
                    | AwsError::Api { .. }
                    | AwsError::Expect(_)
                    | AwsError::Verify(_)
                    | AwsError::Io { .. }
                    | AwsError::Cancelled => ErrorKind::Failed,
                };
                ActionError::of_kind(kind, other.to_string())
            }
        }
    }
}

/// What a failed call was about, to turn an SDK error into a message that names it.
pub(super) enum Target<'a> {
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
pub(super) fn explain<E>(
    e: SdkError<E, HttpResponse>,
    op: &str,
    target: Target<'_>,
    conn: &Conn,
) -> AwsError
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

/// An I/O failure while `what`.
pub(super) fn io_err(what: impl Display) -> impl FnOnce(std::io::Error) -> AwsError {
    let what = what.to_string();
    move |e| AwsError::Io {
        what,
        detail: e.to_string(),
    }
}
