/*
 * zpfctl output: turning control replies into text for people.
 *
 * Every function here is pure: it reads a jansson value that came from the
 * agent, writes text into a new heap buffer, and touches no file, socket or
 * global.  That is what lets tests/unit/test_zpfctl.c pin the exact output
 * for fixed replies, and lets zpfctl stay a thin shell around them.
 *
 * Conventions shared by every formatter:
 *
 *   - The reply is hostile until checked.  A field that is absent, null or
 *     an empty string is shown as "-", so every table cell holds a word and
 *     `awk` counts columns right.  A field present with the wrong type (a
 *     string where a number belongs, a negative count) makes the call fail
 *     with ZPF_EFIELD and a message naming the field, because printing a
 *     guess would hide a protocol mismatch between zpfctl and zpfd.
 *   - Strings from the agent (member names, zones, tags, error messages)
 *     may have come from any node of the cluster.  Control characters, the
 *     C1 range and the Unicode bidirectional overrides are replaced by '?',
 *     so a name cannot move the cursor, recolour the terminal or reorder a
 *     line on screen.
 *   - Column widths count code points, not bytes; the tables assume every
 *     code point is one column wide (true for the ASCII names zpf expects).
 *   - Output is deterministic: the same reply gives the same bytes.  Lines
 *     end in "\n" and carry no trailing spaces.
 *
 * Output buffers: on success *out is a NUL-terminated string from malloc()
 * that the caller frees with free(), and *outlen its length in bytes (the
 * text itself contains no NUL, except zpf_ctlfmt_metrics which passes the
 * agent's text through untouched).  On failure *out is NULL.
 *
 * Errors: 0 on success; ZPF_EFIELD when the reply has the wrong shape,
 * ZPF_EINVAL for a bad argument from the caller, ZPF_ENOMEM, each with a
 * one-line message in err (err may be NULL when errlen is 0).
 */
#ifndef ZPF_AGENT_ZPFCTL_FMT_H
#define ZPF_AGENT_ZPFCTL_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "zpf/error.h"

/* The control protocol version zpfctl speaks; a reply with any other "v" is
 * not understood (see docs/control.md). */
#define ZPF_CTLFMT_PROTOCOL_VERSION 1

/* Room for any zpf_ctlfmt_age() or zpf_ctlfmt_uptime() text and its NUL:
 * the longest is an uptime of UINT64_MAX seconds,
 * "213503982334601d07h00m15s" (25 bytes). */
#define ZPF_CTLFMT_DURATION_MAX 32

/*
 * A short age for a table cell, truncated (never rounded up into the next
 * unit, so "59.9s" is followed by "1m"):
 *
 *   below 1 s     "250ms"
 *   below 1 min   "3.2s"    one decimal
 *   below 1 h     "5m"
 *   below 1 day   "7h"
 *   otherwise     "12d"
 *
 * Returns the length written (without the NUL), or ZPF_ENOSPC if len is too
 * small; ZPF_CTLFMT_DURATION_MAX is always enough.
 */
int zpf_ctlfmt_age(uint64_t ms, char *buf, size_t len);

/*
 * An exact uptime: "3s", "2m05s", "1h02m03s", "4d00h02m03s" (zero-padded
 * after the leading unit so the text sorts and reads like a clock).
 * Returns the length written, or ZPF_ENOSPC.
 */
int zpf_ctlfmt_uptime(uint64_t s, char *buf, size_t len);

/* Whether state names a member state: alive, suspect, dead, left, stalled. */
bool zpf_ctlfmt_state_valid(const char *state);

/*
 * Copy len bytes of s with the characters that could act on a terminal
 * replaced by '?' (see above).  *out is new (free() it).  Returns 0 or
 * ZPF_ENOMEM.
 */
int zpf_ctlfmt_clean(const char *s, size_t len, char **out);

/*
 * Check the envelope of a reply:
 *   {"v": 1, "ok": true, "result": ...}                  returns 0
 *   {"v": 1, "ok": false, "error": {"code", "message"}}  returns 1
 * On 0, *result points at the result (borrowed from reply).  On 1, *code and
 * *message point at the error's strings (borrowed; message is "" when the
 * agent sent none); print them through zpf_ctlfmt_clean().
 * Returns ZPF_EVERSION when v is not ZPF_CTLFMT_PROTOCOL_VERSION and
 * ZPF_EFIELD for anything else that is not a reply, with a message.
 * Any out-pointer may be NULL.
 */
int zpf_ctlfmt_reply(const json_t *reply, const json_t **result,
                     const char **code, const char **message, char *err,
                     size_t errlen);

/*
 * The members table:
 *
 *   NAME     ADDR           STATE  INC  COUNTER    AGE  ZONE  PROVIDER
 *   node-a*  10.0.0.1:7946  alive    3     1234  250ms  eu-1  hetzner
 *
 * one row per element of the members result array, sorted by name (byte
 * order, ties in reply order), the agent itself marked by a '*' after its
 * name.  Columns are separated by two spaces; INC, COUNTER and AGE (the
 * counter's age) are right-aligned, the rest left-aligned.  Only the header
 * is printed for an empty list.
 *
 * state: NULL for every member, or a state name (zpf_ctlfmt_state_valid)
 * to list only members in that state; anything else is ZPF_EINVAL.
 * Each element must be an object with a string "name".
 */
int zpf_ctlfmt_members(const json_t *members, const char *state, char **out,
                       size_t *outlen, char *err, size_t errlen);

/*
 * The members result reduced to the elements in state (NULL: all), for
 * --json output.  *out is a new reference to a new array whose elements are
 * shared with members.  Elements that are not objects are an error, as in
 * zpf_ctlfmt_members().
 */
int zpf_ctlfmt_members_filter(const json_t *members, const char *state,
                              json_t **out, char *err, size_t errlen);

/*
 * The status result as "key: value" lines, values aligned:
 *
 *   name:         node-a
 *   cluster:      prod
 *   version:      0.1.0
 *   addr:         10.0.0.1:7946
 *   transport:    udp+tcp
 *   sealed:       yes
 *   incarnation:  3
 *   counter:      81234
 *   health:       failing (check: disk)
 *   members:      9 alive, 1 suspect, 0 dead, 2 left, 0 stalled
 *   uptime:       1h02m03s
 */
int zpf_ctlfmt_status(const json_t *status, char **out, size_t *outlen,
                      char *err, size_t errlen);

/*
 * The keys.list result:
 *
 *   ID        PRIMARY
 *   0a1b2c3d  yes
 *   9f8e7d6c  no
 *   keyring version 4; 3 of 5 alive members have it
 *
 * Keys in reply order.  The last line omits the member counts when the
 * agent sent none.
 */
int zpf_ctlfmt_keys(const json_t *keys, char **out, size_t *outlen,
                    char *err, size_t errlen);

/*
 * One line for the result of keys.install, keys.use or keys.remove
 * ({"id", "version"}): "<what> <id>; keyring version N", e.g. what =
 * "installed key".  what is the caller's own text and is not cleaned.
 */
int zpf_ctlfmt_key_change(const char *what, const json_t *change, char **out,
                          size_t *outlen, char *err, size_t errlen);

/* What the agent said to leave ({"leaving", "timeout_ms"}), in one line. */
int zpf_ctlfmt_leave(const json_t *leave, char **out, size_t *outlen,
                     char *err, size_t errlen);

/*
 * The metrics result's "text", byte for byte, with a final "\n" added only
 * when the agent's text lacks one (an empty text stays empty).
 */
int zpf_ctlfmt_metrics(const json_t *metrics, char **out, size_t *outlen,
                       char *err, size_t errlen);

/*
 * Any JSON value as one document for scripts (jq), indented by two spaces,
 * keys in the order received, followed by "\n".
 */
int zpf_ctlfmt_json(const json_t *value, char **out, size_t *outlen,
                    char *err, size_t errlen);

#endif
