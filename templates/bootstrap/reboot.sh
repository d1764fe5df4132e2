# cairn: unmount the target and reboot into it, a moment after this session has ended.
set -u
sync
swapoff -a 2>/dev/null || true
umount -R /mnt 2>/dev/null || umount -l /mnt 2>/dev/null || true
# ZFS pools are exported, as nixos-anywhere does, so the installed system imports them at boot
# without forcing (the installer's import would make it refuse). No pools: a no-op.
if command -v zpool >/dev/null 2>&1; then
  echo "cairn-reboot: zpool export -a" >&2
  zpool export -a || echo "warning: zpool export -a failed: the installed system may have to force-import its pools" >&2
fi
sync
# cairn: the reboot itself
( sleep 1; reboot -f || echo b > /proc/sysrq-trigger ) >/dev/null 2>&1 </dev/null &
echo rebooting
