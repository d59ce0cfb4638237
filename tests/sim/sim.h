/*
 * Deterministic simulator for the zpf gossip core.
 *
 * N real zpf_node instances live in one process on a virtual clock and an
 * in-memory network.  Everything random (latency jitter, loss, duplication,
 * each node's rand64) comes from one seeded generator, and events at the same
 * virtual time run in the order they were scheduled, so the same seed and
 * the same calls give the same trace, bit for bit.  The trace hash covers
 * every notify() event (time, observer, type, member, incarnation) and every
 * delivered packet, so two runs can be compared by one number.
 *
 * Faults: per-packet loss and duplication, latency with jitter (which also
 * reorders), partitions between groups of nodes (one-way or both ways),
 * per-node inbound or outbound blackholes, crash and restart (with or
 * without the persisted incarnation), pause and resume (a stopped process:
 * packets queue in its "socket buffer" and its timers run late), clocks
 * running at different rates, and a node's local health switched off.
 *
 * Node i has name "n<i>" and the IPv4 address 127.x.y.z:7946 where x.y.z is
 * i + 1 in base 256 (n0 is 127.0.0.1); nothing is ever sent on a real
 * network.
 */
#ifndef ZPF_SIM_H
#define ZPF_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zpf/gossip.h"

#define SIM_GROUPS_MAX 8

struct sim_config {
    uint64_t seed;
    size_t nodes;           /* node slots; nodes start crashed (not running) */
    double loss;            /* probability a datagram is dropped, 0..1 */
    double dup;             /* probability a datagram is delivered twice */
    uint32_t latency_ms;    /* one-way base latency */
    uint32_t jitter_ms;     /* uniform extra 0..jitter, reorders packets */
    double clock_skew;      /* node clock rates uniform in [1-s, 1+s] */
    bool stream_loss;       /* if false (default), stream frames are never
                               lost, only blocked by partitions */
    struct zpf_config node; /* timings for every node; name/addr ignored */
};

void sim_config_default(struct sim_config *cfg);

struct sim;

/* Called for every zpf_event any node emits, after the sim recorded it. */
typedef void (*sim_event_cb)(struct sim *s, size_t observer,
                             const struct zpf_event *ev, uint64_t t_ms,
                             void *ud);

struct sim *sim_new(const struct sim_config *cfg);
void sim_free(struct sim *s);
void sim_on_event(struct sim *s, sim_event_cb cb, void *ud);

/* Start node i (a fresh process).  keep_incarnation: it restarts with the
 * incarnation it last used (as zpfd would from its store); otherwise 0. */
int sim_start(struct sim *s, size_t i, bool keep_incarnation);
/* Node i asks node `seed` to push-pull (zpf_node_join).  Like zpfd, the
 * simulator retries (1 s, doubling up to 30 s) while node i knows no other
 * live member. */
int sim_join(struct sim *s, size_t i, size_t seed);
void sim_crash(struct sim *s, size_t i);   /* process gone, state lost */
void sim_leave(struct sim *s, size_t i);   /* zpf_node_leave */
void sim_pause(struct sim *s, size_t i);   /* SIGSTOP */
void sim_resume(struct sim *s, size_t i);  /* SIGCONT */
void sim_set_health(struct sim *s, size_t i, bool healthy);
bool sim_running(const struct sim *s, size_t i); /* started, not crashed */
bool sim_paused(const struct sim *s, size_t i);  /* running and stopped */
size_t sim_running_count(const struct sim *s);
size_t sim_size(const struct sim *s);            /* cfg.nodes */

/* Partitions: every node is in group 0 until moved.  sim_block(a, b) drops
 * everything sent from group a to group b (one way); call it both ways for
 * a full partition.  sim_heal() clears every block. */
void sim_set_group(struct sim *s, size_t i, unsigned group);
void sim_block(struct sim *s, unsigned from_group, unsigned to_group);
void sim_heal(struct sim *s);
/* Per-node blackholes: drop everything node i receives / sends. */
void sim_block_in(struct sim *s, size_t i, bool on);
void sim_block_out(struct sim *s, size_t i, bool on);
void sim_set_loss(struct sim *s, double loss);

/* Run events until virtual time t (ms since the start). */
void sim_run_until(struct sim *s, uint64_t t_ms);
uint64_t sim_now(const struct sim *s);

struct zpf_node *sim_node(struct sim *s, size_t i); /* NULL if not running */
uint64_t sim_trace_hash(const struct sim *s);
uint64_t sim_seed(const struct sim *s);

/* True when every running, unpaused node sees exactly the running nodes as
 * alive (or stalled) and no one else as alive or suspect. */
bool sim_converged(struct sim *s);

/* Invariant violations seen so far (incarnation went down for a member in
 * some observer's view).  Tests assert it stays 0. */
uint64_t sim_violations(const struct sim *s);
/* The first violation in words (time, observer, event, member, the two
 * incarnations), or "" if none. */
const char *sim_violation_text(const struct sim *s);
/* Times a node's next deadline was still in the past right after a tick
 * (the simulator then ticks it 1 ms later instead of spinning). */
uint64_t sim_late_deadlines(const struct sim *s);

struct sim_totals {
    uint64_t packets, bytes;       /* datagrams sent by all nodes */
    uint64_t frames, frame_bytes;  /* stream frames */
    uint64_t dropped, duplicated;
    uint64_t node_ms;              /* sum over nodes of simulated running ms */
};
void sim_totals(const struct sim *s, struct sim_totals *out);

/* Node index of an address / a member record (by address, else by its
 * "n<i>" name), or SIZE_MAX if it is not one of the simulator's nodes. */
size_t sim_addr_index(const struct sim *s, const struct zpf_addr *a);
size_t sim_member_index(const struct sim *s, const struct zpf_member_info *m);
/* Node i's own clock now (what its env->now_ms returns). */
uint64_t sim_node_clock(const struct sim *s, size_t i);

/* Scenario helpers.  sim_start_cluster: start nodes [0, n) spread evenly
 * over window_ms from now, node 0 first, each joining a node drawn at random
 * from those started before it; returns right after the last start.
 * sim_run_until_converged: run until sim_converged() holds, checked on every
 * whole simulated second, or until deadline_ms; on success stores the time
 * in *at (if not NULL) and returns true. */
void sim_start_cluster(struct sim *s, size_t n, uint64_t window_ms);
bool sim_run_until_converged(struct sim *s, uint64_t deadline_ms,
                             uint64_t *at);

#endif
