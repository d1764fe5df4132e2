//! The inventory's rules: admins read everything; hosts read the files their `secrets` globs
//! name; host keys under `secrets/hosts/` are for admins only.

use std::collections::HashMap;
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
///
/// A path is matched against every glob at once ([`globset::GlobSet`]): with a glob per host,
/// matching each glob separately made a fleet's check quadratic in its hosts.
pub struct SecretsPolicy {
    admins: Vec<(String, String)>,
    /// Per glob: its text, its regex, and the hosts that may read it.
    globs: Vec<PolicyGlob>,
    /// Every glob of `globs`, with the same indices.
    set: globset::GlobSet,
    /// Per host of the inventory (same indices): its name and age recipient, if it has one.
    host_recipients: Vec<(HostName, Option<String>)>,
}

struct PolicyGlob {
    glob: String,
    regex: String,
    /// Indices into the inventory's hosts, ascending (inventory order).
    hosts: Vec<usize>,
}

/// The globs being collected, each once, with their compiled form for the set.
#[derive(Default)]
struct GlobsBuilder {
    globs: Vec<PolicyGlob>,
    compiled: Vec<globset::Glob>,
    index: HashMap<String, usize>,
}

impl SecretsPolicy {
    pub fn new(
        inventory: &Inventory,
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
        let mut globs = GlobsBuilder::default();
        for rule in &inventory.secrets {
            let where_ = format!(
                "{}:{}: secrets \"{}\"",
                rule.span.file.display(),
                rule.span.line,
                rule.glob
            );
            // A glob no host may read is still a rule: admins only.
            globs.add(&rule.glob, None, &where_)?;
            let readers = inventory.hosts.iter().enumerate().filter(|(_, h)| {
                rule.hosts.contains(&h.name) || rule.tags.iter().any(|t| h.tags.contains(t))
            });
            for (i, _) in readers {
                globs.add(&rule.glob, Some(i), &where_)?;
            }
        }
        for (i, host) in inventory.hosts.iter().enumerate() {
            let where_ = format!(
                "{}:{}: host \"{}\" secrets",
                host.span.file.display(),
                host.span.line,
                host.name
            );
            for glob in &host.secrets {
                globs.add(glob, Some(i), &where_)?;
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
        let (globs, set) = globs.build()?;
        Ok(Self { admins, globs, set, host_recipients })
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
        self.names(&self.reader_indices(&self.set.matches(rel_path)))
    }

    /// The exact creation rule for one file: admins, plus the recipients of every host that
    /// may read it (hosts without a recipient yet are left out). `None` if no glob covers it
    /// and it is not a host key (the file is outside the inventory's secrets).
    pub fn rule_for(&self, rel_path: &str) -> Option<CreationRule> {
        self.readers_and_rule(rel_path).map(|(_, rule)| rule)
    }

    /// [`SecretsPolicy::readers`] and [`SecretsPolicy::rule_for`] of one file, matched once.
    pub fn readers_and_rule(&self, rel_path: &str) -> Option<(Vec<HostName>, CreationRule)> {
        let readers = if Self::is_host_key_path(rel_path) {
            Vec::new()
        } else {
            let matching = self.set.matches(rel_path);
            if matching.is_empty() {
                return None;
            }
            self.reader_indices(&matching)
        };
        let recipients = self.recipients(&readers);
        let rule = CreationRule {
            key_groups: vec![recipients.into_iter().map(|(r, _)| r).collect()],
            shamir_threshold: None,
            crypt: None,
            mac_only_encrypted: false,
        };
        Some((self.names(&readers), rule))
    }

    /// The hosts (inventory indices, ascending) of the globs `matching`.
    fn reader_indices(&self, matching: &[usize]) -> Vec<usize> {
        let mut hosts: Vec<usize> =
            matching.iter().flat_map(|&g| self.globs[g].hosts.iter().copied()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        hosts
    }

    fn names(&self, hosts: &[usize]) -> Vec<HostName> {
        hosts.iter().map(|&i| self.host_recipients[i].0.clone()).collect()
    }

    /// Admins, then the recipients of `hosts` (inventory indices, ascending).
    fn recipients(&self, hosts: &[usize]) -> Vec<(String, String)> {
        let mut out = self.admins.clone();
        for &i in hosts {
            if let (name, Some(r)) = &self.host_recipients[i] {
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
        // includes their readers too (a file matching it matches them). Globs are unique, so
        // "another glob" is another index.
        let covered_by: Vec<Vec<usize>> = self
            .globs
            .iter()
            .enumerate()
            .map(|(i, g)| self.set.matches(&g.glob).into_iter().filter(|&o| o != i).collect())
            .collect();
        let mut order: Vec<usize> = (0..self.globs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(covered_by[i].len()));
        let glob_rules: Vec<(usize, Vec<usize>)> = order
            .iter()
            .map(|&i| {
                let mut with = covered_by[i].clone();
                with.push(i);
                (i, self.reader_indices(&with))
            })
            .collect();
        // Where each glob's rule is in `glob_rules`: a file's first matching rule is the one
        // of its matching globs that comes first.
        let mut position = vec![0; self.globs.len()];
        for (pos, &i) in order.iter().enumerate() {
            position[i] = pos;
        }

        // Exact rules for existing files whose first glob rule would be wrong.
        let mut files: Vec<&String> = existing.iter().collect();
        files.sort();
        files.dedup();
        for file in files {
            if Self::is_host_key_path(file) {
                continue;
            }
            let matching = self.set.matches(file.as_str());
            let Some(first) = matching.iter().map(|&g| position[g]).min() else { continue };
            let exact = self.reader_indices(&matching);
            if glob_rules[first].1 != exact {
                let names = self.names(&exact);
                rules.push(InventoryRule {
                    comment: format!("{file}: {}", who(&names)),
                    path_regex: format!("^{}$", regex::escape(file)),
                    recipients: self.recipients(&exact),
                });
            }
        }

        for (i, hosts) in glob_rules {
            let g = &self.globs[i];
            rules.push(InventoryRule {
                comment: format!("{}: {}", g.glob, who(&self.names(&hosts))),
                path_regex: g.regex.clone(),
                recipients: self.recipients(&hosts),
            });
        }

        let mut reads_some = vec![false; self.host_recipients.len()];
        for g in &self.globs {
            for &h in &g.hosts {
                reads_some[h] = true;
            }
        }
        let hosts_without_recipient = self
            .host_recipients
            .iter()
            .zip(reads_some)
            .filter(|((_, r), reads)| r.is_none() && *reads)
            .map(|((name, _), _)| name.clone())
            .collect();
        InventoryRules { rules, hosts_without_recipient }
    }
}

impl SecretsPolicy {
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

impl GlobsBuilder {
    /// Adds `glob` (once) and, if given, a host (inventory index) that may read it.
    fn add(&mut self, glob: &str, host: Option<usize>, where_: &str) -> Result<(), RulesError> {
        let index = match self.index.get(glob) {
            Some(&i) => i,
            None => {
                let compiled = build_glob(glob).map_err(|message| RulesError::Inventory {
                    what: where_.to_owned(),
                    message,
                    help: "globs are relative to the repository root: `*` stays within a directory, `**` spans directories".into(),
                })?;
                self.globs.push(PolicyGlob {
                    glob: glob.to_owned(),
                    regex: glob_to_regex(glob),
                    hosts: Vec::new(),
                });
                self.compiled.push(compiled);
                self.index.insert(glob.to_owned(), self.globs.len() - 1);
                self.globs.len() - 1
            }
        };
        if let Some(h) = host {
            let hosts = &mut self.globs[index].hosts;
            if let Err(at) = hosts.binary_search(&h) {
                hosts.insert(at, h);
            }
        }
        Ok(())
    }

    fn build(self) -> Result<(Vec<PolicyGlob>, globset::GlobSet), RulesError> {
        let mut set = globset::GlobSetBuilder::new();
        for g in self.compiled {
            set.add(g);
        }
        let set = set.build().map_err(|e| RulesError::Inventory {
            what: "the inventory's secrets globs".into(),
            message: e.to_string(),
            help: "globs are relative to the repository root: `*` stays within a directory, `**` spans directories".into(),
        })?;
        Ok((self.globs, set))
    }
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
