# cairn: prepended to the scripts that chroot into the target (install.sh, register.sh).
set -eu
# One chroot user at a time: a run killed mid-way leaves its script running here, and its
# cleanup would unmount /dev, /proc and /sys under the next run's feet. Wait for it (a lock
# directory holding the holder's pid; a dead holder's lock is taken over).
if [ -d /run ]; then lockdir=/run/cairn-chroot.lock; else lockdir=/tmp/cairn-chroot.lock; fi
waited=0
while ! mkdir "$lockdir" 2>/dev/null; do
  holder=$(cat "$lockdir/pid" 2>/dev/null || true)
  if [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; then rm -rf "$lockdir"; continue; fi
  waited=$((waited + 1))
  if [ "$waited" -ge 600 ]; then
    echo "another cairn run's chroot work (pid ${holder:-?}) still holds $lockdir after 10 minutes" >&2
    exit 1
  fi
  sleep 1
done
echo $$ > "$lockdir/pid"
