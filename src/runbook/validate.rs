//! Semantic checks of a parsed runbook. Every problem is collected (not just the first),
//! each pointing at the line that holds it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use regex::Regex;

use super::action::{Action, ActionSpec, FileSource, InputKind, Sink};
use super::diagnostic::Diagnostic;
use super::model::{ActionBlock, Callout, Runbook, Step};
use super::shellctx;
use super::taint::{Form, Probe};
use super::template::{ROOTS, environment, template_name};
use super::text::{Pos, Text};

/// Fields of `run` available to templates.
pub const RUN_FIELDS: &[&str] = &[
    "id",
    "runbook",
    "operator",
    "dry_run",
    "started_at",
    "failed_step",
];

const SECRET_SINKS_HINT: &str = "secrets may only go where drctl carries them hidden: kube.secret literals and file contents, vault keys, data and tokens, and the env or stdin of shell and ssh.run";

/// Check a parsed runbook; `expected_name` is the file stem when the file was found by name.
pub fn check(
    file: &str,
    source: &Arc<str>,
    rb: &Runbook,
    expected_name: Option<&str>,
) -> Vec<Diagnostic> {
    let mut v = Validator {
        file,
        source,
        env: environment(),
        diags: Vec::new(),
        rb,
        outputs: HashMap::new(),
        result_secrets: &[],
        probe: probe(rb),
    };
    v.runbook(expected_name);
    v.diags
}

struct OutputInfo {
    secret: bool,
    step: String,
    pos: Pos,
    /// Index in step order; a reference from an earlier step is an error.
    order: usize,
}

/// Where a template may look.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Before any step ran (callouts, inputs, prerequisites): inputs and run only.
    Start,
    /// Inside step number N: outputs of steps before N.
    Step(usize),
    /// A step's `outputs` and `expect`: its own `result` too.
    StepResult(usize),
    /// Cleanup: any output (it may be missing if its step never ran).
    Cleanup,
    /// A cleanup step's `outputs` and `expect`.
    CleanupResult,
}

struct Validator<'a> {
    file: &'a str,
    source: &'a Arc<str>,
    env: minijinja::Environment<'static>,
    diags: Vec<Diagnostic>,
    rb: &'a Runbook,
    outputs: HashMap<String, OutputInfo>,
    /// Secret fields of the `result` of the step being checked.
    result_secrets: &'static [&'static str],
    probe: Probe,
}

/// The stand-in values for finding which secrets a template depends on.
fn probe(rb: &Runbook) -> Probe {
    let inputs = rb
        .inputs
        .iter()
        .map(|(n, spec)| {
            let default = spec.default.as_ref().map(|d| d.value.clone());
            (n.clone(), spec.is_secret(), default)
        })
        .collect();
    let outputs = rb
        .main_steps()
        .chain(rb.cleanup.iter())
        .flat_map(|s| s.outputs.iter())
        .map(|o| (o.name.value.clone(), o.secret))
        .collect();
    Probe::new(inputs, outputs)
}

impl Validator<'_> {
    fn error(&mut self, pos: Pos, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::error(self.file, self.source, pos, msg));
        let n = self.diags.len() - 1;
        &mut self.diags[n]
    }

    fn hint(&mut self, pos: Pos, msg: impl Into<String>, hint: impl Into<String>) {
        let d = Diagnostic::error(self.file, self.source, pos, msg).with_hint(hint);
        self.diags.push(d);
    }

    fn runbook(&mut self, expected_name: Option<&str>) {
        let rb = self.rb;
        if rb.api_version.value != "drctl/v1" {
            self.hint(
                rb.api_version.pos,
                format!("unsupported apiVersion `{}`", rb.api_version.value),
                "this drctl reads `apiVersion: drctl/v1`",
            );
        }
        if rb.kind.value != "Runbook" {
            self.hint(
                rb.kind.pos,
                format!("unsupported kind `{}`", rb.kind.value),
                "write `kind: Runbook`",
            );
        }
        if !is_ident(&rb.name.value) {
            self.hint(
                rb.name.pos,
                format!("runbook name `{}` is not a valid name", rb.name.value),
                "use lowercase letters, digits, '-' and '_', starting with a letter or digit",
            );
        }
        if let Some(expected) = expected_name
            && expected != rb.name.value
        {
            self.hint(
                rb.name.pos,
                format!(
                    "runbook name `{}` differs from its file name `{expected}`",
                    rb.name.value
                ),
                format!(
                    "drctl finds runbooks by file name: rename the file to `{}.yaml` or set `name: {expected}`",
                    rb.name.value
                ),
            );
        }
        if !rb.sections.is_empty() && !rb.steps.is_empty() {
            self.hint(
                rb.name.pos,
                "the runbook has both `steps` and `sections`",
                "put the top-level steps into a section, or drop the sections",
            );
        }
        if rb.main_steps().next().is_none() {
            self.hint(
                rb.name.pos,
                "the runbook has no steps",
                "add `steps:` (or `sections:` with steps)",
            );
        }
        if let Some(d) = rb.estimated_duration
            && d.value.is_zero()
        {
            self.error(d.pos, "estimated_duration must be more than zero");
        }
        self.inputs();
        for c in &rb.callouts {
            self.callout(c, Scope::Start);
        }
        let mut prereq_ids: HashMap<&str, Pos> = HashMap::new();
        for p in &rb.prerequisites {
            if let Some(first) = prereq_ids.insert(p.id.as_str(), p.id.pos) {
                self.hint(
                    p.id.pos,
                    format!("duplicate prerequisite id `{}`", p.id),
                    format!("the first is on line {}", first.line),
                );
            }
            if let Some(d) = &p.description {
                self.text(d, Sink::Shown, Scope::Start);
            }
            if let Some(check) = &p.check {
                self.read_only_block(check, "a prerequisite check");
                self.action(&check.action, check.pos, Scope::Start, None);
            }
        }

        // Collect outputs first so a reference to a later step's output is told apart
        // from a reference to no output at all.
        let steps: Vec<&Step> = rb.main_steps().collect();
        for (i, s) in steps.iter().enumerate() {
            self.declare_outputs(s, i);
        }
        for s in &rb.cleanup {
            self.declare_outputs(s, usize::MAX);
        }

        let mut ids: HashMap<String, Pos> = HashMap::new();
        for (i, s) in steps.iter().enumerate() {
            self.step(s, Scope::Step(i), &mut ids);
        }
        for section in &rb.sections {
            for c in &section.callouts {
                self.callout(c, Scope::Start);
            }
        }
        for s in &rb.cleanup {
            self.step(s, Scope::Cleanup, &mut ids);
        }
        for c in &rb.appendix {
            self.callout(c, Scope::Start);
        }
    }

    fn declare_outputs(&mut self, s: &Step, order: usize) {
        for o in &s.outputs {
            if !is_var_name(&o.name.value) {
                self.hint(
                    o.name.pos,
                    format!("output name `{}` is not a valid name", o.name),
                    "use lowercase letters, digits and '_', starting with a letter (it is used as `outputs.NAME`)",
                );
            }
            if let Some(first) = self.outputs.get(o.name.as_str()) {
                let msg = format!(
                    "output `{}` is already captured by step `{}` (line {})",
                    o.name, first.step, first.pos.line
                );
                self.hint(o.name.pos, msg, "give each output a name of its own");
                continue;
            }
            self.outputs.insert(
                o.name.value.clone(),
                OutputInfo {
                    secret: o.secret,
                    step: s.id.value.clone(),
                    pos: o.name.pos,
                    order,
                },
            );
        }
    }

    fn inputs(&mut self) {
        let rb = self.rb;
        for (name, spec) in &rb.inputs {
            let pos = spec.default.as_ref().map(|d| d.pos).unwrap_or(rb.name.pos);
            if !is_var_name(name) {
                self.hint(
                    pos,
                    format!("input name `{name}` is not a valid name"),
                    "use lowercase letters, digits and '_', starting with a letter (it is used as `inputs.NAME`)",
                );
            }
            let pattern = match &spec.pattern {
                Some(p) => match regex::Regex::new(&format!("^(?:{})$", p.value)) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        self.error(
                            p.pos,
                            format!(
                                "input `{name}`: invalid pattern: {}",
                                first_line(&e.to_string())
                            ),
                        );
                        None
                    }
                },
                None => None,
            };
            if let Some(env) = &spec.env
                && !env
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                self.hint(
                    pos,
                    format!("input `{name}`: `{env}` is not an environment variable name"),
                    "use upper-case letters, digits and '_'",
                );
            }
            if let Some(env) = &spec.env
                && !spec.is_secret()
                && names_a_credential(env)
            {
                self.hint(
                    pos,
                    format!(
                        "input `{name}` reads `{env}`, a credential, but is not secret: its value would be shown, journalled and reported"
                    ),
                    "declare it `type: secret` (asked masked, held in memory only), or read another variable",
                );
            }
            if spec.kind == InputKind::Choice && spec.choices.is_empty() {
                self.hint(
                    pos,
                    format!("input `{name}` is a choice without `choices`"),
                    "list the options under `choices:` with a `value` each",
                );
            }
            if spec.kind != InputKind::Choice && !spec.choices.is_empty() {
                self.hint(
                    pos,
                    format!("input `{name}` has `choices` but is not of type `choice`"),
                    "set `type: choice`",
                );
            }
            if let Some(default) = &spec.default {
                if spec.kind == InputKind::Secret {
                    self.hint(
                        default.pos,
                        format!("secret input `{name}` has a default"),
                        "a default would keep the secret in the runbook file; remove it",
                    );
                }
                if default.is_template() {
                    self.error(
                        default.pos,
                        format!("input `{name}`: a default cannot hold a template"),
                    );
                }
                let value = default.value.as_str();
                match spec.kind {
                    InputKind::Bool if value != "true" && value != "false" => {
                        self.error(
                            default.pos,
                            format!("input `{name}`: default `{value}` is not true or false"),
                        );
                    }
                    InputKind::Int if value.parse::<i64>().is_err() => {
                        self.error(
                            default.pos,
                            format!("input `{name}`: default `{value}` is not an integer"),
                        );
                    }
                    InputKind::Choice if !spec.choices.iter().any(|c| c.value == value) => {
                        let msg =
                            format!("input `{name}`: default `{value}` is not one of its choices");
                        self.error(default.pos, msg);
                    }
                    _ => {}
                }
                if let Some(re) = &pattern
                    && !value.is_empty()
                    && !re.is_match(value)
                {
                    self.error(
                        default.pos,
                        format!("input `{name}`: default `{value}` does not match its pattern"),
                    );
                }
            }
        }
    }

    fn callout(&mut self, c: &Callout, scope: Scope) {
        self.text(&c.text, Sink::Shown, scope);
    }

    fn read_only_block(&mut self, block: &ActionBlock, what: &str) {
        if block.action.mutates() {
            self.hint(
                block.pos,
                format!("{what} must only read, but `{}` changes things", block.action.name()),
                "use a read-only action (kube.get, kube.wait, vault.status, s3.list, kms.describe, ssh.run with `mutates: false`, ...)",
            );
        }
    }

    fn step(&mut self, s: &Step, scope: Scope, ids: &mut HashMap<String, Pos>) {
        if let Some(first) = ids.insert(s.id.value.clone(), s.id.pos) {
            self.hint(
                s.id.pos,
                format!("duplicate step id `{}`", s.id),
                format!(
                    "the first step with this id is on line {}; step ids must be unique",
                    first.line
                ),
            );
        }
        if !is_ident(&s.id.value) {
            self.hint(
                s.id.pos,
                format!("step id `{}` is not a valid id", s.id),
                "use lowercase letters, digits, '-' and '_', starting with a letter or digit",
            );
        }
        let result_scope = match scope {
            Scope::Step(i) => Scope::StepResult(i),
            Scope::Cleanup => Scope::CleanupResult,
            other => other,
        };
        self.result_secrets = s.action.secret_results();
        if let Some(d) = &s.description {
            self.text(d, Sink::Shown, scope);
        }
        if let Some(w) = &s.when {
            self.expression(w, scope, None);
        }
        if let Some(t) = &s.expect {
            self.text(t, Sink::Shown, result_scope);
        }
        if let Some(t) = &s.fallback {
            self.text(t, Sink::Shown, scope);
        }
        for c in &s.callouts {
            self.callout(c, scope);
        }
        if let Some(t) = s.timeout
            && t.value.is_zero()
        {
            self.error(t.pos, "timeout must be more than zero");
        }
        if s.action.waits() && s.timeout.is_none() {
            self.hint(
                s.action_pos,
                format!(
                    "step `{}` waits (`{}`) but has no `timeout`",
                    s.id,
                    s.action.name()
                ),
                "every wait needs an explicit bound: add e.g. `timeout: 5m`",
            );
        }
        if let Some(r) = &s.retries
            && r.attempts == 0
        {
            self.error(
                s.id.pos,
                format!("step `{}`: retries.attempts must be at least 1", s.id),
            );
        }
        if let Some(check) = &s.check {
            self.read_only_block(check, "a step's `check`");
            self.action(&check.action, check.pos, scope, Some(&s.id.value));
        }
        for o in &s.outputs {
            self.expression(&o.from, result_scope, Some(o.secret));
        }
        self.action(&s.action, s.action_pos, scope, Some(&s.id.value));
        self.result_secrets = &[];
    }

    /// Action-specific rules, then every template field.
    fn action(&mut self, action: &Action, pos: Pos, scope: Scope, step: Option<&str>) {
        let at = step.map(|s| format!("step `{s}`: ")).unwrap_or_default();
        let name = action.name();
        match action {
            Action::Manual(_) | Action::Sleep(_) | Action::Http(_) => {}
            Action::Shell(a) => {
                if a.argv.is_empty() == a.script.is_none() {
                    self.hint(
                        pos,
                        format!("{at}`shell` needs exactly one of `argv` or `script`"),
                        "use `argv` for one program with arguments, `script` for a bash script",
                    );
                }
                self.env_names(&a.env, pos, &at);
                self.inherit_env(&a.inherit_env, pos, &at);
            }
            Action::Input(a) => {
                if let Some(p) = &a.pattern
                    && let Err(e) = regex::Regex::new(p)
                {
                    self.error(
                        pos,
                        format!("{at}invalid pattern: {}", first_line(&e.to_string())),
                    );
                }
                if a.kind == InputKind::Choice && a.choices.is_empty() {
                    self.error(
                        pos,
                        format!("{at}an `input` of type choice needs `choices`"),
                    );
                }
            }
            Action::Choose(a) => {
                if a.options.len() < 2 {
                    self.hint(
                        pos,
                        format!("{at}`choose` needs at least two options"),
                        "a decision with one option is a `manual` step",
                    );
                }
                let mut seen = HashSet::new();
                for o in &a.options {
                    if !seen.insert(o.value.as_str()) {
                        self.error(pos, format!("{at}option `{}` appears twice", o.value));
                    }
                }
                if let Some(d) = &a.default
                    && !a.options.iter().any(|o| o.value == d.value)
                {
                    self.error(
                        d.pos,
                        format!("{at}default `{}` is not one of the options", d.value),
                    );
                }
            }
            Action::KubeApply(a) => {
                if a.manifest.is_some() == a.file.is_some() {
                    self.error(
                        pos,
                        format!("{at}`kube.apply` needs exactly one of `manifest` or `file`"),
                    );
                }
            }
            Action::KubeNamespace(_)
            | Action::KubeRolloutRestart(_)
            | Action::KubeRolloutStatus(_) => {
                if let Action::KubeRolloutRestart(r) = action
                    && r.names.is_empty()
                {
                    self.error(pos, format!("{at}`{name}` needs at least one name"));
                }
                if let Action::KubeRolloutStatus(r) = action
                    && r.names.is_empty()
                {
                    self.error(pos, format!("{at}`{name}` needs at least one name"));
                }
            }
            Action::KubeSecret(a) => {
                if a.literals.is_empty() && a.files.is_empty() {
                    self.hint(
                        pos,
                        format!("{at}`kube.secret` has no keys"),
                        "add `literals:` or `files:`",
                    );
                }
                for k in a.literals.keys().chain(a.files.keys()) {
                    if !k
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        || k.is_empty()
                    {
                        self.error(pos, format!("{at}`{k}` is not a valid Secret key (letters, digits, '-', '_', '.')"));
                    }
                }
                for (k, src) in &a.files {
                    if a.literals.contains_key(k) {
                        self.error(pos, format!("{at}key `{k}` is both a literal and a file"));
                    }
                    if let FileSource::Path(p) = src
                        && p.value.is_empty()
                    {
                        self.error(p.pos, format!("{at}file `{k}` has an empty path"));
                    }
                }
            }
            Action::KubeDelete(a) => self.resource(&a.resource, pos, &at, true),
            Action::KubeGet(a) => {
                self.resource(&a.resource, pos, &at, false);
                for asr in &a.assert {
                    let n = usize::from(asr.equals.is_some())
                        + usize::from(!asr.one_of.is_empty())
                        + usize::from(asr.exists.is_some())
                        + usize::from(asr.matches.is_some());
                    if n != 1 {
                        self.hint(
                            pos,
                            format!("{at}assertion on `{}` needs exactly one test", asr.path),
                            "use one of `equals`, `one_of`, `exists`, `matches`",
                        );
                    }
                    if let Some(m) = &asr.matches
                        && let Err(e) = regex::Regex::new(m)
                    {
                        self.error(
                            pos,
                            format!(
                                "{at}invalid regex in assertion on `{}`: {}",
                                asr.path,
                                first_line(&e.to_string())
                            ),
                        );
                    }
                    self.field_path(&asr.path, pos, &at);
                }
                if let (Some(lo), Some(hi)) = (a.min_items, a.max_items)
                    && lo > hi
                {
                    self.error(
                        pos,
                        format!("{at}min_items {lo} is more than max_items {hi}"),
                    );
                }
            }
            Action::KubeWait(a) => {
                self.resource(&a.resource, pos, &at, false);
                if let super::action::WaitFor::Field { path, .. } = &a.wait_for {
                    self.field_path(path, pos, &at);
                }
            }
            Action::KubePatch(a) => {
                self.resource(&a.resource, pos, &at, true);
                if a.resource.name.is_none() {
                    self.error(pos, format!("{at}`kube.patch` needs a resource `name`"));
                }
                if !a.patch.is_template() {
                    match serde_json::from_str::<serde_json::Value>(&a.patch.value) {
                        Ok(v) => {
                            let ok = match a.patch_type {
                                super::action::PatchType::Json => v.is_array(),
                                _ => v.is_object(),
                            };
                            if !ok {
                                self.hint(
                                    a.patch.pos,
                                    format!(
                                        "{at}a {} patch must be a JSON {}",
                                        a.patch_type.as_str(),
                                        if v.is_array() {
                                            "object"
                                        } else {
                                            "array of operations"
                                        }
                                    ),
                                    "see `kubectl patch --help` for the patch types",
                                );
                            }
                        }
                        Err(e) => {
                            self.hint(a.patch.pos, format!("{at}the patch is not valid JSON: {e}"), "write the patch as JSON text, e.g. '{\"metadata\":{\"annotations\":{\"k\":\"v\"}}}'");
                        }
                    }
                }
            }
            Action::KubeLogs(a) => {
                let n = [&a.pod, &a.selector, &a.job, &a.cronjob]
                    .iter()
                    .filter(|x| x.is_some())
                    .count();
                if n != 1 {
                    self.error(pos, format!("{at}`kube.logs` needs exactly one of `pod`, `selector`, `job` or `cronjob`"));
                }
            }
            Action::KubePortForward(a) => {
                let t = &a.target.value;
                if !a.target.is_template()
                    && !["svc/", "service/", "pod/", "deployment/", "deploy/"]
                        .iter()
                        .any(|p| t.starts_with(p))
                {
                    self.hint(a.target.pos, format!("{at}port-forward target `{t}` is not `svc/NAME`, `pod/NAME` or `deployment/NAME`"), "name the kind, as with kubectl port-forward");
                }
                if a.port == 0 {
                    self.error(pos, format!("{at}port must be more than zero"));
                }
            }
            Action::VaultInit(a) => self.shares(a.shares, a.threshold, pos, &at),
            Action::VaultRekey(a) => self.shares(a.shares, a.threshold, pos, &at),
            Action::VaultUnseal(a) => {
                if !a.keys.is_empty() && !a.holders.is_empty() {
                    self.error(
                        pos,
                        format!("{at}`vault.unseal` takes `keys` or `holders`, not both"),
                    );
                }
            }
            Action::VaultKvPut(a) => {
                if a.data.is_empty() {
                    self.error(pos, format!("{at}`vault.kv-put` has no `data`"));
                }
            }
            Action::VaultStatus(_)
            | Action::VaultWaitUnsealed(_)
            | Action::VaultKvGet(_)
            | Action::VaultKvPopulate(_)
            | Action::VaultRekeyVerify(_) => {}
            Action::S3List(_) | Action::S3Download(_) | Action::S3Upload(_) => {}
            Action::S3Newest(a) => {
                if a.pattern.value.contains('/') {
                    self.hint(
                        a.pattern.pos,
                        format!(
                            "{at}the pattern matches the name after `prefix` and cannot hold '/'"
                        ),
                        "move the directory part into `prefix`",
                    );
                }
            }
            Action::KmsDescribe(_)
            | Action::KmsCancelDeletion(_)
            | Action::KmsEnable(_)
            | Action::KmsVerify(_) => {}
            Action::KubeUse(_) => {}
            Action::SshRun(a) => self.env_names(&a.env, pos, &at),
            Action::SshCopy(a) => {
                if let Some(m) = &a.mode
                    && (m.is_empty() || m.len() > 4 || !m.chars().all(|c| ('0'..='7').contains(&c)))
                {
                    self.error(
                        pos,
                        format!("{at}mode `{m}` is not an octal file mode like 0600"),
                    );
                }
            }
            Action::EtcdSnapshotStatus(_) | Action::EtcdSnapshotRestore(_) => {}
            Action::VeleroBackups(_) | Action::VeleroRestore(_) => {}
            Action::ArgocdApps(_) | Action::ArgocdWait(_) | Action::ArgocdRefresh(_) => {}
            Action::EsoWait(a) => {
                if a.cluster_secret_stores.is_empty() && !a.external_secrets {
                    self.error(pos, format!("{at}`eso.wait` waits for nothing: name stores or keep `external_secrets: true`"));
                }
            }
            Action::LonghornBackups(_) => {}
            Action::LonghornRestore(a) => {
                if a.backup.is_some() && a.volumes.len() != 1 {
                    self.error(pos, format!("{at}a named `backup` restores exactly one volume; list one in `volumes`"));
                }
            }
        }
        let mut texts = Vec::new();
        action.visit_texts(&mut |t, sink| texts.push((t, sink)));
        for (t, sink) in texts {
            self.text(t, sink, scope);
        }
    }

    fn resource(&mut self, r: &super::action::Resource, pos: Pos, at: &str, mutating: bool) {
        if r.kind.trim().is_empty() {
            self.error(pos, format!("{at}the resource has no `kind`"));
        }
        if r.name.is_some() && (r.selector.is_some() || r.field_selector.is_some()) {
            self.hint(
                pos,
                format!("{at}the resource has both a `name` and a selector"),
                "name one object, or select several",
            );
        }
        if r.all_namespaces && r.namespace.is_some() {
            self.error(
                pos,
                format!("{at}`all_namespaces` and `namespace` exclude each other"),
            );
        }
        if mutating && r.name.is_none() && r.selector.is_none() && r.field_selector.is_none() {
            self.hint(
                pos,
                format!("{at}this would act on every `{}`", r.kind),
                "name the object or give a selector",
            );
        }
    }

    fn field_path(&mut self, path: &str, pos: Pos, at: &str) {
        if let Err(e) = crate::runbook::fieldpath::parse_field_path(path) {
            self.hint(
                pos,
                format!("{at}invalid field path `{path}`: {e}"),
                "write paths like `status.phase` or `status.conditions[type=Ready].status`",
            );
        }
    }

    fn shares(&mut self, shares: u8, threshold: u8, pos: Pos, at: &str) {
        if shares == 0 || threshold == 0 || threshold > shares {
            self.hint(
                pos,
                format!("{at}threshold {threshold} of {shares} shares is impossible"),
                "the threshold must be between 1 and the number of shares",
            );
        }
    }

    fn env_names(&mut self, env: &indexmap::IndexMap<String, Text>, pos: Pos, at: &str) {
        for k in env.keys() {
            let ok = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                self.error(
                    pos,
                    format!("{at}`{k}` is not an environment variable name"),
                );
            }
        }
    }

    /// `shell.inherit_env`: names of variables, of credentials drctl withholds; drctl's own
    /// variables never (an input reaches a command through `env`).
    fn inherit_env(&mut self, names: &[String], pos: Pos, at: &str) {
        use super::action::WITHHELD_CREDENTIALS;
        for k in names {
            if !is_env_name(k) {
                self.error(
                    pos,
                    format!("{at}`inherit_env`: `{k}` is not an environment variable name"),
                );
            } else if k.starts_with("DRCTL_") {
                self.hint(
                    pos,
                    format!("{at}`inherit_env`: `{k}` is drctl's own variable, never passed on"),
                    "give the command the input it carries in `env`: `env: { NAME: \"{{ inputs.NAME }}\" }`",
                );
            } else if !WITHHELD_CREDENTIALS.contains(&k.as_str()) {
                let d = Diagnostic::warning(
                    self.file,
                    self.source,
                    pos,
                    format!(
                        "{at}`inherit_env`: `{k}` is not a credential drctl withholds, so the command sees it anyway"
                    ),
                )
                .with_hint(format!(
                    "`inherit_env` takes {}; other variables reach every command (a secret input reaches one through `env`)",
                    WITHHELD_CREDENTIALS.join(", ")
                ));
                self.diags.push(d);
            }
        }
    }

    /// A template field: syntax, references, and whether a secret would be shown.
    fn text(&mut self, t: &Text, sink: Sink, scope: Scope) {
        if !t.is_template() {
            return;
        }
        if sink == Sink::Command {
            for (offset, place) in shellctx::placements(&t.value) {
                if let Some((message, hint)) = place.explain() {
                    let line = t.value[..offset].matches('\n').count() + 1;
                    let message = if t.value.trim_end().contains('\n') {
                        format!("{message} (line {line} of the script)")
                    } else {
                        message.to_owned()
                    };
                    self.hint(t.pos, message, hint);
                }
            }
        }
        if let Some(what) = turns_quoting_off(&t.value) {
            self.hint(
                t.pos,
                format!("{what} is not available in drctl templates"),
                "`| raw` is the one way to leave a value unquoted in a command line; it stays visible in review",
            );
        }
        let refs = match self
            .env
            .template_from_named_str(template_name(sink), &t.value)
        {
            Ok(tmpl) => tmpl.undeclared_variables(true),
            Err(e) => {
                self.hint(
                    t.pos,
                    format!("template error: {}", template_error(&e)),
                    "templates use MiniJinja syntax: {{ inputs.name }}",
                );
                return;
            }
        };
        let mut secrets = self.references(t.pos, refs, scope);
        if sink != Sink::Hidden {
            let found =
                self.probe
                    .secrets_used(&t.value, Form::Template(sink), self.result_in(scope));
            add_found(&mut secrets, found);
        }
        if sink != Sink::Hidden && !secrets.is_empty() {
            let what = if sink == Sink::Command {
                "into a command line, which is shown, logged and visible in `ps`"
            } else {
                "into text that is shown, printed and logged"
            };
            self.hint(
                t.pos,
                format!("secret {} would flow {what}", secrets.join(", ")),
                SECRET_SINKS_HINT,
            );
        }
    }

    /// A MiniJinja expression (`when`, an output's `from`). `output_secret` is set for
    /// `from`: a non-secret output may not be computed from a secret.
    fn expression(&mut self, t: &Text, scope: Scope, output_secret: Option<bool>) {
        let refs = match self.env.compile_expression(&t.value) {
            Ok(expr) => expr.undeclared_variables(true),
            Err(e) => {
                self.hint(
                    t.pos,
                    format!("expression error: {}", template_error(&e)),
                    "expressions use MiniJinja syntax, e.g. `outputs.source == \"offsite\"`",
                );
                return;
            }
        };
        let mut secrets = self.references(t.pos, refs, scope);
        if output_secret == Some(false) {
            let found = self
                .probe
                .secrets_used(&t.value, Form::Expression, self.result_in(scope));
            add_found(&mut secrets, found);
        }
        if output_secret == Some(false) && !secrets.is_empty() {
            self.hint(
                t.pos,
                format!(
                    "this output is computed from secret {} but is not marked secret",
                    secrets.join(", ")
                ),
                "add `secret: true` to the output so it is never journalled or shown",
            );
        }
    }

    /// The secret fields of `result`, where `result` is in scope.
    fn result_in(&self, scope: Scope) -> Option<&'static [&'static str]> {
        matches!(scope, Scope::StepResult(_) | Scope::CleanupResult).then_some(self.result_secrets)
    }

    /// Check every referenced variable; returns the secret ones (`input `x``).
    fn references(&mut self, pos: Pos, refs: HashSet<String>, scope: Scope) -> Vec<String> {
        let mut refs: Vec<String> = refs.into_iter().collect();
        refs.sort();
        let mut secrets = Vec::new();
        for r in refs {
            let mut parts = r.splitn(3, '.');
            let root = parts.next().unwrap_or_default();
            let field = parts.next();
            match root {
                "inputs" => {
                    let Some(name) = field else {
                        // A subscript, an alias or the whole map: any secret input.
                        secrets.extend(
                            self.rb
                                .inputs
                                .iter()
                                .filter(|(_, spec)| spec.is_secret())
                                .map(|(n, _)| format!("input `{n}` (through `inputs` used whole or by subscript; name the input: `inputs.NAME`)")),
                        );
                        continue;
                    };
                    match self.rb.inputs.get(name) {
                        Some(spec) => {
                            if spec.is_secret() {
                                secrets.push(format!("input `{name}`"));
                            }
                        }
                        None => {
                            let hint = match super::suggest(
                                name,
                                self.rb.inputs.keys().map(String::as_str),
                            ) {
                                Some(s) => format!("did you mean `inputs.{s}`?"),
                                None if self.rb.inputs.is_empty() => {
                                    "the runbook declares no inputs; add it under `inputs:`"
                                        .to_owned()
                                }
                                None => format!(
                                    "declared inputs: {}",
                                    self.rb
                                        .inputs
                                        .keys()
                                        .cloned()
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            };
                            self.hint(pos, format!("unknown input `{name}`"), hint);
                        }
                    }
                }
                "outputs" => {
                    let here = match scope {
                        Scope::Start => Some(0),
                        Scope::Step(i) => Some(i),
                        Scope::StepResult(i) => Some(i),
                        Scope::Cleanup | Scope::CleanupResult => None,
                    };
                    let Some(name) = field else {
                        let mut names: Vec<&String> = self
                            .outputs
                            .iter()
                            .filter(|(_, o)| o.secret && here.is_none_or(|i| o.order < i))
                            .map(|(n, _)| n)
                            .collect();
                        names.sort();
                        secrets.extend(names.into_iter().map(|n| format!("output `{n}` (through `outputs` used whole or by subscript; name the output: `outputs.NAME`)")));
                        continue;
                    };
                    match self.outputs.get(name) {
                        Some(info) => {
                            if info.secret {
                                secrets.push(format!("output `{name}`"));
                            }
                            let too_late = match (here, scope) {
                                (Some(_), Scope::Start) => true,
                                (Some(i), _) => info.order >= i,
                                (None, _) => false,
                            };
                            if too_late {
                                let (step, line) = (info.step.clone(), info.pos.line);
                                self.hint(
                                    pos,
                                    format!("output `{name}` is used before step `{step}` captures it (line {line})"),
                                    "a step can only use outputs of the steps before it",
                                );
                            }
                        }
                        None => {
                            let known: Vec<&str> =
                                self.outputs.keys().map(String::as_str).collect();
                            let hint = match super::suggest(name, known.iter().copied()) {
                                Some(s) => format!("did you mean `outputs.{s}`?"),
                                None => {
                                    "declare it in the `outputs:` of an earlier step".to_owned()
                                }
                            };
                            self.hint(pos, format!("unknown output `{name}`"), hint);
                        }
                    }
                }
                "run" => {
                    if let Some(f) = field
                        && !RUN_FIELDS.contains(&f)
                    {
                        self.hint(
                            pos,
                            format!("unknown run field `run.{f}`"),
                            format!("run fields: {}", RUN_FIELDS.join(", ")),
                        );
                    }
                }
                "result" => {
                    match field {
                        Some(f) if self.result_secrets.contains(&f) => {
                            secrets.push(format!("result `{f}`"));
                        }
                        Some(_) => {}
                        None => secrets.extend(self.result_secrets.iter().map(|f| {
                            format!("result `{f}` (through `result` used whole or by subscript; name the field: `result.FIELD`)")
                        })),
                    }
                    if !matches!(scope, Scope::StepResult(_) | Scope::CleanupResult) {
                        self.hint(
                            pos,
                            "`result` is only available in a step's `outputs` and `expect`",
                            "capture the value as an output, then use `outputs.NAME`",
                        );
                    }
                }
                other => {
                    let hint = match super::suggest(other, ROOTS.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => {
                            "templates can use inputs.NAME, outputs.NAME and run.FIELD".to_owned()
                        }
                    };
                    self.hint(pos, format!("unknown variable `{other}`"), hint);
                }
            }
        }
        secrets
    }
}

/// Secrets found by rendering that reference tracking did not name.
fn add_found(secrets: &mut Vec<String>, found: Vec<String>) {
    for f in found {
        if !secrets.iter().any(|s| s.starts_with(&f)) {
            secrets.push(f);
        }
    }
}

/// `{% autoescape %}` or the `safe` filter, which would turn drctl's quoting off.
fn turns_quoting_off(t: &str) -> Option<&'static str> {
    static AUTOESCAPE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\{%-?\s*autoescape\b").expect("valid regex"));
    static SAFE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\|\s*safe\b").expect("valid regex"));
    if AUTOESCAPE.is_match(t) {
        Some("`{% autoescape %}`")
    } else if SAFE.is_match(t) {
        Some("the `safe` filter")
    } else {
        None
    }
}

fn template_error(e: &minijinja::Error) -> String {
    let detail = e
        .detail()
        .map(str::to_owned)
        .unwrap_or_else(|| e.kind().to_string());
    match e.line() {
        Some(l) if l > 1 => format!("{detail} (line {l} of the template)"),
        _ => detail,
    }
}

/// Whether an environment variable holds a credential by its name (the well-known ones,
/// and the `*_TOKEN`, `*_PASSWORD`, `*_SECRET...` conventions).
fn names_a_credential(var: &str) -> bool {
    const EXACT: &[&str] = &[
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "VAULT_TOKEN",
        "BAO_TOKEN",
        "VAULT_UNSEAL_KEY",
        "KUBECONFIG_DATA",
        "PGPASSWORD",
        "MYSQL_PWD",
        "SSH_AUTH_SOCK",
    ];
    const SUFFIXES: &[&str] = &[
        "_TOKEN",
        "_PASSWORD",
        "_PASSWD",
        "_SECRET",
        "_SECRET_KEY",
        "_SECRET_ACCESS_KEY",
        "_API_KEY",
        "_PRIVATE_KEY",
        "_UNSEAL_KEY",
        "_CREDENTIALS",
    ];
    EXACT.contains(&var) || SUFFIXES.iter().any(|s| var.ends_with(s))
}

fn first_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s).trim()
}

/// `NAME_1`: an environment variable name.
fn is_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `a-b_c1`: ids of runbooks and steps.
pub fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// `a_b1`: names used as template variables.
pub fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_src(steps: &str) -> Vec<String> {
        check_yaml(&format!(
            "apiVersion: drctl/v1\nkind: Runbook\nname: t\ntitle: T\nsummary: S\nsteps:\n{steps}"
        ))
    }

    fn check_yaml(src: &str) -> Vec<String> {
        let src: Arc<str> = Arc::from(src);
        let rb = crate::runbook::load::parse("t.yaml", &src).expect("parses");
        check("t.yaml", &src, &rb, Some("t"))
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    /// Attack: a runbook reads a credential into a plain input, whose value drctl would
    /// show, journal and report. Refused, naming the variable; as a secret it is fine.
    #[test]
    fn inputs_reading_credentials_must_be_secret() {
        let check_inputs = |inputs: &str| {
            check_yaml(&format!(
                "apiVersion: drctl/v1\nkind: Runbook\nname: t\ntitle: T\nsummary: S\ninputs:\n{inputs}steps:\n  - id: a\n    title: A\n    sleep: {{ duration: 1s }}\n"
            ))
        };
        for var in [
            "AWS_SECRET_ACCESS_KEY",
            "VAULT_TOKEN",
            "BAO_TOKEN",
            "GITHUB_TOKEN",
            "DB_PASSWORD",
            "CLOUDFLARE_API_KEY",
        ] {
            assert_eq!(
                check_inputs(&format!("  k: {{ env: {var} }}\n")),
                vec![format!(
                    "input `k` reads `{var}`, a credential, but is not secret: its value would be shown, journalled and reported"
                )]
            );
            assert!(check_inputs(&format!("  k: {{ env: {var}, type: secret }}\n")).is_empty());
        }
        assert!(check_inputs("  region: { env: AWS_REGION }\n").is_empty());
        assert!(check_inputs("  ttl: { env: VAULT_TOKEN_TTL }\n").is_empty());
    }

    #[test]
    fn secret_results_must_be_captured_as_secrets() {
        let msgs = check_src(
            "  - id: init\n    title: I\n    vault.init: { shares: 3, threshold: 2 }\n    outputs: [{ name: token, from: result.root_token }]\n",
        );
        assert_eq!(
            msgs,
            vec![
                "this output is computed from secret result `root_token` but is not marked secret"
            ]
        );
        let msgs = check_src(
            "  - id: init\n    title: I\n    vault.init: { shares: 3, threshold: 2 }\n    outputs: [{ name: token, from: result.root_token, secret: true }]\n",
        );
        assert!(msgs.is_empty(), "{msgs:?}");
    }

    #[test]
    fn result_only_where_a_result_exists() {
        let msgs = check_src(
            "  - id: a\n    title: A\n    description: \"{{ result.x }}\"\n    sleep: { duration: 1s }\n",
        );
        assert_eq!(
            msgs,
            vec!["`result` is only available in a step's `outputs` and `expect`"]
        );
    }

    #[test]
    fn deleting_with_wait_needs_a_timeout() {
        let msgs = check_src(
            "  - id: d\n    title: D\n    kube.delete: { resource: { kind: Pod, name: vault-0, namespace: vault } }\n",
        );
        assert_eq!(
            msgs,
            vec!["step `d` waits (`kube.delete`) but has no `timeout`"]
        );
    }

    #[test]
    fn templates_where_quoting_cannot_hold_are_refused() {
        let cases = [
            ("'echo \"{{ run.id }}\"'", "inside double quotes"),
            ("\"echo '{{ run.id }}'\"", "inside single quotes"),
            ("'echo `{{ run.id }}`'", "inside backticks"),
            ("'echo \\{{ run.id }}'", "after a backslash"),
            ("'true # {{ run.id }}'", "inside a shell comment"),
            (
                "\"cat <<EOF\\n{{ run.id }}\\nEOF\\n\"",
                "(line 2 of the script)",
            ),
            (
                "\"cat <<'EOF'\\n{{ run.id }}\\nEOF\\n\"",
                "here-document body",
            ),
            (
                "'echo {{ run.id | safe }}'",
                "the `safe` filter is not available",
            ),
            (
                "'{% autoescape false %}echo {{ run.id }}{% endautoescape %}'",
                "`{% autoescape %}` is not available",
            ),
        ];
        for (script, want) in cases {
            let msgs = check_src(&format!(
                "  - id: a\n    title: A\n    shell: {{ script: {script} }}\n"
            ));
            assert_eq!(msgs.len(), 1, "{script}: {msgs:?}");
            assert!(msgs[0].contains(want), "{script}: {msgs:?}");
        }
        assert!(
            check_src(
                "  - id: a\n    title: A\n    shell: { script: 'echo {{ run.id }} # done' }\n"
            )
            .is_empty()
        );
    }

    /// Subscripts, aliases and whole maps name no field: every secret of that root
    /// counts as used.
    #[test]
    fn secrets_reached_without_their_name_are_refused() {
        let head = "apiVersion: drctl/v1\nkind: Runbook\nname: t\ntitle: T\nsummary: S\ninputs:\n  token: { type: secret }\n  host: { description: h }\nsteps:\n";
        let cases = [
            "    shell: { script: \"echo {{ inputs['token'] }}\" }\n",
            "    shell: { script: \"{% set i = inputs %}echo {{ i.token }}\" }\n",
            "    shell: { script: 'echo {{ inputs }}' }\n",
            "    manual: { instructions: \"{{ inputs | items }}\" }\n",
            "    shell: { script: 'true' }\n    outputs: [{ name: t, from: \"inputs['token']\" }]\n",
            "    vault.init: { shares: 1, threshold: 1 }\n    outputs: [{ name: all, from: result }]\n",
            "    vault.init: { shares: 1, threshold: 1 }\n    outputs: [{ name: k, from: \"result['keys']\" }]\n",
        ];
        for body in cases {
            let src = format!("{head}  - id: a\n    title: A\n{body}");
            let msgs = check_yaml(&src);
            assert!(
                msgs.iter()
                    .any(|m| m.contains("secret input `token`") || m.contains("secret result")),
                "{body}: {msgs:?}"
            );
        }
        // In a hidden sink, a whole map is fine.
        let src = format!(
            "{head}  - id: a\n    title: A\n    shell: {{ script: 'cmd', env: {{ T: \"{{{{ inputs['token'] }}}}\" }} }}\n"
        );
        let msgs = check_yaml(&src);
        assert!(msgs.is_empty(), "{msgs:?}");
    }

    /// `shell.inherit_env` (issue 19, item 6): variable names only, never drctl's own, and a
    /// hint when the name is not a withheld credential.
    #[test]
    fn inherit_env_names_withheld_credentials_only() {
        let ok = check_src(
            "  - id: a\n    title: A\n    shell: { argv: [make], inherit_env: [AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, VAULT_TOKEN] }\n",
        );
        assert!(ok.is_empty(), "{ok:?}");
        let got = check_src(
            "  - id: a\n    title: A\n    shell: { argv: [make], inherit_env: [1X, DRCTL_INPUT_TOKEN, HOME] }\n",
        );
        assert_eq!(
            got,
            vec![
                "step `a`: `inherit_env`: `1X` is not an environment variable name",
                "step `a`: `inherit_env`: `DRCTL_INPUT_TOKEN` is drctl's own variable, never passed on",
                "step `a`: `inherit_env`: `HOME` is not a credential drctl withholds, so the command sees it anyway",
            ]
        );
    }

    #[test]
    fn names() {
        assert!(is_ident("etcd-restore"));
        assert!(!is_ident("Etcd"));
        assert!(is_var_name("control_plane"));
        assert!(!is_var_name("control-plane"));
    }
}
