/* server.h - the HTTP server: evhttp on one event-loop thread, the Anthropic
 * and OpenAI routes, limits, auth, streaming, disconnects and graceful shutdown.
 *
 * Threads: pv_server_run() runs the event loop on the calling thread, which is
 * the only one that touches libevent. Other threads talk to it through
 * pv_server_attach() / pv_server_fail() and the scheduler's notify callback
 * (pv_server_notify), each of which queues work under a lock and wakes the
 * loop with event_active().
 *
 * Routes: the Anthropic Messages API (/v1/messages, count_tokens), the OpenAI
 * API (/v1/chat/completions, /v1/completions), /v1/models for both, /health,
 * /metrics. Routing ignores query strings. Error bodies take the shape of the
 * route's API: Anthropic's {"type":"error","error":{"type","message"}}, OpenAI's
 * {"error":{"message","type","param","code"}}, and on the shared routes one body
 * with the fields of both. */
#ifndef PV_SERVER_H
#define PV_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "api/prompt.h"
#include "base/meminfo.h"
#include "model/model.h"
#include "sched/sched.h"

typedef struct {
    const char *host;        /* address to bind (default 127.0.0.1) */
    int port;                /* TCP port (0: any free port, printed at start) */
    const char *api_key;     /* required key, or NULL/"" for none */
    int insecure_public;     /* allow a non-loopback address without a key */
    const char *model_name;  /* name in /health, /v1/models */
    size_t max_body;         /* request body limit in bytes (413 above) */
    size_t max_headers;      /* request header limit in bytes */
    int max_conns;           /* open connections at most */
    int idle_timeout_s;      /* keep-alive connections idle this long are closed */
    int grace_s;             /* on SIGINT/SIGTERM, running requests get this long */
    int ping_s;              /* SSE ping interval while no token comes */
    pv_mem_tiers_t tiers;    /* memory gate thresholds */
    const char *chat_template; /* template source replacing the GGUF's tokenizer.chat_template, or NULL */
    int has_now;             /* 1: templates' strftime_now() formats now (PENSIEVE_NOW), else the current time */
    struct tm now;           /* that fixed local time */
} pv_server_opts_t;

typedef struct pv_server pv_server_t;

/* Binds the socket (so that errors come at once); the model is attached later. */
int pv_server_new(const pv_server_opts_t *o, pv_server_t **out, char *err, size_t errlen);
void pv_server_free(pv_server_t *s); /* accepts NULL; after pv_server_run returned */
int pv_server_port(const pv_server_t *s); /* the bound port */

/* From any thread: the model is loaded and the scheduler (not yet started)
 * exists; the loop starts it and serves. Both are borrowed until pv_server_run returns. */
void pv_server_attach(pv_server_t *s, const pv_model_t *m, pv_sched_t *sched);
/* From any thread: loading failed; pv_server_run returns -1. */
void pv_server_fail(pv_server_t *s, const char *msg);

/* The scheduler's notify callback (ud: the server). */
void pv_server_notify(void *ud, pv_req_t *r);

/* Serves until SIGINT/SIGTERM (then drains within the grace period). 0, or -1 when loading failed. */
int pv_server_run(pv_server_t *s);

#endif
