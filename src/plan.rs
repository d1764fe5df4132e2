//! What `apply` and `bootstrap` would change, per host: the inventory (desired) against what
//! state recorded. A provider refresh will later replace the recorded side with what the
//! provider reports ([`Recorded`] is that seam); the comparison and rendering stay the same.

use std::fmt::Write as _;

use owo_colors::OwoColorize;
use serde::Serialize;

use crate::inventory::{Host, Inventory};
use crate::state::{HostState, StateData};

/// What will happen to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// In the inventory, no machine yet.
    Create,
    /// The machine exists but differs from the inventory.
    Change,
    /// A machine state knows of, gone from the inventory.
    Destroy,
}

impl Action {
    fn symbol(self) -> &'static str {
        match self {
            Self::Create => "+",
            Self::Change => "~",
            Self::Destroy => "-",
        }
    }
    fn verb(self) -> &'static str {
        match self {
            Self::Create => "will be created",
            Self::Change => "will be changed",
            Self::Destroy => "will be destroyed",
        }
    }
}

/// One attribute of a machine: its value before and after (`None`: unset / not yet known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttrChange {
    pub attribute: &'static str,
    pub old: Option<String>,
    pub new: Option<String>,
    /// The provider cannot change this in place: the machine is rebuilt.
    pub forces_replacement: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPlan {
    pub host: String,
    pub action: Action,
    pub changes: Vec<AttrChange>,
}

/// The facts about a machine that the plan compares: as the inventory wants them, or as
/// they were recorded (today: state; later: a provider refresh).
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

    /// What the inventory asks for.
    pub fn desired(inv: &Inventory, host: &Host) -> Self {
        let provider = inv.provider_of(host);
        Self {
            provider: Some(format!("{}.{}", provider.kind, provider.name)),
            provider_id: None,
            size: host.size.clone(),
            image: host.image.clone(),
            location: host.location.clone().or_else(|| {
                provider.settings.get("location").and_then(|v| v.as_str()).map(str::to_owned)
            }),
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

/// The plan for a set of hosts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Only hosts with something to do, inventory order first, then destroyed hosts by name.
    pub hosts: Vec<HostPlan>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub change: usize,
    pub destroy: usize,
}

impl Plan {
    /// Plans `selected` hosts of `inv` against `state`. With `include_orphans`, hosts that
    /// state knows and the inventory no longer names are destroyed (callers pass it when no
    /// host selection narrowed the run).
    pub fn compute(
        inv: &Inventory,
        selected: &[&Host],
        state: &StateData,
        include_orphans: bool,
    ) -> Self {
        let mut hosts = Vec::new();
        for host in selected {
            let desired = Recorded::desired(inv, host);
            let recorded = state.host(host.name.as_str()).and_then(Recorded::from_state);
            if let Some(plan) = plan_host(host.name.as_str(), &desired, recorded.as_ref()) {
                hosts.push(plan);
            }
        }
        if include_orphans {
            for (name, host_state) in &state.hosts {
                if inv.host(name).is_some() {
                    continue;
                }
                let Some(recorded) = Recorded::from_state(host_state) else { continue };
                let changes =
                    [("provider", recorded.provider), ("provider_id", recorded.provider_id)]
                        .into_iter()
                        .chain([
                            ("size", recorded.size),
                            ("image", recorded.image),
                            ("location", recorded.location),
                        ])
                        .filter_map(|(attribute, old)| {
                            old.map(|old| AttrChange {
                                attribute,
                                old: Some(old),
                                new: None,
                                forces_replacement: false,
                            })
                        })
                        .collect();
                hosts.push(HostPlan { host: name.clone(), action: Action::Destroy, changes });
            }
        }
        let mut summary = Summary::default();
        for h in &hosts {
            match h.action {
                Action::Create => summary.create += 1,
                Action::Change => summary.change += 1,
                Action::Destroy => summary.destroy += 1,
            }
        }
        Self { hosts, summary }
    }

    pub fn has_changes(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// The plan as a readable diff, OpenTofu style, ending in the summary line.
    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        if !self.has_changes() {
            out.push_str("No changes. The machines match the inventory.\n");
            return out;
        }
        out.push_str("cairn will perform the following actions:\n");
        for h in &self.hosts {
            let sym = paint(h.action, h.action.symbol(), color);
            let _ = writeln!(out, "\n  {sym} host \"{}\" {}", h.host, h.action.verb());
            let width = h.changes.iter().map(|c| c.attribute.len()).max().unwrap_or(0);
            for c in &h.changes {
                let value = match (h.action, &c.old, &c.new) {
                    (Action::Change, old, new) => format!(
                        "{} → {}",
                        old.as_deref().unwrap_or("(unset)"),
                        new.as_deref().unwrap_or("(unset)")
                    ),
                    (_, Some(v), None) | (_, None, Some(v)) => v.clone(),
                    (_, _, _) => "(unset)".to_owned(),
                };
                let note = if c.forces_replacement { "  # forces replacement" } else { "" };
                let _ = writeln!(
                    out,
                    "      {:width$}  {value}{note}",
                    format!("{}:", c.attribute),
                    width = width + 1
                );
            }
        }
        let s = self.summary;
        let _ = writeln!(
            out,
            "\nPlan: {} to create, {} to change, {} to destroy.",
            s.create, s.change, s.destroy
        );
        out
    }
}

fn plan_host(name: &str, desired: &Recorded, recorded: Option<&Recorded>) -> Option<HostPlan> {
    let Some(recorded) = recorded else {
        let changes = desired
            .attributes()
            .into_iter()
            .filter_map(|(attribute, new, _)| {
                new.map(|v| AttrChange {
                    attribute,
                    old: None,
                    new: Some(v.to_owned()),
                    forces_replacement: false,
                })
            })
            .collect();
        return Some(HostPlan { host: name.to_owned(), action: Action::Create, changes });
    };
    let mut changes = Vec::new();
    for ((attribute, new, replaces), (_, old, _)) in
        desired.attributes().into_iter().zip(recorded.attributes())
    {
        // Only what both sides know is compared: an attribute the inventory leaves to the
        // provider's default, or that state never recorded, is not a change.
        let (Some(new), Some(old)) = (new, old) else { continue };
        let same = if attribute == "provider" { same_provider(old, new) } else { old == new };
        if !same {
            changes.push(AttrChange {
                attribute,
                old: Some(old.to_owned()),
                new: Some(new.to_owned()),
                forces_replacement: replaces,
            });
        }
    }
    (!changes.is_empty()).then(|| HostPlan {
        host: name.to_owned(),
        action: Action::Change,
        changes,
    })
}

fn paint(action: Action, s: &str, color: bool) -> String {
    if !color {
        return s.to_owned();
    }
    match action {
        Action::Create => s.green().to_string(),
        Action::Change => s.yellow().to_string(),
        Action::Destroy => s.red().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(provider: &str, size: &str) -> Recorded {
        Recorded {
            provider: Some(provider.into()),
            provider_id: Some("1".into()),
            size: Some(size.into()),
            image: None,
            location: None,
        }
    }

    #[test]
    fn unknown_sides_are_not_changes_and_provider_names_match_either_form() {
        let desired = Recorded { image: Some("debian-12".into()), ..rec("hcloud.cloud", "cx22") };
        assert_eq!(plan_host("web1", &desired, Some(&rec("cloud", "cx22"))), None);
        let p = plan_host("web1", &desired, Some(&rec("hcloud.cloud", "cx32"))).unwrap();
        assert_eq!(p.action, Action::Change);
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].attribute, "size");
        assert!(!p.changes[0].forces_replacement);
        let p = plan_host("web1", &desired, Some(&rec("aws.other", "cx22"))).unwrap();
        assert!(p.changes[0].forces_replacement);
    }

    #[test]
    fn a_host_without_a_machine_is_created() {
        let p = plan_host("web1", &rec("qemu.local", "small"), None).unwrap();
        assert_eq!(p.action, Action::Create);
        assert_eq!(p.changes.iter().map(|c| c.attribute).collect::<Vec<_>>(), ["provider", "size"]);
    }
}
