/*
 * The zpf gossip node: SWIM + Lifeguard + heartbeat counters.
 *
 * What it does
 * ------------
 * Every protocol period (probe_interval, stretched by local health) the node
 * pings the next member of a shuffled round-robin list.  No ack within
 * probe_timeout: it asks indirect_checks other members to ping the target for
 * it (PING_REQ); they ack on the target's behalf or, Lifeguard's addition,
 * send a NACK when they heard nothing, which tells this node that *it* is
 * being heard.  No ack by the end of the period: the target is suspected.  A
 * suspect that hears of it refutes with a higher incarnation; otherwise the
 * suspicion expires and the member is declared dead.  Facts (alive, suspect,
 * dead) ride on every packet up to the packet budget (bcast.c) and on a
 * short gossip interval to a few random members; full state is exchanged by
 * push-pull on the stream channel periodically and on join.
 *
 * Precedence: a fact about a member is (incarnation, rank) with rank alive 0
 * < suspect 1 < dead = left 2.  It replaces the current one when it is
 * greater; an alive fact needs a strictly greater incarnation.  Only the
 * member itself raises its incarnation, so a live member always wins in the
 * end by refuting.
 *
 * Lifeguard
 * ---------
 * - Local health ("awareness", 0 .. awareness_max-1): +1 for each missing
 *   nack on a failed probe (+1 if no helper could be asked), +1 for every
 *   refutation of a rumour about this node, -1 for each successful probe.
 *   Probe interval and probe timeout are multiplied by (awareness + 1), so a
 *   node that is slow itself does not accuse others of being slow.
 * - Suspicion timeout starts at max = suspicion_max_mult * min and shrinks
 *   towards min = suspicion_mult * max(1, log10 n) * probe_interval as
 *   independent suspecters confirm (timing.c).
 * - The suspect is told first: a ping to a suspect carries the suspicion.
 *
 * Heartbeat counters (DESIGN.md section 5)
 * ----------------------------------------
 * Every node advances its own counter every heartbeat_interval while its
 * host says it is healthy.  The counter rides in the header of every packet
 * it sends, and every packet carries a few others' counters (COUNTER
 * messages: suspects' first, then round-robin), a bounded cost per packet.
 * A node that has sent nothing for a probe interval sends a beacon, so a
 * node whose probes are stretched (or that hears nothing) still shows its
 * counter.  An observer notes, on its own clock, when each counter last
 * advanced; it never compares its clock with anyone's.  Counters compare
 * only within one incarnation: a restarted node counts anew.
 *
 * The benchmark ("bench") is this node's measure of how far the cluster
 * progressed: every observed advance adds delta / (n - 1) heartbeats (16.16
 * fixed point), so it grows by about one per heartbeat interval while this
 * node hears from the cluster, and not at all while it hears nothing.  A
 * judgement of staleness needs both clocks: old on this node's monotonic
 * clock *and* the others advanced meanwhile.  An observer that was paused,
 * starved or cut off sees no progress from anyone, so it condemns no one.
 *
 * Three uses:
 * 1. Evidence of life.  A suspicion that expires while the suspect's counter
 *    moved LIFE_BEATS past its value when suspected, or while the suspect
 *    was heard at a higher incarnation (it refuted; we have not heard the
 *    refutation yet), is restarted, not turned into a death
 *    (stats.deaths_deferred).  A "dead" fact about a member seen advancing
 *    within FRESH_BEATS is taken as a suspicion.  This guards against one-way
 *    and single-path faults: a node whose inbound packets are lost still
 *    sends packets that carry its advancing counter.
 * 2. Evidence of death.  Suspects' counters are flooded: every packet from a
 *    node that holds a suspicion carries the suspect's counter.  So if a
 *    suspect's counter stands still for QUIET_BEATS while the cluster's
 *    bench moves, the suspect is quiet, and an observer that finds it quiet
 *    says so as an independent confirmation.  A node whose *own* probe of
 *    the suspect failed, with at least one confirmation, and finding it
 *    quiet, declares it dead after probe_interval * max(1, log10 n) (the
 *    Lifeguard minimum divided by suspicion_mult) instead of waiting out the
 *    Lifeguard timeout.  First-hand only: a node that merely heard the rumour
 *    may have heard it after the refutation's epidemic ended, and its
 *    silence about the suspect is no evidence.  This is where zpf's detection
 *    time departs from memberlist's (about 0.5x at n = 10 in zpf-sim); it
 *    matters while each node hears each suspect's counter within a few
 *    heartbeats, which holds up to a few hundred members.  Beyond that,
 *    stale counter values arriving late look like movement, the fast path
 *    rarely applies, and detection falls back to Lifeguard's timing.  The
 *    price: a process stopped for about a probe period plus the fast expiry
 *    looks dead, so counter_fast_expiry = false turns this use off.
 * 3. Stall.  A member that still sends packets but whose counter stands
 *    still.  Judged first-hand only: when a packet from the member itself
 *    carries the same counter value this node first learned counter_timeout
 *    ago or longer, the counter provably did not move in between.  (Judging
 *    from second-hand values cannot be made sound: how often a node hears a
 *    given counter falls as n grows, and its gaps have long tails.)  The
 *    verdict is gossiped as a STALL fact (the member's current fact while
 *    stalled); a receiver that knows no later value believes it, and any
 *    later value, from anywhere, refutes it (ZPF_EV_UNSTALL).
 *
 * Pauses
 * ------
 * A tick far later than the deadline the node asked for means the host was
 * stopped (SIGSTOP, a VM freeze, a long GC-like stall).  Time spent stopped
 * is not time the network had to answer, so every pending timer is shifted
 * by the lateness: suspicions do not expire on waking before the packets
 * that piled up meanwhile (refutations among them) have been read.
 *
 * Departures from memberlist
 * --------------------------
 * - The counter evidence above, and the beacon.
 * - Anti-rumour: a node that receives a rumour older than what it knows
 *   queues its own fact again.  That covers a suspect or dead fact at a lower
 *   incarnation than the alive fact it holds, a suspicion of a member it
 *   holds dead, and a counter report, which means "I hold it alive", about a
 *   member it holds dead.  Epidemics are bounded, and a straggler that heard
 *   late would otherwise wait for a push-pull.
 * - Push-pull also goes, once per interval, to one random dead member: this
 *   is how the two sides of a healed partition find each other again (Serf
 *   does this above memberlist, as "reconnect").
 * - A push-pull reply that made this node refute a rumour about itself is
 *   answered with a fresh push-pull, so the refutation reaches the side that
 *   believes the rumour.
 * - Helpers send their nack at 80 % of their own probe timeout, so that it
 *   can arrive before the requester's period ends; memberlist's helpers
 *   wait the full timeout and their nacks mostly arrive too late to count.
 */
#include <math.h>
#include <string.h>

#include "core.h"
#include "wire.h"

#define CONFIRM_MAX 8        /* suspecters remembered per suspicion */
#define RELAYS_MAX 32        /* indirect probes this node runs for others */
#define COUNTERS_PER_PACKET 8 /* about 100 bytes of a 1400-byte budget */
#define SUSPECT_COUNTERS 2   /* of which at most this many for suspects */
#define REAP_PER_BEAT 128   /* members checked for tombstone expiry per
                                heartbeat: the per-node cost stays flat */
#define FILL_MISSES 8        /* facts that did not fit before a packet is
                                considered full */
#define QUIET_BEATS 3        /* evidence of death: a suspect's counter has
                                not moved for this many heartbeats since the
                                suspicion began; a live suspect's counter is
                                flooded (SUSPECT_COUNTERS) and would have
                                moved twice in that time */
#define LIFE_BEATS 2         /* evidence of life: a suspect's counter moved
                                this far past its value when suspected; one
                                step can be a dead node's last value
                                arriving late */
#define FRESH_BEATS 4        /* a dead fact about a member seen advancing
                                this recently is only a suspicion */

struct susp {
    uint32_t slot;
    uint32_t nconf; /* independent confirmations (not the first suspecter) */
    uint32_t nsaid;
    uint32_t said[CONFIRM_MAX];
    uint64_t start;
    uint64_t counter_start;
    uint64_t bench_start;
    bool newer;   /* the suspect was heard at a higher incarnation */
    bool probed;  /* this node's own probe of it failed */
};

struct relay {
    uint64_t deadline;
    uint32_t my_seq, their_seq;
    struct zpf_addr requester;
};

struct zpf_node {
    struct zpf_env env;
    struct zpf__alloc alloc;
    struct zpf_config cfg;
    char name[ZPF_NAME_MAX + 1];
    char cluster[ZPF_CLUSTER_MAX + 1];
    uint32_t name_len, cluster_len;
    uint32_t self;
    struct zpf__table t;
    struct zpf__bcast q;

    struct susp *susp;
    uint32_t nsusp, susp_cap;
    struct relay relays[RELAYS_MAX];
    uint32_t nrelays;

    uint32_t seq;
    uint32_t probe_slot; /* ZPF__NONE: no probe outstanding */
    uint32_t probe_seq, probe_nacks, probe_expect;
    uint32_t probe_inc; /* the target's incarnation when the probe began */
    bool probe_acked, probe_indirect;
    uint64_t probe_at, probe_timeout_at, gossip_at, pp_at, hb_at;
    uint64_t sent_at; /* last datagram sent */
    uint64_t promised; /* the deadline last reported; for pause detection */
    uint64_t epoch;    /* now_ms() at creation: member state times count from it */

    uint32_t awareness;
    bool healthy, leaving;
    uint32_t n_alive; /* alive + suspect, self included */
    uint32_t n_dead;  /* dead, not left */
    uint64_t bench;   /* 16.16 heartbeats of cluster progress */
    uint32_t counter_cursor, reap_cursor, susp_cursor;

    struct zpf_stats stats;
    uint8_t *tx;
};

/* --- small helpers -------------------------------------------------------- */

static uint64_t now_ms(const struct zpf_node *n)
{
    return n->env.now_ms(n->env.ctx);
}

static uint64_t rnd(const struct zpf_node *n)
{
    return n->env.rand64(n->env.ctx);
}

static struct zpf__member *mem(struct zpf_node *n, uint32_t slot)
{
    return &n->t.m[slot];
}

static bool is_live(uint8_t state)
{
    return state == ZPF_STATE_ALIVE || state == ZPF_STATE_SUSPECT;
}

static uint64_t scaled(const struct zpf_node *n, uint32_t ms)
{
    return (uint64_t)ms * (n->awareness + 1);
}

static struct zpf__str str_of(const struct zpf_node *n, uint32_t slot)
{
    const struct zpf__member *m = &n->t.m[slot];
    return (struct zpf__str){(const uint8_t *)zpf__table_name(&n->t, slot),
                             m->name_len};
}

static uint64_t state_time(const struct zpf_node *n, const struct zpf__member *m)
{
    return n->epoch + (uint64_t)m->state_ds * 100;
}

/* The bench as a member stores it: 24.8 fixed point, wrapping after 2^24
 * heartbeats (48 days at 250 ms); differences are taken modulo 2^32. */
static uint32_t bench32(const struct zpf_node *n)
{
    return (uint32_t)(n->bench >> 8);
}

static void awareness_add(struct zpf_node *n, int delta)
{
    int64_t a = (int64_t)n->awareness + delta;
    if (a < 0)
        a = 0;
    if (a > (int64_t)n->cfg.awareness_max - 1)
        a = (int64_t)n->cfg.awareness_max - 1;
    n->awareness = (uint32_t)a;
    n->stats.awareness = n->awareness;
}

static void info_fill(const struct zpf_node *n, uint32_t slot,
                      struct zpf_member_info *o, uint64_t now)
{
    const struct zpf__member *m = &n->t.m[slot];
    o->name = zpf__table_name(&n->t, slot);
    o->addr = m->addr;
    o->incarnation = m->incarnation;
    o->state = (enum zpf_state)m->state;
    if (m->state == ZPF_STATE_ALIVE && (m->flags & ZPF__M_STALLED))
        o->state = ZPF_STATE_STALLED;
    o->counter = m->counter;
    o->counter_age_ms = now >= m->counter_at ? now - m->counter_at : 0;
    o->state_age_ms = now >= state_time(n, m) ? now - state_time(n, m) : 0;
    o->meta = m->meta;
    o->meta_len = m->meta_len;
    o->is_self = slot == n->self;
}

static void notify(struct zpf_node *n, enum zpf_event_type type, uint32_t slot)
{
    if (n->env.notify == NULL)
        return;
    struct zpf_event ev = {.type = type};
    info_fill(n, slot, &ev.member, now_ms(n));
    n->env.notify(n->env.ctx, &ev);
}

static void set_state(struct zpf_node *n, uint32_t slot, uint8_t state)
{
    struct zpf__member *m = mem(n, slot);
    if (is_live(m->state) && !is_live(state))
        n->n_alive--;
    else if (!is_live(m->state) && is_live(state))
        n->n_alive++;
    if (m->state == ZPF_STATE_DEAD)
        n->n_dead--;
    if (state == ZPF_STATE_DEAD)
        n->n_dead++;
    m->state = state & 0xf;
    m->state_ds = (uint32_t)((now_ms(n) - n->epoch) / 100);
    n->stats.members_alive = n->n_alive;
}

static void queue_fact(struct zpf_node *n, uint32_t slot, uint32_t from)
{
    /* Out of memory: the fact still spreads through push-pull. */
    (void)zpf__bcast_put(&n->q, &n->alloc, &mem(n, slot)->bcast, slot, from);
}

/* --- heartbeat counters --------------------------------------------------- */

static void counter_reset(struct zpf_node *n, struct zpf__member *m,
                          uint64_t c)
{
    m->counter = c;
    m->counter_at = now_ms(n);
    m->counter_bench = bench32(n);
    m->flags |= ZPF__M_COUNTER;
    m->flags &= (uint8_t)~ZPF__M_STALLED;
}

static void stall_mark(struct zpf_node *n, uint32_t slot)
{
    mem(n, slot)->flags |= ZPF__M_STALLED;
    queue_fact(n, slot, n->self);
    notify(n, ZPF_EV_STALL, slot);
}

/* A counter value for `slot` at incarnation `inc`.  `direct`: from the
 * header of a packet the member itself sent just now, so it is its current
 * value, not a report of an older one.  Counters are compared only within
 * one incarnation: a restarted node counts anew. */
static void counter_seen(struct zpf_node *n, uint32_t slot, uint32_t inc,
                         uint64_t c, bool direct)
{
    struct zpf__member *m = mem(n, slot);
    if (slot == n->self || inc < m->incarnation)
        return;
    if (inc > m->incarnation) {
        /* It refuted and we have not heard the refutation yet: alive,
         * whatever its counter says. */
        if (m->susp != ZPF__NONE)
            n->susp[m->susp].newer = true;
        return;
    }
    if (!(m->flags & ZPF__M_COUNTER)) {
        counter_reset(n, m, c);
        return;
    }
    uint64_t now = now_ms(n);
    if (c < m->counter)
        return;
    if (c == m->counter) {
        /* Stall (use 3), first-hand: the member says its counter is still
         * the value we learned at counter_at, so it stood still all along. */
        if (direct && m->state == ZPF_STATE_ALIVE &&
            !(m->flags & ZPF__M_STALLED) &&
            now - m->counter_at >= n->cfg.counter_timeout_ms) {
            n->stats.stalls_declared++;
            stall_mark(n, slot);
        }
        return;
    }
    uint64_t elapsed = now - m->counter_at;
    /* No member advances faster than its heartbeat allows (plus clock-rate
     * slack): a bigger jump is a bug or a lie and must not inflate bench. */
    uint64_t delta = c - m->counter;
    uint64_t cap = elapsed / n->cfg.heartbeat_interval_ms + 2;
    if (delta > cap)
        delta = cap;
    if (n->n_alive > 1)
        n->bench += (delta << 16) / (n->n_alive - 1);
    m->counter = c;
    m->counter_at = now;
    m->counter_bench = bench32(n);
    if (m->flags & ZPF__M_STALLED) {
        m->flags &= (uint8_t)~ZPF__M_STALLED;
        queue_fact(n, slot, slot); /* the refutation spreads like the stall */
        notify(n, ZPF_EV_UNSTALL, slot);
    }
}

/* --- suspicion ------------------------------------------------------------ */

static void susp_drop(struct zpf_node *n, uint32_t slot)
{
    struct zpf__member *m = mem(n, slot);
    uint32_t i = m->susp;
    if (i == ZPF__NONE)
        return;
    m->susp = ZPF__NONE;
    n->susp[i] = n->susp[--n->nsusp];
    if (i < n->nsusp)
        mem(n, n->susp[i].slot)->susp = i;
}

static struct susp *susp_start(struct zpf_node *n, uint32_t slot,
                               uint32_t from, uint64_t counter)
{
    struct zpf__member *m = mem(n, slot);
    struct susp *s = zpf__grow(&n->alloc, n->susp, &n->susp_cap, n->nsusp + 1,
                               sizeof *s);
    if (s == NULL)
        return NULL;
    n->susp = s;
    s = &n->susp[n->nsusp];
    *s = (struct susp){.slot = slot, .start = now_ms(n), .nsaid = 1};
    s->said[0] = from;
    s->counter_start = m->counter > counter ? m->counter : counter;
    s->bench_start = n->bench;
    m->susp = n->nsusp++;
    return s;
}

/* Returns true if `from` is a new, independent confirmation. */
static bool susp_confirm(struct susp *s, uint32_t from)
{
    for (uint32_t i = 0; i < s->nsaid; i++)
        if (s->said[i] == from)
            return false;
    if (s->nsaid < CONFIRM_MAX)
        s->said[s->nsaid++] = from;
    s->nconf++;
    return true;
}

static uint64_t susp_lifeguard_deadline(const struct zpf_node *n,
                                        const struct susp *s)
{
    return s->start + zpf_suspicion_timeout(&n->cfg, n->n_alive, s->nconf);
}

/* Evidence of life (use 1): the counter moved well past its value when the
 * suspicion began. */
static bool susp_alive_evidence(const struct zpf_node *n, const struct susp *s)
{
    return s->newer ||
           n->t.m[s->slot].counter >= s->counter_start + LIFE_BEATS;
}

/* Evidence of death (use 2): since the suspicion began, QUIET_BEATS
 * heartbeats passed on this node's clock, the rest of the cluster advanced
 * about that much (bench: this node is not the one cut off or paused), and
 * the suspect's counter did not move at all.  One step is neither life nor
 * death (a late last value, or a slow live one): Lifeguard's timing then
 * decides. */
static bool susp_quiet(const struct zpf_node *n, const struct susp *s,
                       uint64_t now)
{
    uint64_t h = n->cfg.heartbeat_interval_ms;
    if (now - s->start < QUIET_BEATS * h)
        return false;
    if (n->bench - s->bench_start < ((uint64_t)QUIET_BEATS << 16) / 2)
        return false;
    return !s->newer && n->t.m[s->slot].counter <= s->counter_start;
}

static bool susp_fast_due(const struct zpf_node *n, const struct susp *s,
                          uint64_t now)
{
    /* First-hand only: a node that merely heard the rumour may have heard
     * it late, after the refutation's epidemic was over, and its silence
     * about the suspect is then no evidence at all. */
    if (!n->cfg.counter_fast_expiry || !s->probed || s->nconf < 1)
        return false;
    uint64_t fast = zpf_suspicion_timeout(&n->cfg, n->n_alive, UINT32_MAX) /
                    n->cfg.suspicion_mult;
    return now >= s->start + fast && susp_quiet(n, s, now);
}

/* --- facts ---------------------------------------------------------------- */

static void fact_msg(struct zpf_node *n, uint32_t slot, uint32_t from,
                     struct zpf__msg *msg)
{
    struct zpf__member *m = mem(n, slot);
    memset(msg, 0, sizeof *msg);
    msg->name = str_of(n, slot);
    msg->incarnation = m->incarnation;
    if (from == ZPF__NONE || !(mem(n, from)->flags & ZPF__M_USED))
        from = n->self;
    switch (m->state) {
    case ZPF_STATE_ALIVE:
        if (m->flags & ZPF__M_STALLED) {
            msg->type = ZPF__MSG_STALL;
            msg->counter = m->counter;
            break;
        }
        msg->type = ZPF__MSG_ALIVE;
        msg->addr = m->addr;
        msg->meta = (struct zpf__str){m->meta, m->meta_len};
        msg->counter = m->counter;
        break;
    case ZPF_STATE_SUSPECT:
        msg->type = ZPF__MSG_SUSPECT;
        msg->from = str_of(n, from);
        msg->counter = m->counter;
        break;
    case ZPF_STATE_DEAD:
        msg->type = ZPF__MSG_DEAD;
        msg->from = str_of(n, from);
        break;
    default: /* left: a dead fact said by the member itself */
        msg->type = ZPF__MSG_DEAD;
        msg->from = msg->name;
        break;
    }
}

/* Someone still spreads an older rumour about `slot` than we know (an
 * earlier incarnation, or a suspicion of a member we know is dead).  Facts
 * are retransmitted a bounded number of times, so an epidemic can end
 * before a straggler that learned the rumour late has heard the news:
 * queue what we know again, where the rumour still circulates. */
static void stale_rumour(struct zpf_node *n, uint32_t slot)
{
    struct zpf__member *m = mem(n, slot);
    if (m->bcast == ZPF__NONE)
        queue_fact(n, slot, m->state == ZPF_STATE_ALIVE ? slot : n->self);
}

static void refute(struct zpf_node *n, uint32_t inc)
{
    struct zpf__member *self = mem(n, n->self);
    if (inc < self->incarnation) {
        stale_rumour(n, n->self);
        return;
    }
    if (inc == UINT32_MAX)
        return; /* cannot go higher; only a hostile peer gets here */
    self->incarnation = inc + 1;
    n->stats.self_refutations++;
    awareness_add(n, 1);
    queue_fact(n, n->self, n->self);
}

static void member_meta(struct zpf_node *n, struct zpf__member *m,
                        struct zpf__str meta)
{
    if (meta.len == m->meta_len &&
        (meta.len == 0 || memcmp(meta.p, m->meta, meta.len) == 0))
        return;
    uint8_t *copy = NULL;
    if (meta.len) {
        copy = n->alloc.realloc(n->alloc.ctx, NULL, meta.len);
        if (copy == NULL)
            return; /* keep the old metadata rather than none */
        memcpy(copy, meta.p, meta.len);
    }
    if (m->meta)
        n->alloc.realloc(n->alloc.ctx, m->meta, 0);
    m->meta = copy;
    m->meta_len = (uint16_t)meta.len;
}

static void apply_alive(struct zpf_node *n, struct zpf__str name, uint32_t inc,
                        const struct zpf_addr *addr, struct zpf__str meta,
                        uint64_t counter)
{
    uint32_t slot = zpf__table_find(&n->t, name.p, name.len);
    if (slot == n->self) {
        struct zpf__member *self = mem(n, slot);
        if (!n->leaving && inc > self->incarnation)
            refute(n, inc); /* an older life of ours is still remembered */
        return;
    }
    if (slot == ZPF__NONE) {
        if (n->t.count >= n->cfg.max_members)
            return;
        slot = zpf__table_add(&n->t, &n->alloc, name.p, name.len);
        if (slot == ZPF__NONE)
            return;
        struct zpf__member *m = mem(n, slot);
        m->incarnation = inc;
        m->addr = *addr;
        m->state = ZPF_STATE_LEFT; /* uncounted, so set_state counts it */
        member_meta(n, m, meta);
        counter_reset(n, m, counter);
        set_state(n, slot, ZPF_STATE_ALIVE);
        (void)zpf__table_order_insert(&n->t, &n->alloc, slot, rnd(n));
        queue_fact(n, slot, slot);
        notify(n, ZPF_EV_JOIN, slot);
        return;
    }
    struct zpf__member *m = mem(n, slot);
    if (inc <= m->incarnation) {
        if (inc == m->incarnation)
            counter_seen(n, slot, inc, counter, false);
        return;
    }
    uint8_t prev = m->state;
    bool changed = memcmp(&m->addr, addr, sizeof *addr) != 0 ||
                   meta.len != m->meta_len ||
                   (meta.len && memcmp(meta.p, m->meta, meta.len) != 0);
    m->incarnation = inc;
    m->addr = *addr;
    member_meta(n, m, meta);
    counter_reset(n, m, counter);
    susp_drop(n, slot);
    set_state(n, slot, ZPF_STATE_ALIVE);
    queue_fact(n, slot, slot);
    if (prev == ZPF_STATE_SUSPECT) {
        n->stats.suspicions_refuted++;
        notify(n, ZPF_EV_ALIVE, slot);
    } else if (prev == ZPF_STATE_DEAD || prev == ZPF_STATE_LEFT) {
        (void)zpf__table_order_insert(&n->t, &n->alloc, slot, rnd(n));
        notify(n, ZPF_EV_JOIN, slot);
    }
    if (changed && prev == ZPF_STATE_ALIVE)
        notify(n, ZPF_EV_UPDATE, slot);
}

/* What every suspect or dead fact checks first.  About this node: refute
 * it.  Older than what we know: answer with what we know.  Returns true if
 * that settled it. */
static bool rumour_settled(struct zpf_node *n, uint32_t slot, uint32_t inc)
{
    if (slot == n->self) {
        if (!n->leaving)
            refute(n, inc);
        return true;
    }
    if (inc < mem(n, slot)->incarnation) {
        stale_rumour(n, slot);
        return true;
    }
    return false;
}

/* from: slot of whoever suspects (n->self for our own probes). */
static void apply_suspect(struct zpf_node *n, uint32_t slot, uint32_t inc,
                          uint32_t from, uint64_t counter)
{
    if (rumour_settled(n, slot, inc))
        return;
    struct zpf__member *m = mem(n, slot);
    if (m->state == ZPF_STATE_SUSPECT && inc == m->incarnation) {
        struct susp *s = &n->susp[m->susp];
        if (susp_confirm(s, from))
            queue_fact(n, slot, from); /* let others count it too */
        return;
    }
    bool wins = m->state == ZPF_STATE_ALIVE ? inc >= m->incarnation
                                            : inc > m->incarnation;
    if (!wins) {
        if (!is_live(m->state))
            stale_rumour(n, slot); /* it is dead; the sender has not heard */
        return;
    }
    if (m->state == ZPF_STATE_SUSPECT)
        susp_drop(n, slot);
    if (susp_start(n, slot, from, counter) == NULL)
        return; /* no memory: stay as we were rather than suspect forever */
    if (m->state != ZPF_STATE_ALIVE && m->state != ZPF_STATE_SUSPECT)
        (void)zpf__table_order_insert(&n->t, &n->alloc, slot, rnd(n));
    m->incarnation = inc;
    set_state(n, slot, ZPF_STATE_SUSPECT);
    queue_fact(n, slot, from);
    notify(n, ZPF_EV_SUSPECT, slot);
}

static void declare_dead(struct zpf_node *n, uint32_t slot, uint32_t from,
                         bool left)
{
    uint8_t state = left ? ZPF_STATE_LEFT : ZPF_STATE_DEAD;
    bool news = mem(n, slot)->state != state;
    susp_drop(n, slot);
    mem(n, slot)->flags &= (uint8_t)~ZPF__M_STALLED;
    set_state(n, slot, state);
    queue_fact(n, slot, from);
    /* A death is the news everyone waits for: gossip it on this tick. */
    n->gossip_at = now_ms(n);
    if (news) /* not again for the same death at a higher incarnation */
        notify(n, left ? ZPF_EV_LEAVE : ZPF_EV_FAIL, slot);
}

static void apply_dead(struct zpf_node *n, uint32_t slot, uint32_t inc,
                       uint32_t from, bool left)
{
    if (rumour_settled(n, slot, inc))
        return;
    struct zpf__member *m = mem(n, slot);
    bool wins = is_live(m->state) ? inc >= m->incarnation
                                  : inc > m->incarnation;
    if (!wins)
        return;
    /* Evidence of life: someone says it is dead, but its counter advanced
     * here recently.  Suspect it instead: it refutes if it can, and if it is
     * really gone the suspicion runs out with the counter standing still. */
    bool fresh = (m->flags & ZPF__M_COUNTER) &&
                 now_ms(n) - m->counter_at <
                     FRESH_BEATS * (uint64_t)n->cfg.heartbeat_interval_ms;
    if (m->susp != ZPF__NONE && n->susp[m->susp].newer)
        fresh = true;
    if (!left && is_live(m->state) && inc == m->incarnation && fresh) {
        apply_suspect(n, slot, inc, from, m->counter);
        return;
    }
    m->incarnation = inc;
    declare_dead(n, slot, from, left);
}

/* --- sending -------------------------------------------------------------- */

struct fill {
    struct zpf_node *n;
    struct zpf__writer *w;
};

static uint32_t *bcast_ref(void *ud, uint32_t slot)
{
    struct fill *f = ud;
    return &f->n->t.m[slot].bcast;
}

static int try_fact(void *ud, const struct zpf__bcast_entry *e)
{
    struct fill *f = ud;
    struct zpf__msg msg;
    fact_msg(f->n, e->slot, e->from, &msg);
    return zpf__wire_put_msg(f->w, &msg) == 0 ? 1 : 0;
}

static bool put_counter(struct zpf_node *n, struct zpf__writer *w,
                        uint32_t slot)
{
    struct zpf__member *m = mem(n, slot);
    struct zpf__msg msg = {.type = ZPF__MSG_COUNTER,
                           .name = str_of(n, slot),
                           .incarnation = m->incarnation,
                           .counter = m->counter};
    return zpf__wire_put_msg(w, &msg) == 0;
}

static void add_counters(struct zpf_node *n, struct zpf__writer *w)
{
    unsigned added = 0;
    for (uint32_t k = 0; k < n->nsusp && added < SUSPECT_COUNTERS; k++) {
        uint32_t i = (n->susp_cursor + k) % n->nsusp;
        struct zpf__member *m = mem(n, n->susp[i].slot);
        if (!(m->flags & ZPF__M_COUNTER))
            continue;
        if (!put_counter(n, w, n->susp[i].slot))
            return;
        added++;
    }
    if (n->nsusp)
        n->susp_cursor = (n->susp_cursor + 1) % n->nsusp;
    uint32_t used = n->t.used;
    for (uint32_t k = 0; k < used && added < COUNTERS_PER_PACKET; k++) {
        uint32_t slot = n->counter_cursor++ % used;
        struct zpf__member *m = mem(n, slot);
        if (slot == n->self || m->state != ZPF_STATE_ALIVE ||
            !(m->flags & ZPF__M_COUNTER))
            continue;
        if (!put_counter(n, w, slot))
            return;
        added++;
    }
}

static void put_header(struct zpf_node *n, struct zpf__writer *w)
{
    struct zpf__member *self = mem(n, n->self);
    struct zpf__hdr h = {
        .version = ZPF_PROTOCOL_VERSION,
        .cluster = {(const uint8_t *)n->cluster, n->cluster_len},
        .sender = {(const uint8_t *)n->name, n->name_len},
        .incarnation = self->incarnation,
        .counter = self->counter,
    };
    (void)zpf__wire_put_hdr(w, &h); /* always fits: budget >= 256 */
}

/* One datagram: the header, the given messages, then piggybacked facts and
 * counters up to the budget.  `buddy`: a member whose suspicion goes first
 * (the suspect is told first). */
static void send_packet_ch(struct zpf_node *n, const struct zpf_addr *to,
                           const struct zpf__msg *msgs, unsigned nmsgs,
                           uint32_t buddy, enum zpf_channel ch)
{
    struct zpf__writer w;
    zpf__wire_writer_init(&w, n->tx, n->cfg.packet_budget);
    put_header(n, &w);
    for (unsigned i = 0; i < nmsgs; i++)
        if (zpf__wire_put_msg(&w, &msgs[i]) < 0)
            return;
    if (buddy != ZPF__NONE && mem(n, buddy)->state == ZPF_STATE_SUSPECT) {
        struct zpf__msg m;
        uint32_t from = n->susp[mem(n, buddy)->susp].said[0];
        fact_msg(n, buddy, from, &m);
        (void)zpf__wire_put_msg(&w, &m);
    }
    struct fill f = {n, &w};
    zpf__bcast_fill(&n->q, bcast_ref, try_fact, &f,
                    zpf_retransmit_limit(&n->cfg, n->n_alive), FILL_MISSES);
    add_counters(n, &w);
    if (ch == ZPF_CH_STREAM) {
        n->stats.frames_out++;
    } else {
        n->stats.packets_out++;
        n->sent_at = now_ms(n);
    }
    n->stats.bytes_out += w.len;
    n->env.send(n->env.ctx, to, w.buf, w.len, ch);
}

static void send_packet(struct zpf_node *n, const struct zpf_addr *to,
                        const struct zpf__msg *msgs, unsigned nmsgs,
                        uint32_t buddy)
{
    send_packet_ch(n, to, msgs, nmsgs, buddy, ZPF_CH_PACKET);
}

static void send_one(struct zpf_node *n, const struct zpf_addr *to,
                     const struct zpf__msg *msg, uint32_t buddy)
{
    send_packet_ch(n, to, msg, 1, buddy, ZPF_CH_PACKET);
}

/* Full state on the stream channel. */
static int send_pushpull(struct zpf_node *n, const struct zpf_addr *to,
                         uint32_t flags)
{
    /* RECORD bound: array, type, name, incarnation, state, address, meta,
     * counter headers and bodies. */
    uint64_t need = ZPF__HDR_MAX + 8;
    for (uint32_t s = 0; s < n->t.used; s++) {
        const struct zpf__member *m = &n->t.m[s];
        if (m->flags & ZPF__M_USED)
            need += 48 + m->name_len + m->meta_len;
    }
    if (need > UINT32_MAX)
        return ZPF_E2BIG;
    /* Allocated per exchange, not kept: it is as large as the member table
     * and needed once every push-pull interval. */
    uint8_t *buf = n->alloc.realloc(n->alloc.ctx, NULL, (size_t)need);
    if (buf == NULL)
        return ZPF_ENOMEM;

    struct zpf__writer w;
    zpf__wire_writer_init(&w, buf, (size_t)need);
    put_header(n, &w);
    struct zpf__msg pp = {.type = ZPF__MSG_PUSHPULL, .flags = flags};
    int rc = zpf__wire_put_msg(&w, &pp);
    for (uint32_t s = 0; s < n->t.used && rc == 0; s++) {
        struct zpf__member *m = &n->t.m[s];
        if (!(m->flags & ZPF__M_USED))
            continue;
        struct zpf__msg r = {
            .type = ZPF__MSG_RECORD,
            .name = str_of(n, s),
            .incarnation = m->incarnation,
            .state = m->state,
            .addr = m->addr,
            .meta = {m->meta, m->meta_len},
            .counter = m->counter,
        };
        rc = zpf__wire_put_msg(&w, &r);
    }
    if (rc == 0) {
        n->stats.frames_out++;
        n->stats.push_pulls++;
        n->env.send(n->env.ctx, to, w.buf, w.len, ZPF_CH_STREAM);
    }
    n->alloc.realloc(n->alloc.ctx, buf, 0);
    return rc < 0 ? rc : 1;
}

/* Up to k distinct random live members other than self and `except`. */
static unsigned pick_random(struct zpf_node *n, uint32_t *out, unsigned k,
                            uint32_t except)
{
    unsigned got = 0;
    if (n->t.order_len == 0)
        return 0;
    for (unsigned tries = 0; tries < 4 * k + 4 && got < k; tries++) {
        uint32_t slot = n->t.order[rnd(n) % n->t.order_len];
        struct zpf__member *m = mem(n, slot);
        if (slot == n->self || slot == except || !(m->flags & ZPF__M_USED) ||
            !is_live(m->state))
            continue;
        bool dup = false;
        for (unsigned i = 0; i < got; i++)
            dup |= out[i] == slot;
        if (!dup)
            out[got++] = slot;
    }
    return got;
}

/* --- probing -------------------------------------------------------------- */

static bool probe_eligible(struct zpf_node *n, uint32_t slot)
{
    struct zpf__member *m = mem(n, slot);
    return slot != n->self && (m->flags & ZPF__M_USED) && is_live(m->state);
}

static uint32_t next_target(struct zpf_node *n)
{
    struct zpf__table *t = &n->t;
    for (uint32_t tries = 0; tries <= t->order_len; tries++) {
        if (t->order_pos >= t->order_len) {
            /* End of a round: drop those no longer probed, reshuffle. */
            uint32_t k = 0;
            for (uint32_t i = 0; i < t->order_len; i++) {
                if (probe_eligible(n, t->order[i]))
                    t->order[k++] = t->order[i];
                else
                    t->m[t->order[i]].flags &= (uint8_t)~ZPF__M_ORDER;
            }
            t->order_len = k;
            for (uint32_t i = k; i > 1; i--) {
                uint32_t j = (uint32_t)(rnd(n) % i);
                uint32_t tmp = t->order[i - 1];
                t->order[i - 1] = t->order[j];
                t->order[j] = tmp;
            }
            t->order_pos = 0;
            if (k == 0)
                return ZPF__NONE;
        }
        uint32_t slot = t->order[t->order_pos++];
        if (probe_eligible(n, slot))
            return slot;
    }
    return ZPF__NONE;
}

static void probe_finish(struct zpf_node *n)
{
    uint32_t slot = n->probe_slot;
    n->probe_slot = ZPF__NONE;
    if (n->probe_acked) {
        awareness_add(n, -1);
        return;
    }
    n->stats.probes_failed++;
    if (n->probe_expect > 0)
        awareness_add(n, (int)(n->probe_expect - n->probe_nacks));
    else
        awareness_add(n, 1);
    struct zpf__member *m = mem(n, slot);
    /* Suspect the incarnation we probed: if it refuted or came back since,
     * the failure belongs to its old life and the fact loses. */
    if (!(m->flags & ZPF__M_USED) || !is_live(m->state) ||
        m->incarnation != n->probe_inc)
        return;
    bool was_suspect = m->state == ZPF_STATE_SUSPECT;
    apply_suspect(n, slot, n->probe_inc, n->self, m->counter);
    if (m->state == ZPF_STATE_SUSPECT)
        n->susp[m->susp].probed = true;
    if (!was_suspect && m->state == ZPF_STATE_SUSPECT)
        n->stats.suspicions_raised++;
}

static void probe_start(struct zpf_node *n, uint64_t now)
{
    n->probe_at = now + scaled(n, n->cfg.probe_interval_ms);
    if (n->leaving)
        return;
    uint32_t slot = next_target(n);
    if (slot == ZPF__NONE)
        return;
    n->probe_slot = slot;
    n->probe_inc = mem(n, slot)->incarnation;
    n->probe_seq = ++n->seq;
    n->probe_acked = false;
    n->probe_indirect = false;
    n->probe_nacks = 0;
    n->probe_expect = 0;
    n->probe_timeout_at = now + scaled(n, n->cfg.probe_timeout_ms);
    n->stats.probes++;
    struct zpf__msg ping = {.type = ZPF__MSG_PING, .seq = n->probe_seq,
                            .name = str_of(n, slot)};
    send_one(n, &mem(n, slot)->addr, &ping, slot);
}

static void probe_indirect(struct zpf_node *n)
{
    uint32_t helpers[16];
    unsigned k = n->cfg.indirect_checks < 16 ? n->cfg.indirect_checks : 16;
    unsigned got = pick_random(n, helpers, k, n->probe_slot);
    struct zpf__member *target = mem(n, n->probe_slot);
    struct zpf__msg req = {.type = ZPF__MSG_PING_REQ, .seq = n->probe_seq,
                           .name = str_of(n, n->probe_slot),
                           .addr = target->addr};
    for (unsigned i = 0; i < got; i++)
        send_one(n, &mem(n, helpers[i])->addr, &req, ZPF__NONE);
    if (n->cfg.stream_probe) {
        /* Where datagrams are filtered but streams pass, the target answers
         * this one over the stream and the probe still succeeds. */
        struct zpf__msg ping = {.type = ZPF__MSG_PING, .seq = n->probe_seq,
                                .name = str_of(n, n->probe_slot)};
        send_packet_ch(n, &target->addr, &ping, 1, n->probe_slot,
                       ZPF_CH_STREAM);
    }
    n->probe_indirect = true;
    n->probe_expect = got;
    n->stats.indirect_probes += got;
}

/* --- receiving ------------------------------------------------------------ */

static uint32_t slot_of(struct zpf_node *n, struct zpf__str name)
{
    return zpf__table_find(&n->t, name.p, name.len);
}

static void count_drop(struct zpf_node *n, int err)
{
    n->stats.decode_errors++;
    n->stats.decode_error_by_cause[zpf__wire_cause(err)]++;
}

static void on_ping(struct zpf_node *n, const struct zpf_addr *from,
                    const struct zpf__msg *msg, enum zpf_channel ch)
{
    if (!zpf__str_eq(msg->name, n->name, n->name_len)) {
        count_drop(n, ZPF_ENOTME); /* a stale address: someone else's now */
        return;
    }
    struct zpf__msg ack = {.type = ZPF__MSG_ACK, .seq = msg->seq};
    send_packet_ch(n, from, &ack, 1, ZPF__NONE, ch); /* answer in kind */
}

static void on_ping_req(struct zpf_node *n, const struct zpf_addr *from,
                        const struct zpf__msg *msg, uint64_t now)
{
    if (zpf__str_eq(msg->name, n->name, n->name_len)) {
        /* Asked to probe ourselves: the requester's ping to us was lost, but
         * its request arrived, so answer its probe directly. */
        struct zpf__msg ack = {.type = ZPF__MSG_ACK, .seq = msg->seq};
        send_one(n, from, &ack, ZPF__NONE);
        return;
    }
    if (n->nrelays == RELAYS_MAX)
        return; /* the requester counts a missing nack: fair, we are busy */
    struct relay *r = &n->relays[n->nrelays++];
    r->my_seq = ++n->seq;
    r->their_seq = msg->seq;
    r->requester = *from;
    r->deadline = now + scaled(n, n->cfg.probe_timeout_ms) * 4 / 5;
    struct zpf__msg ping = {.type = ZPF__MSG_PING, .seq = r->my_seq,
                            .name = msg->name};
    send_one(n, &msg->addr, &ping, ZPF__NONE);
}

static void on_ack(struct zpf_node *n, uint32_t seq)
{
    if (n->probe_slot != ZPF__NONE && seq == n->probe_seq) {
        n->probe_acked = true;
        return;
    }
    for (uint32_t i = 0; i < n->nrelays; i++) {
        if (n->relays[i].my_seq == seq) {
            struct zpf__msg ack = {.type = ZPF__MSG_ACK,
                                   .seq = n->relays[i].their_seq};
            struct zpf_addr to = n->relays[i].requester;
            n->relays[i] = n->relays[--n->nrelays];
            send_one(n, &to, &ack, ZPF__NONE);
            return;
        }
    }
}

static void on_fact(struct zpf_node *n, const struct zpf__msg *msg)
{
    uint32_t slot;
    switch (msg->type) {
    case ZPF__MSG_ALIVE:
        apply_alive(n, msg->name, msg->incarnation, &msg->addr, msg->meta,
                    msg->counter);
        break;
    case ZPF__MSG_SUSPECT:
    case ZPF__MSG_DEAD:
        slot = slot_of(n, msg->name);
        if (slot == ZPF__NONE)
            return; /* cannot track a member we have no address for */
        uint32_t from = slot_of(n, msg->from);
        if (from == ZPF__NONE)
            from = n->self;
        if (msg->type == ZPF__MSG_SUSPECT) {
            counter_seen(n, slot, msg->incarnation, msg->counter, false);
            apply_suspect(n, slot, msg->incarnation, from, msg->counter);
        } else {
            bool left = zpf__str_eq(msg->from, zpf__table_name(&n->t, slot),
                                    mem(n, slot)->name_len);
            apply_dead(n, slot, msg->incarnation, from, left);
        }
        break;
    case ZPF__MSG_COUNTER:
        slot = slot_of(n, msg->name);
        if (slot == ZPF__NONE)
            return;
        /* Counters are sent only for members the sender holds alive: if
         * we know this one dead, the sender missed the news. */
        if (!is_live(mem(n, slot)->state) &&
            msg->incarnation <= mem(n, slot)->incarnation)
            stale_rumour(n, slot);
        else
            counter_seen(n, slot, msg->incarnation, msg->counter, false);
        break;
    case ZPF__MSG_STALL:
        slot = slot_of(n, msg->name);
        if (slot == ZPF__NONE || slot == n->self)
            return;
        counter_seen(n, slot, msg->incarnation, msg->counter, false);
        struct zpf__member *m = mem(n, slot);
        /* Someone saw it stand still first-hand; believe it unless we know
         * a later value, which refutes it. */
        if (m->incarnation == msg->incarnation &&
            m->state == ZPF_STATE_ALIVE && m->counter == msg->counter &&
            !(m->flags & ZPF__M_STALLED))
            stall_mark(n, slot);
        break;
    default:
        break;
    }
}

static void on_pushpull(struct zpf_node *n, const struct zpf_addr *from,
                        struct zpf__reader *r, const struct zpf__msg *first)
{
    uint32_t inc_before = mem(n, n->self)->incarnation;
    struct zpf__msg msg;
    while (zpf__wire_next(r, &msg) == 1) {
        if (msg.type != ZPF__MSG_RECORD)
            continue;
        uint32_t slot;
        switch (msg.state) {
        case ZPF_STATE_ALIVE:
            apply_alive(n, msg.name, msg.incarnation, &msg.addr, msg.meta,
                        msg.counter);
            break;
        case ZPF_STATE_LEFT:
            slot = slot_of(n, msg.name);
            if (slot != ZPF__NONE)
                apply_dead(n, slot, msg.incarnation, slot, true);
            break;
        default:
            /* A remote "dead" is only a suspicion here, as in memberlist:
             * the member gets its chance to refute. */
            slot = slot_of(n, msg.name);
            if (slot != ZPF__NONE) {
                counter_seen(n, slot, msg.incarnation, msg.counter, false);
                apply_suspect(n, slot, msg.incarnation, n->self, msg.counter);
            }
            break;
        }
    }
    bool refuted = mem(n, n->self)->incarnation != inc_before;
    if (!(first->flags & ZPF__PP_REPLY))
        (void)send_pushpull(n, from, ZPF__PP_REPLY);
    else if (refuted)
        (void)send_pushpull(n, from, 0);
}

/* Full state travels only on the stream channel: a datagram carrying it is
 * dropped whole, before any of its messages is applied. */
static int packet_types_ok(const struct zpf__reader *r)
{
    struct zpf__reader scan = *r;
    struct zpf__msg msg;
    while (zpf__wire_next(&scan, &msg) == 1)
        if (msg.type == ZPF__MSG_PUSHPULL || msg.type == ZPF__MSG_RECORD)
            return ZPF_ETYPE;
    return 0;
}

/* --- pauses --------------------------------------------------------------- */

static void check_pause(struct zpf_node *n, uint64_t now)
{
    uint64_t late_after = n->promised + n->cfg.probe_interval_ms;
    if (n->promised == 0 || now <= late_after)
        return;
    /* Shift past the waking moment by a probe timeout, so that no timer
     * fires on the tick that noticed the pause: the packets that piled up
     * meanwhile (acks, refutations) are read first, and peers get one
     * round trip to answer what we send on waking. */
    uint64_t by = now - n->promised + n->cfg.probe_timeout_ms;
    n->stats.pauses++;
    n->probe_at += by;
    n->probe_timeout_at += by;
    n->gossip_at += by;
    n->pp_at += by;
    n->hb_at += by;
    for (uint32_t i = 0; i < n->nsusp; i++)
        n->susp[i].start += by;
    for (uint32_t i = 0; i < n->nrelays; i++)
        n->relays[i].deadline += by;
    n->promised = 0;
}

/* --- public API ----------------------------------------------------------- */

int zpf_node_receive(struct zpf_node *n, const struct zpf_addr *from,
                     const uint8_t *buf, size_t len, enum zpf_channel ch)
{
    uint64_t now = now_ms(n);
    check_pause(n, now);
    if (ch == ZPF_CH_STREAM) {
        n->stats.frames_in++;
    } else {
        n->stats.packets_in++;
    }
    n->stats.bytes_in += len;

    int rc = zpf__wire_validate(buf, len);
    struct zpf__reader r;
    struct zpf__hdr h;
    struct zpf__msg msg;
    if (rc == 0)
        rc = zpf__wire_read_hdr(&r, buf, len, &h);
    if (rc == 0 && !zpf__str_eq(h.cluster, n->cluster, n->cluster_len)) {
        n->stats.foreign_cluster++;
        rc = ZPF_ECLUSTER;
    }
    if (rc == 0 && zpf__str_eq(h.sender, n->name, n->name_len))
        rc = ZPF_ESELF;
    /* A stream frame carries a push-pull, or a probe that fell back to the
     * stream; a datagram never carries a push-pull. */
    bool pushpull = false;
    if (rc == 0 && ch == ZPF_CH_STREAM) {
        struct zpf__reader peek = r;
        pushpull = zpf__wire_next(&peek, &msg) == 1 &&
                   msg.type == ZPF__MSG_PUSHPULL;
    }
    if (rc == 0 && !pushpull)
        rc = packet_types_ok(&r);
    if (rc < 0) {
        if (rc != ZPF_ECLUSTER)
            count_drop(n, rc);
        n->promised = zpf_node_next_deadline(n);
        return rc;
    }

    uint32_t sender = slot_of(n, h.sender);
    if (sender != ZPF__NONE)
        counter_seen(n, sender, h.incarnation, h.counter, true);

    if (pushpull) {
        (void)zpf__wire_next(&r, &msg);
        on_pushpull(n, from, &r, &msg);
    } else {
        while (zpf__wire_next(&r, &msg) == 1) {
            switch (msg.type) {
            case ZPF__MSG_PING: on_ping(n, from, &msg, ch); break;
            case ZPF__MSG_ACK: on_ack(n, msg.seq); break;
            case ZPF__MSG_NACK:
                if (n->probe_slot != ZPF__NONE && msg.seq == n->probe_seq) {
                    n->probe_nacks++;
                    n->stats.nacks_received++;
                }
                break;
            case ZPF__MSG_PING_REQ: on_ping_req(n, from, &msg, now); break;
            default: on_fact(n, &msg); break;
            }
        }
    }
    if (rc < 0)
        count_drop(n, rc);
    n->promised = zpf_node_next_deadline(n);
    return rc;
}

static void susp_restart(struct zpf_node *n, struct susp *s, uint64_t now)
{
    s->start = now;
    s->counter_start = n->t.m[s->slot].counter;
    s->bench_start = n->bench;
    s->nconf = 0;
    s->nsaid = 0; /* earlier confirmations predate the evidence of life */
    s->newer = false;
    s->probed = false;
    n->stats.deaths_deferred++;
}

static void tick_suspicions(struct zpf_node *n, uint64_t now)
{
    for (uint32_t i = 0; i < n->nsusp;) {
        struct susp *s = &n->susp[i];
        uint32_t slot = s->slot;
        /* Our own independent verdict: the counter stood still here too.
         * Said once per suspicion, so others can count it. */
        if (susp_quiet(n, s, now) && susp_confirm(s, n->self))
            queue_fact(n, slot, n->self);
        if (now < susp_lifeguard_deadline(n, s) && !susp_fast_due(n, s, now)) {
            i++;
            continue;
        }
        if (susp_alive_evidence(n, s)) {
            susp_restart(n, s, now);
            i++;
            continue;
        }
        n->stats.deaths_declared++;
        declare_dead(n, slot, n->self, false); /* removes susp[i] */
    }
}

static void tick_reap(struct zpf_node *n, uint64_t now)
{
    uint32_t used = n->t.used;
    uint32_t todo = used < REAP_PER_BEAT ? used : REAP_PER_BEAT;
    for (uint32_t k = 0; k < todo && n->t.used; k++) {
        uint32_t slot = n->reap_cursor++ % n->t.used;
        struct zpf__member *m = mem(n, slot);
        if (!(m->flags & ZPF__M_USED) || slot == n->self ||
            slot == n->probe_slot)
            continue;
        if (!is_live(m->state) &&
                   now - state_time(n, m) >= n->cfg.tombstone_ms) {
            notify(n, ZPF_EV_REAP, slot);
            zpf__bcast_drop(&n->q, &m->bcast);
            if (m->state == ZPF_STATE_DEAD)
                n->n_dead--;
            zpf__table_remove(&n->t, &n->alloc, slot);
        }
    }
}

static uint64_t push_pull_period(const struct zpf_node *n)
{
    /* memberlist's pushPullScale: beyond 32 members, one more interval per
     * doubling, so the full-state traffic a node sees stays about flat. */
    uint64_t p = n->cfg.push_pull_interval_ms;
    if (n->n_alive > 32)
        p *= (uint64_t)ceil(log2((double)n->n_alive) - log2(32.0)) + 1;
    return p;
}

static void tick_push_pull(struct zpf_node *n, uint64_t now)
{
    n->pp_at = now + push_pull_period(n);
    uint32_t peer;
    if (pick_random(n, &peer, 1, ZPF__NONE) == 1)
        (void)send_pushpull(n, &mem(n, peer)->addr, 0);
    /* Reconnect: one random dead member, so healed partitions merge. */
    if (n->n_dead > 0) {
        for (unsigned tries = 0; tries < 16; tries++) {
            uint32_t slot = (uint32_t)(rnd(n) % n->t.used);
            struct zpf__member *m = mem(n, slot);
            if ((m->flags & ZPF__M_USED) && m->state == ZPF_STATE_DEAD) {
                (void)send_pushpull(n, &m->addr, 0);
                break;
            }
        }
    }
}

void zpf_node_tick(struct zpf_node *n)
{
    uint64_t now = now_ms(n);
    check_pause(n, now);

    for (uint32_t i = 0; i < n->nrelays;) {
        if (now >= n->relays[i].deadline) {
            struct zpf__msg nack = {.type = ZPF__MSG_NACK,
                                    .seq = n->relays[i].their_seq};
            struct zpf_addr to = n->relays[i].requester;
            n->relays[i] = n->relays[--n->nrelays];
            n->stats.nacks_sent++;
            send_one(n, &to, &nack, ZPF__NONE);
        } else {
            i++;
        }
    }
    if (now >= n->hb_at) {
        n->hb_at = now + n->cfg.heartbeat_interval_ms;
        if (n->healthy && !n->leaving) {
            mem(n, n->self)->counter++;
            mem(n, n->self)->counter_at = now; /* operators read its age */
        }
        tick_reap(n, now);
    }
    if (n->probe_slot != ZPF__NONE && !n->probe_acked && !n->probe_indirect &&
        now >= n->probe_timeout_at)
        probe_indirect(n);
    if (now >= n->probe_at) {
        if (n->probe_slot != ZPF__NONE)
            probe_finish(n);
        probe_start(n, now);
    }
    tick_suspicions(n, now);
    if (now >= n->gossip_at) {
        n->gossip_at = now + n->cfg.gossip_interval_ms;
        if (n->q.count > 0) {
            uint32_t peers[16];
            unsigned k = n->cfg.gossip_nodes < 16 ? n->cfg.gossip_nodes : 16;
            unsigned got = pick_random(n, peers, k, ZPF__NONE);
            for (unsigned i = 0; i < got && n->q.count > 0; i++)
                send_packet(n, &mem(n, peers[i])->addr, NULL, 0, ZPF__NONE);
        } else if (now - n->sent_at >= (n->awareness ? n->cfg.gossip_interval_ms
                                                     : n->cfg.probe_interval_ms)) {
            /* Beacon: a node whose probes are stretched by poor local health
             * (or that cannot hear anyone) still shows its counter, which is
             * what keeps a node with a one-way fault from being condemned.
             * While its own probes fail it may be the one nobody hears, so
             * it shows it every gossip interval: a few small packets a
             * second, only while in trouble. */
            uint32_t peer;
            if (pick_random(n, &peer, 1, ZPF__NONE) == 1)
                send_packet(n, &mem(n, peer)->addr, NULL, 0, ZPF__NONE);
        }
    }
    if (n->cfg.push_pull_interval_ms && now >= n->pp_at)
        tick_push_pull(n, now);
    n->promised = zpf_node_next_deadline(n);
}

static void min_at(uint64_t *d, uint64_t t)
{
    if (t < *d)
        *d = t;
}

uint64_t zpf_node_next_deadline(const struct zpf_node *n)
{
    uint64_t d = n->probe_at;
    min_at(&d, n->gossip_at);
    min_at(&d, n->hb_at);
    if (n->cfg.push_pull_interval_ms)
        min_at(&d, n->pp_at);
    if (n->probe_slot != ZPF__NONE && !n->probe_acked && !n->probe_indirect)
        min_at(&d, n->probe_timeout_at);
    for (uint32_t i = 0; i < n->nrelays; i++)
        min_at(&d, n->relays[i].deadline);
    /* The fast expiry is checked on every tick (gossip ticks come every
     * gossip_interval), so only the Lifeguard deadline is needed here. */
    for (uint32_t i = 0; i < n->nsusp; i++)
        min_at(&d, susp_lifeguard_deadline(n, &n->susp[i]));
    return d;
}

static bool addr_valid(const struct zpf_addr *a)
{
    return a->family == ZPF_AF_INET || a->family == ZPF_AF_INET6;
}

static bool config_valid(const struct zpf_config *c)
{
    size_t nl = c->name ? strlen(c->name) : 0;
    size_t cl = c->cluster ? strlen(c->cluster) : 0;
    return nl >= 1 && nl <= ZPF_NAME_MAX && cl >= 1 && cl <= ZPF_CLUSTER_MAX &&
           addr_valid(&c->addr) && c->meta_len <= ZPF_META_MAX &&
           (c->meta_len == 0 || c->meta != NULL) &&
           c->probe_interval_ms > 0 &&
           c->probe_timeout_ms > 0 &&
           c->probe_timeout_ms < c->probe_interval_ms &&
           c->suspicion_mult >= 1 && c->suspicion_max_mult >= 1 &&
           c->gossip_interval_ms > 0 && c->gossip_nodes >= 1 &&
           c->retransmit_mult >= 1 && c->packet_budget >= 256 &&
           c->packet_budget <= 65507 && c->awareness_max >= 1 &&
           c->awareness_max <= 64 && c->heartbeat_interval_ms > 0 &&
           c->counter_timeout_ms > 0 && c->max_members >= 1 &&
           c->indirect_checks <= 16 && c->incarnation < UINT32_MAX - 1;
}

int zpf_node_new(const struct zpf_config *cfg, const struct zpf_env *env,
                 struct zpf_node **out)
{
    if (cfg == NULL || env == NULL || out == NULL || env->now_ms == NULL ||
        env->rand64 == NULL || env->send == NULL || env->realloc == NULL ||
        !config_valid(cfg))
        return ZPF_EINVAL;
    struct zpf_node *n = env->realloc(env->ctx, NULL, sizeof *n);
    if (n == NULL)
        return ZPF_ENOMEM;
    memset(n, 0, sizeof *n);
    n->env = *env;
    n->alloc = (struct zpf__alloc){env->realloc, env->ctx};
    n->cfg = *cfg;
    n->cfg.name = n->name;
    n->cfg.cluster = n->cluster;
    n->cfg.meta = NULL;
    n->name_len = (uint32_t)strlen(cfg->name);
    n->cluster_len = (uint32_t)strlen(cfg->cluster);
    memcpy(n->name, cfg->name, n->name_len);
    memcpy(n->cluster, cfg->cluster, n->cluster_len);
    n->probe_slot = ZPF__NONE;
    n->healthy = true;
    zpf__bcast_init(&n->q);

    uint8_t key[16];
    uint64_t k0 = rnd(n), k1 = rnd(n);
    memcpy(key, &k0, 8);
    memcpy(key + 8, &k1, 8);
    zpf__table_init(&n->t, &n->alloc, key);
    n->tx = env->realloc(env->ctx, NULL, cfg->packet_budget);
    if (n->tx == NULL)
        goto nomem;
    n->self = zpf__table_add(&n->t, &n->alloc, (const uint8_t *)n->name,
                             n->name_len);
    if (n->self == ZPF__NONE)
        goto nomem;
    struct zpf__member *self = mem(n, n->self);
    self->addr = cfg->addr;
    self->incarnation = cfg->incarnation + 1;
    self->state = ZPF_STATE_ALIVE;
    self->flags |= ZPF__M_COUNTER;
    if (cfg->meta_len) {
        member_meta(n, self, (struct zpf__str){cfg->meta,
                                               (uint32_t)cfg->meta_len});
        if (self->meta == NULL)
            goto nomem;
    }
    n->n_alive = 1;
    n->stats.members_alive = 1;

    uint64_t now = now_ms(n);
    n->epoch = now;
    self->counter_at = now;
    /* Stagger the timers so that nodes started together do not probe and
     * gossip in lockstep. */
    n->probe_at = now + rnd(n) % cfg->probe_interval_ms;
    n->gossip_at = now + rnd(n) % cfg->gossip_interval_ms;
    n->hb_at = now + cfg->heartbeat_interval_ms;
    if (cfg->push_pull_interval_ms)
        n->pp_at = now + cfg->push_pull_interval_ms / 2 +
                   rnd(n) % cfg->push_pull_interval_ms;
    queue_fact(n, n->self, n->self);
    n->promised = zpf_node_next_deadline(n);
    *out = n;
    return 0;

nomem:
    zpf_node_free(n);
    return ZPF_ENOMEM;
}

void zpf_node_free(struct zpf_node *n)
{
    if (n == NULL)
        return;
    const struct zpf__alloc a = n->alloc;
    zpf__table_free(&n->t, &a);
    zpf__bcast_free(&n->q, &a);
    a.realloc(a.ctx, n->susp, 0);
    a.realloc(a.ctx, n->tx, 0);
    a.realloc(a.ctx, n, 0);
}

int zpf_node_join(struct zpf_node *n, const struct zpf_addr *seeds, size_t ns)
{
    int sent = 0;
    for (size_t i = 0; i < ns; i++) {
        if (!addr_valid(&seeds[i]))
            return ZPF_EINVAL;
        int rc = send_pushpull(n, &seeds[i], ZPF__PP_JOIN);
        if (rc < 0)
            return rc;
        sent++;
    }
    /* Facts that were spreading while we joined may have used up their
     * retransmissions before anyone knew us, and the seed's state can
     * predate them: sync once more, soon, with whoever we know by then. */
    if (n->cfg.push_pull_interval_ms && sent > 0) {
        uint64_t soon = now_ms(n) + 2 * (uint64_t)n->cfg.probe_interval_ms;
        if (soon < n->pp_at)
            n->pp_at = soon;
    }
    n->promised = zpf_node_next_deadline(n);
    return sent;
}

int zpf_node_leave(struct zpf_node *n)
{
    if (n->leaving)
        return 0;
    n->leaving = true;
    set_state(n, n->self, ZPF_STATE_LEFT);
    queue_fact(n, n->self, n->self);
    n->gossip_at = now_ms(n); /* spread it now, not at the next interval */
    n->promised = zpf_node_next_deadline(n);
    return 0;
}

void zpf_node_set_health(struct zpf_node *n, bool healthy)
{
    n->healthy = healthy;
}

int zpf_node_set_meta(struct zpf_node *n, const uint8_t *meta, size_t len)
{
    if (len > ZPF_META_MAX || (len && meta == NULL))
        return ZPF_E2BIG;
    struct zpf__member *self = mem(n, n->self);
    member_meta(n, self, (struct zpf__str){meta, (uint32_t)len});
    if (self->meta_len != len)
        return ZPF_ENOMEM;
    /* A new incarnation, so the new metadata overrides the old everywhere. */
    if (self->incarnation < UINT32_MAX)
        self->incarnation++;
    queue_fact(n, n->self, n->self);
    return 0;
}

size_t zpf_node_member_count(const struct zpf_node *n)
{
    return n->t.used;
}

int zpf_node_member_get(const struct zpf_node *n, size_t i,
                        struct zpf_member_info *out)
{
    if (i >= n->t.used || !(n->t.m[i].flags & ZPF__M_USED))
        return ZPF_ENOENT;
    info_fill(n, (uint32_t)i, out, n->env.now_ms(n->env.ctx));
    return 0;
}

int zpf_node_member_find(const struct zpf_node *n, const char *name,
                         struct zpf_member_info *out)
{
    uint32_t slot = zpf__table_find(&n->t, (const uint8_t *)name,
                                    strlen(name));
    if (slot == ZPF__NONE)
        return ZPF_ENOENT;
    info_fill(n, slot, out, n->env.now_ms(n->env.ctx));
    return 0;
}

const struct zpf_stats *zpf_node_stats(const struct zpf_node *n)
{
    return &n->stats;
}

uint32_t zpf_node_incarnation(const struct zpf_node *n)
{
    return n->t.m[n->self].incarnation;
}

uint64_t zpf_node_counter(const struct zpf_node *n)
{
    return n->t.m[n->self].counter;
}

const char *zpf_node_name(const struct zpf_node *n)
{
    return n->name;
}

size_t zpf_node_memory(const struct zpf_node *n)
{
    const struct zpf__table *t = &n->t;
    size_t b = sizeof *n + n->cfg.packet_budget;
    b += (size_t)t->cap * sizeof *t->m + (size_t)t->index_cap * sizeof(uint32_t);
    b += t->names_cap + (size_t)t->order_cap * sizeof(uint32_t);
    b += (size_t)n->q.cap * sizeof *n->q.e + (size_t)n->susp_cap * sizeof *n->susp;
    for (uint32_t s = 0; s < t->used; s++)
        b += t->m[s].meta_len;
    return b;
}
