#!/usr/bin/env bash
# What zpfd does around the gossip: health checks gating the heartbeat, a
# broken store, the metrics textfile, journald's log format, secrets kept
# out of logs, SIGHUP of the health checks, join addresses that do not
# resolve.  Real processes on 127.0.0.1, sealed, driven only through config
# files, signals and the control socket.
#
#   B=build tests/integration/test_agent.sh        (B=build/san for ASan)
#
# The checks (the first two share one 3-agent cluster, n1..n3; n3 has a
# health check that passes while FLAGFILE exists):
#   health_gates_heartbeat  FLAGFILE gone: n3 reports health failing, its
#                           counter stops, n1 and n2 see it stalled (never
#                           dead) within the bound below, n3 logs a warning;
#                           FLAGFILE back: alive again, passing
#   sighup_health           FLAGFILE gone again, n3 stalled; SIGHUP with no
#                           health checks: passing, alive on n1 and n2, and
#                           stays alive past counter_timeout
#   store_unavailable       data_dir under a regular file: the agent starts,
#                           says "store unavailable", joins, is seen alive
#   metrics_textfile        the textfile appears with zpf_members and # TYPE
#                           lines and is rewritten every interval; zpfctl
#                           metrics parses and has no duplicate series
#   journal_prefix          JOURNAL_STREAM naming the agent's stderr: lines
#                           start with <N>, no ts=; naming another file or
#                           unset: lines start with ts=
#   no_secrets_logged       debug logs and zpfctl output of a key install
#                           and use hold neither key, whole or in part
#   bad_join_hostname       an unresolvable seed next to a good one: joins
#                           through the good one and warns; only an
#                           unresolvable seed: keeps running and answering
#
# About 30 s on an idle 2-core machine; timeouts are scaled by ZL_SCALE
# (see lib.sh) under ASan.
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/integration/lib.sh
. tests/integration/lib.sh
zl_need_binaries

# Timings: fast enough for a short suite, slow enough that an ASan agent
# on a loaded 2-core machine keeps up (the same as test_loopback.sh), and
# a counter_timeout short enough to see a stall in a few seconds but many
# heartbeats long, so a heartbeat late by a loaded machine is no stall.
P_MS=200              # probe_interval
HB_MS=100             # heartbeat_interval
CT_MS=3000            # counter_timeout
ZL_GOSSIP="probe_interval: ${P_MS}ms
probe_timeout: 100ms
gossip_interval: 50ms
suspicion_mult: 4
suspicion_max_mult: 6
heartbeat_interval: ${HB_MS}ms
counter_timeout: ${CT_MS}ms
push_pull_interval: 5s
leave_timeout: 1s
join_retry_max: 1s"

# The health check: runs every CHECK_MS, gives up after 400 ms.
CHECK_MS=500
# Stall bound: the check sees FLAGFILE gone within one interval (plus its
# run), the counter then stands still counter_timeout before an observer
# calls n3 stalled, and that observer is polled every ~0.3 s (one zpfctl
# per agent): 1.5 s of margin, times ZL_SCALE.
STALL_MARGIN_MS=1500
STALL_BOUND_MS=$((CHECK_MS + CT_MS + STALL_MARGIN_MS * ZL_SCALE))
CONVERGE_S=20         # a few agents meet in a few probe rounds; generous
NAMES="n1 n2 n3"
FLAG=$ZL_DIR/flagfile

declare -A ADDR
K1=""

# --- helpers --------------------------------------------------------------------

# One field of NAME's `status --json`, printed as JSON ("passing", null, 12).
status_field() { # name field
    zl_ctl "$1" --json status 2>/dev/null |
        zl_py 'print(json.dumps(d[sys.argv[1]]))' "$2" 2>/dev/null
}

# n3's status says health WANT ("passing"/"failing") and, when failing,
# names the check "flag".
n3_health_is() { # want
    local out
    out=$(zl_ctl n3 --json status 2>&1) ||
        { ZL_SEEN="status on n3 failed: $out"; return 1; }
    ZL_SEEN=$(zl_py '
want = sys.argv[1]
h, f = d.get("health"), d.get("failing_check")
if h != want:
    print("health %r, failing_check %r" % (h, f))
elif want == "failing" and f != "flag":
    print("health failing but failing_check is %r, not \"flag\"" % (f,))
elif want == "passing" and f is not None:
    print("health passing but failing_check is %r" % (f,))' "$1" <<<"$out" 2>&1)
    [ -z "$ZL_SEEN" ]
}

# The YAML of n3's health section: one command check on FLAGFILE.
health_yaml() {
    cat <<EOF
health:
  checks:
    - name: flag
      command: ["/bin/sh", "-c", "test -e $FLAG"]
      interval: ${CHECK_MS}ms
      timeout: 400ms
EOF
}

# Lines of FILE after its last "==== start" line (lib.sh marks each start).
last_run_lines() { # file
    awk '/^==== start / { n = 0; delete l; next } { l[++n] = $0 }
         END { for (i = 1; i <= n; i++) print l[i] }' "$1"
}

# n1 and n2 list MEMBER in state STATE and neither has ever seen it dead,
# suspect or left while waiting (recorded in BAD_SEEN).
BAD_SEEN=""
observers_see() { # member state
    local v bad
    v=$(zl_view n1 n2)
    bad=$(awk -v m="$1" '$2 == m && ($3 == "dead" || $3 == "left") {
            printf "%s saw %s %s; ", $1, m, $3 }' <<<"$v")
    BAD_SEEN="$BAD_SEEN$bad"
    ZL_SEEN=$(awk -v m="$1" -v want="$2" '
        $3 == "unreachable" { st[$1] = "unreachable" }
        $2 == m { st[$1] = $3 }
        END { split("n1 n2", o, " ")
              for (i = 1; i <= 2; i++) {
                  s = (o[i] in st) ? st[o[i]] : "absent"
                  if (s != want) printf "%s sees %s %s; ", o[i], m, s } }' <<<"$v")
    [ -z "$ZL_SEEN" ]
}

# NEW and n1, n2 see each other alive (whatever else they see: a check
# that failed earlier may leave n3 in any state).
meets() { # new
    ZL_SEEN=$(zl_view n1 n2 "$1" | awk -v x="$1" '
        $3 == "unreachable" { st[$1 " " $1] = "unreachable" }
        { st[$1 " " $2] = $3 }
        END { split("n1 n2", o, " ")
              for (i = 1; i <= 2; i++) {
                  a = st[o[i] " " x]; b = st[x " " o[i]]
                  if (a != "alive")
                      printf "%s sees %s %s; ", o[i], x, a == "" ? "absent" : a
                  if (b != "alive")
                      printf "%s sees %s %s; ", x, o[i], b == "" ? "absent" : b
              } }')
    [ -z "$ZL_SEEN" ]
}

# A new agent NAME joining n1 with the suite's key; zl_conf options follow.
joiner() { # name conf-options...
    local n=$1
    shift
    zl_ports 1 || return 1
    ADDR[$n]=127.0.0.1:$ZL_PORT
    zl_conf "$n" "${ADDR[$n]}" --join "${ADDR[n1]}" --key "$K1" "$@"
}

# --- the checks ---------------------------------------------------------------

t_health_gates_heartbeat() {
    local n c1 c2 ms t0 health
    zl_ports 3 || return 1
    ADDR[n1]=127.0.0.1:$ZL_PORT
    ADDR[n2]=127.0.0.1:$((ZL_PORT + 1))
    ADDR[n3]=127.0.0.1:$((ZL_PORT + 2))
    K1=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }
    health=$(health_yaml)
    zl_conf n1 "${ADDR[n1]}" --key "$K1" || return 1
    zl_conf n2 "${ADDR[n2]}" --join "${ADDR[n1]}" --key "$K1" || return 1
    zl_conf n3 "${ADDR[n3]}" --join "${ADDR[n1]}" --key "$K1" \
        --yaml "$health" || return 1
    touch "$FLAG"
    for n in $NAMES; do
        zl_start "$n" || return 1
    done
    zl_wait "$CONVERGE_S" "all 3 agents to see 3 alive" \
        zl_converged 3 $NAMES || return 1
    # Before any run a check counts as passing: give it two runs.
    sleep "$(zl_secs $((2 * CHECK_MS * ZL_SCALE)))"
    zl_wait 5 "n3's health passing with FLAGFILE present" \
        n3_health_is passing || return 1
    grep -q 'health check failing' "$(zl_agent_log n3)" &&
        { zl_fail "n3's check failed with FLAGFILE present: $(grep -m1 'health check failing' "$(zl_agent_log n3)")"; return 1; }

    # Health fails: the heartbeat stops and the others see a stall.
    BAD_SEEN=""
    t0=$(zl_now_ms)
    rm -f "$FLAG"
    zl_wait 5 "n3's status to say health failing (check flag)" \
        n3_health_is failing || return 1
    zl_note "n3 failing $(zl_secs $(($(zl_now_ms) - t0)))s after FLAGFILE went"
    zl_wait $(((2 * STALL_BOUND_MS + 999) / 1000)) \
        "n1 and n2 to see n3 stalled" observers_see n3 stalled || return 1
    ms=$(($(zl_now_ms) - t0))
    zl_note "FLAGFILE removed to stalled on n1 and n2: $(zl_secs "$ms")s" \
        "(bound $(zl_secs $STALL_BOUND_MS)s: check interval +" \
        "counter_timeout + margin)"
    [ -z "$BAD_SEEN" ] ||
        { zl_fail "an unhealthy but reachable n3 was reported: $BAD_SEEN"; return 1; }
    [ "$ms" -le "$STALL_BOUND_MS" ] ||
        { zl_fail "the stall took $(zl_secs "$ms")s to be seen, over $(zl_secs $STALL_BOUND_MS)s"; return 1; }
    # Ten heartbeat intervals: a counter still running would move.
    c1=$(status_field n3 counter)
    sleep "$(zl_secs $((10 * HB_MS)))"
    c2=$(status_field n3 counter)
    [[ $c1 =~ ^[0-9]+$ ]] && [ "$c1" = "$c2" ] ||
        { zl_fail "n3's counter moved while unhealthy: $c1 then $c2"; return 1; }
    zl_note "n3's counter stands at $c1"
    grep -q 'level=warning.*health check failing.*check=flag' \
        "$(zl_agent_log n3)" ||
        { zl_fail "n3's log has no 'health check failing' warning for check flag"; return 1; }

    # Healthy again: alive everywhere, counter running.
    touch "$FLAG"
    t0=$(zl_now_ms)
    zl_wait 5 "n3's health passing again" n3_health_is passing || return 1
    zl_wait 10 "n1 and n2 to see n3 alive again" \
        observers_see n3 alive || return 1
    zl_note "FLAGFILE back to alive on n1 and n2: $(zl_secs $(($(zl_now_ms) - t0)))s"
    [ -z "$BAD_SEEN" ] ||
        { zl_fail "n3 was reported: $BAD_SEEN"; return 1; }
    c2=$(status_field n3 counter)
    [[ $c2 =~ ^[0-9]+$ ]] && [ "$c2" -gt "$c1" ] ||
        { zl_fail "n3's counter did not move on once healthy: $c1 then $c2"; return 1; }
}

t_sighup_health() {
    local conf t0 c1 c2
    zl_all_see alive n3 n1 n2 ||
        { zl_fail "n3 is not alive on n1 and n2 to begin with: $ZL_SEEN"; return 1; }
    BAD_SEEN=""
    rm -f "$FLAG"
    zl_wait 5 "n3's status to say health failing" n3_health_is failing ||
        return 1
    zl_wait $(((2 * STALL_BOUND_MS + 999) / 1000)) \
        "n1 and n2 to see n3 stalled" observers_see n3 stalled || return 1

    # The same config without the health section.
    conf=$(zl_conf_file n3)
    awk '/^health:/ { skip = 1; next }
         skip && /^[^ ]/ { skip = 0 }
         !skip' "$conf" >"$conf.new" && mv "$conf.new" "$conf" ||
        { zl_fail "cannot rewrite n3's config"; return 1; }
    ! grep -q 'health\|flagfile' "$conf" ||
        { zl_fail "the health section is still in $conf"; return 1; }
    t0=$(zl_now_ms)
    kill -HUP "$(zl_pid n3)" ||
        { zl_fail "cannot send SIGHUP to n3"; return 1; }
    zl_wait 5 "n3's health passing after SIGHUP with no checks" \
        n3_health_is passing || return 1
    # Passing must mean the heartbeat runs again, not only the status.
    c1=$(status_field n3 counter)
    sleep "$(zl_secs $((10 * HB_MS)))"
    c2=$(status_field n3 counter)
    [[ $c1 =~ ^[0-9]+$ ]] && [[ $c2 =~ ^[0-9]+$ ]] && [ "$c2" -gt "$c1" ] ||
        { zl_fail "after the SIGHUP n3's status says health passing, but" \
            "its counter stands still ($c1, then $c2 after" \
            "$(zl_secs $((10 * HB_MS)))s): the heartbeat is still stopped"; return 1; }
    zl_wait 10 "n1 and n2 to see n3 alive after the SIGHUP" \
        observers_see n3 alive || return 1
    zl_note "SIGHUP to alive on n1 and n2: $(zl_secs $(($(zl_now_ms) - t0)))s"
    # And it stays so: no check is left to stop the heartbeat.
    c1=$(status_field n3 counter)
    t0=$(zl_now_ms)
    while [ $(($(zl_now_ms) - t0)) -lt $((CT_MS + 1000)) ]; do
        observers_see n3 alive ||
            { zl_fail "after the SIGHUP, $(zl_secs $(($(zl_now_ms) - t0)))s later: $ZL_SEEN"; return 1; }
        sleep 0.5
    done
    c2=$(status_field n3 counter)
    [[ $c1 =~ ^[0-9]+$ ]] && [[ $c2 =~ ^[0-9]+$ ]] && [ "$c2" -gt "$c1" ] ||
        { zl_fail "n3's counter did not move after the SIGHUP: $c1 then $c2"; return 1; }
    [ -z "$BAD_SEEN" ] || { zl_fail "n3 was reported: $BAD_SEEN"; return 1; }
    zl_running n3 || { zl_fail "n3 exited"; return 1; }
}

t_store_unavailable() {
    local conf blocker=$ZL_DIR/s1/blocker joined
    joiner s1 || return 1
    # A regular file where a directory should be: nobody, not even root,
    # can create the store below it.
    echo "not a directory" >"$blocker"
    conf=$(zl_conf_file s1)
    sed -i "s|^  data_dir: .*|  data_dir: $blocker/data|" "$conf"
    grep -q "^  data_dir: $blocker/data\$" "$conf" ||
        { zl_fail "cannot point s1's data_dir under $blocker"; return 1; }
    zl_start s1 || return 1
    grep -q 'store unavailable' "$(zl_agent_log s1)" ||
        { zl_fail "s1's log does not say 'store unavailable'"; return 1; }
    zl_note "s1 logged: $(grep -m1 'store unavailable' "$(zl_agent_log s1)" | cut -c1-200)"
    zl_wait "$CONVERGE_S" "s1 and n1, n2 to see each other alive" \
        meets s1 || return 1
    joined=$(status_field s1 joined)
    [ "$joined" = true ] ||
        { zl_fail "s1's status says joined $joined"; return 1; }
    [ -f "$blocker" ] ||
        { zl_fail "$blocker is no longer a regular file"; return 1; }
    zl_stop s1 || return 1
    [ "$ZL_RC" -eq 0 ] ||
        { zl_fail "s1 exited with status $ZL_RC after SIGTERM"; return 1; }
}

# The checker of Prometheus text: prints what is wrong, nothing when fine.
# Sample lines are "name value" or "name{labels} value" with a number;
# no series (name and labels) appears twice, nor a metric's # TYPE.
cat >"$ZL_DIR/promcheck.py" <<'EOF'
import re, sys

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')

def labels(text):
    out, pos = [], 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m or m.end() == pos:
            return None
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    return tuple(sorted(out))

bad, series, types, samples = [], {}, {}, 0
for no, line in enumerate(open(sys.argv[1]).read().split("\n"), 1):
    if line == "":
        continue
    if line.startswith("#"):
        f = line.split()
        if len(f) >= 3 and f[1] == "TYPE":
            if f[2] in types:
                bad.append("line %d: second # TYPE of %s (first line %d)"
                           % (no, f[2], types[f[2]]))
            types[f[2]] = no
        continue
    m = SAMPLE.match(line)
    ls = labels(m.group(3)) if m and m.group(3) is not None else ()
    if not m or ls is None:
        bad.append("line %d does not parse: %r" % (no, line[:120]))
        continue
    try:
        float(m.group(4))
    except ValueError:
        bad.append("line %d: value %r is not a number" % (no, m.group(4)))
    key = (m.group(1), ls)
    if key in series:
        bad.append("line %d: series %s%s again (first line %d)"
                   % (no, m.group(1), m.group(2) or "", series[key]))
    else:
        series[key] = no
    samples += 1
if samples == 0:
    bad.append("no samples at all")
if len(sys.argv) > 2:
    for want in sys.argv[2:]:
        if not any(l == want or l.startswith(want + " ")
                   for l in open(sys.argv[1]).read().split("\n")):
            bad.append("no line %s" % want)
print("; ".join(bad[:8]) + (" ..." if len(bad) > 8 else ""))
EOF

# Identity of a file as "inode mtime_ns sha256", or "missing".
file_id() { # path
    "$ZL_PY" -c 'import hashlib, os, sys
try:
    st = os.stat(sys.argv[1])
    h = hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()
    print(st.st_ino, st.st_mtime_ns, h)
except OSError:
    print("missing")' "$1"
}

t_metrics_textfile() {
    local prom=$ZL_DIR/m1/zpf.prom t0 first out bad
    joiner m1 --yaml "metrics:
  textfile: $prom
  interval: 1s" || return 1
    t0=$(zl_now_ms)
    zl_start m1 || return 1
    textfile_ready() {
        [ -s "$prom" ] || { ZL_SEEN="no $prom yet"; return 1; }
        grep -q '^zpf_members{state="alive"} [0-9]' "$prom" &&
            grep -q '^# TYPE ' "$prom" ||
            { ZL_SEEN="$prom lacks zpf_members{state=\"alive\"} or # TYPE"; return 1; }
    }
    zl_wait 5 "m1 to write its textfile" textfile_ready || return 1
    zl_note "textfile written $(zl_secs $(($(zl_now_ms) - t0)))s after m1's start"
    bad=$("$ZL_PY" "$ZL_DIR/promcheck.py" "$prom" 2>&1)
    [ -z "$bad" ] || { zl_fail "the textfile: $bad"; return 1; }
    first=$(file_id "$prom")
    textfile_rewritten() {
        local now
        now=$(file_id "$prom")
        ZL_SEEN="still $now"
        [ "$now" != missing ] && [ "$now" != "$first" ]
    }
    zl_wait 4 "m1 to rewrite its textfile (interval 1s)" \
        textfile_rewritten || return 1
    zl_note "rewritten $(zl_secs "$ZL_WAITED_MS")s after the first look"
    # The textfile collector may read it at any moment: never half written.
    bad=$("$ZL_PY" "$ZL_DIR/promcheck.py" "$prom" 2>&1)
    [ -z "$bad" ] || { zl_fail "the rewritten textfile: $bad"; return 1; }

    zl_wait "$CONVERGE_S" "m1 and n1, n2 to see each other alive" \
        meets m1 || return 1
    out=$ZL_DIR/metrics.m1.txt
    zl_ctl m1 metrics >"$out" 2>&1 ||
        { zl_fail "zpfctl metrics on m1 failed: $(head -c 200 "$out")"; return 1; }
    bad=$("$ZL_PY" "$ZL_DIR/promcheck.py" "$out" 'zpf_members{state="alive"}' 2>&1)
    [ -z "$bad" ] || { zl_fail "zpfctl metrics on m1: $bad"; return 1; }
    zl_note "zpfctl metrics: $(grep -vc '^#' "$out") samples, none twice; " \
        "$(grep '^zpf_members{state="alive"}' "$out")"
    zl_stop m1 || return 1
}

t_journal_prefix() {
    local log conf stream lines bad
    zl_ports 1 || return 1
    zl_conf j1 "127.0.0.1:$ZL_PORT" --key "$K1" || return 1
    log=$(zl_agent_log j1)
    : >"$log"
    stream=$("$ZL_PY" -c 'import os, sys
st = os.stat(sys.argv[1])
print("%d:%d" % (st.st_dev, st.st_ino))' "$log") ||
        { zl_fail "cannot stat $log"; return 1; }

    # stderr is the file JOURNAL_STREAM names: journald's priority prefix.
    zl_start j1 env JOURNAL_STREAM="$stream" || return 1
    zl_stop j1 || return 1
    lines=$(last_run_lines "$log")
    [ -n "$lines" ] || { zl_fail "j1 logged nothing"; return 1; }
    bad=$(grep -v '^<[0-7]>' <<<"$lines" | head -n 3)
    [ -z "$bad" ] ||
        { zl_fail "with JOURNAL_STREAM=$stream, lines without a <N> prefix: $bad"; return 1; }
    bad=$(grep 'ts=' <<<"$lines" | head -n 3)
    [ -z "$bad" ] ||
        { zl_fail "with JOURNAL_STREAM, lines still carry ts=: $bad"; return 1; }
    grep -q '^<5>.*started' <<<"$lines" ||
        { zl_fail "no '<5>' (notice) line saying started: $(head -n 2 <<<"$lines")"; return 1; }
    grep -q '^<[56]>' <<<"$lines" ||
        { zl_fail "no <5> or <6> line at all"; return 1; }
    zl_note "journal: $(head -n 1 <<<"$lines" | cut -c1-100)"

    # JOURNAL_STREAM naming another file (stderr was redirected): logfmt.
    zl_start j1 env JOURNAL_STREAM="$stream"1 || return 1
    zl_stop j1 || return 1
    lines=$(last_run_lines "$log")
    bad=$(grep -v '^ts=' <<<"$lines" | head -n 3)
    [ -n "$lines" ] && [ -z "$bad" ] ||
        { zl_fail "JOURNAL_STREAM of another file: lines not starting with ts=: ${bad:-none logged}"; return 1; }

    # No JOURNAL_STREAM at all: logfmt.
    zl_start j1 env -u JOURNAL_STREAM || return 1
    zl_stop j1 || return 1
    lines=$(last_run_lines "$log")
    bad=$(grep -v '^ts=' <<<"$lines" | head -n 3)
    [ -n "$lines" ] && [ -z "$bad" ] ||
        { zl_fail "without JOURNAL_STREAM, lines not starting with ts=: ${bad:-none logged}"; return 1; }
    zl_note "logfmt: $(head -n 1 <<<"$lines" | cut -c1-100)"
}

# Every k1/k2 keys list agrees: version V, primary P, all alive current.
k_keys_agree() { # version primary
    local n out
    ZL_SEEN=""
    for n in k1 k2; do
        out=$(zl_ctl "$n" --json keys list 2>&1) ||
            { ZL_SEEN="keys list on $n failed: $out"; return 1; }
        echo "$out" >>"$ZL_DIR/ctl-out/keys-list.$n"
        ZL_SEEN="$ZL_SEEN$(zl_py '
m = d["members"]
if d["version"] != int(sys.argv[2]) or d["primary"] != sys.argv[3] or \
        m["alive"] != 2 or m["current"] != 2:
    print("%s: version %s primary %s current %s/%s; " % (sys.argv[1],
          d["version"], d["primary"], m["current"], m["alive"]))' \
            "$n" "$1" "$2" <<<"$out" 2>&1)"
    done
    [ -z "$ZL_SEEN" ]
}

t_no_secrets_logged() {
    local ka kb out v ida idb n f s hits="" dir=$ZL_DIR/ctl-out
    mkdir -p "$dir"
    zl_ports 2 || return 1
    ka=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }
    kb=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }
    zl_conf k1 "127.0.0.1:$ZL_PORT" --key "$ka" --log-level debug || return 1
    zl_conf k2 "127.0.0.1:$((ZL_PORT + 1))" --join "127.0.0.1:$ZL_PORT" \
        --key "$ka" --log-level debug || return 1
    zl_start k1 || return 1
    zl_start k2 || return 1
    zl_wait "$CONVERGE_S" "k1 and k2 to see 2 alive" \
        zl_converged 2 k1 k2 || return 1

    out=$(zl_ctl k1 --json keys list 2>&1 | tee "$dir/list0")
    ida=$(zl_py 'print(d["primary"])' <<<"$out" 2>/dev/null) ||
        { zl_fail "keys list on k1: $out"; return 1; }
    # The key on the command line, the way an operator would type it.
    zl_ctl k1 --json keys install "$kb" >"$dir/install" 2>&1 ||
        { zl_fail "keys install on k1 failed: $(head -c 300 "$dir/install")"; return 1; }
    zl_ctl k1 keys install "$kb" >"$dir/install-again" 2>&1
    idb=$(zl_py 'print(d["id"])' <"$dir/install" 2>/dev/null)
    v=$(zl_py 'print(d["version"])' <"$dir/install" 2>/dev/null)
    [ -n "$idb" ] && [ -n "$v" ] ||
        { zl_fail "keys install reply: $(head -c 300 "$dir/install")"; return 1; }
    zl_wait 10 "both at keyring version $v before keys use" \
        k_keys_agree "$v" "$ida" || return 1
    zl_ctl k2 --json keys use "$idb" >"$dir/use" 2>&1 ||
        { zl_fail "keys use $idb on k2 failed: $(head -c 300 "$dir/use")"; return 1; }
    v=$(zl_py 'print(d["version"])' <"$dir/use" 2>/dev/null)
    zl_wait 10 "both to use $idb at version $v" k_keys_agree "$v" "$idb" ||
        return 1
    for n in k1 k2; do
        zl_ctl "$n" keys list >"$dir/list.$n" 2>&1
        zl_ctl "$n" keys >"$dir/keys.$n" 2>&1
        zl_ctl "$n" status >"$dir/status.$n" 2>&1
        zl_ctl "$n" --json status >"$dir/status-json.$n" 2>&1
        zl_ctl "$n" --json members >"$dir/members.$n" 2>&1
        zl_ctl "$n" metrics >"$dir/metrics.$n" 2>&1
    done
    # Give the debug log a few gossip rounds of the new keyring, then a
    # restart, which reads the keyring file and store.
    zl_stop k2 || return 1
    zl_start k2 || return 1
    zl_wait "$CONVERGE_S" "restarted k2 back with k1" \
        zl_converged 2 k1 k2 || return 1
    zl_stop k1 || return 1
    zl_stop k2 || return 1

    grep -q 'level=debug' "$(zl_agent_log k1)" ||
        { zl_fail "k1 logged no debug lines: is log.level debug honoured?"; return 1; }
    local files=0
    for f in "$ZL_DIR"/*/zpfd.log "$dir"/*; do
        [ -f "$f" ] && files=$((files + 1))
    done
    for s in "$ka" "$kb" "${ka:0:16}" "${kb:0:16}" "$K1" "${K1:0:16}"; do
        [ -n "$s" ] || continue
        for f in "$ZL_DIR"/*/zpfd.log "$dir"/*; do
            [ -f "$f" ] || continue
            if grep -qF -- "$s" "$f"; then
                hits="$hits ${f#"$ZL_DIR"/}:$(grep -nF -- "$s" "$f" | head -n 1 | cut -d: -f1)"
            fi
        done
    done
    zl_note "searched $files files" \
        "($(cat "$ZL_DIR"/*/zpfd.log | wc -l) log lines) for 3 keys and their" \
        "first 16 characters"
    [ -z "$hits" ] ||
        { zl_fail "key material found in (file:line):$hits"; return 1; }
}

t_bad_join_hostname() {
    local t0 st out
    joiner b1 || return 1
    sed -i "s|^  join: .*|  join: [\"nosuchhost.invalid:7946\", \"${ADDR[n1]}\"]|" \
        "$(zl_conf_file b1)"
    grep -q 'nosuchhost.invalid' "$(zl_conf_file b1)" ||
        { zl_fail "cannot put nosuchhost.invalid in b1's join list"; return 1; }
    zl_start b1 || return 1
    zl_wait "$CONVERGE_S" "b1 to join through its good seed" \
        meets b1 || return 1
    zl_note "b1 joined $(zl_secs "$ZL_WAITED_MS")s after it answered"
    b1_warned() {
        grep -q 'level=warning.*resolve' "$(zl_agent_log b1)"
    }
    zl_wait 5 "b1 to log a warning about resolving nosuchhost.invalid" \
        b1_warned || return 1
    zl_note "b1: $(grep -m1 'level=warning.*resolve' "$(zl_agent_log b1)" | cut -c1-200)"
    zl_stop b1 || return 1

    # Nothing it can resolve: it keeps trying, and keeps answering.
    zl_ports 1 || return 1
    zl_conf b2 "127.0.0.1:$ZL_PORT" --join nosuchhost.invalid --key "$K1" ||
        return 1
    t0=$(zl_now_ms)
    zl_start b2 || return 1
    while [ $(($(zl_now_ms) - t0)) -lt 5000 ]; do
        zl_running b2 || { zl_fail "b2 exited after $(zl_secs $(($(zl_now_ms) - t0)))s: $(tail -n 2 "$(zl_agent_log b2)")"; return 1; }
        sleep 0.5
    done
    out=$(zl_ctl b2 --json status 2>&1) ||
        { zl_fail "b2 does not answer status after 5s: $out"; return 1; }
    st=$(zl_py 'print(d["joined"], d["members"]["alive"])' <<<"$out")
    [ "$st" = "False 1" ] ||
        { zl_fail "b2's status says joined, alive: $st"; return 1; }
    grep -q 'level=warning.*resolve' "$(zl_agent_log b2)" ||
        { zl_fail "b2 logged no resolve warning in 5s"; return 1; }
    zl_note "b2 still running after 5s, not joined; $(grep -c 'level=warning.*resolve' "$(zl_agent_log b2)") resolve warning(s)"
    zl_stop b2 || return 1
    [ "$ZL_RC" -eq 0 ] || { zl_fail "b2 exited with status $ZL_RC"; return 1; }
}

# A key source that did not change must never roll the cluster's keyring
# back: inline keys are never rewritten, and a keyring file may be stale
# (read-only, or a crash between the store and the file).
t_keyring_no_rollback() {
    local ka kb out v ida idb dir=$ZL_DIR/ctl-out
    mkdir -p "$dir"
    zl_ports 2 || return 1
    ka=$(zl_keygen) && kb=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }
    zl_conf r1 "127.0.0.1:$ZL_PORT" --key "$ka" || return 1
    zl_conf r2 "127.0.0.1:$((ZL_PORT + 1))" --join "127.0.0.1:$ZL_PORT" \
        --key "$ka" || return 1
    # r1 takes its key inline instead of from the file.
    sed -i "s|^  keyring: .*|  keys: [\"$ka\"]|" "$(zl_conf_file r1)"
    zl_start r1 && zl_start r2 || return 1
    zl_wait "$CONVERGE_S" "r1 and r2 to see 2 alive" zl_converged 2 r1 r2 ||
        return 1
    ida=$(zl_ctl r1 --json keys list | zl_py 'print(d["primary"])') ||
        { zl_fail "keys list on r1"; return 1; }
    # What r2's store says its keyring file held before the rotation.
    local db=$ZL_DIR/r2/data/zpf.db src0
    src0=$(python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("SELECT value FROM kv WHERE key = ?", ("keyring_source",)).fetchone()[0])' "$db") ||
        { zl_fail "cannot read keyring_source from $db"; return 1; }
    out=$(zl_ctl r2 --json keys install "$kb" 2>&1) ||
        { zl_fail "keys install: $out"; return 1; }
    idb=$(zl_py 'print(d["id"])' <<<"$out")
    v=$(zl_py 'print(d["version"])' <<<"$out")
    zl_wait 10 "both at version $v" r_keys_agree "$v" "$ida" || return 1
    out=$(zl_ctl r2 --json keys use "$idb" 2>&1) ||
        { zl_fail "keys use: $out"; return 1; }
    v=$(zl_py 'print(d["version"])' <<<"$out")
    zl_wait 10 "both to use $idb at version $v" r_keys_agree "$v" "$idb" ||
        return 1
    # A reload of r1, whose inline keys still say only ka.
    kill -HUP "$(zl_pid r1)"
    sleep "$(zl_scale 2)"
    r_keys_agree "$v" "$idb" ||
        { zl_fail "after SIGHUP of r1 (inline keys unchanged): $ZL_SEEN"; return 1; }
    # r2 restarts as if the rewrite of its keyring file had failed: the
    # file still holds only ka, and the store still says so.  The store's
    # newer keyring must win.
    zl_stop r2 || return 1
    (umask 077 && echo "$ka" >"$ZL_DIR/r2/keyring")
    python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("UPDATE kv SET value = ? WHERE key = ?", (int(sys.argv[2]), "keyring_source"))
c.commit()' "$db" "$src0" ||
        { zl_fail "cannot reset keyring_source in $db"; return 1; }
    zl_start r2 || return 1
    zl_wait "$CONVERGE_S" "restarted r2 back with r1" zl_converged 2 r1 r2 ||
        return 1
    sleep "$(zl_scale 2)"
    r_keys_agree "$v" "$idb" ||
        { zl_fail "after r2 restarted with a stale keyring file: $ZL_SEEN"; return 1; }
    # An edit is a change: r2's file now names kb only, SIGHUP spreads it.
    (umask 077 && echo "$kb" >"$ZL_DIR/r2/keyring")
    kill -HUP "$(zl_pid r2)"
    zl_wait 10 "the edited file to spread" r_keys_agree_n 1 || return 1
    zl_stop r1 && zl_stop r2
}

# Both r1 and r2 at version V with primary P, both current.
r_keys_agree() { # version primary
    local n out
    ZL_SEEN=""
    for n in r1 r2; do
        out=$(zl_ctl "$n" --json keys list 2>&1) ||
            { ZL_SEEN="keys list on $n failed: $out"; return 1; }
        ZL_SEEN="$ZL_SEEN$(zl_py '
m = d["members"]
if d["version"] != int(sys.argv[2]) or d["primary"] != sys.argv[3] or \
        m["alive"] != 2 or m["current"] != 2:
    print("%s: version %s primary %s current %s/%s; " % (sys.argv[1],
          d["version"], d["primary"], m["current"], m["alive"]))' \
            "$n" "$1" "$2" <<<"$out" 2>&1)"
    done
    [ -z "$ZL_SEEN" ]
}

# Both r1 and r2 hold exactly N keys and agree.
r_keys_agree_n() { # n
    local n out
    ZL_SEEN=""
    for n in r1 r2; do
        out=$(zl_ctl "$n" --json keys list 2>&1) ||
            { ZL_SEEN="keys list on $n failed"; return 1; }
        ZL_SEEN="$ZL_SEEN$(zl_py '
if len(d["keys"]) != int(sys.argv[2]) or d["members"]["current"] != 2:
    print("%s: %d keys, current %s; " % (sys.argv[1], len(d["keys"]),
          d["members"]["current"]))' "$n" "$1" <<<"$out" 2>&1)"
    done
    [ -z "$ZL_SEEN" ]
}

# A member that was away while the cluster installed a key and made it
# primary holds only the old key: it cannot read anyone, but they can read
# it.  It asks for the keyring in the old key and catches up by itself.
t_keyring_catch_up() {
    local ka kb out idb
    zl_ports 2 || return 1
    ka=$(zl_keygen) && kb=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }
    zl_conf s1 "127.0.0.1:$ZL_PORT" --key "$ka" || return 1
    zl_conf s2 "127.0.0.1:$((ZL_PORT + 1))" --join "127.0.0.1:$ZL_PORT" \
        --key "$ka" || return 1
    zl_start s1 && zl_start s2 || return 1
    zl_wait "$CONVERGE_S" "s1 and s2 to see 2 alive" zl_converged 2 s1 s2 ||
        return 1
    zl_stop s2 || return 1
    zl_wait 10 "s1 to see s2 left" \
        eval '[ "$(zl_state s1 s2)" = left ]' || return 1
    out=$(zl_ctl s1 --json keys install "$kb" 2>&1) ||
        { zl_fail "keys install: $out"; return 1; }
    idb=$(zl_py 'print(d["id"])' <<<"$out")
    out=$(zl_ctl s1 --json keys use "$idb" 2>&1) ||
        { zl_fail "keys use: $out"; return 1; }
    # s2 comes back knowing only ka.
    zl_start s2 || return 1
    zl_wait "$(zl_scale 15)" "s2 to catch up with primary $idb and see s1" \
        s_caught_up "$idb" || return 1
    zl_stop s1 && zl_stop s2
}

s_caught_up() { # primary
    local out
    out=$(zl_ctl s2 --json keys list 2>&1) || { ZL_SEEN="$out"; return 1; }
    ZL_SEEN="s2: $(zl_py 'print(d["primary"], d["version"])' <<<"$out")"
    [ "$(zl_py 'print(d["primary"])' <<<"$out")" = "$1" ] &&
        zl_converged 2 s1 s2
}

echo "$ZL_SUITE: B=$B, time scale $ZL_SCALE, stall bound $(zl_secs $STALL_BOUND_MS)s, dir $ZL_DIR"
zl_run health_gates_heartbeat t_health_gates_heartbeat
if zl_converged 3 $NAMES; then
    zl_run sighup_health t_sighup_health
    # Whatever sighup_health left behind, the next checks want n1..n3
    # alive: a restart reads n3's config, which no longer has the check.
    if ! zl_converged 3 $NAMES; then
        echo "$ZL_SUITE: restarting n3 ($ZL_SEEN)"
        zl_stop n3 >/dev/null
        zl_start n3 >/dev/null &&
            zl_wait "$CONVERGE_S" "n3 back" zl_converged 3 $NAMES >/dev/null ||
            echo "$ZL_SUITE: n3 is not back: $ZL_SEEN"
    fi
    zl_run store_unavailable t_store_unavailable
    zl_run metrics_textfile t_metrics_textfile
    zl_run bad_join_hostname t_bad_join_hostname
else
    zl_not_run sighup_health store_unavailable metrics_textfile \
        bad_join_hostname "n1, n2, n3 are not 3 alive: $ZL_SEEN"
fi
if [ -n "$K1" ]; then
    zl_run journal_prefix t_journal_prefix
else
    zl_not_run journal_prefix "no key was made"
fi
zl_run no_secrets_logged t_no_secrets_logged
zl_run keyring_no_rollback t_keyring_no_rollback
zl_run keyring_catch_up t_keyring_catch_up
for n in $NAMES; do
    zl_running "$n" && zl_kill "$n"
done
zl_summary
