/*
 * zpfd's logger and rate limiter.
 *
 * One line per event on a file descriptor (stderr in zpfd), in logfmt so
 * that it is both greppable and machine-parsable:
 *
 *   ts=2026-11-22T10:00:00.123Z level=warning msg="packet dropped" cause=EAUTH
 *
 * When the descriptor is the systemd journal (JOURNAL_STREAM names its
 * device and inode), the journal stamps each line itself, so the line starts
 * with a syslog priority prefix instead of a timestamp:
 *
 *   <4>level=warning msg="packet dropped" cause=EAUTH
 *
 * Levels use syslog numbering, so the prefix is the level itself:
 * error 3, warning 4, notice 5, info 6, debug 7.  A line is written when its
 * level is at most the logger's level.
 *
 * Each line goes out in a single write(2) of at most ZPF_LOG_LINE_MAX bytes,
 * so lines from several writers never interleave.  A longer line is cut at
 * that bound and ends with "... truncated=true"; a quoted value cut in the
 * middle is closed first, so the line stays parsable.  A write that fails
 * (stderr closed, EPIPE, EAGAIN on a non-blocking descriptor) is dropped
 * silently: losing a log line must never stop the agent.  The agent must
 * ignore SIGPIPE, or a closed stderr pipe kills it before write(2) returns.
 *
 * Secrets: the logger knows nothing about secrets and cannot redact them.
 * The rule for callers is: never pass a key, token, credential or sealed
 * payload to zpf_log(), not even truncated or hashed by hand.  Any other
 * string that is not a constant of ours (a member name, a path, a provider's
 * error text, a health check's output) goes through zpf_log_quote() first,
 * so that it cannot add fields or lines of its own.  As a last guard, control
 * characters that reach the line anyway (a raw '\n' in kvfmt's output) are
 * escaped, so one call is always exactly one line.
 *
 * Neither the logger nor the rate limiter allocates or keeps global state;
 * both are plain structs owned by the caller.
 */
#ifndef ZPF_AGENT_LOG_H
#define ZPF_AGENT_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Levels, in syslog numbering (RFC 5424 severities). */
#define ZPF_LOG_ERROR 3
#define ZPF_LOG_WARNING 4
#define ZPF_LOG_NOTICE 5
#define ZPF_LOG_INFO 6
#define ZPF_LOG_DEBUG 7

/* Longest line written, newline included.  PIPE_BUF on Linux: a write of at
 * most this many bytes to a pipe is atomic, so concurrent writers sharing
 * stderr never interleave, and it is far below journald's LineMax (48 KiB),
 * so the journal never splits a line either. */
#define ZPF_LOG_LINE_MAX 4096

/* The smallest buffer zpf_log_quote() needs to say anything: a quoted,
 * truncated value is at least `"..."` and its NUL. */
#define ZPF_LOG_QUOTE_MIN 6

struct zpf_log {
    int fd;          /* where lines go; negative: logging off */
    int level;       /* lines above this level are dropped */
    bool journal;    /* fd is the journal: `<N>` prefix, no timestamp */
    /* Wall-clock milliseconds since the Unix epoch for the timestamp; NULL
     * (what zpf_log_init sets) reads CLOCK_REALTIME.  Tests set a fixed
     * clock here to compare lines byte for byte. */
    uint64_t (*now_unix_ms)(void);
};

/*
 * Set up `log` to write to `fd` at `level` (clamped to ZPF_LOG_ERROR ..
 * ZPF_LOG_DEBUG).  Detects the journal: journal is true iff the environment
 * variable JOURNAL_STREAM is "DEV:INO" in decimal and matches fstat(fd).
 * The descriptor stays the caller's; the logger never closes it.
 */
void zpf_log_init(struct zpf_log *log, int fd, int level);

/* Parse a level name ("error", "warning", "notice", "info", "debug", in any
 * case) to its number; -1 for NULL or anything else. */
int zpf_log_level_parse(const char *s);

/* The name of a level, "unknown" outside ZPF_LOG_ERROR .. ZPF_LOG_DEBUG.
 * The string is static. */
const char *zpf_log_level_name(int level);

/* Whether a line at `level` would be written; lets a caller skip building
 * expensive arguments. */
bool zpf_log_enabled(const struct zpf_log *log, int level);

/*
 * Write one line at `level` (clamped to ZPF_LOG_ERROR .. ZPF_LOG_DEBUG).
 *
 * msg:    a short constant phrase saying what happened ("packet dropped");
 *         quoted by the logger when it needs to be.  NULL is taken as "".
 * kvfmt:  printf format of space-separated key=value pairs, or NULL for none.
 *         Keys are constant lowercase words; every value that is not a number
 *         or a constant of ours must be passed through zpf_log_quote().
 *
 * Never fails from the caller's point of view: a NULL log, a negative fd, a
 * filtered level or a failed write all simply produce no line.
 */
void zpf_log(struct zpf_log *log, int level, const char *msg,
             const char *kvfmt, ...) __attribute__((format(printf, 4, 5)));

/* zpf_log() with a va_list, for wrappers. */
void zpf_logv(struct zpf_log *log, int level, const char *msg,
              const char *kvfmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/*
 * Make `s` safe as one logfmt value, into buf (cap bytes); returns buf.
 *
 * A string of printable ASCII and UTF-8 bytes with no space, '"', '=' or '\'
 * is copied as it is; anything else is put in double quotes, with '"' and '\'
 * backslash-escaped, \n \r \t as such, and other control bytes as \u00XX (the
 * escapes logfmt and JSON parsers understand).  NULL and "" give `""`.
 * When the result does not fit, it is cut, quoted and ends in `..."`, never
 * in the middle of an escape or of a UTF-8 sequence.  With cap below
 * ZPF_LOG_QUOTE_MIN, buf is set to "" (when cap > 0).  A NULL buf or zero
 * cap returns a static "".
 */
const char *zpf_log_quote(const char *s, char *buf, size_t cap);

/*
 * Token bucket for events that can happen at packet rate (bad packets,
 * failed control requests): at most `burst` events at once, refilled at
 * `burst` per `per_ms` milliseconds.  Suppressed events are counted so the
 * next allowed line can say "suppressed=N".
 *
 * The struct is the caller's; all zeroes is a full bucket (ZPF_RATELIMIT_INIT).
 * The bucket is kept as a debt in token-milliseconds: an event adds per_ms,
 * each millisecond pays back burst, and an event is allowed while the debt
 * stays within burst * per_ms.  No division, so no rounding: the long-run
 * rate is exactly burst per per_ms.  Use the same burst and per_ms on every
 * call for one limiter.  Not thread-safe; no allocation.
 */
struct zpf_ratelimit {
    uint64_t last_ms;     /* time of the previous call */
    uint64_t debt;        /* token-milliseconds still owed */
    uint32_t suppressed;  /* refused since the last allowed event */
};

#define ZPF_RATELIMIT_INIT {0, 0, 0}

/*
 * Whether the event at monotonic time now_ms may be logged.
 *
 * On true, *suppressed (when not NULL) receives how many events were refused
 * since the last allowed one, and that count restarts from zero.  On false,
 * the refusal is counted (saturating at UINT32_MAX) and *suppressed is set
 * to 0.  per_ms == 0 means no limit; burst == 0 refuses everything.  A clock
 * that goes backwards restarts the refill from now_ms rather than granting
 * or withholding tokens for time that never passed.
 */
bool zpf_ratelimit_allow(struct zpf_ratelimit *rl, uint64_t now_ms,
                         uint32_t burst, uint32_t per_ms,
                         uint32_t *suppressed);

#endif
