/*
 * Tests for the configuration file (agent/conf.c).
 *
 * Most tests are a YAML text and the exact message it must produce, whole
 * string, position included: the message is the interface an operator
 * sees, so a change to it should be a deliberate change to a test.  The
 * documents are built from a few fixed parts (NODE, GOSSIP, SEC) so line
 * numbers can be counted by eye.  Files (keyrings, the 2 MiB config) live in
 * one mkdtemp() directory removed at the end.  The tests run from the
 * repository root, where zpf.yaml.example is.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <sodium.h>

#include "conf.h"

#define F "zpf.yaml"

/* Lines 1-2, 3-5 and 6-7: a valid document is NODE GOSSIP SEC. */
#define NODE "node:\n  name: n1\n"
#define GOSSIP "gossip:\n  cluster: demo\n  bind: 127.0.0.1:7946\n"
#define SEC "security:\n  insecure: true\n"
#define OK NODE GOSSIP SEC

static const char MINIMAL[] =
    "node:\n"
    "  name: n1\n"
    "  data_dir: /var/lib/zpf/n1\n"
    "gossip:\n"
    "  cluster: demo\n"
    "  bind: 127.0.0.1:7946\n"
    "  join: [127.0.0.1:7947]\n"
    "security:\n"
    "  keyring: /etc/zpf/keyring     # one base64 key per line\n"
    "control:\n"
    "  socket: /run/zpf/n1.sock\n";

static int parse(const char *yaml, const char *file, struct zpf_conf *c,
                 char *err)
{
    return zpf_conf_parse(yaml, strlen(yaml), file, c, err,
                          ZPF_CONF_ERR_MAX);
}

static void ok(const char *yaml, struct zpf_conf *c)
{
    char err[ZPF_CONF_ERR_MAX];
    int rc = parse(yaml, F, c, err);
    if (rc != 0)
        print_message("unexpected error: %s\n", err);
    assert_int_equal(rc, 0);
}

struct bad {
    const char *yaml;
    const char *err;
};

/* Each document must fail with exactly this message, and leave nothing
 * behind in the output struct. */
static void expect_bad(const struct bad *cases, size_t n)
{
    static const struct zpf_conf zero;
    for (size_t i = 0; i < n; i++) {
        char err[ZPF_CONF_ERR_MAX];
        struct zpf_conf c;
        memset(&c, 0xa5, sizeof c);
        int rc = parse(cases[i].yaml, F, &c, err);
        if (rc != ZPF_EINVAL || strcmp(err, cases[i].err) != 0)
            print_message("case %zu:\n%s\n", i, cases[i].yaml);
        assert_int_equal(rc, ZPF_EINVAL);
        assert_string_equal(err, cases[i].err);
        assert_memory_equal(&c, &zero, sizeof c);
    }
}

#define EXPECT_BAD(cases) expect_bad(cases, sizeof(cases) / sizeof(cases[0]))

static char tmpdir[] = "/tmp/zpf-test-conf-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char cmd[PATH_MAX + 16];
    (void)state;
    if (strncmp(tmpdir, "/tmp/zpf-test-conf-", 19) != 0)
        return -1;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text, size_t len,
                              mode_t mode)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

static void addr_is(const struct zpf_addr *a, int af, const char *ip,
                    uint16_t port)
{
    uint8_t bin[16] = {0};
    assert_int_equal(inet_pton(af == ZPF_AF_INET ? AF_INET : AF_INET6, ip,
                               bin), 1);
    assert_int_equal(a->family, af);
    assert_int_equal(a->port, port);
    assert_memory_equal(a->ip, bin, af == ZPF_AF_INET ? 4 : 16);
}

/* --- good documents ------------------------------------------------------- */

static void test_minimal(void **state)
{
    struct zpf_conf c;
    struct zpf_config d;
    (void)state;
    ok(MINIMAL, &c);
    zpf_config_default(&d);

    assert_string_equal(c.node.name, "n1");
    assert_string_equal(c.node.zone, "");
    assert_string_equal(c.node.provider, "");
    assert_string_equal(c.node.instance_id, "");
    assert_int_equal(c.node.n_tags, 0);
    assert_null(c.node.tags);
    assert_string_equal(c.node.data_dir, "/var/lib/zpf/n1");

    assert_string_equal(c.gossip.cluster, "demo");
    addr_is(&c.gossip.bind, ZPF_AF_INET, "127.0.0.1", 7946);
    addr_is(&c.gossip.advertise, ZPF_AF_INET, "127.0.0.1", 7946);
    assert_int_equal(c.gossip.n_join, 1);
    assert_string_equal(c.gossip.join[0].host, "127.0.0.1");
    assert_int_equal(c.gossip.join[0].port, 7947);
    assert_int_equal(c.gossip.transport, ZPF_CONF_UDP);
    assert_true(c.gossip.tcp_fallback);
    assert_int_equal(c.gossip.leave_timeout_ms, 5000);
    assert_int_equal(c.gossip.join_retry_max_ms, 30000);

    /* The schema's defaults restate zpf_config_default(). */
    assert_int_equal(c.core.probe_interval_ms, d.probe_interval_ms);
    assert_int_equal(c.core.probe_timeout_ms, d.probe_timeout_ms);
    assert_int_equal(c.core.indirect_checks, d.indirect_checks);
    assert_int_equal(c.core.suspicion_mult, d.suspicion_mult);
    assert_int_equal(c.core.suspicion_max_mult, d.suspicion_max_mult);
    assert_int_equal(c.core.gossip_interval_ms, d.gossip_interval_ms);
    assert_int_equal(c.core.gossip_nodes, d.gossip_nodes);
    assert_int_equal(c.core.retransmit_mult, d.retransmit_mult);
    assert_int_equal(c.core.push_pull_interval_ms, d.push_pull_interval_ms);
    assert_int_equal(c.core.packet_budget, d.packet_budget);
    assert_int_equal(c.core.awareness_max, d.awareness_max);
    assert_int_equal(c.core.heartbeat_interval_ms, d.heartbeat_interval_ms);
    assert_int_equal(c.core.counter_timeout_ms, d.counter_timeout_ms);
    assert_int_equal(c.core.tombstone_ms, d.tombstone_ms);
    assert_int_equal(c.core.max_members, d.max_members);
    assert_int_equal(c.core.counter_fast_expiry, d.counter_fast_expiry);
    assert_int_equal(c.core.incarnation, 0);
    assert_null(c.core.meta);
    assert_ptr_equal(c.core.name, c.node.name);
    assert_ptr_equal(c.core.cluster, c.gossip.cluster);
    addr_is(&c.core.addr, ZPF_AF_INET, "127.0.0.1", 7946);

    assert_string_equal(c.security.keyring, "/etc/zpf/keyring");
    assert_int_equal(c.security.n_keys, 0);
    assert_false(c.security.insecure);
    assert_string_equal(c.control.socket, "/run/zpf/n1.sock");
    assert_string_equal(c.control.group, "");
    assert_string_equal(c.control.admin_group, "");
    assert_int_equal(c.health.interval_ms, 10000);
    assert_int_equal(c.health.timeout_ms, 2000);
    assert_int_equal(c.health.n_checks, 0);
    assert_int_equal(c.log.level, LOG_INFO);
    assert_string_equal(c.metrics.textfile, "");
    assert_int_equal(c.metrics.interval_ms, 15000);
    zpf_conf_free(&c);
    zpf_conf_free(&c); /* a freed struct frees again harmlessly */
    assert_null(c.node.name);
}

static void test_defaults_when_absent(void **state)
{
    struct zpf_conf c;
    (void)state;
    ok("node:\n  name: n1\ngossip:\n  cluster: demo\n"
       "  advertise: 10.0.0.5:7000\nsecurity:\n  insecure: true\n"
       "log:\nmetrics: ~\n", &c);
    assert_string_equal(c.node.data_dir, ZPF_DEFAULT_DATA_DIR);
    assert_string_equal(c.control.socket, ZPF_DEFAULT_SOCKET);
    addr_is(&c.gossip.bind, ZPF_AF_INET, "0.0.0.0", ZPF_DEFAULT_PORT);
    addr_is(&c.gossip.advertise, ZPF_AF_INET, "10.0.0.5", 7000);
    addr_is(&c.core.addr, ZPF_AF_INET, "10.0.0.5", 7000);
    assert_int_equal(c.gossip.n_join, 0);
    assert_null(c.security.keyring);
    assert_true(c.security.insecure);
    zpf_conf_free(&c);
}

static void test_hostname_default(void **state)
{
    struct zpf_conf c;
    char h[256];
    (void)state;
    assert_int_equal(gethostname(h, sizeof h), 0);
    h[sizeof h - 1] = '\0';
    h[strcspn(h, ".")] = '\0';
    ok(GOSSIP SEC, &c);
    assert_string_equal(c.node.name, h);
    assert_ptr_equal(c.core.name, c.node.name);
    zpf_conf_free(&c);
}

static void test_every_key(void **state)
{
    struct zpf_conf c;
    uint8_t k0[32], k1[32];
    char b0[64], b1[64], doc[2048];
    (void)state;
    for (int i = 0; i < 32; i++) {
        k0[i] = (uint8_t)i;
        k1[i] = (uint8_t)(0xff - i);
    }
    sodium_bin2base64(b0, sizeof b0, k0, 32, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(b1, sizeof b1, k1, 32, sodium_base64_VARIANT_ORIGINAL);
    snprintf(doc, sizeof doc,
             "node:\n"
             "  name: web-1.example\n"
             "  zone: eu-central-1a\n"
             "  provider: hetzner\n"
             "  instance_id: i-0abc\n"
             "  tags: {role: web, tier: \"front end\", empty: \"\"}\n"
             "  data_dir: /srv/zpf\n"
             "gossip:\n"
             "  cluster: prod\n"
             "  bind: '[::]:8000'\n"
             "  advertise: 192.0.2.10:8000\n"
             "  join: [db.example:7000, '[2001:db8::1]:7001', seed, "
             "10.1.1.1]\n"
             "  transport: tcp\n"
             "  tcp_fallback: false\n"
             "  leave_timeout: 0\n"
             "  join_retry_max: 1m30s\n"
             "  probe_interval: 2s\n"
             "  probe_timeout: 1s\n"
             "  indirect_checks: 5\n"
             "  suspicion_mult: 5\n"
             "  suspicion_max_mult: 7\n"
             "  gossip_interval: 300ms\n"
             "  gossip_nodes: 4\n"
             "  retransmit_mult: 3\n"
             "  push_pull_interval: 0s\n"
             "  packet_budget: 9000\n"
             "  awareness_max: 9\n"
             "  heartbeat_interval: 100ms\n"
             "  counter_timeout: 5s\n"
             "  tombstone: 1h\n"
             "  max_members: 1000\n"
             "  counter_fast_expiry: false\n"
             "security:\n"
             "  keys:\n"
             "    - %s\n"
             "    - \"  %s  \"\n"
             "  insecure: false\n"
             "control:\n"
             "  socket: /run/zpf/x.sock\n"
             "  group: zpf\n"
             "  admin_group: wheel\n"
             "health:\n"
             "  interval: 20s\n"
             "  timeout: 3s\n"
             "  checks:\n"
             "    - name: nginx\n"
             "      command: [pgrep, -x, nginx]\n"
             "    - {name: db, tcp: 'db.local:5432', interval: 5s}\n"
             "    - name: app\n"
             "      http: HTTP://[::1]/health?deep=1#frag\n"
             "      timeout: 1s\n"
             "    - name: root\n"
             "      http: http://127.0.0.1:8080\n"
             "log:\n"
             "  level: debug\n"
             "metrics:\n"
             "  textfile: /var/lib/node_exporter/zpf.prom\n"
             "  interval: 1m\n",
             b0, b1);
    ok(doc, &c);
    assert_string_equal(c.node.name, "web-1.example");
    assert_string_equal(c.node.zone, "eu-central-1a");
    assert_string_equal(c.node.provider, "hetzner");
    assert_string_equal(c.node.instance_id, "i-0abc");
    assert_int_equal(c.node.n_tags, 3);
    assert_string_equal(c.node.tags[0].key, "role");
    assert_string_equal(c.node.tags[0].value, "web");
    assert_string_equal(c.node.tags[1].key, "tier");
    assert_string_equal(c.node.tags[1].value, "front end");
    assert_string_equal(c.node.tags[2].key, "empty");
    assert_string_equal(c.node.tags[2].value, "");
    assert_string_equal(c.node.data_dir, "/srv/zpf");

    assert_string_equal(c.gossip.cluster, "prod");
    addr_is(&c.gossip.bind, ZPF_AF_INET6, "::", 8000);
    addr_is(&c.gossip.advertise, ZPF_AF_INET, "192.0.2.10", 8000);
    assert_int_equal(c.gossip.n_join, 4);
    assert_string_equal(c.gossip.join[0].host, "db.example");
    assert_int_equal(c.gossip.join[0].port, 7000);
    assert_string_equal(c.gossip.join[1].host, "2001:db8::1");
    assert_int_equal(c.gossip.join[1].port, 7001);
    assert_string_equal(c.gossip.join[2].host, "seed");
    assert_int_equal(c.gossip.join[2].port, 7946);
    assert_string_equal(c.gossip.join[3].host, "10.1.1.1");
    assert_int_equal(c.gossip.join[3].port, 7946);
    assert_int_equal(c.gossip.transport, ZPF_CONF_TCP);
    assert_false(c.gossip.tcp_fallback);
    assert_int_equal(c.gossip.leave_timeout_ms, 0);
    assert_int_equal(c.gossip.join_retry_max_ms, 90000);
    assert_int_equal(c.core.probe_interval_ms, 2000);
    assert_int_equal(c.core.probe_timeout_ms, 1000);
    assert_int_equal(c.core.indirect_checks, 5);
    assert_int_equal(c.core.suspicion_mult, 5);
    assert_int_equal(c.core.suspicion_max_mult, 7);
    assert_int_equal(c.core.gossip_interval_ms, 300);
    assert_int_equal(c.core.gossip_nodes, 4);
    assert_int_equal(c.core.retransmit_mult, 3);
    assert_int_equal(c.core.push_pull_interval_ms, 0);
    assert_int_equal(c.core.packet_budget, 9000);
    assert_int_equal(c.core.awareness_max, 9);
    assert_int_equal(c.core.heartbeat_interval_ms, 100);
    assert_int_equal(c.core.counter_timeout_ms, 5000);
    assert_int_equal(c.core.tombstone_ms, 3600000);
    assert_int_equal(c.core.max_members, 1000);
    assert_false(c.core.counter_fast_expiry);
    addr_is(&c.core.addr, ZPF_AF_INET, "192.0.2.10", 8000);

    assert_null(c.security.keyring);
    assert_int_equal(c.security.n_keys, 2);
    assert_memory_equal(c.security.keys[0], k0, 32);
    assert_memory_equal(c.security.keys[1], k1, 32);
    assert_false(c.security.insecure);
    assert_string_equal(c.control.socket, "/run/zpf/x.sock");
    assert_string_equal(c.control.group, "zpf");
    assert_string_equal(c.control.admin_group, "wheel");

    assert_int_equal(c.health.interval_ms, 20000);
    assert_int_equal(c.health.timeout_ms, 3000);
    assert_int_equal(c.health.n_checks, 4);
    const struct zpf_conf_check *k = c.health.checks;
    assert_string_equal(k[0].name, "nginx");
    assert_int_equal(k[0].kind, ZPF_CONF_CHECK_COMMAND);
    assert_int_equal(k[0].argc, 3);
    assert_string_equal(k[0].argv[0], "pgrep");
    assert_string_equal(k[0].argv[2], "nginx");
    assert_null(k[0].argv[3]);
    assert_null(k[0].target);
    assert_int_equal(k[0].interval_ms, 20000); /* from health */
    assert_int_equal(k[0].timeout_ms, 3000);
    assert_int_equal(k[1].kind, ZPF_CONF_CHECK_TCP);
    assert_string_equal(k[1].target, "db.local:5432");
    assert_string_equal(k[1].host, "db.local");
    assert_int_equal(k[1].port, 5432);
    assert_null(k[1].path);
    assert_int_equal(k[1].interval_ms, 5000);
    assert_int_equal(k[1].timeout_ms, 3000);
    assert_int_equal(k[2].kind, ZPF_CONF_CHECK_HTTP);
    assert_string_equal(k[2].target, "HTTP://[::1]/health?deep=1#frag");
    assert_string_equal(k[2].host, "::1");
    assert_int_equal(k[2].port, 80);
    assert_string_equal(k[2].path, "/health?deep=1");
    assert_int_equal(k[2].interval_ms, 20000);
    assert_int_equal(k[2].timeout_ms, 1000);
    assert_string_equal(k[3].path, "/");
    assert_int_equal(k[3].port, 8080);
    assert_int_equal(c.log.level, LOG_DEBUG);
    assert_string_equal(c.metrics.textfile,
                        "/var/lib/node_exporter/zpf.prom");
    assert_int_equal(c.metrics.interval_ms, 60000);
    zpf_conf_free(&c);
}

static void test_example(void **state)
{
    struct zpf_conf c;
    char err[ZPF_CONF_ERR_MAX];
    (void)state;
    int rc = zpf_conf_load("zpf.yaml.example", &c, err, sizeof err);
    if (rc)
        print_message("%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(c.node.name, "n1");
    assert_string_equal(c.gossip.cluster, "demo");
    assert_string_equal(c.security.keyring, "/etc/zpf/keyring");
    assert_string_equal(c.control.socket, "/run/zpf/n1.sock");
    zpf_conf_free(&c);

    /* ... and documents every key of the schema. */
    FILE *f = fopen("zpf.yaml.example", "r");
    assert_non_null(f);
    static char text[64 * 1024];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    struct zpf_conf_keyinfo ki;
    size_t i;
    for (i = 0; zpf_conf_keys(i, &ki) == 0; i++) {
        char want[128];
        snprintf(want, sizeof want, " %s:", ki.key);
        if (strstr(text, want) == NULL)
            print_message("%s.%s is not in the example\n", ki.section,
                          ki.key);
        assert_non_null(strstr(text, want));
        assert_non_null(ki.doc);
    }
    assert_true(i > 40);
    assert_int_equal(zpf_conf_keys(i, &ki), ZPF_ENOENT);
    assert_int_equal(zpf_conf_keys(0, NULL), ZPF_ENOENT);
}

static void test_keys_schema(void **state)
{
    struct zpf_conf_keyinfo ki;
    bool cluster = false, level = false, socket = false, check = false;
    (void)state;
    for (size_t i = 0; zpf_conf_keys(i, &ki) == 0; i++) {
        if (strcmp(ki.section, "gossip") == 0 &&
            strcmp(ki.key, "cluster") == 0) {
            cluster = true;
            assert_true(ki.required);
            assert_null(ki.def);
        }
        if (strcmp(ki.section, "log") == 0) {
            level = true;
            assert_true(ki.live);
            assert_string_equal(ki.def, "info");
        }
        if (strcmp(ki.section, "control") == 0 &&
            strcmp(ki.key, "socket") == 0) {
            socket = true;
            assert_false(ki.live);
            assert_string_equal(ki.def, ZPF_DEFAULT_SOCKET);
        }
        if (strcmp(ki.section, "health.checks[]") == 0 &&
            strcmp(ki.key, "name") == 0)
            check = ki.required;
    }
    assert_true(cluster && level && socket && check);
}

static void test_relative_paths(void **state)
{
    struct zpf_conf c;
    char cwd[PATH_MAX], want[PATH_MAX + 64], err[ZPF_CONF_ERR_MAX];
    static const char doc[] =
        "node:\n  name: n1\n  data_dir: data\n"
        "gossip:\n  cluster: demo\n  bind: 127.0.0.1:7946\n"
        "security:\n  keyring: ./keys//ring\n"
        "control:\n  socket: ../run/s.sock\n"
        "metrics:\n  textfile: .\n";
    (void)state;
    assert_int_equal(parse(doc, "/etc/zpf/zpf.yaml", &c, err), 0);
    assert_string_equal(c.node.data_dir, "/etc/zpf/data");
    assert_string_equal(c.security.keyring, "/etc/zpf/keys//ring");
    assert_string_equal(c.control.socket, "/etc/zpf/../run/s.sock");
    assert_string_equal(c.metrics.textfile, "/etc/zpf");
    zpf_conf_free(&c);

    assert_int_equal(parse(doc, "/zpf.yaml", &c, err), 0);
    assert_string_equal(c.node.data_dir, "/data");
    zpf_conf_free(&c);

    /* A relative file name is taken from the working directory. */
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(parse(doc, "conf/zpf.yaml", &c, err), 0);
    snprintf(want, sizeof want, "%s/conf/data", cwd);
    assert_string_equal(c.node.data_dir, want);
    zpf_conf_free(&c);
    assert_int_equal(parse(doc, "zpf.yaml", &c, err), 0);
    snprintf(want, sizeof want, "%s/data", cwd);
    assert_string_equal(c.node.data_dir, want);
    zpf_conf_free(&c);
    assert_int_equal(parse(doc, "./zpf.yaml", &c, err), 0);
    assert_string_equal(c.node.data_dir, want);
    zpf_conf_free(&c);
    assert_int_equal(parse(doc, NULL, &c, err), 0);
    assert_string_equal(c.node.data_dir, want);
    zpf_conf_free(&c);

    /* The socket must still fit a sockaddr_un once resolved. */
    char dir[200];
    memset(dir, 'd', sizeof dir - 1);
    dir[0] = '/';
    dir[sizeof dir - 1] = '\0';
    char file[256];
    snprintf(file, sizeof file, "%s/zpf.yaml", dir);
    assert_int_equal(parse(doc, file, &c, err), ZPF_EINVAL);
    snprintf(want, sizeof want,
             "%s:10:11: control.socket: the path is 213 bytes once "
             "resolved, but a UNIX socket path may have at most 107; "
             "choose a shorter one", file);
    assert_string_equal(err, want);
}

static void test_no_err_buffer(void **state)
{
    struct zpf_conf c;
    (void)state;
    assert_int_equal(zpf_conf_parse("x: 1", 4, F, &c, NULL, 0), ZPF_EINVAL);
    assert_int_equal(zpf_conf_parse(OK, strlen(OK), F, &c, NULL, 0), 0);
    zpf_conf_free(&c);
    zpf_conf_free(NULL);
    char err[8];
    assert_int_equal(zpf_conf_parse("x: 1", 4, F, &c, err, sizeof err),
                     ZPF_EINVAL);
    assert_string_equal(err, "zpf.yam"); /* truncated, terminated */
    assert_int_equal(zpf_conf_parse(OK, 0, F, NULL, err, sizeof err),
                     ZPF_EINVAL);
}

/* --- bad documents -------------------------------------------------------- */

static void test_unknown_keys(void **state)
{
    static const struct bad cases[] = {
        {"nod:\n  name: n1\n",
         F ":1:1: unknown section 'nod'; did you mean 'node'?"},
        {OK "tasks:\n  - x\n",
         F ":8:1: unknown section 'tasks'; known sections: node, gossip, "
           "security, control, health, log, metrics"},
        {NODE "  nmae: n2\n" GOSSIP SEC,
         F ":3:3: node: unknown key 'nmae'; did you mean 'name'?"},
        {NODE GOSSIP "  probe_intervall: 1s\n" SEC,
         F ":6:3: gossip: unknown key 'probe_intervall'; did you mean "
           "'probe_interval'?"},
        {OK "  keyfile: /k\n",
         F ":8:3: security: unknown key 'keyfile'; known keys: keyring, "
           "keys, insecure"},
        {OK "control:\n  sock: /s\n",
         F ":9:3: control: unknown key 'sock'; did you mean 'socket'?"},
        {OK "health:\n  checks:\n    - name: a\n      tcp: h:1\n"
            "      port: 1\n",
         F ":12:7: health.checks[0]: unknown key 'port'; known keys: name, "
           "command, tcp, http, interval, timeout"},
        {OK "log:\n  lvl: debug\n",
         F ":9:3: log: unknown key 'lvl'; did you mean 'level'?"},
        {OK "metrics:\n  textfil: /m\n",
         F ":9:3: metrics: unknown key 'textfil'; did you mean 'textfile'?"},
        {OK "log:\n  \"le\\tvel\": info\n",
         F ":9:3: log: unknown key 'le\\x09vel'; did you mean 'level'?"},
        {OK "log:\n  \"x\\ty\": info\n",
         F ":9:3: log: unknown key 'x\\x09y'; known keys: level"},
        {OK "log:\n  [a]: info\n",
         F ":9:3: log: a key must be a name, found a list"},
        {OK "[a]: 1\n", F ":8:1: a section must be a name, found a list"},
    };
    (void)state;
    EXPECT_BAD(cases);
}

static void test_wrong_types(void **state)
{
    static const struct bad cases[] = {
        {"node:\n  name: {a: 1}\n" GOSSIP SEC,
         F ":2:9: node.name: expected a string, found a mapping"},
        {"node:\n  name: [n1]\n" GOSSIP SEC,
         F ":2:9: node.name: expected a string, found a list"},
        {"node: [a]\n" GOSSIP SEC,
         F ":1:7: node: expected a mapping of keys, found a list"},
        {"node: n1\n" GOSSIP SEC,
         F ":1:7: node: expected a mapping of keys, found a string"},
        {NODE GOSSIP "  join: {a: b}\n" SEC,
         F ":6:9: gossip.join: expected a list of seeds such as "
           "[10.0.0.2:7946], found a mapping"},
        {NODE GOSSIP "  join: 10.0.0.2\n" SEC,
         F ":6:9: gossip.join: expected a list of seeds such as "
           "[10.0.0.2:7946], found a string"},
        {NODE GOSSIP "  join: [[a]]\n" SEC,
         F ":6:10: gossip.join[0]: expected host:port, or '[v6]:port' in "
           "quotes, found a list"},
        {NODE GOSSIP "  probe_interval: [1s]\n" SEC,
         F ":6:19: gossip.probe_interval: expected a duration such as 1s "
           "or 500ms, found a list"},
        {NODE GOSSIP "  tcp_fallback: 1\n" SEC,
         F ":6:17: gossip.tcp_fallback: expected true or false, found '1'"},
        {NODE GOSSIP "  indirect_checks: three\n" SEC,
         F ":6:20: gossip.indirect_checks: expected a whole number, found "
           "'three'"},
        {NODE GOSSIP "  indirect_checks: 0x10\n" SEC,
         F ":6:20: gossip.indirect_checks: expected a whole number, found "
           "'0x10'"},
        {NODE GOSSIP "  transport: quic\n" SEC,
         F ":6:14: gossip.transport: expected one of udp, tcp; found 'quic'"},
        {OK "log:\n  level: verbose\n",
         F ":9:10: log.level: expected one of debug, info, notice, warning, "
           "error; found 'verbose'"},
        {NODE "gossip:\n  cluster:\n  bind: 127.0.0.1:7946\n" SEC,
         F ":4:11: gossip.cluster: has no value; expected a string"},
        {NODE GOSSIP "  probe_interval: ~\n" SEC,
         F ":6:19: gossip.probe_interval: has no value; give one, or remove "
           "the line to get the default (1s)"},
        {"node:\n  name: n1\n  zone: null\n" GOSSIP SEC,
         F ":3:9: node.zone: has no value; give one, or remove the line to "
           "get the default (\"\")"},
        {NODE GOSSIP "  indirect_checks: !!int 3\n" SEC,
         F ":6:20: gossip.indirect_checks: the YAML tag "
           "'tag:yaml.org,2002:int' is not supported; remove it"},
        {"node:\n  name: \"n\\0\"\n" GOSSIP SEC,
         F ":2:9: node.name: contains a NUL character"},
        {"node:\n  name: a b\n" GOSSIP SEC,
         F ":2:9: node.name: 'a b' may contain only visible ASCII "
           "characters (no spaces or control characters)"},
        {"node:\n  name: \"\"\n" GOSSIP SEC,
         F ":2:9: node.name: must not be empty"},
        {"node:\n  name: "
         "n1234567890123456789012345678901234567890123456789012345678901234"
         "\n" GOSSIP SEC,
         F ":2:9: node.name: "
           "'n123456789012345678901234567890123456789012345678901234567890123"
           "...' is 65 bytes; at most 64 are allowed"},
        {"node:\n  name: n1\n  data_dir: \"\"\n" GOSSIP SEC,
         F ":3:13: node.data_dir: must not be empty"},
        {"node:\n  name: n1\n  data_dir: \"/a\\nb\"\n" GOSSIP SEC,
         F ":3:13: node.data_dir: '/a\\x0ab' contains a control character"},
        {OK "control:\n  group: \"a b\"\n",
         F ":9:10: control.group: 'a b' may contain only visible ASCII "
           "characters (no spaces or control characters)"},
    };
    (void)state;
    EXPECT_BAD(cases);
}

static void test_ranges(void **state)
{
    static const struct bad cases[] = {
        {NODE GOSSIP "  indirect_checks: 17\n" SEC,
         F ":6:20: gossip.indirect_checks: 17 is out of range; use 1..16"},
        {NODE GOSSIP "  indirect_checks: -1\n" SEC,
         F ":6:20: gossip.indirect_checks: -1 is out of range; use 1..16"},
        {NODE GOSSIP "  gossip_nodes: 0\n" SEC,
         F ":6:17: gossip.gossip_nodes: 0 is out of range; use 1..64"},
        {NODE GOSSIP "  max_members: 99999999999999999999999\n" SEC,
         F ":6:16: gossip.max_members: 99999999999999999999999 is out of "
           "range; use 1..16777216"},
        {NODE GOSSIP "  packet_budget: 100\n" SEC,
         F ":6:18: gossip.packet_budget: 100 is out of range; use "
           "512..65000"},
        {NODE GOSSIP "  probe_interval: 11m\n" SEC,
         F ":6:19: gossip.probe_interval: 11m is out of range; use "
           "10ms..10m"},
        {NODE GOSSIP "  probe_interval: 5ms\n" SEC,
         F ":6:19: gossip.probe_interval: 5ms is out of range; use "
           "10ms..10m"},
        {NODE GOSSIP "  push_pull_interval: 500ms\n" SEC,
         F ":6:23: gossip.push_pull_interval: 500ms is out of range; use "
           "0 (off) or 1s..1h"},
        {NODE GOSSIP "  tombstone: 31h1m\n  tombstone: 1d\n" SEC,
         F ":7:3: gossip: duplicate key 'tombstone' (first on line 6); "
           "remove one"},
        {NODE GOSSIP "  tombstone: 721h\n" SEC,
         F ":6:14: gossip.tombstone: 721h is out of range; use 1m..720h"},
        {NODE GOSSIP "  leave_timeout: 99999999999999999999h\n" SEC,
         F ":6:18: gossip.leave_timeout: 99999999999999999999h is out of "
           "range; use 0s..5m"},
        {NODE GOSSIP "  probe_timeout: 1s\n" SEC,
         F ":6:18: gossip: probe_timeout (1s) must be shorter than "
           "probe_interval (1s)"},
        {NODE GOSSIP "  probe_interval: 400ms\n" SEC,
         F ":6:19: gossip: probe_timeout (500ms) must be shorter than "
           "probe_interval (400ms)"},
        {NODE GOSSIP "  counter_timeout: 250ms\n" SEC,
         F ":6:20: gossip: counter_timeout (250ms) must be longer than "
           "heartbeat_interval (250ms)"},
        {OK "metrics:\n  interval: 500ms\n",
         F ":9:13: metrics.interval: 500ms is out of range; use 1s..1h"},
    };
    (void)state;
    EXPECT_BAD(cases);
}

static void test_bad_durations(void **state)
{
    static const struct bad cases[] = {
        {NODE GOSSIP "  probe_interval: 5\n" SEC,
         F ":6:19: gossip.probe_interval: '5' has no unit; add a unit: 1s, "
           "500ms"},
        {NODE GOSSIP "  probe_interval: 1x\n" SEC,
         F ":6:19: gossip.probe_interval: '1x' is not a duration; write "
           "e.g. 1s, 500ms or 1m30s (units ms, s, m, h)"},
        {NODE GOSSIP "  probe_interval: 1.5s\n" SEC,
         F ":6:19: gossip.probe_interval: '1.5s': use whole numbers of a "
           "smaller unit (1s500ms, not 1.5s)"},
        {NODE GOSSIP "  probe_interval: 30s1m\n" SEC,
         F ":6:19: gossip.probe_interval: '30s1m': units go largest first, "
           "each at most once (1m30s)"},
        {NODE GOSSIP "  probe_interval: -1s\n" SEC,
         F ":6:19: gossip.probe_interval: '-1s' is not a duration; write "
           "e.g. 1s, 500ms or 1m30s (units ms, s, m, h)"},
        {NODE GOSSIP "  probe_interval: 1 s\n" SEC,
         F ":6:19: gossip.probe_interval: '1 s' is not a duration; write "
           "e.g. 1s, 500ms or 1m30s (units ms, s, m, h)"},
        {NODE GOSSIP "  probe_interval: 0\n" SEC,
         F ":6:19: gossip.probe_interval: 0 is out of range; use 10ms..10m"},
    };
    (void)state;
    EXPECT_BAD(cases);
}

static void test_duplicates(void **state)
{
    static const struct bad cases[] = {
        {NODE "  name: n2\n" GOSSIP SEC,
         F ":3:3: node: duplicate key 'name' (first on line 2); remove one"},
        {OK "node:\n  zone: a\n",
         F ":8:1: duplicate section 'node' (first on line 1); merge them"},
        {"node:\n  name: n1\n  tags:\n    role: web\n    role: db\n"
         GOSSIP SEC,
         F ":5:5: node.tags: duplicate key 'role' (first on line 4); "
           "remove one"},
        {OK "health:\n  checks:\n    - {name: a, tcp: 'h:1'}\n"
            "    - {name: a, tcp: 'h:2'}\n",
         F ":11:14: health.checks[1].name: 'a' is already the name of "
           "health.checks[0]; names must be unique"},
    };
    (void)state;
    EXPECT_BAD(cases);
}

static void test_addresses(void **state)
{
    static const struct bad cases[] = {
        {NODE "gossip:\n  cluster: demo\n  bind: localhost:7946\n" SEC,
         F ":5:9: gossip.bind: 'localhost:7946' is not an IP address (host "
           "names are allowed only in join); write e.g. 127.0.0.1:7946 or "
           "[::1]:7946"},
        {NODE "gossip:\n  cluster: demo\n  bind: 127.0.0.1:99999\n" SEC,
         F ":5:9: gossip.bind: '127.0.0.1:99999' is not an address: the "
           "port must be a number from 1 to 65535; write an IP and port "
           "such as 127.0.0.1:7946 or [::1]:7946"},
        {NODE "gossip:\n  cluster: demo\n  bind: 127.0.0.1:0\n" SEC,
         F ":5:9: gossip.bind: '127.0.0.1:0' is not an address: the port "
           "must be a number from 1 to 65535; write an IP and port such as "
           "127.0.0.1:7946 or [::1]:7946"},
        {NODE "gossip:\n  cluster: demo\n  bind: ::1:7946\n" SEC,
         F ":5:9: gossip.bind: '::1:7946' is not an address: an IPv6 "
           "address needs brackets, as in [::1]:7946; write an IP and port "
           "such as 127.0.0.1:7946 or [::1]:7946"},
        {NODE "gossip:\n  cluster: demo\n  bind: '[10.0.0.1]:7946'\n" SEC,
         F ":5:9: gossip.bind: '[10.0.0.1]:7946' is not an address: the "
           "part in brackets is not an IPv6 address; write an IP and port "
           "such as 127.0.0.1:7946 or [::1]:7946"},
        {NODE GOSSIP "  join: ['[::1']\n" SEC,
         F ":6:10: gossip.join[0]: '[::1' is not a seed address: '[' "
           "without its ']'; write host:port, [v6]:port, or host (port "
           "7946)"},
        {NODE GOSSIP "  join: [a, 'b c:1']\n" SEC,
         F ":6:13: gossip.join[1]: 'b c:1' is not a seed address: a host "
           "name has only letters, digits, '-', '.' and '_'; write "
           "host:port, [v6]:port, or host (port 7946)"},
        {NODE GOSSIP "  join: ['h:']\n" SEC,
         F ":6:10: gossip.join[0]: 'h:' is not a seed address: the port is "
           "empty; write host:port, [v6]:port, or host (port 7946)"},
        /* wildcard bind, no advertise: at bind, or at gossip: (default) */
        {NODE "gossip:\n  cluster: demo\n  bind: '[::]:7946'\n" SEC,
         F ":5:9: gossip.advertise is required when bind is a wildcard "
           "address ([::]:7946): set it to the address other nodes reach "
           "this one at, e.g. advertise: 192.0.2.10:7946"},
        {NODE "gossip:\n  cluster: demo\n" SEC,
         F ":3:1: gossip.advertise is required when bind is a wildcard "
           "address (0.0.0.0:7946): set it to the address other nodes reach "
           "this one at, e.g. advertise: 192.0.2.10:7946"},
        {NODE GOSSIP "  advertise: 0.0.0.0:7946\n" SEC,
         F ":6:14: gossip.advertise: 0.0.0.0:7946 is a wildcard address, "
           "which other nodes cannot reach; give this node's own IP "
           "address"},
        {NODE GOSSIP "  advertise: '[::1]:7946'\n" SEC,
         F ":6:14: gossip: advertise is IPv6 but bind (127.0.0.1:7946) is "
           "IPv4; use the same address family"},
        {NODE "gossip:\n  cluster: demo\n  bind: '[::1]:7946'\n"
              "  advertise: 10.0.0.1:7946\n" SEC,
         F ":6:14: gossip: advertise is IPv4 but bind ([::1]:7946) is IPv6; "
           "use the same address family"},
    };
    (void)state;
    EXPECT_BAD(cases);
}

static void test_required(void **state)
{
    static const struct bad cases[] = {
        {NODE "gossip:\n  bind: 127.0.0.1:7946\n" SEC,
         F ":3:1: gossip.cluster is required (the cluster id: packets of "
           "another cluster are dropped)"},
        {"# comment\n" NODE SEC,
         F ":2:1: gossip.cluster is required (the cluster id: packets of "
           "another cluster are dropped)"},
        {"", F ":1:1: the configuration is empty; start from "
             "zpf.yaml.example"},
        {"# only a comment\n---\n", F ":1:1: the configuration is empty; "
                                      "start from zpf.yaml.example"},
        {"- node\n- gossip\n",
         F ":1:1: the configuration must be a mapping of sections (node:, "
           "gossip:, ...), found a list"},
        {"just text\n",
         F ":1:1: the configuration must be a mapping of sections (node:, "
           "gossip:, ...), found a string"},
        {OK "---\n" OK,
         F ":9:1: only one YAML document is allowed; remove the '---' line "
           "and what follows it"},
    };
    (void)state;
    EXPECT_BAD(cases);
}

static void test_security(void **state)
{
    static const struct bad cases[] = {
        {NODE GOSSIP,
         F ":1:1: set security.keyring, security.keys, or insecure: true to "
           "run without encryption"},
        {NODE GOSSIP "security:\n  insecure: false\n",
         F ":7:13: set security.keyring, security.keys, or insecure: true "
           "to run without encryption"},
        {NODE GOSSIP "security: {}\n",
         F ":6:1: set security.keyring, security.keys, or insecure: true to "
           "run without encryption"},
        {NODE GOSSIP "security:\n  keyring: /k\n"
         "  keys: [AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=]\n",
         F ":8:9: security: set security.keyring or security.keys, not "
           "both"},
        {NODE GOSSIP "security:\n  insecure: true\n"
         "  keys: [AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=]\n",
         F ":7:13: security: insecure: true turns encryption off, but keys "
           "is set; remove one"},
        {NODE GOSSIP "security:\n  keyring: /k\n  insecure: true\n",
         F ":8:13: security: insecure: true turns encryption off, but "
           "keyring is set; remove one"},
        {NODE GOSSIP "security:\n  insecure: \"yes\"\n",
         F ":7:13: security.insecure: expected true or false, found 'yes' "
           "(yes, no, on and off are not booleans here)"},
        {NODE GOSSIP "security:\n  insecure: on\n",
         F ":7:13: security.insecure: expected true or false, found 'on' "
           "(yes, no, on and off are not booleans here)"},
        {NODE GOSSIP "security:\n  keys: []\n",
         F ":7:9: security.keys: is empty; list at least one base64 key "
           "(zpfctl keygen), or use security.keyring"},
        {NODE GOSSIP "security:\n  keys:\n",
         F ":7:8: security.keys: is empty; list at least one base64 key "
           "(zpfctl keygen), or use security.keyring"},
        {NODE GOSSIP "security:\n  keyring: \"\"\n",
         F ":7:12: security.keyring: must not be empty"},
    };
    (void)state;
    EXPECT_BAD(cases);
}

/* A bad inline key is reported by position only: its text, which may be a
 * real key with a typo, never reaches the message. */
static void test_bad_inline_key(void **state)
{
    static const char *const secrets[] = {
        "c2VjcmV0c2VjcmV0c2VjcmV0", /* 18 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", /* no padding */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=!",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIj", /* 36 bytes */
    };
    static const char *const want[] = {
        F ":9:7: security.keys[1]: decodes to 18 bytes; a key is 32 bytes "
          "(make one with: zpfctl keygen)",
        F ":9:7: security.keys[1]: is not base64 (standard alphabet with '=' "
          "padding); make a key with: zpfctl keygen",
        F ":9:7: security.keys[1]: is not base64 (standard alphabet with '=' "
          "padding); make a key with: zpfctl keygen",
        F ":9:7: security.keys[1]: decodes to 36 bytes; a key is 32 bytes "
          "(make one with: zpfctl keygen)",
    };
    (void)state;
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        char doc[512], err[ZPF_CONF_ERR_MAX];
        struct zpf_conf c;
        snprintf(doc, sizeof doc,
                 NODE GOSSIP "security:\n  keys:\n"
                 "    - AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
                 "    - %s\n", secrets[i]);
        assert_int_equal(parse(doc, F, &c, err), ZPF_EINVAL);
        assert_string_equal(err, want[i]);
        assert_null(strstr(err, secrets[i]));
        assert_null(strstr(err, "AAEC"));
    }
    static const struct bad cases[] = {
        {NODE GOSSIP "security:\n  keys:\n"
         "    - AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
         "    - AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
         F ":9:7: security.keys[1]: is the same key as security.keys[0]; "
           "remove one"},
        {NODE GOSSIP "security:\n  keys: [a, b, c, d, e, f, g, h, i]\n",
         F ":7:9: security.keys: has 9 keys; at most 8"},
        {NODE GOSSIP "security:\n  keys: [{a: b}]\n",
         F ":7:10: security.keys[0]: expected a base64 key, found a "
           "mapping"},
    };
    EXPECT_BAD(cases);
}

static void test_health(void **state)
{
    static const struct bad cases[] = {
        {OK "health:\n  checks:\n    - name: web\n"
            "      http: https://127.0.0.1/health\n",
         F ":11:13: health.checks[0].http: https is not supported; use a "
           "command check, e.g. command: [curl, -fsS, --max-time, '2', "
           "'https://127.0.0.1/health']"},
        {OK "health:\n  checks:\n    - name: web\n"
            "      tcp: 127.0.0.1:80\n      http: http://127.0.0.1/\n",
         F ":12:7: health.checks[0]: give only one of command, tcp or "
           "http; found tcp and http"},
        {OK "health:\n  checks:\n    - name: web\n"
            "      http: http://127.0.0.1/\n      command: [/bin/true]\n",
         F ":12:7: health.checks[0]: give only one of command, tcp or "
           "http; found http and command"},
        {OK "health:\n  checks:\n    - name: web\n",
         F ":10:7: health.checks[0]: give one of command, tcp or http"},
        {OK "health:\n  checks:\n    - tcp: 127.0.0.1:80\n",
         F ":10:7: health.checks[0]: a check needs a name (unique among the "
           "checks; shown by zpfctl and in logs)"},
        {OK "health:\n  checks:\n    - name: web\n      tcp: 127.0.0.1:80\n"
            "      timeout: 10s\n",
         F ":12:16: health.checks[0]: timeout (10s) must be shorter than "
           "interval (10s, from health.interval)"},
        {OK "health:\n  checks:\n    - name: web\n      tcp: 127.0.0.1:80\n"
            "      interval: 1s\n",
         F ":12:17: health.checks[0]: timeout (2s, from health.timeout) must "
           "be shorter than interval (1s)"},
        {OK "health:\n  timeout: 10s\n",
         F ":9:12: health: timeout (10s) must be shorter than interval "
           "(10s)"},
        {OK "health:\n  checks:\n    - name: web\n      tcp: 127.0.0.1\n",
         F ":11:12: health.checks[0].tcp: '127.0.0.1' is not host:port: a "
           "port is required, as in host:8080"},
        {OK "health:\n  checks:\n    - name: web\n"
            "      http: ftp://127.0.0.1/\n",
         F ":11:13: health.checks[0].http: 'ftp://127.0.0.1/' is not an "
           "http:// URL; write e.g. http://127.0.0.1:8080/health"},
        {OK "health:\n  checks:\n    - name: web\n"
            "      http: http://u:p@127.0.0.1/\n",
         F ":11:13: health.checks[0].http: 'http://u:p@127.0.0.1/': a user "
           "name or password in the URL is not supported"},
        {OK "health:\n  checks:\n    - name: web\n"
            "      http: \"http://h/a b\"\n",
         F ":11:13: health.checks[0].http: 'http://h/a b' contains a space, "
           "control or non-ASCII character; percent-encode it"},
        {OK "health:\n  checks:\n    - name: web\n"
            "      http: http://:80/\n",
         F ":11:13: health.checks[0].http: 'http://:80/' has a bad host or "
           "port: the host is empty"},
        {OK "health:\n  checks:\n    - name: c\n      command: []\n",
         F ":11:16: health.checks[0].command: is empty; give the program "
           "and its arguments, e.g. [/usr/bin/pgrep, nginx]"},
        {OK "health:\n  checks:\n    - name: c\n"
            "      command: [bin/check, -v]\n",
         F ":11:17: health.checks[0].command[0]: 'bin/check' is a relative "
           "path; give an absolute path or a bare name looked up in PATH"},
        {OK "health:\n  checks:\n    - name: c\n      command: /bin/true\n",
         F ":11:16: health.checks[0].command: expected a list of strings: "
           "the program and its arguments, found a string"},
        {OK "health:\n  checks: [web]\n",
         F ":9:12: health.checks[0]: expected a check such as {name: web, "
           "tcp: 127.0.0.1:80}, found a string"},
        {OK "health:\n  checks: {web: 1}\n",
         F ":9:11: health.checks: expected a list of checks, found a "
           "mapping"},
    };
    (void)state;
    EXPECT_BAD(cases);
}

static void test_more_health(void **state)
{
    static const struct bad cases[] = {
        {OK "health:\n  checks:\n    - name: my check\n"
            "      tcp: 127.0.0.1:80\n",
         F ":10:13: health.checks[0].name: 'my check' may contain only "
           "visible ASCII characters (no spaces or control characters)"},
        {OK "health:\n  checks:\n    -\n",
         F ":10:6: health.checks[0]: a check needs a name (unique among the "
           "checks; shown by zpfctl and in logs)"},
        {OK "health:\n  checks:\n    - name: c\n      tcp: '[::1]:80'\n"
            "      interval: 1s\n      timeout: 1s\n",
         F ":13:16: health.checks[0]: timeout (1s) must be shorter than "
           "interval (1s)"},
        {OK "health:\n  checks:\n    - name: c\n"
            "      http: http://h:x/\n",
         F ":11:13: health.checks[0].http: 'http://h:x/' has a bad host or "
           "port: the port must be a number from 1 to 65535"},
        {OK "health:\n  checks:\n    - name: c\n      tcp: 'h:1'\n"
            "      timeout: 50ms\n      interval: 50ms\n",
         F ":13:17: health.checks[0].interval: 50ms is out of range; use "
           "100ms..1h"},
        {NODE GOSSIP "security:\n  keys: abc\n",
         F ":7:9: security.keys: expected a list of base64 keys, found a "
           "string"},
    };
    struct zpf_conf c;
    (void)state;
    EXPECT_BAD(cases);
    /* [::] is dual-stack: an IPv4 advertise address is fine */
    ok(NODE "gossip:\n  cluster: demo\n  bind: '[::]:7946'\n"
            "  advertise: 10.0.0.1:7946\n" SEC, &c);
    addr_is(&c.core.addr, ZPF_AF_INET, "10.0.0.1", 7946);
    zpf_conf_free(&c);
}

static void test_tags(void **state)
{
    static const struct bad cases[] = {
        {"node:\n  name: n1\n  tags: [web]\n" GOSSIP SEC,
         F ":3:9: node.tags: expected a mapping of names to strings such as "
           "{role: web}, found a list"},
        {"node:\n  name: n1\n  tags: web\n" GOSSIP SEC,
         F ":3:9: node.tags: expected a mapping of names to strings such as "
           "{role: web}, found a string"},
        {"node:\n  name: n1\n  tags:\n    role: {a: b}\n" GOSSIP SEC,
         F ":4:11: node.tags.role: expected a string, found a mapping"},
        {"node:\n  name: n1\n  tags:\n    role: [a]\n" GOSSIP SEC,
         F ":4:11: node.tags.role: expected a string, found a list"},
        {"node:\n  name: n1\n  tags:\n    role:\n" GOSSIP SEC,
         F ":4:10: node.tags.role: has no value; expected a string"},
        {"node:\n  name: n1\n  tags:\n    \"a b\": x\n" GOSSIP SEC,
         F ":4:5: node.tags: 'a b' may contain only visible ASCII characters "
           "(no spaces or control characters)"},
    };
    (void)state;
    EXPECT_BAD(cases);
}

/* Every bound on a collection or a string, checked before it is walked. */
static void test_limits(void **state)
{
    static char doc[16384], want[1024];
    char err[ZPF_CONF_ERR_MAX], k65[66], v257[258];
    struct zpf_conf c;
    size_t o;
    (void)state;
    memset(k65, 'k', 65);
    k65[65] = '\0';
    memset(v257, 'v', 257);
    v257[257] = '\0';

#define BAD(expect)                                                            \
    do {                                                                       \
        memset(&c, 0xa5, sizeof c);                                            \
        assert_int_equal(parse(doc, F, &c, err), ZPF_EINVAL);                  \
        assert_string_equal(err, expect);                                      \
        assert_null(c.node.name);                                              \
    } while (0)

    /* tags: count, name length, value length, total bytes */
    o = (size_t)snprintf(doc, sizeof doc, "node:\n  name: n1\n  tags:\n");
    for (int i = 0; i < 33; i++)
        o += (size_t)snprintf(doc + o, sizeof doc - o, "    t%d: x\n", i);
    snprintf(doc + o, sizeof doc - o, GOSSIP SEC);
    BAD(F ":4:5: node.tags: has 33 tags; at most 32");
    snprintf(doc, sizeof doc, "node:\n  name: n1\n  tags: {%s: x}\n" GOSSIP
             SEC, k65);
    BAD(F ":3:10: node.tags: 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
          "kkkkkkkkkkkkkkkk...' is 65 bytes; at most 64 are allowed");
    snprintf(doc, sizeof doc, "node:\n  name: n1\n  tags: {a: %s}\n" GOSSIP
             SEC, v257);
    snprintf(want, sizeof want, F ":3:13: node.tags.a: '%.64s...' is 257 "
             "bytes; at most 256 are allowed", v257);
    BAD(want);
    o = (size_t)snprintf(doc, sizeof doc, "node:\n  name: n1\n  tags:\n");
    for (int i = 0; i < 10; i++)
        o += (size_t)snprintf(doc + o, sizeof doc - o, "    t%d: %.40s\n", i,
                              v257);
    snprintf(doc + o, sizeof doc - o, GOSSIP SEC);
    BAD(F ":4:5: node.tags: names and values take 420 bytes; at most 384, "
          "because tags travel in every member's metadata");
    snprintf(doc, sizeof doc, "node:\n  name: n1\n  tags: {~: x}\n" GOSSIP
             SEC);
    BAD(F ":3:10: node.tags: has no value; expected a tag name");

    /* join */
    o = (size_t)snprintf(doc, sizeof doc, NODE GOSSIP "  join: [");
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(doc + o, sizeof doc - o, "h%d, ", i);
    snprintf(doc + o, sizeof doc - o, "]\n" SEC);
    BAD(F ":6:9: gossip.join: has 65 entries; at most 64");

    /* command: argument count and length */
    o = (size_t)snprintf(doc, sizeof doc, OK "health:\n  checks:\n"
                         "    - name: c\n      command: [");
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(doc + o, sizeof doc - o, "a, ");
    snprintf(doc + o, sizeof doc - o, "]\n");
    BAD(F ":11:16: health.checks[0].command: has 65 arguments; at most 64");
    o = (size_t)snprintf(doc, sizeof doc, OK "health:\n  checks:\n"
                         "    - name: c\n      command: [/bin/echo, ");
    memset(doc + o, 'x', 4097);
    snprintf(doc + o + 4097, sizeof doc - o - 4097, "]\n");
    BAD(F ":11:28: health.checks[0].command[1]: is 4097 bytes; at most "
          "4096");
    snprintf(doc, sizeof doc, OK "health:\n  checks:\n"
             "    - name: c\n      command: ['', x]\n");
    BAD(F ":11:17: health.checks[0].command[0]: the program is empty; give "
          "the program and its arguments, e.g. [/usr/bin/pgrep, nginx]");

    /* paths: any path, and a socket's sockaddr_un bound */
    o = (size_t)snprintf(doc, sizeof doc, "node:\n  name: n1\n  data_dir: /");
    memset(doc + o, 'd', 4100);
    snprintf(doc + o + 4100, sizeof doc - o - 4100, "\n" GOSSIP SEC);
    BAD(F ":3:13: node.data_dir: the path is 4101 bytes; at most 4095");
    snprintf(doc, sizeof doc, OK "control:\n  socket: /%.120s\n", v257);
    BAD(F ":9:11: control.socket: the path is 121 bytes once resolved, but "
          "a UNIX socket path may have at most 107; choose a shorter one");
    snprintf(doc, sizeof doc, OK "control:\n  admin_group: %.65s\n", k65);
    BAD(F ":9:16: control.admin_group: 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
          "kkkkkkkkkkkkkkkkkkkkkkkkkkkkk...' is 65 bytes; at most 64 are "
          "allowed");
#undef BAD
}

static void test_yaml_syntax(void **state)
{
    static const struct bad cases[] = {
        {NODE "gossip:\n  cluster: demo\n  bind: [1, 2\n" SEC,
         F ":6:9: YAML syntax error: did not find expected ',' or ']' "
           "(while parsing a flow sequence on line 5)"},
        {"node:\n  name: n1\n name2: x\n",
         F ":3:2: YAML syntax error: did not find expected key (while "
           "parsing a block mapping on line 1)"},
        {"node:\n\tname: n1\n",
         F ":2:1: YAML syntax error: found character that cannot start any "
           "token (while scanning for the next token on line 2)"},
        {"node: *x\n",
         F ":1:7: YAML syntax error: found undefined alias"},
        {"node:\n  name: \"n1\n",
         F ":3:1: YAML syntax error: found unexpected end of stream (while "
           "scanning a quoted scalar on line 2)"},
        {NODE "gossip:\n  cluster: demo\n  bind: [::1]:7946\n" SEC,
         F ":5:10: YAML syntax error: did not find expected node content "
           "(while parsing a flow node on line 5); quote an IPv6 address in "
           "brackets, as in '[::1]:7946'"},
        {NODE GOSSIP "  join:\n    - [fe80::1]\n" SEC,
         F ":7:7: gossip.join[0]: expected host:port, or '[v6]:port' in "
           "quotes, found a list"},
        {NODE "gossip:\n  cluster: demo\n  bind: [fe80::1]\n" SEC,
         F ":5:9: gossip.bind: expected an IP address and port such as "
           "127.0.0.1:7946, or '[::1]:7946' in quotes, found a list"},
        /* a quoted [v6] is fine: the error is elsewhere, and no hint */
        {NODE "gossip:\n  cluster: demo\n  bind: \"[::1]:7946\" ]\n" SEC,
         F ":5:22: YAML syntax error: did not find expected key (while "
           "parsing a block mapping on line 4)"},
    };
    (void)state;
    EXPECT_BAD(cases);

    /* Deep flow nesting is refused before libyaml's quadratic scan. */
    char deep[4096], err[ZPF_CONF_ERR_MAX];
    struct zpf_conf c;
    size_t o = (size_t)snprintf(deep, sizeof deep, "node:\n  tags: ");
    for (int i = 0; i < 1000; i++)
        deep[o++] = i % 2 ? '[' : '{';
    deep[o] = '\0';
    assert_int_equal(parse(deep, F, &c, err), ZPF_EINVAL);
    assert_string_equal(err, F ":2:73: [ ] and { } nest deeper than 64 "
                              "levels; a configuration needs two or three");
    /* ... and only depth counts, not how many there are */
    o = (size_t)snprintf(deep, sizeof deep, NODE GOSSIP SEC "health:\n"
                         "  checks: [");
    for (int i = 0; i < 100; i++)
        o += (size_t)snprintf(deep + o, sizeof deep - o,
                              "{name: c%d, tcp: 'h:1'}, ", i);
    snprintf(deep + o, sizeof deep - o, "]\n");
    assert_int_equal(parse(deep, F, &c, err), ZPF_EINVAL);
    assert_string_equal(err, F ":9:11: health.checks: has 100 checks; at "
                              "most 64");

    /* Bytes that are not text at all. */
    static const char bin[] = "node:\n  name: n\x01\n";
    assert_int_equal(zpf_conf_parse(bin, sizeof bin - 1, F, &c, err,
                                    sizeof err), ZPF_EINVAL);
    assert_string_equal(err, F ":2:10: not readable as YAML text: control "
                              "characters are not allowed");
    static const char utf8[] = "node:\n  zone: \xc3\xa9t\xc3\xa9\x01\n";
    assert_int_equal(zpf_conf_parse(utf8, sizeof utf8 - 1, F, &c, err,
                                    sizeof err), ZPF_EINVAL);
    assert_string_equal(err, F ":2:12: not readable as YAML text: control "
                              "characters are not allowed");
    static const char latin1[] = "node:\n  zone: caf\xe9\n";
    assert_int_equal(zpf_conf_parse(latin1, sizeof latin1 - 1, F, &c, err,
                                    sizeof err), ZPF_EINVAL);
    assert_string_equal(err, F ":2:12: not readable as YAML text: "
                              "incomplete UTF-8 octet sequence");
    static const char nul[] = "node:\n  name: n\0\n";
    assert_int_equal(zpf_conf_parse(nul, sizeof nul - 1, F, &c, err,
                                    sizeof err), ZPF_EINVAL);
    assert_string_equal(err, F ":2:10: not readable as YAML text: control "
                              "characters are not allowed");
}

/* Anchors and aliases are legal YAML; a cycle must not hang the reader. */
static void test_aliases(void **state)
{
    struct zpf_conf c;
    static const struct bad cases[] = {
        {OK "health:\n  checks: &a [*a]\n",
         F ":9:11: health.checks[0]: expected a check such as {name: web, "
           "tcp: 127.0.0.1:80}, found a list"},
        {"node:\n  name: n1\n  tags: &t {a: *t}\n" GOSSIP SEC,
         F ":3:9: node.tags.a: expected a string, found a mapping"},
    };
    (void)state;
    EXPECT_BAD(cases);
    ok("node:\n  name: &n n1\n  zone: *n\n" GOSSIP SEC, &c);
    assert_string_equal(c.node.zone, "n1");
    zpf_conf_free(&c);
}

static void test_too_large(void **state)
{
    size_t n = 2u << 20;
    char *big = malloc(n), err[ZPF_CONF_ERR_MAX], want[PATH_MAX + 160];
    struct zpf_conf c;
    (void)state;
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (i % 64 == 63) ? '\n' : (i % 64 == 0 ? '#' : 'x');
    assert_int_equal(zpf_conf_parse(big, n, F, &c, err, sizeof err),
                     ZPF_E2BIG);
    assert_string_equal(err, F ":1:1: the file is larger than 1 MiB; a zpf "
                              "configuration is a few KiB: is this the "
                              "right file?");
    const char *path = write_file("big.yaml", big, n, 0600);
    free(big);
    assert_int_equal(zpf_conf_load(path, &c, err, sizeof err), ZPF_E2BIG);
    snprintf(want, sizeof want, "%s:1:1: the file is larger than 1 MiB; a "
             "zpf configuration is a few KiB: is this the right file?", path);
    assert_string_equal(err, want);
    unlink(path);
}

static void test_load(void **state)
{
    struct zpf_conf c;
    char err[ZPF_CONF_ERR_MAX], want[PATH_MAX + 100];
    (void)state;
    const char *path = write_file("zpf.yaml", OK "  keyring: k\n",
                                  strlen(OK "  keyring: k\n"), 0644);
    char saved[PATH_MAX];
    snprintf(saved, sizeof saved, "%s", path);
    /* insecure and keyring: the message names the loaded file */
    assert_int_equal(zpf_conf_load(saved, &c, err, sizeof err), ZPF_EINVAL);
    snprintf(want, sizeof want, "%s:7:13: security: insecure: true turns "
             "encryption off, but keyring is set; remove one", saved);
    assert_string_equal(err, want);

    path = write_file("zpf.yaml", MINIMAL, strlen(MINIMAL), 0644);
    assert_int_equal(zpf_conf_load(path, &c, err, sizeof err), 0);
    zpf_conf_free(&c);
    path = write_file("rel.yaml", NODE GOSSIP "security:\n  keyring: k\n",
                      strlen(NODE GOSSIP "security:\n  keyring: k\n"), 0644);
    assert_int_equal(zpf_conf_load(path, &c, err, sizeof err), 0);
    snprintf(want, sizeof want, "%s/k", tmpdir);
    assert_string_equal(c.security.keyring, want);
    zpf_conf_free(&c);

    snprintf(want, sizeof want, "%s/none.yaml", tmpdir);
    assert_int_equal(zpf_conf_load(want, &c, err, sizeof err), ZPF_ENOENT);
    assert_non_null(strstr(err, "none.yaml: cannot open: "));
    assert_int_equal(zpf_conf_load(tmpdir, &c, err, sizeof err), ZPF_EIO);
    assert_non_null(strstr(err, ": cannot read: "));
    assert_int_equal(zpf_conf_load(NULL, &c, err, sizeof err), ZPF_EINVAL);
}

/* --- helpers -------------------------------------------------------------- */

static void test_split_hostport(void **state)
{
    static const struct {
        const char *in;
        uint16_t def;
        int rc;
        const char *host;
        uint16_t port;
    } cases[] = {
        {"127.0.0.1:7946", 7946, 0, "127.0.0.1", 7946},
        {"10.0.0.1", 7946, 0, "10.0.0.1", 7946},
        {"db.example.com:5432", 0, 0, "db.example.com", 5432},
        {"seed_1", 99, 0, "seed_1", 99},
        {"[::1]:7946", 0, 0, "::1", 7946},
        {"[2001:db8::1]", 7946, 0, "2001:db8::1", 7946},
        {"[::ffff:10.0.0.1]:1", 0, 0, "::ffff:10.0.0.1", 1},
        {"h:65535", 0, 0, "h", 65535},
        {"h:00080", 0, 0, "h", 80},
        {"h", 0, ZPF_EINVAL, NULL, 0},     /* port required */
        {"h:0", 0, ZPF_EINVAL, NULL, 0},
        {"h:65536", 0, ZPF_EINVAL, NULL, 0},
        {"h:123456", 0, ZPF_EINVAL, NULL, 0},
        {"h:-1", 0, ZPF_EINVAL, NULL, 0},
        {"h:80x", 0, ZPF_EINVAL, NULL, 0},
        {"h:", 7946, ZPF_EINVAL, NULL, 0},
        {":80", 0, ZPF_EINVAL, NULL, 0},
        {"", 7946, ZPF_EINVAL, NULL, 0},
        {"::1", 7946, ZPF_EINVAL, NULL, 0},   /* v6 needs brackets */
        {"::1:80", 7946, ZPF_EINVAL, NULL, 0},
        {"[::1", 7946, ZPF_EINVAL, NULL, 0},
        {"[::1]80", 7946, ZPF_EINVAL, NULL, 0},
        {"[::1]:", 7946, ZPF_EINVAL, NULL, 0},
        {"[]:80", 7946, ZPF_EINVAL, NULL, 0},
        {"[host]:80", 7946, ZPF_EINVAL, NULL, 0},
        {"[1.2.3.4]:80", 7946, ZPF_EINVAL, NULL, 0},
        {"a b:80", 7946, ZPF_EINVAL, NULL, 0},
        {"a/b:80", 7946, ZPF_EINVAL, NULL, 0},
    };
    char host[ZPF_CONF_HOST_MAX];
    uint16_t port;
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        port = 0;
        int rc = zpf_conf_split_hostport(cases[i].in, host, sizeof host,
                                         &port, cases[i].def);
        if (rc != cases[i].rc)
            print_message("case %zu: %s\n", i, cases[i].in);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0) {
            assert_string_equal(host, cases[i].host);
            assert_int_equal(port, cases[i].port);
        }
    }
    /* Host names up to 253 bytes; the buffer must fit. */
    char name[300];
    memset(name, 'a', sizeof name);
    name[253] = '\0';
    assert_int_equal(zpf_conf_split_hostport(name, host, sizeof host, &port,
                                             1), 0);
    name[253] = 'a';
    name[254] = '\0';
    assert_int_equal(zpf_conf_split_hostport(name, host, sizeof host, &port,
                                             1), ZPF_EINVAL);
    assert_int_equal(zpf_conf_split_hostport("abcdef:1", host, 6, &port, 0),
                     ZPF_ENOSPC);
    assert_int_equal(zpf_conf_split_hostport("abcde:1", host, 6, &port, 0),
                     0);
    assert_int_equal(zpf_conf_split_hostport(NULL, host, 6, &port, 0),
                     ZPF_EINVAL);
    assert_int_equal(zpf_conf_split_hostport("h:1", NULL, 6, &port, 0),
                     ZPF_EINVAL);
}

static void test_durations(void **state)
{
    static const struct {
        const char *in;
        int rc;
        uint64_t ms;
    } cases[] = {
        {"500ms", 0, 500},
        {"1s", 0, 1000},
        {"2m", 0, 120000},
        {"1h", 0, 3600000},
        {"1m30s", 0, 90000},
        {"1h2m3s4ms", 0, 3723004},
        {"0", 0, 0},
        {"000", 0, 0},
        {"0s", 0, 0},
        {"0ms", 0, 0},
        {"1s500ms", 0, 1500},
        {"18446744073709551615ms", 0, UINT64_MAX},
        {"18446744073709551616ms", ZPF_E2BIG, 0},
        {"18446744073709551615s", ZPF_E2BIG, 0},
        {"5124095576030h", 0, 5124095576030ull * 3600000},
        {"5124095576030h1m", 0, 5124095576030ull * 3600000 + 60000},
        {"5124095576031h", ZPF_E2BIG, 0},
        {"5124095576030h26m", ZPF_E2BIG, 0}, /* the sum overflows */
        {"5124095576030h1h", ZPF_EINVAL, 0}, /* unit twice */
        {"99999999999999999999999h", ZPF_E2BIG, 0},
        {"1", ZPF_EINVAL, 0},
        {"250", ZPF_EINVAL, 0},
        {"", ZPF_EINVAL, 0},
        {"s", ZPF_EINVAL, 0},
        {"1S", ZPF_EINVAL, 0},
        {"1d", ZPF_EINVAL, 0},
        {"1.5s", ZPF_EINVAL, 0},
        {"-1s", ZPF_EINVAL, 0},
        {"+1s", ZPF_EINVAL, 0},
        {" 1s", ZPF_EINVAL, 0},
        {"1s ", ZPF_EINVAL, 0},
        {"1s1s", ZPF_EINVAL, 0},
        {"1ms1s", ZPF_EINVAL, 0},
        {"1s1m", ZPF_EINVAL, 0},
        {"1m1h", ZPF_EINVAL, 0},
        {"1sx", ZPF_EINVAL, 0},
        {"1mss", ZPF_EINVAL, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t ms = 12345;
        int rc = zpf_conf_duration(cases[i].in, &ms);
        if (rc != cases[i].rc)
            print_message("case %zu: '%s'\n", i, cases[i].in);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0)
            assert_true(ms == cases[i].ms);
        else
            assert_true(ms == 12345);
    }
    uint64_t ms;
    assert_int_equal(zpf_conf_duration(NULL, &ms), ZPF_EINVAL);
    assert_int_equal(zpf_conf_duration("1s", NULL), ZPF_EINVAL);
}

/* --- keyring files -------------------------------------------------------- */

static void b64(char *out, size_t cap, uint8_t first)
{
    uint8_t k[32];
    for (int i = 0; i < 32; i++)
        k[i] = (uint8_t)(first + i);
    sodium_bin2base64(out, cap, k, 32, sodium_base64_VARIANT_ORIGINAL);
}

static void test_keyring(void **state)
{
    uint8_t keys[4][32];
    char k1[64], k2[64], k3[64], text[1024], err[ZPF_CONF_ERR_MAX];
    char want[PATH_MAX + 200];
    (void)state;
    b64(k1, sizeof k1, 1);
    b64(k2, sizeof k2, 100);
    b64(k3, sizeof k3, 200);

    snprintf(text, sizeof text,
             "# zpf keyring: the first key is the primary\n"
             "\n"
             "  %s  \r\n"
             "\t# old key, remove after rotation\n"
             "%s # next\n"
             "%s", k1, k2, k3);
    const char *path = write_file("ring", text, strlen(text), 0600);
    assert_int_equal(zpf_conf_read_keyring(path, keys, 4, err, sizeof err),
                     3);
    for (int i = 0; i < 32; i++) {
        assert_int_equal(keys[0][i], 1 + i);
        assert_int_equal(keys[1][i], 100 + i);
        assert_int_equal(keys[2][i], (uint8_t)(200 + i));
    }
    /* group-readable is allowed: a zpf group may need it */
    path = write_file("ring", text, strlen(text), 0640);
    assert_int_equal(zpf_conf_read_keyring(path, keys, 4, err, sizeof err),
                     3);

    /* more keys than room: line of the first one too many */
    assert_int_equal(zpf_conf_read_keyring(path, keys, 2, err, sizeof err),
                     ZPF_ELIMIT);
    snprintf(want, sizeof want, "%s:6: more than 2 keys; remove old ones "
             "(the first key is the primary)", path);
    assert_string_equal(err, want);
    static const uint8_t zero[4][32];
    assert_memory_equal(keys, zero, 2 * 32); /* wiped on failure */

    struct {
        const char *text;
        int rc;
        const char *msg; /* after "PATH" */
    } bad[] = {
        {"# empty\n\n   \n", ZPF_EINVAL,
         ": no keys; put one base64 key per line, the primary first (make "
         "one with: zpfctl keygen)"},
        {"", ZPF_EINVAL,
         ": no keys; put one base64 key per line, the primary first (make "
         "one with: zpfctl keygen)"},
        {NULL, ZPF_EINVAL,
         ":3: not a key: expected base64 (standard alphabet with '=' "
         "padding) of 32 bytes; make one with: zpfctl keygen"},
        {NULL, ZPF_EINVAL,
         ":2: the key decodes to 18 bytes; a key is 32 bytes (make one "
         "with: zpfctl keygen)"},
        {NULL, ZPF_EINVAL, ":4: the same key as line 1; remove one"},
    };
    char t2[512], t3[512], t4[512];
    snprintf(t2, sizeof t2, "%s\n# ok\nnot-a-key-at-all%%\n", k1);
    snprintf(t3, sizeof t3, "%s\nc2VjcmV0c2VjcmV0c2VjcmV0\n", k1);
    snprintf(t4, sizeof t4, "%s\n%s\n\n%s\n", k1, k2, k1);
    bad[2].text = t2;
    bad[3].text = t3;
    bad[4].text = t4;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = write_file("bad", bad[i].text, strlen(bad[i].text), 0600);
        assert_int_equal(zpf_conf_read_keyring(path, keys, 4, err,
                                               sizeof err), bad[i].rc);
        snprintf(want, sizeof want, "%s%s", path, bad[i].msg);
        assert_string_equal(err, want);
        assert_null(strstr(err, "c2VjcmV0"));
        assert_null(strstr(err, "not-a-key"));
        assert_null(strstr(err, k1));
    }

    /* Permissions: others must neither write nor read it. */
    path = write_file("open", text, strlen(text), 0644);
    assert_int_equal(zpf_conf_read_keyring(path, keys, 4, err, sizeof err),
                     ZPF_EPERM);
    snprintf(want, sizeof want, "%s: readable by everyone (mode 0644): any "
             "local user could read the cluster key; run chmod 600 %s", path,
             path);
    assert_string_equal(err, want);
    path = write_file("gw", text, strlen(text), 0620);
    assert_int_equal(zpf_conf_read_keyring(path, keys, 4, err, sizeof err),
                     ZPF_EPERM);
    snprintf(want, sizeof want, "%s: writable by its group (mode 0620): "
             "whoever can write it can add a key and join the cluster; run "
             "chmod 600 %s", path, path);
    assert_string_equal(err, want);
    path = write_file("ow", text, strlen(text), 0602);
    assert_int_equal(zpf_conf_read_keyring(path, keys, 4, err, sizeof err),
                     ZPF_EPERM);
    assert_non_null(strstr(err, "writable by everyone (mode 0602)"));

    snprintf(want, sizeof want, "%s/missing", tmpdir);
    assert_int_equal(zpf_conf_read_keyring(want, keys, 4, err, sizeof err),
                     ZPF_ENOENT);
    assert_non_null(strstr(err, "missing: cannot open the keyring: "));
    assert_int_equal(zpf_conf_read_keyring(tmpdir, keys, 4, err, sizeof err),
                     ZPF_EIO);
    snprintf(want, sizeof want, "%s: not a regular file", tmpdir);
    assert_string_equal(err, want);
    assert_int_equal(zpf_conf_read_keyring(path, keys, 0, err, sizeof err),
                     ZPF_EINVAL);
    assert_int_equal(zpf_conf_read_keyring(NULL, keys, 1, err, sizeof err),
                     ZPF_EINVAL);

    char *big = malloc(70000);
    assert_non_null(big);
    memset(big, '#', 70000);
    path = write_file("bigring", big, 70000, 0600);
    free(big);
    assert_int_equal(zpf_conf_read_keyring(path, keys, 4, err, sizeof err),
                     ZPF_E2BIG);
}

/* --- SIGHUP --------------------------------------------------------------- */

static void test_diff(void **state)
{
    struct zpf_conf a, b;
    char out[256];
    (void)state;
    ok(MINIMAL, &a);
    ok(MINIMAL, &b);
    assert_int_equal(zpf_conf_diff_fixed(&a, &b, out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(zpf_conf_diff_live(&a, &b, out, sizeof out), 0);
    assert_string_equal(out, "");
    zpf_conf_free(&b);

    static const char changed[] =
        "node:\n"
        "  name: n1\n"
        "  data_dir: /var/lib/zpf/n1\n"
        "  tags: {role: web}\n"
        "gossip:\n"
        "  cluster: demo\n"
        "  bind: 127.0.0.2:7946\n"
        "  join: [127.0.0.1:7947]\n"
        "  probe_interval: 2s\n"
        "security:\n"
        "  keyring: /etc/zpf/keyring2\n"
        "control:\n"
        "  socket: /run/zpf/n1.sock\n"
        "health:\n"
        "  checks: [{name: a, tcp: 'h:1'}]\n"
        "log:\n"
        "  level: debug\n";
    ok(changed, &b);
    /* advertise follows bind, so it changed too */
    assert_int_equal(zpf_conf_diff_fixed(&a, &b, out, sizeof out), 4);
    assert_string_equal(out, "gossip.bind, gossip.advertise, "
                             "gossip.probe_interval, security.keyring");
    assert_int_equal(zpf_conf_diff_live(&a, &b, out, sizeof out), 3);
    assert_string_equal(out, "node.tags, health.checks, log.level");
    /* truncated at a name boundary, count still whole */
    assert_int_equal(zpf_conf_diff_fixed(&a, &b, out, 29), 4);
    assert_string_equal(out, "gossip.bind");
    assert_int_equal(zpf_conf_diff_fixed(&a, &b, out, 30), 4);
    assert_string_equal(out, "gossip.bind, gossip.advertise");
    assert_int_equal(zpf_conf_diff_fixed(&a, &b, NULL, 0), 4);
    zpf_conf_free(&b);

    /* lists compare by content: one changed check is a live change */
    struct zpf_conf c, d;
    ok(OK "health:\n  checks:\n    - {name: a, command: [x, y]}\n", &c);
    ok(OK "health:\n  checks:\n    - {name: a, command: [x, z]}\n", &d);
    assert_int_equal(zpf_conf_diff_live(&c, &d, out, sizeof out), 1);
    assert_string_equal(out, "health.checks");
    assert_int_equal(zpf_conf_diff_fixed(&c, &d, out, sizeof out), 0);
    zpf_conf_free(&d);
    ok(OK "health:\n  checks:\n    - {name: a, command: [x, y]}\n", &d);
    assert_int_equal(zpf_conf_diff_live(&c, &d, out, sizeof out), 0);
    zpf_conf_free(&c);
    zpf_conf_free(&d);

    ok(NODE GOSSIP "security:\n"
       "  keys: [AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=]\n", &c);
    ok(NODE GOSSIP "security:\n"
       "  keys: [AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=]\n", &d);
    assert_int_equal(zpf_conf_diff_fixed(&c, &d, out, sizeof out), 1);
    assert_string_equal(out, "security.keys");
    zpf_conf_free(&c);
    zpf_conf_free(&d);
    assert_int_equal(zpf_conf_diff_fixed(&a, NULL, out, sizeof out),
                     ZPF_EINVAL);
    zpf_conf_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal),
        cmocka_unit_test(test_defaults_when_absent),
        cmocka_unit_test(test_hostname_default),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_example),
        cmocka_unit_test(test_keys_schema),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_no_err_buffer),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_bad_durations),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_security),
        cmocka_unit_test(test_bad_inline_key),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_more_health),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_yaml_syntax),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_split_hostport),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_keyring),
        cmocka_unit_test(test_diff),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
