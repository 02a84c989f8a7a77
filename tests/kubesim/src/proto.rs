//! Decoding of the protobuf bodies kubectl sends: `kubectl create namespace|secret|configmap|
//! serviceaccount|service|deployment|job|cronjob` use client-go's typed clients with protobuf.
//! Table-driven, with k8s.io/api's generated.proto field numbers (checked against the k8s-pb
//! crate's prost tags); only the fields `kubectl create` can set are decoded.

use base64::Engine;
use serde_json::{Map, Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("protobuf body without the k8s\\x00 envelope")]
    NoEnvelope,
    #[error("malformed protobuf: {0}")]
    Malformed(&'static str),
    #[error("kubesim cannot decode protobuf for kind {0:?}; send JSON")]
    UnsupportedKind(String),
}

#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ProtoError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or(ProtoError::Malformed("truncated varint"))?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(ProtoError::Malformed("varint too long"))
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ProtoError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let (num, wt) = (tag >> 3, tag & 7);
        let w = match wt {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or(ProtoError::Malformed("length past the end"))?;
                let b = &buf[pos..end];
                pos = end;
                Wire::Bytes(b)
            }
            1 => {
                pos += 8;
                Wire::Fixed
            }
            5 => {
                pos += 4;
                Wire::Fixed
            }
            _ => return Err(ProtoError::Malformed("unsupported wire type")),
        };
        out.push((num, w));
    }
    Ok(out)
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    StrList,
    Int,
    Bool,
    Msg(&'static str),
    MsgList(&'static str),
    MapStr,
    MapBytes,
    /// map<string, resource.Quantity>: the value is a message whose field 1 is the string.
    MapQuantity,
    IntOrString,
}

use Kind::*;

/// Field tables (number, JSON name, kind) from k8s.io/api's generated.proto, for the messages
/// `kubectl create <kind>` produces. Fields not listed are skipped.
fn schema(message: &str) -> &'static [(u64, &'static str, Kind)] {
    match message {
        "ObjectMeta" => &[
            (1, "name", Str),
            (2, "generateName", Str),
            (3, "namespace", Str),
            (5, "uid", Str),
            (6, "resourceVersion", Str),
            (11, "labels", MapStr),
            (12, "annotations", MapStr),
            (13, "ownerReferences", MsgList("OwnerReference")),
            (14, "finalizers", StrList),
        ],
        "OwnerReference" => &[
            (1, "kind", Str),
            (3, "name", Str),
            (4, "uid", Str),
            (5, "apiVersion", Str),
            (6, "controller", Bool),
            (7, "blockOwnerDeletion", Bool),
        ],
        "LabelSelector" => &[
            (1, "matchLabels", MapStr),
            (2, "matchExpressions", MsgList("LabelSelectorRequirement")),
        ],
        "LabelSelectorRequirement" => &[
            (1, "key", Str),
            (2, "operator", Str),
            (3, "values", StrList),
        ],
        "Namespace" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("NamespaceSpec")),
        ],
        "NamespaceSpec" => &[(1, "finalizers", StrList)],
        "Secret" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "data", MapBytes),
            (3, "type", Str),
            (4, "stringData", MapStr),
            (5, "immutable", Bool),
        ],
        "ConfigMap" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "data", MapStr),
            (3, "binaryData", MapBytes),
            (4, "immutable", Bool),
        ],
        "ServiceAccount" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (4, "automountServiceAccountToken", Bool),
        ],
        "Service" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("ServiceSpec")),
        ],
        "ServiceSpec" => &[
            (1, "ports", MsgList("ServicePort")),
            (2, "selector", MapStr),
            (3, "clusterIP", Str),
            (4, "type", Str),
            (7, "sessionAffinity", Str),
            (10, "externalName", Str),
        ],
        "ServicePort" => &[
            (1, "name", Str),
            (2, "protocol", Str),
            (3, "port", Int),
            (4, "targetPort", IntOrString),
            (5, "nodePort", Int),
        ],
        "Deployment" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("DeploymentSpec")),
        ],
        "DeploymentSpec" => &[
            (1, "replicas", Int),
            (2, "selector", Msg("LabelSelector")),
            (3, "template", Msg("PodTemplateSpec")),
            (4, "strategy", Msg("DeploymentStrategy")),
            (5, "minReadySeconds", Int),
            (6, "revisionHistoryLimit", Int),
            (7, "paused", Bool),
            (9, "progressDeadlineSeconds", Int),
        ],
        "DeploymentStrategy" => &[
            (1, "type", Str),
            (2, "rollingUpdate", Msg("RollingUpdateDeployment")),
        ],
        "RollingUpdateDeployment" => &[
            (1, "maxUnavailable", IntOrString),
            (2, "maxSurge", IntOrString),
        ],
        "Job" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("JobSpec")),
        ],
        "JobSpec" => &[
            (1, "parallelism", Int),
            (2, "completions", Int),
            (3, "activeDeadlineSeconds", Int),
            (4, "selector", Msg("LabelSelector")),
            (5, "manualSelector", Bool),
            (6, "template", Msg("PodTemplateSpec")),
            (7, "backoffLimit", Int),
            (8, "ttlSecondsAfterFinished", Int),
            (9, "completionMode", Str),
            (10, "suspend", Bool),
            (14, "podReplacementPolicy", Str),
            (15, "managedBy", Str),
        ],
        "CronJob" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("CronJobSpec")),
        ],
        "CronJobSpec" => &[
            (1, "schedule", Str),
            (2, "startingDeadlineSeconds", Int),
            (3, "concurrencyPolicy", Str),
            (4, "suspend", Bool),
            (5, "jobTemplate", Msg("JobTemplateSpec")),
            (6, "successfulJobsHistoryLimit", Int),
            (7, "failedJobsHistoryLimit", Int),
            (8, "timeZone", Str),
        ],
        "JobTemplateSpec" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("JobSpec")),
        ],
        "PodTemplateSpec" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("PodSpec")),
        ],
        "PodSpec" => &[
            (2, "containers", MsgList("Container")),
            (3, "restartPolicy", Str),
            (4, "terminationGracePeriodSeconds", Int),
            (5, "activeDeadlineSeconds", Int),
            (6, "dnsPolicy", Str),
            (7, "nodeSelector", MapStr),
            (8, "serviceAccountName", Str),
            (10, "nodeName", Str),
            (16, "hostname", Str),
            (19, "schedulerName", Str),
            (20, "initContainers", MsgList("Container")),
        ],
        "Container" => &[
            (1, "name", Str),
            (2, "image", Str),
            (3, "command", StrList),
            (4, "args", StrList),
            (5, "workingDir", Str),
            (6, "ports", MsgList("ContainerPort")),
            (7, "env", MsgList("EnvVar")),
            (8, "resources", Msg("ResourceRequirements")),
            (13, "terminationMessagePath", Str),
            (14, "imagePullPolicy", Str),
            (20, "terminationMessagePolicy", Str),
        ],
        "ContainerPort" => &[
            (1, "name", Str),
            (2, "hostPort", Int),
            (3, "containerPort", Int),
            (4, "protocol", Str),
            (5, "hostIP", Str),
        ],
        "EnvVar" => &[(1, "name", Str), (2, "value", Str)],
        "ResourceRequirements" => &[(1, "limits", MapQuantity), (2, "requests", MapQuantity)],
        _ => &[],
    }
}

/// A map entry: key = 1, value = 2.
fn map_entry(b: &[u8]) -> Result<(String, &[u8]), ProtoError> {
    let (mut k, mut v) = (String::new(), &[][..]);
    for (n, w) in fields(b)? {
        if let Wire::Bytes(x) = w {
            match n {
                1 => k = string(x),
                2 => v = x,
                _ => {}
            }
        }
    }
    Ok((k, v))
}

fn int_or_string(b: &[u8]) -> Result<Value, ProtoError> {
    let (mut is_str, mut int, mut s) = (false, 0u64, String::new());
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Varint(t)) => is_str = t == 1,
            (2, Wire::Varint(v)) => int = v,
            (3, Wire::Bytes(x)) => s = string(x),
            _ => {}
        }
    }
    Ok(if is_str { json!(s) } else { json!(int as i32) })
}

/// Decodes one message into JSON by its field table.
fn message(name: &'static str, b: &[u8]) -> Result<Value, ProtoError> {
    let table = schema(name);
    let mut out = Map::new();
    for (n, w) in fields(b)? {
        let Some((_, json_name, kind)) = table.iter().find(|(num, _, _)| *num == n) else {
            continue;
        };
        let key = json_name.to_string();
        match (*kind, w) {
            // gogo-protobuf writes non-pointer strings even when empty; JSON omits them.
            (Str, Wire::Bytes([])) => {}
            (Str, Wire::Bytes(x)) => {
                out.insert(key, json!(string(x)));
            }
            (StrList, Wire::Bytes(x)) => push(&mut out, key, json!(string(x))),
            // Varints of int32 fields are sign-extended to 64 bits.
            (Int, Wire::Varint(v)) => {
                out.insert(key, json!(v as i64));
            }
            (Bool, Wire::Varint(v)) => {
                out.insert(key, json!(v != 0));
            }
            (Msg(m), Wire::Bytes(x)) => {
                out.insert(key, message(m, x)?);
            }
            (MsgList(m), Wire::Bytes(x)) => push(&mut out, key, message(m, x)?),
            (IntOrString, Wire::Bytes(x)) => {
                out.insert(key, int_or_string(x)?);
            }
            (MapStr | MapBytes | MapQuantity, Wire::Bytes(x)) => {
                let (k, v) = map_entry(x)?;
                let value = match kind {
                    MapBytes => json!(base64::engine::general_purpose::STANDARD.encode(v)),
                    MapQuantity => {
                        let mut q = String::new();
                        for (qn, qw) in fields(v)? {
                            if let (1, Wire::Bytes(s)) = (qn, qw) {
                                q = string(s);
                            }
                        }
                        json!(q)
                    }
                    _ => json!(string(v)),
                };
                if let Value::Object(m) = out.entry(key).or_insert_with(|| json!({})) {
                    m.insert(k, value);
                }
            }
            _ => return Err(ProtoError::Malformed("field with an unexpected wire type")),
        }
    }
    Ok(Value::Object(out))
}

fn push(out: &mut Map<String, Value>, key: String, v: Value) {
    if let Value::Array(a) = out.entry(key).or_insert_with(|| json!([])) {
        a.push(v);
    }
}

const KINDS: &[(&str, &str)] = &[
    ("Namespace", "v1"),
    ("Secret", "v1"),
    ("ConfigMap", "v1"),
    ("ServiceAccount", "v1"),
    ("Service", "v1"),
    ("Deployment", "apps/v1"),
    ("Job", "batch/v1"),
    ("CronJob", "batch/v1"),
];

/// Decodes a `k8s\0`-framed runtime.Unknown holding one of the supported kinds into JSON.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let inner = body
        .strip_prefix(b"k8s\x00")
        .ok_or(ProtoError::NoEnvelope)?;
    let (mut kind, mut raw) = (String::new(), &[][..]);
    for (n, w) in fields(inner)? {
        match (n, w) {
            (1, Wire::Bytes(tm)) => {
                for (tn, tw) in fields(tm)? {
                    if let (2, Wire::Bytes(k)) = (tn, tw) {
                        kind = string(k);
                    }
                }
            }
            (2, Wire::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let Some((name, api_version)) = KINDS.iter().find(|(k, _)| *k == kind) else {
        return Err(ProtoError::UnsupportedKind(kind));
    };
    let mut obj = message(name, raw)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(name);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u8, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![(num << 3) | 2, bytes.len() as u8];
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn decodes_a_secret() {
        let meta = [field(1, b"creds"), field(3, b"vault")].concat();
        let entry = [field(1, b"k"), field(2, b"\x00\x01")].concat();
        let secret = [field(1, &meta), field(2, &entry), field(3, b"Opaque")].concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [b"k8s\x00".to_vec(), field(1, &type_meta), field(2, &secret)].concat();
        let v = decode(&body).expect("decodes");
        assert_eq!(v["metadata"]["name"], "creds");
        assert_eq!(v["metadata"]["namespace"], "vault");
        assert_eq!(v["data"]["k"], "AAE=");
        assert_eq!(v["type"], "Opaque");
        assert!(decode(b"{}").is_err());
    }
}
