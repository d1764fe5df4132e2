//! `cairn plan [HOSTS] [--refresh=false] [--out FILE] [--detailed-exitcode] [--json]`

use std::process::ExitCode;

use super::{output, Context};
use crate::cli::PlanArgs;
use crate::inventory::Inventory;
use crate::plan::file::PlanFile;
use crate::plan::{refresh, PlanError};

pub fn run(args: &PlanArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let inv = ctx.load_inventory()?;
    let selected = crate::inventory::select(&inv, &args.hosts.selectors)?;
    let state = ctx.open_state(&inv)?.read()?;
    let replace = replace_names(&inv, &args.replace)?;
    let request = refresh::Request {
        selected: &selected,
        state: &state,
        include_orphans: args.hosts.selectors.is_empty(),
        refresh: args.refresh,
        replace: &replace,
        parallel: args.parallel,
    };
    let (plan, failures) = super::fleet::runtime()?.block_on(refresh::plan(&inv, &request))?;
    if args.json {
        output(ctx.out.json(&plan.redacted()))?;
    } else {
        output(ctx.out.text(&plan.render(ctx.ui.color)))?;
    }
    for e in &failures {
        ctx.report_error(e);
    }
    if let Some(path) = &args.out {
        if !failures.is_empty() {
            return Err(PlanError::Incomplete { failed: failures.len() }.into());
        }
        let path = ctx.cwd.join(path);
        PlanFile::new(&inv, state.serial, &args.hosts.selectors, plan.clone()).write(&path)?;
        tracing::info!(
            "saved the plan to {}; `cairn apply {}` carries it out",
            path.display(),
            path.display()
        );
    }
    Ok(if !failures.is_empty() {
        ExitCode::FAILURE
    } else if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The hosts `--replace` names (names, globs, tags).
pub(super) fn replace_names(inv: &Inventory, selectors: &[String]) -> miette::Result<Vec<String>> {
    if selectors.is_empty() {
        return Ok(Vec::new());
    }
    Ok(crate::inventory::select(inv, selectors)?.iter().map(|h| h.name.to_string()).collect())
}
