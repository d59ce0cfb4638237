/*
 * Failure-detection scenarios on the deterministic simulator.
 *
 * Each test runs a small cluster through one fault and checks what SWIM +
 * Lifeguard + heartbeat counters promise about it.  Timings are the
 * memberlist LAN defaults from zpf_config_default() (probe 1 s, timeout
 * 500 ms, suspicion_mult 4), so the bounds below are derived from
 * zpf_suspicion_timeout() rather than written down.
 *
 * Every test prints "seed=<S> trace=<hash>"; a failing one adds
 * "ZPF_SEED=<S> replays this".  ZPF_SEED in the environment overrides every
 * test's default seed; ZPF_TRACE=1 prints every event.  An argument selects
 * tests by cmocka pattern: test_sim_scenarios '*stall*'.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

#define NEVER UINT64_MAX
#define NTYPES (ZPF_EV_REAP + 1)
#define NONE SIZE_MAX

/* Time to let a freshly converged cluster settle before the fault, so that
 * the counters have a history and the join's broadcasts have drained. */
#define SETTLE_MS 10000u

struct scen {
    const char *name;
    uint64_t seed;
    struct sim *s;
    struct sim_config cfg;
    size_t n;

    uint64_t fp; /* FAIL about a running, unpaused member */
    char fp_text[160];
    uint64_t fails;

    size_t target; /* member watched closely, or NONE */
    uint64_t *last[NTYPES]; /* per observer: last event of a type about it */
    uint64_t target_fails;
    uint32_t target_fail_inc; /* highest incarnation it was declared dead at */

    bool trace; /* ZPF_TRACE set: print every event (for replaying a seed) */

    size_t watch_obs; /* observer whose FAILs are counted from watch_from */
    uint64_t watch_from, watch_fails;
    char watch_text[160];

    double wall0; /* the report shows each scenario's wall time */
};

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t pick_seed(uint64_t def)
{
    const char *e = getenv("ZPF_SEED");
    if (e && *e) {
        char *end;
        unsigned long long v = strtoull(e, &end, 0);
        if (!*end)
            return v;
    }
    return def;
}

static void scen_report(struct scen *sc)
{
    printf("[ %-9s ] seed=%" PRIu64 " trace=%016" PRIx64 " (sim %.0f s, "
           "wall %.2f s)\n", sc->name, sc->seed,
           sc->s ? sim_trace_hash(sc->s) : 0,
           sc->s ? (double)sim_now(sc->s) / 1000 : 0.0,
           wall_now() - sc->wall0);
    fflush(stdout);
}

static void scen_release(struct scen *sc)
{
    sim_free(sc->s);
    sc->s = NULL;
    for (int k = 0; k < NTYPES; k++) {
        free(sc->last[k]);
        sc->last[k] = NULL;
    }
}

static void scen_fail(struct scen *sc, const char *file, int line,
                      const char *cond, const char *fmt, ...)
{
    va_list ap;
    printf("%s:%d: %s: check failed: %s\n  ", file, line, sc->name, cond);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n  at t=%" PRIu64 " ms\n", sc->s ? sim_now(sc->s) : 0);
    if (sc->s && sim_violations(sc->s))
        printf("  first violation: %s\n", sim_violation_text(sc->s));
    if (sc->fp)
        printf("  first false positive: %s\n", sc->fp_text);
    scen_report(sc);
    printf("ZPF_SEED=%" PRIu64 " replays this\n", sc->seed);
    fflush(stdout);
    scen_release(sc);
    fail();
}

#define CHECK(sc, cond, ...)                                                   \
    do {                                                                       \
        if (!(cond))                                                           \
            scen_fail((sc), __FILE__, __LINE__, #cond, __VA_ARGS__);           \
    } while (0)

static void on_event(struct sim *s, size_t obs, const struct zpf_event *ev,
                     uint64_t t, void *ud)
{
    struct scen *sc = ud;
    size_t m = sim_member_index(s, &ev->member);
    if (sc->trace)
        printf("  t=%" PRIu64 " n%zu: %s %s inc=%" PRIu32 " state=%s\n", t,
               obs, zpf_event_name(ev->type), ev->member.name,
               ev->member.incarnation, zpf_state_name(ev->member.state));
    if (ev->type == ZPF_EV_FAIL) {
        sc->fails++;
        if (m != NONE && sim_running(s, m) && !sim_paused(s, m) &&
            sc->fp++ == 0)
            snprintf(sc->fp_text, sizeof(sc->fp_text),
                     "t=%" PRIu64 " n%zu declared %s dead (incarnation %"
                     PRIu32 ")", t, obs, ev->member.name,
                     ev->member.incarnation);
        if (obs == sc->watch_obs && t >= sc->watch_from &&
            sc->watch_fails++ == 0)
            snprintf(sc->watch_text, sizeof(sc->watch_text),
                     "t=%" PRIu64 " n%zu declared %s dead", t, obs,
                     ev->member.name);
    }
    if (m == NONE || m != sc->target)
        return;
    sc->last[ev->type][obs] = t;
    if (ev->type == ZPF_EV_FAIL) {
        sc->target_fails++;
        if (ev->member.incarnation > sc->target_fail_inc)
            sc->target_fail_inc = ev->member.incarnation;
    }
}

/* Fill sc->cfg with the defaults and n nodes; the caller may adjust it
 * before scen_start(). */
static void scen_init(struct scen *sc, const char *name, size_t n,
                      uint64_t default_seed)
{
    memset(sc, 0, sizeof(*sc));
    sc->name = name;
    sc->seed = pick_seed(default_seed);
    sc->n = n;
    sc->target = NONE;
    sc->watch_obs = NONE;
    sc->trace = getenv("ZPF_TRACE") != NULL;
    sc->wall0 = wall_now();
    sim_config_default(&sc->cfg);
    sc->cfg.nodes = n;
}

static void scen_start(struct scen *sc)
{
    sc->cfg.seed = sc->seed;
    sc->s = sim_new(&sc->cfg);
    assert_non_null(sc->s);
    sim_on_event(sc->s, on_event, sc);
    for (int k = 0; k < NTYPES; k++) {
        sc->last[k] = malloc(sc->n * sizeof(uint64_t));
        assert_non_null(sc->last[k]);
        for (size_t i = 0; i < sc->n; i++)
            sc->last[k][i] = NEVER;
    }
}

/* Start every node over window_ms and wait for one view, at most bound_ms
 * after the last start.  Returns the time it took from the last start. */
static uint64_t scen_boot(struct scen *sc, uint64_t window_ms,
                          uint64_t bound_ms)
{
    sim_start_cluster(sc->s, sc->n, window_ms);
    uint64_t t0 = sim_now(sc->s), at = 0;
    bool ok = sim_run_until_converged(sc->s, t0 + bound_ms, &at);
    CHECK(sc, ok, "%zu nodes did not converge within %" PRIu64
                  " ms of the last start", sc->n, bound_ms);
    return at - t0;
}

static void scen_end(struct scen *sc)
{
    CHECK(sc, sim_violations(sc->s) == 0, "%" PRIu64 " invariant violations",
          sim_violations(sc->s));
    scen_report(sc);
    scen_release(sc);
}

static size_t count_missing(struct scen *sc, enum zpf_event_type type,
                            uint64_t since)
{
    size_t missing = 0;
    for (size_t o = 0; o < sc->n; o++)
        if (o != sc->target && sim_running(sc->s, o) &&
            (sc->last[type][o] == NEVER || sc->last[type][o] < since))
            missing++;
    return missing;
}

/* Run until every running observer other than the target has had an event
 * of this type about the target at or after `since`, or until `bound`.
 * Returns the time of the last of those events, or NEVER. */
static uint64_t run_until_all(struct scen *sc, enum zpf_event_type type,
                              uint64_t since, uint64_t bound)
{
    while (count_missing(sc, type, since) > 0) {
        if (sim_now(sc->s) >= bound)
            return NEVER;
        uint64_t next = sim_now(sc->s) + 100;
        sim_run_until(sc->s, next < bound ? next : bound);
    }
    uint64_t last = since;
    for (size_t o = 0; o < sc->n; o++)
        if (o != sc->target && sim_running(sc->s, o) &&
            sc->last[type][o] > last)
            last = sc->last[type][o];
    return last;
}

static uint64_t susp_max_ms(const struct scen *sc)
{
    return zpf_suspicion_timeout(&sc->cfg.node, sc->n, 0);
}

/* A member other than n0 (the join seed of last resort), from the seed. */
static size_t pick_target(const struct scen *sc)
{
    uint64_t x = sc->seed * 0x9e3779b97f4a7c15ull;
    return 1 + (size_t)((x >> 32) % (sc->n - 1));
}

/* --- a. determinism -------------------------------------------------------- */

/* One run of the determinism scenario; returns its trace hash.  With keep,
 * the simulator is handed back instead of freed. */
static uint64_t det_run(uint64_t seed, uint64_t *violations,
                        struct sim **keep)
{
    struct sim_config c;
    sim_config_default(&c);
    c.seed = seed;
    c.nodes = 50;
    c.loss = 0.05;
    c.dup = 0.01;
    c.jitter_ms = 5;
    c.clock_skew = 0.05;
    struct sim *s = sim_new(&c);
    assert_non_null(s);
    sim_start_cluster(s, 50, 100);
    sim_run_until(s, 20000);
    sim_crash(s, 7);
    sim_run_until(s, 60000);
    uint64_t h = sim_trace_hash(s);
    *violations = sim_violations(s);
    if (keep)
        *keep = s;
    else
        sim_free(s);
    return h;
}

static void test_determinism(void **state)
{
    (void)state;
    struct scen sc;
    scen_init(&sc, "determin", 50, 1);
    uint64_t v1, v2, v3;
    uint64_t h1 = det_run(sc.seed, &v1, &sc.s);
    uint64_t h2 = det_run(sc.seed, &v2, NULL);
    uint64_t h3 = det_run(sc.seed + 1, &v3, NULL);
    printf("  same seed %016" PRIx64 " %016" PRIx64 ", next seed %016" PRIx64
           "\n", h1, h2, h3);
    CHECK(&sc, h1 == h2, "same seed, different traces");
    CHECK(&sc, h1 != h3, "different seeds, same trace");
    CHECK(&sc, v1 == 0 && v2 == 0 && v3 == 0, "violations %" PRIu64
          "/%" PRIu64 "/%" PRIu64, v1, v2, v3);
    scen_end(&sc);
}

/* --- b. join of 1,000 nodes ---------------------------------------------- */

static void test_join_1000(void **state)
{
    (void)state;
    struct scen sc;
    scen_init(&sc, "join1000", 1000, 2);
    scen_start(&sc);
    uint64_t took = scen_boot(&sc, 1000 * 2, 60000);
    printf("  converged %.3f s after the last start\n", (double)took / 1000);
    CHECK(&sc, sc.fp == 0, "%" PRIu64 " false positives", sc.fp);
    scen_end(&sc);
}

/* --- c. a killed node is detected by everyone within the bound ----------- */

static void test_kill_detected(void **state)
{
    (void)state;
    struct scen sc;
    scen_init(&sc, "kill", 100, 3);
    scen_start(&sc);
    scen_boot(&sc, 200, 60000);
    sim_run_until(sc.s, sim_now(sc.s) + SETTLE_MS);
    sc.target = pick_target(&sc);
    uint64_t t = sim_now(sc.s);
    uint64_t bound = t + susp_max_ms(&sc) + 10000;
    sim_crash(sc.s, sc.target);
    uint64_t all = run_until_all(&sc, ZPF_EV_FAIL, t, bound);
    if (all == NEVER) {
        size_t missing = count_missing(&sc, ZPF_EV_FAIL, t);
        all = run_until_all(&sc, ZPF_EV_FAIL, t, bound + 120000);
        CHECK(&sc, false, "n%zu killed at %" PRIu64 ": %zu survivors had "
              "not declared it dead by %" PRIu64 " (max suspicion %" PRIu64
              " ms + 10 s); all did %" PRId64 " ms after the crash",
              sc.target, t, missing, bound, susp_max_ms(&sc),
              all == NEVER ? (int64_t)-1 : (int64_t)(all - t));
    }
    printf("  n%zu declared dead by all %zu survivors %.3f s after the crash "
           "(bound %.3f s)\n", sc.target, sc.n - 1, (double)(all - t) / 1000,
           (double)(bound - t) / 1000);
    CHECK(&sc, sc.fp == 0, "%" PRIu64 " false positives: %s", sc.fp,
          sc.fp_text);
    scen_end(&sc);
}

/* --- d. no false positives at 10 % loss ---------------------------------- */

static void test_loss_no_false_positive(void **state)
{
    (void)state;
    struct scen sc;
    scen_init(&sc, "loss10", 100, 4);
    sc.cfg.loss = 0.10;
    scen_start(&sc);
    scen_boot(&sc, 200, 60000);
    sim_run_until(sc.s, sim_now(sc.s) + 30 * 60 * 1000);
    CHECK(&sc, sc.fp == 0, "%" PRIu64 " false positives over 30 min at 10%% "
          "loss; first: %s", sc.fp, sc.fp_text);
    /* Loss off: the view must settle again (no lingering suspicion). */
    sim_set_loss(sc.s, 0);
    bool ok = sim_run_until_converged(sc.s, sim_now(sc.s) + 30000, NULL);
    CHECK(&sc, ok, "no convergence 30 s after the loss stopped");
    struct sim_totals tot;
    sim_totals(sc.s, &tot);
    printf("  %" PRIu64 " datagrams, %" PRIu64 " dropped\n", tot.packets,
           tot.dropped);
    scen_end(&sc);
}

/* --- e. a short pause is refuted -------------------------------------------- */

static void test_short_pause(void **state)
{
    (void)state;
    struct scen sc;
    scen_init(&sc, "pause", 20, 5);
    scen_start(&sc);
    scen_boot(&sc, 40, 30000);
    sim_run_until(sc.s, sim_now(sc.s) + SETTLE_MS);
    /* A stopped process looks like a crashed one until it wakes, and its
     * counter stands still: the earliest anyone may declare it dead is one
     * probe period (a ping sent as it stopped goes unanswered) plus the
     * fast expiry, probe_interval * max(1, log10 n), 2.3 s here.  Pause for
     * less than that; test_long_pause_observer covers a pause past it. */
    uint64_t fast = zpf_suspicion_timeout(&sc.cfg.node, sc.n, UINT32_MAX) /
                    sc.cfg.node.suspicion_mult;
    uint64_t pause = sc.cfg.node.probe_interval_ms + fast - 300;
    sc.target = pick_target(&sc);
    sim_pause(sc.s, sc.target);
    sim_run_until(sc.s, sim_now(sc.s) + pause);
    sim_resume(sc.s, sc.target);
    uint64_t t = sim_now(sc.s);
    bool ok = sim_run_until_converged(sc.s, t + 30000, NULL);
    sim_run_until(sc.s, sim_now(sc.s) + 30000);
    CHECK(&sc, sc.target_fails == 0, "n%zu, paused %" PRIu64 " ms, was "
          "declared dead %" PRIu64 " times", sc.target, pause,
          sc.target_fails);
    CHECK(&sc, ok, "no convergence within 30 s of the resume");
    CHECK(&sc, sim_converged(sc.s), "view diverged after the resume");
    CHECK(&sc, sc.fp == 0, "false positive: %s", sc.fp_text);
    scen_end(&sc);
}

/* e'. With counter_fast_expiry off, a pause shorter than Lifeguard's
 * minimum suspicion timeout (5.2 s at n = 20) is refuted, as in memberlist:
 * the setting for hosts where multi-second pauses are normal. */
static void test_pause_without_fast_expiry(void **state)
{
    (void)state;
    struct scen sc;
    scen_init(&sc, "pause-lg", 20, 15);
    sc.cfg.node.counter_fast_expiry = false;
    scen_start(&sc);
    scen_boot(&sc, 40, 30000);
    sim_run_until(sc.s, sim_now(sc.s) + SETTLE_MS);
    sc.target = pick_target(&sc);
    sim_pause(sc.s, sc.target);
    sim_run_until(sc.s, sim_now(sc.s) + 3000);
    sim_resume(sc.s, sc.target);
    bool ok = sim_run_until_converged(sc.s, sim_now(sc.s) + 30000, NULL);
    sim_run_until(sc.s, sim_now(sc.s) + 30000);
    CHECK(&sc, sc.target_fails == 0, "n%zu, paused 3 s without fast expiry, "
          "was declared dead %" PRIu64 " times", sc.target, sc.target_fails);
    CHECK(&sc, ok, "no convergence within 30 s of the resume");
    CHECK(&sc, sc.fp == 0, "false positive: %s", sc.fp_text);
    scen_end(&sc);
}

/* --- f. a long-paused observer condemns no one ----------------------------- */

static void test_long_pause_observer(void **state)
{
    (void)state;
    struct scen sc;
    scen_init(&sc, "pause60s", 20, 6);
    scen_start(&sc);
    scen_boot(&sc, 40, 30000);
    sim_run_until(sc.s, sim_now(sc.s) + SETTLE_MS);
    size_t p = sc.target = pick_target(&sc);
    uint32_t inc0 = zpf_node_incarnation(sim_node(sc.s, p));
    sim_pause(sc.s, p);
    sim_run_until(sc.s, sim_now(sc.s) + 60000);
    size_t condemned = sc.n - 1 - count_missing(&sc, ZPF_EV_FAIL, 0);
    sc.watch_obs = p;
    sc.watch_from = sim_now(sc.s);
    sim_resume(sc.s, p);
    uint64_t t = sim_now(sc.s);
    uint64_t bound = t + sc.cfg.node.push_pull_interval_ms + 30000;
    uint64_t at = 0;
    bool ok = sim_run_until_converged(sc.s, bound, &at);
    sim_run_until(sc.s, sim_now(sc.s) + 30000);
    printf("  n%zu paused 60 s: declared dead by %zu of %zu; converged %.3f "
           "s after the resume\n", p, condemned, sc.n - 1,
           ok ? (double)(at - t) / 1000 : -1.0);
    CHECK(&sc, sc.watch_fails == 0, "n%zu declared %" PRIu64 " members dead "
          "after waking: %s", p, sc.watch_fails, sc.watch_text);
    CHECK(&sc, ok, "no convergence within push-pull + 30 s of the resume");
    uint32_t inc1 = zpf_node_incarnation(sim_node(sc.s, p));
    if (sc.target_fails > 0)
        CHECK(&sc, inc1 > sc.target_fail_inc, "n%zu is at incarnation %"
              PRIu32 ", not above %" PRIu32 " it was declared dead with", p,
              inc1, sc.target_fail_inc);
    for (size_t o = 0; o < sc.n; o++) {
        struct zpf_member_info mi;
        if (o == p)
            continue;
        char name[24];
        snprintf(name, sizeof(name), "n%zu", p);
        CHECK(&sc, zpf_node_member_find(sim_node(sc.s, o), name, &mi) == 0 &&
                   mi.state == ZPF_STATE_ALIVE &&
                   (sc.target_fails == 0 ||
                    mi.incarnation > sc.target_fail_inc),
              "n%zu sees n%zu %s at incarnation %" PRIu32 "; it was declared "
              "dead at %" PRIu32, o, p, zpf_state_name(mi.state),
              mi.incarnation, sc.target_fail_inc);
    }
    printf("  incarnation %" PRIu32 " -> %" PRIu32 "\n", inc0, inc1);
    CHECK(&sc, sc.fp == 0, "false positive: %s", sc.fp_text);
    scen_end(&sc);
}

/* --- g. one-way fault: counters keep a deaf node alive --------------------- */

static void test_inbound_blackhole(void **state)
{
    (void)state;
    struct scen sc;
    scen_init(&sc, "deaf60s", 20, 7);
    scen_start(&sc);
    scen_boot(&sc, 40, 30000);
    sim_run_until(sc.s, sim_now(sc.s) + SETTLE_MS);
    size_t k = sc.target = pick_target(&sc);
    sc.watch_obs = k;
    sc.watch_from = sim_now(sc.s);
    sim_block_in(sc.s, k, true);
    sim_run_until(sc.s, sim_now(sc.s) + 60000);
    sim_block_in(sc.s, k, false);
    uint64_t t = sim_now(sc.s);
    printf("  while deaf, n%zu declared %" PRIu64 " others dead\n", k,
           sc.watch_fails);
    CHECK(&sc, sc.target_fails == 0, "n%zu (inbound blackholed, outbound "
          "fine) was declared dead %" PRIu64 " times", k, sc.target_fails);
    bool ok = sim_run_until_converged(
        sc.s, t + sc.cfg.node.push_pull_interval_ms + 60000, NULL);
    CHECK(&sc, ok, "no convergence within push-pull + 60 s of the repair");
    CHECK(&sc, sc.target_fails == 0, "n%zu declared dead after the repair", k);
    scen_end(&sc);
}

/* --- h. health off: stalled, never dead ------------------------------------ */

static void test_stall(void **state)
{
    (void)state;
    struct scen sc;
    scen_init(&sc, "stall", 20, 8);
    scen_start(&sc);
    scen_boot(&sc, 40, 30000);
    sim_run_until(sc.s, sim_now(sc.s) + SETTLE_MS);
    size_t k = sc.target = pick_target(&sc);
    uint64_t t = sim_now(sc.s);
    uint64_t bound = t + sc.cfg.node.counter_timeout_ms +
                     sc.cfg.node.heartbeat_interval_ms + 5000;
    sim_set_health(sc.s, k, false);
    uint64_t all = run_until_all(&sc, ZPF_EV_STALL, t, bound);
    if (all == NEVER) {
        /* Run on so that the failure says how late it was. */
        size_t missing = count_missing(&sc, ZPF_EV_STALL, t);
        all = run_until_all(&sc, ZPF_EV_STALL, t, bound + 120000);
        CHECK(&sc, false, "%zu of %zu observers had not reported n%zu "
              "STALLED %" PRIu64 " ms after its health went off (all did "
              "after %" PRId64 " ms)", missing, sc.n - 1, k, bound - t,
              all == NEVER ? (int64_t)-1 : (int64_t)(all - t));
    }
    printf("  stalled everywhere %.3f s after health off (bound %.3f)\n",
           (double)(all - t) / 1000, (double)(bound - t) / 1000);
    sim_run_until(sc.s, sim_now(sc.s) + 60000);
    CHECK(&sc, sc.target_fails == 0, "stalled n%zu was declared dead", k);
    uint64_t t2 = sim_now(sc.s);
    sim_set_health(sc.s, k, true);
    uint64_t back = run_until_all(&sc, ZPF_EV_UNSTALL, t2, t2 + 10000);
    CHECK(&sc, back != NEVER, "%zu observers had not reported n%zu UNSTALL "
          "10 s after its health came back",
          count_missing(&sc, ZPF_EV_UNSTALL, t2), k);
    printf("  unstalled everywhere %.3f s after health on\n",
           (double)(back - t2) / 1000);
    CHECK(&sc, sc.fails == 0, "%" PRIu64 " FAIL events; first false "
          "positive: %s", sc.fails, sc.fp_text);
    scen_end(&sc);
}

/* --- i. partition into halves and heal --------------------------------------- */

static void test_partition_heal(void **state)
{
    (void)state;
    struct scen sc;
    scen_init(&sc, "partition", 20, 9);
    scen_start(&sc);
    scen_boot(&sc, 40, 30000);
    sim_run_until(sc.s, sim_now(sc.s) + SETTLE_MS);
    size_t half = sc.n / 2;
    for (size_t i = half; i < sc.n; i++)
        sim_set_group(sc.s, i, 1);
    sim_block(sc.s, 0, 1);
    sim_block(sc.s, 1, 0);
    sim_run_until(sc.s, sim_now(sc.s) + 60000);
    size_t not_dead = 0;
    for (size_t o = 0; o < sc.n; o++)
        for (size_t m = 0; m < sc.n; m++) {
            if ((o < half) == (m < half))
                continue;
            char name[24];
            struct zpf_member_info mi;
            snprintf(name, sizeof(name), "n%zu", m);
            if (zpf_node_member_find(sim_node(sc.s, o), name, &mi) != 0 ||
                mi.state != ZPF_STATE_DEAD)
                not_dead++;
        }
    CHECK(&sc, not_dead == 0, "after 60 s of partition, %zu of %zu "
          "cross-side views are not DEAD", not_dead, 2 * half * (sc.n - half));
    sim_heal(sc.s);
    uint64_t t = sim_now(sc.s), at = 0;
    uint64_t bound = t + sc.cfg.node.push_pull_interval_ms + 60000;
    bool ok = sim_run_until_converged(sc.s, bound, &at);
    CHECK(&sc, ok, "no single view within push-pull (%" PRIu32 " ms) + 60 s "
          "of the heal", sc.cfg.node.push_pull_interval_ms);
    printf("  healed view converged %.3f s after the heal\n",
           (double)(at - t) / 1000);
    scen_end(&sc);
}

/* --- j. clocks at different rates ------------------------------------------- */

static void test_clock_skew(void **state)
{
    (void)state;
    struct scen sc;
    scen_init(&sc, "skew10", 50, 10);
    sc.cfg.clock_skew = 0.10;
    scen_start(&sc);
    scen_boot(&sc, 100, 60000);
    sim_run_until(sc.s, sim_now(sc.s) + 10 * 60 * 1000);
    CHECK(&sc, sc.fp == 0, "%" PRIu64 " false positives with clock rates "
          "+-10%%: %s", sc.fp, sc.fp_text);
    CHECK(&sc, sim_converged(sc.s), "view not converged after 10 min");
    scen_end(&sc);
}

/* --- k. crash and restart ------------------------------------------------------ */

static void crash_restart(const char *name, uint64_t seed, bool keep)
{
    struct scen sc;
    scen_init(&sc, name, 20, seed);
    scen_start(&sc);
    scen_boot(&sc, 40, 30000);
    sim_run_until(sc.s, sim_now(sc.s) + SETTLE_MS);
    size_t k = sc.target = pick_target(&sc);
    uint32_t inc0 = zpf_node_incarnation(sim_node(sc.s, k));
    uint64_t t = sim_now(sc.s);
    sim_crash(sc.s, k);
    uint64_t all = run_until_all(&sc, ZPF_EV_FAIL, t,
                                 t + susp_max_ms(&sc) + 10000);
    CHECK(&sc, all != NEVER, "crashed n%zu not declared dead by %zu", k,
          count_missing(&sc, ZPF_EV_FAIL, t));
    sim_run_until(sc.s, sim_now(sc.s) + 5000);
    uint32_t dead_inc = sc.target_fail_inc;
    uint64_t t2 = sim_now(sc.s);
    CHECK(&sc, sim_start(sc.s, k, keep) == 0, "restart failed");
    sim_join(sc.s, k, k == 1 ? 2 : 1);
    uint64_t at = 0;
    bool ok = sim_run_until_converged(
        sc.s, t2 + sc.cfg.node.push_pull_interval_ms + 30000, &at);
    CHECK(&sc, ok, "restarted n%zu (%s incarnation) not alive everywhere "
          "within push-pull + 30 s", k, keep ? "persisted" : "fresh");
    char nm[24];
    snprintf(nm, sizeof(nm), "n%zu", k);
    for (size_t o = 0; o < sc.n; o++) {
        struct zpf_member_info mi;
        if (o == k)
            continue;
        CHECK(&sc, zpf_node_member_find(sim_node(sc.s, o), nm, &mi) == 0 &&
                   mi.state == ZPF_STATE_ALIVE && mi.incarnation > dead_inc,
              "n%zu sees n%zu at incarnation %" PRIu32 " state %s; it was "
              "declared dead at %" PRIu32, o, k, mi.incarnation,
              zpf_state_name(mi.state), dead_inc);
    }
    printf("  incarnation %" PRIu32 ", dead at %" PRIu32 ", back at %" PRIu32
           " (%s), converged %.3f s after the restart\n", inc0, dead_inc,
           zpf_node_incarnation(sim_node(sc.s, k)),
           keep ? "persisted" : "fresh", (double)(at - t2) / 1000);
    CHECK(&sc, sc.fp == 0, "false positive: %s", sc.fp_text);
    scen_end(&sc);
}

static void test_restart_persisted(void **state)
{
    (void)state;
    crash_restart("restart-k", 11, true);
}

static void test_restart_fresh(void **state)
{
    (void)state;
    crash_restart("restart-0", 12, false);
}

/* --- l. graceful leave ------------------------------------------------------ */

static void test_leave(void **state)
{
    (void)state;
    struct scen sc;
    scen_init(&sc, "leave", 20, 13);
    scen_start(&sc);
    scen_boot(&sc, 40, 30000);
    sim_run_until(sc.s, sim_now(sc.s) + SETTLE_MS);
    size_t k = sc.target = pick_target(&sc);
    uint64_t t = sim_now(sc.s);
    sim_leave(sc.s, k);
    /* zpfd keeps the loop running for a leave timeout; 5 s is memberlist's
     * default for how long Leave() waits for the broadcast. */
    uint64_t all = run_until_all(&sc, ZPF_EV_LEAVE, t, t + 5000);
    sim_run_until(sc.s, t + 5000);
    sim_crash(sc.s, k);
    if (all == NEVER)
        all = run_until_all(&sc, ZPF_EV_LEAVE, t, t + 30000);
    CHECK(&sc, all != NEVER, "%zu members never saw n%zu leave",
          count_missing(&sc, ZPF_EV_LEAVE, t), k);
    sim_run_until(sc.s, sim_now(sc.s) + 60000);
    CHECK(&sc, sc.target_fails == 0, "n%zu left gracefully but was declared "
          "dead %" PRIu64 " times", k, sc.target_fails);
    CHECK(&sc, sim_converged(sc.s), "view not converged after the leave");
    printf("  LEAVE seen everywhere %.3f s after the announcement\n",
           (double)(all - t) / 1000);
    scen_end(&sc);
}

/* An optional argument selects tests by pattern ("*pause*"), handy with
 * ZPF_SEED and ZPF_TRACE when replaying one failure. */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_join_1000),
        cmocka_unit_test(test_kill_detected),
        cmocka_unit_test(test_loss_no_false_positive),
        cmocka_unit_test(test_short_pause),
        cmocka_unit_test(test_pause_without_fast_expiry),
        cmocka_unit_test(test_long_pause_observer),
        cmocka_unit_test(test_inbound_blackhole),
        cmocka_unit_test(test_stall),
        cmocka_unit_test(test_partition_heal),
        cmocka_unit_test(test_clock_skew),
        cmocka_unit_test(test_restart_persisted),
        cmocka_unit_test(test_restart_fresh),
        cmocka_unit_test(test_leave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
