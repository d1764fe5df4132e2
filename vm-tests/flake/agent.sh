#!@busybox@/bin/sh
# A stand-in for the GitOps agent (comin): says it runs, on the console and in /run.
export PATH=@out@/sw/bin
while true; do
    echo "cairn-test-agent: running" >/dev/ttyS0
    date +%s >/run/cairn-test-agent.alive
    sleep 60
done
