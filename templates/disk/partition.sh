#!/bin/sh
# cairn: partition, format and mount the target disk of disk layout $layout.
#
# Rendered by cairn from templates/disk/partition.sh; values are shell-quoted data.
# POSIX sh, runs under busybox ash. Needs: wipefs, sgdisk, the mkfs.* of the layout, mount.
#
# It DESTROYS everything on the disk. Re-running it is safe and re-creates the layout from
# scratch: it first releases what a previous run left (swap, mounts under the target), then
# wipes and partitions again. cairn runs it before copying the system, so a disk half-way
# through an install holds nothing worth keeping.
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
# --- Release what a previous run left behind -----------------------------------------------
for p in "/sys/class/block/$name/$name"*; do
    [ -e "$p" ] || continue
    node=/dev/${p##*/}
    if grep -q "^$node " /proc/swaps; then
        log "swapoff $node (left by a previous run)"
        swapoff "$node"
    fi
done
for m in $(awk -v t="$target" '$2 == t || index($2, t "/") == 1 { print $2 }' /proc/mounts | sort -r); do
    log "umount $m (left by a previous run)"
    umount "$m"
done
in_use=$(awk -v d="$disk" 'index($1, d) == 1 { print $1 " on " $2 }' /proc/mounts)
[ -z "$in_use" ] || die "$disk is in use ($in_use): is it the running system's disk?"

# --- Partition -----------------------------------------------------------------------------
log "wiping $disk"
for p in "/sys/class/block/$name/$name"*; do
    [ -e "$p" ] || continue
    [ ! -b "/dev/${p##*/}" ] || wipefs -a -q "/dev/${p##*/}"
done
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
# Tell the kernel, then wait for the partition nodes (udev or devtmpfs creates them).
blockdev --rereadpt "$disk" 2>/dev/null || true
if command -v udevadm >/dev/null 2>&1; then udevadm settle || true; fi
wait_part() {
    i=0
    while [ ! -b "$(part "$1")" ]; do
        i=$((i + 1))
        [ "$i" -le 30 ] || die "$(part "$1") did not appear after partitioning $disk"
        sleep 1
    done
}

# --- Format --------------------------------------------------------------------------------
# format_* NUMBER LABEL: an empty LABEL means none.
format_vfat() { # format_vfat NUMBER LABEL SECTORS_PER_CLUSTER
    wait_part "$1"
    wipefs -a -q "$(part "$1")"
    set -- "$(part "$1")" "$2" "$3"
    log "mkfs.vfat $1 ${2:+(label $2)}"
    mkfs.vfat -F 32 ${3:+-s "$3"} ${2:+-n "$2"} "$1" >/dev/null
}
format_ext4() {
    wait_part "$1"
    wipefs -a -q "$(part "$1")"
    log "mkfs.ext4 $(part "$1") ${2:+(label $2)}"
    mkfs.ext4 -F -q ${2:+-L "$2"} "$(part "$1")"
}
format_btrfs() {
    wait_part "$1"
    wipefs -a -q "$(part "$1")"
    log "mkfs.btrfs $(part "$1") ${2:+(label $2)}"
    mkfs.btrfs -f -q ${2:+-L "$2"} "$(part "$1")" >/dev/null
}
format_xfs() {
    wait_part "$1"
    wipefs -a -q "$(part "$1")"
    log "mkfs.xfs $(part "$1") ${2:+(label $2)}"
    mkfs.xfs -f -q ${2:+-L "$2"} "$(part "$1")"
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
    log "mount $(part "$1") on $dir"
    mount -t "$3" ${4:+-o "$4"} "$(part "$1")" "$dir"
}
swap_on() {
    log "swapon $(part "$1")"
    swapon "$(part "$1")"
}
{{mounts}}
log "done: $disk is ready under $target"
