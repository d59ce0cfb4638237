/* Member metadata codec: round trip, limits, hostile bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "meta.h"

static void test_round_trip(void **state)
{
    (void)state;
    struct zpf_meta m = {0}, back;
    strcpy(m.zone, "fsn1-dc14");
    strcpy(m.provider, "hetzner");
    strcpy(m.instance_id, "12345678");
    m.ntags = 2;
    strcpy(m.tags[0].key, "role");
    strcpy(m.tags[0].value, "db");
    strcpy(m.tags[1].key, "tier");
    strcpy(m.tags[1].value, "");
    m.keyring_version = 1ull << 40;
    m.keyring_digest = 0xdeadbeef;
    uint8_t buf[ZPF_META_MAX];
    int n = zpf_meta_encode(&m, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(zpf_meta_decode(buf, (size_t)n, &back), 0);
    assert_memory_equal(&m, &back, sizeof m);
}

static void test_empty_is_empty_record(void **state)
{
    (void)state;
    struct zpf_meta m;
    memset(&m, 0xff, sizeof m);
    assert_int_equal(zpf_meta_decode(NULL, 0, &m), 0);
    assert_string_equal(m.zone, "");
    assert_int_equal(m.ntags, 0);
    assert_int_equal(m.keyring_version, 0);
}

static void test_too_big_refused(void **state)
{
    (void)state;
    struct zpf_meta m = {0};
    m.ntags = ZPF_META_TAGS_MAX;
    for (unsigned i = 0; i < m.ntags; i++) {
        snprintf(m.tags[i].key, sizeof m.tags[i].key, "key%u", i);
        memset(m.tags[i].value, 'v', 60);
    }
    uint8_t buf[ZPF_META_MAX];
    assert_int_equal(zpf_meta_encode(&m, buf, sizeof buf), ZPF_E2BIG);
}

static void test_unknown_keys_skipped(void **state)
{
    (void)state;
    /* {"z": "a", "x": [1, 2], "k": 7} */
    const uint8_t buf[] = {0x83, 0xa1, 'z', 0xa1, 'a', 0xa1, 'x', 0x92, 1, 2,
                           0xa1, 'k', 7};
    struct zpf_meta m;
    assert_int_equal(zpf_meta_decode(buf, sizeof buf, &m), 0);
    assert_string_equal(m.zone, "a");
    assert_int_equal(m.keyring_version, 7);
}

static void test_hostile_bytes(void **state)
{
    (void)state;
    struct zpf_meta m;
    const uint8_t not_map[] = {0x93, 1, 2, 3};
    assert_int_equal(zpf_meta_decode(not_map, sizeof not_map, &m),
                     ZPF_EFIELD);
    const uint8_t truncated[] = {0x81, 0xa1, 'z', 0xa5, 'a'};
    assert_int_equal(zpf_meta_decode(truncated, sizeof truncated, &m),
                     ZPF_EMSGPACK);
    const uint8_t trailing[] = {0x80, 0x80};
    assert_int_equal(zpf_meta_decode(trailing, sizeof trailing, &m),
                     ZPF_EMSGPACK);
    const uint8_t zone_int[] = {0x81, 0xa1, 'z', 5};
    assert_int_equal(zpf_meta_decode(zone_int, sizeof zone_int, &m),
                     ZPF_EFIELD);
    const uint8_t nul[] = {0x81, 0xa1, 'z', 0xa2, 'a', 0};
    assert_int_equal(zpf_meta_decode(nul, sizeof nul, &m), ZPF_ELIMIT);
    const uint8_t neg_version[] = {0x81, 0xa1, 'k', 0xff};
    assert_int_equal(zpf_meta_decode(neg_version, sizeof neg_version, &m),
                     ZPF_EFIELD);
    /* A zone of 200 bytes: over ZPF_META_STR_MAX. */
    uint8_t longzone[210] = {0x81, 0xa1, 'z', 0xd9, 200};
    memset(longzone + 5, 'q', 200);
    assert_int_equal(zpf_meta_decode(longzone, 205, &m), ZPF_ELIMIT);
    assert_string_equal(m.zone, ""); /* zeroed on failure */
    uint8_t big[ZPF_META_MAX + 1] = {0x80};
    assert_int_equal(zpf_meta_decode(big, sizeof big, &m), ZPF_ELIMIT);
}

/* Regression: a header claiming 2^32 entries made msgpack-c's unpacker
 * allocate gigabytes before reading them.  The claim must be refused. */
static void test_huge_claims_refused(void **state)
{
    (void)state;
    struct zpf_meta m;
    const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'z'};
    assert_int_equal(zpf_meta_decode(map32, sizeof map32, &m), ZPF_EMSGPACK);
    const uint8_t arr32[] = {0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(zpf_meta_decode(arr32, sizeof arr32, &m), ZPF_EMSGPACK);
    const uint8_t str32[] = {0x81, 0xa1, 'z', 0xdb, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(zpf_meta_decode(str32, sizeof str32, &m), ZPF_EMSGPACK);
    /* Nesting beyond the skip depth. */
    uint8_t deep[40] = {0x81, 0xa1, 'x'};
    for (int i = 3; i < 39; i++)
        deep[i] = 0x91;
    deep[39] = 0xc0;
    assert_int_equal(zpf_meta_decode(deep, sizeof deep, &m), ZPF_ELIMIT);
}

/* Values of types zpfd does not write are skipped under unknown keys. */
static void test_unknown_types_skipped(void **state)
{
    (void)state;
    const uint8_t buf[] = {0x87,
                           0xa1, 'a', 0xc4, 2, 9, 9,          /* bin 8 */
                           0xa1, 'b', 0xd4, 1, 7,             /* fixext 1 */
                           0xa1, 'c', 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, /* f64 */
                           0xa1, 'q', 0xff,                   /* -1 */
                           0x05, 0xc3,                        /* 5: true */
                           0xa1, 'e', 0x81, 0xa1, 'f', 0x90,  /* {f: []} */
                           0xa1, 'k', 0x09};
    struct zpf_meta m;
    assert_int_equal(zpf_meta_decode(buf, sizeof buf, &m), 0);
    assert_int_equal(m.keyring_version, 9);
    const uint8_t reserved[] = {0x81, 0xa1, 'a', 0xc1};
    assert_int_equal(zpf_meta_decode(reserved, sizeof reserved, &m),
                     ZPF_EMSGPACK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_is_empty_record),
        cmocka_unit_test(test_too_big_refused),
        cmocka_unit_test(test_unknown_keys_skipped),
        cmocka_unit_test(test_hostile_bytes),
        cmocka_unit_test(test_huge_claims_refused),
        cmocka_unit_test(test_unknown_types_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
