#!/usr/bin/env bash
# zpfd and zpfctl as an operator runs them: five agents on 127.0.0.1, sealed
# with one key from `zpfctl keygen`, driven only through signals, config
# files and the control socket.
#
#   B=build tests/integration/test_loopback.sh       (B=build/san for ASan)
#
# The checks build on each other (one cluster, in order):
#   converge             5 agents, each joining n1: all see 5 alive
#   kill_detect          kill -9 n5: every survivor reports it dead within
#                        the suspicion bound (below); prints the time
#   restart_incarnation  n5 restarts on its data_dir: alive everywhere with
#                        a higher incarnation than before the kill
#   sigterm_leave        SIGTERM n4: everyone reports it left, never dead;
#                        exit 0 within leave_timeout + margin; restarted
#   foreign_key          an agent with another key never gets in; the
#                        cluster's transport counts its packets as drops
#   foreign_cluster      an agent of another cluster id, same key, neither
#   key_rotation         install K2, use it, remove K1 while polling every
#                        member list every 0.5 s: nobody is ever lost; the
#                        keyring files end with K2 only; a restart keeps K2
#   remove_primary       removing the primary key is refused (busy)
#   keys_bad_input       unknown id, duplicate key, malformed key
#   seeds_gone           n1 (the only seed) leaves; n3 restarts with a config
#                        naming only n1 and rejoins through its store
# and two small clusters of their own:
#   tcp_transport        3 agents with transport: tcp converge; kill -9 one
#   ipv6                 3 agents on [::1] converge (skipped without ::1)
#
# About a minute and a half on an idle 2-core machine; about three under
# ASan, whose timeouts are scaled by ZL_SCALE (see lib.sh).
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/integration/lib.sh
. tests/integration/lib.sh
zl_need_binaries

# Timings: fast enough for a short suite, slow enough that an ASan agent
# on a loaded 2-core machine keeps up.
P_MS=200              # probe_interval
LEAVE_MS=1000         # leave_timeout: how long SIGTERM keeps gossiping
ZL_GOSSIP="probe_interval: ${P_MS}ms
probe_timeout: 100ms
gossip_interval: 50ms
suspicion_mult: 4
suspicion_max_mult: 6
heartbeat_interval: 100ms
push_pull_interval: 5s
leave_timeout: ${LEAVE_MS}ms
join_retry_max: 1s"

# Detection bound.  With probe_interval P, suspicion_mult 4 and
# suspicion_max_mult 6, at n = 5 (log10 n < 1) Lifeguard's suspicion
# timeout is at most 6 * 4 * max(1, log10 5) * P = 24 P with no
# confirmation; the victim is probed within 2 P of the kill (one round to
# reach it in the shuffled order, one timeout); then the dead fact needs a
# few gossip rounds (50 ms each) and our poll (one zpfctl per agent, every
# ~0.3 s) to be seen: 1.5 s of margin, times ZL_SCALE.  24 P + 2 P = 5.2 s.
GOSSIP_MARGIN_MS=1500
DETECT_BOUND_MS=$((24 * P_MS + 2 * P_MS + GOSSIP_MARGIN_MS * ZL_SCALE))
CONVERGE_S=20         # 5 agents meet in a few probe rounds; generous
LEAVE_MARGIN_MS=3000  # exit after the leave: persist, close (x ZL_SCALE)
OBSERVE_S=10          # how long a foreign agent must stay out
NAMES="n1 n2 n3 n4 n5"

declare -A ADDR
K1=""
ID1=""
ID2=""
K2=""

# The agents of NAMES still running; a note names any that is not (a
# crash earlier in the suite was reported where it happened).
live() {
    local n out=""
    for n in $NAMES; do
        if zl_running "$n"; then
            out="$out $n"
        else
            zl_note "$n is not running" >&2
        fi
    done
    echo "${out# }"
}

others() { # name...: the names in NAMES that are not given
    local n x keep out=""
    for n in $NAMES; do
        keep=1
        for x in "$@"; do [ "$n" = "$x" ] && keep=""; done
        [ -n "$keep" ] && out="$out $n"
    done
    echo "${out# }"
}

# The highest incarnation of MEMBER in any of the views, or -1.
max_inc() { # member obs...
    local m=$1
    shift
    zl_view "$@" | awk -v m="$m" 'BEGIN { x = -1 }
        $2 == m && $4 + 0 > x { x = $4 + 0 } END { print x }'
}

# Every OBS sees MEMBER alive with an incarnation above MIN.
alive_above() { # member min obs...
    local m=$1 min=$2
    shift 2
    ZL_SEEN=$(zl_view "$@" | awk -v m="$m" -v min="$min" -v obs="$*" '
        BEGIN { n = split(obs, o, " ") }
        $2 == m { st[$1] = $3; inc[$1] = $4 + 0 }
        END { for (i = 1; i <= n; i++) {
                  x = o[i]
                  if (!(x in st)) out = out x " does not list " m "; "
                  else if (st[x] != "alive" || inc[x] <= min)
                      out = out sprintf("%s sees %s %s inc %d; ", x, m, st[x], inc[x])
              }
              printf "%s", out }')
    [ -z "$ZL_SEEN" ]
}

# --- the checks ---------------------------------------------------------------

t_converge() {
    local n t0 tlast
    zl_ports 5 || return 1
    local p=$ZL_PORT
    for n in $NAMES; do
        ADDR[$n]=127.0.0.1:$p
        p=$((p + 1))
    done
    K1=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }
    zl_conf n1 "${ADDR[n1]}" --key "$K1" || return 1
    for n in n2 n3 n4 n5; do
        zl_conf "$n" "${ADDR[$n]}" --join "${ADDR[n1]}" --key "$K1" || return 1
    done
    t0=$(zl_now_ms)
    for n in $NAMES; do
        zl_start "$n" || return 1
    done
    tlast=$(zl_now_ms)
    zl_wait "$CONVERGE_S" "all 5 agents to see 5 alive" \
        zl_converged 5 $NAMES || return 1
    zl_note "converged $(zl_secs $(($(zl_now_ms) - tlast)))s after the last" \
        "agent answered, $(zl_secs $(($(zl_now_ms) - t0)))s after the first start"
    local st
    st=$(zl_ctl n1 --json status) || { zl_fail "status on n1 failed"; return 1; }
    zl_py 'assert d["sealed"] is True, "sealed is %r" % d["sealed"]
assert d["transport"] == "udp", d["transport"]
assert d["cluster"] == "zpf-test", d["cluster"]
assert d["members"]["alive"] == 5, d["members"]' <<<"$st" ||
        { zl_fail "n1 status is not what was configured: $st"; return 1; }
}

t_kill_detect() {
    local t0 ms survivors
    survivors=$(others n5)
    zl_all_see alive n5 $survivors ||
        { zl_fail "n5 is not alive everywhere before the kill: $ZL_SEEN"; return 1; }
    N5_INC=$(max_inc n5 $NAMES)
    t0=$(zl_now_ms)
    zl_kill n5
    zl_wait "$(((2 * DETECT_BOUND_MS + 999) / 1000))" \
        "every survivor to report n5 dead" zl_all_see dead n5 $survivors ||
        return 1
    ms=$(($(zl_now_ms) - t0))
    zl_note "kill -9 to dead on all 4 survivors: $(zl_secs "$ms")s" \
        "(bound $(zl_secs $DETECT_BOUND_MS)s: 26 probe intervals + margin)"
    [ "$ms" -le "$DETECT_BOUND_MS" ] ||
        { zl_fail "detection took $(zl_secs "$ms")s, over the bound of $(zl_secs $DETECT_BOUND_MS)s"; return 1; }
    zl_converged 4 $survivors ||
        { zl_fail "a survivor lost someone else too: $ZL_SEEN"; return 1; }
}

t_restart_incarnation() {
    [ "${N5_INC:--1}" -ge 0 ] ||
        { zl_fail "n5's incarnation before the kill is unknown"; return 1; }
    zl_start n5 || return 1
    zl_wait 15 "n5 alive everywhere with incarnation above $N5_INC" \
        alive_above n5 "$N5_INC" $NAMES || return 1
    zl_note "n5 back after $(zl_secs "$ZL_WAITED_MS")s; incarnation $N5_INC ->" \
        "$(max_inc n5 n5)"
}

t_sigterm_leave() {
    local rest saw_dead="" limit
    rest=$(others n4)
    left_not_dead() {
        local v
        v=$(zl_view $rest)
        if awk '$2 == "n4" && $3 == "dead" { f = 1 } END { exit !f }' <<<"$v"; then
            saw_dead=$(awk '$2 == "n4" && $3 == "dead" { print $1 }' <<<"$v" | tr '\n' ' ')
        fi
        zl_all_see left n4 $rest
    }
    zl_stop n4 $(((LEAVE_MS + LEAVE_MARGIN_MS * ZL_SCALE) / 1000 + 5)) || return 1
    [ "$ZL_RC" -eq 0 ] || { zl_fail "zpfd n4 exited with status $ZL_RC after SIGTERM"; return 1; }
    limit=$((LEAVE_MS + LEAVE_MARGIN_MS * ZL_SCALE))
    zl_note "n4 exited 0, $(zl_secs "$ZL_STOP_MS")s after SIGTERM" \
        "(leave_timeout $(zl_secs $LEAVE_MS)s, limit $(zl_secs $limit)s)"
    [ "$ZL_STOP_MS" -le "$limit" ] ||
        { zl_fail "exit took $(zl_secs "$ZL_STOP_MS")s, over $(zl_secs $limit)s"; return 1; }
    zl_wait 10 "everyone to report n4 left" left_not_dead || return 1
    [ -z "$saw_dead" ] ||
        { zl_fail "n4 left gracefully but was reported dead by: $saw_dead"; return 1; }
    # Back to five for the checks that follow.
    zl_start n4 || return 1
    zl_wait "$CONVERGE_S" "n4 back: all 5 see 5 alive" zl_converged 5 $NAMES
}

# Sum of the auth and unknown_key drops over the cluster, "total a=1 b=2".
seal_drops() {
    local n a u total=0 per=""
    for n in $NAMES; do
        a=$(zl_metric "$n" 'zpf_net_dropped_total{cause="auth"}') || a=0
        u=$(zl_metric "$n" 'zpf_net_dropped_total{cause="unknown_key"}') || u=0
        total=$((total + a + u))
        per="$per $n=$((a + u))"
    done
    echo "$total$per"
}

# Start agent NAME with the given zl_conf options, joining n1, and check for
# OBSERVE_S seconds that nobody in the cluster lists it and it lists only
# itself.
stays_out() { # name conf-options...
    local f=$1 t0 v bad
    shift
    zl_ports 1 || return 1
    zl_conf "$f" "127.0.0.1:$ZL_PORT" --join "${ADDR[n1]}" "$@" || return 1
    zl_start "$f" || return 1
    t0=$(zl_now_ms)
    while [ $(($(zl_now_ms) - t0)) -lt $((OBSERVE_S * 1000)) ]; do
        v=$(zl_view $NAMES "$f")
        bad=$(awk -v f="$f" '
            $1 != f && $2 == f { printf "%s lists %s (%s); ", $1, f, $3 }
            $1 == f && $2 != f { printf "%s lists %s (%s); ", f, $2, $3 }
            $3 == "unreachable" { printf "%s does not answer; ", $1 }' <<<"$v")
        [ -z "$bad" ] || { zl_fail "after $(zl_secs $(($(zl_now_ms) - t0)))s: $bad"; return 1; }
        sleep 0.5
    done
    zl_running "$f" || { zl_fail "zpfd $f exited"; return 1; }
    zl_note "$f stayed out for ${OBSERVE_S}s"
}

t_foreign_key() {
    local kf before after
    kf=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }
    before=$(seal_drops)
    stays_out f1 --key "$kf" || return 1
    after=$(seal_drops)
    zl_note "auth + unknown_key drops: before ${before#* }; after ${after#* }"
    [ "${after%% *}" -gt "${before%% *}" ] ||
        { zl_fail "the sealed packets of f1 were not counted as auth or unknown_key drops"; return 1; }
    zl_stop f1 || return 1
}

t_foreign_cluster() {
    local before after
    before=$(zl_metric n1 'zpf_gossip_decode_errors_total{cause="ECLUSTER"}') || before=0
    stays_out g1 --key "$K1" --cluster zpf-other || return 1
    after=$(zl_metric n1 'zpf_gossip_decode_errors_total{cause="ECLUSTER"}') || after=0
    zl_note "n1 dropped $((after - before)) packets of cluster zpf-other" \
        "(ECLUSTER); seal drops now: $(seal_drops)"
    zl_stop g1 || return 1
}

# Every agent reports keyring version V, primary P, the key ids IDS (space
# separated, any order), and all 5 alive members current.
keys_agree() { # version primary ids
    local n
    for n in $NAMES; do
        zl_ctl "$n" --json keys list >"$ZL_DIR/keys.$n.json" 2>&1 ||
            { ZL_SEEN="keys list on $n failed: $(head -c 200 "$ZL_DIR/keys.$n.json")"; return 1; }
    done
    ZL_SEEN=$("$ZL_PY" - "$ZL_DIR" "$1" "$2" "$3" $NAMES <<'EOF'
import json, sys
d, v, p, ids, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], \
    set(sys.argv[4].split()), sys.argv[5:]
bad = []
for n in names:
    k = json.load(open("%s/keys.%s.json" % (d, n)))
    got = set(x["id"] for x in k["keys"])
    if k["version"] != v or k["primary"] != p or got != ids or \
            k["members"]["alive"] != 5 or k["members"]["current"] != 5:
        bad.append("%s: version %s primary %s keys %s current %s/%s" % (
            n, k["version"], k["primary"], ",".join(sorted(got)),
            k["members"]["current"], k["members"]["alive"]))
print("; ".join(bad))
EOF
)
    [ -z "$ZL_SEEN" ]
}

# The keys in an agent's keyring file (path from its config), one a line.
keyring_keys() { # name
    local path
    path=$(sed -n 's/^  keyring: //p' "$(zl_conf_file "$1")")
    grep -v '^[[:space:]]*\(#\|$\)' "$path" | tr -d ' \t'
}

keyring_files_hold_k2() {
    local n got
    ZL_SEEN=""
    for n in $NAMES; do
        got=$(keyring_keys "$n" 2>&1)
        [ "$got" = "$K2" ] || ZL_SEEN="$ZL_SEEN$n's keyring file holds $(wc -l <<<"$got") line(s), not K2 only; "
    done
    [ -z "$ZL_SEEN" ]
}

t_key_rotation() {
    local out v mon_ok=1
    zl_converged 5 $NAMES ||
        { zl_fail "not 5 alive before the rotation: $ZL_SEEN"; return 1; }
    out=$(zl_ctl n1 --json keys list) || { zl_fail "keys list failed"; return 1; }
    ID1=$(zl_py 'print(d["primary"])' <<<"$out") || { zl_fail "keys list: $out"; return 1; }
    v=$(zl_py 'print(d["version"])' <<<"$out")
    zl_wait 10 "every agent at keyring version $v" keys_agree "$v" "$ID1" "$ID1" ||
        return 1

    zl_monitor_start "$ZL_DIR/monitor.txt" "$(zl_scale 2)" $NAMES
    K2=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }
    out=$(zl_ctl n2 --json keys install - <<<"$K2" 2>&1) ||
        { zl_fail "keys install - on n2 failed: $out"; return 1; }
    ID2=$(zl_py 'print(d["id"])' <<<"$out")
    v=$(zl_py 'print(d["version"])' <<<"$out")
    zl_wait 15 "K2 ($ID2) installed everywhere at version $v" \
        keys_agree "$v" "$ID1" "$ID1 $ID2" || return 1
    zl_note "installed $ID2 at version $v; everywhere after $(zl_secs "$ZL_WAITED_MS")s"

    out=$(zl_ctl n3 --json keys use "$ID2" 2>&1) ||
        { zl_fail "keys use $ID2 on n3 failed: $out"; return 1; }
    v=$(zl_py 'print(d["version"])' <<<"$out")
    zl_wait 15 "$ID2 primary everywhere at version $v" \
        keys_agree "$v" "$ID2" "$ID1 $ID2" || return 1
    zl_note "primary $ID2 at version $v; everywhere after $(zl_secs "$ZL_WAITED_MS")s"

    out=$(zl_ctl n4 --json keys remove "$ID1" 2>&1) ||
        { zl_fail "keys remove $ID1 on n4 failed: $out"; return 1; }
    v=$(zl_py 'print(d["version"])' <<<"$out")
    zl_wait 15 "$ID1 removed everywhere at version $v" \
        keys_agree "$v" "$ID2" "$ID2" || return 1
    zl_note "removed $ID1 at version $v; everywhere after $(zl_secs "$ZL_WAITED_MS")s"

    # A member the rotation cut off would be declared dead within the
    # detection bound: keep watching that long before judging.
    sleep "$(zl_secs "$DETECT_BOUND_MS")"
    zl_monitor_stop || mon_ok=""
    zl_note "membership during the rotation: $ZL_MONITOR"
    [ -n "$mon_ok" ] || { zl_fail "members were lost during the rotation"; return 1; }

    zl_wait 10 "every keyring file to hold K2 only" keyring_files_hold_k2 ||
        return 1
    # A restart reads the keyring file: it must come back with K2.
    zl_stop n2 || return 1
    [ "$ZL_RC" -eq 0 ] || { zl_fail "n2 exited with status $ZL_RC"; return 1; }
    zl_start n2 || return 1
    zl_wait "$CONVERGE_S" "restarted n2 back among 5 alive" \
        zl_converged 5 $NAMES || return 1
    zl_wait 10 "restarted n2 to agree on K2" keys_agree "$v" "$ID2" "$ID2" ||
        return 1
}

# n5 has heard of every alive member's keyring version and agrees.
n5_keys_settled() {
    ZL_SEEN=$(zl_ctl n5 --json keys list 2>&1 |
        zl_py 'm = d["members"]
print("" if m["current"] == m["alive"] else "n5: %d of %d alive members current" % (m["current"], m["alive"]))' 2>&1)
    [ -z "$ZL_SEEN" ]
}

# n5's keyring as "version primary ids...", to show a refusal changed
# nothing.
keyring_state() {
    zl_ctl n5 --json keys list |
        zl_py 'print(d["version"], d["primary"], *sorted(k["id"] for k in d["keys"]))'
}

t_remove_primary() {
    local err rc before after primary
    zl_wait 10 "n5's keyring to settle" n5_keys_settled || return 1
    before=$(keyring_state) || { zl_fail "keys list on n5 failed"; return 1; }
    primary=$(cut -d' ' -f2 <<<"$before")
    err=$(zl_ctl n5 keys remove "$primary" 2>&1)
    rc=$?
    [ "$rc" -eq 1 ] ||
        { zl_fail "keys remove of the primary exited $rc, not 1: $err"; return 1; }
    grep -q 'busy' <<<"$err" ||
        { zl_fail "the refusal does not say busy: $err"; return 1; }
    zl_note "refused: $err"
    after=$(keyring_state)
    [ "$before" = "$after" ] ||
        { zl_fail "the keyring changed from '$before' to '$after'"; return 1; }
}

t_keys_bad_input() {
    local err rc before after current
    zl_wait 10 "n5's keyring to settle" n5_keys_settled || return 1
    before=$(keyring_state) || { zl_fail "keys list on n5 failed"; return 1; }
    current=$(keyring_keys n5 | head -n 1)
    err=$(zl_ctl n5 keys remove 0badc0de 2>&1)
    rc=$?
    [ "$rc" -eq 1 ] && grep -q 'not_found' <<<"$err" ||
        { zl_fail "removing an unknown key id: exit $rc, $err"; return 1; }
    err=$(zl_ctl n5 keys use 0badc0de 2>&1)
    rc=$?
    [ "$rc" -eq 1 ] && grep -q 'not_found' <<<"$err" ||
        { zl_fail "using an unknown key id: exit $rc, $err"; return 1; }
    err=$(zl_ctl n5 keys install - <<<"$current" 2>&1)
    rc=$?
    [ "$rc" -eq 1 ] && grep -q 'exists' <<<"$err" ||
        { zl_fail "installing the key in use again: exit $rc, $err"; return 1; }
    err=$(zl_ctl n5 keys install - <<<"not-a-key" 2>&1)
    rc=$?
    [ "$rc" -eq 2 ] ||
        { zl_fail "installing a malformed key: exit $rc, not 2: $err"; return 1; }
    grep -q 'not-a-key' <<<"$err" &&
        { zl_fail "the malformed key is echoed back: $err"; return 1; }
    err=$(zl_ctl n5 keys use xyz 2>&1)
    rc=$?
    [ "$rc" -eq 2 ] || { zl_fail "keys use xyz: exit $rc, not 2: $err"; return 1; }
    after=$(keyring_state)
    [ "$before" = "$after" ] ||
        { zl_fail "the keyring changed from '$before' to '$after'"; return 1; }
}

t_seeds_gone() {
    local rest="" stay="" t0 n
    for n in $(live); do
        [ "$n" = n1 ] && continue
        rest="${rest:+$rest }$n"
        [ "$n" = n3 ] || stay="${stay:+$stay }$n"
    done
    [ "$rest" != "$stay" ] || { zl_fail "n3 is not running"; return 1; }
    zl_stop n1 || return 1
    [ "$ZL_RC" -eq 0 ] || { zl_fail "n1 exited with status $ZL_RC"; return 1; }
    zl_wait 10 "$rest to report n1 left" zl_all_see left n1 $rest || return 1
    grep -q "join: \[\"${ADDR[n1]}\"\]" "$(zl_conf_file n3)" ||
        { zl_fail "n3's config does not join only n1"; return 1; }
    zl_stop n3 || return 1
    [ "$ZL_RC" -eq 0 ] || { zl_fail "n3 exited with status $ZL_RC"; return 1; }
    zl_wait 10 "$stay to report n3 left" zl_all_see left n3 $stay || return 1
    t0=$(zl_now_ms)
    zl_start n3 || return 1
    zl_wait "$CONVERGE_S" "n3 to rejoin $stay without its seed" \
        zl_converged "$(wc -w <<<"$rest")" $rest || return 1
    zl_note "n3 rejoined through its store $(zl_secs $(($(zl_now_ms) - t0)))s after its start"
}

# A small cluster of its own: names, transport option, address format.
small_cluster() { # prefix host-format cluster [zl_conf options...]
    local pre=$1 fmt=$2 cluster=$3 n i key seed
    shift 3
    zl_ports 3 || return 1
    key=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }
    # shellcheck disable=SC2059
    seed=$(printf "$fmt" "$ZL_PORT")
    for i in 1 2 3; do
        n=$pre$i
        # shellcheck disable=SC2059
        if [ "$i" = 1 ]; then
            zl_conf "$n" "$seed" --key "$key" --cluster "$cluster" "$@" || return 1
        else
            zl_conf "$n" "$(printf "$fmt" $((ZL_PORT + i - 1)))" --join "$seed" \
                --key "$key" --cluster "$cluster" "$@" || return 1
        fi
        zl_start "$n" || return 1
    done
    zl_wait "$CONVERGE_S" "all 3 to see 3 alive" \
        zl_converged 3 "${pre}1" "${pre}2" "${pre}3" || return 1
    zl_note "converged $(zl_secs "$ZL_WAITED_MS")s after the last start"
}

t_tcp_transport() {
    local t0 ms tr
    small_cluster t 127.0.0.1:%d zpf-tcp --transport tcp || return 1
    tr=$(zl_ctl t1 --json status | zl_py 'print(d["transport"])')
    [ "$tr" = tcp ] || { zl_fail "t1 status says transport $tr"; return 1; }
    t0=$(zl_now_ms)
    zl_kill t3
    zl_wait "$(((2 * DETECT_BOUND_MS + 999) / 1000))" "t1, t2 to report t3 dead" \
        zl_all_see dead t3 t1 t2 || return 1
    ms=$(($(zl_now_ms) - t0))
    zl_note "kill -9 to dead on both survivors: $(zl_secs "$ms")s"
    [ "$ms" -le "$DETECT_BOUND_MS" ] ||
        { zl_fail "detection took $(zl_secs "$ms")s, over $(zl_secs $DETECT_BOUND_MS)s"; return 1; }
    zl_kill t1
    zl_kill t2
}

t_ipv6() {
    local addr
    if ! "$ZL_PY" -c 'import socket
for t in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET6, t)
    s.bind(("::1", 0))
    s.close()' 2>/dev/null; then
        zl_skip "cannot bind to ::1 (IPv6 off on loopback)"
        return 0
    fi
    small_cluster v '[::1]:%d' zpf-v6 || return 1
    addr=$(zl_ctl v2 --json status | zl_py 'print(d["addr"])')
    [[ $addr == "[::1]:"* ]] || { zl_fail "v2 status says addr $addr"; return 1; }
    zl_kill v1
    zl_kill v2
    zl_kill v3
}

stop_main_cluster() {
    local n
    for n in $NAMES; do
        zl_running "$n" && zl_kill "$n"
    done
    return 0
}

echo "$ZL_SUITE: B=$B, time scale $ZL_SCALE, detection bound $(zl_secs $DETECT_BOUND_MS)s, dir $ZL_DIR"
zl_run converge t_converge
if zl_passed converge; then
    zl_run kill_detect t_kill_detect
    zl_run restart_incarnation t_restart_incarnation
    zl_run sigterm_leave t_sigterm_leave
    zl_run foreign_key t_foreign_key
    zl_run foreign_cluster t_foreign_cluster
    zl_run key_rotation t_key_rotation
    zl_run remove_primary t_remove_primary
    zl_run keys_bad_input t_keys_bad_input
    zl_run seeds_gone t_seeds_gone
else
    zl_not_run kill_detect restart_incarnation sigterm_leave foreign_key \
        foreign_cluster key_rotation remove_primary keys_bad_input seeds_gone \
        "the 5 agents never converged"
fi
stop_main_cluster
zl_run tcp_transport t_tcp_transport
zl_run ipv6 t_ipv6
zl_summary
