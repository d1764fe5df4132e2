# cairn: whether the installer bundle with this sha256 is unpacked in the directory below
# already (an earlier attempt's, completely: the marker is written after the unpack), and how
# much room the directory's file system has for it otherwise. One `key=value` per line.
set -u
dir={{dir}}
sha256={{sha256}}
marker=$dir/.cairn-bundle-sha256
if [ -f "$marker" ] && [ -x "$dir/kexec/run" ] && [ "$(cat "$marker")" = "$sha256" ]; then
  echo "cached=yes"
else
  echo "cached=no"
fi
parent=${dir%/*}
mkdir -p "$parent"
echo "free_kib=$(df -Pk "$parent" | awk 'NR == 2 { print $4 }')"
# What an earlier bundle there takes, which the upload frees first.
if [ -d "$dir" ]; then echo "old_kib=$(du -sk "$dir" | awk '{ print $1 }')"; fi
