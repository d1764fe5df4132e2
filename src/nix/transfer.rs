//! The local side of the default copy strategy: the closure as one zstd-compressed tar stream.
//!
//! `tar` and `zstd` run as a pipe (`tar -c | zstd -T0 -3`): both are multi-threaded or
//! streaming C tools every operator machine has next to Nix, the stream is exactly what the
//! target's `zstd -d | tar -x` expects, and cairn's dependency tree stays free of a C zstd
//! build. Paths the target already holds are left out.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;

use super::runner::stream_stderr;
use super::store_path::StorePath;
use super::NixError;
use crate::util::shell::quote;

#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// The directory holding `nix/store` locally (`/`).
    pub store_root: PathBuf,
    /// zstd level: 3 keeps up with the link; higher only helps on very slow links.
    pub zstd_level: u8,
    pub tar: PathBuf,
    pub zstd: PathBuf,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self { store_root: "/".into(), zstd_level: 3, tar: "tar".into(), zstd: "zstd".into() }
    }
}

/// A running `tar | zstd` pipe. Read the compressed stream from [`TarStream::stdout`], then
/// call [`TarStream::finish`], which fails if either process did.
#[derive(Debug)]
pub struct TarStream {
    tar: Child,
    zstd: Child,
    stdout: Option<ChildStdout>,
    tar_stderr: JoinHandle<String>,
    zstd_stderr: JoinHandle<String>,
    feeder: JoinHandle<std::io::Result<()>>,
    /// Passes tar's output to zstd, counting it in `raw`.
    relay: JoinHandle<std::io::Result<u64>>,
    raw: Arc<AtomicU64>,
    /// The paths in the stream, in order.
    pub paths: Vec<StorePath>,
}

impl TarStream {
    /// Starts streaming `paths` minus those in `skip` (what the target already has).
    pub fn spawn(
        paths: &[StorePath],
        skip: &BTreeSet<StorePath>,
        options: &TransferOptions,
    ) -> Result<Self, NixError> {
        let mut wanted: Vec<StorePath> =
            paths.iter().filter(|p| !skip.contains(*p)).cloned().collect();
        wanted.sort();
        wanted.dedup();
        let spawn_err = |program: &PathBuf| {
            let program = program.display().to_string();
            move |source| NixError::Spawn { program, source }
        };
        let mut tar = tokio::process::Command::new(&options.tar)
            .args(tar_args(options))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err(&options.tar))?;
        // tar's output passes through cairn on its way to zstd, so progress can be told in
        // bytes of store paths (what path-info's total counts), not only compressed bytes.
        let mut tar_out = tar.stdout.take().expect("piped");
        let mut zstd = tokio::process::Command::new(&options.zstd)
            .args(zstd_args(options))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err(&options.zstd))?;

        let mut list = Vec::new();
        for p in &wanted {
            list.extend_from_slice(p.relative().as_bytes());
            list.push(0);
        }
        let mut stdin = tar.stdin.take().expect("piped");
        let feeder = tokio::spawn(async move {
            stdin.write_all(&list).await?;
            stdin.shutdown().await
        });
        let raw = Arc::new(AtomicU64::new(0));
        let mut zstd_in = zstd.stdin.take().expect("piped");
        let counted = raw.clone();
        let relay = tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = tar_out.read(&mut buf).await?;
                if n == 0 {
                    zstd_in.shutdown().await?;
                    return Ok(counted.load(Ordering::Relaxed));
                }
                zstd_in.write_all(&buf[..n]).await?;
                counted.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        let tar_stderr = tokio::spawn(stream_stderr(tar.stderr.take().expect("piped"), "tar"));
        let zstd_stderr = tokio::spawn(stream_stderr(zstd.stderr.take().expect("piped"), "zstd"));
        let stdout = zstd.stdout.take();
        Ok(Self { tar, zstd, stdout, tar_stderr, zstd_stderr, feeder, relay, raw, paths: wanted })
    }

    /// The compressed stream (taken once).
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Bytes of tar (store paths and their headers) passed to zstd so far.
    pub fn raw_bytes(&self) -> u64 {
        self.raw.load(Ordering::Relaxed)
    }

    /// Waits for both processes; an error carries the failing one's stderr tail.
    pub async fn finish(mut self) -> Result<(), NixError> {
        drop(self.stdout.take());
        let fed = self.feeder.await;
        let tar = self.tar.wait().await;
        let zstd = self.zstd.wait().await;
        let tar_tail = self.tar_stderr.await.unwrap_or_default();
        let zstd_tail = self.zstd_stderr.await.unwrap_or_default();
        for (name, status, tail) in [("tar", tar, tar_tail), ("zstd", zstd, zstd_tail)] {
            let status = status.map_err(|source| NixError::Io { command: name.into(), source })?;
            if !status.success() {
                return Err(NixError::Failed {
                    command: format!("{name} (streaming the closure)"),
                    status: status.to_string(),
                    stderr_tail: tail,
                });
            }
        }
        let relayed = self.relay.await;
        if let Ok(Err(source)) | Err(source) =
            relayed.map_err(std::io::Error::other).map(|r| r.map(|_| ()))
        {
            return Err(NixError::Io {
                command: "tar | zstd (the relay between them)".into(),
                source,
            });
        }
        match fed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(NixError::Io { command: "tar (path list)".into(), source }),
            Err(e) => Err(NixError::Io {
                command: "tar (path list)".into(),
                source: std::io::Error::other(e),
            }),
        }
    }
}

fn tar_args(options: &TransferOptions) -> Vec<String> {
    vec![
        "--create".into(),
        "--file=-".into(),
        format!("--directory={}", options.store_root.display()),
        // The target's store belongs to root, whoever owns the operator's (single-user Nix
        // leaves it to uid 1000, NixOS's first normal user); --load-db does not fix owners.
        "--owner=0".into(),
        "--group=0".into(),
        "--numeric-owner".into(),
        "--null".into(),
        "--files-from=-".into(),
    ]
}

fn zstd_args(options: &TransferOptions) -> Vec<String> {
    vec!["-T0".into(), format!("-{}", options.zstd_level.clamp(1, 19)), "-q".into(), "-c".into()]
}

/// The remote side: unpack the stream under `root` (`/mnt`). Calls `/usr/bin/tar` when it
/// exists, because busybox ash runs its own (smaller) tar applet ahead of PATH.
pub fn unpack_command(root: &str) -> String {
    let root = quote(root);
    format!(
        "mkdir -p {root}/nix/store && \
         if [ -x /usr/bin/tar ]; then t=/usr/bin/tar; else t=tar; fi && \
         zstd -d -c | \"$t\" -C {root} -x -f -"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let o = TransferOptions::default();
        assert_eq!(
            tar_args(&o).join(" "),
            "--create --file=- --directory=/ --owner=0 --group=0 --numeric-owner --null --files-from=-"
        );
        assert_eq!(zstd_args(&o).join(" "), "-T0 -3 -q -c");
        assert_eq!(
            unpack_command("/mnt"),
            "mkdir -p /mnt/nix/store && if [ -x /usr/bin/tar ]; then t=/usr/bin/tar; else t=tar; fi && zstd -d -c | \"$t\" -C /mnt -x -f -"
        );
    }

    /// Streams a fake store (a temp dir laid out as `nix/store/...`) through the real tar and
    /// zstd, unpacks it with them, and checks the skipped path stayed out.
    #[tokio::test]
    async fn round_trip_through_real_tar_and_zstd() {
        let src = tempfile::tempdir().unwrap();
        let store = src.path().join("nix/store");
        let a = StorePath::new("/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep").unwrap();
        let b = StorePath::new("/nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top").unwrap();
        fs_err::create_dir_all(
            store.join(a.relative().trim_start_matches("nix/store/")).join("bin"),
        )
        .unwrap();
        fs_err::write(src.path().join(a.relative()).join("bin/hello"), "hello\n").unwrap();
        fs_err::create_dir_all(src.path().join(b.relative())).unwrap();
        fs_err::write(src.path().join(b.relative()).join("ref"), a.as_str()).unwrap();

        let opts = TransferOptions { store_root: src.path().to_owned(), ..Default::default() };
        let skip = BTreeSet::from([a.clone()]);
        let mut stream = TarStream::spawn(&[b.clone(), a.clone()], &skip, &opts).unwrap();
        assert_eq!(stream.paths, vec![b.clone()]);
        let mut out = stream.stdout().unwrap();
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut out, &mut bytes).await.unwrap();
        stream.finish().await.unwrap();
        assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");

        let dst = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(unpack_command(&dst.path().display().to_string()))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &bytes).unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        assert_eq!(
            fs_err::read_to_string(dst.path().join(b.relative()).join("ref")).unwrap(),
            a.as_str()
        );
        assert!(!dst.path().join(a.relative()).exists());
    }

    /// An operator whose store belongs to uid 1000 (single-user Nix) sends paths owned by
    /// root: what the installed host's store must be.
    #[tokio::test]
    async fn store_paths_are_sent_owned_by_root_whoever_owns_them_here() {
        let src = tempfile::tempdir().unwrap();
        let p = StorePath::new("/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-mine").unwrap();
        let dir = src.path().join(p.relative());
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::write(dir.join("file"), "x").unwrap();
        if std::os::unix::fs::chown(&dir, Some(1000), Some(100)).is_err()
            || std::os::unix::fs::chown(dir.join("file"), Some(1000), Some(100)).is_err()
        {
            return; // not root: the files are this user's, which proves as much
        }
        let opts = TransferOptions { store_root: src.path().to_owned(), ..Default::default() };
        let mut stream = TarStream::spawn(&[p], &BTreeSet::new(), &opts).unwrap();
        let mut out = stream.stdout().unwrap();
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut out, &mut bytes).await.unwrap();
        stream.finish().await.unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("zstd -d -c | tar -t -v --numeric-owner -f -")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &bytes).unwrap();
        drop(child.stdin.take());
        let listing = child.wait_with_output().unwrap();
        let listing = String::from_utf8(listing.stdout).unwrap();
        let owners: Vec<&str> =
            listing.lines().filter_map(|l| l.split_whitespace().nth(1)).collect();
        assert_eq!(owners, ["0/0", "0/0"], "{listing}");
    }

    #[tokio::test]
    async fn a_missing_path_fails_with_tars_message() {
        let src = tempfile::tempdir().unwrap();
        let p = StorePath::new("/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-gone").unwrap();
        let opts = TransferOptions { store_root: src.path().to_owned(), ..Default::default() };
        let mut stream = TarStream::spawn(&[p], &BTreeSet::new(), &opts).unwrap();
        let mut out = stream.stdout().unwrap();
        let mut sink = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut out, &mut sink).await.unwrap();
        let err = stream.finish().await.unwrap_err().to_string();
        assert!(err.starts_with("`tar (streaming the closure)` failed"), "{err}");
        assert!(err.contains("gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-gone: Cannot stat"), "{err}");
    }
}
