/* toolcall.h - the model's tool-call syntax in generated text -> structured
 * tool calls, as the text streams in.
 *
 * Families (pv_tc_detect picks one from the chat template's text):
 *   hermes   <tool_call>{"name": N, "arguments": {...}}</tool_call>, anywhere,
 *            as many as the model writes (Qwen 2.5/3, Hermes, SmolLM3...)
 *   llama3   the whole output is {"name": N, "parameters": {...}}, optionally
 *            after <|python_tag|> (Llama 3.1-3.3's JSON tool calls)
 *   mistral  [TOOL_CALLS][{"name": N, "arguments": {...}}, ...]; the marker is
 *            a control token that decodes to nothing, so an output that
 *            starts with the array counts too
 *   json     the documented syntax of prompt.h's tools block: an output that
 *            is {"name": N, "arguments": {...}} (or an array of them), or such
 *            an object starting with {"name" after some text
 * Every family takes "arguments" or "parameters", as an object or as a string
 * holding one; llama3 and json also take the other's triggers, since models
 * mix them up.
 *
 * Text before a call is ordinary text. While streaming, text that may be the
 * start of a call (a prefix of a marker, a JSON value not yet closed) is held
 * back until it is one or cannot be; whatever does not turn into a valid call
 * (malformed JSON, no "name", an unclosed call at the end) comes out as the
 * text it was. Bytes are passed through unchanged.
 *
 * Ownership: pv_tc_new returns a parser the caller frees with pv_tc_free.
 * Names and arguments handed to the sink are borrowed for the call. */
#ifndef PV_TOOLCALL_H
#define PV_TOOLCALL_H

#include <stddef.h>

typedef enum {
    PV_TC_JSON = 0, /* the documented generic syntax */
    PV_TC_HERMES,
    PV_TC_LLAMA3,
    PV_TC_MISTRAL,
    PV_TC_COUNT
} pv_tc_family_t;

#define PV_TC_MAX_CALL (1u << 20) /* bytes of one call held back at most; longer: text */

/* Where the parser's output goes (ud: the caller's). */
typedef struct {
    void (*text)(void *ud, const char *text, size_t len);          /* ordinary text, in order */
    void (*call)(void *ud, const char *name, const char *arguments); /* a call; arguments as compact JSON */
    void *ud;
} pv_tc_sink_t;

typedef struct pv_tc pv_tc_t;

pv_tc_family_t pv_tc_detect(const char *chat_template); /* NULL: json */
const char *pv_tc_family_name(pv_tc_family_t f);

pv_tc_t *pv_tc_new(pv_tc_family_t f); /* NULL on OOM */
void pv_tc_free(pv_tc_t *p);          /* accepts NULL */

/* Feeds the next len bytes of output; what is decided goes to the sink. 0, or
 * PV_ENOMEM (the held-back text is then lost). */
int pv_tc_feed(pv_tc_t *p, const char *text, size_t len, const pv_tc_sink_t *sink);
/* The output ended: whatever is held back is decided (a call or text). */
int pv_tc_finish(pv_tc_t *p, const pv_tc_sink_t *sink);
int pv_tc_n_calls(const pv_tc_t *p); /* calls emitted so far */

#endif
