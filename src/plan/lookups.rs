//! The lookups `apply` and `destroy` make right before acting, asked in batches: one
//! [`Provider::lookup_many`] per provider block for every host of the plan still waiting,
//! instead of a request or two per host. Each host's answer is what [`Provider::lookup`]
//! would have said (the same ownership decisions: machines cairn did not make are reported,
//! never taken), and it is used once.
//!
//! Fresh enough to act on: the batch is asked after the user confirmed the plan, with the
//! state lock held for the whole run (no other cairn run creates or deletes these hosts'
//! machines meanwhile), by the first host task that needs it. A destructive action then
//! deletes by the machine's id, which neither Hetzner Cloud nor EC2 hands to another machine,
//! so what the list showed as the host's machine stays that machine until it is deleted. A
//! re-check by id per machine would only catch a person relabelling a machine during the
//! run. To bound that window anyway, an answer older than [`FRESH_FOR`] is not used: the
//! hosts still waiting are listed again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::inventory::{Host, ProviderName};
use crate::provider::{Machine, Provider, ProviderError};
use crate::state::HostState;

/// How long a listed answer may be acted on; older ones are asked again (in one list).
pub const FRESH_FOR: Duration = Duration::from_secs(60);

type Answer = Result<Option<Machine>, ProviderError>;

/// One host to look up: the provider block to ask (and its provider), the host, and the state
/// to look it up with.
pub type Ask = (ProviderName, Arc<dyn Provider>, Host, Option<HostState>);

/// The hosts to look up, per provider block, and what the providers said.
#[derive(Default)]
pub struct Lookups {
    groups: BTreeMap<ProviderName, Mutex<Group>>,
}

struct Group {
    provider: Arc<dyn Provider>,
    /// Hosts not answered yet: their host and the state to look up with.
    waiting: BTreeMap<String, (Host, Option<HostState>)>,
    answers: BTreeMap<String, Answer>,
    /// When the answers were asked for (before the list's first request).
    asked_at: Option<Instant>,
    /// The provider cannot list, or its list failed: host by host from now on.
    one_by_one: bool,
}

impl Lookups {
    /// Lookups for these hosts (`block`: the provider block to ask), a group per block.
    pub fn new(asks: Vec<Ask>) -> Self {
        let mut groups: BTreeMap<ProviderName, Mutex<Group>> = BTreeMap::new();
        for (block, provider, host, state) in asks {
            let group = groups.entry(block).or_insert_with(|| {
                Mutex::new(Group {
                    provider,
                    waiting: BTreeMap::new(),
                    answers: BTreeMap::new(),
                    asked_at: None,
                    one_by_one: false,
                })
            });
            group.get_mut().waiting.insert(host.name.to_string(), (host, state));
        }
        Self { groups }
    }

    /// `host`'s machine at `block`, as `provider.lookup(host, state)` finds it: from the
    /// block's batch when the host is part of one, else asked alone.
    pub async fn lookup(
        &self,
        block: &ProviderName,
        provider: &dyn Provider,
        host: &Host,
        state: Option<&HostState>,
    ) -> Answer {
        let name = host.name.as_str();
        if let Some(group) = self.groups.get(block) {
            let mut group = group.lock().await;
            if let Some(ask) = group.waiting.remove(name) {
                if let Some(answer) = group.answer(ask, name).await {
                    return answer;
                }
            }
        }
        provider.lookup(host, state).await
    }
}

impl Group {
    /// The listed answer for `ask` (taken off the waiting list), listing the block's
    /// waiting hosts first if there is no fresh answer; `None`: look it up alone.
    async fn answer(&mut self, ask: (Host, Option<HostState>), name: &str) -> Option<Answer> {
        if self.asked_at.is_some_and(|at| at.elapsed() > FRESH_FOR) {
            tracing::debug!("the listed machines are older than {FRESH_FOR:?}; listing again");
            self.answers.clear();
            self.asked_at = None;
        }
        if self.asked_at.is_none() && !self.one_by_one {
            let mut hosts = vec![ask];
            hosts.extend(self.waiting.values().cloned());
            if hosts.len() < super::refresh::LIST_FROM {
                return None;
            }
            let asked_at = Instant::now();
            match self.provider.lookup_many(&hosts).await {
                Ok(Some(found)) if found.len() == hosts.len() => {
                    self.answers =
                        hosts.iter().map(|(h, _)| h.name.to_string()).zip(found).collect();
                    self.asked_at = Some(asked_at);
                }
                Ok(_) => self.one_by_one = true,
                Err(e) => {
                    tracing::warn!(
                        "listing the machines failed ({}); asking host by host",
                        super::one_line(&e)
                    );
                    self.one_by_one = true;
                }
            }
        }
        self.answers.remove(name)
    }
}
