//! The OpenSSH key encodings cairn writes: the `openssh-key-v1` private key file exactly as
//! `ssh-keygen -t ed25519 -N ''` writes it, and the one-line public key.

use base64::Engine as _;
use zeroize::Zeroizing;

const AUTH_MAGIC: &[u8] = b"openssh-key-v1\0";
const ED25519: &[u8] = b"ssh-ed25519";
/// ssh-keygen wraps the base64 body at 70 columns.
const LINE_WIDTH: usize = 70;

/// The public key blob: `string "ssh-ed25519" || string pk`.
pub(crate) fn ed25519_public_blob(public: &[u8; 32]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(51);
    put_string(&mut blob, ED25519);
    put_string(&mut blob, public);
    blob
}

/// `ssh-ed25519 AAAA... comment`
pub(crate) fn ed25519_public_line(public: &[u8; 32], comment: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(ed25519_public_blob(public));
    if comment.is_empty() {
        format!("ssh-ed25519 {b64}")
    } else {
        format!("ssh-ed25519 {b64} {comment}")
    }
}

/// An unencrypted `-----BEGIN OPENSSH PRIVATE KEY-----` file for an ed25519 key pair.
pub(crate) fn ed25519_private_pem(
    seed: &[u8; 32],
    public: &[u8; 32],
    comment: &str,
    check: u32,
) -> Zeroizing<String> {
    let blob = ed25519_public_blob(public);

    let mut private = Zeroizing::new(Vec::with_capacity(160));
    private.extend_from_slice(&check.to_be_bytes());
    private.extend_from_slice(&check.to_be_bytes());
    put_string(&mut private, ED25519);
    put_string(&mut private, public);
    let mut keypair = Zeroizing::new([0u8; 64]);
    keypair[..32].copy_from_slice(seed);
    keypair[32..].copy_from_slice(public);
    put_string(&mut private, &keypair[..]);
    put_string(&mut private, comment.as_bytes());
    // Pad to the cipher block size ("none": 8) with 1, 2, 3, ...
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }

    let mut body = Zeroizing::new(Vec::with_capacity(64 + blob.len() + private.len()));
    body.extend_from_slice(AUTH_MAGIC);
    put_string(&mut body, b"none"); // cipher
    put_string(&mut body, b"none"); // kdf
    put_string(&mut body, b""); // kdf options
    body.extend_from_slice(&1u32.to_be_bytes()); // number of keys
    put_string(&mut body, &blob);
    put_string(&mut body, &private);

    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&body[..]));
    let mut pem = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / LINE_WIDTH + 80));
    pem.push_str("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(LINE_WIDTH) {
        // base64 is ASCII, so every chunk is valid UTF-8.
        pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    pem
}

/// An unencrypted ed25519 key read from an `openssh-key-v1` file.
pub(crate) struct Ed25519Private {
    pub(crate) seed: Zeroizing<[u8; 32]>,
    pub(crate) public: [u8; 32],
    pub(crate) comment: String,
}

/// Why an OpenSSH private key file could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrivateKeyError {
    NotOpenSsh,
    Encrypted,
    NotEd25519,
    Inconsistent,
}

impl PrivateKeyError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::NotOpenSsh => {
                "not an OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`)"
            }
            Self::Encrypted => "the key is protected by a passphrase",
            Self::NotEd25519 => "only ed25519 keys are supported",
            Self::Inconsistent => "the key file is corrupt (its halves do not match)",
        }
    }
}

/// Parses an `openssh-key-v1` file holding one unencrypted ed25519 key.
pub(crate) fn parse_ed25519_private(text: &[u8]) -> Result<Ed25519Private, PrivateKeyError> {
    use PrivateKeyError::*;
    let text = std::str::from_utf8(text).map_err(|_| NotOpenSsh)?;
    let mut lines = text.lines().map(str::trim).skip_while(|l| l.is_empty());
    if lines.next() != Some("-----BEGIN OPENSSH PRIVATE KEY-----") {
        return Err(NotOpenSsh);
    }
    let mut b64 = Zeroizing::new(String::new());
    loop {
        match lines.next() {
            Some("-----END OPENSSH PRIVATE KEY-----") => break,
            Some(line) => b64.push_str(line),
            None => return Err(NotOpenSsh),
        }
    }
    let body = Zeroizing::new(
        base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()).map_err(|_| NotOpenSsh)?,
    );
    let rest = body.strip_prefix(AUTH_MAGIC).ok_or(NotOpenSsh)?;
    let mut r = Reader::new(rest);
    let cipher = r.string().map_err(|_| NotOpenSsh)?;
    let _kdf = r.string().map_err(|_| NotOpenSsh)?;
    let _kdf_options = r.string().map_err(|_| NotOpenSsh)?;
    if cipher != b"none" {
        return Err(Encrypted);
    }
    if r.u32().map_err(|_| NotOpenSsh)? != 1 {
        return Err(NotOpenSsh);
    }
    let blob = r.string().map_err(|_| NotOpenSsh)?;
    if Reader::new(blob).string().map_err(|_| NotOpenSsh)? != ED25519 {
        return Err(NotEd25519);
    }
    let mut p = Reader::new(r.string().map_err(|_| NotOpenSsh)?);
    let (check1, check2) = (p.u32().map_err(|_| NotOpenSsh)?, p.u32().map_err(|_| NotOpenSsh)?);
    if check1 != check2 {
        return Err(Inconsistent);
    }
    if p.string().map_err(|_| NotOpenSsh)? != ED25519 {
        return Err(NotEd25519);
    }
    let public: [u8; 32] = p.string().ok().and_then(|k| k.try_into().ok()).ok_or(NotOpenSsh)?;
    let keypair = p.string().map_err(|_| NotOpenSsh)?;
    if keypair.len() != 64 || keypair[32..] != public {
        return Err(Inconsistent);
    }
    let comment = String::from_utf8_lossy(p.string().map_err(|_| NotOpenSsh)?).into_owned();
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&keypair[..32]);
    if ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes() != public {
        return Err(Inconsistent);
    }
    Ok(Ed25519Private { seed, public, comment })
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A reader for the SSH wire encoding (`uint32` length-prefixed strings).
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

#[derive(Debug)]
pub(crate) struct Truncated;

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn string(&mut self) -> Result<&'a [u8], Truncated> {
        if self.rest.len() < 4 {
            return Err(Truncated);
        }
        let (len, rest) = self.rest.split_at(4);
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        if rest.len() < len {
            return Err(Truncated);
        }
        let (s, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(s)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        if self.rest.len() < 4 {
            return Err(Truncated);
        }
        let (n, rest) = self.rest.split_at(4);
        self.rest = rest;
        Ok(u32::from_be_bytes(n.try_into().expect("4 bytes")))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The key ssh-keygen 9 wrote for `ssh-keygen -t ed25519 -N '' -C root@web1` (a throwaway
    // test key): cairn's encoder must reproduce it byte for byte from its seed and check int.
    const SSH_KEYGEN_PEM: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCBUWsWYqNBQiGOmQpLRzfwhX6zgijjogx2s6SLyjOYNgAAAJCaYzZJmmM2
SQAAAAtzc2gtZWQyNTUxOQAAACCBUWsWYqNBQiGOmQpLRzfwhX6zgijjogx2s6SLyjOYNg
AAAEAcyE9j4VEG/VKjkhwvHqbac8zrimJWOy7WGAmyADs4XYFRaxZio0FCIY6ZCktHN/CF
frOCKOOiDHazpIvKM5g2AAAACXJvb3RAd2ViMQECAwQ=
-----END OPENSSH PRIVATE KEY-----
";
    const SSH_KEYGEN_PUB: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIFRaxZio0FCIY6ZCktHN/CFfrOCKOOiDHazpIvKM5g2 root@web1";

    #[test]
    fn reproduces_ssh_keygen_output_byte_for_byte() {
        let seed: [u8; 32] =
            hex::decode("1cc84f63e15106fd52a3921c2f1ea6da73cceb8a62563b2ed61809b2003b385d")
                .unwrap()
                .try_into()
                .unwrap();
        let public: [u8; 32] =
            hex::decode("81516b1662a34142218e990a4b4737f0857eb38228e3a20c76b3a48bca339836")
                .unwrap()
                .try_into()
                .unwrap();
        assert_eq!(
            ed25519_private_pem(&seed, &public, "root@web1", 0x9a633649).as_str(),
            SSH_KEYGEN_PEM
        );
        assert_eq!(ed25519_public_line(&public, "root@web1"), SSH_KEYGEN_PUB);
        let parsed = parse_ed25519_private(SSH_KEYGEN_PEM.as_bytes()).unwrap();
        assert_eq!(
            (*parsed.seed, parsed.public, parsed.comment.as_str()),
            (seed, public, "root@web1")
        );
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert_eq!(
            parse_ed25519_private(b"AGE-SECRET-KEY-1").err(),
            Some(PrivateKeyError::NotOpenSsh)
        );
        let mut tampered = SSH_KEYGEN_PEM.replace("AAAEAcyE9j", "AAAEAcyE9k");
        assert_eq!(
            parse_ed25519_private(tampered.as_bytes()).err(),
            Some(PrivateKeyError::Inconsistent)
        );
        tampered = SSH_KEYGEN_PEM.replace("-----END OPENSSH PRIVATE KEY-----\n", "");
        assert_eq!(
            parse_ed25519_private(tampered.as_bytes()).err(),
            Some(PrivateKeyError::NotOpenSsh)
        );
    }
}
