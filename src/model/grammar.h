/* grammar.h - constrained decoding: a byte-level automaton for JSON that
 * matches a schema, and the token mask it puts on the logits.
 *
 * A grammar is compiled once per request from a JSON Schema subset:
 *   type      "object", "array", "string", "number", "integer", "boolean",
 *             "null", or an array of them; absent: any JSON value
 *   object    properties, required; additionalProperties is false unless the
 *             schema has no "properties" at all (then keys are free and values
 *             follow additionalProperties, any value by default)
 *   array     items (one schema; absent: any value), minItems, maxItems
 *   string    minLength, maxLength (in characters: an escape or a UTF-8
 *             character counts one)
 *   enum      scalars; const; anyOf / oneOf of schemas that differ in their
 *             JSON type (the first byte picks the alternative)
 *   ignored   annotations: description, title, default, examples, format,
 *             $schema, $id, $comment, $defs, definitions, deprecated,
 *             readOnly, writeOnly, strict
 * Anything else (pattern, minimum, $ref, allOf, uniqueItems...) is refused
 * with a message naming it: the output could not be promised to match.
 * A tool-call grammar is the fixed layout {"name": N, "arguments": A} (the
 * keys in this order, whitespace between tokens as JSON allows) where N is
 * one of the given names and A matches the schema that N picks.
 *
 * The output matched is compact-or-lightly-spaced JSON: no whitespace before
 * the value, at most PV_GRAM_MAX_WS whitespace bytes in each gap, numbers of at most
 * PV_GRAM_MAX_DIGITS digits per part, nesting of at most PV_GRAM_MAX_DEPTH
 * (for "any value"), no \u escapes of NUL or surrogates, valid UTF-8.
 * Every state the automaton can reach has a way to complete (no dead ends).
 *
 * State: pv_gram_state_t is a fixed-size stack of frames, copied by value;
 * feeding bytes never allocates. "done" means the value is complete and
 * nothing may follow (generation ends there); "accepting" means the value may
 * end here (a top-level number could still grow): only then may the model end.
 *
 * Ownership: pv_gram_t is immutable once compiled (share it across threads,
 * free it with pv_gram_free). pv_gram_vocab_t holds every token's bytes in
 * lexicographic order and scratch for pv_gram_mask: one thread at a time. */
#ifndef PV_GRAMMAR_H
#define PV_GRAMMAR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tok/vocab.h"

#define PV_GRAM_MAX_DEPTH 16  /* frames: nesting of objects, arrays and the value inside */
#define PV_GRAM_MAX_WS 16     /* whitespace bytes per gap between tokens of JSON */
#define PV_GRAM_MAX_DIGITS 15 /* digits of an integer part, a fraction (exponents: 3) */
#define PV_GRAM_MAX_PROPS 64  /* declared properties per object */

typedef struct pv_gram pv_gram_t;

typedef struct {
    uint16_t node; /* grammar node this frame matches */
    uint8_t phase; /* where inside the node (per kind) */
    uint8_t ws;    /* whitespace bytes in the current gap */
    uint16_t a, b; /* literal range [a, b) being narrowed; or the chosen child; or UTF-8 bookkeeping */
    uint32_t n;    /* bytes matched of a literal, characters of a string, items of an array, digits */
    uint64_t seen; /* objects: bit i = declared property i was written */
} pv_gram_frame_t;

typedef struct {
    const pv_gram_t *g;                  /* borrowed grammar */
    int depth;                           /* frames in use; 0: done */
    pv_gram_frame_t f[PV_GRAM_MAX_DEPTH]; /* f[depth - 1] is the innermost */
} pv_gram_state_t;

/* Output of a schema (json_object: pv_gram_any_object). 0, or PV_EUNSUPPORTED /
 * PV_EINVAL / PV_ENOMEM with a message naming the offending keyword. */
int pv_gram_from_schema(const json_t *schema, pv_gram_t **out, char *err, size_t errlen);
int pv_gram_any_object(pv_gram_t **out); /* any JSON object; 0 or PV_ENOMEM */
/* {"name": names[i], "arguments": <schemas[i]>}; every schema must describe
 * an object (NULL: an object with no properties). n >= 1, names distinct. */
int pv_gram_tool_call(const char *const *names, const json_t *const *schemas, int n, pv_gram_t **out, char *err,
                      size_t errlen);
void pv_gram_free(pv_gram_t *g); /* accepts NULL */

void pv_gram_start(const pv_gram_t *g, pv_gram_state_t *st);
/* Advances by n bytes: 1, or 0 if some byte is not allowed (st is then undefined). */
int pv_gram_feed(pv_gram_state_t *st, const char *bytes, size_t n);
int pv_gram_accepting(const pv_gram_state_t *st); /* the value may end here */
static inline int pv_gram_done(const pv_gram_state_t *st) { return st->depth == 0; }
void pv_gram_copy(pv_gram_state_t *dst, const pv_gram_state_t *src); /* copies the used frames only */

typedef struct pv_gram_vocab pv_gram_vocab_t;

/* Token bytes of v (control, unknown and unused tokens have none and are
 * never allowed; end-of-generation tokens only where accepting). NULL on OOM. */
pv_gram_vocab_t *pv_gram_vocab_new(const pv_vocab_t *v);
void pv_gram_vocab_free(pv_gram_vocab_t *gv); /* accepts NULL */

/* Sets logits[id] = -INFINITY for every token whose bytes st rejects; returns
 * how many tokens remain allowed. Walks the tokens in byte order, so that a
 * rejected prefix rejects every token that shares it at once. */
int pv_gram_mask(pv_gram_vocab_t *gv, const pv_gram_state_t *st, float *logits);
/* Advances st by token id's bytes: 1, or 0 if the token is not allowed (or is end of generation). */
int pv_gram_feed_token(const pv_gram_vocab_t *gv, pv_gram_state_t *st, int32_t id);

#endif
