//! KV v2: reads and writes (retried while a new mount upgrades), `vault.kv-put`,
//! `vault.kv-get`, and `vault.kv-populate` (the secrets the `.example` files name, values
//! from `DRCTL_KV_*` variables or asked masked).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vaultrs::error::ClientError;

use super::conn::{ACTIVE_WAIT, Conn, cancellable};
use super::examples::{ExampleSecret, example_secrets};
use super::shares::ask_secret;
use super::{Out, Res, VaultBackend, VaultError, render};
use crate::exec::backend::{ActionCtx, ActionResult};
use crate::runbook::action::{VaultKvGet, VaultKvPopulate, VaultKvPut};
use crate::runbook::{Sink, Text};

impl Conn {
    /// KV v2 data and version at `mount/path`; None when absent (or its latest version
    /// is deleted).
    async fn kv_read(
        &self,
        ctx: &ActionCtx<'_>,
        mount: &str,
        path: &str,
    ) -> Res<Option<BTreeMap<String, Value>>> {
        let what = format!("reading `{mount}/{path}`");
        let r = kv_retrying(ctx, || {
            vaultrs::kv2::read::<BTreeMap<String, Value>>(&self.client, mount, path)
        })
        .await?;
        match r {
            Ok(d) => Ok(Some(d)),
            Err(ClientError::APIError { code: 404, errors })
                if !errors.iter().any(|e| e.contains("no handler for route")) =>
            {
                Ok(None)
            }
            // A deleted latest version reads as data: null.
            Err(ClientError::JsonParseError { .. }) => Ok(None),
            Err(e) => Err(self.client_error(ctx, &what, mount, e).await),
        }
    }

    /// KV v2 write; `cas` 0 creates only, Some(v) replaces version v only.
    async fn kv_write(
        &self,
        ctx: &ActionCtx<'_>,
        mount: &str,
        path: &str,
        data: &BTreeMap<String, String>,
        cas: Option<u64>,
    ) -> Res<u64> {
        let what = format!("writing `{mount}/{path}`");
        let r = kv_retrying(ctx, || async move {
            match cas {
                Some(v) => {
                    let opts = vaultrs::api::kv2::requests::SetSecretRequestOptions {
                        cas: u32::try_from(v).unwrap_or(u32::MAX),
                    };
                    vaultrs::kv2::set_with_options(&self.client, mount, path, data, opts).await
                }
                None => vaultrs::kv2::set(&self.client, mount, path, data).await,
            }
        })
        .await?;
        match r {
            Ok(meta) => Ok(meta.version),
            Err(ClientError::APIError { code: 400, errors })
                if errors.iter().any(|e| e.contains("check-and-set")) =>
            {
                Err(VaultError::Invalid(format!(
                    "`{mount}/{path}` changed while drctl was writing it (someone else wrote it); run the step again"
                )))
            }
            Err(e) => Err(self.client_error(ctx, &what, mount, e).await),
        }
    }
}

/// The answer of `op` (one KV call), asked again (after a pause) while the mount answers
/// "Upgrading from non-versioned to versioned data", as a KV v2 mount does for a moment
/// after it is mounted or Vault is unsealed.
async fn kv_retrying<T, F>(ctx: &ActionCtx<'_>, op: impl Fn() -> F) -> Res<Result<T, ClientError>>
where
    F: Future<Output = Result<T, ClientError>>,
{
    let since = Instant::now();
    loop {
        let r = cancellable(ctx, op()).await?;
        let upgrading = matches!(&r, Err(ClientError::APIError { code: 400, errors })
            if errors.iter().any(|e| e.contains("Upgrading from non-versioned")));
        if !upgrading || since.elapsed() > ACTIVE_WAIT {
            return Ok(r);
        }
        ctx.progress("the KV mount is upgrading to versioned data; retrying".to_owned());
        cancellable(ctx, tokio::time::sleep(Duration::from_millis(300))).await?;
    }
}

/// A KV mount or path from the runbook, without surrounding blanks and slashes.
fn kv_segment(ctx: &ActionCtx<'_>, t: &Text) -> Res<String> {
    Ok(render(ctx, t, Sink::Shown)?
        .trim()
        .trim_matches('/')
        .to_owned())
}

fn kv_path(ctx: &ActionCtx<'_>, mount: &Text, path: &Text) -> Res<(String, String)> {
    let mount = kv_segment(ctx, mount)?;
    let path = kv_segment(ctx, path)?;
    if mount.is_empty() || path.is_empty() {
        return Err(VaultError::Invalid(
            "the KV `mount` and `path` must not be empty".into(),
        ));
    }
    Ok((mount, path))
}

fn names<'a>(keys: impl IntoIterator<Item = &'a String>) -> String {
    let v: Vec<&str> = keys.into_iter().map(String::as_str).collect();
    if v.is_empty() {
        "no keys".to_owned()
    } else {
        v.join(", ")
    }
}

/// A KV value as the text it was written from (strings as is, others as JSON).
pub(super) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl VaultBackend {
    pub(super) async fn kv_put(&self, a: &VaultKvPut, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), a.token.as_ref(), &mut out)?;
        let (mount, path) = kv_path(ctx, &a.mount, &a.path)?;
        let what = format!("writing `{mount}/{path}`");
        let mut data = BTreeMap::new();
        for (k, v) in &a.data {
            data.insert(k.clone(), render(ctx, v, Sink::Hidden)?);
        }
        let keys: Vec<&String> = a.data.keys().collect();
        conn.require_token(&what)?;
        let s = conn.seal_status(ctx).await?;
        if ctx.dry_run && !s.open() {
            out.say(
                ctx,
                format!(
                    "Vault at {} is {} now, so the current secret cannot be read; would write `{mount}/{path}` with keys {}",
                    conn.addr,
                    s.summary(),
                    names(keys.iter().copied())
                ),
            );
            return out.done(json!({ "mount": mount, "path": path, "keys": keys }));
        }
        conn.require_open(ctx, &what).await?;
        let current = conn.kv_read(ctx, &mount, &path).await?;
        let (changed, added, removed) = match &current {
            Some(cur) => (
                keys.iter()
                    .filter(|k| {
                        cur.get(k.as_str())
                            .is_some_and(|v| value_text(v) != data[k.as_str()])
                    })
                    .map(|k| (*k).clone())
                    .collect::<Vec<_>>(),
                keys.iter()
                    .filter(|k| !cur.contains_key(k.as_str()))
                    .map(|k| (*k).clone())
                    .collect::<Vec<_>>(),
                cur.keys()
                    .filter(|k| !data.contains_key(k.as_str()))
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            None => (
                Vec::new(),
                keys.iter().map(|k| (*k).clone()).collect(),
                Vec::new(),
            ),
        };
        let same =
            current.is_some() && changed.is_empty() && added.is_empty() && removed.is_empty();
        let plan = match &current {
            None => format!(
                "create `{mount}/{path}` with keys {}",
                names(keys.iter().copied())
            ),
            Some(_) if same => format!(
                "`{mount}/{path}` already holds these values (keys {})",
                names(keys.iter().copied())
            ),
            Some(_) => {
                let mut p = format!("replace `{mount}/{path}`:");
                if !changed.is_empty() {
                    let _ = write!(p, " new value for {};", names(&changed));
                }
                if !added.is_empty() {
                    let _ = write!(p, " add {};", names(&added));
                }
                if !removed.is_empty() {
                    let _ = write!(
                        p,
                        " REMOVE {} (kv put replaces the whole secret);",
                        names(&removed)
                    );
                }
                let unchanged: Vec<String> = keys
                    .iter()
                    .filter(|k| !changed.contains(k) && !added.contains(k))
                    .map(|k| (*k).clone())
                    .collect();
                if !unchanged.is_empty() {
                    let _ = write!(p, " unchanged {};", names(&unchanged));
                }
                p.trim_end_matches(';').to_owned()
            }
        };
        if ctx.dry_run {
            out.say(ctx, if same { plan } else { format!("would {plan}") });
            return out
                .done(json!({ "mount": mount, "path": path, "keys": keys, "unchanged": same }));
        }
        if same {
            out.say(ctx, format!("{plan}; nothing written"));
            return out.done(json!({ "mount": mount, "path": path, "keys": keys, "unchanged": true, "version": Value::Null }));
        }
        let version = conn.kv_write(ctx, &mount, &path, &data, None).await?;
        out.say(
            ctx,
            format!(
                "wrote `{mount}/{path}` version {version}: {}",
                plan.trim_start_matches("replace ")
                    .trim_start_matches("create ")
            ),
        );
        out.done(json!({
            "mount": mount,
            "path": path,
            "keys": keys,
            "version": version,
            "unchanged": false,
            "removed": removed,
        }))
    }

    pub(super) async fn kv_get(&self, a: &VaultKvGet, ctx: &ActionCtx<'_>) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), a.token.as_ref(), &mut out)?;
        let (mount, path) = kv_path(ctx, &a.mount, &a.path)?;
        let what = format!("reading `{mount}/{path}`");
        conn.require_token(&what)?;
        conn.require_open(ctx, &what).await?;
        let Some(data) = conn.kv_read(ctx, &mount, &path).await? else {
            return Err(VaultError::NoSecret {
                addr: conn.addr,
                mount,
                path,
            });
        };
        let present: Vec<String> = data.keys().cloned().collect();
        let missing: Vec<String> = a
            .keys
            .iter()
            .filter(|k| !data.contains_key(k.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(VaultError::MissingKeys {
                mount,
                path,
                missing: names(&missing),
                present: names(&present),
            });
        }
        // Values never leave this function: only key names and whether they are empty.
        let checked: Vec<&String> = if a.keys.is_empty() {
            present.iter().collect()
        } else {
            a.keys.iter().collect()
        };
        for k in &checked {
            let empty = data
                .get(k.as_str())
                .is_some_and(|v| value_text(v).is_empty() || v.is_null());
            out.say(
                ctx,
                format!("{k}: present{}", if empty { " (empty)" } else { "" }),
            );
        }
        out.done(json!({
            "mount": mount,
            "path": path,
            "keys": present,
            "present": checked.iter().map(|k| ((*k).clone(), Value::Bool(true))).collect::<serde_json::Map<_, _>>(),
        }))
    }
}

// ---------------------------------------------------------------------------------------
// KV populate (the example files themselves: `examples`)
// ---------------------------------------------------------------------------------------

/// The environment variable `vault.kv-populate` takes the value of `key` at the kv `path`
/// (under the mount) from: `DRCTL_KV_<PATH>__<KEY>`, upper-cased, every character other
/// than a letter or digit written `_` (`apps/immich`, `DB_PASSWORD` ->
/// `DRCTL_KV_APPS_IMMICH__DB_PASSWORD`).
pub fn kv_env_name(path: &str, key: &str) -> String {
    let part = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{KV_ENV_PREFIX}{}__{}", part(path), part(key))
}

/// The prefix of [`kv_env_name`]'s variables (scrubbed from child processes).
pub const KV_ENV_PREFIX: &str = "DRCTL_KV_";

/// Two (path, key) pairs whose variable names collide cannot be told apart.
fn kv_env_collisions(secrets: &[ExampleSecret]) -> Res<()> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for e in secrets {
        for k in &e.keys {
            let name = kv_env_name(&e.path, k);
            let this = format!("{} {k}", e.path);
            if let Some(other) = seen.insert(name.clone(), this.clone())
                && other != this
            {
                return Err(VaultError::Invalid(format!(
                    "`{other}` and `{this}` would both take their value from {name}: rename one of them in the example files"
                )));
            }
        }
    }
    Ok(())
}

/// A secret still to write: what the files name, what Vault holds, the keys to ask for.
type Todo = (ExampleSecret, Option<BTreeMap<String, Value>>, Vec<String>);

impl VaultBackend {
    pub(super) async fn kv_populate(
        &self,
        a: &VaultKvPopulate,
        ctx: &ActionCtx<'_>,
    ) -> Res<ActionResult> {
        let mut out = Out::default();
        let conn = self.connect(ctx, a.addr.as_ref(), a.token.as_ref(), &mut out)?;
        let mount = kv_segment(ctx, &a.mount)?;
        let repo = PathBuf::from(render(ctx, &a.repo, Sink::Shown)?.trim());
        let pattern = a.pattern.as_deref().unwrap_or("**/*.example");
        let secrets = example_secrets(&repo, pattern).map_err(VaultError::Invalid)?;
        kv_env_collisions(&secrets)?;
        let interactive = ctx.operator.interactive();
        let what = format!("populating `{mount}/`");
        conn.require_token(&what)?;
        let s = conn.seal_status(ctx).await?;
        let total_keys: usize = secrets.iter().map(|s| s.keys.len()).sum();
        out.say(
            ctx,
            format!(
                "{} secret(s), {total_keys} key(s), from {} file(s) matching `{pattern}` in {}",
                secrets.len(),
                secrets
                    .iter()
                    .flat_map(|s| &s.files)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                repo.display()
            ),
        );
        if ctx.dry_run && !s.open() {
            out.say(ctx, format!("Vault at {} is {} now, so what exists cannot be read; would ask for and write:", conn.addr, s.summary()));
            for e in &secrets {
                out.say(ctx, format!("  {mount}/{}: {}", e.path, names(&e.keys)));
            }
            return out.done(json!({ "mount": mount, "total": secrets.len(), "written": [], "present": [], "remaining": secrets.iter().map(|e| &e.path).collect::<Vec<_>>() }));
        }
        conn.require_open(ctx, &what).await?;
        // What is there already: re-running resumes where the last run stopped.
        let mut todo: Vec<Todo> = Vec::new();
        let mut present = Vec::new();
        for e in &secrets {
            let cur = conn.kv_read(ctx, &mount, &e.path).await?;
            let missing: Vec<String> = match &cur {
                Some(d) => e
                    .keys
                    .iter()
                    .filter(|k| !d.contains_key(k.as_str()))
                    .cloned()
                    .collect(),
                None => e.keys.clone(),
            };
            if missing.is_empty() {
                present.push(e.path.clone());
            } else {
                todo.push((e.clone(), cur, missing));
            }
        }
        if !present.is_empty() {
            out.say(
                ctx,
                format!(
                    "already in Vault, skipped: {}",
                    present
                        .iter()
                        .map(|p| format!("{mount}/{p}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let remaining_text = |todo: &[Todo]| -> Vec<String> {
            todo.iter()
                .map(|(e, _, m)| format!("{mount}/{} ({})", e.path, names(m)))
                .collect()
        };
        if ctx.dry_run {
            for (e, cur, missing) in &todo {
                out.say(ctx, match cur {
                    None => format!("would ask for and write {mount}/{}: {}", e.path, names(missing)),
                    Some(_) => format!("{mount}/{} exists without {}: would ask for them and write the secret with its other keys kept", e.path, names(missing)),
                });
                let vars: Vec<String> = missing
                    .iter()
                    .map(|k| {
                        let n = kv_env_name(&e.path, k);
                        let set = (self.kv_env)(&n).is_some();
                        format!("{n} ({})", if set { "set" } else { "not set" })
                    })
                    .collect();
                out.say(
                    ctx,
                    format!("  values from the environment: {}", vars.join(", ")),
                );
            }
            return out.done(json!({ "mount": mount, "total": secrets.len(), "written": [], "present": present, "remaining": todo.iter().map(|t| &t.0.path).collect::<Vec<_>>() }));
        }
        if todo.is_empty() {
            out.say(
                ctx,
                format!("every secret is in `{mount}/`; nothing to ask"),
            );
            return out.done(json!({ "mount": mount, "total": secrets.len(), "written": [], "present": present, "remaining": [] }));
        }
        let n = todo.len();
        let mut written = Vec::new();
        // Unattended: the secrets some of whose values are in no DRCTL_KV_* variable
        // (left as they are), and those variables.
        let mut blocked: Vec<Todo> = Vec::new();
        let mut unset: Vec<String> = Vec::new();
        let red = ctx.bus.redactor();
        let mut i = 0;
        while i < todo.len() {
            let (e, cur, missing) = &todo[i];
            // Values from the environment first (no prompt), then the operator.
            let mut from_env: BTreeMap<String, String> = BTreeMap::new();
            let mut absent = Vec::new();
            for k in missing {
                let var = kv_env_name(&e.path, k);
                match (self.kv_env)(&var) {
                    Some(v) => {
                        red.add(&v);
                        from_env.insert(k.clone(), v);
                    }
                    None => absent.push(var),
                }
            }
            if !interactive && !absent.is_empty() {
                blocked.push(todo[i].clone());
                unset.extend(absent);
                i += 1;
                continue;
            }
            ctx.progress(format!(
                "secret {}/{n}: {mount}/{}",
                written.len() + 1,
                e.path
            ));
            let mut data: BTreeMap<String, String> = cur
                .as_ref()
                .map(|d| d.iter().map(|(k, v)| (k.clone(), value_text(v))).collect())
                .unwrap_or_default();
            let mut stop = None;
            for k in missing {
                if let Some(v) = from_env.remove(k) {
                    data.insert(k.clone(), v);
                    continue;
                }
                match ask_secret(ctx, &format!("{mount}/{} {k}", e.path)) {
                    Ok(v) => {
                        data.insert(k.clone(), v);
                    }
                    Err(err) => {
                        stop = Some(err);
                        break;
                    }
                }
            }
            let res = match stop {
                Some(err) => Err(err),
                None => {
                    let cas = cur.as_ref().map(|_| None).unwrap_or(Some(0));
                    // An existing secret is merged: its version is not known from the read,
                    // so it is written without check-and-set.
                    conn.kv_write(ctx, &mount, &e.path, &data, cas).await
                }
            };
            match res {
                Ok(v) => {
                    out.say(
                        ctx,
                        format!("wrote {mount}/{} (version {v}): {}", e.path, names(missing)),
                    );
                    written.push(e.path.clone());
                    i += 1;
                }
                Err(err) => {
                    let mut left = remaining_text(&blocked);
                    left.extend(remaining_text(&todo[i..]));
                    out.say(
                        ctx,
                        format!(
                            "stopped: {} of {n} secret(s) written this time; still to do:",
                            written.len()
                        ),
                    );
                    for l in &left {
                        out.say(ctx, format!("  {l}"));
                    }
                    out.say(
                        ctx,
                        "run the step again to continue: secrets already in Vault are skipped"
                            .into(),
                    );
                    return Err(err);
                }
            }
        }
        if !blocked.is_empty() {
            out.say(
                ctx,
                format!(
                    "{} secret(s) written this time; still to do (their values are in no {KV_ENV_PREFIX}* variable):",
                    written.len()
                ),
            );
            for l in remaining_text(&blocked) {
                out.say(ctx, format!("to do: {l}"));
            }
            return Err(VaultError::NeedsOperator(format!(
                "{} secret(s) still to write to `{mount}/` ({}); with nobody to ask (--yes), set {} (one variable per key), or run this step without --yes to be asked (masked)",
                blocked.len(),
                blocked
                    .iter()
                    .map(|t| t.0.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                unset.join(", ")
            )));
        }
        out.say(
            ctx,
            format!(
                "done: {} secret(s) written, {} already present",
                written.len(),
                present.len()
            ),
        );
        out.done(json!({ "mount": mount, "total": secrets.len(), "written": written, "present": present, "remaining": [] }))
    }
}
