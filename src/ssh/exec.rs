//! Driving one exec channel: stdin in, stdout/stderr out (logged line by line and captured),
//! and a strict reading of how the command ended.

use std::sync::Arc;
use std::time::Duration;

use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::error::{Error, Result};
use super::{Target, TimeLimit};

mod early;

/// How much of stderr is kept for error messages.
const STDERR_TAIL: usize = 4096;
/// Longest line logged as one event; longer lines are logged in pieces.
const MAX_LINE: usize = 8192;
/// Size of the chunks read from a local source and sent to the channel.
pub(crate) const CHUNK: usize = 256 * 1024;

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit status (0, or one the command allowed with `allow_exit_codes`).
    pub exit_code: u32,
    /// Everything the command wrote to stdout.
    pub stdout: Vec<u8>,
    /// The last few KiB of stderr.
    pub stderr_tail: String,
}

impl ExecOutput {
    /// Stdout as text (invalid UTF-8 replaced), without surrounding whitespace.
    pub fn stdout_trimmed(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_owned()
    }
}

/// How the channel ended, as seen by the reading task.
#[derive(Debug, Default)]
struct Outcome {
    status: Option<u32>,
    signal: Option<(String, bool)>,
    stdout: Vec<u8>,
    stdout_overflow: bool,
    stderr_tail: Vec<u8>,
    /// The server sent CHANNEL_CLOSE (otherwise the connection went away).
    closed: bool,
    /// The server answered the exec request with a failure.
    refused: bool,
}

/// A running remote command: write its stdin, then [`RemoteStream::finish`] for the result.
///
/// Writes apply backpressure (they wait for the SSH window), fail with
/// [`Error::Stalled`] when nothing moves for the I/O timeout, and stop as
/// soon as the remote command ends.
pub struct RemoteStream {
    target: Arc<Target>,
    command: String,
    what: String,
    allowed: Box<dyn Fn(u32) -> bool + Send + Sync>,
    cap: usize,
    writer: ChannelWriteHalf<Msg>,
    reader: Option<JoinHandle<Outcome>>,
    outcome: Option<Outcome>,
    done: watch::Receiver<bool>,
    io_timeout: Duration,
    deadline: Instant,
    limit: TimeLimit,
    sent: u64,
    eof_sent: bool,
    /// stdout as it arrives, for [`RemoteStream::stdout_until`] (commands that asked).
    early: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
    early_buf: Vec<u8>,
}

impl std::fmt::Debug for RemoteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStream")
            .field("target", &self.target.to_string())
            .field("command", &self.command)
            .field("sent", &self.sent)
            .finish()
    }
}

pub(crate) struct StreamSpec {
    pub target: Arc<Target>,
    pub command: String,
    /// What the data sent to stdin is, for errors (`the upload to /etc/x`).
    pub what: String,
    pub allowed: Box<dyn Fn(u32) -> bool + Send + Sync>,
    pub cap: usize,
    /// Pass stdout on as it arrives ([`RemoteStream::stdout_until`]).
    pub early_stdout: bool,
    pub io_timeout: Duration,
    /// When the command must have finished (its limit counts from before the channel opened).
    pub deadline: Instant,
    pub limit: TimeLimit,
    pub span: tracing::Span,
}

impl RemoteStream {
    /// Starts the reading task on an exec channel whose request was just sent.
    pub(crate) fn start(
        spec: StreamSpec,
        read: ChannelReadHalf,
        writer: ChannelWriteHalf<Msg>,
    ) -> Self {
        let (done_tx, done) = watch::channel(false);
        let cap = spec.cap;
        let (early_tx, early) = match spec.early_stdout {
            true => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let reader = tokio::spawn(read_channel(read, cap, done_tx, early_tx).instrument(spec.span));
        Self {
            target: spec.target,
            command: spec.command,
            what: spec.what,
            allowed: spec.allowed,
            cap,
            writer,
            reader: Some(reader),
            outcome: None,
            done,
            io_timeout: spec.io_timeout,
            deadline: spec.deadline,
            limit: spec.limit,
            sent: 0,
            eof_sent: false,
            early,
            early_buf: Vec::new(),
        }
    }

    /// Bytes written to stdin so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// Sends one chunk to the command's stdin, waiting for the SSH window (backpressure).
    pub async fn write(&mut self, chunk: Vec<u8>) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let len = chunk.len() as u64;
        let io_timeout = self.io_timeout;
        let deadline = self.deadline;
        let mut done = self.done.clone();
        let send = self.writer.data_bytes(chunk);
        let limit = tokio::time::sleep_until(deadline);
        // The branches yield plain values so no borrow (a watch::Ref) lives across the
        // awaits below: the future stays Send, as one task per host requires.
        enum Step {
            Sent,
            Ended,
            Stalled,
            TimedOut,
        }
        let ended = async move {
            let _ = done.wait_for(|d| *d).await;
        };
        let step = tokio::select! {
            r = tokio::time::timeout(io_timeout, send) => match r {
                Ok(Ok(())) => Step::Sent,
                // The session is gone: the reading task tells why.
                Ok(Err(_)) => Step::Ended,
                Err(_) => Step::Stalled,
            },
            () = ended => Step::Ended,
            () = limit => Step::TimedOut,
        };
        match step {
            Step::Sent => {
                self.sent += len;
                Ok(())
            }
            Step::Ended => Err(self.ended_early().await),
            Step::Stalled => Err(self.stalled().await),
            Step::TimedOut => Err(self.timed_out().await),
        }
    }

    /// Copies a local stream to the command's stdin; returns the number of bytes copied.
    pub async fn copy_from<R: AsyncRead + Unpin>(&mut self, mut source: R) -> Result<u64> {
        let mut total = 0u64;
        let mut said = std::time::Instant::now();
        let mut reported = false;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = source.read(&mut buf).await.map_err(|e| self.read_error(e))?;
            if n == 0 {
                if reported {
                    // The bar ends full, not at the last second's count.
                    tracing::info!(target: crate::ui::progress::TRANSFER_TARGET, kind = "upload", bytes = total);
                }
                return Ok(total);
            }
            buf.truncate(n);
            self.write(buf).await?;
            total += n as u64;
            // A long upload (the installer) says how far it got, for the progress bar.
            if said.elapsed() >= Duration::from_secs(1) {
                said = std::time::Instant::now();
                reported = true;
                tracing::info!(target: crate::ui::progress::TRANSFER_TARGET, kind = "upload", bytes = total);
            }
        }
    }

    /// Closes stdin, waits for the command to end and checks how it ended.
    pub async fn finish(mut self) -> Result<ExecOutput> {
        if !self.eof_sent {
            self.eof_sent = true;
            // If the channel is already gone the outcome says why.
            let _ = self.writer.eof().await;
        }
        let outcome = match tokio::time::timeout_at(self.deadline, self.outcome()).await {
            Ok(o) => o,
            Err(_) => return Err(self.timed_out().await),
        };
        self.judge(outcome)
    }

    async fn outcome(&mut self) -> Outcome {
        if let Some(o) = self.outcome.take() {
            return o;
        }
        match self.reader.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => Outcome::default(),
        }
    }

    fn judge(&self, o: Outcome) -> Result<ExecOutput> {
        let stderr_tail = tail_text(&o.stderr_tail);
        if o.refused {
            return Err(Error::ExecRefused {
                target: self.target.clone(),
                command: self.command.clone(),
            });
        }
        if o.stdout_overflow {
            return Err(Error::StdoutTooLarge {
                target: self.target.clone(),
                command: self.command.clone(),
                cap: self.cap,
            });
        }
        if let Some((signal, core_dumped)) = o.signal {
            return Err(Error::CommandKilled {
                target: self.target.clone(),
                command: self.command.clone(),
                signal,
                core_dumped,
                stderr_tail,
            });
        }
        match o.status {
            Some(code) if (self.allowed)(code) => {
                Ok(ExecOutput { exit_code: code, stdout: o.stdout, stderr_tail })
            }
            Some(status) => Err(Error::CommandFailed {
                target: self.target.clone(),
                command: self.command.clone(),
                status,
                stderr_tail,
            }),
            None if !o.closed => Err(Error::ConnectionLost {
                target: self.target.clone(),
                during: format!("running `{}`", self.command),
            }),
            None => Err(Error::NoExitStatus {
                target: self.target.clone(),
                command: self.command.clone(),
                stderr_tail,
            }),
        }
    }

    /// The remote command ended (or the connection dropped) while we were still writing.
    async fn ended_early(&mut self) -> Error {
        let o = self.outcome().await;
        let sent = self.sent;
        match self.judge(o) {
            Err(e) => e,
            Ok(_) => Error::CommandFailed {
                target: self.target.clone(),
                command: self.command.clone(),
                status: 0,
                stderr_tail: format!(
                    "the command exited before reading all its input ({sent} bytes were sent)"
                ),
            },
        }
    }

    /// Gives up on a transfer that made no progress: the remote command is killed so it
    /// does not linger, and the channel closed.
    async fn stalled(&mut self) -> Error {
        self.abandon().await;
        Error::Stalled {
            target: self.target.clone(),
            what: self.what.clone(),
            after: self.io_timeout,
        }
    }

    async fn abandon(&mut self) {
        // Best effort: with a full window the session may not take more messages.
        let writer = &self.writer;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = writer.signal(Sig::KILL).await;
            let _ = writer.close().await;
        })
        .await;
    }

    async fn timed_out(&mut self) -> Error {
        self.abandon().await;
        command_timeout(&self.target, &self.command, &self.limit)
    }

    fn read_error(&self, source: std::io::Error) -> Error {
        Error::SourceRead { target: self.target.clone(), what: self.what.clone(), source }
    }
}

/// The error of a command that did not finish within `limit`.
pub(crate) fn command_timeout(target: &Arc<Target>, command: &str, limit: &TimeLimit) -> Error {
    Error::CommandTimeout {
        target: target.clone(),
        command: command.to_owned(),
        after: limit.after,
        limit: limit.name.clone(),
        raise: limit.raise.clone(),
    }
}

/// Reads every message of the channel until it closes; logs output lines as they come.
async fn read_channel(
    mut read: ChannelReadHalf,
    cap: usize,
    done: watch::Sender<bool>,
    early: Option<mpsc::UnboundedSender<Vec<u8>>>,
) -> Outcome {
    let mut o = Outcome::default();
    let mut out_lines = LineLog::new("stdout");
    let mut err_lines = LineLog::new("stderr");
    while let Some(msg) = read.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                out_lines.push(&data);
                if let Some(early) = &early {
                    // Nobody reading any more is fine: the whole stdout is kept below.
                    let _ = early.send(data.to_vec());
                }
                if o.stdout.len() + data.len() > cap {
                    o.stdout_overflow = true;
                } else {
                    o.stdout.extend_from_slice(&data);
                }
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                err_lines.push(&data);
                o.stderr_tail.extend_from_slice(&data);
                if o.stderr_tail.len() > 2 * STDERR_TAIL {
                    let cut = o.stderr_tail.len() - STDERR_TAIL;
                    o.stderr_tail.drain(..cut);
                }
            }
            ChannelMsg::ExitStatus { exit_status } => o.status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, core_dumped, .. } => {
                o.signal = Some((signal_name_of(&signal_name), core_dumped));
            }
            ChannelMsg::Failure => o.refused = true,
            ChannelMsg::Close => {
                o.closed = true;
                break;
            }
            _ => {}
        }
    }
    out_lines.flush();
    err_lines.flush();
    let _ = done.send(true);
    o
}

fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(name) => name.clone(),
    }
}

/// The kept stderr bytes as text, starting at a line boundary when one is near.
fn tail_text(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    let mut slice = &bytes[start..];
    if start > 0 {
        if let Some(nl) = slice.iter().position(|&b| b == b'\n') {
            slice = &slice[nl + 1..];
        }
    }
    String::from_utf8_lossy(slice).into_owned()
}

/// Splits a byte stream into lines and emits each as a tracing event.
struct LineLog {
    stream: &'static str,
    buf: Vec<u8>,
}

impl LineLog {
    fn new(stream: &'static str) -> Self {
        Self { stream, buf: Vec::new() }
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if self.buf.len() > MAX_LINE {
            let piece = std::mem::take(&mut self.buf);
            self.emit(&piece);
        }
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() {
            let piece = std::mem::take(&mut self.buf);
            self.emit(&piece);
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        tracing::debug!(target: "cairn::ssh::remote", stream = self.stream, "{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_starts_at_a_line_boundary() {
        let mut bytes = Vec::new();
        for i in 0..1000 {
            bytes.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let t = tail_text(&bytes);
        assert!(t.ends_with("line 999\n"));
        assert!(t.starts_with("line "), "{}", &t[..20]);
        assert!(t.len() <= STDERR_TAIL);
    }

    #[test]
    fn short_stderr_is_kept_whole() {
        assert_eq!(tail_text(b"oops\n"), "oops\n");
    }
}
