//! The bootstrap pipeline: from a machine running a stock image (or nothing yet) to a
//! verified NixOS host. [`run_fleet`] runs one task per host under a semaphore; each host
//! goes through the [`Phase`]s in order, each phase checking the remote side first and
//! recording its completion in state, so an interrupted run resumes where it stopped.

mod error;
mod host;
mod operator;
pub mod phase;
mod secrets;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

pub use error::{BootstrapError, PhaseError};
pub use operator::Operator;
pub use phase::Phase;

use crate::inventory::{Host, Inventory, ProviderName};
use crate::nix::Nix;
use crate::provider::Provider;
use crate::state::SharedStateLock;
use crate::ui::progress::{self, Step};

/// How long each wait may take before the run fails with a message saying what it waited
/// for. Software-emulated VMs need the generous defaults; real clouds are faster.
#[derive(Debug, Clone)]
pub struct Deadlines {
    /// From "machine created" to the stock image answering SSH.
    pub reach: Duration,
    /// From `kexec/run` to the installer answering SSH.
    pub kexec: Duration,
    /// From `reboot` to the installed system answering SSH with its own key.
    pub reboot: Duration,
    /// For the health checks to pass after the installed system answers.
    pub health: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            reach: Duration::from_secs(600),
            kexec: Duration::from_secs(300),
            reboot: Duration::from_secs(600),
            health: Duration::from_secs(300),
        }
    }
}

/// Settings of one `cairn bootstrap` run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run only these phases (`--phases`); `None` runs the pipeline, resuming after the last
    /// phase state recorded.
    pub phases: Option<Vec<Phase>>,
    /// How many hosts run at once.
    pub parallel: usize,
    pub deadlines: Deadlines,
    pub nix: Nix,
    /// An installer bundle overriding the hosts' and providers' (`--installer`).
    pub installer: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            phases: None,
            parallel: 4,
            deadlines: Deadlines::default(),
            nix: Nix::new().for_this_machine(),
            installer: None,
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
    pub result: Result<Verified, BootstrapError>,
    pub timings: Vec<PhaseTiming>,
    pub elapsed: Duration,
}

/// What verify proved about the installed host.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// Bootstraps `hosts`, at most `options.parallel` at a time. A failing host does not stop the
/// others; every host gets a report.
pub async fn run_fleet(ctx: Arc<Context>, hosts: Vec<Host>) -> Vec<HostReport> {
    let parallel = ctx.options.parallel;
    crate::util::parallel::bounded(hosts, parallel, move |host| {
        let ctx = ctx.clone();
        let span = tracing::info_span!(progress::HOST_SPAN, host = %host.name);
        async move { host::run(&ctx, &host).await }.instrument(span)
    })
    .await
}

fn report_step(host: &Host, phase: Phase, step: Step, detail: &str) {
    progress::report(host.name.as_str(), phase.as_str(), step, detail);
}
