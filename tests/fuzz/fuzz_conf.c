/*
 * libFuzzer target for the configuration parser (agent/conf.c).
 *
 * The input is a whole YAML file.  Whatever it holds, zpf_conf_parse() must
 * return without crashing, leaking or reading out of bounds, and either
 * fill a struct that frees cleanly or leave nothing to free.  A parsed
 * configuration is also diffed against itself, which walks every field's
 * comparison and must find no difference.  Short inputs are additionally
 * fed, NUL-terminated, to the two string helpers.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

#define HELPER_INPUT_MAX 512 /* host:port and durations are short */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct zpf_conf zero;
    struct zpf_conf c;
    char err[ZPF_CONF_ERR_MAX], list[256];

    /* An absolute name: relative paths resolve without getcwd(). */
    int rc = zpf_conf_parse((const char *)data, size, "/fuzz/zpf.yaml", &c,
                            err, sizeof err);
    if (rc == 0) {
        if (zpf_conf_diff_fixed(&c, &c, list, sizeof list) != 0 ||
            zpf_conf_diff_live(&c, &c, list, sizeof list) != 0)
            abort();
        zpf_conf_free(&c);
    } else if (memcmp(&c, &zero, sizeof c) != 0 || err[0] == '\0') {
        abort();
    }

    if (size < HELPER_INPUT_MAX) {
        char s[HELPER_INPUT_MAX], host[ZPF_CONF_HOST_MAX];
        uint16_t port;
        uint64_t ms;
        memcpy(s, data, size);
        s[size] = '\0';
        zpf_conf_split_hostport(s, host, sizeof host, &port, 7946);
        zpf_conf_duration(s, &ms);
    }
    return 0;
}
