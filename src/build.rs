//! Embeds every `runbooks/*.yaml` file into the binary (see src/runbook/catalog.rs).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=runbooks");
    let mut names: Vec<String> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("runbooks") {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yaml") {
                println!("cargo:rerun-if-changed={}", p.display());
                if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                    names.push(stem.to_owned());
                }
            }
        }
    }
    names.sort();
    let mut out = String::from(
        "/// Built-in runbooks: (name, YAML), embedded at compile time.\npub static BUILTIN: &[(&str, &str)] = &[\n",
    );
    for n in &names {
        let _ = writeln!(
            out,
            "    ({n:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/runbooks/{n}.yaml\"))),"
        );
    }
    out.push_str("];\n");
    let out_dir = std::env::var_os("OUT_DIR").unwrap_or_default();
    let target = Path::new(&out_dir).join("builtin_runbooks.rs");
    if let Err(e) = std::fs::write(&target, out) {
        // A build script reports failure by exiting non-zero with a message.
        eprintln!("cannot write {}: {e}", target.display());
        std::process::exit(1);
    }
}
