//! Entry points for the fuzz targets (`fuzz/`): the `.example` file parser of
//! `vault.kv-populate`, and everything read from Vault's (OpenBao's) answers. Not part of
//! drctl's interface.

use serde_json::Value;

use super::conn::{self, SealStatus};
use super::{examples, kv, shares};

/// One `.example` file: `rel` is its path under the repository, `text` its content.
/// Returns the secrets it names, or the message for the operator.
pub fn example(rel: &str, text: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let _ = examples::glob_match(text.lines().next().unwrap_or_default(), rel);
    let out = examples::parse_example(rel, text)?;
    for (path, keys) in &out {
        for k in keys {
            let _ = kv::kv_env_name(path, k);
        }
    }
    Ok(out)
}

/// Everything drctl reads from one JSON answer of Vault.
pub fn server_json(v: &Value) {
    let _ = conn::api_detail(v);
    let p = conn::payload(v);
    for field in ["keys", "keys_base64", "recovery_keys_base64"] {
        let _ = conn::strings(p, field);
    }
    if let Ok(st) = serde_json::from_value::<SealStatus>(p.clone()) {
        let _ = (st.open(), st.summary());
    }
    let _ = kv::value_text(v);
    if let Some(s) = v.as_str() {
        let _ = shares::wrong_shares(s);
        let _ = super::short(s);
    }
}
