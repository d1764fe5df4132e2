//! The partition script's release of what holds the disk, its re-read of the table and its
//! check of the kernel's partitions (issue 14, item 5). The release itself runs on a real
//! installer in `tests/vm/disk_holders.rs`.

use super::tests::{grub_bios_with_swap, render, uefi};

fn position(script: &str, needle: &str) -> usize {
    script.find(needle).unwrap_or_else(|| panic!("{needle:?} is not in the script:\n{script}"))
}

/// Release, wipe, partition, re-read, check, format, mount: in that order.
#[test]
fn the_disk_is_released_before_the_wipe_and_the_table_checked_before_formatting() {
    let s = render(&grub_bios_with_swap());
    let order = [
        "\nrelease \"$name\"\n",
        "is still held by $held after releasing $disk",
        "\nwipefs -a -q \"$disk\"\n",
        "\nnew_part 3 0 8300 root\n",
        "partx -u \"$disk\" || die",
        "\ncheck_count 3\ncheck_part 1 1\ncheck_part 2 2048\ncheck_part 3 0\n",
        "\nformat_swap 2 swap\n",
        "\nmount_part 3 / ext4 ''\n",
    ];
    let at: Vec<usize> = order.iter().map(|n| position(&s, n)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order: {order:?} at {at:?}");
}

/// A failed re-read stops the script: nothing in it swallows a failure with `|| true`.
#[test]
fn a_failed_reread_is_fatal() {
    let s = render(&uefi());
    assert!(!s.contains("|| true"), "{s}");
    for reread in ["partx -u \"$disk\" || die", "partprobe \"$disk\" || die"] {
        assert!(s.contains(reread), "{reread:?}:\n{s}");
    }
    assert!(s.contains("blockdev --rereadpt \"$disk\" || die"), "{s}");
}

/// Each holder kind goes with its own tool, the top of each stack first.
#[test]
fn holders_are_released_with_their_own_tools() {
    let s = render(&uefi());
    for tool in [
        "mdadm --stop \"/dev/$1\"",
        "lvchange -an \"/dev/mapper/$dm_name\"",
        "cryptsetup close \"$dm_name\"",
        "dmsetup remove \"$dm_name\"",
        "swapoff \"$n\"",
        "umount \"$m\"",
    ] {
        assert!(s.contains(tool), "{tool:?}:\n{s}");
    }
    // Holders are released before the device they stand on is unmounted or deactivated.
    let body = &s[position(&s, "\nrelease() {")..];
    assert!(position(body, "release \"${h##*/}\"") < position(body, "unmount_dev \"$1\""));
}

/// The disk the running system's root is on (whatever this machine's `/` is on, when it is a
/// block device) is refused before anything is wiped: every command but the readers is a
/// logging stub, and none of the destructive ones ran.
#[test]
fn the_running_systems_disk_is_refused_before_anything_is_touched() {
    let mountinfo = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
    let Some(root_dev) = mountinfo.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4) == Some(&"/")).then(|| f[2].to_owned())
    }) else {
        return;
    };
    // The whole disk holding `/`: its block device, or the disk of that partition.
    let Some(disk) = fs_err::read_dir("/sys/class/block").unwrap().flatten().find_map(|e| {
        let dev = fs_err::read_to_string(e.path().join("dev")).ok()?;
        (dev.trim() == root_dev).then(|| {
            let real = fs_err::canonicalize(e.path()).ok()?;
            let disk = if e.path().join("partition").exists() { real.parent()? } else { &real };
            Some(disk.file_name()?.to_string_lossy().into_owned())
        })?
    }) else {
        return; // `/` is not on a block device here (overlay, tmpfs)
    };
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("bin");
    fs_err::create_dir(&stubs).unwrap();
    let log = dir.path().join("commands.log");
    let stub = |name: &str, then: &str| {
        let p = stubs.join(name);
        fs_err::write(
            &p,
            format!("#!/bin/sh\nprintf '%s\\n' \"{name} $*\" >>'{}'\n{then}\n", log.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    for c in [
        "wipefs",
        "sgdisk",
        "partx",
        "partprobe",
        "blockdev",
        "mkfs.ext4",
        "mkfs.vfat",
        "mount",
        "umount",
        "swapon",
        "swapoff",
        "mdadm",
        "lvchange",
        "cryptsetup",
        "dmsetup",
        "udevadm",
    ] {
        stub(c, "exit 0");
    }
    for c in ["readlink", "cat", "awk", "sort", "grep", "ls", "basename", "sed"] {
        let Some(real) = ["/usr/bin/", "/bin/"]
            .iter()
            .map(|d| format!("{d}{c}"))
            .find(|p| std::path::Path::new(p).exists())
        else {
            continue;
        };
        stub(c, &format!("exec {real} \"$@\""));
    }
    let mut l = uefi();
    l.device = format!("/dev/{disk}");
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(render(&l))
        .env_clear()
        .env("PATH", &stubs)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("is mounted at /: is /dev/"), "{stderr}");
    assert!(stderr.contains("the running system's disk?"), "{stderr}");
    let ran = fs_err::read_to_string(&log).unwrap_or_default();
    for destructive in ["wipefs", "sgdisk", "partx", "mkfs", "mdadm", "lvchange", "dmsetup"] {
        assert!(!ran.lines().any(|l| l.starts_with(destructive)), "{destructive} ran:\n{ran}");
    }
}
