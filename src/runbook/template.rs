//! MiniJinja templating: strict undefined, and values placed into a shell command are
//! shell-quoted unless marked `| raw` (an opt-out that stays visible in review).

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

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
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_auto_escape_callback(|name| {
        if name == COMMAND_TEMPLATE {
            AutoEscape::Custom("shell")
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(|out, state, value| {
        if matches!(state.auto_escape(), AutoEscape::Custom("shell")) && !value.is_safe() {
            let s = if value.is_undefined() || value.is_none() {
                String::new()
            } else {
                value.to_string()
            };
            out.write_str(&shell_quote(&s))?;
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("raw", |v: Value| Value::from_safe_string(v.to_string()));
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
