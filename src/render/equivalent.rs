//! The command an operator would type for each action (kubectl, vault, aws, ssh,
//! etcdctl, velero), so a printed checklist works when drctl cannot run.
//!
//! Every template value is filled in by the resolver and shell-quoted; the `<name>`
//! placeholders the resolver shows for secrets and unknown values stay bare so the
//! operator sees exactly what to replace. An entry may span lines (heredocs); lines
//! starting with `#` are notes.

use std::time::Duration;

use crate::runbook::action::{
    AssertScope, Assertion, CopyDirection, FileSource, HttpMethod, KeyState, RekeyMethod, Resource,
    WaitFor,
};
use crate::runbook::template::shell_quote;
use crate::runbook::{Action, Sink, Text};

use super::context::Resolver;

/// Command lines equivalent to the action, one per entry, without the step's timeout.
pub fn commands(action: &Action, r: &Resolver) -> Vec<String> {
    commands_with_timeout(action, r, None)
}

/// Command lines equivalent to the action; `timeout` (the step's) bounds the commands
/// that wait (`kubectl wait --timeout`, `kubectl rollout status --timeout`...).
pub fn commands_with_timeout(
    action: &Action,
    r: &Resolver,
    timeout: Option<Duration>,
) -> Vec<String> {
    let t = timeout.map(go_duration);
    let tflag = || {
        t.as_ref()
            .map(|t| format!(" --timeout={t}"))
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    match action {
        // The instructions and the question are printed with the step itself.
        Action::Manual(_) | Action::Input(_) | Action::Choose(_) => {}
        Action::Shell(a) => {
            let env = env_assignments(r, &a.env);
            let stdin = a
                .stdin
                .as_ref()
                .map(|s| format!("printf '%s' {} | ", q(r, s)));
            let cd = a.cwd.as_ref().map(|d| format!("cd {}", q(r, d)));
            if let Some(script) = &a.script {
                let script = r.text(script, Sink::Command);
                let script = script.trim_end_matches('\n');
                match &stdin {
                    // Piping into a script needs the script as one command.
                    Some(stdin) => out.push(format!(
                        "{}{stdin}{}bash -euo pipefail -c {}",
                        cd.as_ref().map(|c| format!("{c} && ")).unwrap_or_default(),
                        prefix(&env),
                        shell_quote(script)
                    )),
                    None => {
                        out.extend(cd.clone());
                        out.extend(env.iter().map(|e| format!("export {e}")));
                        out.push(script.to_owned());
                    }
                }
            }
            if !a.argv.is_empty() {
                let argv: Vec<String> = a.argv.iter().map(|t| q(r, t)).collect();
                out.push(format!(
                    "{}{}{}{}",
                    cd.map(|c| c + " && ").unwrap_or_default(),
                    stdin.unwrap_or_default(),
                    prefix(&env),
                    argv.join(" ")
                ));
            }
        }
        Action::Sleep(a) => out.push(format!("sleep {}", seconds(a.duration.value))),
        Action::Http(a) => {
            let head = if a.method == HttpMethod::Head {
                " -I"
            } else {
                ""
            };
            let ca = a
                .ca_cert
                .as_ref()
                .map(|c| format!(" --cacert {}", q(r, c)))
                .unwrap_or_default();
            let url = q(r, &a.url);
            // curl -f fails on 4xx/5xx only: other expected codes need the code printed.
            let plain = a.expect_status.iter().all(|s| (200..300).contains(s));
            let grep = a
                .contains
                .as_ref()
                .map(|c| format!(" | grep -F -- {}", q(r, c)))
                .unwrap_or_default();
            if plain {
                let expect = match a.expect_status.as_slice() {
                    [] | [200] => String::new(),
                    codes => format!("  # expect HTTP {}", join_codes(codes)),
                };
                out.push(format!("curl -fsS{head}{ca} {url}{grep}{expect}"));
            } else {
                out.push(format!(
                    "curl -sS{head}{ca} -o /dev/null -w '%{{http_code}}\\n' {url}  # expect HTTP {}",
                    join_codes(&a.expect_status)
                ));
                if !grep.is_empty() {
                    out.push(format!("curl -sS{head}{ca} {url}{grep}"));
                }
            }
        }

        // -------------------------------------------------------------------------------
        Action::KubeApply(a) => {
            let ns = a
                .namespace
                .as_ref()
                .map(|n| format!(" -n {}", q(r, n)))
                .unwrap_or_default();
            if let Some(f) = &a.file {
                out.push(format!("kubectl apply --server-side{ns} -f {}", q(r, f)));
            }
            if let Some(m) = &a.manifest {
                out.push(format!(
                    "kubectl apply --server-side{ns} -f - {}",
                    heredoc(&r.text(m, Sink::Shown))
                ));
            }
        }
        Action::KubeUse(a) => {
            out.push(format!("export KUBECONFIG={}", q(r, &a.kubeconfig)));
            if let Some(c) = &a.context {
                out.push(format!("kubectl config use-context {}", q(r, c)));
            }
        }
        Action::KubeNamespace(a) => out.push(format!(
            "kubectl create namespace {} --dry-run=client -o yaml | kubectl apply -f -",
            q(r, &a.name)
        )),
        Action::KubeSecret(a) => {
            let mut cmd = format!(
                "kubectl create secret generic {} --namespace {}",
                q(r, &a.name),
                q(r, &a.namespace)
            );
            if let Some(t) = &a.secret_type {
                cmd.push_str(&format!(" --type={}", shell_quote(t)));
            }
            for (k, v) in &a.literals {
                let arg = Word::flag(&format!("--from-literal={k}=")).then(word(r, v));
                cmd.push_str(&format!(" {}", arg.quoted()));
            }
            for (k, src) in &a.files {
                let key = shell_quote(&format!("--from-file={k}="));
                match src {
                    FileSource::Path(p) => {
                        let arg = Word::flag(&format!("--from-file={k}=")).then(word(r, p));
                        cmd.push_str(&format!(" {}", arg.quoted()));
                    }
                    // A multi-line file reads best as a heredoc, which keeps the bytes
                    // exact only when the content ends with a newline.
                    FileSource::Content(c) => {
                        let w = word(r, c);
                        let text = w.plain();
                        if text.contains('\n') && text.ends_with('\n') {
                            cmd.push_str(&format!(" {key}<(cat {}\n)", heredoc(&text)));
                        } else {
                            cmd.push_str(&format!(" {key}<(printf '%s' {})", w.quoted()));
                        }
                    }
                }
            }
            if a.replace {
                cmd.push_str(" --dry-run=client -o yaml | kubectl apply -f -");
            }
            out.push(cmd);
        }
        Action::KubeDelete(a) => {
            let res = &a.resource;
            let mut cmd = format!("kubectl delete {}", resource_args(r, res));
            if res.name.is_none() && res.selector.is_none() && res.field_selector.is_none() {
                cmd.push_str(" --all");
            }
            if a.ignore_not_found {
                cmd.push_str(" --ignore-not-found");
            }
            if a.wait {
                cmd.push_str(&tflag());
            } else {
                cmd.push_str(" --wait=false");
            }
            out.push(cmd);
        }
        Action::KubeGet(a) => {
            let res = &a.resource;
            let args = resource_args(r, res);
            if a.columns.is_empty() {
                out.push(format!("kubectl get {args} -o wide"));
            } else {
                let cols: Vec<String> = std::iter::once("NAME:.metadata.name".to_owned())
                    .chain(
                        column_titles(&a.columns)
                            .iter()
                            .zip(&a.columns)
                            .map(|(t, c)| format!("{t}:{}", jsonpath(c))),
                    )
                    .collect();
                out.push(format!(
                    "kubectl get {args} -o custom-columns={}",
                    shell_quote(&cols.join(","))
                ));
            }
            let list = res.name.is_none();
            for assertion in &a.assert {
                let path = jsonpath(&assertion.path);
                let tmpl = if list {
                    format!(
                        "{{range .items[*]}}{{.metadata.name}}{{\"\\t\"}}{{{path}}}{{\"\\n\"}}{{end}}"
                    )
                } else {
                    format!("{{{path}}}")
                };
                out.push(format!(
                    "kubectl get {args} -o jsonpath={}  # expect {}",
                    shell_quote(&tmpl),
                    note(&expectation(r, assertion, list))
                ));
            }
            let count = match (a.min_items, a.max_items) {
                (Some(min), Some(max)) if min == max => Some(format!("exactly {min}")),
                (Some(min), Some(max)) => Some(format!("between {min} and {max}")),
                (Some(min), None) => Some(format!("at least {min}")),
                (None, Some(max)) => Some(format!("at most {max}")),
                (None, None) => None,
            };
            if let Some(count) = count {
                out.push(format!(
                    "kubectl get {args} --no-headers | wc -l  # expect {count}"
                ));
            }
        }
        Action::KubeWait(a) => {
            let res = &a.resource;
            let mut cmd = format!("kubectl wait {}", wait_target(r, res));
            cmd.push_str(&match &a.wait_for {
                WaitFor::Condition(c) => format!(" --for=condition={}", shell_quote(c)),
                WaitFor::Field { path, equals } => format!(
                    " --for=jsonpath={}={}",
                    shell_quote(&format!("{{{}}}", jsonpath(path))),
                    q(r, equals)
                ),
                WaitFor::Deleted => " --for=delete".to_owned(),
            });
            cmd.push_str(&tflag());
            out.push(cmd);
        }
        Action::KubeRolloutRestart(a) => {
            let names: Vec<String> = a.names.iter().map(|n| format!(" {}", q(r, n))).collect();
            out.push(format!(
                "kubectl rollout restart {} -n {}{}",
                a.kind.as_str(),
                q(r, &a.namespace),
                names.concat()
            ));
        }
        Action::KubeRolloutStatus(a) => {
            let ns = q(r, &a.namespace);
            let kind = a.kind.as_str();
            if a.names.is_empty() {
                out.push(format!(
                    "for w in $(kubectl get {kind} -n {ns} -o name); do kubectl rollout status \"$w\" -n {ns}{}; done",
                    tflag()
                ));
            }
            for n in &a.names {
                let target = Word::flag(&format!("{kind}/")).then(word(r, n));
                out.push(format!(
                    "kubectl rollout status {} -n {ns}{}",
                    target.quoted(),
                    tflag()
                ));
            }
        }
        Action::KubePatch(a) => out.push(format!(
            "kubectl patch {} --type {} -p {}",
            resource_args(r, &a.resource),
            a.patch_type.as_str(),
            q(r, &a.patch)
        )),
        Action::KubeLogs(a) => {
            let ns = q(r, &a.namespace);
            let opts = format!(
                "{} --tail={}",
                a.container
                    .as_ref()
                    .map(|c| format!(" -c {}", q(r, c)))
                    .unwrap_or_default(),
                a.tail.unwrap_or(100)
            );
            if let Some(p) = &a.pod {
                out.push(format!("kubectl logs {} -n {ns}{opts}", q(r, p)));
            } else if let Some(s) = &a.selector {
                out.push(format!(
                    "kubectl logs -l {} -n {ns} --prefix{opts}",
                    q(r, s)
                ));
            } else if let Some(j) = &a.job {
                let target = Word::flag("job/").then(word(r, j));
                out.push(format!("kubectl logs {} -n {ns}{opts}", target.quoted()));
            } else if let Some(cj) = &a.cronjob {
                // Jobs a CronJob starts (or `create job --from=cronjob/...`) name it as owner.
                let filter = Word::raw("{range .items[?(@.metadata.ownerReferences[0].name==\"")
                    .then(word(r, cj))
                    .then(Word::raw("\")]}{.metadata.name}{\"\\n\"}{end}"));
                out.push(format!(
                    "job=$(kubectl get jobs -n {ns} --sort-by=.metadata.creationTimestamp -o jsonpath={} | tail -n 1)",
                    filter.quoted_raw()
                ));
                out.push(format!("kubectl logs \"job/$job\" -n {ns}{opts}"));
            }
        }
        Action::KubePortForward(a) => {
            let local = a.local_port.unwrap_or(a.port);
            out.push(format!(
                "kubectl port-forward -n {} {} {local}:{}",
                q(r, &a.namespace),
                q(r, &a.target),
                a.port
            ));
            out.push(format!(
                "# keep it running (a second terminal) while later steps use 127.0.0.1:{local}"
            ));
        }

        // -------------------------------------------------------------------------------
        Action::VaultStatus(a) => {
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
        Action::VaultWaitUnsealed(a) => {
            let env = vault_env(r, a.addr.as_ref(), None);
            // `vault status` exits 0 when unsealed, 2 when sealed, 1 when unreachable.
            let lp = format!("until {env}vault status >/dev/null; do sleep 5; done");
            out.push(match timeout {
                Some(d) => format!("timeout {} sh -c {}", d.as_secs().max(1), shell_quote(&lp)),
                None => lp,
            });
            if let Some(by) = &a.unsealed_by {
                out.push(format!("# unsealed by: {}", note(&r.text(by, Sink::Shown))));
            }
            out.push(OPENBAO.to_owned());
        }
        Action::VaultUnseal(a) => {
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
        Action::VaultInit(a) => {
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
        Action::VaultKvPut(a) => {
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
        Action::VaultKvGet(a) => {
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
        Action::VaultKvPopulate(a) => {
            let env = vault_env(r, a.addr.as_ref(), a.token.as_ref());
            let repo = word(r, &a.repo);
            let pattern = a.pattern.as_deref().unwrap_or("**/*.example");
            out.push(format!(
                "find {} {}",
                repo.quoted(),
                find_filter(&repo, pattern)
            ));
            out.push(
                "# each file names a KV path and its keys: write each path with its values"
                    .to_owned(),
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
        Action::VaultRekey(a) => {
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
        Action::VaultRekeyVerify(a) => {
            let env = vault_env(r, a.addr.as_ref(), a.token.as_ref());
            let target = if a.recovery { " -target=recovery" } else { "" };
            out.push(format!(
                "{env}vault operator rekey -verify -status{target}  # the pending verification and its nonce"
            ));
            let provide =
                format!("{env}vault operator rekey -verify{target} -nonce=<verification-nonce>");
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

        // -------------------------------------------------------------------------------
        Action::S3List(a) => {
            let url = s3_url(r, &a.bucket, a.prefix.as_ref());
            out.push(format!(
                "aws s3 ls {url} --recursive{}",
                aws_flags(r, a.endpoint.as_ref(), a.region.as_ref())
            ));
        }
        Action::S3Newest(a) => {
            let mut cmd = format!("aws s3api list-objects-v2 --bucket {}", q(r, &a.bucket));
            if let Some(p) = &a.prefix {
                cmd.push_str(&format!(" --prefix {}", q(r, p)));
            }
            let prefix = a
                .prefix
                .as_ref()
                .map(|p| word(r, p).map_lits(ere_escape))
                .unwrap_or_default();
            let re = Word::lit("^")
                .then(prefix)
                .then(word(r, &a.pattern).map_lits(glob_to_ere))
                .then(Word::lit("$"));
            out.push(format!(
                "{cmd} --query 'sort_by(Contents || `[]`, &LastModified)[].[Key]' --output text{} | grep -E {} | tail -n 1",
                aws_flags(r, a.endpoint.as_ref(), a.region.as_ref()),
                re.quoted()
            ));
        }
        Action::S3Download(a) => {
            let to = word(r, &a.to);
            out.push(format!(
                "aws s3 cp {} {}{}",
                s3_url(r, &a.bucket, Some(&a.key)),
                to.quoted(),
                aws_flags(r, a.endpoint.as_ref(), a.region.as_ref())
            ));
            if let Some(sum) = &a.sha256 {
                let line = word(r, sum).then(Word::lit("  ")).then(to);
                out.push(format!("echo {} | sha256sum -c -", line.quoted()));
            }
        }
        Action::S3Upload(a) => out.push(format!(
            "aws s3 cp {} {}{}",
            q(r, &a.from),
            s3_url(r, &a.bucket, Some(&a.key)),
            aws_flags(r, a.endpoint.as_ref(), a.region.as_ref())
        )),
        Action::KmsDescribe(a) => {
            let expect = a
                .expect_state
                .map(|s: KeyState| format!("  # expect {}", s.as_str()))
                .unwrap_or_default();
            out.push(format!(
                "aws kms describe-key --key-id {}{} --query KeyMetadata.KeyState --output text{expect}",
                q(r, &a.key_id),
                aws_flags(r, None, a.region.as_ref())
            ));
        }
        Action::KmsCancelDeletion(a) => {
            let key = q(r, &a.key_id);
            let region = aws_flags(r, None, a.region.as_ref());
            out.push(format!(
                "aws kms cancel-key-deletion --key-id {key}{region}"
            ));
            // CancelKeyDeletion leaves the key Disabled.
            if a.enable {
                out.push(format!("aws kms enable-key --key-id {key}{region}"));
            }
        }
        Action::KmsEnable(a) => out.push(format!(
            "aws kms enable-key --key-id {}{}",
            q(r, &a.key_id),
            aws_flags(r, None, a.region.as_ref())
        )),
        Action::KmsVerify(a) => {
            let key = q(r, &a.key_id);
            let region = aws_flags(r, None, a.region.as_ref());
            out.push(format!(
                "aws kms encrypt --key-id {key}{region} --plaintext fileb://<(printf drctl-verify) --query CiphertextBlob --output text | base64 -d | aws kms decrypt --key-id {key}{region} --ciphertext-blob fileb:///dev/stdin --query Plaintext --output text | base64 -d  # expect drctl-verify"
            ));
        }

        // -------------------------------------------------------------------------------
        Action::SshRun(a) => {
            let target = ssh_target(r, &a.host, a.user.as_ref());
            let command = r.text(&a.command, Sink::Command);
            let command = command.trim_end_matches('\n');
            let env = env_assignments(r, &a.env);
            if env.is_empty() && !a.sudo && !command.contains('\n') {
                out.push(format!("ssh {target} {}", shell_quote(command)));
            } else {
                // A script on stdin avoids quoting the command twice (ssh, then sh -c).
                let mut body: Vec<String> = env.iter().map(|e| format!("export {e}")).collect();
                body.push(command.to_owned());
                let sh = if a.sudo { "sudo sh -s" } else { "sh -s" };
                out.push(format!(
                    "ssh {target} {sh} {}",
                    heredoc(&(body.join("\n") + "\n"))
                ));
            }
        }
        Action::SshCopy(a) => {
            let target = ssh_target(r, &a.host, a.user.as_ref());
            let host_path = |path: &str| format!("{target}:{path}");
            let local = q(r, &a.local);
            let remote = q(r, &a.remote);
            let mode = a.mode.as_deref().map(shell_quote);
            match (a.direction, a.sudo) {
                (CopyDirection::Upload, false) => {
                    out.push(format!("scp {local} {}", host_path(&remote)));
                    if let Some(m) = &mode {
                        out.push(format!(
                            "ssh {target} {}",
                            shell_quote(&format!("chmod {m} {remote}"))
                        ));
                    }
                }
                (CopyDirection::Upload, true) => {
                    let tmp = "/tmp/drctl-upload";
                    out.push(format!("scp {local} {}", host_path(tmp)));
                    // `install -m` sets the mode as root; plain cp keeps an existing file's.
                    let put = match &mode {
                        Some(m) => format!("sudo install -m {m} {tmp} {remote}"),
                        None => format!("sudo cp {tmp} {remote}"),
                    };
                    out.push(format!(
                        "ssh {target} {}",
                        shell_quote(&format!("{put} && rm -f {tmp}"))
                    ));
                }
                (CopyDirection::Download, false) => {
                    out.push(format!("scp {} {local}", host_path(&remote)));
                }
                (CopyDirection::Download, true) => {
                    out.push(format!(
                        "ssh {target} {} > {local}",
                        shell_quote(&format!("sudo cat {remote}"))
                    ));
                }
            }
            if a.direction == CopyDirection::Download
                && let Some(m) = &mode
            {
                out.push(format!("chmod {m} {local}"));
            }
        }
        Action::EtcdSnapshotStatus(a) => {
            let snap = q(r, &a.snapshot);
            out.push(on_host(
                r,
                a.host.as_ref(),
                a.sudo,
                &format!("ETCDCTL_API=3 etcdctl snapshot status {snap} -w table"),
            ));
            out.push(format!(
                "# etcd 3.6 moved this to etcdutl: etcdutl snapshot status {snap} -w table"
            ));
        }
        Action::EtcdSnapshotRestore(a) => {
            let snap = q(r, &a.snapshot);
            let data = a
                .data_dir
                .as_ref()
                .map(|d| word(r, d))
                .unwrap_or_else(|| Word::lit("/var/lib/etcd"));
            let restore = a
                .restore_dir
                .as_ref()
                .map(|d| word(r, d))
                .unwrap_or_else(|| data.clone().then(Word::lit("-restore")));
            let restore_flag = Word::flag("--data-dir=").then(restore.clone()).quoted();
            let (data, restore) = (data.quoted(), restore.quoted());
            let host = a.host.as_ref();
            out.push(on_host(
                r,
                host,
                a.sudo,
                &format!("ETCDCTL_API=3 etcdctl snapshot restore {snap} {restore_flag}"),
            ));
            out.push(on_host(r, host, a.sudo, &format!("rm -rf {data}")));
            out.push(on_host(r, host, a.sudo, &format!("mv {restore} {data}")));
            out.push(format!(
                "# etcd 3.6 moved restore to etcdutl: etcdutl snapshot restore {snap} {restore_flag}"
            ));
        }

        // -------------------------------------------------------------------------------
        Action::VeleroBackups(a) => {
            let ns = ns_or(r, a.namespace.as_ref(), "velero");
            let mut cmd = format!("velero backup get -n {ns}");
            if let Some(loc) = &a.storage_location {
                let sel = Word::flag("velero.io/storage-location=").then(word(r, loc));
                cmd.push_str(&format!(" -l {}", sel.quoted()));
            }
            if a.require_completed {
                cmd.push_str("  # expect at least one Completed backup; the newest is used");
            }
            out.push(cmd);
        }
        Action::VeleroRestore(a) => {
            let ns = ns_or(r, a.namespace.as_ref(), "velero");
            let name = a.name.as_ref().map(|n| q(r, n));
            let mut cmd = format!(
                "velero restore create{} -n {ns} --from-backup {}",
                name.as_ref().map(|n| format!(" {n}")).unwrap_or_default(),
                q(r, &a.backup)
            );
            if !a.include_namespaces.is_empty() {
                let mut list = Word::default();
                for (i, n) in a.include_namespaces.iter().enumerate() {
                    if i > 0 {
                        list = list.then(Word::lit(","));
                    }
                    list = list.then(word(r, n));
                }
                cmd.push_str(&format!(" --include-namespaces {}", list.quoted()));
            }
            if a.wait {
                cmd.push_str(" --wait");
            }
            out.push(cmd);
            match name {
                Some(n) => out.push(format!("velero restore describe {n} -n {ns} --details")),
                None => out.push(format!(
                    "velero restore get -n {ns}  # the new restore is named after the backup: BACKUP-YYYYMMDDHHMMSS"
                )),
            }
            out.push(
                "# PartiallyFailed: read the errors (velero restore logs NAME) and decide before going on".to_owned(),
            );
        }
        Action::ArgocdApps(a) => {
            let ns = ns_or(r, a.namespace.as_ref(), "argocd");
            let names: Vec<String> = a.names.iter().map(|n| format!(" {}", q(r, n))).collect();
            out.push(format!("kubectl get {ARGO_APPS}{} -n {ns}", names.concat()));
        }
        Action::ArgocdWait(a) => {
            let ns = ns_or(r, a.namespace.as_ref(), "argocd");
            let which = if a.names.is_empty() {
                " --all".to_owned()
            } else {
                a.names.iter().map(|n| format!(" {}", q(r, n))).collect()
            };
            for (path, value) in [
                ("{.status.sync.status}", "Synced"),
                ("{.status.health.status}", "Healthy"),
            ] {
                out.push(format!(
                    "kubectl wait {ARGO_APPS}{which} -n {ns} --for=jsonpath='{path}'={value}{}",
                    tflag()
                ));
            }
        }
        Action::ArgocdRefresh(a) => {
            let ns = ns_or(r, a.namespace.as_ref(), "argocd");
            let name = q(r, &a.name);
            let (mode, flag) = if a.hard {
                ("hard", "--hard-refresh")
            } else {
                ("normal", "--refresh")
            };
            out.push(format!(
                "kubectl patch {ARGO_APPS} {name} -n {ns} --type merge -p '{{\"metadata\":{{\"annotations\":{{\"argocd.argoproj.io/refresh\":\"{mode}\"}}}}}}'"
            ));
            out.push(format!(
                "# or with the argocd CLI: argocd app get {name} {flag}"
            ));
        }
        Action::EsoWait(a) => {
            for s in &a.cluster_secret_stores {
                let target = Word::flag("clustersecretstore/").then(word(r, s));
                out.push(format!(
                    "kubectl wait {} --for=condition=Ready{}",
                    target.quoted(),
                    tflag()
                ));
            }
            if a.external_secrets {
                let scope = a
                    .namespace
                    .as_ref()
                    .map(|n| format!("-n {}", q(r, n)))
                    .unwrap_or_else(|| "-A".to_owned());
                out.push(format!(
                    "kubectl wait externalsecret --all {scope} --for=condition=Ready{}",
                    tflag()
                ));
            }
        }
        Action::LonghornBackups(a) => {
            let ns = ns_or(r, a.namespace.as_ref(), "longhorn-system");
            let mut cmd = format!("kubectl get backups.longhorn.io -n {ns}");
            if let Some(v) = &a.volume {
                let sel = Word::flag("backup-volume=").then(word(r, v));
                cmd.push_str(&format!(" -l {}", sel.quoted()));
            }
            out.push(cmd);
        }
        Action::LonghornRestore(a) => {
            let ns_word = a
                .namespace
                .as_ref()
                .map(|n| word(r, n))
                .unwrap_or_else(|| Word::lit("longhorn-system"));
            let ns = ns_word.quoted();
            let volumes: Vec<Word> = if a.volumes.is_empty() {
                out.push(format!(
                    "kubectl get backupvolumes.longhorn.io -n {ns}  # every volume listed here is restored"
                ));
                vec![Word::hole("<volume>")]
            } else {
                a.volumes.iter().map(|v| word(r, v)).collect()
            };
            for v in &volumes {
                let cols = "-o custom-columns=NAME:.metadata.name,STATE:.status.state,CREATED:.status.snapshotCreatedAt,SIZE:.status.volumeSize,URL:.status.url";
                match &a.backup {
                    Some(b) => out.push(format!(
                        "kubectl get backups.longhorn.io {} -n {ns} {cols}",
                        q(r, b)
                    )),
                    None => out.push(format!(
                        "kubectl get backups.longhorn.io -n {ns} -l {} --sort-by=.status.snapshotCreatedAt {cols}",
                        Word::flag("backup-volume=").then(v.clone()).quoted()
                    )),
                }
                let manifest = format!(
                    "apiVersion: longhorn.io/v1beta2\nkind: Volume\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n  fromBackup: \"<backup-url>\"\n  size: \"<volume-size>\"\n  numberOfReplicas: 3\n  frontend: blockdev\n",
                    v.plain(),
                    ns_word.plain()
                );
                out.push(format!("kubectl apply -f - {}", heredoc(&manifest)));
            }
            out.push(
                "# <backup-url>, <volume-size>: URL and SIZE of the newest Completed backup listed above".to_owned(),
            );
            out.push(
                "# or in the Longhorn UI: Backup > the volume > Restore Latest Backup, keeping the volume name".to_owned(),
            );
        }
    }
    out
}

const OPENBAO: &str = "# OpenBao: the bao CLI takes the same commands (BAO_ADDR, BAO_TOKEN)";
const ARGO_APPS: &str = "applications.argoproj.io";

// ---------------------------------------------------------------------------------------
// Shell words with placeholders
// ---------------------------------------------------------------------------------------

/// Part of a shell word.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// Literal text, quoted when the word is written.
    Lit(String),
    /// A `<name>` placeholder, written bare so it reads as something to replace.
    Hole(String),
    /// Text that is already valid shell syntax.
    Raw(String),
}

/// A shell word built from literal text and resolver placeholders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Word(Vec<Piece>);

impl Word {
    fn lit(s: &str) -> Word {
        Word(vec![Piece::Lit(s.to_owned())])
    }

    fn hole(s: &str) -> Word {
        Word(vec![Piece::Hole(s.to_owned())])
    }

    fn raw(s: &str) -> Word {
        Word(vec![Piece::Raw(s.to_owned())])
    }

    /// A fixed prefix (`--from-literal=KEY=`) quoted on its own, so that only the
    /// value after it shows quotes.
    fn flag(s: &str) -> Word {
        Word::raw(&shell_quote(s))
    }

    fn then(mut self, other: Word) -> Word {
        self.0.extend(other.0);
        self
    }

    /// The word as the shell reads it: literal runs quoted, placeholders bare.
    fn quoted(&self) -> String {
        let mut out = String::new();
        let mut run = String::new();
        for p in &self.0 {
            match p {
                Piece::Lit(s) => run.push_str(s),
                Piece::Hole(s) | Piece::Raw(s) => {
                    if !run.is_empty() {
                        out.push_str(&shell_quote(&run));
                        run.clear();
                    }
                    out.push_str(s);
                }
            }
        }
        if !run.is_empty() || out.is_empty() {
            out.push_str(&shell_quote(&run));
        }
        out
    }

    /// The word with `Raw` pieces treated as literal text, quoted once as a whole
    /// except for placeholders (for a jsonpath built around a value).
    fn quoted_raw(&self) -> String {
        Word(
            self.0
                .iter()
                .map(|p| match p {
                    Piece::Raw(s) => Piece::Lit(s.clone()),
                    other => other.clone(),
                })
                .collect(),
        )
        .quoted()
    }

    /// The text itself, placeholders included (heredoc bodies, comments).
    fn plain(&self) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Lit(s) | Piece::Hole(s) | Piece::Raw(s) => s.as_str(),
            })
            .collect()
    }

    /// Transform the literal text, leaving placeholders alone.
    fn map_lits(self, f: impl Fn(&str) -> String) -> Word {
        Word(
            self.0
                .into_iter()
                .map(|p| match p {
                    Piece::Lit(s) => Piece::Lit(f(&s)),
                    other => other,
                })
                .collect(),
        )
    }

    /// Whether the word is placeholders only (nothing real to hide).
    fn is_holes_only(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|p| matches!(p, Piece::Hole(_)))
    }
}

// Literal template text is wrapped in these private-use characters before rendering, so
// after rendering it can be told apart from values (quoted by the command template) and
// from placeholders (left bare by it).
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// The rendered value of a template field (a name, path, secret value...) as a word.
fn word(r: &Resolver, t: &Text) -> Word {
    if !t.is_template() {
        return Word::lit(&t.value);
    }
    let Some(marked) = mark_literals(&t.value) else {
        return Word::lit(&r.text(t, Sink::Shown));
    };
    let rendered = r.text(&Text::new(marked.clone()), Sink::Command);
    if rendered == marked {
        // The resolver keeps the template when it cannot render it.
        return Word::lit(&t.value);
    }
    let mut w = Word::default();
    let mut rest = rendered.as_str();
    while !rest.is_empty() {
        match rest.find(OPEN) {
            Some(i) => {
                w = w.then(unquote(&rest[..i]));
                let after = &rest[i + OPEN.len_utf8()..];
                let end = after.find(CLOSE).unwrap_or(after.len());
                w.0.push(Piece::Lit(after[..end].to_owned()));
                rest = after.get(end + CLOSE.len_utf8()..).unwrap_or_default();
            }
            None => {
                w = w.then(unquote(rest));
                rest = "";
            }
        }
    }
    w
}

/// A quoted shell word of a template field.
fn q(r: &Resolver, t: &Text) -> String {
    word(r, t).quoted()
}

/// Rendered values as the command template writes them: shell-quoted words, and bare
/// `<name>` placeholders. Anything else (a value marked `| raw`) stays literal.
fn unquote(s: &str) -> Word {
    let mut w = Word::default();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '\'' {
                        closed = true;
                        break;
                    }
                    cur.push(c);
                }
                if !closed {
                    return Word::lit(s);
                }
            }
            '\\' => cur.extend(chars.next()),
            '<' => {
                let rest = chars.as_str();
                match rest.find('>') {
                    Some(end) => {
                        if !cur.is_empty() {
                            w.0.push(Piece::Lit(std::mem::take(&mut cur)));
                        }
                        w.0.push(Piece::Hole(format!("<{}>", &rest[..end])));
                        chars = rest[end + 1..].chars();
                    }
                    None => cur.push(c),
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        w.0.push(Piece::Lit(cur));
    }
    w
}

/// The template with its literal text between `OPEN` and `CLOSE`; `None` when the
/// template cannot be split (it would not render either). Whitespace control (`{{-`,
/// `-}}`) is applied here since the markers would stop it.
fn mark_literals(src: &str) -> Option<String> {
    let mut out = String::new();
    let mut lit = String::new();
    let mut trim_next = false;
    let mut i = 0;
    while i < src.len() {
        let rest = &src[i..];
        if rest.starts_with("{{") || rest.starts_with("{%") || rest.starts_with("{#") {
            let end = i + tag_len(rest)?;
            let tag = &src[i..end];
            if tag[2..].starts_with('-') {
                lit.truncate(lit.trim_end().len());
            }
            if !lit.is_empty() {
                out.push(OPEN);
                out.push_str(&lit);
                out.push(CLOSE);
                lit.clear();
            }
            out.push_str(tag);
            trim_next = tag[..tag.len() - 2].ends_with('-');
            i = end;
        } else {
            let c = rest.chars().next()?;
            if !(trim_next && c.is_whitespace()) {
                trim_next = false;
                lit.push(c);
            }
            i += c.len_utf8();
        }
    }
    if !lit.is_empty() {
        out.push(OPEN);
        out.push_str(&lit);
        out.push(CLOSE);
    }
    Some(out)
}

/// Length of the tag `s` starts with (`{{ ... }}`, `{% ... %}`, `{# ... #}`), skipping
/// string literals inside expressions.
fn tag_len(s: &str) -> Option<usize> {
    let kind = s.as_bytes().get(1).copied()?;
    if kind == b'#' {
        return s[2..].find("#}").map(|e| e + 4);
    }
    let close = if kind == b'{' { "}}" } else { "%}" };
    let bytes = s.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 2;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(qc) => {
                if b == b'\\' {
                    i += 1;
                } else if b == qc {
                    quote = None;
                }
            }
            None => {
                if b == b'"' || b == b'\'' {
                    quote = Some(b);
                } else if s[i..].starts_with(close) {
                    return Some(i + 2);
                }
            }
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `<<'EOF'` and the body, with a delimiter that no line of the body equals.
fn heredoc(body: &str) -> String {
    let mut delim = "EOF".to_owned();
    let mut n = 1;
    while body.lines().any(|l| l == delim) {
        delim = format!("EOF{n}");
        n += 1;
    }
    let nl = if body.ends_with('\n') { "" } else { "\n" };
    format!("<<'{delim}'\n{body}{nl}{delim}")
}

/// A comment must stay on one line, or the rest would run as a command.
fn note(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `KEY=value` words of an environment map (secret inputs come out as placeholders).
fn env_assignments(r: &Resolver, env: &indexmap::IndexMap<String, Text>) -> Vec<String> {
    env.iter()
        .map(|(k, v)| Word::raw(&format!("{k}=")).then(word(r, v)).quoted())
        .collect()
}

fn prefix(env: &[String]) -> String {
    env.iter().map(|e| format!("{e} ")).collect()
}

/// How a key share is named in a note: its placeholder, never a value.
fn share_name(r: &Resolver, t: &Text) -> String {
    let w = word(r, t);
    if w.is_holes_only() {
        w.plain()
    } else {
        "the share".to_owned()
    }
}

fn vault_env(r: &Resolver, addr: Option<&Text>, token: Option<&Text>) -> String {
    let mut s = String::new();
    if let Some(a) = addr {
        s.push_str(&format!("VAULT_ADDR={} ", q(r, a)));
    }
    if let Some(t) = token {
        s.push_str(&format!("VAULT_TOKEN={} ", q(r, t)));
    }
    s
}

fn ns_or(r: &Resolver, ns: Option<&Text>, default: &str) -> String {
    ns.map(|n| q(r, n)).unwrap_or_else(|| default.to_owned())
}

/// `--timeout` for kubectl: Go's duration syntax has no days.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Seconds for `sleep`, with a fraction when needed.
fn seconds(d: Duration) -> String {
    let ms = d.subsec_millis();
    if ms == 0 {
        d.as_secs().to_string()
    } else {
        let frac = format!("{ms:03}");
        format!("{}.{}", d.as_secs(), frac.trim_end_matches('0'))
    }
}

fn join_codes(codes: &[u16]) -> String {
    let codes: Vec<String> = codes.iter().map(u16::to_string).collect();
    codes.join(" or ")
}

/// `TYPE [NAME] [-n NS | -A] [-l SEL] [--field-selector FS]`.
fn resource_args(r: &Resolver, res: &Resource) -> String {
    let mut s = resource_type(res);
    if let Some(n) = &res.name {
        s.push_str(&format!(" {}", q(r, n)));
    }
    s.push_str(&scope_flags(r, res));
    s
}

/// `kubectl wait` takes `TYPE/NAME`, or a type with a selector or `--all`.
fn wait_target(r: &Resolver, res: &Resource) -> String {
    let mut s = match &res.name {
        Some(n) => Word::raw(&format!("{}/", resource_type(res)))
            .then(word(r, n))
            .quoted(),
        None => resource_type(res),
    };
    if res.name.is_none() && res.selector.is_none() && res.field_selector.is_none() {
        s.push_str(" --all");
    }
    s.push_str(&scope_flags(r, res));
    s
}

fn scope_flags(r: &Resolver, res: &Resource) -> String {
    let mut s = String::new();
    if res.all_namespaces {
        s.push_str(" -A");
    } else if let Some(ns) = &res.namespace {
        s.push_str(&format!(" -n {}", q(r, ns)));
    }
    if let Some(sel) = &res.selector {
        s.push_str(&format!(" -l {}", q(r, sel)));
    }
    if let Some(fs) = &res.field_selector {
        s.push_str(&format!(" --field-selector {}", q(r, fs)));
    }
    s
}

/// The kind, qualified as `Kind.version.group` when the API version names a group so
/// that kubectl picks the right CRD.
fn resource_type(res: &Resource) -> String {
    let t = match res.api_version.as_deref().and_then(|v| v.split_once('/')) {
        Some((group, version)) if !group.is_empty() => {
            format!("{}.{version}.{group}", res.kind)
        }
        _ => res.kind.clone(),
    };
    shell_quote(&t)
}

/// A dotted field path (`status.conditions[type=Ready].status`) as a kubectl JSONPath
/// (`.status.conditions[?(@.type=="Ready")].status`), without braces.
fn jsonpath(path: &str) -> String {
    let mut out = String::new();
    let mut chars = path.chars().peekable();
    if !path.starts_with('.') && !path.starts_with('[') {
        out.push('.');
    }
    while let Some(c) = chars.next() {
        if c != '[' {
            out.push(c);
            continue;
        }
        let inner: String = chars.by_ref().take_while(|&c| c != ']').collect();
        match inner.split_once('=') {
            Some((k, v)) if !inner.starts_with('?') => {
                let v = v.trim_matches(|c| c == '"' || c == '\'');
                out.push_str(&format!(
                    "[?(@.{}==\"{}\")]",
                    k.trim(),
                    v.replace('"', "\\\"")
                ));
            }
            _ => out.push_str(&format!("[{inner}]")),
        }
    }
    out
}

/// Column titles for field paths, as an operator would name them: the last name
/// (`status.phase` → PHASE), or where that is only `status`, what it is the status of
/// (`status.sync.status` → SYNC, `status.conditions[type=Ready].status` → READY). Titles that
/// would still collide keep their whole path.
pub(crate) fn column_titles(paths: &[String]) -> Vec<String> {
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
    use crate::runbook::validate::{PathSegment, parse_field_path};
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

fn expectation(r: &Resolver, a: &Assertion, list: bool) -> String {
    let mut parts = Vec::new();
    if let Some(e) = &a.equals {
        parts.push(format!("= {}", r.text(e, Sink::Shown)));
    }
    if !a.one_of.is_empty() {
        parts.push(format!("one of {}", a.one_of.join(", ")));
    }
    match a.exists {
        Some(true) => parts.push("present".to_owned()),
        Some(false) => parts.push("absent".to_owned()),
        None => {}
    }
    if let Some(m) = &a.matches {
        parts.push(format!("matching /{m}/"));
    }
    let scope = match (list, a.scope) {
        (false, _) => "",
        (true, AssertScope::All) => " on every object",
        (true, AssertScope::Any) => " on at least one object",
    };
    format!("{} {}{scope}", a.path, parts.join(", "))
}

fn s3_url(r: &Resolver, bucket: &Text, key: Option<&Text>) -> String {
    let mut w = Word::lit("s3://")
        .then(word(r, bucket))
        .then(Word::lit("/"));
    if let Some(k) = key {
        w = w.then(word(r, k));
    }
    w.quoted()
}

fn aws_flags(r: &Resolver, endpoint: Option<&Text>, region: Option<&Text>) -> String {
    let mut s = String::new();
    if let Some(e) = endpoint {
        s.push_str(&format!(" --endpoint-url {}", q(r, e)));
    }
    if let Some(g) = region {
        s.push_str(&format!(" --region {}", q(r, g)));
    }
    s
}

/// Escape text for a POSIX extended regular expression.
fn ere_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if ".[]()*+?{}|^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A glob (`snapshot-*.db`) as an extended regular expression; `*` also matches `/`.
fn glob_to_ere(glob: &str) -> String {
    let mut out = String::new();
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                out.push_str(".*");
            }
            '?' => out.push('.'),
            '\\' => out.push_str(&ere_escape(
                &chars.next().map(String::from).unwrap_or_default(),
            )),
            '[' => {
                let class: String = chars.clone().take_while(|&c| c != ']').collect();
                if chars.clone().any(|c| c == ']') && !class.is_empty() {
                    for _ in 0..=class.chars().count() {
                        chars.next();
                    }
                    let class = class
                        .strip_prefix('!')
                        .map_or(class.clone(), |c| format!("^{c}"));
                    out.push_str(&format!("[{class}]"));
                } else {
                    out.push_str("\\[");
                }
            }
            c => out.push_str(&ere_escape(&c.to_string())),
        }
    }
    out
}

/// `find` arguments selecting files of a glob relative to `root`.
fn find_filter(root: &Word, pattern: &str) -> String {
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

fn ssh_target(r: &Resolver, host: &Text, user: Option<&Text>) -> String {
    match user {
        Some(u) => word(r, u).then(Word::lit("@")).then(word(r, host)).quoted(),
        None => q(r, host),
    }
}

/// A command line run locally, or on `host` through ssh.
fn on_host(r: &Resolver, host: Option<&Text>, sudo: bool, cmd: &str) -> String {
    let cmd = if sudo {
        format!("sudo {cmd}")
    } else {
        cmd.to_owned()
    };
    match host {
        Some(h) => format!("ssh {} {}", q(r, h), shell_quote(&cmd)),
        None => cmd,
    }
}

#[cfg(test)]
mod tests {
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
            super::column_titles(&paths),
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
        assert_eq!(super::column_titles(&["status".to_owned()]), ["STATUS"]);
    }

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::runbook::load::parse;

    const HEAD: &str = "apiVersion: drctl/v1
kind: Runbook
name: t
title: T
summary: S
inputs:
  ns: { default: vault }
  host: { default: node1 }
  pw: { type: secret }
  evil: { default: 'x; touch PWNED' }
  bucket: {}
  region: { default: eu-west-1 }
steps:
  - id: s
    title: S
    outputs:
      - name: snap
        from: result.key
";

    /// The commands of a step whose action is `action` (YAML, unindented).
    fn render_with(action: &str, sets: &[(&str, &str)], timeout: Option<Duration>) -> Vec<String> {
        let body: String = action
            .trim_matches('\n')
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        let src = format!("{HEAD}{body}");
        let rb = parse("t.yaml", &Arc::from(src.as_str()))
            .unwrap_or_else(|e| panic!("{}\n{src}", e.message));
        let sets: BTreeMap<String, String> = sets
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let r = Resolver::new(&rb, &sets);
        commands_with_timeout(&rb.steps[0].action, &r, timeout)
    }

    fn render(action: &str) -> Vec<String> {
        render_with(action, &[], None)
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn interactive_actions_have_no_command() {
        assert!(render("manual: { instructions: do it }").is_empty());
        assert!(render("input: { prompt: Which? }").is_empty());
        assert!(render("choose: { prompt: Which?, options: [ { value: a } ] }").is_empty());
    }

    #[test]
    fn shell_quotes_values_and_hides_secrets() {
        let got = render_with(
            "shell: { argv: [echo, '{{ inputs.evil }}'], cwd: /srv, env: { TOKEN: '{{ inputs.pw }}', NS: '{{ inputs.ns }}' } }",
            &[("pw", "hunter2")],
            None,
        );
        assert_eq!(
            got,
            lines(&["cd /srv && TOKEN=<pw> NS=vault echo 'x; touch PWNED'"])
        );
        assert_eq!(
            render(
                "shell: { script: \"echo {{ inputs.evil }}\\nls\\n\", cwd: /srv, env: { TOKEN: '{{ inputs.pw }}' } }"
            ),
            lines(&["cd /srv", "export TOKEN=<pw>", "echo 'x; touch PWNED'\nls"])
        );
        assert_eq!(
            render("shell: { script: \"vault login -\", stdin: '{{ inputs.pw }}' }"),
            lines(&["printf '%s' <pw> | bash -euo pipefail -c 'vault login -'"])
        );
    }

    #[test]
    fn sleep_and_http() {
        assert_eq!(render("sleep: { duration: 5m }"), lines(&["sleep 300"]));
        assert_eq!(render("sleep: { duration: 1500ms }"), lines(&["sleep 1.5"]));
        assert_eq!(
            render(
                "http: { url: 'https://{{ inputs.host }}:8200/v1/sys/health', method: HEAD, ca_cert: /etc/ca.pem }"
            ),
            lines(&["curl -fsS -I --cacert /etc/ca.pem https://node1:8200/v1/sys/health"])
        );
        assert_eq!(
            render("http: { url: 'https://x/health', expect_status: [200, 429], contains: ok }"),
            lines(&[
                "curl -sS -o /dev/null -w '%{http_code}\\n' https://x/health  # expect HTTP 200 or 429",
                "curl -sS https://x/health | grep -F -- ok",
            ])
        );
    }

    #[test]
    fn kube_apply_namespace_and_set_values() {
        assert_eq!(
            render(
                "kube.apply: { manifest: \"kind: ConfigMap\\nmetadata:\\n  name: {{ inputs.ns }}\\n\", namespace: '{{ inputs.ns }}' }"
            ),
            lines(&[
                "kubectl apply --server-side -n vault -f - <<'EOF'\nkind: ConfigMap\nmetadata:\n  name: vault\nEOF"
            ])
        );
        assert_eq!(
            render("kube.apply: { file: 'manifests/{{ inputs.bucket }}.yaml' }"),
            lines(&["kubectl apply --server-side -f manifests/<bucket>.yaml"])
        );
        // Default, then `--set`.
        let ns = "kube.namespace: { name: '{{ inputs.ns }}' }";
        assert_eq!(
            render(ns),
            lines(&[
                "kubectl create namespace vault --dry-run=client -o yaml | kubectl apply -f -"
            ])
        );
        assert_eq!(
            render_with(ns, &[("ns", "openbao")], None),
            lines(&[
                "kubectl create namespace openbao --dry-run=client -o yaml | kubectl apply -f -"
            ])
        );
    }

    #[test]
    fn kube_secret_never_shows_a_secret_value() {
        let a = "kube.secret: { name: creds, namespace: '{{ inputs.ns }}', literals: { password: '{{ inputs.pw }}', user: admin }, files: { ca: { path: /etc/ca.pem }, cloud: { content: \"[default]\\nkey={{ inputs.pw }}\\n\" }, token: { content: '{{ inputs.pw }}' } } }";
        let got = render_with(a, &[("pw", "hunter2")], None);
        assert_eq!(
            got,
            lines(&[
                "kubectl create secret generic creds --namespace vault --from-literal=password=<pw> --from-literal=user=admin --from-file=ca=/etc/ca.pem --from-file=cloud=<(cat <<'EOF'\n[default]\nkey=<pw>\nEOF\n) --from-file=token=<(printf '%s' <pw>) --dry-run=client -o yaml | kubectl apply -f -"
            ])
        );
        assert!(!got.concat().contains("hunter2"));
        assert_eq!(
            render(
                "kube.secret: { name: tls, namespace: x, type: kubernetes.io/tls, replace: false, literals: { note: 'a b' } }"
            ),
            lines(&[
                "kubectl create secret generic tls --namespace x --type=kubernetes.io/tls --from-literal=note='a b'"
            ])
        );
    }

    #[test]
    fn kube_delete_get_wait() {
        let t = Some(Duration::from_secs(300));
        assert_eq!(
            render_with(
                "kube.delete: { resource: { kind: Pod, namespace: '{{ inputs.ns }}', selector: 'app=vault,tier in (db)' }, ignore_not_found: true }",
                &[],
                t
            ),
            lines(&[
                "kubectl delete Pod -n vault -l 'app=vault,tier in (db)' --ignore-not-found --timeout=5m"
            ])
        );
        assert_eq!(
            render("kube.delete: { resource: { kind: jobs, namespace: x }, wait: false }"),
            lines(&["kubectl delete jobs -n x --all --wait=false"])
        );
        assert_eq!(
            render(
                "kube.get: { resource: { kind: Pod, namespace: vault, selector: app=vault }, assert: [ { path: 'status.conditions[type=Ready].status', equals: 'True' } ], min_items: 3, columns: [status.phase] }"
            ),
            lines(&[
                "kubectl get Pod -n vault -l app=vault -o custom-columns=NAME:.metadata.name,PHASE:.status.phase",
                "kubectl get Pod -n vault -l app=vault -o jsonpath='{range .items[*]}{.metadata.name}{\"\\t\"}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}'  # expect status.conditions[type=Ready].status = True on every object",
                "kubectl get Pod -n vault -l app=vault --no-headers | wc -l  # expect at least 3",
            ])
        );
        assert_eq!(
            render(
                "kube.get: { resource: { kind: Node, name: n1, field_selector: spec.unschedulable=false }, assert: [ { path: status.phase, one_of: [A, B] } ] }"
            ),
            lines(&[
                "kubectl get Node n1 --field-selector spec.unschedulable=false -o wide",
                "kubectl get Node n1 --field-selector spec.unschedulable=false -o jsonpath='{.status.phase}'  # expect status.phase one of A, B",
            ])
        );
        assert_eq!(
            render(
                "kube.get: { resource: { kind: Pod, all_namespaces: true, namespace: ignored } }"
            ),
            lines(&["kubectl get Pod -A -o wide"])
        );
        assert_eq!(
            render(
                "kube.wait: { resource: { kind: Backup, api_version: velero.io/v1, name: '{{ outputs.snap }}', namespace: velero }, for: { field: { path: status.phase, equals: Completed } } }"
            ),
            lines(&[
                "kubectl wait Backup.v1.velero.io/<snap> -n velero --for=jsonpath='{.status.phase}'=Completed"
            ])
        );
        assert_eq!(
            render_with(
                "kube.wait: { resource: { kind: Pod, api_version: v1, namespace: vault, selector: app=vault }, for: { condition: Ready } }",
                &[],
                Some(Duration::from_secs(5400))
            ),
            lines(&[
                "kubectl wait Pod -n vault -l app=vault --for=condition=Ready --timeout=1h30m"
            ])
        );
        assert_eq!(
            render("kube.wait: { resource: { kind: Namespace, name: old }, for: deleted }"),
            lines(&["kubectl wait Namespace/old --for=delete"])
        );
    }

    #[test]
    fn kube_rollouts_patch_logs_port_forward() {
        assert_eq!(
            render(
                "kube.rollout-restart: { kind: deployment, namespace: '{{ inputs.ns }}', names: [a, b] }"
            ),
            lines(&["kubectl rollout restart deployment -n vault a b"])
        );
        assert_eq!(
            render_with(
                "kube.rollout-status: { kind: statefulset, namespace: vault, names: [vault, '{{ inputs.bucket }}'] }",
                &[],
                Some(Duration::from_secs(120))
            ),
            lines(&[
                "kubectl rollout status statefulset/vault -n vault --timeout=2m",
                "kubectl rollout status statefulset/<bucket> -n vault --timeout=2m",
            ])
        );
        assert_eq!(
            render(
                "kube.patch: { resource: { kind: Deployment, name: x, namespace: y }, type: json, patch: '[{\"op\":\"remove\",\"path\":\"/a\"}]' }"
            ),
            lines(&[
                "kubectl patch Deployment x -n y --type json -p '[{\"op\":\"remove\",\"path\":\"/a\"}]'"
            ])
        );
        assert_eq!(
            render("kube.logs: { namespace: vault, pod: vault-0, container: vault, tail: 20 }"),
            lines(&["kubectl logs vault-0 -n vault -c vault --tail=20"])
        );
        assert_eq!(
            render("kube.logs: { namespace: vault, selector: app=vault }"),
            lines(&["kubectl logs -l app=vault -n vault --prefix --tail=100"])
        );
        assert_eq!(
            render("kube.logs: { namespace: vault, job: unseal }"),
            lines(&["kubectl logs job/unseal -n vault --tail=100"])
        );
        assert_eq!(
            render("kube.logs: { namespace: vault, cronjob: '{{ inputs.evil }}' }"),
            lines(&[
                "job=$(kubectl get jobs -n vault --sort-by=.metadata.creationTimestamp -o jsonpath='{range .items[?(@.metadata.ownerReferences[0].name==\"x; touch PWNED\")]}{.metadata.name}{\"\\n\"}{end}' | tail -n 1)",
                "kubectl logs \"job/$job\" -n vault --tail=100",
            ])
        );
        assert_eq!(
            render(
                "kube.port-forward: { namespace: vault, target: svc/vault, port: 8200, local_port: 18200 }"
            )[0],
            "kubectl port-forward -n vault svc/vault 18200:8200"
        );
    }

    #[test]
    fn vault_commands() {
        assert_eq!(
            render(
                "vault.status: { addr: 'https://{{ inputs.host }}:8200', expect: { initialized: true, sealed: false } }"
            ),
            lines(&[
                "VAULT_ADDR=https://node1:8200 vault status  # expect Initialized true, Sealed false",
                OPENBAO
            ])
        );
        assert_eq!(
            render_with(
                "vault.wait-unsealed: { addr: 'http://127.0.0.1:8200', unsealed_by: the CronJob }",
                &[],
                Some(Duration::from_secs(600))
            ),
            lines(&[
                "timeout 600 sh -c 'until VAULT_ADDR=http://127.0.0.1:8200 vault status >/dev/null; do sleep 5; done'",
                "# unsealed by: the CronJob",
                OPENBAO,
            ])
        );
        let unseal = render("vault.unseal: { keys: ['{{ inputs.pw }}', literal-key] }");
        assert_eq!(
            unseal[0],
            "vault operator unseal  # share 1 of 2: enter <pw> at the prompt"
        );
        // A key that is not a placeholder is never printed.
        assert_eq!(
            unseal[1],
            "vault operator unseal  # share 2 of 2: enter the share at the prompt"
        );
        assert!(!unseal.concat().contains("literal-key"));
        assert_eq!(
            render("vault.unseal: { holders: [Ann, Bob] }")[..2],
            lines(&[
                "vault operator unseal  # Ann enters their share at the prompt",
                "vault operator unseal  # Bob enters their share at the prompt",
            ])
        );
        assert_eq!(
            render("vault.init: { shares: 5, threshold: 3 }")[0],
            "vault operator init -key-shares=5 -key-threshold=3"
        );
        assert_eq!(
            render("vault.init: { shares: 5, threshold: 3, recovery: true }")[0],
            "vault operator init -recovery-shares=5 -recovery-threshold=3"
        );
        assert_eq!(
            render(
                "vault.rekey: { shares: 5, threshold: 3, recovery: true, keys: ['{{ inputs.pw }}'] }"
            )[..2],
            lines(&[
                "vault operator rekey -init -target=recovery -key-shares=5 -key-threshold=3",
                "vault operator rekey -target=recovery -nonce=<nonce>  # current share 1: enter <pw> at the prompt",
            ])
        );
    }

    #[test]
    fn vault_kv_never_shows_a_secret_value() {
        let got = render_with(
            "vault.kv-put: { token: '{{ inputs.pw }}', mount: secret, path: 'apps/{{ inputs.ns }}', data: { password: '{{ inputs.pw }}', user: admin, note: 'a b' } }",
            &[("pw", "hunter2"), ("ns", "prod")],
            None,
        );
        assert_eq!(
            got,
            lines(&[
                "VAULT_TOKEN=<pw> vault kv put -mount=secret apps/prod password=<pw> user=admin note='a b'",
                OPENBAO
            ])
        );
        assert!(!got.concat().contains("hunter2"));
        assert_eq!(
            render("vault.kv-get: { mount: secret, path: apps/x, keys: [password] }")[0],
            "vault kv get -mount=secret -field=password apps/x >/dev/null && echo 'password: present'"
        );
        assert_eq!(
            render("vault.kv-get: { mount: secret, path: apps/x }")[0],
            "vault kv get -mount=secret -format=json apps/x | jq -r '.data.data | keys[]'"
        );
        assert_eq!(
            render("vault.kv-populate: { mount: secret, repo: /src/infra }")[..3],
            lines(&[
                "find /src/infra -name '*.example'",
                "# each file names a KV path and its keys: write each path with its values",
                "vault kv put -mount=secret <path> <key>=<value>",
            ])
        );
        assert_eq!(
            render(
                "vault.kv-populate: { mount: secret, repo: /src/infra, pattern: 'secrets/**/*.example' }"
            )[0],
            "find /src/infra -path '/src/infra/secrets/*.example'"
        );
    }

    #[test]
    fn aws_commands() {
        assert_eq!(
            render("s3.list: { bucket: '{{ inputs.bucket }}', prefix: etcd/ }"),
            lines(&["aws s3 ls s3://<bucket>/etcd/ --recursive"])
        );
        assert_eq!(
            render(
                "s3.newest: { bucket: b, prefix: etcd/, pattern: 'snap[0-9]-*.db', endpoint: 'http://minio:9000', region: '{{ inputs.region }}' }"
            ),
            lines(&[
                "aws s3api list-objects-v2 --bucket b --prefix etcd/ --query 'sort_by(Contents || `[]`, &LastModified)[].[Key]' --output text --endpoint-url http://minio:9000 --region eu-west-1 | grep -E '^etcd/snap[0-9]-.*\\.db$' | tail -n 1"
            ])
        );
        assert_eq!(
            render(
                "s3.download: { bucket: b, key: '{{ outputs.snap }}', to: /var/tmp/snap.db, sha256: abc }"
            ),
            lines(&[
                "aws s3 cp s3://b/<snap> /var/tmp/snap.db",
                "echo 'abc  /var/tmp/snap.db' | sha256sum -c -"
            ])
        );
        assert_eq!(
            render("s3.upload: { bucket: b, key: k, from: /tmp/f }"),
            lines(&["aws s3 cp /tmp/f s3://b/k"])
        );
        assert_eq!(
            render("kms.describe: { key_id: alias/vault, expect_state: PendingDeletion }"),
            lines(&[
                "aws kms describe-key --key-id alias/vault --query KeyMetadata.KeyState --output text  # expect PendingDeletion"
            ])
        );
        assert_eq!(
            render("kms.cancel-deletion: { key_id: alias/vault, region: eu-west-1 }"),
            lines(&[
                "aws kms cancel-key-deletion --key-id alias/vault --region eu-west-1",
                "aws kms enable-key --key-id alias/vault --region eu-west-1",
            ])
        );
        assert_eq!(
            render("kms.cancel-deletion: { key_id: k, enable: false }").len(),
            1
        );
        assert!(
            render("kms.verify: { key_id: k }")[0].starts_with(
                "aws kms encrypt --key-id k --plaintext fileb://<(printf drctl-verify) "
            )
        );
    }

    #[test]
    fn ssh_quotes_the_remote_command() {
        assert_eq!(
            render("ssh.run: { host: '{{ inputs.host }}', command: 'echo {{ inputs.evil }}' }"),
            lines(&[r"ssh node1 'echo '\''x; touch PWNED'\'''"])
        );
        assert_eq!(
            render_with(
                "ssh.run: { host: '{{ inputs.host }}', user: admin, sudo: true, command: 'rm -f {{ inputs.evil }}', env: { PW: '{{ inputs.pw }}' } }",
                &[("host", "cp-1"), ("pw", "hunter2")],
                None
            ),
            lines(&[
                "ssh admin@cp-1 sudo sh -s <<'EOF'\nexport PW=<pw>\nrm -f 'x; touch PWNED'\nEOF"
            ])
        );
        assert_eq!(
            render(
                "ssh.copy: { host: node1, direction: upload, local: ./a, remote: /etc/a, sudo: true, mode: '0600' }"
            ),
            lines(&[
                "scp ./a node1:/tmp/drctl-upload",
                "ssh node1 'sudo install -m 0600 /tmp/drctl-upload /etc/a && rm -f /tmp/drctl-upload'",
            ])
        );
        assert_eq!(
            render(
                "ssh.copy: { host: node1, user: root, direction: upload, local: ./a, remote: '/etc/my file' }"
            ),
            lines(&["scp ./a root@node1:'/etc/my file'"])
        );
        assert_eq!(
            render(
                "ssh.copy: { host: node1, direction: download, local: ./a, remote: /etc/a, sudo: true, mode: '0600' }"
            ),
            lines(&["ssh node1 'sudo cat /etc/a' > ./a", "chmod 0600 ./a"])
        );
        assert_eq!(
            render("ssh.copy: { host: node1, direction: download, local: ./a, remote: /etc/a }"),
            lines(&["scp node1:/etc/a ./a"])
        );
    }

    #[test]
    fn etcd_defaults_and_host() {
        assert_eq!(
            render("etcd.snapshot-status: { snapshot: /var/tmp/snap.db }")[0],
            "ETCDCTL_API=3 etcdctl snapshot status /var/tmp/snap.db -w table"
        );
        assert_eq!(
            render(
                "etcd.snapshot-restore: { host: '{{ inputs.host }}', snapshot: /var/tmp/snap.db, sudo: true }"
            )[..3],
            lines(&[
                "ssh node1 'sudo ETCDCTL_API=3 etcdctl snapshot restore /var/tmp/snap.db --data-dir=/var/lib/etcd-restore'",
                "ssh node1 'sudo rm -rf /var/lib/etcd'",
                "ssh node1 'sudo mv /var/lib/etcd-restore /var/lib/etcd'",
            ])
        );
        assert_eq!(
            render("etcd.snapshot-restore: { snapshot: s.db, data_dir: /data/etcd }")[..3],
            lines(&[
                "ETCDCTL_API=3 etcdctl snapshot restore s.db --data-dir=/data/etcd-restore",
                "rm -rf /data/etcd",
                "mv /data/etcd-restore /data/etcd",
            ])
        );
    }

    #[test]
    fn velero_argocd_eso_longhorn() {
        assert_eq!(
            render("velero.backups: { storage_location: default, require_completed: false }"),
            lines(&["velero backup get -n velero -l velero.io/storage-location=default"])
        );
        assert_eq!(
            render(
                "velero.restore: { namespace: backup, backup: '{{ outputs.snap }}', name: r1, include_namespaces: [a, b] }"
            )[..2],
            lines(&[
                "velero restore create r1 -n backup --from-backup <snap> --include-namespaces a,b --wait",
                "velero restore describe r1 -n backup --details",
            ])
        );
        assert_eq!(
            render("argocd.apps: {}"),
            lines(&["kubectl get applications.argoproj.io -n argocd"])
        );
        assert_eq!(
            render_with("argocd.wait: {}", &[], Some(Duration::from_secs(900))),
            lines(&[
                "kubectl wait applications.argoproj.io --all -n argocd --for=jsonpath='{.status.sync.status}'=Synced --timeout=15m",
                "kubectl wait applications.argoproj.io --all -n argocd --for=jsonpath='{.status.health.status}'=Healthy --timeout=15m",
            ])
        );
        assert_eq!(
            render("argocd.refresh: { namespace: gitops, name: root, hard: false }"),
            lines(&[
                "kubectl patch applications.argoproj.io root -n gitops --type merge -p '{\"metadata\":{\"annotations\":{\"argocd.argoproj.io/refresh\":\"normal\"}}}'",
                "# or with the argocd CLI: argocd app get root --refresh",
            ])
        );
        assert_eq!(
            render("eso.wait: { cluster_secret_stores: [vault], namespace: apps }"),
            lines(&[
                "kubectl wait clustersecretstore/vault --for=condition=Ready",
                "kubectl wait externalsecret --all -n apps --for=condition=Ready",
            ])
        );
        assert_eq!(
            render("eso.wait: { external_secrets: true }"),
            lines(&["kubectl wait externalsecret --all -A --for=condition=Ready"])
        );
        assert_eq!(
            render("longhorn.backups: { volume: pvc-1 }"),
            lines(&["kubectl get backups.longhorn.io -n longhorn-system -l backup-volume=pvc-1"])
        );
        let restore = render("longhorn.restore: { volumes: [pvc-1] }");
        assert!(restore[1].contains("kind: Volume\nmetadata:\n  name: pvc-1\n  namespace: longhorn-system\nspec:\n  fromBackup: \"<backup-url>\""));
        assert!(
            restore
                .iter()
                .any(|l| l.starts_with("# or in the Longhorn UI"))
        );
    }

    #[test]
    fn words_quote_literals_and_keep_placeholders_bare() {
        let src = format!("{HEAD}    sleep: {{ duration: 1s }}\n");
        let rb = parse("t.yaml", &Arc::from(src.as_str())).expect("parses");
        let r = Resolver::new(&rb, &BTreeMap::new());
        let q = |s: &str| q(&r, &Text::new(s));
        assert_eq!(q("plain"), "plain");
        assert_eq!(q("a b"), "'a b'");
        assert_eq!(
            q("app={{ inputs.ns }},tier in (db)"),
            "'app=vault,tier in (db)'"
        );
        assert_eq!(q("s3://{{ inputs.bucket }}/x y"), "s3://<bucket>'/x y'");
        assert_eq!(q("{{ inputs.evil }}"), "'x; touch PWNED'");
        assert_eq!(q("{{ run.started_at }}"), "<start time>");
        assert_eq!(q("{% if inputs.ns == 'vault' %}a b{% endif %}"), "'a b'");
        assert_eq!(q("x  {{- inputs.ns -}}  y"), "xvaulty");
        assert_eq!(q("{{ '}}' }}"), "'}}'");
        // A template the resolver cannot render is shown as written.
        assert_eq!(q("{{ inputs.nope }}"), "'{{ inputs.nope }}'");
        assert_eq!(q("{{ outputs.snap.x }}"), "'{{ outputs.snap.x }}'");
    }

    #[test]
    fn helpers() {
        assert_eq!(
            jsonpath("status.conditions[type=Ready].status"),
            ".status.conditions[?(@.type==\"Ready\")].status"
        );
        assert_eq!(
            jsonpath("spec.containers[0].image"),
            ".spec.containers[0].image"
        );
        assert_eq!(glob_to_ere("a?*.[!x]b.db"), "a..*\\.[^x]b\\.db");
        assert_eq!(go_duration(Duration::from_secs(90_000)), "25h");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(heredoc("EOF\n"), "<<'EOF1'\nEOF\nEOF1");
        assert_eq!(note("a\nb\r\n c"), "a b c");
    }

    /// Every command is valid bash once its placeholders are filled in.
    #[test]
    fn commands_parse_as_bash() {
        let re = regex::Regex::new(r"<[^<>\n]+>").expect("regex");
        let mut script = String::new();
        for a in ALL {
            for c in render_with(a, &[], Some(Duration::from_secs(60))) {
                script.push_str(&re.replace_all(&c, "X"));
                script.push('\n');
            }
        }
        let Ok(out) = std::process::Command::new("bash")
            .arg("-n")
            .arg("-c")
            .arg(&script)
            .output()
        else {
            return; // no bash on this machine
        };
        assert!(
            out.status.success(),
            "{}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What the remote shell runs is the command with the value still one word.
    #[test]
    fn ssh_command_survives_both_shells() {
        let c = &render("ssh.run: { host: h, command: 'echo {{ inputs.evil }}' }")[0];
        let dir = tempfile::tempdir().expect("tempdir");
        // A stand-in for ssh: the remote side joins its arguments and runs them.
        let script = format!("ssh() {{ shift; sh -c \"$*\"; }}\n{c}\n");
        let Ok(out) = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .output()
        else {
            return; // no bash on this machine
        };
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x; touch PWNED\n");
        assert!(!dir.path().join("PWNED").exists());
    }

    const ALL: &[&str] = &[
        "manual: { instructions: do it }",
        "shell: { argv: [echo, '{{ inputs.evil }}'], cwd: /srv, env: { TOKEN: '{{ inputs.pw }}', NS: '{{ inputs.ns }}' } }",
        "shell: { script: \"echo {{ inputs.evil }}\\nls\\n\", cwd: /srv, env: { TOKEN: '{{ inputs.pw }}' } }",
        "shell: { script: \"vault login -\", stdin: '{{ inputs.pw }}' }",
        "sleep: { duration: 1500ms }",
        "http: { url: 'https://{{ inputs.host }}:8200/v1/sys/health', method: HEAD, ca_cert: /etc/ca.pem }",
        "http: { url: 'https://x/health', expect_status: [200, 429], contains: ok }",
        "kube.apply: { manifest: \"kind: ConfigMap\\nmetadata:\\n  name: {{ inputs.ns }}\\n\", namespace: '{{ inputs.ns }}' }",
        "kube.namespace: { name: '{{ inputs.ns }}' }",
        "kube.secret: { name: creds, namespace: '{{ inputs.ns }}', literals: { password: '{{ inputs.pw }}', user: admin }, files: { ca: { path: /etc/ca.pem }, cloud: { content: \"[default]\\nkey={{ inputs.pw }}\\n\" }, token: { content: '{{ inputs.pw }}' } } }",
        "kube.delete: { resource: { kind: Pod, namespace: '{{ inputs.ns }}', selector: 'app=vault,tier in (db)' }, ignore_not_found: true }",
        "kube.get: { resource: { kind: Pod, namespace: vault, selector: app=vault }, assert: [ { path: 'status.conditions[type=Ready].status', equals: 'True' } ], min_items: 3, columns: [status.phase] }",
        "kube.wait: { resource: { kind: Backup, api_version: velero.io/v1, name: '{{ outputs.snap }}', namespace: velero }, for: { field: { path: status.phase, equals: Completed } } }",
        "kube.rollout-restart: { kind: deployment, namespace: '{{ inputs.ns }}', names: [a, b] }",
        "kube.rollout-status: { kind: statefulset, namespace: vault, names: [vault] }",
        "kube.patch: { resource: { kind: Deployment, name: x, namespace: y }, patch: '{\"spec\":{\"replicas\":0}}' }",
        "kube.logs: { namespace: vault, cronjob: '{{ inputs.evil }}' }",
        "kube.port-forward: { namespace: vault, target: svc/vault, port: 8200 }",
        "vault.status: { addr: 'https://{{ inputs.host }}:8200', expect: { sealed: false } }",
        "vault.wait-unsealed: { unsealed_by: the CronJob }",
        "vault.unseal: { keys: ['{{ inputs.pw }}', '{{ inputs.pw }}'] }",
        "vault.init: { shares: 5, threshold: 3, recovery: true }",
        "vault.kv-put: { token: '{{ inputs.pw }}', mount: secret, path: 'apps/{{ inputs.ns }}', data: { password: '{{ inputs.pw }}', user: admin } }",
        "vault.kv-get: { mount: secret, path: apps/x, keys: [password] }",
        "vault.kv-populate: { mount: secret, repo: /src/infra }",
        "vault.rekey: { shares: 5, threshold: 3, recovery: true, keys: ['{{ inputs.pw }}'] }",
        "s3.list: { bucket: '{{ inputs.bucket }}', prefix: etcd/ }",
        "s3.newest: { bucket: b, prefix: etcd/, pattern: 'snapshot-*.db', endpoint: 'http://minio:9000', region: '{{ inputs.region }}' }",
        "s3.download: { bucket: b, key: '{{ outputs.snap }}', to: /var/tmp/snap.db, sha256: abc }",
        "s3.upload: { bucket: b, key: k, from: /tmp/f }",
        "kms.describe: { key_id: alias/vault, expect_state: Enabled }",
        "kms.cancel-deletion: { key_id: alias/vault, region: eu-west-1 }",
        "kms.verify: { key_id: alias/vault }",
        "ssh.run: { host: '{{ inputs.host }}', command: 'echo {{ inputs.evil }}' }",
        "ssh.run: { host: '{{ inputs.host }}', user: admin, sudo: true, command: 'systemctl stop etcd', env: { PW: '{{ inputs.pw }}' } }",
        "ssh.copy: { host: node1, direction: upload, local: ./a, remote: /etc/a, sudo: true, mode: '0600' }",
        "ssh.copy: { host: node1, direction: download, local: ./a, remote: /etc/a, sudo: true }",
        "etcd.snapshot-status: { snapshot: /var/tmp/snap.db }",
        "etcd.snapshot-restore: { host: '{{ inputs.host }}', snapshot: /var/tmp/snap.db, sudo: true }",
        "velero.backups: { storage_location: default }",
        "velero.restore: { backup: '{{ outputs.snap }}', include_namespaces: [a, b] }",
        "argocd.apps: {}",
        "argocd.wait: { names: [root] }",
        "argocd.refresh: { name: root }",
        "eso.wait: { cluster_secret_stores: [vault] }",
        "longhorn.backups: { volume: pvc-1 }",
        "longhorn.restore: { volumes: [pvc-1] }",
    ];
}
