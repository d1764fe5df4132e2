#!@busybox@/bin/sh
# switch-to-configuration boot: make this system the one the boot loader starts, like
# NixOS's command of the same name. With NIXOS_INSTALL_BOOTLOADER=1 it also installs the
# boot loader: extlinux on the /boot partition and syslinux's gptmbr.bin in the disk's MBR
# (the partition needs the GPT legacy BIOS bootable attribute). Runs on the installed
# system or in a chroot of it (with /proc, /sys and /dev mounted, as nixos-enter does).
set -eu
export PATH=@out@/sw/bin
system=@out@
die() {
    echo "switch-to-configuration: error: $*" >&2
    exit 1
}
case ${1:-} in
boot | switch) ;;
*) die "usage: switch-to-configuration boot (this test system supports boot and switch)" ;;
esac

[ -r /proc/mounts ] || die "/proc is not mounted"
bootdev=$(awk '$2 == "/boot" { print $1 }' /proc/mounts | tail -n 1)
[ -n "$bootdev" ] || die "/boot is not a mounted filesystem"

id=$(basename "$system" | cut -c1-32)
mkdir -p /boot/cairn /boot/extlinux
cp "$system/kernel" "/boot/cairn/$id-bzImage.tmp"
cp "$system/initrd" "/boot/cairn/$id-initrd.tmp"
mv "/boot/cairn/$id-bzImage.tmp" "/boot/cairn/$id-bzImage"
mv "/boot/cairn/$id-initrd.tmp" "/boot/cairn/$id-initrd"
cat >/boot/extlinux/extlinux.conf.tmp <<CONF
# Written by $system/bin/switch-to-configuration
DEFAULT cairn
PROMPT 0
TIMEOUT 1
LABEL cairn
  LINUX /cairn/$id-bzImage
  INITRD /cairn/$id-initrd
  APPEND root=LABEL=root init=$system/init $(cat "$system/kernel-params")
CONF
mv /boot/extlinux/extlinux.conf.tmp /boot/extlinux/extlinux.conf
# Old generations' files are kept out of a small /boot.
for f in /boot/cairn/*; do
    case $f in "/boot/cairn/$id-"*) ;; *) rm -f "$f" ;; esac
done
mkdir -p /nix/var/nix/profiles
sync

if [ "${NIXOS_INSTALL_BOOTLOADER:-0}" = 1 ]; then
    part=${bootdev##*/}
    [ -e "/sys/class/block/$part/partition" ] || die "$bootdev is not a partition"
    disk=/dev/$(basename "$(readlink -f "/sys/class/block/$part/..")")
    [ -b "$disk" ] || die "cannot find the disk holding $bootdev"
    extlinux --install /boot/extlinux >/dev/null
    dd if=@extlinux@/share/gptmbr.bin of="$disk" bs=440 count=1 conv=notrunc 2>/dev/null
    sync
    echo "switch-to-configuration: extlinux installed on $bootdev, gptmbr.bin on $disk" >&2
fi
echo "switch-to-configuration: $system will boot next" >&2
