//! ssh and scp commands for the ssh.* actions.

use crate::runbook::action::*;
use crate::runbook::template::shell_quote;
use crate::runbook::{Sink, Text};

use super::quote::*;
use super::*;

/// -------------------------------------------------------------------------------
pub(super) fn run(a: &SshRun, r: &Resolver, out: &mut Vec<String>) {
    let target = ssh_target(r, &a.host, a.user.as_ref());
    let command = r.text(&a.command, Sink::Command);
    let command = command.trim_end_matches('\n');
    let env = env_assignments(r, &a.env);
    if env.is_empty() && !a.sudo && !command.contains('\n') {
        out.push(format!("ssh {target} {}", shell_quote(command)));
    } else {
        // A script on stdin avoids quoting the command twice (ssh, then sh -c).
        let mut body: Vec<String> = env.iter().map(|e| format!("export {e}")).collect();
        body.push(command.to_owned());
        let sh = if a.sudo { "sudo sh -s" } else { "sh -s" };
        out.push(format!(
            "ssh {target} {sh} {}",
            heredoc(&(body.join("\n") + "\n"))
        ));
    }
}

pub(super) fn copy(a: &SshCopy, r: &Resolver, out: &mut Vec<String>) {
    let target = ssh_target(r, &a.host, a.user.as_ref());
    let host_path = |path: &str| format!("{target}:{path}");
    let local = local_path_word(r, &a.local).quoted();
    let remote = q(r, &a.remote);
    let mode = a.mode.as_deref().map(shell_quote);
    match (a.direction, a.sudo) {
        (CopyDirection::Upload, false) => {
            out.push(format!("scp {local} {}", host_path(&remote)));
            if let Some(m) = &mode {
                out.push(format!(
                    "ssh {target} {}",
                    shell_quote(&format!("chmod {m} {remote}"))
                ));
            }
        }
        (CopyDirection::Upload, true) => {
            let tmp = "/tmp/drctl-upload";
            out.push(format!("scp {local} {}", host_path(tmp)));
            // `install -m` sets the mode as root; plain cp keeps an existing file's.
            let put = match &mode {
                Some(m) => format!("sudo install -m {m} {tmp} {remote}"),
                None => format!("sudo cp {tmp} {remote}"),
            };
            out.push(format!(
                "ssh {target} {}",
                shell_quote(&format!("{put} && rm -f {tmp}"))
            ));
        }
        (CopyDirection::Download, false) => {
            out.push(format!("scp {} {local}", host_path(&remote)));
        }
        (CopyDirection::Download, true) => {
            out.push(format!(
                "ssh {target} {} > {local}",
                shell_quote(&format!("sudo cat {remote}"))
            ));
        }
    }
    if a.direction == CopyDirection::Download
        && let Some(m) = &mode
    {
        out.push(format!("chmod {m} {local}"));
    }
}

pub(super) fn ssh_target(r: &Resolver, host: &Text, user: Option<&Text>) -> String {
    match user {
        Some(u) => word(r, u).then(Word::lit("@")).then(word(r, host)).quoted(),
        None => q(r, host),
    }
}

/// A command line run locally, or on `host` through ssh.
pub(super) fn on_host(r: &Resolver, host: Option<&Text>, sudo: bool, cmd: &str) -> String {
    let cmd = if sudo {
        format!("sudo {cmd}")
    } else {
        cmd.to_owned()
    };
    match host {
        Some(h) => format!("ssh {} {}", q(r, h), shell_quote(&cmd)),
        None => cmd,
    }
}
