/*
 * Tests for the logger and the rate limiter (agent/log.c).
 *
 * Lines are written to a pipe or a temporary file and compared byte for
 * byte, with a fixed clock.  Every line is also run through a strict logfmt
 * reader (below), because "parsable whatever the input" is the promise
 * quoting and truncation make: a test that only compared prefixes would not
 * notice a cut that leaves a quote open or splits an escape.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

/* 2026-11-22T10:00:00.123Z */
#define FIXED_MS 1795341600123ull

static uint64_t fixed_clock(void)
{
    return FIXED_MS;
}

/* ---- a strict logfmt reader --------------------------------------------- */

struct kv {
    char key[64];
    char val[ZPF_LOG_LINE_MAX];
};

/* Parse one line (no newline) into pairs; false on anything malformed: an
 * unterminated quote, an unknown or cut escape, a control byte, text glued
 * to a closing quote. */
static bool logfmt_parse(const char *s, size_t n, struct kv *out, size_t max,
                         size_t *count)
{
    size_t i = 0, k = 0;
    while (i < n) {
        if (s[i] == ' ') {
            i++;
            continue;
        }
        if (k == max)
            return false;
        size_t kl = 0;
        while (i < n && s[i] != '=' && s[i] != ' ') {
            if ((unsigned char)s[i] < 0x20 || s[i] == '"' ||
                kl + 1 >= sizeof out[k].key)
                return false;
            out[k].key[kl++] = s[i++];
        }
        out[k].key[kl] = '\0';
        size_t vl = 0;
        if (i < n && s[i] == '=') {
            i++;
            if (i < n && s[i] == '"') {
                i++;
                for (;;) {
                    if (i >= n)
                        return false;
                    unsigned char ch = (unsigned char)s[i];
                    if (ch < 0x20)
                        return false;
                    if (ch == '"') {
                        i++;
                        break;
                    }
                    if (ch == '\\') {
                        if (i + 1 >= n)
                            return false;
                        char e = s[i + 1];
                        if (e == 'u') {
                            unsigned v;
                            char hex[5] = {0};
                            if (i + 6 > n)
                                return false;
                            memcpy(hex, s + i + 2, 4);
                            if (sscanf(hex, "%4x", &v) != 1 || v > 0xff)
                                return false;
                            out[k].val[vl++] = (char)v;
                            i += 6;
                            continue;
                        }
                        char d = e == 'n' ? '\n' : e == 'r' ? '\r'
                               : e == 't' ? '\t' : e == '"' ? '"'
                               : e == '\\' ? '\\' : 0;
                        if (d == 0)
                            return false;
                        out[k].val[vl++] = d;
                        i += 2;
                        continue;
                    }
                    out[k].val[vl++] = (char)ch;
                    i++;
                }
                if (i < n && s[i] != ' ')
                    return false;
            } else {
                while (i < n && s[i] != ' ') {
                    if ((unsigned char)s[i] < 0x20 || s[i] == '"')
                        return false;
                    out[k].val[vl++] = s[i++];
                }
            }
        }
        out[k].val[vl] = '\0';
        k++;
    }
    *count = k;
    return true;
}

/* Every multi-byte UTF-8 sequence in s is complete. */
static bool utf8_complete(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t want = c < 0x80 ? 1 : c < 0xc0 ? 0 : c < 0xe0 ? 2
                    : c < 0xf0 ? 3 : 4;
        if (want == 0 || i + want > n)
            return false;
        for (size_t k = 1; k < want; k++)
            if (((unsigned char)s[i + k] & 0xc0) != 0x80)
                return false;
        i += want;
    }
    return true;
}

/* ---- fixture ------------------------------------------------------------ */

struct tctx {
    int rfd, wfd;           /* a pipe the logger writes into */
    struct zpf_log log;
    char got[4 * ZPF_LOG_LINE_MAX];
    size_t got_len;
    struct kv kv[32];
    size_t nkv;
};

static int setup(void **state)
{
    struct tctx *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -1;
    int fds[2];
    if (pipe(fds) != 0) {
        free(t);
        return -1;
    }
    t->rfd = fds[0];
    t->wfd = fds[1];
    fcntl(t->rfd, F_SETFL, O_NONBLOCK);
    unsetenv("JOURNAL_STREAM");
    zpf_log_init(&t->log, t->wfd, ZPF_LOG_DEBUG);
    t->log.now_unix_ms = fixed_clock;
    signal(SIGPIPE, SIG_IGN); /* as zpfd does */
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct tctx *t = *state;
    if (t->rfd >= 0)
        close(t->rfd);
    if (t->wfd >= 0)
        close(t->wfd);
    unsetenv("JOURNAL_STREAM");
    free(t);
    return 0;
}

/* Everything written since the last call. */
static const char *drain(struct tctx *t)
{
    t->got_len = 0;
    for (;;) {
        ssize_t r = read(t->rfd, t->got + t->got_len,
                         sizeof t->got - 1 - t->got_len);
        if (r <= 0)
            break;
        t->got_len += (size_t)r;
    }
    t->got[t->got_len] = '\0';
    return t->got;
}

/* Drain, check there is exactly one well-formed line, parse it. */
static const char *one_line(struct tctx *t)
{
    drain(t);
    assert_true(t->got_len > 0);
    assert_true(t->got_len <= ZPF_LOG_LINE_MAX);
    assert_int_equal(t->got[t->got_len - 1], '\n');
    assert_null(memchr(t->got, '\n', t->got_len - 1));
    size_t body = t->got_len - 1;
    const char *s = t->got;
    if (s[0] == '<') {
        const char *gt = memchr(s, '>', body);
        assert_non_null(gt);
        body -= (size_t)(gt + 1 - s);
        s = gt + 1;
    }
    assert_true(logfmt_parse(s, body, t->kv, 32, &t->nkv));
    assert_true(utf8_complete(t->got, t->got_len));
    return t->got;
}

static const char *val(struct tctx *t, const char *key)
{
    for (size_t i = 0; i < t->nkv; i++)
        if (strcmp(t->kv[i].key, key) == 0)
            return t->kv[i].val;
    return NULL;
}

/* ---- format ------------------------------------------------------------- */

static void test_format_exact(void **state)
{
    struct tctx *t = *state;
    char q[64];
    zpf_log(&t->log, ZPF_LOG_WARNING, "packet dropped", "cause=%s from=%s",
            "EAUTH", zpf_log_quote("127.0.0.1:7947", q, sizeof q));
    assert_string_equal(one_line(t),
                        "ts=2026-11-22T10:00:00.123Z level=warning "
                        "msg=\"packet dropped\" cause=EAUTH "
                        "from=127.0.0.1:7947\n");
    assert_string_equal(val(t, "from"), "127.0.0.1:7947");

    zpf_log(&t->log, ZPF_LOG_INFO, "started", NULL);
    assert_string_equal(one_line(t), "ts=2026-11-22T10:00:00.123Z "
                                     "level=info msg=started\n");
    zpf_log(&t->log, ZPF_LOG_INFO, "started", "%s", "");
    assert_string_equal(one_line(t), "ts=2026-11-22T10:00:00.123Z "
                                     "level=info msg=started\n");
    zpf_log(&t->log, ZPF_LOG_DEBUG, NULL, "n=%d", 3);
    assert_string_equal(one_line(t), "ts=2026-11-22T10:00:00.123Z "
                                     "level=debug msg=\"\" n=3\n");
}

static void test_timestamp_edges(void **state)
{
    struct tctx *t = *state;
    t->log.now_unix_ms = NULL; /* the real clock: only the shape */
    zpf_log(&t->log, ZPF_LOG_ERROR, "x", NULL);
    const char *s = one_line(t);
    assert_int_equal(strlen(s), strlen("ts=2026-11-22T10:00:00.123Z "
                                       "level=error msg=x\n"));
    assert_memory_equal(s, "ts=20", 5);
    assert_int_equal(s[26], 'Z');
    assert_int_equal(s[13], 'T');
}

static void test_control_bytes_in_kv_escaped(void **state)
{
    struct tctx *t = *state;
    /* A value the caller forgot to quote cannot forge a second line. */
    zpf_log(&t->log, ZPF_LOG_INFO, "member", "name=%s",
            "evil\nts=x level=error msg=forged\x1b[31m");
    const char *s = one_line(t);
    assert_non_null(strstr(s, "name=evil\\nts=x level=error "
                              "msg=forged\\u001b[31m\n"));
}

static void test_errno_preserved(void **state)
{
    struct tctx *t = *state;
    errno = ENOSPC;
    zpf_log(&t->log, ZPF_LOG_INFO, "x", NULL);
    assert_int_equal(errno, ENOSPC);
    drain(t);
}

/* ---- levels ------------------------------------------------------------- */

static void test_level_names(void **state)
{
    (void)state;
    assert_int_equal(zpf_log_level_parse("error"), 3);
    assert_int_equal(zpf_log_level_parse("warning"), 4);
    assert_int_equal(zpf_log_level_parse("notice"), 5);
    assert_int_equal(zpf_log_level_parse("info"), 6);
    assert_int_equal(zpf_log_level_parse("debug"), 7);
    assert_int_equal(zpf_log_level_parse("INFO"), 6);
    assert_int_equal(zpf_log_level_parse("Debug"), 7);
    assert_int_equal(zpf_log_level_parse(NULL), -1);
    assert_int_equal(zpf_log_level_parse(""), -1);
    assert_int_equal(zpf_log_level_parse("warn"), -1);
    assert_int_equal(zpf_log_level_parse("info "), -1);
    assert_int_equal(zpf_log_level_parse("6"), -1);
    assert_int_equal(zpf_log_level_parse("crit"), -1);
    for (int l = ZPF_LOG_ERROR; l <= ZPF_LOG_DEBUG; l++)
        assert_int_equal(zpf_log_level_parse(zpf_log_level_name(l)), l);
    assert_string_equal(zpf_log_level_name(2), "unknown");
    assert_string_equal(zpf_log_level_name(8), "unknown");
    assert_string_equal(zpf_log_level_name(-1), "unknown");
}

static void test_level_filter(void **state)
{
    struct tctx *t = *state;
    zpf_log_init(&t->log, t->wfd, ZPF_LOG_INFO);
    t->log.now_unix_ms = fixed_clock;
    assert_int_equal(t->log.level, ZPF_LOG_INFO);
    assert_false(zpf_log_enabled(&t->log, ZPF_LOG_DEBUG));
    assert_true(zpf_log_enabled(&t->log, ZPF_LOG_INFO));
    assert_true(zpf_log_enabled(&t->log, ZPF_LOG_ERROR));

    zpf_log(&t->log, ZPF_LOG_DEBUG, "hidden", NULL);
    drain(t);
    assert_int_equal(t->got_len, 0);
    zpf_log(&t->log, ZPF_LOG_INFO, "shown", NULL);
    one_line(t);
    assert_string_equal(val(t, "msg"), "shown");
    zpf_log(&t->log, ZPF_LOG_NOTICE, "shown", NULL);
    one_line(t);
    assert_string_equal(val(t, "level"), "notice");

    /* Out-of-range levels are clamped, not dropped or crashed on. */
    zpf_log(&t->log, 0, "emerg", NULL);
    one_line(t);
    assert_string_equal(val(t, "level"), "error");
    zpf_log(&t->log, 99, "noise", NULL);
    drain(t);
    assert_int_equal(t->got_len, 0);

    zpf_log_init(&t->log, t->wfd, 42);
    assert_int_equal(t->log.level, ZPF_LOG_DEBUG);
    zpf_log_init(&t->log, t->wfd, -5);
    assert_int_equal(t->log.level, ZPF_LOG_ERROR);
    zpf_log(&t->log, ZPF_LOG_WARNING, "hidden", NULL);
    drain(t);
    assert_int_equal(t->got_len, 0);
}

/* ---- journal ------------------------------------------------------------ */

struct tmpfile {
    char dir[64];
    char path[96];
    int fd;
};

static void tmp_open(struct tmpfile *f)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/zpf-test-log.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/out", f->dir);
    f->fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0600);
    assert_true(f->fd >= 0);
}

static void tmp_close(struct tmpfile *f)
{
    close(f->fd);
    unlink(f->path);
    rmdir(f->dir);
}

static size_t tmp_read(struct tmpfile *f, char *buf, size_t cap)
{
    ssize_t r = pread(f->fd, buf, cap - 1, 0);
    assert_true(r >= 0);
    buf[r] = '\0';
    return (size_t)r;
}

static void set_stream(int fd, long long ddelta, long long idelta)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char v[64];
    snprintf(v, sizeof v, "%llu:%llu",
             (unsigned long long)st.st_dev + (unsigned long long)ddelta,
             (unsigned long long)st.st_ino + (unsigned long long)idelta);
    setenv("JOURNAL_STREAM", v, 1);
}

static void test_journal_detected(void **state)
{
    (void)state;
    struct tmpfile f;
    tmp_open(&f);
    set_stream(f.fd, 0, 0);
    struct zpf_log log;
    zpf_log_init(&log, f.fd, ZPF_LOG_INFO);
    assert_true(log.journal);
    log.now_unix_ms = fixed_clock;
    zpf_log(&log, ZPF_LOG_WARNING, "packet dropped", "cause=EAUTH");
    zpf_log(&log, ZPF_LOG_ERROR, "x", NULL);
    char buf[256];
    tmp_read(&f, buf, sizeof buf);
    assert_string_equal(buf, "<4>level=warning msg=\"packet dropped\" "
                             "cause=EAUTH\n<3>level=error msg=x\n");
    tmp_close(&f);
}

static void test_journal_not_detected(void **state)
{
    struct tctx *t = *state;
    struct tmpfile f;
    tmp_open(&f);
    struct zpf_log log;

    unsetenv("JOURNAL_STREAM");
    zpf_log_init(&log, f.fd, ZPF_LOG_INFO);
    assert_false(log.journal);

    set_stream(f.fd, 0, 1); /* another inode */
    zpf_log_init(&log, f.fd, ZPF_LOG_INFO);
    assert_false(log.journal);
    set_stream(f.fd, 1, 0); /* another device */
    zpf_log_init(&log, f.fd, ZPF_LOG_INFO);
    assert_false(log.journal);

    set_stream(f.fd, 0, 0); /* matches f, but we log to the pipe */
    zpf_log_init(&log, t->wfd, ZPF_LOG_INFO);
    assert_false(log.journal);
    zpf_log_init(&log, -1, ZPF_LOG_INFO);
    assert_false(log.journal);

    struct stat st;
    assert_int_equal(fstat(f.fd, &st), 0);
    char good[64];
    snprintf(good, sizeof good, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    char bad[8][96];
    snprintf(bad[0], sizeof bad[0], "%s", "");
    snprintf(bad[1], sizeof bad[1], "%s", "garbage");
    snprintf(bad[2], sizeof bad[2], "%s:", good);   /* DEV:INO: */
    snprintf(bad[3], sizeof bad[3], "%sx", good);   /* trailing junk */
    snprintf(bad[4], sizeof bad[4], " %s", good);   /* leading space */
    snprintf(bad[5], sizeof bad[5], "%llu", (unsigned long long)st.st_dev);
    snprintf(bad[6], sizeof bad[6], ":%llu", (unsigned long long)st.st_ino);
    snprintf(bad[7], sizeof bad[7], "%llu:99999999999999999999999",
             (unsigned long long)st.st_dev);
    for (int i = 0; i < 8; i++) {
        setenv("JOURNAL_STREAM", bad[i], 1);
        zpf_log_init(&log, f.fd, ZPF_LOG_INFO);
        assert_false(log.journal);
    }
    setenv("JOURNAL_STREAM", good, 1);
    zpf_log_init(&log, f.fd, ZPF_LOG_INFO);
    assert_true(log.journal);
    tmp_close(&f);
}

/* ---- quoting ------------------------------------------------------------ */

static void test_quote_table(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"127.0.0.1:7947", "127.0.0.1:7947"},
        {"z\xc3\xbcrich", "z\xc3\xbcrich"},
        {"", "\"\""},
        {"a b", "\"a b\""},
        {"a\"b", "\"a\\\"b\""},
        {"a=b", "\"a=b\""},
        {"a\\b", "\"a\\\\b\""},
        {"l1\nl2\r\tx", "\"l1\\nl2\\r\\tx\""},
        {"\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\""},
        {"\x1b[2J", "\"\\u001b[2J\""},
    };
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(zpf_log_quote(cases[i].in, buf, sizeof buf),
                            cases[i].out);
    assert_string_equal(zpf_log_quote(NULL, buf, sizeof buf), "\"\"");
    assert_ptr_equal(zpf_log_quote("x", buf, sizeof buf), buf);
}

static void test_quote_truncation(void **state)
{
    (void)state;
    char buf[32];
    /* Fits exactly: 9 bytes and the NUL. */
    assert_string_equal(zpf_log_quote("abcdefghi", buf, 10), "abcdefghi");
    /* One more and it is cut, quoted, marked. */
    assert_string_equal(zpf_log_quote("abcdefghij", buf, 10), "\"abcd...\"");
    assert_string_equal(zpf_log_quote("abcdefghij", buf, 8), "\"ab...\"");
    /* The cut never splits an escape ... */
    assert_string_equal(zpf_log_quote("ab\"cdef", buf, 9), "\"ab...\"");
    assert_string_equal(zpf_log_quote("ab\x01\x02xxxxx", buf, 12),
                        "\"ab...\"");
    assert_string_equal(zpf_log_quote("ab\x01\x02xxxxx", buf, 14),
                        "\"ab\\u0001...\"");
    /* ... nor a UTF-8 sequence. */
    static const char E4[] = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"; /* 4 e-acute */
    assert_string_equal(zpf_log_quote(E4, buf, 9), E4);
    assert_string_equal(zpf_log_quote(E4, buf, 8), "\"\xc3\xa9...\"");
    static const char EURO3[] = "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac";
    assert_string_equal(zpf_log_quote(EURO3, buf, 9), "\"\xe2\x82\xac...\"");
    assert_string_equal(zpf_log_quote(EURO3, buf, 8), "\"...\"");
    /* Too small to say anything. */
    memset(buf, 'x', sizeof buf);
    assert_string_equal(zpf_log_quote("abc", buf, ZPF_LOG_QUOTE_MIN - 1), "");
    assert_string_equal(zpf_log_quote("abcdefgh", buf, ZPF_LOG_QUOTE_MIN),
                        "\"...\"");
    memset(buf, 'x', sizeof buf);
    assert_string_equal(zpf_log_quote("abc", buf, 0), "");
    assert_int_equal(buf[0], 'x');
    assert_string_equal(zpf_log_quote("abc", NULL, 10), "");
}

/* Quote random byte strings, read them back with the logfmt reader: the
 * value survives exactly when it fits, and the result is always one
 * well-formed value. */
static void test_quote_roundtrip(void **state)
{
    (void)state;
    uint64_t x = 0x9e3779b97f4a7c15u;
    char in[128], buf[600], line[700];
    struct kv kv[2];
    size_t nkv;
    for (int iter = 0; iter < 20000; iter++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = x % sizeof in;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            in[i] = (char)(x % 255 + 1); /* no NUL */
        }
        in[n] = '\0';
        size_t cap = (iter & 1) ? sizeof buf : ZPF_LOG_QUOTE_MIN + x % 64;
        zpf_log_quote(in, buf, cap);
        assert_true(strlen(buf) < cap);
        int ln = snprintf(line, sizeof line, "k=%s", buf);
        assert_true(logfmt_parse(line, (size_t)ln, kv, 2, &nkv));
        assert_int_equal(nkv, 1);
        if (strcmp(kv[0].val, in) == 0)
            continue;
        /* Cut: what is left is a prefix of the input, then "...". */
        assert_false(iter & 1);
        size_t vl = strlen(kv[0].val);
        assert_true(vl >= 3);
        assert_string_equal(kv[0].val + vl - 3, "...");
        assert_memory_equal(kv[0].val, in, vl - 3);
    }
}

/* ---- truncation --------------------------------------------------------- */

#define PREFIX "ts=2026-11-22T10:00:00.123Z level=info msg=x "

static void test_line_exactly_at_bound(void **state)
{
    struct tctx *t = *state;
    static char v[ZPF_LOG_LINE_MAX];
    size_t fill = ZPF_LOG_LINE_MAX - 1 - (sizeof PREFIX - 1) - 2;
    memset(v, 'a', fill);
    v[fill] = '\0';
    zpf_log(&t->log, ZPF_LOG_INFO, "x", "k=%s", v);
    one_line(t);
    assert_int_equal(t->got_len, ZPF_LOG_LINE_MAX);
    assert_null(strstr(t->got, "truncated"));

    v[fill] = 'a';
    v[fill + 1] = '\0';
    zpf_log(&t->log, ZPF_LOG_INFO, "x", "k=%s", v);
    one_line(t);
    assert_true(t->got_len <= ZPF_LOG_LINE_MAX);
    assert_string_equal(val(t, "truncated"), "true");
    assert_non_null(strstr(t->got, "a... truncated=true\n"));
}

static void test_truncation_closes_quote(void **state)
{
    struct tctx *t = *state;
    static char v[3 * ZPF_LOG_LINE_MAX], q[4 * ZPF_LOG_LINE_MAX];
    memset(v, 'b', sizeof v - 1);
    v[100] = ' ';
    zpf_log(&t->log, ZPF_LOG_INFO, "x", "first=1 k=%s",
            zpf_log_quote(v, q, sizeof q));
    one_line(t);
    assert_string_equal(val(t, "first"), "1");
    assert_string_equal(val(t, "truncated"), "true");
    assert_non_null(strstr(t->got, "bbb...\" truncated=true\n"));
}

static void test_truncation_never_splits_escape(void **state)
{
    struct tctx *t = *state;
    static char v[2 * ZPF_LOG_LINE_MAX], q[12 * ZPF_LOG_LINE_MAX];
    /* Each control byte is a 6-byte escape; shift the value by 0..11
     * bytes so the cut falls at every offset within an escape. */
    for (size_t shift = 0; shift < 12; shift++) {
        memset(v, '\x01', sizeof v - 1);
        v[sizeof v - 1] = '\0';
        memset(v, 'y', shift);
        zpf_log(&t->log, ZPF_LOG_INFO, "x", "k=%s",
                zpf_log_quote(v, q, sizeof q));
        one_line(t);
        assert_string_equal(val(t, "truncated"), "true");
        assert_true(t->got_len > ZPF_LOG_LINE_MAX - 32);
    }
}

static void test_truncation_never_splits_utf8(void **state)
{
    struct tctx *t = *state;
    static char v[2 * ZPF_LOG_LINE_MAX];
    for (size_t shift = 0; shift < 4; shift++) {
        size_t i = 0;
        memset(v, 'y', shift);
        for (i = shift; i + 3 < sizeof v - 1; i += 3)
            memcpy(v + i, "\xe2\x82\xac", 3); /* the euro sign */
        v[i] = '\0';
        zpf_log(&t->log, ZPF_LOG_INFO, "x", "k=%s", v); /* unquoted */
        one_line(t); /* checks the UTF-8 */
        assert_string_equal(val(t, "truncated"), "true");
        /* In a quoted message too. */
        zpf_log(&t->log, ZPF_LOG_INFO, v, NULL);
        one_line(t);
        assert_string_equal(val(t, "truncated"), "true");
    }
}

static void test_long_message(void **state)
{
    struct tctx *t = *state;
    static char m[2 * ZPF_LOG_LINE_MAX];
    memset(m, 'm', sizeof m - 1);
    m[10] = ' ';
    zpf_log(&t->log, ZPF_LOG_INFO, m, "after=1");
    one_line(t);
    assert_string_equal(val(t, "truncated"), "true");
    assert_null(val(t, "after"));
    assert_memory_equal(val(t, "msg"), "mmmmmmmmmm mmm", 14);
}

/* ---- writing ------------------------------------------------------------ */

static void test_broken_pipe_ignored(void **state)
{
    struct tctx *t = *state;
    close(t->rfd);
    t->rfd = -1;
    errno = 0;
    zpf_log(&t->log, ZPF_LOG_ERROR, "nobody listens", NULL); /* EPIPE */
    assert_int_equal(errno, 0);

    /* A descriptor that is not open at all. */
    int fd = open("/dev/null", O_WRONLY);
    assert_true(fd >= 0);
    close(fd);
    struct zpf_log log;
    zpf_log_init(&log, fd, ZPF_LOG_DEBUG);
    zpf_log(&log, ZPF_LOG_ERROR, "closed", NULL);
    zpf_log_init(&log, -1, ZPF_LOG_DEBUG);
    zpf_log(&log, ZPF_LOG_ERROR, "off", NULL);
    assert_false(zpf_log_enabled(&log, ZPF_LOG_ERROR));
    zpf_log(NULL, ZPF_LOG_ERROR, "null", NULL);
    zpf_log_init(NULL, 2, ZPF_LOG_DEBUG);
    assert_false(zpf_log_enabled(NULL, ZPF_LOG_ERROR));
}

/* Several processes logging long lines into one pipe: every line read back
 * is whole, because each is one write of at most PIPE_BUF bytes. */
static void test_concurrent_writers(void **state)
{
    struct tctx *t = *state;
    enum { WRITERS = 4, LINES = 200 };
    fcntl(t->rfd, F_SETFL, 0); /* blocking reads now */
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            static char v[ZPF_LOG_LINE_MAX];
            memset(v, 'a' + w, sizeof v - 1);
            for (int i = 0; i < LINES; i++)
                zpf_log(&t->log, ZPF_LOG_INFO, "x", "w=%d i=%d v=%s", w, i,
                        v);
            _exit(0);
        }
    }
    close(t->wfd);
    t->wfd = -1;

    static char all[WRITERS * LINES * ZPF_LOG_LINE_MAX];
    size_t len = 0;
    ssize_t r;
    while ((r = read(t->rfd, all + len, sizeof all - len)) > 0)
        len += (size_t)r;
    for (int w = 0; w < WRITERS; w++) {
        int st;
        assert_int_equal(waitpid(pids[w], &st, 0), pids[w]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    int seen[WRITERS] = {0};
    size_t lines = 0;
    for (size_t off = 0; off < len;) {
        char *nl = memchr(all + off, '\n', len - off);
        assert_non_null(nl);
        size_t n = (size_t)(nl - (all + off));
        assert_true(n + 1 <= ZPF_LOG_LINE_MAX);
        assert_true(logfmt_parse(all + off, n, t->kv, 32, &t->nkv));
        int w = atoi(val(t, "w"));
        assert_true(w >= 0 && w < WRITERS);
        assert_int_equal(atoi(val(t, "i")), seen[w]);
        seen[w]++;
        const char *v = val(t, "v");
        size_t vl = strlen(v);
        assert_true(vl > 3);
        assert_string_equal(v + vl - 3, "...");
        for (size_t k = 0; k + 3 < vl; k++)
            assert_int_equal(v[k], 'a' + w);
        assert_string_equal(val(t, "truncated"), "true");
        lines++;
        off += n + 1;
    }
    assert_int_equal(lines, WRITERS * LINES);
}

/* ---- rate limiter ------------------------------------------------------- */

static void test_ratelimit_arithmetic(void **state)
{
    (void)state;
    struct zpf_ratelimit rl = ZPF_RATELIMIT_INIT;
    uint32_t sup = 99;
    /* burst 3 per 1000 ms: a token every 333.3 ms */
    assert_true(zpf_ratelimit_allow(&rl, 1000, 3, 1000, &sup));
    assert_int_equal(sup, 0);
    assert_true(zpf_ratelimit_allow(&rl, 1000, 3, 1000, &sup));
    assert_true(zpf_ratelimit_allow(&rl, 1000, 3, 1000, &sup));
    assert_false(zpf_ratelimit_allow(&rl, 1000, 3, 1000, &sup));
    assert_int_equal(sup, 0);
    assert_false(zpf_ratelimit_allow(&rl, 1333, 3, 1000, &sup));
    assert_int_equal(rl.suppressed, 2);
    /* 334 ms earn one token (3 * 334 / 1000 = 1.002) */
    assert_true(zpf_ratelimit_allow(&rl, 1334, 3, 1000, &sup));
    assert_int_equal(sup, 2);
    assert_int_equal(rl.suppressed, 0);
    assert_false(zpf_ratelimit_allow(&rl, 1334, 3, 1000, &sup));
    /* Tokens are owed exactly: the next is due at 1666.7 ms, so 1667. */
    assert_false(zpf_ratelimit_allow(&rl, 1666, 3, 1000, &sup));
    assert_true(zpf_ratelimit_allow(&rl, 1667, 3, 1000, &sup));
    assert_int_equal(sup, 2);
    /* A long quiet spell refills the bucket, but only to `burst`. */
    for (int i = 0; i < 3; i++)
        assert_true(zpf_ratelimit_allow(&rl, 100000, 3, 1000, &sup));
    assert_false(zpf_ratelimit_allow(&rl, 100000, 3, 1000, &sup));
    assert_int_equal(sup, 0);
}

static void test_ratelimit_long_run_rate(void **state)
{
    (void)state;
    struct zpf_ratelimit rl = ZPF_RATELIMIT_INIT;
    uint64_t allowed = 0, reported = 0;
    uint32_t sup;
    /* One event per ms for 100 s, 7 allowed per 1000 ms. */
    for (uint64_t now = 0; now < 100000; now++) {
        if (zpf_ratelimit_allow(&rl, now, 7, 1000, &sup)) {
            allowed++;
            reported += sup;
        }
    }
    /* The burst, then exactly 7 per second: 7 + floor(99999 * 7 / 1000). */
    assert_int_equal(allowed, 7 + 699);
    assert_int_equal(allowed + reported + rl.suppressed, 100000);
}

static void test_ratelimit_edges(void **state)
{
    (void)state;
    struct zpf_ratelimit rl = ZPF_RATELIMIT_INIT;
    uint32_t sup;
    /* per_ms 0: no limit, nothing suppressed */
    for (int i = 0; i < 1000; i++)
        assert_true(zpf_ratelimit_allow(&rl, 5, 1, 0, &sup));
    assert_int_equal(sup, 0);
    /* burst 0: nothing allowed, everything counted */
    memset(&rl, 0, sizeof rl);
    for (int i = 0; i < 10; i++)
        assert_false(zpf_ratelimit_allow(&rl, (uint64_t)i * 5000, 0, 1000,
                                          &sup));
    assert_int_equal(rl.suppressed, 10);
    /* NULL limiter allows; NULL out still resets the count */
    assert_true(zpf_ratelimit_allow(NULL, 0, 1, 1000, &sup));
    memset(&rl, 0, sizeof rl);
    assert_true(zpf_ratelimit_allow(&rl, 0, 1, 1000, NULL));
    assert_false(zpf_ratelimit_allow(&rl, 0, 1, 1000, NULL));
    assert_true(zpf_ratelimit_allow(&rl, 1000, 1, 1000, NULL));
    assert_int_equal(rl.suppressed, 0);
    /* The clock going back neither refills nor locks the bucket. */
    memset(&rl, 0, sizeof rl);
    assert_true(zpf_ratelimit_allow(&rl, 50000, 1, 1000, &sup));
    assert_false(zpf_ratelimit_allow(&rl, 10, 1, 1000, &sup));
    assert_false(zpf_ratelimit_allow(&rl, 500, 1, 1000, &sup));
    assert_true(zpf_ratelimit_allow(&rl, 1010, 1, 1000, &sup));
    assert_int_equal(sup, 2);
    /* Saturation instead of wrapping to zero. */
    memset(&rl, 0, sizeof rl);
    rl.debt = 1000; /* the one token of burst 1 per 1000 ms is spent */
    rl.suppressed = UINT32_MAX - 1;
    for (int i = 0; i < 3; i++)
        assert_false(zpf_ratelimit_allow(&rl, 0, 1, 1000, &sup));
    assert_int_equal(rl.suppressed, UINT32_MAX);
    assert_true(zpf_ratelimit_allow(&rl, 1000, 1, 1000, &sup));
    assert_int_equal(sup, UINT32_MAX);
    /* Extreme arguments do not overflow. */
    memset(&rl, 0, sizeof rl);
    assert_true(zpf_ratelimit_allow(&rl, UINT64_MAX - 1, UINT32_MAX,
                                    UINT32_MAX, &sup));
    assert_true(zpf_ratelimit_allow(&rl, UINT64_MAX, UINT32_MAX,
                                    UINT32_MAX, &sup));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_format_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timestamp_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_bytes_in_kv_escaped,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_errno_preserved, setup, teardown),
        cmocka_unit_test(test_level_names),
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_detected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_journal_not_detected, setup,
                                        teardown),
        cmocka_unit_test(test_quote_table),
        cmocka_unit_test(test_quote_truncation),
        cmocka_unit_test(test_quote_roundtrip),
        cmocka_unit_test_setup_teardown(test_line_exactly_at_bound, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_truncation_closes_quote, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_truncation_never_splits_escape,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation_never_splits_utf8,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_pipe_ignored, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup,
                                        teardown),
        cmocka_unit_test(test_ratelimit_arithmetic),
        cmocka_unit_test(test_ratelimit_long_run_rate),
        cmocka_unit_test(test_ratelimit_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
