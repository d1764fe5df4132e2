//! `cairn plan [HOSTS] [--detailed-exitcode] [--json]`

use std::process::ExitCode;

use super::{output, Context};
use crate::cli::PlanArgs;
use crate::plan::Plan;

pub fn run(args: &PlanArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let inv = ctx.load_inventory()?;
    let selected = crate::inventory::select(&inv, &args.hosts.selectors)?;
    let state = ctx.open_state(&inv)?.read()?;
    let plan = Plan::compute(&inv, &selected, &state, args.hosts.selectors.is_empty());
    if args.json {
        output(ctx.out.json(&plan))?;
    } else {
        output(ctx.out.text(&plan.render(ctx.ui.color)))?;
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
