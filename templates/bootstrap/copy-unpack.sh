# cairn: unpack the closure stream (zstd-compressed tar of nix/store/...) under {{root}},
# recording each store path as complete once tar has moved on to the next one.
set -eu
root={{root}}
done_list=$root/nix/.cairn-copied
if [ -x /usr/bin/tar ]; then tar=/usr/bin/tar; else tar=tar; fi
mkdir -p "$root/nix/store"
status=$(mktemp)
{ zstd -d -c; echo $? > "$status.zstd"; } | { "$tar" -C "$root" -x -v -f - ; echo $? > "$status"; } | {
  current=
  while IFS= read -r line; do
    name=$(echo "$line" | cut -d/ -f3)
    [ -n "$name" ] || continue
    if [ "$name" != "$current" ]; then
      [ -z "$current" ] || echo "$current" >> "$done_list"
      current=$name
    fi
  done
  echo "$current" > "$status.last"
}
rc_tar=$(cat "$status"); rc_zstd=$(cat "$status.zstd"); last=$(cat "$status.last")
rm -f "$status" "$status.zstd" "$status.last"
if [ "$rc_tar" != 0 ] || [ "$rc_zstd" != 0 ]; then
  echo "unpacking failed (zstd exit $rc_zstd, tar exit $rc_tar)" >&2
  exit 1
fi
[ -z "$last" ] || echo "$last" >> "$done_list"
sync
