//! aws CLI commands for the s3.* and kms.* actions.

use crate::runbook::Text;
use crate::runbook::action::*;

use super::quote::*;
use super::*;
use crate::runbook::glob::{Glob, ere_literal};

/// -------------------------------------------------------------------------------
pub(super) fn s3_list(a: &S3List, r: &Resolver, out: &mut Vec<String>) {
    let url = s3_url(r, &a.bucket, a.prefix.as_ref());
    out.push(format!(
        "aws s3 ls {url} --recursive{}",
        aws_flags(r, a.endpoint.as_ref(), a.region.as_ref())
    ));
}

pub(super) fn s3_newest(a: &S3Newest, r: &Resolver, out: &mut Vec<String>) {
    let mut cmd = format!("aws s3api list-objects-v2 --bucket {}", q(r, &a.bucket));
    if let Some(p) = &a.prefix {
        cmd.push_str(&format!(" --prefix {}", q(r, p)));
    }
    let prefix = a
        .prefix
        .as_ref()
        .map(|p| word(r, p).map_lits(ere_literal))
        .unwrap_or_default();
    let re = Word::lit("^")
        .then(prefix)
        .then(word(r, &a.pattern).map_lits(|g| Glob::parse(g).to_ere()))
        .then(Word::lit("$"));
    out.push(format!(
        "{cmd} --query 'sort_by(Contents || `[]`, &LastModified)[].[Key]' --output text{} | grep -E {} | tail -n 1",
        aws_flags(r, a.endpoint.as_ref(), a.region.as_ref()),
        re.quoted()
    ));
}

pub(super) fn s3_download(a: &S3Download, r: &Resolver, out: &mut Vec<String>) {
    let to = local_path_word(r, &a.to);
    out.push(format!(
        "aws s3 cp {} {}{}",
        s3_url(r, &a.bucket, Some(&a.key)),
        to.quoted(),
        aws_flags(r, a.endpoint.as_ref(), a.region.as_ref())
    ));
    if let Some(sum) = &a.sha256 {
        let line = word(r, sum).then(Word::lit("  ")).then(to);
        out.push(format!("echo {} | sha256sum -c -", line.quoted()));
    }
}

pub(super) fn s3_upload(a: &S3Upload, r: &Resolver, out: &mut Vec<String>) {
    out.push(format!(
        "aws s3 cp {} {}{}",
        q(r, &a.from),
        s3_url(r, &a.bucket, Some(&a.key)),
        aws_flags(r, a.endpoint.as_ref(), a.region.as_ref())
    ));
}

pub(super) fn kms_describe(a: &KmsDescribe, r: &Resolver, out: &mut Vec<String>) {
    let expect = a
        .expect_state
        .map(|s: KeyState| format!("  # expect {}", s.as_str()))
        .unwrap_or_default();
    out.push(format!(
        "aws kms describe-key --key-id {}{} --query KeyMetadata.KeyState --output text{expect}",
        q(r, &a.key_id),
        aws_flags(r, None, a.region.as_ref())
    ));
}

pub(super) fn kms_cancel_deletion(a: &KmsCancelDeletion, r: &Resolver, out: &mut Vec<String>) {
    let key = q(r, &a.key_id);
    let region = aws_flags(r, None, a.region.as_ref());
    out.push(format!(
        "aws kms cancel-key-deletion --key-id {key}{region}"
    ));
    // CancelKeyDeletion leaves the key Disabled.
    if a.enable {
        out.push(format!("aws kms enable-key --key-id {key}{region}"));
    }
}

pub(super) fn kms_enable(a: &KmsEnable, r: &Resolver, out: &mut Vec<String>) {
    out.push(format!(
        "aws kms enable-key --key-id {}{}",
        q(r, &a.key_id),
        aws_flags(r, None, a.region.as_ref())
    ));
}

pub(super) fn kms_verify(a: &KmsVerify, r: &Resolver, out: &mut Vec<String>) {
    let key = q(r, &a.key_id);
    let region = aws_flags(r, None, a.region.as_ref());
    out.push(format!(
        "aws kms encrypt --key-id {key}{region} --plaintext fileb://<(printf drctl-verify) --query CiphertextBlob --output text | base64 -d | aws kms decrypt --key-id {key}{region} --ciphertext-blob fileb:///dev/stdin --query Plaintext --output text | base64 -d  # expect drctl-verify"
    ));
}

pub(super) fn s3_url(r: &Resolver, bucket: &Text, key: Option<&Text>) -> String {
    let mut w = Word::lit("s3://")
        .then(word(r, bucket))
        .then(Word::lit("/"));
    if let Some(k) = key {
        w = w.then(word(r, k));
    }
    w.quoted()
}

pub(super) fn aws_flags(r: &Resolver, endpoint: Option<&Text>, region: Option<&Text>) -> String {
    let mut s = String::new();
    if let Some(e) = endpoint {
        s.push_str(&format!(" --endpoint-url {}", q(r, e)));
    }
    if let Some(g) = region {
        s.push_str(&format!(" --region {}", q(r, g)));
    }
    s
}
