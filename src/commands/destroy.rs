//! `cairn destroy host NAME`: delete the machines and forget them in state.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use super::fleet::runtime;
use super::Context;
use crate::cli::{selectors_from_words, DestroyArgs};

pub fn run(args: &DestroyArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let selectors = selectors_from_words(&args.hosts);
    let session = ctx.fleet_session(&selectors)?;
    let names: Vec<String> = session.hosts.iter().map(|h| h.name.to_string()).collect();
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(miette::miette!(
                help = "pass --yes to destroy without a prompt",
                "refusing to destroy {} without confirmation (no terminal to ask on)",
                names.join(", ")
            ));
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "Destroy {}? Type `yes` to confirm: ", names.join(", "));
        let _ = err.flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if answer.trim() != "yes" {
            return Err(miette::miette!("not confirmed; nothing was destroyed"));
        }
    }
    let providers = crate::provider::for_hosts(&session.inventory, &session.hosts)?;
    let rt = runtime()?;
    let mut failed = 0;
    let mut out = String::new();
    for host in &session.hosts {
        let state = session.state.host(host.name.as_str());
        let provider = &providers[&host.provider];
        let result = rt.block_on(async {
            match provider.lookup(host, state.as_ref()).await? {
                Some(machine) => provider.destroy(host, &machine).await.map(|_| true),
                None => Ok(false),
            }
        });
        match result {
            Ok(existed) => {
                session.state.update(|s| s.hosts.remove(host.name.as_str()))?;
                out.push_str(&if existed {
                    format!("{}: destroyed\n", host.name)
                } else {
                    format!("{}: no machine existed; forgotten in state\n", host.name)
                });
            }
            Err(e) => {
                failed += 1;
                out.push_str(&format!("{}: FAILED\n", host.name));
                ctx.report_error(&e);
            }
        }
    }
    ctx.out.text(&out).map_err(|e| miette::miette!("writing output: {e}"))?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
