/* openai.h - the OpenAI API: /v1/chat/completions and /v1/completions request
 * JSON -> a generation request, and the response shapes (completion objects,
 * stream chunks, errors).
 *
 * Parsing is strict about what it uses (types, ranges, n == 1) and ignores
 * what it cannot honour harmlessly (user, presence/frequency penalties,
 * logit_bias, parallel_tool_calls...). "response_format" json_object and
 * json_schema, and tool_choice "required" or a named function, constrain the
 * output (api/constrain.h, model/grammar.h). Chat messages and tools become Hugging
 * Face's shape and are rendered by chat.h (the model's template, or a built-in format).
 * Everything here is pure: no I/O, no model. JSON values returned are new
 * references (json_decref them). */
#ifndef PV_OPENAI_H
#define PV_OPENAI_H

#include <jansson.h>
#include <stddef.h>

#include "chat/chat.h"
#include "base/err.h"
#include "api/request.h"
#include "model/sample.h"
#include "sched/sched.h"

typedef enum {
    PV_OAI_CHAT = 0, /* /v1/chat/completions: messages, object "chat.completion" */
    PV_OAI_TEXT,     /* /v1/completions: a prompt string, object "text_completion" */
    PV_OAI_COUNT
} pv_oai_kind_t;

#define PV_OAI_TEXT_MAX_TOKENS 16 /* /v1/completions' default max_tokens, as OpenAI's */

typedef pv_api_req_t pv_oai_req_t; /* gram: response_format or a forced call (tool_choice "required" or named) */

typedef struct {
    char msg[PV_ERRLEN]; /* what is wrong, for a 400 invalid_request_error */
    char param[64];      /* the offending field ("messages.0.content"), "" if none */
} pv_oai_err_t;

/* Parses a request body of the given kind. 0, or -1 with err filled. */
int pv_oai_parse(const char *body, size_t len, pv_oai_kind_t kind, const pv_chat_t *chat, pv_oai_req_t *out,
                 pv_oai_err_t *err);

/* POST /apply-template (llama.cpp's route): a chat-completions body's messages,
 * tools, chat_template_kwargs, documents and add_generation_prompt rendered
 * exactly as pv_oai_parse renders them for generation, into *prompt (owned;
 * still framed: see pv_chat_unframe). Sampling fields are ignored, "model" is
 * optional. 0, or -1 with err filled (a template error: param "messages"). */
int pv_oai_apply_template(const char *body, size_t len, const pv_chat_t *chat, char **prompt, pv_oai_err_t *err);

/* {"error":{"message","type","param","code"}} with the type and code OpenAI
 * uses for the HTTP status (400 invalid_request_error, 401 invalid_api_key,
 * 429 rate_limit_exceeded, 503 server_error...). param may be NULL or "". */
json_t *pv_oai_error(int status, const char *msg, const char *param);
char *pv_oai_error_body(int status, const char *msg, const char *param); /* the same, compact (owned) */

const char *pv_oai_finish_reason(pv_stop_t stop); /* "length" for max tokens, else "stop" ("tool_calls": the caller's) */

/* The usage object; prompt_tokens_details.cached_tokens = n_cached. */
json_t *pv_oai_usage(int n_prompt, int n_cached, int n_out);

/* What every object of one response repeats. */
typedef struct {
    pv_oai_kind_t kind;  /* chat or text */
    const char *id;      /* "chatcmpl-..." / "cmpl-..." (borrowed) */
    long long created;   /* Unix seconds */
    const char *model;   /* echoed (borrowed) */
    int include_usage;   /* stream chunks carry "usage": null until the usage chunk */
} pv_oai_meta_t;

/* The non-streaming response. */
json_t *pv_oai_response(const pv_oai_meta_t *m, const char *text, size_t len, const char *finish, int n_in,
                        int n_cached, int n_out);

/* A stream chunk: chat's first (role) chunk with first = 1, text chunks with
 * text, the last with finish != NULL (text may be NULL: an empty delta). */
json_t *pv_oai_chunk(const pv_oai_meta_t *m, int first, const char *text, size_t len, const char *finish);

/* A tool call {id, type: "function", function: {name, arguments (JSON text)}}. */
json_t *pv_oai_tool_call(const char *id, const char *name, const char *args);

/* A stream chunk with one whole tool call: delta.tool_calls [{index, id, type, function}]. */
json_t *pv_oai_call_chunk(const pv_oai_meta_t *m, int index, const char *id, const char *name, const char *args);

/* The usage chunk after the last one (include_usage): empty choices. */
json_t *pv_oai_usage_chunk(const pv_oai_meta_t *m, int n_in, int n_cached, int n_out);

/* A fresh id ("chatcmpl-" or "cmpl-" and 24 hex digits) into buf (at least 40 bytes). */
void pv_oai_new_id(pv_oai_kind_t kind, char *buf, size_t len);

#endif
