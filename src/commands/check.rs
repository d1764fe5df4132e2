//! `cairn check [--rule ID...] [--skip ID...] [--json] [--sarif FILE] [--strict]`

use std::process::ExitCode;

use super::{output, Context};
use crate::check::{self, render, Fleet, Options};
use crate::cli::CheckArgs;
use crate::inventory::{HostName, Inventory};
use crate::state::StateData;

/// Exit 2: the check itself could not run (as opposed to 1: it found errors).
const COULD_NOT_RUN: u8 = 2;

pub fn run(args: &CheckArgs, ctx: &Context) -> miette::Result<ExitCode> {
    match run_check(args, ctx) {
        Ok(code) => Ok(code),
        Err(report) => {
            ctx.report_error(&*report);
            Ok(ExitCode::from(COULD_NOT_RUN))
        }
    }
}

fn run_check(args: &CheckArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let inv = ctx.load_inventory()?;
    let state = ctx.open_state(&inv)?.read()?;
    let mut opts = Options::new(&inv);
    opts.only.clone_from(&args.rules);
    opts.skip.extend(args.skip.iter().copied());
    let report = check::run(Fleet { inventory: &inv, state: &state }, &opts)?;
    if let Some(path) = &args.sarif {
        let path = if path.is_absolute() { path.clone() } else { ctx.cwd.join(path) };
        let mut text =
            serde_json::to_string_pretty(&render::sarif(&report)).expect("a JSON value serialises");
        text.push('\n');
        crate::util::atomic::write(&path, text.as_bytes(), 0o644)
            .map_err(|source| check::CheckError::Io { path: path.clone(), source })?;
    }
    if args.json {
        output(ctx.out.json(&render::json(&report)))?;
    } else {
        use std::io::IsTerminal;
        let color = ctx.ui.color && std::io::stdout().is_terminal();
        output(ctx.out.text(&render::text(&report, color)))?;
    }
    Ok(if report.failed(args.strict) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The check before a command acts on `hosts` (bootstrap, promote): the error-level rules
/// run first and an error concerning those hosts stops the command; `--skip-check` (`skip`)
/// goes ahead without them, saying so.
pub(super) fn gate(
    inventory: &Inventory,
    state: &StateData,
    hosts: &[HostName],
    skip: bool,
) -> miette::Result<()> {
    if skip {
        tracing::warn!("--skip-check: going ahead without `cairn check`");
        return Ok(());
    }
    check::gate(Fleet { inventory, state }, hosts)?;
    Ok(())
}
