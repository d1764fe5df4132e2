//! Soak evidence: when cairn first saw each host converged and healthy on a commit, kept as
//! a git note on that commit (`refs/notes/cairn/soak`), so a later `promote` knows how long
//! the host has run it. A host seen on the commit but not converged (or not reached) loses
//! its entry: its soak starts again the next time it is seen converged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::git::{GitError, Repo};
use super::status::HostStatus;

/// The notes ref holding the evidence.
pub const NOTES_REF: &str = "refs/notes/cairn/soak";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub hosts: BTreeMap<String, Seen>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
}

impl Evidence {
    /// Folds one observation of the hosts in `rows` whose ring head is `commit` into the
    /// evidence (pure: the caller reads and writes the note).
    pub fn observe(&mut self, commit: &str, rows: &[HostStatus], now: OffsetDateTime) {
        for row in rows.iter().filter(|r| r.head.as_deref() == Some(commit)) {
            if row.converged && row.commit.as_deref() == Some(commit) {
                let seen = self
                    .hosts
                    .entry(row.host.clone())
                    .or_insert(Seen { first_seen: now, last_seen: now });
                seen.last_seen = now;
            } else {
                self.hosts.remove(&row.host);
            }
        }
    }
}

pub async fn read(repo: &Repo, commit: &str) -> Result<Evidence, GitError> {
    Ok(repo
        .note(NOTES_REF, commit)
        .await?
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default())
}

/// Records what `rows` show about `commit`, if it changes the note.
pub async fn record(
    repo: &Repo,
    commit: &str,
    rows: &[HostStatus],
    now: OffsetDateTime,
) -> Result<Evidence, GitError> {
    let old = read(repo, commit).await?;
    let mut new = old.clone();
    new.observe(commit, rows, now);
    if new != old {
        let text = serde_json::to_string_pretty(&new).unwrap_or_default();
        repo.set_note(NOTES_REF, commit, &text).await?;
    }
    Ok(new)
}
