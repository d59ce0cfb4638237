/*
 * zpf wire codec: the layout is in wire.h; this file holds the reasons.
 *
 * Encoding goes through msgpack-c's packer, whose write callback appends to
 * the caller's fixed buffer.  The callback never writes past cap: it sets
 * w->overflow and refuses every later write, so a message either lands whole
 * or the put function rolls w->len back and reports ZPF_ENOSPC.  That is what
 * lets the protocol layer fill a datagram greedily: try the next message, and
 * on ENOSPC the packet is still exactly the messages that fitted.  The
 * encoder also refuses (ZPF_EINVAL) any field the decoder would reject, so a
 * misconfigured node fails loudly at home instead of having every peer drop
 * its packets.
 *
 * Decoding is a strict reader of our own.  msgpack-c's unpacker builds a
 * generic object tree in a zone it allocates, sized by counts the peer
 * announces, and checks no field's family or bound, so we would still need a
 * second pass over its tree and an allocator in the decode path.  Here
 * nothing is allocated (strings and blobs are slices of the input), nothing
 * nests deeper than message -> field, and every length is checked against
 * its bound and then against the bytes that remain before the pointer moves.
 * Lengths are compared with `end - p`, never added to p first, so a 32-bit
 * length cannot wrap the pointer.
 *
 * What is bounded: names, sender and cluster 1..64 bytes, meta 0..512,
 * addresses exactly 6 or 18 bytes, array counts fixed per message type,
 * uint fields to their stated width.  A message therefore costs O(its
 * size) to decode, and a packet O(its length).
 *
 * Error precedence: a malformed lead byte (EMSGPACK) or wrong family
 * (EFIELD) is reported as soon as it is seen; a length over its bound
 * (ELIMIT, EADDR) before truncation of the body it announces (ETRUNC),
 * because the bound alone already condemns the object.  The header version is
 * read before the header's element count is checked, so a future version that
 * changes the header's shape is still classified EVERSION, as wire.h promises.
 */
#include <assert.h>
#include <string.h>

#include <msgpack.h>

#include "zpf/error.h"
#include "wire.h"

/* Element count of each message type's array, type included. */
static const uint8_t msg_arity[] = {
    [ZPF__MSG_PING] = 3,     [ZPF__MSG_ACK] = 2,      [ZPF__MSG_NACK] = 2,
    [ZPF__MSG_PING_REQ] = 4, [ZPF__MSG_ALIVE] = 6,    [ZPF__MSG_SUSPECT] = 5,
    [ZPF__MSG_DEAD] = 4,     [ZPF__MSG_COUNTER] = 4,  [ZPF__MSG_PUSHPULL] = 2,
    [ZPF__MSG_RECORD] = 7,   [ZPF__MSG_STALL] = 4,
};

#define MSG_TYPE_MAX ZPF__MSG_STALL
static_assert(sizeof(msg_arity) == MSG_TYPE_MAX + 1,
              "every message type needs its element count");

/* Bytes of an address blob: 4 or 16 address bytes, then the port. */
#define ADDR4_LEN 6
#define ADDR6_LEN 18

/* --- encoding ----------------------------------------------------------- */

void zpf__wire_writer_init(struct zpf__writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = false;
}

/* The packer's sink.  Once one write has not fitted, later ones are refused
 * too, so a short object can never land after a gap. */
static int writer_cb(void *data, const char *buf, size_t len)
{
    struct zpf__writer *w = data;

    if (w->overflow)
        return -1;
    if (len > w->cap - w->len) {
        w->overflow = true;
        return -1;
    }
    if (len > 0) {
        memcpy(w->buf + w->len, buf, len);
        w->len += len;
    }
    return 0;
}

static bool name_ok(struct zpf__str s, uint32_t max)
{
    return s.len >= 1 && s.len <= max && s.p != NULL &&
           memchr(s.p, 0, s.len) == NULL;
}

static bool meta_ok(struct zpf__str s)
{
    return s.len <= ZPF_META_MAX && (s.len == 0 || s.p != NULL);
}

static bool addr_ok(const struct zpf_addr *a)
{
    return a->family == ZPF_AF_INET || a->family == ZPF_AF_INET6;
}

static void pack_str(msgpack_packer *pk, struct zpf__str s)
{
    msgpack_pack_str(pk, s.len);
    msgpack_pack_str_body(pk, s.p, s.len);
}

static void pack_bin(msgpack_packer *pk, struct zpf__str s)
{
    msgpack_pack_bin(pk, s.len);
    msgpack_pack_bin_body(pk, s.p, s.len);
}

static void pack_addr(msgpack_packer *pk, const struct zpf_addr *a)
{
    uint8_t b[ADDR6_LEN];
    size_t n = a->family == ZPF_AF_INET ? 4 : 16;

    memcpy(b, a->ip, n);
    b[n] = (uint8_t)(a->port >> 8);
    b[n + 1] = (uint8_t)a->port;
    msgpack_pack_bin(pk, n + 2);
    msgpack_pack_bin_body(pk, b, n + 2);
}

/* Roll back a put that did not fit, as if it had never been tried. */
static int writer_finish(struct zpf__writer *w, size_t saved)
{
    if (!w->overflow)
        return 0;
    w->len = saved;
    w->overflow = false;
    return ZPF_ENOSPC;
}

int zpf__wire_put_hdr(struct zpf__writer *w, const struct zpf__hdr *h)
{
    msgpack_packer pk;
    size_t saved = w->len;

    if (!name_ok(h->cluster, ZPF_CLUSTER_MAX) ||
        !name_ok(h->sender, ZPF_NAME_MAX))
        return ZPF_EINVAL;

    msgpack_packer_init(&pk, w, writer_cb);
    msgpack_pack_array(&pk, 5);
    /* Written as given, not forced to ZPF_PROTOCOL_VERSION, so tests (and
     * one day a version-2 sender) can produce other versions. */
    msgpack_pack_uint32(&pk, h->version);
    pack_str(&pk, h->cluster);
    pack_str(&pk, h->sender);
    msgpack_pack_uint32(&pk, h->incarnation);
    msgpack_pack_uint64(&pk, h->counter);
    return writer_finish(w, saved);
}

static bool msg_ok(const struct zpf__msg *m)
{
    switch (m->type) {
    case ZPF__MSG_ACK:
    case ZPF__MSG_NACK:
    case ZPF__MSG_PUSHPULL:
        return true;
    case ZPF__MSG_PING:
    case ZPF__MSG_COUNTER:
    case ZPF__MSG_STALL:
        return name_ok(m->name, ZPF_NAME_MAX);
    case ZPF__MSG_PING_REQ:
        return name_ok(m->name, ZPF_NAME_MAX) && addr_ok(&m->addr);
    case ZPF__MSG_ALIVE:
        return name_ok(m->name, ZPF_NAME_MAX) && addr_ok(&m->addr) &&
               meta_ok(m->meta);
    case ZPF__MSG_SUSPECT:
    case ZPF__MSG_DEAD:
        return name_ok(m->name, ZPF_NAME_MAX) &&
               name_ok(m->from, ZPF_NAME_MAX);
    case ZPF__MSG_RECORD:
        return name_ok(m->name, ZPF_NAME_MAX) && addr_ok(&m->addr) &&
               meta_ok(m->meta) && m->state <= ZPF_STATE_LEFT;
    default:
        return false;
    }
}

int zpf__wire_put_msg(struct zpf__writer *w, const struct zpf__msg *m)
{
    msgpack_packer pk;
    size_t saved = w->len;

    if (!msg_ok(m))
        return ZPF_EINVAL;

    msgpack_packer_init(&pk, w, writer_cb);
    msgpack_pack_array(&pk, msg_arity[m->type]);
    msgpack_pack_uint32(&pk, m->type);
    switch (m->type) {
    case ZPF__MSG_PING:
        msgpack_pack_uint32(&pk, m->seq);
        pack_str(&pk, m->name);
        break;
    case ZPF__MSG_ACK:
    case ZPF__MSG_NACK:
        msgpack_pack_uint32(&pk, m->seq);
        break;
    case ZPF__MSG_PING_REQ:
        msgpack_pack_uint32(&pk, m->seq);
        pack_str(&pk, m->name);
        pack_addr(&pk, &m->addr);
        break;
    case ZPF__MSG_ALIVE:
        pack_str(&pk, m->name);
        msgpack_pack_uint32(&pk, m->incarnation);
        pack_addr(&pk, &m->addr);
        pack_bin(&pk, m->meta);
        msgpack_pack_uint64(&pk, m->counter);
        break;
    case ZPF__MSG_SUSPECT:
        pack_str(&pk, m->name);
        msgpack_pack_uint32(&pk, m->incarnation);
        pack_str(&pk, m->from);
        msgpack_pack_uint64(&pk, m->counter);
        break;
    case ZPF__MSG_DEAD:
        pack_str(&pk, m->name);
        msgpack_pack_uint32(&pk, m->incarnation);
        pack_str(&pk, m->from);
        break;
    case ZPF__MSG_COUNTER:
    case ZPF__MSG_STALL:
        pack_str(&pk, m->name);
        msgpack_pack_uint32(&pk, m->incarnation);
        msgpack_pack_uint64(&pk, m->counter);
        break;
    case ZPF__MSG_PUSHPULL:
        msgpack_pack_uint32(&pk, m->flags);
        break;
    case ZPF__MSG_RECORD:
        pack_str(&pk, m->name);
        msgpack_pack_uint32(&pk, m->incarnation);
        msgpack_pack_uint32(&pk, m->state);
        pack_addr(&pk, &m->addr);
        pack_bin(&pk, m->meta);
        msgpack_pack_uint64(&pk, m->counter);
        break;
    }
    return writer_finish(w, saved);
}

/* --- decoding ----------------------------------------------------------- */

enum family { FAM_STR, FAM_BIN, FAM_ARRAY };

static size_t avail(const struct zpf__reader *r)
{
    return (size_t)(r->end - r->p);
}

/* Big-endian unsigned of n <= 8 bytes; the caller checked they exist. */
static uint64_t load_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* A lead byte that belongs to no family we want.  0xc1 is the one byte
 * msgpack never uses; anything else is valid msgpack of another family. */
static int wrong_lead(uint8_t b)
{
    return b == 0xc1 ? ZPF_EMSGPACK : ZPF_EFIELD;
}

static int rd_uint(struct zpf__reader *r, uint64_t max, uint64_t *out)
{
    uint8_t b;
    unsigned n;
    uint64_t v;

    if (r->p == r->end)
        return ZPF_ETRUNC;
    b = r->p[0];
    if (b <= 0x7f) {
        v = b;
        n = 0;
    } else {
        switch (b) {
        case 0xcc: n = 1; break;
        case 0xcd: n = 2; break;
        case 0xce: n = 4; break;
        case 0xcf: n = 8; break;
        default: return wrong_lead(b); /* int8..int64, negative fixint */
        }
        if (avail(r) - 1 < n)
            return ZPF_ETRUNC;
        v = load_be(r->p + 1, n);
    }
    if (v > max)
        return ZPF_ELIMIT;
    r->p += 1 + n;
    *out = v;
    return 0;
}

/* The lead byte and length of a str, bin or array; leaves r at the body. */
static int rd_head(struct zpf__reader *r, enum family f, uint32_t *len)
{
    uint8_t b;
    unsigned n = 0;

    if (r->p == r->end)
        return ZPF_ETRUNC;
    b = r->p[0];
    if (f == FAM_STR && (b & 0xe0) == 0xa0) {
        *len = b & 0x1f;
        r->p++;
        return 0;
    }
    if (f == FAM_ARRAY && (b & 0xf0) == 0x90) {
        *len = b & 0x0f;
        r->p++;
        return 0;
    }
    switch (f) {
    case FAM_STR:
        n = b == 0xd9 ? 1 : b == 0xda ? 2 : b == 0xdb ? 4 : 0;
        break;
    case FAM_BIN:
        n = b == 0xc4 ? 1 : b == 0xc5 ? 2 : b == 0xc6 ? 4 : 0;
        break;
    case FAM_ARRAY:
        n = b == 0xdc ? 2 : b == 0xdd ? 4 : 0;
        break;
    }
    if (n == 0)
        return wrong_lead(b);
    if (avail(r) - 1 < n)
        return ZPF_ETRUNC;
    *len = (uint32_t)load_be(r->p + 1, n);
    r->p += 1 + n;
    return 0;
}

static int rd_body(struct zpf__reader *r, uint32_t len, struct zpf__str *out)
{
    if (len > avail(r))
        return ZPF_ETRUNC;
    out->p = r->p;
    out->len = len;
    r->p += len;
    return 0;
}

static int rd_str(struct zpf__reader *r, uint32_t min, uint32_t max,
                  struct zpf__str *out)
{
    uint32_t len;
    int rc = rd_head(r, FAM_STR, &len);

    if (rc < 0)
        return rc;
    if (len < min || len > max)
        return ZPF_ELIMIT;
    return rd_body(r, len, out);
}

static int rd_bin(struct zpf__reader *r, uint32_t max, struct zpf__str *out)
{
    uint32_t len;
    int rc = rd_head(r, FAM_BIN, &len);

    if (rc < 0)
        return rc;
    if (len > max)
        return ZPF_ELIMIT;
    return rd_body(r, len, out);
}

static int rd_addr(struct zpf__reader *r, struct zpf_addr *a)
{
    struct zpf__str s;
    uint32_t len;
    size_t n;
    int rc = rd_head(r, FAM_BIN, &len);

    if (rc < 0)
        return rc;
    if (len != ADDR4_LEN && len != ADDR6_LEN)
        return ZPF_EADDR;
    rc = rd_body(r, len, &s);
    if (rc < 0)
        return rc;
    n = len - 2;
    memset(a, 0, sizeof(*a));
    a->family = len == ADDR4_LEN ? ZPF_AF_INET : ZPF_AF_INET6;
    memcpy(a->ip, s.p, n);
    a->port = (uint16_t)((s.p[n] << 8) | s.p[n + 1]);
    return 0;
}

static int rd_u32(struct zpf__reader *r, uint32_t *out)
{
    uint64_t v;
    int rc = rd_uint(r, UINT32_MAX, &v);

    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

/* Names and cluster ids become C strings on the node: no NUL inside. */
static int rd_ident(struct zpf__reader *r, uint32_t max, struct zpf__str *out)
{
    int rc = rd_str(r, 1, max, out);
    if (rc == 0 && memchr(out->p, 0, out->len) != NULL)
        return ZPF_EFIELD;
    return rc;
}

static int rd_name(struct zpf__reader *r, struct zpf__str *out)
{
    return rd_ident(r, ZPF_NAME_MAX, out);
}

/* A spent reader has p == NULL: further calls fail instead of looking like
 * the clean end of the buffer. */
static int spend(struct zpf__reader *r, int rc)
{
    r->p = NULL;
    r->end = NULL;
    return rc;
}

static int read_hdr(struct zpf__reader *r, struct zpf__hdr *h)
{
    uint32_t n;
    uint64_t v;
    int rc;

    if ((rc = rd_head(r, FAM_ARRAY, &n)) < 0)
        return rc;
    if (n == 0)
        return ZPF_EFIELD;
    if ((rc = rd_uint(r, UINT64_MAX, &v)) < 0)
        return rc;
    if (v != ZPF_PROTOCOL_VERSION)
        return ZPF_EVERSION;
    if (n != 5)
        return ZPF_EFIELD;
    h->version = (uint32_t)v;
    if ((rc = rd_ident(r, ZPF_CLUSTER_MAX, &h->cluster)) < 0 ||
        (rc = rd_name(r, &h->sender)) < 0 ||
        (rc = rd_u32(r, &h->incarnation)) < 0 ||
        (rc = rd_uint(r, UINT64_MAX, &h->counter)) < 0)
        return rc;
    return 0;
}

int zpf__wire_read_hdr(struct zpf__reader *r, const uint8_t *buf, size_t len,
                       struct zpf__hdr *h)
{
    int rc;

    memset(h, 0, sizeof(*h));
    /* Checked before forming buf + len: NULL + 0 is undefined. */
    if (len == 0)
        return spend(r, ZPF_ETRUNC);
    r->p = buf;
    r->end = buf + len;
    rc = read_hdr(r, h);
    return rc < 0 ? spend(r, rc) : 0;
}

static int read_msg(struct zpf__reader *r, struct zpf__msg *m)
{
    uint32_t n;
    uint64_t v;
    int rc;

    if ((rc = rd_head(r, FAM_ARRAY, &n)) < 0)
        return rc;
    if (n == 0)
        return ZPF_EFIELD;
    if ((rc = rd_uint(r, UINT64_MAX, &v)) < 0)
        return rc;
    if (v < ZPF__MSG_PING || v > MSG_TYPE_MAX)
        return ZPF_ETYPE;
    m->type = (uint8_t)v;
    if (n != msg_arity[m->type])
        return ZPF_EFIELD;

    switch (m->type) {
    case ZPF__MSG_PING:
        if ((rc = rd_u32(r, &m->seq)) < 0 || (rc = rd_name(r, &m->name)) < 0)
            return rc;
        break;
    case ZPF__MSG_ACK:
    case ZPF__MSG_NACK:
        if ((rc = rd_u32(r, &m->seq)) < 0)
            return rc;
        break;
    case ZPF__MSG_PING_REQ:
        if ((rc = rd_u32(r, &m->seq)) < 0 ||
            (rc = rd_name(r, &m->name)) < 0 ||
            (rc = rd_addr(r, &m->addr)) < 0)
            return rc;
        break;
    case ZPF__MSG_ALIVE:
        if ((rc = rd_name(r, &m->name)) < 0 ||
            (rc = rd_u32(r, &m->incarnation)) < 0 ||
            (rc = rd_addr(r, &m->addr)) < 0 ||
            (rc = rd_bin(r, ZPF_META_MAX, &m->meta)) < 0 ||
            (rc = rd_uint(r, UINT64_MAX, &m->counter)) < 0)
            return rc;
        break;
    case ZPF__MSG_SUSPECT:
        if ((rc = rd_name(r, &m->name)) < 0 ||
            (rc = rd_u32(r, &m->incarnation)) < 0 ||
            (rc = rd_name(r, &m->from)) < 0 ||
            (rc = rd_uint(r, UINT64_MAX, &m->counter)) < 0)
            return rc;
        break;
    case ZPF__MSG_DEAD:
        if ((rc = rd_name(r, &m->name)) < 0 ||
            (rc = rd_u32(r, &m->incarnation)) < 0 ||
            (rc = rd_name(r, &m->from)) < 0)
            return rc;
        break;
    case ZPF__MSG_COUNTER:
    case ZPF__MSG_STALL:
        if ((rc = rd_name(r, &m->name)) < 0 ||
            (rc = rd_u32(r, &m->incarnation)) < 0 ||
            (rc = rd_uint(r, UINT64_MAX, &m->counter)) < 0)
            return rc;
        break;
    case ZPF__MSG_PUSHPULL:
        if ((rc = rd_u32(r, &m->flags)) < 0)
            return rc;
        break;
    case ZPF__MSG_RECORD:
        if ((rc = rd_name(r, &m->name)) < 0 ||
            (rc = rd_u32(r, &m->incarnation)) < 0 ||
            (rc = rd_uint(r, ZPF_STATE_LEFT, &v)) < 0)
            return rc;
        m->state = (uint8_t)v;
        if ((rc = rd_addr(r, &m->addr)) < 0 ||
            (rc = rd_bin(r, ZPF_META_MAX, &m->meta)) < 0 ||
            (rc = rd_uint(r, UINT64_MAX, &m->counter)) < 0)
            return rc;
        break;
    }
    return 0;
}

int zpf__wire_next(struct zpf__reader *r, struct zpf__msg *m)
{
    int rc;

    memset(m, 0, sizeof(*m));
    if (r->p == NULL)
        return ZPF_EINVAL;
    if (r->p == r->end)
        return 0;
    rc = read_msg(r, m);
    if (rc < 0) {
        memset(m, 0, sizeof(*m));
        return spend(r, rc);
    }
    return 1;
}

int zpf__wire_validate(const uint8_t *buf, size_t len)
{
    struct zpf__reader r;
    struct zpf__hdr h;
    struct zpf__msg m;
    int rc = zpf__wire_read_hdr(&r, buf, len, &h);

    if (rc < 0)
        return rc;
    while ((rc = zpf__wire_next(&r, &m)) > 0)
        ;
    return rc;
}

/*
 * Stable indexes for zpf_stats.decode_error_by_cause, also used as metric
 * labels, so never renumber, only append (12..14 are free):
 *
 *    0  not an error (err >= 0)     6  EFIELD       11  ELEAVING
 *    1  ETRUNC                      7  ELIMIT       15  any other negative
 *    2  EMSGPACK                    8  EADDR            code (ENOMEM, ...)
 *    3  EVERSION                    9  ESELF
 *    4  ECLUSTER                   10  ENOTME
 *    5  ETYPE
 *
 * 1..11 happen to follow the order of ZPF_ERRNO_MAP; the switch, not that
 * coincidence, is the contract.
 */
unsigned zpf__wire_cause(int err)
{
    if (err >= 0)
        return 0;
    switch (err) {
    case ZPF_ETRUNC: return 1;
    case ZPF_EMSGPACK: return 2;
    case ZPF_EVERSION: return 3;
    case ZPF_ECLUSTER: return 4;
    case ZPF_ETYPE: return 5;
    case ZPF_EFIELD: return 6;
    case ZPF_ELIMIT: return 7;
    case ZPF_EADDR: return 8;
    case ZPF_ESELF: return 9;
    case ZPF_ENOTME: return 10;
    case ZPF_ELEAVING: return 11;
    default: return 15;
    }
}

bool zpf__str_eq(struct zpf__str s, const char *cstr, size_t cstr_len)
{
    return s.len == cstr_len &&
           (cstr_len == 0 || memcmp(s.p, cstr, cstr_len) == 0);
}
