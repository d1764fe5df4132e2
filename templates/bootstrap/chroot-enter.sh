# cairn: prepended (after chroot-lock.sh) to the scripts that run programs in the target's
# chroot (install.sh, register.sh), for when the installer has no nixos-enter of its own.
# `cairn_enter ROOT PROGRAM [ARG...]` runs PROGRAM (on the installer's side: it chroots into
# ROOT itself) with ROOT made as nixos-enter makes it: private mount, pid and UTS namespaces,
# so nothing mounted for the chroot (or by what runs in it) leaks into the installer, and all
# of it goes away with the last process, and the host name the activation sets stays inside; /dev and /sys recursively (efivarfs under /sys must be
# visible to a boot loader's installer), a /proc of the new pid namespace, an empty /run.
cairn_enter() {
  command -v unshare >/dev/null 2>&1 || {
    echo "cairn: this system has neither nixos-enter nor unshare (util-linux) to build the chroot" >&2
    return 1
  }
  mkdir -p "$1/dev" "$1/sys" "$1/proc" "$1/run"
  unshare --mount --uts --pid --fork sh -c '
set -eu
root=$1
shift
mount --make-rprivate /
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0755 none "$root/run"
exec "$@"' cairn-enter "$@"
}
