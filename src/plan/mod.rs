//! What `apply` would change, per host: the inventory (desired) against what the providers
//! report ([`refresh`]), or, with `--refresh=false`, against what state recorded. Both sides
//! take the shape of [`Recorded`]; the comparison and the rendering do not care where the
//! recorded side came from.
//!
//! A plan can be saved ([`file`]) and carried out later by [`apply`], which refuses it once
//! the inventory or state moved on.

use std::fmt::Write as _;

use owo_colors::OwoColorize;
use serde::{Deserialize, Serialize};

use crate::inventory::{Host, Inventory, ProviderName};
use crate::provider::Machine;
use crate::state::{HostState, StateData};

pub mod apply;
pub mod file;
pub mod import;
pub mod lookups;
pub mod refresh;

pub use refresh::{Observed, Seen};

/// What will happen to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// In the inventory, no machine yet.
    Create,
    /// The provider has a machine for the host that state does not record: record it.
    Adopt,
    /// The machine exists but differs from the inventory in what can change in place.
    Change,
    /// The machine differs in something that can only change by building it anew.
    Replace,
    /// A machine state knows of, gone from the inventory (or named by `cairn destroy`).
    Destroy,
}

impl Action {
    /// The action's name, as plan JSON and `--json` events spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Adopt => "adopt",
            Self::Change => "change",
            Self::Replace => "replace",
            Self::Destroy => "destroy",
        }
    }
    fn symbol(self) -> &'static str {
        match self {
            Self::Create => "+",
            Self::Adopt => "=",
            Self::Change => "~",
            Self::Replace => "-/+",
            Self::Destroy => "-",
        }
    }
    fn verb(self) -> &'static str {
        match self {
            Self::Create => "will be created",
            Self::Adopt => "will be adopted",
            Self::Change => "will be changed",
            Self::Replace => "must be replaced",
            Self::Destroy => "will be destroyed",
        }
    }
}

/// One attribute of a machine: its value before and after (`None`: unset / not yet known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrChange {
    pub attribute: String,
    pub old: Option<String>,
    pub new: Option<String>,
    /// The provider cannot change this in place: the machine is rebuilt.
    pub forces_replacement: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPlan {
    pub host: String,
    pub action: Action,
    /// The provider block that acts (`hcloud.cloud`).
    pub provider: String,
    /// The machine concerned: found at the provider, or recorded in state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Why, where the action alone does not say it (`deleted outside cairn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub changes: Vec<AttrChange>,
    /// For change and replace: the user allowed the machine to be rebuilt (`--replace`).
    #[serde(default)]
    pub rebuild: bool,
}

/// A host whose provider could not say what it has, or has a machine named like it that
/// cairn did not create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFailure {
    pub host: String,
    /// The error and its causes, one line.
    pub message: String,
    /// For a machine cairn did not create: the command that adopts it (`cairn import web1 42`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<String>,
}

impl HostFailure {
    /// The failure `seen` reports for `host`, if it is one.
    fn of(host: &str, seen: Option<&Seen>) -> Option<Self> {
        let (message, import) = match seen? {
            Seen::Failed { message } => (message.clone(), None),
            Seen::Unclaimed { message, import, .. } => (message.clone(), Some(import.clone())),
            Seen::Found { .. } | Seen::Missing { .. } => return None,
        };
        Some(Self { host: host.to_owned(), message, import })
    }
}

/// The facts about a machine that the plan compares: as the inventory wants them, as the
/// provider reports them, or as state recorded them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// `type.name` of the provider block (`hcloud.cloud`), or just the name if that is all
    /// state recorded.
    pub provider: Option<String>,
    pub provider_id: Option<String>,
    pub size: Option<String>,
    pub image: Option<String>,
    pub location: Option<String>,
}

impl Recorded {
    /// What state says about a machine; `None` if no machine was created for it.
    pub fn from_state(host: &HostState) -> Option<Self> {
        host.provider_id.as_ref()?;
        Some(Self {
            provider: host.provider.clone(),
            provider_id: host.provider_id.clone(),
            size: host.size.clone(),
            image: host.image.clone(),
            location: host.location.clone(),
        })
    }

    /// What a provider (`type.name`) reports about a machine.
    pub fn from_machine(provider: &str, machine: &Machine) -> Self {
        let attr = |k: &str| machine.attributes.get(k).cloned();
        Self {
            provider: Some(provider.to_owned()),
            provider_id: Some(machine.id.clone()),
            size: attr("size"),
            image: attr("image"),
            location: attr("location"),
        }
    }

    /// What the inventory asks for.
    pub fn desired(inv: &Inventory, host: &Host) -> Self {
        let provider = inv.provider_of(host);
        Self {
            provider: Some(format!("{}.{}", provider.kind, provider.name)),
            provider_id: None,
            size: host.size.clone(),
            image: host.image.clone(),
            location: host
                .location
                .clone()
                .or_else(|| provider.settings.location().map(str::to_owned)),
        }
    }

    fn attributes(&self) -> [(&'static str, Option<&str>, bool); 4] {
        [
            ("provider", self.provider.as_deref(), true),
            ("size", self.size.as_deref(), false),
            ("image", self.image.as_deref(), true),
            ("location", self.location.as_deref(), true),
        ]
    }
}

/// Compares a provider as recorded (`local` or `qemu.local`) with the desired `qemu.local`.
fn same_provider(recorded: &str, desired: &str) -> bool {
    recorded == desired || desired.split_once('.').is_some_and(|(_, name)| name == recorded)
}

/// The provider block a recorded provider names: state holds `cloud` or `hcloud.cloud`.
pub fn recorded_block(recorded: &str) -> &str {
    recorded.split_once('.').map_or(recorded, |(_, name)| name)
}

/// `type.name` of a provider block.
fn provider_label(inv: &Inventory, name: &ProviderName) -> String {
    inv.providers
        .get(name)
        .map(|p| format!("{}.{}", p.kind, p.name))
        .unwrap_or_else(|| name.to_string())
}

/// The plan for a set of hosts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Only hosts with something to do, inventory order first, then destroyed hosts by name.
    pub hosts: Vec<HostPlan>,
    /// Hosts whose provider could not be asked; nothing is planned for them.
    #[serde(default)]
    pub errors: Vec<HostFailure>,
    /// Whether the providers were asked (`false`: compared with state only).
    pub refreshed: bool,
    pub summary: Summary,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub adopt: usize,
    pub change: usize,
    pub replace: usize,
    pub destroy: usize,
}

/// What [`Plan::compute`] plans from.
pub struct Inputs<'a> {
    pub inventory: &'a Inventory,
    pub selected: &'a [&'a Host],
    pub state: &'a StateData,
    /// Also destroy machines state knows and the inventory no longer names (callers pass it
    /// when no host selection narrowed the run).
    pub include_orphans: bool,
    /// What the providers reported; `None` trusts state (`--refresh=false`).
    pub observed: Option<&'a Observed>,
    /// Hosts the user allows to be rebuilt (`--replace`).
    pub replace: &'a [String],
}

impl Plan {
    pub fn compute(input: &Inputs<'_>) -> Self {
        let inv = input.inventory;
        let mut hosts = Vec::new();
        let mut errors = Vec::new();
        for host in input.selected {
            let name = host.name.as_str();
            let desired = Recorded::desired(inv, host);
            let state = input.state.host(name);
            let seen = input.observed.and_then(|o| o.get(name));
            if let Some(failure) = HostFailure::of(name, seen) {
                errors.push(failure);
                continue;
            }
            let provider = desired.provider.clone().unwrap_or_default();
            if let Some(mut plan) = plan_host(name, &provider, &desired, state, seen) {
                plan.rebuild = matches!(plan.action, Action::Change | Action::Replace)
                    && input.replace.iter().any(|r| r == name);
                hosts.push(plan);
            }
        }
        if input.include_orphans {
            let known = inv.hosts_by_name();
            for (name, host_state) in &input.state.hosts {
                if known.contains_key(name.as_str()) {
                    continue;
                }
                let Some(recorded) = Recorded::from_state(host_state) else { continue };
                let seen = input.observed.and_then(|o| o.get(name));
                if let Some(failure) = HostFailure::of(name, seen) {
                    errors.push(failure);
                    continue;
                }
                let provider = recorded
                    .provider
                    .as_deref()
                    .map(|p| {
                        ProviderName::new(recorded_block(p))
                            .map(|n| provider_label(inv, &n))
                            .unwrap_or_else(|_| p.to_owned())
                    })
                    .unwrap_or_default();
                let mut plan = destroy_plan(name, provider, host_state, seen);
                plan.reason.get_or_insert_with(|| "the host is no longer in cairn.hcl".into());
                hosts.push(plan);
            }
        }
        let mut plan =
            Self { hosts, errors, refreshed: input.observed.is_some(), ..Self::default() };
        plan.summary = plan.count();
        plan
    }

    /// A plan that destroys the machines of `hosts` (`cairn destroy`): what state recorded,
    /// or what the providers found.
    pub fn destroy(
        inv: &Inventory,
        hosts: &[&Host],
        state: &StateData,
        observed: Option<&Observed>,
    ) -> Self {
        let mut plan = Self { refreshed: observed.is_some(), ..Self::default() };
        for host in hosts {
            let name = host.name.as_str();
            let seen = observed.and_then(|o| o.get(name));
            if let Some(failure) = HostFailure::of(name, seen) {
                plan.errors.push(failure);
                continue;
            }
            let provider = provider_label(inv, &host.provider);
            let recorded = state.host(name).cloned().unwrap_or_default();
            plan.hosts.push(destroy_plan(name, provider, &recorded, seen));
        }
        plan.summary = plan.count();
        plan
    }

    fn count(&self) -> Summary {
        let mut summary = Summary::default();
        for h in &self.hosts {
            match h.action {
                Action::Create => summary.create += 1,
                Action::Adopt => summary.adopt += 1,
                Action::Change => summary.change += 1,
                Action::Replace => summary.replace += 1,
                Action::Destroy => summary.destroy += 1,
            }
        }
        summary
    }

    pub fn has_changes(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// Whether apply would do anything (changes and replacements not allowed are left alone).
    pub fn has_work(&self) -> bool {
        self.hosts.iter().any(|h| match h.action {
            Action::Change | Action::Replace => h.rebuild,
            _ => true,
        })
    }

    /// The plan as it may be shown: values from `env()` and sensitive variables replaced
    /// by `(sensitive value)` (see [`crate::util::redact`]), as OpenTofu shows them.
    pub fn redacted(&self) -> Plan {
        use crate::util::redact;
        let mut plan = self.clone();
        for h in &mut plan.hosts {
            for c in &mut h.changes {
                for v in [&mut c.old, &mut c.new].into_iter().flatten() {
                    *v = redact::value(v);
                }
            }
            if let Some(r) = &mut h.reason {
                *r = redact::text(r);
            }
            if let Some(m) = &mut h.machine {
                *m = redact::value(m);
            }
        }
        for e in &mut plan.errors {
            e.message = redact::text(&e.message);
        }
        plan
    }

    /// The plan as a readable diff, OpenTofu style, ending in the summary line, redacted.
    pub fn render(&self, color: bool) -> String {
        self.redacted().render_shown(color)
    }

    fn render_shown(&self, color: bool) -> String {
        let mut out = String::new();
        if !self.has_changes() && self.errors.is_empty() {
            out.push_str("No changes. The machines match the inventory.\n");
            return out;
        }
        if self.has_changes() {
            out.push_str("cairn will perform the following actions:\n");
        }
        for h in &self.hosts {
            let sym = paint(h.action, h.action.symbol(), color);
            let _ = writeln!(out, "\n  {sym} host \"{}\" {}", h.host, h.action.verb());
            if let Some(reason) = &h.reason {
                let _ = writeln!(out, "      # {reason}");
            }
            if matches!(h.action, Action::Change | Action::Replace) {
                let note = if h.rebuild {
                    "the machine is destroyed and created anew (--replace): its disk is lost"
                        .to_owned()
                } else if h.action == Action::Replace {
                    format!("apply leaves it alone unless you pass --replace {}", h.host)
                } else {
                    format!(
                        "cairn cannot change a machine in place yet: --replace {} rebuilds it",
                        h.host
                    )
                };
                let _ = writeln!(out, "      # {note}");
            }
            let mut rows: Vec<(String, String)> = Vec::new();
            if h.action != Action::Create {
                if let Some(m) = &h.machine {
                    rows.push(("machine".into(), format!("{m} ({})", h.provider)));
                }
            }
            for c in &h.changes {
                let value = match (h.action, &c.old, &c.new) {
                    (Action::Change | Action::Replace | Action::Adopt, Some(old), Some(new)) => {
                        format!("{old} → {new}")
                    }
                    (_, Some(v), None) | (_, None, Some(v)) => v.clone(),
                    (_, _, _) => "(unset)".to_owned(),
                };
                let note = if c.forces_replacement { "  # forces replacement" } else { "" };
                rows.push((c.attribute.clone(), format!("{value}{note}")));
            }
            let width = rows.iter().map(|(a, _)| a.len()).max().unwrap_or(0);
            for (attribute, value) in rows {
                let _ = writeln!(
                    out,
                    "      {:width$}  {value}",
                    format!("{attribute}:"),
                    width = width + 1
                );
            }
        }
        for e in &self.errors {
            let sym = if color { "!".red().to_string() } else { "!".to_owned() };
            match &e.import {
                None => {
                    let _ = writeln!(
                        out,
                        "\n  {sym} host \"{}\" could not be refreshed (the error is below)",
                        e.host
                    );
                }
                Some(import) => {
                    let _ = writeln!(
                        out,
                        "\n  {sym} host \"{}\" is left alone: a machine named like it exists that \
                         cairn did not create\n      # if it is this host's machine, adopt it: {import}",
                        e.host
                    );
                }
            }
        }
        let s = self.summary;
        let mut line = format!("{} to create", s.create);
        if s.adopt > 0 {
            let _ = write!(line, ", {} to adopt", s.adopt);
        }
        let _ = write!(line, ", {} to change", s.change);
        if s.replace > 0 {
            let _ = write!(line, ", {} to replace", s.replace);
        }
        let _ = write!(line, ", {} to destroy", s.destroy);
        let _ = writeln!(out, "\nPlan: {line}.");
        let unclaimed = self.errors.iter().filter(|e| e.import.is_some()).count();
        let failed = self.errors.len() - unclaimed;
        let plural = |n: usize| if n == 1 { ("", "it") } else { ("s", "them") };
        if failed > 0 {
            let (s, them) = plural(failed);
            let _ = writeln!(
                out,
                "{failed} host{s} could not be refreshed; nothing is planned for {them}."
            );
        }
        if unclaimed > 0 {
            let (s, them) = plural(unclaimed);
            let _ = writeln!(
                out,
                "{unclaimed} host{s} met a machine cairn did not create; nothing is planned for {them}."
            );
        }
        out
    }
}

/// The plan for a host in the inventory, or `None` when its machine matches.
fn plan_host(
    name: &str,
    provider: &str,
    desired: &Recorded,
    state: Option<&HostState>,
    seen: Option<&Seen>,
) -> Option<HostPlan> {
    let recorded_state = state.and_then(Recorded::from_state);
    let recorded_id = recorded_state.as_ref().and_then(|r| r.provider_id.clone());
    let plan = |action, machine: Option<String>, reason: Option<String>, changes| HostPlan {
        host: name.to_owned(),
        action,
        provider: provider.to_owned(),
        machine,
        reason,
        changes,
        rebuild: false,
    };
    let (recorded, found_provider) = match seen {
        // Not refreshed: state is all there is.
        None => match recorded_state {
            Some(r) => (r, None),
            None => return Some(plan(Action::Create, None, None, creation(desired))),
        },
        Some(Seen::Missing { .. }) => {
            let reason = recorded_id.map(|id| {
                format!("its machine {id} was deleted outside cairn (state still records it)")
            });
            return Some(plan(Action::Create, None, reason, creation(desired)));
        }
        Some(Seen::Found { provider: found, machine }) => {
            (Recorded::from_machine(found, machine), Some(found.clone()))
        }
        Some(Seen::Failed { .. } | Seen::Unclaimed { .. }) => return None,
    };
    let changes = differences(desired, &recorded);
    let machine = recorded.provider_id.clone();
    if found_provider.is_some() && recorded.provider_id != recorded_id {
        let reason = match &recorded_id {
            Some(old) => format!(
                "state records machine {old}, which is gone; the provider has {} for this host: \
                 apply records it and leaves the machine as it is",
                machine.as_deref().unwrap_or("?")
            ),
            None => {
                "found at the provider, not recorded in state: apply records it as it is".into()
            }
        };
        return Some(plan(Action::Adopt, machine, Some(reason), changes));
    }
    if changes.is_empty() {
        return None;
    }
    let action =
        if changes.iter().any(|c| c.forces_replacement) { Action::Replace } else { Action::Change };
    Some(plan(action, machine, None, changes))
}

fn creation(desired: &Recorded) -> Vec<AttrChange> {
    desired
        .attributes()
        .into_iter()
        .filter_map(|(attribute, new, _)| {
            new.map(|v| AttrChange {
                attribute: attribute.to_owned(),
                old: None,
                new: Some(v.to_owned()),
                forces_replacement: false,
            })
        })
        .collect()
}

fn differences(desired: &Recorded, recorded: &Recorded) -> Vec<AttrChange> {
    let mut changes = Vec::new();
    for ((attribute, new, replaces), (_, old, _)) in
        desired.attributes().into_iter().zip(recorded.attributes())
    {
        // Only what both sides know is compared: an attribute the inventory leaves to the
        // provider's default, or that the other side does not report, is not a change.
        let (Some(new), Some(old)) = (new, old) else { continue };
        let same = if attribute == "provider" { same_provider(old, new) } else { old == new };
        if !same {
            changes.push(AttrChange {
                attribute: attribute.to_owned(),
                old: Some(old.to_owned()),
                new: Some(new.to_owned()),
                forces_replacement: replaces,
            });
        }
    }
    changes
}

/// Destroying what state recorded for `name` (and the provider found, when refreshed).
fn destroy_plan(name: &str, provider: String, state: &HostState, seen: Option<&Seen>) -> HostPlan {
    let recorded = match seen {
        Some(Seen::Found { machine, .. }) => Recorded::from_machine(&provider, machine),
        _ => Recorded::from_state(state).unwrap_or_default(),
    };
    let reason = match seen {
        Some(Seen::Missing { .. }) if state.provider_id.is_some() => {
            Some("its machine is already gone; only its state record is removed".to_owned())
        }
        Some(Seen::Missing { .. }) => Some("no machine exists; nothing to delete".to_owned()),
        _ => None,
    };
    let machine = match seen {
        Some(Seen::Missing { .. }) => None,
        _ => recorded.provider_id.clone(),
    };
    let changes =
        [("size", recorded.size), ("image", recorded.image), ("location", recorded.location)]
            .into_iter()
            .filter_map(|(attribute, old)| {
                old.map(|old| AttrChange {
                    attribute: attribute.to_owned(),
                    old: Some(old),
                    new: None,
                    forces_replacement: false,
                })
            })
            .collect();
    HostPlan {
        host: name.to_owned(),
        action: Action::Destroy,
        provider,
        machine,
        reason,
        changes,
        rebuild: false,
    }
}

fn paint(action: Action, s: &str, color: bool) -> String {
    if !color {
        return s.to_owned();
    }
    match action {
        Action::Create => s.green().to_string(),
        Action::Adopt => s.cyan().to_string(),
        Action::Change | Action::Replace => s.yellow().to_string(),
        Action::Destroy => s.red().to_string(),
    }
}

/// Everything that can go wrong planning, saving a plan, applying it or importing a machine.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum PlanError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Provider(#[from] crate::provider::ProviderError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] crate::state::StateError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Network(#[from] crate::gitops::network::NetworkError),

    #[error("cannot {what} the plan file {}", .path.display())]
    #[diagnostic(code(cairn::plan::file), help("{help}"))]
    File {
        path: std::path::PathBuf,
        what: &'static str,
        help: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{} is not a cairn plan: {reason}", .path.display())]
    #[diagnostic(
        code(cairn::plan::not_a_plan),
        help("make one with `cairn plan --out FILE`; cairn reads only plans written by the same version")
    )]
    NotAPlan { path: std::path::PathBuf, reason: String },

    #[error("the plan {} is stale: {why}", .path.display())]
    #[diagnostic(
        code(cairn::plan::stale),
        help("plan again (`cairn plan --out {}`), review it, then apply the new plan; nothing was changed", .path.display())
    )]
    Stale { path: std::path::PathBuf, why: String },

    #[error(
        "{host}: the plan creates a machine, but this run was given no operator key to put on it"
    )]
    #[diagnostic(
        code(cairn::plan::no_operator_key),
        help("this is a bug in cairn (only destroy runs without a key); nothing was created for {host}")
    )]
    NoOperatorKey { host: String },

    #[error("{failed} host(s) could not be refreshed; the plan is not saved")]
    #[diagnostic(
        code(cairn::plan::incomplete),
        help("fix what the errors above say, or leave those hosts out of the selection")
    )]
    Incomplete { failed: usize },

    #[error("`{host}` is not a host in {}", .inventory.display())]
    #[diagnostic(
        code(cairn::import::unknown_host),
        help(
            "add a `host \"{host}\" {{ ... }}` block first, naming the provider the machine is at"
        )
    )]
    ImportUnknownHost { host: String, inventory: std::path::PathBuf },

    #[error("{host} already has machine {recorded} recorded; refusing to import {id} over it")]
    #[diagnostic(
        code(cairn::import::already_recorded),
        help("`cairn destroy host {host}` deletes the recorded machine first; or import {id} for another host")
    )]
    ImportConflict { host: String, recorded: String, id: String },

    #[error("{provider} has no machine {id} (for {host})")]
    #[diagnostic(
        code(cairn::import::not_found),
        help("check the id at the provider and that host {host} names the provider the machine is at")
    )]
    ImportNotFound { host: String, provider: String, id: String },

    #[error("{host}: the machine {machine} the plan adopts is gone")]
    #[diagnostic(
        code(cairn::apply::gone),
        help("run `cairn plan` again: the provider changed since")
    )]
    Vanished { host: String, machine: String },

    /// A bug in cairn: the host's task panicked. The other hosts went on.
    #[error("{host}: cairn panicked: {message}")]
    #[diagnostic(
        code(cairn::apply::panic),
        help("this is a bug in cairn, please report it; run `cairn plan` to see what state records of {host} now")
    )]
    Panicked { host: String, message: String },
}

/// An error and its causes on one line (for plan output and JSON).
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = s.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::provider::MachineStatus;

    fn rec(provider: &str, size: &str) -> Recorded {
        Recorded {
            provider: Some(provider.into()),
            provider_id: Some("1".into()),
            size: Some(size.into()),
            image: None,
            location: None,
        }
    }

    fn state(provider: &str, id: &str, size: &str) -> HostState {
        HostState {
            provider: Some(provider.into()),
            provider_id: Some(id.into()),
            size: Some(size.into()),
            ..HostState::default()
        }
    }

    fn machine(id: &str, size: &str) -> Machine {
        Machine {
            id: id.into(),
            status: MachineStatus::Running,
            ssh_address: String::new(),
            ssh_port: 22,
            network: Default::default(),
            attributes: BTreeMap::from([("size".to_owned(), size.to_owned())]),
            provider_data: BTreeMap::new(),
        }
    }

    #[test]
    fn unknown_sides_are_not_changes_and_provider_names_match_either_form() {
        let desired = Recorded { image: Some("debian-12".into()), ..rec("hcloud.cloud", "cx22") };
        let d = |recorded: &Recorded| differences(&desired, recorded);
        assert_eq!(d(&rec("cloud", "cx22")), vec![]);
        let c = d(&rec("hcloud.cloud", "cx32"));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].attribute, "size");
        assert!(!c[0].forces_replacement);
        assert!(d(&rec("aws.other", "cx22"))[0].forces_replacement);
    }

    #[test]
    fn a_host_without_a_machine_is_created() {
        let p = plan_host("web1", "qemu.local", &rec("qemu.local", "small"), None, None).unwrap();
        assert_eq!(p.action, Action::Create);
        assert_eq!(
            p.changes.iter().map(|c| c.attribute.as_str()).collect::<Vec<_>>(),
            ["provider", "size"]
        );
    }

    #[test]
    fn refreshed_hosts_are_created_adopted_or_replaced() {
        let desired = rec("hcloud.cloud", "cx22");
        let recorded = state("cloud", "7", "cx22");
        let missing = Seen::Missing { provider: "hcloud.cloud".into() };
        let p =
            plan_host("web1", "hcloud.cloud", &desired, Some(&recorded), Some(&missing)).unwrap();
        assert_eq!(p.action, Action::Create);
        assert!(p.reason.unwrap().contains("machine 7 was deleted outside cairn"));

        let found = |id: &str, size: &str| Seen::Found {
            provider: "hcloud.cloud".into(),
            machine: machine(id, size),
        };
        let same = found("7", "cx22");
        assert_eq!(plan_host("web1", "hcloud.cloud", &desired, Some(&recorded), Some(&same)), None);
        let other = found("9", "cx22");
        let p = plan_host("web1", "hcloud.cloud", &desired, None, Some(&other)).unwrap();
        assert_eq!((p.action, p.machine.as_deref()), (Action::Adopt, Some("9")));
        let resized = found("7", "cx32");
        let p =
            plan_host("web1", "hcloud.cloud", &desired, Some(&recorded), Some(&resized)).unwrap();
        assert_eq!(p.action, Action::Change);
        let moved = Seen::Found {
            provider: "hcloud.cloud".into(),
            machine: Machine {
                attributes: BTreeMap::from([("location".to_owned(), "nbg1".to_owned())]),
                ..machine("7", "cx22")
            },
        };
        let desired = Recorded { location: Some("fsn1".into()), ..desired };
        let p = plan_host("web1", "hcloud.cloud", &desired, Some(&recorded), Some(&moved)).unwrap();
        assert_eq!(p.action, Action::Replace);
    }
}
