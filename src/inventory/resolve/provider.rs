//! `provider "TYPE" "NAME" { ... }`: each provider type's attributes and typed settings.

use std::collections::BTreeMap;
use std::ops::Range;

use hcl_edit::expr::Expression as Expr;
use hcl_edit::structure::{Attribute, Block, Body};
use hcl_edit::Span;

use super::{keep, Resolver};
use crate::inventory::diag::{closest, suggest, ProblemBuilder};
use crate::inventory::eval::check_attributes_with;
use crate::inventory::model::*;

/// Blocks every provider type takes.
const PROVIDER_BLOCKS: &[&str] = &["timeouts"];

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

impl Resolver<'_> {
    /// Checks a block's label count for blocks with two labels (`provider "type" "name"`).
    pub(super) fn provider_labels(&mut self, block: &Block) -> Option<(Label, Label)> {
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

    pub(super) fn providers(
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

    pub(super) fn qemu_setting(&mut self, s: &mut QemuSettings, attr: &Attribute) {
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

    pub(super) fn hcloud_setting(&mut self, s: &mut HcloudSettings, attr: &Attribute) {
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

    pub(super) fn aws_setting(&mut self, s: &mut AwsSettings, attr: &Attribute) {
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
}
