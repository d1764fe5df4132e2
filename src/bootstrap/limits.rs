//! How long one host's run may wait and how long each remote command may run, resolved per
//! host: `--timeout`, else the inventory's `timeouts` (host, provider, defaults), else
//! cairn's defaults. Every remote command runs under a limit: inside a wait, what is left of
//! the wait's deadline; otherwise its phase's command budget.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::inventory::{Budget, Limit, Timeouts, Wait};
use crate::phase::Phase;
use crate::ssh::TimeLimit;
use crate::util::duration;

/// How long each wait may take before the run fails with a message saying what it waited
/// for, what it saw last and which setting raises the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlines(BTreeMap<Wait, Duration>);

impl Deadlines {
    /// Suited to real clouds: a VM answers SSH within a few minutes of being created, the
    /// kexec jump takes under a minute, bare metal may spend minutes in firmware on reboot.
    pub const DEFAULTS: [(Wait, Duration); 4] = [
        (Wait::Reach, Duration::from_secs(5 * 60)),
        (Wait::Kexec, Duration::from_secs(5 * 60)),
        (Wait::Reboot, Duration::from_secs(10 * 60)),
        (Wait::Verify, Duration::from_secs(5 * 60)),
    ];

    /// `command_line` over `inventory` over the defaults, wait by wait.
    pub fn resolve(inventory: &Timeouts, command_line: &Timeouts) -> Self {
        let mut map: BTreeMap<Wait, Duration> = Self::DEFAULTS.into_iter().collect();
        for (limit, value) in command_line.or(inventory).0 {
            if let Limit::Wait(wait) = limit {
                map.insert(wait, value);
            }
        }
        Self(map)
    }

    pub fn get(&self, wait: Wait) -> Duration {
        self.0.get(&wait).copied().unwrap_or(Duration::from_secs(300))
    }

    /// The limit of a command run inside `wait` with `left` of its deadline remaining.
    pub fn command_limit(&self, wait: Wait, left: Duration) -> TimeLimit {
        let limit = self.get(wait);
        TimeLimit {
            after: left,
            name: format!("the `{wait}` timeout, {}", duration::format(limit)),
            raise: raise(Limit::Wait(wait), limit),
        }
    }
}

impl Default for Deadlines {
    fn default() -> Self {
        Self(Self::DEFAULTS.into_iter().collect())
    }
}

/// How long each remote command of a phase may run (outside the waits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budgets {
    /// Only what was set: an unset `copy` grows with the data sent.
    set: BTreeMap<Budget, Duration>,
}

impl Budgets {
    /// Partitioning a large disk and formatting it take minutes; installing the boot loader
    /// runs activation scripts; a transfer adds [`Budgets::PER_100_MIB`] to its base.
    pub const DEFAULTS: [(Budget, Duration); 4] = [
        (Budget::Disk, Duration::from_secs(10 * 60)),
        (Budget::Copy, Duration::from_secs(10 * 60)),
        (Budget::Install, Duration::from_secs(20 * 60)),
        (Budget::Command, Duration::from_secs(2 * 60)),
    ];
    /// What a transfer adds to its budget per 100 MiB sent (started), unless the budget is
    /// set: a link of 1.7 MiB/s still makes it.
    pub const PER_100_MIB: Duration = Duration::from_secs(60);

    /// `command_line` over `inventory`, budget by budget; unset ones are cairn's defaults.
    pub fn resolve(inventory: &Timeouts, command_line: &Timeouts) -> Self {
        let set = command_line
            .or(inventory)
            .0
            .into_iter()
            .filter_map(|(limit, value)| match limit {
                Limit::Budget(b) => Some((b, value)),
                Limit::Wait(_) => None,
            })
            .collect();
        Self { set }
    }

    /// The budget that limits each remote command of `phase`.
    pub fn of_phase(phase: Phase) -> Budget {
        match phase {
            Phase::Disk => Budget::Disk,
            Phase::Copy => Budget::Copy,
            Phase::Install => Budget::Install,
            _ => Budget::Command,
        }
    }

    /// The limit of each remote command of `phase` that sends no bulk data.
    pub fn for_phase(&self, phase: Phase) -> TimeLimit {
        self.for_transfer(Self::of_phase(phase), 0)
    }

    /// The limit of a command of `budget` that sends `bytes` (a closure, the installer
    /// bundle): the budget as set, else its default plus [`Budgets::PER_100_MIB`] per
    /// started 100 MiB.
    pub fn for_transfer(&self, budget: Budget, bytes: u64) -> TimeLimit {
        const HUNDRED_MIB: u64 = 100 * 1024 * 1024;
        let (after, name) = match self.set.get(&budget) {
            Some(&set) => (set, format!("the `{budget}` budget, {}", duration::format(set))),
            None => {
                let base = Self::default_of(budget);
                let per = bytes.div_ceil(HUNDRED_MIB);
                let after = base + Self::PER_100_MIB * u32::try_from(per).unwrap_or(u32::MAX);
                let name = if per == 0 {
                    format!("the `{budget}` budget, {}", duration::format(after))
                } else {
                    format!(
                        "the `{budget}` budget, {}: {} + {} per 100 MiB sent",
                        duration::format(after),
                        duration::format(base),
                        duration::format(Self::PER_100_MIB)
                    )
                };
                (after, name)
            }
        };
        TimeLimit { after, name, raise: raise(Limit::Budget(budget), after) }
    }

    fn default_of(budget: Budget) -> Duration {
        Self::DEFAULTS.iter().find(|(b, _)| *b == budget).map_or(Duration::from_secs(120), |d| d.1)
    }
}

impl Default for Budgets {
    fn default() -> Self {
        Self::resolve(&Timeouts::default(), &Timeouts::default())
    }
}

/// How to raise `limit` (now `value`): the setting in cairn.hcl and the flag, at twice it.
fn raise(limit: Limit, value: Duration) -> String {
    let longer = duration::format(value * 2);
    format!(
        "`timeouts {{ {limit} = \"{longer}\" }}` in the host, its provider or `defaults` in \
         cairn.hcl, or `--timeout {limit}={longer}`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn minutes(limit: &TimeLimit) -> f64 {
        limit.after.as_secs_f64() / 60.0
    }

    #[test]
    fn each_phase_has_its_budget_and_the_rest_share_the_command_budget() {
        let b = Budgets::default();
        assert_eq!(minutes(&b.for_phase(Phase::Disk)), 10.0);
        assert_eq!(minutes(&b.for_phase(Phase::Copy)), 10.0);
        assert_eq!(minutes(&b.for_phase(Phase::Install)), 20.0);
        for phase in [Phase::Reach, Phase::Kexec, Phase::Keys, Phase::Reboot, Phase::Verify] {
            assert_eq!(minutes(&b.for_phase(phase)), 2.0, "{phase}");
        }
        assert_eq!(b.for_phase(Phase::Install).name, "the `install` budget, 20m");
    }

    #[test]
    fn a_transfer_gets_a_minute_per_started_100_mib_unless_the_budget_is_set() {
        let b = Budgets::default();
        assert_eq!(minutes(&b.for_transfer(Budget::Copy, 1)), 11.0);
        assert_eq!(minutes(&b.for_transfer(Budget::Copy, 100 * MIB)), 11.0);
        let gib = b.for_transfer(Budget::Copy, 1024 * MIB);
        assert_eq!(minutes(&gib), 21.0);
        assert_eq!(gib.name, "the `copy` budget, 21m: 10m + 1m per 100 MiB sent");
        assert!(gib.raise.contains("`timeouts { copy = \"42m\" }`"), "{}", gib.raise);
        assert!(gib.raise.ends_with("`--timeout copy=42m`"), "{}", gib.raise);

        let mut inv = Timeouts::default();
        inv.set(Budget::Copy, Duration::from_secs(30 * 60));
        let b = Budgets::resolve(&inv, &Timeouts::default());
        let set = b.for_transfer(Budget::Copy, 1024 * MIB);
        assert_eq!((minutes(&set), set.name.as_str()), (30.0, "the `copy` budget, 30m"));
    }

    #[test]
    fn the_command_line_wins_over_the_inventory_and_waits_stay_apart() {
        let mut inv = Timeouts::default();
        inv.set(Budget::Disk, Duration::from_secs(3600));
        inv.set(Wait::Reach, Duration::from_secs(20));
        let mut flags = Timeouts::default();
        flags.set(Budget::Disk, Duration::from_secs(60));
        let b = Budgets::resolve(&inv, &flags);
        assert_eq!(minutes(&b.for_phase(Phase::Disk)), 1.0);
        assert_eq!(minutes(&b.for_phase(Phase::Install)), 20.0);
        let d = Deadlines::resolve(&inv, &flags);
        assert_eq!(d.get(Wait::Reach), Duration::from_secs(20));
        let inside = d.command_limit(Wait::Reach, Duration::from_secs(7));
        assert_eq!(inside.after, Duration::from_secs(7));
        assert_eq!(inside.name, "the `reach` timeout, 20s");
        assert!(inside.raise.starts_with("`timeouts { reach = \"40s\" }`"), "{}", inside.raise);
    }
}
