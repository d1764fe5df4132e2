//! `cairn apply [HOSTS]`: create or adopt the hosts' machines and record them, with the
//! stock image's host key (recorded on first contact, pinned from then on).

use std::process::ExitCode;

use super::Context;
use crate::bootstrap::{self, Phase};
use crate::cli::ApplyArgs;

pub fn run(args: &ApplyArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let session = ctx.fleet_session(&args.hosts.selectors)?;
    let options = bootstrap::Options {
        phases: Some(vec![Phase::Provision, Phase::Reach]),
        ..Default::default()
    };
    let reports = session.bootstrap(options)?;
    super::bootstrap::render_summary(ctx, &reports)?;
    Ok(if reports.iter().all(|r| r.result.is_ok()) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
