/* value.h - the dynamic values of the chat template interpreter (jinja.c).
 *
 * A value is a small struct passed by value: a type tag and a payload. Every
 * string, list, dict and method binding a value points to lives in an arena
 * (jv_arena_t) that one render owns and frees at its end, so values have no
 * refcounts and no individual frees. Lists, tuples and dicts are immutable
 * once built (Jinja's sandbox forbids append/pop/update); only a namespace()
 * dict is assigned to, through jv_dict_set().
 *
 * The printing rules are Python's: jv_str() is str(x) (True/False/None,
 * 1.0, lists as [1, 'a']), jv_tojson() is json.dumps(x, ...) as Hugging Face's
 * tojson filter calls it. Strings are UTF-8 with an explicit length; lengths,
 * indexes and slices count characters, as Python does. */
#ifndef PV_CHAT_VALUE_H
#define PV_CHAT_VALUE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Types. JV_UNDEF is Jinja's lenient Undefined (prints as '', iterates as
 * nothing, raises its message when used in arithmetic or attribute access). */
typedef enum {
    JV_UNDEF,  /* s: the message it raises ("'x' is undefined"), may be empty */
    JV_NONE,   /* Python None */
    JV_BOOL,   /* i: 0 or 1 */
    JV_INT,    /* i */
    JV_FLOAT,  /* f */
    JV_STR,    /* s: UTF-8 bytes, not NUL-terminated */
    JV_LIST,   /* seq */
    JV_TUPLE,  /* seq (prints with parentheses) */
    JV_DICT,   /* dict: insertion ordered */
    JV_NS,     /* dict: a namespace(), the one mutable container */
    JV_LOOP,   /* ptr: the interpreter's loop state (loop.index, ...) */
    JV_MACRO,  /* ptr: the macro's AST node */
    JV_FUNC,   /* aux: a built-in global function id (range, namespace, ...) */
    JV_METHOD, /* ptr: the bound object (jv_t *); aux: method id; s: its name */
    JV_COUNT
} jv_type_t;

typedef struct jv_arena jv_arena_t;
typedef struct jv_seq jv_seq_t;
typedef struct jv_dict jv_dict_t;

typedef struct jv {
    int type; /* jv_type_t */
    int aux;  /* JV_FUNC / JV_METHOD: function or method id */
    union {
        int64_t i;            /* JV_BOOL, JV_INT */
        double f;             /* JV_FLOAT */
        jv_seq_t *seq;        /* JV_LIST, JV_TUPLE: arena-owned */
        jv_dict_t *dict;      /* JV_DICT, JV_NS: arena-owned */
        const void *ptr;      /* JV_LOOP, JV_MACRO, JV_METHOD: borrowed */
    } u;
    const char *s; /* JV_STR, JV_UNDEF, JV_METHOD: arena-owned bytes (or static) */
    size_t n;      /* length of s in bytes */
} jv_t;

struct jv_seq {
    size_t n;     /* number of items */
    jv_t *items;  /* (n) arena-owned */
};

struct jv_dict {
    size_t n;    /* number of entries */
    size_t cap;  /* allocated entries in keys/vals */
    jv_t *keys;  /* (cap) in insertion order; keys are unique under jv_eq */
    jv_t *vals;  /* (cap) */
};

/* A growable byte buffer in an arena; every append checks max. */
typedef struct jv_buf {
    jv_arena_t *a; /* where the bytes live (borrowed) */
    char *p;       /* (cap) bytes, p[0..n) written */
    size_t n;      /* bytes written */
    size_t cap;    /* bytes allocated */
    size_t max;    /* appends beyond this many bytes fail with PV_ERANGE */
} jv_buf_t;

/* Largest nesting jv_str/jv_tojson/jv_eq/jv_from_json walk before failing. */
#define JV_MAX_DEPTH 256

/* ---------------------------------------------------------------- arena */

/* An arena that refuses to grow beyond max_bytes; NULL on OOM. */
jv_arena_t *jv_arena_new(size_t max_bytes);
void jv_arena_free(jv_arena_t *a); /* accepts NULL; frees every allocation */
/* Zeroed memory for n items of size bytes, 16-aligned; NULL past the cap. */
void *jv_alloc(jv_arena_t *a, size_t n, size_t size);
/* Copies of two parallel arrays (pa, pb: elements of sa and sb bytes) holding
 * n entries, at twice their capacity *cap (8 at first), into *na and *nb in a;
 * *cap becomes the new capacity. 0, or PV_ENOMEM with *cap unchanged. */
int jv_grow_pair(jv_arena_t *a, const void *pa, size_t sa, const void *pb, size_t sb, size_t n, size_t *cap, void **na,
                 void **nb);
/* 1 once an allocation has failed (the cap was hit or malloc failed). */
int jv_arena_exhausted(const jv_arena_t *a);
size_t jv_arena_max(const jv_arena_t *a);

/* ---------------------------------------------------------------- constructors */

jv_t jv_undef(const char *msg, size_t n); /* msg borrowed: keep it alive */
jv_t jv_none(void);
jv_t jv_bool(int b);
jv_t jv_int(int64_t i);
jv_t jv_float(double f);
jv_t jv_str(const char *s, size_t n); /* borrowed: s must outlive the value */
/* A copy of s in the arena; JV_UNDEF with empty message when out of memory
 * (check jv_arena_exhausted). */
int jv_str_copy(jv_arena_t *a, const char *s, size_t n, jv_t *out);
/* A list or tuple of n items (copied); PV_ENOMEM when the arena is full. */
int jv_seq_new(jv_arena_t *a, int type, const jv_t *items, size_t n, jv_t *out);
int jv_dict_new(jv_arena_t *a, int type, jv_t *out);
/* Inserts or replaces key (Python dict semantics). */
int jv_dict_set(jv_arena_t *a, jv_dict_t *d, jv_t key, jv_t val);
/* The value of key, or NULL. */
const jv_t *jv_dict_get(const jv_dict_t *d, jv_t key);
const jv_t *jv_dict_gets(const jv_dict_t *d, const char *key, size_t n);

/* Converts a JSON value (borrowed) into the arena: objects keep their order. */
int jv_from_json(jv_arena_t *a, const json_t *j, jv_t *out, char *err, size_t errlen);

/* ---------------------------------------------------------------- semantics */

int jv_truthy(jv_t v);
/* Python ==, deep; int, float and bool compare by value. */
int jv_eq(jv_t a, jv_t b);
/* Python <, <=, >, >= as a three-way compare in *res (-1, 0, 1); PV_EINVAL
 * with Python's TypeError message for unorderable operands. */
int jv_cmp(jv_t a, jv_t b, int *res, char *err, size_t errlen);
/* Python's type name (NoneType, str, dict, ...). */
const char *jv_type_name(jv_t v);

/* ---------------------------------------------------------------- text */

int jv_buf_init(jv_buf_t *b, jv_arena_t *a, size_t max);
int jv_buf_put(jv_buf_t *b, const char *s, size_t n); /* PV_ERANGE past max, PV_ENOMEM */
int jv_buf_puts(jv_buf_t *b, const char *s);
/* Appends str(v) (repr == 0) or repr(v) (repr == 1). */
int jv_write(jv_buf_t *b, jv_t v, int repr);
/* Python float repr (shortest round trip: 1.0, 0.1, 1e+20) into buf (>= 32). */
void jv_float_repr(double f, char *buf, size_t len);

/* json.dumps options as the tojson filter passes them. */
typedef struct jv_json_opts {
    int ensure_ascii;     /* escape non-ASCII as \uXXXX */
    int sort_keys;        /* order object keys */
    const char *indent;   /* NULL: one line; else the indent unit (may be "") */
    const char *item_sep; /* between items; default ", " (or "," with indent) */
    const char *key_sep;  /* between key and value; default ": " */
} jv_json_opts_t;

/* Appends json.dumps(v); PV_EINVAL "Object of type X is not JSON serializable". */
int jv_tojson(jv_buf_t *b, jv_t v, const jv_json_opts_t *o, char *err, size_t errlen);

/* ---------------------------------------------------------------- UTF-8 */

/* Number of characters in s (invalid bytes count as one each). */
size_t jv_utf8_len(const char *s, size_t n);
/* Byte offset of character index ci (clamped to n). */
size_t jv_utf8_offset(const char *s, size_t n, size_t ci);
/* Encodes cp (surrogates become U+FFFD) into o (4 bytes room); its length. */
size_t jv_utf8_put(char *o, uint32_t cp);
/* Decodes one character at s[0..n), n > 0; returns its byte length. */
size_t jv_utf8_next(const char *s, size_t n, uint32_t *cp);

#endif
