/*
 * libFuzzer target for the wire decoder (gossip/wire.c).
 *
 * Beyond "no crash, no overread", it checks three properties on every input:
 *   - zpf__wire_validate agrees with a manual walk of read_hdr/next;
 *   - every decoded header and message re-encodes (the decoder accepts
 *     nothing the encoder would refuse), within the documented size bounds
 *     and no longer than the bytes it came from (the packer is minimal);
 *   - the re-encoding decodes to the same fields, and encoding that again
 *     gives the same bytes (a canonical form exists and is stable).
 * Decode-first alone cannot see a bug the decoder applies consistently (a
 * dropped byte of a uint64 survives its own round trip), so the same input is
 * also read as raw field values: encode, decode, encode again, and the two
 * encodings must match.
 * A violation aborts, which libFuzzer reports as a crash with the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zpf/error.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

static int is_wire_error(int rc)
{
    return rc == ZPF_ETRUNC || rc == ZPF_EMSGPACK || rc == ZPF_EFIELD ||
           rc == ZPF_ELIMIT || rc == ZPF_EVERSION || rc == ZPF_ETYPE ||
           rc == ZPF_EADDR;
}

static void same_str(struct zpf__str a, struct zpf__str b)
{
    CHECK(a.len == b.len);
    CHECK(a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* The decoder zeroes *m before filling it, so every field can be compared,
 * whatever the type. */
static void same_msg(const struct zpf__msg *a, const struct zpf__msg *b)
{
    CHECK(a->type == b->type);
    CHECK(a->state == b->state);
    CHECK(a->seq == b->seq);
    CHECK(a->flags == b->flags);
    CHECK(a->incarnation == b->incarnation);
    CHECK(a->counter == b->counter);
    same_str(a->name, b->name);
    same_str(a->from, b->from);
    same_str(a->meta, b->meta);
    CHECK(a->addr.family == b->addr.family);
    CHECK(a->addr.port == b->addr.port);
    CHECK(memcmp(a->addr.ip, b->addr.ip, sizeof(a->addr.ip)) == 0);
}

static void same_hdr(const struct zpf__hdr *a, const struct zpf__hdr *b)
{
    CHECK(a->version == b->version);
    same_str(a->cluster, b->cluster);
    same_str(a->sender, b->sender);
    CHECK(a->incarnation == b->incarnation);
    CHECK(a->counter == b->counter);
}

static void recheck_hdr(const struct zpf__hdr *h, size_t consumed)
{
    uint8_t buf[ZPF__HDR_MAX], again[ZPF__HDR_MAX];
    struct zpf__writer w, w2;
    struct zpf__reader r;
    struct zpf__hdr h2;

    zpf__wire_writer_init(&w, buf, sizeof(buf));
    CHECK(zpf__wire_put_hdr(&w, h) == 0);
    CHECK(w.len <= consumed);
    CHECK(zpf__wire_read_hdr(&r, buf, w.len, &h2) == 0);
    CHECK(r.p == r.end);
    same_hdr(h, &h2);

    zpf__wire_writer_init(&w2, again, sizeof(again));
    CHECK(zpf__wire_put_hdr(&w2, &h2) == 0);
    CHECK(w2.len == w.len && memcmp(buf, again, w.len) == 0);
}

static void recheck_msg(const struct zpf__msg *m, size_t consumed)
{
    uint8_t buf[ZPF__MSG_MAX], again[ZPF__MSG_MAX];
    struct zpf__writer w, w2;
    struct zpf__reader r;
    struct zpf__msg m2;

    zpf__wire_writer_init(&w, buf, sizeof(buf));
    CHECK(zpf__wire_put_msg(&w, m) == 0);
    CHECK(w.len <= consumed);
    /* A bare message buffer: next() needs only p and end. */
    r.p = buf;
    r.end = buf + w.len;
    CHECK(zpf__wire_next(&r, &m2) == 1);
    CHECK(r.p == r.end);
    same_msg(m, &m2);

    zpf__wire_writer_init(&w2, again, sizeof(again));
    CHECK(zpf__wire_put_msg(&w2, &m2) == 0);
    CHECK(w2.len == w.len && memcmp(buf, again, w.len) == 0);
}

static uint64_t take(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    memcpy(&v, p, n);
    return v;
}

/* Layout of the input when read as field values; what follows FIELDS_LEN
 * supplies the bytes of the names and meta. */
#define FIELDS_LEN 48

static void encode_first(const uint8_t *data, size_t size)
{
    uint8_t b1[ZPF__MSG_MAX + ZPF__HDR_MAX], b2[sizeof(b1)];
    const uint8_t *rest = data + FIELDS_LEN;
    size_t nrest = size - FIELDS_LEN;
    struct zpf__writer w1, w2;
    struct zpf__reader r;
    struct zpf__hdr h, h2;
    struct zpf__msg m, m2;
    size_t nlen, flen, mlen;
    int rc;

    memset(&m, 0, sizeof(m));
    m.type = data[0] % 12; /* 0 and 11 are invalid, on purpose */
    m.state = data[1] % 5;
    m.seq = (uint32_t)take(data + 2, 4);
    m.flags = (uint32_t)take(data + 6, 4);
    m.incarnation = (uint32_t)take(data + 10, 4);
    m.counter = take(data + 14, 8);
    m.addr.family = data[22] % 8 == 0   ? 0
                    : data[22] % 2 == 0 ? ZPF_AF_INET
                                        : ZPF_AF_INET6;
    m.addr.port = (uint16_t)take(data + 23, 2);
    memcpy(m.addr.ip, data + 25, 16);
    nlen = data[41] % (ZPF_NAME_MAX + 2);
    flen = data[42] % (ZPF_NAME_MAX + 2);
    mlen = take(data + 43, 2) % (ZPF_META_MAX + 2);
    nlen = nlen < nrest ? nlen : nrest;
    flen = flen < nrest ? flen : nrest;
    mlen = mlen < nrest ? mlen : nrest;
    m.name.p = m.from.p = m.meta.p = rest;
    m.name.len = (uint32_t)nlen;
    m.from.len = (uint32_t)flen;
    m.meta.len = (uint32_t)mlen;

    memset(&h, 0, sizeof(h));
    h.version = data[45] % 3;
    h.cluster = m.from;
    h.sender = m.name;
    h.incarnation = m.incarnation;
    h.counter = m.counter;

    zpf__wire_writer_init(&w1, b1, sizeof(b1));
    rc = zpf__wire_put_hdr(&w1, &h);
    CHECK(rc == 0 || rc == ZPF_EINVAL);
    if (rc == 0 && h.version == ZPF_PROTOCOL_VERSION) {
        CHECK(w1.len <= ZPF__HDR_MAX);
        CHECK(zpf__wire_read_hdr(&r, b1, w1.len, &h2) == 0);
        CHECK(r.p == r.end);
        zpf__wire_writer_init(&w2, b2, sizeof(b2));
        CHECK(zpf__wire_put_hdr(&w2, &h2) == 0);
        CHECK(w2.len == w1.len && memcmp(b1, b2, w1.len) == 0);
    }

    zpf__wire_writer_init(&w1, b1, sizeof(b1));
    rc = zpf__wire_put_msg(&w1, &m);
    CHECK(rc == 0 || rc == ZPF_EINVAL);
    if (rc < 0)
        return;
    CHECK(w1.len <= ZPF__MSG_MAX);
    r.p = b1;
    r.end = b1 + w1.len;
    CHECK(zpf__wire_next(&r, &m2) == 1);
    CHECK(r.p == r.end);
    zpf__wire_writer_init(&w2, b2, sizeof(b2));
    CHECK(zpf__wire_put_msg(&w2, &m2) == 0);
    CHECK(w2.len == w1.len && memcmp(b1, b2, w1.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zpf__reader r;
    struct zpf__hdr h;
    struct zpf__msg m;
    const uint8_t *before;
    int rc, vrc;

    vrc = zpf__wire_validate(data, size);
    CHECK(vrc == 0 || is_wire_error(vrc));

    rc = zpf__wire_read_hdr(&r, data, size, &h);
    if (rc == 0) {
        CHECK(r.p > data && r.p <= data + size);
        recheck_hdr(&h, (size_t)(r.p - data));
        for (;;) {
            before = r.p;
            rc = zpf__wire_next(&r, &m);
            if (rc <= 0)
                break;
            CHECK(r.p > before && r.p <= data + size);
            recheck_msg(&m, (size_t)(r.p - before));
        }
        if (rc < 0)
            CHECK(zpf__wire_next(&r, &m) < 0);
    }
    CHECK(rc == vrc);

    if (size >= FIELDS_LEN)
        encode_first(data, size);
    return 0;
}
