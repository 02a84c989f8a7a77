//! Secret values: a wrapper whose Debug and Display print `****`, and a redactor that
//! removes every known secret value from text before it reaches a terminal, a log, the
//! journal or a report.

use std::fmt;
use std::sync::{Arc, RwLock};

/// Shortest secret value accepted: shorter ones could not be redacted without mangling
/// ordinary text.
pub const MIN_SECRET_LEN: usize = 4;

pub const MASK: &str = "****";

/// A value that must never be shown. Not `Serialize`, on purpose.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(v: T) -> Self {
        Secret(v)
    }
    /// The value, for the one place that hands it to the target system.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Every secret value of a run; shared by the engine and the reporters.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Arc<RwLock<Vec<String>>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redactor(****)")
    }
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remember a secret value (and each of its lines, for multi-line secrets).
    pub fn add(&self, value: &str) {
        let mut parts: Vec<String> = vec![value.to_owned()];
        if value.contains('\n') {
            parts.extend(
                value
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.len() >= MIN_SECRET_LEN)
                    .map(str::to_owned),
            );
        }
        let mut guard = match self.values.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for p in parts {
            if p.len() >= MIN_SECRET_LEN && !guard.contains(&p) {
                guard.push(p);
            }
        }
        // Longest first, so a secret containing another is masked whole.
        guard.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// The text with every secret value replaced by `****`.
    pub fn redact(&self, text: &str) -> String {
        let guard = match self.values.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut out = text.to_owned();
        for v in guard.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// Redact every string inside a JSON value.
    pub fn redact_json(&self, v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::String(s) => serde_json::Value::String(self.redact(s)),
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.iter().map(|x| self.redact_json(x)).collect())
            }
            serde_json::Value::Object(o) => serde_json::Value::Object(
                o.iter()
                    .map(|(k, x)| (k.clone(), self.redact_json(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-token".to_owned());
        assert_eq!(format!("{s:?}"), "****");
        assert_eq!(format!("{s}"), "****");
        assert_eq!(format!("{:?}", Some(&s)), "Some(****)");
        assert_eq!(s.expose(), "hunter2-token");
    }

    #[test]
    fn redacts_values_and_their_lines() {
        let r = Redactor::new();
        r.add("s3cr3t-value");
        r.add("[default]\naws_secret_access_key=abcd1234efgh");
        assert_eq!(r.redact("token s3cr3t-value!"), "token ****!");
        assert_eq!(
            r.redact("line: aws_secret_access_key=abcd1234efgh"),
            "line: ****"
        );
        let j = serde_json::json!({"a": ["x s3cr3t-value"], "b": 1});
        assert_eq!(
            r.redact_json(&j),
            serde_json::json!({"a": ["x ****"], "b": 1})
        );
        assert_eq!(format!("{r:?}"), "Redactor(****)");
    }
}
