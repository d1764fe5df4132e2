//! `cairn copy-closure` (hidden): the copy phase on its own, so a transfer can be timed and
//! compared (benches/transfer.sh) without a whole bootstrap. Same code as the phase.

use std::process::ExitCode;

use super::Context;
use crate::bootstrap::copy::{copy_closure, CopyJob, Strategy};
use crate::cli::CopyClosureArgs;
use crate::nix::{Nix, StorePath};
use crate::ssh::{Auth, ConnectOptions, HostKeyPolicy, Session, Target};

pub fn run(args: &CopyClosureArgs, _ctx: &Context) -> miette::Result<ExitCode> {
    let (user, address) = args
        .to
        .split_once('@')
        .ok_or_else(|| miette::miette!("--to {} is not USER@HOST:PORT", args.to))?;
    let target = Target::from_address(address, 22, user)
        .ok_or_else(|| miette::miette!("--to {} is not USER@HOST:PORT", args.to))?;
    let key = fs_err::read_to_string(&args.host_key).map_err(|e| miette::miette!("{e}"))?;
    let policy = HostKeyPolicy::pinned_openssh([key.trim()])
        .map_err(|e| miette::miette!("{}: {e}", args.host_key.display()))?;
    let strategy: Strategy = args.strategy.parse().map_err(|what| {
        miette::Report::from(crate::bootstrap::PhaseError::Config {
            what,
            help: "use copy = \"stream\" (the default: tar and zstd over SSH, no Nix needed on \
                   the target) or copy = \"nix-copy\" (nix copy, for installers that have Nix)"
                .into(),
        })
    })?;
    let toplevel = StorePath::new(args.path.clone()).map_err(|e| miette::miette!("{e}"))?;
    let nix = Nix::new().for_this_machine();
    let auth = Auth::KeyFile(args.identity.clone());
    super::fleet::runtime()?.block_on(async {
        let closure = nix.closure(std::slice::from_ref(&toplevel)).await?;
        // The copy phase's budget, as a bootstrap with no `timeouts` would give it.
        let bytes = closure.iter().map(|p| p.nar_size).sum();
        let options = ConnectOptions {
            command_limit: crate::bootstrap::Budgets::default()
                .for_transfer(crate::inventory::Budget::Copy, bytes),
            ..ConnectOptions::default()
        };
        let session = Session::connect(&target, &auth, &policy, &options)
            .await
            .map_err(crate::bootstrap::PhaseError::from)?;
        let job = CopyJob {
            strategy,
            closure: &closure,
            toplevel: &toplevel,
            root: &args.root,
            nix: &nix,
            identity: &args.identity,
        };
        let copied = copy_closure(&session, &job).await;
        session.close().await;
        copied.map_err(miette::Report::from)
    })?;
    Ok(ExitCode::SUCCESS)
}
