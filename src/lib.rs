//! drctl: disaster-recovery runbooks as code.
//!
//! `run()` is the whole program: arguments -> command -> output -> exit code.

pub mod backends;
pub mod cli;
pub mod commands;
pub mod exec;
#[doc(hidden)]
pub mod fuzzing;
pub mod plan;
pub mod render;
pub mod runbook;
pub mod secret;

use std::io::{IsTerminal, Write};

use clap::Parser;

/// Exit codes (documented in docs/operations.md).
pub mod exit {
    pub const OK: i32 = 0;
    /// A runbook has errors (validate), or a step failed.
    pub const FAILED: i32 = 1;
    /// Bad command-line usage.
    pub const USAGE: i32 = 2;
    /// A runbook, file, directory or run could not be found or read.
    pub const NOT_FOUND: i32 = 3;
    /// The run stopped waiting for the operator (a manual step under --yes, an
    /// interrupted step to decide on, an unfinished run to resume).
    pub const NEEDS_OPERATOR: i32 = 4;
    /// Another run of this runbook holds the lock.
    pub const LOCKED: i32 = 5;
    /// The runbook changed since the run began (resume refused).
    pub const CHANGED: i32 = 6;
    /// Aborted by the operator (Ctrl-C, abort at a prompt).
    pub const ABORTED: i32 = 130;
}

/// Errors of the command layer, each with an exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Catalog(#[from] runbook::catalog::CatalogError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Usage(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{message}")]
    Run { code: i32, message: String },
    #[error(transparent)]
    Journal(#[from] exec::journal::JournalError),
    #[error(transparent)]
    Engine(#[from] exec::engine::EngineError),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Catalog(runbook::catalog::CatalogError::NotFound { .. })
            | Error::Catalog(runbook::catalog::CatalogError::ReadDir { .. })
            | Error::Catalog(runbook::catalog::CatalogError::ReadFile { .. }) => exit::NOT_FOUND,
            Error::Catalog(_) | Error::Invalid(_) => exit::FAILED,
            Error::Usage(_) => exit::USAGE,
            Error::Write { .. } => exit::NOT_FOUND,
            Error::Run { code, .. } => *code,
            Error::Journal(exec::journal::JournalError::NotFound(_)) => exit::NOT_FOUND,
            Error::Journal(_) | Error::Engine(_) => exit::FAILED,
        }
    }
}

/// What a command produced: text for stdout, text for stderr, and the exit code.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Run drctl with the process's arguments; returns the exit code.
pub fn run() -> i32 {
    // Several TLS stacks are linked (the HTTP clients of the backends); rustls needs one
    // process-wide provider chosen up front, or it refuses to pick at the first client.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    let color = match cli.color {
        cli::ColorChoice::Always => true,
        cli::ColorChoice::Never => false,
        cli::ColorChoice::Auto => {
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    match commands::dispatch(&cli, color) {
        Ok(out) => {
            // A closed pipe (`drctl print x | head`) is not an error worth reporting.
            let _ = std::io::stdout().write_all(out.stdout.as_bytes());
            let _ = std::io::stderr().write_all(out.stderr.as_bytes());
            out.code
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            e.exit_code()
        }
    }
}
