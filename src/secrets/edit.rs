//! `cairn secrets edit`: decrypt into a private temp dir, run the editor, re-encrypt with
//! the same data key (unchanged values keep their ciphertext), write atomically. The
//! plaintext is removed on every exit path, including Ctrl-C and SIGTERM.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;

use fs_err::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::error::{Result, SecretsError};
use super::file::{EncryptionSpec, SopsFile};
use super::store::{Format, StoresConfig};
use super::tree::{ListItem, MapItem, Scalar, Value};
use crate::keys::Identities;

/// What the editor run did to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditOutcome {
    /// The plaintext was not changed: nothing was written.
    Unchanged,
    /// The file was re-encrypted and written.
    Written,
    /// A new file was created.
    Created,
}

/// Everything `edit` needs from its caller (the environment is passed in, never read here).
pub struct EditRequest<'a> {
    pub path: &'a Path,
    pub format: Format,
    /// The editor command line (`$SOPS_EDITOR`, `$VISUAL`, `$EDITOR`), shell-split here;
    /// `None` → `vi`.
    pub editor: Option<String>,
    /// The RAM-backed directory for the private temp dir ([`private_temp_base`]); `None`
    /// when there is none, and then the edit is refused unless `allow_disk_temp`.
    pub temp_base: Option<PathBuf>,
    /// `--allow-disk-temp`: with no RAM-backed directory, use the system temp dir (on disk).
    pub allow_disk_temp: bool,
    pub identities: &'a Identities,
    /// For a new file: who it is encrypted to.
    pub new_file_spec: &'a dyn Fn() -> Result<EncryptionSpec>,
    pub ignore_mac: bool,
    /// Whether a syntax error may re-open the editor (stdin is a terminal).
    pub interactive: bool,
    /// `stores:` of `.sops.yaml`: the layout of the plaintext shown and the file written.
    pub stores: &'a StoresConfig,
}

/// The temp dir for the plaintext: `/dev/shm` (RAM) or `$XDG_RUNTIME_DIR` when usable.
pub fn private_temp_base(xdg_runtime_dir: Option<&str>) -> Option<PathBuf> {
    let usable = |p: &Path| {
        fs_err::metadata(p).map(|m| m.is_dir()).unwrap_or(false)
            && tempfile::Builder::new().prefix(".cairn-probe").tempdir_in(p).is_ok()
    };
    let shm = Path::new("/dev/shm");
    if usable(shm) {
        return Some(shm.to_owned());
    }
    xdg_runtime_dir.map(PathBuf::from).filter(|p| p.is_absolute() && usable(p))
}

/// Where the plaintext goes: the RAM-backed `ram` directory, or with `allow_disk` the on-disk
/// `disk` directory (said once at warn level), or nowhere.
fn choose_temp_base(ram: Option<&Path>, allow_disk: bool, disk: PathBuf) -> Result<PathBuf> {
    match ram {
        Some(dir) => Ok(dir.to_owned()),
        None if allow_disk => {
            tracing::warn!(
                "no RAM-backed directory is usable; the plaintext goes to {} (--allow-disk-temp)",
                disk.display()
            );
            Ok(disk)
        }
        None => Err(SecretsError::DiskTemp { disk: disk.display().to_string() }),
    }
}

/// The file in each edit dir that names the cairn process editing there.
const EDIT_PID_FILE: &str = ".cairn-edit.pid";

/// Removes the `cairn-edit.*` dirs in `base` that belong to this user and whose cairn process
/// is gone (killed with SIGKILL, or the machine lost power in the middle of an edit): their
/// plaintext is overwritten first. Dirs without a pid file, of another user, or of a running
/// process are left alone.
fn remove_stale_edit_dirs(base: &Path) {
    let Ok(me) = fs_err::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m))
    else {
        return;
    };
    let Ok(entries) = fs_err::read_dir(base) else { return };
    for entry in entries.flatten() {
        let dir = entry.path();
        let ours = entry.file_name().to_str().is_some_and(|n| n.starts_with("cairn-edit."))
            && fs_err::symlink_metadata(&dir)
                .is_ok_and(|m| m.is_dir() && std::os::unix::fs::MetadataExt::uid(&m) == me);
        if !ours {
            continue;
        }
        let Some(pid) = fs_err::read_to_string(dir.join(EDIT_PID_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let running = crate::util::process::cmdline(pid)
            .is_some_and(|c| String::from_utf8_lossy(&c).contains("cairn"));
        if running {
            continue;
        }
        if let Ok(files) = fs_err::read_dir(&dir) {
            for file in files.flatten() {
                overwrite(&file.path());
            }
        }
        match fs_err::remove_dir_all(&dir) {
            Ok(()) => tracing::warn!(
                "removed {}: plaintext left by an edit whose process ({pid}) is gone",
                dir.display()
            ),
            Err(e) => tracing::warn!("could not remove a stale edit dir: {e}"),
        }
    }
}

/// Overwrites a regular file with zeros (best effort: the plaintext must not outlive us).
fn overwrite(file: &Path) {
    let Ok(meta) = fs_err::symlink_metadata(file) else { return };
    if !meta.is_file() {
        return;
    }
    if let Ok(mut f) = fs_err::OpenOptions::new().write(true).open(file) {
        let zeros = vec![0u8; meta.len() as usize];
        let _ = f.write_all(&zeros);
        let _ = f.sync_all();
    }
}

/// Overwrites and removes the plaintext when dropped.
struct PlaintextGuard {
    dir: Option<tempfile::TempDir>,
    file: PathBuf,
}

impl Drop for PlaintextGuard {
    fn drop(&mut self) {
        overwrite(&self.file);
        if let Some(dir) = self.dir.take() {
            if let Err(e) = dir.close() {
                tracing::error!("could not remove the plaintext temp dir: {e}");
            }
        }
    }
}

/// Splits a command line like a POSIX shell would split words (quotes and backslashes).
pub fn shell_split(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => cur.push(c),
                            '\n' => {}
                            c => {
                                cur.push('\\');
                                cur.push(c);
                            }
                        },
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(c) => cur.push(c),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// The document a new file starts from.
pub fn example_document(format: Format) -> Vec<u8> {
    match format {
        Format::Yaml => b"hello: Welcome to cairn! Edit this file as you please!\nexample_key: example_value\n# Example comment\nexample_array:\n    - example_value1\n    - example_value2\nexample_number: 1234.5678\nexample_booleans:\n    - true\n    - false\n".to_vec(),
        Format::Json => b"{\n\t\"hello\": \"Welcome to cairn! Edit this file as you please!\",\n\t\"example_key\": \"example_value\",\n\t\"example_array\": [\n\t\t\"example_value1\",\n\t\t\"example_value2\"\n\t],\n\t\"example_number\": 1234.5678,\n\t\"example_booleans\": [\n\t\ttrue,\n\t\tfalse\n\t]\n}\n".to_vec(),
        Format::Dotenv => b"hello=Welcome to cairn! Edit this file as you please!\nexample_key=example_value\n".to_vec(),
        Format::Ini => b"[hello]\nwelcome = Welcome to cairn! Edit this file as you please!\nexample_key = example_value\n".to_vec(),
        Format::Binary => b"Welcome to cairn! Edit this file as you please!\n".to_vec(),
    }
}

/// Runs one edit session.
pub fn edit(req: &EditRequest<'_>) -> Result<EditOutcome> {
    let base =
        choose_temp_base(req.temp_base.as_deref(), req.allow_disk_temp, std::env::temp_dir())?;
    remove_stale_edit_dirs(&base);
    let existing =
        if req.path.exists() { Some(SopsFile::read(req.path, req.format)?) } else { None };
    let (decrypted, plaintext) = match &existing {
        Some(file) => {
            let d = file.decrypt(req.identities, req.ignore_mac)?;
            let bytes = req.format.emit_plain(&d.docs, req.stores).map_err(|reason| {
                SecretsError::Unsupported {
                    file: req.path.to_owned(),
                    reason,
                    help: "pass --input-type to read the file as another format".into(),
                }
            })?;
            (Some(d), Zeroizing::new(bytes))
        }
        None => (None, Zeroizing::new(example_document(req.format))),
    };
    let original_hash = Sha256::digest(&*plaintext);

    let dir = tempfile::Builder::new()
        .prefix("cairn-edit.")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&base)
        .map_err(|e| {
            SecretsError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", base.display())))
        })?;
    let name = req.path.file_name().map(|n| n.to_owned()).unwrap_or_else(|| "secret".into());
    let tmp_file = dir.path().join(name);
    let guard = PlaintextGuard { dir: Some(dir), file: tmp_file.clone() };
    fs_err::write(tmp_file.with_file_name(EDIT_PID_FILE), std::process::id().to_string())?;
    {
        let mut f =
            fs_err::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp_file)?;
        f.write_all(&plaintext)?;
        f.sync_all()?;
    }

    let editor =
        req.editor.clone().filter(|e| !e.trim().is_empty()).unwrap_or_else(|| "vi".to_owned());
    let argv =
        shell_split(&editor).filter(|a| !a.is_empty()).ok_or_else(|| SecretsError::Editor {
            editor: editor.clone(),
            reason: "it cannot be split into words (unbalanced quotes?)".into(),
        })?;

    let docs = loop {
        run_editor(&argv, &tmp_file)?;
        let edited = Zeroizing::new(fs_err::read(&tmp_file)?);
        if Sha256::digest(&*edited) == original_hash {
            drop(guard);
            return Ok(EditOutcome::Unchanged);
        }
        match req.format.load_plain(&edited) {
            Ok(docs) if !docs.is_empty() => break docs,
            Ok(_) => {
                let e = SecretsError::Empty { file: req.path.to_owned() };
                if !req.interactive {
                    return Err(e);
                }
                wait_for_enter(&e.to_string());
            }
            Err(reason) => {
                let e = SecretsError::Parse {
                    file: req.path.to_owned(),
                    format: req.format.name(),
                    reason,
                };
                if !req.interactive {
                    return Err(e);
                }
                wait_for_enter(&e.to_string());
            }
        }
    };
    drop(guard);

    let (file, outcome) = match (existing, decrypted) {
        (Some(file), Some(d)) => (file.reencrypt(d, docs)?, EditOutcome::Written),
        _ => {
            let spec = (req.new_file_spec)()?;
            (SopsFile::encrypt(req.path, req.format, docs, &spec)?, EditOutcome::Created)
        }
    };
    let bytes = file.to_bytes(req.stores)?;
    let mode = fs_err::metadata(req.path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o600);
    crate::util::atomic::write(req.path, &bytes, mode)?;
    Ok(outcome)
}

fn wait_for_enter(message: &str) {
    tracing::error!("{message}");
    tracing::warn!("press Enter to return to the editor, or Ctrl-C to give up");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// Runs the editor on the file; Ctrl-C / SIGTERM to cairn stop the editor and end the edit
/// (the caller's guard removes the plaintext).
fn run_editor(argv: &[String], file: &Path) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut editor = tokio::process::Command::new(&argv[0]);
        // The editor gets the plaintext file, not cairn's credentials.
        for var in crate::util::process::credential_vars() {
            editor.env_remove(var);
        }
        let mut child =
            editor.args(&argv[1..]).arg(file).kill_on_drop(true).spawn().map_err(|e| {
                SecretsError::Editor { editor: argv.join(" "), reason: e.to_string() }
            })?;
        let signal_name = tokio::select! {
            status = child.wait() => {
                let status = status?;
                if status.success() {
                    return Ok(());
                }
                return Err(SecretsError::Editor {
                    editor: argv.join(" "),
                    reason: format!("it exited with {status}; the file was not changed"),
                });
            }
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        };
        let _ = child.start_kill();
        let _ = child.wait().await;
        Err(SecretsError::Interrupted { signal: signal_name })
    })
}

/// Whether stdin is a terminal (a syntax error then re-opens the editor).
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// `--extract '["a"][0]["b"]'`: the path elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractStep {
    Key(String),
    Index(usize),
}

pub fn parse_extract(s: &str) -> std::result::Result<Vec<ExtractStep>, String> {
    let mut steps = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let r = rest.strip_prefix('[').ok_or("must be a sequence of [\"key\"] or [index]")?;
        if let Some(r) = r.strip_prefix('"') {
            let end = r.find("\"]").ok_or("has an unterminated [\"key\"]")?;
            steps.push(ExtractStep::Key(r[..end].to_owned()));
            rest = &r[end + 2..];
        } else {
            let end = r.find(']').ok_or("has an unterminated [index]")?;
            let i = r[..end]
                .trim()
                .parse()
                .map_err(|_| format!("has an invalid index `{}`", &r[..end]))?;
            steps.push(ExtractStep::Index(i));
            rest = &r[end + 1..];
        }
    }
    Ok(steps)
}

/// What `--extract` selected: a raw string to print as is, or a subtree to emit.
#[derive(Debug)]
pub enum Extracted {
    Raw(Vec<u8>),
    Tree(super::tree::Map),
    List(Vec<ListItem>),
}

pub fn extract(
    doc: &super::tree::Map,
    steps: &[ExtractStep],
) -> std::result::Result<Extracted, String> {
    let mut cur = Value::Map(doc.clone());
    for step in steps {
        cur = match (step, cur) {
            (ExtractStep::Key(k), Value::Map(m)) => m
                .into_iter()
                .find_map(|i| match i {
                    MapItem::Entry { key, value } if key == *k => Some(value),
                    _ => None,
                })
                .ok_or_else(|| format!("does not exist: no key `{k}`"))?,
            (ExtractStep::Index(i), Value::List(l)) => l
                .into_iter()
                .filter_map(|i| match i {
                    ListItem::Value(v) => Some(v),
                    ListItem::Comment(_) => None,
                })
                .nth(*i)
                .ok_or_else(|| format!("does not exist: no element {i}"))?,
            (ExtractStep::Key(k), _) => {
                return Err(format!(
                    "does not exist: `{k}` is looked up in something that is not a map"
                ))
            }
            (ExtractStep::Index(i), _) => {
                return Err(format!(
                    "does not exist: [{i}] is looked up in something that is not a list"
                ))
            }
        };
    }
    Ok(match cur {
        Value::Map(m) => Extracted::Tree(m),
        Value::List(l) => Extracted::List(l),
        Value::Scalar(Scalar::Bytes(b)) => Extracted::Raw(b),
        Value::Scalar(s) => Extracted::Raw(super::cipher::to_bytes(&s).to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_never_goes_to_disk_unless_allowed() {
        let disk = PathBuf::from("/var/tmp");
        let ram = Path::new("/dev/shm");
        assert_eq!(choose_temp_base(Some(ram), false, disk.clone()).unwrap(), ram);
        assert_eq!(choose_temp_base(Some(ram), true, disk.clone()).unwrap(), ram);
        assert_eq!(choose_temp_base(None, true, disk.clone()).unwrap(), disk);
        let err = choose_temp_base(None, false, disk).unwrap_err();
        assert!(matches!(err, SecretsError::DiskTemp { ref disk } if disk == "/var/tmp"), "{err}");
    }

    #[test]
    fn stale_edit_dirs_of_gone_processes_are_removed_and_others_kept() {
        let base = tempfile::tempdir().unwrap();
        let gone = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            pid
        };
        let make = |name: &str, pid: Option<u32>| {
            let dir = base.path().join(name);
            fs_err::create_dir(&dir).unwrap();
            fs_err::write(dir.join("secret.yaml"), "password: hunter2\n").unwrap();
            if let Some(pid) = pid {
                fs_err::write(dir.join(EDIT_PID_FILE), pid.to_string()).unwrap();
            }
            dir
        };
        let stale = make("cairn-edit.stale", Some(gone));
        // This test binary's name contains "cairn": a live edit.
        let live = make("cairn-edit.live", Some(std::process::id()));
        let unknown = make("cairn-edit.old", None);
        let other = make("not-ours.1", Some(gone));
        remove_stale_edit_dirs(base.path());
        assert!(!stale.exists());
        assert!(live.exists() && unknown.exists() && other.exists());
    }

    #[test]
    fn splits_editor_command_lines() {
        assert_eq!(shell_split("vim").unwrap(), vec!["vim"]);
        assert_eq!(shell_split("code --wait").unwrap(), vec!["code", "--wait"]);
        assert_eq!(
            shell_split("'/opt/my editor/ed' -n \"a b\" c\\ d").unwrap(),
            vec!["/opt/my editor/ed", "-n", "a b", "c d"]
        );
        assert!(shell_split("'unterminated").is_none());
    }

    #[test]
    fn extract_paths() {
        assert_eq!(
            parse_extract(r#"["a"][0]["b c"]"#).unwrap(),
            vec![
                ExtractStep::Key("a".into()),
                ExtractStep::Index(0),
                ExtractStep::Key("b c".into())
            ]
        );
        assert!(parse_extract("a.b").is_err());
    }
}
