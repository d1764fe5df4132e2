//! sops-compatible encrypted files: the formats, the crypto, the MAC, rules, edit and rekey.

pub mod tree;
