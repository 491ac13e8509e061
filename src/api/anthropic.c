/* anthropic.c - Messages API JSON <-> generation requests. */
#include "api/anthropic.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/constrain.h"
#include "base/err.h"

#define BILLING_PREFIX "x-anthropic-billing-header:"
#define MAX_MESSAGES 100000
#define MAX_TOOLS 1024
#define MAX_TOOLS_S "1024"

static int bad(char *err, size_t errlen, const char *fmt, const char *what) {
    snprintf(err, errlen, fmt, what);
    return -1;
}

/* A growing text: content blocks' text joined by newlines. */
typedef struct {
    char *p;  /* owned, nul-terminated (NULL until the first part) */
    size_t n; /* bytes */
} join_t;

static int join_add(join_t *j, const char *t) {
    size_t l = strlen(t);
    char *p = realloc(j->p, j->n + l + 2);
    if (!p) return -1;
    j->p = p;
    if (j->n) p[j->n++] = '\n';
    memcpy(p + j->n, t, l + 1);
    j->n += l;
    return 0;
}

/* tool_result "content": a string, or blocks whose text parts are joined (owned). */
static char *result_text(const json_t *c, int is_error) {
    join_t j = {0};
    int rc = is_error ? join_add(&j, "Error:") : 0;
    if (json_is_string(c)) rc |= join_add(&j, json_string_value(c));
    else if (json_is_array(c)) {
        size_t i;
        const json_t *x;
        json_array_foreach(c, i, x) {
            const char *t = json_string_value(json_object_get(x, "text"));
            if (t) rc |= join_add(&j, t);
        }
    }
    if (!rc && !j.p) j.p = strdup("");
    if (rc) {
        free(j.p);
        return NULL;
    }
    return j.p;
}

/* Appends one Anthropic message (role, content) to msgs in Hugging Face's
 * shape (chat.h): text blocks joined into "content", tool_use blocks as
 * "tool_calls", each tool_result block as a "tool" message before it. names
 * maps tool_use ids to tool names, for the results. 0, or -1 with err. */
static int add_message(json_t *msgs, const char *role, const json_t *c, json_t *names, char *err, size_t errlen,
                       const char *where) {
    if (json_is_string(c)) {
        if (!json_string_length(c)) return bad(err, errlen, "%s: content must be non-empty", where);
        if (json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", role, "content", c)))
            return bad(err, errlen, "%s", "out of memory");
        return 0;
    }
    if (!json_is_array(c)) return bad(err, errlen, "%s: content must be a string or an array of content blocks", where);
    join_t text = {0};
    json_t *calls = json_array(), *results = json_array();
    int rc = calls && results ? 0 : bad(err, errlen, "%s", "out of memory"), n_parts = 0;
    size_t i;
    const json_t *b;
    json_array_foreach(c, i, b) {
        if (rc) break;
        const char *type = json_string_value(json_object_get(b, "type"));
        if (!json_is_object(b)) rc = bad(err, errlen, "%s: each content block must be an object", where);
        else if (!type) rc = bad(err, errlen, "%s: content block without a string \"type\"", where);
        else if (!strcmp(type, "text")) {
            const char *t = json_string_value(json_object_get(b, "text"));
            if (!t) rc = bad(err, errlen, "%s: text block without a string \"text\"", where);
            else if (!*t) rc = bad(err, errlen, "%s: text content blocks must be non-empty", where);
            else if (join_add(&text, t)) rc = bad(err, errlen, "%s", "out of memory");
            n_parts++;
        } else if (!strcmp(type, "tool_use")) {
            const json_t *name = json_object_get(b, "name"), *id = json_object_get(b, "id");
            const json_t *input = json_object_get(b, "input");
            if (!json_is_string(name)) {
                rc = bad(err, errlen, "%s: tool_use block without a string \"name\"", where);
                break;
            }
            json_t *args = json_is_object(input) ? json_incref((json_t *)input) : json_object();
            json_t *call = json_pack("{s:O?, s:s, s:{s:O, s:o}}", "id", json_is_string(id) ? id : NULL, "type",
                                     "function", "function", "name", name, "arguments", args);
            if (!call || json_array_append_new(calls, call)) rc = bad(err, errlen, "%s", "out of memory");
            if (json_is_string(id)) json_object_set(names, json_string_value(id), (json_t *)name);
            n_parts++;
        } else if (!strcmp(type, "tool_result")) {
            const json_t *id = json_object_get(b, "tool_use_id");
            char *t = result_text(json_object_get(b, "content"), json_is_true(json_object_get(b, "is_error")));
            const json_t *name = json_is_string(id) ? json_object_get(names, json_string_value(id)) : NULL;
            json_t *m = t ? json_pack("{s:s, s:O?, s:O?, s:s}", "role", "tool", "tool_call_id",
                                      json_is_string(id) ? id : NULL, "name", name, "content", t)
                          : NULL;
            free(t);
            if (!m || json_array_append_new(results, m)) rc = bad(err, errlen, "%s", "out of memory");
            n_parts++;
        } /* images, documents, thinking...: not for this model; ignored */
    }
    if (!rc && n_parts == 0) rc = bad(err, errlen, "%s: content must be non-empty", where);
    if (!rc && json_array_extend(msgs, results)) rc = bad(err, errlen, "%s", "out of memory");
    if (!rc && (text.p || json_array_size(calls))) {
        json_t *m = json_pack("{s:s, s:s}", "role", role, "content", text.p ? text.p : "");
        if (m && json_array_size(calls)) json_object_set(m, "tool_calls", calls);
        if (!m || json_array_append_new(msgs, m)) rc = bad(err, errlen, "%s", "out of memory");
    }
    free(text.p);
    json_decref(calls);
    json_decref(results);
    return rc;
}

/* tool_choice {"type":"any"} or {"type":"tool","name":N}: the output is
 * constrained to a call (api/constrain.h) into *gram. 0, or -1 with err. */
static int forced_call(const json_t *tc, const json_t *hf, pv_gram_t **gram, char *err, size_t errlen) {
    const char *choice = json_string_value(json_object_get(tc, "type"));
    if (!choice || (strcmp(choice, "any") && strcmp(choice, "tool"))) return 0;
    const char *only = NULL;
    if (!strcmp(choice, "tool") && !(only = json_string_value(json_object_get(tc, "name"))))
        return bad(err, errlen, "%s: field required (a string)", "tool_choice.name");
    return pv_constrain_tool_call(hf, only, gram, err, errlen);
}

/* "tools" (unless tool_choice is {"type":"none"}) in Hugging Face's shape into
 * *out (NULL when none), and the forced call's grammar into *gram (NULL when
 * the choice is free). Server tools (a "type" other than "custom") are left
 * out: this model cannot run them. 0, or -1 with err. */
static int parse_tools(const json_t *root, json_t **out, pv_gram_t **gram, char *err, size_t errlen) {
    *out = NULL;
    const json_t *tools = json_object_get(root, "tools"), *tc = json_object_get(root, "tool_choice");
    if (!tools || json_is_null(tools)) return forced_call(tc, NULL, gram, err, errlen);
    if (!json_is_array(tools) || json_array_size(tools) > MAX_TOOLS)
        return bad(err, errlen, "tools: must be an array of at most %s tools", MAX_TOOLS_S);
    const char *choice = json_string_value(json_object_get(tc, "type"));
    if (!json_array_size(tools) || (choice && !strcmp(choice, "none"))) return 0;
    json_t *hf = json_array();
    if (!hf) return bad(err, errlen, "%s", "out of memory");
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const char *type = json_string_value(json_object_get(t, "type"));
        const json_t *name = json_object_get(t, "name"), *desc = json_object_get(t, "description");
        const json_t *schema = json_object_get(t, "input_schema");
        if (!json_is_object(t) || !json_is_string(name)) {
            json_decref(hf);
            snprintf(err, errlen, "tools.%zu: each tool must be an object with a string \"name\"", i);
            return -1;
        }
        if (type && strcmp(type, "custom")) continue;
        json_t *fn = json_pack("{s:O, s:O?, s:O?}", "name", name, "description", json_is_string(desc) ? desc : NULL,
                               "parameters", json_is_object(schema) ? schema : NULL);
        /* no schema: an object without properties */
        if (fn && !json_is_object(schema)) json_object_set_new(fn, "parameters", json_pack("{s:s, s:{}}", "type", "object", "properties"));
        if (!fn || json_array_append_new(hf, json_pack("{s:s, s:o}", "type", "function", "function", fn))) {
            json_decref(hf);
            return bad(err, errlen, "%s", "out of memory");
        }
    }
    if (forced_call(tc, hf, gram, err, errlen)) {
        json_decref(hf);
        return -1;
    }
    if (json_array_size(hf)) *out = hf;
    else json_decref(hf);
    return 0;
}

/* Top-level "system": a string or text blocks; the first billing-header block is dropped. */
static char *system_text(const json_t *sys, char *err, size_t errlen) {
    if (!sys || json_is_null(sys)) return NULL;
    if (json_is_string(sys)) return json_string_length(sys) ? strdup(json_string_value(sys)) : NULL;
    if (!json_is_array(sys)) {
        bad(err, errlen, "%s: must be a string or an array of text blocks", "system");
        return NULL;
    }
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f) return NULL;
    int n = 0, dropped = 0;
    size_t i;
    const json_t *b;
    json_array_foreach(sys, i, b) {
        const char *t = json_string_value(json_object_get(b, "text"));
        if (!json_is_object(b) || !t) {
            fclose(f);
            free(out);
            bad(err, errlen, "%s: each block must be a text block", "system");
            return NULL;
        }
        if (!dropped && !strncmp(t, BILLING_PREFIX, strlen(BILLING_PREFIX))) {
            dropped = 1; /* changes every run: it would defeat prefix reuse */
            continue;
        }
        if (!*t) continue;
        fprintf(f, "%s%s", n++ ? "\n" : "", t);
    }
    fclose(f);
    if (n == 0) {
        free(out);
        return NULL;
    }
    return out;
}

static int get_number(const json_t *o, const char *key, double lo, double hi, float *out, char *err, size_t errlen) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bad(err, errlen, "%s: must be a number", key);
    double d = json_number_value(v);
    if (d < lo || d > hi) return bad(err, errlen, "%s: out of range", key);
    *out = (float)d;
    return 0;
}

int pv_anth_parse(const char *body, size_t len, const pv_chat_t *chat, int count_only, pv_anth_req_t *out,
                  char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "invalid JSON body: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        return -1;
    }
    int rc = -1;
    json_t *msgs = NULL, *names = NULL, *tools = NULL;
    char *system = NULL;
    size_t n_msgs = 0;
    if (!json_is_object(root)) {
        bad(err, errlen, "%s", "the request body must be a JSON object");
        goto done;
    }
    /* model */
    const json_t *model = json_object_get(root, "model");
    if (!json_is_string(model)) {
        bad(err, errlen, "%s: field required (a string)", "model");
        goto done;
    }
    snprintf(out->model, sizeof out->model, "%s", json_string_value(model));
    /* max_tokens */
    const json_t *mt = json_object_get(root, "max_tokens");
    if (!count_only || mt) {
        if (!json_is_integer(mt)) {
            bad(err, errlen, "%s: field required (a positive integer)", "max_tokens");
            goto done;
        }
        json_int_t v = json_integer_value(mt);
        if (v < 1) {
            bad(err, errlen, "%s: must be at least 1", "max_tokens");
            goto done;
        }
        out->max_tokens = v > (1 << 30) ? 1 << 30 : (int)v;
    }
    /* sampling: the Anthropic defaults are plain sampling at temperature 1 */
    out->sp = pv_sampler_plain();
    if (get_number(root, "temperature", 0, 2, &out->sp.temperature, err, errlen) ||
        get_number(root, "top_p", 0, 1, &out->sp.top_p, err, errlen))
        goto done;
    const json_t *tk = json_object_get(root, "top_k");
    if (tk && !json_is_null(tk)) {
        if (!json_is_integer(tk) || json_integer_value(tk) < 0) {
            bad(err, errlen, "%s: must be a non-negative integer", "top_k");
            goto done;
        }
        out->sp.top_k = json_integer_value(tk) > (1 << 30) ? 1 << 30 : (int)json_integer_value(tk);
    }
    const json_t *seed = json_object_get(root, "seed"); /* extension: reproducible sampling */
    if (json_is_integer(seed)) out->sp.seed = (uint64_t)json_integer_value(seed);
    /* stream */
    const json_t *st = json_object_get(root, "stream");
    if (st && !json_is_null(st)) {
        if (!json_is_boolean(st)) {
            bad(err, errlen, "%s: must be a boolean", "stream");
            goto done;
        }
        out->stream = json_is_true(st);
    }
    /* stop_sequences */
    const json_t *ss = json_object_get(root, "stop_sequences");
    if (ss && !json_is_null(ss)) {
        if (!json_is_array(ss) || json_array_size(ss) > PV_SCHED_MAX_STOPS - 1) {
            snprintf(err, errlen, "stop_sequences: must be an array of at most %d strings", PV_SCHED_MAX_STOPS - 1);
            goto done;
        }
        size_t i;
        const json_t *x;
        json_array_foreach(ss, i, x) {
            size_t l = json_string_length(x);
            if (!json_is_string(x) || l == 0 || l > PV_SCHED_MAX_STOP_LEN) {
                snprintf(err, errlen, "stop_sequences: each must be a non-empty string of at most %d bytes",
                         PV_SCHED_MAX_STOP_LEN);
                goto done;
            }
            if (!(out->stops[out->n_stops++] = strdup(json_string_value(x)))) goto done;
        }
    }
    /* system */
    err[0] = 0;
    system = system_text(json_object_get(root, "system"), err, errlen);
    if (!system && err[0]) goto done;
    /* messages */
    const json_t *ms = json_object_get(root, "messages");
    if (!json_is_array(ms)) {
        bad(err, errlen, "%s: field required (an array of messages)", "messages");
        goto done;
    }
    n_msgs = json_array_size(ms);
    if (n_msgs == 0 || n_msgs > MAX_MESSAGES) {
        bad(err, errlen, "%s: must hold at least one message", "messages");
        goto done;
    }
    if (parse_tools(root, &tools, &out->gram, err, errlen)) goto done;
    out->forced_call = out->gram != NULL;
    msgs = json_array();
    names = json_object();
    if (!msgs || !names || (system && json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system)))) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_msgs; i++) {
        const json_t *m = json_array_get(ms, i);
        char where[48];
        snprintf(where, sizeof where, "messages.%zu", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role) {
            bad(err, errlen, "%s: each message must be an object with a string \"role\"", where);
            goto done;
        }
        if (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system")) {
            snprintf(err, errlen, "%s.role: must be \"user\", \"assistant\" or \"system\"", where);
            goto done;
        }
        const json_t *c = json_object_get(m, "content");
        if (!c) {
            bad(err, errlen, "%s.content: field required", where);
            goto done;
        }
        if (add_message(msgs, role, c, names, err, errlen, where)) goto done;
    }
    out->n_tools = (int)json_array_size(tools);
    int r = pv_chat_render(chat, msgs, tools, &out->prompt, err, errlen);
    if (r) {
        if (r == PV_ENOMEM) snprintf(err, errlen, "out of memory");
        goto done;
    }
    rc = 0;
done:
    json_decref(msgs);
    json_decref(names);
    json_decref(tools);
    free(system);
    json_decref(root);
    if (rc) pv_api_req_close(out);
    return rc;
}

char *pv_anth_error_body(const char *type, const char *msg) {
    json_t *j = json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", type, "message", msg);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

const char *pv_anth_stop_reason(pv_stop_t stop) {
    switch (stop) {
    case PV_STOP_MAX_TOKENS: return "max_tokens";
    case PV_STOP_SEQUENCE: return "stop_sequence";
    default: return "end_turn";
    }
}

/* Anthropic counts prompt tokens read from the cache apart from the others:
 * input_tokens + cache_read_input_tokens is the whole prompt. */
json_t *pv_anth_usage(int n_prompt, int n_cached, int n_out) {
    return json_pack("{s:i, s:i, s:i, s:i}", "input_tokens", n_prompt - n_cached, "output_tokens", n_out,
                     "cache_creation_input_tokens", 0, "cache_read_input_tokens", n_cached);
}

json_t *pv_anth_message(const char *id, const char *model, const char *text, size_t len, const char *stop_reason,
                        const char *stop_sequence, int n_in, int n_cached, int n_out) {
    json_t *content = json_array();
    if (len) json_array_append_new(content, json_pack("{s:s, s:s%}", "type", "text", "text", text, len));
    /* "o" steals content and the usage object */
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o}", "id", id, "type", "message", "role", "assistant",
                     "model", model, "content", content, "stop_reason", stop_reason, "stop_sequence",
                     stop_sequence ? json_string(stop_sequence) : json_null(), "usage", pv_anth_usage(n_in, n_cached, n_out));
}

json_t *pv_anth_tool_use(const char *id, const char *name, const char *args) {
    json_t *input = json_loads(args, 0, NULL);
    return json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", id, "name", name, "input",
                     json_is_object(input) ? input : (json_decref(input), json_object()));
}

json_t *pv_anth_message_start(const char *id, const char *model, int n_in) {
    return json_pack("{s:s, s:s, s:s, s:s, s:[], s:n, s:n, s:o}", "id", id, "type", "message", "role", "assistant",
                     "model", model, "content", "stop_reason", "stop_sequence", "usage", pv_anth_usage(n_in, 0, 1));
}

void pv_anth_new_id(char *buf, size_t len) {
    static atomic_ulong counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long n = atomic_fetch_add(&counter, 1);
    snprintf(buf, len, "msg_%08lx%08lx%08lx", (unsigned long)ts.tv_sec & 0xffffffffu,
             (unsigned long)ts.tv_nsec & 0xffffffffu, n & 0xffffffffu);
}
