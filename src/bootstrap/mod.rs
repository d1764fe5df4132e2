//! The bootstrap pipeline: from a machine running a stock image (or nothing yet) to a
//! verified NixOS host. [`run_fleet`] runs one task per host under a semaphore; each host
//! goes through the [`Phase`]s in order, each phase checking the remote side first and
//! recording its completion in state, so an interrupted run resumes where it stopped.

mod chroot;
pub mod confirm;
pub mod copy;
mod error;
mod host_run;
mod limits;
mod operator;
mod phases;
mod run;
mod secrets;
pub mod seed;
mod seeded;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

pub use crate::phase::{self, Phase};
pub use confirm::{AssumeYes, Confirm, Erasure, FirstKey};
pub use error::{BootstrapError, PhaseError};
pub use limits::{Budgets, Deadlines};
pub use operator::Operator;

use crate::inventory::{Host, Inventory, ProviderName, Timeouts};
use crate::nix::Nix;
use crate::provider::Provider;
use crate::state::SharedStateLock;
use crate::ui::progress::{self, Step};
use crate::util::parallel::Panicked;

/// Settings of one `cairn bootstrap` run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run only these phases (`--phases`); `None` runs the pipeline, resuming after the last
    /// phase state recorded.
    pub phases: Option<Vec<Phase>>,
    /// How many hosts run at once.
    pub parallel: usize,
    /// `--timeout NAME=DURATION`: deadlines and command budgets for every selected host,
    /// over the inventory's.
    pub timeouts: Timeouts,
    pub nix: Nix,
    /// An installer bundle overriding the hosts' and providers' (`--installer`).
    pub installer: Option<PathBuf>,
    /// `--reinstall`: take a machine that looks installed (its own host key, cairn's install
    /// marker) for a stock image to wipe, although state does not record it.
    pub reinstall: bool,
    /// `--trust-host-key SHA256:...`: the key a machine without a pinned key (an `existing`
    /// one) must present on first contact, instead of asking.
    pub trust_host_key: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            phases: None,
            parallel: 4,
            timeouts: Timeouts::default(),
            nix: Nix::new().for_this_machine(),
            installer: None,
            reinstall: false,
            trust_host_key: None,
        }
    }
}

/// Everything a host's run needs from the outside, shared by all hosts of a run.
pub struct Context {
    pub inventory: Arc<Inventory>,
    pub state: SharedStateLock,
    pub providers: BTreeMap<ProviderName, Arc<dyn Provider>>,
    pub operator: Operator,
    pub options: Options,
    /// The environment secrets are decrypted with (admin identities for host keys).
    pub env: crate::keys::IdentityEnv,
    /// Asked before a machine is erased (the kexec phase): a terminal prompt, or `--yes`.
    pub confirm: Arc<dyn Confirm>,
}

/// How one phase of one host went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Skipped, with why (`already running an installer`, `done at ...`).
    Skipped(String),
    Failed,
}

#[derive(Debug, Clone)]
pub struct PhaseTiming {
    pub phase: Phase,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// The result of one host's run.
#[derive(Debug)]
pub struct HostReport {
    pub host: String,
    pub result: Result<Finished, BootstrapError>,
    pub timings: Vec<PhaseTiming>,
    pub elapsed: Duration,
}

/// How a host's run that did not fail ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// Verify ran and proved the installed system.
    Verified(Verified),
    /// Only some phases ran (`--phases` without verify): these completed.
    PhasesRan(Vec<Phase>),
}

/// What verify proved about the installed host.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The SSH address it answered on.
    pub address: String,
    /// The fingerprint of the host key it presented (the one cairn generated).
    pub host_key: String,
    pub boot_id: String,
    /// The device the root filesystem was mounted from.
    pub root_device: String,
    /// Health checks that passed.
    pub checks: Vec<String>,
    /// True when nothing but verify ran (a re-run after success).
    pub unchanged: bool,
    /// For a host in a ring: what its GitOps agent said, which takes over from here.
    pub agent: Option<Box<AgentHandOff>>,
}

/// The hand-off to the host's GitOps agent (comin) at verify.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentHandOff {
    /// The branch the host's ring follows (what the agent pulls next).
    pub branch: String,
    /// comin's status, or why it could not be read.
    pub status: Result<crate::gitops::comin::CominStatus, String>,
}

/// Bootstraps `hosts`, at most `options.parallel` at a time. A failing host does not stop the
/// others; every host gets a report, a host whose task panicked too.
pub async fn run_fleet(ctx: Arc<Context>, hosts: Vec<Host>) -> Vec<HostReport> {
    let parallel = ctx.options.parallel;
    let names: Vec<String> = hosts.iter().map(|h| h.name.to_string()).collect();
    let results = crate::util::parallel::bounded(hosts, parallel, move |host| {
        let ctx = ctx.clone();
        let span = tracing::info_span!(progress::HOST_SPAN, host = %host.name);
        async move { run::run(&ctx, &host).await }.instrument(span)
    })
    .await;
    reports(names, results)
}

/// One report per host, in order: a task that panicked is a failed host.
fn reports(names: Vec<String>, results: Vec<Result<HostReport, Panicked>>) -> Vec<HostReport> {
    names
        .into_iter()
        .zip(results)
        .map(|(host, result)| match result {
            Ok(report) => report,
            Err(Panicked { message }) => HostReport {
                result: Err(BootstrapError {
                    host: host.clone(),
                    phase: None,
                    source: PhaseError::Panicked { message },
                }),
                host,
                timings: Vec::new(),
                elapsed: Duration::ZERO,
            },
        })
        .collect()
}

fn report_step(host: &Host, phase: Phase, step: Step, detail: &str) {
    progress::report(host.name.as_str(), phase.as_str(), step, detail);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_whose_task_panicked_is_a_failed_host_with_the_panic_message() {
        let panicked = Panicked { message: "index out of bounds: the len is 0".into() };
        let out = reports(vec!["web1".into()], vec![Err(panicked)]);
        let err = out[0].result.as_ref().unwrap_err();
        assert_eq!(err.to_string(), "web1: the run failed");
        assert_eq!(err.source.to_string(), "cairn panicked: index out of bounds: the len is 0");
        // Counted as failed in the summary, and so in the exit code.
        let summary = crate::ui::report::bootstrap(&out, false);
        assert!(summary.contains("\nweb1  FAILED  0:00"), "{summary}");
        assert!(summary.contains("cairn panicked: index out of bounds"), "{summary}");
        assert!(summary.contains("0 of 1 hosts ok\n"), "{summary}");
    }
}
