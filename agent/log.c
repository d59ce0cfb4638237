/*
 * The logger: logfmt lines, one write(2) each.
 *
 * A line is assembled in a stack buffer of ZPF_LOG_LINE_MAX bytes and
 * written at once; nothing is buffered between calls, so a crash loses at
 * most the line being built and two processes sharing stderr never mix
 * their lines.  The caller's key=value text is formatted into a second stack
 * buffer first and then copied with control bytes escaped: a value that was
 * not passed through zpf_log_quote() may break the line's fields, but never
 * its framing (one event, one line).
 *
 * Truncation keeps the line parsable: the cut backs off to the start of an
 * escape or UTF-8 sequence, closes a quoted value it lands in, and appends
 * "... truncated=true".  The quote state is found by rescanning the line,
 * which costs nothing on lines that fit.
 *
 * The rate limiter is a token bucket kept as a debt in token-milliseconds
 * (the generic cell rate algorithm): counting in those units needs no
 * division, so whole-token rounding cannot make the rate drift, as it would
 * with 1000 / 7 ms per token.
 */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const LEVEL_NAMES[] = {
    [ZPF_LOG_ERROR] = "error",   [ZPF_LOG_WARNING] = "warning",
    [ZPF_LOG_NOTICE] = "notice", [ZPF_LOG_INFO] = "info",
    [ZPF_LOG_DEBUG] = "debug",
};

/* What a cut line ends with, after closing an open quote. */
#define TRUNC_MARK "... truncated=true"

/* What a cut line gives up at its end for a closing quote, TRUNC_MARK and
 * the newline. */
#define TAIL_RESERVE (1 + sizeof TRUNC_MARK - 1 + 1)

/* Longest escape zpf_log_quote() or the control-byte guard emits: \u00XX. */
#define ESC_MAX 6

static int clamp_level(int level)
{
    if (level < ZPF_LOG_ERROR)
        return ZPF_LOG_ERROR;
    if (level > ZPF_LOG_DEBUG)
        return ZPF_LOG_DEBUG;
    return level;
}

/* JOURNAL_STREAM is "DEV:INO", both decimal (systemd.exec(5)). */
static bool is_journal(int fd)
{
    const char *v = getenv("JOURNAL_STREAM");
    if (v == NULL || fd < 0)
        return false;
    char *end;
    errno = 0;
    if (*v < '0' || *v > '9')
        return false;
    unsigned long long dev = strtoull(v, &end, 10);
    if (errno != 0 || *end != ':')
        return false;
    const char *p = end + 1;
    if (*p < '0' || *p > '9')
        return false;
    unsigned long long ino = strtoull(p, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev &&
           (unsigned long long)st.st_ino == ino;
}

void zpf_log_init(struct zpf_log *log, int fd, int level)
{
    if (log == NULL)
        return;
    int saved = errno;
    log->fd = fd;
    log->level = clamp_level(level);
    log->journal = is_journal(fd);
    log->now_unix_ms = NULL;
    errno = saved;
}

int zpf_log_level_parse(const char *s)
{
    if (s == NULL)
        return -1;
    for (int l = ZPF_LOG_ERROR; l <= ZPF_LOG_DEBUG; l++)
        if (strcasecmp(s, LEVEL_NAMES[l]) == 0)
            return l;
    return -1;
}

const char *zpf_log_level_name(int level)
{
    if (level < ZPF_LOG_ERROR || level > ZPF_LOG_DEBUG)
        return "unknown";
    return LEVEL_NAMES[level];
}

bool zpf_log_enabled(const struct zpf_log *log, int level)
{
    return log != NULL && log->fd >= 0 && clamp_level(level) <= log->level;
}

/* The escape for byte c inside a quoted value, or 0 if c stands as is. */
static size_t escape(unsigned char c, char out[ESC_MAX + 1])
{
    switch (c) {
    case '"': return (size_t)snprintf(out, ESC_MAX + 1, "\\\"");
    case '\\': return (size_t)snprintf(out, ESC_MAX + 1, "\\\\");
    case '\n': return (size_t)snprintf(out, ESC_MAX + 1, "\\n");
    case '\r': return (size_t)snprintf(out, ESC_MAX + 1, "\\r");
    case '\t': return (size_t)snprintf(out, ESC_MAX + 1, "\\t");
    }
    if (c < 0x20 || c == 0x7f)
        return (size_t)snprintf(out, ESC_MAX + 1, "\\u%04x", c);
    return 0;
}

/* Length of the UTF-8 sequence starting at s (at most n bytes), counting
 * only continuation bytes that are present, so it never reads past n and
 * an invalid sequence is taken one byte at a time. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t want;
    if (s[0] < 0xc0)
        return 1;
    else if (s[0] < 0xe0)
        want = 2;
    else if (s[0] < 0xf0)
        want = 3;
    else
        want = 4;
    size_t k = 1;
    while (k < want && k < n && (s[k] & 0xc0) == 0x80)
        k++;
    return k;
}

static bool needs_quotes(const char *s)
{
    if (*s == '\0')
        return true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == 0x7f || *p == '"' || *p == '=' || *p == '\\')
            return true;
    return false;
}

const char *zpf_log_quote(const char *s, char *buf, size_t cap)
{
    if (buf == NULL || cap == 0)
        return "";
    if (cap < ZPF_LOG_QUOTE_MIN) {
        buf[0] = '\0';
        return buf;
    }
    if (s == NULL)
        s = "";
    size_t n = strlen(s);
    if (!needs_quotes(s) && n < cap) {
        memcpy(buf, s, n + 1);
        return buf;
    }

    /* Quoted length in full, to know whether to cut. */
    const unsigned char *u = (const unsigned char *)s;
    char esc[ESC_MAX + 1];
    size_t full = 2;
    for (size_t i = 0; i < n; i++) {
        size_t e = escape(u[i], esc);
        full += e ? e : 1;
    }
    /* Cut: keep room for `..."` and the NUL. */
    size_t limit = full < cap ? cap - 2 : cap - 5;

    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; i < n;) {
        size_t e = escape(u[i], esc);
        if (e) {
            if (o + e > limit)
                break;
            memcpy(buf + o, esc, e);
            o += e;
            i++;
            continue;
        }
        size_t k = utf8_len(u + i, n - i);
        if (o + k > limit)
            break;
        memcpy(buf + o, s + i, k);
        o += k;
        i += k;
    }
    if (full >= cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* A line being built; `cap` keeps the last byte for the newline. */
struct line {
    char buf[ZPF_LOG_LINE_MAX];
    size_t len;
    size_t cap;
    bool cut;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (l->cut)
        return;
    if (n > l->cap - l->len) {
        n = l->cap - l->len;
        l->cut = true;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Copy the caller's key=value text, escaping control bytes so that it can
 * never start a line of its own. */
static void put_sanitized(struct line *l, const char *s, size_t n)
{
    char esc[ESC_MAX + 1];
    for (size_t i = 0; i < n && !l->cut; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            size_t e = escape(c, esc);
            if (e > l->cap - l->len) {
                l->cut = true;
                break;
            }
            put(l, esc, e);
        } else {
            put(l, s + i, 1);
        }
    }
}

/* End a cut line: back off to a point that splits no escape and no UTF-8
 * sequence, close an open quote, add the marker. */
static void finish_cut(struct line *l)
{
    size_t len = l->len;
    if (len > sizeof l->buf - TAIL_RESERVE)
        len = sizeof l->buf - TAIL_RESERVE;
    bool inq = false;
    for (size_t i = 0; i < len;) {
        char c = l->buf[i];
        if (inq && c == '\\') {
            size_t e = (i + 1 < len && l->buf[i + 1] == 'u') ? ESC_MAX : 2;
            if (i + e > len) {
                len = i;
                break;
            }
            i += e;
            continue;
        }
        if (c == '"')
            inq = !inq;
        i++;
    }
    /* Drop a UTF-8 sequence that the cut left incomplete. */
    size_t j = len;
    while (j > 0 && ((unsigned char)l->buf[j - 1] & 0xc0) == 0x80)
        j--;
    if (j > 0 && (unsigned char)l->buf[j - 1] >= 0xc0) {
        const unsigned char *lead = (const unsigned char *)l->buf + j - 1;
        size_t want = lead[0] < 0xe0 ? 2 : lead[0] < 0xf0 ? 3 : 4;
        if (j - 1 + want > len)
            len = j - 1;
    }
    l->len = len;
    l->cap = sizeof l->buf - 1; /* the newline */
    l->cut = false;
    if (inq) {
        puts_(l, "...\"");
        puts_(l, &TRUNC_MARK[3]); /* the dots went inside */
    } else {
        puts_(l, TRUNC_MARK);
    }
}

static uint64_t realtime_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void put_timestamp(struct line *l, uint64_t ms)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&sec, &tm) == NULL)
        memset(&tm, 0, sizeof tm);
    char ts[64];
    int n = snprintf(ts, sizeof ts, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03uZ ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (unsigned)(ms % 1000));
    if (n > 0)
        put(l, ts, (size_t)n < sizeof ts ? (size_t)n : sizeof ts - 1);
}

void zpf_logv(struct zpf_log *log, int level, const char *msg,
              const char *kvfmt, va_list ap)
{
    if (!zpf_log_enabled(log, level))
        return;
    int saved = errno;
    level = clamp_level(level);

    struct line l;
    l.len = 0;
    l.cap = sizeof l.buf - 1;
    l.cut = false;

    if (log->journal) {
        char pri[8];
        int n = snprintf(pri, sizeof pri, "<%d>", level);
        put(&l, pri, (size_t)n);
    } else {
        put_timestamp(&l, log->now_unix_ms ? log->now_unix_ms()
                                           : realtime_ms());
    }
    puts_(&l, "level=");
    puts_(&l, LEVEL_NAMES[level]);
    puts_(&l, " msg=");
    /* A message longer than the line is cut by put() below anyway. */
    char qmsg[ZPF_LOG_LINE_MAX];
    puts_(&l, zpf_log_quote(msg, qmsg, sizeof qmsg));

    if (kvfmt != NULL && *kvfmt != '\0') {
        char kv[ZPF_LOG_LINE_MAX];
        int n = vsnprintf(kv, sizeof kv, kvfmt, ap);
        if (n > 0) {
            size_t kn = (size_t)n < sizeof kv ? (size_t)n : sizeof kv - 1;
            puts_(&l, " ");
            put_sanitized(&l, kv, kn);
            if ((size_t)n >= sizeof kv)
                l.cut = true;
        }
    }
    if (l.cut)
        finish_cut(&l);
    l.buf[l.len++] = '\n';

    ssize_t w;
    do
        w = write(log->fd, l.buf, l.len);
    while (w < 0 && errno == EINTR);
    errno = saved;
}

void zpf_log(struct zpf_log *log, int level, const char *msg,
             const char *kvfmt, ...)
{
    va_list ap;
    va_start(ap, kvfmt);
    zpf_logv(log, level, msg, kvfmt, ap);
    va_end(ap);
}

bool zpf_ratelimit_allow(struct zpf_ratelimit *rl, uint64_t now_ms,
                         uint32_t burst, uint32_t per_ms,
                         uint32_t *suppressed)
{
    if (suppressed != NULL)
        *suppressed = 0;
    if (rl == NULL)
        return true;
    if (per_ms != 0) {
        if (now_ms < rl->last_ms)
            rl->last_ms = now_ms;
        uint64_t elapsed = now_ms - rl->last_ms;
        rl->last_ms = now_ms;
        /* At most (2^32 - 1)^2, so debt + per_ms below cannot wrap. */
        uint64_t cap = (uint64_t)burst * per_ms;
        if (elapsed >= per_ms) {
            rl->debt = 0; /* a whole period pays back a full bucket */
        } else {
            uint64_t paid = elapsed * burst; /* < 2^64: elapsed < per_ms */
            rl->debt = rl->debt > paid ? rl->debt - paid : 0;
        }
        if (rl->debt > cap)
            rl->debt = cap; /* burst or per_ms changed between calls */
        if (rl->debt + per_ms > cap) {
            if (rl->suppressed < UINT32_MAX)
                rl->suppressed++;
            return false;
        }
        rl->debt += per_ms;
    }
    if (suppressed != NULL)
        *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return true;
}
