/*
 * Tests for zpfctl: its formatters (agent/zpfctl_fmt.c) on fixed replies,
 * then the real program end to end against a fake agent.
 *
 * The formatter tests pin exact bytes, because scripts and eyes both rely
 * on the layout: column alignment with a long name, "-" for absent fields,
 * the state filter, duration rounding at every unit boundary, and that
 * every kind of malformed reply is refused with a message naming the field.
 *
 * The end-to-end tests run the zpfctl binary ($ZPFCTL, else $B/zpfctl when
 * run-tests.sh sets B, else build/zpfctl; skipped with a message if it is
 * missing) against a fake agent: a forked child listening on a UNIX socket
 * in a mkdtemp() directory, answering canned reply lines by command, or
 * never answering, or hanging up at once.  The child logs every request
 * line it gets, so a test can check what zpfctl sent, and that a usage
 * error sent nothing.  Each case checks the exit code (0 done, 1 error
 * reply, 2 usage, 3 unreachable or garbage), stdout and stderr.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "zpfctl_fmt.h"

/* --- helpers for the formatter tests -------------------------------------- */

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (v == NULL)
        fail_msg("bad test JSON at column %d: %s", e.column, e.text);
    return v;
}

#define assert_contains(hay, needle)                                           \
    do {                                                                       \
        const char *h_ = (hay), *n_ = (needle);                                \
        if (h_ == NULL || strstr(h_, n_) == NULL)                              \
            fail_msg("expected \"%s\" in:\n%s", n_, h_ ? h_ : "(null)");       \
    } while (0)

#define assert_not_contains(hay, needle)                                       \
    do {                                                                       \
        const char *h_ = (hay), *n_ = (needle);                                \
        if (h_ != NULL && strstr(h_, n_) != NULL)                              \
            fail_msg("did not expect \"%s\" in:\n%s", n_, h_);                 \
    } while (0)

typedef int (*fmt_fn)(const json_t *, char **, size_t *, char *, size_t);

/* Format text with fn; expect success and exactly want. */
static void fmt_ok(fmt_fn fn, const char *text, const char *want)
{
    json_t *v = J(text);
    char err[256] = "", *out = NULL;
    size_t len = 0;
    int rc = fn(v, &out, &len, err, sizeof err);
    json_decref(v);
    if (rc != 0)
        fail_msg("rc %d (%s) for %s", rc, err, text);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    free(out);
}

/* Format text with fn; expect rc with a message containing what. */
static void fmt_bad(fmt_fn fn, const char *text, int want, const char *what)
{
    json_t *v = J(text);
    char err[256] = "", *out = (char *)"unset";
    size_t len = 0;
    int rc = fn(v, &out, &len, err, sizeof err);
    json_decref(v);
    if (rc != want)
        fail_msg("rc %d, want %d, for %s", rc, want, text);
    assert_null(out);
    assert_contains(err, what);
}

static char *members_text(const char *text, const char *state, int *rc)
{
    json_t *v = J(text);
    char err[256] = "", *out = NULL;
    size_t len = 0;
    *rc = zpf_ctlfmt_members(v, state, &out, &len, err, sizeof err);
    json_decref(v);
    if (*rc == 0)
        assert_int_equal(len, strlen(out));
    return *rc == 0 ? out : strdup(err);
}

/* --- durations ------------------------------------------------------------ */

static void test_age(void **state)
{
    (void)state;
    static const struct {
        uint64_t ms;
        const char *want;
    } cases[] = {
        {0, "0ms"},         {250, "250ms"},       {999, "999ms"},
        {1000, "1.0s"},     {3250, "3.2s"},       {3299, "3.2s"},
        {59999, "59.9s"},   {60000, "1m"},        {359999, "5m"},
        {3599999, "59m"},   {3600000, "1h"},      {86399999, "23h"},
        {86400000, "1d"},   {UINT64_MAX, "213503982334d"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[ZPF_CTLFMT_DURATION_MAX];
        int n = zpf_ctlfmt_age(cases[i].ms, buf, sizeof buf);
        assert_string_equal(buf, cases[i].want);
        assert_int_equal(n, strlen(cases[i].want));
    }
    char tiny[4];
    assert_int_equal(zpf_ctlfmt_age(250, tiny, sizeof tiny), ZPF_ENOSPC);
    assert_string_equal(tiny, "");
    assert_int_equal(zpf_ctlfmt_age(250, NULL, 0), ZPF_ENOSPC);
}

static void test_uptime(void **state)
{
    (void)state;
    static const struct {
        uint64_t s;
        const char *want;
    } cases[] = {
        {0, "0s"},
        {59, "59s"},
        {60, "1m00s"},
        {3599, "59m59s"},
        {3600, "1h00m00s"},
        {3723, "1h02m03s"},
        {86400 + 123, "1d00h02m03s"},
        {UINT64_MAX, "213503982334601d07h00m15s"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[ZPF_CTLFMT_DURATION_MAX];
        int n = zpf_ctlfmt_uptime(cases[i].s, buf, sizeof buf);
        assert_string_equal(buf, cases[i].want);
        assert_int_equal(n, strlen(cases[i].want));
    }
    char tiny[8];
    assert_int_equal(zpf_ctlfmt_uptime(3723, tiny, sizeof tiny), ZPF_ENOSPC);
}

/* --- small helpers -------------------------------------------------------- */

static void test_state_valid(void **state)
{
    (void)state;
    const char *good[] = {"alive", "suspect", "dead", "left", "stalled"};
    for (size_t i = 0; i < 5; i++)
        assert_true(zpf_ctlfmt_state_valid(good[i]));
    assert_false(zpf_ctlfmt_state_valid(NULL));
    assert_false(zpf_ctlfmt_state_valid(""));
    assert_false(zpf_ctlfmt_state_valid("Alive"));
    assert_false(zpf_ctlfmt_state_valid("alive "));
    assert_false(zpf_ctlfmt_state_valid("gone"));
}

static void test_clean(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *want;
    } cases[] = {
        {"plain", 5, "plain"},
        {"", 0, ""},
        {"caf\xc3\xa9", 5, "caf\xc3\xa9"},         /* ordinary UTF-8 stays */
        {"a\x1b[2Jb", 6, "a?[2Jb"},                 /* ESC */
        {"a\nb\rc\td", 7, "a?b?c?d"},
        {"a\0b", 3, "a?b"},                         /* NUL inside */
        {"x\x7f", 2, "x?"},                         /* DEL */
        {"x\xc2\x9b" "31m", 6, "x?31m"},            /* C1 CSI */
        {"x\xc2\xa0y", 4, "x\xc2\xa0y"},            /* NBSP is not C1 */
        {"\xe2\x80\xae" "evil", 7, "?evil"},        /* RIGHT-TO-LEFT OVERRIDE */
        {"\xe2\x81\xa6" "x", 4, "?x"},              /* LEFT-TO-RIGHT ISOLATE */
        {"\xe2\x80\x94", 3, "\xe2\x80\x94"},        /* EM DASH stays */
        {"\xe2\x80", 2, "\xe2\x80"},                /* truncated: no overread */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        assert_int_equal(zpf_ctlfmt_clean(cases[i].in, cases[i].len, &out),
                         0);
        assert_string_equal(out, cases[i].want);
        free(out);
    }
}

/* --- the reply envelope --------------------------------------------------- */

static void test_reply_ok(void **state)
{
    (void)state;
    json_t *r = J("{\"v\":1,\"id\":7,\"ok\":true,\"result\":[1,2]}");
    const json_t *result = NULL;
    char err[128];
    assert_int_equal(zpf_ctlfmt_reply(r, &result, NULL, NULL, err,
                                      sizeof err), 0);
    assert_true(result == json_object_get(r, "result"));
    json_decref(r);

    /* A null result is still a result. */
    r = J("{\"v\":1,\"ok\":true,\"result\":null}");
    assert_int_equal(zpf_ctlfmt_reply(r, &result, NULL, NULL, err,
                                      sizeof err), 0);
    assert_true(json_is_null(result));
    json_decref(r);
}

static void test_reply_error(void **state)
{
    (void)state;
    json_t *r = J("{\"v\":1,\"ok\":false,\"error\":{\"code\":\"busy\","
                  "\"message\":\"cannot remove the primary key\"}}");
    const char *code = NULL, *msg = NULL;
    char err[128];
    assert_int_equal(zpf_ctlfmt_reply(r, NULL, &code, &msg, err, sizeof err),
                     1);
    assert_string_equal(code, "busy");
    assert_string_equal(msg, "cannot remove the primary key");
    json_decref(r);

    r = J("{\"v\":1,\"ok\":false,\"error\":{\"code\":\"internal\"}}");
    assert_int_equal(zpf_ctlfmt_reply(r, NULL, &code, &msg, err, sizeof err),
                     1);
    assert_string_equal(code, "internal");
    assert_string_equal(msg, "");
    json_decref(r);
}

static void test_reply_bad(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        const char *what;
    } cases[] = {
        {"[1]", ZPF_EFIELD, "not a JSON object"},
        {"\"ok\"", ZPF_EFIELD, "not a JSON object"},
        {"{\"ok\":true,\"result\":1}", ZPF_EFIELD, "\"v\""},
        {"{\"v\":2,\"ok\":true,\"result\":1}", ZPF_EVERSION, "version 2"},
        {"{\"v\":\"1\",\"ok\":true,\"result\":1}", ZPF_EVERSION,
         "speaks version 1"},
        {"{\"v\":1,\"result\":1}", ZPF_EFIELD, "\"ok\""},
        {"{\"v\":1,\"ok\":1,\"result\":1}", ZPF_EFIELD, "\"ok\""},
        {"{\"v\":1,\"ok\":true}", ZPF_EFIELD, "no result"},
        {"{\"v\":1,\"ok\":false}", ZPF_EFIELD, "no error"},
        {"{\"v\":1,\"ok\":false,\"error\":\"busy\"}", ZPF_EFIELD, "no error"},
        {"{\"v\":1,\"ok\":false,\"error\":{}}", ZPF_EFIELD, "\"code\""},
        {"{\"v\":1,\"ok\":false,\"error\":{\"code\":\"\"}}", ZPF_EFIELD,
         "\"code\""},
        {"{\"v\":1,\"ok\":false,\"error\":{\"code\":5}}", ZPF_EFIELD,
         "\"code\""},
        {"{\"v\":1,\"ok\":false,\"error\":{\"code\":\"busy\","
         "\"message\":[]}}", ZPF_EFIELD, "\"message\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *r = J(cases[i].text);
        char err[256] = "";
        int rc = zpf_ctlfmt_reply(r, NULL, NULL, NULL, err, sizeof err);
        json_decref(r);
        if (rc != cases[i].rc)
            fail_msg("rc %d, want %d, for %s", rc, cases[i].rc,
                     cases[i].text);
        assert_contains(err, cases[i].what);
    }
}

/* --- members -------------------------------------------------------------- */

static const char MEMBERS[] =
    "["
    "{\"name\":\"node-b\",\"addr\":\"10.0.0.2:7946\",\"state\":\"alive\","
    "\"incarnation\":1,\"counter\":500,\"counter_age_ms\":250,"
    "\"state_age_ms\":1000,\"zone\":\"eu-1a\",\"provider\":\"hetzner\","
    "\"instance_id\":\"i-2\",\"tags\":{\"role\":\"web\"},\"self\":false},"
    "{\"name\":\"a-very-long-node-name-for-alignment\","
    "\"addr\":\"[fd00::1]:7946\",\"state\":\"dead\",\"incarnation\":12,"
    "\"counter\":7,\"counter_age_ms\":3250,\"state_age_ms\":9000,"
    "\"zone\":null,\"tags\":{},\"self\":false},"
    "{\"name\":\"node-a\",\"addr\":\"10.0.0.1:7946\",\"state\":\"alive\","
    "\"incarnation\":3,\"counter\":123456,\"counter_age_ms\":300000,"
    "\"state_age_ms\":5,\"zone\":\"eu-1b\",\"provider\":\"aws\","
    "\"instance_id\":\"i-1\",\"tags\":{},\"self\":true}"
    "]";

static const char MEMBERS_TABLE[] =
    "NAME                                 ADDR            STATE  INC  "
    "COUNTER    AGE  ZONE   PROVIDER\n"
    "a-very-long-node-name-for-alignment  [fd00::1]:7946  dead    12  "
    "      7   3.2s  -      -\n"
    "node-a*                              10.0.0.1:7946   alive    3  "
    " 123456     5m  eu-1b  aws\n"
    "node-b                               10.0.0.2:7946   alive    1  "
    "    500  250ms  eu-1a  hetzner\n";

static const char MEMBERS_HEADER[] =
    "NAME  ADDR  STATE  INC  COUNTER  AGE  ZONE  PROVIDER\n";

static void test_members_table(void **state)
{
    (void)state;
    int rc;
    char *out = members_text(MEMBERS, NULL, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, MEMBERS_TABLE);
    /* Same reply, same bytes. */
    char *again = members_text(MEMBERS, NULL, &rc);
    assert_string_equal(out, again);
    free(again);
    free(out);
}

static void test_members_empty(void **state)
{
    (void)state;
    int rc;
    char *out = members_text("[]", NULL, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, MEMBERS_HEADER);
    free(out);
    /* A filter that matches nothing: the header alone, too. */
    out = members_text(MEMBERS, "suspect", &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, MEMBERS_HEADER);
    free(out);
}

static void test_members_missing_fields(void **state)
{
    (void)state;
    int rc;
    /* Absent, null and empty all show as "-": no cell is blank. */
    char *out = members_text("[{\"name\":\"solo\"},"
                             "{\"name\":\"nulls\",\"addr\":null,"
                             "\"state\":null,\"incarnation\":null,"
                             "\"self\":null},"
                             "{\"name\":\"e\",\"addr\":\"\",\"state\":\"\","
                             "\"zone\":\"\",\"provider\":\"\"}]",
                             NULL, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out,
                        "NAME   ADDR  STATE  INC  COUNTER  AGE  ZONE  "
                        "PROVIDER\n"
                        "e      -     -        -        -    -  -     -\n"
                        "nulls  -     -        -        -    -  -     -\n"
                        "solo   -     -        -        -    -  -     -\n");
    free(out);
}

static void test_members_filter(void **state)
{
    (void)state;
    int rc;
    char *out = members_text(MEMBERS, "alive", &rc);
    assert_int_equal(rc, 0);
    /* Widths follow the rows shown, not the ones filtered out. */
    assert_string_equal(out,
                        "NAME     ADDR           STATE  INC  COUNTER    AGE  "
                        "ZONE   PROVIDER\n"
                        "node-a*  10.0.0.1:7946  alive    3   123456     5m  "
                        "eu-1b  aws\n"
                        "node-b   10.0.0.2:7946  alive    1      500  250ms  "
                        "eu-1a  hetzner\n");
    free(out);

    out = members_text(MEMBERS, "dead", &rc);
    assert_int_equal(rc, 0);
    assert_contains(out, "a-very-long-node-name-for-alignment");
    assert_not_contains(out, "node-a");
    free(out);

    out = members_text(MEMBERS, "gone", &rc);
    assert_int_equal(rc, ZPF_EINVAL);
    assert_contains(out, "unknown state");
    free(out);

    /* A member without a state is in no state. */
    out = members_text("[{\"name\":\"x\"}]", "alive", &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, MEMBERS_HEADER);
    free(out);
}

static void test_members_filter_json(void **state)
{
    (void)state;
    json_t *all = J(MEMBERS), *some = NULL;
    char err[128];
    assert_int_equal(zpf_ctlfmt_members_filter(all, "dead", &some, err,
                                               sizeof err), 0);
    assert_int_equal(json_array_size(some), 1);
    assert_true(json_array_get(some, 0) == json_array_get(all, 1));
    json_decref(some);

    assert_int_equal(zpf_ctlfmt_members_filter(all, NULL, &some, err,
                                               sizeof err), 0);
    assert_true(json_equal(some, all));
    json_decref(some);

    assert_int_equal(zpf_ctlfmt_members_filter(all, "bogus", &some, err,
                                               sizeof err), ZPF_EINVAL);
    assert_null(some);
    json_decref(all);

    json_t *bad = J("[1]");
    assert_int_equal(zpf_ctlfmt_members_filter(bad, NULL, &some, err,
                                               sizeof err), ZPF_EFIELD);
    assert_null(some);
    json_decref(bad);
    bad = J("{}");
    assert_int_equal(zpf_ctlfmt_members_filter(bad, NULL, &some, err,
                                               sizeof err), ZPF_EFIELD);
    json_decref(bad);
    bad = J("[{\"name\":\"a\",\"state\":3}]");
    assert_int_equal(zpf_ctlfmt_members_filter(bad, "dead", &some, err,
                                               sizeof err), ZPF_EFIELD);
    assert_contains(err, "\"state\"");
    json_decref(bad);
}

static void test_members_sort_stable(void **state)
{
    (void)state;
    int rc;
    /* Equal names keep reply order; "b" sorts before "ba" before "c". */
    char *out = members_text("[{\"name\":\"c\",\"addr\":\"1\"},"
                             "{\"name\":\"b\",\"addr\":\"2\"},"
                             "{\"name\":\"ba\",\"addr\":\"3\"},"
                             "{\"name\":\"b\",\"addr\":\"4\"}]",
                             NULL, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out,
                        "NAME  ADDR  STATE  INC  COUNTER  AGE  ZONE  "
                        "PROVIDER\n"
                        "b     2     -        -        -    -  -     -\n"
                        "b     4     -        -        -    -  -     -\n"
                        "ba    3     -        -        -    -  -     -\n"
                        "c     1     -        -        -    -  -     -\n");
    free(out);
}

static void test_members_hostile_names(void **state)
{
    (void)state;
    int rc;
    /* An escape sequence and a newline are neutralised; a two-byte
     * character counts as one column, so the next column still lines up. */
    char *out = members_text("[{\"name\":\"ev\\u001b[2Jil\\nx\"},"
                             "{\"name\":\"caf\\u00e9\"},"
                             "{\"name\":\"\\u202eabc\"}]",
                             NULL, &rc);
    assert_int_equal(rc, 0);
    assert_not_contains(out, "\x1b");
    assert_string_equal(out,
                        "NAME        ADDR  STATE  INC  COUNTER  AGE  ZONE  "
                        "PROVIDER\n"
                        "caf\xc3\xa9        -     -        -        -    -  "
                        "-     -\n"
                        "ev?[2Jil?x  -     -        -        -    -  -     "
                        "-\n"
                        "?abc        -     -        -        -    -  -     "
                        "-\n");
    free(out);
}

static void test_members_bad(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *what;
    } cases[] = {
        {"{}", "not a JSON array"},
        {"null", "not a JSON array"},
        {"[1]", "element 0 is not a JSON object"},
        {"[{\"name\":\"a\"},[]]", "element 1 is not a JSON object"},
        {"[{\"addr\":\"1.2.3.4:1\"}]", "element 0 has no \"name\""},
        {"[{\"name\":null}]", "has no \"name\""},
        {"[{\"name\":7}]", "\"name\" is not a string"},
        {"[{\"name\":\"a\",\"addr\":7}]", "\"addr\" is not a string"},
        {"[{\"name\":\"a\",\"state\":true}]", "\"state\" is not a string"},
        {"[{\"name\":\"a\",\"incarnation\":-1}]", "\"incarnation\""},
        {"[{\"name\":\"a\",\"counter\":\"5\"}]", "\"counter\""},
        {"[{\"name\":\"a\",\"counter_age_ms\":1.5}]", "\"counter_age_ms\""},
        {"[{\"name\":\"a\",\"zone\":{}}]", "\"zone\" is not a string"},
        {"[{\"name\":\"a\",\"provider\":[]}]", "\"provider\""},
        {"[{\"name\":\"a\",\"self\":\"yes\"}]", "\"self\" is not true"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc;
        char *err = members_text(cases[i].text, NULL, &rc);
        if (rc != ZPF_EFIELD)
            fail_msg("rc %d for %s", rc, cases[i].text);
        assert_contains(err, cases[i].what);
        free(err);
    }
}

/* --- status --------------------------------------------------------------- */

static const char STATUS[] =
    "{\"name\":\"node-a\",\"cluster\":\"prod\",\"version\":\"0.1.0\","
    "\"incarnation\":3,\"counter\":81234,\"health\":\"passing\","
    "\"failing_check\":null,\"members\":{\"alive\":9,\"suspect\":1,"
    "\"dead\":0,\"left\":2,\"stalled\":0},\"uptime_s\":3723,"
    "\"addr\":\"10.0.0.1:7946\",\"transport\":\"udp+tcp\",\"sealed\":true}";

static const char STATUS_TEXT[] =
    "name:         node-a\n"
    "cluster:      prod\n"
    "version:      0.1.0\n"
    "addr:         10.0.0.1:7946\n"
    "transport:    udp+tcp\n"
    "sealed:       yes\n"
    "incarnation:  3\n"
    "counter:      81234\n"
    "health:       passing\n"
    "members:      9 alive, 1 suspect, 0 dead, 2 left, 0 stalled\n"
    "uptime:       1h02m03s\n";

static void test_status(void **state)
{
    (void)state;
    fmt_ok(zpf_ctlfmt_status, STATUS, STATUS_TEXT);
    fmt_ok(zpf_ctlfmt_status,
           "{\"name\":\"n\",\"health\":\"failing\",\"failing_check\":"
           "\"disk\",\"sealed\":false,\"members\":{\"alive\":1},"
           "\"uptime_s\":86523}",
           "name:         n\n"
           "cluster:      -\n"
           "version:      -\n"
           "addr:         -\n"
           "transport:    -\n"
           "sealed:       no\n"
           "incarnation:  -\n"
           "counter:      -\n"
           "health:       failing (check: disk)\n"
           "members:      1 alive\n"
           "uptime:       1d00h02m03s\n");
    fmt_ok(zpf_ctlfmt_status,
           "{\"name\":\"\",\"health\":\"failing\",\"failing_check\":\"\","
           "\"members\":null}",
           "name:         -\n"
           "cluster:      -\n"
           "version:      -\n"
           "addr:         -\n"
           "transport:    -\n"
           "sealed:       -\n"
           "incarnation:  -\n"
           "counter:      -\n"
           "health:       failing\n"
           "members:      -\n"
           "uptime:       -\n");
    fmt_ok(zpf_ctlfmt_status, "{\"members\":{}}",
           "name:         -\n"
           "cluster:      -\n"
           "version:      -\n"
           "addr:         -\n"
           "transport:    -\n"
           "sealed:       -\n"
           "incarnation:  -\n"
           "counter:      -\n"
           "health:       -\n"
           "members:      -\n"
           "uptime:       -\n");
}

static void test_status_bad(void **state)
{
    (void)state;
    fmt_bad(zpf_ctlfmt_status, "[]", ZPF_EFIELD, "not a JSON object");
    fmt_bad(zpf_ctlfmt_status, "{\"name\":1}", ZPF_EFIELD, "\"name\"");
    fmt_bad(zpf_ctlfmt_status, "{\"transport\":[]}", ZPF_EFIELD,
            "\"transport\"");
    fmt_bad(zpf_ctlfmt_status, "{\"sealed\":\"yes\"}", ZPF_EFIELD,
            "\"sealed\"");
    fmt_bad(zpf_ctlfmt_status, "{\"incarnation\":-3}", ZPF_EFIELD,
            "\"incarnation\"");
    fmt_bad(zpf_ctlfmt_status, "{\"counter\":\"x\"}", ZPF_EFIELD,
            "\"counter\"");
    fmt_bad(zpf_ctlfmt_status, "{\"health\":false}", ZPF_EFIELD,
            "\"health\"");
    fmt_bad(zpf_ctlfmt_status, "{\"failing_check\":1}", ZPF_EFIELD,
            "\"failing_check\"");
    fmt_bad(zpf_ctlfmt_status, "{\"members\":[]}", ZPF_EFIELD,
            "\"members\"");
    fmt_bad(zpf_ctlfmt_status, "{\"members\":{\"dead\":\"1\"}}", ZPF_EFIELD,
            "\"dead\"");
    fmt_bad(zpf_ctlfmt_status, "{\"uptime_s\":1.5}", ZPF_EFIELD,
            "\"uptime_s\"");
}

/* --- keys ----------------------------------------------------------------- */

static void test_keys(void **state)
{
    (void)state;
    fmt_ok(zpf_ctlfmt_keys,
           "{\"version\":4,\"primary\":\"0a1b2c3d\",\"keys\":["
           "{\"id\":\"0a1b2c3d\",\"primary\":true},"
           "{\"id\":\"9f8e7d6c\",\"primary\":false}],"
           "\"members\":{\"alive\":5,\"current\":3}}",
           "ID        PRIMARY\n"
           "0a1b2c3d  yes\n"
           "9f8e7d6c  no\n"
           "keyring version 4; 3 of 5 alive members have it\n");
    fmt_ok(zpf_ctlfmt_keys, "{\"version\":0,\"keys\":[]}",
           "ID  PRIMARY\n"
           "keyring version 0\n");
    fmt_ok(zpf_ctlfmt_keys, "{\"keys\":[{\"id\":\"1\"}],"
                            "\"members\":{\"alive\":2}}",
           "ID  PRIMARY\n"
           "1   -\n"
           "keyring version -\n");
}

static void test_keys_bad(void **state)
{
    (void)state;
    fmt_bad(zpf_ctlfmt_keys, "[]", ZPF_EFIELD, "not a JSON object");
    fmt_bad(zpf_ctlfmt_keys, "{\"keys\":{}}", ZPF_EFIELD, "\"keys\"");
    fmt_bad(zpf_ctlfmt_keys, "{\"keys\":[1]}", ZPF_EFIELD, "key 0");
    fmt_bad(zpf_ctlfmt_keys, "{\"keys\":[{\"id\":1}]}", ZPF_EFIELD,
            "\"id\"");
    fmt_bad(zpf_ctlfmt_keys, "{\"keys\":[{\"id\":\"a\",\"primary\":1}]}",
            ZPF_EFIELD, "\"primary\"");
    fmt_bad(zpf_ctlfmt_keys, "{\"version\":\"4\"}", ZPF_EFIELD,
            "\"version\"");
    fmt_bad(zpf_ctlfmt_keys, "{\"members\":5}", ZPF_EFIELD, "\"members\"");
    fmt_bad(zpf_ctlfmt_keys, "{\"members\":{\"current\":-1}}", ZPF_EFIELD,
            "\"current\"");
}

static int installed(const json_t *v, char **out, size_t *len, char *err,
                     size_t errlen)
{
    return zpf_ctlfmt_key_change("installed key", v, out, len, err, errlen);
}

static void test_key_change(void **state)
{
    (void)state;
    fmt_ok(installed, "{\"id\":\"0a1b2c3d\",\"version\":5}",
           "installed key 0a1b2c3d; keyring version 5\n");
    fmt_ok(installed, "{}", "installed key -; keyring version -\n");
    fmt_bad(installed, "[]", ZPF_EFIELD, "not a JSON object");
    fmt_bad(installed, "{\"id\":5}", ZPF_EFIELD, "\"id\"");
    fmt_bad(installed, "{\"version\":true}", ZPF_EFIELD, "\"version\"");
}

/* --- leave, metrics, json ------------------------------------------------- */

static void test_leave(void **state)
{
    (void)state;
    fmt_ok(zpf_ctlfmt_leave, "{\"leaving\":true,\"timeout_ms\":5000}",
           "zpfd is leaving the cluster and will exit within 5.0s\n");
    fmt_ok(zpf_ctlfmt_leave, "{\"leaving\":true}",
           "zpfd is leaving the cluster and will exit\n");
    fmt_ok(zpf_ctlfmt_leave, "{\"leaving\":false}",
           "zpfd did not say it is leaving the cluster\n");
    fmt_bad(zpf_ctlfmt_leave, "true", ZPF_EFIELD, "not a JSON object");
    fmt_bad(zpf_ctlfmt_leave, "{\"leaving\":1}", ZPF_EFIELD, "\"leaving\"");
    fmt_bad(zpf_ctlfmt_leave, "{\"leaving\":true,\"timeout_ms\":-5}",
            ZPF_EFIELD, "\"timeout_ms\"");
}

static void test_metrics(void **state)
{
    (void)state;
    fmt_ok(zpf_ctlfmt_metrics, "{\"text\":\"a 1\\nb 2\\n\"}", "a 1\nb 2\n");
    fmt_ok(zpf_ctlfmt_metrics, "{\"text\":\"a 1\"}", "a 1\n");
    fmt_ok(zpf_ctlfmt_metrics, "{\"text\":\"\"}", "");
    fmt_bad(zpf_ctlfmt_metrics, "{}", ZPF_EFIELD, "no \"text\"");
    fmt_bad(zpf_ctlfmt_metrics, "{\"text\":1}", ZPF_EFIELD, "\"text\"");
    fmt_bad(zpf_ctlfmt_metrics, "\"a 1\"", ZPF_EFIELD, "not a JSON object");
}

static void test_json(void **state)
{
    (void)state;
    fmt_ok(zpf_ctlfmt_json, "{\"b\":1,\"a\":[true,null]}",
           "{\n  \"b\": 1,\n  \"a\": [\n    true,\n    null\n  ]\n}\n");
    fmt_ok(zpf_ctlfmt_json, "[]", "[]\n");
    fmt_ok(zpf_ctlfmt_json, "7", "7\n");
    char err[64], *out = (char *)"unset";
    assert_int_equal(zpf_ctlfmt_json(NULL, &out, NULL, err, sizeof err),
                     ZPF_EINVAL);
    assert_null(out);
}

/* --- end to end: the fake agent ------------------------------------------- */

/* Longest request line the fake agent reads: the protocol's bound. */
#define REQ_MAX 65536
/* The fake agent kills itself after this long even if the test dies. */
#define SERVER_LIFETIME_S 60
/* A zpfctl run longer than this is a hang; the default -t is 10 s and the
 * tests use at most -t 2. */
#define RUN_LIMIT_MS 20000

enum srv_mode {
    SRV_CANNED, /* answer each request with the reply for its cmd */
    SRV_SILENT, /* read the request, never answer */
    SRV_CLOSE,  /* accept and hang up at once */
};

struct canned {
    const char *cmd;
    const char *reply;  /* one line, without the "\n" */
    bool unterminated;  /* send it without "\n", then hang up */
};

struct fx {
    char dir[64];
    char sock[128];
    char log[128];
    const char *zpfctl;
    pid_t server;
};

struct run {
    int code; /* exit status, or 128 + signal */
    char *out, *err;
    int64_t ms;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return strdup("");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* zpfctl gave up; nothing to do about it */
        p += w;
        n -= (size_t)w;
    }
}

/* Read one request line (without "\n") into buf; its length, or -1. */
static ssize_t read_request(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        if (buf[len] == '\n')
            break;
        len++;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

static const char *reply_for(const char *line, const struct canned *table,
                             size_t n, bool *unterminated)
{
    static const char unknown[] =
        "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"unknown_command\","
        "\"message\":\"the fake agent has no reply for this\"}}";
    json_t *req = json_loads(line, 0, NULL);
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    const char *reply = unknown;
    *unterminated = false;
    for (size_t i = 0; cmd && i < n; i++)
        if (strcmp(table[i].cmd, cmd) == 0) {
            reply = table[i].reply;
            *unterminated = table[i].unterminated;
            break;
        }
    json_decref(req);
    return reply;
}

/* The fake agent, in a child process: never returns. */
static void serve(int lfd, enum srv_mode mode, const struct canned *table,
                  size_t n, const char *log)
{
    static char line[REQ_MAX];
    alarm(SERVER_LIFETIME_S);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0 && errno == EINTR)
            continue;
        if (fd < 0)
            _exit(1);
        if (mode == SRV_CLOSE) {
            close(fd);
            continue;
        }
        ssize_t len = read_request(fd, line, sizeof line);
        if (len >= 0) {
            int lf = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
            if (lf >= 0) {
                write_all(lf, line, (size_t)len);
                write_all(lf, "\n", 1);
                close(lf);
            }
        }
        if (mode == SRV_SILENT) {
            char sink[256];
            while (read(fd, sink, sizeof sink) > 0)
                ;
        } else if (len >= 0) {
            bool unterminated;
            const char *r = reply_for(line, table, n, &unterminated);
            write_all(fd, r, strlen(r));
            if (!unterminated)
                write_all(fd, "\n", 1);
        }
        close(fd);
    }
}

static void start_server(struct fx *f, enum srv_mode mode,
                         const struct canned *table, size_t n)
{
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(f->sock) < sizeof sa.sun_path);
    strcpy(sa.sun_path, f->sock);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 16), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        serve(lfd, mode, table, n, f->log);
    close(lfd);
    f->server = pid;
}

static const char *zpfctl_path(void)
{
    static char path[4096];
    const char *z = getenv("ZPFCTL");
    if (z && *z)
        return z;
    const char *b = getenv("B");
    snprintf(path, sizeof path, "%s/zpfctl", b && *b ? b : "build");
    return path;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->zpfctl = zpfctl_path();
    if (access(f->zpfctl, X_OK) != 0) {
        print_message("test_zpfctl: skipping: no zpfctl binary at %s "
                      "(run make, or set ZPFCTL)\n", f->zpfctl);
        free(f);
        *state = NULL;
        return 0;
    }
    strcpy(f->dir, "/tmp/zpfctl-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->sock, sizeof f->sock, "%s/zpf.sock", f->dir);
    snprintf(f->log, sizeof f->log, "%s/requests", f->dir);
    f->server = -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f == NULL)
        return 0;
    if (f->server > 0) {
        kill(f->server, SIGKILL);
        waitpid(f->server, NULL, 0);
    }
    DIR *d = opendir(f->dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[sizeof f->dir + sizeof e->d_name + 1];
            snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Skip the test when there is no binary to run. */
#define FIXTURE(state)                                                         \
    struct fx *f = *(state);                                                   \
    if (f == NULL)                                                             \
        skip()

struct how {
    const char *input;   /* written to zpfctl's stdin, or NULL */
    const char *env_sock; /* ZPF_SOCKET, or NULL for unset */
    bool as_nobody;      /* run as uid/gid 65534 */
};

/* Run zpfctl with the NULL-terminated arguments; capture everything. */
static void run_how(struct fx *f, const struct how *how, struct run *r, ...)
{
    char *argv[40];
    int argc = 0;
    argv[argc++] = (char *)"zpfctl";
    va_list ap;
    va_start(ap, r);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        assert_true(argc < 39);
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;

    char in[160], out[160], err[160];
    snprintf(in, sizeof in, "%s/stdin", f->dir);
    snprintf(out, sizeof out, "%s/stdout", f->dir);
    snprintf(err, sizeof err, "%s/stderr", f->dir);
    write_file(in, how->input ? how->input : "");

    int64_t t0 = mono_ms();
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int i = open(in, O_RDONLY);
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (i < 0 || o < 0 || e < 0 || dup2(i, 0) < 0 || dup2(o, 1) < 0 ||
            dup2(e, 2) < 0)
            _exit(125);
        unsetenv("ZPF_SOCKET");
        if (how->env_sock)
            setenv("ZPF_SOCKET", how->env_sock, 1);
        if (how->as_nobody &&
            (setgroups(0, NULL) != 0 || setgid(65534) != 0 ||
             setuid(65534) != 0))
            _exit(126);
        execv(f->zpfctl, argv);
        _exit(127);
    }
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        assert_true(w == 0);
        if (mono_ms() - t0 > RUN_LIMIT_MS) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("zpfctl %s did not finish within %d ms", argv[1],
                     RUN_LIMIT_MS);
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    r->ms = mono_ms() - t0;
    r->code = WIFEXITED(status) ? WEXITSTATUS(status)
                                : 128 + WTERMSIG(status);
    r->out = slurp(out);
    r->err = slurp(err);
}

#define RUN(f, r, ...) run_how((f), &(struct how){0}, (r), __VA_ARGS__, NULL)

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static void expect_code(const struct run *r, int code)
{
    if (r->code != code)
        fail_msg("exit %d, want %d\n--- stdout\n%s--- stderr\n%s", r->code,
                 code, r->out, r->err);
}

/* Lines the fake agent received. */
static size_t requests(struct fx *f, char **text)
{
    *text = slurp(f->log);
    size_t n = 0;
    for (const char *p = *text; *p; p++)
        n += *p == '\n';
    return n;
}

static void expect_request(struct fx *f, const char *want)
{
    char *log;
    assert_int_equal(requests(f, &log), 1);
    json_t *got = J(log), *w = J(want);
    if (!json_equal(got, w))
        fail_msg("request %s, want %s", log, want);
    json_decref(got);
    json_decref(w);
    free(log);
    unlink(f->log);
}

static void expect_no_request(struct fx *f)
{
    char *log;
    size_t n = requests(f, &log);
    if (n != 0)
        fail_msg("usage errors must not reach the agent; it got:\n%s", log);
    free(log);
}

/* --- end to end: canned agent --------------------------------------------- */

#define OK(result) "{\"v\":1,\"ok\":true,\"result\":" result "}"
#define ERR(code, msg)                                                         \
    "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"" code "\",\"message\":\""    \
    msg "\"}}"

static const char KEYS[] =
    "{\"version\":4,\"primary\":\"0a1b2c3d\",\"keys\":["
    "{\"id\":\"0a1b2c3d\",\"primary\":true},"
    "{\"id\":\"9f8e7d6c\",\"primary\":false}],"
    "\"members\":{\"alive\":5,\"current\":3}}";

static const struct canned AGENT[] = {
    {"status", OK("{\"name\":\"node-a\",\"cluster\":\"prod\","
                  "\"version\":\"0.1.0\",\"incarnation\":3,"
                  "\"counter\":81234,\"health\":\"passing\","
                  "\"failing_check\":null,\"members\":{\"alive\":9,"
                  "\"suspect\":1,\"dead\":0,\"left\":2,\"stalled\":0},"
                  "\"uptime_s\":3723,\"addr\":\"10.0.0.1:7946\","
                  "\"transport\":\"udp+tcp\",\"sealed\":true}"), false},
    {"members",
     OK("[{\"name\":\"node-b\",\"addr\":\"10.0.0.2:7946\","
        "\"state\":\"alive\",\"incarnation\":1,\"counter\":500,"
        "\"counter_age_ms\":250,\"state_age_ms\":1000,\"zone\":\"eu-1a\","
        "\"provider\":\"hetzner\",\"instance_id\":\"i-2\","
        "\"tags\":{\"role\":\"web\"},\"self\":false},"
        "{\"name\":\"a-very-long-node-name-for-alignment\","
        "\"addr\":\"[fd00::1]:7946\",\"state\":\"dead\",\"incarnation\":12,"
        "\"counter\":7,\"counter_age_ms\":3250,\"state_age_ms\":9000,"
        "\"zone\":null,\"tags\":{},\"self\":false},"
        "{\"name\":\"node-a\",\"addr\":\"10.0.0.1:7946\",\"state\":\"alive\","
        "\"incarnation\":3,\"counter\":123456,\"counter_age_ms\":300000,"
        "\"state_age_ms\":5,\"zone\":\"eu-1b\",\"provider\":\"aws\","
        "\"instance_id\":\"i-1\",\"tags\":{},\"self\":true}]"), false},
    {"metrics", OK("{\"text\":\"" "# TYPE zpf_members gauge\\n"
                   "zpf_members{state=\\\"alive\\\"} 9\\n" "\"}"), false},
    {"keys.list", OK("{\"version\":4,\"primary\":\"0a1b2c3d\",\"keys\":["
                     "{\"id\":\"0a1b2c3d\",\"primary\":true},"
                     "{\"id\":\"9f8e7d6c\",\"primary\":false}],"
                     "\"members\":{\"alive\":5,\"current\":3}}"), false},
    {"keys.install", OK("{\"id\":\"5e5e5e5e\",\"version\":5}"), false},
    {"keys.use", OK("{\"id\":\"abcdef01\",\"version\":6}"), false},
    {"keys.remove", ERR("busy", "key 0a1b2c3d is the primary; make another "
                                "key primary first (zpfctl keys use ID)"),
     false},
    {"leave", OK("{\"leaving\":true,\"timeout_ms\":5000}"), false},
};
#define NAGENT (sizeof AGENT / sizeof AGENT[0])

static void test_e2e_status(void **state)
{
    FIXTURE(state);
    struct run r;
    start_server(f, SRV_CANNED, AGENT, NAGENT);
    RUN(f, &r, "-s", f->sock, "status");
    expect_code(&r, 0);
    assert_string_equal(r.out, STATUS_TEXT);
    assert_string_equal(r.err, "");
    expect_request(f, "{\"v\":1,\"cmd\":\"status\"}");
    run_free(&r);

    /* --json before or after the command: the result object as sent. */
    RUN(f, &r, "--json", "-s", f->sock, "status");
    expect_code(&r, 0);
    json_t *got = J(r.out), *want = J(STATUS);
    assert_true(json_equal(got, want));
    json_decref(got);
    run_free(&r);
    unlink(f->log);
    RUN(f, &r, "-s", f->sock, "status", "--json");
    expect_code(&r, 0);
    got = J(r.out);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    run_free(&r);
}

static void test_e2e_members(void **state)
{
    FIXTURE(state);
    struct run r;
    start_server(f, SRV_CANNED, AGENT, NAGENT);
    RUN(f, &r, "-s", f->sock, "members");
    expect_code(&r, 0);
    assert_string_equal(r.out, MEMBERS_TABLE);
    assert_string_equal(r.err, "");
    expect_request(f, "{\"v\":1,\"cmd\":\"members\"}");
    run_free(&r);

    RUN(f, &r, "-s", f->sock, "members", "--state", "dead");
    expect_code(&r, 0);
    assert_contains(r.out, "a-very-long-node-name-for-alignment");
    assert_not_contains(r.out, "node-a");
    run_free(&r);

    RUN(f, &r, "-s", f->sock, "members", "--state=alive", "--json");
    expect_code(&r, 0);
    json_t *got = J(r.out);
    assert_int_equal(json_array_size(got), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(got, 0), "name")),
        "node-b");
    json_decref(got);
    run_free(&r);

    /* --json without a filter: exactly the array received. */
    RUN(f, &r, "--json", "-s", f->sock, "members");
    expect_code(&r, 0);
    got = J(r.out);
    json_t *want = J(MEMBERS);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    run_free(&r);
}

static void test_e2e_members_large(void **state)
{
    FIXTURE(state);
    /* 10,000 members: a reply of megabytes, read with a growing buffer. */
    enum { N = 10000 };
    size_t cap = (size_t)N * 400 + 64, len = 0;
    char *reply = malloc(cap);
    assert_non_null(reply);
    len += (size_t)snprintf(reply + len, cap - len,
                            "{\"v\":1,\"ok\":true,\"result\":[");
    for (int i = N - 1; i >= 0; i--) {
        len += (size_t)snprintf(
            reply + len, cap - len,
            "%s{\"name\":\"node-%05d\",\"addr\":\"10.%d.%d.%d:7946\","
            "\"state\":\"alive\",\"incarnation\":%d,\"counter\":%d,"
            "\"counter_age_ms\":%d,\"state_age_ms\":1,\"zone\":\"zone-%d\","
            "\"provider\":\"hetzner\",\"instance_id\":\"instance-%d-with-a-"
            "long-identifier-to-make-the-reply-big\",\"tags\":{\"role\":"
            "\"worker\",\"rack\":\"r%d\"},\"self\":%s}",
            i == N - 1 ? "" : ",", i, i / 65536, i / 256 % 256, i % 256,
            i % 7, i * 3, i, i % 3, i, i % 40, i == 42 ? "true" : "false");
        assert_true(len < cap - 64);
    }
    len += (size_t)snprintf(reply + len, cap - len, "]}");
    assert_true(len > 2u << 20);
    struct canned big[] = {{"members", reply, false}};
    start_server(f, SRV_CANNED, big, 1);

    struct run r;
    RUN(f, &r, "-s", f->sock, "members");
    expect_code(&r, 0);
    size_t lines = 0;
    for (const char *p = r.out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, N + 1);
    /* Sorted by name although sent in reverse. */
    const char *first = strchr(r.out, '\n') + 1;
    assert_true(strncmp(first, "node-00000 ", 11) == 0);
    assert_contains(r.out, "\nnode-00042* ");
    assert_contains(r.out, "\nnode-09999 ");
    run_free(&r);
    free(reply);
}

static void test_e2e_metrics_keys_leave(void **state)
{
    FIXTURE(state);
    struct run r;
    start_server(f, SRV_CANNED, AGENT, NAGENT);
    RUN(f, &r, "-s", f->sock, "metrics");
    expect_code(&r, 0);
    assert_string_equal(r.out, "# TYPE zpf_members gauge\n"
                               "zpf_members{state=\"alive\"} 9\n");
    expect_request(f, "{\"v\":1,\"cmd\":\"metrics\"}");
    run_free(&r);

    const char *keys_text = "ID        PRIMARY\n"
                            "0a1b2c3d  yes\n"
                            "9f8e7d6c  no\n"
                            "keyring version 4; 3 of 5 alive members have "
                            "it\n";
    RUN(f, &r, "-s", f->sock, "keys");
    expect_code(&r, 0);
    assert_string_equal(r.out, keys_text);
    expect_request(f, "{\"v\":1,\"cmd\":\"keys.list\"}");
    run_free(&r);
    RUN(f, &r, "-s", f->sock, "keys", "list");
    expect_code(&r, 0);
    assert_string_equal(r.out, keys_text);
    expect_request(f, "{\"v\":1,\"cmd\":\"keys.list\"}");
    run_free(&r);
    RUN(f, &r, "-s", f->sock, "--json", "keys", "list");
    expect_code(&r, 0);
    json_t *got = J(r.out), *want = J(KEYS);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    run_free(&r);
    unlink(f->log);

    /* Upper-case ids are sent the way keys list prints them. */
    RUN(f, &r, "-s", f->sock, "keys", "use", "ABCDEF01");
    expect_code(&r, 0);
    assert_string_equal(r.out,
                        "primary key is now abcdef01; keyring version 6\n");
    expect_request(f, "{\"v\":1,\"cmd\":\"keys.use\","
                      "\"args\":{\"id\":\"abcdef01\"}}");
    run_free(&r);

    /* --force, before or after the id, is passed on. */
    RUN(f, &r, "-s", f->sock, "keys", "use", "--force", "abcdef01");
    expect_code(&r, 0);
    expect_request(f, "{\"v\":1,\"cmd\":\"keys.use\","
                      "\"args\":{\"id\":\"abcdef01\",\"force\":true}}");
    run_free(&r);
    RUN(f, &r, "-s", f->sock, "keys", "remove", "9f8e7d6c", "--force");
    expect_code(&r, 1);
    expect_request(f, "{\"v\":1,\"cmd\":\"keys.remove\","
                      "\"args\":{\"id\":\"9f8e7d6c\",\"force\":true}}");
    run_free(&r);

    RUN(f, &r, "-s", f->sock, "leave");
    expect_code(&r, 0);
    assert_string_equal(r.out, "zpfd is leaving the cluster and will exit "
                               "within 5.0s\n");
    assert_string_equal(r.err, "");
    expect_request(f, "{\"v\":1,\"cmd\":\"leave\"}");
    run_free(&r);
}

static void test_e2e_keys_install(void **state)
{
    FIXTURE(state);
    static const char key[] = "ysW2wMsUuZ9E9PXon24xhrH57lleIIt9JpBo1s4eHIk=";
    static const char want[] =
        "{\"v\":1,\"cmd\":\"keys.install\",\"args\":{\"key\":"
        "\"ysW2wMsUuZ9E9PXon24xhrH57lleIIt9JpBo1s4eHIk=\"}}";
    struct run r;
    start_server(f, SRV_CANNED, AGENT, NAGENT);
    RUN(f, &r, "-s", f->sock, "keys", "install", key);
    expect_code(&r, 0);
    assert_string_equal(r.out, "installed key 5e5e5e5e; keyring version 5\n");
    expect_request(f, want);
    run_free(&r);

    /* From stdin, with the whitespace a file or echo leaves around it. */
    struct how h = {.input = "  ysW2wMsUuZ9E9PXon24xhrH57lleIIt9JpBo1s4eHIk="
                             " \r\n"};
    run_how(f, &h, &r, "-s", f->sock, "keys", "install", "-", NULL);
    expect_code(&r, 0);
    assert_string_equal(r.out, "installed key 5e5e5e5e; keyring version 5\n");
    expect_request(f, want);
    run_free(&r);

    /* Not a key: refused before the agent hears of it, and not echoed. */
    static const char *const bad[] = {
        "ysW2wMsUuZ9E9PXon24xhrH57lleIIt9JpBo1s4eHI=",  /* 31 bytes */
        "ysW2wMsUuZ9E9PXon24xhrH57lleIIt9JpBo1s4eHIkA", /* no padding */
        "ysW2wMsUuZ9E9PXon24xhrH57lleIIt9JpBo1s4e-_k=", /* url-safe */
        "not a key at all",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        RUN(f, &r, "-s", f->sock, "keys", "install", bad[i]);
        expect_code(&r, 2);
        assert_contains(r.err, "zpfctl keygen");
        if (*bad[i])
            assert_not_contains(r.err, bad[i]);
        assert_string_equal(r.out, "");
        run_free(&r);
    }
    h.input = "\n";
    run_how(f, &h, &r, "-s", f->sock, "keys", "install", "-", NULL);
    expect_code(&r, 2);
    run_free(&r);
    RUN(f, &r, "-s", f->sock, "keys", "install");
    expect_code(&r, 2);
    assert_contains(r.err, "usage: zpfctl keys");
    run_free(&r);
    RUN(f, &r, "-s", f->sock, "keys", "install", key, key);
    expect_code(&r, 2);
    run_free(&r);
    expect_no_request(f);
}

static void test_e2e_error_reply(void **state)
{
    FIXTURE(state);
    static const struct canned refuse[] = {
        {"leave", ERR("forbidden", "leave needs root, the agent's user or "
                                   "the admin group zpf-admin"), false},
        {"status", ERR("internal", "bad \\u001b[31mthing\\u001b[0m"), false},
    };
    struct run r;
    start_server(f, SRV_CANNED, refuse, 2);
    RUN(f, &r, "-s", f->sock, "leave");
    expect_code(&r, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "zpfctl: forbidden: leave needs root, the "
                               "agent's user or the admin group zpf-admin\n");
    run_free(&r);

    /* The agent's text reaches the terminal without its escapes. */
    RUN(f, &r, "-s", f->sock, "status");
    expect_code(&r, 1);
    assert_string_equal(r.err, "zpfctl: internal: bad ?[31mthing?[0m\n");
    run_free(&r);
}

static void test_e2e_error_reply_keys(void **state)
{
    FIXTURE(state);
    struct run r;
    start_server(f, SRV_CANNED, AGENT, NAGENT);
    RUN(f, &r, "-s", f->sock, "keys", "remove", "0a1b2c3d");
    expect_code(&r, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "zpfctl: busy: key 0a1b2c3d is the primary; "
                               "make another key primary first (zpfctl keys "
                               "use ID)\n");
    expect_request(f, "{\"v\":1,\"cmd\":\"keys.remove\","
                      "\"args\":{\"id\":\"0a1b2c3d\"}}");
    run_free(&r);
}

/* --- end to end: usage ---------------------------------------------------- */

static void test_e2e_usage(void **state)
{
    FIXTURE(state);
    start_server(f, SRV_CANNED, AGENT, NAGENT);
    char longsock[200];
    memset(longsock, 'x', sizeof longsock - 1);
    longsock[sizeof longsock - 1] = '\0';
    static const char *const usage = "usage: zpfctl [-s SOCKET] [-t SECONDS] "
                                     "[--json] COMMAND [ARGS]\n";
    struct {
        const char *argv[6];
        const char *say;
    } cases[] = {
        {{NULL}, "no command given"},
        {{"frobnicate"}, "unknown command 'frobnicate'"},
        {{"--frob", "status"}, "unknown option '--frob'"},
        {{"-s"}, "needs a value"},
        {{"-t", "0", "status"}, "-t: '0'"},
        {{"-t", "-1", "status"}, "-t: '-1'"},
        {{"-t", "soon", "status"}, "-t: 'soon'"},
        {{"-t", "1e9", "status"}, "-t: '1e9'"},
        {{"-t", "nan", "status"}, "-t: 'nan'"},
        {{"-s", longsock, "status"}, "must be 1 to"},
        {{"-s", "", "status"}, "must be 1 to"},
        {{"status", "now"}, "unexpected argument 'now'"},
        {{"members", "--state"}, "--state needs a state"},
        {{"members", "--state", "zombie"}, "unknown state 'zombie'"},
        {{"members", "extra"}, "unexpected argument 'extra'"},
        {{"keys", "rotate"}, "unknown subcommand 'rotate'"},
        {{"keys", "list", "x"}, "unexpected argument 'x'"},
        {{"keys", "use"}, "give one key ID"},
        {{"keys", "use", "0a1b2c3"}, "8 hex digits"},
        {{"keys", "remove", "0a1b2c3g"}, "8 hex digits"},
        {{"keys", "remove", "a", "b"}, "give one key ID"},
        {{"keys", "use", "--force"}, "give one key ID"},
        {{"keys", "use", "0a1b2c3d", "--forse"}, "give one key ID"},
        {{"keygen", "32"}, "unexpected argument '32'"},
        {{"leave", "now"}, "unexpected argument 'now'"},
        {{"help", "nothing"}, "unknown command 'nothing'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *const *a = cases[i].argv;
        struct run r;
        /* Up to five arguments after -s: NULLs end the list early. */
        run_how(f, &(struct how){0}, &r, a[0], a[1], a[2], a[3], a[4], NULL);
        if (r.code != 2)
            fail_msg("case %zu (%s): exit %d, stderr %s", i, cases[i].say,
                     r.code, r.err);
        assert_string_equal(r.out, "");
        assert_contains(r.err, cases[i].say);
        assert_contains(r.err, "usage: zpfctl ");
        run_free(&r);
    }
    struct run r;
    RUN(f, &r, "bogus");
    assert_contains(r.err, usage);
    run_free(&r);
    expect_no_request(f);
}

static void test_e2e_help_version(void **state)
{
    FIXTURE(state);
    static const char *const cmds[] = {"status", "members", "metrics",
                                       "keys", "keygen", "leave", "help"};
    struct run r;
    static const char *const forms[][2] = {{"help", NULL}, {"-h", NULL},
                                           {"--help", NULL}};
    for (size_t k = 0; k < 3; k++) {
        RUN(f, &r, forms[k][0]);
        expect_code(&r, 0);
        assert_string_equal(r.err, "");
        assert_contains(r.out, "usage: zpfctl [-s SOCKET] [-t SECONDS] "
                               "[--json] COMMAND [ARGS]\n");
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
            char line[32];
            snprintf(line, sizeof line, "\n  %s", cmds[i]);
            assert_contains(r.out, line);
        }
        run_free(&r);
    }

    RUN(f, &r, "help", "keys");
    expect_code(&r, 0);
    assert_contains(r.out, "usage: zpfctl keys [list | install KEY|- | use "
                           "ID | remove ID]\n");
    assert_contains(r.out, "zpfctl keys install - < cluster.key");
    run_free(&r);
    RUN(f, &r, "members", "--help");
    expect_code(&r, 0);
    assert_contains(r.out, "usage: zpfctl members [--state STATE]\n");
    run_free(&r);

    RUN(f, &r, "--version");
    expect_code(&r, 0);
    assert_true(strncmp(r.out, "zpfctl ", 7) == 0);
    assert_contains(r.out, "(control protocol 1)\n");
    run_free(&r);
}

static void test_e2e_keygen(void **state)
{
    FIXTURE(state);
    struct run a, b;
    /* No agent needed: the socket path does not exist. */
    RUN(f, &a, "-s", f->sock, "keygen");
    RUN(f, &b, "keygen");
    expect_code(&a, 0);
    expect_code(&b, 0);
    assert_string_equal(a.err, "");
    assert_int_equal(strlen(a.out), 45);
    assert_int_equal(a.out[44], '\n');
    unsigned char key[64];
    size_t n = 0;
    assert_int_equal(sodium_base642bin(key, sizeof key, a.out, 44, NULL, &n,
                                       NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(n, 32);
    assert_string_not_equal(a.out, b.out);
    run_free(&a);
    run_free(&b);
}

/* --- end to end: an agent that cannot be reached -------------------------- */

static void test_e2e_no_socket(void **state)
{
    FIXTURE(state);
    struct run r;
    RUN(f, &r, "-s", f->sock, "status");
    expect_code(&r, 3);
    assert_string_equal(r.out, "");
    assert_contains(r.err, f->sock);
    assert_contains(r.err, "is zpfd running? is the socket path right (-s, "
                           "ZPF_SOCKET)? are you in the control group?");
    run_free(&r);

    /* A socket file nobody listens on. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, f->sock);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    RUN(f, &r, "-s", f->sock, "members");
    expect_code(&r, 3);
    assert_contains(r.err, "is zpfd running?");
    run_free(&r);
}

static void test_e2e_env_socket(void **state)
{
    FIXTURE(state);
    struct run r;
    start_server(f, SRV_CANNED, AGENT, NAGENT);
    struct how h = {.env_sock = f->sock};
    run_how(f, &h, &r, "status", NULL);
    expect_code(&r, 0);
    assert_string_equal(r.out, STATUS_TEXT);
    run_free(&r);
    /* -s wins over ZPF_SOCKET. */
    char missing[160];
    snprintf(missing, sizeof missing, "%s/other.sock", f->dir);
    run_how(f, &h, &r, "-s", missing, "status", NULL);
    expect_code(&r, 3);
    assert_contains(r.err, missing);
    run_free(&r);
    /* With neither, the default path is named. */
    if (access("/run/zpf/zpf.sock", F_OK) != 0) {
        RUN(f, &r, "status");
        expect_code(&r, 3);
        assert_contains(r.err, "/run/zpf/zpf.sock");
        run_free(&r);
    }
}

static void test_e2e_permission(void **state)
{
    FIXTURE(state);
    start_server(f, SRV_CANNED, AGENT, NAGENT);
    assert_int_equal(chmod(f->sock, 0), 0);
    /* root ignores file modes, so drop to nobody for the connect. */
    struct how h = {.as_nobody = geteuid() == 0};
    struct run r;
    run_how(f, &h, &r, "-s", f->sock, "status", NULL);
    if (r.code == 126 || r.code == 127) {
        run_free(&r);
        skip();
    }
    expect_code(&r, 3);
    assert_contains(r.err, "Permission denied");
    assert_contains(r.err, "you need to be in zpfd's control group");
    run_free(&r);
    expect_no_request(f);
}

/* -t 1 must give up after one second, not after several: process start-up
 * under the sanitizers takes well under this much on top. */
#define TIMEOUT_SLACK_MS 2500

static void test_e2e_timeout(void **state)
{
    FIXTURE(state);
    struct run r;
    start_server(f, SRV_SILENT, NULL, 0);
    RUN(f, &r, "-t", "1", "-s", f->sock, "status");
    expect_code(&r, 3);
    assert_string_equal(r.out, "");
    assert_contains(r.err, "no reply from zpfd");
    assert_contains(r.err, "-t SECONDS");
    if (r.ms < 900 || r.ms > TIMEOUT_SLACK_MS)
        fail_msg("-t 1 gave up after %lld ms", (long long)r.ms);
    run_free(&r);
    /* It did send its request before waiting. */
    expect_request(f, "{\"v\":1,\"cmd\":\"status\"}");
}

static void test_e2e_garbage(void **state)
{
    FIXTURE(state);
    static const struct canned garbage[] = {
        {"status", "this is not JSON", false},
        {"members", "{\"hello\":\"world\"}", false},
        {"metrics", "{\"v\":2,\"ok\":true,\"result\":{}}", false},
        {"leave", "{\"v\":1,\"ok\":true,\"result\":{\"leaving\":true}",
         true},
        {"keys.list", "[]", false},
    };
    static const struct {
        const char *cmd;
        const char *say;
    } cases[] = {
        {"status", "not JSON"},
        {"members", "\"v\""},
        {"metrics", "version 2"},
        {"leave", "without a complete reply"},
        {"keys", "not a JSON object"},
    };
    start_server(f, SRV_CANNED, garbage, 5);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r;
        RUN(f, &r, "-t", "2", "-s", f->sock, cases[i].cmd);
        if (r.code != 3)
            fail_msg("%s: exit %d, stderr %s", cases[i].cmd, r.code, r.err);
        assert_string_equal(r.out, "");
        assert_contains(r.err, cases[i].say);
        run_free(&r);
    }
}

static void test_e2e_wrong_shape(void **state)
{
    FIXTURE(state);
    /* A well-formed reply whose result zpfctl cannot show. */
    static const struct canned odd[] = {
        {"members", OK("{\"not\":\"an array\"}"), false},
        {"status", OK("{\"incarnation\":\"three\"}"), false},
    };
    start_server(f, SRV_CANNED, odd, 2);
    struct run r;
    RUN(f, &r, "-s", f->sock, "members");
    expect_code(&r, 3);
    assert_contains(r.err, "not a JSON array");
    assert_contains(r.err, "same version");
    run_free(&r);
    RUN(f, &r, "-s", f->sock, "status");
    expect_code(&r, 3);
    assert_contains(r.err, "\"incarnation\"");
    run_free(&r);
}

static void test_e2e_hangup(void **state)
{
    FIXTURE(state);
    struct run r;
    start_server(f, SRV_CLOSE, NULL, 0);
    RUN(f, &r, "-t", "2", "-s", f->sock, "status");
    expect_code(&r, 3);
    assert_string_equal(r.out, "");
    /* Either the send or the read notices, depending on timing. */
    if (strstr(r.err, "closed the connection") == NULL &&
        strstr(r.err, "cannot send") == NULL &&
        strstr(r.err, "cannot read") == NULL)
        fail_msg("unexpected: %s", r.err);
    assert_contains(r.err, f->sock);
    run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_uptime),
        cmocka_unit_test(test_state_valid),
        cmocka_unit_test(test_clean),
        cmocka_unit_test(test_reply_ok),
        cmocka_unit_test(test_reply_error),
        cmocka_unit_test(test_reply_bad),
        cmocka_unit_test(test_members_table),
        cmocka_unit_test(test_members_empty),
        cmocka_unit_test(test_members_missing_fields),
        cmocka_unit_test(test_members_filter),
        cmocka_unit_test(test_members_filter_json),
        cmocka_unit_test(test_members_sort_stable),
        cmocka_unit_test(test_members_hostile_names),
        cmocka_unit_test(test_members_bad),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_status_bad),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_keys_bad),
        cmocka_unit_test(test_key_change),
        cmocka_unit_test(test_leave),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_json),
#define E2E(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
        E2E(test_e2e_status),
        E2E(test_e2e_members),
        E2E(test_e2e_members_large),
        E2E(test_e2e_metrics_keys_leave),
        E2E(test_e2e_keys_install),
        E2E(test_e2e_error_reply),
        E2E(test_e2e_error_reply_keys),
        E2E(test_e2e_usage),
        E2E(test_e2e_help_version),
        E2E(test_e2e_keygen),
        E2E(test_e2e_no_socket),
        E2E(test_e2e_env_socket),
        E2E(test_e2e_permission),
        E2E(test_e2e_timeout),
        E2E(test_e2e_garbage),
        E2E(test_e2e_wrong_shape),
        E2E(test_e2e_hangup),
#undef E2E
    };
    /* A zpfctl that dies writing to a closed pipe must not take the test
     * down with it; the child's own handling is what is under test. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
