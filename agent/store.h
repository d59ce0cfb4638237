/*
 * The agent's durable memory: DATA_DIR/zpf.db, an SQLite database in WAL
 * mode, readable by its owner only (mode 0600: the keyring is inside).
 *
 * What survives a restart, and why:
 *
 *   counters by name   zpf_store_get_u64() / zpf_store_set_u64().  Above
 *                      all the node's own incarnation, so that a restarted
 *                      node announces itself above the incarnation its peers
 *                      last saw instead of being refuted by its own ghost.
 *   the boot epoch     zpf_store_next_epoch(): strictly greater on every
 *                      start; the high 32 bits of the packet sequence, so a
 *                      packet recorded during an earlier run can never be
 *                      replayed into this one.
 *   the members        zpf_store_save_members() / zpf_store_load_members():
 *                      the last known member list, so a restarted node can
 *                      rejoin the cluster even when its seeds are gone.
 *   the keyring        zpf_store_save_keys() / zpf_store_load_keys(): the
 *                      cluster keys, the primary, and the keyring version
 *                      used when key changes are spread.
 *
 * Every write is one transaction: a failure in the middle, a full disk, a
 * kill -9 or a power cut leaves the previous content, never a mix.  The
 * counters, the epoch and the keyring are on disk (fsync) when their call
 * returns; a member list may be lost to a power cut (not to a crash of the
 * process) for a few seconds after it was saved, which costs a rejoin from
 * a slightly older list and nothing else.
 *
 * Threading: a store is used by one thread at a time.  The agent calls these
 * functions from the libuv thread pool, one call at a time (it serialises
 * them), never concurrently on the same store; the connection is opened
 * without SQLite's mutexes for that reason.  Calls may block for up to
 * ZPF_STORE_BUSY_MS when another process (an operator's sqlite3 shell, a
 * backup) holds the database lock, and for an fsync: never call them on the
 * event loop thread.  Do not fork with a store open.
 *
 * Errors: every function returns 0 (or a positive count where documented)
 * on success and a negative ZPF_E* code (include/zpf/error.h) on failure,
 * and on failure writes one human-readable line into err (errlen bytes,
 * always NUL-terminated, truncated if needed; err may be NULL when errlen is
 * 0).  On success err is left as it was.  The line says what failed, where
 * (the path) and what to do; it never contains key bytes.  Codes:
 *
 *   ZPF_EINVAL   bad argument (the message names it); nothing was changed
 *   ZPF_ENOENT   nothing stored under that name (get_u64, load_keys)
 *   ZPF_ENOSPC   disk full; nothing was changed; retry when space returns
 *   ZPF_EPERM    data_dir or zpf.db not writable (permissions, read-only
 *                filesystem)
 *   ZPF_EBUSY    another process held the database lock for longer than
 *                ZPF_STORE_BUSY_MS; nothing was changed; retry
 *   ZPF_EIO      I/O error, or the file is damaged or not a zpf store (the
 *                message says which and how to recover)
 *   ZPF_EVERSION zpf.db was written by a newer zpfd (a newer schema)
 *   ZPF_ELIMIT   a stored value reached its bound (the boot epoch)
 *   ZPF_E2BIG    the caller's buffer is too small (load_keys)
 *   ZPF_ENOMEM   out of memory
 *
 * After any failure the store stays usable: a failed write rolls back, and
 * reads keep working while writes fail (a full disk), so the agent keeps
 * running from memory and retries later.  The only failure that leaves no
 * store is a failed zpf_store_open().
 */
#ifndef ZPF_AGENT_STORE_H
#define ZPF_AGENT_STORE_H

#include <stddef.h>
#include <stdint.h>

/* The schema this zpfd writes.  PRAGMA user_version of zpf.db; a file with
 * a larger one is refused (ZPF_EVERSION) rather than misread. */
#define ZPF_STORE_SCHEMA_VERSION 1

/* PRAGMA application_id of zpf.db ("zpfd"), so that a database of another
 * program is refused rather than migrated. */
#define ZPF_STORE_APPLICATION_ID 0x7a706664

/* The database file inside data_dir. */
#define ZPF_STORE_FILE "zpf.db"

/* Longest data_dir accepted, in bytes: the path of the database, its -wal
 * and -shm files must still fit in PATH_MAX (4096 on Linux). */
#define ZPF_STORE_DIR_MAX 4000

/* How long a call waits for a lock held by another process before failing
 * with ZPF_EBUSY.  An operator's sqlite3 shell or a backup holds it for
 * moments; the calls run on the thread pool, so waiting does not stall
 * gossip, and 5 s is far below the interval at which the agent saves. */
#define ZPF_STORE_BUSY_MS 5000

/* Longest counter name, in bytes.  Names are chosen by the agent
 * ("incarnation"); they may hold letters, digits, '_', '-' and '.', so that
 * they can appear in messages as they are. */
#define ZPF_STORE_KEY_MAX 64

/* The counter owned by zpf_store_next_epoch(); zpf_store_set_u64() refuses
 * it so the epoch can never be set backwards. */
#define ZPF_STORE_EPOCH_KEY "boot_epoch"

/* Largest boot epoch: it is the high half of a 64-bit packet sequence. */
#define ZPF_STORE_EPOCH_MAX UINT32_MAX

/* The keyring, as in include/zpf/seal.h (ZPF_KEY_LEN, ZPF_KEYS_MAX). */
#define ZPF_STORE_KEY_LEN 32
#define ZPF_STORE_KEYS_MAX 8

struct zpf_store;

/*
 * Open DATA_DIR/zpf.db, creating data_dir (mode 0700, parents too) and the
 * database (mode 0600) if missing, and bringing an older schema up to date
 * (all steps in one transaction: an interrupted migration leaves the old
 * schema).  An existing zpf.db with group or other permissions is narrowed
 * to 0600; an existing data_dir keeps its mode.
 *
 * data_dir  borrowed for the call; 1..ZPF_STORE_DIR_MAX bytes
 * out       receives the store, which the caller frees with
 *           zpf_store_close(); set to NULL on failure
 *
 * Returns 0, ZPF_EINVAL, ZPF_ENOMEM, ZPF_EPERM, ZPF_ENOSPC, ZPF_EBUSY,
 * ZPF_EIO (data_dir is not a directory, zpf.db is damaged, not a database,
 * or a database of another program), or ZPF_EVERSION (newer schema).  A
 * refused file is left untouched.
 */
int zpf_store_open(const char *data_dir, struct zpf_store **out, char *err,
                   size_t errlen);

/* As zpf_store_open(), with a fault hook (see zpf_store_set_fault()) already
 * in place, so that tests can fail the open and the migration too.  The
 * hook stays installed on the store returned. */
int zpf_store_open_with_fault(const char *data_dir,
                              int (*fault_cb)(void *ctx, const char *op),
                              void *fault_ctx, struct zpf_store **out,
                              char *err, size_t errlen);

/* Close the database and free the store.  NULL is a no-op.  Everything
 * committed is already on disk; closing only tidies the -wal file. */
void zpf_store_close(struct zpf_store *st);

/*
 * Read the counter `key` into *val.
 *
 * Returns 0, ZPF_ENOENT (never set; *val untouched), ZPF_EINVAL (key not
 * 1..ZPF_STORE_KEY_MAX of [A-Za-z0-9_.-]), ZPF_EBUSY, ZPF_EIO, ZPF_ENOMEM.
 */
int zpf_store_get_u64(struct zpf_store *st, const char *key, uint64_t *val,
                      char *err, size_t errlen);

/*
 * Set the counter `key` to val, durably (on disk when the call returns).
 * ZPF_STORE_EPOCH_KEY is refused: only zpf_store_next_epoch() moves it.
 *
 * Returns 0, ZPF_EINVAL, ZPF_ENOSPC, ZPF_EPERM, ZPF_EBUSY, ZPF_EIO,
 * ZPF_ENOMEM; on failure the old value stays.
 */
int zpf_store_set_u64(struct zpf_store *st, const char *key, uint64_t val,
                      char *err, size_t errlen);

/*
 * Atomically read the stored boot epoch e (0 if none), store
 * max(e + 1, floor) durably, and return it in *out.  Call once per start.
 *
 * floor  the wall clock in seconds: a store that was wiped still gets an
 *        epoch above every earlier one, as long as the clock is right and
 *        the node did not start more than once a second on average.
 *
 * Returns 0, ZPF_EINVAL, ZPF_ELIMIT (floor or e + 1 above
 * ZPF_STORE_EPOCH_MAX: nothing is stored), ZPF_ENOSPC, ZPF_EPERM,
 * ZPF_EBUSY, ZPF_EIO, ZPF_ENOMEM.  *out is written only on success.  A
 * caller that falls back to the wall clock alone accepts that a restart
 * within the same second, or after the clock was set back, reuses an epoch.
 */
int zpf_store_next_epoch(struct zpf_store *st, uint64_t floor, uint64_t *out,
                         char *err, size_t errlen);

/* One remembered member.  Strings are NUL-terminated inside their arrays. */
struct zpf_store_member {
    char name[65];     /* 1..64 bytes (ZPF_NAME_MAX) */
    char addr[64];     /* "a.b.c.d:port" or "[v6]:port", port 0..65535 */
    uint8_t state;     /* enum zpf_state, 0..ZPF_STATE_STALLED */
    uint32_t incarnation;
    uint64_t seen_unix_ms; /* when it was last heard from; <= INT64_MAX */
};

/*
 * Replace the whole member list with m[0..n) in one transaction (n == 0
 * empties it).  Every member is checked first; one bad member (empty or
 * unterminated name, malformed address, unknown state, a name given twice)
 * fails the call with ZPF_EINVAL, naming its index, and changes nothing.
 * m is borrowed for the call.  The list is not fsynced: see the top.
 *
 * Returns 0, ZPF_EINVAL, ZPF_ENOSPC, ZPF_EPERM, ZPF_EBUSY, ZPF_EIO,
 * ZPF_ENOMEM; on failure the previous list stays, whole.
 */
int zpf_store_save_members(struct zpf_store *st,
                           const struct zpf_store_member *m, size_t n,
                           char *err, size_t errlen);

/*
 * Call cb for each stored member, most recently seen first (ties by name),
 * all from one consistent snapshot.  m is valid during the call only.  cb
 * returns 0 to go on; a positive value stops the walk (success); a negative
 * value stops it and is returned as it is.  cb must not call the store.
 *
 * Returns the number of members passed to cb (>= 0), cb's negative value,
 * or ZPF_EINVAL, ZPF_EBUSY, ZPF_EIO (also: a row that zpfd did not write),
 * ZPF_ENOMEM, ZPF_E2BIG (more than INT_MAX rows).
 */
int zpf_store_load_members(struct zpf_store *st,
                           int (*cb)(void *ctx,
                                     const struct zpf_store_member *m),
                           void *ctx, char *err, size_t errlen);

/*
 * Replace the keyring, durably and in one transaction: keys[0..n) (1..
 * ZPF_STORE_KEYS_MAX distinct keys), keys[primary] the primary, and the
 * keyring version.  Key bytes are bound to SQLite in place (never copied by
 * the store) and never appear in a message.  Replaced keys are zeroed in
 * the database pages (secure_delete); copies may linger in the -wal file
 * until it is reused, and in disk blocks the filesystem freed, which is why
 * the file is 0600.
 *
 * Returns 0, ZPF_EINVAL, ZPF_ENOSPC, ZPF_EPERM, ZPF_EBUSY, ZPF_EIO,
 * ZPF_ENOMEM; on failure the previous keyring stays, whole.
 */
int zpf_store_save_keys(struct zpf_store *st, uint64_t version,
                        const uint8_t (*keys)[ZPF_STORE_KEY_LEN], size_t n,
                        size_t primary, char *err, size_t errlen);

/*
 * Read the keyring into keys[0..max), its size into *n, the primary's index
 * into *primary and the version into *version.  The caller wipes keys
 * (sodium_memzero) when done with them.  On failure nothing is written and
 * no key bytes are left in keys.
 *
 * Returns 0, ZPF_ENOENT (no keyring saved), ZPF_E2BIG (more than max keys
 * stored), ZPF_EINVAL, ZPF_EBUSY, ZPF_EIO (a damaged keyring), ZPF_ENOMEM.
 */
int zpf_store_load_keys(struct zpf_store *st, uint64_t *version,
                        uint8_t (*keys)[ZPF_STORE_KEY_LEN], size_t max,
                        size_t *n, size_t *primary, char *err, size_t errlen);

/*
 * Fault injection, for tests.  Before each sqlite3_step, and at the fault
 * points named below, the store calls fault_cb(ctx, op); a non-zero return
 * is an SQLite result code (SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY,
 * SQLITE_CORRUPT, SQLITE_READONLY...) that the store handles exactly as if
 * SQLite had returned it there, without running the step.  NULL (the
 * default) removes the hook; with no hook the cost is one pointer test.
 *
 * op names the point:
 *   "open"       before the database file is opened
 *   "migrate"    before each schema migration step
 *   "begin"      before each write transaction starts
 *   "commit"     before each commit
 *   "get_u64", "set_u64", "epoch_get", "epoch_set", "members_clear",
 *   "member_insert" (once per member), "members_load" (once per row, and
 *   once more at the end), "keys_clear", "key_insert" (once per key),
 *   "keys_meta", "keys_load" (once per row, and once more at the end)
 *
 * The hook is called on the store's thread and must not call the store.
 */
void zpf_store_set_fault(struct zpf_store *st,
                         int (*fault_cb)(void *ctx, const char *op),
                         void *ctx);

#endif
