/*
 * zpf sealed envelopes, the keyring and the replay window.
 *
 * Every datagram and stream frame zpfd sends is sealed with
 * XChaCha20-Poly1305 under a 32-byte cluster key, so that only key holders
 * can speak in the cluster and nobody else can read what it says.  A keyring
 * holds several keys, one of them primary: a node seals with the primary and
 * opens with whichever key the envelope names.  Keys therefore rotate with
 * no downtime: install the new key on every node, make it primary
 * everywhere, then remove the old one.
 *
 * A replay window per sender rejects a packet that was already accepted, so
 * a recorded packet cannot be played back into the cluster later.  Call it
 * only after zpf_open() succeeded: only then are the sender and sequence
 * authentic, and only then may a packet make the table grow.
 *
 * Everything here is pure: no clock, no randomness (the caller passes the
 * salt), no I/O, no allocation except through the allocator given to
 * zpf_replay_init().  The caller must have called sodium_init() once before
 * using any function of this header.  Nothing is thread-safe; a keyring that
 * is not being changed may be read from several threads at once.  A NULL
 * where a pointer is required gives ZPF_EINVAL (NULL, false or 0 from the
 * functions that return no code); nothing aborts.
 *
 * Envelope, version 0xA1:
 *
 *    0      1             5                                             29
 *   +------+-------------+----------------------------------------------+
 *   | 0xA1 | key id (BE) | nonce: sender id (BE) | seq (BE) | salt (BE) |
 *   +------+-------------+----------------------------------------------+
 *     1 B      4 B          8 B                    8 B        8 B
 *   +------------------------------------------------+------------------+
 *   | ciphertext (as long as the plaintext)          | Poly1305 tag 16 B|
 *   +------------------------------------------------+------------------+
 *
 *   sealed length = plaintext length + ZPF_SEAL_OVERHEAD (45)
 *
 * The first byte is never the first byte of a plain zpf packet (a msgpack
 * fixarray, 0x95), so an unsealed packet is told apart at once (ZPF_ESEAL).
 *
 * Associated data, authenticated but not sent beyond bytes 0..28:
 *
 *   the 29 header bytes | ZPF_PROTOCOL_VERSION (1 byte) | cluster id bytes
 *
 * so a packet of another cluster or protocol version fails to open even
 * under the same key, and no header byte can be changed unnoticed.
 *
 *   key id     first 4 bytes, big endian, of BLAKE2b-256("zpf key id v1" |
 *              key): names a key on the wire and to operators without
 *              revealing it.
 *   sender id  first 8 bytes, big endian, of BLAKE2b-256("zpf sender v1" |
 *              node name): fixed width, so it fits the nonce.
 *   seq        the sender's packet counter, strictly increasing across
 *              every destination and both channels, and across restarts
 *              (zpfd puts a boot epoch in its high 32 bits).
 *   salt       64 random bits per packet from the caller.
 *
 * Sender id and sequence cost nothing inside the nonce and become part of
 * what is authenticated, which the replay window relies on.  The salt keeps
 * the nonce unique even if a restarted sender repeats a sequence.
 */
#ifndef ZPF_SEAL_H
#define ZPF_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zpf/error.h"

/* --- envelope layout ---------------------------------------------------- */

#define ZPF_SEAL_VERSION 0xA1
#define ZPF_SEAL_KEY_ID_OFF 1
#define ZPF_SEAL_NONCE_OFF 5
#define ZPF_SEAL_NONCE_LEN 24 /* XChaCha20: sender | seq | salt */
#define ZPF_SEAL_HDR_LEN 29   /* version, key id, nonce */
#define ZPF_SEAL_TAG_LEN 16   /* Poly1305 */
#define ZPF_SEAL_OVERHEAD 45  /* header + tag: what sealing adds */

_Static_assert(ZPF_SEAL_NONCE_OFF == ZPF_SEAL_KEY_ID_OFF + 4,
               "the key id is 4 bytes");
_Static_assert(ZPF_SEAL_HDR_LEN == ZPF_SEAL_NONCE_OFF + ZPF_SEAL_NONCE_LEN,
               "the nonce ends the header");
_Static_assert(ZPF_SEAL_NONCE_LEN == 8 + 8 + 8, "sender, seq, salt");
_Static_assert(ZPF_SEAL_OVERHEAD == ZPF_SEAL_HDR_LEN + ZPF_SEAL_TAG_LEN,
               "the overhead is the header and the tag");
_Static_assert(ZPF_SEAL_VERSION != 0x95,
               "a sealed packet must not look like a plain one");

/* --- keys --------------------------------------------------------------- */

#define ZPF_KEY_LEN 32
/* Rotation needs two keys at a time, three when a rotation starts before
 * the last one finished; more than this is an operator error, not a need. */
#define ZPF_KEYS_MAX 8
/* Buffer for zpf_key_encode(): 44 base64 characters and the NUL. */
#define ZPF_KEY_B64_LEN 45

struct zpf_key {
    uint32_t id; /* zpf_key_id(bytes) */
    uint8_t bytes[ZPF_KEY_LEN];
};

/*
 * A keyring: caller-owned storage, filled only through the functions below
 * (they keep every id equal to zpf_key_id() of its bytes, ids distinct,
 * and primary < n whenever n > 0).  Keys keep the order they were added
 * in, so a ring saved and loaded in order comes back the same.  Holds
 * secrets: zpf_keyring_wipe() it before the memory is released.
 */
struct zpf_keyring {
    struct zpf_key keys[ZPF_KEYS_MAX];
    uint32_t n;       /* keys in use: keys[0..n) */
    uint32_t primary; /* index of the key that seals */
};

/* The id of a key (see the top of this file).  Never fails. */
uint32_t zpf_key_id(const uint8_t key[ZPF_KEY_LEN]);

/* The sender id of a node name of len bytes (see the top of this file).
 * Never fails; name may be NULL when len is 0. */
uint64_t zpf_seal_sender_id(const char *name, size_t len);

/* Decode a key from standard base64 with padding (44 characters), ignoring
 * whitespace before and after it.  Writes out only on success.
 * Returns 0, or ZPF_EINVAL: NULL argument, a character outside the
 * standard alphabet (URL-safe "-_" included), whitespace inside, missing
 * padding, non-zero trailing bits, or not exactly 32 bytes. */
int zpf_key_decode(const char *b64, size_t len, uint8_t out[ZPF_KEY_LEN]);

/* Encode a key as NUL-terminated standard base64 into out (cap bytes, at
 * least ZPF_KEY_B64_LEN).  Returns the string length (44), or ZPF_EINVAL
 * (NULL argument) or ZPF_ENOSPC (cap too small; out untouched). */
int zpf_key_encode(const uint8_t key[ZPF_KEY_LEN], char *out, size_t cap);

/* An empty ring. */
void zpf_keyring_init(struct zpf_keyring *kr);

/* Add a key at the end of the ring; the first key added becomes primary.
 * Returns 0, or ZPF_EEXIST (this key, or another with the same id: a 1 in
 * 2^32 chance, so generate another key), ZPF_ELIMIT (already ZPF_KEYS_MAX
 * keys) or ZPF_EINVAL (NULL argument). */
int zpf_keyring_add(struct zpf_keyring *kr, const uint8_t key[ZPF_KEY_LEN]);

/* Make the key with this id the primary.  Returns 0 or ZPF_ENOENT. */
int zpf_keyring_use(struct zpf_keyring *kr, uint32_t id);

/* Remove the key with this id, keeping the order of the others, and wipe
 * its slot.  Returns 0, ZPF_ENOENT, or ZPF_EBUSY for the primary: make
 * another key primary first, so a ring that seals never becomes empty. */
int zpf_keyring_remove(struct zpf_keyring *kr, uint32_t id);

/* The key with this id, or NULL.  The pointer is into kr, valid until kr
 * changes. */
const struct zpf_key *zpf_keyring_find(const struct zpf_keyring *kr,
                                       uint32_t id);

/* The primary key, or NULL if the ring is empty.  Pointer as above. */
const struct zpf_key *zpf_keyring_primary(const struct zpf_keyring *kr);

/* True when both rings hold the same keys, in any order, with the same
 * primary (two empty rings are equal). */
bool zpf_keyring_equal(const struct zpf_keyring *a,
                       const struct zpf_keyring *b);

/* Zero the whole ring (sodium_memzero, which the compiler cannot drop);
 * it is then empty. */
void zpf_keyring_wipe(struct zpf_keyring *kr);

/* --- sealing ------------------------------------------------------------ */

/*
 * Seal len bytes of in under the primary key of kr into out (cap bytes).
 * cluster is the cluster id (cluster_len bytes, 1..ZPF_CLUSTER_MAX of
 * zpf/gossip.h, no NUL needed); sender is zpf_seal_sender_id() of this
 * node's name; seq must never repeat for this sender; salt is fresh random
 * bits.  in may be NULL when len is 0; out must not overlap in.
 *
 * Returns the sealed length, len + ZPF_SEAL_OVERHEAD, or
 *   ZPF_ENOKEY   the ring is empty
 *   ZPF_ENOSPC   cap < len + ZPF_SEAL_OVERHEAD (out untouched)
 *   ZPF_E2BIG    len + ZPF_SEAL_OVERHEAD does not fit an int
 *   ZPF_EINVAL   NULL argument, bad cluster length, overlapping buffers
 */
int zpf_seal(const struct zpf_keyring *kr, const char *cluster,
             size_t cluster_len, uint64_t sender, uint64_t seq,
             uint64_t salt, const uint8_t *in, size_t len, uint8_t *out,
             size_t cap);

/* What an envelope's header says. */
struct zpf_seal_info {
    uint32_t key_id;
    uint64_t sender;
    uint64_t seq;
};

/*
 * Open the envelope in (len bytes, hostile) with the key it names, writing
 * the plaintext into out (cap bytes; at least len - ZPF_SEAL_OVERHEAD).
 * cluster as for zpf_seal().  out must not overlap in.  Never reads or
 * writes out of bounds, whatever the input.
 *
 * Returns the plaintext length, or
 *   ZPF_EINVAL   NULL argument, bad cluster length, overlapping buffers
 *   ZPF_E2BIG    len does not fit an int
 *   ZPF_ETRUNC   len is 0, or shorter than ZPF_SEAL_OVERHEAD
 *   ZPF_ESEAL    the first byte is not ZPF_SEAL_VERSION: not sealed (a
 *                plain packet from a node without keys), or a future
 *                version; checked before the length, so a short plain
 *                packet is ESEAL, not ETRUNC
 *   ZPF_ENOKEY   the key id is not in the ring (a rotation not finished)
 *   ZPF_ENOSPC   cap is too small for the plaintext
 *   ZPF_EAUTH    the tag does not verify: another key with the same id,
 *                another cluster or protocol version, or tampered bytes
 * No unauthenticated plaintext is ever left in out.
 *
 * info (may be NULL) receives the header on success, and also with
 * ZPF_ENOKEY, ZPF_ENOSPC and ZPF_EAUTH for logging: then it is whatever
 * the unauthenticated bytes say, and must not be acted upon.  The caller
 * then passes info->sender and info->seq to zpf_replay_check().
 */
int zpf_open(const struct zpf_keyring *kr, const char *cluster,
             size_t cluster_len, const uint8_t *in, size_t len, uint8_t *out,
             size_t cap, struct zpf_seal_info *info);

/* --- replay window ------------------------------------------------------ */

/*
 * Sequences remembered below a sender's highest one.  A sender's sequence
 * is shared by all its destinations and by both channels, so a receiver
 * sees only a sparse subsequence of it; 1024 of the sender's own sends is
 * tens of seconds of its traffic (a few dozen packets a second in a large
 * cluster), far more than any datagram reordering or a slow stream frame
 * overtaken by datagrams sent after it.  Costs 136 bytes of bitmap per
 * sender.
 */
#define ZPF_REPLAY_WINDOW 1024

/* Upper bound for max_senders: keeps the index arithmetic in 32 bits; the
 * table then costs about 2.8 GB, far beyond any cluster zpf is meant for. */
#define ZPF_REPLAY_SENDERS_MAX (1u << 24)

struct zpf__replay_win;

/*
 * A table of windows keyed by sender id, in caller-owned storage.  Fields
 * are private.  Memory: about 170 bytes per sender (zpf_replay_memory()).
 *
 * Per sender it keeps the highest sequence accepted and which of the
 * ZPF_REPLAY_WINDOW sequences below it were accepted (as WireGuard and
 * RFC 6479 do).  A sequence is accepted, and recorded, when it is above
 * the highest (the window slides up to it), or within the window and not
 * yet seen; anything else is a replay, or too old to tell, and refused.
 * The first packet of an unknown sender creates its window.
 *
 * When max_senders windows exist, a new sender evicts the window that was
 * least recently advanced (created or slid up), in O(1).  That is safe
 * enough: windows are created only for authenticated packets, so only key
 * holders can fill the table, and max_senders is meant to exceed the
 * cluster.  The evicted sender, if still alive, is the quietest one; the
 * first packet seen from it afterwards starts a fresh window, so at worst
 * a recorded packet of it is accepted once more -- and replayed gossip
 * carries facts that are stale by their own incarnations and counters,
 * which the membership state ignores.
 */
struct zpf_replay {
    struct zpf__replay_win *win; /* dense: win[0..count) */
    uint32_t *index;             /* open addressing: win index + 1, 0 empty */
    uint32_t count, cap;         /* windows in use, allocated */
    uint32_t index_cap;          /* power of two, or 0 */
    uint32_t max;                /* max_senders */
    uint32_t lru_head, lru_tail; /* most and least recently advanced */
    void *(*realloc)(void *ctx, void *ptr, size_t size);
    void *ctx;
};

/*
 * An empty table of at most max_senders windows (1..ZPF_REPLAY_SENDERS_MAX,
 * e.g. the core's max_members).  realloc_cb follows realloc(3), and
 * size 0 frees and returns NULL, like struct zpf_env's; ctx is passed to
 * it.  Allocates nothing yet.  Returns 0, or ZPF_EINVAL (t or realloc_cb
 * NULL, max_senders out of range; *t is then left empty but usable by
 * zpf_replay_free()).
 */
int zpf_replay_init(struct zpf_replay *t, uint32_t max_senders,
                    void *(*realloc_cb)(void *ctx, void *ptr, size_t size),
                    void *ctx);

/* Release the table's memory; it is then empty and may be used again. */
void zpf_replay_free(struct zpf_replay *t);

/*
 * Check an authenticated (sender, seq) and record it if accepted.
 * Returns 0 (accepted: process the packet), ZPF_EREPLAY (a replay or too
 * old: drop it), ZPF_ENOMEM (a new sender and the table could not grow:
 * drop it; the table is unchanged) or ZPF_EINVAL (t not initialised).
 */
int zpf_replay_check(struct zpf_replay *t, uint64_t sender, uint64_t seq);

/* Drop a sender's window, if any, to free its slot early.  Optional: a
 * departed sender's window is the least recently advanced, so it goes
 * first when the table is full, and until then it keeps refusing replays
 * of the sender's old packets.  Call it late, when the member is reaped
 * (ZPF_EV_REAP), not when it leaves. */
void zpf_replay_forget(struct zpf_replay *t, uint64_t sender);

/* Windows in use. */
uint32_t zpf_replay_count(const struct zpf_replay *t);

/* Bytes the table has allocated, for the agent's memory gauge. */
size_t zpf_replay_memory(const struct zpf_replay *t);

#endif
