/* chat.c - conversations -> prompt text through the chat template or a built-in format (see chat.h). */
#include "chat/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "chat/jinja.h"

struct pv_chat {
    pv_jinja_t *tpl;          /* owned; NULL: the built-in format renders */
    pv_prompt_fmt_t fmt;      /* the built-in format detected from the template text */
    unsigned caps;            /* PV_CHAT_RENDERS_* / PV_CHAT_TAKES_SYSTEM: what the template renders (probed) */
    pv_tc_family_t family;    /* the tool-call syntax the prompt teaches */
    char *bos, *eos;          /* owned: the vocabulary's BOS/EOS texts ("" if none) */
    int adds_bos;             /* the vocabulary wants BOS before a prompt */
    char desc[96];            /* for logs: what renders, and what of the conversation it renders */
    char **specials;          /* [n_specials] owned: texts PV_TOK_SPECIAL would read as control tokens */
    int n_specials;
    pv_jinja_opts_t jopts;    /* the render options: the fixed clock of pv_chat_set_clock, if any */
};

/* Client text must not be able to inject control tokens (<|im_end|> in a user
 * message). Before rendering, every occurrence of a control token's text in a
 * client string (and of the marker character itself) is wrapped as
 * MARK_OPEN len MARK_CLOSE text, where len is the byte length of text in
 * decimal; pv_chat_tokenize reads such regions as plain text. The markers are
 * private-use characters U+E000 and U+E001; their own occurrences in client
 * text are wrapped too, so the framing is unambiguous. */
#define MARK_OPEN "\xee\x80\x80"
#define MARK_CLOSE "\xee\x80\x81"
#define MARK_LEN 3

static int collect_specials(pv_chat_t *c, const pv_vocab_t *v) {
    int n = v ? pv_vocab_n_tokens(v) : 0;
    c->specials = calloc((size_t)n + 1, sizeof *c->specials);
    if (!c->specials) return PV_ENOMEM;
    for (int32_t id = 0; id < n; id++) {
        const char *t = pv_vocab_text(v, id);
        if (pv_vocab_type(v, id) != PV_TOKEN_CONTROL || !t || strlen(t) < 2) continue;
        if (!(c->specials[c->n_specials++] = strdup(t))) return PV_ENOMEM;
    }
    return 0;
}

/* Length of what must be wrapped at s (a control token's text or a marker), 0 if nothing. */
static size_t guarded_at(const pv_chat_t *c, const char *s) {
    if (!strncmp(s, MARK_OPEN, MARK_LEN) || !strncmp(s, MARK_CLOSE, MARK_LEN)) return MARK_LEN;
    size_t best = 0;
    for (int i = 0; i < c->n_specials; i++) {
        size_t n = strlen(c->specials[i]);
        if (n > best && !strncmp(s, c->specials[i], n)) best = n;
    }
    return best;
}

/* A copy of the client string s with its guarded texts wrapped (owned), or NULL on OOM. */
static char *guard_string(const pv_chat_t *c, const char *s) {
    size_t len = strlen(s), cap = len + 1, n = 0;
    char *out = malloc(cap);
    for (size_t i = 0; out && i < len;) {
        size_t g = (s[i] == '<' || s[i] == '[' || (unsigned char)s[i] == 0xee) ? guarded_at(c, s + i) : 0;
        size_t need = g ? 2 * MARK_LEN + 24 + g : 1;
        if (n + need + 1 > cap) {
            char *p = realloc(out, cap = 2 * (n + need + 1));
            if (!p) {
                free(out);
                return NULL;
            }
            out = p;
        }
        if (g) n += (size_t)sprintf(out + n, MARK_OPEN "%zu" MARK_CLOSE, g);
        memcpy(out + n, s + i, g ? g : 1);
        n += g ? g : 1;
        i += g ? g : 1;
    }
    if (out) out[n] = 0;
    return out;
}

/* A deep copy of a client JSON value with every string guarded (new reference), NULL on OOM. */
static json_t *guard_json(const pv_chat_t *c, const json_t *v) {
    if (json_is_string(v)) {
        char *g = guard_string(c, json_string_value(v));
        json_t *r = g ? json_string(g) : NULL;
        free(g);
        return r;
    }
    if (json_is_array(v)) {
        json_t *r = json_array();
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) if (!r || json_array_append_new(r, guard_json(c, x))) {
            json_decref(r);
            return NULL;
        }
        return r;
    }
    if (json_is_object(v)) {
        json_t *r = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (!r || json_object_set_new(r, k, guard_json(c, x))) {
            json_decref(r);
            return NULL;
        }
        return r;
    }
    return json_deep_copy(v);
}

/* The framed client text at m (a MARK_OPEN before end): 1 with *raw and
 * *raw_len set when m opens our framing, 0 when it is ordinary text. */
static int frame_at(const char *m, const char *end, const char **raw, size_t *raw_len) {
    char *digits_end;
    unsigned long long L = strtoull(m + MARK_LEN, &digits_end, 10);
    if (digits_end == m + MARK_LEN || strncmp(digits_end, MARK_CLOSE, MARK_LEN) ||
        L > (unsigned long long)(end - digits_end - MARK_LEN))
        return 0;
    *raw = digits_end + MARK_LEN;
    *raw_len = (size_t)L;
    return 1;
}

int pv_chat_tokenize(const pv_chat_t *c, const pv_vocab_t *v, const char *prompt, unsigned flags, int32_t *ids,
                     int n_max) {
    int n = 0;
    const char *p = prompt, *end = prompt + strlen(prompt);
    while (p < end) {
        const char *m = strstr(p, MARK_OPEN), *seg_end = m ? m : end;
        const char *raw = NULL;
        size_t raw_len = 0;
        /* MARK_OPEN digits MARK_CLOSE text: text is client text, never special tokens */
        if (m && !frame_at(m, end, &raw, &raw_len)) seg_end = m + MARK_LEN; /* not our framing: ordinary text */
        int k = pv_tokenize(v, p, (size_t)(seg_end - p), flags, ids + n, n_max - n);
        if (k < 0) return k == PV_TOK_FAILED ? k : -(n - k);
        n += k;
        flags &= ~PV_TOK_ADD_BOS;
        p = seg_end;
        if (raw) {
            k = pv_tokenize(v, raw, raw_len, flags & ~PV_TOK_SPECIAL, ids + n, n_max - n);
            if (k < 0) return k == PV_TOK_FAILED ? k : -(n - k);
            n += k;
            p = raw + raw_len;
        }
    }
    if (n == 0 && (flags & PV_TOK_ADD_BOS)) return pv_tokenize(v, "", 0, flags, ids, n_max);
    return n;
}

size_t pv_chat_unframe(char *prompt) {
    char *w = prompt;
    const char *p = prompt, *end = prompt + strlen(prompt);
    while (p < end) {
        const char *m = strstr(p, MARK_OPEN), *seg_end = m ? m : end;
        const char *raw = NULL;
        size_t raw_len = 0;
        if (m && !frame_at(m, end, &raw, &raw_len)) seg_end = m + MARK_LEN;
        memmove(w, p, (size_t)(seg_end - p));
        w += seg_end - p;
        p = seg_end;
        if (raw) {
            memmove(w, raw, raw_len);
            w += raw_len;
            p = raw + raw_len;
        }
    }
    *w = 0;
    return (size_t)(w - prompt);
}

/* The template's variables (new reference; steals msgs, borrows the rest), NULL on OOM. */
static json_t *template_vars(const pv_chat_t *c, json_t *msgs, const json_t *tools, const json_t *docs,
                             const pv_chat_opts_t *o) {
    json_t *vars = json_pack("{s:o, s:O, s:b, s:s, s:s, s:O}", "messages", msgs, "tools",
                             tools ? (json_t *)tools : json_null(), "add_generation_prompt", o->add_generation_prompt,
                             "bos_token", c->bos, "eos_token", c->eos, "documents", docs ? (json_t *)docs : json_null());
    if (vars && o->kwargs && json_object_update(vars, (json_t *)o->kwargs)) {
        json_decref(vars);
        return NULL;
    }
    return vars;
}

/* ---- what a template renders itself: probes ------------------------------------------------ */

/* Whether a template renders tool definitions, tool calls and results, and
 * system text is decided by rendering, once, when the template is loaded:
 * tiny conversations whose strings are markers, and a look for the markers in
 * the output (a template that raises on a probe does not render what it shows).
 * The call id is 9 alphanumerics, the shape Mistral's templates insist on. */
#define PROBE_TOOLS                                                                                              \
    "[{\"type\":\"function\",\"function\":{\"name\":\"pv_probe_tool\",\"description\":\"pv_probe_about\","     \
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"pv_probe_arg\":{\"type\":\"string\"}}}}}]"
#define PROBE_USER "{\"role\":\"user\",\"content\":\"pv_probe_user\"}"
#define PROBE_TURNS                                                                                              \
    "[" PROBE_USER ",{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"pvprobe01\","          \
    "\"type\":\"function\",\"function\":{\"name\":\"pv_probe_tool\",\"arguments\":{\"pv_probe_arg\":"          \
    "\"pv_probe_value\"}}}]},{\"role\":\"tool\",\"tool_call_id\":\"pvprobe01\",\"name\":\"pv_probe_tool\","     \
    "\"content\":\"pv_probe_result\"}]"

/* The template's output for messages (and tools), JSON texts, with add_generation_prompt (owned), or NULL
 * when it raises (or on OOM). */
static char *probe_render(const pv_chat_t *c, const char *messages, const char *tools) {
    static const pv_chat_opts_t opts = {.add_generation_prompt = 1};
    json_t *t = tools ? json_loads(tools, 0, NULL) : NULL;
    json_t *vars = template_vars(c, json_loads(messages, 0, NULL), t, NULL, &opts);
    char *out = NULL, jerr[PV_ERRLEN];
    size_t len = 0;
    pv_jinja_error_t kind;
    if (vars && pv_jinja_render(c->tpl, vars, &c->jopts, &out, &len, &kind, jerr, sizeof jerr)) out = NULL;
    json_decref(vars);
    json_decref(t);
    return out;
}

/* flag when out (may be NULL) holds mark, else 0. */
static unsigned shows(const char *out, const char *mark, unsigned flag) {
    return out && strstr(out, mark) ? flag : 0;
}

static unsigned probe_caps(const pv_chat_t *c) {
    char *out = probe_render(c, "[" PROBE_USER "]", PROBE_TOOLS);
    unsigned caps = shows(out, "pv_probe_tool", PV_CHAT_RENDERS_TOOLS);
    free(out);
    /* the turns with the tools when the template renders those (as a request would have them) */
    out = probe_render(c, PROBE_TURNS, caps & PV_CHAT_RENDERS_TOOLS ? PROBE_TOOLS : NULL);
    caps |= shows(out, "pv_probe_value", PV_CHAT_RENDERS_CALLS) | shows(out, "pv_probe_result", PV_CHAT_RENDERS_RESULTS);
    free(out);
    /* system text is taken unless the template drops or refuses it while it renders a user message */
    out = probe_render(c, "[{\"role\":\"system\",\"content\":\"pv_probe_system\"}," PROBE_USER "]", NULL);
    caps |= shows(out, "pv_probe_system", PV_CHAT_TAKES_SYSTEM);
    free(out);
    out = probe_render(c, "[" PROBE_USER "]", NULL);
    if (!shows(out, "pv_probe_user", 1)) caps |= PV_CHAT_TAKES_SYSTEM; /* no telling: as if it did */
    free(out);
    return caps;
}

static const char *yes_no(unsigned flag) { return flag ? "yes" : "no"; }

int pv_chat_new(const char *src, const pv_vocab_t *v, unsigned flags, pv_chat_t **out, char *err, size_t errlen) {
    *out = NULL;
    pv_chat_t *c = calloc(1, sizeof *c);
    if (!c) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    c->fmt = pv_prompt_detect(src);
    int32_t bos = v ? pv_vocab_bos(v) : -1, eos = v ? pv_vocab_eos(v) : -1;
    const char *tb = bos >= 0 ? pv_vocab_text(v, bos) : NULL, *te = eos >= 0 ? pv_vocab_text(v, eos) : NULL;
    c->bos = strdup(tb ? tb : "");
    c->eos = strdup(te ? te : "");
    c->adds_bos = v && pv_vocab_adds_bos(v);
    if (!c->bos || !c->eos || collect_specials(c, v)) {
        pv_chat_free(c);
        return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    }
    if (src && !(flags & PV_CHAT_BUILTIN)) {
        char jerr[PV_ERRLEN];
        int rc = pv_jinja_parse(src, strlen(src), &c->tpl, jerr, sizeof jerr);
        if (rc) {
            pv_chat_free(c);
            return pv_errorf(err, errlen, rc, "chat template: %s", jerr);
        }
    }
    c->caps = c->tpl ? probe_caps(c) : PV_CHAT_TAKES_SYSTEM; /* the built-in formats render system text */
    c->family = c->caps & PV_CHAT_RENDERS_TOOLS ? pv_tc_detect(src) : PV_TC_JSON;
    if (c->tpl)
        snprintf(c->desc, sizeof c->desc, "jinja template (renders tools: %s, calls: %s, results: %s, system text: %s)",
                 yes_no(c->caps & PV_CHAT_RENDERS_TOOLS), yes_no(c->caps & PV_CHAT_RENDERS_CALLS),
                 yes_no(c->caps & PV_CHAT_RENDERS_RESULTS), yes_no(c->caps & PV_CHAT_TAKES_SYSTEM));
    else snprintf(c->desc, sizeof c->desc, "built-in %s", pv_prompt_fmt_name(c->fmt));
    *out = c;
    return 0;
}

void pv_chat_free(pv_chat_t *c) {
    if (!c) return;
    pv_jinja_free(c->tpl);
    free(c->bos);
    free(c->eos);
    for (int i = 0; c->specials && i < c->n_specials; i++) free(c->specials[i]);
    free(c->specials);
    free(c);
}

void pv_chat_set_clock(pv_chat_t *c, const struct tm *now) {
    c->jopts.has_now = 1;
    c->jopts.now = *now;
}

int pv_chat_templated(const pv_chat_t *c) { return c->tpl != NULL; }
pv_prompt_fmt_t pv_chat_fmt(const pv_chat_t *c) { return c->fmt; }
unsigned pv_chat_caps(const pv_chat_t *c) { return c->caps; }
pv_tc_family_t pv_chat_tool_family(const pv_chat_t *c) { return c->family; }
const char *pv_chat_stop(const pv_chat_t *c) { return c->tpl ? NULL : pv_prompt_fmt_stop(c->fmt); }
const char *pv_chat_describe(const pv_chat_t *c) { return c->desc; }

/* ---- the flattened conversation: tools as system text, calls and results as text ----------- */

/* The tools block of prompt.h for an HF tools array (owned), or NULL with *oom set. */
static char *tools_text(const json_t *tools, int *oom) {
    size_t n = json_array_size(tools);
    pv_prompt_tool_t *t = calloc(n, sizeof *t);
    char **params = calloc(n, sizeof *params);
    char *out = NULL;
    if (!t || !params) goto done;
    for (size_t i = 0; i < n; i++) {
        const json_t *fn = json_object_get(json_array_get(tools, i), "function");
        t[i].name = json_string_value(json_object_get(fn, "name"));
        if (!t[i].name) t[i].name = "?";
        t[i].description = json_string_value(json_object_get(fn, "description"));
        const json_t *p = json_object_get(fn, "parameters");
        if (p && !(t[i].parameters = params[i] = json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY))) goto done;
    }
    out = pv_prompt_tools_text(t, (int)n);
done:
    for (size_t i = 0; params && i < n; i++) free(params[i]);
    free(params);
    free(t);
    if (!out) *oom = 1;
    return out;
}

/* 1 when message m's role is role. */
static int role_is(const json_t *m, const char *role) {
    const char *r = json_string_value(json_object_get(m, "role"));
    return r && !strcmp(r, role);
}

/* {role, content} (new reference). */
static json_t *msg_new(const char *role, const char *content) {
    return json_pack("{s:s, s:s}", "role", role, "content", content);
}

/* An assistant message's tool calls appended to its text, in the tools block's syntax (owned). */
static char *calls_text(const char *content, const json_t *calls) {
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f) return NULL;
    fputs(content, f);
    size_t i;
    const json_t *x;
    json_array_foreach(calls, i, x) {
        const json_t *fn = json_object_get(x, "function");
        json_t *call = json_pack("{s:O?, s:O?}", "name", json_object_get(fn, "name"), "arguments",
                                 json_object_get(fn, "arguments"));
        char *s = call ? json_dumps(call, JSON_COMPACT) : NULL;
        json_decref(call);
        if (s) fprintf(f, "%s%s", ftell(f) > 0 ? "\n" : "", s);
        free(s);
    }
    if (fclose(f)) {
        free(out);
        return NULL;
    }
    return out;
}

/* What flatten writes as text. */
typedef struct {
    const char *block; /* the tools block, or NULL */
    int calls;         /* 1: an assistant's tool calls become text ({"name": ...} lines after its text) */
    int results;       /* 1: tool results become user messages "[tool_result] TEXT" */
    int in_user;       /* 1: the block opens the first user message (the template takes no system text) */
} flat_t;

/* m (borrowed) with its content (a string, else "") preceded or followed by text, joined by a blank line:
 * a copy of m, new reference, NULL on OOM. */
static json_t *with_text(const json_t *m, const char *text, int before) {
    const char *content = json_string_value(json_object_get(m, "content"));
    if (!content) content = "";
    char *t = NULL;
    if (asprintf(&t, "%s\n\n%s", before ? text : content, before ? content : text) < 0) return NULL;
    json_t *x = json_deep_copy(m);
    if (x && json_object_set_new(x, "content", json_string(t))) {
        json_decref(x);
        x = NULL;
    }
    free(t);
    return x;
}

/* One message as flatten passes it on (new reference, NULL on OOM); *placed set when it took the block. */
static json_t *flat_message(const json_t *m, size_t i, const flat_t *f, int *placed) {
    const char *role = json_string_value(json_object_get(m, "role"));
    const char *content = json_string_value(json_object_get(m, "content"));
    if (!role) role = "user";
    if (!content) content = "";
    if (f->results && !strcmp(role, "tool")) {
        char *t = NULL;
        json_t *x = asprintf(&t, "[tool_result] %s", content) >= 0 ? msg_new("user", t) : NULL;
        free(t);
        return x;
    }
    if (f->calls && !strcmp(role, "assistant") && json_array_size(json_object_get(m, "tool_calls"))) {
        char *t = calls_text(content, json_object_get(m, "tool_calls"));
        json_t *x = t ? msg_new("assistant", t) : NULL;
        free(t);
        return x;
    }
    if (f->block && !*placed && (f->in_user ? !strcmp(role, "user") : i == 0 && !strcmp(role, "system"))) {
        *placed = 1;
        return with_text(m, f->block, f->in_user);
    }
    return json_incref((json_t *)m);
}

/* The conversation with what the template cannot render written as text (new reference, NULL on OOM):
 * the tools block joined to a leading system message (or made one), or opening the first user message
 * (or made one) when the template takes no system text; tool calls, results as text, the results that
 * follow one another and the user message right after them as one user message. Other messages as given. */
static json_t *flatten(const json_t *messages, const flat_t *f) {
    json_t *out = json_array();
    int oom = !out, placed = 0, after_result = 0; /* the last message out holds a tool result as text */
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m) {
        json_t *x = oom ? NULL : flat_message(m, i, f, &placed);
        if (x && after_result && role_is(x, "user")) {
            /* results and the user's next words are one user turn (templates may insist roles alternate) */
            const char *text = json_string_value(json_object_get(x, "content"));
            json_t *joined = with_text(json_array_get(out, json_array_size(out) - 1), text ? text : "", 0);
            json_decref(x);
            if (!joined || json_array_set_new(out, json_array_size(out) - 1, joined)) oom = 1;
        } else if (!x || json_array_append_new(out, x)) {
            oom = 1;
        }
        after_result = f->results && role_is(m, "tool");
    }
    if (f->block && !placed && !oom &&
        json_array_insert_new(out, 0, msg_new(f->in_user ? "user" : "system", f->block)))
        oom = 1;
    if (oom) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* The built-in format over the flattened conversation (owned), NULL on OOM. */
static char *render_builtin(const pv_chat_t *c, const json_t *flat) {
    size_t n = json_array_size(flat);
    pv_chat_msg_t *m = calloc(n ? n : 1, sizeof *m);
    if (!m) return NULL;
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(flat, i);
        const char *role = json_string_value(json_object_get(x, "role")), *text;
        if (!role) role = "user";
        m[i].role = !strcmp(role, "system") ? PV_ROLE_SYSTEM : !strcmp(role, "assistant") ? PV_ROLE_ASSISTANT
                                                                                            : PV_ROLE_USER;
        m[i].text = (text = json_string_value(json_object_get(x, "content"))) ? text : "";
    }
    char *out = pv_prompt_render(c->fmt, NULL, m, (int)n);
    free(m);
    return out;
}

int pv_chat_render(const pv_chat_t *c, const json_t *messages, const json_t *tools, char **out, char *err,
                   size_t errlen) {
    return pv_chat_render_opts(c, messages, tools, NULL, out, err, errlen);
}

/* Renders the template with vars (borrowed) into *out; pv_chat_render's return convention. */
static int render_template(const pv_chat_t *c, const json_t *vars, char **out, char *err, size_t errlen) {
    size_t len = 0;
    pv_jinja_error_t kind = PV_JINJA_OK;
    char jerr[PV_ERRLEN];
    int rc = pv_jinja_render(c->tpl, vars, &c->jopts, out, &len, &kind, jerr, sizeof jerr);
    if (rc == 0) return 0;
    *out = NULL;
    if (kind == PV_JINJA_OK) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    /* raise_exception's message is the template's word to the client, as is */
    if (kind == PV_JINJA_RAISED) snprintf(err, errlen, "%s", jerr);
    else snprintf(err, errlen, "chat template: %s", jerr);
    return PV_EINVAL;
}

/* The messages the template or built-in format gets (new reference, NULL on OOM): as given when verbatim,
 * else with what it does not render itself written as text (flatten). */
static json_t *prepared_messages(const pv_chat_t *c, json_t *msgs, const json_t *tools, int verbatim) {
    int tools_as_text = json_array_size(tools) > 0 && !(c->caps & PV_CHAT_RENDERS_TOOLS);
    flat_t f = {.calls = !(c->caps & PV_CHAT_RENDERS_CALLS), .results = !(c->caps & PV_CHAT_RENDERS_RESULTS),
                .in_user = !(c->caps & PV_CHAT_TAKES_SYSTEM)};
    if (verbatim || (!tools_as_text && !f.calls && !f.results)) return json_incref(msgs);
    int oom = 0;
    char *block = tools_as_text ? tools_text(tools, &oom) : NULL;
    f.block = block;
    json_t *out = oom ? NULL : flatten(msgs, &f);
    free(block);
    return out;
}

int pv_chat_render_opts(const pv_chat_t *c, const json_t *messages, const json_t *tools, const pv_chat_opts_t *o,
                        char **out, char *err, size_t errlen) {
    static const pv_chat_opts_t defaults = {.add_generation_prompt = 1};
    if (!o) o = &defaults;
    *out = NULL;
    if (o->kwargs && (json_object_get(o->kwargs, "messages") || json_object_get(o->kwargs, "tools")))
        return pv_errorf(err, errlen, PV_EINVAL, "template variables cannot replace \"messages\" or \"tools\"");
    if (o->verbatim && !c->tpl)
        return pv_errorf(err, errlen, PV_EINVAL, "a verbatim render needs a chat template (this model has %s)",
                         c->desc);
    json_t *g_msgs = guard_json(c, messages), *g_tools = tools ? guard_json(c, tools) : NULL;
    json_t *g_docs = c->tpl && o->documents ? guard_json(c, o->documents) : NULL;
    json_t *msgs = g_msgs && (!tools || g_tools) ? prepared_messages(c, g_msgs, g_tools, o->verbatim) : NULL;
    /* the template gets the tools when it renders them (or verbatim: as given) */
    const json_t *t_tools = o->verbatim || (json_array_size(g_tools) && c->caps & PV_CHAT_RENDERS_TOOLS) ? g_tools
                                                                                                       : NULL;
    int rc = 0;
    if (!msgs || (c->tpl && o->documents && !g_docs)) {
        json_decref(msgs);
        rc = pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    } else if (!c->tpl) {
        *out = render_builtin(c, msgs);
        json_decref(msgs);
        if (!*out) rc = pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    } else {
        json_t *vars = template_vars(c, msgs, t_tools, g_docs, o);
        rc = vars ? render_template(c, vars, out, err, errlen) : pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
        json_decref(vars);
    }
    json_decref(g_msgs);
    json_decref(g_tools);
    json_decref(g_docs);
    return rc;
}

unsigned pv_chat_tok_flags(const pv_chat_t *c, const char *prompt) {
    unsigned flags = c->tpl || pv_prompt_fmt_special(c->fmt) ? PV_TOK_SPECIAL : 0;
    size_t nb = strlen(c->bos);
    int has_bos = nb && !strncmp(prompt, c->bos, nb); /* the template wrote it (llama.cpp: no second one) */
    if (c->adds_bos && !has_bos) flags |= PV_TOK_ADD_BOS;
    return flags;
}
