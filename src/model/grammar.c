/* grammar.c - JSON Schema subset -> a table of nodes; a frame stack that
 * matches bytes against them; the token mask over a vocabulary.
 *
 * Nodes (one kind each):
 *   STRING  a string of min..max characters
 *   NUMBER  a JSON number (integer: no fraction, no exponent)
 *   ENUM    one of a sorted set of literal texts (compact JSON of scalars);
 *           matched by narrowing the range of literals that share the prefix
 *   OBJECT  declared properties (keys are literals "name", in any order, each
 *           at most once, required ones before '}'), or free keys (any
 *           string) whose values all match one child
 *   ARRAY   items of one child, min..max of them
 *   UNION   alternatives told apart by the value's first byte (its JSON type);
 *           "any value" is the union of the built-in nodes below
 *   CALL    {"name": <literal>, "arguments": <the child that literal picks>}
 * A frame matches one node; containers push a frame for each child value and
 * the child pops itself when its value is complete. A number (or a numeric
 * literal) only knows it ended when the next byte is not part of it: it pops
 * and that byte is fed again to the frame below. */
#include "model/grammar.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

typedef enum { GN_STRING = 0, GN_NUMBER, GN_ENUM, GN_OBJECT, GN_ARRAY, GN_UNION, GN_CALL, GN_COUNT } gkind_t;

/* JSON types as told by a value's first byte */
typedef enum { CL_STR = 0, CL_NUM, CL_OBJ, CL_ARR, CL_BOOL, CL_NULL, CL_COUNT } gclass_t;

#define NONE 0xffffu
#define MAX_NODES 60000
#define MAX_EXP_DIGITS 3

/* built-in nodes, created first in every grammar */
enum { B_ANY = 0, B_STR, B_NUM, B_OBJ, B_ARR, B_BOOL, B_NULL, B_COUNT };

typedef struct {
    gkind_t kind;
    uint8_t classes;        /* bit per gclass_t a value of this node may start with */
    uint8_t need;           /* frames this node needs at most (nesting), the built-ins count 1 */
    uint8_t integer;        /* NUMBER: integers only */
    uint8_t free_keys;      /* OBJECT: keys are any strings, values match child */
    uint16_t child;         /* ARRAY items; OBJECT free-key values */
    uint32_t min, max;      /* STRING characters; ARRAY items */
    int n_lit;              /* ENUM / CALL literals, OBJECT declared properties */
    char **lit;             /* [n_lit] owned literal bytes (sorted; "quoted" keys and names) */
    uint32_t *lit_len;      /* [n_lit] their lengths */
    uint16_t *lit_child;    /* [n_lit] OBJECT: the property's value node; CALL: the arguments' node */
    uint64_t required;      /* OBJECT: bit i = property i is required */
    uint16_t by_class[CL_COUNT]; /* UNION: the alternative for each first-byte class, NONE if none */
} gnode_t;

struct pv_gram {
    gnode_t *nodes; /* [n_nodes] owned */
    int n_nodes;    /* nodes in use */
    int cap;        /* allocated */
    uint16_t root;  /* what the whole output matches */
};

/* ---- building ------------------------------------------------------------------------------- */

static int class_of(unsigned char c) {
    switch (c) {
    case '"': return CL_STR;
    case '{': return CL_OBJ;
    case '[': return CL_ARR;
    case 't': case 'f': return CL_BOOL;
    case 'n': return CL_NULL;
    default: return c == '-' || (c >= '0' && c <= '9') ? CL_NUM : -1;
    }
}

/* A new zeroed node; its index, or -1 when out of memory or room. */
static int node_new(pv_gram_t *g, gkind_t kind) {
    if (g->n_nodes >= MAX_NODES) return -1;
    if (g->n_nodes == g->cap) {
        int cap = g->cap ? g->cap * 2 : 16;
        gnode_t *p = realloc(g->nodes, (size_t)cap * sizeof *p);
        if (!p) return -1;
        g->nodes = p;
        g->cap = cap;
    }
    gnode_t *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->need = 1;
    n->child = NONE;
    n->max = UINT32_MAX;
    for (int i = 0; i < CL_COUNT; i++) n->by_class[i] = NONE;
    return g->n_nodes++;
}

typedef struct {
    char *s;        /* owned bytes */
    uint32_t len;   /* their length */
    uint16_t child; /* node the literal leads to (properties, tool names) */
    int required;   /* a required property */
} lit_t;

static int lit_cmp(const void *a, const void *b) {
    const lit_t *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Sorts lits into node k (taking their strings); duplicates are dropped. 0 or -1 (OOM). */
static int set_literals(pv_gram_t *g, int k, lit_t *lits, int n) {
    qsort(lits, (size_t)n, sizeof *lits, lit_cmp);
    gnode_t *nd = &g->nodes[k];
    nd->lit = calloc((size_t)n, sizeof *nd->lit);
    nd->lit_len = calloc((size_t)n, sizeof *nd->lit_len);
    nd->lit_child = calloc((size_t)n, sizeof *nd->lit_child);
    if (!nd->lit || !nd->lit_len || !nd->lit_child) {
        for (int i = 0; i < n; i++) free(lits[i].s);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (nd->n_lit && !lit_cmp(&lits[i], &(lit_t){nd->lit[nd->n_lit - 1], nd->lit_len[nd->n_lit - 1], 0, 0})) {
            free(lits[i].s);
            continue;
        }
        int j = nd->n_lit++;
        nd->lit[j] = lits[i].s;
        nd->lit_len[j] = lits[i].len;
        nd->lit_child[j] = lits[i].child;
        if (lits[i].required) nd->required |= 1ull << j;
        int c = class_of((unsigned char)lits[i].s[0]);
        if (c >= 0) nd->classes |= (uint8_t)(1u << c);
    }
    return 0;
}

/* A literal from text (copied). */
static int lit_of(lit_t *l, const char *s, size_t len) {
    l->s = malloc(len + 1);
    if (!l->s) return -1;
    memcpy(l->s, s, len);
    l->s[len] = 0;
    l->len = (uint32_t)len;
    return 0;
}

/* A literal holding v's compact JSON text. */
static int lit_json(lit_t *l, const json_t *v) {
    l->s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!l->s) return -1;
    l->len = (uint32_t)strlen(l->s);
    return 0;
}

/* An ENUM node of the given texts (NUL-separated list), for the built-ins. */
static int enum_of_words(pv_gram_t *g, const char *const *words, int n) {
    int k = node_new(g, GN_ENUM);
    lit_t lits[4];
    if (k < 0) return -1;
    for (int i = 0; i < n; i++)
        if (lit_of(&lits[i], words[i], strlen(words[i]))) {
            while (i--) free(lits[i].s);
            return -1;
        }
    return set_literals(g, k, lits, n) ? -1 : k;
}

static void set_union_child(gnode_t *u, const gnode_t *c, int ci) {
    for (int i = 0; i < CL_COUNT; i++)
        if (c->classes & (1u << i)) u->by_class[i] = (uint16_t)ci;
    u->classes |= c->classes;
    if (c->need > u->need) u->need = c->need;
}

static pv_gram_t *gram_new(void) {
    pv_gram_t *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    static const char *const bools[] = {"true", "false"}, *const nul[] = {"null"};
    int any = node_new(g, GN_UNION), str = node_new(g, GN_STRING), num = node_new(g, GN_NUMBER);
    int obj = node_new(g, GN_OBJECT), arr = node_new(g, GN_ARRAY);
    int bl = enum_of_words(g, bools, 2), nl = enum_of_words(g, nul, 1);
    if (any != B_ANY || str != B_STR || num != B_NUM || obj != B_OBJ || arr != B_ARR || bl != B_BOOL || nl != B_NULL) {
        pv_gram_free(g);
        return NULL;
    }
    g->nodes[B_ANY].kind = GN_UNION;
    g->nodes[B_STR].classes = 1u << CL_STR;
    g->nodes[B_NUM].classes = 1u << CL_NUM;
    g->nodes[B_OBJ] = (gnode_t){.kind = GN_OBJECT, .classes = 1u << CL_OBJ, .need = 1, .free_keys = 1, .child = B_ANY};
    g->nodes[B_ARR] = (gnode_t){.kind = GN_ARRAY, .classes = 1u << CL_ARR, .need = 1, .child = B_ANY, .max = UINT32_MAX};
    for (int i = B_STR; i < B_COUNT; i++) set_union_child(&g->nodes[B_ANY], &g->nodes[i], i);
    return g;
}

void pv_gram_free(pv_gram_t *g) {
    if (!g) return;
    for (int i = 0; i < g->n_nodes; i++) {
        gnode_t *n = &g->nodes[i];
        for (int j = 0; j < n->n_lit; j++) free(n->lit[j]);
        free(n->lit);
        free(n->lit_len);
        free(n->lit_child);
    }
    free(g->nodes);
    free(g);
}

/* ---- JSON Schema -> nodes ----------------------------------------------------------------- */

typedef struct {
    pv_gram_t *g;    /* the grammar being built */
    char path[256];  /* where in the schema ("properties.city.maxLength") */
    char *err;       /* message buffer */
    size_t errlen;   /* its size */
} cc_t;

static int cc_fail(cc_t *c, int code, const char *what) {
    if (c->path[0]) return pv_errorf(c->err, c->errlen, code, "%s (at %s)", what, c->path);
    return pv_errorf(c->err, c->errlen, code, "%s", what);
}

static int cc_oom(cc_t *c) { return pv_errorf(c->err, c->errlen, PV_ENOMEM, "out of memory"); }

/* Appends ".seg" to the path; returns the old length to restore. */
static int compile(cc_t *c, const json_t *s, int depth);

/* compile() of a sub-schema at path a[.b] below the current one (for messages). */
static int compile_child(cc_t *c, const json_t *s, const char *a, const char *b, int depth) {
    size_t at = strlen(c->path);
    snprintf(c->path + at, sizeof c->path - at, "%s%s%s%s", at ? "." : "", a, b ? "." : "", b ? b : "");
    int k = compile(c, s, depth + 1);
    c->path[at] = 0;
    return k;
}

static const char *const HANDLED[] = {"type", "properties", "required", "additionalProperties", "items", "minItems",
                                      "maxItems", "minLength", "maxLength", "enum", "const", "anyOf", "oneOf", NULL};
static const char *const IGNORED[] = {"description", "title", "default", "examples", "format", "$schema", "$id",
                                      "$comment", "$defs", "definitions", "deprecated", "readOnly", "writeOnly",
                                      "strict", "nullable", NULL};

static int in_list(const char *const *l, const char *k) {
    for (; *l; l++)
        if (!strcmp(*l, k)) return 1;
    return 0;
}

/* Every keyword must be handled or harmless. */
static int check_keywords(cc_t *c, const json_t *s) {
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s, k, v) {
        if (in_list(HANDLED, k) || in_list(IGNORED, k)) continue;
        if (!strcmp(k, "uniqueItems") && json_is_false(v)) continue;
        char msg[160];
        snprintf(msg, sizeof msg, "the schema keyword \"%.60s\" is not supported by constrained decoding", k);
        return cc_fail(c, PV_EUNSUPPORTED, msg);
    }
    return 0;
}

/* An optional non-negative integer keyword into *out. */
static int cc_count(cc_t *c, const json_t *s, const char *key, uint32_t *out) {
    const json_t *v = json_object_get(s, key);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "\"%s\" must be a non-negative integer", key);
        return cc_fail(c, PV_EINVAL, msg);
    }
    json_int_t x = json_integer_value(v);
    *out = x > (json_int_t)UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)x;
    return 0;
}

/* enum / const: literals of scalars. */
static int compile_enum(cc_t *c, const json_t *vals) {
    size_t n = json_array_size(vals);
    if (!n) return cc_fail(c, PV_EINVAL, "\"enum\" must hold at least one value");
    if (n > 4096) return cc_fail(c, PV_EUNSUPPORTED, "\"enum\" holds more than 4096 values");
    lit_t *lits = calloc(n, sizeof *lits);
    int k = lits ? node_new(c->g, GN_ENUM) : -1;
    if (k < 0) {
        free(lits);
        return cc_oom(c);
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(vals, i);
        int bad = json_is_object(v) || json_is_array(v);
        if (bad || lit_json(&lits[i], v)) {
            while (i--) free(lits[i].s);
            free(lits);
            return bad ? cc_fail(c, PV_EUNSUPPORTED, "\"enum\" and \"const\" values must be strings, numbers, booleans or null")
                       : cc_oom(c);
        }
    }
    int rc = set_literals(c->g, k, lits, (int)n);
    free(lits);
    return rc ? cc_oom(c) : k;
}

/* A union of already compiled alternatives (their classes must not overlap). */
static int make_union(cc_t *c, const int *alts, int n) {
    if (n == 1) return alts[0];
    int k = node_new(c->g, GN_UNION);
    if (k < 0) return cc_oom(c);
    gnode_t *u = &c->g->nodes[k];
    u->need = 1;
    for (int i = 0; i < n; i++) {
        const gnode_t *a = &c->g->nodes[alts[i]];
        if (u->classes & a->classes)
            return cc_fail(c, PV_EUNSUPPORTED, "alternatives (anyOf, oneOf, a list of types) must differ in JSON type");
        set_union_child(u, a, alts[i]);
    }
    return k;
}

static int compile_object(cc_t *c, const json_t *s, int depth) {
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    const json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) return cc_fail(c, PV_EINVAL, "\"properties\" must be an object");
    if (req && !json_is_array(req)) return cc_fail(c, PV_EINVAL, "\"required\" must be an array of names");
    if (!props && !json_is_false(addl)) { /* free keys */
        if (req && json_array_size(req))
            return cc_fail(c, PV_EUNSUPPORTED, "\"required\" names must be declared in \"properties\"");
        int child = B_ANY;
        if (json_is_object(addl)) {
            child = compile_child(c, addl, "additionalProperties", NULL, depth);
            if (child < 0) return child;
        }
        int k = node_new(c->g, GN_OBJECT);
        if (k < 0) return cc_oom(c);
        gnode_t *nd = &c->g->nodes[k];
        nd->classes = 1u << CL_OBJ, nd->free_keys = 1, nd->child = (uint16_t)child;
        nd->need = (uint8_t)(1 + c->g->nodes[child].need);
        return k;
    }
    size_t n = json_object_size(props);
    if (n > PV_GRAM_MAX_PROPS) return cc_fail(c, PV_EUNSUPPORTED, "more than 64 properties in one object");
    lit_t lits[PV_GRAM_MAX_PROPS];
    int n_lit = 0, need = 1, rc = 0;
    const char *name;
    const json_t *sub;
    json_object_foreach((json_t *)props, name, sub) {
        int child = compile_child(c, sub, "properties", name, depth);
        if (child < 0) {
            rc = child;
            break;
        }
        json_t *key = json_string(name);
        int bad = !key || lit_json(&lits[n_lit], key);
        json_decref(key);
        if (bad) {
            rc = cc_oom(c);
            break;
        }
        lits[n_lit].child = (uint16_t)child;
        lits[n_lit].required = 0;
        if (c->g->nodes[child].need + 1 > need) need = c->g->nodes[child].need + 1;
        size_t i;
        const json_t *r;
        json_array_foreach(req, i, r) lits[n_lit].required |= json_is_string(r) && !strcmp(json_string_value(r), name);
        n_lit++;
    }
    size_t i;
    const json_t *r;
    json_array_foreach(req, i, r) if (!rc && (!json_is_string(r) || !json_object_get(props, json_string_value(r))))
        rc = cc_fail(c, PV_EUNSUPPORTED, "\"required\" names must be declared in \"properties\"");
    int k = rc ? -1 : node_new(c->g, GN_OBJECT);
    if (!rc && k < 0) rc = cc_oom(c);
    if (rc) {
        while (n_lit--) free(lits[n_lit].s);
        return rc;
    }
    c->g->nodes[k].classes = 1u << CL_OBJ;
    c->g->nodes[k].need = (uint8_t)need;
    return set_literals(c->g, k, lits, n_lit) ? cc_oom(c) : k;
}

static int compile_array(cc_t *c, const json_t *s, int depth) {
    const json_t *items = json_object_get(s, "items");
    uint32_t lo = 0, hi = UINT32_MAX;
    if (cc_count(c, s, "minItems", &lo) || cc_count(c, s, "maxItems", &hi)) return PV_EINVAL;
    if (lo > hi) return cc_fail(c, PV_EINVAL, "\"minItems\" is above \"maxItems\"");
    if (items && !json_is_object(items) && !json_is_boolean(items))
        return cc_fail(c, PV_EUNSUPPORTED, "\"items\" must be one schema (tuples are not supported)");
    int child = B_ANY;
    if (items) {
        child = compile_child(c, items, "items", NULL, depth);
        if (child < 0) return child;
    }
    int k = node_new(c->g, GN_ARRAY);
    if (k < 0) return cc_oom(c);
    gnode_t *nd = &c->g->nodes[k];
    nd->classes = 1u << CL_ARR, nd->child = (uint16_t)child, nd->min = lo, nd->max = hi;
    nd->need = (uint8_t)(1 + c->g->nodes[child].need);
    return k;
}

/* The schema s read as one JSON type t. */
static int compile_typed(cc_t *c, const json_t *s, const char *t, int depth) {
    if (!strcmp(t, "object")) return compile_object(c, s, depth);
    if (!strcmp(t, "array")) return compile_array(c, s, depth);
    if (!strcmp(t, "boolean")) return B_BOOL;
    if (!strcmp(t, "null")) return B_NULL;
    if (!strcmp(t, "number") || !strcmp(t, "integer")) {
        int k = node_new(c->g, GN_NUMBER);
        if (k < 0) return cc_oom(c);
        c->g->nodes[k].classes = 1u << CL_NUM;
        c->g->nodes[k].integer = !strcmp(t, "integer");
        return k;
    }
    if (!strcmp(t, "string")) {
        uint32_t lo = 0, hi = UINT32_MAX;
        if (cc_count(c, s, "minLength", &lo) || cc_count(c, s, "maxLength", &hi)) return PV_EINVAL;
        if (lo > hi) return cc_fail(c, PV_EINVAL, "\"minLength\" is above \"maxLength\"");
        int k = node_new(c->g, GN_STRING);
        if (k < 0) return cc_oom(c);
        c->g->nodes[k].classes = 1u << CL_STR, c->g->nodes[k].min = lo, c->g->nodes[k].max = hi;
        return k;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "unknown type \"%.40s\"", t);
    return cc_fail(c, PV_EINVAL, msg);
}

static int compile(cc_t *c, const json_t *s, int depth) {
    if (depth > PV_GRAM_MAX_DEPTH) return cc_fail(c, PV_EUNSUPPORTED, "the schema nests too deeply");
    if (json_is_true(s)) return B_ANY;
    if (!json_is_object(s)) return cc_fail(c, PV_EINVAL, "a schema must be an object");
    int rc = check_keywords(c, s);
    if (rc) return rc;
    const json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    if (en) {
        if (!json_is_array(en)) return cc_fail(c, PV_EINVAL, "\"enum\" must be an array");
        return compile_enum(c, en);
    }
    if (cn) {
        json_t *one = json_pack("[O]", cn);
        int k = one ? compile_enum(c, one) : cc_oom(c);
        json_decref(one);
        return k;
    }
    const json_t *alts = json_object_get(s, "anyOf");
    if (!alts) alts = json_object_get(s, "oneOf");
    const json_t *type = json_object_get(s, "type");
    if (alts) {
        size_t n = json_array_size(alts);
        if (!n || n > CL_COUNT) return cc_fail(c, PV_EUNSUPPORTED, "\"anyOf\"/\"oneOf\" must hold 1 to 6 schemas");
        int ks[CL_COUNT];
        for (size_t i = 0; i < n; i++) {
            char idx[16];
            snprintf(idx, sizeof idx, "%zu", i);
            ks[i] = compile_child(c, json_array_get(alts, i), json_object_get(s, "anyOf") ? "anyOf" : "oneOf", idx, depth);
            if (ks[i] < 0) return ks[i];
        }
        return make_union(c, ks, (int)n);
    }
    if (json_is_string(type)) return compile_typed(c, s, json_string_value(type), depth);
    if (json_is_array(type)) {
        size_t n = json_array_size(type);
        int ks[CL_COUNT], m = 0, has_number = 0;
        for (size_t i = 0; i < n; i++) {
            const char *t = json_string_value(json_array_get(type, i));
            if (!t) return cc_fail(c, PV_EINVAL, "\"type\" must be a string or an array of strings");
            has_number |= !strcmp(t, "number");
        }
        for (size_t i = 0; i < n; i++) {
            const char *t = json_string_value(json_array_get(type, i));
            if (has_number && !strcmp(t, "integer")) continue; /* number covers it */
            if (m == CL_COUNT) return cc_fail(c, PV_EINVAL, "\"type\" lists a type twice");
            if ((ks[m++] = compile_typed(c, s, t, depth)) < 0) return ks[m - 1];
        }
        if (!m) return cc_fail(c, PV_EINVAL, "\"type\" must not be empty");
        return make_union(c, ks, m);
    }
    if (type) return cc_fail(c, PV_EINVAL, "\"type\" must be a string or an array of strings");
    /* no type: what the keywords imply, else any value */
    if (json_object_get(s, "properties") || json_object_get(s, "required") || json_object_get(s, "additionalProperties"))
        return compile_object(c, s, depth);
    if (json_object_get(s, "items") || json_object_get(s, "minItems") || json_object_get(s, "maxItems"))
        return compile_array(c, s, depth);
    if (json_object_get(s, "minLength") || json_object_get(s, "maxLength")) return compile_typed(c, s, "string", depth);
    return B_ANY;
}

static int finish(pv_gram_t *g, int root, cc_t *c, pv_gram_t **out) {
    if (root >= 0 && g->nodes[root].need > PV_GRAM_MAX_DEPTH) root = cc_fail(c, PV_EUNSUPPORTED, "the schema nests too deeply");
    if (root < 0) {
        pv_gram_free(g);
        return root;
    }
    g->root = (uint16_t)root;
    *out = g;
    return 0;
}

int pv_gram_from_schema(const json_t *schema, pv_gram_t **out, char *err, size_t errlen) {
    *out = NULL;
    pv_gram_t *g = gram_new();
    if (!g) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    cc_t c = {.g = g, .err = err, .errlen = errlen};
    return finish(g, compile(&c, schema, 1), &c, out);
}

int pv_gram_any_object(pv_gram_t **out) {
    *out = gram_new();
    if (!*out) return PV_ENOMEM;
    (*out)->root = B_OBJ;
    return 0;
}

int pv_gram_tool_call(const char *const *names, const json_t *const *schemas, int n, pv_gram_t **out, char *err,
                      size_t errlen) {
    *out = NULL;
    if (n < 1 || n > 4096) return pv_errorf(err, errlen, PV_EINVAL, "between 1 and 4096 tools can be called");
    pv_gram_t *g = gram_new();
    lit_t *lits = calloc((size_t)n, sizeof *lits);
    if (!g || !lits) {
        free(lits);
        pv_gram_free(g);
        return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    }
    cc_t c = {.g = g, .err = err, .errlen = errlen};
    int rc = 0, need = 1, i;
    for (i = 0; i < n && !rc; i++) {
        snprintf(c.path, sizeof c.path, "the input schema of tool \"%.80s\"", names[i]);
        json_t *empty = schemas[i] ? NULL : json_pack("{s:s, s:{}}", "type", "object", "properties");
        int k = compile(&c, schemas[i] ? schemas[i] : empty, 2);
        json_decref(empty);
        if (k >= 0 && g->nodes[k].kind != GN_OBJECT) k = cc_fail(&c, PV_EUNSUPPORTED, "a tool's input must be an object");
        json_t *name = k >= 0 ? json_string(names[i]) : NULL;
        if (k < 0) rc = k;
        else if (!name || lit_json(&lits[i], name)) rc = pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
        json_decref(name);
        if (rc) break;
        lits[i].child = (uint16_t)k;
        if (g->nodes[k].need + 1 > need) need = g->nodes[k].need + 1;
    }
    int k = rc ? rc : node_new(g, GN_CALL);
    if (!rc && k < 0) k = pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    if (k < 0) {
        while (i--) free(lits[i].s);
    } else {
        g->nodes[k].classes = 1u << CL_OBJ;
        g->nodes[k].need = (uint8_t)need;
        if (set_literals(g, k, lits, n)) k = pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    }
    free(lits);
    c.path[0] = 0;
    return finish(g, k, &c, out);
}

/* ---- matching ------------------------------------------------------------------------------ */

enum { R_REJECT = 0, R_OK, R_AGAIN }; /* R_AGAIN: feed the byte again to the (new) innermost frame */

static const char CALL_OPEN[] = "{\"name\":", CALL_ARGS[] = ",\"arguments\":"; /* whitespace may join in */

static int is_ws(unsigned c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Whitespace in the frame's current gap: 1 taken, -1 over the bound, 0 not whitespace. */
static int gap_ws(pv_gram_frame_t *f, unsigned c) {
    if (!is_ws(c)) return 0;
    if (f->ws >= PV_GRAM_MAX_WS) return -1;
    f->ws++;
    return 1;
}

static void to(pv_gram_frame_t *f, int phase) {
    f->phase = (uint8_t)phase;
    f->ws = 0;
}

static int push(pv_gram_state_t *st, uint16_t node, int phase) {
    if (st->depth >= PV_GRAM_MAX_DEPTH) return 0;
    st->f[st->depth++] = (pv_gram_frame_t){.node = node, .phase = (uint8_t)phase};
    return 1;
}

/* Narrows [*a, *b) (literals sharing their first k bytes) to those whose byte k is c; 0 if none. */
static int narrow(const gnode_t *nd, uint16_t *a, uint16_t *b, uint32_t k, unsigned char c) {
    uint16_t lo = *a;
    while (lo < *b && (nd->lit_len[lo] <= k || (unsigned char)nd->lit[lo][k] < c)) lo++;
    uint16_t hi = lo;
    while (hi < *b && (unsigned char)nd->lit[hi][k] == c) hi++;
    if (hi == lo) return 0;
    *a = lo, *b = hi;
    return 1;
}

/* Some declared property in [a, b) is not written yet. */
static int unused_in(const pv_gram_frame_t *f, uint16_t a, uint16_t b) {
    for (uint16_t i = a; i < b; i++)
        if (!(f->seen >> i & 1)) return 1;
    return 0;
}

enum { S_START = 0, S_IN, S_ESC, S_U1, S_U2, S_U3, S_U4, S_UTF8 };

static int hexval(unsigned c) {
    if (c >= '0' && c <= '9') return (int)c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? (int)c - 'a' + 10 : -1;
}

static int step_string(pv_gram_state_t *st, pv_gram_frame_t *f, const gnode_t *nd, unsigned c) {
    switch (f->phase) {
    case S_START: {
        int w = gap_ws(f, c);
        if (w) return w > 0 ? R_OK : R_REJECT;
        if (c != '"') return R_REJECT;
        to(f, S_IN);
        return R_OK;
    }
    case S_IN:
        if (c == '"') {
            if (f->n < nd->min) return R_REJECT;
            st->depth--;
            return R_OK;
        }
        if (c < 0x20 || f->n >= nd->max) return R_REJECT;
        f->n++;
        if (c == '\\') to(f, S_ESC);
        else if (c >= 0x80) { /* a UTF-8 lead byte: how many continuation bytes, the range of the next */
            unsigned lo = 0x80, hi = 0xbf;
            if (c >= 0xc2 && c <= 0xdf) f->a = 1;
            else if (c >= 0xe0 && c <= 0xef) f->a = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
            else if (c >= 0xf0 && c <= 0xf4) f->a = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
            else return R_REJECT;
            f->b = (uint16_t)(lo << 8 | hi);
            f->phase = S_UTF8;
        }
        return R_OK;
    case S_UTF8:
        if (c < (unsigned)(f->b >> 8) || c > (unsigned)(f->b & 0xff)) return R_REJECT;
        f->b = 0x80bf;
        if (--f->a == 0) f->phase = S_IN;
        return R_OK;
    case S_ESC:
        if (c == 'u') {
            f->b = 0;
            f->phase = S_U1;
        } else if (c && strchr("\"\\/bfnrt", (int)c)) f->phase = S_IN;
        else return R_REJECT;
        return R_OK;
    default: { /* \uXXXX, never NUL nor a surrogate (jansson and strict parsers refuse them) */
        int h = hexval(c);
        if (h < 0 || (f->phase == S_U2 && f->b == 0xd && h >= 8)) return R_REJECT;
        f->b = (uint16_t)(f->b << 4 | (unsigned)h);
        if (f->phase == S_U4) {
            if (f->b == 0) return R_REJECT;
            f->phase = S_IN;
        } else
            f->phase++;
        return R_OK;
    }
    }
}

enum { N_START = 0, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };

static int endable_number(int phase) { return phase == N_ZERO || phase == N_INT || phase == N_FRAC || phase == N_EXP; }

static int step_number(pv_gram_state_t *st, pv_gram_frame_t *f, const gnode_t *nd, unsigned c) {
    int digit = c >= '0' && c <= '9', p = f->phase;
    if (p == N_START) {
        int w = gap_ws(f, c);
        if (w) return w > 0 ? R_OK : R_REJECT;
    }
    if (p == N_START || p == N_MINUS) {
        if (c == '-' && p == N_START) f->phase = N_MINUS;
        else if (c == '0') f->phase = N_ZERO;
        else if (digit) f->phase = N_INT, f->n = 1;
        else return R_REJECT;
        return R_OK;
    }
    if (digit && (p == N_INT || p == N_FRAC || p == N_EXP)) {
        if (f->n >= (p == N_EXP ? MAX_EXP_DIGITS : PV_GRAM_MAX_DIGITS)) return R_REJECT;
        f->n++;
        return R_OK;
    }
    if (digit && (p == N_DOT || p == N_E || p == N_ESIGN)) {
        f->phase = p == N_DOT ? N_FRAC : N_EXP;
        f->n = 1;
        return R_OK;
    }
    if (!nd->integer && c == '.' && (p == N_ZERO || p == N_INT)) f->phase = N_DOT;
    else if (!nd->integer && (c == 'e' || c == 'E') && (p == N_ZERO || p == N_INT || p == N_FRAC)) f->phase = N_E;
    else if ((c == '+' || c == '-') && p == N_E) f->phase = N_ESIGN;
    else if (endable_number(p)) {
        st->depth--; /* the number ended before c */
        return R_AGAIN;
    } else
        return R_REJECT;
    return R_OK;
}

static int step_enum(pv_gram_state_t *st, pv_gram_frame_t *f, const gnode_t *nd, unsigned c) {
    if (f->phase == 0) {
        int w = gap_ws(f, c);
        if (w) return w > 0 ? R_OK : R_REJECT;
        f->phase = 1, f->a = 0, f->b = (uint16_t)nd->n_lit, f->n = 0;
    }
    if (!narrow(nd, &f->a, &f->b, f->n, (unsigned char)c)) {
        if (f->n && nd->lit_len[f->a] == f->n) { /* a numeric literal ended before c */
            st->depth--;
            return R_AGAIN;
        }
        return R_REJECT;
    }
    f->n++;
    if (nd->lit_len[f->a] == f->n && f->b - f->a == 1) st->depth--; /* nothing longer can follow */
    return R_OK;
}

enum { O_START = 0, O_FIRST, O_KEY, O_COLON, O_AFTER, O_NEXT };

static int object_complete(const pv_gram_frame_t *f, const gnode_t *nd) {
    return (nd->required & ~f->seen) == 0;
}

static int step_object(pv_gram_state_t *st, pv_gram_frame_t *f, const gnode_t *nd, unsigned c) {
    if (f->phase != O_KEY) {
        int w = gap_ws(f, c);
        if (w) return w > 0 ? R_OK : R_REJECT;
    }
    switch (f->phase) {
    case O_START:
        if (c != '{' || st->depth >= PV_GRAM_MAX_DEPTH) return R_REJECT; /* no room for its values */
        to(f, O_FIRST);
        return R_OK;
    case O_FIRST:
    case O_NEXT:
        if (c == '}' && f->phase == O_FIRST && object_complete(f, nd)) {
            st->depth--;
            return R_OK;
        }
        if (c != '"') return R_REJECT;
        if (nd->free_keys) {
            to(f, O_COLON);
            return push(st, B_STR, S_IN) ? R_OK : R_REJECT;
        }
        f->a = 0, f->b = (uint16_t)nd->n_lit, f->n = 1; /* every key literal starts with the quote */
        if (!unused_in(f, f->a, f->b)) return R_REJECT;
        to(f, O_KEY);
        return R_OK;
    case O_KEY:
        if (!narrow(nd, &f->a, &f->b, f->n, (unsigned char)c) || !unused_in(f, f->a, f->b)) return R_REJECT;
        if (nd->lit_len[f->a] == ++f->n) { /* the closing quote: one property */
            f->seen |= 1ull << f->a;
            to(f, O_COLON);
        }
        return R_OK;
    case O_COLON:
        if (c != ':') return R_REJECT;
        to(f, O_AFTER);
        return push(st, nd->free_keys ? nd->child : nd->lit_child[f->a], S_START) ? R_OK : R_REJECT;
    case O_AFTER:
        if (c == ',' && (nd->free_keys || unused_in(f, 0, (uint16_t)nd->n_lit))) {
            to(f, O_NEXT);
            return R_OK;
        }
        if (c == '}' && object_complete(f, nd)) {
            st->depth--;
            return R_OK;
        }
        return R_REJECT;
    }
    return R_REJECT;
}

enum { A_START = 0, A_FIRST, A_AFTER };

static int step_array(pv_gram_state_t *st, pv_gram_frame_t *f, const gnode_t *nd, unsigned c) {
    int w = gap_ws(f, c);
    if (w) return w > 0 ? R_OK : R_REJECT;
    if (f->phase == A_START) {
        if (c != '[' || st->depth >= PV_GRAM_MAX_DEPTH) return R_REJECT;
        to(f, A_FIRST);
        return R_OK;
    }
    if (c == ']' && f->n >= nd->min) {
        st->depth--;
        return R_OK;
    }
    if (f->phase == A_FIRST) { /* the first item begins with c */
        if (nd->max == 0) return R_REJECT;
        f->n = 1;
        to(f, A_AFTER);
        return push(st, nd->child, S_START) ? R_AGAIN : R_REJECT;
    }
    if (c != ',' || f->n >= nd->max) return R_REJECT;
    f->n++;
    to(f, A_AFTER);
    return push(st, nd->child, S_START) ? R_OK : R_REJECT;
}

static int step_union(pv_gram_frame_t *f, const gnode_t *nd, unsigned c) {
    int w = gap_ws(f, c);
    if (w) return w > 0 ? R_OK : R_REJECT;
    int cl = class_of((unsigned char)c);
    if (cl < 0 || nd->by_class[cl] == NONE) return R_REJECT;
    f->node = nd->by_class[cl]; /* this frame now matches the alternative, from its start */
    f->phase = 0;
    return R_AGAIN;
}

enum { C_START = 0, C_OPEN, C_NAME, C_ARGS, C_CLOSE };

/* Matches c against the literal lit (len bytes) at f->n; whitespace may stand
 * between its JSON tokens (not inside its quoted key, not before its first
 * byte unless that is a comma). *end is set once the literal is complete. */
static int step_literal(pv_gram_frame_t *f, const char *lit, uint32_t len, unsigned c, int *end) {
    int quotes = 0;
    for (uint32_t i = 0; i < f->n; i++) quotes += lit[i] == '"';
    if (quotes % 2 == 0 && (f->n > 0 || lit[0] == ',')) {
        int w = gap_ws(f, c);
        if (w) return w > 0 ? R_OK : R_REJECT;
    }
    if (c != (unsigned char)lit[f->n]) return R_REJECT;
    f->ws = 0;
    *end = ++f->n == len;
    return R_OK;
}

static int step_call(pv_gram_state_t *st, pv_gram_frame_t *f, const gnode_t *nd, unsigned c) {
    int end = 0, r;
    switch (f->phase) {
    case C_START:
        to(f, C_OPEN);
        f->n = 0;
        /* fall through */
    case C_OPEN:
        r = step_literal(f, CALL_OPEN, sizeof CALL_OPEN - 1, c, &end);
        if (end) to(f, C_NAME), f->a = 0, f->b = (uint16_t)nd->n_lit, f->n = 0;
        return r;
    case C_NAME:
        if (f->n == 0) {
            int w = gap_ws(f, c);
            if (w) return w > 0 ? R_OK : R_REJECT;
        }
        if (!narrow(nd, &f->a, &f->b, f->n, (unsigned char)c)) return R_REJECT;
        if (nd->lit_len[f->a] == ++f->n) to(f, C_ARGS), f->n = 0; /* names are quoted: unique once closed */
        return R_OK;
    case C_ARGS:
        r = step_literal(f, CALL_ARGS, sizeof CALL_ARGS - 1, c, &end);
        if (!end) return r;
        to(f, C_CLOSE);
        return push(st, nd->lit_child[f->a], S_START) ? R_OK : R_REJECT;
    case C_CLOSE: {
        int w = gap_ws(f, c);
        if (w) return w > 0 ? R_OK : R_REJECT;
        if (c != '}') return R_REJECT;
        st->depth--;
        return R_OK;
    }
    }
    return R_REJECT;
}

static int feed_byte(pv_gram_state_t *st, unsigned c) {
    for (;;) {
        if (st->depth == 0) return 0; /* complete: nothing may follow */
        pv_gram_frame_t *f = &st->f[st->depth - 1];
        const gnode_t *nd = &st->g->nodes[f->node];
        int r;
        switch (nd->kind) {
        case GN_STRING: r = step_string(st, f, nd, c); break;
        case GN_NUMBER: r = step_number(st, f, nd, c); break;
        case GN_ENUM: r = step_enum(st, f, nd, c); break;
        case GN_OBJECT: r = step_object(st, f, nd, c); break;
        case GN_ARRAY: r = step_array(st, f, nd, c); break;
        case GN_UNION: r = step_union(f, nd, c); break;
        case GN_CALL: r = step_call(st, f, nd, c); break;
        default: r = R_REJECT;
        }
        if (r != R_AGAIN) return r == R_OK;
    }
}

void pv_gram_start(const pv_gram_t *g, pv_gram_state_t *st) {
    st->g = g;
    st->depth = 1;
    st->f[0] = (pv_gram_frame_t){.node = g->root, .ws = PV_GRAM_MAX_WS}; /* no whitespace before the value */
}

int pv_gram_feed(pv_gram_state_t *st, const char *bytes, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!feed_byte(st, (unsigned char)bytes[i])) return 0;
    return 1;
}

int pv_gram_accepting(const pv_gram_state_t *st) {
    if (st->depth == 0) return 1;
    if (st->depth > 1) return 0;
    const pv_gram_frame_t *f = &st->f[0];
    const gnode_t *nd = &st->g->nodes[f->node];
    if (nd->kind == GN_NUMBER) return endable_number(f->phase);
    return nd->kind == GN_ENUM && f->phase == 1 && f->n && nd->lit_len[f->a] == f->n;
}

void pv_gram_copy(pv_gram_state_t *dst, const pv_gram_state_t *src) {
    dst->g = src->g;
    dst->depth = src->depth;
    memcpy(dst->f, src->f, (size_t)src->depth * sizeof *src->f);
}

/* ---- tokens ----------------------------------------------------------------------------------- */

struct pv_gram_vocab {
    int32_t n;             /* tokens */
    uint32_t *off;         /* [n + 1] token id's bytes are bytes[off[id] .. off[id + 1]) */
    char *bytes;           /* every token's bytes, owned */
    uint8_t *eog;          /* [n] end-of-generation tokens */
    int32_t *order;        /* [n] token ids in byte order (empty ones first) */
    uint32_t *lcp;         /* [n] bytes order[i] shares with order[i - 1] */
    uint32_t *str_chars;   /* [n] characters of a token that is plain string content (printable, no quote,
                              backslash or partial UTF-8); UINT32_MAX for any other token */
    uint32_t max_len;      /* the longest token's bytes */
    pv_gram_state_t *scratch; /* [max_len + 1] states after each prefix of the token being checked */
};

static int token_cmp(const void *a, const void *b, void *ud) {
    const pv_gram_vocab_t *gv = ud;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = gv->off[x + 1] - gv->off[x], ly = gv->off[y + 1] - gv->off[y];
    int c = memcmp(gv->bytes + gv->off[x], gv->bytes + gv->off[y], lx < ly ? lx : ly);
    if (c) return c;
    return lx != ly ? (lx > ly) - (lx < ly) : (x > y) - (x < y);
}

/* Characters of b[0..len) if it is plain string content (every byte printable
 * ASCII other than quote and backslash, or part of a whole valid UTF-8
 * character), else UINT32_MAX. What such a token does inside a string is
 * known without feeding it: it adds that many characters. */
static uint32_t plain_chars(const char *b, uint32_t len) {
    pv_gram_state_t st = {0};
    pv_gram_frame_t *f = &st.f[0];
    gnode_t str = {.kind = GN_STRING, .max = UINT32_MAX};
    st.depth = 1;
    f->phase = S_IN;
    for (uint32_t i = 0; i < len; i++) {
        unsigned c = (unsigned char)b[i];
        if (c == '"' || c == '\\' || step_string(&st, f, &str, c) != R_OK) return UINT32_MAX;
    }
    return len && f->phase == S_IN ? f->n : UINT32_MAX;
}

/* Characters a string may still take when the innermost frame is inside a
 * string between characters; -1 otherwise. */
static int64_t string_room(const pv_gram_state_t *st) {
    if (st->depth == 0) return -1;
    const pv_gram_frame_t *f = &st->f[st->depth - 1];
    const gnode_t *nd = &st->g->nodes[f->node];
    return nd->kind == GN_STRING && f->phase == S_IN ? (int64_t)nd->max - f->n : -1;
}

pv_gram_vocab_t *pv_gram_vocab_new(const pv_vocab_t *v) {
    pv_gram_vocab_t *gv = calloc(1, sizeof *gv);
    if (!gv) return NULL;
    int32_t n = pv_vocab_n_tokens(v);
    gv->n = n;
    gv->off = malloc(((size_t)n + 1) * sizeof *gv->off);
    gv->eog = calloc((size_t)n + 1, 1);
    gv->order = malloc(((size_t)n + 1) * sizeof *gv->order);
    gv->lcp = calloc((size_t)n + 1, sizeof *gv->lcp);
    size_t cap = (size_t)n * 8 + 64, used = 0;
    gv->bytes = malloc(cap);
    if (!gv->off || !gv->eog || !gv->order || !gv->lcp || !gv->bytes) goto fail;
    for (int32_t id = 0; id < n; id++) {
        gv->off[id] = (uint32_t)used;
        gv->order[id] = id;
        gv->eog[id] = (uint8_t)pv_vocab_is_eog(v, id);
        pv_token_type_t t = pv_vocab_type(v, id);
        if (t == PV_TOKEN_CONTROL || t == PV_TOKEN_UNKNOWN || t == PV_TOKEN_UNUSED) continue;
        int len = pv_token_to_piece(v, id, 0, gv->bytes + used, cap - used);
        if (len < 0) { /* grow to fit */
            size_t want = used + (size_t)-len;
            while (cap < want) cap *= 2;
            char *p = realloc(gv->bytes, cap);
            if (!p) goto fail;
            gv->bytes = p;
            len = pv_token_to_piece(v, id, 0, gv->bytes + used, cap - used);
        }
        if (len < 0) len = 0;
        used += (size_t)len;
        if ((uint32_t)len > gv->max_len) gv->max_len = (uint32_t)len;
    }
    gv->off[n] = (uint32_t)used;
    if (!(gv->str_chars = malloc(((size_t)n + 1) * sizeof *gv->str_chars))) goto fail;
    for (int32_t id = 0; id < n; id++) gv->str_chars[id] = plain_chars(gv->bytes + gv->off[id], gv->off[id + 1] - gv->off[id]);
    qsort_r(gv->order, (size_t)n, sizeof *gv->order, token_cmp, gv);
    for (int32_t i = 1; i < n; i++) {
        int32_t x = gv->order[i - 1], y = gv->order[i];
        uint32_t lx = gv->off[x + 1] - gv->off[x], ly = gv->off[y + 1] - gv->off[y], k = 0;
        while (k < lx && k < ly && gv->bytes[gv->off[x] + k] == gv->bytes[gv->off[y] + k]) k++;
        gv->lcp[i] = k;
    }
    gv->scratch = malloc(((size_t)gv->max_len + 1) * sizeof *gv->scratch);
    if (!gv->scratch) goto fail;
    return gv;
fail:
    pv_gram_vocab_free(gv);
    return NULL;
}

void pv_gram_vocab_free(pv_gram_vocab_t *gv) {
    if (!gv) return;
    free(gv->off);
    free(gv->bytes);
    free(gv->eog);
    free(gv->order);
    free(gv->lcp);
    free(gv->str_chars);
    free(gv->scratch);
    free(gv);
}

int pv_gram_mask(pv_gram_vocab_t *gv, const pv_gram_state_t *st, float *logits) {
    pv_gram_state_t *s = gv->scratch;
    pv_gram_copy(&s[0], st);
    int accepting = pv_gram_accepting(st), n_ok = 0;
    int64_t room = string_room(st); /* inside a string, plain tokens are decided by their length alone */
    uint32_t ok_len = 0;   /* s[1..ok_len] hold the states after the previous token's first bytes */
    uint32_t fail_len = 0; /* the previous token's first fail_len bytes are rejected (0: it was not) */
    for (int32_t i = 0; i < gv->n; i++) {
        int32_t id = gv->order[i];
        const char *b = gv->bytes + gv->off[id];
        uint32_t len = gv->off[id + 1] - gv->off[id], l = gv->lcp[i];
        if (gv->eog[id] || len == 0) {
            if (!(gv->eog[id] && accepting)) logits[id] = -INFINITY;
            else n_ok++;
            ok_len = fail_len = 0;
            continue;
        }
        if (room >= 0 && gv->str_chars[id] != UINT32_MAX) {
            if (gv->str_chars[id] <= room) n_ok++;
            else logits[id] = -INFINITY;
            ok_len = fail_len = 0; /* s[1..] were not computed for it */
            continue;
        }
        if (fail_len && l >= fail_len) { /* it begins with the rejected bytes */
            logits[id] = -INFINITY;
            continue;
        }
        uint32_t j = l < ok_len ? l : ok_len;
        for (; j < len; j++) {
            pv_gram_copy(&s[j + 1], &s[j]);
            if (!feed_byte(&s[j + 1], (unsigned char)b[j])) break;
        }
        if (j < len) {
            logits[id] = -INFINITY;
            ok_len = j, fail_len = j + 1;
        } else {
            ok_len = len, fail_len = 0;
            n_ok++;
        }
    }
    return n_ok;
}

int pv_gram_feed_token(const pv_gram_vocab_t *gv, pv_gram_state_t *st, int32_t id) {
    if (id < 0 || id >= gv->n || gv->eog[id] || gv->off[id + 1] == gv->off[id]) return 0;
    return pv_gram_feed(st, gv->bytes + gv->off[id], gv->off[id + 1] - gv->off[id]);
}
