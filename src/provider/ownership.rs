//! Whose a machine is. A machine is a host's only if cairn created it for that host (the
//! labels or tags it sets on creation) or state records its id (cairn created it, or a user
//! adopted it with `cairn import`). A machine that only has the host's name is someone
//! else's until a user says otherwise: lookups report it, never take it.
//!
//! hcloud (labels) and aws (tags) share the marks and this decision.

use std::collections::BTreeMap;

use super::ProviderError;

/// The label/tag naming the host a machine belongs to.
pub const HOST_MARK: &str = "cairn-host";
/// The label/tag saying cairn made the machine.
pub const MANAGED_BY_MARK: &str = "managed-by";
pub const MANAGED_BY: &str = "cairn";

/// The marks cairn sets on a machine it creates for `host`.
pub fn marks(host: &str) -> [(&'static str, &str); 2] {
    [(HOST_MARK, host), (MANAGED_BY_MARK, MANAGED_BY)]
}

/// Whose a machine is, by its marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// cairn made it for this host.
    ThisHost,
    /// cairn's mark gives it to another host.
    OtherHost(String),
    /// No complete mark of cairn's: made by someone else (or by hand).
    Nobody,
}

/// Whose the machine with `marks` (its labels or tags) is, seen from `host`.
pub fn claim(marks: &BTreeMap<String, String>, host: &str) -> Claim {
    match marks.get(HOST_MARK) {
        Some(h) if h != host => Claim::OtherHost(h.clone()),
        Some(_) if marks.get(MANAGED_BY_MARK).is_some_and(|m| m == MANAGED_BY) => Claim::ThisHost,
        _ => Claim::Nobody,
    }
}

/// What a search by marks and by name found for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick<T> {
    /// The one machine cairn made for the host.
    Ours(T),
    /// Machines named like the host that cairn did not make: reported, never taken.
    Unclaimed(Vec<T>),
    /// Several machines carry the host's marks: a person must sort them out.
    Several(Vec<T>),
    Nothing,
}

/// The host's machine among `candidates` (machines carrying its marks or its name, each
/// once): the one cairn marked for it; else those without cairn's marks are reported;
/// machines marked for another host are left out.
pub fn pick<T>(
    host: &str,
    candidates: Vec<T>,
    marks_of: impl Fn(&T) -> &BTreeMap<String, String>,
) -> Pick<T> {
    let mut ours = Vec::new();
    let mut unclaimed = Vec::new();
    for c in candidates {
        match claim(marks_of(&c), host) {
            Claim::ThisHost => ours.push(c),
            Claim::Nobody => unclaimed.push(c),
            Claim::OtherHost(other) => {
                tracing::debug!(host, labelled_for = %other, "a machine named like this host belongs to another host");
            }
        }
    }
    match (ours.len(), unclaimed.is_empty()) {
        (1, _) => Pick::Ours(ours.remove(0)),
        (0, true) => Pick::Nothing,
        (0, false) => Pick::Unclaimed(unclaimed),
        _ => Pick::Several(ours),
    }
}

/// The error for machines named like `host` that cairn did not create: what is there, and
/// how to adopt it on purpose. `provider`: `hcloud.cloud`; `kind`: server, instance;
/// `mark`: label, tag.
pub fn unclaimed(
    host: &str,
    provider: &str,
    kind: &str,
    mark: &str,
    ids: Vec<String>,
) -> ProviderError {
    let (machines, import) = match ids.as_slice() {
        [one] => (format!("{kind} {one}"), format!("cairn import {host} {one}")),
        many => (format!("{kind}s {}", many.join(", ")), format!("cairn import {host} ID")),
    };
    ProviderError::Unclaimed {
        host: host.to_owned(),
        provider: provider.to_owned(),
        found: format!(
            "{machines} named {host} that cairn did not create (no {mark} {HOST_MARK}={host})"
        ),
        import,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn only_both_marks_for_this_host_make_a_machine_ours() {
        assert_eq!(claim(&m(&marks("web1")), "web1"), Claim::ThisHost);
        assert_eq!(claim(&m(&marks("db1")), "web1"), Claim::OtherHost("db1".into()));
        assert_eq!(claim(&m(&[(HOST_MARK, "web1")]), "web1"), Claim::Nobody);
        assert_eq!(claim(&m(&[("Name", "web1")]), "web1"), Claim::Nobody);
        assert_eq!(claim(&m(&[]), "web1"), Claim::Nobody);
    }

    #[test]
    fn a_machine_with_only_the_hosts_name_is_reported_never_taken() {
        let ours = m(&marks("web1"));
        let bare = m(&[("Name", "web1")]);
        let other = m(&marks("db1"));
        let p = |c: Vec<BTreeMap<String, String>>| pick("web1", c, |x| x);
        assert_eq!(p(vec![bare.clone(), ours.clone(), other.clone()]), Pick::Ours(ours.clone()));
        assert_eq!(p(vec![bare.clone(), other.clone()]), Pick::Unclaimed(vec![bare]));
        assert_eq!(p(vec![other]), Pick::Nothing);
        assert_eq!(p(vec![]), Pick::Nothing);
        assert_eq!(p(vec![ours.clone(), ours.clone()]), Pick::Several(vec![ours.clone(), ours]));
    }

    #[test]
    fn the_error_names_the_machine_and_the_import_command() {
        let e = unclaimed("web1", "hcloud.cloud", "server", "label", vec!["42".into()]);
        let shown = crate::ui::render_plain(&e);
        assert!(shown.contains("hcloud.cloud has server 42 named web1"), "{shown}");
        assert!(shown.contains("cairn import web1 42"), "{shown}");
    }
}
