//! `cairn promote RING`, `cairn rollback RING`, `cairn hold RING`, `cairn release RING`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{confirm, output, Context};
use crate::cli::{HoldArgs, PromoteArgs, RollbackArgs};
use crate::gitops::promote::{CheckRun, Outcome};
use crate::gitops::{self, status, HoldOutcome};

const WATCH_INTERVAL: Duration = Duration::from_secs(5);

fn short(c: &str) -> &str {
    &c[..c.len().min(7)]
}

pub fn promote(args: &PromoteArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let inventory = ctx.load_inventory()?;
    let backend = ctx.open_state(&inventory)?;
    // Before any host or remote is asked anything: the check of the ring's hosts.
    let ring = gitops::ring(&inventory, &args.ring)?;
    super::check::gate(&inventory, &backend.read()?, &ring.hosts, args.skip_check)?;
    let check = if args.skip_check { CheckRun::Skipped } else { CheckRun::Passed };
    let access = super::status::access(&inventory, backend.as_ref(), &args.login)?;
    let runtime = super::fleet::runtime()?;
    let p = runtime.block_on(gitops::prepare_promotion(
        &inventory,
        &access,
        &args.ring,
        args.commit.as_deref(),
        check,
    ))?;
    let mut text =
        format!("promote {} ({}) to {}, {}\n", p.ring, p.branch, short(&p.target), p.source);
    for g in &p.gates {
        let mark = match g.outcome {
            Outcome::Passed => "ok",
            Outcome::Refused => "REFUSED",
            Outcome::Skipped => "skipped",
        };
        text.push_str(&format!("  {:<12} {mark}: {}\n", g.gate, g.detail));
    }
    output(ctx.out.text(&text))?;
    if p.refused() {
        return Err(gitops::refusal(&p.ring, &p.gates).into());
    }
    confirm(
        ctx,
        args.yes,
        &format!("push {} to {} on `{}`", short(&p.target), p.branch, p.push_remote),
    )?;
    let (tag, fetched) = runtime.block_on(gitops::execute_promotion(&inventory, &access, &p))?;
    let mut text = format!(
        "pushed {} to {} on `{}`; recorded as tag {tag}\n",
        short(&p.target),
        p.branch,
        p.push_remote
    );
    let failed = report_fetch(&mut text, &fetched);
    output(ctx.out.text(&text))?;
    let converged =
        watch(args.watch, args.timeout, ctx, &runtime, &inventory, &access, &p.ring, &p.target)?;
    Ok(if failed || !converged { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub fn rollback(args: &RollbackArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let inventory = ctx.load_inventory()?;
    let backend = ctx.open_state(&inventory)?;
    let access = super::status::access(&inventory, backend.as_ref(), &args.login)?;
    let runtime = super::fleet::runtime()?;
    let r =
        runtime.block_on(gitops::prepare_rollback(&inventory, &args.ring, args.to.as_deref()))?;
    output(ctx.out.text(&format!(
        "roll back {} ({}) to the tree of {} ({}): revert commit {} on top of {}\n",
        r.ring,
        r.branch,
        short(&r.to),
        r.to_label,
        short(&r.commit),
        short(&r.current)
    )))?;
    confirm(
        ctx,
        args.yes,
        &format!("push {} to {} on `{}`", short(&r.commit), r.branch, r.push_remote),
    )?;
    let (tag, fetched) = runtime.block_on(gitops::execute_rollback(&inventory, &access, &r))?;
    let mut text = format!(
        "pushed {} to {} on `{}`; recorded as tag {tag}\n",
        short(&r.commit),
        r.branch,
        r.push_remote
    );
    let failed = report_fetch(&mut text, &fetched);
    output(ctx.out.text(&text))?;
    let converged =
        watch(args.watch, args.timeout, ctx, &runtime, &inventory, &access, &r.ring, &r.commit)?;
    Ok(if failed || !converged { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub fn hold(args: &HoldArgs, ctx: &Context, suspend: bool) -> miette::Result<ExitCode> {
    let inventory = ctx.load_inventory()?;
    let backend = ctx.open_state(&inventory)?;
    let access = super::status::access(&inventory, backend.as_ref(), &args.login)?;
    let runtime = super::fleet::runtime()?;
    let results = runtime.block_on(gitops::hold(&inventory, &access, &args.ring, suspend))?;
    let (done, already) = if suspend {
        ("held (comin suspend)", "already held")
    } else {
        ("released (comin resume)", "already released")
    };
    let mut text = String::new();
    let mut failed = false;
    for (host, r) in &results {
        match r {
            Ok(HoldOutcome::Done) => text.push_str(&format!("{host}: {done}\n")),
            Ok(HoldOutcome::Already) => text.push_str(&format!("{host}: {already}\n")),
            Err(e) => {
                failed = true;
                text.push_str(&format!("{host}: failed: {e}\n"));
            }
        }
    }
    output(ctx.out.text(&text))?;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Appends each host's `comin fetch` result; true if any failed.
fn report_fetch(text: &mut String, fetched: &[(String, Result<(), String>)]) -> bool {
    let mut failed = false;
    for (host, r) in fetched {
        match r {
            Ok(()) => text.push_str(&format!("  {host}: asked to fetch now\n")),
            Err(e) => {
                failed = true;
                text.push_str(&format!("  {host}: could not ask it to fetch ({e}); comin takes the branch at its next poll\n"));
            }
        }
    }
    failed
}

/// What a watch shows of a host: commit, status, converged, error.
type Shown = (Option<String>, String, bool, Option<String>);

#[allow(clippy::too_many_arguments)]
fn watch(
    enabled: bool,
    timeout: Duration,
    ctx: &Context,
    runtime: &tokio::runtime::Runtime,
    inventory: &crate::inventory::Inventory,
    access: &status::Access,
    ring: &str,
    commit: &str,
) -> miette::Result<bool> {
    if !enabled {
        return Ok(true);
    }
    let deadline = Instant::now() + timeout;
    // Shown again only when something other than the time since the last fetch changed.
    let mut last: Option<Vec<Shown>> = None;
    let converged = runtime.block_on(gitops::watch_ring(
        inventory,
        access,
        ring,
        commit,
        deadline,
        WATCH_INTERVAL,
        |rows| {
            let now: Vec<_> = rows
                .iter()
                .map(|r| (r.commit.clone(), r.status.clone(), r.converged, r.error.clone()))
                .collect();
            if last.as_ref() != Some(&now) {
                let summaries = status::summarize(inventory, rows);
                let _ = ctx.out.text(&status::render(
                    rows,
                    &summaries,
                    time::OffsetDateTime::now_utc(),
                ));
                last = Some(now);
            }
        },
    ))?;
    if converged {
        output(ctx.out.text(&format!("{ring} converged on {}\n", short(commit))))?;
    } else {
        ctx.out.error(&format!(
            "{ring} did not converge on {} within {} (--timeout)",
            short(commit),
            crate::util::duration::format(timeout)
        ));
    }
    Ok(converged)
}
