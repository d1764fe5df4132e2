//! One file per command: wiring between the CLI, the library and the UI, no logic of its own.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::ui::{Output, UiMode};

mod apply;
mod bootstrap;
mod completions;
mod destroy;
pub mod fleet;
mod secrets;
mod ssh;

/// What every command gets: the resolved global flags and the output channel.
#[derive(Debug)]
pub struct Context {
    /// The directory cairn runs in (after `-C`).
    pub cwd: PathBuf,
    pub inventory: Option<PathBuf>,
    pub vars: Vec<String>,
    pub ui: UiMode,
    pub out: Output,
}

impl Context {
    pub fn new(global: &GlobalArgs, ui: UiMode) -> std::io::Result<Self> {
        Ok(Self {
            cwd: std::env::current_dir()?,
            inventory: global.inventory.clone(),
            vars: global.vars.clone(),
            ui,
            out: Output,
        })
    }
}

impl Context {
    /// Renders an error that does not end the run (one host of many failed) on stderr.
    pub fn report_error(&self, error: &(dyn miette::Diagnostic + Send + Sync + 'static)) {
        self.out.error(&crate::ui::render_diagnostic(error, self.ui));
    }
}

/// Runs one parsed command line.
pub fn run(cli: Cli, ctx: &Context) -> miette::Result<ExitCode> {
    match cli.command {
        Command::Completions(args) => completions::run(&args, ctx),
        Command::Apply(args) => apply::run(&args, ctx),
        Command::Bootstrap(args) => bootstrap::run(&args, ctx),
        Command::Destroy(args) => destroy::run(&args, ctx),
        Command::Secrets(cmd) => secrets::run(cmd, ctx),
        Command::Ssh(args) => ssh::run(&args, ctx),
        Command::Init(_) | Command::Hosts(_) | Command::Plan(_) => {
            Err(miette::miette!("this command is being wired up"))
        }
    }
}
