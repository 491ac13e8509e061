/* anthropic.h - the Anthropic Messages API: request JSON -> a generation
 * request, and the response shapes (message object, SSE events, errors).
 *
 * Parsing is strict about what it uses (types, required fields, non-empty
 * content) and ignores everything else (unknown fields, cache_control,
 * metadata, thinking, server tools...). Everything here is pure: no I/O, no model.
 * JSON values returned are new references (json_decref them). */
#ifndef PV_ANTHROPIC_H
#define PV_ANTHROPIC_H

#include <jansson.h>
#include <stddef.h>

#include "chat/chat.h"
#include "model/grammar.h"
#include "model/sample.h"
#include "sched/sched.h"

typedef struct {
    char model[256];                  /* the requested model name, echoed back */
    char *prompt;                     /* owned: the rendered prompt */
    int max_tokens;                   /* as requested (clamped later to the context); 0 if absent */
    int stream;                       /* "stream": true */
    pv_sampler_params_t sp;           /* temperature, top_p, top_k, seed (extension) */
    char *stops[PV_SCHED_MAX_STOPS];  /* owned: stop_sequences */
    int n_stops;                      /* how many */
    int n_tools;                      /* tools offered to the model (0: none, or tool_choice none) */
    pv_gram_t *gram;                  /* owned: a forced tool call's grammar (tool_choice any/tool), else NULL */
} pv_anth_req_t;

/* Parses a /v1/messages body (count_only: a count_tokens body, which needs no
 * max_tokens) and renders its prompt with chat (see chat.h for the message
 * shape the content blocks become). 0, or -1 with a message for a 400
 * invalid_request_error (a failing chat template's message included). */
int pv_anth_parse(const char *body, size_t len, const pv_chat_t *chat, int count_only, pv_anth_req_t *out,
                  char *err, size_t errlen);
void pv_anth_req_close(pv_anth_req_t *r); /* frees what parse allocated; accepts a zeroed struct */

/* {"type":"error","error":{"type":type,"message":msg}} as a compact string (owned). */
char *pv_anth_error_body(const char *type, const char *msg);

const char *pv_anth_stop_reason(pv_stop_t stop); /* "end_turn", "max_tokens", "stop_sequence" ("tool_use": the caller's) */

/* The usage object: n_prompt tokens of which n_cached came from the prefix cache. */
json_t *pv_anth_usage(int n_prompt, int n_cached, int n_out);

/* The non-streaming response object. */
json_t *pv_anth_message(const char *id, const char *model, const char *text, size_t len, const char *stop_reason,
                        const char *stop_sequence, int n_in, int n_cached, int n_out);

/* A tool_use content block {type, id, name, input} (args: the input as JSON text). */
json_t *pv_anth_tool_use(const char *id, const char *name, const char *args);

/* The message object of message_start (empty content, stop_reason null). */
json_t *pv_anth_message_start(const char *id, const char *model, int n_in);

/* A fresh "msg_..." id into buf (at least 32 bytes). */
void pv_anth_new_id(char *buf, size_t len);

#endif
