/*
 * zpf-sim: run one cluster scenario in the deterministic simulator and
 * report what the protocol did.
 *
 * The scenario, on one virtual clock starting at 0:
 *   1. join     nodes start spread over min(n x 2 ms, 20 s), node 0 first,
 *               each joining a random node already started; we wait for
 *               sim_converged() (checked once per simulated second).
 *   2. steady   30 s of quiet: packets and bytes per node per second.
 *   3. kill     K random nodes other than n0 crash, one every 2 s (spread
 *               out so that each death is a separate measurement, like hosts
 *               failing independently, rather than one correlated burst).
 *               For each we record the first FAIL about it from a survivor
 *               and the time the last survivor emitted FAIL about it.
 *   4. restart  (--restart) the killed nodes come back with their persisted
 *               incarnation and we wait for the view to converge again.
 * The run stops at --duration, or a few seconds after the last detection or
 * recovery.  Exit status 1 when the join never converged, an invariant was
 * violated, or a killed node was not detected by every survivor.
 */
#include "sim.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STEADY_MS 30000u    /* long enough for a push-pull round at 30 s */
#define KILL_SPACING_MS 2000u
#define MARGIN_MS 5000u     /* after the last detection, for late events */
#define JOIN_MS_PER_NODE 2u /* start spacing, capped by JOIN_WINDOW_MAX */
#define JOIN_WINDOW_MAX_MS 20000u
#define NEVER UINT64_MAX

struct opts {
    size_t nodes;
    uint64_t seed;
    bool seed_given;
    double loss, dup, skew;
    uint32_t latency, jitter;
    size_t kill;
    uint64_t duration_s, settle_s, soak_s;
    bool json, quiet, verbose, restart, help, no_fast;
    uint32_t probe_interval, probe_timeout, suspicion_mult, gossip_interval;
    uint32_t push_pull_s, heartbeat;
};

/* What the event callback measures. */
struct run {
    struct sim *s;
    size_t n;
    bool narrate;  /* --verbose: print events as they happen */
    bool settled;  /* initial join converged: JOIN events are news now */
    FILE *out;

    uint64_t false_positives;
    uint64_t false_stalls; /* every node here is healthy: any stall is false */
    size_t nkill, live; /* live: observers that are never killed */
    size_t *victim;
    size_t *slot;       /* per node: index into victim, or SIZE_MAX */
    uint64_t *crash_at, *first_fail, *all_fail;
    size_t *fail_count, detected_all;
    uint8_t *failed;    /* nkill x n: survivor o has declared victim k dead */
};

static void say(struct run *r, const char *fmt, ...)
{
    if (!r->out)
        return;
    uint64_t t = sim_now(r->s);
    fprintf(r->out, "t=%7" PRIu64 ".%03" PRIu64 "s  ", t / 1000, t % 1000);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(r->out, fmt, ap);
    va_end(ap);
    fputc('\n', r->out);
}

static void on_event(struct sim *s, size_t obs, const struct zpf_event *ev,
                     uint64_t t, void *ud)
{
    struct run *r = ud;
    size_t m = sim_member_index(s, &ev->member);
    const char *who = ev->member.name;

    if (ev->type == ZPF_EV_STALL)
        r->false_stalls++;
    if (ev->type == ZPF_EV_FAIL && m != SIZE_MAX && sim_running(s, m) &&
        !sim_paused(s, m)) {
        r->false_positives++;
        if (r->narrate)
            say(r, "n%zu declares %s dead, but it is running: a false "
                   "positive", obs, who);
    }
    size_t k = m == SIZE_MAX ? SIZE_MAX : r->slot[m];
    if (ev->type == ZPF_EV_FAIL && k != SIZE_MAX && r->slot[obs] == SIZE_MAX &&
        r->crash_at[k] != NEVER && !r->failed[k * r->n + obs]) {
        r->failed[k * r->n + obs] = 1;
        if (r->first_fail[k] == NEVER) {
            r->first_fail[k] = t;
            if (r->narrate)
                say(r, "n%zu is the first to declare %s dead (incarnation "
                       "%" PRIu32 "), %.1f s after the crash", obs, who,
                    ev->member.incarnation,
                    (double)(t - r->crash_at[k]) / 1000);
        } else if (r->narrate) {
            say(r, "n%zu declares %s dead too", obs, who);
        }
        if (++r->fail_count[k] == r->live) {
            r->all_fail[k] = t;
            r->detected_all++;
            if (r->narrate)
                say(r, "all %zu survivors now agree %s is dead, %.1f s after "
                       "the crash", r->live, who,
                    (double)(t - r->crash_at[k]) / 1000);
        }
        return;
    }
    if (!r->narrate)
        return;
    switch (ev->type) {
    case ZPF_EV_JOIN:
        /* A restarted process learning the whole membership is one line
         * per member and tells nothing; the others seeing it is the news. */
        if (r->settled && r->slot[obs] == SIZE_MAX)
            say(r, "n%zu sees %s alive (again), incarnation %" PRIu32, obs,
                who, ev->member.incarnation);
        break;
    case ZPF_EV_SUSPECT:
        say(r, "n%zu suspects %s (a probe went unanswered, or it heard so)",
            obs, who);
        break;
    case ZPF_EV_ALIVE:
        say(r, "n%zu no longer suspects %s (refuted, incarnation %" PRIu32
               ")", obs, who, ev->member.incarnation);
        break;
    case ZPF_EV_FAIL:
        say(r, "n%zu declares %s dead", obs, who);
        break;
    case ZPF_EV_LEAVE:
        say(r, "n%zu sees %s leave gracefully", obs, who);
        break;
    case ZPF_EV_STALL:
        say(r, "n%zu sees %s's heartbeat counter stall", obs, who);
        break;
    case ZPF_EV_UNSTALL:
        say(r, "n%zu sees %s's heartbeat counter moving again", obs, who);
        break;
    default:
        break;
    }
}

/* --- options --------------------------------------------------------------- */

enum opt_kind { OPT_SIZE, OPT_U64, OPT_U32, OPT_PROB, OPT_SKEW, OPT_FLAG };

struct opt {
    const char *name;
    enum opt_kind kind;
    void *dst;
    const char *arg;
    const char *help;
};

static int parse_one(const struct opt *o, const char *v)
{
    char *end;
    errno = 0;
    if (o->kind == OPT_PROB || o->kind == OPT_SKEW) {
        double d = strtod(v, &end);
        double max = o->kind == OPT_PROB ? 1.0 : 0.99;
        if (errno || end == v || *end || !(d >= 0 && d <= max)) {
            fprintf(stderr, "zpf-sim: %s wants a number in [0, %g], got '%s'\n",
                    o->name, max, v);
            return -1;
        }
        *(double *)o->dst = d;
        return 0;
    }
    if (*v == '-') {
        fprintf(stderr, "zpf-sim: %s wants a non-negative integer, got '%s'\n",
                o->name, v);
        return -1;
    }
    unsigned long long u = strtoull(v, &end, 10);
    if (errno || end == v || *end ||
        (o->kind == OPT_U32 && u > UINT32_MAX)) {
        fprintf(stderr, "zpf-sim: %s wants a non-negative integer, got '%s'\n",
                o->name, v);
        return -1;
    }
    if (o->kind == OPT_SIZE)
        *(size_t *)o->dst = (size_t)u;
    else if (o->kind == OPT_U64)
        *(uint64_t *)o->dst = u;
    else
        *(uint32_t *)o->dst = (uint32_t)u;
    return 0;
}

static void usage(const struct opt *tab, size_t n, FILE *f)
{
    fprintf(f,
            "usage: zpf-sim [options]\n"
            "Run a zpf cluster in the deterministic simulator: join, 30 s "
            "steady state,\n"
            "crash K nodes (one every 2 s), measure failure detection.  "
            "Times are simulated.\n\n");
    for (size_t i = 0; i < n; i++) {
        char left[40];
        snprintf(left, sizeof(left), "%s%s%s", tab[i].name,
                 tab[i].arg ? " " : "", tab[i].arg ? tab[i].arg : "");
        fprintf(f, "  %-24s %s\n", left, tab[i].help);
    }
    fprintf(f, "\nThe same --seed and options replay the same run "
               "(compare trace_hash).\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    bool seed_flag = false;
    const struct opt tab[] = {
        {"--nodes", OPT_SIZE, &o->nodes, "N", "cluster size (100)"},
        {"--seed", OPT_U64, &o->seed, "S", "random seed (default: from the clock, printed)"},
        {"--loss", OPT_PROB, &o->loss, "P", "datagram loss probability (0)"},
        {"--dup", OPT_PROB, &o->dup, "P", "datagram duplication probability (0)"},
        {"--latency", OPT_U32, &o->latency, "MS", "one-way latency (2)"},
        {"--jitter", OPT_U32, &o->jitter, "MS", "uniform extra latency 0..MS (1)"},
        {"--skew", OPT_SKEW, &o->skew, "F", "clock rates uniform in [1-F, 1+F] (0)"},
        {"--kill", OPT_SIZE, &o->kill, "K", "nodes to crash, one every 2 s (1)"},
        {"--duration", OPT_U64, &o->duration_s, "SEC", "simulated time limit (120)"},
        {"--probe-interval", OPT_U32, &o->probe_interval, "MS", "node config (1000)"},
        {"--probe-timeout", OPT_U32, &o->probe_timeout, "MS", "node config (500)"},
        {"--suspicion-mult", OPT_U32, &o->suspicion_mult, "N", "node config (4)"},
        {"--gossip-interval", OPT_U32, &o->gossip_interval, "MS", "node config (200)"},
        {"--push-pull", OPT_U32, &o->push_pull_s, "SEC", "push-pull interval, 0 = off (30)"},
        {"--heartbeat", OPT_U32, &o->heartbeat, "MS", "heartbeat interval (250)"},
        {"--soak", OPT_U64, &o->soak_s, "SEC", "run this long after the steady window, before the kills,\n"
         "                           counting false deaths and stalls (0)"},
        {"--settle", OPT_U64, &o->settle_s, "SEC", "wait after convergence before the steady window, so that\n"
         "                           join retransmissions are not counted (0)"},
        {"--no-fast-expiry", OPT_FLAG, &o->no_fast, NULL, "counter_fast_expiry off: Lifeguard timing only"},
        {"--restart", OPT_FLAG, &o->restart, NULL, "restart the killed nodes once detected"},
        {"--json", OPT_FLAG, &o->json, NULL, "print one JSON object"},
        {"--verbose", OPT_FLAG, &o->verbose, NULL, "narrate events as they happen"},
        {"--quiet", OPT_FLAG, &o->quiet, NULL, "no progress lines"},
        {"--help", OPT_FLAG, &o->help, NULL, "this text"},
    };
    size_t ntab = sizeof(tab) / sizeof(tab[0]);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        char name[40];
        const char *eq = strchr(a, '=');
        if (eq && (size_t)(eq - a) < sizeof(name)) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = 0;
            v = eq + 1;
            a = name;
        }
        if (!strcmp(a, "-h"))
            a = "--help";
        size_t k = 0;
        while (k < ntab && strcmp(tab[k].name, a))
            k++;
        if (k == ntab) {
            fprintf(stderr, "zpf-sim: unknown option '%s' (try --help)\n",
                    argv[i]);
            return -1;
        }
        if (tab[k].kind == OPT_FLAG) {
            if (v) {
                fprintf(stderr, "zpf-sim: %s takes no value\n", a);
                return -1;
            }
            *(bool *)tab[k].dst = true;
            continue;
        }
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "zpf-sim: %s needs a value (%s)\n", a,
                        tab[k].arg);
                return -1;
            }
            v = argv[++i];
        }
        if (parse_one(&tab[k], v) < 0)
            return -1;
        if (tab[k].dst == &o->seed)
            seed_flag = true;
    }
    o->seed_given = seed_flag;
    if (o->help) {
        usage(tab, ntab, stdout);
        return 1;
    }
    if (o->nodes < 1 || o->nodes > 1000000) {
        fprintf(stderr, "zpf-sim: --nodes must be 1..1000000\n");
        return -1;
    }
    if (o->kill >= o->nodes) {
        fprintf(stderr, "zpf-sim: --kill must be below --nodes (n0 is never "
                        "killed)\n");
        return -1;
    }
    return 0;
}

/* --- scenario ------------------------------------------------------------- */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Median of the finite values (NEVER excluded); NEVER if there are none. */
static uint64_t median(const uint64_t *v, size_t n, uint64_t *max)
{
    uint64_t *c = malloc((n ? n : 1) * sizeof(*c));
    size_t k = 0;
    *max = NEVER;
    if (!c)
        return NEVER;
    for (size_t i = 0; i < n; i++)
        if (v[i] != NEVER)
            c[k++] = v[i];
    uint64_t med = NEVER;
    if (k) {
        qsort(c, k, sizeof(*c), cmp_u64);
        med = k % 2 ? c[k / 2] : (c[k / 2 - 1] + c[k / 2]) / 2;
        *max = c[k - 1];
    }
    free(c);
    return med;
}

static uint64_t mix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void json_ms(FILE *f, const char *key, uint64_t v)
{
    if (v == NEVER)
        fprintf(f, ",\"%s\":null", key);
    else
        fprintf(f, ",\"%s\":%" PRIu64, key, v);
}

static void human_ms(FILE *f, const char *label, uint64_t v)
{
    if (v == NEVER)
        fprintf(f, "  %-28s never\n", label);
    else
        fprintf(f, "  %-28s %.3f s\n", label, (double)v / 1000);
}

int main(int argc, char **argv)
{
    struct opts o = {
        .nodes = 100, .latency = 2, .jitter = 1, .kill = 1,
        .duration_s = 120,
    };
    struct zpf_config zc;
    zpf_config_default(&zc);
    o.probe_interval = zc.probe_interval_ms;
    o.probe_timeout = zc.probe_timeout_ms;
    o.suspicion_mult = zc.suspicion_mult;
    o.gossip_interval = zc.gossip_interval_ms;
    o.push_pull_s = zc.push_pull_interval_ms / 1000;
    o.heartbeat = zc.heartbeat_interval_ms;

    int prc = parse_args(argc, argv, &o);
    if (prc != 0)
        return prc > 0 ? 0 : 2;
    if (!o.seed_given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000ull +
                     (uint64_t)ts.tv_nsec + (uint64_t)getpid();
        o.seed = mix(&x) % 1000000000ull; /* short enough to retype */
        fprintf(stderr, "zpf-sim: seed=%" PRIu64 " (replay with --seed)\n",
                o.seed);
    }

    struct sim_config sc;
    sim_config_default(&sc);
    sc.seed = o.seed;
    sc.nodes = o.nodes;
    sc.loss = o.loss;
    sc.dup = o.dup;
    sc.latency_ms = o.latency;
    sc.jitter_ms = o.jitter;
    sc.clock_skew = o.skew;
    sc.node.probe_interval_ms = o.probe_interval;
    sc.node.probe_timeout_ms = o.probe_timeout;
    sc.node.suspicion_mult = o.suspicion_mult;
    sc.node.gossip_interval_ms = o.gossip_interval;
    sc.node.push_pull_interval_ms = o.push_pull_s * 1000;
    sc.node.heartbeat_interval_ms = o.heartbeat;
    sc.node.counter_fast_expiry = !o.no_fast;

    double wall0 = wall_now();
    struct sim *s = sim_new(&sc);
    if (!s) {
        fprintf(stderr, "zpf-sim: cannot create the simulator (out of "
                        "memory, or an option out of range)\n");
        return 2;
    }
    /* n0 first, alone, so that a node config the core rejects is reported
     * as such instead of as a cluster that never converges. */
    int src = sim_start(s, 0, false);
    if (src < 0) {
        fprintf(stderr, "zpf-sim: the core rejected the node configuration: "
                        "%s (check the timing options)\n", zpf_strerror(src));
        sim_free(s);
        return 2;
    }
    size_t n = o.nodes, K = o.kill;
    struct run r = {.s = s, .n = n, .nkill = K, .live = n - K};
    FILE *progress = o.quiet ? NULL : (o.json ? stderr : stdout);
    r.out = progress;
    r.narrate = o.verbose && progress;
    r.victim = calloc(K ? K : 1, sizeof(*r.victim));
    r.slot = malloc(n * sizeof(*r.slot));
    r.crash_at = malloc((K ? K : 1) * sizeof(uint64_t));
    r.first_fail = malloc((K ? K : 1) * sizeof(uint64_t));
    r.all_fail = malloc((K ? K : 1) * sizeof(uint64_t));
    r.fail_count = calloc(K ? K : 1, sizeof(size_t));
    r.failed = calloc(K ? K * n : 1, 1);
    if (!r.victim || !r.slot || !r.crash_at || !r.first_fail ||
        !r.all_fail || !r.fail_count || !r.failed) {
        fprintf(stderr, "zpf-sim: out of memory\n");
        return 2;
    }
    for (size_t i = 0; i < n; i++)
        r.slot[i] = SIZE_MAX;
    for (size_t k = 0; k < K; k++)
        r.crash_at[k] = r.first_fail[k] = r.all_fail[k] = NEVER;
    sim_on_event(s, on_event, &r);

    /* Victims drawn up front (partial Fisher-Yates over 1..n-1) so that the
     * callback knows from the start which observers are survivors. */
    uint64_t rs = o.seed ^ 0x6b696c6c73ull; /* "kills" */
    {
        size_t *pool = malloc(n * sizeof(*pool));
        if (!pool) {
            fprintf(stderr, "zpf-sim: out of memory\n");
            return 2;
        }
        for (size_t i = 0; i < n; i++)
            pool[i] = i;
        for (size_t k = 0; k < K; k++) {
            size_t j = 1 + k + (size_t)(mix(&rs) % (n - 1 - k));
            size_t t = pool[1 + k];
            pool[1 + k] = pool[j];
            pool[j] = t;
            r.victim[k] = pool[1 + k];
            r.slot[r.victim[k]] = k;
        }
        free(pool);
    }

    uint64_t dur = o.duration_s * 1000;
    uint64_t window = (uint64_t)n * JOIN_MS_PER_NODE;
    if (window > JOIN_WINDOW_MAX_MS)
        window = JOIN_WINDOW_MAX_MS;
    if (!o.quiet && !o.json)
        printf("zpf-sim: %zu nodes, seed %" PRIu64 ", loss %g, latency %" PRIu32
               "+0..%" PRIu32 " ms, skew %g\n",
               n, o.seed, o.loss, o.latency, o.jitter, o.skew);
    say(&r, "starting %zu nodes over %.3f s, each joining a random node "
            "already up", n, (double)window / 1000);
    if (window > dur)
        window = dur;
    sim_start_cluster(s, n, window);
    say(&r, "all %zu nodes started", n);

    uint64_t join_ms = NEVER, msgs_x1000 = 0, bytes_x1000 = 0, pp_x1000 = 0;
    uint64_t recover_ms = NEVER, tconv;
    /* In chunks, so that a long run (--nodes 10000 takes a while) shows it
     * is alive; sim_converged() only reads, so chunking changes nothing. */
    bool converged = false;
    double said = wall_now();
    while (!converged && sim_now(s) < dur) {
        uint64_t chunk = sim_now(s) + 10000;
        converged = sim_run_until_converged(s, chunk < dur ? chunk : dur,
                                            &tconv);
        if (!converged && wall_now() - said > 30) {
            said = wall_now();
            say(&r, "still joining (%.0f s of wall time so far)",
                said - wall0);
        }
    }
    if (converged) {
        join_ms = tconv;
        r.settled = true;
        say(&r, "every node sees all %zu alive: converged %.3f s after the "
                "first start", n, (double)tconv / 1000);

        if (o.settle_s) {
            uint64_t ts = sim_now(s) + o.settle_s * 1000;
            sim_run_until(s, ts < dur ? ts : dur);
        }
        struct sim_totals a, b;
        sim_totals(s, &a);
        uint64_t t0 = sim_now(s), t1 = t0 + STEADY_MS;
        sim_run_until(s, t1 < dur ? t1 : dur);
        sim_totals(s, &b);
        uint64_t span = sim_now(s) - t0;
        if (span > 0) {
            /* per node per second, x1000 to keep three decimals exact */
            uint64_t div = (uint64_t)sim_running_count(s) * span;
            msgs_x1000 = ((b.packets - a.packets) + (b.frames - a.frames)) *
                         1000000 / div;
            bytes_x1000 = ((b.bytes - a.bytes) +
                           (b.frame_bytes - a.frame_bytes)) * 1000000 / div;
            pp_x1000 = (b.frame_bytes - a.frame_bytes) * 1000000 / div;
            say(&r, "steady state: %.1f messages and %.0f bytes per node per "
                    "second", (double)msgs_x1000 / 1000,
                (double)bytes_x1000 / 1000);
        }
        if (o.soak_s) {
            uint64_t ts = sim_now(s) + o.soak_s * 1000;
            sim_run_until(s, ts < dur ? ts : dur);
            say(&r, "soaked %" PRIu64 " s: %" PRIu64 " false deaths, %" PRIu64
                    " false stalls", o.soak_s, r.false_positives,
                r.false_stalls);
        }

        for (size_t k = 0; k < K && sim_now(s) < dur; k++) {
            if (k > 0)
                sim_run_until(s, sim_now(s) + KILL_SPACING_MS);
            r.crash_at[k] = sim_now(s);
            sim_crash(s, r.victim[k]);
            say(&r, "n%zu crashes (%zu of %zu)", r.victim[k], k + 1, K);
        }
        while (r.detected_all < K && sim_now(s) < dur) {
            sim_run_until(s, sim_now(s) + 1000);
            if (wall_now() - said > 30) {
                said = wall_now();
                say(&r, "%zu of %zu crashes detected by every survivor so "
                        "far", r.detected_all, K);
            }
        }

        if (o.restart && K > 0 && r.detected_all == K && sim_now(s) < dur) {
            uint64_t tr = sim_now(s);
            for (size_t k = 0; k < K; k++) {
                size_t v = r.victim[k];
                /* join through a survivor: n0 is never killed */
                size_t seed = (size_t)(mix(&rs) % n);
                while (r.slot[seed] != SIZE_MAX)
                    seed = (seed + 1) % n;
                sim_start(s, v, true);
                sim_join(s, v, seed);
                say(&r, "n%zu restarts with its persisted incarnation and "
                        "joins via n%zu", v, seed);
            }
            uint64_t tc;
            if (sim_run_until_converged(s, dur, &tc)) {
                recover_ms = tc - tr;
                say(&r, "converged again: every node sees all %zu alive, "
                        "%.3f s after the restart", n,
                    (double)recover_ms / 1000);
            } else {
                say(&r, "the view did not converge again before the end");
            }
        }
        if (r.detected_all == K) {
            uint64_t end = sim_now(s) + MARGIN_MS;
            sim_run_until(s, end < dur ? end : dur);
        }
    } else {
        say(&r, "the join did not converge within %" PRIu64 " s", o.duration_s);
    }
    double wall = wall_now() - wall0;

    uint64_t *detect_first = malloc((K ? K : 1) * sizeof(uint64_t));
    uint64_t *detect_all = malloc((K ? K : 1) * sizeof(uint64_t));
    if (!detect_first || !detect_all)
        return 2;
    for (size_t k = 0; k < K; k++) {
        detect_first[k] = r.first_fail[k] == NEVER
                              ? NEVER : r.first_fail[k] - r.crash_at[k];
        detect_all[k] = r.all_fail[k] == NEVER
                            ? NEVER : r.all_fail[k] - r.crash_at[k];
    }
    uint64_t first_max, all_max;
    uint64_t first_p50 = median(detect_first, K, &first_max);
    uint64_t all_p50 = median(detect_all, K, &all_max);
    size_t undetected = K - r.detected_all;
    struct sim_totals tot;
    sim_totals(s, &tot);
    struct zpf_node *n0 = sim_node(s, 0);
    size_t members = n0 ? zpf_node_member_count(n0) : 0;
    uint64_t member_bytes = members ? zpf_node_memory(n0) / members : 0;
    double nsps = wall > 0 ? (double)tot.node_ms / 1000 / wall : 0;
    /* Join progress: the share of (observer, running member) pairs in which
     * the observer holds the member alive, from the gauges, O(n). */
    double known = 0;
    size_t running = sim_running_count(s);
    for (size_t i = 0; i < n && running; i++)
        if (sim_node(s, i))
            known += (double)zpf_node_stats(sim_node(s, i))->members_alive /
                     (double)running / (double)running;
    struct zpf_config tmp = sc.node;
    uint64_t susp_max = zpf_suspicion_timeout(&tmp, n, 0);

    if (o.json) {
        printf("{\"nodes\":%zu,\"seed\":%" PRIu64 ",\"sim_seconds\":%.3f"
               ",\"wall_seconds\":%.3f,\"trace_hash\":\"%016" PRIx64 "\"",
               n, o.seed, (double)sim_now(s) / 1000, wall,
               sim_trace_hash(s));
        json_ms(stdout, "join_converge_ms", join_ms);
        printf(",\"kills\":%zu,\"undetected\":%zu", K, undetected);
        json_ms(stdout, "detect_first_ms", first_p50);
        json_ms(stdout, "detect_all_p50_ms", all_p50);
        json_ms(stdout, "detect_all_max_ms", all_max);
        json_ms(stdout, "suspicion_max_ms", susp_max);
        if (o.restart)
            json_ms(stdout, "recover_ms", recover_ms);
        printf(",\"false_positives\":%" PRIu64 ",\"false_stalls\":%" PRIu64
               ",\"msgs_per_node_s\":%.3f"
               ",\"bytes_per_node_s\":%.3f,\"push_pull_bytes_per_node_s\":%.3f"
               ",\"node_seconds_per_wall_second\":%.1f"
               ",\"member_bytes\":%" PRIu64 ",\"known_fraction\":%.4f"
               ",\"violations\":%" PRIu64
               ",\"packets\":%" PRIu64 ",\"frames\":%" PRIu64
               ",\"dropped\":%" PRIu64 ",\"late_deadlines\":%" PRIu64 "}\n",
               r.false_positives, r.false_stalls, (double)msgs_x1000 / 1000,
               (double)bytes_x1000 / 1000, (double)pp_x1000 / 1000, nsps,
               member_bytes, known, sim_violations(s), tot.packets, tot.frames,
               tot.dropped, sim_late_deadlines(s));
    } else {
        printf("\nsummary (seed %" PRIu64 ", trace %016" PRIx64 ")\n", o.seed,
               sim_trace_hash(s));
        printf("  %-28s %zu\n", "nodes", n);
        printf("  %-28s %.3f s in %.3f s of wall time (%.0f node-s/s)\n",
               "simulated", (double)sim_now(s) / 1000, wall, nsps);
        human_ms(stdout, "join converged after", join_ms);
        printf("  %-28s %.1f msgs, %.0f bytes (push-pull %.0f)\n",
               "per node per second", (double)msgs_x1000 / 1000,
               (double)bytes_x1000 / 1000, (double)pp_x1000 / 1000);
        printf("  %-28s %zu, %zu not detected by all\n", "killed", K,
               undetected);
        human_ms(stdout, "first detection (median)", first_p50);
        human_ms(stdout, "all detected (median)", all_p50);
        human_ms(stdout, "all detected (max)", all_max);
        human_ms(stdout, "suspicion timeout max", susp_max);
        if (o.restart)
            human_ms(stdout, "recovered after restart", recover_ms);
        printf("  %-28s %" PRIu64 "\n", "false positives", r.false_positives);
        printf("  %-28s %" PRIu64 "\n", "false stalls", r.false_stalls);
        printf("  %-28s %" PRIu64 " B\n", "memory per member (n0)",
               member_bytes);
        printf("  %-28s %.2f %%\n", "members known alive", known * 100);
        printf("  %-28s %" PRIu64 "\n", "invariant violations",
               sim_violations(s));
        if (sim_violations(s))
            printf("  first violation: %s\n", sim_violation_text(s));
    }
    if (sim_violations(s) && o.json)
        fprintf(stderr, "zpf-sim: %s\n", sim_violation_text(s));

    int rc = (!converged || sim_violations(s) > 0 || undetected > 0) ? 1 : 0;
    sim_free(s);
    free(detect_first);
    free(detect_all);
    free(r.victim);
    free(r.slot);
    free(r.crash_at);
    free(r.first_fail);
    free(r.all_fail);
    free(r.fail_count);
    free(r.failed);
    return rc;
}
