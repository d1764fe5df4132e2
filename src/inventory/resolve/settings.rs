//! Settings a host, `defaults` and providers share: how a host is installed, a qemu VM's
//! resources, and the deadlines of the bootstrap waits.

use hcl::Value;
use hcl_edit::structure::{Attribute, Body};
use hcl_edit::Span;

use super::{keep, Resolver};
use crate::inventory::diag::ProblemBuilder;
use crate::inventory::eval::check_attributes;
use crate::inventory::model::*;
use crate::inventory::Limit;

impl Resolver<'_> {
    /// `installer`, `installer_min_memory` or `copy`, on a provider, a host or `defaults`.
    pub(super) fn install_setting(
        &mut self,
        install: &mut InstallSettings,
        attr: &Attribute,
    ) -> bool {
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
            "kexec" => self.boolean(attr).map(|b| install.kexec = Some(b)).is_some(),
            _ => unreachable!("not an install setting: {}", attr.key.as_str()),
        }
    }

    /// `memory`, `cpus` or `disk_size` of a qemu VM, on a host or its provider.
    pub(super) fn vm_setting(&mut self, vm: &mut VmSettings, attr: &Attribute) -> bool {
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
    pub(super) fn checksum(&mut self, slot: &mut Option<Checksum>, attr: &Attribute) -> bool {
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

    pub(super) fn copy_strategy(&mut self, attr: &Attribute) -> Option<CopyStrategy> {
        let names = CopyStrategy::ALL.map(CopyStrategy::as_str);
        self.one_of(attr, &names)?.parse().ok()
    }

    /// The `timeouts { reach = "5m" disk = "20m" ... }` block of `body`, if any (`owner` names it in
    /// messages). `None` when it has problems (reported).
    pub(super) fn timeouts_of(&mut self, body: &Body, owner: &str) -> Option<Timeouts> {
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
        let names = Limit::names();
        check_attributes(self.diags, &block.body, "timeouts", &names, &[]);
        let mut out = Timeouts::default();
        for attr in block.body.attributes() {
            let Ok(limit) = attr.key.as_str().parse::<Limit>() else {
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
                    out.set(limit, d);
                }
                Err(why) => {
                    self.diags.push(
                        ProblemBuilder::new(format!("`{limit}` is not a valid duration"))
                            .at(attr.value.span(), "expected a duration")
                            .help(why),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}
