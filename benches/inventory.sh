#!/usr/bin/env bash
# `cairn hosts` on generated inventories of 1,000 / 10,000 / 100,000 hosts (three providers,
# tags, secrets blocks, defaults). Prints one table: hosts, median time, ratio to the 10,000
# time (goal in issue 17: 100,000 hosts under 2 s, t(100k)/t(10k) <= 12), with the machine's
# load before and after (CPU time next to wall time: under load the wall time mostly
# measures the other processes). Not a test: run it by hand on a release build:
#   cargo build --release && benches/inventory.sh
# SIZES changes the inventories, RUNS the timed runs per size; CAIRN_BIN another binary.
# Times with hyperfine if installed, else /usr/bin/time (one run per size).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cairn=${CAIRN_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/cairn}
[ -x "$cairn" ] || { echo "build cairn first: $cairn" >&2; exit 1; }
sizes=${SIZES:-1000 10000 100000}
runs=${RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config"
mkdir -p "$HOME"

# One inventory of $1 hosts in $2/cairn.hcl.
generate() {
  python3 - "$1" "$2" <<'PY'
import os, sys
n, out = int(sys.argv[1]), sys.argv[2]
os.makedirs(out, exist_ok=True)
key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuQlFqSmGUbUsPOcL0cy1ofDlmzwOJL9LvFB+ADvTcV ops@bench"
roles = ["web", "db", "cache", "queue", "edge"]
parts = [f'''provider "hcloud" "cloud" {{
  token    = env("HCLOUD_TOKEN", "bench-token")
  location = "fsn1"
}}

provider "aws" "ec2" {{
  region            = "eu-central-1"
  access_key_id     = env("AWS_ACCESS_KEY_ID", "AKIABENCH")
  secret_access_key = env("AWS_SECRET_ACCESS_KEY", "bench-secret")
  ami               = "ami-0abcdef1234567890"
}}

provider "existing" "dc" {{}}

admin "ops" {{
  age = "{key}"
}}

defaults {{
  tags = ["fleet"]
}}
''']
for role in roles:
    parts.append(f'secrets "secrets/{role}/*.yaml" {{\n  tags = ["{role}"]\n}}\n')
parts.append('secrets "secrets/hosts/h1.yaml" {\n  hosts = ["h1", "h2", "h3"]\n}\n')
for i in range(1, n + 1):
    role = roles[i % len(roles)]
    p = ("cloud", "ec2", "dc")[i % 3]
    lines = [f'host "h{i}" {{', f'  provider = "{p}"', f'  tags     = ["{role}", "zone{i % 4}"]',
             f'  secrets  = ["secrets/{role}/*.yaml"]']
    if p == "cloud":
        lines.append('  size     = "cx22"\n  image    = "debian-13"')
    elif p == "ec2":
        lines.append('  size     = "t3.small"')
    else:
        lines.append(f'  address  = "192.0.2.{i % 250 + 1}"')
    lines.append("}")
    parts.append("\n".join(lines) + "\n")
with open(os.path.join(out, "cairn.hcl"), "w") as f:
    f.write("\n".join(parts))
PY
}

load_before=$(uptime)
declare -A median cpu
for n in $sizes; do
  dir="$work/fleet-$n"
  generate "$n" "$dir"
  (cd "$dir" && "$cairn" hosts >/dev/null) || { echo "cairn hosts failed on $n hosts" >&2; exit 1; }
  if command -v hyperfine >/dev/null; then
    (cd "$dir" && hyperfine -N --style none --runs "$runs" --export-json "$work/$n.json" \
      "$cairn hosts" >/dev/null 2>&1)
    read -r "median[$n]" "cpu[$n]" < <(python3 -c 'import json,sys; r = json.load(open(sys.argv[1]))["results"][0]; print(r["median"], r["user"] + r["system"])' "$work/$n.json")
  else
    (cd "$dir" && /usr/bin/time -f '%e %U %S' -o "$work/$n.time" "$cairn" hosts >/dev/null)
    read -r wall user sys <"$work/$n.time"
    median[$n]=$wall
    cpu[$n]=$(python3 -c "print($user + $sys)")
  fi
done
load_after=$(uptime)

base=${median[10000]:-}
printf '%-9s %-10s %-9s %-8s %s\n' hosts "time (s)" "CPU (s)" "vs 10k" "size of cairn.hcl"
for n in $sizes; do
  ratio=-
  [ -n "$base" ] && ratio=$(python3 -c "print(f'{${median[$n]} / $base:.2f}')")
  printf '%-9s %-10.3f %-9.3f %-8s %s\n' "$n" "${median[$n]}" "${cpu[$n]}" "$ratio" "$(du -h "$work/fleet-$n/cairn.hcl" | cut -f1)"
done
echo "binary: $cairn; runs per size: $runs ($(command -v hyperfine >/dev/null && echo "hyperfine median" || echo "/usr/bin/time, one run"))"
echo "load before:${load_before##*load}"
echo "load after: ${load_after##*load}"
