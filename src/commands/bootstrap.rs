//! `cairn bootstrap host NAME | all | @tag`: the whole pipeline for the selected hosts.

use std::process::ExitCode;

use super::Context;
use crate::bootstrap::{self, HostReport, Outcome};
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

/// One block per host: the result, then each phase with its time; failures rendered in full.
pub(super) fn render_summary(ctx: &Context, reports: &[HostReport]) -> miette::Result<()> {
    let mut out = String::new();
    for r in reports {
        match &r.result {
            Ok(v) if v.unchanged && !v.host_key.is_empty() => out.push_str(&format!(
                "{}: verified, no changes ({:.0} s): {} presents {}, booted {} from {}\n",
                r.host,
                r.elapsed.as_secs_f64(),
                v.address,
                v.host_key,
                v.boot_id,
                v.root_device
            )),
            Ok(v) if v.host_key.is_empty() => {
                out.push_str(&format!("{}: ok ({:.0} s)\n", r.host, r.elapsed.as_secs_f64()))
            }
            Ok(v) => out.push_str(&format!(
                "{}: verified in {:.0} s: {} presents {}, booted {} from {}\n",
                r.host,
                r.elapsed.as_secs_f64(),
                v.address,
                v.host_key,
                v.boot_id,
                v.root_device
            )),
            Err(_) => out.push_str(&format!(
                "{}: FAILED after {:.0} s\n",
                r.host,
                r.elapsed.as_secs_f64()
            )),
        }
        for t in &r.timings {
            let what = match &t.outcome {
                Outcome::Done => format!("{:>7.1} s", t.elapsed.as_secs_f64()),
                Outcome::Skipped(why) => format!("skipped: {why}"),
                Outcome::Failed => format!("{:>7.1} s  FAILED", t.elapsed.as_secs_f64()),
            };
            out.push_str(&format!("  {:<10} {what}\n", t.phase.as_str()));
        }
        if let Ok(v) = &r.result {
            for check in &v.checks {
                out.push_str(&format!("  check      {check}\n"));
            }
        }
    }
    let ok = reports.iter().filter(|r| r.result.is_ok()).count();
    out.push_str(&format!("{ok} of {} hosts ok\n", reports.len()));
    ctx.out.text(&out).map_err(|e| miette::miette!("writing the summary: {e}"))?;
    for r in reports {
        if let Err(e) = &r.result {
            ctx.report_error(e);
        }
    }
    Ok(())
}
