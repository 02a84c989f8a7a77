//! Turning ssh and sudo failures into errors that say what failed and what to do: the
//! master's log (changed or unknown host key with its fingerprint, refused keys with the
//! agent's state, unreachable hosts), sudo's refusals, and the wording of exit statuses.

use std::path::Path;
use std::time::Duration;

use super::conn::Resolved;
use super::{Exec, SshError, SshOptions};
use crate::backends::process;

/// Turns the master's log into a message that says what failed and what to do.
pub(super) async fn classify(
    opts: &SshOptions,
    host: &str,
    user: Option<&str>,
    r: &Resolved,
    log: &str,
    scrub: &[String],
) -> SshError {
    let low = log.to_lowercase();
    let who = r.describe(host);
    let known = if r.port == "22" {
        r.hostname.clone()
    } else {
        format!("[{}]:{}", r.hostname, r.port)
    };
    if low.contains("remote host identification has changed") {
        let fp = match fingerprint_in(log) {
            Some(f) => f,
            None => probe_fingerprint(opts, host, user, scrub).await,
        };
        let offending = log
            .lines()
            .find(|l| l.contains("Offending"))
            .map(|l| format!(" ({})", l.trim()))
            .unwrap_or_default();
        return SshError::HostKey(format!(
            "the host key of {who} has CHANGED: the server now presents {fp}, which does not match the key pinned in known_hosts{offending}. \
             Someone may be intercepting the connection, or the host was reinstalled. Compare that fingerprint with the host's own \
             (on its console: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`); only if they match, remove the old entry \
             (`ssh-keygen -R '{known}'`), add the new key, and run the step again. drctl never accepts a changed key"
        ));
    }
    if low.contains("host key verification failed") || low.contains("host key is known for") {
        let fp = probe_fingerprint(opts, host, user, scrub).await;
        return SshError::HostKey(format!(
            "the host key of {who} is not in known_hosts, and drctl always checks host keys strictly. The server presents {fp}. \
             Compare it with the host's own (on its console: `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`); if it matches, \
             add it (`ssh-keyscan -p {} {} >> ~/.ssh/known_hosts`, or to the UserKnownHostsFile of your ssh config) and run the step again",
            r.port, r.hostname
        ));
    }
    if low.contains("permission denied (") || low.contains("too many authentication failures") {
        let agent = agent_state(scrub).await;
        let existing: Vec<&str> = r
            .identity_files
            .iter()
            .map(String::as_str)
            .filter(|p| Path::new(p).is_file())
            .collect();
        let files = if existing.is_empty() {
            "none of the key files ssh looks for exists".to_owned()
        } else {
            format!("key files tried: {}", existing.join(", "))
        };
        let reason = log
            .lines()
            .rev()
            .find(|l| {
                l.to_lowercase().contains("permission denied")
                    || l.to_lowercase().contains("too many")
            })
            .unwrap_or("Permission denied")
            .trim();
        return SshError::Auth(format!(
            "ssh to {who} was refused: no key was accepted for user {} ({reason}). drctl never asks for passwords (BatchMode). \
             {agent}; {files}. Check: the key is loaded (`ssh-add -l`, `ssh-add ~/.ssh/id_ed25519`), the user is right \
             (`user:` of the step, or User in your ssh config), and the public key is in ~{}/.ssh/authorized_keys on the host",
            r.user, r.user
        ));
    }
    let tail: Vec<&str> = log.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().map(str::trim).collect();
    let detail = tail.join(" / ");
    let hint = if low.contains("could not resolve hostname") {
        "check the host name, or that the Host alias exists in your ssh config (~/.ssh/config or DRCTL_SSH_CONFIG)".to_owned()
    } else if low.contains("connection refused") {
        format!(
            "nothing listens on {} port {}: check that sshd runs on the host and the port is right",
            r.hostname, r.port
        )
    } else if low.contains("timed out")
        || low.contains("no route to host")
        || low.contains("unreachable")
    {
        format!(
            "{} port {} cannot be reached: check the host is up, the network, VPN or ProxyJump",
            r.hostname, r.port
        )
    } else {
        "check that `ssh` to the host works from this terminal".to_owned()
    };
    SshError::Connect(format!("ssh to {who} failed: {detail}; {hint}"))
}

/// `SHA256:...` with its key type, from ssh's changed-key warning.
pub(super) fn fingerprint_in(log: &str) -> Option<String> {
    let mut lines = log.lines();
    while let Some(l) = lines.next() {
        if let Some(rest) = l.split("The fingerprint for the ").nth(1) {
            let kind = rest.split_whitespace().next().unwrap_or("a").to_owned();
            let next = lines.next().unwrap_or_default();
            let fp = next
                .split_whitespace()
                .find(|w| w.starts_with("SHA256:"))?
                .trim_end_matches('.');
            return Some(format!("{kind} key {fp}"));
        }
    }
    None
}

/// The server's host key fingerprint, read by a verbose strict connection attempt that
/// cannot accept the key (it is only read, never trusted).
async fn probe_fingerprint(
    opts: &SshOptions,
    host: &str,
    user: Option<&str>,
    scrub: &[String],
) -> String {
    let mut cmd = opts.command(scrub);
    cmd.arg("-v");
    for o in [
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "ControlMaster=no",
        "ControlPath=none",
        "ClearAllForwardings=yes",
        "ConnectTimeout=10",
        "RemoteCommand=none",
    ] {
        cmd.arg("-o").arg(o);
    }
    if let Some(u) = user {
        cmd.arg("-l").arg(u);
    }
    cmd.arg("--").arg(host).arg("true");
    let Some(out) = process::output_within(cmd, Duration::from_secs(20)).await else {
        return "a key whose fingerprint could not be read".into();
    };
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.split("Server host key: ").nth(1))
        .map(|k| {
            let mut w = k.split_whitespace();
            let kind = w.next().unwrap_or("a");
            let fp = w.next().unwrap_or("?");
            format!("{kind} key {fp}")
        })
        .unwrap_or_else(|| "a key whose fingerprint could not be read".into())
}

/// What the ssh agent holds, in words.
async fn agent_state(scrub: &[String]) -> String {
    let Some(sock) = std::env::var_os("SSH_AUTH_SOCK") else {
        return "No ssh agent is available to drctl (SSH_AUTH_SOCK is not set)".into();
    };
    let mut cmd = process::command("ssh-add", scrub);
    cmd.arg("-l");
    match process::output_within(cmd, Duration::from_secs(5)).await {
        Some(o) => match o.status.code() {
            Some(0) => {
                let n = String::from_utf8_lossy(&o.stdout).lines().count();
                format!("The ssh agent holds {n} key(s), none accepted")
            }
            Some(1) => {
                "The ssh agent holds no keys (`ssh-add -l`: The agent has no identities)".into()
            }
            _ => format!(
                "The ssh agent at {} cannot be reached",
                Path::new(&sock).display()
            ),
        },
        None => "The ssh agent could not be asked (`ssh-add -l` failed)".into(),
    }
}

/// A clear message when `sudo -n` could not run the command.
pub(crate) fn sudo_problem(e: &Exec, host: &str, user: &str, command: &str) -> Option<SshError> {
    let low = e.stderr.to_lowercase();
    if !low.contains("sudo") {
        return None;
    }
    if low.contains("password is required") || low.contains("a terminal is required") {
        return Some(SshError::Sudo(format!(
            "on {host}: sudo wants a password for {user}, and drctl runs sudo without prompts (`sudo -n`), so `{command}` did not run. \
             Give {user} passwordless sudo on {host} (a sudoers rule with NOPASSWD), or connect as a user that has it \
             (`user:` of the step, or User in your ssh config)"
        )));
    }
    if low.contains("not in the sudoers file") || low.contains("is not allowed to") {
        return Some(SshError::Sudo(format!(
            "on {host}: {user} may not use sudo, so `{command}` did not run: {}. Connect as a user with sudo rights (`user:` of the step, or User in your ssh config)",
            e.stderr.trim()
        )));
    }
    if e.code == Some(127)
        && (low.contains("sudo: not found") || low.contains("sudo: command not found"))
    {
        return Some(SshError::Sudo(format!(
            "on {host}: sudo is not installed, so `{command}` did not run; install it or connect as root (`user: root`)"
        )));
    }
    None
}

pub(crate) fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit code {c}"),
        None => "a signal (the remote command was killed)".to_owned(),
    }
}

/// `: LAST STDERR LINE`, or nothing.
pub(crate) fn last_line(stderr: &str, quiet: bool) -> String {
    if quiet {
        return String::new();
    }
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default()
}

/// The command for messages: its first line, shortened.
pub(super) fn short_command(command: &str) -> String {
    let mut lines = command.trim().lines();
    let first = lines.next().unwrap_or_default().trim();
    let mut s: String = first.chars().take(120).collect();
    if s.len() < first.len() || lines.next().is_some() {
        s.push_str(" ...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_fingerprint_of_a_changed_key() {
        let log = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nIT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
                   The fingerprint for the ED25519 key sent by the remote host is\nSHA256:abcDEF123.\nOffending ED25519 key in /k:1\nHost key verification failed.";
        assert_eq!(
            fingerprint_in(log).as_deref(),
            Some("ED25519 key SHA256:abcDEF123")
        );
    }

    #[test]
    fn sudo_password_is_explained() {
        let e = Exec {
            code: Some(1),
            stderr: "sudo: a password is required\n".into(),
            ..Exec::default()
        };
        let m = sudo_problem(&e, "cp1", "ops", "true")
            .expect("sudo problem")
            .to_string();
        assert!(m.contains("sudo wants a password for ops"), "{m}");
        assert!(m.contains("NOPASSWD"), "{m}");
        let ok = Exec {
            code: Some(1),
            stderr: "grep: nothing\n".into(),
            ..Exec::default()
        };
        assert!(sudo_problem(&ok, "cp1", "ops", "true").is_none());
    }
}
