//! Entry points for the fuzz targets (`fuzz/`): what drctl reads from ssh's and sudo's
//! output (the master's log, sudo's refusals, the last stderr line) and the octal mode of
//! `ssh.copy`. Not part of drctl's interface.

use super::{copy, diagnose};
use crate::backends::process::Exec;

/// Every reader of ssh and sudo output, on one text.
pub fn output(text: &str) {
    let _ = diagnose::fingerprint_in(text);
    for code in [Some(1), Some(127), None] {
        let e = Exec {
            code,
            stderr: text.to_owned(),
            ..Exec::default()
        };
        let _ = diagnose::sudo_problem(&e, "host", "user", text);
        let _ = diagnose::exit_text(code);
    }
    let _ = diagnose::last_line(text, false);
    let _ = diagnose::short_command(text);
}

/// The `mode:` of `ssh.copy` (`0600`, `644`).
pub fn mode(text: &str) {
    let _ = copy::parse_mode(Some(text));
}
