/* constrain.h - what an API request asks of the output's shape, as a grammar
 * (model/grammar.h) the scheduler decodes under.
 *
 * A forced tool call (Anthropic tool_choice {"type":"tool","name":N} or
 * {"type":"any"}; OpenAI tool_choice "required" or a named function) makes
 * the whole output {"name": N, "arguments": A}: N one of the allowed tools,
 * A matching the input schema that N picks. We constrain to this one layout,
 * rather than prefilling each model's native call syntax, because it is the
 * same for every model and template (the server reads it back with the
 * generic JSON tool-call parser, api/toolcall.h's "json" family) and the
 * name, written first, selects the schema the arguments must follow. Models
 * trained on Hermes, Llama 3 or Mistral calls write this same JSON object
 * inside their markers, so the constraint asks for what they already know.
 *
 * Pure: no I/O, no model. */
#ifndef PV_CONSTRAIN_H
#define PV_CONSTRAIN_H

#include <jansson.h>
#include <stddef.h>

#include "model/grammar.h"

/* The forced-call grammar over tools in Hugging Face's shape
 * ([{"type":"function","function":{"name","parameters"}}], borrowed); only:
 * the one tool allowed, NULL for any of them. 0, or -1 with a message for a
 * 400 (an unknown name, a schema constrained decoding cannot honour). */
int pv_constrain_tool_call(const json_t *tools, const char *only, pv_gram_t **out, char *err, size_t errlen);

#endif
