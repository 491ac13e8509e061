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
    int tpl_tools;            /* the template mentions "tools": it renders them itself */
    pv_tc_family_t family;    /* the tool-call syntax the prompt teaches */
    char *bos, *eos;          /* owned: the vocabulary's BOS/EOS texts ("" if none) */
    int adds_bos;             /* the vocabulary wants BOS before a prompt */
    char desc[48];            /* for logs */
};

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
    if (!c->bos || !c->eos) {
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
        c->tpl_tools = strstr(src, "tools") != NULL;
    }
    c->family = c->tpl_tools ? pv_tc_detect(src) : PV_TC_JSON;
    if (c->tpl) snprintf(c->desc, sizeof c->desc, "jinja template");
    else snprintf(c->desc, sizeof c->desc, "built-in %s", pv_prompt_fmt_name(c->fmt));
    *out = c;
    return 0;
}

void pv_chat_free(pv_chat_t *c) {
    if (!c) return;
    pv_jinja_free(c->tpl);
    free(c->bos);
    free(c->eos);
    free(c);
}

int pv_chat_templated(const pv_chat_t *c) { return c->tpl != NULL; }
pv_prompt_fmt_t pv_chat_fmt(const pv_chat_t *c) { return c->fmt; }
int pv_chat_template_tools(const pv_chat_t *c) { return c->tpl_tools; }
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

/* The conversation with only system/user/assistant text messages (new reference, NULL on OOM). */
static json_t *flatten(const json_t *messages, const json_t *tools) {
    json_t *out = json_array();
    int oom = !out;
    char *block = json_array_size(tools) ? tools_text(tools, &oom) : NULL;
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m) {
        if (oom) break;
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *content = json_string_value(json_object_get(m, "content"));
        if (!role) role = "user";
        if (!content) content = "";
        json_t *x = NULL;
        if (!strcmp(role, "tool")) {
            char *t = NULL;
            if (asprintf(&t, "[tool_result] %s", content) >= 0) x = msg_new("user", t);
            free(t);
        } else if (!strcmp(role, "assistant") && json_array_size(json_object_get(m, "tool_calls"))) {
            char *t = calls_text(content, json_object_get(m, "tool_calls"));
            if (t) x = msg_new("assistant", t);
            free(t);
        } else if (block && i == 0 && !strcmp(role, "system")) {
            char *t = NULL;
            if (asprintf(&t, "%s\n\n%s", content, block) >= 0) x = msg_new("system", t);
            free(t);
            free(block);
            block = NULL;
        } else {
            x = msg_new(role, content);
        }
        if (!x || json_array_append_new(out, x)) oom = 1;
    }
    if (block && !oom && json_array_insert_new(out, 0, msg_new("system", block))) oom = 1;
    free(block);
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
        const char *role = json_string_value(json_object_get(x, "role"));
        m[i].role = !strcmp(role, "system") ? PV_ROLE_SYSTEM : !strcmp(role, "assistant") ? PV_ROLE_ASSISTANT
                                                                                            : PV_ROLE_USER;
        m[i].text = json_string_value(json_object_get(x, "content"));
    }
    char *out = pv_prompt_render(c->fmt, NULL, m, (int)n);
    free(m);
    return out;
}

int pv_chat_render(const pv_chat_t *c, const json_t *messages, const json_t *tools, char **out, char *err,
                   size_t errlen) {
    *out = NULL;
    int has_tools = json_array_size(tools) > 0;
    int flat = !c->tpl || !c->tpl_tools; /* the template would not render tools, calls or results */
    json_t *msgs = flat ? flatten(messages, has_tools ? tools : NULL) : json_incref((json_t *)messages);
    if (!msgs) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    if (!c->tpl) {
        *out = render_builtin(c, msgs);
        json_decref(msgs);
        return *out ? 0 : pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    }
    /* "o" steals msgs */
    json_t *vars = json_pack("{s:o, s:O, s:b, s:s, s:s, s:n}", "messages", msgs, "tools",
                             has_tools && !flat ? (json_t *)tools : json_null(), "add_generation_prompt", 1,
                             "bos_token", c->bos, "eos_token", c->eos, "documents");
    if (!vars) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    size_t len = 0;
    pv_jinja_error_t kind = PV_JINJA_OK;
    char jerr[PV_ERRLEN];
    int rc = pv_jinja_render(c->tpl, vars, NULL, out, &len, &kind, jerr, sizeof jerr);
    json_decref(vars);
    if (rc == 0) return 0;
    *out = NULL;
    if (kind == PV_JINJA_OK) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    /* raise_exception's message is the template's word to the client, as is */
    if (kind == PV_JINJA_RAISED) snprintf(err, errlen, "%s", jerr);
    else snprintf(err, errlen, "chat template: %s", jerr);
    return PV_EINVAL;
}

unsigned pv_chat_tok_flags(const pv_chat_t *c, const char *prompt) {
    unsigned flags = c->tpl || pv_prompt_fmt_special(c->fmt) ? PV_TOK_SPECIAL : 0;
    size_t nb = strlen(c->bos);
    int has_bos = nb && !strncmp(prompt, c->bos, nb); /* the template wrote it (llama.cpp: no second one) */
    if (c->adds_bos && !has_bos) flags |= PV_TOK_ADD_BOS;
    return flags;
}
