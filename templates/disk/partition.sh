#!/bin/sh
# cairn: partition, format and mount the target disk of disk layout $layout.
#
# Rendered by cairn from templates/disk/partition.sh; values are shell-quoted data.
# POSIX sh, runs under busybox ash. Needs: wipefs, sgdisk, the mkfs.* of the layout, mount.
#
# It DESTROYS everything on the disk. Re-running it is safe and re-creates the layout from
# scratch: it first releases what holds the disk (a previous run's mounts and swap, and what an
# installer activated from an old system on it: LVM, md arrays, dm-crypt), then wipes and
# partitions again, and checks that the kernel uses the new partition table before formatting.
# cairn runs it before copying the system, so a disk half-way through an install holds
# nothing worth keeping.
set -eu

layout={{layout}}
device={{device}}
expected_by_id={{expected_by_id}}
min_bytes={{min_bytes}}
target={{target}}

log() { echo "cairn-disk: $*" >&2; }
die() {
    echo "cairn-disk: error: $*" >&2
    exit 1
}

# --- Is this the disk the inventory names? -------------------------------------------------
[ -e "$device" ] || die "$device does not exist; check disk_layout \"$layout\" in cairn.hcl"
disk=$(readlink -f "$device")
[ -b "$disk" ] || die "$device ($disk) is not a block device"
name=${disk##*/}
[ ! -e "/sys/class/block/$name/partition" ] || die "$device ($disk) is a partition, not a whole disk"
if [ -n "$expected_by_id" ]; then
    [ -e "$expected_by_id" ] || die "$expected_by_id does not exist: refusing to touch $disk, which may be the wrong disk"
    by_id=$(readlink -f "$expected_by_id")
    [ "$by_id" = "$disk" ] || die "$expected_by_id is $by_id, not $disk: refusing to touch the wrong disk"
fi
sectors=$(cat "/sys/class/block/$name/size")
bytes=$((sectors * 512))
[ "$bytes" -ge "$min_bytes" ] || die "$disk holds $bytes bytes; the layout needs at least $min_bytes"

# The device node of partition $1 (/dev/vda2, /dev/nvme0n1p2).
part() {
    case $disk in
    *[0-9]) echo "${disk}p$1" ;;
    *) echo "$disk$1" ;;
    esac
}

# cairn: end of the device check
# --- Release what holds the disk ----------------------------------------------------------
# As disko's disk-deactivate does: an installer assembles the md arrays and activates the LVM
# volume groups it finds, so a disk that held a system may be held by them. Everything stacked
# on the disk and its partitions goes, the top of each stack first: mounts, swap, LVM logical
# volumes, dm-crypt and other device-mapper devices, md arrays.
for m in $(awk -v t="$target" '$2 == t || index($2, t "/") == 1 { print $2 }' /proc/mounts | sort -r); do
    log "umount $m (left by a previous run)"
    umount "$m"
done
# The names a block device's node goes by in /proc/mounts and /proc/swaps.
dev_names() { # dev_names NAME
    echo "/dev/$1"
    [ ! -r "/sys/class/block/$1/dm/name" ] || echo "/dev/mapper/$(cat "/sys/class/block/$1/dm/name")"
}
# unmount_dev NAME: every mount of the block device (by device number, or by node for btrfs).
unmount_dev() {
    devno=$(cat "/sys/class/block/$1/dev")
    names=$(dev_names "$1")
    awk -v d="$devno" -v names="$names" '
        BEGIN { split(names, n, "\n"); for (i in n) node[n[i]] = 1 }
        { for (i = 7; i < NF && $i != "-"; i++); if ($3 == d || ($(i + 2) in node)) print $5 }
    ' /proc/self/mountinfo | sort -r | while read -r m; do
        [ "$m" != / ] || die "/dev/$1 on $disk is mounted at /: is $disk the running system's disk?"
        log "umount $m (on /dev/$1)"
        umount "$m"
    done
}
swapoff_dev() { # swapoff_dev NAME
    for n in $(dev_names "$1"); do
        if grep -q "^$n " /proc/swaps; then
            log "swapoff $n"
            swapoff "$n"
        fi
    done
}
# deactivate NAME: stop the md array or remove the device-mapper device NAME.
deactivate() {
    case $1 in
    md*)
        log "stopping md array /dev/$1"
        if command -v mdadm >/dev/null 2>&1; then
            mdadm --stop "/dev/$1" >&2
        else
            echo clear > "/sys/class/block/$1/md/array_state"
        fi
        ;;
    dm-*)
        dm_name=$(cat "/sys/class/block/$1/dm/name")
        dm_uuid=$(cat "/sys/class/block/$1/dm/uuid" 2>/dev/null || echo)
        case $dm_uuid in
        LVM-*) kind="LVM logical volume" tool=lvchange ;;
        CRYPT-*) kind="dm-crypt device" tool=cryptsetup ;;
        *) kind="device-mapper device" tool=dmsetup ;;
        esac
        log "deactivating $kind $dm_name (/dev/$1)"
        command -v "$tool" >/dev/null 2>&1 || tool=dmsetup
        command -v "$tool" >/dev/null 2>&1 \
            || die "$kind $dm_name holds $disk, and this system has neither $tool nor dmsetup to release it"
        case $tool in
        # A layer LVM does not take by name (a thin pool's) goes by device-mapper's own name.
        lvchange) lvchange -an "/dev/mapper/$dm_name" >&2 || dmsetup remove "$dm_name" >&2 ;;
        cryptsetup) cryptsetup close "$dm_name" >&2 ;;
        dmsetup) dmsetup remove "$dm_name" >&2 ;;
        esac
        ;;
    *) die "/dev/$1 holds $disk and cairn does not know how to release it; release it by hand" ;;
    esac
}
# release NAME: what stacks on the block device NAME (its partitions, their holders), then its
# own mounts and swap; a holder (md, dm) is then stopped. A device gone with the one above it
# (an LVM snapshot's origin) is skipped.
release() {
    [ -e "/sys/class/block/$1" ] || return 0
    for p in "/sys/class/block/$1/$1"*; do
        if [ -e "$p/partition" ]; then release "${p##*/}"; fi
    done
    for h in "/sys/class/block/$1/holders/"*; do
        if [ -e "$h" ]; then release "${h##*/}"; fi
    done
    [ -e "/sys/class/block/$1" ] || return 0
    unmount_dev "$1"
    swapoff_dev "$1"
    if [ -e "/sys/class/block/$1/partition" ]; then
        # At once, as disko does: an installer's udev would assemble the array again from
        # the signatures of a released member.
        [ ! -b "/dev/$1" ] || wipefs -a -q "/dev/$1"
    elif [ "$1" != "$name" ]; then
        deactivate "$1"
    fi
}
release "$name"
if command -v udevadm >/dev/null 2>&1; then
    udevadm settle --timeout=60 || log "udev has not settled after 60 s"
fi
for p in "/sys/class/block/$name" "/sys/class/block/$name/$name"*; do
    [ -e "$p/holders" ] || continue
    held=$(ls "$p/holders")
    [ -z "$held" ] || die "${p##*/} is still held by $held after releasing $disk"
done

# --- Partition -----------------------------------------------------------------------------
log "wiping $disk"
wipefs -a -q "$disk"
sgdisk --zap-all "$disk" >/dev/null

# new_part NUMBER SIZE TYPE NAME: SIZE is +NM (MiB) or 0 (the rest of the disk).
new_part() {
    sgdisk --new="$1:0:$2" --typecode="$1:$3" --change-name="$1:$4" "$disk" >/dev/null
}
# legacy_bootable NUMBER: the GPT "legacy BIOS bootable" attribute that gptmbr.bin boots.
legacy_bootable() {
    sgdisk --attributes="$1:set:2" "$disk" >/dev/null
}
{{partitions}}
# Tell the kernel (partx as the installer has it, else partprobe, else the whole-disk
# ioctl); failing here means the kernel keeps the old table, and formatting would write at
# the old partitions' offsets.
if command -v partx >/dev/null 2>&1; then
    partx -u "$disk" || die "partx -u $disk failed: the kernel still uses the old partition table"
elif command -v partprobe >/dev/null 2>&1; then
    partprobe "$disk" || die "partprobe $disk failed: the kernel still uses the old partition table"
else
    blockdev --rereadpt "$disk" || die "blockdev --rereadpt $disk failed: the kernel still uses the old partition table"
fi
if command -v udevadm >/dev/null 2>&1; then
    udevadm settle --timeout=60 || log "udev has not settled after 60 s; checking the partitions anyway"
fi
# Then wait for the partition nodes (udev or devtmpfs creates them).
wait_part() {
    i=0
    while [ ! -b "$(part "$1")" ]; do
        i=$((i + 1))
        [ "$i" -le 30 ] || die "$(part "$1") did not appear after partitioning $disk"
        sleep 1
    done
}

# --- Check the new table ------------------------------------------------------------------
# The kernel's partitions must be the table just written (sgdisk -i reads it from the disk):
# as many, at the same offsets, of the sizes the layout asks for.
check_count() { # check_count COUNT
    n=0
    for p in "/sys/class/block/$name/$name"*; do
        [ ! -e "$p/partition" ] || n=$((n + 1))
    done
    [ "$n" -eq "$1" ] || die "the kernel sees $n partitions on $disk after partitioning, not $1"
}
check_part() { # check_part NUMBER MIB: MIB 0 is the rest of the disk
    wait_part "$1"
    sys=/sys/class/block/$(basename "$(part "$1")")
    info=$(sgdisk -i "$1" "$disk")
    first=$(echo "$info" | sed -n 's/^First sector: \([0-9]*\).*/\1/p')
    last=$(echo "$info" | sed -n 's/^Last sector: \([0-9]*\).*/\1/p')
    [ -n "$first" ] && [ -n "$last" ] || die "sgdisk -i $1 $disk does not show partition $1"
    # sysfs counts 512-byte sectors, the table logical ones.
    per=$(($(cat "/sys/class/block/$name/queue/logical_block_size") / 512))
    start=$(cat "$sys/start")
    size=$(cat "$sys/size")
    [ "$start" -eq $((first * per)) ] && [ "$size" -eq $(((last - first + 1) * per)) ] \
        || die "$(part "$1"): the kernel has it at sector $start, $size sectors long; the new table says $((first * per)), $(((last - first + 1) * per)) sectors: it still uses the old table"
    [ "$2" -eq 0 ] || [ "$size" -eq $(($2 * 2048)) ] \
        || die "$(part "$1") holds $size sectors, not the $2 MiB the layout asks for"
    log "$(part "$1"): sector $start, $size sectors, as the new table says"
}
{{checks}}

# --- Format --------------------------------------------------------------------------------
# The block device partition $1's filesystem goes on: the partition, or the LUKS mapping
# luks_format opened on it.
dev() {
    eval "d=\${crypt_$1:-}"
    if [ -n "$d" ]; then echo "$d"; else part "$1"; fi
}
# luks_format NUMBER KEY_FILE NAME: LUKS2 on the partition, keyed by KEY_FILE (seeded into
# the installer's RAM by cairn, never on this disk), opened as /dev/mapper/NAME.
luks_format() {
    wait_part "$1"
    [ -f "$2" ] || die "the key file $2 of $(part "$1") is not on the installer: give the host disk_encryption_key \"$2\" in cairn.hcl"
    command -v cryptsetup >/dev/null 2>&1 || die "this installer has no cryptsetup to encrypt $(part "$1")"
    wipefs -a -q "$(part "$1")"
    log "cryptsetup luksFormat $(part "$1") with the key file $2"
    cryptsetup luksFormat --batch-mode --type luks2 --key-file "$2" "$(part "$1")"
    cryptsetup open --key-file "$2" "$(part "$1")" "$3"
    # Without udev (a minimal installer), device-mapper makes the node only when asked.
    [ -b "/dev/mapper/$3" ] || ! command -v dmsetup >/dev/null 2>&1 || dmsetup mknodes "$3"
    [ -b "/dev/mapper/$3" ] || die "cryptsetup opened $(part "$1") but /dev/mapper/$3 did not appear"
    eval "crypt_$1=/dev/mapper/\$3"
    log "opened $(part "$1") as /dev/mapper/$3"
}
# format_* NUMBER LABEL: an empty LABEL means none.
format_vfat() { # format_vfat NUMBER LABEL SECTORS_PER_CLUSTER
    wait_part "$1"
    wipefs -a -q "$(dev "$1")"
    set -- "$(dev "$1")" "$2" "$3"
    log "mkfs.vfat $1 ${2:+(label $2)}"
    mkfs.vfat -F 32 ${3:+-s "$3"} ${2:+-n "$2"} "$1" >/dev/null
}
format_ext4() {
    wait_part "$1"
    wipefs -a -q "$(dev "$1")"
    log "mkfs.ext4 $(dev "$1") ${2:+(label $2)}"
    mkfs.ext4 -F -q ${2:+-L "$2"} "$(dev "$1")"
}
format_btrfs() {
    wait_part "$1"
    wipefs -a -q "$(dev "$1")"
    log "mkfs.btrfs $(dev "$1") ${2:+(label $2)}"
    mkfs.btrfs -f -q ${2:+-L "$2"} "$(dev "$1")" >/dev/null
}
format_xfs() {
    wait_part "$1"
    wipefs -a -q "$(dev "$1")"
    log "mkfs.xfs $(dev "$1") ${2:+(label $2)}"
    mkfs.xfs -f -q ${2:+-L "$2"} "$(dev "$1")"
}
format_swap() {
    wait_part "$1"
    wipefs -a -q "$(part "$1")"
    log "mkswap $(part "$1") ${2:+(label $2)}"
    mkswap ${2:+-L "$2"} "$(part "$1")" >/dev/null
}
{{formats}}

# --- Mount (parents before children) -------------------------------------------------------
mount_part() { # mount_part NUMBER MOUNTPOINT FSTYPE OPTIONS
    dir=$target${2%/}
    mkdir -p "$dir"
    log "mount $(dev "$1") on $dir"
    mount -t "$3" ${4:+-o "$4"} "$(dev "$1")" "$dir"
}
swap_on() {
    log "swapon $(part "$1")"
    swapon "$(part "$1")"
}
{{mounts}}
log "done: $disk is ready under $target"
