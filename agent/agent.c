/*
 * zpfd's agent: the gossip core on a libuv loop.
 *
 * The core is pure; everything it needs from the world comes from here:
 *
 *   clock       uv_hrtime() in milliseconds (monotonic)
 *   randomness  libsodium
 *   send        net.c: sealed UDP datagrams, sealed TCP frames
 *   timer       one uv_timer re-armed at zpf_node_next_deadline() after
 *               every call into the core
 *
 * Around it the agent keeps what a restart must not lose in the store
 * (incarnation, boot epoch, last known members, keyring), runs the health
 * checks that gate the heartbeat counter, answers the control socket, and
 * spreads keyring changes.
 *
 * Keyring changes.  The keyring is one document (keys, primary) ranked by
 * (version, digest): two changes made at once may share a version, and the
 * digest orders them the same way everywhere.  A change made through
 * zpfctl takes a version above every version this agent has seen, is
 * persisted, and is advertised in the agent's member metadata (meta.h),
 * which the core gossips to everyone within seconds.  An agent that sees a
 * member advertise a higher rank asks that member for the document over a
 * sealed TCP frame, and adopts it: a pull, so it converges through loss,
 * partitions and restarts, and every member that has the new keyring
 * serves it.  The changing agent also pushes the document to a few random
 * members at once to save a round.  A member that missed a change of
 * primary cannot read its peers; when packets arrive under a key it lacks
 * it asks the sender, in its own primary, and is answered in that key.
 * Switching the primary or removing a key is refused while some alive
 * member has not caught up (unless forced): a member without the new
 * primary would stop hearing anyone.
 *
 * The key source (keyring file or inline keys) counts as an operator's
 * edit only when it differs from what zpfd last read from it or wrote to
 * it; an unchanged source that lags behind (inline keys are never
 * rewritten; a file rewrite may fail) never rolls the cluster back.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "control.h"
#include "health.h"
#include "log.h"
#include "meta.h"
#include "net.h"
#include "store.h"
#include "zpf/gossip.h"
#include "zpf/seal.h"

#define PERSIST_MS 30000        /* members saved this often when changed */
#define KEYRING_CHECK_MS 5000   /* look for a newer keyring this often */
#define KEYRING_PUSH 16         /* members told of a change at once */
#define KEYRING_HELP_MS 2000    /* at most one request a key we lack */
#define JOIN_FIRST_MS 1000      /* first join retry; doubles up to the cap */
#define DROP_LOG_BURST 5        /* drop log lines per cause per minute */
#define DROP_LOG_PER_MS 60000
#define SEEDS_MAX 64            /* addresses tried per join attempt */

enum { AMSG_KEYRING_REQ = 1, AMSG_KEYRING_DOC = 2 };
/* A keyring document: type, version (8), count, primary, the keys. */
#define DOC_MAX (11 + ZPF_KEYS_MAX * ZPF_KEY_LEN)

struct job;
typedef int (*job_fn)(struct job *j);

/* Work for the thread pool; run one at a time so the store sees one thread
 * at a time. */
struct job {
    uv_work_t req;
    struct job *next;
    struct zpf_agent *a;
    job_fn run;
    const char *what;
    int rc;
    char err[256];
    /* payload */
    uint64_t u64;
    struct zpf_store_member *members;
    size_t nmembers;
    uint8_t keys[ZPF_KEYS_MAX][ZPF_KEY_LEN];
    size_t nkeys, primary;
    char *path;
    char *text;
    size_t text_len;
    struct job **slot;  /* while queued: the agent's pointer to it */
    bool secret;        /* text holds keys: wipe it */
    bool keysrc;        /* a keyring file: on success, u64 is its digest */
    uint64_t digest;
};

struct resolve {
    uv_getaddrinfo_t req;
    struct zpf_agent *a;
    struct resolve *next, **pprev; /* pending lookups, cancelled at exit */
    uint16_t port;
};

struct zpf_agent {
    uv_loop_t *loop;
    char *conf_path;
    struct zpf_conf conf;
    struct zpf_log log;
    struct zpf_node *node;
    struct zpf_net *net;
    struct zpf_store *store;
    struct zpf_health *health;
    struct zpf_ctl_server *ctl;
    struct zpf_addr advertise;

    struct zpf_keyring keyring;
    uint64_t keyring_version;
    uint32_t keyring_digest;   /* of a->keyring; with the version, its rank */
    /* Digest of the configured key source (file or inline keys) as zpfd last
     * read or wrote it: only a source that differs from it is an operator's
     * edit; otherwise the store's keyring, newer, wins. */
    uint64_t keysrc;
    bool sealed;
    uint64_t keyring_asked_version; /* last version requested, and when */
    uint64_t keyring_asked_at;
    uint64_t keyring_help_at;  /* last request after an unknown key */
    struct zpf_meta meta;

    uv_timer_t core_timer, join_timer, persist_timer, metrics_timer,
        leave_timer;
    uv_signal_t sig_term, sig_int, sig_hup;

    /* joining; stored: members the store remembers, loaded at start, so a
     * restarted agent finds its cluster even when every seed is gone */
    struct zpf_addr stored[SEEDS_MAX / 2];
    size_t nstored;
    struct zpf_addr seeds[SEEDS_MAX];
    size_t nseeds;
    unsigned join_attempts;
    uint64_t join_backoff;
    int resolving;
    struct resolve *lookups;
    bool joined;

    /* persistence */
    struct job *jobs, **jobs_tail;
    bool job_running;
    bool members_dirty;
    uint64_t members_saved_at;
    struct job *members_job;     /* queued, not yet running */
    struct job *metrics_job;
    uint32_t saved_incarnation;
    uint64_t store_errors;
    struct zpf_ratelimit store_rl;

    struct zpf_ratelimit drop_rl[ZPF_NET_DROP_MAX];
    uint64_t started_ms;
    bool healthy;
    char failing_check[128];
    bool leaving, stopping, closed;
    int exit_code;
};

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static void close_all(struct zpf_agent *a);

/* --- the core's environment ----------------------------------------------- */

static uint64_t env_now(void *ctx)
{
    (void)ctx;
    return mono_ms();
}

static uint64_t env_rand(void *ctx)
{
    (void)ctx;
    uint64_t r;
    randombytes_buf(&r, sizeof r);
    return r;
}

static void env_send(void *ctx, const struct zpf_addr *to, const uint8_t *buf,
                     size_t len, enum zpf_channel ch)
{
    struct zpf_agent *a = ctx;
    if (a->net)
        zpf_net_send(a->net, ch == ZPF_CH_STREAM ? ZPF_NET_STREAM
                                                 : ZPF_NET_PACKET,
                     to, buf, len);
}

static void *env_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    if (n == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, n);
}

static void keyring_consider(struct zpf_agent *a, const char *name,
                             const struct zpf_addr *addr, const uint8_t *meta,
                             size_t meta_len);

static void env_notify(void *ctx, const struct zpf_event *ev)
{
    struct zpf_agent *a = ctx;
    const struct zpf_member_info *m = &ev->member;
    char addr[64], qname[2 * ZPF_NAME_MAX + 8];
    zpf_addr_format(&m->addr, addr, sizeof addr);
    zpf_log_quote(m->name, qname, sizeof qname);
    int level = ZPF_LOG_INFO;
    switch (ev->type) {
    case ZPF_EV_FAIL:
    case ZPF_EV_STALL: level = ZPF_LOG_WARNING; break;
    case ZPF_EV_SUSPECT:
    case ZPF_EV_UPDATE: level = ZPF_LOG_DEBUG; break;
    default: break;
    }
    zpf_log(&a->log, level, "member", "event=%s name=%s addr=%s inc=%" PRIu32
            " counter=%" PRIu64, zpf_event_name(ev->type), qname, addr,
            m->incarnation, m->counter);
    a->members_dirty = true;
    if (!m->is_self && (ev->type == ZPF_EV_JOIN || ev->type == ZPF_EV_UPDATE))
        keyring_consider(a, m->name, &m->addr, m->meta, m->meta_len);
}

/* Re-arm the core's timer; persist a new incarnation.  Call after every
 * call into the core. */
static void core_arm(struct zpf_agent *a);

static void core_timer_cb(uv_timer_t *t)
{
    struct zpf_agent *a = t->data;
    zpf_node_tick(a->node);
    core_arm(a);
}

/* --- jobs on the thread pool ---------------------------------------------- */

static void job_free(struct job *j)
{
    if (j->members)
        free(j->members);
    sodium_memzero(j->keys, sizeof j->keys);
    if (j->text && j->secret)
        sodium_memzero(j->text, j->text_len);
    free(j->path);
    free(j->text);
    free(j);
}

static void job_next(struct zpf_agent *a);
static struct job *job_new(struct zpf_agent *a, job_fn run, const char *what);
static void job_push(struct zpf_agent *a, struct job *j);
static int run_save_u64(struct job *j);

static void job_work_cb(uv_work_t *req)
{
    struct job *j = req->data;
    j->rc = j->run(j);
}

static void job_after_cb(uv_work_t *req, int status)
{
    struct job *j = req->data;
    struct zpf_agent *a = j->a;
    a->job_running = false;
    if (status == 0 && j->rc == 0 && j->keysrc) {
        /* The file now holds what the cluster uses. */
        a->keysrc = j->digest;
        if (a->store) {
            struct job *k = job_new(a, run_save_u64, "keyring source");
            if (k) {
                k->path = strdup("keyring_source");
                k->u64 = j->digest;
                if (k->path)
                    job_push(a, k);
                else
                    job_free(k);
            }
        }
    }
    if (status == 0 && j->rc < 0) {
        a->store_errors++;
        uint32_t suppressed = 0;
        if (zpf_ratelimit_allow(&a->store_rl, mono_ms(), 3, 60000,
                                &suppressed)) {
            char q[300];
            zpf_log(&a->log, ZPF_LOG_ERROR, "persisting failed",
                    "what=%s error=%s suppressed=%" PRIu32, j->what,
                    zpf_log_quote(j->err, q, sizeof q), suppressed);
        }
    }
    job_free(j);
    if (!a->stopping)
        job_next(a);
}

static void job_next(struct zpf_agent *a)
{
    if (a->job_running || a->jobs == NULL)
        return;
    struct job *j = a->jobs;
    a->jobs = j->next;
    if (a->jobs == NULL)
        a->jobs_tail = &a->jobs;
    if (j->slot) {
        *j->slot = NULL; /* running: no longer refreshed in place */
        j->slot = NULL;
    }
    a->job_running = true;
    j->req.data = j;
    if (uv_queue_work(a->loop, &j->req, job_work_cb, job_after_cb) < 0) {
        a->job_running = false;
        job_free(j);
        job_next(a);
    }
}

static struct job *job_new(struct zpf_agent *a, job_fn run, const char *what)
{
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->a = a;
    j->run = run;
    j->what = what;
    return j;
}

static void job_push(struct zpf_agent *a, struct job *j)
{
    *a->jobs_tail = j;
    a->jobs_tail = &j->next;
    job_next(a);
}

/* Queue j unless a job of its kind is still waiting in *slot; then that
 * one takes j's payload instead, so a slow disk gets the newest payload,
 * not a backlog of old ones. */
static void job_push_latest(struct zpf_agent *a, struct job **slot,
                            struct job *j)
{
    struct job *q = *slot;
    if (q == NULL) {
        j->slot = slot;
        *slot = j;
        job_push(a, j);
        return;
    }
    struct zpf_store_member *m = q->members;
    size_t n = q->nmembers, tl = q->text_len;
    char *t = q->text;
    q->members = j->members;
    q->nmembers = j->nmembers;
    q->text = j->text;
    q->text_len = j->text_len;
    j->members = m;
    j->nmembers = n;
    j->text = t;
    j->text_len = tl;
    job_free(j);
}

static int run_save_incarnation(struct job *j)
{
    return zpf_store_set_u64(j->a->store, "incarnation", j->u64, j->err,
                             sizeof j->err);
}

static int run_save_u64(struct job *j)
{
    return zpf_store_set_u64(j->a->store, j->path, j->u64, j->err,
                             sizeof j->err);
}

static int run_save_members(struct job *j)
{
    return zpf_store_save_members(j->a->store, j->members, j->nmembers,
                                  j->err, sizeof j->err);
}

static int run_save_keys(struct job *j)
{
    return zpf_store_save_keys(j->a->store, j->u64,
                               (const uint8_t(*)[ZPF_KEY_LEN])j->keys,
                               j->nkeys, j->primary, j->err, sizeof j->err);
}

/* Write a whole file atomically: a new temporary beside it (O_EXCL and
 * O_NOFOLLOW, so nothing planted at the name is followed or reused), fsync,
 * rename, fsync the directory so the rename survives a power cut. */
static int write_file_atomic(const char *path, const char *data, size_t len,
                             mode_t mode, char *err, size_t errlen)
{
    char tmp[4096], dir[4096];
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "%.200s: path too long", path);
        return ZPF_EINVAL;
    }
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = mkstemp(tmp); /* O_EXCL | O_CREAT, mode 0600 */
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create a file beside %.200s: %s", path,
                 strerror(e));
        return -e;
    }
    int e = 0;
    size_t off = 0;
    while (off < len && e == 0) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno != EINTR)
            e = errno;
        else if (n > 0)
            off += (size_t)n;
    }
    if (e == 0 && (fchmod(fd, mode) < 0 || fsync(fd) < 0))
        e = errno;
    if (close(fd) < 0 && e == 0)
        e = errno;
    if (e == 0 && rename(tmp, path) < 0)
        e = errno;
    if (e != 0) {
        snprintf(err, errlen, "cannot write %.200s: %s", path, strerror(e));
        unlink(tmp);
        return -e;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

static int run_write_file(struct job *j)
{
    return write_file_atomic(j->path, j->text, j->text_len, (mode_t)j->u64,
                             j->err, sizeof j->err);
}

/* --- persistence ---------------------------------------------------------- */

static void persist_incarnation(struct zpf_agent *a)
{
    uint32_t inc = zpf_node_incarnation(a->node);
    if (a->store == NULL || inc == a->saved_incarnation)
        return;
    struct job *j = job_new(a, run_save_incarnation, "incarnation");
    if (j == NULL)
        return;
    j->u64 = inc;
    a->saved_incarnation = inc;
    job_push(a, j);
}

static void core_arm(struct zpf_agent *a)
{
    if (a->node == NULL || a->closed)
        return;
    uint64_t due = zpf_node_next_deadline(a->node), now = mono_ms();
    uv_timer_start(&a->core_timer, core_timer_cb, due > now ? due - now : 0,
                   0);
    persist_incarnation(a);
}

/* A snapshot of the member table for the store. */
static struct zpf_store_member *members_snapshot(struct zpf_agent *a,
                                                 size_t *n)
{
    size_t cap = zpf_node_member_count(a->node), got = 0;
    struct zpf_store_member *out = calloc(cap ? cap : 1, sizeof *out);
    if (out == NULL)
        return NULL;
    uint64_t now_unix = (uint64_t)time(NULL) * 1000u;
    for (size_t i = 0; i < cap; i++) {
        struct zpf_member_info mi;
        if (zpf_node_member_get(a->node, i, &mi) < 0 || mi.is_self)
            continue;
        struct zpf_store_member *m = &out[got++];
        snprintf(m->name, sizeof m->name, "%s", mi.name);
        zpf_addr_format(&mi.addr, m->addr, sizeof m->addr);
        m->state = (uint8_t)mi.state;
        m->incarnation = mi.incarnation;
        m->seen_unix_ms = now_unix - mi.state_age_ms;
    }
    *n = got;
    return out;
}

/* At most one member list waits in the queue (job_push_latest). */
static void persist_members(struct zpf_agent *a)
{
    uint64_t now = mono_ms();
    if (a->store == NULL || !a->members_dirty ||
        now - a->members_saved_at < PERSIST_MS)
        return;
    size_t n;
    struct zpf_store_member *m = members_snapshot(a, &n);
    if (m == NULL)
        return;
    a->members_dirty = false;
    a->members_saved_at = now;
    struct job *j = job_new(a, run_save_members, "members");
    if (j == NULL) {
        free(m);
        return;
    }
    j->members = m;
    j->nmembers = n;
    job_push_latest(a, &a->members_job, j);
}

static void keyring_file_text(const struct zpf_keyring *kr, char *out,
                              size_t cap)
{
    size_t off = (size_t)snprintf(out, cap,
                                  "# zpf keyring, written by zpfd: one base64 "
                                  "key per line, the first is primary\n");
    for (uint32_t pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < kr->n && off < cap; i++) {
            if ((pass == 0) != (i == kr->primary))
                continue;
            char b64[64];
            zpf_key_encode(kr->keys[i].bytes, b64, sizeof b64);
            off += (size_t)snprintf(out + off, cap - off, "%s\n", b64);
            sodium_memzero(b64, sizeof b64);
        }
    }
}

static uint32_t keyring_digest(const struct zpf_keyring *kr);

static void persist_keyring(struct zpf_agent *a)
{
    if (a->store) {
        struct job *j = job_new(a, run_save_keys, "keyring");
        if (j) {
            j->u64 = a->keyring_version;
            j->nkeys = a->keyring.n;
            j->primary = a->keyring.primary;
            for (uint32_t i = 0; i < a->keyring.n; i++)
                memcpy(j->keys[i], a->keyring.keys[i].bytes, ZPF_KEY_LEN);
            job_push(a, j);
        }
    }
    /* The keyring file follows the cluster, so a restart (or a reload)
     * reads what the cluster uses, not the key it started with. */
    if (a->conf.security.keyring && a->conf.security.keyring[0]) {
        struct job *j = job_new(a, run_write_file, "keyring file");
        if (j == NULL)
            return;
        j->text = malloc(4096);
        j->path = strdup(a->conf.security.keyring);
        if (j->text == NULL || j->path == NULL) {
            job_free(j);
            return;
        }
        keyring_file_text(&a->keyring, j->text, 4096);
        j->text_len = strlen(j->text);
        j->u64 = 0600;
        j->secret = true;
        j->keysrc = true;
        j->digest = keyring_digest(&a->keyring);
        job_push(a, j);
    }
}

static void persist_timer_cb(uv_timer_t *t)
{
    struct zpf_agent *a = t->data;
    persist_members(a);
    /* Also the slow path of keyring convergence (a request may be lost). */
    size_t n = zpf_node_member_count(a->node);
    for (size_t i = 0; i < n; i++) {
        struct zpf_member_info mi;
        if (zpf_node_member_get(a->node, i, &mi) == 0 && !mi.is_self &&
            (mi.state == ZPF_STATE_ALIVE || mi.state == ZPF_STATE_STALLED))
            keyring_consider(a, mi.name, &mi.addr, mi.meta, mi.meta_len);
    }
}

/* --- metadata and the keyring --------------------------------------------- */

static int meta_publish(struct zpf_agent *a)
{
    uint8_t buf[ZPF_META_MAX];
    a->meta.keyring_version = a->keyring_version;
    a->meta.keyring_digest = a->keyring_digest;
    int n = zpf_meta_encode(&a->meta, buf, sizeof buf);
    if (n < 0)
        return n;
    if (a->node) {
        int rc = zpf_node_set_meta(a->node, buf, (size_t)n);
        core_arm(a);
        return rc;
    }
    return n;
}

static int meta_from_conf(struct zpf_agent *a, const struct zpf_conf *c,
                          char *err, size_t errlen)
{
    memset(&a->meta, 0, sizeof a->meta);
    snprintf(a->meta.zone, sizeof a->meta.zone, "%s", c->node.zone);
    snprintf(a->meta.provider, sizeof a->meta.provider, "%s", c->node.provider);
    snprintf(a->meta.instance_id, sizeof a->meta.instance_id, "%s",
             c->node.instance_id);
    if (c->node.n_tags > ZPF_META_TAGS_MAX) {
        snprintf(err, errlen, "node.tags: %zu tags, at most %d fit in the "
                 "gossiped metadata", c->node.n_tags, ZPF_META_TAGS_MAX);
        return ZPF_ELIMIT;
    }
    for (size_t i = 0; i < c->node.n_tags; i++) {
        struct zpf_meta_tag *t = &a->meta.tags[a->meta.ntags++];
        if (strlen(c->node.tags[i].key) >= sizeof t->key ||
            strlen(c->node.tags[i].value) >= sizeof t->value) {
            snprintf(err, errlen, "node.tags.%s: longer than %d bytes",
                     c->node.tags[i].key, ZPF_META_STR_MAX - 1);
            return ZPF_ELIMIT;
        }
        strcpy(t->key, c->node.tags[i].key);
        strcpy(t->value, c->node.tags[i].value);
    }
    uint8_t buf[ZPF_META_MAX];
    a->meta.keyring_version = UINT64_MAX; /* the largest it will ever be */
    a->meta.keyring_digest = UINT32_MAX;
    if (zpf_meta_encode(&a->meta, buf, sizeof buf) < 0) {
        snprintf(err, errlen, "node: zone, provider, instance_id and tags "
                 "together do not fit in %d bytes of gossiped metadata; "
                 "use fewer or shorter tags", ZPF_META_MAX);
        return ZPF_E2BIG;
    }
    a->meta.keyring_version = a->keyring_version;
    a->meta.keyring_digest = a->keyring_digest;
    return 0;
}

/* Versions above this are refused: one bad advertiser must not wrap every
 * later change around to 0. */
#define KEYRING_VERSION_MAX (UINT64_MAX / 2)

/* The same keys and primary give the same digest, in any order. */
static uint32_t keyring_digest(const struct zpf_keyring *kr)
{
    const struct zpf_key *p = zpf_keyring_primary(kr);
    if (p == NULL)
        return 0;
    uint32_t ids[ZPF_KEYS_MAX];
    const uint8_t *keys[ZPF_KEYS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < kr->n; i++) {
        /* Insertion sort by id: at most eight. */
        uint32_t j = n++;
        while (j > 0 && ids[j - 1] > kr->keys[i].id) {
            ids[j] = ids[j - 1];
            keys[j] = keys[j - 1];
            j--;
        }
        ids[j] = kr->keys[i].id;
        keys[j] = kr->keys[i].bytes;
    }
    crypto_generichash_state st;
    uint8_t out[16];
    crypto_generichash_init(&st, NULL, 0, sizeof out);
    crypto_generichash_update(&st, p->bytes, ZPF_KEY_LEN);
    for (uint32_t i = 0; i < n; i++)
        crypto_generichash_update(&st, keys[i], ZPF_KEY_LEN);
    crypto_generichash_final(&st, out, sizeof out);
    sodium_memzero(&st, sizeof st);
    return (uint32_t)out[0] << 24 | (uint32_t)out[1] << 16 |
           (uint32_t)out[2] << 8 | out[3];
}

/* Keyrings are ranked by (version, digest), the same way on every node. */
static bool keyring_above(uint64_t v1, uint32_t d1, uint64_t v2, uint32_t d2)
{
    return v1 > v2 || (v1 == v2 && d1 > d2);
}

/* The keyring as a document: version (8, BE), count, primary, keys. */
static size_t keyring_doc(const struct zpf_keyring *kr, uint64_t version,
                          uint8_t *out)
{
    out[0] = AMSG_KEYRING_DOC;
    for (int i = 0; i < 8; i++)
        out[1 + i] = (uint8_t)(version >> (56 - 8 * i));
    out[9] = (uint8_t)kr->n;
    out[10] = (uint8_t)kr->primary;
    for (uint32_t i = 0; i < kr->n; i++)
        memcpy(out + 11 + i * ZPF_KEY_LEN, kr->keys[i].bytes, ZPF_KEY_LEN);
    return 11 + kr->n * ZPF_KEY_LEN;
}

static int keyring_parse(const uint8_t *buf, size_t len,
                         struct zpf_keyring *kr, uint64_t *version)
{
    if (len < 11 || buf[9] == 0 || buf[9] > ZPF_KEYS_MAX ||
        buf[10] >= buf[9] || len != 11 + (size_t)buf[9] * ZPF_KEY_LEN)
        return ZPF_EINVAL;
    *version = 0;
    for (int i = 0; i < 8; i++)
        *version = *version << 8 | buf[1 + i];
    zpf_keyring_init(kr);
    for (unsigned i = 0; i < buf[9]; i++)
        if (zpf_keyring_add(kr, buf + 11 + i * ZPF_KEY_LEN) < 0)
            return ZPF_EINVAL; /* duplicate */
    return zpf_keyring_use(kr, zpf_key_id(buf + 11 + buf[10] * ZPF_KEY_LEN));
}

static void key_hex(uint32_t id, char out[9])
{
    snprintf(out, 9, "%08" PRIx32, id);
}

/* Adopt a keyring: in memory (the transport reads it on every packet),
 * in the metadata, on disk. */
static void keyring_adopt(struct zpf_agent *a, const struct zpf_keyring *kr,
                          uint64_t version, const char *why)
{
    a->keyring = *kr;
    a->keyring_version = version;
    a->keyring_digest = keyring_digest(kr);
    char id[9];
    key_hex(zpf_keyring_primary(kr)->id, id);
    zpf_log(&a->log, ZPF_LOG_NOTICE, "keyring changed",
            "version=%" PRIu64 " keys=%" PRIu32 " primary=%s source=%s",
            version, kr->n, id, why);
    persist_keyring(a);
    meta_publish(a);
}

/* key_id: seal with this key (0: the primary). */
static void keyring_send(struct zpf_agent *a, const struct zpf_addr *to,
                         uint32_t key_id)
{
    uint8_t doc[DOC_MAX];
    size_t n = keyring_doc(&a->keyring, a->keyring_version, doc);
    zpf_net_send_key(a->net, ZPF_NET_AGENT, to, doc, n, key_id);
    sodium_memzero(doc, sizeof doc);
}

/* A member advertised its metadata: fetch its keyring if newer. */
static void keyring_consider(struct zpf_agent *a, const char *name,
                             const struct zpf_addr *addr, const uint8_t *meta,
                             size_t meta_len)
{
    (void)name;
    struct zpf_meta m;
    if (!a->sealed || zpf_meta_decode(meta, meta_len, &m) < 0 ||
        !keyring_above(m.keyring_version, m.keyring_digest,
                       a->keyring_version, a->keyring_digest))
        return;
    uint64_t now = mono_ms();
    if (m.keyring_version == a->keyring_asked_version &&
        now - a->keyring_asked_at < 2000)
        return; /* asked someone a moment ago */
    a->keyring_asked_version = m.keyring_version;
    a->keyring_asked_at = now;
    uint8_t req = AMSG_KEYRING_REQ;
    zpf_net_send(a->net, ZPF_NET_AGENT, addr, &req, 1);
}

static void on_agent_msg(struct zpf_agent *a, const struct zpf_addr *from,
                         const uint8_t *buf, size_t len)
{
    if (len == 0 || !a->sealed)
        return;
    if (buf[0] == AMSG_KEYRING_REQ) {
        /* Answer in the key the request came in: a member that missed a
         * change of primary while it was away holds only an older key. */
        keyring_send(a, from, zpf_net_opened_key(a->net));
        return;
    }
    if (buf[0] != AMSG_KEYRING_DOC)
        return;
    struct zpf_keyring kr;
    uint64_t version;
    if (keyring_parse(buf, len, &kr, &version) < 0) {
        sodium_memzero(&kr, sizeof kr);
        char s[64];
        zpf_addr_format(from, s, sizeof s);
        zpf_log(&a->log, ZPF_LOG_WARNING, "malformed keyring document",
                "from=%s", s);
        return;
    }
    if (version <= KEYRING_VERSION_MAX &&
        keyring_above(version, keyring_digest(&kr), a->keyring_version,
                      a->keyring_digest))
        keyring_adopt(a, &kr, version, "cluster");
    sodium_memzero(&kr, sizeof kr);
}

/* The highest keyring version any member advertises, and how many alive
 * members advertise ours. */
static uint64_t keyring_survey(struct zpf_agent *a, size_t *alive,
                               size_t *current)
{
    uint64_t top = a->keyring_version;
    size_t n = zpf_node_member_count(a->node);
    *alive = *current = 0;
    for (size_t i = 0; i < n; i++) {
        struct zpf_member_info mi;
        struct zpf_meta m;
        if (zpf_node_member_get(a->node, i, &mi) < 0 ||
            (mi.state != ZPF_STATE_ALIVE && mi.state != ZPF_STATE_SUSPECT &&
             mi.state != ZPF_STATE_STALLED))
            continue;
        (*alive)++;
        if (mi.is_self) {
            (*current)++;
            continue;
        }
        if (zpf_meta_decode(mi.meta, mi.meta_len, &m) < 0)
            continue;
        if (m.keyring_version == a->keyring_version &&
            m.keyring_digest == a->keyring_digest)
            (*current)++;
        if (m.keyring_version > top && m.keyring_version <= KEYRING_VERSION_MAX)
            top = m.keyring_version;
    }
    return top;
}

/* A change made here: a version above everything seen, then push it. */
static void keyring_change(struct zpf_agent *a, const struct zpf_keyring *kr)
{
    size_t alive, current;
    uint64_t top = keyring_survey(a, &alive, &current);
    keyring_adopt(a, kr, top < KEYRING_VERSION_MAX ? top + 1 : top, "local");
    uint32_t targets[KEYRING_PUSH];
    size_t nt = 0, n = zpf_node_member_count(a->node);
    for (size_t i = 0; i < n; i++) {
        struct zpf_member_info mi;
        if (zpf_node_member_get(a->node, i, &mi) < 0 || mi.is_self ||
            mi.state != ZPF_STATE_ALIVE)
            continue;
        /* Reservoir sample: KEYRING_PUSH random alive members. */
        if (nt < KEYRING_PUSH)
            targets[nt++] = (uint32_t)i;
        else {
            uint32_t r = randombytes_uniform((uint32_t)(i + 1));
            if (r < KEYRING_PUSH)
                targets[r] = (uint32_t)i;
        }
    }
    for (size_t k = 0; k < nt; k++) {
        struct zpf_member_info mi;
        if (zpf_node_member_get(a->node, targets[k], &mi) == 0)
            keyring_send(a, &mi.addr, 0);
    }
}

/* --- joining -------------------------------------------------------------- */

static bool has_peers(const struct zpf_agent *a)
{
    return zpf_node_stats(a->node)->members_alive > 1;
}

static void join_schedule(struct zpf_agent *a);

static void join_try_seeds(struct zpf_agent *a)
{
    if (a->nseeds == 0)
        return;
    int rc = zpf_node_join(a->node, a->seeds, a->nseeds);
    core_arm(a);
    zpf_log(&a->log, ZPF_LOG_DEBUG, "join attempt",
            "attempt=%u addresses=%zu rc=%d", a->join_attempts, a->nseeds,
            rc);
    a->nseeds = 0;
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct resolve *r = req->data;
    struct zpf_agent *a = r->a;
    a->resolving--;
    *r->pprev = r->next;
    if (r->next)
        r->next->pprev = r->pprev;
    if (status == 0 && !a->stopping) {
        for (struct addrinfo *ai = res; ai && a->nseeds < SEEDS_MAX;
             ai = ai->ai_next) {
            struct zpf_addr ad;
            if (zpf_addr_from_sockaddr(ai->ai_addr, &ad) < 0)
                continue;
            ad.port = r->port;
            if (zpf_addr_equal(&ad, &a->advertise))
                continue;
            a->seeds[a->nseeds++] = ad;
        }
    } else if (status < 0 && status != UV_ECANCELED &&
               status != UV_EAI_CANCELED) {
        char q[128];
        zpf_log(&a->log, ZPF_LOG_WARNING, "cannot resolve join address",
                "error=%s", zpf_log_quote(uv_strerror(status), q, sizeof q));
    }
    uv_freeaddrinfo(res);
    free(r);
    if (a->resolving == 0 && !a->stopping)
        join_try_seeds(a);
}

static int store_member_seed(void *ctx, const struct zpf_store_member *m)
{
    struct zpf_agent *a = ctx;
    struct zpf_addr ad;
    if (a->nstored >= SEEDS_MAX / 2)
        return 1;
    if ((m->state == ZPF_STATE_ALIVE || m->state == ZPF_STATE_SUSPECT ||
         m->state == ZPF_STATE_STALLED) &&
        zpf_addr_parse(m->addr, &ad) == 0 &&
        !zpf_addr_equal(&ad, &a->advertise))
        a->stored[a->nstored++] = ad;
    return 0;
}

static void join_attempt(struct zpf_agent *a)
{
    a->join_attempts++;
    a->nseeds = 0;
    for (size_t i = 0; i < a->nstored; i++)
        a->seeds[a->nseeds++] = a->stored[i];
    for (size_t i = 0; i < a->conf.gossip.n_join; i++) {
        const char *host = a->conf.gossip.join[i].host;
        uint16_t port = a->conf.gossip.join[i].port;
        struct zpf_addr lit;
        char lits[300];
        snprintf(lits, sizeof lits, strchr(host, ':') ? "[%s]:%u" : "%s:%u",
                 host, port);
        if (zpf_addr_parse(lits, &lit) == 0) {
            if (a->nseeds < SEEDS_MAX && !zpf_addr_equal(&lit, &a->advertise))
                a->seeds[a->nseeds++] = lit;
            continue;
        }
        /* A host name: resolved anew on every attempt, off the loop. */
        struct resolve *r = calloc(1, sizeof *r);
        if (r == NULL)
            continue;
        r->a = a;
        r->port = port;
        r->req.data = r;
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_DGRAM};
        if (uv_getaddrinfo(a->loop, &r->req, resolve_cb, host, NULL,
                           &hints) < 0) {
            free(r);
            continue;
        }
        r->next = a->lookups;
        r->pprev = &a->lookups;
        if (a->lookups)
            a->lookups->pprev = &r->next;
        a->lookups = r;
        a->resolving++;
    }
    if (a->resolving == 0)
        join_try_seeds(a);
}

static void join_timer_cb(uv_timer_t *t)
{
    struct zpf_agent *a = t->data;
    if (a->stopping)
        return;
    if (has_peers(a)) {
        if (!a->joined)
            zpf_log(&a->log, ZPF_LOG_NOTICE, "joined the cluster",
                    "members=%" PRIu32 " attempts=%u",
                    zpf_node_stats(a->node)->members_alive, a->join_attempts);
        a->joined = true;
        return;
    }
    if (a->resolving == 0)
        join_attempt(a);
    join_schedule(a);
}

/* Retry with exponential backoff and jitter until someone answers. */
static void join_schedule(struct zpf_agent *a)
{
    uint64_t cap = a->conf.gossip.join_retry_max_ms;
    uint64_t d = a->join_backoff ? a->join_backoff : JOIN_FIRST_MS;
    a->join_backoff = d * 2 > cap ? cap : d * 2;
    /* +-20 %: agents started together do not retry together. */
    uint64_t jitter = d / 5;
    if (jitter)
        d = d - jitter + randombytes_uniform((uint32_t)(2 * jitter));
    /* Look for an answer soon; the next attempt waits for the backoff. */
    uv_timer_start(&a->join_timer, join_timer_cb, d, 0);
}

/* --- health --------------------------------------------------------------- */

static void health_cb(void *ctx, bool healthy, const char *check,
                      const char *reason)
{
    struct zpf_agent *a = ctx;
    char qc[256], qr[600];
    a->healthy = healthy;
    snprintf(a->failing_check, sizeof a->failing_check, "%s",
             healthy || check == NULL ? "" : check);
    if (healthy)
        zpf_log(&a->log, ZPF_LOG_NOTICE, "health checks pass", NULL);
    else
        zpf_log(&a->log, ZPF_LOG_WARNING, "health check failing",
                "check=%s reason=%s heartbeat=stopped",
                zpf_log_quote(check ? check : "", qc, sizeof qc),
                zpf_log_quote(reason ? reason : "", qr, sizeof qr));
    zpf_node_set_health(a->node, healthy);
    core_arm(a);
}

static int health_start(struct zpf_agent *a, const struct zpf_conf *c)
{
    size_t n = c->health.n_checks;
    struct zpf_check_spec *specs = calloc(n ? n : 1, sizeof *specs);
    if (specs == NULL)
        return ZPF_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct zpf_conf_check *k = &c->health.checks[i];
        specs[i] = (struct zpf_check_spec){
            .name = k->name,
            .kind = k->kind == ZPF_CONF_CHECK_COMMAND ? ZPF_CHECK_COMMAND
                    : k->kind == ZPF_CONF_CHECK_TCP   ? ZPF_CHECK_TCP
                                                      : ZPF_CHECK_HTTP,
            .argv = k->argv,
            .target = k->target,
            .interval_ms = k->interval_ms,
            .timeout_ms = k->timeout_ms,
        };
    }
    a->healthy = true;
    a->failing_check[0] = '\0';
    int rc = zpf_health_start(a->loop, specs, n, health_cb, a, &a->health);
    free(specs);
    return rc;
}

/* --- transport callbacks -------------------------------------------------- */

static void net_recv_cb(void *ctx, enum zpf_net_kind kind,
                        const struct zpf_addr *from, const uint8_t *buf,
                        size_t len)
{
    struct zpf_agent *a = ctx;
    if (a->node == NULL || a->closed)
        return;
    if (kind == ZPF_NET_AGENT) {
        on_agent_msg(a, from, buf, len);
        return;
    }
    (void)zpf_node_receive(a->node, from, buf, len,
                           kind == ZPF_NET_STREAM ? ZPF_CH_STREAM
                                                  : ZPF_CH_PACKET);
    core_arm(a);
}

static void net_drop_cb(void *ctx, enum zpf_net_drop why, int err,
                        const struct zpf_addr *peer)
{
    struct zpf_agent *a = ctx;
    uint32_t suppressed = 0;
    /* A peer seals with a key we lack: perhaps we missed a change of
     * primary while away.  Ask it, in our own primary, which it may still
     * hold; it answers in that key (on_agent_msg). */
    uint64_t now = mono_ms();
    if (why == ZPF_NET_DROP_NOKEY && peer && a->sealed && a->net &&
        now - a->keyring_help_at >= KEYRING_HELP_MS) {
        a->keyring_help_at = now;
        uint8_t req = AMSG_KEYRING_REQ;
        zpf_net_send(a->net, ZPF_NET_AGENT, peer, &req, 1);
    }
    if (why >= ZPF_NET_DROP_MAX ||
        !zpf_ratelimit_allow(&a->drop_rl[why], mono_ms(), DROP_LOG_BURST,
                             DROP_LOG_PER_MS, &suppressed))
        return;
    char s[64] = "-";
    if (peer)
        zpf_addr_format(peer, s, sizeof s);
    /* A frame for a peer that does not answer is normal while it is being
     * found dead; the rest means someone sends what we cannot open. */
    const char *ename = zpf_err_name(err);
    if (strcmp(ename, "UNKNOWN") == 0)
        ename = uv_err_name(err);
    zpf_log(&a->log, why == ZPF_NET_DROP_QUEUE ? ZPF_LOG_DEBUG
                                               : ZPF_LOG_WARNING,
            why == ZPF_NET_DROP_QUEUE ? "frame not sent" : "dropped input",
            "cause=%s error=%s peer=%s suppressed=%" PRIu32,
            zpf_net_drop_name(why), ename, s, suppressed);
}

/* --- metrics -------------------------------------------------------------- */

struct buf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void bprintf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void bprintf(struct buf *b, const char *fmt, ...)
{
    for (int pass = 0; pass < 2 && !b->oom; pass++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL,
                          b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->p && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void metric(struct buf *b, const char *name, const char *type,
                   const char *help, uint64_t v)
{
    bprintf(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help,
            name, type, name, v);
}

static const char *const cause_names[16] = {
    "none",   "ETRUNC", "EMSGPACK", "EVERSION", "ECLUSTER", "ETYPE",
    "EFIELD", "ELIMIT", "EADDR",    "ESELF",    "ENOTME",   "ELEAVING",
    "c12",    "c13",    "c14",      "other"};

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

static char *metrics_text(struct zpf_agent *a, size_t *len)
{
    struct buf b = {0};
    const struct zpf_stats *s = zpf_node_stats(a->node);
    size_t by_state[5] = {0}, n = zpf_node_member_count(a->node);
    for (size_t i = 0; i < n; i++) {
        struct zpf_member_info mi;
        if (zpf_node_member_get(a->node, i, &mi) == 0 && mi.state < 5)
            by_state[mi.state]++;
    }
    bprintf(&b, "# HELP zpf_members Members by state, self included.\n"
                "# TYPE zpf_members gauge\n");
    for (int st = 0; st < 5; st++)
        bprintf(&b, "zpf_members{state=\"%s\"} %zu\n",
                zpf_state_name((enum zpf_state)st), by_state[st]);
    bprintf(&b, "# HELP zpf_gossip_packets_total Datagrams through the core.\n"
                "# TYPE zpf_gossip_packets_total counter\n"
                "zpf_gossip_packets_total{dir=\"in\"} %" PRIu64 "\n"
                "zpf_gossip_packets_total{dir=\"out\"} %" PRIu64 "\n",
            s->packets_in, s->packets_out);
    bprintf(&b, "# HELP zpf_gossip_frames_total Stream frames through the "
                "core.\n# TYPE zpf_gossip_frames_total counter\n"
                "zpf_gossip_frames_total{dir=\"in\"} %" PRIu64 "\n"
                "zpf_gossip_frames_total{dir=\"out\"} %" PRIu64 "\n",
            s->frames_in, s->frames_out);
    bprintf(&b, "# HELP zpf_gossip_decode_errors_total Packets the core "
                "dropped, by cause.\n"
                "# TYPE zpf_gossip_decode_errors_total counter\n");
    for (int i = 1; i < 16; i++)
        if (s->decode_error_by_cause[i] && i != 4) /* ECLUSTER: below */
            bprintf(&b, "zpf_gossip_decode_errors_total{cause=\"%s\"} %" PRIu64
                        "\n", cause_names[i], s->decode_error_by_cause[i]);
    bprintf(&b, "zpf_gossip_decode_errors_total{cause=\"ECLUSTER\"} %" PRIu64
                "\n", s->foreign_cluster);
    metric(&b, "zpf_probes_total", "counter", "Direct probes sent.",
           s->probes);
    metric(&b, "zpf_probes_failed_total", "counter",
           "Probes that got no ack in their period.", s->probes_failed);
    metric(&b, "zpf_indirect_probes_total", "counter",
           "Indirect probe requests sent.", s->indirect_probes);
    metric(&b, "zpf_nacks_received_total", "counter", "Nacks received.",
           s->nacks_received);
    metric(&b, "zpf_suspicions_raised_total", "counter",
           "Suspicions raised by this agent's own probes.",
           s->suspicions_raised);
    metric(&b, "zpf_suspicions_refuted_total", "counter",
           "Suspects seen alive again.", s->suspicions_refuted);
    metric(&b, "zpf_self_refutations_total", "counter",
           "Rumours about this agent it refuted.", s->self_refutations);
    metric(&b, "zpf_deaths_declared_total", "counter",
           "Members this agent declared dead.", s->deaths_declared);
    metric(&b, "zpf_deaths_deferred_total", "counter",
           "Suspicion timeouts deferred by a moving heartbeat counter.",
           s->deaths_deferred);
    metric(&b, "zpf_stalls_declared_total", "counter",
           "Members this agent saw stall.", s->stalls_declared);
    metric(&b, "zpf_push_pulls_total", "counter", "Full state exchanges.",
           s->push_pulls);
    metric(&b, "zpf_pauses_total", "counter",
           "Times the agent noticed it had been paused.", s->pauses);
    metric(&b, "zpf_awareness", "gauge",
           "Lifeguard local health (0 is healthy).", s->awareness);
    metric(&b, "zpf_incarnation", "gauge", "This agent's incarnation.",
           zpf_node_incarnation(a->node));
    metric(&b, "zpf_heartbeat_counter", "gauge",
           "This agent's heartbeat counter.", zpf_node_counter(a->node));
    metric(&b, "zpf_health_passing", "gauge",
           "1 while every local health check passes.", a->healthy);
    metric(&b, "zpf_core_memory_bytes", "gauge",
           "Heap held by the gossip core.", zpf_node_memory(a->node));
    metric(&b, "zpf_resident_memory_bytes", "gauge",
           "Resident set size of zpfd.", (uint64_t)rss_bytes());
    metric(&b, "zpf_uptime_seconds", "gauge", "Seconds since start.",
           (mono_ms() - a->started_ms) / 1000);
    metric(&b, "zpf_keyring_version", "gauge", "Version of the keyring.",
           a->keyring_version);
    metric(&b, "zpf_store_errors_total", "counter",
           "Failed writes to the store or files.", a->store_errors);
    if (a->net) {
        const struct zpf_net_stats *ns = zpf_net_stats(a->net);
        bprintf(&b, "# HELP zpf_net_dropped_total Inputs dropped by the "
                    "transport, by cause.\n"
                    "# TYPE zpf_net_dropped_total counter\n");
        for (int i = 0; i < ZPF_NET_DROP_MAX; i++)
            bprintf(&b, "zpf_net_dropped_total{cause=\"%s\"} %" PRIu64 "\n",
                    zpf_net_drop_name((enum zpf_net_drop)i), ns->drops[i]);
        bprintf(&b, "# HELP zpf_net_bytes_total Bytes on the wire, sealed.\n"
                    "# TYPE zpf_net_bytes_total counter\n"
                    "zpf_net_bytes_total{dir=\"in\"} %" PRIu64 "\n"
                    "zpf_net_bytes_total{dir=\"out\"} %" PRIu64 "\n",
                ns->bytes_in, ns->bytes_out);
        metric(&b, "zpf_net_tcp_connections", "gauge",
               "Open TCP connections.", ns->tcp_open);
        metric(&b, "zpf_net_send_errors_total", "counter",
               "Sends the kernel refused.", ns->send_errors);
    }
    if (a->ctl) {
        struct zpf_ctl_stats cs;
        zpf_ctl_server_stats(a->ctl, &cs);
        metric(&b, "zpf_control_requests_total", "counter",
               "Control requests answered.", cs.requests);
        metric(&b, "zpf_control_slow_clients_dropped_total", "counter",
               "Control clients dropped for not reading their replies.",
               cs.slow_dropped);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

static void metrics_timer_cb(uv_timer_t *t)
{
    struct zpf_agent *a = t->data;
    struct job *j = job_new(a, run_write_file, "metrics textfile");
    if (j == NULL)
        return;
    j->text = metrics_text(a, &j->text_len);
    j->path = strdup(a->conf.metrics.textfile);
    j->u64 = 0644;
    if (j->text == NULL || j->path == NULL) {
        job_free(j);
        return;
    }
    job_push_latest(a, &a->metrics_job, j);
}

/* --- control commands ----------------------------------------------------- */

/* JSON wants UTF-8; member names and metadata come from the cluster and
 * are meant to be printable ASCII.  Anything else shows as '?' rather than
 * making the member vanish from the reply. */
static json_t *jstr(const char *s)
{
    char buf[ZPF_META_MAX + ZPF_NAME_MAX + 1];
    size_t i = 0;
    for (; s[i] && i < sizeof buf - 1; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e
                     ? '?'
                     : s[i];
    buf[i] = '\0';
    return json_string(buf);
}

static json_t *member_json(const struct zpf_member_info *mi)
{
    char addr[64];
    struct zpf_meta m;
    zpf_addr_format(&mi->addr, addr, sizeof addr);
    if (zpf_meta_decode(mi->meta, mi->meta_len, &m) < 0)
        memset(&m, 0, sizeof m);
    json_t *tags = json_object();
    for (uint32_t i = 0; i < m.ntags; i++) {
        json_t *k = jstr(m.tags[i].key);
        json_object_set_new(tags, json_string_value(k),
                            jstr(m.tags[i].value));
        json_decref(k);
    }
    return json_pack("{s:o, s:s, s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:o, "
                     "s:o, s:b}",
                     "name", jstr(mi->name), "addr", addr, "state",
                     zpf_state_name(mi->state), "incarnation",
                     (json_int_t)mi->incarnation, "counter",
                     (json_int_t)mi->counter, "counter_age_ms",
                     (json_int_t)mi->counter_age_ms, "state_age_ms",
                     (json_int_t)mi->state_age_ms, "zone", jstr(m.zone),
                     "provider", jstr(m.provider), "instance_id",
                     jstr(m.instance_id), "tags", tags, "self", mi->is_self);
}

static int cmd_members(void *ctx, const struct zpf_ctl_peer *peer,
                       json_t *args, json_t **result, char *err, size_t errlen)
{
    (void)peer, (void)args, (void)err, (void)errlen;
    struct zpf_agent *a = ctx;
    json_t *arr = json_array();
    size_t n = zpf_node_member_count(a->node);
    for (size_t i = 0; i < n; i++) {
        struct zpf_member_info mi;
        if (zpf_node_member_get(a->node, i, &mi) == 0)
            json_array_append_new(arr, member_json(&mi));
    }
    *result = arr;
    return 0;
}

static const char *transport_name(const struct zpf_agent *a)
{
    return a->conf.gossip.transport == ZPF_CONF_TCP ? "tcp" : "udp";
}

static int cmd_status(void *ctx, const struct zpf_ctl_peer *peer,
                      json_t *args, json_t **result, char *err, size_t errlen)
{
    (void)peer, (void)args, (void)err, (void)errlen;
    struct zpf_agent *a = ctx;
    size_t by_state[5] = {0}, n = zpf_node_member_count(a->node);
    for (size_t i = 0; i < n; i++) {
        struct zpf_member_info mi;
        if (zpf_node_member_get(a->node, i, &mi) == 0 && mi.state < 5)
            by_state[mi.state]++;
    }
    char addr[64];
    zpf_addr_format(&a->advertise, addr, sizeof addr);
    json_t *members = json_pack(
        "{s:I, s:I, s:I, s:I, s:I}", "alive",
        (json_int_t)by_state[ZPF_STATE_ALIVE], "suspect",
        (json_int_t)by_state[ZPF_STATE_SUSPECT], "dead",
        (json_int_t)by_state[ZPF_STATE_DEAD], "left",
        (json_int_t)by_state[ZPF_STATE_LEFT], "stalled",
        (json_int_t)by_state[ZPF_STATE_STALLED]);
    *result = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:s, s:o, s:o, s:I, s:s, s:s, s:b, s:b, "
        "s:I}",
        "name", zpf_node_name(a->node), "cluster", a->conf.gossip.cluster,
        "version", ZPF_VERSION, "incarnation",
        (json_int_t)zpf_node_incarnation(a->node), "counter",
        (json_int_t)zpf_node_counter(a->node), "health",
        a->healthy ? "passing" : "failing", "failing_check",
        a->failing_check[0] ? json_string(a->failing_check) : json_null(),
        "members", members, "uptime_s",
        (json_int_t)((mono_ms() - a->started_ms) / 1000), "addr", addr,
        "transport", transport_name(a), "sealed",
        a->sealed, "joined", has_peers(a), "keyring_version",
        (json_int_t)a->keyring_version);
    return *result ? 0 : ZPF_ENOMEM;
}

static int cmd_metrics(void *ctx, const struct zpf_ctl_peer *peer,
                       json_t *args, json_t **result, char *err, size_t errlen)
{
    (void)peer, (void)args, (void)err, (void)errlen;
    size_t len;
    char *text = metrics_text(ctx, &len);
    if (text == NULL)
        return ZPF_ENOMEM;
    *result = json_pack("{s:s%}", "text", text, len);
    free(text);
    return *result ? 0 : ZPF_ENOMEM;
}

static int need_sealed(struct zpf_agent *a, char *err, size_t errlen)
{
    if (a->sealed)
        return 0;
    snprintf(err, errlen, "this agent runs with security.insecure: true and "
             "has no keyring");
    return ZPF_EINVAL;
}

static int cmd_keys_list(void *ctx, const struct zpf_ctl_peer *peer,
                         json_t *args, json_t **result, char *err,
                         size_t errlen)
{
    (void)peer, (void)args;
    struct zpf_agent *a = ctx;
    int rc = need_sealed(a, err, errlen);
    if (rc < 0)
        return rc;
    size_t alive, current;
    keyring_survey(a, &alive, &current);
    json_t *keys = json_array();
    char id[9], pid[9];
    key_hex(zpf_keyring_primary(&a->keyring)->id, pid);
    for (uint32_t i = 0; i < a->keyring.n; i++) {
        key_hex(a->keyring.keys[i].id, id);
        json_array_append_new(keys, json_pack("{s:s, s:b}", "id", id,
                                              "primary",
                                              i == a->keyring.primary));
    }
    *result = json_pack("{s:I, s:s, s:o, s:{s:I, s:I}}", "version",
                        (json_int_t)a->keyring_version, "primary", pid, "keys",
                        keys, "members", "alive", (json_int_t)alive,
                        "current", (json_int_t)current);
    return *result ? 0 : ZPF_ENOMEM;
}

static int key_arg(json_t *args, const char *name, char *err, size_t errlen,
                   const char **out)
{
    json_t *v = json_object_get(args, name);
    if (!json_is_string(v)) {
        snprintf(err, errlen, "args.%s: a string is required", name);
        return ZPF_EINVAL;
    }
    *out = json_string_value(v);
    return 0;
}

static int id_arg(struct zpf_agent *a, json_t *args, uint32_t *id, char *err,
                  size_t errlen)
{
    const char *s;
    int rc = key_arg(args, "id", err, errlen, &s);
    if (rc < 0)
        return rc;
    char *end;
    unsigned long v = strtoul(s, &end, 16);
    if (strlen(s) != 8 || *end != '\0') {
        snprintf(err, errlen, "args.id: 8 hex digits, as `zpfctl keys list` "
                 "shows them");
        return ZPF_EINVAL;
    }
    *id = (uint32_t)v;
    if (zpf_keyring_find(&a->keyring, *id) == NULL) {
        snprintf(err, errlen, "no key %s in the keyring", s);
        return ZPF_ENOENT;
    }
    return 0;
}

/* Switching the primary or removing a key while some alive member lags
 * behind would cut that member off. */
static int need_converged(struct zpf_agent *a, json_t *args, char *err,
                          size_t errlen)
{
    size_t alive, current;
    keyring_survey(a, &alive, &current);
    if (current == alive || json_is_true(json_object_get(args, "force")))
        return 0;
    snprintf(err, errlen, "%zu of %zu alive members have not yet reported "
             "keyring version %" PRIu64 "; wait until `zpfctl keys list` "
             "shows all of them, or force",
             alive - current, alive, a->keyring_version);
    return ZPF_EBUSY;
}

static json_t *key_result(struct zpf_agent *a, uint32_t id)
{
    char s[9];
    key_hex(id, s);
    return json_pack("{s:s, s:I}", "id", s, "version",
                     (json_int_t)a->keyring_version);
}

static int cmd_keys_install(void *ctx, const struct zpf_ctl_peer *peer,
                            json_t *args, json_t **result, char *err,
                            size_t errlen)
{
    (void)peer;
    struct zpf_agent *a = ctx;
    const char *b64;
    uint8_t key[ZPF_KEY_LEN];
    int rc = need_sealed(a, err, errlen);
    if (rc == 0)
        rc = key_arg(args, "key", err, errlen, &b64);
    if (rc < 0)
        return rc;
    if (zpf_key_decode(b64, strlen(b64), key) < 0) {
        snprintf(err, errlen, "args.key: not a base64 key of 32 bytes; make "
                 "one with `zpfctl keygen`");
        return ZPF_EINVAL;
    }
    struct zpf_keyring kr = a->keyring;
    rc = zpf_keyring_add(&kr, key);
    uint32_t id = zpf_key_id(key);
    sodium_memzero(key, sizeof key);
    if (rc == ZPF_EEXIST)
        snprintf(err, errlen, "the key is already in the keyring");
    else if (rc < 0)
        snprintf(err, errlen, "the keyring holds at most %d keys; remove one "
                 "first", ZPF_KEYS_MAX);
    if (rc < 0) {
        sodium_memzero(&kr, sizeof kr);
        return rc;
    }
    keyring_change(a, &kr);
    sodium_memzero(&kr, sizeof kr);
    *result = key_result(a, id);
    return 0;
}

/* keys.use and keys.remove: the same checks, then one change of the
 * keyring spread to the cluster. */
static int key_switch(struct zpf_agent *a, json_t *args, bool remove,
                      json_t **result, char *err, size_t errlen)
{
    uint32_t id;
    int rc = need_sealed(a, err, errlen);
    if (rc == 0)
        rc = id_arg(a, args, &id, err, errlen);
    bool primary = rc == 0 && zpf_keyring_primary(&a->keyring)->id == id;
    if (remove && primary) {
        snprintf(err, errlen, "the primary key cannot be removed; make "
                 "another key primary first (zpfctl keys use ID)");
        rc = ZPF_EBUSY;
    }
    if (rc == 0 && (remove || !primary))
        rc = need_converged(a, args, err, errlen);
    if (rc < 0)
        return rc;
    if (remove || !primary) {
        struct zpf_keyring kr = a->keyring;
        if (remove)
            zpf_keyring_remove(&kr, id);
        else
            zpf_keyring_use(&kr, id);
        keyring_change(a, &kr);
        sodium_memzero(&kr, sizeof kr);
    }
    *result = key_result(a, id);
    return 0;
}

static int cmd_keys_use(void *ctx, const struct zpf_ctl_peer *peer,
                        json_t *args, json_t **result, char *err,
                        size_t errlen)
{
    (void)peer;
    return key_switch(ctx, args, false, result, err, errlen);
}

static int cmd_keys_remove(void *ctx, const struct zpf_ctl_peer *peer,
                           json_t *args, json_t **result, char *err,
                           size_t errlen)
{
    (void)peer;
    return key_switch(ctx, args, true, result, err, errlen);
}

static void agent_leave(struct zpf_agent *a, const char *why);

static int cmd_leave(void *ctx, const struct zpf_ctl_peer *peer, json_t *args,
                     json_t **result, char *err, size_t errlen)
{
    (void)peer, (void)args, (void)err, (void)errlen;
    struct zpf_agent *a = ctx;
    agent_leave(a, "control request");
    *result = json_pack("{s:b, s:I}", "leaving", 1, "timeout_ms",
                        (json_int_t)a->conf.gossip.leave_timeout_ms);
    return 0;
}

/* Refused, dropped and misbehaving control clients (rate-limited by the
 * server). */
static void ctl_log_cb(void *ctx, const char *msg)
{
    struct zpf_agent *a = ctx;
    char q[600];
    zpf_log(&a->log, ZPF_LOG_WARNING, "control socket", "event=%s",
            zpf_log_quote(msg, q, sizeof q));
}

static const struct zpf_ctl_command commands[] = {
    {"status", cmd_status, false, "this agent: name, health, member counts"},
    {"members", cmd_members, false, "every member as this agent sees it"},
    {"metrics", cmd_metrics, false, "counters in Prometheus text format"},
    {"keys.list", cmd_keys_list, false, "keys, primary, members caught up"},
    {"keys.install", cmd_keys_install, true, "add a key cluster-wide"},
    {"keys.use", cmd_keys_use, true, "make a key primary cluster-wide"},
    {"keys.remove", cmd_keys_remove, true, "remove a key cluster-wide"},
    {"leave", cmd_leave, true, "leave the cluster and exit"},
};

/* --- lifecycle ------------------------------------------------------------ */

/* Final, blocking save: the loop no longer gossips, and nothing else
 * touches the store (the job queue is drained first). */
static void save_final(struct zpf_agent *a)
{
    if (a->store == NULL)
        return;
    char err[256], q[300];
    if (zpf_store_set_u64(a->store, "incarnation",
                          zpf_node_incarnation(a->node), err, sizeof err) < 0)
        zpf_log(&a->log, ZPF_LOG_ERROR, "persisting failed",
                "what=incarnation error=%s",
                zpf_log_quote(err, q, sizeof q));
    size_t n;
    struct zpf_store_member *m = members_snapshot(a, &n);
    if (m && zpf_store_save_members(a->store, m, n, err, sizeof err) < 0)
        zpf_log(&a->log, ZPF_LOG_ERROR, "persisting failed",
                "what=members error=%s", zpf_log_quote(err, q, sizeof q));
    free(m);
}

static void leave_timer_cb(uv_timer_t *t);

static void close_all(struct zpf_agent *a)
{
    if (a->closed)
        return;
    if (a->job_running) {
        /* The store is busy on the pool: look again in a moment. */
        a->stopping = true;
        uv_timer_start(&a->leave_timer, leave_timer_cb, 10, 0);
        return;
    }
    /* Drop queued jobs: save_final writes the newest state anyway, except
     * keyring changes, which are written now. */
    while (a->jobs) {
        struct job *j = a->jobs;
        a->jobs = j->next;
        if (j->slot)
            *j->slot = NULL;
        if (j->run == run_save_keys || j->run == run_write_file)
            j->rc = j->run(j);
        job_free(j);
    }
    a->jobs_tail = &a->jobs;
    a->closed = true;
    /* Lookups not yet started are cancelled; one already asking a slow
     * resolver finishes first (libuv cannot interrupt getaddrinfo). */
    for (struct resolve *r = a->lookups; r; r = r->next)
        (void)uv_cancel((uv_req_t *)&r->req);
    save_final(a);
    uv_timer_stop(&a->core_timer);
    /* The handles live inside the agent, which outlives the loop: no close
     * callbacks are needed, uv_run() returns once all are closed. */
    uv_handle_t *handles[] = {
        (uv_handle_t *)&a->core_timer,    (uv_handle_t *)&a->join_timer,
        (uv_handle_t *)&a->persist_timer, (uv_handle_t *)&a->metrics_timer,
        (uv_handle_t *)&a->leave_timer,   (uv_handle_t *)&a->sig_term,
        (uv_handle_t *)&a->sig_int,       (uv_handle_t *)&a->sig_hup};
    for (size_t i = 0; i < sizeof handles / sizeof handles[0]; i++)
        uv_close(handles[i], NULL);
    if (a->health) {
        zpf_health_stop(a->health, NULL, NULL);
        a->health = NULL;
    }
    if (a->ctl) {
        zpf_ctl_server_close(a->ctl, NULL, NULL);
        a->ctl = NULL;
    }
    if (a->net) {
        zpf_net_close(a->net, NULL, NULL);
        a->net = NULL;
    }
    zpf_log(&a->log, ZPF_LOG_NOTICE, "stopped", "exit=%d", a->exit_code);
}

static void leave_timer_cb(uv_timer_t *t)
{
    close_all(t->data);
}

static void agent_leave(struct zpf_agent *a, const char *why)
{
    if (a->leaving)
        return;
    a->leaving = true;
    a->stopping = true;
    uv_timer_stop(&a->join_timer);
    zpf_log(&a->log, ZPF_LOG_NOTICE, "leaving the cluster",
            "reason=\"%s\" timeout_ms=%" PRIu64, why,
            (uint64_t)a->conf.gossip.leave_timeout_ms);
    zpf_node_leave(a->node);
    core_arm(a);
    /* Alone, nobody needs to hear it: no need to wait. */
    uint64_t wait = has_peers(a) ? a->conf.gossip.leave_timeout_ms : 0;
    uv_timer_start(&a->leave_timer, leave_timer_cb, wait, 0);
}

static void reload(struct zpf_agent *a);

static void signal_cb(uv_signal_t *s, int signum)
{
    struct zpf_agent *a = s->data;
    if (signum == SIGHUP) {
        reload(a);
        return;
    }
    if (a->leaving) {
        zpf_log(&a->log, ZPF_LOG_WARNING, "second signal: exiting now", NULL);
        close_all(a);
        return;
    }
    agent_leave(a, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* --- start, keyring, reload ----------------------------------------------- */

/* The keyring from the config: the file (one key a line) or inline keys. */
static int keyring_from_conf(const struct zpf_conf *c, struct zpf_keyring *kr,
                             char *err, size_t errlen)
{
    uint8_t keys[ZPF_KEYS_MAX][ZPF_KEY_LEN];
    int n;
    zpf_keyring_init(kr);
    if (c->security.keyring && c->security.keyring[0]) {
        /* At least one key, or an error saying where. */
        n = zpf_conf_read_keyring(c->security.keyring, keys, ZPF_KEYS_MAX,
                                  err, errlen);
    } else {
        n = 0;
        for (size_t i = 0; i < c->security.n_keys && n < ZPF_KEYS_MAX; i++)
            memcpy(keys[n++], c->security.keys[i], ZPF_KEY_LEN);
    }
    for (int i = 0; i < n; i++)
        (void)zpf_keyring_add(kr, keys[i]); /* the first is primary */
    sodium_memzero(keys, sizeof keys);
    return n < 0 ? n : 0;
}

/* Remember the digest of the configured key source, in memory and in the
 * store. */
static void keysrc_save(struct zpf_agent *a, uint64_t digest)
{
    a->keysrc = digest;
    if (a->store == NULL)
        return;
    struct job *k = job_new(a, run_save_u64, "keyring source");
    if (k == NULL)
        return;
    k->path = strdup("keyring_source");
    k->u64 = digest;
    if (k->path)
        job_push(a, k);
    else
        job_free(k);
}

/*
 * The keyring at start.  The store holds the newest keyring this agent
 * knew (with its version); the configured source (file or inline keys)
 * holds what the operator gave it.  The source wins only when it differs
 * from what zpfd last read from it or wrote to it: then it is an edit, a
 * local change above the stored version.  Otherwise the store wins, even
 * when the file could not be rewritten after a rotation (read-only mount,
 * crash between the two writes): an unchanged, stale source must never
 * roll the cluster back.
 */
static int keyring_boot(struct zpf_agent *a, bool *save, char *err,
                        size_t errlen)
{
    struct zpf_keyring src;
    int rc = keyring_from_conf(&a->conf, &src, err, errlen);
    if (rc < 0)
        return rc;
    uint64_t srcd = keyring_digest(&src);
    a->keyring = src;
    a->keyring_version = 0;
    *save = true;
    uint8_t keys[ZPF_KEYS_MAX][ZPF_KEY_LEN];
    size_t n = 0, primary = 0;
    uint64_t version = 0, stored_src = 0;
    char serr[256];
    if (a->store &&
        zpf_store_load_keys(a->store, &version, keys, ZPF_KEYS_MAX, &n,
                            &primary, serr, sizeof serr) == 0 &&
        n > 0 && primary < n) {
        struct zpf_keyring stored;
        zpf_keyring_init(&stored);
        for (size_t i = 0; i < n; i++)
            (void)zpf_keyring_add(&stored, keys[i]);
        (void)zpf_keyring_use(&stored, zpf_key_id(keys[primary]));
        bool known = zpf_store_get_u64(a->store, "keyring_source",
                                       &stored_src, serr, sizeof serr) == 0;
        if ((known && stored_src == srcd) ||
            zpf_keyring_equal(&stored, &src)) {
            a->keyring = stored;
            a->keyring_version = version;
            *save = false;
        } else {
            a->keyring_version = version + 1;
            zpf_log(&a->log, ZPF_LOG_NOTICE, "keyring source edited since "
                    "the last run: it replaces the stored keyring",
                    "stored_version=%" PRIu64, version);
        }
        sodium_memzero(&stored, sizeof stored);
    }
    sodium_memzero(keys, sizeof keys);
    a->keysrc = srcd;
    a->keyring_digest = keyring_digest(&a->keyring);
    sodium_memzero(&src, sizeof src);
    return 0;
}

static void reload(struct zpf_agent *a)
{
    struct zpf_conf nc;
    char err[1024];
    zpf_log(&a->log, ZPF_LOG_NOTICE, "reloading", "file=%s", a->conf_path);
    if (zpf_conf_load(a->conf_path, &nc, err, sizeof err) < 0) {
        char q[1100];
        zpf_log(&a->log, ZPF_LOG_ERROR, "reload failed, keeping the running "
                "config", "error=%s", zpf_log_quote(err, q, sizeof q));
        return;
    }
    char fixed[1024];
    if (zpf_conf_diff_fixed(&a->conf, &nc, fixed, sizeof fixed) > 0)
        zpf_log(&a->log, ZPF_LOG_WARNING, "these settings differ from the "
                "running ones and take effect only after a restart",
                "keys=\"%s\"", fixed);
    a->log.level = nc.log.level;
    zpf_log(&a->log, ZPF_LOG_NOTICE, "log level",
            "level=%s", zpf_log_level_name(a->log.level));
    /* Tags (and the rest of the metadata) change live. */
    struct zpf_meta old = a->meta;
    if (meta_from_conf(a, &nc, err, sizeof err) < 0) {
        a->meta = old;
        char q[1100];
        zpf_log(&a->log, ZPF_LOG_ERROR, "tags not changed", "error=%s",
                zpf_log_quote(err, q, sizeof q));
    } else if (memcmp(&old, &a->meta, sizeof old) != 0) {
        meta_publish(a);
    }
    /* Health checks: restart them with the new list. */
    if (a->health) {
        zpf_health_stop(a->health, NULL, NULL);
        a->health = NULL;
    }
    if (health_start(a, &nc) < 0)
        zpf_log(&a->log, ZPF_LOG_ERROR, "health checks not restarted", NULL);
    /* New checks count as passing until their first result (health.h): the
     * heartbeat resumes now, and a failing check stops it again. */
    zpf_node_set_health(a->node, true);
    core_arm(a);
    /* The key source: an operator's edit (it differs from what zpfd last
     * read or wrote) is a change for the cluster; an unchanged source is
     * not, even when it lags behind the cluster's keyring. */
    if (a->sealed) {
        struct zpf_keyring kr;
        if (keyring_from_conf(&nc, &kr, err, sizeof err) < 0) {
            char q[1100];
            zpf_log(&a->log, ZPF_LOG_ERROR, "keyring not reloaded",
                    "error=%s", zpf_log_quote(err, q, sizeof q));
        } else if (keyring_digest(&kr) != a->keysrc) {
            keysrc_save(a, keyring_digest(&kr));
            if (!zpf_keyring_equal(&kr, &a->keyring))
                keyring_change(a, &kr);
        }
        sodium_memzero(&kr, sizeof kr);
    }
    /* The running config stays: what could change has been applied from
     * the new one, what could not was reported above. */
    zpf_conf_free(&nc);
}

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

int zpf_agent_start(uv_loop_t *loop, const char *conf_path,
                    struct zpf_conf *conf, struct zpf_agent **out, char *err,
                    size_t errlen)
{
    if (sodium_init() < 0)
        return fail(err, errlen, ZPF_EIO, "libsodium failed to initialise");
    struct zpf_agent *a = calloc(1, sizeof *a);
    if (a == NULL)
        return ZPF_ENOMEM;
    a->loop = loop;
    a->conf = *conf;
    memset(conf, 0, sizeof *conf);
    a->conf_path = strdup(conf_path);
    if (a->conf_path == NULL) {
        zpf_conf_free(&a->conf);
        free(a);
        return ZPF_ENOMEM;
    }
    a->jobs_tail = &a->jobs;
    a->started_ms = mono_ms();
    a->healthy = true;
    zpf_log_init(&a->log, STDERR_FILENO, a->conf.log.level);
    int rc;
    char serr[512];

    a->advertise = a->conf.gossip.advertise;
    struct zpf_addr bind = a->conf.gossip.bind;

    /* The store.  Without it the agent still runs, from memory. */
    rc = zpf_store_open(a->conf.node.data_dir, &a->store, serr, sizeof serr);
    uint64_t inc = 0, epoch = (uint64_t)time(NULL);
    char q[600];
    if (rc < 0) {
        zpf_log(&a->log, ZPF_LOG_ERROR, "store unavailable, running from "
                "memory", "error=%s", zpf_log_quote(serr, q, sizeof q));
        a->store = NULL;
        /* No memory of earlier lives: the clock stands in, so a restart
         * still comes back above the incarnation it had. */
        inc = (uint64_t)time(NULL) & 0x7fffffffu;
    } else {
        if (zpf_store_get_u64(a->store, "incarnation", &inc, serr,
                              sizeof serr) < 0)
            inc = 0;
        if (zpf_store_next_epoch(a->store, (uint64_t)time(NULL), &epoch, serr,
                                 sizeof serr) < 0)
            zpf_log(&a->log, ZPF_LOG_WARNING, "boot epoch not persisted",
                    "error=%s", zpf_log_quote(serr, q, sizeof q));
        (void)zpf_store_load_members(a->store, store_member_seed, a, serr,
                                     sizeof serr);
    }

    a->sealed = !a->conf.security.insecure;
    bool save_keys = false;
    if (a->sealed) {
        rc = keyring_boot(a, &save_keys, err, errlen);
        if (rc < 0)
            goto out;
    } else {
        zpf_log(&a->log, ZPF_LOG_WARNING, "gossip is NOT encrypted "
                "(security.insecure: true)", NULL);
    }
    rc = meta_from_conf(a, &a->conf, err, errlen);
    if (rc < 0)
        goto out;

    struct zpf_net_options no = {
        .bind = bind,
        .advertise = a->advertise,
        .tcp_only = (a->conf.gossip.transport == ZPF_CONF_TCP),
        .cluster = a->conf.gossip.cluster,
        .name = a->conf.node.name,
        .keyring = a->sealed ? &a->keyring : NULL,
        .epoch = epoch,
        .max_senders = a->conf.core.max_members * 2,
        .recv_cb = net_recv_cb,
        .drop_cb = net_drop_cb,
        .ctx = a,
    };
    rc = zpf_net_start(loop, &no, &a->net, err, errlen);
    if (rc < 0)
        goto out;

    struct zpf_config cc = a->conf.core;
    cc.name = a->conf.node.name;
    cc.cluster = a->conf.gossip.cluster;
    cc.addr = a->advertise;
    cc.incarnation = inc > UINT32_MAX - 2 ? UINT32_MAX - 2 : (uint32_t)inc;
    cc.stream_probe = a->conf.gossip.tcp_fallback &&
                      !(a->conf.gossip.transport == ZPF_CONF_TCP);
    if (a->sealed) /* budget >= 512 (conf.c), so >= 467 here */
        cc.packet_budget -= ZPF_SEAL_OVERHEAD;
    uint8_t meta[ZPF_META_MAX];
    int mlen = zpf_meta_encode(&a->meta, meta, sizeof meta);
    cc.meta = meta;
    cc.meta_len = mlen > 0 ? (size_t)mlen : 0;
    struct zpf_env env = {
        .now_ms = env_now, .rand64 = env_rand, .send = env_send,
        .notify = env_notify, .realloc = env_realloc, .ctx = a,
    };
    rc = zpf_node_new(&cc, &env, &a->node);
    if (rc < 0) {
        rc = fail(err, errlen, rc, "cannot start the gossip core: %s",
                  zpf_strerror(rc));
        goto out;
    }
    a->saved_incarnation = (uint32_t)inc;

    struct zpf_ctl_options co = {
        .path = a->conf.control.socket,
        .group = a->conf.control.group,
        .admin_group = a->conf.control.admin_group,
        .cmds = commands,
        .ncmds = sizeof commands / sizeof commands[0],
        .ctx = a,
        .log_cb = ctl_log_cb,
    };
    rc = zpf_ctl_server_start(loop, &co, &a->ctl, err, errlen);
    if (rc < 0)
        goto out;

    rc = health_start(a, &a->conf);
    if (rc < 0) {
        rc = fail(err, errlen, rc, "cannot start health checks: %s",
                  zpf_strerror(rc));
        goto out;
    }

    uv_timer_t *timers[] = {&a->core_timer, &a->join_timer, &a->persist_timer,
                            &a->metrics_timer, &a->leave_timer};
    for (size_t i = 0; i < 5; i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = a;
    }
    uv_signal_t *sigs[] = {&a->sig_term, &a->sig_int, &a->sig_hup};
    int signums[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < 3; i++) {
        uv_signal_init(loop, sigs[i]);
        sigs[i]->data = a;
        uv_signal_start(sigs[i], signal_cb, signums[i]);
    }
    uv_timer_start(&a->persist_timer, persist_timer_cb, KEYRING_CHECK_MS,
                   KEYRING_CHECK_MS);
    uv_timer_start(&a->metrics_timer, metrics_timer_cb, 0,
                   a->conf.metrics.interval_ms);
    if (!a->conf.metrics.textfile || !a->conf.metrics.textfile[0])
        uv_timer_stop(&a->metrics_timer);
    core_arm(a);
    persist_incarnation(a);
    if (save_keys) {
        /* First start, or an edited source: the store learns it (the file
         * already says it). */
        keysrc_save(a, a->keysrc);
        struct job *j = job_new(a, run_save_keys, "keyring");
        if (j && a->store) {
            j->u64 = a->keyring_version;
            j->nkeys = a->keyring.n;
            j->primary = a->keyring.primary;
            for (uint32_t i = 0; i < a->keyring.n; i++)
                memcpy(j->keys[i], a->keyring.keys[i].bytes, ZPF_KEY_LEN);
            job_push(a, j);
        } else if (j) {
            job_free(j);
        }
    }

    char addr[64], bindstr[64];
    zpf_addr_format(&a->advertise, addr, sizeof addr);
    zpf_addr_format(&bind, bindstr, sizeof bindstr);
    zpf_log(&a->log, ZPF_LOG_NOTICE, "started",
            "name=%s cluster=%s addr=%s bind=%s transport=%s sealed=%s "
            "incarnation=%" PRIu32 " version=%s",
            a->conf.node.name, a->conf.gossip.cluster, addr, bindstr,
            transport_name(a),
            a->sealed ? "yes" : "no", zpf_node_incarnation(a->node),
            ZPF_VERSION);
    if (a->conf.gossip.n_join > 0 || a->nstored > 0) {
        join_attempt(a);
        join_schedule(a);
    } else {
        a->joined = true;
        zpf_log(&a->log, ZPF_LOG_NOTICE, "no join addresses: first member "
                "of a new cluster", NULL);
    }
    *out = a;
    return 0;
out:
    /* Nothing runs yet but maybe the transport and the control socket;
     * close them on the loop and free the rest. */
    if (a->ctl)
        zpf_ctl_server_close(a->ctl, NULL, NULL);
    if (a->net)
        zpf_net_close(a->net, NULL, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    if (a->node)
        zpf_node_free(a->node);
    if (a->store)
        zpf_store_close(a->store);
    zpf_keyring_wipe(&a->keyring);
    zpf_conf_free(&a->conf);
    free(a->conf_path);
    free(a);
    return rc;
}

int zpf_agent_exit_code(const struct zpf_agent *a)
{
    return a->exit_code;
}

void zpf_agent_free(struct zpf_agent *a)
{
    if (a->node)
        zpf_node_free(a->node);
    if (a->store)
        zpf_store_close(a->store);
    zpf_keyring_wipe(&a->keyring);
    zpf_conf_free(&a->conf);
    free(a->conf_path);
    free(a);
}
