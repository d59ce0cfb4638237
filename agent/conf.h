/*
 * zpfd's configuration file: one YAML document, read once at start and
 * again on SIGHUP.
 *
 * zpf_conf_load() returns either a complete, validated struct zpf_conf or an
 * error message "FILE:LINE:COL: message" (1-based, pointing at the offending
 * YAML node) that says what is wrong and what to do.  There is no half-read
 * configuration: unknown keys, wrong types, out-of-range values, duplicate
 * keys and YAML syntax errors all fail the whole load, because an agent that
 * silently ignored a misspelt "probe_timout" would run with timings nobody
 * chose.
 *
 * The file has one mapping per section:
 *
 *     node:      who this host is (name, zone, provider, tags, data_dir)
 *     gossip:    cluster id, addresses, seeds, and every tunable of the core
 *     security:  the cluster keys (keyring file, inline keys, or insecure)
 *     control:   the control socket and who may use it
 *     health:    local health checks that gate the heartbeat counter
 *     log:       log level
 *     metrics:   Prometheus textfile output
 *
 * zpf.yaml.example documents every key with its default; zpf_conf_keys()
 * lists them at run time.
 *
 * Value syntax:
 *   durations  500ms, 1s, 2m, 1h, 1m30s (units ms, s, m, h, largest first,
 *              each at most once).  A bare number is an error ("add a
 *              unit"), except 0, which needs none.
 *   booleans   true or false (YAML 1.2: yes/no/on/off are not booleans).
 *   integers   decimal, range-checked.
 *   strings    any scalar; a mapping or list where a string belongs is an
 *              error, and so is a key with no value (remove the line to get
 *              the default; write "" for an empty string).  A section with
 *              no value is empty, and so is a list or mapping key with none
 *              (where an empty one is allowed).
 *   addresses  an IPv6 address in brackets must be quoted ('[::1]:7946'):
 *              unquoted, YAML reads a list.  The message says so.
 *   paths      relative paths (node.data_dir, security.keyring,
 *              control.socket, metrics.textfile) are resolved against the
 *              directory of the configuration file, so a config and its
 *              keyring can move together.
 *
 * Nothing here touches the network or the files a config names: whether
 * the keyring can be read, the socket directory exists or a seed resolves is
 * for zpfd to find out when it uses them.
 *
 * Thread-safety: every function is reentrant; there is no global state.
 */
#ifndef ZPF_CONF_H
#define ZPF_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zpf/error.h"
#include "zpf/gossip.h"

#define ZPF_DEFAULT_SOCKET "/run/zpf/zpf.sock"
#define ZPF_DEFAULT_DATA_DIR "/var/lib/zpf"
#define ZPF_DEFAULT_PORT 7946 /* Serf's LAN port: familiar to operators */

/* A configuration is a few KiB; anything this large is the wrong file, and
 * the bound keeps a hostile file from costing more than a moment to reject. */
#define ZPF_CONF_FILE_MAX (1024 * 1024)

/* Enough room for every message zpf_conf_* writes; shorter buffers get a
 * truncated (still NUL-terminated) message. */
#define ZPF_CONF_ERR_MAX 1024

#define ZPF_CONF_KEY_LEN 32 /* bytes of one cluster key */
/* Rotation needs at most the old, the new and the next key; 8 is what the
 * agent's store and keyring hold. */
#define ZPF_CONF_KEYS_MAX 8

/* A DNS name is at most 253 bytes; with the NUL and slack, 256.  A host
 * buffer of this size always fits what zpf_conf_split_hostport() accepts. */
#define ZPF_CONF_HOST_MAX 256

struct zpf_conf_tag {
    char *key;   /* 1..64 visible ASCII bytes */
    char *value; /* 0..256 bytes, no control characters */
};

/* A seed from gossip.join: a host name or IP literal (without brackets),
 * resolved by zpfd each time it tries to join. */
struct zpf_conf_peer {
    char *host;
    uint16_t port;
};

enum zpf_conf_transport {
    ZPF_CONF_UDP = 0, /* probes and gossip over UDP, push-pull over TCP */
    ZPF_CONF_TCP = 1  /* everything over TCP (networks that drop UDP) */
};

enum zpf_conf_check_kind {
    ZPF_CONF_CHECK_COMMAND = 1,
    ZPF_CONF_CHECK_TCP = 2,
    ZPF_CONF_CHECK_HTTP = 3
};

/* One entry of health.checks.  Exactly one kind; interval and timeout are
 * filled from health.interval / health.timeout when the entry has none, and
 * timeout < interval always holds. */
struct zpf_conf_check {
    char *name; /* unique among the checks, 1..64 visible ASCII bytes */
    enum zpf_conf_check_kind kind;
    /* COMMAND: argc strings and a NULL, as execvp() wants them; argv[0] is
     * absolute or a bare name looked up in PATH when the check runs. */
    char **argv;
    size_t argc;
    /* TCP: "host:port" as written; HTTP: the URL as written. */
    char *target;
    /* TCP and HTTP: the target's host (no brackets) and port (HTTP default
     * 80); HTTP only: the request path and query, starting with '/'. */
    char *host;
    uint16_t port;
    char *path;
    uint32_t interval_ms;
    uint32_t timeout_ms;
};

struct zpf_conf_node {
    char *name;        /* default: the host name up to its first dot */
    char *zone;        /* "" when unset, like provider and instance_id */
    char *provider;
    char *instance_id;
    struct zpf_conf_tag *tags; /* in file order, keys unique */
    size_t n_tags;
    char *data_dir;    /* absolute */
};

struct zpf_conf_gossip {
    char *cluster;
    struct zpf_addr bind;
    struct zpf_addr advertise; /* == bind unless set; never a wildcard */
    struct zpf_conf_peer *join;
    size_t n_join;
    enum zpf_conf_transport transport;
    bool tcp_fallback;          /* also probe over TCP when UDP fails */
    uint32_t leave_timeout_ms;  /* keep gossiping the leave this long */
    uint32_t join_retry_max_ms; /* backoff cap between join attempts */
};

struct zpf_conf_security {
    char *keyring;   /* absolute path, or NULL */
    uint8_t (*keys)[ZPF_CONF_KEY_LEN]; /* inline keys, first primary */
    size_t n_keys;
    /* Exactly one of: keyring != NULL, n_keys > 0, insecure. */
    bool insecure;
};

struct zpf_conf_control {
    char *socket;      /* absolute, fits a sockaddr_un */
    char *group;       /* "" or a group allowed to read (socket mode 0660) */
    char *admin_group; /* "" or a group allowed to make changes */
};

struct zpf_conf_health {
    uint32_t interval_ms; /* defaults for the checks */
    uint32_t timeout_ms;
    struct zpf_conf_check *checks;
    size_t n_checks;
};

struct zpf_conf_log {
    int level; /* a syslog(3) priority: LOG_DEBUG .. LOG_ERR */
};

struct zpf_conf_metrics {
    char *textfile; /* "" (off) or an absolute path */
    uint32_t interval_ms;
};

/*
 * A loaded configuration.  Every string and list is owned by the struct and
 * released by zpf_conf_free().  The sections' strings are never NULL
 * except security.keyring; a check's fields are set as its kind says.
 * The struct may be copied (the copy then owns what it points to, and only
 * one of the two may be freed).
 *
 * core is zpf_config_default() overridden by the gossip section, ready for
 * zpf_node_new() but for two things zpfd adds: core.incarnation (from its
 * store) and the seal's overhead, which zpfd subtracts from
 * core.packet_budget (the bytes allowed on the wire, 512..65000) unless
 * security.insecure.  core.name, core.cluster and core.addr point at / copy
 * node.name, gossip.cluster and gossip.advertise.
 */
struct zpf_conf {
    struct zpf_conf_node node;
    struct zpf_conf_gossip gossip;
    struct zpf_conf_security security;
    struct zpf_conf_control control;
    struct zpf_conf_health health;
    struct zpf_conf_log log;
    struct zpf_conf_metrics metrics;
    struct zpf_config core;
};

/*
 * Parse a YAML document held in memory.  buf (len bytes, need not be
 * NUL-terminated) is borrowed.  filename is used in messages, and relative
 * paths in the file are resolved against its directory (made absolute with
 * the working directory if filename is relative); NULL means "<config>" in
 * the working directory.
 *
 * Returns 0 and fills *out, or a negative code with err set to
 * "FILE:LINE:COL: message" (err may be NULL when errlen is 0):
 *   ZPF_EINVAL  the document is wrong (syntax, key, type, range, ...)
 *   ZPF_E2BIG   len > ZPF_CONF_FILE_MAX
 *   ZPF_ENOMEM  out of memory
 * On failure *out holds nothing to free (zpf_conf_free() on it is a no-op).
 * Inline key text never appears in a message, and libyaml's document copy
 * of it is wiped before the document is freed.
 */
int zpf_conf_parse(const char *buf, size_t len, const char *filename,
                   struct zpf_conf *out, char *err, size_t errlen);

/*
 * Read the file at path (at most ZPF_CONF_FILE_MAX bytes) and parse it as
 * zpf_conf_parse() does, with path as its filename.  In addition to its
 * codes, a file that cannot be opened or read gives ZPF_ENOENT, ZPF_EPERM,
 * ZPF_EIO or ZPF_ENOMEM with err "PATH: message".
 */
int zpf_conf_load(const char *path, struct zpf_conf *out, char *err,
                  size_t errlen);

/* Release everything c owns and zero it.  c may be NULL or already freed.
 * Key material is wiped. */
void zpf_conf_free(struct zpf_conf *c);

/*
 * Split "host:port", "[v6]:port", "host" or "[v6]" (port default_port;
 * default_port 0 means the port is required).  host is a DNS name (letters,
 * digits, '-', '.', '_', at most 253 bytes), an IPv4 literal, or, only in
 * brackets, an IPv6 literal; it is written without brackets and
 * NUL-terminated into host (cap bytes).  The port is 1..65535.
 * Returns 0, ZPF_EINVAL (malformed) or ZPF_ENOSPC (host does not fit cap;
 * ZPF_CONF_HOST_MAX always fits).
 */
int zpf_conf_split_hostport(const char *s, char *host, size_t cap,
                            uint16_t *port, uint16_t default_port);

/*
 * Parse a duration ("1m30s", "500ms", "0") into milliseconds.  Returns 0,
 * ZPF_EINVAL (syntax, including a bare number other than 0) or ZPF_E2BIG
 * (more than UINT64_MAX ms).
 */
int zpf_conf_duration(const char *s, uint64_t *ms);

/*
 * Read a keyring file: one base64 key (32 bytes, standard alphabet with
 * padding) per line, the first primary; '#' starts a comment, blank lines
 * and surrounding whitespace are ignored.  Up to max keys go into keys[].
 *
 * The file must be a regular file, at most 64 KiB, not writable by group or
 * others (they could plant a key and join the cluster) and not readable by
 * others (they could read the traffic); either is refused with ZPF_EPERM and
 * a message naming the chmod that fixes it, as ssh refuses a private key.
 *
 * Returns the number of keys (>= 1), or a negative code with err set to
 * "FILE:LINE: message" for a bad line or "FILE: message" otherwise:
 *   ZPF_EINVAL  a line is not a key, a key repeats, or there is no key
 *   ZPF_ELIMIT  more than max keys
 *   ZPF_EPERM   permissions as above, or the file may not be opened
 *   ZPF_ENOENT  no such file;   ZPF_EIO  read error or not a regular file
 *   ZPF_E2BIG   larger than 64 KiB
 * A message never contains key text.  The read buffer is wiped; on failure
 * keys[] is wiped too.
 */
int zpf_conf_read_keyring(const char *path, uint8_t (*keys)[ZPF_CONF_KEY_LEN],
                          size_t max, char *err, size_t errlen);

/*
 * For SIGHUP: the keys whose values differ between old and new, as a
 * comma-separated list of dotted names ("gossip.bind, control.socket")
 * written into out (truncated at a name boundary if cap is too small; ""
 * when none).  Returns how many differ, or ZPF_EINVAL if either is NULL.
 *
 * _fixed lists the keys that need a restart to take effect; _live lists
 * those zpfd applies in place: log.level, node.tags and everything under
 * health.  (The keyring file's contents can also change live, but that is
 * the file, not the configuration; security.keyring, the path, is fixed.)
 */
int zpf_conf_diff_fixed(const struct zpf_conf *old, const struct zpf_conf *new,
                        char *out, size_t cap);
int zpf_conf_diff_live(const struct zpf_conf *old, const struct zpf_conf *new,
                       char *out, size_t cap);

/* One key of the schema, for documentation and `zpfd --help-config`. */
struct zpf_conf_keyinfo {
    const char *section; /* "gossip", or "health.checks[]" for a check */
    const char *key;     /* "probe_interval" */
    const char *def;     /* default as written in YAML ("" for the empty
                          * string), or NULL if computed or required: the
                          * doc line says which */
    const char *doc;     /* one line: what it is for */
    bool live;           /* changes on SIGHUP without a restart */
    bool required;
};

/* The i-th key of the schema, i from 0: returns 0, or ZPF_ENOENT past the
 * last.  Strings are static. */
int zpf_conf_keys(size_t i, struct zpf_conf_keyinfo *out);

#endif
