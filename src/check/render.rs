//! A report as the user reads it: rustc-style text, JSON, SARIF 2.1.0.

use std::fmt::Write as _;

use owo_colors::OwoColorize;
use serde_json::{json, Value};

use super::{Finding, Report, RuleId, Severity};

/// rustc-style diagnostics, then the skipped rules and a summary line.
pub fn text(report: &Report, color: bool) -> String {
    let mut out = String::new();
    for f in &report.findings {
        finding(&mut out, f, color);
        out.push('\n');
    }
    for s in &report.skipped {
        let head = if color { "skipped".cyan().bold().to_string() } else { "skipped".into() };
        let _ = writeln!(out, "{head}[{}]: {}", s.rule, s.reason);
    }
    if !report.skipped.is_empty() {
        out.push('\n');
    }
    let (e, w) = (report.errors(), report.warnings());
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let _ = writeln!(
        out,
        "check: {}, {}, {} skipped",
        plural(e, "error"),
        plural(w, "warning"),
        report.skipped.len()
    );
    out
}

fn finding(out: &mut String, f: &Finding, color: bool) {
    let label = match (f.severity, color) {
        (Severity::Error, true) => "error".red().bold().to_string(),
        (Severity::Warning, true) => "warning".yellow().bold().to_string(),
        (s, false) => s.as_str().to_owned(),
    };
    let _ = writeln!(out, "{label}[{}]: {}", f.rule, f.message);
    let arrow = if color { "-->".blue().bold().to_string() } else { "-->".into() };
    match (&f.file, f.line) {
        (Some(file), Some(line)) => {
            let _ = writeln!(out, "  {arrow} {file}:{line}");
        }
        (Some(file), None) => {
            let _ = writeln!(out, "  {arrow} {file}");
        }
        _ => {}
    }
    if let Some(host) = &f.host {
        let _ = writeln!(out, "   = host: {host}");
    }
    if let Some(hint) = &f.hint {
        let _ = writeln!(out, "   = hint: {hint}");
    }
}

/// One line per finding, for the gate's error.
pub fn plain_list(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            let at = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!(" ({file}:{line})"),
                (Some(file), None) => format!(" ({file})"),
                _ => String::new(),
            };
            format!("[{}] {}{at}", f.rule, f.message)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `{ "findings": [...], "skipped": [...] }`.
pub fn json(report: &Report) -> Value {
    json!({ "findings": report.findings, "skipped": report.skipped })
}

/// SARIF 2.1.0, one run, the built-in rules described in the tool's driver.
pub fn sarif(report: &Report) -> Value {
    let level = |s: Severity| match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut rules: Vec<Value> = RuleId::ALL
        .iter()
        .filter(|r| **r != RuleId::Policies)
        .map(|r| {
            json!({
                "id": r.as_str(),
                "shortDescription": { "text": r.summary() },
                "defaultConfiguration": { "level": level(r.severity()) },
            })
        })
        .collect();
    let mut policy_ids: Vec<&str> = report
        .findings
        .iter()
        .map(|f| f.rule.as_str())
        .filter(|r| r.starts_with("policy."))
        .collect();
    policy_ids.sort();
    policy_ids.dedup();
    for id in &policy_ids {
        rules.push(json!({
            "id": id,
            "shortDescription": { "text": format!("Rego policy {}", id.trim_start_matches("policy.")) },
        }));
    }
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let mut text = f.message.clone();
            if let Some(h) = &f.hint {
                text.push_str("\nhint: ");
                text.push_str(h);
            }
            let mut result = json!({
                "ruleId": f.rule,
                "level": level(f.severity),
                "message": { "text": text },
            });
            if let Some(file) = &f.file {
                let mut physical =
                    json!({ "artifactLocation": { "uri": file, "uriBaseId": "SRCROOT" } });
                if let Some(line) = f.line {
                    physical["region"] = json!({ "startLine": line });
                }
                result["locations"] = json!([{ "physicalLocation": physical }]);
            }
            if let Some(host) = &f.host {
                result["properties"] = json!({ "host": host });
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "cairn",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
            "invocations": [{
                "executionSuccessful": true,
                "toolExecutionNotifications": report.skipped.iter().map(|s| json!({
                    "level": "note",
                    "message": { "text": format!("{} skipped: {}", s.rule, s.reason) },
                })).collect::<Vec<_>>(),
            }],
        }],
    })
}
