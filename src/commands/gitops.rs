//! `cairn gitops sync [--check]`

use std::process::ExitCode;

use super::{output, Context};
use crate::cli::{GitopsCommand, GitopsSyncArgs};
use crate::gitops::fleet::{self, Synced, FLEET_FILE};

pub fn run(cmd: GitopsCommand, ctx: &Context) -> miette::Result<ExitCode> {
    match cmd {
        GitopsCommand::Sync(args) => sync(&args, ctx),
    }
}

fn sync(args: &GitopsSyncArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let inventory = ctx.load_inventory()?;
    let state = ctx.open_state(&inventory)?.read()?;
    let fleet = fleet::render(&inventory, &state);
    let result = fleet::sync(&inventory.root, &fleet, args.check)?;
    let without_id: Vec<&str> = fleet
        .hosts
        .iter()
        .filter(|(_, h)| h.machine_id.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let mut text = match result {
        Synced::Unchanged => format!("{FLEET_FILE} is up to date ({})", hosts(fleet.hosts.len())),
        Synced::Written => format!(
            "wrote {FLEET_FILE} ({}); commit it so the hosts' comin follows it",
            hosts(fleet.hosts.len())
        ),
    };
    if !without_id.is_empty() {
        text.push_str(&format!(
            "\nno machine id known yet for {} (`cairn status` reads it; until then comin's machineId is unset)",
            without_id.join(", ")
        ));
    }
    text.push('\n');
    output(ctx.out.text(&text))?;
    Ok(ExitCode::SUCCESS)
}

fn hosts(n: usize) -> String {
    if n == 1 {
        "1 host".into()
    } else {
        format!("{n} hosts")
    }
}
