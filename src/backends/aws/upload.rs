//! s3.upload of files larger than one part: a multipart upload (CreateMultipartUpload,
//! UploadPart, CompleteMultipartUpload), so files beyond S3's 5 GiB single-PUT limit go up,
//! with bounded concurrency and constant memory (each part streams from the file at its
//! offset; nothing is buffered whole).
//!
//! One sequential pass first hashes the file: its SHA-256 (the step's result) and each
//! part's MD5, sent as the part's `Content-MD5`, which S3 checks on arrival (a part changed
//! or corrupted in transit is refused); the multipart ETag S3 answers (MD5 of the part
//! MD5s, `-N`) is then compared with the one computed here. A failure, a Ctrl-C or a
//! dropped step aborts the upload (AbortMultipartUpload), so no object and no stored
//! parts stay behind.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::operation::abort_multipart_upload::builders::AbortMultipartUploadFluentBuilder;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use sha2::{Digest, Sha256};

use super::digest::{Md5, base64};
use super::error::{AwsError, Target, explain, io_err};
use super::s3::{S3, human_bytes};
use super::{Res, bounded};
use crate::exec::backend::ActionCtx;

/// S3's limits: parts of at least 5 MiB (but the last), at most 10,000 parts, 5 TiB.
pub const MIN_PART: u64 = 5 << 20;
const MAX_PARTS: u64 = 10_000;
pub const MAX_OBJECT: u64 = 5 << 40;
/// The hashing pass's read size.
const READ_BUF: usize = 4 << 20;
/// How long an abort may take after a failure or a Ctrl-C.
const ABORT_TIMEOUT: Duration = Duration::from_secs(20);
/// CompleteMultipartUpload of a large object.
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The part size for `size` bytes: the configured one, grown so the parts stay within
/// S3's 10,000 (rounded up to whole MiB).
pub fn part_size(size: u64, configured: u64) -> u64 {
    let min_for_count = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    configured.max(MIN_PART).max(min_for_count)
}

pub(super) struct Job<'a> {
    pub s3: &'a S3,
    pub bucket: &'a str,
    pub key: &'a str,
    pub from: &'a Path,
    pub size: u64,
    pub part_size: u64,
    pub parallel: usize,
}

pub(super) struct Uploaded {
    pub etag: String,
    pub sha256: Vec<u8>,
    pub parts: u64,
}

/// Aborts the upload if the future is dropped before it finished (the step's timeout):
/// best effort, on the running runtime. Failures and Ctrl-C abort explicitly and wait.
struct AbortOnDrop {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl AbortOnDrop {
    /// The AbortMultipartUpload request for this upload.
    fn request(&self) -> AbortMultipartUploadFluentBuilder {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
    }

    async fn abort(&mut self) -> Result<(), String> {
        self.armed = false;
        let call = self.request().send();
        match tokio::time::timeout(ABORT_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            // Nothing left to abort.
            Ok(Err(e))
                if aws_sdk_s3::error::ProvideErrorMetadata::code(&e) == Some("NoSuchUpload") =>
            {
                Ok(())
            }
            Ok(Err(e)) => Err(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()),
            Err(_) => Err(format!("no answer in {} s", ABORT_TIMEOUT.as_secs())),
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let call = self.request().send();
            rt.spawn(async move {
                let _ = tokio::time::timeout(ABORT_TIMEOUT, call).await;
            });
        }
    }
}

/// The file's SHA-256 and the MD5 of each `part_size` slice, in one sequential read.
fn hash_parts(from: &Path, size: u64, part_size: u64) -> std::io::Result<(Vec<u8>, Vec<[u8; 16]>)> {
    use std::io::Read;
    let mut f = std::fs::File::open(from)?;
    let mut sha = Sha256::new();
    let mut md5s = Vec::with_capacity(size.div_ceil(part_size) as usize);
    let mut cur = Md5::new();
    let mut in_part = 0u64;
    let mut total = 0u64;
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut data = &buf[..n];
        sha.update(data);
        total += n as u64;
        while !data.is_empty() {
            let take = ((part_size - in_part) as usize).min(data.len());
            cur.update(&data[..take]);
            in_part += take as u64;
            data = &data[take..];
            if in_part == part_size {
                md5s.push(std::mem::take(&mut cur).finish());
                in_part = 0;
            }
        }
    }
    if in_part > 0 {
        md5s.push(cur.finish());
    }
    if total != size {
        return Err(std::io::Error::other(format!(
            "the file changed while it was read ({size} bytes before, {total} now)"
        )));
    }
    Ok((sha.finalize().to_vec(), md5s))
}

/// S3's multipart ETag for these part MD5s: MD5 of their concatenation, then `-N`.
pub fn multipart_etag(md5s: &[[u8; 16]]) -> String {
    let mut m = Md5::new();
    for d in md5s {
        m.update(d);
    }
    format!("{}-{}", hex::encode(m.finish()), md5s.len())
}

pub(super) async fn run(job: Job<'_>, ctx: &ActionCtx<'_>) -> Res<Uploaded> {
    let url = format!("s3://{}/{}", job.bucket, job.key);
    let part_size = job.part_size;
    let parts = job.size.div_ceil(part_size);
    ctx.progress(format!(
        "hashing {} in {parts} part(s)",
        human_bytes(job.size)
    ));
    let (path, size) = (job.from.to_path_buf(), job.size);
    let hashing = async {
        tokio::task::spawn_blocking(move || hash_parts(&path, size, part_size))
            .await
            .map_err(|e| AwsError::Io {
                what: "hashing the upload".into(),
                detail: e.to_string(),
            })?
            .map_err(io_err(format!("cannot read `{}`", job.from.display())))
    };
    // Nothing exists in S3 yet: a Ctrl-C here just stops.
    let (sha256, md5s) = tokio::select! {
        r = hashing => r?,
        _ = ctx.cancel.cancelled() => return Err(AwsError::Cancelled),
    };
    let expected = multipart_etag(&md5s);

    let created = bounded(
        job.s3
            .client
            .create_multipart_upload()
            .bucket(job.bucket)
            .key(job.key)
            .send(),
    )
    .await
    .map_err(job.s3.object_err("s3:PutObject", job.bucket, job.key))?;
    let Some(upload_id) = created.upload_id().map(str::to_owned) else {
        return Err(AwsError::Api {
            op: "s3:CreateMultipartUpload".into(),
            what: url,
            identity: job.s3.conn.identity.text.clone(),
            detail: "the answer has no upload id".into(),
        });
    };
    let mut guard = AbortOnDrop {
        client: job.s3.client.clone(),
        bucket: job.bucket.to_owned(),
        key: job.key.to_owned(),
        upload_id: upload_id.clone(),
        armed: true,
    };

    let work = upload_parts(&job, ctx, &upload_id, &md5s, &expected);
    let outcome = tokio::select! {
        r = work => r,
        _ = ctx.cancel.cancelled() => Err(AwsError::Cancelled),
    };
    match outcome {
        Ok(etag) => {
            guard.armed = false;
            Ok(Uploaded {
                etag,
                sha256,
                parts,
            })
        }
        Err(e) => {
            ctx.progress(format!("aborting the multipart upload to {url}"));
            match guard.abort().await {
                Ok(()) => Err(e),
                // The parts stay stored (and billed) until a lifecycle rule removes them.
                Err(why) => Err(match e {
                    AwsError::Cancelled => AwsError::Cancelled,
                    other => AwsError::Io {
                        what: other.to_string(),
                        detail: format!(
                            "and aborting the multipart upload {upload_id} failed ({why}): remove it with `aws s3api abort-multipart-upload --bucket {} --key {} --upload-id {upload_id}`",
                            job.bucket, job.key
                        ),
                    },
                }),
            }
        }
    }
}

/// Uploads the parts, at most `parallel` at a time, and completes the upload; returns the
/// object's ETag.
async fn upload_parts(
    job: &Job<'_>,
    ctx: &ActionCtx<'_>,
    upload_id: &str,
    md5s: &[[u8; 16]],
    expected: &str,
) -> Res<String> {
    let url = format!("s3://{}/{}", job.bucket, job.key);
    let started = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let mut next = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    let mut done: Vec<CompletedPart> = Vec::with_capacity(md5s.len());
    let spawn = |tasks: &mut tokio::task::JoinSet<Res<CompletedPart>>, i: usize| {
        let client = job.s3.client.clone();
        let conn = job.s3.conn.clone();
        let (bucket, key, id) = (
            job.bucket.to_owned(),
            job.key.to_owned(),
            upload_id.to_owned(),
        );
        let from = job.from.to_path_buf();
        let offset = i as u64 * job.part_size;
        let len = (offset + job.part_size).min(job.size) - offset;
        let md5 = base64(&md5s[i]);
        let sent = sent.clone();
        tasks.spawn(async move {
            let number = i as i32 + 1;
            let body = ByteStream::read_from()
                .path(&from)
                .offset(offset)
                .length(Length::Exact(len))
                .buffer_size(256 << 10)
                .build()
                .await
                .map_err(|e| AwsError::Io {
                    what: format!("cannot read `{}`", from.display()),
                    detail: e.to_string(),
                })?;
            let out = client
                .upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&id)
                .part_number(number)
                .content_length(len as i64)
                .content_md5(md5)
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    let bad_digest = matches!(
                        aws_sdk_s3::error::ProvideErrorMetadata::code(&e),
                        Some("BadDigest" | "InvalidDigest")
                    );
                    if bad_digest {
                        AwsError::Verify(format!(
                            "S3 refused part {number} of s3://{bucket}/{key}: its bytes do not match the MD5 read before (the file changed during the upload, or the transfer corrupted it)"
                        ))
                    } else {
                        explain(e, "s3:PutObject", Target::Object(&bucket, &key), &conn)
                    }
                })?;
            sent.fetch_add(len, Ordering::Relaxed);
            let Some(etag) = out.e_tag() else {
                return Err(AwsError::Io {
                    what: format!("uploading part {number} of s3://{bucket}/{key}"),
                    detail: "the answer has no ETag".into(),
                });
            };
            Ok(CompletedPart::builder()
                .part_number(number)
                .e_tag(etag)
                .build())
        });
    };
    while next < md5s.len().min(job.parallel.max(1)) {
        spawn(&mut tasks, next);
        next += 1;
    }
    while let Some(joined) = tasks.join_next().await {
        let part = joined.map_err(|e| AwsError::Io {
            what: format!("uploading to {url}"),
            detail: e.to_string(),
        })??;
        done.push(part);
        let got = sent.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        ctx.progress(format!(
            "{} / {} ({} of {} parts), {}/s",
            human_bytes(got),
            human_bytes(job.size),
            done.len(),
            md5s.len(),
            human_bytes((got as f64 / secs) as u64)
        ));
        if next < md5s.len() {
            spawn(&mut tasks, next);
            next += 1;
        }
    }
    done.sort_by_key(|p| p.part_number());

    ctx.progress(format!("completing the multipart upload to {url}"));
    let complete = job
        .s3
        .client
        .complete_multipart_upload()
        .bucket(job.bucket)
        .key(job.key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send();
    // S3 may take minutes to assemble a large object.
    let completed = match tokio::time::timeout(COMPLETE_TIMEOUT, complete).await {
        Ok(r) => r,
        Err(elapsed) => Err(aws_sdk_s3::error::SdkError::timeout_error(Box::new(
            elapsed,
        ))),
    };
    // The ETag is S3's multipart ETag unless KMS or customer keys encrypt the object.
    let comparable = |sse: Option<&ServerSideEncryption>, customer: bool| {
        !customer
            && !matches!(
                sse,
                Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
            )
    };
    let etag = match completed {
        Ok(out) => {
            let etag = out.e_tag().unwrap_or_default().trim_matches('"').to_owned();
            if comparable(out.server_side_encryption(), false) && etag != expected {
                return Err(AwsError::Verify(format!(
                    "{url}: S3 answers the multipart ETag {etag}, the parts sent give {expected}"
                )));
            }
            etag
        }
        // A success that does not parse (moto answers with another root element) may
        // still be a completed upload: the object's HEAD tells.
        Err(e)
            if matches!(e, aws_sdk_s3::error::SdkError::ResponseError(_))
                || (e.raw_response().is_some_and(|r| r.status().is_success())
                    && aws_sdk_s3::error::ProvideErrorMetadata::code(&e).is_none()) =>
        {
            let detail = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
            let head = bounded(
                job.s3
                    .client
                    .head_object()
                    .bucket(job.bucket)
                    .key(job.key)
                    .send(),
            )
            .await;
            match head {
                Ok(h)
                    if comparable(
                        h.server_side_encryption(),
                        h.sse_customer_algorithm().is_some(),
                    ) && h.e_tag().map(|t| t.trim_matches('"')) == Some(expected)
                        && h.content_length() == Some(job.size as i64) =>
                {
                    expected.to_owned()
                }
                _ => {
                    return Err(AwsError::Api {
                        op: "s3:CompleteMultipartUpload".into(),
                        what: url,
                        identity: job.s3.conn.identity.text.clone(),
                        detail: format!("the answer could not be read: {detail}"),
                    });
                }
            }
        }
        Err(e) => {
            return Err(explain(
                e,
                "s3:PutObject",
                Target::Object(job.bucket, job.key),
                &job.s3.conn,
            ));
        }
    };
    Ok(etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_within_s3_limits() {
        assert_eq!(part_size(1 << 30, 64 << 20), 64 << 20);
        assert_eq!(part_size(100 << 20, 1 << 20), MIN_PART);
        // 5 TiB in 10,000 parts needs parts of 525 MiB (rounded up to whole MiB).
        let p = part_size(MAX_OBJECT, 64 << 20);
        assert!(MAX_OBJECT.div_ceil(p) <= MAX_PARTS, "{p}");
        assert_eq!(p % (1 << 20), 0);
    }

    #[test]
    fn hashing_splits_at_part_boundaries() {
        let dir = std::env::temp_dir().join(format!("drctl-upload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x");
        let data: Vec<u8> = (0..25u32).map(|i| i as u8).collect();
        std::fs::write(&f, &data).unwrap();
        let (sha, md5s) = hash_parts(&f, 25, 10).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(sha, Sha256::digest(&data).to_vec());
        let want: Vec<[u8; 16]> = data
            .chunks(10)
            .map(|c| {
                let mut m = Md5::new();
                m.update(c);
                m.finish()
            })
            .collect();
        assert_eq!(md5s, want);
    }
}
