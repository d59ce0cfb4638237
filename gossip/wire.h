/*
 * zpf wire format, version 1 (internal to gossip/).
 *
 * A datagram, or a stream frame, is a concatenation of msgpack objects: one
 * header, then zero or more messages until the end of the buffer.  Nothing
 * counts the messages, so a sender appends messages until its packet budget
 * is spent, and a receiver reads until the buffer ends.
 *
 *   +--------------------------------------------------------------------+
 *   | header  array(5)                                                   |
 *   |   [0] uint  version            == ZPF_PROTOCOL_VERSION             |
 *   |   [1] str   cluster id         1..ZPF_CLUSTER_MAX bytes            |
 *   |   [2] str   sender name        1..ZPF_NAME_MAX bytes               |
 *   |   [3] uint  sender incarnation (uint32)                            |
 *   |   [4] uint  sender heartbeat counter (uint64)                      |
 *   +--------------------------------------------------------------------+
 *   | message array(k), first element the type:                          |
 *   |   PING      [1, seq, target]                                       |
 *   |   ACK       [2, seq]                                               |
 *   |   NACK      [3, seq]                                               |
 *   |   PING_REQ  [4, seq, target, target_addr]                          |
 *   |   ALIVE     [5, name, incarnation, addr, meta, counter]            |
 *   |   SUSPECT   [6, name, incarnation, from, counter]                  |
 *   |   DEAD      [7, name, incarnation, from]   (from == name: left)    |
 *   |   COUNTER   [8, name, incarnation, counter]                        |
 *   |   PUSHPULL  [9, flags]          stream frames only, first message  |
 *   |   RECORD    [10, name, incarnation, state, addr, meta, counter]    |
 *   |   STALL     [11, name, incarnation, counter]                       |
 *   +--------------------------------------------------------------------+
 *   | message ...                                                        |
 *   +--------------------------------------------------------------------+
 *
 *   seq          uint32
 *   target, name, from   str 1..ZPF_NAME_MAX
 *   incarnation  uint32;  counter uint64
 *   addr         bin 6  (IPv4: 4 address bytes, port big-endian)
 *                bin 18 (IPv6: 16 address bytes, port big-endian)
 *   meta         bin 0..ZPF_META_MAX
 *   state        uint: 0 alive, 1 suspect, 2 dead, 3 left
 *   flags        uint: bit 0 = join (the sender has just started), bit 1 =
 *                reply (do not answer with another push-pull)
 *
 * Every field has exactly the msgpack family given (uint means any positive
 * fixint/uint8..uint64 encoding whose value fits the stated width; str means
 * fixstr/str8/str16/str32; bin means bin8/bin16/bin32).  Arrays must have
 * exactly the element count shown.  The decoder rejects anything else --
 * unknown types, extra or missing elements, out-of-range values, lengths
 * over a bound, truncation -- and never reads past the buffer.  A version-2
 * sender must therefore bump [0]; a version-1 receiver drops its packets
 * (counted as EVERSION) rather than guessing.
 *
 * Decoding allocates nothing: strings and blobs are slices into the caller's
 * buffer, valid while the buffer is.  Encoding uses msgpack-c's packer into
 * a fixed buffer; decoding is a strict reader of our own, because msgpack-c's
 * unpacker allocates from its zone and bounds nothing.
 */
#ifndef ZPF_GOSSIP_WIRE_H
#define ZPF_GOSSIP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zpf/gossip.h"

enum zpf__msg_type {
    ZPF__MSG_PING = 1,
    ZPF__MSG_ACK = 2,
    ZPF__MSG_NACK = 3,
    ZPF__MSG_PING_REQ = 4,
    ZPF__MSG_ALIVE = 5,
    ZPF__MSG_SUSPECT = 6,
    ZPF__MSG_DEAD = 7,
    ZPF__MSG_COUNTER = 8,
    ZPF__MSG_PUSHPULL = 9,
    ZPF__MSG_RECORD = 10,
    ZPF__MSG_STALL = 11 /* name's counter stood at `counter` for
                           counter_timeout, seen first-hand by someone */
};

#define ZPF__PP_JOIN 1u
#define ZPF__PP_REPLY 2u

/* A slice of the decoded buffer (not NUL-terminated). */
struct zpf__str {
    const uint8_t *p;
    uint32_t len;
};

struct zpf__hdr {
    uint32_t version;
    struct zpf__str cluster;
    struct zpf__str sender;
    uint32_t incarnation;
    uint64_t counter;
};

/* One message.  Only the fields of its type are meaningful:
 *   PING      seq, name(target)
 *   ACK/NACK  seq
 *   PING_REQ  seq, name(target), addr
 *   ALIVE     name, incarnation, addr, meta, counter
 *   SUSPECT   name, incarnation, from, counter
 *   DEAD      name, incarnation, from
 *   COUNTER   name, incarnation, counter
 *   STALL     name, incarnation, counter
 *   PUSHPULL  flags
 *   RECORD    name, incarnation, state, addr, meta, counter          */
struct zpf__msg {
    uint8_t type;
    uint8_t state; /* RECORD: enum zpf_state, ALIVE..LEFT only */
    uint32_t seq;
    uint32_t flags;
    uint32_t incarnation;
    uint64_t counter;
    struct zpf__str name;
    struct zpf__str from;
    struct zpf__str meta;
    struct zpf_addr addr;
};

/* --- encoding ----------------------------------------------------------- */

struct zpf__writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    bool overflow; /* internal: set by the packer callback */
};

void zpf__wire_writer_init(struct zpf__writer *w, uint8_t *buf, size_t cap);

/* Append the header, or one message.  On ZPF_ENOSPC the writer is left
 * exactly as it was before the call, so a caller can try a smaller message
 * or stop filling the packet.  Returns 0 or ZPF_ENOSPC. */
int zpf__wire_put_hdr(struct zpf__writer *w, const struct zpf__hdr *h);
int zpf__wire_put_msg(struct zpf__writer *w, const struct zpf__msg *m);

/* --- decoding ----------------------------------------------------------- */

struct zpf__reader {
    const uint8_t *p;
    const uint8_t *end;
};

/* Decode the header and leave the reader at the first message.  Returns 0,
 * or ZPF_ETRUNC, ZPF_EMSGPACK, ZPF_EFIELD, ZPF_ELIMIT, ZPF_EVERSION. */
int zpf__wire_read_hdr(struct zpf__reader *r, const uint8_t *buf, size_t len,
                       struct zpf__hdr *h);

/* Decode the next message.  Returns 1 with *m filled, 0 at the clean end of
 * the buffer, or a negative code (ZPF_ETRUNC, ZPF_EMSGPACK, ZPF_EFIELD,
 * ZPF_ELIMIT, ZPF_ETYPE, ZPF_EADDR); after an error the reader is spent. */
int zpf__wire_next(struct zpf__reader *r, struct zpf__msg *m);

/* Validate a whole packet (header and every message) without acting on it.
 * Returns 0 or the first error, as above. */
int zpf__wire_validate(const uint8_t *buf, size_t len);

/* A small index for per-cause statistics: 0 for unknown codes, else 1..15. */
unsigned zpf__wire_cause(int err);

/* Upper bound of any one encoded message (a RECORD with maximal fields). */
#define ZPF__MSG_MAX (16 + 2 * (5 + ZPF_NAME_MAX) + 5 + 9 + 2 + 18 + 3 + ZPF_META_MAX + 9)
/* Upper bound of an encoded header. */
#define ZPF__HDR_MAX (1 + 9 + 2 * (5 + ZPF_NAME_MAX) + 5 + 9)

bool zpf__str_eq(struct zpf__str s, const char *cstr, size_t cstr_len);

#endif
