//! Local actions: shell, sleep, http.

use crate::runbook::Sink;
use crate::runbook::action::*;
use crate::runbook::template::shell_quote;

use super::quote::*;
use super::*;

pub(super) fn shell(a: &Shell, r: &Resolver, out: &mut Vec<String>) {
    let env = env_assignments(r, &a.env);
    let stdin = a
        .stdin
        .as_ref()
        .map(|s| format!("printf '%s' {} | ", q(r, s)));
    let cd = a.cwd.as_ref().map(|d| format!("cd {}", q(r, d)));
    if let Some(script) = &a.script {
        let script = r.text(script, Sink::Command);
        let script = script.trim_end_matches('\n');
        match &stdin {
            // Piping into a script needs the script as one command.
            Some(stdin) => out.push(format!(
                "{}{stdin}{}bash -euo pipefail -c {}",
                cd.as_ref().map(|c| format!("{c} && ")).unwrap_or_default(),
                prefix(&env),
                shell_quote(script)
            )),
            None => {
                out.extend(cd.clone());
                out.extend(env.iter().map(|e| format!("export {e}")));
                out.push(script.to_owned());
            }
        }
    }
    if !a.argv.is_empty() {
        let argv: Vec<String> = a.argv.iter().map(|t| q(r, t)).collect();
        out.push(format!(
            "{}{}{}{}",
            cd.map(|c| c + " && ").unwrap_or_default(),
            stdin.unwrap_or_default(),
            prefix(&env),
            argv.join(" ")
        ));
    }
}

pub(super) fn sleep(a: &Sleep, out: &mut Vec<String>) {
    out.push(format!("sleep {}", seconds(a.duration.value)));
}

pub(super) fn http(a: &Http, r: &Resolver, out: &mut Vec<String>) {
    let head = if a.method == HttpMethod::Head {
        " -I"
    } else {
        ""
    };
    let ca = a
        .ca_cert
        .as_ref()
        .map(|c| format!(" --cacert {}", q(r, c)))
        .unwrap_or_default();
    let url = q(r, &a.url);
    // curl -f fails on 4xx/5xx only: other expected codes need the code printed.
    let plain = a.expect_status.iter().all(|s| (200..300).contains(s));
    let grep = a
        .contains
        .as_ref()
        .map(|c| format!(" | grep -F -- {}", q(r, c)))
        .unwrap_or_default();
    if plain {
        let expect = match a.expect_status.as_slice() {
            [] | [200] => String::new(),
            codes => format!("  # expect HTTP {}", join_codes(codes)),
        };
        out.push(format!("curl -fsS{head}{ca} {url}{grep}{expect}"));
    } else {
        out.push(format!(
            "curl -sS{head}{ca} -o /dev/null -w '%{{http_code}}\\n' {url}  # expect HTTP {}",
            join_codes(&a.expect_status)
        ));
        if !grep.is_empty() {
            out.push(format!("curl -sS{head}{ca} {url}{grep}"));
        }
    }
}

/// Seconds for `sleep`, with a fraction when needed.
pub(super) fn seconds(d: Duration) -> String {
    let ms = d.subsec_millis();
    if ms == 0 {
        d.as_secs().to_string()
    } else {
        let frac = format!("{ms:03}");
        format!("{}.{}", d.as_secs(), frac.trim_end_matches('0'))
    }
}

pub(super) fn join_codes(codes: &[u16]) -> String {
    let codes: Vec<String> = codes.iter().map(u16::to_string).collect();
    codes.join(" or ")
}
