//! vault (and bao) commands for the vault.* actions.

use crate::runbook::action::*;
use crate::runbook::template::shell_quote;
use crate::runbook::{Sink, Text};

use super::quote::*;
use super::*;

/// -------------------------------------------------------------------------------
pub(super) fn status(a: &VaultStatus, r: &Resolver, out: &mut Vec<String>) {
    let env = vault_env(r, a.addr.as_ref(), None);
    let mut expect = Vec::new();
    if let Some(i) = a.expect.initialized {
        expect.push(format!("Initialized {i}"));
    }
    if let Some(s) = a.expect.sealed {
        expect.push(format!("Sealed {s}"));
    }
    let expect = if expect.is_empty() {
        String::new()
    } else {
        format!("  # expect {}", expect.join(", "))
    };
    out.push(format!("{env}vault status{expect}"));
    out.push(OPENBAO.to_owned());
}

pub(super) fn wait_unsealed(a: &VaultWaitUnsealed, r: &Resolver, out: &mut Vec<String>, w: &Wait) {
    let env = vault_env(r, a.addr.as_ref(), None);
    // `vault status` exits 0 when unsealed, 2 when sealed, 1 when unreachable.
    let lp = format!("until {env}vault status >/dev/null; do sleep 5; done");
    out.push(match w.0 {
        Some(d) => format!("timeout {} sh -c {}", d.as_secs().max(1), shell_quote(&lp)),
        None => lp,
    });
    if let Some(by) = &a.unsealed_by {
        out.push(format!("# unsealed by: {}", note(&r.text(by, Sink::Shown))));
    }
    out.push(OPENBAO.to_owned());
}

pub(super) fn unseal(a: &VaultUnseal, r: &Resolver, out: &mut Vec<String>) {
    let env = vault_env(r, a.addr.as_ref(), None);
    if !a.keys.is_empty() {
        let n = a.keys.len();
        for (i, k) in a.keys.iter().enumerate() {
            out.push(format!(
                "{env}vault operator unseal  # share {} of {n}: enter {} at the prompt",
                i + 1,
                share_name(r, k)
            ));
        }
    } else if !a.holders.is_empty() {
        for h in &a.holders {
            out.push(format!(
                "{env}vault operator unseal  # {} enters their share at the prompt",
                note(h)
            ));
        }
    } else {
        out.push(format!("{env}vault operator unseal"));
    }
    out.push(
        "# one share per run (the prompt hides it); Vault unseals once the threshold is reached: vault status shows Unseal Progress".to_owned(),
    );
    out.push(OPENBAO.to_owned());
}

pub(super) fn init(a: &VaultInit, r: &Resolver, out: &mut Vec<String>) {
    let env = vault_env(r, a.addr.as_ref(), None);
    let (s, t) = if a.recovery {
        ("-recovery-shares", "-recovery-threshold")
    } else {
        ("-key-shares", "-key-threshold")
    };
    out.push(format!(
        "{env}vault operator init {s}={} {t}={}",
        a.shares, a.threshold
    ));
    out.push(format!(
        "# shown once: {} {} shares and the initial root token; hand each share to its holder now",
        a.shares,
        if a.recovery { "recovery" } else { "unseal key" }
    ));
    // An empty `save_to` (the runbook input's default) writes no file.
    if let Some(p) = a.save_to.as_ref().map(|p| q(r, p)).filter(|p| p != "''") {
        out.push(format!(
            "# drctl also writes them to the new file {p} (mode 0600)"
        ));
    }
    out.push(OPENBAO.to_owned());
}

pub(super) fn kv_put(a: &VaultKvPut, r: &Resolver, out: &mut Vec<String>) {
    let env = vault_env(r, a.addr.as_ref(), a.token.as_ref());
    let mut cmd = format!(
        "{env}vault kv put {} {}",
        Word::flag("-mount=").then(word(r, &a.mount)).quoted(),
        q(r, &a.path)
    );
    for (k, v) in &a.data {
        cmd.push(' ');
        cmd.push_str(&Word::flag(&format!("{k}=")).then(word(r, v)).quoted());
    }
    out.push(cmd);
    out.push(OPENBAO.to_owned());
}

pub(super) fn kv_get(a: &VaultKvGet, r: &Resolver, out: &mut Vec<String>) {
    let env = vault_env(r, a.addr.as_ref(), a.token.as_ref());
    let mount = Word::flag("-mount=").then(word(r, &a.mount)).quoted();
    let path = q(r, &a.path);
    // Checks that keys exist without putting their values on screen.
    if a.keys.is_empty() {
        out.push(format!(
            "{env}vault kv get {mount} -format=json {path} | jq -r '.data.data | keys[]'"
        ));
    }
    for k in &a.keys {
        let field = Word::lit(&format!("-field={k}")).quoted();
        out.push(format!(
            "{env}vault kv get {mount} {field} {path} >/dev/null && echo {}",
            shell_quote(&format!("{k}: present"))
        ));
    }
    out.push(OPENBAO.to_owned());
}

pub(super) fn kv_populate(a: &VaultKvPopulate, r: &Resolver, out: &mut Vec<String>) {
    let env = vault_env(r, a.addr.as_ref(), a.token.as_ref());
    let repo = word(r, &a.repo);
    let pattern = a.pattern.as_deref().unwrap_or("**/*.example");
    out.push(format!(
        "find {} {}",
        repo.quoted(),
        find_filter(&repo, pattern)
    ));
    out.push(
        "# each file names a KV path and its keys: write each path with its values".to_owned(),
    );
    out.push(format!(
        "{env}vault kv put {} <path> <key>=<value>",
        Word::flag("-mount=").then(word(r, &a.mount)).quoted()
    ));
    out.push(
        "# drctl takes each value from DRCTL_KV_<PATH>__<KEY> when set, else asks for it (masked)"
            .to_owned(),
    );
    out.push(OPENBAO.to_owned());
}

pub(super) fn rekey(a: &VaultRekey, r: &Resolver, out: &mut Vec<String>) {
    let env = vault_env(r, a.addr.as_ref(), a.token.as_ref());
    let target = if a.recovery { " -target=recovery" } else { "" };
    // `-verify` with `-init`: the new shares replace the current ones only once
    // they are entered back (`rekey -verify`, a later vault.rekey-verify step).
    let verify = if a.verify { "" } else { " -verify" };
    out.push(format!(
        "{env}vault operator rekey -init{target}{verify} -key-shares={} -key-threshold={}",
        a.shares, a.threshold
    ));
    let provide = format!("{env}vault operator rekey{target} -nonce=<nonce>");
    if a.keys.is_empty() {
        out.push(format!(
            "{provide}  # once per current share, at the prompt"
        ));
    }
    for (i, k) in a.keys.iter().enumerate() {
        out.push(format!(
            "{provide}  # current share {}: enter {} at the prompt",
            i + 1,
            share_name(r, k)
        ));
    }
    out.push(format!(
        "# <nonce> is printed by -init; the {} new shares are printed once, after the last current share",
        a.shares
    ));
    if !a.verify {
        out.push("# with a verification nonce: the rekey stays pending (the current shares keep working) until `vault operator rekey -verify` (the verify step)".to_owned());
    }
    if a.method == RekeyMethod::RotateRoot {
        out.push("# method rotate-root: OpenBao's authenticated sys/rotate/root API, so set a token (BAO_TOKEN)".to_owned());
    }
    out.push(OPENBAO.to_owned());
}

pub(super) fn rekey_verify(a: &VaultRekeyVerify, r: &Resolver, out: &mut Vec<String>) {
    let env = vault_env(r, a.addr.as_ref(), a.token.as_ref());
    let target = if a.recovery { " -target=recovery" } else { "" };
    out.push(format!(
        "{env}vault operator rekey -verify -status{target}  # the pending verification and its nonce"
    ));
    let provide = format!("{env}vault operator rekey -verify{target} -nonce=<verification-nonce>");
    if a.keys.is_empty() {
        out.push(format!("{provide}  # once per new share, at the prompt"));
    }
    for (i, k) in a.keys.iter().enumerate() {
        out.push(format!(
            "{provide}  # new share {}: enter {} at the prompt",
            i + 1,
            share_name(r, k)
        ));
    }
    out.push("# once the threshold of new shares is entered the rekey is complete: only the new shares unseal Vault".to_owned());
    out.push(format!(
        "# OpenBao 2.5+: bao operator rotate-keys -verify{target} -nonce=<verification-nonce> (sys/rotate/root, needs BAO_TOKEN)"
    ));
}

pub(super) const OPENBAO: &str =
    "# OpenBao: the bao CLI takes the same commands (BAO_ADDR, BAO_TOKEN)";

/// How a key share is named in a note: its placeholder, never a value.
pub(super) fn share_name(r: &Resolver, t: &Text) -> String {
    let w = word(r, t);
    if w.is_holes_only() {
        w.plain()
    } else {
        "the share".to_owned()
    }
}

pub(super) fn vault_env(r: &Resolver, addr: Option<&Text>, token: Option<&Text>) -> String {
    let mut s = String::new();
    if let Some(a) = addr {
        s.push_str(&format!("VAULT_ADDR={} ", q(r, a)));
    }
    if let Some(t) = token {
        s.push_str(&format!("VAULT_TOKEN={} ", q(r, t)));
    }
    s
}

/// `find` arguments selecting files of a glob relative to `root`.
pub(super) fn find_filter(root: &Word, pattern: &str) -> String {
    let rel = pattern.trim_start_matches("**/");
    if !rel.contains('/') {
        return format!("-name {}", shell_quote(rel));
    }
    // find's -path glob lets `*` match `/`, which covers `**`.
    let glob = rel.replace("**/", "").replace("**", "*");
    format!(
        "-path {}",
        root.clone().then(Word::lit(&format!("/{glob}"))).quoted()
    )
}
