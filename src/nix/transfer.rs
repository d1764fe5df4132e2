//! The local side of the default copy strategy: the closure as one tar stream, cut into
//! windows sent as zstd frames, each compressed or not as the measured rates say
//! ([`super::compression`]).
//!
//! `tar` and `zstd` are the C tools every operator machine has next to Nix: zstd runs once
//! per compressed window (its frame ends with its input), raw windows are framed by cairn,
//! and the target's `zstd -d | tar -x` reads any mix of both. Paths the target already holds
//! are left out.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::compression::{self, Compression, Measured, Window};
use super::runner::stream_stderr;
use super::store_path::StorePath;
use super::NixError;
use crate::util::shell::quote;

/// Store bytes per window: small enough to follow a changing link within a second on a
/// 12 MiB/s uplink, large enough that starting zstd once per window costs little.
pub const WINDOW: usize = 4 * 1024 * 1024;
/// Bytes read from zstd's output per piece.
const PIECE: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// The directory holding `nix/store` locally (`/`).
    pub store_root: PathBuf,
    /// `None`: choose per window from the measured rates; else always this.
    pub compression: Option<Compression>,
    pub tar: PathBuf,
    pub zstd: PathBuf,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self { store_root: "/".into(), compression: None, tar: "tar".into(), zstd: "zstd".into() }
    }
}

/// One window of the stream, encoded as one zstd frame, in pieces ready for the link.
#[derive(Debug)]
pub struct Frame {
    pub pieces: Vec<Vec<u8>>,
    pub compression: Compression,
    /// Store (tar) bytes in the frame.
    pub raw_bytes: u64,
    pub wire_bytes: u64,
    encode_secs: f64,
    compress_secs: f64,
}

/// A running `tar` whose output is framed window by window. Take frames with
/// [`TarStream::next_frame`], say how long each took to send with [`TarStream::sent`], then
/// call [`TarStream::finish`], which fails if tar or a zstd did.
#[derive(Debug)]
pub struct TarStream {
    tar: Child,
    tar_stderr: JoinHandle<String>,
    feeder: JoinHandle<std::io::Result<()>>,
    encoder: JoinHandle<Result<(), NixError>>,
    frames: mpsc::Receiver<Frame>,
    measured: Arc<Mutex<Measured>>,
    raw: Arc<AtomicU64>,
    /// When the last frame was sent (or the stream started).
    last_sent: Instant,
    /// Store bytes sent per encoding, for the summary.
    pub sent_by_compression: Vec<(Compression, u64)>,
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
        let mut tar = tokio::process::Command::new(&options.tar)
            .args(tar_args(options))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NixError::Spawn {
                program: options.tar.display().to_string(),
                source,
            })?;
        let tar_out = tar.stdout.take().expect("piped");
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
        let measured = Arc::new(Mutex::new(Measured::default()));
        // One frame waits while the previous one is sent: encoding and sending overlap.
        let (frames_tx, frames) = mpsc::channel(1);
        let encoder = tokio::spawn(encode(
            tar_out,
            frames_tx,
            Encoding {
                fixed: options.compression,
                zstd: options.zstd.clone(),
                measured: measured.clone(),
                raw: raw.clone(),
            },
        ));
        let tar_stderr = tokio::spawn(stream_stderr(tar.stderr.take().expect("piped"), "tar"));
        Ok(Self {
            tar,
            tar_stderr,
            feeder,
            encoder,
            frames,
            measured,
            raw,
            last_sent: Instant::now(),
            sent_by_compression: Vec::new(),
            paths: wanted,
        })
    }

    /// The next frame; `None` at the end of the stream (or when encoding failed: then
    /// [`TarStream::finish`] says why).
    pub async fn next_frame(&mut self) -> Option<Frame> {
        self.frames.recv().await
    }

    /// Records that `frame` took `send_time` to write to the link: the measurement the
    /// next windows' compression is chosen from.
    pub fn sent(&mut self, frame: &Frame, send_time: Duration) {
        let window = Window {
            compression: frame.compression,
            raw_bytes: frame.raw_bytes,
            wire_bytes: frame.wire_bytes,
            encode_secs: frame.encode_secs,
            compress_secs: frame.compress_secs,
            send_secs: send_time.as_secs_f64(),
            interval_secs: self.last_sent.elapsed().as_secs_f64(),
        };
        self.last_sent = Instant::now();
        tracing::debug!(
            compression = %frame.compression,
            raw = frame.raw_bytes,
            wire = frame.wire_bytes,
            encode_secs = frame.encode_secs,
            send_secs = window.send_secs,
            interval_secs = window.interval_secs,
            "copy: window sent"
        );
        self.measured.lock().expect("not poisoned").record(&window);
        match self.sent_by_compression.iter_mut().find(|(c, _)| *c == frame.compression) {
            Some((_, bytes)) => *bytes += frame.raw_bytes,
            None => self.sent_by_compression.push((frame.compression, frame.raw_bytes)),
        }
    }

    /// The whole stream, for tests and tools that do not measure a link.
    pub async fn read_all(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(frame) = self.next_frame().await {
            out.extend(frame.pieces.concat());
            self.sent(&frame, Duration::ZERO);
        }
        out
    }

    /// Bytes of tar (store paths and their headers) read so far.
    pub fn raw_bytes(&self) -> u64 {
        self.raw.load(Ordering::Relaxed)
    }

    /// Waits for tar and the encoder; an error carries the failing one's stderr tail.
    pub async fn finish(mut self) -> Result<(), NixError> {
        self.frames.close();
        let fed = self.feeder.await;
        let encoded = self.encoder.await;
        let tar = self.tar.wait().await;
        let tail = self.tar_stderr.await.unwrap_or_default();
        let status = tar.map_err(|source| NixError::Io { command: "tar".into(), source })?;
        if !status.success() {
            return Err(NixError::Failed {
                command: "tar (streaming the closure)".into(),
                status: status.to_string(),
                stderr_tail: tail,
            });
        }
        match encoded {
            Ok(result) => result?,
            Err(e) => {
                return Err(NixError::Io {
                    command: "zstd (framing the closure stream)".into(),
                    source: std::io::Error::other(e),
                })
            }
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

/// What the encoder needs besides its input and output.
struct Encoding {
    fixed: Option<Compression>,
    zstd: PathBuf,
    measured: Arc<Mutex<Measured>>,
    raw: Arc<AtomicU64>,
}

/// Reads tar's output window by window, encodes each as [`compression::choose`] says from
/// what the sent windows measured, and passes the frames on. Stops early, without error,
/// when the frames are no longer wanted.
async fn encode(
    mut tar_out: impl AsyncRead + Unpin,
    frames: mpsc::Sender<Frame>,
    e: Encoding,
) -> Result<(), NixError> {
    let mut last = None;
    loop {
        let started = Instant::now();
        let mut window = vec![0u8; WINDOW];
        let mut filled = 0;
        while filled < WINDOW {
            let n = tar_out.read(&mut window[filled..]).await.map_err(|source| NixError::Io {
                command: "tar (reading the closure stream)".into(),
                source,
            })?;
            if n == 0 {
                break;
            }
            filled += n;
            e.raw.fetch_add(n as u64, Ordering::Relaxed);
        }
        if filled == 0 {
            return Ok(());
        }
        window.truncate(filled);
        let chosen = match e.fixed {
            Some(fixed) => fixed,
            None => compression::choose(&e.measured.lock().expect("not poisoned")),
        };
        if last.is_some_and(|l| l != chosen) {
            tracing::debug!("copy: next window {chosen}");
        }
        last = Some(chosen);
        let (pieces, compress_secs) = match chosen {
            Compression::None => (compression::raw_frame(&window), 0.0),
            Compression::Zstd(level) => {
                let zstarted = Instant::now();
                let pieces = zstd_frame(&e.zstd, level, window).await?;
                (pieces, zstarted.elapsed().as_secs_f64())
            }
        };
        let frame = Frame {
            wire_bytes: pieces.iter().map(|p| p.len() as u64).sum(),
            pieces,
            compression: chosen,
            raw_bytes: filled as u64,
            encode_secs: started.elapsed().as_secs_f64(),
            compress_secs,
        };
        if frames.send(frame).await.is_err() {
            return Ok(());
        }
    }
}

/// `data` compressed by one run of `zstd -LEVEL` (one frame), in pieces.
async fn zstd_frame(zstd: &PathBuf, level: u8, data: Vec<u8>) -> Result<Vec<Vec<u8>>, NixError> {
    let mut child = tokio::process::Command::new(zstd)
        .args(zstd_args(level))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| NixError::Spawn { program: zstd.display().to_string(), source })?;
    let mut stdin = child.stdin.take().expect("piped");
    let feeding = tokio::spawn(async move {
        stdin.write_all(&data).await?;
        stdin.shutdown().await
    });
    let stderr = tokio::spawn(stream_stderr(child.stderr.take().expect("piped"), "zstd"));
    let mut stdout = child.stdout.take().expect("piped");
    let io =
        |source| NixError::Io { command: "zstd (compressing the closure stream)".into(), source };
    let mut pieces = Vec::new();
    loop {
        let mut piece = Vec::with_capacity(PIECE);
        let n = (&mut stdout).take(PIECE as u64).read_to_end(&mut piece).await.map_err(io)?;
        if n == 0 {
            break;
        }
        pieces.push(piece);
    }
    let status = child.wait().await.map_err(io)?;
    let tail = stderr.await.unwrap_or_default();
    if !status.success() {
        return Err(NixError::Failed {
            command: "zstd (compressing the closure stream)".into(),
            status: status.to_string(),
            stderr_tail: tail,
        });
    }
    feeding.await.map_err(|e| io(std::io::Error::other(e)))?.map_err(io)?;
    Ok(pieces)
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

fn zstd_args(level: u8) -> Vec<String> {
    vec!["-T0".into(), format!("-{}", level.clamp(1, 19)), "-q".into(), "-c".into()]
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
mod tests;
