//! Parse runbook YAML into the model, turning YAML and shape errors into diagnostics
//! that point at the file, line and column.

use std::sync::Arc;

use serde_saphyr::{DuplicateKeyPolicy, Options};

use super::diagnostic::Diagnostic;
use super::model::{POS_MARKER, Runbook};
use super::text::Pos;

/// Largest runbook accepted, so a wrong path (a disk image) fails fast and clearly.
pub const MAX_RUNBOOK_BYTES: usize = 16 * 1024 * 1024;

fn options() -> Options {
    let mut o = Options::default();
    o.duplicate_keys = DuplicateKeyPolicy::Error;
    // YAML 1.1 booleans (`no`, `on`) are a classic trap in hand-written files.
    o.strict_booleans = true;
    o.with_snippet = false;
    o
}

/// Parse one file. `file` is how the operator knows it (a path or `builtin:NAME`).
pub fn parse(file: &str, source: &Arc<str>) -> Result<Runbook, Box<Diagnostic>> {
    if source.len() > MAX_RUNBOOK_BYTES {
        return Err(Box::new(
            Diagnostic::error(
                file,
                &Arc::from(""),
                Pos::default(),
                format!(
                    "file is {} bytes, larger than the {} MiB a runbook may be",
                    source.len(),
                    MAX_RUNBOOK_BYTES / (1024 * 1024)
                ),
            )
            .with_hint("check that the path names a runbook YAML file"),
        ));
    }
    if source.trim().is_empty() {
        return Err(Box::new(
            Diagnostic::error(file, source, Pos::default(), "the file is empty")
                .with_hint("a runbook starts with `apiVersion: drctl/v1` and `kind: Runbook`"),
        ));
    }
    serde_saphyr::from_str_with_options::<Runbook>(source, options())
        .map_err(|e| Box::new(from_yaml_error(file, source, &e)))
}

fn from_yaml_error(file: &str, source: &Arc<str>, e: &serde_saphyr::Error) -> Diagnostic {
    let mut pos = e
        .location()
        .map(|l| Pos::from_location(&l))
        .unwrap_or_default();
    let raw = e.to_string();
    let raw = match raw.split_once(POS_MARKER) {
        Some((msg, marker)) if !marker.is_empty() => {
            if let Some(p) = parse_marker(marker) {
                pos = p;
            }
            msg.to_owned()
        }
        _ => raw,
    };
    let message = clean_message(&raw);
    let hint = hint_for(&message);
    let mut d = Diagnostic::error(file, source, pos, message);
    if let Some(h) = hint {
        d = d.with_hint(h);
    }
    d
}

/// The `LINE:COL:OFFSET:LEN` that `model::error_at` appended.
fn parse_marker(marker: &str) -> Option<Pos> {
    let digits: String = marker
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ':')
        .collect();
    let mut it = digits.split(':').map(str::parse::<u64>);
    let mut next = || it.next().and_then(Result::ok);
    Some(Pos {
        line: u32::try_from(next()?).ok()?,
        col: u32::try_from(next()?).ok()?,
        offset: usize::try_from(next()?).ok()?,
        len: usize::try_from(next()?).ok()?,
    })
}

/// serde-saphyr appends the position in words; the diagnostic shows it already.
fn clean_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    let msg = first.strip_prefix("error: ").unwrap_or(first);
    // "line 7 column 5: message"
    let msg = match msg.strip_prefix("line ").and_then(|m| m.split_once(": ")) {
        Some((coords, rest)) if coords.contains(" column ") => rest,
        _ => msg,
    };
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    let msg = msg.trim_end_matches([',', '.', ':']).trim();
    // serde-saphyr suggests an API option; the operator needs the key.
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!("duplicate key `{key}` in this map");
    }
    let mut chars = msg.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "invalid YAML".to_owned(),
    }
}

fn hint_for(message: &str) -> Option<&'static str> {
    if message.contains("duplicate") {
        Some("each key may appear once in a map; remove or rename one of them")
    } else if message.contains("unknown field") || message.contains("unknown variant") {
        Some("run `drctl schema` for the fields and actions of the format")
    } else if message.contains("missing field") {
        Some("add the field; `drctl schema` lists what each part requires")
    } else if message.contains("duration") {
        None
    } else if message.contains("invalid type") {
        Some(
            "check the indentation and the type of the value; quote text that YAML reads as a number or boolean",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Runbook, Box<Diagnostic>> {
        parse("t.yaml", &Arc::from(s))
    }

    const MINIMAL: &str = "apiVersion: drctl/v1\nkind: Runbook\nname: t\ntitle: T\nsummary: S\nsteps:\n  - id: a\n    title: A\n    sleep: { duration: 1s }\n";

    #[test]
    fn parses_a_minimal_runbook() {
        let rb = parse_str(MINIMAL).expect("minimal runbook parses");
        assert_eq!(rb.name.as_str(), "t");
        assert_eq!(rb.steps.len(), 1);
        assert_eq!(rb.steps[0].action.name(), "sleep");
        assert_eq!(rb.steps[0].id.pos.line, 7);
    }

    #[test]
    fn rejects_two_actions_in_a_step() {
        let src = MINIMAL.replace(
            "    sleep: { duration: 1s }\n",
            "    sleep: { duration: 1s }\n    manual: { instructions: x }\n",
        );
        let e = parse_str(&src).expect_err("two actions");
        assert!(e.message.contains("exactly one action"), "{}", e.message);
        assert_eq!(e.pos.line, 10);
    }

    #[test]
    fn suggests_a_close_action_name() {
        let src = MINIMAL.replace("sleep:", "slep:");
        let e = parse_str(&src).expect_err("typo");
        assert!(e.message.contains("did you mean `sleep`"), "{}", e.message);
        assert_eq!((e.pos.line, e.pos.col), (9, 5));
    }

    #[test]
    fn reports_duplicate_keys_at_the_second_one() {
        let src = MINIMAL.replace("title: T\n", "title: T\ntitle: U\n");
        let e = parse_str(&src).expect_err("duplicate");
        assert!(e.message.contains("duplicate"), "{}", e.message);
        assert_eq!(e.pos.line, 5);
    }

    #[test]
    fn reports_bad_durations() {
        let src = MINIMAL.replace("1s", "5 minutes");
        let e = parse_str(&src).expect_err("duration");
        assert!(e.message.contains("invalid duration"), "{}", e.message);
        assert_eq!(e.pos.line, 9);
    }
}
