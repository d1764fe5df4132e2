#!/usr/bin/env bash
# `cairn plan` against `terraform plan`, both on 1,000 machines with state present and
# nothing to change: cairn (state only, --refresh=false: terraform_data has no provider to ask
# either) on an inventory of 1,000 hosts, terraform on 1,000 of its built-in
# terraform_data resources (no provider to download, so it runs offline).
# Then cairn alone on BIG hosts (default 10,000; issue 17's goal: under 300 ms), where
# terraform would take minutes.
# Needs hyperfine, terraform and python3. Prints one table with the medians and the ratio.
# Usage: benches/plan.sh [HOSTS]   (BIG=10000; CARGO_TARGET_DIR is honoured; builds cairn in
# release)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-1000}
big=${BIG:-10000}
target=${CARGO_TARGET_DIR:-$here/target}
cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bin cairn
cairn="$target/release/cairn"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- cairn: an inventory of N hosts, and state that already knows each of them -----------
make_fleet() {
  local n=$1 dir=$2
  mkdir -p "$dir/.cairn"
  {
    cat <<'HCL'
provider "hcloud" "cloud" {
  token    = env("HCLOUD_TOKEN", "")
  location = "fsn1"
}

defaults {
  provider = "cloud"
  size     = "cx22"
  image    = "debian-12"
}
HCL
    for ((i = 0; i < n; i++)); do
      printf '\nhost "web%d" {\n  flake = ".#web%d"\n  tags  = ["web", "bench"]\n}\n' "$i" "$i"
    done
  } > "$dir/cairn.hcl"
  python3 - "$n" "$dir/.cairn/state.json" <<'PY'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
hosts = {
    f"web{i}": {
        "provider": "hcloud.cloud", "provider_id": str(100000 + i), "size": "cx22",
        "image": "debian-12", "location": "fsn1", "addresses": [f"10.0.{i // 250}.{i % 250}"],
        "last_phase": {"phase": "verify", "at": "2026-11-22T06:00:00Z"},
    }
    for i in range(n)
}
json.dump({"schema": 1, "serial": 1, "hosts": dict(sorted(hosts.items()))}, open(path, "w"), indent=2)
PY
  out=$("$cairn" -C "$dir" plan --refresh=false --detailed-exitcode) || { echo "cairn plan: $out" >&2; exit 1; }
}
make_fleet "$n" "$work/cairn"
make_fleet "$big" "$work/cairn-big"

# --- terraform: $n terraform_data resources, applied once so state holds them --------------
mkdir -p "$work/tf"
cat > "$work/tf/main.tf" <<TF
resource "terraform_data" "host" {
  count = $n
  input = {
    name     = "web\${count.index}"
    size     = "cx22"
    image    = "debian-12"
    location = "fsn1"
  }
}
TF
export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
terraform -chdir="$work/tf" init -input=false >/dev/null
terraform -chdir="$work/tf" apply -auto-approve -input=false >/dev/null
terraform -chdir="$work/tf" plan -input=false -detailed-exitcode >/dev/null

# --- time both -----------------------------------------------------------------------------
hyperfine --warmup 3 --min-runs 20 --export-json "$work/cairn.json" \
  --command-name "cairn plan ($n hosts)" "$cairn -C $work/cairn plan --refresh=false" >&2
hyperfine --warmup 1 --min-runs 5 --export-json "$work/tf.json" \
  --command-name "terraform plan ($n resources)" \
  "terraform -chdir=$work/tf plan -input=false" >&2
hyperfine --warmup 2 --min-runs 10 --export-json "$work/big.json" \
  --command-name "cairn plan ($big hosts)" "$cairn -C $work/cairn-big plan --refresh=false" >&2

echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work/cairn.json" "$work/tf.json" "$work/big.json" <<'PY'
import json, sys
rows = [json.load(open(p))["results"][0] for p in sys.argv[1:]]
width = max(len(r["command"]) for r in rows + [{"command": "terraform / cairn"}])
print(f"{'command':<{width}}  {'median':>10}")
for r in rows:
    print(f"{r['command']:<{width}}  {r['median'] * 1000:>8.1f}ms")
c, t = rows[0]["median"], rows[1]["median"]
print(f"{'terraform / cairn':<{width}}  {t / c:>9.1f}x")
PY
