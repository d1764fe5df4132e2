//! Where age identities come from, exactly as sops 3.11 finds them (`loadIdentities`): every
//! source is loaded and the results combined; none short-circuits the others.
//!
//! 1. SSH keys: `SOPS_AGE_SSH_PRIVATE_KEY_FILE`, then `~/.ssh/id_ed25519` and `~/.ssh/id_rsa`
//!    if they exist, as SSH identities (they decrypt `ssh-ed25519`/`ssh-rsa` stanzas; unlike
//!    sops 3.12+, 3.11 does not also derive the ssh-to-age identity from them).
//! 2. `SOPS_AGE_KEY` (identities inline), `SOPS_AGE_KEY_FILE` (a path), `SOPS_AGE_KEY_CMD`
//!    (split like a shell word list and run without a shell; its stdout holds identities).
//! 3. `keys.txt` in the user config dir: `$XDG_CONFIG_HOME/sops/age/keys.txt`, or
//!    `$HOME/.config/sops/age/keys.txt` (Go's `os.UserConfigDir` on Linux).
//!
//! The environment is passed in ([`IdentityEnv`]), so callers and tests choose it. What was
//! tried is reported per source ([`SourceReport`]), never what was found there.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

pub use super::age_key::{AgeIdentity, AnyAgeIdentity};
use super::hybrid::{self, HybridIdentity};
use super::KeysError;

pub const SOPS_AGE_SSH_PRIVATE_KEY_FILE: &str = "SOPS_AGE_SSH_PRIVATE_KEY_FILE";
pub const SOPS_AGE_KEY: &str = "SOPS_AGE_KEY";
pub const SOPS_AGE_KEY_FILE: &str = "SOPS_AGE_KEY_FILE";
pub const SOPS_AGE_KEY_CMD: &str = "SOPS_AGE_KEY_CMD";

/// The environment identity discovery reads: variables only, so a test can build one
/// without touching the process environment.
#[derive(Clone, Default)]
pub struct IdentityEnv {
    vars: BTreeMap<String, String>,
}

impl IdentityEnv {
    /// The current process environment (variables that are not UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.vars.remove(name);
        self
    }

    /// `$HOME`, as Go's `os.UserHomeDir` reads it on Unix.
    pub fn home(&self) -> Option<PathBuf> {
        self.get("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
    }

    /// Go's `os.UserConfigDir` on Linux: `$XDG_CONFIG_HOME` (must be absolute) or `$HOME/.config`.
    pub fn user_config_dir(&self) -> Option<PathBuf> {
        match self.get("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
            Some(dir) if Path::new(dir).is_absolute() => Some(PathBuf::from(dir)),
            Some(_) => None,
            None => self.home().map(|h| h.join(".config")),
        }
    }

    /// The default `keys.txt`, if a config dir can be determined.
    pub fn default_keys_txt(&self) -> Option<PathBuf> {
        self.user_config_dir().map(|d| d.join("sops").join("age").join("keys.txt"))
    }
}

impl FromIterator<(String, String)> for IdentityEnv {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self { vars: iter.into_iter().collect() }
    }
}

impl fmt::Debug for IdentityEnv {
    // SOPS_AGE_KEY holds private keys: show names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityEnv").field("vars", &self.vars.keys().collect::<Vec<_>>()).finish()
    }
}

/// One place identities may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// `SOPS_AGE_SSH_PRIVATE_KEY_FILE`
    SshKeyFileEnv(Option<PathBuf>),
    /// `~/.ssh/id_ed25519` or `~/.ssh/id_rsa`
    DefaultSshKey(PathBuf),
    /// `SOPS_AGE_KEY`
    KeyEnv,
    /// `SOPS_AGE_KEY_FILE`
    KeyFileEnv(Option<PathBuf>),
    /// `SOPS_AGE_KEY_CMD`
    KeyCmdEnv(Option<String>),
    /// `$XDG_CONFIG_HOME/sops/age/keys.txt`; `None` when no config dir is known.
    DefaultKeysTxt(Option<PathBuf>),
}

impl fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SshKeyFileEnv(Some(p)) => {
                write!(f, "{SOPS_AGE_SSH_PRIVATE_KEY_FILE} ({})", p.display())
            }
            Self::SshKeyFileEnv(None) => f.write_str(SOPS_AGE_SSH_PRIVATE_KEY_FILE),
            Self::DefaultSshKey(p) => write!(f, "{}", p.display()),
            Self::KeyEnv => f.write_str(SOPS_AGE_KEY),
            Self::KeyFileEnv(Some(p)) => write!(f, "{SOPS_AGE_KEY_FILE} ({})", p.display()),
            Self::KeyFileEnv(None) => f.write_str(SOPS_AGE_KEY_FILE),
            Self::KeyCmdEnv(Some(c)) => write!(f, "{SOPS_AGE_KEY_CMD} (`{c}`)"),
            Self::KeyCmdEnv(None) => f.write_str(SOPS_AGE_KEY_CMD),
            Self::DefaultKeysTxt(Some(p)) => write!(f, "{}", p.display()),
            Self::DefaultKeysTxt(None) => f.write_str("sops/age/keys.txt in the user config dir"),
        }
    }
}

/// What a source gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOutcome {
    /// The variable is not set.
    NotSet,
    /// The file does not exist.
    Missing,
    /// This many identities were loaded.
    Loaded(usize),
    /// Read fine but held no identity.
    Empty,
    /// Deliberately not used (e.g. a passphrase-protected key without a terminal).
    Skipped(String),
    /// Reading or parsing failed; the reason never quotes the content.
    Failed(String),
}

impl fmt::Display for SourceOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSet => f.write_str("not set"),
            Self::Missing => f.write_str("no such file"),
            Self::Loaded(1) => f.write_str("1 identity"),
            Self::Loaded(n) => write!(f, "{n} identities"),
            Self::Empty => f.write_str("no identities in it"),
            Self::Skipped(why) => write!(f, "skipped: {why}"),
            Self::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    pub source: IdentitySource,
    pub outcome: SourceOutcome,
}

type BoxedIdentity = Box<dyn age::Identity + Send + Sync>;

/// The identities found, and where cairn looked.
pub struct Identities {
    identities: Vec<BoxedIdentity>,
    pub report: Vec<SourceReport>,
}

impl Identities {
    /// No identities, nothing tried (add some with [`Identities::push`]).
    pub fn empty() -> Self {
        Self { identities: Vec::new(), report: Vec::new() }
    }

    /// Loads every source sops 3.11 loads. Never fails as a whole: each source's problem is
    /// in [`Identities::report`] (and logged), and the caller fails if nothing decrypts.
    pub fn discover(env: &IdentityEnv) -> Self {
        let mut this = Self::empty();

        // 1. SSH keys.
        match env.get(SOPS_AGE_SSH_PRIVATE_KEY_FILE) {
            Some(path) => {
                let path = PathBuf::from(path);
                let outcome = this.load_ssh_key(&path);
                this.record(IdentitySource::SshKeyFileEnv(Some(path)), outcome);
            }
            None => this.record(IdentitySource::SshKeyFileEnv(None), SourceOutcome::NotSet),
        }
        if let Some(home) = env.home() {
            for name in ["id_ed25519", "id_rsa"] {
                let path = home.join(".ssh").join(name);
                let outcome =
                    if path.exists() { this.load_ssh_key(&path) } else { SourceOutcome::Missing };
                this.record(IdentitySource::DefaultSshKey(path), outcome);
            }
        }

        // 2. Environment variables.
        match env.get(SOPS_AGE_KEY) {
            Some(text) => {
                let outcome = this.load_text(text.as_bytes());
                this.record(IdentitySource::KeyEnv, outcome);
            }
            None => this.record(IdentitySource::KeyEnv, SourceOutcome::NotSet),
        }
        match env.get(SOPS_AGE_KEY_FILE) {
            Some(path) => {
                let path = PathBuf::from(path);
                let outcome = match read_private(&path) {
                    Ok(Some(text)) => this.load_text(&text),
                    Ok(None) => SourceOutcome::Missing,
                    Err(e) => SourceOutcome::Failed(e.to_string()),
                };
                this.record(IdentitySource::KeyFileEnv(Some(path)), outcome);
            }
            None => this.record(IdentitySource::KeyFileEnv(None), SourceOutcome::NotSet),
        }
        match env.get(SOPS_AGE_KEY_CMD) {
            Some(cmd) => {
                let outcome = match run_key_cmd(cmd) {
                    Ok(out) => this.load_text(&out),
                    Err(why) => SourceOutcome::Failed(why),
                };
                this.record(IdentitySource::KeyCmdEnv(Some(cmd.to_owned())), outcome);
            }
            None => this.record(IdentitySource::KeyCmdEnv(None), SourceOutcome::NotSet),
        }

        // 3. The default keys.txt.
        let default = env.default_keys_txt();
        let outcome = match &default {
            None => {
                SourceOutcome::Failed("neither $XDG_CONFIG_HOME (absolute) nor $HOME is set".into())
            }
            Some(path) => match read_private(path) {
                Ok(Some(text)) => this.load_text(&text),
                Ok(None) => SourceOutcome::Missing,
                Err(e) => SourceOutcome::Failed(e.to_string()),
            },
        };
        this.record(IdentitySource::DefaultKeysTxt(default), outcome);
        this
    }

    fn record(&mut self, source: IdentitySource, outcome: SourceOutcome) {
        match &outcome {
            SourceOutcome::Loaded(n) => {
                tracing::debug!(source = %source, count = n, "loaded age identities")
            }
            SourceOutcome::Skipped(why) => {
                tracing::warn!(source = %source, "age identities skipped: {why}")
            }
            SourceOutcome::Failed(why) => {
                tracing::warn!(source = %source, "could not load age identities: {why}")
            }
            _ => tracing::trace!(source = %source, outcome = %outcome, "age identity source"),
        }
        self.report.push(SourceReport { source, outcome });
    }

    fn load_ssh_key(&mut self, path: &Path) -> SourceOutcome {
        let bytes = match fs_err::read(path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SourceOutcome::Missing,
            Err(e) => return SourceOutcome::Failed(e.to_string()),
        };
        let identity =
            match age::ssh::Identity::from_buffer(&bytes[..], Some(path.display().to_string())) {
                Ok(id) => id,
                Err(_) => {
                    return SourceOutcome::Failed("not an SSH private key age can use".into())
                }
            };
        match identity {
            // sops 3.11 uses the key as an SSH identity only; it does not also derive the
            // ssh-to-age X25519 identity (later releases do). Checked against the real binary.
            id @ age::ssh::Identity::Unencrypted(_) => {
                self.identities.push(Box::new(id));
                SourceOutcome::Loaded(1)
            }
            age::ssh::Identity::Encrypted(_) => SourceOutcome::Skipped(
                "the key is protected by a passphrase (cairn does not prompt; put an age identity in SOPS_AGE_KEY_FILE instead)".into(),
            ),
            age::ssh::Identity::Unsupported(kind) => SourceOutcome::Failed(format!("unsupported SSH key: {kind:?}")),
        }
    }

    /// Identity text: one per line; blank lines and `#` lines ignored. As in sops, one bad
    /// line makes the whole source fail.
    fn load_text(&mut self, text: &[u8]) -> SourceOutcome {
        match parse_identity_text(text) {
            Ok(ids) if ids.is_empty() => SourceOutcome::Empty,
            Ok(ids) => {
                let n = ids.len();
                self.identities.extend(ids);
                SourceOutcome::Loaded(n)
            }
            Err(outcome) => outcome,
        }
    }

    /// Adds an identity explicitly (a host's own key, a test key).
    pub fn push(&mut self, identity: impl age::Identity + Send + Sync + 'static) {
        self.identities.push(Box::new(identity));
    }

    pub fn len(&self) -> usize {
        self.identities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// The identities, for `age::Decryptor::decrypt`.
    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities.iter().map(|id| id.as_ref() as &dyn age::Identity)
    }

    /// Where cairn looked, one `source: outcome` per line, for an error's help text.
    pub fn describe_sources(&self) -> String {
        self.report
            .iter()
            .map(|r| format!("{}: {}", r.source, r.outcome))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Decrypts one age file (armored or binary), as sops decrypts a data-key stanza.
    pub fn decrypt(&self, age_file: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeysError> {
        if self.is_empty() {
            return Err(KeysError::NoIdentities { tried: self.describe_sources() });
        }
        let reader = age::armor::ArmoredReader::new(age_file);
        let decryptor = age::Decryptor::new(reader)
            .map_err(|e| KeysError::AgeDecrypt { reason: e.to_string() })?;
        let mut stream = decryptor.decrypt(self.iter()).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => {
                KeysError::NoMatchingIdentity { tried: self.describe_sources() }
            }
            other => KeysError::AgeDecrypt { reason: other.to_string() },
        })?;
        let mut out = Zeroizing::new(Vec::new());
        stream
            .read_to_end(&mut out)
            .map_err(|e| KeysError::AgeDecrypt { reason: e.to_string() })?;
        Ok(out)
    }
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("count", &self.identities.len())
            .field("report", &self.report)
            .finish()
    }
}

/// Encrypts `plaintext` to every recipient as one armored age file, as sops writes a
/// data-key stanza (`enc:`), with a trailing newline.
pub fn encrypt_armored(
    recipients: &[super::AgeRecipient],
    plaintext: &[u8],
) -> Result<String, KeysError> {
    use std::io::Write as _;
    let pq = recipients.iter().filter(|r| r.kind() == super::RecipientKind::Hybrid).count();
    if pq > 0 && pq < recipients.len() {
        // As age 1.3 does: a classic stanza beside the post-quantum ones would let a quantum
        // attacker read the file anyway. (sops files are not affected: sops and cairn seal
        // the data key to each recipient in its own age file.)
        return Err(KeysError::AgeEncrypt {
            reason: "one age file cannot mix post-quantum (age1pq1...) and classic recipients; use post-quantum keys for all of them".into(),
        });
    }
    let boxed: Vec<Box<dyn age::Recipient + Send + Sync>> =
        recipients.iter().map(|r| r.to_age()).collect();
    let encryptor =
        age::Encryptor::with_recipients(boxed.iter().map(|r| r.as_ref() as &dyn age::Recipient))
            .map_err(|e| KeysError::AgeEncrypt { reason: e.to_string() })?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| KeysError::AgeEncrypt { reason: e.to_string() })?;
    let io = |e: std::io::Error| KeysError::AgeEncrypt { reason: e.to_string() };
    let mut writer = encryptor.wrap_output(armor).map_err(io)?;
    writer.write_all(plaintext).map_err(io)?;
    writer.finish().and_then(|armor| armor.finish()).map_err(io)?;
    let mut text = String::from_utf8(out).expect("armor is ASCII");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Reads a file that may hold private keys; `Ok(None)` if it does not exist.
fn read_private(path: &Path) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
    match fs_err::read(path) {
        Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse_identity_text(text: &[u8]) -> Result<Vec<BoxedIdentity>, SourceOutcome> {
    let text =
        std::str::from_utf8(text).map_err(|_| SourceOutcome::Failed("not UTF-8 text".into()))?;
    let start = text.trim_start();
    if start.starts_with("age-encryption.org") || start.starts_with("-----BEGIN AGE") {
        return Err(SourceOutcome::Skipped(
            "a passphrase-encrypted identity file (cairn does not prompt; decrypt it with `age -d` into a private file)".into(),
        ));
    }
    let mut ids: Vec<BoxedIdentity> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // As Go's line scanner: the line break (and a `\r` before it) goes, nothing else.
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("AGE-PLUGIN-") {
            return Err(SourceOutcome::Failed(format!(
                "line {}: age plugin identities are not supported",
                i + 1
            )));
        }
        if line.starts_with(hybrid::IDENTITY_PREFIX) {
            let id = HybridIdentity::parse(line)
                .map_err(|why| SourceOutcome::Failed(format!("line {}: {why}", i + 1)))?;
            ids.push(Box::new(id));
            continue;
        }
        if !line.starts_with("AGE-SECRET-KEY-1") {
            return Err(SourceOutcome::Failed(format!("line {}: unknown identity type", i + 1)));
        }
        let id = line
            .parse::<age::x25519::Identity>()
            .map_err(|why| SourceOutcome::Failed(format!("line {}: {why}", i + 1)))?;
        ids.push(Box::new(id));
    }
    Ok(ids)
}

/// Runs `SOPS_AGE_KEY_CMD` as sops does: split into words (quotes and backslashes as in a
/// shell), run without a shell, stdout holds the identities.
fn run_key_cmd(cmd: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let words = split_words(cmd).ok_or_else(|| "unbalanced quotes in the command".to_owned())?;
    let (program, args) = words.split_first().ok_or_else(|| "the command is empty".to_owned())?;
    let output = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run `{program}`: {e}"))?;
    let stdout = Zeroizing::new(output.stdout);
    if !output.status.success() {
        return Err(format!("the command exited with {}", output.status));
    }
    Ok(stdout)
}

/// Splits a command line into words the way `github.com/google/shlex` does (the splitter sops
/// uses): whitespace separates words; `'...'` is literal; in `"..."` and outside quotes a
/// backslash takes the next character literally; `#` at a word start begins a
/// comment. `None` for an unterminated quote.
pub(crate) fn split_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '#' if word.is_none() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => w.push(chars.next()?),
                        c => w.push(c),
                    }
                }
            }
            '\\' => {
                let w = word.get_or_insert_with(String::new);
                match chars.next()? {
                    '\n' => {}
                    c => w.push(c),
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word {
        words.push(w);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_in(dir: &Path) -> IdentityEnv {
        let mut env = IdentityEnv::default();
        env.set("HOME", dir.join("home").display().to_string());
        env
    }

    #[test]
    fn splits_like_a_shell_without_running_one() {
        assert_eq!(split_words("cat  /tmp/key").unwrap(), ["cat", "/tmp/key"]);
        assert_eq!(
            split_words(r#"sh -c 'echo "$X"' a\ b "c \"d\"""#).unwrap(),
            ["sh", "-c", "echo \"$X\"", "a b", "c \"d\""]
        );
        assert_eq!(split_words("pass show age # comment").unwrap(), ["pass", "show", "age"]);
        assert_eq!(split_words("a''b").unwrap(), ["ab"]);
        assert!(split_words("echo 'oops").is_none());
    }

    #[test]
    fn config_dir_follows_go_user_config_dir() {
        let mut env = IdentityEnv::default();
        assert_eq!(env.default_keys_txt(), None);
        env.set("HOME", "/home/a");
        assert_eq!(env.default_keys_txt().unwrap(), Path::new("/home/a/.config/sops/age/keys.txt"));
        env.set("XDG_CONFIG_HOME", "/xdg");
        assert_eq!(env.default_keys_txt().unwrap(), Path::new("/xdg/sops/age/keys.txt"));
        env.set("XDG_CONFIG_HOME", "relative");
        assert_eq!(env.default_keys_txt(), None, "Go refuses a relative XDG_CONFIG_HOME");
    }

    #[test]
    fn all_sources_are_combined_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let a = crate::keys::AgeIdentity::generate();
        let b = crate::keys::AgeIdentity::generate();
        let c = crate::keys::AgeIdentity::generate();
        let file = dir.path().join("key.txt");
        fs_err::write(&file, format!("# a comment\n\n{}\n", b.expose_secret())).unwrap();
        let cfg = dir.path().join("home/.config/sops/age");
        fs_err::create_dir_all(&cfg).unwrap();
        fs_err::write(cfg.join("keys.txt"), format!("{}\n", c.expose_secret())).unwrap();

        let mut env = env_in(dir.path());
        env.set(SOPS_AGE_KEY, a.expose_secret()).set(SOPS_AGE_KEY_FILE, file.display().to_string());
        let ids = Identities::discover(&env);
        assert_eq!(ids.len(), 3);
        let outcomes: Vec<_> = ids.report.iter().map(|r| r.outcome.clone()).collect();
        assert_eq!(
            outcomes,
            [
                SourceOutcome::NotSet,
                SourceOutcome::Missing,
                SourceOutcome::Missing,
                SourceOutcome::Loaded(1),
                SourceOutcome::Loaded(1),
                SourceOutcome::NotSet,
                SourceOutcome::Loaded(1),
            ]
        );
        let described = ids.describe_sources();
        for secret in [&a, &b, &c] {
            assert!(!described.contains(secret.expose_secret()));
        }
        for id in [&a, &b, &c] {
            let enc = encrypt_armored(&[id.to_public()], b"data key").unwrap();
            assert_eq!(&ids.decrypt(enc.as_bytes()).unwrap()[..], b"data key");
        }
    }

    #[test]
    fn post_quantum_identities_load_beside_x25519_ones() {
        let dir = tempfile::tempdir().unwrap();
        let pq = crate::keys::AgeIdentity::generate_post_quantum();
        let x = crate::keys::AgeIdentity::generate();
        assert!(pq.is_post_quantum() && !x.is_post_quantum());
        assert_eq!(AgeIdentity::parse(pq.expose_secret()).unwrap().to_public(), pq.to_public());
        let mut env = env_in(dir.path());
        env.set(SOPS_AGE_KEY, format!("{}\n{}\n", x.expose_secret(), pq.expose_secret()));
        let ids = Identities::discover(&env);
        assert_eq!(ids.len(), 2);
        for id in [&pq, &x] {
            let enc = encrypt_armored(&[id.to_public()], b"data key").unwrap();
            assert_eq!(&ids.decrypt(enc.as_bytes()).unwrap()[..], b"data key");
        }
    }

    #[test]
    fn one_age_file_refuses_to_mix_post_quantum_and_classic_recipients_as_age_does() {
        let pq = crate::keys::AgeIdentity::generate_post_quantum().to_public();
        let x = crate::keys::AgeIdentity::generate().to_public();
        let err = encrypt_armored(&[x, pq.clone()], b"k").unwrap_err();
        assert!(matches!(err, KeysError::AgeEncrypt { .. }), "{err:?}");
        assert!(err.to_string().contains("post-quantum"), "{err}");
        let pq2 = crate::keys::AgeIdentity::generate_post_quantum().to_public();
        assert!(encrypt_armored(&[pq, pq2], b"k").is_ok());
    }

    #[test]
    fn a_bad_post_quantum_line_says_why_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let pq = crate::keys::AgeIdentity::generate_post_quantum();
        let cut = &pq.expose_secret()[..40];
        let mut env = env_in(dir.path());
        env.set(SOPS_AGE_KEY, format!("# mine\n{cut}\n"));
        let ids = Identities::discover(&env);
        assert!(ids.is_empty());
        let key_env = ids.report.iter().find(|r| r.source == IdentitySource::KeyEnv).unwrap();
        assert!(
            matches!(&key_env.outcome, SourceOutcome::Failed(why) if why.starts_with("line 2: not valid Bech32") && !why.contains(&cut[19..])),
            "{key_env:?}"
        );
        let err = AgeIdentity::parse(cut).unwrap_err();
        assert!(!format!("{err} {err:?}").contains(&cut[19..]), "{err:?}");
    }

    #[test]
    fn a_bad_line_fails_its_source_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = env_in(dir.path());
        env.set(SOPS_AGE_KEY, "AGE-SECRET-KEY-1NOTAKEY\n");
        let ids = Identities::discover(&env);
        assert!(ids.is_empty());
        let key_env = ids.report.iter().find(|r| r.source == IdentitySource::KeyEnv).unwrap();
        assert!(
            matches!(&key_env.outcome, SourceOutcome::Failed(why) if why.starts_with("line 1:") && !why.contains("NOTAKEY")),
            "{key_env:?}"
        );
        let err = ids.decrypt(b"anything").unwrap_err();
        assert!(matches!(err, KeysError::NoIdentities { .. }));
    }
}
