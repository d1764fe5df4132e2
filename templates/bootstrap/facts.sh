# cairn: what the target is right now. One `key=value` per line; runs as root, POSIX sh.
set -u
# A missing file would end a POSIX shell at `.`, so look first.
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "os_id=${ID:-unknown}"
echo "os_variant=${VARIANT_ID:-}"
if [ -e /etc/cairn-installer ] || [ "${VARIANT_ID:-}" = installer ]; then
  echo "installer=yes"
else
  echo "installer=no"
fi
echo "boot_id=$(cat /proc/sys/kernel/random/boot_id)"
echo "arch=$(uname -m)"
echo "mem_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
# Physical RAM, as the installer's "1 GB of physical RAM" means it: MemTotal leaves out
# what the kernel reserved (a 1 GiB VM shows about 980 MiB). The online memory blocks count
# it whole where the kernel has them (memory hotplug, most cloud kernels).
blocks=/sys/devices/system/memory
if [ -r $blocks/block_size_bytes ]; then
  size=$(cat $blocks/block_size_bytes)
  online=0
  for f in $blocks/memory*/online; do
    [ -r "$f" ] && [ "$(cat "$f")" = 1 ] && online=$((online + 1))
  done
  [ "$online" -gt 0 ] && echo "phys_kib=$((0x$size / 1024 * online))"
fi
# What the running system's root is (the last mount on / wins): a rescue system runs from
# RAM, with nothing it needs on the disks.
awk '$2 == "/" { fs = $3 } END { print "root_fs=" fs }' /proc/mounts
echo "hostname=$(cat /proc/sys/kernel/hostname)"
if grep -q ' /mnt ' /proc/mounts; then echo "mnt_mounted=yes"; else echo "mnt_mounted=no"; fi
# The marker the install leaves on the system it installed (the host's name).
if [ -r /var/lib/cairn/host ]; then echo "cairn_host=$(head -c 256 /var/lib/cairn/host | head -n 1)"; fi
