#!/usr/bin/env bash
# A narrated run of real agents: five zpfd processes on 127.0.0.1 form a
# sealed cluster, one is killed with SIGKILL, the others notice and agree it
# is dead, it restarts from its store and is taken back, and all leave.
#
#   tests/demo.sh [BUILD_DIR]        (default build; `make demo` runs it)
#
# Everything lives in a temporary directory that is removed at the end;
# every process is started by this script and killed by PID on exit.
set -euo pipefail
B=${1:-build}
ZPFD=$B/zpfd ZPFCTL=$B/zpfctl
for p in "$ZPFD" "$ZPFCTL"; do
    [ -x "$p" ] || { echo "demo: $p not found; run make first" >&2; exit 2; }
done

dir=$(mktemp -d /tmp/zpf-demo.XXXXXX)
declare -A pid
cleanup() {
    for n in "${!pid[@]}"; do kill -9 "${pid[$n]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# Five free ports above the ephemeral range's usual start.
base=$((20000 + RANDOM % 30000))
while ss -Htuln | grep -qE ":($base|$((base + 4)))\b"; do
    base=$((20000 + RANDOM % 30000))
done

(umask 077; "$ZPFCTL" keygen > "$dir/keyring")
start() { # name index
    local n=$1 i=$2
    if [ ! -e "$dir/$n.yaml" ]; then
        (umask 077; cp "$dir/keyring" "$dir/$n.keyring")
        cat > "$dir/$n.yaml" <<EOF
node:
  name: $n
  data_dir: $dir/$n
gossip:
  cluster: demo
  bind: 127.0.0.1:$((base + i))
  join: [127.0.0.1:$base]
security:
  keyring: $dir/$n.keyring
control:
  socket: $dir/$n.sock
EOF
    fi
    "$ZPFD" -c "$dir/$n.yaml" 2>>"$dir/$n.log" &
    pid[$n]=$!
}
ctl() { "$ZPFCTL" -s "$dir/$1.sock" "${@:2}"; }
# zpfctl --json members as one line per member: {"name":"n1",...
members_flat() { ctl "$1" --json members 2>/dev/null | tr -d ' \n' | tr '{' '\n'; }
now_ms() { date +%s%3N; }
# How many of the given agents see member $1 in state $2.
seeing() {
    local who=$1 state=$2 n c=0; shift 2
    for n in "$@"; do
        members_flat "$n" | grep -q "\"name\":\"$who\".*\"state\":\"$state\"" &&
            c=$((c + 1))
    done
    echo $c
}
wait_for() { # seconds what command...
    local until=$(( $(date +%s) + $1 )) what=$2; shift 2
    until "$@"; do
        [ "$(date +%s)" -lt $until ] || { echo "demo: timed out waiting for $what" >&2; exit 1; }
        sleep 0.1
    done
}
all_alive() { local n; for n in n1 n2 n3 n4 n5; do
    [ "$(ctl "$n" --json status 2>/dev/null | tr -d ' \n' |
          grep -o '"alive":[0-9]*' | cut -d: -f2)" = 5 ] || return 1; done; }
dead_everywhere() { [ "$(seeing n3 dead n1 n2 n4 n5)" = 4 ]; }
alive_everywhere() { [ "$(seeing n3 alive n1 n2 n4 n5)" = 4 ]; }

cat <<'TXT'
zpf demo: five agents (zpfd) on 127.0.0.1, gossip sealed with one key.
Each agent probes one other per second; a probe without an answer within
500 ms is retried through three others, then the member is suspected, and
declared dead once the suspicion runs out with its heartbeat counter
standing still.  We kill one agent with SIGKILL and time how long until
every survivor agrees; then it restarts from its SQLite store and rejoins.

TXT
t0=$(now_ms)
for i in 1 2 3 4 5; do start "n$i" $((i - 1)); sleep 0.1; done
wait_for 30 "five agents to see five alive" all_alive
echo "--- all five agents see each other after $(( $(now_ms) - t0 )) ms (zpfctl members on n1):"
ctl n1 members
incarnation() { members_flat n1 | grep "\"name\":\"$1\"" |
                 grep -o '"incarnation":[0-9]*' | cut -d: -f2; }
inc_before=$(incarnation n3)

echo; echo "--- kill -9 n3 (pid ${pid[n3]})"
kill -9 "${pid[n3]}"; wait "${pid[n3]}" 2>/dev/null || true; unset 'pid[n3]'
t1=$(now_ms)
wait_for 60 "every survivor to declare n3 dead" dead_everywhere
echo "--- every survivor declared n3 dead $(( $(now_ms) - t1 )) ms after the kill:"
ctl n1 members

echo; echo "--- restart n3 with the same data_dir"
t2=$(now_ms)
start n3 2
wait_for 30 "n3 alive everywhere" alive_everywhere
inc_after=$(incarnation n3)
echo "--- n3 alive again everywhere after $(( $(now_ms) - t2 )) ms, incarnation $inc_before -> $inc_after:"
ctl n1 members

echo; echo "--- SIGTERM to all: each announces its leave and exits 0"
status=0
for n in n5 n4 n3 n2 n1; do
    kill -TERM "${pid[$n]}"
    wait "${pid[$n]}" || status=$?
    unset "pid[$n]"
done
[ "$inc_after" -gt "$inc_before" ] || status=1
if [ $status -eq 0 ]; then
    echo "demo: detected, agreed, recovered, and left cleanly."
else
    echo "demo: something went wrong (status $status); logs:"; tail -n 20 "$dir"/*.log
fi
exit $status
