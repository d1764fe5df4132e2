//! Interactive sessions (`cairn ssh HOST`): a login shell or one command, optionally on a
//! remote pseudo-terminal, with the local terminal in raw mode and window-size changes
//! forwarded. The exit code of the remote side is returned for the caller to propagate.

use std::os::fd::AsFd;

use russh::ChannelMsg;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::error::{Error, Result};
use super::Session;

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub cols: u32,
    pub rows: u32,
}

/// A remote pseudo-terminal request.
#[derive(Debug, Clone)]
pub struct PtyRequest {
    /// `$TERM` for the remote side (`xterm-256color`).
    pub term: String,
    pub size: TerminalSize,
}

/// What runs remotely: the login shell, or a command line given to it as `ssh` does.
#[derive(Debug, Clone)]
pub struct Interactive {
    /// A command line for the remote shell (arguments already joined), or `None` for a
    /// login shell.
    pub command: Option<String>,
    pub pty: Option<PtyRequest>,
}

impl Session {
    /// Runs an interactive session as the login user (no sudo: like `ssh`), copying `stdin`
    /// to the remote side and its output to `stdout`/`stderr`, forwarding sizes received on
    /// `resize`. Returns the remote exit status (128 + n for a signal, as shells do).
    pub async fn interactive<I, O, E>(
        &self,
        spec: &Interactive,
        mut stdin: I,
        mut stdout: O,
        mut stderr: E,
        mut resize: mpsc::Receiver<TerminalSize>,
    ) -> Result<u32>
    where
        I: AsyncRead + Unpin,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        async {
            let during = "running an interactive session";
            let channel = self.open_channel(during).await?;
            let lost = || Error::ConnectionLost { target: self.target.clone(), during: during.to_owned() };
            if let Some(pty) = &spec.pty {
                channel
                    .request_pty(false, &pty.term, pty.size.cols, pty.size.rows, 0, 0, &[])
                    .await
                    .map_err(|_| lost())?;
            }
            match &spec.command {
                Some(line) => channel.exec(true, line.as_bytes().to_vec()).await,
                None => channel.request_shell(true).await,
            }
            .map_err(|_| lost())?;
            let shown = spec.command.clone().unwrap_or_else(|| "login shell".to_owned());
            let (mut read, write) = channel.split();

            let mut buf = vec![0u8; 32 * 1024];
            let mut stdin_open = true;
            let mut resize_open = true;
            let mut status = None;
            let mut signal = None;
            let mut closed = false;
            loop {
                tokio::select! {
                    biased;
                    size = resize.recv(), if resize_open => match size {
                        Some(s) => {
                            let _ = write.window_change(s.cols, s.rows, 0, 0).await;
                        }
                        None => resize_open = false,
                    },
                    msg = read.wait() => match msg {
                        Some(ChannelMsg::Data { data }) => {
                            let _ = stdout.write_all(&data).await;
                            let _ = stdout.flush().await;
                        }
                        Some(ChannelMsg::ExtendedData { data, .. }) => {
                            let _ = stderr.write_all(&data).await;
                            let _ = stderr.flush().await;
                        }
                        Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                        Some(ChannelMsg::ExitSignal { signal_name, .. }) => signal = Some(signal_name),
                        Some(ChannelMsg::Failure) => {
                            return Err(Error::ExecRefused { target: self.target.clone(), command: shown });
                        }
                        Some(ChannelMsg::Close) => {
                            closed = true;
                            break;
                        }
                        Some(_) => {}
                        None => break,
                    },
                    n = stdin.read(&mut buf), if stdin_open => match n {
                        Ok(0) | Err(_) => {
                            stdin_open = false;
                            let _ = write.eof().await;
                        }
                        Ok(n) => {
                            if write.data_bytes(buf[..n].to_vec()).await.is_err() {
                                stdin_open = false;
                            }
                        }
                    },
                }
            }
            match (status, signal) {
                (_, Some(sig)) => Ok(128 + signal_number(&sig)),
                (Some(code), None) => Ok(code),
                (None, None) if !closed => Err(lost()),
                (None, None) => Err(Error::NoExitStatus {
                    target: self.target.clone(),
                    command: shown,
                    stderr_tail: String::new(),
                }),
            }
        }
        .instrument(self.span.clone())
        .await
    }
}

fn signal_number(sig: &russh::Sig) -> u32 {
    use russh::Sig;
    match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(_) => 127,
    }
}

/// The local terminal in raw mode; the previous mode is restored on drop (also on error
/// paths and panics that unwind).
pub struct RawTerminal {
    saved: rustix::termios::Termios,
}

impl RawTerminal {
    /// Puts stdin's terminal in raw mode; `None` when stdin is not a terminal.
    pub fn enable() -> Option<Self> {
        let stdin = std::io::stdin();
        if !rustix::termios::isatty(stdin.as_fd()) {
            return None;
        }
        let saved = rustix::termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw)
            .ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        let _ = rustix::termios::tcsetattr(
            stdin.as_fd(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

impl std::fmt::Debug for RawTerminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawTerminal")
    }
}

/// The size of the terminal on stdout, if it is one.
pub fn terminal_size() -> Option<TerminalSize> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout().as_fd()).ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0)
        .then_some(TerminalSize { cols: ws.ws_col.into(), rows: ws.ws_row.into() })
}

/// Sends the terminal's new size on every SIGWINCH (until the receiver is dropped).
pub fn watch_terminal_size() -> mpsc::Receiver<TerminalSize> {
    let (tx, rx) = mpsc::channel(4);
    if let Ok(mut winch) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    {
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some(size) = terminal_size() {
                    if tx.send(size).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
    rx
}
