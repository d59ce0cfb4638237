/*
 * zpfd's transport (see net.h for the framing).
 *
 * Everything runs on the loop thread.  Received bytes are opened into one
 * scratch buffer owned by the transport and handed to the callback for the
 * duration of the call; the core copies what it keeps.
 *
 * Sequence numbers: epoch << 32 | n, where the store hands out a strictly
 * larger epoch on every start, so a restarted agent's packets are never
 * mistaken for replays of its previous life (and n wrapping after four
 * billion sends moves to epoch + 1, which only a restart inside the same
 * second could also take; the salt in the nonce keeps even that safe for
 * the cipher, and costs at worst a few dropped packets).
 */
#include "net.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#define UDP_MAX 65507          /* largest IPv4 UDP payload */
#define SOCKBUF (4u << 20)     /* rides out bursts such as a mass join */
#define CONN_QUEUE_MAX (8u << 20) /* unsent bytes per connection */
#define CONNS_MAX 4096         /* each is an fd; well under a typical limit */
#define IDLE_MS 60000          /* a push-pull every 30 s keeps a pair warm */
/* Before an accepted connection has delivered one frame that opens, it is
 * anybody's: its frames may not claim more than a join's push-pull needs
 * (about 45 bytes a member: 1 MiB is 20,000 members), it must prove itself
 * within AUTH_MS, and all such connections together may hold at most
 * UNAUTH_BYTES, so strangers cannot make the agent buffer gigabytes. */
#define UNAUTH_FRAME_MAX (1u << 20)
#define UNAUTH_BYTES (64u << 20)
#define AUTH_MS 10000
/* An outgoing connection not up after this is given up with what it
 * queued: the kernel would retry SYNs for about two minutes, and frames
 * held that long would arrive too old for the peer's replay window. */
#define CONNECT_MS 10000
#define SWEEP_MS 10000
/* Datagrams queued in libuv when the socket buffer is full; past this the
 * kernel is far behind and gossip tolerates loss better than delay. */
#define UDP_QUEUE_MAX 1024

struct wreq {
    uv_write_t req;
    struct wreq *next; /* while queued before the connection is up */
    struct conn *c;
    size_t len;
    uint8_t data[];
};

struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    struct zpf_net *net;
    struct conn *prev, *next;
    struct zpf_addr peer;
    bool has_peer, outgoing, connected, closing;
    bool authed;            /* a frame from it opened (accepted only) */
    uint64_t created;
    size_t unauth;          /* bytes counted in net->unauth_bytes */
    struct wreq *pending, **pending_tail;
    size_t queued;          /* bytes handed to libuv or pending */
    uint64_t last_used;
    uint8_t *rbuf;
    size_t rlen, rcap;
};

struct zpf_net {
    uv_loop_t *loop;
    struct zpf_net_options o;
    char cluster[ZPF_CLUSTER_MAX + 1];
    uv_udp_t udp;
    uv_tcp_t listener;
    uv_timer_t sweep;
    bool udp_open;
    int open_handles;
    struct conn *conns;
    unsigned nconns;
    size_t unauth_bytes;
    uint64_t sender;
    uint64_t epoch;
    uint32_t seq_lo;
    struct zpf_replay replay;
    bool replay_init;
    uint8_t udp_rx[UDP_MAX + 1];
    uint8_t *pt;           /* opened plaintext scratch */
    size_t pt_cap;
    uint8_t *tx;           /* sealing scratch for datagrams */
    size_t tx_cap;
    struct zpf_net_stats st;
    unsigned udp_queued;
    uint32_t opened_key;   /* key id of what is being delivered now */
    uint32_t seal_key;     /* 0: the primary; else seal with this key id */
    void (*done)(void *);
    void *done_arg;
    bool closing;
};

static const char *const drop_names[ZPF_NET_DROP_MAX] = {
    [ZPF_NET_DROP_SHORT] = "short",   [ZPF_NET_DROP_SEAL] = "not_sealed",
    [ZPF_NET_DROP_NOKEY] = "unknown_key", [ZPF_NET_DROP_AUTH] = "auth",
    [ZPF_NET_DROP_REPLAY] = "replay", [ZPF_NET_DROP_FRAME] = "frame",
    [ZPF_NET_DROP_QUEUE] = "queue",
};

const char *zpf_net_drop_name(enum zpf_net_drop d)
{
    return d < ZPF_NET_DROP_MAX ? drop_names[d] : "unknown";
}

/* --- addresses ------------------------------------------------------------ */

int zpf_addr_parse(const char *s, struct zpf_addr *out)
{
    char host[64];
    const char *colon;
    memset(out, 0, sizeof *out);
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':' ||
            (size_t)(end - s - 1) >= sizeof host)
            return ZPF_EINVAL;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        colon = end + 1;
        if (inet_pton(AF_INET6, host, out->ip) != 1)
            return ZPF_EINVAL;
        out->family = ZPF_AF_INET6;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof host)
            return ZPF_EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        if (inet_pton(AF_INET, host, out->ip) != 1)
            return ZPF_EINVAL;
        out->family = ZPF_AF_INET;
    }
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || port > 65535)
        return ZPF_EINVAL;
    out->port = (uint16_t)port;
    return 0;
}

void zpf_addr_format(const struct zpf_addr *a, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->family == ZPF_AF_INET6) {
        inet_ntop(AF_INET6, a->ip, ip, sizeof ip);
        snprintf(buf, cap, "[%s]:%u", ip, a->port);
    } else if (a->family == ZPF_AF_INET) {
        inet_ntop(AF_INET, a->ip, ip, sizeof ip);
        snprintf(buf, cap, "%s:%u", ip, a->port);
    } else {
        snprintf(buf, cap, "?");
    }
}

int zpf_addr_to_sockaddr(const struct zpf_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == ZPF_AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(a->port);
        memcpy(&in->sin_addr, a->ip, 4);
        return 0;
    }
    if (a->family == ZPF_AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(a->port);
        memcpy(&in6->sin6_addr, a->ip, 16);
        return 0;
    }
    return ZPF_EINVAL;
}

int zpf_addr_from_sockaddr(const struct sockaddr *sa, struct zpf_addr *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        out->family = ZPF_AF_INET;
        out->port = ntohs(in->sin_port);
        memcpy(out->ip, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        /* A v4 peer on a dual-stack socket: keep it v4, as it advertises. */
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                           0xff, 0xff};
        if (memcmp(&in6->sin6_addr, mapped, 12) == 0) {
            out->family = ZPF_AF_INET;
            memcpy(out->ip, (const uint8_t *)&in6->sin6_addr + 12, 4);
        } else {
            out->family = ZPF_AF_INET6;
            memcpy(out->ip, &in6->sin6_addr, 16);
        }
        out->port = ntohs(in6->sin6_port);
        return 0;
    }
    return ZPF_EINVAL;
}

bool zpf_addr_equal(const struct zpf_addr *a, const struct zpf_addr *b)
{
    size_t n = a->family == ZPF_AF_INET ? 4 : 16;
    return a->family == b->family && a->port == b->port &&
           memcmp(a->ip, b->ip, n) == 0;
}

bool zpf_addr_is_any(const struct zpf_addr *a)
{
    static const uint8_t zero[16];
    return memcmp(a->ip, zero, a->family == ZPF_AF_INET ? 4 : 16) == 0;
}

/* --- sealing -------------------------------------------------------------- */

static uint64_t next_seq(struct zpf_net *net)
{
    if (++net->seq_lo == 0)
        net->epoch++;
    return net->epoch << 32 | net->seq_lo;
}

static bool grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return true;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (p == NULL)
        return false;
    *buf = p;
    *cap = n;
    return true;
}

static size_t sealed_len(const struct zpf_net *net, size_t len)
{
    return net->o.keyring ? len + ZPF_SEAL_OVERHEAD : len;
}

/* Seal in[0..len) into out; returns the length or a negative code. */
static int seal_into(struct zpf_net *net, const uint8_t *in, size_t len,
                     uint8_t *out, size_t cap)
{
    if (net->o.keyring == NULL) {
        if (cap < len)
            return ZPF_ENOSPC;
        memcpy(out, in, len);
        return (int)len;
    }
    uint64_t salt;
    randombytes_buf(&salt, sizeof salt);
    const struct zpf_keyring *kr = net->o.keyring;
    struct zpf_keyring one;
    const struct zpf_key *k = net->seal_key
                                  ? zpf_keyring_find(kr, net->seal_key)
                                  : NULL;
    if (k != NULL) {
        zpf_keyring_init(&one);
        (void)zpf_keyring_add(&one, k->bytes);
        kr = &one;
    }
    int n = zpf_seal(kr, net->cluster, strlen(net->cluster), net->sender,
                     next_seq(net), salt, in, len, out, cap);
    if (kr == &one)
        zpf_keyring_wipe(&one);
    return n;
}

static enum zpf_net_drop drop_of(int err)
{
    switch (err) {
    case ZPF_ETRUNC: return ZPF_NET_DROP_SHORT;
    case ZPF_ESEAL: return ZPF_NET_DROP_SEAL;
    case ZPF_ENOKEY: return ZPF_NET_DROP_NOKEY;
    case ZPF_EREPLAY: return ZPF_NET_DROP_REPLAY;
    case ZPF_EAUTH: return ZPF_NET_DROP_AUTH;
    default: return ZPF_NET_DROP_FRAME;
    }
}

static void dropped(struct zpf_net *net, enum zpf_net_drop why, int err,
                    const struct zpf_addr *peer)
{
    net->st.drops[why]++;
    if (net->o.drop_cb)
        net->o.drop_cb(net->o.ctx, why, err, peer);
}

/* Open a datagram or frame body into net->pt.  Returns the plaintext length
 * or a negative code (already counted). */
static int open_body(struct zpf_net *net, const uint8_t *in, size_t len,
                     const struct zpf_addr *peer)
{
    if (!grow(&net->pt, &net->pt_cap, len + 1)) {
        dropped(net, ZPF_NET_DROP_FRAME, ZPF_ENOMEM, peer);
        return ZPF_ENOMEM;
    }
    if (net->o.keyring == NULL) {
        memcpy(net->pt, in, len);
        return (int)len;
    }
    struct zpf_seal_info info;
    int n = zpf_open(net->o.keyring, net->cluster, strlen(net->cluster), in,
                     len, net->pt, net->pt_cap, &info);
    if (n >= 0) {
        int rc = zpf_replay_check(&net->replay, info.sender, info.seq);
        if (rc < 0)
            n = rc;
        net->opened_key = info.key_id;
    }
    if (n < 0)
        dropped(net, drop_of(n), n, peer);
    return n;
}

/* --- UDP ------------------------------------------------------------------ */

static void udp_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct zpf_net *net = h->data;
    *buf = uv_buf_init((char *)net->udp_rx, sizeof net->udp_rx);
}

static void udp_recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *sa, unsigned flags)
{
    (void)buf;
    struct zpf_net *net = h->data;
    if (nread <= 0 || sa == NULL)
        return;
    if (flags & UV_UDP_PARTIAL) { /* larger than any datagram we send */
        dropped(net, ZPF_NET_DROP_SHORT, ZPF_ELIMIT, NULL);
        return;
    }
    struct zpf_addr from;
    if (zpf_addr_from_sockaddr(sa, &from) < 0)
        return;
    net->st.udp_in++;
    net->st.bytes_in += (uint64_t)nread;
    int n = open_body(net, net->udp_rx, (size_t)nread, &from);
    if (n >= 0)
        net->o.recv_cb(net->o.ctx, ZPF_NET_PACKET, &from, net->pt, (size_t)n);
}

struct udp_req {
    uv_udp_send_t req;
    uint8_t data[];
};

static void udp_send_cb(uv_udp_send_t *req, int status)
{
    struct zpf_net *net = req->handle->data;
    if (status < 0)
        net->st.send_errors++;
    net->udp_queued--;
    free(req);
}

static void udp_send(struct zpf_net *net, const struct zpf_addr *to,
                     const uint8_t *buf, size_t len)
{
    struct sockaddr_storage ss;
    if (zpf_addr_to_sockaddr(to, &ss) < 0 ||
        !grow(&net->tx, &net->tx_cap, sealed_len(net, len))) {
        net->st.send_errors++;
        return;
    }
    int n = seal_into(net, buf, len, net->tx, net->tx_cap);
    if (n < 0) {
        net->st.send_errors++;
        return;
    }
    uv_buf_t b = uv_buf_init((char *)net->tx, (unsigned)n);
    int rc = uv_udp_try_send(&net->udp, &b, 1, (struct sockaddr *)&ss);
    if (rc == UV_EAGAIN && net->udp_queued < UDP_QUEUE_MAX) {
        /* The socket buffer is full: queue a copy with libuv. */
        struct udp_req *r = malloc(sizeof *r + (size_t)n);
        if (r == NULL) {
            net->st.send_errors++;
            return;
        }
        memcpy(r->data, net->tx, (size_t)n);
        b = uv_buf_init((char *)r->data, (unsigned)n);
        rc = uv_udp_send(&r->req, &net->udp, &b, 1, (struct sockaddr *)&ss,
                         udp_send_cb);
        if (rc < 0)
            free(r);
        else
            net->udp_queued++;
    }
    if (rc < 0) {
        net->st.send_errors++;
        return;
    }
    net->st.udp_out++;
    net->st.bytes_out += (uint64_t)n;
}

/* --- TCP connections ------------------------------------------------------ */

/* One more handle closed; the last one of a closing transport frees it. */
static void closed_one(struct zpf_net *net)
{
    if (--net->open_handles > 0 || !net->closing)
        return;
    void (*done)(void *) = net->done;
    void *arg = net->done_arg;
    free(net);
    if (done)
        done(arg);
}

static void conn_free_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct zpf_net *net = c->net;
    while (c->pending) {
        struct wreq *w = c->pending;
        c->pending = w->next;
        free(w);
    }
    free(c->rbuf);
    free(c);
    closed_one(net);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    struct zpf_net *net = c->net;
    c->closing = true;
    net->unauth_bytes -= c->unauth;
    c->unauth = 0;
    if (c->prev)
        c->prev->next = c->next;
    else
        net->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    net->nconns--;
    net->st.tcp_open = net->nconns;
    uv_close((uv_handle_t *)&c->tcp, conn_free_cb);
}

static struct conn *conn_new(struct zpf_net *net)
{
    if (net->nconns >= CONNS_MAX)
        return NULL;
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    if (uv_tcp_init(net->loop, &c->tcp) < 0) {
        free(c);
        return NULL;
    }
    c->tcp.data = c;
    c->net = net;
    c->pending_tail = &c->pending;
    c->last_used = c->created = uv_now(net->loop);
    c->next = net->conns;
    if (net->conns)
        net->conns->prev = c;
    net->conns = c;
    net->nconns++;
    net->open_handles++;
    net->st.tcp_open = net->nconns;
    return c;
}

static void frame_in(struct conn *c, const uint8_t *body, size_t len)
{
    struct zpf_net *net = c->net;
    const struct zpf_addr *peer = c->has_peer ? &c->peer : NULL;
    int n = open_body(net, body, len, peer);
    if (n < 0)
        return;
    if (!c->authed) {
        c->authed = true;
        net->unauth_bytes -= c->unauth;
        c->unauth = 0;
    }
    const uint8_t *p = net->pt;
    if ((size_t)n < ZPF_NET_PREFIX || p[0] > ZPF_NET_AGENT ||
        (p[1] != ZPF_AF_INET && p[1] != ZPF_AF_INET6)) {
        dropped(net, ZPF_NET_DROP_FRAME, ZPF_EINVAL, peer);
        return;
    }
    struct zpf_addr from = {.family = p[1],
                            .port = (uint16_t)(p[2] << 8 | p[3])};
    memcpy(from.ip, p + 4, 16);
    if (!c->has_peer) {
        c->peer = from; /* replies to this peer may use this connection */
        c->has_peer = true;
    }
    net->st.tcp_frames_in++;
    net->o.recv_cb(net->o.ctx, (enum zpf_net_kind)p[0], &from,
                   p + ZPF_NET_PREFIX, (size_t)n - ZPF_NET_PREFIX);
}

static void conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct conn *c = h->data;
    /* Read straight into the connection's buffer, which grows to the
     * frame being assembled (bounded by ZPF_NET_FRAME_MAX + 4). */
    if (!grow(&c->rbuf, &c->rcap, c->rlen + 65536)) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)c->rbuf + c->rlen,
                       (unsigned)(c->rcap - c->rlen));
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct conn *c = s->data;
    struct zpf_net *net = c->net;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    c->rlen += (size_t)nread;
    c->last_used = uv_now(net->loop);
    net->st.bytes_in += (uint64_t)nread;
    if (!c->authed && !c->outgoing) {
        c->unauth += (size_t)nread;
        net->unauth_bytes += (size_t)nread;
        if (net->unauth_bytes > UNAUTH_BYTES) {
            dropped(net, ZPF_NET_DROP_FRAME, ZPF_ELIMIT, NULL);
            conn_close(c);
            return;
        }
    }
    size_t off = 0;
    while (c->rlen - off >= 4 && !c->closing) {
        const uint8_t *p = c->rbuf + off;
        uint32_t flen = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                        (uint32_t)p[2] << 8 | p[3];
        uint32_t fmax = c->authed || c->outgoing ? ZPF_NET_FRAME_MAX
                                                 : UNAUTH_FRAME_MAX;
        if (flen == 0 || flen > fmax) {
            dropped(net, ZPF_NET_DROP_FRAME, ZPF_ELIMIT,
                    c->has_peer ? &c->peer : NULL);
            conn_close(c);
            return;
        }
        if (c->rlen - off - 4 < flen)
            break;
        frame_in(c, p + 4, flen);
        off += 4 + (size_t)flen;
    }
    if (c->closing)
        return;
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
    if (c->rcap > (1u << 20) && c->rlen < 65536) {
        /* Give back what one big push-pull needed. */
        uint8_t *p = realloc(c->rbuf, 65536 + c->rlen);
        if (p) {
            c->rbuf = p;
            c->rcap = 65536 + c->rlen;
        }
    }
}

static void write_cb(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;
    c->queued -= w->len;
    if (status < 0) {
        c->net->st.send_errors++;
        if (status != UV_ECANCELED)
            conn_close(c);
    }
    free(w);
}

static int conn_write(struct conn *c, struct wreq *w)
{
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
    if (rc < 0) {
        c->queued -= w->len;
        free(w);
        conn_close(c);
    }
    return rc;
}

/* Frames queued for a connection that never came up are lost with it. */
static void drop_pending(struct conn *c, int err)
{
    while (c->pending) {
        struct wreq *w = c->pending;
        c->pending = w->next;
        c->queued -= w->len;
        dropped(c->net, ZPF_NET_DROP_QUEUE, err, &c->peer);
        free(w);
    }
    c->pending_tail = &c->pending;
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    struct zpf_net *net = c->net;
    if (status < 0) {
        net->st.tcp_connect_failed++;
        if (!c->closing) {
            drop_pending(c, status);
            conn_close(c);
        }
        return;
    }
    if (c->closing)
        return;
    c->connected = true;
    net->st.tcp_connected++;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
    while (c->pending && !c->closing) {
        struct wreq *w = c->pending;
        c->pending = w->next;
        conn_write(c, w);
    }
    c->pending = NULL;
    c->pending_tail = &c->pending;
}

/* An established connection we opened, else one the peer opened, else
 * one we are still opening, else a new one. */
static struct conn *route(struct zpf_net *net, const struct zpf_addr *to)
{
    struct conn *in = NULL, *opening = NULL;
    for (struct conn *c = net->conns; c; c = c->next) {
        if (!c->has_peer || c->closing || !zpf_addr_equal(&c->peer, to))
            continue;
        if (c->outgoing && c->connected)
            return c;
        if (c->outgoing)
            opening = c;
        else
            in = c;
    }
    if (in || opening)
        return in ? in : opening;
    struct sockaddr_storage ss;
    if (zpf_addr_to_sockaddr(to, &ss) < 0)
        return NULL;
    struct conn *c = conn_new(net);
    if (c == NULL)
        return NULL;
    c->peer = *to;
    c->has_peer = c->outgoing = true;
    c->creq.data = c;
    if (uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&ss,
                       connect_cb) < 0) {
        net->st.tcp_connect_failed++;
        conn_close(c);
        return NULL;
    }
    return c;
}

static void tcp_send(struct zpf_net *net, enum zpf_net_kind kind,
                     const struct zpf_addr *to, const uint8_t *buf, size_t len)
{
    struct conn *c = route(net, to);
    if (c == NULL) {
        dropped(net, ZPF_NET_DROP_QUEUE, ZPF_ENOMEM, to);
        return;
    }
    size_t plain = ZPF_NET_PREFIX + len;
    size_t body = sealed_len(net, plain);
    if (body > ZPF_NET_FRAME_MAX || c->queued + body + 4 > CONN_QUEUE_MAX) {
        dropped(net, ZPF_NET_DROP_QUEUE, ZPF_ENOSPC, to);
        return;
    }
    uint8_t *pt = malloc(plain);
    struct wreq *w = malloc(sizeof *w + 4 + body);
    if (pt == NULL || w == NULL) {
        free(pt);
        free(w);
        dropped(net, ZPF_NET_DROP_QUEUE, ZPF_ENOMEM, to);
        return;
    }
    const struct zpf_addr *me = &net->o.advertise;
    pt[0] = (uint8_t)kind;
    pt[1] = me->family;
    pt[2] = (uint8_t)(me->port >> 8);
    pt[3] = (uint8_t)me->port;
    memcpy(pt + 4, me->ip, 16);
    memcpy(pt + ZPF_NET_PREFIX, buf, len);
    int n = seal_into(net, pt, plain, w->data + 4, body);
    free(pt);
    if (n < 0) {
        free(w);
        net->st.send_errors++;
        return;
    }
    w->data[0] = (uint8_t)((uint32_t)n >> 24);
    w->data[1] = (uint8_t)((uint32_t)n >> 16);
    w->data[2] = (uint8_t)((uint32_t)n >> 8);
    w->data[3] = (uint8_t)n;
    w->len = 4 + (size_t)n;
    w->c = c;
    w->next = NULL;
    c->queued += w->len;
    c->last_used = uv_now(net->loop);
    net->st.tcp_frames_out++;
    net->st.bytes_out += w->len;
    if (c->connected || !c->outgoing) {
        conn_write(c, w);
    } else {
        *c->pending_tail = w;
        c->pending_tail = &w->next;
    }
}

static void accept_cb(uv_stream_t *server, int status)
{
    struct zpf_net *net = server->data;
    if (status < 0)
        return;
    struct conn *c = conn_new(net);
    if (c == NULL) {
        /* Over the limit: accept and drop, so the backlog does not fill. */
        uv_tcp_t *tmp = malloc(sizeof *tmp);
        if (tmp && uv_tcp_init(net->loop, tmp) == 0) {
            if (uv_accept(server, (uv_stream_t *)tmp) == 0) { /* nothing */ }
            uv_close((uv_handle_t *)tmp, (uv_close_cb)free);
        } else {
            free(tmp);
        }
        return;
    }
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    c->connected = true;
    net->st.tcp_accepted++;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
}

static void sweep_cb(uv_timer_t *t)
{
    struct zpf_net *net = t->data;
    uint64_t now = uv_now(net->loop);
    struct conn *next;
    for (struct conn *c = net->conns; c; c = next) {
        next = c->next;
        if ((now - c->last_used > IDLE_MS && c->queued == 0) ||
            (!c->outgoing && !c->authed && now - c->created > AUTH_MS)) {
            conn_close(c);
        } else if (c->outgoing && !c->connected &&
                   now - c->created > CONNECT_MS) {
            drop_pending(c, UV_ETIMEDOUT);
            conn_close(c); /* connect_cb sees UV_ECANCELED and counts it */
        }
    }
}

/* --- public --------------------------------------------------------------- */

void zpf_net_send(struct zpf_net *net, enum zpf_net_kind kind,
                  const struct zpf_addr *to, const uint8_t *buf, size_t len)
{
    if (net->closing)
        return;
    if (kind == ZPF_NET_PACKET && net->udp_open &&
        sealed_len(net, len) <= UDP_MAX)
        udp_send(net, to, buf, len);
    else
        tcp_send(net, kind, to, buf, len);
}

void zpf_net_send_key(struct zpf_net *net, enum zpf_net_kind kind,
                      const struct zpf_addr *to, const uint8_t *buf,
                      size_t len, uint32_t key_id)
{
    net->seal_key = key_id;
    zpf_net_send(net, kind, to, buf, len);
    net->seal_key = 0;
}

uint32_t zpf_net_opened_key(const struct zpf_net *net)
{
    return net->opened_key;
}

const struct zpf_net_stats *zpf_net_stats(const struct zpf_net *net)
{
    return &net->st;
}

static void *replay_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    if (n == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, n);
}

static void handle_closed_cb(uv_handle_t *h)
{
    closed_one(h->data);
}

static int bind_error(int rc, const char *what, const struct zpf_addr *a,
                      char *err, size_t errlen)
{
    char s[64];
    zpf_addr_format(a, s, sizeof s);
    snprintf(err, errlen, "cannot bind %s %s: %s%s", what, s, uv_strerror(rc),
             rc == UV_EADDRINUSE ? " (another process, maybe another zpfd, "
                                   "uses this port; set gossip.bind)"
             : rc == UV_EADDRNOTAVAIL ? " (no interface has this address)"
                                      : "");
    return rc == UV_EADDRINUSE ? ZPF_EBUSY : ZPF_EINVAL;
}

int zpf_net_start(uv_loop_t *loop, const struct zpf_net_options *o,
                  struct zpf_net **out, char *err, size_t errlen)
{
    struct zpf_net *net = calloc(1, sizeof *net);
    if (net == NULL)
        return ZPF_ENOMEM;
    net->loop = loop;
    net->o = *o;
    snprintf(net->cluster, sizeof net->cluster, "%s", o->cluster);
    net->sender = zpf_seal_sender_id(o->name, strlen(o->name));
    net->epoch = o->epoch;
    if (o->keyring) {
        uint32_t max = o->max_senders ? o->max_senders : 65536;
        int rc = zpf_replay_init(&net->replay, max, replay_realloc, NULL);
        if (rc < 0) {
            snprintf(err, errlen, "replay window table: %s", zpf_strerror(rc));
            free(net);
            return rc;
        }
        net->replay_init = true;
    }
    struct sockaddr_storage ss;
    zpf_addr_to_sockaddr(&o->bind, &ss);
    int rc;

    uv_tcp_init(loop, &net->listener);
    net->listener.data = net;
    net->open_handles++;
    uv_timer_init(loop, &net->sweep);
    net->sweep.data = net;
    net->open_handles++;
    rc = uv_tcp_bind(&net->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&net->listener, 128, accept_cb);
    if (rc < 0) {
        rc = bind_error(rc, "TCP", &o->bind, err, errlen);
        goto fail;
    }
    if (!o->tcp_only) {
        uv_udp_init(loop, &net->udp);
        net->udp.data = net;
        net->open_handles++;
        net->udp_open = true;
        rc = uv_udp_bind(&net->udp, (struct sockaddr *)&ss, 0);
        if (rc < 0) {
            rc = bind_error(rc, "UDP", &o->bind, err, errlen);
            goto fail;
        }
        int sz = SOCKBUF;
        (void)uv_send_buffer_size((uv_handle_t *)&net->udp, &sz);
        sz = SOCKBUF;
        (void)uv_recv_buffer_size((uv_handle_t *)&net->udp, &sz);
        uv_udp_recv_start(&net->udp, udp_alloc_cb, udp_recv_cb);
    }
    uv_timer_start(&net->sweep, sweep_cb, SWEEP_MS, SWEEP_MS);
    *out = net;
    return 0;
fail:
    zpf_net_close(net, NULL, NULL);
    return rc;
}

void zpf_net_close(struct zpf_net *net, void (*done)(void *), void *arg)
{
    net->closing = true;
    net->done = done;
    net->done_arg = arg;
    while (net->conns)
        conn_close(net->conns);
    uv_close((uv_handle_t *)&net->listener, handle_closed_cb);
    uv_close((uv_handle_t *)&net->sweep, handle_closed_cb);
    if (net->udp_open)
        uv_close((uv_handle_t *)&net->udp, handle_closed_cb);
    if (net->replay_init) {
        zpf_replay_free(&net->replay);
        net->replay_init = false;
    }
    free(net->pt);
    free(net->tx);
    net->pt = net->tx = NULL;
}
