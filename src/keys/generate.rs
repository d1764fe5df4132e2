//! Key generation: admin age keys (the `keys.txt` age-keygen writes) and per-host key sets
//! (an ed25519 SSH host key, its ssh-to-age recipient, optionally a separate age key).

use std::fmt;

use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::identity::AgeIdentity;
use super::recipient::AgeRecipient;
use super::{convert, openssh, KeysError};

/// An identity plus when it was created: the content of an age `keys.txt`.
#[derive(Clone, Debug)]
pub struct AgeKeyFile {
    pub identity: AgeIdentity,
    pub created: OffsetDateTime,
}

impl AgeKeyFile {
    /// The file as `age-keygen` writes it:
    /// `# created: <RFC 3339>`, `# public key: age1...`, `AGE-SECRET-KEY-1...`.
    pub fn to_text(&self) -> Zeroizing<String> {
        let created = self
            .created
            .to_offset(time::UtcOffset::UTC)
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .expect("a UTC timestamp formats");
        Zeroizing::new(format!(
            "# created: {created}\n# public key: {}\n{}\n",
            self.identity.to_public(),
            self.identity.expose_secret()
        ))
    }
}

/// A new admin key, as `age-keygen` would create it now.
pub fn generate_age_identity() -> AgeKeyFile {
    AgeKeyFile { identity: AgeIdentity::generate(), created: OffsetDateTime::now_utc() }
}

/// A new post-quantum admin key, as `age-keygen -pq` (age 1.3) would create it now.
pub fn generate_post_quantum_age_identity() -> AgeKeyFile {
    AgeKeyFile {
        identity: AgeIdentity::generate_post_quantum(),
        created: OffsetDateTime::now_utc(),
    }
}

/// The keys cairn generates for a host before installing it: the SSH host key the installed
/// system presents (so the first connection is verified, not trusted) and from which
/// sops-nix derives its age identity, plus an optional separate age key.
#[derive(Clone)]
pub struct HostKeys {
    host: String,
    private_openssh: Zeroizing<String>,
    public_line: String,
    ssh_age_recipient: AgeRecipient,
    age_identity: Option<AgeIdentity>,
}

impl HostKeys {
    /// Generates an ed25519 host key for `host` (comment `root@<host>`, as `ssh-keygen` on
    /// the host would write it) and, if `separate_age_key`, a separate age identity.
    pub fn generate<H: AsRef<str> + ?Sized>(host: &H, separate_age_key: bool) -> Self {
        let host = host.as_ref();
        let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let seed = Zeroizing::new(signing.to_bytes());
        let public = signing.verifying_key().to_bytes();
        let comment = format!("root@{host}");
        let private_openssh =
            openssh::ed25519_private_pem(&seed, &public, &comment, rand::random());
        let public_line = openssh::ed25519_public_line(&public, &comment);
        let ssh_age_recipient =
            convert::ssh_public_key_to_age(&public_line).expect("a fresh ed25519 key converts");
        Self {
            host: host.to_owned(),
            private_openssh,
            public_line,
            ssh_age_recipient,
            age_identity: separate_age_key.then(AgeIdentity::generate),
        }
    }

    /// Rebuilds a host's keys from their stored private halves (as [`super::store`] keeps
    /// them): the OpenSSH private key file and, if any, the age identity text.
    pub fn from_private(
        host: &str,
        private_openssh: Zeroizing<String>,
        age_identity: Option<AgeIdentity>,
    ) -> Result<Self, KeysError> {
        let key = openssh::parse_ed25519_private(private_openssh.as_bytes()).map_err(|e| {
            KeysError::SshKey { what: "host private key".into(), reason: e.reason().into() }
        })?;
        let comment =
            if key.comment.is_empty() { format!("root@{host}") } else { key.comment.clone() };
        let public_line = openssh::ed25519_public_line(&key.public, &comment);
        let ssh_age_recipient = convert::ssh_public_key_to_age(&public_line)?;
        Ok(Self {
            host: host.to_owned(),
            private_openssh,
            public_line,
            ssh_age_recipient,
            age_identity,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The private key file, exactly what `ssh-keygen -t ed25519 -N ''` writes.
    pub fn ssh_private_openssh(&self) -> &Zeroizing<String> {
        &self.private_openssh
    }

    /// `ssh-ed25519 AAAA... root@<host>`: what goes into state and known_hosts.
    pub fn ssh_public_line(&self) -> &str {
        &self.public_line
    }

    /// The age recipient sops-nix derives from the host key (ssh-to-age).
    pub fn ssh_age_recipient(&self) -> &AgeRecipient {
        &self.ssh_age_recipient
    }

    /// The age identity sops-nix derives from the host key.
    pub fn ssh_age_identity(&self) -> AgeIdentity {
        convert::ssh_private_key_to_age(self.private_openssh.as_bytes())
            .expect("host keys are unencrypted ed25519")
    }

    /// The separate age identity, when one was asked for.
    pub fn age_identity(&self) -> Option<&AgeIdentity> {
        self.age_identity.as_ref()
    }

    /// The recipient secrets are encrypted to for this host: the separate age key's if there
    /// is one, else the ssh-to-age one.
    pub fn age_recipient(&self) -> AgeRecipient {
        match &self.age_identity {
            Some(id) => id.to_public(),
            None => self.ssh_age_recipient.clone(),
        }
    }
}

impl fmt::Debug for HostKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKeys")
            .field("host", &self.host)
            .field("ssh_public", &self.public_line)
            .field("age_recipient", &self.age_recipient().as_str())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_txt_has_the_age_keygen_layout() {
        let file = AgeKeyFile {
            identity: AgeIdentity::generate(),
            created: time::macros::datetime!(2026-11-22 06:07:48 UTC),
        };
        let text = file.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# created: 2026-11-22T06:07:48Z");
        assert_eq!(lines[1], format!("# public key: {}", file.identity.to_public()));
        assert!(lines[2].starts_with("AGE-SECRET-KEY-1"));
        assert_eq!(lines.len(), 3);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn debug_never_shows_private_material() {
        let keys = HostKeys::generate("web1", true);
        let debug = format!("{keys:?} {:?}", keys.age_identity().unwrap());
        assert!(!debug.contains("AGE-SECRET-KEY"), "{debug}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        assert!(!debug.contains(keys.ssh_private_openssh().lines().nth(1).unwrap()), "{debug}");
    }

    #[test]
    fn russh_reads_the_generated_keys() {
        use russh::keys::ssh_key::{PrivateKey, PublicKey};
        let keys = HostKeys::generate("web1", false);
        let private = PrivateKey::from_openssh(keys.ssh_private_openssh().as_bytes()).unwrap();
        let public = PublicKey::from_openssh(keys.ssh_public_line()).unwrap();
        assert_eq!(private.public_key().key_data(), public.key_data());
        assert_eq!(private.comment().as_bytes(), b"root@web1");
    }

    #[test]
    fn host_keys_round_trip_through_their_private_halves() {
        let keys = HostKeys::generate("web1", true);
        let again = HostKeys::from_private(
            "web1",
            keys.ssh_private_openssh().clone(),
            keys.age_identity().cloned(),
        )
        .unwrap();
        assert_eq!(again.ssh_public_line(), keys.ssh_public_line());
        assert_eq!(again.ssh_age_recipient(), keys.ssh_age_recipient());
        assert_eq!(again.age_recipient(), keys.age_recipient());
        assert_ne!(keys.age_recipient(), *keys.ssh_age_recipient(), "the separate key wins");
        assert!(keys.ssh_public_line().ends_with(" root@web1"));
    }
}
