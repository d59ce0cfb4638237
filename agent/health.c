/*
 * Local health checks on the libuv loop.
 *
 * Each check owns two timers: `tick` fires every interval and starts a run,
 * `deadline` bounds the run.  A run is a heap object holding whatever the
 * kind needs (a process and its output pipe; a lookup and a socket) and is
 * separate from its check because it may outlive its result: a timed-out
 * run still has a process to reap or a lookup the resolver will not give
 * back early.  The result is recorded when it is known (finish()); the run
 * is freed only when its last handle is closed and its lookup has returned
 * (run->refs reaches zero).  Until then check->run stays set and ticks are
 * skipped, so a check never has two runs alive, and a resolver that hangs
 * holds at most one threadpool thread per check.
 *
 * Commands run with UV_PROCESS_DETACHED, which makes the child a session and
 * process group leader (setsid), so kill(-pid, SIGKILL) reaches everything
 * the command started.  The process handle is closed only in the exit
 * callback, after libuv has reaped the child: closing it earlier would leave
 * a zombie.  The group is killed when the leader exits too, both to leave
 * nothing behind and because a straggler holding the output pipe would keep
 * the run waiting for EOF until its timeout.
 *
 * Teardown is idempotent (finish() and zpf_health_stop() may both ask for
 * it, and the callback run from finish() may call zpf_health_stop()), and
 * nothing is freed on the call stack that requested it: memory goes away in
 * close callbacks (or in the lookup's callback, after every handle of the
 * run is closed).  The health object counts what is still open in
 * h->pending (its timers and its live runs) and frees itself, then calls
 * done(), when a stopped object reaches zero.
 */
#include "health.h"

#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zpf/error.h"

/* The jitter is a fraction k / JITTER_STEPS of the interval, k from the
 * name's hash: fine enough that 1 s intervals spread by the millisecond. */
#define JITTER_STEPS 1024

/* A command's output is read a page at a time; past the bytes kept, it is
 * discarded. */
#define READ_CHUNK 4096

/* Bytes of a malformed status line quoted in the reason: enough to tell
 * HTML from TLS from a banner, short enough to keep the reason readable. */
#define GARBAGE_QUOTE 48

/* "[" host "]:" port */
#define WHERE_MAX (ZPF__HEALTH_HOST_MAX + 9)

static const char HEALTHY_REASON[] = "all checks passing";

struct run;

struct check {
    struct zpf_health *h;
    char *name;
    enum zpf_check_kind kind;
    char **argv;                     /* COMMAND */
    struct zpf__health_target target;/* TCP, HTTP */
    char where[WHERE_MAX + 1];       /* host:port, for reasons */
    char target_err[ZPF_HEALTH_REASON_MAX]; /* non-empty: target is bad */
    char *request;                   /* HTTP */
    size_t request_len;
    uint32_t interval_ms, timeout_ms, jitter_ms;
    uv_timer_t tick;
    uv_timer_t deadline;
    struct run *run;                 /* alive, running or tearing down */

    bool passing, ran;
    uint64_t last_run_ms;
    uint32_t last_duration_ms;
    uint64_t runs, failures, skipped;
    char reason[ZPF_HEALTH_REASON_MAX];
};

struct zpf_health {
    uv_loop_t *loop;
    zpf_health_cb cb;
    void *ctx;
    bool healthy;                    /* as last reported */
    bool stopping;
    size_t pending;                  /* open timers + live runs */
    void (*done)(void *arg);
    void *done_arg;
    /* A handle of our own, so that done() comes from a close callback, on
     * the loop, even when there are no checks. */
    uv_timer_t anchor;
    size_t n;
    struct check checks[];
};

struct run {
    struct check *c;
    uint64_t start_ms;
    bool finished;                   /* result recorded, or abandoned */
    int refs;                        /* open handles + pending lookup */

    /* COMMAND */
    uv_process_t proc;
    bool proc_open, exited, eof;
    int pid;
    int64_t exit_status;
    int term_signal;
    uv_pipe_t out;
    bool out_open;
    char output[ZPF_HEALTH_OUTPUT_MAX];
    size_t output_len;

    /* TCP, HTTP */
    uv_getaddrinfo_t gai;
    bool gai_pending;
    struct addrinfo *ai, *ai_next;
    int last_err;
    uv_tcp_t tcp;
    bool tcp_open;
    uv_connect_t conn;
    uv_write_t wr;

    /* Command output chunk, or the HTTP head so far. */
    char buf[READ_CHUNK > ZPF_HEALTH_HEAD_MAX ? READ_CHUNK
                                              : ZPF_HEALTH_HEAD_MAX];
    size_t len;
};

/* ---- parsers ---------------------------------------------------------- */

static int fail(char *err, size_t errcap, const char *msg)
{
    if (err != NULL && errcap > 0)
        snprintf(err, errcap, "%s", msg);
    return ZPF_EINVAL;
}

static bool is_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_';
}

/* host[:port] or [v6]:port in s[0..n).  Error texts never echo the input:
 * a URL may carry a credential. */
static int parse_authority(const char *s, size_t n, bool need_port,
                           struct zpf__health_target *t, char *err,
                           size_t errcap)
{
    const char *host, *rest;
    size_t hlen;
    memset(t, 0, sizeof *t);
    if (n == 0)
        return fail(err, errcap, "no host");
    if (s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (rb == NULL)
            return fail(err, errcap, "'[' without ']' around an IPv6 address");
        host = s + 1;
        hlen = (size_t)(rb - host);
        bool colon = false;
        for (size_t i = 0; i < hlen; i++) {
            if (host[i] == ':')
                colon = true;
            else if (!is_name_char(host[i]) && host[i] != '%')
                return fail(err, errcap, "bad character in IPv6 address");
        }
        if (!colon)
            return fail(err, errcap, "brackets hold something other than "
                                     "an IPv6 address");
        t->bracketed = true;
        rest = rb + 1;
    } else {
        const char *colon = memchr(s, ':', n);
        hlen = colon ? (size_t)(colon - s) : n;
        if (colon && memchr(colon + 1, ':', n - hlen - 1))
            return fail(err, errcap, "an IPv6 address needs brackets, "
                                     "as in [::1]:80");
        host = s;
        for (size_t i = 0; i < hlen; i++)
            if (!is_name_char(host[i]))
                return fail(err, errcap, "bad character in host name");
        rest = s + hlen;
    }
    if (hlen == 0)
        return fail(err, errcap, "no host");
    if (hlen > ZPF__HEALTH_HOST_MAX)
        return fail(err, errcap, "host name longer than 253 bytes");
    memcpy(t->host, host, hlen);
    t->host[hlen] = '\0';

    size_t rlen = n - (size_t)(rest - s);
    if (rlen == 0) {
        if (need_port)
            return fail(err, errcap, "no port (expected host:port)");
        t->port = 80;
        return 0;
    }
    if (rest[0] != ':')
        return fail(err, errcap, "unexpected text after the host");
    if (rlen == 1)
        return fail(err, errcap, "empty port");
    unsigned long port = 0;
    for (size_t i = 1; i < rlen; i++) {
        if (rest[i] < '0' || rest[i] > '9')
            return fail(err, errcap, "port is not a number");
        port = port * 10 + (unsigned long)(rest[i] - '0');
        if (port > 65535)
            return fail(err, errcap, "port above 65535");
    }
    if (port == 0)
        return fail(err, errcap, "port 0");
    t->port = (uint16_t)port;
    t->port_given = true;
    return 0;
}

int zpf__health_parse_hostport(const char *s, struct zpf__health_target *t,
                               char *err, size_t errcap)
{
    if (err != NULL && errcap > 0)
        err[0] = '\0';
    if (s == NULL || t == NULL)
        return fail(err, errcap, "no target");
    return parse_authority(s, strlen(s), true, t, err, errcap);
}

int zpf__health_parse_url(const char *s, struct zpf__health_target *t,
                          char *err, size_t errcap)
{
    static const char SCHEME[] = "http://";
    const size_t slen = sizeof SCHEME - 1;
    if (err != NULL && errcap > 0)
        err[0] = '\0';
    if (s == NULL || t == NULL)
        return fail(err, errcap, "no URL");
    if (strncasecmp(s, "https://", 8) == 0)
        return fail(err, errcap, "https is not supported; use http:// or "
                                 "a command check");
    if (strncasecmp(s, SCHEME, slen) != 0)
        return fail(err, errcap, "URL does not start with http://");
    const char *a = s + slen;
    size_t alen = strcspn(a, "/?#");
    if (memchr(a, '@', alen) != NULL)
        return fail(err, errcap, "user info in the URL is not supported");
    int r = parse_authority(a, alen, false, t, err, errcap);
    if (r < 0)
        return r;

    const char *p = a + alen;
    size_t plen = strcspn(p, "#");
    size_t o = 0;
    if (plen == 0 || p[0] == '?')
        t->path[o++] = '/';
    if (o + plen > ZPF__HEALTH_PATH_MAX)
        return fail(err, errcap, "path longer than 1024 bytes");
    for (size_t i = 0; i < plen; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch <= ' ' || ch >= 0x7f)
            return fail(err, errcap, "space, control or non-ASCII byte in "
                                     "the path; percent-encode it");
        t->path[o++] = (char)ch;
    }
    t->path[o] = '\0';
    return 0;
}

/* The prefix every status line has: "HTTP/1.x NNN". */
#define STATUS_PREFIX_LEN 12

static bool status_prefix_ok(const char *s, size_t n)
{
    static const char PAT[STATUS_PREFIX_LEN + 1] = "HTTP/1.d ddd";
    for (size_t i = 0; i < n && i < STATUS_PREFIX_LEN; i++) {
        if (PAT[i] == 'd') {
            if (s[i] < '0' || s[i] > '9')
                return false;
        } else if (s[i] != PAT[i]) {
            return false;
        }
    }
    return true;
}

int zpf__health_http_status(const char *buf, size_t len)
{
    if (buf == NULL)
        return ZPF_EINVAL;
    size_t off = 0;
    for (;;) {
        const char *line = buf + off;
        size_t avail = len - off;
        const char *nl = memchr(line, '\n', avail);
        size_t llen = nl ? (size_t)(nl - line) : avail;
        if (!status_prefix_ok(line, llen))
            return ZPF_EINVAL;
        if (nl == NULL)
            return 0;
        if (llen > 0 && line[llen - 1] == '\r')
            llen--;
        if (llen < STATUS_PREFIX_LEN ||
            (llen > STATUS_PREFIX_LEN && line[STATUS_PREFIX_LEN] != ' '))
            return ZPF_EINVAL;
        int status = (line[9] - '0') * 100 + (line[10] - '0') * 10 +
                     (line[11] - '0');
        if (status < 100 || status > 599)
            return ZPF_EINVAL;
        if (status >= 200)
            return status;
        /* 1xx: an interim head; the final status line follows its empty
         * line. */
        size_t pos = (size_t)(nl - buf) + 1;
        for (;;) {
            const char *next = memchr(buf + pos, '\n', len - pos);
            if (next == NULL)
                return 0;
            size_t hl = (size_t)(next - (buf + pos));
            pos = (size_t)(next - buf) + 1;
            if (hl == 0 || (hl == 1 && buf[pos - 2] == '\r'))
                break;
        }
        off = pos;
    }
}

/* ---- results and the aggregate ---------------------------------------- */

/* Copy s into out (cap bytes) as one printable line: controls and non-ASCII
 * become '?', runs of whitespace one space, ends trimmed.  Reasons go into
 * logs and control replies; they must not carry a terminal escape or start
 * a new line. */
static void printable(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    bool space = false;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            space = o > 0;
            continue;
        }
        if (space) {
            if (o + 2 >= cap)
                break;
            out[o++] = ' ';
            space = false;
        }
        out[o++] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
    }
    if (cap > 0)
        out[o] = '\0';
}

static void update_aggregate(struct zpf_health *h, struct check *c)
{
    bool ok = zpf_health_ok(h);
    if (ok == h->healthy)
        return;
    h->healthy = ok;
    if (h->cb != NULL)
        h->cb(h->ctx, ok, c->name, ok ? HEALTHY_REASON : c->reason);
}

static void teardown(struct run *run);

/* Record the run's result (unless stopping) and start tearing it down.
 * Only the first call per run counts. */
static void finish(struct run *run, bool pass, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct run *run, bool pass, const char *fmt, ...)
{
    if (run->finished)
        return;
    run->finished = true;
    struct check *c = run->c;
    struct zpf_health *h = c->h;
    uv_timer_stop(&c->deadline);
    if (!h->stopping) {
        uint64_t now = uv_now(h->loop);
        uint64_t took = now > run->start_ms ? now - run->start_ms : 0;
        c->ran = true;
        c->passing = pass;
        c->runs++;
        if (!pass)
            c->failures++;
        c->last_run_ms = run->start_ms;
        c->last_duration_ms = took > UINT32_MAX ? UINT32_MAX : (uint32_t)took;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->reason, sizeof c->reason, fmt, ap);
        va_end(ap);
    }
    teardown(run);
    if (!h->stopping)
        update_aggregate(h, c);
}

/* ---- run lifetime ----------------------------------------------------- */

static void maybe_done(struct zpf_health *h)
{
    if (!h->stopping || h->pending > 0)
        return;
    void (*done)(void *) = h->done;
    void *arg = h->done_arg;
    for (size_t i = 0; i < h->n; i++) {
        struct check *c = &h->checks[i];
        free(c->name);
        if (c->argv != NULL)
            for (char **a = c->argv; *a != NULL; a++)
                free(*a);
        free(c->argv);
        free(c->request);
    }
    free(h);
    if (done != NULL)
        done(arg);
}

/* Free the run once nothing of it is open.  Called last by every entry point
 * (a libuv callback, or a tick) that may have dropped the last reference;
 * the run must not be touched afterwards. */
static void run_release(struct run *run)
{
    if (run->refs > 0)
        return;
    struct check *c = run->c;
    struct zpf_health *h = c->h;
    if (run->ai != NULL)
        uv_freeaddrinfo(run->ai);
    c->run = NULL;
    free(run);
    h->pending--;
    maybe_done(h);
}

static void connect_next(struct run *run);

static void run_close_cb(uv_handle_t *handle)
{
    struct run *run = handle->data;
    if (handle == (uv_handle_t *)&run->proc) {
        run->proc_open = false;
    } else if (handle == (uv_handle_t *)&run->out) {
        run->out_open = false;
    } else {
        run->tcp_open = false;
        /* A failed connection attempt: try the next address. */
        if (!run->finished) {
            run->refs--;
            connect_next(run);
            run_release(run);
            return;
        }
    }
    run->refs--;
    run_release(run);
}

static void close_run_handle(uv_handle_t *handle)
{
    if (!uv_is_closing(handle))
        uv_close(handle, run_close_cb);
}

/* SIGKILL to the command's process group.  The pid check is not
 * paranoia: kill(0) or kill(-1) would hit the agent itself or everything. */
static void kill_group(struct run *run)
{
    if (run->pid <= 1)
        return;
    if (kill(-run->pid, SIGKILL) != 0 && !run->exited)
        uv_process_kill(&run->proc, SIGKILL);
}

/* Stop whatever the run is doing.  Idempotent.  The process handle is left
 * open until its exit callback, so that the child is reaped. */
static void teardown(struct run *run)
{
    if (run->proc_open && !run->exited)
        kill_group(run);
    if (run->out_open)
        close_run_handle((uv_handle_t *)&run->out);
    if (run->gai_pending)
        uv_cancel((uv_req_t *)&run->gai);
    if (run->tcp_open)
        close_run_handle((uv_handle_t *)&run->tcp);
}

/* ---- command ---------------------------------------------------------- */

static void command_done(struct run *run)
{
    char out[ZPF_HEALTH_OUTPUT_MAX + 1];
    printable(out, sizeof out, run->output, run->output_len);
    const char *sep = out[0] ? ": " : "";
    bool pass = run->exit_status == 0 && run->term_signal == 0;
    if (run->term_signal != 0)
        finish(run, pass, "killed by signal %d%s%s", run->term_signal, sep,
               out);
    else
        finish(run, pass, "exit status %lld%s%s",
               (long long)run->exit_status, sep, out);
}

static void exit_cb(uv_process_t *proc, int64_t status, int term_signal)
{
    struct run *run = proc->data;
    run->exited = true;
    run->exit_status = status;
    run->term_signal = term_signal;
    /* Anything the command left running; ESRCH when nothing. */
    kill_group(run);
    close_run_handle((uv_handle_t *)&run->proc);
    if (!run->finished && run->eof)
        command_done(run);
}

static void out_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
    struct run *run = handle->data;
    (void)suggested;
    *b = uv_buf_init(run->buf, READ_CHUNK);
}

static void out_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    struct run *run = stream->data;
    if (nread > 0) {
        size_t room = sizeof run->output - run->output_len;
        size_t keep = (size_t)nread < room ? (size_t)nread : room;
        memcpy(run->output + run->output_len, b->base, keep);
        run->output_len += keep;
        return;
    }
    if (nread == 0)
        return;
    run->eof = true;
    close_run_handle((uv_handle_t *)&run->out);
    if (!run->finished && run->exited)
        command_done(run);
}

static void start_command(struct run *run)
{
    struct check *c = run->c;
    uv_loop_t *loop = c->h->loop;
    uv_file fds[2];
    int r = uv_pipe(fds, UV_NONBLOCK_PIPE, 0);
    if (r < 0) {
        finish(run, false, "cannot create a pipe: %s", uv_strerror(r));
        return;
    }
    r = uv_pipe_init(loop, &run->out, 0);
    if (r < 0) {
        close(fds[0]);
        close(fds[1]);
        finish(run, false, "cannot create a pipe: %s", uv_strerror(r));
        return;
    }
    run->out.data = run;
    run->out_open = true;
    run->refs++;
    r = uv_pipe_open(&run->out, fds[0]);
    if (r < 0) {
        close(fds[0]);
        close(fds[1]);
        finish(run, false, "cannot open a pipe: %s", uv_strerror(r));
        return;
    }

    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE; /* libuv gives the child /dev/null */
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = fds[1];
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = fds[1];
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.exit_cb = exit_cb;
    o.file = c->argv[0];
    o.args = c->argv;
    o.stdio = stdio;
    o.stdio_count = 3;
    o.flags = UV_PROCESS_DETACHED;
    r = uv_spawn(loop, &run->proc, &o);
    /* Only the child writes: our copy would hold EOF back forever. */
    close(fds[1]);
    run->proc.data = run;
    run->proc_open = true;
    run->refs++;
    if (r < 0) {
        run->exited = true; /* nothing to reap or kill */
        close_run_handle((uv_handle_t *)&run->proc);
        finish(run, false, "cannot run %s: %s", c->argv[0], uv_strerror(r));
        return;
    }
    run->pid = run->proc.pid;
    r = uv_read_start((uv_stream_t *)&run->out, out_alloc, out_read);
    if (r < 0)
        finish(run, false, "cannot read the output of %s: %s", c->argv[0],
               uv_strerror(r));
}

/* ---- tcp and http ----------------------------------------------------- */

static void head_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
    struct run *run = handle->data;
    (void)suggested;
    *b = uv_buf_init(run->buf + run->len,
                     (unsigned)(ZPF_HEALTH_HEAD_MAX - run->len));
}

static void head_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    struct run *run = stream->data;
    struct check *c = run->c;
    (void)b;
    if (run->finished || nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF && run->len == 0)
            finish(run, false, "%s closed the connection without answering",
                   c->where);
        else if (nread == UV_EOF)
            finish(run, false, "%s closed the connection within the status "
                   "line", c->where);
        else
            finish(run, false, "cannot read from %s: %s", c->where,
                   uv_strerror((int)nread));
        return;
    }
    run->len += (size_t)nread;
    int st = zpf__health_http_status(run->buf, run->len);
    if (st > 0) {
        finish(run, st >= 200 && st <= 399, "HTTP status %d", st);
    } else if (st < 0) {
        char q[GARBAGE_QUOTE + 1];
        printable(q, sizeof q, run->buf,
                  run->len < GARBAGE_QUOTE ? run->len : GARBAGE_QUOTE);
        finish(run, false, "%s did not answer with an HTTP/1.x status "
               "line: %s", c->where, q);
    } else if (run->len >= ZPF_HEALTH_HEAD_MAX) {
        finish(run, false, "no status line from %s in %d bytes", c->where,
               ZPF_HEALTH_HEAD_MAX);
    }
}

static void write_cb(uv_write_t *req, int status)
{
    struct run *run = req->data;
    if (run->finished || status >= 0)
        return;
    finish(run, false, "cannot send to %s: %s", run->c->where,
           uv_strerror(status));
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct run *run = req->data;
    struct check *c = run->c;
    if (run->finished)
        return;
    if (status < 0) {
        run->last_err = status;
        close_run_handle((uv_handle_t *)&run->tcp);
        return;
    }
    if (c->kind == ZPF_CHECK_TCP) {
        finish(run, true, "connected to %s", c->where);
        return;
    }
    uv_buf_t b = uv_buf_init(c->request, (unsigned)c->request_len);
    run->wr.data = run;
    int r = uv_write(&run->wr, (uv_stream_t *)&run->tcp, &b, 1, write_cb);
    if (r < 0) {
        finish(run, false, "cannot send to %s: %s", c->where, uv_strerror(r));
        return;
    }
    r = uv_read_start((uv_stream_t *)&run->tcp, head_alloc, head_read);
    if (r < 0)
        finish(run, false, "cannot read from %s: %s", c->where,
               uv_strerror(r));
}

/* Try the next resolved address; the tcp handle's close callback comes back
 * here after a failed attempt. */
static void connect_next(struct run *run)
{
    struct check *c = run->c;
    while (run->ai_next != NULL && run->ai_next->ai_family != AF_INET &&
           run->ai_next->ai_family != AF_INET6)
        run->ai_next = run->ai_next->ai_next;
    if (run->ai_next == NULL) {
        finish(run, false, "cannot connect to %s: %s", c->where,
               run->last_err ? uv_strerror(run->last_err)
                             : "no IPv4 or IPv6 address");
        return;
    }
    const struct addrinfo *ai = run->ai_next;
    run->ai_next = ai->ai_next;
    int r = uv_tcp_init(c->h->loop, &run->tcp);
    if (r < 0) {
        finish(run, false, "cannot create a socket: %s", uv_strerror(r));
        return;
    }
    run->tcp.data = run;
    run->tcp_open = true;
    run->refs++;
    run->conn.data = run;
    r = uv_tcp_connect(&run->conn, &run->tcp, ai->ai_addr, connect_cb);
    if (r < 0) {
        run->last_err = r;
        close_run_handle((uv_handle_t *)&run->tcp);
    }
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct run *run = req->data;
    struct check *c = run->c;
    run->gai_pending = false;
    run->refs--;
    if (run->finished) {
        uv_freeaddrinfo(res);
    } else if (status < 0) {
        finish(run, false, "cannot resolve %s: %s", c->target.host,
               uv_strerror(status));
    } else {
        run->ai = res;
        run->ai_next = res;
        connect_next(run);
    }
    run_release(run);
}

static void start_net(struct run *run)
{
    struct check *c = run->c;
    if (c->target_err[0] != '\0') {
        finish(run, false, "%s", c->target_err);
        return;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)c->target.port);
    run->gai.data = run;
    int r = uv_getaddrinfo(c->h->loop, &run->gai, gai_cb, c->target.host,
                           port, &hints);
    if (r < 0) {
        finish(run, false, "cannot resolve %s: %s", c->target.host,
               uv_strerror(r));
        return;
    }
    run->gai_pending = true;
    run->refs++;
}

/* ---- schedule --------------------------------------------------------- */

static void deadline_cb(uv_timer_t *t)
{
    struct check *c = t->data;
    struct run *run = c->run;
    if (run == NULL || run->finished || c->h->stopping)
        return;
    if (c->kind == ZPF_CHECK_COMMAND && run->exited) {
        /* It did exit; something it started and that escaped its process
         * group still holds the pipe open. */
        command_done(run);
        return;
    }
    finish(run, false, "timed out after %u ms", (unsigned)c->timeout_ms);
}

static void start_run(struct check *c)
{
    struct zpf_health *h = c->h;
    struct run *run = calloc(1, sizeof *run);
    if (run == NULL) {
        /* An agent that cannot allocate a few KiB is not healthy either. */
        c->ran = true;
        c->passing = false;
        c->runs++;
        c->failures++;
        c->last_run_ms = uv_now(h->loop);
        c->last_duration_ms = 0;
        snprintf(c->reason, sizeof c->reason, "out of memory");
        update_aggregate(h, c);
        return;
    }
    run->c = c;
    run->start_ms = uv_now(h->loop);
    c->run = run;
    h->pending++;
    uv_timer_start(&c->deadline, deadline_cb, c->timeout_ms, 0);
    if (c->kind == ZPF_CHECK_COMMAND)
        start_command(run);
    else
        start_net(run);
    run_release(run);
}

static void tick_cb(uv_timer_t *t)
{
    struct check *c = t->data;
    if (c->h->stopping)
        return;
    if (c->run != NULL) {
        c->skipped++;
        return;
    }
    start_run(c);
}

/* The first run comes at once; the schedule after it is shifted by the
 * check's jitter. */
static void first_tick_cb(uv_timer_t *t)
{
    struct check *c = t->data;
    uv_timer_start(&c->tick, tick_cb, (uint64_t)c->interval_ms + c->jitter_ms,
                   c->interval_ms);
    tick_cb(t);
}

/* FNV-1a: stable across runs and hosts, which is all the jitter needs. */
static uint32_t jitter_of(const char *name, uint32_t interval_ms)
{
    uint64_t x = 0xcbf29ce484222325u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        x ^= *p;
        x *= 0x100000001b3u;
    }
    return (uint32_t)((uint64_t)interval_ms * (x % JITTER_STEPS) /
                      JITTER_STEPS);
}

/* ---- public ----------------------------------------------------------- */

static int validate(const struct zpf_check_spec *specs, size_t n)
{
    if (n > ZPF_HEALTH_CHECKS_MAX)
        return ZPF_E2BIG;
    for (size_t i = 0; i < n; i++) {
        const struct zpf_check_spec *s = &specs[i];
        if (s->name == NULL || s->name[0] == '\0')
            return ZPF_EINVAL;
        if (strlen(s->name) > ZPF_HEALTH_NAME_MAX)
            return ZPF_E2BIG;
        if (s->interval_ms == 0 || s->timeout_ms == 0)
            return ZPF_EINVAL;
        switch (s->kind) {
        case ZPF_CHECK_COMMAND: {
            if (s->argv == NULL || s->argv[0] == NULL || s->argv[0][0] == '\0')
                return ZPF_EINVAL;
            size_t k = 0;
            while (s->argv[k] != NULL)
                if (++k > ZPF_HEALTH_ARGV_MAX)
                    return ZPF_E2BIG;
            break;
        }
        case ZPF_CHECK_TCP:
        case ZPF_CHECK_HTTP:
            if (s->target == NULL)
                return ZPF_EINVAL;
            if (strlen(s->target) > ZPF_HEALTH_TARGET_MAX)
                return ZPF_E2BIG;
            break;
        default:
            return ZPF_EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(specs[j].name, s->name) == 0)
                return ZPF_EEXIST;
    }
    return 0;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* Parse the target and build what every run reuses.  A bad target is kept
 * as target_err, reported by each run. */
static int prepare_target(struct check *c, const char *target)
{
    char err[ZPF_HEALTH_REASON_MAX / 2]; /* the parsers' sentences are short */
    struct zpf__health_target *t = &c->target;
    int r = c->kind == ZPF_CHECK_TCP
                ? zpf__health_parse_hostport(target, t, err, sizeof err)
                : zpf__health_parse_url(target, t, err, sizeof err);
    if (r < 0) {
        snprintf(c->target_err, sizeof c->target_err, "bad %s target: %s",
                 c->kind == ZPF_CHECK_TCP ? "tcp" : "http", err);
        return 0;
    }
    const char *lb = t->bracketed ? "[" : "", *rb = t->bracketed ? "]" : "";
    snprintf(c->where, sizeof c->where, "%s%s%s:%u", lb, t->host, rb,
             (unsigned)t->port);
    if (c->kind != ZPF_CHECK_HTTP)
        return 0;

    char port[8] = "";
    if (t->port != 80)
        snprintf(port, sizeof port, ":%u", (unsigned)t->port);
    static const char FMT[] = "GET %s HTTP/1.1\r\n"
                              "Host: %s%s%s%s\r\n"
                              "Connection: close\r\n"
                              "User-Agent: zpf-health\r\n"
                              "\r\n";
    int n = snprintf(NULL, 0, FMT, t->path, lb, t->host, rb, port);
    if (n < 0)
        return ZPF_EINVAL;
    c->request = malloc((size_t)n + 1);
    if (c->request == NULL)
        return ZPF_ENOMEM;
    snprintf(c->request, (size_t)n + 1, FMT, t->path, lb, t->host, rb, port);
    c->request_len = (size_t)n;
    return 0;
}

static int copy_spec(struct check *c, const struct zpf_check_spec *s)
{
    c->kind = s->kind;
    c->interval_ms = s->interval_ms;
    c->timeout_ms = s->timeout_ms;
    c->jitter_ms = jitter_of(s->name, s->interval_ms);
    c->name = dup_str(s->name);
    if (c->name == NULL)
        return ZPF_ENOMEM;
    if (c->kind != ZPF_CHECK_COMMAND)
        return prepare_target(c, s->target);
    size_t k = 0;
    while (s->argv[k] != NULL)
        k++;
    c->argv = calloc(k + 1, sizeof *c->argv);
    if (c->argv == NULL)
        return ZPF_ENOMEM;
    for (size_t i = 0; i < k; i++) {
        c->argv[i] = dup_str(s->argv[i]);
        if (c->argv[i] == NULL)
            return ZPF_ENOMEM;
    }
    return 0;
}

static void anchor_close_cb(uv_handle_t *handle)
{
    struct zpf_health *h = handle->data;
    h->pending--;
    maybe_done(h);
}

static void timer_close_cb(uv_handle_t *handle)
{
    struct check *c = handle->data;
    struct zpf_health *h = c->h;
    h->pending--;
    maybe_done(h);
}

int zpf_health_start(uv_loop_t *loop, const struct zpf_check_spec *specs,
                     size_t n, zpf_health_cb cb, void *ctx,
                     struct zpf_health **out)
{
    if (out == NULL)
        return ZPF_EINVAL;
    *out = NULL;
    if (loop == NULL || (specs == NULL && n > 0))
        return ZPF_EINVAL;
    int r = validate(specs, n);
    if (r < 0)
        return r;

    struct zpf_health *h = calloc(1, sizeof *h + n * sizeof h->checks[0]);
    if (h == NULL)
        return ZPF_ENOMEM;
    h->loop = loop;
    h->cb = cb;
    h->ctx = ctx;
    h->healthy = true;
    h->n = n;
    for (size_t i = 0; i < n; i++) {
        h->checks[i].h = h;
        r = copy_spec(&h->checks[i], &specs[i]);
        if (r < 0) {
            /* No handle exists yet, so this can be undone on the spot. */
            h->stopping = true;
            maybe_done(h);
            return r;
        }
    }

    /* Timers, counted in pending as they come up, so that a failure can
     * close exactly those. */
    r = uv_timer_init(loop, &h->anchor);
    if (r < 0) {
        h->stopping = true;
        maybe_done(h);
        return r;
    }
    h->anchor.data = h;
    h->pending = 1;
    for (size_t i = 0; i < n && r == 0; i++) {
        struct check *c = &h->checks[i];
        r = uv_timer_init(loop, &c->tick);
        if (r == 0) {
            c->tick.data = c;
            h->pending++;
            r = uv_timer_init(loop, &c->deadline);
        }
        if (r == 0) {
            c->deadline.data = c;
            h->pending++;
        }
    }
    if (r < 0) {
        h->stopping = true;
        uv_close((uv_handle_t *)&h->anchor, anchor_close_cb);
        size_t left = h->pending - 1;
        for (size_t i = 0; left > 0; i++) {
            uv_close((uv_handle_t *)&h->checks[i].tick, timer_close_cb);
            if (--left > 0) {
                uv_close((uv_handle_t *)&h->checks[i].deadline,
                         timer_close_cb);
                left--;
            }
        }
        return r;
    }
    for (size_t i = 0; i < n; i++)
        uv_timer_start(&h->checks[i].tick, first_tick_cb, 0, 0);
    *out = h;
    return 0;
}

bool zpf_health_ok(const struct zpf_health *h)
{
    if (h == NULL)
        return false;
    for (size_t i = 0; i < h->n; i++)
        if (h->checks[i].ran && !h->checks[i].passing)
            return false;
    return true;
}

size_t zpf_health_count(const struct zpf_health *h)
{
    return h == NULL ? 0 : h->n;
}

int zpf_health_get(const struct zpf_health *h, size_t i,
                   struct zpf_check_status *out)
{
    if (h == NULL || out == NULL)
        return ZPF_EINVAL;
    if (i >= h->n)
        return ZPF_ENOENT;
    const struct check *c = &h->checks[i];
    out->name = c->name;
    out->passing = !c->ran || c->passing;
    out->ran = c->ran;
    out->last_run_ms = c->last_run_ms;
    out->last_duration_ms = c->last_duration_ms;
    out->runs = c->runs;
    out->failures = c->failures;
    out->skipped = c->skipped;
    out->reason = c->reason;
    return 0;
}

void zpf_health_stop(struct zpf_health *h, void (*done)(void *arg), void *arg)
{
    if (h == NULL || h->stopping)
        return;
    h->stopping = true;
    h->done = done;
    h->done_arg = arg;
    for (size_t i = 0; i < h->n; i++) {
        struct check *c = &h->checks[i];
        uv_close((uv_handle_t *)&c->tick, timer_close_cb);
        uv_close((uv_handle_t *)&c->deadline, timer_close_cb);
        if (c->run != NULL) {
            c->run->finished = true;
            teardown(c->run);
        }
    }
    uv_close((uv_handle_t *)&h->anchor, anchor_close_cb);
}
