/* openai.c - Chat Completions and Completions JSON <-> generation requests. */
#include "api/openai.h"

#include "api/constrain.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_MESSAGES 100000
#define MAX_TOOLS 1024

/* Fills err (param and "param: message") and returns -1. */
static int fail(pv_oai_err_t *e, const char *param, const char *fmt, ...) {
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    char m[PV_ERRLEN - 80];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    if (param) snprintf(e->msg, sizeof e->msg, "%s: %s", param, m);
    else snprintf(e->msg, sizeof e->msg, "%s", m);
    return -1;
}

static int present(const json_t *v) { return v && !json_is_null(v); }

/* An optional number in [lo, hi] into *out. */
static int opt_number(const json_t *root, const char *key, double lo, double hi, float *out, pv_oai_err_t *e) {
    const json_t *v = json_object_get(root, key);
    if (!present(v)) return 0;
    if (!json_is_number(v)) return fail(e, key, "must be a number");
    double d = json_number_value(v);
    if (d < lo || d > hi) return fail(e, key, "must be between %g and %g", lo, hi);
    *out = (float)d;
    return 0;
}

/* An optional boolean into *out. */
static int opt_bool(const json_t *o, const char *key, int *out, pv_oai_err_t *e) {
    const json_t *v = json_object_get(o, key);
    if (!present(v)) return 0;
    if (!json_is_boolean(v)) return fail(e, key, "must be a boolean");
    *out = json_is_true(v);
    return 0;
}

/* "stop": a string or an array of strings; empty strings are skipped. */
static int parse_stop(const json_t *v, pv_oai_req_t *out, pv_oai_err_t *e) {
    if (!present(v)) return 0;
    const json_t *one = json_is_string(v) ? v : NULL;
    if (!one && !json_is_array(v)) return fail(e, "stop", "must be a string or an array of strings");
    size_t n = one ? 1 : json_array_size(v);
    if (n > PV_SCHED_MAX_STOPS - 1) return fail(e, "stop", "at most %d sequences", PV_SCHED_MAX_STOPS - 1);
    for (size_t i = 0; i < n; i++) {
        const json_t *x = one ? one : json_array_get(v, i);
        if (!json_is_string(x)) return fail(e, "stop", "must be a string or an array of strings");
        size_t l = json_string_length(x);
        if (l > PV_SCHED_MAX_STOP_LEN) return fail(e, "stop", "each sequence is at most %d bytes", PV_SCHED_MAX_STOP_LEN);
        if (l == 0) continue;
        if (!(out->stops[out->n_stops] = strdup(json_string_value(x)))) return fail(e, NULL, "out of memory");
        out->n_stops++;
    }
    return 0;
}

/* The parameters both endpoints share. */
static int parse_common(const json_t *root, pv_oai_kind_t kind, pv_oai_req_t *out, pv_oai_err_t *e) {
    const json_t *model = json_object_get(root, "model");
    if (!json_is_string(model)) return fail(e, "model", "field required (a string)");
    snprintf(out->model, sizeof out->model, "%s", json_string_value(model));
    const json_t *n = json_object_get(root, "n");
    if (present(n) && (!json_is_integer(n) || json_integer_value(n) != 1))
        return fail(e, "n", "only n = 1 is supported");
    /* max_completion_tokens replaces max_tokens in chat; either is accepted */
    const json_t *mt = json_object_get(root, "max_completion_tokens");
    const char *mt_name = "max_completion_tokens";
    if (!present(mt)) mt = json_object_get(root, "max_tokens"), mt_name = "max_tokens";
    out->max_tokens = kind == PV_OAI_TEXT ? PV_OAI_TEXT_MAX_TOKENS : 0;
    if (present(mt)) {
        if (!json_is_integer(mt) || json_integer_value(mt) < 1) return fail(e, mt_name, "must be a positive integer");
        json_int_t v = json_integer_value(mt);
        out->max_tokens = v > (1 << 30) ? 1 << 30 : (int)v;
    }
    out->sp = pv_sampler_plain();
    if (opt_number(root, "temperature", 0, 2, &out->sp.temperature, e) ||
        opt_number(root, "top_p", 0, 1, &out->sp.top_p, e))
        return -1;
    const json_t *seed = json_object_get(root, "seed");
    if (present(seed)) {
        if (!json_is_integer(seed)) return fail(e, "seed", "must be an integer");
        out->sp.seed = (uint64_t)json_integer_value(seed);
    }
    if (opt_bool(root, "stream", &out->stream, e)) return -1;
    const json_t *so = json_object_get(root, "stream_options");
    if (present(so)) {
        if (!json_is_object(so)) return fail(e, "stream_options", "must be an object");
        if (opt_bool(so, "include_usage", &out->include_usage, e)) return fail(e, "stream_options.include_usage", "must be a boolean");
    }
    const json_t *lp = json_object_get(root, "logprobs");
    if (present(lp) && !json_is_false(lp)) return fail(e, "logprobs", "not supported");
    return parse_stop(json_object_get(root, "stop"), out, e);
}

/* "response_format": text, json_object (any JSON object) or json_schema
 * (json_schema.schema): the output is constrained to it (out->gram). */
static int parse_response_format(const json_t *rf, pv_oai_req_t *out, pv_oai_err_t *e) {
    if (!present(rf)) return 0;
    const char *t = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf) || !t) return fail(e, "response_format", "must be an object with a string \"type\"");
    if (!strcmp(t, "text")) return 0;
    if (!strcmp(t, "json_object")) return pv_gram_any_object(&out->gram) ? fail(e, NULL, "out of memory") : 0;
    if (!strcmp(t, "json_schema")) {
        const json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
        if (!json_is_object(schema)) return fail(e, "response_format.json_schema.schema", "field required (an object)");
        char msg[PV_ERRLEN - 100];
        if (pv_gram_from_schema(schema, &out->gram, msg, sizeof msg))
            return fail(e, "response_format.json_schema.schema", "%s", msg);
        return 0;
    }
    return fail(e, "response_format.type", "\"%s\" is not supported (use \"text\", \"json_object\" or \"json_schema\")", t);
}

/* tool_choice "required" or {"type":"function","function":{"name":N}}: the
 * output is constrained to a call (api/constrain.h), replacing any
 * response_format constraint (a call has no content). */
static int forced_call(const json_t *tc, const json_t *hf, pv_oai_req_t *out, pv_oai_err_t *e) {
    const char *only = NULL;
    if (json_is_object(tc)) {
        const char *type = json_string_value(json_object_get(tc, "type"));
        only = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
        if (!type || strcmp(type, "function") || !only)
            return fail(e, "tool_choice", "must be \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}");
    } else if (!json_is_string(tc) || strcmp(json_string_value(tc), "required"))
        return 0;
    pv_gram_t *g = NULL;
    char msg[PV_ERRLEN - 100];
    if (pv_constrain_tool_call(hf, only, &g, msg, sizeof msg)) return fail(e, NULL, "%s", msg);
    pv_gram_free(out->gram);
    out->gram = g;
    out->forced_call = 1;
    return 0;
}

/* "tools" (unless tool_choice is "none") in Hugging Face's shape into *tools
 * (NULL when none); a forced call's grammar into out. */
static int parse_tools(const json_t *root, json_t **tools_out, pv_oai_req_t *out, pv_oai_err_t *e) {
    *tools_out = NULL;
    const json_t *tc = json_object_get(root, "tool_choice");
    if (present(tc) && !json_is_string(tc) && !json_is_object(tc))
        return fail(e, "tool_choice", "must be a string or an object");
    if (json_is_string(tc) && !strcmp(json_string_value(tc), "none")) return 0;
    const json_t *tools = json_object_get(root, "tools");
    if (present(tools) && (!json_is_array(tools) || json_array_size(tools) > MAX_TOOLS))
        return fail(e, "tools", "must be an array of at most %d tools", MAX_TOOLS);
    size_t n = json_array_size(tools);
    if (n == 0) return forced_call(tc, NULL, out, e);
    json_t *hf = json_array();
    if (!hf) return fail(e, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(tools, i), *fn = json_object_get(x, "function");
        const json_t *name = json_object_get(fn, "name"), *desc = json_object_get(fn, "description");
        const json_t *params = json_object_get(fn, "parameters");
        if (!json_is_object(x) || !json_is_object(fn) || !json_is_string(name)) {
            char where[48];
            snprintf(where, sizeof where, "tools.%zu.function", i);
            json_decref(hf);
            return fail(e, where, "each tool must be {\"type\":\"function\",\"function\":{\"name\":...}}");
        }
        json_t *t = json_pack("{s:s, s:{s:O, s:O?, s:O?}}", "type", "function", "function", "name", name,
                              "description", json_is_string(desc) ? desc : NULL, "parameters",
                              present(params) ? params : NULL);
        if (!t || json_array_append_new(hf, t)) {
            json_decref(hf);
            return fail(e, NULL, "out of memory");
        }
    }
    if (forced_call(tc, hf, out, e)) {
        json_decref(hf);
        return -1;
    }
    *tools_out = hf;
    return 0;
}

/* One message in Hugging Face's shape (chat.h), appended to msgs: string
 * content, text parts joined by newlines, or null or absent (assistant: "",
 * as OpenAI's wire format means it); assistant tool_calls with their
 * arguments as objects: JSON text parsed (a string that is not JSON stays a
 * string), other values as given; tool results as role "tool", named after
 * their call when the client gives no name. names maps call ids to tool names. */
static int add_message(json_t *msgs, const json_t *m, const char *role, const char *where, json_t *names,
                       pv_oai_err_t *e) {
    char where2[128];
    char *buf = NULL;
    size_t len = 0;
    int tool = !strcmp(role, "tool") || !strcmp(role, "function"), assistant = !strcmp(role, "assistant");
    const char *hf_role = tool ? "tool" : !strcmp(role, "developer") ? "system" : role;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return fail(e, NULL, "out of memory");
    int rc = 0;
    const json_t *c = json_object_get(m, "content");
    snprintf(where2, sizeof where2, "%s.content", where);
    if (json_is_string(c)) {
        fputs(json_string_value(c), f);
    } else if (json_is_array(c)) {
        size_t i;
        const json_t *p;
        json_array_foreach(c, i, p) {
            const char *type = json_string_value(json_object_get(p, "type"));
            const char *t = json_string_value(json_object_get(p, "text"));
            if (!type || strcmp(type, "text") || !t) {
                rc = fail(e, where2, "only {\"type\":\"text\",\"text\":...} parts are supported");
                break;
            }
            fprintf(f, "%s%s", i ? "\n" : "", t);
        }
    } else if (present(c) || !assistant) {
        rc = fail(e, where2, present(c) ? "must be a string or an array of text parts" : "field required");
    }
    if (fclose(f) && !rc) rc = fail(e, NULL, "out of memory");
    json_t *x = rc ? NULL : json_pack("{s:s, s:s}", "role", hf_role, "content", buf);
    free(buf);
    if (rc) return rc;
    if (!x) return fail(e, NULL, "out of memory");
    const json_t *calls = json_object_get(m, "tool_calls");
    if (assistant && json_is_array(calls) && json_array_size(calls)) {
        json_t *hc = json_array();
        size_t i;
        const json_t *y;
        json_array_foreach(calls, i, y) {
            const json_t *fn = json_object_get(y, "function"), *id = json_object_get(y, "id");
            const json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
            if (!json_is_string(name)) {
                snprintf(where2, sizeof where2, "%s.tool_calls.%zu.function.name", where, i);
                json_decref(hc);
                json_decref(x);
                return fail(e, where2, "field required (a string)");
            }
            json_t *a = json_is_string(args) ? json_loads(json_string_value(args), 0, NULL) : NULL;
            if (!a) a = present(args) ? json_incref((json_t *)args) : json_object(); /* objects as given */
            json_array_append_new(hc, json_pack("{s:O?, s:s, s:{s:O, s:o}}", "id", json_is_string(id) ? id : NULL,
                                                "type", "function", "function", "name", name, "arguments", a));
            if (json_is_string(id)) json_object_set(names, json_string_value(id), (json_t *)name);
        }
        json_object_set_new(x, "tool_calls", hc);
    }
    if (tool) {
        const json_t *id = json_object_get(m, "tool_call_id"), *name = json_object_get(m, "name");
        if (json_is_string(id)) {
            json_object_set(x, "tool_call_id", (json_t *)id);
            if (!json_is_string(name)) name = json_object_get(names, json_string_value(id));
        }
        if (json_is_string(name)) json_object_set(x, "name", (json_t *)name);
    }
    if (json_array_append_new(msgs, x)) return fail(e, NULL, "out of memory");
    return 0;
}

/* The template options of the request (borrowed from root): chat_template_kwargs
 * (extra template variables, llama.cpp's name), documents (HF's argument) and
 * add_generation_prompt (default true); /apply-template's "verbatim". */
static int parse_template_opts(const json_t *root, pv_chat_opts_t *o, pv_oai_err_t *e) {
    *o = (pv_chat_opts_t){.add_generation_prompt = 1};
    const json_t *kw = json_object_get(root, "chat_template_kwargs"), *docs = json_object_get(root, "documents");
    if (present(kw) && !json_is_object(kw)) return fail(e, "chat_template_kwargs", "must be an object");
    if (json_object_get(kw, "messages") || json_object_get(kw, "tools"))
        return fail(e, "chat_template_kwargs", "cannot set \"messages\" or \"tools\" (send them as the request's own)");
    if (present(docs) && !json_is_array(docs)) return fail(e, "documents", "must be an array");
    o->kwargs = present(kw) ? kw : NULL;
    o->documents = present(docs) ? docs : NULL;
    if (opt_bool(root, "verbatim", &o->verbatim, e)) return -1;
    return opt_bool(root, "add_generation_prompt", &o->add_generation_prompt, e);
}

/* The request's messages (ms, 1 to MAX_MESSAGES) and tools in Hugging Face's
 * shape: *msgs and *tools (new references; *tools NULL when none offered); a
 * forced call's grammar into out. */
static int convert_conversation(const json_t *root, const json_t *ms, json_t **msgs, json_t **tools,
                                pv_oai_req_t *out, pv_oai_err_t *e) {
    if (parse_tools(root, tools, out, e)) return -1;
    json_t *names = json_object();
    *msgs = json_array();
    int rc = -1;
    if (!*msgs || !names) {
        fail(e, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < json_array_size(ms); i++) {
        const json_t *m = json_array_get(ms, i);
        char where[48];
        snprintf(where, sizeof where, "messages.%zu", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role) {
            fail(e, where, "each message must be an object with a string \"role\"");
            goto done;
        }
        if (strcmp(role, "system") && strcmp(role, "developer") && strcmp(role, "user") && strcmp(role, "tool") &&
            strcmp(role, "function") && strcmp(role, "assistant")) {
            snprintf(where, sizeof where, "messages.%zu.role", i);
            fail(e, where, "must be \"system\", \"developer\", \"user\", \"assistant\" or \"tool\"");
            goto done;
        }
        if (add_message(*msgs, m, role, where, names, e)) goto done;
    }
    rc = 0;
done:
    json_decref(names);
    if (rc) {
        json_decref(*msgs);
        json_decref(*tools);
        *msgs = *tools = NULL;
    }
    return rc;
}

/* /apply-template's "verbatim": true: messages and tools exactly as given
 * (tools an array or null; tool_choice not consulted), new references. */
static int verbatim_conversation(const json_t *root, const json_t *ms, json_t **msgs, json_t **tools,
                                 pv_oai_err_t *e) {
    const json_t *t = json_object_get(root, "tools");
    if (present(t) && (!json_is_array(t) || json_array_size(t) > MAX_TOOLS))
        return fail(e, "tools", "must be an array of at most %d tools", MAX_TOOLS);
    *msgs = json_incref((json_t *)ms);
    *tools = present(t) ? json_incref((json_t *)t) : NULL;
    return 0;
}

/* "messages" and "tools" rendered by chat into out->prompt (owned);
 * out->n_tools: the tools offered; out->gram: a forced call's grammar.
 * "verbatim" is refused unless allowed (only /apply-template renders verbatim:
 * a chat completion's body means what OpenAI's wire format means, and its
 * conversion keeps that meaning). */
static int parse_messages(const json_t *root, const pv_chat_t *chat, int allow_verbatim, pv_oai_req_t *out,
                          pv_oai_err_t *e) {
    const json_t *ms = json_object_get(root, "messages");
    if (!json_is_array(ms)) return fail(e, "messages", "field required (an array of messages)");
    size_t n = json_array_size(ms);
    if (n == 0 || n > MAX_MESSAGES) return fail(e, "messages", "must hold 1 to %d messages", MAX_MESSAGES);
    pv_chat_opts_t opts;
    if (parse_template_opts(root, &opts, e)) return -1;
    if (opts.verbatim && !allow_verbatim) return fail(e, "verbatim", "only POST /apply-template renders verbatim");
    json_t *msgs = NULL, *tools = NULL;
    if (opts.verbatim ? verbatim_conversation(root, ms, &msgs, &tools, e)
                      : convert_conversation(root, ms, &msgs, &tools, out, e))
        return -1;
    out->n_tools = (int)json_array_size(tools);
    char err[PV_ERRLEN];
    int r = pv_chat_render_opts(chat, msgs, tools, &opts, &out->prompt, err, sizeof err);
    if (r) { /* the template's own message, as is (raise_exception's is the template's word to the client) */
        fail(e, NULL, "%s", r == PV_ENOMEM ? "out of memory" : err);
        if (r != PV_ENOMEM) snprintf(e->param, sizeof e->param, "messages");
    }
    json_decref(msgs);
    json_decref(tools);
    return r ? -1 : 0;
}

/* /v1/completions' "prompt": a string, or an array holding one string. */
static int parse_prompt(const json_t *root, pv_oai_req_t *out, pv_oai_err_t *e) {
    const json_t *p = json_object_get(root, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0))) p = json_array_get(p, 0);
    if (!json_is_string(p)) return fail(e, "prompt", "field required (a string; token arrays and batches are not supported)");
    if (!(out->prompt = strdup(json_string_value(p)))) return fail(e, NULL, "out of memory");
    return 0;
}

int pv_oai_parse(const char *body, size_t len, pv_oai_kind_t kind, const pv_chat_t *chat, pv_oai_req_t *out,
                 pv_oai_err_t *err) {
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail(err, NULL, "invalid JSON body: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    int rc = -1;
    if (!json_is_object(root)) fail(err, NULL, "the request body must be a JSON object");
    else if (parse_common(root, kind, out, err) || parse_response_format(json_object_get(root, "response_format"), out, err)) {
    } else if (kind == PV_OAI_CHAT ? parse_messages(root, chat, 0, out, err) : parse_prompt(root, out, err)) {
    } else
        rc = 0;
    json_decref(root);
    if (rc) pv_api_req_close(out);
    return rc;
}

int pv_oai_apply_template(const char *body, size_t len, const pv_chat_t *chat, char **prompt, pv_oai_err_t *err) {
    *prompt = NULL;
    memset(err, 0, sizeof *err);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail(err, NULL, "invalid JSON body: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    pv_oai_req_t req = {0};
    int rc = json_is_object(root) ? parse_messages(root, chat, 1, &req, err)
                                  : fail(err, NULL, "the request body must be a JSON object");
    json_decref(root);
    *prompt = req.prompt; /* the rest (a forced call's grammar) is not needed here */
    req.prompt = NULL;
    pv_api_req_close(&req);
    return rc;
}

/* ---- shapes ------------------------------------------------------------------------------- */

json_t *pv_oai_error(int status, const char *msg, const char *param) {
    const char *type = "invalid_request_error", *code = NULL;
    switch (status) {
    case 401: code = "invalid_api_key"; break;
    case 404: code = "not_found"; break;
    case 405: code = "method_not_allowed"; break;
    case 413: code = "request_too_large"; break;
    case 429: type = "rate_limit_error", code = "rate_limit_exceeded"; break;
    case 503: type = "server_error", code = "overloaded"; break;
    default:
        if (status >= 500) type = "server_error";
    }
    return json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", msg, "type", type, "param",
                     param && *param ? json_string(param) : json_null(), "code", code ? json_string(code) : json_null());
}

char *pv_oai_error_body(int status, const char *msg, const char *param) {
    json_t *j = pv_oai_error(status, msg, param);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

const char *pv_oai_finish_reason(pv_stop_t stop) { return stop == PV_STOP_MAX_TOKENS ? "length" : "stop"; }

json_t *pv_oai_usage(int n_prompt, int n_cached, int n_out) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", n_prompt, "completion_tokens", n_out, "total_tokens",
                     n_prompt + n_out, "prompt_tokens_details", "cached_tokens", n_cached);
}

static const char *object_name(const pv_oai_meta_t *m, int chunk) {
    return m->kind == PV_OAI_TEXT ? "text_completion" : chunk ? "chat.completion.chunk" : "chat.completion";
}

/* {id, object, created, model, choices: [choice]} (steals choice; NULL: empty choices). */
static json_t *envelope(const pv_oai_meta_t *m, int chunk, json_t *choice) {
    json_t *choices = json_array();
    if (choice) json_array_append_new(choices, choice);
    return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", m->id, "object", object_name(m, chunk), "created",
                     (json_int_t)m->created, "model", m->model, "choices", choices);
}

json_t *pv_oai_response(const pv_oai_meta_t *m, const char *text, size_t len, const char *finish, int n_in,
                        int n_cached, int n_out) {
    json_t *choice = m->kind == PV_OAI_TEXT
        ? json_pack("{s:i, s:s%, s:n, s:s}", "index", 0, "text", text, len, "logprobs", "finish_reason", finish)
        : json_pack("{s:i, s:{s:s, s:s%, s:n}, s:n, s:s}", "index", 0, "message", "role", "assistant", "content", text,
                    len, "refusal", "logprobs", "finish_reason", finish);
    json_t *j = envelope(m, 0, choice);
    if (j) json_object_set_new(j, "usage", pv_oai_usage(n_in, n_cached, n_out));
    return j;
}

json_t *pv_oai_chunk(const pv_oai_meta_t *m, int first, const char *text, size_t len, const char *finish) {
    json_t *choice = json_pack("{s:i, s:n, s:o}", "index", 0, "logprobs", "finish_reason",
                               finish ? json_string(finish) : json_null());
    if (m->kind == PV_OAI_TEXT) {
        json_object_set_new(choice, "text", json_stringn(text ? text : "", text ? len : 0));
    } else {
        json_t *delta = json_object();
        if (first) json_object_set_new(delta, "role", json_string("assistant"));
        if (first || text) json_object_set_new(delta, "content", json_stringn(text ? text : "", text ? len : 0));
        json_object_set_new(choice, "delta", delta);
    }
    json_t *j = envelope(m, 1, choice);
    if (j && m->include_usage) json_object_set_new(j, "usage", json_null());
    return j;
}

json_t *pv_oai_tool_call(const char *id, const char *name, const char *args) {
    return json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function", "name", name, "arguments",
                     args);
}

json_t *pv_oai_call_chunk(const pv_oai_meta_t *m, int index, const char *id, const char *name, const char *args) {
    json_t *call = pv_oai_tool_call(id, name, args);
    if (call) json_object_set_new(call, "index", json_integer(index));
    json_t *choice = json_pack("{s:i, s:n, s:n, s:{s:[o]}}", "index", 0, "logprobs", "finish_reason", "delta",
                               "tool_calls", call);
    json_t *j = envelope(m, 1, choice);
    if (j && m->include_usage) json_object_set_new(j, "usage", json_null());
    return j;
}

json_t *pv_oai_usage_chunk(const pv_oai_meta_t *m, int n_in, int n_cached, int n_out) {
    json_t *j = envelope(m, 1, NULL);
    if (j) json_object_set_new(j, "usage", pv_oai_usage(n_in, n_cached, n_out));
    return j;
}

void pv_oai_new_id(pv_oai_kind_t kind, char *buf, size_t len) {
    static atomic_ulong seq;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long mix = ((unsigned long long)ts.tv_sec << 32 ^ (unsigned long long)ts.tv_nsec) * 0x9e3779b97f4a7c15ull;
    snprintf(buf, len, "%s%016llx%08lx", kind == PV_OAI_TEXT ? "cmpl-" : "chatcmpl-", mix,
             atomic_fetch_add(&seq, 1) & 0xffffffffUL);
}
