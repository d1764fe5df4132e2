//! `.sops.yaml`, read exactly as sops 3.11 reads it: found from the current directory upward;
//! the first rule whose `path_regex` matches the file's path relative to the config's
//! directory wins.

use std::path::{Path, PathBuf};

use miette::{NamedSource, SourceSpan};
use regex::Regex;

use super::*;
use crate::keys::AgeRecipient;
use crate::secrets::tree::{self, ListItem, Map, MapItem, Scalar, Value};
use crate::secrets::walk::CryptRule;

/// Finds `.sops.yaml` as sops does: `explicit` (`--config` / `SOPS_CONFIG`) if given, else in
/// `cwd` and up to 100 parent directories. A `.sops.yml` is never used, only warned about.
pub fn find_config(cwd: &Path, explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(if p.is_absolute() { p.to_owned() } else { cwd.join(p) });
    }
    let mut alternate: Option<PathBuf> = None;
    let mut dir = Some(cwd);
    for _ in 0..MAX_DEPTH {
        let Some(d) = dir else { break };
        let candidate = d.join(CONFIG_FILE_NAME);
        if candidate.exists() {
            if let Some(alt) = &alternate {
                tracing::warn!(
                    "ignoring {} when searching for config file; the config file must be called {CONFIG_FILE_NAME}; using {} instead",
                    alt.display(),
                    candidate.display()
                );
            }
            return Some(candidate);
        }
        if alternate.is_none() && d.join(ALTERNATE_CONFIG_NAME).exists() {
            alternate = Some(d.join(ALTERNATE_CONFIG_NAME));
        }
        dir = d.parent();
    }
    if let Some(alt) = alternate {
        tracing::warn!(
            "ignoring {} when searching for config file; the config file must be called {CONFIG_FILE_NAME}",
            alt.display()
        );
    }
    None
}

/// A loaded `.sops.yaml`.
#[derive(Debug, Clone)]
pub struct SopsConfig {
    /// The file, absolute.
    pub path: PathBuf,
    text: String,
    /// `None` when the file has no `creation_rules` at all (sops: as if there were no config).
    rules: Option<Vec<RawRule>>,
    pub stores: StoresConfig,
}

pub use crate::secrets::store::StoresConfig;

#[derive(Debug, Clone)]
struct RawRule {
    index: usize,
    path_regex: String,
    /// `path_regex` compiled once (a rekey matches it against every file); the error is
    /// reported when the rule is reached, as sops does.
    compiled: Option<Result<Regex, regex::Error>>,
    /// Flat `age` items as configured (string: already split on commas).
    age: AgeField,
    key_groups: Vec<RawGroup>,
    shamir_threshold: i64,
    crypt: Vec<(&'static str, String)>,
    mac_only_encrypted: bool,
    foreign: Vec<&'static str>,
}

#[derive(Debug, Clone)]
enum AgeField {
    /// A string: split on `,`, trimmed, empty items dropped.
    Csv(Vec<String>),
    /// A list: items joined with `,` and split again; empty items are an error in sops.
    List(Vec<String>),
}

#[derive(Debug, Clone, Default)]
struct RawGroup {
    merge: Vec<RawGroup>,
    age: Vec<String>,
    foreign: Vec<&'static str>,
}

impl SopsConfig {
    /// Reads and checks the structure of a config file (value types, as sops' YAML
    /// unmarshalling does). Rules are checked further when one is selected.
    pub fn load(path: &Path) -> Result<Self, RulesError> {
        let text = fs_err::read_to_string(path)?;
        let abs = std::path::absolute(path)?;
        Self::parse(&abs, text)
    }

    /// Like [`SopsConfig::load`], for text already read from `path` (absolute).
    pub fn parse(path: &Path, text: String) -> Result<Self, RulesError> {
        let mut this =
            Self { path: path.to_owned(), text, rules: None, stores: StoresConfig::default() };
        let docs = crate::secrets::yaml::parse(&this.text);
        let docs = match docs {
            Ok(d) => d,
            // An empty or comment-only file: no rules (sops: no config).
            Err(
                crate::secrets::yaml::YamlError::Empty
                | crate::secrets::yaml::YamlError::NoDocument,
            ) => return Ok(this),
            Err(source) => return Err(RulesError::Yaml { path: path.to_owned(), source }),
        };
        let Some(doc) = docs.first() else { return Ok(this) };
        this.stores = this.parse_stores(doc)?;
        match tree::get(doc, "creation_rules") {
            None | Some(Value::Scalar(Scalar::Null)) => {}
            Some(Value::List(items)) => {
                let mut rules = Vec::new();
                for (index, item) in items.iter().filter_map(non_comment).enumerate() {
                    rules.push(this.parse_rule(index, item)?);
                }
                this.rules = Some(rules);
            }
            Some(other) => {
                return Err(this.invalid(
                    this.locate_top("creation_rules"),
                    format!("creation_rules must be a list of rules, not {}", kind(other)),
                    "write `creation_rules:` followed by `- path_regex: ...` items",
                ))
            }
        }
        Ok(this)
    }

    /// Whether the file has `creation_rules` (sops ignores a config without them).
    pub fn has_creation_rules(&self) -> bool {
        self.rules.is_some()
    }

    /// The path sops matches `path_regex` against: `file` (made absolute against `cwd`) with
    /// the config's directory and `/` stripped when it is below it.
    pub fn match_path(&self, file: &Path, cwd: &Path) -> String {
        let abs = if file.is_absolute() { file.to_owned() } else { cwd.join(file) };
        let abs = lexical_clean(&abs);
        let dir = lexical_clean(self.path.parent().unwrap_or(Path::new("/")));
        let abs = abs.to_string_lossy().into_owned();
        let prefix = format!("{}/", dir.to_string_lossy().trim_end_matches('/'));
        abs.strip_prefix(&prefix).map(str::to_owned).unwrap_or(abs)
    }

    /// The rule for `file`: `Ok(None)` if the config has no `creation_rules`.
    pub fn rule_for(&self, file: &Path, cwd: &Path) -> Result<Option<CreationRule>, RulesError> {
        let Some(rules) = &self.rules else { return Ok(None) };
        let rel = self.match_path(file, cwd);
        for rule in rules {
            let Some(compiled) = &rule.compiled else {
                return self.resolve(rule).map(Some);
            };
            let re = compiled.as_ref().map_err(|e| {
                self.invalid(
                    self.locate_field(rule.index, "path_regex"),
                    format!("rule {}: path_regex does not compile: {}", rule.index + 1, regex_cause(e)),
                    "path_regex is an RE2 regular expression (Go syntax), e.g. `^secrets/.*\\.yaml$`",
                )
            })?;
            if re.is_match(&rel) {
                tracing::debug!(file = %rel, rule = rule.index + 1, "creation rule matched");
                return self.resolve(rule).map(Some);
            }
        }
        Err(RulesError::NoMatchingRule { config: self.path.clone(), file: rel })
    }

    /// Checks every rule, not only the first match (sops checks lazily; cairn's own
    /// commands use this to report all problems at once).
    pub fn validate_all(&self) -> Result<(), RulesError> {
        for rule in self.rules.iter().flatten() {
            if let Some(compiled) = &rule.compiled {
                compiled.as_ref().map_err(|e| {
                    self.invalid(
                        self.locate_field(rule.index, "path_regex"),
                        format!(
                            "rule {}: path_regex does not compile: {}",
                            rule.index + 1,
                            regex_cause(e)
                        ),
                        "path_regex is an RE2 regular expression (Go syntax)",
                    )
                })?;
            }
            self.resolve(rule)?;
        }
        Ok(())
    }

    fn resolve(&self, rule: &RawRule) -> Result<CreationRule, RulesError> {
        let n = rule.index + 1;
        if rule.crypt.len() > 1 {
            return Err(self.invalid(
                self.locate_field(rule.index, rule.crypt[1].0),
                format!(
                    "rule {n}: cannot use more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex, or unencrypted_comment_regex for the same rule (found {} and {})",
                    rule.crypt[0].0,
                    rule.crypt[1].0
                ),
                "keep one of them",
            ));
        }
        let crypt = match rule.crypt.first() {
            Some((field, value)) => {
                if field.ends_with("_regex") {
                    Regex::new(value).map_err(|e| {
                        self.invalid(
                            self.locate_field(rule.index, field),
                            format!("rule {n}: {field} does not compile: {}", regex_cause(&e)),
                            "this is an RE2 regular expression (Go syntax)",
                        )
                    })?;
                }
                CryptRule::from_field(field, value).ok().flatten()
            }
            None => None,
        };

        let mut groups: Vec<Vec<String>> = Vec::new();
        if !rule.key_groups.is_empty() {
            for (gi, group) in rule.key_groups.iter().enumerate() {
                let mut keys = Vec::new();
                self.collect_group(rule, group, &mut keys)?;
                // sops de-duplicates the keys of a group.
                let mut seen = std::collections::HashSet::new();
                keys.retain(|k| seen.insert(k.clone()));
                if keys.is_empty() {
                    return Err(self.invalid(
                        self.locate_field(rule.index, "key_groups"),
                        format!("rule {n}: key group {} has no age recipients", gi + 1),
                        "give every key group at least one `age` recipient",
                    ));
                }
                groups.push(keys);
            }
        } else {
            if let Some(field) = rule.foreign.first() {
                return Err(self.unsupported_keys(rule, field));
            }
            let items = match &rule.age {
                AgeField::Csv(items) => items.clone(),
                AgeField::List(items) => split_strict(&items.join(",")),
            };
            let mut keys = Vec::new();
            for item in items {
                keys.push(self.check_recipient(rule, None, "age", &item)?);
            }
            if keys.is_empty() {
                return Err(self.invalid(
                    self.locate_rule(rule.index),
                    format!("rule {n} has no age recipients"),
                    "add `age: age1...` (comma-separated or a list) to the rule",
                ));
            }
            groups.push(keys);
        }

        let shamir_threshold = match rule.shamir_threshold {
            0 => None,
            t if t < 0 || t > i64::from(u32::MAX) => {
                return Err(self.invalid(
                    self.locate_field(rule.index, "shamir_threshold"),
                    format!("rule {n}: shamir_threshold must be a positive number, not {t}"),
                    "set it to how many key groups are needed to decrypt",
                ))
            }
            t if groups.len() > 1 && t as usize > groups.len() => {
                return Err(self.invalid(
                    self.locate_field(rule.index, "shamir_threshold"),
                    format!(
                        "rule {n}: shamir_threshold {t} is more than its {} key groups",
                        groups.len()
                    ),
                    "the threshold cannot exceed the number of key groups",
                ))
            }
            t => Some(t as u32),
        };
        Ok(CreationRule {
            key_groups: groups,
            shamir_threshold,
            crypt,
            mac_only_encrypted: rule.mac_only_encrypted,
        })
    }

    fn collect_group(
        &self,
        rule: &RawRule,
        group: &RawGroup,
        out: &mut Vec<String>,
    ) -> Result<(), RulesError> {
        if let Some(field) = group.foreign.first() {
            return Err(self.unsupported_keys(rule, field));
        }
        // sops' order inside a group: merged groups first, then age keys.
        for sub in &group.merge {
            self.collect_group(rule, sub, out)?;
        }
        for item in &group.age {
            for piece in split_strict(item) {
                out.push(self.check_recipient(rule, Some("key_groups"), "age", &piece)?);
            }
        }
        Ok(())
    }

    fn check_recipient(
        &self,
        rule: &RawRule,
        outer: Option<&str>,
        field: &str,
        text: &str,
    ) -> Result<String, RulesError> {
        let at = match outer {
            Some(outer) => self.locate_nested(rule.index, outer, field),
            None => self.locate_field(rule.index, field),
        };
        if text.is_empty() {
            return Err(self.invalid(
                at,
                format!("rule {}: empty age recipient", rule.index + 1),
                "remove the stray `,` or the empty list item",
            ));
        }
        AgeRecipient::parse(text).map(|r| r.as_str().to_owned()).map_err(|e| {
            let help = miette::Diagnostic::help(&e).map(|h| h.to_string()).unwrap_or_default();
            self.invalid(at, format!("rule {}: {e}", rule.index + 1), help)
        })
    }

    fn unsupported_keys(&self, rule: &RawRule, field: &str) -> RulesError {
        self.invalid(
            self.locate_field(rule.index, field),
            format!("rule {}: `{field}` keys are not supported by cairn, only age", rule.index + 1),
            "encrypt to age recipients (`age1...` or SSH keys), or use sops itself for this file",
        )
    }

    fn parse_stores(&self, doc: &Map) -> Result<StoresConfig, RulesError> {
        let mut stores = StoresConfig::default();
        let Some(value) = tree::get(doc, "stores") else { return Ok(stores) };
        let Value::Map(map) = value else {
            if matches!(value, Value::Scalar(Scalar::Null)) {
                return Ok(stores);
            }
            return Err(self.invalid(
                self.locate_top("stores"),
                "stores must be a mapping".into(),
                "e.g. `stores: {yaml: {indent: 2}}`",
            ));
        };
        let indent = |name: &str| -> Result<Option<i64>, RulesError> {
            match tree::get(map, name) {
                Some(Value::Map(m)) => match tree::get(m, "indent") {
                    None | Some(Value::Scalar(Scalar::Null)) => Ok(None),
                    Some(Value::Scalar(Scalar::Int(i))) => Ok(Some(*i)),
                    Some(other) => Err(self.invalid(
                        self.locate_top("stores"),
                        format!("stores.{name}.indent must be a number, not {}", kind(other)),
                        "e.g. `indent: 2`",
                    )),
                },
                _ => Ok(None),
            }
        };
        stores.yaml_indent = indent("yaml")?;
        stores.json_indent = indent("json")?;
        stores.json_binary_indent = indent("json_binary")?;
        Ok(stores)
    }

    fn parse_rule(&self, index: usize, item: &Value) -> Result<RawRule, RulesError> {
        let n = index + 1;
        let Value::Map(map) = item else {
            return Err(self.invalid(
                self.locate_rule(index),
                format!(
                    "rule {n} must be a mapping (`path_regex: ...`, `age: ...`), not {}",
                    kind(item)
                ),
                "each item of creation_rules is a mapping",
            ));
        };
        let mut rule = RawRule {
            index,
            path_regex: String::new(),
            compiled: None,
            age: AgeField::Csv(Vec::new()),
            key_groups: Vec::new(),
            shamir_threshold: 0,
            crypt: Vec::new(),
            mac_only_encrypted: false,
            foreign: Vec::new(),
        };
        for entry in map {
            let MapItem::Entry { key, value } = entry else { continue };
            let key = key.as_str();
            match key {
                "path_regex" => rule.path_regex = self.string(index, key, value)?,
                "age" => {
                    rule.age = match value {
                        Value::List(items) => AgeField::List(self.strings(index, key, items)?),
                        other => AgeField::Csv(split_lenient(&self.string(index, key, other)?)),
                    }
                }
                "key_groups" => match value {
                    Value::Scalar(Scalar::Null) => {}
                    Value::List(items) => {
                        for g in items.iter().filter_map(non_comment) {
                            rule.key_groups.push(self.parse_group(index, g)?);
                        }
                    }
                    other => {
                        return Err(self.type_error(index, key, "a list of key groups", other));
                    }
                },
                "shamir_threshold" => {
                    rule.shamir_threshold = match value {
                        Value::Scalar(Scalar::Null) => 0,
                        Value::Scalar(Scalar::Int(i)) => *i,
                        other => return Err(self.type_error(index, key, "a number", other)),
                    }
                }
                "mac_only_encrypted" => {
                    rule.mac_only_encrypted = match value {
                        Value::Scalar(Scalar::Null) => false,
                        Value::Scalar(Scalar::Bool(b)) => *b,
                        // yaml.v3 still reads YAML 1.1 booleans into a bool field.
                        Value::Scalar(Scalar::Str(s)) => match s.as_str() {
                            "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => true,
                            "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => false,
                            _ => return Err(self.type_error(index, key, "true or false", value)),
                        },
                        other => return Err(self.type_error(index, key, "true or false", other)),
                    }
                }
                _ => {
                    if let Some(field) = CryptRule::FIELDS.iter().find(|f| **f == key) {
                        let v = self.string(index, key, value)?;
                        if !v.is_empty() {
                            rule.crypt.push((field, v));
                        }
                    } else if let Some(field) = FOREIGN_KEY_FIELDS.iter().find(|f| **f == key) {
                        if !is_empty_value(value) {
                            rule.foreign.push(field);
                        }
                    }
                    // Other keys (aws_profile, timeout, ...) are ignored, as sops does.
                }
            }
        }
        // sops checks the crypt fields in its own order, not the file's.
        rule.crypt.sort_by_key(|(f, _)| CryptRule::FIELDS.iter().position(|c| c == f));
        rule.compiled = (!rule.path_regex.is_empty()).then(|| Regex::new(&rule.path_regex));
        Ok(rule)
    }

    fn parse_group(&self, index: usize, value: &Value) -> Result<RawGroup, RulesError> {
        let Value::Map(map) = value else {
            return Err(self.type_error(
                index,
                "key_groups",
                "a list of key groups (`- age: [...]`)",
                value,
            ));
        };
        let mut group = RawGroup::default();
        for entry in map {
            let MapItem::Entry { key, value } = entry else { continue };
            match key.as_str() {
                "age" => match value {
                    Value::Scalar(Scalar::Null) => {}
                    Value::List(items) => group.age = self.strings(index, "key_groups", items)?,
                    other => {
                        return Err(self.group_type_error(
                            index,
                            "age",
                            "a list of recipients",
                            other,
                        ))
                    }
                },
                "merge" => match value {
                    Value::Scalar(Scalar::Null) => {}
                    Value::List(items) => {
                        for g in items.iter().filter_map(non_comment) {
                            group.merge.push(self.parse_group(index, g)?);
                        }
                    }
                    other => {
                        return Err(self.group_type_error(
                            index,
                            "merge",
                            "a list of key groups",
                            other,
                        ))
                    }
                },
                other => {
                    if let Some(field) = FOREIGN_KEY_FIELDS.iter().find(|f| **f == other) {
                        if !is_empty_value(value) {
                            group.foreign.push(field);
                        }
                    }
                }
            }
        }
        Ok(group)
    }

    fn string(&self, index: usize, key: &str, value: &Value) -> Result<String, RulesError> {
        match value {
            Value::Scalar(s) => {
                scalar_text(s).ok_or_else(|| self.type_error(index, key, "a string", value))
            }
            other => Err(self.type_error(index, key, "a string", other)),
        }
    }

    fn strings(
        &self,
        index: usize,
        key: &str,
        items: &[ListItem],
    ) -> Result<Vec<String>, RulesError> {
        items.iter().filter_map(non_comment).map(|v| self.string(index, key, v)).collect()
    }

    fn type_error(&self, index: usize, key: &str, expected: &str, found: &Value) -> RulesError {
        self.invalid(
            self.locate_field(index, key),
            format!("rule {}: `{key}` must be {expected}, not {}", index + 1, kind(found)),
            format!("write `{key}` as {expected}; sops refuses this file too"),
        )
    }

    fn group_type_error(
        &self,
        index: usize,
        key: &str,
        expected: &str,
        found: &Value,
    ) -> RulesError {
        self.invalid(
            self.locate_nested(index, "key_groups", key),
            format!(
                "rule {}: in key_groups, `{key}` must be {expected}, not {}",
                index + 1,
                kind(found)
            ),
            format!(
                "write `{key}` as {expected}, e.g. `- age: [age1...]`; sops refuses this file too"
            ),
        )
    }

    fn invalid(
        &self,
        at: Option<(usize, SourceSpan)>,
        message: String,
        help: impl Into<String>,
    ) -> RulesError {
        RulesError::Invalid(Box::new(InvalidConfig {
            path: self.path.clone(),
            line: at.map(|(l, _)| l),
            message,
            help: help.into(),
            src: NamedSource::new(self.path.display().to_string(), self.text.clone()),
            span: at.map(|(_, s)| s),
        }))
    }

    // Positions. The YAML tree carries none, so rules and fields are found again in the text.
    // Block style (what people write) is located; flow style falls back to no position.

    fn locate_top(&self, key: &str) -> Option<(usize, SourceSpan)> {
        lines(&self.text)
            .find(|(_, _, l)| key_at_start(l, key))
            .map(|(no, off, l)| (no, span_of(off, l)))
    }

    /// The line range (byte offsets) of rule `index` in block style.
    fn rule_lines(&self, index: usize) -> Option<Vec<(usize, usize, &str)>> {
        let mut it = lines(&self.text).skip_while(|(_, _, l)| !key_at_start(l, "creation_rules"));
        it.next()?;
        let mut item_indent: Option<usize> = None;
        let mut current: Option<usize> = None;
        let mut out = Vec::new();
        for (no, off, line) in it {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            let is_item = trimmed == "-" || trimmed.starts_with("- ");
            let k = *item_indent.get_or_insert(indent);
            if indent < k
                || (indent == k && !is_item)
                || line.starts_with("---")
                || line.starts_with("...")
            {
                break;
            }
            if indent == k && is_item {
                current = Some(current.map_or(0, |c| c + 1));
            }
            match current {
                Some(c) if c == index => out.push((no, off, line)),
                Some(c) if c > index => break,
                _ => {}
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn locate_rule(&self, index: usize) -> Option<(usize, SourceSpan)> {
        self.rule_lines(index)
            .and_then(|l| l.first().map(|(no, off, line)| (*no, span_of(*off, line))))
    }

    /// `inner` on a line after the rule's `outer` key (e.g. `age` inside `key_groups`).
    fn locate_nested(&self, index: usize, outer: &str, inner: &str) -> Option<(usize, SourceSpan)> {
        let lines = self.rule_lines(index)?;
        let strip = |line: &str| {
            let t = line.trim_start();
            t.strip_prefix("- ").map(str::trim_start).unwrap_or(t).to_owned()
        };
        let start = lines.iter().position(|(_, _, l)| key_at_start(&strip(l), outer))?;
        lines[start + 1..]
            .iter()
            .find(|(_, _, l)| key_at_start(&strip(l), inner))
            .map(|(no, off, line)| (*no, span_of(*off, line)))
            .or_else(|| self.locate_field(index, outer))
    }

    fn locate_field(&self, index: usize, key: &str) -> Option<(usize, SourceSpan)> {
        let lines = self.rule_lines(index)?;
        let found = lines.iter().find(|(_, _, line)| {
            let t = line.trim_start();
            let t = t.strip_prefix("- ").map(str::trim_start).unwrap_or(t);
            key_at_start(t, key)
        });
        match found {
            Some((no, off, line)) => Some((*no, span_of(*off, line))),
            None => self.locate_rule(index),
        }
    }
}

fn non_comment(item: &ListItem) -> Option<&Value> {
    match item {
        ListItem::Value(v) => Some(v),
        ListItem::Comment(_) => None,
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Scalar(Scalar::Null) => true,
        Value::Scalar(Scalar::Str(s)) => s.is_empty(),
        Value::List(items) => items.iter().all(|i| matches!(i, ListItem::Comment(_))),
        Value::Map(m) => m.iter().all(|i| matches!(i, MapItem::Comment(_))),
        _ => false,
    }
}

/// A scalar decoded into a Go string field: yaml.v3 accepts any scalar's text; null is "".
fn scalar_text(s: &Scalar) -> Option<String> {
    Some(match s {
        Scalar::Null => String::new(),
        Scalar::Str(s) | Scalar::Time(s) => s.clone(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Bytes(_) => return None,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Map(_) => "a mapping",
        Value::List(_) => "a list",
        Value::Scalar(Scalar::Null) => "null",
        Value::Scalar(Scalar::Str(_)) => "a string",
        Value::Scalar(Scalar::Int(_)) => "a number",
        Value::Scalar(Scalar::Float(_)) => "a number",
        Value::Scalar(Scalar::Bool(_)) => "a boolean",
        Value::Scalar(Scalar::Time(_)) => "a timestamp",
        Value::Scalar(Scalar::Bytes(_)) => "binary data",
    }
}

/// A config string list: split on `,`, trimmed, empty items dropped (`" a , b ,"`).
fn split_lenient(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

/// sops' `MasterKeysFromRecipients`: split on `,` and trim; an empty string is no key, but an
/// empty item among others stays (and then fails to parse as a recipient).
fn split_strict(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(',').map(|p| p.trim().to_owned()).collect()
}

/// The cause from a `regex` error (its last line: `error: unclosed group`).
fn regex_cause(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(&text).trim();
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}

/// `(1-based line number, byte offset, line text)` of every line.
fn lines(text: &str) -> impl Iterator<Item = (usize, usize, &str)> {
    let mut offset = 0;
    text.split_inclusive('\n').enumerate().map(move |(i, raw)| {
        let start = offset;
        offset += raw.len();
        (i + 1, start, raw.trim_end_matches(['\n', '\r']))
    })
}

fn key_at_start(line: &str, key: &str) -> bool {
    for quoted in [key.to_owned(), format!("\"{key}\""), format!("'{key}'")] {
        if let Some(rest) = line.strip_prefix(quoted.as_str()) {
            if rest.trim_start().starts_with(':') {
                return true;
            }
        }
    }
    false
}

fn span_of(line_offset: usize, line: &str) -> SourceSpan {
    let trimmed = line.trim_start();
    let content = trimmed.strip_prefix("- ").map_or(trimmed, str::trim_start);
    let start = line.len() - content.len();
    (line_offset + start, content.trim_end().len()).into()
}

/// Removes `.` and resolves `..` without touching the file system (Go's `filepath.Abs`
/// cleans the same way; symlinks are not resolved).
fn lexical_clean(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_path_is_relative_to_the_config_dir() {
        let cfg = SopsConfig::parse(Path::new("/repo/.sops.yaml"), "creation_rules: []\n".into())
            .unwrap();
        assert_eq!(
            cfg.match_path(Path::new("secrets/a.yaml"), Path::new("/repo")),
            "secrets/a.yaml"
        );
        assert_eq!(
            cfg.match_path(Path::new("a.yaml"), Path::new("/repo/secrets")),
            "secrets/a.yaml"
        );
        assert_eq!(
            cfg.match_path(Path::new("../x/a.yaml"), Path::new("/repo/secrets")),
            "x/a.yaml"
        );
        assert_eq!(
            cfg.match_path(Path::new("/elsewhere/a.yaml"), Path::new("/repo")),
            "/elsewhere/a.yaml"
        );
    }
}
