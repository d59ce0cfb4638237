/*
 * The configuration file: YAML in, a validated struct zpf_conf out.
 *
 * libyaml's document API turns the text into a node tree that keeps each
 * node's position, so every complaint can name FILE:LINE:COL.  The tree is
 * then read against a schema: one table per section, one row per key
 * (name, type, where the value goes, range, default, live or not, a line
 * of documentation).  The types know how to parse, free and compare their
 * values, so loading, freeing, the SIGHUP diff and zpf_conf_keys() are all
 * loops over the same tables: a new key is one row, a new section one row
 * of SECTIONS and its table.  Checks that span keys (probe_timeout below
 * probe_interval, exactly one source of keys) are a "finish" function per
 * section, run after the whole document is read so key order never
 * matters.
 *
 * Defaults are written in the tables as the YAML text a user would write
 * and pass through the same parsers, so a default is always a legal value
 * and the documentation cannot drift from the behaviour.  The gossip
 * tunables' defaults restate zpf_config_default(); a test pins the two
 * together.
 *
 * The input is hostile until read: flow nesting is bounded before libyaml
 * sees the text (its scanner is quadratic in the depth), every collection
 * is bounded before it is walked (so duplicate detection stays linear or
 * over a small bound), nothing recurses on the document's shape (aliases
 * may make it cyclic), user text is escaped and truncated before it
 * appears in a message, and inline key text is never quoted and is wiped
 * from the document.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <sodium.h>
#include <yaml.h>

#include "conf.h"

#include "errbuf.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define MS_S 1000u
#define MS_M (60u * MS_S)
#define MS_H (60u * MS_M)
#define MS_D (24u * MS_H)

/* Protocol intervals: under 10 ms the event loop's timer granularity and
 * per-tick work dominate; over 10 min a failure goes unseen longer than any
 * operator would accept. */
#define INTERVAL_MIN_MS 10u
#define INTERVAL_MAX_MS (10u * MS_M)
/* Multipliers and fan-outs: beyond 64 traffic grows with nothing gained. */
#define COUNT_MAX 64u
#define INDIRECT_MAX 16u /* zpf_node_new() refuses more */
/* A datagram must hold the header and a few facts after the seal takes its
 * share; 65000 stays under UDP's 65507-byte payload limit. */
#define BUDGET_MIN 512u
#define BUDGET_MAX 65000u
/* 2^24 members is far past any SWIM deployment; the bound only stops a
 * typo from promising the core a table it could never fill. */
#define MEMBERS_MAX (1u << 24)
/* Tombstones: under a minute a flapping node is mistaken for a new one;
 * 30 days is as long as uint32 milliseconds comfortably hold (49 days). */
#define TOMBSTONE_MIN_MS MS_M
#define TOMBSTONE_MAX_MS (30u * MS_D)
/* A full-state exchange more than once a second swamps TCP at scale. */
#define PUSHPULL_MIN_MS MS_S
#define PUSHPULL_MAX_MS MS_H
#define LEAVE_MAX_MS (5u * MS_M)   /* a stop that waits longer looks hung */
#define RETRY_MIN_MS MS_S          /* retrying faster hammers dead seeds */
#define RETRY_MAX_MS MS_H
/* Checks: faster than 100 ms is a busy loop of fork/exec; an hour-long
 * interval means the check is not gating anything. */
#define CHECK_INTERVAL_MIN_MS 100u
#define CHECK_INTERVAL_MAX_MS MS_H
#define METRICS_INTERVAL_MIN_MS MS_S /* node_exporter scrapes every 15 s */
#define METRICS_INTERVAL_MAX_MS MS_H

/* Cloud ids: Azure's are 36-byte UUIDs, others shorter; 128 is ample. */
#define LABEL_MAX 128u
#define GROUP_MAX 64u  /* 32 locally, longer from a directory service */
/* Tags travel in every member's metadata (ZPF_META_MAX = 512 bytes) along
 * with the zone and provider, so their total is held well under it. */
#define TAGS_MAX 32u
#define TAG_KEY_MAX 64u
#define TAG_VALUE_MAX 256u
#define TAGS_BYTES_MAX 384u
#define JOIN_MAX 64u   /* seeds: a handful is enough, more is a typo */
#define CHECKS_MAX 64u
#define ARGV_MAX 64u
#define ARG_BYTES_MAX 4096u
#define PATH_BYTES_MAX ((uint64_t)PATH_MAX - 1)
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define KEYRING_FILE_MAX (64 * 1024) /* 8 keys and comments fit many times */
#define KEY_B64_MAX 128 /* longer cannot be 32 bytes, spare the decoder */
#define FIELDS_MAX 64   /* keys per table: the width of struct seen */
#define QUOTE_MAX 64    /* bytes of user text shown in a message */
#define QBUF (QUOTE_MAX * 4 + 4)
#define SUGGEST_MAX 2   /* edit distance for "did you mean" */
#define DNS_NAME_MAX 253
/* libyaml's scanner does work proportional to the flow nesting depth for
 * every token, so a megabyte of "[[[[" takes minutes.  A configuration
 * nests flow collections two or three deep. */
#define FLOW_DEPTH_MAX 64

/* What an address looks like, for "expected ..." messages: an unquoted
 * [v6] is a YAML list, the commonest mistake. */
#define HOSTPORT "host:port, or '[v6]:port' in quotes"

static const char KEYGEN[] = "zpfctl keygen";

/* --- the parser and its messages ------------------------------------------ */

struct parser {
    yaml_document_t *doc;
    const char *file;   /* for messages */
    const char *dir_of; /* relative paths are resolved next to this */
    char *err;
    size_t errlen;
    bool failed;
    char path[512]; /* dotted key of the value being read */
    size_t plen;
    /* Per check: the item, its interval and its timeout node, kept for the
     * timeout < interval check made once health.* is known. */
    const yaml_node_t *check_at[CHECKS_MAX][3];
};

static size_t clamp_len(int k, size_t cap)
{
    if (k < 0)
        return 0;
    return (size_t)k < cap ? (size_t)k : cap - 1;
}

static int vfail(struct parser *p, int code, const yaml_mark_t *m,
                 const char *fmt, va_list ap)
{
    if (p->failed || p->err == NULL || p->errlen == 0) {
        p->failed = true;
        return code;
    }
    p->failed = true;
    size_t n = clamp_len(snprintf(p->err, p->errlen, "%s:%zu:%zu: ", p->file,
                                  m ? (size_t)m->line + 1 : 1,
                                  m ? (size_t)m->column + 1 : 1),
                         p->errlen);
    if (p->plen)
        n += clamp_len(snprintf(p->err + n, p->errlen - n, "%s: ", p->path),
                       p->errlen - n);
    vsnprintf(p->err + n, p->errlen - n, fmt, ap);
    return code;
}

static int fail(struct parser *p, const yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct parser *p, const yaml_node_t *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(p, ZPF_EINVAL, at ? &at->start_mark : NULL, fmt, ap);
    va_end(ap);
    return rc;
}

static int fail_code(struct parser *p, int code, const yaml_mark_t *m,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_code(struct parser *p, int code, const yaml_mark_t *m,
                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vfail(p, code, m, fmt, ap);
    va_end(ap);
    return rc;
}

static int nomem(struct parser *p)
{
    return fail_code(p, ZPF_ENOMEM, NULL, "out of memory");
}

static size_t path_add(struct parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static size_t path_add(struct parser *p, const char *fmt, ...)
{
    size_t old = p->plen;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(p->path + old, sizeof p->path - old, fmt, ap);
    va_end(ap);
    p->plen = old + clamp_len(k, sizeof p->path - old);
    return old;
}

static void path_cut(struct parser *p, size_t len)
{
    p->plen = len;
    p->path[len] = '\0';
}

/* User text as it may appear in a message: one line, at most QUOTE_MAX
 * bytes, anything but printable ASCII escaped. */
static const char *quote(char *dst, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len && i < QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    if (len > QUOTE_MAX) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
    return dst;
}

static bool visible(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

static bool is_control(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool text_is(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(s, word, len) == 0;
}

/* "1h", "1m30s", "500ms", "0s". */
static const char *fmt_dur(char *buf, size_t cap, uint64_t ms)
{
    static const struct { const char *unit; uint64_t ms; } U[] = {
        {"h", MS_H}, {"m", MS_M}, {"s", MS_S}, {"ms", 1}};
    size_t o = 0;
    buf[0] = '\0';
    if (ms == 0) {
        snprintf(buf, cap, "0s");
        return buf;
    }
    for (size_t i = 0; i < ARRAY_LEN(U); i++) {
        uint64_t n = ms / U[i].ms;
        ms %= U[i].ms;
        if (n)
            o += clamp_len(snprintf(buf + o, cap - o, "%llu%s",
                                    (unsigned long long)n, U[i].unit),
                           cap - o);
    }
    return buf;
}

/* --- YAML nodes ----------------------------------------------------------- */

static yaml_node_t *node_at(struct parser *p, int i)
{
    return yaml_document_get_node(p->doc, i);
}

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE ||
        n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    return len == 0 || text_is(s, len, "~") || text_is(s, len, "null") ||
           text_is(s, len, "Null") || text_is(s, len, "NULL");
}

static const char *found(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return is_null(n) ? "no value" : "a string";
    }
}

/* Explicit YAML tags (!!int, !custom) would change what a value means
 * behind the schema's back; only the defaults are accepted. */
static int check_tag(struct parser *p, const yaml_node_t *n)
{
    const char *want = n->type == YAML_MAPPING_NODE ? YAML_DEFAULT_MAPPING_TAG
                       : n->type == YAML_SEQUENCE_NODE
                           ? YAML_DEFAULT_SEQUENCE_TAG
                           : YAML_DEFAULT_SCALAR_TAG;
    if (n->tag == NULL || strcmp((const char *)n->tag, want) == 0)
        return 0;
    char q[QBUF];
    const char *t = (const char *)n->tag;
    return fail(p, n, "the YAML tag '%s' is not supported; remove it",
                quote(q, t, strlen(t)));
}

/* A scalar that may stand for a string: what is the expected type for the
 * message, def the default to mention when the value is missing. */
static int scalar_of(struct parser *p, const yaml_node_t *n, const char *what,
                     const char *def, const char **s, size_t *len)
{
    if (n->type != YAML_SCALAR_NODE)
        return fail(p, n, "expected %s, found %s", what, found(n));
    int rc = check_tag(p, n);
    if (rc)
        return rc;
    if (is_null(n)) {
        if (def && *def)
            return fail(p, n, "has no value; give one, or remove the line "
                              "to get the default (%s)", def);
        if (def)
            return fail(p, n, "has no value; give one, or remove the line "
                              "to get the default (\"\")");
        return fail(p, n, "has no value; expected %s", what);
    }
    *s = (const char *)n->data.scalar.value;
    *len = n->data.scalar.length;
    if (memchr(*s, '\0', *len))
        return fail(p, n, "contains a NUL character");
    return 0;
}

static int expect(struct parser *p, const yaml_node_t *n, yaml_node_type_t t,
                  const char *what)
{
    if (n->type != t)
        return fail(p, n, "expected %s, found %s", what, found(n));
    return check_tag(p, n);
}

static size_t seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static size_t map_len(const yaml_node_t *n)
{
    return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* --- value syntax shared with the public helpers -------------------------- */

enum dur_rc { DUR_OK, DUR_SYNTAX, DUR_BARE, DUR_FRACTION, DUR_ORDER,
              DUR_OVERFLOW };

static enum dur_rc dur_parse(const char *s, size_t len, uint64_t *ms)
{
    static const struct { const char *unit; uint64_t ms; } U[] = {
        {"h", MS_H}, {"ms", 1}, {"m", MS_M}, {"s", MS_S}};
    static const int rank[] = {4, 1, 3, 2}; /* largest first */
    size_t i = 0;
    if (len == 0)
        return DUR_SYNTAX;
    while (i < len && is_digit(s[i]))
        i++;
    if (i == len) {
        /* A bare 0 needs no unit (as in Go); any other number does. */
        for (size_t k = 0; k < len; k++)
            if (s[k] != '0')
                return DUR_BARE;
        *ms = 0;
        return DUR_OK;
    }
    uint64_t total = 0;
    int last = 5;
    i = 0;
    while (i < len) {
        if (!is_digit(s[i]))
            return DUR_SYNTAX;
        uint64_t n = 0;
        bool over = false;
        for (; i < len && is_digit(s[i]); i++) {
            unsigned d = (unsigned)(s[i] - '0');
            if (n > (UINT64_MAX - d) / 10)
                over = true;
            else
                n = n * 10 + d;
        }
        if (i < len && s[i] == '.')
            return DUR_FRACTION;
        size_t u;
        for (u = 0; u < ARRAY_LEN(U); u++) {
            size_t ul = strlen(U[u].unit);
            if (len - i >= ul && memcmp(s + i, U[u].unit, ul) == 0)
                break;
        }
        if (u == ARRAY_LEN(U))
            return DUR_SYNTAX;
        i += strlen(U[u].unit);
        if (rank[u] >= last)
            return DUR_ORDER;
        last = rank[u];
        if (over || n > UINT64_MAX / U[u].ms ||
            n * U[u].ms > UINT64_MAX - total)
            return DUR_OVERFLOW;
        total += n * U[u].ms;
    }
    *ms = total;
    return DUR_OK;
}

int zpf_conf_duration(const char *s, uint64_t *ms)
{
    if (s == NULL || ms == NULL)
        return ZPF_EINVAL;
    uint64_t v;
    enum dur_rc rc = dur_parse(s, strlen(s), &v);
    if (rc == DUR_OVERFLOW)
        return ZPF_E2BIG;
    if (rc != DUR_OK)
        return ZPF_EINVAL;
    *ms = v;
    return 0;
}

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
           c == '-' || c == '.' || c == '_';
}

/* Returns 0, ZPF_EINVAL with *why, or ZPF_ENOSPC. */
static int hostport(const char *s, size_t len, char *host, size_t cap,
                    uint16_t *port, uint16_t def, bool *bracketed,
                    const char **why)
{
    const char *h = s, *ps = NULL;
    size_t hl = len, pl = 0;
    bool br = false;
    if (len == 0) {
        *why = "it is empty";
        return ZPF_EINVAL;
    }
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL) {
            *why = "'[' without its ']'";
            return ZPF_EINVAL;
        }
        br = true;
        h = s + 1;
        hl = (size_t)(close - h);
        size_t rest = len - (size_t)(close + 1 - s);
        if (rest > 0) {
            if (close[1] != ':') {
                *why = "expected ':port' after ']'";
                return ZPF_EINVAL;
            }
            ps = close + 2;
            pl = rest - 1;
        }
    } else {
        const char *c = memchr(s, ':', len);
        if (c) {
            if (memchr(c + 1, ':', len - (size_t)(c + 1 - s))) {
                *why = "an IPv6 address needs brackets, as in [::1]:7946";
                return ZPF_EINVAL;
            }
            hl = (size_t)(c - s);
            ps = c + 1;
            pl = len - hl - 1;
        }
    }
    if (ps && pl == 0) {
        *why = "the port is empty";
        return ZPF_EINVAL;
    }
    if (hl == 0) {
        *why = "the host is empty";
        return ZPF_EINVAL;
    }
    if (br) {
        char v6[INET6_ADDRSTRLEN];
        uint8_t bin[16];
        if (hl >= sizeof v6) {
            *why = "the part in brackets is not an IPv6 address";
            return ZPF_EINVAL;
        }
        memcpy(v6, h, hl);
        v6[hl] = '\0';
        if (inet_pton(AF_INET6, v6, bin) != 1) {
            *why = "the part in brackets is not an IPv6 address";
            return ZPF_EINVAL;
        }
    } else {
        if (hl > DNS_NAME_MAX) {
            *why = "the host name is longer than 253 bytes";
            return ZPF_EINVAL;
        }
        for (size_t i = 0; i < hl; i++)
            if (!host_char(h[i])) {
                *why = "a host name has only letters, digits, '-', '.' "
                       "and '_'";
                return ZPF_EINVAL;
            }
    }
    unsigned long v = def;
    if (ps) {
        v = 0;
        for (size_t i = 0; i < pl; i++) {
            if (!is_digit(ps[i]) || pl > 5) {
                v = 0;
                break;
            }
            v = v * 10 + (unsigned long)(ps[i] - '0');
        }
        if (v < 1 || v > 65535) {
            *why = "the port must be a number from 1 to 65535";
            return ZPF_EINVAL;
        }
    } else if (def == 0) {
        *why = "a port is required, as in host:8080";
        return ZPF_EINVAL;
    }
    if (hl + 1 > cap) {
        *why = "the host is too long";
        return ZPF_ENOSPC;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)v;
    if (bracketed)
        *bracketed = br;
    return 0;
}

int zpf_conf_split_hostport(const char *s, char *host, size_t cap,
                            uint16_t *port, uint16_t default_port)
{
    const char *why;
    if (s == NULL || host == NULL || port == NULL)
        return ZPF_EINVAL;
    return hostport(s, strlen(s), host, cap, port, default_port, NULL, &why);
}

/* 0, 1 (not base64), or 2 (*got bytes, not 32).  s is trimmed here. */
static int decode_key(const char *s, size_t len, uint8_t out[ZPF_CONF_KEY_LEN],
                      size_t *got)
{
    while (len && (s[0] == ' ' || s[0] == '\t' || s[0] == '\r' ||
                   s[0] == '\n')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
                   s[len - 1] == '\r' || s[len - 1] == '\n'))
        len--;
    if (len == 0 || len > KEY_B64_MAX)
        return 1;
    uint8_t tmp[KEY_B64_MAX];
    const char *end = NULL;
    size_t n = 0;
    int rc = 0;
    if (sodium_base642bin(tmp, sizeof tmp, s, len, NULL, &n, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != s + len)
        rc = 1;
    else if (n != ZPF_CONF_KEY_LEN)
        rc = 2;
    else
        memcpy(out, tmp, ZPF_CONF_KEY_LEN);
    *got = n;
    sodium_memzero(tmp, sizeof tmp);
    return rc;
}

/* --- the schema ----------------------------------------------------------- */

struct field;

struct type {
    const char *what; /* "expected WHAT" */
    /* Scalars: parse text (also the default) into the field.  at is NULL
     * for a default. */
    int (*parse)(struct parser *p, const yaml_node_t *at, const char *s,
                 size_t len, void *base, const struct field *f);
    /* Collections: read the node into the field. */
    int (*set)(struct parser *p, yaml_node_t *v, void *base,
               const struct field *f);
    void (*release)(void *base, const struct field *f); /* idempotent */
    bool (*equal)(const void *a, const void *b, const struct field *f);
};

struct choice {
    const char *name;
    int value;
};

struct field {
    const char *key;
    const struct type *type;
    size_t off;         /* of the value, from the table's base struct */
    size_t n_off;       /* lists: of the count */
    uint64_t min, max;  /* numbers and durations: value; text: bytes */
    const char *def;    /* default as YAML text; NULL: none or computed */
    unsigned flags;
    const struct choice *choices;
    const char *doc;
};

#define F_LIVE 1u      /* applied on SIGHUP without a restart */
#define F_REQUIRED 2u
#define F_VISIBLE 4u   /* visible ASCII only: names shown in tables, logs */
#define F_ZERO_OFF 8u  /* a duration of 0 turns the feature off */
#define F_NOWILD 16u   /* an address others must reach */
#define F_SOCKET 32u   /* a UNIX socket path */

#define SLOT(base, f, T) ((T *)(void *)((char *)(base) + (f)->off))
#define CSLOT(base, f, T) \
    ((const T *)(const void *)((const char *)(base) + (f)->off))
#define COUNT(base, f) ((size_t *)(void *)((char *)(base) + (f)->n_off))
#define CCOUNT(base, f) \
    ((const size_t *)(const void *)((const char *)(base) + (f)->n_off))

static int put_str(struct parser *p, char **slot, const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d == NULL)
        return nomem(p);
    memcpy(d, s, len);
    d[len] = '\0';
    free(*slot);
    *slot = d;
    return 0;
}

static bool str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static void release_str(void *base, const struct field *f)
{
    char **s = SLOT(base, f, char *);
    free(*s);
    *s = NULL;
}

static bool equal_str(const void *a, const void *b, const struct field *f)
{
    return str_eq(*CSLOT(a, f, char *), *CSLOT(b, f, char *));
}

static bool equal_u32(const void *a, const void *b, const struct field *f)
{
    return *CSLOT(a, f, uint32_t) == *CSLOT(b, f, uint32_t);
}

static bool equal_bool(const void *a, const void *b, const struct field *f)
{
    return *CSLOT(a, f, bool) == *CSLOT(b, f, bool);
}

static bool equal_int(const void *a, const void *b, const struct field *f)
{
    return *CSLOT(a, f, int) == *CSLOT(b, f, int);
}

/* Length and characters of a string value. */
static int check_text(struct parser *p, const yaml_node_t *at, const char *s,
                      size_t len, uint64_t min, uint64_t max, bool vis)
{
    char q[QBUF];
    if (len < min)
        return fail(p, at, len == 0 ? "must not be empty"
                                    : "must be at least %llu bytes",
                    (unsigned long long)min);
    if (len > max)
        return fail(p, at, "'%s' is %zu bytes; at most %llu are allowed",
                    quote(q, s, len), len, (unsigned long long)max);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (vis && !visible(c))
            return fail(p, at, "'%s' may contain only visible ASCII "
                               "characters (no spaces or control characters)",
                        quote(q, s, len));
        if (is_control(c))
            return fail(p, at, "'%s' contains a control character",
                        quote(q, s, len));
    }
    return 0;
}

static int parse_str(struct parser *p, const yaml_node_t *at, const char *s,
                     size_t len, void *base, const struct field *f)
{
    int rc = check_text(p, at, s, len, f->min, f->max, f->flags & F_VISIBLE);
    return rc ? rc : put_str(p, SLOT(base, f, char *), s, len);
}

/* The directory of the configuration file, absolute, without a trailing
 * slash unless it is "/". */
static int config_dir(struct parser *p, const yaml_node_t *at, char *dir,
                      size_t cap)
{
    const char *file = p->dir_of ? p->dir_of : "";
    while (file[0] == '.' && file[1] == '/')
        file += 2;
    const char *slash = strrchr(file, '/');
    size_t dl = slash ? (size_t)(slash - file) : 0;
    size_t o = 0;
    if (file[0] != '/') {
        if (getcwd(dir, cap) == NULL)
            return fail(p, at, "cannot resolve a relative path: the working "
                               "directory is unknown (%s); use an absolute "
                               "path", strerror(errno));
        o = strlen(dir);
        if (slash) {
            if (o + 1 + dl + 1 > cap)
                return fail(p, at, "the configuration's directory is too "
                                   "long; use an absolute path");
            if (dir[o - 1] != '/') /* the cwd may be "/" */
                dir[o++] = '/';
            memcpy(dir + o, file, dl);
            o += dl;
        }
    } else {
        if (dl + 1 > cap)
            return fail(p, at, "the configuration's directory is too long; "
                               "use an absolute path");
        memcpy(dir, file, dl);
        o = dl;
        if (o == 0)
            dir[o++] = '/';
    }
    while (o > 1 && dir[o - 1] == '/')
        o--;
    dir[o] = '\0';
    return 0;
}

static int path_too_long(struct parser *p, const yaml_node_t *at,
                         size_t len, const struct field *f)
{
    if (f->flags & F_SOCKET)
        return fail(p, at, "the path is %zu bytes once resolved, but a UNIX "
                           "socket path may have at most %llu; choose a "
                           "shorter one", len, (unsigned long long)f->max);
    return fail(p, at, "the path is %zu bytes once resolved; at most %llu",
                len, (unsigned long long)f->max);
}

static int parse_path(struct parser *p, const yaml_node_t *at, const char *s,
                      size_t len, void *base, const struct field *f)
{
    char q[QBUF];
    char **slot = SLOT(base, f, char *);
    if (len == 0) {
        if (f->min > 0)
            return fail(p, at, "must not be empty");
        return put_str(p, slot, "", 0);
    }
    if (len > PATH_BYTES_MAX)
        return fail(p, at, "the path is %zu bytes; at most %llu", len,
                    (unsigned long long)PATH_BYTES_MAX);
    for (size_t i = 0; i < len; i++)
        if (is_control((unsigned char)s[i]))
            return fail(p, at, "'%s' contains a control character",
                        quote(q, s, len));
    if (s[0] == '/')
        return len > f->max ? path_too_long(p, at, len, f)
                            : put_str(p, slot, s, len);

    /* dir (< PATH_MAX) + '/' + s (< PATH_MAX) */
    char buf[2 * PATH_MAX];
    int rc = config_dir(p, at, buf, PATH_MAX);
    if (rc)
        return rc;
    while (len >= 2 && s[0] == '.' && s[1] == '/') {
        s += 2;
        len -= 2;
        while (len && s[0] == '/') {
            s++;
            len--;
        }
    }
    if (len == 1 && s[0] == '.')
        len = 0;
    size_t o = strlen(buf);
    if (len) {
        if (buf[o - 1] != '/')
            buf[o++] = '/';
        memcpy(buf + o, s, len);
        o += len;
    }
    buf[o] = '\0';
    if (o > f->max)
        return path_too_long(p, at, o, f);
    return put_str(p, slot, buf, o);
}

static int parse_bool(struct parser *p, const yaml_node_t *at, const char *s,
                      size_t len, void *base, const struct field *f)
{
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};
    static const char *const yaml11[] = {"yes", "Yes", "YES", "no", "No",
                                         "NO", "on", "On", "ON", "off",
                                         "Off", "OFF", "y", "Y", "n", "N"};
    char q[QBUF];
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (text_is(s, len, yes[i])) {
            *SLOT(base, f, bool) = true;
            return 0;
        }
        if (text_is(s, len, no[i])) {
            *SLOT(base, f, bool) = false;
            return 0;
        }
    }
    for (size_t i = 0; i < ARRAY_LEN(yaml11); i++)
        if (text_is(s, len, yaml11[i]))
            return fail(p, at, "expected true or false, found '%s' (yes, "
                               "no, on and off are not booleans here)",
                        quote(q, s, len));
    return fail(p, at, "expected true or false, found '%s'", quote(q, s, len));
}

static int parse_uint(struct parser *p, const yaml_node_t *at, const char *s,
                      size_t len, void *base, const struct field *f)
{
    char q[QBUF];
    uint64_t v = 0;
    bool over = false;
    size_t i = (len > 1 && s[0] == '-') ? 1 : 0;
    if (len == i)
        return fail(p, at, "expected a whole number, found '%s'",
                    quote(q, s, len));
    for (size_t k = i; k < len; k++) {
        if (!is_digit(s[k]))
            return fail(p, at, "expected a whole number, found '%s'",
                        quote(q, s, len));
        unsigned d = (unsigned)(s[k] - '0');
        if (v > (UINT64_MAX - d) / 10)
            over = true;
        else
            v = v * 10 + d;
    }
    if (i == 1 || over || v < f->min || v > f->max)
        return fail(p, at, "%s is out of range; use %llu..%llu",
                    quote(q, s, len), (unsigned long long)f->min,
                    (unsigned long long)f->max);
    *SLOT(base, f, uint32_t) = (uint32_t)v;
    return 0;
}

static int parse_dur(struct parser *p, const yaml_node_t *at, const char *s,
                     size_t len, void *base, const struct field *f)
{
    char q[QBUF], lo[32], hi[32];
    uint64_t v = 0;
    enum dur_rc rc = dur_parse(s, len, &v);
    quote(q, s, len);
    switch (rc) {
    case DUR_OK:
        break;
    case DUR_BARE:
        return fail(p, at, "'%s' has no unit; add a unit: 1s, 500ms", q);
    case DUR_FRACTION:
        return fail(p, at, "'%s': use whole numbers of a smaller unit "
                           "(1s500ms, not 1.5s)", q);
    case DUR_ORDER:
        return fail(p, at, "'%s': units go largest first, each at most once "
                           "(1m30s)", q);
    case DUR_SYNTAX:
        return fail(p, at, "'%s' is not a duration; write e.g. 1s, 500ms or "
                           "1m30s (units ms, s, m, h)", q);
    case DUR_OVERFLOW:
        v = UINT64_MAX;
        break;
    }
    if (v == 0 && (f->flags & F_ZERO_OFF)) {
        *SLOT(base, f, uint32_t) = 0;
        return 0;
    }
    if (v < f->min || v > f->max)
        return fail(p, at, "%s is out of range; use %s%s..%s", q,
                    (f->flags & F_ZERO_OFF) ? "0 (off) or " : "",
                    fmt_dur(lo, sizeof lo, f->min),
                    fmt_dur(hi, sizeof hi, f->max));
    *SLOT(base, f, uint32_t) = (uint32_t)v;
    return 0;
}

static int parse_choice(struct parser *p, const yaml_node_t *at,
                        const char *s, size_t len, void *base,
                        const struct field *f)
{
    char q[QBUF], list[256];
    size_t o = 0;
    for (const struct choice *c = f->choices; c->name; c++) {
        if (text_is(s, len, c->name)) {
            *SLOT(base, f, int) = c->value;
            return 0;
        }
        o += clamp_len(snprintf(list + o, sizeof list - o, "%s%s",
                                o ? ", " : "", c->name),
                       sizeof list - o);
    }
    list[o] = '\0';
    return fail(p, at, "expected one of %s; found '%s'", list,
                quote(q, s, len));
}

static bool addr_wildcard(const struct zpf_addr *a)
{
    static const uint8_t zero[16];
    return memcmp(a->ip, zero, a->family == ZPF_AF_INET ? 4 : 16) == 0;
}

static const char *fmt_addr(char *buf, size_t cap, const struct zpf_addr *a)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->family == ZPF_AF_INET6) {
        inet_ntop(AF_INET6, a->ip, ip, sizeof ip);
        snprintf(buf, cap, "[%s]:%u", ip, a->port);
    } else {
        inet_ntop(AF_INET, a->ip, ip, sizeof ip);
        snprintf(buf, cap, "%s:%u", ip, a->port);
    }
    return buf;
}

static int parse_addr(struct parser *p, const yaml_node_t *at, const char *s,
                      size_t len, void *base, const struct field *f)
{
    char q[QBUF], host[ZPF_CONF_HOST_MAX];
    const char *why = NULL;
    uint16_t port = 0;
    bool br = false;
    struct zpf_addr a;
    memset(&a, 0, sizeof a);
    if (hostport(s, len, host, sizeof host, &port, ZPF_DEFAULT_PORT, &br,
                 &why) != 0)
        return fail(p, at, "'%s' is not an address: %s; write an IP and "
                           "port such as 127.0.0.1:7946 or [::1]:7946",
                    quote(q, s, len), why);
    if (br && inet_pton(AF_INET6, host, a.ip) == 1)
        a.family = ZPF_AF_INET6;
    else if (!br && inet_pton(AF_INET, host, a.ip) == 1)
        a.family = ZPF_AF_INET;
    else
        return fail(p, at, "'%s' is not an IP address (host names are "
                           "allowed only in join); write e.g. "
                           "127.0.0.1:7946 or [::1]:7946", quote(q, s, len));
    a.port = port;
    if ((f->flags & F_NOWILD) && addr_wildcard(&a))
        return fail(p, at, "%s is a wildcard address, which other nodes "
                           "cannot reach; give this node's own IP address",
                    quote(q, s, len));
    *SLOT(base, f, struct zpf_addr) = a;
    return 0;
}

static bool equal_addr(const void *a, const void *b, const struct field *f)
{
    const struct zpf_addr *x = CSLOT(a, f, struct zpf_addr);
    const struct zpf_addr *y = CSLOT(b, f, struct zpf_addr);
    return x->family == y->family && x->port == y->port &&
           memcmp(x->ip, y->ip, sizeof x->ip) == 0;
}

/* gossip.join */

static void release_peers(void *base, const struct field *f)
{
    struct zpf_conf_peer **v = SLOT(base, f, struct zpf_conf_peer *);
    size_t *n = COUNT(base, f);
    for (size_t i = 0; *v && i < *n; i++)
        free((*v)[i].host);
    free(*v);
    *v = NULL;
    *n = 0;
}

static int set_peers(struct parser *p, yaml_node_t *v, void *base,
                     const struct field *f)
{
    release_peers(base, f);
    if (is_null(v))
        return 0;
    int rc = expect(p, v, YAML_SEQUENCE_NODE, f->type->what);
    if (rc)
        return rc;
    size_t cnt = seq_len(v);
    if (cnt > f->max)
        return fail(p, v, "has %zu entries; at most %llu", cnt,
                    (unsigned long long)f->max);
    if (cnt == 0)
        return 0;
    struct zpf_conf_peer *peers = calloc(cnt, sizeof *peers);
    if (peers == NULL)
        return nomem(p);
    *SLOT(base, f, struct zpf_conf_peer *) = peers;
    *COUNT(base, f) = cnt;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *it = node_at(p, v->data.sequence.items.start[i]);
        char q[QBUF], host[ZPF_CONF_HOST_MAX];
        const char *s, *why = "";
        size_t len;
        size_t old = path_add(p, "[%zu]", i);
        rc = scalar_of(p, it, HOSTPORT, NULL, &s, &len);
        if (rc == 0 && hostport(s, len, host, sizeof host, &peers[i].port,
                                ZPF_DEFAULT_PORT, NULL, &why) != 0)
            rc = fail(p, it, "'%s' is not a seed address: %s; write "
                             "host:port, [v6]:port, or host (port %u)",
                      quote(q, s, len), why, ZPF_DEFAULT_PORT);
        if (rc == 0 && (peers[i].host = strdup(host)) == NULL)
            rc = nomem(p);
        path_cut(p, old);
        if (rc)
            return rc;
    }
    return 0;
}

static bool equal_peers(const void *a, const void *b, const struct field *f)
{
    size_t n = *CCOUNT(a, f);
    if (n != *CCOUNT(b, f))
        return false;
    const struct zpf_conf_peer *x = *CSLOT(a, f, struct zpf_conf_peer *);
    const struct zpf_conf_peer *y = *CSLOT(b, f, struct zpf_conf_peer *);
    for (size_t i = 0; i < n; i++)
        if (x[i].port != y[i].port || !str_eq(x[i].host, y[i].host))
            return false;
    return true;
}

/* security.keys */

typedef uint8_t zpf__key_t[ZPF_CONF_KEY_LEN];

static void release_keys(void *base, const struct field *f)
{
    zpf__key_t **v = SLOT(base, f, zpf__key_t *);
    size_t *n = COUNT(base, f);
    if (*v)
        sodium_memzero(*v, *n * ZPF_CONF_KEY_LEN);
    free(*v);
    *v = NULL;
    *n = 0;
}

static int set_keys(struct parser *p, yaml_node_t *v, void *base,
                    const struct field *f)
{
    release_keys(base, f);
    int rc = is_null(v) ? 0 : expect(p, v, YAML_SEQUENCE_NODE, f->type->what);
    if (rc)
        return rc;
    size_t cnt = is_null(v) ? 0 : seq_len(v);
    if (cnt == 0)
        return fail(p, v, "is empty; list at least one base64 key (%s), or "
                          "use security.keyring", KEYGEN);
    if (cnt > f->max)
        return fail(p, v, "has %zu keys; at most %llu", cnt,
                    (unsigned long long)f->max);
    zpf__key_t *keys = calloc(cnt, sizeof *keys);
    if (keys == NULL)
        return nomem(p);
    *SLOT(base, f, zpf__key_t *) = keys;
    *COUNT(base, f) = cnt;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *it = node_at(p, v->data.sequence.items.start[i]);
        const char *s;
        size_t len, got = 0;
        size_t old = path_add(p, "[%zu]", i);
        rc = scalar_of(p, it, "a base64 key", NULL, &s, &len);
        if (rc == 0) {
            switch (decode_key(s, len, keys[i], &got)) {
            case 1:
                rc = fail(p, it, "is not base64 (standard alphabet with '=' "
                                 "padding); make a key with: %s", KEYGEN);
                break;
            case 2:
                rc = fail(p, it, "decodes to %zu bytes; a key is 32 bytes "
                                 "(make one with: %s)", got, KEYGEN);
                break;
            }
        }
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (sodium_memcmp(keys[i], keys[j], ZPF_CONF_KEY_LEN) == 0)
                rc = fail(p, it, "is the same key as security.keys[%zu]; "
                                 "remove one", j);
        path_cut(p, old);
        if (rc)
            return rc;
    }
    return 0;
}

static bool equal_keys(const void *a, const void *b, const struct field *f)
{
    size_t n = *CCOUNT(a, f);
    if (n != *CCOUNT(b, f))
        return false;
    return n == 0 || memcmp(*CSLOT(a, f, zpf__key_t *),
                            *CSLOT(b, f, zpf__key_t *),
                            n * ZPF_CONF_KEY_LEN) == 0;
}

/* node.tags */

static void release_tags(void *base, const struct field *f)
{
    struct zpf_conf_tag **v = SLOT(base, f, struct zpf_conf_tag *);
    size_t *n = COUNT(base, f);
    for (size_t i = 0; *v && i < *n; i++) {
        free((*v)[i].key);
        free((*v)[i].value);
    }
    free(*v);
    *v = NULL;
    *n = 0;
}

static int set_tags(struct parser *p, yaml_node_t *v, void *base,
                    const struct field *f)
{
    release_tags(base, f);
    if (is_null(v))
        return 0;
    int rc = expect(p, v, YAML_MAPPING_NODE, f->type->what);
    if (rc)
        return rc;
    size_t cnt = map_len(v), total = 0;
    if (cnt > f->max)
        return fail(p, v, "has %zu tags; at most %llu", cnt,
                    (unsigned long long)f->max);
    if (cnt == 0)
        return 0;
    struct zpf_conf_tag *tags = calloc(cnt, sizeof *tags);
    if (tags == NULL)
        return nomem(p);
    *SLOT(base, f, struct zpf_conf_tag *) = tags;
    *COUNT(base, f) = cnt;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_pair_t *pair = &v->data.mapping.pairs.start[i];
        yaml_node_t *k = node_at(p, pair->key), *val = node_at(p, pair->value);
        const char *ks, *vs;
        size_t kl, vl;
        char q[QBUF];
        rc = scalar_of(p, k, "a tag name", NULL, &ks, &kl);
        if (rc == 0)
            rc = check_text(p, k, ks, kl, 1, TAG_KEY_MAX, true);
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (strlen(tags[j].key) == kl && memcmp(tags[j].key, ks, kl) == 0)
                rc = fail(p, k, "duplicate key '%s' (first on line %zu); "
                                "remove one", quote(q, ks, kl),
                          (size_t)node_at(p, v->data.mapping.pairs.start[j]
                                                 .key)->start_mark.line + 1);
        if (rc)
            return rc;
        size_t old = path_add(p, ".%s", quote(q, ks, kl));
        rc = scalar_of(p, val, "a string", NULL, &vs, &vl);
        if (rc == 0)
            rc = check_text(p, val, vs, vl, 0, TAG_VALUE_MAX, false);
        if (rc == 0)
            rc = put_str(p, &tags[i].key, ks, kl);
        if (rc == 0)
            rc = put_str(p, &tags[i].value, vs, vl);
        path_cut(p, old);
        if (rc)
            return rc;
        total += kl + vl;
    }
    if (total > TAGS_BYTES_MAX)
        return fail(p, v, "names and values take %zu bytes; at most %u, "
                          "because tags travel in every member's metadata",
                    total, TAGS_BYTES_MAX);
    return 0;
}

static bool equal_tags(const void *a, const void *b, const struct field *f)
{
    size_t n = *CCOUNT(a, f);
    if (n != *CCOUNT(b, f))
        return false;
    const struct zpf_conf_tag *x = *CSLOT(a, f, struct zpf_conf_tag *);
    const struct zpf_conf_tag *y = *CSLOT(b, f, struct zpf_conf_tag *);
    for (size_t i = 0; i < n; i++)
        if (!str_eq(x[i].key, y[i].key) || !str_eq(x[i].value, y[i].value))
            return false;
    return true;
}

/* health.checks[].command */

static void release_argv(void *base, const struct field *f)
{
    char ***v = SLOT(base, f, char **);
    size_t *n = COUNT(base, f);
    for (size_t i = 0; *v && i < *n; i++)
        free((*v)[i]);
    free(*v);
    *v = NULL;
    *n = 0;
}

static int set_argv(struct parser *p, yaml_node_t *v, void *base,
                    const struct field *f)
{
    static const char example[] =
        "give the program and its arguments, e.g. [/usr/bin/pgrep, nginx]";
    release_argv(base, f);
    if (is_null(v))
        return fail(p, v, "is empty; %s", example);
    int rc = expect(p, v, YAML_SEQUENCE_NODE, f->type->what);
    if (rc)
        return rc;
    size_t cnt = seq_len(v);
    if (cnt == 0)
        return fail(p, v, "is empty; %s", example);
    if (cnt > f->max)
        return fail(p, v, "has %zu arguments; at most %llu", cnt,
                    (unsigned long long)f->max);
    char **argv = calloc(cnt + 1, sizeof *argv);
    if (argv == NULL)
        return nomem(p);
    *SLOT(base, f, char **) = argv;
    *COUNT(base, f) = cnt;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *it = node_at(p, v->data.sequence.items.start[i]);
        const char *s;
        size_t len;
        char q[QBUF];
        size_t old = path_add(p, "[%zu]", i);
        rc = scalar_of(p, it, "a string", NULL, &s, &len);
        if (rc == 0 && len > ARG_BYTES_MAX)
            rc = fail(p, it, "is %zu bytes; at most %u", len, ARG_BYTES_MAX);
        if (rc == 0 && i == 0 && len == 0)
            rc = fail(p, it, "the program is empty; %s", example);
        if (rc == 0 && i == 0 && s[0] != '/' && memchr(s, '/', len))
            rc = fail(p, it, "'%s' is a relative path; give an absolute path "
                             "or a bare name looked up in PATH",
                      quote(q, s, len));
        if (rc == 0)
            rc = put_str(p, &argv[i], s, len);
        path_cut(p, old);
        if (rc)
            return rc;
    }
    return 0;
}

static bool equal_argv(const void *a, const void *b, const struct field *f)
{
    size_t n = *CCOUNT(a, f);
    if (n != *CCOUNT(b, f))
        return false;
    char *const *x = *(char **const *)(const void *)((const char *)a + f->off);
    char *const *y = *(char **const *)(const void *)((const char *)b + f->off);
    for (size_t i = 0; i < n; i++)
        if (!str_eq(x[i], y[i]))
            return false;
    return true;
}

/* health.checks[].tcp and .http share target, host, port and path. */

static void release_target(void *base, const struct field *f)
{
    struct zpf_conf_check *c = base;
    (void)f;
    free(c->target);
    free(c->host);
    free(c->path);
    c->target = c->host = c->path = NULL;
    c->port = 0;
}

static bool equal_target(const void *a, const void *b, const struct field *f)
{
    (void)f;
    return str_eq(((const struct zpf_conf_check *)a)->target,
                  ((const struct zpf_conf_check *)b)->target);
}

static int put_target(struct parser *p, struct zpf_conf_check *c,
                      const char *s, size_t len, const char *host,
                      uint16_t port, const char *path, size_t plen)
{
    release_target(c, NULL);
    c->port = port;
    int rc = put_str(p, &c->target, s, len);
    if (rc == 0)
        rc = put_str(p, &c->host, host, strlen(host));
    if (rc == 0 && path)
        rc = put_str(p, &c->path, path, plen);
    return rc;
}

static int parse_tcp(struct parser *p, const yaml_node_t *at, const char *s,
                     size_t len, void *base, const struct field *f)
{
    char q[QBUF], host[ZPF_CONF_HOST_MAX];
    const char *why;
    uint16_t port;
    (void)f;
    if (hostport(s, len, host, sizeof host, &port, 0, NULL, &why) != 0)
        return fail(p, at, "'%s' is not host:port: %s", quote(q, s, len),
                    why);
    return put_target(p, base, s, len, host, port, NULL, 0);
}

#define HTTP_PORT 80

static bool prefix_ci(const char *s, size_t len, const char *pre)
{
    size_t n = strlen(pre);
    if (len < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != pre[i])
            return false;
    }
    return true;
}

static int parse_http(struct parser *p, const yaml_node_t *at, const char *s,
                      size_t len, void *base, const struct field *f)
{
    char q[QBUF], host[ZPF_CONF_HOST_MAX];
    const char *why;
    uint16_t port;
    (void)f;
    quote(q, s, len);
    if (prefix_ci(s, len, "https://"))
        return fail(p, at, "https is not supported; use a command check, "
                           "e.g. command: [curl, -fsS, --max-time, '2', "
                           "'%s']", q);
    if (!prefix_ci(s, len, "http://"))
        return fail(p, at, "'%s' is not an http:// URL; write e.g. "
                           "http://127.0.0.1:8080/health", q);
    const char *a = s + 7, *end = s + len;
    const char *e = a;
    while (e < end && *e != '/' && *e != '?' && *e != '#')
        e++;
    if (memchr(a, '@', (size_t)(e - a)))
        return fail(p, at, "'%s': a user name or password in the URL is not "
                           "supported", q);
    if (hostport(a, (size_t)(e - a), host, sizeof host, &port, HTTP_PORT,
                 NULL, &why) != 0)
        return fail(p, at, "'%s' has a bad host or port: %s", q, why);
    const char *frag = memchr(e, '#', (size_t)(end - e));
    if (frag)
        end = frag;
    for (const char *c = e; c < end; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
            return fail(p, at, "'%s' contains a space, control or non-ASCII "
                               "character; percent-encode it", q);
    char path[ARG_BYTES_MAX + 2];
    size_t pl = (size_t)(end - e);
    if (pl > ARG_BYTES_MAX)
        return fail(p, at, "the URL is longer than %u bytes", ARG_BYTES_MAX);
    size_t o = 0;
    if (pl == 0 || e[0] != '/')
        path[o++] = '/';
    memcpy(path + o, e, pl);
    o += pl;
    path[o] = '\0';
    return put_target(p, base, s, len, host, port, path, o);
}

/* health.checks */

static void release_fields(void *base, const struct field *fields, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fields[i].type->release)
            fields[i].type->release(base, &fields[i]);
}

static bool equal_fields(const void *a, const void *b,
                         const struct field *fields, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!fields[i].type->equal(a, b, &fields[i]))
            return false;
    return true;
}

static void release_checks(void *base, const struct field *f);
static int set_checks(struct parser *p, yaml_node_t *v, void *base,
                      const struct field *f);
static bool equal_checks(const void *a, const void *b, const struct field *f);

static const struct type T_STR = {"a string", parse_str, NULL, release_str,
                                  equal_str};
static const struct type T_PATH = {"a path", parse_path, NULL, release_str,
                                   equal_str};
static const struct type T_BOOL = {"true or false", parse_bool, NULL, NULL,
                                   equal_bool};
static const struct type T_UINT = {"a whole number", parse_uint, NULL, NULL,
                                   equal_u32};
static const struct type T_DUR = {"a duration such as 1s or 500ms", parse_dur,
                                  NULL, NULL, equal_u32};
static const struct type T_CHOICE = {"a word", parse_choice, NULL, NULL,
                                     equal_int};
/* An unquoted [v6] is a YAML list: the "expected" text says so. */
static const struct type T_ADDR = {
    "an IP address and port such as 127.0.0.1:7946, or '[::1]:7946' in "
    "quotes", parse_addr, NULL, NULL, equal_addr};
static const struct type T_PEERS = {
    "a list of seeds such as [10.0.0.2:7946]", NULL, set_peers,
    release_peers, equal_peers};
static const struct type T_KEYS = {"a list of base64 keys", NULL, set_keys,
                                   release_keys, equal_keys};
static const struct type T_TAGS = {
    "a mapping of names to strings such as {role: web}", NULL, set_tags,
    release_tags, equal_tags};
static const struct type T_ARGV = {
    "a list of strings: the program and its arguments", NULL, set_argv,
    release_argv, equal_argv};
static const struct type T_CHECKS = {"a list of checks", NULL, set_checks,
                                     release_checks, equal_checks};
static const struct type T_TCP = {HOSTPORT, parse_tcp, NULL, release_target,
                                  equal_target};
static const struct type T_HTTP = {
    "a URL such as http://127.0.0.1:8080/health", parse_http, NULL,
    release_target, equal_target};

static const struct choice TRANSPORTS[] = {
    {"udp", ZPF_CONF_UDP}, {"tcp", ZPF_CONF_TCP}, {NULL, 0}};
static const struct choice LEVELS[] = {
    {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"notice", LOG_NOTICE},
    {"warning", LOG_WARNING}, {"error", LOG_ERR}, {NULL, 0}};

_Static_assert(sizeof(enum zpf_conf_transport) == sizeof(int),
               "T_CHOICE stores an int");

#define OFF(m) offsetof(struct zpf_conf, m)
#define COFF(m) offsetof(struct zpf_conf_check, m)

static const struct field NODE_KEYS[] = {
    {.key = "name", .type = &T_STR, .off = OFF(node.name), .min = 1,
     .max = ZPF_NAME_MAX, .flags = F_VISIBLE,
     .doc = "unique in the cluster; default: the host name up to its first "
            "dot"},
    {.key = "zone", .type = &T_STR, .off = OFF(node.zone), .max = LABEL_MAX,
     .def = "", .flags = F_VISIBLE,
     .doc = "failure domain, so tasks can be spread across zones"},
    {.key = "provider", .type = &T_STR, .off = OFF(node.provider),
     .max = LABEL_MAX, .def = "", .flags = F_VISIBLE,
     .doc = "the driver that can replace or fence this host"},
    {.key = "instance_id", .type = &T_STR, .off = OFF(node.instance_id),
     .max = LABEL_MAX, .def = "", .flags = F_VISIBLE,
     .doc = "this host's id at the provider, to fence it when it dies"},
    {.key = "tags", .type = &T_TAGS, .off = OFF(node.tags),
     .n_off = OFF(node.n_tags), .max = TAGS_MAX, .def = "{}",
     .flags = F_LIVE, .doc = "labels gossiped with the membership"},
    {.key = "data_dir", .type = &T_PATH, .off = OFF(node.data_dir),
     .min = 1, .max = PATH_BYTES_MAX, .def = ZPF_DEFAULT_DATA_DIR,
     .doc = "where the store lives (incarnation, members, keyring)"},
};

static const struct field GOSSIP_KEYS[] = {
    {.key = "cluster", .type = &T_STR, .off = OFF(gossip.cluster), .min = 1,
     .max = ZPF_CLUSTER_MAX, .flags = F_REQUIRED | F_VISIBLE,
     .doc = "the cluster id: packets of another cluster are dropped"},
    {.key = "bind", .type = &T_ADDR, .off = OFF(gossip.bind),
     .def = "0.0.0.0:7946", .doc = "IP and port to listen on, UDP and TCP"},
    {.key = "advertise", .type = &T_ADDR, .off = OFF(gossip.advertise),
     .flags = F_NOWILD,
     .doc = "IP and port others reach this node at; default: bind, required "
            "when bind is a wildcard"},
    {.key = "join", .type = &T_PEERS, .off = OFF(gossip.join),
     .n_off = OFF(gossip.n_join), .max = JOIN_MAX, .def = "[]",
     .doc = "seeds to join through: host:port, [v6]:port or host (port "
            "7946)"},
    {.key = "transport", .type = &T_CHOICE, .off = OFF(gossip.transport),
     .def = "udp", .choices = TRANSPORTS,
     .doc = "udp, or tcp where a network drops UDP"},
    {.key = "tcp_fallback", .type = &T_BOOL, .off = OFF(gossip.tcp_fallback),
     .def = "true",
     .doc = "also probe over TCP when a UDP probe fails: a UDP-only outage "
            "is not a death"},
    {.key = "leave_timeout", .type = &T_DUR,
     .off = OFF(gossip.leave_timeout_ms), .max = LEAVE_MAX_MS, .def = "5s",
     .doc = "on stop, keep gossiping the leave this long so it spreads"},
    {.key = "join_retry_max", .type = &T_DUR,
     .off = OFF(gossip.join_retry_max_ms), .min = RETRY_MIN_MS,
     .max = RETRY_MAX_MS, .def = "30s",
     .doc = "cap of the backoff between join attempts"},
    {.key = "probe_interval", .type = &T_DUR,
     .off = OFF(core.probe_interval_ms), .min = INTERVAL_MIN_MS,
     .max = INTERVAL_MAX_MS, .def = "1s",
     .doc = "one probe per interval, stretched by local health"},
    {.key = "probe_timeout", .type = &T_DUR,
     .off = OFF(core.probe_timeout_ms), .min = INTERVAL_MIN_MS,
     .max = INTERVAL_MAX_MS, .def = "500ms",
     .doc = "wait this long for an ack, then ask others; < probe_interval"},
    {.key = "indirect_checks", .type = &T_UINT,
     .off = OFF(core.indirect_checks), .min = 1, .max = INDIRECT_MAX,
     .def = "3", .doc = "members asked to probe for us when a probe fails"},
    {.key = "suspicion_mult", .type = &T_UINT,
     .off = OFF(core.suspicion_mult), .min = 1, .max = COUNT_MAX, .def = "4",
     .doc = "min suspicion = mult * max(1, log10 n) * probe_interval"},
    {.key = "suspicion_max_mult", .type = &T_UINT,
     .off = OFF(core.suspicion_max_mult), .min = 1, .max = COUNT_MAX,
     .def = "6", .doc = "max suspicion = this * min, shrinking as others "
                        "confirm"},
    {.key = "gossip_interval", .type = &T_DUR,
     .off = OFF(core.gossip_interval_ms), .min = INTERVAL_MIN_MS,
     .max = INTERVAL_MAX_MS, .def = "200ms",
     .doc = "how often queued facts are sent to gossip_nodes members"},
    {.key = "gossip_nodes", .type = &T_UINT, .off = OFF(core.gossip_nodes),
     .min = 1, .max = COUNT_MAX, .def = "3",
     .doc = "members each gossip round goes to"},
    {.key = "retransmit_mult", .type = &T_UINT,
     .off = OFF(core.retransmit_mult), .min = 1, .max = COUNT_MAX,
     .def = "4", .doc = "each fact is sent mult * ceil(log10(n + 1)) times"},
    {.key = "push_pull_interval", .type = &T_DUR,
     .off = OFF(core.push_pull_interval_ms), .min = PUSHPULL_MIN_MS,
     .max = PUSHPULL_MAX_MS, .def = "30s", .flags = F_ZERO_OFF,
     .doc = "full-state exchange with one member; 0 turns it off"},
    {.key = "packet_budget", .type = &T_UINT, .off = OFF(core.packet_budget),
     .min = BUDGET_MIN, .max = BUDGET_MAX, .def = "1400",
     .doc = "bytes per datagram on the wire, the seal included: fits a "
            "1500-byte MTU"},
    {.key = "awareness_max", .type = &T_UINT, .off = OFF(core.awareness_max),
     .min = 1, .max = COUNT_MAX, .def = "8",
     .doc = "Lifeguard local health ceiling: how far a slow node stretches "
            "its timers"},
    {.key = "heartbeat_interval", .type = &T_DUR,
     .off = OFF(core.heartbeat_interval_ms), .min = INTERVAL_MIN_MS,
     .max = INTERVAL_MAX_MS, .def = "250ms",
     .doc = "the heartbeat counter advances this often while healthy"},
    {.key = "counter_timeout", .type = &T_DUR,
     .off = OFF(core.counter_timeout_ms), .min = INTERVAL_MIN_MS,
     .max = MS_H, .def = "10s",
     .doc = "a member whose counter stands still this long is stalled"},
    {.key = "tombstone", .type = &T_DUR, .off = OFF(core.tombstone_ms),
     .min = TOMBSTONE_MIN_MS, .max = TOMBSTONE_MAX_MS, .def = "24h",
     .doc = "dead and left members are remembered this long"},
    {.key = "max_members", .type = &T_UINT, .off = OFF(core.max_members),
     .min = 1, .max = MEMBERS_MAX, .def = "65536",
     .doc = "members this node will track; more are refused"},
    {.key = "counter_fast_expiry", .type = &T_BOOL,
     .off = OFF(core.counter_fast_expiry), .def = "true",
     .doc = "declare a confirmed, silent suspect dead about twice as fast; "
            "false tolerates long pauses"},
};

static const struct field SECURITY_KEYS[] = {
    {.key = "keyring", .type = &T_PATH, .off = OFF(security.keyring),
     .min = 1, .max = PATH_BYTES_MAX,
     .doc = "file of base64 keys, one per line, the first primary"},
    {.key = "keys", .type = &T_KEYS, .off = OFF(security.keys),
     .n_off = OFF(security.n_keys), .max = ZPF_CONF_KEYS_MAX,
     .doc = "the keys inline instead of a keyring file, the first primary"},
    {.key = "insecure", .type = &T_BOOL, .off = OFF(security.insecure),
     .def = "false",
     .doc = "true: no encryption; only on a network you fully trust"},
};

static const struct field CONTROL_KEYS[] = {
    {.key = "socket", .type = &T_PATH, .off = OFF(control.socket), .min = 1,
     .max = SOCKET_PATH_MAX, .def = ZPF_DEFAULT_SOCKET, .flags = F_SOCKET,
     .doc = "the UNIX socket zpfctl talks to"},
    {.key = "group", .type = &T_STR, .off = OFF(control.group),
     .max = GROUP_MAX, .def = "", .flags = F_VISIBLE,
     .doc = "group that may read (socket mode 0660); \"\": owner only"},
    {.key = "admin_group", .type = &T_STR, .off = OFF(control.admin_group),
     .max = GROUP_MAX, .def = "", .flags = F_VISIBLE,
     .doc = "group that may make changes; root and zpfd's user always may"},
};

static const struct field HEALTH_KEYS[] = {
    {.key = "interval", .type = &T_DUR, .off = OFF(health.interval_ms),
     .min = CHECK_INTERVAL_MIN_MS, .max = CHECK_INTERVAL_MAX_MS,
     .def = "10s", .flags = F_LIVE,
     .doc = "how often each check runs, unless it says otherwise"},
    {.key = "timeout", .type = &T_DUR, .off = OFF(health.timeout_ms),
     .min = INTERVAL_MIN_MS, .max = INTERVAL_MAX_MS, .def = "2s",
     .flags = F_LIVE, .doc = "a check running longer fails; < interval"},
    {.key = "checks", .type = &T_CHECKS, .off = OFF(health.checks),
     .n_off = OFF(health.n_checks), .max = CHECKS_MAX, .def = "[]",
     .flags = F_LIVE,
     .doc = "the heartbeat counter advances only while all of these pass"},
};

static const struct field CHECK_KEYS[] = {
    {.key = "name", .type = &T_STR, .off = COFF(name), .min = 1,
     .max = ZPF_NAME_MAX, .flags = F_REQUIRED | F_VISIBLE | F_LIVE,
     .doc = "unique among the checks; shown by zpfctl and in logs"},
    {.key = "command", .type = &T_ARGV, .off = COFF(argv),
     .n_off = COFF(argc), .max = ARGV_MAX, .flags = F_LIVE,
     .doc = "argv to run, no shell; passes on exit status 0"},
    {.key = "tcp", .type = &T_TCP, .flags = F_LIVE,
     .doc = "host:port; passes when a connection opens"},
    {.key = "http", .type = &T_HTTP, .flags = F_LIVE,
     .doc = "http://host[:port]/path; passes on status 200..399"},
    {.key = "interval", .type = &T_DUR, .off = COFF(interval_ms),
     .min = CHECK_INTERVAL_MIN_MS, .max = CHECK_INTERVAL_MAX_MS,
     .flags = F_LIVE, .doc = "default: health.interval"},
    {.key = "timeout", .type = &T_DUR, .off = COFF(timeout_ms),
     .min = INTERVAL_MIN_MS, .max = INTERVAL_MAX_MS, .flags = F_LIVE,
     .doc = "default: health.timeout; < interval"},
};

/* Indices into CHECK_KEYS, pinned below. */
enum { CK_NAME, CK_COMMAND, CK_TCP, CK_HTTP, CK_INTERVAL, CK_TIMEOUT };

static const struct field LOG_KEYS[] = {
    {.key = "level", .type = &T_CHOICE, .off = OFF(log.level), .def = "info",
     .flags = F_LIVE, .choices = LEVELS,
     .doc = "debug, info, notice, warning or error"},
};

static const struct field METRICS_KEYS[] = {
    {.key = "textfile", .type = &T_PATH, .off = OFF(metrics.textfile),
     .max = PATH_BYTES_MAX, .def = "",
     .doc = "write Prometheus text here for node_exporter's textfile "
            "collector; \"\": off"},
    {.key = "interval", .type = &T_DUR, .off = OFF(metrics.interval_ms),
     .min = METRICS_INTERVAL_MIN_MS, .max = METRICS_INTERVAL_MAX_MS,
     .def = "15s", .doc = "how often the textfile is rewritten"},
};

/* Which keys of one mapping were given, and where. */
struct seen {
    const yaml_node_t *key[FIELDS_MAX];
    const yaml_node_t *val[FIELDS_MAX];
};

static size_t field_index(const struct field *fields, size_t n,
                          const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].key, key) == 0)
            return i;
    return n;
}

static size_t edit_distance(const char *a, size_t al, const char *b,
                            size_t bl)
{
    size_t row[QUOTE_MAX + 1];
    if (al > QUOTE_MAX || bl > QUOTE_MAX)
        return SIZE_MAX;
    for (size_t j = 0; j <= bl; j++)
        row[j] = j;
    for (size_t i = 1; i <= al; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= bl; j++) {
            size_t tmp = row[j];
            size_t best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = tmp;
        }
    }
    return row[bl];
}

/* names is an array of n pointers to structs whose first member is the
 * name (struct field, struct section), stride bytes apart. */
static int unknown(struct parser *p, const yaml_node_t *k, const char *noun,
                   const void *names, size_t n, size_t stride)
{
    const char *s = (const char *)k->data.scalar.value;
    size_t len = k->data.scalar.length, best = SIZE_MAX, bi = 0;
    char q[QBUF], list[1024];
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name =
            *(const char *const *)(const void *)((const char *)names +
                                                 i * stride);
        size_t d = edit_distance(s, len, name, strlen(name));
        if (d < best) {
            best = d;
            bi = i;
        }
        o += clamp_len(snprintf(list + o, sizeof list - o, "%s%s",
                                i ? ", " : "", name),
                       sizeof list - o);
    }
    list[o] = '\0';
    quote(q, s, len);
    if (best <= SUGGEST_MAX && best < len)
        return fail(p, k, "unknown %s '%s'; did you mean '%s'?", noun, q,
                    *(const char *const *)(const void *)((const char *)names +
                                                         bi * stride));
    return fail(p, k, "unknown %s '%s'; known %ss: %s", noun, q, noun, list);
}

static int set_field(struct parser *p, yaml_node_t *v, void *base,
                     const struct field *f)
{
    if (f->type->set)
        return f->type->set(p, v, base, f);
    const char *s;
    size_t len;
    int rc = scalar_of(p, v, f->type->what, f->def, &s, &len);
    return rc ? rc : f->type->parse(p, v, s, len, base, f);
}

/* Read one mapping of the schema into base.  A null value is an empty
 * mapping.  p->path names the mapping on entry. */
static int apply_mapping(struct parser *p, yaml_node_t *map,
                         const struct field *fields, size_t n, void *base,
                         struct seen *seen, const char *what)
{
    if (is_null(map))
        return 0;
    int rc = expect(p, map, YAML_MAPPING_NODE, what);
    if (rc)
        return rc;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);
        if (k->type != YAML_SCALAR_NODE || is_null(k))
            return fail(p, k, "a key must be a name, found %s", found(k));
        if ((rc = check_tag(p, k)) != 0)
            return rc;
        size_t i;
        for (i = 0; i < n; i++)
            if (text_is((const char *)k->data.scalar.value,
                        k->data.scalar.length, fields[i].key))
                break;
        if (i == n)
            return unknown(p, k, "key", fields, n, sizeof *fields);
        if (seen->key[i])
            return fail(p, k, "duplicate key '%s' (first on line %zu); remove "
                              "one", fields[i].key,
                        (size_t)seen->key[i]->start_mark.line + 1);
        seen->key[i] = k;
        seen->val[i] = v;
        size_t old = path_add(p, p->plen ? ".%s" : "%s", fields[i].key);
        rc = set_field(p, v, base, &fields[i]);
        path_cut(p, old);
        if (rc)
            return rc;
    }
    return 0;
}

static int apply_defaults(struct parser *p, void *base,
                          const struct field *fields, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct field *f = &fields[i];
        if (f->def && f->type->parse) {
            int rc = f->type->parse(p, NULL, f->def, strlen(f->def), base, f);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static void release_checks(void *base, const struct field *f)
{
    struct zpf_conf_check **v = SLOT(base, f, struct zpf_conf_check *);
    size_t *n = COUNT(base, f);
    for (size_t i = 0; *v && i < *n; i++)
        release_fields(&(*v)[i], CHECK_KEYS, ARRAY_LEN(CHECK_KEYS));
    free(*v);
    *v = NULL;
    *n = 0;
}

static bool equal_checks(const void *a, const void *b, const struct field *f)
{
    size_t n = *CCOUNT(a, f);
    if (n != *CCOUNT(b, f))
        return false;
    const struct zpf_conf_check *x = *CSLOT(a, f, struct zpf_conf_check *);
    const struct zpf_conf_check *y = *CSLOT(b, f, struct zpf_conf_check *);
    for (size_t i = 0; i < n; i++)
        if (x[i].kind != y[i].kind ||
            !equal_fields(&x[i], &y[i], CHECK_KEYS, ARRAY_LEN(CHECK_KEYS)))
            return false;
    return true;
}

static int set_checks(struct parser *p, yaml_node_t *v, void *base,
                      const struct field *f)
{
    static const enum zpf_conf_check_kind kinds[] = {
        [CK_COMMAND] = ZPF_CONF_CHECK_COMMAND, [CK_TCP] = ZPF_CONF_CHECK_TCP,
        [CK_HTTP] = ZPF_CONF_CHECK_HTTP};
    release_checks(base, f);
    if (is_null(v))
        return 0;
    int rc = expect(p, v, YAML_SEQUENCE_NODE, f->type->what);
    if (rc)
        return rc;
    size_t cnt = seq_len(v);
    if (cnt > f->max)
        return fail(p, v, "has %zu checks; at most %llu", cnt,
                    (unsigned long long)f->max);
    if (cnt == 0)
        return 0;
    struct zpf_conf_check *checks = calloc(cnt, sizeof *checks);
    if (checks == NULL)
        return nomem(p);
    *SLOT(base, f, struct zpf_conf_check *) = checks;
    *COUNT(base, f) = cnt;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *it = node_at(p, v->data.sequence.items.start[i]);
        struct zpf_conf_check *c = &checks[i];
        struct seen s;
        memset(&s, 0, sizeof s);
        size_t old = path_add(p, "[%zu]", i);
        rc = apply_mapping(p, it, CHECK_KEYS, ARRAY_LEN(CHECK_KEYS), c, &s,
                           "a check such as {name: web, tcp: "
                           "127.0.0.1:80}");
        if (rc == 0 && s.key[CK_NAME] == NULL)
            rc = fail(p, it, "a check needs a name (%s)",
                      CHECK_KEYS[CK_NAME].doc);
        /* The kinds given, in document order, to blame the second. */
        size_t kind[3], nk = 0;
        for (size_t k = CK_COMMAND; k <= CK_HTTP; k++) {
            if (s.key[k] == NULL)
                continue;
            size_t at = nk++;
            while (at > 0 && s.key[kind[at - 1]]->start_mark.index >
                                 s.key[k]->start_mark.index) {
                kind[at] = kind[at - 1];
                at--;
            }
            kind[at] = k;
        }
        if (rc == 0 && nk == 0)
            rc = fail(p, it, "give one of command, tcp or http");
        if (rc == 0 && nk > 1)
            rc = fail(p, s.key[kind[1]], "give only one of command, tcp or "
                                         "http; found %s and %s",
                      CHECK_KEYS[kind[0]].key, CHECK_KEYS[kind[1]].key);
        if (rc == 0)
            c->kind = kinds[kind[0]];
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (strcmp(checks[j].name, c->name) == 0) {
                path_add(p, ".name");
                rc = fail(p, s.val[CK_NAME], "'%s' is already the name of "
                                             "health.checks[%zu]; names "
                                             "must be unique", c->name, j);
            }
        p->check_at[i][0] = it;
        p->check_at[i][1] = s.val[CK_INTERVAL];
        p->check_at[i][2] = s.val[CK_TIMEOUT];
        path_cut(p, old);
        if (rc)
            return rc;
    }
    return 0;
}

/* --- sections ------------------------------------------------------------- */

struct section;

/* What a finish function knows of its section: where it was written. */
struct where {
    const yaml_node_t *root;
    const yaml_node_t *key; /* "gossip:", or NULL if the section is absent */
    const struct seen *seen;
    const struct section *sec;
};

struct section {
    const char *name;
    const struct field *fields;
    size_t n;
    /* Checks across keys, and derived values; runs after the whole
     * document is read, whether the section was written or not. */
    int (*finish)(struct parser *p, struct zpf_conf *c, const struct where *w);
};

static size_t key_of(const struct where *w, const char *key)
{
    return field_index(w->sec->fields, w->sec->n, key);
}

static bool given(const struct where *w, const char *key)
{
    size_t i = key_of(w, key);
    return i < w->sec->n && w->seen->key[i] != NULL;
}

/* The value node of key if it was given, else the section, else the top. */
static const yaml_node_t *place(const struct where *w, const char *key)
{
    size_t i = key ? key_of(w, key) : w->sec->n;
    if (i < w->sec->n && w->seen->val[i])
        return w->seen->val[i];
    return w->key ? w->key : w->root;
}

static void path_set(struct parser *p, const char *s)
{
    path_cut(p, 0);
    path_add(p, "%s", s);
}

static int node_finish(struct parser *p, struct zpf_conf *c,
                       const struct where *w)
{
    if (!given(w, "name")) {
        char h[256], q[QBUF];
        const yaml_node_t *at = place(w, NULL);
        path_set(p, "");
        if (gethostname(h, sizeof h) != 0)
            return fail(p, at, "node.name is not set and the host name is "
                               "unknown (%s); set node.name",
                        strerror(errno));
        h[sizeof h - 1] = '\0';
        size_t n = strcspn(h, ".");
        bool ok = n >= 1 && n <= ZPF_NAME_MAX;
        for (size_t i = 0; ok && i < n; i++)
            ok = visible((unsigned char)h[i]);
        if (!ok)
            return fail(p, at, "node.name is not set and the host name '%s' "
                               "is not a valid node name; set node.name",
                        quote(q, h, n));
        int rc = put_str(p, &c->node.name, h, n);
        if (rc)
            return rc;
    }
    c->core.name = c->node.name;
    return 0;
}

static int gossip_finish(struct parser *p, struct zpf_conf *c,
                         const struct where *w)
{
    char a[32], b[32], addr[64];
    const struct zpf_config *k = &c->core;
    path_set(p, "gossip");
    if (k->probe_timeout_ms >= k->probe_interval_ms)
        return fail(p, place(w, given(w, "probe_timeout") ? "probe_timeout"
                                                           : "probe_interval"),
                    "probe_timeout (%s) must be shorter than probe_interval "
                    "(%s)", fmt_dur(a, sizeof a, k->probe_timeout_ms),
                    fmt_dur(b, sizeof b, k->probe_interval_ms));
    if (k->counter_timeout_ms <= k->heartbeat_interval_ms)
        return fail(p, place(w, given(w, "counter_timeout")
                                    ? "counter_timeout"
                                    : "heartbeat_interval"),
                    "counter_timeout (%s) must be longer than "
                    "heartbeat_interval (%s)",
                    fmt_dur(a, sizeof a, k->counter_timeout_ms),
                    fmt_dur(b, sizeof b, k->heartbeat_interval_ms));
    struct zpf_conf_gossip *g = &c->gossip;
    if (!given(w, "advertise")) {
        if (addr_wildcard(&g->bind)) {
            path_set(p, "");
            return fail(p, place(w, "bind"),
                        "gossip.advertise is required when bind is a "
                        "wildcard address (%s): set it to the address other "
                        "nodes reach this one at, e.g. advertise: "
                        "192.0.2.10:7946",
                        fmt_addr(addr, sizeof addr, &g->bind));
        }
        g->advertise = g->bind;
    }
    /* A dual-stack [::] socket can send from either family; any other
     * socket only from its own. */
    bool dual = g->bind.family == ZPF_AF_INET6 && addr_wildcard(&g->bind);
    if (g->advertise.family != g->bind.family && !dual)
        return fail(p, place(w, "advertise"),
                    "advertise is IPv%u but bind (%s) is IPv%u; use the same "
                    "address family", g->advertise.family,
                    fmt_addr(addr, sizeof addr, &g->bind), g->bind.family);
    c->core.cluster = g->cluster;
    c->core.addr = g->advertise;
    return 0;
}

static int security_finish(struct parser *p, struct zpf_conf *c,
                           const struct where *w)
{
    const struct zpf_conf_security *s = &c->security;
    bool ring = given(w, "keyring"), keys = given(w, "keys");
    path_set(p, "security");
    if (s->insecure && (ring || keys))
        return fail(p, place(w, "insecure"),
                    "insecure: true turns encryption off, but %s is set; "
                    "remove one", ring ? "keyring" : "keys");
    if (ring && keys)
        return fail(p, place(w, "keys"),
                    "set security.keyring or security.keys, not both");
    path_set(p, "");
    if (!s->insecure && !ring && !keys)
        return fail(p, place(w, given(w, "insecure") ? "insecure" : NULL),
                    "set security.keyring, security.keys, or insecure: true "
                    "to run without encryption");
    return 0;
}

static int health_finish(struct parser *p, struct zpf_conf *c,
                         const struct where *w)
{
    char a[32], b[32];
    struct zpf_conf_health *h = &c->health;
    path_set(p, "health");
    if (h->timeout_ms >= h->interval_ms)
        return fail(p, place(w, given(w, "timeout") ? "timeout" : "interval"),
                    "timeout (%s) must be shorter than interval (%s)",
                    fmt_dur(a, sizeof a, h->timeout_ms),
                    fmt_dur(b, sizeof b, h->interval_ms));
    for (size_t i = 0; i < h->n_checks; i++) {
        struct zpf_conf_check *k = &h->checks[i];
        const yaml_node_t *const *at = p->check_at[i];
        if (at[1] == NULL)
            k->interval_ms = h->interval_ms;
        if (at[2] == NULL)
            k->timeout_ms = h->timeout_ms;
        if (k->timeout_ms >= k->interval_ms) {
            path_set(p, "");
            path_add(p, "health.checks[%zu]", i);
            return fail(p, at[2] ? at[2] : at[1] ? at[1] : at[0],
                        "timeout (%s%s) must be shorter than interval "
                        "(%s%s)", fmt_dur(a, sizeof a, k->timeout_ms),
                        at[2] ? "" : ", from health.timeout",
                        fmt_dur(b, sizeof b, k->interval_ms),
                        at[1] ? "" : ", from health.interval");
        }
    }
    return 0;
}

#define SECTION(name, table, finish) {name, table, ARRAY_LEN(table), finish}

/* The top level of the file.  A new section is one line here, its table
 * and its struct in conf.h. */
static const struct section SECTIONS[] = {
    SECTION("node", NODE_KEYS, node_finish),
    SECTION("gossip", GOSSIP_KEYS, gossip_finish),
    SECTION("security", SECURITY_KEYS, security_finish),
    SECTION("control", CONTROL_KEYS, NULL),
    SECTION("health", HEALTH_KEYS, health_finish),
    SECTION("log", LOG_KEYS, NULL),
    SECTION("metrics", METRICS_KEYS, NULL),
};

#define NSECTIONS ARRAY_LEN(SECTIONS)

_Static_assert(NSECTIONS <= FIELDS_MAX, "struct seen is too narrow");
_Static_assert(ARRAY_LEN(NODE_KEYS) <= FIELDS_MAX, "struct seen");
_Static_assert(ARRAY_LEN(GOSSIP_KEYS) <= FIELDS_MAX, "struct seen");
_Static_assert(ARRAY_LEN(SECURITY_KEYS) <= FIELDS_MAX, "struct seen");
_Static_assert(ARRAY_LEN(CONTROL_KEYS) <= FIELDS_MAX, "struct seen");
_Static_assert(ARRAY_LEN(HEALTH_KEYS) <= FIELDS_MAX, "struct seen");
_Static_assert(ARRAY_LEN(LOG_KEYS) <= FIELDS_MAX, "struct seen");
_Static_assert(ARRAY_LEN(METRICS_KEYS) <= FIELDS_MAX, "struct seen");
_Static_assert(ARRAY_LEN(CHECK_KEYS) == CK_TIMEOUT + 1, "CK_* indices");

/* --- parse ---------------------------------------------------------------- */

/* Whether line (0-based) of buf holds something like [::1] outside
 * quotes: to YAML an unquoted [...] is a list, the commonest way to break a
 * zpf file. */
static bool bare_v6(const char *buf, size_t len, size_t line)
{
    size_t i = 0;
    for (size_t l = 0; l < line && i < len; i++)
        if (buf[i] == '\n')
            l++;
    char quote = 0;
    for (; i < len && buf[i] != '\n'; i++) {
        if (quote) {
            quote = buf[i] == quote ? 0 : quote;
        } else if (buf[i] == '\'' || buf[i] == '"') {
            quote = buf[i];
        } else if (buf[i] == '[') {
            size_t j = i + 1, colons = 0;
            for (; j < len && (host_char(buf[j]) || buf[j] == ':'); j++)
                colons += buf[j] == ':';
            if (j < len && buf[j] == ']' && colons >= 2)
                return true;
        }
    }
    return false;
}

static int yaml_error(struct parser *p, const yaml_parser_t *y,
                      const char *buf, size_t len)
{
    const char *problem = y->problem ? y->problem : "malformed document";
    yaml_mark_t m = y->problem_mark;
    if (y->error == YAML_MEMORY_ERROR)
        return nomem(p);
    if (y->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset, not a mark. */
        size_t off = y->problem_offset < len ? y->problem_offset : len;
        memset(&m, 0, sizeof m);
        for (size_t i = 0; i < off; i++) {
            if (buf[i] == '\n') {
                m.line++;
                m.column = 0;
            } else if (((unsigned char)buf[i] & 0xc0) != 0x80) {
                m.column++; /* characters, as in libyaml's marks */
            }
        }
        return fail_code(p, ZPF_EINVAL, &m, "not readable as YAML text: %s",
                         problem);
    }
    const char *hint = bare_v6(buf, len, m.line)
                           ? "; quote an IPv6 address in brackets, as in "
                             "'[::1]:7946'"
                           : "";
    if (y->context)
        return fail_code(p, ZPF_EINVAL, &m,
                         "YAML syntax error: %s (%s on line %zu)%s", problem,
                         y->context, (size_t)y->context_mark.line + 1, hint);
    return fail_code(p, ZPF_EINVAL, &m, "YAML syntax error: %s%s", problem,
                     hint);
}

/* Refuse deep flow nesting before libyaml spends quadratic time on it.
 * Brackets are counted everywhere, in comments and quoted strings too:
 * a false alarm would need dozens of unclosed brackets in a row. */
static int flow_depth(struct parser *p, const char *buf, size_t len)
{
    yaml_mark_t m;
    size_t depth = 0;
    memset(&m, 0, sizeof m);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '[' || c == '{') {
            if (++depth > FLOW_DEPTH_MAX)
                return fail_code(p, ZPF_EINVAL, &m, "[ ] and { } nest "
                                 "deeper than %d levels; a configuration "
                                 "needs two or three", FLOW_DEPTH_MAX);
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
        if (c == '\n') {
            m.line++;
            m.column = 0;
        } else if ((c & 0xc0) != 0x80) { /* libyaml counts characters */
            m.column++;
        }
    }
    return 0;
}

/* Inline keys must not outlive the parse in the document's memory. */
static void wipe_keys(struct parser *p, const yaml_node_t *root)
{
    if (root == NULL || root->type != YAML_MAPPING_NODE)
        return;
    for (yaml_node_pair_t *s = root->data.mapping.pairs.start;
         s < root->data.mapping.pairs.top; s++) {
        yaml_node_t *k = node_at(p, s->key), *v = node_at(p, s->value);
        if (k->type != YAML_SCALAR_NODE || v->type != YAML_MAPPING_NODE ||
            !text_is((const char *)k->data.scalar.value,
                     k->data.scalar.length, "security"))
            continue;
        for (yaml_node_pair_t *e = v->data.mapping.pairs.start;
             e < v->data.mapping.pairs.top; e++) {
            yaml_node_t *ek = node_at(p, e->key), *ev = node_at(p, e->value);
            if (ek->type != YAML_SCALAR_NODE ||
                !text_is((const char *)ek->data.scalar.value,
                         ek->data.scalar.length, "keys"))
                continue;
            if (ev->type == YAML_SCALAR_NODE)
                sodium_memzero(ev->data.scalar.value, ev->data.scalar.length);
            if (ev->type != YAML_SEQUENCE_NODE)
                continue;
            for (yaml_node_item_t *i = ev->data.sequence.items.start;
                 i < ev->data.sequence.items.top; i++) {
                yaml_node_t *it = node_at(p, *i);
                if (it->type == YAML_SCALAR_NODE)
                    sodium_memzero(it->data.scalar.value,
                                   it->data.scalar.length);
            }
        }
    }
}

static int read_document(struct parser *p, yaml_node_t *root,
                         struct zpf_conf *c)
{
    struct seen top, seen[NSECTIONS];
    int rc;
    memset(&top, 0, sizeof top);
    memset(seen, 0, sizeof seen);
    if (root == NULL || is_null(root))
        return fail(p, NULL, "the configuration is empty; start from "
                             "zpf.yaml.example");
    if (root->type != YAML_MAPPING_NODE)
        return fail(p, root, "the configuration must be a mapping of "
                             "sections (node:, gossip:, ...), found %s",
                    found(root));
    if ((rc = check_tag(p, root)) != 0)
        return rc;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
         pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);
        if (k->type != YAML_SCALAR_NODE || is_null(k))
            return fail(p, k, "a section must be a name, found %s", found(k));
        if ((rc = check_tag(p, k)) != 0)
            return rc;
        size_t i;
        for (i = 0; i < NSECTIONS; i++)
            if (text_is((const char *)k->data.scalar.value,
                        k->data.scalar.length, SECTIONS[i].name))
                break;
        if (i == NSECTIONS)
            return unknown(p, k, "section", SECTIONS, NSECTIONS,
                           sizeof *SECTIONS);
        if (top.key[i])
            return fail(p, k, "duplicate section '%s' (first on line %zu); "
                              "merge them", SECTIONS[i].name,
                        (size_t)top.key[i]->start_mark.line + 1);
        top.key[i] = k;
        top.val[i] = v;
        path_set(p, SECTIONS[i].name);
        rc = apply_mapping(p, v, SECTIONS[i].fields, SECTIONS[i].n, c,
                           &seen[i], "a mapping of keys");
        path_set(p, "");
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < NSECTIONS; i++) {
        const struct section *s = &SECTIONS[i];
        struct where w = {root, top.key[i], &seen[i], s};
        for (size_t f = 0; f < s->n; f++)
            if ((s->fields[f].flags & F_REQUIRED) && !seen[i].key[f])
                return fail(p, w.key ? w.key : root,
                            "%s.%s is required (%s)", s->name,
                            s->fields[f].key, s->fields[f].doc);
        if (s->finish && (rc = s->finish(p, c, &w)) != 0)
            return rc;
        path_set(p, "");
    }
    return 0;
}

int zpf_conf_parse(const char *buf, size_t len, const char *filename,
                   struct zpf_conf *out, char *err, size_t errlen)
{
    struct parser p;
    yaml_parser_t y;
    yaml_document_t doc, more;
    int rc;
    memset(&p, 0, sizeof p);
    p.file = filename ? filename : "<config>";
    p.dir_of = filename;
    p.err = err;
    p.errlen = err ? errlen : 0;
    if (p.errlen)
        err[0] = '\0';
    if (out == NULL || (buf == NULL && len > 0))
        return fail(&p, NULL, "no configuration given");
    memset(out, 0, sizeof *out);
    if (len > ZPF_CONF_FILE_MAX)
        return fail_code(&p, ZPF_E2BIG, NULL, "the file is larger than "
                         "1 MiB; a zpf configuration is a few KiB: is this "
                         "the right file?");

    if ((rc = flow_depth(&p, buf ? buf : "", len)) != 0)
        return rc;
    zpf_config_default(&out->core);
    for (size_t i = 0; i < NSECTIONS; i++)
        if ((rc = apply_defaults(&p, out, SECTIONS[i].fields,
                                 SECTIONS[i].n)) != 0)
            goto done_nodoc;

    if (!yaml_parser_initialize(&y)) {
        rc = nomem(&p);
        goto done_nodoc;
    }
    yaml_parser_set_input_string(&y, (const unsigned char *)(buf ? buf : ""),
                                 len);
    if (!yaml_parser_load(&y, &doc)) {
        rc = yaml_error(&p, &y, buf, len);
        yaml_parser_delete(&y);
        goto done_nodoc;
    }
    p.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    rc = read_document(&p, root, out);
    if (rc == 0) {
        /* A second document would be silently ignored by a reader that
         * stops at the first: refuse it. */
        if (!yaml_parser_load(&y, &more)) {
            rc = yaml_error(&p, &y, buf, len);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&more);
            if (r2)
                rc = fail(&p, r2, "only one YAML document is allowed; remove "
                                  "the '---' line and what follows it");
            yaml_document_delete(&more);
        }
    }
    wipe_keys(&p, root);
    yaml_document_delete(&doc);
    yaml_parser_delete(&y);
done_nodoc:
    if (rc)
        zpf_conf_free(out);
    return rc;
}

static int errno_code(int e)
{
    switch (e) {
    case ENOENT: case ENOTDIR: return ZPF_ENOENT;
    case EACCES: case EPERM: return ZPF_EPERM;
    case ENOMEM: return ZPF_ENOMEM;
    default: return ZPF_EIO;
    }
}

/* Read at most max + 1 bytes, so a caller can tell "too large". */
static ssize_t read_bounded(int fd, char *buf, size_t max)
{
    size_t got = 0;
    while (got < max + 1) {
        ssize_t k = read(fd, buf + got, max + 1 - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

int zpf_conf_load(const char *path, struct zpf_conf *out, char *err,
                  size_t errlen)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (path == NULL || out == NULL) {
        zpf_errf(err, errlen, "no configuration file given");
        return ZPF_EINVAL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        zpf_errf(err, errlen, "%s: cannot open: %s", path, strerror(e));
        return errno_code(e);
    }
    char *buf = malloc(ZPF_CONF_FILE_MAX + 1);
    if (buf == NULL) {
        close(fd);
        zpf_errf(err, errlen, "%s: out of memory", path);
        return ZPF_ENOMEM;
    }
    ssize_t n = read_bounded(fd, buf, ZPF_CONF_FILE_MAX);
    int e = errno;
    close(fd);
    if (n < 0) {
        free(buf);
        zpf_errf(err, errlen, "%s: cannot read: %s", path, strerror(e));
        return errno_code(e) == ZPF_ENOMEM ? ZPF_ENOMEM : ZPF_EIO;
    }
    int rc = zpf_conf_parse(buf, (size_t)n, path, out, err, errlen);
    free(buf);
    return rc;
}

void zpf_conf_free(struct zpf_conf *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < NSECTIONS; i++)
        release_fields(c, SECTIONS[i].fields, SECTIONS[i].n);
    memset(c, 0, sizeof *c);
}

/* --- keyring files -------------------------------------------------------- */

static int keyring_lines(const char *path, char *buf, size_t len,
                         uint8_t (*keys)[ZPF_CONF_KEY_LEN], size_t max,
                         size_t *lines, char *err, size_t errlen)
{
    size_t n = 0, line = 1;
    for (char *s = buf, *end = buf + len; s < end; line++) {
        char *eol = memchr(s, '\n', (size_t)(end - s));
        if (eol == NULL)
            eol = end;
        char *hash = memchr(s, '#', (size_t)(eol - s));
        size_t l = (size_t)((hash ? hash : eol) - s);
        while (l && (s[0] == ' ' || s[0] == '\t' || s[0] == '\r')) {
            s++;
            l--;
        }
        while (l && (s[l - 1] == ' ' || s[l - 1] == '\t' ||
                     s[l - 1] == '\r'))
            l--;
        if (l) {
            size_t got = 0;
            if (n == max) {
                zpf_errf(err, errlen, "%s:%zu: more than %zu keys; remove old "
                    "ones (the first key is the primary)", path, line, max);
                return ZPF_ELIMIT;
            }
            int rc = decode_key(s, l, keys[n], &got);
            if (rc == 1) {
                zpf_errf(err, errlen, "%s:%zu: not a key: expected base64 "
                    "(standard alphabet with '=' padding) of 32 bytes; make "
                    "one with: %s", path, line, KEYGEN);
                return ZPF_EINVAL;
            }
            if (rc == 2) {
                zpf_errf(err, errlen, "%s:%zu: the key decodes to %zu bytes; a "
                    "key is 32 bytes (make one with: %s)", path, line, got,
                    KEYGEN);
                return ZPF_EINVAL;
            }
            for (size_t j = 0; j < n; j++)
                if (sodium_memcmp(keys[j], keys[n], ZPF_CONF_KEY_LEN) == 0) {
                    zpf_errf(err, errlen, "%s:%zu: the same key as line %zu; "
                        "remove one", path, line, lines[j]);
                    return ZPF_EINVAL;
                }
            lines[n++] = line;
        }
        s = eol + 1;
    }
    if (n == 0) {
        zpf_errf(err, errlen, "%s: no keys; put one base64 key per line, the "
            "primary first (make one with: %s)", path, KEYGEN);
        return ZPF_EINVAL;
    }
    return (int)n;
}

int zpf_conf_read_keyring(const char *path, uint8_t (*keys)[ZPF_CONF_KEY_LEN],
                          size_t max, char *err, size_t errlen)
{
    struct stat st;
    if (path == NULL || keys == NULL || max == 0 || max > INT_MAX) {
        zpf_errf(err, errlen, "%s: no keyring or no room for keys",
            path ? path : "(null)");
        return ZPF_EINVAL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        zpf_errf(err, errlen, "%s: cannot open the keyring: %s", path,
            strerror(e));
        return errno_code(e);
    }
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        zpf_errf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        rc = ZPF_EIO;
    } else if (!S_ISREG(st.st_mode)) {
        zpf_errf(err, errlen, "%s: not a regular file", path);
        rc = ZPF_EIO;
    } else if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        zpf_errf(err, errlen, "%s: writable by %s (mode %04o): whoever can write "
            "it can add a key and join the cluster; run chmod 600 %s", path,
            (st.st_mode & S_IWOTH) ? "everyone" : "its group",
            (unsigned)(st.st_mode & 07777), path);
        rc = ZPF_EPERM;
    } else if (st.st_mode & S_IROTH) {
        zpf_errf(err, errlen, "%s: readable by everyone (mode %04o): any local "
            "user could read the cluster key; run chmod 600 %s", path,
            (unsigned)(st.st_mode & 07777), path);
        rc = ZPF_EPERM;
    } else if (st.st_size > KEYRING_FILE_MAX) {
        zpf_errf(err, errlen, "%s: larger than %d KiB; a keyring holds a few "
            "lines", path, KEYRING_FILE_MAX / 1024);
        rc = ZPF_E2BIG;
    }
    if (rc) {
        close(fd);
        return rc;
    }
    char *buf = malloc(KEYRING_FILE_MAX + 1);
    size_t *lines = calloc(max, sizeof *lines);
    if (buf == NULL || lines == NULL) {
        zpf_errf(err, errlen, "%s: out of memory", path);
        rc = ZPF_ENOMEM;
    } else {
        ssize_t n = read_bounded(fd, buf, KEYRING_FILE_MAX);
        if (n < 0) {
            zpf_errf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            rc = ZPF_EIO;
        } else if (n > KEYRING_FILE_MAX) {
            zpf_errf(err, errlen, "%s: larger than %d KiB; a keyring holds a few "
                "lines", path, KEYRING_FILE_MAX / 1024);
            rc = ZPF_E2BIG;
        } else {
            rc = keyring_lines(path, buf, (size_t)n, keys, max, lines, err,
                               errlen);
        }
        sodium_memzero(buf, KEYRING_FILE_MAX + 1);
    }
    close(fd);
    free(buf);
    free(lines);
    if (rc < 0)
        sodium_memzero(keys, max * ZPF_CONF_KEY_LEN);
    return rc;
}

/* --- SIGHUP and documentation --------------------------------------------- */

static int diff(const struct zpf_conf *a, const struct zpf_conf *b, bool live,
                char *out, size_t cap)
{
    size_t used = 0;
    int count = 0;
    bool full = false;
    if (out && cap)
        out[0] = '\0';
    if (a == NULL || b == NULL)
        return ZPF_EINVAL;
    for (size_t i = 0; i < NSECTIONS; i++) {
        const struct section *s = &SECTIONS[i];
        for (size_t k = 0; k < s->n; k++) {
            const struct field *f = &s->fields[k];
            if (((f->flags & F_LIVE) != 0) != live || f->type->equal(a, b, f))
                continue;
            count++;
            if (out == NULL || cap == 0 || full)
                continue;
            size_t need = (used ? 2 : 0) + strlen(s->name) + 1 +
                          strlen(f->key);
            if (used + need + 1 > cap) {
                full = true;
                continue;
            }
            used += clamp_len(snprintf(out + used, cap - used, "%s%s.%s",
                                       used ? ", " : "", s->name, f->key),
                              cap - used);
        }
    }
    return count;
}

int zpf_conf_diff_fixed(const struct zpf_conf *old, const struct zpf_conf *new,
                        char *out, size_t cap)
{
    return diff(old, new, false, out, cap);
}

int zpf_conf_diff_live(const struct zpf_conf *old, const struct zpf_conf *new,
                       char *out, size_t cap)
{
    return diff(old, new, true, out, cap);
}

int zpf_conf_keys(size_t i, struct zpf_conf_keyinfo *out)
{
    const char *section = NULL;
    const struct field *f = NULL;
    for (size_t s = 0; s < NSECTIONS && f == NULL; s++) {
        if (i < SECTIONS[s].n) {
            section = SECTIONS[s].name;
            f = &SECTIONS[s].fields[i];
        } else {
            i -= SECTIONS[s].n;
        }
    }
    if (f == NULL && i < ARRAY_LEN(CHECK_KEYS)) {
        section = "health.checks[]";
        f = &CHECK_KEYS[i];
    }
    if (f == NULL || out == NULL)
        return ZPF_ENOENT;
    out->section = section;
    out->key = f->key;
    out->def = f->def;
    out->doc = f->doc;
    out->live = (f->flags & F_LIVE) != 0;
    out->required = (f->flags & F_REQUIRED) != 0;
    return 0;
}
