//! The S3 actions (s3.list, s3.newest, and the entry of s3.download and s3.upload:
//! rendering, checks, the rehearsal, single-PUT uploads) and what they share with
//! `download` and `upload`: the client, listing, sizes and times for messages.

use crate::runbook::glob::{Glob, Slash};
use std::path::PathBuf;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::{AwsError, Target, explain, io_err};
use super::{
    AwsBackend, Conn, Res, bounded, cancellable, digest, download, render, render_opt, upload,
};
use crate::exec::backend::{ActionCtx, ActionResult};
use crate::runbook::action::{S3Download, S3List, S3Newest, S3Upload};

/// Lines shown for a listing; the result keeps every object.
const LIST_LINES: usize = 50;

/// An S3 client with the configuration it was made from.
pub(super) struct S3 {
    pub client: aws_sdk_s3::Client,
    pub conn: Conn,
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
    /// Turns a failed `op` on `s3://bucket/key` into the error that names the object.
    pub(super) fn object_err<'a, E>(
        &'a self,
        op: &'a str,
        bucket: &'a str,
        key: &'a str,
    ) -> impl FnOnce(SdkError<E, HttpResponse>) -> AwsError + 'a
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        move |e| explain(e, op, Target::Object(bucket, key), &self.conn)
    }

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

/// The step's glob as an anchored regex; `*` also matches `/`, as the printed `grep -E`
/// equivalent does (both come from `runbook::glob`).
fn glob_regex(glob: &str) -> Res<regex::Regex> {
    Glob::parse(glob)
        .to_regex(Slash::Crosses)
        .map_err(|e| AwsError::Invalid(format!("the pattern `{glob}` is not a valid glob: {e}")))
}

impl AwsBackend {
    pub(super) async fn s3_list(&self, a: &S3List, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
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

    pub(super) async fn s3_newest(&self, a: &S3Newest, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
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

    pub(super) async fn s3_download(
        &self,
        a: &S3Download,
        ctx: &ActionCtx<'_>,
    ) -> Res<ActionResult> {
        let bucket = render(ctx, &a.bucket)?;
        let key = render(ctx, &a.key)?;
        let to = crate::backends::process::local_path(&render(ctx, &a.to)?);
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

    pub(super) async fn s3_upload(&self, a: &S3Upload, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
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
                .map_err(s3.object_err("s3:PutObject", &bucket, &key))
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

pub(super) fn human_bytes(n: u64) -> String {
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

pub(super) fn rfc3339(t: &aws_sdk_s3::primitives::DateTime) -> String {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.secs().to_string())
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
}
