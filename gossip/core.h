/*
 * Internals shared by the files of the gossip core (not a public API).
 *
 *   timing.c   defaults and the Lifeguard/SWIM arithmetic
 *   members.c  the member table: slots, name index, probe order
 *   bcast.c    the dissemination queue (transmit-limited, least-sent first)
 *   node.c     the protocol: probes, suspicion, counters, push-pull
 */
#ifndef ZPF_GOSSIP_CORE_H
#define ZPF_GOSSIP_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zpf/gossip.h"

#define ZPF__NONE UINT32_MAX

enum {
    ZPF__M_USED = 1,     /* slot holds a member */
    ZPF__M_ORDER = 2,    /* slot is in the probe order */
    ZPF__M_STALLED = 4,  /* alive, but its counter stood still (STALL fact) */
    ZPF__M_COUNTER = 8   /* a counter value has been seen for it */
};

/*
 * One member record.  Every node holds one per member of the cluster, so
 * the cluster's memory grows as n^2: at n = 10,000 each byte here costs
 * 100 MB across a simulated cluster.  72 bytes (static_assert below), plus
 * the name (arena), 4-6 in the probe order and 5-8 in the name index.
 * Times are this node's own monotonic clock; nothing here came from another.
 */
struct zpf__member {
    uint64_t counter;       /* highest heartbeat counter seen, this incarnation */
    uint64_t counter_at;    /* ms when it last advanced (or was first seen) */
    uint8_t *meta;          /* owned copy, NULL when meta_len == 0 */
    struct zpf_addr addr;
    uint32_t incarnation;
    uint32_t name_off;      /* into the name arena, NUL-terminated */
    uint32_t bcast;         /* queue entry index, or ZPF__NONE */
    uint32_t susp;          /* suspicion index, or ZPF__NONE */
    uint32_t counter_bench; /* node bench (24.8 fixed point, wrapping) then */
    uint32_t state_ds;      /* deciseconds after node start: state changed */
    uint16_t meta_len;
    uint8_t name_len;
    uint8_t state : 4;      /* enum zpf_state: ALIVE..LEFT */
    uint8_t flags : 4;      /* ZPF__M_* */
};

_Static_assert(sizeof(struct zpf__member) == 72,
               "the member record is the n^2 term of cluster memory");

/* --- member table (members.c) ------------------------------------------ */

struct zpf__table {
    struct zpf__member *m;
    uint32_t cap, used;    /* slots allocated; high-water mark of slots */
    uint32_t count;        /* slots in use */
    uint32_t free_head;    /* free slot list through .susp, or ZPF__NONE */
    uint32_t *index;       /* open addressing: slot + 1, 0 = empty */
    uint32_t index_cap;    /* power of two */
    char *names;
    uint32_t names_len, names_cap;
    uint32_t *order;       /* probe order: slots */
    uint32_t order_len, order_cap, order_pos;
    uint8_t hash_key[16];  /* SipHash key: names come from the network */
};

struct zpf__alloc {
    void *(*realloc)(void *ctx, void *ptr, size_t size);
    void *ctx;
};

void *zpf__grow(const struct zpf__alloc *a, void *ptr, uint32_t *cap,
                uint32_t need, size_t elem);

int zpf__table_init(struct zpf__table *t, const struct zpf__alloc *a,
                    const uint8_t key[16]);
void zpf__table_free(struct zpf__table *t, const struct zpf__alloc *a);
uint32_t zpf__table_find(const struct zpf__table *t, const uint8_t *name,
                         size_t len);
/* Add a member with this name; returns its slot or ZPF__NONE (no memory).
 * Fields other than the name are zeroed (bcast/susp = ZPF__NONE). */
uint32_t zpf__table_add(struct zpf__table *t, const struct zpf__alloc *a,
                        const uint8_t *name, size_t len);
void zpf__table_remove(struct zpf__table *t, const struct zpf__alloc *a,
                       uint32_t slot);
static inline const char *zpf__table_name(const struct zpf__table *t,
                                          uint32_t slot)
{
    return t->names + t->m[slot].name_off;
}
/* Put slot into the probe order at a random position (rnd: random bits). */
int zpf__table_order_insert(struct zpf__table *t, const struct zpf__alloc *a,
                            uint32_t slot, uint64_t rnd);

/* --- dissemination queue (bcast.c) ------------------------------------- */

#define ZPF__BCAST_BUCKETS 64 /* retransmit limits above this are clamped */

struct zpf__bcast_entry {
    uint32_t slot;      /* the member the fact is about */
    uint32_t from;      /* slot of the node that said it (suspect, dead) */
    uint32_t prev, next;
    uint8_t transmits;
    uint8_t in_use;
};

struct zpf__bcast {
    struct zpf__bcast_entry *e;
    uint32_t cap, len, free_head;
    uint32_t head[ZPF__BCAST_BUCKETS]; /* by transmit count, newest first */
    uint32_t count;
};

void zpf__bcast_init(struct zpf__bcast *q);
void zpf__bcast_free(struct zpf__bcast *q, const struct zpf__alloc *a);
/* Queue the current fact about member `slot` (said by `from`), replacing any
 * older fact about the same member.  *entry_ref is the member's bcast field. */
int zpf__bcast_put(struct zpf__bcast *q, const struct zpf__alloc *a,
                   uint32_t *entry_ref, uint32_t slot, uint32_t from);
void zpf__bcast_drop(struct zpf__bcast *q, uint32_t *entry_ref);

/* Fill a packet: visit pending entries least-transmitted first (newest first
 * within a count) and call try() for each; try returns 1 if it added the
 * fact, 0 if it did not fit, <0 to skip the entry (stale).  Entries added
 * count one transmission and are dropped at `limit`.  Stops after
 * `max_misses` facts that did not fit.  Returns the number added. */
typedef int (*zpf__bcast_try_fn)(void *ud, const struct zpf__bcast_entry *e);
unsigned zpf__bcast_fill(struct zpf__bcast *q, uint32_t *(*ref)(void *ud,
                         uint32_t slot), zpf__bcast_try_fn try_fn, void *ud,
                         unsigned limit, unsigned max_misses);

#endif
