# cairn: jump into the installer bundle unpacked at the directory below. Its `kexec/run` loads the
# kernel, carries the SSH host keys and authorized keys across, and kexecs a moment after
# returning, so this session ends cleanly first.
set -eu
cd {{dir}}
if [ ! -x kexec/run ]; then
  echo "the installer bundle has no executable kexec/run" >&2
  exit 1
fi
# In a session of its own (as nixos-anywhere runs it), so that the end of this SSH session
# cannot take the delayed `kexec -e` down with it. `--wait` keeps its exit status.
if command -v setsid >/dev/null 2>&1 && setsid --wait true 2>/dev/null; then
  setsid --wait ./kexec/run
else
  ./kexec/run
fi
