/*
 * Tests for the defaults and the SWIM/Lifeguard arithmetic (gossip/timing.c).
 *
 * The defaults are pinned figure for figure against memberlist's LAN profile,
 * because the point of choosing them is that a zpf cluster and a Serf
 * cluster behave alike; a silent drift would break every comparison.  The
 * suspicion and retransmit formulas are pinned at the points where their
 * rounding and their clamps change behaviour (powers of ten, the tiny-cluster
 * case, the confirmation that reaches the minimum).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "zpf/gossip.h"

static struct zpf_config defaults(void)
{
    struct zpf_config c;
    /* Poison first: zpf_config_default must set every field itself. */
    memset(&c, 0xa5, sizeof c);
    zpf_config_default(&c);
    return c;
}

/* --- defaults ------------------------------------------------------------- */

static void test_default_lan_profile(void **state)
{
    (void)state;
    struct zpf_config c = defaults();
    assert_int_equal(c.probe_interval_ms, 1000);
    assert_int_equal(c.probe_timeout_ms, 500);
    assert_int_equal(c.indirect_checks, 3);
    assert_int_equal(c.suspicion_mult, 4);
    assert_int_equal(c.suspicion_max_mult, 6);
    assert_int_equal(c.gossip_interval_ms, 200);
    assert_int_equal(c.gossip_nodes, 3);
    assert_int_equal(c.retransmit_mult, 4);
    assert_int_equal(c.push_pull_interval_ms, 30000);
    assert_int_equal(c.packet_budget, 1400);
    assert_int_equal(c.awareness_max, 8);
}

static void test_default_zpf_additions(void **state)
{
    (void)state;
    struct zpf_config c = defaults();
    /* timing.c's essay: the counter must move several times per probe
     * period to be evidence on that time scale. */
    assert_int_equal(c.heartbeat_interval_ms, 250);
    assert_true(c.heartbeat_interval_ms * 2 <= c.probe_interval_ms);
    assert_int_equal(c.counter_timeout_ms, 10000);
    assert_int_equal(c.tombstone_ms, 86400000u);
    assert_int_equal(c.max_members, 65536);
}

static void test_default_identity_is_empty(void **state)
{
    (void)state;
    struct zpf_config c = defaults();
    /* Identity is the host's job: a default must not invent a name. */
    assert_null(c.name);
    assert_null(c.cluster);
    assert_null(c.meta);
    assert_int_equal(c.meta_len, 0);
    assert_int_equal(c.incarnation, 0);
    assert_int_equal(c.addr.family, 0);
    assert_int_equal(c.addr.port, 0);
}

/* --- suspicion timeout ---------------------------------------------------- */

static void test_suspicion_min_scales_with_log10_n(void **state)
{
    (void)state;
    struct zpf_config c = defaults();
    /* With every expected confirmation in, the timeout is the minimum:
     * 4 * max(1, log10 n) * 1000. */
    assert_int_equal(zpf_suspicion_timeout(&c, 1, 2), 4000);
    assert_int_equal(zpf_suspicion_timeout(&c, 10, 2), 4000);
    assert_int_equal(zpf_suspicion_timeout(&c, 100, 2), 8000);
    assert_int_equal(zpf_suspicion_timeout(&c, 1000, 2), 12000);
    /* Below ten members the log is clamped to 1, not allowed under it. */
    assert_int_equal(zpf_suspicion_timeout(&c, 5, 2), 4000);
    /* n = 0 must not reach log10(0). */
    assert_int_equal(zpf_suspicion_timeout(&c, 0, 0), 4000);
}

static void test_suspicion_max_is_mult_times_min(void **state)
{
    (void)state;
    struct zpf_config c = defaults();
    assert_int_equal(zpf_suspicion_timeout(&c, 10, 0), 24000);
    assert_int_equal(zpf_suspicion_timeout(&c, 100, 0), 48000);
    assert_int_equal(zpf_suspicion_timeout(&c, 1000, 0), 72000);
}

static void test_suspicion_one_confirmation_log_formula(void **state)
{
    (void)state;
    struct zpf_config c = defaults();
    const size_t ns[] = {4, 10, 100, 1000};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        double min = 4.0 * fmax(1.0, log10((double)ns[i])) * 1000.0;
        double max = 6.0 * min;
        double want = max - (max - min) * log(2.0) / log(3.0);
        assert_int_equal(zpf_suspicion_timeout(&c, ns[i], 1),
                         (uint64_t)floor(want));
    }
    /* One figure by hand, so the test does not only mirror the code:
     * 24000 - 20000 * 0.63093 = 11381.4 */
    assert_int_equal(zpf_suspicion_timeout(&c, 10, 1), 11381);
}

static void test_suspicion_monotone_reaches_min_at_k(void **state)
{
    (void)state;
    struct zpf_config c = defaults();
    const size_t ns[] = {4, 7, 10, 50, 100, 1000, 10000};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        double exact = 4.0 * fmax(1.0, log10((double)ns[i])) * 1000.0;
        uint64_t min = zpf_suspicion_timeout(&c, ns[i], 1000);
        uint64_t prev = zpf_suspicion_timeout(&c, ns[i], 0);
        /* Truncated once, from the exact product: not 6 * truncated min. */
        assert_int_equal(min, (uint64_t)exact);
        assert_int_equal(prev, (uint64_t)(6.0 * exact));
        for (uint32_t k = 1; k <= 40; k++) {
            uint64_t t = zpf_suspicion_timeout(&c, ns[i], k);
            assert_true(t <= prev);
            assert_true(t >= min);
            prev = t;
        }
        /* k = suspicion_mult - 2 = 2 confirmations reach the minimum, and
         * one is not enough. */
        assert_int_equal(zpf_suspicion_timeout(&c, ns[i], 2), min);
        assert_true(zpf_suspicion_timeout(&c, ns[i], 1) > min);
        assert_int_equal(zpf_suspicion_timeout(&c, ns[i], UINT32_MAX), min);
    }
}

static void test_suspicion_tiny_cluster_is_always_min(void **state)
{
    (void)state;
    struct zpf_config c = defaults();
    /* n - 2 < k: the cluster cannot give k independent confirmations, so
     * waiting for them would only make detection slower. */
    for (size_t n = 0; n <= 3; n++)
        for (uint32_t k = 0; k <= 5; k++)
            assert_int_equal(zpf_suspicion_timeout(&c, n, k), 4000);
    /* n = 4 is the first size that can give 2 confirmations. */
    assert_int_equal(zpf_suspicion_timeout(&c, 4, 0), 24000);
}

static void test_suspicion_follows_config(void **state)
{
    (void)state;
    struct zpf_config c = defaults();
    c.probe_interval_ms = 500;
    c.suspicion_mult = 5;
    c.suspicion_max_mult = 3;
    /* min = 5 * 2 * 500 = 5000, max = 15000, k = 3 */
    assert_int_equal(zpf_suspicion_timeout(&c, 100, 3), 5000);
    assert_int_equal(zpf_suspicion_timeout(&c, 100, 0), 15000);
    double want = 15000.0 - 10000.0 * log(2.0) / log(4.0); /* 10000 */
    assert_int_equal(zpf_suspicion_timeout(&c, 100, 1), (uint64_t)floor(want));
    /* max_mult 1: nothing to shrink. */
    c.suspicion_max_mult = 1;
    assert_int_equal(zpf_suspicion_timeout(&c, 100, 0), 5000);
}

/* --- retransmit limit ----------------------------------------------------- */

static void test_retransmit_limit(void **state)
{
    (void)state;
    struct zpf_config c = defaults();
    assert_int_equal(zpf_retransmit_limit(&c, 1), 4);
    assert_int_equal(zpf_retransmit_limit(&c, 9), 4);
    assert_int_equal(zpf_retransmit_limit(&c, 10), 8);
    assert_int_equal(zpf_retransmit_limit(&c, 99), 8);
    assert_int_equal(zpf_retransmit_limit(&c, 100), 12);
    assert_int_equal(zpf_retransmit_limit(&c, 999), 12);
    assert_int_equal(zpf_retransmit_limit(&c, 1000), 16);
    /* An empty view still sends each fact at least retransmit_mult times. */
    assert_int_equal(zpf_retransmit_limit(&c, 0), 4);
    c.retransmit_mult = 3;
    assert_int_equal(zpf_retransmit_limit(&c, 100), 9);
}

/* --- names ---------------------------------------------------------------- */

static void test_state_names(void **state)
{
    (void)state;
    assert_string_equal(zpf_state_name(ZPF_STATE_ALIVE), "alive");
    assert_string_equal(zpf_state_name(ZPF_STATE_SUSPECT), "suspect");
    assert_string_equal(zpf_state_name(ZPF_STATE_DEAD), "dead");
    assert_string_equal(zpf_state_name(ZPF_STATE_LEFT), "left");
    assert_string_equal(zpf_state_name(ZPF_STATE_STALLED), "stalled");
    /* A value off the wire or from a newer library must still print. */
    assert_string_equal(zpf_state_name((enum zpf_state)5), "unknown");
    assert_string_equal(zpf_state_name((enum zpf_state)-1), "unknown");
}

static void test_event_names(void **state)
{
    (void)state;
    assert_string_equal(zpf_event_name(ZPF_EV_JOIN), "join");
    assert_string_equal(zpf_event_name(ZPF_EV_UPDATE), "update");
    assert_string_equal(zpf_event_name(ZPF_EV_SUSPECT), "suspect");
    assert_string_equal(zpf_event_name(ZPF_EV_ALIVE), "alive");
    assert_string_equal(zpf_event_name(ZPF_EV_FAIL), "fail");
    assert_string_equal(zpf_event_name(ZPF_EV_LEAVE), "leave");
    assert_string_equal(zpf_event_name(ZPF_EV_STALL), "stall");
    assert_string_equal(zpf_event_name(ZPF_EV_UNSTALL), "unstall");
    assert_string_equal(zpf_event_name(ZPF_EV_REAP), "reap");
    assert_string_equal(zpf_event_name((enum zpf_event_type)9), "unknown");
    assert_string_equal(zpf_event_name((enum zpf_event_type)-1), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_lan_profile),
        cmocka_unit_test(test_default_zpf_additions),
        cmocka_unit_test(test_default_identity_is_empty),
        cmocka_unit_test(test_suspicion_min_scales_with_log10_n),
        cmocka_unit_test(test_suspicion_max_is_mult_times_min),
        cmocka_unit_test(test_suspicion_one_confirmation_log_formula),
        cmocka_unit_test(test_suspicion_monotone_reaches_min_at_k),
        cmocka_unit_test(test_suspicion_tiny_cluster_is_always_min),
        cmocka_unit_test(test_suspicion_follows_config),
        cmocka_unit_test(test_retransmit_limit),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_event_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
