//! The vault backend against real OpenBao servers (tests/integration/lab.rs), one per test:
//! status, init with show-once, unseal by two holders with a bad share, restart, kv put /
//! get, kv-populate with resume, rekey through both APIs, wait-unsealed, and the drctl
//! binary end to end. Every test checks Vault's own state, not only drctl's answer.

use std::time::{Duration, Instant};

use drctl::backends::vault::{VaultBackend, example_secrets};
use drctl::exec::backend::ActionError;
use drctl::runbook::action::{
    RekeyMethod, VaultExpect, VaultInit, VaultKvGet, VaultKvPopulate, VaultKvPut, VaultRekey,
    VaultRekeyVerify, VaultStatus, VaultUnseal, VaultWaitUnsealed,
};
use drctl::runbook::{Action, Text};
use indexmap::IndexMap;
use serde_json::{Value, json};

use super::lab::OpenBao;
use crate::support::cli::{drctl_cmd, root, stderr, stdout};
use crate::support::harness::{Alone, Opts, perform};
use crate::support::operator::FakeOperator;
use crate::support::process::pid_alive;
use crate::support::secrets::assert_not_written;
use drctl::backends::Backends;

/// The backend with its connection defaults from the action: the environment of the test
/// runner is ignored.
fn vault() -> Backends {
    VaultBackend::from_lookup(|_| None).alone()
}

fn t(s: &str) -> Text {
    Text::new(s)
}

fn status(addr: &str, initialized: Option<bool>, sealed: Option<bool>) -> Action {
    Action::VaultStatus(VaultStatus {
        addr: Some(t(addr)),
        expect: VaultExpect {
            initialized,
            sealed,
        },
    })
}

fn kv_put(addr: &str, token: &str, path: &str, data: &[(&str, &str)]) -> Action {
    Action::VaultKvPut(VaultKvPut {
        addr: Some(t(addr)),
        token: Some(t(token)),
        mount: t("secret"),
        path: t(path),
        data: data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), t(v)))
            .collect::<IndexMap<_, _>>(),
    })
}

fn kv_get(addr: &str, token: &str, path: &str, keys: &[&str]) -> Action {
    Action::VaultKvGet(VaultKvGet {
        addr: Some(t(addr)),
        token: Some(t(token)),
        mount: t("secret"),
        path: t(path),
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
    })
}

fn kv_data(bao: &OpenBao, token: &str, path: &str) -> Option<Value> {
    let (status, v) = bao.request("GET", &format!("secret/data/{path}"), Some(token), None);
    (status == 200).then(|| v["data"]["data"].clone())
}

/// A share of the right length that is not one of ours.
fn wrong_share(good: &str) -> String {
    let first = if good.starts_with('A') { "B" } else { "A" };
    format!("{first}{}", &good[1..])
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn init_shows_once_then_two_holders_unseal_past_a_bad_share_and_a_restart_keeps_data() {
    let mut bao = OpenBao::start();
    let addr = bao.addr();

    // Status of a new server; `expect` is checked.
    let r = perform(
        &vault(),
        &status(&addr, Some(false), None),
        &FakeOperator::unattended(),
        Opts::default(),
    );
    let v = &r.ok().value;
    assert_eq!(
        (v["initialized"].clone(), v["sealed"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(
        v["version"].as_str().map(|s| s.starts_with("2.")),
        Some(true),
        "{v}"
    );
    let r = perform(
        &vault(),
        &status(&addr, Some(true), None),
        &FakeOperator::unattended(),
        Opts::default(),
    );
    assert!(
        r.err().contains("expected initialized true, it is false"),
        "{}",
        r.err()
    );

    let init = |recovery| {
        Action::VaultInit(VaultInit {
            addr: Some(t(&addr)),
            shares: 3,
            threshold: 2,
            recovery,
            save_to: None,
        })
    };
    // Nobody to show the keys to and no secret output to hold them: refused before init.
    let r = perform(
        &vault(),
        &init(false),
        &FakeOperator::unattended(),
        Opts::default(),
    );
    assert!(
        matches!(r.result, Err(ActionError::NeedsOperator(_))),
        "{}",
        r.err()
    );
    assert!(
        !bao.seal_status().initialized,
        "refused init left Vault alone"
    );
    // Wrong kind of shares for a Shamir seal.
    let r = perform(
        &vault(),
        &init(true),
        &FakeOperator::new(&[]),
        Opts::default(),
    );
    assert!(r.err().contains("Shamir seal"), "{}", r.err());
    // Rehearsal: reads the state, changes nothing.
    let r = perform(
        &vault(),
        &init(false),
        &FakeOperator::new(&[]),
        Opts {
            dry_run: true,
            ..Default::default()
        },
    );
    assert!(
        r.ok()
            .lines
            .join("\n")
            .contains("would initialise it with 3 unseal key shares")
    );
    assert!(!bao.seal_status().initialized);

    // The real init: shown once, offered a 0600 file, returned for secret outputs only.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("init.json");
    let op = FakeOperator::new(&[]);
    op.confirms.lock().unwrap().push_back(true);
    op.answers
        .lock()
        .unwrap()
        .push_back(file.display().to_string());
    let r = perform(&vault(), &init(false), &op, Opts::default());
    let v = r.ok().value.clone();
    let keys: Vec<String> = serde_json::from_value(v["keys_base64"].clone()).unwrap();
    let root = v["root_token"].as_str().unwrap().to_owned();
    assert_eq!(keys.len(), 3);
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(3), "hex keys too");
    assert!(bao.seal_status().initialized, "Vault says initialised");
    {
        let shown = op.shown();
        assert_eq!(shown.len(), 1, "shown exactly once");
        for k in &keys {
            assert!(shown[0].1.contains(k.as_str()));
        }
        assert!(shown[0].1.contains(&root));
        let meta = std::fs::metadata(&file).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(saved["root_token"], root.as_str());
    }
    // No key or token in any event, line or error; all are known to the redactor.
    let visible = r.visible();
    for s in keys.iter().chain(std::iter::once(&root)) {
        assert!(!visible.contains(s.as_str()), "secret leaked: {visible}");
        assert_eq!(r.redactor.redact(s), "****");
    }
    // A second init is refused with a clear message.
    let r = perform(
        &vault(),
        &init(false),
        &FakeOperator::new(&[]),
        Opts::default(),
    );
    assert!(r.err().contains("already initialised"), "{}", r.err());

    // Two holders; Alice's first share is wrong. OpenBao accepts it as progress, rejects
    // the pair at the threshold; drctl resets and both enter again.
    let unseal = Action::VaultUnseal(VaultUnseal {
        addr: Some(t(&addr)),
        keys: vec![],
        holders: vec!["alice".into(), "bob".into()],
    });
    let op = FakeOperator::new(&[&wrong_share(&keys[0]), &keys[1], &keys[0], &keys[1]]);
    let r = perform(&vault(), &unseal, &op, Opts::default());
    assert_eq!(r.ok().value["sealed"], false);
    let lines = r.ok().lines.join("\n");
    assert!(
        lines.contains("rejected the shares at the threshold"),
        "{lines}"
    );
    let asked = op.asked();
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert!(
        asked[0].starts_with("alice: ") && asked[1].starts_with("bob: "),
        "{asked:?}"
    );
    assert!(
        asked[1].contains("1/2 entered"),
        "progress shown: {asked:?}"
    );
    assert!(!bao.seal_status().sealed, "Vault says unsealed");
    for k in &keys {
        assert!(!r.visible().contains(k.as_str()));
    }

    // Data survives a restart, which comes back sealed; unseal from secret inputs.
    bao.enable_kv2(&root, "secret");
    let r = perform(
        &vault(),
        &kv_put(&addr, &root, "infra/velero", &[("key", "v-before-restart")]),
        &FakeOperator::unattended(),
        Opts::default(),
    );
    r.ok();
    let old = bao.pid().unwrap();
    bao.restart();
    assert!(!pid_alive(old));
    let r = perform(
        &vault(),
        &status(&addr, Some(true), Some(true)),
        &FakeOperator::unattended(),
        Opts::default(),
    );
    assert_eq!(r.ok().value["threshold"], 2);
    // A token action on a sealed Vault says so.
    let r = perform(
        &vault(),
        &kv_get(&addr, &root, "infra/velero", &[]),
        &FakeOperator::unattended(),
        Opts::default(),
    );
    assert!(r.err().contains("is sealed"), "{}", r.err());
    let unseal_inputs = Action::VaultUnseal(VaultUnseal {
        addr: Some(t(&addr)),
        keys: vec![t("{{ inputs.k1 }}"), t("{{ inputs.k3 }}")],
        holders: vec![],
    });
    let r = perform(
        &vault(),
        &unseal_inputs,
        &FakeOperator::unattended(),
        Opts {
            inputs: vec![("k1", keys[0].clone(), true), ("k3", keys[2].clone(), true)],
            ..Default::default()
        },
    );
    assert_eq!(r.ok().value["entered"], 2);
    assert_eq!(
        kv_data(&bao, &root, "infra/velero").unwrap()["key"],
        "v-before-restart"
    );
    // Already unsealed: nothing to do.
    let r = perform(&vault(), &unseal, &FakeOperator::new(&[]), Opts::default());
    assert!(r.ok().lines[0].contains("already unsealed"));
}

#[test]
fn kv_put_and_get_write_and_check_keys_with_clear_errors() {
    let (bao, init) = OpenBao::start_unsealed();
    let addr = bao.addr();
    let root = init.root_token.clone();
    bao.enable_kv2(&root, "secret");
    let op = FakeOperator::unattended();
    let inputs = || vec![("pw", "s3cr3t-db-password".to_string(), true)];

    let put = kv_put(
        &addr,
        &root,
        "apps/db",
        &[("password", "{{ inputs.pw }}"), ("user", "app")],
    );
    // Rehearsal first: nothing written, keys named, no value shown.
    let r = perform(
        &vault(),
        &put,
        &op,
        Opts {
            dry_run: true,
            inputs: inputs(),
            ..Default::default()
        },
    );
    assert!(
        r.ok()
            .lines
            .join("\n")
            .contains("would create `secret/apps/db` with keys password, user"),
        "{:?}",
        r.ok().lines
    );
    assert!(kv_data(&bao, &root, "apps/db").is_none());
    let r = perform(
        &vault(),
        &put,
        &op,
        Opts {
            inputs: inputs(),
            ..Default::default()
        },
    );
    assert_eq!(r.ok().value["version"], 1);
    assert_eq!(
        kv_data(&bao, &root, "apps/db").unwrap(),
        json!({"password": "s3cr3t-db-password", "user": "app"})
    );
    assert!(!r.visible().contains("s3cr3t-db-password"));
    // The same values again: no new version.
    let r = perform(
        &vault(),
        &put,
        &op,
        Opts {
            inputs: inputs(),
            ..Default::default()
        },
    );
    assert_eq!(r.ok().value["unchanged"], true);
    // A rehearsal of a change names what would be replaced or removed.
    let put2 = kv_put(&addr, &root, "apps/db", &[("password", "another-value")]);
    let r = perform(
        &vault(),
        &put2,
        &op,
        Opts {
            dry_run: true,
            ..Default::default()
        },
    );
    let l = r.ok().lines.join("\n");
    assert!(
        l.contains("new value for password") && l.contains("REMOVE user"),
        "{l}"
    );

    let r = perform(
        &vault(),
        &kv_get(&addr, &root, "apps/db", &["password", "user"]),
        &op,
        Opts::default(),
    );
    assert_eq!(r.ok().lines, vec!["password: present", "user: present"]);
    assert!(!r.visible().contains("s3cr3t-db-password"));
    let r = perform(
        &vault(),
        &kv_get(&addr, &root, "apps/db", &["password", "api_key"]),
        &op,
        Opts::default(),
    );
    assert!(r.err().contains("lacks the key(s) api_key"), "{}", r.err());
    let r = perform(
        &vault(),
        &kv_get(&addr, &root, "apps/nope", &[]),
        &op,
        Opts::default(),
    );
    assert!(
        r.err().contains("no secret at `secret/apps/nope`"),
        "{}",
        r.err()
    );

    // Wrong token, a token without the policy, a missing mount, an unreachable server.
    let r = perform(
        &vault(),
        &kv_get(&addr, "s.not-a-real-token", "apps/db", &[]),
        &op,
        Opts::default(),
    );
    assert!(r.err().contains("rejected the token"), "{}", r.err());
    let (s, v) = bao.request(
        "POST",
        "auth/token/create",
        Some(&root),
        Some(json!({"policies": ["default"], "no_default_policy": false})),
    );
    assert_eq!(s, 200, "{v}");
    let weak = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let r = perform(
        &vault(),
        &kv_get(&addr, &weak, "apps/db", &[]),
        &op,
        Opts::default(),
    );
    assert!(
        r.err().contains("permission denied") && r.err().contains("policies"),
        "{}",
        r.err()
    );
    let mut nomount = kv_get(&addr, &root, "apps/db", &[]);
    if let Action::VaultKvGet(a) = &mut nomount {
        a.mount = t("kv");
    }
    let r = perform(&vault(), &nomount, &op, Opts::default());
    assert!(
        r.err().contains("no secrets engine is mounted at `kv/`"),
        "{}",
        r.err()
    );
    let dead = format!("http://127.0.0.1:{}", super::lab::free_port());
    let r = perform(&vault(), &status(&dead, None, None), &op, Opts::default());
    assert!(
        r.err().contains("cannot reach Vault at") && r.err().contains("VAULT_ADDR"),
        "{}",
        r.err()
    );
    for e in [&weak, &root] {
        assert!(!r.visible().contains(e.as_str()));
    }
}

#[test]
fn example_files_give_paths_and_keys() {
    let repo = root().join("tests/fixtures/vault/repo");
    let found = example_secrets(&repo, "**/*.example").unwrap();
    let got: Vec<(String, Vec<String>)> = found.into_iter().map(|e| (e.path, e.keys)).collect();
    let want: Vec<(String, Vec<String>)> = vec![
        (
            "apps/authentik".into(),
            vec!["postgres_password".into(), "secret_key".into()],
        ),
        (
            "apps/immich".into(),
            vec!["DB_PASSWORD".into(), "JWT_SECRET".into()],
        ),
        ("infrastructure/cloudflare".into(), vec!["api_token".into()]),
        (
            "infrastructure/velero-offsite".into(),
            vec!["aws_access_key_id".into(), "aws_secret_access_key".into()],
        ),
    ];
    assert_eq!(got, want);
    assert!(drctl::backends::vault::glob_match(
        "*.example",
        "a/b/c.env.example"
    ));
    assert!(!drctl::backends::vault::glob_match(
        "infrastructure/*.example",
        "kubernetes/x.example"
    ));
}

#[test]
fn kv_populate_asks_each_value_stops_half_way_and_resumes() {
    let (bao, init) = OpenBao::start_unsealed();
    let addr = bao.addr();
    let root = init.root_token.clone();
    bao.enable_kv2(&root, "secret");
    // A copy of the fixture repository, with a `.git` dir that must be ignored.
    let repo = tempfile::tempdir().unwrap();
    copy_dir(
        &crate::support::cli::root().join("tests/fixtures/vault/repo"),
        repo.path(),
    );
    std::fs::create_dir_all(repo.path().join(".git")).unwrap();
    std::fs::write(repo.path().join(".git/config.example"), "x=1\n").unwrap();
    // One secret exists already (written earlier by hand).
    let (s, _) = bao.request(
        "POST",
        "secret/data/infrastructure/cloudflare",
        Some(&root),
        Some(json!({"data": {"api_token": "cf-existing-token"}})),
    );
    assert_eq!(s, 200);

    let populate = Action::VaultKvPopulate(VaultKvPopulate {
        addr: Some(t(&addr)),
        token: Some(t("{{ inputs.token }}")),
        mount: t("secret"),
        repo: t(&repo.path().display().to_string()),
        pattern: None,
    });
    let opts = |dry_run| Opts {
        dry_run,
        inputs: vec![("token", root.clone(), true)],
        ..Default::default()
    };
    let r = perform(&vault(), &populate, &FakeOperator::new(&[]), opts(true));
    let l = r.ok().lines.join("\n");
    assert!(l.contains("4 secret(s), 7 key(s), from 4 file(s)"), "{l}");
    assert!(
        l.contains("would ask for and write secret/apps/immich: DB_PASSWORD, JWT_SECRET"),
        "{l}"
    );
    assert!(
        l.contains("already in Vault, skipped: secret/infrastructure/cloudflare"),
        "{l}"
    );
    // Unattended: says what is left, writes nothing.
    let r = perform(
        &vault(),
        &populate,
        &FakeOperator::unattended(),
        opts(false),
    );
    assert!(
        matches!(r.result, Err(ActionError::NeedsOperator(_))),
        "{}",
        r.err()
    );

    // The operator enters the first secret (two values), then stops (Ctrl-C).
    let op = FakeOperator::new(&["authentik-pg-pass", "authentik-secret-key"]);
    op.push_secret(None);
    let r = perform(&vault(), &populate, &op, opts(false));
    assert!(
        matches!(r.result, Err(ActionError::AbortedByOperator)),
        "{}",
        r.err()
    );
    let asked = op.asked();
    assert_eq!(asked[0], "secret/apps/authentik postgres_password");
    let left = r.events.clone();
    assert!(
        left.contains("still to do")
            && left.contains("secret/apps/immich (DB_PASSWORD, JWT_SECRET)")
            && left.contains("secret/infrastructure/velero-offsite"),
        "{left}"
    );
    assert_eq!(
        kv_data(&bao, &root, "apps/authentik").unwrap(),
        json!({"secret_key": "authentik-secret-key", "postgres_password": "authentik-pg-pass"})
    );
    assert!(kv_data(&bao, &root, "apps/immich").is_none());

    // The re-run asks only what is missing.
    let op = FakeOperator::new(&[
        "immich-db-pass",
        "immich-jwt-secret",
        "AKIAEXAMPLE",
        "velero-secret-key",
    ]);
    let r = perform(&vault(), &populate, &op, opts(false));
    let v = &r.ok().value;
    assert_eq!(
        v["written"],
        json!(["apps/immich", "infrastructure/velero-offsite"])
    );
    assert_eq!(
        v["present"],
        json!(["apps/authentik", "infrastructure/cloudflare"])
    );
    assert_eq!(op.asked().len(), 4);
    assert_eq!(
        kv_data(&bao, &root, "apps/immich").unwrap(),
        json!({"DB_PASSWORD": "immich-db-pass", "JWT_SECRET": "immich-jwt-secret"})
    );
    assert_eq!(
        kv_data(&bao, &root, "infrastructure/velero-offsite").unwrap()["aws_secret_access_key"],
        "velero-secret-key"
    );
    assert_eq!(
        kv_data(&bao, &root, "infrastructure/cloudflare").unwrap()["api_token"],
        "cf-existing-token",
        "untouched"
    );
    assert!(kv_data(&bao, &root, ".git/config").is_none());
    for s in ["immich-db-pass", "velero-secret-key", root.as_str()] {
        assert!(!r.visible().contains(s));
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Rekeys with the current shares from inputs, shows the new ones once, has two of them
/// entered back (after one mistake), and proves the new shares unseal and the old do not.
fn rekey_and_prove(bao: &mut OpenBao, init: &super::lab::BaoInit, method: &str, interactive: bool) {
    let addr = bao.addr();
    let rekey = Action::VaultRekey(VaultRekey {
        addr: Some(t(&addr)),
        token: Some(t("{{ inputs.token }}")),
        shares: 3,
        threshold: 2,
        method: RekeyMethod::Auto,
        recovery: false,
        keys: vec![t("{{ inputs.k1 }}"), t("{{ inputs.k2 }}")],
        verify: true,
    });
    let opts = |dry_run, quiet| Opts {
        dry_run,
        quiet,
        inputs: vec![
            ("token", init.root_token.clone(), true),
            ("k1", init.keys[0].clone(), true),
            ("k2", init.keys[1].clone(), true),
        ],
        ..Default::default()
    };
    let r = perform(&vault(), &rekey, &FakeOperator::new(&[]), opts(true, false));
    assert!(
        r.ok().lines.join("\n").contains(&format!("({method})")),
        "{:?}",
        r.ok().lines
    );
    let r = if interactive {
        let op = FakeOperator {
            echo_shown: true,
            ..FakeOperator::new(&[])
        };
        let r = perform(&vault(), &rekey, &op, opts(false, false));
        assert_eq!(op.shown().len(), 1, "shown once");
        let verify: Vec<String> = op
            .asked()
            .into_iter()
            .filter(|a| a.starts_with("Verify:"))
            .collect();
        assert_eq!(verify.len(), 3, "a typo, then two new shares: {verify:?}");
        r
    } else {
        // Nobody at the keyboard: the step's secret outputs hold the new shares.
        perform(
            &vault(),
            &rekey,
            &FakeOperator::unattended(),
            opts(false, true),
        )
    };
    let v = r.ok().value.clone();
    assert_eq!(v["method"], method);
    assert_eq!(v["verified"], true);
    let new: Vec<String> = serde_json::from_value(v["keys_base64"].clone()).unwrap();
    assert_eq!(new.len(), 3);
    for k in &new {
        assert!(!r.visible().contains(k.as_str()));
    }
    // Vault's word: after a restart the old shares fail and two new ones unseal.
    assert_only_new_shares_unseal(bao, init, &new);
}

/// After a restart, an old share is only progress (a second one is refused), and the new
/// shares unseal.
fn assert_only_new_shares_unseal(bao: &mut OpenBao, init: &super::lab::BaoInit, new: &[String]) {
    bao.restart();
    let s = bao
        .unseal_key(&init.keys[0])
        .expect("one share is progress");
    assert_eq!(s.progress, 1);
    assert!(
        bao.unseal_key(&init.keys[1]).is_err(),
        "old shares no longer unseal"
    );
    bao.unseal(&new[1..]);
}

#[test]
fn rekey_uses_sys_rekey_where_it_answers_and_rotate_root_where_it_does_not() {
    // The lab's listener enables the unauthenticated sys/rekey endpoints.
    let (mut a, init_a) = OpenBao::start_unsealed();
    rekey_and_prove(&mut a, &init_a, "rekey", true);

    // OpenBao's default (2.5+): sys/rekey answers 405; the authenticated API is used.
    let (mut b, init_b) = OpenBao::start_unsealed();
    b.disable_unauthed_rekey(&init_b.keys[..2]);
    rekey_and_prove(&mut b, &init_b, "rotate-root", false);
}

#[test]
fn rekey_shows_new_shares_once_and_has_them_entered_back() {
    let (bao, init) = OpenBao::start_unsealed();
    let rekey = Action::VaultRekey(VaultRekey {
        addr: Some(t(&bao.addr())),
        token: Some(t(&init.root_token)),
        shares: 2,
        threshold: 2,
        method: RekeyMethod::RotateRoot,
        recovery: false,
        keys: vec![],
        verify: true,
    });
    // Current shares asked masked (the first attempt wrong), then the verification asks for
    // two of the new shares: the fake cannot know them, so a wrong entry three times makes
    // drctl cancel the rekey and the old shares stay valid.
    let op = FakeOperator::new(&[
        &wrong_share(&init.keys[0]),
        &init.keys[1],
        &init.keys[0],
        &init.keys[1],
        "AAAAnot-a-new-share",
        "AAAAnot-a-new-share",
        "AAAAnot-a-new-share",
    ]);
    let r = perform(&vault(), &rekey, &op, Opts::default());
    let e = r.err();
    assert!(e.contains("cancelled") && e.contains("stay valid"), "{e}");
    assert_eq!(op.shown().len(), 1);
    assert!(
        r.events.contains("rejected the shares at the threshold"),
        "{}",
        r.events
    );
    assert_eq!(
        op.asked()
            .iter()
            .filter(|a| a.starts_with("Verify:"))
            .count(),
        3
    );
    let (s, v) = bao.request("GET", "sys/rotate/root/init", Some(&init.root_token), None);
    assert_eq!(
        (s, v["data"]["started"].clone()),
        (200, json!(false)),
        "no rekey left behind: {v}"
    );
    // The old shares still unseal after a restart.
    let mut bao = bao;
    bao.restart();
    bao.unseal(&init.keys[..2]);
}

// ---------------------------------------------------------------------------------------
// rekey with `verify: false`, then vault.rekey-verify
// ---------------------------------------------------------------------------------------

/// A `vault.rekey` with `verify: false` to 3 shares / threshold 2, with
/// the current shares from the inputs `k1`, `k2`.
fn rekey_pending_action(addr: &str) -> Action {
    Action::VaultRekey(VaultRekey {
        addr: Some(t(addr)),
        token: Some(t("{{ inputs.token }}")),
        shares: 3,
        threshold: 2,
        method: RekeyMethod::Auto,
        recovery: false,
        keys: vec![t("{{ inputs.k1 }}"), t("{{ inputs.k2 }}")],
        verify: false,
    })
}

/// A `vault.rekey-verify` with two new shares, from the inputs `n1`, `n2`.
fn rekey_verify_action(addr: &str) -> Action {
    Action::VaultRekeyVerify(VaultRekeyVerify {
        addr: Some(t(addr)),
        token: Some(t("{{ inputs.token }}")),
        method: RekeyMethod::Auto,
        recovery: false,
        keys: vec![t("{{ inputs.n1 }}"), t("{{ inputs.n2 }}")],
    })
}

/// Unattended (`--yes`, the new shares captured as secret outputs), with the inputs.
fn unattended(init: &super::lab::BaoInit, new: Option<&[String]>) -> Opts<'static> {
    let mut inputs = vec![
        ("token", init.root_token.clone(), true),
        ("k1", init.keys[0].clone(), true),
        ("k2", init.keys[1].clone(), true),
    ];
    if let Some(n) = new {
        inputs.push(("n1", n[0].clone(), true));
        inputs.push(("n2", n[1].clone(), true));
    }
    Opts {
        quiet: true,
        inputs,
        ..Default::default()
    }
}

/// The rekey status at `base` (`sys/rekey` or `sys/rotate/root`): (started, verification nonce).
fn rekey_state(bao: &OpenBao, base: &str, token: &str) -> (bool, String) {
    let (s, v) = bao.request("GET", &format!("{base}/init"), Some(token), None);
    assert_eq!(s, 200, "{base}/init: {v}");
    let d = if v["data"].is_object() {
        &v["data"]
    } else {
        &v
    };
    (
        d["started"].as_bool().unwrap_or(false),
        d["verification_nonce"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The whole crash-safe rotation against one server, through `method` at `base`.
fn rekey_pending_then_verify(
    bao: &mut OpenBao,
    init: &super::lab::BaoInit,
    method: &str,
    base: &str,
) {
    let addr = bao.addr();
    let root = init.root_token.clone();
    let rekey = rekey_pending_action(&addr);

    // 1. verify: false generates a new share and leaves it pending: the old ones still work.
    let r = perform(
        &vault(),
        &rekey,
        &FakeOperator::unattended(),
        unattended(init, None),
    );
    let v = r.ok().value.clone();
    assert_eq!(
        (v["method"].as_str(), v["verified"].as_bool()),
        (Some(method), Some(false)),
        "{v}"
    );
    let nonce = v["nonce"].as_str().unwrap_or_default().to_owned();
    assert!(!nonce.is_empty(), "the verification nonce is returned: {v}");
    let first: Vec<String> = serde_json::from_value(v["keys_base64"].clone()).unwrap();
    assert_eq!(first.len(), 3);
    assert!(
        !r.visible().contains(first[0].as_str()),
        "the new share is never shown"
    );
    assert!(r.visible().contains("pending verification"), "{}", r.events);
    assert_eq!(rekey_state(bao, base, &root), (true, nonce.clone()));

    // 2. Started again (a resumed run): the pending rekey is cancelled, a new one started.
    let r = perform(
        &vault(),
        &rekey,
        &FakeOperator::unattended(),
        unattended(init, None),
    );
    let v = r.ok().value.clone();
    assert!(
        r.visible().contains("already in progress")
            && r.visible().contains("cancelled the rekey left over"),
        "{}",
        r.events
    );
    let second: Vec<String> = serde_json::from_value(v["keys_base64"].clone()).unwrap();
    assert_ne!(first, second, "new shares");
    let (started, nonce2) = rekey_state(bao, base, &root);
    assert!(
        started && !nonce2.is_empty() && nonce2 != nonce,
        "a new pending rekey"
    );

    // 3. The first attempt's share no longer verifies: the rekey stays pending.
    let verify = rekey_verify_action(&addr);
    let r = perform(
        &vault(),
        &verify,
        &FakeOperator::unattended(),
        unattended(init, Some(&first)),
    );
    let e = r.err();
    assert!(
        e.contains("not the shares of the pending rekey") && e.contains("still work"),
        "{e}"
    );
    assert!(rekey_state(bao, base, &root).0, "still pending");

    // 4. Nothing verified yet: a restart (which drops the pending rekey, held in memory)
    //    and the old shares unseal.
    bao.restart();
    bao.unseal(&init.keys[..2]);
    assert!(
        !rekey_state(bao, base, &root).0,
        "a restart drops a pending rekey"
    );

    // 5. Nothing pending and the share is not Vault's: the documented failure, nothing
    //    changed (the test rekey cancelled again).
    let r = perform(
        &vault(),
        &verify,
        &FakeOperator::unattended(),
        unattended(init, Some(&second)),
    );
    let e = r.err();
    assert!(
        e.contains("no rekey is pending verification")
            && e.contains("NOT Vault's current")
            && e.contains("unseal it with the new"),
        "{e}"
    );
    assert!(
        r.visible().contains("no rekey is pending verification"),
        "{}",
        r.events
    );
    assert!(
        !rekey_state(bao, base, &root).0,
        "the test rekey is cancelled"
    );
    assert!(!r.visible().contains(second[0].as_str()));

    // 6. A fresh pending rekey, verified: from now on only the new share unseals.
    let r = perform(
        &vault(),
        &rekey,
        &FakeOperator::unattended(),
        unattended(init, None),
    );
    let new: Vec<String> = serde_json::from_value(r.ok().value["keys_base64"].clone()).unwrap();
    let r = perform(
        &vault(),
        &verify,
        &FakeOperator::unattended(),
        unattended(init, Some(&new)),
    );
    let v = r.ok().value.clone();
    assert_eq!(
        (v["verified"].as_bool(), v["state"].as_str()),
        (Some(true), Some("completed")),
        "{v}"
    );
    assert!(
        r.visible()
            .contains("only the new unseal key shares unseal Vault"),
        "{}",
        r.events
    );
    assert!(!r.visible().contains(new[0].as_str()));
    assert!(
        !rekey_state(bao, base, &root).0,
        "nothing pending after the verification"
    );

    // 7. Verified again (a resume after a crash right after Vault accepted it): nothing is
    //    pending, and the share is Vault's current one: success, nothing changed.
    let r = perform(
        &vault(),
        &verify,
        &FakeOperator::unattended(),
        unattended(init, Some(&new)),
    );
    let v = r.ok().value.clone();
    assert_eq!(v["state"], "already-current", "{v}");
    assert!(
        r.visible().contains("no rekey is pending verification"),
        "{}",
        r.events
    );
    assert!(
        !rekey_state(bao, base, &root).0,
        "the test rekey is cancelled"
    );

    // 8. Vault's word: after a restart the old shares are refused, the new one unseals.
    assert_only_new_shares_unseal(bao, init, &new);
}

#[test]
fn rekey_left_pending_keeps_the_old_key_until_rekey_verify_through_sys_rekey() {
    // The lab's listener enables the unauthenticated sys/rekey endpoints.
    let (mut bao, init) = OpenBao::start_unsealed();
    rekey_pending_then_verify(&mut bao, &init, "rekey", "sys/rekey");
}

#[test]
fn rekey_left_pending_keeps_the_old_key_until_rekey_verify_through_rotate_root() {
    // OpenBao's default (2.5+): sys/rekey answers 405; the authenticated API is used.
    let (mut bao, init) = OpenBao::start_unsealed();
    bao.disable_unauthed_rekey(&init.keys[..2]);
    rekey_pending_then_verify(&mut bao, &init, "rotate-root", "sys/rotate/root");
}

#[test]
fn rekey_verify_previews_in_a_rehearsal_and_refuses_a_started_rekey_without_new_shares() {
    let (bao, init) = OpenBao::start_unsealed();
    let addr = bao.addr();
    let root = init.root_token.clone();
    // A rekey whose current shares were never all entered: no new shares to verify.
    let (s, v) = bao.request(
        "PUT",
        "sys/rekey/init",
        None,
        Some(json!({"secret_shares": 1, "secret_threshold": 1, "require_verification": true})),
    );
    assert_eq!(s, 200, "{v}");
    let verify = rekey_verify_action(&addr);
    let r = perform(
        &vault(),
        &verify,
        &FakeOperator::unattended(),
        unattended(&init, Some(&init.keys[..2])),
    );
    let e = r.err();
    assert!(
        e.contains("never generated") && e.contains("run the rekey step again"),
        "{e}"
    );
    assert!(rekey_state(&bao, "sys/rekey", &root).0, "left as it was");
    // A rehearsal of the rekey says it would cancel it; of the verify, what it would do.
    let mut o = unattended(&init, None);
    o.dry_run = true;
    let r = perform(
        &vault(),
        &rekey_pending_action(&addr),
        &FakeOperator::unattended(),
        o,
    );
    assert!(
        r.visible().contains("would be cancelled first")
            && r.visible().contains("left pending verification"),
        "{}",
        r.events
    );
    let (s, _) = bao.request("DELETE", "sys/rekey/init", None, None);
    assert_eq!(s, 204);
    let mut o = unattended(&init, Some(&init.keys[..2]));
    o.dry_run = true;
    let r = perform(&vault(), &verify, &FakeOperator::unattended(), o);
    assert!(r.visible().contains("would check whether"), "{}", r.events);
    assert!(
        !rekey_state(&bao, "sys/rekey", &root).0,
        "a rehearsal starts nothing"
    );
}

#[test]
fn wait_unsealed_times_out_saying_why_then_succeeds_when_another_thread_unseals() {
    let (mut bao, init) = OpenBao::start_unsealed();
    bao.restart();
    let wait = Action::VaultWaitUnsealed(VaultWaitUnsealed {
        addr: Some(t(&bao.addr())),
        unsealed_by: Some(t("the test thread")),
    });
    let r = perform(
        &vault(),
        &wait,
        &FakeOperator::unattended(),
        Opts {
            timeout: Some(Duration::from_millis(2500)),
            ..Default::default()
        },
    );
    let e = r.err();
    assert!(matches!(r.result, Err(ActionError::Timeout(_))), "{e}");
    assert!(
        e.contains("still sealed, progress 0/2") && e.contains("the test thread"),
        "{e}"
    );
    assert!(
        r.events
            .contains("sealed, progress 0/2, waiting for the test thread"),
        "{}",
        r.events
    );

    let addr = bao.addr();
    let keys = init.keys.clone();
    let unsealer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        for k in &keys[..2] {
            let r = super::lab::http(
                "PUT",
                &format!("{addr}/v1/sys/unseal"),
                &[],
                json!({ "key": k }).to_string().as_bytes(),
            )
            .unwrap();
            assert_eq!(r.status, 200);
        }
    });
    let started = Instant::now();
    let r = perform(
        &vault(),
        &wait,
        &FakeOperator::unattended(),
        Opts {
            timeout: Some(Duration::from_secs(30)),
            ..Default::default()
        },
    );
    unsealer.join().unwrap();
    assert_eq!(r.ok().value["sealed"], false);
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(!bao.seal_status().sealed);
}

#[test]
fn drctl_runs_a_vault_runbook_end_to_end_with_yes() {
    let (mut bao, init) = OpenBao::start_unsealed();
    bao.enable_kv2(&init.root_token, "secret");
    bao.restart();
    let state = tempfile::tempdir().unwrap();
    let out = drctl_cmd(state.path())
        .args([
            "run",
            "tests/fixtures/vault/vault-e2e.yaml",
            "--yes",
            "--output",
            "json",
        ])
        .arg("--state-dir")
        .arg(state.path())
        .envs(bao.env(&init.root_token))
        .env("DRCTL_INPUT_UNSEAL_KEY_1", &init.keys[0])
        .env("DRCTL_INPUT_UNSEAL_KEY_2", &init.keys[2])
        .env("DRCTL_INPUT_DB_PASSWORD", "e2e-db-password-value")
        .output()
        .unwrap();
    let text = format!("{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{text}");
    // Vault's word, not drctl's.
    assert!(!bao.seal_status().sealed);
    assert_eq!(
        kv_data(&bao, &init.root_token, "apps/e2e").unwrap(),
        json!({"db_password": "e2e-db-password-value", "user": "e2e"})
    );
    for s in [
        init.keys[0].as_str(),
        init.keys[2].as_str(),
        init.root_token.as_str(),
        "e2e-db-password-value",
    ] {
        assert!(!text.contains(s), "secret in drctl's output: {text}");
    }
    assert_not_written(
        state.path(),
        &[],
        &[
            init.keys[0].as_str(),
            init.root_token.as_str(),
            "e2e-db-password-value",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// vault-data-loss: unattended init (save_to) and kv-populate from DRCTL_KV_* values
// ---------------------------------------------------------------------------------------

#[test]
fn unattended_init_needs_save_to_and_writes_a_new_private_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let bao = OpenBao::start();
    let addr = bao.addr();
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("init.json");
    let init = |save_to: Option<&str>| {
        Action::VaultInit(VaultInit {
            addr: Some(t(&addr)),
            shares: 3,
            threshold: 2,
            recovery: false,
            save_to: save_to.map(t),
        })
    };
    let backend = VaultBackend::from_lookup(|_| None).alone();
    // Unattended, even with secret outputs capturing the result (quiet): refused before init.
    let quiet = || Opts {
        quiet: true,
        ..Default::default()
    };
    let r = perform(&backend, &init(None), &FakeOperator::unattended(), quiet());
    assert!(
        matches!(&r.result, Err(ActionError::NeedsOperator(m)) if m.contains("init_keys_file")),
        "{}",
        r.err()
    );
    let r = perform(
        &backend,
        &init(Some("")),
        &FakeOperator::unattended(),
        quiet(),
    );
    assert!(
        matches!(r.result, Err(ActionError::NeedsOperator(_))),
        "empty save_to is none"
    );
    assert!(!bao.seal_status().initialized, "nothing initialised");
    // An existing file is never overwritten: refused before init, in a rehearsal too.
    std::fs::write(&file, "keep me\n").expect("write");
    let path = file.display().to_string();
    for dry_run in [true, false] {
        let r = perform(
            &backend,
            &init(Some(&path)),
            &FakeOperator::unattended(),
            Opts {
                dry_run,
                quiet: true,
                ..Default::default()
            },
        );
        assert!(r.err().contains("exists already"), "{}", r.err());
    }
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me\n");
    assert!(!bao.seal_status().initialized, "nothing initialised");
    let r = perform(
        &backend,
        &init(Some(
            &dir.path().join("no/such/dir/x.json").display().to_string(),
        )),
        &FakeOperator::unattended(),
        quiet(),
    );
    assert!(r.err().contains("not a directory"), "{}", r.err());
    std::fs::remove_file(&file).expect("remove");

    let r = perform(
        &backend,
        &init(Some(&path)),
        &FakeOperator::unattended(),
        quiet(),
    );
    let v = r.ok().value.clone();
    assert!(bao.seal_status().initialized, "Vault says initialised");
    let mode = std::fs::metadata(&file)
        .expect("the file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("JSON");
    assert_eq!(saved["root_token"], v["root_token"]);
    assert_eq!(saved["keys_base64"], v["keys_base64"]);
    let root = v["root_token"].as_str().expect("a root token");
    let visible = r.visible();
    assert!(!visible.contains(root), "token leaked: {visible}");
    assert!(visible.contains(&path), "the file is named: {visible}");
}

#[test]
fn kv_populate_takes_drctl_kv_values_and_names_the_missing_ones() {
    assert_eq!(
        drctl::backends::vault::kv_env_name(
            "infrastructure/velero-offsite",
            "aws_secret_access_key"
        ),
        "DRCTL_KV_INFRASTRUCTURE_VELERO_OFFSITE__AWS_SECRET_ACCESS_KEY"
    );
    let (bao, init) = OpenBao::start_unsealed();
    let addr = bao.addr();
    let root = init.root_token.clone();
    bao.enable_kv2(&root, "secret");
    let repo = tempfile::tempdir().expect("a temp dir");
    copy_dir(
        &crate::support::cli::root().join("tests/fixtures/vault/repo"),
        repo.path(),
    );
    let populate = Action::VaultKvPopulate(VaultKvPopulate {
        addr: Some(t(&addr)),
        token: Some(t("{{ inputs.token }}")),
        mount: t("secret"),
        repo: t(&repo.path().display().to_string()),
        pattern: None,
    });
    let opts = |dry_run| Opts {
        dry_run,
        inputs: vec![("token", root.clone(), true)],
        ..Default::default()
    };
    let mut env: std::collections::BTreeMap<&str, &str> = [
        (
            "DRCTL_KV_INFRASTRUCTURE_CLOUDFLARE__API_TOKEN",
            "cf-env-token",
        ),
        (
            "DRCTL_KV_INFRASTRUCTURE_VELERO_OFFSITE__AWS_ACCESS_KEY_ID",
            "AKIAENV",
        ),
        (
            "DRCTL_KV_INFRASTRUCTURE_VELERO_OFFSITE__AWS_SECRET_ACCESS_KEY",
            "velero-env-secret",
        ),
        ("DRCTL_KV_APPS_AUTHENTIK__SECRET_KEY", "ak-env-sk"),
        ("DRCTL_KV_APPS_AUTHENTIK__POSTGRES_PASSWORD", "ak-env-pg"),
        ("DRCTL_KV_APPS_IMMICH__DB_PASSWORD", "immich-env-db"),
    ]
    .into_iter()
    .collect();
    let backend = |env: &std::collections::BTreeMap<&str, &str>| {
        let m: std::collections::BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        VaultBackend::from_lookup(|_| None)
            .with_kv_env(move |k| m.get(k).cloned())
            .alone()
    };
    // Rehearsal: names each variable and whether it is set, never a value.
    let r = perform(
        &backend(&env),
        &populate,
        &FakeOperator::unattended(),
        opts(true),
    );
    let l = r.ok().lines.join("\n");
    assert!(
        l.contains("DRCTL_KV_APPS_IMMICH__JWT_SECRET (not set)"),
        "{l}"
    );
    assert!(l.contains("DRCTL_KV_APPS_IMMICH__DB_PASSWORD (set)"), "{l}");
    assert!(!l.contains("immich-env-db"), "{l}");
    // Unattended, one value missing: the complete secrets are written, the step stops
    // naming the missing variable, and apps/immich is not written in part.
    let r = perform(
        &backend(&env),
        &populate,
        &FakeOperator::unattended(),
        opts(false),
    );
    assert!(
        matches!(&r.result, Err(ActionError::NeedsOperator(m)) if m.contains("DRCTL_KV_APPS_IMMICH__JWT_SECRET") && !m.contains("DB_PASSWORD")),
        "{}",
        r.err()
    );
    assert_eq!(
        kv_data(&bao, &root, "infrastructure/velero-offsite").expect("written"),
        json!({"aws_access_key_id": "AKIAENV", "aws_secret_access_key": "velero-env-secret"})
    );
    assert!(kv_data(&bao, &root, "apps/immich").is_none());
    for v in env.values() {
        assert!(!r.visible().contains(v), "a value leaked: {}", r.visible());
        assert_eq!(r.redactor.redact(v), "****");
    }
    // Interactive, the missing one is asked (masked); the rest come from the environment.
    let op = FakeOperator::new(&["immich-typed-jwt"]);
    let r = perform(&backend(&env), &populate, &op, opts(false));
    assert_eq!(r.ok().value["written"], json!(["apps/immich"]));
    assert_eq!(op.asked(), vec!["secret/apps/immich JWT_SECRET".to_owned()]);
    assert_eq!(
        kv_data(&bao, &root, "apps/immich").expect("written"),
        json!({"DB_PASSWORD": "immich-env-db", "JWT_SECRET": "immich-typed-jwt"})
    );
    // Everything present: nothing asked, nothing written.
    env.clear();
    let r = perform(
        &backend(&env),
        &populate,
        &FakeOperator::unattended(),
        opts(false),
    );
    assert_eq!(r.ok().value["written"], json!([]));
}
