/*
 * The control socket server, its request parser, and a blocking client.
 *
 * Everything a peer sends is hostile until parsed.  The parser is a pure
 * function of one line (fuzzed in tests/fuzz/fuzz_control.c); the server
 * around it only frames lines, checks permissions and moves bytes.
 *
 * Memory is bounded per client whatever the peer does:
 *
 *   - input: one buffer that grows to ZPF_CTL_LINE_MAX and no further.  A
 *     partial line that fills it is too long; we answer line_too_long and
 *     close, because skipping to the next "\n" would mean trusting that the
 *     rest of an oversized line is not itself a request.
 *   - output: replies are queued as whole lines.  Once more than
 *     max_pending_out bytes are unwritten we stop reading (and parsing the
 *     lines already buffered), so a client that pipelines requests without
 *     reading cannot make us build more replies.  It is dropped if it has
 *     not drained to half the bound within stall_timeout_ms.  Not dropping
 *     at once lets one large reply (members of a big cluster) through: the
 *     bound is on what piles up behind it, not on a single reply.
 *
 * Permissions are decided once per connection from SO_PEERCRED, because
 * the group lookups go through NSS and may block; the loop should pay that
 * once, not per request.
 *
 * libuv's own uv_pipe_bind() is not used: it unlinks the path when the
 * handle closes even if another agent has since replaced the file, and it
 * binds under the caller's umask.  We bind the socket ourselves under a
 * tight umask, hand the fd to libuv, and at close unlink the path only if
 * it is still our inode.
 */
#define _GNU_SOURCE /* struct ucred for SO_PEERCRED */

#include "control.h"

#include "errbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* listen() backlog: connections arrive one per zpfctl run; 128 absorbs a
 * burst from a monitoring fleet without ECONNREFUSED/EAGAIN at connect. */
#define LISTEN_BACKLOG 128

/* First size of a client's input buffer; it doubles up to the line max.
 * Most requests are under 100 bytes, so 64 idle clients cost 256 KiB, not
 * 4 MiB. */
#define IN_BUF_INITIAL 4096

/* Grow the input buffer when less than this is free, so reads stay large
 * enough to be efficient. */
#define IN_BUF_MIN_FREE 1024

/* Rate limit window for log_cb. */
#define LOG_WINDOW_MS 1000

/* First size of the NSS scratch buffers, and their cap: entries bigger than
 * 1 MiB (a group with tens of thousands of members) are treated as absent
 * rather than letting NSS drive our allocations. */
#define NSS_BUF_INITIAL 1024
#define NSS_BUF_MAX (1u << 20)

/* Supplementary groups we look at per peer: Linux's NGROUPS_MAX. */
#define PEER_GROUPS_MAX 65536

/* First size of zpf_ctl_call()'s reply buffer; it doubles as needed. */
#define CALL_BUF_INITIAL 4096

/* While another process's listen queue is full, connect() gets EAGAIN on a
 * nonblocking UNIX socket; retry this often until the deadline. */
#define CALL_RETRY_MS 10

/* Mode of the socket directory when we create it: others need to reach
 * the socket, whose own mode decides who may connect. */
#define DIR_MODE 0755

/* The socket file's mode, and the umask that yields it at bind time, so
 * that the file is never, even briefly, accessible to others. */
#define SOCK_MODE 0660
#define SOCK_UMASK 0117

/* --- small helpers -------------------------------------------------------- */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown type";
}

static bool valid_cmd_name(const char *s, size_t n)
{
    if (n == 0 || n > ZPF_CTL_CMD_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* --- error codes ---------------------------------------------------------- */

static const struct {
    const char *name;
    int err;
} code_table[ZPF_CTL_CODE_COUNT] = {
#define ZPF__CTL_CODE_ROW(name, str, err) {str, err},
    ZPF_CTL_CODE_MAP(ZPF__CTL_CODE_ROW)
#undef ZPF__CTL_CODE_ROW
};

const char *zpf_ctl_code_name(enum zpf_ctl_code code)
{
    if ((unsigned)code >= ZPF_CTL_CODE_COUNT)
        return code_table[ZPF_CTL_INTERNAL].name;
    return code_table[code].name;
}

enum zpf_ctl_code zpf_ctl_code_of_err(int err)
{
    if (err >= 0)
        return ZPF_CTL_INTERNAL;
    for (unsigned i = 0; i < ZPF_CTL_CODE_COUNT; i++)
        if (code_table[i].err == err)
            return (enum zpf_ctl_code)i;
    return ZPF_CTL_INTERNAL;
}

static enum zpf_ctl_code code_of_name(const char *name)
{
    for (unsigned i = 0; name != NULL && i < ZPF_CTL_CODE_COUNT; i++)
        if (strcmp(code_table[i].name, name) == 0)
            return (enum zpf_ctl_code)i;
    return ZPF_CTL_INTERNAL;
}

/* --- the request parser --------------------------------------------------- */

/*
 * jansson's message, minus the " near '<token>'" it appends: the token is
 * request text and may be key material.  What precedes it is a fixed
 * string from jansson's source.
 */
static void json_error_text(const json_error_t *je, char *out, size_t outlen)
{
    switch (json_error_code(je)) {
    case json_error_null_character:
        snprintf(out, outlen, "\\u0000 is not allowed in a string");
        return;
    case json_error_end_of_input_expected:
        snprintf(out, outlen, "text after the end of the object");
        return;
    case json_error_premature_end_of_input:
        snprintf(out, outlen, "the line ends inside the object");
        return;
    default:
        break;
    }
    const char *near = strstr(je->text, " near ");
    size_t n = near != NULL ? (size_t)(near - je->text) : strlen(je->text);
    snprintf(out, outlen, "%.*s", (int)n, je->text);
}

static int parse_fail(const char **code, const char *c, int rc)
{
    *code = c;
    return rc;
}

int zpf_ctl_parse_request(const char *line, size_t len,
                          struct zpf_ctl_request *req, const char **code,
                          char *err, size_t errlen)
{
    const char *unused;
    if (code == NULL)
        code = &unused;
    *code = NULL;
    if (req == NULL)
        return parse_fail(code, "internal", ZPF_EINVAL);
    memset(req, 0, sizeof *req);
    if (line == NULL)
        len = 0;

    if (len >= ZPF_CTL_LINE_MAX) {
        zpf_errf(err, errlen,
                "request line is %zu bytes; the limit is %d bytes including "
                "the newline", len + 1, ZPF_CTL_LINE_MAX);
        return parse_fail(code, "line_too_long", ZPF_E2BIG);
    }
    const char *nul = len > 0 ? memchr(line, '\0', len) : NULL;
    if (nul != NULL) {
        zpf_errf(err, errlen,
                "NUL byte at column %zu; a request is one line of UTF-8 JSON",
                (size_t)(nul - line) + 1);
        return parse_fail(code, "parse_error", ZPF_EINVAL);
    }

    json_error_t je;
    json_t *root = json_loadb(line != NULL ? line : "", len,
                              JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        char why[JSON_ERROR_TEXT_LENGTH];
        json_error_text(&je, why, sizeof why);
        zpf_errf(err, errlen,
                "not valid JSON at column %d (byte %d): %s; send one JSON "
                "object per line, e.g. {\"v\":1,\"cmd\":\"status\"}",
                je.column, je.position, why);
        return parse_fail(code, "parse_error", ZPF_EINVAL);
    }
    if (!json_is_object(root)) {
        zpf_errf(err, errlen,
                "a request must be a JSON object, not %s; e.g. "
                "{\"v\":1,\"cmd\":\"status\"}", type_name(root));
        json_decref(root);
        return parse_fail(code, "parse_error", ZPF_EINVAL);
    }

    /* Take the id first so that every later error can echo it. */
    json_t *id = json_object_get(root, "id");
    if (id != NULL && !json_is_object(id) && !json_is_array(id))
        req->id = json_incref(id);

    const char *c = "bad_request";
    int rc = ZPF_EINVAL;
    json_t *v = json_object_get(root, "v");
    json_t *cmd = json_object_get(root, "cmd");
    json_t *args = json_object_get(root, "args");
    if (v == NULL) {
        zpf_errf(err, errlen,
                "missing \"v\"; add \"v\":%d (the protocol version)",
                ZPF_CTL_VERSION);
        goto fail;
    }
    if (!json_is_integer(v)) {
        zpf_errf(err, errlen, "\"v\" must be an integer, not %s; send \"v\":%d",
                type_name(v), ZPF_CTL_VERSION);
        goto fail;
    }
    if (json_integer_value(v) != ZPF_CTL_VERSION) {
        c = "unsupported_version";
        zpf_errf(err, errlen,
                "protocol version %" JSON_INTEGER_FORMAT " is not supported; "
                "this agent supports version %d only",
                json_integer_value(v), ZPF_CTL_VERSION);
        goto fail;
    }
    if (id != NULL && req->id == NULL) {
        zpf_errf(err, errlen,
                "\"id\" must be a string, number, boolean or null, not %s",
                type_name(id));
        goto fail;
    }
    if (cmd == NULL) {
        zpf_errf(err, errlen,
                "missing \"cmd\"; name a command, e.g. \"cmd\":\"status\"");
        goto fail;
    }
    if (!json_is_string(cmd)) {
        zpf_errf(err, errlen, "\"cmd\" must be a string, not %s",
                type_name(cmd));
        goto fail;
    }
    size_t cmdlen = json_string_length(cmd);
    if (cmdlen == 0) {
        zpf_errf(err, errlen, "\"cmd\" is empty; name a command");
        goto fail;
    }
    if (cmdlen > ZPF_CTL_CMD_MAX) {
        zpf_errf(err, errlen, "\"cmd\" is %zu bytes; no command is longer "
                "than %d", cmdlen, ZPF_CTL_CMD_MAX);
        goto fail;
    }
    if (!valid_cmd_name(json_string_value(cmd), cmdlen)) {
        zpf_errf(err, errlen, "\"cmd\" may hold only letters, digits, '.', "
                "'_' and '-'");
        goto fail;
    }
    if (args != NULL && !json_is_object(args)) {
        zpf_errf(err, errlen, "\"args\" must be an object, not %s",
                type_name(args));
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "v") == 0 || strcmp(key, "id") == 0 ||
            strcmp(key, "cmd") == 0 || strcmp(key, "args") == 0)
            continue;
        /* Quote the key only when it plainly is a field name. */
        if (valid_cmd_name(key, strlen(key)))
            zpf_errf(err, errlen, "unknown field \"%s\"; a request has only "
                    "v, id, cmd and args", key);
        else
            zpf_errf(err, errlen, "unknown field; a request has only v, id, "
                    "cmd and args");
        goto fail;
    }

    req->args = args != NULL ? json_incref(args) : json_object();
    if (req->args == NULL) {
        c = "internal";
        rc = ZPF_ENOMEM;
        zpf_errf(err, errlen, "out of memory");
        goto fail;
    }
    memcpy(req->cmd, json_string_value(cmd), cmdlen);
    req->cmd[cmdlen] = '\0';
    json_decref(root);
    return 0;

fail:
    json_decref(root);
    return parse_fail(code, c, rc);
}

void zpf_ctl_request_clear(struct zpf_ctl_request *req)
{
    if (req == NULL)
        return;
    json_decref(req->id);
    json_decref(req->args);
    memset(req, 0, sizeof *req);
}

/* --- replies -------------------------------------------------------------- */

struct dumpbuf {
    char *p;
    size_t len, cap;
};

static int dump_cb(const char *buf, size_t size, void *data)
{
    struct dumpbuf *d = data;
    if (size > d->cap - d->len - 2) {   /* keep room for "\n" and NUL */
        size_t cap = d->cap;
        while (size > cap - d->len - 2) {
            if (cap > SIZE_MAX / 2)
                return -1;
            cap *= 2;
        }
        char *p = realloc(d->p, cap);
        if (p == NULL)
            return -1;
        d->p = p;
        d->cap = cap;
    }
    memcpy(d->p + d->len, buf, size);
    d->len += size;
    return 0;
}

/* Encode obj (consumed) as one line with "\n", in memory from malloc() so
 * the caller can free() it whatever allocator jansson was given. */
static char *dump_line(json_t *obj, size_t *len)
{
    if (obj == NULL)
        return NULL;
    struct dumpbuf d = {malloc(256), 0, 256};
    if (d.p == NULL ||
        json_dump_callback(obj, dump_cb, &d, JSON_COMPACT) != 0) {
        free(d.p);
        json_decref(obj);
        return NULL;
    }
    json_decref(obj);
    d.p[d.len++] = '\n';
    d.p[d.len] = '\0';
    if (len != NULL)
        *len = d.len;
    return d.p;
}

/* {"v":1[,"id":id]}: the common head of every reply. */
static json_t *reply_head(json_t *id)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    if (json_object_set_new(o, "v", json_integer(ZPF_CTL_VERSION)) != 0 ||
        (id != NULL && json_object_set(o, "id", id) != 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *zpf_ctl_reply_ok(json_t *id, json_t *result, size_t *len)
{
    json_t *o = reply_head(id);
    if (o == NULL)
        return NULL;
    if (json_object_set_new(o, "ok", json_true()) != 0 ||
        json_object_set(o, "result", result != NULL ? result
                                                    : json_null()) != 0) {
        json_decref(o);
        return NULL;
    }
    return dump_line(o, len);
}

/* A JSON string of msg.  A message cut short by snprintf() may end inside
 * a UTF-8 sequence, which jansson refuses: drop the partial character. */
static json_t *message_string(const char *msg)
{
    size_t n = strlen(msg);
    for (unsigned cut = 0; cut < 4 && cut <= n; cut++) {
        json_t *m = json_stringn(msg, n - cut);
        if (m != NULL)
            return m;
    }
    return json_string("(the message is not valid UTF-8)");
}

char *zpf_ctl_reply_error(json_t *id, const char *code, const char *message,
                          size_t *len)
{
    json_t *o = reply_head(id);
    if (o == NULL)
        return NULL;
    json_t *e = json_object();
    /* json_object_set_new() consumes the value even when it fails, so the
     * failures can be collected and checked once. */
    int bad = json_object_set_new(e, "code", json_string(code != NULL ? code
                                                         : "internal"));
    bad |= json_object_set_new(e, "message",
                               message_string(message != NULL ? message
                                                              : ""));
    bad |= json_object_set_new(o, "ok", json_false());
    bad |= json_object_set_new(o, "error", e);
    if (bad != 0) {
        json_decref(o);
        return NULL;
    }
    return dump_line(o, len);
}

/* --- the server: types ---------------------------------------------------- */

struct ctl_cmd {
    char name[ZPF_CTL_CMD_MAX + 1];
    zpf_ctl_handler_cb fn;
    bool admin;
};

struct ctl_client {
    uv_pipe_t pipe;
    uv_timer_t timer;           /* idle, or stall while paused */
    struct zpf_ctl_server *srv;
    struct ctl_client *prev, *next;
    struct zpf_ctl_peer peer;
    char *in;                   /* unparsed input */
    size_t in_len, in_cap;
    size_t scanned;             /* in[0..scanned) holds no "\n" */
    size_t pending_out;         /* queued reply bytes not yet written */
    unsigned handles;           /* open libuv handles; freed at 0 */
    bool reading;
    bool paused;                /* over max_pending_out: not parsing */
    bool eof;                   /* the client has shut down its side */
    bool finishing;             /* no more requests; close once written */
    bool closing;
};

struct ctl_write {
    uv_write_t req;
    struct ctl_client *c;
    char *buf;
    size_t len;
};

/* A connection over max_clients: accepted only to be told so and closed. */
struct ctl_refused {
    uv_pipe_t pipe;
    struct zpf_ctl_server *srv;
};

struct zpf_ctl_server {
    uv_loop_t *loop;
    uv_pipe_t listener;
    char *path;
    dev_t dev;
    ino_t ino;

    uid_t euid;
    char *user;                 /* the agent's user name, for messages */
    gid_t group_gid;
    char *group;
    bool has_admin_group;
    gid_t admin_gid;
    char *admin_group;

    struct ctl_cmd *cmds;
    size_t ncmds;
    void *ctx;
    zpf_ctl_log_cb log_cb;
    unsigned max_clients;
    uint32_t idle_ms;
    size_t max_out;
    uint32_t stall_ms;

    struct ctl_client *clients;
    unsigned nclients;          /* in the list, closing ones included */
    unsigned open_handles;      /* every handle we have not seen closed */
    struct zpf_ctl_stats st;

    uint64_t log_window;
    unsigned log_count, log_suppressed;

    bool closing;
    void (*done)(void *arg);
    void *done_arg;
};

/* --- logging -------------------------------------------------------------- */

__attribute__((format(printf, 2, 3)))
static void ctl_log(struct zpf_ctl_server *s, const char *fmt, ...)
{
    if (s->log_cb == NULL)
        return;
    uint64_t now = uv_now(s->loop);
    if (now - s->log_window >= LOG_WINDOW_MS) {
        if (s->log_suppressed > 0) {
            char note[96];
            snprintf(note, sizeof note,
                     "control: %u messages suppressed", s->log_suppressed);
            s->log_cb(s->ctx, note);
        }
        s->log_window = now;
        s->log_count = 0;
        s->log_suppressed = 0;
    }
    if (s->log_count >= ZPF_CTL_LOG_BURST) {
        s->log_suppressed++;
        return;
    }
    s->log_count++;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->log_cb(s->ctx, msg);
}

/* --- users and groups ----------------------------------------------------- */

/* getgrnam_r/getgrgid_r with a growing buffer.  Returns 0 found, 1 absent,
 * or a negative code. */
static int group_lookup(const char *name, gid_t gid, gid_t *gid_out,
                        char **name_out)
{
    size_t cap = NSS_BUF_INITIAL;
    for (;;) {
        char *buf = malloc(cap);
        if (buf == NULL)
            return ZPF_ENOMEM;
        struct group gr, *res = NULL;
        int r = name != NULL ? getgrnam_r(name, &gr, buf, cap, &res)
                             : getgrgid_r(gid, &gr, buf, cap, &res);
        if (r == ERANGE && cap < NSS_BUF_MAX) {
            free(buf);
            cap *= 2;
            continue;
        }
        if (r != 0 || res == NULL) {
            free(buf);
            return r == 0 || r == ENOENT || r == ESRCH ? 1 : -r;
        }
        if (gid_out != NULL)
            *gid_out = gr.gr_gid;
        if (name_out != NULL && (*name_out = strdup(gr.gr_name)) == NULL) {
            free(buf);
            return ZPF_ENOMEM;
        }
        free(buf);
        return 0;
    }
}

/* The user's name and primary group.  Returns 0, 1 (no such user), or a
 * negative code. */
static int user_lookup(uid_t uid, char **name, gid_t *gid)
{
    size_t cap = NSS_BUF_INITIAL;
    for (;;) {
        char *buf = malloc(cap);
        if (buf == NULL)
            return ZPF_ENOMEM;
        struct passwd pw, *res = NULL;
        int r = getpwuid_r(uid, &pw, buf, cap, &res);
        if (r == ERANGE && cap < NSS_BUF_MAX) {
            free(buf);
            cap *= 2;
            continue;
        }
        if (r != 0 || res == NULL) {
            free(buf);
            return r == 0 || r == ENOENT || r == ESRCH ? 1 : -r;
        }
        *name = strdup(pw.pw_name);
        if (gid != NULL)
            *gid = pw.pw_gid;
        free(buf);
        return *name != NULL ? 0 : ZPF_ENOMEM;
    }
}

/* Is `uid` (named in the user database) a member of any of want[0..n)
 * through its supplementary groups?  Sets hit[i].  Lookup failures count
 * as "not a member": the peer then gets only what its uid and primary gid
 * allow. */
static void supplementary(uid_t uid, const gid_t *want, bool *hit, size_t n)
{
    char *user = NULL;
    gid_t base;
    if (user_lookup(uid, &user, &base) != 0)
        return;
    int cap = 64;
    gid_t *groups = NULL;
    for (;;) {
        gid_t *g = realloc(groups, (size_t)cap * sizeof *g);
        if (g == NULL)
            break;
        groups = g;
        int ng = cap;
        if (getgrouplist(user, base, groups, &ng) >= 0) {
            for (int i = 0; i < ng; i++)
                for (size_t k = 0; k < n; k++)
                    if (groups[i] == want[k])
                        hit[k] = true;
            break;
        }
        if (ng <= cap || ng > PEER_GROUPS_MAX)
            break;
        cap = ng;
    }
    free(groups);
    free(user);
}

static void classify_peer(const struct zpf_ctl_server *s,
                          struct zpf_ctl_peer *p)
{
    if (p->uid == 0 || p->uid == s->euid) {
        p->reader = p->admin = true;
        return;
    }
    p->reader = p->gid == s->group_gid;
    p->admin = s->has_admin_group && p->gid == s->admin_gid;
    if (p->reader && (p->admin || !s->has_admin_group))
        return;
    gid_t want[2] = {s->group_gid, s->admin_gid};
    bool hit[2] = {false, false};
    supplementary(p->uid, want, hit, s->has_admin_group ? 2 : 1);
    p->reader = p->reader || hit[0];
    p->admin = p->admin || (s->has_admin_group && hit[1]);
}

/* --- the server: connections ---------------------------------------------- */

static void maybe_finish(struct zpf_ctl_server *s);
static void client_pump(struct ctl_client *c);

static void handle_closed(struct zpf_ctl_server *s)
{
    s->open_handles--;
    maybe_finish(s);
}

static void client_handle_closed(uv_handle_t *h)
{
    struct ctl_client *c = h->data;
    struct zpf_ctl_server *s = c->srv;
    if (--c->handles > 0) {
        handle_closed(s);
        return;
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->nclients--;
    s->st.clients--;
    free(c->in);
    free(c);
    handle_closed(s);
}

static void client_close(struct ctl_client *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    uv_close((uv_handle_t *)&c->pipe, client_handle_closed);
    uv_close((uv_handle_t *)&c->timer, client_handle_closed);
}

static void client_timeout(uv_timer_t *t)
{
    struct ctl_client *c = t->data;
    struct zpf_ctl_server *s = c->srv;
    if (c->paused) {
        s->st.slow_dropped++;
        ctl_log(s, "control: dropping client pid %ld uid %ld: %zu bytes of "
                "replies unread for %u ms", (long)c->peer.pid,
                (long)c->peer.uid, c->pending_out, (unsigned)s->stall_ms);
    } else {
        s->st.idle_closed++;
    }
    client_close(c);
}

/* Restart the idle clock: traffic in either direction counts.  A paused
 * client's clock is the stall deadline, which only draining stops. */
static void client_touch(struct ctl_client *c)
{
    if (c->closing || c->paused)
        return;
    uv_timer_start(&c->timer, client_timeout, c->srv->idle_ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct ctl_client *c = h->data;
    (void)suggested;
    if (c->in_cap - c->in_len < IN_BUF_MIN_FREE &&
        c->in_cap < ZPF_CTL_LINE_MAX) {
        size_t cap = c->in_cap != 0 ? c->in_cap * 2 : IN_BUF_INITIAL;
        if (cap > ZPF_CTL_LINE_MAX)
            cap = ZPF_CTL_LINE_MAX;
        char *p = realloc(c->in, cap);
        if (p != NULL) {
            c->in = p;
            c->in_cap = cap;
        }
    }
    /* A full buffer yields UV_ENOBUFS in on_read; client_pump() never lets
     * that happen, since a full buffer without "\n" is a line too long. */
    *buf = uv_buf_init(c->in != NULL ? c->in + c->in_len : NULL,
                       (unsigned)(c->in_cap - c->in_len));
}

static void stop_reading(struct ctl_client *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->pipe);
        c->reading = false;
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void start_reading(struct ctl_client *c)
{
    if (c->reading || c->closing || c->paused || c->eof || c->finishing)
        return;
    if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0) {
        client_close(c);
        return;
    }
    c->reading = true;
}

static void on_write(uv_write_t *req, int status)
{
    struct ctl_write *w = req->data;
    struct ctl_client *c = w->c;
    c->pending_out -= w->len;
    free(w->buf);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        client_close(c);
        return;
    }
    if (c->paused && c->pending_out <= c->srv->max_out / 2) {
        c->paused = false;
        client_touch(c);
        client_pump(c);
        if (c->closing)
            return;
    } else {
        client_touch(c);
    }
    if (c->finishing && c->pending_out == 0)
        client_close(c);
}

/* Queue one reply line (taking ownership of it).  NULL means building it
 * failed; the client then gets a fixed "internal" reply. */
static void client_send(struct ctl_client *c, char *line, size_t len)
{
    static const char oom[] = "{\"v\":1,\"ok\":false,\"error\":{\"code\":"
                              "\"internal\",\"message\":\"out of memory "
                              "building the reply\"}}\n";
    struct zpf_ctl_server *s = c->srv;
    if (line == NULL) {
        s->st.errors[ZPF_CTL_INTERNAL]++;
        len = sizeof oom - 1;
        line = malloc(len);
        if (line == NULL) {
            client_close(c);
            return;
        }
        memcpy(line, oom, len);
    }
    struct ctl_write *w = malloc(sizeof *w);
    if (w == NULL) {
        free(line);
        client_close(c);
        return;
    }
    w->c = c;
    w->buf = line;
    w->len = len;
    w->req.data = w;
    uv_buf_t b = uv_buf_init(line, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_write) != 0) {
        free(line);
        free(w);
        client_close(c);
        return;
    }
    c->pending_out += len;
    if (c->pending_out > s->max_out && !c->paused) {
        c->paused = true;
        stop_reading(c);
        uv_timer_start(&c->timer, client_timeout, s->stall_ms, 0);
    }
}

static void send_error(struct ctl_client *c, json_t *id,
                       enum zpf_ctl_code code, const char *msg)
{
    size_t len = 0;
    char *line = zpf_ctl_reply_error(id, zpf_ctl_code_name(code), msg, &len);
    if (line != NULL)
        c->srv->st.errors[code]++;
    client_send(c, line, len);
}

static const struct ctl_cmd *find_cmd(const struct zpf_ctl_server *s,
                                      const char *name)
{
    for (size_t i = 0; i < s->ncmds; i++)
        if (strcmp(s->cmds[i].name, name) == 0)
            return &s->cmds[i];
    return NULL;
}

static void unknown_command(struct ctl_client *c, json_t *id,
                            const char *name)
{
    const struct zpf_ctl_server *s = c->srv;
    char msg[ZPF_CTL_ERR_MAX];
    size_t n = (size_t)snprintf(msg, sizeof msg,
                                "unknown command \"%s\"; commands:", name);
    for (size_t i = 0; i < s->ncmds && n < sizeof msg; i++)
        n += (size_t)snprintf(msg + n, sizeof msg - n, "%s %s",
                              i > 0 ? "," : "", s->cmds[i].name);
    if (n >= sizeof msg)
        memcpy(msg + sizeof msg - 4, "...", 4);
    send_error(c, id, ZPF_CTL_UNKNOWN_COMMAND, msg);
}

static void forbidden(struct ctl_client *c, json_t *id,
                      const struct ctl_cmd *cmd)
{
    const struct zpf_ctl_server *s = c->srv;
    char msg[ZPF_CTL_ERR_MAX];
    if (!cmd->admin)
        snprintf(msg, sizeof msg, "\"%s\" needs root, the agent's user (%s) "
                 "or membership of the control group %s", cmd->name,
                 s->user, s->group);
    else if (s->has_admin_group)
        snprintf(msg, sizeof msg, "\"%s\" changes the agent and needs root, "
                 "the agent's user (%s) or membership of the admin group %s",
                 cmd->name, s->user, s->admin_group);
    else
        snprintf(msg, sizeof msg, "\"%s\" changes the agent and needs root "
                 "or the agent's user (%s); set control.admin_group to let a "
                 "group do it", cmd->name, s->user);
    send_error(c, id, ZPF_CTL_FORBIDDEN, msg);
}

static bool blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    return true;
}

/* Answer one line (without its "\n"). */
static void handle_line(struct ctl_client *c, const char *p, size_t n)
{
    struct zpf_ctl_server *s = c->srv;
    if (blank(p, n))
        return;
    s->st.requests++;

    struct zpf_ctl_request req;
    const char *code = NULL;
    char msg[ZPF_CTL_ERR_MAX];
    int rc = zpf_ctl_parse_request(p, n, &req, &code, msg, sizeof msg);
    if (rc < 0) {
        send_error(c, req.id, code_of_name(code), msg);
        zpf_ctl_request_clear(&req);
        return;
    }
    const struct ctl_cmd *cmd = find_cmd(s, req.cmd);
    if (cmd == NULL) {
        unknown_command(c, req.id, req.cmd);
    } else if (!c->peer.reader || (cmd->admin && !c->peer.admin)) {
        forbidden(c, req.id, cmd);
    } else {
        json_t *result = NULL;
        msg[0] = '\0';
        rc = cmd->fn(s->ctx, &c->peer, req.args, &result, msg, sizeof msg);
        if (c->closing) {
            /* The handler closed the server. */
            json_decref(result);
        } else if (rc < 0) {
            json_decref(result);
            if (msg[0] == '\0')
                snprintf(msg, sizeof msg, "%s", zpf_strerror(rc));
            send_error(c, req.id, zpf_ctl_code_of_err(rc), msg);
        } else {
            size_t len = 0;
            char *line = zpf_ctl_reply_ok(req.id, result, &len);
            json_decref(result);
            if (line != NULL)
                s->st.ok++;
            client_send(c, line, len);
        }
    }
    zpf_ctl_request_clear(&req);
}

static void line_too_long(struct ctl_client *c)
{
    struct zpf_ctl_server *s = c->srv;
    char msg[160];
    snprintf(msg, sizeof msg, "request line longer than %d bytes including "
             "the newline; closing the connection", ZPF_CTL_LINE_MAX);
    s->st.requests++;
    ctl_log(s, "control: client pid %ld uid %ld sent a line over %d bytes",
            (long)c->peer.pid, (long)c->peer.uid, ZPF_CTL_LINE_MAX);
    c->in_len = 0;
    c->scanned = 0;
    c->finishing = true;
    stop_reading(c);
    send_error(c, NULL, ZPF_CTL_LINE_TOO_LONG, msg);
}

/* Answer the complete lines buffered, then decide whether to read on. */
static void client_pump(struct ctl_client *c)
{
    size_t pos = 0, from = c->scanned;
    while (!c->closing && !c->paused && !c->finishing) {
        char *nl = from < c->in_len
                       ? memchr(c->in + from, '\n', c->in_len - from)
                       : NULL;
        if (nl == NULL) {
            from = c->in_len;
            break;
        }
        size_t end = (size_t)(nl - c->in);
        handle_line(c, c->in + pos, end - pos);
        pos = from = end + 1;
    }
    if (c->closing)
        return;
    if (pos > 0 && pos < c->in_len)
        memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    c->scanned = from - pos;
    if (c->paused || c->finishing)
        return;
    if (c->in_len >= ZPF_CTL_LINE_MAX) {
        line_too_long(c);
        return;
    }
    if (c->eof) {
        /* Scripts may omit the last newline; answer that line too. */
        if (c->in_len > 0)
            handle_line(c, c->in, c->in_len);
        c->in_len = c->scanned = 0;
        if (c->closing)
            return;
        c->finishing = true;
        if (c->pending_out == 0)
            client_close(c);
        return;
    }
    start_reading(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct ctl_client *c = st->data;
    (void)buf;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF) {
            client_close(c);
            return;
        }
        stop_reading(c);
        c->eof = true;
        client_pump(c);
        return;
    }
    c->in_len += (size_t)nread;
    client_touch(c);
    client_pump(c);
}

static void refused_closed(uv_handle_t *h)
{
    struct ctl_refused *r = h->data;
    struct zpf_ctl_server *s = r->srv;
    free(r);
    handle_closed(s);
}

static void refuse(struct zpf_ctl_server *s)
{
    struct ctl_refused *r = malloc(sizeof *r);
    if (r == NULL) {
        ctl_log(s, "control: out of memory; a connection stays pending");
        return;
    }
    r->srv = s;
    uv_pipe_init(s->loop, &r->pipe, 0);
    r->pipe.data = r;
    s->open_handles++;
    s->st.connections++;
    s->st.refused++;
    if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&r->pipe) ==
        0) {
        char msg[128];
        snprintf(msg, sizeof msg, "too many control connections (%u); try "
                 "again later", s->max_clients);
        size_t len = 0;
        char *line = zpf_ctl_reply_error(NULL, "busy", msg, &len);
        if (line != NULL) {
            /* Best effort: a fresh socket's buffer takes 100 bytes. */
            uv_buf_t b = uv_buf_init(line, (unsigned)len);
            (void)uv_try_write((uv_stream_t *)&r->pipe, &b, 1);
            free(line);
        }
    }
    ctl_log(s, "control: refusing a connection: %u clients already",
            s->nclients);
    uv_close((uv_handle_t *)&r->pipe, refused_closed);
}

static void on_connection(uv_stream_t *l, int status)
{
    struct zpf_ctl_server *s = l->data;
    if (s->closing)
        return;
    if (status < 0) {
        s->st.peer_errors++;
        ctl_log(s, "control: accept failed: %s", uv_strerror(status));
        return;
    }
    if (s->nclients >= s->max_clients) {
        refuse(s);
        return;
    }
    struct ctl_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        refuse(s);
        return;
    }
    c->srv = s;
    uv_pipe_init(s->loop, &c->pipe, 0);
    uv_timer_init(s->loop, &c->timer);
    c->pipe.data = c->timer.data = c;
    c->handles = 2;
    s->open_handles += 2;
    c->next = s->clients;
    if (s->clients != NULL)
        s->clients->prev = c;
    s->clients = c;
    s->nclients++;
    s->st.clients++;
    s->st.connections++;

    int rc = uv_accept(l, (uv_stream_t *)&c->pipe);
    uv_os_fd_t fd = -1;
    struct ucred cr;
    memset(&cr, 0, sizeof cr);
    socklen_t crlen = sizeof cr;
    if (rc == 0)
        rc = uv_fileno((uv_handle_t *)&c->pipe, &fd);
    if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0)
        rc = -errno;
    if (rc != 0) {
        s->st.peer_errors++;
        ctl_log(s, "control: cannot accept or identify a client: %s",
                strerror(-rc));
        client_close(c);
        return;
    }
    c->peer.uid = cr.uid;
    c->peer.gid = cr.gid;
    c->peer.pid = cr.pid;
    classify_peer(s, &c->peer);
    client_touch(c);
    start_reading(c);
}

/* --- the server: lifecycle ------------------------------------------------ */

static void server_free(struct zpf_ctl_server *s)
{
    free(s->path);
    free(s->user);
    free(s->group);
    free(s->admin_group);
    free(s->cmds);
    free(s);
}

static void maybe_finish(struct zpf_ctl_server *s)
{
    if (!s->closing || s->open_handles > 0)
        return;
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    server_free(s);
    if (done != NULL)
        done(arg);
}

static void listener_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

/* Unlink the socket file if it is still the one we bound. */
static void unlink_ours(const struct zpf_ctl_server *s)
{
    struct stat st;
    if (s->ino != 0 && lstat(s->path, &st) == 0 && st.st_ino == s->ino &&
        st.st_dev == s->dev)
        unlink(s->path);
}

void zpf_ctl_server_close(struct zpf_ctl_server *s, void (*done)(void *arg),
                          void *arg)
{
    if (s == NULL || s->closing)
        return;
    s->closing = true;
    s->done = done;
    s->done_arg = arg;
    unlink_ours(s);
    uv_close((uv_handle_t *)&s->listener, listener_closed);
    for (struct ctl_client *c = s->clients; c != NULL; c = c->next)
        client_close(c);
}

void zpf_ctl_server_stats(const struct zpf_ctl_server *s,
                          struct zpf_ctl_stats *out)
{
    if (s != NULL && out != NULL)
        *out = s->st;
}

/* mkdir -p of path's directory. */
static int make_parent(const char *path, char *err, size_t errlen)
{
    char *dir = strdup(path);
    if (dir == NULL)
        return ZPF_ENOMEM;
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) {
        free(dir);
        return 0;
    }
    *slash = '\0';
    int rc = 0;
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(dir, DIR_MODE) != 0 && errno != EEXIST) {
            rc = -errno;
            zpf_errf(err, errlen, "cannot create directory %s for the "
                    "control socket: %s", dir, strerror(errno));
            break;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    free(dir);
    return rc;
}

/* A socket file is already at the path: replace it if it is stale. */
static int clear_stale(const char *path, const struct sockaddr_un *sa,
                       char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        zpf_errf(err, errlen, "cannot check %s: %s", path, strerror(errno));
        return -errno;
    }
    if (!S_ISSOCK(st.st_mode)) {
        zpf_errf(err, errlen, "%s exists and is not a socket; remove it or "
                "set another control socket path", path);
        return ZPF_EEXIST;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        zpf_errf(err, errlen, "cannot create a socket: %s", strerror(errno));
        return -errno;
    }
    int r = connect(fd, (const struct sockaddr *)sa, sizeof *sa);
    int e = errno;
    close(fd);
    if (r == 0 || e == EAGAIN || e == EINPROGRESS) {
        zpf_errf(err, errlen, "another zpfd is listening on %s; stop it "
                "first or set another control socket path", path);
        return ZPF_EBUSY;
    }
    if (e != ECONNREFUSED) {
        zpf_errf(err, errlen, "cannot check the existing socket %s: %s",
                path, strerror(e));
        return -e;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        zpf_errf(err, errlen, "cannot remove the stale socket %s: %s", path,
                strerror(errno));
        return -errno;
    }
    return 0;
}

/* Bind and configure the socket file; returns the fd or a negative code. */
static int bind_socket(struct zpf_ctl_server *s, const struct sockaddr_un *sa,
                       char *err, size_t errlen)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        zpf_errf(err, errlen, "cannot create a socket: %s", strerror(errno));
        return -errno;
    }
    mode_t old = umask(SOCK_UMASK);
    int r = bind(fd, (const struct sockaddr *)sa, sizeof *sa);
    int e = errno;
    umask(old);
    if (r != 0) {
        close(fd);
        if (e == EADDRINUSE) {
            zpf_errf(err, errlen, "another zpfd is listening on %s; stop it "
                    "first or set another control socket path", s->path);
            return ZPF_EBUSY;
        }
        zpf_errf(err, errlen, "cannot bind the control socket %s: %s",
                s->path, strerror(e));
        return -e;
    }
    struct stat st;
    if (chmod(s->path, SOCK_MODE) != 0) {
        e = errno;
        zpf_errf(err, errlen, "cannot set the mode of the control socket %s: "
                "%s", s->path, strerror(e));
    } else if (chown(s->path, (uid_t)-1, s->group_gid) != 0) {
        e = errno;
        zpf_errf(err, errlen, "cannot give the control socket %s to group %s: "
                "%s; run zpfd as root or as a member of that group", s->path,
                s->group, strerror(e));
    } else if (lstat(s->path, &st) != 0) {
        e = errno;
        zpf_errf(err, errlen, "cannot stat the control socket %s: %s", s->path,
                strerror(e));
    } else {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        return fd;
    }
    unlink(s->path);
    close(fd);
    return -e;
}

static int copy_commands(struct zpf_ctl_server *s,
                         const struct zpf_ctl_options *o, char *err,
                         size_t errlen)
{
    if (o->ncmds > 0 && o->cmds == NULL) {
        zpf_errf(err, errlen, "control: %zu commands but no table", o->ncmds);
        return ZPF_EINVAL;
    }
    s->cmds = calloc(o->ncmds > 0 ? o->ncmds : 1, sizeof *s->cmds);
    if (s->cmds == NULL)
        return ZPF_ENOMEM;
    for (size_t i = 0; i < o->ncmds; i++) {
        const struct zpf_ctl_command *c = &o->cmds[i];
        size_t n = c->name != NULL ? strlen(c->name) : 0;
        if (!valid_cmd_name(c->name, n) || c->fn == NULL) {
            zpf_errf(err, errlen, "control: command %zu has a bad name or no "
                    "handler; names are 1..%d of [A-Za-z0-9._-]", i,
                    ZPF_CTL_CMD_MAX);
            return ZPF_EINVAL;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(s->cmds[k].name, c->name) == 0) {
                zpf_errf(err, errlen, "control: command \"%s\" is listed "
                        "twice", c->name);
                return ZPF_EINVAL;
            }
        }
        memcpy(s->cmds[i].name, c->name, n + 1);
        s->cmds[i].fn = c->fn;
        s->cmds[i].admin = c->admin;
    }
    s->ncmds = o->ncmds;
    return 0;
}

static int resolve_identity(struct zpf_ctl_server *s,
                            const struct zpf_ctl_options *o, char *err,
                            size_t errlen)
{
    char buf[32];
    s->euid = geteuid();
    int rc = user_lookup(s->euid, &s->user, NULL);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        snprintf(buf, sizeof buf, "uid %ld", (long)s->euid);
        if ((s->user = strdup(buf)) == NULL)
            return ZPF_ENOMEM;
    }

    if (o->group == NULL || o->group[0] == '\0') {
        s->group_gid = getegid();
        rc = group_lookup(NULL, s->group_gid, NULL, &s->group);
        if (rc < 0)
            return rc;
        if (rc > 0) {
            snprintf(buf, sizeof buf, "gid %ld", (long)s->group_gid);
            if ((s->group = strdup(buf)) == NULL)
                return ZPF_ENOMEM;
        }
    } else {
        rc = group_lookup(o->group, 0, &s->group_gid, &s->group);
        if (rc != 0) {
            if (rc > 0)
                zpf_errf(err, errlen, "control group \"%s\" does not exist; "
                        "create it (groupadd %s) or change control.group",
                        o->group, o->group);
            else
                zpf_errf(err, errlen, "cannot look up control group \"%s\": "
                        "%s", o->group, strerror(-rc));
            return rc > 0 ? ZPF_EINVAL : rc;
        }
    }

    if (o->admin_group != NULL && o->admin_group[0] != '\0') {
        rc = group_lookup(o->admin_group, 0, &s->admin_gid, &s->admin_group);
        if (rc != 0) {
            if (rc > 0)
                zpf_errf(err, errlen, "admin group \"%s\" does not exist; "
                        "create it (groupadd %s) or change "
                        "control.admin_group", o->admin_group,
                        o->admin_group);
            else
                zpf_errf(err, errlen, "cannot look up admin group \"%s\": "
                        "%s", o->admin_group, strerror(-rc));
            return rc > 0 ? ZPF_EINVAL : rc;
        }
        s->has_admin_group = true;
    }
    return 0;
}

static void start_failed(uv_handle_t *h)
{
    server_free(h->data);
}

int zpf_ctl_server_start(uv_loop_t *loop, const struct zpf_ctl_options *o,
                         struct zpf_ctl_server **out, char *err,
                         size_t errlen)
{
    if (out != NULL)
        *out = NULL;
    if (loop == NULL || o == NULL || out == NULL) {
        zpf_errf(err, errlen, "control: no loop, options or result pointer");
        return ZPF_EINVAL;
    }
    if (o->path == NULL || o->path[0] == '\0') {
        zpf_errf(err, errlen, "control socket path is empty; set "
                "control.socket");
        return ZPF_EINVAL;
    }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t plen = strlen(o->path);
    if (plen >= sizeof sa.sun_path) {
        zpf_errf(err, errlen, "control socket path %s is %zu bytes; UNIX "
                "sockets allow at most %zu, choose a shorter path", o->path,
                plen, sizeof sa.sun_path - 1);
        return ZPF_EINVAL;
    }
    memcpy(sa.sun_path, o->path, plen + 1);

    struct zpf_ctl_server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return ZPF_ENOMEM;
    s->loop = loop;
    s->ctx = o->ctx;
    s->log_cb = o->log_cb;
    s->max_clients = o->max_clients ? o->max_clients : ZPF_CTL_MAX_CLIENTS;
    s->idle_ms = o->idle_timeout_ms ? o->idle_timeout_ms
                                    : ZPF_CTL_IDLE_TIMEOUT_MS;
    s->max_out = o->max_pending_out ? o->max_pending_out
                                    : ZPF_CTL_MAX_PENDING_OUT;
    s->stall_ms = o->stall_timeout_ms ? o->stall_timeout_ms
                                      : ZPF_CTL_STALL_TIMEOUT_MS;
    s->log_window = uv_now(loop);
    int rc = ZPF_ENOMEM;
    if ((s->path = strdup(o->path)) == NULL)
        goto fail;
    if ((rc = copy_commands(s, o, err, errlen)) != 0)
        goto fail;
    if ((rc = resolve_identity(s, o, err, errlen)) != 0) {
        if (rc == ZPF_ENOMEM)
            zpf_errf(err, errlen, "control: out of memory");
        goto fail;
    }
    if ((rc = make_parent(o->path, err, errlen)) != 0)
        goto fail;
    if ((rc = clear_stale(o->path, &sa, err, errlen)) != 0)
        goto fail;
    int fd = bind_socket(s, &sa, err, errlen);
    if (fd < 0) {
        rc = fd;
        goto fail;
    }

    uv_pipe_init(loop, &s->listener, 0);
    s->listener.data = s;
    s->open_handles = 1;
    rc = uv_pipe_open(&s->listener, fd);
    if (rc != 0)
        close(fd);
    else
        rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG,
                       on_connection);
    if (rc != 0) {
        zpf_errf(err, errlen, "cannot listen on the control socket %s: %s",
                s->path, uv_strerror(rc));
        unlink_ours(s);
        uv_close((uv_handle_t *)&s->listener, start_failed);
        return ZPF_EIO;
    }
    *out = s;
    return 0;

fail:
    server_free(s);
    return rc;
}

/* --- the client ----------------------------------------------------------- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = mono_ms();
    if (now >= deadline)
        return 0;
    uint64_t left = deadline - now;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* Wait for `events` on fd; 1 ready, 0 timed out, negative on error. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        int left = remaining_ms(deadline);
        if (left == 0)
            return 0;
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

static int call_connect(int fd, const char *path,
                        const struct sockaddr_un *sa, uint64_t deadline,
                        uint32_t timeout_ms, char *err, size_t errlen)
{
    for (;;) {
        if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0)
            return 0;
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN) {
            /* zpfd's listen queue is full: wait for it to accept. */
            int left = remaining_ms(deadline);
            if (left == 0) {
                zpf_errf(err, errlen, "cannot connect to %s: zpfd did not "
                        "accept within %u ms; it may be stuck", path,
                        (unsigned)timeout_ms);
                return ZPF_EIO;
            }
            poll(NULL, 0, left < CALL_RETRY_MS ? left : CALL_RETRY_MS);
            continue;
        }
        if (e == ENOENT || e == ENOTDIR) {
            zpf_errf(err, errlen, "cannot connect to %s: %s; is zpfd running? "
                    "is the socket path right (-s, ZPF_SOCKET)? are you in "
                    "the control group?", path, strerror(e));
            return ZPF_ENOENT;
        }
        if (e == EACCES || e == EPERM) {
            zpf_errf(err, errlen, "cannot connect to %s: %s; you need to be "
                    "in zpfd's control group (control.group), or root, to "
                    "use its socket", path, strerror(e));
            return ZPF_EPERM;
        }
        if (e == ECONNREFUSED) {
            zpf_errf(err, errlen, "cannot connect to %s: nobody is listening "
                    "(a stale socket); is zpfd running?", path);
            return ZPF_EIO;
        }
        zpf_errf(err, errlen, "cannot connect to %s: %s", path, strerror(e));
        return ZPF_EIO;
    }
}

static int call_send(int fd, const char *path, const char *buf, size_t len,
                     uint64_t deadline, uint32_t timeout_ms, char *err,
                     size_t errlen)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            int r = wait_fd(fd, POLLOUT, deadline);
            if (r > 0)
                continue;
            if (r == 0) {
                zpf_errf(err, errlen, "zpfd at %s did not take the request "
                        "within %u ms; it may be stuck", path,
                        (unsigned)timeout_ms);
                return ZPF_EIO;
            }
            errno = -r;
        }
        zpf_errf(err, errlen, "cannot send to zpfd at %s: %s", path,
                strerror(errno));
        return ZPF_EIO;
    }
    return 0;
}

/* Read up to and excluding the first "\n" into *out (malloc'd). */
static int call_recv(int fd, const char *path, uint64_t deadline,
                     uint32_t timeout_ms, char **out, size_t *outlen,
                     char *err, size_t errlen)
{
    size_t cap = CALL_BUF_INITIAL, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return ZPF_ENOMEM;
    for (;;) {
        if (len == cap) {
            if (cap >= ZPF_CTL_REPLY_MAX) {
                zpf_errf(err, errlen, "zpfd at %s sent a reply over %u bytes; "
                        "giving up", path, (unsigned)ZPF_CTL_REPLY_MAX);
                free(buf);
                return ZPF_EIO;
            }
            char *p = realloc(buf, cap * 2);
            if (p == NULL) {
                free(buf);
                return ZPF_ENOMEM;
            }
            buf = p;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n > 0) {
            char *nl = memchr(buf + len, '\n', (size_t)n);
            len += (size_t)n;
            if (nl != NULL) {
                *out = buf;
                *outlen = (size_t)(nl - buf);
                return 0;
            }
            continue;
        }
        if (n == 0) {
            zpf_errf(err, errlen, "zpfd at %s closed the connection without "
                    "a complete reply; see the agent's log", path);
            free(buf);
            return ZPF_EIO;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            int r = wait_fd(fd, POLLIN, deadline);
            if (r > 0)
                continue;
            if (r == 0) {
                zpf_errf(err, errlen, "no reply from zpfd at %s within %u ms; "
                        "is zpfd running and not stuck (see its log)? raise "
                        "the limit with -t SECONDS", path,
                        (unsigned)timeout_ms);
                free(buf);
                return ZPF_EIO;
            }
            errno = -r;
        }
        zpf_errf(err, errlen, "cannot read from zpfd at %s: %s", path,
                strerror(errno));
        free(buf);
        return ZPF_EIO;
    }
}

/* Is reply shaped like a protocol version 1 reply? */
/* NULL if r is a well-formed reply, else what is wrong with it. */
static const char *reply_flaw(json_t *r, char *buf, size_t cap)
{
    if (!json_is_object(r))
        return "not a JSON object";
    json_t *v = json_object_get(r, "v");
    json_t *ok = json_object_get(r, "ok");
    if (!json_is_integer(v))
        return "no \"v\" protocol version";
    if (json_integer_value(v) != ZPF_CTL_VERSION) {
        snprintf(buf, cap, "protocol version %lld, not %d",
                 (long long)json_integer_value(v), ZPF_CTL_VERSION);
        return buf;
    }
    if (!json_is_boolean(ok))
        return "no \"ok\"";
    if (json_is_true(ok))
        return json_object_get(r, "result") ? NULL : "no \"result\"";
    json_t *e = json_object_get(r, "error");
    if (json_is_object(e) && json_is_string(json_object_get(e, "code")) &&
        json_is_string(json_object_get(e, "message")))
        return NULL;
    return "no \"error\" with code and message";
}

int zpf_ctl_call(const char *path, const char *cmd, json_t *args,
                 uint32_t timeout_ms, json_t **reply, char *err,
                 size_t errlen)
{
    if (reply == NULL) {
        zpf_errf(err, errlen, "control: no place for the reply");
        return ZPF_EINVAL;
    }
    *reply = NULL;
    if (cmd == NULL || !valid_cmd_name(cmd, strlen(cmd))) {
        zpf_errf(err, errlen, "bad command name; names are 1..%d of "
                "[A-Za-z0-9._-]", ZPF_CTL_CMD_MAX);
        return ZPF_EINVAL;
    }
    if (args != NULL && !json_is_object(args)) {
        zpf_errf(err, errlen, "command arguments must be a JSON object");
        return ZPF_EINVAL;
    }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (path == NULL || path[0] == '\0' ||
        strlen(path) >= sizeof sa.sun_path) {
        zpf_errf(err, errlen, "control socket path %s is empty or longer "
                "than %zu bytes", path != NULL ? path : "(null)",
                sizeof sa.sun_path - 1);
        return ZPF_EINVAL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);

    json_t *req = json_object();
    if (req == NULL ||
        json_object_set_new(req, "v", json_integer(ZPF_CTL_VERSION)) != 0 ||
        json_object_set_new(req, "cmd", json_string(cmd)) != 0 ||
        (args != NULL && json_object_set(req, "args", args) != 0)) {
        json_decref(req);
        zpf_errf(err, errlen, "out of memory");
        return ZPF_ENOMEM;
    }
    size_t reqlen = 0;
    char *line = dump_line(req, &reqlen);
    if (line == NULL) {
        zpf_errf(err, errlen, "cannot encode the request (out of memory?)");
        return ZPF_ENOMEM;
    }
    if (reqlen > ZPF_CTL_LINE_MAX) {
        zpf_errf(err, errlen, "request is %zu bytes; the limit is %d", reqlen,
                ZPF_CTL_LINE_MAX);
        free(line);
        return ZPF_E2BIG;
    }

    if (timeout_ms == 0)
        timeout_ms = ZPF_CTL_CALL_TIMEOUT_MS;
    uint64_t deadline = mono_ms() + timeout_ms;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        zpf_errf(err, errlen, "cannot create a socket: %s", strerror(errno));
        free(line);
        return ZPF_EIO;
    }
    char *buf = NULL;
    size_t buflen = 0;
    int rc = call_connect(fd, path, &sa, deadline, timeout_ms, err, errlen);
    if (rc == 0)
        rc = call_send(fd, path, line, reqlen, deadline, timeout_ms, err,
                       errlen);
    if (rc == 0)
        rc = call_recv(fd, path, deadline, timeout_ms, &buf, &buflen, err,
                       errlen);
    close(fd);
    free(line);
    if (rc != 0) {
        if (rc == ZPF_ENOMEM)
            zpf_errf(err, errlen, "out of memory reading the reply");
        return rc;
    }

    json_error_t je;
    json_t *r = json_loadb(buf, buflen, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    char why[128];
    const char *flaw = why;
    if (r == NULL)
        snprintf(why, sizeof why, "not JSON: column %d", je.column);
    else
        flaw = reply_flaw(r, why, sizeof why);
    if (flaw != NULL) {
        json_decref(r);
        zpf_errf(err, errlen, "zpfd at %s sent a reply that cannot be read "
                "(%s); is that socket really zpfd's, and of the same "
                "version?", path, flaw);
        return ZPF_EIO;
    }
    *reply = r;
    return 0;
}
