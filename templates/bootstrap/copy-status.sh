# cairn: which store paths are already complete on the target. A path is complete once the
# unpacker has moved past it (it is then listed in .cairn-copied); anything else in the store
# was cut off by an interrupted copy and is removed here, so the copy resumes cleanly.
# Prints `complete NAME` and `removed NAME` lines.
set -eu
store={{root}}/nix/store
done_list={{root}}/nix/.cairn-copied
mkdir -p "$store"
touch "$done_list"
for p in "$store"/* "$store"/.[!.]*; do
  [ -e "$p" ] || [ -L "$p" ] || continue
  name=${p##*/}
  if grep -qxF "$name" "$done_list"; then
    echo "complete $name"
  else
    chmod -R u+w "$p" 2>/dev/null || true
    rm -rf "$p"
    echo "removed $name"
  fi
done
