//! `extra_files`, `extra_file "PATH" { ... }` and `disk_encryption_key "PATH" { ... }` of a
//! host or `defaults`: what the bootstrap seeds besides the host's keys. Every path is checked
//! here, at its file:line:col, so none reaches a remote command with `..` or shell syntax.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use hcl::Value;
use hcl_edit::structure::{Attribute, Block, Body};
use hcl_edit::Span;

use super::Resolver;
use crate::inventory::diag::ProblemBuilder;
use crate::inventory::eval::{check_attributes, single_label, type_name};
use crate::inventory::forms::{REMOTE_FILE, REPO_PATH};
use crate::inventory::model::*;

/// Files the keys phase writes itself: an `extra_file` there would replace the key cairn
/// verifies the installed system by.
const SEEDED_BY_CAIRN: &[&str] = &[
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_ed25519_key.pub",
    "/var/lib/sops-nix/key.txt",
    "/root/.ssh/authorized_keys",
];

/// The installed system's root on the installer: a disk key under it would be on the disk.
const TARGET_ROOT: &str = "/mnt";

impl Resolver<'_> {
    /// The host's seed: `extra_files` (the host's, else the defaults'), and the blocks of
    /// the defaults and the host, the host's winning where both name a path.
    pub(super) fn host_seed(&mut self, body: &Body, defaults: Option<&Body>) -> Option<Seed> {
        let mut ok = true;
        let mut seed = Seed::default();
        let dir =
            body.get_attribute("extra_files").or_else(|| defaults?.get_attribute("extra_files"));
        if let Some(attr) = dir {
            match self.string_of(attr, &REPO_PATH) {
                Some(s) => seed.extra_files = Some(PathBuf::from(s)),
                None => ok = false,
            }
        }
        let mut files = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for b in [defaults, Some(body)].into_iter().flatten() {
            let mut here: BTreeMap<String, Option<Range<usize>>> = BTreeMap::new();
            for block in b
                .blocks()
                .filter(|x| matches!(x.ident.as_str(), "extra_file" | "disk_encryption_key"))
            {
                let kind = block.ident.as_str();
                let Some((path, span)) = self.seed_path(block, kind, &mut here) else {
                    ok = false;
                    continue;
                };
                if kind == "extra_file" {
                    match self.extra_file(block, path.clone(), span) {
                        Some(f) => files.insert(path, f),
                        None => {
                            ok = false;
                            continue;
                        }
                    };
                } else {
                    match self.disk_key(block, path.clone(), span) {
                        Some(k) => keys.insert(path, k),
                        None => {
                            ok = false;
                            continue;
                        }
                    };
                }
            }
        }
        seed.files = files.into_values().collect();
        seed.disk_keys = keys.into_values().collect();
        ok.then_some(seed)
    }

    /// The block's label, a remote file path, unique among this body's blocks of the kind.
    fn seed_path(
        &mut self,
        block: &Block,
        kind: &str,
        here: &mut BTreeMap<String, Option<Range<usize>>>,
    ) -> Option<(String, Option<Range<usize>>)> {
        let example =
            if kind == "extra_file" { "/etc/wireguard/wg0.key" } else { "/tmp/secret.key" };
        let (path, span) = single_label(self.diags, block, kind, example)?;
        if !(REMOTE_FILE.check)(&path) {
            self.diags.push(
                ProblemBuilder::new(format!(
                    "`{kind}` \"{path}\" is not a valid {}",
                    REMOTE_FILE.what
                ))
                .at(span, "not a remote file path")
                .help(format!("use {}", REMOTE_FILE.allowed)),
            );
            return None;
        }
        let key = format!("{kind} {path}");
        if let Some(first) = here.get(&key) {
            self.diags.push(
                ProblemBuilder::new(format!("`{kind} \"{path}\"` is declared twice"))
                    .at(span, "declared again here")
                    .also(first.clone(), "first declared here")
                    .help("keep one of them"),
            );
            return None;
        }
        here.insert(key, span.clone());
        Some((path, span))
    }

    fn extra_file(
        &mut self,
        block: &Block,
        path: String,
        span: Option<Range<usize>>,
    ) -> Option<SeedFile> {
        let kind = "extra_file";
        check_attributes(
            self.diags,
            &block.body,
            kind,
            &["file", "sops", "key", "mode", "owner", "group"],
            &[],
        );
        if SEEDED_BY_CAIRN.contains(&path.as_str()) {
            self.diags.push(
                ProblemBuilder::new(format!("cairn seeds {path} itself"))
                    .at(span, "written by the keys phase")
                    .help("the host's SSH host key, age key and root's authorized_keys are the ones cairn generates and verifies; choose another path"),
            );
            return None;
        }
        let mut ok = true;
        let source = self.seed_source(block, kind, span);
        ok &= source.is_some();
        let mode = match block.body.get_attribute("mode") {
            Some(a) => self.file_mode(a),
            None => Some(0o400),
        };
        ok &= mode.is_some();
        let mut id = |key: &str, names: &[&str]| match block.body.get_attribute(key) {
            Some(a) => self.numeric_id(a, names),
            None => Some(0),
        };
        let uid = id("owner", &["root"]);
        let gid = id("group", &["root"]);
        ok &= uid.is_some() && gid.is_some();
        if !ok {
            return None;
        }
        Some(SeedFile { path, source: source?, mode: mode?, uid: uid?, gid: gid? })
    }

    fn disk_key(
        &mut self,
        block: &Block,
        path: String,
        span: Option<Range<usize>>,
    ) -> Option<DiskKey> {
        let kind = "disk_encryption_key";
        check_attributes(self.diags, &block.body, kind, &["file", "sops", "key"], &[]);
        if path == TARGET_ROOT || path.starts_with(&format!("{TARGET_ROOT}/")) {
            self.diags.push(
                ProblemBuilder::new(format!("a disk encryption key at {path} would be written to the target's disk"))
                    .at(span, "under the installed system's root")
                    .help("put it in the installer's RAM, e.g. `disk_encryption_key \"/tmp/secret.key\"`, and point the layout's key file there"),
            );
            return None;
        }
        let source = self.seed_source(block, kind, span)?;
        Some(DiskKey { path, source })
    }

    /// `file = "..."` or `sops = "..."` (with an optional `key`), exactly one.
    fn seed_source(
        &mut self,
        block: &Block,
        kind: &str,
        span: Option<Range<usize>>,
    ) -> Option<SeedSource> {
        let file = block.body.get_attribute("file");
        let sops = block.body.get_attribute("sops");
        let key = block.body.get_attribute("key");
        let (attr, is_sops) = match (file, sops) {
            (Some(f), Some(s)) => {
                self.diags.push(
                    ProblemBuilder::new(format!("this `{kind}` has both `file` and `sops`"))
                        .at(s.key.span(), "the second source")
                        .also(f.key.span(), "the first")
                        .help("keep `file` for a plain file of the repository, or `sops` for one cairn decrypts"),
                );
                return None;
            }
            (Some(f), None) => (f, false),
            (None, Some(s)) => (s, true),
            (None, None) => {
                self.diags.push(
                    ProblemBuilder::new(format!("this `{kind}` says nowhere where its content comes from"))
                        .at(span, "missing `file` or `sops`")
                        .help("add `sops = \"secrets/x.yaml\"` (decrypted in memory) or `file = \"path/in/repo\"`"),
                );
                return None;
            }
        };
        // A plain file may also live outside the repository (a key kept apart from Git);
        // a sops file is the repository's.
        let path = match self.string(attr)? {
            s if !is_sops && s.starts_with('/') && !s.split('/').any(|c| c == "..") => {
                PathBuf::from(s)
            }
            _ => PathBuf::from(self.string_of(attr, &REPO_PATH)?),
        };
        let key = match key {
            Some(k) if !is_sops => {
                self.diags.push(
                    ProblemBuilder::new("`key` picks a value of a sops file")
                        .at(k.key.span(), "only with `sops`")
                        .help("remove `key`, or decrypt a sops file with `sops = \"...\"`"),
                );
                return None;
            }
            Some(k) => self.sops_key(k)?,
            None => Vec::new(),
        };
        Some(if is_sops { SeedSource::Sops { path, key } } else { SeedSource::File { path } })
    }

    /// `key = "wg0"` or `key = ["wireguard", "wg0"]`: the path of a value in the document.
    fn sops_key(&mut self, attr: &Attribute) -> Option<Vec<String>> {
        let steps = match self.value(attr)? {
            Value::String(s) => vec![s],
            Value::Array(items) => {
                let mut out = Vec::new();
                for i in items {
                    match i {
                        Value::String(s) => out.push(s),
                        other => {
                            self.wrong_type(&attr.value, "a string", &other);
                            return None;
                        }
                    }
                }
                out
            }
            other => {
                self.wrong_type(&attr.value, "a string or a list of strings", &other);
                return None;
            }
        };
        let plain = |s: &String| {
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        };
        if steps.is_empty() || !steps.iter().all(plain) {
            self.diags.push(
                ProblemBuilder::new("`key` is not a path of keys")
                    .at(attr.value.span(), "not a key path")
                    .help("name the value by its keys, each made of letters, digits and `_ . -`: `key = \"wg0\"` or `key = [\"wireguard\", \"wg0\"]`"),
            );
            return None;
        }
        Some(steps)
    }

    /// `mode = "0400"`: an octal string (an HCL number would be read as decimal).
    fn file_mode(&mut self, attr: &Attribute) -> Option<u32> {
        let value = self.value(attr)?;
        let parsed = match &value {
            Value::String(s) if (3..=4).contains(&s.len()) => u32::from_str_radix(s, 8).ok(),
            Value::String(_) => None,
            other => {
                self.diags.push(
                    ProblemBuilder::new(format!(
                        "expected an octal mode in quotes, got {}",
                        type_name(other)
                    ))
                    .at(
                        attr.value.span(),
                        if matches!(other, Value::Number(_)) {
                            "HCL reads this number as decimal".to_owned()
                        } else {
                            format!("this is {}", type_name(other))
                        },
                    )
                    .help("write the octal digits in quotes, like `mode = \"0400\"`"),
                );
                return None;
            }
        };
        match parsed {
            Some(m) if m <= 0o7777 => Some(m),
            _ => {
                self.diags.push(
                    ProblemBuilder::new("`mode` is not a file mode")
                        .at(attr.value.span(), "not an octal mode")
                        .help("write three or four octal digits, like \"0400\" or \"0640\""),
                );
                None
            }
        }
    }

    /// `owner`/`group`: `root`, or a number (the installed system's users and groups do not
    /// exist on the installer, so other names cannot be resolved when the file is written).
    fn numeric_id(&mut self, attr: &Attribute, names: &[&str]) -> Option<u32> {
        let value = self.value(attr)?;
        let parsed = match &value {
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) if names.contains(&s.as_str()) => Some(0),
            Value::String(s) => s.parse::<u32>().ok(),
            other => {
                self.wrong_type(&attr.value, "a string", other);
                return None;
            }
        };
        if parsed.is_none() {
            let key = attr.key.as_str();
            self.diags.push(
                ProblemBuilder::new(format!("`{key}` must be \"root\" or a numeric id"))
                    .at(attr.value.span(), "not root or a number")
                    .help(format!("the installed system's users and groups are made on its first boot, after cairn writes the file: give the id it will have (`users.users.<name>.uid` / `users.groups.<name>.gid`), e.g. `{key} = 997`")),
            );
        }
        parsed
    }
}
