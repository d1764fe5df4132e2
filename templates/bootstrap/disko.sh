# cairn: partition, format and mount the disk with the flake's own disko script.
# The script's closure was streamed into $staging/nix/store; it refers to /nix/store, so
# the paths the installer lacks are moved there first. The script then partitions, formats
# and mounts the target at /mnt, as disko does.
set -eu
staging={{staging}}
script={{script}}
mkdir -p /nix/store
# A NixOS installer mounts its store read-only.
if ! touch /nix/store/.cairn-write-test 2>/dev/null; then
  mount -o remount,rw /nix/store 2>/dev/null || mount -o remount,rw,bind /nix/store
else
  rm -f /nix/store/.cairn-write-test
fi
for p in "$staging"/nix/store/* "$staging"/nix/store/.[!.]*; do
  [ -e "$p" ] || [ -L "$p" ] || continue
  name=${p##*/}
  [ -e "/nix/store/$name" ] || [ -L "/nix/store/$name" ] || mv "$p" "/nix/store/$name"
done
[ -x "$script" ] || { echo "cairn-disko: $script is not an executable file" >&2; exit 1; }
echo "cairn-disko: running $script" >&2
exec "$script"
