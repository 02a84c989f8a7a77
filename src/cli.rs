//! Command-line arguments (clap derive). Raw arguments only; meaning lives in commands/.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Disaster-recovery runbooks as code: rehearse, run, resume and print them.";

const AFTER_HELP: &str = "\
Examples:
  drctl run etcd-restore                  run it: asks before each change, resumable
  drctl run cluster-rebuild --dry-run     rehearse: every read for real, no change
  drctl resume                            continue the newest unfinished run
  drctl runs; drctl report RUN_ID         recorded runs; the incident timeline
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
pub enum OutputFormat {
    /// Progress for people (spinners on a terminal, plain lines otherwise).
    Human,
    /// One JSON event per line.
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
}

/// Options shared by `run` and `resume`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// No prompts: mutations proceed, and anything that needs a person (a manual step, a
    /// missing input or decision) stops the run, journalled and resumable.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// An input (`name=value`) or the answer to a decision step (`step-id=value`); repeatable.
    /// Secrets given here show in `ps` and shell history: prefer DRCTL_INPUT_NAME or the prompt.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// An input read from a file (`name=PATH`); repeatable.
    #[arg(long = "set-file", value_name = "KEY=PATH")]
    pub set_file: Vec<String>,
    /// Confirm a manual (or `confirm: always`) step from the command line; repeatable.
    #[arg(long = "confirm", value_name = "STEP")]
    pub confirm: Vec<String>,
    /// Progress format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// Where runs are recorded (default: $XDG_STATE_HOME/drctl or ~/.local/state/drctl).
    #[arg(long, env = "DRCTL_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Take over the lock of another run whose drctl process is gone (same host only);
    /// resuming that very run takes its lock without this flag.
    #[arg(long)]
    pub take_over_lock: bool,
    /// The kubeconfig for Kubernetes steps (default: KUBECONFIG, then ~/.kube/config;
    /// a `kube.use` step changes it for the steps after it).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context for Kubernetes steps (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Benchmark only: do not write the journal.
    #[arg(long, hide = true)]
    pub no_journal: bool,
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

    /// Run a runbook against the real systems (or rehearse it with --dry-run).
    #[command(after_help = "Examples:
  drctl run etcd-restore                         interactive: asks before each change
  drctl run cluster-rebuild --dry-run            rehearsal: every read for real, no change
  DRCTL_INPUT_AWS_SECRET_ACCESS_KEY=... drctl run vault-kms-credentials-lost --yes --set aws_access_key_id=AKIA...
  drctl run cluster-rebuild --set restore-source=offsite   answer a decision step

Exit codes: 0 done, 1 a step failed (or a rehearsal found problems), 2 usage,
3 not found, 4 waiting for the operator (resume later), 5 locked by another run,
6 the runbook changed since the run began, 130 aborted (Ctrl-C).")]
    Run {
        /// A runbook name, or the path of a runbook file.
        name: String,
        /// Rehearse: run every read-only action for real, show every mutation without doing it.
        #[arg(long)]
        dry_run: bool,
        /// Start at this step (earlier steps are skipped).
        #[arg(long, value_name = "STEP")]
        from: Option<String>,
        /// Run only this step (repeatable).
        #[arg(long, value_name = "STEP")]
        only: Vec<String>,
        /// Start a new run even if an unfinished one of this runbook exists.
        #[arg(long)]
        new: bool,
        #[command(flatten)]
        args: RunArgs,
    },

    /// Continue an unfinished run (default: the newest one).
    #[command(after_help = "Examples:
  drctl resume                                   the newest unfinished run
  drctl resume etcd-restore-20261122-031500-a1b2 --yes --resolve restore-snapshot=done
  drctl resume my-runbook-20261122-031500-c3d4 --yes --runbook ./my-runbook.yaml

A step that was running when drctl stopped is shown as interrupted: re-run it, mark it
done (after checking) or skip it. Idempotent steps, and steps whose check proves them
done, continue on their own. Secret inputs are asked again. A built-in runbook continues
with this drctl's own copy; a runbook file with the one of --runbooks DIR of that name, the
one --runbook names, or (at a terminal) the recorded path once you confirm it.")]
    Resume {
        /// The run (`drctl runs` lists them).
        run_id: Option<String>,
        /// What to do with an interrupted step: `STEP=rerun`, `STEP=done` or `STEP=skip`.
        #[arg(long, value_name = "STEP=ACTION")]
        resolve: Vec<String>,
        /// Resume even though the runbook changed since the run began.
        #[arg(long)]
        allow_changed: bool,
        /// The runbook to continue with: a name (built-in or of --runbooks DIR) or a file.
        /// Needed for a run of a runbook file outside --runbooks when nobody is at a
        /// terminal to confirm the path its journal recorded (drctl never loads a runbook
        /// from a path it only read in a journal).
        #[arg(long, value_name = "NAME|FILE")]
        runbook: Option<String>,
        /// Let the kubeconfig a `kube.use` step of this run chose run the credential
        /// program (exec plugin) it names, without asking. Without it, such a kubeconfig is
        /// shown and confirmed at a terminal, and refused under --yes.
        #[arg(long)]
        allow_kubeconfig_exec: bool,
        #[command(flatten)]
        args: RunArgs,
    },

    /// List recorded runs: state, runbook, operator, start, last step.
    #[command(after_help = "Example:\n  drctl runs\n  drctl runs --state-dir /mnt/usb/drctl-state")]
    Runs {
        #[arg(long, env = "DRCTL_STATE_DIR", value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },

    /// The incident timeline of a run, for the postmortem.
    #[command(
        after_help = "Examples:\n  drctl report etcd-restore-20261122-031500-a1b2 > incident.md\n  drctl report RUN_ID --format json"
    )]
    Report {
        run_id: String,
        #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
        format: ReportFormat,
        #[arg(long, env = "DRCTL_STATE_DIR", value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },

    /// Print the JSON Schema of the runbook format (for editors).
    #[command(
        after_help = "Example:\n  drctl schema > drctl-runbook.schema.json\n  # VS Code YAML: \"yaml.schemas\": {\"drctl-runbook.schema.json\": \"runbooks/*.yaml\"}"
    )]
    Schema,

    /// Print a shell completion script.
    #[command(after_help = "Example:\n  drctl completions bash > /etc/bash_completion.d/drctl")]
    Completions { shell: clap_complete::Shell },

    /// Write the manual pages (drctl.1, and drctl-run.1 etc. for each command) into DIR.
    #[command(after_help = "Example:\n  drctl man ~/.local/share/man/man1 && man drctl-run")]
    Man {
        /// The directory to write the pages into (created if missing).
        dir: std::path::PathBuf,
    },
}
