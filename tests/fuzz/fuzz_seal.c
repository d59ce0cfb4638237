/*
 * libFuzzer target for sealed envelopes and the replay window
 * (gossip/seal.c).
 *
 * The same input is used three ways:
 *   - as an envelope, opened with a fixed ring of two keys (key 00..1f,
 *     primary, and key 40..5f) under cluster "prod": it must fail with one
 *     of the documented codes or open, and an envelope that opens must seal
 *     back to exactly the same bytes (the format has one spelling);
 *   - as a plaintext, sealed and opened again (a random input almost never
 *     gets past the tag, so this is how the success path is reached):
 *     the round trip must be exact, and a flipped byte or a cut anywhere
 *     must make it fail with the code for the part that was hit;
 *   - as 8-byte chunks of (sender, sequence) for a small replay table,
 *     checked against a naive model (per sender: the top and every
 *     sequence seen in the window; least recently advanced evicted), with
 *     allocations failing on demand; a pair just accepted must be refused
 *     on the second try.
 * A violation aborts, which libFuzzer reports as a crash with the input.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "zpf/error.h"
#include "zpf/seal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

static const char CLUSTER[] = "prod";
#define CL CLUSTER, sizeof(CLUSTER) - 1

/* The ring: key 00..1f primary, key 40..5f second; `second_primary`
 * makes the second one seal instead. */
static void fixed_ring(struct zpf_keyring *kr, bool second_primary)
{
    uint8_t a[ZPF_KEY_LEN], b[ZPF_KEY_LEN];

    for (int i = 0; i < ZPF_KEY_LEN; i++) {
        a[i] = (uint8_t)i;
        b[i] = (uint8_t)(0x40 + i);
    }
    zpf_keyring_init(kr);
    CHECK(zpf_keyring_add(kr, a) == 0);
    CHECK(zpf_keyring_add(kr, b) == 0);
    if (second_primary)
        CHECK(zpf_keyring_use(kr, kr->keys[1].id) == 0);
}

static bool is_open_error(int rc)
{
    return rc == ZPF_ETRUNC || rc == ZPF_ESEAL || rc == ZPF_ENOKEY ||
           rc == ZPF_EAUTH;
}

static uint64_t take64(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* --- the input as an envelope ------------------------------------------- */

static void open_raw(const struct zpf_keyring *kr, const uint8_t *data,
                     size_t size)
{
    struct zpf_seal_info info;
    uint8_t *plain = malloc(size + 1), *again = malloc(size + 1);
    CHECK(plain != NULL && again != NULL);

    int rc = zpf_open(kr, CL, data, size, plain, size, &info);
    CHECK(rc >= 0 || is_open_error(rc));
    if (rc >= 0) {
        CHECK(size >= ZPF_SEAL_OVERHEAD);
        CHECK((size_t)rc == size - ZPF_SEAL_OVERHEAD);
        CHECK(info.key_id == take64(data + 1, 4));
        CHECK(info.sender == take64(data + 5, 8));
        CHECK(info.seq == take64(data + 13, 8));
        struct zpf_keyring sealer;
        fixed_ring(&sealer, info.key_id != kr->keys[0].id);
        CHECK(zpf_keyring_primary(&sealer)->id == info.key_id);
        int n = zpf_seal(&sealer, CL, info.sender, info.seq,
                         take64(data + 21, 8), plain, (size_t)rc, again,
                         size);
        CHECK(n == (int)size && memcmp(again, data, size) == 0);
        /* One byte too few for the plaintext is refused. */
        if (rc > 0)
            CHECK(zpf_open(kr, CL, data, size, plain, (size_t)rc - 1,
                           NULL) == ZPF_ENOSPC);
        zpf_keyring_wipe(&sealer);
    }
    free(plain);
    free(again);
}

/* --- the input as a plaintext ------------------------------------------- */

static void round_trip(const uint8_t *data, size_t size)
{
    struct zpf_keyring sealer, opener;
    struct zpf_seal_info info;
    uint8_t *sealed = malloc(size + ZPF_SEAL_OVERHEAD);
    uint8_t *plain = malloc(size + 1);
    CHECK(sealed != NULL && plain != NULL);

    uint64_t sender = size >= 8 ? take64(data, 8) : size;
    uint64_t seq = size >= 16 ? take64(data + 8, 8) : ~(uint64_t)size;
    uint64_t salt = size >= 24 ? take64(data + 16, 8) : 0;
    fixed_ring(&sealer, size > 0 && (data[0] & 1));
    fixed_ring(&opener, false);

    int n = zpf_seal(&sealer, CL, sender, seq, salt, data, size, sealed,
                     size + ZPF_SEAL_OVERHEAD);
    CHECK(n == (int)(size + ZPF_SEAL_OVERHEAD));
    int rc = zpf_open(&opener, CL, sealed, (size_t)n, plain, size, &info);
    CHECK(rc == (int)size);
    CHECK(size == 0 || memcmp(plain, data, size) == 0);
    CHECK(info.key_id == zpf_keyring_primary(&sealer)->id);
    CHECK(info.sender == sender && info.seq == seq);
    /* Another cluster id cannot open it. */
    CHECK(zpf_open(&opener, "prodx", 5, sealed, (size_t)n, plain, size,
                   NULL) == ZPF_EAUTH);

    /* Flip one byte somewhere. */
    size_t pos = (size_t)(salt ^ seq) % (size_t)n;
    uint8_t mask = size > 1 ? (uint8_t)(data[1] | 1) : 0x80;
    sealed[pos] ^= mask;
    rc = zpf_open(&opener, CL, sealed, (size_t)n, plain, size, NULL);
    if (pos == 0)
        CHECK(rc == ZPF_ESEAL);
    else if (pos < ZPF_SEAL_NONCE_OFF)
        CHECK(rc == ZPF_ENOKEY || rc == ZPF_EAUTH);
    else
        CHECK(rc == ZPF_EAUTH);
    sealed[pos] ^= mask;

    /* Cut it short. */
    size_t cut = (size_t)(sender % (uint64_t)n);
    rc = zpf_open(&opener, CL, sealed, cut, plain, size, NULL);
    CHECK(rc == (cut < ZPF_SEAL_OVERHEAD ? ZPF_ETRUNC : ZPF_EAUTH));

    zpf_keyring_wipe(&sealer);
    zpf_keyring_wipe(&opener);
    free(sealed);
    free(plain);
}

/* --- the input as (sender, sequence) pairs ------------------------------ */

#define SENDERS 24    /* distinct senders the input can name */
#define MAX_SENDERS 20 /* table bound: more names than room, so evictions */

struct falloc {
    bool fail; /* fail every allocation while set */
};

static void *fuzz_realloc(void *ctx, void *ptr, size_t size)
{
    struct falloc *a = ctx;

    if (size == 0) {
        free(ptr);
        return NULL;
    }
    return a->fail ? NULL : realloc(ptr, size);
}

struct model {
    bool present;
    uint64_t top, stamp;
    uint64_t *seen; /* sequences accepted within the window */
    size_t nseen, cap;
};

static void model_add(struct model *w, uint64_t seq)
{
    if (w->nseen == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 16;
        w->seen = realloc(w->seen, w->cap * sizeof(*w->seen));
        CHECK(w->seen != NULL);
    }
    w->seen[w->nseen++] = seq;
}

/* What the table must answer, and the model updated as the table must be,
 * for a check that does not run out of memory. */
static int model_check(struct model *m, uint64_t *clock, int s, uint64_t seq)
{
    struct model *w = &m[s];

    if (!w->present) {
        int present = 0, oldest = -1;
        for (int i = 0; i < SENDERS; i++) {
            if (!m[i].present)
                continue;
            present++;
            if (oldest < 0 || m[i].stamp < m[oldest].stamp)
                oldest = i;
        }
        if (present == MAX_SENDERS)
            m[oldest].present = false;
        w->present = true;
        w->top = seq;
        w->stamp = (*clock)++;
        w->nseen = 0;
        model_add(w, seq);
        return 0;
    }
    if (seq > w->top) {
        w->top = seq;
        w->stamp = (*clock)++;
        size_t k = 0;
        for (size_t i = 0; i < w->nseen; i++)
            if (w->top - w->seen[i] <= ZPF_REPLAY_WINDOW)
                w->seen[k++] = w->seen[i];
        w->nseen = k;
        model_add(w, seq);
        return 0;
    }
    if (w->top - seq > ZPF_REPLAY_WINDOW)
        return ZPF_EREPLAY;
    for (size_t i = 0; i < w->nseen; i++)
        if (w->seen[i] == seq)
            return ZPF_EREPLAY;
    model_add(w, seq);
    return 0;
}

static uint64_t sender_id(int s)
{
    /* Spread over the whole range, as hashed names are; 0 included. */
    return (uint64_t)s * UINT64_C(0x9E3779B97F4A7C15);
}

static void replay(const uint8_t *data, size_t size)
{
    struct zpf_replay t;
    struct falloc a = {false};
    struct model *m = calloc(SENDERS, sizeof(*m));
    uint64_t clock = 0;
    CHECK(m != NULL);
    CHECK(zpf_replay_init(&t, MAX_SENDERS, fuzz_realloc, &a) == 0);

    for (size_t off = 0; off + 8 <= size; off += 8) {
        const uint8_t *c = data + off;
        int s = (c[0] & 0x3f) % SENDERS;
        uint64_t top = m[s].present ? m[s].top : 0, seq;
        switch (c[1] & 3) {
        case 0: seq = take64(c + 2, 6); break;
        case 1: seq = top + 1 + take64(c + 2, 2) % 2000; break;
        case 2: seq = top - take64(c + 2, 2) % 1200; break;
        default: seq = UINT64_MAX - c[2]; break;
        }
        a.fail = (c[0] & 0x80) != 0;
        uint32_t before = zpf_replay_count(&t);
        int rc = zpf_replay_check(&t, sender_id(s), seq);
        a.fail = false;
        if (rc == ZPF_ENOMEM) {
            /* Only a new sender needs memory, and only below the bound. */
            CHECK((c[0] & 0x80) && !m[s].present);
            CHECK(before < MAX_SENDERS);
            CHECK(zpf_replay_count(&t) == before);
            continue;
        }
        CHECK(rc == model_check(m, &clock, s, seq));
        if (rc == 0)
            CHECK(zpf_replay_check(&t, sender_id(s), seq) == ZPF_EREPLAY);
        CHECK(zpf_replay_count(&t) <= MAX_SENDERS);
        if ((c[1] & 0xfc) == 0xfc && m[s].present) {
            zpf_replay_forget(&t, sender_id(s));
            m[s].present = false;
        }
    }
    uint32_t present = 0;
    for (int i = 0; i < SENDERS; i++) {
        present += m[i].present;
        free(m[i].seen);
    }
    CHECK(zpf_replay_count(&t) == present);
    zpf_replay_free(&t);
    free(m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    CHECK(sodium_init() >= 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zpf_keyring kr;

    /* Bound the work per input; envelopes are at most a stream frame, and
     * longer inputs add nothing the format could react to. */
    if (size > 1 << 16)
        return 0;
    fixed_ring(&kr, false);
    open_raw(&kr, data, size);
    zpf_keyring_wipe(&kr);
    round_trip(data, size);
    replay(data, size);
    return 0;
}
