//! The aws backend against a real moto server (tests/integration/lab.rs), one per test:
//! KMS describe / expect_state / cancel-deletion / enable / verify and its errors; S3 list,
//! newest, upload; a 200 MiB download interrupted half-way and resumed with only the
//! missing parts (counted in moto's request log), the ETag and multipart ETag checks, a
//! sha256 mismatch that leaves nothing in place; multipart uploads (200 MiB in 8 MiB
//! parts, downloaded back and compared; one cancelled half-way, which leaves no object and
//! no stored parts); and the drctl binary end to end. Every
//! test checks moto's own state or the bytes on disk, not only drctl's answer.

use std::path::Path;
use std::time::{Duration, Instant};

use drctl::backends::aws::{AwsBackend, Settings, Tuning};
use drctl::exec::backend::ActionError;
use drctl::runbook::action::{
    KeyState, KmsCancelDeletion, KmsDescribe, KmsEnable, KmsVerify, S3Download, S3List, S3Newest,
    S3Upload,
};
use drctl::runbook::{Action, Text};
use drctl::secret::Secret;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::lab::Moto;
use crate::support::cli::{drctl_cmd, journal_path, only_run, stderr, stdout};
use crate::support::harness::{Alone, CtrlC, Harness, Opts, Run};
use crate::support::operator::FakeOperator;
use drctl::backends::Backends;

const BUCKET: &str = "velero-offsite-homelab";

// ---------------------------------------------------------------------------------------
// One runtime and one backend per test, actions run in-process
// ---------------------------------------------------------------------------------------

struct Lab {
    moto: Moto,
    harness: Harness,
    backend: Backends,
}

impl Lab {
    fn start() -> Lab {
        Self::start_with(Tuning::default())
    }

    fn start_with(tuning: Tuning) -> Lab {
        let harness = Harness::new();
        let moto = Moto::start();
        let backend = AwsBackend::with_settings(Settings {
            endpoint_url: Some(moto.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some(Secret::new("testing".into())),
            tuning,
        })
        .alone();
        Lab {
            moto,
            harness,
            backend,
        }
    }

    fn run(&self, action: &Action) -> Run {
        self.run_opts(action, false, CtrlC::Never)
    }

    fn rehearse(&self, action: &Action) -> Run {
        self.run_opts(action, true, CtrlC::Never)
    }

    /// Runs the action (bounded at 60 s), with the operator's Ctrl-C.
    fn run_opts(&self, action: &Action, dry_run: bool, ctrl_c: CtrlC) -> Run {
        self.harness.perform(
            &self.backend,
            action,
            &FakeOperator::unattended(),
            Opts {
                dry_run,
                timeout: Some(Duration::from_secs(60)),
                ctrl_c,
                ..Default::default()
            },
        )
    }

    /// GET requests moto answered for `s3://bucket/key`, from its request log.
    fn gets_of(&self, key: &str) -> usize {
        let log = std::fs::read_to_string(self.moto.dir().join("moto.log")).unwrap();
        let needle = format!("\"GET /{BUCKET}/{key}?x-id=GetObject ");
        log.lines().filter(|l| l.contains(&needle)).count()
    }
}

fn t(s: &str) -> Text {
    Text::new(s)
}

fn describe(key: &str, expect: Option<KeyState>) -> Action {
    Action::KmsDescribe(KmsDescribe {
        key_id: t(key),
        region: None,
        expect_state: expect,
    })
}

fn download(key: &str, to: &Path, sha256: Option<&str>) -> Action {
    Action::S3Download(S3Download {
        bucket: t(BUCKET),
        key: t(key),
        to: t(&to.display().to_string()),
        sha256: sha256.map(t),
        endpoint: None,
        region: None,
    })
}

/// Deterministic incompressible bytes (xorshift), fast enough for 200 MiB in a debug build.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn file_sha256(p: &Path) -> String {
    sha256_hex(&std::fs::read(p).unwrap())
}

// ---------------------------------------------------------------------------------------
// KMS
// ---------------------------------------------------------------------------------------

#[test]
fn kms_describe_expect_pending_deletion_cancel_enable_and_verify() {
    let lab = Lab::start();
    let key = lab.moto.create_kms_key("vault unseal");
    lab.moto.create_alias("alias/vault-unseal", &key);

    // Describe by alias: the fields runbooks capture.
    let r = lab.run(&describe("alias/vault-unseal", Some(KeyState::Enabled)));
    let v = r.value();
    assert_eq!(v["state"], "Enabled");
    assert_eq!(v["key_id"], key.as_str());
    assert!(
        v["arn"].as_str().unwrap().ends_with(&format!("key/{key}")),
        "{v}"
    );
    assert_eq!(v["key_manager"], "CUSTOMER");
    assert_eq!(v["deletion_date"], Value::Null);

    // A working key round-trips.
    let verify = Action::KmsVerify(KmsVerify {
        key_id: t(&key),
        region: None,
    });
    let r = lab.run(&verify);
    assert_eq!(r.value()["ok"], true);
    assert!(r.lines().contains("round-trip"), "{}", r.lines());

    // Scheduled for deletion: the state, the date, and expect_state's message.
    lab.moto.schedule_key_deletion(&key, 7);
    let r = lab.run(&describe(&key, None));
    let v = r.value();
    assert_eq!(v["state"], "PendingDeletion");
    let date = v["deletion_date"].as_str().expect("deletion date");
    let when = chrono::DateTime::parse_from_rfc3339(date).unwrap();
    let days = (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
    assert!((6 * 24..=7 * 24).contains(&days), "{date}");
    let e = lab.run(&describe(&key, Some(KeyState::Enabled))).err();
    assert!(
        e.starts_with(&format!(
            "KMS key `{key}` is PendingDeletion, deletion scheduled for {date}, expected Enabled"
        )),
        "{e}"
    );
    assert!(e.contains("vault-kms-key-deletion"), "{e}");

    // A rehearsal reads and reports, and changes nothing.
    let cancel = |enable| {
        Action::KmsCancelDeletion(KmsCancelDeletion {
            key_id: t(&key),
            region: None,
            enable,
        })
    };
    let r = lab.rehearse(&cancel(true));
    let lines = r.lines();
    assert!(
        lines.contains("would cancel the deletion scheduled for"),
        "{lines}"
    );
    assert!(lines.contains("would enable the key"), "{lines}");
    assert_eq!(lab.moto.describe_key(&key)["KeyState"], "PendingDeletion");

    // CancelKeyDeletion alone leaves the key Disabled...
    let r = lab.run(&cancel(false));
    assert_eq!(r.value()["state"], "Disabled");
    assert_eq!(r.value()["cancelled"], true);
    assert_eq!(lab.moto.describe_key(&key)["KeyState"], "Disabled");
    // ... kms.enable brings it back (rehearsed first).
    let enable = Action::KmsEnable(KmsEnable {
        key_id: t(&key),
        region: None,
    });
    assert!(
        lab.rehearse(&enable)
            .lines()
            .contains("would enable the key (now Disabled)")
    );
    assert_eq!(lab.moto.describe_key(&key)["KeyState"], "Disabled");
    let r = lab.run(&enable);
    assert_eq!(r.value()["state"], "Enabled");
    assert_eq!(lab.moto.describe_key(&key)["KeyState"], "Enabled");

    // The default cancel-deletion enables too, in one step; run twice it is a no-op.
    lab.moto.schedule_key_deletion(&key, 30);
    let r = lab.run(&cancel(true));
    assert_eq!(r.value()["state"], "Enabled");
    assert_eq!(r.value()["previous_state"], "PendingDeletion");
    assert_eq!(lab.moto.describe_key(&key)["KeyState"], "Enabled");
    let r = lab.run(&cancel(true));
    assert_eq!(r.value()["cancelled"], false);
    assert!(
        r.lines().contains("no deletion was scheduled"),
        "{}",
        r.lines()
    );

    // kms.enable refuses a key pending deletion, saying what to do.
    lab.moto.schedule_key_deletion(&key, 7);
    let e = lab.run(&enable).err();
    assert!(
        e.contains(&format!(
            "KMS key `{key}` cannot be enabled in its current state"
        )) && e.contains("kms.cancel-deletion"),
        "{e}"
    );

    // An unknown key: named, with the region and the (masked) identity.
    let e = lab
        .run(&describe("1234abcd-12ab-34cd-56ef-1234567890ab", None))
        .err();
    assert_eq!(
        e,
        "KMS key `1234abcd-12ab-34cd-56ef-1234567890ab` not found in region us-east-1 (access key ****ting (given to drctl)): a mistyped id or alias, the wrong region or account, or a key already deleted (then contact AWS support)"
    );
    assert!(!e.contains("testing"), "{e}");
}

// ---------------------------------------------------------------------------------------
// S3 list, newest, upload, errors
// ---------------------------------------------------------------------------------------

#[test]
fn s3_list_newest_upload_and_errors() {
    let lab = Lab::start();
    lab.moto.create_bucket(BUCKET);
    // Newest by time, not by name: the later upload has the smaller name.
    lab.moto.put_object(
        BUCKET,
        "etcd-snapshots/snapshot-20250109-000000.db",
        b"older",
    );
    lab.moto.put_object(
        BUCKET,
        "etcd-snapshots/pki-20250109-000000.tar.gz",
        b"pki-old",
    );
    std::thread::sleep(Duration::from_millis(1100));
    lab.moto.put_object(
        BUCKET,
        "etcd-snapshots/snapshot-20250101-000000.db",
        b"newest!",
    );
    lab.moto
        .put_object(BUCKET, "etcd-snapshots/pki-20250101-000000.tar.gz", b"pki");
    lab.moto
        .put_object(BUCKET, "other/snapshot-x.db", b"elsewhere");

    let list = Action::S3List(S3List {
        bucket: t(BUCKET),
        prefix: Some(t("etcd-snapshots/")),
        endpoint: None,
        region: None,
    });
    let r = lab.run(&list);
    let v = r.value();
    assert_eq!(v["count"], 4);
    let objects = v["objects"].as_array().unwrap();
    let keys: Vec<&str> = objects.iter().map(|o| o["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "etcd-snapshots/pki-20250101-000000.tar.gz",
            "etcd-snapshots/pki-20250109-000000.tar.gz",
            "etcd-snapshots/snapshot-20250101-000000.db",
            "etcd-snapshots/snapshot-20250109-000000.db",
        ]
    );
    assert_eq!(objects[2]["size"], 7);
    assert!(objects[2]["last_modified"].as_str().unwrap().ends_with('Z'));
    assert!(
        r.lines()
            .contains("4 object(s) under s3://velero-offsite-homelab/etcd-snapshots/"),
        "{}",
        r.lines()
    );

    let newest = |pattern: &str| {
        Action::S3Newest(S3Newest {
            bucket: t(BUCKET),
            prefix: Some(t("etcd-snapshots/")),
            pattern: t(pattern),
            endpoint: None,
            region: None,
        })
    };
    let r = lab.run(&newest("snapshot-*.db"));
    let v = r.value();
    assert_eq!(v["key"], "etcd-snapshots/snapshot-20250101-000000.db");
    assert_eq!(v["size"], 7);
    assert_eq!(v["name"], "snapshot-20250101-000000.db");
    let t_new = v["last_modified"].as_str().unwrap().to_owned();
    let t_old = objects[3]["last_modified"].as_str().unwrap();
    assert!(t_new.as_str() > t_old, "{t_new} vs {t_old}");
    let e = lab.run(&newest("snapshot-*.gz")).err();
    assert_eq!(
        e,
        "no object under s3://velero-offsite-homelab/etcd-snapshots/ matches `snapshot-*.gz` (4 object(s) there); check the prefix and the pattern (s3.list shows the names)"
    );

    // Upload: rehearsed (nothing written), then for real, checked in moto.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("snap.db");
    let data = pseudo_random(3 << 20, 7);
    std::fs::write(&src, &data).unwrap();
    let upload = Action::S3Upload(S3Upload {
        bucket: t(BUCKET),
        key: t("uploads/snap.db"),
        from: t(&src.display().to_string()),
        endpoint: None,
        region: None,
    });
    let r = lab.rehearse(&upload);
    assert!(
        r.lines().contains("would upload `")
            && r.lines()
                .contains("(3.0 MiB) to s3://velero-offsite-homelab/uploads/snap.db: a new object"),
        "{}",
        r.lines()
    );
    assert_eq!(lab.moto.get_object(BUCKET, "uploads/snap.db"), None);
    let r = lab.run(&upload);
    assert_eq!(r.value()["sha256"], sha256_hex(&data).as_str());
    assert_eq!(r.value()["replaced"], false);
    assert_eq!(
        lab.moto.get_object(BUCKET, "uploads/snap.db").unwrap(),
        data
    );
    assert!(
        lab.rehearse(&upload)
            .lines()
            .contains("replacing the existing object (3.0 MiB)")
    );

    // Errors name the bucket or object and what to check.
    let e = lab
        .run(&Action::S3List(S3List {
            bucket: t("no-such-bucket"),
            prefix: None,
            endpoint: None,
            region: None,
        }))
        .err();
    assert_eq!(
        e,
        "bucket `no-such-bucket` does not exist (region us-east-1, access key ****ting (given to drctl)); check the bucket name and the region"
    );
    let dest = dir.path().join("missing.db");
    let e = lab
        .run(&download("etcd-snapshots/nope.db", &dest, None))
        .err();
    assert_eq!(
        e,
        "no object `etcd-snapshots/nope.db` in bucket `velero-offsite-homelab`; check the key (list the prefix: s3.list, or `aws s3 ls s3://velero-offsite-homelab/`)"
    );
    assert!(!dest.exists());
}

// ---------------------------------------------------------------------------------------
// Download: interruption and resume, verification
// ---------------------------------------------------------------------------------------

#[test]
fn download_of_200_mib_interrupted_half_way_resumes_with_only_the_missing_parts() {
    const SIZE: usize = 200 << 20;
    const PART: u64 = 16 << 20;
    let lab = Lab::start_with(Tuning {
        part_size: PART,
        parallel: 4,
        ..Tuning::default()
    });
    lab.moto.create_bucket(BUCKET);
    let data = pseudo_random(SIZE, 42);
    let want = sha256_hex(&data);
    let key = "etcd-snapshots/snapshot-20250101-000000.db";
    lab.moto.put_object(BUCKET, key, &data);
    drop(data);

    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("restore").join("snap.db");
    let part = dir.path().join("restore").join("snap.db.part");
    let state = dir.path().join("restore").join("snap.db.part.state");
    let done_parts = |p: &Path| -> usize {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v["done"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    let parts = SIZE.div_ceil(PART as usize);
    assert_eq!(parts, 13);

    // The rehearsal only HEADs the object.
    let r = lab.rehearse(&download(key, &to, None));
    assert!(
        r.lines().contains("would download s3://velero-offsite-homelab/etcd-snapshots/snapshot-20250101-000000.db (200.0 MiB"),
        "{}",
        r.lines()
    );
    assert!(
        r.lines().contains("verified by the ETag (MD5)"),
        "{}",
        r.lines()
    );
    assert!(!part.exists() && !to.exists());
    assert_eq!(lab.gets_of(key), 0);

    // Ctrl-C once 5 parts are on disk.
    let t0 = Instant::now();
    let r = lab.run_opts(
        &download(key, &to, None),
        false,
        CtrlC::When(&|| done_parts(&state) >= 5),
    );
    assert!(
        matches!(r.result, Err(ActionError::Cancelled)),
        "{:?}",
        r.result.as_ref().map(|r| &r.value)
    );
    let first_secs = t0.elapsed().as_secs_f64();
    assert!(part.exists() && state.exists(), "partial download kept");
    assert!(!to.exists(), "nothing unverified in place");
    let done = done_parts(&state);
    assert!((5..parts).contains(&done), "{done} parts done");
    // moto logs a request once it answers: let the aborted in-flight GETs land first.
    let mut gets_before = lab.gets_of(key);
    let mut stable_since = Instant::now();
    while stable_since.elapsed() < Duration::from_millis(700) {
        std::thread::sleep(Duration::from_millis(50));
        let n = lab.gets_of(key);
        if n != gets_before {
            gets_before = n;
            stable_since = Instant::now();
        }
    }
    assert!(
        gets_before <= done + 4,
        "{gets_before} GETs for {done} parts, 4 at a time"
    );
    assert!(events_show_progress(&r.events), "{}", r.events);

    // The resume fetches exactly the missing parts, one GET each, and verifies.
    let r = lab.run(&download(key, &to, None));
    let v = r.value().clone();
    let missing = parts - done;
    assert_eq!(v["resumed"], true);
    assert_eq!(v["parts"], parts);
    assert_eq!(v["parts_fetched"], missing);
    assert_eq!(v["resumed_bytes"], done as u64 * PART);
    let last = SIZE as u64 - (parts as u64 - 1) * PART;
    // The missing bytes: whole parts, the short last one if it was among them.
    let fetched = v["fetched_bytes"].as_u64().unwrap();
    assert!(
        fetched == missing as u64 * PART || fetched == (missing as u64 - 1) * PART + last,
        "{fetched}"
    );
    assert_eq!(v["requests"], missing);
    assert_eq!(
        lab.gets_of(key) - gets_before,
        missing,
        "one GET per missing part"
    );
    assert_eq!(v["verified_by"], "the ETag (MD5)");
    assert!(r.lines().contains(&format!(
        "resuming: {done} of {parts} part(s) already on disk"
    )));
    assert_eq!(file_sha256(&to), want);
    assert!(!part.exists() && !state.exists(), "sidecars removed");
    eprintln!(
        "interrupted after {first_secs:.1} s with {done}/{parts} parts; resume fetched {missing} parts in {} s",
        v["seconds"]
    );
}

fn events_show_progress(events: &str) -> bool {
    events
        .lines()
        .any(|l| l.contains("step_progress") && l.contains(" MiB / 200.0 MiB, "))
        || events.contains("MiB / 200.0 MiB")
}

#[test]
fn verification_refuses_a_wrong_sha256_and_checks_multipart_etags() {
    let lab = Lab::start_with(Tuning {
        part_size: 4 << 20,
        parallel: 3,
        ..Tuning::default()
    });
    lab.moto.create_bucket(BUCKET);
    let data = pseudo_random(11 << 20, 3);
    let key = "etcd-snapshots/snapshot-20250102-000000.db";
    lab.moto.put_object(BUCKET, key, &data);
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("snap.db");

    // The object is not what the runbook says it is: nothing is put in place.
    let wrong = sha256_hex(b"a different snapshot");
    let e = lab.run(&download(key, &to, Some(&wrong))).err();
    assert!(
        e.starts_with(&format!(
            "s3://{BUCKET}/{key} does not match the step's sha256: expected {wrong}, got {}; `{}` was not written",
            sha256_hex(&data),
            to.display()
        )),
        "{e}"
    );
    assert!(!to.exists());
    assert!(!dir.path().join("snap.db.part").exists());
    assert!(!dir.path().join("snap.db.part.state").exists());

    // A corrupt partial download from an earlier attempt is caught and replaced: the
    // resume does not verify, so it starts again from scratch.
    let r = lab.run_opts(
        &download(key, &to, None),
        false,
        CtrlC::When(&|| {
            std::fs::read_to_string(dir.path().join("snap.db.part.state"))
                .is_ok_and(|s| s.contains("\"done\":[") && !s.contains("\"done\":[]"))
        }),
    );
    assert!(matches!(r.result, Err(ActionError::Cancelled)));
    let part = dir.path().join("snap.db.part");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("snap.db.part.state")).unwrap(),
    )
    .unwrap();
    let first = state["done"][0].as_u64().unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&part).unwrap();
        f.write_all_at(b"bit rot", first * (4 << 20) + 100).unwrap();
    }
    let r = lab.run(&download(key, &to, None));
    let v = r.value();
    assert_eq!(v["resumed"], false, "the second, fresh attempt");
    assert!(
        r.events
            .contains("the resumed download does not verify: downloading it again from scratch"),
        "{}",
        r.events
    );
    assert_eq!(std::fs::read(&to).unwrap(), data);

    // The right sha256 passes.
    std::fs::remove_file(&to).unwrap();
    let r = lab.run(&download(key, &to, Some(&sha256_hex(&data))));
    assert_eq!(r.value()["verified_by"], "the step's sha256");
    assert_eq!(r.value()["digest"], sha256_hex(&data).as_str());
    assert_eq!(std::fs::read(&to).unwrap(), data);

    // A multipart upload (5 MiB parts, not the download's 4 MiB): MD5 of the part MD5s.
    let mp_key = "etcd-snapshots/multipart.db";
    let etag = multipart_upload(&lab, mp_key, &data, 5 << 20);
    assert!(etag.ends_with("-3\""), "{etag}");
    let to2 = dir.path().join("multipart.db");
    let r = lab.run(&download(mp_key, &to2, None));
    let v = r.value();
    assert!(
        v["verified_by"]
            .as_str()
            .unwrap()
            .starts_with("the multipart ETag (MD5 of 3 parts of 5.0 MiB"),
        "{v}"
    );
    assert_eq!(format!("\"{}\"", v["digest"].as_str().unwrap()), etag);
    assert_eq!(std::fs::read(&to2).unwrap(), data);
}

/// Uploads `data` in parts with the SDK (moto computes S3's multipart ETag); returns it.
fn multipart_upload(lab: &Lab, key: &str, data: &[u8], part: usize) -> String {
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    lab.harness.block_on(async {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(lab.moto.endpoint())
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .build();
        let c = aws_sdk_s3::Client::from_conf(conf);
        let up = c
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap();
        let id = up.upload_id().unwrap();
        let mut done = Vec::new();
        for (i, chunk) in data.chunks(part).enumerate() {
            let n = i as i32 + 1;
            let r = c
                .upload_part()
                .bucket(BUCKET)
                .key(key)
                .upload_id(id)
                .part_number(n)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .unwrap();
            done.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(r.e_tag().unwrap())
                    .build(),
            );
        }
        // moto answers with a root element the SDK refuses to parse (the upload completes
        // all the same): the ETag comes from a HEAD afterwards.
        let _ = c
            .complete_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await;
        let head = c
            .head_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap();
        head.e_tag().unwrap().to_owned()
    })
}

// ---------------------------------------------------------------------------------------
// Multipart upload
// ---------------------------------------------------------------------------------------

const UPLOAD_PART: u64 = 8 << 20;

fn upload(key: &str, from: &Path) -> Action {
    Action::S3Upload(S3Upload {
        bucket: t(BUCKET),
        key: t(key),
        from: t(&from.display().to_string()),
        endpoint: None,
        region: None,
    })
}

/// A 200 MiB file, sparse-ish: 1 MiB of random bytes, then a hole of 3 MiB, repeated;
/// returns its SHA-256.
fn sparse_file(path: &Path) -> String {
    use std::io::{Seek, SeekFrom, Write};
    const SIZE: u64 = 200 << 20;
    let mut f = std::fs::File::create(path).unwrap();
    let mut h = Sha256::new();
    let zeros = vec![0u8; 3 << 20];
    for i in 0..SIZE / (4 << 20) {
        let chunk = pseudo_random(1 << 20, 100 + i);
        f.write_all(&chunk).unwrap();
        f.seek(SeekFrom::Current(3 << 20)).unwrap();
        h.update(&chunk);
        h.update(&zeros);
    }
    f.set_len(SIZE).unwrap();
    hex::encode(h.finalize())
}

/// Multipart uploads moto holds for the bucket (ListMultipartUploads).
fn uploads_in_progress(lab: &Lab) -> usize {
    let r = lab.moto.s3("GET", &format!("/{BUCKET}?uploads"), b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text().matches("<UploadId>").count()
}

/// UploadPart requests moto answered, from its request log.
fn upload_parts_of(lab: &Lab, key: &str) -> usize {
    let log = std::fs::read_to_string(lab.moto.dir().join("moto.log")).unwrap_or_default();
    let needle = format!("\"PUT /{BUCKET}/{key}?");
    log.lines()
        .filter(|l| l.contains(&needle) && l.contains("partNumber="))
        .count()
}

#[test]
fn s3_multipart_upload_of_200_mib_round_trips() {
    let lab = Lab::start_with(Tuning {
        upload_part_size: UPLOAD_PART,
        upload_parallel: 4,
        ..Tuning::default()
    });
    lab.moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    let want = sparse_file(&src);
    let key = "uploads/big.bin";

    let r = lab.rehearse(&upload(key, &src));
    assert!(
        r.lines().contains(
            "(200.0 MiB) to s3://velero-offsite-homelab/uploads/big.bin in a multipart upload of 25 part(s) of 8.0 MiB: a new object"
        ),
        "{}",
        r.lines()
    );
    assert_eq!(upload_parts_of(&lab, key), 0);

    let r = lab.run(&upload(key, &src));
    let v = r.value().clone();
    assert_eq!(v["multipart"], true, "{v}");
    assert_eq!(v["parts"], 25);
    assert_eq!(v["part_size"], UPLOAD_PART);
    assert_eq!(v["sha256"], want.as_str());
    assert!(
        r.lines().contains("multipart: 25 part(s) of 8.0 MiB"),
        "{}",
        r.lines()
    );
    // S3's multipart ETag of the file in 8 MiB parts, computed here independently.
    let bytes = std::fs::read(&src).unwrap();
    let mut cat = Vec::new();
    for part in bytes.chunks(UPLOAD_PART as usize) {
        cat.extend_from_slice(&md5::Md5::digest(part));
    }
    let etag = format!("{}-25", hex::encode(md5::Md5::digest(&cat)));
    drop(bytes);
    assert_eq!(v["etag"], etag.as_str());
    assert_eq!(upload_parts_of(&lab, key), 25);
    assert_eq!(uploads_in_progress(&lab), 0);

    // Downloaded back (verified by the multipart ETag), byte for byte the file.
    let back = dir.path().join("back.bin");
    let r = lab.run(&download(key, &back, None));
    let d = r.value();
    assert!(
        d["verified_by"]
            .as_str()
            .unwrap()
            .starts_with("the multipart ETag (MD5 of 25 parts of 8.0 MiB"),
        "{d}"
    );
    assert_eq!(d["etag"], etag.as_str());
    assert_eq!(file_sha256(&back), want);
}

#[test]
fn s3_multipart_upload_cancelled_half_way_leaves_no_object_and_no_parts() {
    let lab = Lab::start_with(Tuning {
        upload_part_size: UPLOAD_PART,
        upload_parallel: 2,
        ..Tuning::default()
    });
    lab.moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    sparse_file(&src);
    let key = "uploads/cancelled.bin";

    let r = lab.run_opts(
        &upload(key, &src),
        false,
        CtrlC::When(&|| upload_parts_of(&lab, key) >= 4),
    );
    assert_eq!(r.err(), ActionError::Cancelled.to_string(), "{}", r.events);
    let sent = upload_parts_of(&lab, key);
    assert!((4..25).contains(&sent), "{sent} parts sent");
    // Aborted before the step ended: no object, no upload holding parts.
    assert_eq!(lab.moto.get_object(BUCKET, key), None);
    assert_eq!(uploads_in_progress(&lab), 0);
    let log = std::fs::read_to_string(lab.moto.dir().join("moto.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("\"DELETE /{BUCKET}/{key}?")) && l.contains("uploadId=")),
        "no AbortMultipartUpload in moto's log"
    );
}

/// Attack (issue 19, item 4): another local user plants `TO.part` (and its state file) as
/// links to a victim file before the download. Nothing is written through them.
#[test]
fn a_planted_part_file_link_is_never_written_through() {
    let lab = Lab::start();
    lab.moto.create_bucket(BUCKET);
    lab.moto.put_object(BUCKET, "snap.db", b"snapshot bytes");
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let to = dir.path().join("snap.db");
    std::os::unix::fs::symlink(&victim, dir.path().join("snap.db.part")).unwrap();
    let r = lab.run(&download("snap.db", &to, None));
    assert!(r.result.is_err(), "{}", r.events);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!to.exists());
}

// ---------------------------------------------------------------------------------------
// The drctl binary end to end
// ---------------------------------------------------------------------------------------

#[test]
fn drctl_runs_newest_download_and_kms_describe_against_moto() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let snap = pseudo_random(3 << 20, 9);
    moto.put_object(BUCKET, "etcd-snapshots/snapshot-20250101-000000.db", b"old");
    std::thread::sleep(Duration::from_millis(1100));
    moto.put_object(BUCKET, "etcd-snapshots/snapshot-20250102-000000.db", &snap);
    let key = moto.create_kms_key("vault unseal");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("snap.db");
    let state = dir.path().join("state");

    let out = drctl_cmd(&state)
        .args(["run", "tests/fixtures/aws/s3-kms-e2e.yaml", "--yes"])
        .args(["--set", &format!("bucket={BUCKET}")])
        .args(["--set", "prefix=etcd-snapshots/"])
        .args(["--set", &format!("dest={}", dest.display())])
        .args(["--set", &format!("kms_key_id={key}")])
        .arg("--state-dir")
        .arg(&state)
        .env_remove("AWS_PROFILE")
        .envs(moto.env())
        .output()
        .unwrap();
    let stdout = stdout(&out);
    let stderr = stderr(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        snap,
        "the newest snapshot, verified"
    );
    assert!(!dir.path().join("snap.db.part").exists());
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("snapshot-20250102-000000.db"), "{all}");
    assert!(all.contains("verified: the ETag (MD5) matches"), "{all}");
    assert!(all.contains(": Enabled (customer managed)"), "{all}");
    assert!(!all.contains("testing"), "credentials never shown:\n{all}");

    // The journal recorded the captured outputs.
    let j = std::fs::read_to_string(journal_path(&state, &only_run(&state))).unwrap();
    assert!(
        j.contains("etcd-snapshots/pki-20250102-000000.tar.gz"),
        "{j}"
    );
    assert!(j.contains("\"key_state\""), "{j}");
}
