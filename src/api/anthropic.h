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
#include "api/request.h"
#include "model/sample.h"
#include "sched/sched.h"

typedef pv_api_req_t pv_anth_req_t; /* forced_call: tool_choice any/tool */

/* Parses a /v1/messages body (count_only: a count_tokens body, which needs no
 * max_tokens) and renders its prompt with chat (see chat.h for the message
 * shape the content blocks become). 0, or -1 with a message for a 400
 * invalid_request_error (a failing chat template's message included). */
int pv_anth_parse(const char *body, size_t len, const pv_chat_t *chat, int count_only, pv_anth_req_t *out,
                  char *err, size_t errlen);

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
