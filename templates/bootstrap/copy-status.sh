# cairn: which store paths are already complete on the target. A path is complete once the
# unpacker has moved past it (it is then listed in .cairn-copied); anything else in the store
# was cut off by an interrupted copy and is removed here, so the copy resumes cleanly.
# Prints `complete NAME` and `removed NAME` lines.
# An unpacker of a killed run can outlive its SSH connection for a while (tar still drains
# what was buffered): it is stopped first, or it would write into paths this run removes and
# resends, and leave a truncated file behind.
set -eu
store={{root}}/nix/store
done_list={{root}}/nix/.cairn-copied
pidfile={{root}}/nix/.cairn-unpack.pid
mkdir -p "$store"
# Prints the pids of the running processes in process group $1 (the unpacker's pipeline).
group_members() {
  for stat in /proc/[0-9]*/stat; do
    read -r line < "$stat" 2>/dev/null || continue
    # Fields after the command name (which ends with ") "): state ppid pgrp ...
    rest=${line##*) }
    set -- $rest
    if [ "$3" = "$group" ]; then p=${stat#/proc/}; echo "${p%%/*}"; fi
  done
  return 0
}
read -r line < /proc/$$/stat
rest=${line##*) }
set -- $rest
own_group=$3
if [ -f "$pidfile" ]; then
  read -r group started < "$pidfile" || true
  # Never this script's own group (its pid file cannot name it, but be sure).
  [ "$group" != "$own_group" ] || group=none
  leader_started=
  if [ -r "/proc/$group/stat" ]; then
    read -r line < "/proc/$group/stat" || true
    rest=${line##*) }
    set -- $rest
    leader_started=${20}
  fi
  # A live leader that started at another time is a different process that reused the pid.
  if [ -z "$leader_started" ] || [ "$leader_started" = "$started" ]; then
    members=$(group_members)
    if [ -n "$members" ]; then
      echo "stopping an unpacker an interrupted copy left running (pids $(echo $members))" >&2
      kill -TERM $members 2>/dev/null || true
      i=0
      while [ -n "$(group_members)" ] && [ "$i" -lt 20 ]; do sleep 1; i=$((i + 1)); done
      members=$(group_members)
      if [ -n "$members" ]; then kill -KILL $members 2>/dev/null || true; sleep 1; fi
    fi
  fi
  rm -f "$pidfile"
fi
if [ ! -e "$done_list" ] && [ -e {{root}}/nix/var/nix/db/db.sqlite ]; then
  # An earlier copy finished and registered its paths (register.sh then removes the list):
  # what is in the store is complete.
  for p in "$store"/*; do
    [ -e "$p" ] || [ -L "$p" ] || continue
    echo "${p##*/}"
  done > "$done_list"
fi
touch "$done_list"
for p in "$store"/* "$store"/.[!.]*; do
  [ -e "$p" ] || [ -L "$p" ] || continue
  name=${p##*/}
  # Nix's own directory of hard links (made by registering with auto-optimise), not a path.
  [ "$name" != .links ] || continue
  if grep -qxF "$name" "$done_list"; then
    echo "complete $name"
  else
    chmod -R u+w "$p" 2>/dev/null || true
    rm -rf "$p"
    echo "removed $name"
  fi
done
