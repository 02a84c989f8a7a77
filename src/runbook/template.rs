//! MiniJinja templating: strict undefined, and values placed into a shell command are
//! shell-quoted unless marked `| raw` (an opt-out that stays visible in review).

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

use super::action::Sink;

/// The variables a template may use.
pub const ROOTS: &[&str] = &["inputs", "outputs", "run", "result"];

/// Template names decide quoting: see `environment`.
pub const COMMAND_TEMPLATE: &str = "command.sh";
pub const TEXT_TEMPLATE: &str = "text";

/// Quote a string for POSIX `sh`: safe words stay bare, anything else goes in single
/// quotes with embedded single quotes closed, escaped and reopened.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'@' | b',' | b'+' | b'%'
                )
        });
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The environment every runbook template is compiled and rendered with.
///
/// In a command template every value is shell-quoted by its template's name, not by
/// the auto-escape state, so `{% autoescape false %}` cannot turn quoting off; the
/// built-in `safe` filter is refused (`raw` is the one visible opt-out); a value with a
/// line break, carriage return or NUL is refused (a line break ends a comment or a
/// here-document line, and no quoting survives it); `debug()` is gone (it prints the
/// whole context, secrets included).
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.remove_global("debug");
    env.set_auto_escape_callback(|name| {
        if name == COMMAND_TEMPLATE {
            AutoEscape::Custom("shell")
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(|out, state, value| {
        if state.name() == COMMAND_TEMPLATE && !value.is_safe() {
            let s = if value.is_undefined() || value.is_none() {
                String::new()
            } else {
                value.to_string()
            };
            if let Some(c) = s.chars().find(|c| matches!(c, '\n' | '\r' | '\0')) {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "a value with {} cannot go into a command line: no quoting keeps it one word in every place of a script; pass it in the step's `env` or `stdin`",
                        match c {
                            '\n' => "a line break",
                            '\r' => "a carriage return",
                            _ => "a NUL byte",
                        }
                    ),
                ));
            }
            out.write_str(&shell_quote(&s))?;
            Ok(())
        } else if state.name() == COMMAND_TEMPLATE {
            // `raw` values and placeholders: written as they are.
            out.write_str(&value.to_string())?;
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("raw", |v: Value| Value::from_safe_string(v.to_string()));
    env.add_filter("safe", |_: Value| -> Result<Value, minijinja::Error> {
        Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "`safe` is not available in drctl templates: `| raw` is the one way to leave a value unquoted in a command line (and it stays visible in review)",
        ))
    });
    env.add_filter("shell_quote", |v: String| {
        Value::from_safe_string(shell_quote(&v))
    });
    env
}

/// The template name to compile a text of this sink under.
pub fn template_name(sink: Sink) -> &'static str {
    match sink {
        Sink::Command => COMMAND_TEMPLATE,
        Sink::Shown | Sink::Hidden => TEXT_TEMPLATE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_shell_words() {
        assert_eq!(shell_quote("abc-1.2"), "abc-1.2");
        assert_eq!(shell_quote("x; touch PWNED"), "'x; touch PWNED'");
        assert_eq!(shell_quote("$(touch PWNED)"), "'$(touch PWNED)'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn command_templates_quote_values_unless_raw() {
        let env = environment();
        let ctx = minijinja::context! { inputs => minijinja::context! { x => "a b; rm -rf /" } };
        let t = env
            .template_from_named_str(COMMAND_TEMPLATE, "echo {{ inputs.x }}")
            .expect("compiles");
        assert_eq!(t.render(&ctx).expect("renders"), "echo 'a b; rm -rf /'");
        let t = env
            .template_from_named_str(COMMAND_TEMPLATE, "echo {{ inputs.x | raw }}")
            .expect("compiles");
        assert_eq!(t.render(&ctx).expect("renders"), "echo a b; rm -rf /");
        let t = env
            .template_from_named_str(TEXT_TEMPLATE, "echo {{ inputs.x }}")
            .expect("compiles");
        assert_eq!(t.render(&ctx).expect("renders"), "echo a b; rm -rf /");
    }

    /// Every way around the quoting a red team tried: refused or still quoted.
    #[test]
    fn quoting_cannot_be_turned_off_by_the_template() {
        let env = environment();
        let ctx = minijinja::context! { inputs => minijinja::context! {
            x => "$(touch PWNED)", nl => "a\ntouch PWNED", cr => "a\rb", nul => "a\0b",
        } };
        let render = |src: &str| {
            env.template_from_named_str(COMMAND_TEMPLATE, src)
                .and_then(|t| t.render(&ctx))
        };
        assert_eq!(
            render("{% autoescape false %}echo {{ inputs.x }}{% endautoescape %}")
                .expect("renders"),
            "echo '$(touch PWNED)'"
        );
        let e = render("echo {{ inputs.x | safe }}").expect_err("safe refused");
        assert!(e.to_string().contains("`| raw` is the one way"), "{e}");
        for v in ["nl", "cr", "nul"] {
            let e = render(&format!("true # {{{{ inputs.{v} }}}}")).expect_err("line break");
            assert!(
                e.to_string().contains("cannot go into a command line"),
                "{e}"
            );
        }
        let e = render("{{ debug() }}").expect_err("no debug");
        assert!(e.to_string().contains("debug"), "{e}");
        // Outside command lines, multi-line values are ordinary text.
        let t = env
            .template_from_named_str(TEXT_TEMPLATE, "{{ inputs.nl }}")
            .expect("compiles");
        assert_eq!(t.render(&ctx).expect("renders"), "a\ntouch PWNED");
    }

    #[test]
    fn undefined_values_are_errors() {
        let env = environment();
        let t = env
            .template_from_named_str(TEXT_TEMPLATE, "{{ inputs.missing }}")
            .expect("compiles");
        assert!(
            t.render(minijinja::context! { inputs => minijinja::context! {} })
                .is_err()
        );
    }
}
