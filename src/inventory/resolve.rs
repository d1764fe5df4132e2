//! The boundary: the hcl-edit syntax tree (with spans) becomes the validated [`Inventory`].
//! Every check reports into [`Diagnostics`] and carries on, so one run shows every mistake.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

use hcl::Value;
use hcl_edit::expr::Expression as Expr;
use hcl_edit::structure::{Attribute, Block, Body};
use hcl_edit::Span;

use super::diag::{closest, suggest, Diagnostics, ProblemBuilder};
use super::eval::{check_attributes, check_attributes_with, single_label, type_name, Evaluator};
use super::model::*;

mod gitops;

const TOP_BLOCKS: &[&str] = &[
    "provider",
    "defaults",
    "host",
    "disk_layout",
    "admin",
    "secrets",
    "state",
    "variable",
    "locals",
    "gitops",
    "ring",
];

const HOST_ATTRS: &[&str] = &[
    "provider",
    "flake",
    "size",
    "server_type",
    "instance_type",
    "image",
    "location",
    "tags",
    "disk_layout",
    "secrets",
    "address",
    "installer",
    "installer_sha256",
    "installer_sha512",
    "installer_min_memory",
    "image_sha256",
    "image_sha512",
    "age_key",
    "disko",
    "disk_by_id",
    "copy",
    "memory",
    "cpus",
    "disk_size",
];
const HOST_BLOCKS: &[&str] = &["ssh", "health_check", "timeouts"];
/// Blocks every provider type takes.
const PROVIDER_BLOCKS: &[&str] = &["timeouts"];
const SIZE_ALIASES: &[&str] = &["size", "server_type", "instance_type"];

/// Settings every provider type takes: the kexec installer its machines use.
const COMMON_PROVIDER_ATTRS: &[&str] =
    &["installer", "installer_sha256", "installer_sha512", "installer_min_memory", "copy"];

fn provider_attrs(kind: ProviderKind) -> &'static [&'static str] {
    match kind {
        ProviderKind::Qemu => &[
            "accel",
            "cache_dir",
            "image",
            "image_sha256",
            "image_sha512",
            "memory",
            "cpus",
            "disk_size",
            "installer",
            "installer_sha256",
            "installer_sha512",
            "installer_min_memory",
            "copy",
        ],
        ProviderKind::Hcloud => &[
            "token",
            "endpoint",
            "location",
            "ssh_key_name",
            "installer",
            "installer_sha256",
            "installer_sha512",
            "installer_min_memory",
            "copy",
        ],
        ProviderKind::Aws => &[
            "region",
            "access_key_id",
            "secret_access_key",
            "session_token",
            "endpoint",
            "ami",
            "subnet_id",
            "key_name",
            "security_group",
            "installer",
            "installer_sha256",
            "installer_sha512",
            "installer_min_memory",
            "copy",
        ],
        ProviderKind::Existing => COMMON_PROVIDER_ATTRS,
    }
}

/// `NAME` when `expr` is `env("NAME")` or `env("NAME", default)`.
fn env_var_name(expr: &Expr) -> Option<String> {
    let Expr::FuncCall(call) = expr else { return None };
    if !call.name.namespace.is_empty() || call.name.name.as_str() != "env" {
        return None;
    }
    match call.args.iter().next()? {
        Expr::String(s) => Some(s.value().to_string()),
        _ => None,
    }
}

/// A block label and where it is.
type Label = (String, Option<Range<usize>>);

pub(crate) struct Resolver<'a> {
    diags: &'a mut Diagnostics,
    ev: &'a Evaluator,
    /// Things declared with a valid name whose definition has problems (already reported),
    /// as "kind:name": references to them are not reported again as "not declared".
    broken: BTreeSet<String>,
}

impl<'a> Resolver<'a> {
    pub fn new(diags: &'a mut Diagnostics, ev: &'a Evaluator) -> Self {
        Self { diags, ev, broken: BTreeSet::new() }
    }

    fn span(&self, range: Option<Range<usize>>) -> SourceSpan {
        self.diags.source().model_span(&range.unwrap_or(0..0))
    }

    fn value(&mut self, attr: &Attribute) -> Option<Value> {
        self.ev.eval(self.diags, &attr.value)
    }

    fn wrong_type(&mut self, expr: &Expr, expected: &str, got: &Value) {
        let help = match got {
            Value::Number(_) | Value::Bool(_) if expected == "a string" => {
                format!("quote it: `\"{got}\"`")
            }
            Value::String(_) if expected == "a list of strings" => {
                "put it in brackets: `[\"...\"]`".to_owned()
            }
            Value::String(s) if expected == "a number" && s.trim().parse::<u64>().is_ok() => {
                format!("numbers are written without quotes: `{}`", s.trim())
            }
            _ if expected == "a number" => "write a whole number, e.g. `2`".to_owned(),
            _ if expected.starts_with("a size") => {
                "write a size with a unit, like \"512M\" or \"4G\" (or a whole number of MiB)"
                    .to_owned()
            }
            _ => format!("give {expected} here"),
        };
        self.diags.push(
            ProblemBuilder::new(format!("expected {expected}, got {}", type_name(got)))
                .at(expr.span(), format!("this is {}", type_name(got)))
                .help(help),
        );
    }

    fn string(&mut self, attr: &Attribute) -> Option<String> {
        match self.value(attr)? {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(&attr.value, "a string", &other);
                None
            }
        }
    }

    fn boolean(&mut self, attr: &Attribute) -> Option<bool> {
        match self.value(attr)? {
            Value::Bool(b) => Some(b),
            other => {
                self.wrong_type(&attr.value, "true or false", &other);
                None
            }
        }
    }

    fn sensitive(&mut self, attr: &Attribute) -> Option<Sensitive> {
        match self.value(attr)? {
            Value::String(s) => Some(Sensitive(s)),
            // Name only the type: the value is a credential.
            other => {
                self.diags.push(
                    ProblemBuilder::new(format!("expected a string, got {}", type_name(&other)))
                        .at(attr.value.span(), format!("this is {}", type_name(&other)))
                        .help("credentials are strings; read them with `env(\"NAME\")`"),
                );
                None
            }
        }
    }

    /// A string that must be one of `allowed`.
    fn one_of(&mut self, attr: &Attribute, allowed: &[&str]) -> Option<String> {
        let s = self.string(attr)?;
        if allowed.contains(&s.as_str()) {
            return Some(s);
        }
        let list: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
        let help = match closest(&s, allowed.iter().copied()) {
            Some(c) => format!("did you mean \"{c}\"? allowed: {}", list.join(", ")),
            None => format!("allowed: {}", list.join(", ")),
        };
        self.diags.push(
            ProblemBuilder::new(format!(
                "`{}` must be one of {}",
                attr.key.as_str(),
                list.join(", ")
            ))
            .at(attr.value.span(), "not an allowed value")
            .help(help),
        );
        None
    }

    /// A list of strings; each element's span where the list is written literally.
    fn strings(&mut self, attr: &Attribute) -> Option<Vec<(String, Option<Range<usize>>)>> {
        let value = self.value(attr)?;
        let Value::Array(items) = value else {
            self.wrong_type(&attr.value, "a list of strings", &value);
            return None;
        };
        let literal: Option<Vec<&Expr>> = match &attr.value {
            Expr::Array(a) if a.len() == items.len() => Some(a.iter().collect()),
            _ => None,
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            let span = literal.as_ref().and_then(|l| l[i].span()).or(attr.value.span());
            match item {
                Value::String(s) => out.push((s, span)),
                other => {
                    ok = false;
                    let e = literal.as_ref().map_or(&attr.value, |l| l[i]);
                    self.wrong_type(e, "a string", &other);
                }
            }
        }
        ok.then_some(out)
    }

    fn integer(&mut self, attr: &Attribute, min: u64, max: u64) -> Option<u64> {
        let value = self.value(attr)?;
        match value.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) | None if matches!(value, Value::Number(_)) => {
                self.diags.push(
                    ProblemBuilder::new(format!(
                        "`{}` must be a whole number from {min} to {max}",
                        attr.key.as_str()
                    ))
                    .at(attr.value.span(), "out of range")
                    .help(format!("use a value between {min} and {max}")),
                );
                None
            }
            _ => {
                self.wrong_type(&attr.value, "a number", &value);
                None
            }
        }
    }

    /// `memory`/`disk_size`: a whole number of MiB, or a string with a unit ("2G", "512M").
    fn mib(&mut self, attr: &Attribute) -> Option<u64> {
        let value = self.value(attr)?;
        let parsed = match &value {
            Value::Number(n) => n.as_u64().filter(|n| *n > 0).ok_or(()),
            Value::String(s) => parse_size(s).and_then(|s| match s {
                PartitionSize::Mib(m) => Ok(m),
                PartitionSize::Rest => Err(()),
            }),
            _ => {
                self.wrong_type(&attr.value, "a size like \"2G\"", &value);
                return None;
            }
        };
        match parsed {
            Ok(m) => Some(m),
            Err(()) => {
                self.diags.push(
                    ProblemBuilder::new(format!("`{}` is not a valid size", attr.key.as_str()))
                        .at(attr.value.span(), "expected a size")
                        .help("write a size with a unit, like \"512M\", \"4G\" or \"1T\" (or a whole number of MiB)"),
                );
                None
            }
        }
    }

    /// Checks a block's label count for blocks with two labels (`provider "type" "name"`).
    fn provider_labels(&mut self, block: &Block) -> Option<(Label, Label)> {
        match block.labels.as_slice() {
            [kind, name] => Some((
                (kind.as_str().to_owned(), kind.span()),
                (name.as_str().to_owned(), name.span()),
            )),
            [kind] => {
                self.diags.push(
                    ProblemBuilder::new("a `provider` block needs a type and a name")
                        .at(kind.span(), "only one label")
                        .help(format!("write `provider \"{}\" \"NAME\" {{ ... }}`", kind.as_str())),
                );
                None
            }
            _ => {
                let span = block.labels.first().and_then(|l| l.span()).or(block.ident.span());
                self.diags.push(
                    ProblemBuilder::new("a `provider` block needs a type and a name")
                        .at(span, "expected two labels")
                        .help("write `provider \"hcloud\" \"main\" { ... }` (types: qemu, hcloud, aws, existing)"),
                );
                None
            }
        }
    }

    fn duplicate(
        &mut self,
        what: &str,
        name: &str,
        again: Option<Range<usize>>,
        first: Option<Range<usize>>,
    ) {
        self.diags.push(
            ProblemBuilder::new(format!("{what} `{name}` is defined twice"))
                .at(again, "defined again here")
                .also(first, "first defined here")
                .help(format!("{what} names must be unique: rename or remove one of them")),
        );
    }

    fn name<T>(
        &mut self,
        make: fn(String) -> Result<T, InvalidName>,
        value: &str,
        span: Option<Range<usize>>,
        what: &str,
    ) -> Option<T> {
        match make(value.to_owned()) {
            Ok(n) => Some(n),
            Err(_) => {
                self.diags.push(
                    ProblemBuilder::new(format!("`{value}` is not a valid {what}"))
                        .at(span, "invalid name")
                        .help("use letters, digits, `-` and `_` (at most 63), starting with a letter or digit"),
                );
                None
            }
        }
    }

    pub fn resolve(&mut self, body: &Body, path: PathBuf, root: PathBuf) -> Inventory {
        for attr in body.attributes() {
            let key = attr.key.as_str();
            let help = match closest(key, TOP_BLOCKS.iter().copied()) {
                Some(c) => {
                    format!("top-level settings live in blocks: did you mean `{c} {{ ... }}`?")
                }
                None => "put it inside a block (`defaults`, `host`, `locals`...)".to_owned(),
            };
            self.diags.push(
                ProblemBuilder::new(format!("unexpected attribute `{key}` at the top level"))
                    .at(attr.key.span(), "not allowed here")
                    .help(help),
            );
        }
        for block in body.blocks() {
            let ident = block.ident.as_str();
            if !TOP_BLOCKS.contains(&ident) {
                self.diags.push(
                    ProblemBuilder::new(format!("unknown block `{ident}`"))
                        .at(block.ident.span(), "not a cairn block")
                        .help(suggest(ident, TOP_BLOCKS.iter().copied(), "blocks")),
                );
            }
        }

        let providers = self.providers(body);
        let disk_layouts = self.disk_layouts(body);
        let admins = self.admins(body);
        let hosts = self.hosts(body, &providers, &disk_layouts);
        let secrets = self.secrets_rules(body, &hosts);
        let state = self.state(body);
        let (gitops, token_site) = self.gitops(body, &root);
        let gitops_declared = body.get_blocks("gitops").next().is_some();
        let rings = self.rings(body, &hosts, gitops.as_ref(), gitops_declared);
        let inventory = Inventory {
            path,
            root,
            providers: providers.into_iter().map(|(k, (p, _))| (k, p)).collect(),
            hosts,
            disk_layouts: disk_layouts.into_iter().map(|(k, (d, _))| (k, d)).collect(),
            admins,
            secrets,
            state,
            gitops,
            rings,
        };
        if let Some(site) = token_site {
            self.check_token_readers(&inventory, &site);
        }
        inventory
    }

    fn providers(
        &mut self,
        body: &Body,
    ) -> BTreeMap<ProviderName, (Provider, Option<Range<usize>>)> {
        let mut out: BTreeMap<ProviderName, (Provider, Option<Range<usize>>)> = BTreeMap::new();
        for block in body.get_blocks("provider") {
            let Some(((kind_s, kind_span), (name_s, name_span))) = self.provider_labels(block)
            else {
                // Its name is unknown: hosts without `provider` cannot tell which was meant.
                self.broken.insert("provider:".to_owned());
                continue;
            };
            let kind = ProviderKind::ALL.into_iter().find(|k| k.as_str() == kind_s);
            let Some(kind) = kind else {
                self.broken.insert(format!("provider:{name_s}"));
                self.diags.push(
                    ProblemBuilder::new(format!("unknown provider type `{kind_s}`"))
                        .at(kind_span, "not a provider type")
                        .help(suggest(
                            &kind_s,
                            ProviderKind::ALL.map(|k| k.as_str()),
                            "provider types",
                        )),
                );
                continue;
            };
            let Some(name) =
                self.name(ProviderName::new, &name_s, name_span.clone(), "provider name")
            else {
                self.broken.insert(format!("provider:{name_s}"));
                continue;
            };
            if let Some((_, first)) = out.get(&name) {
                let first = first.clone();
                self.duplicate("provider", &name_s, name_span, first);
                continue;
            }
            let allowed = provider_attrs(kind);
            let other_kind = |key: &str| {
                let owner =
                    ProviderKind::ALL.into_iter().find(|k| provider_attrs(*k).contains(&key))?;
                let list: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
                Some(if list.is_empty() {
                    format!("`{key}` is a setting of `{owner}` providers; `{kind}` takes none")
                } else {
                    format!(
                        "`{key}` is a setting of `{owner}` providers; `{kind}` takes {}",
                        list.join(", ")
                    )
                })
            };
            check_attributes_with(
                self.diags,
                &block.body,
                &format!("provider \"{kind}\""),
                allowed,
                PROVIDER_BLOCKS,
                |key| {
                    closest(key, allowed.iter().copied())
                        .is_none()
                        .then(|| other_kind(key))
                        .flatten()
                },
            );
            let mut install = InstallSettings::default();
            let mut settings = match kind {
                ProviderKind::Qemu => ProviderSettings::Qemu(QemuSettings::default()),
                ProviderKind::Hcloud => ProviderSettings::Hcloud(HcloudSettings::default()),
                ProviderKind::Aws => ProviderSettings::Aws(AwsSettings::default()),
                ProviderKind::Existing => ProviderSettings::Existing(ExistingSettings::default()),
            };
            for attr in block.body.attributes() {
                let key = attr.key.as_str();
                if !allowed.contains(&key) {
                    continue;
                }
                if COMMON_PROVIDER_ATTRS.contains(&key) {
                    self.install_setting(&mut install, attr);
                    continue;
                }
                match &mut settings {
                    ProviderSettings::Qemu(s) => self.qemu_setting(s, attr),
                    ProviderSettings::Hcloud(s) => self.hcloud_setting(s, attr),
                    ProviderSettings::Aws(s) => self.aws_setting(s, attr),
                    ProviderSettings::Existing(_) => {}
                }
            }
            // Problems are reported; a broken block counts as empty so hosts still resolve.
            let timeouts =
                self.timeouts_of(&block.body, &format!("provider `{name}`")).unwrap_or_default();
            let span = self.span(name_span.clone());
            out.insert(
                name.clone(),
                (Provider { name, kind, settings, install, timeouts, span }, name_span),
            );
        }
        out
    }

    /// `installer`, `installer_min_memory` or `copy`, on a provider, a host or `defaults`.
    fn install_setting(&mut self, install: &mut InstallSettings, attr: &Attribute) -> bool {
        match attr.key.as_str() {
            "installer" => keep(&mut install.installer, self.string(attr)),
            "installer_sha256" | "installer_sha512" => {
                self.checksum(&mut install.installer_checksum, attr)
            }
            "installer_min_memory" => keep(&mut install.installer_min_memory, self.mib(attr)),
            "copy" => keep(&mut install.copy, self.copy_strategy(attr)),
            "disk_by_id" => keep(&mut install.disk_by_id, self.string(attr)),
            "age_key" => self.boolean(attr).map(|b| install.age_key = b).is_some(),
            "disko" => self.boolean(attr).map(|b| install.disko = b).is_some(),
            _ => unreachable!("not an install setting: {}", attr.key.as_str()),
        }
    }

    /// `memory`, `cpus` or `disk_size` of a qemu VM, on a host or its provider.
    fn vm_setting(&mut self, vm: &mut VmSettings, attr: &Attribute) -> bool {
        match attr.key.as_str() {
            "memory" => keep(&mut vm.memory_mib, self.mib(attr)),
            "disk_size" => keep(&mut vm.disk_size_mib, self.mib(attr)),
            "cpus" => keep(
                &mut vm.cpus,
                self.integer(attr, 1, 1024).map(|n| u32::try_from(n).expect("at most 1024")),
            ),
            _ => unreachable!("not a VM setting: {}", attr.key.as_str()),
        }
    }

    /// `*_sha256` / `*_sha512`: a pinned checksum, hex digits of the algorithm's length; only
    /// one of the two per setting.
    fn checksum(&mut self, slot: &mut Option<Checksum>, attr: &Attribute) -> bool {
        let Some(s) = self.string(attr) else { return false };
        let key = attr.key.as_str();
        let setting = key.trim_end_matches("_sha256").trim_end_matches("_sha512");
        if slot.is_some() {
            self.diags.push(
                ProblemBuilder::new(format!(
                    "both `{setting}_sha256` and `{setting}_sha512` are set"
                ))
                .at(attr.value.span(), "the second sum")
                .help(format!("pin `{setting}` with one of them")),
            );
            return false;
        }
        let parsed =
            if key.ends_with("_sha512") { Checksum::sha512(&s) } else { Checksum::sha256(&s) };
        match parsed {
            Ok(sum) => keep(slot, Some(sum)),
            Err(e) => {
                self.diags.push(
                    ProblemBuilder::new(format!("`{key}`: {e}"))
                        .at(attr.value.span(), "not a checksum")
                        .help(
                            "copy the sum from the checksum file the project publishes next to \
                             the download",
                        ),
                );
                false
            }
        }
    }

    fn copy_strategy(&mut self, attr: &Attribute) -> Option<CopyStrategy> {
        let names = CopyStrategy::ALL.map(CopyStrategy::as_str);
        self.one_of(attr, &names)?.parse().ok()
    }

    fn qemu_setting(&mut self, s: &mut QemuSettings, attr: &Attribute) {
        match attr.key.as_str() {
            "accel" => {
                let names = QemuAccel::ALL.map(QemuAccel::as_str);
                if let Some(a) = self.one_of(attr, &names) {
                    s.accel = QemuAccel::ALL.into_iter().find(|k| k.as_str() == a).expect("listed");
                }
            }
            "cache_dir" => {
                keep(&mut s.cache_dir, self.string(attr));
            }
            "image" => {
                keep(&mut s.image, self.string(attr));
            }
            "image_sha256" | "image_sha512" => {
                self.checksum(&mut s.image_checksum, attr);
            }
            _ => {
                self.vm_setting(&mut s.vm, attr);
            }
        }
    }

    fn hcloud_setting(&mut self, s: &mut HcloudSettings, attr: &Attribute) {
        if attr.key.as_str() == "token" {
            keep(&mut s.token, self.sensitive(attr));
            return;
        }
        let slot = match attr.key.as_str() {
            "endpoint" => &mut s.endpoint,
            "location" => &mut s.location,
            _ => &mut s.ssh_key_name,
        };
        keep(slot, self.string(attr));
    }

    fn aws_setting(&mut self, s: &mut AwsSettings, attr: &Attribute) {
        let env_var = env_var_name(&attr.value);
        let slot = match attr.key.as_str() {
            "access_key_id" => {
                let value = self.string(attr).map(|value| Setting { value, env_var });
                keep(&mut s.access_key_id, value);
                return;
            }
            "secret_access_key" => {
                let value = self.sensitive(attr).map(|value| Setting { value, env_var });
                keep(&mut s.secret_access_key, value);
                return;
            }
            "session_token" => {
                keep(&mut s.session_token, self.sensitive(attr));
                return;
            }
            "region" => &mut s.region,
            "endpoint" => &mut s.endpoint,
            "ami" => &mut s.ami,
            "subnet_id" => &mut s.subnet_id,
            "key_name" => &mut s.key_name,
            _ => &mut s.security_group,
        };
        keep(slot, self.string(attr));
    }

    fn disk_layouts(
        &mut self,
        body: &Body,
    ) -> BTreeMap<DiskLayoutName, (DiskLayout, Option<Range<usize>>)> {
        let mut out: BTreeMap<DiskLayoutName, (DiskLayout, Option<Range<usize>>)> = BTreeMap::new();
        for block in body.get_blocks("disk_layout") {
            let Some((name_s, name_span)) =
                single_label(self.diags, block, "disk_layout", "standard")
            else {
                continue;
            };
            let Some(name) =
                self.name(DiskLayoutName::new, &name_s, name_span.clone(), "disk layout name")
            else {
                continue;
            };
            if let Some((_, first)) = out.get(&name) {
                let first = first.clone();
                self.duplicate("disk layout", &name_s, name_span, first);
                continue;
            }
            check_attributes(self.diags, &block.body, "disk_layout", &["device"], &["partition"]);
            let device = match block.body.get_attribute("device") {
                Some(a) => self.string(a),
                None => {
                    self.diags.push(
                        ProblemBuilder::new(format!("disk layout `{name_s}` has no `device`"))
                            .at(name_span.clone(), "missing `device`")
                            .help("add the target disk, e.g. `device = \"/dev/vda\"`"),
                    );
                    None
                }
            };
            let mut partitions = Vec::new();
            let mut seen: BTreeMap<String, Option<Range<usize>>> = BTreeMap::new();
            let mut rest_at: Option<(usize, Option<Range<usize>>)> = None;
            let mut ok = device.is_some();
            let count = block.body.get_blocks("partition").count();
            for (i, pblock) in block.body.get_blocks("partition").enumerate() {
                let Some((pname, pspan)) = single_label(self.diags, pblock, "partition", "root")
                else {
                    ok = false;
                    continue;
                };
                if let Some(first) = seen.get(&pname) {
                    let first = first.clone();
                    self.duplicate("partition", &pname, pspan, first);
                    ok = false;
                    continue;
                }
                seen.insert(pname.clone(), pspan.clone());
                match self.partition(pblock, &pname, pspan) {
                    Some((p, size_span)) => {
                        if p.size == PartitionSize::Rest {
                            if let Some((_, first)) = &rest_at {
                                self.diags.push(
                                    ProblemBuilder::new(
                                        "only one partition can take the rest of the disk",
                                    )
                                    .at(size_span.clone(), "a second \"rest\"")
                                    .also(first.clone(), "the first one")
                                    .help("give all but one partition a fixed size like \"4G\""),
                                );
                                ok = false;
                            } else if i + 1 != count {
                                self.diags.push(
                                    ProblemBuilder::new(format!(
                                        "partition `{}` takes the rest of the disk but is not the last one",
                                        p.name
                                    ))
                                    .at(size_span.clone(), "\"rest\" must be last")
                                    .help("move this partition to the end of the layout, or give it a fixed size"),
                                );
                                ok = false;
                            }
                            rest_at.get_or_insert((i, size_span));
                        }
                        partitions.push(p);
                    }
                    None => ok = false,
                }
            }
            let mut mounts: BTreeSet<&str> = BTreeSet::new();
            for p in &partitions {
                if let Some(m) = p.mountpoint.as_deref() {
                    if !mounts.insert(m) {
                        self.diags.push(
                            ProblemBuilder::new(format!(
                                "disk layout `{name_s}` mounts two partitions at `{m}`"
                            ))
                            .at(name_span.clone(), format!("partition `{}` is the second", p.name))
                            .help("give each partition its own mountpoint"),
                        );
                        ok = false;
                    }
                }
            }
            if ok && !partitions.iter().any(|p| p.mountpoint.as_deref() == Some("/")) {
                self.diags.push(
                    ProblemBuilder::new(format!("disk layout `{name_s}` has no root filesystem"))
                        .at(name_span.clone(), "no partition is mounted at \"/\"")
                        .help("add `mountpoint = \"/\"` to the filesystem partition that holds the system"),
                );
                ok = false;
            }
            if let (true, Some(device)) = (ok, device) {
                let span = self.span(name_span.clone());
                out.insert(
                    name.clone(),
                    (DiskLayout { name, device, partitions, span }, name_span),
                );
            } else {
                self.broken.insert(format!("disk_layout:{name}"));
            }
        }
        out
    }

    fn partition(
        &mut self,
        block: &Block,
        name: &str,
        label_span: Option<Range<usize>>,
    ) -> Option<(Partition, Option<Range<usize>>)> {
        check_attributes(
            self.diags,
            &block.body,
            "partition",
            &["type", "size", "filesystem", "label", "mountpoint"],
            &[],
        );
        let b = &block.body;
        let mut ok = true;
        let required = |r: &mut Self, key: &str, example: &str| -> Option<&Attribute> {
            let a = b.get_attribute(key);
            if a.is_none() {
                r.diags.push(
                    ProblemBuilder::new(format!("partition `{name}` has no `{key}`"))
                        .at(label_span.clone(), format!("missing `{key}`"))
                        .help(format!("add `{key} = {example}`")),
                );
            }
            a
        };
        let type_attr = required(self, "type", "\"filesystem\"");
        let size_attr = required(self, "size", "\"4G\"");
        let kind = type_attr.and_then(|a| {
            self.one_of(a, &["esp", "bios_boot", "legacy_boot", "filesystem", "swap"])
        });
        let kind = match kind.as_deref() {
            Some("esp") => PartitionKind::Esp,
            Some("bios_boot") => PartitionKind::BiosBoot,
            Some("legacy_boot") => PartitionKind::LegacyBoot,
            Some("filesystem") => PartitionKind::Filesystem,
            Some("swap") => PartitionKind::Swap,
            _ => return None,
        };
        let size = size_attr.and_then(|a| {
            let s = self.string(a)?;
            match parse_size(&s) {
                Ok(size) => Some(size),
                Err(()) => {
                    self.diags.push(
                        ProblemBuilder::new(format!("partition `{name}` has an invalid size"))
                            .at(a.value.span(), "not a size")
                            .help("write a size with a unit (\"512M\", \"4G\", \"1T\"), or \"rest\" (or \"100%\") for the remaining space"),
                    );
                    None
                }
            }
        });
        let fs_attr = b.get_attribute("filesystem");
        let mut filesystem = fs_attr.and_then(|a| {
            self.one_of(a, &["ext4", "btrfs", "xfs", "vfat"]).map(|s| match s.as_str() {
                "ext4" => Filesystem::Ext4,
                "btrfs" => Filesystem::Btrfs,
                "xfs" => Filesystem::Xfs,
                _ => Filesystem::Vfat,
            })
        });
        if fs_attr.is_some() && filesystem.is_none() {
            ok = false;
        }
        let label = b.get_attribute("label").and_then(|a| {
            let l = self.string(a)?;
            let max = if filesystem == Some(Filesystem::Vfat) || kind == PartitionKind::Esp { 11 } else { 16 };
            if l.is_empty() || l.len() > max || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                self.diags.push(
                    ProblemBuilder::new(format!("partition `{name}` has an invalid label"))
                        .at(a.value.span(), format!("use 1 to {max} letters, digits, `-` or `_`"))
                        .help("labels become /dev/disk/by-label names; vfat allows 11 characters, others 16"),
                );
                ok = false;
                return None;
            }
            Some(l)
        });
        let mp_attr = b.get_attribute("mountpoint");
        let mut mountpoint = mp_attr.and_then(|a| {
            let m = self.string(a)?;
            if !m.starts_with('/') {
                self.diags.push(
                    ProblemBuilder::new(format!("partition `{name}` has a relative mountpoint"))
                        .at(a.value.span(), "must start with `/`")
                        .help(format!(
                            "write an absolute path, e.g. \"/{}\"",
                            m.trim_start_matches("./")
                        )),
                );
                ok = false;
                return None;
            }
            Some(m)
        });
        match kind {
            PartitionKind::Esp => {
                if let (Some(fs), Some(a)) = (filesystem, fs_attr) {
                    if fs != Filesystem::Vfat {
                        self.diags.push(
                            ProblemBuilder::new(format!(
                                "EFI system partition `{name}` must be vfat"
                            ))
                            .at(a.value.span(), "firmware only reads FAT")
                            .help("write `filesystem = \"vfat\"` or leave it out"),
                        );
                        ok = false;
                    }
                }
                filesystem = Some(Filesystem::Vfat);
                mountpoint.get_or_insert_with(|| "/boot".to_owned());
            }
            PartitionKind::LegacyBoot => {
                filesystem.get_or_insert(Filesystem::Vfat);
                mountpoint.get_or_insert_with(|| "/boot".to_owned());
            }
            PartitionKind::Filesystem => {
                if filesystem.is_none() && fs_attr.is_none() {
                    self.diags.push(
                        ProblemBuilder::new(format!(
                            "filesystem partition `{name}` does not say which filesystem"
                        ))
                        .at(label_span.clone(), "missing `filesystem`")
                        .help("add `filesystem = \"ext4\"` (or \"btrfs\", \"xfs\", \"vfat\")"),
                    );
                    ok = false;
                }
            }
            PartitionKind::BiosBoot | PartitionKind::Swap => {
                for (attr, what) in [(fs_attr, "filesystem"), (mp_attr, "mountpoint")] {
                    if let Some(a) = attr {
                        self.diags.push(
                            ProblemBuilder::new(format!(
                                "a {} partition has no {what}",
                                if kind == PartitionKind::Swap { "swap" } else { "bios_boot" }
                            ))
                            .at(a.key.span(), "not used for this type")
                            .help(format!("remove `{what}` or change `type` to \"filesystem\"")),
                        );
                        ok = false;
                    }
                }
            }
        }
        let size = size?;
        let size_span = size_attr.and_then(|a| a.value.span());
        if kind == PartitionKind::BiosBoot && size == PartitionSize::Rest {
            self.diags.push(
                ProblemBuilder::new(format!("BIOS boot partition `{name}` needs a fixed size"))
                    .at(size_span.clone(), "not \"rest\"")
                    .help("it only holds GRUB's core image: `size = \"1M\"` is enough"),
            );
            ok = false;
        }
        ok.then(|| {
            (
                Partition { name: name.to_owned(), kind, size, filesystem, label, mountpoint },
                size_span,
            )
        })
    }

    fn admins(&mut self, body: &Body) -> Vec<Admin> {
        let mut out: Vec<(Admin, Option<Range<usize>>)> = Vec::new();
        for block in body.get_blocks("admin") {
            let Some((name_s, name_span)) = single_label(self.diags, block, "admin", "alice")
            else {
                continue;
            };
            let Some(name) = self.name(AdminName::new, &name_s, name_span.clone(), "admin name")
            else {
                continue;
            };
            if let Some((_, first)) = out.iter().find(|(a, _)| a.name == name) {
                let first = first.clone();
                self.duplicate("admin", &name_s, name_span, first);
                continue;
            }
            check_attributes(self.diags, &block.body, "admin", &["age"], &[]);
            let Some(attr) = block.body.get_attribute("age") else {
                self.diags.push(
                    ProblemBuilder::new(format!("admin `{name_s}` has no `age` recipient"))
                        .at(name_span, "missing `age`")
                        .help("add `age = \"age1...\"` (from `cairn secrets keygen` or `age-keygen -y`) or an `ssh-ed25519 ...` public key"),
                );
                continue;
            };
            let Some(age) = self.string(attr) else { continue };
            if let Err(why) = check_recipient(&age) {
                self.diags.push(
                    ProblemBuilder::new(format!("admin `{name_s}` has an invalid age recipient"))
                        .at(attr.value.span(), why)
                        .help("use an age public key (`age1...`, as printed by `age-keygen -y`) or an SSH public key line (`ssh-ed25519 AAAA...`)"),
                );
                continue;
            }
            let span = self.span(name_span.clone());
            out.push((Admin { name, age: age.trim().to_owned(), span }, name_span));
        }
        out.into_iter().map(|(a, _)| a).collect()
    }

    fn hosts(
        &mut self,
        body: &Body,
        providers: &BTreeMap<ProviderName, (Provider, Option<Range<usize>>)>,
        layouts: &BTreeMap<DiskLayoutName, (DiskLayout, Option<Range<usize>>)>,
    ) -> Vec<Host> {
        let mut defaults_blocks = body.get_blocks("defaults");
        let defaults = defaults_blocks.next();
        for extra in defaults_blocks {
            self.diags.push(
                ProblemBuilder::new("there is more than one `defaults` block")
                    .at(extra.ident.span(), "a second `defaults`")
                    .also(defaults.and_then(|d| d.ident.span()), "the first one")
                    .help("merge them into one `defaults { ... }` block"),
            );
        }
        if let Some(d) = defaults {
            if let Some(l) = d.labels.first() {
                self.diags.push(
                    ProblemBuilder::new("a `defaults` block takes no label")
                        .at(l.span(), "remove this label")
                        .help("write `defaults { ... }`; per-host settings go into `host \"NAME\" { ... }`"),
                );
            }
            self.check_host_body(&d.body, "defaults");
        }

        let mut out: Vec<(Host, Option<Range<usize>>)> = Vec::new();
        for block in body.get_blocks("host") {
            let Some((name_s, name_span)) = single_label(self.diags, block, "host", "web1") else {
                continue;
            };
            let Some(name) = self.name(HostName::new, &name_s, name_span.clone(), "host name")
            else {
                continue;
            };
            if let Some((_, first)) = out.iter().find(|(h, _)| h.name == name) {
                let first = first.clone();
                self.duplicate("host", &name_s, name_span, first);
                continue;
            }
            self.check_host_body(&block.body, "host");
            let key = format!("host:{name}");
            match self.host(
                name,
                name_span.clone(),
                &block.body,
                defaults.map(|d| &d.body),
                providers,
                layouts,
            ) {
                Some(host) => out.push((host, name_span)),
                None => {
                    self.broken.insert(key);
                }
            }
        }
        out.into_iter().map(|(h, _)| h).collect()
    }

    fn check_host_body(&mut self, body: &Body, kind: &str) {
        check_attributes(self.diags, body, kind, HOST_ATTRS, HOST_BLOCKS);
        let aliases: Vec<&Attribute> =
            body.attributes().filter(|a| SIZE_ALIASES.contains(&a.key.as_str())).collect();
        if let [first, second, ..] = aliases.as_slice() {
            self.diags.push(
                ProblemBuilder::new(format!(
                    "`{}` and `{}` both set the machine size",
                    first.key.as_str(),
                    second.key.as_str()
                ))
                .at(second.key.span(), "set again here")
                .also(first.key.span(), "first set here")
                .help("`size`, `server_type` and `instance_type` are the same setting: keep one"),
            );
        }
    }

    #[allow(clippy::too_many_lines)]
    fn host(
        &mut self,
        name: HostName,
        name_span: Option<Range<usize>>,
        body: &Body,
        defaults: Option<&Body>,
        providers: &BTreeMap<ProviderName, (Provider, Option<Range<usize>>)>,
        layouts: &BTreeMap<DiskLayoutName, (DiskLayout, Option<Range<usize>>)>,
    ) -> Option<Host> {
        // The attribute in force: the host's own, else the default's.
        let get = |key: &str| -> Option<&Attribute> {
            find_attr(body, key).or_else(|| defaults.and_then(|d| find_attr(d, key)))
        };
        let mut ok = true;

        let provider = match get("provider") {
            Some(attr) => match self.string(attr) {
                Some(p) if providers.keys().any(|k| k.as_str() == p) => ProviderName::new(p).ok(),
                Some(p) if self.broken.contains(&format!("provider:{p}")) => None,
                Some(p) => {
                    let help = match closest(&p, providers.keys().map(|k| k.as_str())) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None if providers.is_empty() => {
                            "declare it: `provider \"hcloud\" \"NAME\" { ... }`".to_owned()
                        }
                        None => format!(
                            "declared providers: {}",
                            providers
                                .keys()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    self.diags.push(
                        ProblemBuilder::new(format!("provider `{p}` is not declared"))
                            .at(attr.value.span(), "no provider with this name")
                            .help(help),
                    );
                    None
                }
                None => None,
            },
            None if providers.len() == 1 => providers.keys().next().cloned(),
            None if providers.is_empty()
                && self.broken.iter().any(|b| b.starts_with("provider:")) =>
            {
                None
            }
            None => {
                let help = if providers.is_empty() {
                    "declare one, e.g. `provider \"existing\" \"manual\" {}`, and name it in the host".to_owned()
                } else {
                    format!(
                        "add `provider = \"NAME\"` (declared: {})",
                        providers.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    )
                };
                self.diags.push(
                    ProblemBuilder::new(format!(
                        "host `{name}` does not say which provider runs it"
                    ))
                    .at(name_span.clone(), "no `provider`")
                    .help(help),
                );
                None
            }
        };
        ok &= provider.is_some();

        let flake = match get("flake") {
            Some(attr) => self.string(attr).and_then(|s| {
                let (flake, attr_name) = match s.split_once('#') {
                    Some((f, a)) => (f.to_owned(), a.to_owned()),
                    None => (s.clone(), name.to_string()),
                };
                if flake.is_empty() || attr_name.is_empty() {
                    self.diags.push(
                        ProblemBuilder::new(format!("`{s}` is not a flake reference"))
                            .at(attr.value.span(), "expected `<flake>#<attribute>`")
                            .help(format!("write e.g. `flake = \".#{name}\"` (the flake in this directory, attribute `{name}`); without `#`, the attribute is the host's name")),
                    );
                    return None;
                }
                Some(FlakeRef { flake, attr: attr_name })
            }),
            None => Some(FlakeRef { flake: ".".into(), attr: name.to_string() }),
        };
        ok &= flake.is_some();

        let opt_string = |r: &mut Self, key: &str, ok: &mut bool| -> Option<String> {
            let attr = get(key)?;
            let s = r.string(attr);
            *ok &= s.is_some();
            s
        };
        let size = opt_string(self, "size", &mut ok);
        let image = opt_string(self, "image", &mut ok);
        let location = opt_string(self, "location", &mut ok);
        let address = opt_string(self, "address", &mut ok);

        // Tags: the defaults' and the host's, unioned in that order.
        let mut tags: Vec<Tag> = Vec::new();
        for attr in [defaults.and_then(|d| d.get_attribute("tags")), body.get_attribute("tags")]
            .into_iter()
            .flatten()
        {
            match self.strings(attr) {
                Some(list) => {
                    for (t, span) in list {
                        match self.name(Tag::new, &t, span, "tag") {
                            Some(tag) if !tags.contains(&tag) => tags.push(tag),
                            Some(_) => {}
                            None => ok = false,
                        }
                    }
                }
                None => ok = false,
            }
        }

        let disk_layout = match get("disk_layout") {
            Some(attr) => match self.string(attr) {
                Some(l) if layouts.keys().any(|k| k.as_str() == l) => DiskLayoutName::new(l).ok(),
                Some(l) if self.broken.contains(&format!("disk_layout:{l}")) => {
                    ok = false;
                    None
                }
                Some(l) => {
                    let help = match closest(&l, layouts.keys().map(|k| k.as_str())) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None if layouts.is_empty() => format!(
                            "declare it: `disk_layout \"{l}\" {{ device = \"/dev/vda\" ... }}`"
                        ),
                        None => format!(
                            "declared disk layouts: {}",
                            layouts.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                        ),
                    };
                    self.diags.push(
                        ProblemBuilder::new(format!("disk layout `{l}` is not declared"))
                            .at(attr.value.span(), "no disk layout with this name")
                            .help(help),
                    );
                    ok = false;
                    None
                }
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };

        let mut secrets = Vec::new();
        if let Some(attr) = get("secrets") {
            match self.strings(attr) {
                Some(list) => {
                    for (g, span) in list {
                        if let Err(e) = globset::Glob::new(&g) {
                            self.diags.push(
                                ProblemBuilder::new(format!("`{g}` is not a valid glob"))
                                    .at(span, e.kind().to_string())
                                    .help("use `*` for any name and `**` for any directories, e.g. \"secrets/web/*.yaml\""),
                            );
                            ok = false;
                        } else {
                            secrets.push(g);
                        }
                    }
                }
                None => ok = false,
            }
        }

        // ssh { user, port }: merged attribute by attribute over the defaults' block.
        let mut ssh = SshSettings::default();
        let ssh_blocks: Vec<&Block> = [defaults, Some(body)]
            .into_iter()
            .flatten()
            .flat_map(|b| b.get_blocks("ssh"))
            .collect();
        for b in &ssh_blocks {
            check_attributes(self.diags, &b.body, "ssh", &["user", "port"], &[]);
            if let Some(a) = b.body.get_attribute("user") {
                match self.string(a) {
                    Some(u) => ssh.user = u,
                    None => ok = false,
                }
            }
            if let Some(a) = b.body.get_attribute("port") {
                match self.integer(a, 1, 65535) {
                    Some(p) => ssh.port = p as u16,
                    None => ok = false,
                }
            }
        }

        let mut health_checks: Vec<HealthCheck> = Vec::new();
        for b in
            [defaults, Some(body)].into_iter().flatten().flat_map(|b| b.get_blocks("health_check"))
        {
            match self.health_check(b) {
                Some(hc) if !health_checks.contains(&hc) => health_checks.push(hc),
                Some(_) => {}
                None => ok = false,
            }
        }

        // Timeouts: the host's own, else its provider's, else the defaults', wait by wait.
        let own = self.timeouts_of(body, &format!("host `{name}`"));
        let from_defaults = match defaults {
            Some(d) => self.timeouts_of(d, "defaults"),
            None => Some(Timeouts::default()),
        };
        let from_provider = provider
            .as_ref()
            .and_then(|p| providers.get(p))
            .map(|(p, _)| p.timeouts.clone())
            .unwrap_or_default();
        let timeouts = match (own, from_defaults) {
            (Some(own), Some(d)) => own.or(&from_provider.or(&d)),
            _ => {
                ok = false;
                Timeouts::default()
            }
        };

        let mut install = InstallSettings::default();
        for key in [
            "installer",
            "installer_sha256",
            "installer_sha512",
            "installer_min_memory",
            "copy",
            "disk_by_id",
            "age_key",
            "disko",
        ] {
            if let Some(a) = get(key) {
                ok &= self.install_setting(&mut install, a);
            }
        }
        let mut image_checksum = None;
        for key in ["image_sha256", "image_sha512"] {
            if let Some(a) = get(key) {
                ok &= self.checksum(&mut image_checksum, a);
            }
        }
        let mut vm = VmSettings::default();
        for key in ["memory", "cpus", "disk_size"] {
            if let Some(a) = get(key) {
                ok &= self.vm_setting(&mut vm, a);
            }
        }

        let provider = provider?;
        let kind = providers.get(&provider).map(|(p, _)| p.kind);
        if kind == Some(ProviderKind::Existing) && address.is_none() && get("address").is_none() {
            self.diags.push(
                ProblemBuilder::new(format!(
                    "host `{name}` runs on an `existing` machine but has no `address`"
                ))
                .at(name_span.clone(), "missing `address`")
                .help("add the address cairn connects to, e.g. `address = \"203.0.113.10\"`"),
            );
            ok = false;
        }
        if kind != Some(ProviderKind::Qemu) {
            for key in ["memory", "cpus", "disk_size"] {
                if let Some(a) = body.get_attribute(key) {
                    self.diags.push(
                        ProblemBuilder::new(format!("`{key}` only applies to qemu hosts"))
                            .at(a.key.span(), format!("host `{name}` runs on provider `{provider}`"))
                            .help("for cloud machines choose a `size` (server_type/instance_type) instead"),
                    );
                    ok = false;
                }
            }
        }
        let install = match providers.get(&provider) {
            Some((p, _)) => install.or(&p.install),
            None => install,
        };
        let span = self.span(name_span);
        ok.then_some(Host {
            name,
            provider,
            flake,
            size,
            image,
            image_checksum,
            location,
            tags,
            disk_layout,
            secrets,
            ssh,
            address,
            health_checks,
            timeouts,
            install,
            vm,
            span,
        })
    }

    /// The `timeouts { reach = "5m" ... }` block of `body`, if any (`owner` names it in
    /// messages). `None` when it has problems (reported).
    fn timeouts_of(&mut self, body: &Body, owner: &str) -> Option<Timeouts> {
        let mut blocks = body.get_blocks("timeouts");
        let Some(block) = blocks.next() else {
            return Some(Timeouts::default());
        };
        let mut ok = true;
        for extra in blocks {
            self.diags.push(
                ProblemBuilder::new(format!("{owner} has more than one `timeouts` block"))
                    .at(extra.ident.span(), "a second `timeouts`")
                    .also(block.ident.span(), "the first one")
                    .help("merge them into one `timeouts { ... }` block"),
            );
            ok = false;
        }
        if let Some(l) = block.labels.first() {
            self.diags.push(
                ProblemBuilder::new("a `timeouts` block takes no label")
                    .at(l.span(), "remove this label")
                    .help("write `timeouts { reach = \"5m\" }`"),
            );
            ok = false;
        }
        let names = Wait::ALL.map(Wait::as_str);
        check_attributes(self.diags, &block.body, "timeouts", &names, &[]);
        let mut out = Timeouts::default();
        for attr in block.body.attributes() {
            let Ok(wait) = attr.key.as_str().parse::<Wait>() else {
                ok = false;
                continue;
            };
            let Some(value) = self.value(attr) else {
                ok = false;
                continue;
            };
            let parsed = match &value {
                Value::String(text) => crate::util::duration::parse(text, false).map_err(|e| e.0),
                Value::Number(n) => Err(format!("`{n}` has no unit; write \"{n}s\" or \"{n}m\"")),
                other => {
                    self.wrong_type(&attr.value, "a duration like \"5m\"", other);
                    ok = false;
                    continue;
                }
            };
            match parsed {
                Ok(d) => {
                    out.0.insert(wait, d);
                }
                Err(why) => {
                    self.diags.push(
                        ProblemBuilder::new(format!("`{wait}` is not a valid duration"))
                            .at(attr.value.span(), "expected a duration")
                            .help(why),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn health_check(&mut self, block: &Block) -> Option<HealthCheck> {
        const KINDS: [(&str, &str, &str); 3] = [
            ("systemd_unit", "unit", "\"comin.service\""),
            ("command", "command", "\"curl -fsS http://localhost/\""),
            ("file_exists", "path", "\"/run/secrets/token\""),
        ];
        let (kind, kind_span) = single_label(self.diags, block, "health_check", "systemd_unit")?;
        let Some((_, key, example)) = KINDS.iter().find(|k| k.0 == kind) else {
            self.diags.push(
                ProblemBuilder::new(format!("unknown health check `{kind}`"))
                    .at(kind_span, "not a health check kind")
                    .help(suggest(&kind, KINDS.map(|k| k.0), "health check kinds")),
            );
            return None;
        };
        check_attributes(self.diags, &block.body, &format!("health_check \"{kind}\""), &[key], &[]);
        let Some(attr) = block.body.get_attribute(key) else {
            self.diags.push(
                ProblemBuilder::new(format!("this `{kind}` health check has no `{key}`"))
                    .at(kind_span, format!("missing `{key}`"))
                    .help(format!("add `{key} = {example}`")),
            );
            return None;
        };
        let v = self.string(attr)?;
        Some(match kind.as_str() {
            "systemd_unit" => HealthCheck::SystemdUnit { unit: v },
            "command" => HealthCheck::Command { command: v },
            _ => HealthCheck::FileExists { path: v },
        })
    }

    fn secrets_rules(&mut self, body: &Body, hosts: &[Host]) -> Vec<SecretsRule> {
        let all_tags: BTreeSet<&str> =
            hosts.iter().flat_map(|h| h.tags.iter().map(|t| t.as_str())).collect();
        let mut out: Vec<(SecretsRule, Option<Range<usize>>)> = Vec::new();
        for block in body.get_blocks("secrets") {
            let Some((glob, glob_span)) =
                single_label(self.diags, block, "secrets", "secrets/web/*.yaml")
            else {
                continue;
            };
            if let Some((_, first)) = out.iter().find(|(r, _)| r.glob == glob) {
                let first = first.clone();
                self.diags.push(
                    ProblemBuilder::new(format!("two `secrets` rules for `{glob}`"))
                        .at(glob_span, "defined again here")
                        .also(first, "first defined here")
                        .help("merge their `hosts` and `tags` into one rule"),
                );
                continue;
            }
            let mut ok = true;
            if let Err(e) = globset::Glob::new(&glob) {
                self.diags.push(
                    ProblemBuilder::new(format!("`{glob}` is not a valid glob"))
                        .at(glob_span.clone(), e.kind().to_string())
                        .help("use `*` for any name and `**` for any directories, e.g. \"secrets/web/*.yaml\""),
                );
                ok = false;
            }
            check_attributes(self.diags, &block.body, "secrets", &["hosts", "tags"], &[]);
            let mut rule_hosts = Vec::new();
            if let Some(attr) = block.body.get_attribute("hosts") {
                for (h, span) in self.strings(attr).unwrap_or_default() {
                    match hosts.iter().find(|x| x.name.as_str() == h) {
                        Some(x) => rule_hosts.push(x.name.clone()),
                        None if self.broken.contains(&format!("host:{h}")) => ok = false,
                        None => {
                            let mut help =
                                suggest(&h, hosts.iter().map(|x| x.name.as_str()), "hosts");
                            if all_tags.contains(h.as_str()) {
                                help = format!("`{h}` is a tag: move it to `tags = [\"{h}\"]`");
                            }
                            self.diags.push(
                                ProblemBuilder::new(format!(
                                    "secrets rule `{glob}` names host `{h}`, which does not exist"
                                ))
                                .at(span, "no such host")
                                .help(help),
                            );
                            ok = false;
                        }
                    }
                }
            }
            let mut rule_tags = Vec::new();
            if let Some(attr) = block.body.get_attribute("tags") {
                for (t, span) in self.strings(attr).unwrap_or_default() {
                    if all_tags.contains(t.as_str()) {
                        rule_tags.extend(Tag::new(t).ok());
                    } else {
                        let mut help = suggest(&t, all_tags.iter().copied(), "tags in use");
                        if hosts.iter().any(|x| x.name.as_str() == t) {
                            help = format!("`{t}` is a host: move it to `hosts = [\"{t}\"]`");
                        }
                        self.diags.push(
                            ProblemBuilder::new(format!(
                                "secrets rule `{glob}` names tag `{t}`, which no host has"
                            ))
                            .at(span, "no host has this tag")
                            .help(help),
                        );
                        ok = false;
                    }
                }
            }
            if ok {
                let span = self.span(glob_span.clone());
                out.push((
                    SecretsRule { glob, hosts: rule_hosts, tags: rule_tags, span },
                    glob_span,
                ));
            }
        }
        out.into_iter().map(|(r, _)| r).collect()
    }

    /// The `name` of a `pg` state: it keys the rows and the lock in a shared database.
    fn state_name(&mut self, attr: &Attribute) -> Option<String> {
        let name = self.string(attr)?;
        let ok = !name.is_empty()
            && name.len() <= 63
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if ok {
            return Some(name);
        }
        self.diags.push(
            ProblemBuilder::new(format!("`{name}` is not a valid state name"))
                .at(attr.value.span(), "a state name")
                .help("use 1 to 63 letters, digits, `-`, `_` or `.` (e.g. the repository's name)"),
        );
        None
    }

    fn state(&mut self, body: &Body) -> StateBackend {
        let mut blocks = body.get_blocks("state");
        let Some(block) = blocks.next() else {
            return StateBackend::File;
        };
        for extra in blocks {
            self.diags.push(
                ProblemBuilder::new("there is more than one `state` block")
                    .at(extra.ident.span(), "a second `state`")
                    .also(block.ident.span(), "the first one")
                    .help("keep one `state { backend = ... }` block"),
            );
        }
        check_attributes(self.diags, &block.body, "state", &["backend", "conn", "name"], &[]);
        let backend = match block.body.get_attribute("backend") {
            Some(a) => self.one_of(a, &["file", "pg"]),
            None => Some("file".to_owned()),
        };
        let conn = block.body.get_attribute("conn");
        let name_attr = block.body.get_attribute("name");
        match backend.as_deref() {
            Some("pg") => match conn {
                Some(a) => {
                    let name = match name_attr {
                        Some(n) => self.state_name(n),
                        None => Some(DEFAULT_STATE_NAME.to_owned()),
                    };
                    match (self.sensitive(a), name) {
                        (Some(conn), Some(name)) => StateBackend::Pg { conn, name },
                        _ => StateBackend::File,
                    }
                }
                None => {
                    self.diags.push(
                        ProblemBuilder::new("the `pg` state backend needs a connection string")
                            .at(block.body.get_attribute("backend").and_then(|a| a.value.span()), "`conn` missing for this backend")
                            .help("add `conn = env(\"CAIRN_PG_CONN\")` (a postgres:// URL; keep it out of the file)"),
                    );
                    StateBackend::File
                }
            },
            Some(_) => {
                for (key, a) in [("conn", conn), ("name", name_attr)] {
                    if let Some(a) = a {
                        self.diags.push(
                            ProblemBuilder::new(format!(
                                "`{key}` is only used by the `pg` state backend"
                            ))
                            .at(a.key.span(), "ignored with backend = \"file\"")
                            .help(format!("remove `{key}`, or set `backend = \"pg\"`")),
                        );
                    }
                }
                StateBackend::File
            }
            None => StateBackend::File,
        }
    }
}

/// Puts `value` into `slot` if there is one (else the problem was reported); says which.
fn keep<T>(slot: &mut Option<T>, value: Option<T>) -> bool {
    let ok = value.is_some();
    if ok {
        *slot = value;
    }
    ok
}

/// An attribute of a host body; the size aliases count as one key.
fn find_attr<'b>(body: &'b Body, key: &str) -> Option<&'b Attribute> {
    if SIZE_ALIASES.contains(&key) {
        body.attributes().find(|a| SIZE_ALIASES.contains(&a.key.as_str()))
    } else {
        body.get_attribute(key)
    }
}

/// "512M", "4G", "1T" (optionally "MiB"/"GiB"/"TiB"), "rest" or "100%".
pub(crate) fn parse_size(s: &str) -> Result<PartitionSize, ()> {
    let s = s.trim();
    if s == "rest" || s == "100%" {
        return Ok(PartitionSize::Rest);
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let n: u64 = num.parse().map_err(|_| ())?;
    let factor = match unit.trim() {
        "M" | "MiB" | "MB" => 1,
        "G" | "GiB" | "GB" => 1024,
        "T" | "TiB" | "TB" => 1024 * 1024,
        _ => return Err(()),
    };
    match n.checked_mul(factor) {
        Some(m) if m > 0 => Ok(PartitionSize::Mib(m)),
        _ => Err(()),
    }
}

/// An age X25519 recipient (`age1...`) or an SSH public key line (`ssh-ed25519 ...`,
/// `ssh-rsa ...`), as sops and age accept them.
pub(crate) fn check_recipient(s: &str) -> Result<(), String> {
    let s = s.trim();
    if s.starts_with("AGE-SECRET-KEY-") {
        return Err("this is a private key: never put it here, use its public key".into());
    }
    if s.starts_with("age1") {
        return s
            .parse::<age::x25519::Recipient>()
            .map(drop)
            .map_err(|_| "not a valid age recipient (bad checksum or length)".into());
    }
    if s.starts_with("ssh-ed25519 ") || s.starts_with("ssh-rsa ") {
        return match s.parse::<age::ssh::Recipient>() {
            Ok(_) => Ok(()),
            Err(age::ssh::ParseRecipientKeyError::RsaModulusTooSmall) => {
                Err("this RSA key is too short (under 2048 bits)".into())
            }
            Err(_) => Err("not a valid SSH public key".into()),
        };
    }
    Err("not an age recipient or SSH public key".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(PartitionSize::Mib(512)));
        assert_eq!(parse_size("1G"), Ok(PartitionSize::Mib(1024)));
        assert_eq!(parse_size("2GiB"), Ok(PartitionSize::Mib(2048)));
        assert_eq!(parse_size("1T"), Ok(PartitionSize::Mib(1024 * 1024)));
        assert_eq!(parse_size("rest"), Ok(PartitionSize::Rest));
        assert_eq!(parse_size("100%"), Ok(PartitionSize::Rest));
        for bad in ["", "0M", "512", "1.5G", "2 gigs", "50%", "-1G", "99999999999999999999T"] {
            assert_eq!(parse_size(bad), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn recipients() {
        // Generated with age-keygen and ssh-keygen for this test; public halves only.
        assert!(check_recipient("age1l4j587397etm0czenpy3xwkra2r5p929ztcpr3h3v89gvf3wgvmqnnlq2d")
            .is_ok());
        assert!(check_recipient(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPtRNRBdvs9DSZpJGTAQ76p6TbFNAqD9jLkaclZISGcR bob@laptop"
        )
        .is_ok());
        let bad_checksum = "age1l4j587397etm0czenpy3xwkra2r5p929ztcpr3h3v89gvf3wgvmqnnlq2e";
        assert!(check_recipient(bad_checksum).unwrap_err().contains("checksum"));
        assert!(check_recipient("AGE-SECRET-KEY-1ABC").unwrap_err().contains("private key"));
        assert!(check_recipient("ssh-ed25519 AAAA").is_err());
        assert!(check_recipient("alice@example.org").is_err());
    }
}
