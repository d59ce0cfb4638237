/*
 * The member table: one record per known member, found by name.
 *
 * Records live in an array of slots that never move while in use, so other
 * structures (the suspicion list, the dissemination queue, the probe order)
 * refer to members by slot number, 4 bytes instead of a pointer.  Freed slots
 * (reaped tombstones) go on a free list and are reused.
 *
 * The name index is open addressing with linear probing over SipHash-2-4
 * keyed from the node's random source: names arrive from the network, and a
 * fixed hash would let a peer craft names that collide into one long chain.
 * Deletion shifts the following entries back, so there are no tombstones and
 * lookups stay short.  The index is kept at most three quarters full:
 * SipHash spreads well, and at 10,000 members every byte counts n^2 times.
 * An entry is slot + 1 in its low 24 bits and 8 bits of the name's hash in
 * its top bits: a probe that meets another name's entry is rejected without
 * reading that member's record, which at scale is a cache miss every time
 * (it was a third of the simulator's time at 2,000 nodes).
 *
 * Names are stored once, NUL-terminated, in an append-only arena; a reaped
 * member's name is not reclaimed.  Reaping happens after tombstone_ms, and
 * a node that comes back reuses its old record, so the arena only grows with
 * the number of distinct names ever seen, bounded by max_members.
 *
 * The probe order is SWIM's shuffled round-robin list.  A new member is put
 * at a random position, so that it is probed within one round and not
 * always last; node.c reshuffles it at the end of each round.
 */
#include <string.h>

#include <sodium.h>

#include "core.h"

void *zpf__grow(const struct zpf__alloc *a, void *ptr, uint32_t *cap,
                uint32_t need, size_t elem)
{
    if (need <= *cap)
        return ptr;
    /* 1.5x: a member table is the n^2 term of cluster memory, and doubling
     * would leave up to half of it unused (16,384 slots for 10,000 members). */
    uint64_t ncap = *cap ? *cap : 8;
    while (ncap < need)
        ncap += ncap / 2;
    if (ncap > UINT32_MAX || ncap * elem > SIZE_MAX / 2)
        return NULL;
    void *p = a->realloc(a->ctx, ptr, (size_t)ncap * elem);
    if (p == NULL)
        return NULL;
    *cap = (uint32_t)ncap;
    return p;
}

static uint32_t name_hash(const struct zpf__table *t, const uint8_t *name,
                          size_t len)
{
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, name, len, t->hash_key);
    uint32_t h;
    memcpy(&h, out, sizeof h);
    return h;
}

int zpf__table_init(struct zpf__table *t, const struct zpf__alloc *a,
                    const uint8_t key[16])
{
    (void)a;
    memset(t, 0, sizeof *t);
    t->free_head = ZPF__NONE;
    memcpy(t->hash_key, key, sizeof t->hash_key);
    return 0;
}

void zpf__table_free(struct zpf__table *t, const struct zpf__alloc *a)
{
    for (uint32_t i = 0; i < t->used; i++)
        if ((t->m[i].flags & ZPF__M_USED) && t->m[i].meta)
            a->realloc(a->ctx, t->m[i].meta, 0);
    a->realloc(a->ctx, t->m, 0);
    a->realloc(a->ctx, t->index, 0);
    a->realloc(a->ctx, t->names, 0);
    a->realloc(a->ctx, t->order, 0);
    memset(t, 0, sizeof *t);
}

#define SLOT_BITS 24
#define SLOT_MASK ((1u << SLOT_BITS) - 1)

static uint32_t entry_of(uint32_t hash, uint32_t slot)
{
    return (hash & ~SLOT_MASK) | (slot + 1);
}

static uint32_t slot_of_entry(uint32_t v)
{
    return (v & SLOT_MASK) - 1;
}

uint32_t zpf__table_find(const struct zpf__table *t, const uint8_t *name,
                         size_t len)
{
    if (t->index_cap == 0)
        return ZPF__NONE;
    uint32_t mask = t->index_cap - 1;
    uint32_t h = name_hash(t, name, len);
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t v = t->index[i];
        if (v == 0)
            return ZPF__NONE;
        if ((v ^ h) & ~SLOT_MASK)
            continue;
        const struct zpf__member *m = &t->m[slot_of_entry(v)];
        if (m->name_len == len &&
            memcmp(t->names + m->name_off, name, len) == 0)
            return slot_of_entry(v);
    }
}

static uint32_t slot_hash(const struct zpf__table *t, uint32_t slot)
{
    const struct zpf__member *m = &t->m[slot];
    return name_hash(t, (const uint8_t *)t->names + m->name_off, m->name_len);
}

static void index_put(struct zpf__table *t, uint32_t slot)
{
    uint32_t mask = t->index_cap - 1;
    uint32_t h = slot_hash(t, slot);
    uint32_t i = h & mask;
    while (t->index[i] != 0)
        i = (i + 1) & mask;
    t->index[i] = entry_of(h, slot);
}

static int index_reserve(struct zpf__table *t, const struct zpf__alloc *a,
                         uint32_t count)
{
    if ((uint64_t)count * 4 <= (uint64_t)t->index_cap * 3)
        return 0;
    uint32_t ncap = t->index_cap ? t->index_cap * 2 : 16;
    while ((uint64_t)count * 4 > (uint64_t)ncap * 3)
        ncap *= 2;
    uint32_t *idx = a->realloc(a->ctx, NULL, (size_t)ncap * sizeof *idx);
    if (idx == NULL)
        return ZPF_ENOMEM;
    memset(idx, 0, (size_t)ncap * sizeof *idx);
    a->realloc(a->ctx, t->index, 0);
    t->index = idx;
    t->index_cap = ncap;
    for (uint32_t s = 0; s < t->used; s++)
        if (t->m[s].flags & ZPF__M_USED)
            index_put(t, s);
    return 0;
}

uint32_t zpf__table_add(struct zpf__table *t, const struct zpf__alloc *a,
                        const uint8_t *name, size_t len)
{
    if (len == 0 || len > ZPF_NAME_MAX)
        return ZPF__NONE;
    if (index_reserve(t, a, t->count + 1) < 0)
        return ZPF__NONE;
    char *names = zpf__grow(a, t->names, &t->names_cap,
                            t->names_len + (uint32_t)len + 1, 1);
    if (names == NULL)
        return ZPF__NONE;
    t->names = names;

    uint32_t slot;
    if (t->free_head == ZPF__NONE && t->used >= SLOT_MASK - 1)
        return ZPF__NONE; /* the index holds slot numbers in 24 bits */
    if (t->free_head != ZPF__NONE) {
        slot = t->free_head;
        t->free_head = t->m[slot].susp;
    } else {
        struct zpf__member *m = zpf__grow(a, t->m, &t->cap, t->used + 1,
                                          sizeof *m);
        if (m == NULL)
            return ZPF__NONE;
        t->m = m;
        slot = t->used++;
    }
    struct zpf__member *m = &t->m[slot];
    memset(m, 0, sizeof *m);
    m->flags = ZPF__M_USED;
    m->bcast = ZPF__NONE;
    m->susp = ZPF__NONE;
    m->name_off = t->names_len;
    m->name_len = (uint8_t)len;
    memcpy(t->names + t->names_len, name, len);
    t->names[t->names_len + len] = '\0';
    t->names_len += (uint32_t)len + 1;
    t->count++;
    index_put(t, slot);
    return slot;
}

void zpf__table_remove(struct zpf__table *t, const struct zpf__alloc *a,
                       uint32_t slot)
{
    struct zpf__member *m = &t->m[slot];
    uint32_t mask = t->index_cap - 1;
    uint32_t i = slot_hash(t, slot) & mask;
    while ((t->index[i] & SLOT_MASK) != slot + 1)
        i = (i + 1) & mask;
    /* Backward-shift deletion: pull later entries of the run into the hole
     * when their home position is not between the hole and themselves. */
    for (uint32_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        uint32_t v = t->index[j];
        if (v == 0)
            break;
        uint32_t home = slot_hash(t, slot_of_entry(v)) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t->index[i] = v;
            i = j;
        }
    }
    t->index[i] = 0;

    if (m->meta)
        a->realloc(a->ctx, m->meta, 0);
    if (m->flags & ZPF__M_ORDER) {
        for (uint32_t k = 0; k < t->order_len; k++) {
            if (t->order[k] == slot) {
                t->order[k] = t->order[--t->order_len];
                break;
            }
        }
    }
    memset(m, 0, sizeof *m);
    m->susp = t->free_head;
    t->free_head = slot;
    t->count--;
}

int zpf__table_order_insert(struct zpf__table *t, const struct zpf__alloc *a,
                            uint32_t slot, uint64_t rnd)
{
    if (t->m[slot].flags & ZPF__M_ORDER)
        return 0;
    uint32_t *o = zpf__grow(a, t->order, &t->order_cap, t->order_len + 1,
                            sizeof *o);
    if (o == NULL)
        return ZPF_ENOMEM;
    t->order = o;
    /* Swap into a random position: the displaced member goes to the end,
     * which keeps it in the current round. */
    uint32_t pos = (uint32_t)(rnd % ((uint64_t)t->order_len + 1));
    o[t->order_len] = o[pos];
    o[pos] = slot;
    t->order_len++;
    t->m[slot].flags |= ZPF__M_ORDER;
    return 0;
}
