/* Member metadata arrives from the cluster: decode any bytes; whatever
 * decodes must encode and decode back to the same record. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "meta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Field by field: bytes after a string's NUL may differ. */
static int same(const struct zpf_meta *a, const struct zpf_meta *b)
{
    if (strcmp(a->zone, b->zone) || strcmp(a->provider, b->provider) ||
        strcmp(a->instance_id, b->instance_id) || a->ntags != b->ntags ||
        a->keyring_version != b->keyring_version)
        return 0;
    for (uint32_t i = 0; i < a->ntags; i++)
        if (strcmp(a->tags[i].key, b->tags[i].key) ||
            strcmp(a->tags[i].value, b->tags[i].value))
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zpf_meta m, back;
    if (zpf_meta_decode(data, size, &m) < 0)
        return 0;
    uint8_t buf[4 * ZPF_META_MAX];
    int n = zpf_meta_encode(&m, buf, sizeof buf);
    if (n < 0)
        abort(); /* a decoded record always fits 4x its bound */
    if (n <= ZPF_META_MAX) {
        if (zpf_meta_decode(buf, (size_t)n, &back) != 0 ||
            !same(&m, &back))
            abort();
    }
    return 0;
}
