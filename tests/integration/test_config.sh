#!/usr/bin/env bash
# zpfd's command line and configuration, as an operator meets them.
#
#   B=build tests/integration/test_config.sh        (B=build/san for ASan)
#
#   example_valid     zpfd --check on zpf.yaml.example exits 0, "FILE: ok"
#                     (with its keyring path pointed at a real key file)
#   broken_configs    each broken file exits 1 with "zpfd: FILE:LINE:COL:
#                     message", LINE pointing at the fault, the message
#                     naming it
#   missing_file      a config that does not exist: exit 1, the path named
#   no_half_agent     a config that parses but cannot run (keyring missing,
#                     keyring readable by others, port taken, socket path
#                     taken, broken file given without --check) makes zpfd
#                     exit 1 without ever creating its control socket; the
#                     socket sits in a directory that does not exist yet,
#                     which the control server would create, so even a
#                     socket opened and removed again is caught
#   second_agent      a second zpfd on a live agent's socket exits 1 and
#                     leaves the first one answering
#   flags             --version and --help exit 0; an unknown flag, or -c
#                     without a file, exits 2 with the usage
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/integration/lib.sh
. tests/integration/lib.sh
zl_need_binaries

EXIT_S=10   # a zpfd that cannot start says so at once; generous for ASan

# A valid config for case NAME in its own directory, on PORT, with its
# socket in a directory that does not exist yet.  Extra lines for the
# gossip section may follow.
good_config() { # name port [gossip lines...]
    local d="$ZL_DIR/$1" port=$2 line
    shift 2
    mkdir -p "$d"
    {
        echo "node:"
        echo "  name: $(basename "$d")"
        echo "  data_dir: $d/data"
        echo "gossip:"
        echo "  cluster: cfg"
        echo "  bind: 127.0.0.1:$port"
        for line in "$@"; do echo "  $line"; done
        echo "security:"
        echo "  keyring: $d/keyring"
        echo "control:"
        echo "  socket: $d/ctl/zpf.sock"
    } >"$d/zpf.yaml"
}

# zpfd --check also reads the keyring file the config names, and the
# example names /etc/zpf/keyring, which a build host does not have: check a
# copy that differs in that one line, pointing at a key made here.
t_example_valid() {
    local d="$ZL_DIR/example" out rc ndiff
    mkdir -p "$d"
    (umask 077 && zl_keygen >"$d/keyring") || { zl_fail "zpfctl keygen failed"; return 1; }
    sed "s|^\(  keyring: *\)/etc/zpf/keyring|\1$d/keyring|" zpf.yaml.example \
        >"$d/zpf.yaml"
    ndiff=$(diff zpf.yaml.example "$d/zpf.yaml" | grep -c '^>')
    [ "$ndiff" -eq 1 ] ||
        { zl_fail "expected the example to name /etc/zpf/keyring once; $ndiff lines differ"; return 1; }
    out=$(timeout -k 5 "$(zl_scale $EXIT_S)" "$ZPFD" --check -c "$d/zpf.yaml" 2>&1)
    rc=$?
    [ "$rc" -eq 0 ] || { zl_fail "exit $rc: $out"; return 1; }
    [ "$out" = "$d/zpf.yaml: ok" ] ||
        { zl_fail "expected '$d/zpf.yaml: ok', got: $out"; return 1; }
    if [ ! -r /etc/zpf/keyring ]; then
        zl_note "zpf.yaml.example checked with security.keyring: $d/keyring" \
            "(no /etc/zpf/keyring here)"
    fi
}

# One broken config: the document is read from stdin.
broken() { # name expected-line message-regex
    local f="$ZL_DIR/broken/$1.yaml" out rc
    mkdir -p "$ZL_DIR/broken"
    cat >"$f"
    out=$(timeout "$(zl_scale $EXIT_S)" "$ZPFD" --check -c "$f" 2>&1)
    rc=$?
    if [ "$rc" -ne 1 ]; then
        BROKEN_BAD="$BROKEN_BAD$1: exit $rc, not 1 ($out); "
    elif ! [[ $out =~ ^zpfd:\ "$f":([0-9]+):([0-9]+):\ (.*)$ ]]; then
        BROKEN_BAD="$BROKEN_BAD$1: not 'zpfd: FILE:LINE:COL: message': $out; "
    elif [ "${BASH_REMATCH[1]}" != "$2" ]; then
        BROKEN_BAD="$BROKEN_BAD$1: line ${BASH_REMATCH[1]}, not $2: $out; "
    elif ! grep -qE -- "$3" <<<"${BASH_REMATCH[3]}"; then
        BROKEN_BAD="$BROKEN_BAD$1: message does not match /$3/: $out; "
    else
        BROKEN_OK=$((BROKEN_OK + 1))
    fi
}

t_broken_configs() {
    BROKEN_BAD=""
    BROKEN_OK=0
    local head="node:
  name: n1
  data_dir: /var/lib/zpf/n1"
    local sec="security:
  keyring: /etc/zpf/keyring
control:
  socket: /run/zpf/n1.sock"

    broken unknown_key 7 "unknown key 'probe_timout'.*probe_timeout" <<EOF
$head
gossip:
  cluster: demo
  bind: 127.0.0.1:7946
  probe_timout: 1s
$sec
EOF
    broken unknown_section 10 "unknown section 'nodes'" <<EOF
$head
gossip:
  cluster: demo
$sec
nodes: {}
EOF
    broken list_for_duration 7 "probe_interval.*list" <<EOF
$head
gossip:
  cluster: demo
  bind: 127.0.0.1:7946
  probe_interval: [1s]
$sec
EOF
    broken map_for_string 2 "node.name" <<EOF
node:
  name: {first: n1}
  data_dir: /var/lib/zpf/n1
gossip:
  cluster: demo
$sec
EOF
    broken word_for_number 6 "indirect_checks.*whole number" <<EOF
$head
gossip:
  cluster: demo
  indirect_checks: three
$sec
EOF
    broken duration_without_unit 6 "probe_interval.*unit" <<EOF
$head
gossip:
  cluster: demo
  probe_interval: 10
$sec
EOF
    broken duration_bad_unit 6 "probe_interval.*5parsecs" <<EOF
$head
gossip:
  cluster: demo
  probe_interval: 5parsecs
$sec
EOF
    broken missing_cluster 4 "gossip.cluster.*required" <<EOF
$head
gossip:
  bind: 127.0.0.1:7946
$sec
EOF
    broken port_out_of_range 6 "gossip.bind.*port" <<EOF
$head
gossip:
  cluster: demo
  bind: 127.0.0.1:99999
$sec
EOF
    broken bad_ip 6 "gossip.bind.*300.1.2.3" <<EOF
$head
gossip:
  cluster: demo
  bind: 300.1.2.3:7946
$sec
EOF
    broken bad_seed 6 "gossip.join" <<EOF
$head
gossip:
  cluster: demo
  join: ["[::1"]
$sec
EOF
    broken missing_security 1 "security.keyring" <<EOF
$head
gossip:
  cluster: demo
  bind: 127.0.0.1:7946
control:
  socket: /run/zpf/n1.sock
EOF
    broken unterminated_quote 10 "YAML syntax error" <<EOF
$head
gossip:
  cluster: "demo
$sec
EOF
    broken bad_indentation 6 "YAML syntax error" <<EOF
$head
gossip:
  cluster: demo
 bind: 127.0.0.1:7946
$sec
EOF
    broken duplicate_key 6 "duplicate key 'cluster'" <<EOF
$head
gossip:
  cluster: demo
  cluster: again
$sec
EOF
    broken unknown_transport 6 "transport.*pigeon" <<EOF
$head
gossip:
  cluster: demo
  transport: pigeon
$sec
EOF
    broken yaml11_boolean 6 "tcp_fallback.*yes" <<EOF
$head
gossip:
  cluster: demo
  tcp_fallback: yes
$sec
EOF
    broken unknown_log_level 11 "log.level.*loud" <<EOF
$head
gossip:
  cluster: demo
$sec
log:
  level: loud
EOF
    broken empty_file 1 "empty" </dev/null

    zl_note "$BROKEN_OK broken configs rejected with FILE:LINE:COL"
    [ -z "$BROKEN_BAD" ] || { zl_fail "$BROKEN_BAD"; return 1; }
}

t_missing_file() {
    local out rc f="$ZL_DIR/no/such.yaml"
    out=$(timeout -k 5 "$(zl_scale $EXIT_S)" "$ZPFD" --check -c "$f" 2>&1)
    rc=$?
    [ "$rc" -eq 1 ] || { zl_fail "exit $rc, not 1: $out"; return 1; }
    grep -qF "$f" <<<"$out" || { zl_fail "the path is not named: $out"; return 1; }
}

# Run zpfd -c on case NAME's config: it must exit 1 with a message matching
# REGEX and never create the socket's directory.
refused() { # name regex
    local d="$ZL_DIR/$1" out rc
    out=$(timeout -k 5 "$(zl_scale $EXIT_S)" "$ZPFD" -c "$d/zpf.yaml" 2>&1 </dev/null)
    rc=$?
    if [ "$rc" -ne 1 ]; then
        HALF_BAD="$HALF_BAD$1: exit $rc, not 1 ($(tail -n 2 <<<"$out" | tr '\n' ' ')); "
    elif [ -e "$d/ctl" ]; then
        HALF_BAD="$HALF_BAD$1: the control socket's directory was created; "
    elif ! grep -qE -- "$2" <<<"$out"; then
        HALF_BAD="$HALF_BAD$1: the reason is not given (/$2/): $(tail -n 2 <<<"$out" | tr '\n' ' '); "
    else
        zl_note "$1: $(grep -E -- "$2" <<<"$out" | head -n 1 | cut -c1-160)"
    fi
}

t_no_half_agent() {
    HALF_BAD=""
    local key holder ready
    zl_ports 5 || return 1
    key=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }

    good_config keyring_missing "$ZL_PORT"
    refused keyring_missing "keyring"

    good_config keyring_readable $((ZL_PORT + 1))
    (umask 022 && echo "$key" >"$ZL_DIR/keyring_readable/keyring")
    chmod 0644 "$ZL_DIR/keyring_readable/keyring"
    refused keyring_readable "chmod"

    good_config port_taken $((ZL_PORT + 2))
    (umask 077 && echo "$key" >"$ZL_DIR/port_taken/keyring")
    ready="$ZL_DIR/port_taken/holder.ready"
    "$ZL_PY" -c 'import socket, sys, time
port = int(sys.argv[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", port))
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.bind(("127.0.0.1", port))
t.listen(1)
open(sys.argv[2], "w").close()
time.sleep(120)' $((ZL_PORT + 2)) "$ready" &
    holder=$!
    zl_track_pid "$holder" port-holder
    zl_wait 10 "a process to hold port $((ZL_PORT + 2))" test -e "$ready" ||
        return 1
    refused port_taken "$((ZL_PORT + 2))"
    kill "$holder" 2>/dev/null
    wait "$holder" 2>/dev/null

    # The socket path is a regular file: zpfd must refuse and leave it.
    good_config socket_taken $((ZL_PORT + 3))
    (umask 077 && echo "$key" >"$ZL_DIR/socket_taken/keyring")
    sed -i "s|  socket: .*|  socket: $ZL_DIR/socket_taken/not-a-socket|" \
        "$ZL_DIR/socket_taken/zpf.yaml"
    echo "precious" >"$ZL_DIR/socket_taken/not-a-socket"
    refused socket_taken "not-a-socket"
    [ "$(cat "$ZL_DIR/socket_taken/not-a-socket")" = precious ] ||
        HALF_BAD="${HALF_BAD}socket_taken: the file in the way was changed; "

    # Without --check, a broken file must not start anything either.
    good_config unknown_key $((ZL_PORT + 4)) "probe_timout: 1s"
    (umask 077 && echo "$key" >"$ZL_DIR/unknown_key/keyring")
    refused unknown_key "probe_timout"

    [ -z "$HALF_BAD" ] || { zl_fail "$HALF_BAD"; return 1; }
}

t_second_agent() {
    local key out rc
    zl_ports 2 || return 1
    key=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }
    zl_conf first "127.0.0.1:$ZL_PORT" --key "$key" || return 1
    zl_start first || return 1
    zl_conf second "127.0.0.1:$((ZL_PORT + 1))" --key "$key" || return 1
    sed -i "s|  socket: .*|  socket: $(zl_sock first)|" "$(zl_conf_file second)"
    out=$(timeout -k 5 "$(zl_scale $EXIT_S)" "$ZPFD" -c "$(zl_conf_file second)" 2>&1 </dev/null)
    rc=$?
    [ "$rc" -eq 1 ] || { zl_fail "the second zpfd exited $rc, not 1: $(tail -n 2 <<<"$out")"; return 1; }
    grep -q "another zpfd" <<<"$out" ||
        { zl_fail "the second zpfd does not say another zpfd listens: $(tail -n 2 <<<"$out")"; return 1; }
    zl_ctl first status >/dev/null ||
        { zl_fail "the first zpfd no longer answers on its socket"; return 1; }
    zl_stop first || return 1
    [ "$ZL_RC" -eq 0 ] || { zl_fail "the first zpfd exited $ZL_RC after SIGTERM"; return 1; }
}

t_flags() {
    local out rc
    out=$(timeout -k 5 "$(zl_scale $EXIT_S)" "$ZPFD" --version 2>&1 </dev/null)
    rc=$?
    [ "$rc" -eq 0 ] && [[ $out == zpfd\ * ]] ||
        { zl_fail "--version: exit $rc: $out"; return 1; }
    zl_note "$out"
    out=$(timeout -k 5 "$(zl_scale $EXIT_S)" "$ZPFD" --help 2>&1 </dev/null)
    rc=$?
    [ "$rc" -eq 0 ] && grep -q -- "--check" <<<"$out" ||
        { zl_fail "--help: exit $rc: $out"; return 1; }
    out=$(timeout -k 5 "$(zl_scale $EXIT_S)" "$ZPFD" --frobnicate 2>&1 </dev/null)
    rc=$?
    [ "$rc" -eq 2 ] && grep -q "usage" <<<"$out" ||
        { zl_fail "an unknown flag: exit $rc, not 2 with the usage: $out"; return 1; }
    out=$(timeout -k 5 "$(zl_scale $EXIT_S)" "$ZPFD" -c 2>&1 </dev/null)
    rc=$?
    [ "$rc" -eq 2 ] || { zl_fail "-c without a file: exit $rc, not 2: $out"; return 1; }
}

zl_run example_valid t_example_valid
zl_run broken_configs t_broken_configs
zl_run missing_file t_missing_file
zl_run no_half_agent t_no_half_agent
zl_run second_agent t_second_agent
zl_run flags t_flags
zl_summary
