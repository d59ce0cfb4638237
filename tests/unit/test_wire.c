/*
 * Tests for the wire codec (gossip/wire.c).
 *
 * Round trips pin that the encoder and decoder agree; the hand-built byte
 * sequences pin the format itself and every rejection path, so a change to
 * either side that drifts from wire.h fails here rather than between two
 * versions of zpfd.  Every packet handed to the decoder is copied into a heap
 * block of exactly its length, so an overread is an ASan error, not luck.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "zpf/error.h"
#include "zpf/gossip.h"
#include "wire.h"

/* --- helpers ------------------------------------------------------------ */

/* Distinct bytes in every position, so a shifted or truncated copy shows. */
static const char NAME64[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
/* Filled in main() with non-ASCII bytes: meta is opaque, not text. */
static uint8_t META512[ZPF_META_MAX];

static struct zpf__str sl(const char *s, size_t len)
{
    struct zpf__str r = {(const uint8_t *)s, (uint32_t)len};
    return r;
}

static struct zpf__str cs(const char *s)
{
    return sl(s, strlen(s));
}

static struct zpf_addr addr4(uint8_t a, uint8_t b, uint8_t c, uint8_t d,
                             uint16_t port)
{
    struct zpf_addr x;

    memset(&x, 0, sizeof(x));
    x.family = ZPF_AF_INET;
    x.ip[0] = a;
    x.ip[1] = b;
    x.ip[2] = c;
    x.ip[3] = d;
    x.port = port;
    return x;
}

static struct zpf_addr addr6(uint8_t seed, uint16_t port)
{
    struct zpf_addr x;

    memset(&x, 0, sizeof(x));
    x.family = ZPF_AF_INET6;
    for (int i = 0; i < 16; i++)
        x.ip[i] = (uint8_t)(seed + i * 17);
    x.port = port;
    return x;
}

static struct zpf__hdr hdr_min(void)
{
    struct zpf__hdr h;

    memset(&h, 0, sizeof(h));
    h.version = ZPF_PROTOCOL_VERSION;
    h.cluster = cs("c");
    h.sender = cs("a");
    return h;
}

/* Decode buf[0..len) from an exact-size heap copy; returns the result of
 * zpf__wire_validate. */
static int validate_exact(const uint8_t *buf, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    int rc;

    assert_non_null(copy);
    if (len)
        memcpy(copy, buf, len);
    rc = zpf__wire_validate(copy, len);
    free(copy);
    return rc;
}

/* A byte builder for hand-made packets. */
struct bb {
    uint8_t b[4096];
    size_t n;
};

static void bb_u8(struct bb *b, uint8_t v)
{
    assert_true(b->n < sizeof(b->b));
    b->b[b->n++] = v;
}

static void bb_bytes(struct bb *b, const void *p, size_t n)
{
    assert_true(n <= sizeof(b->b) - b->n);
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

/* A str8 of len copies of 'x': the length alone decides acceptance. */
static void bb_str8(struct bb *b, uint8_t len)
{
    bb_u8(b, 0xd9);
    bb_u8(b, len);
    for (unsigned i = 0; i < len; i++)
        bb_u8(b, 'x');
}

static void bb_bin16(struct bb *b, uint16_t len)
{
    bb_u8(b, 0xc5);
    bb_u8(b, (uint8_t)(len >> 8));
    bb_u8(b, (uint8_t)len);
    for (unsigned i = 0; i < len; i++)
        bb_u8(b, (uint8_t)i);
}

/* The minimal valid header [1, "c", "a", 0, 0]. */
static const uint8_t HDR[] = {0x95, 0x01, 0xa1, 'c', 0xa1, 'a', 0x00, 0x00};

static void bb_hdr(struct bb *b)
{
    bb_bytes(b, HDR, sizeof(HDR));
}

/* Validate HDR followed by one hand-built message. */
static int check_msg(const uint8_t *msg, size_t n)
{
    struct bb b = {.n = 0};

    bb_hdr(&b);
    bb_bytes(&b, msg, n);
    return validate_exact(b.b, b.n);
}

#define CHECK_MSG(expect, ...)                                                 \
    do {                                                                       \
        static const uint8_t m_[] = {__VA_ARGS__};                             \
        assert_int_equal(check_msg(m_, sizeof(m_)), (expect));                \
    } while (0)

#define CHECK_RAW(expect, ...)                                                 \
    do {                                                                       \
        static const uint8_t m_[] = {__VA_ARGS__};                             \
        assert_int_equal(validate_exact(m_, sizeof(m_)), (expect));           \
    } while (0)

static void assert_slice_eq(struct zpf__str a, struct zpf__str b)
{
    assert_int_equal(a.len, b.len);
    if (a.len)
        assert_memory_equal(a.p, b.p, a.len);
}

static void assert_addr_eq(const struct zpf_addr *a, const struct zpf_addr *b)
{
    assert_int_equal(a->family, b->family);
    assert_int_equal(a->port, b->port);
    assert_memory_equal(a->ip, b->ip, a->family == ZPF_AF_INET ? 4 : 16);
}

/* Compare only the fields wire.h says are meaningful for the type. */
static void assert_msg_eq(const struct zpf__msg *a, const struct zpf__msg *b)
{
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case ZPF__MSG_PING:
        assert_int_equal(a->seq, b->seq);
        assert_slice_eq(a->name, b->name);
        break;
    case ZPF__MSG_ACK:
    case ZPF__MSG_NACK:
        assert_int_equal(a->seq, b->seq);
        break;
    case ZPF__MSG_PING_REQ:
        assert_int_equal(a->seq, b->seq);
        assert_slice_eq(a->name, b->name);
        assert_addr_eq(&a->addr, &b->addr);
        break;
    case ZPF__MSG_ALIVE:
        assert_slice_eq(a->name, b->name);
        assert_int_equal(a->incarnation, b->incarnation);
        assert_addr_eq(&a->addr, &b->addr);
        assert_slice_eq(a->meta, b->meta);
        assert_true(a->counter == b->counter);
        break;
    case ZPF__MSG_SUSPECT:
        assert_slice_eq(a->name, b->name);
        assert_int_equal(a->incarnation, b->incarnation);
        assert_slice_eq(a->from, b->from);
        assert_true(a->counter == b->counter);
        break;
    case ZPF__MSG_DEAD:
        assert_slice_eq(a->name, b->name);
        assert_int_equal(a->incarnation, b->incarnation);
        assert_slice_eq(a->from, b->from);
        break;
    case ZPF__MSG_COUNTER:
    case ZPF__MSG_STALL:
        assert_slice_eq(a->name, b->name);
        assert_int_equal(a->incarnation, b->incarnation);
        assert_true(a->counter == b->counter);
        break;
    case ZPF__MSG_PUSHPULL:
        assert_int_equal(a->flags, b->flags);
        break;
    case ZPF__MSG_RECORD:
        assert_slice_eq(a->name, b->name);
        assert_int_equal(a->incarnation, b->incarnation);
        assert_int_equal(a->state, b->state);
        assert_addr_eq(&a->addr, &b->addr);
        assert_slice_eq(a->meta, b->meta);
        assert_true(a->counter == b->counter);
        break;
    default:
        fail_msg("unexpected type %u", a->type);
    }
}

/* One message of each type, with every field at its minimum (max == false)
 * or its maximum. */
static struct zpf__msg sample(uint8_t type, bool max)
{
    struct zpf__msg m;

    memset(&m, 0, sizeof(m));
    m.type = type;
    m.seq = max ? UINT32_MAX : 0;
    m.flags = max ? UINT32_MAX : 0;
    m.incarnation = max ? UINT32_MAX : 0;
    m.counter = max ? UINT64_MAX : 0;
    m.state = max ? ZPF_STATE_LEFT : ZPF_STATE_ALIVE;
    m.name = max ? sl(NAME64, ZPF_NAME_MAX) : cs("n");
    m.from = max ? sl(NAME64 + 1, ZPF_NAME_MAX - 1) : cs("f");
    m.meta = max ? sl((const char *)META512, ZPF_META_MAX) : sl(NULL, 0);
    m.addr = max ? addr6(0xf0, 65535) : addr4(0, 0, 0, 0, 0);
    return m;
}

/* Encode hdr + msgs, check the sizes against the documented bounds, decode
 * them back and compare. */
static void roundtrip(const struct zpf__hdr *h, const struct zpf__msg *msgs,
                      size_t n)
{
    uint8_t buf[16384];
    struct zpf__writer w;
    struct zpf__reader r;
    struct zpf__hdr h2;
    struct zpf__msg m2;
    size_t before;
    uint8_t *copy;

    zpf__wire_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(zpf__wire_put_hdr(&w, h), 0);
    assert_true(w.len <= ZPF__HDR_MAX);
    for (size_t i = 0; i < n; i++) {
        before = w.len;
        assert_int_equal(zpf__wire_put_msg(&w, &msgs[i]), 0);
        assert_true(w.len - before <= ZPF__MSG_MAX);
    }
    assert_false(w.overflow);

    copy = malloc(w.len);
    assert_non_null(copy);
    memcpy(copy, buf, w.len);
    assert_int_equal(zpf__wire_validate(copy, w.len), 0);
    assert_int_equal(zpf__wire_read_hdr(&r, copy, w.len, &h2), 0);
    assert_int_equal(h2.version, h->version);
    assert_slice_eq(h2.cluster, h->cluster);
    assert_slice_eq(h2.sender, h->sender);
    assert_int_equal(h2.incarnation, h->incarnation);
    assert_true(h2.counter == h->counter);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(zpf__wire_next(&r, &m2), 1);
        assert_msg_eq(&m2, &msgs[i]);
    }
    assert_int_equal(zpf__wire_next(&r, &m2), 0);
    /* The clean end stays the clean end. */
    assert_int_equal(zpf__wire_next(&r, &m2), 0);
    free(copy);
}

/* --- round trips -------------------------------------------------------- */

/* The exact bytes of a tiny packet, so the format cannot drift silently. */
static void test_golden_bytes(void **state)
{
    static const uint8_t want[] = {
        0x95, 0x01, 0xa1, 'c', 0xa1, 'a', 0x00, 0x00, /* header */
        0x93, 0x01, 0x07, 0xa1, 'b',                  /* PING seq 7 "b" */
        0x92, 0x02, 0xcd, 0x01, 0x00,                 /* ACK seq 256 */
        0x94, 0x04, 0x00, 0xa1, 'b',                  /* PING_REQ */
        0xc4, 0x06, 10, 0, 0, 1, 0x1f, 0x0a,          /* 10.0.0.1:7946 */
    };
    uint8_t buf[64];
    struct zpf__writer w;
    struct zpf__hdr h = hdr_min();
    struct zpf__msg m;

    (void)state;
    zpf__wire_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(zpf__wire_put_hdr(&w, &h), 0);
    memset(&m, 0, sizeof(m));
    m.type = ZPF__MSG_PING;
    m.seq = 7;
    m.name = cs("b");
    assert_int_equal(zpf__wire_put_msg(&w, &m), 0);
    m.type = ZPF__MSG_ACK;
    m.seq = 256;
    assert_int_equal(zpf__wire_put_msg(&w, &m), 0);
    m.type = ZPF__MSG_PING_REQ;
    m.seq = 0;
    m.addr = addr4(10, 0, 0, 1, 7946);
    assert_int_equal(zpf__wire_put_msg(&w, &m), 0);
    assert_int_equal(w.len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

static void test_hdr_roundtrip(void **state)
{
    struct zpf__hdr h = hdr_min();

    (void)state;
    roundtrip(&h, NULL, 0);

    h.cluster = sl(NAME64, ZPF_CLUSTER_MAX);
    h.sender = sl(NAME64, ZPF_NAME_MAX);
    h.incarnation = UINT32_MAX;
    h.counter = UINT64_MAX;
    roundtrip(&h, NULL, 0);
}

static void test_msg_roundtrip_min(void **state)
{
    struct zpf__hdr h = hdr_min();
    struct zpf__msg m;

    (void)state;
    for (uint8_t t = ZPF__MSG_PING; t <= ZPF__MSG_STALL; t++) {
        m = sample(t, false);
        roundtrip(&h, &m, 1);
    }
}

static void test_msg_roundtrip_max(void **state)
{
    struct zpf__hdr h = hdr_min();
    struct zpf__msg m;

    (void)state;
    for (uint8_t t = ZPF__MSG_PING; t <= ZPF__MSG_STALL; t++) {
        m = sample(t, true);
        roundtrip(&h, &m, 1);
    }
}

/* Values at each msgpack width boundary, where an off-by-one in either the
 * packer choice or our reader would show. */
static void test_uint_boundaries(void **state)
{
    static const uint64_t vals[] = {
        0, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, UINT32_MAX,
        (uint64_t)UINT32_MAX + 1, UINT64_MAX,
    };
    struct zpf__hdr h = hdr_min();
    struct zpf__msg m[2];

    (void)state;
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        m[0] = sample(ZPF__MSG_COUNTER, false);
        m[0].counter = vals[i];
        m[1] = sample(ZPF__MSG_ACK, false);
        m[1].seq = (uint32_t)(vals[i] > UINT32_MAX ? UINT32_MAX : vals[i]);
        h.incarnation = m[1].seq;
        h.counter = vals[i];
        roundtrip(&h, m, 2);
    }
}

static void test_addr_v4_v6(void **state)
{
    uint8_t buf[256];
    struct zpf__writer w;
    struct zpf__msg m = sample(ZPF__MSG_PING_REQ, false);
    struct zpf__reader r;
    struct zpf__msg got;
    struct zpf__hdr h;

    (void)state;
    m.addr = addr4(192, 168, 1, 2, 0x1234);
    zpf__wire_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(zpf__wire_put_msg(&w, &m), 0);
    /* 94 04 00 a1 'n' c4 06 c0 a8 01 02 12 34 */
    assert_int_equal(w.len, 13);
    assert_int_equal(buf[5], 0xc4);
    assert_int_equal(buf[6], 6);
    assert_int_equal(buf[7], 192);
    assert_int_equal(buf[11], 0x12);
    assert_int_equal(buf[12], 0x34);

    m.addr = addr6(1, 443);
    zpf__wire_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(zpf__wire_put_msg(&w, &m), 0);
    assert_int_equal(w.len, 25);
    assert_int_equal(buf[6], 18);
    assert_int_equal(buf[23], 443 >> 8);
    assert_int_equal(buf[24], 443 & 0xff);

    /* Decoding clears what IPv4 does not use. */
    zpf__wire_writer_init(&w, buf, sizeof(buf));
    h = hdr_min();
    assert_int_equal(zpf__wire_put_hdr(&w, &h), 0);
    m.addr = addr4(1, 2, 3, 4, 5);
    assert_int_equal(zpf__wire_put_msg(&w, &m), 0);
    assert_int_equal(zpf__wire_read_hdr(&r, buf, w.len, &h), 0);
    assert_int_equal(zpf__wire_next(&r, &got), 1);
    assert_int_equal(got.addr.family, ZPF_AF_INET);
    assert_int_equal(got.addr.port, 5);
    for (int i = 4; i < 16; i++)
        assert_int_equal(got.addr.ip[i], 0);
}

/* A push-pull stream frame: PUSHPULL then many RECORDs, in one buffer. */
static void test_stream_frame(void **state)
{
    struct zpf__hdr h = hdr_min();
    struct zpf__msg m[20];

    (void)state;
    m[0] = sample(ZPF__MSG_PUSHPULL, false);
    m[0].flags = ZPF__PP_JOIN | ZPF__PP_REPLY;
    for (int i = 1; i < 20; i++) {
        m[i] = sample(ZPF__MSG_RECORD, i % 2 == 0);
        m[i].state = (uint8_t)(i % 4);
        m[i].name = sl(NAME64, (size_t)i);
    }
    roundtrip(&h, m, 20);
}

/* --- encoder limits ----------------------------------------------------- */

static void test_fill_until_enospc(void **state)
{
    uint8_t buf[1400], snap[1400];
    struct zpf__writer w;
    struct zpf__hdr h = hdr_min();
    struct zpf__msg m = sample(ZPF__MSG_ALIVE, false);
    struct zpf__msg small = sample(ZPF__MSG_ACK, false);
    struct zpf__writer saved;
    int puts = 0, rc;
    size_t acks = 0;

    (void)state;
    m.meta = sl((const char *)META512, 100);
    zpf__wire_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(zpf__wire_put_hdr(&w, &h), 0);
    while ((rc = zpf__wire_put_msg(&w, &m)) == 0)
        puts++;
    assert_int_equal(rc, ZPF_ENOSPC);
    assert_true(puts > 5);

    /* Unchanged by the failed put: fields and content. */
    saved = w;
    memcpy(snap, buf, w.len);
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_ENOSPC);
    assert_ptr_equal(w.buf, saved.buf);
    assert_int_equal(w.cap, saved.cap);
    assert_int_equal(w.len, saved.len);
    assert_false(w.overflow);
    assert_memory_equal(buf, snap, w.len);

    /* A smaller message may still fit, and the packet stays valid. */
    while (zpf__wire_put_msg(&w, &small) == 0)
        acks++;
    assert_true(w.len <= sizeof(buf));
    assert_true(sizeof(buf) - w.len < 3); /* an ACK [2, 0] is 3 bytes */
    assert_int_equal(validate_exact(buf, w.len), 0);

    {
        struct zpf__reader r;
        struct zpf__msg got;
        int n = 0;

        assert_int_equal(zpf__wire_read_hdr(&r, buf, w.len, &h), 0);
        while (zpf__wire_next(&r, &got) == 1)
            n++;
        assert_int_equal((size_t)n, (size_t)puts + acks);
    }
}

/* For every capacity, a put either fits exactly when there is room or leaves
 * the writer untouched. */
static void test_enospc_every_cap(void **state)
{
    uint8_t full[1024], buf[1024];
    struct zpf__writer w;
    struct zpf__hdr h = hdr_min();
    struct zpf__msg m = sample(ZPF__MSG_RECORD, true);
    size_t hdr_len, total;

    (void)state;
    h.sender = sl(NAME64, 40);
    zpf__wire_writer_init(&w, full, sizeof(full));
    assert_int_equal(zpf__wire_put_hdr(&w, &h), 0);
    hdr_len = w.len;
    assert_int_equal(zpf__wire_put_msg(&w, &m), 0);
    total = w.len;

    for (size_t cap = 0; cap <= total; cap++) {
        zpf__wire_writer_init(&w, buf, cap);
        if (cap < hdr_len) {
            assert_int_equal(zpf__wire_put_hdr(&w, &h), ZPF_ENOSPC);
            assert_int_equal(w.len, 0);
            assert_false(w.overflow);
            continue;
        }
        assert_int_equal(zpf__wire_put_hdr(&w, &h), 0);
        if (cap < total) {
            assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_ENOSPC);
            assert_int_equal(w.len, hdr_len);
            assert_false(w.overflow);
        } else {
            assert_int_equal(zpf__wire_put_msg(&w, &m), 0);
            assert_memory_equal(buf, full, total);
        }
    }
}

/* The encoder refuses what the decoder would reject, leaving w alone. */
static void test_encode_rejects_invalid(void **state)
{
    uint8_t buf[2048];
    struct zpf__writer w;
    struct zpf__hdr h = hdr_min();
    struct zpf__msg m;
    static const char big[ZPF_NAME_MAX + 1] = {0};

    (void)state;
    zpf__wire_writer_init(&w, buf, sizeof(buf));

    m = sample(ZPF__MSG_ALIVE, false);
    m.addr.family = 0;
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_EINVAL);
    m.addr.family = 5;
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_EINVAL);
    m = sample(ZPF__MSG_RECORD, false);
    m.addr.family = 0;
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_EINVAL);
    m = sample(ZPF__MSG_PING_REQ, false);
    m.addr.family = 0;
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_EINVAL);

    m = sample(ZPF__MSG_PING, false);
    m.name = sl(big, 0);
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_EINVAL);
    m.name = sl(big, ZPF_NAME_MAX + 1);
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_EINVAL);
    m = sample(ZPF__MSG_DEAD, false);
    m.from = sl(big, 0);
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_EINVAL);
    m = sample(ZPF__MSG_ALIVE, false);
    m.meta = sl((const char *)META512, ZPF_META_MAX + 1);
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_EINVAL);
    m = sample(ZPF__MSG_RECORD, false);
    m.state = ZPF_STATE_STALLED; /* never sent on the wire */
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_EINVAL);
    m = sample(ZPF__MSG_ACK, false);
    m.type = 0;
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_EINVAL);
    m.type = ZPF__MSG_STALL + 1;
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_EINVAL);

    h.cluster = sl(big, 0);
    assert_int_equal(zpf__wire_put_hdr(&w, &h), ZPF_EINVAL);
    h = hdr_min();
    h.sender = sl(big, ZPF_NAME_MAX + 1);
    assert_int_equal(zpf__wire_put_hdr(&w, &h), ZPF_EINVAL);

    assert_int_equal(w.len, 0);
    assert_false(w.overflow);
}

/* --- decoder rejections ------------------------------------------------- */

/* Every prefix of a valid packet either ends on a message boundary (valid,
 * with exactly the messages before it) or is ETRUNC. */
static void test_truncation_every_offset(void **state)
{
    uint8_t buf[8192];
    size_t bounds[16];
    size_t nb = 0;
    struct zpf__writer w;
    struct zpf__hdr h = hdr_min();
    struct zpf__msg m;

    (void)state;
    h.counter = UINT64_MAX;
    zpf__wire_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(zpf__wire_put_hdr(&w, &h), 0);
    bounds[nb++] = w.len;
    for (uint8_t t = ZPF__MSG_PING; t <= ZPF__MSG_STALL; t++) {
        m = sample(t, t % 2 == 0);
        assert_int_equal(zpf__wire_put_msg(&w, &m), 0);
        bounds[nb++] = w.len;
    }

    for (size_t len = 0; len < w.len; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        struct zpf__reader r;
        struct zpf__msg got;
        size_t k = 0, msgs = 0;
        int rc;

        assert_non_null(copy);
        memcpy(copy, buf, len);
        while (k < nb && bounds[k] < len)
            k++;
        rc = zpf__wire_read_hdr(&r, copy, len, &h);
        if (rc == 0) {
            while ((rc = zpf__wire_next(&r, &got)) == 1)
                msgs++;
        }
        if (k < nb && bounds[k] == len) {
            assert_int_equal(rc, 0);
            assert_int_equal(msgs, k);
        } else {
            assert_int_equal(rc, ZPF_ETRUNC);
            assert_int_equal(msgs, k == 0 ? 0 : k - 1);
        }
        assert_int_equal(zpf__wire_validate(copy, len), rc);
        free(copy);
    }
}

static void test_empty_and_header_only(void **state)
{
    struct zpf__reader r;
    struct zpf__hdr h;
    struct zpf__msg m;

    (void)state;
    assert_int_equal(zpf__wire_validate(NULL, 0), ZPF_ETRUNC);
    assert_int_equal(zpf__wire_read_hdr(&r, NULL, 0, &h), ZPF_ETRUNC);
    assert_int_equal(validate_exact(HDR, sizeof(HDR)), 0);
    assert_int_equal(zpf__wire_read_hdr(&r, HDR, sizeof(HDR), &h), 0);
    assert_true(zpf__str_eq(h.cluster, "c", 1));
    assert_true(zpf__str_eq(h.sender, "a", 1));
    assert_int_equal(zpf__wire_next(&r, &m), 0);
}

/* After an error the reader must not report a clean end. */
static void test_reader_spent(void **state)
{
    static const uint8_t pkt[] = {
        0x95, 0x01, 0xa1, 'c', 0xa1, 'a', 0x00, 0x00,
        0x92, 0x02, 0xc1,       /* ACK with a bad seq */
        0x92, 0x02, 0x00,       /* a valid ACK after it */
    };
    struct zpf__reader r;
    struct zpf__hdr h;
    struct zpf__msg m;

    (void)state;
    assert_int_equal(zpf__wire_read_hdr(&r, pkt, sizeof(pkt), &h), 0);
    assert_int_equal(zpf__wire_next(&r, &m), ZPF_EMSGPACK);
    assert_true(zpf__wire_next(&r, &m) < 0);
    assert_true(zpf__wire_next(&r, &m) < 0);

    assert_int_equal(zpf__wire_read_hdr(&r, pkt, 3, &h), ZPF_ETRUNC);
    assert_true(zpf__wire_next(&r, &m) < 0);
}

static void test_reject_c1(void **state)
{
    (void)state;
    CHECK_RAW(ZPF_EMSGPACK, 0xc1);
    CHECK_RAW(ZPF_EMSGPACK, 0x95, 0xc1);
    CHECK_RAW(ZPF_EMSGPACK, 0x95, 0x01, 0xc1);
    CHECK_RAW(ZPF_EMSGPACK, 0x95, 0x01, 0xa1, 'c', 0xa1, 'a', 0xc1, 0x00);
    CHECK_MSG(ZPF_EMSGPACK, 0xc1);
    CHECK_MSG(ZPF_EMSGPACK, 0x92, 0xc1, 0x00);
    CHECK_MSG(ZPF_EMSGPACK, 0x93, 0x01, 0x00, 0xc1);
    CHECK_MSG(ZPF_EMSGPACK, 0x94, 0x04, 0x00, 0xa1, 'b', 0xc1);
}

static void test_reject_wrong_family(void **state)
{
    (void)state;
    /* Header not an array: a map, a str, nil, a fixint. */
    CHECK_RAW(ZPF_EFIELD, 0x85, 0x01, 0xa1, 'c', 0xa1, 'a', 0x00, 0x00);
    CHECK_RAW(ZPF_EFIELD, 0xa1, 'c');
    CHECK_RAW(ZPF_EFIELD, 0xc0);
    CHECK_RAW(ZPF_EFIELD, 0x01);
    /* Version as a str, bool, float. */
    CHECK_RAW(ZPF_EFIELD, 0x95, 0xa1, '1', 0xa1, 'c', 0xa1, 'a', 0x00, 0x00);
    CHECK_RAW(ZPF_EFIELD, 0x95, 0xc3, 0xa1, 'c', 0xa1, 'a', 0x00, 0x00);
    CHECK_RAW(ZPF_EFIELD, 0x95, 0xca, 0x3f, 0x80, 0x00, 0x00, 0xa1, 'c', 0xa1,
              'a', 0x00, 0x00);
    /* Cluster as bin, sender as an int, incarnation as a str. */
    CHECK_RAW(ZPF_EFIELD, 0x95, 0x01, 0xc4, 0x01, 'c', 0xa1, 'a', 0x00, 0x00);
    CHECK_RAW(ZPF_EFIELD, 0x95, 0x01, 0xa1, 'c', 0x05, 0x00, 0x00);
    CHECK_RAW(ZPF_EFIELD, 0x95, 0x01, 0xa1, 'c', 0xa1, 'a', 0xa1, '0', 0x00);
    /* Counter as an ext. */
    CHECK_RAW(ZPF_EFIELD, 0x95, 0x01, 0xa1, 'c', 0xa1, 'a', 0x00, 0xd4, 0x01,
              0x00);

    /* Message not an array; type as a str; fields of the wrong family. */
    CHECK_MSG(ZPF_EFIELD, 0x02);
    CHECK_MSG(ZPF_EFIELD, 0x81, 0x01, 0x02);
    CHECK_MSG(ZPF_EFIELD, 0x92, 0xa1, '2', 0x00);
    CHECK_MSG(ZPF_EFIELD, 0x92, 0x02, 0xc0);                 /* seq nil */
    CHECK_MSG(ZPF_EFIELD, 0x93, 0x01, 0x00, 0xc4, 0x01, 'b'); /* target bin */
    CHECK_MSG(ZPF_EFIELD, 0x94, 0x04, 0x00, 0xa1, 'b',        /* addr str */
              0xa6, 1, 2, 3, 4, 5, 6);
    CHECK_MSG(ZPF_EFIELD, 0x96, 0x05, 0xa1, 'n', 0x00,        /* meta str */
              0xc4, 0x06, 1, 2, 3, 4, 5, 6, 0xa0, 0x00);
    CHECK_MSG(ZPF_EFIELD, 0x92, 0x09, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0);
}

static void test_reject_array_count(void **state)
{
    (void)state;
    /* Header with 4 and 6 elements, and an empty header. */
    CHECK_RAW(ZPF_EFIELD, 0x94, 0x01, 0xa1, 'c', 0xa1, 'a', 0x00);
    CHECK_RAW(ZPF_EFIELD, 0x96, 0x01, 0xa1, 'c', 0xa1, 'a', 0x00, 0x00, 0x00);
    CHECK_RAW(ZPF_EFIELD, 0x90);
    /* PING with 2 and 4 elements; an empty message. */
    CHECK_MSG(ZPF_EFIELD, 0x92, 0x01, 0x00);
    CHECK_MSG(ZPF_EFIELD, 0x94, 0x01, 0x00, 0xa1, 'b', 0x00);
    CHECK_MSG(ZPF_EFIELD, 0x90);
    /* ACK with 3, PUSHPULL with 1, RECORD with 6 (no counter). */
    CHECK_MSG(ZPF_EFIELD, 0x93, 0x02, 0x00, 0x00);
    CHECK_MSG(ZPF_EFIELD, 0x91, 0x09);
    CHECK_MSG(ZPF_EFIELD, 0x96, 0x0a, 0xa1, 'n', 0x00, 0x00,
              0xc4, 0x06, 1, 2, 3, 4, 5, 6, 0xc4, 0x00);
    /* A huge array32 count is caught by the count, not by reading on. */
    CHECK_MSG(ZPF_EFIELD, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00);
}

static void test_reject_name_lengths(void **state)
{
    struct bb b;

    (void)state;
    for (unsigned len = 0; len <= 66; len++) {
        int want = len >= 1 && len <= ZPF_NAME_MAX ? 0 : ZPF_ELIMIT;

        /* PING target */
        b.n = 0;
        bb_hdr(&b);
        bb_u8(&b, 0x93);
        bb_u8(&b, 0x01);
        bb_u8(&b, 0x00);
        bb_str8(&b, (uint8_t)len);
        assert_int_equal(validate_exact(b.b, b.n), want);

        /* SUSPECT from */
        b.n = 0;
        bb_hdr(&b);
        bb_bytes(&b, "\x95\x06\xa1n\x00", 5);
        bb_str8(&b, (uint8_t)len);
        bb_u8(&b, 0x00);
        assert_int_equal(validate_exact(b.b, b.n), want);

        /* Header cluster, then sender (ZPF_CLUSTER_MAX == ZPF_NAME_MAX). */
        b.n = 0;
        bb_bytes(&b, "\x95\x01", 2);
        bb_str8(&b, (uint8_t)len);
        bb_bytes(&b, "\xa1" "a\x00\x00", 4);
        assert_int_equal(validate_exact(b.b, b.n), want);

        b.n = 0;
        bb_bytes(&b, "\x95\x01\xa1" "c", 4);
        bb_str8(&b, (uint8_t)len);
        bb_bytes(&b, "\x00\x00", 2);
        assert_int_equal(validate_exact(b.b, b.n), want);
    }
    /* Fixstr of 0 bytes, too. */
    CHECK_MSG(ZPF_ELIMIT, 0x93, 0x01, 0x00, 0xa0);
    CHECK_RAW(ZPF_ELIMIT, 0x95, 0x01, 0xa0, 0xa1, 'a', 0x00, 0x00);
    /* A str32 announcing 4 GiB is over the bound before it is truncated. */
    CHECK_MSG(ZPF_ELIMIT, 0x93, 0x01, 0x00, 0xdb, 0xff, 0xff, 0xff, 0xff, 'b');
}

/* Names and cluster ids become C strings on the receiving node. */
static void test_reject_nul_in_names(void **state)
{
    (void)state;
    CHECK_MSG(ZPF_EFIELD, 0x93, 0x01, 0x00, 0xa3, 'a', 0x00, 'b');
    CHECK_MSG(ZPF_EFIELD, 0x95, 0x06, 0xa1, 'n', 0x00, 0xa2, 0x00, 'f', 0x00);
    CHECK_RAW(ZPF_EFIELD, 0x95, 0x01, 0xa2, 'c', 0x00, 0xa1, 'a', 0x00, 0x00);
    CHECK_RAW(ZPF_EFIELD, 0x95, 0x01, 0xa1, 'c', 0xa2, 'a', 0x00, 0x00, 0x00);

    uint8_t buf[256];
    struct zpf__writer w;
    zpf__wire_writer_init(&w, buf, sizeof buf);
    struct zpf__msg m = {.type = ZPF__MSG_PING,
                         .name = {(const uint8_t *)"a\0b", 3}};
    assert_int_equal(zpf__wire_put_msg(&w, &m), ZPF_EINVAL);
    assert_int_equal(w.len, 0);
}

static void test_reject_meta_length(void **state)
{
    static const uint8_t alive_head[] = {
        0x96, 0x05, 0xa1, 'n', 0x00, 0xc4, 0x06, 1, 2, 3, 4, 5, 6,
    };
    struct bb b;

    (void)state;
    for (unsigned len = 510; len <= 514; len++) {
        b.n = 0;
        bb_hdr(&b);
        bb_bytes(&b, alive_head, sizeof(alive_head));
        bb_bin16(&b, (uint16_t)len);
        bb_u8(&b, 0x00);
        assert_int_equal(validate_exact(b.b, b.n),
                         len <= ZPF_META_MAX ? 0 : ZPF_ELIMIT);
    }
    /* bin32 announcing 4 GiB: ELIMIT; bin32 of 300 with 2 bytes: ETRUNC. */
    CHECK_MSG(ZPF_ELIMIT, 0x96, 0x05, 0xa1, 'n', 0x00,
              0xc4, 0x06, 1, 2, 3, 4, 5, 6, 0xc6, 0xff, 0xff, 0xff, 0xff);
    CHECK_MSG(ZPF_ETRUNC, 0x96, 0x05, 0xa1, 'n', 0x00,
              0xc4, 0x06, 1, 2, 3, 4, 5, 6, 0xc6, 0x00, 0x00, 0x01, 0x2c, 1, 2);
}

static void test_reject_addr_length(void **state)
{
    struct bb b;

    (void)state;
    for (unsigned len = 0; len <= 20; len++) {
        b.n = 0;
        bb_hdr(&b);
        bb_bytes(&b, "\x94\x04\x00\xa1" "b", 5);
        bb_bin16(&b, (uint16_t)len);
        assert_int_equal(validate_exact(b.b, b.n),
                         len == 6 || len == 18 ? 0 : ZPF_EADDR);
    }
    CHECK_MSG(ZPF_EADDR, 0x94, 0x04, 0x00, 0xa1, 'b',
              0xc4, 0x05, 1, 2, 3, 4, 5);
    CHECK_MSG(ZPF_EADDR, 0x94, 0x04, 0x00, 0xa1, 'b',
              0xc6, 0xff, 0xff, 0xff, 0xff);
    /* The right length with its body cut short is truncation. */
    CHECK_MSG(ZPF_ETRUNC, 0x94, 0x04, 0x00, 0xa1, 'b', 0xc4, 0x06, 1, 2, 3);
}

static void test_reject_unknown_type(void **state)
{
    (void)state;
    CHECK_MSG(ZPF_ETYPE, 0x92, 99, 0x00);
    CHECK_MSG(ZPF_ETYPE, 0x92, 0x00, 0x00);
    CHECK_MSG(ZPF_ETYPE, 0x92, 0x0c, 0x00); /* one past STALL */
    CHECK_MSG(ZPF_ETYPE, 0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
              0xff);
    /* Known types are recognised whatever the element count says later. */
    CHECK_MSG(ZPF_ETYPE, 0x9f, 99);
    /* A type after a valid message is still checked. */
    CHECK_MSG(ZPF_ETYPE, 0x92, 0x02, 0x00, 0x92, 99, 0x00);
}

static void test_reject_version(void **state)
{
    (void)state;
    CHECK_RAW(ZPF_EVERSION, 0x95, 0x02, 0xa1, 'c', 0xa1, 'a', 0x00, 0x00);
    CHECK_RAW(ZPF_EVERSION, 0x95, 0x00, 0xa1, 'c', 0xa1, 'a', 0x00, 0x00);
    CHECK_RAW(ZPF_EVERSION, 0x95, 0xcf, 0, 0, 0, 1, 0, 0, 0, 1, 0xa1, 'c',
              0xa1, 'a', 0x00, 0x00);
    /* A future header of another shape is still a version mismatch. */
    CHECK_RAW(ZPF_EVERSION, 0x97, 0x02, 0xa1, 'c');
    CHECK_RAW(ZPF_EVERSION, 0x91, 0x02);
}

static void test_reject_signed_ints(void **state)
{
    (void)state;
    CHECK_RAW(ZPF_EFIELD, 0x95, 0xff, 0xa1, 'c', 0xa1, 'a', 0x00, 0x00);
    CHECK_RAW(ZPF_EFIELD, 0x95, 0xd0, 0x01, 0xa1, 'c', 0xa1, 'a', 0x00, 0x00);
    CHECK_RAW(ZPF_EFIELD, 0x95, 0x01, 0xa1, 'c', 0xa1, 'a', 0xe0, 0x00);
    CHECK_RAW(ZPF_EFIELD, 0x95, 0x01, 0xa1, 'c', 0xa1, 'a', 0x00,
              0xd3, 0, 0, 0, 0, 0, 0, 0, 1);
    CHECK_MSG(ZPF_EFIELD, 0x92, 0xff, 0x00);             /* type -1 */
    CHECK_MSG(ZPF_EFIELD, 0x92, 0x02, 0xff);             /* seq -1 */
    /* Non-negative values in a signed encoding are still the wrong family. */
    CHECK_MSG(ZPF_EFIELD, 0x92, 0x02, 0xd0, 0x05);
    CHECK_MSG(ZPF_EFIELD, 0x92, 0x02, 0xd1, 0x00, 0x05);
    CHECK_MSG(ZPF_EFIELD, 0x92, 0x02, 0xd2, 0x00, 0x00, 0x00, 0x05);
    CHECK_MSG(ZPF_EFIELD, 0x93, 0x08, 0xa1, 'n', 0xd3, 0, 0, 0, 0, 0, 0, 0, 5);
}

static void test_reject_over_uint32(void **state)
{
    (void)state;
    /* Header incarnation 2^32. */
    CHECK_RAW(ZPF_ELIMIT, 0x95, 0x01, 0xa1, 'c', 0xa1, 'a',
              0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0x00);
    /* seq, flags, message incarnation. */
    CHECK_MSG(ZPF_ELIMIT, 0x92, 0x02, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0);
    CHECK_MSG(ZPF_ELIMIT, 0x92, 0x09, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
              0xff, 0xff);
    CHECK_MSG(ZPF_ELIMIT, 0x94, 0x07, 0xa1, 'n', 0xcf, 0, 0, 0, 1, 0, 0, 0, 0,
              0xa1, 'f');
    /* UINT32_MAX itself, as a uint64, is fine. */
    CHECK_MSG(0, 0x92, 0x02, 0xcf, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff);
    /* RECORD state 4 (STALLED is never on the wire) and 2^32. */
    CHECK_MSG(ZPF_ELIMIT, 0x97, 0x0a, 0xa1, 'n', 0x00, 0x04,
              0xc4, 0x06, 1, 2, 3, 4, 5, 6, 0xc4, 0x00, 0x00);
    CHECK_MSG(ZPF_ELIMIT, 0x97, 0x0a, 0xa1, 'n', 0x00, 0xce, 0xff, 0, 0, 0,
              0xc4, 0x06, 1, 2, 3, 4, 5, 6, 0xc4, 0x00, 0x00);
    CHECK_MSG(0, 0x97, 0x0a, 0xa1, 'n', 0x00, 0xcf, 0, 0, 0, 0, 0, 0, 0, 3,
              0xc4, 0x06, 1, 2, 3, 4, 5, 6, 0xc4, 0x00, 0x00);
}

static void test_reject_truncated_headers(void **state)
{
    (void)state;
    /* Cut inside the length bytes of every sized lead. */
    CHECK_RAW(ZPF_ETRUNC, 0xdc, 0x00);
    CHECK_RAW(ZPF_ETRUNC, 0xdd, 0x00, 0x00, 0x00);
    CHECK_RAW(ZPF_ETRUNC, 0x95, 0xcd, 0x00);
    CHECK_RAW(ZPF_ETRUNC, 0x95, 0x01, 0xd9);
    CHECK_RAW(ZPF_ETRUNC, 0x95, 0x01, 0xda, 0x00);
    CHECK_RAW(ZPF_ETRUNC, 0x95, 0x01, 0xdb, 0x00, 0x00, 0x00);
    CHECK_RAW(ZPF_ETRUNC, 0x95, 0x01, 0xa5, 'c');
    CHECK_RAW(ZPF_ETRUNC, 0x95, 0x01, 0xa1, 'c', 0xa1, 'a', 0x00);
    CHECK_RAW(ZPF_ETRUNC, 0x95, 0x01, 0xa1, 'c', 0xa1, 'a', 0x00,
              0xcf, 1, 2, 3, 4, 5, 6, 7);
    CHECK_MSG(ZPF_ETRUNC, 0x92);
    CHECK_MSG(ZPF_ETRUNC, 0x92, 0x02);
    CHECK_MSG(ZPF_ETRUNC, 0x96, 0x05, 0xa1, 'n', 0x00, 0xc5, 0x00);
}

/* Non-minimal but valid encodings are accepted: another implementation (or
 * another msgpack-c version) may choose them. */
static void test_accept_nonminimal(void **state)
{
    struct zpf__reader r;
    struct zpf__hdr h;
    struct zpf__msg m;
    static const uint8_t pkt[] = {
        /* header as array16, version uint64, cluster str16, sender str32,
         * incarnation uint16, counter uint32 */
        0xdc, 0x00, 0x05, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1,
        0xda, 0x00, 0x01, 'c', 0xdb, 0x00, 0x00, 0x00, 0x02, 'a', 'b',
        0xcd, 0x00, 0x07, 0xce, 0x00, 0x00, 0x00, 0x09,
        /* PING as array32, type uint8, seq uint8 0x05, target str8 */
        0xdd, 0x00, 0x00, 0x00, 0x03, 0xcc, 0x01, 0xcc, 0x05, 0xd9, 0x01, 'b',
        /* ALIVE with addr bin32, meta bin16 of 0, counter uint64 of 0 */
        0x96, 0x05, 0xa1, 'n', 0xce, 0, 0, 0, 3,
        0xc6, 0x00, 0x00, 0x00, 0x06, 127, 0, 0, 1, 0x1f, 0x0a,
        0xc5, 0x00, 0x00, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0,
        /* PING_REQ with addr bin16 (IPv6) */
        0x94, 0x04, 0x00, 0xa1, 'b', 0xc5, 0x00, 0x12,
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x00, 0x50,
    };

    (void)state;
    assert_int_equal(validate_exact(pkt, sizeof(pkt)), 0);
    assert_int_equal(zpf__wire_read_hdr(&r, pkt, sizeof(pkt), &h), 0);
    assert_int_equal(h.version, 1);
    assert_true(zpf__str_eq(h.cluster, "c", 1));
    assert_true(zpf__str_eq(h.sender, "ab", 2));
    assert_int_equal(h.incarnation, 7);
    assert_true(h.counter == 9);

    assert_int_equal(zpf__wire_next(&r, &m), 1);
    assert_int_equal(m.type, ZPF__MSG_PING);
    assert_int_equal(m.seq, 5);
    assert_true(zpf__str_eq(m.name, "b", 1));

    assert_int_equal(zpf__wire_next(&r, &m), 1);
    assert_int_equal(m.type, ZPF__MSG_ALIVE);
    assert_int_equal(m.incarnation, 3);
    assert_int_equal(m.addr.family, ZPF_AF_INET);
    assert_int_equal(m.addr.ip[0], 127);
    assert_int_equal(m.addr.port, 7946);
    assert_int_equal(m.meta.len, 0);
    assert_true(m.counter == 0);

    assert_int_equal(zpf__wire_next(&r, &m), 1);
    assert_int_equal(m.type, ZPF__MSG_PING_REQ);
    assert_int_equal(m.addr.family, ZPF_AF_INET6);
    assert_int_equal(m.addr.ip[0], 0x20);
    assert_int_equal(m.addr.ip[15], 1);
    assert_int_equal(m.addr.port, 80);

    assert_int_equal(zpf__wire_next(&r, &m), 0);
}

/* --- small functions ---------------------------------------------------- */

static void test_wire_cause(void **state)
{
    static const int codes[] = {
        ZPF_ETRUNC, ZPF_EMSGPACK, ZPF_EVERSION, ZPF_ECLUSTER,
        ZPF_ETYPE,  ZPF_EFIELD,   ZPF_ELIMIT,   ZPF_EADDR,
        ZPF_ESELF,  ZPF_ENOTME,   ZPF_ELEAVING,
    };
    bool seen[16] = {false};

    (void)state;
    assert_int_equal(zpf__wire_cause(0), 0);
    assert_int_equal(zpf__wire_cause(1), 0);
    /* Pinned: these are metric labels. */
    assert_int_equal(zpf__wire_cause(ZPF_ETRUNC), 1);
    assert_int_equal(zpf__wire_cause(ZPF_ELEAVING), 11);
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        unsigned c = zpf__wire_cause(codes[i]);

        assert_true(c >= 1 && c <= 15);
        assert_false(seen[c]);
        seen[c] = true;
    }
    assert_int_equal(zpf__wire_cause(ZPF_ENOMEM), 15);
    assert_int_equal(zpf__wire_cause(ZPF_EINVAL), 15);
    assert_int_equal(zpf__wire_cause(-4099), 15);
    assert_int_equal(zpf__wire_cause(-1), 15);
    assert_false(seen[15]);
}

static void test_str_eq(void **state)
{
    (void)state;
    assert_true(zpf__str_eq(cs("abc"), "abc", 3));
    assert_false(zpf__str_eq(cs("abc"), "abd", 3));
    assert_false(zpf__str_eq(cs("abc"), "ab", 2));
    assert_false(zpf__str_eq(cs("ab"), "abc", 3));
    assert_true(zpf__str_eq(sl(NULL, 0), "", 0));
    /* Lengths, not NULs, delimit. */
    assert_false(zpf__str_eq(sl("a\0b", 3), "a", 1));
    assert_true(zpf__str_eq(sl("a\0b", 3), "a\0b", 3));
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(zpf_strerror(ZPF_ETRUNC), "packet truncated");
    assert_string_equal(zpf_strerror(ZPF_ENOMEM), "out of memory");
    assert_string_equal(zpf_strerror(12345), "unknown error");
    assert_string_equal(zpf_err_name(ZPF_EMSGPACK), "EMSGPACK");
    assert_string_equal(zpf_err_name(ZPF_ENOSPC), "ENOSPC");
    assert_string_equal(zpf_err_name(ZPF_ELEAVING), "ELEAVING");
    assert_string_equal(zpf_err_name(0), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_bytes),
        cmocka_unit_test(test_hdr_roundtrip),
        cmocka_unit_test(test_msg_roundtrip_min),
        cmocka_unit_test(test_msg_roundtrip_max),
        cmocka_unit_test(test_uint_boundaries),
        cmocka_unit_test(test_addr_v4_v6),
        cmocka_unit_test(test_stream_frame),
        cmocka_unit_test(test_fill_until_enospc),
        cmocka_unit_test(test_enospc_every_cap),
        cmocka_unit_test(test_encode_rejects_invalid),
        cmocka_unit_test(test_truncation_every_offset),
        cmocka_unit_test(test_empty_and_header_only),
        cmocka_unit_test(test_reader_spent),
        cmocka_unit_test(test_reject_c1),
        cmocka_unit_test(test_reject_wrong_family),
        cmocka_unit_test(test_reject_array_count),
        cmocka_unit_test(test_reject_name_lengths),
        cmocka_unit_test(test_reject_nul_in_names),
        cmocka_unit_test(test_reject_meta_length),
        cmocka_unit_test(test_reject_addr_length),
        cmocka_unit_test(test_reject_unknown_type),
        cmocka_unit_test(test_reject_version),
        cmocka_unit_test(test_reject_signed_ints),
        cmocka_unit_test(test_reject_over_uint32),
        cmocka_unit_test(test_reject_truncated_headers),
        cmocka_unit_test(test_accept_nonminimal),
        cmocka_unit_test(test_wire_cause),
        cmocka_unit_test(test_str_eq),
        cmocka_unit_test(test_strerror),
    };

    for (size_t i = 0; i < sizeof(META512); i++)
        META512[i] = (uint8_t)(0x80 + i * 7);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
