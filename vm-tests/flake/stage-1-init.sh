#!/bin/sh
# Stage 1 (initrd): load the drivers, mount the root filesystem by label, switch to it.
# Kernel parameters: root=LABEL=<label> init=<toplevel>/init.
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "cairn-test-initrd: loading drivers"
for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m" 2>/dev/null || true
done

root=LABEL=root
init=
for arg in $(cat /proc/cmdline); do
    case $arg in
    root=*) root=${arg#root=} ;;
    init=*) init=${arg#init=} ;;
    esac
done

fail() {
    echo "cairn-test-initrd: error: $*"
    echo "cairn-test-initrd: rebooting in 10 s"
    sleep 10
    echo b >/proc/sysrq-trigger
}

i=0
dev=
while [ -z "$dev" ]; do
    case $root in
    LABEL=* | UUID=*) dev=$(findfs "$root" 2>/dev/null) || dev= ;;
    *) [ -b "$root" ] && dev=$root ;;
    esac
    [ -n "$dev" ] && break
    i=$((i + 1))
    [ "$i" -le 30 ] || fail "root filesystem $root not found"
    sleep 1
done
echo "cairn-test-initrd: mounting $dev ($root)"
mount -o rw "$dev" /sysroot || fail "cannot mount $dev"
[ -n "$init" ] && [ -x "/sysroot$init" ] || fail "init $init is not on the root filesystem"
mkdir -p /sysroot/dev /sysroot/proc /sysroot/sys /sysroot/run /sysroot/tmp
mount --move /dev /sysroot/dev
umount /proc /sys
exec switch_root /sysroot "$init"
