# cairn upload: receive stdin into a private temp file next to the target, then (when the
# expected size is known) verify the size, fsync and rename it over the target.
# Named arguments: CAIRN_DEST, CAIRN_TMP (same directory), CAIRN_MODE (octal), CAIRN_OWNER
# (uid:gid, or empty: the login's), CAIRN_SIZE (bytes, or empty: then the caller commits with commit.sh).
set -eu
umask 077
t=$CAIRN_TMP
trap 'rm -f -- "$t"' EXIT
trap 'exit 129' HUP INT TERM PIPE
if [ -d "$CAIRN_DEST" ]; then
  echo "cairn: $CAIRN_DEST is a directory" >&2
  exit 2
fi
# noclobber: the temp file is created here, empty and private, or not at all
set -C
: > "$t"
set +C
# Owner before mode (chown clears set-id bits), both before the first byte.
[ -z "${CAIRN_OWNER:-}" ] || chown "$CAIRN_OWNER" "$t"
chmod "$CAIRN_MODE" "$t"
cat > "$t"
n=$(wc -c < "$t")
n=$((n + 0))
if [ -n "$CAIRN_SIZE" ]; then
  if [ "$n" != "$CAIRN_SIZE" ]; then
    echo "cairn: received $n bytes, expected $CAIRN_SIZE" >&2
    echo "$n"
    exit 3
  fi
  sync "$t" 2>/dev/null || sync
  mv -f -- "$t" "$CAIRN_DEST"
  sync "$(dirname -- "$CAIRN_DEST")" 2>/dev/null || true
fi
trap - EXIT
echo "$n"
