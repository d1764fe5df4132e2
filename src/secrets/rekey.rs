//! `cairn secrets rekey`: make every secrets file's recipients match its creation rule, in
//! one process, with `sops updatekeys` semantics (same data key, values untouched; files
//! already right are not rewritten), or with `--rotate` a new data key for every file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::{Result, SecretsError};
use super::file::{RekeyChange, SopsFile};
use super::store::Format;
use crate::keys::{AgeRecipient, Identities};

/// One file and the key groups its rule asks for.
#[derive(Debug)]
pub struct RekeyTarget {
    pub path: PathBuf,
    pub key_groups: Vec<Vec<AgeRecipient>>,
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
    targets: &[RekeyTarget],
    identities: &Identities,
    rotate: bool,
    dry_run: bool,
) -> Vec<RekeyReport> {
    targets
        .iter()
        .map(|t| {
            let status = match rekey_one(t, identities, rotate, dry_run) {
                Ok(s) => s,
                Err(e) => RekeyStatus::Failed(e),
            };
            RekeyReport { path: t.path.clone(), status }
        })
        .collect()
}

fn rekey_one(
    t: &RekeyTarget,
    identities: &Identities,
    rotate: bool,
    dry_run: bool,
) -> Result<RekeyStatus> {
    let file = SopsFile::read(&t.path, Format::from_path(&t.path))?;
    if rotate {
        let change = file.rekey_change(&t.key_groups).unwrap_or_default();
        if dry_run {
            return Ok(RekeyStatus::Rotated(change));
        }
        let rotated = file.rotate(identities, Some(&t.key_groups))?;
        write_keeping_mode(&t.path, &rotated.to_bytes()?)?;
        return Ok(RekeyStatus::Rotated(change));
    }
    if dry_run {
        return Ok(match file.rekey_change(&t.key_groups) {
            None => RekeyStatus::UpToDate,
            Some(c) => RekeyStatus::Changed(c),
        });
    }
    match file.rekey(identities, &t.key_groups)? {
        None => Ok(RekeyStatus::UpToDate),
        Some((new, change)) => {
            write_keeping_mode(&t.path, &new.to_bytes()?)?;
            Ok(RekeyStatus::Changed(change))
        }
    }
}

fn write_keeping_mode(path: &Path, bytes: &[u8]) -> Result<()> {
    let mode = fs_err::metadata(path)?.permissions().mode() & 0o7777;
    crate::util::atomic::write(path, bytes, mode)?;
    Ok(())
}

/// Every sops file under `root` (hidden directories, `target` and `result` skipped).
pub fn find_sops_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = fs_err::read_dir(&dir)?.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "result" {
                    stack.push(path);
                }
            } else if ft.is_file() && is_sops_file(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a file parses as a sops file of its extension's format.
pub fn is_sops_file(path: &Path) -> bool {
    let Ok(meta) = fs_err::metadata(path) else { return false };
    if meta.len() > 64 * 1024 * 1024 {
        return false;
    }
    let Ok(bytes) = fs_err::read(path) else { return false };
    if !bytes.windows(4).any(|w| w == b"sops") {
        return false;
    }
    SopsFile::from_bytes(path, &bytes, Format::from_path(path)).is_ok()
}
