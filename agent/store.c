/*
 * The agent's SQLite store (the manual is store.h).
 *
 * One connection per store, opened without SQLite's mutexes: the agent
 * serialises every call, so locking inside SQLite would only cost.  Every
 * statement is prepared once at open and kept; a call binds, steps and
 * resets.  The hook of zpf_store_set_fault() sits in front of every step,
 * which is where SQLite reports full disks, I/O errors and locks, so a test
 * can make any of them happen at any point of any call.
 *
 * Durability.  WAL mode, with synchronous=NORMAL as the connection's
 * default and FULL for the commits whose loss would be a bug.  In WAL mode
 * NORMAL never tears or corrupts a commit -- a power cut can only drop the
 * last commits whole, and a crash of the process drops nothing -- so it is
 * enough for the member list: losing the last save costs a rejoin from a
 * slightly older list.  An incarnation or a boot epoch that goes backwards
 * after a power cut is different (peers would ignore the node's
 * refutations, or drop its packets as replays), and a lost keyring change
 * can cut the node off; those commits wait for the fsync of the WAL.  The
 * PRAGMA is switched around the transaction, since SQLite refuses to change
 * it inside one.
 *
 * Atomicity.  Every write is BEGIN IMMEDIATE ... COMMIT.  IMMEDIATE takes
 * the write lock up front, so next_epoch's read-modify-write cannot
 * interleave with another writer, and a busy database fails before
 * anything is half done.  On any failure the transaction is rolled back
 * unless SQLite already did (a full disk, an I/O error), which
 * sqlite3_get_autocommit() tells.  A kill -9 in the middle leaves WAL
 * frames without a commit record, which the next open ignores.
 *
 * Schema.  PRAGMA user_version is the schema version and MIGRATIONS[] the
 * way from each version to the next: to add a table (the replicated cluster
 * state, the provider metadata cache), append a step and bump
 * ZPF_STORE_SCHEMA_VERSION; never edit a step that has shipped.  All
 * pending steps, the new user_version and the application_id commit in one
 * transaction, so an interrupted migration leaves the old schema.  The file
 * is checked before anything is written to it: a newer schema, a database
 * of another program and a damaged file are refused and left untouched.
 *
 * Errors.  Every failure becomes one ZPF_E* code and one line in the
 * caller's buffer saying what, where and what to do (fail_sqlite()); the
 * message is formatted before the rollback, which would replace SQLite's
 * text with its own.
 */
#include "store.h"

#include "errbuf.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <sodium.h>
#include <sqlite3.h>

#include "zpf/error.h"
#include "zpf/gossip.h"
#include "zpf/seal.h"

static_assert(ZPF_STORE_KEY_LEN == ZPF_KEY_LEN, "keyring key size");
static_assert(ZPF_STORE_KEYS_MAX == ZPF_KEYS_MAX, "keyring size");
static_assert(sizeof(((struct zpf_store_member *)0)->name) ==
                  ZPF_NAME_MAX + 1, "member name size");

/* Longest name and address in bytes, the struct's arrays less the NUL. */
#define ADDR_MAX (sizeof(((struct zpf_store_member *)0)->addr) - 1)
#define NAME_MAX_LEN ZPF_NAME_MAX

/* Cap on the -wal file once a checkpoint has emptied it.  A save of 10,000
 * members writes a few MB of WAL; without a cap the file keeps its largest
 * size forever. */
#define WAL_SIZE_LIMIT (4 * 1024 * 1024)

/* Room for "DATA_DIR/zpf.db" and its "-wal" suffix. */
#define PATH_CAP (ZPF_STORE_DIR_MAX + 32)

/* --- schema --------------------------------------------------------------- */

/*
 * MIGRATIONS[i] takes the schema from version i to version i + 1.
 *
 * Version 1.  Integers are SQLite's signed 64 bits; a uint64_t goes in as
 * its two's-complement bit pattern and comes back unchanged.  The CHECKs
 * repeat the bounds the C code enforces, so that a row written by hand
 * (sqlite3 shell) cannot be read back into a buffer it does not fit:
 * length(CAST(x AS BLOB)) counts bytes, where length(x) counts characters.
 * members_seen serves load_members' order without a sort.  The keyring is a
 * row per key plus one meta row (version, primary, count): the count lets
 * load_keys tell a keyring that lost a key from a complete one.
 */
static const char *const MIGRATIONS[] = {
    "CREATE TABLE kv ("
    "  key TEXT PRIMARY KEY NOT NULL"
    "    CHECK (typeof(key) = 'text' AND length(CAST(key AS BLOB))"
    "           BETWEEN 1 AND 64),"
    "  value INTEGER NOT NULL CHECK (typeof(value) = 'integer')"
    ") WITHOUT ROWID;"
    "CREATE TABLE members ("
    "  name TEXT PRIMARY KEY NOT NULL"
    "    CHECK (typeof(name) = 'text' AND length(CAST(name AS BLOB))"
    "           BETWEEN 1 AND 64),"
    "  addr TEXT NOT NULL"
    "    CHECK (typeof(addr) = 'text' AND length(CAST(addr AS BLOB))"
    "           BETWEEN 1 AND 63),"
    "  state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 255),"
    "  incarnation INTEGER NOT NULL"
    "    CHECK (incarnation BETWEEN 0 AND 4294967295),"
    "  seen_unix_ms INTEGER NOT NULL CHECK (seen_unix_ms >= 0)"
    ") WITHOUT ROWID;"
    "CREATE INDEX members_seen ON members (seen_unix_ms DESC, name);"
    "CREATE TABLE keyring ("
    "  slot INTEGER PRIMARY KEY CHECK (slot BETWEEN 0 AND 7),"
    "  key BLOB NOT NULL CHECK (typeof(key) = 'blob' AND length(key) = 32)"
    ");"
    "CREATE TABLE keyring_meta ("
    "  id INTEGER PRIMARY KEY CHECK (id = 0),"
    "  version INTEGER NOT NULL,"
    "  primary_slot INTEGER NOT NULL,"
    "  nkeys INTEGER NOT NULL"
    ");",
};

static_assert(sizeof MIGRATIONS / sizeof MIGRATIONS[0] ==
                  ZPF_STORE_SCHEMA_VERSION,
              "one migration step per schema version");

/* --- statements ----------------------------------------------------------- */

enum stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_SYNC_FULL,
    S_SYNC_NORMAL,
    S_KV_GET,
    S_KV_SET,
    S_MEMBERS_CLEAR,
    S_MEMBER_INSERT,
    S_MEMBERS_LOAD,
    S_KEYS_CLEAR,
    S_KEY_INSERT,
    S_KEYS_META,
    S_KEYS_LOAD,
    S_COUNT
};

static const char *const STMT_SQL[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SYNC_FULL] = "PRAGMA synchronous = FULL",
    [S_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
    [S_KV_GET] = "SELECT value FROM kv WHERE key = ?1",
    [S_KV_SET] = "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
    [S_MEMBERS_CLEAR] = "DELETE FROM members",
    [S_MEMBER_INSERT] = "INSERT INTO members (name, addr, state,"
                        " incarnation, seen_unix_ms)"
                        " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_MEMBERS_LOAD] = "SELECT name, addr, state, incarnation, seen_unix_ms"
                       " FROM members ORDER BY seen_unix_ms DESC, name",
    [S_KEYS_CLEAR] = "DELETE FROM keyring",
    [S_KEY_INSERT] = "INSERT INTO keyring (slot, key) VALUES (?1, ?2)",
    [S_KEYS_META] = "INSERT OR REPLACE INTO keyring_meta"
                    " (id, version, primary_slot, nkeys)"
                    " VALUES (0, ?1, ?2, ?3)",
    /* One statement, hence one snapshot, for the meta row and the keys. */
    [S_KEYS_LOAD] = "SELECT m.version, m.primary_slot, m.nkeys, k.slot,"
                    " k.key FROM keyring_meta AS m"
                    " LEFT JOIN keyring AS k ORDER BY k.slot",
};

struct zpf_store {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT];
    int (*fault_cb)(void *ctx, const char *op);
    void *fault_ctx;
    bool injected; /* the last failing step was the hook's, not SQLite's */
    char path[PATH_CAP];
};

/* --- messages ------------------------------------------------------------- */

static void errno_text(int e, char *buf, size_t len)
{
    if (strerror_r(e, buf, len) != 0)
        snprintf(buf, len, "errno %d", e);
}

/* Code for a failed system call on data_dir or zpf.db. */
static int errno_code(int e)
{
    switch (e) {
    case EACCES:
    case EPERM:
    case EROFS:
        return ZPF_EPERM;
    case ENOSPC:
    case EDQUOT:
        return ZPF_ENOSPC;
    case ENOMEM:
        return ZPF_ENOMEM;
    default:
        return ZPF_EIO;
    }
}

/* A failed system call: "what path: strerror; advice". */
static int fail_errno(int e, const char *what, const char *path, char *err,
                      size_t errlen)
{
    char et[128];
    errno_text(e, et, sizeof et);
    int code = errno_code(e);
    const char *advice;
    switch (code) {
    case ZPF_EPERM:
        advice = "give the user zpfd runs as write access there, or set "
                 "data_dir to a directory it can write";
        break;
    case ZPF_ENOSPC:
        advice = "free space on that filesystem; zpfd keeps running from "
                 "memory and retries";
        break;
    default:
        advice = "check data_dir in the configuration";
        break;
    }
    zpf_errf(err, errlen, "%s %s: %s; %s", what, path, et, advice);
    return code;
}

/*
 * Turn an SQLite result code into a ZPF_E* code and a message.  `what`
 * names the operation ("saving the member list").  Called right after the
 * failing call, before anything else touches the connection, so that
 * sqlite3_errmsg() and sqlite3_system_errno() still describe this failure.
 */
static int fail_sqlite(struct zpf_store *st, int rc, const char *what,
                       char *err, size_t errlen)
{
    const char *msg = st->injected || st->db == NULL ? sqlite3_errstr(rc)
                                                     : sqlite3_errmsg(st->db);
    /* The OS error is kept from the last system call that failed, which
     * may be an old one: ask only when SQLite says the OS failed now. */
    int prim = rc & 0xff;
    bool os = prim == SQLITE_IOERR || prim == SQLITE_FULL ||
              prim == SQLITE_CANTOPEN || prim == SQLITE_READONLY ||
              prim == SQLITE_PERM;
    int sys = os && !st->injected && st->db != NULL
                  ? sqlite3_system_errno(st->db)
                  : 0;
    char et[128] = "";
    if (sys != 0)
        errno_text(sys, et, sizeof et);

    /* A write that failed on a full disk can come back as an I/O error. */
    bool full = prim == SQLITE_FULL ||
                (prim == SQLITE_IOERR &&
                 (sys == ENOSPC || sys == EDQUOT));
    if (full) {
        zpf_errf(err, errlen,
               "%s: disk full writing %s: free space on that filesystem; "
               "zpfd keeps running from memory and retries", what, st->path);
        return ZPF_ENOSPC;
    }
    switch (prim) {
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_CANTOPEN:
        if (prim == SQLITE_CANTOPEN && sys != 0 && sys != EACCES &&
            sys != EPERM && sys != EROFS) {
            zpf_errf(err, errlen, "%s: cannot open %s: %s (%s); check data_dir "
                   "in the configuration", what, st->path, msg, et);
            return ZPF_EIO;
        }
        zpf_errf(err, errlen,
               "%s: cannot write %s: %s%s%s; give the user zpfd runs as "
               "write access to it and its directory (or put data_dir on a "
               "writable filesystem)", what, st->path, msg,
               sys ? ": " : "", et);
        return ZPF_EPERM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        zpf_errf(err, errlen,
               "%s: %s is damaged or not a database (%s): stop zpfd, move "
               "it aside together with any zpf.db-wal and zpf.db-shm, and "
               "start again; the agent rebuilds its state from the cluster",
               what, st->path, msg);
        return ZPF_EIO;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        zpf_errf(err, errlen,
               "%s: %s is locked by another process for more than %d ms "
               "(an open sqlite3 shell or a backup?): end that "
               "transaction; zpfd retries", what, st->path,
               ZPF_STORE_BUSY_MS);
        return ZPF_EBUSY;
    case SQLITE_NOMEM:
        zpf_errf(err, errlen, "%s: out of memory in SQLite on %s", what,
               st->path);
        return ZPF_ENOMEM;
    default:
        break;
    }
    zpf_errf(err, errlen, "%s: %s: %s%s%s", what, st->path, msg,
           sys ? ": " : "", et);
    return ZPF_EIO;
}

/* Copy s (at most max bytes) into out, with anything unprintable as '?',
 * so that a hostile name cannot add lines to a log. */
static const char *printable(const char *s, size_t max, char *out,
                             size_t outlen)
{
    size_t i = 0;
    for (; i < max && i + 1 < outlen && s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c >= 0x20 && c < 0x7f && c != '"' ? (char)c : '?';
    }
    out[i] = '\0';
    return out;
}

/* --- steps and transactions ----------------------------------------------- */

/* One sqlite3_step, behind the fault hook. */
static int step(struct zpf_store *st, enum stmt_id id, const char *op)
{
    if (st->fault_cb != NULL && op != NULL) {
        int rc = st->fault_cb(st->fault_ctx, op);
        if (rc != SQLITE_OK) {
            st->injected = true;
            return rc;
        }
    }
    st->injected = false;
    return sqlite3_step(st->stmt[id]);
}

static void done(struct zpf_store *st, enum stmt_id id)
{
    sqlite3_reset(st->stmt[id]);
    sqlite3_clear_bindings(st->stmt[id]);
}

/* Step a statement that returns no rows, then reset it.  SQLITE_OK or the
 * error; the connection's error state is left for fail_sqlite(). */
static int exec_stmt(struct zpf_store *st, enum stmt_id id, const char *op)
{
    int rc = step(st, id, op);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        rc = SQLITE_OK;
    /* The message of a failed step survives the reset. */
    done(st, id);
    return rc;
}

/* Undo a failed write transaction, unless SQLite already did. */
static void tx_abort(struct zpf_store *st, bool durable)
{
    for (int i = 0; i < S_COUNT; i++)
        done(st, (enum stmt_id)i);
    if (!sqlite3_get_autocommit(st->db))
        (void)exec_stmt(st, S_ROLLBACK, NULL);
    if (durable)
        (void)exec_stmt(st, S_SYNC_NORMAL, NULL);
}

static int tx_begin(struct zpf_store *st, bool durable, const char *what,
                    char *err, size_t errlen)
{
    int rc;
    if (durable && (rc = exec_stmt(st, S_SYNC_FULL, NULL)) != SQLITE_OK)
        return fail_sqlite(st, rc, what, err, errlen);
    rc = exec_stmt(st, S_BEGIN, "begin");
    if (rc != SQLITE_OK) {
        int code = fail_sqlite(st, rc, what, err, errlen);
        tx_abort(st, durable);
        return code;
    }
    return 0;
}

static int tx_commit(struct zpf_store *st, bool durable, const char *what,
                     char *err, size_t errlen)
{
    int rc = exec_stmt(st, S_COMMIT, "commit");
    if (rc != SQLITE_OK) {
        int code = fail_sqlite(st, rc, what, err, errlen);
        tx_abort(st, durable);
        return code;
    }
    if (durable)
        (void)exec_stmt(st, S_SYNC_NORMAL, NULL);
    return 0;
}

/* Fail inside a write transaction: message first, then roll back. */
static int tx_fail(struct zpf_store *st, bool durable, int rc,
                   const char *what, char *err, size_t errlen)
{
    int code = fail_sqlite(st, rc, what, err, errlen);
    tx_abort(st, durable);
    return code;
}

/* --- opening -------------------------------------------------------------- */

/* mkdir -p with mode 0700.  Existing directories keep their mode. */
static int make_dir(const char *dir, char *err, size_t errlen)
{
    char buf[PATH_CAP];
    size_t len = strlen(dir);
    memcpy(buf, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        if (buf[i - 1] == '/')
            continue; /* "a//b", or a trailing '/' */
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            int e = errno;
            if (strcmp(buf, dir) == 0)
                return fail_errno(e, "cannot create data_dir", dir, err,
                                  errlen);
            char what[PATH_CAP + 64];
            snprintf(what, sizeof what, "cannot create data_dir %s: mkdir",
                     dir);
            return fail_errno(e, what, buf, err, errlen);
        }
        buf[i] = c;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return fail_errno(errno, "cannot use data_dir", dir, err, errlen);
    if (!S_ISDIR(sb.st_mode)) {
        zpf_errf(err, errlen,
               "data_dir %s exists and is not a directory: remove it or set "
               "data_dir to a directory", dir);
        return ZPF_EIO;
    }
    return 0;
}

/* Create zpf.db with mode 0600 before SQLite does (SQLite would use 0644),
 * or narrow an existing one; the -wal and -shm files copy its mode. */
static int make_file(struct zpf_store *st, char *err, size_t errlen)
{
    /* O_NONBLOCK: a FIFO in its place must not hang the open. */
    int fd = open(st->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
    if (fd < 0)
        return fail_errno(errno, "cannot open", st->path, err, errlen);
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) != 0) {
        rc = fail_errno(errno, "cannot stat", st->path, err, errlen);
    } else if (!S_ISREG(sb.st_mode)) {
        zpf_errf(err, errlen, "%s is not a regular file: move it aside",
               st->path);
        rc = ZPF_EIO;
    } else if ((sb.st_mode & 077) != 0 && fchmod(fd, 0600) != 0) {
        rc = fail_errno(errno, "cannot narrow the mode (it holds the keys) "
                        "of", st->path, err, errlen);
    }
    close(fd);
    return rc;
}

/* Run a one-row, one-column query at open time (no hook). */
static int query_int(struct zpf_store *st, const char *sql, int64_t *v,
                     const char **text, char *tbuf, size_t tlen)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if (v != NULL)
            *v = sqlite3_column_int64(s, 0);
        if (text != NULL) {
            const unsigned char *t = sqlite3_column_text(s, 0);
            snprintf(tbuf, tlen, "%s", t ? (const char *)t : "");
            *text = tbuf;
        }
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    /* Finalizing keeps the error of the step for sqlite3_errmsg(). */
    sqlite3_finalize(s);
    return rc;
}

/* Bring the schema up to ZPF_STORE_SCHEMA_VERSION, in one transaction. */
static int migrate(struct zpf_store *st, char *err, size_t errlen)
{
    static const char what[] = "upgrading the schema";
    char *emsg = NULL;
    st->injected = false;
    int rc = sqlite3_exec(st->db, "PRAGMA synchronous = FULL", NULL, NULL,
                          NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail_sqlite(st, rc, what, err, errlen);

    /* Read again under the write lock: another zpfd on the same data_dir
     * may have migrated in between. */
    int64_t v = 0;
    rc = query_int(st, "PRAGMA user_version", &v, NULL, NULL, 0);
    if (rc == SQLITE_OK && v > ZPF_STORE_SCHEMA_VERSION) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        zpf_errf(err, errlen, "%s: %s was upgraded to schema version %" PRId64
               " by a newer zpfd while this one opened it", what, st->path,
               v);
        return ZPF_EVERSION;
    }
    for (int64_t i = v; rc == SQLITE_OK && i < ZPF_STORE_SCHEMA_VERSION;
         i++) {
        if (st->fault_cb != NULL &&
            (rc = st->fault_cb(st->fault_ctx, "migrate")) != SQLITE_OK) {
            st->injected = true;
            break;
        }
        st->injected = false;
        rc = sqlite3_exec(st->db, MIGRATIONS[i], NULL, NULL, &emsg);
    }
    if (rc == SQLITE_OK && v < ZPF_STORE_SCHEMA_VERSION) {
        char sql[96];
        snprintf(sql, sizeof sql,
                 "PRAGMA user_version = %d; PRAGMA application_id = %d",
                 ZPF_STORE_SCHEMA_VERSION, ZPF_STORE_APPLICATION_ID);
        rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK && st->fault_cb != NULL &&
        (rc = st->fault_cb(st->fault_ctx, "commit")) != SQLITE_OK)
        st->injected = true;
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int code = fail_sqlite(st, rc, what, err, errlen);
        if (!sqlite3_get_autocommit(st->db))
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_free(emsg);
        return code;
    }
    sqlite3_exec(st->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
    return 0;
}

/* Refuse what is not ours or not for us, before writing anything. */
static int check_file(struct zpf_store *st, int64_t *version, char *err,
                      size_t errlen)
{
    static const char what[] = "opening the store";
    int64_t v = 0, app = 0, objects = 0;
    int rc = query_int(st, "PRAGMA user_version", &v, NULL, NULL, 0);
    if (rc == SQLITE_OK)
        rc = query_int(st, "PRAGMA application_id", &app, NULL, NULL, 0);
    if (rc == SQLITE_OK)
        rc = query_int(st, "SELECT count(*) FROM sqlite_master", &objects,
                       NULL, NULL, 0);
    if (rc != SQLITE_OK)
        return fail_sqlite(st, rc, what, err, errlen);

    bool ours = app == ZPF_STORE_APPLICATION_ID;
    if ((v == 0 && objects != 0) || (v != 0 && !ours) || v < 0) {
        zpf_errf(err, errlen,
               "%s is an SQLite database, but not a zpf store "
               "(application_id %" PRId64 ", user_version %" PRId64 "): "
               "set data_dir to a directory of zpfd's own, or move the file "
               "aside", st->path, app, v);
        return ZPF_EIO;
    }
    if (v > ZPF_STORE_SCHEMA_VERSION) {
        zpf_errf(err, errlen,
               "%s has schema version %" PRId64 ", newer than the %d this "
               "zpfd knows: run the newer zpfd, or move the file aside (the "
               "agent rebuilds its state from the cluster)",
               st->path, v, ZPF_STORE_SCHEMA_VERSION);
        return ZPF_EVERSION;
    }
    *version = v;
    return 0;
}

static int set_pragmas(struct zpf_store *st, char *err, size_t errlen)
{
    static const char what[] = "opening the store";
    const char *mode = NULL;
    char mbuf[16];
    int rc = query_int(st, "PRAGMA journal_mode = WAL", NULL, &mode, mbuf,
                       sizeof mbuf);
    if (rc != SQLITE_OK)
        return fail_sqlite(st, rc, what, err, errlen);
    if (mode == NULL || strcmp(mode, "wal") != 0) {
        zpf_errf(err, errlen,
               "%s: cannot use WAL mode (journal_mode is %s); put data_dir "
               "on a local filesystem", st->path, mode ? mode : "unknown");
        return ZPF_EIO;
    }
    char sql[160];
    /* secure_delete=FAST zeroes deleted cells (old keys) in the pages it
     * writes anyway, at no extra I/O. */
    snprintf(sql, sizeof sql,
             "PRAGMA synchronous = NORMAL; PRAGMA secure_delete = FAST; "
             "PRAGMA journal_size_limit = %d", WAL_SIZE_LIMIT);
    rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail_sqlite(st, rc, what, err, errlen);
    return 0;
}

static int open_db(struct zpf_store *st, char *err, size_t errlen)
{
    static const char what[] = "opening the store";
    int rc;
    if (st->fault_cb != NULL &&
        (rc = st->fault_cb(st->fault_ctx, "open")) != SQLITE_OK) {
        st->injected = true;
        return fail_sqlite(st, rc, what, err, errlen);
    }
    st->injected = false;
    /* On failure st->db may still be a handle (it carries the message);
     * zpf_store_close() frees it. */
    rc = sqlite3_open_v2(st->path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                             SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK)
        return fail_sqlite(st, rc, what, err, errlen);
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, ZPF_STORE_BUSY_MS);
    /* READWRITE falls back to read-only when the file is not writable. */
    if (sqlite3_db_readonly(st->db, "main") == 1) {
        st->injected = true;
        return fail_sqlite(st, SQLITE_READONLY, what, err, errlen);
    }

    int64_t v = 0;
    if ((rc = check_file(st, &v, err, errlen)) < 0)
        return rc;
    if ((rc = set_pragmas(st, err, errlen)) < 0)
        return rc;
    if (v < ZPF_STORE_SCHEMA_VERSION && (rc = migrate(st, err, errlen)) < 0)
        return rc;

    for (int i = 0; i < S_COUNT; i++) {
        rc = sqlite3_prepare_v3(st->db, STMT_SQL[i], -1,
                                SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                                NULL);
        if (rc != SQLITE_OK) {
            st->injected = false;
            return fail_sqlite(st, rc, what, err, errlen);
        }
    }
    return 0;
}

int zpf_store_open_with_fault(const char *data_dir,
                              int (*fault_cb)(void *ctx, const char *op),
                              void *fault_ctx, struct zpf_store **out,
                              char *err, size_t errlen)
{
    if (out == NULL) {
        zpf_errf(err, errlen, "zpf_store_open: out is NULL");
        return ZPF_EINVAL;
    }
    *out = NULL;
    if (data_dir == NULL || data_dir[0] == '\0') {
        zpf_errf(err, errlen, "zpf_store_open: data_dir is empty; set "
               "data_dir in the configuration");
        return ZPF_EINVAL;
    }
    if (strnlen(data_dir, ZPF_STORE_DIR_MAX + 1) > ZPF_STORE_DIR_MAX) {
        zpf_errf(err, errlen, "zpf_store_open: data_dir is longer than %d "
               "bytes", ZPF_STORE_DIR_MAX);
        return ZPF_EINVAL;
    }

    struct zpf_store *st = calloc(1, sizeof *st);
    if (st == NULL) {
        zpf_errf(err, errlen, "opening the store in %s: out of memory",
               data_dir);
        return ZPF_ENOMEM;
    }
    st->fault_cb = fault_cb;
    st->fault_ctx = fault_ctx;
    size_t len = strlen(data_dir);
    while (len > 1 && data_dir[len - 1] == '/')
        len--;
    snprintf(st->path, sizeof st->path, "%.*s%s%s", (int)len, data_dir,
             data_dir[len - 1] == '/' ? "" : "/", ZPF_STORE_FILE);

    int rc = make_dir(data_dir, err, errlen);
    if (rc == 0)
        rc = make_file(st, err, errlen);
    if (rc == 0)
        rc = open_db(st, err, errlen);
    if (rc < 0) {
        zpf_store_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

int zpf_store_open(const char *data_dir, struct zpf_store **out, char *err,
                   size_t errlen)
{
    return zpf_store_open_with_fault(data_dir, NULL, NULL, out, err, errlen);
}

void zpf_store_close(struct zpf_store *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    /* Every statement is finalized, so this cannot fail with SQLITE_BUSY
     * and leave the connection open. */
    sqlite3_close(st->db);
    free(st);
}

void zpf_store_set_fault(struct zpf_store *st,
                         int (*fault_cb)(void *ctx, const char *op),
                         void *ctx)
{
    if (st == NULL)
        return;
    st->fault_cb = fault_cb;
    st->fault_ctx = ctx;
}

/* --- counters ------------------------------------------------------------- */

static int check_key(const char *fn, const char *key, char *err,
                     size_t errlen)
{
    if (key == NULL) {
        zpf_errf(err, errlen, "%s: key is NULL", fn);
        return ZPF_EINVAL;
    }
    size_t len = strnlen(key, ZPF_STORE_KEY_MAX + 1);
    if (len == 0 || len > ZPF_STORE_KEY_MAX) {
        zpf_errf(err, errlen, "%s: key must be 1..%d bytes", fn,
               ZPF_STORE_KEY_MAX);
        return ZPF_EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.')) {
            zpf_errf(err, errlen, "%s: key may hold only letters, digits, "
                   "'_', '-' and '.' (byte %zu is not one)", fn, i);
            return ZPF_EINVAL;
        }
    }
    return 0;
}

/* Read `key` inside or outside a transaction.  SQLITE_OK with *found. */
static int kv_get(struct zpf_store *st, const char *key, const char *op,
                  uint64_t *val, bool *found)
{
    sqlite3_bind_text(st->stmt[S_KV_GET], 1, key, -1, SQLITE_STATIC);
    int rc = step(st, S_KV_GET, op);
    *found = false;
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(st->stmt[S_KV_GET], 0) != SQLITE_INTEGER) {
            rc = SQLITE_CORRUPT;
            st->injected = true; /* no SQLite message to show */
        } else {
            *val = (uint64_t)sqlite3_column_int64(st->stmt[S_KV_GET], 0);
            *found = true;
            rc = SQLITE_OK;
        }
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        return rc; /* the caller formats the message, then resets */
    done(st, S_KV_GET);
    return SQLITE_OK;
}

static int kv_set(struct zpf_store *st, const char *key, uint64_t val,
                  const char *op)
{
    sqlite3_stmt *s = st->stmt[S_KV_SET];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)val);
    return exec_stmt(st, S_KV_SET, op);
}

int zpf_store_get_u64(struct zpf_store *st, const char *key, uint64_t *val,
                      char *err, size_t errlen)
{
    static const char fn[] = "zpf_store_get_u64";
    if (st == NULL || val == NULL) {
        zpf_errf(err, errlen, "%s: %s is NULL", fn, st ? "val" : "store");
        return ZPF_EINVAL;
    }
    int rc = check_key(fn, key, err, errlen);
    if (rc < 0)
        return rc;
    bool found;
    uint64_t v = 0;
    rc = kv_get(st, key, "get_u64", &v, &found);
    if (rc != SQLITE_OK) {
        char what[ZPF_STORE_KEY_MAX + 16];
        snprintf(what, sizeof what, "reading %s", key);
        int code = fail_sqlite(st, rc, what, err, errlen);
        done(st, S_KV_GET);
        return code;
    }
    if (!found) {
        zpf_errf(err, errlen, "%s is not set in %s", key, st->path);
        return ZPF_ENOENT;
    }
    *val = v;
    return 0;
}

int zpf_store_set_u64(struct zpf_store *st, const char *key, uint64_t val,
                      char *err, size_t errlen)
{
    static const char fn[] = "zpf_store_set_u64";
    if (st == NULL) {
        zpf_errf(err, errlen, "%s: store is NULL", fn);
        return ZPF_EINVAL;
    }
    int rc = check_key(fn, key, err, errlen);
    if (rc < 0)
        return rc;
    if (strcmp(key, ZPF_STORE_EPOCH_KEY) == 0) {
        zpf_errf(err, errlen, "%s: %s only moves through "
               "zpf_store_next_epoch(), so it never goes backwards", fn,
               key);
        return ZPF_EINVAL;
    }
    char what[ZPF_STORE_KEY_MAX + 16];
    snprintf(what, sizeof what, "writing %s", key);
    if ((rc = tx_begin(st, true, what, err, errlen)) < 0)
        return rc;
    if ((rc = kv_set(st, key, val, "set_u64")) != SQLITE_OK)
        return tx_fail(st, true, rc, what, err, errlen);
    return tx_commit(st, true, what, err, errlen);
}

int zpf_store_next_epoch(struct zpf_store *st, uint64_t floor, uint64_t *out,
                         char *err, size_t errlen)
{
    static const char what[] = "advancing the boot epoch";
    if (st == NULL || out == NULL) {
        zpf_errf(err, errlen, "zpf_store_next_epoch: %s is NULL",
               st ? "out" : "store");
        return ZPF_EINVAL;
    }
    if (floor > ZPF_STORE_EPOCH_MAX) {
        zpf_errf(err, errlen, "%s: floor %" PRIu64 " is above the largest "
               "boot epoch %" PRIu32 " (the clock is wrong?)", what, floor,
               (uint32_t)ZPF_STORE_EPOCH_MAX);
        return ZPF_ELIMIT;
    }
    int rc = tx_begin(st, true, what, err, errlen);
    if (rc < 0)
        return rc;
    uint64_t e = 0;
    bool found;
    if ((rc = kv_get(st, ZPF_STORE_EPOCH_KEY, "epoch_get", &e, &found)) !=
        SQLITE_OK)
        return tx_fail(st, true, rc, what, err, errlen);
    if (e >= ZPF_STORE_EPOCH_MAX) {
        tx_abort(st, true);
        zpf_errf(err, errlen, "%s: the boot epoch in %s reached its limit "
               "%" PRIu32 ": move the file aside and restart (the agent "
               "rebuilds its state from the cluster)", what, st->path,
               (uint32_t)ZPF_STORE_EPOCH_MAX);
        return ZPF_ELIMIT;
    }
    uint64_t next = e + 1 > floor ? e + 1 : floor;
    if ((rc = kv_set(st, ZPF_STORE_EPOCH_KEY, next, "epoch_set")) !=
        SQLITE_OK)
        return tx_fail(st, true, rc, what, err, errlen);
    if ((rc = tx_commit(st, true, what, err, errlen)) < 0)
        return rc;
    *out = next;
    return 0;
}

/* --- members -------------------------------------------------------------- */

/* "a.b.c.d:port" or "[v6]:port", port 0..65535 in plain decimal.  Port 0
 * is allowed: the wire format carries it, and one odd member must not stop
 * the whole list from being saved. */
static bool addr_ok(const char *a, size_t len)
{
    const char *colon;
    char host[INET6_ADDRSTRLEN];
    int af;
    if (a[0] == '[') {
        const char *close = memchr(a, ']', len);
        if (close == NULL || close[1] != ':')
            return false;
        colon = close + 1;
        size_t hl = (size_t)(close - a - 1);
        if (hl == 0 || hl >= sizeof host)
            return false;
        memcpy(host, a + 1, hl);
        host[hl] = '\0';
        af = AF_INET6;
    } else {
        colon = memchr(a, ':', len);
        if (colon == NULL)
            return false;
        size_t hl = (size_t)(colon - a);
        if (hl == 0 || hl >= sizeof host)
            return false;
        memcpy(host, a, hl);
        host[hl] = '\0';
        af = AF_INET;
    }
    unsigned char bin[sizeof(struct in6_addr)];
    if (inet_pton(af, host, bin) != 1)
        return false;
    const char *p = colon + 1;
    size_t digits = len - (size_t)(p - a);
    if (digits == 0 || digits > 5 || (p[0] == '0' && digits > 1))
        return false;
    unsigned long port = 0;
    for (size_t i = 0; i < digits; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        port = port * 10 + (unsigned long)(p[i] - '0');
    }
    return port <= 65535;
}

/* Why member m is unfit to store, or NULL. */
static const char *member_problem(const struct zpf_store_member *m)
{
    size_t nl = strnlen(m->name, sizeof m->name);
    if (nl == 0)
        return "name is empty";
    if (nl == sizeof m->name)
        return "name is not NUL-terminated within 65 bytes";
    size_t al = strnlen(m->addr, sizeof m->addr);
    if (al == sizeof m->addr)
        return "address is not NUL-terminated within 64 bytes";
    if (al == 0 || !addr_ok(m->addr, al))
        return "address is not a.b.c.d:port or [v6]:port (port 0..65535)";
    if (m->state > ZPF_STATE_STALLED)
        return "state is not an enum zpf_state";
    if (m->seen_unix_ms > INT64_MAX)
        return "seen_unix_ms is above INT64_MAX";
    return NULL;
}

int zpf_store_save_members(struct zpf_store *st,
                           const struct zpf_store_member *m, size_t n,
                           char *err, size_t errlen)
{
    static const char fn[] = "zpf_store_save_members";
    static const char what[] = "saving the member list";
    if (st == NULL || (m == NULL && n > 0)) {
        zpf_errf(err, errlen, "%s: %s is NULL", fn, st ? "m" : "store");
        return ZPF_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *why = member_problem(&m[i]);
        if (why != NULL) {
            zpf_errf(err, errlen, "%s: member %zu: %s; nothing saved", fn, i,
                   why);
            return ZPF_EINVAL;
        }
    }

    int rc = tx_begin(st, false, what, err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = exec_stmt(st, S_MEMBERS_CLEAR, "members_clear")) != SQLITE_OK)
        return tx_fail(st, false, rc, what, err, errlen);
    sqlite3_stmt *s = st->stmt[S_MEMBER_INSERT];
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_text(s, 1, m[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, m[i].addr, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, m[i].state);
        sqlite3_bind_int64(s, 4, m[i].incarnation);
        sqlite3_bind_int64(s, 5, (sqlite3_int64)m[i].seen_unix_ms);
        rc = exec_stmt(st, S_MEMBER_INSERT, "member_insert");
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY ||
            rc == SQLITE_CONSTRAINT_UNIQUE) {
            char pn[NAME_MAX_LEN + 1];
            tx_abort(st, false);
            zpf_errf(err, errlen, "%s: member %zu: name \"%s\" is given "
                   "twice; nothing saved", fn, i,
                   printable(m[i].name, NAME_MAX_LEN, pn, sizeof pn));
            return ZPF_EINVAL;
        }
        if (rc != SQLITE_OK)
            return tx_fail(st, false, rc, what, err, errlen);
    }
    return tx_commit(st, false, what, err, errlen);
}

/* Copy the current row of S_MEMBERS_LOAD into *m; false if it does not fit
 * (a row written by hand around the CHECKs). */
static bool member_row(sqlite3_stmt *s, struct zpf_store_member *m)
{
    memset(m, 0, sizeof *m);
    if (sqlite3_column_type(s, 0) != SQLITE_TEXT ||
        sqlite3_column_type(s, 1) != SQLITE_TEXT ||
        sqlite3_column_type(s, 2) != SQLITE_INTEGER ||
        sqlite3_column_type(s, 3) != SQLITE_INTEGER ||
        sqlite3_column_type(s, 4) != SQLITE_INTEGER)
        return false;
    const unsigned char *name = sqlite3_column_text(s, 0);
    size_t nl = (size_t)sqlite3_column_bytes(s, 0);
    const unsigned char *addr = sqlite3_column_text(s, 1);
    size_t al = (size_t)sqlite3_column_bytes(s, 1);
    sqlite3_int64 state = sqlite3_column_int64(s, 2);
    sqlite3_int64 inc = sqlite3_column_int64(s, 3);
    sqlite3_int64 seen = sqlite3_column_int64(s, 4);
    if (name == NULL || addr == NULL || nl == 0 || nl > NAME_MAX_LEN ||
        al == 0 || al > ADDR_MAX || memchr(name, 0, nl) != NULL ||
        memchr(addr, 0, al) != NULL || state < 0 ||
        state > ZPF_STATE_STALLED || inc < 0 || inc > UINT32_MAX ||
        seen < 0)
        return false;
    memcpy(m->name, name, nl);
    memcpy(m->addr, addr, al);
    m->state = (uint8_t)state;
    m->incarnation = (uint32_t)inc;
    m->seen_unix_ms = (uint64_t)seen;
    return addr_ok(m->addr, al);
}

int zpf_store_load_members(struct zpf_store *st,
                           int (*cb)(void *ctx,
                                     const struct zpf_store_member *m),
                           void *ctx, char *err, size_t errlen)
{
    static const char what[] = "loading the member list";
    if (st == NULL || cb == NULL) {
        zpf_errf(err, errlen, "zpf_store_load_members: %s is NULL",
               st ? "cb" : "store");
        return ZPF_EINVAL;
    }
    sqlite3_stmt *s = st->stmt[S_MEMBERS_LOAD];
    struct zpf_store_member m;
    int count = 0, rc;
    while ((rc = step(st, S_MEMBERS_LOAD, "members_load")) == SQLITE_ROW) {
        if (!member_row(s, &m)) {
            done(st, S_MEMBERS_LOAD);
            zpf_errf(err, errlen, "%s: row %d of the members table in %s does "
                   "not hold a valid member: it was not written by zpfd; "
                   "delete the row, or move the file aside", what, count,
                   st->path);
            return ZPF_EIO;
        }
        if (count == INT_MAX) {
            done(st, S_MEMBERS_LOAD);
            zpf_errf(err, errlen, "%s: %s holds more members than a count "
                   "can say", what, st->path);
            return ZPF_E2BIG;
        }
        count++;
        int r = cb(ctx, &m);
        if (r != 0) {
            done(st, S_MEMBERS_LOAD);
            return r < 0 ? r : count;
        }
    }
    if (rc != SQLITE_DONE) {
        int code = fail_sqlite(st, rc, what, err, errlen);
        done(st, S_MEMBERS_LOAD);
        return code;
    }
    done(st, S_MEMBERS_LOAD);
    return count;
}

/* --- keyring -------------------------------------------------------------- */

int zpf_store_save_keys(struct zpf_store *st, uint64_t version,
                        const uint8_t (*keys)[ZPF_STORE_KEY_LEN], size_t n,
                        size_t primary, char *err, size_t errlen)
{
    static const char fn[] = "zpf_store_save_keys";
    static const char what[] = "saving the keyring";
    if (st == NULL || keys == NULL) {
        zpf_errf(err, errlen, "%s: %s is NULL", fn, st ? "keys" : "store");
        return ZPF_EINVAL;
    }
    if (n == 0 || n > ZPF_STORE_KEYS_MAX) {
        zpf_errf(err, errlen, "%s: a keyring holds 1..%d keys, not %zu", fn,
               ZPF_STORE_KEYS_MAX, n);
        return ZPF_EINVAL;
    }
    if (primary >= n) {
        zpf_errf(err, errlen, "%s: primary index %zu is not below the key "
               "count %zu", fn, primary, n);
        return ZPF_EINVAL;
    }
    if (version > INT64_MAX) {
        zpf_errf(err, errlen, "%s: version %" PRIu64 " is above INT64_MAX",
               fn, version);
        return ZPF_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (sodium_memcmp(keys[i], keys[j], ZPF_STORE_KEY_LEN) == 0) {
                zpf_errf(err, errlen, "%s: key %zu is the same as key %zu", fn,
                       i, j);
                return ZPF_EINVAL;
            }
        }
    }

    int rc = tx_begin(st, true, what, err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = exec_stmt(st, S_KEYS_CLEAR, "keys_clear")) != SQLITE_OK)
        return tx_fail(st, true, rc, what, err, errlen);
    sqlite3_stmt *s = st->stmt[S_KEY_INSERT];
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_int(s, 1, (int)i);
        /* STATIC: SQLite copies the bytes into the record it writes; the
         * store keeps no copy, and done() drops the pointer. */
        sqlite3_bind_blob(s, 2, keys[i], ZPF_STORE_KEY_LEN, SQLITE_STATIC);
        if ((rc = exec_stmt(st, S_KEY_INSERT, "key_insert")) != SQLITE_OK)
            return tx_fail(st, true, rc, what, err, errlen);
    }
    s = st->stmt[S_KEYS_META];
    sqlite3_bind_int64(s, 1, (sqlite3_int64)version);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)primary);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)n);
    if ((rc = exec_stmt(st, S_KEYS_META, "keys_meta")) != SQLITE_OK)
        return tx_fail(st, true, rc, what, err, errlen);
    return tx_commit(st, true, what, err, errlen);
}

int zpf_store_load_keys(struct zpf_store *st, uint64_t *version,
                        uint8_t (*keys)[ZPF_STORE_KEY_LEN], size_t max,
                        size_t *n, size_t *primary, char *err, size_t errlen)
{
    static const char what[] = "loading the keyring";
    if (st == NULL || version == NULL || keys == NULL || n == NULL ||
        primary == NULL) {
        zpf_errf(err, errlen, "zpf_store_load_keys: %s is NULL",
               st == NULL ? "store" : version == NULL ? "version"
                                    : keys == NULL    ? "keys"
                                    : n == NULL       ? "n"
                                                      : "primary");
        return ZPF_EINVAL;
    }
    sqlite3_stmt *s = st->stmt[S_KEYS_LOAD];
    size_t got = 0;
    sqlite3_int64 ver = 0, prim = 0, nkeys = 0;
    int rc, code = 0;
    const char *damage = NULL;
    while ((rc = step(st, S_KEYS_LOAD, "keys_load")) == SQLITE_ROW) {
        if (got == 0) {
            ver = sqlite3_column_int64(s, 0);
            prim = sqlite3_column_int64(s, 1);
            nkeys = sqlite3_column_int64(s, 2);
            if (nkeys < 1 || nkeys > ZPF_STORE_KEYS_MAX || prim < 0 ||
                prim >= nkeys || ver < 0) {
                damage = "its key count, primary or version is out of range";
                break;
            }
            if ((size_t)nkeys > max) {
                zpf_errf(err, errlen, "%s: %s holds %lld keys, more than the "
                       "%zu there is room for", what, st->path,
                       (long long)nkeys, max);
                code = ZPF_E2BIG;
                break;
            }
        }
        const void *blob = sqlite3_column_blob(s, 4);
        if (sqlite3_column_type(s, 3) != SQLITE_INTEGER ||
            sqlite3_column_int64(s, 3) != (sqlite3_int64)got ||
            got >= (size_t)nkeys || blob == NULL ||
            sqlite3_column_bytes(s, 4) != ZPF_STORE_KEY_LEN) {
            damage = "a key is missing, extra or of the wrong size";
            break;
        }
        memcpy(keys[got], blob, ZPF_STORE_KEY_LEN);
        got++;
    }
    if (damage == NULL && code == 0) {
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            code = fail_sqlite(st, rc, what, err, errlen);
        else if (got == 0) {
            zpf_errf(err, errlen, "no keyring saved in %s", st->path);
            code = ZPF_ENOENT;
        } else if (got != (size_t)nkeys) {
            damage = "a key is missing";
        }
    }
    done(st, S_KEYS_LOAD);
    if (damage != NULL) {
        zpf_errf(err, errlen, "%s: the keyring in %s is damaged (%s): install "
               "the keys again (zpfctl), or move the file aside", what,
               st->path, damage);
        code = ZPF_EIO;
    }
    if (code != 0) {
        sodium_memzero(keys, got * ZPF_STORE_KEY_LEN);
        return code;
    }
    *version = (uint64_t)ver;
    *n = got;
    *primary = (size_t)prim;
    return 0;
}
