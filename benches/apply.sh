#!/usr/bin/env bash
# `cairn plan` and `cairn apply --yes` against cloudalone (a Hetzner Cloud emulator on
# 127.0.0.1): 1 host, then N hosts (default 50) at cairn's default parallelism and all at
# once, against a serial curl loop making the same API calls (look up by name, create, follow
# both actions with cairn's poll schedule); then `cairn plan` with M hosts (default 1,000) in
# state, every one looked up at the emulator; then `cairn apply` and `cairn destroy` of 120
# and 300 hosts (SIZES), with the requests counted in the emulator's access log, against the
# per-host lookups they made before they listed (two searches per host created, one GET per
# host destroyed: counted, and replayed with curl 8 at a time for their time). One fresh
# emulator per measurement. Needs cloudalone (.ci/install makes .ci/venv-cloud), curl and jq.
# Prints one table.
# Usage: benches/apply.sh [N] [M] [SIZES]   (N=0 / M=0 skip those parts; SIZES "120 300";
#        CARGO_TARGET_DIR is honoured; builds cairn in release; CAIRN_BIN=path/to/cairn skips
#        the build, for a quick dry run with small N and M)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-50}
m=${2:-1000}
sizes=${3:-120 300}
target=${CARGO_TARGET_DIR:-$here/target}
cairn=${CAIRN_BIN:-}
if [ -z "$cairn" ]; then
  cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bin cairn
  cairn="$target/release/cairn"
fi
cloudalone=${CAIRN_TEST_CLOUDALONE:-$here/.ci/venv-cloud/bin/cloudalone}
[ -x "$cloudalone" ] || { echo "cloudalone is missing: run .ci/install" >&2; exit 1; }
token=bench-token
work=$(mktemp -d)
ca_pid=
stop_ca() {
  # only the emulator this script started, by its pid
  if [ -n "$ca_pid" ]; then kill "$ca_pid" 2>/dev/null || true; wait "$ca_pid" 2>/dev/null || true; fi
  ca_pid=
}
trap 'stop_ca; rm -rf "$work"' EXIT

# A fresh emulator on a free port; sets $endpoint.
start_ca() {
  stop_ca
  local dir port
  dir=$(mktemp -d -p "$work")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  CLOUDALONE_BACKEND=stub CLOUDALONE_TOKEN=$token CLOUDALONE_DB="$dir/ca.sqlite" \
    CLOUDALONE_HOME="$dir/home" CLOUDALONE_CONFIG="$dir/none.toml" \
    "$cloudalone" serve --host 127.0.0.1 --port "$port" >"$dir/log" 2>&1 &
  ca_pid=$!
  ca_log="$dir/log"
  endpoint="http://127.0.0.1:$port/v1"
  for _ in $(seq 300); do
    curl -s -o /dev/null "$endpoint/servers" && return
    sleep 0.1
  done
  echo "cloudalone did not start: $(cat "$dir/log")" >&2
  exit 1
}

# A fleet repository of $2 hosts at the current emulator, in $1.
make_repo() {
  local dir=$1 count=$2
  rm -rf "$dir"
  mkdir -p "$dir"
  {
    printf 'provider "hcloud" "cloud" {\n  token    = env("HCLOUD_TOKEN")\n  endpoint = "%s"\n}\n' "$endpoint"
    printf 'defaults {\n  provider = "cloud"\n  size     = "small"\n  image    = "debian-13"\n}\n'
    for ((i = 0; i < count; i++)); do printf 'host "web%d" {}\n' "$i"; done
  } >"$dir/cairn.hcl"
}

now() { date +%s.%N; }
declare -a rows=()
# row LABEL SECONDS [REQUESTS]
row() { rows+=("$1|$2|${3:-}"); echo "$1: $2 s ${3:+$3 requests}" >&2; }
# Requests the current emulator answered so far; list requests (GET /v1/servers?...) so far.
reqs() { grep -c '" [0-9][0-9][0-9] ' "$ca_log" || true; }
lists() { grep -c '"GET /v1/servers?' "$ca_log" || true; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }

export HCLOUD_TOKEN=$token
unset CAIRN_SSH_KEY
api() { curl -sf -H "Authorization: Bearer $token" "$@"; }

# Follows an action with cairn's schedule: 0.1 s, then doubling, at most 1 s between looks.
follow() {
  local id=$1 delay=0.1 status
  while :; do
    sleep "$delay"
    status=$(api "$endpoint/actions/$id" | jq -r .action.status)
    [ "$status" = success ] && return
    [ "$status" = error ] && { echo "action $id failed" >&2; exit 1; }
    delay=$(python3 -c "print(min($delay * 2, 1))")
  done
}

# --- apply: one host, then N ----------------------------------------------------------------
cases=("1 8" "$n 8" "$n $n")
[ "$n" = 0 ] && cases=()
for case in "${cases[@]}"; do
  read -r count parallel <<<"$case"
  start_ca
  make_repo "$work/fleet" "$count"
  t0=$(now)
  "$cairn" -q -C "$work/fleet" plan >/dev/null
  t1=$(now)
  "$cairn" -q -C "$work/fleet" apply --yes --parallel "$parallel" >/dev/null
  t2=$(now)
  got=$(api "$endpoint/servers?per_page=50" | jq '.meta.pagination.total_entries')
  [ "$got" = "$count" ] || { echo "expected $count servers, cloudalone has $got" >&2; exit 1; }
  row "cairn plan, $count hosts to create" "$(elapsed "$t0" "$t1")"
  row "cairn apply --yes --parallel $parallel, $count hosts" "$(elapsed "$t1" "$t2")"
  [ "$case" = "1 8" ] && one=$(elapsed "$t1" "$t2")
  [ "$case" = "$n 8" ] && many=$(elapsed "$t1" "$t2")
  [ "$case" = "$n $n" ] && all=$(elapsed "$t1" "$t2")
done

if [ "$n" != 0 ]; then
# --- the same API calls, one host after the other ---------------------------------------------
start_ca
api -X POST -H 'Content-Type: application/json' "$endpoint/ssh_keys" \
  -d '{"name":"bench","public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEuQlFqSmGUbUsPOcL0cy1ofDlmzwOJL9LvFB+ADvTcV bench"}' >/dev/null
t0=$(now)
for ((i = 0; i < n; i++)); do
  api "$endpoint/servers?name=web$i" >/dev/null
  created=$(api -X POST -H 'Content-Type: application/json' "$endpoint/servers" \
    -d "{\"name\":\"web$i\",\"server_type\":\"small\",\"image\":\"debian-13\",\"ssh_keys\":[1],\"start_after_create\":true}")
  for a in $(jq -r '.action.id, .next_actions[].id' <<<"$created"); do follow "$a"; done
  api "$endpoint/servers/$(jq -r .server.id <<<"$created")" >/dev/null
done
t1=$(now)
row "curl, the same calls serially, $n hosts" "$(elapsed "$t0" "$t1")"
fi

if [ "$m" != 0 ]; then
# --- plan with M hosts in state ---------------------------------------------------------------
start_ca
make_repo "$work/big" "$m"
t0=$(now)
# cloudalone answers some concurrent creates with 500 even after cairn's retries: what it made
# is what state holds.
"$cairn" -q -C "$work/big" apply --yes >/dev/null 2>&1 || true
t1=$(now)
held=$(jq '.hosts | length' "$work/big/.cairn/state.json")
row "(setup) cairn apply --yes, $m hosts ($held created)" "$(elapsed "$t0" "$t1")"
for parallel in 8 32; do
  t0=$(now)
  "$cairn" -q -C "$work/big" plan --parallel "$parallel" >/dev/null
  t1=$(now)
  row "cairn plan --parallel $parallel, $held hosts in state" "$(elapsed "$t0" "$t1")"
done
t0=$(now)
"$cairn" -q -C "$work/big" plan --refresh=false >/dev/null
t1=$(now)
row "cairn plan --refresh=false, $held hosts (state only)" "$(elapsed "$t0" "$t1")"
fi

# --- apply and destroy of 120 and 300 hosts: lists vs the per-host lookups -------------------
# Replays the per-host lookups (one curl per line of $1) 8 at a time; prints the seconds.
replay() {
  local t0 t1
  t0=$(now)
  xargs -P 8 -I{} curl -sf -o /dev/null -H "Authorization: Bearer $token" "$endpoint{}" <"$1"
  t1=$(now)
  elapsed "$t0" "$t1"
}
for size in $sizes; do
  start_ca
  make_repo "$work/fleet" "$size"
  l0=$(lists)
  "$cairn" -q -C "$work/fleet" plan >/dev/null
  plan_lists=$(($(lists) - l0))
  r0=$(reqs) l0=$(lists) t0=$(now)
  # one create at a time: cloudalone loses actions now and then under concurrent creates
  "$cairn" -q -C "$work/fleet" apply --yes --parallel 1 >/dev/null
  t1=$(now)
  r=$(($(reqs) - r0)) l=$(($(lists) - l0))
  got=$(api "$endpoint/servers?per_page=1" | jq '.meta.pagination.total_entries')
  [ "$got" = "$size" ] || { echo "expected $size servers, cloudalone has $got" >&2; exit 1; }
  took=$(elapsed "$t0" "$t1")
  row "cairn apply --yes --parallel 1, $size hosts ($l lists)" "$took" "$r"
  for ((i = 0; i < size; i++)); do
    echo "/servers?label_selector=cairn-host%3Dweb$i%2Cmanaged-by%3Dcairn"
    echo "/servers?name=web$i"
  done >"$work/searches"
  extra=$(replay "$work/searches")
  row "  per host before (est.: + $((2 * size)) searches, replayed 8 at a time)" \
    "$(python3 -c "print(f'{$took + $extra:.2f}')")" "$((r - (l - plan_lists) + 2 * size))"
  jq -r '.hosts[].provider_id | "/servers/" + .' "$work/fleet/.cairn/state.json" >"$work/gets"
  l0=$(lists)
  "$cairn" -q -C "$work/fleet" plan >/dev/null
  plan_lists=$(($(lists) - l0))
  r0=$(reqs) l0=$(lists) t0=$(now)
  "$cairn" -q -C "$work/fleet" destroy host 'web*' --yes >/dev/null
  t1=$(now)
  r=$(($(reqs) - r0)) l=$(($(lists) - l0))
  took=$(elapsed "$t0" "$t1")
  row "cairn destroy --yes, $size hosts ($l lists)" "$took" "$r"
  # the plan's refresh listed before too: the run's own lists are the ones beyond it
  extra=$(replay "$work/gets")
  row "  per host before (est.: + $size GETs by id, replayed 8 at a time)" \
    "$(python3 -c "print(f'{$took + $extra:.2f}')")" "$((r - (l - plan_lists) + size))"
done

width=0
for r in "${rows[@]}"; do label=${r%%|*}; w=${#label}; [ "$w" -gt "$width" ] && width=$w; done
echo "load: $(uptime | sed 's/.*load average: //')"
printf '%-*s  %9s  %9s\n' "$width" "measurement (one run each)" "seconds" "requests"
for r in "${rows[@]}"; do
  IFS='|' read -r label secs count <<<"$r"
  printf '%-*s  %9s  %9s\n' "$width" "$label" "$secs" "$count"
done
if [ "$n" != 0 ]; then
  printf '%-*s  %9s\n' "$width" "apply $n hosts / apply 1 host (parallel 8)" "$(python3 -c "print(f'{$many / $one:.2f}x')")"
  printf '%-*s  %9s\n' "$width" "apply $n hosts / apply 1 host (parallel $n)" "$(python3 -c "print(f'{$all / $one:.2f}x')")"
fi
