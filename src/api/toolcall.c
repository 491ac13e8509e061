/* toolcall.c - the streaming tool-call parser (see toolcall.h).
 *
 * Every undecided byte sits in buf. In text mode buf holds at most a suffix
 * that may begin a marker (or, at the start of the output, whitespace before
 * a possible JSON call); in call mode buf holds the whole call from its
 * marker on, so that a call that fails comes out as the very text it was. */
#include "api/toolcall.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* One way a call begins. */
typedef struct {
    const char *open;  /* the marker */
    const char *close; /* the end marker; NULL: the call is one JSON value after the marker */
    int keep;          /* the marker is the start of the JSON value itself ({"name") */
} trigger_t;

static const trigger_t T_HERMES = {"<tool_call>", "</tool_call>", 0};
static const trigger_t T_MISTRAL = {"[TOOL_CALLS]", NULL, 0};
static const trigger_t T_PYTAG = {"<|python_tag|>", NULL, 0};
static const trigger_t T_NAME = {"{\"name\"", NULL, 1};
static const trigger_t T_START = {"", NULL, 1}; /* a JSON value that opens the output */

/* Per family: the markers looked for anywhere, and which characters open a
 * call at the start of the output. */
static const struct {
    const char *name;           /* for logs */
    const trigger_t *trig[4];   /* NULL-terminated */
    const char *start;          /* characters that begin a call at the start ("" none) */
} families[PV_TC_COUNT] = {
    [PV_TC_JSON] = {"json", {&T_NAME, &T_HERMES, &T_PYTAG, NULL}, "{["},
    [PV_TC_HERMES] = {"hermes", {&T_HERMES, NULL}, ""},
    [PV_TC_LLAMA3] = {"llama3", {&T_PYTAG, &T_NAME, NULL}, "{["},
    [PV_TC_MISTRAL] = {"mistral", {&T_MISTRAL, NULL}, "["},
};

enum { S_START, S_TEXT, S_CALL };

struct pv_tc {
    pv_tc_family_t f;       /* the family */
    int state;              /* S_START: only whitespace so far (or since the last call); S_TEXT; S_CALL */
    char *buf;              /* [n] undecided bytes (owned) */
    size_t n, cap;          /* used, allocated */
    const trigger_t *trig;  /* S_CALL: how the call began */
    size_t pay;             /* S_CALL: where the payload starts in buf (after the marker) */
    size_t scan;            /* S_CALL, JSON: bytes of buf scanned for the value's end */
    int depth, in_str, esc; /* S_CALL, JSON: the scan's nesting, inside a string, after a backslash */
    int started;            /* S_CALL, JSON: the value's first byte was seen */
    int n_calls;            /* calls emitted */
};

pv_tc_family_t pv_tc_detect(const char *t) {
    if (!t) return PV_TC_JSON;
    if (strstr(t, "<tool_call>")) return PV_TC_HERMES;
    if (strstr(t, "[TOOL_CALLS]")) return PV_TC_MISTRAL;
    if (strstr(t, "<|python_tag|>") || strstr(t, "<|start_header_id|>")) return PV_TC_LLAMA3;
    return PV_TC_JSON;
}

const char *pv_tc_family_name(pv_tc_family_t f) { return (unsigned)f < PV_TC_COUNT ? families[f].name : "?"; }

pv_tc_t *pv_tc_new(pv_tc_family_t f) {
    pv_tc_t *p = calloc(1, sizeof *p);
    if (p) p->f = (unsigned)f < PV_TC_COUNT ? f : PV_TC_JSON;
    return p;
}

void pv_tc_free(pv_tc_t *p) {
    if (!p) return;
    free(p->buf);
    free(p);
}

int pv_tc_n_calls(const pv_tc_t *p) { return p->n_calls; }

static void emit_text(const pv_tc_sink_t *s, const char *t, size_t n) {
    if (n && s->text) s->text(s->ud, t, n);
}

/* Drops the first k bytes of buf. */
static void consume(pv_tc_t *p, size_t k) {
    memmove(p->buf, p->buf + k, p->n - k);
    p->n -= k;
}

/* ---- payloads ----------------------------------------------------------------------------- */

/* One call object -> name and compact arguments into the array calls ([name, args] pairs); 0 or -1. */
static int add_call(json_t *calls, const json_t *o) {
    const char *name = json_string_value(json_object_get(o, "name"));
    if (!json_is_object(o) || !name || !*name) return -1;
    const json_t *a = json_object_get(o, "arguments");
    if (!a) a = json_object_get(o, "parameters");
    json_t *args = NULL;
    if (!a || json_is_null(a)) args = json_object();
    else if (json_is_string(a)) args = json_loads(json_string_value(a), 0, NULL);
    else args = json_incref((json_t *)a);
    char *s = json_is_object(args) ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    if (!s) return -1;
    int rc = json_array_append_new(calls, json_pack("[s, s]", name, s));
    free(s);
    return rc;
}

/* Parses a payload (a call object or an array of them) and emits its calls;
 * 0, or -1 when it is not one (nothing emitted). */
static int emit_payload(pv_tc_t *p, const char *t, size_t n, const pv_tc_sink_t *s) {
    json_t *v = json_loadb(t, n, 0, NULL);
    json_t *calls = json_array();
    int rc = v && calls ? 0 : -1;
    if (!rc && json_is_array(v)) {
        size_t i;
        const json_t *x;
        if (!json_array_size(v)) rc = -1;
        json_array_foreach(v, i, x) if (!rc) rc = add_call(calls, x);
    } else if (!rc)
        rc = add_call(calls, v);
    if (!rc) {
        size_t i;
        const json_t *x;
        json_array_foreach(calls, i, x) {
            if (s->call) s->call(s->ud, json_string_value(json_array_get(x, 0)), json_string_value(json_array_get(x, 1)));
            p->n_calls++;
        }
    }
    json_decref(v);
    json_decref(calls);
    return rc;
}

/* ---- the scanner -------------------------------------------------------------------------- */

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static void enter_call(pv_tc_t *p, const trigger_t *t) {
    p->state = S_CALL;
    p->trig = t;
    p->pay = t->keep ? 0 : strlen(t->open);
    p->scan = p->pay;
    p->depth = p->in_str = p->esc = p->started = 0;
}

/* The call in buf failed: its bytes are text, and scanning goes on after them. */
static void call_failed(pv_tc_t *p, size_t upto, const pv_tc_sink_t *s) {
    emit_text(s, p->buf, upto);
    consume(p, upto);
    p->state = S_TEXT;
}

/* The call in buf (through upto) succeeded: back to S_START for a next one. */
static void call_done(pv_tc_t *p, size_t upto) {
    consume(p, upto);
    p->state = S_START;
}

/* Text mode: emits what cannot begin a call; 1 if a call began (buf now starts with it). */
static int step_text(pv_tc_t *p, int final, const pv_tc_sink_t *s) {
    const trigger_t *const *trig = families[p->f].trig;
    size_t best = p->n;
    const trigger_t *hit = NULL;
    for (int k = 0; trig[k]; k++) {
        const char *o = trig[k]->open;
        size_t lo = strlen(o);
        for (size_t i = 0; i + lo <= p->n && i < best; i++)
            if (p->buf[i] == o[0] && !memcmp(p->buf + i, o, lo)) {
                best = i, hit = trig[k];
                break;
            }
    }
    if (hit) {
        emit_text(s, p->buf, best);
        consume(p, best);
        enter_call(p, hit);
        return 1;
    }
    size_t keep = 0; /* the longest suffix that is a proper prefix of a marker */
    if (!final)
        for (int k = 0; trig[k]; k++) {
            const char *o = trig[k]->open;
            size_t lo = strlen(o);
            for (size_t l = lo - 1; l > keep; l--)
                if (l <= p->n && !memcmp(p->buf + p->n - l, o, l)) {
                    keep = l;
                    break;
                }
        }
    emit_text(s, p->buf, p->n - keep);
    consume(p, p->n - keep);
    return 0;
}

/* Start of the output (or after a call): whitespace is held until the first other byte says call or text. */
static int step_start(pv_tc_t *p, int final, const pv_tc_sink_t *s) {
    size_t i = 0;
    while (i < p->n && (is_space(p->buf[i]) || (p->n_calls && p->buf[i] == ';'))) i++;
    if (i == p->n) {
        if (final) {
            if (!p->n_calls) emit_text(s, p->buf, p->n); /* whitespace after a call is dropped */
            consume(p, p->n);
        }
        return 0;
    }
    /* a marker first ("[TOOL_CALLS]" also begins with a start character); whitespace before a marker (or
     * after a call) is not worth a text block of its own */
    int marker = 0;
    for (const trigger_t *const *t = families[p->f].trig; *t && !marker; t++) {
        size_t lo = strlen((*t)->open), m = p->n - i < lo ? p->n - i : lo;
        if (!memcmp(p->buf + i, (*t)->open, m)) {
            if (m < lo && !final) return 0; /* maybe a marker: wait */
            marker = m == lo;
        }
    }
    if (!marker && p->buf[i] && strchr(families[p->f].start, p->buf[i])) {
        if (p->n_calls) consume(p, i); /* separators between calls */
        enter_call(p, &T_START);
        p->pay = p->scan = p->n_calls ? 0 : i;
        return 1;
    }
    marker |= p->n_calls > 0;
    if (marker) consume(p, i);
    p->state = S_TEXT;
    return 1;
}

/* Call mode: 1 when the call was decided (a call or text), 0 while it is still open. */
static int step_call(pv_tc_t *p, int final, const pv_tc_sink_t *s) {
    const trigger_t *t = p->trig;
    if (t->close) {
        size_t lc = strlen(t->close);
        for (size_t i = p->pay; i + lc <= p->n; i++)
            if (!memcmp(p->buf + i, t->close, lc)) {
                if (emit_payload(p, p->buf + p->pay, i - p->pay, s) == 0) call_done(p, i + lc);
                else call_failed(p, i + lc, s);
                return 1;
            }
        if (final) { /* no end marker: the payload alone may still be a whole call */
            if (emit_payload(p, p->buf + p->pay, p->n - p->pay, s) == 0) call_done(p, p->n);
            else call_failed(p, p->n, s);
            return 1;
        }
    } else {
        for (; p->scan < p->n; p->scan++) {
            char c = p->buf[p->scan];
            if (!p->started) {
                if (is_space(c)) continue;
                if (c != '{' && c != '[') { /* a marker without JSON after it: text */
                    call_failed(p, p->pay, s);
                    return 1;
                }
                p->started = 1;
            }
            if (p->in_str) {
                if (p->esc) p->esc = 0;
                else if (c == '\\') p->esc = 1;
                else if (c == '"') p->in_str = 0;
            } else if (c == '"') p->in_str = 1;
            else if (c == '{' || c == '[') p->depth++;
            else if (c == '}' || c == ']') {
                if (--p->depth == 0) {
                    size_t end = p->scan + 1;
                    if (emit_payload(p, p->buf + p->pay, end - p->pay, s) == 0) call_done(p, end);
                    else call_failed(p, end, s);
                    return 1;
                }
            }
        }
        if (final) {
            call_failed(p, p->n, s);
            return 1;
        }
    }
    if (p->n > PV_TC_MAX_CALL) { /* too long to be a call we hold back */
        call_failed(p, p->n, s);
        return 1;
    }
    return 0;
}

static void run(pv_tc_t *p, int final, const pv_tc_sink_t *s) {
    for (;;) {
        int more = p->state == S_START ? step_start(p, final, s)
                 : p->state == S_TEXT  ? step_text(p, final, s)
                                       : step_call(p, final, s);
        if (!more || (p->n == 0 && p->state != S_CALL)) break;
    }
}

int pv_tc_feed(pv_tc_t *p, const char *text, size_t len, const pv_tc_sink_t *s) {
    if (p->n + len + 1 > p->cap) {
        size_t cap = (p->n + len + 1) * 2;
        char *b = realloc(p->buf, cap);
        if (!b) return PV_ENOMEM;
        p->buf = b, p->cap = cap;
    }
    memcpy(p->buf + p->n, text, len);
    p->n += len;
    run(p, 0, s);
    return 0;
}

int pv_tc_finish(pv_tc_t *p, const pv_tc_sink_t *s) {
    run(p, 1, s);
    if (p->n) { /* cannot happen: final decides everything; kept as text all the same */
        emit_text(s, p->buf, p->n);
        p->n = 0;
    }
    return 0;
}
