/*
 * Tests for the member table (gossip/members.c).
 *
 * The table is the one structure every other part of the node indexes by
 * slot number, so the tests check the invariants the rest relies on: a name
 * finds its slot until it is removed, whatever else was removed around it
 * (backward-shift deletion gets this wrong easily, and only for some hash
 * layouts, hence the 10,000 names); a freed slot is reused; an allocation
 * failure at any point leaves the table as it was; nothing leaks (counted
 * here, and checked by ASan under SAN=1).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define MANY 10000

/* An allocator that counts live blocks and can fail the n-th attempt. */
struct alloc_ctx {
    unsigned long attempts; /* calls with size > 0 */
    unsigned long fail_at;  /* 1-based attempt to fail; 0 never */
    long live;              /* blocks held */
};

static void *counting_realloc(void *ctx, void *ptr, size_t size)
{
    struct alloc_ctx *c = ctx;
    if (size == 0) {
        if (ptr != NULL)
            c->live--;
        free(ptr);
        return NULL;
    }
    if (++c->attempts == c->fail_at)
        return NULL;
    void *p = realloc(ptr, size);
    if (p != NULL && ptr == NULL)
        c->live++;
    return p;
}

static const uint8_t KEY[16] = {1, 2, 3, 4, 5, 6, 7, 8,
                                9, 10, 11, 12, 13, 14, 15, 16};

static size_t name_of(unsigned i, char *buf)
{
    return (size_t)snprintf(buf, 32, "node-%u.dc%u", i, i % 7);
}

static uint32_t add(struct zpf__table *t, const struct zpf__alloc *a,
                    const char *name)
{
    return zpf__table_add(t, a, (const uint8_t *)name, strlen(name));
}

static uint32_t find(const struct zpf__table *t, const char *name)
{
    return zpf__table_find(t, (const uint8_t *)name, strlen(name));
}

/* Scan every slot: used ones are findable under their own name, the index
 * holds exactly `count` entries, and no two point at one slot. */
static void check_table(const struct zpf__table *t)
{
    uint32_t used = 0;
    for (uint32_t s = 0; s < t->used; s++) {
        if (!(t->m[s].flags & ZPF__M_USED))
            continue;
        used++;
        const char *nm = zpf__table_name(t, s);
        assert_int_equal(strlen(nm), t->m[s].name_len);
        assert_int_equal(zpf__table_find(t, (const uint8_t *)nm,
                                         t->m[s].name_len), s);
    }
    assert_int_equal(used, t->count);
    uint32_t in_index = 0;
    for (uint32_t i = 0; i < t->index_cap; i++)
        in_index += t->index[i] != 0;
    assert_int_equal(in_index, t->count);
    /* At most three quarters full (members.c's essay), or linear probing
     * stops being short. */
    assert_true((uint64_t)t->count * 4 <= (uint64_t)t->index_cap * 3 ||
                t->index_cap == 0);
}

/* --- add / find / remove -------------------------------------------------- */

static void test_empty_table(void **state)
{
    (void)state;
    struct alloc_ctx c = {0};
    struct zpf__alloc a = {counting_realloc, &c};
    struct zpf__table t;
    assert_int_equal(zpf__table_init(&t, &a, KEY), 0);
    assert_int_equal(t.count, 0);
    assert_int_equal(t.free_head, ZPF__NONE);
    assert_int_equal(find(&t, "x"), ZPF__NONE);
    zpf__table_free(&t, &a);
    assert_int_equal(c.live, 0);
}

static void test_add_find_many(void **state)
{
    (void)state;
    struct alloc_ctx c = {0};
    struct zpf__alloc a = {counting_realloc, &c};
    struct zpf__table t;
    char nm[32];
    zpf__table_init(&t, &a, KEY);

    for (unsigned i = 0; i < MANY; i++) {
        size_t len = name_of(i, nm);
        uint32_t s = zpf__table_add(&t, &a, (const uint8_t *)nm, len);
        /* Slots are handed out densely while nothing was freed. */
        assert_int_equal(s, i);
        const struct zpf__member *m = &t.m[s];
        assert_int_equal(m->flags, ZPF__M_USED);
        assert_int_equal(m->bcast, ZPF__NONE);
        assert_int_equal(m->susp, ZPF__NONE);
        assert_int_equal(m->state, 0);
        assert_int_equal(m->incarnation, 0);
        assert_null(m->meta);
        assert_string_equal(zpf__table_name(&t, s), nm);
    }
    assert_int_equal(t.count, MANY);
    for (unsigned i = 0; i < MANY; i++) {
        size_t len = name_of(i, nm);
        assert_int_equal(zpf__table_find(&t, (const uint8_t *)nm, len), i);
        /* A prefix, or one byte more, is another name. */
        assert_int_equal(zpf__table_find(&t, (const uint8_t *)nm, len - 1),
                         ZPF__NONE);
    }
    assert_int_equal(find(&t, "node-10000.dc4"), ZPF__NONE);
    check_table(&t);
    zpf__table_free(&t, &a);
    assert_int_equal(c.live, 0);
}

static void test_name_length_bounds(void **state)
{
    (void)state;
    struct alloc_ctx c = {0};
    struct zpf__alloc a = {counting_realloc, &c};
    struct zpf__table t;
    char longest[ZPF_NAME_MAX + 2];
    memset(longest, 'n', sizeof longest);
    zpf__table_init(&t, &a, KEY);

    uint32_t s1 = zpf__table_add(&t, &a, (const uint8_t *)"x", 1);
    assert_int_not_equal(s1, ZPF__NONE);
    uint32_t s64 = zpf__table_add(&t, &a, (const uint8_t *)longest,
                                  ZPF_NAME_MAX);
    assert_int_not_equal(s64, ZPF__NONE);
    assert_int_equal(t.m[s64].name_len, ZPF_NAME_MAX);
    assert_int_equal(strlen(zpf__table_name(&t, s64)), ZPF_NAME_MAX);

    assert_int_equal(zpf__table_add(&t, &a, (const uint8_t *)"", 0),
                     ZPF__NONE);
    assert_int_equal(zpf__table_add(&t, &a, (const uint8_t *)longest,
                                    ZPF_NAME_MAX + 1), ZPF__NONE);
    /* Rejections change nothing. */
    assert_int_equal(t.count, 2);
    assert_int_equal(zpf__table_find(&t, (const uint8_t *)"x", 1), s1);
    assert_int_equal(zpf__table_find(&t, (const uint8_t *)longest,
                                     ZPF_NAME_MAX), s64);
    assert_int_equal(zpf__table_find(&t, (const uint8_t *)longest,
                                     ZPF_NAME_MAX + 1), ZPF__NONE);
    check_table(&t);
    zpf__table_free(&t, &a);
    assert_int_equal(c.live, 0);
}

static void test_remove_every_other(void **state)
{
    (void)state;
    struct alloc_ctx c = {0};
    struct zpf__alloc a = {counting_realloc, &c};
    struct zpf__table t;
    char nm[32];
    zpf__table_init(&t, &a, KEY);

    for (unsigned i = 0; i < MANY; i++) {
        name_of(i, nm);
        assert_int_equal(add(&t, &a, nm), i);
    }
    for (unsigned i = 0; i < MANY; i += 2) {
        name_of(i, nm);
        zpf__table_remove(&t, &a, find(&t, nm));
        /* Every few removals, everyone left must still be found: a
         * backward shift that moves an entry before its home breaks some
         * other name, not the removed one. */
        if (i % 1000 == 0)
            check_table(&t);
    }
    assert_int_equal(t.count, MANY / 2);
    for (unsigned i = 0; i < MANY; i++) {
        name_of(i, nm);
        assert_int_equal(find(&t, nm), i % 2 ? i : ZPF__NONE);
        if (i % 2 == 0)
            assert_int_equal(t.m[i].flags & ZPF__M_USED, 0);
    }
    check_table(&t);

    /* Remove the rest in reverse: the index ends empty. */
    for (unsigned i = MANY - 1; i < MANY; i -= 2) {
        name_of(i, nm);
        zpf__table_remove(&t, &a, find(&t, nm));
    }
    assert_int_equal(t.count, 0);
    check_table(&t);
    zpf__table_free(&t, &a);
    assert_int_equal(c.live, 0);
}

static void test_slot_reuse(void **state)
{
    (void)state;
    struct alloc_ctx c = {0};
    struct zpf__alloc a = {counting_realloc, &c};
    struct zpf__table t;
    zpf__table_init(&t, &a, KEY);

    for (unsigned i = 0; i < 10; i++) {
        char nm[32];
        name_of(i, nm);
        add(&t, &a, nm);
    }
    /* Dirty a record the way node.c would, including owned metadata. */
    t.m[3].meta = counting_realloc(&c, NULL, 5);
    memcpy(t.m[3].meta, "meta!", 5);
    t.m[3].meta_len = 5;
    t.m[3].incarnation = 77;
    t.m[3].bcast = 12;
    t.m[3].state = ZPF_STATE_DEAD;
    long live = c.live;

    zpf__table_remove(&t, &a, 3);
    assert_int_equal(c.live, live - 1); /* the metadata went with it */
    zpf__table_remove(&t, &a, 6);
    uint32_t used = t.used;

    /* Freed slots are reused, most recently freed first, and come back
     * clean, under their new name. */
    uint32_t s = add(&t, &a, "fresh-a");
    assert_int_equal(s, 6);
    s = add(&t, &a, "fresh-b");
    assert_int_equal(s, 3);
    assert_int_equal(t.m[3].incarnation, 0);
    assert_int_equal(t.m[3].bcast, ZPF__NONE);
    assert_int_equal(t.m[3].susp, ZPF__NONE);
    assert_int_equal(t.m[3].state, 0);
    assert_null(t.m[3].meta);
    assert_int_equal(t.m[3].meta_len, 0);
    assert_string_equal(zpf__table_name(&t, 3), "fresh-b");
    assert_int_equal(t.used, used);
    assert_int_equal(find(&t, "node-3.dc3"), ZPF__NONE);
    assert_int_equal(find(&t, "fresh-b"), 3);
    /* No free slot left: the next one is new. */
    assert_int_equal(add(&t, &a, "fresh-c"), 10);

    /* A removed name can come back (a reaped member returns). */
    assert_int_not_equal(add(&t, &a, "node-3.dc3"), ZPF__NONE);
    check_table(&t);
    zpf__table_free(&t, &a);
    assert_int_equal(c.live, 0);
}

/* --- probe order ---------------------------------------------------------- */

static void test_order_insert(void **state)
{
    (void)state;
    struct alloc_ctx c = {0};
    struct zpf__alloc a = {counting_realloc, &c};
    struct zpf__table t;
    zpf__table_init(&t, &a, KEY);
    enum { N = 500 };
    uint64_t x = 12345;

    for (unsigned i = 0; i < N; i++) {
        char nm[32];
        name_of(i, nm);
        uint32_t s = add(&t, &a, nm);
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        assert_int_equal(zpf__table_order_insert(&t, &a, s, x), 0);
        assert_true(t.m[s].flags & ZPF__M_ORDER);
        /* A second insert is a no-op, not a duplicate. */
        assert_int_equal(zpf__table_order_insert(&t, &a, s, x >> 7), 0);
        assert_int_equal(t.order_len, i + 1);
    }
    uint8_t seen[N] = {0};
    for (uint32_t k = 0; k < t.order_len; k++) {
        assert_true(t.order[k] < N);
        assert_int_equal(seen[t.order[k]], 0);
        seen[t.order[k]] = 1;
    }
    /* The position is random: not simply appended. */
    unsigned in_place = 0;
    for (uint32_t k = 0; k < N; k++)
        in_place += t.order[k] == k;
    assert_true(in_place < N / 2);

    /* rnd = 0 puts the new member first and the displaced one last. */
    uint32_t first = t.order[0];
    uint32_t s = add(&t, &a, "newcomer");
    assert_int_equal(zpf__table_order_insert(&t, &a, s, 0), 0);
    assert_int_equal(t.order[0], s);
    assert_int_equal(t.order[t.order_len - 1], first);

    /* Removing a member takes it out of the order. */
    zpf__table_remove(&t, &a, s);
    assert_int_equal(t.order_len, N);
    for (uint32_t k = 0; k < t.order_len; k++)
        assert_int_not_equal(t.order[k], s);
    check_table(&t);
    zpf__table_free(&t, &a);
    assert_int_equal(c.live, 0);
}

/* --- allocation failure --------------------------------------------------- */

/* Fail the n-th allocation for every n a run of `names` adds (and order
 * inserts) makes: each call either succeeds or reports failure and leaves
 * the table as it was, and the table works normally afterwards. */
static void test_fail_nth_allocation(void **state)
{
    (void)state;
    enum { NAMES = 300 };
    char nm[32];

    /* How many attempts a clean run makes. */
    struct alloc_ctx c = {0};
    struct zpf__alloc a = {counting_realloc, &c};
    struct zpf__table t;
    zpf__table_init(&t, &a, KEY);
    for (unsigned i = 0; i < NAMES; i++) {
        name_of(i, nm);
        uint32_t s = add(&t, &a, nm);
        zpf__table_order_insert(&t, &a, s, i);
    }
    zpf__table_free(&t, &a);
    unsigned long total = c.attempts;
    assert_true(total > 10);

    for (unsigned long n = 1; n <= total + 1; n++) {
        struct alloc_ctx fc = {.fail_at = n};
        struct zpf__alloc fa = {counting_realloc, &fc};
        unsigned failures = 0;
        zpf__table_init(&t, &fa, KEY);
        for (unsigned i = 0; i < NAMES; i++) {
            name_of(i, nm);
            uint32_t count = t.count, used = t.used;
            uint32_t s = add(&t, &fa, nm);
            if (s == ZPF__NONE) {
                failures++;
                assert_int_equal(t.count, count);
                assert_int_equal(t.used, used);
                assert_int_equal(find(&t, nm), ZPF__NONE);
                check_table(&t);
                /* The failure is spent: the retry succeeds. */
                s = add(&t, &fa, nm);
                assert_int_not_equal(s, ZPF__NONE);
            }
            uint32_t len = t.order_len;
            int rc = zpf__table_order_insert(&t, &fa, s, i);
            if (rc < 0) {
                failures++;
                assert_int_equal(rc, ZPF_ENOMEM);
                assert_int_equal(t.order_len, len);
                assert_int_equal(t.m[s].flags & ZPF__M_ORDER, 0);
                assert_int_equal(zpf__table_order_insert(&t, &fa, s, i), 0);
            }
            assert_true(t.m[s].flags & ZPF__M_ORDER);
        }
        /* Exactly the one injected failure was seen, if it was reached. */
        assert_int_equal(failures, n <= total ? 1 : 0);
        assert_int_equal(t.count, NAMES);
        assert_int_equal(t.order_len, NAMES);
        check_table(&t);
        zpf__table_free(&t, &fa);
        assert_int_equal(fc.live, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_table),
        cmocka_unit_test(test_add_find_many),
        cmocka_unit_test(test_name_length_bounds),
        cmocka_unit_test(test_remove_every_other),
        cmocka_unit_test(test_slot_reuse),
        cmocka_unit_test(test_order_insert),
        cmocka_unit_test(test_fail_nth_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
