//! `cairn hosts [HOSTS] [--json]`

use std::process::ExitCode;

use super::{output, Context};
use crate::cli::HostsArgs;

pub fn run(args: &HostsArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let inv = ctx.load_inventory()?;
    let selected = crate::inventory::select(&inv, &args.hosts.selectors)?;
    let state = ctx.open_state(&inv)?.read()?;
    let rows = crate::hosts::rows(&inv, &selected, &state);
    if args.json {
        output(ctx.out.json(&rows))?;
    } else {
        output(ctx.out.text(&crate::hosts::render_table(&rows)))?;
    }
    Ok(ExitCode::SUCCESS)
}
