//! The secrets rules: plaintext, recipients, host-key, stale.

use std::collections::{BTreeSet, HashMap};

use super::repo::{normalise, Coverage, Scan, SecretsFile};
use super::{line_of, Finding, RuleId};
use crate::inventory::HostName;
use crate::secrets::rules::{self, merge_sops_yaml};
use crate::secrets::walk::plaintext_leaves;
use crate::secrets::SecretsError;

pub fn check(scan: &Scan<'_>, enabled: &dyn Fn(RuleId) -> bool, out: &mut Vec<Finding>) {
    for file in &scan.secrets {
        if enabled(RuleId::SecretsPlaintext) {
            plaintext(file, out);
        }
        if enabled(RuleId::SecretsRecipients) {
            recipients(scan, file, out);
        }
    }
    if enabled(RuleId::SecretsRecipients) {
        sops_yaml_current(scan, out);
    }
    if enabled(RuleId::SecretsHostKey) {
        host_keys(scan, out);
    }
    if enabled(RuleId::SecretsStale) {
        stale(scan, out);
    }
}

fn declared_by(file: &SecretsFile) -> &'static str {
    match file.coverage {
        Coverage::Inventory => "the inventory's secrets rules cover it",
        Coverage::SopsYaml => ".sops.yaml covers it",
    }
}

/// `secrets.plaintext`: never says what the values are, only where.
fn plaintext(file: &SecretsFile, out: &mut Vec<Finding>) {
    let rel = &file.rel;
    let encrypt_hint = format!(
        "encrypt it in place with `cairn secrets encrypt --in-place {rel}`; the plaintext stays in git history, so change the values too"
    );
    let finding = |message: String, line: Option<usize>| {
        Finding::new(RuleId::SecretsPlaintext, message)
            .file(rel.clone(), line)
            .concerns(file.readers.iter().cloned())
    };
    match &file.parsed {
        Ok(sops) => {
            let leaves = plaintext_leaves(&sops.docs, sops.metadata.rule.as_ref());
            if leaves.is_empty() {
                return;
            }
            let line = file.text.as_deref().and_then(|t| line_of_key(t, &leaves[0]));
            let shown: Vec<&str> = leaves.iter().take(5).map(String::as_str).collect();
            let more = if leaves.len() > 5 {
                format!(" and {} more", leaves.len() - 5)
            } else {
                String::new()
            };
            out.push(
                finding(
                    format!(
                        "{rel} is a sops file with {} value{} in plaintext: {}{more}",
                        leaves.len(),
                        if leaves.len() == 1 { "" } else { "s" },
                        shown.join(", ")
                    ),
                    line,
                )
                .hint(format!(
                    "open it with `cairn secrets edit {rel}` and save: every value is encrypted again (or mark values meant to stay plain with the `_unencrypted` suffix)"
                )),
            );
        }
        Err(SecretsError::MetadataNotFound { .. }) => out.push(
            finding(
                format!(
                    "{rel} is not encrypted (it has no sops metadata), but {}",
                    declared_by(file)
                ),
                // The whole file is in clear: it starts at line 1.
                Some(1),
            )
            .hint(encrypt_hint),
        ),
        Err(SecretsError::Parse { format, .. }) => {
            let what = if *format == "binary" {
                "is not encrypted (not a sops file)".to_owned()
            } else {
                format!("is not a valid sops file ({format} that does not parse)")
            };
            out.push(
                finding(format!("{rel} {what}, but {}", declared_by(file)), Some(1))
                    .hint(encrypt_hint),
            )
        }
        Err(SecretsError::Metadata { reason, .. }) => out.push(
            finding(format!("{rel} has damaged sops metadata: {reason}"), None)
                .hint("restore the file from git, or re-encrypt it from a decrypted copy"),
        ),
        Err(SecretsError::Io(e)) => {
            out.push(finding(format!("{rel} cannot be read: {e}"), None));
        }
        Err(other) => out.push(finding(format!("{rel} is not a valid sops file: {other}"), None)),
    }
}

/// The line where the key of a leaf path (`db:password`, `list[0]`) is written.
fn line_of_key(text: &str, path: &str) -> Option<usize> {
    let last = path.trim_end_matches(" (comment)").rsplit(':').next()?;
    let key = last.split('[').next().unwrap_or(last);
    if key.is_empty() {
        return None;
    }
    line_of(text, |l| {
        let t = l.trim_start().trim_start_matches("- ");
        t.starts_with(&format!("{key}:"))
            || t.starts_with(&format!("\"{key}\""))
            || t.starts_with(&format!("{key}="))
            || t.starts_with(&format!("{key} ="))
    })
}

/// `secrets.recipients`: the file's age recipients against the inventory's readers.
fn recipients(scan: &Scan<'_>, file: &SecretsFile, out: &mut Vec<Finding>) {
    let Ok(sops) = &file.parsed else { return };
    let actual: BTreeSet<String> =
        sops.metadata.recipients().map(|r| normalise(r).unwrap_or_else(|| r.to_owned())).collect();
    let expected: BTreeSet<String> = file.expected.iter().cloned().collect();
    let missing: Vec<&String> = expected.difference(&actual).collect();
    let extra: Vec<&String> = actual.difference(&expected).collect();
    if missing.is_empty() && extra.is_empty() {
        return;
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "missing {}",
            missing.iter().map(|r| scan.describe(r)).collect::<Vec<_>>().join(", ")
        ));
    }
    if !extra.is_empty() {
        parts.push(format!(
            "extra {}",
            extra.iter().map(|r| scan.describe(r)).collect::<Vec<_>>().join(", ")
        ));
    }
    let source = match file.coverage {
        Coverage::Inventory => "the inventory",
        Coverage::SopsYaml => ".sops.yaml",
    };
    let first = missing.first().or(extra.first()).map(|r| r.as_str()).unwrap_or("");
    let line = file.text.as_deref().and_then(|t| {
        line_of(t, |l| !first.is_empty() && l.contains(first))
            .or_else(|| line_of(t, |l| l.starts_with("sops")))
    });
    let mut hint = "run `cairn secrets rekey`: it encrypts the file's data key to exactly the readers the inventory gives".to_owned();
    if !extra.is_empty() {
        hint.push_str("; an extra recipient could read the current data key, so use `--rotate`, and find out who added it");
    }
    out.push(
        Finding::new(
            RuleId::SecretsRecipients,
            format!("{}: recipients differ from {source}: {}", file.rel, parts.join("; ")),
        )
        .file(file.rel.clone(), line)
        .concerns(file.readers.iter().cloned())
        .hint(hint),
    );
}

/// `.sops.yaml` as `cairn secrets rekey` would write it from the inventory.
fn sops_yaml_current(scan: &Scan<'_>, out: &mut Vec<Finding>) {
    let Some(policy) = &scan.policy else { return };
    let existing: Vec<String> =
        scan.secrets.iter().filter(|f| f.parsed.is_ok()).map(|f| f.rel.clone()).collect();
    let path = scan.root.join(rules::CONFIG_FILE_NAME);
    let hint = "run `cairn secrets rekey`: it writes .sops.yaml from cairn.hcl, so plain sops and sops-nix tooling encrypt to the same recipients";
    match fs_err::read_to_string(&path) {
        Ok(text) => {
            // What cairn did not write is the user's: only cairn's marked rules must match.
            let wanted = match merge_sops_yaml(Some(&text), &policy.rules(&existing), &path) {
                Ok(wanted) if wanted == text => return,
                Ok(wanted) => wanted,
                Err(e) => {
                    out.push(
                        Finding::new(RuleId::SecretsRecipients, format!("{e}"))
                            .file(rules::CONFIG_FILE_NAME, None)
                            .hint(hint),
                    );
                    return;
                }
            };
            let line = text
                .lines()
                .zip(wanted.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| text.lines().count().min(wanted.lines().count()))
                + 1;
            out.push(
                Finding::new(
                    RuleId::SecretsRecipients,
                    ".sops.yaml does not match the inventory's admins and secrets rules",
                )
                .file(rules::CONFIG_FILE_NAME, Some(line))
                .hint(hint),
            );
        }
        Err(_) => out.push(
            Finding::new(
                RuleId::SecretsRecipients,
                "there is no .sops.yaml, so sops would not know whom to encrypt new secrets to",
            )
            .file(rules::CONFIG_FILE_NAME, None)
            .hint(hint),
        ),
    }
}

/// `(line, recipient, host)` of every `- age1... # host NAME` line of `.sops.yaml`.
fn sops_yaml_host_lines(scan: &Scan<'_>) -> Vec<(usize, String, String)> {
    let Ok(text) = fs_err::read_to_string(scan.root.join(rules::CONFIG_FILE_NAME)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(item) = line.trim_start().strip_prefix("- ") else { continue };
        let Some((value, comment)) = item.split_once(" # host ") else { continue };
        let value = value.trim().trim_matches('"');
        out.push((i + 1, value.to_owned(), comment.trim().to_owned()));
    }
    out
}

fn key_part(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// What a host's recipient must be: the ssh-to-age of its stored public key (or, with a
/// separate age key, what state recorded).
struct HostRecipient {
    expected: Option<String>,
    pub_rel: String,
}

fn host_recipient(scan: &Scan<'_>, host: &str, out: Option<&mut Vec<Finding>>) -> HostRecipient {
    let store = scan.host_keys();
    let pub_rel = format!(
        "{}/{host}/{}",
        crate::keys::HostKeyStore::relative_dir(),
        crate::keys::store::SSH_HOST_PUBLIC_KEY_FILE
    );
    let public = store.load_public(host).ok().flatten();
    let separate = store.age_key_path(host).exists();
    let state = scan.fleet.state.hosts.get(host);
    let mut findings = Vec::new();
    if let (Some(public), Some(recorded)) =
        (&public, state.and_then(|s| s.ssh_public_key.as_deref()))
    {
        if key_part(public) != key_part(recorded) {
            findings.push(
                Finding::new(
                    RuleId::SecretsHostKey,
                    format!("{host}'s host key in {pub_rel} is not the key state records for it"),
                )
                .file(pub_rel.clone(), Some(1))
                .host(host)
                .hint("one of them was replaced outside cairn: restore the key files from git, or generate the host's keys again with bootstrap and run `cairn secrets rekey`"),
            );
        }
    }
    if let (Some(public), Some(pinned)) =
        (&public, state.and_then(|s| s.host_keys.get(&crate::state::KeyPhase::Installed)))
    {
        if !pinned.is_empty() && !pinned.iter().any(|k| key_part(k) == key_part(public)) {
            findings.push(
                Finding::new(
                    RuleId::SecretsHostKey,
                    format!("{host}'s host key in {pub_rel} is not the key pinned for the installed system"),
                )
                .file(pub_rel.clone(), Some(1))
                .host(host)
                .hint("the host would present a key cairn does not expect; restore the key files from git"),
            );
        }
    }
    let derived = if separate {
        None
    } else {
        public
            .as_deref()
            .and_then(|p| crate::keys::ssh_public_key_to_age(p).ok())
            .map(|r| r.as_str().to_owned())
    };
    if let (Some(derived), Some(recorded)) =
        (&derived, state.and_then(|s| s.age_recipient.as_deref()))
    {
        if normalise(recorded).as_deref() != Some(derived.as_str()) {
            findings.push(
                Finding::new(
                    RuleId::SecretsHostKey,
                    format!(
                        "state records {} as {host}'s age recipient, but the ssh-to-age of {pub_rel} is {}",
                        crate::keys::abbreviate(recorded),
                        crate::keys::abbreviate(derived)
                    ),
                )
                .file(pub_rel.clone(), Some(1))
                .host(host)
                .hint("the host could not decrypt its secrets; bootstrap its keys again, then run `cairn secrets rekey`"),
            );
        }
    }
    if let Some(out) = out {
        out.extend(findings);
    }
    let expected = derived.or_else(|| {
        if separate {
            state.and_then(|s| s.age_recipient.as_deref()).and_then(normalise)
        } else {
            None
        }
    });
    HostRecipient { expected, pub_rel }
}

/// `secrets.host-key`.
fn host_keys(scan: &Scan<'_>, out: &mut Vec<Finding>) {
    // Per host, its `.sops.yaml` lines (a fleet's file names every host many times).
    let mut lines: HashMap<String, Vec<(usize, String)>> = HashMap::new();
    for (line, recipient, host) in sops_yaml_host_lines(scan) {
        lines.entry(host).or_default().push((line, recipient));
    }
    for host in &scan.fleet.inventory.hosts {
        let name = host.name.as_str();
        let hr = host_recipient(scan, name, Some(out));
        let Some(expected) = hr.expected else { continue };
        for (line, recipient) in lines.get(name).into_iter().flatten() {
            if normalise(recipient).as_deref() != Some(expected.as_str()) {
                out.push(
                    Finding::new(
                        RuleId::SecretsHostKey,
                        format!(
                            ".sops.yaml gives {} as {name}'s recipient, but the ssh-to-age of {} is {}",
                            crate::keys::abbreviate(recipient),
                            hr.pub_rel,
                            crate::keys::abbreviate(&expected)
                        ),
                    )
                    .file(rules::CONFIG_FILE_NAME, Some(*line))
                    .host(name)
                    .hint("run `cairn secrets rekey`: it writes the host's real recipient into .sops.yaml and the files"),
                );
            }
        }
    }
}

/// `secrets.stale`: recipients of hosts the inventory no longer has.
fn stale(scan: &Scan<'_>, out: &mut Vec<Finding>) {
    let inv = scan.fleet.inventory;
    let hosts = inv.hosts_by_name();
    let in_inventory = |name: &str| hosts.contains_key(name);
    let mut gone: Vec<(String, String)> = Vec::new();
    for (name, st) in &scan.fleet.state.hosts {
        if in_inventory(name) {
            continue;
        }
        if let Some(r) = st.age_recipient.as_deref().and_then(normalise) {
            gone.push((name.clone(), r));
        }
        if let Some(r) =
            st.ssh_public_key.as_deref().and_then(|p| crate::keys::ssh_public_key_to_age(p).ok())
        {
            gone.push((name.clone(), r.as_str().to_owned()));
        }
    }
    let store = scan.host_keys();
    let keys_dir = scan.root.join(crate::keys::HostKeyStore::relative_dir());
    if let Ok(entries) = fs_err::read_dir(&keys_dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if in_inventory(&name) || HostName::new(name.clone()).is_err() {
                continue;
            }
            if let Some(r) = store
                .load_public(&name)
                .ok()
                .flatten()
                .and_then(|p| crate::keys::ssh_public_key_to_age(&p).ok())
            {
                gone.push((name, r.as_str().to_owned()));
            }
        }
    }
    gone.sort();
    gone.dedup();
    let hint = |host: &str| {
        format!("run `cairn secrets rekey --rotate` (the host could read the current data keys), then delete secrets/hosts/{host}/")
    };
    for file in &scan.secrets {
        let Ok(sops) = &file.parsed else { continue };
        let actual: BTreeSet<String> = sops.metadata.recipients().filter_map(normalise).collect();
        let mut named = BTreeSet::new();
        for (host, r) in &gone {
            if actual.contains(r) && named.insert(host.clone()) {
                out.push(
                    Finding::new(
                        RuleId::SecretsStale,
                        format!(
                            "host {host} is no longer in the inventory but can still decrypt {}",
                            file.rel
                        ),
                    )
                    .file(file.rel.clone(), None)
                    .host(host.clone())
                    .hint(hint(host)),
                );
            }
        }
    }
    for (line, _, host) in sops_yaml_host_lines(scan) {
        if !in_inventory(&host) {
            out.push(
                Finding::new(
                    RuleId::SecretsStale,
                    format!(".sops.yaml still encrypts to host {host}, which is no longer in the inventory"),
                )
                .file(rules::CONFIG_FILE_NAME, Some(line))
                .host(host.clone())
                .hint(hint(&host)),
            );
        }
    }
}
