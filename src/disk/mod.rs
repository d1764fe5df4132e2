//! Disk layouts rendered into partition/format/mount scripts.
//!
//! A [`DiskLayout`] from the inventory becomes one POSIX shell script
//! (`templates/disk/partition.sh`) that the installer runs as root. The script checks that the
//! device is the one the inventory names, wipes it, creates GPT partitions with `sgdisk`,
//! formats them with labels, mounts root at the target (`/mnt`) and the others below it, and
//! enables swap. Re-running it re-creates the layout from scratch (see the template's header).

use crate::inventory::model::{DiskLayout, Filesystem, Partition, PartitionKind, PartitionSize};
use crate::util::shell::ShellCommand;
use crate::util::template::{self, TemplateError, Vars};

const TEMPLATE_NAME: &str = "templates/disk/partition.sh";
const TEMPLATE: &str = include_str!("../../templates/disk/partition.sh");

const MIB: u64 = 1024 * 1024;
/// GPT overhead: the first MiB (alignment, primary table) and the backup table at the end.
const GPT_OVERHEAD_MIB: u64 = 2;
/// vfat partitions smaller than this get one sector per cluster, so FAT32 has enough clusters.
const SMALL_VFAT_MIB: u64 = 512;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum DiskError {
    #[error("disk layout `{layout}` has no partition mounted at `/`")]
    #[diagnostic(
        code(cairn::disk::no_root),
        help("give one filesystem partition `mountpoint = \"/\"`")
    )]
    NoRoot { layout: String },

    #[error("disk layout `{layout}`, partition `{partition}`: {problem}")]
    #[diagnostic(code(cairn::disk::partition))]
    Partition {
        layout: String,
        partition: String,
        problem: String,
        #[help]
        help: Option<String>,
    },

    #[error("disk layout `{layout}`: {problem}")]
    #[diagnostic(code(cairn::disk::layout))]
    Layout {
        layout: String,
        problem: String,
        #[help]
        help: Option<String>,
    },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Template(#[from] TemplateError),
}

/// Options of the rendered script beyond the layout itself.
#[derive(Debug, Clone)]
pub struct ScriptOptions {
    /// Where root is mounted (`/mnt`).
    pub target: String,
    /// A `/dev/disk/by-id/...` path that must resolve to the layout's device, so a renamed
    /// disk (`vda` and `vdb` swapped between boots) is never wiped by mistake.
    pub expected_by_id: Option<String>,
    /// Whether the installer holds disk encryption keys in its RAM. Then the new swap is
    /// formatted but not turned on during the install: the kernel could page a key out to
    /// it, unencrypted (the same holds for a layout with an encrypted partition).
    pub keys_in_ram: bool,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        Self { target: "/mnt".into(), expected_by_id: None, keys_in_ram: false }
    }
}

/// One partition with the defaults applied and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    number: usize,
    name: String,
    type_code: &'static str,
    size: PartitionSize,
    legacy_bootable: bool,
    filesystem: Option<Filesystem>,
    label: Option<String>,
    mountpoint: Option<String>,
    luks_key: Option<String>,
}

/// Where the device check of the partition script ends (a line of the template).
const END_OF_CHECK: &str = "# cairn: end of the device check\n";

/// Renders only the device check of [`render_script`]: is the layout's device there, a whole
/// disk, the `expected_by_id` one, large enough? Touches nothing; used before a flake's own
/// disko script partitions the disk.
pub fn render_device_check(
    layout: &DiskLayout,
    options: &ScriptOptions,
) -> Result<String, DiskError> {
    let script = render_script(layout, options)?;
    let end = script.find(END_OF_CHECK).ok_or_else(|| DiskError::Layout {
        layout: layout.name.to_string(),
        problem: "the partition template has no end-of-check marker".into(),
        help: Some("this is a bug in cairn".into()),
    })?;
    // The partition script's header says what it destroys: not this one.
    let body = script[..end].find("set -eu\n").map_or(&script[..end], |i| &script[i..end]);
    // Values only ever appear quoted in the assignments of the body, never in a comment.
    Ok(format!(
        "#!/bin/sh\n# cairn: is $device the disk that disk layout $layout names? (Touches nothing.)\n{body}\
         log \"$device is $disk, $bytes bytes: the disk the inventory names\"\n"
    ))
}

/// Renders the partition/format/mount script for `layout`.
pub fn render_script(layout: &DiskLayout, options: &ScriptOptions) -> Result<String, DiskError> {
    let planned = plan(layout)?;
    let fixed_mib: u64 = planned
        .iter()
        .map(|p| match p.size {
            PartitionSize::Mib(n) => n,
            PartitionSize::Rest => 1,
        })
        .sum();
    let min_bytes = (fixed_mib + GPT_OVERHEAD_MIB) * MIB;

    let mut partitions = Vec::new();
    for p in &planned {
        let size = match p.size {
            PartitionSize::Mib(n) => format!("+{n}M"),
            PartitionSize::Rest => "0".into(),
        };
        partitions.push(
            ShellCommand::new("new_part")
                .arg(p.number.to_string())
                .arg(size)
                .arg(p.type_code)
                .arg(p.name.clone()),
        );
    }
    for p in planned.iter().filter(|p| p.legacy_bootable) {
        partitions.push(ShellCommand::new("legacy_bootable").arg(p.number.to_string()));
    }

    // The kernel's view of the new table, checked before anything is formatted.
    let mut checks = vec![ShellCommand::new("check_count").arg(planned.len().to_string())];
    for p in &planned {
        let mib = match p.size {
            PartitionSize::Mib(n) => n,
            PartitionSize::Rest => 0,
        };
        checks.push(ShellCommand::new("check_part").arg(p.number.to_string()).arg(mib.to_string()));
    }

    let mut formats = Vec::new();
    for p in &planned {
        if let Some(key) = &p.luks_key {
            formats.push(
                ShellCommand::new("luks_format")
                    .arg(p.number.to_string())
                    .arg(key.clone())
                    .arg(format!("crypt-{}", p.name)),
            );
        }
    }
    for p in &planned {
        let label = p.label.clone().unwrap_or_default();
        let number = p.number.to_string();
        let cmd = match (p.type_code, p.filesystem) {
            ("8200", _) => ShellCommand::new("format_swap").arg(number).arg(label),
            (_, Some(Filesystem::Vfat)) => {
                let small = matches!(p.size, PartitionSize::Mib(n) if n < SMALL_VFAT_MIB);
                ShellCommand::new("format_vfat").arg(number).arg(label).arg(if small {
                    "1"
                } else {
                    ""
                })
            }
            (_, Some(Filesystem::Ext4)) => ShellCommand::new("format_ext4").arg(number).arg(label),
            (_, Some(Filesystem::Btrfs)) => {
                ShellCommand::new("format_btrfs").arg(number).arg(label)
            }
            (_, Some(Filesystem::Xfs)) => ShellCommand::new("format_xfs").arg(number).arg(label),
            (_, None) => continue,
        };
        formats.push(cmd);
    }

    let mut mounted: Vec<&Planned> = planned.iter().filter(|p| p.mountpoint.is_some()).collect();
    mounted.sort_by_key(|p| {
        let m = p.mountpoint.as_deref().unwrap_or_default();
        (m.split('/').filter(|c| !c.is_empty()).count(), m.to_owned())
    });
    let mut mounts = Vec::new();
    for p in mounted {
        let (fstype, opts) = match p.filesystem {
            Some(Filesystem::Vfat) => ("vfat", "umask=0077"),
            Some(Filesystem::Ext4) => ("ext4", ""),
            Some(Filesystem::Btrfs) => ("btrfs", ""),
            Some(Filesystem::Xfs) => ("xfs", ""),
            None => continue,
        };
        mounts.push(
            ShellCommand::new("mount_part")
                .arg(p.number.to_string())
                .arg(p.mountpoint.clone().unwrap_or_default())
                .arg(fstype)
                .arg(opts),
        );
    }
    let keys_in_ram = options.keys_in_ram || planned.iter().any(|p| p.luks_key.is_some());
    for p in planned.iter().filter(|p| p.type_code == "8200") {
        if keys_in_ram {
            mounts.push(ShellCommand::new("log").arg(format!(
                "not turning on swap {} while a disk key is in RAM (the installed system will)",
                p.name
            )));
        } else {
            mounts.push(ShellCommand::new("swap_on").arg(p.number.to_string()));
        }
    }

    let vars = Vars::new()
        .word("layout", layout.name.as_str())
        .word("device", layout.device.clone())
        .word("expected_by_id", options.expected_by_id.clone().unwrap_or_default())
        .word("min_bytes", min_bytes.to_string())
        .word("target", options.target.clone())
        .commands("partitions", partitions)
        .commands("checks", checks)
        .commands("formats", formats)
        .commands("mounts", mounts);
    Ok(template::render(TEMPLATE_NAME, TEMPLATE, &vars)?)
}

/// Applies defaults (ESP: vfat at /boot) and checks the layout as a whole.
fn plan(layout: &DiskLayout) -> Result<Vec<Planned>, DiskError> {
    let lname = layout.name.as_str();
    let layout_err = |problem: String, help: Option<&str>| DiskError::Layout {
        layout: lname.to_owned(),
        problem,
        help: help.map(str::to_owned),
    };
    if !layout.device.starts_with("/dev/") {
        return Err(layout_err(
            format!("device `{}` is not under /dev", layout.device),
            Some("name the whole disk, e.g. `/dev/vda` or `/dev/disk/by-id/...`"),
        ));
    }
    if layout.partitions.is_empty() {
        return Err(layout_err("has no partitions".into(), None));
    }
    if layout.partitions.len() > 128 {
        return Err(layout_err("has more than 128 partitions, the GPT maximum".into(), None));
    }

    let mut planned = Vec::new();
    for (i, part) in layout.partitions.iter().enumerate() {
        let p = plan_partition(lname, i + 1, part)?;
        if p.size == PartitionSize::Rest && i + 1 != layout.partitions.len() {
            return Err(layout_err(
                format!(
                    "partition `{}` takes the rest of the disk but is not the last one",
                    part.name
                ),
                Some("only the last partition may use the rest of the disk"),
            ));
        }
        planned.push(p);
    }

    let mut seen = std::collections::BTreeSet::new();
    for p in &planned {
        if let Some(m) = &p.mountpoint {
            if !seen.insert(m.clone()) {
                return Err(layout_err(format!("two partitions are mounted at `{m}`"), None));
            }
        }
    }
    let mut labels = std::collections::BTreeSet::new();
    for p in &planned {
        if let Some(l) = &p.label {
            if !labels.insert(l.clone()) {
                return Err(layout_err(
                    format!("two partitions are labelled `{l}`"),
                    Some("the installed system mounts filesystems by label: labels must be unique"),
                ));
            }
        }
    }
    if !seen.contains("/") {
        return Err(DiskError::NoRoot { layout: lname.to_owned() });
    }
    Ok(planned)
}

fn plan_partition(layout: &str, number: usize, part: &Partition) -> Result<Planned, DiskError> {
    let err = |problem: String, help: Option<&str>| DiskError::Partition {
        layout: layout.to_owned(),
        partition: part.name.clone(),
        problem,
        help: help.map(str::to_owned),
    };
    let mut p = Planned {
        number,
        name: part.name.clone(),
        type_code: "8300",
        size: part.size,
        legacy_bootable: false,
        filesystem: part.filesystem,
        label: part.label.clone(),
        mountpoint: part.mountpoint.clone(),
        luks_key: part.luks_key.clone(),
    };
    match part.kind {
        PartitionKind::Esp => {
            p.type_code = "ef00";
            if p.filesystem.is_some_and(|f| f != Filesystem::Vfat) {
                return Err(err("an EFI system partition must be vfat".into(), None));
            }
            p.filesystem = Some(Filesystem::Vfat);
            p.mountpoint.get_or_insert_with(|| "/boot".into());
        }
        PartitionKind::LegacyBoot => {
            p.legacy_bootable = true;
            p.filesystem.get_or_insert(Filesystem::Vfat);
            p.mountpoint.get_or_insert_with(|| "/boot".into());
        }
        PartitionKind::BiosBoot => {
            p.type_code = "ef02";
            if p.filesystem.is_some() || p.mountpoint.is_some() {
                return Err(err(
                    "a BIOS boot partition holds GRUB's core image: no filesystem, no mountpoint"
                        .into(),
                    None,
                ));
            }
            if p.size == PartitionSize::Rest {
                return Err(err(
                    "a BIOS boot partition needs a fixed size (1 MiB is enough)".into(),
                    None,
                ));
            }
        }
        PartitionKind::Swap => {
            p.type_code = "8200";
            if p.filesystem.is_some() || p.mountpoint.is_some() {
                return Err(err("swap takes no filesystem and no mountpoint".into(), None));
            }
        }
        PartitionKind::Filesystem => {
            if p.filesystem.is_none() {
                return Err(err(
                    "a filesystem partition needs `filesystem`".into(),
                    Some("one of ext4, btrfs, xfs, vfat"),
                ));
            }
        }
    }
    if p.size == PartitionSize::Mib(0) {
        return Err(err("size is 0".into(), None));
    }
    if p.luks_key.is_some() && part.kind != PartitionKind::Filesystem {
        return Err(err(
            "only a filesystem partition can be encrypted".into(),
            Some("remove `luks_key`, or make it a `filesystem` partition"),
        ));
    }
    if let Some(m) = &p.mountpoint {
        let valid = m.starts_with('/')
            && (m == "/" || !m.ends_with('/'))
            && !m.split('/').any(|c| c == "." || c == "..")
            && !m.contains("//")
            && !m.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            return Err(err(
                format!("mountpoint `{m}` is not a clean absolute path"),
                Some("use a path like `/`, `/boot` or `/var/lib`, without spaces, `.` or `..`"),
            ));
        }
    }
    if let Some(l) = &p.label {
        let max = match (p.type_code, p.filesystem) {
            ("8200", _) => 16,
            (_, Some(Filesystem::Vfat)) => 11,
            (_, Some(Filesystem::Ext4)) => 16,
            (_, Some(Filesystem::Xfs)) => 12,
            (_, Some(Filesystem::Btrfs)) => 255,
            (_, None) => {
                return Err(err("a label needs a filesystem or swap".into(), None));
            }
        };
        if l.is_empty() || l.len() > max || l.contains('/') || l.chars().any(|c| c.is_control()) {
            return Err(err(
                format!("label `{l}` is not valid here"),
                Some(&format!("use 1 to {max} bytes, no `/` and no control characters")),
            ));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod holder_tests;
#[cfg(test)]
mod luks_tests;
#[cfg(test)]
mod tests;
