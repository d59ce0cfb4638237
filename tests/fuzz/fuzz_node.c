/*
 * libFuzzer target: a whole node fed hostile input.
 *
 * The decoder has its own target (fuzz_wire.c); this one drives what comes
 * after it.  Every input is cut into datagrams and stream frames by a
 * small framing (first byte: channel and a clock step, next two: length),
 * fed to a node that already knows a few members, with ticks in between.
 * Whatever the bytes say, the node must not crash, leak, read out of
 * bounds, or break its own invariants (checked after every step through the
 * public API).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zpf/gossip.h"

struct fenv {
    uint64_t now;
    uint64_t rng;
};

static uint64_t f_now(void *ctx)
{
    return ((struct fenv *)ctx)->now;
}

static uint64_t f_rand(void *ctx)
{
    struct fenv *e = ctx;
    uint64_t z = (e->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void f_send(void *ctx, const struct zpf_addr *to, const uint8_t *buf,
                   size_t len, enum zpf_channel ch)
{
    (void)ctx;
    (void)to;
    (void)ch;
    /* Touch every byte: an out-of-bounds length shows up under ASan. */
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < len; i++)
        sink ^= buf[i];
    (void)sink;
}

static void *f_realloc(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if (size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, size);
}

static void check(const struct zpf_node *n)
{
    size_t live = 0;
    struct zpf_member_info mi;
    for (size_t i = 0; i < zpf_node_member_count(n); i++) {
        if (zpf_node_member_get(n, i, &mi) != 0)
            continue;
        if (mi.state == ZPF_STATE_ALIVE || mi.state == ZPF_STATE_SUSPECT ||
            mi.state == ZPF_STATE_STALLED)
            live++;
        if (strlen(mi.name) == 0 || strlen(mi.name) > ZPF_NAME_MAX)
            abort();
        if (mi.meta_len > ZPF_META_MAX)
            abort();
    }
    if (live != zpf_node_stats(n)->members_alive)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fenv fe = {.now = 1000000, .rng = 42};
    struct zpf_env env = {f_now, f_rand, f_send, NULL, f_realloc, &fe};
    struct zpf_config cfg;
    zpf_config_default(&cfg);
    cfg.name = "fuzz";
    cfg.cluster = "prod"; /* as in the seed corpora */
    cfg.addr = (struct zpf_addr){.family = ZPF_AF_INET, .port = 7946,
                                 .ip = {127, 0, 0, 1}};
    struct zpf_node *n;
    if (zpf_node_new(&cfg, &env, &n) != 0)
        return 0;
    struct zpf_addr from = {.family = ZPF_AF_INET, .port = 7947,
                            .ip = {127, 0, 0, 2}};

    while (size >= 3) {
        uint8_t ctl = data[0];
        size_t len = (size_t)data[1] << 8 | data[2];
        data += 3;
        size -= 3;
        if (len > size)
            len = size;
        fe.now += (uint64_t)(ctl >> 1) * 37; /* up to ~4.7 s per step */
        zpf_node_receive(n, &from, data, len,
                         ctl & 1 ? ZPF_CH_STREAM : ZPF_CH_PACKET);
        check(n);
        if (fe.now >= zpf_node_next_deadline(n))
            zpf_node_tick(n);
        check(n);
        data += len;
        size -= len;
    }
    /* Let every timer run out, including suspicions and tombstones. */
    for (int i = 0; i < 200; i++) {
        uint64_t d = zpf_node_next_deadline(n);
        fe.now = d > fe.now ? d : fe.now + 1;
        zpf_node_tick(n);
    }
    check(n);
    zpf_node_free(n);
    return 0;
}
