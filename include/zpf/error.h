/*
 * zpf error codes.
 *
 * Every zpf function that can fail returns an int: 0 (or a positive count) on
 * success, a negative code on failure.  Codes that mirror POSIX errors have
 * the same value as -errno (ZPF_ENOMEM == -ENOMEM), so a code from a system
 * call can be passed through unchanged.  zpf's own codes live in a reserved
 * range below -4000 that no errno reaches.
 *
 * One table (ZPF_ERRNO_MAP) produces the enum, zpf_strerror() and
 * zpf_err_name(), so a new code cannot be added without its message.
 */
#ifndef ZPF_ERROR_H
#define ZPF_ERROR_H

#include <errno.h>

/* XX(NAME, value, message) */
#define ZPF_ERRNO_MAP(XX)                                                      \
    XX(ENOMEM, -ENOMEM, "out of memory")                                       \
    XX(EINVAL, -EINVAL, "invalid argument")                                    \
    XX(ENOSPC, -ENOSPC, "no space left in buffer")                             \
    XX(ENOENT, -ENOENT, "no such member")                                      \
    XX(EEXIST, -EEXIST, "already exists")                                      \
    XX(E2BIG, -E2BIG, "too large")                                             \
    XX(EBUSY, -EBUSY, "in use")                                                \
    XX(EPERM, -EPERM, "operation not permitted")                               \
    XX(EIO, -EIO, "input/output error")                                        \
    XX(ETRUNC, -4001, "packet truncated")                                      \
    XX(EMSGPACK, -4002, "malformed msgpack")                                   \
    XX(EVERSION, -4003, "unsupported protocol version")                        \
    XX(ECLUSTER, -4004, "packet from another cluster")                         \
    XX(ETYPE, -4005, "unknown message type")                                   \
    XX(EFIELD, -4006, "field has the wrong type")                              \
    XX(ELIMIT, -4007, "length or count over its bound")                        \
    XX(EADDR, -4008, "malformed address")                                      \
    XX(ESELF, -4009, "packet claims to come from this node")                   \
    XX(ENOTME, -4010, "probe addressed to another node")                       \
    XX(ELEAVING, -4011, "node is leaving")                                     \
    XX(ESEAL, -4012, "not a sealed packet, or an unknown seal version")        \
    XX(ENOKEY, -4013, "sealed under a key that is not in the keyring")         \
    XX(EAUTH, -4014, "failed to authenticate (wrong key or tampered)")         \
    XX(EREPLAY, -4015, "replayed or too old a packet")

enum zpf_errno {
#define ZPF__ERR_ENUM(name, val, msg) ZPF_##name = (val),
    ZPF_ERRNO_MAP(ZPF__ERR_ENUM)
#undef ZPF__ERR_ENUM
};

/* Human-readable message for a code; "unknown error" for anything else.
 * The string is static. */
const char *zpf_strerror(int err);

/* The code's name without the ZPF_ prefix ("ENOMEM", "ETRUNC"), for logs and
 * metric labels; "UNKNOWN" for anything else.  The string is static. */
const char *zpf_err_name(int err);

#endif
