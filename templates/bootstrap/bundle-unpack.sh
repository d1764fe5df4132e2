# cairn: unpack the installer bundle arriving on stdin into the directory below, and mark it
# with its sha256 only once the whole of it is there: a cut upload leaves no marker, so the
# next attempt uploads it again.
set -eu
dir={{dir}}
sha256={{sha256}}
decompress={{decompress}}
rm -rf "$dir"
mkdir -p "$dir"
status=$dir/.cairn-decompress-status
# The decompressor's own status too: tar may end quietly on a stream cut between two files.
# shellcheck disable=SC2086 # the command and its flags
{ st=0; $decompress || st=$?; echo "$st" > "$status"; } | tar -x -f - -C "$dir"
[ "$(cat "$status" 2>/dev/null)" = 0 ] || { echo "the installer bundle arrived incomplete" >&2; exit 1; }
rm -f "$status"
printf '%s\n' "$sha256" > "$dir/.cairn-bundle-sha256.tmp"
mv "$dir/.cairn-bundle-sha256.tmp" "$dir/.cairn-bundle-sha256"
