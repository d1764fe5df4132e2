//! Command-line types (clap derive). No logic lives here: `commands` resolves these raw
//! flags into validated inputs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Bootstrap and provision NixOS fleets from one inventory",
    long_about = "cairn reads the inventory (cairn.hcl) at the root of a Git repository, orders \
the machines it names from their providers, installs NixOS on them from the repository's flake, \
seeds each host's own keys so it can decrypt its sops secrets, and verifies the result.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Run as if cairn was started in DIR
    #[arg(short = 'C', long = "directory", value_name = "DIR", global = true)]
    pub directory: Option<PathBuf>,
    /// The inventory file [default: cairn.hcl, looked up from the current directory upward]
    #[arg(long, value_name = "FILE", global = true, env = "CAIRN_INVENTORY")]
    pub inventory: Option<PathBuf>,
    /// Set an inventory variable (repeatable); overrides CAIRN_VAR_<name> and defaults
    #[arg(long = "var", value_name = "NAME=VALUE", global = true)]
    pub vars: Vec<String>,
    /// More detail on stderr (repeat for more)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// When to use colors (NO_COLOR is respected by `auto`)
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold a new fleet repository: cairn.hcl, flake.nix, secrets/, .gitignore
    Init(InitArgs),
    /// List hosts: the inventory joined with what state knows
    Hosts(HostsArgs),
    /// Show what apply and bootstrap would change, per host
    Plan(PlanArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to create the repository
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// Host selectors: names, globs (`web*`) and tags (`@prod`). None means all hosts.
#[derive(Debug, Args, Clone, Default)]
pub struct HostSelectors {
    /// Hosts to act on: names, globs (web*) or tags (@prod) [default: all]
    #[arg(value_name = "HOSTS")]
    pub selectors: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    #[command(flatten)]
    pub hosts: HostSelectors,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub hosts: HostSelectors,
    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Print the plan as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
