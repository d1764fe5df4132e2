//! Rego policies (`policies/*.rego`, OPA v1 syntax) evaluated with regorus over the fleet
//! document: `deny contains msg if {...}` gives errors, `warn contains msg if {...}`
//! warnings, as conftest does. The input document is described in docs/check.md.

use serde_json::{json, Value};

use super::repo::Scan;
use super::{line_of, CheckError, Finding, Severity};
use crate::secrets::walk::plaintext_leaves;

/// The directory holding the policies, relative to the repository root.
pub const POLICY_DIR: &str = "policies";

/// The input document the policies see.
pub fn input_document(scan: &Scan<'_>, builtin: &[Finding]) -> Value {
    let inv = scan.fleet.inventory;
    let state = scan.fleet.state;
    let hosts: Vec<Value> = inv
        .hosts
        .iter()
        .map(|h| {
            let st = state.hosts.get(h.name.as_str());
            let layout = h.disk_layout.as_ref().and_then(|n| inv.disk_layouts.get(n));
            json!({
                "name": h.name,
                "provider": h.provider,
                "provider_kind": inv.provider_of(h).kind,
                "tags": h.tags,
                "ring": inv.ring_of(h.name.as_str()).map(|r| r.name.to_string()),
                "flake": h.flake.as_ref().map(|f| f.to_string()),
                "disk_layout": layout.map(|l| json!({ "name": l.name, "device": l.device })),
                "disk_by_id": h.install.disk_by_id,
                "addresses": st.map(|s| s.addresses.clone()).unwrap_or_default(),
                "last_phase": st.and_then(|s| s.last_phase.as_ref()).map(|p| p.phase),
                "age_recipient": st.and_then(|s| s.age_recipient.clone()),
                "secrets": h.secrets,
            })
        })
        .collect();
    let secrets: Vec<Value> = scan
        .secrets
        .iter()
        .map(|f| {
            let (encrypted, recipients, format) = match &f.parsed {
                Ok(s) => (
                    plaintext_leaves(&s.docs, s.metadata.rule.as_ref()).is_empty(),
                    s.metadata.recipients().map(str::to_owned).collect::<Vec<_>>(),
                    s.format.name(),
                ),
                Err(_) => (
                    false,
                    Vec::new(),
                    crate::secrets::Format::from_path(std::path::Path::new(&f.rel)).name(),
                ),
            };
            json!({
                "path": f.rel,
                "format": format,
                "encrypted": encrypted,
                "recipients": recipients,
                "expected_recipients": f.expected,
                "readers": f.readers,
            })
        })
        .collect();
    let admins: Vec<Value> =
        inv.admins.iter().map(|a| json!({ "name": a.name, "recipient": a.age })).collect();
    let rings: Vec<Value> = inv
        .rings
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "hosts": r.hosts,
                "after": r.after,
                "branch": r.branch,
                "soak_seconds": r.soak.as_secs(),
            })
        })
        .collect();
    json!({
        "hosts": hosts,
        "secrets": secrets,
        "admins": admins,
        "rings": rings,
        "findings": builtin,
    })
}

/// Evaluates every policy; `errors_only` skips `warn`.
pub fn check(
    scan: &Scan<'_>,
    builtin: &[Finding],
    errors_only: bool,
    out: &mut Vec<Finding>,
) -> Result<(), CheckError> {
    let dir = scan.root.join(POLICY_DIR);
    let mut files: Vec<String> = scan
        .files
        .iter()
        .filter(|f| {
            f.strip_prefix(&format!("{POLICY_DIR}/")).is_some_and(|rest| !rest.contains('/'))
                && f.ends_with(".rego")
        })
        .cloned()
        .collect();
    files.sort();
    if files.is_empty() {
        tracing::debug!(dir = %dir.display(), "no policies");
        return Ok(());
    }
    let mut engine = regorus::Engine::new();
    let mut packages: Vec<(String, String, String)> = Vec::new();
    for rel in &files {
        let text = fs_err::read_to_string(scan.root.join(rel))
            .map_err(|source| CheckError::Io { path: scan.root.join(rel), source })?;
        let package = engine
            .add_policy(rel.clone(), text.clone())
            .map_err(|e| CheckError::Policy { file: rel.clone(), message: e.to_string() })?;
        if !packages.iter().any(|(p, _, _)| *p == package) {
            packages.push((package, rel.clone(), text));
        }
    }
    let input = input_document(scan, builtin);
    let input = regorus::Value::from_json_str(&input.to_string())
        .map_err(|e| CheckError::Policy { file: POLICY_DIR.into(), message: e.to_string() })?;
    engine.set_input(input);
    for (package, rel, text) in &packages {
        let short = package.strip_prefix("data.").unwrap_or(package);
        let kinds: &[(&str, Severity)] = if errors_only {
            &[("deny", Severity::Error)]
        } else {
            &[("deny", Severity::Error), ("warn", Severity::Warning)]
        };
        for (rule, severity) in kinds {
            let results = engine
                .eval_query(format!("{package}.{rule}"), false)
                .map_err(|e| CheckError::Policy { file: rel.clone(), message: e.to_string() })?;
            let line = rule_line(text, rule);
            for r in &results.result {
                for e in &r.expressions {
                    let json = e.value.to_json_str().map_err(|err| CheckError::Policy {
                        file: rel.clone(),
                        message: err.to_string(),
                    })?;
                    let value: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
                    for msg in messages(&value) {
                        out.push(Finding {
                            rule: format!("policy.{short}"),
                            severity: *severity,
                            file: Some(rel.clone()),
                            line,
                            host: msg.1.clone(),
                            message: msg.0,
                            hint: None,
                            concerns: msg.1.into_iter().collect(),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// The line of the `deny`/`warn` rule when the file defines it once.
fn rule_line(text: &str, rule: &str) -> Option<usize> {
    let heads = |l: &str| {
        let t = l.trim_start();
        t.starts_with(&format!("{rule} contains")) || t.starts_with(&format!("{rule}["))
    };
    let count = text.lines().filter(|l| heads(l)).count();
    if count == 1 {
        line_of(text, heads)
    } else {
        None
    }
}

/// The messages of a `deny`/`warn` set: strings, or objects with `msg` (and optionally
/// `host`), as conftest accepts.
fn messages(value: &Value) -> Vec<(String, Option<String>)> {
    let items: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => (s.clone(), None),
            Value::Object(o) => (
                o.get("msg")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
                o.get("host").and_then(Value::as_str).map(str::to_owned),
            ),
            other => (other.to_string(), None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_strings_or_conftest_objects() {
        let v = json!(["a", { "msg": "b", "host": "web1" }, 3]);
        assert_eq!(
            messages(&v),
            vec![("a".into(), None), ("b".into(), Some("web1".into())), ("3".into(), None)]
        );
    }

    #[test]
    fn rego_v1_deny_and_warn_evaluate_over_an_input() {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(
                "p.rego".into(),
                "package fleet\n\ndeny contains msg if {\n  some h in input.hosts\n  not \"owner\" in object.keys(h.tags)\n  msg := sprintf(\"host %s has no owner\", [h.name])\n}\n".into(),
            )
            .unwrap();
        engine.set_input(
            regorus::Value::from_json_str(r#"{"hosts":[{"name":"web1","tags":{}}]}"#).unwrap(),
        );
        let r = engine.eval_query("data.fleet.deny".into(), false).unwrap();
        let v: Value =
            serde_json::from_str(&r.result[0].expressions[0].value.to_json_str().unwrap()).unwrap();
        assert_eq!(messages(&v), vec![("host web1 has no owner".into(), None)]);
        let r = engine.eval_query("data.fleet.warn".into(), false).unwrap();
        assert!(r.result.is_empty());
    }
}
