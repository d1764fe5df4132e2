//! `flake.inputs`: `flake.lock` read as JSON, no Nix needed.

use std::time::Duration;

use serde_json::Value;

use super::repo::Scan;
use super::{line_of, Finding, RuleId};

pub fn check(
    scan: &Scan<'_>,
    max_age: Duration,
    now: time::OffsetDateTime,
    out: &mut Vec<Finding>,
) {
    let has_flake = scan.files.iter().any(|f| f == "flake.nix");
    let lock_path = scan.root.join("flake.lock");
    let text = match fs_err::read_to_string(&lock_path) {
        Ok(t) => t,
        Err(_) => {
            if has_flake {
                out.push(
                    Finding::new(RuleId::FlakeInputs, "flake.nix has no flake.lock: its inputs are not pinned, so every evaluation may use different code")
                        .file("flake.nix", None)
                        .hint("run `nix flake lock` and commit flake.lock"),
                );
            }
            return;
        }
    };
    lock_findings(&text, max_age, now, out);
}

/// The findings for one `flake.lock` text.
pub fn lock_findings(
    text: &str,
    max_age: Duration,
    now: time::OffsetDateTime,
    out: &mut Vec<Finding>,
) {
    let file = "flake.lock";
    let lock: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.push(
                Finding::new(RuleId::FlakeInputs, format!("flake.lock is not valid JSON: {e}"))
                    .file(file, Some(e.line()))
                    .hint("run `nix flake lock` to write it again"),
            );
            return;
        }
    };
    let nodes = lock.get("nodes").and_then(Value::as_object);
    let root_name = lock.get("root").and_then(Value::as_str).unwrap_or("root");
    let Some(nodes) = nodes else {
        out.push(
            Finding::new(RuleId::FlakeInputs, "flake.lock has no `nodes`")
                .file(file, None)
                .hint("run `nix flake lock` to write it again"),
        );
        return;
    };
    let Some(root) = nodes.get(root_name) else { return };
    let node_line =
        |name: &str| line_of(text, |l| l.trim_start().starts_with(&format!("\"{name}\": {{")));
    let inputs = root.get("inputs").and_then(Value::as_object).cloned().unwrap_or_default();
    for (input, target) in &inputs {
        // `follows` (an array path) points at another input: that one is checked itself.
        let Some(node_name) = target.as_str() else { continue };
        let Some(node) = nodes.get(node_name) else { continue };
        let line = node_line(node_name);
        let finding = |message: String, hint: &str| {
            Finding::new(RuleId::FlakeInputs, message).file(file, line).hint(hint.to_owned())
        };
        if node.get("flake").and_then(Value::as_bool) == Some(false) && node.get("locked").is_none()
        {
            out.push(finding(
                format!("input `{input}` is not locked"),
                "run `nix flake lock` and commit flake.lock",
            ));
            continue;
        }
        let Some(locked) = node.get("locked").and_then(Value::as_object) else {
            out.push(finding(
                format!("input `{input}` is not locked"),
                "run `nix flake lock` and commit flake.lock",
            ));
            continue;
        };
        let kind = locked.get("type").and_then(Value::as_str).unwrap_or("");
        if kind == "path" {
            let p = locked.get("path").and_then(Value::as_str).unwrap_or("?");
            out.push(finding(
                format!("input `{input}` is a local path ({p}): another machine or CI cannot fetch it"),
                "use a git, github or tarball input (`github:owner/repo`), or vendor it into the repository",
            ));
        }
        if locked.contains_key("dirtyRev") || locked.contains_key("dirtyShortRev") {
            out.push(finding(
                format!("input `{input}` was locked from a dirty work tree (uncommitted changes)"),
                "commit the input's changes, then `nix flake lock --update-input` it",
            ));
        }
        if matches!(kind, "git" | "github" | "gitlab" | "sourcehut")
            && !locked.contains_key("rev")
            && !locked.contains_key("dirtyRev")
        {
            out.push(finding(
                format!("input `{input}` is not pinned to a revision"),
                "run `nix flake lock` and commit flake.lock",
            ));
        }
        if is_nixpkgs(input, node) {
            if let Some(modified) = locked.get("lastModified").and_then(Value::as_i64) {
                let age = now.unix_timestamp() - modified;
                if age > max_age.as_secs() as i64 {
                    let days = age / 86_400;
                    out.push(finding(
                        format!(
                            "input `{input}` (nixpkgs) is {days} days old, more than the {} days allowed: it misses security fixes",
                            max_age.as_secs() / 86_400
                        ),
                        &format!("run `nix flake update {input}`, or raise `check {{ nixpkgs_max_age }}` in cairn.hcl"),
                    ));
                }
            }
        }
    }
}

fn is_nixpkgs(input: &str, node: &Value) -> bool {
    let original = node.get("original");
    let repo = original.and_then(|o| o.get("repo")).and_then(Value::as_str);
    let id = original.and_then(|o| o.get("id")).and_then(Value::as_str);
    input == "nixpkgs" || repo == Some("nixpkgs") || id == Some("nixpkgs")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"{
  "nodes": {
    "deps": {
      "flake": false,
      "locked": { "lastModified": 1, "narHash": "sha256-x", "path": "/tmp/deps", "type": "path" },
      "original": { "path": "/tmp/deps", "type": "path" }
    },
    "nixpkgs": {
      "locked": { "lastModified": 1700000000, "narHash": "sha256-y", "owner": "NixOS", "repo": "nixpkgs", "rev": "abc", "type": "github" },
      "original": { "owner": "NixOS", "ref": "nixos-23.11", "repo": "nixpkgs", "type": "github" }
    },
    "tools": {
      "locked": { "dirtyRev": "abc-dirty", "lastModified": 1, "type": "git", "url": "file:///src/tools" },
      "original": { "type": "git", "url": "file:///src/tools" }
    },
    "root": { "inputs": { "deps": "deps", "nixpkgs": "nixpkgs", "tools": "tools", "x": ["nixpkgs"] } }
  },
  "root": "root",
  "version": 7
}"#;

    #[test]
    fn path_dirty_and_old_nixpkgs_inputs_are_reported_with_their_lines() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_000 + 100 * 86_400).unwrap();
        let mut out = Vec::new();
        lock_findings(LOCK, Duration::from_secs(90 * 86_400), now, &mut out);
        let got: Vec<(Option<usize>, &str)> =
            out.iter().map(|f| (f.line, f.message.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Some(3), "input `deps` is a local path (/tmp/deps): another machine or CI cannot fetch it"),
                (Some(8), "input `nixpkgs` (nixpkgs) is 100 days old, more than the 90 days allowed: it misses security fixes"),
                (Some(12), "input `tools` was locked from a dirty work tree (uncommitted changes)"),
            ]
        );
        let mut out = Vec::new();
        lock_findings(LOCK, Duration::from_secs(200 * 86_400), now, &mut out);
        assert_eq!(out.len(), 2);
    }
}
