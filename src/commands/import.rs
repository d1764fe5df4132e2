//! `cairn import HOST ID`: adopt a machine that exists at the host's provider.

use std::process::ExitCode;

use super::{output, Context};
use crate::cli::ImportArgs;
use crate::plan::import::{self, Imported};
use crate::plan::PlanError;

pub fn run(args: &ImportArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let session = ctx.fleet_session(&[])?;
    let inv = session.inventory.clone();
    let Some(host) = inv.host(&args.host) else {
        return Err(PlanError::ImportUnknownHost {
            host: args.host.clone(),
            inventory: inv.path.clone(),
        }
        .into());
    };
    let block = inv.provider_of(host);
    let provider = crate::provider::for_block(&inv, block)?;
    let imported = super::fleet::runtime()?.block_on(import::import(
        &inv,
        &session.state,
        provider.as_ref(),
        &args.host,
        &args.id,
    ))?;
    let (machine, what) = match &imported {
        Imported::Recorded(m) => (m, "imported"),
        Imported::AlreadyRecorded(m) => (m, "already records"),
    };
    let attributes: Vec<String> =
        machine.attributes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    output(ctx.out.text(&format!(
        "{}: {what} machine {} ({}.{}): {}\n",
        args.host,
        machine.id,
        block.kind,
        block.name,
        attributes.join(", ")
    )))?;
    Ok(ExitCode::SUCCESS)
}
