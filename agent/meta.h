/*
 * What an agent tells the cluster about itself, in the core's opaque
 * member metadata (at most ZPF_META_MAX bytes): zone, provider, instance
 * id, tags, and the version of its keyring, so that an agent that sees a
 * peer with a newer keyring fetches it and `zpfctl keys list` can say how
 * many members have caught up.
 *
 * Encoding: a msgpack map with short string keys
 *     "z" zone, "p" provider, "i" instance_id   (str)
 *     "t" tags                                   (map of str to str)
 *     "k" keyring version                        (uint)
 *     "d" keyring digest                         (uint, 32 bits)
 * Unknown keys are skipped, so later versions can add fields; a missing
 * key reads as empty.
 */
#ifndef ZPF_AGENT_META_H
#define ZPF_AGENT_META_H

#include <stddef.h>
#include <stdint.h>

#include "zpf/gossip.h"

#define ZPF_META_STR_MAX 128  /* zone, provider, instance id, a tag */
#define ZPF_META_TAGS_MAX 32

struct zpf_meta_tag {
    char key[ZPF_META_STR_MAX];
    char value[ZPF_META_STR_MAX];
};

struct zpf_meta {
    char zone[ZPF_META_STR_MAX];
    char provider[ZPF_META_STR_MAX];
    char instance_id[ZPF_META_STR_MAX];
    struct zpf_meta_tag tags[ZPF_META_TAGS_MAX];
    uint32_t ntags;
    uint64_t keyring_version;
    /* Which keyring: two changes made at once can share a version, and the
     * pair (version, digest) orders them the same way everywhere. */
    uint32_t keyring_digest;
};

/* Encode into out (cap bytes, normally ZPF_META_MAX).  Returns the length,
 * or ZPF_E2BIG when it does not fit (too many or too long tags). */
int zpf_meta_encode(const struct zpf_meta *m, uint8_t *out, size_t cap);

/* Decode hostile bytes.  Returns 0, or ZPF_EMSGPACK / ZPF_EFIELD /
 * ZPF_ELIMIT with *m zeroed.  Empty input is an empty record. */
int zpf_meta_decode(const uint8_t *buf, size_t len, struct zpf_meta *m);

#endif
