/* metrics.h - counters and histograms of the server, rendered as Prometheus
 * text (exposition format 0.0.4) for GET /metrics, and the /health JSON.
 *
 * Owner: the event-loop thread (every update and render happens there; no locks). */
#ifndef PV_METRICS_H
#define PV_METRICS_H

#include <jansson.h>
#include <stdint.h>

#include "base/meminfo.h"
#include "sched/sched.h"

typedef enum {
    PV_EP_MESSAGES = 0,
    PV_EP_COUNT_TOKENS,
    PV_EP_MODELS,
    PV_EP_HEALTH,
    PV_EP_METRICS,
    PV_EP_CHAT_COMPLETIONS, /* OpenAI */
    PV_EP_COMPLETIONS,      /* OpenAI */
    PV_EP_APPLY_TEMPLATE,   /* llama.cpp's: the rendered chat prompt, no generation */
    PV_EP_OTHER,
    PV_EP_COUNT
} pv_endpoint_t;

#define PV_HIST_MAX 16 /* buckets per histogram (+Inf implied) */

typedef struct {
    int n_bounds;                  /* finite upper bounds */
    double bounds[PV_HIST_MAX];    /* seconds, ascending */
    uint64_t counts[PV_HIST_MAX + 1]; /* per bucket (not cumulative); last is +Inf */
    double sum;                    /* sum of observations */
    uint64_t n;                    /* observations */
} pv_hist_t;

typedef struct {
    uint64_t requests[PV_EP_COUNT][600]; /* by endpoint and HTTP status (100..599) */
    uint64_t tokens_in;                  /* prompt tokens of finished requests */
    uint64_t tokens_out;                 /* generated tokens of finished requests */
    uint64_t cancelled;                  /* requests cancelled by a disconnect */
    pv_hist_t ttft;                      /* time to first token, seconds */
    pv_hist_t token_latency;             /* seconds per generated token after the first */
} pv_metrics_t;

/* What /health and /metrics report besides the counters. */
typedef struct {
    const char *status;      /* "ok", "loading", "degraded" */
    const char *model;       /* served model name */
    int ready;               /* a scheduler is running (stats is valid) */
    pv_sched_stats_t stats;  /* zero while loading */
    pv_meminfo_t mem;        /* this moment's memory */
    pv_mem_status_t mem_status; /* its tier */
    uint64_t weights_bytes;  /* the model file's mapped size */
    int accepting;           /* new requests are admitted */
} pv_server_state_t;

void pv_metrics_init(pv_metrics_t *m);
void pv_metrics_request(pv_metrics_t *m, pv_endpoint_t ep, int status);
void pv_hist_observe(pv_hist_t *h, double v, uint64_t times);

/* Prometheus text; owned string (free()). NULL on OOM. */
char *pv_metrics_render(const pv_metrics_t *m, const pv_server_state_t *st);

/* The /health object (new reference). */
json_t *pv_health_json(const pv_server_state_t *st);

#endif
