//! The loop over the phases of one host: which to run, skip or re-check ([`next_step`], a pure
//! function), timing and reporting each, and recording each completed phase in state.

use std::time::Instant;

use time::OffsetDateTime;

use super::host_run::HostRun;
use super::phases::{self, PhaseResult};
use super::{
    report_step, BootstrapError, Budgets, Context, Deadlines, Finished, HostReport, Outcome, Phase,
    PhaseError, PhaseTiming,
};
use crate::inventory::Host;
use crate::state::PhaseRecord;
use crate::ui::progress;
use crate::util::parallel::{catch_panic, Panicked};

/// What the loop does with a phase, given the last phase state recorded as completed and
/// the `--phases` selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Not in `--phases`: neither run nor shown.
    Unselected,
    /// Run it; it checks the remote side first itself.
    Run,
    /// Completed in an earlier run, and nothing of it can have gone since: shown as skipped.
    Skip,
    /// Completed in an earlier run, but what it left may be gone (the installer's mounts):
    /// check, and redo it if so.
    Recheck,
}

/// The resume policy. Without `--phases`, a run resumes after the last phase completed:
/// earlier phases are skipped, except provision and verify (each asks the real world), build
/// (its closure lives in this process only, and copy and install need it) until the system is
/// installed, and disk, whose mounts are re-checked until then. With `--phases`, exactly the
/// phases named run, whatever state says.
pub(super) fn next_step(
    phase: Phase,
    last_done: Option<Phase>,
    selected: Option<&[Phase]>,
) -> Step {
    if let Some(selected) = selected {
        return if selected.contains(&phase) { Step::Run } else { Step::Unselected };
    }
    let done_before = last_done.is_some_and(|done| phase <= done);
    let installed = last_done >= Some(Phase::Install);
    match phase {
        Phase::Provision | Phase::Verify => Step::Run,
        _ if !done_before => Step::Run,
        // Once installed, the installer's mounts are gone by design and the closure is on
        // the target: nothing to check.
        Phase::Disk | Phase::Build if installed => Step::Skip,
        Phase::Disk => Step::Recheck,
        Phase::Build => Step::Run,
        _ => Step::Skip,
    }
}

/// Runs the pipeline for one host and reports how each phase went.
pub(super) async fn run(ctx: &Context, host: &Host) -> HostReport {
    let started = Instant::now();
    let provider = ctx.providers[&host.provider].clone();
    let mut run = HostRun {
        ctx,
        host,
        provider,
        session: None,
        toplevel: None,
        closure: Vec::new(),
        ran_any: false,
        deadlines: Deadlines::resolve(&host.timeouts, &ctx.options.timeouts),
        budgets: Budgets::resolve(&host.timeouts, &ctx.options.timeouts),
        command_limit: crate::ssh::TimeLimit::default(),
        link_rate: None,
    };
    let mut timings = Vec::new();
    let mut last_done = run.state_snapshot().last_phase.map(|r| r.phase);
    let selected = ctx.options.phases.clone();
    let failed =
        |phase, source| BootstrapError { host: host.name.to_string(), phase: Some(phase), source };
    let mut result = None;
    for phase in Phase::ALL {
        if phase > Phase::Provision {
            // Provision may have found or made another machine than state knew (a new
            // provider id): it then forgot the old machine's progress, and nothing done to
            // the old one may be skipped on the new one.
            last_done = run.state_snapshot().last_phase.map(|r| r.phase);
        }
        let step = next_step(phase, last_done, selected.as_deref());
        if step == Step::Unselected {
            continue;
        }
        let phase_started = Instant::now();
        report_step(host, phase, progress::Step::Started, "");
        let outcome = match step {
            Step::Skip => Ok(PhaseResult::Skipped(format!(
                "done earlier (last completed: {})",
                last_done.map(Phase::as_str).unwrap_or("-")
            ))),
            _ => catch_panic(phases::run(&mut run, phase, step == Step::Recheck))
                .await
                .unwrap_or_else(|Panicked { message }| Err(PhaseError::Panicked { message })),
        };
        let elapsed = phase_started.elapsed();
        let verified = match outcome {
            Ok(PhaseResult::Skipped(why)) => {
                report_step(host, phase, progress::Step::Skipped, &why);
                timings.push(PhaseTiming { phase, outcome: Outcome::Skipped(why), elapsed });
                continue;
            }
            Err(source) => {
                report_step(host, phase, progress::Step::Failed, &source.to_string());
                timings.push(PhaseTiming { phase, outcome: Outcome::Failed, elapsed });
                result = Some(Err(failed(phase, source)));
                break;
            }
            Ok(PhaseResult::Done) => {
                report_step(host, phase, progress::Step::Done, "");
                run.ran_any |= phase != Phase::Verify && phase != Phase::Provision;
                None
            }
            Ok(PhaseResult::Verified(mut v)) => {
                v.unchanged = !run.ran_any;
                report_step(host, phase, progress::Step::Done, &format!("host key {}", v.host_key));
                Some(v)
            }
        };
        if let Err(e) = record_phase(&run, phase) {
            timings.push(PhaseTiming { phase, outcome: Outcome::Failed, elapsed });
            result = Some(Err(failed(phase, e)));
            break;
        }
        timings.push(PhaseTiming { phase, outcome: Outcome::Done, elapsed });
        if let Some(v) = verified {
            result = Some(Ok(Finished::Verified(v)));
        }
    }
    if let Some((_, session)) = run.session.take() {
        session.close().await;
    }
    // Without verify among the phases run, the run ends with what ran.
    let result = match result {
        Some(result) => result,
        None => Ok(Finished::PhasesRan(
            timings.iter().filter(|t| t.outcome == Outcome::Done).map(|t| t.phase).collect(),
        )),
    };
    HostReport { host: host.name.to_string(), result, timings, elapsed: started.elapsed() }
}

/// Records `phase` as completed, unless state knows of a later one (`--phases` re-ran an
/// earlier phase).
fn record_phase(r: &HostRun<'_>, phase: Phase) -> Result<(), PhaseError> {
    let at = OffsetDateTime::now_utc();
    let at = at.replace_nanosecond(0).unwrap_or(at);
    r.update_state(|h| {
        if h.last_phase.as_ref().is_none_or(|r| phase >= r.phase) {
            h.last_phase = Some(PhaseRecord { phase, at });
        }
        // What verify proved no longer describes a machine changed since.
        if (Phase::Kexec..=Phase::Reboot).contains(&phase) {
            h.bootstrap.verified = None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase::*;
    use Step::{Recheck as C, Run as R, Skip as S, Unselected as U};

    /// The step of every phase, in pipeline order.
    fn steps(last_done: Option<Phase>, selected: Option<&[Phase]>) -> Vec<Step> {
        Phase::ALL.iter().map(|p| next_step(*p, last_done, selected)).collect()
    }

    #[test]
    fn a_first_run_runs_every_phase() {
        assert_eq!(steps(None, None), [R; 10]);
    }

    #[test]
    fn a_run_resumes_after_the_last_phase_completed() {
        // Columns: provision reach kexec disk keys build copy install reboot verify.
        let cases: [(Phase, [Step; 10]); 10] = [
            (Provision, [R, R, R, R, R, R, R, R, R, R]),
            (Reach, [R, S, R, R, R, R, R, R, R, R]),
            (Kexec, [R, S, S, R, R, R, R, R, R, R]),
            // The installer may have lost its mounts (rebooted): disk re-checks them.
            (Disk, [R, S, S, C, R, R, R, R, R, R]),
            (Keys, [R, S, S, C, S, R, R, R, R, R]),
            // The closure lives in this process only: copy and install need it built again.
            (Build, [R, S, S, C, S, R, R, R, R, R]),
            (Copy, [R, S, S, C, S, R, S, R, R, R]),
            // Installed: the mounts are gone by design, the closure is on the target.
            (Install, [R, S, S, S, S, S, S, S, R, R]),
            (Reboot, [R, S, S, S, S, S, S, S, S, R]),
            (Verify, [R, S, S, S, S, S, S, S, S, R]),
        ];
        for (last_done, expected) in cases {
            assert_eq!(steps(Some(last_done), None), expected, "after {last_done}");
        }
    }

    #[test]
    fn a_rerun_after_success_asks_the_provider_and_verifies_again_only() {
        let ran: Vec<Phase> =
            Phase::ALL.into_iter().filter(|p| next_step(*p, Some(Verify), None) == R).collect();
        assert_eq!(ran, [Provision, Verify]);
    }

    #[test]
    fn phases_run_exactly_what_is_named_whatever_state_says() {
        let cases: [(&[Phase], Option<Phase>, [Step; 10]); 4] = [
            (&[Verify], Some(Verify), [U, U, U, U, U, U, U, U, U, R]),
            (&[Kexec, Disk, Copy], None, [U, U, R, R, U, U, R, U, U, U]),
            // Done before counts for nothing: a named phase runs again, checked from scratch.
            (&[Disk, Build], Some(Verify), [U, U, U, R, U, R, U, U, U, U]),
            (&[Install, Reboot, Verify], Some(Copy), [U, U, U, U, U, U, U, R, R, R]),
        ];
        for (selected, last_done, expected) in cases {
            assert_eq!(steps(last_done, Some(selected)), expected, "--phases {selected:?}");
        }
        assert_eq!(steps(Some(Copy), Some(&[])), [U; 10]);
    }
}
