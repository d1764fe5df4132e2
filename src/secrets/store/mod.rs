//! The file formats sops supports, each read into and written from the shared tree.
//! The metadata (`sops` key, `sops_*` keys, `[sops]` section) is split off on load and
//! attached on emit.

pub mod dotenv;
pub mod ini;
pub mod json;

use std::path::Path;

use super::metadata::{flatten, unflatten, MetaStyle, Metadata};
use super::tree::{Documents, Map, MapItem, Scalar, Value};

/// `stores:` in `.sops.yaml`: how sops 3.11 lays files out when it writes them (encrypted
/// or decrypted). `None`: not set, sops' default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoresConfig {
    pub yaml_indent: Option<i64>,
    pub json_indent: Option<i64>,
    pub json_binary_indent: Option<i64>,
}

impl StoresConfig {
    /// yaml.v3's indent: 0 or unset is sops' 4; yaml.v3 itself turns anything outside 2..=9
    /// into 2.
    fn yaml_step(&self) -> Result<usize, String> {
        match self.yaml_indent {
            None | Some(0) => Ok(super::yaml::DEFAULT_INDENT),
            Some(n) if n < 0 => Err("YAML Negative indentation not accepted".into()),
            Some(n @ 2..=9) => Ok(n as usize),
            Some(_) => Ok(2),
        }
    }

    /// Go's `json.Indent` prefix per level: unset or -1 is a tab, n >= 0 is n spaces.
    fn json_unit(&self, binary: bool) -> Result<String, String> {
        let indent = if binary { self.json_binary_indent } else { self.json_indent };
        match indent {
            None | Some(-1) => Ok("\t".into()),
            Some(n) if n < -1 => {
                Err("JSON Indentation parameter smaller than -1 is not accepted".into())
            }
            Some(n) => Ok(" ".repeat(n as usize)),
        }
    }
}

/// A sops file format. Its names on the command line (`--input-type yaml`) are sops'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
    Ini,
    Binary,
}

impl Format {
    /// sops' detection from the file extension; anything unknown is binary.
    pub fn from_path(path: &Path) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            Format::Yaml
        } else if name.ends_with(".json") {
            Format::Json
        } else if name.ends_with(".env") {
            Format::Dotenv
        } else if name.ends_with(".ini") {
            Format::Ini
        } else {
            Format::Binary
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
            Format::Dotenv => "dotenv",
            Format::Ini => "ini",
            Format::Binary => "binary",
        }
    }

    /// Parses a plaintext file.
    pub fn load_plain(self, bytes: &[u8]) -> Result<Documents, String> {
        match self {
            Format::Binary => {
                let value = match std::str::from_utf8(bytes) {
                    Ok(s) => Scalar::Str(s.to_owned()),
                    Err(_) => Scalar::Bytes(bytes.to_vec()),
                };
                Ok(vec![vec![MapItem::Entry { key: "data".into(), value: Value::Scalar(value) }]])
            }
            _ => self.load_text(bytes),
        }
    }

    fn load_text(self, bytes: &[u8]) -> Result<Documents, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
        match self {
            Format::Json | Format::Binary => json::parse(text),
            Format::Dotenv => Ok(vec![dotenv::parse(text)?]),
            Format::Ini => Ok(vec![ini::parse(text)?]),
            Format::Yaml => super::yaml_parse(text),
        }
    }

    /// Parses an encrypted file and splits off its metadata (`None`: the file has none).
    pub fn load_encrypted(self, bytes: &[u8]) -> Result<(Documents, Option<Map>), String> {
        let mut docs = self.load_text(bytes)?;
        let meta = self.split_metadata(&mut docs)?;
        Ok((docs, meta))
    }

    /// Whether a plaintext file already carries sops metadata.
    pub fn has_metadata(self, docs: &Documents) -> bool {
        let Some(first) = docs.first() else { return false };
        match self {
            Format::Dotenv => first
                .iter()
                .any(|i| matches!(i, MapItem::Entry { key, .. } if key.starts_with("sops_"))),
            Format::Binary => false,
            _ => super::tree::get(first, "sops").is_some(),
        }
    }

    fn split_metadata(self, docs: &mut Documents) -> Result<Option<Map>, String> {
        match self {
            Format::Dotenv => {
                let Some(doc) = docs.first_mut() else { return Ok(None) };
                let mut pairs = Vec::new();
                doc.retain(|item| match item {
                    MapItem::Entry { key, value: Value::Scalar(Scalar::Str(v)) }
                        if key.starts_with("sops_") =>
                    {
                        pairs.push((key["sops_".len()..].to_owned(), v.clone()));
                        false
                    }
                    _ => true,
                });
                if pairs.is_empty() {
                    return Ok(None);
                }
                unflatten(&pairs).map(Some)
            }
            Format::Ini => {
                let Some(doc) = docs.first_mut() else { return Ok(None) };
                let Some(pos) = doc
                    .iter()
                    .position(|i| matches!(i, MapItem::Entry { key, .. } if key == "sops"))
                else {
                    return Ok(None);
                };
                let MapItem::Entry { value: Value::Map(section), .. } = doc.remove(pos) else {
                    return Ok(None);
                };
                let pairs: Vec<(String, String)> = section
                    .into_iter()
                    .filter_map(|i| match i {
                        MapItem::Entry { key, value: Value::Scalar(Scalar::Str(v)) } => {
                            Some((key, v.replace("\\n", "\n")))
                        }
                        _ => None,
                    })
                    .collect();
                unflatten(&pairs).map(Some)
            }
            _ => {
                // The first document's `sops` key is the metadata; later documents' copies
                // are discarded.
                let mut meta = None;
                for (i, doc) in docs.iter_mut().enumerate() {
                    // `retain`, not `remove` in a loop: a hostile JSON file may repeat the
                    // key a million times.
                    doc.retain(|item| match item {
                        MapItem::Entry { key, value } if key == "sops" => {
                            if i == 0 && meta.is_none() {
                                if let Value::Map(m) = value {
                                    meta = Some(m.clone());
                                }
                            }
                            false
                        }
                        _ => true,
                    });
                }
                Ok(meta)
            }
        }
    }

    /// Emits a plaintext tree, laid out as `stores` says.
    pub fn emit_plain(self, docs: &Documents, stores: &StoresConfig) -> Result<Vec<u8>, String> {
        match self {
            Format::Binary => {
                let data = docs.first().and_then(|d| super::tree::get(d, "data"));
                match data {
                    Some(Value::Scalar(Scalar::Bytes(b))) => Ok(b.clone()),
                    Some(Value::Scalar(s)) => Ok(super::cipher::to_bytes(s).to_vec()),
                    _ => Err("no binary data (`data` key) found in the tree".into()),
                }
            }
            Format::Json => {
                let first = docs.first().ok_or("no document")?;
                Ok(json::emit(first, &stores.json_unit(false)?).into_bytes())
            }
            Format::Dotenv => Ok(dotenv::emit(docs.first().ok_or("no document")?)?.into_bytes()),
            Format::Ini => Ok(ini::emit(docs.first().ok_or("no document")?, None)?.into_bytes()),
            Format::Yaml => Ok(super::yaml::emit(docs, stores.yaml_step()?).into_bytes()),
        }
    }

    /// Emits an encrypted tree with its metadata, laid out as `stores` says.
    pub fn emit_encrypted(
        self,
        docs: &Documents,
        meta: &Metadata,
        stores: &StoresConfig,
    ) -> Result<Vec<u8>, String> {
        match self {
            Format::Json | Format::Binary => {
                let mut doc = docs.first().cloned().unwrap_or_default();
                doc.push(MapItem::Entry {
                    key: "sops".into(),
                    value: Value::Map(meta.to_map(MetaStyle::Json)),
                });
                Ok(json::emit(&doc, &stores.json_unit(self == Format::Binary)?).into_bytes())
            }
            Format::Dotenv => {
                let mut doc = docs.first().cloned().unwrap_or_default();
                for (k, v) in flatten(&meta.to_map(MetaStyle::Flat)) {
                    doc.push(MapItem::Entry { key: format!("sops_{k}"), value: Value::str(v) });
                }
                Ok(dotenv::emit(&doc)?.into_bytes())
            }
            Format::Ini => {
                let flat = flatten(&meta.to_map(MetaStyle::Flat));
                Ok(ini::emit(docs.first().ok_or("no document")?, Some(&flat))?.into_bytes())
            }
            Format::Yaml => {
                let meta = Value::Map(meta.to_map(MetaStyle::Yaml));
                let docs: Documents = docs
                    .iter()
                    .map(|d| {
                        let mut d = d.clone();
                        d.push(MapItem::Entry { key: "sops".into(), value: meta.clone() });
                        d
                    })
                    .collect();
                Ok(super::yaml::emit(&docs, stores.yaml_step()?).into_bytes())
            }
        }
    }
}
