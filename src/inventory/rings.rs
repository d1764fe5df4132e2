//! The day-2 part of the inventory: `gitops { ... }` (where hosts pull from) and
//! `ring "NAME" { ... }` (which hosts follow which branch, in which order).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::model::{HostName, RingName, SourceSpan};

/// `gitops { remote branch token push_remote }`.
#[derive(Debug, Clone, Serialize)]
pub struct Gitops {
    /// The URL the hosts' comin pulls (comin's `remotes[].url`).
    pub remote: String,
    /// Where changes land first; the first rings are promoted from its head.
    pub branch: String,
    /// The sops file holding the read token, relative to the repository root.
    pub token: Option<PathBuf>,
    /// The key of the token in that file (`token` by default; sops-nix's `key`, so
    /// `comin/token` for a nested one).
    pub token_key: String,
    /// The local git remote cairn pushes ring branches to (and reads their heads from).
    pub push_remote: String,
    pub span: SourceSpan,
}

/// The branch a ring follows when its block names none.
pub fn default_ring_branch(ring: &RingName) -> String {
    format!("ring/{ring}")
}

/// `ring "NAME" { hosts after soak branch }`.
#[derive(Debug, Clone, Serialize)]
pub struct Ring {
    pub name: RingName,
    /// Its hosts, in inventory order.
    pub hosts: Vec<HostName>,
    /// The ring whose hosts must have converged and soaked on a commit before this one may
    /// take it; `None` for a first ring, promoted from `gitops.branch`.
    pub after: Option<RingName>,
    /// How long every host of the `after` ring must have run a commit, converged and
    /// healthy, before this ring may take it (unused for a first ring).
    #[serde(with = "seconds")]
    pub soak: Duration,
    /// The git branch its hosts' comin follows (`ring/<name>` by default).
    pub branch: String,
    pub span: SourceSpan,
}

mod seconds {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

impl super::Inventory {
    pub fn ring(&self, name: &str) -> Option<&Ring> {
        self.rings.iter().find(|r| r.name.as_str() == name)
    }

    /// The ring a host belongs to (a host is in at most one).
    pub fn ring_of(&self, host: &str) -> Option<&Ring> {
        self.rings.iter().find(|r| r.hosts.iter().any(|h| h.as_str() == host))
    }

    /// The ring this one comes after.
    pub fn previous_ring(&self, ring: &Ring) -> Option<&Ring> {
        ring.after.as_ref().and_then(|a| self.ring(a.as_str()))
    }
}

/// Whether `name` is acceptable as a branch name (the rules of `git check-ref-format
/// --branch` that a typo can break).
pub fn valid_branch_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("a branch name cannot be empty");
    }
    if name.starts_with('-') || name.starts_with('/') || name.ends_with('/') {
        return Err("a branch name cannot start with `-` or `/`, or end with `/`");
    }
    if name.ends_with('.') || name.ends_with(".lock") {
        return Err("a branch name cannot end with `.` or `.lock`");
    }
    if name.contains("..") || name.contains("//") || name.contains("@{") || name == "@" {
        return Err("a branch name cannot contain `..`, `//` or `@{`");
    }
    if name.split('/').any(|part| part.starts_with('.')) {
        return Err("no part of a branch name may start with `.`");
    }
    if name.chars().any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c)) {
        return Err("a branch name cannot contain spaces, control characters or any of ~^:?*[\\");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names() {
        for ok in ["main", "ring/dev", "env/prod-eu", "release_1.2"] {
            assert_eq!(valid_branch_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-x", "ring/", "a..b", "a b", "x.lock", "ring/.hidden", "a:b", "@"] {
            assert!(valid_branch_name(bad).is_err(), "{bad}");
        }
    }
}
