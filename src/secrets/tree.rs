//! The document model shared by every sops store (YAML, JSON, dotenv, INI, binary).
//!
//! It mirrors sops' own tree: a document is an ordered map; maps and lists may contain
//! comments between their items; leaves are typed scalars. Stores parse bytes into this tree
//! and emit it back; encryption walks it in document order.

/// A scalar leaf, typed the way sops types it (see the `type:` tag of `ENC[...]`).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Never encrypted, never hashed into the MAC.
    Null,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A timestamp, kept as its RFC 3339 (nano) text, which is also what sops encrypts.
    Time(String),
    /// Raw bytes (binary files, `!!binary`); encrypted as `type:str` with the raw bytes.
    Bytes(Vec<u8>),
}

/// A value: a scalar, a map or a list.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Map(Map),
    List(Vec<ListItem>),
}

/// An ordered map; comments sit between entries, as in the source.
pub type Map = Vec<MapItem>;

#[derive(Debug, Clone, PartialEq)]
pub enum MapItem {
    /// A comment line, without its leading `#` (or `;` in INI): `# x` is stored as `" x"`.
    Comment(String),
    Entry {
        key: String,
        value: Value,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ListItem {
    Comment(String),
    Value(Value),
}

/// A whole plaintext or encrypted file: one or more documents (only YAML has more than one).
/// The `sops` metadata key is not part of the documents; stores split it off.
pub type Documents = Vec<Map>;

impl Value {
    pub fn str(s: impl Into<String>) -> Self {
        Value::Scalar(Scalar::Str(s.into()))
    }
}

/// Looks up `key` in a map (first match).
pub fn get<'a>(map: &'a Map, key: &str) -> Option<&'a Value> {
    map.iter().find_map(|item| match item {
        MapItem::Entry { key: k, value } if k == key => Some(value),
        _ => None,
    })
}
