/* chat.h - a conversation (Hugging Face's message shape) -> the prompt text,
 * with the model's own chat template or, without one, a built-in format.
 *
 * The API modules (api/anthropic.c, api/openai.c) normalise their requests to
 * the shape Hugging Face's apply_chat_template takes, and this module renders it:
 *   messages  [{role: "system"|"user"|"assistant"|"tool", content: STRING,
 *               tool_calls: [{id, type: "function", function: {name, arguments: OBJECT}}]   (assistant),
 *               tool_call_id, name                                                       (tool)}]
 *   tools     [{type: "function", function: {name, description, parameters: SCHEMA}}] or NULL
 *
 * With a template (tokenizer.chat_template, or --chat-template), the jinja
 * engine renders it with messages, tools, add_generation_prompt = true,
 * bos_token and eos_token (the vocabulary's texts) and documents = null.
 * What the template cannot render would be dropped silently, or refused, so
 * it goes in as text ("flattened"). pv_chat_new finds out by rendering small
 * probe conversations (pv_chat_caps) whether the template renders
 *   - tool definitions: if not, the tools are the documented block of
 *     prompt.h (pv_prompt_tools_text), joined to a leading system message (or
 *     made one), or, when the template takes no system text (Gemma's raises
 *     "System role not supported"), opening the first user message (or made one);
 *   - an assistant's tool calls: if not, they become text in that block's
 *     syntax, {"name": NAME, "arguments": {...}} lines after its text;
 *   - tool results: if not, each becomes a user message "[tool_result] TEXT";
 *     results that follow one another, and a user message right after them,
 *     are joined (blank lines between) into one user turn, since templates
 *     may insist that roles alternate.
 * Each is flattened on its own: a template that renders calls and results but
 * never the definitions (DeepSeek-R1's) keeps its own format for those.
 * Messages flattening does not change go to the template as given.
 * Without a template, the built-in formats of prompt.h render the conversation
 * with all of it flattened (system text in their own place).
 *
 * Tokenizing the result: pv_chat_tok_flags. Templated prompts carry special
 * tokens' text (<|im_start|>...), so they are tokenized with PV_TOK_SPECIAL;
 * BOS is added when the vocabulary asks for it, unless the rendered text
 * already begins with the BOS text (templates that write {{ bos_token }}),
 * as llama.cpp does, so that there is never a double BOS.
 *
 * Ownership: a pv_chat_t copies what it needs from the vocabulary and the
 * template source. It is read-only after pv_chat_new, so renders may run on
 * several threads at once. */
#ifndef PV_CHAT_H
#define PV_CHAT_H

#include <jansson.h>
#include <stddef.h>
#include <time.h>

#include "api/prompt.h"
#include "api/toolcall.h"
#include "tok/vocab.h"

typedef struct pv_chat pv_chat_t;

/* pv_chat_caps: what the template renders itself (probed at pv_chat_new; see above). */
#define PV_CHAT_RENDERS_TOOLS 1u /* tool definitions ("tools") */
#define PV_CHAT_RENDERS_CALLS 2u   /* an assistant's tool_calls, with their arguments */
#define PV_CHAT_RENDERS_RESULTS 4u /* the content of a "tool" message */
#define PV_CHAT_TAKES_SYSTEM 8u    /* a system message's text (the built-in formats too) */

#define PV_CHAT_BUILTIN 1u /* pv_chat_new: use only the built-in format detected from the template text */

/* src: the template source (NULL: none, the plain format); v may be NULL
 * (no BOS/EOS texts). 0, or a negative PV_E* with err: the template does not
 * parse (retry with PV_CHAT_BUILTIN to fall back), or out of memory. */
int pv_chat_new(const char *src, const pv_vocab_t *v, unsigned flags, pv_chat_t **out, char *err, size_t errlen);
void pv_chat_free(pv_chat_t *c); /* accepts NULL */

int pv_chat_templated(const pv_chat_t *c);         /* 1: the jinja template renders */
pv_prompt_fmt_t pv_chat_fmt(const pv_chat_t *c);   /* the built-in format (used when not templated) */
unsigned pv_chat_caps(const pv_chat_t *c);         /* PV_CHAT_RENDERS_TOOLS | ... (below) */
pv_tc_family_t pv_chat_tool_family(const pv_chat_t *c); /* the tool-call syntax to parse from the output */
const char *pv_chat_stop(const pv_chat_t *c);      /* the implicit stop sequence, or NULL */
const char *pv_chat_describe(const pv_chat_t *c);  /* "jinja template (renders tools: yes, ...)" or "built-in chatml", for logs */

/* Fixes the clock strftime_now() formats (configuration, e.g. PENSIEVE_NOW;
 * without it, the current local time). Call before sharing c between threads. */
void pv_chat_set_clock(pv_chat_t *c, const struct tm *now);

/* What a client may add to a templated render, the way Hugging Face's
 * apply_chat_template takes them: add_generation_prompt, documents, and extra
 * template variables (kwargs) merged over the defaults (bos_token, eos_token,
 * add_generation_prompt, documents), so that kwargs win. kwargs may not name
 * "messages" or "tools". documents are client text like messages (guarded);
 * kwargs are the template's configuration and go in as given. The built-in
 * formats ignore all three: they always open the assistant's turn. */
typedef struct {
    int add_generation_prompt; /* 1: the template opens the assistant's turn */
    const json_t *documents;   /* borrowed: HF's documents list, or NULL (null in the template) */
    const json_t *kwargs;      /* borrowed: an object of extra template variables, or NULL */
    int verbatim;              /* 1: messages and tools go to the template exactly as given, nothing
                                  flattened, tools even when empty (PV_EINVAL without a template) */
} pv_chat_opts_t;

/* Renders messages (a JSON array, borrowed) and tools (an array or NULL,
 * borrowed) into *out (owned, free()) with add_generation_prompt = true.
 * 0; PV_EINVAL with err for a 400 (the template's own message when it fails
 * or hits a limit); PV_ENOMEM. */
int pv_chat_render(const pv_chat_t *c, const json_t *messages, const json_t *tools, char **out, char *err,
                   size_t errlen);

/* The same with the client's options (o may be NULL: pv_chat_render's defaults). */
int pv_chat_render_opts(const pv_chat_t *c, const json_t *messages, const json_t *tools, const pv_chat_opts_t *o,
                        char **out, char *err, size_t errlen);

/* A rendered prompt as the text it stands for: the framing that marks client
 * text (see pv_chat_tokenize) removed, in place. Returns the new length. */
size_t pv_chat_unframe(char *prompt);

/* pv_tokenize flags for a rendered prompt (see above). */
unsigned pv_chat_tok_flags(const pv_chat_t *c, const char *prompt);

/* Tokenizes a prompt of pv_chat_render with flags (pv_chat_tok_flags): the
 * client's strings went in with any control-token text framed, and here that
 * text is read as plain text, so a client cannot inject <|im_end|> and the
 * like; everything the template wrote is read with the flags given. Same
 * return convention as pv_tokenize. */
int pv_chat_tokenize(const pv_chat_t *c, const pv_vocab_t *v, const char *prompt, unsigned flags, int32_t *ids,
                     int n_max);

#endif
