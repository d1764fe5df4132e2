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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::inventory::{load_str, Inventory, LoadOptions, ProviderKind};
    use crate::provider::{CreateRequest, MachineStatus, PowerAction};

    /// Answers `lookup` with `one-HOST` and `lookup_many` with `many-HOST`, counting calls.
    #[derive(Default)]
    struct Counting {
        lists: bool,
        one: AtomicUsize,
        many: AtomicUsize,
    }

    fn machine(id: String) -> Machine {
        Machine {
            id,
            status: MachineStatus::Running,
            ssh_address: String::new(),
            ssh_port: 22,
            network: Default::default(),
            attributes: BTreeMap::new(),
            provider_data: BTreeMap::new(),
        }
    }

    fn refused(host: &Host) -> ProviderError {
        ProviderError::Invalid {
            host: host.name.to_string(),
            message: "no".into(),
            help: "".into(),
        }
    }

    #[async_trait::async_trait]
    impl Provider for Counting {
        fn kind(&self) -> ProviderKind {
            ProviderKind::Existing
        }
        async fn lookup(&self, host: &Host, _: Option<&HostState>) -> Answer {
            self.one.fetch_add(1, Ordering::SeqCst);
            Ok(Some(machine(format!("one-{}", host.name))))
        }
        async fn lookup_many(
            &self,
            hosts: &[(Host, Option<HostState>)],
        ) -> Result<Option<Vec<Answer>>, ProviderError> {
            self.many.fetch_add(1, Ordering::SeqCst);
            Ok(self.lists.then(|| {
                hosts.iter().map(|(h, _)| Ok(Some(machine(format!("many-{}", h.name))))).collect()
            }))
        }
        async fn create(&self, host: &Host, _: &CreateRequest) -> Result<Machine, ProviderError> {
            Err(refused(host))
        }
        async fn destroy(&self, host: &Host, _: &Machine) -> Result<(), ProviderError> {
            Err(refused(host))
        }
        async fn power(
            &self,
            host: &Host,
            _: &Machine,
            _: PowerAction,
        ) -> Result<(), ProviderError> {
            Err(refused(host))
        }
    }

    fn fleet(count: usize) -> Inventory {
        let mut src = String::from("provider \"existing\" \"own\" {}\ndefaults {\n  provider = \"own\"\n  address = \"192.0.2.1\"\n}\n");
        for i in 1..=count {
            src.push_str(&format!("host \"web{i}\" {{}}\n"));
        }
        let opts = LoadOptions { path: "cairn.hcl".into(), ..Default::default() };
        load_str(&opts, src).expect("fleet loads")
    }

    /// Looks up every host of `inv` (and `extra` hosts not part of the batch) through
    /// lookups built for the first `batched` hosts; the machine ids found.
    async fn run(provider: Arc<Counting>, inv: &Inventory, batched: usize) -> Vec<String> {
        let block = ProviderName::new("own").unwrap();
        let hosts: Vec<Host> = inv.hosts.clone();
        let asks = hosts[..batched]
            .iter()
            .map(|h| (block.clone(), provider.clone() as Arc<dyn Provider>, h.clone(), None))
            .collect();
        let lookups = Lookups::new(asks);
        let mut out = Vec::new();
        for h in &hosts {
            let found = lookups.lookup(&block, provider.as_ref(), h, None).await;
            out.push(found.unwrap().unwrap().id);
        }
        out
    }

    #[tokio::test]
    async fn a_block_with_several_hosts_is_listed_once_and_each_answer_used_once() {
        let inv = fleet(5);
        let provider = Arc::new(Counting { lists: true, ..Default::default() });
        let ids = run(provider.clone(), &inv, 4).await;
        // The fifth host is not part of the batch: asked alone.
        assert_eq!(ids.iter().filter(|id| id.starts_with("many-")).count(), 4, "{ids:?}");
        assert_eq!(ids.iter().filter(|id| id.starts_with("one-")).count(), 1, "{ids:?}");
        assert_eq!(ids, ["many-web1", "many-web2", "many-web3", "many-web4", "one-web5"]);
        assert_eq!(provider.many.load(Ordering::SeqCst), 1);
        assert_eq!(provider.one.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn few_hosts_or_a_provider_that_cannot_list_are_asked_one_by_one() {
        let inv = fleet(2);
        let provider = Arc::new(Counting { lists: true, ..Default::default() });
        assert_eq!(run(provider.clone(), &inv, 2).await, ["one-web1", "one-web2"]);
        assert_eq!(provider.many.load(Ordering::SeqCst), 0);

        let inv = fleet(4);
        let provider = Arc::new(Counting::default());
        let ids = run(provider.clone(), &inv, 4).await;
        assert!(ids.iter().all(|id| id.starts_with("one-")), "{ids:?}");
        // Asked to list once; after its no, nobody asks again.
        assert_eq!(provider.many.load(Ordering::SeqCst), 1);
        assert_eq!(provider.one.load(Ordering::SeqCst), 4);
    }
}
