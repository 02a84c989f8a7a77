//! Where in a shell command line each `{{ ... }}` lands. drctl quotes a value as a
//! shell word (`'...'`); that is only correct where the shell reads a word. Inside
//! quotes, after a backslash, in a comment or in a here-document body the same quotes
//! are literal characters (or end a quoted string), and the value's `$(...)` runs.
//! Command templates with a value in such a place are refused, at validation and again
//! before the command is rendered for execution.

/// The shell context of one template expression in a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A word (or part of one) outside any quotes: drctl's quoting is correct here.
    Word,
    SingleQuotes,
    DoubleQuotes,
    Backticks,
    /// Right after a `\`, which would escape the quote drctl opens.
    AfterBackslash,
    /// After a `#` that starts a comment.
    Comment,
    /// In the body of a here-document (`<<EOF ... EOF`).
    HeredocBody,
}

impl Place {
    /// What to say about a value placed here, and what to do instead.
    pub fn explain(self) -> Option<(&'static str, &'static str)> {
        let use_word = "put the value where the shell reads a word (`echo {{ inputs.x }}`): drctl quotes it itself";
        match self {
            Place::Word => None,
            Place::SingleQuotes => Some((
                "a template value inside single quotes ends them: the value's own quoting then leaves it bare and the shell runs its `$(...)`",
                use_word,
            )),
            Place::DoubleQuotes => Some((
                "a template value inside double quotes is not protected by drctl's quoting: the shell still expands `$(...)` there",
                use_word,
            )),
            Place::Backticks => Some((
                "a template value inside backticks is not protected by drctl's quoting: the shell still expands `$(...)` there",
                "use `$(...)` and put the value where it reads a word, or compute it in an earlier step",
            )),
            Place::AfterBackslash => Some((
                "a template value right after a backslash: the backslash escapes the quote drctl opens, leaving the value bare",
                "remove the backslash before `{{`",
            )),
            Place::Comment => Some((
                "a template value inside a shell comment: a line break in the value would end the comment and run the rest",
                "take the value out of the comment (a comment needs no value), or say it in the step's description",
            )),
            Place::HeredocBody => Some((
                "a template value inside a here-document body: quoting cannot be correct there (with an unquoted delimiter the shell expands `$(...)`, with a quoted one the quotes are written literally)",
                "pass the value in the step's `env` (`\"$NAME\"` in the body, with a quoted delimiter) or its `stdin`",
            )),
        }
    }
}

/// Every `{{` of the template with its byte offset and shell context.
pub fn placements(script: &str) -> Vec<(usize, Place)> {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        Plain,
        Single,
        Double,
        Backtick,
        Comment,
    }
    let b = script.as_bytes();
    let mut out = Vec::new();
    let mut st = St::Plain;
    // Whether the next character starts a word (where `#` opens a comment).
    let mut word_start = true;
    // Here-documents announced on the current line: (delimiter, strip leading tabs).
    let mut pending: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'{' && matches!(b.get(i + 1), Some(b'%' | b'#')) {
            // A MiniJinja tag or comment: produces no shell text of its own.
            let close = if b[i + 1] == b'%' { "%}" } else { "#}" };
            i = skip_past(script, i + 2, close);
            continue;
        }
        if c == b'{' && b.get(i + 1) == Some(&b'{') {
            let after_backslash = i > 0 && b[i - 1] == b'\\' && !escaped(b, i - 1);
            let place = match st {
                St::Plain if after_backslash => Place::AfterBackslash,
                St::Plain => Place::Word,
                St::Single => Place::SingleQuotes,
                St::Double => Place::DoubleQuotes,
                St::Backtick => Place::Backticks,
                St::Comment => Place::Comment,
            };
            out.push((i, place));
            i = skip_past(script, i + 2, "}}");
            word_start = false;
            continue;
        }
        match st {
            St::Comment => {
                if c == b'\n' {
                    st = St::Plain;
                    word_start = true;
                    i = heredoc_bodies(script, i + 1, &mut pending, &mut out);
                    continue;
                }
            }
            St::Single => {
                if c == b'\'' {
                    st = St::Plain;
                }
            }
            St::Double | St::Backtick => {
                let close = if st == St::Double { b'"' } else { b'`' };
                if c == b'\\' {
                    i += 2;
                    continue;
                }
                if c == close {
                    st = St::Plain;
                }
            }
            St::Plain => {
                let starts = word_start;
                word_start = false;
                match c {
                    // `\{{`: let the `{{` be seen, with the backslash before it.
                    b'\\' if script[i + 1..].starts_with("{{") => {}
                    b'\\' => {
                        i += 2;
                        continue;
                    }
                    b'\'' => st = St::Single,
                    b'"' => st = St::Double,
                    b'`' => st = St::Backtick,
                    b'#' if starts => st = St::Comment,
                    b'\n' => {
                        word_start = true;
                        i = heredoc_bodies(script, i + 1, &mut pending, &mut out);
                        continue;
                    }
                    b'<' if b.get(i + 1) == Some(&b'<') && b.get(i + 2) != Some(&b'<') => {
                        let (next, doc) = heredoc_operator(script, i + 2);
                        if let Some(doc) = doc {
                            pending.push(doc);
                        }
                        i = next;
                        word_start = true;
                        continue;
                    }
                    b'<' if b.get(i + 1) == Some(&b'<') => {
                        // A here-string (`<<<`): its operand is a word.
                        i += 3;
                        word_start = true;
                        continue;
                    }
                    b' ' | b'\t' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>' => {
                        word_start = true
                    }
                    _ => {}
                }
            }
        }
        i += 1;
    }
    out
}

/// The offset just past `close` at or after `from` (the end of the text if absent).
fn skip_past(s: &str, from: usize, close: &str) -> usize {
    match s.get(from..).and_then(|rest| rest.find(close)) {
        Some(n) => from + n + close.len(),
        None => s.len(),
    }
}

/// Whether the byte at `i` is itself escaped by an odd run of backslashes before it.
fn escaped(b: &[u8], i: usize) -> bool {
    let run = b[..i].iter().rev().take_while(|&&c| c == b'\\').count();
    run % 2 == 1
}

/// After `<<`: the delimiter word. Returns where scanning goes on, and the delimiter
/// (unquoted) with whether tabs are stripped (`<<-`).
fn heredoc_operator(s: &str, from: usize) -> (usize, Option<(String, bool)>) {
    let b = s.as_bytes();
    let mut i = from;
    let strip = b.get(i) == Some(&b'-');
    if strip {
        i += 1;
    }
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    let mut delim = String::new();
    let mut quote: Option<u8> = None;
    while let Some(&c) = b.get(i) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => delim.push(char::from(c)),
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'\\' => {}
                b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>' => break,
                _ => delim.push(char::from(c)),
            },
        }
        i += 1;
    }
    if delim.is_empty() {
        (i, None)
    } else {
        (i, Some((delim, strip)))
    }
}

/// Skip the bodies of the here-documents announced on the line that just ended,
/// recording every `{{` inside them. Returns the offset after the last delimiter line.
fn heredoc_bodies(
    s: &str,
    mut at: usize,
    pending: &mut Vec<(String, bool)>,
    out: &mut Vec<(usize, Place)>,
) -> usize {
    for (delim, strip) in pending.drain(..) {
        loop {
            if at >= s.len() {
                return s.len();
            }
            let end = s[at..].find('\n').map_or(s.len(), |n| at + n);
            let line = &s[at..end];
            let bare = if strip {
                line.trim_start_matches('\t')
            } else {
                line
            };
            let mut from = 0;
            while let Some(n) = line[from..].find("{{") {
                out.push((at + from + n, Place::HeredocBody));
                from += n + 2;
            }
            at = (end + 1).min(s.len());
            if bare == delim {
                break;
            }
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(s: &str) -> Vec<Place> {
        placements(s).into_iter().map(|(_, p)| p).collect()
    }

    #[test]
    fn words_are_fine() {
        assert_eq!(places("echo {{ inputs.x }}"), [Place::Word]);
        assert_eq!(places("a={{ inputs.x }} b"), [Place::Word]);
        assert_eq!(places("echo \\\"{{ inputs.v }}"), [Place::Word]);
        assert_eq!(places("echo '\"' {{ inputs.v }}"), [Place::Word]);
        assert_eq!(
            places(r#"echo "a" {{ inputs.v | default("x") }}"#),
            [Place::Word]
        );
        assert_eq!(
            places("x=${A:-{{ inputs.v }}} cat <<< {{ inputs.v }}"),
            [Place::Word, Place::Word]
        );
        // `#` inside a word, or `$#`, opens no comment.
        assert_eq!(places("echo a#b $# {{ inputs.v }}"), [Place::Word]);
        // After a here-document ends, words again.
        assert_eq!(
            places("cat <<'EOF'\nbody\nEOF\necho {{ inputs.v }}"),
            [Place::Word]
        );
        // MiniJinja tags and comments produce no shell text.
        assert_eq!(
            places("{% if inputs.a %}echo {{ inputs.a }}{% endif %} {# '\" #} {{ inputs.b }}"),
            [Place::Word, Place::Word]
        );
    }

    #[test]
    fn unsafe_places_are_found() {
        assert_eq!(places("echo '{{ inputs.x }}'"), [Place::SingleQuotes]);
        assert_eq!(places("echo \"{{ inputs.x }}\""), [Place::DoubleQuotes]);
        assert_eq!(places("echo `{{ inputs.x }}`"), [Place::Backticks]);
        assert_eq!(places("echo \\{{ inputs.x }}"), [Place::AfterBackslash]);
        assert_eq!(places("echo \\\\{{ inputs.x }}"), [Place::Word]);
        assert_eq!(places("true # {{ inputs.x }}\necho ok"), [Place::Comment]);
        assert_eq!(places("# note {{ inputs.x }}"), [Place::Comment]);
        assert_eq!(
            places("cat <<EOF\n{{ inputs.x }}\nEOF"),
            [Place::HeredocBody]
        );
        assert_eq!(
            places("cat <<'EOF' >f\n{{ inputs.x }}\nEOF"),
            [Place::HeredocBody]
        );
        assert_eq!(
            places("cat <<-E\n\t{{ inputs.x }}\n\tE\n{{ inputs.y }}"),
            [Place::HeredocBody, Place::Word]
        );
        // Two here-documents on one line.
        assert_eq!(
            places("paste <<A <<B\n{{ inputs.a }}\nA\n{{ inputs.b }}\nB\necho {{ inputs.c }}"),
            [Place::HeredocBody, Place::HeredocBody, Place::Word]
        );
        // A `# ` comment after a command, then a word on the next line.
        assert_eq!(
            places("ls # {{ inputs.a }}\nls {{ inputs.b }}"),
            [Place::Comment, Place::Word]
        );
    }
}
