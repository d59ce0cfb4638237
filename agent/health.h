/*
 * Local health checks, run on the agent's libuv loop.
 *
 * A node's heartbeat counter advances only while its local health checks
 * pass, so these checks decide whether the rest of the cluster sees this
 * node's work as alive.  Three kinds:
 *
 *   ZPF_CHECK_COMMAND  run argv (PATH is searched); passes on exit status 0.
 *                      stdin is /dev/null; stdout and stderr share one pipe
 *                      whose first ZPF_HEALTH_OUTPUT_MAX bytes become the
 *                      reason on failure, the rest is read and discarded so
 *                      the command never blocks on a full pipe.  The command
 *                      runs in a session and process group of its own, and
 *                      when it exits, times out or is stopped the whole group
 *                      gets SIGKILL: a check leaves no process behind.
 *   ZPF_CHECK_TCP      target "host:port" ("[v6addr]:port" for IPv6
 *                      literals); resolves host, tries each address in turn;
 *                      passes once one connection is established.
 *   ZPF_CHECK_HTTP     target "http://host[:port][/path]" (no https, no user
 *                      info); sends
 *                        GET /path HTTP/1.1
 *                        Host: host[:port]          (port only if not 80)
 *                        Connection: close
 *                        User-Agent: zpf-health
 *                      and passes on a status of 200..399.  Only the status
 *                      line is read (1xx interim responses are skipped), from
 *                      at most ZPF_HEALTH_HEAD_MAX bytes.
 *
 * Nothing here blocks the loop: processes through uv_spawn, names through
 * uv_getaddrinfo (the threadpool), sockets through uv_tcp.
 *
 * Schedule.  Every check runs once as soon as the loop runs after
 * zpf_health_start(), then every interval_ms.  The second run, and so every
 * later one, is delayed by a fixed fraction of the interval derived from the
 * check's name (a hash, the same on every run), so that the checks of one
 * agent do not all fire in the same millisecond.  Each run has its own
 * timeout_ms, covering name resolution, connection and answer; a timed-out
 * run fails with "timed out after N ms".  A check never overlaps itself: a
 * tick that finds the previous run still going (or still being torn down,
 * e.g. a name lookup stuck in the resolver) is skipped and counted.
 *
 * Aggregate.  The node is healthy iff the latest result of every check
 * passed.  With no checks it is always healthy.  A check that has not yet
 * produced a result counts as passing: the agent must not stall its counter
 * at boot, and be declared stalled by the cluster, only because a check with
 * a long interval has not run yet; the first run comes immediately anyway,
 * so a broken node is seen within one timeout.  The callback is called only
 * when the aggregate changes.
 *
 * Bad targets.  A target that does not parse (missing port, https, garbage)
 * does not make zpf_health_start() fail: the check fails on every run with a
 * reason saying what is wrong, because the config module is the place that
 * rejects bad files and a check must never take the agent down.  A command
 * that cannot be run (missing executable, no permission) fails likewise,
 * with "cannot run <argv0>: <why>".
 *
 * Threads: everything runs on the loop's thread; no function here may be
 * called from another thread.
 */
#ifndef ZPF_AGENT_HEALTH_H
#define ZPF_AGENT_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Bytes of a failing command's output kept in its reason. */
#define ZPF_HEALTH_OUTPUT_MAX 256

/* Most bytes read from an HTTP server before its status line must have
 * been seen: a status line is tens of bytes, 4 KiB also covers a few 1xx
 * interim heads, and a server sending more without a line end is broken. */
#define ZPF_HEALTH_HEAD_MAX 4096

/* Longest reason, NUL included: "exit status 255: " plus the kept output,
 * or a 253-byte host name in a resolver error, with room to spare. */
#define ZPF_HEALTH_REASON_MAX 384

/* Longest check name, without the NUL.  Names go into logs, control
 * replies and perhaps gossip metadata, where short is cheap. */
#define ZPF_HEALTH_NAME_MAX 64

/* Most checks per agent; far more than a host runs, it bounds what one
 * tick of the schedule can cost. */
#define ZPF_HEALTH_CHECKS_MAX 1024

/* Most elements in a command's argv, NULL excluded. */
#define ZPF_HEALTH_ARGV_MAX 256

/* Longest target ("host:port" or URL), without the NUL. */
#define ZPF_HEALTH_TARGET_MAX 2048

enum zpf_check_kind {
    ZPF_CHECK_COMMAND,
    ZPF_CHECK_TCP,
    ZPF_CHECK_HTTP
};

/* One check, as configured.  zpf_health_start() copies everything. */
struct zpf_check_spec {
    const char *name;      /* unique, 1..ZPF_HEALTH_NAME_MAX bytes */
    enum zpf_check_kind kind;
    char *const *argv;     /* COMMAND: NULL-terminated, argv[0] non-empty;
                              ignored otherwise */
    const char *target;    /* TCP: "host:port"; HTTP: URL; ignored for
                              COMMAND.  Parsed at start; see "Bad targets" */
    uint32_t interval_ms;  /* > 0 */
    uint32_t timeout_ms;   /* > 0; above interval_ms, ticks get skipped */
};

/* A snapshot of one check, from zpf_health_get(). */
struct zpf_check_status {
    const char *name;
    bool passing;          /* latest result; true before the first */
    bool ran;              /* at least one result so far */
    uint64_t last_run_ms;  /* uv_now() when the latest finished run began */
    uint32_t last_duration_ms;
    uint64_t runs;         /* finished runs */
    uint64_t failures;     /* of which failed */
    uint64_t skipped;      /* ticks skipped because a run was still going */
    const char *reason;    /* why the latest run failed, or what it saw when
                              it passed ("exit status 0", "HTTP status 200");
                              "" before the first result */
};

struct zpf_health;

/*
 * Called on the loop when the aggregate changes.
 *   healthy  the new aggregate.
 *   check    false: the check whose failure made the node unhealthy;
 *            true: the check whose success made it healthy again.
 *   reason   false: that check's reason; true: "all checks passing".
 * Strings are valid during the call only.  The callback may call
 * zpf_health_ok(), zpf_health_get() and zpf_health_stop().
 */
typedef void (*zpf_health_cb)(void *ctx, bool healthy, const char *check,
                              const char *reason);

/*
 * Start running `n` checks on `loop`.  specs (may be NULL when n == 0) and
 * everything it points to are copied.  cb (may be NULL) is called with ctx
 * on changes of the aggregate, never from within this call: the first runs
 * start once the loop runs.
 *
 * Returns 0 and sets *out, or:
 *   ZPF_EINVAL  NULL loop or out; NULL specs with n > 0; a spec with no
 *               name, an unknown kind, a zero interval or timeout, a command
 *               with no argv[0] (or an empty one), a TCP or HTTP check with
 *               a NULL target
 *   ZPF_E2BIG   n over ZPF_HEALTH_CHECKS_MAX, a name over
 *               ZPF_HEALTH_NAME_MAX, argv over ZPF_HEALTH_ARGV_MAX elements,
 *               a target over ZPF_HEALTH_TARGET_MAX
 *   ZPF_EEXIST  two checks with the same name
 *   ZPF_ENOMEM  out of memory
 *   or a libuv error code (negative errno) if a timer cannot be set up.
 * On failure *out is NULL and nothing is left running (handles already set
 * up are closed by the loop, which frees them).
 */
int zpf_health_start(uv_loop_t *loop, const struct zpf_check_spec *specs,
                     size_t n, zpf_health_cb cb, void *ctx,
                     struct zpf_health **out);

/* The aggregate: true iff no check's latest result failed.  NULL: false. */
bool zpf_health_ok(const struct zpf_health *h);

/* Number of checks (0 for NULL). */
size_t zpf_health_count(const struct zpf_health *h);

/*
 * Snapshot of check i (0 .. count-1, in the order of the specs).  out->name
 * is valid until zpf_health_stop() completes; out->reason until control
 * returns to the loop.  Returns 0, ZPF_EINVAL for NULL h or out, ZPF_ENOENT
 * for i out of range.
 */
int zpf_health_get(const struct zpf_health *h, size_t i,
                   struct zpf_check_status *out);

/*
 * Stop all checks: no more runs, no more callbacks; running commands' process
 * groups get SIGKILL, lookups are cancelled, sockets and timers closed.
 * Once every handle is closed (and every killed process reaped, and every
 * lookup returned) h is freed and done(arg) is called from the loop; done
 * may be NULL.  h must not be used after this call.  The loop must keep
 * running until done has been called; after that the loop holds nothing of
 * ours and uv_loop_close() succeeds.  NULL h: nothing happens (done is not
 * called).  Calling it twice on one h is a use after free.
 */
void zpf_health_stop(struct zpf_health *h, void (*done)(void *arg), void *arg);

/*
 * Internal, shared with tests: the target and status-line parsers, pure
 * functions of their input.
 */
#define ZPF__HEALTH_HOST_MAX 253   /* a DNS name's limit */
#define ZPF__HEALTH_PATH_MAX 1024  /* path and query of an HTTP target */

struct zpf__health_target {
    char host[ZPF__HEALTH_HOST_MAX + 1]; /* without brackets */
    bool bracketed;                      /* host was an [IPv6] literal */
    uint16_t port;
    bool port_given;                     /* explicit ":port" */
    char path[ZPF__HEALTH_PATH_MAX + 1]; /* HTTP only, starts with '/' */
};

/* Parse "host:port" (TCP).  Returns 0, or ZPF_EINVAL with a sentence in err
 * (errcap bytes, always NUL-terminated when errcap > 0). */
int zpf__health_parse_hostport(const char *s, struct zpf__health_target *t,
                               char *err, size_t errcap);

/* Parse "http://host[:port][/path][?query][#fragment]" (the fragment is
 * dropped).  Returns 0, or ZPF_EINVAL with a sentence in err. */
int zpf__health_parse_url(const char *s, struct zpf__health_target *t,
                          char *err, size_t errcap);

/* The final status code, 200..599, in the first len bytes an HTTP server
 * sent (1xx interim heads are skipped); 0 if more bytes are needed to tell;
 * ZPF_EINVAL if the bytes are not an HTTP/1.x status line. */
int zpf__health_http_status(const char *buf, size_t len);

#endif
