# cairn: jump into the installer bundle unpacked at the directory below. Its `kexec/run` loads the
# kernel, carries the SSH host keys and authorized keys across, and kexecs a moment after
# returning, so this session ends cleanly first.
set -eu
cd {{dir}}
if [ ! -x kexec/run ]; then
  echo "the installer bundle has no executable kexec/run" >&2
  exit 1
fi
./kexec/run
