#!/usr/bin/env bash
# The closure transfer side by side, in one run, on the same target and the same closure:
#   raw       tar -c | ssh 'tar -x'           (uncompressed: the link's limit)
#   cairn     cairn copy-closure              (the copy phase's code: zstd tar over one SSH
#                                              channel, resume bookkeeping, then registration
#                                              with the closure's own nix-store --load-db)
#   nix copy  nix copy --to ssh://...?remote-store=local?root=...   (the `nix-copy` strategy,
#                                              what nixos-anywhere runs; registers as it goes)
#
# Where: NOT the QEMU installer. Our test installer has no Nix, so `nix copy` cannot run
# against it. All three therefore go to a local OpenSSH server (127.0.0.1), with this
# machine's nix-bin as the remote store, into a fresh directory standing in for /mnt, twice:
#   1. over plain loopback: no bandwidth limit, so this measures each tool's own cost (CPU
#      for compression, encryption, unpacking, registration) on these 2 cores;
#   2. through forwarders that limit the upload to each rate of $LINKS (default "12m 100m":
#      12 MiB/s, about a 100 Mbit/s uplink and what the QEMU VMs' slirp link carries, and
#      100 MiB/s, a gigabit LAN): `socat` runs `pv -L RATE | socat - TCP:sshd` per
#      connection, the same link for all tools.
# "nix copy -C" is nix copy with compress=true (ssh -C, zlib), as nixos-anywhere runs it.
#
# The closure: the vm-tests test system (kernel, initrd, busybox, dropbear, sops, nix, ...;
# ~145 MiB in 8 paths), built with vm-tests/make-fleet, or any store path given as $1.
# cairn: $CAIRN, else the debug build in $CARGO_TARGET_DIR (dependencies at opt-level 1);
# a release build is faster still.
#
# Usage: benches/transfer.sh [STORE_PATH]     RUNS=3 (hyperfine runs per tool), LINKS="12m 100m"
# Needs: hyperfine, sshd, nix-bin, tar, zstd, socat, pv; root (the registration chroots).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-3}
read -r -a links <<<"${LINKS:-12m 100m}"
target_dir=${CARGO_TARGET_DIR:-$here/target}
[ "$(id -u)" = 0 ] || { echo "run as root (the registration chroots, sshd logs in as root)" >&2; exit 1; }
export NIX_CONFIG=$'substitute = false\nflake-registry =\nsandbox = false\nbuild-users-group =\nexperimental-features = nix-command flakes'

if [ -z "${CAIRN:-}" ]; then
  cargo build --quiet --manifest-path "$here/Cargo.toml" --bin cairn
  CAIRN=$target_dir/debug/cairn
fi
work=$(mktemp -d /tmp/cairn-bench-transfer.XXXXXX)
sshd_pid=
limiter_pids=()
cleanup() {
  [ -z "$sshd_pid" ] || kill "$sshd_pid" 2>/dev/null || true
  for pid in "${limiter_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Never follow a mount (the registration bind-mounts /dev, /proc, /sys while it runs).
  if grep -q " $work/" /proc/mounts; then
    echo "transfer.sh: mounts left under $work; not removing it" >&2
  else
    rm -rf --one-file-system "$work"
  fi
}
trap cleanup EXIT

toplevel=${1:-}
if [ -z "$toplevel" ]; then
  echo "building the test system's closure (vm-tests/make-fleet)..." >&2
  "$here/vm-tests/make-fleet" "$work/fleet" >/dev/null
  toplevel=$(cd "$work/fleet" && nix build --no-link --json .#nixosConfigurations.web1.config.system.build.toplevel |
    sed 's/.*"out":"\([^"]*\)".*/\1/')
fi
mapfile -t paths < <(nix path-info --recursive "$toplevel")
nar=$(nix path-info --recursive --size "$toplevel" | awk '{s += $2} END {printf "%.0f", s / 1048576}')
rel=()
for p in "${paths[@]}"; do rel+=("${p#/}"); done
printf '%s\n' "${rel[@]}" > "$work/paths"

# --- a local sshd on a free port, its host key pinned for every client below -------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/host_key.pub")" > "$work/known_hosts"
cat > "$work/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
EOF
mkdir -p /run/sshd
/usr/sbin/sshd -D -f "$work/sshd_config" -E "$work/sshd.log" &
sshd_pid=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
# The rate-limited ways in: the same sshd behind a forwarder per rate that caps the upload.
lports=()
for link in "${links[@]}"; do
  lport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "[127.0.0.1]:$lport $(cut -d' ' -f1,2 "$work/host_key.pub")" >> "$work/known_hosts"
  printf '#!/bin/sh\npv -q -L %s | socat - TCP:127.0.0.1:%s\n' "$link" "$port" > "$work/limit-$link.sh"
  chmod +x "$work/limit-$link.sh"
  socat "TCP-LISTEN:$lport,bind=127.0.0.1,reuseaddr,fork" "EXEC:$work/limit-$link.sh" &
  limiter_pids+=($!)
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$lport) 2>/dev/null && break; sleep 0.1; done
  lports+=("$lport")
done
root=$work/target
prepare="if grep -q ' $root/' /proc/mounts; then exit 1; fi; rm -rf --one-file-system $root"

echo "load: $(uptime)"
# One hyperfine run of the four over port $1; the table goes to stdout.
compare() {
  local p=$1 label=$2
  local sshopts="-p $p -i $work/client_key -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$work/known_hosts -o GlobalKnownHostsFile=/dev/null -o BatchMode=yes"
  local url="ssh://root@127.0.0.1?remote-store=local%3Froot%3D${root//\//%2F}"
  echo "== $label: $toplevel (${#paths[@]} paths, $nar MiB), $runs runs each" >&2
  hyperfine --style basic --runs "$runs" --prepare "$prepare" --export-json "$work/result.json" \
    -n raw "tar -C / -cf - -T $work/paths | ssh $sshopts root@127.0.0.1 'mkdir -p $root && tar -C $root -xf -'" \
    -n cairn "$CAIRN -q copy-closure --to root@127.0.0.1:$p --host-key $work/host_key.pub -i $work/client_key --root $root $toplevel" \
    -n 'nix copy' "NIX_SSHOPTS='$sshopts' nix copy --to '$url' $toplevel" \
    -n 'nix copy -C' "NIX_SSHOPTS='$sshopts' nix copy --to '$url&compress=true' $toplevel" >&2
  python3 - "$work/result.json" "$nar" "$label" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
nar, label = float(sys.argv[2]), sys.argv[3]
raw = results["raw"]["median"]
print(f"\n{label}: {nar:.0f} MiB of store paths, median of {len(results['raw']['times'])} runs")
print(f"| {'method':<11} | {'median s':>8} | {'MiB/s':>6} | {'vs raw':>6} |")
print(f"|{'-' * 13}|{'-' * 10}|{'-' * 8}|{'-' * 8}|")
for name in ["raw", "cairn", "nix copy", "nix copy -C"]:
    m = results[name]["median"]
    print(f"| {name:<11} | {m:>8.2f} | {nar / m:>6.1f} | {m / raw:>5.2f}x |")
cairn = results["cairn"]["median"]
best_nix = min(results["nix copy"]["median"], results["nix copy -C"]["median"])
print(f"cairn: {cairn / raw:.2f}x the raw link (goal <= 1.2x); "
      f"{'faster' if cairn < best_nix else 'slower'} than the faster nix copy ({best_nix / cairn:.2f}x)")
PY
}

compare "$port" "loopback, no limit"
for i in "${!links[@]}"; do
  compare "${lports[$i]}" "loopback limited to ${links[$i]}/s upload"
done

# Proof the runs did the work: after one more cairn copy, the target holds every path, and
# its Nix database knows them.
eval "$prepare"
$CAIRN -q copy-closure --to "root@127.0.0.1:$port" --host-key "$work/host_key.pub" -i "$work/client_key" --root "$root" "$toplevel"
missing=0
for p in "${rel[@]}"; do [ -e "$root/$p" ] || missing=$((missing + 1)); done
valid=$(nix-store --store "local?root=$root" --check-validity --print-invalid "${paths[@]}" | wc -l)
echo "load after: $(uptime)"
echo "check: cairn left $(( ${#paths[@]} - missing )) of ${#paths[@]} paths, $valid unregistered" >&2
