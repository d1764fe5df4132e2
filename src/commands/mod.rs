//! One file per command: wiring between the CLI, the library and the UI, no logic of its own.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::inventory::{Inventory, StateBackend};
use crate::state::{FileState, PgState, State, StateError};
use crate::ui::{Output, UiMode};

mod apply;
mod bootstrap;
mod check;
mod completions;
mod copy_closure;
mod destroy;
pub mod fleet;
mod gitops;
mod hosts;
mod import;
mod init;
mod login;
mod plan;
mod promote;
mod secrets;
mod ssh;
mod status;

/// What every command gets: the resolved global flags and the output channel.
#[derive(Debug)]
pub struct Context {
    /// The directory cairn runs in (after `-C`).
    pub cwd: PathBuf,
    pub inventory: Option<PathBuf>,
    pub vars: Vec<String>,
    /// `--lock-timeout`: how long to wait for the state lock another run holds.
    pub lock_timeout: Option<Duration>,
    pub ui: UiMode,
    pub out: Output,
}

/// Problems of the command layer itself.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum CommandError {
    #[error("refusing to {what} without confirmation: there is no terminal to ask on")]
    #[diagnostic(
        code(cairn::confirm::no_terminal),
        help("review the plan, then pass --yes to {what} without being asked")
    )]
    NoTerminal { what: String },

    #[error("not confirmed; nothing was changed")]
    #[diagnostic(code(cairn::confirm::declined), help("only `yes` confirms"))]
    NotConfirmed,

    #[error("cannot write to stdout")]
    #[diagnostic(code(cairn::output))]
    Output(#[source] std::io::Error),
}

impl Context {
    pub fn new(global: &GlobalArgs, ui: UiMode) -> std::io::Result<Self> {
        Ok(Self {
            cwd: std::env::current_dir()?,
            inventory: global.inventory.clone(),
            vars: global.vars.clone(),
            lock_timeout: global.lock_timeout,
            ui,
            out: Output::default(),
        })
    }

    /// `--json`: events go to stdout as JSON lines, the human output to stderr.
    pub fn with_json_events(mut self) -> Self {
        self.out = Output::json_events();
        self
    }

    /// The state backend the inventory names (reading needs no lock). The one place a
    /// command gets its state from.
    pub fn open_state(&self, inv: &Inventory) -> miette::Result<Box<dyn State>> {
        match &inv.state {
            StateBackend::File => Ok(Box::new(FileState::new(&inv.root))),
            StateBackend::Pg { conn, name } => {
                let state = match name {
                    Some(name) => PgState::new(conn, name),
                    None => PgState::for_repository(conn, &inv.root),
                };
                Ok(Box::new(state.map_err(StateError::from)?))
            }
        }
    }
}

fn output(r: std::io::Result<()>) -> miette::Result<()> {
    r.map_err(|e| CommandError::Output(e).into())
}

impl Context {
    /// Renders an error that does not end the run (one host of many failed) on stderr.
    pub fn report_error(&self, error: &(dyn miette::Diagnostic + Send + Sync + 'static)) {
        self.out.error(&crate::ui::render_diagnostic(error, self.ui));
    }
}

/// Asks on the terminal before machines change; `--yes` answers for the user. Without a
/// terminal and without `--yes` it refuses: nobody could have read what is about to happen.
pub(crate) fn confirm(ctx: &Context, yes: bool, what: &str) -> miette::Result<()> {
    use std::io::IsTerminal;
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CommandError::NoTerminal { what: what.to_owned() }.into());
    }
    let answer = ctx
        .out
        .prompt(&format!("\nDo you want to {what}? Only `yes` is accepted.\n  Enter yes: "))
        .map_err(CommandError::Output)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CommandError::NotConfirmed.into())
    }
}

/// Runs one parsed command line.
pub fn run(cli: Cli, ctx: &Context) -> miette::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(&args, ctx),
        Command::Completions(args) => completions::run(&args, ctx),
        Command::Apply(args) => apply::run(&args, ctx),
        Command::Bootstrap(args) => bootstrap::run(&args, ctx),
        Command::Destroy(args) => destroy::run(&args, ctx),
        Command::Secrets(cmd) => secrets::run(cmd, ctx),
        Command::Init(args) => init::run(&args, ctx),
        Command::Hosts(args) => hosts::run(&args, ctx),
        Command::Import(args) => import::run(&args, ctx),
        Command::Plan(args) => plan::run(&args, ctx),
        Command::Ssh(args) => ssh::run(&args, ctx),
        Command::Gitops(cmd) => gitops::run(cmd, ctx),
        Command::Status(args) => status::run(&args, ctx),
        Command::Promote(args) => promote::promote(&args, ctx),
        Command::Rollback(args) => promote::rollback(&args, ctx),
        Command::Hold(args) => promote::hold(&args, ctx, true),
        Command::Release(args) => promote::hold(&args, ctx, false),
        Command::CopyClosure(args) => copy_closure::run(&args, ctx),
    }
}
