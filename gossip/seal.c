/*
 * Sealed envelopes, the keyring and the replay window.
 *
 * The envelope (layout in include/zpf/seal.h) is XChaCha20-Poly1305 from
 * libsodium, chosen for its 192-bit nonce: it has room for the sender id,
 * the sequence and 64 random bits, so the nonce is unique without any
 * state shared between nodes, and the fields the replay window trusts are
 * authenticated for free.  Everything a receiver acts on before the tag is
 * checked -- the version byte, the key id and the length -- only selects
 * what to do next; no byte of the plaintext is released before the tag
 * verifies.  The associated data binds the cluster id and the protocol
 * version, so two clusters that share a key by accident, or two protocol
 * versions, cannot read each other.
 *
 * The keyring is a small array in caller-owned storage: at most
 * ZPF_KEYS_MAX keys, looked up by a linear scan, which at eight entries is
 * cheaper than anything cleverer.  Keys keep their insertion order because
 * the store saves the ring in that order and the configuration says "the
 * first is primary".
 *
 * The replay window follows RFC 6479: the bitmap is a ring of 64-bit words
 * indexed by sequence, so sliding forward clears whole words instead of
 * shifting the map.  Windows live in a dense array, found through an
 * open-addressing index of 32-bit positions (linear probing, load at most
 * 1/2, backward-shift deletion so no tombstones accumulate) and chained in
 * a list by last advance, which makes eviction O(1).  Sender ids come from
 * authenticated envelopes, that is from key holders, so the index needs no
 * keyed hash against chosen collisions.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "zpf/gossip.h"
#include "zpf/seal.h"

_Static_assert(ZPF_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
               "a cluster key is an XChaCha20-Poly1305 key");
_Static_assert(ZPF_SEAL_NONCE_LEN ==
                   crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
               "the envelope carries the whole nonce");
_Static_assert(ZPF_SEAL_TAG_LEN == crypto_aead_xchacha20poly1305_ietf_ABYTES,
               "the envelope ends with the whole tag");
_Static_assert(ZPF_KEY_B64_LEN ==
                   sodium_base64_ENCODED_LEN(ZPF_KEY_LEN,
                                             sodium_base64_VARIANT_ORIGINAL),
               "44 base64 characters and the NUL");
_Static_assert(ZPF_PROTOCOL_VERSION >= 0 && ZPF_PROTOCOL_VERSION <= 255,
               "the protocol version is one byte of associated data");

/* Personalisation prefixes: a key id and a sender id can never be mistaken
 * for each other, or for another use of BLAKE2b over the same bytes. */
static const char KEY_ID_PREFIX[] = "zpf key id v1";
static const char SENDER_PREFIX[] = "zpf sender v1";

/* BLAKE2b-256: the ids take its first bytes, but the output length is part
 * of BLAKE2b's parameters, so it is fixed here for good. */
#define ID_HASH_LEN 32

/* Associated data: header, protocol version, cluster id. */
#define AD_MAX (ZPF_SEAL_HDR_LEN + 1 + ZPF_CLUSTER_MAX)

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void prefixed_hash(const char *prefix, size_t plen, const void *in,
                          size_t len, uint8_t out[ID_HASH_LEN])
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, NULL, 0, ID_HASH_LEN);
    crypto_generichash_update(&st, (const unsigned char *)prefix, plen);
    if (len > 0)
        crypto_generichash_update(&st, in, len);
    crypto_generichash_final(&st, out, ID_HASH_LEN);
}

uint32_t zpf_key_id(const uint8_t key[ZPF_KEY_LEN])
{
    uint8_t h[ID_HASH_LEN];

    if (key == NULL)
        return 0;
    prefixed_hash(KEY_ID_PREFIX, sizeof(KEY_ID_PREFIX) - 1, key,
                  ZPF_KEY_LEN, h);
    return get32(h);
}

uint64_t zpf_seal_sender_id(const char *name, size_t len)
{
    uint8_t h[ID_HASH_LEN];

    if (name == NULL)
        len = 0;
    prefixed_hash(SENDER_PREFIX, sizeof(SENDER_PREFIX) - 1, name, len, h);
    return get64(h);
}

/* --- base64 ------------------------------------------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

int zpf_key_decode(const char *b64, size_t len, uint8_t out[ZPF_KEY_LEN])
{
    uint8_t tmp[ZPF_KEY_LEN];
    size_t n = 0;
    int rc = ZPF_EINVAL;

    if (b64 == NULL || out == NULL)
        return ZPF_EINVAL;
    while (len > 0 && is_space(b64[0])) {
        b64++;
        len--;
    }
    while (len > 0 && is_space(b64[len - 1]))
        len--;
    /* 32 bytes with padding are exactly 44 characters; anything else is
     * refused before libsodium sees it. */
    if (len != ZPF_KEY_B64_LEN - 1)
        return ZPF_EINVAL;
    /* No ignore set and no end pointer: libsodium then refuses any
     * character outside the alphabet, bad padding and non-zero trailing
     * bits, so one key has one spelling. */
    if (sodium_base642bin(tmp, sizeof(tmp), b64, len, NULL, &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) == 0 &&
        n == ZPF_KEY_LEN) {
        memcpy(out, tmp, ZPF_KEY_LEN);
        rc = 0;
    }
    sodium_memzero(tmp, sizeof(tmp));
    return rc;
}

int zpf_key_encode(const uint8_t key[ZPF_KEY_LEN], char *out, size_t cap)
{
    if (key == NULL || out == NULL)
        return ZPF_EINVAL;
    /* sodium_bin2base64 aborts on a short buffer; refuse it first. */
    if (cap < ZPF_KEY_B64_LEN)
        return ZPF_ENOSPC;
    sodium_bin2base64(out, cap, key, ZPF_KEY_LEN,
                      sodium_base64_VARIANT_ORIGINAL);
    return ZPF_KEY_B64_LEN - 1;
}

/* --- keyring ------------------------------------------------------------ */

/* The keys in use; a count past the array (a ring not filled by these
 * functions) is clamped rather than trusted. */
static uint32_t ring_len(const struct zpf_keyring *kr)
{
    return kr->n < ZPF_KEYS_MAX ? kr->n : ZPF_KEYS_MAX;
}

static int ring_index(const struct zpf_keyring *kr, uint32_t id)
{
    uint32_t n = ring_len(kr);

    for (uint32_t i = 0; i < n; i++)
        if (kr->keys[i].id == id)
            return (int)i;
    return -1;
}

void zpf_keyring_init(struct zpf_keyring *kr)
{
    if (kr != NULL)
        sodium_memzero(kr, sizeof(*kr));
}

int zpf_keyring_add(struct zpf_keyring *kr, const uint8_t key[ZPF_KEY_LEN])
{
    if (kr == NULL || key == NULL)
        return ZPF_EINVAL;
    uint32_t id = zpf_key_id(key);
    if (ring_index(kr, id) >= 0)
        return ZPF_EEXIST;
    uint32_t n = ring_len(kr);
    if (n >= ZPF_KEYS_MAX)
        return ZPF_ELIMIT;
    kr->keys[n].id = id;
    memcpy(kr->keys[n].bytes, key, ZPF_KEY_LEN);
    if (n == 0)
        kr->primary = 0;
    kr->n = n + 1;
    return 0;
}

int zpf_keyring_use(struct zpf_keyring *kr, uint32_t id)
{
    if (kr == NULL)
        return ZPF_EINVAL;
    int i = ring_index(kr, id);
    if (i < 0)
        return ZPF_ENOENT;
    kr->primary = (uint32_t)i;
    return 0;
}

int zpf_keyring_remove(struct zpf_keyring *kr, uint32_t id)
{
    if (kr == NULL)
        return ZPF_EINVAL;
    int found = ring_index(kr, id);
    if (found < 0)
        return ZPF_ENOENT;
    uint32_t i = (uint32_t)found, n = ring_len(kr);
    if (i == kr->primary)
        return ZPF_EBUSY;
    memmove(&kr->keys[i], &kr->keys[i + 1],
            (n - i - 1) * sizeof(kr->keys[0]));
    sodium_memzero(&kr->keys[n - 1], sizeof(kr->keys[0]));
    kr->n = n - 1;
    if (kr->primary > i)
        kr->primary--;
    return 0;
}

const struct zpf_key *zpf_keyring_find(const struct zpf_keyring *kr,
                                       uint32_t id)
{
    if (kr == NULL)
        return NULL;
    int i = ring_index(kr, id);
    return i < 0 ? NULL : &kr->keys[i];
}

const struct zpf_key *zpf_keyring_primary(const struct zpf_keyring *kr)
{
    if (kr == NULL || kr->primary >= ring_len(kr))
        return NULL;
    return &kr->keys[kr->primary];
}

bool zpf_keyring_equal(const struct zpf_keyring *a,
                       const struct zpf_keyring *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    uint32_t n = ring_len(a);
    if (n != ring_len(b))
        return false;
    const struct zpf_key *pa = zpf_keyring_primary(a);
    const struct zpf_key *pb = zpf_keyring_primary(b);
    if (pa == NULL || pb == NULL)
        return pa == pb;
    if (pa->id != pb->id)
        return false;
    /* Ids are distinct within a ring and the counts match, so a in b
     * means the same set. */
    for (uint32_t i = 0; i < n; i++) {
        const struct zpf_key *k = zpf_keyring_find(b, a->keys[i].id);
        if (k == NULL ||
            sodium_memcmp(k->bytes, a->keys[i].bytes, ZPF_KEY_LEN) != 0)
            return false;
    }
    return true;
}

void zpf_keyring_wipe(struct zpf_keyring *kr)
{
    if (kr != NULL)
        sodium_memzero(kr, sizeof(*kr));
}

/* --- envelope ----------------------------------------------------------- */

static bool cluster_ok(const char *cluster, size_t len)
{
    return cluster != NULL && len >= 1 && len <= ZPF_CLUSTER_MAX;
}

/* Whether [a, a + alen) and [b, b + blen) share a byte.  Compared as
 * integers: the buffers are distinct objects whenever the answer is no. */
static bool overlap(const void *a, size_t alen, const void *b, size_t blen)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;

    if (alen == 0 || blen == 0)
        return false;
    return x < y + blen && y < x + alen;
}

static size_t make_ad(uint8_t ad[AD_MAX], const uint8_t *hdr,
                      const char *cluster, size_t cluster_len)
{
    memcpy(ad, hdr, ZPF_SEAL_HDR_LEN);
    ad[ZPF_SEAL_HDR_LEN] = ZPF_PROTOCOL_VERSION;
    memcpy(ad + ZPF_SEAL_HDR_LEN + 1, cluster, cluster_len);
    return ZPF_SEAL_HDR_LEN + 1 + cluster_len;
}

int zpf_seal(const struct zpf_keyring *kr, const char *cluster,
             size_t cluster_len, uint64_t sender, uint64_t seq,
             uint64_t salt, const uint8_t *in, size_t len, uint8_t *out,
             size_t cap)
{
    static const uint8_t empty[1];
    uint8_t ad[AD_MAX];
    unsigned long long clen;

    if (kr == NULL || out == NULL || (in == NULL && len > 0) ||
        !cluster_ok(cluster, cluster_len))
        return ZPF_EINVAL;
    const struct zpf_key *k = zpf_keyring_primary(kr);
    if (k == NULL)
        return ZPF_ENOKEY;
    if (len > (size_t)INT_MAX - ZPF_SEAL_OVERHEAD)
        return ZPF_E2BIG;
    if (cap < len + ZPF_SEAL_OVERHEAD)
        return ZPF_ENOSPC;
    if (overlap(in, len, out, len + ZPF_SEAL_OVERHEAD))
        return ZPF_EINVAL;

    out[0] = ZPF_SEAL_VERSION;
    put32(out + ZPF_SEAL_KEY_ID_OFF, k->id);
    put64(out + ZPF_SEAL_NONCE_OFF, sender);
    put64(out + ZPF_SEAL_NONCE_OFF + 8, seq);
    put64(out + ZPF_SEAL_NONCE_OFF + 16, salt);
    size_t adlen = make_ad(ad, out, cluster, cluster_len);
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        out + ZPF_SEAL_HDR_LEN, &clen, len > 0 ? in : empty, len, ad, adlen,
        NULL, out + ZPF_SEAL_NONCE_OFF, k->bytes);
    return (int)(len + ZPF_SEAL_OVERHEAD);
}

int zpf_open(const struct zpf_keyring *kr, const char *cluster,
             size_t cluster_len, const uint8_t *in, size_t len, uint8_t *out,
             size_t cap, struct zpf_seal_info *info)
{
    uint8_t ad[AD_MAX], spare[1];
    unsigned long long mlen;

    if (kr == NULL || (in == NULL && len > 0) || (out == NULL && cap > 0) ||
        !cluster_ok(cluster, cluster_len))
        return ZPF_EINVAL;
    if (len > (size_t)INT_MAX)
        return ZPF_E2BIG;
    if (len == 0)
        return ZPF_ETRUNC;
    if (in[0] != ZPF_SEAL_VERSION)
        return ZPF_ESEAL;
    if (len < ZPF_SEAL_OVERHEAD)
        return ZPF_ETRUNC;
    size_t plen = len - ZPF_SEAL_OVERHEAD;
    if (overlap(in, len, out, cap < plen ? cap : plen))
        return ZPF_EINVAL;

    uint32_t key_id = get32(in + ZPF_SEAL_KEY_ID_OFF);
    if (info != NULL) {
        info->key_id = key_id;
        info->sender = get64(in + ZPF_SEAL_NONCE_OFF);
        info->seq = get64(in + ZPF_SEAL_NONCE_OFF + 8);
    }
    const struct zpf_key *k = zpf_keyring_find(kr, key_id);
    if (k == NULL)
        return ZPF_ENOKEY;
    if (cap < plen)
        return ZPF_ENOSPC;
    size_t adlen = make_ad(ad, in, cluster, cluster_len);
    /* libsodium checks the tag before it decrypts, and zeroes the output
     * when the check fails. */
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            out != NULL ? out : spare, &mlen, NULL, in + ZPF_SEAL_HDR_LEN,
            len - ZPF_SEAL_HDR_LEN, ad, adlen, in + ZPF_SEAL_NONCE_OFF,
            k->bytes) != 0)
        return ZPF_EAUTH;
    return (int)mlen;
}

/* --- replay window ------------------------------------------------------ */

/* The word holding the highest sequence lies partly above it, so the ring
 * has one word more than the window: then all ZPF_REPLAY_WINDOW sequences
 * below the highest stay in it wherever the highest falls in its word. */
#define WORD_BITS 64
#define REPLAY_WORDS (ZPF_REPLAY_WINDOW / WORD_BITS + 1)

_Static_assert(ZPF_REPLAY_WINDOW % WORD_BITS == 0,
               "the window is a whole number of words");

#define NONE UINT32_MAX

struct zpf__replay_win {
    uint64_t sender;
    uint64_t top;                 /* highest sequence accepted */
    uint64_t bits[REPLAY_WORDS];  /* bit s % 64 of word (s / 64) % WORDS */
    uint32_t prev, next;          /* by last advance, head newest */
};

_Static_assert(sizeof(struct zpf__replay_win) == 160,
               "a window costs 160 bytes per sender; keep it so");

/* First allocation of the dense array; it doubles from there up to max. */
#define WIN_CAP_MIN 8
/* Smallest index; it keeps at least twice as many slots as windows, since
 * linear probing slows sharply past half full and a slot is 4 bytes. */
#define INDEX_CAP_MIN 16

/* Fibonacci hashing: sender ids are already uniform (BLAKE2b output) and
 * come from key holders only, so spreading the bits is all that is needed. */
static uint32_t home_slot(const struct zpf_replay *t, uint64_t sender)
{
    uint64_t h = sender * UINT64_C(0x9E3779B97F4A7C15);
    return (uint32_t)(h >> 32) & (t->index_cap - 1);
}

/* The index slot holding sender, or NONE. */
static uint32_t index_find(const struct zpf_replay *t, uint64_t sender)
{
    if (t->index_cap == 0)
        return NONE;
    uint32_t mask = t->index_cap - 1;
    for (uint32_t s = home_slot(t, sender);; s = (s + 1) & mask) {
        uint32_t v = t->index[s];
        if (v == 0)
            return NONE;
        if (t->win[v - 1].sender == sender)
            return s;
    }
}

/* The index is never more than half full, so an empty slot exists. */
static void index_put(uint32_t *index, uint32_t index_cap, uint32_t home,
                      uint32_t w)
{
    uint32_t s = home;
    while (index[s] != 0)
        s = (s + 1) & (index_cap - 1);
    index[s] = w + 1;
}

/* Empty slot `hole`, moving later entries of its probe run back so that
 * every entry stays reachable from its home without tombstones. */
static void index_delete(struct zpf_replay *t, uint32_t hole)
{
    uint32_t mask = t->index_cap - 1;

    for (uint32_t j = (hole + 1) & mask; t->index[j] != 0;
         j = (j + 1) & mask) {
        uint32_t h = home_slot(t, t->win[t->index[j] - 1].sender);
        /* The entry may fill the hole if the hole lies on its probe path,
         * from its home up to where it sits. */
        if (((j - h) & mask) >= ((j - hole) & mask)) {
            t->index[hole] = t->index[j];
            hole = j;
        }
    }
    t->index[hole] = 0;
}

static void lru_unlink(struct zpf_replay *t, uint32_t i)
{
    struct zpf__replay_win *w = &t->win[i];

    if (w->prev != NONE)
        t->win[w->prev].next = w->next;
    else
        t->lru_head = w->next;
    if (w->next != NONE)
        t->win[w->next].prev = w->prev;
    else
        t->lru_tail = w->prev;
}

static void lru_push_front(struct zpf_replay *t, uint32_t i)
{
    struct zpf__replay_win *w = &t->win[i];

    w->prev = NONE;
    w->next = t->lru_head;
    if (t->lru_head != NONE)
        t->win[t->lru_head].prev = i;
    else
        t->lru_tail = i;
    t->lru_head = i;
}

static int win_reserve(struct zpf_replay *t)
{
    if (t->count < t->cap)
        return 0;
    uint64_t ncap = t->cap ? (uint64_t)t->cap * 2 : WIN_CAP_MIN;
    if (ncap > t->max)
        ncap = t->max;
    void *p = t->realloc(t->ctx, t->win, (size_t)ncap * sizeof(*t->win));
    if (p == NULL)
        return ZPF_ENOMEM;
    t->win = p;
    t->cap = (uint32_t)ncap;
    return 0;
}

/* Make room in the index for one more window.  A new index is built aside
 * and swapped in, so a failed allocation leaves the old one intact. */
static int index_reserve(struct zpf_replay *t)
{
    uint64_t need = ((uint64_t)t->count + 1) * 2;
    if (need <= t->index_cap)
        return 0;
    uint64_t ncap = t->index_cap ? (uint64_t)t->index_cap : INDEX_CAP_MIN;
    while (ncap < need)
        ncap *= 2;
    uint32_t *idx = t->realloc(t->ctx, NULL, (size_t)ncap * sizeof(*idx));
    if (idx == NULL)
        return ZPF_ENOMEM;
    memset(idx, 0, (size_t)ncap * sizeof(*idx));
    t->realloc(t->ctx, t->index, 0);
    t->index = idx;
    t->index_cap = (uint32_t)ncap;
    for (uint32_t i = 0; i < t->count; i++)
        index_put(idx, t->index_cap, home_slot(t, t->win[i].sender), i);
    return 0;
}

static bool win_seen(const struct zpf__replay_win *w, uint64_t seq)
{
    return (w->bits[(seq / WORD_BITS) % REPLAY_WORDS] >> (seq % WORD_BITS)) &
           1;
}

static void win_mark(struct zpf__replay_win *w, uint64_t seq)
{
    w->bits[(seq / WORD_BITS) % REPLAY_WORDS] |= UINT64_C(1)
                                                 << (seq % WORD_BITS);
}

/* Move the top up to seq: the words it enters are reused for sequences
 * above the old top, which nobody has sent yet, so they start clear. */
static void win_slide(struct zpf__replay_win *w, uint64_t seq)
{
    uint64_t from = w->top / WORD_BITS, to = seq / WORD_BITS;

    if (to - from >= REPLAY_WORDS)
        memset(w->bits, 0, sizeof(w->bits));
    else
        for (uint64_t i = from + 1; i <= to; i++)
            w->bits[i % REPLAY_WORDS] = 0;
    w->top = seq;
}

int zpf_replay_init(struct zpf_replay *t, uint32_t max_senders,
                    void *(*realloc_cb)(void *ctx, void *ptr, size_t size),
                    void *ctx)
{
    if (t == NULL)
        return ZPF_EINVAL;
    memset(t, 0, sizeof(*t));
    t->lru_head = t->lru_tail = NONE;
    if (realloc_cb == NULL || max_senders == 0 ||
        max_senders > ZPF_REPLAY_SENDERS_MAX)
        return ZPF_EINVAL;
    t->max = max_senders;
    t->realloc = realloc_cb;
    t->ctx = ctx;
    return 0;
}

void zpf_replay_free(struct zpf_replay *t)
{
    if (t == NULL)
        return;
    if (t->realloc != NULL) {
        t->realloc(t->ctx, t->win, 0);
        t->realloc(t->ctx, t->index, 0);
    }
    t->win = NULL;
    t->index = NULL;
    t->count = t->cap = t->index_cap = 0;
    t->lru_head = t->lru_tail = NONE;
}

static int replay_add(struct zpf_replay *t, uint64_t sender, uint64_t seq)
{
    uint32_t i;

    if (t->count == t->max) {
        i = t->lru_tail;
        index_delete(t, index_find(t, t->win[i].sender));
        lru_unlink(t, i);
    } else {
        int rc = win_reserve(t);
        if (rc == 0)
            rc = index_reserve(t);
        if (rc != 0)
            return rc;
        i = t->count++;
    }
    struct zpf__replay_win *w = &t->win[i];
    memset(w, 0, sizeof(*w));
    w->sender = sender;
    w->top = seq;
    win_mark(w, seq);
    index_put(t->index, t->index_cap, home_slot(t, sender), i);
    lru_push_front(t, i);
    return 0;
}

int zpf_replay_check(struct zpf_replay *t, uint64_t sender, uint64_t seq)
{
    if (t == NULL || t->realloc == NULL || t->max == 0)
        return ZPF_EINVAL;
    uint32_t s = index_find(t, sender);
    if (s == NONE)
        return replay_add(t, sender, seq);

    uint32_t i = t->index[s] - 1;
    struct zpf__replay_win *w = &t->win[i];
    if (seq > w->top) {
        win_slide(w, seq);
        win_mark(w, seq);
        if (t->lru_head != i) {
            lru_unlink(t, i);
            lru_push_front(t, i);
        }
        return 0;
    }
    if (w->top - seq > ZPF_REPLAY_WINDOW || win_seen(w, seq))
        return ZPF_EREPLAY;
    win_mark(w, seq);
    return 0;
}

void zpf_replay_forget(struct zpf_replay *t, uint64_t sender)
{
    if (t == NULL)
        return;
    uint32_t s = index_find(t, sender);
    if (s == NONE)
        return;
    uint32_t i = t->index[s] - 1, last = t->count - 1;
    index_delete(t, s);
    lru_unlink(t, i);
    if (i != last) {
        /* Keep the array dense: the last window moves into the gap. */
        t->index[index_find(t, t->win[last].sender)] = i + 1;
        t->win[i] = t->win[last];
        struct zpf__replay_win *w = &t->win[i];
        if (w->prev != NONE)
            t->win[w->prev].next = i;
        else
            t->lru_head = i;
        if (w->next != NONE)
            t->win[w->next].prev = i;
        else
            t->lru_tail = i;
    }
    t->count--;
}

uint32_t zpf_replay_count(const struct zpf_replay *t)
{
    return t != NULL ? t->count : 0;
}

size_t zpf_replay_memory(const struct zpf_replay *t)
{
    if (t == NULL)
        return 0;
    return (size_t)t->cap * sizeof(*t->win) +
           (size_t)t->index_cap * sizeof(*t->index);
}
