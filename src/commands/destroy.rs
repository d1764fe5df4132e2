//! `cairn destroy host NAME...`: show which machines go, confirm, delete them in parallel and
//! forget the hosts in state.

use std::process::ExitCode;

use super::{confirm, output, Context};
use crate::cli::{selectors_from_words, DestroyArgs};
use crate::inventory::Host;
use crate::plan::{refresh, Plan};

pub fn run(args: &DestroyArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let selectors = selectors_from_words(&args.hosts);
    let session = ctx.fleet_session(&selectors)?;
    let inv = session.inventory.clone();
    let state = session.state.snapshot();
    let selected: Vec<&Host> = session.hosts.iter().collect();
    let (targets, _) = refresh::targets(&inv, &selected, &state, false);
    let providers = crate::provider::for_blocks(&inv, targets.iter().map(|t| t.provider.clone()))?;
    let runtime = super::fleet::runtime()?;
    let refreshed = runtime.block_on(refresh::refresh(&inv, targets, &providers, args.parallel));
    let plan = Plan::destroy(&inv, &selected, &state, Some(&refreshed.observed));
    output(ctx.out.text(&plan.render(ctx.ui.color)))?;
    for e in &refreshed.failures {
        ctx.report_error(e);
    }
    let mut failed = refreshed.failures.len();
    if plan.has_work() {
        confirm(ctx, args.yes, "destroy these machines")?;
        failed += session.carry_out("destroy", ctx, &runtime, &plan, None, args.parallel)?;
    } else {
        output(ctx.out.event(&crate::ui::json::apply_summary("destroy", &[])))?;
    }

    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
