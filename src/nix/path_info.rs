//! `nix path-info --json` output, and the registration text `nix-store --load-db` reads.

use serde::Deserialize;

use super::store_path::{NarHash, StorePath};

/// What Nix knows about one valid store path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathInfo {
    pub path: StorePath,
    pub nar_hash: NarHash,
    pub nar_size: u64,
    pub references: Vec<StorePath>,
    pub deriver: Option<StorePath>,
    pub registration_time: Option<u64>,
    pub signatures: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathInfoParseError(pub String);

/// One entry as Nix prints it; `path` is absent in the object formats (it is the key).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPathInfo {
    path: Option<String>,
    nar_hash: RawHash,
    nar_size: u64,
    #[serde(default)]
    references: Vec<String>,
    deriver: Option<String>,
    registration_time: Option<u64>,
    #[serde(default)]
    signatures: Vec<String>,
}

/// A hash as format 1 prints it (`sha256-<base64>` or `sha256:<nix32>`), or as format 2's
/// structured object (`{"algorithm": "sha256", "format": "base64", "hash": "..."}`).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawHash {
    Text(String),
    Structured { algorithm: String, format: String, hash: String },
}

impl RawHash {
    fn parse(self) -> Result<NarHash, String> {
        let text = match self {
            RawHash::Text(t) => t,
            RawHash::Structured { algorithm, format, hash } => match format.as_str() {
                "base64" => format!("{algorithm}-{hash}"),
                "nix32" | "base32" | "base16" => format!("{algorithm}:{hash}"),
                "sri" => hash,
                other => return Err(format!("unknown hash format `{other}`")),
            },
        };
        NarHash::parse(&text).map_err(|e| e.to_string())
    }
}

/// The store directory a format-2 document names its paths relative to.
const DEFAULT_STORE_DIR: &str = "/nix/store";

/// Parses `nix path-info --json` output, sorted by path. Three formats:
/// - Nix up to 2.18 (Debian's 2.8 included): `[{"path": ..., ...}, ...]`;
/// - Nix 2.19 and later, and `--json-format 1`: `{"/nix/store/...": {...} or null, ...}`
///   (from 2.33 also with top-level `version` and `storeDir` members);
/// - `--json-format 2` (Nix 2.33): `{"version": 2, "storeDir": ..., "info": {...}}` keyed
///   by base names, references as base names, hashes as objects.
pub fn parse(json: &str) -> Result<Vec<PathInfo>, PathInfoParseError> {
    let bad = |e: serde_json::Error| {
        PathInfoParseError(format!("unexpected JSON from nix path-info: {e}"))
    };
    let doc: serde_json::Value = serde_json::from_str(json).map_err(bad)?;
    let mut store_dir = DEFAULT_STORE_DIR.to_owned();
    let mut entries: Vec<(String, RawPathInfo)> = Vec::new();
    let add_map = |map: serde_json::Map<String, serde_json::Value>,
                   entries: &mut Vec<(String, RawPathInfo)>|
     -> Result<(), PathInfoParseError> {
        for (key, value) in map {
            match value {
                serde_json::Value::Null => {
                    return Err(PathInfoParseError(format!("{key} is not valid in the store")))
                }
                value => entries.push((key, serde_json::from_value(value).map_err(bad)?)),
            }
        }
        Ok(())
    };
    match doc {
        serde_json::Value::Array(items) => {
            for item in items {
                let r: RawPathInfo = serde_json::from_value(item).map_err(bad)?;
                let path = r
                    .path
                    .clone()
                    .ok_or_else(|| PathInfoParseError("an entry has no `path`".into()))?;
                entries.push((path, r));
            }
        }
        serde_json::Value::Object(mut map) => {
            if let Some(serde_json::Value::String(dir)) = map.get("storeDir") {
                store_dir = dir.trim_end_matches('/').to_owned();
            }
            let version = map.get("version").and_then(serde_json::Value::as_u64);
            match (version, map.remove("info")) {
                (Some(2), Some(serde_json::Value::Object(info))) => add_map(info, &mut entries)?,
                (Some(v), _) if v > 2 => {
                    return Err(PathInfoParseError(format!(
                        "nix path-info printed JSON format version {v}, which this cairn does not know; \
                         tell cairn which Nix to use (CAIRN_NIX) or upgrade cairn"
                    )))
                }
                (_, info) => {
                    if let Some(info) = info {
                        map.insert("info".into(), info);
                    }
                    map.remove("version");
                    map.remove("storeDir");
                    add_map(map, &mut entries)?;
                }
            }
        }
        _ => {
            return Err(PathInfoParseError(
                "nix path-info printed neither a list nor an object".into(),
            ))
        }
    }
    // Format 2 names paths by their base names.
    let full = |s: String| if s.starts_with('/') { s } else { format!("{store_dir}/{s}") };
    let sp = |s: String| StorePath::new(full(s)).map_err(|e| PathInfoParseError(e.to_string()));
    let mut out = Vec::with_capacity(entries.len());
    for (path, r) in entries {
        let path = sp(path)?;
        let nar_hash =
            r.nar_hash.parse().map_err(|e| PathInfoParseError(format!("{path}: {e}")))?;
        let mut references = r.references.into_iter().map(sp).collect::<Result<Vec<_>, _>>()?;
        references.sort();
        out.push(PathInfo {
            path,
            nar_hash,
            nar_size: r.nar_size,
            references,
            deriver: r.deriver.filter(|d| !d.is_empty()).map(sp).transpose()?,
            registration_time: r.registration_time,
            signatures: r.signatures,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The text `nix-store --load-db` reads (the format `nix-store --dump-db` writes), for
/// registering copied paths on a target without a Nix daemon. Per path: the path, its NAR
/// hash in hex, its NAR size, the deriver (recorded as Nix records it, though the `.drv` is
/// not copied), the number of references, then the references. The format has no place for
/// signatures or content addresses: `copy = "nix-copy"` keeps those.
pub fn load_db_registration(infos: &[PathInfo]) -> String {
    let mut s = String::new();
    for i in infos {
        s.push_str(i.path.as_str());
        s.push('\n');
        s.push_str(&i.nar_hash.to_base16());
        s.push('\n');
        s.push_str(&i.nar_size.to_string());
        s.push('\n');
        if let Some(deriver) = &i.deriver {
            s.push_str(deriver.as_str());
        }
        s.push('\n');
        s.push_str(&i.references.len().to_string());
        s.push('\n');
        for r in &i.references {
            s.push_str(r.as_str());
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // Printed by Debian's nix-bin 2.8 (`nix path-info --recursive --json`).
    const ARRAY: &str = r#"[{"path":"/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep","narHash":"sha256-vOHhCPU/u9qzX2JVEfF/GmGhz+qX9UNgVc69aQCue08=","narSize":288,"references":[],"deriver":"/nix/store/1scflvw8nv865gssza9qj0zj2vb8qnfk-dep.drv","registrationTime":1795327716,"ultimate":true},{"path":"/nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top","narHash":"sha256-DXvLt3oJ+t1z9vA4rJnGRiYSIdiXWZKgIlTHu60OEOI=","narSize":328,"references":["/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep"],"deriver":"/nix/store/q4hqpk0py2hmsa6xsffapfn2z3zp178l-top.drv","registrationTime":1795327716,"ultimate":true}]"#;

    // The same paths in the object format of Nix 2.19+ (with signatures, without `path`).
    const OBJECT: &str = r#"{
      "/nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top": {"narHash":"sha256-DXvLt3oJ+t1z9vA4rJnGRiYSIdiXWZKgIlTHu60OEOI=","narSize":328,"references":["/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep"],"deriver":"/nix/store/q4hqpk0py2hmsa6xsffapfn2z3zp178l-top.drv","registrationTime":1795327716,"ultimate":true,"signatures":["cache.example.org-1:c2lnbmF0dXJl"],"ca":null},
      "/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep": {"narHash":"sha256-vOHhCPU/u9qzX2JVEfF/GmGhz+qX9UNgVc69aQCue08=","narSize":288,"references":[],"deriver":null,"registrationTime":1795327716,"signatures":[]}
    }"#;

    #[test]
    fn parses_the_array_format() {
        let infos = parse(ARRAY).unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[0].path.name(), "dep");
        assert_eq!(infos[1].references, vec![infos[0].path.clone()]);
        assert_eq!(infos[1].nar_size, 328);
        assert_eq!(infos[1].registration_time, Some(1795327716));
        assert_eq!(infos[1].deriver.as_ref().unwrap().name(), "top.drv");
    }

    #[test]
    fn parses_the_object_format_the_same() {
        let a = parse(ARRAY).unwrap();
        let o = parse(OBJECT).unwrap();
        assert_eq!(a[1].nar_hash, o[1].nar_hash);
        assert_eq!(a[1].references, o[1].references);
        assert_eq!(o[1].signatures, vec!["cache.example.org-1:c2lnbmF0dXJl".to_string()]);
        assert_eq!(o[0].deriver, None);
    }

    #[test]
    fn invalid_paths_in_the_object_format_are_errors() {
        let e = parse(r#"{"/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep": null}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep is not valid in the store"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("error: oops").is_err());
        assert!(parse(r#"[{"path":"/tmp/x","narHash":"sha256-AAAA","narSize":1}]"#).is_err());
    }

    // `nix path-info --recursive --json --json-format 2` of the same paths (Nix 2.33), written
    // from the 2.33 release notes' description of the format: Nix 2.33 cannot be installed
    // here (Debian ships 2.8), so this is not a recording.
    const FORMAT_2: &str = r#"{"version":2,"storeDir":"/nix/store","info":{
      "wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top": {"narHash":{"algorithm":"sha256","format":"base64","hash":"DXvLt3oJ+t1z9vA4rJnGRiYSIdiXWZKgIlTHu60OEOI="},"narSize":328,"references":["gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep"],"deriver":"q4hqpk0py2hmsa6xsffapfn2z3zp178l-top.drv","registrationTime":1795327716,"ultimate":true,"signatures":["cache.example.org-1:c2lnbmF0dXJl"],"ca":null},
      "gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep": {"narHash":{"algorithm":"sha256","format":"base16","hash":"bce1e108f53fbbdab35f625511f17f1a61a1cfea97f5436055cebd6900ae7b4f"},"narSize":288,"references":[],"deriver":"1scflvw8nv865gssza9qj0zj2vb8qnfk-dep.drv","registrationTime":1795327716,"signatures":[]}
    }}"#;

    #[test]
    fn parses_format_2_with_base_names_and_structured_hashes_the_same() {
        let two = parse(FORMAT_2).unwrap();
        let one = parse(ARRAY).unwrap();
        assert_eq!(two.len(), 2);
        for (a, b) in one.iter().zip(&two) {
            assert_eq!(
                (&a.path, &a.nar_hash, a.nar_size, &a.references),
                (&b.path, &b.nar_hash, b.nar_size, &b.references)
            );
            assert_eq!(a.deriver, b.deriver);
        }
        assert_eq!(two[1].signatures, ["cache.example.org-1:c2lnbmF0dXJl"]);
    }

    #[test]
    fn format_1_with_version_and_store_dir_members_is_read() {
        // Nix 2.33's `--json-format 1` adds `version` and `storeDir` beside the paths.
        let with_members = OBJECT.replacen('{', r#"{"version":1,"storeDir":"/nix/store","#, 1);
        assert_eq!(parse(&with_members).unwrap(), parse(OBJECT).unwrap());
        let future = r#"{"version":3,"storeDir":"/nix/store","info":{}}"#;
        assert!(parse(future).unwrap_err().to_string().contains("JSON format version 3"));
    }

    #[test]
    fn registration_matches_the_dump_db_format() {
        let reg = load_db_registration(&parse(ARRAY).unwrap());
        insta::assert_snapshot!(reg, @r"
        /nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep
        bce1e108f53fbbdab35f625511f17f1a61a1cfea97f5436055cebd6900ae7b4f
        288
        /nix/store/1scflvw8nv865gssza9qj0zj2vb8qnfk-dep.drv
        0
        /nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top
        0d7bcbb77a09fadd73f6f038ac99c646261221d8975992a02254c7bbad0e10e2
        328
        /nix/store/q4hqpk0py2hmsa6xsffapfn2z3zp178l-top.drv
        1
        /nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep
        ");
    }
}
