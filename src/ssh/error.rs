//! The one error type of the SSH layer. Every variant names the target; the help says what
//! to check. Private keys never appear here: only paths and public fingerprints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Target;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot connect to {target}")]
    #[diagnostic(
        code(cairn::ssh::connect),
        help("check that the machine is running, that {target} is its address and SSH port, and that no firewall blocks the port")
    )]
    Connect {
        target: Arc<Target>,
        #[source]
        source: std::io::Error,
    },

    #[error("connecting to {target} timed out after {}", secs(*after))]
    #[diagnostic(
        code(cairn::ssh::connect_timeout),
        help("the host did not complete the SSH handshake in time: check that it is up and that the address and port are right (a firewall that drops packets looks like this)")
    )]
    ConnectTimeout { target: Arc<Target>, after: Duration },

    #[error("the SSH handshake with {target} failed")]
    #[diagnostic(
        code(cairn::ssh::handshake),
        help("check that an SSH server (not another service) listens on {target}")
    )]
    Handshake {
        target: Arc<Target>,
        #[source]
        source: Box<russh::Error>,
    },

    #[error(
        "the host key of {target} does not match the pinned key\n  expected: {}\n  presented: {presented}",
        expected.join("\n            ")
    )]
    #[diagnostic(
        code(cairn::ssh::host_key_mismatch),
        help("the host was reinstalled? remove the pinned key for this host and phase from cairn's state ({state_hint}) and connect again; otherwise someone may be intercepting the connection: do not continue until you know why the key changed")
    )]
    HostKeyMismatch {
        target: Arc<Target>,
        /// Fingerprints of the pinned keys (`ssh-ed25519 SHA256:...`).
        expected: Vec<String>,
        /// Fingerprint of the key the server presented.
        presented: String,
        state_hint: String,
    },

    #[error(
        "{target} presented a host key the caller knows ({presented}): this is no first contact"
    )]
    #[diagnostic(
        code(cairn::ssh::known_host_key),
        help("the caller refused the key before logging in; it says what the key means")
    )]
    KnownHostKey {
        target: Arc<Target>,
        /// Fingerprint of the key the server presented.
        presented: String,
    },

    #[error("{target} presented a host certificate, which cairn does not accept")]
    #[diagnostic(
        code(cairn::ssh::host_certificate),
        help(
            "cairn pins plain host keys; configure the server to offer its plain host key as well"
        )
    )]
    HostCertificate { target: Arc<Target> },

    #[error("no host key is pinned for {target}")]
    #[diagnostic(
        code(cairn::ssh::no_pinned_key),
        help("pin at least one key, or use record-on-first-contact for a host never seen before")
    )]
    NoPinnedKey { target: Arc<Target> },

    #[error("cannot read the SSH private key {}", path.display())]
    #[diagnostic(code(cairn::ssh::key_file), help("check the path and that the file is readable"))]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the SSH private key {} is not a usable OpenSSH private key", path.display())]
    #[diagnostic(
        code(cairn::ssh::key_format),
        help("cairn reads OpenSSH private keys (ed25519, rsa, ecdsa); convert the key with `ssh-keygen -p -f {}`", path.display())
    )]
    KeyFormat {
        path: PathBuf,
        #[source]
        source: Box<russh::keys::Error>,
    },

    #[error("the SSH private key {} is encrypted", path.display())]
    #[diagnostic(
        code(cairn::ssh::key_encrypted),
        help("add it to your SSH agent (`ssh-add {}`) and let cairn use the agent", path.display())
    )]
    KeyEncrypted { path: PathBuf },

    #[error("cannot use the SSH agent{}", socket.as_ref().map(|s| format!(" at {}", s.display())).unwrap_or_default())]
    #[diagnostic(
        code(cairn::ssh::agent),
        help("start an agent (`eval $(ssh-agent)`) and add your key (`ssh-add`), or give a private key file")
    )]
    Agent {
        socket: Option<PathBuf>,
        #[source]
        source: Box<russh::keys::Error>,
    },

    #[error("{target} refused every key offered ({})", if tried.is_empty() { "the agent holds none".to_owned() } else { tried.join(", ") })]
    #[diagnostic(
        code(cairn::ssh::auth),
        help("add the public key to ~{}/.ssh/authorized_keys on the host, or log in as another user", target.user)
    )]
    AuthRejected { target: Arc<Target>, tried: Vec<String> },

    #[error("the connection to {target} was lost while {during}")]
    #[diagnostic(
        code(cairn::ssh::connection_lost),
        help("the host rebooted, the network dropped, or sshd was restarted; nothing was committed by the interrupted step, run it again")
    )]
    ConnectionLost { target: Arc<Target>, during: String },

    #[error("{target} refused to open a session channel")]
    #[diagnostic(
        code(cairn::ssh::channel),
        help("the server may limit sessions (MaxSessions); try again")
    )]
    Channel {
        target: Arc<Target>,
        #[source]
        source: Box<russh::Error>,
    },

    #[error("cannot build the remote command {}: {}", .0.command, .0.reason)]
    #[diagnostic(code(cairn::ssh::invalid_command))]
    InvalidCommand(super::InvalidCommand),

    #[error("`{command}` failed on {target} with exit status {status}{}", tail(stderr_tail))]
    #[diagnostic(code(cairn::ssh::command_failed))]
    CommandFailed { target: Arc<Target>, command: String, status: u32, stderr_tail: String },

    #[error("`{command}` on {target} was killed by signal {signal}{}{}", if *core_dumped { " (core dumped)" } else { "" }, tail(stderr_tail))]
    #[diagnostic(
        code(cairn::ssh::command_killed),
        help("something on the host killed the command: the OOM killer (check `dmesg`), a timeout, or an operator")
    )]
    CommandKilled {
        target: Arc<Target>,
        command: String,
        signal: String,
        core_dumped: bool,
        stderr_tail: String,
    },

    #[error("`{command}` on {target} ended without an exit status{}", tail(stderr_tail))]
    #[diagnostic(
        code(cairn::ssh::no_exit_status),
        help("the server closed the channel without reporting how the command ended; treat it as failed")
    )]
    NoExitStatus { target: Arc<Target>, command: String, stderr_tail: String },

    #[error("the server on {target} refused to run `{command}`")]
    #[diagnostic(
        code(cairn::ssh::exec_refused),
        help("the account may be restricted (ForceCommand, a nologin shell)")
    )]
    ExecRefused { target: Arc<Target>, command: String },

    #[error("`{command}` on {target} did not finish within {}", if limit.is_empty() { secs(*after) } else { limit.clone() })]
    #[diagnostic(
        code(cairn::ssh::command_timeout),
        help("cairn stopped the command and closed its channel. It may hang on the host (a stuck disk or mount, a command waiting for input): look there.{}", if raise.is_empty() { String::new() } else { format!(" If it only needs more time, raise the limit: {raise}") })
    )]
    CommandTimeout {
        target: Arc<Target>,
        /// The command's display form (a sensitive command's arguments are hidden).
        command: String,
        /// How long this command was given (a command inside a wait: what was left of it).
        after: Duration,
        /// What the limit is (`the `reach` timeout, 20s`), or empty.
        limit: String,
        /// How to raise it, or empty.
        raise: String,
    },

    #[error("`{command}` on {target} wrote more than {cap} bytes to stdout")]
    #[diagnostic(
        code(cairn::ssh::stdout_too_large),
        help("stream large outputs with Session::open_stream")
    )]
    StdoutTooLarge { target: Arc<Target>, command: String, cap: usize },

    #[error("passwordless {tool} is required for user {user} on host {}", target.host)]
    #[diagnostic(
        code(cairn::ssh::password_required),
        help("log in as root, or allow the user to run commands without a password, e.g. `{user} ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/{user}")
    )]
    PasswordRequired { target: Arc<Target>, user: String, tool: &'static str },

    #[error("user {user} on host {} is not root and neither sudo nor doas is installed", target.host)]
    #[diagnostic(
        code(cairn::ssh::no_escalation),
        help("log in as root, or install sudo and allow the user to use it without a password")
    )]
    NoEscalation { target: Arc<Target>, user: String },

    #[error("cannot read the upload source {}", path.display())]
    #[diagnostic(code(cairn::ssh::upload_source))]
    UploadSource {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid remote path {path:?}: {reason}")]
    #[diagnostic(code(cairn::ssh::remote_path))]
    RemotePath { path: String, reason: &'static str },

    #[error("the upload to {target}:{path} is incomplete: {sent} bytes sent, {received} bytes arrived; {path} was left unchanged")]
    #[diagnostic(
        code(cairn::ssh::upload_size),
        help(
            "the stream was cut or the disk is full (check `df` on the host); run the step again"
        )
    )]
    UploadSize { target: Arc<Target>, path: String, sent: u64, received: u64 },

    #[error("sending {what} to {target} stalled: no progress for {}", secs(*after))]
    #[diagnostic(
        code(cairn::ssh::stalled),
        help("the link or the host stopped accepting data; check the network and the host's disk")
    )]
    Stalled { target: Arc<Target>, what: String, after: Duration },

    #[error("cannot read the local data for {what} on {target}")]
    #[diagnostic(code(cairn::ssh::source_read))]
    SourceRead {
        target: Arc<Target>,
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{target} printed an unexpected {what}: {output:?}")]
    #[diagnostic(code(cairn::ssh::unexpected_output))]
    UnexpectedOutput { target: Arc<Target>, what: &'static str, output: String },

    #[error("{target} did not become reachable over SSH within {} ({attempts} attempts); last error: {last_error}", secs(*waited))]
    #[diagnostic(
        code(cairn::ssh::unreachable),
        help("check the machine's console: did it boot, did it get the expected address, is sshd running and listening on port {}? A firewall that drops packets looks like a timeout", target.port)
    )]
    Unreachable { target: Arc<Target>, waited: Duration, attempts: u32, last_error: String },
}

impl Error {
    /// Whether retrying the connection can help (a refused host key never does).
    pub fn is_retryable_connect(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::ConnectTimeout { .. }
                | Error::Handshake { .. }
                | Error::AuthRejected { .. }
                | Error::ConnectionLost { .. }
        )
    }
}

fn tail(stderr_tail: &str) -> String {
    let t = stderr_tail.trim_end();
    if t.is_empty() {
        String::new()
    } else {
        format!("; stderr ends with:\n{t}")
    }
}

pub(crate) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1}s")
    } else {
        format!("{}s", d.as_secs())
    }
}
