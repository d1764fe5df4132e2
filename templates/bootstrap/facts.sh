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
if grep -q ' /mnt ' /proc/mounts; then echo "mnt_mounted=yes"; else echo "mnt_mounted=no"; fi
# The marker the install leaves on the system it installed (the host's name).
if [ -r /var/lib/cairn/host ]; then echo "cairn_host=$(head -c 256 /var/lib/cairn/host | head -n 1)"; fi
