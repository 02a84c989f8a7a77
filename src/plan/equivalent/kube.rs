//! kubectl commands for the kube.* actions.

use crate::runbook::Sink;
use crate::runbook::action::*;
use crate::runbook::template::shell_quote;

use super::quote::*;
use super::*;
use crate::runbook::fieldpath::column_titles;

/// -------------------------------------------------------------------------------
pub(super) fn apply(a: &KubeApply, r: &Resolver, out: &mut Vec<String>) {
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

pub(super) fn use_(a: &KubeUse, r: &Resolver, out: &mut Vec<String>) {
    out.push(format!("export KUBECONFIG={}", q(r, &a.kubeconfig)));
    if let Some(c) = &a.context {
        out.push(format!("kubectl config use-context {}", q(r, c)));
    }
}

pub(super) fn namespace(a: &KubeNamespace, r: &Resolver, out: &mut Vec<String>) {
    out.push(format!(
        "kubectl create namespace {} --dry-run=client -o yaml | kubectl apply -f -",
        q(r, &a.name)
    ));
}

pub(super) fn secret(a: &KubeSecret, r: &Resolver, out: &mut Vec<String>) {
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

pub(super) fn delete(a: &KubeDelete, r: &Resolver, out: &mut Vec<String>, w: &Wait) {
    let res = &a.resource;
    let mut cmd = format!("kubectl delete {}", resource_args(r, res));
    if res.name.is_none() && res.selector.is_none() && res.field_selector.is_none() {
        cmd.push_str(" --all");
    }
    if a.ignore_not_found {
        cmd.push_str(" --ignore-not-found");
    }
    if a.wait {
        cmd.push_str(&w.flag());
    } else {
        cmd.push_str(" --wait=false");
    }
    out.push(cmd);
}

pub(super) fn get(a: &KubeGet, r: &Resolver, out: &mut Vec<String>) {
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
            format!("{{range .items[*]}}{{.metadata.name}}{{\"\\t\"}}{{{path}}}{{\"\\n\"}}{{end}}")
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

pub(super) fn wait(a: &KubeWait, r: &Resolver, out: &mut Vec<String>, w: &Wait) {
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
    cmd.push_str(&w.flag());
    out.push(cmd);
}

pub(super) fn rollout_restart(a: &KubeRolloutRestart, r: &Resolver, out: &mut Vec<String>) {
    let names: Vec<String> = a.names.iter().map(|n| format!(" {}", q(r, n))).collect();
    out.push(format!(
        "kubectl rollout restart {} -n {}{}",
        a.kind.as_str(),
        q(r, &a.namespace),
        names.concat()
    ));
}

pub(super) fn rollout_status(a: &KubeRolloutStatus, r: &Resolver, out: &mut Vec<String>, w: &Wait) {
    let ns = q(r, &a.namespace);
    let kind = a.kind.as_str();
    if a.names.is_empty() {
        out.push(format!(
            "for w in $(kubectl get {kind} -n {ns} -o name); do kubectl rollout status \"$w\" -n {ns}{}; done",
            w.flag()
        ));
    }
    for n in &a.names {
        let target = Word::flag(&format!("{kind}/")).then(word(r, n));
        out.push(format!(
            "kubectl rollout status {} -n {ns}{}",
            target.quoted(),
            w.flag()
        ));
    }
}

pub(super) fn patch(a: &KubePatch, r: &Resolver, out: &mut Vec<String>) {
    out.push(format!(
        "kubectl patch {} --type {} -p {}",
        resource_args(r, &a.resource),
        a.patch_type.as_str(),
        q(r, &a.patch)
    ));
}

pub(super) fn logs(a: &KubeLogs, r: &Resolver, out: &mut Vec<String>) {
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

pub(super) fn port_forward(a: &KubePortForward, r: &Resolver, out: &mut Vec<String>) {
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

/// `TYPE [NAME] [-n NS | -A] [-l SEL] [--field-selector FS]`.
pub(super) fn resource_args(r: &Resolver, res: &Resource) -> String {
    let mut s = resource_type(res);
    if let Some(n) = &res.name {
        s.push_str(&format!(" {}", q(r, n)));
    }
    s.push_str(&scope_flags(r, res));
    s
}

/// `kubectl wait` takes `TYPE/NAME`, or a type with a selector or `--all`.
pub(super) fn wait_target(r: &Resolver, res: &Resource) -> String {
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

pub(super) fn scope_flags(r: &Resolver, res: &Resource) -> String {
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
pub(super) fn resource_type(res: &Resource) -> String {
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
pub(super) fn jsonpath(path: &str) -> String {
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

pub(super) fn expectation(r: &Resolver, a: &Assertion, list: bool) -> String {
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
