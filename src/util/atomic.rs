//! Atomic file writes: temp file in the same directory, private mode before any byte,
//! fsync, rename, fsync of the directory. Used for state, keys and secrets files.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `bytes` to `path` atomically with the given mode (e.g. `0o600`).
/// A reader sees the old content or the new one, never a mix or a truncated file.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    replace(path, bytes, mode)?;
    sync_dir(parent(path));
    Ok(())
}

/// Temp file (mode set before any byte), fsync, rename over `path`; the directory is not
/// synced yet.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = temp_with(path, bytes, mode)?;
    tmp.as_file().sync_all().map_err(|e| with_path(e, path))?;
    tmp.persist(path).map_err(|e| with_path(e.error, path))?;
    Ok(())
}

/// One file for [`write_many`].
#[derive(Debug, Clone, Copy)]
pub struct Replacement<'a> {
    pub path: &'a Path,
    pub bytes: &'a [u8],
    pub mode: u32,
}

/// [`write`] for many files, with the same guarantee per file (temp file, fsync, rename),
/// run by a pool of threads: creating, syncing and renaming wait on the disk, not the CPU,
/// and concurrent fsyncs share journal commits instead of one commit per file. Each
/// directory is synced once at the end. Results in input order; a failing file does not
/// stop the others.
pub fn write_many(files: &[Replacement<'_>]) -> Vec<std::io::Result<()>> {
    /// More threads than cores: they wait on the disk.
    const IO_WORKERS: usize = 16;
    let results = super::parallel::map(files, IO_WORKERS, |f| replace(f.path, f.bytes, f.mode));
    let mut dirs: Vec<&Path> = Vec::new();
    for (f, r) in files.iter().zip(&results) {
        let dir = parent(f.path);
        if r.is_ok() && !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        sync_dir(dir);
    }
    results
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A temp file next to `path`, private mode set before any byte, holding `bytes` (not yet
/// synced).
fn temp_with(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = parent(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| with_path(e, dir))?;
    // tempfile creates with the requested mode (masked by umask); set it exactly, still empty.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| with_path(e, tmp.path()))?;
    tmp.write_all(bytes).map_err(|e| with_path(e, path))?;
    Ok(tmp)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs_err::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_private_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret.txt");
        write(&p, b"one", 0o600).unwrap();
        write(&p, b"two", 0o600).unwrap();
        assert_eq!(fs_err::read(&p).unwrap(), b"two");
        let mode = fs_err::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // no temp files left behind
        assert_eq!(fs_err::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_many_replaces_each_file_and_reports_each_failure() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("missing-dir").join("b");
        let c = dir.path().join("c");
        fs_err::write(&a, "old").unwrap();
        let results = write_many(&[
            Replacement { path: &a, bytes: b"new a", mode: 0o640 },
            Replacement { path: &b, bytes: b"b", mode: 0o600 },
            Replacement { path: &c, bytes: b"new c", mode: 0o600 },
        ]);
        assert!(results[0].is_ok() && results[2].is_ok());
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("missing-dir"), "{err}");
        assert_eq!(fs_err::read(&a).unwrap(), b"new a");
        assert_eq!(fs_err::read(&c).unwrap(), b"new c");
        assert_eq!(fs_err::metadata(&a).unwrap().permissions().mode() & 0o777, 0o640);
        // no temp files left behind
        assert_eq!(fs_err::read_dir(dir.path()).unwrap().count(), 2);
    }
}
