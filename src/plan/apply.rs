//! Carrying out a plan: create, adopt, rebuild (only where allowed) and destroy machines, one
//! task per host, a bounded number at a time. Each host's result is recorded in state as soon
//! as its provider answers; a host that fails does not stop the others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::ui::progress::{self, Step};

use super::lookups::Lookups;
use super::{recorded_block, Action, HostPlan, Plan, PlanError, Recorded};
use crate::gitops::network;
use crate::inventory::{Host, Inventory, ProviderName};
use crate::provider::{CreateRequest, Machine, Provider, ProviderError};
use crate::state::{HostState, SharedStateLock, StateData};

/// What a run of [`run`] needs.
pub struct Executor {
    pub inventory: Arc<Inventory>,
    pub state: SharedStateLock,
    pub providers: BTreeMap<ProviderName, Arc<dyn Provider>>,
    /// The operator's SSH public key line, handed to machines created; `None` for a run
    /// that creates nothing (destroy).
    pub operator_key: Option<String>,
    pub parallel: usize,
}

/// What happened to one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Created(String),
    /// Recorded a machine the provider has (planned, or found when about to create).
    Adopted(String),
    Replaced {
        old: Option<String>,
        new: String,
    },
    /// The machine deleted, if there was one; the host is forgotten in state either way.
    Destroyed(Option<String>),
    /// Left alone, with why.
    Skipped(String),
}

#[derive(Debug)]
pub struct HostOutcome {
    pub host: String,
    pub result: Result<Done, PlanError>,
    pub elapsed: Duration,
}

/// The provider blocks a plan needs: each host's own, and the one its machine was recorded at.
pub fn provider_blocks(inv: &Inventory, plan: &Plan, state: &StateData) -> Vec<ProviderName> {
    let mut out = Vec::new();
    let hosts = inv.hosts_by_name();
    for h in &plan.hosts {
        if let Some(host) = hosts.get(h.host.as_str()) {
            out.push(host.provider.clone());
        }
        let recorded = state.host(&h.host).and_then(|s| s.provider.clone());
        for label in [Some(h.provider.clone()), recorded].into_iter().flatten() {
            if let Ok(name) = ProviderName::new(recorded_block(&label)) {
                if inv.providers.contains_key(&name) {
                    out.push(name);
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

impl Done {
    /// The machine this left, for progress lines.
    fn machine_line(&self) -> String {
        match self {
            Done::Created(id) | Done::Adopted(id) => format!("machine {id}"),
            Done::Replaced { new, .. } => format!("machine {new}"),
            Done::Destroyed(Some(id)) => format!("machine {id} deleted"),
            Done::Destroyed(None) => "no machine existed".into(),
            Done::Skipped(why) => why.clone(),
        }
    }
}

/// Carries out `plan`, at most `exec.parallel` hosts at a time; results in the plan's order.
pub async fn run(exec: Arc<Executor>, plan: &Plan) -> Vec<HostOutcome> {
    let parallel = exec.parallel;
    let lookups = Arc::new(lookups(&exec, plan));
    let results = crate::util::parallel::bounded(plan.hosts.clone(), parallel, move |hp| {
        let exec = exec.clone();
        let lookups = lookups.clone();
        let span = tracing::info_span!(crate::ui::progress::HOST_SPAN, host = %hp.host);
        async move {
            let started = Instant::now();
            let action = hp.action.as_str();
            progress::report_action(&hp.host, action, Step::Started, "");
            let result = apply_host(&exec, &lookups, &hp).await;
            match &result {
                Ok(Done::Skipped(why)) => {
                    progress::report_action(&hp.host, action, Step::Skipped, why)
                }
                Ok(done) => {
                    progress::report_action(&hp.host, action, Step::Done, &done.machine_line())
                }
                Err(e) => {
                    tracing::debug!(error = %super::one_line(e), "failed");
                    progress::report_action(&hp.host, action, Step::Failed, &super::one_line(e));
                }
            }
            HostOutcome { host: hp.host.clone(), result, elapsed: started.elapsed() }
        }
        .instrument(span)
    })
    .await;
    // A task that panicked is a failed host, so the run cannot end well.
    plan.hosts
        .iter()
        .zip(results)
        .map(|(hp, r)| {
            r.unwrap_or_else(|p| HostOutcome {
                host: hp.host.clone(),
                result: Err(PlanError::Panicked { host: hp.host.clone(), message: p.message }),
                elapsed: Duration::ZERO,
            })
        })
        .collect()
}

/// Which machine a plan's host is about: the host (a stand-in for one that left the
/// inventory), the block that holds its machine now (what state recorded, else the plan's),
/// and what state recorded.
fn resolve(
    exec: &Executor,
    hp: &HostPlan,
) -> Result<(Host, ProviderName, Option<HostState>), PlanError> {
    let inv = &exec.inventory;
    let recorded = exec.state.host(&hp.host);
    let holder = recorded
        .as_ref()
        .and_then(|s| s.provider.as_deref())
        .unwrap_or(hp.provider.as_str())
        .to_owned();
    let holder = block(inv, &hp.host, &holder)?;
    let host = match inv.host(&hp.host) {
        Some(h) => h.clone(),
        None => super::refresh::orphan_host(inv, &hp.host, &holder).ok_or_else(|| {
            invalid(&hp.host, "is not a valid host name", "remove it from the state")
        })?,
    };
    Ok((host, holder, recorded))
}

/// What each host of `plan` will look up before acting, as one batch per provider block
/// (see [`super::lookups`]); hosts that cannot be resolved are left to fail in their task.
fn lookups(exec: &Executor, plan: &Plan) -> Lookups {
    let mut asks = Vec::new();
    for hp in &plan.hosts {
        let Ok((host, holder, recorded)) = resolve(exec, hp) else { continue };
        let (block, state) = match (hp.action, hp.machine.as_deref()) {
            (Action::Create, _) | (Action::Adopt, None) => (host.provider.clone(), recorded),
            (Action::Change | Action::Replace, Some(id)) if hp.rebuild => {
                (holder, Some(pinned_state(recorded.as_ref(), id)))
            }
            (Action::Destroy, Some(id)) => (holder, Some(pinned_state(recorded.as_ref(), id))),
            _ => continue,
        };
        if let Ok(provider) = exec.provider(&block) {
            asks.push((block, provider, host, state));
        }
    }
    Lookups::new(asks)
}

async fn apply_host(exec: &Executor, lookups: &Lookups, hp: &HostPlan) -> Result<Done, PlanError> {
    let (host, holder, recorded) = resolve(exec, hp)?;
    match hp.action {
        Action::Create => {
            let provider = exec.provider(&host.provider)?;
            // A machine made by a run that crashed before recording it is taken, not doubled.
            let found =
                lookups.lookup(&host.provider, provider.as_ref(), &host, recorded.as_ref()).await?;
            if let Some(m) = found {
                tracing::info!(machine = %m.id, "the provider has a machine for this host already; recording it");
                record(exec, &host, &m, false)?;
                return Ok(Done::Adopted(m.id));
            }
            let m = create(exec, &host, provider.as_ref()).await?;
            Ok(Done::Created(m.id))
        }
        Action::Adopt => {
            let provider = exec.provider(&host.provider)?;
            let found = match &hp.machine {
                Some(id) => provider.lookup_id(&host, id).await?,
                None => {
                    lookups
                        .lookup(&host.provider, provider.as_ref(), &host, recorded.as_ref())
                        .await?
                }
            };
            let m = found.ok_or_else(|| PlanError::Vanished {
                host: hp.host.clone(),
                machine: hp.machine.clone().unwrap_or_default(),
            })?;
            record(exec, &host, &m, false)?;
            Ok(Done::Adopted(m.id))
        }
        Action::Change | Action::Replace if !hp.rebuild => {
            Ok(Done::Skipped(if hp.action == Action::Replace {
                format!("needs a new machine; pass --replace {} to allow it", hp.host)
            } else {
                format!(
                    "cairn cannot change a machine in place yet; --replace {} rebuilds it",
                    hp.host
                )
            }))
        }
        Action::Change | Action::Replace => {
            let old_provider = exec.provider(&holder)?;
            let old = planned(lookups, &holder, old_provider.as_ref(), &host, recorded, hp).await?;
            if let Some(m) = &old {
                tracing::info!(machine = %m.id, "destroying the machine to replace it");
                old_provider.destroy(&host, m).await?;
            }
            let root = &exec.inventory.root;
            network::record(&exec.state, root, |s| forget_machine(s.host_mut(host.name.as_str())))?;
            let provider = exec.provider(&host.provider)?;
            let m = create(exec, &host, provider.as_ref()).await?;
            Ok(Done::Replaced { old: old.map(|m| m.id), new: m.id })
        }
        Action::Destroy => {
            let provider = exec.provider(&holder)?;
            let found = planned(lookups, &holder, provider.as_ref(), &host, recorded, hp).await?;
            if let Some(m) = &found {
                provider.destroy(&host, m).await?;
            }
            network::record(&exec.state, &exec.inventory.root, |s| {
                s.hosts.remove(host.name.as_str())
            })?;
            Ok(Done::Destroyed(found.map(|m| m.id)))
        }
    }
}

/// The machine the plan names, if the provider still has it as this host's. Never another
/// machine found by the host's name or labels: apply and destroy delete only what the user
/// saw in the plan.
async fn planned(
    lookups: &Lookups,
    block: &ProviderName,
    provider: &dyn Provider,
    host: &Host,
    recorded: Option<HostState>,
    hp: &HostPlan,
) -> Result<Option<Machine>, PlanError> {
    let Some(id) = hp.machine.as_deref() else { return Ok(None) };
    let pinned = pinned_state(recorded.as_ref(), id);
    match lookups.lookup(block, provider, host, Some(&pinned)).await {
        Ok(found) => Ok(found.filter(|m| m.id == id)),
        // The planned machine is gone; a stranger with the host's name is not its stand-in.
        Err(ProviderError::Unclaimed { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// State as it must be to look up the planned machine `id`.
fn pinned_state(recorded: Option<&HostState>, id: &str) -> HostState {
    let mut pinned = recorded.cloned().unwrap_or_default();
    if pinned.provider_id.as_deref() != Some(id) {
        // What state knows belongs to another machine (an imported server's own name).
        pinned.provider_data.clear();
        pinned.provider_id = Some(id.to_owned());
    }
    pinned
}

async fn create(
    exec: &Executor,
    host: &Host,
    provider: &dyn Provider,
) -> Result<Machine, PlanError> {
    let stock_keys = crate::repo::Repo::new(&exec.inventory.root).stock_keys_dir();
    let operator_key = exec
        .operator_key
        .clone()
        .ok_or_else(|| PlanError::NoOperatorKey { host: host.name.to_string() })?;
    let req = CreateRequest::for_host(provider.kind(), host, operator_key, &stock_keys)?;
    let m = provider.create(host, &req).await?;
    tracing::info!(machine = %m.id, "created");
    let desired = Recorded::desired(&exec.inventory, host);
    network::record(&exec.state, &exec.inventory.root, |s| {
        let h = s.host_mut(host.name.as_str());
        record_machine(h, &host.provider, &m, Some(&desired));
        pin_stock_key(h, &req);
    })?;
    Ok(m)
}

impl Executor {
    fn provider(&self, name: &ProviderName) -> Result<Arc<dyn Provider>, PlanError> {
        self.providers.get(name).cloned().ok_or_else(|| {
            invalid(
                name.as_str(),
                "no provider of that name is set up for this run",
                "this is a bug in cairn",
            )
        })
    }
}

fn block(inv: &Inventory, host: &str, label: &str) -> Result<ProviderName, PlanError> {
    ProviderName::new(recorded_block(label))
        .ok()
        .filter(|n| inv.providers.contains_key(n))
        .ok_or_else(|| {
            invalid(
                host,
                &format!("its machine is at provider `{label}`, which cairn.hcl no longer has"),
                "add the provider block back, then run the command again",
            )
        })
}

fn invalid(host: &str, message: &str, help: &str) -> PlanError {
    PlanError::Provider(ProviderError::Invalid {
        host: host.to_owned(),
        message: message.to_owned(),
        help: help.to_owned(),
    })
}

fn record(exec: &Executor, host: &Host, m: &Machine, fresh: bool) -> Result<(), PlanError> {
    let desired = Recorded::desired(&exec.inventory, host);
    network::record(&exec.state, &exec.inventory.root, |s| {
        let h = s.host_mut(host.name.as_str());
        record_machine(h, &host.provider, m, fresh.then_some(&desired));
    })?;
    Ok(())
}

/// Records `machine` as the host's: its id, address and attributes. `created`: the machine is
/// new, made from `desired` (attributes the provider does not report are taken from it; for
/// the machine state already records, from state).
/// Host keys and bootstrap progress of another machine are forgotten.
pub fn record_machine(
    h: &mut HostState,
    provider: &ProviderName,
    machine: &Machine,
    created: Option<&Recorded>,
) {
    let same_machine = created.is_none() && h.provider_id.as_deref() == Some(machine.id.as_str());
    // What state recorded of this same machine stays where the provider reports nothing
    // (qemu has no size or image): a re-run must not erase what it was created with.
    let known = if same_machine { Recorded::from_state(h) } else { None };
    if !same_machine {
        forget_machine(h);
    }
    h.provider = Some(provider.to_string());
    h.provider_id = Some(machine.id.clone());
    h.addresses = ssh_address(machine).into_iter().collect();
    h.network = machine.network.clone();
    let fallback = created.or(known.as_ref());
    let attr = |key: &str, before: Option<&String>| {
        machine.attributes.get(key).cloned().or_else(|| before.cloned())
    };
    h.size = attr("size", fallback.and_then(|d| d.size.as_ref()));
    h.image = attr("image", fallback.and_then(|d| d.image.as_ref()));
    h.location = attr("location", fallback.and_then(|d| d.location.as_ref()));
    for (k, v) in &machine.provider_data {
        h.provider_data.insert(k.clone(), v.clone());
    }
}

/// Pins the stock image's host key cairn injected into a machine just created: its first
/// connection expects that key, nothing is trusted on first use.
pub fn pin_stock_key(h: &mut HostState, req: &CreateRequest) {
    if let Some(key) = &req.stock_host_key {
        h.host_keys.insert(crate::state::KeyPhase::Stock, vec![key.public_line().to_owned()]);
    }
}

/// Forgets what belonged to the machine (not the host's own keys, which cairn generated).
fn forget_machine(h: &mut HostState) {
    h.provider_id = None;
    h.addresses.clear();
    h.network = Default::default();
    h.host_keys.clear();
    h.last_phase = None;
    h.bootstrap = Default::default();
    h.provider_data.clear();
}

/// `host:port`, `[v6]:port`; nothing when the provider gave no address.
fn ssh_address(m: &Machine) -> Option<String> {
    if m.ssh_address.is_empty() {
        None
    } else if m.ssh_address.contains(':') {
        Some(format!("[{}]:{}", m.ssh_address, m.ssh_port))
    } else {
        Some(format!("{}:{}", m.ssh_address, m.ssh_port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::MachineStatus;

    fn machine(id: &str, address: &str) -> Machine {
        Machine {
            id: id.into(),
            status: MachineStatus::Running,
            ssh_address: address.into(),
            ssh_port: 22,
            network: Default::default(),
            attributes: BTreeMap::new(),
            provider_data: BTreeMap::new(),
        }
    }

    fn created(size: &str) -> Recorded {
        Recorded {
            provider: None,
            provider_id: None,
            size: Some(size.into()),
            image: Some("debian-13".into()),
            location: None,
        }
    }

    #[test]
    fn a_rerun_on_the_same_machine_keeps_what_it_was_created_with() {
        let provider = ProviderName::new("local").unwrap();
        let mut h = HostState::default();
        record_machine(&mut h, &provider, &machine("vm-1", "10.0.0.5"), Some(&created("cx22")));
        let copied = crate::state::PhaseRecord {
            phase: crate::phase::Phase::Copy,
            at: time::OffsetDateTime::UNIX_EPOCH,
        };
        h.last_phase = Some(copied.clone());
        // The provider reports no size or image (qemu): what state had stays.
        record_machine(&mut h, &provider, &machine("vm-1", "10.0.0.5"), None);
        assert_eq!(h.size.as_deref(), Some("cx22"));
        assert_eq!(h.image.as_deref(), Some("debian-13"));
        assert_eq!(h.last_phase, Some(copied));
        // Another machine under the host: its progress and attributes are not this one's.
        record_machine(&mut h, &provider, &machine("vm-2", "10.0.0.6"), None);
        assert_eq!((h.size.as_deref(), h.last_phase.as_ref()), (None, None));
        assert_eq!(h.addresses, ["10.0.0.6:22"]);
    }

    #[test]
    fn an_ipv6_address_is_recorded_in_brackets() {
        let provider = ProviderName::new("cloud").unwrap();
        let mut h = HostState::default();
        record_machine(&mut h, &provider, &machine("42", "2001:db8::1"), Some(&created("cx22")));
        assert_eq!(h.addresses, ["[2001:db8::1]:22"]);
    }
}
