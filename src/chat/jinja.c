/* jinja.c - chat template lexer and parser: template source to an AST
 * (jinja_internal.h). The evaluator is jinja_eval.c.
 *
 * The lexer follows Jinja2's with HF's settings: newlines normalised to \n,
 * one trailing newline dropped, trim_blocks (one \n after a block or comment
 * tag is removed), lstrip_blocks (spaces and tabs before a block or comment
 * tag at the start of a line are removed), `-` strips all whitespace on its
 * side, `+` turns lstrip_blocks off for its tag. Inside a tag, `}}` and `%}`
 * only end it while brackets are balanced. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "chat/jinja_internal.h"

#define PARSE_MAX_DEPTH 200            /* nesting of expressions and blocks */
#define PARSE_MAX_MEMORY (512u << 20)  /* AST of one template */
#define BALANCE_MAX 256                /* open brackets inside one tag */

/* ------------------------------------------------------------------ lexer */

typedef enum {
    TK_TEXT,        /* template data, whitespace control applied */
    TK_VAR_BEGIN,   /* {{ */
    TK_VAR_END,     /* }} */
    TK_BLOCK_BEGIN, /* {% */
    TK_BLOCK_END,   /* %} */
    TK_NAME,        /* identifier */
    TK_STR,         /* string literal; lit holds the unescaped value */
    TK_INT,         /* lit: JV_INT */
    TK_FLOAT,       /* lit: JV_FLOAT */
    TK_OP,          /* operator or bracket; p/n the text */
    TK_EOF
} tk_kind_t;

typedef struct tok {
    int kind;      /* tk_kind_t */
    int line;      /* 1-based source line */
    const char *p; /* the text in the normalised source */
    size_t n;      /* its length */
    jv_t lit;      /* literal value of TK_STR / TK_INT / TK_FLOAT */
} tok_t;

typedef struct lexer {
    jv_arena_t *a;      /* parse arena (borrowed) */
    const char *src;    /* normalised source */
    size_t n;           /* its length */
    size_t pos;         /* read position */
    int line;           /* line of pos */
    int line_starting;  /* the last tag ended with a newline (or nothing came yet) */
    tok_t *toks;        /* (cap) tokens, arena-owned */
    size_t ntok, cap;   /* tokens written / allocated */
    char *err;          /* message buffer (borrowed) */
    size_t errlen;
} lexer_t;

static int lex_fail(lexer_t *L, const char *msg) {
    return pv_errorf(L->err, L->errlen, PV_ECORRUPT, "template syntax error: %s (line %d)", msg, L->line);
}

static int is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' ||
           (c >= 0x1c && c <= 0x1f);
}

static void advance(lexer_t *L, size_t to) {
    for (size_t i = L->pos; i < to; i++) L->line += L->src[i] == '\n';
    L->pos = to;
}

static tok_t *emit(lexer_t *L, int kind, const char *p, size_t n) {
    if (L->ntok == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 256;
        tok_t *t = jv_alloc(L->a, cap, sizeof *t);
        if (!t) return NULL;
        if (L->ntok) memcpy(t, L->toks, L->ntok * sizeof *t);
        L->toks = t;
        L->cap = cap;
    }
    tok_t *t = &L->toks[L->ntok++];
    *t = (tok_t){.kind = kind, .line = L->line, .p = p, .n = n};
    return t;
}

/* Emits src[from, to) as text, after the whitespace control of the tag that
 * follows it (mod: '-', '+' or 0; block: a block or comment tag). */
static int emit_text(lexer_t *L, size_t from, size_t to, char mod, int block) {
    if (mod == '-') {
        while (to > from && is_ws(L->src[to - 1])) to--;
    } else if (mod != '+' && block) { /* lstrip_blocks */
        size_t l = to;
        while (l > from && L->src[l - 1] != '\n') l--;
        if (l > from || L->line_starting) {
            size_t k = l;
            while (k < to && is_ws(L->src[k])) k++;
            if (k == to) to = l;
        }
    }
    if (to > from && !emit(L, TK_TEXT, L->src + from, to - from)) return PV_ENOMEM;
    return 0;
}

/* Consumes the end of a block or comment tag at pos ("%}" or "#}" with its
 * modifier already checked by the caller): trim_blocks or `-` stripping. */
static void tag_end(lexer_t *L, size_t after, char mod) {
    if (mod == '-') {
        while (after < L->n && is_ws(L->src[after])) after++;
    } else if (mod != '+' && after < L->n && L->src[after] == '\n') {
        after++;
    }
    advance(L, after);
    L->line_starting = L->pos > 0 && L->src[L->pos - 1] == '\n';
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Python's unicode-escape decoding of a string literal's body s[0..n). */
static int unescape(lexer_t *L, const char *s, size_t n, jv_t *out) {
    char *o = jv_alloc(L->a, n + 1, 1), *w = o;
    if (!o) return PV_ENOMEM;
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\' || i + 1 == n) {
            *w++ = s[i++];
            continue;
        }
        char c = s[i + 1];
        i += 2;
        switch (c) {
        case '\n': break;
        case '\\': *w++ = '\\'; break;
        case '\'': *w++ = '\''; break;
        case '"': *w++ = '"'; break;
        case 'a': *w++ = '\a'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'v': *w++ = '\v'; break;
        case 'x': case 'u': case 'U': {
            size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (size_t k = 0; k < digits; k++) {
                int h = i + k < n ? hexval(s[i + k]) : -1;
                if (h < 0) return lex_fail(L, "truncated escape in a string literal");
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10ffff) return lex_fail(L, "illegal Unicode character in a string literal");
            i += digits;
            w += jv_utf8_put(w, cp); /* at most digits + 2 bytes: fits */
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                uint32_t cp = (uint32_t)(c - '0');
                for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; k++) cp = cp * 8 + (uint32_t)(s[i++] - '0');
                w += jv_utf8_put(w, cp);
            } else {
                *w++ = '\\';
                *w++ = c;
            }
        }
    }
    *out = jv_str(o, (size_t)(w - o));
    return 0;
}

static int lex_string(lexer_t *L) {
    const char *s = L->src;
    char q = s[L->pos];
    size_t i = L->pos + 1;
    while (i < L->n && s[i] != q) i += s[i] == '\\' ? 2 : 1;
    if (i >= L->n) return lex_fail(L, "unterminated string literal");
    tok_t *t = emit(L, TK_STR, s + L->pos, i + 1 - L->pos);
    if (!t) return PV_ENOMEM;
    int rc = unescape(L, s + L->pos + 1, i - L->pos - 1, &t->lit);
    if (rc) return rc;
    advance(L, i + 1);
    return 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_name_char(char c) { return is_name_start(c) || is_digit(c); }

/* Digits with single underscores between them, from i; the end. */
static size_t scan_digits(const char *s, size_t n, size_t i) {
    while (i < n && (is_digit(s[i]) || (s[i] == '_' && i + 1 < n && is_digit(s[i + 1]) && i > 0 && is_digit(s[i - 1]))))
        i++;
    return i;
}

static int lex_number(lexer_t *L) {
    const char *s = L->src;
    size_t start = L->pos, i = scan_digits(s, L->n, start), end = i;
    int is_float = 0, after_dot = start > 0 && s[start - 1] == '.';
    if (!after_dot && i + 1 < L->n && s[i] == '.' && is_digit(s[i + 1])) {
        end = scan_digits(s, L->n, i + 1);
        is_float = 1;
    }
    if (!after_dot && end < L->n && (s[end] == 'e' || s[end] == 'E')) {
        size_t k = end + 1;
        if (k < L->n && (s[k] == '+' || s[k] == '-')) k++;
        if (k < L->n && is_digit(s[k])) {
            end = scan_digits(s, L->n, k);
            is_float = 1;
        }
    }
    char buf[128];
    size_t m = 0;
    for (size_t k = start; k < end && m + 1 < sizeof buf; k++)
        if (s[k] != '_') buf[m++] = s[k];
    buf[m] = 0;
    if (end - start >= sizeof buf) return lex_fail(L, "number literal too long");
    tok_t *t = emit(L, is_float ? TK_FLOAT : TK_INT, s + start, end - start);
    if (!t) return PV_ENOMEM;
    if (is_float) {
        t->lit = jv_float(strtod(buf, NULL));
    } else {
        char *e;
        errno = 0;
        long long v = strtoll(buf, &e, buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X') ? 16 : 10);
        if (errno || *e) return lex_fail(L, "integer literal out of range");
        t->lit = jv_int(v);
    }
    advance(L, end);
    return 0;
}

static const char *const OPS2[] = {"//", "**", "==", "!=", ">=", "<="};
static const char OPS1[] = "+-/*%~[](){}><=.:|,;";

/* One token inside {{ }} or {% %}; *done when the tag ended. */
static int lex_in_tag(lexer_t *L, int block, char *stack, int *depth, int *done) {
    const char *s = L->src;
    while (L->pos < L->n && is_ws(s[L->pos])) advance(L, L->pos + 1);
    if (L->pos >= L->n) return lex_fail(L, "unexpected end of template inside a tag");
    size_t p = L->pos, left = L->n - p;
    if (*depth == 0) {
        char mod = s[p] == '-' || s[p] == '+' ? s[p] : 0;
        size_t q = p + (mod ? 1 : 0);
        const char *end = block ? "%}" : "}}";
        if (L->n - q >= 2 && s[q] == end[0] && s[q + 1] == end[1] && (block || mod != '+')) {
            if (!emit(L, block ? TK_BLOCK_END : TK_VAR_END, s + p, q + 2 - p)) return PV_ENOMEM;
            if (block) tag_end(L, q + 2, mod);
            else if (mod == '-') tag_end(L, q + 2, '-');
            else {
                advance(L, q + 2);
                L->line_starting = 0;
            }
            *done = 1;
            return 0;
        }
    }
    char c = s[p];
    if (c == '\'' || c == '"') return lex_string(L);
    if (is_digit(c)) return lex_number(L);
    if (is_name_start(c)) {
        size_t e = p;
        while (e < L->n && is_name_char(s[e])) e++;
        if (!emit(L, TK_NAME, s + p, e - p)) return PV_ENOMEM;
        advance(L, e);
        return 0;
    }
    for (size_t k = 0; k < sizeof OPS2 / sizeof *OPS2; k++)
        if (left >= 2 && s[p] == OPS2[k][0] && s[p + 1] == OPS2[k][1]) {
            if (!emit(L, TK_OP, s + p, 2)) return PV_ENOMEM;
            advance(L, p + 2);
            return 0;
        }
    if (!c || !strchr(OPS1, c)) {
        char msg[64];
        snprintf(msg, sizeof msg, "unexpected char '%c'", c);
        return lex_fail(L, msg);
    }
    if (c == '(' || c == '[' || c == '{') {
        if (*depth >= BALANCE_MAX) return lex_fail(L, "brackets nested too deeply");
        stack[(*depth)++] = c == '(' ? ')' : c == '[' ? ']' : '}';
    } else if (c == ')' || c == ']' || c == '}') {
        if (*depth == 0 || stack[*depth - 1] != c) {
            char msg[64];
            snprintf(msg, sizeof msg, "unexpected '%c'", c);
            return lex_fail(L, msg);
        }
        (*depth)--;
    }
    if (!emit(L, TK_OP, s + p, 1)) return PV_ENOMEM;
    advance(L, p + 1);
    return 0;
}

/* At pos just after "{%" and its modifier: "raw %}"? Returns the end of the
 * opening tag (0 if this is not a raw block) and its end modifier. */
static size_t raw_open(const lexer_t *L, size_t p, char *mod) {
    const char *s = L->src;
    while (p < L->n && is_ws(s[p])) p++;
    if (L->n - p < 3 || memcmp(s + p, "raw", 3) != 0) return 0;
    p += 3;
    if (p < L->n && is_name_char(s[p])) return 0;
    while (p < L->n && is_ws(s[p])) p++;
    *mod = p < L->n && s[p] == '-' ? '-' : 0;
    if (*mod) p++;
    return L->n - p >= 2 && s[p] == '%' && s[p + 1] == '}' ? p + 2 : 0;
}

/* The body of a raw block from pos to its {% endraw %}, as text. */
static int lex_raw(lexer_t *L, size_t body, char open_mod) {
    const char *s = L->src;
    if (open_mod == '-')
        while (body < L->n && is_ws(s[body])) body++;
    for (size_t i = body; i + 1 < L->n; i++) {
        if (s[i] != '{' || s[i + 1] != '%') continue;
        size_t p = i + 2;
        char mod = p < L->n && (s[p] == '-' || s[p] == '+') ? s[p] : 0;
        if (mod) p++;
        while (p < L->n && is_ws(s[p])) p++;
        if (L->n - p < 6 || memcmp(s + p, "endraw", 6) != 0) continue;
        p += 6;
        while (p < L->n && is_ws(s[p])) p++;
        char emod = p < L->n && (s[p] == '-' || s[p] == '+') ? s[p] : 0;
        size_t q = p + (emod ? 1 : 0);
        if (L->n - q < 2 || s[q] != '%' || s[q + 1] != '}') continue;
        advance(L, body);
        int rc = emit_text(L, body, i, mod, 1);
        if (rc) return rc;
        tag_end(L, q + 2, emod);
        return 0;
    }
    return lex_fail(L, "missing end of raw directive");
}

static int lex_comment(lexer_t *L, size_t p) {
    const char *s = L->src;
    for (size_t k = p; k + 1 < L->n; k++) {
        if (s[k] != '#' || s[k + 1] != '}') continue;
        char mod = k > p && (s[k - 1] == '-' || s[k - 1] == '+') ? s[k - 1] : 0;
        tag_end(L, k + 2, mod);
        return 0;
    }
    return lex_fail(L, "missing end of comment tag");
}

static int lex_all(lexer_t *L) {
    const char *s = L->src;
    char stack[BALANCE_MAX];
    L->line_starting = 1;
    while (L->pos < L->n) {
        size_t i = L->pos;
        while (i + 1 < L->n && !(s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#'))) i++;
        if (i + 1 >= L->n) {
            if (!emit(L, TK_TEXT, s + L->pos, L->n - L->pos)) return PV_ENOMEM;
            advance(L, L->n);
            break;
        }
        char kind = s[i + 1], mod = i + 2 < L->n && (s[i + 2] == '-' || s[i + 2] == '+') ? s[i + 2] : 0;
        size_t after = i + 2 + (mod ? 1 : 0);
        int rc = emit_text(L, L->pos, i, mod, kind != '{');
        if (rc) return rc;
        advance(L, after);
        if (kind == '#') {
            if ((rc = lex_comment(L, after)) != 0) return rc;
            continue;
        }
        char raw_mod = 0;
        size_t raw_end = kind == '%' ? raw_open(L, after, &raw_mod) : 0;
        if (raw_end) {
            if ((rc = lex_raw(L, raw_end, raw_mod)) != 0) return rc;
            continue;
        }
        if (!emit(L, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, s + i, after - i)) return PV_ENOMEM;
        int depth = 0, done = 0;
        while (!done)
            if ((rc = lex_in_tag(L, kind == '%', stack, &depth, &done)) != 0) return rc;
    }
    return emit(L, TK_EOF, s + L->n, 0) ? 0 : PV_ENOMEM;
}

/* Copies src with \r\n and \r turned into \n and one trailing \n dropped;
 * PV_ECORRUPT for bytes that are not UTF-8. */
static int normalise(lexer_t *L, const char *src, size_t len) {
    char *o = jv_alloc(L->a, len + 1, 1);
    if (!o) return PV_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = jv_utf8_next(src + i, len - i, &cp);
        if (k == 1 && (unsigned char)src[i] >= 0x80)
            return pv_errorf(L->err, L->errlen, PV_ECORRUPT, "template is not valid UTF-8 (byte %zu)", i);
        if (src[i] == '\r') {
            o[n++] = '\n';
            i += i + 1 < len && src[i + 1] == '\n' ? 2 : 1;
            continue;
        }
        memcpy(o + n, src + i, k);
        n += k;
        i += k;
    }
    if (n && o[n - 1] == '\n') n--;
    o[n] = 0;
    L->src = o;
    L->n = n;
    return 0;
}

/* ------------------------------------------------------------------ parser */

typedef struct parser {
    jv_arena_t *a;   /* parse arena (borrowed) */
    tok_t *t;        /* token array (borrowed) */
    size_t i;        /* current token */
    int depth;       /* recursion depth, bounded by PARSE_MAX_DEPTH */
    char *err;       /* message buffer (borrowed) */
    size_t errlen;
    int failed;      /* an error has been written */
} parser_t;

static tok_t *cur(parser_t *P) { return &P->t[P->i]; }
static tok_t *look(parser_t *P) { return P->t[P->i].kind == TK_EOF ? &P->t[P->i] : &P->t[P->i + 1]; }
static void next(parser_t *P) {
    if (P->t[P->i].kind != TK_EOF) P->i++;
}

static int tok_is(const tok_t *t, int kind, const char *text) {
    return t->kind == kind && (!text || (t->n == strlen(text) && memcmp(t->p, text, t->n) == 0));
}
static int is_op(parser_t *P, const char *op) { return tok_is(cur(P), TK_OP, op); }
static int is_name(parser_t *P, const char *name) { return tok_is(cur(P), TK_NAME, name); }

static const char *describe(const tok_t *t) {
    switch (t->kind) {
    case TK_EOF: return "end of template";
    case TK_BLOCK_END: return "end of statement block";
    case TK_VAR_END: return "end of print statement";
    case TK_BLOCK_BEGIN: return "begin of statement block";
    case TK_VAR_BEGIN: return "begin of print statement";
    case TK_TEXT: return "template data";
    case TK_STR: return "string";
    case TK_INT: return "integer";
    case TK_FLOAT: return "float";
    default: return NULL;
    }
}

static void *fail(parser_t *P, const char *fmt, const char *what) {
    if (!P->failed) {
        const tok_t *t = cur(P);
        char msg[256];
        const char *d = describe(t);
        char got[80];
        if (d) snprintf(got, sizeof got, "%s", d);
        else snprintf(got, sizeof got, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p);
        snprintf(msg, sizeof msg, fmt, what ? what : got, got);
        pv_errorf(P->err, P->errlen, PV_ECORRUPT, "template syntax error: %s (line %d)", msg, t->line);
        P->failed = 1;
    }
    return NULL;
}

static void *oom(parser_t *P) {
    if (!P->failed) pv_errorf(P->err, P->errlen, PV_ENOMEM, "out of memory parsing the template");
    P->failed = 1;
    return NULL;
}

static int expect_op(parser_t *P, const char *op) {
    if (!is_op(P, op)) {
        fail(P, "expected '%s', got %s", op);
        return -1;
    }
    next(P);
    return 0;
}

static int expect_end(parser_t *P) {
    if (cur(P)->kind != TK_BLOCK_END) {
        fail(P, "expected end of statement block, got %s", NULL);
        return -1;
    }
    next(P);
    return 0;
}

static jn_t *mk(parser_t *P, int kind) {
    jn_t *n = jv_alloc(P->a, 1, sizeof *n);
    if (!n) return oom(P);
    n->kind = kind;
    n->line = cur(P)->line;
    return n;
}

static const char *name_dup(parser_t *P, const tok_t *t) {
    char *s = jv_alloc(P->a, t->n + 1, 1);
    if (!s) return oom(P);
    memcpy(s, t->p, t->n);
    return s;
}

/* Growable arrays in the parse arena. */
typedef struct nvec {
    jn_t **p;   /* (cap) nodes */
    size_t n;   /* used */
    size_t cap; /* allocated */
} nvec_t;

typedef struct svec {
    const char **p; /* (cap) names */
    size_t n;       /* used */
    size_t cap;     /* allocated */
} svec_t;

static int npush(parser_t *P, nvec_t *v, jn_t *x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 4;
        jn_t **p = jv_alloc(P->a, cap, sizeof *p);
        if (!p) return oom(P), -1;
        if (v->n) memcpy(p, v->p, v->n * sizeof *p);
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = x;
    return 0;
}

static int spush(parser_t *P, svec_t *v, const char *x) {
    if (!x) return -1;
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 4;
        const char **p = jv_alloc(P->a, cap, sizeof *p);
        if (!p) return oom(P), -1;
        if (v->n) memcpy(p, v->p, v->n * sizeof *p);
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = x;
    return 0;
}

static jn_t *parse_expr(parser_t *P, int with_cond);
static jn_t *parse_tuple(parser_t *P, int with_cond, const char *extra_end, int explicit_parens);
static jn_t *parse_unary(parser_t *P, int with_filter);
static jn_t *parse_postfix(parser_t *P, jn_t *node);
static jn_t *parse_primary(parser_t *P);

static int enter(parser_t *P) {
    if (++P->depth > PARSE_MAX_DEPTH) {
        fail(P, "template nested too deeply near %s", NULL);
        return -1;
    }
    return 0;
}

/* ( args, name=kwargs ) into n->v and n->names / n->w. */
static int parse_call_args(parser_t *P, jn_t *n) {
    if (expect_op(P, "(")) return -1;
    nvec_t args = {0}, kwv = {0};
    svec_t kwn = {0};
    while (!is_op(P, ")")) {
        if (args.n + kwv.n && expect_op(P, ",")) return -1;
        if (is_op(P, ")")) break;
        if (is_op(P, "*") || is_op(P, "**")) return fail(P, "%s: *args and **kwargs are not supported", NULL), -1;
        if (cur(P)->kind == TK_NAME && tok_is(look(P), TK_OP, "=")) {
            if (spush(P, &kwn, name_dup(P, cur(P)))) return -1;
            next(P);
            next(P);
            jn_t *e = parse_expr(P, 1);
            if (!e || npush(P, &kwv, e)) return -1;
        } else {
            if (kwv.n) return fail(P, "positional argument after keyword argument at %s", NULL), -1;
            jn_t *e = parse_expr(P, 1);
            if (!e || npush(P, &args, e)) return -1;
        }
    }
    next(P);
    n->v = args.p;
    n->nv = args.n;
    n->w = kwv.p;
    n->nw = kwv.n;
    n->names = kwn.p;
    n->nnames = kwn.n;
    return 0;
}

/* name[.name...] after | or is. */
static const char *dotted_name(parser_t *P) {
    if (cur(P)->kind != TK_NAME) return fail(P, "expected a name, got %s", NULL);
    const tok_t *t = cur(P);
    size_t len = t->n;
    const char *start = t->p;
    next(P);
    while (is_op(P, ".") && look(P)->kind == TK_NAME) {
        next(P);
        len = (size_t)(cur(P)->p + cur(P)->n - start);
        next(P);
    }
    tok_t tmp = {.p = start, .n = len};
    return name_dup(P, &tmp);
}

static jn_t *parse_filter(parser_t *P, jn_t *node) {
    while (is_op(P, "|")) {
        next(P);
        jn_t *f = mk(P, JN_FILTER);
        if (!f) return NULL;
        f->a = node;
        if (!(f->s = dotted_name(P))) return NULL;
        f->sn = strlen(f->s);
        if (is_op(P, "(") && parse_call_args(P, f)) return NULL;
        node = f;
    }
    return node;
}

static jn_t *parse_test(parser_t *P, jn_t *node) {
    next(P); /* is */
    jn_t *t = mk(P, JN_TEST);
    if (!t) return NULL;
    t->a = node;
    if (is_name(P, "not")) {
        t->op = 1;
        next(P);
    }
    if (!(t->s = dotted_name(P))) return NULL;
    t->sn = strlen(t->s);
    const tok_t *c = cur(P);
    if (is_op(P, "(")) {
        if (parse_call_args(P, t)) return NULL;
    } else if ((c->kind == TK_NAME || c->kind == TK_STR || c->kind == TK_INT || c->kind == TK_FLOAT ||
                is_op(P, "[") || is_op(P, "{")) &&
               !is_name(P, "else") && !is_name(P, "or") && !is_name(P, "and")) {
        if (is_name(P, "is")) return fail(P, "cannot chain multiple tests with is", NULL);
        jn_t *arg = parse_primary(P);
        if (!arg || !(arg = parse_postfix(P, arg))) return NULL;
        if (!(t->v = jv_alloc(P->a, 1, sizeof *t->v))) return oom(P);
        t->v[0] = arg;
        t->nv = 1;
    }
    return t;
}

static jn_t *parse_filter_expr(parser_t *P, jn_t *node) {
    for (;;) {
        if (is_op(P, "|")) node = parse_filter(P, node);
        else if (is_name(P, "is")) node = parse_test(P, node);
        else if (is_op(P, "(")) {
            jn_t *c = mk(P, JN_CALL);
            if (!c) return NULL;
            c->a = node;
            if (parse_call_args(P, c)) return NULL;
            node = c;
        } else return node;
        if (!node) return NULL;
    }
}

/* One subscript: an expression or a slice a:b:c. */
static jn_t *parse_subscribed(parser_t *P) {
    jn_t *first = NULL;
    if (!is_op(P, ":")) {
        first = parse_expr(P, 1);
        if (!first || !is_op(P, ":")) return first;
    }
    next(P); /* : */
    jn_t *s = mk(P, JN_SLICE);
    if (!s) return NULL;
    s->b = first;
    if (!is_op(P, "]") && !is_op(P, ",") && !is_op(P, ":") && !(s->c = parse_expr(P, 1))) return NULL;
    if (is_op(P, ":")) {
        next(P);
        if (!is_op(P, "]") && !is_op(P, ",") && !(s->d = parse_expr(P, 1))) return NULL;
    }
    return s;
}

static jn_t *parse_postfix(parser_t *P, jn_t *node) {
    for (;;) {
        if (is_op(P, ".")) {
            next(P);
            const tok_t *t = cur(P);
            if (t->kind == TK_NAME) {
                jn_t *a = mk(P, JN_ATTR);
                if (!a || !(a->s = name_dup(P, t))) return NULL;
                a->sn = t->n;
                a->a = node;
                node = a;
            } else if (t->kind == TK_INT) {
                jn_t *k = mk(P, JN_LIT), *g = mk(P, JN_ITEM);
                if (!k || !g) return NULL;
                k->lit = t->lit;
                g->a = node;
                g->b = k;
                node = g;
            } else return fail(P, "expected name or number, got %s", NULL);
            next(P);
        } else if (is_op(P, "[")) {
            next(P);
            nvec_t args = {0};
            while (!is_op(P, "]")) {
                if (args.n && expect_op(P, ",")) return NULL;
                jn_t *s = parse_subscribed(P);
                if (!s || npush(P, &args, s)) return NULL;
            }
            next(P);
            if (args.n == 0) return fail(P, "expected a subscript before %s", NULL);
            jn_t *sub = args.p[0];
            if (args.n > 1) {
                if (!(sub = mk(P, JN_TUPLE))) return NULL;
                sub->v = args.p;
                sub->nv = args.n;
            }
            if (sub->kind == JN_SLICE) {
                sub->a = node;
                node = sub;
            } else {
                jn_t *g = mk(P, JN_ITEM);
                if (!g) return NULL;
                g->a = node;
                g->b = sub;
                node = g;
            }
        } else if (is_op(P, "(")) {
            jn_t *c = mk(P, JN_CALL);
            if (!c) return NULL;
            c->a = node;
            if (parse_call_args(P, c)) return NULL;
            node = c;
        } else return node;
    }
}

static jn_t *parse_seq(parser_t *P, int kind, const char *close) {
    jn_t *n = mk(P, kind);
    if (!n) return NULL;
    next(P); /* [ or { */
    nvec_t keys = {0}, vals = {0};
    while (!is_op(P, close)) {
        if (keys.n && expect_op(P, ",")) return NULL;
        if (is_op(P, close)) break;
        jn_t *k = parse_expr(P, 1);
        if (!k || npush(P, &keys, k)) return NULL;
        if (kind == JN_DICT) {
            if (expect_op(P, ":")) return NULL;
            jn_t *v = parse_expr(P, 1);
            if (!v || npush(P, &vals, v)) return NULL;
        }
    }
    next(P);
    n->v = keys.p;
    n->nv = keys.n;
    n->w = vals.p;
    n->nw = vals.n;
    return n;
}

static jn_t *parse_primary(parser_t *P) {
    const tok_t *t = cur(P);
    if (enter(P)) return NULL;
    jn_t *n = NULL;
    if (t->kind == TK_NAME) {
        if (!(n = mk(P, JN_LIT))) return NULL;
        if (tok_is(t, TK_NAME, "true") || tok_is(t, TK_NAME, "True")) n->lit = jv_bool(1);
        else if (tok_is(t, TK_NAME, "false") || tok_is(t, TK_NAME, "False")) n->lit = jv_bool(0);
        else if (tok_is(t, TK_NAME, "none") || tok_is(t, TK_NAME, "None")) n->lit = jv_none();
        else {
            n->kind = JN_NAME;
            if (!(n->s = name_dup(P, t))) return NULL;
            n->sn = t->n;
        }
        next(P);
    } else if (t->kind == TK_STR) {
        if (!(n = mk(P, JN_LIT))) return NULL;
        n->lit = t->lit;
        next(P);
        while (cur(P)->kind == TK_STR) { /* adjacent literals concatenate */
            jv_t s = cur(P)->lit;
            char *p = jv_alloc(P->a, n->lit.n + s.n + 1, 1);
            if (!p) return oom(P);
            memcpy(p, n->lit.s, n->lit.n);
            memcpy(p + n->lit.n, s.s, s.n);
            n->lit = jv_str(p, n->lit.n + s.n);
            next(P);
        }
    } else if (t->kind == TK_INT || t->kind == TK_FLOAT) {
        if (!(n = mk(P, JN_LIT))) return NULL;
        n->lit = t->lit;
        next(P);
    } else if (is_op(P, "(")) {
        next(P);
        if (!(n = parse_tuple(P, 1, NULL, 1)) || expect_op(P, ")")) return NULL;
    } else if (is_op(P, "[")) {
        n = parse_seq(P, JN_LIST, "]");
    } else if (is_op(P, "{")) {
        n = parse_seq(P, JN_DICT, "}");
    } else {
        return fail(P, "unexpected %s", NULL);
    }
    P->depth--;
    return n;
}

static jn_t *parse_unary(parser_t *P, int with_filter) {
    jn_t *n;
    if (enter(P)) return NULL;
    if (is_op(P, "-") || is_op(P, "+")) {
        if (!(n = mk(P, JN_UNARY))) return NULL;
        n->op = cur(P)->p[0];
        next(P);
        if (!(n->a = parse_unary(P, 0))) return NULL;
    } else if (!(n = parse_primary(P))) {
        return NULL;
    }
    if (!(n = parse_postfix(P, n))) return NULL;
    if (with_filter && !(n = parse_filter_expr(P, n))) return NULL;
    P->depth--;
    return n;
}

static jn_t *binary(parser_t *P, int kind, int op, jn_t *l, jn_t *r) {
    if (!l || !r) return NULL;
    jn_t *n = mk(P, kind);
    if (!n) return NULL;
    n->op = op;
    n->a = l;
    n->b = r;
    return n;
}

static jn_t *parse_pow(parser_t *P) {
    jn_t *l = parse_unary(P, 1);
    while (l && is_op(P, "**")) {
        next(P);
        l = binary(P, JN_BINARY, 'P', l, parse_unary(P, 1));
    }
    return l;
}

static jn_t *parse_math2(parser_t *P) {
    jn_t *l = parse_pow(P);
    while (l && (is_op(P, "*") || is_op(P, "/") || is_op(P, "//") || is_op(P, "%"))) {
        int op = cur(P)->n == 2 ? 'F' : cur(P)->p[0];
        next(P);
        l = binary(P, JN_BINARY, op, l, parse_pow(P));
    }
    return l;
}

static jn_t *parse_concat(parser_t *P) {
    jn_t *first = parse_math2(P);
    if (!first || !is_op(P, "~")) return first;
    jn_t *n = mk(P, JN_CONCAT);
    nvec_t v = {0};
    if (!n || npush(P, &v, first)) return NULL;
    while (is_op(P, "~")) {
        next(P);
        jn_t *e = parse_math2(P);
        if (!e || npush(P, &v, e)) return NULL;
    }
    n->v = v.p;
    n->nv = v.n;
    return n;
}

static jn_t *parse_math1(parser_t *P) {
    jn_t *l = parse_concat(P);
    while (l && (is_op(P, "+") || is_op(P, "-"))) {
        int op = cur(P)->p[0];
        next(P);
        l = binary(P, JN_BINARY, op, l, parse_concat(P));
    }
    return l;
}

/* The operator code of a comparison at the cursor (consumed), or 0. */
static int compare_op(parser_t *P) {
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    static const char codes[] = "=!<L>G";
    for (int k = 0; k < 6; k++)
        if (is_op(P, ops[k])) {
            next(P);
            return codes[k];
        }
    if (is_name(P, "in")) {
        next(P);
        return 'i';
    }
    if (is_name(P, "not") && tok_is(look(P), TK_NAME, "in")) {
        next(P);
        next(P);
        return 'n';
    }
    return 0;
}

static jn_t *parse_compare(parser_t *P) {
    jn_t *first = parse_math1(P);
    if (!first) return NULL;
    int op = compare_op(P);
    if (!op) return first;
    jn_t *n = mk(P, JN_COMPARE);
    nvec_t v = {0};
    char ops[64];
    size_t nops = 0;
    if (!n || npush(P, &v, first)) return NULL;
    for (; op; op = compare_op(P)) {
        if (nops == sizeof ops) return fail(P, "comparison chain too long at %s", NULL);
        ops[nops++] = (char)op;
        jn_t *e = parse_math1(P);
        if (!e || npush(P, &v, e)) return NULL;
    }
    if (!(n->ops = jv_alloc(P->a, nops, 1))) return oom(P);
    memcpy(n->ops, ops, nops);
    n->v = v.p;
    n->nv = v.n;
    return n;
}

static jn_t *parse_not(parser_t *P) {
    if (!is_name(P, "not")) return parse_compare(P);
    jn_t *n = mk(P, JN_UNARY);
    if (!n || enter(P)) return NULL;
    n->op = '!';
    next(P);
    if (!(n->a = parse_not(P))) return NULL;
    P->depth--;
    return n;
}

static jn_t *parse_and(parser_t *P) {
    jn_t *l = parse_not(P);
    while (l && is_name(P, "and")) {
        next(P);
        l = binary(P, JN_AND, 0, l, parse_not(P));
    }
    return l;
}

static jn_t *parse_or(parser_t *P) {
    jn_t *l = parse_and(P);
    while (l && is_name(P, "or")) {
        next(P);
        l = binary(P, JN_OR, 0, l, parse_and(P));
    }
    return l;
}

static jn_t *parse_expr(parser_t *P, int with_cond) {
    if (enter(P)) return NULL;
    jn_t *e = parse_or(P);
    while (with_cond && e && is_name(P, "if")) {
        next(P);
        jn_t *c = mk(P, JN_COND);
        if (!c) return NULL;
        c->b = e;
        if (!(c->a = parse_or(P))) return NULL;
        if (is_name(P, "else")) {
            next(P);
            if (!(c->c = parse_expr(P, 1))) return NULL;
        }
        e = c;
    }
    if (e) P->depth--;
    return e;
}

static int tuple_end(parser_t *P, const char *extra_end) {
    int k = cur(P)->kind;
    return k == TK_VAR_END || k == TK_BLOCK_END || k == TK_EOF || is_op(P, ")") ||
           (extra_end && is_name(P, extra_end));
}

static jn_t *parse_tuple(parser_t *P, int with_cond, const char *extra_end, int explicit_parens) {
    nvec_t v = {0};
    int is_tuple = 0;
    for (;;) {
        if (v.n && expect_op(P, ",")) return NULL;
        if (tuple_end(P, extra_end)) break;
        jn_t *e = parse_expr(P, with_cond);
        if (!e || npush(P, &v, e)) return NULL;
        if (is_op(P, ",")) is_tuple = 1;
        else break;
    }
    if (!is_tuple) {
        if (v.n) return v.p[0];
        if (!explicit_parens) return fail(P, "expected an expression, got %s", NULL);
    }
    jn_t *t = mk(P, JN_TUPLE);
    if (!t) return NULL;
    t->v = v.p;
    t->nv = v.n;
    return t;
}

/* Assignment targets: name[, name...], optionally parenthesised. */
static int parse_targets(parser_t *P, svec_t *names) {
    int paren = is_op(P, "(");
    if (paren) next(P);
    do {
        if (names->n) next(P); /* , */
        if (cur(P)->kind != TK_NAME) return fail(P, "expected a name to assign to, got %s", NULL), -1;
        if (spush(P, names, name_dup(P, cur(P)))) return -1;
        next(P);
    } while (is_op(P, ","));
    return paren ? expect_op(P, ")") : 0;
}

/* ---- statements */

static int parse_body(parser_t *P, const char *const *ends, nvec_t *body, const char **found);

/* The statements up to one of ends into n's main body (v). */
static int parse_then(parser_t *P, jn_t *n, const char *const *ends, const char **found) {
    nvec_t body = {0};
    if (parse_body(P, ends, &body, found)) return -1;
    n->v = body.p;
    n->nv = body.n;
    return 0;
}

/* After the main body ended at found: an else branch up to end (into n->w), then the closing tag. */
static jn_t *parse_else(parser_t *P, jn_t *n, const char *found, const char *const *end) {
    if (strcmp(found, "else") == 0) {
        nvec_t other = {0};
        if (expect_end(P) || parse_body(P, end, &other, &found)) return NULL;
        n->w = other.p;
        n->nw = other.n;
    }
    return expect_end(P) ? NULL : n;
}

static jn_t *parse_if(parser_t *P) {
    jn_t *n = mk(P, JN_IF);
    if (!n) return NULL;
    next(P); /* if / elif */
    if (!(n->a = parse_tuple(P, 0, NULL, 0)) || expect_end(P)) return NULL;
    static const char *const ends[] = {"elif", "else", "endif", NULL}, *const end_if[] = {"endif", NULL};
    const char *found = NULL;
    if (parse_then(P, n, ends, &found)) return NULL;
    if (strcmp(found, "elif") == 0) {
        nvec_t other = {0};
        P->i--; /* parse_if consumes the keyword */
        jn_t *e = parse_if(P);
        if (!e || npush(P, &other, e)) return NULL;
        n->w = other.p;
        n->nw = other.n;
        return n;
    }
    return parse_else(P, n, found, end_if);
}

static jn_t *parse_for(parser_t *P) {
    jn_t *n = mk(P, JN_FOR);
    if (!n) return NULL;
    next(P);
    svec_t names = {0};
    if (parse_targets(P, &names)) return NULL;
    n->names = names.p;
    n->nnames = names.n;
    if (!is_name(P, "in")) return fail(P, "expected 'in', got %s", NULL);
    next(P);
    if (!(n->a = parse_tuple(P, 0, "recursive", 0))) return NULL;
    if (is_name(P, "if")) {
        next(P);
        if (!(n->b = parse_expr(P, 1))) return NULL;
    }
    if (is_name(P, "recursive")) return fail(P, "recursive loops are not supported (%s)", NULL);
    if (expect_end(P)) return NULL;
    static const char *const ends[] = {"endfor", "else", NULL}, *const end_for[] = {"endfor", NULL};
    const char *found = NULL;
    if (parse_then(P, n, ends, &found)) return NULL;
    return parse_else(P, n, found, end_for);
}

static jn_t *parse_set(parser_t *P) {
    jn_t *n = mk(P, JN_SET);
    if (!n) return NULL;
    next(P);
    svec_t names = {0};
    if (cur(P)->kind == TK_NAME && tok_is(look(P), TK_OP, ".")) { /* ns.attr */
        if (!(n->s = name_dup(P, cur(P)))) return NULL;
        next(P);
        next(P);
        if (cur(P)->kind != TK_NAME) return fail(P, "expected an attribute name, got %s", NULL);
        if (spush(P, &names, name_dup(P, cur(P)))) return NULL;
        next(P);
        n->op = 1;
    } else if (parse_targets(P, &names)) {
        return NULL;
    }
    n->names = names.p;
    n->nnames = names.n;
    if (is_op(P, "=")) {
        next(P);
        if (!(n->a = parse_tuple(P, 1, NULL, 0))) return NULL;
        return expect_end(P) ? NULL : n;
    }
    if (n->op || names.n != 1) return fail(P, "expected '=', got %s", NULL);
    n->kind = JN_SETBLOCK;
    if (is_op(P, "|")) {
        jn_t *ref = mk(P, JN_BODYREF);
        if (!ref || !(n->b = parse_filter(P, ref))) return NULL;
    }
    static const char *const ends[] = {"endset", NULL};
    nvec_t body = {0};
    const char *found;
    if (expect_end(P) || parse_body(P, ends, &body, &found) || expect_end(P)) return NULL;
    n->v = body.p;
    n->nv = body.n;
    return n;
}

static jn_t *parse_macro(parser_t *P) {
    jn_t *n = mk(P, JN_MACRO);
    if (!n) return NULL;
    next(P);
    if (cur(P)->kind != TK_NAME) return fail(P, "expected a macro name, got %s", NULL);
    if (!(n->s = name_dup(P, cur(P)))) return NULL;
    n->sn = cur(P)->n;
    next(P);
    if (expect_op(P, "(")) return NULL;
    svec_t params = {0};
    nvec_t defaults = {0};
    while (!is_op(P, ")")) {
        if (params.n && expect_op(P, ",")) return NULL;
        if (is_op(P, ")")) break;
        if (cur(P)->kind != TK_NAME) return fail(P, "expected a parameter name, got %s", NULL);
        if (spush(P, &params, name_dup(P, cur(P)))) return NULL;
        next(P);
        jn_t *def = NULL;
        if (is_op(P, "=")) {
            next(P);
            if (!(def = parse_expr(P, 1))) return NULL;
        } else if (defaults.n && defaults.p[defaults.n - 1]) {
            return fail(P, "non-default argument follows default argument at %s", NULL);
        }
        if (npush(P, &defaults, def)) return NULL;
    }
    next(P);
    n->names = params.p;
    n->nnames = params.n;
    n->w = defaults.p;
    n->nw = defaults.n;
    static const char *const ends[] = {"endmacro", NULL};
    nvec_t body = {0};
    const char *found;
    if (expect_end(P) || parse_body(P, ends, &body, &found)) return NULL;
    if (cur(P)->kind == TK_NAME) next(P); /* {% endmacro name %} */
    if (expect_end(P)) return NULL;
    n->v = body.p;
    n->nv = body.n;
    return n;
}

/* {% filter f %}...{% endfilter %} and {% generation %}...{% endgeneration %}. */
static jn_t *parse_wrapper(parser_t *P, int is_filter) {
    jn_t *n = mk(P, is_filter ? JN_FILTERBLOCK : JN_IF);
    if (!n) return NULL;
    next(P);
    if (is_filter) {
        jn_t *ref = mk(P, JN_BODYREF);
        if (!ref) return NULL;
        P->i--; /* parse_filter expects the pipe: reuse the keyword slot */
        tok_t saved = *cur(P);
        *cur(P) = (tok_t){.kind = TK_OP, .p = "|", .n = 1, .line = saved.line};
        n->b = parse_filter(P, ref);
        if (!n->b) return NULL;
    } else {
        if (!(n->a = mk(P, JN_LIT))) return NULL;
        n->a->lit = jv_bool(1);
    }
    static const char *const end_filter[] = {"endfilter", NULL}, *const end_gen[] = {"endgeneration", NULL};
    nvec_t body = {0};
    const char *found;
    if (expect_end(P) || parse_body(P, is_filter ? end_filter : end_gen, &body, &found) || expect_end(P))
        return NULL;
    n->v = body.p;
    n->nv = body.n;
    return n;
}

static jn_t *parse_statement(parser_t *P) {
    if (cur(P)->kind != TK_NAME) return fail(P, "tag name expected, got %s", NULL);
    if (is_name(P, "if")) return parse_if(P);
    if (is_name(P, "for")) return parse_for(P);
    if (is_name(P, "set")) return parse_set(P);
    if (is_name(P, "macro")) return parse_macro(P);
    if (is_name(P, "filter")) return parse_wrapper(P, 1);
    if (is_name(P, "generation")) return parse_wrapper(P, 0);
    if (is_name(P, "break") || is_name(P, "continue")) {
        jn_t *n = mk(P, is_name(P, "break") ? JN_BREAK : JN_CONTINUE);
        if (!n) return NULL;
        next(P);
        return expect_end(P) ? NULL : n;
    }
    return fail(P, "encountered unknown tag %s", NULL);
}

/* Statements up to a block tag named in ends (NULL-terminated; NULL for the
 * top level, which ends at EOF). On return the cursor is after the end name. */
static int parse_body(parser_t *P, const char *const *ends, nvec_t *body, const char **found) {
    if (enter(P)) return -1;
    for (;;) {
        tok_t *t = cur(P);
        jn_t *n = NULL;
        if (t->kind == TK_EOF) {
            if (ends) {
                char want[128] = "";
                for (const char *const *e = ends; *e; e++)
                    snprintf(want + strlen(want), sizeof want - strlen(want), "%s'%s'", e == ends ? "" : " or ", *e);
                return fail(P, "unexpected end of template, expected %s", want), -1;
            }
            break;
        } else if (t->kind == TK_TEXT) {
            if (!(n = mk(P, JN_TEXT))) return -1;
            n->s = t->p;
            n->sn = t->n;
            next(P);
        } else if (t->kind == TK_VAR_BEGIN) {
            next(P);
            if (!(n = mk(P, JN_OUTPUT)) || !(n->a = parse_tuple(P, 1, NULL, 0))) return -1;
            if (cur(P)->kind != TK_VAR_END) return fail(P, "expected end of print statement, got %s", NULL), -1;
            next(P);
        } else if (t->kind == TK_BLOCK_BEGIN) {
            next(P);
            for (const char *const *e = ends; e && *e; e++)
                if (is_name(P, *e)) {
                    *found = *e;
                    next(P);
                    P->depth--;
                    return 0;
                }
            if (!(n = parse_statement(P))) return -1;
        } else {
            return fail(P, "unexpected %s", NULL), -1;
        }
        if (npush(P, body, n)) return -1;
    }
    P->depth--;
    return 0;
}

/* ------------------------------------------------------------------ API */

int pv_jinja_parse(const char *src, size_t len, pv_jinja_t **out, char *err, size_t errlen) {
    *out = NULL;
    pv_jinja_t *t = calloc(1, sizeof *t);
    if (!t || !(t->arena = jv_arena_new(PARSE_MAX_MEMORY + 64 * len))) {
        free(t);
        return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    }
    lexer_t L = {.a = t->arena, .line = 1, .err = err, .errlen = errlen};
    int rc = normalise(&L, src ? src : "", src ? len : 0);
    if (!rc) rc = lex_all(&L);
    if (rc == PV_ENOMEM) pv_errorf(err, errlen, rc, "out of memory lexing the template");
    if (rc) goto fail;
    parser_t P = {.a = t->arena, .t = L.toks, .err = err, .errlen = errlen};
    nvec_t body = {0};
    const char *found = NULL;
    if (!(t->root = mk(&P, JN_IF)) || parse_body(&P, NULL, &body, &found)) {
        rc = P.failed && jv_arena_exhausted(t->arena) ? PV_ENOMEM : PV_ECORRUPT;
        goto fail;
    }
    t->root->v = body.p;
    t->root->nv = body.n;
    *out = t;
    return 0;
fail:
    pv_jinja_free(t);
    return rc;
}

void pv_jinja_free(pv_jinja_t *t) {
    if (!t) return;
    jv_arena_free(t->arena);
    free(t);
}
