#!/usr/bin/env bash
# What one zpfd costs, and how fast a cluster of them sees a crash: real
# agents on 127.0.0.1 with the default gossip timings (probe_interval 1s,
# gossip_interval 200ms, push_pull_interval 30s), sealed.
#
#   tests/bench/agent_figures.sh [--agents N] [--window S]
#     --agents N   size of the large cluster (default 50, at least 5)
#     --window S   steady window over which CPU and traffic are measured
#                  (default 60 seconds)
#   B=build (default: the optimised build; B=build/san measures ASan)
#
# Prints, for a 5-agent cluster and an N-agent cluster:
#   RSS            VmRSS of each agent after SETTLE_S seconds settled
#                  (the median is "one idle agent")
#   CPU            utime + stime over the window, % of one core per agent
#   traffic        zpf_net_bytes_total{dir="out"} and
#                  zpf_gossip_packets_total{dir="out"} deltas per second
# and, in the large cluster, kill-to-all-detected: kill -9 one agent, poll
# every survivor's `members --json` every 100 ms (all in parallel) until
# each reports it dead; three victims, each time and the median.
#
# These are figures, not a test: no number makes it fail.  It exits non-zero
# only when it cannot measure (an agent does not start, a cluster does not
# converge).  Every agent and the temporary directory go at exit.
#
# Expect, on a 2-core VM with the defaults (about 4 minutes in all):
#   the 5-agent cluster up in ~2 s; the 50-agent one in ~20 s (5 batches);
#   RSS about 5 MiB per agent, barely more at 50 members than at 5;
#   CPU under 0.1 % of a core per agent: the per-agent load is one probe
#   per second and gossip only when there is news, whatever the size;
#   about 2 datagrams and a few hundred bytes out per agent per second,
#   a little more at 50 (bigger push-pulls every 30 s, scaled up beyond 32
#   members);
#   a kill -9 seen by all 49 survivors in 3 to 9 s: some agent probes the
#   victim within about a second (49 probers, one probe each per second),
#   others confirm the suspicion, and counter_fast_expiry declares a
#   confirmed, silent suspect dead after probe_interval * log10(n) = 1.7 s;
#   Lifeguard's bound without confirmations is 6 * 4 * log10(50) s = 41 s.
set -u
cd "$(dirname "$0")/../.." || exit 2

AGENTS=50
WINDOW=60
usage() {
    echo "usage: $0 [--agents N] [--window SECONDS]" >&2
    exit 2
}
ARGS="$*"
while [ $# -gt 0 ]; do
    case $1 in
    --agents) [ $# -ge 2 ] || usage; AGENTS=$2; shift 2 ;;
    --window) [ $# -ge 2 ] || usage; WINDOW=$2; shift 2 ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) usage ;;
    esac
done
[[ $AGENTS =~ ^[0-9]+$ ]] && [ "$AGENTS" -ge 5 ] && [ "$AGENTS" -le 500 ] ||
    { echo "--agents: a number from 5 to 500" >&2; exit 2; }
[[ $WINDOW =~ ^[0-9]+$ ]] && [ "$WINDOW" -ge 1 ] ||
    { echo "--window: a whole number of seconds >= 1" >&2; exit 2; }

# lib.sh: the temp dir, the exit trap that kills every agent, ports,
# configs, starting and stopping agents.  It reports like a test, but this
# script never calls zl_run: only its plumbing is used.
# shellcheck source=tests/integration/lib.sh
. tests/integration/lib.sh
zl_need_binaries

SMALL=5
# Settled: every agent has joined, the join's push-pulls are over and the
# first suspicions of a starting cluster (agents probing peers that are
# still starting) are refuted.  Half a push-pull interval more than that.
SETTLE_S=30
# Agents started together, then the cluster is left to converge before the
# next batch: 50 agents joining at once all push-pull the same seed in the
# same second, which measures the seed, not the steady state.
BATCH=10
BATCH_CONVERGE_S=60 # 10 agents into 40 take a few seconds; generous
DETECT_TIMEOUT_S=120 # well past Lifeguard's 41 s bound at n = 50
KILLS=3

# Descriptors: each agent needs a dozen or so of its own (sockets, SQLite,
# the loop) under its own limit; this shell and the poller hold two pipes
# per agent asked at once.  Raise the soft limit to what N agents need.
need_fds=$((AGENTS * 4 + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
    hard=$(ulimit -Hn)
    if [ "$hard" = unlimited ] || [ "$hard" -ge "$need_fds" ]; then
        ulimit -n "$need_fds"
    else
        ulimit -n "$hard"
        echo "note: ulimit -n is at most $hard; $AGENTS agents may run short" >&2
    fi
fi

cat >"$ZL_DIR/figures.py" <<'EOF'
import json, os, signal, statistics, subprocess, sys, time

TICK = os.sysconf("SC_CLK_TCK")

def metrics(ctl, socks):
    procs = [subprocess.Popen([ctl, "-s", s, "-t", "10", "metrics"],
                              stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
             for s in socks]
    out = []
    for p in procs:
        try:
            text, _ = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            text = ""
        m = {}
        for line in text.splitlines():
            f = line.split()
            if len(f) == 2 and not line.startswith("#"):
                try:
                    m[f[0]] = float(f[1])
                except ValueError:
                    pass
        out.append(m)
    return out

def proc(pid):
    with open("/proc/%d/stat" % pid) as f:
        # The command name may hold spaces: the fields follow its ')'.
        rest = f.read().rsplit(")", 1)[1].split()
    ticks = int(rest[11]) + int(rest[12])      # utime, stime
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])     # kB
    return ticks, rss

def agents(args):
    return [a.split("=", 2) for a in args]    # name=pid=sock

cmd, ctl = sys.argv[1], sys.argv[2]

if cmd == "sample":             # sample OUT name=pid=sock...
    out, ags = sys.argv[3], agents(sys.argv[4:])
    s = {}
    for name, pid, sock in ags:
        ticks, rss = proc(int(pid))
        s[name] = {"t": time.monotonic(), "ticks": ticks, "rss_kb": rss}
    for (name, _, _), m in zip(ags, metrics(ctl, [a[2] for a in ags])):
        s[name]["bytes_out"] = m.get('zpf_net_bytes_total{dir="out"}')
        s[name]["pkts_out"] = m.get('zpf_gossip_packets_total{dir="out"}')
    with open(out, "w") as f:
        json.dump(s, f)

elif cmd == "detect":           # detect OUT VICTIM PID TIMEOUT name=sock...
    out, victim, pid, limit = sys.argv[3], sys.argv[4], int(sys.argv[5]), \
        float(sys.argv[6])
    left = dict(a.split("=", 1) for a in sys.argv[7:])
    seen, rounds = {}, 0
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    while left and time.monotonic() - t0 < limit:
        r0 = time.monotonic()
        rounds += 1
        procs = {n: subprocess.Popen([ctl, "-s", s, "-t", "5", "--json",
                                      "members"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
                 for n, s in left.items()}
        for n, p in procs.items():
            try:
                text, _ = p.communicate(timeout=8)
                ms = json.loads(text)
            except (subprocess.TimeoutExpired, ValueError):
                p.kill()
                p.communicate()
                continue
            if any(m.get("name") == victim and m.get("state") == "dead"
                   for m in ms if isinstance(m, dict)):
                seen[n] = time.monotonic() - t0
                del left[n]
        time.sleep(max(0.0, r0 + 0.1 - time.monotonic()))
    with open(out, "w") as f:
        json.dump({"victim": victim, "seen": seen, "missing": sorted(left),
                   "round_ms": 1000.0 * (time.monotonic() - t0) / max(rounds, 1),
                   "all": max(seen.values()) if seen and not left else None,
                   "first": min(seen.values()) if seen else None}, f)

elif cmd == "table":            # table DIR SIZES...
    d, sizes = sys.argv[3], [int(x) for x in sys.argv[4:]]
    def load(p):
        with open(os.path.join(d, p)) as f:
            return json.load(f)
    def fmt_mib(kb):
        return "%.1f MiB" % (kb / 1024.0)
    rows = [[], [], [], [], [], []]
    for n in sizes:
        t0, t1 = load("%d_t0.json" % n), load("%d_t1.json" % n)
        rs = [v["rss_kb"] for v in t0.values()]
        cpu, bps, pps = [], [], []
        for name, a in t0.items():
            b = t1.get(name)
            if b is None:
                continue
            dt = b["t"] - a["t"]
            cpu.append(100.0 * (b["ticks"] - a["ticks"]) / TICK / dt)
            if a["bytes_out"] is not None and b["bytes_out"] is not None:
                bps.append((b["bytes_out"] - a["bytes_out"]) / dt)
            if a["pkts_out"] is not None and b["pkts_out"] is not None:
                pps.append((b["pkts_out"] - a["pkts_out"]) / dt)
        med = statistics.median
        rows[0].append(fmt_mib(med(rs)))
        rows[1].append(fmt_mib(max(rs)))
        rows[2].append("%.2f %%" % med(cpu))
        rows[3].append("%.2f %%" % max(cpu))
        rows[4].append("%.0f B/s" % med(bps) if bps else "n/a")
        rows[5].append("%.1f /s" % med(pps) if pps else "n/a")
    names = ["RSS per agent, median", "RSS per agent, max",
             "CPU per agent, median (% of a core)",
             "CPU per agent, max (% of a core)",
             "bytes out per agent, median (UDP+TCP)",
             "datagrams out per agent, median"]
    w = max(len(x) for x in names) + 2
    print("%-*s" % (w, "") + "".join("%14s" % ("%d agents" % n)
                                     for n in sizes))
    for name, r in zip(names, rows):
        print("%-*s" % (w, name) + "".join("%14s" % x for x in r))

elif cmd == "kills":            # kills FILE...
    alls, rounds = [], []
    for p in sys.argv[3:]:
        with open(p) as f:
            k = json.load(f)
        rounds.append(k["round_ms"])
        n = len(k["seen"]) + len(k["missing"])
        if k["all"] is None:
            print("  victim %-5s not seen dead by %d of %d survivors "
                  "(first after %s)" % (k["victim"], len(k["missing"]), n,
                  "%.1f s" % k["first"] if k["first"] is not None else "-"))
        else:
            alls.append(k["all"])
            print("  victim %-5s all %d survivors saw it dead after %5.1f s "
                  "(first after %.1f s)" % (k["victim"], n, k["all"],
                                            k["first"]))
    if alls:
        print("  median of %d: %.1f s" % (len(alls), statistics.median(alls)))
    if rounds:
        # The resolution: a poll round asks every survivor not yet done.
        print("  (a poll round took %.0f ms on average)"
              % statistics.mean(rounds))
EOF

fig() { "$ZL_PY" "$ZL_DIR/figures.py" "$1" "$ZPFCTL" "${@:2}"; }

# name=pid=sock for every running agent of the names given.
triples() {
    local n
    for n in "$@"; do
        zl_running "$n" && echo "$n=$(zl_pid "$n")=$(zl_sock "$n")"
    done
}

die() {
    echo "agent_figures: $*" >&2
    ZL__FAILED+=("figures") # keep ZL_DIR and show the logs at exit
    exit 1
}

# Start a cluster of $2 agents named $1NN, in batches; the names go to
# CLUSTER.
start_cluster() {
    local prefix=$1 n=$2 key i name seed width
    width=${#n}
    key=$(zl_keygen) || die "zpfctl keygen failed"
    zl_ports "$n" || die "$ZL__WHY"
    CLUSTER=""
    for ((i = 1; i <= n; i++)); do
        name=$(printf "%s%0${width}d" "$prefix" "$i")
        local -a join=()
        if [ "$i" -gt 1 ]; then
            # The first agent and one random earlier one: a seed that
            # restarts is not everyone's only way in.
            seed=$((RANDOM % (i - 1)))
            join=(--join "127.0.0.1:$ZL_PORT")
            [ "$seed" -gt 0 ] && join+=(--join "127.0.0.1:$((ZL_PORT + seed))")
        fi
        zl_conf "$name" "127.0.0.1:$((ZL_PORT + i - 1))" --key "$key" \
            --cluster "figures-$prefix" --log-level notice "${join[@]}" ||
            die "zl_conf $name: $ZL__WHY"
        zl_start "$name" || die "$ZL__WHY"
        CLUSTER="$CLUSTER $name"
        if [ $((i % BATCH)) -eq 0 ] || [ "$i" -eq "$n" ]; then
            # shellcheck disable=SC2086
            zl_wait "$BATCH_CONVERGE_S" "$i agents to see $i alive" \
                zl_converged "$i" $CLUSTER >/dev/null ||
                die "$ZL__WHY"
        fi
    done
    CLUSTER=${CLUSTER# }
}

# SIGTERM everyone at once (a graceful leave each: up to leave_timeout,
# 5 s), then reap.  zl_stop would signal one at a time, and a second
# SIGTERM makes zpfd skip its leave.
any_running() {
    local n
    for n in $CLUSTER; do zl_running "$n" && return 0; done
    return 1
}
stop_cluster() {
    local n
    for n in $CLUSTER; do
        zl_running "$n" && kill -TERM "$(zl_pid "$n")" 2>/dev/null
    done
    zl_wait 20 "every agent to exit after SIGTERM" eval '! any_running' \
        >/dev/null || echo "note: $ZL__WHY; killing the rest" >&2
    {
        for n in $CLUSTER; do
            # Reaps; kills only a straggler.  Victims were reaped already.
            if [ -n "$(zl_pid "$n")" ]; then zl_kill "$n"; fi
        done
    } 2>/dev/null
}

# RSS after SETTLE_S, then CPU and traffic over WINDOW seconds.
measure() {
    local n=$1 t0
    t0=$(zl_now_ms)
    # shellcheck disable=SC2086
    zl_wait "$SETTLE_S" "$n agents to see $n alive" zl_converged "$n" $CLUSTER ||
        die "$ZL__WHY"
    # A measurement window, not a wait for something: nothing to poll.
    local rest=$((SETTLE_S - ($(zl_now_ms) - t0) / 1000))
    [ "$rest" -gt 0 ] && sleep "$rest"
    # shellcheck disable=SC2046,SC2086
    fig sample "$ZL_DIR/${n}_t0.json" $(triples $CLUSTER) || die "sampling failed"
    sleep "$WINDOW"
    # shellcheck disable=SC2046,SC2086
    fig sample "$ZL_DIR/${n}_t1.json" $(triples $CLUSTER) || die "sampling failed"
    # shellcheck disable=SC2086
    zl_converged "$n" $CLUSTER ||
        echo "note: not converged at the end of the window: $ZL_SEEN" >&2
}

T_START=$(zl_now_ms)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "agent_figures: 5 agents, then $AGENTS; ${SETTLE_S}s settle + ${WINDOW}s window each" >&2

start_cluster s "$SMALL"
measure "$SMALL"
stop_cluster

start_cluster n "$AGENTS"
measure "$AGENTS"

# Three victims, never the same, never the first agent (everyone's seed).
kill_files=""
victims=$(tr ' ' '\n' <<<"$CLUSTER" | tail -n +2 | shuf -n "$KILLS")
for v in $victims; do
    survivors=""
    for n in $CLUSTER; do
        [ "$n" != "$v" ] && zl_running "$n" && survivors="$survivors $n=$(zl_sock "$n")"
    done
    # The poller kills the victim, so that its clock starts at the kill;
    # bash reaps it, inside the braces so that its "Killed" notice goes.
    {
        # shellcheck disable=SC2086
        fig detect "$ZL_DIR/kill_$v.json" "$v" "$(zl_pid "$v")" \
            "$(zl_scale $DETECT_TIMEOUT_S)" $survivors 2>>"$ZL_DIR/figures.err"
        rc=$?
        zl_kill "$v"
    } 2>/dev/null
    [ "$rc" = 0 ] || die "the detection poller failed: $(tail -n 5 "$ZL_DIR/figures.err")"
    kill_files="$kill_files $ZL_DIR/kill_$v.json"
done
stop_cluster

# --- the table -----------------------------------------------------------------

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo
echo "zpf agent figures"
echo "  command   tests/bench/agent_figures.sh${ARGS:+ $ARGS} (B=${B#"$ZL_ROOT"/})"
echo "  zpfd      $("$ZPFD" --version 2>&1 | head -n 1)"
echo "  machine   nproc $(nproc), Linux $(uname -r) $(uname -m)${cpu:+, $cpu}"
echo "  load      $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end" \
    "(1, 5, 15 min; other work on the machine skews RSS little, latency more)"
echo "  gossip    defaults (probe_interval 1s, gossip_interval 200ms," \
    "push_pull_interval 30s), sealed, UDP on 127.0.0.1"
echo "  method    RSS after ${SETTLE_S}s settled; CPU and traffic over a" \
    "${WINDOW}s steady window"
echo
fig table "$ZL_DIR" "$SMALL" "$AGENTS"
echo
echo "kill -9 to every survivor reporting it dead ($AGENTS agents," \
    "members --json of all survivors every 100 ms):"
# shellcheck disable=SC2086
fig kills $kill_files
echo
echo "total time $(($(zl_now_ms) / 1000 - T_START / 1000))s"
