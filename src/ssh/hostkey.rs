//! Host key policy: the server must present a pinned key, or (first contact only) its key is
//! recorded for the caller to pin from then on. There is no "accept anything" mode.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use russh::keys::{Algorithm, HashAlg, PublicKey, PublicKeyOrCertificate};

/// How a connection decides whether the server's host key is the right one.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// The server must present one of these keys; anything else refuses the connection.
    Pinned(Vec<PublicKey>),
    /// Accept the key the server presents and return it (`Session::host_key`), so the caller
    /// records it in state and pins it for every later connection. Only for a host never
    /// contacted before, whose key cairn cannot know in advance (a provider's stock image).
    RecordOnFirstContact,
    /// [`HostKeyPolicy::RecordOnFirstContact`], except for these keys: a server presenting
    /// one is a system the caller already knows (a host cairn installed, with state lost),
    /// so this is no first contact. The connection fails with
    /// [`super::Error::KnownHostKey`] at the handshake, before authentication.
    RecordUnless(Vec<PublicKey>),
}

impl HostKeyPolicy {
    /// Pins keys given in OpenSSH one-line form (`ssh-ed25519 AAAA... comment`).
    pub fn pinned_openssh<I, S>(lines: I) -> Result<Self, russh::keys::ssh_key::Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = lines
            .into_iter()
            .map(|l| PublicKey::from_openssh(l.as_ref().trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::Pinned(keys))
    }

    /// Host key algorithms to offer, pinned (or refused) algorithms first, so a server
    /// holding several host keys presents the one the policy is about.
    pub(crate) fn preferred_algorithms(&self) -> Cow<'static, [Algorithm]> {
        let defaults = russh::Preferred::DEFAULT.key;
        let (HostKeyPolicy::Pinned(keys) | HostKeyPolicy::RecordUnless(keys)) = self else {
            return defaults;
        };
        let mut out: Vec<Algorithm> = Vec::new();
        for key in keys {
            let algs = match key.algorithm() {
                Algorithm::Rsa { .. } => vec![
                    Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
                    Algorithm::Rsa { hash: Some(HashAlg::Sha256) },
                ],
                other => vec![other],
            };
            for a in algs {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        for a in defaults.iter() {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        Cow::Owned(out)
    }
}

/// `ssh-ed25519 SHA256:...`: how a key is shown to people.
pub fn fingerprint(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm().as_str(), key.fingerprint(HashAlg::Sha256))
}

/// `known_hosts` lines pinning `keys` for `target`, for the OpenSSH client (`nix copy` over
/// ssh gets them through `NIX_SSHOPTS`, see [`openssh_options`]).
pub fn known_hosts(target: &super::Target, keys: &[PublicKey]) -> String {
    let host = if target.port == 22 {
        target.host.clone()
    } else {
        format!("[{}]:{}", target.host, target.port)
    };
    let mut out = String::new();
    for key in keys {
        let mut key = key.clone();
        key.set_comment("");
        if let Ok(line) = key.to_openssh() {
            out.push_str(&format!("{host} {}\n", line.trim_end()));
        }
    }
    out
}

/// OpenSSH client options that accept only the keys in `known_hosts_file` (written with
/// [`known_hosts`]): no prompt, no other known_hosts file, no key learnt on the way.
pub fn openssh_options(known_hosts_file: &std::path::Path) -> Vec<String> {
    [
        "StrictHostKeyChecking=yes".to_owned(),
        format!("UserKnownHostsFile={}", known_hosts_file.display()),
        "GlobalKnownHostsFile=/dev/null".to_owned(),
        "UpdateHostKeys=no".to_owned(),
        "CheckHostIP=no".to_owned(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_owned(), o])
    .collect()
}

/// What the handshake saw, shared between the russh handler and `Session::connect`.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    pub presented: Option<PublicKey>,
    pub certificate: bool,
}

/// The russh client handler: checks the host key against the policy and nothing else.
pub(crate) struct Verifier {
    pub policy: HostKeyPolicy,
    pub observed: Arc<Mutex<Observed>>,
}

impl russh::client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        let key = match server {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                observed.certificate = true;
                return Ok(false);
            }
        };
        observed.presented = Some(key.clone());
        Ok(match &self.policy {
            HostKeyPolicy::Pinned(pins) => pins.iter().any(|p| p.key_data() == key.key_data()),
            HostKeyPolicy::RecordOnFirstContact => true,
            HostKeyPolicy::RecordUnless(known) => {
                !known.iter().any(|k| k.key_data() == key.key_data())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKna0glgZAokHtKFwcbxTtqCIs1dpDtPCgmJepLqN7JR test";

    #[test]
    fn pinned_algorithm_comes_first() {
        let ecdsa = PublicKey::from_openssh(
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJ+DnwH3YL9K5PuI+YBHLQTeN+B82YXtDAdh5mvxpr0nJPx5BPImJhHkUm6tfDvVrg397o5P2AQqKELQjZ3WMVc=",
        )
        .unwrap();
        let policy = HostKeyPolicy::Pinned(vec![ecdsa]);
        let algs = policy.preferred_algorithms();
        assert_eq!(algs[0], Algorithm::Ecdsa { curve: russh::keys::EcdsaCurve::NistP256 });
        assert!(algs.contains(&Algorithm::Ed25519));
    }

    #[test]
    fn known_hosts_lines_use_brackets_for_non_default_ports() {
        let key = PublicKey::from_openssh(ED).unwrap();
        let t = super::super::Target::new("127.0.0.1", 2201, "root");
        let lines = known_hosts(&t, std::slice::from_ref(&key));
        assert!(lines.starts_with("[127.0.0.1]:2201 ssh-ed25519 AAAA"), "{lines}");
        assert!(!lines.contains("test"), "the comment is dropped: {lines}");
        let t = super::super::Target::new("web1.example", 22, "root");
        assert!(known_hosts(&t, &[key]).starts_with("web1.example ssh-ed25519 "));
    }

    #[test]
    fn fingerprint_names_the_algorithm_and_sha256() {
        let key = PublicKey::from_openssh(ED).unwrap();
        let fp = fingerprint(&key);
        assert!(fp.starts_with("ssh-ed25519 SHA256:"), "{fp}");
    }
}
