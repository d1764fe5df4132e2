//! `cairn completions SHELL`

use std::process::ExitCode;

use clap::CommandFactory;

use super::Context;
use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: &CompletionsArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "cairn", &mut buf);
    ctx.out.bytes(&buf).map_err(|e| miette::miette!("writing completions: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
