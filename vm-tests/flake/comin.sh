#!@busybox@/bin/sh
# STAND-IN for comin (https://github.com/nlewo/comin), used only by cairn's VM tests.
#
# Why: real comin cannot run here. It is a Go program whose Go modules and nixpkgs cannot be
# fetched on this machine, and this test system is not NixOS: it has no git, no systemd and
# no nix evaluator that could build a configuration on the host. cairn only talks to comin
# through its command line over SSH, so this script does what cairn relies on, with comin's
# real names and shapes (the same as tests/it/support/comin-standin.sh):
#   comin run             the daemon (busybox init respawns it): every `interval` seconds it
#                         reads the branch's head from the remote and deploys a new head
#   comin status --json   protojson of the gRPC `State` message (pkg/protobuf/services.proto,
#                         printed by cmd/status.go with UseProtoNames and EmitUnpopulated);
#                         compare tests/fixtures/comin/status.json
#   comin fetch           wakes the daemon to fetch and deploy now
#   comin suspend|resume  as comin's manager: refused when already in that state
# Without git, the remote is read over git's "dumb HTTP" protocol: `<remote>/info/refs`
# lists `<sha>\trefs/heads/<branch>`. A deployment "builds" a generation for the commit (a
# directory linking to this same closure, recording the commit) and points
# /run/current-system at it, as `switch-to-configuration switch` would. Unlike comin, it
# cannot tell a hard reset from a fast-forward (that needs the commits' objects).
# Settings: @out@/etc/comin.conf (remote, branch, interval), written by the flake from the
# fleet's cairn/fleet.json. State in /var/lib/comin-standin: commit, out, status, error,
# ended_at, fetched_at, fetch_error, suspended.
set -eu
export PATH=@out@/sw/bin
system=@out@
. "$system/etc/comin.conf"
DIR=/var/lib/comin-standin
PIDFILE=/run/comin.pid
mkdir -p "$DIR/generations"
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
get() { cat "$DIR/$1" 2>/dev/null || true; }
null_or() { if [ -n "$1" ]; then printf '"%s"' "$1"; else printf null; fi; }
# A message as a JSON string body: quotes, backslashes and control characters removed.
clean() { tr -d '"\\' | tr -s '\n\t\r' '   '; }
daemon_pid() {
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}
down() {
    echo "level=fatal msg=\"rpc error: code = Unavailable desc = connection error: desc = \\\"transport: Error while dialing: dial unix /var/lib/comin/grpc.sock: connect: no such file or directory\\\"\"" >&2
    exit 1
}

fetch_and_deploy() {
    now >"$DIR/fetched_at"
    # (busybox wget crashes on an HTTP error when given -T: `timeout` bounds it instead.)
    if ! refs=$(timeout 20 wget -q -O - "$remote/info/refs" 2>&1); then
        printf 'cannot fetch %s/info/refs: %s' "$remote" "$refs" | clean >"$DIR/fetch_error"
        return
    fi
    head=$(printf '%s\n' "$refs" | awk -v ref="refs/heads/$branch" '$2 == ref { print $1 }')
    if [ -z "$head" ]; then
        echo "couldn't find remote ref refs/heads/$branch" >"$DIR/fetch_error"
        return
    fi
    : >"$DIR/fetch_error"
    if [ -e "$DIR/suspended" ] || [ "$head" = "$(get commit)" ]; then
        return
    fi
    gen="$DIR/generations/$head-system"
    rm -rf "$gen.tmp"
    mkdir -p "$gen.tmp"
    for entry in "$system"/*; do ln -s "$entry" "$gen.tmp/"; done
    echo "$head" >"$gen.tmp/commit"
    rm -rf "$gen"
    mv "$gen.tmp" "$gen"
    echo "$head" >"$DIR/commit"
    now >"$DIR/ended_at"
    ln -sfn "$gen" /run/current-system
    echo "$gen" >"$DIR/out"
    echo done >"$DIR/status"
    : >"$DIR/error"
    echo "comin: deployed $head from $branch" >/dev/ttyS0
}

run() {
    echo $$ >"$PIDFILE"
    # After a reboot, the switched generation is the running one again (as the boot loader
    # entry comin's switch writes would make it).
    out=$(get out)
    if [ -n "$out" ] && [ -d "$out" ]; then ln -sfn "$out" /run/current-system; fi
    trap ':' USR1
    while true; do
        fetch_and_deploy || true
        sleep "${interval:-5}" &
        wait $! || true
        kill $! 2>/dev/null || true
    done
}

suspended() { if [ -e "$DIR/suspended" ]; then echo true; else echo false; fi; }

generation() {
    cat <<JSON
{
      "uuid": "$(get commit)-generation",
      "repository_path": "/var/lib/comin/repository",
      "repository_subdir": "",
      "system_attr": "nixosConfigurations",
      "hostname": "$(hostname)",
      "selected_remote_url": "$remote",
      "selected_remote_name": "origin",
      "selected_branch_name": "$branch",
      "selected_commit_id": "$(get commit)",
      "selected_commit_msg": "",
      "selected_branch_is_testing": false,
      "main_commit_id": "$(get commit)",
      "main_remote_name": "origin",
      "main_branch_name": "$branch",
      "eval_status": "evaluated",
      "eval_started_at": null,
      "eval_ended_at": null,
      "eval_err": "",
      "out_path": "$(get out)",
      "drv_path": "",
      "machine_id": "",
      "build_status": "built",
      "build_reason": "",
      "build_started_at": null,
      "build_ended_at": null,
      "build_err": ""
    }
JSON
}

deployment() {
    if [ -z "$(get commit)" ]; then printf null; return; fi
    cat <<JSON
{
      "uuid": "$(get commit)-deployment",
      "reason": "",
      "generation": $(generation),
      "started_at": $(null_or "$(get ended_at)"),
      "ended_at": $(null_or "$(get ended_at)"),
      "error_msg": "$(get error | clean)",
      "restart_comin": false,
      "profile_path": "",
      "status": "$(get status)",
      "operation_submitted": "switch",
      "operation": "switch",
      "operation_reason": "",
      "created_at": $(null_or "$(get ended_at)"),
      "current_inhibitors": {},
      "new_inhibitors": {}
    }
JSON
}

status_json() {
    cat <<JSON
{
  "need_to_reboot": false,
  "is_suspended": $(suspended),
  "builder": {
    "is_evaluating": false,
    "is_building": false,
    "generation": null,
    "generation_uuid": "",
    "is_suspended": $(suspended),
    "hostname": "$(hostname)"
  },
  "deployer": {
    "is_deploying": false,
    "deployment": $(deployment),
    "generation_to_deploy": null,
    "operation": "switch",
    "previous_deployment": null,
    "is_suspended": $(suspended)
  },
  "fetcher": {
    "is_fetching": false,
    "repository_status": {
      "selected_commit_id": "$(get commit)",
      "selected_commit_msg": "",
      "selected_remote_name": "origin",
      "selected_branch_name": "$branch",
      "selected_branch_is_testing": false,
      "selected_commit_signed": false,
      "selected_commit_signed_by": "",
      "selected_commit_should_be_signed": false,
      "main_commit_id": "$(get commit)",
      "main_remote_name": "origin",
      "main_branch_name": "$branch",
      "remotes": [
        {
          "name": "origin",
          "url": "$remote",
          "fetch_error_msg": "$(get fetch_error | clean)",
          "main": null,
          "testing": null,
          "fetched_at": $(null_or "$(get fetched_at)"),
          "fetched": true
        }
      ],
      "error_msg": ""
    }
  },
  "store": null,
  "build_confirmer": null,
  "deploy_confirmer": null
}
JSON
}

case "${1:-}" in
run) run ;;
status)
    [ "${2:-}" = "--json" ] || { echo "this stand-in only prints --json" >&2; exit 2; }
    daemon_pid >/dev/null || down
    status_json
    ;;
fetch)
    pid=$(daemon_pid) || down
    kill -USR1 "$pid"
    printf 'All remotes have been fetched.\n'
    ;;
suspend)
    daemon_pid >/dev/null || down
    if [ -e "$DIR/suspended" ]; then
        echo 'level=fatal msg="rpc error: code = Unknown desc = the manager is already suspended"' >&2
        exit 1
    fi
    touch "$DIR/suspended"
    ;;
resume)
    daemon_pid >/dev/null || down
    if [ ! -e "$DIR/suspended" ]; then
        echo 'level=fatal msg="rpc error: code = Unknown desc = the manager is not suspended"' >&2
        exit 1
    fi
    rm -f "$DIR/suspended"
    ;;
*)
    echo "this stand-in answers run, status --json, fetch, suspend and resume" >&2
    exit 2
    ;;
esac
