//! `cairn bootstrap host NAME | all | @tag`: the whole pipeline for the selected hosts.

use std::process::ExitCode;

use super::Context;
use crate::bootstrap::{self, HostReport};
use crate::cli::BootstrapArgs;

pub fn run(args: &BootstrapArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let phases = match &args.phases {
        Some(list) => Some(bootstrap::phase::parse_list(list).map_err(|e| miette::miette!("{e}"))?),
        None => None,
    };
    let selectors = args.selectors();
    let session = ctx.fleet_session(&selectors)?;
    let mut options = bootstrap::Options {
        phases,
        parallel: args.parallel,
        installer: args.installer.clone(),
        ..Default::default()
    };
    options.timeouts.0.extend(args.timeouts.iter().copied());
    let reports = session.bootstrap(options)?;
    render_summary(ctx, &reports)?;
    let failed = reports.iter().filter(|r| r.result.is_err()).count();
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The summary, then each failure rendered in full.
pub(super) fn render_summary(ctx: &Context, reports: &[HostReport]) -> miette::Result<()> {
    let out = crate::ui::report::bootstrap(reports);
    ctx.out.text(&out).map_err(|e| miette::miette!("writing the summary: {e}"))?;
    ctx.out
        .event(&crate::ui::json::bootstrap_summary(reports))
        .map_err(|e| miette::miette!("writing the summary: {e}"))?;
    for r in reports {
        if let Err(e) = &r.result {
            ctx.report_error(e);
        }
    }
    Ok(())
}
