//! `disk_layout "NAME" { device = ..., partition "NAME" { ... } }`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use hcl_edit::structure::{Attribute, Block, Body};
use hcl_edit::Span;

use super::values::parse_size;
use super::Resolver;
use crate::inventory::diag::ProblemBuilder;
use crate::inventory::eval::{check_attributes, single_label};
use crate::inventory::model::*;

impl Resolver<'_> {
    pub(super) fn disk_layouts(
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
                Some(a) => self.string_of(a, &crate::inventory::forms::DEVICE),
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
                if !(crate::inventory::forms::PARTITION_NAME.check)(&pname) {
                    self.diags.push(
                        ProblemBuilder::new(format!(
                            "`{}` is not a valid partition name",
                            pname.escape_debug()
                        ))
                        .at(pspan.clone(), "not a partition name")
                        .help(format!("use {}", crate::inventory::forms::PARTITION_NAME.allowed)),
                    );
                    ok = false;
                    continue;
                }
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

    pub(super) fn partition(
        &mut self,
        block: &Block,
        name: &str,
        label_span: Option<Range<usize>>,
    ) -> Option<(Partition, Option<Range<usize>>)> {
        check_attributes(
            self.diags,
            &block.body,
            "partition",
            &["type", "size", "filesystem", "label", "mountpoint", "luks_key"],
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
            if m.starts_with('/') && !(crate::inventory::forms::MOUNTPOINT.check)(&m) {
                self.diags.push(
                    ProblemBuilder::new(format!("partition `{name}` has an invalid mountpoint"))
                        .at(a.value.span(), "not a plain absolute path")
                        .help(format!("use {}", crate::inventory::forms::MOUNTPOINT.allowed)),
                );
                ok = false;
                return None;
            }
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
        let luks_key = match b.get_attribute("luks_key") {
            Some(a) if kind != PartitionKind::Filesystem => {
                self.diags.push(
                    ProblemBuilder::new(format!(
                        "only a filesystem partition can be encrypted, not `{name}`"
                    ))
                    .at(a.key.span(), "not for this type")
                    .help("remove `luks_key`, or change `type` to \"filesystem\""),
                );
                ok = false;
                None
            }
            Some(a) => {
                let key = self.string_of(a, &crate::inventory::forms::REMOTE_FILE);
                ok &= key.is_some();
                key
            }
            None => None,
        };
        ok.then(|| {
            (
                Partition {
                    name: name.to_owned(),
                    kind,
                    size,
                    filesystem,
                    label,
                    mountpoint,
                    luks_key,
                },
                size_span,
            )
        })
    }
}
