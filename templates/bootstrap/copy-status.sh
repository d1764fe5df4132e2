# cairn: which store paths are already complete on the target (one name per line).
# A path is complete once the unpacker has moved past it; partial ones are removed here so
# an interrupted copy resumes cleanly.
set -eu
store={{root}}/nix/store
done_list={{root}}/nix/.cairn-copied
mkdir -p "$store"
touch "$done_list"
for p in "$store"/* "$store"/.[!.]*; do
  [ -e "$p" ] || continue
  name=${p##*/}
  if ! grep -qxF "$name" "$done_list"; then
    chmod -R u+w "$p" 2>/dev/null || true
    rm -rf "$p"
  fi
done
cat "$done_list"
