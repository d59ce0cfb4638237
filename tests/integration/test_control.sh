#!/usr/bin/env bash
# zpfd's control socket under misuse, and SIGHUP, against real agents.
#
#   B=build tests/integration/test_control.sh       (B=build/san for ASan)
#
# One agent, c1, takes the abuse; c2 joins it for the SIGHUP checks, which
# need a second agent to see c1's new tags.  Raw clients are python3's
# socket module (socat may not be installed).
#
#   protocol_errors   malformed JSON, a non-object, a NUL byte, a missing
#                     or unknown version, args not an object: each gets its
#                     error code, and the same connection still answers
#   unknown_command   unknown_command, the request's id echoed
#   line_too_long     a request line over 64 KiB: line_too_long, then the
#                     agent hangs up
#   flooding_client   a client writing requests without reading replies
#                     does not keep `zpfctl status` from answering in 2 s
#   silent_clients    clients that connect and say nothing, likewise
#   missing_socket    zpfctl on a path with no agent: exit 3, the path named
#   socket_mode       the socket is mode 0660
#   not_in_group      (root only) user nobody, let in by chmod 0666, is
#                     refused leave and status with forbidden
#   zpfctl_usage      unknown command, bad -t, malformed key: exit 2
#   hup_tags_level    SIGHUP after changing log.level and node.tags: the new
#                     level is logged, c2 sees the new tags
#   hup_fixed_key     SIGHUP after changing gossip.bind: the agent logs that
#                     gossip.bind needs a restart and keeps its address
#   survived          c1 still runs, answers, and counted the requests
set -u
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=tests/integration/lib.sh
. tests/integration/lib.sh
zl_need_binaries

ANSWER_MS=2000  # what an operator waits for `zpfctl status`, unscaled: the
                # point is that misbehaving clients do not delay others
KEY=""
C1_ADDR=""

# raw.py SOCK [--close] LINE...: send each line on one connection, print
# each reply line; "@long:N" sends a status request padded to N bytes.
# With --close, print EOF or OPEN: whether the agent hung up afterwards.
cat >"$ZL_DIR/raw.py" <<'EOF'
import socket, sys, time
args = sys.argv[1:]
path, close = args[0], False
if len(args) > 1 and args[1] == "--close":
    close, args = True, args[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(path)
f = s.makefile("rb")
for line in args[1:]:
    if line.startswith("@long:"):
        n = int(line[6:])
        head = b'{"v":1,"cmd":"status","args":{"pad":"'
        data = head + b"x" * (n - len(head) - 3) + b'"}}'
    else:
        data = line.encode().replace(b"\\0", b"\0")
    try:
        s.sendall(data + b"\n")
    except OSError as e:
        # The agent may hang up while a too long line is still arriving.
        print("SEND-ERROR " + type(e).__name__)
    try:
        print(f.readline().decode().rstrip("\n") or "EOF")
    except OSError as e:
        print("RECV-ERROR " + type(e).__name__)
sys.stdout.flush()
if close:
    try:
        print("EOF" if f.readline() == b"" else "OPEN")
    except socket.timeout:
        print("OPEN")
    except OSError:
        print("EOF")
EOF

# clients.py SOCK READY MODE N: hold misbehaving connections for up to 60 s.
#   flood   one connection writing status requests until the socket stays
#           full for a second (N at most), never reading
#   silent  N connections that send nothing
# READY gets the count of requests written (flood) or connections (silent).
cat >"$ZL_DIR/clients.py" <<'EOF'
import socket, sys, time
path, ready, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
conns, sent = [], 0
if mode == "flood":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.setblocking(False)
    conns.append(s)
    req = b'{"v":1,"cmd":"members"}\n'
    buf, full_since = b"", None
    while sent < n:
        if not buf:
            buf = req
        try:
            k = s.send(buf)
            buf = buf[k:]
            if not buf:
                sent += 1
            full_since = None
        except BlockingIOError:
            full_since = full_since or time.monotonic()
            if time.monotonic() - full_since > 1.0:
                break
            time.sleep(0.01)
else:
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        conns.append(s)
    sent = len(conns)
with open(ready, "w") as f:
    f.write("%d\n" % sent)
time.sleep(60)
EOF
chmod 0644 "$ZL_DIR/raw.py" "$ZL_DIR/clients.py"

raw() { # sock args...: raw.py's output
    timeout -k 5 "$(zl_scale 20)" "$ZL_PY" "$ZL_DIR/raw.py" "$@"
}

# The code of a reply line, "ok" for a success.
code_of() {
    zl_py 'print("ok" if d.get("ok") is True else d["error"]["code"])' <<<"$1" 2>/dev/null ||
        echo "unparsable: $1"
}

# Time `zpfctl status` on c1; fails unless it answers within ANSWER_MS.
status_in_time() { # what
    local t0 ms out
    t0=$(zl_now_ms)
    out=$("$ZPFCTL" -s "$(zl_sock c1)" -t "$((ANSWER_MS / 1000))" status 2>&1) ||
        { zl_fail "zpfctl status with $1 failed: $out"; return 1; }
    ms=$(($(zl_now_ms) - t0))
    zl_note "zpfctl status answered in ${ms} ms with $1"
    [ "$ms" -le "$ANSWER_MS" ] ||
        { zl_fail "zpfctl status took ${ms} ms with $1"; return 1; }
}

t_start() {
    zl_ports 3 || return 1
    KEY=$(zl_keygen) || { zl_fail "zpfctl keygen failed"; return 1; }
    C1_ADDR=127.0.0.1:$ZL_PORT
    zl_conf c1 "$C1_ADDR" --key "$KEY" --tags '{role: web}' || return 1
    zl_start c1
}

t_protocol_errors() {
    local out want got i
    local -a lines=('{"v":1,"cmd":' '[1,2]' '{"v":1,"cmd":"st\0atus"}'
        '{"cmd":"status"}' '{"v":2,"cmd":"status"}'
        '{"v":1,"cmd":"status","args":5}' '{"v":1,"id":7,"cmd":"status"}')
    local -a codes=(parse_error parse_error parse_error bad_request
        unsupported_version bad_request ok)
    out=$(raw "$(zl_sock c1)" "${lines[@]}") || { zl_fail "raw client failed: $out"; return 1; }
    for i in "${!lines[@]}"; do
        got=$(code_of "$(sed -n "$((i + 1))p" <<<"$out")")
        want=${codes[$i]}
        [ "$got" = "$want" ] ||
            { zl_fail "${lines[$i]} got $got, not $want: $(sed -n "$((i + 1))p" <<<"$out")"; return 1; }
    done
    # The last request, on the same connection, was answered in full.
    zl_py 'assert d["id"] == 7 and d["result"]["name"] == "c1", d' \
        <<<"$(tail -n 1 <<<"$out")" ||
        { zl_fail "the status after the errors is wrong: $(tail -n 1 <<<"$out")"; return 1; }
}

t_unknown_command() {
    local out
    out=$(raw "$(zl_sock c1)" '{"v":1,"id":"q1","cmd":"frobnicate"}' \
        '{"v":1,"id":"q2","cmd":"status"}') || { zl_fail "raw client failed: $out"; return 1; }
    zl_py 'assert d["ok"] is False and d["error"]["code"] == "unknown_command", d
assert d["id"] == "q1", d
assert "status" in d["error"]["message"], d' <<<"$(head -n 1 <<<"$out")" ||
        { zl_fail "reply: $(head -n 1 <<<"$out")"; return 1; }
    [ "$(code_of "$(tail -n 1 <<<"$out")")" = ok ] ||
        { zl_fail "the connection did not answer after the error: $out"; return 1; }
}

t_line_too_long() {
    local out
    out=$(raw "$(zl_sock c1)" --close @long:70000) ||
        { zl_fail "raw client failed: $out"; return 1; }
    [ "$(code_of "$(head -n 1 <<<"$out")")" = line_too_long ] ||
        { zl_fail "reply to a 70000-byte line: $(head -c 300 <<<"$out")"; return 1; }
    [ "$(tail -n 1 <<<"$out")" = EOF ] ||
        { zl_fail "the agent did not hang up after line_too_long"; return 1; }
    # Just under the bound is still a request (its pad is an unknown arg
    # that status ignores, or a bad_request: anything but line_too_long).
    out=$(raw "$(zl_sock c1)" @long:65535)
    case $(code_of "$out") in
    line_too_long) zl_fail "a 65535-byte line (64 KiB with its newline) was refused"; return 1 ;;
    unparsable*) zl_fail "no reply to a 65535-byte line: $out"; return 1 ;;
    esac
}

# Start clients.py in MODE with N; sets CLIENTS_PID once it is ready.
misbehave() { # mode n
    local ready="$ZL_DIR/clients.$1.ready"
    rm -f "$ready"
    "$ZL_PY" "$ZL_DIR/clients.py" "$(zl_sock c1)" "$ready" "$1" "$2" </dev/null &
    CLIENTS_PID=$!
    zl_track_pid "$CLIENTS_PID" "$1-client"
    zl_wait 20 "the $1 client to be ready" test -s "$ready" || return 1
    CLIENTS_COUNT=$(cat "$ready")
}

t_flooding_client() {
    misbehave flood 200000 || return 1
    zl_note "the client wrote $CLIENTS_COUNT requests without reading a reply"
    [ "$CLIENTS_COUNT" -gt 1000 ] ||
        { zl_fail "only $CLIENTS_COUNT requests went out: the flood did not flood"; return 1; }
    status_in_time "a flooding client connected" || return 1
    status_in_time "a flooding client connected (again)" || return 1
    kill "$CLIENTS_PID" 2>/dev/null
    wait "$CLIENTS_PID" 2>/dev/null
    return 0
}

t_silent_clients() {
    misbehave silent 16 || return 1
    status_in_time "$CLIENTS_COUNT silent clients connected" || return 1
    kill "$CLIENTS_PID" 2>/dev/null
    wait "$CLIENTS_PID" 2>/dev/null
    return 0
}

t_missing_socket() {
    local out rc s="$ZL_DIR/nobody-here.sock"
    out=$("$ZPFCTL" -s "$s" -t 2 status 2>&1)
    rc=$?
    [ "$rc" -eq 3 ] || { zl_fail "exit $rc, not 3: $out"; return 1; }
    grep -qF "$s" <<<"$out" || { zl_fail "the socket path is not named: $out"; return 1; }
    zl_note "$out"
}

t_socket_mode() {
    local mode
    mode=$(stat -c %a "$(zl_sock c1)")
    [ "$mode" = 660 ] || { zl_fail "socket mode $mode, not 660"; return 1; }
}

t_not_in_group() {
    local out sock nobody_py
    if [ "$(id -u)" != 0 ]; then
        zl_skip "needs root to run a client as another user"
        return 0
    fi
    if ! command -v setpriv >/dev/null; then
        zl_skip "setpriv (util-linux) not installed"
        return 0
    fi
    sock=$(zl_sock c1)
    nobody_py="setpriv --reuid=65534 --regid=65534 --clear-groups $ZL_PY"
    # Let nobody reach the socket file: only the group check is left.
    chmod o+x "$ZL_DIR" "$ZL_DIR/c1"
    chmod 0666 "$sock"
    out=$(timeout -k 5 "$(zl_scale 20)" $nobody_py "$ZL_DIR/raw.py" "$sock" \
        '{"v":1,"id":1,"cmd":"leave"}' '{"v":1,"id":2,"cmd":"status"}' 2>&1)
    chmod 0660 "$sock"
    chmod o-x "$ZL_DIR" "$ZL_DIR/c1"
    [ "$(code_of "$(sed -n 1p <<<"$out")")" = forbidden ] ||
        { zl_fail "leave as nobody: $(sed -n 1p <<<"$out")"; return 1; }
    [ "$(code_of "$(sed -n 2p <<<"$out")")" = forbidden ] ||
        { zl_fail "status as nobody: $(sed -n 2p <<<"$out")"; return 1; }
    zl_note "nobody: $(zl_py 'print(d["error"]["message"])' <<<"$(sed -n 1p <<<"$out")")"
    zl_running c1 || { zl_fail "c1 exited: the refused leave was obeyed"; return 1; }
    zl_ctl c1 status >/dev/null || { zl_fail "c1 no longer answers root"; return 1; }
}

t_zpfctl_usage() {
    local out rc
    out=$(zl_ctl c1 frobnicate 2>&1)
    rc=$?
    [ "$rc" -eq 2 ] || { zl_fail "unknown command: exit $rc, not 2: $out"; return 1; }
    out=$("$ZPFCTL" -s "$(zl_sock c1)" -t soon status 2>&1)
    rc=$?
    [ "$rc" -eq 2 ] || { zl_fail "-t soon: exit $rc, not 2: $out"; return 1; }
    out=$(zl_ctl c1 keys install 'c2VjcmV0' 2>&1)
    rc=$?
    [ "$rc" -eq 2 ] || { zl_fail "a short key: exit $rc, not 2: $out"; return 1; }
    grep -q 'c2VjcmV0' <<<"$out" && { zl_fail "the bad key is echoed: $out"; return 1; }
    out=$(zl_ctl c1 members --state sleepy 2>&1)
    rc=$?
    [ "$rc" -eq 2 ] || { zl_fail "members --state sleepy: exit $rc, not 2: $out"; return 1; }
    return 0
}

# c2 sees c1's tags as the JSON object WANT.
c2_sees_tags() { # want-json
    local got
    got=$(zl_ctl c2 --json members | zl_py 'print(json.dumps([m["tags"] for m in d if m["name"] == "c1"][0], sort_keys=True))' 2>&1)
    ZL_SEEN="c2 sees c1's tags as $got"
    [ "$got" = "$1" ]
}

t_hup_tags_level() {
    local log
    log=$(zl_agent_log c1)
    zl_conf c2 "127.0.0.1:$((ZL_PORT + 1))" --join "$C1_ADDR" --key "$KEY" || return 1
    zl_start c2 || return 1
    zl_wait 20 "c1 and c2 to see each other" zl_converged 2 c1 c2 || return 1
    zl_wait 10 "c2 to see c1's first tags" c2_sees_tags '{"role": "web"}' || return 1

    zl_conf c1 "$C1_ADDR" --key "$KEY" --tags '{role: db, rack: r7}' \
        --log-level debug || return 1
    kill -HUP "$(zl_pid c1)"
    zl_wait 10 "c2 to see c1's new tags" \
        c2_sees_tags '{"rack": "r7", "role": "db"}' || return 1
    zl_note "c2 saw the new tags $(zl_secs "$ZL_WAITED_MS")s after SIGHUP"
    zl_wait 5 "c1 to log its new level" \
        grep -q 'msg="log level" level=debug' "$log" || return 1
    grep -q 'take effect only after a restart' "$log" &&
        { zl_fail "a live change was reported as needing a restart: $(grep 'need a restart' "$log")"; return 1; }
    zl_running c1 || { zl_fail "c1 exited on SIGHUP"; return 1; }
}

t_hup_fixed_key() {
    local log addr
    log=$(zl_agent_log c1)
    zl_conf c1 "127.0.0.1:$((ZL_PORT + 2))" --key "$KEY" \
        --tags '{role: db, rack: r7}' --log-level debug || return 1
    kill -HUP "$(zl_pid c1)"
    zl_wait 5 "c1 to log that gossip.bind needs a restart" \
        grep -q 'take effect only after a restart.*gossip\.bind' "$log" || return 1
    zl_note "$(grep 'need a restart' "$log" | tail -n 1 | sed 's/^ts=[^ ]* //')"
    addr=$(zl_ctl c1 --json status | zl_py 'print(d["addr"])')
    [ "$addr" = "$C1_ADDR" ] ||
        { zl_fail "c1's address changed without a restart: $addr"; return 1; }
    zl_converged 2 c1 c2 || { zl_fail "after the reload: $ZL_SEEN"; return 1; }
}

t_survived() {
    local n
    zl_running c1 || { zl_fail "c1 is gone"; return 1; }
    zl_ctl c1 status >/dev/null || { zl_fail "c1 does not answer"; return 1; }
    n=$(zl_metric c1 zpf_control_requests_total) ||
        { zl_fail "no zpf_control_requests_total in c1's metrics"; return 1; }
    zl_note "c1 answered $n control requests"
    [ "$n" -gt 1000 ] || { zl_fail "only $n requests counted"; return 1; }
    zl_stop c1 || return 1
    [ "$ZL_RC" -eq 0 ] || { zl_fail "c1 exited $ZL_RC after SIGTERM"; return 1; }
}

zl_run start t_start
if zl_passed start; then
    zl_run protocol_errors t_protocol_errors
    zl_run unknown_command t_unknown_command
    zl_run line_too_long t_line_too_long
    zl_run flooding_client t_flooding_client
    zl_run silent_clients t_silent_clients
    zl_run missing_socket t_missing_socket
    zl_run socket_mode t_socket_mode
    zl_run not_in_group t_not_in_group
    zl_run zpfctl_usage t_zpfctl_usage
    zl_run hup_tags_level t_hup_tags_level
    zl_run hup_fixed_key t_hup_fixed_key
    zl_run survived t_survived
else
    zl_not_run protocol_errors unknown_command line_too_long flooding_client \
        silent_clients missing_socket socket_mode not_in_group zpfctl_usage \
        hup_tags_level hup_fixed_key survived "c1 did not start"
fi
zl_summary
