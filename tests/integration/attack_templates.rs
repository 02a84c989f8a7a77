//! Issue 19, items 1 and 2, written as attacks on a user's own runbook: the payload,
//! then the proof that nothing ran and the secret reached no output and no file.
//! Payloads beyond the ones the red team named are marked "beyond".

use std::path::Path;
use std::process::Stdio;

use crate::support::cli::{both, code, drctl_cmd, events, stdout, unique};
use crate::support::secrets::files_under;

/// A runbook whose first step leaves a mark (so "nothing ran" is visible), then the
/// payload step.
fn runbook(dir: &Path, payload: &str) -> String {
    let src = format!(
        "apiVersion: drctl/v1\nkind: Runbook\nname: attack\ntitle: Attack\nsummary: A payload.\ninputs:\n  token: {{ type: secret }}\n  v: {{ description: any text, default: x }}\n  workdir: {{ description: scratch }}\nsteps:\n  - id: first\n    title: First\n    shell: {{ cwd: \"{{{{ inputs.workdir }}}}\", script: touch RAN }}\n  - id: payload\n    title: Payload\n{payload}"
    );
    let path = dir.join("attack.yaml");
    std::fs::write(&path, src).expect("write the runbook");
    path.display().to_string()
}

struct Attempt {
    code: i32,
    /// Exit code, stdout and stderr, for messages.
    printed: String,
    stdout: String,
}

/// `drctl run` of the payload with a planted secret and value, in a fresh state
/// directory; asserts nothing was created in the scratch directory (but a `RAN` when
/// `may_start`), and the secret is in no output and no file.
fn attempt(payload: &str, value: &str, may_start: bool) -> Attempt {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (state, work) = (tmp.path().join("state"), tmp.path().join("work"));
    std::fs::create_dir(&work).expect("workdir");
    let token = unique("PLANTED-tok");
    let rb = runbook(tmp.path(), payload);
    let o = drctl_cmd(&state)
        .current_dir(&work)
        .env("DRCTL_INPUT_TOKEN", &token)
        .args(["run", &rb, "--yes", "--new", "--output", "json"])
        .args(["--set", &format!("workdir={}", work.display())])
        .args(["--set", &format!("v={value}")])
        .stdin(Stdio::null())
        .output()
        .expect("drctl runs");
    let printed = both(&o);
    let created: Vec<String> = std::fs::read_dir(&work)
        .expect("workdir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !(may_start && n == "RAN"))
        .collect();
    assert!(
        created.is_empty(),
        "payload {payload:?} with {value:?}: {created:?} appeared\n{printed}"
    );
    assert!(
        !printed.contains(&token) && !printed.contains(&token.to_uppercase()),
        "payload {payload:?}: the secret reached drctl's output"
    );
    for f in files_under(&state).into_iter().chain(files_under(&work)) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into_owned();
        assert!(
            !text.contains(&token),
            "payload {payload:?}: the secret was written to {}",
            f.display()
        );
    }
    Attempt {
        code: code(&o),
        printed,
        stdout: stdout(&o),
    }
}

/// Secret-sink bypasses: refused by validation before step one, saying what and why.
#[test]
fn a_secret_reached_by_any_spelling_is_refused_before_anything_runs() {
    let payloads = [
        // Subscript, alias, whole map (named by the red team).
        "    shell: { script: \"echo {{ inputs['token'] }}\" }\n",
        "    shell: { script: \"{% set i = inputs %}echo {{ i.token }}\" }\n",
        "    shell: { script: 'echo {{ inputs }}' }\n",
        "    shell: { script: 'true', env: { T: x } }\n    outputs: [{ name: t, from: \"inputs['token']\" }]\n",
        "    vault.init: { shares: 1, threshold: 1 }\n    outputs: [{ name: all, from: result }]\n",
        // Transformed values (named).
        "    shell: { script: 'echo {{ inputs.token | upper }}' }\n",
        "    manual: { instructions: '{{ inputs.token | reverse }}' }\n",
        // Beyond: loops, macros with a default, slices, argv, a `with` alias, a
        // result by subscript, a message.
        "    shell: { script: '{% for k, x in inputs | items %}echo {{ x }}{% endfor %}' }\n",
        "    shell: { script: '{% macro m(a=inputs) %}{{ a.token }}{% endmacro %}echo {{ m() }}' }\n",
        "    shell: { script: 'echo {{ inputs.token[1:] }}' }\n",
        "    shell: { argv: [echo, \"{{ inputs['token'] }}\"] }\n",
        "    shell: { script: '{% with t = inputs.token %}echo {{ t }}{% endwith %}' }\n",
        "    vault.init: { shares: 1, threshold: 1 }\n    outputs: [{ name: k, from: \"result['keys']\" }]\n",
        "    sleep: { duration: 1s }\n    description: \"{{ inputs | items | list }}\"\n",
    ];
    for p in payloads {
        let a = attempt(p, "x", false);
        assert_ne!(a.code, 0, "{p}: {}", a.printed);
        assert!(
            a.printed.contains("secret input `token`") || a.printed.contains("secret result"),
            "{p}: the refusal names the secret: {}",
            a.printed
        );
    }
}

/// Values placed where quoting cannot hold, and the ways to turn quoting off: refused by
/// validation before step one.
#[test]
fn a_value_placed_where_quoting_cannot_hold_is_refused_before_anything_runs() {
    let payloads = [
        // Named by the red team: heredoc body, comment, backslash, `safe`, autoescape.
        (
            "    shell: { script: \"cat <<EOF\\n{{ inputs.v }}\\nEOF\\n\" }\n",
            "$(touch PWNED)",
        ),
        (
            "    shell: { script: \"true # {{ inputs.v }}\\necho ok\" }\n",
            "x\ntouch PWNED",
        ),
        (
            "    shell: { script: 'echo \\{{ inputs.v }}' }\n",
            "';touch PWNED;'",
        ),
        (
            "    shell: { script: 'echo {{ inputs.v | safe }}' }\n",
            "x; touch PWNED",
        ),
        (
            "    shell: { script: '{% autoescape false %}echo {{ inputs.v }}{% endautoescape %}' }\n",
            "x; touch PWNED",
        ),
        // Beyond: quoted heredoc delimiter (a line `EOF` in the value ends it), single
        // quotes, double quotes, backticks, a `<<-` body, the same through ssh.run.
        (
            "    shell: { script: \"cat <<'EOF'\\n{{ inputs.v }}\\nEOF\\n\" }\n",
            "EOF\ntouch PWNED",
        ),
        (
            "    shell: { script: \"echo '{{ inputs.v }}'\" }\n",
            "$(touch PWNED)",
        ),
        (
            "    shell: { script: 'echo \"{{ inputs.v }}\"' }\n",
            "$(touch PWNED)",
        ),
        (
            "    shell: { script: 'echo `{{ inputs.v }}`' }\n",
            "$(touch PWNED)",
        ),
        (
            "    shell: { script: \"cat <<-E\\n\\t{{ inputs.v }}\\n\\tE\\n\" }\n",
            "$(touch PWNED)",
        ),
        (
            "    ssh.run: { host: h, command: \"sudo tee f <<EOF\\n{{ inputs.v }}\\nEOF\\n\" }\n",
            "$(touch PWNED)",
        ),
    ];
    for (p, v) in payloads {
        let a = attempt(p, v, false);
        assert_ne!(a.code, 0, "{p}: {}", a.printed);
        assert!(
            a.printed.contains("quot")
                || a.printed.contains("comment")
                || a.printed.contains("backslash")
                || a.printed.contains("here-document")
                || a.printed.contains("not available"),
            "{p}: the refusal says why: {}",
            a.printed
        );
    }
}

/// A value with a line break, at run time, in a place that validates: the step fails
/// with the reason, nothing it carried runs; the rest of the value stays data.
#[test]
fn a_value_with_a_line_break_never_reaches_a_command_line() {
    for v in ["x\ntouch PWNED", "x\rtouch PWNED", "x\n# \ntouch PWNED"] {
        let a = attempt(
            "    shell: { cwd: \"{{ inputs.workdir }}\", script: 'echo {{ inputs.v }}' }\n",
            v,
            true,
        );
        assert_ne!(a.code, 0, "{v:?}: {}", a.printed);
        let failed = events(&a.stdout)
            .into_iter()
            .find(|e| e["event"] == "step_finished" && e["id"] == "payload")
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            failed.contains("cannot go into a command line") && failed.contains("`env`"),
            "{v:?}: the step says why and what to do instead: {failed}\n{}",
            a.printed
        );
    }
    // The same value in `env`, used as "$V", is data.
    let a = attempt(
        "    shell: { cwd: \"{{ inputs.workdir }}\", script: 'printf %s \"$V\" >/dev/null', env: { V: \"{{ inputs.v }}\" } }\n",
        "x\ntouch PWNED",
        true,
    );
    assert_eq!(a.code, 0, "{}", a.printed);
}
