/*
 * zpf gossip core: SWIM membership with the Lifeguard refinements and
 * per-node heartbeat counters, as a pure state machine.
 *
 * The core does no I/O.  It never reads a clock, draws a random number,
 * touches a socket or calls malloc by itself: everything comes through the
 * environment (struct zpf_env) given at creation.  The host (zpfd on libuv, or
 * the simulator in tests/sim) drives it:
 *
 *     zpf_node_receive()        for every packet or stream frame that arrives
 *     zpf_node_tick()           when zpf_node_next_deadline() has passed
 *
 * and the core answers through env->send and env->notify, from inside those
 * calls.  Many nodes can live in one process; there is no global state.
 *
 * Threading: a node is not thread-safe; call it from one thread.  Callbacks
 * run inside zpf_node_* calls and must not call back into the same node,
 * except the read-only zpf_node_member_* and zpf_node_stats functions.
 */
#ifndef ZPF_GOSSIP_H
#define ZPF_GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zpf/error.h"

#define ZPF_PROTOCOL_VERSION 1

#define ZPF_NAME_MAX 64     /* bytes in a node name, without the NUL */
#define ZPF_CLUSTER_MAX 64  /* bytes in a cluster id */
#define ZPF_META_MAX 512    /* bytes of opaque metadata per member */

/* An endpoint.  The core treats it as an opaque value that it compares,
 * copies and puts on the wire; only the host turns it into a socket address. */
struct zpf_addr {
    uint8_t family; /* ZPF_AF_INET or ZPF_AF_INET6 */
    uint8_t pad_;
    uint16_t port; /* host byte order */
    uint8_t ip[16]; /* network byte order; IPv4 uses the first 4 bytes */
};

#define ZPF_AF_INET 4
#define ZPF_AF_INET6 6

enum zpf_channel {
    ZPF_CH_PACKET = 0, /* datagram: may be lost, duplicated, reordered */
    ZPF_CH_STREAM = 1  /* reliable frame (TCP in zpfd): push-pull state */
};

enum zpf_state {
    ZPF_STATE_ALIVE = 0,
    ZPF_STATE_SUSPECT = 1,
    ZPF_STATE_DEAD = 2,
    ZPF_STATE_LEFT = 3,
    /* Answers probes but its heartbeat counter stopped advancing for
     * counter_timeout, seen first-hand by some observer and gossiped as a
     * STALL fact; refuted by any later counter value.  Not a state of the
     * precedence order: the member is alive in every other respect. */
    ZPF_STATE_STALLED = 4
};

const char *zpf_state_name(enum zpf_state s);

/* One member as seen by this node.  Pointers are borrowed: valid until the
 * next call that may change the node (receive, tick, join, leave). */
struct zpf_member_info {
    const char *name; /* NUL-terminated */
    struct zpf_addr addr;
    uint32_t incarnation;
    enum zpf_state state;
    uint64_t counter;        /* highest heartbeat counter seen */
    uint64_t counter_age_ms; /* since it last advanced, on this node's clock */
    uint64_t state_age_ms;   /* since the state last changed */
    const uint8_t *meta;     /* opaque, meta_len bytes */
    size_t meta_len;
    bool is_self;
};

enum zpf_event_type {
    ZPF_EV_JOIN,    /* a member became known, or came back after dead/left */
    ZPF_EV_UPDATE,  /* address or metadata changed */
    ZPF_EV_SUSPECT, /* a member is suspected */
    ZPF_EV_ALIVE,   /* a suspected member was cleared (refuted) */
    ZPF_EV_FAIL,    /* a member was declared dead */
    ZPF_EV_LEAVE,   /* a member left gracefully (never a failure) */
    ZPF_EV_STALL,   /* a member's heartbeat counter stalled */
    ZPF_EV_UNSTALL, /* a stalled member's counter advanced again */
    ZPF_EV_REAP     /* a dead or left member's tombstone was removed */
};

const char *zpf_event_name(enum zpf_event_type t);

struct zpf_event {
    enum zpf_event_type type;
    struct zpf_member_info member;
};

/*
 * The environment: everything the core needs from the outside world.
 * All callbacks receive env.ctx.  send() borrows buf for the call only.
 * realloc() follows realloc(3) with one addition: size 0 frees and returns
 * NULL.  The core copes with any allocation failing.
 */
struct zpf_env {
    uint64_t (*now_ms)(void *ctx); /* monotonic milliseconds */
    uint64_t (*rand64)(void *ctx); /* uniformly random bits */
    void (*send)(void *ctx, const struct zpf_addr *to, const uint8_t *buf,
                 size_t len, enum zpf_channel ch);
    void (*notify)(void *ctx, const struct zpf_event *ev); /* may be NULL */
    void *(*realloc)(void *ctx, void *ptr, size_t size);
    void *ctx;
};

/*
 * Tunables.  zpf_config_default() fills in memberlist's LAN profile; the
 * reasons for each default are in gossip/node.c.  Durations in milliseconds.
 */
struct zpf_config {
    const char *name;    /* unique in the cluster, 1..ZPF_NAME_MAX bytes */
    const char *cluster; /* packets with another cluster id are dropped */
    struct zpf_addr addr;  /* the address others reach this node at */
    const uint8_t *meta;   /* copied; at most ZPF_META_MAX bytes */
    size_t meta_len;
    /* The highest incarnation this node used before a restart (persisted by
     * the host), or 0 on first start.  The node starts above it. */
    uint32_t incarnation;

    uint32_t probe_interval_ms;   /* 1000 */
    uint32_t probe_timeout_ms;    /* 500 */
    uint32_t indirect_checks;     /* 3 */
    uint32_t suspicion_mult;      /* 4 */
    uint32_t suspicion_max_mult;  /* 6 */
    uint32_t gossip_interval_ms;  /* 200 */
    uint32_t gossip_nodes;        /* 3 */
    uint32_t retransmit_mult;     /* 4 */
    uint32_t push_pull_interval_ms; /* 30000; 0 disables periodic push-pull */
    uint32_t packet_budget;       /* 1400 bytes */
    uint32_t awareness_max;       /* 8: Lifeguard local health ceiling */
    uint32_t heartbeat_interval_ms; /* 250 */
    uint32_t counter_timeout_ms;  /* 10000: stalled after this */
    uint32_t tombstone_ms;        /* 86400000: dead/left records kept */
    uint32_t max_members;         /* 65536 */
    /* Let a first-hand, confirmed suspicion of a member whose counter stood
     * still expire after probe_interval * max(1, log10 n) instead of the
     * Lifeguard timeout (node.c).  Faster detection, at a price: a process
     * stopped for longer than about one probe period plus that is declared
     * dead and must rejoin.  Turn off where long pauses are normal. */
    bool counter_fast_expiry;     /* true */
    /* When a direct probe times out, also send it over the stream channel
     * (memberlist's TCP fallback probe); the target answers in kind.  For
     * hosts whose stream channel is a real second path. */
    bool stream_probe;            /* false */
};

void zpf_config_default(struct zpf_config *cfg);

/* Counters for an operator's graphs.  Monotonic unless noted. */
struct zpf_stats {
    uint64_t packets_in, packets_out, bytes_in, bytes_out;
    uint64_t frames_in, frames_out; /* stream channel */
    uint64_t decode_errors;         /* sum of the by-cause counts below */
    uint64_t decode_error_by_cause[16]; /* index: zpf__wire_cause(err) */
    uint64_t foreign_cluster;       /* dropped: another cluster id */
    uint64_t probes, probes_failed, indirect_probes;
    uint64_t nacks_sent, nacks_received;
    uint64_t suspicions_raised;     /* by this node's own failed probes */
    uint64_t suspicions_refuted;    /* suspect -> alive, for any member */
    uint64_t self_refutations;      /* this node refuted a rumour about itself */
    uint64_t deaths_declared;       /* by this node's own suspicion timer */
    uint64_t deaths_deferred;       /* timers that found a live counter */
    uint64_t stalls_declared;
    uint64_t push_pulls;
    uint64_t pauses;                /* ticks that came far too late */
    uint32_t awareness;             /* gauge: Lifeguard local health 0..max */
    uint32_t members_alive;         /* gauge: alive + suspect, self included */
};

struct zpf_node;

/* Create a node.  It is alone until zpf_node_join().  Returns 0 and sets
 * *out, or ZPF_EINVAL (bad config; *out untouched) or ZPF_ENOMEM. */
int zpf_node_new(const struct zpf_config *cfg, const struct zpf_env *env,
                 struct zpf_node **out);
void zpf_node_free(struct zpf_node *node);

/* Start a full-state push-pull with each seed address over the stream
 * channel.  The host retries with backoff until some member is known
 * (zpf_node_stats()->members_alive > 1).  Returns the number of frames sent,
 * or a negative code. */
int zpf_node_join(struct zpf_node *node, const struct zpf_addr *seeds,
                  size_t n);

/* Announce a graceful leave.  The host keeps driving the node for its
 * leave_timeout so the announcement spreads, then frees it. */
int zpf_node_leave(struct zpf_node *node);

/* Feed one datagram or stream frame.  buf is borrowed.  Returns 0, or a
 * negative code saying why it was dropped (also counted in the stats).
 * Never aborts on hostile input. */
int zpf_node_receive(struct zpf_node *node, const struct zpf_addr *from,
                     const uint8_t *buf, size_t len, enum zpf_channel ch);

/* Fire every timer that is due. */
void zpf_node_tick(struct zpf_node *node);

/* When zpf_node_tick() next has work, in env->now_ms() time.  Calling tick
 * earlier is harmless; calling it later delays the protocol (and a tick far
 * later than this is treated as the host having been paused). */
uint64_t zpf_node_next_deadline(const struct zpf_node *node);

/* Whether this node's local health checks pass.  While false, its own
 * heartbeat counter stops advancing (and observers will see it stall). */
void zpf_node_set_health(struct zpf_node *node, bool healthy);

/* Replace this node's metadata and broadcast it (ZPF_E2BIG if too long). */
int zpf_node_set_meta(struct zpf_node *node, const uint8_t *meta, size_t len);

/* Members, self included, by index: iterate i from 0 to member_count() and
 * skip the indices for which member_get returns ZPF_ENOENT (slots freed by
 * reaping).  Order is stable between changes but otherwise unspecified. */
size_t zpf_node_member_count(const struct zpf_node *node);
int zpf_node_member_get(const struct zpf_node *node, size_t i,
                        struct zpf_member_info *out);
int zpf_node_member_find(const struct zpf_node *node, const char *name,
                         struct zpf_member_info *out);

const struct zpf_stats *zpf_node_stats(const struct zpf_node *node);
uint32_t zpf_node_incarnation(const struct zpf_node *node);
uint64_t zpf_node_counter(const struct zpf_node *node);
const char *zpf_node_name(const struct zpf_node *node);

/* Bytes this node holds on the heap (member table, names, queues). */
size_t zpf_node_memory(const struct zpf_node *node);

/* The suspicion timeout Lifeguard gives a suspect with `confirmations`
 * independent confirmations in a cluster of n members.  Exposed for tests
 * and tools: min = suspicion_mult * max(1, log10 n) * probe_interval,
 * max = suspicion_max_mult * min, shrinking with log(c + 1) / log(k + 1)
 * where k = suspicion_mult - 2 expected confirmations. */
uint64_t zpf_suspicion_timeout(const struct zpf_config *cfg, size_t n,
                               uint32_t confirmations);

/* Retransmissions of each broadcast in a cluster of n members:
 * retransmit_mult * ceil(log10(n + 1)). */
uint32_t zpf_retransmit_limit(const struct zpf_config *cfg, size_t n);

#endif
