# cairn: between copy-status.sh and copy-unpack.sh, in the same exec (one channel, one remote
# shell: each exec costs round trips and a login shell's start). cairn reads the status above
# up to `ready`, then answers with the line `go BYTES STREAM`: BYTES of registration
# (nix-store --dump-db format; 0 for none) follow at once, then the closure stream when
# STREAM is `stream` (`none`: the target holds every path already). `read` takes one byte
# at a time from a pipe, and `dd ... iflag=fullblock` asks for no more than it needs, so
# what follows stays for the next reader.
echo ready
if ! IFS=' ' read -r cairn_go cairn_registration cairn_stream; then
  echo "cairn ended the copy before sending it" >&2
  exit 1
fi
case "$cairn_go $cairn_registration $cairn_stream" in
  "go "[0-9]*" stream" | "go "[0-9]*" none") ;;
  *) echo "cairn: expected 'go BYTES stream|none' before the copy" >&2; exit 2 ;;
esac
cairn_reg={{root}}/tmp/.cairn-registration
rm -f "$cairn_reg"
if [ "$cairn_registration" -gt 0 ]; then
  mkdir -p {{root}}/tmp
  dd of="$cairn_reg" bs="$cairn_registration" count=1 iflag=fullblock 2>/dev/null
  if [ "$(wc -c < "$cairn_reg" | tr -d ' ')" -ne "$cairn_registration" ]; then
    echo "the registration arrived cut short" >&2
    exit 1
  fi
fi
