/* request.h - what a request of any API becomes before the scheduler: the
 * rendered prompt, limits, sampling, stop strings, the tools offered and an
 * output constraint. anthropic.c and openai.c fill one; server.c hands it on. */
#ifndef PV_REQUEST_H
#define PV_REQUEST_H

#include "model/grammar.h"
#include "model/sample.h"
#include "sched/sched.h"

typedef struct {
    char model[256];                 /* the requested model name, echoed back */
    char *prompt;                    /* owned: the rendered chat prompt, or a completion's prompt as given */
    int max_tokens;                  /* as requested (clamped later to the context); 0: as many as it leaves */
    int stream;                      /* "stream": true */
    int include_usage;               /* OpenAI streams (stream_options.include_usage): a last chunk carries the usage */
    pv_sampler_params_t sp;          /* temperature, top_p, top_k, seed */
    char *stops[PV_SCHED_MAX_STOPS]; /* owned: stop sequences */
    int n_stops;                     /* how many */
    int n_tools;                     /* tools offered to the model (0: none, or tool_choice none) */
    pv_gram_t *gram;                 /* owned: the output's constraint (a forced call, response_format), or NULL */
    int forced_call;                 /* gram is a forced tool call */
} pv_api_req_t;

/* Frees what a parser allocated; accepts a zeroed struct, leaves one. */
void pv_api_req_close(pv_api_req_t *r);

#endif
