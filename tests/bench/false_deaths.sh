#!/usr/bin/env bash
# False deaths and false stalls under loss, from the simulator.
#
#   tests/bench/false_deaths.sh [SIZES] [SEEDS] [MINUTES]
#     defaults: 10,30,100  3  30
#
# Each run joins, then soaks for MINUTES of simulated time at 5 % and at
# 10 % datagram loss with no crash at all, so every FAIL and every STALL it
# reports is false.  Prints the totals per size and loss.  About two minutes
# of wall time with the defaults.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=${1:-10,30,100}
seeds=${2:-3}
minutes=${3:-30}
sim=build/zpf-sim
[ -x "$sim" ] || make "$sim" >/dev/null

IFS=, read -ra ns <<<"$sizes"
for n in "${ns[@]}"; do
    for loss in 0.05 0.10; do
        for s in $(seq 1 "$seeds"); do
            "$sim" --nodes "$n" --seed "$s" --loss "$loss" --kill 0 \
                --soak $((minutes * 60)) --duration $((minutes * 60 + 120)) \
                --json --quiet || true
        done | python3 -c '
import sys, json
r = [json.loads(l) for l in sys.stdin if l.startswith("{")]
print("n=%-5d loss=%-4s runs=%d x %d min: false deaths %d, false stalls %d"
      % (int(sys.argv[1]), sys.argv[2], len(r), int(sys.argv[3]),
         sum(x["false_positives"] for x in r), sum(x["false_stalls"] for x in r)))
' "$n" "$loss" "$minutes"
    done
done
