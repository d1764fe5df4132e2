//! Walking a document tree: which leaves are encrypted (the crypt rule and the comment
//! stack), encrypting and decrypting them in document order, and the MAC over the plaintexts.

use regex::Regex;
use sha2::{Digest, Sha256, Sha512};

use super::cipher::{self, Cipher, CipherError, Plain};
use super::tree::{Documents, ListItem, Map, MapItem, Scalar, Value};

/// Which leaves a file encrypts. At most one rule per file; `None` in metadata means the
/// default `unencrypted_suffix = "_unencrypted"` (binary files have no rule at all).
#[derive(Debug, Clone)]
pub enum CryptRule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(Pattern),
    EncryptedRegex(Pattern),
    UnencryptedCommentRegex(Pattern),
    EncryptedCommentRegex(Pattern),
}

/// A regex kept with its source text (written back into the metadata verbatim).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: Regex,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        Ok(Self { source: source.to_owned(), regex: Regex::new(source)? })
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl PartialEq for CryptRule {
    fn eq(&self, other: &Self) -> bool {
        self.field() == other.field() && self.value() == other.value()
    }
}

impl CryptRule {
    pub const DEFAULT_SUFFIX: &'static str = "_unencrypted";

    pub fn default_rule() -> Self {
        CryptRule::UnencryptedSuffix(Self::DEFAULT_SUFFIX.to_owned())
    }

    /// The metadata field name.
    pub fn field(&self) -> &'static str {
        match self {
            CryptRule::UnencryptedSuffix(_) => "unencrypted_suffix",
            CryptRule::EncryptedSuffix(_) => "encrypted_suffix",
            CryptRule::UnencryptedRegex(_) => "unencrypted_regex",
            CryptRule::EncryptedRegex(_) => "encrypted_regex",
            CryptRule::UnencryptedCommentRegex(_) => "unencrypted_comment_regex",
            CryptRule::EncryptedCommentRegex(_) => "encrypted_comment_regex",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            CryptRule::UnencryptedSuffix(s) | CryptRule::EncryptedSuffix(s) => s,
            CryptRule::UnencryptedRegex(p)
            | CryptRule::EncryptedRegex(p)
            | CryptRule::UnencryptedCommentRegex(p)
            | CryptRule::EncryptedCommentRegex(p) => &p.source,
        }
    }

    /// Builds a rule from a metadata/config field name and value.
    pub fn from_field(field: &str, value: &str) -> Result<Option<Self>, String> {
        let pat = |v: &str| Pattern::new(v).map_err(|e| format!("{field}: invalid regex: {e}"));
        Ok(Some(match field {
            "unencrypted_suffix" => CryptRule::UnencryptedSuffix(value.to_owned()),
            "encrypted_suffix" => CryptRule::EncryptedSuffix(value.to_owned()),
            "unencrypted_regex" => CryptRule::UnencryptedRegex(pat(value)?),
            "encrypted_regex" => CryptRule::EncryptedRegex(pat(value)?),
            "unencrypted_comment_regex" => CryptRule::UnencryptedCommentRegex(pat(value)?),
            "encrypted_comment_regex" => CryptRule::EncryptedCommentRegex(pat(value)?),
            _ => return Ok(None),
        }))
    }

    pub const FIELDS: [&'static str; 6] = [
        "unencrypted_suffix",
        "encrypted_suffix",
        "unencrypted_regex",
        "encrypted_regex",
        "unencrypted_comment_regex",
        "encrypted_comment_regex",
    ];
}

/// sops' `shouldBeEncrypted`.
pub fn should_encrypt(
    rule: Option<&CryptRule>,
    path: &[String],
    comments: &[Vec<String>],
    is_comment: bool,
) -> bool {
    let Some(rule) = rule else { return true };
    match rule {
        CryptRule::UnencryptedSuffix(s) => !path.iter().any(|p| p.ends_with(s.as_str())),
        CryptRule::EncryptedSuffix(s) => path.iter().any(|p| p.ends_with(s.as_str())),
        CryptRule::UnencryptedRegex(r) => !path.iter().any(|p| r.regex.is_match(p)),
        CryptRule::EncryptedRegex(r) => path.iter().any(|p| r.regex.is_match(p)),
        CryptRule::UnencryptedCommentRegex(r) => {
            !comments.iter().flatten().any(|c| r.regex.is_match(c))
        }
        CryptRule::EncryptedCommentRegex(r) => {
            let levels = comments.len();
            comments.iter().enumerate().any(|(i, level)| {
                level.iter().enumerate().any(|(j, c)| {
                    // A comment leaf does not enable itself: the marker stays plain.
                    let is_self = is_comment && i + 1 == levels && j + 1 == level.len();
                    !is_self && r.regex.is_match(c)
                })
            })
        }
    }
}

/// How a walk treats leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Encrypt,
    Decrypt,
}

/// A failure at one leaf, with its key path (`a:b`).
#[derive(Debug)]
pub struct LeafError {
    pub path: String,
    pub error: CipherError,
}

struct Walker<'a> {
    cipher: &'a mut Cipher,
    rule: Option<&'a CryptRule>,
    mac_only_encrypted: bool,
    direction: Direction,
    hash: Sha512,
    path: Vec<String>,
    comments: Vec<Vec<String>>,
}

/// Encrypts or decrypts every selected leaf of `docs` in place and returns the MAC (uppercase
/// hex SHA-512 over the plaintexts in walk order).
pub fn walk(
    docs: &mut Documents,
    cipher: &mut Cipher,
    rule: Option<&CryptRule>,
    mac_only_encrypted: bool,
    direction: Direction,
) -> Result<String, LeafError> {
    let mut hash = Sha512::new();
    if mac_only_encrypted {
        hash.update(Sha256::digest(b"sops"));
    }
    let mut w = Walker {
        cipher,
        rule,
        mac_only_encrypted,
        direction,
        hash,
        path: Vec::new(),
        comments: Vec::new(),
    };
    for doc in docs.iter_mut() {
        w.path.clear();
        w.comments.clear();
        w.map(doc)?;
    }
    Ok(hex::encode_upper(w.hash.finalize()))
}

/// The MAC of a plaintext tree without encrypting anything.
pub fn mac_of_plaintext(
    docs: &Documents,
    rule: Option<&CryptRule>,
    mac_only_encrypted: bool,
) -> String {
    let mut copy = docs.clone();
    let mut c = Cipher::new(cipher::DataKey::generate());
    walk(&mut copy, &mut c, rule, mac_only_encrypted, Direction::Encrypt)
        .expect("encryption cannot fail")
}

impl Walker<'_> {
    fn aad(&self) -> String {
        cipher::aad(&self.path)
    }

    fn err(&self, error: CipherError) -> LeafError {
        LeafError { path: self.path.join(":"), error }
    }

    fn map(&mut self, map: &mut Map) -> Result<(), LeafError> {
        self.comments.push(Vec::new());
        for item in map.iter_mut() {
            match item {
                MapItem::Comment(text) => {
                    self.comments.last_mut().expect("pushed").push(text.clone());
                    self.comment(text)?;
                }
                MapItem::Entry { key, value } => {
                    self.path.push(key.clone());
                    self.value(value)?;
                    self.path.pop();
                    self.comments.last_mut().expect("pushed").clear();
                }
            }
        }
        self.comments.pop();
        Ok(())
    }

    fn list(&mut self, list: &mut [ListItem]) -> Result<(), LeafError> {
        self.comments.push(Vec::new());
        for item in list.iter_mut() {
            match item {
                ListItem::Comment(text) => {
                    self.comments.last_mut().expect("pushed").push(text.clone());
                    self.comment(text)?;
                }
                ListItem::Value(value) => {
                    // sops 3.11 writes a comment inside a list as a string element whose
                    // ciphertext type is `comment`: read it back as the comment it is.
                    if self.direction == Direction::Decrypt {
                        if let Value::Scalar(Scalar::Str(s)) = value {
                            if cipher::ciphertext_type(s) == Some("comment") {
                                let mut text = s.clone();
                                self.comments.last_mut().expect("pushed").push(text.clone());
                                self.comment(&mut text)?;
                                *item = ListItem::Comment(text);
                                continue;
                            }
                        }
                    }
                    self.value(value)?;
                    self.comments.last_mut().expect("pushed").clear();
                }
            }
        }
        self.comments.pop();
        Ok(())
    }

    fn comment(&mut self, text: &mut String) -> Result<(), LeafError> {
        if text.is_empty() || !should_encrypt(self.rule, &self.path, &self.comments, true) {
            return Ok(());
        }
        let aad = self.aad();
        match self.direction {
            Direction::Encrypt => *text = self.cipher.encrypt_comment(text, &aad),
            Direction::Decrypt => match self.cipher.decrypt(text, &aad) {
                Ok(Plain::Comment(c)) => *text = c,
                Ok(Plain::Value(_)) => {
                    tracing::warn!(path = %self.path.join(":"), "a comment decrypted to a value; kept as it is");
                }
                Err(_) => {
                    // Comments are outside the MAC; sops keeps an undecryptable one as text.
                    tracing::warn!(
                        path = %self.path.join(":"),
                        "found a comment that cannot be decrypted (not encrypted, or modified); kept as it is"
                    );
                }
            },
        }
        Ok(())
    }

    fn value(&mut self, value: &mut Value) -> Result<(), LeafError> {
        match value {
            Value::Map(m) => self.map(m),
            Value::List(l) => self.list(l),
            Value::Scalar(s) => self.scalar(s),
        }
    }

    fn scalar(&mut self, s: &mut Scalar) -> Result<(), LeafError> {
        if matches!(s, Scalar::Null) {
            return Ok(());
        }
        let encrypted = should_encrypt(self.rule, &self.path, &self.comments, false);
        let hashed = encrypted || !self.mac_only_encrypted;
        match self.direction {
            Direction::Encrypt => {
                if hashed {
                    self.hash.update(&*cipher::to_bytes(s));
                }
                let empty = matches!(s, Scalar::Str(x) if x.is_empty());
                if encrypted && !empty {
                    let aad = self.aad();
                    *s = Scalar::Str(self.cipher.encrypt_scalar(s, &aad));
                }
            }
            Direction::Decrypt => {
                if encrypted {
                    let Scalar::Str(text) = &*s else {
                        return Err(self.err(CipherError::NotCiphertext));
                    };
                    let aad = self.aad();
                    match self.cipher.decrypt(text, &aad).map_err(|e| self.err(e))? {
                        Plain::Value(v) => *s = v,
                        // A comment where a value belongs: keep its text as a string.
                        Plain::Comment(c) => *s = Scalar::Str(c),
                    }
                }
                if hashed {
                    self.hash.update(&*cipher::to_bytes(s));
                }
            }
        }
        Ok(())
    }
}

/// The key paths (`a:b`, list items by index) of the leaves `rule` says are encrypted but
/// hold no `ENC[...]` value: what `cairn check` reports as plaintext. Only paths are returned,
/// never the values. Empty strings and nulls count as encrypted (sops leaves them as they are);
/// comments count when the rule encrypts them.
pub fn plaintext_leaves(docs: &Documents, rule: Option<&CryptRule>) -> Vec<String> {
    struct Finder<'a> {
        rule: Option<&'a CryptRule>,
        /// The path the crypt rule sees (sops' own: keys only).
        path: Vec<String>,
        /// The path shown: keys, and list items by index.
        shown: Vec<String>,
        comments: Vec<Vec<String>>,
        found: Vec<String>,
    }
    impl Finder<'_> {
        fn at(&self) -> String {
            self.shown.concat().trim_start_matches(':').to_owned()
        }
        fn comment(&mut self, text: &str) {
            self.comments.last_mut().expect("pushed").push(text.to_owned());
            let encrypted = should_encrypt(self.rule, &self.path, &self.comments, true);
            if encrypted && !text.trim().is_empty() && !cipher::is_ciphertext(text.trim()) {
                let at = self.at();
                self.found.push(if at.is_empty() {
                    "(comment)".into()
                } else {
                    format!("{at} (comment)")
                });
            }
        }
        fn map(&mut self, map: &Map) {
            self.comments.push(Vec::new());
            for item in map {
                match item {
                    MapItem::Comment(text) => self.comment(text),
                    MapItem::Entry { key, value } => {
                        self.path.push(key.clone());
                        self.shown.push(format!(":{key}"));
                        self.value(value);
                        self.shown.pop();
                        self.path.pop();
                        self.comments.last_mut().expect("pushed").clear();
                    }
                }
            }
            self.comments.pop();
        }
        fn list(&mut self, list: &[ListItem]) {
            self.comments.push(Vec::new());
            let mut index = 0usize;
            for item in list {
                match item {
                    ListItem::Comment(text) => self.comment(text),
                    ListItem::Value(value) => {
                        self.shown.push(format!("[{index}]"));
                        self.value(value);
                        self.shown.pop();
                        index += 1;
                        self.comments.last_mut().expect("pushed").clear();
                    }
                }
            }
            self.comments.pop();
        }
        fn value(&mut self, value: &Value) {
            match value {
                Value::Map(m) => self.map(m),
                Value::List(l) => self.list(l),
                Value::Scalar(s) => {
                    if !should_encrypt(self.rule, &self.path, &self.comments, false) {
                        return;
                    }
                    let plain = match s {
                        Scalar::Null => false,
                        Scalar::Str(text) => !text.is_empty() && !cipher::is_ciphertext(text),
                        _ => true,
                    };
                    if plain {
                        let at = self.at();
                        self.found.push(at);
                    }
                }
            }
        }
    }
    let mut f = Finder {
        rule,
        path: Vec::new(),
        shown: Vec::new(),
        comments: Vec::new(),
        found: Vec::new(),
    };
    for doc in docs {
        f.path.clear();
        f.shown.clear();
        f.comments.clear();
        f.map(doc);
    }
    f.found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn suffix_rules() {
        let r = CryptRule::default_rule();
        assert!(should_encrypt(Some(&r), &p(&["a", "b"]), &[], false));
        assert!(!should_encrypt(Some(&r), &p(&["a_unencrypted", "b"]), &[], false));
        let r = CryptRule::EncryptedSuffix("_secret".into());
        assert!(!should_encrypt(Some(&r), &p(&["a"]), &[], false));
        assert!(should_encrypt(Some(&r), &p(&["a_secret", "b"]), &[], false));
    }

    #[test]
    fn encrypted_comment_regex_leaves_the_marker_plain() {
        let r = CryptRule::EncryptedCommentRegex(Pattern::new("sops:enc").unwrap());
        let stack = vec![vec!["sops:enc".to_string()]];
        assert!(!should_encrypt(Some(&r), &[], &stack, true));
        assert!(should_encrypt(Some(&r), &p(&["k"]), &stack, false));
        let stack = vec![vec!["sops:enc".to_string(), " next".to_string()]];
        assert!(should_encrypt(Some(&r), &[], &stack, true));
    }

    #[test]
    fn plaintext_leaves_names_paths_only_and_honours_the_rule() {
        let docs = crate::secrets::yaml::parse(
            "a: ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]\nb: hunter2\nc_unencrypted: fine\nd:\n  - 1\n  - ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:int]\ne: ''\n",
        )
        .unwrap();
        let rule = CryptRule::default_rule();
        assert_eq!(plaintext_leaves(&docs, Some(&rule)), vec!["b".to_owned(), "d[0]".to_owned()]);
        let rule = CryptRule::EncryptedRegex(Pattern::new("^a$").unwrap());
        assert!(plaintext_leaves(&docs, Some(&rule)).is_empty());
    }

    #[test]
    fn empty_tree_mac_is_sha512_of_nothing() {
        let mac = mac_of_plaintext(&vec![Map::new()], None, false);
        assert!(mac.starts_with("CF83E1357EEFB8BDF1542850D66D8007"));
    }
}
