//! Shell-style globs (`*`, `?`, `[abc]`, `[!a-z]`, `\x`), the runbook language's one
//! implementation: the S3 actions match object keys with it, `vault.kv-populate` matches
//! file paths with it, and print turns the same parse into the `grep -E` an operator
//! types, so what drctl matches and what the checklist matches cannot drift apart.
//!
//! Two ways a glob treats `/`:
//! - [`Slash::Crosses`] (object keys): `*` matches any text, `/` included.
//! - [`Slash::Separates`] (file paths): `*`, `?` and classes stay within one path
//!   segment; a whole segment `**` matches any number of segments; a pattern without
//!   `/` matches the file name at any depth (as in `.gitignore`).

/// How the glob treats `/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slash {
    Crosses,
    Separates,
}

/// Which regular-expression dialect to write: they disagree on escapes inside brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    /// The `regex` crate.
    Rust,
    /// POSIX extended regular expressions (`grep -E`).
    Ere,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` as a whole path segment (only meaningful with `Slash::Separates`).
    Segments,
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

/// A parsed glob. Parsing never fails: a `[` without its `]` is a literal.
#[derive(Clone, Debug)]
pub struct Glob {
    toks: Vec<Tok>,
    has_slash: bool,
    /// Compiled on first use per `Slash` (a repository walk matches many paths).
    compiled: [std::sync::OnceLock<Option<regex::Regex>>; 2],
}

impl Glob {
    pub fn parse(pattern: &str) -> Glob {
        let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => {
                    let start = i - 1;
                    while chars.get(i) == Some(&'*') {
                        i += 1;
                    }
                    let whole_segment = (start == 0 || chars[start - 1] == '/')
                        && (i == chars.len() || chars[i] == '/')
                        && i - start == 2;
                    toks.push(if whole_segment {
                        Tok::Segments
                    } else {
                        Tok::Star
                    });
                }
                '?' => toks.push(Tok::One),
                '\\' => {
                    if let Some(&n) = chars.get(i) {
                        toks.push(Tok::Lit(n));
                        i += 1;
                    }
                }
                '[' => match chars[i..].iter().position(|&c| c == ']') {
                    Some(len) if len > 0 && !(len == 1 && chars[i] == '!') => {
                        let body = &chars[i..i + len];
                        i += len + 1;
                        let (negated, body) = match body.split_first() {
                            Some(('!', rest)) => (true, rest),
                            _ => (false, body),
                        };
                        toks.push(Tok::Class {
                            negated,
                            items: class_items(body),
                        });
                    }
                    _ => toks.push(Tok::Lit('[')),
                },
                c => toks.push(Tok::Lit(c)),
            }
        }
        Glob {
            toks,
            has_slash: pattern.contains('/'),
            compiled: Default::default(),
        }
    }

    /// An anchored regular expression for the `regex` crate.
    pub fn to_regex(&self, slash: Slash) -> Result<regex::Regex, regex::Error> {
        regex::Regex::new(&format!("^{}$", self.body(slash, Flavor::Rust)))
    }

    /// The same match as a POSIX ERE for `grep -E` (object keys: `*` crosses `/`), not
    /// anchored: the caller places it after its own prefix.
    pub fn to_ere(&self) -> String {
        self.body(Slash::Crosses, Flavor::Ere)
    }

    /// Whether an object key matches (`*` crosses `/`).
    pub fn matches_key(&self, key: &str) -> bool {
        self.cached(Slash::Crosses)
            .is_some_and(|re| re.is_match(key))
    }

    /// Whether a `/`-separated relative path matches.
    pub fn matches_path(&self, rel: &str) -> bool {
        self.cached(Slash::Separates)
            .is_some_and(|re| re.is_match(rel))
    }

    /// The regex for `slash`, compiled once; `None` if it does not compile (a glob that
    /// then matches nothing; `to_regex` gives the reason).
    fn cached(&self, slash: Slash) -> Option<&regex::Regex> {
        let i = usize::from(slash == Slash::Separates);
        self.compiled[i]
            .get_or_init(|| self.to_regex(slash).ok())
            .as_ref()
    }

    fn body(&self, slash: Slash, flavor: Flavor) -> String {
        let seg = slash == Slash::Separates;
        let mut out = String::new();
        if seg && !self.has_slash {
            // A bare file-name pattern matches at any depth.
            out.push_str("(.*/)?");
        }
        let mut toks = self.toks.iter().peekable();
        while let Some(t) = toks.next() {
            match t {
                Tok::Lit(c) => out.push_str(&escape(*c)),
                Tok::One => out.push_str(if seg { "[^/]" } else { "." }),
                Tok::Star => out.push_str(if seg { "[^/]*" } else { ".*" }),
                Tok::Segments if !seg => out.push_str(".*"),
                Tok::Segments => {
                    if toks.peek() == Some(&&Tok::Lit('/')) {
                        toks.next();
                        out.push_str("([^/]*/)*");
                    } else {
                        out.push_str(".*");
                    }
                }
                Tok::Class { negated, items } => {
                    out.push_str(&class(*negated, items, seg, flavor));
                }
            }
        }
        out
    }
}

/// `a-z0` -> [('a','z'), ('0','0')]
fn class_items(body: &[char]) -> Vec<(char, char)> {
    let mut items = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' && body[i] <= body[i + 2] {
            items.push((body[i], body[i + 2]));
            i += 3;
        } else {
            items.push((body[i], body[i]));
            i += 1;
        }
    }
    items
}

/// A literal text in an ERE (or a Rust regex): the part of a key before the glob.
pub fn ere_literal(s: &str) -> String {
    s.chars().map(escape).collect()
}

/// A literal character outside brackets: the escapes both dialects read the same way.
fn escape(c: char) -> String {
    if ".[]()*+?{}|^$\\".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

fn class(negated: bool, items: &[(char, char)], seg: bool, flavor: Flavor) -> String {
    let mut items = items.to_vec();
    if negated && seg {
        // A negated class must not match the segment separator either.
        items.push(('/', '/'));
    }
    if !negated && items == [('^', '^')] {
        // `[^]` would read as an unclosed negation.
        return escape('^');
    }
    let mut out = String::from(if negated { "[^" } else { "[" });
    match flavor {
        Flavor::Rust => {
            for (a, b) in &items {
                out.push_str(&rust_class_char(*a));
                if a != b {
                    out.push('-');
                    out.push_str(&rust_class_char(*b));
                }
            }
        }
        Flavor::Ere => {
            // POSIX brackets have no escapes: `]` goes first, `-` last, `^` not first.
            let single = |c: char| items.iter().any(|&(a, b)| a == c && b == c);
            if single(']') {
                out.push(']');
            }
            let mut caret = false;
            for (a, b) in &items {
                match (*a, *b) {
                    (']', ']') | ('-', '-') => {}
                    ('^', '^') => caret = true,
                    (a, b) if a == b => out.push(a),
                    (a, b) => {
                        out.push(a);
                        out.push('-');
                        out.push(b);
                    }
                }
            }
            if caret {
                out.push('^');
            }
            if single('-') {
                out.push('-');
            }
        }
    }
    out.push(']');
    out
}

fn rust_class_char(c: char) -> String {
    if "\\[]^-&~".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str, k: &str) -> bool {
        Glob::parse(p).matches_key(k)
    }

    fn path(p: &str, rel: &str) -> bool {
        Glob::parse(p).matches_path(rel)
    }

    #[test]
    fn object_keys_match_like_the_shell_but_across_slashes() {
        assert!(key("snapshot-*.db", "snapshot-2024.db"));
        assert!(!key("snapshot-*.db", "snapshot-2024.db.part"));
        assert!(!key("snapshot-*.db", "snapshotX2024.db.x"));
        assert!(key("a/*", "a/b/c"));
        assert!(key("x[!0-9]?", "xab"));
        assert!(!key("x[!0-9]?", "x1b"));
        assert!(key("a\\*b", "a*b"));
        assert!(!key("a\\*b", "axxb"));
        assert!(key("a[", "a["));
        assert!(key("a[]", "a[]"));
        assert!(key("[!]", "[!]"));
        assert!(key("pki-[0-9][0-9].tar.gz", "pki-42.tar.gz"));
        assert!(!key("pki-?.tar.gz", "pki-42.tar.gz"));
    }

    #[test]
    fn file_paths_match_by_segment() {
        assert!(path("*.example", "a/b/c.example"));
        assert!(path("**/*.example", "c.example"));
        assert!(path("**/*.example", "a/b/c.example"));
        assert!(path("apps/*/secret.example", "apps/x/secret.example"));
        assert!(!path("apps/*/secret.example", "apps/x/y/secret.example"));
        assert!(path("apps/**/secret.example", "apps/x/y/secret.example"));
        assert!(path("apps/**/secret.example", "apps/secret.example"));
        assert!(path("./apps/*.example", "apps/a.example"));
        assert!(!path("apps/?.example", "apps/ab.example"));
        assert!(!path("a[!x]b", "a/b"));
        assert!(path("apps/**", "apps/x/y"));
    }

    /// The printed `grep -E` agrees with what drctl matches, on the same keys, by
    /// running grep itself.
    #[test]
    fn the_printed_grep_matches_what_drctl_matches() {
        let patterns = [
            "snapshot-*.db",
            "a?*.[!x]b.db",
            "pki-[0-9][0-9].tar.gz",
            "x[]-]y",
            "x[!^a]y",
            "a\\*b",
            "a[",
            "weird(1)+{2}|$^.db",
            "c\\\\d",
            "[a-c-]z",
            "[^]z",
        ];
        let keys = [
            "snapshot-1.db",
            "snapshot-1.dbx",
            "a.xb.db",
            "aQQ.yb.db",
            "aQ.xb.db",
            "pki-42.tar.gz",
            "pki-4x.tar.gz",
            "x]y",
            "x-y",
            "xay",
            "x^y",
            "xby",
            "a*b",
            "axb",
            "a[",
            "weird(1)+{2}|$^.db",
            "c\\d",
            "bz",
            "-z",
            "dz",
            "^z",
        ];
        let input = keys.join("\n") + "\n";
        for p in patterns {
            let g = Glob::parse(p);
            let want: Vec<&str> = keys.iter().copied().filter(|k| g.matches_key(k)).collect();
            let mut child = std::process::Command::new("grep")
                .arg("-E")
                .arg(format!("^{}$", g.to_ere()))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("grep must be installed to check the printed commands");
            {
                use std::io::Write;
                let mut stdin = child.stdin.take().expect("stdin");
                stdin.write_all(input.as_bytes()).expect("write");
            }
            let out = child.wait_with_output().expect("grep");
            let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            assert_eq!(got, want, "pattern {p:?} as ERE {:?}", g.to_ere());
        }
    }
}
