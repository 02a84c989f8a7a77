//! The KMS actions: kms.describe, kms.cancel-deletion, kms.enable and kms.verify (an
//! encrypt and decrypt round trip of random bytes that are never shown).

use aws_sdk_kms::types::KeyMetadata;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use serde_json::{Value, json};

use super::error::{AwsError, Target, explain};
use super::{AwsBackend, Conn, Res, bounded};
use crate::exec::backend::{ActionCtx, ActionResult};
use crate::runbook::action::{KeyState, KmsCancelDeletion, KmsDescribe, KmsEnable, KmsVerify};

/// A KMS client with the configuration it was made from.
pub(super) struct Kms {
    pub client: aws_sdk_kms::Client,
    pub conn: Conn,
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
    /// Turns a failed `op` on `key` into the error that names the key.
    fn key_err<'a, E>(
        &'a self,
        op: &'a str,
        key: &'a str,
    ) -> impl FnOnce(SdkError<E, HttpResponse>) -> AwsError + 'a
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        move |e| explain(e, op, Target::Key(key), &self.conn)
    }

    async fn describe(&self, key: &str) -> Res<KeyInfo> {
        let out = bounded(self.client.describe_key().key_id(key).send())
            .await
            .map_err(self.key_err("kms:DescribeKey", key))?;
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
            .map_err(self.key_err("kms:EnableKey", key))?;
        Ok(())
    }

    /// The key as it is after a change, shown and added to `lines`; the result is its
    /// description with `fields` added.
    async fn changed(
        &self,
        ctx: &ActionCtx<'_>,
        key: &str,
        mut lines: Vec<String>,
        fields: &[(&str, Value)],
    ) -> Res<ActionResult> {
        let after = self.describe(key).await?;
        say(ctx, &mut lines, after.summary());
        let mut value = after.json();
        if let Value::Object(m) = &mut value {
            for (k, v) in fields {
                m.insert((*k).to_owned(), v.clone());
            }
        }
        Ok(ActionResult { value, lines })
    }
}

/// Shows `line` and keeps it for the report.
fn say(ctx: &ActionCtx<'_>, lines: &mut Vec<String>, line: String) {
    ctx.output(line.clone());
    lines.push(line);
}

impl AwsBackend {
    pub(super) async fn kms_describe(
        &self,
        a: &KmsDescribe,
        ctx: &ActionCtx<'_>,
    ) -> Res<ActionResult> {
        let (key, kms) = self.kms(ctx, &a.key_id, &a.region).await?;
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

    pub(super) async fn kms_cancel_deletion(
        &self,
        a: &KmsCancelDeletion,
        ctx: &ActionCtx<'_>,
    ) -> Res<ActionResult> {
        let (key, kms) = self.kms(ctx, &a.key_id, &a.region).await?;
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
            if pending {
                lines.push(format!(
                    "would cancel the deletion scheduled for {}",
                    before.deletion_text().unwrap_or_default()
                ));
            } else {
                lines.push(format!(
                    "no deletion is scheduled (the key is {}): nothing to cancel",
                    before.state
                ));
            }
            if enable {
                lines.push("would enable the key (CancelKeyDeletion leaves it Disabled)".into());
            }
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
                .map_err(kms.key_err("kms:CancelKeyDeletion", &key))?;
            say(
                ctx,
                &mut lines,
                "deletion cancelled (the key is now Disabled)".to_owned(),
            );
        } else {
            say(
                ctx,
                &mut lines,
                format!("no deletion was scheduled (the key is {})", before.state),
            );
        }
        if enable {
            kms.enable(&key).await?;
            say(ctx, &mut lines, "key enabled".to_owned());
        }
        let fields = [
            ("cancelled", json!(pending)),
            ("previous_state", json!(before.state)),
        ];
        kms.changed(ctx, &key, lines, &fields).await
    }

    pub(super) async fn kms_enable(&self, a: &KmsEnable, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let (key, kms) = self.kms(ctx, &a.key_id, &a.region).await?;
        let before = kms.describe(&key).await?;
        let mut lines = Vec::new();
        say(ctx, &mut lines, before.summary());
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
            say(ctx, &mut lines, l);
            return Ok(ActionResult {
                value: before.json(),
                lines,
            });
        }
        if before.state != "Enabled" {
            kms.enable(&key).await?;
        }
        kms.changed(ctx, &key, lines, &[("previous_state", json!(before.state))])
            .await
    }

    pub(super) async fn kms_verify(&self, a: &KmsVerify, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let (key, kms) = self.kms(ctx, &a.key_id, &a.region).await?;
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
        .map_err(kms.key_err("kms:Encrypt", &key))?;
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
        .map_err(kms.key_err("kms:Decrypt", &key))?;
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
