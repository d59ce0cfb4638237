/*
 * Tests for the agent's store (agent/store.c).
 *
 * Each test gets a fresh mkdtemp() directory under /tmp (removed by
 * teardown, also when the test fails) and looks at the database twice:
 * through the store's API, and through a connection of its own, so that what
 * the store claims (WAL mode, schema version, an untouched refused file) is
 * checked on the file itself.  Failures the disk cannot be made to produce
 * here (full disk, I/O errors, locks) come from the store's fault hook, at
 * the exact step where SQLite would report them.
 *
 * The crash test forks a writer, kills it with SIGKILL after a random few
 * milliseconds, and checks what is left: the file passes integrity_check,
 * the member list is one complete list that was written (never a mix of
 * two), and the boot epoch never went backwards.  The seed (ZPF_SEED in the
 * environment overrides it) fixes the delays; where each kill lands also
 * depends on the scheduler, so a failure prints the round as well.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "zpf/error.h"
#include "store.h"

#define BUF_CAP 10000       /* members in each of the fixture's buffers */
#define NOBODY 65534        /* uid/gid to drop to when the tests run as root */
#define CRASH_ROUNDS 50
#define CRASH_LIST_MAX 120  /* members per list: up to 3 pages a commit */
#define CRASH_SEED 0x5eedu
/* Kill within 25 ms.  An epoch commit waits for an fsync (a few ms here),
 * a member list does not; so the writer saves a few lists per epoch, and
 * the kills land in both. */
#define CRASH_MAX_US 25000
#define CRASH_LISTS_PER_EPOCH 4

/* --- fixture -------------------------------------------------------------- */

struct fx {
    char root[64];  /* the mkdtemp() directory */
    char dir[128];  /* data_dir: root/data, not created */
    char db[160];   /* dir/zpf.db */
    struct zpf_store *st;
    mode_t old_umask;
    char err[1024];
    /* Member buffers of BUF_CAP, freed by teardown even when a test fails
     * half-way: a failing test must not also report leaks. */
    struct zpf_store_member *got, *a, *b;
};

static void rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        chmod(path, 0700); /* a test may have made it unwritable */
        DIR *d = opendir(path);
        if (d != NULL) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 ||
                    strcmp(e->d_name, "..") == 0)
                    continue;
                char sub[512];
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void teardown_mem(struct fx *f)
{
    free(f->got);
    free(f->a);
    free(f->b);
    free(f);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->got = calloc(BUF_CAP, sizeof *f->got);
    f->a = calloc(BUF_CAP, sizeof *f->a);
    f->b = calloc(BUF_CAP, sizeof *f->b);
    snprintf(f->root, sizeof f->root, "/tmp/zpf-store-XXXXXX");
    if (f->got == NULL || f->a == NULL || f->b == NULL ||
        mkdtemp(f->root) == NULL) {
        teardown_mem(f);
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "%s/data", f->root);
    snprintf(f->db, sizeof f->db, "%s/zpf.db", f->dir);
    f->old_umask = umask(022);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    zpf_store_close(f->st);
    rm_rf(f->root);
    umask(f->old_umask);
    teardown_mem(f);
    return 0;
}

#define assert_has(s, needle)                                                \
    do {                                                                     \
        if (strstr((s), (needle)) == NULL)                                   \
            fail_msg("\"%s\" is not in \"%s\"", (needle), (s));              \
    } while (0)

#define assert_code(call, want, f)                                           \
    do {                                                                     \
        (f)->err[0] = '\0';                                                  \
        int rc_ = (call);                                                    \
        if (rc_ != (want))                                                   \
            fail_msg("%s returned %s, want %s: %s", #call,                  \
                     zpf_err_name(rc_), zpf_err_name(want), (f)->err);       \
    } while (0)

#define E(f) (f)->err, sizeof (f)->err

static void open_ok(struct fx *f)
{
    zpf_store_close(f->st);
    f->st = NULL;
    assert_code(zpf_store_open(f->dir, &f->st, E(f)), 0, f);
    assert_non_null(f->st);
}

static void close_st(struct fx *f)
{
    zpf_store_close(f->st);
    f->st = NULL;
}

/* --- a connection of the test's own --------------------------------------- */

static sqlite3 *db_open(const char *path)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK)
        fail_msg("sqlite3_open_v2(%s): %s", path, sqlite3_errstr(rc));
    return db;
}

static void db_exec(const char *path, const char *sql)
{
    sqlite3 *db = db_open(path);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        char copy[256];
        snprintf(copy, sizeof copy, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        sqlite3_close(db);
        fail_msg("%s: %s", sql, copy);
    }
    sqlite3_close(db);
}

/* First column of the first row as text ("" when there is no row). */
static void db_text(const char *path, const char *sql, char *out, size_t len)
{
    sqlite3 *db = db_open(path);
    sqlite3_stmt *s = NULL;
    out[0] = '\0';
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        snprintf(out, len, "%s", t ? (const char *)t : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errstr(rc));
}

static long long db_int(const char *path, const char *sql)
{
    char buf[64];
    db_text(path, sql, buf, sizeof buf);
    return strtoll(buf, NULL, 10);
}

/* --- files ---------------------------------------------------------------- */

static void write_file(const char *path, const void *buf, size_t len,
                       mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

static size_t read_file(const char *path, void *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, cap);
    close(fd);
    assert_true(n >= 0);
    return (size_t)n;
}

static mode_t mode_of(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        fail_msg("stat %s: %s", path, strerror(errno));
    return sb.st_mode & 07777;
}

/* --- members -------------------------------------------------------------- */

static struct zpf_store_member mk(const char *name, const char *addr,
                                  uint8_t state, uint32_t inc, uint64_t seen)
{
    struct zpf_store_member m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "%s", name);
    snprintf(m.addr, sizeof m.addr, "%s", addr);
    m.state = state;
    m.incarnation = inc;
    m.seen_unix_ms = seen;
    return m;
}

static void assert_member_eq(const struct zpf_store_member *a,
                             const struct zpf_store_member *b)
{
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->addr, b->addr);
    assert_int_equal(a->state, b->state);
    assert_int_equal(a->incarnation, b->incarnation);
    assert_int_equal(a->seen_unix_ms, b->seen_unix_ms);
}

struct coll {
    struct zpf_store_member *m;
    size_t n, cap;
    size_t stop_at; /* return `ret` when the stop_at-th member arrives */
    int ret;
};

static struct coll coll_of(struct fx *f)
{
    return (struct coll){.m = f->got, .cap = BUF_CAP};
}

static int collect_cb(void *ctx, const struct zpf_store_member *m)
{
    struct coll *c = ctx;
    if (c->n == c->cap)
        return ZPF_E2BIG;
    c->m[c->n++] = *m;
    if (c->stop_at != 0 && c->n == c->stop_at)
        return c->ret;
    return 0;
}

/* Load everything into f->got. */
static struct coll load_all(struct fx *f)
{
    struct coll c = coll_of(f);
    int rc = zpf_store_load_members(f->st, collect_cb, &c, E(f));
    if (rc < 0)
        fail_msg("load_members: %s: %s", zpf_err_name(rc), f->err);
    assert_int_equal((size_t)rc, c.n);
    return c;
}

static void assert_list(struct fx *f, const struct zpf_store_member *want,
                        size_t n)
{
    struct coll c = load_all(f);
    if (c.n != n)
        fail_msg("loaded %zu members, want %zu", c.n, n);
    for (size_t i = 0; i < n; i++)
        assert_member_eq(&c.m[i], &want[i]);
}

/* Three members already in load order (most recently seen first). */
static void base_list(struct zpf_store_member m[3])
{
    m[0] = mk("alpha", "10.0.0.1:7946", 0, 3, 3000);
    m[1] = mk("beta", "[2001:db8::1]:7946", 1, 2, 2000);
    m[2] = mk("gamma", "192.168.1.9:65535", 2, 1, 1000);
}

/* --- keys ----------------------------------------------------------------- */

/* Printable on purpose: a key that leaked into a message would show up as
 * "SECRET" there. */
static void mk_key(uint8_t key[ZPF_STORE_KEY_LEN], unsigned i)
{
    char buf[ZPF_STORE_KEY_LEN + 1];
    snprintf(buf, sizeof buf, "SECRET-KEY-%02u-abcdefghijklmnopq", i);
    memcpy(key, buf, ZPF_STORE_KEY_LEN);
}

static void assert_no_key_text(const char *s)
{
    /* As text, or as hex ("SECR"). */
    if (strstr(s, "SECRET") != NULL || strstr(s, "53454352") != NULL)
        fail_msg("key bytes in a message: %s", s);
}

static bool holds(const void *buf, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= len; i++)
        if (memcmp((const char *)buf + i, needle, nl) == 0)
            return true;
    return false;
}

/* --- the fault hook ------------------------------------------------------- */

struct fault {
    const char *op;  /* the op to fail; NULL: every op */
    int rc;          /* what to return */
    unsigned after;  /* let this many matching calls pass first */
    bool once;       /* fail one call only */
    unsigned calls;  /* matching calls seen */
    unsigned fired;
    char last[32];   /* the last op seen, whatever it was */
};

static int fault_cb(void *ctx, const char *op)
{
    struct fault *fl = ctx;
    snprintf(fl->last, sizeof fl->last, "%s", op);
    if (fl->op != NULL && strcmp(op, fl->op) != 0)
        return 0;
    fl->calls++;
    if (fl->calls <= fl->after || (fl->once && fl->fired > 0))
        return 0;
    fl->fired++;
    return fl->rc;
}

/* The ops that write: a full disk fails these and nothing else. */
static int disk_full_cb(void *ctx, const char *op)
{
    static const char *const writes[] = {
        "set_u64", "epoch_set", "members_clear", "member_insert",
        "keys_clear", "key_insert", "keys_meta", "commit",
    };
    unsigned *fired = ctx;
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        if (strcmp(op, writes[i]) == 0) {
            (*fired)++;
            return SQLITE_FULL;
        }
    }
    return 0;
}

/* --- open ----------------------------------------------------------------- */

static void test_open_creates_dir_and_schema(void **state)
{
    struct fx *f = *state;
    char deep[256], a[200];
    snprintf(a, sizeof a, "%s/a", f->root);
    snprintf(deep, sizeof deep, "%s/a/b//c/", f->root);
    assert_code(zpf_store_open(deep, &f->st, E(f)), 0, f);

    assert_int_equal(mode_of(a), 0700);
    char c[256], db[300];
    snprintf(c, sizeof c, "%s/a/b/c", f->root);
    snprintf(db, sizeof db, "%s/zpf.db", c);
    assert_int_equal(mode_of(c), 0700);
    assert_int_equal(mode_of(db), 0600);
    assert_int_equal(db_int(db, "PRAGMA user_version"),
                     ZPF_STORE_SCHEMA_VERSION);
    assert_int_equal(db_int(db, "PRAGMA application_id"),
                     ZPF_STORE_APPLICATION_ID);
    assert_int_equal(db_int(db, "SELECT count(*) FROM sqlite_master WHERE "
                                "type = 'table' AND name IN ('kv', "
                                "'members', 'keyring', 'keyring_meta')"),
                     4);
}

static void test_open_bad_args(void **state)
{
    struct fx *f = *state;
    assert_code(zpf_store_open(f->dir, NULL, E(f)), ZPF_EINVAL, f);
    struct zpf_store *st = (struct zpf_store *)f; /* must become NULL */
    assert_code(zpf_store_open(NULL, &st, E(f)), ZPF_EINVAL, f);
    assert_null(st);
    assert_has(f->err, "data_dir");
    assert_code(zpf_store_open("", &f->st, E(f)), ZPF_EINVAL, f);
    assert_null(f->st);

    char *longdir = malloc(ZPF_STORE_DIR_MAX + 2);
    assert_non_null(longdir);
    memset(longdir, 'a', ZPF_STORE_DIR_MAX + 1);
    longdir[ZPF_STORE_DIR_MAX + 1] = '\0';
    int rc = zpf_store_open(longdir, &f->st, E(f));
    free(longdir);
    assert_int_equal(rc, ZPF_EINVAL);
    assert_has(f->err, "longer than");

    /* No error buffer at all is allowed. */
    assert_int_equal(zpf_store_open(NULL, &f->st, NULL, 0), ZPF_EINVAL);
    zpf_store_close(NULL);
    zpf_store_set_fault(NULL, NULL, NULL);
}

static void test_reopen_keeps_values(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    struct zpf_store_member m[3];
    base_list(m);
    uint8_t keys[2][ZPF_STORE_KEY_LEN];
    mk_key(keys[0], 0);
    mk_key(keys[1], 1);
    assert_code(zpf_store_set_u64(f->st, "incarnation", 7, E(f)), 0, f);
    assert_code(zpf_store_set_u64(f->st, "big", UINT64_MAX, E(f)), 0, f);
    assert_code(zpf_store_save_members(f->st, m, 3, E(f)), 0, f);
    assert_code(zpf_store_save_keys(f->st, 9, keys, 2, 1, E(f)), 0, f);
    close_st(f);

    open_ok(f);
    uint64_t v = 0;
    assert_code(zpf_store_get_u64(f->st, "incarnation", &v, E(f)), 0, f);
    assert_int_equal(v, 7);
    assert_code(zpf_store_get_u64(f->st, "big", &v, E(f)), 0, f);
    assert_true(v == UINT64_MAX);
    assert_list(f, m, 3);
    uint8_t got[8][ZPF_STORE_KEY_LEN];
    size_t n = 0, primary = 0;
    uint64_t ver = 0;
    assert_code(zpf_store_load_keys(f->st, &ver, got, 8, &n, &primary, E(f)),
                0, f);
    assert_int_equal(ver, 9);
    assert_int_equal(n, 2);
    assert_int_equal(primary, 1);
    assert_memory_equal(got, keys, sizeof keys);
}

static void test_journal_mode_is_wal(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    char mode[16];
    db_text(f->db, "PRAGMA journal_mode", mode, sizeof mode);
    assert_string_equal(mode, "wal");
    close_st(f);
    /* Persistent: the header's read and write versions say WAL (2). */
    uint8_t hdr[100];
    assert_int_equal(read_file(f->db, hdr, sizeof hdr), sizeof hdr);
    assert_int_equal(hdr[18], 2);
    assert_int_equal(hdr[19], 2);
}

static void test_file_modes(void **state)
{
    struct fx *f = *state;
    /* Even with a permissive umask, the database is the owner's only. */
    umask(0);
    open_ok(f);
    assert_code(zpf_store_set_u64(f->st, "incarnation", 1, E(f)), 0, f);
    char wal[200], shm[200];
    snprintf(wal, sizeof wal, "%s-wal", f->db);
    snprintf(shm, sizeof shm, "%s-shm", f->db);
    assert_int_equal(mode_of(f->dir), 0700);
    assert_int_equal(mode_of(f->db), 0600);
    assert_int_equal(mode_of(wal), 0600);
    assert_int_equal(mode_of(shm), 0600);
    close_st(f);

    /* An existing zpf.db open to others is narrowed; an existing data_dir
     * keeps the mode its operator chose. */
    rm_rf(f->dir);
    assert_int_equal(mkdir(f->dir, 0755), 0);
    write_file(f->db, "", 0, 0666);
    chmod(f->db, 0666);
    open_ok(f);
    assert_int_equal(mode_of(f->db), 0600);
    assert_int_equal(mode_of(f->dir), 0755);
}

static void test_newer_schema_refused(void **state)
{
    struct fx *f = *state;
    assert_int_equal(mkdir(f->dir, 0700), 0);
    char sql[200];
    snprintf(sql, sizeof sql,
             "CREATE TABLE future (x); PRAGMA application_id = %d; "
             "PRAGMA user_version = %d", ZPF_STORE_APPLICATION_ID,
             ZPF_STORE_SCHEMA_VERSION + 1);
    db_exec(f->db, sql);

    assert_code(zpf_store_open(f->dir, &f->st, E(f)), ZPF_EVERSION, f);
    assert_null(f->st);
    assert_has(f->err, f->db);
    assert_has(f->err, "newer");
    /* Untouched: same version, not switched to WAL, nothing added. */
    assert_int_equal(db_int(f->db, "PRAGMA user_version"),
                     ZPF_STORE_SCHEMA_VERSION + 1);
    char mode[16];
    db_text(f->db, "PRAGMA journal_mode", mode, sizeof mode);
    assert_string_equal(mode, "delete");
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM sqlite_master"), 1);
}

static void test_migrate_from_empty_file(void **state)
{
    struct fx *f = *state;
    assert_int_equal(mkdir(f->dir, 0700), 0);
    write_file(f->db, "", 0, 0600);
    open_ok(f);
    assert_int_equal(db_int(f->db, "PRAGMA user_version"),
                     ZPF_STORE_SCHEMA_VERSION);
    assert_code(zpf_store_set_u64(f->st, "incarnation", 1, E(f)), 0, f);
    close_st(f);

    /* An SQLite file at schema 0 that is not empty: objects came and went. */
    rm_rf(f->dir);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    db_exec(f->db, "CREATE TABLE t (x); DROP TABLE t");
    assert_int_equal(db_int(f->db, "PRAGMA user_version"), 0);
    open_ok(f);
    assert_int_equal(db_int(f->db, "PRAGMA user_version"),
                     ZPF_STORE_SCHEMA_VERSION);
    uint64_t e = 0;
    assert_code(zpf_store_next_epoch(f->st, 0, &e, E(f)), 0, f);
    assert_int_equal(e, 1);
}

static void test_foreign_database_refused(void **state)
{
    struct fx *f = *state;
    assert_int_equal(mkdir(f->dir, 0700), 0);
    db_exec(f->db, "CREATE TABLE photos (x)");
    assert_code(zpf_store_open(f->dir, &f->st, E(f)), ZPF_EIO, f);
    assert_null(f->st);
    assert_has(f->err, f->db);
    assert_has(f->err, "not a zpf store");
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM sqlite_master"), 1);

    /* Another program's versioned database. */
    db_exec(f->db, "PRAGMA user_version = 1; PRAGMA application_id = 42");
    assert_code(zpf_store_open(f->dir, &f->st, E(f)), ZPF_EIO, f);
    assert_has(f->err, "not a zpf store");
    assert_int_equal(db_int(f->db, "PRAGMA user_version"), 1);
    assert_int_equal(db_int(f->db, "SELECT count(*) FROM sqlite_master"), 1);
}

static void test_garbage_file_refused(void **state)
{
    struct fx *f = *state;
    assert_int_equal(mkdir(f->dir, 0700), 0);
    char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = "this is not a database\n"[i % 23];
    write_file(f->db, junk, sizeof junk, 0600);

    assert_code(zpf_store_open(f->dir, &f->st, E(f)), ZPF_EIO, f);
    assert_null(f->st);
    assert_has(f->err, f->db);
    assert_has(f->err, "not a database");
    assert_has(f->err, "move it aside");
    char back[sizeof junk + 1];
    assert_int_equal(read_file(f->db, back, sizeof back), sizeof junk);
    assert_memory_equal(back, junk, sizeof junk);
}

static void test_damaged_pages_reported(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    struct zpf_store_member *m = f->a;
    for (unsigned i = 0; i < 2000; i++) {
        char name[32];
        snprintf(name, sizeof name, "node-%u", i);
        m[i] = mk(name, "10.1.2.3:7946", 0, i, 1000 + i);
    }
    assert_code(zpf_store_save_members(f->st, m, 2000, E(f)), 0, f);
    close_st(f); /* checkpoints the WAL into zpf.db */

    /* Keep page 1 (the header and the schema); wreck every other page. */
    struct stat sb;
    assert_int_equal(stat(f->db, &sb), 0);
    assert_true(sb.st_size > 8192);
    char ff[4096];
    memset(ff, 0xff, sizeof ff);
    int fd = open(f->db, O_WRONLY);
    assert_true(fd >= 0);
    bool all = true;
    for (off_t off = 4096; off < sb.st_size; off += 4096)
        all &= pwrite(fd, ff, sizeof ff, off) == (ssize_t)sizeof ff;
    close(fd);
    assert_true(all);

    int rc = zpf_store_open(f->dir, &f->st, E(f));
    if (rc == 0) {
        struct coll c = coll_of(f);
        rc = zpf_store_load_members(f->st, collect_cb, &c, E(f));
    }
    assert_int_equal(rc, ZPF_EIO);
    assert_has(f->err, f->db);
    assert_has(f->err, "damaged");
    assert_has(f->err, "rebuilds its state from the cluster");
}

static void test_data_dir_is_a_file(void **state)
{
    struct fx *f = *state;
    write_file(f->dir, "x", 1, 0600);
    assert_code(zpf_store_open(f->dir, &f->st, E(f)), ZPF_EIO, f);
    assert_null(f->st);
    assert_has(f->err, f->dir);
    assert_has(f->err, "not a directory");

    /* A file in the middle of the path. */
    char sub[200];
    snprintf(sub, sizeof sub, "%s/sub/dir", f->dir);
    assert_code(zpf_store_open(sub, &f->st, E(f)), ZPF_EIO, f);
    assert_has(f->err, sub);
    assert_has(f->err, "Not a directory");

    /* zpf.db itself is a directory. */
    unlink(f->dir);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    assert_int_equal(mkdir(f->db, 0700), 0);
    assert_code(zpf_store_open(f->dir, &f->st, E(f)), ZPF_EIO, f);
    assert_has(f->err, f->db);
}

/* Try to open `dir` as an unprivileged user; the code and the message come
 * back through a pipe.  Returns false if privileges cannot be dropped. */
static bool open_unprivileged(const char *dir, int *code, char *msg,
                              size_t len)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        char buf[1024] = "";
        int rc = -99999;
        if (geteuid() != 0 || (setgid(NOBODY) == 0 && setuid(NOBODY) == 0)) {
            struct zpf_store *st = NULL;
            rc = zpf_store_open(dir, &st, buf + sizeof(int),
                                sizeof buf - sizeof(int));
            zpf_store_close(st);
        }
        memcpy(buf, &rc, sizeof rc);
        ssize_t w = write(fds[1], buf, sizeof buf);
        _exit(w == (ssize_t)sizeof buf ? 0 : 1);
    }
    close(fds[1]);
    char buf[1024];
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t r = read(fds[0], buf + got, sizeof buf - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_int_equal(got, sizeof buf);
    memcpy(code, buf, sizeof *code);
    snprintf(msg, len, "%s", buf + sizeof(int));
    return *code != -99999;
}

static void test_unwritable_data_dir(void **state)
{
    struct fx *f = *state;
    /* Let the unprivileged user through root, but write nowhere. */
    assert_int_equal(chmod(f->root, 0755), 0);
    char ro[128], inside[200];
    snprintf(ro, sizeof ro, "%s/ro", f->root);
    snprintf(inside, sizeof inside, "%s/ro/data", f->root);
    assert_int_equal(mkdir(ro, 0755), 0);
    if (geteuid() != 0)
        assert_int_equal(chmod(ro, 0555), 0);

    int code = 0;
    if (!open_unprivileged(inside, &code, f->err, sizeof f->err))
        skip();
    if (code != ZPF_EPERM)
        fail_msg("got %s: %s", zpf_err_name(code), f->err);
    assert_has(f->err, inside);
    assert_has(f->err, "Permission denied");

    /* A store that exists but whose file is not ours to write. */
    open_ok(f);
    close_st(f);
    assert_int_equal(chmod(f->dir, 0755), 0);
    if (geteuid() != 0)
        assert_int_equal(chmod(f->db, 0400), 0);
    assert_true(open_unprivileged(f->dir, &code, f->err, sizeof f->err));
    if (code != ZPF_EPERM)
        fail_msg("got %s: %s", zpf_err_name(code), f->err);
    assert_has(f->err, f->db);
    assert_has(f->err, "write access");
}

static void test_open_faults(void **state)
{
    struct fx *f = *state;
    struct fault fl = {.op = "open", .rc = SQLITE_CANTOPEN};
    assert_code(zpf_store_open_with_fault(f->dir, fault_cb, &fl, &f->st,
                                          E(f)),
                ZPF_EPERM, f);
    assert_null(f->st);
    assert_has(f->err, f->db);

    /* A migration that fails half-way leaves schema 0, then succeeds. */
    const char *points[] = {"migrate", "commit"};
    for (size_t i = 0; i < 2; i++) {
        rm_rf(f->dir);
        fl = (struct fault){.op = points[i], .rc = SQLITE_FULL};
        assert_code(zpf_store_open_with_fault(f->dir, fault_cb, &fl, &f->st,
                                              E(f)),
                    ZPF_ENOSPC, f);
        assert_null(f->st);
        assert_int_equal(fl.fired, 1);
        assert_has(f->err, "disk full");
        assert_int_equal(db_int(f->db, "PRAGMA user_version"), 0);
        assert_int_equal(db_int(f->db, "SELECT count(*) FROM sqlite_master"),
                         0);
        open_ok(f);
        assert_int_equal(db_int(f->db, "PRAGMA user_version"),
                         ZPF_STORE_SCHEMA_VERSION);
        close_st(f);
    }

    /* The hook given at open stays on the store. */
    fl = (struct fault){.op = "set_u64", .rc = SQLITE_IOERR};
    assert_code(zpf_store_open_with_fault(f->dir, fault_cb, &fl, &f->st,
                                          E(f)),
                0, f);
    assert_code(zpf_store_set_u64(f->st, "incarnation", 1, E(f)), ZPF_EIO, f);
    assert_int_equal(fl.fired, 1);
    zpf_store_set_fault(f->st, NULL, NULL);
    assert_code(zpf_store_set_u64(f->st, "incarnation", 1, E(f)), 0, f);
}

/* --- counters ------------------------------------------------------------- */

static void test_get_unset_is_enoent(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    uint64_t v = 0xdead;
    assert_code(zpf_store_get_u64(f->st, "incarnation", &v, E(f)),
                ZPF_ENOENT, f);
    assert_int_equal(v, 0xdead);
    assert_has(f->err, "incarnation");
    assert_code(zpf_store_get_u64(f->st, ZPF_STORE_EPOCH_KEY, &v, E(f)),
                ZPF_ENOENT, f);
}

static void test_u64_bad_input(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    uint64_t v = 0;
    char k64[ZPF_STORE_KEY_MAX + 1], k65[ZPF_STORE_KEY_MAX + 2];
    memset(k64, 'k', sizeof k64 - 1);
    k64[sizeof k64 - 1] = '\0';
    memset(k65, 'k', sizeof k65 - 1);
    k65[sizeof k65 - 1] = '\0';

    assert_code(zpf_store_set_u64(f->st, k64, 5, E(f)), 0, f);
    assert_code(zpf_store_get_u64(f->st, k64, &v, E(f)), 0, f);
    assert_int_equal(v, 5);
    assert_code(zpf_store_set_u64(f->st, "a.b-c_D9", 6, E(f)), 0, f);

    const char *bad[] = {NULL, "", k65, "a b", "x\n", "caf\xc3\xa9", "a/b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_code(zpf_store_set_u64(f->st, bad[i], 1, E(f)), ZPF_EINVAL, f);
        assert_has(f->err, "key");
        assert_code(zpf_store_get_u64(f->st, bad[i], &v, E(f)), ZPF_EINVAL,
                    f);
    }
    assert_code(zpf_store_get_u64(NULL, "x", &v, E(f)), ZPF_EINVAL, f);
    assert_code(zpf_store_get_u64(f->st, "x", NULL, E(f)), ZPF_EINVAL, f);
    assert_code(zpf_store_set_u64(NULL, "x", 1, E(f)), ZPF_EINVAL, f);
    assert_int_equal(zpf_store_set_u64(f->st, "", 1, NULL, 0), ZPF_EINVAL);

    /* The epoch only moves forward, through next_epoch. */
    assert_code(zpf_store_set_u64(f->st, ZPF_STORE_EPOCH_KEY, 0, E(f)),
                ZPF_EINVAL, f);
    assert_has(f->err, "zpf_store_next_epoch");
}

static void test_next_epoch(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    uint64_t e = 0;
    assert_code(zpf_store_next_epoch(f->st, 0, &e, E(f)), 0, f);
    assert_int_equal(e, 1);
    assert_code(zpf_store_next_epoch(f->st, 0, &e, E(f)), 0, f);
    assert_int_equal(e, 2);
    open_ok(f); /* reopen */
    assert_code(zpf_store_next_epoch(f->st, 0, &e, E(f)), 0, f);
    assert_int_equal(e, 3);
    /* A floor above the stored epoch wins; one below it does not. */
    assert_code(zpf_store_next_epoch(f->st, 1700000000, &e, E(f)), 0, f);
    assert_int_equal(e, 1700000000);
    assert_code(zpf_store_next_epoch(f->st, 5, &e, E(f)), 0, f);
    assert_int_equal(e, 1700000001);
    open_ok(f);
    assert_code(zpf_store_next_epoch(f->st, 1700000001, &e, E(f)), 0, f);
    assert_int_equal(e, 1700000002);
    uint64_t v = 0;
    assert_code(zpf_store_get_u64(f->st, ZPF_STORE_EPOCH_KEY, &v, E(f)), 0,
                f);
    assert_int_equal(v, 1700000002);

    /* Bounds: the epoch is the high half of a 64-bit sequence. */
    e = 77;
    assert_code(zpf_store_next_epoch(f->st, (uint64_t)UINT32_MAX + 1, &e,
                                     E(f)),
                ZPF_ELIMIT, f);
    assert_int_equal(e, 77);
    assert_code(zpf_store_next_epoch(f->st, UINT32_MAX, &e, E(f)), 0, f);
    assert_int_equal(e, UINT32_MAX);
    e = 77;
    assert_code(zpf_store_next_epoch(f->st, 0, &e, E(f)), ZPF_ELIMIT, f);
    assert_int_equal(e, 77);
    assert_has(f->err, f->db);
    assert_code(zpf_store_get_u64(f->st, ZPF_STORE_EPOCH_KEY, &v, E(f)), 0,
                f);
    assert_int_equal(v, UINT32_MAX);

    assert_code(zpf_store_next_epoch(f->st, 0, NULL, E(f)), ZPF_EINVAL, f);
    assert_code(zpf_store_next_epoch(NULL, 0, &e, E(f)), ZPF_EINVAL, f);
}

/* --- members -------------------------------------------------------------- */

static void test_members_round_trip(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    assert_list(f, NULL, 0); /* nothing saved yet */

    /* Given out of order; loaded most recently seen first, ties by name. */
    struct zpf_store_member in[5] = {
        mk("old", "10.0.0.9:0", 3, 0, 5),
        mk("b-tie", "[::1]:7946", 1, 7, 9000),
        mk("newest", "[fe80::1:2:3:4]:65535", 4, UINT32_MAX,
           (uint64_t)INT64_MAX),
        mk("a-tie", "255.255.255.255:80", 0, 8, 9000),
        mk("\xce\xbb-utf8", "127.0.0.1:7946", 2, 1, 100),
    };
    /* A 64-byte name: the longest there is. */
    memset(in[0].name, 'n', 64);
    in[0].name[64] = '\0';
    assert_code(zpf_store_save_members(f->st, in, 5, E(f)), 0, f);
    struct zpf_store_member want[5] = {in[2], in[3], in[1], in[4], in[0]};
    assert_list(f, want, 5);

    /* Replace, not merge. */
    struct zpf_store_member m[3];
    base_list(m);
    assert_code(zpf_store_save_members(f->st, m, 3, E(f)), 0, f);
    assert_list(f, m, 3);
    assert_code(zpf_store_save_members(f->st, NULL, 0, E(f)), 0, f);
    assert_list(f, NULL, 0);
    assert_code(zpf_store_save_members(f->st, m, 3, E(f)), 0, f);

    /* The callback can stop the walk, or fail it. */
    struct coll c = coll_of(f);
    c.stop_at = 2;
    c.ret = 1;
    assert_int_equal(zpf_store_load_members(f->st, collect_cb, &c, E(f)), 2);
    c = coll_of(f);
    c.stop_at = 1;
    c.ret = ZPF_ENOMEM;
    assert_int_equal(zpf_store_load_members(f->st, collect_cb, &c, E(f)),
                     ZPF_ENOMEM);
    /* ...and the next walk starts over. */
    assert_list(f, m, 3);

    assert_code(zpf_store_load_members(f->st, NULL, NULL, E(f)), ZPF_EINVAL,
                f);
    assert_code(zpf_store_load_members(NULL, collect_cb, &c, E(f)),
                ZPF_EINVAL, f);
}

static void test_members_bad_input(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    struct zpf_store_member base[3];
    base_list(base);
    assert_code(zpf_store_save_members(f->st, base, 3, E(f)), 0, f);

    static const char *const bad_addr[] = {
        "", "1.2.3.4", "1.2.3.4:", "1.2.3.4:00", "1.2.3.4:65536",
        "1.2.3.4:080", "1.2.3.4:80x", "1.2.3.4:+80", "1.2.3:80",
        "1.2.3.4.5:80", "[::1]", "[::1]80", "::1:80", "[1.2.3.4]:80",
        "host:80", "[]:80", " 1.2.3.4:80", "[::1]:99999", "[fe80::1%eth0]:1",
        "[::1]:7946 ", "1.2.3.4:7946:1",
    };
    size_t nbad = sizeof bad_addr / sizeof bad_addr[0];
    struct zpf_store_member two[2];
    two[0] = mk("ok", "10.0.0.1:7946", 0, 0, 1);
    for (size_t i = 0; i < nbad + 6; i++) {
        two[1] = mk("bad", "10.0.0.2:7946", 0, 0, 1);
        if (i < nbad) {
            snprintf(two[1].addr, sizeof two[1].addr, "%s", bad_addr[i]);
        } else if (i == nbad) {
            two[1].name[0] = '\0';
        } else if (i == nbad + 1) {
            memset(two[1].name, 'x', sizeof two[1].name); /* no NUL */
        } else if (i == nbad + 2) {
            memset(two[1].addr, '1', sizeof two[1].addr);
        } else if (i == nbad + 3) {
            two[1].state = 5;
        } else if (i == nbad + 4) {
            two[1].seen_unix_ms = (uint64_t)INT64_MAX + 1;
        } else {
            snprintf(two[1].name, sizeof two[1].name, "ok"); /* twice */
        }
        f->err[0] = '\0';
        int rc = zpf_store_save_members(f->st, two, 2, E(f));
        if (rc != ZPF_EINVAL)
            fail_msg("case %zu (%s): got %s: %s", i,
                     i < nbad ? bad_addr[i] : "-", zpf_err_name(rc), f->err);
        assert_has(f->err, "member 1");
        assert_list(f, base, 3);
    }

    /* A duplicated hostile name is shown without its control bytes. */
    two[0] = mk("evil\nname", "10.0.0.1:7946", 0, 0, 1);
    two[1] = two[0];
    assert_code(zpf_store_save_members(f->st, two, 2, E(f)), ZPF_EINVAL, f);
    assert_has(f->err, "evil?name");
    assert_null(strchr(f->err, '\n'));
    assert_list(f, base, 3);

    assert_code(zpf_store_save_members(f->st, NULL, 1, E(f)), ZPF_EINVAL, f);
    assert_code(zpf_store_save_members(NULL, base, 1, E(f)), ZPF_EINVAL, f);
    assert_list(f, base, 3);
}

static void test_members_row_not_ours(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    struct zpf_store_member base[3];
    base_list(base);
    assert_code(zpf_store_save_members(f->st, base, 3, E(f)), 0, f);
    /* Written by hand past the CHECKs: a name that fits no buffer. */
    db_exec(f->db, "PRAGMA ignore_check_constraints = ON; INSERT INTO members "
                   "VALUES (printf('%.100c', 'x'), '1.2.3.4:5', 0, 0, 0)");
    struct coll c = coll_of(f);
    assert_code(zpf_store_load_members(f->st, collect_cb, &c, E(f)), ZPF_EIO,
                f);
    assert_has(f->err, f->db);
    assert_has(f->err, "not written by zpfd");
    /* Saving a list replaces the bad row. */
    assert_code(zpf_store_save_members(f->st, base, 3, E(f)), 0, f);
    assert_list(f, base, 3);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_members_ten_thousand(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    enum { N = 10000 };
    struct zpf_store_member *m = f->a;
    for (unsigned i = 0; i < N; i++) {
        char name[32], addr[32];
        snprintf(name, sizeof name, "node-%05u", i);
        snprintf(addr, sizeof addr, "10.%u.%u.%u:7946", i >> 16,
                 (i >> 8) & 0xff, i & 0xff);
        /* Scrambled times, so the order comes from the store. */
        m[i] = mk(name, addr, (uint8_t)(i % 4), i,
                  1000000 + (uint64_t)(i * 7919u % N));
    }
    double t0 = now_s();
    int rc = zpf_store_save_members(f->st, m, N, E(f));
    double t1 = now_s();
    struct coll c = coll_of(f);
    int got = zpf_store_load_members(f->st, collect_cb, &c, E(f));
    double t2 = now_s();
    print_message("10,000 members: save %.1f ms, load %.1f ms\n",
                  (t1 - t0) * 1e3, (t2 - t1) * 1e3);
    if (rc != 0 || got != N)
        fail_msg("save %d, load %d: %s", rc, got, f->err);
    for (size_t i = 1; i < N; i++)
        if (c.m[i - 1].seen_unix_ms < c.m[i].seen_unix_ms)
            fail_msg("member %zu is out of order", i);
}

/* --- keyring -------------------------------------------------------------- */

static void test_keys_round_trip(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    uint8_t got[ZPF_STORE_KEYS_MAX][ZPF_STORE_KEY_LEN];
    uint64_t ver = 0;
    size_t n = 0, primary = 0;
    assert_code(zpf_store_load_keys(f->st, &ver, got, 8, &n, &primary, E(f)),
                ZPF_ENOENT, f);
    assert_has(f->err, "no keyring");

    uint8_t k[ZPF_STORE_KEYS_MAX][ZPF_STORE_KEY_LEN];
    for (unsigned i = 0; i < ZPF_STORE_KEYS_MAX; i++)
        mk_key(k[i], i);
    assert_code(zpf_store_save_keys(f->st, 42, k, 3, 1, E(f)), 0, f);
    assert_code(zpf_store_load_keys(f->st, &ver, got, 8, &n, &primary, E(f)),
                0, f);
    assert_int_equal(ver, 42);
    assert_int_equal(n, 3);
    assert_int_equal(primary, 1);
    assert_memory_equal(got, k, 3 * ZPF_STORE_KEY_LEN);

    /* Replace with fewer keys: nothing of the old ring remains. */
    assert_code(zpf_store_save_keys(f->st, 43, k + 5, 2, 0, E(f)), 0, f);
    open_ok(f);
    assert_code(zpf_store_load_keys(f->st, &ver, got, 2, &n, &primary, E(f)),
                0, f);
    assert_int_equal(ver, 43);
    assert_int_equal(n, 2);
    assert_int_equal(primary, 0);
    assert_memory_equal(got, k + 5, 2 * ZPF_STORE_KEY_LEN);

    /* The full ring. */
    assert_code(zpf_store_save_keys(f->st, (uint64_t)INT64_MAX, k, 8, 7,
                                    E(f)),
                0, f);
    assert_code(zpf_store_load_keys(f->st, &ver, got, 8, &n, &primary, E(f)),
                0, f);
    assert_true(ver == (uint64_t)INT64_MAX);
    assert_int_equal(n, 8);
    assert_int_equal(primary, 7);
    assert_memory_equal(got, k, sizeof k);

    /* Too small a buffer: nothing is written into it. */
    memset(got, 0xaa, sizeof got);
    n = 99;
    assert_code(zpf_store_load_keys(f->st, &ver, got, 7, &n, &primary, E(f)),
                ZPF_E2BIG, f);
    assert_int_equal(n, 99);
    for (size_t i = 0; i < sizeof got; i++)
        assert_int_equal(((uint8_t *)got)[i], 0xaa);
    assert_no_key_text(f->err);
}

static void test_keys_bad_input(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    uint8_t k[ZPF_STORE_KEYS_MAX + 1][ZPF_STORE_KEY_LEN];
    for (unsigned i = 0; i <= ZPF_STORE_KEYS_MAX; i++)
        mk_key(k[i], i);
    assert_code(zpf_store_save_keys(f->st, 1, k, 2, 0, E(f)), 0, f);

    uint8_t dup[3][ZPF_STORE_KEY_LEN];
    mk_key(dup[0], 0);
    mk_key(dup[1], 1);
    mk_key(dup[2], 0);
    struct {
        const uint8_t (*keys)[ZPF_STORE_KEY_LEN];
        size_t n, primary;
        uint64_t version;
        const char *says;
    } bad[] = {
        {NULL, 1, 0, 2, "keys is NULL"},
        {k, 0, 0, 2, "1..8 keys"},
        {k, ZPF_STORE_KEYS_MAX + 1, 0, 2, "1..8 keys"},
        {k, 3, 3, 2, "primary"},
        {k, 3, SIZE_MAX, 2, "primary"},
        {k, 3, 0, (uint64_t)INT64_MAX + 1, "version"},
        {(const uint8_t(*)[ZPF_STORE_KEY_LEN])dup, 3, 0, 2,
         "key 2 is the same as key 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_code(zpf_store_save_keys(f->st, bad[i].version, bad[i].keys,
                                        bad[i].n, bad[i].primary, E(f)),
                    ZPF_EINVAL, f);
        assert_has(f->err, bad[i].says);
        assert_no_key_text(f->err);
    }
    assert_code(zpf_store_save_keys(NULL, 1, k, 1, 0, E(f)), ZPF_EINVAL, f);

    uint8_t got[8][ZPF_STORE_KEY_LEN];
    uint64_t ver = 0;
    size_t n = 0, primary = 0;
    assert_code(zpf_store_load_keys(f->st, &ver, got, 8, &n, &primary, E(f)),
                0, f);
    assert_int_equal(ver, 1);
    assert_int_equal(n, 2);
    assert_memory_equal(got, k, 2 * ZPF_STORE_KEY_LEN);

    assert_code(zpf_store_load_keys(NULL, &ver, got, 8, &n, &primary, E(f)),
                ZPF_EINVAL, f);
    assert_code(zpf_store_load_keys(f->st, NULL, got, 8, &n, &primary, E(f)),
                ZPF_EINVAL, f);
    assert_code(zpf_store_load_keys(f->st, &ver, NULL, 8, &n, &primary,
                                    E(f)),
                ZPF_EINVAL, f);
    assert_code(zpf_store_load_keys(f->st, &ver, got, 8, NULL, &primary,
                                    E(f)),
                ZPF_EINVAL, f);
    assert_code(zpf_store_load_keys(f->st, &ver, got, 8, &n, NULL, E(f)),
                ZPF_EINVAL, f);
}

static void test_keys_damaged(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    uint8_t k[3][ZPF_STORE_KEY_LEN];
    for (unsigned i = 0; i < 3; i++)
        mk_key(k[i], i);
    assert_code(zpf_store_save_keys(f->st, 5, k, 3, 0, E(f)), 0, f);

    /* A key lost by hand: the keys read before the gap are wiped. */
    db_exec(f->db, "DELETE FROM keyring WHERE slot = 2");
    uint8_t got[8][ZPF_STORE_KEY_LEN];
    memset(got, 0, sizeof got);
    uint64_t ver = 0;
    size_t n = 0, primary = 0;
    assert_code(zpf_store_load_keys(f->st, &ver, got, 8, &n, &primary, E(f)),
                ZPF_EIO, f);
    assert_has(f->err, "damaged");
    assert_has(f->err, f->db);
    assert_no_key_text(f->err);
    assert_false(holds(got, sizeof got, "SECRET"));

    /* The meta row says more keys than the ring can hold. */
    assert_code(zpf_store_save_keys(f->st, 5, k, 3, 0, E(f)), 0, f);
    db_exec(f->db, "UPDATE keyring_meta SET nkeys = 9");
    assert_code(zpf_store_load_keys(f->st, &ver, got, 8, &n, &primary, E(f)),
                ZPF_EIO, f);
    assert_has(f->err, "damaged");
    /* Meta without keys. */
    db_exec(f->db, "UPDATE keyring_meta SET nkeys = 3; DELETE FROM keyring");
    assert_code(zpf_store_load_keys(f->st, &ver, got, 8, &n, &primary, E(f)),
                ZPF_EIO, f);
    assert_false(holds(got, sizeof got, "SECRET"));
}

/* --- failures ------------------------------------------------------------- */

static void test_disk_full(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    struct zpf_store_member m[3];
    base_list(m);
    uint8_t k[2][ZPF_STORE_KEY_LEN];
    mk_key(k[0], 0);
    mk_key(k[1], 1);
    uint64_t e = 0;
    assert_code(zpf_store_save_members(f->st, m, 3, E(f)), 0, f);
    assert_code(zpf_store_set_u64(f->st, "incarnation", 4, E(f)), 0, f);
    assert_code(zpf_store_save_keys(f->st, 1, k, 2, 0, E(f)), 0, f);
    assert_code(zpf_store_next_epoch(f->st, 0, &e, E(f)), 0, f);
    assert_int_equal(e, 1);

    unsigned fired = 0;
    zpf_store_set_fault(f->st, disk_full_cb, &fired);
    assert_code(zpf_store_save_members(f->st, m + 1, 2, E(f)), ZPF_ENOSPC, f);
    assert_has(f->err, "disk full writing");
    assert_has(f->err, f->db);
    assert_has(f->err, "free space");
    assert_has(f->err, "keeps running from memory");
    assert_code(zpf_store_set_u64(f->st, "incarnation", 5, E(f)), ZPF_ENOSPC,
                f);
    e = 99;
    assert_code(zpf_store_next_epoch(f->st, 0, &e, E(f)), ZPF_ENOSPC, f);
    assert_int_equal(e, 99);
    assert_code(zpf_store_save_keys(f->st, 2, k + 1, 1, 0, E(f)), ZPF_ENOSPC,
                f);
    assert_no_key_text(f->err);
    assert_true(fired >= 4);

    /* Reads keep working and see the old state. */
    uint64_t v = 0;
    assert_code(zpf_store_get_u64(f->st, "incarnation", &v, E(f)), 0, f);
    assert_int_equal(v, 4);
    assert_list(f, m, 3);
    uint8_t got[8][ZPF_STORE_KEY_LEN];
    size_t n = 0, primary = 0;
    assert_code(zpf_store_load_keys(f->st, &v, got, 8, &n, &primary, E(f)),
                0, f);
    assert_int_equal(v, 1);
    assert_int_equal(n, 2);

    /* Space returns: writes work again, and no epoch was skipped. */
    zpf_store_set_fault(f->st, NULL, NULL);
    assert_code(zpf_store_save_members(f->st, m + 1, 2, E(f)), 0, f);
    assert_list(f, m + 1, 2);
    assert_code(zpf_store_next_epoch(f->st, 0, &e, E(f)), 0, f);
    assert_int_equal(e, 2);
    assert_code(zpf_store_set_u64(f->st, "incarnation", 5, E(f)), 0, f);
    assert_code(zpf_store_get_u64(f->st, "incarnation", &v, E(f)), 0, f);
    assert_int_equal(v, 5);
}

static void test_error_codes(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    static const struct {
        int sqlite_rc, want;
        const char *says;
    } map[] = {
        {SQLITE_FULL, ZPF_ENOSPC, "disk full"},
        {SQLITE_IOERR, ZPF_EIO, "disk I/O error"},
        {SQLITE_IOERR_FSYNC, ZPF_EIO, "disk I/O error"},
        {SQLITE_BUSY, ZPF_EBUSY, "locked by another process"},
        {SQLITE_LOCKED, ZPF_EBUSY, "locked by another process"},
        {SQLITE_CORRUPT, ZPF_EIO, "damaged"},
        {SQLITE_NOTADB, ZPF_EIO, "damaged"},
        {SQLITE_READONLY, ZPF_EPERM, "write access"},
        {SQLITE_PERM, ZPF_EPERM, "write access"},
        {SQLITE_CANTOPEN, ZPF_EPERM, "write access"},
        {SQLITE_NOMEM, ZPF_ENOMEM, "out of memory"},
        {SQLITE_ERROR, ZPF_EIO, "SQL logic error"},
    };
    const char *points[] = {"begin", "set_u64", "commit"};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        for (size_t p = 0; p < 3; p++) {
            struct fault fl = {.op = points[p], .rc = map[i].sqlite_rc};
            zpf_store_set_fault(f->st, fault_cb, &fl);
            f->err[0] = '\0';
            int rc = zpf_store_set_u64(f->st, "incarnation", i, E(f));
            zpf_store_set_fault(f->st, NULL, NULL);
            if (rc != map[i].want)
                fail_msg("%s at %s: got %s, want %s: %s",
                         sqlite3_errstr(map[i].sqlite_rc), points[p],
                         zpf_err_name(rc), zpf_err_name(map[i].want), f->err);
            assert_has(f->err, map[i].says);
            assert_has(f->err, f->db);
            assert_has(f->err, "writing incarnation");
            /* Nothing stuck: the next write goes through. */
            assert_code(zpf_store_set_u64(f->st, "incarnation", 100 + i,
                                          E(f)),
                        0, f);
        }
    }
    /* Reads report the same way. */
    struct fault fl = {.op = "get_u64", .rc = SQLITE_BUSY};
    zpf_store_set_fault(f->st, fault_cb, &fl);
    uint64_t v = 0;
    assert_code(zpf_store_get_u64(f->st, "incarnation", &v, E(f)), ZPF_EBUSY,
                f);
    assert_has(f->err, "reading incarnation");
    zpf_store_set_fault(f->st, NULL, NULL);
    assert_code(zpf_store_get_u64(f->st, "incarnation", &v, E(f)), 0, f);
}

static void test_failed_writes_are_atomic(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    enum { N = 1000 };
    struct zpf_store_member *a = f->a, *b = f->b;
    for (unsigned i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "a-%04u", i);
        a[i] = mk(name, "10.0.0.1:7946", 0, i, 2 * N - i);
        snprintf(name, sizeof name, "b-%04u", i);
        b[i] = mk(name, "10.0.0.2:7946", 1, i, 2 * N - i);
    }
    assert_code(zpf_store_save_members(f->st, a, N, E(f)), 0, f);

    /* Fail the 500th insert, the delete, or the commit: list A stays. */
    struct fault cases[] = {
        {.op = "member_insert", .rc = SQLITE_IOERR, .after = 499, .once = 1},
        {.op = "members_clear", .rc = SQLITE_FULL, .once = 1},
        {.op = "commit", .rc = SQLITE_IOERR, .once = 1},
        {.op = "begin", .rc = SQLITE_BUSY, .once = 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zpf_store_set_fault(f->st, fault_cb, &cases[i]);
        int rc = zpf_store_save_members(f->st, b, N, E(f));
        zpf_store_set_fault(f->st, NULL, NULL);
        if (rc >= 0 || cases[i].fired != 1)
            fail_msg("case %zu: rc %d, fired %u", i, rc, cases[i].fired);
        assert_list(f, a, N);
    }

    /* A walk that fails half-way reports it, and the next one is whole. */
    struct fault fl = {.op = "members_load", .rc = SQLITE_IOERR, .after = 10};
    zpf_store_set_fault(f->st, fault_cb, &fl);
    struct coll c = coll_of(f);
    int rc = zpf_store_load_members(f->st, collect_cb, &c, E(f));
    zpf_store_set_fault(f->st, NULL, NULL);
    assert_int_equal(rc, ZPF_EIO);
    assert_int_equal(c.n, 10);
    assert_list(f, a, N);

    assert_code(zpf_store_save_members(f->st, b, N, E(f)), 0, f);
    assert_list(f, b, N);

    /* The keyring and the epoch alike. */
    uint8_t k[3][ZPF_STORE_KEY_LEN];
    for (unsigned i = 0; i < 3; i++)
        mk_key(k[i], i);
    assert_code(zpf_store_save_keys(f->st, 1, k, 2, 0, E(f)), 0, f);
    uint64_t e = 0;
    assert_code(zpf_store_next_epoch(f->st, 0, &e, E(f)), 0, f);
    const char *kpoints[] = {"keys_clear", "key_insert", "keys_meta",
                             "commit"};
    for (size_t i = 0; i < 4; i++) {
        fl = (struct fault){.op = kpoints[i], .rc = SQLITE_IOERR,
                            .after = i == 1, .once = 1};
        zpf_store_set_fault(f->st, fault_cb, &fl);
        assert_code(zpf_store_save_keys(f->st, 2, k + 1, 2, 1, E(f)),
                    ZPF_EIO, f);
        assert_no_key_text(f->err);
        fl = (struct fault){.op = i < 2 ? "epoch_get" : "epoch_set",
                            .rc = SQLITE_IOERR, .once = 1};
        if (i == 3)
            fl.op = "commit";
        assert_code(zpf_store_next_epoch(f->st, 0, &e, E(f)), ZPF_EIO, f);
        zpf_store_set_fault(f->st, NULL, NULL);
    }
    uint8_t got[8][ZPF_STORE_KEY_LEN];
    uint64_t ver = 0;
    size_t n = 0, primary = 0;
    assert_code(zpf_store_load_keys(f->st, &ver, got, 8, &n, &primary, E(f)),
                0, f);
    assert_int_equal(ver, 1);
    assert_int_equal(n, 2);
    assert_memory_equal(got, k, 2 * ZPF_STORE_KEY_LEN);
    assert_code(zpf_store_next_epoch(f->st, 0, &e, E(f)), 0, f);
    assert_int_equal(e, 2);
}

/* In WAL mode a writer elsewhere does not block the store's readers. */
static void test_reads_while_another_process_writes(void **state)
{
    struct fx *f = *state;
    open_ok(f);
    struct zpf_store_member m[3];
    base_list(m);
    assert_code(zpf_store_save_members(f->st, m, 3, E(f)), 0, f);
    assert_code(zpf_store_set_u64(f->st, "incarnation", 3, E(f)), 0, f);

    sqlite3 *other = db_open(f->db);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE; DELETE FROM "
                                         "members",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    uint64_t v = 0;
    f->err[0] = '\0';
    int rc = zpf_store_get_u64(f->st, "incarnation", &v, E(f));
    struct coll c = coll_of(f);
    int got = zpf_store_load_members(f->st, collect_cb, &c, E(f));
    sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(other);
    assert_int_equal(rc, 0);
    assert_int_equal(v, 3);
    assert_int_equal(got, 3);
}

/* --- kill -9 -------------------------------------------------------------- */

struct rec {
    uint32_t type;
    int32_t rc;
    uint64_t val;
};
enum { REC_READY = 1, REC_LIST = 2, REC_EPOCH = 3, REC_FAIL = 4 };

/* List number `gen`: its size and content follow from gen alone, so what
 * was read back can be compared with what was written. */
static size_t crash_list(uint64_t gen, struct zpf_store_member *m)
{
    size_t n = 1 + (size_t)(gen * 37 % CRASH_LIST_MAX);
    for (size_t i = 0; i < n; i++) {
        char name[40], addr[40];
        snprintf(name, sizeof name, "g%" PRIu64 "-m%zu", gen, i);
        snprintf(addr, sizeof addr, "10.%u.%u.%u:7946",
                 (unsigned)(gen % 200), (unsigned)(i >> 8),
                 (unsigned)(i & 0xff));
        m[i] = mk(name, addr, (uint8_t)(i % 4), (uint32_t)gen,
                  gen * 1000 + i);
    }
    return n;
}

static void send_rec(int fd, uint32_t type, int rc, uint64_t val)
{
    struct rec r = {type, rc, val};
    if (write(fd, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(3);
}

/* The writer: never returns; SIGKILL ends it. */
static void crash_child(const char *dir, int fd, uint64_t gen0)
{
    char err[256];
    struct zpf_store *st = NULL;
    struct zpf_store_member *m = calloc(CRASH_LIST_MAX, sizeof *m);
    int rc;
    if (m == NULL)
        _exit(2);
    if ((rc = zpf_store_open(dir, &st, err, sizeof err)) != 0) {
        send_rec(fd, REC_FAIL, rc, 0);
        _exit(1);
    }
    send_rec(fd, REC_READY, 0, 0);
    for (uint64_t g = gen0;; g++) {
        size_t n = crash_list(g, m);
        if ((rc = zpf_store_save_members(st, m, n, err, sizeof err)) != 0) {
            send_rec(fd, REC_FAIL, rc, 1);
            _exit(1);
        }
        send_rec(fd, REC_LIST, 0, g);
        if (g % CRASH_LISTS_PER_EPOCH != 0)
            continue;
        uint64_t e = 0;
        if ((rc = zpf_store_next_epoch(st, 0, &e, err, sizeof err)) != 0) {
            send_rec(fd, REC_FAIL, rc, 2);
            _exit(1);
        }
        send_rec(fd, REC_EPOCH, 0, e);
    }
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void integrity_ok(const char *db, uint64_t seed, int round)
{
    char res[256];
    db_text(db, "PRAGMA integrity_check", res, sizeof res);
    if (strcmp(res, "ok") != 0)
        fail_msg("ZPF_SEED=%" PRIu64 " round %d: integrity_check: %s", seed,
                 round, res);
}

static void test_kill9_at_random_moments(void **state)
{
    struct fx *f = *state;
    uint64_t seed = CRASH_SEED;
    const char *env = getenv("ZPF_SEED");
    if (env != NULL)
        seed = strtoull(env, NULL, 0);
    uint64_t rng = seed;
    struct zpf_store_member *want = f->a;

    bool have_list = false;
    uint64_t list_gen = 0, epoch = 0;
    unsigned lists = 0, epochs = 0, empty_rounds = 0, kills_in_open = 0;
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        uint64_t gen0 = (uint64_t)(round + 1) * 1000000;
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child(f->dir, fds[1], gen0);
        }
        close(fds[1]);
        /* Most kills land in the write loop; every fifth may land in the
         * open (the first one in the migration). */
        bool in_open = round % 5 == 0;
        struct rec r;
        if (!in_open) {
            struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
            if (poll(&pfd, 1, 10000) != 1 ||
                read(fds[0], &r, sizeof r) != (ssize_t)sizeof r ||
                r.type != REC_READY) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                close(fds[0]);
                fail_msg("round %d: the writer did not open the store",
                         round);
            }
        }
        long us = (long)(splitmix(&rng) % CRASH_MAX_US);
        struct timespec ts = {us / 1000000, us % 1000000 * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);

        bool reported = false;
        uint64_t last_gen = 0, max_epoch = 0;
        while (read(fds[0], &r, sizeof r) == (ssize_t)sizeof r) {
            if (r.type == REC_FAIL) {
                close(fds[0]);
                fail_msg("ZPF_SEED=%" PRIu64 " round %d: the writer failed "
                         "(%s at step %" PRIu64 ")", seed, round,
                         zpf_err_name(r.rc), r.val);
            }
            if (r.type == REC_LIST) {
                reported = true;
                last_gen = r.val;
                lists++;
            } else if (r.type == REC_EPOCH) {
                max_epoch = r.val > max_epoch ? r.val : max_epoch;
                epochs++;
            }
        }
        close(fds[0]);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            fail_msg("round %d: the writer exited by itself (%d)", round,
                     status);
        empty_rounds += !reported;
        kills_in_open += in_open;

        /* The store opens, and the file is sound. */
        f->err[0] = '\0';
        int rc = zpf_store_open(f->dir, &f->st, E(f));
        if (rc != 0)
            fail_msg("ZPF_SEED=%" PRIu64 " round %d: open: %s", seed, round,
                     f->err);
        integrity_ok(f->db, seed, round);

        /* One complete list: the last one reported, or the one in flight
         * when the kill came. */
        struct coll c = load_all(f);
        uint64_t prev = reported ? last_gen : list_gen;
        bool prev_ok = reported || have_list;
        uint64_t next = reported ? last_gen + 1 : gen0;
        const char *why = NULL;
        uint64_t gen = 0;
        if (c.n == 0) {
            if (prev_ok)
                why = "the list is empty";
        } else if (sscanf(c.m[0].name, "g%" SCNu64 "-", &gen) != 1) {
            why = "a name that was never written";
        } else if (!((prev_ok && gen == prev) || gen == next)) {
            why = "a list that was not the last one written";
        } else {
            size_t n = crash_list(gen, want);
            if (c.n != n) {
                why = "a list of the wrong length (a mix?)";
            } else {
                for (size_t i = 0; i < n && why == NULL; i++) {
                    const struct zpf_store_member *w = &want[n - 1 - i];
                    if (strcmp(c.m[i].name, w->name) != 0 ||
                        strcmp(c.m[i].addr, w->addr) != 0 ||
                        c.m[i].incarnation != w->incarnation ||
                        c.m[i].state != w->state ||
                        c.m[i].seen_unix_ms != w->seen_unix_ms)
                        why = "a member differs from what was written";
                }
            }
        }
        size_t got_n = c.n;
        if (why != NULL)
            fail_msg("ZPF_SEED=%" PRIu64 " round %d: %s (%zu members, gen "
                     "%" PRIu64 ", expected %" PRIu64 " or %" PRIu64 ")",
                     seed, round, why, got_n, gen, prev, next);
        if (got_n > 0) {
            have_list = true;
            list_gen = gen;
        }

        /* The epoch: at least every one reported, at most one more. */
        uint64_t e = 0;
        rc = zpf_store_get_u64(f->st, ZPF_STORE_EPOCH_KEY, &e, E(f));
        if (rc == ZPF_ENOENT)
            e = 0;
        else if (rc != 0)
            fail_msg("round %d: %s", round, f->err);
        uint64_t floor = max_epoch > epoch ? max_epoch : epoch;
        if (e < floor || e > floor + 1)
            fail_msg("ZPF_SEED=%" PRIu64 " round %d: epoch %" PRIu64
                     " after %" PRIu64 " (went backwards or jumped)",
                     seed, round, e, floor);
        epoch = e;
        close_st(f);
    }
    print_message("kill -9: ZPF_SEED=%" PRIu64 ", %d rounds (%u may kill "
                  "during open), %u lists and %u epochs committed, %u "
                  "rounds killed before their first list\n",
                  seed, CRASH_ROUNDS, kills_in_open, lists, epochs,
                  empty_rounds);
    /* Kills that all land before the first commit would test nothing. */
    assert_true(CRASH_ROUNDS - empty_rounds >= CRASH_ROUNDS / 5);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_open_creates_dir_and_schema),
        T(test_open_bad_args),
        T(test_reopen_keeps_values),
        T(test_journal_mode_is_wal),
        T(test_file_modes),
        T(test_newer_schema_refused),
        T(test_migrate_from_empty_file),
        T(test_foreign_database_refused),
        T(test_garbage_file_refused),
        T(test_damaged_pages_reported),
        T(test_data_dir_is_a_file),
        T(test_unwritable_data_dir),
        T(test_open_faults),
        T(test_get_unset_is_enoent),
        T(test_u64_bad_input),
        T(test_next_epoch),
        T(test_members_round_trip),
        T(test_members_bad_input),
        T(test_members_row_not_ours),
        T(test_members_ten_thousand),
        T(test_keys_round_trip),
        T(test_keys_bad_input),
        T(test_keys_damaged),
        T(test_disk_full),
        T(test_error_codes),
        T(test_failed_writes_are_atomic),
        T(test_reads_while_another_process_writes),
        T(test_kill9_at_random_moments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
