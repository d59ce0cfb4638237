/*
 * Tests for sealed envelopes, the keyring and the replay window
 * (gossip/seal.c).
 *
 * The known answers (key id, sender id, one whole envelope) were computed
 * once outside zpf, with Python's hashlib BLAKE2b and an XChaCha20 built
 * from the cryptography package's ChaCha20-Poly1305 plus HChaCha20, so they
 * pin seal.h's description of the format rather than whatever seal.c
 * happens to do.  Every packet handed to zpf_open() is an exact-size heap
 * copy, so an overread is an ASan error, not luck.  The replay window is
 * also checked against a naive model on a long seeded random run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "zpf/error.h"
#include "zpf/gossip.h"
#include "zpf/seal.h"

/* --- helpers ------------------------------------------------------------ */

static const char CLUSTER[] = "prod";
#define CL CLUSTER, sizeof(CLUSTER) - 1

/* A key whose bytes are seed, seed + 1, ... */
static void key_fill(uint8_t key[ZPF_KEY_LEN], uint8_t seed)
{
    for (int i = 0; i < ZPF_KEY_LEN; i++)
        key[i] = (uint8_t)(seed + i);
}

static void ring_of(struct zpf_keyring *kr, const uint8_t *seeds, int n)
{
    uint8_t key[ZPF_KEY_LEN];

    zpf_keyring_init(kr);
    for (int i = 0; i < n; i++) {
        key_fill(key, seeds[i]);
        assert_int_equal(zpf_keyring_add(kr, key), 0);
    }
}

static uint32_t id_of(uint8_t seed)
{
    uint8_t key[ZPF_KEY_LEN];

    key_fill(key, seed);
    return zpf_key_id(key);
}

/* zpf_open() on an exact-size heap copy of buf[0..len). */
static int open_copy(const struct zpf_keyring *kr, const char *cluster,
                     size_t cluster_len, const uint8_t *buf, size_t len,
                     uint8_t *out, size_t cap, struct zpf_seal_info *info)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len > 0)
        memcpy(copy, buf, len);
    int rc = zpf_open(kr, cluster, cluster_len, len ? copy : NULL, len, out,
                      cap, info);
    free(copy);
    return rc;
}

static void hex_to_bin(const char *hex, uint8_t *out, size_t *len)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    *len = n;
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* --- ids and the known answer ------------------------------------------- */

static void test_ids_pinned(void **state)
{
    (void)state;
    uint8_t key[ZPF_KEY_LEN];

    key_fill(key, 0);
    assert_int_equal(zpf_key_id(key), 0xa8120731u);
    assert_true(zpf_seal_sender_id("node-1", 6) ==
                UINT64_C(0xd83b0e4b33e5a39a));
    /* Only the given bytes count, not what follows them. */
    assert_true(zpf_seal_sender_id("node-12", 6) ==
                UINT64_C(0xd83b0e4b33e5a39a));
    assert_true(zpf_seal_sender_id("node-2", 6) !=
                zpf_seal_sender_id("node-1", 6));
    assert_true(zpf_seal_sender_id(NULL, 0) == zpf_seal_sender_id("", 0));
    key[31] ^= 1;
    assert_int_not_equal(zpf_key_id(key), 0xa8120731u);
}

/* Key 00..1f, cluster "prod", sender "node-1", seq 0x100000002, salt
 * 0x1122334455667788, plaintext "hello, zpf". */
static const char KAT_HEX[] =
    "a1a8120731d83b0e4b33e5a39a000000010000000211223344556677883bc446403c"
    "b321a41d7839d3af98f9e736e52459670cd7c1718e";

static void test_known_answer(void **state)
{
    (void)state;
    struct zpf_keyring kr;
    uint8_t want[128], out[128], plain[64];
    size_t want_len;
    struct zpf_seal_info info;
    const uint8_t seeds[] = {0};

    ring_of(&kr, seeds, 1);
    hex_to_bin(KAT_HEX, want, &want_len);
    assert_int_equal(want_len, 10 + ZPF_SEAL_OVERHEAD);
    uint64_t sender = zpf_seal_sender_id("node-1", 6);
    int n = zpf_seal(&kr, CL, sender, UINT64_C(0x100000002),
                     UINT64_C(0x1122334455667788),
                     (const uint8_t *)"hello, zpf", 10, out, sizeof(out));
    assert_int_equal(n, (int)want_len);
    assert_memory_equal(out, want, want_len);

    memset(&info, 0, sizeof(info));
    n = open_copy(&kr, CL, want, want_len, plain, sizeof(plain), &info);
    assert_int_equal(n, 10);
    assert_memory_equal(plain, "hello, zpf", 10);
    assert_int_equal(info.key_id, 0xa8120731u);
    assert_true(info.sender == sender);
    assert_true(info.seq == UINT64_C(0x100000002));
}

/* The header is laid out as seal.h draws it, and the associated data is
 * header | protocol version | cluster: an envelope built by hand with
 * libsodium from that description opens, and one built with another
 * protocol version does not. */
static void test_layout_and_ad(void **state)
{
    (void)state;
    struct zpf_keyring kr;
    const uint8_t seeds[] = {7};
    uint8_t out[64], env[64], ad[128], plain[16];
    unsigned long long clen;
    struct zpf_seal_info info;

    ring_of(&kr, seeds, 1);
    int n = zpf_seal(&kr, CL, UINT64_C(0x0102030405060708),
                     UINT64_C(0x1112131415161718),
                     UINT64_C(0x2122232425262728), (const uint8_t *)"abc", 3,
                     out, sizeof(out));
    assert_int_equal(n, 3 + ZPF_SEAL_OVERHEAD);
    assert_int_equal(out[0], 0xA1);
    assert_int_equal((uint32_t)out[1] << 24 | (uint32_t)out[2] << 16 |
                         (uint32_t)out[3] << 8 | out[4],
                     id_of(7));
    assert_true(be64(out + 5) == UINT64_C(0x0102030405060708));
    assert_true(be64(out + 13) == UINT64_C(0x1112131415161718));
    assert_true(be64(out + 21) == UINT64_C(0x2122232425262728));

    for (int v = ZPF_PROTOCOL_VERSION; v <= ZPF_PROTOCOL_VERSION + 1; v++) {
        memcpy(env, out, ZPF_SEAL_HDR_LEN);
        memcpy(ad, env, ZPF_SEAL_HDR_LEN);
        ad[ZPF_SEAL_HDR_LEN] = (uint8_t)v;
        memcpy(ad + ZPF_SEAL_HDR_LEN + 1, CLUSTER, 4);
        crypto_aead_xchacha20poly1305_ietf_encrypt(
            env + ZPF_SEAL_HDR_LEN, &clen, (const uint8_t *)"abc", 3, ad,
            ZPF_SEAL_HDR_LEN + 1 + 4, NULL, env + 5, kr.keys[0].bytes);
        assert_int_equal(clen, 3 + ZPF_SEAL_TAG_LEN);
        n = open_copy(&kr, CL, env, n, plain, sizeof(plain), &info);
        if (v == ZPF_PROTOCOL_VERSION) {
            assert_int_equal(n, 3);
            assert_memory_equal(env, out, 3 + ZPF_SEAL_OVERHEAD);
        } else {
            assert_int_equal(n, ZPF_EAUTH);
        }
        n = 3 + ZPF_SEAL_OVERHEAD;
    }
}

/* --- sealing and opening ------------------------------------------------ */

static void test_round_trip(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 15, 16, 17, 1355, 1400, 65535};
    struct zpf_keyring kr;
    const uint8_t seeds[] = {1, 2};

    ring_of(&kr, seeds, 2);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t len = sizes[s];
        uint8_t *in = malloc(len + 1), *sealed = malloc(len + 45);
        uint8_t *plain = malloc(len + 1);
        assert_true(in && sealed && plain);
        for (size_t i = 0; i < len; i++)
            in[i] = (uint8_t)(i * 31 + 7);
        uint64_t seq = UINT64_C(0xfffffffe00000000) + s;
        int n = zpf_seal(&kr, CL, 42, seq, 99, in, len, sealed,
                         len + ZPF_SEAL_OVERHEAD);
        assert_int_equal(n, (int)(len + ZPF_SEAL_OVERHEAD));
        struct zpf_seal_info info = {0, 0, 0};
        /* An exact-size output buffer is enough. */
        n = open_copy(&kr, CL, sealed, (size_t)n, len ? plain : NULL, len,
                      &info);
        assert_int_equal(n, (int)len);
        if (len > 0)
            assert_memory_equal(plain, in, len);
        assert_int_equal(info.key_id, id_of(1));
        assert_true(info.sender == 42);
        assert_true(info.seq == seq);
        free(in);
        free(sealed);
        free(plain);
    }
    /* info may be NULL, and the same inputs with another salt give
     * another envelope. */
    uint8_t a[64], b[64], p[8];
    assert_int_equal(zpf_seal(&kr, CL, 1, 1, 1, (const uint8_t *)"x", 1, a,
                              sizeof(a)),
                     46);
    assert_int_equal(zpf_seal(&kr, CL, 1, 1, 2, (const uint8_t *)"x", 1, b,
                              sizeof(b)),
                     46);
    assert_memory_not_equal(a + ZPF_SEAL_HDR_LEN, b + ZPF_SEAL_HDR_LEN, 17);
    assert_int_equal(open_copy(&kr, CL, a, 46, p, sizeof(p), NULL), 1);
    assert_int_equal(p[0], 'x');
}

/* Flipping any bit, or a whole byte, of an envelope makes it fail, with
 * the code for the part that was hit. */
static void test_flip_every_byte(void **state)
{
    (void)state;
    struct zpf_keyring kr;
    const uint8_t seeds[] = {10, 20};
    uint8_t in[100], sealed[200], plain[200];
    static const uint8_t masks[] = {1, 2, 4, 8, 16, 32, 64, 128, 0xff};

    ring_of(&kr, seeds, 2);
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(0x80 | i);
    int n = zpf_seal(&kr, CL, 5, 6, 7, in, sizeof(in), sealed,
                     sizeof(sealed));
    assert_int_equal(n, (int)sizeof(in) + ZPF_SEAL_OVERHEAD);
    int enokey = 0;
    for (int pos = 0; pos < n; pos++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            sealed[pos] ^= masks[m];
            memset(plain, 0xEE, sizeof(plain));
            int rc = open_copy(&kr, CL, sealed, (size_t)n, plain,
                               sizeof(plain), NULL);
            int want = ZPF_EAUTH;
            if (pos == 0) {
                want = ZPF_ESEAL;
            } else if (pos < ZPF_SEAL_NONCE_OFF) {
                uint32_t id = (uint32_t)sealed[1] << 24 |
                              (uint32_t)sealed[2] << 16 |
                              (uint32_t)sealed[3] << 8 | sealed[4];
                want = zpf_keyring_find(&kr, id) ? ZPF_EAUTH : ZPF_ENOKEY;
                enokey += want == ZPF_ENOKEY;
            }
            if (rc != want)
                fail_msg("byte %d ^ 0x%02x: got %s, want %s", pos, masks[m],
                         zpf_err_name(rc), zpf_err_name(want));
            /* No plaintext escapes a failed open. */
            assert_memory_not_equal(plain, in, sizeof(in));
            sealed[pos] ^= masks[m];
        }
    }
    assert_true(enokey > 0);
    assert_int_equal(open_copy(&kr, CL, sealed, (size_t)n, plain,
                               sizeof(plain), NULL),
                     (int)sizeof(in));
}

static void test_wrong_cluster(void **state)
{
    (void)state;
    struct zpf_keyring kr;
    const uint8_t seeds[] = {3};
    uint8_t sealed[64], plain[16];
    static const char *others[] = {"prod2", "pro", "Prod", "test"};
    char c64[ZPF_CLUSTER_MAX];

    ring_of(&kr, seeds, 1);
    int n = zpf_seal(&kr, CL, 1, 2, 3, (const uint8_t *)"hi", 2, sealed,
                     sizeof(sealed));
    assert_int_equal(n, 2 + ZPF_SEAL_OVERHEAD);
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        assert_int_equal(open_copy(&kr, others[i], strlen(others[i]), sealed,
                                   (size_t)n, plain, sizeof(plain), NULL),
                         ZPF_EAUTH);
    /* The longest cluster id works both ways. */
    memset(c64, 'c', sizeof(c64));
    n = zpf_seal(&kr, c64, sizeof(c64), 1, 2, 3, (const uint8_t *)"hi", 2,
                 sealed, sizeof(sealed));
    assert_int_equal(n, 2 + ZPF_SEAL_OVERHEAD);
    assert_int_equal(open_copy(&kr, c64, sizeof(c64), sealed, (size_t)n,
                               plain, sizeof(plain), NULL),
                     2);
    assert_int_equal(open_copy(&kr, c64, sizeof(c64) - 1, sealed, (size_t)n,
                               plain, sizeof(plain), NULL),
                     ZPF_EAUTH);
}

static void test_wrong_key(void **state)
{
    (void)state;
    struct zpf_keyring a, b, forged;
    const uint8_t sa[] = {1}, sb[] = {2};
    uint8_t sealed[64], plain[16];

    ring_of(&a, sa, 1);
    ring_of(&b, sb, 1);
    int n = zpf_seal(&a, CL, 1, 2, 3, (const uint8_t *)"hi", 2, sealed,
                     sizeof(sealed));
    assert_int_equal(n, 2 + ZPF_SEAL_OVERHEAD);
    /* Another key has another id: the ring does not know it. */
    assert_int_equal(open_copy(&b, CL, sealed, (size_t)n, plain,
                               sizeof(plain), NULL),
                     ZPF_ENOKEY);
    /* Another key under the same id (a collision, or a forged header)
     * fails the tag. */
    forged = b;
    forged.keys[0].id = a.keys[0].id;
    assert_int_equal(open_copy(&forged, CL, sealed, (size_t)n, plain,
                               sizeof(plain), NULL),
                     ZPF_EAUTH);
}

static void test_truncations(void **state)
{
    (void)state;
    struct zpf_keyring kr;
    const uint8_t seeds[] = {4};
    uint8_t sealed[128], plain[128];

    ring_of(&kr, seeds, 1);
    int n = zpf_seal(&kr, CL, 1, 2, 3, (const uint8_t *)"0123456789", 10,
                     sealed, sizeof(sealed));
    assert_int_equal(n, 10 + ZPF_SEAL_OVERHEAD);
    for (int len = 0; len < n; len++) {
        int rc = open_copy(&kr, CL, sealed, (size_t)len, plain,
                           sizeof(plain), NULL);
        int want = len < ZPF_SEAL_OVERHEAD ? ZPF_ETRUNC : ZPF_EAUTH;
        if (rc != want)
            fail_msg("length %d: got %s, want %s", len, zpf_err_name(rc),
                     zpf_err_name(want));
    }
    /* A byte too many is a different tag position: also refused. */
    sealed[n] = 0;
    assert_int_equal(open_copy(&kr, CL, sealed, (size_t)n + 1, plain,
                               sizeof(plain), NULL),
                     ZPF_EAUTH);
    /* A plain zpf packet is told apart by its first byte, short or not. */
    const uint8_t plain_pkt[] = {0x95, 0x01, 0xa1, 'c'};
    assert_int_equal(open_copy(&kr, CL, plain_pkt, sizeof(plain_pkt), plain,
                               sizeof(plain), NULL),
                     ZPF_ESEAL);
    memset(sealed, 0x95, 100);
    assert_int_equal(open_copy(&kr, CL, sealed, 100, plain, sizeof(plain),
                               NULL),
                     ZPF_ESEAL);
}

static void test_seal_errors(void **state)
{
    (void)state;
    struct zpf_keyring kr, empty;
    const uint8_t seeds[] = {5};
    uint8_t buf[256], plain[64];
    char c65[ZPF_CLUSTER_MAX + 1];

    ring_of(&kr, seeds, 1);
    zpf_keyring_init(&empty);
    const uint8_t *msg = (const uint8_t *)"twelve bytes";

    assert_int_equal(zpf_seal(&empty, CL, 1, 1, 1, msg, 12, buf,
                              sizeof(buf)),
                     ZPF_ENOKEY);
    /* One byte short: refused, nothing written. */
    memset(buf, 0xCC, sizeof(buf));
    assert_int_equal(zpf_seal(&kr, CL, 1, 1, 1, msg, 12, buf,
                              12 + ZPF_SEAL_OVERHEAD - 1),
                     ZPF_ENOSPC);
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xCC);

    memset(c65, 'x', sizeof(c65));
    assert_int_equal(zpf_seal(NULL, CL, 1, 1, 1, msg, 12, buf, sizeof(buf)),
                     ZPF_EINVAL);
    assert_int_equal(zpf_seal(&kr, NULL, 4, 1, 1, 1, msg, 12, buf,
                              sizeof(buf)),
                     ZPF_EINVAL);
    assert_int_equal(zpf_seal(&kr, CLUSTER, 0, 1, 1, 1, msg, 12, buf,
                              sizeof(buf)),
                     ZPF_EINVAL);
    assert_int_equal(zpf_seal(&kr, c65, sizeof(c65), 1, 1, 1, msg, 12, buf,
                              sizeof(buf)),
                     ZPF_EINVAL);
    assert_int_equal(zpf_seal(&kr, CL, 1, 1, 1, NULL, 12, buf, sizeof(buf)),
                     ZPF_EINVAL);
    assert_int_equal(zpf_seal(&kr, CL, 1, 1, 1, msg, 12, NULL, sizeof(buf)),
                     ZPF_EINVAL);
    /* In place, or overlapping by one byte, is refused. */
    memcpy(buf, msg, 12);
    assert_int_equal(zpf_seal(&kr, CL, 1, 1, 1, buf, 12, buf, sizeof(buf)),
                     ZPF_EINVAL);
    assert_int_equal(zpf_seal(&kr, CL, 1, 1, 1, buf + 56, 12, buf,
                              sizeof(buf)),
                     ZPF_EINVAL);
    assert_int_equal(zpf_seal(&kr, CL, 1, 1, 1, buf + 57, 12, buf,
                              sizeof(buf)),
                     12 + ZPF_SEAL_OVERHEAD);
    /* Too large for the int result. */
    assert_int_equal(zpf_seal(&kr, CL, 1, 1, 1, msg, (size_t)1 << 31, buf,
                              sizeof(buf)),
                     ZPF_E2BIG);
    /* NULL input of length 0 is an empty message. */
    assert_int_equal(zpf_seal(&kr, CL, 1, 1, 1, NULL, 0, buf, sizeof(buf)),
                     ZPF_SEAL_OVERHEAD);

    int n = zpf_seal(&kr, CL, 1, 1, 1, msg, 12, buf, sizeof(buf));
    assert_int_equal(n, 12 + ZPF_SEAL_OVERHEAD);
    assert_int_equal(open_copy(&empty, CL, buf, (size_t)n, plain,
                               sizeof(plain), NULL),
                     ZPF_ENOKEY);
    assert_int_equal(open_copy(&kr, CL, buf, (size_t)n, plain, 11, NULL),
                     ZPF_ENOSPC);
    assert_int_equal(open_copy(&kr, CL, buf, (size_t)n, plain, 12, NULL),
                     12);
    assert_int_equal(zpf_open(NULL, CL, buf, (size_t)n, plain, 12, NULL),
                     ZPF_EINVAL);
    assert_int_equal(zpf_open(&kr, NULL, 4, buf, (size_t)n, plain, 12, NULL),
                     ZPF_EINVAL);
    assert_int_equal(zpf_open(&kr, c65, sizeof(c65), buf, (size_t)n, plain,
                              12, NULL),
                     ZPF_EINVAL);
    assert_int_equal(zpf_open(&kr, CL, NULL, (size_t)n, plain, 12, NULL),
                     ZPF_EINVAL);
    assert_int_equal(zpf_open(&kr, CL, buf, (size_t)n, NULL, 12, NULL),
                     ZPF_EINVAL);
    assert_int_equal(zpf_open(&kr, CL, buf, (size_t)1 << 31, plain, 12,
                              NULL),
                     ZPF_E2BIG);
    /* Opening in place is refused; the envelope is left as it was. */
    assert_int_equal(zpf_open(&kr, CL, buf, (size_t)n, buf + 10, 12, NULL),
                     ZPF_EINVAL);
    assert_int_equal(zpf_open(&kr, CL, buf, (size_t)n, plain, 12, NULL), 12);
    /* An empty message opens into no buffer at all. */
    n = zpf_seal(&kr, CL, 1, 1, 1, NULL, 0, buf, sizeof(buf));
    assert_int_equal(open_copy(&kr, CL, buf, (size_t)n, NULL, 0, NULL), 0);
}

/* --- keyring ------------------------------------------------------------ */

static void test_nonprimary_opens(void **state)
{
    (void)state;
    struct zpf_keyring x, y;
    const uint8_t sx[] = {1, 2}, sy[] = {1, 2};
    uint8_t sealed[64], plain[16];

    ring_of(&x, sx, 2);
    ring_of(&y, sy, 2);
    assert_int_equal(zpf_keyring_use(&x, id_of(2)), 0);
    int n = zpf_seal(&x, CL, 1, 2, 3, (const uint8_t *)"hi", 2, sealed,
                     sizeof(sealed));
    assert_int_equal(sealed[1], id_of(2) >> 24);
    /* y seals with key 1 but opens under key 2 as well. */
    assert_int_equal(zpf_keyring_primary(&y)->id, id_of(1));
    assert_int_equal(open_copy(&y, CL, sealed, (size_t)n, plain,
                               sizeof(plain), NULL),
                     2);
}

/* Install the new key everywhere, make it primary, remove the old: at no
 * step can one node fail to open the other's packets. */
static void test_rotation(void **state)
{
    (void)state;
    struct zpf_keyring x, y;
    const uint8_t s_old[] = {50};
    uint8_t k_new[ZPF_KEY_LEN], sealed[64], plain[16];
    uint32_t old_id = id_of(50), new_id;
    struct zpf_keyring *nodes[2] = {&x, &y};

    ring_of(&x, s_old, 1);
    ring_of(&y, s_old, 1);
    key_fill(k_new, 60);
    new_id = zpf_key_id(k_new);

    for (int step = 0; step < 6; step++) {
        switch (step) {
        case 0: assert_int_equal(zpf_keyring_add(&x, k_new), 0); break;
        case 1: assert_int_equal(zpf_keyring_add(&y, k_new), 0); break;
        case 2: assert_int_equal(zpf_keyring_use(&x, new_id), 0); break;
        case 3: assert_int_equal(zpf_keyring_use(&y, new_id), 0); break;
        case 4: assert_int_equal(zpf_keyring_remove(&x, old_id), 0); break;
        case 5: assert_int_equal(zpf_keyring_remove(&y, old_id), 0); break;
        }
        for (int from = 0; from < 2; from++) {
            int n = zpf_seal(nodes[from], CL, 1, (uint64_t)step, 0,
                             (const uint8_t *)"ok", 2, sealed,
                             sizeof(sealed));
            assert_int_equal(n, 2 + ZPF_SEAL_OVERHEAD);
            int rc = open_copy(nodes[1 - from], CL, sealed, (size_t)n, plain,
                               sizeof(plain), NULL);
            if (rc != 2)
                fail_msg("step %d, node %d to %d: %s", step, from, 1 - from,
                         zpf_err_name(rc));
        }
    }
    assert_int_equal(x.n, 1);
    assert_int_equal(zpf_keyring_primary(&x)->id, new_id);
    assert_null(zpf_keyring_find(&y, old_id));
    /* A straggler still sealing under the old key is now refused. */
    struct zpf_keyring old;
    ring_of(&old, s_old, 1);
    int n = zpf_seal(&old, CL, 1, 1, 0, (const uint8_t *)"ok", 2, sealed,
                     sizeof(sealed));
    assert_int_equal(open_copy(&x, CL, sealed, (size_t)n, plain,
                               sizeof(plain), NULL),
                     ZPF_ENOKEY);
}

static void test_keyring_ops(void **state)
{
    (void)state;
    struct zpf_keyring kr;
    const uint8_t seeds[] = {1, 2, 3, 4};
    uint8_t key[ZPF_KEY_LEN];

    zpf_keyring_init(&kr);
    assert_null(zpf_keyring_primary(&kr));
    assert_null(zpf_keyring_find(&kr, id_of(1)));
    assert_int_equal(zpf_keyring_use(&kr, id_of(1)), ZPF_ENOENT);
    assert_int_equal(zpf_keyring_remove(&kr, id_of(1)), ZPF_ENOENT);

    ring_of(&kr, seeds, 4);
    /* The first key added is primary; adding more does not change it. */
    assert_int_equal(zpf_keyring_primary(&kr)->id, id_of(1));
    key_fill(key, 3);
    assert_int_equal(zpf_keyring_add(&kr, key), ZPF_EEXIST);
    assert_int_equal(kr.n, 4);
    assert_int_equal(zpf_keyring_use(&kr, 12345), ZPF_ENOENT);
    assert_int_equal(zpf_keyring_remove(&kr, 12345), ZPF_ENOENT);

    /* The primary cannot be removed, not even as the last key. */
    assert_int_equal(zpf_keyring_use(&kr, id_of(3)), 0);
    assert_int_equal(zpf_keyring_remove(&kr, id_of(3)), ZPF_EBUSY);
    /* Removing a key before the primary keeps the order and the primary. */
    assert_int_equal(zpf_keyring_remove(&kr, id_of(1)), 0);
    assert_int_equal(kr.n, 3);
    assert_int_equal(kr.keys[0].id, id_of(2));
    assert_int_equal(kr.keys[1].id, id_of(3));
    assert_int_equal(kr.keys[2].id, id_of(4));
    assert_int_equal(zpf_keyring_primary(&kr)->id, id_of(3));
    /* The freed slot holds no key material. */
    uint8_t zero[sizeof(kr.keys[0])];
    memset(zero, 0, sizeof(zero));
    assert_memory_equal(&kr.keys[3], zero, sizeof(zero));
    /* Removing one after it changes nothing else. */
    assert_int_equal(zpf_keyring_remove(&kr, id_of(4)), 0);
    assert_int_equal(zpf_keyring_primary(&kr)->id, id_of(3));
    assert_int_equal(zpf_keyring_remove(&kr, id_of(2)), 0);
    assert_int_equal(zpf_keyring_remove(&kr, id_of(3)), ZPF_EBUSY);
    assert_int_equal(kr.n, 1);
    const struct zpf_key *k = zpf_keyring_find(&kr, id_of(3));
    assert_non_null(k);
    key_fill(key, 3);
    assert_memory_equal(k->bytes, key, ZPF_KEY_LEN);

    assert_int_equal(zpf_keyring_add(NULL, key), ZPF_EINVAL);
    assert_int_equal(zpf_keyring_add(&kr, NULL), ZPF_EINVAL);
    assert_int_equal(zpf_keyring_use(NULL, 1), ZPF_EINVAL);
    assert_int_equal(zpf_keyring_remove(NULL, 1), ZPF_EINVAL);
    assert_null(zpf_keyring_find(NULL, 1));
    assert_null(zpf_keyring_primary(NULL));
    /* A count past the array is not trusted. */
    kr.n = 1000;
    kr.primary = 999;
    assert_null(zpf_keyring_primary(&kr));
    assert_int_equal(zpf_keyring_add(&kr, key), ZPF_EEXIST);
}

static void test_keyring_full(void **state)
{
    (void)state;
    struct zpf_keyring kr;
    uint8_t key[ZPF_KEY_LEN];

    zpf_keyring_init(&kr);
    for (int i = 0; i < ZPF_KEYS_MAX; i++) {
        key_fill(key, (uint8_t)(100 + i));
        assert_int_equal(zpf_keyring_add(&kr, key), 0);
    }
    key_fill(key, 200);
    assert_int_equal(zpf_keyring_add(&kr, key), ZPF_ELIMIT);
    key_fill(key, 100);
    assert_int_equal(zpf_keyring_add(&kr, key), ZPF_EEXIST);
    assert_int_equal(kr.n, ZPF_KEYS_MAX);
    assert_null(zpf_keyring_find(&kr, id_of(200)));
    /* Room again after a removal. */
    assert_int_equal(zpf_keyring_remove(&kr, id_of(105)), 0);
    key_fill(key, 200);
    assert_int_equal(zpf_keyring_add(&kr, key), 0);
    assert_int_equal(kr.keys[ZPF_KEYS_MAX - 1].id, id_of(200));
}

static void test_keyring_equal(void **state)
{
    (void)state;
    struct zpf_keyring a, b, e1, e2;
    const uint8_t sa[] = {1, 2, 3}, sb[] = {3, 1, 2}, sc[] = {1, 2};

    zpf_keyring_init(&e1);
    zpf_keyring_init(&e2);
    assert_true(zpf_keyring_equal(&e1, &e2));
    ring_of(&a, sa, 3);
    assert_false(zpf_keyring_equal(&a, &e1));
    assert_false(zpf_keyring_equal(&e1, &a));
    ring_of(&b, sb, 3);
    /* Same keys, but b's first (primary) is key 3. */
    assert_false(zpf_keyring_equal(&a, &b));
    assert_int_equal(zpf_keyring_use(&b, id_of(1)), 0);
    assert_true(zpf_keyring_equal(&a, &b));
    assert_true(zpf_keyring_equal(&b, &a));
    ring_of(&b, sc, 2);
    assert_false(zpf_keyring_equal(&a, &b));
    /* Same ids, other bytes (only a forged ring can do this). */
    b = a;
    b.keys[2].bytes[0] ^= 1;
    assert_false(zpf_keyring_equal(&a, &b));
    assert_true(zpf_keyring_equal(NULL, NULL));
    assert_false(zpf_keyring_equal(&a, NULL));
}

static void test_keyring_wipe(void **state)
{
    (void)state;
    struct zpf_keyring kr;
    const uint8_t seeds[] = {0xAA, 0xBB, 0xCC};
    uint8_t zero[sizeof(kr)];

    ring_of(&kr, seeds, 3);
    assert_int_equal(zpf_keyring_use(&kr, id_of(0xBB)), 0);
    memset(zero, 0, sizeof(zero));
    assert_memory_not_equal(&kr, zero, sizeof(kr));
    zpf_keyring_wipe(&kr);
    assert_memory_equal(&kr, zero, sizeof(kr));
    assert_null(zpf_keyring_primary(&kr));
    zpf_keyring_wipe(NULL);
}

/* --- base64 ------------------------------------------------------------- */

/* Key 00..1f in standard base64. */
static const char KEY0_B64[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

static void test_key_decode(void **state)
{
    (void)state;
    uint8_t key[ZPF_KEY_LEN], want[ZPF_KEY_LEN];
    char buf[128];

    key_fill(want, 0);
    assert_int_equal(zpf_key_decode(KEY0_B64, strlen(KEY0_B64), key), 0);
    assert_memory_equal(key, want, ZPF_KEY_LEN);

    snprintf(buf, sizeof(buf), " \t\r\n%s\n\v\f ", KEY0_B64);
    memset(key, 0, sizeof(key));
    assert_int_equal(zpf_key_decode(buf, strlen(buf), key), 0);
    assert_memory_equal(key, want, ZPF_KEY_LEN);
    /* Only len bytes are read: the rest of a line does not count. */
    snprintf(buf, sizeof(buf), "%s garbage", KEY0_B64);
    assert_int_equal(zpf_key_decode(buf, strlen(KEY0_B64), key), 0);

    static const char *bad[] = {
        "",
        "   \n",
        /* 16 bytes */
        "AAECAwQFBgcICQoLDA0ODw==",
        /* 33 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
        /* 31 bytes, padded to 44 characters */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
        /* missing padding */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        /* non-zero trailing bits: a second spelling of the same key */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=",
        /* characters outside the alphabet, URL-safe ones included */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdH!8=",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdH-8=",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdH_8=",
        /* whitespace inside */
        "AAECAwQFBgcICQoL DA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\0",
        /* the padding in the middle */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaG=wdHh8=",
        /* two keys */
        ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
         "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = strlen(bad[i]);
        if (i == 11)
            len++; /* the NUL is inside the given length */
        memset(key, 0x5A, sizeof(key));
        int rc = zpf_key_decode(bad[i], len, key);
        if (rc != ZPF_EINVAL)
            fail_msg("bad[%zu] \"%s\": %s", i, bad[i], zpf_err_name(rc));
        /* Nothing is written on failure. */
        for (int j = 0; j < ZPF_KEY_LEN; j++)
            assert_int_equal(key[j], 0x5A);
    }
    assert_int_equal(zpf_key_decode(NULL, 44, key), ZPF_EINVAL);
    assert_int_equal(zpf_key_decode(KEY0_B64, 44, NULL), ZPF_EINVAL);
}

static void test_key_encode(void **state)
{
    (void)state;
    uint8_t key[ZPF_KEY_LEN], back[ZPF_KEY_LEN];
    char out[ZPF_KEY_B64_LEN + 8];

    key_fill(key, 0);
    memset(out, '#', sizeof(out));
    assert_int_equal(zpf_key_encode(key, out, ZPF_KEY_B64_LEN), 44);
    assert_string_equal(out, KEY0_B64);
    assert_int_equal(out[ZPF_KEY_B64_LEN], '#');

    for (int seed = 0; seed < 256; seed += 37) {
        key_fill(key, (uint8_t)seed);
        assert_int_equal(zpf_key_encode(key, out, sizeof(out)), 44);
        assert_int_equal(zpf_key_decode(out, strlen(out), back), 0);
        assert_memory_equal(back, key, ZPF_KEY_LEN);
    }
    memset(out, '#', sizeof(out));
    assert_int_equal(zpf_key_encode(key, out, ZPF_KEY_B64_LEN - 1),
                     ZPF_ENOSPC);
    assert_int_equal(out[0], '#');
    assert_int_equal(zpf_key_encode(NULL, out, sizeof(out)), ZPF_EINVAL);
    assert_int_equal(zpf_key_encode(key, NULL, sizeof(out)), ZPF_EINVAL);
}

/* --- replay window ------------------------------------------------------ */

/* An allocator that counts live blocks and can fail one chosen call. */
struct fail_alloc {
    long calls;     /* allocating calls so far */
    long fail_at;   /* fail the call with this number, or -1 */
    long live;      /* blocks not yet freed */
};

static void *fail_realloc(void *ctx, void *ptr, size_t size)
{
    struct fail_alloc *a = ctx;

    if (size == 0) {
        if (ptr != NULL)
            a->live--;
        free(ptr);
        return NULL;
    }
    if (a->calls++ == a->fail_at)
        return NULL;
    void *p = realloc(ptr, size);
    if (p != NULL && ptr == NULL)
        a->live++;
    return p;
}

struct rctx {
    struct zpf_replay t;
    struct fail_alloc a;
};

static int rsetup(void **state)
{
    struct rctx *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return -1;
    x->a.fail_at = -1;
    *state = x;
    return 0;
}

/* Frees the table even when a test failed, and checks no block leaked. */
static int rteardown(void **state)
{
    struct rctx *x = *state;
    zpf_replay_free(&x->t);
    long live = x->a.live;
    free(x);
    return live == 0 ? 0 : -1;
}

#define ACCEPT(t, s, q) assert_int_equal(zpf_replay_check((t), (s), (q)), 0)
#define REFUSE(t, s, q)                                                        \
    assert_int_equal(zpf_replay_check((t), (s), (q)), ZPF_EREPLAY)

static void test_replay_window(void **state)
{
    struct rctx *x = *state;
    struct zpf_replay *t = &x->t;

    assert_int_equal(zpf_replay_init(t, 16, fail_realloc, &x->a), 0);
    ACCEPT(t, 1, 5000);
    REFUSE(t, 1, 5000);
    /* The first packet's window already covers the sequences below it. */
    ACCEPT(t, 1, 4999);
    REFUSE(t, 1, 4999);
    ACCEPT(t, 1, 5000 - ZPF_REPLAY_WINDOW);
    REFUSE(t, 1, 5000 - ZPF_REPLAY_WINDOW);
    REFUSE(t, 1, 5000 - ZPF_REPLAY_WINDOW - 1);
    REFUSE(t, 1, 0);
    /* Out of order inside the window: each once. */
    ACCEPT(t, 1, 5003);
    ACCEPT(t, 1, 5001);
    ACCEPT(t, 1, 5002);
    REFUSE(t, 1, 5001);
    REFUSE(t, 1, 5002);
    REFUSE(t, 1, 5003);
    ACCEPT(t, 1, 4500);
    REFUSE(t, 1, 4500);
    /* Sliding by one pushes the oldest edge out by one. */
    ACCEPT(t, 1, 5004);
    REFUSE(t, 1, 5004 - ZPF_REPLAY_WINDOW - 1);
    ACCEPT(t, 1, 5004 - ZPF_REPLAY_WINDOW);
    /* Another sender has its own window. */
    ACCEPT(t, 2, 5000);
    ACCEPT(t, 2, 4999);
    REFUSE(t, 2, 5000);
    assert_int_equal(zpf_replay_count(t), 2);
}

static void test_replay_edges(void **state)
{
    struct rctx *x = *state;
    struct zpf_replay *t = &x->t;

    assert_int_equal(zpf_replay_init(t, 4, fail_realloc, &x->a), 0);
    /* Sequence 0 is an ordinary first sequence. */
    ACCEPT(t, 0, 0);
    REFUSE(t, 0, 0);
    ACCEPT(t, 0, 1);
    REFUSE(t, 0, 1);
    ACCEPT(t, 0, ZPF_REPLAY_WINDOW);
    REFUSE(t, 0, 0);
    ACCEPT(t, 0, ZPF_REPLAY_WINDOW + 2);
    REFUSE(t, 0, 1); /* too old now, and seen */
    ACCEPT(t, 0, 2); /* exactly at the edge, never seen */

    /* The top of the range. */
    ACCEPT(t, UINT64_MAX, UINT64_MAX);
    REFUSE(t, UINT64_MAX, UINT64_MAX);
    ACCEPT(t, UINT64_MAX, UINT64_MAX - 1);
    REFUSE(t, UINT64_MAX, UINT64_MAX - 1);
    ACCEPT(t, UINT64_MAX, UINT64_MAX - ZPF_REPLAY_WINDOW);
    REFUSE(t, UINT64_MAX, UINT64_MAX - ZPF_REPLAY_WINDOW - 1);
    REFUSE(t, UINT64_MAX, 0);

    /* From 0 straight to the top. */
    ACCEPT(t, 7, 0);
    ACCEPT(t, 7, UINT64_MAX);
    REFUSE(t, 7, 0);
    REFUSE(t, 7, UINT64_MAX);
    ACCEPT(t, 7, UINT64_MAX - 64);
    REFUSE(t, 7, UINT64_MAX - 64);
}

/* Jumps of every size around the word and window boundaries: what was seen
 * and is still inside stays refused, what was never seen is accepted. */
static void test_replay_jumps(void **state)
{
    struct rctx *x = *state;
    struct zpf_replay *t = &x->t;
    static const uint64_t jumps[] = {
        1, 2, 63, 64, 65, 127, 128, 960, 1023, 1024, 1025, 1087, 1088,
        1089, 1151, 1152, 2048, 5000, UINT64_C(1) << 40};

    assert_int_equal(zpf_replay_init(t, 128, fail_realloc, &x->a), 0);
    for (size_t j = 0; j < sizeof(jumps) / sizeof(jumps[0]); j++) {
        for (uint64_t start = 1000; start < 1000 + 130; start += 43) {
            uint64_t s = j * 1000 + start; /* one sender per case */
            uint64_t base = start + 2000, top = base + jumps[j];
            /* base, and every other sequence of the window below it */
            ACCEPT(t, s, base);
            for (uint64_t q = base - ZPF_REPLAY_WINDOW; q < base; q += 2)
                ACCEPT(t, s, q);
            ACCEPT(t, s, top);
            /* Around the old window, then the new one (each q once). */
            uint64_t lo[2], hi[2];
            lo[0] = base - ZPF_REPLAY_WINDOW - 2;
            hi[0] = base + 2 < top ? base + 2 : top;
            lo[1] = top - ZPF_REPLAY_WINDOW - 2;
            if (lo[1] <= hi[0])
                lo[1] = hi[0] + 1;
            hi[1] = top;
            for (int r = 0; r < 2; r++) {
                for (uint64_t q = lo[r]; q <= hi[r]; q++) {
                    int want = 0;
                    if (q == top || top - q > ZPF_REPLAY_WINDOW)
                        want = ZPF_EREPLAY;
                    else if (q <= base && (base - q) % 2 == 0 &&
                             base - q <= ZPF_REPLAY_WINDOW)
                        want = ZPF_EREPLAY;
                    int rc = zpf_replay_check(t, s, q);
                    if (rc != want)
                        fail_msg("jump %llu from %llu, seq %llu: %s, want "
                                 "%s",
                                 (unsigned long long)jumps[j],
                                 (unsigned long long)base,
                                 (unsigned long long)q, zpf_err_name(rc),
                                 zpf_err_name(want));
                }
            }
        }
    }
}

/* splitmix64: a fixed seed gives the same run everywhere. */
static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* The naive model: per sender the top, every sequence seen inside the
 * window, and when it last advanced. */
#define MODEL_SENDERS 12
#define MODEL_MAX 7
struct model_sender {
    bool present;
    uint64_t top, stamp;
    uint64_t seen[ZPF_REPLAY_WINDOW + 1];
    size_t nseen;
};

static int model_check(struct model_sender *m, uint64_t *clock, int s,
                       uint64_t seq)
{
    struct model_sender *w = &m[s];
    if (!w->present) {
        int present = 0, oldest = -1;
        for (int i = 0; i < MODEL_SENDERS; i++) {
            if (!m[i].present)
                continue;
            present++;
            if (oldest < 0 || m[i].stamp < m[oldest].stamp)
                oldest = i;
        }
        if (present == MODEL_MAX)
            m[oldest].present = false;
        w->present = true;
        w->top = seq;
        w->nseen = 0;
        w->seen[w->nseen++] = seq;
        w->stamp = (*clock)++;
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
        w->seen[w->nseen++] = seq;
        return 0;
    }
    if (w->top - seq > ZPF_REPLAY_WINDOW)
        return ZPF_EREPLAY;
    for (size_t i = 0; i < w->nseen; i++)
        if (w->seen[i] == seq)
            return ZPF_EREPLAY;
    w->seen[w->nseen++] = seq;
    return 0;
}

static void test_replay_model(void **state)
{
    struct rctx *x = *state;
    struct zpf_replay *t = &x->t;
    const uint64_t seed = 20240611;
    uint64_t rng = seed, clock = 0;
    struct model_sender *m = calloc(MODEL_SENDERS, sizeof(*m));

    assert_non_null(m);
    assert_int_equal(zpf_replay_init(t, MODEL_MAX, fail_realloc, &x->a), 0);
    for (long step = 0; step < 100000; step++) {
        uint64_t r = next_rand(&rng);
        int s = (int)(r % MODEL_SENDERS);
        uint64_t top = m[s].present ? m[s].top : 0, seq;
        switch ((r >> 8) % 8) {
        case 0: /* far jump, or a fresh start near the top of the range */
            seq = (r >> 16) % 4 ? top + ((r >> 20) % 100000)
                                : UINT64_MAX - ((r >> 20) % 3000);
            break;
        case 1:
        case 2: /* a little ahead */
            seq = top + 1 + ((r >> 16) % 70);
            break;
        default: /* behind, mostly inside the window, sometimes not */
            seq = top - ((r >> 16) % (ZPF_REPLAY_WINDOW + 80));
            if (seq > top)
                seq = (r >> 16) % 8;
            break;
        }
        int want = model_check(m, &clock, s, seq);
        int rc = zpf_replay_check(t, (uint64_t)s * UINT64_C(0x100000001), seq);
        if (rc != want) {
            free(m);
            fail_msg("ZPF_SEED=%llu step %ld: sender %d seq %llu: %s, want %s",
                     (unsigned long long)seed, step, s,
                     (unsigned long long)seq, zpf_err_name(rc),
                     zpf_err_name(want));
        }
    }
    free(m);
    assert_int_equal(zpf_replay_count(t), MODEL_MAX);
}

static void test_replay_growth(void **state)
{
    struct rctx *x = *state;
    struct zpf_replay *t = &x->t;
    const uint32_t n = 5000;

    assert_int_equal(zpf_replay_init(t, 20000, fail_realloc, &x->a), 0);
    assert_int_equal(zpf_replay_memory(t), 0);
    size_t mem = 0;
    int resizes = 0;
    for (uint32_t i = 0; i < n; i++) {
        /* Sender ids as zpfd makes them, from names. */
        char name[16];
        int len = snprintf(name, sizeof(name), "n%u", i);
        ACCEPT(t, zpf_seal_sender_id(name, (size_t)len), i);
        if (zpf_replay_memory(t) != mem) {
            assert_true(zpf_replay_memory(t) > mem);
            mem = zpf_replay_memory(t);
            resizes++;
        }
    }
    assert_true(resizes >= 8);
    assert_int_equal(zpf_replay_count(t), n);
    assert_true(mem >= (size_t)n * 160 && mem <= (size_t)n * 2 * 180);
    for (uint32_t i = 0; i < n; i++) {
        char name[16];
        int len = snprintf(name, sizeof(name), "n%u", i);
        REFUSE(t, zpf_seal_sender_id(name, (size_t)len), i);
    }
    /* Forget every third, out of order: the rest stay findable. */
    for (uint32_t i = 0; i < n; i += 3) {
        char name[16];
        int len = snprintf(name, sizeof(name), "n%u", (i * 7) % n);
        zpf_replay_forget(t, zpf_seal_sender_id(name, (size_t)len));
    }
    uint32_t forgotten = 0;
    for (uint32_t i = 0; i < n; i++) {
        char name[16];
        bool gone = false;
        for (uint32_t j = 0; j < n && !gone; j += 3)
            gone = (j * 7) % n == i;
        int len = snprintf(name, sizeof(name), "n%u", i);
        uint64_t id = zpf_seal_sender_id(name, (size_t)len);
        if (gone) {
            forgotten++;
            ACCEPT(t, id, i);
        } else {
            REFUSE(t, id, i);
        }
    }
    assert_int_equal(forgotten, (n + 2) / 3);
    assert_int_equal(zpf_replay_count(t), n);
    zpf_replay_forget(t, 12345); /* unknown: nothing happens */
    assert_int_equal(zpf_replay_count(t), n);
    /* Free, then the table works again. */
    zpf_replay_free(t);
    assert_int_equal(zpf_replay_count(t), 0);
    assert_int_equal(zpf_replay_memory(t), 0);
    ACCEPT(t, 1, 1);
    REFUSE(t, 1, 1);
}

static void test_replay_eviction(void **state)
{
    struct rctx *x = *state;
    struct zpf_replay *t = &x->t;

    assert_int_equal(zpf_replay_init(t, 4, fail_realloc, &x->a), 0);
    for (uint64_t s = 1; s <= 4; s++)
        ACCEPT(t, s, 100);
    /* 2 advances; 1 only fills a hole, which does not count as advancing. */
    ACCEPT(t, 2, 101);
    ACCEPT(t, 1, 99);
    size_t mem = zpf_replay_memory(t);

    /* 5 evicts 1, the least recently advanced. */
    ACCEPT(t, 5, 100);
    assert_int_equal(zpf_replay_count(t), 4);
    assert_int_equal(zpf_replay_memory(t), mem);
    REFUSE(t, 2, 101);
    REFUSE(t, 3, 100);
    REFUSE(t, 4, 100);
    REFUSE(t, 5, 100);
    /* 1 comes back with a fresh window (accepting its old sequence once),
     * evicting 3, now the oldest. */
    ACCEPT(t, 1, 100);
    REFUSE(t, 1, 100);
    REFUSE(t, 2, 101);
    REFUSE(t, 4, 100);
    ACCEPT(t, 3, 100);
    /* That evicted 4; then 2 (advanced before 5 and 1). */
    ACCEPT(t, 4, 100);
    ACCEPT(t, 2, 101);
    assert_int_equal(zpf_replay_count(t), 4);

    /* A table of one. */
    zpf_replay_free(t);
    assert_int_equal(zpf_replay_init(t, 1, fail_realloc, &x->a), 0);
    ACCEPT(t, 1, 10);
    ACCEPT(t, 2, 10);
    ACCEPT(t, 1, 10);
    REFUSE(t, 1, 10);
    assert_int_equal(zpf_replay_count(t), 1);
}

/* Fail each allocation in turn: the check reports ZPF_ENOMEM, and the
 * table is unchanged and keeps working. */
static void test_replay_enomem(void **state)
{
    struct rctx *x = *state;
    struct zpf_replay *t = &x->t;

    long fail;
    for (fail = 0;; fail++) {
        zpf_replay_free(t);
        x->a.calls = 0;
        x->a.fail_at = fail;
        assert_int_equal(zpf_replay_init(t, 1000, fail_realloc, &x->a), 0);
        int failures = 0;
        for (uint64_t s = 1; s <= 300; s++) {
            uint32_t before = zpf_replay_count(t);
            size_t mem = zpf_replay_memory(t);
            int rc = zpf_replay_check(t, s, s * 10);
            if (rc == ZPF_ENOMEM) {
                failures++;
                assert_int_equal(zpf_replay_count(t), before);
                /* The sender was not recorded, the others still are. */
                for (uint64_t o = 1; o < s; o++)
                    REFUSE(t, o, o * 10);
                assert_true(zpf_replay_memory(t) >= mem);
                rc = zpf_replay_check(t, s, s * 10);
            }
            assert_int_equal(rc, 0);
            REFUSE(t, s, s * 10);
        }
        assert_int_equal(zpf_replay_count(t), 300);
        if (failures == 0)
            break; /* fail is past the last allocation */
        assert_int_equal(failures, 1);
    }
    /* Both arrays grew several times, so each kind of failure was met. */
    assert_true(fail >= 10);
}

static void test_replay_init_errors(void **state)
{
    struct rctx *x = *state;
    struct zpf_replay *t = &x->t;

    assert_int_equal(zpf_replay_init(t, 0, fail_realloc, &x->a), ZPF_EINVAL);
    assert_int_equal(zpf_replay_check(t, 1, 1), ZPF_EINVAL);
    zpf_replay_free(t);
    assert_int_equal(zpf_replay_init(t, ZPF_REPLAY_SENDERS_MAX + 1,
                                     fail_realloc, &x->a),
                     ZPF_EINVAL);
    assert_int_equal(zpf_replay_init(t, 8, NULL, NULL), ZPF_EINVAL);
    assert_int_equal(zpf_replay_check(t, 1, 1), ZPF_EINVAL);
    assert_int_equal(zpf_replay_init(NULL, 8, fail_realloc, &x->a),
                     ZPF_EINVAL);
    assert_int_equal(zpf_replay_check(NULL, 1, 1), ZPF_EINVAL);
    zpf_replay_forget(NULL, 1);
    zpf_replay_free(NULL);
    assert_int_equal(zpf_replay_count(NULL), 0);
    assert_int_equal(zpf_replay_memory(NULL), 0);
    assert_int_equal(zpf_replay_init(t, ZPF_REPLAY_SENDERS_MAX, fail_realloc,
                                     &x->a),
                     0);
    ACCEPT(t, 1, 1);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_pinned),
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_layout_and_ad),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_flip_every_byte),
        cmocka_unit_test(test_wrong_cluster),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_seal_errors),
        cmocka_unit_test(test_nonprimary_opens),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_keyring_ops),
        cmocka_unit_test(test_keyring_full),
        cmocka_unit_test(test_keyring_equal),
        cmocka_unit_test(test_keyring_wipe),
        cmocka_unit_test(test_key_decode),
        cmocka_unit_test(test_key_encode),
        cmocka_unit_test_setup_teardown(test_replay_window, rsetup,
                                        rteardown),
        cmocka_unit_test_setup_teardown(test_replay_edges, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_replay_jumps, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_replay_model, rsetup, rteardown),
        cmocka_unit_test_setup_teardown(test_replay_growth, rsetup,
                                        rteardown),
        cmocka_unit_test_setup_teardown(test_replay_eviction, rsetup,
                                        rteardown),
        cmocka_unit_test_setup_teardown(test_replay_enomem, rsetup,
                                        rteardown),
        cmocka_unit_test_setup_teardown(test_replay_init_errors, rsetup,
                                        rteardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
