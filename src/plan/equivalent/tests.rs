//! Every action's printed commands, and the quoting rules they follow.

use super::kube::jsonpath;
use super::quote::*;
use super::vault::OPENBAO;
use crate::runbook::Text;
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
        lines(&["kubectl create namespace vault --dry-run=client -o yaml | kubectl apply -f -"])
    );
    assert_eq!(
        render_with(ns, &[("ns", "openbao")], None),
        lines(&["kubectl create namespace openbao --dry-run=client -o yaml | kubectl apply -f -"])
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
        render("kube.get: { resource: { kind: Pod, all_namespaces: true, namespace: ignored } }"),
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
        lines(&["kubectl wait Pod -n vault -l app=vault --for=condition=Ready --timeout=1h30m"])
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
        render("kms.verify: { key_id: k }")[0]
            .starts_with("aws kms encrypt --key-id k --plaintext fileb://<(printf drctl-verify) ")
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
        lines(&["ssh admin@cp-1 sudo sh -s <<'EOF'\nexport PW=<pw>\nrm -f 'x; touch PWNED'\nEOF"])
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
    assert_eq!(
        crate::runbook::glob::Glob::parse("a?*.[!x]b.db").to_ere(),
        "a..*\\.[^x]b\\.db"
    );
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
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("bash must be installed to check the printed commands");
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
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .output()
        .expect("bash must be installed to check the printed commands");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x; touch PWNED\n");
    assert!(!dir.path().join("PWNED").exists());
}

const ALL: &[&str] = &[
    "manual: { instructions: do it }",
    "input: { prompt: Which? }",
    "choose: { prompt: Which?, options: [ { value: a } ] }",
    "kube.use: { kubeconfig: /etc/rancher/k3s/k3s.yaml, context: '{{ inputs.ns }}' }",
    "vault.rekey-verify: { addr: 'https://{{ inputs.host }}:8200', keys: ['{{ inputs.pw }}'] }",
    "kms.enable: { key_id: alias/vault, region: '{{ inputs.region }}' }",
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

/// The list above covers every action, so every action's commands are checked by bash.
#[test]
fn every_action_is_in_the_bash_check() {
    let keys: Vec<&str> = ALL
        .iter()
        .filter_map(|a| a.split_once(':').map(|(k, _)| k))
        .collect();
    let missing: Vec<&&str> = crate::runbook::action::ACTION_NAMES
        .iter()
        .filter(|n| !keys.contains(n))
        .collect();
    assert!(missing.is_empty(), "not in ALL: {missing:?}");
}

/// A local path under `~/` prints as the shell expands it (drctl does the same).
#[test]
fn local_paths_under_home_keep_the_tilde_bare() {
    assert_eq!(
        render("s3.download: { bucket: b, key: k, to: '~/my dir/snapshot.db' }"),
        lines(&["aws s3 cp s3://b/k ~/'my dir/snapshot.db'"])
    );
    assert_eq!(
        render("ssh.copy: { host: h, direction: upload, local: ~/x.db, remote: /tmp/x.db }"),
        lines(&["scp ~/x.db h:/tmp/x.db"])
    );
}
