# cairn: make $system the system profile and install the boot loader from inside the
# chroot with the system's own switch-to-configuration, as nixos-install does.
set -eu
# chroot-lock.sh, prepended, holds $lockdir: cleanup releases it.
root={{root}}
system={{system}}
host={{host}}
profiles=$root/nix/var/nix/profiles
mkdir -p "$profiles" "$root/etc" "$root/dev" "$root/proc" "$root/sys" "$root/run" "$root/tmp"
chmod 1777 "$root/tmp"
ln -sfn "$system" "$profiles/system-1-link"
ln -sfn system-1-link "$profiles/system"
[ -e "$root/etc/NIXOS" ] || touch "$root/etc/NIXOS"
mounted=
cleanup() { for m in $mounted; do umount -l "$m" 2>/dev/null || true; done; rm -rf "$lockdir"; }
trap cleanup EXIT
for d in dev proc sys; do
  if ! grep -q " $root/$d " /proc/mounts; then mount --bind "/$d" "$root/$d"; mounted="$root/$d $mounted"; fi
done
if ! grep -q " $root/run " /proc/mounts; then mount -t tmpfs -o mode=0755 none "$root/run"; mounted="$root/run $mounted"; fi
ln -sfn /proc/mounts "$root/etc/mtab"
# Activation sets up /etc and users; a failure here is reported but not fatal, as in
# nixos-enter: the boot loader is what must be installed.
if [ -x "$system/activate" ]; then
  chroot "$root" "$system/activate" 1>&2 || echo "warning: activation inside the chroot reported an error" >&2
fi
NIXOS_INSTALL_BOOTLOADER=1 chroot "$root" "$system/bin/switch-to-configuration" boot
# The marker that says which host cairn installed here: with state lost, a later bootstrap
# reads it and refuses to wipe the installed system.
mkdir -p "$root/var/lib/cairn"
printf '%s\n' "$host" > "$root/var/lib/cairn/host"
