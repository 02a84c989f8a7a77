//! The `.example` files `vault.kv-populate` reads: finding them (a small glob), and the
//! secrets (kv path and key names) each describes.
//!
//! Format (docs: runbook-format, vault.kv-populate). Every file matching the pattern (default
//! `**/*.example`, `.git` skipped) describes secrets by key name; placeholder values are
//! ignored. By what is left of the name once `.example` is dropped:
//!   - `*.yaml` / `*.yml` / `*.json`: a mapping of key -> placeholder (one secret), or of
//!     kv path -> mapping of key -> placeholder (several secrets), or a Kubernetes Secret
//!     manifest (keys of `stringData` and `data`);
//!   - anything else (`.env`, `secret.example`): `KEY=placeholder` lines (`export ` allowed,
//!     `#` comments).
//!
//! The kv path of a one-secret file is its path under the repository without `.example` and
//! its extension (`apps/immich/db.yaml.example` -> `apps/immich/db`;
//! `apps/x/.env.example` -> `apps/x`), unless a comment line `# vault-path: some/path`
//! names it.

use crate::runbook::glob::Glob;
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// One secret to write: its kv path, its keys, and the file(s) that named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExampleSecret {
    pub path: String,
    pub keys: Vec<String>,
    pub files: Vec<String>,
}

/// Glob over a `/`-separated relative path; a pattern without `/` matches the file name at
/// any depth (as in .gitignore). The runbook language's one glob (`runbook::glob`).
pub fn glob_match(pattern: &str, rel: &str) -> bool {
    Glob::parse(pattern).matches_path(rel)
}

fn walk(root: &Path, dir: &Path, glob: &Glob, found: &mut Vec<String>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let ft = e.file_type()?;
        let p = e.path();
        if ft.is_dir() {
            if name != ".git" {
                walk(root, &p, glob, found)?;
            }
        } else if ft.is_file()
            && let Ok(rel) = p.strip_prefix(root)
        {
            let rel = rel.to_string_lossy().replace('\\', "/");
            if glob.matches_path(&rel) {
                found.push(rel);
            }
        }
    }
    Ok(())
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn valid_kv_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(char::is_whitespace))
}

/// The secrets one example file describes.
pub(super) fn parse_example(rel: &str, text: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let directive = text.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix('#')?.trim();
        rest.strip_prefix("vault-path:")
            .map(|p| p.trim().trim_matches('/').to_owned())
    });
    let base = rel.strip_suffix(".example").unwrap_or(rel);
    let (stem, ext) = match base.rsplit_once('.') {
        Some((s, e)) if !e.contains('/') => (s, e.to_ascii_lowercase()),
        _ => (base, String::new()),
    };
    let derived = || -> Result<String, String> {
        if let Some(d) = &directive {
            return Ok(d.clone());
        }
        let p = stem.trim_matches('/').to_owned();
        if p.is_empty() {
            Err(
                "cannot derive a kv path from the file name; add a line `# vault-path: some/path`"
                    .into(),
            )
        } else {
            Ok(p)
        }
    };
    let keys_of = |m: &serde_json::Map<String, Value>| -> Result<Vec<String>, String> {
        let mut ks = Vec::new();
        for (k, v) in m {
            if v.is_object() || v.is_array() {
                return Err(format!(
                    "key `{k}` holds a nested value; a secret's keys map to placeholder strings"
                ));
            }
            ks.push(k.clone());
        }
        Ok(ks)
    };
    let mut out = Vec::new();
    if matches!(ext.as_str(), "yaml" | "yml" | "json") {
        let v: Value = if ext == "json" {
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?
        } else {
            serde_saphyr::from_str(text).map_err(|e| format!("not YAML: {e}"))?
        };
        let Some(m) = v.as_object() else {
            return Err("expected a mapping of keys to placeholder values".into());
        };
        if m.get("kind").and_then(Value::as_str) == Some("Secret") {
            let mut ks = Vec::new();
            for f in ["stringData", "data"] {
                if let Some(d) = m.get(f).and_then(Value::as_object) {
                    ks.extend(keys_of(d)?);
                }
            }
            out.push((derived()?, ks));
        } else if !m.is_empty() && m.values().all(Value::is_object) {
            for (p, d) in m {
                let Some(d) = d.as_object() else { continue };
                out.push((p.trim_matches('/').to_owned(), keys_of(d)?));
            }
        } else {
            out.push((derived()?, keys_of(m)?));
        }
    } else {
        let mut ks = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let l = l.strip_prefix("export ").unwrap_or(l);
            let Some((k, _)) = l.split_once('=') else {
                return Err(format!("line {}: expected KEY=placeholder", n + 1));
            };
            ks.push(k.trim().to_owned());
        }
        out.push((derived()?, ks));
    }
    for (p, ks) in &out {
        if !valid_kv_path(p) {
            return Err(format!("`{p}` is not a usable kv path"));
        }
        if ks.is_empty() {
            return Err(format!("no keys for `{p}`"));
        }
        if let Some(k) = ks.iter().find(|k| !valid_key(k)) {
            return Err(format!(
                "`{k}` is not a usable key name (letters, digits, _ - .)"
            ));
        }
    }
    Ok(out)
}

/// Every secret named by the example files under `repo`, merged by path, in path order.
pub fn example_secrets(repo: &Path, pattern: &str) -> Result<Vec<ExampleSecret>, String> {
    if !repo.is_dir() {
        return Err(format!(
            "{} is not a directory (the repository checkout)",
            repo.display()
        ));
    }
    let mut files = Vec::new();
    walk(repo, repo, &Glob::parse(pattern), &mut files)
        .map_err(|e| format!("cannot read {}: {e}", repo.display()))?;
    if files.is_empty() {
        return Err(format!(
            "no file under {} matches `{pattern}`",
            repo.display()
        ));
    }
    let mut by_path: BTreeMap<String, ExampleSecret> = BTreeMap::new();
    let mut problems = Vec::new();
    for rel in files {
        let text = match std::fs::read_to_string(repo.join(&rel)) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{rel}: {e}"));
                continue;
            }
        };
        match parse_example(&rel, &text) {
            Ok(list) => {
                for (p, ks) in list {
                    let e = by_path.entry(p.clone()).or_insert_with(|| ExampleSecret {
                        path: p,
                        keys: Vec::new(),
                        files: Vec::new(),
                    });
                    for k in ks {
                        if !e.keys.contains(&k) {
                            e.keys.push(k);
                        }
                    }
                    if !e.files.contains(&rel) {
                        e.files.push(rel.clone());
                    }
                }
            }
            Err(e) => problems.push(format!("{rel}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "cannot read the example files: {}",
            problems.join("; ")
        ));
    }
    Ok(by_path.into_values().collect())
}
