//! The repository as the rules see it, read once: the files, the secrets files parsed, and who
//! may read each according to the inventory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::git::{self, Repo};
use super::{CheckError, Fleet};
use crate::keys::{AgeRecipient, HostKeyStore};
use crate::secrets::rules::{self, RulesError, SecretsPolicy, SopsConfig};
use crate::secrets::{Format, SecretsError, SopsFile};
use crate::util::parallel;

/// Where a secrets file's expected recipients come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// The inventory's `secrets` globs (or a host's `secrets`), or `secrets/hosts/`.
    Inventory,
    /// Only `.sops.yaml` names it.
    SopsYaml,
}

/// A file the inventory or `.sops.yaml` says is secret.
#[derive(Debug)]
pub struct SecretsFile {
    /// Relative to the repository root.
    pub rel: String,
    pub coverage: Coverage,
    /// The hosts that may read it (inventory coverage only).
    pub readers: Vec<String>,
    /// The recipients it should have (normalised, flattened over key groups).
    pub expected: Vec<String>,
    /// The file as sops would read it.
    pub parsed: Result<SopsFile, SecretsError>,
    /// Its text, when it is UTF-8 (to find lines).
    pub text: Option<String>,
}

/// Everything the rules read.
pub struct Scan<'a> {
    pub fleet: Fleet<'a>,
    /// The inventory's directory, absolute.
    pub root: PathBuf,
    pub git: Option<Repo>,
    /// Files under the root: tracked, and untracked but not ignored (relative, sorted).
    pub files: Vec<String>,
    pub policy: Option<SecretsPolicy>,
    pub secrets: Vec<SecretsFile>,
    /// Who a recipient belongs to (`admin alice`, `host web1`), for messages.
    pub who: HashMap<String, String>,
}

impl<'a> Scan<'a> {
    pub fn new(fleet: Fleet<'a>) -> Result<Self, CheckError> {
        let inv = fleet.inventory;
        let root = std::path::absolute(&inv.root)
            .map_err(|source| CheckError::Io { path: inv.root.clone(), source })?;
        let git = Repo::discover(&root);
        let files = match &git {
            Some(_) => tracked_files(&root)?,
            None => walk(&root)?,
        };
        let host_recipient = |h: &crate::inventory::HostName| {
            fleet.state.hosts.get(h.as_str()).and_then(|s| s.age_recipient.clone())
        };
        let declares_secrets =
            !inv.secrets.is_empty() || inv.hosts.iter().any(|h| !h.secrets.is_empty());
        let policy =
            if declares_secrets { Some(SecretsPolicy::new(inv, &host_recipient)?) } else { None };
        let config_path = root.join(rules::CONFIG_FILE_NAME);
        let sops_config =
            if config_path.is_file() { Some(SopsConfig::load(&config_path)?) } else { None };

        let mut who = HashMap::new();
        for admin in &inv.admins {
            who.insert(admin.age.as_str().to_owned(), format!("admin {}", admin.name));
        }
        for (name, host) in &fleet.state.hosts {
            if let Some(r) = host.age_recipient.as_deref().and_then(normalise) {
                who.entry(r).or_insert_with(|| format!("host {name}"));
            }
        }

        let mut candidates = Vec::new();
        for rel in &files {
            if rel == rules::CONFIG_FILE_NAME || rel.ends_with(".pub") {
                continue;
            }
            if let Some(c) = coverage(rel, &root, policy.as_ref(), sops_config.as_ref())? {
                candidates.push((rel.clone(), c));
            }
        }
        let secrets = parallel::map(
            &candidates,
            parallel::cores(),
            |(rel, (coverage, readers, expected))| {
                let path = root.join(rel);
                let (parsed, text) = match fs_err::read(&path) {
                    Ok(bytes) => {
                        let parsed = SopsFile::from_bytes(&path, &bytes, Format::from_path(&path));
                        (parsed, String::from_utf8(bytes).ok())
                    }
                    Err(e) => (Err(SecretsError::from(e)), None),
                };
                SecretsFile {
                    rel: rel.clone(),
                    coverage: coverage.clone(),
                    readers: readers.clone(),
                    expected: expected.clone(),
                    parsed,
                    text,
                }
            },
        );
        Ok(Self { fleet, root, git, files, policy, secrets, who })
    }

    /// `admin alice (age1abc…xyz)` or the abbreviated recipient alone.
    pub fn describe(&self, recipient: &str) -> String {
        let short = crate::keys::abbreviate(recipient);
        match self.who.get(recipient) {
            Some(who) => format!("{who} ({short})"),
            None => short,
        }
    }

    /// The inventory file, relative to the root, for findings about it.
    pub fn inventory_file(&self) -> String {
        let inv = self.fleet.inventory;
        inv.path
            .strip_prefix(&inv.root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| inv.path.to_string_lossy().into_owned())
    }

    /// The host key store of the repository.
    pub fn host_keys(&self) -> HostKeyStore {
        HostKeyStore::new(&self.root)
    }
}

/// A recipient in its canonical text form, if it parses.
pub fn normalise(r: &str) -> Option<String> {
    AgeRecipient::parse(r.trim()).ok().map(|r| r.as_str().to_owned())
}

type Covered = (Coverage, Vec<String>, Vec<String>);

fn coverage(
    rel: &str,
    root: &Path,
    policy: Option<&SecretsPolicy>,
    config: Option<&SopsConfig>,
) -> Result<Option<Covered>, CheckError> {
    if let Some(policy) = policy {
        if let Some((readers, rule)) = policy.readers_and_rule(rel) {
            let readers = readers.into_iter().map(|h| h.as_str().to_owned()).collect();
            let expected = rule.key_groups.into_iter().flatten().collect();
            return Ok(Some((Coverage::Inventory, readers, expected)));
        }
    }
    if let Some(config) = config {
        match config.rule_for(&root.join(rel), root) {
            Ok(Some(rule)) => {
                let expected = rule.key_groups.into_iter().flatten().collect();
                return Ok(Some((Coverage::SopsYaml, Vec::new(), expected)));
            }
            Ok(None) | Err(RulesError::NoMatchingRule { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// `git ls-files`: tracked files and untracked ones that are not ignored, below `root`.
fn tracked_files(root: &Path) -> Result<Vec<String>, CheckError> {
    let out = git::git(
        root,
        &[
            "-c",
            "core.quotePath=off",
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    )?;
    let mut files: Vec<String> = out
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        // Tracked but deleted in the work tree: nothing to read.
        .filter(|p| root.join(p).is_file())
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Outside git: every file below `root`, hidden directories, `target` and `result` left out.
fn walk(root: &Path) -> Result<Vec<String>, CheckError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = fs_err::read_dir(&dir)
            .map_err(|source| CheckError::Io { path: dir.clone(), source })?;
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "result" {
                    stack.push(entry.path());
                }
            } else if ft.is_file() {
                if let Ok(rel) = entry.path().strip_prefix(root) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
