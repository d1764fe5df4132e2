#!/usr/bin/env bash
# Per-phase timings of one whole `cairn bootstrap host web1` on a local QEMU VM: the offline
# example fleet of vm-tests/make-fleet (stock Debian image -> kexec installer -> the vm-tests
# test system, ~145 MiB in 8 store paths), then `cairn destroy`. Prints the phase table
# bootstrap ends with, the waits (provision, reach, kexec, verify: the VM booting), cairn's
# own time (every other phase), the copy's own figures, the wall time and the load.
#
# Under software emulation (TCG, as here: KVM does not work on these machines) and with
# other load on the cores, the figures vary by +-30-50% from run to run; run it on an idle
# machine. Images are cached (~/.cache/cairn/vm); the first run builds them.
#
# Usage: benches/bootstrap.sh          CAIRN=path/to/cairn to use a given build
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$here/target}
if [ -z "${CAIRN:-}" ]; then
  cargo build --quiet --manifest-path "$here/Cargo.toml" --bin cairn
  CAIRN=$target_dir/debug/cairn
fi
work=$(mktemp -d /tmp/cairn-bench-bootstrap.XXXXXX)
fleet=$work/fleet
cleanup() {
  if [ -d "$fleet/.cairn/qemu/web1" ]; then
    (cd "$fleet" && "$CAIRN" -q destroy host web1 --yes) || true
  fi
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

"$here/vm-tests/make-fleet" "$fleet" >/dev/null
export SOPS_AGE_KEY_FILE=$fleet/keys/admin.agekey NO_COLOR=1
export NIX_CONFIG=$'substitute = false\nflake-registry =\nsandbox = false'
cd "$fleet"
# --skip-check: the fleet of make-fleet has no .sops.yaml, which `cairn check` now reports
# before a bootstrap; the check is not what this measures.
start=$(date +%s.%N)
if ! "$CAIRN" bootstrap host web1 --yes --skip-check >"$work/out" 2>"$work/err"; then
  cat "$work/out" "$work/err" >&2
  echo "bootstrap failed" >&2
  exit 1
fi
end=$(date +%s.%N)

echo "| phase      | seconds |"
echo "|------------|--------:|"
# cairn's own time: the phases that do not wait for the VM. provision, reach, kexec and
# verify are mostly the machine booting (twice) and kexec'ing under TCG; what cairn can cut
# is in the others.
awk -v phases="^(provision|reach|kexec|disk|keys|build|copy|install|reboot|verify)$" '
     $1 ~ phases && $2 ~ /^[0-9.]+$/ && $3 == "s" { printf "| %-10s | %7s |\n", $1, $2
       if ($1 ~ /^(provision|reach|kexec|verify)$/) waits += $2; else own += $2 }
     $1 ~ phases && $2 ~ /^skipped/ { printf "| %-10s | %7s |\n", $1, "skipped" }
     END { printf "| %-10s | %7.1f |\n| %-10s | %7.1f |\n", "waits", waits, "cairn own", own }' "$work/out"
printf '| %-10s | %7.1f |\n' "wall" "$(echo "$end - $start" | bc)"
echo "load: $(uptime)"
grep -hE "^web1 +copy |copy: " "$work/err" | sed -E 's/^(web1 +copy +|.*copy: )/copy: /' | grep -v "sent so far"
