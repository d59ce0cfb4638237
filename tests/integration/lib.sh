# shellcheck shell=bash disable=SC2034  # ZL_* results are read by the suites
#
# Shared helpers of the integration suites: real zpfd and zpfctl processes
# on this host, reported the way cmocka reports, so tests/run-tests.sh counts
# them like the unit tests.
#
# A suite is a bash script that does, from the repository root:
#
#     . tests/integration/lib.sh     # sets everything up, see below
#     t_converge() { ...; zl_fail "why" ; return 1; ... }
#     zl_run converge t_converge
#     zl_summary                     # the summary lines; exits 0 or 1
#
# Sourcing creates one temporary directory, ZL_DIR, and installs an EXIT
# (and INT/TERM) trap that kills every tracked process, runs the zl_on_exit
# hooks and removes ZL_DIR.  When a check failed, ZL_DIR is kept, its path is
# printed with the tail of every agent's log, before the summary.
#
# Environment
#   B                build directory with zpfd and zpfctl (default build;
#                    relative to the repository root)
#   ZPF_TIME_SCALE   multiplier for every timeout (default 3 when B contains
#                    "san", since ASan agents run about 3x slower, else 1)
#   ZPF_KEEP=1       keep ZL_DIR even when everything passed
#
# Variables set on sourcing (read only)
#   ZL_ROOT          the repository root
#   ZPFD ZPFCTL      absolute paths of the programs in $B
#   ZL_DIR           the temporary directory (mode 0700)
#   ZL_SCALE         the time multiplier, a whole number >= 1
#   ZL_PY            the python3 to run (the system one when there is one:
#                    it starts fast and any user can run it)
#   ZL_SUITE         the suite's name (its file name without .sh)
#
# Reporting ("[ RUN      ] name", then "[       OK ] name" or
# "[  FAILED  ] name: why"; names must not start with a digit)
#   zl_run NAME FUNC [ARGS...]   run one check in this shell; it passes when
#                                FUNC returns 0
#   zl_fail MSG...               say why the running check fails (printed at
#                                once, kept for the FAILED line); returns 1
#   zl_skip MSG...               mark the running check SKIPPED; the check
#                                should return 0 right after
#   zl_note MSG...               an informational line under the check
#   zl_passed NAME               true if check NAME ran and passed
#   zl_not_run NAME... REASON    report checks that cannot run (as FAILED)
#   zl_summary                   print cmocka's summary lines and exit: 0
#                                when nothing failed, else 1
#   zl_fatal MSG...              the suite cannot go on: say why, exit 1
#
# Processes and cleanup
#   zl_track_pid PID [NAME]      kill -9 PID at exit (if still running)
#   zl_on_exit FUNC              run FUNC at exit, after the kills (hooks run
#                                newest first)
#   zl_need_binaries             fatal unless $ZPFD and $ZPFCTL exist
#   zl_pid_running PID           true while PID runs (a zombie does not)
#
# Time (milliseconds are whole numbers; nothing here sleeps blindly)
#   zl_now_ms                    wall clock in ms
#   zl_secs MS                   MS as seconds with one decimal ("3.4")
#   zl_scale SECONDS             SECONDS * ZL_SCALE, rounded up to a whole
#                                number (SECONDS may have a fraction)
#   zl_wait SECONDS WHAT CMD...  run CMD every ZL_POLL seconds (default 0.2)
#                                until it succeeds; SECONDS is scaled.  On
#                                timeout: zl_fail "timed out after Ns
#                                waiting for WHAT (last: $ZL_SEEN)", return 1.
#                                Sets ZL_WAITED_MS.  CMD runs in this shell and
#                                may set ZL_SEEN to say what it saw.
#
# Ports
#   zl_ports N                   set ZL_PORT to the first of N consecutive
#                                ports free for TCP and UDP (ss), picked at
#                                random in 20000..60000, outside the kernel's
#                                ephemeral range when possible; never hands
#                                out a port twice.  Call it directly, not in
#                                $(...), or the bookkeeping is lost.
#
# Agents: agent NAME lives in $ZL_DIR/NAME/ (zpf.yaml, data/, keyring,
# ctl.sock, zpfd.log)
#   zl_keygen                    print a new cluster key (zpfctl keygen)
#   zl_conf NAME BIND [OPTIONS]  write NAME's zpf.yaml; BIND is "IP:PORT" or
#                                "[IPv6]:PORT".  Options:
#       --join ADDR        a seed (repeatable; default: none)
#       --cluster ID       default $ZL_CLUSTER, else "zpf-test"
#       --key KEY          (re)write the keyring file with this one key;
#                          without --key an existing keyring file is used
#       --insecure         security: insecure: true
#       --transport T      udp or tcp
#       --tags YAML        node.tags, e.g. '{role: web}'
#       --log-level L      default info
#       --gossip 'k: v'    one more line of the gossip section (repeatable);
#                          the lines of $ZL_GOSSIP (newline separated) come
#                          first, for timings shared by a suite
#       --yaml TEXT        appended verbatim (more sections)
#   zl_start NAME [WRAP...]      start zpfd -c NAME's config (prefixed by WRAP,
#                                e.g. ip netns exec NS), logging to zpfd.log,
#                                and wait until its socket answers
#   zl_stop NAME [SECONDS]       SIGTERM, wait up to SECONDS (default 15,
#                                scaled) for the exit; sets ZL_RC (exit
#                                status) and ZL_STOP_MS; returns 1 (after a
#                                kill -9) if it did not exit in time
#   zl_kill NAME                 SIGKILL and reap; sets ZL_RC
#   zl_running NAME              true while NAME's zpfd runs
#   zl_pid NAME                  print NAME's zpfd PID
#   zl_ctl NAME ARGS...          zpfctl -s NAME's socket -t 5s(scaled) ARGS
#   zl_sock NAME / zl_conf_file NAME / zl_agent_log NAME   paths
#   zl_wait_socket SOCK [SECONDS]  wait until zpfctl status answers on SOCK
#                                (default 15 s, scaled)
#
# Views of the membership (every agent asked in parallel, one python)
#   zl_py CODE [ARGS...]         run python with the JSON on stdin as d
#   zl_view NAME...              lines "OBSERVER MEMBER STATE INCARNATION";
#                                "OBSERVER - unreachable 0" for no answer
#   zl_state OBS MEMBER          MEMBER's state as OBS sees it, "absent"
#                                or "unreachable"
#   zl_all_see STATES MEMBER OBS...  every OBS lists MEMBER in one of STATES
#                                ("alive", "dead|left"; "absent" matches
#                                a member not listed); sets ZL_SEEN
#   zl_converged N OBS...        every OBS sees exactly N members alive;
#                                sets ZL_SEEN
#   zl_metric NAME SERIES        value of one metrics sample, e.g.
#                                'zpf_net_dropped_total{cause="auth"}'
#   zl_monitor_start OUT LIMIT NAME...   poll NAMEs' members every 0.5 s in
#                                the background, recording any member seen
#                                dead or left, or suspect for over LIMIT s
#   zl_monitor_stop              stop it; returns 1 when something was
#                                recorded; its summary is in ZL_MONITOR
#
# Every function works under `set -u`; none needs `set -e`.

# --- setup ---------------------------------------------------------------------

ZL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${B:-build}
case $B in
/*) ;;
*) B=$ZL_ROOT/$B ;;
esac
ZPFD=$B/zpfd
ZPFCTL=$B/zpfctl
ZL_SUITE=$(basename "$0" .sh)

if [ -n "${ZPF_TIME_SCALE:-}" ]; then
    ZL_SCALE=$ZPF_TIME_SCALE
elif [[ $B == *san* ]]; then
    ZL_SCALE=3
else
    ZL_SCALE=1
fi
if ! [[ $ZL_SCALE =~ ^[0-9]+$ ]] || [ "$ZL_SCALE" -lt 1 ]; then
    echo "ZPF_TIME_SCALE must be a whole number >= 1, not '$ZL_SCALE'" >&2
    exit 2
fi

if [ -x /usr/bin/python3 ]; then
    ZL_PY=/usr/bin/python3
else
    ZL_PY=$(command -v python3) || { echo "python3 is needed" >&2; exit 2; }
fi

ZL_POLL=${ZL_POLL:-0.2}
ZL_CLUSTER=${ZL_CLUSTER:-zpf-test}
ZL_GOSSIP=${ZL_GOSSIP:-}
ZL_SEEN=""
ZL_WAITED_MS=0
ZL_RC=0
ZL_STOP_MS=0
ZL_PORT=0
ZL_MONITOR=""

declare -a ZL__PIDS=() ZL__PID_NAMES=() ZL__HOOKS=() ZL__FAILED=()
declare -a ZL__SKIPPED=()
declare -A ZL__RESULT=() ZL__AGENT_PID=() ZL__PORTS_USED=()
ZL__PASSED=0
ZL__CURRENT=""
ZL__WHY=""
ZL__SKIP=""
ZL__MONITOR_PID=""
ZL__MONITOR_OUT=""
ZL__SUMMARY_DONE=""

ZL_DIR=$(mktemp -d "/tmp/zpf-$ZL_SUITE.XXXXXX") ||
    { echo "cannot create a temporary directory" >&2; exit 2; }

# --- reporting -----------------------------------------------------------------

zl_note() {
    echo "  $*"
}

zl_fail() {
    ZL__WHY="$*"
    echo "  FAIL: $*"
    return 1
}

zl_skip() {
    ZL__SKIP="$*"
    echo "  skipped: $*"
    return 0
}

zl_run() {
    local name=$1 fn=$2 rc t0
    shift 2
    ZL__CURRENT=$name
    ZL__WHY=""
    ZL__SKIP=""
    echo "[ RUN      ] $name"
    t0=$(zl_now_ms)
    "$fn" "$@"
    rc=$?
    if [ "$rc" -eq 0 ] && [ -n "$ZL__SKIP" ]; then
        ZL__RESULT[$name]=skipped
        ZL__SKIPPED+=("$name")
        echo "[  SKIPPED ] $name"
    elif [ "$rc" -eq 0 ]; then
        ZL__RESULT[$name]=passed
        ZL__PASSED=$((ZL__PASSED + 1))
        echo "[       OK ] $name ($(zl_secs $(($(zl_now_ms) - t0)))s)"
    else
        ZL__RESULT[$name]=failed
        ZL__FAILED+=("$name")
        echo "[  FAILED  ] $name: ${ZL__WHY:-returned $rc}"
    fi
    ZL__CURRENT=""
    return 0
}

zl_passed() {
    [ "${ZL__RESULT[$1]:-}" = passed ]
}

zl_not_run() {
    local reason=${!#} n
    local -a names=("${@:1:$#-1}")
    for n in "${names[@]}"; do
        echo "[ RUN      ] $n"
        ZL__RESULT[$n]=failed
        ZL__FAILED+=("$n")
        echo "[  FAILED  ] $n: not run: $reason"
    done
}

# The tail of every agent log in ZL_DIR, for a failed run.
zl__show_logs() {
    local f
    echo "---- kept $ZL_DIR for inspection"
    for f in "$ZL_DIR"/*/zpfd.log "$ZL_DIR"/*.log; do
        [ -f "$f" ] || continue
        echo "---- tail of ${f#"$ZL_DIR"/}"
        tail -n 15 "$f" | cut -c1-300
    done
    echo "----"
}

zl_summary() {
    local n total=$((ZL__PASSED + ${#ZL__FAILED[@]} + ${#ZL__SKIPPED[@]}))
    if [ "${#ZL__FAILED[@]}" -gt 0 ]; then
        zl__show_logs
    fi
    ZL__SUMMARY_DONE=1
    echo "[==========] $total test(s) run."
    echo "[  PASSED  ] $ZL__PASSED test(s)."
    if [ "${#ZL__SKIPPED[@]}" -gt 0 ]; then
        echo "[  SKIPPED ] ${#ZL__SKIPPED[@]} test(s), listed below:"
        for n in "${ZL__SKIPPED[@]}"; do echo "[  SKIPPED ] $n"; done
    fi
    if [ "${#ZL__FAILED[@]}" -gt 0 ]; then
        echo "[  FAILED  ] ${#ZL__FAILED[@]} test(s), listed below:"
        for n in "${ZL__FAILED[@]}"; do echo "[  FAILED  ] $n"; done
        exit 1
    fi
    exit 0
}

zl_fatal() {
    echo "$ZL_SUITE: fatal: $*"
    [ -n "$ZL__CURRENT" ] && ZL__FAILED+=("$ZL__CURRENT")
    ZL__FAILED+=("setup")
    zl_summary
}

# --- processes and cleanup -----------------------------------------------------

zl_track_pid() {
    ZL__PIDS+=("$1")
    ZL__PID_NAMES+=("${2:-pid $1}")
}

zl_on_exit() {
    ZL__HOOKS+=("$1")
}

zl_need_binaries() {
    local p
    for p in "$ZPFD" "$ZPFCTL"; do
        [ -x "$p" ] || zl_fatal "$p is missing: build it first (make all," \
            "or make all SAN=1 for B=build/san)"
    done
}

zl_pid_running() {
    local st
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
    # kill -0 succeeds on a zombie: an exited child not yet reaped.
    st=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" \
        2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

zl__on_exit() {
    local rc=$? i pid
    trap - EXIT INT TERM
    for pid in "${ZL__PIDS[@]}"; do
        zl_pid_running "$pid" && kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${ZL__PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    for ((i = ${#ZL__HOOKS[@]} - 1; i >= 0; i--)); do
        "${ZL__HOOKS[$i]}"
    done
    if [ "${#ZL__FAILED[@]}" -gt 0 ] || { [ "$rc" -ne 0 ] &&
        [ -z "$ZL__SUMMARY_DONE" ]; }; then
        [ -n "$ZL__SUMMARY_DONE" ] || zl__show_logs
    elif [ "${ZPF_KEEP:-0}" = 1 ]; then
        echo "kept $ZL_DIR (ZPF_KEEP=1)"
    else
        rm -rf "$ZL_DIR"
    fi
    exit "$rc"
}

zl__on_signal() {
    echo "$ZL_SUITE: interrupted by SIG$1"
    ZL__FAILED+=("${ZL__CURRENT:-interrupted}")
    exit 130
}

trap zl__on_exit EXIT
trap 'zl__on_signal INT' INT
trap 'zl__on_signal TERM' TERM

# --- time ----------------------------------------------------------------------

zl_now_ms() {
    # EPOCHREALTIME's separator follows the locale: keep the digits only.
    local t=${EPOCHREALTIME//[!0-9]/}
    echo $((t / 1000))
}

zl_secs() {
    local ms=$1 sign=""
    if [ "$ms" -lt 0 ]; then sign=-; ms=$((-ms)); fi
    echo "$sign$((ms / 1000)).$(((ms % 1000) / 100))"
}

zl_scale() {
    if [[ $1 =~ ^[0-9]+$ ]]; then
        echo $(($1 * ZL_SCALE))
    else
        awk -v n="$1" -v s="$ZL_SCALE" \
            'BEGIN { v = n * s; i = int(v); if (i < v) i++; print i }'
    fi
}

zl_wait() {
    local secs what t0 now
    secs=$(zl_scale "$1")
    what=$2
    shift 2
    t0=$(zl_now_ms)
    ZL_SEEN=""
    while :; do
        if "$@"; then
            ZL_WAITED_MS=$(($(zl_now_ms) - t0))
            return 0
        fi
        now=$(zl_now_ms)
        if [ $((now - t0)) -ge $((secs * 1000)) ]; then
            ZL_WAITED_MS=$((now - t0))
            zl_fail "timed out after ${secs}s waiting for $what${ZL_SEEN:+ (last: $ZL_SEEN)}"
            return 1
        fi
        sleep "$ZL_POLL"
    done
}

# --- ports ---------------------------------------------------------------------

zl_ports() {
    local n=$1 lo=20000 hi=60000 eph_lo eph_hi base p busy used
    if read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
        # Outgoing connections take ephemeral ports at any time, including
        # one of ours while its agent restarts.
        if [ "$eph_lo" -gt $((lo + 1000 + n)) ]; then
            hi=$((eph_lo - 1))
        elif [ "$eph_hi" -lt $((hi - 1000 - n)) ]; then
            lo=$((eph_hi + 1))
        fi
    fi
    used=$(ss -Htuan 2>/dev/null | awk '{ n = split($5, a, ":"); print a[n] }' |
        sort -u)
    for _ in $(seq 1 100); do
        base=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo - n)))
        busy=""
        for ((p = base; p < base + n; p++)); do
            if [ -n "${ZL__PORTS_USED[$p]:-}" ] ||
                grep -qx "$p" <<<"$used"; then
                busy=1
                break
            fi
        done
        if [ -z "$busy" ]; then
            for ((p = base; p < base + n; p++)); do ZL__PORTS_USED[$p]=1; done
            ZL_PORT=$base
            return 0
        fi
    done
    zl_fail "no $n consecutive free ports in $lo..$hi"
}

# --- agents --------------------------------------------------------------------

zl_keygen() {
    timeout -k 2 "$(zl_scale 10)" "$ZPFCTL" keygen
}

zl_sock() { echo "$ZL_DIR/$1/ctl.sock"; }
zl_conf_file() { echo "$ZL_DIR/$1/zpf.yaml"; }
zl_agent_log() { echo "$ZL_DIR/$1/zpfd.log"; }
zl_pid() { echo "${ZL__AGENT_PID[$1]:-}"; }

zl_conf() {
    local name=$1 bind=$2 dir="$ZL_DIR/$1"
    shift 2
    local cluster=$ZL_CLUSTER key="" insecure="" transport="" tags=""
    local level=info yaml="" j line
    local -a join=() gossip=()
    while [ $# -gt 0 ]; do
        case $1 in
        --join) join+=("$2"); shift 2 ;;
        --cluster) cluster=$2; shift 2 ;;
        --key) key=$2; shift 2 ;;
        --insecure) insecure=1; shift ;;
        --transport) transport=$2; shift 2 ;;
        --tags) tags=$2; shift 2 ;;
        --log-level) level=$2; shift 2 ;;
        --gossip) gossip+=("$2"); shift 2 ;;
        --yaml) yaml=$2; shift 2 ;;
        *) zl_fail "zl_conf: unknown option $1"; return 1 ;;
        esac
    done
    mkdir -p "$dir/data" || return 1
    chmod 0700 "$dir"
    if [ -n "$key" ]; then
        (umask 077 && echo "$key" >"$dir/keyring") || return 1
    elif [ -z "$insecure" ] && [ ! -f "$dir/keyring" ]; then
        zl_fail "zl_conf $name: no --key and no keyring file yet"
        return 1
    fi
    {
        echo "# written by tests/integration/lib.sh for suite $ZL_SUITE"
        echo "node:"
        echo "  name: $name"
        echo "  data_dir: $dir/data"
        [ -n "$tags" ] && echo "  tags: $tags"
        echo "gossip:"
        echo "  cluster: $cluster"
        echo "  bind: \"$bind\""
        if [ ${#join[@]} -gt 0 ]; then
            printf '  join: ['
            local sep=""
            for j in "${join[@]}"; do printf '%s"%s"' "$sep" "$j"; sep=", "; done
            printf ']\n'
        fi
        [ -n "$transport" ] && echo "  transport: $transport"
        while IFS= read -r line; do
            [ -n "$line" ] && echo "  $line"
        done <<<"$ZL_GOSSIP"
        for line in "${gossip[@]}"; do echo "  $line"; done
        echo "security:"
        if [ -n "$insecure" ]; then
            echo "  insecure: true"
        else
            echo "  keyring: $dir/keyring"
        fi
        echo "control:"
        echo "  socket: $dir/ctl.sock"
        echo "log:"
        echo "  level: $level"
        if [ -n "$yaml" ]; then echo "$yaml"; fi
    } >"$dir/zpf.yaml"
}

zl_running() {
    zl_pid_running "${ZL__AGENT_PID[$1]:-}"
}

zl_wait_socket() {
    local sock=$1 secs=${2:-15}
    zl__socket_answers() {
        "$ZPFCTL" -s "$sock" -t 2 status >/dev/null 2>&1
    }
    zl_wait "$secs" "zpfd to answer on $sock" zl__socket_answers
}

zl_start() {
    local name=$1 conf="$ZL_DIR/$1/zpf.yaml" log="$ZL_DIR/$1/zpfd.log" pid
    shift
    [ -f "$conf" ] || { zl_fail "zl_start $name: no $conf (zl_conf first)"; return 1; }
    if zl_running "$name"; then
        zl_fail "zl_start $name: already running as pid $(zl_pid "$name")"
        return 1
    fi
    echo "==== start $(date -u +%FT%T.%3NZ)" >>"$log"
    "$@" "$ZPFD" -c "$conf" </dev/null >>"$log" 2>&1 &
    pid=$!
    ZL__AGENT_PID[$name]=$pid
    zl_track_pid "$pid" "$name"
    zl__started() {
        if ! zl_pid_running "$pid"; then
            wait "$pid" 2>/dev/null
            ZL_RC=$?
            ZL_SEEN="zpfd $name exited with status $ZL_RC: $(tail -n 3 "$log" | tr '\n' ' ')"
            return 2
        fi
        "$ZPFCTL" -s "$ZL_DIR/$name/ctl.sock" -t 2 status >/dev/null 2>&1
    }
    local t0 rc now secs
    secs=$(zl_scale 15)
    t0=$(zl_now_ms)
    while :; do
        zl__started
        rc=$?
        [ "$rc" -eq 0 ] && return 0
        if [ "$rc" -eq 2 ]; then
            zl_fail "$ZL_SEEN"
            return 1
        fi
        now=$(zl_now_ms)
        if [ $((now - t0)) -ge $((secs * 1000)) ]; then
            zl_fail "zpfd $name did not answer on its socket within ${secs}s"
            return 1
        fi
        sleep "$ZL_POLL"
    done
}

# Reap NAME's zpfd once it has exited; sets ZL_RC.
zl__reap() {
    local pid=${ZL__AGENT_PID[$1]:-}
    [ -n "$pid" ] || { ZL_RC=0; return 0; }
    wait "$pid" 2>/dev/null
    ZL_RC=$?
    unset "ZL__AGENT_PID[$1]"
}

zl_stop() {
    local name=$1 secs pid t0
    secs=$(zl_scale "${2:-15}")
    pid=${ZL__AGENT_PID[$name]:-}
    [ -n "$pid" ] || { zl_fail "zl_stop $name: not started"; return 1; }
    t0=$(zl_now_ms)
    kill -TERM "$pid" 2>/dev/null
    while zl_pid_running "$pid"; do
        if [ $(($(zl_now_ms) - t0)) -ge $((secs * 1000)) ]; then
            kill -KILL "$pid" 2>/dev/null
            zl__reap "$name"
            ZL_STOP_MS=$(($(zl_now_ms) - t0))
            zl_fail "zpfd $name still running ${secs}s after SIGTERM: killed"
            return 1
        fi
        sleep 0.05
    done
    ZL_STOP_MS=$(($(zl_now_ms) - t0))
    zl__reap "$name"
    return 0
}

zl_kill() {
    local pid=${ZL__AGENT_PID[$1]:-}
    [ -n "$pid" ] || { zl_fail "zl_kill $1: not started"; return 1; }
    kill -KILL "$pid" 2>/dev/null
    zl__reap "$1"
}

zl_ctl() {
    local name=$1
    shift
    "$ZPFCTL" -s "$ZL_DIR/$name/ctl.sock" -t "$(zl_scale 5)" "$@"
}

# --- views ---------------------------------------------------------------------

zl_py() {
    local code=$1
    shift
    "$ZL_PY" -c "import json, sys
d = json.load(sys.stdin)
$code" "$@"
}

# The helper behind zl_view and the monitor: asks every agent in parallel.
cat >"$ZL_DIR/zl_helper.py" <<'EOF'
import json, os, subprocess, sys, time

def views(ctl, pairs, timeout):
    procs = []
    for name, sock in pairs:
        procs.append((name, subprocess.Popen(
            [ctl, "-s", sock, "-t", str(timeout), "--json", "members"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)))
    out = []
    for name, p in procs:
        try:
            text, _ = p.communicate(timeout=timeout + 2)
            ms = json.loads(text) if p.returncode == 0 else None
            if not isinstance(ms, list):
                ms = None
        except (subprocess.TimeoutExpired, ValueError):
            p.kill()
            p.wait()
            ms = None
        out.append((name, ms))
    return out

def pairs_of(args):
    return [tuple(a.split("=", 1)) for a in args]

cmd, ctl = sys.argv[1], sys.argv[2]
if cmd == "view":
    timeout = float(sys.argv[3])
    for name, ms in views(ctl, pairs_of(sys.argv[4:]), timeout):
        if ms is None:
            print(name, "-", "unreachable", 0)
            continue
        for m in ms:
            print(name, m.get("name"), m.get("state"), m.get("incarnation"))
elif cmd == "monitor":
    stop, out, limit = sys.argv[3], sys.argv[4], float(sys.argv[5])
    pairs = pairs_of(sys.argv[6:])
    t0 = time.monotonic()
    rounds, silent, seen, bad, since, worst = 0, {}, {}, [], {}, 0.0
    # A bound of its own, in case the suite dies without stopping it.
    while not os.path.exists(stop) and time.monotonic() - t0 < 900:
        r0 = time.monotonic()
        rounds += 1
        for name, ms in views(ctl, pairs, 3):
            if ms is None:
                silent[name] = silent.get(name, 0) + 1
                continue
            for m in ms:
                st, who = m.get("state"), m.get("name")
                seen[st] = seen.get(st, 0) + 1
                key = (name, who)
                if st == "suspect":
                    since.setdefault(key, r0)
                    d = r0 - since[key]
                    worst = max(worst, d)
                    if d > limit and len(bad) < 20:
                        bad.append("%.1fs: %s saw %s suspect for %.1fs"
                                   % (r0 - t0, name, who, d))
                        since[key] = float("inf")
                else:
                    since.pop(key, None)
                if st in ("dead", "left") and len(bad) < 20:
                    bad.append("%.1fs: %s saw %s %s" % (r0 - t0, name, who, st))
        time.sleep(max(0.0, r0 + 0.5 - time.monotonic()))
    with open(out, "w") as f:
        f.write("%s\n" % ("bad" if bad or any(
            c > rounds // 10 for c in silent.values()) else "ok"))
        f.write("%d rounds in %.1fs; states seen: %s; longest suspicion "
                "%.1fs; unanswered polls: %s\n" % (
                    rounds, time.monotonic() - t0,
                    ", ".join("%s %d" % kv for kv in sorted(seen.items())),
                    max(worst, 0.0),
                    ", ".join("%s %d" % kv for kv in sorted(silent.items()))
                    or "none"))
        for b in bad:
            f.write(b + "\n")
EOF

zl__pairs() {
    local n
    for n in "$@"; do echo "$n=$ZL_DIR/$n/ctl.sock"; done
}

zl_view() {
    # shellcheck disable=SC2046
    "$ZL_PY" "$ZL_DIR/zl_helper.py" view "$ZPFCTL" "$(zl_scale 3)" \
        $(zl__pairs "$@")
}

zl_state() {
    local st
    st=$(zl_view "$1" | awk -v m="$2" '
        $3 == "unreachable" { s = "unreachable" }
        $2 == m { s = $3 }
        END { print (s == "" ? "absent" : s) }')
    echo "$st"
}

zl_all_see() {
    local states=$1 member=$2
    shift 2
    local v
    v=$(zl_view "$@")
    ZL_SEEN=$(awk -v m="$member" -v want="$states" -v obs="$*" '
        BEGIN { n = split(obs, o, " "); k = split(want, w, "|")
                for (i = 1; i <= k; i++) ok[w[i]] = 1 }
        $3 == "unreachable" { st[$1] = "unreachable" }
        $2 == m { st[$1] = $3 }
        END { for (i = 1; i <= n; i++) {
                  s = (o[i] in st) ? st[o[i]] : "absent"
                  if (!(s in ok)) out = out sprintf("%s sees %s %s; ", o[i], m, s)
              }
              printf "%s", out }' <<<"$v")
    [ -z "$ZL_SEEN" ]
}

zl_converged() {
    local want=$1
    shift
    local v
    v=$(zl_view "$@")
    ZL_SEEN=$(awk -v want="$want" -v obs="$*" '
        BEGIN { n = split(obs, o, " ") }
        $3 == "unreachable" { down[$1] = 1 }
        $3 == "alive" { alive[$1]++ }
        $3 != "alive" && $3 != "unreachable" { other[$1] = other[$1] " " $2 "=" $3 }
        END { for (i = 1; i <= n; i++) {
                  x = o[i]
                  if (x in down) { out = out x " does not answer; "; continue }
                  if (alive[x] + 0 != want)
                      out = out sprintf("%s sees %d alive%s; ", x, alive[x],
                                        other[x] == "" ? "" : " (" substr(other[x], 2) ")")
              }
              printf "%s", out }' <<<"$v")
    [ -z "$ZL_SEEN" ]
}

zl_metric() {
    zl_ctl "$1" metrics 2>/dev/null |
        awk -v k="$2" '$1 == k { print $2; f = 1 } END { exit !f }'
}

zl_monitor_start() {
    local out=$1 limit=$2
    shift 2
    rm -f "$ZL_DIR/monitor.stop" "$out"
    ZL__MONITOR_OUT=$out
    # shellcheck disable=SC2046
    "$ZL_PY" "$ZL_DIR/zl_helper.py" monitor "$ZPFCTL" "$ZL_DIR/monitor.stop" \
        "$out" "$limit" $(zl__pairs "$@") </dev/null &
    ZL__MONITOR_PID=$!
    zl_track_pid "$ZL__MONITOR_PID" monitor
}

zl_monitor_stop() {
    local pid=$ZL__MONITOR_PID t0
    [ -n "$pid" ] || { zl_fail "zl_monitor_stop: no monitor running"; return 1; }
    touch "$ZL_DIR/monitor.stop"
    t0=$(zl_now_ms)
    while zl_pid_running "$pid"; do
        if [ $(($(zl_now_ms) - t0)) -ge $(($(zl_scale 15) * 1000)) ]; then
            kill -KILL "$pid" 2>/dev/null
            break
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null
    ZL__MONITOR_PID=""
    if [ ! -s "$ZL__MONITOR_OUT" ]; then
        ZL_MONITOR="the monitor wrote no summary"
        return 1
    fi
    ZL_MONITOR=$(tail -n +2 "$ZL__MONITOR_OUT")
    [ "$(head -n 1 "$ZL__MONITOR_OUT")" = ok ]
}
