//! Command-line arguments (clap derive). Raw arguments only; meaning lives in commands/.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Disaster-recovery runbooks as code: rehearse, run, resume and print them.";

const AFTER_HELP: &str = "\
Examples:
  drctl list                              the known runbooks
  drctl show etcd-restore                 inputs, prerequisites and steps of one
  drctl validate                          check every known runbook
  drctl validate ./my-runbooks/*.yaml     check files
  drctl print cluster-rebuild -o binder.html --format html
  drctl schema > drctl-runbook.schema.json

Runbooks: the built-in ones, plus *.yaml files of --runbooks DIR (env DRCTL_RUNBOOKS),
which override built-ins of the same name.";

#[derive(Debug, Parser)]
#[command(name = "drctl", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// A directory of runbooks that adds to and overrides the built-in ones.
    #[arg(long, global = true, env = "DRCTL_RUNBOOKS", value_name = "DIR")]
    pub runbooks: Option<PathBuf>,

    /// Colour in diagnostics and output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrintFormat {
    Markdown,
    Text,
    Html,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the known runbooks: name, title and where each comes from.
    #[command(
        after_help = "Example:\n  drctl list\n  drctl --runbooks ./runbooks list --output json"
    )]
    List {
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        output: ListFormat,
    },

    /// Show one runbook: summary, inputs, prerequisites, steps with their read/mutate class.
    #[command(after_help = "Example:\n  drctl show etcd-restore\n  drctl show ./my-runbook.yaml")]
    Show {
        /// A runbook name, or the path of a runbook file.
        name: String,
    },

    /// Check runbooks and report every problem with FILE:LINE:COL (default: all known).
    #[command(
        after_help = "Examples:\n  drctl validate\n  drctl validate runbooks/etcd-restore.yaml broken.yaml\n\nExit code 1 when any file has an error."
    )]
    Validate {
        /// Files to check (default: every known runbook).
        paths: Vec<PathBuf>,
    },

    /// Print a runbook as a checklist to follow on paper when drctl cannot run.
    #[command(
        after_help = "Examples:\n  drctl print etcd-restore\n  drctl print cluster-rebuild --format html -o cluster-rebuild.html\n  drctl print etcd-restore --set control_plane=cp1.lab --format text"
    )]
    Print {
        /// A runbook name, or the path of a runbook file.
        name: String,
        #[arg(long, value_enum, default_value_t = PrintFormat::Markdown)]
        format: PrintFormat,
        /// Fill an input in the printed commands (repeatable). Secret inputs stay placeholders.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Write to a file instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },

    /// Print the JSON Schema of the runbook format (for editors).
    #[command(
        after_help = "Example:\n  drctl schema > drctl-runbook.schema.json\n  # VS Code YAML: \"yaml.schemas\": {\"drctl-runbook.schema.json\": \"runbooks/*.yaml\"}"
    )]
    Schema,

    /// Print a shell completion script.
    #[command(after_help = "Example:\n  drctl completions bash > /etc/bash_completion.d/drctl")]
    Completions { shell: clap_complete::Shell },
}
