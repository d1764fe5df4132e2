//! A target disk held by what an installer activates from an old system on it (issue 14,
//! item 5): in the stand-in installer, the disk gets an md RAID1 array carrying an LVM volume
//! group, with a mounted filesystem and an active swap on its logical volumes, which the
//! installer's own boot-time activation (`cairn-activate-storage`: the md arrays the disks'
//! superblocks describe, then `vgchange -a ay`, as the real installer's udev does) brings up;
//! also a swap partition and a mounted plain device-mapper device. The disk phase must
//! release all of it, have the kernel re-read the new table (fatal if it cannot), check the
//! kernel's partitions against it, and the host then installs and verifies from that disk. On
//! the way, the install phase's chroot (item 3) is checked to leave no mount behind in the
//! installer.

use crate::bootstrap_vm::{cairn, console, destroy_leaves_nothing, text, Fleet};

/// Run in the installer: an old system's storage stack on /dev/vda, activated as the
/// installer activates it at boot. No single quotes: it goes inside `sh -c '...'`. (No udev in
/// the stand-in: dmsetup makes the node of a device it created only when asked.)
const OLD_SYSTEM: &str = "
exec </dev/null
sgdisk --zap-all /dev/vda >/dev/null
sgdisk -n1:0:+300M -n2:0:+300M -n3:0:+200M -n4:0:+100M /dev/vda >/dev/null
partx -u /dev/vda
mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 /dev/vda1 /dev/vda2
pvcreate -ff -y /dev/md0
vgcreate old /dev/md0
lvcreate -y -L 100M -n root old
lvcreate -y -L 64M -n swap old
mkfs.ext4 -q -F /dev/old/root
mkswap /dev/old/swap >/dev/null
mkswap /dev/vda3 >/dev/null
vgchange -a n old
mdadm --stop /dev/md0
cairn-activate-storage
dmsetup create plain --table \"0 204800 linear /dev/vda4 0\"
dmsetup mknodes plain
mkfs.ext4 -q -F /dev/mapper/plain
mkdir -p /old /plain
mount /dev/old/root /old
mount /dev/mapper/plain /plain
swapon /dev/old/swap
swapon /dev/vda3
cat /proc/mdstat /proc/swaps
dmsetup ls
";

#[test]
fn a_disk_held_by_md_lvm_and_swap_is_released_and_installed() {
    let Some(fleet) = Fleet::start() else { return };
    let dir = fleet.dir.clone();

    let kexec =
        cairn(&dir, &["bootstrap", "host", "web1", "--yes", "--phases", "provision,reach,kexec"]);
    assert!(kexec.status.success(), "{}\n--- console\n{}", text(&kexec), console(&dir));

    let script = format!("sh -eu -c '{OLD_SYSTEM}'");
    let old = cairn(&dir, &["ssh", "web1", "--phase", "installer", "-T", "--", &script]);
    let old_out = String::from_utf8_lossy(&old.stdout).to_string();
    assert!(old.status.success(), "{}", text(&old));
    // The installer assembled the array and activated the volume group on its own.
    assert!(old_out.contains(" : active raid1 "), "{}", text(&old));
    assert!(old_out.contains("old-root"), "{}", text(&old));
    assert!(old_out.contains("old-swap"), "{}", text(&old));
    assert!(old_out.contains("/dev/vda3"), "swap on a partition: {}", text(&old));

    // The pipeline up to the install, from the disk phase on; -v shows the remote scripts'
    // lines.
    let run = cairn(
        &dir,
        &["-v", "bootstrap", "host", "web1", "--yes", "--phases", "disk,keys,build,copy,install"],
    );
    let err = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "{}\n--- console\n{}", text(&run), console(&dir));
    for released in [
        "cairn-disk: umount /old (on /dev/dm-",
        "cairn-disk: deactivating LVM logical volume old-root",
        "cairn-disk: deactivating LVM logical volume old-swap",
        "cairn-disk: stopping md array /dev/md",
        "cairn-disk: swapoff /dev/vda3",
        "cairn-disk: umount /plain (on /dev/dm-",
        "cairn-disk: deactivating device-mapper device plain",
    ] {
        assert!(err.contains(released), "missing {released:?}:\n{err}");
    }
    assert!(
        err.contains("cairn-disk: swapoff /dev/dm-")
            || err.contains("cairn-disk: swapoff /dev/mapper/old-swap"),
        "the swap on LVM: {err}"
    );
    // The kernel's partitions are the new table's: 128 MiB of boot, then root.
    assert!(
        err.contains("cairn-disk: /dev/vda1: sector 2048, 262144 sectors, as the new table says"),
        "{err}"
    );
    assert!(err.contains("cairn-disk: /dev/vda2: sector 264192, "), "{err}");

    // The install chroot (issue 14, item 3): this installer has no nixos-enter, so cairn built
    // the chroot in its own mount and pid namespaces; nothing it mounted is left in the
    // installer's mount table.
    assert!(
        err.contains("cairn-install: unshare --mount --uts --pid --fork, chroot /mnt"),
        "{err}"
    );
    let mounts = cairn(&dir, &["ssh", "web1", "--phase", "installer", "--", "cat /proc/mounts"]);
    assert!(mounts.status.success(), "{}", text(&mounts));
    let mounts = String::from_utf8_lossy(&mounts.stdout).to_string();
    assert!(mounts.contains(" /mnt ext4 "), "{mounts}");
    for leaked in [" /mnt/dev ", " /mnt/sys ", " /mnt/proc ", " /mnt/run "] {
        assert!(!mounts.contains(leaked), "{leaked:?} leaked into the installer:\n{mounts}");
    }

    // Reboot into the installed system and verify it.
    let run = cairn(&dir, &["bootstrap", "host", "web1", "--yes"]);
    let out = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(run.status.success(), "{}\n--- console\n{}", text(&run), console(&dir));
    assert!(out.contains("\nweb1  verified  "), "{out}");
    assert!(out.contains("from /dev/vda2"), "booted from the new root:\n{out}");

    destroy_leaves_nothing(&dir);
    drop(fleet);
}
