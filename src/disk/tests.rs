use std::path::PathBuf;

use super::*;
use crate::inventory::model::{DiskLayoutName, SourceSpan};

fn part(
    name: &str,
    kind: PartitionKind,
    size: PartitionSize,
    filesystem: Option<Filesystem>,
    label: Option<&str>,
    mountpoint: Option<&str>,
) -> Partition {
    Partition {
        name: name.into(),
        kind,
        size,
        filesystem,
        label: label.map(Into::into),
        mountpoint: mountpoint.map(Into::into),
        luks_key: None,
    }
}

fn layout(device: &str, partitions: Vec<Partition>) -> DiskLayout {
    DiskLayout {
        name: DiskLayoutName::new("test").unwrap(),
        device: device.into(),
        partitions,
        span: SourceSpan {
            file: PathBuf::from("cairn.hcl"),
            offset: 0,
            len: 0,
            line: 1,
            column: 1,
        },
    }
}

pub(super) fn uefi() -> DiskLayout {
    use PartitionKind::*;
    layout(
        "/dev/vda",
        vec![
            part("ESP", Esp, PartitionSize::Mib(512), None, Some("boot"), None),
            part(
                "root",
                Filesystem,
                PartitionSize::Rest,
                Some(super::Filesystem::Ext4),
                Some("nixos"),
                Some("/"),
            ),
        ],
    )
}

pub(super) fn grub_bios_with_swap() -> DiskLayout {
    use PartitionKind::*;
    layout(
        "/dev/sda",
        vec![
            part("bios", BiosBoot, PartitionSize::Mib(1), None, None, None),
            part("swap", Swap, PartitionSize::Mib(2048), None, Some("swap"), None),
            part(
                "root",
                Filesystem,
                PartitionSize::Rest,
                Some(super::Filesystem::Ext4),
                Some("nixos"),
                Some("/"),
            ),
        ],
    )
}

/// What the VM tests' installed system boots with: extlinux on a legacy-bootable vfat /boot.
fn extlinux_legacy() -> DiskLayout {
    use PartitionKind::*;
    layout(
        "/dev/vda",
        vec![
            part("boot", LegacyBoot, PartitionSize::Mib(256), None, Some("BOOT"), None),
            part(
                "root",
                Filesystem,
                PartitionSize::Rest,
                Some(super::Filesystem::Ext4),
                Some("root"),
                Some("/"),
            ),
        ],
    )
}

fn nvme_btrfs_xfs() -> DiskLayout {
    use PartitionKind::*;
    layout(
        "/dev/nvme0n1",
        vec![
            part("ESP", Esp, PartitionSize::Mib(1024), None, Some("ESP"), Some("/boot")),
            part(
                "data",
                Filesystem,
                PartitionSize::Mib(40960),
                Some(super::Filesystem::Xfs),
                Some("data"),
                Some("/var/lib"),
            ),
            part(
                "root",
                Filesystem,
                PartitionSize::Rest,
                Some(super::Filesystem::Btrfs),
                Some("nixos"),
                Some("/"),
            ),
        ],
    )
}

pub(super) fn render(l: &DiskLayout) -> String {
    render_script(l, &ScriptOptions::default()).unwrap()
}

#[test]
fn uefi_layout_script() {
    insta::assert_snapshot!(render(&uefi()));
}

#[test]
fn grub_bios_layout_with_swap_script() {
    insta::assert_snapshot!(render(&grub_bios_with_swap()));
}

#[test]
fn extlinux_legacy_layout_script() {
    insta::assert_snapshot!(render(&extlinux_legacy()));
}

#[test]
fn nvme_layout_mounts_parents_first() {
    let s = render(&nvme_btrfs_xfs());
    let root = s.find("mount_part 3 / btrfs").expect("root mounted");
    let boot = s.find("mount_part 1 /boot vfat").expect("boot mounted");
    let var = s.find("mount_part 2 /var/lib xfs").expect("data mounted");
    assert!(root < boot && root < var, "{s}");
    // 1 GiB ESP: the default cluster size is enough.
    assert!(s.contains("format_vfat 1 ESP ''"), "{s}");
}

#[test]
fn by_id_check_is_rendered() {
    let opts = ScriptOptions {
        target: "/mnt".into(),
        expected_by_id: Some("/dev/disk/by-id/virtio-cairn disk".into()),
        ..ScriptOptions::default()
    };
    let s = render_script(&uefi(), &opts).unwrap();
    assert!(s.contains("expected_by_id='/dev/disk/by-id/virtio-cairn disk'\n"), "{s}");
}

#[test]
fn min_bytes_counts_fixed_partitions_and_gpt() {
    // 1 + 2048 MiB fixed, 1 MiB for the rest, 2 MiB of GPT.
    assert!(render(&grub_bios_with_swap())
        .contains(&format!("min_bytes={}\n", (1 + 2048 + 1 + 2) * MIB)));
}

#[test]
fn rendered_scripts_parse_in_sh_and_busybox() {
    let layouts = [uefi(), grub_bios_with_swap(), extlinux_legacy(), nvme_btrfs_xfs()];
    let checks = layouts.iter().map(|l| render_device_check(l, &ScriptOptions::default()).unwrap());
    for s in layouts.iter().map(render).chain(checks) {
        for shell in [&["sh", "-n"][..], &["busybox", "sh", "-n"][..]] {
            let Ok(mut child) = std::process::Command::new(shell[0])
                .args(&shell[1..])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
            else {
                assert!(shell[0] != "sh", "no sh");
                continue; // busybox is optional on a developer machine
            };
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{shell:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// The check a disko host's layout gets: everything up to the wipe, nothing after.
#[test]
fn the_device_check_touches_nothing() {
    let check = render_device_check(&uefi(), &ScriptOptions::default()).unwrap();
    let full = render(&uefi());
    assert!(check.lines().next() == full.lines().next(), "a shell script");
    assert!(check.contains("does not exist; check disk_layout"), "{check}");
    assert!(check.contains("the layout needs at least"), "{check}");
    let code: Vec<&str> = check.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    for touches in ["wipefs", "sgdisk", "mkfs", "mount ", "swapoff", "umount"] {
        assert!(!code.iter().any(|l| l.contains(touches)), "the check runs {touches}:\n{check}");
    }
}

fn run_script(s: &str) -> (bool, String) {
    let out = std::process::Command::new("sh").arg("-c").arg(s).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn refuses_a_missing_device() {
    let mut l = uefi();
    l.device = "/dev/cairn-no-such-disk".into();
    let (ok, err) = run_script(&render(&l));
    assert!(!ok);
    assert_eq!(
        err,
        "cairn-disk: error: /dev/cairn-no-such-disk does not exist; check disk_layout \"test\" in cairn.hcl\n"
    );
}

#[test]
fn refuses_something_that_is_not_a_block_device() {
    let mut l = uefi();
    l.device = "/dev/null".into();
    let (ok, err) = run_script(&render(&l));
    assert!(!ok);
    assert_eq!(err, "cairn-disk: error: /dev/null (/dev/null) is not a block device\n");
}

#[test]
fn layout_without_root_is_refused() {
    let mut l = uefi();
    l.partitions[1].mountpoint = Some("/srv".into());
    let e = render_script(&l, &ScriptOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "disk layout `test` has no partition mounted at `/`");
}

#[test]
fn rest_must_be_last() {
    let mut l = uefi();
    l.partitions.swap(0, 1);
    let e = render_script(&l, &ScriptOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "disk layout `test`: partition `root` takes the rest of the disk but is not the last one"
    );
}

#[test]
fn vfat_label_longer_than_eleven_is_refused() {
    let mut l = uefi();
    l.partitions[0].label = Some("much-too-long".into());
    let e = render_script(&l, &ScriptOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "disk layout `test`, partition `ESP`: label `much-too-long` is not valid here"
    );
}

#[test]
fn swap_with_a_mountpoint_is_refused() {
    let mut l = grub_bios_with_swap();
    l.partitions[1].mountpoint = Some("/swap".into());
    let e = render_script(&l, &ScriptOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "disk layout `test`, partition `swap`: swap takes no filesystem and no mountpoint"
    );
}

#[test]
fn duplicate_labels_and_mountpoints_are_refused() {
    let mut l = nvme_btrfs_xfs();
    l.partitions[1].label = Some("nixos".into());
    let e = render_script(&l, &ScriptOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "disk layout `test`: two partitions are labelled `nixos`");
    let mut l = nvme_btrfs_xfs();
    l.partitions[1].mountpoint = Some("/boot".into());
    let e = render_script(&l, &ScriptOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "disk layout `test`: two partitions are mounted at `/boot`");
}

#[test]
fn odd_mountpoints_are_refused() {
    for m in ["relative", "/a/../b", "/a b", "/boot/"] {
        let mut l = nvme_btrfs_xfs();
        l.partitions[1].mountpoint = Some(m.into());
        assert!(render_script(&l, &ScriptOptions::default()).is_err(), "{m}");
    }
}

#[test]
fn hostile_names_stay_data() {
    let mut l = uefi();
    l.partitions[1].name = "root'; reboot; '".into();
    let s = render(&l);
    assert!(s.contains(r#"new_part 2 0 8300 'root'\''; reboot; '\'''"#), "{s}");
}

/// Device paths, partition names, labels and mountpoints an inventory would refuse, given to
/// the renderer directly: the scripts still parse, and running them starts only what the
/// template means to run (every command is a logging stub; `readlink` and `cat` log and then
/// run the real tool).
#[test]
fn hostile_values_run_only_the_commands_the_template_means() {
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("bin");
    fs_err::create_dir(&stubs).unwrap();
    let log = dir.path().join("commands.log");
    let pwned = dir.path().join("PWNED");
    let commands = [
        "wipefs",
        "sgdisk",
        "mkfs.vfat",
        "mkfs.ext4",
        "mkfs.btrfs",
        "mkfs.xfs",
        "mkswap",
        "mount",
        "umount",
        "swapon",
        "swapoff",
        "blockdev",
        "udevadm",
        "mkdir",
        "sleep",
        "awk",
        "grep",
        "sort",
        "reboot",
        "touch",
        "rm",
        "id",
    ];
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
    for c in commands {
        stub(c, "exit 0");
    }
    for c in ["readlink", "cat"] {
        let real = ["/usr/bin/", "/bin/"]
            .iter()
            .map(|d| format!("{d}{c}"))
            .find(|p| std::path::Path::new(p).exists())
            .unwrap();
        stub(c, &format!("exec {real} \"$@\""));
    }
    let touch = format!("touch {}", pwned.display());
    let devices = [
        "/dev/vda\nwipefs -a /dev/sda #".to_owned(),
        format!("/dev/$({touch})"),
        format!("/dev/`{touch}`"),
        format!("/dev/x\"; {touch}; \""),
        format!("/dev/x'; {touch}; '"),
        "/dev/vda #\nreboot".to_owned(),
    ];
    let mut l = uefi();
    l.partitions[0].name = format!("ESP\"; {touch}; \"");
    l.partitions[1].name = format!("root$({touch})");
    for device in &devices {
        l.device = device.clone();
        let full = render(&l);
        let check = render_device_check(&l, &ScriptOptions::default()).unwrap();
        for s in [&full, &check] {
            let out = std::process::Command::new("sh").arg("-n").arg("-c").arg(s).output().unwrap();
            assert!(out.status.success(), "sh -n: {}\n{s}", String::from_utf8_lossy(&out.stderr));
            let _ = fs_err::remove_file(&log);
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(s)
                .env_clear()
                .env("PATH", &stubs)
                .current_dir(dir.path())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "a device that does not exist was accepted: {stderr}");
            assert!(stderr.contains("does not exist; check disk_layout \"test\""), "{stderr}");
            let ran = fs_err::read_to_string(&log).unwrap_or_default();
            assert_eq!(ran, "", "commands ran for device {device:?}");
            assert!(!pwned.exists(), "a value ran as code: {device:?}");
        }
    }

    // A device path full of shell syntax that really exists (a symlink to a block device):
    // the check runs readlink and cat on it, as data, and nothing else.
    let Some(block) = ["/dev/loop0", "/dev/loop1", "/dev/zram0"].into_iter().find(|p| {
        fs_err::metadata(p)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
    }) else {
        return;
    };
    // The layout's device must be under /dev: a private directory in /dev/shm holds the link.
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else { return };
    let weird = shm.path().join("x$(touch PWNED);`touch PWNED`;'\"y");
    std::os::unix::fs::symlink(block, &weird).unwrap();
    l.device = weird.display().to_string();
    let check = render_device_check(&l, &ScriptOptions::default()).unwrap();
    let _ = fs_err::remove_file(&log);
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&check)
        .env_clear()
        .env("PATH", &stubs)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ran = fs_err::read_to_string(&log).unwrap_or_default();
    let name = block.trim_start_matches("/dev/");
    let meant =
        [format!("readlink -f {}", weird.display()), format!("cat /sys/class/block/{name}/size")];
    let ran: Vec<&str> = ran.lines().collect();
    assert!(
        ran.iter().all(|r| meant.iter().any(|m| m == r)),
        "unexpected commands: {ran:?}\n{stderr}"
    );
    assert_eq!(
        ran.first(),
        Some(&meant[0].as_str()),
        "the check did not get to the device: {stderr}"
    );
    assert!(!pwned.exists(), "a value ran as code");
}
