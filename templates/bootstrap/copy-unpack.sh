# cairn: unpack the closure stream (zstd-compressed tar of nix/store/...) under $root,
# recording each store path as complete once tar has moved on to the next one. One awk reads
# tar's listing: a fork per line would throttle tar on a slow CPU (kernel modules are
# thousands of files), and the list would lag behind what is really on disk.
set -eu
root={{root}}
done_list=$root/nix/.cairn-copied
pidfile=$root/nix/.cairn-unpack.pid
if [ -x /usr/bin/tar ]; then tar=/usr/bin/tar; else tar=tar; fi
mkdir -p "$root/nix/store"
# Who is unpacking (process group and start time), so that a later run can stop this one if
# its connection was cut while tar was still writing (copy-status.sh).
read -r line < /proc/$$/stat
rest=${line##*) }
set -- $rest
group=$3
read -r line < "/proc/$group/stat"
rest=${line##*) }
set -- $rest
echo "$group ${20}" > "$pidfile"
status=$(mktemp)
{ zstd -d -c; echo $? > "$status.zstd"; } | { "$tar" -C "$root" -x -v -f - ; echo $? > "$status"; } |
  awk -v list="$done_list" -v last="$status.last" '
    substr($0, 1, 10) != "nix/store/" { next }
    { name = substr($0, 11); i = index(name, "/"); if (i) name = substr(name, 1, i - 1) }
    name != cur { if (cur != "") { print cur >> list; fflush(list) } cur = name }
    END { print cur > last }'
rc_tar=$(cat "$status"); rc_zstd=$(cat "$status.zstd"); last=$(cat "$status.last")
rm -f "$status" "$status.zstd" "$status.last"
if [ "$rc_tar" != 0 ] || [ "$rc_zstd" != 0 ]; then
  echo "unpacking failed (zstd exit $rc_zstd, tar exit $rc_tar)" >&2
  rm -f "$pidfile"
  exit 1
fi
[ -z "$last" ] || echo "$last" >> "$done_list"
rm -f "$pidfile"
sync
