//! Decoding of the few protobuf bodies kubectl sends (`kubectl create namespace|secret|
//! configmap|serviceaccount` use client-go's typed clients with protobuf). Hand-written against
//! k8s.io/api's generated.proto field numbers; only the fields those commands can set.

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

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ProtoError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or(ProtoError::Malformed("truncated varint"))?;
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

/// A map<string, string|bytes> entry: key = 1, value = 2.
fn map_entry(b: &[u8], as_base64: bool) -> Result<(String, Value), ProtoError> {
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    for (n, w) in fields(b)? {
        if let Wire::Bytes(x) = w {
            match n {
                1 => k = string(x),
                2 if as_base64 => v = json!(base64::engine::general_purpose::STANDARD.encode(x)),
                2 => v = json!(string(x)),
                _ => {}
            }
        }
    }
    Ok((k, v))
}

fn object_meta(b: &[u8]) -> Result<Value, ProtoError> {
    let mut m = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Map::new(), Map::new(), Vec::new());
    for (n, w) in fields(b)? {
        // proto2 optional strings arrive even when empty; JSON omits them.
        if matches!(w, Wire::Bytes(x) if x.is_empty()) && n != 11 && n != 12 {
            continue;
        }
        match (n, w) {
            (1, Wire::Bytes(x)) => {
                m.insert("name".into(), json!(string(x)));
            }
            (2, Wire::Bytes(x)) => {
                m.insert("generateName".into(), json!(string(x)));
            }
            (3, Wire::Bytes(x)) => {
                m.insert("namespace".into(), json!(string(x)));
            }
            (6, Wire::Bytes(x)) => {
                m.insert("resourceVersion".into(), json!(string(x)));
            }
            (11, Wire::Bytes(x)) => {
                let (k, v) = map_entry(x, false)?;
                labels.insert(k, v);
            }
            (12, Wire::Bytes(x)) => {
                let (k, v) = map_entry(x, false)?;
                annotations.insert(k, v);
            }
            (14, Wire::Bytes(x)) => finalizers.push(json!(string(x))),
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

fn kind_body(kind: &str, raw: &[u8]) -> Result<Value, ProtoError> {
    let mut obj = json!({"apiVersion": "v1", "kind": kind});
    let mut data = Map::new();
    let mut binary = Map::new();
    let mut string_data = Map::new();
    for (n, w) in fields(raw)? {
        match (kind, n, w) {
            (_, 1, Wire::Bytes(x)) => obj["metadata"] = object_meta(x)?,
            ("Namespace", 2, Wire::Bytes(x)) => {
                let fins: Vec<Value> = fields(x)?
                    .into_iter()
                    .filter_map(|(n, w)| match (n, w) {
                        (1, Wire::Bytes(f)) => Some(json!(string(f))),
                        _ => None,
                    })
                    .collect();
                obj["spec"] = json!({"finalizers": fins});
            }
            ("Secret", 2, Wire::Bytes(x)) => {
                let (k, v) = map_entry(x, true)?;
                data.insert(k, v);
            }
            ("Secret", 3, Wire::Bytes(x)) => obj["type"] = json!(string(x)),
            ("Secret", 4, Wire::Bytes(x)) => {
                let (k, v) = map_entry(x, false)?;
                string_data.insert(k, v);
            }
            ("Secret", 5, Wire::Varint(v)) | ("ConfigMap", 4, Wire::Varint(v)) => {
                obj["immutable"] = json!(v != 0)
            }
            ("ConfigMap", 2, Wire::Bytes(x)) => {
                let (k, v) = map_entry(x, false)?;
                data.insert(k, v);
            }
            ("ConfigMap", 3, Wire::Bytes(x)) => {
                let (k, v) = map_entry(x, true)?;
                binary.insert(k, v);
            }
            ("ServiceAccount", 4, Wire::Varint(v)) => {
                obj["automountServiceAccountToken"] = json!(v != 0)
            }
            _ => {}
        }
    }
    if !data.is_empty() {
        obj["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        obj["binaryData"] = Value::Object(binary);
    }
    if !string_data.is_empty() {
        obj["stringData"] = Value::Object(string_data);
    }
    Ok(obj)
}

/// Decodes a `k8s\0`-framed runtime.Unknown holding one of the supported kinds into JSON.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let inner = body.strip_prefix(b"k8s\x00").ok_or(ProtoError::NoEnvelope)?;
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
    match kind.as_str() {
        "Namespace" | "Secret" | "ConfigMap" | "ServiceAccount" => kind_body(&kind, raw),
        _ => Err(ProtoError::UnsupportedKind(kind)),
    }
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
