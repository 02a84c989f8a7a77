//! Words of a printed command: template values filled in and shell-quoted, with the
//! `<name>` placeholders of secrets and unknown values left bare for the operator.

use crate::runbook::template::shell_quote;
use crate::runbook::{Sink, Text};

use super::Resolver;

// ---------------------------------------------------------------------------------------
// Shell words with placeholders
// ---------------------------------------------------------------------------------------

/// Part of a shell word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Piece {
    /// Literal text, quoted when the word is written.
    Lit(String),
    /// A `<name>` placeholder, written bare so it reads as something to replace.
    Hole(String),
    /// Text that is already valid shell syntax.
    Raw(String),
}

/// A shell word built from literal text and resolver placeholders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Word(Vec<Piece>);

impl Word {
    pub(super) fn lit(s: &str) -> Word {
        Word(vec![Piece::Lit(s.to_owned())])
    }

    pub(super) fn hole(s: &str) -> Word {
        Word(vec![Piece::Hole(s.to_owned())])
    }

    pub(super) fn raw(s: &str) -> Word {
        Word(vec![Piece::Raw(s.to_owned())])
    }

    /// A fixed prefix (`--from-literal=KEY=`) quoted on its own, so that only the
    /// value after it shows quotes.
    pub(super) fn flag(s: &str) -> Word {
        Word::raw(&shell_quote(s))
    }

    pub(super) fn then(mut self, other: Word) -> Word {
        self.0.extend(other.0);
        self
    }

    /// The word as the shell reads it: literal runs quoted, placeholders bare.
    pub(super) fn quoted(&self) -> String {
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
    pub(super) fn quoted_raw(&self) -> String {
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
    pub(super) fn plain(&self) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Lit(s) | Piece::Hole(s) | Piece::Raw(s) => s.as_str(),
            })
            .collect()
    }

    /// Transform the literal text, leaving placeholders alone.
    pub(super) fn map_lits(self, f: impl Fn(&str) -> String) -> Word {
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
    pub(super) fn is_holes_only(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|p| matches!(p, Piece::Hole(_)))
    }
}

// Literal template text is wrapped in these private-use characters before rendering, so
// after rendering it can be told apart from values (quoted by the command template) and
// from placeholders (left bare by it).
pub(super) const OPEN: char = '\u{E000}';

pub(super) const CLOSE: char = '\u{E001}';

/// The rendered value of a template field (a name, path, secret value...) as a word.
pub(super) fn word(r: &Resolver, t: &Text) -> Word {
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
pub(super) fn q(r: &Resolver, t: &Text) -> String {
    word(r, t).quoted()
}

/// A local path as a word: a leading `~/` stays bare so the shell expands it, as drctl
/// does (`backends::process::local_path`).
pub(super) fn local_path_word(r: &Resolver, t: &Text) -> Word {
    let Word(mut pieces) = word(r, t);
    if let Some(Piece::Lit(first)) = pieces.first_mut()
        && let Some(rest) = first.strip_prefix("~/")
    {
        let rest = rest.to_owned();
        pieces.splice(0..1, [Piece::Raw("~/".into()), Piece::Lit(rest)]);
        pieces.retain(|p| !matches!(p, Piece::Lit(s) if s.is_empty()));
    }
    Word(pieces)
}

/// Rendered values as the command template writes them: shell-quoted words, and bare
/// `<name>` placeholders. Anything else (a value marked `| raw`) stays literal.
pub(super) fn unquote(s: &str) -> Word {
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
pub(super) fn mark_literals(src: &str) -> Option<String> {
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
pub(super) fn tag_len(s: &str) -> Option<usize> {
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
pub(super) fn heredoc(body: &str) -> String {
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
pub(super) fn note(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `KEY=value` words of an environment map (secret inputs come out as placeholders).
pub(super) fn env_assignments(r: &Resolver, env: &indexmap::IndexMap<String, Text>) -> Vec<String> {
    env.iter()
        .map(|(k, v)| Word::raw(&format!("{k}=")).then(word(r, v)).quoted())
        .collect()
}

pub(super) fn prefix(env: &[String]) -> String {
    env.iter().map(|e| format!("{e} ")).collect()
}
