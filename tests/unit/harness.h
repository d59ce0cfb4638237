/*
 * A fake world around one real zpf_node, for tests/unit/test_node.c.
 *
 * The node under test ("self", 10.0.0.1:7946) talks to scripted peers that
 * are not nodes at all: a peer is a name, an address, an incarnation and a
 * heartbeat counter, and the test decides what it says.  Everything the
 * node does comes back through the fake environment:
 *
 *   now_ms   a manual clock (f.now); only world_step() and the tests move it
 *   rand64   splitmix64 from a fixed seed, so every run is the same run
 *   send     copies each packet or frame into a list (f.sent) with the time
 *   notify   copies each event into a list (f.ev) with the time
 *   realloc  counts live blocks and can fail the n-th allocation
 *
 * world_step(w, t) is the host's event loop: it ticks the node exactly at
 * each deadline it reports (so timer arithmetic can be checked to the
 * millisecond), lets "beating" peers advance their counters once per
 * heartbeat interval (each sends an empty packet, so the counter arrives in
 * its header), and lets "acking" peers answer every PING addressed to them.
 * Time never runs past a deadline without a tick, so the node never sees a
 * pause unless a test makes one on purpose.
 */
#ifndef ZPF_TEST_HARNESS_H
#define ZPF_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zpf/gossip.h"
#include "core.h"
#include "wire.h"

#define T0 1000000u       /* the clock at creation; nonzero on purpose */
#define PEERS_MAX 256
#define CLUSTER "test-cluster"

/* --- the fake environment ------------------------------------------------- */

struct sent_pkt {
    struct zpf_addr to;
    enum zpf_channel ch;
    uint8_t *buf;
    size_t len;
    uint64_t at;
};

struct rec_event {
    enum zpf_event_type type;
    char name[ZPF_NAME_MAX + 1];
    enum zpf_state state;
    uint32_t incarnation;
    uint64_t at;
};

struct fake {
    uint64_t now;
    uint64_t rng;
    struct sent_pkt *sent;
    size_t nsent, sent_cap;
    struct rec_event *ev;
    size_t nev, ev_cap;
    unsigned long attempts; /* allocation calls with size > 0 */
    unsigned long fail_at;  /* 1-based attempt to fail; 0 never */
    bool fail_rest;         /* fail every attempt from fail_at on */
    long live;              /* blocks the node holds */
    struct zpf_env env;
};

static uint64_t fake_now(void *ctx)
{
    return ((struct fake *)ctx)->now;
}

static uint64_t fake_rand(void *ctx)
{
    struct fake *f = ctx;
    uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fake_send(void *ctx, const struct zpf_addr *to, const uint8_t *buf,
                      size_t len, enum zpf_channel ch)
{
    struct fake *f = ctx;
    if (f->nsent == f->sent_cap) {
        f->sent_cap = f->sent_cap ? f->sent_cap * 2 : 64;
        f->sent = realloc(f->sent, f->sent_cap * sizeof *f->sent);
        assert_non_null(f->sent);
    }
    struct sent_pkt *s = &f->sent[f->nsent++];
    s->to = *to;
    s->ch = ch;
    /* Exact size: a read past the end of what was sent is an ASan error. */
    s->buf = malloc(len ? len : 1);
    assert_non_null(s->buf);
    memcpy(s->buf, buf, len);
    s->len = len;
    s->at = f->now;
}

static void fake_notify(void *ctx, const struct zpf_event *ev)
{
    struct fake *f = ctx;
    if (f->nev == f->ev_cap) {
        f->ev_cap = f->ev_cap ? f->ev_cap * 2 : 64;
        f->ev = realloc(f->ev, f->ev_cap * sizeof *f->ev);
        assert_non_null(f->ev);
    }
    struct rec_event *e = &f->ev[f->nev++];
    e->type = ev->type;
    assert_true(strlen(ev->member.name) <= ZPF_NAME_MAX);
    strcpy(e->name, ev->member.name);
    e->state = ev->member.state;
    e->incarnation = ev->member.incarnation;
    e->at = f->now;
}

static void *fake_realloc(void *ctx, void *ptr, size_t size)
{
    struct fake *f = ctx;
    if (size == 0) {
        if (ptr != NULL)
            f->live--;
        free(ptr);
        return NULL;
    }
    f->attempts++;
    bool fail = f->attempts == f->fail_at ||
                (f->fail_rest && f->attempts > f->fail_at);
    if (f->fail_at != 0 && fail)
        return NULL;
    void *p = realloc(ptr, size);
    if (p != NULL && ptr == NULL)
        f->live++;
    return p;
}

static void fake_init(struct fake *f)
{
    memset(f, 0, sizeof *f);
    f->now = T0;
    f->rng = 0x5eed;
    f->env = (struct zpf_env){fake_now, fake_rand, fake_send, fake_notify,
                              fake_realloc, f};
}

static void fake_close(struct fake *f)
{
    for (size_t i = 0; i < f->nsent; i++)
        free(f->sent[i].buf);
    free(f->sent);
    free(f->ev);
    f->sent = NULL;
    f->ev = NULL;
    f->nsent = f->nev = 0;
}

/* --- addresses, names, events --------------------------------------------- */

static struct zpf_addr addr_n(unsigned i)
{
    struct zpf_addr a;
    memset(&a, 0, sizeof a);
    a.family = ZPF_AF_INET;
    a.ip[0] = 10;
    a.ip[1] = (uint8_t)(i >> 16);
    a.ip[2] = (uint8_t)(i >> 8);
    a.ip[3] = (uint8_t)i;
    a.port = 7946;
    return a;
}

static bool addr_eq(const struct zpf_addr *a, const struct zpf_addr *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

static struct zpf__str S(const char *s)
{
    return (struct zpf__str){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static bool str_is(struct zpf__str s, const char *c)
{
    return zpf__str_eq(s, c, strlen(c));
}

/* Events of `type` about `name` (NULL: anyone) recorded from index `from`. */
static size_t ev_count(const struct fake *f, size_t from,
                       enum zpf_event_type type, const char *name)
{
    size_t n = 0;
    for (size_t i = from; i < f->nev; i++)
        if (f->ev[i].type == type &&
            (name == NULL || strcmp(f->ev[i].name, name) == 0))
            n++;
    return n;
}

static const struct rec_event *ev_first(const struct fake *f, size_t from,
                                        enum zpf_event_type type,
                                        const char *name)
{
    for (size_t i = from; i < f->nev; i++)
        if (f->ev[i].type == type && strcmp(f->ev[i].name, name) == 0)
            return &f->ev[i];
    return NULL;
}

/* --- packets in ----------------------------------------------------------- */

struct pkt {
    uint8_t buf[1 << 16];
    struct zpf__writer w;
};

static void pkt_start(struct pkt *p, const char *cluster, const char *sender,
                      uint32_t inc, uint64_t counter)
{
    struct zpf__hdr h = {.version = ZPF_PROTOCOL_VERSION,
                         .cluster = S(cluster),
                         .sender = S(sender),
                         .incarnation = inc,
                         .counter = counter};
    zpf__wire_writer_init(&p->w, p->buf, sizeof p->buf);
    assert_int_equal(zpf__wire_put_hdr(&p->w, &h), 0);
}

static void pkt_put(struct pkt *p, const struct zpf__msg *m)
{
    assert_int_equal(zpf__wire_put_msg(&p->w, m), 0);
}

static struct zpf__msg m_ping(uint32_t seq, const char *target)
{
    return (struct zpf__msg){.type = ZPF__MSG_PING, .seq = seq,
                             .name = S(target)};
}

static struct zpf__msg m_ack(uint8_t type, uint32_t seq)
{
    return (struct zpf__msg){.type = type, .seq = seq};
}

static struct zpf__msg m_ping_req(uint32_t seq, const char *target,
                                  struct zpf_addr addr)
{
    return (struct zpf__msg){.type = ZPF__MSG_PING_REQ, .seq = seq,
                             .name = S(target), .addr = addr};
}

static struct zpf__msg m_alive(const char *name, uint32_t inc,
                               struct zpf_addr addr, uint64_t counter)
{
    return (struct zpf__msg){.type = ZPF__MSG_ALIVE, .name = S(name),
                             .incarnation = inc, .addr = addr,
                             .counter = counter};
}

static struct zpf__msg m_suspect(const char *name, uint32_t inc,
                                 const char *from, uint64_t counter)
{
    return (struct zpf__msg){.type = ZPF__MSG_SUSPECT, .name = S(name),
                             .incarnation = inc, .from = S(from),
                             .counter = counter};
}

static struct zpf__msg m_dead(const char *name, uint32_t inc, const char *from)
{
    return (struct zpf__msg){.type = ZPF__MSG_DEAD, .name = S(name),
                             .incarnation = inc, .from = S(from)};
}

static struct zpf__msg m_counter(const char *name, uint32_t inc, uint64_t c)
{
    return (struct zpf__msg){.type = ZPF__MSG_COUNTER, .name = S(name),
                             .incarnation = inc, .counter = c};
}

static struct zpf__msg m_stall(const char *name, uint32_t inc, uint64_t c)
{
    return (struct zpf__msg){.type = ZPF__MSG_STALL, .name = S(name),
                             .incarnation = inc, .counter = c};
}

static struct zpf__msg m_pushpull(uint32_t flags)
{
    return (struct zpf__msg){.type = ZPF__MSG_PUSHPULL, .flags = flags};
}

static struct zpf__msg m_record(const char *name, uint32_t inc,
                                enum zpf_state state, struct zpf_addr addr,
                                uint64_t counter)
{
    return (struct zpf__msg){.type = ZPF__MSG_RECORD, .name = S(name),
                             .incarnation = inc, .state = (uint8_t)state,
                             .addr = addr, .counter = counter};
}

/* --- packets out ---------------------------------------------------------- */

static void sent_hdr(const struct sent_pkt *s, struct zpf__hdr *h)
{
    struct zpf__reader r;
    assert_int_equal(zpf__wire_read_hdr(&r, s->buf, s->len, h), 0);
}

/* Decode every message of a sent packet into out[0..max); the node must
 * only ever send what the decoder accepts. */
static size_t sent_msgs(const struct sent_pkt *s, struct zpf__msg *out,
                        size_t max)
{
    struct zpf__reader r;
    struct zpf__hdr h;
    struct zpf__msg m;
    size_t n = 0;
    int rc;
    assert_int_equal(zpf__wire_validate(s->buf, s->len), 0);
    assert_int_equal(zpf__wire_read_hdr(&r, s->buf, s->len, &h), 0);
    while ((rc = zpf__wire_next(&r, &m)) == 1) {
        assert_true(n < max);
        out[n++] = m;
    }
    assert_int_equal(rc, 0);
    return n;
}

/* The first message of `type` (about `name`, unless NULL) in a packet. */
static bool sent_find(const struct sent_pkt *s, uint8_t type, const char *name,
                      struct zpf__msg *out)
{
    struct zpf__reader r;
    struct zpf__hdr h;
    struct zpf__msg m;
    assert_int_equal(zpf__wire_read_hdr(&r, s->buf, s->len, &h), 0);
    while (zpf__wire_next(&r, &m) == 1) {
        if (m.type == type && (name == NULL || str_is(m.name, name))) {
            if (out)
                *out = m;
            return true;
        }
    }
    return false;
}

static size_t sent_count(const struct sent_pkt *s, uint8_t type,
                         const char *name)
{
    struct zpf__reader r;
    struct zpf__hdr h;
    struct zpf__msg m;
    size_t n = 0;
    assert_int_equal(zpf__wire_read_hdr(&r, s->buf, s->len, &h), 0);
    while (zpf__wire_next(&r, &m) == 1)
        n += m.type == type && (name == NULL || str_is(m.name, name));
    return n;
}

/* Index of the first packet sent at or after `from` holding a message of
 * `type` (about `name`, unless NULL), or -1. */
static long find_sent(const struct fake *f, size_t from, uint8_t type,
                      const char *name)
{
    for (size_t i = from; i < f->nsent; i++)
        if (sent_find(&f->sent[i], type, name, NULL))
            return (long)i;
    return -1;
}

/* --- the world ------------------------------------------------------------ */

struct peer {
    char name[ZPF_NAME_MAX + 1];
    struct zpf_addr addr;
    uint32_t inc;
    uint64_t counter;
    bool acks;  /* answers PINGs addressed to it */
    bool beats; /* advances its counter every heartbeat_interval */
};

struct world {
    struct fake f;
    struct zpf_config cfg;
    struct zpf_node *node;
    struct peer peers[PEERS_MAX];
    size_t npeers;
    size_t scanned;     /* sent packets the responder has looked at */
    uint64_t next_beat; /* 0: nobody beats yet */
};

static const struct zpf_addr *self_addr(void)
{
    static struct zpf_addr a;
    a = addr_n(1);
    return &a;
}

static void world_config(struct zpf_config *cfg, const char *name)
{
    zpf_config_default(cfg);
    cfg->name = name;
    cfg->cluster = CLUSTER;
    cfg->addr = *self_addr();
}

/* Create the node from w->cfg, which world_init() filled with defaults and
 * a test may change in between (world_init_cfg). */
static void world_start(struct world *w)
{
    assert_int_equal(zpf_node_new(&w->cfg, &w->f.env, &w->node), 0);
    assert_non_null(w->node);
}

/* Worlds live on the heap and are remembered, so that a test that fails
 * an assertion (cmocka longjmps out of it) still has its world and node freed
 * by teardown_worlds(): a failing test must not also report leaks. */
#define WORLDS_MAX 8
static struct world *worlds[WORLDS_MAX];

static struct world *world_new(void)
{
    for (size_t i = 0; i < WORLDS_MAX; i++) {
        if (worlds[i] == NULL) {
            worlds[i] = calloc(1, sizeof *worlds[i]);
            assert_non_null(worlds[i]);
            return worlds[i];
        }
    }
    fail_msg("too many worlds");
    return NULL;
}

static int teardown_worlds(void **state)
{
    (void)state;
    for (size_t i = 0; i < WORLDS_MAX; i++) {
        if (worlds[i] == NULL)
            continue;
        zpf_node_free(worlds[i]->node);
        fake_close(&worlds[i]->f);
        free(worlds[i]);
        worlds[i] = NULL;
    }
    return 0;
}

static void world_prepare(struct world *w)
{
    memset(w, 0, sizeof *w);
    fake_init(&w->f);
    world_config(&w->cfg, "self");
}

static void world_init(struct world *w)
{
    world_prepare(w);
    world_start(w);
}

/* Free the node and check it gave back everything; the world itself stays
 * (a test may start another in it) until teardown_worlds(). */
static void world_free(struct world *w)
{
    zpf_node_free(w->node);
    w->node = NULL;
    assert_int_equal(w->f.live, 0);
    fake_close(&w->f);
}

static struct peer *peer_new(struct world *w, const char *name, uint32_t inc)
{
    assert_true(w->npeers < PEERS_MAX);
    struct peer *p = &w->peers[w->npeers];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->addr = addr_n(0x100 + (unsigned)w->npeers);
    p->inc = inc;
    w->npeers++;
    return p;
}

static struct peer *peer_find(struct world *w, const char *name)
{
    for (size_t i = 0; i < w->npeers; i++)
        if (strcmp(w->peers[i].name, name) == 0)
            return &w->peers[i];
    return NULL;
}

static int deliver_raw(struct world *w, const struct zpf_addr *from,
                       const uint8_t *buf, size_t len, enum zpf_channel ch)
{
    /* An exact-size copy: an overread in the decoder is an ASan error. */
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    int rc = zpf_node_receive(w->node, from, copy, len, ch);
    free(copy);
    return rc;
}

/* One packet from peer p carrying msgs (its header carries its counter). */
static int deliver(struct world *w, const struct peer *p,
                   const struct zpf__msg *msgs, size_t n, enum zpf_channel ch)
{
    struct pkt *k = malloc(sizeof *k);
    assert_non_null(k);
    pkt_start(k, CLUSTER, p->name, p->inc, p->counter);
    for (size_t i = 0; i < n; i++)
        pkt_put(k, &msgs[i]);
    int rc = deliver_raw(w, &p->addr, k->buf, k->w.len, ch);
    free(k);
    return rc;
}

static int deliver1(struct world *w, const struct peer *p, struct zpf__msg m)
{
    return deliver(w, p, &m, 1, ZPF_CH_PACKET);
}

/* A new peer announces itself: ALIVE about itself, in its own packet. */
static struct peer *peer_join(struct world *w, const char *name, uint32_t inc,
                              bool acks)
{
    struct peer *p = peer_new(w, name, inc);
    p->acks = acks;
    assert_int_equal(deliver1(w, p, m_alive(p->name, inc, p->addr,
                                            p->counter)), 0);
    return p;
}

/* Answer every PING the node sent to an acking peer since the last call. */
static void respond(struct world *w)
{
    while (w->scanned < w->f.nsent) {
        const struct sent_pkt *s = &w->f.sent[w->scanned++];
        if (s->ch != ZPF_CH_PACKET)
            continue;
        struct zpf__msg ping;
        if (!sent_find(s, ZPF__MSG_PING, NULL, &ping))
            continue;
        for (size_t i = 0; i < w->npeers; i++) {
            struct peer *p = &w->peers[i];
            if (p->acks && addr_eq(&p->addr, &s->to) &&
                str_is(ping.name, p->name)) {
                assert_int_equal(deliver1(w, p, m_ack(ZPF__MSG_ACK,
                                                      ping.seq)), 0);
                break;
            }
        }
    }
}

static void beat(struct world *w)
{
    for (size_t i = 0; i < w->npeers; i++) {
        struct peer *p = &w->peers[i];
        if (!p->beats)
            continue;
        p->counter++;
        assert_int_equal(deliver(w, p, NULL, 0, ZPF_CH_PACKET), 0);
    }
}

/* Start the beating peers' clock: first beat one heartbeat from now. */
static void beats_start(struct world *w)
{
    w->next_beat = w->f.now + w->cfg.heartbeat_interval_ms;
}

/*
 * Run the host loop until time t: tick at every deadline <= t, beat, and
 * answer pings.  If stop_type is nonzero, stop right after the first step
 * that sent a packet holding a message of that type to `stop_to` (any peer
 * if NULL) and return its index; otherwise return -1 with the clock at t.
 */
static long world_run(struct world *w, uint64_t t, uint8_t stop_type,
                      const char *stop_name)
{
    unsigned guard = 0;
    for (;;) {
        uint64_t d = zpf_node_next_deadline(w->node);
        uint64_t e = d;
        bool do_beat = false;
        if (w->next_beat && w->next_beat <= e) {
            e = w->next_beat;
            do_beat = true;
        }
        if (e > t)
            break;
        if (e > w->f.now)
            w->f.now = e;
        size_t before = w->f.nsent;
        if (do_beat) {
            beat(w);
            w->next_beat += w->cfg.heartbeat_interval_ms;
        } else {
            zpf_node_tick(w->node);
        }
        respond(w);
        if (stop_type) {
            long i = find_sent(&w->f, before, stop_type, stop_name);
            if (i >= 0)
                return i;
        }
        /* A deadline that does not move would spin forever. */
        assert_true(++guard < 10000000);
    }
    if (t > w->f.now)
        w->f.now = t;
    return -1;
}

static void world_step(struct world *w, uint64_t t)
{
    (void)world_run(w, t, 0, NULL);
}

/* The node's view of a member; fails the test if unknown. */
static struct zpf_member_info member(const struct world *w, const char *name)
{
    struct zpf_member_info mi;
    assert_int_equal(zpf_node_member_find(w->node, name, &mi), 0);
    return mi;
}

/* Whatever happened, the gauges agree with the member list. */
static void check_node(const struct zpf_node *node)
{
    uint32_t live = 0, selves = 0;
    size_t n = zpf_node_member_count(node);
    for (size_t i = 0; i < n; i++) {
        struct zpf_member_info mi;
        if (zpf_node_member_get(node, i, &mi) < 0)
            continue;
        live += mi.state == ZPF_STATE_ALIVE || mi.state == ZPF_STATE_SUSPECT ||
                mi.state == ZPF_STATE_STALLED;
        if (mi.is_self) {
            selves++;
            assert_string_equal(mi.name, zpf_node_name(node));
            assert_int_equal(mi.incarnation, zpf_node_incarnation(node));
        }
        struct zpf_member_info again;
        assert_int_equal(zpf_node_member_find(node, mi.name, &again), 0);
        assert_string_equal(again.name, mi.name);
    }
    assert_int_equal(selves, 1);
    assert_int_equal(zpf_node_stats(node)->members_alive, live);
    const struct zpf_stats *st = zpf_node_stats(node);
    assert_true(st->awareness < 64);
}

#endif
