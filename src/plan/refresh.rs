//! Asking the providers what they have: one lookup per host (by the id state recorded, else
//! by the host's name and cairn's labels), a bounded number at a time. A provider that fails
//! for one host fails that host only.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::Instrument;

use super::{Inputs, Plan};
use crate::inventory::{Host, Inventory, ProviderName, SourceSpan};
use crate::provider::{Machine, Provider, ProviderError};
use crate::state::{HostState, StateData};

/// How many hosts are looked up at once by default.
pub const DEFAULT_PARALLEL: usize = 8;

/// What the provider said about one host.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// The provider (`type.name`) has this machine for the host.
    Found { provider: String, machine: Machine },
    /// The provider has no machine for the host.
    Missing { provider: String },
    /// The provider could not be asked; the error is rendered separately.
    Failed { message: String },
    /// The provider has machines named like the host that cairn did not create: nothing is
    /// planned for the host until a user adopts one (`import`); the error is rendered
    /// separately.
    Unclaimed { provider: String, message: String, import: String },
}

/// By host name.
pub type Observed = BTreeMap<String, Seen>;

/// One host to ask about, and which provider block to ask.
pub struct Target {
    pub host: Host,
    pub state: Option<HostState>,
    pub provider: ProviderName,
}

/// The result of a refresh: what was seen, and the errors in full for rendering.
#[derive(Default)]
pub struct Refresh {
    pub observed: Observed,
    pub failures: Vec<ProviderError>,
}

/// The hosts to look up: every selected host, at the provider its machine was recorded at
/// (else its own), and with `include_orphans` every machine state knows of whose host left
/// the inventory. Orphans whose provider block is gone too cannot be asked: they come back as
/// failures.
pub fn targets(
    inv: &Inventory,
    selected: &[&Host],
    state: &StateData,
    include_orphans: bool,
) -> (Vec<Target>, Vec<ProviderError>) {
    let recorded_block = |s: &HostState| {
        s.provider
            .as_deref()
            .and_then(|p| ProviderName::new(super::recorded_block(p)).ok())
            .filter(|p| inv.providers.contains_key(p))
    };
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for host in selected {
        let host_state = state.host(host.name.as_str()).cloned();
        let provider = host_state
            .as_ref()
            .filter(|s| s.provider_id.is_some())
            .and_then(recorded_block)
            .unwrap_or_else(|| host.provider.clone());
        out.push(Target { host: (*host).clone(), state: host_state, provider });
    }
    if include_orphans {
        for (name, host_state) in &state.hosts {
            if inv.host(name).is_some() || host_state.provider_id.is_none() {
                continue;
            }
            match recorded_block(host_state) {
                Some(provider) => match orphan_host(inv, name, &provider) {
                    Some(host) => {
                        out.push(Target { host, state: Some(host_state.clone()), provider })
                    }
                    None => continue,
                },
                None => failures.push(ProviderError::Invalid {
                    host: name.clone(),
                    message: format!(
                        "the host left cairn.hcl and so did its provider `{}`: cairn cannot ask \
                         about (or delete) its machine {}",
                        host_state.provider.as_deref().unwrap_or("?"),
                        host_state.provider_id.as_deref().unwrap_or("?")
                    ),
                    help: format!(
                        "add the provider block back to let cairn destroy the machine, or delete \
                         it yourself and remove hosts.{name} from the state"
                    ),
                }),
            }
        }
    }
    (out, failures)
}

/// A stand-in for a host that left the inventory, enough to look up and delete its machine.
pub fn orphan_host(inv: &Inventory, name: &str, provider: &ProviderName) -> Option<Host> {
    Some(Host {
        name: crate::inventory::HostName::new(name).ok()?,
        provider: provider.clone(),
        flake: None,
        size: None,
        image: None,
        image_checksum: None,
        location: None,
        tags: Vec::new(),
        disk_layout: None,
        secrets: Vec::new(),
        ssh: Default::default(),
        address: None,
        health_checks: Vec::new(),
        timeouts: Default::default(),
        install: Default::default(),
        vm: Default::default(),
        seed: Default::default(),
        span: SourceSpan { file: inv.path.clone(), offset: 0, len: 0, line: 1, column: 1 },
    })
}

/// What to plan, for [`plan`].
pub struct Request<'a> {
    pub selected: &'a [&'a Host],
    pub state: &'a StateData,
    pub include_orphans: bool,
    pub refresh: bool,
    pub replace: &'a [String],
    pub parallel: usize,
}

/// Plans, asking the providers first unless `refresh` is off. Hosts whose provider failed
/// come back as errors to render; the plan covers the others.
pub async fn plan(
    inv: &Inventory,
    req: &Request<'_>,
) -> Result<(Plan, Vec<ProviderError>), ProviderError> {
    let mut failures = Vec::new();
    let observed = if req.refresh {
        let (targets, orphans_failed) = targets(inv, req.selected, req.state, req.include_orphans);
        let providers =
            crate::provider::for_blocks(inv, targets.iter().map(|t| t.provider.clone()))?;
        let mut refreshed = refresh(inv, targets, &providers, req.parallel).await;
        refreshed.add_failures(orphans_failed);
        failures = refreshed.failures;
        Some(refreshed.observed)
    } else {
        None
    };
    let plan = Plan::compute(&Inputs {
        inventory: inv,
        selected: req.selected,
        state: req.state,
        include_orphans: req.include_orphans,
        observed: observed.as_ref(),
        replace: req.replace,
    });
    Ok((plan, failures))
}

/// Looks up every target, at most `parallel` at a time.
pub async fn refresh(
    inv: &Inventory,
    targets: Vec<Target>,
    providers: &BTreeMap<ProviderName, Arc<dyn Provider>>,
    parallel: usize,
) -> Refresh {
    let labelled: Vec<(Target, Arc<dyn Provider>, String)> = targets
        .into_iter()
        .filter_map(|t| {
            let provider = providers.get(&t.provider)?.clone();
            let label = inv
                .providers
                .get(&t.provider)
                .map(|b| format!("{}.{}", b.kind, b.name))
                .unwrap_or_else(|| t.provider.to_string());
            Some((t, provider, label))
        })
        .collect();
    let total = labelled.len();
    let (listed, labelled) = list_where_possible(labelled).await;
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(listed.len()));
    crate::ui::progress::count("asked", listed.len(), total, "hosts");
    let names: Vec<(String, String)> =
        labelled.iter().map(|(t, _, label)| (t.host.name.to_string(), label.clone())).collect();
    let results =
        crate::util::parallel::bounded(labelled, parallel, move |(t, provider, label)| {
            let span = tracing::debug_span!("refresh", host = %t.host.name);
            let asked = asked.clone();
            async move {
                let found = provider.lookup(&t.host, t.state.as_ref()).await;
                let done = asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                crate::ui::progress::count("asked", done, total, "hosts");
                (t.host.name.to_string(), label, found)
            }
            .instrument(span)
        })
        .await;
    let mut refresh = Refresh::default();
    let results = names.into_iter().zip(results).map(|((host, label), r)| {
        r.unwrap_or_else(|p| {
            let message = format!("looking the machine up panicked: {}", p.message);
            let help = "this is a bug in cairn, please report it".to_owned();
            (host.clone(), label, Err(ProviderError::Invalid { host, message, help }))
        })
    });
    for (host, provider, found) in listed.into_iter().chain(results) {
        let seen = match found {
            Ok(Some(machine)) => Seen::Found { provider, machine },
            Ok(None) => Seen::Missing { provider },
            Err(e) => {
                let message = super::one_line(&e);
                let seen = match &e {
                    ProviderError::Unclaimed { import, .. } => {
                        Seen::Unclaimed { provider, message, import: import.clone() }
                    }
                    _ => Seen::Failed { message },
                };
                refresh.failures.push(e);
                seen
            }
        };
        refresh.observed.insert(host, seen);
    }
    refresh
}

/// From this many hosts at one provider on, one paged list of its machines is cheaper than a
/// request or two per host.
pub(super) const LIST_FROM: usize = 3;

type Looked = (String, String, Result<Option<Machine>, ProviderError>);
type ToAsk = (Target, Arc<dyn Provider>, String);

/// Asks each provider with several targets for all its machines at once
/// ([`Provider::lookup_many`]); returns what that explained and the targets left to look up
/// one by one (providers that cannot list, or whose list failed).
async fn list_where_possible(targets: Vec<ToAsk>) -> (Vec<Looked>, Vec<ToAsk>) {
    let mut groups: Vec<(String, Arc<dyn Provider>, Vec<Target>)> = Vec::new();
    for (t, provider, label) in targets {
        match groups.iter_mut().find(|(l, _, _)| *l == label) {
            Some((_, _, group)) => group.push(t),
            None => groups.push((label, provider, vec![t])),
        }
    }
    let mut listed = Vec::new();
    let mut rest = Vec::new();
    for (label, provider, group) in groups {
        if group.len() >= LIST_FROM {
            let hosts: Vec<(Host, Option<HostState>)> =
                group.iter().map(|t| (t.host.clone(), t.state.clone())).collect();
            match provider.lookup_many(&hosts).await {
                Ok(Some(found)) if found.len() == group.len() => {
                    for (t, r) in group.into_iter().zip(found) {
                        listed.push((t.host.name.to_string(), label.clone(), r));
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    provider = %label,
                    "listing the machines failed ({}); asking host by host",
                    super::one_line(&e)
                ),
            }
        }
        rest.extend(group.into_iter().map(|t| (t, provider.clone(), label.clone())));
    }
    (listed, rest)
}

impl Refresh {
    /// Adds failures found before asking (orphans without a provider).
    pub fn add_failures(&mut self, failures: Vec<ProviderError>) {
        for e in failures {
            let host = match &e {
                ProviderError::Invalid { host, .. } => host.clone(),
                _ => continue,
            };
            self.observed.insert(host, Seen::Failed { message: super::one_line(&e) });
            self.failures.push(e);
        }
    }
}
