/*
 * The transport on loopback: two zpf_net instances on a real libuv loop,
 * sealed datagrams and frames, wrong keys, replays, plain text, hostile
 * frames, and replies that can only travel back over the connection the
 * request came in on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sodium.h>

#include "net.h"

#define MAXGOT 16

struct got {
    enum zpf_net_kind kind;
    struct zpf_addr from;
    uint8_t buf[256];
    size_t len;
};

struct side {
    struct zpf_net *net;
    struct zpf_keyring kr;
    struct zpf_addr addr;
    struct got got[MAXGOT];
    unsigned ngot;
    unsigned drops[ZPF_NET_DROP_MAX];
};

static void recv_cb(void *ctx, enum zpf_net_kind kind,
                    const struct zpf_addr *from, const uint8_t *buf,
                    size_t len)
{
    struct side *s = ctx;
    if (s->ngot == MAXGOT || len > sizeof s->got[0].buf)
        return;
    struct got *g = &s->got[s->ngot++];
    g->kind = kind;
    g->from = *from;
    memcpy(g->buf, buf, len);
    g->len = len;
}

static void drop_cb(void *ctx, enum zpf_net_drop why, int err,
                    const struct zpf_addr *peer)
{
    (void)err, (void)peer;
    struct side *s = ctx;
    s->drops[why]++;
}

/* A free port: bind a UDP and a TCP socket on port 0 and read it back. */
static uint16_t free_port(void)
{
    for (;;) {
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        assert_int_equal(bind(u, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(getsockname(u, (struct sockaddr *)&sa, &sl), 0);
        int t = socket(AF_INET, SOCK_STREAM, 0);
        int ok = bind(t, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(t);
        close(u);
        if (ok)
            return ntohs(sa.sin_port);
    }
}

static void side_start(uv_loop_t *loop, struct side *s, const char *name,
                       const uint8_t *key, bool tcp_only)
{
    memset(s, 0, sizeof *s);
    zpf_keyring_init(&s->kr);
    if (key)
        assert_int_equal(zpf_keyring_add(&s->kr, key), 0);
    char a[64];
    snprintf(a, sizeof a, "127.0.0.1:%u", free_port());
    assert_int_equal(zpf_addr_parse(a, &s->addr), 0);
    struct zpf_net_options o = {
        .bind = s->addr, .advertise = s->addr, .tcp_only = tcp_only,
        .cluster = "test", .name = name, .keyring = key ? &s->kr : NULL,
        .epoch = 1, .max_senders = 64, .recv_cb = recv_cb,
        .drop_cb = drop_cb, .ctx = s,
    };
    char err[256];
    assert_int_equal(zpf_net_start(loop, &o, &s->net, err, sizeof err), 0);
}

static void closed_cb(void *arg)
{
    (*(int *)arg)--;
}

static void sides_close(uv_loop_t *loop, struct side *a, struct side *b)
{
    int open = 2;
    zpf_net_close(a->net, closed_cb, &open);
    zpf_net_close(b->net, closed_cb, &open);
    while (open > 0)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Run the loop until cond holds or 3 s pass. */
#define RUN_UNTIL(loop, cond)                                                  \
    do {                                                                       \
        uint64_t end_ = uv_hrtime() + 3000000000ull;                           \
        while (!(cond) && uv_hrtime() < end_)                                  \
            uv_run((loop), UV_RUN_NOWAIT), usleep(1000);                       \
    } while (0)

static uint8_t key1[32], key2[32];

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    memset(key1, 1, sizeof key1);
    memset(key2, 2, sizeof key2);
    return 0;
}

static void test_addr_parse_format(void **state)
{
    (void)state;
    const char *good[] = {"127.0.0.1:7946", "[::1]:1", "0.0.0.0:0",
                          "[fe80::1:2]:65535", "10.1.2.3:80"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        struct zpf_addr a;
        char back[64];
        assert_int_equal(zpf_addr_parse(good[i], &a), 0);
        zpf_addr_format(&a, back, sizeof back);
        assert_string_equal(back, good[i]);
    }
    const char *bad[] = {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
                         "host:80", "::1:80", "[::1]80", "[::1]:x",
                         "1.2.3.4:-1", "[1.2.3.4]:5", "1.2.3.4:5 "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct zpf_addr a;
        assert_int_equal(zpf_addr_parse(bad[i], &a), ZPF_EINVAL);
    }
}

static void test_sealed_packet_frame_agent(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct side a, b;
    side_start(&loop, &a, "a", key1, false);
    side_start(&loop, &b, "b", key1, false);
    zpf_net_send(a.net, ZPF_NET_PACKET, &b.addr, (const uint8_t *)"ping", 4);
    zpf_net_send(a.net, ZPF_NET_STREAM, &b.addr, (const uint8_t *)"full", 4);
    zpf_net_send(a.net, ZPF_NET_AGENT, &b.addr, (const uint8_t *)"keys", 4);
    RUN_UNTIL(&loop, b.ngot == 3);
    assert_int_equal(b.ngot, 3);
    bool seen[3] = {false, false, false};
    for (unsigned i = 0; i < 3; i++) {
        struct got *g = &b.got[i];
        assert_int_equal(g->len, 4);
        /* The datagram's source and the frame's advertised address are
         * both a's address. */
        assert_true(zpf_addr_equal(&g->from, &a.addr));
        seen[g->kind] = true;
        const char *want = g->kind == ZPF_NET_PACKET   ? "ping"
                           : g->kind == ZPF_NET_STREAM ? "full"
                                                       : "keys";
        assert_memory_equal(g->buf, want, 4);
    }
    assert_true(seen[0] && seen[1] && seen[2]);
    const struct zpf_net_stats *st = zpf_net_stats(b.net);
    assert_int_equal(st->udp_in, 1);
    assert_int_equal(st->tcp_frames_in, 2);
    sides_close(&loop, &a, &b);
}

static void test_wrong_key_dropped(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct side a, b;
    side_start(&loop, &a, "a", key1, false);
    side_start(&loop, &b, "b", key2, false);
    zpf_net_send(a.net, ZPF_NET_PACKET, &b.addr, (const uint8_t *)"ping", 4);
    zpf_net_send(a.net, ZPF_NET_STREAM, &b.addr, (const uint8_t *)"full", 4);
    RUN_UNTIL(&loop, b.drops[ZPF_NET_DROP_NOKEY] == 2);
    assert_int_equal(b.drops[ZPF_NET_DROP_NOKEY], 2);
    assert_int_equal(b.ngot, 0);
    /* Once b holds key1 as well, a's packets open. */
    assert_int_equal(zpf_keyring_add(&b.kr, key1), 0);
    zpf_net_send(a.net, ZPF_NET_PACKET, &b.addr, (const uint8_t *)"ping", 4);
    RUN_UNTIL(&loop, b.ngot == 1);
    assert_int_equal(b.ngot, 1);
    sides_close(&loop, &a, &b);
}

/* Capture a sealed datagram with a plain socket and play it to b twice. */
static void test_replay_dropped(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct side a, b;
    side_start(&loop, &a, "a", key1, false);
    side_start(&loop, &b, "b", key1, false);
    int sniff = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(sniff, (struct sockaddr *)&sa, sizeof sa), 0);
    getsockname(sniff, (struct sockaddr *)&sa, &sl);
    struct zpf_addr sniff_addr;
    zpf_addr_from_sockaddr((struct sockaddr *)&sa, &sniff_addr);
    zpf_net_send(a.net, ZPF_NET_PACKET, &sniff_addr,
                 (const uint8_t *)"ping", 4);
    uint8_t pkt[512];
    struct pollfd pfd = {.fd = sniff, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 2000), 1);
    ssize_t n = recv(sniff, pkt, sizeof pkt, 0);
    assert_int_equal(n, 4 + ZPF_SEAL_OVERHEAD);
    struct sockaddr_storage to;
    zpf_addr_to_sockaddr(&b.addr, &to);
    for (int i = 0; i < 2; i++)
        assert_int_equal(sendto(sniff, pkt, (size_t)n, 0,
                                (struct sockaddr *)&to, sizeof(struct sockaddr_in)),
                         n);
    RUN_UNTIL(&loop, b.ngot + b.drops[ZPF_NET_DROP_REPLAY] == 2);
    assert_int_equal(b.ngot, 1);
    assert_int_equal(b.drops[ZPF_NET_DROP_REPLAY], 1);
    /* One flipped byte: authentication fails. */
    pkt[n - 1] ^= 1;
    sendto(sniff, pkt, (size_t)n, 0, (struct sockaddr *)&to,
           sizeof(struct sockaddr_in));
    RUN_UNTIL(&loop, b.drops[ZPF_NET_DROP_AUTH] == 1);
    assert_int_equal(b.drops[ZPF_NET_DROP_AUTH], 1);
    close(sniff);
    sides_close(&loop, &a, &b);
}

static void test_plain_and_sealed_do_not_mix(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct side a, b;
    side_start(&loop, &a, "a", NULL, false);
    side_start(&loop, &b, "b", key1, false);
    zpf_net_send(a.net, ZPF_NET_PACKET, &b.addr, (const uint8_t *)"\x95xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 50);
    RUN_UNTIL(&loop, b.drops[ZPF_NET_DROP_SEAL] == 1);
    assert_int_equal(b.drops[ZPF_NET_DROP_SEAL], 1);
    /* Plain to plain works. */
    struct side c;
    side_start(&loop, &c, "c", NULL, false);
    zpf_net_send(a.net, ZPF_NET_STREAM, &c.addr, (const uint8_t *)"full", 4);
    RUN_UNTIL(&loop, c.ngot == 1);
    assert_int_equal(c.ngot, 1);
    int open = 1;
    zpf_net_close(c.net, closed_cb, &open);
    while (open > 0)
        uv_run(&loop, UV_RUN_ONCE);
    sides_close(&loop, &a, &b);
}

/* a advertises a port nobody listens on, so b's answer can only travel
 * back over the connection a opened. */
static void test_reply_over_incoming_connection(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct side b;
    side_start(&loop, &b, "b", key1, true);
    struct side a;
    memset(&a, 0, sizeof a);
    zpf_keyring_init(&a.kr);
    zpf_keyring_add(&a.kr, key1);
    char s[64];
    snprintf(s, sizeof s, "127.0.0.1:%u", free_port());
    zpf_addr_parse(s, &a.addr);
    struct zpf_addr unreachable = a.addr;
    unreachable.port = free_port();
    struct zpf_net_options o = {
        .bind = a.addr, .advertise = unreachable, .tcp_only = true,
        .cluster = "test", .name = "a", .keyring = &a.kr, .epoch = 1,
        .max_senders = 64, .recv_cb = recv_cb, .drop_cb = drop_cb, .ctx = &a,
    };
    char err[256];
    assert_int_equal(zpf_net_start(&loop, &o, &a.net, err, sizeof err), 0);
    zpf_net_send(a.net, ZPF_NET_PACKET, &b.addr, (const uint8_t *)"ping", 4);
    RUN_UNTIL(&loop, b.ngot == 1);
    assert_int_equal(b.ngot, 1);
    assert_true(zpf_addr_equal(&b.got[0].from, &unreachable));
    zpf_net_send(b.net, ZPF_NET_PACKET, &unreachable,
                 (const uint8_t *)"pong", 4);
    RUN_UNTIL(&loop, a.ngot == 1);
    assert_int_equal(a.ngot, 1);
    assert_memory_equal(a.got[0].buf, "pong", 4);
    sides_close(&loop, &a, &b);
}

/* A frame header announcing more than ZPF_NET_FRAME_MAX: dropped, and the
 * connection closed before anything is buffered. */
static void test_hostile_frames(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct side a, b;
    side_start(&loop, &a, "a", key1, false);
    side_start(&loop, &b, "b", key1, false);
    struct sockaddr_storage to;
    zpf_addr_to_sockaddr(&b.addr, &to);
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3};
    /* 2 MiB: allowed once a peer has proved itself, not from a stranger. */
    const uint8_t stranger[] = {0, 0x20, 0, 0, 1, 2, 3};
    const uint8_t zero[] = {0, 0, 0, 0};
    const uint8_t junk[] = {0, 0, 0, 60, 0xa1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                            11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
                            24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36,
                            37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49,
                            50, 51, 52, 53, 54, 55, 56, 57, 58, 59};
    const uint8_t *cases[] = {huge, stranger, zero, junk};
    size_t lens[] = {sizeof huge, sizeof stranger, sizeof zero, sizeof junk};
    for (int i = 0; i < 4; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&to,
                                 sizeof(struct sockaddr_in)), 0);
        assert_int_equal(write(fd, cases[i], lens[i]), (ssize_t)lens[i]);
        unsigned before = b.drops[ZPF_NET_DROP_FRAME] +
                          b.drops[ZPF_NET_DROP_NOKEY];
        RUN_UNTIL(&loop, b.drops[ZPF_NET_DROP_FRAME] +
                             b.drops[ZPF_NET_DROP_NOKEY] > before);
        assert_true(b.drops[ZPF_NET_DROP_FRAME] + b.drops[ZPF_NET_DROP_NOKEY] >
                    before);
        close(fd);
    }
    assert_int_equal(b.ngot, 0);
    /* Still serving. */
    zpf_net_send(a.net, ZPF_NET_STREAM, &b.addr, (const uint8_t *)"full", 4);
    RUN_UNTIL(&loop, b.ngot == 1);
    assert_int_equal(b.ngot, 1);
    sides_close(&loop, &a, &b);
}

static void test_bind_conflict_reported(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct side a;
    side_start(&loop, &a, "a", key1, false);
    struct zpf_net *n2;
    struct zpf_net_options o = {
        .bind = a.addr, .advertise = a.addr, .cluster = "test", .name = "x",
        .keyring = &a.kr, .epoch = 1, .max_senders = 4, .recv_cb = recv_cb,
        .ctx = &a,
    };
    char err[256] = "";
    assert_int_equal(zpf_net_start(&loop, &o, &n2, err, sizeof err),
                     ZPF_EBUSY);
    assert_non_null(strstr(err, "cannot bind"));
    assert_non_null(strstr(err, "address already in use"));
    int open = 1;
    zpf_net_close(a.net, closed_cb, &open);
    while (open > 0)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_parse_format),
        cmocka_unit_test(test_sealed_packet_frame_agent),
        cmocka_unit_test(test_wrong_key_dropped),
        cmocka_unit_test(test_replay_dropped),
        cmocka_unit_test(test_plain_and_sealed_do_not_mix),
        cmocka_unit_test(test_reply_over_incoming_connection),
        cmocka_unit_test(test_hostile_frames),
        cmocka_unit_test(test_bind_conflict_reported),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
