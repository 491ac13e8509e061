/* jinja_eval.c - chat template evaluator: walks the AST of jinja.c over
 * values (value.h) and writes the rendered text.
 *
 * Semantics are Jinja2's in HF's sandbox: lenient Undefined, Python scoping
 * (a for loop body is a fresh scope per iteration, if is not a scope, macros
 * see the top level and their own locals), attribute access that prefers the
 * Python attribute and falls back to the item (and the reverse for [ ]).
 * Every allocation comes from one arena per render; limits bound the output,
 * the memory, the loop iterations plus macro calls, and the nesting. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "chat/jinja_internal.h"

#define DEFAULT_MAX_OUTPUT (16u << 20)
#define DEFAULT_MAX_MEMORY (256u << 20)
#define DEFAULT_MAX_STEPS 1000000u
#define DEFAULT_MAX_DEPTH 400

#define FLOW_BREAK 1
#define FLOW_CONTINUE 2

/* ------------------------------------------------------------------ state */

typedef struct scope {
    struct scope *parent; /* enclosing scope, NULL at the top */
    size_t n, cap;        /* variables used / allocated */
    const char **names;   /* (cap) borrowed names (AST or arena) */
    jv_t *vals;           /* (cap) their values */
} scope_t;

typedef struct loop_state {
    const jv_t *items; /* (n) the iterated items (arena) */
    size_t n;          /* loop.length */
    size_t i;          /* loop.index0 */
} loop_state_t;

typedef struct rs {
    jv_arena_t *a;          /* every value of this render (owned) */
    jv_buf_t *out;          /* where output goes now: the result or a capture */
    scope_t *root;          /* the top level: the variables and top-level sets */
    pv_jinja_limits_t lim;  /* limits, defaults filled in */
    uint64_t steps;         /* loop iterations + macro calls so far */
    int depth;              /* current evaluation depth */
    struct tm now;          /* the clock of strftime_now */
    jv_t body;              /* JN_BODYREF: the captured body of a set/filter block */
    int kind;               /* pv_jinja_error_t once an error is written */
    char *err;              /* message buffer (borrowed) */
    size_t errlen;
} rs_t;

/* ------------------------------------------------------------------ errors */

static int fail_kind(rs_t *R, int kind, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail_kind(rs_t *R, int kind, int code, const char *fmt, ...) {
    if (!R->kind) {
        va_list ap;
        va_start(ap, fmt);
        if (R->err && R->errlen) vsnprintf(R->err, R->errlen, fmt, ap);
        va_end(ap);
        R->kind = kind;
    }
    return code;
}
#define RT_ERR(R, ...) fail_kind(R, PV_JINJA_RUNTIME, PV_EINVAL, __VA_ARGS__)
#define LIMIT_ERR(R, ...) fail_kind(R, PV_JINJA_LIMIT, PV_ERANGE, __VA_ARGS__)

/* Gives a message to a bare code from value.c. */
static int chk(rs_t *R, int rc) {
    if (!rc || R->kind) return rc;
    if (rc == PV_ENOMEM || jv_arena_exhausted(R->a))
        return LIMIT_ERR(R, "template exceeded the memory limit of %zu bytes", R->lim.max_memory);
    if (rc == PV_ERANGE) return LIMIT_ERR(R, "template output exceeded the limit of %zu bytes", R->lim.max_output);
    if (rc == PV_EINVAL) return RT_ERR(R, "value nested too deeply");
    return RT_ERR(R, "%s", pv_strerror(rc));
}
#define NOMEM(R) chk(R, PV_ENOMEM)

/* Raises the error an Undefined carries. */
static int raise_undef(rs_t *R, jv_t u) {
    if (u.n) return RT_ERR(R, "%.*s", (int)u.n, u.s);
    return RT_ERR(R, "value is undefined");
}

/* An Undefined whose message is formatted into the arena. */
static jv_t undef_fmt(rs_t *R, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static jv_t undef_fmt(rs_t *R, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    jv_t s = {0};
    if (jv_str_copy(R->a, buf, (size_t)n, &s)) return jv_undef(NULL, 0);
    return jv_undef(s.s, s.n);
}

/* Python's description of an object in Undefined messages. */
static const char *obj_repr(jv_t v, char *buf, size_t len) {
    if (v.type == JV_NONE) return "None";
    snprintf(buf, len, "%s object", jv_type_name(v));
    return buf;
}

static jv_t no_attr(rs_t *R, jv_t obj, const char *name, size_t n) {
    char b[64];
    return undef_fmt(R, "'%s' has no attribute '%.*s'", obj_repr(obj, b, sizeof b), (int)n, name);
}

/* ------------------------------------------------------------------ scopes */

static scope_t *scope_new(rs_t *R, scope_t *parent) {
    scope_t *s = jv_alloc(R->a, 1, sizeof *s);
    if (s) s->parent = parent;
    return s;
}

static jv_t *scope_find(scope_t *s, const char *name) {
    for (; s; s = s->parent)
        for (size_t i = s->n; i-- > 0;)
            if (strcmp(s->names[i], name) == 0) return &s->vals[i];
    return NULL;
}

static int scope_set(rs_t *R, scope_t *s, const char *name, jv_t v) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) {
            s->vals[i] = v;
            return 0;
        }
    if (s->n == s->cap) {
        void *nm, *vl;
        if (jv_grow_pair(R->a, s->names, sizeof *s->names, s->vals, sizeof *s->vals, s->n, &s->cap, &nm, &vl)) return NOMEM(R);
        s->names = nm;
        s->vals = vl;
    }
    s->names[s->n] = name;
    s->vals[s->n++] = v;
    return 0;
}

/* ------------------------------------------------------------------ helpers */

static int ev(rs_t *R, scope_t *S, const jn_t *n, jv_t *out);
static int exec_body(rs_t *R, scope_t *S, jn_t *const *v, size_t nv);
static int call_value(rs_t *R, jv_t fn, const jv_t *args, size_t nargs, const char *const *kwn,
                      const jv_t *kwv, size_t nkw, jv_t *out);
static int getattr_v(rs_t *R, jv_t obj, const char *name, size_t n, jv_t *out);
static int getitem_v(rs_t *R, jv_t obj, jv_t key, jv_t *out);

static int is_num(jv_t v) { return v.type == JV_INT || v.type == JV_BOOL || v.type == JV_FLOAT; }
static int is_intlike(jv_t v) { return v.type == JV_INT || v.type == JV_BOOL; }
static int is_seq(jv_t v) { return v.type == JV_LIST || v.type == JV_TUPLE; }
static double fnum(jv_t v) { return v.type == JV_FLOAT ? v.u.f : (double)v.u.i; }

/* str(v) as a string value (strings are returned as they are). */
static int to_str(rs_t *R, jv_t v, jv_t *out) {
    if (v.type == JV_STR) {
        *out = v;
        return 0;
    }
    jv_buf_t b;
    jv_buf_init(&b, R->a, R->lim.max_output);
    int rc = jv_write(&b, v, 0);
    if (rc) return chk(R, rc);
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

static int seq_out(rs_t *R, int type, const jv_t *items, size_t n, jv_t *out) {
    return chk(R, jv_seq_new(R->a, type, items, n, out));
}

static int str_eq(jv_t v, const char *s) { return v.type == JV_STR && v.n == strlen(s) && memcmp(v.s, s, v.n) == 0; }

/* The items a for loop (or list()) iterates: list and tuple items, dict
 * keys, the characters of a string; nothing for Undefined. */
static int iterate(rs_t *R, jv_t v, const jv_t **items, size_t *n) {
    switch (v.type) {
    case JV_UNDEF: *items = NULL; *n = 0; return 0;
    case JV_LIST:
    case JV_TUPLE: *items = v.u.seq->items; *n = v.u.seq->n; return 0;
    case JV_DICT: *items = v.u.dict->keys; *n = v.u.dict->n; return 0;
    case JV_STR: {
        size_t count = jv_utf8_len(v.s, v.n);
        jv_t *it = jv_alloc(R->a, count, sizeof *it);
        if (!it) return NOMEM(R);
        for (size_t i = 0, k = 0; i < v.n; k++) {
            uint32_t cp;
            size_t len = jv_utf8_next(v.s + i, v.n - i, &cp);
            it[k] = jv_str(v.s + i, len);
            i += len;
        }
        *items = it;
        *n = count;
        return 0;
    }
    default: return RT_ERR(R, "'%s' object is not iterable", jv_type_name(v));
    }
}

static int put_out(rs_t *R, const char *s, size_t n) { return chk(R, jv_buf_put(R->out, s, n)); }

/* Runs a body with its output captured into a string. */
static int capture(rs_t *R, scope_t *S, jn_t *const *v, size_t nv, jv_t *out) {
    jv_buf_t b, *saved = R->out;
    jv_buf_init(&b, R->a, R->lim.max_output);
    R->out = &b;
    int rc = exec_body(R, S, v, nv);
    R->out = saved;
    if (rc < 0) return rc;
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

/* ------------------------------------------------------------------ arguments */

#define MISSING (-1) /* type of an unbound parameter */
#define MAX_PARAMS 8

/* Binds positional and keyword arguments to params (in order); unbound ones
 * get type MISSING. */
static int bind(rs_t *R, const char *fname, const char *const *params, size_t np, const jv_t *args,
                size_t nargs, const char *const *kwn, const jv_t *kwv, size_t nkw, jv_t *vals) {
    if (nargs > np) return RT_ERR(R, "%s() takes at most %zu arguments (%zu given)", fname, np, nargs);
    for (size_t i = 0; i < np; i++) vals[i] = i < nargs ? args[i] : (jv_t){.type = MISSING};
    for (size_t k = 0; k < nkw; k++) {
        size_t i = 0;
        while (i < np && strcmp(params[i], kwn[k]) != 0) i++;
        if (i == np) return RT_ERR(R, "%s() got an unexpected keyword argument '%s'", fname, kwn[k]);
        if (vals[i].type != MISSING) return RT_ERR(R, "%s() got multiple values for argument '%s'", fname, kwn[k]);
        vals[i] = kwv[k];
    }
    return 0;
}

static jv_t or_default(jv_t v, jv_t def) { return v.type == MISSING ? def : v; }

static int want_int(rs_t *R, jv_t v, const char *what) {
    if (!is_intlike(v)) return RT_ERR(R, "%s must be an integer, not '%s'", what, jv_type_name(v));
    return 0;
}

static int want_str(rs_t *R, jv_t v, const char *what) {
    if (v.type != JV_STR) return RT_ERR(R, "%s must be a string, not '%s'", what, jv_type_name(v));
    return 0;
}

/* ------------------------------------------------------------------ strings */

static int py_space(uint32_t c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

static int in_chars(uint32_t c, jv_t chars) {
    for (size_t i = 0; i < chars.n;) {
        uint32_t d;
        i += jv_utf8_next(chars.s + i, chars.n - i, &d);
        if (d == c) return 1;
    }
    return 0;
}

/* Length in bytes of the character ending at s[n-1]. */
static size_t last_char_len(const char *s, size_t n) {
    size_t k = 1;
    while (k < n && k < 4 && ((unsigned char)s[n - k] & 0xc0) == 0x80) k++;
    uint32_t cp;
    return jv_utf8_next(s + n - k, k, &cp) == k ? k : 1;
}

/* strip/lstrip/rstrip: which 1 left, 2 right, 3 both; chars NULL: whitespace. */
static jv_t strip(jv_t s, int which, const jv_t *chars) {
    size_t b = 0, e = s.n;
    while ((which & 1) && b < e) {
        uint32_t c;
        size_t k = jv_utf8_next(s.s + b, e - b, &c);
        if (chars ? !in_chars(c, *chars) : !py_space(c)) break;
        b += k;
    }
    while ((which & 2) && e > b) {
        size_t k = last_char_len(s.s + b, e - b);
        uint32_t c;
        jv_utf8_next(s.s + e - k, k, &c);
        if (chars ? !in_chars(c, *chars) : !py_space(c)) break;
        e -= k;
    }
    return jv_str(s.s + b, e - b);
}

static const char *find_bytes(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0) return h;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == nd[0] && memcmp(h + i, nd, nn) == 0) return h + i;
    return NULL;
}

/* Case pairs outside ASCII: Latin-1, Latin Extended-A, Greek, Cyrillic. The
 * characters whose mapping changes length (ß, ŉ, İ) are left as they are. */
static int ext_a_pair(uint32_t c) {
    return (c >= 0x100 && c <= 0x12f) || (c >= 0x132 && c <= 0x137) || (c >= 0x139 && c <= 0x148) || (c >= 0x14a && c <= 0x177) ||
           (c >= 0x179 && c <= 0x17e);
}
static int ext_a_is_lower(uint32_t c) {
    int odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e);
    return odd_upper ? c % 2 == 0 : c % 2 == 1;
}

static uint32_t to_upper(uint32_t c) {
    if (c >= 'a' && c <= 'z') return c - 32;
    if (c < 0x80) return c;
    if ((c >= 0xe0 && c <= 0xfe && c != 0xf7) || (c >= 0x3b1 && c <= 0x3cb && c != 0x3c2) || (c >= 0x430 && c <= 0x44f))
        return c - 0x20;
    if (c == 0xff) return 0x178;
    if (ext_a_pair(c) && ext_a_is_lower(c)) return c - 1;
    if (c >= 0x450 && c <= 0x45f) return c - 0x50;
    return c;
}

static uint32_t to_lower(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0x80) return c;
    if ((c >= 0xc0 && c <= 0xde && c != 0xd7) || (c >= 0x391 && c <= 0x3ab && c != 0x3a2) || (c >= 0x410 && c <= 0x42f))
        return c + 0x20;
    if (c == 0x178) return 0xff;
    if (ext_a_pair(c) && !ext_a_is_lower(c)) return c + 1;
    if (c >= 0x400 && c <= 0x40f) return c + 0x50;
    return c;
}

static int is_cased(uint32_t c) { return to_upper(c) != c || to_lower(c) != c; }

/* Case mapping of every character: CASE_LOWER, CASE_UPPER, CASE_TITLE
 * (str.title) or CASE_CAPITALIZE (str.capitalize). */
enum { CASE_LOWER, CASE_UPPER, CASE_TITLE, CASE_CAPITALIZE };
static int map_case(rs_t *R, jv_t s, int mode, jv_t *out) {
    char *p = jv_alloc(R->a, s.n + 4, 1); /* + 4: room for one encoded character past the end */
    size_t w = 0;
    int prev_cased = 0;
    if (!p) return NOMEM(R);
    for (size_t i = 0; i < s.n;) {
        uint32_t c, m;
        size_t k = jv_utf8_next(s.s + i, s.n - i, &c);
        if (k == 1 && c >= 0x80) { /* a stray byte: copied */
            p[w++] = s.s[i++];
            continue;
        }
        if (mode == CASE_UPPER) m = to_upper(c);
        else if (mode == CASE_LOWER) m = to_lower(c);
        else if (mode == CASE_CAPITALIZE) m = i == 0 ? to_upper(c) : to_lower(c);
        else m = prev_cased ? to_lower(c) : to_upper(c);
        prev_cased = is_cased(c);
        if (jv_utf8_put(p + w, m) != k) memcpy(p + w, s.s + i, k); /* every pair keeps its length */
        w += k;
        i += k;
    }
    *out = jv_str(p, w);
    return 0;
}

/* title(): 1, capitalize(): 0. */
static int title_case(rs_t *R, jv_t s, int title, jv_t *out) {
    return map_case(R, s, title ? CASE_TITLE : CASE_CAPITALIZE, out);
}

static int str_replace(rs_t *R, jv_t s, jv_t old, jv_t rep, int64_t count, jv_t *out) {
    jv_buf_t b;
    jv_buf_init(&b, R->a, R->lim.max_output);
    int rc = 0;
    if (old.n == 0) { /* Python inserts rep around every character */
        size_t i = 0;
        for (; i <= s.n && count != 0 && !rc; count--) {
            rc = jv_buf_put(&b, rep.s, rep.n);
            if (i == s.n) {
                i++;
                break;
            }
            uint32_t cp;
            size_t k = jv_utf8_next(s.s + i, s.n - i, &cp);
            if (!rc) rc = jv_buf_put(&b, s.s + i, k);
            i += k;
        }
        if (!rc && i < s.n) rc = jv_buf_put(&b, s.s + i, s.n - i);
    } else {
        const char *p = s.s, *end = s.s + s.n, *hit;
        while (!rc && count != 0 && (hit = find_bytes(p, (size_t)(end - p), old.s, old.n))) {
            rc = jv_buf_put(&b, p, (size_t)(hit - p));
            if (!rc) rc = jv_buf_put(&b, rep.s, rep.n);
            p = hit + old.n;
            count--;
        }
        if (!rc) rc = jv_buf_put(&b, p, (size_t)(end - p));
    }
    if (rc) return chk(R, rc);
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

static int str_split(rs_t *R, jv_t s, jv_t sep, int64_t maxsplit, jv_t *out) {
    jv_t *parts = NULL;
    size_t n = 0, cap = 0;
    const char *p = s.s, *end = s.s + s.n;
    for (;;) {
        jv_t piece;
        int last = 0;
        if (sep.type == JV_STR) {
            if (sep.n == 0) return RT_ERR(R, "empty separator");
            const char *hit = maxsplit != 0 ? find_bytes(p, (size_t)(end - p), sep.s, sep.n) : NULL;
            piece = jv_str(p, hit ? (size_t)(hit - p) : (size_t)(end - p));
            last = !hit;
            if (hit) p = hit + sep.n;
        } else { /* runs of whitespace, no empty pieces */
            jv_t rest = strip(jv_str(p, (size_t)(end - p)), 1, NULL);
            p = rest.s;
            if (rest.n == 0) break;
            const char *q = p;
            if (maxsplit == 0) q = p + strip(rest, 2, NULL).n;
            while (q < end && maxsplit != 0) {
                uint32_t c;
                size_t k = jv_utf8_next(q, (size_t)(end - q), &c);
                if (py_space(c)) break;
                q += k;
            }
            piece = jv_str(p, (size_t)(q - p));
            p = q;
            last = p >= end;
        }
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 8;
            jv_t *np = jv_alloc(R->a, nc, sizeof *np);
            if (!np) return NOMEM(R);
            if (n) memcpy(np, parts, n * sizeof *np);
            parts = np;
            cap = nc;
        }
        parts[n++] = piece;
        if (maxsplit > 0) maxsplit--;
        if (last) break;
    }
    return seq_out(R, JV_LIST, parts, n, out);
}

static int64_t char_index(jv_t s, const char *at) { return (int64_t)jv_utf8_len(s.s, (size_t)(at - s.s)); }

/* "{} {0} {name}".format(...): fields without format specs. */
static int str_format(rs_t *R, jv_t fmt, const jv_t *args, size_t nargs, const char *const *kwn,
                      const jv_t *kwv, size_t nkw, jv_t *out) {
    jv_buf_t b;
    jv_buf_init(&b, R->a, R->lim.max_output);
    size_t auto_i = 0;
    for (size_t i = 0; i < fmt.n;) {
        char c = fmt.s[i];
        if ((c == '{' || c == '}') && i + 1 < fmt.n && fmt.s[i + 1] == c) {
            if (jv_buf_put(&b, &c, 1)) return chk(R, PV_ERANGE);
            i += 2;
            continue;
        }
        if (c != '{') {
            if (jv_buf_put(&b, &c, 1)) return chk(R, PV_ERANGE);
            i++;
            continue;
        }
        const char *close = memchr(fmt.s + i, '}', fmt.n - i);
        if (!close) return RT_ERR(R, "Single '{' encountered in format string");
        const char *f = fmt.s + i + 1;
        size_t fl = (size_t)(close - f);
        jv_t v = {.type = MISSING};
        if (fl == 0) {
            if (auto_i < nargs) v = args[auto_i++];
        } else if (f[0] >= '0' && f[0] <= '9') {
            size_t k = (size_t)strtoul(f, NULL, 10);
            if (k < nargs) v = args[k];
        } else {
            for (size_t k = 0; k < nkw; k++)
                if (strlen(kwn[k]) == fl && memcmp(kwn[k], f, fl) == 0) v = kwv[k];
        }
        if (v.type == MISSING) return RT_ERR(R, "format field '%.*s' has no argument", (int)fl, f);
        int rc = jv_write(&b, v, 0);
        if (rc) return chk(R, rc);
        i = (size_t)(close - fmt.s) + 1;
    }
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

/* ------------------------------------------------------------------ methods */

static const char *const STR_METHODS[] = {
    "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format",
    "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier",
    "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower",
    "lstrip", "maketrans", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex",
    "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase",
    "title", "translate", "upper", "zfill", NULL};
static const char *const DICT_METHODS[] = {"copy", "fromkeys", "get", "items", "keys", "values", NULL};
static const char *const DICT_UNSAFE[] = {"clear", "pop", "popitem", "setdefault", "update", NULL};
static const char *const LIST_METHODS[] = {"copy", "count", "index", NULL};
static const char *const LIST_UNSAFE[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort", NULL};

static int in_list(const char *const *l, const char *name, size_t n) {
    for (; *l; l++)
        if (strlen(*l) == n && memcmp(*l, name, n) == 0) return 1;
    return 0;
}

static int bound_method(rs_t *R, jv_t obj, const char *name, size_t n, jv_t *out) {
    jv_t *self = jv_alloc(R->a, 1, sizeof *self);
    if (!self) return NOMEM(R);
    *self = obj;
    *out = (jv_t){.type = JV_METHOD, .u.ptr = self, .s = name, .n = n};
    return 0;
}

static int call_str_method(rs_t *R, jv_t s, const char *m, const jv_t *args, size_t nargs,
                           const char *const *kwn, const jv_t *kwv, size_t nkw, jv_t *out) {
    jv_t p[MAX_PARAMS];
    int rc;
    if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
        static const char *const ps[] = {"chars"};
        if ((rc = bind(R, m, ps, 1, args, nargs, kwn, kwv, nkw, p))) return rc;
        int which = m[0] == 'l' ? 1 : m[0] == 'r' ? 2 : 3;
        if (p[0].type == MISSING || p[0].type == JV_NONE) *out = strip(s, which, NULL);
        else if ((rc = want_str(R, p[0], "strip arg"))) return rc;
        else *out = strip(s, which, &p[0]);
        return 0;
    }
    if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        static const char *const ps[] = {"sep", "maxsplit"};
        int64_t maxsplit = -1;
        if ((rc = bind(R, m, ps, 2, args, nargs, kwn, kwv, nkw, p))) return rc;
        if (p[1].type != MISSING && (rc = want_int(R, p[1], "maxsplit"))) return rc;
        if (p[1].type != MISSING) maxsplit = p[1].u.i;
        if (p[0].type != MISSING && p[0].type != JV_NONE && (rc = want_str(R, p[0], "sep"))) return rc;
        if (!strcmp(m, "rsplit") && maxsplit >= 0) return RT_ERR(R, "rsplit() with maxsplit is not supported");
        return str_split(R, s, p[0], maxsplit, out);
    }
    if (!strcmp(m, "replace")) {
        static const char *const ps[] = {"old", "new", "count"};
        if ((rc = bind(R, m, ps, 3, args, nargs, kwn, kwv, nkw, p))) return rc;
        if (p[0].type == MISSING || p[1].type == MISSING) return RT_ERR(R, "replace() takes at least 2 arguments");
        if ((rc = want_str(R, p[0], "replace() argument 1")) || (rc = want_str(R, p[1], "replace() argument 2")))
            return rc;
        int64_t count = -1;
        if (p[2].type != MISSING && (rc = want_int(R, p[2], "count"))) return rc;
        if (p[2].type != MISSING) count = p[2].u.i;
        return str_replace(R, s, p[0], p[1], count, out);
    }
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        if (nargs < 1) return RT_ERR(R, "%s() takes at least 1 argument", m);
        const jv_t *cands = &args[0];
        size_t nc = 1;
        if (is_seq(args[0])) {
            cands = args[0].u.seq->items;
            nc = args[0].u.seq->n;
        }
        int hit = 0;
        for (size_t i = 0; i < nc && !hit; i++) {
            if ((rc = want_str(R, cands[i], m))) return rc;
            jv_t c = cands[i];
            hit = c.n <= s.n && memcmp(m[0] == 's' ? s.s : s.s + s.n - c.n, c.s, c.n) == 0;
        }
        *out = jv_bool(hit);
        return 0;
    }
    if (!strcmp(m, "upper") || !strcmp(m, "lower")) return map_case(R, s, m[0] == 'u', out);
    if (!strcmp(m, "title") || !strcmp(m, "capitalize")) return title_case(R, s, m[0] == 't', out);
    if (!strcmp(m, "find") || !strcmp(m, "index") || !strcmp(m, "rfind") || !strcmp(m, "count")) {
        if (nargs < 1 || (rc = want_str(R, args[0], m))) return nargs < 1 ? RT_ERR(R, "%s() takes an argument", m) : rc;
        jv_t sub = args[0];
        if (!strcmp(m, "count")) {
            int64_t c = 0;
            if (sub.n == 0) c = (int64_t)jv_utf8_len(s.s, s.n) + 1;
            else
                for (const char *q = s.s, *h; (h = find_bytes(q, (size_t)(s.s + s.n - q), sub.s, sub.n)); q = h + sub.n) c++;
            *out = jv_int(c);
            return 0;
        }
        const char *h = NULL;
        if (m[0] == 'r') {
            for (const char *q = s.s, *x; (x = find_bytes(q, (size_t)(s.s + s.n - q), sub.s, sub.n)); q = x + 1) {
                h = x;
                if (x == s.s + s.n) break;
            }
        } else h = find_bytes(s.s, s.n, sub.s, sub.n);
        if (!h && m[0] == 'i') return RT_ERR(R, "substring not found");
        *out = jv_int(h ? char_index(s, h) : -1);
        return 0;
    }
    if (!strcmp(m, "join")) {
        const jv_t *items;
        size_t n;
        if (nargs != 1) return RT_ERR(R, "join() takes exactly one argument");
        if ((rc = iterate(R, args[0], &items, &n))) return rc;
        jv_buf_t b;
        jv_buf_init(&b, R->a, R->lim.max_output);
        for (size_t i = 0; i < n; i++) {
            if (items[i].type != JV_STR)
                return RT_ERR(R, "sequence item %zu: expected str instance, %s found", i, jv_type_name(items[i]));
            if ((i && jv_buf_put(&b, s.s, s.n)) || jv_buf_put(&b, items[i].s, items[i].n)) return chk(R, PV_ERANGE);
        }
        *out = jv_str(b.p ? b.p : "", b.n);
        return 0;
    }
    if (!strcmp(m, "format")) return str_format(R, s, args, nargs, kwn, kwv, nkw, out);
    if (!strcmp(m, "removeprefix") || !strcmp(m, "removesuffix")) {
        if (nargs != 1 || (rc = want_str(R, args[0], m))) return nargs != 1 ? RT_ERR(R, "%s() takes one argument", m) : rc;
        jv_t a = args[0];
        *out = s;
        if (a.n <= s.n && m[6] == 'p' && memcmp(s.s, a.s, a.n) == 0) *out = jv_str(s.s + a.n, s.n - a.n);
        if (a.n <= s.n && m[6] == 's' && memcmp(s.s + s.n - a.n, a.s, a.n) == 0) *out = jv_str(s.s, s.n - a.n);
        return 0;
    }
    if (!strcmp(m, "splitlines")) {
        jv_t *parts = jv_alloc(R->a, s.n + 1, sizeof *parts);
        size_t n = 0, start = 0;
        if (!parts) return NOMEM(R);
        for (size_t i = 0; i < s.n; i++) {
            if (s.s[i] != '\n' && s.s[i] != '\r') continue;
            parts[n++] = jv_str(s.s + start, i - start);
            if (s.s[i] == '\r' && i + 1 < s.n && s.s[i + 1] == '\n') i++;
            start = i + 1;
        }
        if (start < s.n) parts[n++] = jv_str(s.s + start, s.n - start);
        return seq_out(R, JV_LIST, parts, n, out);
    }
    if (!strncmp(m, "is", 2)) {
        int all = s.n > 0;
        for (size_t i = 0; i < s.n && all; i++) {
            unsigned char c = (unsigned char)s.s[i];
            int alpha = (c | 32) >= 'a' && (c | 32) <= 'z', digit = c >= '0' && c <= '9';
            if (!strcmp(m, "isdigit") || !strcmp(m, "isdecimal") || !strcmp(m, "isnumeric")) all = digit;
            else if (!strcmp(m, "isalpha")) all = alpha;
            else if (!strcmp(m, "isalnum")) all = alpha || digit;
            else if (!strcmp(m, "isspace")) all = py_space(c);
            else if (!strcmp(m, "islower")) all = !(c >= 'A' && c <= 'Z');
            else if (!strcmp(m, "isupper")) all = !(c >= 'a' && c <= 'z');
            else return RT_ERR(R, "str.%s() is not supported", m);
        }
        *out = jv_bool(all);
        return 0;
    }
    return RT_ERR(R, "str.%s() is not supported", m);
}

static int call_dict_method(rs_t *R, jv_t d, const char *m, const jv_t *args, size_t nargs,
                            const char *const *kwn, const jv_t *kwv, size_t nkw, jv_t *out) {
    const jv_dict_t *dict = d.u.dict;
    if (!strcmp(m, "get")) {
        jv_t p[2];
        static const char *const ps[] = {"key", "default"};
        int rc = bind(R, m, ps, 2, args, nargs, kwn, kwv, nkw, p);
        if (rc) return rc;
        if (p[0].type == MISSING) return RT_ERR(R, "get expected at least 1 argument, got 0");
        const jv_t *v = jv_dict_get(dict, p[0]);
        *out = v ? *v : or_default(p[1], jv_none());
        return 0;
    }
    if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
        jv_t *items = jv_alloc(R->a, dict->n, sizeof *items);
        if (!items) return NOMEM(R);
        for (size_t i = 0; i < dict->n; i++) {
            if (m[0] == 'k') items[i] = dict->keys[i];
            else if (m[0] == 'v') items[i] = dict->vals[i];
            else {
                jv_t pair[2] = {dict->keys[i], dict->vals[i]};
                int rc = seq_out(R, JV_TUPLE, pair, 2, &items[i]);
                if (rc) return rc;
            }
        }
        return seq_out(R, JV_LIST, items, dict->n, out);
    }
    if (!strcmp(m, "copy")) {
        *out = d;
        return 0;
    }
    return RT_ERR(R, "dict.%s() is not supported", m);
}

static int call_method(rs_t *R, jv_t fn, const jv_t *args, size_t nargs, const char *const *kwn,
                       const jv_t *kwv, size_t nkw, jv_t *out) {
    jv_t self = *(const jv_t *)fn.u.ptr;
    const char *m = fn.s; /* NUL-terminated: the AST's name */
    if (self.type == JV_STR) return call_str_method(R, self, m, args, nargs, kwn, kwv, nkw, out);
    if (self.type == JV_DICT) return call_dict_method(R, self, m, args, nargs, kwn, kwv, nkw, out);
    if (is_seq(self) && (!strcmp(m, "index") || !strcmp(m, "count"))) {
        if (nargs != 1) return RT_ERR(R, "%s() takes exactly one argument", m);
        int64_t count = 0;
        for (size_t i = 0; i < self.u.seq->n; i++)
            if (jv_eq(self.u.seq->items[i], args[0])) {
                if (m[0] == 'i') {
                    *out = jv_int((int64_t)i);
                    return 0;
                }
                count++;
            }
        if (m[0] == 'i') return RT_ERR(R, "x not in list");
        *out = jv_int(count);
        return 0;
    }
    if (is_seq(self) && !strcmp(m, "copy")) {
        *out = self;
        return 0;
    }
    if (self.type == JV_LOOP && !strcmp(m, "cycle")) {
        const loop_state_t *ls = self.u.ptr;
        if (nargs == 0) return RT_ERR(R, "no items for cycling given");
        *out = args[ls->i % nargs];
        return 0;
    }
    return RT_ERR(R, "%s.%s() is not supported", jv_type_name(self), m);
}

/* ------------------------------------------------------------------ attributes and items */

static int loop_attr(rs_t *R, jv_t obj, const char *name, size_t n, jv_t *out) {
    const loop_state_t *ls = obj.u.ptr;
    int64_t i = (int64_t)ls->i, len = (int64_t)ls->n;
#define IS(s) (n == sizeof(s) - 1 && memcmp(name, s, n) == 0)
    if (IS("index")) *out = jv_int(i + 1);
    else if (IS("index0")) *out = jv_int(i);
    else if (IS("revindex")) *out = jv_int(len - i);
    else if (IS("revindex0")) *out = jv_int(len - i - 1);
    else if (IS("first")) *out = jv_bool(i == 0);
    else if (IS("last")) *out = jv_bool(i == len - 1);
    else if (IS("length")) *out = jv_int(len);
    else if (IS("depth")) *out = jv_int(1);
    else if (IS("depth0")) *out = jv_int(0);
    else if (IS("previtem")) *out = i > 0 ? ls->items[i - 1] : undef_fmt(R, "there is no previous item");
    else if (IS("nextitem")) *out = i + 1 < len ? ls->items[i + 1] : undef_fmt(R, "there is no next item");
    else if (IS("cycle")) return bound_method(R, obj, "cycle", 5, out);
    else *out = no_attr(R, obj, name, n);
#undef IS
    return 0;
}

static int getattr_v(rs_t *R, jv_t obj, const char *name, size_t n, jv_t *out) {
    if (obj.type == JV_UNDEF) return raise_undef(R, obj);
    if (n > 0 && name[0] == '_') {
        *out = no_attr(R, obj, name, n);
        return 0;
    }
    switch (obj.type) {
    case JV_DICT:
        if (in_list(DICT_METHODS, name, n)) return bound_method(R, obj, name, n, out);
        if (in_list(DICT_UNSAFE, name, n)) break;
        {
            const jv_t *v = jv_dict_gets(obj.u.dict, name, n);
            *out = v ? *v : no_attr(R, obj, name, n);
        }
        return 0;
    case JV_NS: {
        const jv_t *v = jv_dict_gets(obj.u.dict, name, n);
        *out = v ? *v : no_attr(R, obj, name, n);
        return 0;
    }
    case JV_STR:
        if (in_list(STR_METHODS, name, n)) return bound_method(R, obj, name, n, out);
        *out = no_attr(R, obj, name, n);
        return 0;
    case JV_LIST:
    case JV_TUPLE:
        if (in_list(LIST_METHODS, name, n)) return bound_method(R, obj, name, n, out);
        if (obj.type == JV_LIST && in_list(LIST_UNSAFE, name, n)) break;
        *out = no_attr(R, obj, name, n);
        return 0;
    case JV_LOOP: return loop_attr(R, obj, name, n, out);
    default: *out = no_attr(R, obj, name, n); return 0;
    }
    /* the sandbox: mutating methods of the immutable environment */
    *out = undef_fmt(R, "access to attribute '%.*s' of '%s' object is unsafe.", (int)n, name, jv_type_name(obj));
    return 0;
}

static int getitem_v(rs_t *R, jv_t obj, jv_t key, jv_t *out) {
    if (obj.type == JV_UNDEF) return raise_undef(R, obj);
    if (obj.type == JV_DICT) {
        const jv_t *v = jv_dict_get(obj.u.dict, key);
        if (v) {
            *out = *v;
            return 0;
        }
    } else if ((is_seq(obj) || obj.type == JV_STR) && is_intlike(key)) {
        int64_t len = obj.type == JV_STR ? (int64_t)jv_utf8_len(obj.s, obj.n) : (int64_t)obj.u.seq->n;
        int64_t i = key.u.i < 0 ? key.u.i + len : key.u.i;
        if (i >= 0 && i < len) {
            if (obj.type != JV_STR) *out = obj.u.seq->items[i];
            else {
                size_t off = jv_utf8_offset(obj.s, obj.n, (size_t)i);
                uint32_t cp;
                *out = jv_str(obj.s + off, jv_utf8_next(obj.s + off, obj.n - off, &cp));
            }
            return 0;
        }
    }
    if (key.type == JV_STR) {
        char *name = jv_alloc(R->a, key.n + 1, 1); /* methods keep a NUL-terminated name */
        if (!name) return NOMEM(R);
        memcpy(name, key.s, key.n);
        return getattr_v(R, obj, name, key.n, out);
    }
    char b[64];
    jv_buf_t kb;
    jv_buf_init(&kb, R->a, 200);
    if (jv_write(&kb, key, 1)) kb.n = 0;
    *out = undef_fmt(R, "%s has no element %.*s", obj_repr(obj, b, sizeof b), (int)kb.n, kb.p ? kb.p : "");
    return 0;
}

/* Python slice index arithmetic: the first index and the count. */
static int slice_indices(rs_t *R, int64_t len, jv_t a, jv_t b, jv_t c, int64_t *start, int64_t *step,
                         int64_t *count) {
    int64_t st = 1, s, e;
    if (c.type != JV_NONE && !is_intlike(c)) return RT_ERR(R, "slice indices must be integers or None");
    if (c.type != JV_NONE) st = c.u.i;
    if (st == 0) return RT_ERR(R, "slice step cannot be zero");
    if (st < -INT64_MAX) st = -INT64_MAX;
    if ((a.type != JV_NONE && !is_intlike(a)) || (b.type != JV_NONE && !is_intlike(b)))
        return RT_ERR(R, "slice indices must be integers or None");
    if (a.type == JV_NONE) s = st < 0 ? len - 1 : 0;
    else {
        s = a.u.i;
        if (s < 0) s = s < -len ? (st < 0 ? -1 : 0) : s + len;
        else if (s >= len) s = st < 0 ? len - 1 : len;
    }
    if (b.type == JV_NONE) e = st < 0 ? -1 : len;
    else {
        e = b.u.i;
        if (e < 0) e = e < -len ? (st < 0 ? -1 : 0) : e + len;
        else if (e >= len) e = st < 0 ? len - 1 : len;
    }
    if (st < 0) *count = e < s ? (s - e - 1) / (-st) + 1 : 0;
    else *count = s < e ? (e - s - 1) / st + 1 : 0;
    *start = s;
    *step = st;
    return 0;
}

static int slice_v(rs_t *R, jv_t obj, jv_t a, jv_t b, jv_t c, jv_t *out) {
    if (obj.type == JV_UNDEF) return raise_undef(R, obj);
    if (!is_seq(obj) && obj.type != JV_STR) {
        *out = undef_fmt(R, "'%s' object is not subscriptable", jv_type_name(obj));
        return 0;
    }
    size_t *offs = NULL;
    int64_t len;
    if (obj.type == JV_STR) { /* character offsets */
        len = (int64_t)jv_utf8_len(obj.s, obj.n);
        if (!(offs = jv_alloc(R->a, (size_t)len + 1, sizeof *offs))) return NOMEM(R);
        for (size_t i = 0, k = 0; k <= (size_t)len; k++) {
            offs[k] = i;
            uint32_t cp;
            if (i < obj.n) i += jv_utf8_next(obj.s + i, obj.n - i, &cp);
        }
    } else len = (int64_t)obj.u.seq->n;
    int64_t start = 0, step = 1, count = 0;
    int rc = slice_indices(R, len, a, b, c, &start, &step, &count);
    if (rc) return rc;
    if (obj.type != JV_STR) {
        jv_t *items = jv_alloc(R->a, (size_t)count, sizeof *items);
        if (!items && count) return NOMEM(R);
        for (int64_t k = 0; k < count; k++) items[k] = obj.u.seq->items[start + k * step];
        return seq_out(R, obj.type, items, (size_t)count, out);
    }
    if (step == 1) {
        *out = jv_str(obj.s + offs[start], count ? offs[start + count] - offs[start] : 0);
        return 0;
    }
    char *p = jv_alloc(R->a, obj.n + 1, 1);
    size_t w = 0;
    if (!p) return NOMEM(R);
    for (int64_t k = 0; k < count; k++) {
        int64_t i = start + k * step;
        memcpy(p + w, obj.s + offs[i], offs[i + 1] - offs[i]);
        w += offs[i + 1] - offs[i];
    }
    *out = jv_str(p, w);
    return 0;
}

/* ------------------------------------------------------------------ operators */

static int contains(rs_t *R, jv_t hay, jv_t needle, int *res) {
    switch (hay.type) {
    case JV_UNDEF: *res = 0; return 0;
    case JV_STR:
        if (needle.type != JV_STR)
            return RT_ERR(R, "'in <string>' requires string as left operand, not %s", jv_type_name(needle));
        *res = find_bytes(hay.s, hay.n, needle.s, needle.n) != NULL;
        return 0;
    case JV_LIST:
    case JV_TUPLE:
        *res = 0;
        for (size_t i = 0; i < hay.u.seq->n && !*res; i++) *res = jv_eq(hay.u.seq->items[i], needle);
        return 0;
    case JV_DICT: *res = jv_dict_get(hay.u.dict, needle) != NULL; return 0;
    default: return RT_ERR(R, "argument of type '%s' is not iterable", jv_type_name(hay));
    }
}

static int int_overflow(rs_t *R) { return RT_ERR(R, "integer overflow"); }

static int repeat(rs_t *R, jv_t v, int64_t times, jv_t *out) {
    if (times < 0) times = 0;
    size_t unit = v.type == JV_STR ? v.n : v.u.seq->n * sizeof(jv_t);
    if (unit && (uint64_t)times > R->lim.max_output / unit)
        return LIMIT_ERR(R, "repetition result exceeds the limit of %zu bytes", R->lim.max_output);
    if (v.type == JV_STR) {
        char *p = jv_alloc(R->a, v.n * (size_t)times + 1, 1);
        if (!p) return NOMEM(R);
        for (int64_t i = 0; i < times; i++) memcpy(p + (size_t)i * v.n, v.s, v.n);
        *out = jv_str(p, v.n * (size_t)times);
        return 0;
    }
    size_t n = v.u.seq->n;
    jv_t *items = jv_alloc(R->a, n * (size_t)times, sizeof *items);
    if (!items) return NOMEM(R);
    for (int64_t i = 0; i < times; i++) memcpy(items + (size_t)i * n, v.u.seq->items, n * sizeof *items);
    return seq_out(R, v.type, items, n * (size_t)times, out);
}

static int binop_type_err(rs_t *R, int op, jv_t a, jv_t b) {
    const char *sym = op == 'F' ? "//" : op == 'P' ? "** or pow()" : op == '+' ? "+" : op == '-' ? "-"
                    : op == '*' ? "*" : op == '/' ? "/" : "%";
    if (op == '+' && (a.type == JV_STR || a.type == JV_LIST))
        return RT_ERR(R, "can only concatenate %s (not \"%s\") to %s", jv_type_name(a), jv_type_name(b),
                      jv_type_name(a));
    return RT_ERR(R, "unsupported operand type(s) for %s: '%s' and '%s'", sym, jv_type_name(a), jv_type_name(b));
}

static int concat2(rs_t *R, jv_t a, jv_t b, jv_t *out) {
    if (a.type == JV_STR) {
        if (a.n + b.n > R->lim.max_output) return LIMIT_ERR(R, "string exceeds the limit of %zu bytes", R->lim.max_output);
        char *p = jv_alloc(R->a, a.n + b.n + 1, 1);
        if (!p) return NOMEM(R);
        memcpy(p, a.s, a.n);
        memcpy(p + a.n, b.s, b.n);
        *out = jv_str(p, a.n + b.n);
        return 0;
    }
    size_t n = a.u.seq->n + b.u.seq->n;
    jv_t *items = jv_alloc(R->a, n, sizeof *items);
    if (!items && n) return NOMEM(R);
    if (a.u.seq->n) memcpy(items, a.u.seq->items, a.u.seq->n * sizeof *items);
    if (b.u.seq->n) memcpy(items + a.u.seq->n, b.u.seq->items, b.u.seq->n * sizeof *items);
    return seq_out(R, a.type, items, n, out);
}

static int int_arith(rs_t *R, int op, int64_t x, int64_t y, jv_t *out) {
    int64_t r;
    switch (op) {
    case '+': if (__builtin_add_overflow(x, y, &r)) return int_overflow(R); break;
    case '-': if (__builtin_sub_overflow(x, y, &r)) return int_overflow(R); break;
    case '*': if (__builtin_mul_overflow(x, y, &r)) return int_overflow(R); break;
    case 'F':
    case '%':
        if (y == 0) return RT_ERR(R, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) return int_overflow(R);
        r = op == 'F' ? x / y : x % y;
        if ((x % y != 0) && ((x < 0) != (y < 0))) r = op == 'F' ? r - 1 : r + y;
        break;
    case 'P':
        if (y < 0) {
            *out = jv_float(pow((double)x, (double)y));
            return 0;
        }
        r = 1;
        for (int64_t i = 0; i < y; i++) {
            if (__builtin_mul_overflow(r, x, &r)) return int_overflow(R);
            if (r == 0 || r == 1) break;
            if (r == -1) {
                r = (y - i - 1) % 2 ? -r : r;
                break;
            }
        }
        break;
    default: return RT_ERR(R, "bad operator");
    }
    *out = jv_int(r);
    return 0;
}

static int arith(rs_t *R, int op, jv_t a, jv_t b, jv_t *out) {
    if (a.type == JV_UNDEF) return raise_undef(R, a);
    if (b.type == JV_UNDEF) return raise_undef(R, b);
    if (is_intlike(a) && is_intlike(b) && op != '/') return int_arith(R, op, a.u.i, b.u.i, out);
    if (is_num(a) && is_num(b)) {
        double x = fnum(a), y = fnum(b);
        if ((op == '/' || op == 'F' || op == '%') && y == 0.0)
            return RT_ERR(R, op == '/' ? "division by zero" : "float modulo");
        switch (op) {
        case '+': *out = jv_float(x + y); return 0;
        case '-': *out = jv_float(x - y); return 0;
        case '*': *out = jv_float(x * y); return 0;
        case '/': *out = jv_float(x / y); return 0;
        case 'F': *out = jv_float(floor(x / y)); return 0;
        case '%': {
            double m = fmod(x, y);
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            *out = jv_float(m);
            return 0;
        }
        case 'P': *out = jv_float(pow(x, y)); return 0;
        }
    }
    if (op == '+' && a.type == b.type && (a.type == JV_STR || is_seq(a))) return concat2(R, a, b, out);
    if (op == '*' && (a.type == JV_STR || is_seq(a)) && is_intlike(b)) return repeat(R, a, b.u.i, out);
    if (op == '*' && (b.type == JV_STR || is_seq(b)) && is_intlike(a)) return repeat(R, b, a.u.i, out);
    if (op == '%' && a.type == JV_STR) { /* printf-style: %s and %d with one value or a tuple */
        const jv_t *vals = is_seq(b) && b.type == JV_TUPLE ? b.u.seq->items : &b;
        size_t nv = b.type == JV_TUPLE ? b.u.seq->n : 1, k = 0;
        jv_buf_t buf;
        jv_buf_init(&buf, R->a, R->lim.max_output);
        for (size_t i = 0; i < a.n; i++) {
            int rc;
            if (a.s[i] != '%') rc = jv_buf_put(&buf, a.s + i, 1);
            else if (i + 1 < a.n && a.s[i + 1] == '%') rc = jv_buf_put(&buf, "%", 1), i++;
            else if (i + 1 < a.n && (a.s[i + 1] == 's' || a.s[i + 1] == 'd') && k < nv) rc = jv_write(&buf, vals[k++], 0), i++;
            else return RT_ERR(R, "unsupported format string");
            if (rc) return chk(R, rc);
        }
        if (k != nv) return RT_ERR(R, "not all arguments converted during string formatting");
        *out = jv_str(buf.p ? buf.p : "", buf.n);
        return 0;
    }
    return binop_type_err(R, op, a, b);
}

/* Three-way order of a and b; Python's TypeError for unorderable values. */
static int ordered(rs_t *R, int op, jv_t a, jv_t b, int *c) {
    if (!jv_cmp(a, b, c, NULL, 0)) return 0;
    const char *sym = op == 'L' ? "<=" : op == '>' ? ">" : op == 'G' ? ">=" : "<";
    return RT_ERR(R, "'%s' not supported between instances of '%s' and '%s'", sym, jv_type_name(a),
                  jv_type_name(b));
}

static int compare(rs_t *R, int op, jv_t a, jv_t b, int *res) {
    int c, rc;
    switch (op) {
    case '=': *res = jv_eq(a, b); return 0;
    case '!': *res = !jv_eq(a, b); return 0;
    case 'i': return contains(R, b, a, res);
    case 'n':
        if ((rc = contains(R, b, a, res))) return rc;
        *res = !*res;
        return 0;
    }
    if (a.type == JV_UNDEF) return raise_undef(R, a);
    if (b.type == JV_UNDEF) return raise_undef(R, b);
    if ((rc = ordered(R, op, a, b, &c))) return rc;
    *res = op == '<' ? c < 0 : op == 'L' ? c <= 0 : op == '>' ? c > 0 : c >= 0;
    return 0;
}

/* ------------------------------------------------------------------ filters */

typedef struct fctx {
    rs_t *R;                 /* the render */
    jv_t in;                 /* the filtered value */
    const jv_t *args;        /* (nargs) positional arguments */
    size_t nargs;
    const char *const *kwn;  /* (nkw) keyword names */
    const jv_t *kwv;         /* (nkw) keyword values */
    size_t nkw;
} fctx_t;

typedef int (*filter_fn)(fctx_t *f, jv_t *p, jv_t *out);

typedef struct filter_def {
    const char *name;              /* as templates spell it */
    filter_fn fn;                  /* NULL: a Jinja filter we do not implement */
    const char *params[MAX_PARAMS]; /* parameter names after the input, NULL-terminated */
} filter_def_t;

static int apply_test(rs_t *R, const char *name, jv_t v, const jv_t *args, size_t nargs, int *res);
static int apply_filter(rs_t *R, const char *name, jv_t in, const jv_t *args, size_t nargs,
                        const char *const *kwn, const jv_t *kwv, size_t nkw, jv_t *out);

/* attribute='a.b.0' lookup, as Jinja's make_attrgetter. */
static int attr_path(rs_t *R, jv_t v, jv_t path, jv_t *out) {
    if (is_intlike(path)) return getitem_v(R, v, path, out);
    int rc = want_str(R, path, "attribute");
    for (size_t i = 0; !rc && i <= path.n;) {
        size_t j = i;
        while (j < path.n && path.s[j] != '.') j++;
        jv_t part = jv_str(path.s + i, j - i);
        int digits = j > i;
        for (size_t k = i; k < j; k++) digits &= path.s[k] >= '0' && path.s[k] <= '9';
        if (digits) part = jv_int(strtoll(path.s + i, NULL, 10));
        if (v.type == JV_UNDEF) {
            *out = v;
            return 0;
        }
        if ((rc = getitem_v(R, v, part, &v))) return rc;
        i = j + 1;
    }
    *out = v;
    return rc;
}

/* case-insensitive key for sort/unique/min/max: strings lowered. */
static int fold_key(rs_t *R, jv_t v, int case_sensitive, jv_t *out) {
    if (case_sensitive || v.type != JV_STR) {
        *out = v;
        return 0;
    }
    return map_case(R, v, 0, out);
}

/* A stable merge sort of items by keys; errors (unorderable) stop it. */
static int sort_by(rs_t *R, jv_t *items, jv_t *keys, size_t n, int reverse) {
    if (n < 2) return 0;
    jv_t *ti = jv_alloc(R->a, n, sizeof *ti), *tk = jv_alloc(R->a, n, sizeof *tk);
    if (!ti || !tk) return NOMEM(R);
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, o = lo;
            while (i < mid || j < hi) {
                int take_right = 0;
                if (i < mid && j < hi) {
                    int c;
                    if (ordered(R, '<', keys[j], keys[i], &c)) return PV_EINVAL;
                    take_right = reverse ? c > 0 : c < 0;
                } else take_right = i >= mid;
                size_t src = take_right ? j++ : i++;
                ti[o] = items[src];
                tk[o++] = keys[src];
            }
        }
        memcpy(items, ti, n * sizeof *ti);
        memcpy(keys, tk, n * sizeof *tk);
    }
    return 0;
}

static int f_length(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t v = f->in;
    switch (v.type) {
    case JV_UNDEF: *out = jv_int(0); return 0;
    case JV_STR: *out = jv_int((int64_t)jv_utf8_len(v.s, v.n)); return 0;
    case JV_LIST:
    case JV_TUPLE: *out = jv_int((int64_t)v.u.seq->n); return 0;
    case JV_DICT: *out = jv_int((int64_t)v.u.dict->n); return 0;
    default: return RT_ERR(f->R, "object of type '%s' has no len()", jv_type_name(v));
    }
}

static int f_list(fctx_t *f, jv_t *p, jv_t *out) {
    const jv_t *items;
    size_t n;
    int rc = iterate(f->R, f->in, &items, &n);
    return rc ? rc : seq_out(f->R, JV_LIST, items, n, out);
}

static int f_string(fctx_t *f, jv_t *p, jv_t *out) { return to_str(f->R, f->in, out); }
static int f_safe(fctx_t *f, jv_t *p, jv_t *out) { *out = f->in; return 0; }

static int f_trim(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t s = {0};
    int rc = to_str(f->R, f->in, &s);
    if (rc) return rc;
    if (p[0].type == MISSING || p[0].type == JV_NONE) *out = strip(s, 3, NULL);
    else if ((rc = want_str(f->R, p[0], "chars"))) return rc;
    else *out = strip(s, 3, &p[0]);
    return 0;
}

static int f_upper(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t s = {0};
    int rc = to_str(f->R, f->in, &s);
    return rc ? rc : map_case(f->R, s, 1, out);
}
static int f_lower(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t s = {0};
    int rc = to_str(f->R, f->in, &s);
    return rc ? rc : map_case(f->R, s, 0, out);
}
static int f_title(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t s = {0};
    int rc = to_str(f->R, f->in, &s);
    return rc ? rc : title_case(f->R, s, 1, out);
}
static int f_capitalize(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t s = {0};
    int rc = to_str(f->R, f->in, &s);
    return rc ? rc : title_case(f->R, s, 0, out);
}

static int f_replace(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t s = {0}, old = {0}, rep = {0};
    int rc;
    if (p[0].type == MISSING || p[1].type == MISSING) return RT_ERR(f->R, "replace() needs old and new");
    if ((rc = to_str(f->R, f->in, &s)) || (rc = to_str(f->R, p[0], &old)) || (rc = to_str(f->R, p[1], &rep))) return rc;
    int64_t count = -1;
    if (p[2].type != MISSING && p[2].type != JV_NONE && (rc = want_int(f->R, p[2], "count"))) return rc;
    if (p[2].type != MISSING && p[2].type != JV_NONE) count = p[2].u.i;
    return str_replace(f->R, s, old, rep, count, out);
}

static int f_default(fctx_t *f, jv_t *p, jv_t *out) {
    int boolean = p[1].type != MISSING && jv_truthy(p[1]);
    if (f->in.type == JV_UNDEF || (boolean && !jv_truthy(f->in))) *out = or_default(p[0], jv_str("", 0));
    else *out = f->in;
    return 0;
}

static int f_join(fctx_t *f, jv_t *p, jv_t *out) {
    const jv_t *items;
    size_t n;
    jv_t sep = or_default(p[0], jv_str("", 0));
    int rc = iterate(f->R, f->in, &items, &n);
    if (rc || (rc = to_str(f->R, sep, &sep))) return rc;
    jv_buf_t b;
    jv_buf_init(&b, f->R->a, f->R->lim.max_output);
    for (size_t i = 0; i < n; i++) {
        jv_t v = items[i];
        if (p[1].type != MISSING && p[1].type != JV_NONE && (rc = attr_path(f->R, v, p[1], &v))) return rc;
        if (i && (rc = jv_buf_put(&b, sep.s, sep.n))) return chk(f->R, rc);
        if ((rc = jv_write(&b, v, 0))) return chk(f->R, rc);
    }
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

static int f_first_last(fctx_t *f, int last, jv_t *out) {
    const jv_t *items;
    size_t n;
    int rc = iterate(f->R, f->in, &items, &n);
    if (rc) return rc;
    *out = n ? items[last ? n - 1 : 0] : undef_fmt(f->R, "No %s item, sequence was empty.", last ? "last" : "first");
    return 0;
}
static int f_first(fctx_t *f, jv_t *p, jv_t *out) { return f_first_last(f, 0, out); }
static int f_last(fctx_t *f, jv_t *p, jv_t *out) { return f_first_last(f, 1, out); }

static int f_items(fctx_t *f, jv_t *p, jv_t *out) {
    if (f->in.type == JV_UNDEF) return seq_out(f->R, JV_LIST, NULL, 0, out);
    if (f->in.type != JV_DICT) return RT_ERR(f->R, "Can only get item pairs from a mapping.");
    return call_dict_method(f->R, f->in, "items", NULL, 0, NULL, NULL, 0, out);
}

static int f_tojson(fctx_t *f, jv_t *p, jv_t *out) {
    rs_t *R = f->R;
    jv_json_opts_t o = {.ensure_ascii = p[0].type != MISSING && jv_truthy(p[0]),
                        .sort_keys = p[3].type != MISSING && jv_truthy(p[3])};
    char spaces[65];
    if (p[1].type != MISSING && p[1].type != JV_NONE) {
        if (p[1].type == JV_STR) {
            jv_t s;
            if (jv_str_copy(R->a, p[1].s, p[1].n, &s)) return NOMEM(R);
            o.indent = s.s;
        } else if (is_intlike(p[1])) {
            int64_t k = p[1].u.i < 0 ? 0 : p[1].u.i > 64 ? 64 : p[1].u.i;
            memset(spaces, ' ', (size_t)k);
            spaces[k] = 0;
            o.indent = spaces;
        } else return RT_ERR(R, "indent must be an int or a string");
    }
    if (p[2].type != MISSING && p[2].type != JV_NONE) {
        jv_t sp = p[2];
        if (!is_seq(sp) || sp.u.seq->n != 2 || sp.u.seq->items[0].type != JV_STR || sp.u.seq->items[1].type != JV_STR)
            return RT_ERR(R, "separators must be a pair of strings");
        jv_t a, b;
        if (jv_str_copy(R->a, sp.u.seq->items[0].s, sp.u.seq->items[0].n, &a) ||
            jv_str_copy(R->a, sp.u.seq->items[1].s, sp.u.seq->items[1].n, &b))
            return NOMEM(R);
        o.item_sep = a.s;
        o.key_sep = b.s;
    }
    jv_buf_t b;
    jv_buf_init(&b, R->a, R->lim.max_output);
    char msg[PV_ERRLEN];
    int rc = jv_tojson(&b, f->in, &o, msg, sizeof msg);
    if (rc == PV_EINVAL) return RT_ERR(R, "%s", msg);
    if (rc) return chk(R, rc);
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

/* select / reject / selectattr / rejectattr. */
static int select_impl(fctx_t *f, int want, int by_attr, jv_t *out) {
    rs_t *R = f->R;
    const jv_t *items;
    size_t n;
    int rc = iterate(R, f->in, &items, &n);
    if (rc) return rc;
    if (f->nkw) return RT_ERR(R, "select filters take no keyword arguments");
    size_t first = by_attr ? 1 : 0;
    if (by_attr && f->nargs < 1) return RT_ERR(R, "selectattr needs an attribute");
    const char *test = NULL;
    if (f->nargs > first) {
        if ((rc = want_str(R, f->args[first], "test name"))) return rc;
        jv_t t;
        if (jv_str_copy(R->a, f->args[first].s, f->args[first].n, &t)) return NOMEM(R);
        test = t.s;
    }
    jv_t *kept = jv_alloc(R->a, n, sizeof *kept);
    size_t k = 0;
    if (!kept && n) return NOMEM(R);
    for (size_t i = 0; i < n; i++) {
        jv_t v = items[i];
        if (by_attr && (rc = attr_path(R, v, f->args[0], &v))) return rc;
        int res = jv_truthy(v);
        size_t ta = f->nargs > first + 1 ? f->nargs - first - 1 : 0;
        if (test && (rc = apply_test(R, test, v, f->args + first + 1, ta, &res))) return rc;
        if (res == want) kept[k++] = items[i];
    }
    return seq_out(R, JV_LIST, kept, k, out);
}
static int f_select(fctx_t *f, jv_t *p, jv_t *out) { return select_impl(f, 1, 0, out); }
static int f_reject(fctx_t *f, jv_t *p, jv_t *out) { return select_impl(f, 0, 0, out); }
static int f_selectattr(fctx_t *f, jv_t *p, jv_t *out) { return select_impl(f, 1, 1, out); }
static int f_rejectattr(fctx_t *f, jv_t *p, jv_t *out) { return select_impl(f, 0, 1, out); }

static int f_map(fctx_t *f, jv_t *p, jv_t *out) {
    rs_t *R = f->R;
    const jv_t *items;
    size_t n;
    int rc = iterate(R, f->in, &items, &n);
    if (rc) return rc;
    jv_t attr = {.type = MISSING}, def = {.type = MISSING};
    for (size_t k = 0; k < f->nkw; k++) {
        if (!strcmp(f->kwn[k], "attribute")) attr = f->kwv[k];
        else if (!strcmp(f->kwn[k], "default")) def = f->kwv[k];
    }
    const char *fname = NULL;
    if (attr.type == MISSING) {
        if (f->nargs < 1 || f->args[0].type != JV_STR) return RT_ERR(R, "map requires a filter name or attribute=");
        jv_t t;
        if (jv_str_copy(R->a, f->args[0].s, f->args[0].n, &t)) return NOMEM(R);
        fname = t.s;
    }
    jv_t *res = jv_alloc(R->a, n, sizeof *res);
    if (!res && n) return NOMEM(R);
    for (size_t i = 0; i < n; i++) {
        if (fname) rc = apply_filter(R, fname, items[i], f->args + 1, f->nargs - 1, f->kwn, f->kwv, f->nkw, &res[i]);
        else {
            rc = attr_path(R, items[i], attr, &res[i]);
            if (!rc && res[i].type == JV_UNDEF && def.type != MISSING) res[i] = def;
        }
        if (rc) return rc;
    }
    return seq_out(R, JV_LIST, res, n, out);
}

/* Copies of the iterated items and their sort keys. */
static int keyed_items(fctx_t *f, jv_t attr, int case_sensitive, jv_t **items, jv_t **keys, size_t *n) {
    const jv_t *src;
    int rc = iterate(f->R, f->in, &src, n);
    if (rc) return rc;
    *items = jv_alloc(f->R->a, *n, sizeof **items);
    *keys = jv_alloc(f->R->a, *n, sizeof **keys);
    if ((!*items || !*keys) && *n) return NOMEM(f->R);
    for (size_t i = 0; i < *n; i++) {
        (*items)[i] = src[i];
        jv_t k = src[i];
        if (attr.type != MISSING && attr.type != JV_NONE && (rc = attr_path(f->R, k, attr, &k))) return rc;
        if ((rc = fold_key(f->R, k, case_sensitive, &(*keys)[i]))) return rc;
    }
    return 0;
}

static int f_sort(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t *items, *keys;
    size_t n;
    int rc = keyed_items(f, p[2], p[1].type != MISSING && jv_truthy(p[1]), &items, &keys, &n);
    if (!rc) rc = sort_by(f->R, items, keys, n, p[0].type != MISSING && jv_truthy(p[0]));
    return rc ? rc : seq_out(f->R, JV_LIST, items, n, out);
}

static int f_dictsort(fctx_t *f, jv_t *p, jv_t *out) {
    rs_t *R = f->R;
    if (f->in.type != JV_DICT) return RT_ERR(R, "You can only sort by either \"key\" or \"value\"");
    jv_t pairs;
    int rc = call_dict_method(R, f->in, "items", NULL, 0, NULL, NULL, 0, &pairs);
    if (rc) return rc;
    size_t n = pairs.u.seq->n;
    int by_value = p[1].type != MISSING && str_eq(p[1], "value");
    jv_t *keys = jv_alloc(R->a, n, sizeof *keys);
    if (!keys && n) return NOMEM(R);
    for (size_t i = 0; i < n; i++)
        if ((rc = fold_key(R, pairs.u.seq->items[i].u.seq->items[by_value], p[0].type != MISSING && jv_truthy(p[0]), &keys[i])))
            return rc;
    if ((rc = sort_by(R, pairs.u.seq->items, keys, n, p[2].type != MISSING && jv_truthy(p[2])))) return rc;
    *out = pairs;
    return 0;
}

static int f_unique(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t *items, *keys;
    size_t n, k = 0;
    int rc = keyed_items(f, p[1], p[0].type != MISSING && jv_truthy(p[0]), &items, &keys, &n);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < k && !jv_eq(keys[j], keys[i])) j++;
        if (j == k) {
            items[k] = items[i];
            keys[k++] = keys[i];
        }
    }
    return seq_out(f->R, JV_LIST, items, k, out);
}

static int minmax(fctx_t *f, jv_t *p, int want_max, jv_t *out) {
    jv_t *items, *keys;
    size_t n;
    int rc = keyed_items(f, p[1], p[0].type != MISSING && jv_truthy(p[0]), &items, &keys, &n);
    if (rc) return rc;
    if (n == 0) {
        *out = undef_fmt(f->R, "No aggregated item, sequence was empty.");
        return 0;
    }
    size_t best = 0;
    for (size_t i = 1; i < n; i++) {
        int c;
        if (ordered(f->R, '<', keys[i], keys[best], &c)) return PV_EINVAL;
        if (want_max ? c > 0 : c < 0) best = i;
    }
    *out = items[best];
    return 0;
}
static int f_min(fctx_t *f, jv_t *p, jv_t *out) { return minmax(f, p, 0, out); }
static int f_max(fctx_t *f, jv_t *p, jv_t *out) { return minmax(f, p, 1, out); }

static int f_sum(fctx_t *f, jv_t *p, jv_t *out) {
    const jv_t *items;
    size_t n;
    int rc = iterate(f->R, f->in, &items, &n);
    jv_t acc = or_default(p[1], jv_int(0));
    for (size_t i = 0; !rc && i < n; i++) {
        jv_t v = items[i];
        if (p[0].type != MISSING && p[0].type != JV_NONE && (rc = attr_path(f->R, v, p[0], &v))) return rc;
        rc = arith(f->R, '+', acc, v, &acc);
    }
    *out = acc;
    return rc;
}

static int f_abs(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t v = f->in;
    if (is_intlike(v)) {
        if (v.u.i == INT64_MIN) return int_overflow(f->R);
        *out = jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
    } else if (v.type == JV_FLOAT) *out = jv_float(fabs(v.u.f));
    else return RT_ERR(f->R, "bad operand type for abs(): '%s'", jv_type_name(v));
    return 0;
}

static int f_round(fctx_t *f, jv_t *p, jv_t *out) {
    int64_t prec = 0;
    int rc;
    if (p[0].type != MISSING && (rc = want_int(f->R, p[0], "precision"))) return rc;
    if (p[0].type != MISSING) prec = p[0].u.i;
    if (!is_num(f->in)) return RT_ERR(f->R, "type %s doesn't define __round__ method", jv_type_name(f->in));
    double x = fnum(f->in), scale = pow(10.0, (double)prec), y = x * scale;
    if (p[1].type != MISSING && str_eq(p[1], "ceil")) y = ceil(y);
    else if (p[1].type != MISSING && str_eq(p[1], "floor")) y = floor(y);
    else y = nearbyint(y);
    *out = is_intlike(f->in) && (p[1].type == MISSING || str_eq(p[1], "common")) ? f->in : jv_float(y / scale);
    return 0;
}

static int f_int(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t v = f->in, def = or_default(p[0], jv_int(0));
    if (is_intlike(v)) *out = jv_int(v.u.i);
    else if (v.type == JV_FLOAT && isfinite(v.u.f) && fabs(v.u.f) < 9.2e18) *out = jv_int((int64_t)v.u.f);
    else if (v.type == JV_STR) {
        char buf[64];
        jv_t s = strip(v, 3, NULL);
        size_t m = 0;
        for (size_t i = 0; i < s.n && m + 1 < sizeof buf; i++)
            if (s.s[i] != '_') buf[m++] = s.s[i];
        buf[m] = 0;
        char *e;
        long long i = strtoll(buf, &e, 10);
        if (m && !*e) *out = jv_int(i);
        else {
            double d = strtod(buf, &e);
            *out = m && !*e && isfinite(d) && fabs(d) < 9.2e18 ? jv_int((int64_t)d) : def;
        }
    } else *out = def;
    return 0;
}

static int f_float(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t v = f->in, def = or_default(p[0], jv_float(0.0));
    if (is_num(v)) *out = jv_float(fnum(v));
    else if (v.type == JV_STR) {
        char buf[64], *e;
        jv_t s = strip(v, 3, NULL);
        snprintf(buf, sizeof buf, "%.*s", (int)(s.n < 63 ? s.n : 63), s.s);
        double d = strtod(buf, &e);
        *out = s.n && s.n < 63 && !*e ? jv_float(d) : def;
    } else *out = def;
    return 0;
}

static int f_indent(fctx_t *f, jv_t *p, jv_t *out) {
    rs_t *R = f->R;
    jv_t s = {0}, ind;
    int rc = to_str(R, f->in, &s);
    if (rc) return rc;
    jv_t w = or_default(p[0], jv_int(4));
    if (w.type == JV_STR) ind = w;
    else {
        int64_t k;
        if ((rc = want_int(R, w, "width"))) return rc;
        k = w.u.i < 0 ? 0 : w.u.i > 1024 ? 1024 : w.u.i;
        char *sp = jv_alloc(R->a, (size_t)k + 1, 1);
        if (!sp) return NOMEM(R);
        memset(sp, ' ', (size_t)k);
        ind = jv_str(sp, (size_t)k);
    }
    int first = p[1].type != MISSING && jv_truthy(p[1]), blank = p[2].type != MISSING && jv_truthy(p[2]);
    jv_buf_t b;
    jv_buf_init(&b, R->a, R->lim.max_output);
    if (first) rc = jv_buf_put(&b, ind.s, ind.n);
    size_t start = 0; /* the pieces between newlines; all but the first indented unless empty */
    int later = 0;
    for (size_t i = 0; !rc && i <= s.n; i++) {
        if (i < s.n && s.s[i] != '\n') continue;
        size_t len = i - start;
        if (later++) {
            rc = jv_buf_put(&b, "\n", 1);
            if (!rc && (len || blank)) rc = jv_buf_put(&b, ind.s, ind.n);
        }
        if (!rc) rc = jv_buf_put(&b, s.s + start, len);
        start = i + 1;
    }
    if (rc) return chk(R, rc);
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

static int f_escape(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t s = {0};
    int rc = to_str(f->R, f->in, &s);
    if (rc) return rc;
    jv_buf_t b;
    jv_buf_init(&b, f->R->a, f->R->lim.max_output);
    for (size_t i = 0; i < s.n && !rc; i++) {
        char c = s.s[i];
        rc = c == '&' ? jv_buf_puts(&b, "&amp;") : c == '<' ? jv_buf_puts(&b, "&lt;") : c == '>' ? jv_buf_puts(&b, "&gt;")
           : c == '"' ? jv_buf_puts(&b, "&#34;") : c == '\'' ? jv_buf_puts(&b, "&#39;") : jv_buf_put(&b, &c, 1);
    }
    if (rc) return chk(f->R, rc);
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

static int f_reverse(fctx_t *f, jv_t *p, jv_t *out) {
    static const jv_t none = {.type = JV_NONE}, minus1 = {.type = JV_INT, .u.i = -1};
    if (f->in.type == JV_STR || is_seq(f->in)) {
        int rc = slice_v(f->R, f->in, none, none, minus1, out);
        if (!rc && out->type == JV_TUPLE) out->type = JV_LIST;
        return rc;
    }
    const jv_t *items;
    size_t n;
    int rc = iterate(f->R, f->in, &items, &n);
    jv_t *r = rc ? NULL : jv_alloc(f->R->a, n, sizeof *r);
    if (rc) return rc;
    if (!r && n) return NOMEM(f->R);
    for (size_t i = 0; i < n; i++) r[i] = items[n - 1 - i];
    return seq_out(f->R, JV_LIST, r, n, out);
}

static int f_wordcount(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t s = {0};
    int rc = to_str(f->R, f->in, &s);
    if (rc) return rc;
    jv_t words;
    if ((rc = str_split(f->R, s, jv_none(), -1, &words))) return rc;
    *out = jv_int((int64_t)words.u.seq->n);
    return 0;
}

static int f_attr(fctx_t *f, jv_t *p, jv_t *out) {
    if (p[0].type != JV_STR) return RT_ERR(f->R, "attr() needs a name");
    jv_t name;
    if (jv_str_copy(f->R->a, p[0].s, p[0].n, &name)) return NOMEM(f->R);
    return getattr_v(f->R, f->in, name.s, name.n, out);
}

static int f_format(fctx_t *f, jv_t *p, jv_t *out) {
    jv_t tuple;
    int rc = seq_out(f->R, JV_TUPLE, f->args, f->nargs, &tuple);
    if (rc) return rc;
    if (f->in.type != JV_STR) return RT_ERR(f->R, "format needs a string");
    return arith(f->R, '%', f->in, tuple, out);
}

static const filter_def_t FILTERS[] = {
    {"abs", f_abs, {NULL}},
    {"attr", f_attr, {"name", NULL}},
    {"batch", NULL, {NULL}},
    {"capitalize", f_capitalize, {NULL}},
    {"center", NULL, {NULL}},
    {"count", f_length, {NULL}},
    {"d", f_default, {"default_value", "boolean", NULL}},
    {"default", f_default, {"default_value", "boolean", NULL}},
    {"dictsort", f_dictsort, {"case_sensitive", "by", "reverse", NULL}},
    {"e", f_escape, {NULL}},
    {"escape", f_escape, {NULL}},
    {"filesizeformat", NULL, {NULL}},
    {"first", f_first, {NULL}},
    {"float", f_float, {"default", NULL}},
    {"forceescape", f_escape, {NULL}},
    {"format", f_format, {NULL}},
    {"groupby", NULL, {NULL}},
    {"indent", f_indent, {"width", "first", "blank", NULL}},
    {"int", f_int, {"default", "base", NULL}},
    {"items", f_items, {NULL}},
    {"join", f_join, {"d", "attribute", NULL}},
    {"last", f_last, {NULL}},
    {"length", f_length, {NULL}},
    {"list", f_list, {NULL}},
    {"lower", f_lower, {NULL}},
    {"map", f_map, {NULL}},
    {"max", f_max, {"case_sensitive", "attribute", NULL}},
    {"min", f_min, {"case_sensitive", "attribute", NULL}},
    {"pprint", NULL, {NULL}},
    {"random", NULL, {NULL}},
    {"reject", f_reject, {NULL}},
    {"rejectattr", f_rejectattr, {NULL}},
    {"replace", f_replace, {"old", "new", "count", NULL}},
    {"reverse", f_reverse, {NULL}},
    {"round", f_round, {"precision", "method", NULL}},
    {"safe", f_safe, {NULL}},
    {"select", f_select, {NULL}},
    {"selectattr", f_selectattr, {NULL}},
    {"slice", NULL, {NULL}},
    {"sort", f_sort, {"reverse", "case_sensitive", "attribute", NULL}},
    {"string", f_string, {NULL}},
    {"striptags", NULL, {NULL}},
    {"sum", f_sum, {"attribute", "start", NULL}},
    {"title", f_title, {NULL}},
    {"tojson", f_tojson, {"ensure_ascii", "indent", "separators", "sort_keys", NULL}},
    {"trim", f_trim, {"chars", NULL}},
    {"truncate", NULL, {NULL}},
    {"unique", f_unique, {"case_sensitive", "attribute", NULL}},
    {"upper", f_upper, {NULL}},
    {"urlencode", NULL, {NULL}},
    {"urlize", NULL, {NULL}},
    {"wordcount", f_wordcount, {NULL}},
    {"wordwrap", NULL, {NULL}},
    {"xmlattr", NULL, {NULL}},
};

/* Filters that take *args / **kwargs themselves instead of named parameters. */
static int variadic(filter_fn fn) {
    return fn == f_map || fn == f_select || fn == f_reject || fn == f_selectattr || fn == f_rejectattr ||
           fn == f_format;
}

static int apply_filter(rs_t *R, const char *name, jv_t in, const jv_t *args, size_t nargs,
                        const char *const *kwn, const jv_t *kwv, size_t nkw, jv_t *out) {
    const filter_def_t *d = NULL;
    for (size_t i = 0; i < sizeof FILTERS / sizeof *FILTERS && !d; i++)
        if (!strcmp(FILTERS[i].name, name)) d = &FILTERS[i];
    if (!d) return RT_ERR(R, "No filter named '%s'.", name);
    if (!d->fn) return RT_ERR(R, "filter '%s' is not supported", name);
    fctx_t f = {R, in, args, nargs, kwn, kwv, nkw};
    jv_t p[MAX_PARAMS];
    size_t np = 0;
    while (np < MAX_PARAMS && d->params[np]) np++;
    if (!variadic(d->fn)) {
        int rc = bind(R, name, d->params, np, args, nargs, kwn, kwv, nkw, p);
        if (rc) return rc;
    }
    return d->fn(&f, p, out);
}

/* ------------------------------------------------------------------ tests */

static int apply_test(rs_t *R, const char *name, jv_t v, const jv_t *args, size_t nargs, int *res) {
    int t = v.type, rc;
#define T(s) (!strcmp(name, s))
    if (T("defined")) *res = t != JV_UNDEF;
    else if (T("undefined")) *res = t == JV_UNDEF;
    else if (T("none")) *res = t == JV_NONE;
    else if (T("boolean")) *res = t == JV_BOOL;
    else if (T("false")) *res = t == JV_BOOL && !v.u.i;
    else if (T("true")) *res = t == JV_BOOL && v.u.i;
    else if (T("integer")) *res = t == JV_INT;
    else if (T("float")) *res = t == JV_FLOAT;
    else if (T("number")) *res = is_num(v);
    else if (T("string")) *res = t == JV_STR;
    else if (T("mapping")) *res = t == JV_DICT;
    else if (T("iterable")) *res = t == JV_UNDEF || t == JV_STR || is_seq(v) || t == JV_DICT;
    else if (T("sequence")) *res = t == JV_STR || is_seq(v) || t == JV_DICT;
    else if (T("callable")) *res = t == JV_MACRO || t == JV_FUNC || t == JV_METHOD;
    else if (T("escaped")) *res = 0;
    else if (T("lower") || T("upper")) {
        jv_t c;
        if (t != JV_STR) return RT_ERR(R, "'%s' object has no attribute '%s'", jv_type_name(v), name);
        if ((rc = map_case(R, v, name[0] == 'u', &c))) return rc;
        *res = jv_eq(c, v);
    } else if (T("even") || T("odd")) {
        if (!is_intlike(v)) return RT_ERR(R, "unsupported operand type(s) for %%: '%s' and 'int'", jv_type_name(v));
        *res = (v.u.i % 2 == 0) == (name[0] == 'e');
    } else if (T("filter") || T("test")) {
        *res = 0;
        if (t == JV_STR && name[0] == 'f')
            for (size_t i = 0; i < sizeof FILTERS / sizeof *FILTERS; i++)
                *res |= strlen(FILTERS[i].name) == v.n && !memcmp(FILTERS[i].name, v.s, v.n);
    } else {
        if (nargs < 1) return RT_ERR(R, "test '%s' needs an argument", name);
        jv_t a = args[0];
        if (T("divisibleby")) {
            if (!is_intlike(v) || !is_intlike(a) || a.u.i == 0) return RT_ERR(R, "divisibleby needs non-zero integers");
            *res = v.u.i % a.u.i == 0;
        } else if (T("sameas")) {
            *res = v.type == a.type && (t == JV_NONE || t == JV_UNDEF || ((t == JV_BOOL || t == JV_INT) && v.u.i == a.u.i) ||
                                        (t == JV_STR && v.s == a.s && v.n == a.n) || (v.u.ptr == a.u.ptr && t > JV_STR));
        } else if (T("eq") || T("equalto") || T("==")) return compare(R, '=', v, a, res);
        else if (T("ne") || T("!=")) return compare(R, '!', v, a, res);
        else if (T("lt") || T("lessthan") || T("<")) return compare(R, '<', v, a, res);
        else if (T("le") || T("<=")) return compare(R, 'L', v, a, res);
        else if (T("gt") || T("greaterthan") || T(">")) return compare(R, '>', v, a, res);
        else if (T("ge") || T(">=")) return compare(R, 'G', v, a, res);
        else if (T("in")) return contains(R, a, v, res);
        else return RT_ERR(R, "No test named '%s'.", name);
    }
#undef T
    return 0;
}

/* ------------------------------------------------------------------ calls */

static int call_macro(rs_t *R, const jn_t *m, const jv_t *args, size_t nargs, const char *const *kwn,
                      const jv_t *kwv, size_t nkw, jv_t *out) {
    if (++R->steps > R->lim.max_steps)
        return LIMIT_ERR(R, "template exceeded %llu loop iterations and macro calls", (unsigned long long)R->lim.max_steps);
    if (nargs > m->nnames) return RT_ERR(R, "macro '%s' takes not more than %zu argument(s)", m->s, m->nnames);
    scope_t *ms = scope_new(R, R->root);
    if (!ms) return NOMEM(R);
    for (size_t k = 0; k < nkw; k++) {
        size_t i = 0;
        while (i < m->nnames && strcmp(m->names[i], kwn[k]) != 0) i++;
        if (i == m->nnames) return RT_ERR(R, "macro '%s' takes no keyword argument '%s'", m->s, kwn[k]);
    }
    for (size_t i = 0; i < m->nnames; i++) {
        jv_t v = {.type = MISSING};
        if (i < nargs) v = args[i];
        for (size_t k = 0; k < nkw; k++)
            if (!strcmp(m->names[i], kwn[k])) v = kwv[k];
        int rc = 0;
        if (v.type == MISSING && m->w[i]) rc = ev(R, ms, m->w[i], &v);
        else if (v.type == MISSING) v = undef_fmt(R, "parameter '%s' was not provided", m->names[i]);
        if (rc || (rc = scope_set(R, ms, m->names[i], v))) return rc;
    }
    return capture(R, ms, m->v, m->nv, out);
}

enum { FN_RANGE, FN_NAMESPACE, FN_RAISE, FN_STRFTIME, FN_DICT, FN_COUNT };
static const char *const FUNCS[FN_COUNT] = {"range", "namespace", "raise_exception", "strftime_now", "dict"};

static int call_range(rs_t *R, const jv_t *args, size_t nargs, jv_t *out) {
    int64_t a[3] = {0, 0, 1};
    if (nargs < 1 || nargs > 3) return RT_ERR(R, "range expected 1 to 3 arguments, got %zu", nargs);
    for (size_t i = 0; i < nargs; i++) {
        int rc = want_int(R, args[i], "range() argument");
        if (rc) return rc;
        a[nargs == 1 ? 1 : i] = args[i].u.i;
    }
    if (a[2] == 0) return RT_ERR(R, "range() arg 3 must not be zero");
    double count = a[2] > 0 ? ceil(((double)a[1] - (double)a[0]) / (double)a[2])
                            : ceil(((double)a[0] - (double)a[1]) / (double)-a[2]);
    if (count < 0) count = 0;
    if (count > (double)R->lim.max_steps)
        return LIMIT_ERR(R, "range() of %.0f items exceeds the limit of %llu", count, (unsigned long long)R->lim.max_steps);
    size_t n = (size_t)count;
    jv_t *items = jv_alloc(R->a, n, sizeof *items);
    if (!items && n) return NOMEM(R);
    for (size_t i = 0; i < n; i++) items[i] = jv_int(a[0] + (int64_t)i * a[2]);
    return seq_out(R, JV_LIST, items, n, out);
}

static int call_func(rs_t *R, int id, const jv_t *args, size_t nargs, const char *const *kwn,
                     const jv_t *kwv, size_t nkw, jv_t *out) {
    int rc;
    switch (id) {
    case FN_RANGE: return call_range(R, args, nargs, out);
    case FN_NAMESPACE:
    case FN_DICT:
        if ((rc = chk(R, jv_dict_new(R->a, id == FN_DICT ? JV_DICT : JV_NS, out)))) return rc;
        if (nargs > 1 || (nargs == 1 && args[0].type != JV_DICT)) return RT_ERR(R, "%s() takes a mapping", FUNCS[id]);
        for (size_t i = 0; nargs && i < args[0].u.dict->n; i++)
            if ((rc = chk(R, jv_dict_set(R->a, out->u.dict, args[0].u.dict->keys[i], args[0].u.dict->vals[i])))) return rc;
        for (size_t k = 0; k < nkw; k++) {
            jv_t key = jv_str(kwn[k], strlen(kwn[k]));
            if ((rc = chk(R, jv_dict_set(R->a, out->u.dict, key, kwv[k])))) return rc;
        }
        return 0;
    case FN_RAISE: {
        jv_t msg = nargs ? args[0] : jv_str("", 0);
        if ((rc = to_str(R, msg, &msg))) return rc;
        return fail_kind(R, PV_JINJA_RAISED, PV_EINVAL, "%.*s", (int)msg.n, msg.s);
    }
    case FN_STRFTIME: {
        if (nargs != 1 || args[0].type != JV_STR) return RT_ERR(R, "strftime_now() takes a format string");
        char fmt[256], buf[512];
        if (args[0].n >= sizeof fmt) return RT_ERR(R, "strftime_now() format too long");
        memcpy(fmt, args[0].s, args[0].n);
        fmt[args[0].n] = 0;
        size_t n = fmt[0] ? strftime(buf, sizeof buf, fmt, &R->now) : 0;
        return chk(R, jv_str_copy(R->a, buf, n, out));
    }
    }
    return RT_ERR(R, "unknown function");
}

static int call_value(rs_t *R, jv_t fn, const jv_t *args, size_t nargs, const char *const *kwn,
                      const jv_t *kwv, size_t nkw, jv_t *out) {
    switch (fn.type) {
    case JV_UNDEF: return raise_undef(R, fn);
    case JV_MACRO: return call_macro(R, fn.u.ptr, args, nargs, kwn, kwv, nkw, out);
    case JV_FUNC: return call_func(R, fn.aux, args, nargs, kwn, kwv, nkw, out);
    case JV_METHOD: return call_method(R, fn, args, nargs, kwn, kwv, nkw, out);
    default: return RT_ERR(R, "'%s' object is not callable", jv_type_name(fn));
    }
}

/* ------------------------------------------------------------------ expressions */

static int ev_all(rs_t *R, scope_t *S, jn_t *const *v, size_t n, jv_t **out) {
    *out = jv_alloc(R->a, n, sizeof **out);
    if (!*out && n) return NOMEM(R);
    for (size_t i = 0; i < n; i++) {
        int rc = ev(R, S, v[i], &(*out)[i]);
        if (rc) return rc;
    }
    return 0;
}

static int lookup(rs_t *R, scope_t *S, const jn_t *n, jv_t *out) {
    const jv_t *v = scope_find(S, n->s);
    if (v) {
        *out = *v;
        return 0;
    }
    for (int i = 0; i < FN_COUNT; i++)
        if (!strcmp(FUNCS[i], n->s)) {
            *out = (jv_t){.type = JV_FUNC, .aux = i};
            return 0;
        }
    *out = undef_fmt(R, "'%s' is undefined", n->s);
    return 0;
}

/* a(...), a|f(...), a is t(...): arguments evaluated. */
static int ev_args(rs_t *R, scope_t *S, const jn_t *n, jv_t **args, jv_t **kwv) {
    int rc = ev_all(R, S, n->v, n->nv, args);
    return rc ? rc : ev_all(R, S, n->w, n->nw, kwv);
}

static int ev_call(rs_t *R, scope_t *S, const jn_t *n, jv_t *out) {
    jv_t fn, *args, *kwv;
    int rc = ev(R, S, n->a, &fn);
    if (rc || (rc = ev_args(R, S, n, &args, &kwv))) return rc;
    return call_value(R, fn, args, n->nv, n->names, kwv, n->nw, out);
}

static int ev_compare(rs_t *R, scope_t *S, const jn_t *n, jv_t *out) {
    jv_t left, right;
    int rc = ev(R, S, n->v[0], &left), res = 1;
    for (size_t i = 1; !rc && i < n->nv && res; i++) {
        if ((rc = ev(R, S, n->v[i], &right)) || (rc = compare(R, n->ops[i - 1], left, right, &res))) return rc;
        left = right;
    }
    *out = jv_bool(res);
    return rc;
}

static int ev_concat(rs_t *R, scope_t *S, const jn_t *n, jv_t *out) {
    jv_buf_t b;
    jv_buf_init(&b, R->a, R->lim.max_output);
    for (size_t i = 0; i < n->nv; i++) {
        jv_t v;
        int rc = ev(R, S, n->v[i], &v);
        if (rc || (rc = chk(R, jv_write(&b, v, 0)))) return rc;
    }
    *out = jv_str(b.p ? b.p : "", b.n);
    return 0;
}

static int ev_unary(rs_t *R, scope_t *S, const jn_t *n, jv_t *out) {
    jv_t v;
    int rc = ev(R, S, n->a, &v);
    if (rc) return rc;
    if (n->op == '!') {
        *out = jv_bool(!jv_truthy(v));
        return 0;
    }
    if (v.type == JV_UNDEF) return raise_undef(R, v);
    if (is_intlike(v)) {
        if (n->op == '-' && v.u.i == INT64_MIN) return int_overflow(R);
        *out = jv_int(n->op == '-' ? -v.u.i : v.u.i);
    } else if (v.type == JV_FLOAT) *out = jv_float(n->op == '-' ? -v.u.f : v.u.f);
    else return RT_ERR(R, "bad operand type for unary %c: '%s'", n->op, jv_type_name(v));
    return 0;
}

static int ev_dict(rs_t *R, scope_t *S, const jn_t *n, jv_t *out) {
    int rc = chk(R, jv_dict_new(R->a, JV_DICT, out));
    for (size_t i = 0; !rc && i < n->nv; i++) {
        jv_t k, v;
        if ((rc = ev(R, S, n->v[i], &k)) || (rc = ev(R, S, n->w[i], &v))) return rc;
        if (k.type == JV_LIST || k.type == JV_DICT || k.type == JV_NS || k.type == JV_UNDEF)
            return RT_ERR(R, "unhashable type: '%s'", jv_type_name(k));
        rc = chk(R, jv_dict_set(R->a, out->u.dict, k, v));
    }
    return rc;
}

static int ev_inner(rs_t *R, scope_t *S, const jn_t *n, jv_t *out) {
    jv_t a, b, c, d, *items, *kwv;
    int rc;
    switch (n->kind) {
    case JN_LIT: *out = n->lit; return 0;
    case JN_NAME: return lookup(R, S, n, out);
    case JN_BODYREF: *out = R->body; return 0;
    case JN_ATTR:
        if ((rc = ev(R, S, n->a, &a))) return rc;
        return getattr_v(R, a, n->s, n->sn, out);
    case JN_ITEM:
        if ((rc = ev(R, S, n->a, &a)) || (rc = ev(R, S, n->b, &b))) return rc;
        return getitem_v(R, a, b, out);
    case JN_SLICE:
        b = c = d = jv_none();
        if ((rc = ev(R, S, n->a, &a)) || (n->b && (rc = ev(R, S, n->b, &b))) ||
            (n->c && (rc = ev(R, S, n->c, &c))) || (n->d && (rc = ev(R, S, n->d, &d))))
            return rc;
        return slice_v(R, a, b, c, d, out);
    case JN_CALL: return ev_call(R, S, n, out);
    case JN_FILTER:
        if ((rc = ev(R, S, n->a, &a)) || (rc = ev_args(R, S, n, &items, &kwv))) return rc;
        return apply_filter(R, n->s, a, items, n->nv, n->names, kwv, n->nw, out);
    case JN_TEST: {
        int res;
        if ((rc = ev(R, S, n->a, &a)) || (rc = ev_args(R, S, n, &items, &kwv))) return rc;
        if ((rc = apply_test(R, n->s, a, items, n->nv, &res))) return rc;
        *out = jv_bool(n->op ? !res : res);
        return 0;
    }
    case JN_UNARY: return ev_unary(R, S, n, out);
    case JN_BINARY:
        if ((rc = ev(R, S, n->a, &a)) || (rc = ev(R, S, n->b, &b))) return rc;
        return arith(R, n->op, a, b, out);
    case JN_AND:
    case JN_OR:
        if ((rc = ev(R, S, n->a, &a))) return rc;
        if (jv_truthy(a) == (n->kind == JN_OR)) {
            *out = a;
            return 0;
        }
        return ev(R, S, n->b, out);
    case JN_COMPARE: return ev_compare(R, S, n, out);
    case JN_CONCAT: return ev_concat(R, S, n, out);
    case JN_COND:
        if ((rc = ev(R, S, n->a, &a))) return rc;
        if (jv_truthy(a)) return ev(R, S, n->b, out);
        if (n->c) return ev(R, S, n->c, out);
        *out = undef_fmt(R, "the inline if-expression on line %d evaluated to false and no else section was defined.", n->line);
        return 0;
    case JN_LIST:
    case JN_TUPLE:
        if ((rc = ev_all(R, S, n->v, n->nv, &items))) return rc;
        return seq_out(R, n->kind == JN_LIST ? JV_LIST : JV_TUPLE, items, n->nv, out);
    case JN_DICT: return ev_dict(R, S, n, out);
    default: return RT_ERR(R, "internal error: statement in an expression");
    }
}

static int ev(rs_t *R, scope_t *S, const jn_t *n, jv_t *out) {
    if (++R->depth > R->lim.max_depth)
        return LIMIT_ERR(R, "template nesting exceeded the depth limit of %d", R->lim.max_depth);
    int rc = ev_inner(R, S, n, out);
    R->depth--;
    return rc;
}

/* ------------------------------------------------------------------ statements */

/* Binds for/set targets: one name takes the value, several unpack it. */
static int assign(rs_t *R, scope_t *S, const char *const *names, size_t nn, jv_t v) {
    if (nn == 1) return scope_set(R, S, names[0], v);
    const jv_t *items;
    size_t n;
    int rc = iterate(R, v, &items, &n);
    if (rc) return rc;
    if (n < nn) return RT_ERR(R, "not enough values to unpack (expected %zu, got %zu)", nn, n);
    if (n > nn) return RT_ERR(R, "too many values to unpack (expected %zu)", nn);
    for (size_t i = 0; i < nn && !rc; i++) rc = scope_set(R, S, names[i], items[i]);
    return rc;
}

static int exec_for(rs_t *R, scope_t *S, const jn_t *n) {
    jv_t seq;
    const jv_t *src;
    size_t count;
    int rc = ev(R, S, n->a, &seq);
    if (rc || (rc = iterate(R, seq, &src, &count))) return rc;
    if (n->b) { /* {% for x in xs if cond %}: filtered before loop.* is computed */
        jv_t *kept = jv_alloc(R->a, count, sizeof *kept);
        size_t k = 0;
        if (!kept && count) return NOMEM(R);
        scope_t *fs = scope_new(R, S);
        if (!fs) return NOMEM(R);
        for (size_t i = 0; i < count; i++) {
            jv_t cond;
            fs->n = 0;
            if ((rc = assign(R, fs, n->names, n->nnames, src[i])) || (rc = ev(R, fs, n->b, &cond))) return rc;
            if (jv_truthy(cond)) kept[k++] = src[i];
        }
        src = kept;
        count = k;
    }
    if (count == 0) {
        scope_t *es = scope_new(R, S);
        return es ? exec_body(R, es, n->w, n->nw) : NOMEM(R);
    }
    loop_state_t *ls = jv_alloc(R->a, 1, sizeof *ls);
    if (!ls) return NOMEM(R);
    ls->items = src;
    ls->n = count;
    /* One scope serves every iteration, emptied each time: nothing outlives an
     * iteration that could see it (macros close over the top level only). */
    scope_t *it = scope_new(R, S);
    if (!it) return NOMEM(R);
    for (size_t i = 0; i < count; i++) {
        if (++R->steps > R->lim.max_steps)
            return LIMIT_ERR(R, "template exceeded %llu loop iterations and macro calls", (unsigned long long)R->lim.max_steps);
        it->n = 0;
        ls->i = i;
        if ((rc = assign(R, it, n->names, n->nnames, src[i]))) return rc;
        if ((rc = scope_set(R, it, "loop", (jv_t){.type = JV_LOOP, .u.ptr = ls}))) return rc;
        rc = exec_body(R, it, n->v, n->nv);
        if (rc < 0) return rc;
        if (rc == FLOW_BREAK) break;
    }
    return 0;
}

static int exec_set(rs_t *R, scope_t *S, const jn_t *n) {
    jv_t v;
    int rc = ev(R, S, n->a, &v);
    if (rc) return rc;
    if (n->op) { /* ns.attr = v */
        jv_t *ns = scope_find(S, n->s);
        if (!ns || ns->type != JV_NS) return RT_ERR(R, "cannot assign attribute on non-namespace object");
        jv_t key = jv_str(n->names[0], strlen(n->names[0]));
        return chk(R, jv_dict_set(R->a, ns->u.dict, key, v));
    }
    return assign(R, S, n->names, n->nnames, v);
}

/* {% set x %}body{% endset %} and {% filter f %}body{% endfilter %}. */
static int exec_captured(rs_t *R, scope_t *S, const jn_t *n) {
    jv_t body, v;
    int rc = capture(R, S, n->v, n->nv, &body);
    if (rc) return rc;
    v = body;
    if (n->b) {
        jv_t saved = R->body;
        R->body = body;
        rc = ev(R, S, n->b, &v);
        R->body = saved;
        if (rc) return rc;
    }
    if (n->kind == JN_SETBLOCK) return scope_set(R, S, n->names[0], v);
    return chk(R, jv_write(R->out, v, 0));
}

static int exec_node(rs_t *R, scope_t *S, const jn_t *n) {
    jv_t v;
    int rc;
    switch (n->kind) {
    case JN_TEXT: return put_out(R, n->s, n->sn);
    case JN_OUTPUT:
        if ((rc = ev(R, S, n->a, &v))) return rc;
        return chk(R, jv_write(R->out, v, 0));
    case JN_IF:
        if ((rc = ev(R, S, n->a, &v))) return rc;
        return jv_truthy(v) ? exec_body(R, S, n->v, n->nv) : exec_body(R, S, n->w, n->nw);
    case JN_FOR: return exec_for(R, S, n);
    case JN_SET: return exec_set(R, S, n);
    case JN_SETBLOCK:
    case JN_FILTERBLOCK: return exec_captured(R, S, n);
    case JN_MACRO: return scope_set(R, S, n->s, (jv_t){.type = JV_MACRO, .u.ptr = n});
    case JN_BREAK: return FLOW_BREAK;
    case JN_CONTINUE: return FLOW_CONTINUE;
    default: return RT_ERR(R, "internal error: expression as a statement");
    }
}

static int exec_body(rs_t *R, scope_t *S, jn_t *const *v, size_t nv) {
    if (++R->depth > R->lim.max_depth)
        return LIMIT_ERR(R, "template nesting exceeded the depth limit of %d", R->lim.max_depth);
    int rc = 0;
    for (size_t i = 0; i < nv && rc == 0; i++) rc = exec_node(R, S, v[i]);
    R->depth--;
    return rc;
}

/* ------------------------------------------------------------------ API */

int pv_jinja_parse_time(const char *iso, struct tm *tm) {
    int Y, M, D, h = 0, m = 0, s = 0, used = 0;
    memset(tm, 0, sizeof *tm);
    if (!iso || sscanf(iso, "%4d-%2d-%2d%n", &Y, &M, &D, &used) != 3) return PV_EINVAL;
    const char *p = iso + used;
    if (*p == 'T' || *p == ' ') {
        int k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &h, &m, &k) != 2) return PV_EINVAL;
        p += 1 + k;
        if (*p == ':') {
            if (sscanf(p + 1, "%2d%n", &s, &k) != 1) return PV_EINVAL;
            p += 1 + k;
        }
    }
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || s > 60 || h < 0 || m < 0 || s < 0) return PV_EINVAL;
    tm->tm_year = Y - 1900;
    tm->tm_mon = M - 1;
    tm->tm_mday = D;
    tm->tm_hour = h;
    tm->tm_min = m;
    tm->tm_sec = s;
    tm->tm_isdst = -1;
    time_t t = timegm(tm); /* normalises the weekday and day of the year */
    struct tm norm;
    if (t == (time_t)-1 || !gmtime_r(&t, &norm)) return PV_EINVAL;
    *tm = norm;
    return 0;
}

static void fill_limits(pv_jinja_limits_t *l, const pv_jinja_opts_t *o) {
    *l = o ? o->limits : (pv_jinja_limits_t){0};
    if (!l->max_output) l->max_output = DEFAULT_MAX_OUTPUT;
    if (!l->max_memory) l->max_memory = DEFAULT_MAX_MEMORY;
    if (!l->max_steps) l->max_steps = DEFAULT_MAX_STEPS;
    if (!l->max_depth) l->max_depth = DEFAULT_MAX_DEPTH;
}

static int render_vars(rs_t *R, const json_t *vars) {
    if (!vars) return 0;
    if (!json_is_object(vars)) return RT_ERR(R, "template variables must be a JSON object");
    const char *k;
    json_t *jv;
    json_object_foreach((json_t *)vars, k, jv) { /* borrows */
        jv_t key, val;
        int rc = jv_str_copy(R->a, k, strlen(k), &key);
        if (rc) return NOMEM(R);
        if ((rc = jv_from_json(R->a, jv, &val, R->err, R->errlen))) {
            if (rc == PV_ENOMEM) return NOMEM(R);
            R->kind = PV_JINJA_RUNTIME;
            return rc;
        }
        if ((rc = scope_set(R, R->root, key.s, val))) return rc;
    }
    return 0;
}

int pv_jinja_render(const pv_jinja_t *t, const json_t *vars, const pv_jinja_opts_t *opts, char **out,
                    size_t *out_len, pv_jinja_error_t *kind, char *err, size_t errlen) {
    rs_t R = {.err = err, .errlen = errlen};
    jv_buf_t buf;
    int rc;
    *out = NULL;
    *out_len = 0;
    if (kind) *kind = PV_JINJA_OK;
    fill_limits(&R.lim, opts);
    if (opts && opts->has_now) R.now = opts->now;
    else {
        time_t now = time(NULL);
        localtime_r(&now, &R.now);
    }
    if (!(R.a = jv_arena_new(R.lim.max_memory))) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    jv_buf_init(&buf, R.a, R.lim.max_output);
    R.out = &buf;
    if (!(R.root = scope_new(&R, NULL))) {
        rc = NOMEM(&R);
        goto done;
    }
    if ((rc = render_vars(&R, vars)) != 0) goto done;
    rc = exec_body(&R, R.root, t->root->v, t->root->nv);
    if (rc > 0) rc = 0; /* break/continue outside a loop end the template */
    if (rc) goto done;
    if (!(*out = malloc(buf.n + 1))) {
        rc = pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
        goto done;
    }
    if (buf.n) memcpy(*out, buf.p, buf.n);
    (*out)[buf.n] = 0;
    *out_len = buf.n;
done:
    if (rc && kind) *kind = R.kind ? R.kind : PV_JINJA_RUNTIME;
    jv_arena_free(R.a);
    return rc;
}
