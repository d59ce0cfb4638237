/*
 * The control socket: how zpfctl and scripts talk to a running zpfd.
 *
 * Protocol (version 1, full reference in docs/control.md): a UNIX stream
 * socket carrying newline-delimited JSON.  The client writes requests, one
 * JSON object per line, at most ZPF_CTL_LINE_MAX bytes including the "\n";
 * the server answers each with one JSON object on one line, in order.
 *
 *   request  {"v": 1, "id": <scalar, optional>, "cmd": "<name>",
 *             "args": {<optional object>}}
 *   ok       {"v": 1, "id": ..., "ok": true, "result": <any JSON>}
 *   error    {"v": 1, "id": ..., "ok": false,
 *             "error": {"code": "<code>", "message": "<what to do>"}}
 *
 * "id" is echoed when the request had one (even on most errors) and is
 * absent when the line was not a JSON object.
 *
 * The server owns the socket file, framing, JSON parsing and validation,
 * peer credentials and permissions, flow control and replies; the agent
 * only supplies a table of commands whose handlers turn args into a result.
 * Handlers are synchronous and run on the loop thread.
 *
 * Linux only: peer credentials come from SO_PEERCRED.
 */
#ifndef ZPF_AGENT_CONTROL_H
#define ZPF_AGENT_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <uv.h>

#include "zpf/error.h"

#define ZPF_CTL_VERSION 1

/* Longest request line, "\n" included.  The largest request (keys.install
 * with a 32-byte key in base64) is under 200 bytes; 64 KiB leaves room for
 * future commands while bounding what one client can make us buffer. */
#define ZPF_CTL_LINE_MAX 65536

/* Longest command name in bytes, without the terminating NUL. */
#define ZPF_CTL_CMD_MAX 63

/* Room handlers get for an error message, NUL included.  Longer messages
 * are truncated. */
#define ZPF_CTL_ERR_MAX 512

/* Defaults for the zero-valued fields of struct zpf_ctl_options. */
#define ZPF_CTL_MAX_CLIENTS 64          /* zpfctl holds one connection for
                                           one request; 64 is many scripts */
#define ZPF_CTL_IDLE_TIMEOUT_MS 60000   /* a forgotten socat should not hold
                                           a slot for ever */
#define ZPF_CTL_MAX_PENDING_OUT (1u << 20)  /* unwritten reply bytes before
                                               we stop reading a client */
#define ZPF_CTL_STALL_TIMEOUT_MS 10000  /* time a client gets to drain its
                                           replies below that bound */

/* zpf_ctl_call()'s timeout when given 0: a members list of a large
 * cluster takes well under a second to build and send; 10 s means stuck. */
#define ZPF_CTL_CALL_TIMEOUT_MS 10000

/* Longest reply zpf_ctl_call() accepts: the members list of a 10,000-node
 * cluster is a few MiB; this only stops a runaway peer from exhausting
 * memory. */
#define ZPF_CTL_REPLY_MAX (256u << 20)

/*
 * Every error code a reply can carry.  XX(ENUM, "wire string", zpf code):
 * the first seven are protocol errors; the rest are a handler's own failure,
 * named for the negative zpf code it returned (0: no zpf code maps to it).
 * A handler code that is not in this table is reported as "internal".
 * ZPF_EINVAL from a handler means the args were wrong, hence "bad_request".
 */
#define ZPF_CTL_CODE_MAP(XX)                                                   \
    XX(PARSE_ERROR, "parse_error", 0)                                          \
    XX(BAD_REQUEST, "bad_request", ZPF_EINVAL)                                 \
    XX(UNSUPPORTED_VERSION, "unsupported_version", 0)                          \
    XX(UNKNOWN_COMMAND, "unknown_command", 0)                                  \
    XX(FORBIDDEN, "forbidden", 0)                                              \
    XX(LINE_TOO_LONG, "line_too_long", 0)                                      \
    XX(INTERNAL, "internal", 0)                                                \
    XX(NOT_FOUND, "not_found", ZPF_ENOENT)                                     \
    XX(EXISTS, "exists", ZPF_EEXIST)                                           \
    XX(BUSY, "busy", ZPF_EBUSY)                                                \
    XX(LIMIT, "limit", ZPF_ELIMIT)                                             \
    XX(TOO_LARGE, "too_large", ZPF_E2BIG)                                      \
    XX(NO_SPACE, "no_space", ZPF_ENOSPC)                                       \
    XX(NO_MEMORY, "no_memory", ZPF_ENOMEM)                                     \
    XX(NOT_PERMITTED, "not_permitted", ZPF_EPERM)                              \
    XX(IO, "io", ZPF_EIO)                                                      \
    XX(LEAVING, "leaving", ZPF_ELEAVING)                                       \
    XX(NO_KEY, "no_key", ZPF_ENOKEY)

enum zpf_ctl_code {
#define ZPF__CTL_CODE_ENUM(name, str, err) ZPF_CTL_##name,
    ZPF_CTL_CODE_MAP(ZPF__CTL_CODE_ENUM)
#undef ZPF__CTL_CODE_ENUM
    ZPF_CTL_CODE_COUNT
};

/* The wire string of a code ("parse_error"); "internal" for a value out of
 * range.  Static. */
const char *zpf_ctl_code_name(enum zpf_ctl_code code);

/* The code a handler's negative zpf error is reported as; ZPF_CTL_INTERNAL
 * for codes the table does not name. */
enum zpf_ctl_code zpf_ctl_code_of_err(int err);

/* --- requests and replies (pure, no I/O) ---------------------------------- */

struct zpf_ctl_request {
    json_t *id;                     /* the echoed id, or NULL when absent */
    char cmd[ZPF_CTL_CMD_MAX + 1];  /* [A-Za-z0-9._-], 1..ZPF_CTL_CMD_MAX */
    json_t *args;                   /* an object, empty when absent */
};

/*
 * Parse one request line (without its "\n"; a trailing "\r" is whitespace).
 * line need not be NUL-terminated and may hold any bytes.
 *
 * Returns 0 with req->args a new reference to an object and req->id a new
 * reference or NULL.  On failure returns ZPF_EINVAL (ZPF_E2BIG when len is
 * ZPF_CTL_LINE_MAX or more, ZPF_ENOMEM), sets *code to a protocol error
 * string ("parse_error", "bad_request", "unsupported_version",
 * "line_too_long", "internal") and writes a message into err; req->id may
 * still be set, so the error reply can echo it.  Either way call
 * zpf_ctl_request_clear() afterwards.
 *
 * Messages never quote request values other than the command name, so key
 * material sent in args cannot leak into a reply or a log.
 */
int zpf_ctl_parse_request(const char *line, size_t len,
                          struct zpf_ctl_request *req, const char **code,
                          char *err, size_t errlen);

/* Drop the references a parse left in req and zero it.  Safe on a zeroed or
 * already cleared request. */
void zpf_ctl_request_clear(struct zpf_ctl_request *req);

/*
 * Build one reply line, "\n" included, NUL-terminated; *len (if not NULL)
 * gets its length without the NUL.  id (may be NULL: no "id" member) and
 * result (NULL: JSON null) are borrowed.  The caller frees the line with
 * free().  Returns NULL when out of memory or when result cannot be encoded.
 */
char *zpf_ctl_reply_ok(json_t *id, json_t *result, size_t *len);
char *zpf_ctl_reply_error(json_t *id, const char *code, const char *message,
                          size_t *len);

/* --- the server ----------------------------------------------------------- */

/* Who is on the other end of a connection, from SO_PEERCRED at accept. */
struct zpf_ctl_peer {
    uid_t uid;
    gid_t gid;
    pid_t pid;
    bool reader;    /* root, the agent's user, or in the control group */
    bool admin;     /* root, the agent's user, or in the admin group */
};

/*
 * A command handler.  args is borrowed and always an object (maybe empty).
 * On success fill *result with a new reference (NULL means JSON null) and
 * return 0 (a positive return counts as success too).  On failure return a
 * negative ZPF_E* code and write a message into err (errlen is
 * ZPF_CTL_ERR_MAX) saying what to do; an empty message is replaced by
 * zpf_strerror().  The code becomes the reply's error code through
 * ZPF_CTL_CODE_MAP.  Never put key material in the message.
 *
 * A handler may call zpf_ctl_server_close(); the reply to its own request is
 * then not sent, so a command like "leave" should reply first and close the
 * server later.
 */
typedef int (*zpf_ctl_handler_cb)(void *ctx, const struct zpf_ctl_peer *peer,
                                  json_t *args, json_t **result, char *err,
                                  size_t errlen);

struct zpf_ctl_command {
    const char *name;       /* [A-Za-z0-9._-], 1..ZPF_CTL_CMD_MAX bytes */
    zpf_ctl_handler_cb fn;
    bool admin;             /* false: any reader may run it */
    const char *help;       /* one line, for zpfctl and docs; may be NULL */
};

/* Called for events worth an operator's attention (a client dropped, a bad
 * accept), at most ZPF_CTL_LOG_BURST times per second; msg is valid for the
 * call only. */
typedef void (*zpf_ctl_log_cb)(void *ctx, const char *msg);
#define ZPF_CTL_LOG_BURST 10

struct zpf_ctl_options {
    const char *path;           /* socket file; required */
    const char *group;          /* readers' group; "" or NULL: the agent's
                                   effective gid */
    const char *admin_group;    /* admins' group; "" or NULL: none, so only
                                   root and the agent's user */
    const struct zpf_ctl_command *cmds; /* copied, names included */
    size_t ncmds;
    void *ctx;                  /* passed to handlers and log_cb */
    zpf_ctl_log_cb log_cb;      /* may be NULL */
    /* 0 means the ZPF_CTL_* default for each of these. */
    unsigned max_clients;       /* more are accepted, told "busy", closed */
    uint32_t idle_timeout_ms;   /* no read and no completed write */
    size_t max_pending_out;     /* see "Flow control" below */
    uint32_t stall_timeout_ms;
};

/*
 * Statistics, for the agent's metrics.  Counters only grow, except
 * `clients`.  Use zpf_ctl_code_name() for the label of errors[i].
 */
struct zpf_ctl_stats {
    uint64_t connections;       /* accepted, including refused ones */
    uint64_t refused;           /* closed at once: max_clients reached */
    uint64_t clients;           /* connected now */
    uint64_t requests;          /* non-empty lines answered */
    uint64_t ok;                /* of which answered ok */
    uint64_t errors[ZPF_CTL_CODE_COUNT];  /* answered with each code */
    uint64_t slow_dropped;      /* stalled above max_pending_out */
    uint64_t idle_closed;       /* closed by the idle timeout */
    uint64_t peer_errors;       /* SO_PEERCRED or accept failed */
};

struct zpf_ctl_server;

/*
 * Create the socket file and start accepting on loop.
 *
 * Socket file: the directory is created (0755) if missing.  A path that
 * does not fit sun_path is refused.  If a socket file already exists and
 * nobody accepts on it (a crashed agent's), it is replaced; if another
 * process accepts on it, start fails ("another zpfd is listening on PATH");
 * if the path is anything but a socket, start fails and the file is left
 * alone.  The socket is bound under umask 0117, so it is never accessible
 * to others, then set to mode 0660 and group `group`.  The umask is
 * process-wide: start the server before threads that create files.
 *
 * Permissions: every command needs a reader; admin commands need an admin.
 * Group membership is the peer's primary gid or its user's supplementary
 * groups (getpwuid_r + getgrouplist).  These NSS lookups may block briefly
 * (LDAP, sssd); they are done once per connection, at accept.
 *
 * Framing: "\r\n" is accepted, empty lines are ignored; a line holding a NUL
 * is a parse_error; a line over ZPF_CTL_LINE_MAX gets line_too_long and the
 * connection is closed after the reply, since the next line boundary cannot
 * be found safely.  After the client's EOF, a last unterminated line is
 * still answered, then the connection is closed once replies are written.
 *
 * Flow control: replies are queued without bound for one request, so a
 * large members list is fine.  Once more than max_pending_out bytes are
 * unwritten, the server stops reading and parsing that client's requests
 * until the client has read enough (half of max_pending_out); a client that
 * does not within stall_timeout_ms is dropped.  Memory per client is thus at
 * most ZPF_CTL_LINE_MAX of input plus max_pending_out plus one reply.
 *
 * The process must ignore SIGPIPE: libuv writes with write(2), and a client
 * that hangs up mid-reply would otherwise kill the agent.
 *
 * Returns 0 with *out set; or ZPF_EINVAL (bad options, path too long,
 * unknown group), ZPF_EEXIST (a non-socket file is in the way), ZPF_EBUSY
 * (another agent is listening), ZPF_ENOMEM, ZPF_EIO or a negated errno from
 * a system call, with a message in err naming the path and what to do.
 */
int zpf_ctl_server_start(uv_loop_t *loop, const struct zpf_ctl_options *o,
                         struct zpf_ctl_server **out, char *err,
                         size_t errlen);

/*
 * Stop accepting, close every connection (unsent replies are dropped), and
 * unlink the socket file if it is still the one this server created.  The
 * server is freed from libuv close callbacks; done(arg), if not NULL, runs
 * after the last one, so keep running the loop.  s must not be used after
 * this call.  Safe from a handler.
 */
void zpf_ctl_server_close(struct zpf_ctl_server *s, void (*done)(void *arg),
                          void *arg);

/* Copy the current counters into *out. */
void zpf_ctl_server_stats(const struct zpf_ctl_server *s,
                          struct zpf_ctl_stats *out);

/* --- the client ----------------------------------------------------------- */

/*
 * Blocking client (poll, no libuv), for zpfctl: connect to path, send
 * {"v":1,"cmd":cmd,"args":args}, read one reply line and parse it.  args is
 * borrowed and may be NULL (no args); otherwise it must be an object.
 * timeout_ms bounds the whole call (0: ZPF_CTL_CALL_TIMEOUT_MS).
 *
 * Returns 0 with *reply a new reference to the whole reply object, which
 * has "ok" true or false: an error reply is still a successful call.
 * Otherwise *reply is NULL and the return is ZPF_EINVAL (bad cmd or args,
 * path too long), ZPF_E2BIG (request over ZPF_CTL_LINE_MAX), ZPF_ENOENT
 * (no socket file), ZPF_EPERM (no permission on the socket), ZPF_EIO
 * (nobody listening, timeout, connection closed, garbage reply, reply over
 * ZPF_CTL_REPLY_MAX), or ZPF_ENOMEM, with a message in err naming the
 * socket and what to do.  SIGPIPE is not raised (MSG_NOSIGNAL).
 */
int zpf_ctl_call(const char *path, const char *cmd, json_t *args,
                 uint32_t timeout_ms, json_t **reply, char *err,
                 size_t errlen);

#endif
