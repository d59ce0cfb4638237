/*
 * zpfctl's formatters: control replies (jansson values) to text.
 *
 * Text is built in a growable buffer (struct sb) that remembers an
 * allocation failure instead of reporting it at every append, so each
 * formatter reads as a straight list of what it prints and checks once at
 * the end.  Tables are built in two passes: every cell is cleaned into one
 * shared buffer while the column widths are measured, then the rows are
 * laid out.  A members reply of 10,000 nodes is a few megabytes, so cells
 * live in one buffer with offsets rather than in 80,000 small allocations.
 *
 * Absent, null and empty fields print as "-"; a field of the wrong type
 * is an error naming it (see zpfctl_fmt.h for why).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zpfctl_fmt.h"

/* Shown for a field the agent did not send. */
#define ABSENT "-"

/* Between table columns: two spaces, so a column of single words stays
 * readable and `awk '{print $1}'` still works on names without spaces. */
#define COL_GAP 2

/* --- growable text buffer ------------------------------------------------- */

struct sb {
    char *p;
    size_t len, cap;
    bool oom;
};

/* Make room for n more bytes plus the NUL. */
static bool sb_reserve(struct sb *b, size_t n)
{
    if (b->oom)
        return false;
    if (n < b->cap - b->len && b->p != NULL)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= n) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void sb_putn(struct sb *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sb *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

static void sb_pad(struct sb *b, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memset(b->p + b->len, ' ', n);
    b->len += n;
    b->p[b->len] = '\0';
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void sb_printf(struct sb *b, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        sb_putn(b, small, (size_t)n);
        return;
    }
    if (!sb_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/*
 * Bytes at s (n available) that form one character a terminal could act
 * on: C0 controls and DEL, C1 controls (U+0080..U+009F), and the bidi
 * embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069),
 * which reorder what follows them on the line.  0 if s starts with an
 * ordinary byte.
 */
static size_t unsafe_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x20 || s[0] == 0x7f)
        return 1;
    if (s[0] == 0xc2 && n >= 2 && s[1] >= 0x80 && s[1] <= 0x9f)
        return 2;
    if (s[0] == 0xe2 && n >= 3) {
        if (s[1] == 0x80 && s[2] >= 0xaa && s[2] <= 0xae)
            return 3;
        if (s[1] == 0x81 && s[2] >= 0xa6 && s[2] <= 0xa9)
            return 3;
    }
    return 0;
}

static void sb_put_clean(struct sb *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        size_t bad = unsafe_len(u + i, n - i);
        if (bad == 0) {
            i++;
            continue;
        }
        sb_putn(b, s + run, i - run);
        sb_putn(b, "?", 1);
        i += bad;
        run = i;
    }
    sb_putn(b, s + run, n - run);
}

/* Columns a cleaned string takes: its code points (see the header). */
static size_t text_width(const char *s, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            w++;
    return w;
}

static int sb_finish(struct sb *b, char **out, size_t *outlen, char *err,
                     size_t errlen)
{
    if (!b->oom && b->p == NULL)
        sb_putn(b, "", 0);
    if (b->oom) {
        free(b->p);
        *out = NULL;
        if (errlen)
            snprintf(err, errlen, "out of memory formatting the reply");
        return ZPF_ENOMEM;
    }
    *out = b->p;
    if (outlen)
        *outlen = b->len;
    return 0;
}

/* --- typed field access --------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return ZPF_EFIELD;
}

/* Each getter returns 1 when the field is there, 0 when it is absent or
 * null, ZPF_EFIELD (with a message naming what and key) when it has the
 * wrong type.  The output is set to a zero value on every path. */
static int get_str(const json_t *obj, const char *key, const char **s,
                   size_t *n, const char *what, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    *s = "";
    *n = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(err, errlen, "%s: \"%s\" is not a string", what, key);
    *s = json_string_value(v);
    *n = json_string_length(v);
    return 1;
}

static int get_uint(const json_t *obj, const char *key, uint64_t *u,
                    const char *what, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    *u = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return fail(err, errlen, "%s: \"%s\" is not a non-negative integer",
                    what, key);
    *u = (uint64_t)json_integer_value(v);
    return 1;
}

static int get_bool(const json_t *obj, const char *key, bool *b,
                    const char *what, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    *b = false;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return fail(err, errlen, "%s: \"%s\" is not true or false", what,
                    key);
    *b = json_is_true(v);
    return 1;
}

/* A string to show: ABSENT when the field is absent, null or empty, so
 * every cell of a table has a word in it and `awk` counts columns right. */
static int get_shown(const json_t *obj, const char *key, const char **s,
                     size_t *n, const char *what, char *err, size_t errlen)
{
    int rc = get_str(obj, key, s, n, what, err, errlen);
    if (rc < 0)
        return rc;
    if (rc == 0 || *n == 0) {
        *s = ABSENT;
        *n = strlen(ABSENT);
    }
    return 0;
}

static int need_object(const json_t *v, const char *what, char *err,
                       size_t errlen)
{
    if (!json_is_object(v))
        return fail(err, errlen, "%s is not a JSON object", what);
    return 0;
}

/* --- durations ------------------------------------------------------------ */

static int put_fmt(char *buf, size_t len, int n)
{
    if (n < 0 || (size_t)n >= len) {
        if (len)
            buf[0] = '\0';
        return ZPF_ENOSPC;
    }
    return n;
}

int zpf_ctlfmt_age(uint64_t ms, char *buf, size_t len)
{
    const uint64_t s = 1000, m = 60 * s, h = 60 * m, d = 24 * h;
    int n;
    if (ms < s)
        n = snprintf(buf, len, "%" PRIu64 "ms", ms);
    else if (ms < m)
        n = snprintf(buf, len, "%" PRIu64 ".%" PRIu64 "s", ms / s,
                     ms % s / 100);
    else if (ms < h)
        n = snprintf(buf, len, "%" PRIu64 "m", ms / m);
    else if (ms < d)
        n = snprintf(buf, len, "%" PRIu64 "h", ms / h);
    else
        n = snprintf(buf, len, "%" PRIu64 "d", ms / d);
    return put_fmt(buf, len, n);
}

int zpf_ctlfmt_uptime(uint64_t s, char *buf, size_t len)
{
    uint64_t d = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60;
    uint64_t sec = s % 60;
    int n;
    if (d)
        n = snprintf(buf, len,
                     "%" PRIu64 "d%02" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s",
                     d, h, m, sec);
    else if (h)
        n = snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s", h,
                     m, sec);
    else if (m)
        n = snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", m, sec);
    else
        n = snprintf(buf, len, "%" PRIu64 "s", sec);
    return put_fmt(buf, len, n);
}

/* --- small helpers -------------------------------------------------------- */

static const char *const STATES[] = {"alive", "suspect", "dead", "left",
                                     "stalled"};
#define NSTATES (sizeof STATES / sizeof STATES[0])

bool zpf_ctlfmt_state_valid(const char *state)
{
    if (state == NULL)
        return false;
    for (size_t i = 0; i < NSTATES; i++)
        if (strcmp(state, STATES[i]) == 0)
            return true;
    return false;
}

int zpf_ctlfmt_clean(const char *s, size_t len, char **out)
{
    struct sb b = {0};
    sb_put_clean(&b, s, len);
    return sb_finish(&b, out, NULL, NULL, 0);
}

int zpf_ctlfmt_reply(const json_t *reply, const json_t **result,
                     const char **code, const char **message, char *err,
                     size_t errlen)
{
    if (!json_is_object(reply))
        return fail(err, errlen, "the reply is not a JSON object");
    const json_t *v = json_object_get(reply, "v");
    if (v == NULL)
        return fail(err, errlen, "the reply has no protocol version \"v\"");
    if (!json_is_integer(v) ||
        json_integer_value(v) != ZPF_CTLFMT_PROTOCOL_VERSION) {
        if (errlen) {
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT |
                                           JSON_ENSURE_ASCII);
            snprintf(err, errlen,
                     "the reply is control protocol version %.32s; this "
                     "zpfctl speaks version %d (use the zpfctl that came "
                     "with this zpfd)",
                     text ? text : "?", ZPF_CTLFMT_PROTOCOL_VERSION);
            free(text);
        }
        return ZPF_EVERSION;
    }
    const json_t *ok = json_object_get(reply, "ok");
    if (!json_is_boolean(ok))
        return fail(err, errlen, "the reply has no \"ok\": true or false");
    if (json_is_true(ok)) {
        const json_t *r = json_object_get(reply, "result");
        if (r == NULL)
            return fail(err, errlen, "the reply says ok but has no result");
        if (result)
            *result = r;
        return 0;
    }
    const json_t *e = json_object_get(reply, "error");
    if (!json_is_object(e))
        return fail(err, errlen, "the reply says not ok but has no error "
                                 "object");
    const json_t *c = json_object_get(e, "code");
    if (!json_is_string(c) || json_string_length(c) == 0)
        return fail(err, errlen, "the error reply has no \"code\" string");
    const json_t *m = json_object_get(e, "message");
    if (m != NULL && !json_is_null(m) && !json_is_string(m))
        return fail(err, errlen, "the error reply's \"message\" is not a "
                                 "string");
    if (code)
        *code = json_string_value(c);
    if (message)
        *message = json_is_string(m) ? json_string_value(m) : "";
    return 1;
}

/* --- members -------------------------------------------------------------- */

enum { C_NAME, C_ADDR, C_STATE, C_INC, C_COUNTER, C_AGE, C_ZONE, C_PROVIDER,
       NCOLS };

static const struct {
    const char *title;
    bool right; /* numbers line up on their last digit */
} COLS[NCOLS] = {
    [C_NAME] = {"NAME", false},     [C_ADDR] = {"ADDR", false},
    [C_STATE] = {"STATE", false},   [C_INC] = {"INC", true},
    [C_COUNTER] = {"COUNTER", true}, [C_AGE] = {"AGE", true},
    [C_ZONE] = {"ZONE", false},     [C_PROVIDER] = {"PROVIDER", false},
};

struct cell {
    size_t off, len, width; /* in the shared cell buffer */
};

struct row {
    const char *name;
    size_t name_len;
    size_t index; /* in the reply: the tie-break, so sorting is stable */
    const json_t *m;
};

static int row_cmp(const void *pa, const void *pb)
{
    const struct row *a = pa, *b = pb;
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, n);
    if (c)
        return c;
    if (a->name_len != b->name_len)
        return a->name_len < b->name_len ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

static int check_state_arg(const char *state, char *err, size_t errlen)
{
    if (state == NULL || zpf_ctlfmt_state_valid(state))
        return 0;
    if (errlen)
        snprintf(err, errlen, "unknown state \"%.32s\"; use alive, suspect, "
                              "dead, left or stalled", state);
    return ZPF_EINVAL;
}

/* Whether member m (an object) is in state; any member when state is NULL. */
static int in_state(const json_t *m, const char *state, const char *what,
                    char *err, size_t errlen)
{
    if (state == NULL)
        return 1;
    const char *s = NULL;
    size_t n = 0;
    int rc = get_str(m, "state", &s, &n, what, err, errlen);
    if (rc <= 0)
        return rc;
    return n == strlen(state) && memcmp(s, state, n) == 0;
}

int zpf_ctlfmt_members_filter(const json_t *members, const char *state,
                              json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = check_state_arg(state, err, errlen);
    if (rc < 0)
        return rc;
    if (!json_is_array(members))
        return fail(err, errlen, "the members reply is not a JSON array");
    json_t *a = json_array();
    if (a == NULL)
        goto oom;
    for (size_t i = 0; i < json_array_size(members); i++) {
        const json_t *m = json_array_get(members, i);
        char what[64];
        snprintf(what, sizeof what, "members reply, element %zu", i);
        if ((rc = need_object(m, what, err, errlen)) < 0 ||
            (rc = in_state(m, state, what, err, errlen)) < 0) {
            json_decref(a);
            return rc;
        }
        /* json_array_append takes its own reference and leaves m as is. */
        if (rc && json_array_append(a, (json_t *)m) < 0) {
            json_decref(a);
            goto oom;
        }
    }
    *out = a;
    return 0;
oom:
    if (errlen)
        snprintf(err, errlen, "out of memory filtering the members reply");
    return ZPF_ENOMEM;
}

/* Clean one cell's text into cells, record where it went. */
static void cell_text(struct sb *cells, struct cell *c, const char *s,
                      size_t n)
{
    c->off = cells->len;
    sb_put_clean(cells, s, n);
    c->len = cells->len - c->off;
    c->width = cells->oom ? 0 : text_width(cells->p + c->off, c->len);
}


static int cell_str(struct sb *cells, struct cell *c, const json_t *m,
                    const char *key, const char *what, char *err,
                    size_t errlen)
{
    const char *s;
    size_t n;
    int rc = get_shown(m, key, &s, &n, what, err, errlen);
    if (rc < 0)
        return rc;
    cell_text(cells, c, s, n);
    return 0;
}

static int cell_uint(struct sb *cells, struct cell *c, const json_t *m,
                     const char *key, bool age, const char *what, char *err,
                     size_t errlen)
{
    uint64_t u = 0;
    char buf[ZPF_CTLFMT_DURATION_MAX];
    int rc = get_uint(m, key, &u, what, err, errlen);
    if (rc < 0)
        return rc;
    if (rc == 0)
        snprintf(buf, sizeof buf, "%s", ABSENT);
    else if (age)
        zpf_ctlfmt_age(u, buf, sizeof buf);
    else
        snprintf(buf, sizeof buf, "%" PRIu64, u);
    cell_text(cells, c, buf, strlen(buf));
    return 0;
}

/* Fill the NCOLS cells of one member. */
static int member_cells(struct sb *cells, struct cell *c, const struct row *r,
                        char *err, size_t errlen)
{
    char what[64];
    snprintf(what, sizeof what, "members reply, element %zu", r->index);
    int rc;
    bool self = false;
    if ((rc = get_bool(r->m, "self", &self, what, err, errlen)) < 0)
        return rc;
    c[C_NAME].off = cells->len;
    sb_put_clean(cells, r->name, r->name_len);
    if (self)
        sb_putn(cells, "*", 1);
    c[C_NAME].len = cells->len - c[C_NAME].off;
    c[C_NAME].width =
        cells->oom ? 0 : text_width(cells->p + c[C_NAME].off, c[C_NAME].len);
    if ((rc = cell_str(cells, &c[C_ADDR], r->m, "addr", what, err, errlen)) ||
        (rc = cell_str(cells, &c[C_STATE], r->m, "state", what, err,
                       errlen)) ||
        (rc = cell_uint(cells, &c[C_INC], r->m, "incarnation", false, what,
                        err, errlen)) ||
        (rc = cell_uint(cells, &c[C_COUNTER], r->m, "counter", false, what,
                        err, errlen)) ||
        (rc = cell_uint(cells, &c[C_AGE], r->m, "counter_age_ms", true, what,
                        err, errlen)) ||
        (rc = cell_str(cells, &c[C_ZONE], r->m, "zone", what, err, errlen)) ||
        (rc = cell_str(cells, &c[C_PROVIDER], r->m, "provider", what, err,
                       errlen)))
        return rc;
    return 0;
}

/* One line of the table; text[i] and width[i] per column. */
static void put_line(struct sb *b, const char *const *text, const size_t *len,
                     const size_t *width, const size_t *colw, size_t ncols,
                     const bool *right)
{
    for (size_t i = 0; i < ncols; i++) {
        size_t pad = colw[i] - width[i];
        bool last = i + 1 == ncols;
        if (right[i])
            sb_pad(b, pad);
        sb_putn(b, text[i], len[i]);
        if (!last)
            sb_pad(b, (right[i] ? 0 : pad) + COL_GAP);
    }
    sb_putn(b, "\n", 1);
}

int zpf_ctlfmt_members(const json_t *members, const char *state, char **out,
                       size_t *outlen, char *err, size_t errlen)
{
    *out = NULL;
    int rc = check_state_arg(state, err, errlen);
    if (rc < 0)
        return rc;
    if (!json_is_array(members))
        return fail(err, errlen, "the members reply is not a JSON array");

    size_t total = json_array_size(members), nrows = 0;
    struct row *rows = calloc(total ? total : 1, sizeof *rows);
    struct cell *cells = NULL;
    struct sb text = {0}, b = {0};
    if (rows == NULL)
        goto oom;
    for (size_t i = 0; i < total; i++) {
        const json_t *m = json_array_get(members, i);
        char what[64];
        snprintf(what, sizeof what, "members reply, element %zu", i);
        struct row *r = &rows[nrows];
        if ((rc = need_object(m, what, err, errlen)) < 0)
            goto out;
        rc = get_str(m, "name", &r->name, &r->name_len, what, err, errlen);
        if (rc == 0)
            rc = fail(err, errlen, "%s has no \"name\"", what);
        if (rc < 0)
            goto out;
        if ((rc = in_state(m, state, what, err, errlen)) < 0)
            goto out;
        if (rc == 0)
            continue;
        r->index = i;
        r->m = m;
        nrows++;
    }
    qsort(rows, nrows, sizeof *rows, row_cmp);

    cells = calloc((nrows ? nrows : 1) * NCOLS, sizeof *cells);
    if (cells == NULL)
        goto oom;
    size_t colw[NCOLS];
    bool right[NCOLS];
    const char *t[NCOLS];
    size_t len[NCOLS], width[NCOLS];
    for (size_t j = 0; j < NCOLS; j++) {
        t[j] = COLS[j].title;
        len[j] = width[j] = colw[j] = strlen(COLS[j].title);
        right[j] = COLS[j].right;
    }
    for (size_t i = 0; i < nrows; i++) {
        struct cell *c = &cells[i * NCOLS];
        if ((rc = member_cells(&text, c, &rows[i], err, errlen)) < 0)
            goto out;
        for (size_t j = 0; j < NCOLS; j++)
            if (c[j].width > colw[j])
                colw[j] = c[j].width;
    }
    if (text.oom)
        goto oom;

    put_line(&b, t, len, width, colw, NCOLS, right);
    for (size_t i = 0; i < nrows; i++) {
        const struct cell *c = &cells[i * NCOLS];
        for (size_t j = 0; j < NCOLS; j++) {
            t[j] = text.p + c[j].off;
            len[j] = c[j].len;
            width[j] = c[j].width;
        }
        put_line(&b, t, len, width, colw, NCOLS, right);
    }
    rc = sb_finish(&b, out, outlen, err, errlen);
    b.p = NULL;
    goto out;
oom:
    if (errlen)
        snprintf(err, errlen, "out of memory formatting the members reply");
    rc = ZPF_ENOMEM;
out:
    free(b.p);
    free(text.p);
    free(cells);
    free(rows);
    return rc;
}

/* --- status --------------------------------------------------------------- */

/* Values start one column after the longest label, "incarnation:", plus
 * COL_GAP, so every line of the block lines up. */
#define STATUS_LABEL_WIDTH (sizeof "incarnation:" - 1 + COL_GAP)

static void status_label(struct sb *b, const char *label)
{
    sb_puts(b, label);
    sb_putn(b, ":", 1);
    sb_pad(b, STATUS_LABEL_WIDTH - strlen(label) - 1);
}

static int status_str(struct sb *b, const json_t *st, const char *key,
                      char *err, size_t errlen)
{
    const char *s;
    size_t n;
    int rc = get_shown(st, key, &s, &n, "status reply", err, errlen);
    if (rc < 0)
        return rc;
    status_label(b, key);
    sb_put_clean(b, s, n);
    sb_putn(b, "\n", 1);
    return 0;
}

static int status_uint(struct sb *b, const json_t *st, const char *key,
                       char *err, size_t errlen)
{
    uint64_t u = 0;
    int rc = get_uint(st, key, &u, "status reply", err, errlen);
    if (rc < 0)
        return rc;
    status_label(b, key);
    if (rc)
        sb_printf(b, "%" PRIu64 "\n", u);
    else
        sb_puts(b, ABSENT "\n");
    return 0;
}

static int status_members(struct sb *b, const json_t *st, char *err,
                          size_t errlen)
{
    const json_t *m = json_object_get(st, "members");
    status_label(b, "members");
    if (m == NULL || json_is_null(m)) {
        sb_puts(b, ABSENT "\n");
        return 0;
    }
    if (!json_is_object(m))
        return fail(err, errlen, "status reply: \"members\" is not an "
                                 "object");
    size_t shown = 0;
    for (size_t i = 0; i < NSTATES; i++) {
        uint64_t u;
        int rc = get_uint(m, STATES[i], &u, "status reply, members", err,
                          errlen);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        sb_printf(b, "%s%" PRIu64 " %s", shown ? ", " : "", u, STATES[i]);
        shown++;
    }
    sb_puts(b, shown ? "\n" : ABSENT "\n");
    return 0;
}

int zpf_ctlfmt_status(const json_t *status, char **out, size_t *outlen,
                      char *err, size_t errlen)
{
    static const char *const STRS[] = {"name", "cluster", "version", "addr",
                                       "transport"};
    static const char *const UINTS[] = {"incarnation", "counter"};
    const char *what = "status reply";
    struct sb b = {0};
    int rc;
    *out = NULL;
    if ((rc = need_object(status, "the status reply", err, errlen)) < 0)
        return rc;

    for (size_t i = 0; i < sizeof STRS / sizeof STRS[0]; i++)
        if ((rc = status_str(&b, status, STRS[i], err, errlen)) < 0)
            goto bad;

    bool sealed = false;
    if ((rc = get_bool(status, "sealed", &sealed, what, err, errlen)) < 0)
        goto bad;
    status_label(&b, "sealed");
    sb_puts(&b, rc == 0 ? ABSENT "\n" : sealed ? "yes\n" : "no\n");

    for (size_t i = 0; i < sizeof UINTS / sizeof UINTS[0]; i++)
        if ((rc = status_uint(&b, status, UINTS[i], err, errlen)) < 0)
            goto bad;

    const char *health, *check = NULL;
    size_t hn, cn = 0;
    if ((rc = get_shown(status, "health", &health, &hn, what, err,
                        errlen)) < 0 ||
        (rc = get_str(status, "failing_check", &check, &cn, what, err,
                      errlen)) < 0)
        goto bad;
    status_label(&b, "health");
    sb_put_clean(&b, health, hn);
    if (check != NULL && cn > 0) {
        sb_puts(&b, " (check: ");
        sb_put_clean(&b, check, cn);
        sb_puts(&b, ")");
    }
    sb_putn(&b, "\n", 1);

    if ((rc = status_members(&b, status, err, errlen)) < 0)
        goto bad;

    uint64_t up = 0;
    if ((rc = get_uint(status, "uptime_s", &up, what, err, errlen)) < 0)
        goto bad;
    status_label(&b, "uptime");
    if (rc) {
        char buf[ZPF_CTLFMT_DURATION_MAX];
        zpf_ctlfmt_uptime(up, buf, sizeof buf);
        sb_puts(&b, buf);
        sb_putn(&b, "\n", 1);
    } else {
        sb_puts(&b, ABSENT "\n");
    }
    return sb_finish(&b, out, outlen, err, errlen);
bad:
    free(b.p);
    return rc;
}

/* --- keys ----------------------------------------------------------------- */

int zpf_ctlfmt_keys(const json_t *keys, char **out, size_t *outlen,
                    char *err, size_t errlen)
{
    struct sb b = {0}, text = {0};
    struct cell *ids = NULL;
    const json_t *list;
    int rc;
    *out = NULL;
    if ((rc = need_object(keys, "the keys reply", err, errlen)) < 0)
        return rc;
    list = json_object_get(keys, "keys");
    if (list != NULL && !json_is_null(list) && !json_is_array(list))
        return fail(err, errlen, "keys reply: \"keys\" is not an array");
    size_t n = json_array_size(list); /* 0 when absent */
    ids = calloc(n ? n : 1, sizeof *ids);
    const char **prim = calloc(n ? n : 1, sizeof *prim);
    if (ids == NULL || prim == NULL)
        goto oom;

    size_t idw = strlen("ID");
    for (size_t i = 0; i < n; i++) {
        const json_t *k = json_array_get(list, i);
        char what[64];
        snprintf(what, sizeof what, "keys reply, key %zu", i);
        if ((rc = need_object(k, what, err, errlen)) < 0 ||
            (rc = cell_str(&text, &ids[i], k, "id", what, err, errlen)) < 0)
            goto out;
        bool p = false;
        if ((rc = get_bool(k, "primary", &p, what, err, errlen)) < 0)
            goto out;
        prim[i] = rc == 0 ? ABSENT : p ? "yes" : "no";
        if (ids[i].width > idw)
            idw = ids[i].width;
    }
    if (text.oom)
        goto oom;

    sb_puts(&b, "ID");
    sb_pad(&b, idw - strlen("ID") + COL_GAP);
    sb_puts(&b, "PRIMARY\n");
    for (size_t i = 0; i < n; i++) {
        sb_putn(&b, text.p + ids[i].off, ids[i].len);
        sb_pad(&b, idw - ids[i].width + COL_GAP);
        sb_puts(&b, prim[i]);
        sb_putn(&b, "\n", 1);
    }

    uint64_t version = 0, alive = 0, current = 0;
    int hv, ha = 0, hc = 0;
    if ((rc = hv = get_uint(keys, "version", &version, "keys reply", err,
                            errlen)) < 0)
        goto out;
    const json_t *m = json_object_get(keys, "members");
    if (m != NULL && !json_is_null(m)) {
        if (!json_is_object(m)) {
            rc = fail(err, errlen, "keys reply: \"members\" is not an "
                                   "object");
            goto out;
        }
        if ((rc = ha = get_uint(m, "alive", &alive, "keys reply, members",
                                err, errlen)) < 0 ||
            (rc = hc = get_uint(m, "current", &current,
                                "keys reply, members", err, errlen)) < 0)
            goto out;
    }
    if (hv)
        sb_printf(&b, "keyring version %" PRIu64, version);
    else
        sb_puts(&b, "keyring version " ABSENT);
    if (ha && hc)
        sb_printf(&b, "; %" PRIu64 " of %" PRIu64 " alive members have it",
                  current, alive);
    sb_putn(&b, "\n", 1);
    rc = sb_finish(&b, out, outlen, err, errlen);
    b.p = NULL;
    goto out;
oom:
    if (errlen)
        snprintf(err, errlen, "out of memory formatting the keys reply");
    rc = ZPF_ENOMEM;
out:
    free(b.p);
    free(text.p);
    free(ids);
    free(prim);
    return rc;
}

int zpf_ctlfmt_key_change(const char *what, const json_t *change, char **out,
                          size_t *outlen, char *err, size_t errlen)
{
    const char *id;
    size_t n;
    uint64_t version = 0;
    int rc, hv;
    *out = NULL;
    if ((rc = need_object(change, "the keys reply", err, errlen)) < 0 ||
        (rc = get_shown(change, "id", &id, &n, "keys reply", err, errlen)) <
            0 ||
        (rc = hv = get_uint(change, "version", &version, "keys reply", err,
                            errlen)) < 0)
        return rc;
    struct sb b = {0};
    sb_puts(&b, what);
    sb_putn(&b, " ", 1);
    sb_put_clean(&b, id, n);
    if (hv)
        sb_printf(&b, "; keyring version %" PRIu64 "\n", version);
    else
        sb_puts(&b, "; keyring version " ABSENT "\n");
    return sb_finish(&b, out, outlen, err, errlen);
}

/* --- leave, metrics, json ------------------------------------------------- */

int zpf_ctlfmt_leave(const json_t *leave, char **out, size_t *outlen,
                     char *err, size_t errlen)
{
    bool leaving = false;
    uint64_t ms = 0;
    int rc, hl, ht;
    *out = NULL;
    if ((rc = need_object(leave, "the leave reply", err, errlen)) < 0 ||
        (rc = hl = get_bool(leave, "leaving", &leaving, "leave reply", err,
                            errlen)) < 0 ||
        (rc = ht = get_uint(leave, "timeout_ms", &ms, "leave reply", err,
                            errlen)) < 0)
        return rc;
    struct sb b = {0};
    if (!hl || !leaving) {
        sb_puts(&b, "zpfd did not say it is leaving the cluster\n");
    } else if (ht) {
        char buf[ZPF_CTLFMT_DURATION_MAX];
        zpf_ctlfmt_age(ms, buf, sizeof buf);
        sb_printf(&b, "zpfd is leaving the cluster and will exit within "
                      "%s\n", buf);
    } else {
        sb_puts(&b, "zpfd is leaving the cluster and will exit\n");
    }
    return sb_finish(&b, out, outlen, err, errlen);
}

int zpf_ctlfmt_metrics(const json_t *metrics, char **out, size_t *outlen,
                       char *err, size_t errlen)
{
    const char *s = NULL;
    size_t n = 0;
    int rc;
    *out = NULL;
    if ((rc = need_object(metrics, "the metrics reply", err, errlen)) < 0 ||
        (rc = get_str(metrics, "text", &s, &n, "metrics reply", err,
                      errlen)) < 0)
        return rc;
    if (rc == 0)
        return fail(err, errlen, "the metrics reply has no \"text\"");
    struct sb b = {0};
    sb_putn(&b, s, n);
    if (n > 0 && s[n - 1] != '\n')
        sb_putn(&b, "\n", 1);
    return sb_finish(&b, out, outlen, err, errlen);
}

int zpf_ctlfmt_json(const json_t *value, char **out, size_t *outlen,
                    char *err, size_t errlen)
{
    *out = NULL;
    if (value == NULL) {
        if (errlen)
            snprintf(err, errlen, "no JSON value to print");
        return ZPF_EINVAL;
    }
    char *text = json_dumps(value, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (text == NULL) {
        if (errlen)
            snprintf(err, errlen, "out of memory printing the reply as JSON");
        return ZPF_ENOMEM;
    }
    struct sb b = {0};
    sb_puts(&b, text);
    sb_putn(&b, "\n", 1);
    free(text);
    return sb_finish(&b, out, outlen, err, errlen);
}
