/*
 * zpfd's transport: one UDP socket and one TCP listener carrying the gossip
 * core's packets and stream frames, sealed.
 *
 * Datagram:  the sealed core packet (seal.h), nothing else.  The sender's
 *            address is the datagram's source address.
 * TCP frame: a 4-byte big-endian length, then the sealed body
 *
 *     +------+--------+-------+----------------+------------------+
 *     | kind | family | port  | ip (16 bytes)  | payload ...      |
 *     | u8   | u8     | u16BE |                |                  |
 *     +------+--------+-------+----------------+------------------+
 *
 *            kind: ZPF_NET_PACKET, ZPF_NET_STREAM (for the core) or
 *            ZPF_NET_AGENT (agent-to-agent messages such as the keyring).
 *            The address is where the sender listens (its advertised
 *            address), sealed with the payload, so replies and later frames
 *            find it whatever port the connection came from.
 *
 * Connections are cached per peer address, in both directions: a frame for
 * an address goes over a connection we opened to it, or else over one it
 * opened to us (so a peer that can reach us but not the other way round
 * still gets replies), or else a new connection.  Writes queue while a
 * connection is being set up, bounded per connection; past the bound frames
 * are dropped and counted, never buffered without end.
 *
 * In `transport: tcp` mode the packet channel rides TCP frames as well.
 */
#ifndef ZPF_AGENT_NET_H
#define ZPF_AGENT_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "zpf/gossip.h"
#include "zpf/seal.h"

enum zpf_net_kind {
    ZPF_NET_PACKET = 0,
    ZPF_NET_STREAM = 1,
    ZPF_NET_AGENT = 2
};

#define ZPF_NET_PREFIX 20       /* kind, family, port, ip */
/* A full-state push-pull is about 45 bytes a member; 64 MiB holds a
 * million members and bounds what one hostile frame can make us buffer. */
#define ZPF_NET_FRAME_MAX (64u << 20)

/* Why a received datagram or frame was dropped (metrics labels). */
enum zpf_net_drop {
    ZPF_NET_DROP_SHORT,   /* shorter than any sealed packet */
    ZPF_NET_DROP_SEAL,    /* not sealed, or unknown seal version */
    ZPF_NET_DROP_NOKEY,   /* sealed under a key we do not hold */
    ZPF_NET_DROP_AUTH,    /* failed to authenticate */
    ZPF_NET_DROP_REPLAY,  /* replayed or too old */
    ZPF_NET_DROP_FRAME,   /* malformed TCP frame or prefix */
    ZPF_NET_DROP_QUEUE,   /* outgoing frame dropped: queue full, no route */
    ZPF_NET_DROP_MAX
};

const char *zpf_net_drop_name(enum zpf_net_drop d);

struct zpf_net_stats {
    uint64_t drops[ZPF_NET_DROP_MAX];
    uint64_t udp_in, udp_out, tcp_frames_in, tcp_frames_out;
    uint64_t bytes_in, bytes_out;
    uint64_t tcp_accepted, tcp_connected, tcp_connect_failed;
    uint64_t send_errors;
    uint32_t tcp_open; /* gauge */
};

/* Called for every datagram or frame that opened: `from` is the sender's
 * address (datagram source, or the advertised address of a frame). */
typedef void (*zpf_net_recv_cb)(void *ctx, enum zpf_net_kind kind,
                                const struct zpf_addr *from,
                                const uint8_t *buf, size_t len);
/* A dropped input, for rate-limited logging.  peer may be NULL. */
typedef void (*zpf_net_drop_cb)(void *ctx, enum zpf_net_drop why, int err,
                                const struct zpf_addr *peer);

struct zpf_net_options {
    struct zpf_addr bind;
    struct zpf_addr advertise;
    bool tcp_only;                 /* transport: tcp */
    const char *cluster;
    const char *name;              /* for the sender id */
    const struct zpf_keyring *keyring; /* borrowed; NULL: plain text */
    uint64_t epoch;                /* high half of every sequence number */
    uint32_t max_senders;          /* replay windows kept; 0: 65536 */
    zpf_net_recv_cb recv_cb;
    zpf_net_drop_cb drop_cb;
    void *ctx;
};

struct zpf_net;

/* Bind both sockets.  On failure writes what and where into err. */
int zpf_net_start(uv_loop_t *loop, const struct zpf_net_options *o,
                  struct zpf_net **out, char *err, size_t errlen);

/* Seal and send.  Failures are counted, not returned: the core treats every
 * send as fire and forget. */
void zpf_net_send(struct zpf_net *net, enum zpf_net_kind kind,
                  const struct zpf_addr *to, const uint8_t *buf, size_t len);

/* As zpf_net_send(), sealed with the key of this id if the keyring holds
 * it (else the primary): to answer a peer in the key it spoke, when it may
 * not hold our primary yet. */
void zpf_net_send_key(struct zpf_net *net, enum zpf_net_kind kind,
                      const struct zpf_addr *to, const uint8_t *buf,
                      size_t len, uint32_t key_id);

/* From inside recv_cb: the id of the key the delivered input was sealed
 * with (0 when running in plain text). */
uint32_t zpf_net_opened_key(const struct zpf_net *net);

const struct zpf_net_stats *zpf_net_stats(const struct zpf_net *net);

/* Close every handle and free the transport; done(arg), if not NULL, runs
 * once that is finished (from the loop). */
void zpf_net_close(struct zpf_net *net, void (*done)(void *), void *arg);

/* Address helpers.  "ip:port" / "[ip6]:port" literal only. */
int zpf_addr_parse(const char *s, struct zpf_addr *out);
void zpf_addr_format(const struct zpf_addr *a, char *buf, size_t cap);
int zpf_addr_to_sockaddr(const struct zpf_addr *a,
                         struct sockaddr_storage *ss);
int zpf_addr_from_sockaddr(const struct sockaddr *sa, struct zpf_addr *out);
bool zpf_addr_equal(const struct zpf_addr *a, const struct zpf_addr *b);
bool zpf_addr_is_any(const struct zpf_addr *a);

#endif
