//! `cairn status [HOSTS|@RING] [--json] [--watch]`

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{output, Context};
use crate::cli::StatusArgs;
use crate::gitops::{self, status};

/// How often `--watch` looks again.
const WATCH_INTERVAL: Duration = Duration::from_secs(10);

pub fn run(args: &StatusArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let inventory = ctx.load_inventory()?;
    let hosts = gitops::select(&inventory, &args.selectors)?;
    let backend = ctx.open_state(&inventory)?;
    let access = access(&inventory, backend.as_ref(), &args.login)?;
    let runtime = super::fleet::runtime()?;
    let deadline = Instant::now() + args.timeout;
    loop {
        let rows = runtime.block_on(gitops::observe(&inventory, &access, &hosts))?;
        record_machine_ids(backend.as_ref(), &access.state, &rows);
        let all = !rows.is_empty() && rows.iter().all(|r| r.converged);
        if args.json {
            output(ctx.out.json(&rows))?;
        } else {
            let summaries = status::summarize(&inventory, &rows);
            output(ctx.out.text(&status::render(
                &rows,
                &summaries,
                time::OffsetDateTime::now_utc(),
            )))?;
        }
        if !args.watch || all {
            return Ok(if all { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            ctx.out.error(&format!(
                "not every host converged within {} (--timeout)",
                crate::util::duration::format(args.timeout)
            ));
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(left.min(WATCH_INTERVAL));
        if !args.json {
            output(ctx.out.text("\n"))?;
        }
    }
}

/// How day-2 commands log into hosts: the key, and state's addresses and pinned keys.
pub(crate) fn access(
    inventory: &crate::inventory::Inventory,
    backend: &dyn crate::state::State,
    login: &crate::cli::LoginArgs,
) -> miette::Result<status::Access> {
    Ok(status::Access {
        auth: super::login::login_auth(&inventory.root, login.identity.as_ref())?,
        state: Arc::new(backend.read()?),
        state_location: backend.location(),
    })
}

/// Records machine ids read from hosts (for fleet.json), if state is free right now: status
/// never waits for another run's lock.
fn record_machine_ids(
    backend: &dyn crate::state::State,
    state: &crate::state::StateData,
    rows: &[status::HostStatus],
) {
    let learned = gitops::learned_machine_ids(state, rows);
    if learned.is_empty() {
        return;
    }
    let holder = crate::state::LockHolder::from_process();
    match backend.lock(holder, crate::state::LockWait::Fail) {
        Ok(mut lock) => {
            for (host, id) in &learned {
                lock.data_mut().host_mut(host).machine_id = Some(id.clone());
            }
            match lock.commit() {
                Ok(()) => tracing::info!(
                    hosts = learned.len(),
                    "recorded machine ids in state (for `cairn gitops sync`)"
                ),
                Err(e) => {
                    tracing::warn!("cannot record machine ids in state: {}", status::one_line(&e))
                }
            }
        }
        Err(e) => {
            tracing::warn!("machine ids not recorded, state is busy: {}", status::one_line(&e))
        }
    }
}
