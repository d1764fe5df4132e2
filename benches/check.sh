#!/usr/bin/env bash
# `cairn check` without the Nix rules on a generated fleet: 1,000 hosts, 1,000 sops files,
# 10,000 commits of history. Prints one table (goal: the whole check under 2 s), with the
# machine's load before and after. Not a test: run it by hand on a release build:
#   cargo build --release -j 1 && benches/check.sh
# HOSTS and COMMITS change the size; RUNS the number of timed runs; CAIRN_BASELINE another
# cairn binary to time the same check with.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cairn=${CAIRN_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/cairn}
[ -x "$cairn" ] || { echo "build cairn first: $cairn" >&2; exit 1; }
command -v age-keygen >/dev/null || { echo "age-keygen not found (run .ci/install)" >&2; exit 1; }
hosts=${HOSTS:-1000}
commits=${COMMITS:-10000}
runs=${RUNS:-5}

# BENCH_DIR: keep the generated fleet there and reuse it on the next run (generating it takes
# minutes); otherwise a temporary directory, removed at the end.
if [ -n "${BENCH_DIR:-}" ]; then
  work=$BENCH_DIR
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config"
mkdir -p "$HOME"
repo="$work/fleet"
export SOPS_AGE_KEY_FILE="$work/admin.key"

# The fleet (body not indented: it holds here-documents).
generate() {
mkdir -p "$repo/secrets" "$repo/hosts"
age-keygen -o "$work/admin.key" 2>/dev/null
admin=$(age-keygen -y "$work/admin.key")

echo "generating $hosts hosts, $hosts secrets files, $commits commits in $repo" >&2
{
  printf 'provider "existing" "dc" {}\n\nadmin "ops" {\n  age = "%s"\n}\n' "$admin"
  for i in $(seq 1 "$hosts"); do
    printf '\nhost "h%s" {\n  provider = "dc"\n  address  = "192.0.2.%s"\n  flake    = ".#h%s"\n  tags     = ["web"]\n  secrets  = ["secrets/h%s.yaml"]\n}\n' \
      "$i" "$((i % 250 + 1))" "$i" "$i"
  done
} >"$repo/cairn.hcl"
# Ten files encrypted to the admin (hosts are not bootstrapped: the admin is every file's only
# expected recipient) and copied round-robin: check parses each of the 1,000 files the same
# way, and 1,000 encryptions would dominate the setup. Then rekey writes .sops.yaml.
for t in $(seq 0 9); do
  printf 'db_password: secret-%s\napi_token: token-%s\n' "$t" "$t" >"$work/t$t.yaml"
  "$cairn" -q secrets encrypt --age "$admin" -i "$work/t$t.yaml"
done
for i in $(seq 1 "$hosts"); do cp "$work/t$((i % 10)).yaml" "$repo/secrets/h$i.yaml"; done
(cd "$repo" && "$cairn" -q secrets rekey >/dev/null)

# The history: the first commit adds everything, each later one edits a host's config.
python3 - "$repo" "$hosts" "$commits" >"$work/stream" <<'PY'
import os, sys
repo, hosts, commits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout.buffer
def data(b):
    out.write(b"data %d\n" % len(b)); out.write(b); out.write(b"\n")
def config(i, n):
    return b'{ ... }: { networking.hostName = "h%d"; system.stateVersion = "25.05"; revision = %d; }\n' % (i, n)
final = {}
for n in range(1, commits + 1):
    out.write(b"commit refs/heads/main\n")
    out.write(b"committer bench <bench@localhost> %d +0000\n" % (1_700_000_000 + n * 60))
    data(b"change %d" % n)
    if n == 1:
        for dirpath, _, files in os.walk(repo):
            if "/.git" in dirpath:
                continue
            for f in files:
                p = os.path.join(dirpath, f)
                rel = os.path.relpath(p, repo)
                out.write(b"M 100644 inline %s\n" % rel.encode())
                data(open(p, "rb").read())
        for i in range(1, hosts + 1):
            final[i] = config(i, 0)
            out.write(b"M 100644 inline hosts/h%d.nix\n" % i)
            data(final[i])
    else:
        i = n % hosts + 1
        final[i] = config(i, n)
        out.write(b"M 100644 inline hosts/h%d.nix\n" % i)
        data(final[i])
for i, content in final.items():
    open(os.path.join(repo, "hosts", "h%d.nix" % i), "wb").write(content)
PY
git -C "$repo" init -q -b main
git -C "$repo" fast-import --quiet <"$work/stream"
git -C "$repo" reset -q --hard main 2>/dev/null || git -C "$repo" checkout -q -f main
}
if [ -d "$repo/.git" ]; then
  echo "reusing $repo" >&2
else
  generate
fi
echo "repository: $(git -C "$repo" rev-list --count HEAD) commits, $(git -C "$repo" ls-files | wc -l) files, $(du -sh "$repo/.git" | cut -f1) of .git" >&2

nonix="--skip inventory.flake --skip nixos.ssh --skip nixos.password-in-store"
# The check must pass on this repository, or the timings measure error paths.
(cd "$repo" && CAIRN_NIX= "$cairn" -q check $nonix >/dev/null) || {
  (cd "$repo" && CAIRN_NIX= "$cairn" check $nonix | tail -20) >&2
  echo "the generated fleet does not pass cairn check" >&2
  exit 1
}

# Each row is a shell command run in the repository. Baselines in the same run: the floor of
# any history scan (git prints every change of the branch once and grep looks for key
# headers: no parsing, no bookkeeping), and, with CAIRN_BASELINE=path, the same check by
# another cairn build (e.g. the previous commit's) for a before/after comparison.
names=("check (all rules, no nix)" "secrets.* without history" "history only (secrets.private-key)"
       "floor: git log -p | grep (history)")
cmds=("$cairn -q check $nonix"
      "$cairn -q check $nonix --skip secrets.private-key --skip policies"
      "$cairn -q check --rule secrets.private-key"
      "git log -p --no-renames HEAD | grep -cE 'AGE-SECRET-KEY-|-----BEGIN [A-Z ]*PRIVATE KEY-----' || true")
if [ -n "${CAIRN_BASELINE:-}" ]; then
  names+=("baseline build: check (all, no nix)")
  # `|| true`: an older build may find the repository differently (e.g. another .sops.yaml
  # layout) and exit 1 after doing the same work.
  cmds+=("$CAIRN_BASELINE -q check $nonix || true")
fi
results="$work/results"
mkdir -p "$results"
echo "machine: $(nproc) cores; before: $(uptime)"
if command -v hyperfine >/dev/null; then
  for k in "${!cmds[@]}"; do
    (cd "$repo" && CAIRN_NIX= hyperfine --style none --warmup 1 --runs "$runs" \
      --export-json "$results/$k.json" -n "${names[$k]}" "${cmds[$k]}" >/dev/null)
  done
  python3 - "$results" "${#cmds[@]}" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
# cpu: user + system time of the command and its children (git), mean over the runs: what
# the work costs when the cores are shared (wall time then depends on the others' load).
print(f"{'command':<38} {'median':>9} {'min':>9} {'max':>9} {'cpu':>9}")
for k in range(n):
    r = json.load(open(f"{d}/{k}.json"))["results"][0]
    cpu = r["user"] + r["system"]
    print(f"{r['command']:<38} {r['median']:>8.3f}s {r['min']:>8.3f}s {r['max']:>8.3f}s {cpu:>8.3f}s")
PY
else
  echo "(hyperfine not installed: /usr/bin/time, $runs runs each)" >&2
  printf '%-38s %9s %9s %9s %9s\n' command median min max cpu
  for k in "${!cmds[@]}"; do
    : >"$results/$k.txt"
    for _ in $(seq 1 "$runs"); do
      (cd "$repo" && CAIRN_NIX= /usr/bin/time -f '%e %U %S' -a -o "$results/$k.txt" \
        sh -c "${cmds[$k]}" >/dev/null)
    done
    sort -n "$results/$k.txt" | awk -v name="${names[$k]}" '{ v[NR] = $1; c += $2 + $3 } END {
      printf "%-38s %8.3fs %8.3fs %8.3fs %8.3fs\n", name, v[int((NR + 1) / 2)], v[1], v[NR], c / NR }'
  done
fi
echo "after: $(uptime)"
