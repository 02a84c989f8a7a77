//! The closed vocabulary of step actions. Each action is a struct; the `actions!` table
//! below turns them into the `Action` enum, so adding one makes the compiler point at
//! every exhaustive match (validation, printing, execution).

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::text::{Dur, Text};

/// How a template field's rendered value is used, which decides whether a secret may flow
/// into it and how it is quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Shown to the operator, printed, logged or journalled (names, paths, messages).
    Shown,
    /// Interpolated into a shell command line: shown, and values are shell-quoted.
    Command,
    /// Carried to the target system without being shown (secret data, env, stdin).
    Hidden,
}

/// What every action declares about itself.
pub trait ActionSpec {
    /// Whether the action changes anything (false: it only reads). Drives dry-run,
    /// confirmation prompts and safe resume.
    fn mutates(&self) -> bool;
    /// Every template field of the action, with how its value is used.
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink));
    /// Whether the action blocks until a condition holds (so it needs a `timeout`).
    fn waits(&self) -> bool {
        false
    }
    /// Whether the action needs an operator at the keyboard (prompts, manual work).
    fn interactive(&self) -> bool {
        false
    }
    /// Fields of the action's `result` that hold secrets: an output taken from one must
    /// be `secret: true`, and `expect` may not show one.
    fn secret_results(&self) -> &'static [&'static str] {
        &[]
    }
    /// What the action opens lives only as long as the drctl process (a port-forward): a
    /// resumed run opens it again before the steps after it use its result.
    fn process_bound(&self) -> bool {
        false
    }
}

fn visit_opt<'a>(t: &'a Option<Text>, sink: Sink, f: &mut dyn FnMut(&'a Text, Sink)) {
    if let Some(t) = t {
        f(t, sink);
    }
}

fn visit_all<'a>(ts: &'a [Text], sink: Sink, f: &mut dyn FnMut(&'a Text, Sink)) {
    for t in ts {
        f(t, sink);
    }
}

fn visit_map<'a>(m: &'a IndexMap<String, Text>, sink: Sink, f: &mut dyn FnMut(&'a Text, Sink)) {
    for t in m.values() {
        f(t, sink);
    }
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------------------------------
// Generic actions
// ---------------------------------------------------------------------------------------

/// Work the operator does by hand; drctl shows the instructions and waits for confirmation.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manual {
    /// Markdown instructions.
    pub instructions: Text,
    /// Set to false when the manual work only observes (looks at a UI, reads a value).
    #[serde(default = "yes")]
    pub mutates: bool,
}

impl ActionSpec for Manual {
    fn mutates(&self) -> bool {
        self.mutates
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.instructions, Sink::Shown);
    }
    fn interactive(&self) -> bool {
        true
    }
}

/// A local command: `argv` (no shell involved) or `script` (run by `bash -euo pipefail`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shell {
    #[serde(default)]
    pub argv: Vec<Text>,
    pub script: Option<Text>,
    pub cwd: Option<Text>,
    /// Environment for the command; the only place a secret may reach a local command.
    #[serde(default)]
    pub env: IndexMap<String, Text>,
    /// Standard input for the command; may carry secrets.
    pub stdin: Option<Text>,
    /// Whether the command changes anything. Defaults to true: drctl cannot know, so a
    /// dry-run skips it unless the author declares it read-only.
    #[serde(default = "yes")]
    pub mutates: bool,
    /// Run attached to the operator's terminal, for commands that ask questions (an
    /// installer script). Needs an operator: under `--yes` the run stops here.
    #[serde(default)]
    pub tty: bool,
    /// Credentials of drctl's own environment (`WITHHELD_CREDENTIALS`) this command needs,
    /// for the operator's own tooling (`make`, `terraform`, the `aws` CLI). Without it a
    /// command sees none of them.
    #[serde(default)]
    pub inherit_env: Vec<String>,
}

/// Credentials drctl may use from its own environment (its Vault and AWS steps run in this
/// process) but never hands to a child process (a `shell` command, an ssh connection)
/// unless a `shell` step names them in `inherit_env`. AWS's key id goes with its secret:
/// a command given one without the other would fail on the half it has instead of using
/// its own profile.
pub const WITHHELD_CREDENTIALS: &[&str] = &[
    "VAULT_TOKEN",
    "BAO_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
];

impl ActionSpec for Shell {
    fn mutates(&self) -> bool {
        self.mutates
    }
    fn interactive(&self) -> bool {
        self.tty
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_all(&self.argv, Sink::Shown, f);
        visit_opt(&self.script, Sink::Command, f);
        visit_opt(&self.cwd, Sink::Shown, f);
        visit_map(&self.env, Sink::Hidden, f);
        visit_opt(&self.stdin, Sink::Hidden, f);
    }
}

/// The kind of value an input or a mid-run question asks for.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    #[default]
    String,
    Bool,
    Int,
    Choice,
    /// Asked masked, held in memory only, never written anywhere.
    Secret,
    /// A path to a local file; its content is read when the run starts.
    File,
}

/// One option of a choice.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub value: String,
    pub label: Option<String>,
    /// Markdown: what this branch means and what follows.
    pub description: Option<String>,
}

/// A question asked mid-run; the answer is the step's `result.value`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub prompt: Text,
    #[serde(default, rename = "type")]
    pub kind: InputKind,
    pub default: Option<Text>,
    /// A regular expression the whole answer must match.
    pub pattern: Option<String>,
    #[serde(default)]
    pub choices: Vec<Choice>,
}

impl ActionSpec for Input {
    fn mutates(&self) -> bool {
        false
    }
    fn secret_results(&self) -> &'static [&'static str] {
        if self.kind == InputKind::Secret {
            &["value"]
        } else {
            &[]
        }
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.prompt, Sink::Shown);
        visit_opt(&self.default, Sink::Shown, f);
    }
    fn interactive(&self) -> bool {
        true
    }
}

/// A decision point: the operator picks one branch; later steps use `when` on it.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Choose {
    pub prompt: Text,
    pub options: Vec<Choice>,
    /// The value taken with `--yes` when no answer was given with `--set`.
    pub default: Option<Text>,
}

impl ActionSpec for Choose {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.prompt, Sink::Shown);
        visit_opt(&self.default, Sink::Shown, f);
    }
    fn interactive(&self) -> bool {
        true
    }
}

/// Wait a fixed time (for something drctl cannot observe).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sleep {
    pub duration: Dur,
    /// Why the wait is needed, shown while waiting.
    pub reason: Option<Text>,
}

impl ActionSpec for Sleep {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.reason, Sink::Shown, f);
    }
}

/// An HTTP(S) GET (or HEAD) that must answer with an expected status.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub url: Text,
    #[serde(default)]
    pub method: HttpMethod,
    /// Accepted status codes (default 200).
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// Text the body must contain.
    pub contains: Option<Text>,
    /// A PEM file of CA certificates to trust in addition to the system's.
    pub ca_cert: Option<Text>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
}

impl ActionSpec for Http {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.url, Sink::Shown);
        visit_opt(&self.contains, Sink::Shown, f);
        visit_opt(&self.ca_cert, Sink::Shown, f);
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------

/// A Kubernetes object or set of objects, any kind (custom resources included).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// `v1`, `apps/v1`, `velero.io/v1`... Defaults to the preferred version of `kind`.
    pub api_version: Option<String>,
    /// Kind (`Pod`) or plural resource name (`pods`).
    pub kind: String,
    pub name: Option<Text>,
    pub namespace: Option<Text>,
    /// Label selector, e.g. `app=vault,tier in (db)`.
    pub selector: Option<Text>,
    /// Field selector, e.g. `status.phase=Pending`.
    pub field_selector: Option<Text>,
    /// Every namespace (`kubectl -A`).
    #[serde(default)]
    pub all_namespaces: bool,
}

impl Resource {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.name, Sink::Shown, f);
        visit_opt(&self.namespace, Sink::Shown, f);
        visit_opt(&self.selector, Sink::Shown, f);
        visit_opt(&self.field_selector, Sink::Shown, f);
    }
}

/// A test of a field of an object (`path` is a dotted field path: `status.phase`,
/// `status.conditions[type=Ready].status`, `metadata.labels.app`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    pub path: String,
    pub equals: Option<Text>,
    #[serde(default)]
    pub one_of: Vec<String>,
    /// Whether the field must exist (true) or be absent (false).
    pub exists: Option<bool>,
    /// A regular expression the field's text must match.
    pub matches: Option<String>,
    /// For lists: whether every object (default) or at least one must pass.
    #[serde(default)]
    pub scope: AssertScope,
    /// What the failure means, in the operator's words.
    pub message: Option<Text>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AssertScope {
    #[default]
    All,
    Any,
}

/// Create or update objects from a manifest (server-side apply).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeApply {
    /// Inline YAML manifest (one or more documents).
    pub manifest: Option<Text>,
    /// Path of a manifest file.
    pub file: Option<Text>,
    pub namespace: Option<Text>,
}

impl ActionSpec for KubeApply {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.manifest, Sink::Shown, f);
        visit_opt(&self.file, Sink::Shown, f);
        visit_opt(&self.namespace, Sink::Shown, f);
    }
}

/// Talk to another cluster from this step on: a kubeconfig file (for example one an
/// earlier step wrote) and optionally a context in it. Changes nothing in any cluster.
/// The choice is journalled, so it holds after a resume.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeUse {
    pub kubeconfig: Text,
    pub context: Option<Text>,
}

impl ActionSpec for KubeUse {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.kubeconfig, Sink::Shown);
        visit_opt(&self.context, Sink::Shown, f);
    }
}

/// Create a namespace unless it exists.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeNamespace {
    pub name: Text,
}

impl ActionSpec for KubeNamespace {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.name, Sink::Shown);
    }
}

/// A key of a Secret built from a file: inline content or a local path.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum FileSource {
    /// The file's content, templated (may hold secrets).
    Content(Text),
    /// A local file to read.
    Path(Text),
}

/// Create or replace a Secret (`kubectl create secret generic`), values never shown.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeSecret {
    pub name: Text,
    pub namespace: Text,
    /// Secret type (default `Opaque`).
    #[serde(rename = "type")]
    pub secret_type: Option<String>,
    /// Literal keys (`--from-literal`).
    #[serde(default)]
    pub literals: IndexMap<String, Text>,
    /// File keys (`--from-file`).
    #[serde(default)]
    pub files: IndexMap<String, FileSource>,
    /// Replace an existing Secret of that name (default true). False fails if it exists.
    #[serde(default = "yes")]
    pub replace: bool,
}

impl ActionSpec for KubeSecret {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.name, Sink::Shown);
        f(&self.namespace, Sink::Shown);
        visit_map(&self.literals, Sink::Hidden, f);
        for src in self.files.values() {
            match src {
                FileSource::Content(t) => f(t, Sink::Hidden),
                FileSource::Path(t) => f(t, Sink::Shown),
            }
        }
    }
}

/// Delete objects.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeDelete {
    pub resource: Resource,
    /// Succeed when nothing matches.
    #[serde(default)]
    pub ignore_not_found: bool,
    /// Wait until the objects are gone (default true).
    #[serde(default = "yes")]
    pub wait: bool,
}

impl ActionSpec for KubeDelete {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        self.resource.visit(f);
    }
    fn waits(&self) -> bool {
        self.wait
    }
}

/// Read objects, show them and test fields.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeGet {
    pub resource: Resource,
    #[serde(default)]
    pub assert: Vec<Assertion>,
    /// Fail when fewer objects match.
    pub min_items: Option<u32>,
    /// Fail when more objects match.
    pub max_items: Option<u32>,
    /// Extra columns to show, as field paths.
    #[serde(default)]
    pub columns: Vec<String>,
}

impl ActionSpec for KubeGet {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        self.resource.visit(f);
        for a in &self.assert {
            visit_opt(&a.equals, Sink::Shown, f);
            visit_opt(&a.message, Sink::Shown, f);
        }
    }
}

/// What a wait waits for.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum WaitFor {
    /// A status condition whose status is `True` (`Ready`, `Available`, `Established`).
    Condition(String),
    /// A field that must equal a value.
    Field { path: String, equals: Text },
    /// The objects are gone.
    Deleted,
}

/// Wait until objects meet a condition (one watch, bounded by the step's `timeout`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeWait {
    pub resource: Resource,
    #[serde(rename = "for")]
    pub wait_for: WaitFor,
}

impl ActionSpec for KubeWait {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        self.resource.visit(f);
        if let WaitFor::Field { equals, .. } = &self.wait_for {
            f(equals, Sink::Shown);
        }
    }
    fn waits(&self) -> bool {
        true
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
        }
    }
}

/// Restart workloads the way `kubectl rollout restart` does (a pod-template annotation).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeRolloutRestart {
    pub kind: WorkloadKind,
    pub namespace: Text,
    pub names: Vec<Text>,
}

impl ActionSpec for KubeRolloutRestart {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.namespace, Sink::Shown);
        visit_all(&self.names, Sink::Shown, f);
    }
}

/// Wait until workloads have rolled out (`kubectl rollout status`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeRolloutStatus {
    pub kind: WorkloadKind,
    pub namespace: Text,
    pub names: Vec<Text>,
}

impl ActionSpec for KubeRolloutStatus {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.namespace, Sink::Shown);
        visit_all(&self.names, Sink::Shown, f);
    }
    fn waits(&self) -> bool {
        true
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PatchType {
    #[default]
    Merge,
    Json,
    Strategic,
}

impl PatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            PatchType::Merge => "merge",
            PatchType::Json => "json",
            PatchType::Strategic => "strategic",
        }
    }
}

/// Patch one object.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubePatch {
    pub resource: Resource,
    #[serde(default, rename = "type")]
    pub patch_type: PatchType,
    /// The patch document, JSON or YAML text.
    pub patch: Text,
}

impl ActionSpec for KubePatch {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        self.resource.visit(f);
        f(&self.patch, Sink::Shown);
    }
}

/// Show container logs: of a pod, of pods matching a selector, of a Job, or of the
/// newest Job of a CronJob.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeLogs {
    pub namespace: Text,
    pub pod: Option<Text>,
    pub selector: Option<Text>,
    pub job: Option<Text>,
    pub cronjob: Option<Text>,
    pub container: Option<Text>,
    /// Lines from the end (default 100).
    pub tail: Option<u32>,
}

impl ActionSpec for KubeLogs {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.namespace, Sink::Shown);
        visit_opt(&self.pod, Sink::Shown, f);
        visit_opt(&self.selector, Sink::Shown, f);
        visit_opt(&self.job, Sink::Shown, f);
        visit_opt(&self.cronjob, Sink::Shown, f);
        visit_opt(&self.container, Sink::Shown, f);
    }
}

/// Forward a local port to a pod or service for the steps after this one (closed when
/// the run ends). `result.address` is `127.0.0.1:PORT`, `result.url` `http://...`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubePortForward {
    pub namespace: Text,
    /// `svc/NAME`, `pod/NAME` or `deployment/NAME`.
    pub target: Text,
    /// The pod's port; for `svc/` the Service's port, mapped to its `targetPort` as kubectl does.
    pub port: u16,
    /// Local port (default: any free port).
    pub local_port: Option<u16>,
}

impl ActionSpec for KubePortForward {
    fn mutates(&self) -> bool {
        false
    }
    fn process_bound(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.namespace, Sink::Shown);
        f(&self.target, Sink::Shown);
    }
}

// ---------------------------------------------------------------------------------------
// Vault / OpenBao
// ---------------------------------------------------------------------------------------

/// Expected facts about Vault's state.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultExpect {
    pub initialized: Option<bool>,
    pub sealed: Option<bool>,
}

/// Seal status, initialisation, version and HA of a Vault server.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultStatus {
    /// Vault address (default: `VAULT_ADDR` / `BAO_ADDR`).
    pub addr: Option<Text>,
    #[serde(default)]
    pub expect: VaultExpect,
}

impl ActionSpec for VaultStatus {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.addr, Sink::Shown, f);
    }
}

/// Wait until Vault answers unsealed.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultWaitUnsealed {
    pub addr: Option<Text>,
    /// What is expected to unseal it (shown while waiting), e.g. the auto-unseal CronJob.
    pub unsealed_by: Option<Text>,
}

impl ActionSpec for VaultWaitUnsealed {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.addr, Sink::Shown, f);
        visit_opt(&self.unsealed_by, Sink::Shown, f);
    }
    fn waits(&self) -> bool {
        true
    }
}

/// Unseal with key shares: from secret inputs, or asked masked from each key holder in
/// turn, showing progress toward the threshold.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultUnseal {
    pub addr: Option<Text>,
    /// Key shares, normally `{{ inputs.unseal_key }}` of a secret input.
    #[serde(default)]
    pub keys: Vec<Text>,
    /// Names of the people holding shares, asked in turn when `keys` are not given.
    #[serde(default)]
    pub holders: Vec<String>,
}

impl ActionSpec for VaultUnseal {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.addr, Sink::Shown, f);
        visit_all(&self.keys, Sink::Hidden, f);
    }
    fn interactive(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Initialise Vault. The keys and root token are shown once and never stored by drctl
/// (`result.root_token`, `result.keys` are secret outputs held in memory).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultInit {
    pub addr: Option<Text>,
    /// Key shares (Shamir) or recovery shares (auto-unseal).
    pub shares: u8,
    pub threshold: u8,
    /// Initialise with recovery shares (for an auto-unseal seal such as AWS KMS).
    #[serde(default)]
    pub recovery: bool,
    /// A file to create (mode 0600, never over an existing one) holding the new shares and
    /// root token, when it renders non-empty. Required for an unattended init.
    pub save_to: Option<Text>,
}

impl ActionSpec for VaultInit {
    fn mutates(&self) -> bool {
        true
    }
    fn secret_results(&self) -> &'static [&'static str] {
        &["root_token", "keys", "keys_base64", "recovery_keys"]
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.addr, Sink::Shown, f);
        visit_opt(&self.save_to, Sink::Shown, f);
    }
    fn interactive(&self) -> bool {
        true
    }
}

/// Write a KV v2 secret.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultKvPut {
    pub addr: Option<Text>,
    pub token: Option<Text>,
    pub mount: Text,
    pub path: Text,
    pub data: IndexMap<String, Text>,
}

impl ActionSpec for VaultKvPut {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.addr, Sink::Shown, f);
        visit_opt(&self.token, Sink::Hidden, f);
        f(&self.mount, Sink::Shown);
        f(&self.path, Sink::Shown);
        visit_map(&self.data, Sink::Hidden, f);
    }
}

/// Read a KV v2 secret and check that keys exist (values are never shown).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultKvGet {
    pub addr: Option<Text>,
    pub token: Option<Text>,
    pub mount: Text,
    pub path: Text,
    #[serde(default)]
    pub keys: Vec<String>,
}

impl ActionSpec for VaultKvGet {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.addr, Sink::Shown, f);
        visit_opt(&self.token, Sink::Hidden, f);
        f(&self.mount, Sink::Shown);
        f(&self.path, Sink::Shown);
    }
}

/// Repopulate KV v2 from a repository's `*.example` files: every path and key they
/// name is asked for (masked) and written; progress survives a stop.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultKvPopulate {
    pub addr: Option<Text>,
    pub token: Option<Text>,
    pub mount: Text,
    /// Root of the repository checkout.
    pub repo: Text,
    /// Which files describe secrets (default `**/*.example`).
    pub pattern: Option<String>,
}

impl ActionSpec for VaultKvPopulate {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.addr, Sink::Shown, f);
        visit_opt(&self.token, Sink::Hidden, f);
        f(&self.mount, Sink::Shown);
        f(&self.repo, Sink::Shown);
    }
    fn interactive(&self) -> bool {
        true
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RekeyMethod {
    /// Whatever the server supports: `sys/rekey` (Vault) or `sys/rotate/root` (OpenBao).
    #[default]
    Auto,
    Rekey,
    RotateRoot,
}

/// Generate new unseal (or recovery) key shares; the new shares are shown once.
/// `result.keys` is a secret output. With `verify: true` (the default) the action also
/// completes Vault's verification, so the old shares stop working when it returns; with
/// `verify: false` the rekey is left pending verification (the old shares keep working)
/// until a later `vault.rekey-verify` step, so the new shares can be stored first.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultRekey {
    pub addr: Option<Text>,
    pub token: Option<Text>,
    pub shares: u8,
    pub threshold: u8,
    #[serde(default)]
    pub method: RekeyMethod,
    /// Rekey the recovery keys of an auto-unsealed Vault instead of the barrier keys.
    #[serde(default)]
    pub recovery: bool,
    /// Current key shares (secret inputs); asked from the holders when empty.
    #[serde(default)]
    pub keys: Vec<Text>,
    /// Complete the verification in this step (true), or leave the rekey pending
    /// verification for a later `vault.rekey-verify` step (false): until then the current
    /// shares keep working, and running this step again starts over safely.
    #[serde(default = "yes")]
    pub verify: bool,
}

impl ActionSpec for VaultRekey {
    fn mutates(&self) -> bool {
        true
    }
    fn secret_results(&self) -> &'static [&'static str] {
        &["keys", "keys_base64"]
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.addr, Sink::Shown, f);
        visit_opt(&self.token, Sink::Hidden, f);
        visit_all(&self.keys, Sink::Hidden, f);
    }
    fn interactive(&self) -> bool {
        true
    }
}

/// Complete a rekey left pending verification (`vault.rekey` with `verify: false`) by
/// entering the threshold of NEW shares; from then on only the new shares unseal Vault.
/// With nothing pending, it checks whether the given shares are already Vault's current
/// ones (a test rekey, cancelled again) and fails unless they are.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultRekeyVerify {
    pub addr: Option<Text>,
    pub token: Option<Text>,
    /// The same as the `vault.rekey` step's.
    #[serde(default)]
    pub method: RekeyMethod,
    /// Verify a rekey of the recovery keys (as the `vault.rekey` step's `recovery`).
    #[serde(default)]
    pub recovery: bool,
    /// The NEW key shares, normally `{{ outputs.new_unseal_key }}` of the rekey step;
    /// asked masked when empty.
    #[serde(default)]
    pub keys: Vec<Text>,
}

impl ActionSpec for VaultRekeyVerify {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.addr, Sink::Shown, f);
        visit_opt(&self.token, Sink::Hidden, f);
        visit_all(&self.keys, Sink::Hidden, f);
    }
    fn interactive(&self) -> bool {
        self.keys.is_empty()
    }
}

// ---------------------------------------------------------------------------------------
// AWS
// ---------------------------------------------------------------------------------------

/// List objects under a prefix (key, size, time).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3List {
    pub bucket: Text,
    pub prefix: Option<Text>,
    /// S3-compatible endpoint (MinIO); path-style addressing is used with it.
    pub endpoint: Option<Text>,
    pub region: Option<Text>,
}

impl ActionSpec for S3List {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.bucket, Sink::Shown);
        visit_opt(&self.prefix, Sink::Shown, f);
        visit_opt(&self.endpoint, Sink::Shown, f);
        visit_opt(&self.region, Sink::Shown, f);
    }
}

/// Find the newest object whose name matches a glob (`snapshot-*.db`);
/// `result.key`, `result.size`, `result.last_modified`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Newest {
    pub bucket: Text,
    pub prefix: Option<Text>,
    /// Glob on the part of the key after `prefix`.
    pub pattern: Text,
    pub endpoint: Option<Text>,
    pub region: Option<Text>,
}

impl ActionSpec for S3Newest {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.bucket, Sink::Shown);
        visit_opt(&self.prefix, Sink::Shown, f);
        f(&self.pattern, Sink::Shown);
        visit_opt(&self.endpoint, Sink::Shown, f);
        visit_opt(&self.region, Sink::Shown, f);
    }
}

/// Download an object to a local file, streamed, resumable, verified before use.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Download {
    pub bucket: Text,
    pub key: Text,
    pub to: Text,
    /// Expected SHA-256 (hex); without it the object's checksum or ETag is verified.
    pub sha256: Option<Text>,
    pub endpoint: Option<Text>,
    pub region: Option<Text>,
}

impl ActionSpec for S3Download {
    /// It changes nothing remote, but it writes a local file: a dry-run checks the object
    /// exists (HEAD) and does not download it.
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.bucket, Sink::Shown);
        f(&self.key, Sink::Shown);
        f(&self.to, Sink::Shown);
        visit_opt(&self.sha256, Sink::Shown, f);
        visit_opt(&self.endpoint, Sink::Shown, f);
        visit_opt(&self.region, Sink::Shown, f);
    }
}

/// Upload a local file.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Upload {
    pub bucket: Text,
    pub key: Text,
    pub from: Text,
    pub endpoint: Option<Text>,
    pub region: Option<Text>,
}

impl ActionSpec for S3Upload {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.bucket, Sink::Shown);
        f(&self.key, Sink::Shown);
        f(&self.from, Sink::Shown);
        visit_opt(&self.endpoint, Sink::Shown, f);
        visit_opt(&self.region, Sink::Shown, f);
    }
}

/// AWS KMS key states.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    PendingImport,
    Unavailable,
    Creating,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingImport => "PendingImport",
            KeyState::Unavailable => "Unavailable",
            KeyState::Creating => "Creating",
        }
    }
}

/// Describe a KMS key (state, deletion date, manager) and optionally assert its state.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KmsDescribe {
    pub key_id: Text,
    pub region: Option<Text>,
    pub expect_state: Option<KeyState>,
}

impl ActionSpec for KmsDescribe {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.key_id, Sink::Shown);
        visit_opt(&self.region, Sink::Shown, f);
    }
}

/// Cancel a scheduled key deletion and (by default) enable the key again, since
/// CancelKeyDeletion leaves it Disabled.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KmsCancelDeletion {
    pub key_id: Text,
    pub region: Option<Text>,
    #[serde(default = "yes")]
    pub enable: bool,
}

impl ActionSpec for KmsCancelDeletion {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.key_id, Sink::Shown);
        visit_opt(&self.region, Sink::Shown, f);
    }
}

/// Enable a Disabled key.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KmsEnable {
    pub key_id: Text,
    pub region: Option<Text>,
}

impl ActionSpec for KmsEnable {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.key_id, Sink::Shown);
        visit_opt(&self.region, Sink::Shown, f);
    }
}

/// Prove a key works: encrypt and decrypt a random value with it.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KmsVerify {
    pub key_id: Text,
    pub region: Option<Text>,
}

impl ActionSpec for KmsVerify {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.key_id, Sink::Shown);
        visit_opt(&self.region, Sink::Shown, f);
    }
}

// ---------------------------------------------------------------------------------------
// SSH and etcd
// ---------------------------------------------------------------------------------------

/// Run a command on a host through the system `ssh` (its config, agent and known_hosts).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshRun {
    /// Host or `~/.ssh/config` alias.
    pub host: Text,
    pub user: Option<Text>,
    /// Run under `sudo` (non-interactive).
    #[serde(default)]
    pub sudo: bool,
    /// The command, run by `sh -c` on the host; template values are shell-quoted.
    pub command: Text,
    /// Environment on the host (sent over stdin, so it may carry secrets).
    #[serde(default)]
    pub env: IndexMap<String, Text>,
    /// Whether the command changes anything (default true).
    #[serde(default = "yes")]
    pub mutates: bool,
}

impl ActionSpec for SshRun {
    fn mutates(&self) -> bool {
        self.mutates
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.host, Sink::Shown);
        visit_opt(&self.user, Sink::Shown, f);
        f(&self.command, Sink::Command);
        visit_map(&self.env, Sink::Hidden, f);
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CopyDirection {
    /// Local file to the host.
    Upload,
    /// Host file to a local path.
    Download,
}

/// Copy a file to or from a host.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshCopy {
    pub host: Text,
    pub user: Option<Text>,
    pub direction: CopyDirection,
    pub local: Text,
    pub remote: Text,
    /// Write (or read) the remote side as root.
    #[serde(default)]
    pub sudo: bool,
    /// Octal mode of the written file, e.g. `0600`. Unset: an upload keeps the local
    /// file's mode, a download is written 0600.
    pub mode: Option<String>,
}

impl ActionSpec for SshCopy {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        f(&self.host, Sink::Shown);
        visit_opt(&self.user, Sink::Shown, f);
        f(&self.local, Sink::Shown);
        f(&self.remote, Sink::Shown);
    }
}

/// Check an etcd snapshot file (hash, revision, keys, size), locally or on a host.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdSnapshotStatus {
    /// Host to run on (default: this machine).
    pub host: Option<Text>,
    pub snapshot: Text,
    #[serde(default)]
    pub sudo: bool,
}

impl ActionSpec for EtcdSnapshotStatus {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.host, Sink::Shown, f);
        f(&self.snapshot, Sink::Shown);
    }
}

/// Restore a snapshot into a fresh data dir and swap it in place of the old one
/// (`etcdctl snapshot restore`, then `rm -rf DATA_DIR && mv RESTORE_DIR DATA_DIR`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdSnapshotRestore {
    pub host: Option<Text>,
    pub snapshot: Text,
    /// The live data dir (default `/var/lib/etcd`).
    pub data_dir: Option<Text>,
    /// Where to restore first (default `DATA_DIR-restore`).
    pub restore_dir: Option<Text>,
    #[serde(default)]
    pub sudo: bool,
}

impl ActionSpec for EtcdSnapshotRestore {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.host, Sink::Shown, f);
        f(&self.snapshot, Sink::Shown);
        visit_opt(&self.data_dir, Sink::Shown, f);
        visit_opt(&self.restore_dir, Sink::Shown, f);
    }
}

// ---------------------------------------------------------------------------------------
// Velero, Argo CD, External Secrets, Longhorn
// ---------------------------------------------------------------------------------------

/// List Velero backups (of one storage location) with phase and age; `result.newest` is
/// the newest Completed one, `result.backups` all of them.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VeleroBackups {
    /// Velero's namespace (default `velero`).
    pub namespace: Option<Text>,
    pub storage_location: Option<Text>,
    /// Fail when no Completed backup exists (default true).
    #[serde(default = "yes")]
    pub require_completed: bool,
}

impl ActionSpec for VeleroBackups {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.namespace, Sink::Shown, f);
        visit_opt(&self.storage_location, Sink::Shown, f);
    }
}

/// Create a Velero Restore from a backup and wait until it ends; PartiallyFailed is put
/// to the operator as a decision.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VeleroRestore {
    pub namespace: Option<Text>,
    pub backup: Text,
    /// Restore name (default `BACKUP-YYYYMMDD-HHMMSS-XXXX` from the run id).
    pub name: Option<Text>,
    #[serde(default)]
    pub include_namespaces: Vec<Text>,
    /// Wait for Completed (default true; needs the step's `timeout`).
    #[serde(default = "yes")]
    pub wait: bool,
}

impl ActionSpec for VeleroRestore {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.namespace, Sink::Shown, f);
        f(&self.backup, Sink::Shown);
        visit_opt(&self.name, Sink::Shown, f);
        visit_all(&self.include_namespaces, Sink::Shown, f);
    }
    fn waits(&self) -> bool {
        self.wait
    }
}

/// List Argo CD Applications with sync and health status.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArgocdApps {
    /// Argo CD's namespace (default `argocd`).
    pub namespace: Option<Text>,
    /// Only these applications (default: all).
    #[serde(default)]
    pub names: Vec<Text>,
}

impl ActionSpec for ArgocdApps {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.namespace, Sink::Shown, f);
        visit_all(&self.names, Sink::Shown, f);
    }
}

/// Wait until Applications are Synced and Healthy, showing how many are and which lag.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArgocdWait {
    pub namespace: Option<Text>,
    #[serde(default)]
    pub names: Vec<Text>,
}

impl ActionSpec for ArgocdWait {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.namespace, Sink::Shown, f);
        visit_all(&self.names, Sink::Shown, f);
    }
    fn waits(&self) -> bool {
        true
    }
}

/// Ask Argo CD to refresh an Application (hard: drop its cached manifests).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArgocdRefresh {
    pub namespace: Option<Text>,
    pub name: Text,
    #[serde(default = "yes")]
    pub hard: bool,
}

impl ActionSpec for ArgocdRefresh {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.namespace, Sink::Shown, f);
        f(&self.name, Sink::Shown);
    }
}

/// Wait until ClusterSecretStores and ExternalSecrets report Ready.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EsoWait {
    #[serde(default)]
    pub cluster_secret_stores: Vec<Text>,
    /// ExternalSecrets of one namespace (default: every namespace).
    pub namespace: Option<Text>,
    /// Also wait for every ExternalSecret (default true).
    #[serde(default = "yes")]
    pub external_secrets: bool,
}

impl ActionSpec for EsoWait {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_all(&self.cluster_secret_stores, Sink::Shown, f);
        visit_opt(&self.namespace, Sink::Shown, f);
    }
    fn waits(&self) -> bool {
        true
    }
}

/// List Longhorn backups (per volume) with time and state.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LonghornBackups {
    /// Longhorn's namespace (default `longhorn-system`).
    pub namespace: Option<Text>,
    pub volume: Option<Text>,
}

impl ActionSpec for LonghornBackups {
    fn mutates(&self) -> bool {
        false
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.namespace, Sink::Shown, f);
        visit_opt(&self.volume, Sink::Shown, f);
    }
}

/// Restore Longhorn volumes from their newest backup (or a named one) and wait.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LonghornRestore {
    pub namespace: Option<Text>,
    /// Volumes to restore (default: every volume that has a backup).
    #[serde(default)]
    pub volumes: Vec<Text>,
    /// A backup name (only with a single volume); default the newest completed one.
    pub backup: Option<Text>,
}

impl ActionSpec for LonghornRestore {
    fn mutates(&self) -> bool {
        true
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        visit_opt(&self.namespace, Sink::Shown, f);
        visit_all(&self.volumes, Sink::Shown, f);
        visit_opt(&self.backup, Sink::Shown, f);
    }
    fn waits(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------------
// The enum
// ---------------------------------------------------------------------------------------

macro_rules! actions {
    ($( $tag:literal => $variant:ident($ty:ty) ),* $(,)?) => {
        /// One step action. Closed: every consumer matches it exhaustively.
        #[derive(Clone, Debug)]
        pub enum Action {
            $( $variant($ty), )*
        }

        /// `{key: fields}`, as written in a runbook (the canonical form of fingerprints).
        impl serde::Serialize for Action {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                match self {
                    $( Action::$variant(a) => m.serialize_entry($tag, a)?, )*
                }
                m.end()
            }
        }

        /// Every action key of the format, in documentation order.
        pub const ACTION_NAMES: &[&str] = &[$($tag),*];

        impl Action {
            /// The action's key in YAML (`kube.wait`).
            pub fn name(&self) -> &'static str {
                match self {
                    $( Action::$variant(_) => $tag, )*
                }
            }

            fn spec(&self) -> &dyn ActionSpec {
                match self {
                    $( Action::$variant(a) => a, )*
                }
            }

            /// Deserialize the value of the action key `tag`; `None` when `tag` is not
            /// an action.
            pub(crate) fn deserialize_value<'de, A>(
                tag: &str,
                map: &mut A,
            ) -> Result<Option<Action>, A::Error>
            where
                A: serde::de::MapAccess<'de>,
            {
                Ok(Some(match tag {
                    $( $tag => Action::$variant(map.next_value::<$ty>()?), )*
                    _ => return Ok(None),
                }))
            }

            /// `(key, schema)` of every action, for the JSON Schema.
            pub(crate) fn schemas(
                generator: &mut schemars::SchemaGenerator,
            ) -> Vec<(&'static str, schemars::Schema)> {
                vec![$( ($tag, generator.subschema_for::<$ty>()), )*]
            }
        }
    };
}

actions! {
    "manual" => Manual(Manual),
    "shell" => Shell(Shell),
    "input" => Input(Input),
    "choose" => Choose(Choose),
    "sleep" => Sleep(Sleep),
    "http" => Http(Http),
    "kube.use" => KubeUse(KubeUse),
    "kube.apply" => KubeApply(KubeApply),
    "kube.namespace" => KubeNamespace(KubeNamespace),
    "kube.secret" => KubeSecret(KubeSecret),
    "kube.delete" => KubeDelete(KubeDelete),
    "kube.get" => KubeGet(KubeGet),
    "kube.wait" => KubeWait(KubeWait),
    "kube.rollout-restart" => KubeRolloutRestart(KubeRolloutRestart),
    "kube.rollout-status" => KubeRolloutStatus(KubeRolloutStatus),
    "kube.patch" => KubePatch(KubePatch),
    "kube.logs" => KubeLogs(KubeLogs),
    "kube.port-forward" => KubePortForward(KubePortForward),
    "vault.status" => VaultStatus(VaultStatus),
    "vault.wait-unsealed" => VaultWaitUnsealed(VaultWaitUnsealed),
    "vault.unseal" => VaultUnseal(VaultUnseal),
    "vault.init" => VaultInit(VaultInit),
    "vault.kv-put" => VaultKvPut(VaultKvPut),
    "vault.kv-get" => VaultKvGet(VaultKvGet),
    "vault.kv-populate" => VaultKvPopulate(VaultKvPopulate),
    "vault.rekey" => VaultRekey(VaultRekey),
    "vault.rekey-verify" => VaultRekeyVerify(VaultRekeyVerify),
    "s3.list" => S3List(S3List),
    "s3.newest" => S3Newest(S3Newest),
    "s3.download" => S3Download(S3Download),
    "s3.upload" => S3Upload(S3Upload),
    "kms.describe" => KmsDescribe(KmsDescribe),
    "kms.cancel-deletion" => KmsCancelDeletion(KmsCancelDeletion),
    "kms.enable" => KmsEnable(KmsEnable),
    "kms.verify" => KmsVerify(KmsVerify),
    "ssh.run" => SshRun(SshRun),
    "ssh.copy" => SshCopy(SshCopy),
    "etcd.snapshot-status" => EtcdSnapshotStatus(EtcdSnapshotStatus),
    "etcd.snapshot-restore" => EtcdSnapshotRestore(EtcdSnapshotRestore),
    "velero.backups" => VeleroBackups(VeleroBackups),
    "velero.restore" => VeleroRestore(VeleroRestore),
    "argocd.apps" => ArgocdApps(ArgocdApps),
    "argocd.wait" => ArgocdWait(ArgocdWait),
    "argocd.refresh" => ArgocdRefresh(ArgocdRefresh),
    "eso.wait" => EsoWait(EsoWait),
    "longhorn.backups" => LonghornBackups(LonghornBackups),
    "longhorn.restore" => LonghornRestore(LonghornRestore),
}

impl ActionSpec for Action {
    fn mutates(&self) -> bool {
        self.spec().mutates()
    }
    fn visit_texts<'a>(&'a self, f: &mut dyn FnMut(&'a Text, Sink)) {
        self.spec().visit_texts(f)
    }
    fn waits(&self) -> bool {
        self.spec().waits()
    }
    fn interactive(&self) -> bool {
        self.spec().interactive()
    }
    fn secret_results(&self) -> &'static [&'static str] {
        self.spec().secret_results()
    }
    fn process_bound(&self) -> bool {
        self.spec().process_bound()
    }
}

#[cfg(test)]
mod coverage_tests {
    use super::*;

    /// Every action is documented in the format reference and has a JSON Schema entry.
    /// (Routing is checked by the compiler: `exec::engine::perform` and the printed
    /// commands match every variant with no catch-all; `plan::equivalent`'s tests run
    /// every action's commands through bash.)
    #[test]
    fn every_action_is_documented_and_in_the_schema() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbook-format.md"),
        )
        .expect("docs/runbook-format.md");
        let mut generator = schemars::SchemaGenerator::default();
        let schemas: Vec<&str> = Action::schemas(&mut generator)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for name in ACTION_NAMES {
            assert!(
                doc.contains(&format!("#### `{name}`")),
                "docs/runbook-format.md has no `#### `{name}`` section"
            );
            assert!(schemas.contains(name), "no JSON Schema entry for {name}");
        }
        assert_eq!(schemas.len(), ACTION_NAMES.len());
    }
}
