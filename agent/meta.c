/* Member metadata codec (see meta.h). */
#include "meta.h"

#include <msgpack.h>
#include <string.h>

struct sink {
    uint8_t *out;
    size_t cap, len;
    bool overflow;
};

static int sink_write(void *data, const char *buf, size_t len)
{
    struct sink *s = data;
    if (s->overflow || len > s->cap - s->len) {
        s->overflow = true;
        return -1;
    }
    memcpy(s->out + s->len, buf, len);
    s->len += len;
    return 0;
}

static void put_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

int zpf_meta_encode(const struct zpf_meta *m, uint8_t *out, size_t cap)
{
    struct sink s = {out, cap, 0, false};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s, sink_write);
    msgpack_pack_map(&pk, 6);
    put_str(&pk, "z");
    put_str(&pk, m->zone);
    put_str(&pk, "p");
    put_str(&pk, m->provider);
    put_str(&pk, "i");
    put_str(&pk, m->instance_id);
    put_str(&pk, "t");
    msgpack_pack_map(&pk, m->ntags);
    for (uint32_t i = 0; i < m->ntags; i++) {
        put_str(&pk, m->tags[i].key);
        put_str(&pk, m->tags[i].value);
    }
    put_str(&pk, "k");
    msgpack_pack_uint64(&pk, m->keyring_version);
    put_str(&pk, "d");
    msgpack_pack_uint32(&pk, m->keyring_digest);
    return s.overflow ? ZPF_E2BIG : (int)s.len;
}

/* A small strict reader: msgpack-c's unpacker allocates what a header
 * claims before it has seen the bytes, so 5 hostile bytes can ask for
 * gigabytes.  This one allocates nothing. */
struct rd {
    const uint8_t *p, *end;
};

static int rd_need(struct rd *r, size_t n)
{
    return (size_t)(r->end - r->p) >= n ? 0 : ZPF_EMSGPACK;
}

static uint64_t rd_be(struct rd *r, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | *r->p++;
    return v;
}

/* Map or array header: 1 for map, 2 for array, with *n elements. */
static int rd_container(struct rd *r, uint32_t *n)
{
    if (rd_need(r, 1) < 0)
        return ZPF_EMSGPACK;
    uint8_t b = *r->p++;
    int kind;
    size_t w = 0;
    if ((b & 0xf0) == 0x80) {
        *n = b & 0x0f;
        kind = 1;
    } else if ((b & 0xf0) == 0x90) {
        *n = b & 0x0f;
        kind = 2;
    } else if (b == 0xde || b == 0xdf) {
        kind = 1;
        w = b == 0xde ? 2 : 4;
    } else if (b == 0xdc || b == 0xdd) {
        kind = 2;
        w = b == 0xdc ? 2 : 4;
    } else {
        r->p--;
        return 0;
    }
    if (w) {
        if (rd_need(r, w) < 0)
            return ZPF_EMSGPACK;
        *n = (uint32_t)rd_be(r, w);
    }
    /* Every element takes at least one byte. */
    if ((uint64_t)*n * (kind == 1 ? 2 : 1) > (uint64_t)(r->end - r->p))
        return ZPF_EMSGPACK;
    return kind;
}

/* A string: 1 with *s, *len; 0 if the next value is not a string. */
static int rd_str(struct rd *r, const char **s, uint32_t *len)
{
    if (rd_need(r, 1) < 0)
        return ZPF_EMSGPACK;
    uint8_t b = r->p[0];
    size_t w;
    if ((b & 0xe0) == 0xa0) {
        w = 0;
        *len = b & 0x1f;
    } else if (b >= 0xd9 && b <= 0xdb) {
        w = (size_t)1 << (b - 0xd9);
    } else {
        return 0;
    }
    r->p++;
    if (w) {
        if (rd_need(r, w) < 0)
            return ZPF_EMSGPACK;
        *len = (uint32_t)rd_be(r, w);
    }
    if (rd_need(r, *len) < 0)
        return ZPF_EMSGPACK;
    *s = (const char *)r->p;
    r->p += *len;
    return 1;
}

/* An unsigned integer: 1 with *v; 0 if the next value is not one. */
static int rd_uint(struct rd *r, uint64_t *v)
{
    if (rd_need(r, 1) < 0)
        return ZPF_EMSGPACK;
    uint8_t b = r->p[0];
    if (b <= 0x7f) {
        r->p++;
        *v = b;
        return 1;
    }
    if (b < 0xcc || b > 0xcf)
        return 0;
    size_t w = (size_t)1 << (b - 0xcc);
    r->p++;
    if (rd_need(r, w) < 0)
        return ZPF_EMSGPACK;
    *v = rd_be(r, w);
    return 1;
}

#define SKIP_DEPTH 8 /* deeper is not metadata any zpfd writes */

/* Skip one value of any type. */
static int rd_skip(struct rd *r, int depth)
{
    if (depth > SKIP_DEPTH || rd_need(r, 1) < 0)
        return depth > SKIP_DEPTH ? ZPF_ELIMIT : ZPF_EMSGPACK;
    uint32_t n;
    int k = rd_container(r, &n);
    if (k < 0)
        return k;
    if (k > 0) {
        uint64_t items = (uint64_t)n * (k == 1 ? 2 : 1);
        for (uint64_t i = 0; i < items; i++) {
            int rc = rd_skip(r, depth + 1);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    const char *s;
    uint32_t len;
    uint64_t v;
    int rc = rd_str(r, &s, &len);
    if (rc == 0)
        rc = rd_uint(r, &v);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    uint8_t b = *r->p++;
    size_t skip;
    if (b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        skip = 0; /* negative fixint, nil, false, true */
    else if (b >= 0xd0 && b <= 0xd3)
        skip = (size_t)1 << (b - 0xd0);
    else if (b == 0xca)
        skip = 4;
    else if (b == 0xcb)
        skip = 8;
    else if (b >= 0xc4 && b <= 0xc6) { /* bin 8/16/32 */
        size_t w = (size_t)1 << (b - 0xc4);
        if (rd_need(r, w) < 0)
            return ZPF_EMSGPACK;
        skip = (size_t)rd_be(r, w);
    } else if (b >= 0xd4 && b <= 0xd8) { /* fixext */
        skip = 1 + ((size_t)1 << (b - 0xd4));
    } else if (b >= 0xc7 && b <= 0xc9) { /* ext 8/16/32 */
        size_t w = (size_t)1 << (b - 0xc7);
        if (rd_need(r, w) < 0)
            return ZPF_EMSGPACK;
        skip = (size_t)rd_be(r, w) + 1;
    } else {
        return ZPF_EMSGPACK; /* 0xc1: never used */
    }
    if (rd_need(r, skip) < 0)
        return ZPF_EMSGPACK;
    r->p += skip;
    return 0;
}

static int get_str(struct rd *r, char *out)
{
    const char *s;
    uint32_t len;
    int rc = rd_str(r, &s, &len);
    if (rc <= 0)
        return rc < 0 ? rc : ZPF_EFIELD;
    if (len >= ZPF_META_STR_MAX || memchr(s, '\0', len))
        return ZPF_ELIMIT;
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

static bool key_is(const char *k, uint32_t len, const char *name)
{
    return len == strlen(name) && memcmp(k, name, len) == 0;
}

static int decode_map(struct rd *r, struct zpf_meta *m)
{
    uint32_t n;
    int kind = rd_container(r, &n);
    if (kind != 1)
        return kind < 0 ? kind : ZPF_EFIELD;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t klen;
        int rc = rd_str(r, &k, &klen);
        if (rc <= 0) {
            /* A key of another type: skip the pair. */
            if (rc == 0)
                rc = rd_skip(r, 1);
            if (rc == 0)
                rc = rd_skip(r, 1);
            if (rc < 0)
                return rc;
            continue;
        }
        if (key_is(k, klen, "z")) {
            rc = get_str(r, m->zone);
        } else if (key_is(k, klen, "p")) {
            rc = get_str(r, m->provider);
        } else if (key_is(k, klen, "i")) {
            rc = get_str(r, m->instance_id);
        } else if (key_is(k, klen, "k")) {
            rc = rd_uint(r, &m->keyring_version);
            rc = rc < 0 ? rc : rc == 0 ? ZPF_EFIELD : 0;
        } else if (key_is(k, klen, "d")) {
            uint64_t d;
            rc = rd_uint(r, &d);
            rc = rc < 0 ? rc : rc == 0 || d > UINT32_MAX ? ZPF_EFIELD : 0;
            m->keyring_digest = (uint32_t)d;
        } else if (key_is(k, klen, "t")) {
            uint32_t nt;
            int tk = rd_container(r, &nt);
            if (tk != 1)
                return tk < 0 ? tk : ZPF_EFIELD;
            if (nt > ZPF_META_TAGS_MAX)
                return ZPF_ELIMIT;
            m->ntags = 0;
            rc = 0;
            for (uint32_t j = 0; j < nt && rc == 0; j++) {
                struct zpf_meta_tag *t = &m->tags[m->ntags++];
                rc = get_str(r, t->key);
                if (rc == 0)
                    rc = get_str(r, t->value);
            }
        } else {
            rc = rd_skip(r, 1);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int zpf_meta_decode(const uint8_t *buf, size_t len, struct zpf_meta *m)
{
    memset(m, 0, sizeof *m);
    if (len == 0)
        return 0;
    if (len > ZPF_META_MAX)
        return ZPF_ELIMIT;
    struct rd r = {buf, buf + len};
    int rc = decode_map(&r, m);
    if (rc == 0 && r.p != r.end)
        rc = ZPF_EMSGPACK; /* trailing bytes */
    if (rc < 0)
        memset(m, 0, sizeof *m);
    return rc;
}
