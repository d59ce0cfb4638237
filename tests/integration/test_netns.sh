#!/usr/bin/env bash
# zpfd on a real (virtual) network: five agents, each in its own network
# namespace, on one Linux bridge, with faults injected by nftables.
#
#   sudo B=build tests/integration/test_netns.sh     (B=build/san for ASan)
#   ZPF_NETNS_LOSS_SECONDS=300   length of the 10 % loss soak (default 300)
#   ZPF_NETNS_UDP_SECONDS=60     length of the UDP blackout (default 60)
#
# Root only: without root, or where `ip netns add` is refused (an
# unprivileged container), it says why and reports 0 tests.  Needs ip
# (iproute2), nft (nftables) and python3.
#
# Each agent has a network stack of its own, so faults can be put between
# two agents without touching the host's firewall, and the failure detector
# meets real kernel paths (bridge, veth, netfilter):
#   converge     5 agents see 5 alive
#   partition    {a,b} | {c,d,e}: each side declares the other dead; after
#                the heal all 5 see 5 alive again
#   loss         10 % random loss on every host's input for
#                ZPF_NETNS_LOSS_SECONDS: nobody is ever reported dead or left
#   udp_blocked  no UDP to or from a (so none between a and b either) for
#                ZPF_NETNS_UDP_SECONDS: the TCP fallback probe (tcp_fallback:
#                true, the default) keeps a alive to everyone and everyone
#                alive to a; nobody is declared dead
#
# Layout, all of it created here and deleted on exit whatever happened:
#
#     ns zpftXXXX-a                  ns zpftXXXX-br                 ns zpftXXXX-e
#   [zpfd a] zpf0 ===veth=== zpftXXXXa -- br0 -- zpftXXXXe ===veth=== zpf0 [zpfd e]
#   10.231.X.11/24                                             10.231.X.15/24
#
# The bridge has a namespace of its own and every veth is created directly
# inside namespaces, so the host's interfaces, routes and nftables tables
# are never touched.  Each agent namespace has its own `table inet zpft`,
# the only place faults are injected.  Control sockets live in the shared
# temp dir: UNIX sockets are files, not network objects, so zpfctl reaches
# them from the root namespace.
#
# Timings: the core's defaults (probe_interval 1s, suspicion_mult 4,
# suspicion_max_mult 6), so the loss soak judges what operators run, except
# push_pull_interval: 5s instead of 30s: every agent also push-pulls one
# random dead member per interval, and that is how the halves of a healed
# partition find each other.  The whole run takes ZPF_NETNS_LOSS_SECONDS +
# ZPF_NETNS_UDP_SECONDS + about a minute: under 8 minutes with the defaults.
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/integration/lib.sh
. tests/integration/lib.sh

LOSS_SECONDS=${ZPF_NETNS_LOSS_SECONDS:-300}
UDP_SECONDS=${ZPF_NETNS_UDP_SECONDS:-60}
for v in "$LOSS_SECONDS" "$UDP_SECONDS"; do
    [[ $v =~ ^[0-9]+$ ]] && [ "$v" -gt 0 ] ||
        zl_fatal "ZPF_NETNS_LOSS_SECONDS and ZPF_NETNS_UDP_SECONDS are" \
            "whole numbers of seconds > 0"
done
NAMES="a b c d e"
PORT=7946 # one agent per namespace: they can all have the same port

# Loss on input only, so a request and its answer each cross one lossy hop:
# a direct probe round trip fails 19 % of the time, an indirect one more.
LOSS_PERCENT=10

ZL_GOSSIP="push_pull_interval: 5s"

# Bounds, before ZL_SCALE.  With probe_interval P = 1 s at n = 5, Lifeguard's
# suspicion timeout runs from 4 P (min) to 6 * 4 P = 24 s (max, with no
# confirmation); the probe round needs up to 2 P to reach a member; gossip
# of the verdict and our polling add under a second.  The side whose
# indirect probes go unanswered also raises its local health multiplier,
# which stretches its probe period: 14 s of margin for that.
DETECT_S=$((24 + 2 + 14))
# The healed halves meet at the first push-pull to a dead member (every
# agent sends one per 5 s), then refute and spread the refutation: a few
# intervals, generously.
HEAL_S=40
CONVERGE_S=20

# --- skip unless namespaces can be built ---------------------------------------

skip_all() {
    echo "$ZL_SUITE: skipped: $*"
    zl_summary
}

[ "$(id -u)" = 0 ] || skip_all "needs root (network namespaces, nftables)"
command -v ip >/dev/null || skip_all "ip (iproute2) is not installed"

P=zpft$(od -An -N2 -tx2 /dev/urandom | tr -d ' \n')
BRNS=$P-br
CREATED_NS=""
ip netns add "$BRNS" 2>/dev/null ||
    skip_all "ip netns add is refused (a container without CAP_SYS_ADMIN?)"
CREATED_NS=$BRNS

# lib.sh's exit trap has killed the agents by the time this runs; anything
# still inside our namespaces was started here too.
netns_cleanup() {
    local ns pid
    for ns in $CREATED_NS; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
    done
    for ns in $CREATED_NS; do
        ip netns del "$ns" 2>/dev/null ||
            echo "$ZL_SUITE: could not delete namespace $ns" >&2
    done
}
zl_on_exit netns_cleanup

command -v nft >/dev/null ||
    zl_fatal "nft is not installed: install nftables (make deps)"
zl_need_binaries

# --- the network ---------------------------------------------------------------

# A /24 of 10.231.0.0/16 that no route of the host covers but the default:
# our addresses never leave their namespaces, but whoever reads `ip route`
# on this host must not find them overlapping anything real.
pick_subnet() {
    local x _
    for _ in $(seq 1 50); do
        x=$(($(od -An -N1 -tu1 /dev/urandom) % 254 + 1))
        if ! ip -4 route show to match "10.231.$x.0/24" | grep -qv '^default' &&
            ! ip -4 addr show | grep -q " 10\.231\.$x\."; then
            echo "$x"
            return 0
        fi
    done
    return 1
}
X=$(pick_subnet) || zl_fatal "no free /24 in 10.231.0.0/16 (see ip route)"

declare -A ADDR NS
i=11
for n in $NAMES; do
    ADDR[$n]=10.231.$X.$i
    NS[$n]=$P-$n
    i=$((i + 1))
done

setup_network() {
    local n
    ip -n "$BRNS" link add br0 type bridge &&
        ip -n "$BRNS" link set br0 up || return 1
    for n in $NAMES; do
        ip netns add "${NS[$n]}" || return 1
        CREATED_NS="$CREATED_NS ${NS[$n]}"
        ip -n "$BRNS" link add "$P$n" type veth peer name zpf0 \
            netns "${NS[$n]}" &&
            ip -n "$BRNS" link set "$P$n" master br0 up &&
            ip -n "${NS[$n]}" link set lo up &&
            ip -n "${NS[$n]}" addr add "${ADDR[$n]}/24" dev zpf0 &&
            ip -n "${NS[$n]}" link set zpf0 up || return 1
        ip netns exec "${NS[$n]}" nft -f - <<'EOF' || return 1
table inet zpft {
    chain input { type filter hook input priority 0; policy accept; }
    chain output { type filter hook output priority 0; policy accept; }
}
EOF
    done
}

nftn() { # agent, nft arguments: nft inside the agent's namespace
    local n=$1
    shift
    ip netns exec "${NS[$n]}" nft "$@"
}

flush_faults() {
    local n
    for n in $NAMES; do
        nftn "$n" flush chain inet zpft input &&
            nftn "$n" flush chain inet zpft output || return 1
    done
}

# Packets counted by the rules with comment $2 in the namespaces of the
# agents $1 ("a b").
nft_count() {
    local n c sum=0
    for n in $1; do
        for c in $(nftn "$n" list table inet zpft | sed -n \
            "s/.*counter packets \([0-9]*\) .*comment \"$2\".*/\1/p"); do
            sum=$((sum + c))
        done
    done
    echo "$sum"
}

# --- the agents ----------------------------------------------------------------

# zpf_deaths_declared_total of every agent: "a=0 b=3 ..."; "a=?" for an
# agent that did not answer, which no comparison of two of these accepts.
deaths() {
    local n out=""
    for n in $NAMES; do
        out="$out $n=$(zl_metric "$n" zpf_deaths_declared_total || echo '?')"
    done
    echo "${out# }"
}

# The sum of a counter over every agent (agents that do not answer add 0).
sum_metric() {
    local n v sum=0
    for n in $NAMES; do
        v=$(zl_metric "$n" "$1") || continue
        sum=$((sum + ${v%.*}))
    done
    echo "$sum"
}

same_deaths() { # before after
    [ "$1" = "$2" ] && [[ $1 != *'?'* ]]
}

gone_agents() {
    local n out=""
    for n in $NAMES; do
        zl_running "$n" || out="$out $n"
    done
    echo "${out# }"
}

# True when every agent of side $1 sees every agent of side $2 in one of
# STATES $3 ("dead", "suspect|dead|stalled|left"), and the other way round.
# One view of everyone per call; ZL_SEEN lists what does not match.
sides_see() {
    local v
    v=$(zl_view $NAMES)
    ZL_SEEN=$(awk -v s1="$1" -v s2="$2" -v want="$3" '
        BEGIN { k = split(want, w, "|"); for (i = 1; i <= k; i++) ok[w[i]] = 1
                n1 = split(s1, a, " "); n2 = split(s2, b, " ")
                for (i = 1; i <= n1; i++) for (j = 1; j <= n2; j++) {
                    pair[a[i] " " b[j]] = 1; pair[b[j] " " a[i]] = 1 } }
        $3 == "unreachable" { down[$1] = 1 }
        { st[$1 " " $2] = $3 }
        END { for (p in pair) {
                  split(p, x, " ")
                  if (x[1] in down) { bad[x[1] " does not answer"] = 1; continue }
                  s = (p in st) ? st[p] : "absent"
                  if (!(s in ok)) bad[x[1] " sees " x[2] " " s] = 1 }
              for (m in bad) out = out m "; "
              printf "%s", out }' <<<"$v")
    [ -z "$ZL_SEEN" ]
}

all_alive() { zl_converged 5 $NAMES; }

# --- the tests -----------------------------------------------------------------

t_converge() {
    local key n t0
    key=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }
    t0=$(zl_now_ms)
    for n in $NAMES; do
        if [ "$n" = a ]; then
            zl_conf a "${ADDR[a]}:$PORT" --key "$key" --cluster netns
        else
            zl_conf "$n" "${ADDR[$n]}:$PORT" --key "$key" --cluster netns \
                --join "${ADDR[a]}:$PORT"
        fi || return 1
        # zl_start waits for the socket, so the seed is up before the rest.
        zl_start "$n" ip netns exec "${NS[$n]}" || return 1
    done
    zl_wait "$CONVERGE_S" "5 agents to see 5 alive" all_alive || return 1
    zl_note "converged in $(zl_secs $(($(zl_now_ms) - t0)))s from the first start"
}

t_partition() {
    local n other
    for n in $NAMES; do
        case $n in
        a | b) other="${ADDR[c]}, ${ADDR[d]}, ${ADDR[e]}" ;;
        *) other="${ADDR[a]}, ${ADDR[b]}" ;;
        esac
        nftn "$n" add rule inet zpft input ip saddr "{ $other }" \
            counter drop comment '"partition"' &&
            nftn "$n" add rule inet zpft output ip daddr "{ $other }" \
                counter drop comment '"partition"' ||
            { zl_fail "cannot add the partition rules in ${NS[$n]}"; return 1; }
    done
    # Wait for dead on both sides; "not alive" at the deadline is accepted
    # (the claim rules act on dead and stalled alike), with a note.
    if zl_wait "$DETECT_S" "each side to declare the other dead" \
        sides_see "a b" "c d e" dead; then
        zl_note "each side declared the other dead in $(zl_secs "$ZL_WAITED_MS")s"
    elif sides_see "a b" "c d e" "suspect|dead|left|stalled"; then
        zl_note "at the deadline each side saw the other not alive, not all dead"
    else
        return 1
    fi
    zl_note "packets dropped by the partition: $(nft_count "$NAMES" partition)"
    flush_faults || { zl_fail "cannot delete the partition rules"; return 1; }
    zl_wait "$HEAL_S" "all 5 to see 5 alive after the heal" all_alive ||
        return 1
    zl_note "healed: all 5 see 5 alive $(zl_secs "$ZL_WAITED_MS")s after the rules went"
}

# A soak: poll every member list (lib.sh's monitor, every 0.5 s) for $1
# seconds; fails if anyone reports a member dead or left.  The suspect limit
# is the soak itself: suspicions are expected under loss, deaths are not.
soak() {
    local secs=$1 t_end
    zl_monitor_start "$ZL_DIR/monitor.txt" "$((secs + 60))" $NAMES
    t_end=$(($(zl_now_ms) + secs * 1000))
    # Not a blind sleep: the agents and the monitor are checked each second.
    while [ "$(zl_now_ms)" -lt "$t_end" ]; do
        [ -z "$(gone_agents)" ] || break
        sleep 1
    done
    zl_monitor_stop
    local rc=$?
    zl_note "monitor: $ZL_MONITOR"
    return $rc
}

t_loss() {
    local n before after dropped total g mon=ok pf0 pf1
    zl_wait "$HEAL_S" "all 5 to see 5 alive before the test" all_alive ||
        return 1
    before=$(deaths)
    pf0=$(sum_metric zpf_probes_failed_total)
    for n in $NAMES; do
        nftn "$n" add rule inet zpft input meta l4proto "{ udp, tcp }" \
            counter comment '"seen"' &&
            nftn "$n" add rule inet zpft input meta l4proto "{ udp, tcp }" \
                numgen random mod 100 "<" "$LOSS_PERCENT" counter drop \
                comment '"loss"' ||
            { zl_fail "cannot add the loss rules in ${NS[$n]}"; return 1; }
    done
    zl_note "$LOSS_PERCENT % loss on every input for ${LOSS_SECONDS}s"
    soak "$LOSS_SECONDS" || mon=""
    dropped=$(nft_count "$NAMES" loss)
    total=$(nft_count "$NAMES" seen)
    flush_faults || { zl_fail "cannot delete the loss rules"; return 1; }
    after=$(deaths)
    pf1=$(sum_metric zpf_probes_failed_total)
    zl_note "dropped $dropped of $total packets;" \
        "probes failed: $((pf1 - pf0)); deaths declared before: $before;" \
        "after: $after"
    g=$(gone_agents)
    [ -z "$g" ] || { zl_fail "agents exited: $g"; return 1; }
    [ -n "$mon" ] ||
        { zl_fail "a member was reported dead or left (or an agent stopped answering)"; return 1; }
    # Counters are cumulative and the partition declared deaths: what must
    # be 0 is what the soak added.
    same_deaths "$before" "$after" ||
        { zl_fail "deaths declared under loss: before $before; after $after"; return 1; }
    # Binomial: thousands of packets at 10 % land well inside 3..20 %, and
    # so do the few hundred of a short soak.
    [ "$total" -gt 0 ] && [ "$dropped" -gt 0 ] &&
        [ $((dropped * 100)) -ge $((total * 3)) ] &&
        [ $((dropped * 100)) -le $((total * 20)) ] ||
        { zl_fail "the loss rule did not drop about $LOSS_PERCENT %:" \
            "$dropped of $total"; return 1; }
}

# Blocking UDP between a and b alone proves nothing about the fallback: the
# indirect probes through c, d and e keep a and b alive to each other, and
# that check passes with tcp_fallback: false too.  With a cut off from all
# UDP, the stream probe is a's only way to answer or be answered (with
# tcp_fallback: false the others declare a dead within seconds).
t_udp_blocked() {
    local before after dropped g n mon=ok
    zl_wait "$HEAL_S" "all 5 to see 5 alive before the test" all_alive ||
        return 1
    before=$(deaths)
    nftn a add rule inet zpft input meta l4proto udp counter drop \
        comment '"udp"' ||
        { zl_fail "cannot add the UDP rule in ${NS[a]}"; return 1; }
    for n in b c d e; do
        nftn "$n" add rule inet zpft input ip saddr "${ADDR[a]}" \
            meta l4proto udp counter drop comment '"udp"' ||
            { zl_fail "cannot add the UDP rule in ${NS[$n]}"; return 1; }
    done
    zl_note "no UDP to or from a for ${UDP_SECONDS}s"
    soak "$UDP_SECONDS" || mon=""
    local all_ok=ok
    all_alive || all_ok=""
    local all_seen=$ZL_SEEN
    dropped=$(nft_count "$NAMES" udp)
    flush_faults || { zl_fail "cannot delete the UDP rules"; return 1; }
    after=$(deaths)
    zl_note "dropped $dropped UDP packets to or from a;" \
        "deaths declared before: $before; after: $after"
    g=$(gone_agents)
    [ -z "$g" ] || { zl_fail "agents exited: $g"; return 1; }
    [ "$dropped" -gt 0 ] ||
        { zl_fail "the UDP rules dropped nothing: the check proves nothing"; return 1; }
    [ -n "$mon" ] ||
        { zl_fail "a member was reported dead or left (or an agent stopped answering)"; return 1; }
    [ -n "$all_ok" ] ||
        { zl_fail "not all alive at the end of the blackout: $all_seen"; return 1; }
    same_deaths "$before" "$after" ||
        { zl_fail "deaths declared: before $before; after $after"; return 1; }
}

setup_network || zl_fatal "cannot build the network in namespaces $P-*"
echo "network: namespaces $P-{br,a,b,c,d,e}, 10.231.$X.0/24;" \
    "loss soak ${LOSS_SECONDS}s, UDP blackout ${UDP_SECONDS}s;" \
    "time scale $ZL_SCALE"

# Each check leaves the network clean for the next, even when it failed.
zl_run converge t_converge
if zl_passed converge; then
    zl_run partition t_partition
    flush_faults
    zl_run loss t_loss
    flush_faults
    zl_run udp_blocked t_udp_blocked
else
    zl_not_run partition loss udp_blocked "the cluster never converged"
fi

# A graceful end: all leave at once (no "Killed" noise from the exit trap).
for n in $NAMES; do
    zl_running "$n" && kill -TERM "$(zl_pid "$n")" 2>/dev/null
done
none_running() { [ -z "$(for n in $NAMES; do zl_running "$n" && echo "$n"; done)" ]; }
zl_wait 15 "the agents to exit after SIGTERM" none_running >/dev/null
{ for n in $NAMES; do [ -n "$(zl_pid "$n")" ] && zl_kill "$n"; done; } 2>/dev/null
zl_summary
