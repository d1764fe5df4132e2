//! `host "NAME" { ... }` and the `defaults` block that fills what hosts leave out.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use hcl_edit::structure::{Attribute, Block, Body};
use hcl_edit::Span;

use super::Resolver;
use crate::inventory::diag::{closest, ProblemBuilder};
use crate::inventory::eval::{check_attributes, single_label};
use crate::inventory::model::*;

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
    "kexec",
    "copy",
    "memory",
    "cpus",
    "disk_size",
    "extra_files",
];

const HOST_BLOCKS: &[&str] =
    &["ssh", "health_check", "timeouts", "extra_file", "disk_encryption_key"];

const SIZE_ALIASES: &[&str] = &["size", "server_type", "instance_type"];

impl Resolver<'_> {
    pub(super) fn hosts(
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

        let mut out: Vec<Host> = Vec::new();
        // Host name → where it was first declared (a map: inventories may hold 60,000 hosts).
        let mut seen: HashMap<String, Option<Range<usize>>> = HashMap::new();
        for block in body.get_blocks("host") {
            let Some((name_s, name_span)) = single_label(self.diags, block, "host", "web1") else {
                continue;
            };
            let Some(name) = self.name(HostName::new, &name_s, name_span.clone(), "host name")
            else {
                continue;
            };
            if let Some(first) = seen.get(&name_s) {
                let first = first.clone();
                self.duplicate("host", &name_s, name_span, first);
                continue;
            }
            seen.insert(name_s.clone(), name_span.clone());
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
                Some(host) => out.push(host),
                None => {
                    self.broken.insert(key);
                }
            }
        }
        out
    }

    pub(super) fn check_host_body(&mut self, body: &Body, kind: &str) {
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
    pub(super) fn host(
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
        let provider = self.host_provider(&name, name_span.clone(), get("provider"), providers);
        ok &= provider.is_some();
        let flake = self.host_flake(&name, get("flake"));
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

        let tags = self.host_tags(body, defaults);
        ok &= tags.is_some();

        let disk_layout = match get("disk_layout") {
            Some(attr) => self.host_disk_layout(attr, layouts).map(Some),
            None => Some(None),
        };
        ok &= disk_layout.is_some();

        let secrets = match get("secrets") {
            Some(attr) => self.host_secrets(attr),
            None => Some(Vec::new()),
        };
        ok &= secrets.is_some();

        let ssh = self.host_ssh(body, defaults);
        ok &= ssh.is_some();

        let health_checks = self.host_health_checks(body, defaults);
        ok &= health_checks.is_some();

        let seed = self.host_seed(body, defaults);
        ok &= seed.is_some();

        let from_provider = provider.as_ref().and_then(|p| providers.get(p)).map(|(p, _)| p);
        let timeouts = self.host_timeouts(&name, body, defaults, from_provider);
        ok &= timeouts.is_some();

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
            "kexec",
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
        if !ok {
            return None;
        }
        Some(Host {
            name,
            provider,
            flake,
            size,
            image,
            image_checksum,
            location,
            tags: tags?,
            disk_layout: disk_layout?,
            secrets: secrets?,
            ssh: ssh?,
            address,
            health_checks: health_checks?,
            timeouts: timeouts?,
            install,
            vm,
            seed: seed?,
            span,
        })
    }

    /// The host's `provider`; without one, the only provider there is.
    fn host_provider(
        &mut self,
        name: &HostName,
        name_span: Option<Range<usize>>,
        attr: Option<&Attribute>,
        providers: &BTreeMap<ProviderName, (Provider, Option<Range<usize>>)>,
    ) -> Option<ProviderName> {
        match attr {
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
                    .at(name_span, "no `provider`")
                    .help(help),
                );
                None
            }
        }
    }

    /// `flake = "<flake>#<attribute>"`; without `#` the attribute is the host's name, and
    /// without `flake` it is `.#<name>`.
    fn host_flake(&mut self, name: &HostName, attr: Option<&Attribute>) -> Option<FlakeRef> {
        let Some(attr) = attr else {
            return Some(FlakeRef { flake: ".".into(), attr: name.to_string() });
        };
        let s = self.string(attr)?;
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
    }

    /// Tags: the defaults' and the host's, unioned in that order.
    fn host_tags(&mut self, body: &Body, defaults: Option<&Body>) -> Option<Vec<Tag>> {
        let mut ok = true;
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
        ok.then_some(tags)
    }

    /// `disk_layout = "NAME"`, which must be declared.
    fn host_disk_layout(
        &mut self,
        attr: &Attribute,
        layouts: &BTreeMap<DiskLayoutName, (DiskLayout, Option<Range<usize>>)>,
    ) -> Option<DiskLayoutName> {
        let l = self.string(attr)?;
        if layouts.keys().any(|k| k.as_str() == l) {
            return DiskLayoutName::new(l).ok();
        }
        if self.broken.contains(&format!("disk_layout:{l}")) {
            return None;
        }
        let help = match closest(&l, layouts.keys().map(|k| k.as_str())) {
            Some(c) => format!("did you mean `{c}`?"),
            None if layouts.is_empty() => {
                format!("declare it: `disk_layout \"{l}\" {{ device = \"/dev/vda\" ... }}`")
            }
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
        None
    }

    /// `secrets = ["GLOB", ...]`: every glob must be valid.
    fn host_secrets(&mut self, attr: &Attribute) -> Option<Vec<String>> {
        let mut ok = true;
        let mut secrets = Vec::new();
        for (g, span) in self.strings(attr)? {
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
        ok.then_some(secrets)
    }

    /// `ssh { user, port }`: merged attribute by attribute over the defaults' block.
    fn host_ssh(&mut self, body: &Body, defaults: Option<&Body>) -> Option<SshSettings> {
        let mut ok = true;
        let mut ssh = SshSettings::default();
        let ssh_blocks: Vec<&Block> = [defaults, Some(body)]
            .into_iter()
            .flatten()
            .flat_map(|b| b.get_blocks("ssh"))
            .collect();
        for b in &ssh_blocks {
            check_attributes(
                self.diags,
                &b.body,
                "ssh",
                &["user", "port", "installer_port", "installed_port"],
                &[],
            );
            if let Some(a) = b.body.get_attribute("user") {
                match self.string_of(a, &crate::inventory::forms::USERNAME) {
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
            for (key, slot) in [
                ("installer_port", &mut ssh.installer_port),
                ("installed_port", &mut ssh.installed_port),
            ] {
                if let Some(a) = b.body.get_attribute(key) {
                    match self.integer(a, 1, 65535) {
                        Some(p) => *slot = Some(p as u16),
                        None => ok = false,
                    }
                }
            }
        }
        ok.then_some(ssh)
    }

    /// Timeouts: the host's own, else its provider's, else the defaults', wait by wait.
    fn host_timeouts(
        &mut self,
        name: &HostName,
        body: &Body,
        defaults: Option<&Body>,
        provider: Option<&Provider>,
    ) -> Option<Timeouts> {
        let own = self.timeouts_of(body, &format!("host `{name}`"));
        let from_defaults = match defaults {
            Some(d) => self.timeouts_of(d, "defaults"),
            None => Some(Timeouts::default()),
        };
        let from_provider = provider.map(|p| p.timeouts.clone()).unwrap_or_default();
        Some(own?.or(&from_provider.or(&from_defaults?)))
    }
}

/// An attribute of a host body; the size aliases count as one key.
fn find_attr<'b>(body: &'b Body, key: &str) -> Option<&'b Attribute> {
    if SIZE_ALIASES.contains(&key) {
        body.attributes().find(|a| SIZE_ALIASES.contains(&a.key.as_str()))
    } else {
        body.get_attribute(key)
    }
}
