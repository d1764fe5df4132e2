#!/bin/sh
# STAND-IN for comin (https://github.com/nlewo/comin), used only by cairn's tests.
#
# Why: real comin cannot run here. It is a Go program whose Go modules and nixpkgs cannot be
# fetched on this machine, and it deploys NixOS systems, which a test sshd on a Debian host
# does not run. cairn only talks to comin through its command line over SSH, so this script
# answers the commands cairn runs, with comin's real names and shapes:
#   comin status --json   protojson of the gRPC `State` message (pkg/protobuf/services.proto,
#                         printed by cmd/status.go with UseProtoNames and EmitUnpopulated);
#                         compare tests/fixtures/comin/status.json
#   comin fetch           fetch the configured branch; where comin deploys in the background,
#                         this deploys at once: refuses a head that is not a fast-forward of
#                         the last deployed commit ("hard reset", as comin does), "builds" a
#                         generation directory for the commit and points /run/current-system
#                         at it
#   comin suspend|resume  as comin's manager: refused when already in that state
# The test installs it as `comin` through a two-line wrapper that sets COMIN_STANDIN_DIR, the
# host's stand-in directory ($DIR). Test knobs, files in $DIR:
#   remote, branch (what comin.remotes[0] would say), down (the daemon does not answer),
#   fail (the next deployment fails). State: commit, out, status, error, fetched_at, suspended.
set -eu
DIR=${COMIN_STANDIN_DIR:?this stand-in needs COMIN_STANDIN_DIR (the test host directory)}
[ -d "$DIR" ] || { echo "no directory $DIR" >&2; exit 2; }
now() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }
get() { cat "$DIR/$1" 2>/dev/null || true; }
down() {
    echo "level=fatal msg=\"rpc error: code = Unavailable desc = connection error: desc = \\\"transport: Error while dialing: dial unix /var/lib/comin/grpc.sock: connect: no such file or directory\\\"\"" >&2
    exit 1
}
null_or() { if [ -n "$1" ]; then printf '"%s"' "$1"; else printf null; fi; }

generation() {
    cat <<JSON
{
      "uuid": "$(get commit)-generation",
      "repository_path": "/var/lib/comin/repository",
      "repository_subdir": "",
      "system_attr": "nixosConfigurations",
      "hostname": "$(hostname)",
      "selected_remote_url": "$(get remote)",
      "selected_remote_name": "origin",
      "selected_branch_name": "$(get branch)",
      "selected_commit_id": "$(get commit)",
      "selected_commit_msg": "",
      "selected_branch_is_testing": false,
      "main_commit_id": "$(get commit)",
      "main_remote_name": "origin",
      "main_branch_name": "$(get branch)",
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
      "error_msg": "$(get error)",
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

suspended() { if [ -e "$DIR/suspended" ]; then echo true; else echo false; fi; }

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
      "selected_branch_name": "$(get branch)",
      "selected_branch_is_testing": false,
      "selected_commit_signed": false,
      "selected_commit_signed_by": "",
      "selected_commit_should_be_signed": false,
      "main_commit_id": "$(get commit)",
      "main_remote_name": "origin",
      "main_branch_name": "$(get branch)",
      "remotes": [
        {
          "name": "origin",
          "url": "$(get remote)",
          "fetch_error_msg": "$(get fetch_error)",
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

fetch() {
    remote=$(get remote)
    branch=$(get branch)
    head=$(git ls-remote "$remote" "refs/heads/$branch" | cut -f1)
    now > "$DIR/fetched_at"
    : > "$DIR/fetch_error"
    echo "fetch" >> "$DIR/calls"
    if [ -z "$head" ]; then
        echo "couldn't find remote ref refs/heads/$branch" > "$DIR/fetch_error"
        return
    fi
    if [ -e "$DIR/suspended" ] || [ "$head" = "$(get commit)" ]; then
        return
    fi
    [ -d "$DIR/repo" ] || git init --quiet --bare "$DIR/repo"
    git -C "$DIR/repo" fetch --quiet "$remote" "+refs/heads/$branch:refs/heads/$branch"
    last=$(get commit)
    if [ -n "$last" ] && ! git -C "$DIR/repo" merge-base --is-ancestor "$last" "$head"; then
        echo "the branch $branch has been hard reset: $head is not a descendant of $last" > "$DIR/fetch_error"
        return
    fi
    echo "$head" > "$DIR/commit"
    now > "$DIR/ended_at"
    if [ -e "$DIR/fail" ]; then
        echo failed > "$DIR/status"
        echo "the switch-to-configuration of $head failed" > "$DIR/error"
        return
    fi
    out="$DIR/store/$head-nixos-system"
    mkdir -p "$out"
    ln -sfn "$out" /run/current-system
    echo "$out" > "$DIR/out"
    echo done > "$DIR/status"
    : > "$DIR/error"
}

[ -e "$DIR/down" ] && down
case "${1:-}" in
    status)
        [ "${2:-}" = "--json" ] || { echo "this stand-in only prints --json" >&2; exit 2; }
        status_json | head -c -1
        ;;
    fetch)
        fetch
        printf 'All remotes have been fetched.'
        ;;
    suspend)
        if [ -e "$DIR/suspended" ]; then
            echo 'level=fatal msg="rpc error: code = Unknown desc = the manager is already suspended"' >&2
            exit 1
        fi
        touch "$DIR/suspended"
        echo "suspend" >> "$DIR/calls"
        ;;
    resume)
        if [ ! -e "$DIR/suspended" ]; then
            echo 'level=fatal msg="rpc error: code = Unknown desc = the manager is not suspended"' >&2
            exit 1
        fi
        rm -f "$DIR/suspended"
        echo "resume" >> "$DIR/calls"
        ;;
    *)
        echo "this stand-in answers status --json, fetch, suspend and resume" >&2
        exit 2
        ;;
esac
