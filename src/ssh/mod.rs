//! SSH sessions with pinned host keys (russh): exec, upload, wait, boot id.
//!
//! Every connection checks the server's host key against a [`HostKeyPolicy`]: a pinned key,
//! or (first contact with a stock image only) a key recorded for the caller to pin. Remote
//! commands are built as data ([`RemoteCommand`]), their results are strict (a non-zero
//! status, a signal or a missing status is an error carrying the stderr tail), and a
//! non-root login escalates with passwordless `sudo -n` or `doas -n`. Transport only: where
//! to connect and which key to pin are decided by [`crate::reach`].

mod command;
mod error;
mod exec;
mod hostkey;
mod interactive;
mod upload;
mod wait;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::Handle;
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use tokio::io::AsyncRead;
use tokio::sync::OnceCell;
use tracing::Instrument;

pub use command::{quote, InvalidCommand, RemoteCommand, TimeLimit, DEFAULT_STDOUT_CAP};
pub use error::{Error, Result};
pub use exec::{ExecOutput, RemoteStream};
pub use hostkey::{fingerprint, known_hosts, openssh_options, HostKeyPolicy};
pub use interactive::{
    terminal_size, watch_terminal_size, Interactive, PtyRequest, RawTerminal, TerminalSize,
};
pub use upload::UploadSource;
pub use wait::wait_reachable;

use exec::StreamSpec;
use hostkey::{Observed, Verifier};

/// Where to connect: a host name or address, a port and the login user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl Target {
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> Self {
        Self { host: host.into(), port, user: user.into() }
    }

    /// Reads an address as recorded in state: `203.0.113.7`, `127.0.0.1:2201`, `[2001:db8::1]:22`,
    /// `2001:db8::1` or `host.example`; `default_port` applies when none is given.
    pub fn from_address(address: &str, default_port: u16, user: impl Into<String>) -> Option<Self> {
        let address = address.trim();
        let (host, port) = if let Some(rest) = address.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            match after.strip_prefix(':') {
                Some(p) => (host, p.parse().ok()?),
                None if after.is_empty() => (host, default_port),
                None => return None,
            }
        } else if address.matches(':').count() == 1 {
            let (host, p) = address.split_once(':')?;
            (host, p.parse().ok()?)
        } else {
            (address, default_port)
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return None;
        }
        Some(Self::new(host, port, user))
    }

    fn is_root(&self) -> bool {
        self.user == "root"
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

/// How to authenticate. Private keys are never logged or shown in `Debug`.
#[derive(Clone)]
pub enum Auth {
    /// An OpenSSH private key file (ed25519, rsa, ecdsa), unencrypted.
    KeyFile(PathBuf),
    /// A key already in memory (e.g. a temporary bootstrap key).
    Key(Arc<PrivateKey>),
    /// The SSH agent at `socket`, or at `$SSH_AUTH_SOCK` when `None`.
    Agent { socket: Option<PathBuf> },
}

impl Auth {
    /// What `ssh` would use: the agent when `$SSH_AUTH_SOCK` is set, else the first of
    /// `~/.ssh/id_ed25519` and `~/.ssh/id_rsa` that exists.
    pub fn default_for_user() -> Option<Auth> {
        if std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()) {
            return Some(Auth::Agent { socket: None });
        }
        let home = PathBuf::from(std::env::var_os("HOME")?);
        ["id_ed25519", "id_rsa"]
            .iter()
            .map(|name| home.join(".ssh").join(name))
            .find(|p| p.is_file())
            .map(Auth::KeyFile)
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::KeyFile(p) => f.debug_tuple("KeyFile").field(p).finish(),
            Auth::Key(k) => f.debug_tuple("Key").field(&fingerprint(k.public_key())).finish(),
            Auth::Agent { socket } => f.debug_struct("Agent").field("socket", socket).finish(),
        }
    }
}

/// Timeouts and keepalives of a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// TCP connect, SSH handshake and authentication together.
    pub connect_timeout: Duration,
    /// How long a transfer may make no progress, and how long the connection may stay
    /// silent (keepalives unanswered) before it is declared dead.
    pub io_timeout: Duration,
    /// Keepalive interval; unanswered keepalives close the connection.
    pub keepalive_interval: Duration,
    /// Where the pinned keys live, for the "host key changed" help
    /// (e.g. `hosts.web1.host_keys.stock in /repo/.cairn/state.json`), named by the caller.
    pub pinned_key_location: String,
    /// How long a command without its own limit may run ([`RemoteCommand::time_limit`]);
    /// change it on an open session with [`Session::set_command_limit`].
    pub command_limit: TimeLimit,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            io_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(15),
            pinned_key_location: "the host's `host_keys` in .cairn/state.json".into(),
            command_limit: TimeLimit::default(),
        }
    }
}

/// The value of `/proc/sys/kernel/random/boot_id`: changes on every boot and kexec.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BootId(String);

impl BootId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How commands get root when the login user is not root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escalation {
    None,
    Sudo,
    Doas,
}

const DETECT_ESCALATION: &str = r#"if [ "$(id -u)" = 0 ]; then echo root
elif command -v sudo >/dev/null 2>&1; then
  if sudo -n true >/dev/null 2>&1; then echo sudo; else echo sudo-password; fi
elif command -v doas >/dev/null 2>&1; then
  if doas -n true >/dev/null 2>&1; then echo doas; else echo doas-password; fi
else echo none; fi
"#;

/// An authenticated SSH connection whose host key was verified.
pub struct Session {
    target: Arc<Target>,
    handle: Handle<Verifier>,
    host_key: PublicKey,
    options: ConnectOptions,
    span: tracing::Span,
    escalation: OnceCell<Escalation>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target.to_string())
            .field("host_key", &fingerprint(&self.host_key))
            .finish()
    }
}

impl Session {
    /// Connects, verifies the host key against `policy` and authenticates.
    pub async fn connect(
        target: &Target,
        auth: &Auth,
        policy: &HostKeyPolicy,
        options: &ConnectOptions,
    ) -> Result<Session> {
        // Named `ssh`, not `host`: the UI's per-host span is the caller's (bootstrap), which
        // knows the inventory name; this one only adds where the connection goes.
        let span = tracing::info_span!("ssh", host = %target);
        let limit = options.connect_timeout;
        let target = &Arc::new(target.clone());
        match tokio::time::timeout(
            limit,
            Self::connect_inner(target, auth, policy, options, span.clone()),
        )
        .instrument(span)
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Error::ConnectTimeout { target: target.clone(), after: limit }),
        }
    }

    async fn connect_inner(
        target: &Arc<Target>,
        auth: &Auth,
        policy: &HostKeyPolicy,
        options: &ConnectOptions,
        span: tracing::Span,
    ) -> Result<Session> {
        if matches!(policy, HostKeyPolicy::Pinned(keys) if keys.is_empty()) {
            return Err(Error::NoPinnedKey { target: target.clone() });
        }
        // Read the key before touching the network: a bad key file is not worth a retry.
        let key = match auth {
            Auth::KeyFile(path) => Some(Arc::new(load_key_file(path)?)),
            Auth::Key(k) => Some(k.clone()),
            Auth::Agent { .. } => None,
        };

        let config = russh::client::Config {
            inactivity_timeout: Some(options.io_timeout),
            keepalive_interval: Some(options.keepalive_interval),
            keepalive_max: 3,
            nodelay: true,
            preferred: russh::Preferred {
                key: policy.preferred_algorithms(),
                ..Default::default()
            },
            ..Default::default()
        };
        let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|source| Error::Connect { target: target.clone(), source })?;
        let observed = Arc::new(Mutex::new(Observed::default()));
        let verifier = Verifier { policy: policy.clone(), observed: observed.clone() };
        let handshake = russh::client::connect_stream(Arc::new(config), stream, verifier).await;
        let observed = std::mem::take(&mut *observed.lock().unwrap_or_else(|e| e.into_inner()));
        let mut handle = match handshake {
            Ok(h) => h,
            Err(_) if observed.certificate => {
                return Err(Error::HostCertificate { target: target.clone() })
            }
            Err(russh::Error::UnknownKey) if observed.presented.is_some() => {
                let presented = observed.presented.as_ref().map(fingerprint).unwrap_or_default();
                let expected = match policy {
                    HostKeyPolicy::Pinned(keys) => keys.iter().map(fingerprint).collect(),
                    HostKeyPolicy::RecordOnFirstContact => Vec::new(),
                    HostKeyPolicy::RecordUnless(_) => {
                        return Err(Error::KnownHostKey { target: target.clone(), presented })
                    }
                };
                return Err(Error::HostKeyMismatch {
                    target: target.clone(),
                    expected,
                    presented,
                    state_hint: options.pinned_key_location.clone(),
                });
            }
            Err(source) => {
                return Err(Error::Handshake { target: target.clone(), source: Box::new(source) })
            }
        };
        let Some(host_key) = observed.presented else {
            return Err(Error::Handshake {
                target: target.clone(),
                source: Box::new(russh::Error::UnknownKey),
            });
        };
        tracing::debug!(host_key = %fingerprint(&host_key), "host key verified");

        match key {
            Some(key) => authenticate_with_key(&mut handle, target, key).await?,
            None => {
                let Auth::Agent { socket } = auth else {
                    unreachable!("only the agent has no key")
                };
                authenticate_with_agent(&mut handle, target, socket.as_ref()).await?;
            }
        }
        tracing::debug!("authenticated");
        Ok(Session {
            target: target.clone(),
            handle,
            host_key,
            options: options.clone(),
            span,
            escalation: OnceCell::new(),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The host key the server presented and that was verified (or recorded) on connect.
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// The limit of commands that have none of their own (also for work done on the
    /// session's behalf, like a `nix copy` to its host).
    pub fn command_limit(&self) -> &TimeLimit {
        &self.options.command_limit
    }

    /// The limit of the commands run from now on that have none of their own.
    pub fn set_command_limit(&mut self, limit: TimeLimit) {
        self.options.command_limit = limit;
    }

    /// Runs a command and waits for it, at most for its time limit (its own, else the
    /// session's: on timeout it is killed and its channel closed); a non-zero status (unless
    /// allowed), a signal or a missing exit status is an error carrying the stderr tail.
    pub async fn exec(&self, cmd: &RemoteCommand) -> Result<ExecOutput> {
        let what = format!("stdin of `{cmd}`");
        async {
            let mut stream = self.open_stream_for(cmd, what).await?;
            if let Some(bytes) = cmd.stdin_bytes() {
                for chunk in bytes.chunks(exec::CHUNK) {
                    stream.write(chunk.to_vec()).await?;
                }
            }
            stream.finish().await
        }
        .instrument(self.span.clone())
        .await
    }

    /// Runs a command with `input` copied to its stdin.
    pub async fn exec_with_input<R: AsyncRead + Unpin>(
        &self,
        cmd: &RemoteCommand,
        input: R,
    ) -> Result<ExecOutput> {
        let what = format!("stdin of `{cmd}`");
        async {
            let mut stream = self.open_stream_for(cmd, what).await?;
            stream.copy_from(input).await?;
            stream.finish().await
        }
        .instrument(self.span.clone())
        .await
    }

    /// Starts a command for a long streaming transfer: write its stdin with
    /// [`RemoteStream::write`] / [`RemoteStream::copy_from`], then [`RemoteStream::finish`].
    pub async fn open_stream(&self, cmd: &RemoteCommand) -> Result<RemoteStream> {
        let what = format!("stdin of `{cmd}`");
        self.open_stream_for(cmd, what).instrument(self.span.clone()).await
    }

    pub(crate) async fn open_stream_for(
        &self,
        cmd: &RemoteCommand,
        what: String,
    ) -> Result<RemoteStream> {
        let line = cmd.command_line().map_err(Error::InvalidCommand)?;
        // The limit counts from here: detecting sudo and opening the channel are part of it.
        let limit = cmd.limit().cloned().unwrap_or_else(|| self.options.command_limit.clone());
        let deadline = tokio::time::Instant::now() + limit.after;
        let line = if cmd.is_privileged() {
            match self.escalation(deadline, &limit).await? {
                Escalation::None => line,
                Escalation::Sudo => format!("sudo -n -- {line}"),
                Escalation::Doas => format!("doas -n -- {line}"),
            }
        } else {
            line
        };
        self.start(cmd, line, what, deadline, limit).await
    }

    async fn start(
        &self,
        cmd: &RemoteCommand,
        line: String,
        what: String,
        deadline: tokio::time::Instant,
        limit: TimeLimit,
    ) -> Result<RemoteStream> {
        tracing::debug!(command = %cmd, "run");
        let opened = tokio::time::timeout_at(deadline, async {
            let channel = self.open_channel(&format!("starting `{cmd}`")).await?;
            let (read, write) = channel.split();
            write
                .exec(true, line.into_bytes())
                .await
                .map_err(|_| self.lost(&format!("starting `{cmd}`")))?;
            Ok::<_, Error>((read, write))
        })
        .await;
        let (read, write) = match opened {
            Ok(r) => r?,
            Err(_) => return Err(exec::command_timeout(&self.target, &cmd.to_string(), &limit)),
        };
        let allowed = {
            let cmd = cmd.clone();
            Box::new(move |code| cmd.exit_code_allowed(code))
        };
        let spec = StreamSpec {
            target: self.target.clone(),
            command: cmd.to_string(),
            what,
            allowed,
            cap: cmd.cap(),
            early_stdout: cmd.wants_early_stdout(),
            io_timeout: self.options.io_timeout,
            deadline,
            limit,
            span: self.span.clone(),
        };
        Ok(RemoteStream::start(spec, read, write))
    }

    pub(crate) async fn open_channel(
        &self,
        during: &str,
    ) -> Result<russh::Channel<russh::client::Msg>> {
        match self.handle.channel_open_session().await {
            Ok(c) => Ok(c),
            Err(_) if self.handle.is_closed() => Err(self.lost(during)),
            Err(source) => {
                Err(Error::Channel { target: self.target.clone(), source: Box::new(source) })
            }
        }
    }

    fn lost(&self, during: &str) -> Error {
        Error::ConnectionLost { target: self.target.clone(), during: during.to_owned() }
    }

    /// Detects once per session how commands get root, within the limit of the command
    /// that needs it.
    async fn escalation(
        &self,
        deadline: tokio::time::Instant,
        limit: &TimeLimit,
    ) -> Result<Escalation> {
        if self.target.is_root() {
            return Ok(Escalation::None);
        }
        self.escalation
            .get_or_try_init(|| async {
                let probe = RemoteCommand::script("detect-privilege-escalation", DETECT_ESCALATION);
                let line = probe.command_line().map_err(Error::InvalidCommand)?;
                let what = "the privilege check".to_owned();
                let probe = probe.unprivileged();
                let mut stream = self.start(&probe, line, what, deadline, limit.clone()).await?;
                stream.write(DETECT_ESCALATION.as_bytes().to_vec()).await?;
                let out = stream.finish().await?;
                let user = self.target.user.clone();
                let found = match out.stdout_trimmed().as_str() {
                    "root" => Escalation::None,
                    "sudo" => Escalation::Sudo,
                    "doas" => Escalation::Doas,
                    "sudo-password" => {
                        return Err(Error::PasswordRequired {
                            target: self.target.clone(),
                            user,
                            tool: "sudo",
                        })
                    }
                    "doas-password" => {
                        return Err(Error::PasswordRequired {
                            target: self.target.clone(),
                            user,
                            tool: "doas",
                        })
                    }
                    "none" => {
                        return Err(Error::NoEscalation { target: self.target.clone(), user })
                    }
                    other => {
                        return Err(Error::UnexpectedOutput {
                            target: self.target.clone(),
                            what: "privilege check result",
                            output: other.to_owned(),
                        })
                    }
                };
                tracing::debug!(escalation = ?found, "privilege escalation");
                Ok(found)
            })
            .await
            .copied()
    }

    /// The kernel's boot id; compare before and after a reboot or kexec to prove it happened.
    pub async fn boot_id(&self) -> Result<BootId> {
        let cmd = RemoteCommand::new("cat").arg("/proc/sys/kernel/random/boot_id").unprivileged();
        let out = self.exec(&cmd).await?;
        let id = out.stdout_trimmed();
        let valid = id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if !valid {
            return Err(Error::UnexpectedOutput {
                target: self.target.clone(),
                what: "boot id",
                output: id,
            });
        }
        Ok(BootId(id))
    }

    /// Ends the session politely.
    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

fn load_key_file(path: &std::path::Path) -> Result<PrivateKey> {
    let text = zeroize::Zeroizing::new(
        fs_err::read_to_string(path)
            .map_err(|source| Error::KeyFile { path: path.to_owned(), source })?,
    );
    match russh::keys::decode_secret_key(&text, None) {
        Ok(k) => Ok(k),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            Err(Error::KeyEncrypted { path: path.to_owned() })
        }
        Err(source) => Err(Error::KeyFormat { path: path.to_owned(), source: Box::new(source) }),
    }
}

async fn rsa_hash(handle: &Handle<Verifier>, key: &PublicKey) -> Option<russh::keys::HashAlg> {
    if key.algorithm().is_rsa() {
        handle.best_supported_rsa_hash().await.ok().flatten().flatten()
    } else {
        None
    }
}

async fn authenticate_with_key(
    handle: &mut Handle<Verifier>,
    target: &Arc<Target>,
    key: Arc<PrivateKey>,
) -> Result<()> {
    let hash = rsa_hash(handle, key.public_key()).await;
    let tried = vec![fingerprint(key.public_key())];
    let result = handle
        .authenticate_publickey(target.user.clone(), PrivateKeyWithHashAlg::new(key, hash))
        .await
        .map_err(|source| Error::Handshake { target: target.clone(), source: Box::new(source) })?;
    if result.success() {
        Ok(())
    } else {
        Err(Error::AuthRejected { target: target.clone(), tried })
    }
}

async fn authenticate_with_agent(
    handle: &mut Handle<Verifier>,
    target: &Arc<Target>,
    socket: Option<&PathBuf>,
) -> Result<()> {
    let agent_error = |source: russh::keys::Error| Error::Agent {
        socket: socket.cloned(),
        source: Box::new(source),
    };
    let mut agent = match socket {
        Some(path) => AgentClient::connect_uds(path).await,
        None => AgentClient::connect_env().await,
    }
    .map_err(agent_error)?;
    if let Some(binding) = handle.agent_session_binding() {
        // Destination-constrained keys need it; older agents refuse the extension.
        let _ = agent.bind_session(binding, false).await;
    }
    let identities = agent.request_identities().await.map_err(agent_error)?;
    let mut tried = Vec::new();
    for identity in identities {
        let AgentIdentity::PublicKey { key, .. } = identity else { continue };
        let hash = rsa_hash(handle, &key).await;
        tried.push(fingerprint(&key));
        match handle.authenticate_publickey_with(target.user.clone(), key, hash, &mut agent).await {
            Ok(r) if r.success() => return Ok(()),
            Ok(_) => continue,
            Err(russh::AgentAuthError::Key(source)) => return Err(agent_error(source)),
            Err(russh::AgentAuthError::Send(_)) => {
                return Err(Error::ConnectionLost {
                    target: target.clone(),
                    during: "authenticating".into(),
                })
            }
        }
    }
    Err(Error::AuthRejected { target: target.clone(), tried })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_from_state_become_targets() {
        let t = Target::from_address("127.0.0.1:2201", 22, "root").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 2201));
        let t = Target::from_address("203.0.113.7", 22, "root").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("203.0.113.7", 22));
        let t = Target::from_address("[2001:db8::1]:2222", 22, "root").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("2001:db8::1", 2222));
        let t = Target::from_address("2001:db8::1", 22, "admin").unwrap();
        assert_eq!(t.to_string(), "admin@[2001:db8::1]:22");
        assert!(Target::from_address("host:notaport", 22, "root").is_none());
        assert!(Target::from_address("", 22, "root").is_none());
    }
}
