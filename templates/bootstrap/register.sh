# cairn: register the copied paths in the target's Nix database, with the closure's own
# nix-store run inside the chroot, so the target needs no Nix of its own. The registration
# (nix-store --dump-db format) arrives on stdin.
set -eu
# chroot-lock.sh, prepended, holds $lockdir: cleanup releases it.
root={{root}}
nix_store={{nix_store}}
mkdir -p "$root/nix/var/nix/db" "$root/nix/var/nix/profiles" "$root/dev" "$root/proc" "$root/sys" "$root/tmp"
reg=$root/tmp/.cairn-registration
cat > "$reg"
mounted=
cleanup() { for m in $mounted; do umount -l "$m" 2>/dev/null || true; done; rm -f "$reg"; rm -rf "$lockdir"; }
trap cleanup EXIT
for d in dev proc sys; do
  if ! grep -q " $root/$d " /proc/mounts; then mount --bind "/$d" "$root/$d"; mounted="$root/$d $mounted"; fi
done
# The target has no /etc/passwd yet, and nix wants USER and HOME.
env USER=root HOME=/root chroot "$root" "$nix_store" --load-db < "$reg"
# Registered: the copy's bookkeeping has done its job and does not belong on the host.
# (copy-status.sh treats a registered store without it as complete.)
rm -f "$root/nix/.cairn-copied"
