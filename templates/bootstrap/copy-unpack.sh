# cairn: unpack the closure stream (zstd-compressed tar of nix/store/...) under $root,
# recording each store path as complete once tar has finished the path after it (tar names a
# member before extracting it, and sets a directory's final mode only once it has moved
# past it). One awk reads tar's listing: a fork per line would throttle tar on a slow CPU
# (kernel modules are thousands of files), and the list would lag behind what is on disk.
set -eu
root={{root}}
done_list=$root/nix/.cairn-copied
pidfile=$root/nix/.cairn-unpack.pid
if [ -x /usr/bin/tar ]; then tar=/usr/bin/tar; else tar=tar; fi
# GNU tar extracts a symlink to an absolute target (every symlink between store paths) as an
# empty mode-000 placeholder and makes the link only at the end of the archive; a copy cut
# off before the end left those placeholders in paths recorded as complete (`Permission
# denied` running sw/bin/nix-store). The archive is cairn's own, of relative nix/store
# members: GNU tar may make the links at once.
if "$tar" --version 2>/dev/null | grep -q 'GNU tar'; then links=--absolute-names; else links=; fi
mkdir -p "$root/nix/store"
# Who is unpacking (process group and start time), so that a later run can stop this one if
# its connection was cut while tar was still writing (copy-status.sh).
read -r line < /proc/$$/stat
rest=${line##*) }
set -- $rest
group=$3
# The group's leader may be gone (its members live on): then no start time is recorded.
started=-
if [ -r "/proc/$group/stat" ] && read -r line < "/proc/$group/stat"; then
  rest=${line##*) }
  set -- $rest
  started=${20}
fi
echo "$group $started" > "$pidfile"
status=$(mktemp)
# Each side records its exit status (`|| rc=$?`: under `set -e` a failure would end the
# subshell before it could say so).
{ rc=0; zstd -d -c || rc=$?; echo "$rc" > "$status.zstd"; } |
  { rc=0; "$tar" -C "$root" -x -v $links -f - || rc=$?; echo "$rc" > "$status"; } |
  awk -v list="$done_list" -v last="$status.last" '
    substr($0, 1, 10) != "nix/store/" { next }
    { name = substr($0, 11); i = index(name, "/"); if (i) name = substr(name, 1, i - 1) }
    name != cur { if (prev != "") { print prev >> list; fflush(list) } prev = cur; cur = name }
    END { if (prev != "") print prev > last; if (cur != "") print cur >> last }'
touch "$status.last"
rc_tar=$(cat "$status"); rc_zstd=$(cat "$status.zstd"); last=$(cat "$status.last")
rm -f "$status" "$status.zstd" "$status.last"
if [ "$rc_tar" != 0 ] || [ "$rc_zstd" != 0 ]; then
  # tar stopped at the cut (and finished what it had begun): the path before the last one
  # it named is whole.
  if [ "$(printf '%s\n' "$last" | wc -l)" -ge 2 ]; then
    printf '%s\n' "$last" | head -n 1 >> "$done_list"
  fi
  echo "unpacking failed (zstd exit $rc_zstd, tar exit $rc_tar)" >&2
  rm -f "$pidfile"
  exit 1
fi
[ -z "$last" ] || echo "$last" >> "$done_list"
rm -f "$pidfile"
# No sync: the reboot script syncs before it reboots, and a re-run in the same installer
# reads the page cache. (sync here made the copy wait for the whole write-back.)
