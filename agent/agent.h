/*
 * The agent: wires the gossip core to the loop, the transport, the store,
 * the health checks and the control socket.  zpfd.c is its command line.
 *
 * One agent per process, driven by one libuv loop on one thread.  Slow work
 * (SQLite, files) goes to the libuv thread pool through a serial job queue,
 * so the loop never waits on a disk; the only blocking store calls are at
 * start (before the loop runs) and at exit (after it stopped gossiping).
 */
#ifndef ZPF_AGENT_AGENT_H
#define ZPF_AGENT_AGENT_H

#include <uv.h>

#include "conf.h"

#define ZPF_VERSION "0.3.0"

struct zpf_agent;

/* Create the agent from a validated config (taken over: the agent frees
 * it) and start it on `loop`.  On failure writes the reason into err and
 * returns a negative code; nothing is left running. */
int zpf_agent_start(uv_loop_t *loop, const char *conf_path,
                    struct zpf_conf *conf, struct zpf_agent **out, char *err,
                    size_t errlen);

/* The exit status once the loop has stopped (0 after a clean leave). */
int zpf_agent_exit_code(const struct zpf_agent *a);

/* Free what is left after uv_run() returned. */
void zpf_agent_free(struct zpf_agent *a);

#endif
