/*
 * Tests for the control socket (agent/control.c).
 *
 * The parser and reply builders are checked as pure functions.  The server
 * is checked over a real UNIX socket in a mkdtemp() directory: the test
 * owns the uv loop and drives it with UV_RUN_NOWAIT while its clients use
 * nonblocking sockets in the same thread, so every exchange is bounded by
 * an explicit deadline (IO_DEADLINE_MS) instead of hanging.  The blocking
 * client, zpf_ctl_call(), runs in a thread while the test drives the loop.
 * The permission tests fork a child that drops to uid/gid 65534; they need
 * root and skip otherwise.
 */
#define _GNU_SOURCE /* nftw */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "control.h"

/* Longest any single exchange may take before the test fails. */
#define IO_DEADLINE_MS 5000
/* The uid and gid the permission tests drop to ("nobody"/"nogroup"). */
#define NOBODY 65534

/* --- fixture -------------------------------------------------------------- */

struct fx {
    char dir[64];
    char path[128];
    uv_loop_t loop;
    struct zpf_ctl_server *srv;
    struct zpf_ctl_options opt;
    int done_calls;
    int nlog;
    char log[16][256];
};

static int h_status(void *ctx, const struct zpf_ctl_peer *peer, json_t *args,
                    json_t **result, char *err, size_t errlen)
{
    (void)ctx; (void)args; (void)err; (void)errlen;
    *result = json_pack("{s:s, s:s, s:I}", "name", "node-a", "health",
                        "passing", "uid", (json_int_t)peer->uid);
    return 0;
}

static int h_echo(void *ctx, const struct zpf_ctl_peer *peer, json_t *args,
                  json_t **result, char *err, size_t errlen)
{
    (void)ctx; (void)peer; (void)err; (void)errlen;
    *result = json_incref(args);
    return 0;
}

/* args.err picks the failure. */
static int h_fail(void *ctx, const struct zpf_ctl_peer *peer, json_t *args,
                  json_t **result, char *err, size_t errlen)
{
    (void)ctx; (void)peer; (void)result;
    const char *what = json_string_value(json_object_get(args, "err"));
    if (what == NULL)
        what = "";
    if (strcmp(what, "busy") == 0) {
        snprintf(err, errlen, "key 0badc0de is the primary; use another "
                 "key first");
        return ZPF_EBUSY;
    }
    if (strcmp(what, "inval") == 0) {
        snprintf(err, errlen, "\"id\" must be 8 hex digits");
        return ZPF_EINVAL;
    }
    if (strcmp(what, "odd") == 0) {
        snprintf(err, errlen, "something odd");
        return ZPF_EMSGPACK;
    }
    return ZPF_ENOENT; /* no message: zpf_strerror() fills it */
}

static int h_admin(void *ctx, const struct zpf_ctl_peer *peer, json_t *args,
                   json_t **result, char *err, size_t errlen)
{
    (void)ctx; (void)peer; (void)args; (void)err; (void)errlen;
    *result = json_pack("{s:b}", "done", 1);
    return 0;
}

/* A reply of args.n bytes of 'x'. */
static int h_big(void *ctx, const struct zpf_ctl_peer *peer, json_t *args,
                 json_t **result, char *err, size_t errlen)
{
    (void)ctx; (void)peer; (void)err; (void)errlen;
    size_t n = (size_t)json_integer_value(json_object_get(args, "n"));
    char *s = malloc(n + 1);
    memset(s, 'x', n);
    s[n] = '\0';
    *result = json_string(s);
    free(s);
    return 0;
}

static void fx_done(void *arg)
{
    struct fx *f = arg;
    f->done_calls++;
    f->srv = NULL;
}

/* Closes the server from inside a handler. */
static int h_close(void *ctx, const struct zpf_ctl_peer *peer, json_t *args,
                   json_t **result, char *err, size_t errlen)
{
    struct fx *f = ctx;
    (void)peer; (void)args; (void)err; (void)errlen;
    zpf_ctl_server_close(f->srv, fx_done, f);
    *result = json_true();
    return 0;
}

static const struct zpf_ctl_command CMDS[] = {
    {"status", h_status, false, "node status"},
    {"echo", h_echo, false, "returns its args"},
    {"fail", h_fail, false, "fails as asked"},
    {"admin.op", h_admin, true, "an admin command"},
    {"big", h_big, false, "a large reply"},
    {"close", h_close, false, "closes the server"},
};

static void fx_log(void *ctx, const char *msg)
{
    struct fx *f = ctx;
    if (f->nlog < 16)
        snprintf(f->log[f->nlog++], sizeof f->log[0], "%s", msg);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/zpf-ctl-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/zpf.sock", f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->opt.path = f->path;
    f->opt.cmds = CMDS;
    f->opt.ncmds = sizeof CMDS / sizeof CMDS[0];
    f->opt.ctx = f;
    f->opt.log_cb = fx_log;
    *state = f;
    return 0;
}

static int rm_entry(const char *p, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(p);
}

static void fx_close(struct fx *f)
{
    if (f->srv == NULL)
        return;
    zpf_ctl_server_close(f->srv, fx_done, f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_null(f->srv);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    fx_close(f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    assert_int_equal(rc, 0);
    return 0;
}

static void fx_start(struct fx *f)
{
    char err[ZPF_CTL_ERR_MAX] = "";
    int rc = zpf_ctl_server_start(&f->loop, &f->opt, &f->srv, err, sizeof err);
    if (rc != 0)
        fail_msg("server start: %s: %s", zpf_err_name(rc), err);
}

static struct zpf_ctl_stats fx_stats(struct fx *f)
{
    struct zpf_ctl_stats st;
    zpf_ctl_server_stats(f->srv, &st);
    return st;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One turn of the loop, then wait up to 1 ms for it or fd to be ready. */
static void fx_turn(struct fx *f, int fd)
{
    uv_run(&f->loop, UV_RUN_NOWAIT);
    struct pollfd p[2] = {{uv_backend_fd(&f->loop), POLLIN, 0},
                          {fd, POLLIN, 0}};
    poll(p, fd >= 0 ? 2 : 1, 1);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* --- a nonblocking client ------------------------------------------------- */

static void sock_addr(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    assert_true(strlen(path) < sizeof sa->sun_path);
    memcpy(sa->sun_path, path, strlen(path) + 1);
}

struct cli {
    int fd;
    char *buf;
    size_t len, cap;
    bool eof;
};

static int raw_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa;
    sock_addr(&sa, path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        fail_msg("connect %s: %s", path, strerror(errno));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void cli_open(struct fx *f, struct cli *c)
{
    memset(c, 0, sizeof *c);
    c->fd = raw_connect(f->path);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* accept it */
}

static void cli_close(struct cli *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

/* Send everything, driving the loop while the socket is full.  Returns 0,
 * or -errno when the server hung up. */
static int cli_send_n(struct fx *f, struct cli *c, const char *p, size_t n)
{
    uint64_t end = now_ms() + IO_DEADLINE_MS;
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(c->fd, p + off, n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (errno != EAGAIN)
            return -errno;
        if (now_ms() > end)
            fail_msg("send timed out after %zu of %zu bytes", off, n);
        uv_run(&f->loop, UV_RUN_NOWAIT);
        struct pollfd pf[2] = {{uv_backend_fd(&f->loop), POLLIN, 0},
                               {c->fd, POLLOUT, 0}};
        poll(pf, 2, 1);
    }
    return 0;
}

static void cli_send(struct fx *f, struct cli *c, const char *s)
{
    assert_int_equal(cli_send_n(f, c, s, strlen(s)), 0);
}

/* The next reply line (without "\n", malloc'd), or NULL at EOF. */
static char *cli_line(struct fx *f, struct cli *c)
{
    uint64_t end = now_ms() + IO_DEADLINE_MS;
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl != NULL) {
            size_t n = (size_t)(nl - c->buf);
            char *line = malloc(n + 1);
            memcpy(line, c->buf, n);
            line[n] = '\0';
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return line;
        }
        if (c->eof)
            return NULL;
        if (c->cap - c->len < 65536) {
            c->cap = c->cap * 2 + 65536;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r > 0) {
            c->len += (size_t)r;
            continue;
        }
        if (r == 0 || errno == ECONNRESET) {
            c->eof = true;
            continue;
        }
        assert_int_equal(errno, EAGAIN);
        if (now_ms() > end)
            fail_msg("no reply within %d ms", IO_DEADLINE_MS);
        fx_turn(f, c->fd);
    }
}

static json_t *cli_reply(struct fx *f, struct cli *c)
{
    char *line = cli_line(f, c);
    if (line == NULL)
        fail_msg("connection closed, reply expected");
    json_error_t je;
    json_t *r = json_loads(line, 0, &je);
    if (r == NULL)
        fail_msg("reply is not JSON: %s: %s", je.text, line);
    free(line);
    assert_int_equal(json_integer_value(json_object_get(r, "v")), 1);
    return r;
}

/* The reply's result; fails unless ok. */
static json_t *expect_ok(json_t *r)
{
    if (!json_is_true(json_object_get(r, "ok"))) {
        char *s = json_dumps(r, 0);
        fail_msg("expected ok: %s", s);
    }
    return json_object_get(r, "result");
}

/* The error message; fails unless the reply is an error with this code. */
static const char *expect_err(json_t *r, const char *code)
{
    json_t *e = json_object_get(r, "error");
    const char *got = json_string_value(json_object_get(e, "code"));
    if (!json_is_false(json_object_get(r, "ok")) || got == NULL ||
        strcmp(got, code) != 0) {
        char *s = json_dumps(r, 0);
        fail_msg("expected error %s: %s", code, s);
    }
    const char *m = json_string_value(json_object_get(e, "message"));
    assert_non_null(m);
    return m;
}

/* Wait until the server closes the connection (pending replies are read
 * and dropped). */
static void expect_eof(struct fx *f, struct cli *c)
{
    char *line;
    while ((line = cli_line(f, c)) != NULL)
        free(line);
}

/* --- the parser ----------------------------------------------------------- */

struct parsed {
    int rc;
    const char *code;
    char err[ZPF_CTL_ERR_MAX];
    struct zpf_ctl_request req;
};

static void parse_n(struct parsed *p, const char *line, size_t len)
{
    memset(p, 0, sizeof *p);
    p->rc = zpf_ctl_parse_request(line, len, &p->req, &p->code, p->err,
                                  sizeof p->err);
}

static void parse(struct parsed *p, const char *line)
{
    parse_n(p, line, strlen(line));
}

/* Parse, expect failure with code, return the message (valid until the
 * next parse into p). */
static const char *parse_fails(struct parsed *p, const char *line,
                               const char *code)
{
    parse(p, line);
    if (p->rc >= 0 || p->code == NULL || strcmp(p->code, code) != 0)
        fail_msg("%s: expected %s, got rc %d code %s (%s)", line, code,
                 p->rc, p->code ? p->code : "none", p->err);
    assert_true(p->err[0] != '\0');
    zpf_ctl_request_clear(&p->req);
    return p->err;
}

static void parse_ok_minimal(void **state)
{
    (void)state;
    struct parsed p;
    parse(&p, "{\"v\":1,\"cmd\":\"status\"}");
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.req.cmd, "status");
    assert_null(p.req.id);
    assert_true(json_is_object(p.req.args));
    assert_int_equal(json_object_size(p.req.args), 0);
    zpf_ctl_request_clear(&p.req);
    zpf_ctl_request_clear(&p.req); /* idempotent */

    /* Whitespace, a trailing "\r", args, and field order do not matter. */
    parse(&p, " { \"args\" : {\"id\":\"0badc0de\"}, \"cmd\":\"keys.use\", "
              "\"v\":1 }\r");
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.req.cmd, "keys.use");
    assert_string_equal(json_string_value(json_object_get(p.req.args, "id")),
                        "0badc0de");
    zpf_ctl_request_clear(&p.req);
}

static void parse_id_scalars(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        json_type type;
    } ids[] = {
        {"\"abc\"", JSON_STRING}, {"42", JSON_INTEGER},
        {"-1.5", JSON_REAL},      {"true", JSON_TRUE},
        {"false", JSON_FALSE},    {"null", JSON_NULL},
        {"123456789012345678", JSON_INTEGER},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char line[128], want[128];
        snprintf(line, sizeof line, "{\"v\":1,\"id\":%s,\"cmd\":\"s\"}",
                 ids[i].text);
        struct parsed p;
        parse(&p, line);
        assert_int_equal(p.rc, 0);
        assert_non_null(p.req.id);
        assert_int_equal(json_typeof(p.req.id), ids[i].type);
        /* Echoed verbatim in the reply. */
        char *r = zpf_ctl_reply_ok(p.req.id, NULL, NULL);
        snprintf(want, sizeof want, "\"id\":%s,", ids[i].text);
        if (strstr(r, want) == NULL)
            fail_msg("id %s not echoed: %s", ids[i].text, r);
        free(r);
        zpf_ctl_request_clear(&p.req);
    }

    struct parsed p;
    const char *m = parse_fails(&p, "{\"v\":1,\"id\":[1],\"cmd\":\"s\"}",
                                "bad_request");
    assert_non_null(strstr(m, "\"id\""));
    parse_fails(&p, "{\"v\":1,\"id\":{},\"cmd\":\"s\"}", "bad_request");
}

static void parse_args_not_object(void **state)
{
    (void)state;
    struct parsed p;
    const char *m;
    m = parse_fails(&p, "{\"v\":1,\"cmd\":\"s\",\"args\":[1]}", "bad_request");
    assert_non_null(strstr(m, "args"));
    parse_fails(&p, "{\"v\":1,\"cmd\":\"s\",\"args\":\"x\"}", "bad_request");
    parse_fails(&p, "{\"v\":1,\"cmd\":\"s\",\"args\":null}", "bad_request");
    parse_fails(&p, "{\"v\":1,\"cmd\":\"s\",\"args\":3}", "bad_request");

    /* The id survives a failed parse so the error reply can echo it. */
    parse(&p, "{\"v\":1,\"id\":7,\"cmd\":\"s\",\"args\":[]}");
    assert_true(p.rc < 0);
    assert_int_equal(json_integer_value(p.req.id), 7);
    zpf_ctl_request_clear(&p.req);
    assert_null(p.req.id);
}

static void parse_cmd(void **state)
{
    (void)state;
    struct parsed p;
    const char *m = parse_fails(&p, "{\"v\":1}", "bad_request");
    assert_non_null(strstr(m, "missing \"cmd\""));
    parse_fails(&p, "{\"v\":1,\"cmd\":5}", "bad_request");
    parse_fails(&p, "{\"v\":1,\"cmd\":null}", "bad_request");
    parse_fails(&p, "{\"v\":1,\"cmd\":\"\"}", "bad_request");
    parse_fails(&p, "{\"v\":1,\"cmd\":\"two words\"}", "bad_request");
    parse_fails(&p, "{\"v\":1,\"cmd\":\"caf\\u00e9\"}", "bad_request");

    char line[256], name[ZPF_CTL_CMD_MAX + 2];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0'; /* 64 bytes: one too many */
    snprintf(line, sizeof line, "{\"v\":1,\"cmd\":\"%s\"}", name);
    m = parse_fails(&p, line, "bad_request");
    assert_non_null(strstr(m, "64 bytes"));

    name[ZPF_CTL_CMD_MAX] = '\0'; /* 63: the most allowed */
    snprintf(line, sizeof line, "{\"v\":1,\"cmd\":\"%s\"}", name);
    parse(&p, line);
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.req.cmd, name);
    zpf_ctl_request_clear(&p.req);
}

static void parse_version(void **state)
{
    (void)state;
    struct parsed p;
    const char *m = parse_fails(&p, "{\"cmd\":\"status\"}", "bad_request");
    assert_non_null(strstr(m, "\"v\""));
    parse_fails(&p, "{\"v\":\"1\",\"cmd\":\"status\"}", "bad_request");
    parse_fails(&p, "{\"v\":1.0,\"cmd\":\"status\"}", "bad_request");
    parse_fails(&p, "{\"v\":null,\"cmd\":\"status\"}", "bad_request");

    m = parse_fails(&p, "{\"v\":2,\"cmd\":\"status\"}", "unsupported_version");
    assert_non_null(strstr(m, "version 1"));
    parse_fails(&p, "{\"v\":0,\"cmd\":\"status\"}", "unsupported_version");
    parse_fails(&p, "{\"v\":-1,\"cmd\":\"status\"}", "unsupported_version");
    /* 2^32 + 1 must not wrap to 1. */
    parse_fails(&p, "{\"v\":4294967297,\"cmd\":\"status\"}",
                "unsupported_version");
    /* A future version is rejected even if the rest is not v1-shaped. */
    parse_fails(&p, "{\"v\":2,\"command\":[]}", "unsupported_version");

    /* The version error echoes the id. */
    parse(&p, "{\"v\":2,\"id\":\"q\",\"cmd\":\"status\"}");
    assert_string_equal(json_string_value(p.req.id), "q");
    zpf_ctl_request_clear(&p.req);
}

static void parse_not_object(void **state)
{
    (void)state;
    struct parsed p;
    const char *m = parse_fails(&p, "[1,2]", "parse_error");
    assert_non_null(strstr(m, "an array"));
    parse_fails(&p, "\"status\"", "parse_error");
    parse_fails(&p, "42", "parse_error");
    parse_fails(&p, "null", "parse_error");
    parse_fails(&p, "", "parse_error");
    m = parse_fails(&p, "{oops", "parse_error");
    assert_non_null(strstr(m, "column"));
    /* A failure before the object is known has no id. */
    parse(&p, "[{\"id\":1}]");
    assert_null(p.req.id);
    zpf_ctl_request_clear(&p.req);
}

static void parse_trailing_garbage(void **state)
{
    (void)state;
    struct parsed p;
    const char *m = parse_fails(&p, "{\"v\":1,\"cmd\":\"status\"} x",
                                "parse_error");
    assert_non_null(strstr(m, "column 24"));
    parse_fails(&p, "{\"v\":1,\"cmd\":\"status\"}{}", "parse_error");
    parse_fails(&p, "{\"v\":1,\"cmd\":\"status\"}\n{}", "parse_error");
}

static void parse_nul_and_encoding(void **state)
{
    (void)state;
    struct parsed p;
    static const char nul[] = "{\"v\":1,\"cmd\":\"st\0atus\"}";
    parse_n(&p, nul, sizeof nul - 1);
    assert_true(p.rc < 0);
    assert_string_equal(p.code, "parse_error");
    assert_non_null(strstr(p.err, "NUL"));
    assert_non_null(strstr(p.err, "column 17"));
    zpf_ctl_request_clear(&p.req);

    parse_fails(&p, "{\"v\":1,\"cmd\":\"s\",\"args\":{\"a\":\"x\\u0000y\"}}",
                "parse_error");
    parse_fails(&p, "{\"v\":1,\"cmd\":\"s\",\"args\":{\"a\":\"\xff\xfe\"}}",
                "parse_error");
    parse_fails(&p, "{\"v\":1,\"v\":1,\"cmd\":\"s\"}", "parse_error");
    /* A line need not be NUL-terminated: only len bytes are read. */
    parse_n(&p, "{\"v\":1,\"cmd\":\"status\"}garbage", 22);
    assert_int_equal(p.rc, 0);
    zpf_ctl_request_clear(&p.req);
}

static void parse_deep_nesting(void **state)
{
    (void)state;
    size_t n = 10000;
    char *deep = malloc(n + 64);
    memset(deep, '[', n);
    deep[n] = '\0';
    struct parsed p;
    parse_fails(&p, deep, "parse_error");

    int k = snprintf(deep, 64, "{\"v\":1,\"cmd\":\"s\",\"args\":{\"a\":");
    memset(deep + k, '[', n);
    deep[k + n] = '\0';
    parse_fails(&p, deep, "parse_error");
    free(deep);
}

static void parse_huge_numbers(void **state)
{
    (void)state;
    struct parsed p;
    parse_fails(&p, "{\"v\":1,\"id\":1e999,\"cmd\":\"s\"}", "parse_error");
    parse_fails(&p, "{\"v\":99999999999999999999999,\"cmd\":\"s\"}",
                "parse_error");
    parse_fails(&p, "{\"v\":1,\"cmd\":\"s\",\"args\":{\"n\":-1e99999}}",
                "parse_error");
}

static void parse_messages_hide_values(void **state)
{
    (void)state;
    struct parsed p;
    /* jansson would quote the offending token; that may be a key. */
    static const char *lines[] = {
        "{\"v\":1,\"cmd\":\"keys.install\",\"args\":{\"key\":SECRETKEY}}",
        "{\"v\":1,\"cmd\":\"keys.install\",\"args\":{\"key\":\"SECRETKEY",
        "{\"v\":1,\"cmd\":\"keys.install\",\"args\":{\"key\":\"SECRET\tKEY\"}}",
        "{\"v\":1,\"cmd\":\"keys.install\",\"SECRET KEY\":1}",
        "{\"v\":1,\"cmd\":\"keys.install\",\"args\":[\"SECRETKEY\"]}",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        parse(&p, lines[i]);
        assert_true(p.rc < 0);
        if (strstr(p.err, "SECRET") != NULL)
            fail_msg("message quotes the request: %s", p.err);
        zpf_ctl_request_clear(&p.req);
    }
    const char *m = parse_fails(&p, "{\"v\":1,\"cmd\":\"s\",\"arg\":{}}",
                                "bad_request");
    assert_non_null(strstr(m, "unknown field \"arg\""));
}

static void parse_line_limit(void **state)
{
    (void)state;
    /* The longest line allowed: ZPF_CTL_LINE_MAX bytes with its "\n". */
    size_t n = ZPF_CTL_LINE_MAX - 1;
    char *line = malloc(n + 1);
    const char *head = "{\"v\":1,\"cmd\":\"status\"";
    size_t h = strlen(head);
    memcpy(line, head, h);
    memset(line + h, ' ', n - h - 1);
    line[n - 1] = '}';
    line[n] = '\0';
    struct parsed p;
    parse_n(&p, line, n);
    assert_int_equal(p.rc, 0);
    zpf_ctl_request_clear(&p.req);

    line = realloc(line, n + 2);
    line[n - 1] = ' ';
    line[n] = '}';
    parse_n(&p, line, n + 1);
    assert_int_equal(p.rc, ZPF_E2BIG);
    assert_string_equal(p.code, "line_too_long");
    zpf_ctl_request_clear(&p.req);
    free(line);

    parse_n(&p, NULL, 0);
    assert_string_equal(p.code, "parse_error");
    assert_int_equal(zpf_ctl_parse_request("{}", 2, NULL, NULL, NULL, 0),
                     ZPF_EINVAL);
}

/* --- replies and codes ---------------------------------------------------- */

static void reply_format(void **state)
{
    (void)state;
    size_t len = 0;
    json_t *res = json_pack("{s:i}", "a", 1);
    char *r = zpf_ctl_reply_ok(NULL, res, &len);
    assert_string_equal(r, "{\"v\":1,\"ok\":true,\"result\":{\"a\":1}}\n");
    assert_int_equal(len, strlen(r));
    free(r);
    json_decref(res);

    json_t *id = json_string("x");
    r = zpf_ctl_reply_ok(id, NULL, NULL);
    assert_string_equal(r, "{\"v\":1,\"id\":\"x\",\"ok\":true,"
                           "\"result\":null}\n");
    free(r);
    json_decref(id);

    /* A newline inside a message is escaped: one reply, one line. */
    id = json_integer(3);
    r = zpf_ctl_reply_error(id, "busy", "first\nsecond", &len);
    assert_string_equal(r, "{\"v\":1,\"id\":3,\"ok\":false,\"error\":{\"code\":"
                           "\"busy\",\"message\":\"first\\nsecond\"}}\n");
    assert_ptr_equal(strchr(r, '\n'), r + len - 1);
    free(r);
    json_decref(id);

    /* A message cut inside a UTF-8 sequence still yields valid JSON. */
    r = zpf_ctl_reply_error(NULL, "io", "disk \xc3", &len);
    assert_non_null(r);
    assert_non_null(strstr(r, "\"message\":\"disk \""));
    free(r);
    r = zpf_ctl_reply_error(NULL, NULL, NULL, &len);
    assert_string_equal(r, "{\"v\":1,\"ok\":false,\"error\":{\"code\":"
                           "\"internal\",\"message\":\"\"}}\n");
    free(r);
}

static void code_mapping(void **state)
{
    (void)state;
    assert_string_equal(zpf_ctl_code_name(zpf_ctl_code_of_err(ZPF_EBUSY)),
                        "busy");
    assert_string_equal(zpf_ctl_code_name(zpf_ctl_code_of_err(ZPF_ENOENT)),
                        "not_found");
    assert_string_equal(zpf_ctl_code_name(zpf_ctl_code_of_err(ZPF_EEXIST)),
                        "exists");
    assert_string_equal(zpf_ctl_code_name(zpf_ctl_code_of_err(ZPF_ELIMIT)),
                        "limit");
    assert_string_equal(zpf_ctl_code_name(zpf_ctl_code_of_err(ZPF_EIO)),
                        "io");
    assert_string_equal(zpf_ctl_code_name(zpf_ctl_code_of_err(ZPF_EINVAL)),
                        "bad_request");
    assert_int_equal(zpf_ctl_code_of_err(ZPF_EMSGPACK), ZPF_CTL_INTERNAL);
    assert_int_equal(zpf_ctl_code_of_err(0), ZPF_CTL_INTERNAL);
    assert_int_equal(zpf_ctl_code_of_err(-99999), ZPF_CTL_INTERNAL);
    assert_string_equal(zpf_ctl_code_name(ZPF_CTL_CODE_COUNT), "internal");
    assert_string_equal(zpf_ctl_code_name(ZPF_CTL_PARSE_ERROR),
                        "parse_error");
    assert_string_equal(zpf_ctl_code_name(ZPF_CTL_LINE_TOO_LONG),
                        "line_too_long");
}

/* --- the server over a socket --------------------------------------------- */

static void server_status(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    struct cli c;
    cli_open(f, &c);
    cli_send(f, &c, "{\"v\":1,\"id\":1,\"cmd\":\"status\"}\n");
    json_t *r = cli_reply(f, &c);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
    json_t *res = expect_ok(r);
    assert_string_equal(json_string_value(json_object_get(res, "name")),
                        "node-a");
    /* The handler saw our credentials. */
    assert_int_equal(json_integer_value(json_object_get(res, "uid")),
                     geteuid());
    json_decref(r);

    /* No id in the request: none in the reply. */
    cli_send(f, &c, "{\"v\":1,\"cmd\":\"echo\",\"args\":{\"k\":[1,2]}}\n");
    r = cli_reply(f, &c);
    assert_null(json_object_get(r, "id"));
    res = expect_ok(r);
    assert_int_equal(json_array_size(json_object_get(res, "k")), 2);
    json_decref(r);

    struct zpf_ctl_stats st = fx_stats(f);
    assert_int_equal(st.connections, 1);
    assert_int_equal(st.clients, 1);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.ok, 2);
    cli_close(&c);
}

static void server_unknown_command(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    struct cli c;
    cli_open(f, &c);
    cli_send(f, &c, "{\"v\":1,\"id\":\"u\",\"cmd\":\"stats\"}\n");
    json_t *r = cli_reply(f, &c);
    assert_string_equal(json_string_value(json_object_get(r, "id")), "u");
    const char *m = expect_err(r, "unknown_command");
    assert_non_null(strstr(m, "\"stats\""));
    assert_non_null(strstr(m, "status, echo, fail, admin.op"));
    json_decref(r);
    assert_int_equal(fx_stats(f).errors[ZPF_CTL_UNKNOWN_COMMAND], 1);
    cli_close(&c);
}

static void server_malformed_then_ok(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    struct cli c;
    cli_open(f, &c);
    cli_send(f, &c, "{oops\n");
    json_t *r = cli_reply(f, &c);
    assert_null(json_object_get(r, "id"));
    assert_non_null(strstr(expect_err(r, "parse_error"), "column"));
    json_decref(r);

    /* A NUL inside a line is a parse error, not the end of the line. */
    static const char nul[] = "{\"v\":1,\0\"cmd\":\"status\"}\n";
    assert_int_equal(cli_send_n(f, &c, nul, sizeof nul - 1), 0);
    r = cli_reply(f, &c);
    assert_non_null(strstr(expect_err(r, "parse_error"), "NUL"));
    json_decref(r);

    /* Empty and blank lines get no reply; "\r\n" ends a line too. */
    cli_send(f, &c, "\n\r\n  \n{\"v\":1,\"id\":2,\"cmd\":\"status\"}\r\n");
    r = cli_reply(f, &c);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 2);
    expect_ok(r);
    json_decref(r);

    struct zpf_ctl_stats st = fx_stats(f);
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.errors[ZPF_CTL_PARSE_ERROR], 2);
    cli_close(&c);
}

static void server_pipelined(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    struct cli c;
    cli_open(f, &c);
    enum { N = 500 };
    char *batch = malloc(N * 64);
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += (size_t)sprintf(batch + len, "{\"v\":1,\"id\":%d,\"cmd\":\"%s\"}"
                               "\n", i, i % 7 == 3 ? "nope" : "status");
    assert_int_equal(cli_send_n(f, &c, batch, len), 0);
    free(batch);
    for (int i = 0; i < N; i++) {
        json_t *r = cli_reply(f, &c);
        assert_int_equal(json_integer_value(json_object_get(r, "id")), i);
        if (i % 7 == 3)
            expect_err(r, "unknown_command");
        else
            expect_ok(r);
        json_decref(r);
    }
    assert_int_equal(fx_stats(f).requests, N);
    cli_close(&c);
}

static void server_handler_errors(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    struct cli c;
    cli_open(f, &c);
    cli_send(f, &c,
             "{\"v\":1,\"id\":1,\"cmd\":\"fail\",\"args\":{\"err\":\"busy\"}}\n"
             "{\"v\":1,\"id\":2,\"cmd\":\"fail\",\"args\":{\"err\":"
             "\"inval\"}}\n"
             "{\"v\":1,\"id\":3,\"cmd\":\"fail\",\"args\":{\"err\":\"odd\"}}\n"
             "{\"v\":1,\"id\":4,\"cmd\":\"fail\"}\n");
    json_t *r = cli_reply(f, &c);
    assert_string_equal(expect_err(r, "busy"),
                        "key 0badc0de is the primary; use another key first");
    json_decref(r);
    r = cli_reply(f, &c);
    assert_string_equal(expect_err(r, "bad_request"),
                        "\"id\" must be 8 hex digits");
    json_decref(r);
    r = cli_reply(f, &c);
    assert_string_equal(expect_err(r, "internal"), "something odd");
    json_decref(r);
    r = cli_reply(f, &c);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 4);
    assert_string_equal(expect_err(r, "not_found"), zpf_strerror(ZPF_ENOENT));
    json_decref(r);
    struct zpf_ctl_stats st = fx_stats(f);
    assert_int_equal(st.errors[ZPF_CTL_BUSY], 1);
    assert_int_equal(st.errors[ZPF_CTL_NOT_FOUND], 1);
    assert_int_equal(st.ok, 0);
    cli_close(&c);
}

static void server_line_too_long(void **state)
{
    struct fx *f = *state;
    fx_start(f);

    /* Exactly ZPF_CTL_LINE_MAX bytes with the "\n": still fine. */
    struct cli c;
    cli_open(f, &c);
    size_t n = ZPF_CTL_LINE_MAX;
    char *line = malloc(n + 16);
    const char *head = "{\"v\":1,\"id\":9,\"cmd\":\"status\"";
    size_t h = strlen(head);
    memcpy(line, head, h);
    memset(line + h, ' ', n - h - 2);
    line[n - 2] = '}';
    line[n - 1] = '\n';
    assert_int_equal(cli_send_n(f, &c, line, n), 0);
    json_t *r = cli_reply(f, &c);
    expect_ok(r);
    json_decref(r);

    /* One byte more: line_too_long, then the server hangs up. */
    memmove(line + 1, line, n);
    line[0] = ' ';
    int rc = cli_send_n(f, &c, line, n + 1);
    assert_true(rc == 0 || rc == -EPIPE || rc == -ECONNRESET);
    r = cli_reply(f, &c);
    assert_null(json_object_get(r, "id"));
    assert_non_null(strstr(expect_err(r, "line_too_long"), "65536"));
    json_decref(r);
    expect_eof(f, &c);
    cli_close(&c);

    /* A long line that never ends is cut off the same way. */
    cli_open(f, &c);
    memset(line, 'a', n + 1);
    rc = cli_send_n(f, &c, line, n + 1);
    assert_true(rc == 0 || rc == -EPIPE || rc == -ECONNRESET);
    r = cli_reply(f, &c);
    expect_err(r, "line_too_long");
    json_decref(r);
    expect_eof(f, &c);
    cli_close(&c);
    free(line);

    assert_int_equal(fx_stats(f).errors[ZPF_CTL_LINE_TOO_LONG], 2);
    assert_true(f->nlog >= 1);
    assert_non_null(strstr(f->log[0], "over 65536"));
}

static void server_slow_client_dropped(void **state)
{
    struct fx *f = *state;
    f->opt.max_pending_out = 16384;
    f->opt.stall_timeout_ms = 200;
    fx_start(f);

    struct cli slow, other;
    cli_open(f, &slow);
    static const char req[] = "{\"v\":1,\"cmd\":\"status\"}\n";
    /* Send 10,000 requests, reading nothing, until the server hangs up. */
    int sent = 0, rc = 0;
    uint64_t end = now_ms() + IO_DEADLINE_MS;
    while (sent < 10000 && rc == 0 && now_ms() < end) {
        rc = cli_send_n(f, &slow, req, sizeof req - 1);
        sent++;
    }
    while (fx_stats(f).slow_dropped == 0 && now_ms() < end)
        fx_turn(f, -1);
    struct zpf_ctl_stats st = fx_stats(f);
    assert_int_equal(st.slow_dropped, 1);
    /* It was stopped well before all its requests were answered. */
    assert_true(st.ok < 10000);

    /* Others are still served. */
    cli_open(f, &other);
    cli_send(f, &other, req);
    json_t *r = cli_reply(f, &other);
    expect_ok(r);
    json_decref(r);
    cli_close(&other);

    /* The slow client finds its connection closed. */
    expect_eof(f, &slow);
    cli_close(&slow);
    assert_true(f->nlog >= 1);
    assert_non_null(strstr(f->log[0], "unread"));
}

static void server_big_reply_not_dropped(void **state)
{
    struct fx *f = *state;
    f->opt.max_pending_out = 16384;
    f->opt.stall_timeout_ms = 2000;
    fx_start(f);
    struct cli c;
    cli_open(f, &c);
    /* One reply 16 times the bound, with a request queued behind it. */
    cli_send(f, &c, "{\"v\":1,\"id\":1,\"cmd\":\"big\",\"args\":"
                    "{\"n\":262144}}\n"
                    "{\"v\":1,\"id\":2,\"cmd\":\"status\"}\n");
    json_t *r = cli_reply(f, &c);
    assert_int_equal(json_string_length(expect_ok(r)), 262144);
    json_decref(r);
    r = cli_reply(f, &c);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 2);
    expect_ok(r);
    json_decref(r);
    assert_int_equal(fx_stats(f).slow_dropped, 0);
    cli_close(&c);
}

static void server_idle_timeout(void **state)
{
    struct fx *f = *state;
    f->opt.idle_timeout_ms = 100;
    fx_start(f);
    struct cli c;
    cli_open(f, &c);
    cli_send(f, &c, "{\"v\":1,\"cmd\":\"status\"}\n");
    json_t *r = cli_reply(f, &c);
    json_decref(r);
    uint64_t t0 = now_ms();
    expect_eof(f, &c);
    uint64_t waited = now_ms() - t0;
    assert_true(waited >= 50);
    assert_true(waited < 2000);
    /* Wait for the close callbacks. */
    while (fx_stats(f).clients != 0 && now_ms() - t0 < IO_DEADLINE_MS)
        fx_turn(f, -1);
    struct zpf_ctl_stats st = fx_stats(f);
    assert_int_equal(st.idle_closed, 1);
    assert_int_equal(st.clients, 0);
    cli_close(&c);
}

static void server_eof_answers_last_line(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    struct cli c;
    cli_open(f, &c);
    /* What `printf '...' | socat - UNIX-CONNECT:...` does: no newline,
     * then shutdown of the write side. */
    cli_send(f, &c, "{\"v\":1,\"id\":1,\"cmd\":\"status\"}\n"
                    "{\"v\":1,\"id\":2,\"cmd\":\"status\"}");
    shutdown(c.fd, SHUT_WR);
    json_t *r = cli_reply(f, &c);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
    json_decref(r);
    r = cli_reply(f, &c);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 2);
    json_decref(r);
    expect_eof(f, &c);
    cli_close(&c);
}

static void server_max_clients(void **state)
{
    struct fx *f = *state;
    f->opt.max_clients = 2;
    fx_start(f);
    struct cli a, b, c;
    cli_open(f, &a);
    cli_open(f, &b);
    cli_open(f, &c);
    json_t *r = cli_reply(f, &c);
    assert_non_null(strstr(expect_err(r, "busy"), "too many"));
    json_decref(r);
    expect_eof(f, &c);
    cli_close(&c);

    cli_send(f, &a, "{\"v\":1,\"cmd\":\"status\"}\n");
    cli_send(f, &b, "{\"v\":1,\"cmd\":\"status\"}\n");
    r = cli_reply(f, &a);
    expect_ok(r);
    json_decref(r);
    r = cli_reply(f, &b);
    expect_ok(r);
    json_decref(r);
    struct zpf_ctl_stats st = fx_stats(f);
    assert_int_equal(st.connections, 3);
    assert_int_equal(st.refused, 1);
    assert_int_equal(st.clients, 2);
    cli_close(&a);
    cli_close(&b);
}

static void server_closed_by_handler(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    struct cli c;
    cli_open(f, &c);
    cli_send(f, &c, "{\"v\":1,\"cmd\":\"close\"}\n"
                    "{\"v\":1,\"cmd\":\"status\"}\n");
    expect_eof(f, &c);
    cli_close(&c);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done_calls, 1);
    assert_null(f->srv);
    assert_int_equal(access(f->path, F_OK), -1);
}

/* --- the socket file ------------------------------------------------------ */

static void socket_file_mode(void **state)
{
    struct fx *f = *state;
    /* A missing directory is created. */
    snprintf(f->path, sizeof f->path, "%s/run/zpf/zpf.sock", f->dir);
    fx_start(f);
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0660);
    assert_int_equal(st.st_gid, getegid());
    char dir[160];
    snprintf(dir, sizeof dir, "%s/run/zpf", f->dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    /* Closing removes the socket file. */
    fx_close(f);
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(lstat(f->path, &st), -1);
    assert_int_equal(errno, ENOENT);
}

static void socket_close_keeps_successor(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    /* Someone replaced the file meanwhile: closing must not remove it. */
    assert_int_equal(unlink(f->path), 0);
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fclose(fp);
    fx_close(f);
    assert_int_equal(access(f->path, F_OK), 0);
}

static void socket_stale_replaced(void **state)
{
    struct fx *f = *state;
    /* A crashed agent's socket: bound, nobody listening. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa;
    sock_addr(&sa, f->path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    fx_start(f);
    struct cli c;
    cli_open(f, &c);
    cli_send(f, &c, "{\"v\":1,\"cmd\":\"status\"}\n");
    json_t *r = cli_reply(f, &c);
    expect_ok(r);
    json_decref(r);
    cli_close(&c);
}

static void socket_live_refused(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    struct zpf_ctl_server *second = NULL;
    char err[ZPF_CTL_ERR_MAX] = "";
    int rc = zpf_ctl_server_start(&f->loop, &f->opt, &second, err,
                                  sizeof err);
    assert_int_equal(rc, ZPF_EBUSY);
    assert_null(second);
    char want[200];
    snprintf(want, sizeof want, "another zpfd is listening on %s", f->path);
    assert_non_null(strstr(err, want));

    /* The first server is untouched, and its socket file is still there. */
    struct cli c;
    cli_open(f, &c);
    cli_send(f, &c, "{\"v\":1,\"cmd\":\"status\"}\n");
    json_t *r = cli_reply(f, &c);
    expect_ok(r);
    json_decref(r);
    cli_close(&c);
}

static void socket_regular_file_refused(void **state)
{
    struct fx *f = *state;
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs("precious", fp);
    fclose(fp);
    char err[ZPF_CTL_ERR_MAX] = "";
    int rc = zpf_ctl_server_start(&f->loop, &f->opt, &f->srv, err,
                                  sizeof err);
    assert_int_equal(rc, ZPF_EEXIST);
    assert_null(f->srv);
    assert_non_null(strstr(err, "is not a socket"));
    char buf[16] = "";
    fp = fopen(f->path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(buf, sizeof buf, fp));
    fclose(fp);
    assert_string_equal(buf, "precious");

    /* A directory in the way is refused the same way. */
    unlink(f->path);
    assert_int_equal(mkdir(f->path, 0700), 0);
    rc = zpf_ctl_server_start(&f->loop, &f->opt, &f->srv, err, sizeof err);
    assert_int_equal(rc, ZPF_EEXIST);
    rmdir(f->path);
}

static void start_bad_options(void **state)
{
    struct fx *f = *state;
    char err[ZPF_CTL_ERR_MAX];
    struct zpf_ctl_server *s = NULL;

    char longpath[200];
    memset(longpath, 'p', sizeof longpath);
    memcpy(longpath, "/tmp/", 5);
    longpath[sizeof longpath - 1] = '\0';
    f->opt.path = longpath;
    assert_int_equal(zpf_ctl_server_start(&f->loop, &f->opt, &s, err,
                                          sizeof err), ZPF_EINVAL);
    assert_non_null(strstr(err, "choose a shorter path"));

    f->opt.path = "";
    assert_int_equal(zpf_ctl_server_start(&f->loop, &f->opt, &s, err,
                                          sizeof err), ZPF_EINVAL);
    f->opt.path = f->path;

    f->opt.group = "zpf-no-such-group";
    assert_int_equal(zpf_ctl_server_start(&f->loop, &f->opt, &s, err,
                                          sizeof err), ZPF_EINVAL);
    assert_non_null(strstr(err, "\"zpf-no-such-group\" does not exist"));
    f->opt.group = NULL;
    f->opt.admin_group = "zpf-no-such-group";
    assert_int_equal(zpf_ctl_server_start(&f->loop, &f->opt, &s, err,
                                          sizeof err), ZPF_EINVAL);
    assert_non_null(strstr(err, "admin group"));
    f->opt.admin_group = "";

    static const struct zpf_ctl_command dup[] = {
        {"status", h_status, false, NULL},
        {"status", h_echo, false, NULL},
    };
    f->opt.cmds = dup;
    f->opt.ncmds = 2;
    assert_int_equal(zpf_ctl_server_start(&f->loop, &f->opt, &s, err,
                                          sizeof err), ZPF_EINVAL);
    assert_non_null(strstr(err, "twice"));
    static const struct zpf_ctl_command badname[] = {
        {"sta tus", h_status, false, NULL},
    };
    f->opt.cmds = badname;
    f->opt.ncmds = 1;
    assert_int_equal(zpf_ctl_server_start(&f->loop, &f->opt, &s, err,
                                          sizeof err), ZPF_EINVAL);
    static const struct zpf_ctl_command nofn[] = {
        {"status", NULL, false, NULL},
    };
    f->opt.cmds = nofn;
    assert_int_equal(zpf_ctl_server_start(&f->loop, &f->opt, &s, err,
                                          sizeof err), ZPF_EINVAL);
    f->opt.cmds = NULL;
    assert_int_equal(zpf_ctl_server_start(&f->loop, &f->opt, &s, err,
                                          sizeof err), ZPF_EINVAL);
    assert_int_equal(zpf_ctl_server_start(&f->loop, NULL, &s, err,
                                          sizeof err), ZPF_EINVAL);
    assert_null(s);
    /* Nothing was left behind. */
    assert_int_equal(access(f->path, F_OK), -1);
}

/* --- zpf_ctl_call --------------------------------------------------------- */

struct call {
    const char *path;
    const char *cmd;
    json_t *args;
    uint32_t timeout_ms;
    int rc;
    json_t *reply;
    char err[ZPF_CTL_ERR_MAX];
    atomic_bool finished;
};

static void *call_thread(void *arg)
{
    struct call *c = arg;
    c->rc = zpf_ctl_call(c->path, c->cmd, c->args, c->timeout_ms, &c->reply,
                         c->err, sizeof c->err);
    atomic_store(&c->finished, true);
    return NULL;
}

/* Run zpf_ctl_call() in a thread while driving the loop. */
static void run_call(struct fx *f, struct call *c)
{
    pthread_t t;
    atomic_init(&c->finished, false);
    assert_int_equal(pthread_create(&t, NULL, call_thread, c), 0);
    uint64_t end = now_ms() + IO_DEADLINE_MS;
    while (!atomic_load(&c->finished) && now_ms() < end)
        fx_turn(f, -1);
    pthread_join(t, NULL);
}

static void call_roundtrip(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    struct call c = {.path = f->path, .cmd = "echo", .timeout_ms = 3000};
    c.args = json_pack("{s:s}", "k", "v");
    run_call(f, &c);
    json_decref(c.args);
    if (c.rc != 0)
        fail_msg("call: %s", c.err);
    json_t *res = expect_ok(c.reply);
    assert_string_equal(json_string_value(json_object_get(res, "k")), "v");
    json_decref(c.reply);

    /* An error reply is still a successful call. */
    struct call e = {.path = f->path, .cmd = "nope", .timeout_ms = 3000};
    run_call(f, &e);
    assert_int_equal(e.rc, 0);
    expect_err(e.reply, "unknown_command");
    json_decref(e.reply);

    /* A reply far over the line limit is read whole. */
    struct call b = {.path = f->path, .cmd = "big", .timeout_ms = 3000};
    b.args = json_pack("{s:i}", "n", 3 << 20);
    run_call(f, &b);
    json_decref(b.args);
    assert_int_equal(b.rc, 0);
    assert_int_equal(json_string_length(expect_ok(b.reply)), 3 << 20);
    json_decref(b.reply);
}

static void call_errors(void **state)
{
    struct fx *f = *state;
    json_t *reply = NULL;
    char err[ZPF_CTL_ERR_MAX];

    /* No socket file. */
    int rc = zpf_ctl_call(f->path, "status", NULL, 1000, &reply, err,
                          sizeof err);
    assert_int_equal(rc, ZPF_ENOENT);
    assert_null(reply);
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "is zpfd running?"));

    /* A stale socket file. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa;
    sock_addr(&sa, f->path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    rc = zpf_ctl_call(f->path, "status", NULL, 1000, &reply, err, sizeof err);
    assert_int_equal(rc, ZPF_EIO);
    assert_non_null(strstr(err, "nobody is listening"));

    /* Listening but never answering: the timeout holds. */
    assert_int_equal(listen(fd, 4), 0);
    uint64_t t0 = now_ms();
    rc = zpf_ctl_call(f->path, "status", NULL, 200, &reply, err, sizeof err);
    uint64_t took = now_ms() - t0;
    assert_int_equal(rc, ZPF_EIO);
    assert_non_null(strstr(err, "within 200 ms"));
    assert_true(took >= 150 && took < 2000);

    /* Answering garbage, or hanging up: a child plays the server, on a
     * fresh socket so it does not accept the abandoned connection above. */
    close(fd);
    unlink(f->path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    static const char *answers[] = {"hello\n", "{\"v\":1}\n", ""};
    static const char *want[] = {"not JSON", "no \"ok\"",
                                 "without a complete reply"};
    for (int i = 0; i < 3; i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            alarm(5);
            int a = accept(fd, NULL, NULL);
            char buf[256];
            (void)!read(a, buf, sizeof buf);
            (void)!write(a, answers[i], strlen(answers[i]));
            close(a);
            _exit(0);
        }
        rc = zpf_ctl_call(f->path, "status", NULL, 3000, &reply, err,
                          sizeof err);
        int ws;
        waitpid(pid, &ws, 0);
        assert_int_equal(rc, ZPF_EIO);
        if (strstr(err, want[i]) == NULL)
            fail_msg("answer %d: %s", i, err);
    }
    close(fd);

    /* Bad arguments. */
    assert_int_equal(zpf_ctl_call(f->path, "two words", NULL, 1000, &reply,
                                  err, sizeof err), ZPF_EINVAL);
    json_t *arr = json_array();
    assert_int_equal(zpf_ctl_call(f->path, "status", arr, 1000, &reply, err,
                                  sizeof err), ZPF_EINVAL);
    json_decref(arr);
    assert_int_equal(zpf_ctl_call(f->path, "status", NULL, 1000, NULL, err,
                                  sizeof err), ZPF_EINVAL);
    assert_int_equal(zpf_ctl_call("", "status", NULL, 1000, &reply, err,
                                  sizeof err), ZPF_EINVAL);
}

/* --- permissions (root only) ---------------------------------------------- */

/* Child exit codes: which check failed. */
enum { CHILD_OK, CHILD_SETID, CHILD_READ, CHILD_ADMIN, CHILD_DENIED };

/* Run fn as uid/gid NOBODY in a child while driving the loop; return its
 * exit code. */
static int as_nobody(struct fx *f, int (*fn)(const char *path))
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(10);
        if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 ||
            setuid(NOBODY) != 0)
            _exit(CHILD_SETID);
        _exit(fn(f->path));
    }
    uint64_t end = now_ms() + 2 * IO_DEADLINE_MS;
    int ws = 0;
    while (waitpid(pid, &ws, WNOHANG) == 0) {
        if (now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            fail_msg("child timed out");
        }
        fx_turn(f, -1);
    }
    assert_true(WIFEXITED(ws));
    return WEXITSTATUS(ws);
}

static bool reply_is(json_t *r, const char *code, const char *needle)
{
    if (code == NULL)
        return json_is_true(json_object_get(r, "ok"));
    json_t *e = json_object_get(r, "error");
    const char *c = json_string_value(json_object_get(e, "code"));
    const char *m = json_string_value(json_object_get(e, "message"));
    return c != NULL && strcmp(c, code) == 0 && m != NULL &&
           strstr(m, needle) != NULL;
}

/* A reader, not an admin: status works, admin.op is refused. */
static int child_reader(const char *path)
{
    json_t *r = NULL;
    char err[ZPF_CTL_ERR_MAX];
    if (zpf_ctl_call(path, "status", NULL, 3000, &r, err, sizeof err) != 0 ||
        !reply_is(r, NULL, NULL))
        return CHILD_READ;
    json_decref(r);
    if (zpf_ctl_call(path, "admin.op", NULL, 3000, &r, err, sizeof err) != 0 ||
        !reply_is(r, "forbidden", "admin"))
        return CHILD_ADMIN;
    json_decref(r);
    return CHILD_OK;
}

/* In the admin group: admin.op works. */
static int child_admin(const char *path)
{
    json_t *r = NULL;
    char err[ZPF_CTL_ERR_MAX];
    if (zpf_ctl_call(path, "admin.op", NULL, 3000, &r, err, sizeof err) != 0 ||
        !reply_is(r, NULL, NULL))
        return CHILD_ADMIN;
    json_decref(r);
    return CHILD_OK;
}

/* In no group at all: even status is refused. */
static int child_outsider(const char *path)
{
    json_t *r = NULL;
    char err[ZPF_CTL_ERR_MAX];
    if (zpf_ctl_call(path, "status", NULL, 3000, &r, err, sizeof err) != 0 ||
        !reply_is(r, "forbidden", "control group"))
        return CHILD_READ;
    json_decref(r);
    return CHILD_OK;
}

/* The socket's mode keeps it out: connect fails with EPERM. */
static int child_denied(const char *path)
{
    json_t *r = NULL;
    char err[ZPF_CTL_ERR_MAX];
    int rc = zpf_ctl_call(path, "status", NULL, 3000, &r, err, sizeof err);
    return rc == ZPF_EPERM && strstr(err, "control group") ? CHILD_OK
                                                           : CHILD_DENIED;
}

static const char *nobody_group(void)
{
    struct group *g = getgrgid(NOBODY);
    return g != NULL ? g->gr_name : NULL;
}

static bool can_switch_users(void)
{
    if (geteuid() != 0) {
        print_message("      skipped: needs root to run a client as uid "
                      "%d\n", NOBODY);
        return false;
    }
    if (nobody_group() == NULL) {
        print_message("      skipped: no group with gid %d\n", NOBODY);
        return false;
    }
    return true;
}

static void perm_admin_refused(void **state)
{
    struct fx *f = *state;
    if (!can_switch_users())
        return;
    assert_int_equal(chmod(f->dir, 0755), 0); /* let the child reach it */
    /* nobody is in the control group through its primary gid. */
    f->opt.group = nobody_group();
    fx_start(f);
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_int_equal(st.st_gid, NOBODY);
    assert_int_equal(as_nobody(f, child_reader), CHILD_OK);
    assert_int_equal(fx_stats(f).errors[ZPF_CTL_FORBIDDEN], 1);

    /* Made an admin through the admin group, the same call succeeds. */
    fx_close(f);
    f->opt.admin_group = nobody_group();
    fx_start(f);
    assert_int_equal(as_nobody(f, child_admin), CHILD_OK);
    assert_int_equal(fx_stats(f).errors[ZPF_CTL_FORBIDDEN], 0);
}

static void perm_outsider_refused(void **state)
{
    struct fx *f = *state;
    if (!can_switch_users())
        return;
    assert_int_equal(chmod(f->dir, 0755), 0);
    fx_start(f); /* control group: root's own gid */
    assert_int_equal(as_nobody(f, child_denied), CHILD_OK);
    /* Even if the socket file is opened up, the server says no. */
    assert_int_equal(chmod(f->path, 0666), 0);
    assert_int_equal(as_nobody(f, child_outsider), CHILD_OK);
    assert_int_equal(fx_stats(f).errors[ZPF_CTL_FORBIDDEN], 1);
}

int main(void)
{
    /* As the header requires of the agent. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_ok_minimal),
        cmocka_unit_test(parse_id_scalars),
        cmocka_unit_test(parse_args_not_object),
        cmocka_unit_test(parse_cmd),
        cmocka_unit_test(parse_version),
        cmocka_unit_test(parse_not_object),
        cmocka_unit_test(parse_trailing_garbage),
        cmocka_unit_test(parse_nul_and_encoding),
        cmocka_unit_test(parse_deep_nesting),
        cmocka_unit_test(parse_huge_numbers),
        cmocka_unit_test(parse_messages_hide_values),
        cmocka_unit_test(parse_line_limit),
        cmocka_unit_test(reply_format),
        cmocka_unit_test(code_mapping),
        cmocka_unit_test_setup_teardown(server_status, setup, teardown),
        cmocka_unit_test_setup_teardown(server_unknown_command, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_malformed_then_ok, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(server_handler_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_line_too_long, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_slow_client_dropped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_big_reply_not_dropped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(server_eof_answers_last_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_max_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(server_closed_by_handler, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(socket_file_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(socket_close_keeps_successor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(socket_stale_replaced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(socket_live_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(socket_regular_file_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(start_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(call_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(call_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(perm_admin_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(perm_outsider_refused, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
