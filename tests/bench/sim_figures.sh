#!/usr/bin/env bash
# Figures of the gossip core from the simulator, as medians over seeds.
#
#   tests/bench/sim_figures.sh [SIZES] [SEEDS]
#     SIZES  cluster sizes, comma-separated (default 10,100,1000)
#     SEEDS  runs per configuration (default 5; each run crashes 3 nodes)
#
# For every size: join convergence, detection (first observer; all
# observers p50 and worst), false positives, datagram traffic per node
# (messages and bytes per second, push-pull apart), bytes per member record
# and simulated node-seconds per wall second.  Then false positives and
# detection under 5 % and 10 % loss at the smallest two sizes.  10,000
# nodes needs about 12 GB and 10-20 minutes: SIZES=10000 SEEDS=1.
#
# Times are simulated and deterministic (same seed, same figures); only
# wall_seconds and the rate depend on the machine.  Memberlist's figures
# for comparison: Serf 0.9.4 at n = 10 on this kind of machine, first
# suspicion 1.5 s after a kill, all observers 5.5 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=${1:-10,100,1000}
seeds=${2:-5}
sim=build/zpf-sim
[ -x "$sim" ] || make "$sim" >/dev/null

run() { # size seeds loss
    local n=$1 k=$2 loss=$3 s settle=0
    # Past a few hundred members the join's facts are still being
    # retransmitted when the view converges: measure traffic after that.
    [ "$n" -ge 500 ] && settle=60
    for s in $(seq 1 "$k"); do
        # A run that did not converge or detect exits 1 but still prints
        # its figures (with nulls); the summary says so.
        "$sim" --nodes "$n" --seed "$s" --kill 3 --loss "$loss" \
            --settle "$settle" --duration $((180 + settle)) --json --quiet || true
    done
}

summarise() { # label
    python3 -c '
import sys, json, statistics as st
label = sys.argv[1]
r = [json.loads(l) for l in sys.stdin if l.startswith("{")]
if not r:
    sys.exit("no runs")
def med(k):
    v = [x[k] for x in r if x[k] is not None]
    return st.median(v) if v else float("nan")
nulls = sum(1 for x in r if x["join_converge_ms"] is None or x["undetected"])
print("%-14s n=%-6d runs=%-2d join=%6.1fs first=%5.2fs all_p50=%5.2fs all_worst=%5.2fs "
      "false_pos=%d msgs/s=%.2f B/s=%.0f (+push-pull %.0f) member_B=%d node_s/wall_s=%.0f"
      % (label, r[0]["nodes"], len(r), med("join_converge_ms") / 1000,
         med("detect_first_ms") / 1000, med("detect_all_p50_ms") / 1000,
         max((x["detect_all_max_ms"] or 0) for x in r) / 1000,
         sum(x["false_positives"] for x in r), med("msgs_per_node_s"),
         st.median(x["bytes_per_node_s"] - x["push_pull_bytes_per_node_s"] for x in r),
         med("push_pull_bytes_per_node_s"), med("member_bytes"),
         med("node_seconds_per_wall_second")))
if nulls:
    print("%14s %d run(s) did not converge or left a kill undetected" % ("", nulls))
' "$1"
}

IFS=, read -ra ns <<<"$sizes"
for n in "${ns[@]}"; do
    run "$n" "$seeds" 0 | summarise "no loss"
done
for n in "${ns[@]:0:2}"; do
    for loss in 0.05 0.10; do
        run "$n" "$seeds" "$loss" | summarise "loss $loss"
    done
done
