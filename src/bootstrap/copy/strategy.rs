//! Which strategy the copy phase uses when the inventory does not say: `nix-copy` when the
//! installer has Nix and the link is fast (compression would gain little, and `nix copy`
//! registers each path with its signatures and content address), else the stream.

use std::fmt;

use super::Strategy;

/// From this upload rate on (bytes per second), a link counts as fast: about what one core
/// compresses with zstd, so the stream's compression no longer moves more than `nix copy`
/// does uncompressed (benches/transfer.sh: the two meet between the 12 and 100 MiB/s links).
pub const FAST_LINK: f64 = 64.0 * 1024.0 * 1024.0;

/// Why a strategy was chosen, for the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    /// `copy = ...` on the host or its provider.
    Inventory,
    /// No upload to the target was timed in this run (the installer was already running).
    LinkUnknown,
    /// The link (bytes per second) is slower than [`FAST_LINK`].
    SlowLink(f64),
    /// The link is fast but the target has no `nix-store`.
    NoNixOnTarget(f64),
    /// The link is fast and the target has Nix.
    FastLinkAndNix(f64),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |rate: &f64| rate / (1024.0 * 1024.0);
        let fast = FAST_LINK / (1024.0 * 1024.0);
        match self {
            Reason::Inventory => f.write_str("set by `copy` in the inventory"),
            Reason::LinkUnknown => f.write_str(
                "the link's speed is unknown in this run (no installer upload was timed)",
            ),
            Reason::SlowLink(r) => write!(
                f,
                "the link ({:.1} MiB/s) is slower than {fast:.0} MiB/s: compressing moves more",
                mib(r)
            ),
            Reason::NoNixOnTarget(r) => {
                write!(f, "the link is fast ({:.1} MiB/s) but the target has no nix-store", mib(r))
            }
            Reason::FastLinkAndNix(r) => write!(
                f,
                "the link is fast ({:.1} MiB/s) and the target has Nix: nix copy registers \
                 each path with its signatures and content address",
                mib(r)
            ),
        }
    }
}

/// What the choice needs to know about the target, asked only when it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Whether the target has `nix-store`.
    TargetNix,
}

/// The strategy, from the inventory's setting, the measured upload rate (bytes per second)
/// and whether the target has Nix (`None`: not asked yet). `Err` says what to ask first.
pub fn choose(
    explicit: Option<Strategy>,
    link_rate: Option<f64>,
    target_has_nix: Option<bool>,
) -> Result<(Strategy, Reason), Need> {
    if let Some(strategy) = explicit {
        return Ok((strategy, Reason::Inventory));
    }
    let Some(rate) = link_rate else { return Ok((Strategy::Stream, Reason::LinkUnknown)) };
    if rate < FAST_LINK {
        return Ok((Strategy::Stream, Reason::SlowLink(rate)));
    }
    match target_has_nix {
        None => Err(Need::TargetNix),
        Some(false) => Ok((Strategy::Stream, Reason::NoNixOnTarget(rate))),
        Some(true) => Ok((Strategy::NixCopy, Reason::FastLinkAndNix(rate))),
    }
}

/// The command that tells whether the target has Nix: exit 0 if it has `nix-store`
/// (what `nix copy`'s SSH store runs there), 1 if not.
pub fn nix_check() -> crate::ssh::RemoteCommand {
    crate::ssh::RemoteCommand::new("sh")
        .arg("-c")
        .arg("command -v nix-store >/dev/null")
        .unprivileged()
        .allow_exit_codes([1])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    /// The inventory's setting, the link's rate, whether the target has Nix: the choice.
    type Case = (Option<Strategy>, Option<f64>, Option<bool>, Result<(Strategy, Reason), Need>);

    #[test]
    fn the_inventory_wins_then_the_link_then_the_target() {
        use Strategy::{NixCopy, Stream};
        #[rustfmt::skip]
        let table: &[Case] = &[
            (Some(Stream), Some(500.0 * MIB), Some(true), Ok((Stream, Reason::Inventory))),
            (Some(NixCopy), Some(1.0 * MIB), Some(false), Ok((NixCopy, Reason::Inventory))),
            (Some(NixCopy), None, None, Ok((NixCopy, Reason::Inventory))),
            (None, None, Some(true), Ok((Stream, Reason::LinkUnknown))),
            (None, Some(12.0 * MIB), None, Ok((Stream, Reason::SlowLink(12.0 * MIB)))),
            (None, Some(63.9 * MIB), Some(true), Ok((Stream, Reason::SlowLink(63.9 * MIB)))),
            (None, Some(100.0 * MIB), None, Err(Need::TargetNix)),
            (None, Some(100.0 * MIB), Some(false), Ok((Stream, Reason::NoNixOnTarget(100.0 * MIB)))),
            (None, Some(64.0 * MIB), Some(true), Ok((NixCopy, Reason::FastLinkAndNix(64.0 * MIB)))),
        ];
        for (explicit, rate, nix, want) in table {
            assert_eq!(choose(*explicit, *rate, *nix), *want, "{explicit:?} {rate:?} {nix:?}");
        }
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(
            Reason::SlowLink(12.0 * MIB).to_string(),
            "the link (12.0 MiB/s) is slower than 64 MiB/s: compressing moves more"
        );
        assert_eq!(
            Reason::FastLinkAndNix(110.0 * MIB).to_string(),
            "the link is fast (110.0 MiB/s) and the target has Nix: nix copy registers each \
             path with its signatures and content address"
        );
        assert_eq!(nix_check().command_line().unwrap(), "sh -c 'command -v nix-store >/dev/null'");
    }
}
