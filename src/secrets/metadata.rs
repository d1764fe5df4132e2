//! The `sops` metadata block: master keys (age) per key group, the Shamir threshold,
//! `lastmodified`, the encrypted MAC, the crypt rule, `mac_only_encrypted` and `version`.
//! Read tolerantly (any field order, legacy empty lists, unknown fields), written in sops'
//! field order.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::tree::{ListItem, Map, MapItem, Scalar, Value};
use super::walk::CryptRule;

/// The version cairn writes into metadata: the sops release whose format it follows.
pub const SOPS_VERSION: &str = "3.11.0";

/// One age master key: the recipient as configured and the armored age file holding the data
/// key (or this group's Shamir share).
#[derive(Clone, PartialEq, Eq)]
pub struct AgeKey {
    pub recipient: String,
    pub enc: String,
}

impl std::fmt::Debug for AgeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgeKey").field("recipient", &self.recipient).finish_non_exhaustive()
    }
}

/// A key group. Master keys of other kinds (pgp, kms, ...) are kept verbatim so a rewrite
/// does not drop them, but cairn cannot use them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyGroup {
    pub age: Vec<AgeKey>,
    pub other: Vec<(String, Value)>,
}

/// Non-age master key fields, in sops' order.
const OTHER_KEY_FIELDS: [&str; 5] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault"];

#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub key_groups: Vec<KeyGroup>,
    /// 0 = not set.
    pub shamir_threshold: usize,
    /// As written in the file (kept verbatim on rekey).
    pub lastmodified: String,
    /// The encrypted MAC (`ENC[...]`), empty if absent.
    pub mac: String,
    /// `None` for a binary file cairn encrypts (as sops writes it).
    pub rule: Option<CryptRule>,
    pub mac_only_encrypted: bool,
    pub version: String,
}

/// How the metadata is shaped for a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaStyle {
    /// YAML: an empty `hc_vault` list is written `[]`.
    Yaml,
    /// JSON: `hc_vault: null`.
    Json,
    /// dotenv/INI: everything is a string, nulls dropped.
    Flat,
}

impl Metadata {
    /// sops' MAC AAD: `lastmodified` parsed and formatted again as RFC 3339 seconds.
    pub fn mac_aad(&self) -> Result<String, String> {
        let t = OffsetDateTime::parse(&self.lastmodified, &Rfc3339)
            .map_err(|e| format!("lastmodified `{}` is not RFC 3339: {e}", self.lastmodified))?;
        Ok(format_rfc3339_seconds(t))
    }

    pub fn effective_threshold(&self) -> usize {
        if self.shamir_threshold == 0 {
            self.key_groups.len()
        } else {
            self.shamir_threshold
        }
    }

    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.key_groups.iter().flat_map(|g| g.age.iter().map(|k| k.recipient.as_str()))
    }

    /// Reads the `sops` map.
    pub fn from_map(map: &Map) -> Result<Self, String> {
        let mut top_group = KeyGroup::default();
        let mut key_groups: Option<Vec<KeyGroup>> = None;
        let mut shamir_threshold = 0usize;
        let mut lastmodified = None;
        let mut mac = String::new();
        let mut rule = None;
        let mut mac_only_encrypted = false;
        let mut version = None;
        for item in map {
            let MapItem::Entry { key, value } = item else { continue };
            match key.as_str() {
                "age" => top_group.age = age_keys(value)?,
                k if OTHER_KEY_FIELDS.contains(&k) && !is_empty_value(value) => {
                    top_group.other.push((k.to_owned(), value.clone()));
                }
                k if OTHER_KEY_FIELDS.contains(&k) => {}
                "key_groups" => {
                    let Value::List(items) = value else {
                        if is_empty_value(value) {
                            continue;
                        }
                        return Err("key_groups is not a list".into());
                    };
                    let mut groups = Vec::new();
                    for item in items {
                        let ListItem::Value(Value::Map(g)) = item else { continue };
                        let mut group = KeyGroup::default();
                        for gi in g {
                            let MapItem::Entry { key, value } = gi else { continue };
                            if key == "age" {
                                group.age = age_keys(value)?;
                            } else if OTHER_KEY_FIELDS.contains(&key.as_str())
                                && !is_empty_value(value)
                            {
                                group.other.push((key.clone(), value.clone()));
                            }
                        }
                        groups.push(group);
                    }
                    key_groups = Some(groups);
                }
                "shamir_threshold" => {
                    shamir_threshold = match value {
                        Value::Scalar(Scalar::Int(i)) if *i >= 0 => *i as usize,
                        Value::Scalar(Scalar::Float(f)) if *f >= 0.0 && f.fract() == 0.0 => {
                            *f as usize
                        }
                        Value::Scalar(Scalar::Str(s)) => s
                            .trim()
                            .parse()
                            .map_err(|_| format!("shamir_threshold `{s}` is not a number"))?,
                        Value::Scalar(Scalar::Null) => 0,
                        _ => return Err("shamir_threshold is not a number".into()),
                    }
                }
                "lastmodified" => {
                    lastmodified = Some(scalar_text(value).ok_or("lastmodified is not a string")?)
                }
                "mac" => mac = scalar_text(value).unwrap_or_default(),
                "mac_only_encrypted" => {
                    mac_only_encrypted = match value {
                        Value::Scalar(Scalar::Bool(b)) => *b,
                        Value::Scalar(Scalar::Str(s)) => s == "true",
                        _ => false,
                    }
                }
                "version" => version = scalar_text(value),
                k if CryptRule::FIELDS.contains(&k) => {
                    let v = scalar_text(value).unwrap_or_default();
                    if v.is_empty() {
                        continue;
                    }
                    if let Some(prev) = &rule {
                        let prev: &CryptRule = prev;
                        return Err(format!(
                            "both {} and {k} are set; sops allows only one",
                            prev.field()
                        ));
                    }
                    rule = CryptRule::from_field(k, &v)?;
                }
                _ => {}
            }
        }
        let groups = if !top_group.age.is_empty() || !top_group.other.is_empty() {
            vec![top_group]
        } else {
            key_groups.unwrap_or_default()
        };
        if groups.iter().all(|g| g.age.is_empty() && g.other.is_empty()) {
            return Err("no keys found in the file".into());
        }
        let lastmodified = lastmodified.ok_or("lastmodified is missing")?;
        OffsetDateTime::parse(&lastmodified, &Rfc3339)
            .map_err(|e| format!("lastmodified `{lastmodified}` is not RFC 3339: {e}"))?;
        let version = version.filter(|v| !v.is_empty()).ok_or("version is missing")?;
        if !valid_version(&version) {
            return Err(format!("version `{version}` is not a version number"));
        }
        // As sops: a file without a crypt rule gets the default one, binary files included
        // (sops writes none when it encrypts a binary file, but `unencrypted_suffix` as soon
        // as it rewrites one: updatekeys, rotate, edit).
        if rule.is_none() {
            rule = Some(CryptRule::default_rule());
        }
        Ok(Metadata {
            key_groups: groups,
            shamir_threshold,
            lastmodified,
            mac,
            rule,
            mac_only_encrypted,
            version,
        })
    }

    /// The `sops` map, fields in sops' order.
    pub fn to_map(&self, style: MetaStyle) -> Map {
        let mut m = Map::new();
        let int = |i: usize| match style {
            MetaStyle::Flat => Value::str(i.to_string()),
            _ => Value::Scalar(Scalar::Int(i as i64)),
        };
        let single = self.key_groups.len() == 1;
        if self.shamir_threshold != 0 || !single {
            m.push(entry("shamir_threshold", int(self.effective_threshold())));
        }
        if single {
            let g = &self.key_groups[0];
            for f in ["kms", "gcp_kms", "azure_kv", "hc_vault"] {
                push_other(&mut m, g, f);
            }
            if !g.age.is_empty() {
                m.push(entry("age", age_list(&g.age)));
            }
        } else {
            let groups = self
                .key_groups
                .iter()
                .map(|g| {
                    let mut gm = Map::new();
                    for f in ["pgp", "kms", "gcp_kms", "azure_kv"] {
                        push_other(&mut gm, g, f);
                    }
                    match g.other.iter().find(|(k, _)| k == "hc_vault") {
                        Some((_, v)) => gm.push(entry("hc_vault", v.clone())),
                        None => match style {
                            MetaStyle::Yaml => gm.push(entry("hc_vault", Value::List(Vec::new()))),
                            MetaStyle::Json => {
                                gm.push(entry("hc_vault", Value::Scalar(Scalar::Null)))
                            }
                            MetaStyle::Flat => {}
                        },
                    }
                    gm.push(entry("age", age_list(&g.age)));
                    ListItem::Value(Value::Map(gm))
                })
                .collect();
            m.push(entry("key_groups", Value::List(groups)));
        }
        m.push(entry("lastmodified", Value::str(&self.lastmodified)));
        m.push(entry("mac", Value::str(&self.mac)));
        if single {
            push_other(&mut m, &self.key_groups[0], "pgp");
        }
        if let Some(rule) = &self.rule {
            m.push(entry(rule.field(), Value::str(rule.value())));
        }
        if self.mac_only_encrypted {
            m.push(entry(
                "mac_only_encrypted",
                match style {
                    MetaStyle::Flat => Value::str("true"),
                    _ => Value::Scalar(Scalar::Bool(true)),
                },
            ));
        }
        m.push(entry("version", Value::str(&self.version)));
        m
    }
}

/// RFC 3339 with seconds precision, `Z` for UTC (Go's `time.RFC3339` layout).
pub fn format_rfc3339_seconds(t: OffsetDateTime) -> String {
    let off = t.offset();
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if off.is_utc() {
        format!("{base}Z")
    } else {
        let (h, m, _) = off.as_hms();
        let sign = if off.is_negative() { '-' } else { '+' };
        format!("{base}{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
    }
}

/// Now, as sops writes `lastmodified`.
pub fn now_lastmodified() -> String {
    format_rfc3339_seconds(OffsetDateTime::now_utc())
}

fn entry(key: &str, value: Value) -> MapItem {
    MapItem::Entry { key: key.to_owned(), value }
}

fn push_other(m: &mut Map, g: &KeyGroup, field: &str) {
    if let Some((_, v)) = g.other.iter().find(|(k, _)| k == field) {
        m.push(entry(field, v.clone()));
    }
}

fn age_list(keys: &[AgeKey]) -> Value {
    Value::List(
        keys.iter()
            .map(|k| {
                ListItem::Value(Value::Map(vec![
                    entry("recipient", Value::str(&k.recipient)),
                    entry("enc", Value::str(&k.enc)),
                ]))
            })
            .collect(),
    )
}

fn age_keys(value: &Value) -> Result<Vec<AgeKey>, String> {
    let Value::List(items) = value else {
        return if is_empty_value(value) {
            Ok(Vec::new())
        } else {
            Err("age is not a list".into())
        };
    };
    let mut out = Vec::new();
    for item in items {
        let ListItem::Value(Value::Map(m)) = item else { continue };
        let get = |k: &str| super::tree::get(m, k).and_then(scalar_text);
        let recipient = get("recipient").ok_or("an age key has no recipient")?;
        let enc = get("enc").ok_or("an age key has no enc")?;
        out.push(AgeKey { recipient: recipient.trim().to_owned(), enc });
    }
    Ok(out)
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Scalar(Scalar::Null) => true,
        Value::Scalar(Scalar::Str(s)) => s.is_empty(),
        Value::List(l) => l.iter().all(|i| matches!(i, ListItem::Comment(_))),
        Value::Map(m) => m.is_empty(),
        _ => false,
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Scalar(Scalar::Str(s)) | Value::Scalar(Scalar::Time(s)) => Some(s.clone()),
        Value::Scalar(Scalar::Int(i)) => Some(i.to_string()),
        Value::Scalar(Scalar::Float(f)) => Some(super::cipher::format_float(*f)),
        Value::Scalar(Scalar::Bool(b)) => Some(b.to_string()),
        _ => None,
    }
}

/// hashicorp/go-version's accepted shape, roughly: digits separated by dots, with an optional
/// `v` prefix and pre-release/metadata suffix.
fn valid_version(v: &str) -> bool {
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+']).next().unwrap_or("");
    !core.is_empty()
        && core.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Flattens the metadata for dotenv/INI: `age__list_0__map_enc`, sorted.
pub fn flatten(map: &Map) -> Vec<(String, String)> {
    fn go(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Map(m) => {
                for item in m {
                    if let MapItem::Entry { key, value } = item {
                        go(&format!("{prefix}__map_{key}"), value, out);
                    }
                }
            }
            Value::List(l) => {
                for (i, item) in l.iter().filter(|i| matches!(i, ListItem::Value(_))).enumerate() {
                    if let ListItem::Value(value) = item {
                        go(&format!("{prefix}__list_{i}"), value, out);
                    }
                }
            }
            Value::Scalar(Scalar::Null) => {}
            other => out.push((prefix.to_owned(), scalar_text(other).unwrap_or_default())),
        }
    }
    let mut out = Vec::new();
    for item in map {
        if let MapItem::Entry { key, value } = item {
            match value {
                Value::Map(_) | Value::List(_) => go(key, value, &mut out),
                Value::Scalar(Scalar::Null) => {}
                other => out.push((key.clone(), scalar_text(other).unwrap_or_default())),
            }
        }
    }
    out.sort();
    out
}

/// The inverse of [`flatten`]: builds the nested map from flat keys (any order).
pub fn unflatten(pairs: &[(String, String)]) -> Map {
    #[derive(Debug)]
    enum Node {
        Leaf(String),
        Map(Vec<(String, Node)>),
        List(Vec<(usize, Node)>),
    }
    fn insert(node: &mut Node, segs: &[Seg], value: &str) {
        let Some((first, rest)) = segs.split_first() else { return };
        match first {
            Seg::Key(k) => {
                if !matches!(node, Node::Map(_)) {
                    *node = Node::Map(Vec::new());
                }
                let Node::Map(items) = node else { unreachable!() };
                let idx = match items.iter().position(|(key, _)| key == k) {
                    Some(i) => i,
                    None => {
                        items.push((k.clone(), Node::Leaf(String::new())));
                        items.len() - 1
                    }
                };
                if rest.is_empty() {
                    items[idx].1 = Node::Leaf(value.to_owned());
                } else {
                    insert(&mut items[idx].1, rest, value);
                }
            }
            Seg::Index(i) => {
                if !matches!(node, Node::List(_)) {
                    *node = Node::List(Vec::new());
                }
                let Node::List(items) = node else { unreachable!() };
                let idx = match items.iter().position(|(n, _)| n == i) {
                    Some(p) => p,
                    None => {
                        items.push((*i, Node::Leaf(String::new())));
                        items.len() - 1
                    }
                };
                if rest.is_empty() {
                    items[idx].1 = Node::Leaf(value.to_owned());
                } else {
                    insert(&mut items[idx].1, rest, value);
                }
            }
        }
    }
    fn to_value(node: Node) -> Value {
        match node {
            Node::Leaf(s) => Value::str(s),
            Node::Map(items) => {
                Value::Map(items.into_iter().map(|(k, n)| entry(&k, to_value(n))).collect())
            }
            Node::List(mut items) => {
                items.sort_by_key(|(i, _)| *i);
                Value::List(items.into_iter().map(|(_, n)| ListItem::Value(to_value(n))).collect())
            }
        }
    }
    #[derive(Debug)]
    enum Seg {
        Key(String),
        Index(usize),
    }
    fn segments(key: &str) -> Vec<Seg> {
        let mut segs = Vec::new();
        let mut rest = key;
        let first_end = next_sep(rest).unwrap_or(rest.len());
        segs.push(Seg::Key(rest[..first_end].to_owned()));
        rest = &rest[first_end..];
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("__map_") {
                let end = next_sep(r).unwrap_or(r.len());
                segs.push(Seg::Key(r[..end].to_owned()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix("__list_") {
                let end = next_sep(r).unwrap_or(r.len());
                match r[..end].parse() {
                    Ok(i) => segs.push(Seg::Index(i)),
                    Err(_) => segs.push(Seg::Key(r[..end].to_owned())),
                }
                rest = &r[end..];
            } else {
                break;
            }
        }
        segs
    }
    fn next_sep(s: &str) -> Option<usize> {
        let a = s.find("__map_");
        let b = s.find("__list_");
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    let mut root = Node::Map(Vec::new());
    for (k, v) in pairs {
        insert(&mut root, &segments(k), v);
    }
    match to_value(root) {
        Value::Map(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_aad_reformats_lastmodified() {
        let mut m = Metadata {
            key_groups: vec![],
            shamir_threshold: 0,
            lastmodified: "2026-11-22T04:44:26+00:00".into(),
            mac: String::new(),
            rule: None,
            mac_only_encrypted: false,
            version: SOPS_VERSION.into(),
        };
        assert_eq!(m.mac_aad().unwrap(), "2026-11-22T04:44:26Z");
        m.lastmodified = "2026-11-22T04:44:26.123+02:00".into();
        assert_eq!(m.mac_aad().unwrap(), "2026-11-22T04:44:26+02:00");
    }

    #[test]
    fn versions() {
        assert!(valid_version("3.11.0"));
        assert!(valid_version("1.0"));
        assert!(!valid_version("banana"));
        assert!(!valid_version(""));
    }

    #[test]
    fn flatten_roundtrip() {
        let pairs = vec![
            ("age__list_0__map_enc".to_string(), "E0".to_string()),
            ("age__list_0__map_recipient".to_string(), "R0".to_string()),
            ("age__list_1__map_enc".to_string(), "E1".to_string()),
            ("age__list_1__map_recipient".to_string(), "R1".to_string()),
            ("lastmodified".to_string(), "x".to_string()),
        ];
        let m = unflatten(&pairs);
        assert_eq!(flatten(&m), pairs);
    }
}
