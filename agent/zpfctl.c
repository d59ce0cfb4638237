/*
 * zpfctl: the operator's command line tool for zpfd.
 *
 *     zpfctl [-s SOCKET] [-t SECONDS] [--json] COMMAND [ARGS]
 *
 * Each command is one function in a table of {name, fn, help}, in the
 * style of wireguard-tools' wg.  A command that needs the agent sends one
 * request over the control socket (docs/control.md: one JSON object per
 * line each way) and prints the result through zpfctl_fmt.c, which holds
 * every formatting decision so tests can pin it without a socket.
 *
 * The client is zpf_ctl_call() (control.h): blocking, one deadline for the
 * whole exchange, and a message saying what to do whenever the agent cannot
 * be reached or answers something that is not a control reply.
 *
 * Exit codes are an interface for scripts:
 *
 *   0  done
 *   1  the agent answered with an error ("zpfctl: <code>: <message>"), or
 *      zpfctl itself failed (out of memory, cannot write its output)
 *   2  usage: unknown command, bad or missing arguments
 *   3  the agent could not be reached, did not answer in time, or answered
 *      something that is not a control reply
 *
 * Data goes to stdout and nothing else does, so `zpfctl members --json | jq`
 * never sees a diagnostic.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "agent.h" /* ZPF_VERSION, and ZPF_DEFAULT_SOCKET via conf.h */
#include "zpf/error.h"
#include "control.h"
#include "zpfctl_fmt.h"

/* Default -t: long enough for a members reply of 10,000 nodes from a busy
 * agent, short enough that a hung agent does not hang a script. */
#define ZPFCTL_TIMEOUT_MS 10000

/* -t above a day is a typo, and keeps seconds * 1000 inside uint32_t. */
#define ZPFCTL_TIMEOUT_MAX_S 86400.0

/* Cluster keys are 32 bytes: the XChaCha20-Poly1305 key size. */
#define ZPFCTL_KEY_BYTES 32

/* Input bound for `keys install -`: a 44-character key with any amount of
 * reasonable whitespace around it fits many times over. */
#define ZPFCTL_KEY_INPUT_MAX 4096

/* Key ids are the first 4 bytes of a hash, printed as 8 hex digits. */
#define ZPFCTL_KEY_ID_LEN 8

/* Room for a message: a socket path (up to 107 bytes), the system's
 * reason and what to do about it. */
#define ZPFCTL_ERR_MAX 512

enum {
    ZPFCTL_EXIT_OK = 0,
    ZPFCTL_EXIT_REPLY = 1,
    ZPFCTL_EXIT_USAGE = 2,
    ZPFCTL_EXIT_UNREACHABLE = 3,
};

#define USAGE "zpfctl [-s SOCKET] [-t SECONDS] [--json] COMMAND [ARGS]"

struct zpfctl {
    const char *socket;
    uint32_t timeout_ms;
    bool json;
};

struct zpfctl_cmd {
    const char *name;
    int (*fn)(struct zpfctl *c, int argc, char **argv);
    const char *args;   /* after the name in usage lines */
    const char *help;   /* one line for the command list */
    const char *detail; /* more for `zpfctl help NAME`, or NULL */
};

static const struct zpfctl_cmd *find_cmd(const char *name);

/* --- messages ------------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("zpfctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* A usage error for cmd (NULL: the tool as a whole). */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int usage_error(const struct zpfctl_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("zpfctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "usage: zpfctl %s%s%s\n", cmd->name,
                *cmd->args ? " " : "", cmd->args);
    else
        fprintf(stderr, "usage: " USAGE "\n");
    fprintf(stderr, "run 'zpfctl help%s%s' for more\n", cmd ? " " : "",
            cmd ? cmd->name : "");
    return ZPFCTL_EXIT_USAGE;
}

/* Print text a formatter made, or say why the reply could not be shown. */
static int emit(int rc, char *text, size_t len, const char *err)
{
    if (rc < 0) {
        say("cannot show zpfd's reply: %s; are zpfctl and zpfd the same "
            "version?", err);
        return ZPFCTL_EXIT_UNREACHABLE;
    }
    fwrite(text, 1, len, stdout);
    free(text);
    return ZPFCTL_EXIT_OK;
}

/* --- the client ----------------------------------------------------------- */

/*
 * One request, one reply: connect to path, send {"v":1,"cmd":cmd,"args":
 * args} (args borrowed, may be NULL), read one line, check it is a control
 * reply.  0 with *reply a new reference to the whole reply (ok or error);
 * a negative code with a message saying what to do when the agent cannot
 * be reached, does not answer within timeout_ms, or answers garbage.
 */
static int ctl_call(const char *path, const char *cmd, json_t *args,
                    uint32_t timeout_ms, json_t **reply, char *err,
                    size_t errlen)
{
    json_t *r = NULL;
    int rc = zpf_ctl_call(path, cmd, args, timeout_ms, &r, err, errlen);
    if (rc < 0)
        return rc;
    /* zpf_ctl_call() checked it is a JSON object; check it is a reply. */
    char why[256];
    rc = zpf_ctlfmt_reply(r, NULL, NULL, NULL, why, sizeof why);
    if (rc >= 0) {
        *reply = r;
        return 0;
    }
    json_decref(r);
    char *clean = NULL;
    zpf_ctlfmt_clean(why, strlen(why), &clean);
    snprintf(err, errlen,
             "zpfd on %s sent a reply zpfctl cannot read (%s); is zpfd what "
             "listens there, and of the same version as zpfctl?",
             path, clean ? clean : "?");
    free(clean);
    return rc;
}

/*
 * Ask the agent and sort out the answer.  Returns an exit code; on
 * ZPFCTL_EXIT_OK *reply holds the reply (json_decref() it) and *result
 * points into it.  Errors are printed here.
 */
static int ask(struct zpfctl *c, const char *cmd, json_t *args,
               json_t **reply, const json_t **result)
{
    char err[ZPFCTL_ERR_MAX];
    json_t *r = NULL;
    int rc = ctl_call(c->socket, cmd, args, c->timeout_ms, &r, err,
                      sizeof err);
    if (rc < 0) {
        say("%s", err);
        return ZPFCTL_EXIT_UNREACHABLE;
    }
    const char *code = NULL, *message = NULL;
    rc = zpf_ctlfmt_reply(r, result, &code, &message, err, sizeof err);
    if (rc == 0) {
        *reply = r;
        return ZPFCTL_EXIT_OK;
    }
    /* ctl_call() already checked the envelope, so this is an error reply.
     * Its text came from the agent: clean it before the terminal sees it. */
    char *cc = NULL, *cm = NULL;
    zpf_ctlfmt_clean(code, strlen(code), &cc);
    zpf_ctlfmt_clean(message, strlen(message), &cm);
    say("%s: %s", cc ? cc : "?", cm ? cm : "?");
    free(cc);
    free(cm);
    json_decref(r);
    return ZPFCTL_EXIT_REPLY;
}

/* --- argument helpers ----------------------------------------------------- */

/* Reject anything left in argv (the command takes no more arguments). */
static int no_more(const struct zpfctl_cmd *cmd, int argc, char **argv)
{
    if (argc > 0)
        return usage_error(cmd, "%s: unexpected argument '%s'", cmd->name,
                           argv[0]);
    return ZPFCTL_EXIT_OK;
}

/* A command whose text output comes from one formatter. */
typedef int (*fmt_fn)(const json_t *result, char **out, size_t *outlen,
                      char *err, size_t errlen);

static int simple(struct zpfctl *c, const char *name, const char *request,
                  json_t *args, fmt_fn fmt, int argc, char **argv)
{
    int rc = no_more(find_cmd(name), argc, argv);
    if (rc != ZPFCTL_EXIT_OK)
        return rc;
    json_t *reply;
    const json_t *result;
    if ((rc = ask(c, request, args, &reply, &result)) != ZPFCTL_EXIT_OK)
        return rc;
    char err[ZPFCTL_ERR_MAX], *out = NULL;
    size_t len = 0;
    rc = c->json ? zpf_ctlfmt_json(result, &out, &len, err, sizeof err)
                 : fmt(result, &out, &len, err, sizeof err);
    json_decref(reply);
    return emit(rc, out, len, err);
}

/* --- commands ------------------------------------------------------------- */

static int cmd_status(struct zpfctl *c, int argc, char **argv)
{
    return simple(c, "status", "status", NULL, zpf_ctlfmt_status, argc,
                  argv);
}

static int cmd_metrics(struct zpfctl *c, int argc, char **argv)
{
    return simple(c, "metrics", "metrics", NULL, zpf_ctlfmt_metrics, argc,
                  argv);
}

static int cmd_leave(struct zpfctl *c, int argc, char **argv)
{
    return simple(c, "leave", "leave", NULL, zpf_ctlfmt_leave, argc, argv);
}

static int cmd_members(struct zpfctl *c, int argc, char **argv)
{
    const struct zpfctl_cmd *me = find_cmd("members");
    const char *state = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--state") == 0) {
            if (i + 1 >= argc)
                return usage_error(me, "members: --state needs a state");
            state = argv[++i];
        } else if (strncmp(argv[i], "--state=", 8) == 0) {
            state = argv[i] + 8;
        } else {
            return usage_error(me, "members: unexpected argument '%s'",
                               argv[i]);
        }
    }
    if (state != NULL && !zpf_ctlfmt_state_valid(state))
        return usage_error(me, "members: unknown state '%s'; use alive, "
                               "suspect, dead, left or stalled", state);

    json_t *reply;
    const json_t *result;
    int rc = ask(c, "members", NULL, &reply, &result);
    if (rc != ZPFCTL_EXIT_OK)
        return rc;
    char err[ZPFCTL_ERR_MAX], *out = NULL;
    size_t len = 0;
    if (!c->json) {
        rc = zpf_ctlfmt_members(result, state, &out, &len, err, sizeof err);
    } else if (state == NULL) {
        rc = zpf_ctlfmt_json(result, &out, &len, err, sizeof err);
    } else {
        json_t *some = NULL;
        rc = zpf_ctlfmt_members_filter(result, state, &some, err,
                                       sizeof err);
        if (rc == 0)
            rc = zpf_ctlfmt_json(some, &out, &len, err, sizeof err);
        json_decref(some);
    }
    json_decref(reply);
    return emit(rc, out, len, err);
}

static int cmd_keygen(struct zpfctl *c, int argc, char **argv)
{
    (void)c;
    int rc = no_more(find_cmd("keygen"), argc, argv);
    if (rc != ZPFCTL_EXIT_OK)
        return rc;
    if (sodium_init() < 0) {
        say("keygen: cannot initialise libsodium (no entropy source?)");
        return ZPFCTL_EXIT_REPLY;
    }
    unsigned char key[ZPFCTL_KEY_BYTES];
    char b64[sodium_base64_ENCODED_LEN(ZPFCTL_KEY_BYTES,
                                       sodium_base64_VARIANT_ORIGINAL)];
    randombytes_buf(key, sizeof key);
    sodium_bin2base64(b64, sizeof b64, key, sizeof key,
                      sodium_base64_VARIANT_ORIGINAL);
    printf("%s\n", b64);
    sodium_memzero(key, sizeof key);
    sodium_memzero(b64, sizeof b64);
    return ZPFCTL_EXIT_OK;
}

static int read_key_line(char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        char ch;
        ssize_t n = read(STDIN_FILENO, &ch, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            say("keys install: cannot read the key from standard input: %s",
                strerror(errno));
            return -1;
        }
        if (n == 0 || ch == '\n')
            break;
        if (len + 1 >= cap) {
            say("keys install: the key on standard input is over %zu "
                "bytes; give one key from 'zpfctl keygen'", cap - 1);
            return -1;
        }
        buf[len++] = ch;
    }
    buf[len] = '\0';
    return 0;
}

/* Read one line from stdin into buf (NUL-terminated); the key is secret, so
 * the caller wipes buf.  From a terminal, typing is not echoed. */
static int read_key_stdin(char *buf, size_t cap)
{
    struct termios saved, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty) {
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        fputs("zpfctl: key (base64, not shown): ", stderr);
    }
    int rc = read_key_line(buf, cap);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        fputc('\n', stderr);
    }
    return rc;
}

/* Trim surrounding whitespace and check for 32 bytes of standard base64.
 * Returns the start of the key inside s, or NULL. */
static char *check_key(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' ||
                     s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    unsigned char bin[ZPFCTL_KEY_BYTES + 1];
    size_t binlen = 0;
    const char *end = NULL;
    int rc = sodium_base642bin(bin, sizeof bin, s, n, NULL, &binlen, &end,
                               sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(bin, sizeof bin);
    if (rc != 0 || end != s + n || binlen != ZPFCTL_KEY_BYTES)
        return NULL;
    return s;
}

/* Key ids are sent in lower case, the way keys list prints them. */
static bool check_key_id(const char *id, char out[ZPFCTL_KEY_ID_LEN + 1])
{
    if (strlen(id) != ZPFCTL_KEY_ID_LEN)
        return false;
    for (size_t i = 0; i < ZPFCTL_KEY_ID_LEN; i++) {
        char ch = id[i];
        if (ch >= 'A' && ch <= 'F')
            ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return false;
        out[i] = ch;
    }
    out[ZPFCTL_KEY_ID_LEN] = '\0';
    return true;
}

static int keys_change(struct zpfctl *c, const char *request, json_t *args,
                       const char *what)
{
    json_t *reply;
    const json_t *result;
    int rc = ask(c, request, args, &reply, &result);
    if (rc != ZPFCTL_EXIT_OK)
        return rc;
    char err[ZPFCTL_ERR_MAX], *out = NULL;
    size_t len = 0;
    rc = c->json ? zpf_ctlfmt_json(result, &out, &len, err, sizeof err)
                 : zpf_ctlfmt_key_change(what, result, &out, &len, err,
                                         sizeof err);
    json_decref(reply);
    return emit(rc, out, len, err);
}

static int keys_install(struct zpfctl *c, const struct zpfctl_cmd *me,
                        int argc, char **argv)
{
    if (argc != 1)
        return usage_error(me, "keys install: give one KEY, or - to read "
                               "it from standard input");
    char buf[ZPFCTL_KEY_INPUT_MAX];
    int rc;
    if (strcmp(argv[0], "-") == 0) {
        if (read_key_stdin(buf, sizeof buf) < 0) {
            sodium_memzero(buf, sizeof buf);
            return ZPFCTL_EXIT_USAGE;
        }
    } else if (strlen(argv[0]) < sizeof buf) {
        strcpy(buf, argv[0]);
    } else {
        return usage_error(me, "keys install: the key is too long; give "
                               "one from 'zpfctl keygen'");
    }
    const char *key = check_key(buf);
    if (key == NULL) {
        sodium_memzero(buf, sizeof buf);
        /* Never echo the input: it may be a real key with a typo. */
        return usage_error(me, "keys install: a key is %d bytes in standard "
                               "base64 (44 characters ending in '='); make "
                               "one with 'zpfctl keygen'",
                           ZPFCTL_KEY_BYTES);
    }
    json_t *args = json_pack("{s:s}", "key", key);
    sodium_memzero(buf, sizeof buf);
    if (args == NULL) {
        say("out of memory");
        return ZPFCTL_EXIT_REPLY;
    }
    rc = keys_change(c, "keys.install", args, "installed key");
    json_decref(args);
    return rc;
}

static int cmd_keys(struct zpfctl *c, int argc, char **argv)
{
    const struct zpfctl_cmd *me = find_cmd("keys");
    const char *sub = argc > 0 ? argv[0] : "list";
    if (argc > 0) {
        argc--;
        argv++;
    }
    if (strcmp(sub, "list") == 0)
        return simple(c, "keys", "keys.list", NULL, zpf_ctlfmt_keys, argc,
                      argv);
    if (strcmp(sub, "install") == 0)
        return keys_install(c, me, argc, argv);

    const char *request, *what;
    if (strcmp(sub, "use") == 0) {
        request = "keys.use";
        what = "primary key is now";
    } else if (strcmp(sub, "remove") == 0) {
        request = "keys.remove";
        what = "removed key";
    } else {
        return usage_error(me, "keys: unknown subcommand '%s'", sub);
    }
    const char *arg = NULL;
    bool force = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0)
            force = true;
        else if (arg == NULL)
            arg = argv[i];
        else
            return usage_error(me, "keys %s: give one key ID", sub);
    }
    if (arg == NULL)
        return usage_error(me, "keys %s: give one key ID", sub);
    char id[ZPFCTL_KEY_ID_LEN + 1];
    if (!check_key_id(arg, id))
        return usage_error(me, "keys %s: a key ID is %d hex digits, as "
                               "'zpfctl keys list' shows",
                           sub, ZPFCTL_KEY_ID_LEN);
    json_t *args = force ? json_pack("{s:s, s:b}", "id", id, "force", 1)
                         : json_pack("{s:s}", "id", id);
    if (args == NULL) {
        say("out of memory");
        return ZPFCTL_EXIT_REPLY;
    }
    int rc = keys_change(c, request, args, what);
    json_decref(args);
    return rc;
}

static int cmd_help(struct zpfctl *c, int argc, char **argv);

static const struct zpfctl_cmd COMMANDS[] = {
    {"status", cmd_status, "", "show this agent's identity, health and "
     "member counts", NULL},
    {"members", cmd_members, "[--state STATE]",
     "list the members this agent knows",
     "Sorted by name; '*' marks this agent.  AGE is how long since the\n"
     "member's heartbeat counter last advanced.  STATE is one of alive,\n"
     "suspect, dead, left, stalled.  With --json, prints the members as\n"
     "received (filtered by --state if given).\n"},
    {"metrics", cmd_metrics, "", "print the agent's metrics (Prometheus "
     "text)", NULL},
    {"keys", cmd_keys, "[list | install KEY|- | use ID | remove ID]",
     "show or change the cluster keyring",
     "  keys [list]         the keys (ID, which one is primary), the\n"
     "                      keyring version and how many alive members\n"
     "                      have it\n"
     "  keys install KEY|-  add a key; '-' reads it from standard input\n"
     "                      so it stays out of ps and shell history:\n"
     "                          zpfctl keys install - < cluster.key\n"
     "  keys use ID [--force]\n"
     "                      make key ID the primary (packets are sealed\n"
     "                      with it from now on)\n"
     "  keys remove ID [--force]\n"
     "                      remove key ID; the primary cannot be removed\n"
     "\n"
     "Rotate a key by installing the new key on every agent, then 'use'\n"
     "it everywhere, then removing the old one.  zpfd refuses 'use' and\n"
     "'remove' (busy) until every alive member has the current keyring;\n"
     "--force goes ahead anyway and cuts off the members that lag.\n"
     "Changing keys needs root, zpfd's user or the admin group.\n"},
    {"keygen", cmd_keygen, "", "print a new random cluster key in base64 "
     "(needs no agent)", NULL},
    {"leave", cmd_leave, "", "make the agent leave the cluster and exit",
     "The agent tells the cluster it is leaving, so the others mark it\n"
     "left rather than dead, then exits.  Needs root, zpfd's user or the\n"
     "admin group.\n"},
    {"help", cmd_help, "[COMMAND]", "show this help, or a command's", NULL},
};
#define NCOMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static const struct zpfctl_cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(COMMANDS[i].name, name) == 0)
            return &COMMANDS[i];
    return NULL;
}

static void print_usage(FILE *f)
{
    fprintf(f,
            "usage: " USAGE "\n"
            "\n"
            "Talks to the local zpfd over its control socket.\n"
            "\n"
            "Options:\n"
            "  -s SOCKET    the control socket (default $ZPF_SOCKET, else "
            ZPF_DEFAULT_SOCKET ")\n"
            "  -t SECONDS   give up on the agent after this long (default "
            "%d)\n"
            "  --json       print the agent's reply as JSON, for scripts\n"
            "  -h, --help   this help\n"
            "  --version    zpfctl's version\n"
            "\n"
            "Commands:\n",
            ZPFCTL_TIMEOUT_MS / 1000);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct zpfctl_cmd *cmd = &COMMANDS[i];
        char head[64];
        snprintf(head, sizeof head, "%s%s%s", cmd->name,
                 *cmd->args ? " " : "", cmd->args);
        if (strlen(head) <= 18)
            fprintf(f, "  %-18s  %s\n", head, cmd->help);
        else
            fprintf(f, "  %s\n  %-18s  %s\n", head, "", cmd->help);
    }
    fprintf(f, "\n"
               "Exit status: 0 done, 1 the agent answered with an error, 2 "
               "usage error,\n"
               "3 the agent could not be reached or answered garbage.\n");
}

static void print_cmd_help(FILE *f, const struct zpfctl_cmd *cmd)
{
    fprintf(f, "usage: zpfctl %s%s%s\n\n%s.\n", cmd->name,
            *cmd->args ? " " : "", cmd->args, cmd->help);
    if (cmd->detail)
        fprintf(f, "\n%s", cmd->detail);
}

static int cmd_help(struct zpfctl *c, int argc, char **argv)
{
    (void)c;
    if (argc == 0) {
        print_usage(stdout);
        return ZPFCTL_EXIT_OK;
    }
    const struct zpfctl_cmd *cmd = find_cmd(argv[0]);
    if (cmd == NULL)
        return usage_error(NULL, "help: unknown command '%s'", argv[0]);
    if (argc > 1)
        return usage_error(find_cmd("help"), "help: one command at a time");
    print_cmd_help(stdout, cmd);
    return ZPFCTL_EXIT_OK;
}

/* --- main ----------------------------------------------------------------- */

static int parse_timeout(const char *s, uint32_t *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v <= 0 ||
        v > ZPFCTL_TIMEOUT_MAX_S)
        return -1;
    double m = ceil(v * 1000.0);
    *ms = m < 1 ? 1 : (uint32_t)m;
    return 0;
}

/* The value of option argv[*i] ("-s X", "-sX", "--socket X",
 * "--socket=X"), or NULL with a usage error printed. */
static const char *opt_value(int argc, char **argv, int *i, const char *s,
                             const char *l)
{
    const char *a = argv[*i];
    size_t ll = strlen(l);
    if (strcmp(a, s) == 0 || strcmp(a, l) == 0) {
        if (*i + 1 >= argc) {
            usage_error(NULL, "option %s needs a value", a);
            return NULL;
        }
        return argv[++*i];
    }
    if (strncmp(a, l, ll) == 0 && a[ll] == '=')
        return a + ll + 1;
    return a + strlen(s); /* "-sX" */
}

static bool is_opt(const char *a, const char *s, const char *l)
{
    size_t ll = strlen(l);
    return strncmp(a, s, strlen(s)) == 0 ||
           (strncmp(a, l, ll) == 0 && (a[ll] == '\0' || a[ll] == '='));
}

int main(int argc, char **argv)
{
    struct zpfctl c = {.socket = NULL, .timeout_ms = ZPFCTL_TIMEOUT_MS};
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "--json") == 0) {
            c.json = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_usage(stdout);
            return ZPFCTL_EXIT_OK;
        } else if (strcmp(a, "--version") == 0) {
            printf("zpfctl %s (control protocol %d)\n", ZPF_VERSION,
                   ZPF_CTLFMT_PROTOCOL_VERSION);
            return ZPFCTL_EXIT_OK;
        } else if (is_opt(a, "-s", "--socket")) {
            if ((c.socket = opt_value(argc, argv, &i, "-s", "--socket")) ==
                NULL)
                return ZPFCTL_EXIT_USAGE;
        } else if (is_opt(a, "-t", "--timeout")) {
            const char *v = opt_value(argc, argv, &i, "-t", "--timeout");
            if (v == NULL)
                return ZPFCTL_EXIT_USAGE;
            if (parse_timeout(v, &c.timeout_ms) < 0)
                return usage_error(NULL, "-t: '%s' is not a number of "
                                         "seconds above 0 and at most %.0f",
                                   v, ZPFCTL_TIMEOUT_MAX_S);
        } else {
            return usage_error(NULL, "unknown option '%s'", a);
        }
    }
    if (i >= argc)
        return usage_error(NULL, "no command given");

    if (c.socket == NULL) {
        const char *env = getenv("ZPF_SOCKET");
        c.socket = env && *env ? env : ZPF_DEFAULT_SOCKET;
    }
    struct sockaddr_un sa;
    if (*c.socket == '\0' || strlen(c.socket) >= sizeof sa.sun_path)
        return usage_error(NULL, "socket path '%s' must be 1 to %zu bytes",
                           c.socket, sizeof sa.sun_path - 1);

    const struct zpfctl_cmd *cmd = find_cmd(argv[i]);
    if (cmd == NULL)
        return usage_error(NULL, "unknown command '%s'", argv[i]);

    /* Options every command takes after its name: --json and --help.  The
     * rest is the command's own; "--" passes what follows untouched. */
    char **rest = calloc((size_t)(argc - i), sizeof *rest);
    if (rest == NULL) {
        say("out of memory");
        return ZPFCTL_EXIT_REPLY;
    }
    int nrest = 0;
    bool verbatim = false;
    for (int j = i + 1; j < argc; j++) {
        const char *a = argv[j];
        if (!verbatim && strcmp(a, "--") == 0) {
            verbatim = true;
        } else if (!verbatim && strcmp(a, "--json") == 0) {
            c.json = true;
        } else if (!verbatim &&
                   (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            free(rest);
            print_cmd_help(stdout, cmd);
            return ZPFCTL_EXIT_OK;
        } else {
            rest[nrest++] = argv[j];
        }
    }
    int rc = cmd->fn(&c, nrest, rest);
    free(rest);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        say("cannot write to standard output: %s", strerror(errno));
        if (rc == ZPFCTL_EXIT_OK)
            rc = ZPFCTL_EXIT_REPLY;
    }
    return rc;
}
