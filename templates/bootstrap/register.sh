# cairn: register the copied paths in the target's Nix database, with the closure's own
# nix-store run inside the chroot, so the target needs no Nix. The registration
# (nix-store --dump-db format) is in $root/tmp/.cairn-registration (gate.sh wrote it).
set -eu
# chroot-lock.sh, prepended, holds $lockdir: cleanup releases it; chroot-enter.sh, prepended,
# defines cairn_enter, which builds the chroot as nixos-enter does (nothing mounted for it
# outlives it). Not the installer's own nixos-enter: it refuses a root without /etc/NIXOS and
# runs the system's activation, and neither exists before the install phase.
root={{root}}
nix_store={{nix_store}}
mkdir -p "$root/nix/var/nix/db" "$root/nix/var/nix/profiles" "$root/tmp"
reg=$root/tmp/.cairn-registration
cleanup() { rm -f "$reg"; rm -rf "$lockdir"; }
trap cleanup EXIT
# The target has no /etc/passwd yet, and nix wants USER and HOME.
cairn_enter "$root" env USER=root HOME=/root chroot "$root" "$nix_store" --load-db < "$reg"
# Registered: the copy's bookkeeping has done its job and does not belong on the host.
# (copy-status.sh treats a registered store without it as complete.)
rm -f "$root/nix/.cairn-copied"
