//! What a host is seeded with besides its keys (`extra_files`, `extra_file`,
//! `disk_encryption_key` in the inventory). Every file goes through [`Session::upload_owned`]:
//! a private temp file next to its final path, owner and mode set while it is still empty,
//! then the bytes, a size check, fsync and rename; a failed upload removes it. Plaintext of
//! sops files is decrypted in memory and streamed from there: it never touches the operator's
//! disk. Disk keys go to the installer's RAM only (a tmpfs or ramfs, checked first), before
//! the disk is partitioned, so a LUKS key file never reaches the target's disk unencrypted.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::inventory::{DiskKey, Seed, SeedSource};
use crate::keys::Identities;
use crate::ssh::{RemoteCommand, Session, UploadSource};

/// Checks that a directory (created 0700 if missing) is on a RAM file system; prints `ram`
/// or the file system's magic number (`stat -f`, GNU or busybox).
const RAM_CHECK_SH: &str = r#"set -eu
umask 077
mkdir -p -- "$CAIRN_DIR"
t=$(stat -f -c %t -- "$CAIRN_DIR")
case $t in 1021994 | 858458f6) echo ram ;; *) echo "$t" ;; esac
"#;

/// Creates directories (`MODE PATH` pairs as arguments), then sets their modes.
const MKDIRS_SH: &str = r#"set -eu
umask 022
while [ $# -gt 1 ]; do
  mkdir -p -- "$2"
  chmod "$1" -- "$2"
  shift 2
done
"#;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum SeedError {
    #[error("cannot read {path} to seed the host")]
    #[diagnostic(code(cairn::seed::read), help("{help}"))]
    Read {
        path: PathBuf,
        help: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is a {what}: extra_files copies plain files and directories only")]
    #[diagnostic(
        code(cairn::seed::file_type),
        help("put the file itself in the directory (a link's target may lie outside it)")
    )]
    FileType { path: PathBuf, what: &'static str },

    #[error("the disk encryption key {path} would be on {fs} on the installer, not in RAM")]
    #[diagnostic(
        code(cairn::seed::not_in_ram),
        help("choose a path on the installer's tmpfs (like /tmp/secret.key or /run/secret.key) in `disk_encryption_key`, and point the disk layout there")
    )]
    NotInRam { path: String, fs: String },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Ssh(#[from] crate::ssh::Error),
}

/// How many files and bytes were written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seeded {
    pub files: usize,
    pub bytes: u64,
}

/// Writes `seed`'s `extra_files` tree and `extra_file`s under `root` (the installer's
/// `/mnt`); `repo` is the repository root the seed's paths are relative to.
pub async fn write_files(
    session: &Session,
    root: &str,
    repo: &Path,
    seed: &Seed,
    identities: &Identities,
) -> Result<Seeded, SeedError> {
    let mut done = Seeded::default();
    if let Some(dir) = &seed.extra_files {
        let tree = walk(&repo.join(dir))?;
        if !tree.dirs.is_empty() {
            let mut cmd = RemoteCommand::new("sh").arg("-c").arg(MKDIRS_SH).arg("sh");
            for (rel, mode) in &tree.dirs {
                cmd = cmd.arg(format!("{mode:o}")).arg(format!("{root}/{rel}"));
            }
            session.exec(&cmd).await?;
        }
        for (rel, mode) in &tree.files {
            let local = repo.join(dir).join(rel);
            let sent = session
                .upload_owned(
                    UploadSource::File(&local),
                    &format!("{root}/{rel}"),
                    *mode,
                    Some((0, 0)),
                )
                .await?;
            done.files += 1;
            done.bytes += sent;
        }
    }
    for file in &seed.files {
        let dest = format!("{root}{}", file.path);
        let parent = dest.rsplit_once('/').map_or(root, |(p, _)| p);
        session.exec(&RemoteCommand::new("mkdir").arg("-p").arg("--").arg(parent)).await?;
        let bytes = read_source(repo, &file.source, identities)?;
        let sent = session
            .upload_owned(UploadSource::Bytes(&bytes), &dest, file.mode, Some((file.uid, file.gid)))
            .await?;
        tracing::info!(path = %file.path, mode = format!("{:o}", file.mode), "seeded a file");
        done.files += 1;
        done.bytes += sent;
    }
    Ok(done)
}

/// Uploads each disk encryption key to the installer's RAM, mode 0600, after checking its
/// directory is a tmpfs or ramfs.
pub async fn write_disk_keys(
    session: &Session,
    repo: &Path,
    keys: &[DiskKey],
    identities: &Identities,
) -> Result<(), SeedError> {
    for key in keys {
        let dir =
            key.path.rsplit_once('/').map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
        let check = RemoteCommand::new("sh").arg("-c").arg(RAM_CHECK_SH).env("CAIRN_DIR", dir);
        let fs = session.exec(&check).await?.stdout_trimmed();
        if fs != "ram" {
            return Err(SeedError::NotInRam { path: key.path.clone(), fs: fs_name(&fs) });
        }
        let bytes = read_source(repo, &key.source, identities)?;
        session.upload_owned(UploadSource::Bytes(&bytes), &key.path, 0o600, Some((0, 0))).await?;
        tracing::info!(path = %key.path, "uploaded a disk encryption key to the installer's RAM");
    }
    Ok(())
}

/// A file system's name from its `statfs` magic number, as `stat -f -c %t` prints it.
fn fs_name(magic: &str) -> String {
    let name = match magic {
        "ef53" => "ext2/3/4",
        "9123683e" => "btrfs",
        "58465342" => "xfs",
        "4d44" => "vfat",
        "2fc12fc1" => "zfs",
        "794c7630" => "overlayfs",
        "" => return "a file system `stat -f` could not name".into(),
        _ => return format!("a file system with magic number 0x{magic}"),
    };
    format!("{name} (a disk file system)")
}

/// The bytes a source holds: a file read as it is, or a sops file decrypted in memory (the
/// value at `key`, else the whole plaintext in its own format).
fn read_source(
    repo: &Path,
    source: &SeedSource,
    identities: &Identities,
) -> Result<Zeroizing<Vec<u8>>, SeedError> {
    match source {
        SeedSource::File { path } => {
            let path = repo.join(path);
            let bytes = fs_err::read(&path).map_err(|e| SeedError::Read {
                path: path.clone(),
                help: "the inventory names this file as a source; check the path (relative to the repository root)".into(),
                source: e,
            })?;
            Ok(Zeroizing::new(bytes))
        }
        SeedSource::Sops { path, key } => {
            let path = repo.join(path);
            let format = crate::secrets::ops::format_for(&path, None);
            let extract = (!key.is_empty()).then(|| sops_extract(key));
            let bytes = crate::secrets::ops::decrypt_to_bytes(
                &path,
                format,
                format,
                extract.as_deref(),
                false,
                identities,
                &Default::default(),
            )?;
            Ok(Zeroizing::new(bytes))
        }
    }
}

/// `["a"]["b"]`, the `--extract` form of sops for a key path (the inventory allows only
/// letters, digits and `_ . -` in each key, so nothing needs escaping).
fn sops_extract(key: &[String]) -> String {
    key.iter().map(|k| format!("[\"{k}\"]")).collect()
}

/// A directory tree: directories and files relative to its top, with their modes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tree {
    dirs: Vec<(String, u32)>,
    files: Vec<(String, u32)>,
}

fn walk(top: &Path) -> Result<Tree, SeedError> {
    let mut tree = Tree::default();
    walk_into(top, "", &mut tree)?;
    Ok(tree)
}

fn walk_into(dir: &Path, rel: &str, tree: &mut Tree) -> Result<(), SeedError> {
    use std::os::unix::fs::PermissionsExt;
    let read = |path: &Path, e: std::io::Error| SeedError::Read {
        path: path.to_owned(),
        help: "`extra_files` names a directory of the repository; check it exists and is readable"
            .into(),
        source: e,
    };
    let mut entries: Vec<_> = fs_err::read_dir(dir)
        .map_err(|e| read(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(SeedError::FileType { path, what: "file whose name is not UTF-8" });
        };
        let child = if rel.is_empty() { name.to_owned() } else { format!("{rel}/{name}") };
        let meta = fs_err::symlink_metadata(&path).map_err(|e| read(&path, e))?;
        let mode = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        if kind.is_dir() {
            tree.dirs.push((child.clone(), mode));
            walk_into(&path, &child, tree)?;
        } else if kind.is_file() {
            tree.files.push((child, mode));
        } else if kind.is_symlink() {
            return Err(SeedError::FileType { path, what: "symbolic link" });
        } else {
            return Err(SeedError::FileType { path, what: "special file" });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_lists_directories_before_their_files_in_name_order() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path();
        fs_err::create_dir_all(top.join("etc/ssh")).unwrap();
        fs_err::write(top.join("etc/motd"), "hi\n").unwrap();
        fs_err::write(top.join("etc/ssh/banner"), "b\n").unwrap();
        fs_err::set_permissions(top.join("etc/motd"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        fs_err::set_permissions(top.join("etc/ssh"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let tree = walk(top).unwrap();
        assert_eq!(tree.dirs, [("etc".to_owned(), 0o755), ("etc/ssh".to_owned(), 0o700)]);
        assert_eq!(tree.files[0], ("etc/motd".to_owned(), 0o640));
        assert_eq!(tree.files[1].0, "etc/ssh/banner");
        std::os::unix::fs::symlink("/etc/passwd", top.join("etc/link")).unwrap();
        let err = walk(top).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "etc/link is a symbolic link: extra_files copies plain files and directories only"
            ),
            "{err}"
        );
    }

    #[test]
    fn key_paths_become_sops_extract_expressions() {
        assert_eq!(sops_extract(&["wg0".into()]), r#"["wg0"]"#);
        assert_eq!(sops_extract(&["a".into(), "b-c".into()]), r#"["a"]["b-c"]"#);
    }

    #[test]
    fn file_systems_are_named_from_their_magic() {
        assert_eq!(fs_name("ef53"), "ext2/3/4 (a disk file system)");
        assert_eq!(fs_name("abc"), "a file system with magic number 0xabc");
    }

    #[test]
    fn the_remote_scripts_are_valid_sh() {
        for script in [RAM_CHECK_SH, MKDIRS_SH] {
            let status =
                std::process::Command::new("sh").arg("-n").arg("-c").arg(script).status().unwrap();
            assert!(status.success());
        }
    }
}
