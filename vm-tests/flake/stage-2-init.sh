#!@busybox@/bin/sh
# Stage 2: the system's init. Mounts the API filesystems, writes /etc/inittab and hands over
# to busybox init, which runs `activate` once and keeps the agent (and the comin stand-in,
# when the system has one) running.
export PATH=@out@/sw/bin
# (Debian's busybox has no `mountpoint` applet.)
mounted() { [ -r /proc/mounts ] && awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/mounts; }
mounted /proc || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /run /tmp /etc
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
chmod 1777 /tmp
cat >/etc/inittab <<INITTAB
::sysinit:@out@/activate
::respawn:@out@/agent
::ctrlaltdel:@busybox@/bin/reboot
::shutdown:@busybox@/bin/swapoff -a
::shutdown:@busybox@/bin/umount -a -r
INITTAB
if [ -x @out@/sw/bin/comin ]; then
    echo "::respawn:@out@/sw/bin/comin run" >>/etc/inittab
fi
exec @busybox@/bin/init
