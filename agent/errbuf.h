/*
 * Error messages into a caller's buffer: every agent function that can fail
 * takes (char *err, size_t errlen) and writes one line there saying what,
 * where and what to do.
 */
#ifndef ZPF_AGENT_ERRBUF_H
#define ZPF_AGENT_ERRBUF_H

#include <stddef.h>

/* printf into err (errlen bytes, always NUL-terminated, truncated if
 * needed).  err may be NULL when errlen is 0: then nothing is written. */
void zpf_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
