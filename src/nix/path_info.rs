//! `nix path-info --json` output, and the registration text `nix-store --load-db` reads.

use std::collections::BTreeMap;

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

/// One entry as Nix prints it; `path` is absent in the object format (it is the key).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPathInfo {
    path: Option<String>,
    nar_hash: String,
    nar_size: u64,
    #[serde(default)]
    references: Vec<String>,
    deriver: Option<String>,
    registration_time: Option<u64>,
    #[serde(default)]
    signatures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawOutput {
    /// Nix up to 2.18 (Debian's 2.8 included): `[{"path": ..., ...}, ...]`.
    Array(Vec<RawPathInfo>),
    /// Nix 2.19 and later: `{"/nix/store/...": {...} or null, ...}`.
    Object(BTreeMap<String, Option<RawPathInfo>>),
}

/// Parses `nix path-info --json` output in either format, sorted by path.
pub fn parse(json: &str) -> Result<Vec<PathInfo>, PathInfoParseError> {
    let raw: RawOutput = serde_json::from_str(json)
        .map_err(|e| PathInfoParseError(format!("unexpected JSON from nix path-info: {e}")))?;
    let entries: Vec<(String, RawPathInfo)> = match raw {
        RawOutput::Array(items) => items
            .into_iter()
            .map(|r| match r.path.clone() {
                Some(p) => Ok((p, r)),
                None => Err(PathInfoParseError("an entry has no `path`".into())),
            })
            .collect::<Result<_, _>>()?,
        RawOutput::Object(map) => map
            .into_iter()
            .map(|(p, r)| match r {
                Some(r) => Ok((p, r)),
                None => Err(PathInfoParseError(format!("{p} is not valid in the store"))),
            })
            .collect::<Result<_, _>>()?,
    };
    let sp = |s: String| StorePath::new(s).map_err(|e| PathInfoParseError(e.to_string()));
    let mut out = Vec::with_capacity(entries.len());
    for (path, r) in entries {
        let path = sp(path)?;
        let nar_hash =
            NarHash::parse(&r.nar_hash).map_err(|e| PathInfoParseError(format!("{path}: {e}")))?;
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
/// hash in hex, its NAR size, the deriver (left empty: the `.drv` is not copied), the number
/// of references, then the references.
pub fn load_db_registration(infos: &[PathInfo]) -> String {
    let mut s = String::new();
    for i in infos {
        s.push_str(i.path.as_str());
        s.push('\n');
        s.push_str(&i.nar_hash.to_base16());
        s.push('\n');
        s.push_str(&i.nar_size.to_string());
        s.push_str("\n\n");
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

    #[test]
    fn registration_matches_the_dump_db_format() {
        let reg = load_db_registration(&parse(ARRAY).unwrap());
        insta::assert_snapshot!(reg, @r"
        /nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep
        bce1e108f53fbbdab35f625511f17f1a61a1cfea97f5436055cebd6900ae7b4f
        288

        0
        /nix/store/wgqb4b5brcyb0y5ggx8yjykdi84rs7xw-top
        0d7bcbb77a09fadd73f6f038ac99c646261221d8975992a02254c7bbad0e10e2
        328

        1
        /nix/store/gcqiw58q9c8ka0xdlbb4gl1f1852jf6i-dep
        ");
    }
}
