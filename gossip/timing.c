/*
 * Defaults and the timing arithmetic of SWIM and Lifeguard.
 *
 * The defaults are memberlist's LAN profile (DefaultLANConfig), so that a
 * zpf cluster and a Serf cluster given the same network behave alike and can
 * be compared figure for figure.  The one addition is the heartbeat counter:
 * heartbeat_interval_ms = 250 because a suspect's counter is evidence on the
 * time scale of one probe period (1 s) only if it moves several times in
 * one (node.c waits QUIET_BEATS of them).  A faster counter costs nothing
 * on the wire but a byte of varint every few hours.
 */
#include <math.h>

#include "core.h"

void zpf_config_default(struct zpf_config *cfg)
{
    *cfg = (struct zpf_config){0};
    cfg->probe_interval_ms = 1000;
    cfg->probe_timeout_ms = 500;
    cfg->indirect_checks = 3;
    cfg->suspicion_mult = 4;
    cfg->suspicion_max_mult = 6;
    cfg->gossip_interval_ms = 200;
    cfg->gossip_nodes = 3;
    cfg->retransmit_mult = 4;
    cfg->push_pull_interval_ms = 30000;
    /* 1400 bytes on the wire (zpfd gives the core 1400 minus the 45 bytes
     * of the seal) stay under a 1500-byte Ethernet MTU with IPv6 and UDP
     * headers. */
    cfg->packet_budget = 1400;
    cfg->awareness_max = 8;
    cfg->heartbeat_interval_ms = 250;
    /* Forty heartbeats: long enough that a stall is not one slow health
     * check, short enough that a hung service is taken over in seconds. */
    cfg->counter_timeout_ms = 10000;
    /* Serf keeps tombstones for 24 h: long enough to recognise a node that
     * comes back after a night, short enough that churn does not pile up. */
    cfg->tombstone_ms = 24u * 3600u * 1000u;
    cfg->max_members = 65536;
    cfg->counter_fast_expiry = true;
}

static double node_scale(size_t n)
{
    double s = log10((double)(n < 1 ? 1 : n));
    return s < 1.0 ? 1.0 : s;
}

uint64_t zpf_suspicion_timeout(const struct zpf_config *cfg, size_t n,
                               uint32_t confirmations)
{
    double min = (double)cfg->suspicion_mult * node_scale(n) *
                 (double)cfg->probe_interval_ms;
    double max = (double)cfg->suspicion_max_mult * min;
    /* Lifeguard expects suspicion_mult - 2 independent confirmations
     * (memberlist's choice), and none in a cluster too small to give them. */
    double k = (double)cfg->suspicion_mult - 2.0;
    if ((double)n - 2.0 < k)
        k = 0.0;
    if (k < 1.0 || max <= min)
        return (uint64_t)min;
    double frac = log((double)confirmations + 1.0) / log(k + 1.0);
    double t = max - (max - min) * frac;
    return (uint64_t)floor(t < min ? min : t);
}

uint32_t zpf_retransmit_limit(const struct zpf_config *cfg, size_t n)
{
    uint32_t scale = (uint32_t)ceil(log10((double)n + 1.0));
    uint32_t limit = cfg->retransmit_mult * (scale ? scale : 1);
    return limit;
}

const char *zpf_state_name(enum zpf_state s)
{
    switch (s) {
    case ZPF_STATE_ALIVE: return "alive";
    case ZPF_STATE_SUSPECT: return "suspect";
    case ZPF_STATE_DEAD: return "dead";
    case ZPF_STATE_LEFT: return "left";
    case ZPF_STATE_STALLED: return "stalled";
    }
    return "unknown";
}

const char *zpf_event_name(enum zpf_event_type t)
{
    switch (t) {
    case ZPF_EV_JOIN: return "join";
    case ZPF_EV_UPDATE: return "update";
    case ZPF_EV_SUSPECT: return "suspect";
    case ZPF_EV_ALIVE: return "alive";
    case ZPF_EV_FAIL: return "fail";
    case ZPF_EV_LEAVE: return "leave";
    case ZPF_EV_STALL: return "stall";
    case ZPF_EV_UNSTALL: return "unstall";
    case ZPF_EV_REAP: return "reap";
    }
    return "unknown";
}
