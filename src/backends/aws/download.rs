//! s3.download: ranged parts fetched in parallel and written in place (`pwrite`) into
//! `TO.part`, so memory stays constant whatever the object size; a sidecar
//! `TO.part.state` lists the finished parts, so an interrupted download (Ctrl-C, a timeout,
//! a crash) resumes with only the missing ones. A reader thread hashes the file behind the
//! download front while it is still in the page cache, and only a verified file is renamed
//! to `TO`: no later step ever sees an unverified one.

use std::collections::VecDeque;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType, ServerSideEncryption};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::digest::{Crc32, Md5, base64};
use super::error::{AwsError, Target, explain, io_err};
use super::s3::{S3, human_bytes, rfc3339};
use super::{Conn, Res, bounded};
use crate::exec::backend::{ActionCtx, ActionResult};

/// A part that sends nothing for this long is retried.
const IDLE: Duration = Duration::from_secs(30);
/// Attempts at one part (connection resets, 5xx) before the step fails.
const PART_ATTEMPTS: u32 = 4;
/// The hashing thread's read size.
const HASH_BUF: usize = 1 << 20;
const STATE_VERSION: u32 = 1;

/// Part size and parallelism of downloads and multipart uploads.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    pub part_size: u64,
    pub parallel: usize,
    /// Files larger than this go up in a multipart upload of parts this size (grown for
    /// files that would need more than S3's 10,000 parts; at least 5 MiB).
    pub upload_part_size: u64,
    pub upload_parallel: usize,
}

impl Default for Tuning {
    /// Downloads: chosen by measurement (tests/bench/s3-download). Uploads: 64 MiB parts,
    /// 4 at a time (parts stream from the file, so memory does not grow with either).
    fn default() -> Self {
        Tuning {
            part_size: 16 << 20,
            parallel: 8,
            upload_part_size: 64 << 20,
            upload_parallel: 4,
        }
    }
}

impl Tuning {
    /// The defaults, overridden by `DRCTL_S3_PART_MIB` and `DRCTL_S3_PARALLEL` (for the
    /// benchmark and for slow links), `DRCTL_S3_UPLOAD_PART_MIB` (5 to 5120) and
    /// `DRCTL_S3_UPLOAD_PARALLEL`.
    pub fn from_env() -> Self {
        let mut t = Tuning::default();
        let num = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&v| v > 0)
        };
        if let Some(m) = num("DRCTL_S3_PART_MIB") {
            t.part_size = m.clamp(1, 1024) << 20;
        }
        if let Some(p) = num("DRCTL_S3_PARALLEL") {
            t.parallel = p.clamp(1, 64) as usize;
        }
        if let Some(m) = num("DRCTL_S3_UPLOAD_PART_MIB") {
            t.upload_part_size = m.clamp(5, 5120) << 20;
        }
        if let Some(p) = num("DRCTL_S3_UPLOAD_PARALLEL") {
            t.upload_parallel = p.clamp(1, 64) as usize;
        }
        t
    }
}

pub(super) struct Job<'a> {
    pub s3: &'a S3,
    pub bucket: &'a str,
    pub key: &'a str,
    pub to: &'a Path,
    pub sha256: Option<&'a str>,
    pub tuning: Tuning,
}

/// The sidecar: which parts of which object version are on disk.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct State {
    version: u32,
    bucket: String,
    key: String,
    etag: String,
    size: u64,
    part_size: u64,
    done: Vec<u64>,
}

/// How the file is verified: the digest kind and the expected value.
#[derive(Clone, Debug)]
struct Check {
    kind: Kind,
    expected: String,
    label: String,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sha256Hex,
    Sha256B64,
    Crc32B64,
    Crc32cB64,
    Md5Hex,
    /// S3's multipart ETag: MD5 of the parts' MD5s, then `-N`.
    Md5Parts {
        part_size: u64,
        count: u64,
    },
}

enum Hasher {
    Sha256(Box<Sha256>),
    Md5(Md5),
    Crc(Crc32),
    Md5Parts {
        part_size: u64,
        count: u64,
        in_part: u64,
        cur: Md5,
        digests: Vec<u8>,
    },
}

impl Hasher {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Sha256Hex | Kind::Sha256B64 => Hasher::Sha256(Box::new(Sha256::new())),
            Kind::Crc32B64 => Hasher::Crc(Crc32::ieee()),
            Kind::Crc32cB64 => Hasher::Crc(Crc32::castagnoli()),
            Kind::Md5Hex => Hasher::Md5(Md5::new()),
            Kind::Md5Parts { part_size, count } => Hasher::Md5Parts {
                part_size,
                count,
                in_part: 0,
                cur: Md5::new(),
                digests: Vec::new(),
            },
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
            Hasher::Crc(h) => h.update(data),
            Hasher::Md5Parts {
                part_size,
                in_part,
                cur,
                digests,
                ..
            } => {
                while !data.is_empty() {
                    let n = ((*part_size - *in_part) as usize).min(data.len());
                    cur.update(&data[..n]);
                    *in_part += n as u64;
                    data = &data[n..];
                    if *in_part == *part_size {
                        digests.extend_from_slice(&std::mem::take(cur).finish());
                        *in_part = 0;
                    }
                }
            }
        }
    }

    /// The digest in the expected value's notation.
    fn finish(self, kind: Kind) -> String {
        match (self, kind) {
            (Hasher::Sha256(h), Kind::Sha256B64) => base64(&h.finalize()),
            (Hasher::Sha256(h), _) => hex::encode(h.finalize()),
            (Hasher::Md5(h), _) => hex::encode(h.finish()),
            (Hasher::Crc(h), _) => base64(&h.finish()),
            (
                Hasher::Md5Parts {
                    count,
                    in_part,
                    cur,
                    mut digests,
                    ..
                },
                _,
            ) => {
                if in_part > 0 {
                    digests.extend_from_slice(&cur.finish());
                }
                let mut m = Md5::new();
                m.update(&digests);
                let parts = digests.len() / 16;
                // A different part count is a mismatch too.
                let _ = count;
                format!("{}-{parts}", hex::encode(m.finish()))
            }
        }
    }
}

/// How much of each part is on disk, shared by the part workers (each writes its part
/// front to back) and the hashing thread, which follows the first incomplete part byte by
/// byte instead of waiting for whole parts: it starts with the first bytes of the
/// download and, at the end, has only the last bytes left to hash.
struct Front {
    /// Bytes of part `i` on disk, counted from the part's start.
    progress: Vec<AtomicU64>,
    part_size: u64,
    size: u64,
    aborted: AtomicBool,
}

impl Front {
    fn new(size: u64, part_size: u64, done: &[bool]) -> Front {
        let progress = done
            .iter()
            .enumerate()
            .map(|(i, &d)| AtomicU64::new(if d { Self::len(size, part_size, i) } else { 0 }))
            .collect();
        Front {
            progress,
            part_size,
            size,
            aborted: AtomicBool::new(false),
        }
    }

    fn len(size: u64, part_size: u64, i: usize) -> u64 {
        let start = i as u64 * part_size;
        (start + part_size).min(size) - start
    }

    /// Part `i` has `n` bytes on disk (after the write returned: the hashing thread may
    /// read them).
    fn advance(&self, i: usize, n: u64) {
        if let Some(p) = self.progress.get(i) {
            p.store(n, Ordering::Release);
        }
    }

    fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
    }

    /// Bytes complete from the file's start, looking from `pos` on.
    fn contiguous(&self, pos: u64) -> u64 {
        let mut i = (pos / self.part_size) as usize;
        while let Some(p) = self.progress.get(i) {
            let have = p.load(Ordering::Acquire);
            let len = Self::len(self.size, self.part_size, i);
            if have < len {
                return i as u64 * self.part_size + have;
            }
            i += 1;
        }
        self.size
    }

    /// Wait until more than `pos` bytes are complete; None once aborted. Polls every
    /// millisecond: the hash is the slower stage, so it rarely waits.
    fn wait_beyond(&self, pos: u64) -> Option<u64> {
        loop {
            if self.aborted.load(Ordering::Acquire) {
                return None;
            }
            let avail = self.contiguous(pos);
            if avail > pos {
                return Some(avail);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Stops the hashing thread when the download ends in any way, also when its future is
/// dropped (Ctrl-C, the step's timeout).
struct AbortOnDrop(Arc<Front>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn sidecar(to: &Path, ext: &str) -> PathBuf {
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(ext);
    to.with_file_name(name)
}

fn read_state(path: &Path) -> Option<State> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// The part sizes drctl downloads with (`DRCTL_S3_PART_SIZE_MB`: 1 to 1024 MiB).
const PART_SIZES: std::ops::RangeInclusive<u64> = (1 << 20)..=(1 << 30);

/// Whether a sidecar left on disk (by a crashed or interrupted download) describes this
/// object version, with a part size drctl writes. Anything else, a garbled file included,
/// is ignored and the download starts over: a part size of 1 byte would ask for a flag per
/// byte of a many-GB object, and a wrong one would take the wrong bytes as done.
fn resumable(s: &State, bucket: &str, key: &str, etag: &str, size: u64) -> bool {
    s.version == STATE_VERSION
        && s.bucket == bucket
        && s.key == key
        && s.etag == etag
        && s.size == size
        && PART_SIZES.contains(&s.part_size)
        && s.part_size.is_multiple_of(1 << 20)
}

/// The parts of a `size`-byte object, which of them `done` names, and their bytes.
fn parts_done(size: u64, part_size: u64, done: &[u64]) -> (u64, Vec<bool>, u64) {
    let part_size = part_size.max(1);
    let parts = size.div_ceil(part_size);
    let mut flags = vec![false; usize::try_from(parts).unwrap_or(0)];
    for &i in done {
        if let Some(d) = usize::try_from(i).ok().and_then(|i| flags.get_mut(i)) {
            *d = true;
        }
    }
    let have = flags.iter().filter(|&&d| d).count() as u64;
    (parts, flags, have.saturating_mul(part_size).min(size))
}

/// A download's sidecar (`.part.state`) as drctl reads it on resume, for the fuzz targets
/// (`fuzz/`): parsed, checked, and turned into the parts to fetch when it passes.
#[doc(hidden)]
pub fn fuzz_state(text: &str) {
    let Ok(st) = serde_json::from_str::<State>(text) else {
        return;
    };
    if resumable(&st, &st.bucket, &st.key, &st.etag, st.size) && st.size <= 64 << 30 {
        let _ = parts_done(st.size, st.part_size, &st.done);
    }
}

/// Written to a temporary file and renamed, so a crash leaves the old or the new list.
fn write_state(path: &Path, state: &State) -> Res<()> {
    let text = serde_json::to_vec(state).map_err(|e| AwsError::Io {
        what: "cannot encode the download state".into(),
        detail: e.to_string(),
    })?;
    crate::exec::journal::write_atomic(path, &text)
        .map_err(io_err(format!("cannot write `{}`", path.display())))
}

pub(super) async fn run(job: Job<'_>, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
    let url = format!("s3://{}/{}", job.bucket, job.key);
    let head = bounded(
        job.s3
            .client
            .head_object()
            .bucket(job.bucket)
            .key(job.key)
            .checksum_mode(ChecksumMode::Enabled)
            .send(),
    )
    .await
    .map_err(job.s3.object_err("s3:GetObject", job.bucket, job.key))?;
    let size = head.content_length().unwrap_or(0).max(0) as u64;
    let etag_raw = head.e_tag().unwrap_or_default().to_owned();
    let etag = etag_raw.trim_matches('"').to_owned();
    let modified = head.last_modified().map(rfc3339).unwrap_or_default();
    let check = choose_check(&job, &head, size, &etag).await?;

    // A directory as the target: keep the object's name, as `aws s3 cp` does.
    let to = if job.to.is_dir() {
        job.to.join(job.key.rsplit('/').next().unwrap_or(job.key))
    } else {
        job.to.to_path_buf()
    };
    let part_path = sidecar(&to, ".part");
    let state_path = sidecar(&to, ".part.state");

    if ctx.dry_run {
        let mut lines = vec![format!(
            "would download {url} ({}, modified {modified}, ETag {etag}) to `{}`, verified by {} before it is put in place",
            human_bytes(size),
            to.display(),
            check.label
        )];
        if let Some(st) =
            read_state(&state_path).filter(|s| resumable(s, job.bucket, job.key, &etag, size))
        {
            let (_, _, have) = parts_done(size, st.part_size, &st.done);
            lines.push(format!(
                "a partial download is on disk (`{}`): about {} of {}, it would resume",
                part_path.display(),
                human_bytes(have),
                human_bytes(size)
            ));
        }
        for l in &lines {
            ctx.output(l.clone());
        }
        return Ok(ActionResult {
            value: json!({
                "bucket": job.bucket, "key": job.key, "size": size, "etag": etag,
                "last_modified": modified, "path": to.display().to_string(),
                "verified_by": check.label,
            }),
            lines,
        });
    }

    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Made private: a download may be a snapshot holding every secret of a cluster.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(io_err(format!("cannot create `{}`", dir.display())))?;
    }
    let obj = Obj {
        url: &url,
        etag_raw: &etag_raw,
        etag: &etag,
        size,
        modified: &modified,
        to: &to,
        part_path: &part_path,
        state_path: &state_path,
    };
    // A mismatch after a resume may come from stale parts (a crash before the page cache
    // reached the disk): one fresh download settles it.
    match fetch(&job, ctx, &obj, &check, false).await {
        Err(Mismatch { resumed: true, .. }) => {
            ctx.output("the resumed download does not verify: downloading it again from scratch");
            fetch(&job, ctx, &obj, &check, true)
                .await
                .map_err(|m| m.error)
        }
        other => other.map_err(|m| m.error),
    }
}

struct Obj<'a> {
    url: &'a str,
    etag_raw: &'a str,
    etag: &'a str,
    size: u64,
    modified: &'a str,
    to: &'a Path,
    part_path: &'a Path,
    state_path: &'a Path,
}

struct Mismatch {
    error: AwsError,
    resumed: bool,
}

impl From<AwsError> for Mismatch {
    fn from(error: AwsError) -> Self {
        Mismatch {
            error,
            resumed: false,
        }
    }
}

/// Everything a part worker needs, owned (workers are spawned tasks).
struct Worker {
    client: aws_sdk_s3::Client,
    conn: Conn,
    bucket: String,
    key: String,
    etag_raw: String,
    file: Arc<std::fs::File>,
    part_path: PathBuf,
    fetched: Arc<AtomicU64>,
    gets: Arc<AtomicU64>,
    front: Arc<Front>,
}

async fn fetch(
    job: &Job<'_>,
    ctx: &ActionCtx<'_>,
    o: &Obj<'_>,
    check: &Check,
    fresh: bool,
) -> Result<ActionResult, Mismatch> {
    let started = Instant::now();
    let prior = if fresh {
        None
    } else {
        read_state(o.state_path).filter(|s| {
            resumable(s, job.bucket, job.key, o.etag, o.size)
                && std::fs::metadata(o.part_path).is_ok_and(|m| m.len() == o.size)
        })
    };
    let resumed = prior.is_some();
    let mut state = match prior {
        Some(s) => s,
        None => {
            // Never through a link planted at the `.part` path.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(o.part_path)
                .map_err(io_err(format!("cannot create `{}`", o.part_path.display())))?;
            f.set_len(o.size)
                .map_err(io_err(format!("cannot size `{}`", o.part_path.display())))?;
            State {
                version: STATE_VERSION,
                bucket: job.bucket.to_owned(),
                key: job.key.to_owned(),
                etag: o.etag.to_owned(),
                size: o.size,
                part_size: job.tuning.part_size,
                done: Vec::new(),
            }
        }
    };
    write_state(o.state_path, &state)?;
    let part_size = state.part_size;
    let (parts, mut done, on_disk) = parts_done(o.size, part_size, &state.done);
    let missing: VecDeque<u64> = (0..parts).filter(|&i| !done[i as usize]).collect();
    let to_fetch = missing.len();

    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(o.part_path)
        .map_err(io_err(format!("cannot open `{}`", o.part_path.display())))?;
    let file = Arc::new(file);

    let mut lines = Vec::new();
    let mut say = |l: String| {
        ctx.output(l.clone());
        lines.push(l);
    };
    say(format!(
        "downloading {} ({}, ETag {}) to `{}`: {parts} part(s) of {}, {} at a time",
        o.url,
        human_bytes(o.size),
        o.etag,
        o.to.display(),
        human_bytes(part_size),
        job.tuning.parallel.min(to_fetch.max(1))
    ));
    if resumed {
        say(format!(
            "resuming: {} of {parts} part(s) already on disk ({}), fetching the other {to_fetch}",
            parts - to_fetch as u64,
            human_bytes(on_disk)
        ));
    }

    // The hashing thread follows the contiguous front of the parts on disk.
    let front = Arc::new(Front::new(o.size, part_size, &done));
    let _guard = AbortOnDrop(front.clone());
    let hasher = {
        let file = file.clone();
        let front = front.clone();
        let kind = check.kind;
        let size = o.size;
        tokio::task::spawn_blocking(move || -> std::io::Result<Option<String>> {
            let mut h = Hasher::new(kind);
            let mut buf = vec![0u8; HASH_BUF];
            let mut pos = 0u64;
            while pos < size {
                let Some(avail) = front.wait_beyond(pos) else {
                    return Ok(None);
                };
                while pos < avail {
                    let n = ((avail - pos) as usize).min(buf.len());
                    file.read_exact_at(&mut buf[..n], pos)?;
                    h.update(&buf[..n]);
                    pos += n as u64;
                }
            }
            Ok(Some(h.finish(kind)))
        })
    };

    let fetched = Arc::new(AtomicU64::new(0));
    let gets = Arc::new(AtomicU64::new(0));
    let queue = Arc::new(Mutex::new(missing));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<u64, AwsError>>();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..job.tuning.parallel.min(to_fetch) {
        let w = Worker {
            client: job.s3.client.clone(),
            conn: job.s3.conn.clone(),
            bucket: job.bucket.to_owned(),
            key: job.key.to_owned(),
            etag_raw: o.etag_raw.to_owned(),
            file: file.clone(),
            part_path: o.part_path.to_path_buf(),
            fetched: fetched.clone(),
            gets: gets.clone(),
            front: front.clone(),
        };
        let queue = queue.clone();
        let tx = tx.clone();
        let size = o.size;
        workers.spawn(async move {
            loop {
                let next = match queue.lock() {
                    Ok(mut q) => q.pop_front(),
                    Err(p) => p.into_inner().pop_front(),
                };
                let Some(i) = next else { break };
                let start = i * part_size;
                let end = (start + part_size).min(size) - 1;
                let r = w.part(i as usize, start, end).await.map(|()| i);
                let failed = r.is_err();
                if tx.send(r).is_err() || failed {
                    break;
                }
            }
        });
    }
    drop(tx);

    let mut remaining = to_fetch;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while remaining > 0 {
        tokio::select! {
            m = rx.recv() => match m {
                Some(Ok(i)) => {
                    done[i as usize] = true;
                    state.done.push(i);
                    remaining -= 1;
                    write_state(o.state_path, &state)?;
                }
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(AwsError::Io {
                        what: format!("downloading {}", o.url),
                        detail: "the part downloads stopped unexpectedly".into(),
                    }.into());
                }
            },
            _ = ticker.tick() => {
                let got = fetched.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                ctx.progress(format!(
                    "{} / {}, {}/s",
                    human_bytes(on_disk + got),
                    human_bytes(o.size),
                    human_bytes((got as f64 / secs) as u64)
                ));
            }
        }
    }
    workers.shutdown().await;
    let download_secs = started.elapsed().as_secs_f64();

    ctx.progress(format!(
        "verifying {} by {}",
        human_bytes(o.size),
        check.label
    ));
    let digest = match hasher.await {
        Ok(Ok(Some(d))) => d,
        Ok(Ok(None)) => return Err(AwsError::Cancelled.into()),
        Ok(Err(e)) => {
            return Err(AwsError::Io {
                what: format!("cannot read `{}` back to verify it", o.part_path.display()),
                detail: e.to_string(),
            }
            .into());
        }
        Err(e) => {
            return Err(AwsError::Io {
                what: "verifying the download".into(),
                detail: e.to_string(),
            }
            .into());
        }
    };
    if digest != check.expected {
        // Nothing unverified stays behind for a later step or a resume to pick up.
        let _ = std::fs::remove_file(o.part_path);
        let _ = std::fs::remove_file(o.state_path);
        let hint = match check.kind {
            Kind::Md5Parts { .. } => {
                " (the part size may have been guessed wrong: give the step's `sha256` to verify by content)"
            }
            _ => " (a corrupt or replaced object: check the object, or pick another one)",
        };
        return Err(Mismatch {
            error: AwsError::Verify(format!(
                "{} does not match {}: expected {}, got {}; `{}` was not written{hint}",
                o.url,
                check.label,
                check.expected,
                digest,
                o.to.display()
            )),
            resumed,
        });
    }

    // Durable before it is visible under its name.
    let f = file.clone();
    tokio::task::spawn_blocking(move || f.sync_all())
        .await
        .map_err(|e| AwsError::Io {
            what: "syncing the download".into(),
            detail: e.to_string(),
        })?
        .map_err(io_err(format!("cannot sync `{}`", o.part_path.display())))?;
    std::fs::rename(o.part_path, o.to).map_err(io_err(format!(
        "cannot move `{}` to `{}`",
        o.part_path.display(),
        o.to.display()
    )))?;
    let _ = std::fs::remove_file(o.state_path);
    if let Some(dir) = o.to.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }

    let got = fetched.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let rate = got as f64 / download_secs.max(0.001);
    say(format!(
        "verified: {} matches ({})",
        check.label, check.expected
    ));
    say(format!(
        "saved `{}` ({} fetched in {secs:.1} s, {}/s)",
        o.to.display(),
        human_bytes(got),
        human_bytes(rate as u64)
    ));
    Ok(ActionResult {
        value: json!({
            "path": o.to.display().to_string(),
            "bucket": job.bucket,
            "key": job.key,
            "size": o.size,
            "etag": o.etag,
            "last_modified": o.modified,
            "verified_by": check.label,
            "digest": digest,
            "resumed": resumed,
            "resumed_bytes": on_disk,
            "fetched_bytes": got,
            "parts": parts,
            "parts_fetched": to_fetch,
            "part_size": part_size,
            "requests": gets.load(Ordering::Relaxed),
            "seconds": (secs * 1000.0).round() / 1000.0,
            "mib_per_s": ((rate / 1048576.0) * 10.0).round() / 10.0,
        }),
        lines,
    })
}

impl Worker {
    /// Fetch bytes `start..=end` into the file at the same offsets, retrying transient
    /// failures from where the last attempt stopped.
    async fn part(&self, index: usize, start: u64, end: u64) -> Res<()> {
        let mut pos = start;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= PART_ATTEMPTS;
            let retry = |e: String, pos: u64| -> Res<()> {
                if last {
                    Err(AwsError::Io {
                        what: format!(
                            "downloading bytes {pos}-{end} of s3://{}/{} (after {PART_ATTEMPTS} attempts)",
                            self.bucket, self.key
                        ),
                        detail: e,
                    })
                } else {
                    Ok(())
                }
            };
            self.gets.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .range(format!("bytes={pos}-{end}"))
                .if_match(&self.etag_raw)
                .send()
                .await;
            let out = match sent {
                Ok(o) => o,
                Err(e) => {
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    if status == Some(412) {
                        return Err(AwsError::Verify(format!(
                            "s3://{}/{} changed during the download (its ETag is no longer {}); run the step again to download the new version",
                            self.bucket, self.key, self.etag_raw
                        )));
                    }
                    let transient = matches!(
                        e,
                        SdkError::DispatchFailure(_)
                            | SdkError::TimeoutError(_)
                            | SdkError::ResponseError(_)
                    ) || status.is_some_and(|s| s >= 500 || s == 429);
                    if !transient {
                        return Err(explain(
                            e,
                            "s3:GetObject",
                            Target::Object(&self.bucket, &self.key),
                            &self.conn,
                        ));
                    }
                    retry(aws_sdk_s3::error::DisplayErrorContext(&e).to_string(), pos)?;
                    backoff(attempt).await;
                    continue;
                }
            };
            // A server that ignores Range would send the whole object at this offset.
            let want = end + 1 - pos;
            if out.content_length().is_some_and(|n| n as u64 != want) {
                return Err(AwsError::Io {
                    what: format!("downloading s3://{}/{}", self.bucket, self.key),
                    detail: format!(
                        "asked for {want} bytes at {pos}, the server answers {} bytes: it does not support ranged GETs",
                        out.content_length().unwrap_or(0)
                    ),
                });
            }
            let mut body = out.body;
            let mut broke = None;
            loop {
                match tokio::time::timeout(IDLE, body.next()).await {
                    Err(_) => {
                        broke = Some(format!("no data for {} s", IDLE.as_secs()));
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        broke = Some(e.to_string());
                        break;
                    }
                    Ok(Some(Ok(bytes))) => {
                        if pos + bytes.len() as u64 > end + 1 {
                            return Err(AwsError::Io {
                                what: format!("downloading s3://{}/{}", self.bucket, self.key),
                                detail: "the server sent more bytes than asked for".into(),
                            });
                        }
                        // Page-cache writes take microseconds: done inline, not on a
                        // blocking thread, which would cost more than the write.
                        self.file.write_all_at(&bytes, pos).map_err(io_err(format!(
                            "cannot write `{}`",
                            self.part_path.display()
                        )))?;
                        pos += bytes.len() as u64;
                        self.front.advance(index, pos - start);
                        self.fetched
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                }
            }
            if pos == end + 1 {
                return Ok(());
            }
            retry(
                broke.unwrap_or_else(|| "the connection closed early".into()),
                pos,
            )?;
            backoff(attempt).await;
        }
    }
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
}

/// The strongest check the object allows: the step's sha256, a full-object checksum, the
/// ETag's MD5 (single part), or the multipart ETag with the part size from S3.
async fn choose_check(job: &Job<'_>, head: &HeadObjectOutput, size: u64, etag: &str) -> Res<Check> {
    if let Some(s) = job.sha256 {
        return Ok(Check {
            kind: Kind::Sha256Hex,
            expected: s.to_owned(),
            label: "the step's sha256".into(),
        });
    }
    let composite = head.checksum_type() == Some(&ChecksumType::Composite);
    let full = |v: Option<&str>| {
        v.filter(|c| !composite && !c.contains('-'))
            .map(str::to_owned)
    };
    if let Some(c) = full(head.checksum_sha256()) {
        return Ok(Check {
            kind: Kind::Sha256B64,
            expected: c,
            label: "the object's SHA-256 checksum".into(),
        });
    }
    if let Some(c) = full(head.checksum_crc32()) {
        return Ok(Check {
            kind: Kind::Crc32B64,
            expected: c,
            label: "the object's CRC32 checksum".into(),
        });
    }
    if let Some(c) = full(head.checksum_crc32_c()) {
        return Ok(Check {
            kind: Kind::Crc32cB64,
            expected: c,
            label: "the object's CRC32C checksum".into(),
        });
    }
    let encrypted = matches!(
        head.server_side_encryption(),
        Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
    ) || head.sse_customer_algorithm().is_some();
    let not_verifiable = |why: &str| {
        AwsError::Verify(format!(
            "cannot verify s3://{}/{}: {why}; give the step's `sha256` (from the backup's records) so the file is checked before any step uses it",
            job.bucket, job.key
        ))
    };
    if encrypted {
        return Err(not_verifiable(
            "it has no checksum drctl can check, and the ETag of an SSE-KMS or SSE-C object is not its MD5",
        ));
    }
    let is_hex = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex(etag) {
        return Ok(Check {
            kind: Kind::Md5Hex,
            expected: etag.to_ascii_lowercase(),
            label: "the ETag (MD5)".into(),
        });
    }
    let Some((hash, n)) = etag.split_once('-') else {
        return Err(not_verifiable(&format!("its ETag `{etag}` is not an MD5")));
    };
    let Some(count) = n.parse::<u64>().ok().filter(|&c| c > 0 && is_hex(hash)) else {
        return Err(not_verifiable(&format!("its ETag `{etag}` is not an MD5")));
    };
    // The first part's size is the upload's part size (every part but the last has it).
    let first = bounded(
        job.s3
            .client
            .head_object()
            .bucket(job.bucket)
            .key(job.key)
            .part_number(1)
            .send(),
    )
    .await
    .ok()
    .and_then(|h| h.content_length())
    .map(|n| n.max(0) as u64);
    let fits = |p: u64| p > 0 && (count - 1) * p < size && size <= count * p;
    // Without S3's answer: the part sizes of the aws CLI and the SDKs' transfer managers.
    let guesses = [8u64 << 20, 16 << 20, 5 << 20, 15 << 20, 64 << 20, 100 << 20];
    let (part_size, guessed) = match first.filter(|&p| fits(p)) {
        Some(p) => (p, false),
        None => match guesses.into_iter().find(|&p| fits(p)) {
            Some(p) => (p, true),
            None => {
                return Err(not_verifiable(&format!(
                    "it was uploaded in {count} parts of a size drctl cannot find out"
                )));
            }
        },
    };
    Ok(Check {
        kind: Kind::Md5Parts { part_size, count },
        expected: format!("{}-{count}", hash.to_ascii_lowercase()),
        label: format!(
            "the multipart ETag (MD5 of {count} parts of {}{})",
            human_bytes(part_size),
            if guessed { ", part size guessed" } else { "" }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_is_the_md5_of_the_part_md5s() {
        let data: Vec<u8> = (0..25u32).map(|i| i as u8).collect();
        let kind = Kind::Md5Parts {
            part_size: 10,
            count: 3,
        };
        let mut h = Hasher::new(kind);
        for c in data.chunks(7) {
            h.update(c);
        }
        let mut cat = Vec::new();
        for p in data.chunks(10) {
            let mut m = Md5::new();
            m.update(p);
            cat.extend_from_slice(&m.finish());
        }
        let mut m = Md5::new();
        m.update(&cat);
        assert_eq!(h.finish(kind), format!("{}-3", hex::encode(m.finish())));
    }

    #[test]
    fn sidecars_sit_next_to_the_target() {
        assert_eq!(
            sidecar(Path::new("/tmp/x/snap.db"), ".part"),
            PathBuf::from("/tmp/x/snap.db.part")
        );
    }

    /// A sidecar left by a crash and then garbled: a part size drctl never writes (1 byte
    /// would ask for a flag per byte of the object), another object, or a `done` list
    /// longer than the object, is never resumed from, and counting its bytes cannot
    /// overflow (it did: `done.len() * part_size` in the dry run).
    #[test]
    fn a_garbled_download_sidecar_is_not_resumed_from() {
        let st = |part_size: u64, done: Vec<u64>| State {
            version: STATE_VERSION,
            bucket: "b".into(),
            key: "k".into(),
            etag: "e".into(),
            size: 100 << 20,
            part_size,
            done,
        };
        assert!(resumable(&st(16 << 20, vec![0]), "b", "k", "e", 100 << 20));
        assert!(!resumable(&st(1, vec![0]), "b", "k", "e", 100 << 20));
        assert!(!resumable(&st(u64::MAX, vec![0]), "b", "k", "e", 100 << 20));
        assert!(!resumable(
            &st((16 << 20) + 1, vec![0]),
            "b",
            "k",
            "e",
            100 << 20
        ));
        assert!(!resumable(
            &st(16 << 20, vec![0]),
            "b",
            "other",
            "e",
            100 << 20
        ));
        let (parts, flags, have) = parts_done(100 << 20, 16 << 20, &[0, 0, 6, 7, u64::MAX]);
        assert_eq!((parts, flags.len(), have), (7, 7, 32 << 20));
        assert_eq!(parts_done(10, u64::MAX, &[0; 4]).2, 10);
        let json = r#"{"version":1,"bucket":"b","key":"k","etag":"e","size":5,"part_size":18446744073709551615,"done":[0,0,0]}"#;
        fuzz_state(json);
    }
}
