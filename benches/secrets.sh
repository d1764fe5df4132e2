#!/usr/bin/env bash
# cairn vs sops 3.11: decrypt one file, encrypt one file, rekey 200 and 1,000 small files
# (cairn in one process vs a loop of `sops updatekeys -y` vs one `sops updatekeys -y` over
# all files). Prints one table of medians and ratios. Not a test: run it by hand.
#   cargo build --release && benches/secrets.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cairn=${CAIRN_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/cairn}
sops=${CAIRN_TEST_SOPS:-$root/.ci/venv/bin/sops}
[ -x "$cairn" ] || { echo "build cairn first: $cairn" >&2; exit 1; }
[ -x "$sops" ] || { echo "sops not found: $sops" >&2; exit 1; }
export SOPS_DISABLE_VERSION_CHECK=1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config"
mkdir -p "$HOME"
age-keygen -o a.key 2>/dev/null; age-keygen -o b.key 2>/dev/null; age-keygen -o c.key 2>/dev/null
A=$(age-keygen -y a.key); B=$(age-keygen -y b.key); C=$(age-keygen -y c.key)
export SOPS_AGE_KEY_FILE="$work/a.key"

# one medium YAML file for decrypt/encrypt
{
  echo "# service secrets"
  for i in $(seq 1 200); do echo "key_$i: value number $i with some text"; done
  echo "nested:"; for i in $(seq 1 50); do echo "    n_$i: $i"; done
} > plain.yaml
printf 'creation_rules:\n  - age: %s,%s\n' "$A" "$B" > .sops.yaml
"$sops" encrypt plain.yaml > enc.yaml

make_repo() { # $1 = dir, $2 = count
  mkdir -p "$1/secrets"
  printf 'creation_rules:\n  - path_regex: ^secrets/\n    age: %s,%s\n' "$A" "$B" > "$1/.sops.yaml"
  for i in $(seq 1 "$2"); do printf 'password: secret-%s\ntoken: t%s\n' "$i" "$i" > "$1/secrets/s$i.yaml"; done
  (cd "$1" && for f in secrets/*.yaml; do "$sops" encrypt -i "$f"; done)
  # the new rule drops B and adds C
  printf 'creation_rules:\n  - path_regex: ^secrets/\n    age: %s,%s\n' "$A" "$C" > "$1/.sops.yaml"
}
counts=${REKEY_COUNTS:-200 1000}
for n in $counts; do make_repo "r$n" "$n"; done

results="$work/results"
mkdir -p "$results"
run() { # name, hyperfine args...
  local name=$1; shift
  hyperfine --style none --export-json "$results/$name.json" "$@" >/dev/null
}
run decrypt --warmup 2 --runs ${RUNS:-20} -n cairn "$cairn secrets decrypt enc.yaml" -n sops "$sops decrypt enc.yaml"
run encrypt --warmup 2 --runs ${RUNS:-20} -n cairn "$cairn secrets encrypt plain.yaml" -n sops "$sops encrypt plain.yaml"
for n in $counts; do
  prep="rm -rf w && cp -a r$n w"
  runs=3; [ "$n" -ge 1000 ] && runs=2
  run "rekey$n" --runs $runs --prepare "$prep" \
    -n "cairn (one process)" "cd w && $cairn secrets rekey >/dev/null" \
    -n "sops loop" "cd w && for f in secrets/*.yaml; do $sops updatekeys -y \$f >/dev/null 2>&1; done" \
    -n "sops one call" "cd w && $sops updatekeys -y secrets/*.yaml >/dev/null 2>&1"
done

python3 - "$results" <<'PY'
import json, sys, os
d = sys.argv[1]
print(f"{'benchmark':<10} {'command':<22} {'median':>10} {'vs cairn':>9}")
names = ["decrypt", "encrypt"] + sorted((f[:-5] for f in os.listdir(d) if f.startswith("rekey")), key=lambda n: int(n[5:]))
for name in names:
    res = json.load(open(os.path.join(d, name + ".json")))["results"]
    base = res[0]["median"]
    for r in res:
        print(f"{name:<10} {r['command']:<22} {r['median']*1000:>8.1f}ms {r['median']/base:>8.2f}x")
PY
