//! No input makes the loader, the validator or the printer panic.

use std::sync::Arc;

use drctl::plan::Plan;
use drctl::render::checklist;
use drctl::runbook::{load, validate};
use proptest::prelude::*;

use crate::support::cli::{BUILTIN, root};

fn exercise(text: &str) {
    let src: Arc<str> = Arc::from(text);
    if let Ok(rb) = load::parse("fuzz.yaml", &src) {
        let diags = validate::check("fuzz.yaml", &src, &rb, None);
        for d in &diags {
            let _ = d.render(false);
        }
        if !diags.iter().any(|d| d.is_error()) {
            let plan = Plan::compile(&rb, text, &Default::default());
            for f in [
                checklist::Format::Markdown,
                checklist::Format::Text,
                checklist::Format::Html,
            ] {
                let _ = checklist::render(&plan, f);
            }
        }
    } else if let Err(d) = load::parse("fuzz.yaml", &src) {
        let _ = d.render(false);
    }
}

fn builtins() -> Vec<String> {
    BUILTIN
        .iter()
        .map(|n| std::fs::read_to_string(root().join(format!("runbooks/{n}.yaml"))).expect("read"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yamlish_text_never_panics(s in "([a-z._{}:\\[\\], \\n\"'|>-]|  |id: |steps:|\\{\\{ inputs\\.|kube\\.wait: ){0,80}") {
        exercise(&format!("apiVersion: drctl/v1\nkind: Runbook\nname: f\ntitle: F\nsummary: S\n{s}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// Cut, duplicate or corrupt a slice of a real runbook: the nearest thing to a
    /// hand edit gone wrong.
    #[test]
    fn mutated_builtins_never_panic(which in 0usize..13, at in 0.0f64..1.0, len in 0usize..40, byte in any::<u8>(), op in 0u8..3) {
        let all = builtins();
        let text = all[which % all.len()].as_bytes();
        let start = ((text.len() as f64) * at) as usize;
        let end = (start + len).min(text.len());
        let mut out = text[..start].to_vec();
        match op {
            0 => out.extend_from_slice(&text[end..]),
            1 => { out.extend_from_slice(&text[start..end]); out.extend_from_slice(&text[start..]); }
            _ => { out.push(byte); out.extend_from_slice(&text[end..]); }
        }
        exercise(&String::from_utf8_lossy(&out));
    }
}
