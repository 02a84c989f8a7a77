//! Small value types of the runbook format that carry their source position:
//! template text, durations and identifiers.

use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserialize, Deserializer};
use serde_saphyr::Spanned;

/// Where a value sits in its source file (1-based line and column, byte range).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
    pub offset: usize,
    pub len: usize,
}

impl Pos {
    pub fn from_location(loc: &serde_saphyr::Location) -> Self {
        let span = loc.span();
        Pos {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            col: u32::try_from(loc.column()).unwrap_or(u32::MAX),
            offset: span
                .byte_offset()
                .and_then(|o| usize::try_from(o).ok())
                .unwrap_or(0),
            len: span
                .byte_len()
                .and_then(|l| usize::try_from(l).ok())
                .unwrap_or(0),
        }
    }

    /// True when the loader knew where the value came from.
    pub fn is_known(&self) -> bool {
        self.line > 0
    }
}

/// A YAML scalar read as text; any scalar (string, number, bool) is accepted so that
/// `port: 8200` and `port: "8200"` mean the same thing in a template field.
struct ScalarString(String);

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ScalarString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<ScalarString, E> {
                Ok(ScalarString(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarString, E> {
                Ok(ScalarString(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Text that may contain MiniJinja templates (`{{ inputs.host }}`), with its position
/// so validation errors can point at the line that holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text {
    pub value: String,
    pub pos: Pos,
}

impl Text {
    pub fn new(value: impl Into<String>) -> Self {
        Text {
            value: value.into(),
            pos: Pos::default(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Whether the text holds template syntax at all (plain text renders as itself).
    pub fn is_template(&self) -> bool {
        self.value.contains("{{") || self.value.contains("{%") || self.value.contains("{#")
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<ScalarString>::deserialize(d)?;
        Ok(Text {
            value: s.value.0,
            pos: Pos::from_location(&s.referenced),
        })
    }
}

impl JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Text".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "number", "boolean"],
            "description": "Text; may hold MiniJinja templates such as {{ inputs.name }}."
        })
    }
}

/// An identifier (step id, output name) with its position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ident {
    pub value: String,
    pub pos: Pos,
}

impl Ident {
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl<'de> Deserialize<'de> for Ident {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<ScalarString>::deserialize(d)?;
        Ok(Ident {
            value: s.value.0,
            pos: Pos::from_location(&s.referenced),
        })
    }
}

impl JsonSchema for Ident {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Ident".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9_-]*$",
            "description": "An identifier: lowercase letters, digits, '-' and '_'."
        })
    }
}

/// A duration written as `30s`, `5m`, `1h30m`, `250ms` or a bare number of seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dur {
    pub value: Duration,
    pub pos: Pos,
}

impl Dur {
    /// Parse the duration syntax of the runbook format.
    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty duration".into());
        }
        if let Ok(secs) = s.parse::<u64>() {
            return Ok(Duration::from_secs(secs));
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!("`{s}` is not a duration"));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("`{s}` has a number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let part = match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                "d" => Duration::from_secs(n.saturating_mul(86400)),
                "" => return Err(format!("`{s}` lacks a unit after {n}")),
                other => return Err(format!("`{s}` has an unknown unit `{other}`")),
            };
            total = total.saturating_add(part);
        }
        Ok(total)
    }

    /// Render a duration the way it is written in runbooks (`1h30m`, `45s`).
    pub fn human(d: Duration) -> String {
        let ms = d.as_millis();
        if !ms.is_multiple_of(1000) {
            return format!("{ms}ms");
        }
        let mut secs = d.as_secs();
        if secs == 0 {
            return "0s".into();
        }
        let mut out = String::new();
        for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                out.push_str(&format!("{}{unit}", secs / size));
                secs %= size;
            }
        }
        out
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Dur::human(self.value))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<ScalarString>::deserialize(d)?;
        let value = Dur::parse(&s.value.0).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration: {e}; write it like 30s, 5m, 1h30m or 250ms"
            ))
        })?;
        Ok(Dur {
            value,
            pos: Pos::from_location(&s.referenced),
        })
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                { "type": "string", "pattern": "^([0-9]+(ms|s|m|h|d))+$" },
                { "type": "integer", "minimum": 0 }
            ],
            "description": "A duration: 30s, 5m, 1h30m, 250ms, or a number of seconds."
        })
    }
}

// Serialization is the canonical form a step's fingerprint is taken from: values only,
// never source positions, so moving a step in its file does not change its meaning.

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.value)
    }
}

impl serde::Serialize for Ident {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.value)
    }
}

impl serde::Serialize for Dur {
    /// Milliseconds: `90s` and `1m30s` are the same duration.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(self.value.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(Dur::parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(Dur::parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(Dur::parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(Dur::parse("300"), Ok(Duration::from_secs(300)));
        assert_eq!(
            Dur::parse("5 minutes"),
            Err("`5 minutes` has an unknown unit ` minutes`".into())
        );
        assert_eq!(Dur::parse("m5"), Err("`m5` is not a duration".into()));
        assert_eq!(Dur::parse("5"), Ok(Duration::from_secs(5)));
        assert_eq!(Dur::parse("5x"), Err("`5x` has an unknown unit `x`".into()));
    }

    #[test]
    fn renders_durations() {
        assert_eq!(Dur::human(Duration::from_secs(5400)), "1h30m");
        assert_eq!(Dur::human(Duration::from_secs(300)), "5m");
        assert_eq!(Dur::human(Duration::from_millis(1500)), "1500ms");
        assert_eq!(Dur::human(Duration::ZERO), "0s");
    }
}
