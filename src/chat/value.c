/* value.c - dynamic values for the template interpreter: arena, Python
 * printing (str/repr), json.dumps, equality and ordering. See value.h. */
#include "chat/value.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* ------------------------------------------------------------------ arena */

#define ARENA_CHUNK (64u * 1024u)

typedef struct chunk {
    struct chunk *next; /* older chunk */
    size_t size;        /* usable bytes after the header */
    size_t used;        /* bytes handed out */
    max_align_t data[]; /* the bytes */
} chunk_t;

struct jv_arena {
    chunk_t *head;    /* newest chunk, NULL before the first allocation */
    size_t total;     /* bytes of all chunks, headers included */
    size_t max;       /* total may not exceed this */
    int exhausted;    /* an allocation failed */
};

jv_arena_t *jv_arena_new(size_t max_bytes) {
    jv_arena_t *a = calloc(1, sizeof *a);
    if (a) a->max = max_bytes;
    return a;
}

void jv_arena_free(jv_arena_t *a) {
    if (!a) return;
    for (chunk_t *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

int jv_arena_exhausted(const jv_arena_t *a) { return a->exhausted; }
size_t jv_arena_max(const jv_arena_t *a) { return a->max; }

int jv_grow_pair(jv_arena_t *a, const void *pa, size_t sa, const void *pb, size_t sb, size_t n, size_t *cap, void **na,
                 void **nb) {
    size_t c = *cap ? 2 * *cap : 8;
    if (!(*na = jv_alloc(a, c, sa)) || !(*nb = jv_alloc(a, c, sb))) return PV_ENOMEM;
    if (n) {
        memcpy(*na, pa, n * sa);
        memcpy(*nb, pb, n * sb);
    }
    *cap = c;
    return 0;
}

void *jv_alloc(jv_arena_t *a, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) goto fail;
    size_t bytes = (n * size + 15) & ~(size_t)15;
    if (bytes == 0) bytes = 16;
    chunk_t *c = a->head;
    if (!c || c->size - c->used < bytes) {
        size_t want = bytes > ARENA_CHUNK / 4 ? bytes : ARENA_CHUNK;
        if (want > a->max || a->total + want + sizeof(chunk_t) > a->max) goto fail;
        c = malloc(sizeof(chunk_t) + want);
        if (!c) goto fail;
        c->size = want;
        c->used = 0;
        a->total += want + sizeof(chunk_t);
        if (bytes == want && a->head) { /* a big block: keep filling the current chunk */
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = (char *)c->data + c->used;
    c->used += bytes;
    memset(p, 0, bytes);
    return p;
fail:
    a->exhausted = 1;
    return NULL;
}

/* ------------------------------------------------------------------ constructors */

jv_t jv_undef(const char *msg, size_t n) {
    jv_t v = {.type = JV_UNDEF, .s = msg ? msg : "", .n = msg ? n : 0};
    return v;
}
jv_t jv_none(void) { return (jv_t){.type = JV_NONE}; }
jv_t jv_bool(int b) { return (jv_t){.type = JV_BOOL, .u.i = b != 0}; }
jv_t jv_int(int64_t i) { return (jv_t){.type = JV_INT, .u.i = i}; }
jv_t jv_float(double f) { return (jv_t){.type = JV_FLOAT, .u.f = f}; }
jv_t jv_str(const char *s, size_t n) { return (jv_t){.type = JV_STR, .s = s, .n = n}; }

int jv_str_copy(jv_arena_t *a, const char *s, size_t n, jv_t *out) {
    char *p = jv_alloc(a, n + 1, 1);
    if (!p) return PV_ENOMEM;
    if (n) memcpy(p, s, n);
    *out = jv_str(p, n);
    return 0;
}

int jv_seq_new(jv_arena_t *a, int type, const jv_t *items, size_t n, jv_t *out) {
    jv_seq_t *s = jv_alloc(a, 1, sizeof *s);
    jv_t *it = jv_alloc(a, n, sizeof *it);
    if (!s || !it) return PV_ENOMEM;
    if (n) memcpy(it, items, n * sizeof *it);
    s->n = n;
    s->items = it;
    *out = (jv_t){.type = type, .u.seq = s};
    return 0;
}

int jv_dict_new(jv_arena_t *a, int type, jv_t *out) {
    jv_dict_t *d = jv_alloc(a, 1, sizeof *d);
    if (!d) return PV_ENOMEM;
    *out = (jv_t){.type = type, .u.dict = d};
    return 0;
}

const jv_t *jv_dict_gets(const jv_dict_t *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i].type == JV_STR && d->keys[i].n == n && memcmp(d->keys[i].s, key, n) == 0)
            return &d->vals[i];
    return NULL;
}

const jv_t *jv_dict_get(const jv_dict_t *d, jv_t key) {
    if (key.type == JV_STR) return jv_dict_gets(d, key.s, key.n);
    for (size_t i = 0; i < d->n; i++)
        if (jv_eq(d->keys[i], key)) return &d->vals[i];
    return NULL;
}

int jv_dict_set(jv_arena_t *a, jv_dict_t *d, jv_t key, jv_t val) {
    jv_t *slot = (jv_t *)jv_dict_get(d, key);
    if (slot) {
        *slot = val;
        return 0;
    }
    if (d->n == d->cap) {
        void *k, *v;
        if (jv_grow_pair(a, d->keys, sizeof *d->keys, d->vals, sizeof *d->vals, d->n, &d->cap, &k, &v)) return PV_ENOMEM;
        d->keys = k;
        d->vals = v;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
    return 0;
}

static int from_json(jv_arena_t *a, const json_t *j, jv_t *out, int depth, char *err, size_t errlen) {
    if (depth > JV_MAX_DEPTH) return pv_errorf(err, errlen, PV_ERANGE, "JSON nested too deeply");
    switch (json_typeof(j)) {
    case JSON_NULL: *out = jv_none(); return 0;
    case JSON_TRUE: *out = jv_bool(1); return 0;
    case JSON_FALSE: *out = jv_bool(0); return 0;
    case JSON_INTEGER: *out = jv_int(json_integer_value(j)); return 0;
    case JSON_REAL: *out = jv_float(json_real_value(j)); return 0;
    case JSON_STRING: return jv_str_copy(a, json_string_value(j), json_string_length(j), out);
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        jv_t *items = jv_alloc(a, n, sizeof *items);
        jv_seq_t *s = jv_alloc(a, 1, sizeof *s);
        if (!items || !s) return PV_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            int rc = from_json(a, json_array_get(j, i), &items[i], depth + 1, err, errlen);
            if (rc) return rc;
        }
        s->n = n;
        s->items = items;
        *out = (jv_t){.type = JV_LIST, .u.seq = s};
        return 0;
    }
    case JSON_OBJECT: {
        int rc = jv_dict_new(a, JV_DICT, out);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) { /* borrows; jansson keeps insertion order */
            jv_t key, val;
            if ((rc = jv_str_copy(a, k, strlen(k), &key)) != 0) return rc;
            if ((rc = from_json(a, v, &val, depth + 1, err, errlen)) != 0) return rc;
            if ((rc = jv_dict_set(a, out->u.dict, key, val)) != 0) return rc;
        }
        return rc;
    }
    }
    return pv_errorf(err, errlen, PV_EINVAL, "unknown JSON type");
}

int jv_from_json(jv_arena_t *a, const json_t *j, jv_t *out, char *err, size_t errlen) {
    int rc = from_json(a, j, out, 0, err, errlen);
    if (rc == PV_ENOMEM) pv_errorf(err, errlen, rc, "out of memory converting the context");
    return rc;
}

/* ------------------------------------------------------------------ semantics */

int jv_truthy(jv_t v) {
    switch (v.type) {
    case JV_UNDEF:
    case JV_NONE: return 0;
    case JV_BOOL:
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return v.n != 0;
    case JV_LIST:
    case JV_TUPLE: return v.u.seq->n != 0;
    case JV_DICT: return v.u.dict->n != 0;
    default: return 1;
    }
}

static int is_num(jv_t v) { return v.type == JV_INT || v.type == JV_BOOL || v.type == JV_FLOAT; }
static double num(jv_t v) { return v.type == JV_FLOAT ? v.u.f : (double)v.u.i; }

static int eq_depth(jv_t a, jv_t b, int depth) {
    if (depth > JV_MAX_DEPTH) return 0;
    if (is_num(a) && is_num(b)) {
        if (a.type != JV_FLOAT && b.type != JV_FLOAT) return a.u.i == b.u.i;
        return num(a) == num(b);
    }
    if (a.type != b.type) return 0;
    switch (a.type) {
    case JV_UNDEF:
    case JV_NONE: return 1;
    case JV_STR: return a.n == b.n && (a.n == 0 || memcmp(a.s, b.s, a.n) == 0);
    case JV_LIST:
    case JV_TUPLE:
        if (a.u.seq->n != b.u.seq->n) return 0;
        for (size_t i = 0; i < a.u.seq->n; i++)
            if (!eq_depth(a.u.seq->items[i], b.u.seq->items[i], depth + 1)) return 0;
        return 1;
    case JV_DICT:
        if (a.u.dict->n != b.u.dict->n) return 0;
        for (size_t i = 0; i < a.u.dict->n; i++) {
            const jv_t *o = jv_dict_get(b.u.dict, a.u.dict->keys[i]);
            if (!o || !eq_depth(a.u.dict->vals[i], *o, depth + 1)) return 0;
        }
        return 1;
    case JV_NS: return a.u.dict == b.u.dict;
    case JV_METHOD: return a.u.ptr == b.u.ptr && a.aux == b.aux;
    case JV_FUNC: return a.aux == b.aux;
    default: return a.u.ptr == b.u.ptr;
    }
}

int jv_eq(jv_t a, jv_t b) { return eq_depth(a, b, 0); }

static int cmp_depth(jv_t a, jv_t b, int *res, int depth, char *err, size_t errlen) {
    if (depth > JV_MAX_DEPTH) return pv_errorf(err, errlen, PV_EINVAL, "values nested too deeply");
    if (is_num(a) && is_num(b)) {
        if (a.type != JV_FLOAT && b.type != JV_FLOAT)
            *res = a.u.i < b.u.i ? -1 : a.u.i > b.u.i;
        else
            *res = num(a) < num(b) ? -1 : num(a) > num(b);
        return 0;
    }
    if (a.type == JV_STR && b.type == JV_STR) { /* UTF-8 byte order is code point order */
        size_t n = a.n < b.n ? a.n : b.n;
        int c = n ? memcmp(a.s, b.s, n) : 0;
        *res = c ? (c < 0 ? -1 : 1) : (a.n < b.n ? -1 : a.n > b.n);
        return 0;
    }
    if ((a.type == JV_LIST || a.type == JV_TUPLE) && a.type == b.type) {
        size_t na = a.u.seq->n, nb = b.u.seq->n;
        for (size_t i = 0; i < na && i < nb; i++) {
            if (eq_depth(a.u.seq->items[i], b.u.seq->items[i], depth + 1)) continue;
            return cmp_depth(a.u.seq->items[i], b.u.seq->items[i], res, depth + 1, err, errlen);
        }
        *res = na < nb ? -1 : na > nb;
        return 0;
    }
    return pv_errorf(err, errlen, PV_EINVAL, "'<' not supported between instances of '%s' and '%s'",
                     jv_type_name(a), jv_type_name(b));
}

int jv_cmp(jv_t a, jv_t b, int *res, char *err, size_t errlen) {
    return cmp_depth(a, b, res, 0, err, errlen);
}

const char *jv_type_name(jv_t v) {
    static const char *const names[JV_COUNT] = {
        [JV_UNDEF] = "Undefined", [JV_NONE] = "NoneType", [JV_BOOL] = "bool",
        [JV_INT] = "int",         [JV_FLOAT] = "float",   [JV_STR] = "str",
        [JV_LIST] = "list",       [JV_TUPLE] = "tuple",   [JV_DICT] = "dict",
        [JV_NS] = "Namespace",    [JV_LOOP] = "LoopContext", [JV_MACRO] = "Macro",
        [JV_FUNC] = "function",   [JV_METHOD] = "builtin_function_or_method",
    };
    return v.type >= 0 && v.type < JV_COUNT ? names[v.type] : "object";
}

/* ------------------------------------------------------------------ UTF-8 */

size_t jv_utf8_next(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    size_t len = u[0] < 0x80 ? 1 : u[0] >= 0xf0 ? 4 : u[0] >= 0xe0 ? 3 : u[0] >= 0xc0 ? 2 : 1;
    if (len > n) len = 1;
    for (size_t i = 1; i < len; i++)
        if ((u[i] & 0xc0) != 0x80) len = 1;
    if (len == 1) {
        *cp = u[0];
        return 1;
    }
    uint32_t c = u[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) c = (c << 6) | (u[i] & 0x3f);
    *cp = c;
    return len;
}

size_t jv_utf8_put(char *o, uint32_t c) {
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | c >> 12);
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | c >> 18);
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

size_t jv_utf8_len(const char *s, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; count++) {
        uint32_t cp;
        i += jv_utf8_next(s + i, n - i, &cp);
    }
    return count;
}

size_t jv_utf8_offset(const char *s, size_t n, size_t ci) {
    size_t i = 0;
    for (size_t k = 0; k < ci && i < n; k++) {
        uint32_t cp;
        i += jv_utf8_next(s + i, n - i, &cp);
    }
    return i;
}

/* ------------------------------------------------------------------ buffers */

int jv_buf_init(jv_buf_t *b, jv_arena_t *a, size_t max) {
    *b = (jv_buf_t){.a = a, .max = max};
    return 0;
}

int jv_buf_put(jv_buf_t *b, const char *s, size_t n) {
    if (n > b->max || b->n > b->max - n) return PV_ERANGE;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n) cap = cap > SIZE_MAX / 2 ? b->n + n : 2 * cap;
        if (cap > b->max) cap = b->max;
        char *p = jv_alloc(b->a, cap + 1, 1);
        if (!p) return PV_ENOMEM;
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

int jv_buf_puts(jv_buf_t *b, const char *s) { return jv_buf_put(b, s, strlen(s)); }

/* ------------------------------------------------------------------ printing */

void jv_float_repr(double f, char *buf, size_t len) {
    if (isnan(f)) {
        snprintf(buf, len, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, len, f < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    for (int prec = 1; prec <= 17; prec++) { /* the shortest digits that round-trip */
        snprintf(e, sizeof e, "%.*e", prec - 1, f);
        if (strtod(e, NULL) == f) break;
    }
    /* e: [-]d[.ddd]e[+-]XX */
    const char *p = e;
    int neg = *p == '-';
    if (neg) p++;
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.' && nd < 23) digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int exp10 = atoi(p + 1);
    char *o = buf;
    size_t left = len;
#define EMIT(...)                                                     \
    do {                                                              \
        int w_ = snprintf(o, left, __VA_ARGS__);                      \
        if (w_ < 0 || (size_t)w_ >= left) return;                     \
        o += w_;                                                      \
        left -= (size_t)w_;                                           \
    } while (0)
    if (neg) EMIT("-");
    if (exp10 < -4 || exp10 >= 16) {
        EMIT("%c", digits[0]);
        if (nd > 1) EMIT(".%s", digits + 1);
        EMIT("e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    } else if (exp10 < 0) {
        EMIT("0.");
        for (int i = 0; i < -exp10 - 1; i++) EMIT("0");
        EMIT("%s", digits);
    } else if (exp10 + 1 >= nd) {
        EMIT("%s", digits);
        for (int i = 0; i < exp10 + 1 - nd; i++) EMIT("0");
        EMIT(".0");
    } else {
        EMIT("%.*s.%s", exp10 + 1, digits, digits + exp10 + 1);
    }
#undef EMIT
}

/* Characters Python's str.isprintable() rejects, besides the C0/C1 controls:
 * separators and the common format characters. */
static int py_unprintable(uint32_t c) {
    if (c < 0x20 || (c >= 0x7f && c <= 0xa0) || c == 0xad) return 1;
    if (c == 0x1680 || (c >= 0x2000 && c <= 0x200f) || (c >= 0x2028 && c <= 0x202f)) return 1;
    if ((c >= 0x205f && c <= 0x206f) || c == 0x3000 || c == 0xfeff) return 1;
    if ((c >= 0xd800 && c <= 0xdfff) || (c >= 0xe000 && c <= 0xf8ff) || c == 0x180e) return 1;
    return c >= 0xfff9 && c <= 0xfffb;
}

static int repr_str(jv_buf_t *b, const char *s, size_t n) {
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    int rc = jv_buf_put(b, &q, 1);
    for (size_t i = 0; i < n && !rc;) {
        uint32_t c;
        size_t len = jv_utf8_next(s + i, n - i, &c);
        char esc[16];
        if (c == (uint32_t)q || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            rc = jv_buf_put(b, esc, 2);
        } else if (c == '\n') rc = jv_buf_puts(b, "\\n");
        else if (c == '\r') rc = jv_buf_puts(b, "\\r");
        else if (c == '\t') rc = jv_buf_puts(b, "\\t");
        else if (py_unprintable(c)) {
            snprintf(esc, sizeof esc, c < 0x100 ? "\\x%02x" : c < 0x10000 ? "\\u%04x" : "\\U%08x", c);
            rc = jv_buf_puts(b, esc);
        } else rc = jv_buf_put(b, s + i, len);
        i += len;
    }
    return rc ? rc : jv_buf_put(b, &q, 1);
}

static int write_depth(jv_buf_t *b, jv_t v, int repr, int depth) {
    if (depth > JV_MAX_DEPTH) return PV_EINVAL; /* no message: the caller reports the nesting */
    char num_buf[48];
    int rc = 0;
    switch (v.type) {
    case JV_UNDEF: return repr ? jv_buf_puts(b, "Undefined") : 0;
    case JV_NONE: return jv_buf_puts(b, "None");
    case JV_BOOL: return jv_buf_puts(b, v.u.i ? "True" : "False");
    case JV_INT:
        snprintf(num_buf, sizeof num_buf, "%lld", (long long)v.u.i);
        return jv_buf_puts(b, num_buf);
    case JV_FLOAT:
        jv_float_repr(v.u.f, num_buf, sizeof num_buf);
        return jv_buf_puts(b, num_buf);
    case JV_STR: return repr ? repr_str(b, v.s, v.n) : jv_buf_put(b, v.s, v.n);
    case JV_LIST:
    case JV_TUPLE: {
        const jv_seq_t *s = v.u.seq;
        rc = jv_buf_puts(b, v.type == JV_LIST ? "[" : "(");
        for (size_t i = 0; i < s->n && !rc; i++) {
            if (i) rc = jv_buf_puts(b, ", ");
            if (!rc) rc = write_depth(b, s->items[i], 1, depth + 1);
        }
        if (!rc && v.type == JV_TUPLE && s->n == 1) rc = jv_buf_puts(b, ",");
        return rc ? rc : jv_buf_puts(b, v.type == JV_LIST ? "]" : ")");
    }
    case JV_NS:
    case JV_DICT: {
        const jv_dict_t *d = v.u.dict;
        rc = jv_buf_puts(b, v.type == JV_NS ? "<Namespace {" : "{");
        for (size_t i = 0; i < d->n && !rc; i++) {
            if (i) rc = jv_buf_puts(b, ", ");
            if (!rc) rc = write_depth(b, d->keys[i], 1, depth + 1);
            if (!rc) rc = jv_buf_puts(b, ": ");
            if (!rc) rc = write_depth(b, d->vals[i], 1, depth + 1);
        }
        return rc ? rc : jv_buf_puts(b, v.type == JV_NS ? "}>" : "}");
    }
    case JV_METHOD:
        rc = jv_buf_puts(b, "<built-in method ");
        if (!rc) rc = jv_buf_put(b, v.s, v.n);
        return rc ? rc : jv_buf_puts(b, ">");
    case JV_MACRO: return jv_buf_puts(b, "<Macro>");
    case JV_LOOP: return jv_buf_puts(b, "<LoopContext>");
    default: return jv_buf_puts(b, "<function>");
    }
}

int jv_write(jv_buf_t *b, jv_t v, int repr) { return write_depth(b, v, repr, 0); }

/* ------------------------------------------------------------------ json.dumps */

static int json_str(jv_buf_t *b, const char *s, size_t n, int ensure_ascii) {
    int rc = jv_buf_put(b, "\"", 1);
    for (size_t i = 0; i < n && !rc;) {
        uint32_t c;
        size_t len = jv_utf8_next(s + i, n - i, &c);
        char esc[16];
        const char *e = NULL;
        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        default: break;
        }
        if (e) rc = jv_buf_puts(b, e);
        else if (c < 0x20 || (ensure_ascii && c >= 0x7f)) {
            if (c >= 0x10000) {
                uint32_t v = c - 0x10000;
                snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", c);
            }
            rc = jv_buf_puts(b, esc);
        } else rc = jv_buf_put(b, s + i, len);
        i += len;
    }
    return rc ? rc : jv_buf_put(b, "\"", 1);
}

static int json_newline(jv_buf_t *b, const jv_json_opts_t *o, int level) {
    int rc = jv_buf_put(b, "\n", 1);
    for (int i = 0; i < level && !rc; i++) rc = jv_buf_puts(b, o->indent);
    return rc;
}

/* A dict key as json.dumps writes it: strings as they are, numbers, bools and
 * None converted; anything else is a TypeError. */
static int json_key(jv_buf_t *b, jv_t k, const jv_json_opts_t *o, char *err, size_t errlen) {
    char num_buf[48];
    switch (k.type) {
    case JV_STR: return json_str(b, k.s, k.n, o->ensure_ascii);
    case JV_NONE: return jv_buf_puts(b, "\"null\"");
    case JV_BOOL: return jv_buf_puts(b, k.u.i ? "\"true\"" : "\"false\"");
    case JV_INT: snprintf(num_buf, sizeof num_buf, "\"%lld\"", (long long)k.u.i); break;
    case JV_FLOAT: {
        char f[40];
        jv_float_repr(k.u.f, f, sizeof f);
        snprintf(num_buf, sizeof num_buf, "\"%s\"", f);
        break;
    }
    default:
        return pv_errorf(err, errlen, PV_EINVAL, "keys must be str, int, float, bool or None, not %s",
                         jv_type_name(k));
    }
    return jv_buf_puts(b, num_buf);
}

static int json_cmp_keys(const void *pa, const void *pb) {
    const jv_t *a = *(const jv_t *const *)pa, *b = *(const jv_t *const *)pb;
    int res = 0;
    jv_cmp(*a, *b, &res, NULL, 0);
    return res;
}

static int tojson_depth(jv_buf_t *b, jv_t v, const jv_json_opts_t *o, int level, char *err,
                        size_t errlen);

static int json_dict(jv_buf_t *b, const jv_dict_t *d, const jv_json_opts_t *o, int level, char *err,
                     size_t errlen) {
    if (d->n == 0) return jv_buf_puts(b, "{}");
    const jv_t **order = jv_alloc(b->a, d->n, sizeof *order);
    if (!order) return PV_ENOMEM;
    for (size_t i = 0; i < d->n; i++) order[i] = &d->keys[i];
    if (o->sort_keys) {
        for (size_t i = 0; i < d->n; i++)
            if (d->keys[i].type != JV_STR)
                return pv_errorf(err, errlen, PV_EINVAL, "'<' not supported between instances of "
                                 "'%s' and 'str'", jv_type_name(d->keys[i]));
        qsort(order, d->n, sizeof *order, json_cmp_keys);
    }
    int rc = jv_buf_puts(b, "{");
    for (size_t i = 0; i < d->n && !rc; i++) {
        if (i) rc = jv_buf_puts(b, o->item_sep);
        if (!rc && o->indent) rc = json_newline(b, o, level + 1);
        if (!rc) rc = json_key(b, *order[i], o, err, errlen);
        if (!rc) rc = jv_buf_puts(b, o->key_sep);
        if (!rc) rc = tojson_depth(b, d->vals[order[i] - d->keys], o, level + 1, err, errlen);
    }
    if (!rc && o->indent) rc = json_newline(b, o, level);
    return rc ? rc : jv_buf_puts(b, "}");
}

static int tojson_depth(jv_buf_t *b, jv_t v, const jv_json_opts_t *o, int level, char *err,
                        size_t errlen) {
    if (level > JV_MAX_DEPTH) return pv_errorf(err, errlen, PV_EINVAL, "tojson: value nested too deeply");
    char num_buf[48];
    switch (v.type) {
    case JV_NONE: return jv_buf_puts(b, "null");
    case JV_BOOL: return jv_buf_puts(b, v.u.i ? "true" : "false");
    case JV_INT:
        snprintf(num_buf, sizeof num_buf, "%lld", (long long)v.u.i);
        return jv_buf_puts(b, num_buf);
    case JV_FLOAT:
        if (isnan(v.u.f)) return jv_buf_puts(b, "NaN");
        if (isinf(v.u.f)) return jv_buf_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        jv_float_repr(v.u.f, num_buf, sizeof num_buf);
        return jv_buf_puts(b, num_buf);
    case JV_STR: return json_str(b, v.s, v.n, o->ensure_ascii);
    case JV_LIST:
    case JV_TUPLE: {
        const jv_seq_t *s = v.u.seq;
        if (s->n == 0) return jv_buf_puts(b, "[]");
        int rc = jv_buf_puts(b, "[");
        for (size_t i = 0; i < s->n && !rc; i++) {
            if (i) rc = jv_buf_puts(b, o->item_sep);
            if (!rc && o->indent) rc = json_newline(b, o, level + 1);
            if (!rc) rc = tojson_depth(b, s->items[i], o, level + 1, err, errlen);
        }
        if (!rc && o->indent) rc = json_newline(b, o, level);
        return rc ? rc : jv_buf_puts(b, "]");
    }
    case JV_DICT: return json_dict(b, v.u.dict, o, level, err, errlen);
    default:
        return pv_errorf(err, errlen, PV_EINVAL, "Object of type %s is not JSON serializable",
                         jv_type_name(v));
    }
}

int jv_tojson(jv_buf_t *b, jv_t v, const jv_json_opts_t *o, char *err, size_t errlen) {
    jv_json_opts_t d = *o;
    if (!d.item_sep) d.item_sep = d.indent ? "," : ", ";
    if (!d.key_sep) d.key_sep = ": ";
    return tojson_depth(b, v, &d, 0, err, errlen);
}
