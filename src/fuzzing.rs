//! One entry point per fuzz target (`fuzz/fuzz_targets/`), and the replay of every input a
//! fuzzer ever crashed drctl with (`tests/integration/fuzz_regressions.rs`). Each takes the
//! raw bytes of one input, as a file written by a person under stress or left behind by a
//! crashed process would reach drctl, and drives the same parsing, checking and rendering
//! drctl does with it. None may panic. Not part of drctl's interface (`doc(hidden)`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::exec::inputs::{self, Sources};
use crate::exec::journal::{self, JournalError};
use crate::plan::Plan;
use crate::render::{checklist, report};
use crate::runbook::fieldpath::{column_titles, parse_field_path};
use crate::runbook::glob::{Glob, Slash, ere_literal};
use crate::runbook::text::Dur;
use crate::runbook::{Runbook, load, validate};
use crate::secret::Redactor;

/// The fuzz targets, by name (`fuzz/fuzz_targets/NAME.rs`, `tests/fuzz/regressions/NAME/`).
pub const TARGETS: &[&str] = &[
    "runbook",
    "journal",
    "example",
    "inputs",
    "command_output",
    "server_json",
    "kubeconfig",
];

/// Run the target `name` on one input; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "runbook" => runbook(data),
        "journal" => journal_bytes(data),
        "example" => example(data),
        "inputs" => inputs(data),
        "command_output" => command_output(data),
        "server_json" => server_json(data),
        "kubeconfig" => kubeconfig(data),
        _ => return false,
    }
    true
}

/// `drctl validate` and `drctl print` (every format) on one runbook file. A NUL byte splits
/// the runbook from `--set KEY=VALUE` lines given to the plan.
pub fn runbook(data: &[u8]) {
    let (text, sets) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let sets: Vec<String> = String::from_utf8_lossy(sets)
        .lines()
        .map(str::to_owned)
        .collect();
    let sets = crate::commands::parse_sets(&sets).unwrap_or_default();
    let src: Arc<str> = Arc::from(text.as_ref());
    match load::parse("fuzz.yaml", &src) {
        Ok(rb) => {
            let diags = validate::check("fuzz.yaml", &src, &rb, Some("fuzz"));
            for d in &diags {
                let _ = d.render(false);
                let _ = d.render(true);
            }
            if !diags.iter().any(|d| d.is_error()) {
                let plan = Plan::compile(&rb, &src, &sets);
                let _ = plan.fingerprints();
                for f in [
                    checklist::Format::Markdown,
                    checklist::Format::Text,
                    checklist::Format::Html,
                ] {
                    let _ = checklist::render(&plan, f);
                }
            }
        }
        Err(d) => {
            let _ = d.render(false);
        }
    }
}

/// `drctl resume`, `drctl runs` and `drctl report` on one journal file.
pub fn journal_bytes(data: &[u8]) {
    let path = Path::new("/state/runs/r/journal.json");
    let audit = Path::new("/state/runs/r/audit.jsonl");
    match journal::parse(path, audit, data) {
        Ok(j) => {
            let _ = report::markdown(&j);
            let _ = report::json(&j);
            let _ = (j.state.is_finished(), j.last_step());
        }
        Err(e) => check_journal_error(&e),
    }
}

/// A journal cut at `cut` bytes: unreadable, with the message that says so, unless only
/// trailing whitespace was cut (the file still holds the whole journal).
pub fn journal_truncated(full: &[u8], cut: usize) {
    let cut = cut.min(full.len());
    let path = Path::new("/state/runs/r/journal.json");
    let kept = journal::parse(path, path, &full[..cut]);
    let whole = full[cut..].iter().all(u8::is_ascii_whitespace);
    match kept {
        Ok(_) => assert!(
            whole,
            "a journal cut at byte {cut} of {} was read as a whole one",
            full.len()
        ),
        Err(e) => check_journal_error(&e),
    }
}

fn check_journal_error(e: &JournalError) {
    let msg = e.to_string();
    if let JournalError::Corrupt { .. } = e {
        assert!(
            msg.contains("this run cannot be resumed from it"),
            "unclear message: {msg}"
        );
    }
}

/// The `.example` files of `vault.kv-populate`. The first line is the file's path under the
/// repository, the rest its content.
pub fn example(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (rel, body) = text
        .split_once('\n')
        .unwrap_or(("secret.env.example", &text));
    if let Ok(secrets) = crate::backends::vault::fuzz::example(rel, body) {
        for (path, keys) in &secrets {
            assert!(!path.is_empty() && !keys.is_empty(), "{secrets:?}");
        }
    }
}

/// A runbook with one input of every kind, for the values of `--set` and `--set-file`.
fn inputs_runbook() -> Option<&'static Runbook> {
    static RB: OnceLock<Option<Runbook>> = OnceLock::new();
    RB.get_or_init(|| {
        let src: Arc<str> = Arc::from(
            "apiVersion: drctl/v1\nkind: Runbook\nname: fuzz\ntitle: F\nsummary: S\ninputs:\n  \
             host: { description: h, pattern: '[a-z0-9.-]+' }\n  port: { type: int, default: 22 }\n  \
             flag: { type: bool, default: false }\n  key: { type: secret, default: abcdefgh }\n  \
             mode: { type: choice, choices: [{value: a}, {value: b}], default: a }\n  \
             note: { description: n, default: '' }\nsteps:\n  - id: a\n    title: A\n    \
             sleep: { duration: 1s }\n",
        );
        load::parse("fuzz.yaml", &src).ok()
    })
    .as_ref()
}

/// Operator input: `--set KEY=VALUE` (each line), a `--set-file` content (the whole input),
/// durations, field paths and globs (each line).
pub fn inputs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if let Some(rb) = inputs_runbook() {
        if let Ok(sets) = crate::commands::parse_sets(&lines) {
            let sources = Sources {
                sets,
                env: Some(Box::new(|_| None)),
                ..Sources::default()
            };
            let _ = inputs::collect(rb, &sources, None, &Redactor::new());
        }
        // A --set-file value is the file's text without its last newline.
        let file = text.strip_suffix('\n').unwrap_or(&text).to_owned();
        for name in ["host", "port", "flag", "key", "mode", "note"] {
            let sources = Sources {
                sets: BTreeMap::from([(name.to_owned(), file.clone())]),
                env: Some(Box::new(|_| None)),
                ..Sources::default()
            };
            let _ = inputs::collect(rb, &sources, None, &Redactor::new());
        }
    }
    for line in &lines {
        if let Ok(d) = Dur::parse(line) {
            let back = Dur::human(d);
            assert_eq!(Dur::parse(&back), Ok(d), "{line:?} -> {back:?}");
        }
        let _ = parse_field_path(line);
        let _ = column_titles(std::slice::from_ref(line));
        let g = Glob::parse(line);
        let _ = g.to_regex(Slash::Crosses);
        let _ = g.to_regex(Slash::Separates);
        let _ = g.to_ere();
        let _ = g.matches_key(line);
        let _ = g.matches_path(line);
        let _ = ere_literal(line);
        let _ = inputs::env_name(line);
        crate::backends::ssh::fuzz::mode(line);
    }
}

/// The output of commands drctl reads: etcdctl/etcdutl (probe, `snapshot status`, the
/// SHA-256 verdict, a Go program's stderr), ssh and sudo, the Kubernetes client's errors.
pub fn command_output(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    crate::backends::etcd::fuzz_outputs(&text);
    crate::backends::ssh::fuzz::output(&text);
    crate::backends::kube::fuzz::error_text(&text);
}

/// JSON answers of the servers drctl reads: the Kubernetes API (objects and lists the judges
/// of kube.*, Velero, Argo CD and Longhorn read), Vault; and the JSON files drctl leaves
/// behind: a run's lock, an S3 download's sidecar (`.part.state`).
pub fn server_json(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    crate::backends::kube::fuzz::server_json(&v);
    crate::backends::vault::fuzz::server_json(&v);
    let _ = serde_json::from_value::<crate::exec::lock::LockInfo>(v);
    if let Ok(text) = std::str::from_utf8(data) {
        crate::backends::aws::fuzz_download_state(text);
    }
}

/// A kubeconfig (`--kubeconfig`, `kube.use`).
pub fn kubeconfig(data: &[u8]) {
    crate::backends::kube::fuzz::kubeconfig(&String::from_utf8_lossy(data));
}
