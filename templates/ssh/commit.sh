# cairn upload, second step for streams of unknown size: verify the size of the temp file
# written by upload.sh, fsync it and rename it over the target.
# Named arguments: CAIRN_DEST, CAIRN_TMP, CAIRN_SIZE (bytes sent).
set -eu
t=$CAIRN_TMP
trap 'rm -f -- "$t"' EXIT
n=$(wc -c < "$t")
n=$((n + 0))
if [ "$n" != "$CAIRN_SIZE" ]; then
  echo "cairn: received $n bytes, expected $CAIRN_SIZE" >&2
  echo "$n"
  exit 3
fi
sync "$t" 2>/dev/null || sync
mv -f -- "$t" "$CAIRN_DEST"
trap - EXIT
sync "$(dirname -- "$CAIRN_DEST")" 2>/dev/null || true
echo "$n"
