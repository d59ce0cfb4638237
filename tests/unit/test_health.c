/*
 * Tests for the local health checks (agent/health.c).
 *
 * Each test runs a real libuv loop, bounded in time: run_until() polls a
 * condition every few milliseconds and gives up after a deadline, so a
 * broken check fails the test instead of hanging it.  Commands are /bin/sh,
 * true, false and sleep; TCP and HTTP checks talk to a small uv server in
 * this file, on 127.0.0.1.  Every test ends by stopping the checks and
 * requiring uv_loop_close() == 0, which fails if any handle of ours is left
 * behind; the sanitizers catch leaks and use after free in the teardown.
 *
 * The parsers are tested directly, as pure functions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "health.h"
#include "zpf/error.h"

/* Upper bound for any single wait; far above what a passing test needs. */
#define WAIT_MS 5000

/* ---- a tiny HTTP/TCP server --------------------------------------------- */

enum srv_mode {
    SRV_200,        /* a normal 200 */
    SRV_301,
    SRV_404,
    SRV_500,
    SRV_INTERIM,    /* 100 Continue, 103 Early Hints, then 204 */
    SRV_GARBAGE,    /* an SSH banner */
    SRV_SILENT,     /* reads the request, never answers */
    SRV_CLOSE,      /* accepts and closes at once */
    SRV_PARTIAL,    /* half a status line, then closes */
    SRV_ENDLESS,    /* a status line with no end, longer than the head */
};

#define SRV_CONNS 32

struct conn;

struct srv {
    uv_tcp_t tcp;
    bool open;
    int port;
    enum srv_mode mode;
    int accepted;
    char req[2048];     /* the first request seen */
    size_t req_len;
    struct conn *conns[SRV_CONNS];
};

struct conn {
    uv_tcp_t tcp;
    struct srv *s;
    int slot;
    char buf[2048];
    size_t len;
    bool answered;
    uv_write_t wr;
    char *out;
};

static void conn_close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (c->s != NULL)
        c->s->conns[c->slot] = NULL;
    free(c->out);
    free(c);
}

static void conn_close(struct conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

static void conn_written(uv_write_t *req, int status)
{
    (void)status;
    conn_close(req->data);
}

static void conn_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    struct conn *c = h->data;
    (void)sz;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void conn_answer(struct conn *c)
{
    static const char *const answers[] = {
        [SRV_200] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        [SRV_301] = "HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\n\r\n",
        [SRV_404] = "HTTP/1.0 404 Not Found\r\n\r\n",
        [SRV_500] = "HTTP/1.1 500 Internal Server Error\r\n\r\n",
        [SRV_INTERIM] = "HTTP/1.1 100 Continue\r\n\r\n"
                        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                        "HTTP/1.1 204 No Content\r\n\r\n",
        [SRV_GARBAGE] = "SSH-2.0-OpenSSH_9.2p1 Debian\r\n",
        [SRV_PARTIAL] = "HTTP/1.1 2",
    };
    struct srv *s = c->s;
    if (s->mode == SRV_SILENT)
        return;
    size_t n;
    if (s->mode == SRV_ENDLESS) {
        n = 2 * ZPF_HEALTH_HEAD_MAX;
        c->out = malloc(n);
        assert_non_null(c->out);
        memset(c->out, 'x', n);
        memcpy(c->out, "HTTP/1.1 200 ", 13);
    } else {
        n = strlen(answers[s->mode]);
        c->out = malloc(n);
        assert_non_null(c->out);
        memcpy(c->out, answers[s->mode], n);
    }
    uv_buf_t b = uv_buf_init(c->out, (unsigned)n);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, conn_written) != 0)
        conn_close(c);
}

static bool has_blank_line(const char *s, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(s + i, "\r\n\r\n", 4) == 0)
            return true;
    return false;
}

static void conn_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = st->data;
    (void)b;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    if (c->answered || !has_blank_line(c->buf, c->len)) {
        if (c->len == sizeof c->buf)
            conn_close(c);
        return;
    }
    c->answered = true;
    if (c->s->req_len == 0) {
        memcpy(c->s->req, c->buf, c->len);
        c->s->req_len = c->len;
    }
    conn_answer(c);
}

static void srv_on_conn(uv_stream_t *server, int status)
{
    struct srv *s = server->data;
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->s = s;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    c->slot = -1;
    for (int i = 0; i < SRV_CONNS; i++)
        if (s->conns[i] == NULL) {
            c->slot = i;
            s->conns[i] = c;
            break;
        }
    if (c->slot < 0) { /* full: refuse politely */
        c->s = NULL;
        uv_accept(server, (uv_stream_t *)&c->tcp);
        conn_close(c);
        return;
    }
    assert_int_equal(uv_accept(server, (uv_stream_t *)&c->tcp), 0);
    s->accepted++;
    if (s->mode == SRV_CLOSE) {
        conn_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
}

static void srv_start(uv_loop_t *loop, struct srv *s, enum srv_mode mode)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_init(loop, &s->tcp), 0);
    s->tcp.data = s;
    s->open = true;
    assert_int_equal(uv_tcp_bind(&s->tcp, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->tcp, 16, srv_on_conn), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    assert_int_equal(uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss,
                                        &len), 0);
    s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void srv_stop(struct srv *s)
{
    if (!s->open)
        return;
    s->open = false;
    uv_close((uv_handle_t *)&s->tcp, NULL);
    for (int i = 0; i < SRV_CONNS; i++)
        if (s->conns[i] != NULL) {
            s->conns[i]->s = NULL;
            conn_close(s->conns[i]);
            s->conns[i] = NULL;
        }
}

/* ---- fixture ------------------------------------------------------------ */

#define EVENTS_MAX 16

struct event {
    bool healthy;
    char check[ZPF_HEALTH_NAME_MAX + 1];
    char reason[ZPF_HEALTH_REASON_MAX];
};

struct tctx {
    uv_loop_t loop;
    bool loop_closed;
    uv_timer_t poll;
    bool (*cond)(struct tctx *);
    uint64_t deadline;
    bool met;

    struct zpf_health *h;
    bool done;
    int done_calls;
    struct event ev[EVENTS_MAX];
    int nev;
    bool stop_in_cb;

    struct srv srv;
    char dir[64];
    char path[128];   /* dir/<something>, per test */
    char flag[128];   /* dir/flag */
    size_t wait_check;
    uint64_t wait_runs;
};

static void poll_cb(uv_timer_t *t)
{
    struct tctx *x = t->data;
    if (x->cond(x)) {
        x->met = true;
        uv_stop(&x->loop);
    } else if (uv_now(&x->loop) >= x->deadline) {
        uv_stop(&x->loop);
    }
}

/* Run the loop until cond holds or max_ms pass; whether it held. */
static bool run_until(struct tctx *x, bool (*cond)(struct tctx *),
                      uint64_t max_ms)
{
    if (cond(x))
        return true;
    x->cond = cond;
    x->met = false;
    uv_update_time(&x->loop);
    x->deadline = uv_now(&x->loop) + max_ms;
    uv_timer_start(&x->poll, poll_cb, 2, 2);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&x->poll);
    return x->met;
}

static void done_cb(void *arg)
{
    struct tctx *x = arg;
    x->done = true;
    x->done_calls++;
}

static void health_cb(void *ctx, bool healthy, const char *check,
                      const char *reason)
{
    struct tctx *x = ctx;
    assert_non_null(check);
    assert_non_null(reason);
    assert_true(x->nev < EVENTS_MAX);
    struct event *e = &x->ev[x->nev++];
    e->healthy = healthy;
    snprintf(e->check, sizeof e->check, "%s", check);
    snprintf(e->reason, sizeof e->reason, "%s", reason);
    /* The aggregate is already updated when the callback runs. */
    assert_int_equal(zpf_health_ok(x->h), healthy);
    if (x->stop_in_cb) {
        zpf_health_stop(x->h, done_cb, x);
        x->h = NULL;
    }
}

static bool is_done(struct tctx *x)
{
    return x->done;
}

static bool check_ran(struct tctx *x)
{
    struct zpf_check_status st;
    if (x->h == NULL || zpf_health_get(x->h, x->wait_check, &st) != 0)
        return false;
    return st.runs >= x->wait_runs;
}

/* Run until check i has at least `runs` results; its status. */
static struct zpf_check_status wait_runs(struct tctx *x, size_t i,
                                         uint64_t runs)
{
    x->wait_check = i;
    x->wait_runs = runs;
    assert_true(run_until(x, check_ran, WAIT_MS));
    struct zpf_check_status st;
    assert_int_equal(zpf_health_get(x->h, i, &st), 0);
    return st;
}

static void stop_and_close(struct tctx *x)
{
    if (x->h != NULL) {
        x->done = false;
        zpf_health_stop(x->h, done_cb, x);
        x->h = NULL;
        assert_false(x->done); /* from the loop, never from stop itself */
    }
    assert_true(run_until(x, is_done, WAIT_MS));
    assert_int_equal(x->done_calls, 1);
    srv_stop(&x->srv);
    if (!uv_is_closing((uv_handle_t *)&x->poll))
        uv_close((uv_handle_t *)&x->poll, NULL);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&x->loop), 0);
    x->loop_closed = true;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int setup(void **state)
{
    struct tctx *x = calloc(1, sizeof *x);
    if (x == NULL || uv_loop_init(&x->loop) != 0)
        return -1;
    uv_timer_init(&x->loop, &x->poll);
    x->poll.data = x;
    snprintf(x->dir, sizeof x->dir, "/tmp/zpf-test-health.XXXXXX");
    if (mkdtemp(x->dir) == NULL)
        return -1;
    snprintf(x->flag, sizeof x->flag, "%s/flag", x->dir);
    signal(SIGPIPE, SIG_IGN); /* as zpfd does */
    *state = x;
    return 0;
}

/* After a failed assertion the loop may still hold handles: stop what is
 * ours, close the rest, so that one failure does not cascade. */
static int teardown(void **state)
{
    struct tctx *x = *state;
    if (x->h != NULL && !x->loop_closed) {
        zpf_health_stop(x->h, done_cb, x);
        x->h = NULL;
        run_until(x, is_done, WAIT_MS);
    }
    if (!x->loop_closed && uv_loop_close(&x->loop) != 0) {
        srv_stop(&x->srv);
        uv_walk(&x->loop, walk_close, NULL);
        uv_run(&x->loop, UV_RUN_DEFAULT);
        uv_loop_close(&x->loop);
    }
    rm_tree(x->dir);
    free(x);
    return 0;
}

static struct zpf_check_spec cmd_spec(const char *name, char *const *argv,
                                      uint32_t interval, uint32_t timeout)
{
    struct zpf_check_spec s = {name, ZPF_CHECK_COMMAND, argv, NULL, interval,
                               timeout};
    return s;
}

static struct zpf_check_spec net_spec(const char *name,
                                      enum zpf_check_kind kind,
                                      const char *target, uint32_t interval,
                                      uint32_t timeout)
{
    struct zpf_check_spec s = {name, kind, NULL, target, interval, timeout};
    return s;
}

static void start(struct tctx *x, const struct zpf_check_spec *specs,
                  size_t n)
{
    assert_int_equal(zpf_health_start(&x->loop, specs, n, health_cb, x,
                                      &x->h), 0);
    assert_non_null(x->h);
}

/* The pid a test command wrote into path, or -1. */
static pid_t read_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long pid = -1;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = -1;
    fclose(f);
    return (pid_t)pid;
}

/* Gone, or a zombie waiting for a reaper that is not us (a grandchild is
 * reparented; in a container pid 1 may never reap it). */
static bool proc_gone(pid_t pid)
{
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return true;
    char p[64], buf[256];
    snprintf(p, sizeof p, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp != NULL && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

/* A grandchild is killed with its group but reaped by someone else: give
 * the signal a moment to land. */
static bool wait_gone(pid_t pid)
{
    for (int i = 0; i < 200 && !proc_gone(pid); i++)
        usleep(5000);
    return proc_gone(pid);
}

/* ---- start: argument checking ------------------------------------------- */

static void test_start_rejects_bad_specs(void **state)
{
    struct tctx *x = *state;
    char *argv_true[] = {"true", NULL};
    char *argv_none[] = {NULL};
    char *argv_empty[] = {"", NULL};
    static char *argv_long[ZPF_HEALTH_ARGV_MAX + 2];
    for (int i = 0; i < ZPF_HEALTH_ARGV_MAX + 1; i++)
        argv_long[i] = "x";
    char long_name[ZPF_HEALTH_NAME_MAX + 2];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    static char long_target[ZPF_HEALTH_TARGET_MAX + 2];
    memset(long_target, 'h', sizeof long_target - 1);

    struct {
        struct zpf_check_spec s;
        int want;
    } cases[] = {
        {cmd_spec(NULL, argv_true, 100, 100), ZPF_EINVAL},
        {cmd_spec("", argv_true, 100, 100), ZPF_EINVAL},
        {cmd_spec(long_name, argv_true, 100, 100), ZPF_E2BIG},
        {cmd_spec("a", argv_true, 0, 100), ZPF_EINVAL},
        {cmd_spec("a", argv_true, 100, 0), ZPF_EINVAL},
        {cmd_spec("a", NULL, 100, 100), ZPF_EINVAL},
        {cmd_spec("a", argv_none, 100, 100), ZPF_EINVAL},
        {cmd_spec("a", argv_empty, 100, 100), ZPF_EINVAL},
        {cmd_spec("a", argv_long, 100, 100), ZPF_E2BIG},
        {net_spec("a", ZPF_CHECK_TCP, NULL, 100, 100), ZPF_EINVAL},
        {net_spec("a", ZPF_CHECK_HTTP, NULL, 100, 100), ZPF_EINVAL},
        {net_spec("a", ZPF_CHECK_HTTP, long_target, 100, 100), ZPF_E2BIG},
        {net_spec("a", (enum zpf_check_kind)42, "h:1", 100, 100),
         ZPF_EINVAL},
    };
    struct zpf_health *h = (struct zpf_health *)1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        h = (struct zpf_health *)1;
        assert_int_equal(zpf_health_start(&x->loop, &cases[i].s, 1, NULL,
                                          NULL, &h), cases[i].want);
        assert_null(h);
    }
    /* The one bad spec may come after good ones. */
    struct zpf_check_spec two[2] = {cmd_spec("a", argv_true, 100, 100),
                                    cmd_spec("b", argv_none, 100, 100)};
    assert_int_equal(zpf_health_start(&x->loop, two, 2, NULL, NULL, &h),
                     ZPF_EINVAL);
    two[1] = cmd_spec("a", argv_true, 100, 100);
    assert_int_equal(zpf_health_start(&x->loop, two, 2, NULL, NULL, &h),
                     ZPF_EEXIST);
    assert_null(h);
    assert_int_equal(zpf_health_start(&x->loop, two,
                                      ZPF_HEALTH_CHECKS_MAX + 1, NULL, NULL,
                                      &h), ZPF_E2BIG);
    assert_int_equal(zpf_health_start(NULL, two, 1, NULL, NULL, &h),
                     ZPF_EINVAL);
    assert_int_equal(zpf_health_start(&x->loop, NULL, 1, NULL, NULL, &h),
                     ZPF_EINVAL);
    assert_int_equal(zpf_health_start(&x->loop, two, 1, NULL, NULL, NULL),
                     ZPF_EINVAL);
    /* Nothing was left on the loop by any of these. */
    uv_close((uv_handle_t *)&x->poll, NULL);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&x->loop), 0);
    x->loop_closed = true;
}

static void test_null_handles(void **state)
{
    (void)state;
    struct zpf_check_status st;
    assert_false(zpf_health_ok(NULL));
    assert_int_equal(zpf_health_count(NULL), 0);
    assert_int_equal(zpf_health_get(NULL, 0, &st), ZPF_EINVAL);
    zpf_health_stop(NULL, NULL, NULL);
}

static void test_no_checks(void **state)
{
    struct tctx *x = *state;
    start(x, NULL, 0);
    assert_true(zpf_health_ok(x->h));
    assert_int_equal(zpf_health_count(x->h), 0);
    struct zpf_check_status st;
    assert_int_equal(zpf_health_get(x->h, 0, &st), ZPF_ENOENT);
    assert_int_equal(zpf_health_get(x->h, 0, NULL), ZPF_EINVAL);
    stop_and_close(x);
    assert_int_equal(x->nev, 0);
}

/* ---- commands ----------------------------------------------------------- */

static void test_command_true_passes(void **state)
{
    struct tctx *x = *state;
    char *argv[] = {"true", NULL};
    struct zpf_check_spec s = cmd_spec("ok", argv, 1000, 2000);
    start(x, &s, 1);

    struct zpf_check_status st;
    assert_int_equal(zpf_health_get(x->h, 0, &st), 0);
    assert_string_equal(st.name, "ok");
    assert_false(st.ran);
    assert_true(st.passing); /* before the first result */
    assert_string_equal(st.reason, "");
    assert_int_equal(st.runs, 0);

    st = wait_runs(x, 0, 1);
    assert_true(st.ran);
    assert_true(st.passing);
    assert_int_equal(st.failures, 0);
    assert_string_equal(st.reason, "exit status 0");
    assert_true(zpf_health_ok(x->h));
    assert_int_equal(x->nev, 0); /* healthy all along: no change */
    stop_and_close(x);
}

static void test_command_false_fails(void **state)
{
    struct tctx *x = *state;
    char *argv[] = {"false", NULL};
    struct zpf_check_spec s = cmd_spec("bad", argv, 1000, 2000);
    start(x, &s, 1);
    struct zpf_check_status st = wait_runs(x, 0, 1);
    assert_false(st.passing);
    assert_int_equal(st.failures, 1);
    assert_string_equal(st.reason, "exit status 1");
    assert_false(zpf_health_ok(x->h));
    assert_int_equal(x->nev, 1);
    assert_false(x->ev[0].healthy);
    assert_string_equal(x->ev[0].check, "bad");
    assert_string_equal(x->ev[0].reason, "exit status 1");
    stop_and_close(x);
    assert_int_equal(x->nev, 1);
}

static void test_command_output_in_reason(void **state)
{
    struct tctx *x = *state;
    char *argv[] = {"/bin/sh", "-c",
                    "echo 'disk  full'; echo '\033[31mred\tline' >&2; exit 3",
                    NULL};
    struct zpf_check_spec s = cmd_spec("out", argv, 1000, 2000);
    start(x, &s, 1);
    struct zpf_check_status st = wait_runs(x, 0, 1);
    assert_false(st.passing);
    /* Whitespace runs fold to one space; control bytes become '?'. */
    assert_string_equal(st.reason, "exit status 3: disk full ?[31mred line");
    stop_and_close(x);
}

static void test_command_long_output_drained(void **state)
{
    struct tctx *x = *state;
    /* 200 KB, far more than a pipe holds: if the rest were not drained,
     * the command would block and time out. */
    char *argv[] = {"/bin/sh", "-c",
                    "i=0; while [ $i -lt 2000 ]; do "
                    "echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; "
                    "i=$((i+1)); done; exit 2",
                    NULL};
    struct zpf_check_spec s = cmd_spec("long", argv, 1000, 4000);
    start(x, &s, 1);
    struct zpf_check_status st = wait_runs(x, 0, 1);
    assert_false(st.passing);
    assert_memory_equal(st.reason, "exit status 2: xxx", 18);
    /* 256 bytes kept, each newline among them now a space. */
    assert_int_equal(strlen(st.reason),
                     strlen("exit status 2: ") + ZPF_HEALTH_OUTPUT_MAX);
    assert_null(strstr(st.reason, "timed out"));
    stop_and_close(x);
}

static void test_command_timeout_kills(void **state)
{
    struct tctx *x = *state;
    snprintf(x->path, sizeof x->path, "%s/pid", x->dir);
    char gpath[160];
    snprintf(gpath, sizeof gpath, "%s/gpid", x->dir);
    /* The shell records its pid, starts a grandchild that records its own,
     * then becomes sleep: both must be gone after the timeout. */
    char *argv[] = {"/bin/sh", "-c",
                    "echo $$ > \"$0\"; sleep 5 & echo $! > \"$1\"; "
                    "exec sleep 5",
                    x->path, gpath, NULL};
    struct zpf_check_spec s = cmd_spec("slow", argv, 10000, 200);
    start(x, &s, 1);
    struct zpf_check_status st = wait_runs(x, 0, 1);
    assert_false(st.passing);
    assert_string_equal(st.reason, "timed out after 200 ms");
    assert_true(st.last_duration_ms >= 200 && st.last_duration_ms < 2000);
    assert_int_equal(x->nev, 1);
    pid_t pid = read_pid(x->path), gpid = read_pid(gpath);
    assert_true(pid > 1);
    assert_true(gpid > 1);
    stop_and_close(x); /* returns once the child has been reaped */
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(errno, ESRCH);
    assert_true(wait_gone(gpid));
}

static void test_command_leaves_no_stragglers(void **state)
{
    struct tctx *x = *state;
    snprintf(x->path, sizeof x->path, "%s/gpid", x->dir);
    /* Exits 0 at once, leaving a background sleep that holds the pipe. */
    char *argv[] = {"/bin/sh", "-c", "sleep 5 & echo $! > \"$0\"; exit 0",
                    x->path, NULL};
    struct zpf_check_spec s = cmd_spec("bg", argv, 10000, 3000);
    start(x, &s, 1);
    struct zpf_check_status st = wait_runs(x, 0, 1);
    assert_true(st.passing);
    assert_string_equal(st.reason, "exit status 0");
    assert_true(st.last_duration_ms < 2000); /* not held until timeout */
    pid_t gpid = read_pid(x->path);
    assert_true(gpid > 1);
    stop_and_close(x);
    assert_true(wait_gone(gpid));
}

static void test_command_missing_executable(void **state)
{
    struct tctx *x = *state;
    char *argv1[] = {"/nonexistent/zpf-no-such-command", NULL};
    char *argv2[] = {"zpf-no-such-command-on-path", "arg", NULL};
    snprintf(x->path, sizeof x->path, "%s/noexec", x->dir);
    int fd = open(x->path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "#!/bin/sh\n", 10), 10);
    close(fd);
    char *argv3[] = {x->path, NULL};
    struct zpf_check_spec s[3] = {cmd_spec("abs", argv1, 1000, 1000),
                                  cmd_spec("path", argv2, 1000, 1000),
                                  cmd_spec("noexec", argv3, 1000, 1000)};
    start(x, s, 3);
    struct zpf_check_status st = wait_runs(x, 0, 1);
    assert_false(st.passing);
    assert_string_equal(st.reason, "cannot run /nonexistent/"
                                   "zpf-no-such-command: no such file or "
                                   "directory");
    st = wait_runs(x, 1, 1);
    assert_string_equal(st.reason, "cannot run zpf-no-such-command-on-path: "
                                   "no such file or directory");
    st = wait_runs(x, 2, 1);
    char want[256];
    snprintf(want, sizeof want, "cannot run %s: permission denied", x->path);
    assert_string_equal(st.reason, want);
    assert_int_equal(x->nev, 1); /* the first failure only */
    stop_and_close(x);
}

static void test_command_killed_by_signal(void **state)
{
    struct tctx *x = *state;
    char *argv[] = {"/bin/sh", "-c", "kill -TERM $$", NULL};
    struct zpf_check_spec s = cmd_spec("sig", argv, 1000, 2000);
    start(x, &s, 1);
    struct zpf_check_status st = wait_runs(x, 0, 1);
    assert_false(st.passing);
    assert_string_equal(st.reason, "killed by signal 15");
    stop_and_close(x);
}

/* ---- schedule and aggregate --------------------------------------------- */

static bool saw_two_events(struct tctx *x)
{
    return x->nev >= 2;
}

static bool saw_three_events(struct tctx *x)
{
    return x->nev >= 3;
}

static void test_aggregate_on_change_only(void **state)
{
    struct tctx *x = *state;
    char *argv_flag[] = {"test", "-e", x->flag, NULL};
    char *argv_true[] = {"true", NULL};
    struct zpf_check_spec s[2] = {cmd_spec("flag", argv_flag, 20, 1000),
                                  cmd_spec("always", argv_true, 20, 1000)};
    start(x, s, 2);
    assert_true(zpf_health_ok(x->h)); /* nothing has run yet */

    /* Fails, and keeps failing: one event. */
    wait_runs(x, 0, 4);
    assert_int_equal(x->nev, 1);
    assert_false(x->ev[0].healthy);
    assert_string_equal(x->ev[0].check, "flag");
    assert_string_equal(x->ev[0].reason, "exit status 1");

    /* Recovers: one event, and no more while it stays up. */
    int fd = open(x->flag, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_true(run_until(x, saw_two_events, WAIT_MS));
    assert_true(x->ev[1].healthy);
    assert_string_equal(x->ev[1].check, "flag");
    assert_string_equal(x->ev[1].reason, "all checks passing");
    struct zpf_check_status st;
    assert_int_equal(zpf_health_get(x->h, 0, &st), 0);
    wait_runs(x, 0, st.runs + 4);
    assert_int_equal(x->nev, 2);
    assert_true(zpf_health_ok(x->h));

    /* Fails again. */
    unlink(x->flag);
    assert_true(run_until(x, saw_three_events, WAIT_MS));
    assert_false(x->ev[2].healthy);
    assert_int_equal(zpf_health_get(x->h, 1, &st), 0);
    assert_true(st.passing);
    assert_int_equal(st.failures, 0);
    stop_and_close(x);
    assert_int_equal(x->nev, 3);
}

static void test_overlapping_runs_skipped(void **state)
{
    struct tctx *x = *state;
    char *argv[] = {"sleep", "0.3", NULL};
    struct zpf_check_spec s = cmd_spec("slow", argv, 40, 2000);
    start(x, &s, 1);
    struct zpf_check_status st = wait_runs(x, 0, 1);
    assert_int_equal(st.runs, 1);
    assert_true(st.passing);
    /* Ticks at 40 + jitter, then every 40 ms, during a 300 ms run. */
    assert_true(st.skipped >= 3);
    assert_int_equal(st.failures, 0);
    stop_and_close(x);
}

static void test_schedule_interval(void **state)
{
    struct tctx *x = *state;
    char *argv[] = {"true", NULL};
    struct zpf_check_spec s = cmd_spec("tick", argv, 100, 1000);
    start(x, &s, 1);
    struct zpf_check_status a = wait_runs(x, 0, 1);
    struct zpf_check_status b = wait_runs(x, 0, 2);
    struct zpf_check_status c = wait_runs(x, 0, 3);
    /* First run at once, the second one interval plus the jitter (under
     * one interval) later, then one interval apart. */
    uint64_t d1 = b.last_run_ms - a.last_run_ms;
    uint64_t d2 = c.last_run_ms - b.last_run_ms;
    assert_true(d1 >= 100 && d1 < 200 + 50);
    assert_true(d2 >= 100 && d2 < 100 + 80);
    assert_int_equal(c.skipped, 0);
    stop_and_close(x);
}

static void test_stop_while_command_runs(void **state)
{
    struct tctx *x = *state;
    snprintf(x->path, sizeof x->path, "%s/pid", x->dir);
    char *argv[] = {"/bin/sh", "-c", "echo $$ > \"$0\"; exec sleep 10",
                    x->path, NULL};
    struct zpf_check_spec s = cmd_spec("busy", argv, 10000, 20000);
    start(x, &s, 1);
    pid_t pid = -1;
    for (int i = 0; i < WAIT_MS / 10 && pid <= 1; i++) {
        uv_run(&x->loop, UV_RUN_NOWAIT);
        usleep(10000);
        pid = read_pid(x->path);
    }
    assert_true(pid > 1);
    assert_int_equal(kill(pid, 0), 0);
    stop_and_close(x);
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(errno, ESRCH);
    assert_int_equal(x->nev, 0); /* no result, no callback after stop */
}

static void test_stop_from_callback(void **state)
{
    struct tctx *x = *state;
    char *argv_false[] = {"false", NULL};
    char *argv_sleep[] = {"sleep", "10", NULL};
    struct zpf_check_spec s[2] = {cmd_spec("f", argv_false, 1000, 1000),
                                  cmd_spec("s", argv_sleep, 1000, 20000)};
    x->stop_in_cb = true;
    start(x, s, 2);
    assert_true(run_until(x, is_done, WAIT_MS));
    assert_int_equal(x->nev, 1);
    assert_null(x->h);
    stop_and_close(x);
}

static void test_stop_before_first_run(void **state)
{
    struct tctx *x = *state;
    char *argv[] = {"true", NULL};
    struct zpf_check_spec s[2] = {
        cmd_spec("c", argv, 1000, 1000),
        net_spec("t", ZPF_CHECK_TCP, "localhost:9", 1000, 1000)};
    start(x, s, 2);
    stop_and_close(x);
    assert_int_equal(x->nev, 0);
}

static void test_stop_during_lookup(void **state)
{
    struct tctx *x = *state;
    struct zpf_check_spec s =
        net_spec("t", ZPF_CHECK_HTTP, "http://localhost:9/", 1000, 1000);
    start(x, &s, 1);
    /* One turn of the loop: the first tick has fired, so the lookup is in
     * the threadpool (or has just come back). */
    uv_run(&x->loop, UV_RUN_NOWAIT);
    stop_and_close(x);
    assert_int_equal(x->nev, 0);
}

/* ---- tcp ---------------------------------------------------------------- */

static void test_tcp_passes(void **state)
{
    struct tctx *x = *state;
    srv_start(&x->loop, &x->srv, SRV_CLOSE);
    char t1[64], t2[64];
    snprintf(t1, sizeof t1, "127.0.0.1:%d", x->srv.port);
    /* localhost may resolve to ::1 first, where nothing listens: the check
     * must go on to 127.0.0.1. */
    snprintf(t2, sizeof t2, "localhost:%d", x->srv.port);
    struct zpf_check_spec s[2] = {
        net_spec("ip", ZPF_CHECK_TCP, t1, 1000, 2000),
        net_spec("name", ZPF_CHECK_TCP, t2, 1000, 2000)};
    start(x, s, 2);
    struct zpf_check_status st = wait_runs(x, 0, 1);
    assert_true(st.passing);
    char want[96];
    snprintf(want, sizeof want, "connected to 127.0.0.1:%d", x->srv.port);
    assert_string_equal(st.reason, want);
    st = wait_runs(x, 1, 1);
    assert_true(st.passing);
    assert_int_equal(x->nev, 0);
    assert_true(x->srv.accepted >= 2);
    stop_and_close(x);
}

static void test_tcp_closed_port_fails(void **state)
{
    struct tctx *x = *state;
    /* A port that was just free: bind, read it, close. */
    srv_start(&x->loop, &x->srv, SRV_CLOSE);
    int port = x->srv.port;
    srv_stop(&x->srv);
    uv_run(&x->loop, UV_RUN_NOWAIT);
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%d", port);
    struct zpf_check_spec s = net_spec("closed", ZPF_CHECK_TCP, t, 1000, 2000);
    start(x, &s, 1);
    struct zpf_check_status st = wait_runs(x, 0, 1);
    assert_false(st.passing);
    char want[96];
    snprintf(want, sizeof want, "cannot connect to 127.0.0.1:%d: "
             "connection refused", port);
    assert_string_equal(st.reason, want);
    assert_int_equal(x->nev, 1);
    stop_and_close(x);
}

static void test_bad_targets_fail_cleanly(void **state)
{
    struct tctx *x = *state;
    struct zpf_check_spec s[4] = {
        net_spec("noport", ZPF_CHECK_TCP, "127.0.0.1", 1000, 1000),
        net_spec("https", ZPF_CHECK_HTTP, "https://example.com/", 1000, 1000),
        net_spec("junk", ZPF_CHECK_TCP, "\x01\xff:80", 1000, 1000),
        net_spec("creds", ZPF_CHECK_HTTP, "http://u:secret@h/", 1000, 1000)};
    start(x, s, 4);
    struct zpf_check_status st = wait_runs(x, 0, 1);
    assert_false(st.passing);
    assert_string_equal(st.reason, "bad tcp target: no port "
                                   "(expected host:port)");
    st = wait_runs(x, 1, 1);
    assert_string_equal(st.reason, "bad http target: https is not "
                                   "supported; use http:// or a command "
                                   "check");
    st = wait_runs(x, 2, 1);
    assert_string_equal(st.reason, "bad tcp target: bad character in host "
                                   "name");
    st = wait_runs(x, 3, 1);
    assert_null(strstr(st.reason, "secret"));
    assert_string_equal(st.reason, "bad http target: user info in the URL "
                                   "is not supported");
    stop_and_close(x);
}

/* ---- http --------------------------------------------------------------- */

/* One HTTP check against the test server in `mode`; its status. */
static struct zpf_check_status http_once(struct tctx *x, enum srv_mode mode,
                                         uint32_t timeout)
{
    srv_start(&x->loop, &x->srv, mode);
    snprintf(x->path, sizeof x->path, "http://127.0.0.1:%d/health?x=1#frag",
             x->srv.port);
    struct zpf_check_spec s =
        net_spec("web", ZPF_CHECK_HTTP, x->path, 10000, timeout);
    start(x, &s, 1);
    return wait_runs(x, 0, 1);
}

static void test_http_200(void **state)
{
    struct tctx *x = *state;
    struct zpf_check_status st = http_once(x, SRV_200, 2000);
    assert_true(st.passing);
    assert_string_equal(st.reason, "HTTP status 200");
    char want[256];
    snprintf(want, sizeof want,
             "GET /health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
             "Connection: close\r\nUser-Agent: zpf-health\r\n\r\n",
             x->srv.port);
    assert_int_equal(x->srv.req_len, strlen(want));
    assert_memory_equal(x->srv.req, want, strlen(want));
    assert_int_equal(x->nev, 0);
    stop_and_close(x);
}

static void test_http_301_passes(void **state)
{
    struct tctx *x = *state;
    struct zpf_check_status st = http_once(x, SRV_301, 2000);
    assert_true(st.passing);
    assert_string_equal(st.reason, "HTTP status 301");
    stop_and_close(x);
}

static void test_http_interim_then_204(void **state)
{
    struct tctx *x = *state;
    struct zpf_check_status st = http_once(x, SRV_INTERIM, 2000);
    assert_true(st.passing);
    assert_string_equal(st.reason, "HTTP status 204");
    stop_and_close(x);
}

static void test_http_404_fails(void **state)
{
    struct tctx *x = *state;
    struct zpf_check_status st = http_once(x, SRV_404, 2000);
    assert_false(st.passing);
    assert_string_equal(st.reason, "HTTP status 404");
    stop_and_close(x);
}

static void test_http_500_fails(void **state)
{
    struct tctx *x = *state;
    struct zpf_check_status st = http_once(x, SRV_500, 2000);
    assert_false(st.passing);
    assert_string_equal(st.reason, "HTTP status 500");
    assert_int_equal(x->nev, 1);
    assert_string_equal(x->ev[0].reason, "HTTP status 500");
    stop_and_close(x);
}

static void test_http_garbage_fails(void **state)
{
    struct tctx *x = *state;
    struct zpf_check_status st = http_once(x, SRV_GARBAGE, 2000);
    assert_false(st.passing);
    char want[160];
    snprintf(want, sizeof want, "127.0.0.1:%d did not answer with an "
             "HTTP/1.x status line: SSH-2.0-OpenSSH_9.2p1 Debian",
             x->srv.port);
    assert_string_equal(st.reason, want);
    stop_and_close(x);
}

static void test_http_silent_times_out(void **state)
{
    struct tctx *x = *state;
    struct zpf_check_status st = http_once(x, SRV_SILENT, 150);
    assert_false(st.passing);
    assert_string_equal(st.reason, "timed out after 150 ms");
    assert_true(x->srv.req_len > 0); /* it did get the request */
    stop_and_close(x);
}

static void test_http_closed_early_fails(void **state)
{
    struct tctx *x = *state;
    struct zpf_check_status st = http_once(x, SRV_CLOSE, 2000);
    assert_false(st.passing);
    char want[160];
    snprintf(want, sizeof want, "127.0.0.1:%d closed the connection without "
             "answering", x->srv.port);
    /* The close may also surface as a reset while sending. */
    if (strcmp(st.reason, want) != 0)
        assert_non_null(strstr(st.reason, "cannot "));
    stop_and_close(x);
}

static void test_http_partial_status_fails(void **state)
{
    struct tctx *x = *state;
    struct zpf_check_status st = http_once(x, SRV_PARTIAL, 2000);
    assert_false(st.passing);
    char want[160];
    snprintf(want, sizeof want, "127.0.0.1:%d closed the connection within "
             "the status line", x->srv.port);
    assert_string_equal(st.reason, want);
    stop_and_close(x);
}

static void test_http_endless_status_fails(void **state)
{
    struct tctx *x = *state;
    struct zpf_check_status st = http_once(x, SRV_ENDLESS, 2000);
    assert_false(st.passing);
    char want[160];
    snprintf(want, sizeof want, "no status line from 127.0.0.1:%d in %d "
             "bytes", x->srv.port, ZPF_HEALTH_HEAD_MAX);
    assert_string_equal(st.reason, want);
    stop_and_close(x);
}

/* ---- parsers ------------------------------------------------------------ */

static void test_parse_hostport(void **state)
{
    (void)state;
    struct zpf__health_target t;
    char err[128];
    static const struct {
        const char *in, *host;
        int port;
        bool br;
    } good[] = {
        {"127.0.0.1:80", "127.0.0.1", 80, false},
        {"localhost:65535", "localhost", 65535, false},
        {"a-b.c_d:1", "a-b.c_d", 1, false},
        {"[::1]:8080", "::1", 8080, true},
        {"[fe80::1%eth0]:7", "fe80::1%eth0", 7, true},
        {"h:00080", "h", 80, false},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(zpf__health_parse_hostport(good[i].in, &t, err,
                                                    sizeof err), 0);
        assert_string_equal(t.host, good[i].host);
        assert_int_equal(t.port, good[i].port);
        assert_int_equal(t.bracketed, good[i].br);
        assert_true(t.port_given);
        assert_string_equal(err, "");
    }
    static const struct {
        const char *in, *err;
    } bad[] = {
        {"", "no host"},
        {":80", "no host"},
        {"host", "no port (expected host:port)"},
        {"host:", "empty port"},
        {"host:0", "port 0"},
        {"host:65536", "port above 65535"},
        {"host:99999999999999999999", "port above 65535"},
        {"host:8x", "port is not a number"},
        {"host:+80", "port is not a number"},
        {"host:-1", "port is not a number"},
        {"::1:80", "an IPv6 address needs brackets, as in [::1]:80"},
        {"[::1]", "no port (expected host:port)"},
        {"[::1]80", "unexpected text after the host"},
        {"[::1:80", "'[' without ']' around an IPv6 address"},
        {"[]:80", "brackets hold something other than an IPv6 address"},
        {"[abc]:80", "brackets hold something other than an IPv6 address"},
        {"[::1 ]:80", "bad character in IPv6 address"},
        {"ho st:80", "bad character in host name"},
        {"h\n:80", "bad character in host name"},
        {"h/x:80", "bad character in host name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(zpf__health_parse_hostport(bad[i].in, &t, err,
                                                    sizeof err), ZPF_EINVAL);
        assert_string_equal(err, bad[i].err);
    }
    /* The DNS limit on names. */
    char name[300];
    memset(name, 'a', ZPF__HEALTH_HOST_MAX);
    strcpy(name + ZPF__HEALTH_HOST_MAX, ":1");
    assert_int_equal(zpf__health_parse_hostport(name, &t, err, sizeof err), 0);
    memset(name, 'a', ZPF__HEALTH_HOST_MAX + 1);
    strcpy(name + ZPF__HEALTH_HOST_MAX + 1, ":1");
    assert_int_equal(zpf__health_parse_hostport(name, &t, err, sizeof err),
                     ZPF_EINVAL);
    assert_string_equal(err, "host name longer than 253 bytes");
    /* NULLs and no room for the sentence. */
    assert_int_equal(zpf__health_parse_hostport(NULL, &t, err, sizeof err),
                     ZPF_EINVAL);
    assert_int_equal(zpf__health_parse_hostport("h:1", NULL, err, sizeof err),
                     ZPF_EINVAL);
    assert_int_equal(zpf__health_parse_hostport("h", &t, NULL, 0),
                     ZPF_EINVAL);
    err[0] = 'x';
    assert_int_equal(zpf__health_parse_hostport("h", &t, err, 1), ZPF_EINVAL);
    assert_int_equal(err[0], '\0');
}

static void test_parse_url(void **state)
{
    (void)state;
    struct zpf__health_target t;
    char err[128];
    static const struct {
        const char *in, *host, *path;
        int port;
        bool given;
    } good[] = {
        {"http://h", "h", "/", 80, false},
        {"http://h/", "h", "/", 80, false},
        {"HTTP://H.example/", "H.example", "/", 80, false},
        {"http://h:8080/a/b?c=d&e#frag", "h", "/a/b?c=d&e", 8080, true},
        {"http://h?x=1", "h", "/?x=1", 80, false},
        {"http://h#f", "h", "/", 80, false},
        {"http://h:80/%20x", "h", "/%20x", 80, true},
        {"http://[::1]:81/x", "::1", "/x", 81, true},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(zpf__health_parse_url(good[i].in, &t, err,
                                               sizeof err), 0);
        assert_string_equal(t.host, good[i].host);
        assert_string_equal(t.path, good[i].path);
        assert_int_equal(t.port, good[i].port);
        assert_int_equal(t.port_given, good[i].given);
    }
    static const struct {
        const char *in, *err;
    } bad[] = {
        {"", "URL does not start with http://"},
        {"ftp://h/", "URL does not start with http://"},
        {"http:/h/", "URL does not start with http://"},
        {"h:80/", "URL does not start with http://"},
        {"https://h/", "https is not supported; use http:// or a command "
                       "check"},
        {"http://", "no host"},
        {"http:///x", "no host"},
        {"http://u:p@h/", "user info in the URL is not supported"},
        {"http://h:/", "empty port"},
        {"http://h:http/", "port is not a number"},
        {"http://h/a b", "space, control or non-ASCII byte in the path; "
                         "percent-encode it"},
        {"http://h/\x80", "space, control or non-ASCII byte in the path; "
                          "percent-encode it"},
        {"http://h/a\r\nX-Injected: 1", "space, control or non-ASCII byte "
                                        "in the path; percent-encode it"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(zpf__health_parse_url(bad[i].in, &t, err,
                                               sizeof err), ZPF_EINVAL);
        assert_string_equal(err, bad[i].err);
    }
    /* Path bound: 1024 bytes fit, 1025 do not. */
    char url[1200];
    int n = snprintf(url, sizeof url, "http://h/");
    memset(url + n, 'p', ZPF__HEALTH_PATH_MAX - 1);
    url[n + ZPF__HEALTH_PATH_MAX - 1] = '\0';
    assert_int_equal(zpf__health_parse_url(url, &t, err, sizeof err), 0);
    assert_int_equal(strlen(t.path), ZPF__HEALTH_PATH_MAX);
    strcat(url, "p");
    assert_int_equal(zpf__health_parse_url(url, &t, err, sizeof err),
                     ZPF_EINVAL);
    assert_string_equal(err, "path longer than 1024 bytes");
    assert_int_equal(zpf__health_parse_url(NULL, &t, err, sizeof err),
                     ZPF_EINVAL);
}

static void test_http_status_parser(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int want;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\n", 200},
        {"HTTP/1.0 404 Not Found\n", 404},
        {"HTTP/1.1 204\r\n", 204},
        {"HTTP/1.1 599 x\r\n", 599},
        {"", 0},
        {"H", 0},
        {"HTTP/1.1 20", 0},
        {"HTTP/1.1 200 OK", 0},
        {"HTTP/1.1 100 Continue\r\n", 0},
        {"HTTP/1.1 100 Continue\r\n\r\n", 0},
        {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", 200},
        {"HTTP/1.1 100 Continue\n\nHTTP/1.1 302 Found\n", 302},
        {"HTTP/1.1 103 Early\r\nLink: <a>\r\n\r\nHTTP/1.1 500 E\r\n", 500},
        {"X", ZPF_EINVAL},
        {"http/1.1 200 OK\r\n", ZPF_EINVAL},
        {"HTTP/2 200\r\n", ZPF_EINVAL},
        {"HTTP/1.1 2000\r\n", ZPF_EINVAL},
        {"HTTP/1.1 20a OK\r\n", ZPF_EINVAL},
        {"HTTP/1.1 099 x\r\n", ZPF_EINVAL},
        {"HTTP/1.1 600 x\r\n", ZPF_EINVAL},
        {"HTTP/1.1 20\r\n", ZPF_EINVAL},
        {"HTTP/1.1 200\tOK\r\n", ZPF_EINVAL},
        {"HTTP/1.1  200 OK\r\n", ZPF_EINVAL},
        {"HTTP/1.1 100 Continue\r\n\r\nSSH-2.0\r\n", ZPF_EINVAL},
        {"SSH-2.0-OpenSSH\r\n", ZPF_EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(zpf__health_http_status(cases[i].in,
                                                 strlen(cases[i].in)),
                         cases[i].want);
    assert_int_equal(zpf__health_http_status(NULL, 0), ZPF_EINVAL);
    /* len is honoured: the bytes after it are not looked at. */
    assert_int_equal(zpf__health_http_status("HTTP/1.1 200 OK\r\n", 10), 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_start_rejects_bad_specs),
        cmocka_unit_test(test_null_handles),
        T(test_no_checks),
        T(test_command_true_passes),
        T(test_command_false_fails),
        T(test_command_output_in_reason),
        T(test_command_long_output_drained),
        T(test_command_timeout_kills),
        T(test_command_leaves_no_stragglers),
        T(test_command_missing_executable),
        T(test_command_killed_by_signal),
        T(test_aggregate_on_change_only),
        T(test_overlapping_runs_skipped),
        T(test_schedule_interval),
        T(test_stop_while_command_runs),
        T(test_stop_from_callback),
        T(test_stop_before_first_run),
        T(test_stop_during_lookup),
        T(test_tcp_passes),
        T(test_tcp_closed_port_fails),
        T(test_bad_targets_fail_cleanly),
        T(test_http_200),
        T(test_http_301_passes),
        T(test_http_interim_then_204),
        T(test_http_404_fails),
        T(test_http_500_fails),
        T(test_http_garbage_fails),
        T(test_http_silent_times_out),
        T(test_http_closed_early_fails),
        T(test_http_partial_status_fails),
        T(test_http_endless_status_fails),
        cmocka_unit_test(test_parse_hostport),
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_http_status_parser),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
