//! The runbook document: metadata, inputs, prerequisites, sections, steps, cleanup.
//!
//! A step names its action by a key of its own (`ssh.run: {...}` beside `id` and
//! `title`), so `Step` has a hand-written deserializer: exactly one action key, every
//! other key a known field, and errors that name the offending key.

use std::fmt;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::action::{ACTION_NAMES, Action, Choice, InputKind};
use super::text::{Dur, Ident, Pos, Text};

/// A whole runbook file.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    /// Always `drctl/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: Text,
    /// Always `Runbook`.
    pub kind: Text,
    /// The name used on the command line (`drctl run NAME`).
    pub name: Ident,
    pub title: String,
    /// One paragraph: what the runbook does.
    pub summary: String,
    /// Markdown: the situation in which to reach for this runbook (and when not to).
    pub when_to_use: Option<String>,
    #[serde(default)]
    pub severity: Severity,
    /// How long the procedure usually takes.
    pub estimated_duration: Option<Dur>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Callouts shown before the first step.
    #[serde(default)]
    pub callouts: Vec<Callout>,
    /// What the operator must hold before step 1.
    #[serde(default)]
    pub prerequisites: Vec<Prerequisite>,
    /// Typed inputs, in the order they are asked for.
    #[serde(default)]
    pub inputs: IndexMap<String, InputSpec>,
    /// Steps grouped in sections (use either `sections` or `steps`).
    #[serde(default)]
    pub sections: Vec<Section>,
    /// Steps without sections.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Steps run when a run fails or is aborted (best effort, in order).
    #[serde(default)]
    pub cleanup: Vec<Step>,
    /// Callouts printed after the last step (e.g. what is not backed up).
    #[serde(default)]
    pub appendix: Vec<Callout>,
}

impl Runbook {
    /// All sections; top-level `steps` form one untitled section.
    pub fn all_sections(&self) -> Vec<SectionRef<'_>> {
        let mut out = Vec::new();
        if !self.steps.is_empty() {
            out.push(SectionRef {
                title: None,
                description: None,
                callouts: &[],
                steps: &self.steps,
            });
        }
        for s in &self.sections {
            out.push(SectionRef {
                title: Some(&s.title),
                description: s.description.as_deref(),
                callouts: &s.callouts,
                steps: &s.steps,
            });
        }
        out
    }

    /// Every main step in order (sections flattened), without cleanup steps.
    pub fn main_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps
            .iter()
            .chain(self.sections.iter().flat_map(|s| s.steps.iter()))
    }
}

/// A borrowed view of a section (or of the top-level steps).
pub struct SectionRef<'a> {
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub callouts: &'a [Callout],
    pub steps: &'a [Step],
}

#[derive(
    Clone, Copy, Debug, Default, serde::Deserialize, serde::Serialize, JsonSchema, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    #[default]
    Medium,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

#[derive(Clone, Copy, Debug, serde::Deserialize, serde::Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CalloutKind {
    Critical,
    Warning,
    Tip,
    Note,
}

impl CalloutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CalloutKind::Critical => "critical",
            CalloutKind::Warning => "warning",
            CalloutKind::Tip => "tip",
            CalloutKind::Note => "note",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            CalloutKind::Critical => "CRITICAL",
            CalloutKind::Warning => "WARNING",
            CalloutKind::Tip => "TIP",
            CalloutKind::Note => "NOTE",
        }
    }
}

/// A boxed remark kept where it matters.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Callout {
    pub kind: CalloutKind,
    pub title: Option<String>,
    /// Markdown.
    pub text: Text,
}

/// Something the operator must hold before step 1: confirmed by hand, or checked by a
/// read-only action.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prerequisite {
    pub id: Ident,
    pub title: String,
    /// Markdown: where to find it, what it looks like.
    pub description: Option<Text>,
    /// A read-only check; without one the operator confirms by hand.
    pub check: Option<ActionBlock>,
}

/// A typed input of the runbook.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(default, rename = "type")]
    pub kind: InputKind,
    pub description: Option<String>,
    /// Default value; an input with a default is optional.
    pub default: Option<Text>,
    /// A regular expression the whole value must match.
    pub pattern: Option<Text>,
    /// An environment variable the value may come from (besides `DRCTL_INPUT_<NAME>`).
    pub env: Option<String>,
    /// Options of a `choice` input.
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// An example value, shown in prompts and printed checklists.
    pub example: Option<String>,
    /// A secret asked at a prompt before step one, not when the first step that needs
    /// it is reached (the default).
    #[serde(default)]
    pub upfront: bool,
}

impl InputSpec {
    pub fn is_secret(&self) -> bool {
        self.kind == InputKind::Secret
    }
    pub fn required(&self) -> bool {
        self.default.is_none()
    }
}

/// A titled group of steps.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Section {
    pub title: String,
    pub description: Option<String>,
    #[serde(default)]
    pub callouts: Vec<Callout>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// When drctl asks before running a step.
#[derive(
    Clone, Copy, Debug, Default, serde::Deserialize, serde::Serialize, JsonSchema, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum Confirm {
    /// Ask before mutating steps, not before read-only ones.
    #[default]
    Auto,
    /// Always ask, even before a read-only step. With `--yes` the run stops at the step
    /// unless the operator names it with `--confirm STEP`.
    Always,
    /// Never ask (for mutations that are safe to repeat).
    Never,
}

/// Retry a failed attempt with exponential backoff.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time.
    pub backoff: Option<Dur>,
    /// Upper bound of one wait.
    pub max_backoff: Option<Dur>,
}

/// A named value captured from a step's result for later steps (`{{ outputs.NAME }}`).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub name: Ident,
    /// A MiniJinja expression over `result` (and `inputs`, `outputs`), e.g. `result.key`.
    pub from: Text,
    /// Held in memory only: never journalled, printed or logged.
    #[serde(default)]
    pub secret: bool,
    pub description: Option<String>,
}

/// One action on its own (a check or a prerequisite's test).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ActionBlock {
    #[serde(flatten)]
    pub action: Action,
    #[serde(skip)]
    pub pos: Pos,
}

/// One step of a runbook.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Step {
    pub id: Ident,
    pub title: String,
    /// Markdown: why the step exists and what it touches.
    pub description: Option<Text>,
    pub action: Action,
    /// Where the action key sits in the file.
    #[serde(skip)]
    pub action_pos: Pos,
    /// A MiniJinja expression; the step is skipped when it is false.
    pub when: Option<Text>,
    pub confirm: Confirm,
    pub timeout: Option<Dur>,
    /// Emit a "late" warning when the step runs longer than this (it keeps going).
    pub warn_after: Option<Dur>,
    pub retries: Option<Retry>,
    /// Read-only postcondition: "already done?" before running and on resume, "did it
    /// work?" after.
    pub check: Option<ActionBlock>,
    pub outputs: Vec<Output>,
    /// Safe to run twice; a step interrupted mid-way is re-run on resume without asking.
    pub idempotent: bool,
    /// What the operator should see when it worked.
    pub expect: Option<Text>,
    /// Markdown: what to do by hand when the action cannot run.
    pub fallback: Option<Text>,
    pub callouts: Vec<Callout>,
}

const STEP_FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "when",
    "confirm",
    "timeout",
    "warn_after",
    "retries",
    "check",
    "outputs",
    "idempotent",
    "expect",
    "fallback",
    "callouts",
];

/// Marks the position of a key inside an error message: serde's `Error::custom` cannot
/// carry a location, and the deserializer would otherwise report the map's start.
/// `load` strips the marker and uses the position.
pub(crate) const POS_MARKER: &str = " [[at ";

pub(crate) fn error_at<E: de::Error>(pos: Pos, msg: impl fmt::Display) -> E {
    E::custom(format!(
        "{msg}{POS_MARKER}{}:{}:{}:{}]]",
        pos.line, pos.col, pos.offset, pos.len
    ))
}

/// A map key with its position.
fn spanned_key(k: serde_saphyr::Spanned<String>) -> (String, Pos) {
    let pos = Pos::from_location(&k.referenced);
    (k.value, pos)
}

/// The error for a key that is neither a field nor an action, with a did-you-mean hint.
fn unknown_key<E: de::Error>(key: &str, pos: Pos, fields: &[&str]) -> E {
    let candidates = fields.iter().chain(ACTION_NAMES.iter());
    match super::suggest(key, candidates.copied()) {
        Some(s) => error_at(
            pos,
            format!("unknown field or action `{key}` (did you mean `{s}`?)"),
        ),
        None => error_at(
            pos,
            format!(
                "unknown field or action `{key}`; fields are {}; actions are {}",
                fields.join(", "),
                ACTION_NAMES.join(", ")
            ),
        ),
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<StepInner>::deserialize(d)?;
        let mut step = s.value.0;
        if !step.action_pos.is_known() {
            step.action_pos = Pos::from_location(&s.referenced);
        }
        Ok(step)
    }
}

struct StepInner(Step);

impl<'de> Deserialize<'de> for StepInner {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StepVisitor)
    }
}

struct StepVisitor;

impl<'de> Visitor<'de> for StepVisitor {
    type Value = StepInner;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a step: a map with `id`, `title` and exactly one action key")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StepInner, A::Error> {
        let mut id: Option<Ident> = None;
        let mut title: Option<String> = None;
        let mut description = None;
        let mut action: Option<(String, Action, Pos)> = None;
        let mut when = None;
        let mut confirm = None;
        let mut timeout = None;
        let mut warn_after = None;
        let mut retries = None;
        let mut check = None;
        let mut outputs = None;
        let mut idempotent = None;
        let mut expect = None;
        let mut fallback = None;
        let mut callouts = None;

        fn set<T, E: de::Error>(slot: &mut Option<T>, v: T, key: &str) -> Result<(), E> {
            if slot.is_some() {
                return Err(E::custom(format!("duplicate field `{key}`")));
            }
            *slot = Some(v);
            Ok(())
        }

        while let Some(k) = map.next_key::<serde_saphyr::Spanned<String>>()? {
            let (key, key_pos) = spanned_key(k);
            match key.as_str() {
                "id" => set(&mut id, map.next_value()?, &key)?,
                "title" => set(&mut title, map.next_value()?, &key)?,
                "description" => set(&mut description, map.next_value()?, &key)?,
                "when" => set(&mut when, map.next_value()?, &key)?,
                "confirm" => set(&mut confirm, map.next_value()?, &key)?,
                "timeout" => set(&mut timeout, map.next_value()?, &key)?,
                "warn_after" => set(&mut warn_after, map.next_value()?, &key)?,
                "retries" => set(&mut retries, map.next_value()?, &key)?,
                "check" => set(&mut check, map.next_value()?, &key)?,
                "outputs" => set(&mut outputs, map.next_value()?, &key)?,
                "idempotent" => set(&mut idempotent, map.next_value()?, &key)?,
                "expect" => set(&mut expect, map.next_value()?, &key)?,
                "fallback" => set(&mut fallback, map.next_value()?, &key)?,
                "callouts" => set(&mut callouts, map.next_value()?, &key)?,
                other => match Action::deserialize_value(other, &mut map)? {
                    Some(a) => {
                        if let Some((first, _, _)) = &action {
                            return Err(error_at(
                                key_pos,
                                format!(
                                    "a step has exactly one action, but this one has `{first}` and `{other}`; split it into two steps"
                                ),
                            ));
                        }
                        action = Some((other.to_owned(), a, key_pos));
                    }
                    None => return Err(unknown_key(other, key_pos, STEP_FIELDS)),
                },
            }
        }

        let id = id.ok_or_else(|| de::Error::missing_field("id"))?;
        let title = title.ok_or_else(|| de::Error::missing_field("title"))?;
        let (_, action, action_pos) = action.ok_or_else(|| {
            de::Error::custom(format!(
                "step `{id}` has no action; add one of: {}",
                ACTION_NAMES.join(", ")
            ))
        })?;
        Ok(StepInner(Step {
            id,
            title,
            description,
            action,
            action_pos,
            when,
            confirm: confirm.unwrap_or_default(),
            timeout,
            warn_after,
            retries,
            check,
            outputs: outputs.unwrap_or_default(),
            idempotent: idempotent.unwrap_or(false),
            expect,
            fallback,
            callouts: callouts.unwrap_or_default(),
        }))
    }
}

impl<'de> Deserialize<'de> for ActionBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Action;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map with exactly one action key")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Action, A::Error> {
                let mut found: Option<(String, Action)> = None;
                while let Some(k) = map.next_key::<serde_saphyr::Spanned<String>>()? {
                    let (key, key_pos) = spanned_key(k);
                    match Action::deserialize_value(&key, &mut map)? {
                        Some(a) => {
                            if let Some((first, _)) = &found {
                                return Err(error_at(
                                    key_pos,
                                    format!(
                                        "expected exactly one action, found `{first}` and `{key}`"
                                    ),
                                ));
                            }
                            found = Some((key, a));
                        }
                        None => return Err(unknown_key(&key, key_pos, &[])),
                    }
                }
                found.map(|(_, a)| a).ok_or_else(|| {
                    de::Error::custom(format!(
                        "expected one action key, one of: {}",
                        ACTION_NAMES.join(", ")
                    ))
                })
            }
        }
        struct Inner(Action);
        impl<'de> Deserialize<'de> for Inner {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_map(V).map(Inner)
            }
        }
        let s = serde_saphyr::Spanned::<Inner>::deserialize(d)?;
        Ok(ActionBlock {
            action: s.value.0,
            pos: Pos::from_location(&s.referenced),
        })
    }
}

/// `{ oneOf: [ {properties: {KEY: schema}, required: [KEY]} ...] }` over every action.
fn action_one_of(generator: &mut SchemaGenerator) -> Vec<serde_json::Value> {
    Action::schemas(generator)
        .into_iter()
        .map(|(key, schema)| {
            serde_json::json!({
                "type": "object",
                "required": [key],
                "properties": { key: schema.to_value() },
            })
        })
        .collect()
}

impl JsonSchema for ActionBlock {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ActionBlock".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let variants: Vec<serde_json::Value> = action_one_of(generator)
            .into_iter()
            .map(|mut v| {
                v["additionalProperties"] = serde_json::Value::Bool(false);
                v
            })
            .collect();
        json_schema!({
            "description": "Exactly one action (for checks, only read-only actions).",
            "oneOf": variants,
        })
    }
}

impl JsonSchema for Step {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Step".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut props = serde_json::Map::new();
        let common: [(&str, serde_json::Value); 14] = [
            ("id", generator.subschema_for::<Ident>().to_value()),
            ("title", generator.subschema_for::<String>().to_value()),
            ("description", generator.subschema_for::<Text>().to_value()),
            ("when", generator.subschema_for::<Text>().to_value()),
            ("confirm", generator.subschema_for::<Confirm>().to_value()),
            ("timeout", generator.subschema_for::<Dur>().to_value()),
            ("warn_after", generator.subschema_for::<Dur>().to_value()),
            ("retries", generator.subschema_for::<Retry>().to_value()),
            ("check", generator.subschema_for::<ActionBlock>().to_value()),
            (
                "outputs",
                generator.subschema_for::<Vec<Output>>().to_value(),
            ),
            ("idempotent", generator.subschema_for::<bool>().to_value()),
            ("expect", generator.subschema_for::<Text>().to_value()),
            ("fallback", generator.subschema_for::<Text>().to_value()),
            (
                "callouts",
                generator.subschema_for::<Vec<Callout>>().to_value(),
            ),
        ];
        for (k, v) in common {
            props.insert(k.to_owned(), v);
        }
        let mut all_keys: Vec<&str> = STEP_FIELDS.to_vec();
        all_keys.extend_from_slice(ACTION_NAMES);
        json_schema!({
            "description": "A step: id, title, exactly one action key, and optional fields.",
            "type": "object",
            "required": ["id", "title"],
            "properties": props,
            "propertyNames": { "enum": all_keys },
            "oneOf": action_one_of(generator),
        })
    }
}
