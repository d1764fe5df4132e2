//! `disk.by-id`: kernel device names change between boots on physical machines.

use std::sync::OnceLock;

use regex::Regex;

use super::repo::Scan;
use super::{Finding, RuleId};
use crate::inventory::ProviderKind;

/// `/dev/sda`, `/dev/nvme0n1` (and `/dev/vdb`, `/dev/hda`, `/dev/xvda`): names the kernel
/// hands out in probe order.
pub fn is_unstable_device(device: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^/dev/(?:(?:sd|vd|hd|xvd)[a-z]+|nvme[0-9]+n[0-9]+)$").expect("compiles")
    })
    .is_match(device)
}

pub fn check(scan: &Scan<'_>, out: &mut Vec<Finding>) {
    let inv = scan.fleet.inventory;
    let text = fs_err::read_to_string(&inv.path).unwrap_or_default();
    let file = scan.inventory_file();
    for host in &inv.hosts {
        // Cloud and QEMU machines get their disks in a fixed order; a machine of your own
        // (`existing`) may not.
        if inv.provider_of(host).kind != ProviderKind::Existing {
            continue;
        }
        let Some(layout) = host.disk_layout.as_ref().and_then(|n| inv.disk_layouts.get(n)) else {
            continue;
        };
        if !is_unstable_device(&layout.device) || host.install.disk_by_id.is_some() {
            continue;
        }
        // The `device` line inside the layout's block.
        let line = text
            .lines()
            .enumerate()
            .skip(layout.span.line.saturating_sub(1))
            .find(|(_, l)| l.trim_start().starts_with("device"))
            .map(|(i, _)| i + 1)
            .or(Some(layout.span.line));
        out.push(
            Finding::new(
                RuleId::DiskById,
                format!(
                    "disk layout `{}` of host {} (a machine of its own, provider `{}`) names {}: such names follow probe order and can change between boots",
                    layout.name, host.name, host.provider, layout.device
                ),
            )
            .file(file.clone(), line)
            .host(host.name.as_str())
            .hint(format!(
                "use `device = \"/dev/disk/by-id/...\"` (see `ls -l /dev/disk/by-id` on {}), or pin the disk with `disk_by_id = \"...\"` on the host",
                host.name
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_are_unstable_and_by_id_paths_are_not() {
        for d in ["/dev/sda", "/dev/nvme0n1", "/dev/vdb", "/dev/xvda"] {
            assert!(is_unstable_device(d), "{d}");
        }
        for d in
            ["/dev/disk/by-id/nvme-Samsung_SSD_980_S64", "/dev/sda1", "/dev/nvme0n1p2", "/dev/md0"]
        {
            assert!(!is_unstable_device(d), "{d}");
        }
    }
}
