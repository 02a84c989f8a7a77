//! Field paths (`status.conditions[type=Ready].status`): the runbook language's one
//! parser, used by validation, the kube backend and print, and the column titles an
//! operator would give them.

/// One segment of a field path: a key, optionally filtering a list by `[key=value]`
/// or indexing it by `[N]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSegment {
    Key(String),
    Index(usize),
    Filter { key: String, value: String },
}

/// Parse `status.conditions[type=Ready].status` (a leading `.` and `{...}` are allowed).
pub fn parse_field_path(path: &str) -> Result<Vec<PathSegment>, String> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(p);
    let p = p.strip_prefix('.').unwrap_or(p);
    if p.is_empty() {
        return Err("the path is empty".into());
    }
    let mut out = Vec::new();
    for part in p.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && out.is_empty() && rest.is_empty() {
            return Err("empty segment".into());
        }
        if key.is_empty() && rest.is_empty() {
            return Err("empty segment (two dots in a row?)".into());
        }
        if !key.is_empty() {
            out.push(PathSegment::Key(key.to_owned()));
        }
        while !rest.is_empty() {
            let Some(end) = rest.find(']') else {
                return Err(format!("unclosed `[` in `{part}`"));
            };
            let inner = &rest[1..end];
            if let Ok(n) = inner.parse::<usize>() {
                out.push(PathSegment::Index(n));
            } else if let Some((k, v)) = inner.split_once('=') {
                out.push(PathSegment::Filter {
                    key: k.trim().to_owned(),
                    value: v.trim().trim_matches('"').to_owned(),
                });
            } else {
                return Err(format!(
                    "`[{inner}]` is neither an index nor a `key=value` filter"
                ));
            }
            rest = &rest[end + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("unexpected `{rest}` after `]`"));
            }
        }
    }
    Ok(out)
}

/// Column titles for field paths, as an operator would name them: the last name
/// (`status.phase` → PHASE), or where that is only `status`, what it is the status of
/// (`status.sync.status` → SYNC, `status.conditions[type=Ready].status` → READY). Titles that
/// would still collide keep their whole path.
pub fn column_titles(paths: &[String]) -> Vec<String> {
    let short: Vec<String> = paths.iter().map(|p| column_title(p)).collect();
    short
        .iter()
        .zip(paths)
        .map(|(t, p)| {
            if short.iter().filter(|u| *u == t).count() > 1 {
                p.to_uppercase()
            } else {
                t.clone()
            }
        })
        .collect()
}

fn column_title(path: &str) -> String {
    // Paths are validated when the runbook loads; one that is not still gets a title.
    let segments = parse_field_path(path).unwrap_or_default();
    // `[type=Ready]` names the element by its value; `[0]` names nothing.
    let names: Vec<&str> = segments
        .iter()
        .filter_map(|s| match s {
            PathSegment::Key(k) => Some(k.as_str()),
            PathSegment::Filter { value, .. } => Some(value.as_str()),
            PathSegment::Index(_) => None,
        })
        .collect();
    let title = match names.as_slice() {
        [.., before, last] if last.eq_ignore_ascii_case("status") => before,
        [.., last] => last,
        [] => path,
    };
    title.to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_field_paths() {
        assert_eq!(
            parse_field_path("status.conditions[type=Ready].status"),
            Ok(vec![
                PathSegment::Key("status".into()),
                PathSegment::Key("conditions".into()),
                PathSegment::Filter {
                    key: "type".into(),
                    value: "Ready".into()
                },
                PathSegment::Key("status".into()),
            ])
        );
        assert_eq!(
            parse_field_path("{.items[0].metadata.name}"),
            Ok(vec![
                PathSegment::Key("items".into()),
                PathSegment::Index(0),
                PathSegment::Key("metadata".into()),
                PathSegment::Key("name".into()),
            ])
        );
        assert!(parse_field_path("a..b").is_err());
        assert!(parse_field_path("a[x").is_err());
        assert!(parse_field_path("").is_err());
    }

    #[test]
    fn column_titles_name_what_a_status_is_of() {
        let paths: Vec<String> = [
            "status.conditions[type=Ready].status",
            "status.conditions[type=Ready].reason",
            "status.sync.status",
            "status.health.status",
            "status.operationState.phase",
            "status.containerStatuses[0].state.waiting.reason",
            "spec.nodeName",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            column_titles(&paths),
            [
                "READY",
                "STATUS.CONDITIONS[TYPE=READY].REASON",
                "SYNC",
                "HEALTH",
                "PHASE",
                "STATUS.CONTAINERSTATUSES[0].STATE.WAITING.REASON",
                "NODENAME"
            ]
        );
        assert_eq!(column_titles(&["status".to_owned()]), ["STATUS"]);
    }
}
