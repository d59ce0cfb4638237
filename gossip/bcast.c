/*
 * The dissemination queue: facts waiting to ride on outgoing packets.
 *
 * SWIM spreads membership changes by piggybacking them on the packets the
 * failure detector sends anyway.  Each fact is sent a limited number of times
 * (retransmit_mult * ceil(log10(n + 1)), enough for an epidemic to reach all
 * n members with high probability) and the least-sent facts go first, so a
 * new fact is not starved by old ones.  There is at most one fact per member:
 * a newer fact about a member replaces the older one and starts its count
 * again, because the newer fact subsumes it.
 *
 * The queue does not hold the fact itself, only which member it is about and
 * who said it; node.c encodes the member's current state when the packet is
 * built.  Entries sit in one list per transmit count (bucket), newest first,
 * so filling a packet visits only the entries it can use, whatever the queue
 * length: during a join of 10,000 nodes the queue holds thousands of facts
 * and a packet must still cost O(what fits).
 */
#include <string.h>

#include "core.h"

void zpf__bcast_init(struct zpf__bcast *q)
{
    memset(q, 0, sizeof *q);
    q->free_head = ZPF__NONE;
    for (unsigned i = 0; i < ZPF__BCAST_BUCKETS; i++)
        q->head[i] = ZPF__NONE;
}

void zpf__bcast_free(struct zpf__bcast *q, const struct zpf__alloc *a)
{
    a->realloc(a->ctx, q->e, 0);
    zpf__bcast_init(q);
}

static void unlink_entry(struct zpf__bcast *q, uint32_t i)
{
    struct zpf__bcast_entry *e = &q->e[i];
    if (e->prev != ZPF__NONE)
        q->e[e->prev].next = e->next;
    else
        q->head[e->transmits] = e->next;
    if (e->next != ZPF__NONE)
        q->e[e->next].prev = e->prev;
}

static void link_head(struct zpf__bcast *q, uint32_t i)
{
    struct zpf__bcast_entry *e = &q->e[i];
    e->prev = ZPF__NONE;
    e->next = q->head[e->transmits];
    if (e->next != ZPF__NONE)
        q->e[e->next].prev = i;
    q->head[e->transmits] = i;
}

/* Return an entry that is in no bucket list to the free list. */
static void free_unlinked(struct zpf__bcast *q, uint32_t i)
{
    q->e[i].in_use = 0;
    q->e[i].next = q->free_head;
    q->free_head = i;
    q->count--;
}

static void release(struct zpf__bcast *q, uint32_t i)
{
    unlink_entry(q, i);
    free_unlinked(q, i);
}

int zpf__bcast_put(struct zpf__bcast *q, const struct zpf__alloc *a,
                   uint32_t *entry_ref, uint32_t slot, uint32_t from)
{
    uint32_t i = *entry_ref;
    if (i != ZPF__NONE) {
        unlink_entry(q, i);
    } else {
        if (q->free_head != ZPF__NONE) {
            i = q->free_head;
            q->free_head = q->e[i].next;
        } else {
            struct zpf__bcast_entry *e = zpf__grow(a, q->e, &q->cap,
                                                   q->len + 1, sizeof *e);
            if (e == NULL)
                return ZPF_ENOMEM;
            q->e = e;
            i = q->len++;
        }
        q->count++;
        *entry_ref = i;
    }
    struct zpf__bcast_entry *e = &q->e[i];
    e->slot = slot;
    e->from = from;
    e->transmits = 0;
    e->in_use = 1;
    link_head(q, i);
    return 0;
}

void zpf__bcast_drop(struct zpf__bcast *q, uint32_t *entry_ref)
{
    if (*entry_ref == ZPF__NONE)
        return;
    release(q, *entry_ref);
    *entry_ref = ZPF__NONE;
}

/* Facts added to one packet at most; a 1400-byte budget holds fewer. */
#define FILL_MAX 256

unsigned zpf__bcast_fill(struct zpf__bcast *q,
                         uint32_t *(*ref)(void *ud, uint32_t slot),
                         zpf__bcast_try_fn try_fn, void *ud, unsigned limit,
                         unsigned max_misses)
{
    uint32_t sent[FILL_MAX];
    unsigned nsent = 0, misses = 0;
    if (limit > ZPF__BCAST_BUCKETS)
        limit = ZPF__BCAST_BUCKETS;

    for (unsigned b = 0; b < ZPF__BCAST_BUCKETS && nsent < FILL_MAX; b++) {
        uint32_t i = q->head[b];
        while (i != ZPF__NONE && nsent < FILL_MAX) {
            uint32_t next = q->e[i].next;
            if (b >= limit) {
                /* The cluster shrank since this was queued: spent. */
                *ref(ud, q->e[i].slot) = ZPF__NONE;
                release(q, i);
                i = next;
                continue;
            }
            int r = try_fn(ud, &q->e[i]);
            if (r > 0) {
                sent[nsent++] = i;
            } else if (r < 0) {
                *ref(ud, q->e[i].slot) = ZPF__NONE;
                release(q, i);
            } else if (++misses >= max_misses) {
                goto done;
            }
            i = next;
        }
    }
done:
    /* Move what was sent up one bucket only now, so the walk above never
     * meets an entry twice.  In reverse, so that pushing each on its new
     * bucket's head keeps the newest first there too. */
    for (unsigned k = nsent; k-- > 0;) {
        uint32_t i = sent[k];
        unlink_entry(q, i);
        if ((unsigned)q->e[i].transmits + 1 >= limit) {
            *ref(ud, q->e[i].slot) = ZPF__NONE;
            free_unlinked(q, i);
        } else {
            q->e[i].transmits++;
            link_head(q, i);
        }
    }
    return nsent;
}
