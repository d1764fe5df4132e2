//! `cairn apply [PLAN | HOSTS] [--yes] [--replace HOSTS]`: make the providers match the
//! inventory: plan (or read a saved plan), show it, confirm, act on every host in parallel.

use std::process::ExitCode;

use super::plan::replace_names;
use super::{confirm, output, Context};
use crate::cli::ApplyArgs;
use crate::inventory::Host;
use crate::plan::file::PlanFile;
use crate::plan::{refresh, Action, Plan};

pub fn run(args: &ApplyArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let saved = match args.targets.as_slice() {
        [one] if ctx.cwd.join(one).is_file() => Some(ctx.cwd.join(one)),
        _ => None,
    };
    let (session, plan, mut failed) = match &saved {
        Some(path) => {
            if !args.replace.is_empty() {
                return Err(miette::miette!(
                    help = "plan again with `cairn plan --replace HOSTS --out FILE`",
                    "--replace cannot change a saved plan"
                ));
            }
            let file = PlanFile::read(path)?;
            let session = ctx.fleet_session(&file.selectors)?;
            file.check_current(path, &session.inventory, session.state.snapshot().serial)?;
            output(ctx.out.text(&file.plan.render(ctx.ui.color)))?;
            (session, file.plan, 0)
        }
        None => {
            let session = ctx.fleet_session(&args.targets)?;
            let state = session.state.snapshot();
            let selected: Vec<&Host> = session.hosts.iter().collect();
            let replace = replace_names(&session.inventory, &args.replace)?;
            let request = refresh::Request {
                selected: &selected,
                state: &state,
                include_orphans: args.targets.is_empty(),
                refresh: true,
                replace: &replace,
                parallel: args.parallel,
            };
            let (plan, failures) =
                super::fleet::runtime()?.block_on(refresh::plan(&session.inventory, &request))?;
            output(ctx.out.text(&plan.render(ctx.ui.color)))?;
            for e in &failures {
                ctx.report_error(e);
            }
            (session, plan, failures.len())
        }
    };
    if !plan.has_work() {
        if plan.has_changes() {
            output(ctx.out.text("\nNothing to apply: what the plan shows needs --replace.\n"))?;
        }
        output(ctx.out.event(&crate::ui::json::apply_summary("apply", &[])))?;
        return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    confirm(ctx, args.yes, "apply these actions")?;

    let operator_key = operator_key(&session.inventory, &plan)?;
    let runtime = super::fleet::runtime()?;
    failed += session.carry_out("apply", ctx, &runtime, &plan, operator_key, args.parallel)?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The operator's public key when the plan creates machines (made on first use); `None`
/// when it creates nothing.
fn operator_key(inv: &crate::inventory::Inventory, plan: &Plan) -> miette::Result<Option<String>> {
    let creates = plan.hosts.iter().any(|h| {
        h.action == Action::Create
            || (matches!(h.action, Action::Change | Action::Replace) && h.rebuild)
    });
    if !creates {
        return Ok(None);
    }
    let env = super::login::operator_key_override(&crate::keys::IdentityEnv::from_process());
    let operator =
        crate::bootstrap::Operator::load_or_create(&inv.root, env).map_err(miette::Report::new)?;
    Ok(Some(operator.public_line))
}
