/* jinja.h - chat template interpreter: the subset of Jinja2 that real
 * `tokenizer.chat_template`s use, rendered the way Hugging Face transformers
 * renders them (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
 * loopcontrols, the {% generation %} tag, a json.dumps tojson, the
 * raise_exception and strftime_now globals).
 *
 * Supported: {{ }}, {% %}, {# #}, whitespace control (- and +), raw blocks;
 * if/elif/else, for (tuple targets, inline `if`, else, loop.*, break and
 * continue), set (names, tuples, namespace attributes, block set), macro
 * with defaults and recursion, filter blocks; Python-style expressions with
 * literals, slices, calls, filters and tests; the common string, dict and
 * list methods. Template text is trusted no more than user input: hostile
 * templates fail with an error, bounded by pv_jinja_limits_t.
 *
 * Ownership: pv_jinja_parse() returns a template the caller frees with
 * pv_jinja_free(). A parsed template is read-only while it renders, so one
 * template may render on several threads at once. pv_jinja_render() returns
 * a malloc'd string the caller frees. */
#ifndef PV_CHAT_JINJA_H
#define PV_CHAT_JINJA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct pv_jinja pv_jinja_t;

/* How a render failed, for callers that treat the kinds differently. */
typedef enum {
    PV_JINJA_OK,        /* no error */
    PV_JINJA_SYNTAX,    /* the template does not parse */
    PV_JINJA_RUNTIME,   /* a Python-level error: undefined, TypeError, ... */
    PV_JINJA_RAISED,    /* raise_exception(msg): err holds msg exactly */
    PV_JINJA_LIMIT,     /* a limit below was hit */
    PV_JINJA_COUNT
} pv_jinja_error_t;

/* Bounds on one render; zero fields take the defaults. */
typedef struct pv_jinja_limits {
    size_t max_output;   /* bytes of rendered text (default 16 MiB) */
    size_t max_memory;   /* bytes of working memory (default 256 MiB) */
    uint64_t max_steps;  /* loop iterations + macro calls (default 1,000,000) */
    int max_depth;       /* nested evaluation depth, macro recursion included (default 400) */
} pv_jinja_limits_t;

typedef struct pv_jinja_opts {
    pv_jinja_limits_t limits; /* zero: defaults */
    int has_now;              /* 1: strftime_now formats `now`, else the current local time */
    struct tm now;            /* the fixed clock when has_now */
} pv_jinja_opts_t;

/* Parses src (UTF-8, len bytes). 0, or PV_ECORRUPT with the message in err. */
int pv_jinja_parse(const char *src, size_t len, pv_jinja_t **out, char *err, size_t errlen);
void pv_jinja_free(pv_jinja_t *t); /* accepts NULL */

/* Renders t with vars, a JSON object of template variables (borrowed):
 * messages, tools, add_generation_prompt, bos_token, ... opts may be NULL.
 * 0 with *out (malloc'd, NUL-terminated, owned by the caller) and *out_len;
 * else a negative PV_E* code, the message in err and the kind in *kind
 * (kind may be NULL). */
int pv_jinja_render(const pv_jinja_t *t, const json_t *vars, const pv_jinja_opts_t *opts,
                    char **out, size_t *out_len, pv_jinja_error_t *kind, char *err, size_t errlen);

/* Parses an ISO 8601 local time ("2025-03-07T09:05:00", date alone, or with
 * fractional seconds; a trailing zone is ignored) into tm. 0 or PV_EINVAL. */
int pv_jinja_parse_time(const char *iso, struct tm *tm);

#endif
