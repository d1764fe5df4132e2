//! The `sops` metadata block: master keys (age) per key group, the Shamir threshold,
//! `lastmodified`, the encrypted MAC, the crypt rule, `mac_only_encrypted` and `version`.
//! Read tolerantly (any field order, legacy empty lists, unknown fields), written in sops'
//! field order.

use std::collections::{BTreeMap, HashMap};

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
                        // sops reads a Go int; a negative threshold means none, like 0.
                        Value::Scalar(Scalar::Int(i)) => (*i).max(0) as usize,
                        Value::Scalar(Scalar::Float(f)) if f.fract() == 0.0 => f.max(0.0) as usize,
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

/// Which Go decoder sops fills its `Metadata` struct with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoDecoder {
    /// `encoding/json` (JSON and binary files): strict about every JSON type.
    Json,
    /// yaml.v3: any scalar fills a string, a float fills an int, only booleans fill a bool.
    Yaml,
}

/// How sops' Go decoder would fill its `Metadata` struct from the `sops` map: a field of a
/// type the decoder cannot convert fails the whole file (sops refuses it), a `null` leaves
/// the field empty, unknown fields are ignored. dotenv and INI files hold only strings and
/// are not checked here.
pub fn check_go_types(map: &Map, decoder: GoDecoder) -> Result<(), String> {
    #[derive(Clone, Copy)]
    enum Go {
        Str,
        Bool,
        Int,
        /// A list of master keys (`[]agekey`, `[]kmskey`, ...): objects of string fields.
        Keys,
        KeyGroups,
        /// kms `context`: a map of strings.
        StrMap,
    }
    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Map(_) => "an object",
            Value::List(_) => "an array",
            Value::Scalar(Scalar::Bool(_)) => "a boolean",
            Value::Scalar(Scalar::Int(_) | Scalar::Float(_)) => "a number",
            Value::Scalar(_) => "a string",
        }
    }
    fn field_type(name: &str) -> Option<Go> {
        Some(match name {
            "lastmodified" | "mac" | "version" => Go::Str,
            k if CryptRule::FIELDS.contains(&k) => Go::Str,
            "mac_only_encrypted" => Go::Bool,
            "shamir_threshold" => Go::Int,
            "key_groups" => Go::KeyGroups,
            k if k == "age" || OTHER_KEY_FIELDS.contains(&k) => Go::Keys,
            _ => return None,
        })
    }
    fn check(path: &str, v: &Value, t: Go, d: GoDecoder) -> Result<(), String> {
        let wrong = |want: &str| {
            Err(format!(
                "`{path}` in the sops metadata is {}, not {want} (sops refuses this file too)",
                kind(v)
            ))
        };
        let entries = |m: &Map| -> Vec<(String, Value)> {
            m.iter()
                .filter_map(|i| match i {
                    MapItem::Entry { key, value } => Some((key.clone(), value.clone())),
                    MapItem::Comment(_) => None,
                })
                .collect()
        };
        match (t, v) {
            (_, Value::Scalar(Scalar::Null)) => Ok(()),
            (Go::Str, Value::Scalar(Scalar::Str(_))) => Ok(()),
            (Go::Str, Value::Scalar(_)) if d == GoDecoder::Yaml => Ok(()),
            (Go::Str, _) => wrong("a string"),
            (Go::Bool, Value::Scalar(Scalar::Bool(_))) => Ok(()),
            (Go::Bool, _) => wrong("a boolean"),
            (Go::Int, Value::Scalar(Scalar::Int(_))) => Ok(()),
            (Go::Int, Value::Scalar(Scalar::Float(f)))
                if (d == GoDecoder::Yaml || f.fract() == 0.0) && f.abs() < 9.2e18 =>
            {
                Ok(())
            }
            (Go::Int, _) => wrong("an integer"),
            (Go::StrMap, Value::Map(m)) => {
                for (k, v) in entries(m) {
                    check(&format!("{path}.{k}"), &v, Go::Str, d)?;
                }
                Ok(())
            }
            (Go::StrMap, _) => wrong("an object"),
            (Go::Keys | Go::KeyGroups, Value::List(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let ListItem::Value(item) = item else { continue };
                    let item_path = format!("{path}[{i}]");
                    match item {
                        Value::Scalar(Scalar::Null) => {}
                        Value::Map(m) => {
                            for (k, v) in entries(m) {
                                let t = match t {
                                    Go::KeyGroups => match field_type(&k) {
                                        Some(Go::Keys) => Go::Keys,
                                        _ => continue,
                                    },
                                    _ if k == "context" => Go::StrMap,
                                    _ => Go::Str,
                                };
                                check(&format!("{item_path}.{k}"), &v, t, d)?;
                            }
                        }
                        other => {
                            return Err(format!(
                                "`{item_path}` in the sops metadata is {}, not an object (sops refuses this file too)",
                                kind(other)
                            ))
                        }
                    }
                }
                Ok(())
            }
            (Go::Keys | Go::KeyGroups, _) => wrong("an array"),
        }
    }
    for item in map {
        let MapItem::Entry { key, value } = item else { continue };
        if let Some(t) = field_type(key) {
            check(key, value, t, decoder)?;
        }
    }
    Ok(())
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
        // As sops (Go zero values): a missing recipient or enc is empty; an empty enc then
        // fails to decrypt like any other wrong one.
        let recipient = get("recipient").unwrap_or_default();
        let enc = get("enc").unwrap_or_default();
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

/// The versions sops 3.11 accepts in a file: anything starting with `1.` (files of sops 1,
/// read without further checks), else a strict semantic version (`MAJOR.MINOR.PATCH`, no
/// leading zeros, optional `-prerelease` and `+build`), with an optional `v` prefix.
fn valid_version(v: &str) -> bool {
    if v.starts_with("1.") {
        return true;
    }
    let v = v.strip_prefix('v').unwrap_or(v);
    let mut parts = v.splitn(3, '.');
    let (Some(major), Some(minor), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let number = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && !(s.len() > 1 && s.starts_with('0'))
            && s.parse::<u64>().is_ok()
    };
    let (patch, tail) = rest.split_at(rest.find(['+', '-']).unwrap_or(rest.len()));
    if !number(major) || !number(minor) || !number(patch) {
        return false;
    }
    let identifiers_ok = |s: &str, numeric_rule: bool| {
        s.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !(numeric_rule
                    && id.len() > 1
                    && id.starts_with('0')
                    && id.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    let (pre, build) = match tail.strip_prefix('-') {
        Some(t) => match t.split_once('+') {
            Some((p, b)) => (Some(p), Some(b)),
            None => (Some(t), None),
        },
        None => (None, tail.strip_prefix('+')),
    };
    pre.is_none_or(|p| identifiers_ok(p, true)) && build.is_none_or(|b| identifiers_ok(b, false))
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

/// How many `__map_`/`__list_` levels a flat metadata key may have. sops' own metadata is
/// at most five deep (`key_groups__list_0__map_age__list_0__map_enc`).
pub const MAX_FLAT_DEPTH: usize = 16;

/// The inverse of [`flatten`]: builds the nested map from flat keys (any order). Fails on a
/// key nested deeper than [`MAX_FLAT_DEPTH`].
pub fn unflatten(pairs: &[(String, String)]) -> Result<Map, String> {
    enum Node {
        Leaf(String),
        /// Entries in first-seen order, with an index by key.
        Map(Vec<(String, Node)>, HashMap<String, usize>),
        List(BTreeMap<usize, Node>),
    }
    enum Seg {
        Key(String),
        Index(usize),
    }
    fn segments(key: &str) -> Option<Vec<Seg>> {
        let mut segs = Vec::new();
        let mut rest = key;
        let first_end = next_sep(rest).unwrap_or(rest.len());
        segs.push(Seg::Key(rest[..first_end].to_owned()));
        rest = &rest[first_end..];
        while !rest.is_empty() {
            if segs.len() > MAX_FLAT_DEPTH {
                return None;
            }
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
        Some(segs)
    }
    fn next_sep(s: &str) -> Option<usize> {
        let a = s.find("__map_");
        let b = s.find("__list_");
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    fn insert(mut node: &mut Node, segs: &[Seg], value: &str) {
        for seg in segs {
            node = match seg {
                Seg::Key(k) => {
                    if !matches!(node, Node::Map(..)) {
                        *node = Node::Map(Vec::new(), HashMap::new());
                    }
                    let Node::Map(items, index) = node else { unreachable!() };
                    let idx = *index.entry(k.clone()).or_insert_with(|| {
                        items.push((k.clone(), Node::Leaf(String::new())));
                        items.len() - 1
                    });
                    &mut items[idx].1
                }
                Seg::Index(i) => {
                    if !matches!(node, Node::List(_)) {
                        *node = Node::List(BTreeMap::new());
                    }
                    let Node::List(items) = node else { unreachable!() };
                    items.entry(*i).or_insert_with(|| Node::Leaf(String::new()))
                }
            };
        }
        *node = Node::Leaf(value.to_owned());
    }
    // At most MAX_FLAT_DEPTH + 1 levels deep, so the recursion is bounded.
    fn to_value(node: Node) -> Value {
        match node {
            Node::Leaf(s) => Value::str(s),
            Node::Map(items, _) => {
                Value::Map(items.into_iter().map(|(k, n)| entry(&k, to_value(n))).collect())
            }
            Node::List(items) => {
                Value::List(items.into_values().map(|n| ListItem::Value(to_value(n))).collect())
            }
        }
    }
    let mut root = Node::Map(Vec::new(), HashMap::new());
    for (k, v) in pairs {
        let Some(segs) = segments(k) else {
            let shown: String = k.chars().take(60).collect();
            return Err(format!(
                "metadata key `{shown}…` is nested more than {MAX_FLAT_DEPTH} levels deep"
            ));
        };
        insert(&mut root, &segs, v);
    }
    Ok(match to_value(root) {
        Value::Map(m) => m,
        _ => Map::new(),
    })
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
        // As sops 3.11 (checked against the binary): `1.` files pass, others are strict semver.
        for ok in ["1.banana", "1.", "v3.11.0", "3.11.0+meta", "3.11.0-a.b", "3.11.0-rc1"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in ["1", "3.11", "2.0", "3.3.0.0", "3.11.00", "03.11.0", "3.11.0-", "3.11.0-01"] {
            assert!(!valid_version(bad), "{bad}");
        }
        assert!(!valid_version("99999999999999999999.0.0"));
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
        let m = unflatten(&pairs).unwrap();
        assert_eq!(flatten(&m), pairs);
    }
}
