# cairn: make $system the system profile and install the boot loader from inside the
# chroot with the system's own switch-to-configuration, as nixos-install does: through the
# installer's nixos-enter when it has one, else the same chroot built here.
set -eu
# chroot-lock.sh, prepended, holds $lockdir: cleanup releases it; chroot-enter.sh, prepended,
# defines cairn_enter.
root={{root}}
system={{system}}
host={{host}}
profiles=$root/nix/var/nix/profiles
mkdir -p "$profiles" "$root/etc" "$root/dev" "$root/proc" "$root/sys" "$root/run" "$root/tmp"
chmod 1777 "$root/tmp"
ln -sfn "$system" "$profiles/system-1-link"
ln -sfn system-1-link "$profiles/system"
[ -e "$root/etc/NIXOS" ] || touch "$root/etc/NIXOS"
# GRUB needs an mtab.
ln -sfn /proc/mounts "$root/etc/mtab"
enter=
cleanup() { [ -z "$enter" ] || rm -f "$enter"; rm -rf "$lockdir"; }
trap cleanup EXIT
if command -v nixos-enter >/dev/null 2>&1; then
  # The real installer's: it runs the activation, then the command, in its own namespaces.
  echo "cairn-install: nixos-enter --root $root" >&2
  # (stdin is this script: nothing inside may read it)
  NIXOS_INSTALL_BOOTLOADER=1 nixos-enter --root "$root" -- "$system/bin/switch-to-configuration" boot </dev/null
else
  # What nixos-enter does (chroot-enter.sh), then its activation and the boot loader.
  enter=$(mktemp "${TMPDIR:-/tmp}/cairn-enter.XXXXXX")
  cat > "$enter" <<'ENTER'
set -eu
root=$1
system=$2
# Activation sets up /etc and users; as in nixos-enter, a failure is reported, not fatal:
# the boot loader is what must be installed.
LOCALE_ARCHIVE=$system/sw/lib/locale/locale-archive IN_NIXOS_ENTER=1 chroot "$root" "$system/activate" 1>&2 \
  || echo "warning: activation inside the chroot reported an error" >&2
if [ -x "$root$system/sw/bin/systemd-tmpfiles" ]; then
  chroot "$root" "$system/sw/bin/systemd-tmpfiles" --create --remove -E 2>/dev/null \
    || echo "warning: systemd-tmpfiles inside the chroot reported an error" >&2
fi
unset TMPDIR
export NIXOS_INSTALL_BOOTLOADER=1
exec chroot "$root" "$system/bin/switch-to-configuration" boot
ENTER
  echo "cairn-install: unshare --mount --uts --pid --fork, chroot $root" >&2
  cairn_enter "$root" sh "$enter" "$root" "$system" </dev/null
fi
# The marker that says which host cairn installed here: with state lost, a later bootstrap
# reads it and refuses to wipe the installed system.
mkdir -p "$root/var/lib/cairn"
printf '%s\n' "$host" > "$root/var/lib/cairn/host"
