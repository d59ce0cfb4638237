/*
 * Deterministic simulator for the zpf gossip core.
 *
 * What it does
 * ------------
 * Real zpf_node instances run on one virtual clock (milliseconds since the
 * start, "sim time") and an in-memory network.  One binary min-heap holds
 * every future event, keyed by (sim time, insertion sequence number): ties
 * run in the order they were scheduled, so nothing depends on heap layout,
 * pointer values or the wall clock, and the same seed plus the same calls
 * replay the same trace bit for bit.  Three kinds of events exist:
 *
 *   TICK     a node's timer.  Each node has at most one live tick event;
 *            after every call into a node we re-read zpf_node_next_deadline()
 *            and push a new tick only if it is earlier than the scheduled
 *            one.  Superseded ticks stay in the heap and are recognised by a
 *            per-node generation number when popped (cheaper than deleting
 *            from the middle of a heap).
 *   DELIVER  a datagram or stream frame reaching its destination.
 *   JOIN     the host's join retry (zpfd retries its seeds with backoff
 *            until some member is known; so does the simulator).
 *
 * Clocks.  Node i reads offset_i + floor(t * rate_i): rate_i is uniform in
 * [1 - skew, 1 + skew] and offset_i is random, so no two nodes share a clock
 * origin or speed and the core cannot get away with comparing clocks.  The
 * clock survives a restart (CLOCK_MONOTONIC is per host, not per process).
 * A deadline d is mapped back to the first sim time whose node time is >= d.
 *
 * Network.  send() applies, in order: partitions (group matrix), per-node
 * in/out blackholes, crashed destination, then for datagrams loss and
 * duplication, then latency + uniform jitter (which reorders datagrams).
 * Stream frames model TCP: no loss unless cfg.stream_loss, no duplication,
 * and in order per (src, dst) pair.  Ordering costs no state: a pair's
 * jitter is a fixed hash of (seed, src, dst), so delivery times on a pair
 * are non-decreasing in send time and the heap's tie order does the rest.
 * Faults are judged when a packet is sent, not while it is in flight.
 *
 * Processes.  Every start and every crash bumps the node's "life"; a packet
 * remembers the life of its destination when sent and is dropped if it
 * arrives in another life (the socket it was sent to is gone).  A paused
 * node (SIGSTOP) runs no timers and its packets queue in a bounded "socket
 * buffer" (SIM_SOCKBUF, excess dropped like a full UDP receive buffer).  On
 * resume it ticks once first -- in a libuv loop, timers that came due while
 * stopped fire before the poll phase reads the sockets -- then reads the
 * queue in order.  The core is expected to notice the late tick itself.
 *
 * Observation.  Every notify() event and every delivered packet is mixed
 * into a 64-bit FNV-1a trace hash.  The invariant checked on each event:
 * per (observer, member), the reported incarnation never decreases during
 * the observer's life (REAP forgets a member, a restart forgets all).  That
 * table is n x n; to keep the simulator O(n) in memory it covers every
 * observer up to SIM_TRACK_MAX nodes and an evenly spread sample of
 * SIM_TRACK_MAX observers beyond (4 bytes per member each).
 *
 * No global mutable state: everything hangs off struct sim.
 */
#include "sim.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every node listens on the same port, as a fleet of zpfd would. */
#define SIM_PORT 7946

/* Datagrams a stopped process can have queued: about what a default Linux
 * UDP receive buffer (212992 bytes) holds of small gossip packets. */
#define SIM_SOCKBUF 4096

/* Observers whose incarnation history is checked (see the design note). */
#define SIM_TRACK_MAX 1024

/* Join retry backoff, as zpfd does it: 1 s doubling up to 30 s. */
#define SIM_JOIN_RETRY_MS 1000
#define SIM_JOIN_RETRY_MAX_MS 30000

/* Random clock origins up to ~11 days of uptime. */
#define SIM_CLOCK_OFFSET_MAX 1000000000ull

#define SIM_NEVER UINT64_MAX
#define SIM_NO_INC UINT32_MAX

enum sim_ev_kind { SIM_EV_TICK, SIM_EV_DELIVER, SIM_EV_JOIN };

struct sim_packet {
    uint32_t src, dst;
    uint32_t dst_life;
    enum zpf_channel ch;
    size_t len;
    uint8_t data[];
};

struct sim_event {
    uint64_t t, seq;
    uint64_t gen;            /* TICK: timer gen; JOIN: life */
    struct sim_packet *pkt;  /* DELIVER only */
    uint32_t node;
    enum sim_ev_kind kind;
};

struct sim_node {
    struct sim *sim; /* env ctx: the node's way back to the simulator */
    uint32_t idx;
    struct zpf_node *zn; /* NULL while crashed or never started */
    char name[24]; /* "n" + any size_t */
    struct zpf_addr addr;

    double rate;
    uint64_t offset;
    uint64_t rng[4]; /* this process's rand64 stream */

    uint32_t life;   /* bumped by every start and crash */
    uint32_t starts;
    uint32_t saved_inc; /* "persisted" incarnation for keep_incarnation */
    unsigned group;
    bool paused, block_in, block_out, healthy, dying;

    uint64_t timer_at; /* sim time of the live tick event, or SIM_NEVER */
    uint64_t timer_gen;

    uint64_t started_at; /* sim time of the current start */
    uint64_t ms_before;  /* running time of earlier lives */

    struct sim_packet **q; /* paused socket buffer, ring of SIM_SOCKBUF */
    uint32_t q_head, q_len;

    uint32_t *seen_inc; /* invariant table, NULL unless tracked */
    bool tracked;

    uint32_t join_seed;
    uint32_t join_backoff;
};

struct sim {
    struct sim_config cfg;
    size_t n;
    struct sim_node *nodes;
    uint64_t now;
    uint64_t rng[4]; /* network randomness: loss, dup, jitter */

    struct sim_event *heap;
    size_t heap_len, heap_cap;
    uint64_t seq;

    bool blocked[SIM_GROUPS_MAX][SIM_GROUPS_MAX];
    size_t running;   /* started and not crashed (paused included) */
    size_t unhealthy; /* running nodes with health switched off */

    uint64_t hash;
    uint64_t violations;
    char violation_text[256];
    struct sim_totals tot;
    uint64_t late_deadlines;

    sim_event_cb cb;
    void *cb_ud;
};

/* --- random numbers ----------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(uint64_t st[4], uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t x = a;
    x = splitmix64(&x) ^ b;
    x = splitmix64(&x) ^ c;
    for (int i = 0; i < 4; i++)
        st[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t v, int k)
{
    return (v << k) | (v >> (64 - k));
}

/* xoshiro256** */
static uint64_t rng_next(uint64_t st[4])
{
    uint64_t r = rotl(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return r;
}

static double rng_unit(uint64_t st[4])
{
    return (double)(rng_next(st) >> 11) * 0x1.0p-53;
}

static uint64_t rng_below(uint64_t st[4], uint64_t bound)
{
    return bound ? rng_next(st) % bound : 0;
}

/* --- trace hash (FNV-1a over fixed-width little-endian fields) ---------- */

static void hash_u64(uint64_t *h, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        *h ^= (v >> (8 * i)) & 0xff;
        *h *= 0x100000001b3ull;
    }
}

static void hash_str(uint64_t *h, const char *str)
{
    for (; *str; str++) {
        *h ^= (uint8_t)*str;
        *h *= 0x100000001b3ull;
    }
    *h ^= 0xff; /* terminator, so "ab"+"c" differs from "a"+"bc" */
    *h *= 0x100000001b3ull;
}

/* --- event heap ---------------------------------------------------------- */

static bool ev_before(const struct sim_event *a, const struct sim_event *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void heap_push(struct sim *s, struct sim_event ev)
{
    if (s->heap_len == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 1024;
        struct sim_event *h = realloc(s->heap, cap * sizeof(*h));
        if (!h) {
            /* Out of memory in a test harness: nothing sensible to do. */
            fprintf(stderr, "sim: out of memory (event heap)\n");
            abort();
        }
        s->heap = h;
        s->heap_cap = cap;
    }
    ev.seq = s->seq++;
    size_t i = s->heap_len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ev_before(&ev, &s->heap[p]))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = ev;
}

static struct sim_event heap_pop(struct sim *s)
{
    struct sim_event top = s->heap[0];
    struct sim_event last = s->heap[--s->heap_len];
    size_t i = 0, n = s->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && ev_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!ev_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0)
        s->heap[i] = last;
    return top;
}

/* --- clocks --------------------------------------------------------------- */

static uint64_t node_clock(const struct sim_node *nd, uint64_t t)
{
    return nd->offset + (uint64_t)floor((double)t * nd->rate);
}

/* The first sim time >= `from` at which node time reaches d. */
static uint64_t sim_time_of(const struct sim_node *nd, uint64_t d,
                            uint64_t from)
{
    if (d <= node_clock(nd, from))
        return from;
    double x = ceil((double)(d - nd->offset) / nd->rate);
    if (x > 0x1.0p52)
        return SIM_NEVER; /* centuries away: as good as no deadline */
    uint64_t t = (uint64_t)x;
    if (t < from)
        t = from;
    /* Floating point may be off by one either way; settle it exactly. */
    while (node_clock(nd, t) < d)
        t++;
    while (t > from && node_clock(nd, t - 1) >= d)
        t--;
    return t;
}

/* --- addresses ---------------------------------------------------------- */

/* Node i is 127.x.y.z with x.y.z = i + 1, so n0 is the familiar 127.0.0.1. */
static void make_addr(size_t i, struct zpf_addr *a)
{
    memset(a, 0, sizeof(*a));
    a->family = ZPF_AF_INET;
    a->port = SIM_PORT;
    a->ip[0] = 127;
    a->ip[1] = (uint8_t)((i + 1) >> 16);
    a->ip[2] = (uint8_t)((i + 1) >> 8);
    a->ip[3] = (uint8_t)(i + 1);
}

size_t sim_addr_index(const struct sim *s, const struct zpf_addr *a)
{
    if (a->family != ZPF_AF_INET || a->port != SIM_PORT || a->ip[0] != 127)
        return SIZE_MAX;
    size_t v = ((size_t)a->ip[1] << 16) | ((size_t)a->ip[2] << 8) | a->ip[3];
    if (v == 0 || v > s->n)
        return SIZE_MAX;
    return v - 1;
}

size_t sim_member_index(const struct sim *s, const struct zpf_member_info *m)
{
    size_t i = sim_addr_index(s, &m->addr);
    if (i != SIZE_MAX)
        return i;
    /* Fall back on the name in case a record carries no usable address. */
    if (!m->name || m->name[0] != 'n' || m->name[1] < '0' || m->name[1] > '9')
        return SIZE_MAX;
    char *end;
    unsigned long long v = strtoull(m->name + 1, &end, 10);
    if (*end || v >= s->n)
        return SIZE_MAX;
    return (size_t)v;
}

/* --- timers ---------------------------------------------------------------- */

/* Re-read the node's deadline and make sure a tick is scheduled for it.
 * after_tick: the node was just ticked; a deadline still in the past would
 * spin forever at one instant, so it is pushed 1 ms on (and counted). */
static void rearm(struct sim *s, struct sim_node *nd, bool after_tick)
{
    if (!nd->zn)
        return;
    uint64_t d = zpf_node_next_deadline(nd->zn);
    if (d == SIM_NEVER)
        return;
    uint64_t t = sim_time_of(nd, d, s->now);
    if (t == SIM_NEVER)
        return;
    if (after_tick && t <= s->now) {
        s->late_deadlines++;
        t = s->now + 1;
    }
    if (t >= nd->timer_at)
        return;
    nd->timer_at = t;
    nd->timer_gen++;
    heap_push(s, (struct sim_event){.t = t, .kind = SIM_EV_TICK,
                                    .node = nd->idx, .gen = nd->timer_gen});
}

/* --- environment callbacks -------------------------------------------------- */

static uint64_t env_now(void *ctx)
{
    struct sim_node *nd = ctx;
    return node_clock(nd, nd->sim->now);
}

static uint64_t env_rand(void *ctx)
{
    struct sim_node *nd = ctx;
    return rng_next(nd->rng);
}

static void *env_realloc(void *ctx, void *p, size_t size)
{
    (void)ctx;
    if (size == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, size);
}

static void schedule_delivery(struct sim *s, const struct sim_node *src,
                              const struct sim_node *dst, const uint8_t *buf,
                              size_t len, enum zpf_channel ch, uint64_t delay)
{
    struct sim_packet *p = malloc(sizeof(*p) + len);
    if (!p) {
        s->tot.dropped++;
        return;
    }
    p->src = src->idx;
    p->dst = dst->idx;
    p->dst_life = dst->life;
    p->ch = ch;
    p->len = len;
    if (len)
        memcpy(p->data, buf, len);
    heap_push(s, (struct sim_event){.t = s->now + delay, .kind = SIM_EV_DELIVER,
                                    .node = dst->idx, .pkt = p});
}

static void env_send(void *ctx, const struct zpf_addr *to, const uint8_t *buf,
                     size_t len, enum zpf_channel ch)
{
    struct sim_node *src = ctx;
    struct sim *s = src->sim;
    if (src->dying)
        return;
    if (ch == ZPF_CH_STREAM) {
        s->tot.frames++;
        s->tot.frame_bytes += len;
    } else {
        s->tot.packets++;
        s->tot.bytes += len;
    }
    size_t di = sim_addr_index(s, to);
    if (di == SIZE_MAX) {
        s->tot.dropped++;
        return;
    }
    struct sim_node *dst = &s->nodes[di];
    if (s->blocked[src->group][dst->group] || src->block_out ||
        dst->block_in || !dst->zn) {
        s->tot.dropped++;
        return;
    }
    uint64_t delay = s->cfg.latency_ms;
    if (ch == ZPF_CH_STREAM) {
        if (s->cfg.stream_loss && rng_unit(s->rng) < s->cfg.loss) {
            s->tot.dropped++;
            return;
        }
        /* Fixed per pair: keeps frames on a pair in order (see top). */
        uint64_t x = s->cfg.seed ^ ((uint64_t)src->idx << 32) ^ dst->idx;
        delay += s->cfg.jitter_ms ? splitmix64(&x) % (s->cfg.jitter_ms + 1)
                                  : 0;
        schedule_delivery(s, src, dst, buf, len, ch, delay);
        return;
    }
    if (s->cfg.loss > 0 && rng_unit(s->rng) < s->cfg.loss) {
        s->tot.dropped++;
        return;
    }
    int copies = 1;
    if (s->cfg.dup > 0 && rng_unit(s->rng) < s->cfg.dup) {
        copies = 2;
        s->tot.duplicated++;
    }
    for (int c = 0; c < copies; c++) {
        uint64_t j = rng_below(s->rng, (uint64_t)s->cfg.jitter_ms + 1);
        schedule_delivery(s, src, dst, buf, len, ch, delay + j);
    }
}

static void violation(struct sim *s, const char *fmt, size_t obs,
                      const struct zpf_event *ev, uint32_t before)
{
    if (s->violations++ > 0)
        return;
    snprintf(s->violation_text, sizeof(s->violation_text), fmt, s->now, obs,
             zpf_event_name(ev->type), ev->member.name ? ev->member.name : "?",
             before, ev->member.incarnation);
}

static void check_incarnation(struct sim *s, struct sim_node *obs,
                              const struct zpf_event *ev)
{
    if (!obs->tracked)
        return;
    size_t m = sim_member_index(s, &ev->member);
    if (m == SIZE_MAX)
        return;
    if (!obs->seen_inc) {
        obs->seen_inc = malloc(s->n * sizeof(uint32_t));
        if (!obs->seen_inc) {
            obs->tracked = false;
            return;
        }
        memset(obs->seen_inc, 0xff, s->n * sizeof(uint32_t));
    }
    uint32_t before = obs->seen_inc[m];
    uint32_t inc = ev->member.incarnation;
    if (before != SIM_NO_INC && inc < before)
        violation(s,
                  "t=%" PRIu64 " ms observer n%zu: %s about %s went from "
                  "incarnation %" PRIu32 " down to %" PRIu32,
                  obs->idx, ev, before);
    if (ev->type == ZPF_EV_REAP)
        obs->seen_inc[m] = SIM_NO_INC; /* forgotten: may come back lower */
    else if (before == SIM_NO_INC || inc > before)
        obs->seen_inc[m] = inc;
}

static void env_notify(void *ctx, const struct zpf_event *ev)
{
    struct sim_node *obs = ctx;
    struct sim *s = obs->sim;
    if (obs->dying)
        return;
    hash_u64(&s->hash, s->now);
    hash_u64(&s->hash, obs->idx);
    hash_u64(&s->hash, (uint64_t)ev->type);
    hash_str(&s->hash, ev->member.name ? ev->member.name : "");
    hash_u64(&s->hash, ev->member.incarnation);
    hash_u64(&s->hash, (uint64_t)ev->member.state);
    check_incarnation(s, obs, ev);
    if (s->cb)
        s->cb(s, obs->idx, ev, s->now, s->cb_ud);
}

/* --- public API -------------------------------------------------------------- */

void sim_config_default(struct sim_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->seed = 1;
    cfg->nodes = 100;
    cfg->latency_ms = 2;
    cfg->jitter_ms = 1;
    zpf_config_default(&cfg->node);
}

struct sim *sim_new(const struct sim_config *cfg)
{
    if (cfg->nodes == 0 || cfg->nodes >= (1u << 24) - 1 || cfg->loss < 0 ||
        cfg->loss > 1 || cfg->dup < 0 || cfg->dup > 1 || cfg->clock_skew < 0 ||
        cfg->clock_skew >= 1)
        return NULL;
    struct sim *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cfg = *cfg;
    s->n = cfg->nodes;
    s->nodes = calloc(s->n, sizeof(*s->nodes));
    if (!s->nodes) {
        free(s);
        return NULL;
    }
    s->hash = 0xcbf29ce484222325ull;
    hash_u64(&s->hash, cfg->seed);
    rng_seed(s->rng, cfg->seed, 0x6e6574776f726bull /* "network" */, 0);
    /* Clock parameters come from their own stream so that changing the
     * network settings does not change every node's clock. */
    uint64_t clk[4];
    rng_seed(clk, cfg->seed, 0x636c6f636bull /* "clock" */, 0);
    size_t stride = (s->n + SIM_TRACK_MAX - 1) / SIM_TRACK_MAX;
    for (size_t i = 0; i < s->n; i++) {
        struct sim_node *nd = &s->nodes[i];
        nd->sim = s;
        nd->idx = (uint32_t)i;
        snprintf(nd->name, sizeof(nd->name), "n%zu", i);
        make_addr(i, &nd->addr);
        nd->rate = 1.0 + cfg->clock_skew * (2.0 * rng_unit(clk) - 1.0);
        nd->offset = 1000 + rng_below(clk, SIM_CLOCK_OFFSET_MAX);
        nd->timer_at = SIM_NEVER;
        nd->healthy = true;
        nd->tracked = i % stride == 0;
    }
    return s;
}

static void drop_queue(struct sim *s, struct sim_node *nd)
{
    for (uint32_t k = 0; k < nd->q_len; k++) {
        free(nd->q[(nd->q_head + k) % SIM_SOCKBUF]);
        s->tot.dropped++;
    }
    nd->q_head = nd->q_len = 0;
}

void sim_free(struct sim *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        struct sim_node *nd = &s->nodes[i];
        if (nd->zn) {
            nd->dying = true;
            zpf_node_free(nd->zn);
        }
        drop_queue(s, nd);
        free(nd->q);
        free(nd->seen_inc);
    }
    for (size_t k = 0; k < s->heap_len; k++)
        free(s->heap[k].pkt);
    free(s->heap);
    free(s->nodes);
    free(s);
}

void sim_on_event(struct sim *s, sim_event_cb cb, void *ud)
{
    s->cb = cb;
    s->cb_ud = ud;
}

int sim_start(struct sim *s, size_t i, bool keep_incarnation)
{
    if (i >= s->n)
        return ZPF_EINVAL;
    struct sim_node *nd = &s->nodes[i];
    if (nd->zn)
        return ZPF_EEXIST;
    struct zpf_config c = s->cfg.node;
    c.name = nd->name;
    if (!c.cluster)
        c.cluster = "zpf-sim";
    c.addr = nd->addr;
    c.incarnation = keep_incarnation ? nd->saved_inc : 0;
    struct zpf_env env = {
        .now_ms = env_now,
        .rand64 = env_rand,
        .send = env_send,
        .notify = env_notify,
        .realloc = env_realloc,
        .ctx = nd,
    };
    nd->starts++;
    rng_seed(nd->rng, s->cfg.seed, i, nd->starts);
    nd->life++;
    nd->paused = false;
    nd->healthy = true;
    nd->dying = false;
    nd->timer_at = SIM_NEVER;
    nd->timer_gen++;
    if (nd->seen_inc)
        memset(nd->seen_inc, 0xff, s->n * sizeof(uint32_t));
    int rc = zpf_node_new(&c, &env, &nd->zn);
    if (rc < 0) {
        nd->zn = NULL;
        return rc;
    }
    nd->started_at = s->now;
    s->running++;
    hash_u64(&s->hash, s->now);
    hash_u64(&s->hash, 0x5354415254ull ^ i); /* "START" */
    rearm(s, nd, false);
    return 0;
}

static int do_join(struct sim *s, struct sim_node *nd)
{
    int rc = zpf_node_join(nd->zn, &s->nodes[nd->join_seed].addr, 1);
    rearm(s, nd, false);
    heap_push(s, (struct sim_event){.t = s->now + nd->join_backoff,
                                    .kind = SIM_EV_JOIN, .node = nd->idx,
                                    .gen = nd->life});
    return rc;
}

int sim_join(struct sim *s, size_t i, size_t seed)
{
    if (i >= s->n || seed >= s->n || !s->nodes[i].zn)
        return ZPF_EINVAL;
    struct sim_node *nd = &s->nodes[i];
    if (nd->paused)
        return ZPF_EINVAL;
    nd->join_seed = (uint32_t)seed;
    nd->join_backoff = SIM_JOIN_RETRY_MS;
    return do_join(s, nd);
}

void sim_crash(struct sim *s, size_t i)
{
    if (i >= s->n || !s->nodes[i].zn)
        return;
    struct sim_node *nd = &s->nodes[i];
    nd->saved_inc = zpf_node_incarnation(nd->zn);
    nd->dying = true;
    zpf_node_free(nd->zn);
    nd->zn = NULL;
    nd->dying = false;
    drop_queue(s, nd);
    nd->paused = false;
    if (!nd->healthy)
        s->unhealthy--;
    nd->healthy = true;
    nd->life++;
    nd->timer_at = SIM_NEVER;
    nd->ms_before += s->now - nd->started_at;
    s->running--;
    hash_u64(&s->hash, s->now);
    hash_u64(&s->hash, 0x4352415348ull ^ i); /* "CRASH" */
}

void sim_leave(struct sim *s, size_t i)
{
    if (i >= s->n || !s->nodes[i].zn)
        return;
    zpf_node_leave(s->nodes[i].zn);
    rearm(s, &s->nodes[i], false);
}

void sim_pause(struct sim *s, size_t i)
{
    if (i >= s->n || !s->nodes[i].zn)
        return;
    s->nodes[i].paused = true;
}

static void deliver(struct sim *s, struct sim_node *nd, struct sim_packet *p)
{
    hash_u64(&s->hash, s->now);
    hash_u64(&s->hash, ((uint64_t)p->src << 32) | p->dst);
    hash_u64(&s->hash, ((uint64_t)p->ch << 48) | p->len);
    zpf_node_receive(nd->zn, &s->nodes[p->src].addr, p->data, p->len, p->ch);
    free(p);
}

void sim_resume(struct sim *s, size_t i)
{
    if (i >= s->n || !s->nodes[i].zn || !s->nodes[i].paused)
        return;
    struct sim_node *nd = &s->nodes[i];
    nd->paused = false;
    nd->timer_at = SIM_NEVER;
    nd->timer_gen++;
    zpf_node_tick(nd->zn);
    /* receive() may call back into the sim, but never into this queue:
     * the node is no longer paused, so nothing new is queued behind us. */
    while (nd->q_len > 0 && nd->zn) {
        struct sim_packet *p = nd->q[nd->q_head];
        nd->q_head = (nd->q_head + 1) % SIM_SOCKBUF;
        nd->q_len--;
        deliver(s, nd, p);
    }
    rearm(s, nd, false);
}

bool sim_paused(const struct sim *s, size_t i)
{
    return i < s->n && s->nodes[i].zn && s->nodes[i].paused;
}

void sim_set_health(struct sim *s, size_t i, bool healthy)
{
    if (i >= s->n || !s->nodes[i].zn)
        return;
    struct sim_node *nd = &s->nodes[i];
    if (nd->healthy && !healthy)
        s->unhealthy++;
    else if (!nd->healthy && healthy)
        s->unhealthy--;
    nd->healthy = healthy;
    zpf_node_set_health(nd->zn, healthy);
    rearm(s, nd, false);
}

bool sim_running(const struct sim *s, size_t i)
{
    return i < s->n && s->nodes[i].zn != NULL;
}

size_t sim_running_count(const struct sim *s)
{
    return s->running;
}

size_t sim_size(const struct sim *s)
{
    return s->n;
}

void sim_set_group(struct sim *s, size_t i, unsigned group)
{
    if (i < s->n && group < SIM_GROUPS_MAX)
        s->nodes[i].group = group;
}

void sim_block(struct sim *s, unsigned from_group, unsigned to_group)
{
    if (from_group < SIM_GROUPS_MAX && to_group < SIM_GROUPS_MAX)
        s->blocked[from_group][to_group] = true;
}

void sim_heal(struct sim *s)
{
    memset(s->blocked, 0, sizeof(s->blocked));
}

void sim_block_in(struct sim *s, size_t i, bool on)
{
    if (i < s->n)
        s->nodes[i].block_in = on;
}

void sim_block_out(struct sim *s, size_t i, bool on)
{
    if (i < s->n)
        s->nodes[i].block_out = on;
}

void sim_set_loss(struct sim *s, double loss)
{
    if (loss >= 0 && loss <= 1)
        s->cfg.loss = loss;
}

static void run_event(struct sim *s, struct sim_event *ev)
{
    struct sim_node *nd = &s->nodes[ev->node];
    switch (ev->kind) {
    case SIM_EV_TICK:
        if (!nd->zn || ev->gen != nd->timer_gen)
            return; /* superseded, or the process is gone */
        nd->timer_at = SIM_NEVER;
        if (nd->paused)
            return; /* sim_resume ticks and re-arms */
        zpf_node_tick(nd->zn);
        rearm(s, nd, true);
        return;
    case SIM_EV_DELIVER: {
        struct sim_packet *p = ev->pkt;
        if (!nd->zn || p->dst_life != nd->life) {
            s->tot.dropped++;
            free(p);
            return;
        }
        if (nd->paused) {
            if (!nd->q)
                nd->q = malloc(SIM_SOCKBUF * sizeof(*nd->q));
            if (!nd->q || nd->q_len == SIM_SOCKBUF) {
                s->tot.dropped++;
                free(p);
                return;
            }
            nd->q[(nd->q_head + nd->q_len++) % SIM_SOCKBUF] = p;
            return;
        }
        deliver(s, nd, p);
        rearm(s, nd, false);
        return;
    }
    case SIM_EV_JOIN:
        if (!nd->zn || ev->gen != nd->life)
            return;
        if (zpf_node_stats(nd->zn)->members_alive > 1)
            return; /* joined */
        nd->join_backoff *= 2;
        if (nd->join_backoff > SIM_JOIN_RETRY_MAX_MS)
            nd->join_backoff = SIM_JOIN_RETRY_MAX_MS;
        if (nd->paused) {
            /* A stopped zpfd retries once it runs again. */
            heap_push(s, (struct sim_event){.t = s->now + nd->join_backoff,
                                            .kind = SIM_EV_JOIN,
                                            .node = nd->idx, .gen = nd->life});
            return;
        }
        do_join(s, nd);
        return;
    }
}

void sim_run_until(struct sim *s, uint64_t t_ms)
{
    while (s->heap_len > 0 && s->heap[0].t <= t_ms) {
        struct sim_event ev = heap_pop(s);
        if (ev.t > s->now)
            s->now = ev.t;
        run_event(s, &ev);
    }
    if (t_ms > s->now)
        s->now = t_ms;
}

uint64_t sim_now(const struct sim *s)
{
    return s->now;
}

struct zpf_node *sim_node(struct sim *s, size_t i)
{
    return i < s->n ? s->nodes[i].zn : NULL;
}

uint64_t sim_trace_hash(const struct sim *s)
{
    return s->hash;
}

uint64_t sim_seed(const struct sim *s)
{
    return s->cfg.seed;
}

bool sim_converged(struct sim *s)
{
    /* O(n) filter first: members_alive counts alive + suspect, so a
     * converged view has exactly `running` of them.  Stalled members may or
     * may not be counted there, so the filter is skipped while any running
     * node has its health off. */
    if (s->unhealthy == 0) {
        for (size_t i = 0; i < s->n; i++) {
            const struct sim_node *nd = &s->nodes[i];
            if (!nd->zn || nd->paused)
                continue;
            if (zpf_node_stats(nd->zn)->members_alive != s->running)
                return false;
        }
    }
    for (size_t i = 0; i < s->n; i++) {
        const struct sim_node *nd = &s->nodes[i];
        if (!nd->zn || nd->paused)
            continue;
        size_t cnt = zpf_node_member_count(nd->zn), seen = 0;
        for (size_t k = 0; k < cnt; k++) {
            struct zpf_member_info mi;
            if (zpf_node_member_get(nd->zn, k, &mi) < 0)
                return false;
            size_t m = sim_member_index(s, &mi);
            bool up = mi.state == ZPF_STATE_ALIVE ||
                      mi.state == ZPF_STATE_STALLED;
            if (m != SIZE_MAX && s->nodes[m].zn) {
                if (!up)
                    return false;
                seen++;
            } else if (mi.state != ZPF_STATE_DEAD &&
                       mi.state != ZPF_STATE_LEFT) {
                return false;
            }
        }
        if (seen != s->running)
            return false;
    }
    return true;
}

uint64_t sim_violations(const struct sim *s)
{
    return s->violations;
}

const char *sim_violation_text(const struct sim *s)
{
    return s->violations ? s->violation_text : "";
}

uint64_t sim_late_deadlines(const struct sim *s)
{
    return s->late_deadlines;
}

void sim_totals(const struct sim *s, struct sim_totals *out)
{
    *out = s->tot;
    out->node_ms = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct sim_node *nd = &s->nodes[i];
        out->node_ms += nd->ms_before;
        if (nd->zn)
            out->node_ms += s->now - nd->started_at;
    }
}

uint64_t sim_node_clock(const struct sim *s, size_t i)
{
    return i < s->n ? node_clock(&s->nodes[i], s->now) : 0;
}

void sim_start_cluster(struct sim *s, size_t n, uint64_t window_ms)
{
    if (n > s->n)
        n = s->n;
    uint64_t t0 = s->now;
    for (size_t i = 0; i < n; i++) {
        sim_run_until(s, t0 + (n > 1 ? window_ms * i / (n - 1) : 0));
        if (sim_start(s, i, false) < 0 || i == 0)
            continue;
        /* A random node among those started before; deterministic because
         * it comes from the network stream in a fixed order. */
        size_t seed = (size_t)rng_below(s->rng, i);
        for (size_t k = 0; k < i && !s->nodes[seed].zn; k++)
            seed = (seed + 1) % i;
        sim_join(s, i, seed);
    }
}

bool sim_run_until_converged(struct sim *s, uint64_t deadline_ms,
                             uint64_t *at)
{
    for (;;) {
        if (sim_converged(s)) {
            if (at)
                *at = s->now;
            return true;
        }
        if (s->now >= deadline_ms)
            return false;
        uint64_t next = (s->now / 1000 + 1) * 1000;
        sim_run_until(s, next < deadline_ms ? next : deadline_ms);
    }
}
