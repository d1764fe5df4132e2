//! `cairn plan [HOSTS] [--refresh=false] [--out FILE] [--detailed-exitcode] [--json]`

use std::process::ExitCode;

use super::{output, Context};
use crate::cli::PlanArgs;
use crate::inventory::{Host, Inventory};
use crate::plan::file::PlanFile;
use crate::plan::{refresh, Inputs, Plan, PlanError};
use crate::provider::ProviderError;
use crate::state::StateData;

pub fn run(args: &PlanArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let inv = ctx.load_inventory()?;
    let selected = crate::inventory::select(&inv, &args.hosts.selectors)?;
    let state = ctx.open_state(&inv)?.read()?;
    let replace = replace_names(&inv, &args.replace)?;
    let request = Request {
        selected: &selected,
        state: &state,
        include_orphans: args.hosts.selectors.is_empty(),
        refresh: args.refresh,
        replace: &replace,
        parallel: args.parallel,
    };
    let (plan, failures) = make_plan(&inv, &request)?;
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

/// What to plan.
pub(super) struct Request<'a> {
    pub selected: &'a [&'a Host],
    pub state: &'a StateData,
    pub include_orphans: bool,
    pub refresh: bool,
    pub replace: &'a [String],
    pub parallel: usize,
}

/// Plans, asking the providers first unless `refresh` is off. Hosts whose provider failed
/// come back as errors to render; the plan covers the others.
pub(super) fn make_plan(
    inv: &Inventory,
    req: &Request<'_>,
) -> miette::Result<(Plan, Vec<ProviderError>)> {
    let mut failures = Vec::new();
    let observed = if req.refresh {
        let (targets, orphans_failed) =
            refresh::targets(inv, req.selected, req.state, req.include_orphans);
        let providers =
            crate::provider::for_blocks(inv, targets.iter().map(|t| t.provider.clone()))?;
        let mut refreshed = super::fleet::runtime()?.block_on(refresh::refresh(
            inv,
            targets,
            &providers,
            req.parallel,
        ));
        refreshed.add_failures(orphans_failed);
        failures = refreshed.failures;
        Some(refreshed.observed)
    } else {
        None
    };
    let plan = Plan::compute(&Inputs {
        inventory: inv,
        selected: req.selected,
        state: req.state,
        include_orphans: req.include_orphans,
        observed: observed.as_ref(),
        replace: req.replace,
    });
    Ok((plan, failures))
}

/// The hosts `--replace` names (names, globs, tags).
pub(super) fn replace_names(inv: &Inventory, selectors: &[String]) -> miette::Result<Vec<String>> {
    if selectors.is_empty() {
        return Ok(Vec::new());
    }
    Ok(crate::inventory::select(inv, selectors)?.iter().map(|h| h.name.to_string()).collect())
}
