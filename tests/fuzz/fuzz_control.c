/*
 * Fuzz target for the control request parser (agent/control.c).
 *
 * The input is parsed whole, as one line, and then split at "\n" the way
 * the server frames a connection, each piece parsed on its own.  Every
 * parse, accepted or not, is turned into the reply the server would send,
 * and that reply must be exactly one line of valid JSON: a reply that
 * breaks framing would desynchronise every later request on the
 * connection.  Violations abort so libFuzzer reports them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reply(const char *line, size_t len)
{
    if (line == NULL || len == 0 || line[len - 1] != '\n' ||
        memchr(line, '\n', len - 1) != NULL)
        abort();
    json_error_t je;
    json_t *r = json_loadb(line, len - 1, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(r) ||
        json_integer_value(json_object_get(r, "v")) != ZPF_CTL_VERSION ||
        !json_is_boolean(json_object_get(r, "ok")))
        abort();
    json_decref(r);
}

static void one_line(const char *p, size_t n)
{
    struct zpf_ctl_request req;
    const char *code = NULL;
    char err[ZPF_CTL_ERR_MAX];
    err[0] = '\0';
    int rc = zpf_ctl_parse_request(p, n, &req, &code, err, sizeof err);
    char *line;
    size_t len = 0;
    if (rc == 0) {
        size_t c = strlen(req.cmd);
        if (c == 0 || c > ZPF_CTL_CMD_MAX || !json_is_object(req.args) ||
            code != NULL)
            abort();
        if (req.id != NULL && (json_is_object(req.id) ||
                               json_is_array(req.id)))
            abort();
        line = zpf_ctl_reply_ok(req.id, req.args, &len);
    } else {
        if (code == NULL || err[0] == '\0')
            abort();
        line = zpf_ctl_reply_error(req.id, code, err, &len);
    }
    check_reply(line, len);
    free(line);
    zpf_ctl_request_clear(&req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    one_line(p, size);

    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && p[i] != '\n')
            continue;
        size_t n = i - start;
        if (n > 0 && p[start + n - 1] == '\r')
            n--;
        if (n > 0 && i < size)  /* a whole input is covered above */
            one_line(p + start, n);
        start = i + 1;
    }
    return 0;
}
