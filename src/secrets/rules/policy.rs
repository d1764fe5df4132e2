//! The inventory's rules: admins read everything; hosts read the files their `secrets` globs
//! name; host keys under `secrets/hosts/` are for admins only.

use std::path::Path;

use super::*;
use crate::inventory::model::{HostName, Inventory};
use crate::keys::AgeRecipient;

/// One generated rule: a path regex and who may read the files it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryRule {
    /// What the rule is for, written above it in `.sops.yaml`.
    pub comment: String,
    /// An anchored RE2 regex for paths relative to the repository root.
    pub path_regex: String,
    /// `(recipient, who)`: admins first, then hosts, in inventory order, no duplicates.
    pub recipients: Vec<(String, String)>,
}

/// The creation rules the inventory implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryRules {
    /// In match order (first match wins, as in sops).
    pub rules: Vec<InventoryRule>,
    /// Hosts that may read some secrets but have no age recipient yet (not bootstrapped):
    /// their files are encrypted without them until `cairn secrets rekey` runs again.
    pub hosts_without_recipient: Vec<HostName>,
}

/// The directory (relative to the repository root) holding hosts' private keys.
pub const HOST_KEYS_DIR: &str = "secrets/hosts/";

/// Who may read what, computed from the inventory. `host_recipient` gives a host's age
/// recipient (from state, `HostState.age_recipient`), if it has one yet.
pub struct SecretsPolicy<'a> {
    inventory: &'a Inventory,
    admins: Vec<(String, String)>,
    /// Per glob: the compiled matcher, its regex, and the hosts that may read it.
    globs: Vec<PolicyGlob>,
    host_recipients: Vec<(HostName, Option<String>)>,
}

struct PolicyGlob {
    glob: String,
    matcher: globset::GlobMatcher,
    regex: String,
    hosts: Vec<HostName>,
}

impl<'a> SecretsPolicy<'a> {
    pub fn new(
        inventory: &'a Inventory,
        host_recipient: &dyn Fn(&HostName) -> Option<String>,
    ) -> Result<Self, RulesError> {
        let mut admins = Vec::new();
        for admin in &inventory.admins {
            let r = &admin.age;
            push_unique(&mut admins, r.as_str().to_owned(), format!("admin {}", admin.name));
        }

        if admins.is_empty() {
            return Err(RulesError::Inventory {
                what: inventory.path.display().to_string(),
                message: "no `admin` is declared, so nobody could read or rekey the secrets".into(),
                help: "add `admin \"you\" { age = \"age1...\" }` (your key from `age-keygen -y`)"
                    .into(),
            });
        }
        let mut globs: Vec<PolicyGlob> = Vec::new();
        for rule in &inventory.secrets {
            let where_ = format!(
                "{}:{}: secrets \"{}\"",
                rule.span.file.display(),
                rule.span.line,
                rule.glob
            );
            // A glob no host may read is still a rule: admins only.
            add_glob(&mut globs, &rule.glob, None, &where_)?;
            let readers = inventory.hosts.iter().filter(|h| {
                rule.hosts.contains(&h.name) || rule.tags.iter().any(|t| h.tags.contains(t))
            });
            for host in readers {
                add_glob(&mut globs, &rule.glob, Some(&host.name), &where_)?;
            }
        }
        for host in &inventory.hosts {
            let where_ = format!(
                "{}:{}: host \"{}\" secrets",
                host.span.file.display(),
                host.span.line,
                host.name
            );
            for glob in &host.secrets {
                add_glob(&mut globs, glob, Some(&host.name), &where_)?;
            }
        }

        let mut host_recipients = Vec::new();
        for host in &inventory.hosts {
            let r = match host_recipient(&host.name) {
                Some(text) => Some(
                    AgeRecipient::parse(&text)
                        .map_err(|e| RulesError::Inventory {
                            what: format!("host `{}` (state)", host.name),
                            message: e.to_string(),
                            help:
                                "the recipient in state is damaged; bootstrap the host's keys again"
                                    .into(),
                        })?
                        .as_str()
                        .to_owned(),
                ),
                None => None,
            };
            host_recipients.push((host.name.clone(), r));
        }
        Ok(Self { inventory, admins, globs, host_recipients })
    }

    /// Whether `rel_path` (relative to the repository root, `/`-separated) is a host key file.
    pub fn is_host_key_path(rel_path: &str) -> bool {
        rel_path.starts_with(HOST_KEYS_DIR)
    }

    /// The hosts allowed to read `rel_path`: those of every glob matching it.
    pub fn readers(&self, rel_path: &str) -> Vec<HostName> {
        if Self::is_host_key_path(rel_path) {
            return Vec::new();
        }
        let mut hosts: Vec<HostName> = Vec::new();
        for g in self.globs.iter().filter(|g| g.matcher.is_match(rel_path)) {
            for h in &g.hosts {
                if !hosts.contains(h) {
                    hosts.push(h.clone());
                }
            }
        }
        // Inventory order, not glob order.
        self.inventory
            .hosts
            .iter()
            .filter(|h| hosts.contains(&h.name))
            .map(|h| h.name.clone())
            .collect()
    }

    /// The exact creation rule for one file: admins, plus the recipients of every host that
    /// may read it (hosts without a recipient yet are left out). `None` if no glob covers it
    /// and it is not a host key (the file is outside the inventory's secrets).
    pub fn rule_for(&self, rel_path: &str) -> Option<CreationRule> {
        let covered = Self::is_host_key_path(rel_path)
            || self.globs.iter().any(|g| g.matcher.is_match(rel_path));
        if !covered {
            return None;
        }
        let recipients = self.recipients(&self.readers(rel_path));
        Some(CreationRule {
            key_groups: vec![recipients.into_iter().map(|(r, _)| r).collect()],
            shamir_threshold: None,
            crypt: None,
            mac_only_encrypted: false,
        })
    }

    fn recipients(&self, hosts: &[HostName]) -> Vec<(String, String)> {
        let mut out = self.admins.clone();
        for (name, r) in &self.host_recipients {
            if let (true, Some(r)) = (hosts.contains(name), r) {
                push_unique(&mut out, r.clone(), format!("host {name}"));
            }
        }
        out
    }

    /// The rules in `.sops.yaml` order. `existing` lists the secrets files already in the
    /// repository (relative, `/`-separated): where overlapping globs would make the first
    /// matching glob rule give a file fewer readers than it should have, that file gets an
    /// exact rule of its own first.
    pub fn rules(&self, existing: &[String]) -> InventoryRules {
        let mut rules = vec![InventoryRule {
            comment: "host private keys: admins only".into(),
            path_regex: format!("^{}", regex::escape(HOST_KEYS_DIR)),
            recipients: self.admins.clone(),
        }];

        // More specific globs first: a glob covered by others comes before them, and its rule
        // includes their readers too (a file matching it matches them).
        let covers = |outer: &PolicyGlob, inner: &PolicyGlob| {
            outer.glob != inner.glob && outer.matcher.is_match(&inner.glob)
        };
        let mut order: Vec<usize> = (0..self.globs.len()).collect();
        order.sort_by_key(|&i| {
            std::cmp::Reverse(self.globs.iter().filter(|o| covers(o, &self.globs[i])).count())
        });
        let glob_rules: Vec<(usize, Vec<HostName>)> = order
            .iter()
            .map(|&i| {
                let mut hosts: Vec<HostName> = self.globs[i].hosts.clone();
                for o in self.globs.iter().filter(|o| covers(o, &self.globs[i])) {
                    for h in &o.hosts {
                        if !hosts.contains(h) {
                            hosts.push(h.clone());
                        }
                    }
                }
                let hosts = self
                    .inventory
                    .hosts
                    .iter()
                    .filter(|h| hosts.contains(&h.name))
                    .map(|h| h.name.clone())
                    .collect();
                (i, hosts)
            })
            .collect();

        // Exact rules for existing files whose first glob rule would be wrong.
        let mut files: Vec<&String> = existing.iter().collect();
        files.sort();
        files.dedup();
        for file in files {
            if Self::is_host_key_path(file) {
                continue;
            }
            let exact = self.readers(file);
            let first = glob_rules.iter().find(|(i, _)| self.globs[*i].matcher.is_match(file));
            if let Some((_, hosts)) = first {
                let mut a = hosts.clone();
                let mut b = exact.clone();
                a.sort();
                b.sort();
                if a != b {
                    rules.push(InventoryRule {
                        comment: format!("{file}: {}", who(&exact)),
                        path_regex: format!("^{}$", regex::escape(file)),
                        recipients: self.recipients(&exact),
                    });
                }
            }
        }

        for (i, hosts) in glob_rules {
            let g = &self.globs[i];
            rules.push(InventoryRule {
                comment: format!("{}: {}", g.glob, who(&hosts)),
                path_regex: g.regex.clone(),
                recipients: self.recipients(&hosts),
            });
        }

        let hosts_without_recipient = self
            .host_recipients
            .iter()
            .filter(|(name, r)| r.is_none() && self.globs.iter().any(|g| g.hosts.contains(name)))
            .map(|(name, _)| name.clone())
            .collect();
        InventoryRules { rules, hosts_without_recipient }
    }
}

impl SecretsPolicy<'_> {
    /// The text of `.sops.yaml` for these rules (`existing` as for [`SecretsPolicy::rules`]);
    /// warns about hosts that cannot read their secrets yet.
    pub fn sops_yaml(
        &self,
        existing: &[String],
        old: Option<&str>,
        path: &Path,
    ) -> Result<String, RulesError> {
        let rules = self.rules(existing);
        for host in &rules.hosts_without_recipient {
            tracing::warn!(
                host = %host,
                "host has no age recipient yet; its secrets are encrypted to the admins only until it is bootstrapped and `cairn secrets rekey` runs"
            );
        }
        merge_sops_yaml(old, &rules, path)
    }

    /// Writes `<root>/.sops.yaml` from these rules if its content changes, keeping what cairn
    /// did not write; returns whether it did. `existing` as for [`SecretsPolicy::rules`].
    pub fn write_sops_yaml(&self, root: &Path, existing: &[String]) -> Result<bool, RulesError> {
        let path = root.join(CONFIG_FILE_NAME);
        let old = match fs_err::read_to_string(&path) {
            Ok(old) => Some(old),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let text = self.sops_yaml(existing, old.as_deref(), &path)?;
        if old.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        crate::util::atomic::write(&path, text.as_bytes(), 0o644)?;
        Ok(true)
    }
}

fn add_glob(
    globs: &mut Vec<PolicyGlob>,
    glob: &str,
    host: Option<&HostName>,
    where_: &str,
) -> Result<(), RulesError> {
    let index = match globs.iter().position(|g| g.glob == glob) {
        Some(i) => i,
        None => {
            let matcher = compile_glob(glob).map_err(|message| RulesError::Inventory {
                what: where_.to_owned(),
                message,
                help: "globs are relative to the repository root: `*` stays within a directory, `**` spans directories".into(),
            })?;
            globs.push(PolicyGlob {
                glob: glob.to_owned(),
                matcher,
                regex: glob_to_regex(glob),
                hosts: Vec::new(),
            });
            globs.len() - 1
        }
    };
    if let Some(h) = host {
        if !globs[index].hosts.contains(h) {
            globs[index].hosts.push(h.clone());
        }
    }
    Ok(())
}

fn who(hosts: &[HostName]) -> String {
    if hosts.is_empty() {
        "admins only".into()
    } else {
        format!("admins and {}", hosts.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", "))
    }
}

fn push_unique(list: &mut Vec<(String, String)>, recipient: String, who: String) {
    if !list.iter().any(|(r, _)| *r == recipient) {
        list.push((recipient, who));
    }
}
