//! The default state backend: `.cairn/state.json` next to the inventory.
//!
//! - `state.json`: pretty JSON, keys in a stable order, mode 0600, replaced atomically.
//! - `state.json.bak`: the version before the last commit.
//! - `state.lock`: flock(2)ed by the run holding the lock, and holding that run's
//!   [`LockHolder`] as JSON so others can name it. Emptied on release; never deleted (deleting a
//!   lock file others may have open would let two runs lock two different files).

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs_err::os::unix::fs::{FileExt, OpenOptionsExt};
use serde::Deserialize;

use super::{sys, LockHolder, LockWait, State, StateData, StateError, StateLock, SCHEMA_VERSION};
use crate::util::atomic;

const STATE_FILE: &str = "state.json";
const BACKUP_FILE: &str = "state.json.bak";
const LOCK_FILE: &str = "state.lock";
/// Temp files of an interrupted write start with this (see `util::atomic`).
const TEMP_PREFIX: &str = ".state.json";

/// How often a waiting run retries the lock.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// State in `<repo>/.cairn/state.json`.
#[derive(Debug, Clone)]
pub struct FileState {
    dir: PathBuf,
    state_path: PathBuf,
    backup_path: PathBuf,
    lock_path: PathBuf,
}

impl FileState {
    pub fn new(repo_root: impl AsRef<Path>) -> Self {
        let dir = crate::repo::Repo::new(repo_root.as_ref()).state_dir();
        Self {
            state_path: dir.join(STATE_FILE),
            backup_path: dir.join(BACKUP_FILE),
            lock_path: dir.join(LOCK_FILE),
            dir,
        }
    }

    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    pub fn backup_path(&self) -> &Path {
        &self.backup_path
    }

    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    fn ensure_dir(&self) -> io::Result<()> {
        match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("cannot create the state directory {}: {e}", self.dir.display()),
            )),
        }
    }

    fn parse(&self, bytes: &[u8]) -> Result<StateData, StateError> {
        // The schema is checked before the rest, so a newer file is refused as such rather
        // than as a file with fields this binary does not know.
        #[derive(Deserialize)]
        struct Header {
            schema: u64,
        }
        let header: Header = serde_json::from_slice(bytes).map_err(|e| self.corrupt(&e))?;
        if header.schema > u64::from(SCHEMA_VERSION) {
            return Err(StateError::SchemaTooNew {
                location: self.state_path.display().to_string(),
                found: header.schema,
                supported: SCHEMA_VERSION,
            });
        }
        if header.schema < u64::from(SCHEMA_VERSION) {
            return super::migrate::from_slice(bytes, header.schema).map_err(|e| self.corrupt(&e));
        }
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(&e))
    }

    fn corrupt(&self, e: &serde_json::Error) -> StateError {
        let full = e.to_string();
        // serde_json appends the position; it is reported in fields of its own.
        let message = match full.rfind(" at line ") {
            Some(i) => full[..i].to_owned(),
            None => full,
        };
        StateError::Corrupt {
            path: self.state_path.clone(),
            line: e.line(),
            column: e.column(),
            message,
            backup: self.backup_path.clone(),
        }
    }

    fn open_lock_file(&self) -> io::Result<fs_err::File> {
        fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.lock_path)
    }

    /// The record in the lock file: `None` when empty (released cleanly, or its holder has
    /// not written it yet), `Some(Err)` when unreadable.
    fn read_record(&self) -> Option<Result<LockHolder, serde_json::Error>> {
        let text = fs_err::read_to_string(&self.lock_path).ok()?;
        if text.trim().is_empty() {
            return None;
        }
        Some(serde_json::from_str(&text))
    }

    /// The current holder, allowing it a moment to record itself if it just took the lock.
    fn current_holder(&self) -> Option<Box<LockHolder>> {
        for _ in 0..10 {
            match self.read_record() {
                Some(Ok(h)) => return Some(Box::new(h)),
                Some(Err(_)) => return None,
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        None
    }

    /// Takes the flock, waiting as `wait` says.
    fn acquire(&self, wait: LockWait) -> Result<fs_err::File, StateError> {
        self.ensure_dir()?;
        let started = Instant::now();
        let mut announced = false;
        loop {
            let file = self.open_lock_file()?;
            if sys::try_lock_exclusive(file.file()).map_err(|e| {
                io::Error::new(e.kind(), format!("flock {}: {e}", self.lock_path.display()))
            })? {
                // Someone may have replaced the lock file between our open and our flock:
                // then we locked a file nobody else will look at. Start over.
                let ours = file.metadata()?;
                match fs_err::metadata(&self.lock_path) {
                    Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {
                        return Ok(file);
                    }
                    _ => continue,
                }
            }
            let holder = self.current_holder();
            let location = self.lock_path.display().to_string();
            match wait {
                LockWait::Fail => return Err(StateError::Locked { holder, location }),
                LockWait::Timeout(limit) => {
                    let waited = started.elapsed();
                    if waited >= limit {
                        return Err(StateError::LockTimeout { holder, waited: limit, location });
                    }
                    if !announced {
                        announced = true;
                        match &holder {
                            Some(h) => tracing::info!("state is locked by {h}; waiting for it"),
                            None => {
                                tracing::info!("state is locked by another run; waiting for it")
                            }
                        }
                    }
                    drop(file);
                    std::thread::sleep(LOCK_POLL.min(limit - waited));
                }
            }
        }
    }

    /// Decides what to do about a record left by a run that no longer holds the flock.
    fn take_over(
        &self,
        previous: Option<Result<LockHolder, serde_json::Error>>,
    ) -> Result<(), StateError> {
        match previous {
            None => Ok(()),
            Some(Err(_)) => {
                tracing::warn!(
                    "the state lock {} held an unreadable record; taking the lock over",
                    self.lock_path.display()
                );
                Ok(())
            }
            Some(Ok(prev)) => {
                let this_host = super::this_hostname();
                if prev.hostname != this_host {
                    // The kernel says nobody holds the lock, but a lock file on a network
                    // file system may be locked only locally on that other host: that run
                    // may be alive, and its pid means nothing here.
                    return Err(StateError::ForeignStaleLock {
                        holder: Box::new(prev),
                        this_host,
                        path: self.lock_path.clone(),
                    });
                }
                if sys::process_exists(prev.pid) {
                    tracing::warn!(
                        "the state lock names {prev}, but that process no longer holds it (its pid \
                         was reused); taking the lock over"
                    );
                } else {
                    tracing::warn!(
                        "the previous cairn run ({prev}) died without releasing the state lock; \
                         taking the lock over"
                    );
                }
                Ok(())
            }
        }
    }

    /// Removes temp files left by a write that was interrupted (we hold the lock: no other
    /// writer can be using them).
    fn remove_leftover_temp_files(&self) -> io::Result<()> {
        for entry in fs_err::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) && name.ends_with(".tmp") {
                tracing::debug!("removing {} left by an interrupted write", entry.path().display());
                fs_err::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Keeps the current state file as the backup, atomically: a hard link renamed over the
    /// old backup (the state file itself is then replaced by a new inode, never written in
    /// place). Falls back to a copy where hard links are not supported.
    fn keep_backup(&self) -> io::Result<()> {
        let link = self.dir.join(format!("{TEMP_PREFIX}.bak.link.tmp"));
        match fs_err::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if same_file(&self.state_path, &self.backup_path) {
            // A write killed between keeping the backup and replacing the state left both
            // names on one inode: the backup already holds this state. (Renaming a link
            // over another link of the same inode is a no-op that would leave the temp
            // link behind.)
            return Ok(());
        }
        match fs_err::hard_link(&self.state_path, &link) {
            Ok(()) => fs_err::rename(&link, &self.backup_path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()), // first write
            Err(e) => {
                tracing::debug!("hard link for the state backup failed ({e}); copying instead");
                match fs_err::read(&self.state_path) {
                    Ok(bytes) => atomic::write(&self.backup_path, &bytes, 0o600),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

impl State for FileState {
    fn location(&self) -> String {
        self.state_path.display().to_string()
    }

    fn read(&self) -> Result<StateData, StateError> {
        match fs_err::read(&self.state_path) {
            Ok(bytes) => self.parse(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StateData::default()),
            Err(e) => Err(e.into()),
        }
    }

    fn lock(&self, holder: LockHolder, wait: LockWait) -> Result<Box<dyn StateLock>, StateError> {
        let file = self.acquire(wait)?;
        // On error, dropping `file` releases the flock and leaves the record as it was.
        self.take_over(self.read_record())?;
        // From here on `lock` empties the record and releases the flock on every exit.
        let lock = LockFile { file };
        let mut record = serde_json::to_vec_pretty(&holder).map_err(io::Error::other)?;
        record.push(b'\n');
        lock.file.set_len(0)?;
        lock.file.write_all_at(&record, 0)?;
        self.remove_leftover_temp_files()?;
        let data = self.read()?;
        tracing::debug!("took the state lock {} as {holder}", self.lock_path.display());
        Ok(Box::new(FileStateLock { state: self.clone(), _lock: lock, holder, data }))
    }
}

/// The flocked lock file; dropping it empties the record and releases the lock.
#[derive(Debug)]
struct LockFile {
    file: fs_err::File,
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Empty first, so the next holder does not mistake a clean release for a dead run;
        // closing the file (right after) releases the flock.
        if let Err(e) = self.file.set_len(0) {
            tracing::warn!("could not clear the state lock record: {e}");
        }
    }
}

/// [`FileState`] locked by this process.
#[derive(Debug)]
pub struct FileStateLock {
    state: FileState,
    _lock: LockFile,
    holder: LockHolder,
    data: StateData,
}

impl FileState {
    fn write(&self, data: &StateData) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(data).map_err(io::Error::other)?;
        bytes.push(b'\n');
        self.keep_backup()?;
        atomic::write(&self.state_path, &bytes, 0o600)?;
        Ok(())
    }
}

impl StateLock for FileStateLock {
    fn data(&self) -> &StateData {
        &self.data
    }

    fn data_mut(&mut self) -> &mut StateData {
        &mut self.data
    }

    fn commit(&mut self) -> Result<(), StateError> {
        let state = &self.state;
        self.data.commit_with(|data, _| state.write(data))
    }

    fn holder(&self) -> &LockHolder {
        &self.holder
    }

    fn location(&self) -> String {
        self.state.location()
    }
}

/// Whether two paths name the same inode (false when either is missing).
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs_err::metadata(a), fs_err::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
