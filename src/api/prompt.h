/* prompt.h - chat messages -> the prompt text a model was trained on.
 *
 * Built-in formats, chosen from the GGUF's tokenizer.chat_template (until the
 * template engine arrives):
 *   chatml  template contains "<|im_start|>" (Qwen, Hermes, SmolLM...):
 *           <|im_start|>ROLE\nTEXT<|im_end|>\n ... <|im_start|>assistant\n
 *   llama3  contains "<|start_header_id|>":
 *           <|start_header_id|>ROLE<|end_header_id|>\n\nTEXT<|eot_id|> ... assistant header
 *   phi3    contains "<|user|>": <|system|>\nTEXT<|end|>\n<|user|>\nTEXT<|end|>\n<|assistant|>\n
 *   llama2  contains "[INST]": [INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ASSISTANT </s><s>[INST] ...
 *   plain   no template (or an unknown one):
 *           System: TEXT\nUser: TEXT\nAssistant: TEXT\n ... Assistant:
 *           with "\nUser:" as an implicit stop sequence.
 * Templated formats are tokenized with special-token parsing; plain is not.
 *
 * Tool definitions (OpenAI's "tools") are, until the template engine renders
 * them the model's own way, one block of system text (pv_prompt_tools_text):
 *   # Tools
 *
 *   You may call these functions. To call one, answer with a JSON object
 *   {"name": NAME, "arguments": {...}} and nothing else.
 *
 *   - NAME: DESCRIPTION
 *     parameters: SCHEMA (compact JSON)
 *   ... */
#ifndef PV_PROMPT_H
#define PV_PROMPT_H

#include <stddef.h>

typedef enum {
    PV_FMT_PLAIN = 0,
    PV_FMT_CHATML,
    PV_FMT_LLAMA3,
    PV_FMT_PHI3,
    PV_FMT_LLAMA2,
    PV_FMT_COUNT
} pv_prompt_fmt_t;

typedef enum { PV_ROLE_SYSTEM = 0, PV_ROLE_USER, PV_ROLE_ASSISTANT } pv_role_t;

typedef struct {
    pv_role_t role;   /* who speaks */
    const char *text; /* borrowed, nul-terminated */
} pv_chat_msg_t;

typedef struct {
    const char *name;        /* borrowed, nul-terminated */
    const char *description; /* borrowed; NULL: none */
    const char *parameters;  /* borrowed: the JSON Schema as compact JSON text; NULL: none */
} pv_prompt_tool_t;

pv_prompt_fmt_t pv_prompt_detect(const char *chat_template); /* NULL: plain */
const char *pv_prompt_fmt_name(pv_prompt_fmt_t f);
int pv_prompt_fmt_special(pv_prompt_fmt_t f);     /* 1: tokenize with special-token parsing */
const char *pv_prompt_fmt_stop(pv_prompt_fmt_t f); /* implicit stop sequence, or NULL */

/* Renders the conversation (system text may be NULL) and the opening of the
 * assistant's turn. Returns an owned string (free()), NULL on OOM. */
char *pv_prompt_render(pv_prompt_fmt_t f, const char *system, const pv_chat_msg_t *msgs, int n);

/* The tools block above as an owned string (free()), NULL on OOM. n >= 1. */
char *pv_prompt_tools_text(const pv_prompt_tool_t *tools, int n);

#endif
