//! age recipients as sops stores them: the configured string, trimmed, kept verbatim.

use std::fmt;

use super::KeysError;

/// The kind of an age recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientKind {
    /// `age1...`: a native X25519 key.
    X25519,
    /// `ssh-ed25519 AAAA... [comment]`.
    SshEd25519,
    /// `ssh-rsa AAAA... [comment]`.
    SshRsa,
    /// `age1pq1...`: a hybrid post-quantum key (ML-KEM-768 + X25519, age 1.3).
    Hybrid,
}

#[derive(Clone)]
enum Parsed {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
    Hybrid(super::hybrid::HybridRecipient),
}

/// A validated age recipient. Its string form is exactly what sops writes into a file's
/// `recipient` field (the configured text, trimmed; an SSH line keeps its comment).
#[derive(Clone)]
pub struct AgeRecipient {
    text: String,
    kind: RecipientKind,
    parsed: Parsed,
}

impl AgeRecipient {
    /// Parses one recipient the way sops' `parseRecipient` does: `age1pq1` is a hybrid
    /// post-quantum key, other `age1` with exactly one `1` is X25519, `age1` with more is an
    /// age plugin (not supported here), `ssh-` is an SSH public key line.
    pub fn parse(s: &str) -> Result<Self, KeysError> {
        let text = s.trim();
        if text.starts_with("AGE-SECRET-KEY-") {
            return Err(KeysError::PrivateKeyAsRecipient);
        }
        if text.starts_with(super::hybrid::RECIPIENT_PREFIX) {
            let parsed = super::hybrid::HybridRecipient::parse(text).map_err(|reason| {
                KeysError::InvalidRecipient {
                    recipient: abbreviate(text),
                    reason,
                    summary: "not a valid post-quantum age recipient (bad checksum or length)",
                }
            })?;
            return Ok(Self {
                text: text.to_owned(),
                kind: RecipientKind::Hybrid,
                parsed: Parsed::Hybrid(parsed),
            });
        }
        if text.starts_with("age1") && text.matches('1').count() > 1 {
            return Err(KeysError::PluginRecipient { recipient: text.to_owned() });
        }
        if text.starts_with("age1") {
            let parsed: age::x25519::Recipient =
                text.parse().map_err(|reason: &str| KeysError::InvalidRecipient {
                    recipient: text.to_owned(),
                    reason: reason.to_owned(),
                    summary: "not a valid age recipient (bad checksum or length)",
                })?;
            return Ok(Self {
                text: text.to_owned(),
                kind: RecipientKind::X25519,
                parsed: Parsed::X25519(parsed),
            });
        }
        if text.starts_with("ssh-") {
            let parsed: age::ssh::Recipient = text.parse().map_err(|e| {
                let summary = match e {
                    age::ssh::ParseRecipientKeyError::RsaModulusTooSmall => {
                        "this RSA key is too short (under 2048 bits)"
                    }
                    _ => "not a valid SSH public key",
                };
                KeysError::InvalidRecipient {
                    recipient: text.to_owned(),
                    reason: ssh_reason(e),
                    summary,
                }
            })?;
            let kind = match parsed {
                age::ssh::Recipient::SshEd25519(..) => RecipientKind::SshEd25519,
                age::ssh::Recipient::SshRsa(..) => RecipientKind::SshRsa,
            };
            return Ok(Self { text: text.to_owned(), kind, parsed: Parsed::Ssh(parsed) });
        }
        Err(KeysError::UnknownRecipient { recipient: text.to_owned() })
    }

    /// Parses a comma-separated list as sops does for config strings: items are trimmed and
    /// empty items dropped, so `" a , b ,"` is two recipients.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, KeysError> {
        s.split(',').map(str::trim).filter(|item| !item.is_empty()).map(Self::parse).collect()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn kind(&self) -> RecipientKind {
        self.kind
    }

    /// The recipient for the `age` crate's encryptor (and the sops core's key groups).
    pub fn to_age(&self) -> Box<dyn age::Recipient + Send + Sync> {
        match &self.parsed {
            Parsed::X25519(r) => Box::new(r.clone()),
            Parsed::Ssh(r) => Box::new(r.clone()),
            Parsed::Hybrid(r) => Box::new(r.clone()),
        }
    }
}

/// A recipient by its ends (`age1abcdef…uvwxyz`, `ssh-ed25519 …uvwxyz12 comment`): enough to
/// recognise it in a message, and short for a post-quantum one (about 1,950 characters).
/// By characters, not bytes: the text may come from any file.
pub fn abbreviate(r: &str) -> String {
    if r.starts_with("ssh-") {
        let mut parts = r.split_whitespace();
        let kind = parts.next().unwrap_or_default();
        let key = parts.next().unwrap_or_default();
        let comment: Vec<&str> = parts.collect();
        let tail = last_chars(key, 8);
        let c = if comment.is_empty() { String::new() } else { format!(" {}", comment.join(" ")) };
        format!("{kind} …{tail}{c}")
    } else if r.chars().count() > 20 {
        let head: String = r.chars().take(10).collect();
        format!("{head}…{}", last_chars(r, 6))
    } else {
        r.to_owned()
    }
}

/// The last `n` characters of `s`.
fn last_chars(s: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let start = s.char_indices().rev().nth(n - 1).map_or(0, |(i, _)| i);
    &s[start..]
}

fn ssh_reason(e: age::ssh::ParseRecipientKeyError) -> String {
    use age::ssh::ParseRecipientKeyError as E;
    match e {
        E::Ignore | E::Invalid(_) => {
            "not a valid ssh-ed25519 or ssh-rsa public key line".to_owned()
        }
        E::RsaModulusTooLarge => "the ssh-rsa key is larger than 4096 bits".to_owned(),
        E::RsaModulusTooSmall => "the ssh-rsa key is smaller than 2048 bits".to_owned(),
        E::Unsupported(kind) => {
            format!("`{kind}` keys cannot be age recipients (use ssh-ed25519 or ssh-rsa)")
        }
    }
}

impl PartialEq for AgeRecipient {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for AgeRecipient {}

/// Compares with a recipient's text, as configured (trimmed).
impl PartialEq<str> for AgeRecipient {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}
impl PartialEq<&str> for AgeRecipient {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl std::hash::Hash for AgeRecipient {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl fmt::Display for AgeRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for AgeRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AgeRecipient").field(&self.text).finish()
    }
}

/// As its text, as sops writes it.
impl serde::Serialize for AgeRecipient {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl std::str::FromStr for AgeRecipient {
    type Err = KeysError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIFRaxZio0FCIY6ZCktHN/CFfrOCKOOiDHazpIvKM5g2 root@web1";
    const X: &str = "age1x7hlcw6ww4etma7zr5pkw7gcm8avq5vy6dvhcjaugq3zuzzync8sqf4svg";

    #[test]
    fn keeps_the_configured_text_trimmed() {
        let r = AgeRecipient::parse(&format!("  {X}\n")).unwrap();
        assert_eq!(r.as_str(), X);
        assert_eq!(r.kind(), RecipientKind::X25519);
        let r = AgeRecipient::parse(ED).unwrap();
        assert_eq!(r.as_str(), ED, "the comment stays, as sops stores it");
        assert_eq!(r.kind(), RecipientKind::SshEd25519);
    }

    #[test]
    fn comma_lists_drop_empty_items() {
        let list = AgeRecipient::parse_list(&format!(" {X} , {ED} ,")).unwrap();
        assert_eq!(list.iter().map(|r| r.as_str()).collect::<Vec<_>>(), [X, ED]);
        assert!(AgeRecipient::parse_list("").unwrap().is_empty());
    }

    #[test]
    fn a_private_key_given_as_recipient_is_refused_without_echoing_it() {
        let secret = crate::keys::AgeIdentity::generate();
        let err = AgeRecipient::parse(secret.expose_secret()).unwrap_err();
        assert!(matches!(err, KeysError::PrivateKeyAsRecipient), "{err:?}");
        let shown = format!("{err} {err:?} {}", miette::Diagnostic::help(&err).unwrap());
        assert!(!shown.contains(secret.expose_secret()), "{shown}");
        assert!(!shown.contains(&secret.expose_secret()[20..]), "{shown}");
    }

    #[test]
    fn post_quantum_recipients_parse_and_truncated_ones_say_why() {
        let pq = crate::keys::hybrid::HybridIdentity::generate().to_public().to_string();
        let r = AgeRecipient::parse(&format!(" {pq}\n")).unwrap();
        assert_eq!((r.as_str(), r.kind()), (pq.as_str(), RecipientKind::Hybrid));
        let list = AgeRecipient::parse_list(&format!("{X},{pq}")).unwrap();
        assert_eq!(list[1].kind(), RecipientKind::Hybrid);
        let err = AgeRecipient::parse(&pq[..pq.len() / 2]).unwrap_err();
        assert!(matches!(err, KeysError::InvalidRecipient { .. }), "{err:?}");
        assert!(err.to_string().contains("checksum"), "{err}");
        assert_eq!(
            err.recipient_problem(),
            Some("not a valid post-quantum age recipient (bad checksum or length)")
        );
    }

    #[test]
    fn plugin_recipients_are_refused_clearly() {
        let err = AgeRecipient::parse("age1yubikey1qwerty").unwrap_err();
        assert!(matches!(err, KeysError::PluginRecipient { .. }), "{err:?}");
        assert!(err.to_string().contains("plugin"), "{err}");
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        let err = AgeRecipient::parse("age1qqqq").unwrap_err();
        assert!(matches!(err, KeysError::InvalidRecipient { .. }), "{err:?}");
        let err = AgeRecipient::parse("ssh-dss AAAA").unwrap_err();
        assert!(matches!(err, KeysError::InvalidRecipient { .. }), "{err:?}");
        let err = AgeRecipient::parse("pgp:ABCDEF").unwrap_err();
        assert!(matches!(err, KeysError::UnknownRecipient { .. }), "{err:?}");
    }
}
