//! `cairn secrets rekey`: make every secrets file's recipients match its creation rule, in
//! one process, with `sops updatekeys` semantics (same data key, values untouched; files
//! already right are not rewritten), or with `--rotate` a new data key for every file.
//!
//! Fast over a whole repository: every file is read and parsed once, the key wrapping runs
//! on every core, and all rewritten files share one durability barrier
//! ([`crate::util::atomic::write_many`]) instead of two fsyncs each.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::{Result, SecretsError};
use super::file::{RekeyChange, SopsFile};
use super::rules::{self, SecretsPolicy, SopsConfig};
use super::store::{Format, StoresConfig};
use crate::inventory::{HostName, Inventory};
use crate::keys::{AgeRecipient, Identities};
use crate::util::{atomic, parallel};

/// One file and the key groups its rule asks for.
#[derive(Debug)]
pub struct RekeyTarget {
    pub path: PathBuf,
    pub key_groups: Vec<Vec<AgeRecipient>>,
    /// The file as parsed while the targets were found, so it is not read twice.
    loaded: Option<SopsFile>,
}

impl RekeyTarget {
    pub fn new(path: PathBuf, key_groups: Vec<Vec<AgeRecipient>>) -> Self {
        Self { path, key_groups, loaded: None }
    }
}

/// What a rekey works on.
#[derive(Debug)]
pub struct RekeyPlan {
    /// The directory holding `.sops.yaml`; paths are shown relative to it.
    pub root: PathBuf,
    /// How `.sops.yaml` says rewritten files are laid out.
    pub stores: StoresConfig,
    pub targets: Vec<RekeyTarget>,
}

#[derive(Debug)]
pub enum RekeyStatus {
    UpToDate,
    /// Rewritten (or, with `dry_run`, would be).
    Changed(RekeyChange),
    /// A new data key; the recipients changed as given.
    Rotated(RekeyChange),
    Failed(SecretsError),
}

#[derive(Debug)]
pub struct RekeyReport {
    pub path: PathBuf,
    pub status: RekeyStatus,
}

/// Rekeys every target; a failing file does not stop the others.
pub fn rekey(
    plan: &RekeyPlan,
    identities: &Identities,
    rotate: bool,
    dry_run: bool,
) -> Vec<RekeyReport> {
    let total = plan.targets.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let outcomes = parallel::map(&plan.targets, parallel::cores(), |t| {
        let outcome = rekey_one(t, &plan.stores, identities, rotate, dry_run);
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        crate::ui::progress::count("re-keyed", n, total, "files");
        outcome
    });
    let writes: Vec<atomic::Replacement<'_>> = plan
        .targets
        .iter()
        .zip(&outcomes)
        .filter_map(|(t, o)| match o {
            Ok(Outcome { write: Some((bytes, mode)), .. }) => {
                Some(atomic::Replacement { path: &t.path, bytes, mode: *mode })
            }
            _ => None,
        })
        .collect();
    let mut written = atomic::write_many(&writes).into_iter();
    plan.targets
        .iter()
        .zip(outcomes)
        .map(|(t, outcome)| {
            let status = match outcome {
                Ok(Outcome { status, write: Some(_) }) => match written.next() {
                    Some(Err(e)) => RekeyStatus::Failed(e.into()),
                    _ => status,
                },
                Ok(Outcome { status, write: None }) => status,
                Err(e) => RekeyStatus::Failed(e),
            };
            RekeyReport { path: t.path.clone(), status }
        })
        .collect()
}

struct Outcome {
    status: RekeyStatus,
    /// The new bytes and the file's mode, when the file is to be rewritten.
    write: Option<(Vec<u8>, u32)>,
}

fn rekey_one(
    t: &RekeyTarget,
    stores: &StoresConfig,
    identities: &Identities,
    rotate: bool,
    dry_run: bool,
) -> Result<Outcome> {
    let read;
    let file = match &t.loaded {
        Some(f) => f,
        None => {
            read = SopsFile::read(&t.path, Format::from_path(&t.path))?;
            &read
        }
    };
    let rewrite = |new: &SopsFile| -> Result<Option<(Vec<u8>, u32)>> {
        let mode = fs_err::metadata(&t.path)?.permissions().mode() & 0o7777;
        Ok(Some((new.to_bytes(stores)?, mode)))
    };
    if rotate {
        let change = file.rekey_change(&t.key_groups).unwrap_or_default();
        let write =
            if dry_run { None } else { rewrite(&file.rotate(identities, Some(&t.key_groups))?)? };
        return Ok(Outcome { status: RekeyStatus::Rotated(change), write });
    }
    if dry_run {
        let status = match file.rekey_change(&t.key_groups) {
            None => RekeyStatus::UpToDate,
            Some(c) => RekeyStatus::Changed(c),
        };
        return Ok(Outcome { status, write: None });
    }
    Ok(match file.rekey(identities, &t.key_groups)? {
        None => Outcome { status: RekeyStatus::UpToDate, write: None },
        Some((new, change)) => {
            Outcome { status: RekeyStatus::Changed(change), write: rewrite(&new)? }
        }
    })
}

/// The targets `config` gives: `files` (each must match a rule), or with no `files` every
/// sops file below the config's directory that a creation rule matches. `cwd` is where
/// relative paths and sops' path matching start.
pub fn plan(config: &SopsConfig, cwd: &Path, files: &[PathBuf]) -> Result<RekeyPlan> {
    let root = config.path.parent().unwrap_or(cwd).to_owned();
    let loaded = if files.is_empty() { load_sops_files(&root)? } else { Vec::new() };
    plan_with(config, cwd, root, files, loaded)
}

fn plan_with(
    config: &SopsConfig,
    cwd: &Path,
    root: PathBuf,
    files: &[PathBuf],
    loaded: Vec<SopsFile>,
) -> Result<RekeyPlan> {
    let mut targets = Vec::new();
    if files.is_empty() {
        for file in loaded {
            match config.rule_for(&file.path, cwd) {
                Ok(Some(rule)) => targets.push(RekeyTarget {
                    path: file.path.clone(),
                    key_groups: rule.recipients(),
                    loaded: Some(file),
                }),
                Ok(None) => {}
                Err(rules::RulesError::NoMatchingRule { .. }) => {
                    tracing::debug!(file = %file.path.display(), "no creation rule matches; skipped");
                }
                Err(e) => return Err(e.into()),
            }
        }
    } else {
        for file in files {
            let rule = config
                .rule_for(file, cwd)?
                .ok_or_else(|| SecretsError::NoConfig { dir: cwd.to_owned() })?;
            targets.push(RekeyTarget::new(file.clone(), rule.recipients()));
        }
    }
    Ok(RekeyPlan { root, stores: config.stores.clone(), targets })
}

/// `.sops.yaml` as the inventory gives it.
#[derive(Debug)]
pub struct SopsYamlUpdate {
    pub path: PathBuf,
    /// The file before (`None`: there was none).
    pub old: Option<String>,
    pub new: String,
}

impl SopsYamlUpdate {
    pub fn changed(&self) -> bool {
        self.old.as_deref() != Some(self.new.as_str())
    }
}

/// When the inventory declares secrets: `.sops.yaml` regenerated from it (admins, and the
/// hosts allowed to read each file with the recipient `host_recipient` gives, from state),
/// written unless `dry_run`, and the rekey plan under those rules. `None` when the inventory
/// declares no secrets (then `.sops.yaml` is the user's own).
pub fn plan_from_inventory(
    inv: &Inventory,
    host_recipient: &dyn Fn(&HostName) -> Option<String>,
    cwd: &Path,
    files: &[PathBuf],
    dry_run: bool,
) -> Result<Option<(SopsYamlUpdate, RekeyPlan)>> {
    if inv.secrets.is_empty() && inv.hosts.iter().all(|h| h.secrets.is_empty()) {
        return Ok(None);
    }
    let policy = SecretsPolicy::new(inv, host_recipient)?;
    let root = inv.root.clone();
    let loaded = load_sops_files(&root)?;
    let existing: Vec<String> = loaded
        .iter()
        .filter_map(|f| f.path.strip_prefix(&root).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let path = root.join(rules::CONFIG_FILE_NAME);
    let old = match fs_err::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let new = policy.sops_yaml(&existing, old.as_deref(), &path)?;
    let update = SopsYamlUpdate { path, old, new };
    if update.changed() && !dry_run {
        atomic::write(&update.path, update.new.as_bytes(), 0o644)?;
    }
    let abs = std::path::absolute(&update.path)?;
    let config = SopsConfig::parse(&abs, update.new.clone())?;
    let loaded = if files.is_empty() { loaded } else { Vec::new() };
    let plan = plan_with(&config, cwd, root, files, loaded)?;
    Ok(Some((update, plan)))
}

/// When the inventory declares secrets: writes `.sops.yaml` from it if it changes (so a new
/// file gets the admins and the hosts the inventory names, as `rekey` would give it).
/// Returns whether it was written; `false` when the inventory declares no secrets.
pub fn sync_sops_yaml(
    inv: &Inventory,
    host_recipient: &dyn Fn(&HostName) -> Option<String>,
) -> Result<bool> {
    if inv.secrets.is_empty() && inv.hosts.iter().all(|h| h.secrets.is_empty()) {
        return Ok(false);
    }
    let policy = SecretsPolicy::new(inv, host_recipient)?;
    let existing: Vec<String> = load_sops_files(&inv.root)?
        .iter()
        .filter_map(|f| f.path.strip_prefix(&inv.root).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    Ok(policy.write_sops_yaml(&inv.root, &existing)?)
}

/// Every sops file under `root` (hidden directories, `target` and `result` skipped), read
/// and parsed on every core.
pub fn load_sops_files(root: &Path) -> Result<Vec<SopsFile>> {
    let paths = candidate_files(root)?;
    let loaded = parallel::map(&paths, parallel::cores(), |p| load_sops_file(p));
    Ok(loaded.into_iter().flatten().collect())
}

fn candidate_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir)?.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "result" {
                    stack.push(entry.path());
                }
            } else if ft.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The file parsed as a sops file of its extension's format; `None` when it is not one.
fn load_sops_file(path: &Path) -> Option<SopsFile> {
    let meta = fs_err::metadata(path).ok()?;
    if meta.len() > 64 * 1024 * 1024 {
        return None;
    }
    let bytes = fs_err::read(path).ok()?;
    if !bytes.windows(4).any(|w| w == b"sops") {
        return None;
    }
    SopsFile::from_bytes(path, &bytes, Format::from_path(path)).ok()
}
