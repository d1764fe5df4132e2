#!@busybox@/bin/sh
# STAND-IN for systemctl, used only by cairn's VM tests: this test system runs busybox init,
# not systemd. It answers the one question cairn's health checks ask of a unit,
# `systemctl is-active UNIT`, as systemctl does (prints the state; exit 0 when active, 3
# otherwise), for the units this system has: comin.service (the stand-in's daemon).
export PATH=@out@/sw/bin
[ "${1:-}" = is-active ] && [ $# -eq 2 ] || {
    echo "this stand-in answers only: systemctl is-active UNIT" >&2
    exit 1
}
case $2 in
comin.service | comin)
    pid=$(cat /run/comin.pid 2>/dev/null) || pid=
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo active
        exit 0
    fi
    ;;
esac
echo inactive
exit 3
