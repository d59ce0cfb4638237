/*
 * zpfd: the zpf agent.  Runs in the foreground (systemd style) until
 * SIGTERM/SIGINT, which announce a graceful leave first.
 *
 *   zpfd -c FILE            run
 *   zpfd --check -c FILE    validate the config and exit (0 valid, 1 not)
 *   zpfd --version | --help
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <uv.h>

#include "agent.h"
#include "conf.h"

#define DEFAULT_CONF "/etc/zpf/zpf.yaml"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: zpfd [-c FILE] [--check]\n"
            "       zpfd --version | --help\n"
            "\n"
            "  -c, --config FILE  the configuration (default " DEFAULT_CONF ")\n"
            "      --check        validate the configuration and exit:\n"
            "                     0 when valid, 1 with FILE:LINE:COL: message\n"
            "  -V, --version      print the version\n"
            "  -h, --help         this text\n"
            "\n"
            "Signals: SIGTERM/SIGINT leave the cluster gracefully and exit;\n"
            "SIGHUP reloads log level, tags, health checks and the keyring file.\n"
            "Every key of the configuration is documented in zpf.yaml.example.\n");
}

int main(int argc, char **argv)
{
    const char *path = DEFAULT_CONF;
    bool check = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (++i == argc) {
                fprintf(stderr, "zpfd: %s needs a file\n", a);
                usage(stderr);
                return 2;
            }
            path = argv[i];
        } else if (strcmp(a, "--check") == 0) {
            check = true;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("zpfd %s (protocol %d)\n", ZPF_VERSION,
                   ZPF_PROTOCOL_VERSION);
            return 0;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "zpfd: unknown argument %s\n", a);
            usage(stderr);
            return 2;
        }
    }

    struct zpf_conf conf;
    char err[ZPF_CONF_ERR_MAX];
    if (zpf_conf_load(path, &conf, err, sizeof err) < 0) {
        fprintf(stderr, "zpfd: %s\n", err);
        return 1;
    }
    if (check) {
        /* The keyring file too: a key that cannot be read stops the agent
         * at start just as surely as a typo in the YAML. */
        uint8_t keys[ZPF_CONF_KEYS_MAX][ZPF_CONF_KEY_LEN];
        err[0] = '\0';
        if (conf.security.keyring &&
            zpf_conf_read_keyring(conf.security.keyring, keys,
                                  ZPF_CONF_KEYS_MAX, err, sizeof err) <= 0) {
            /* The file is not part of the config (zpfd rewrites it when
             * keys rotate): warn, so a config can be checked before the
             * key is installed. */
            if (err[0] == '\0')
                snprintf(err, sizeof err, "%s: no keys",
                         conf.security.keyring);
            fprintf(stderr, "zpfd: warning: %s\n", err);
        }
        sodium_memzero(keys, sizeof keys);
        printf("%s: ok\n", path);
        zpf_conf_free(&conf);
        return 0;
    }

    /* A write to a closed control client or log pipe must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    if (uv_loop_init(&loop) < 0) {
        fprintf(stderr, "zpfd: cannot create the event loop\n");
        return 1;
    }
    struct zpf_agent *agent;
    int rc = zpf_agent_start(&loop, path, &conf, &agent, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "zpfd: %s\n", err);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    int code = zpf_agent_exit_code(agent);
    zpf_agent_free(agent);
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "zpfd: handles left open at exit\n");
    return code;
}
