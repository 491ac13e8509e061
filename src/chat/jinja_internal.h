/* jinja_internal.h - the template AST shared by the parser (jinja.c) and the
 * evaluator (jinja_eval.c). Not a public header. */
#ifndef PV_CHAT_JINJA_INTERNAL_H
#define PV_CHAT_JINJA_INTERNAL_H

#include "chat/jinja.h"
#include "chat/value.h"

/* Node kinds: statements first, then expressions. */
typedef enum {
    /* statements */
    JN_TEXT,      /* s: literal output */
    JN_OUTPUT,    /* a: expression to print */
    JN_IF,        /* a: condition; v: then body; w: else body (an elif is one JN_IF there) */
    JN_FOR,       /* names: targets; a: iterable; b: inline filter or NULL; v: body; w: else body */
    JN_SET,       /* names: targets (s: namespace name when op == 1); a: value */
    JN_SETBLOCK,  /* names[0]: target; v: body; b: filter chain applied to the body, or NULL */
    JN_MACRO,     /* s: name; names: parameters; w: their defaults (NULL entries); v: body */
    JN_BREAK,     /* {% break %} */
    JN_CONTINUE,  /* {% continue %} */
    JN_FILTERBLOCK, /* v: body; b: filter chain whose innermost input is JN_BODYREF */
    /* expressions */
    JN_LIT,       /* lit */
    JN_NAME,      /* s: the name */
    JN_BODYREF,   /* the rendered body of the enclosing set/filter block */
    JN_ATTR,      /* a.s */
    JN_ITEM,      /* a[b] */
    JN_SLICE,     /* a[b:c:d], each of b, c, d may be NULL */
    JN_CALL,      /* a(v..., names=w...) */
    JN_FILTER,    /* a|s(v..., names=w...) */
    JN_TEST,      /* a is s(v..., names=w...); op: 1 when negated (is not) */
    JN_UNARY,     /* op ('-', '+', '!') a */
    JN_BINARY,    /* a op b: + - * / F(//) % P(**) */
    JN_AND,       /* a and b */
    JN_OR,        /* a or b */
    JN_COMPARE,   /* v[0] ops[0] v[1] ops[1] v[2] ...: = ! < L > G i(in) n(not in) */
    JN_CONCAT,    /* v[0] ~ v[1] ~ ... */
    JN_COND,      /* b if a else c (c may be NULL: undefined) */
    JN_LIST,      /* [v...] */
    JN_TUPLE,     /* (v...) */
    JN_DICT,      /* {v[i]: w[i]} */
    JN_COUNT
} jn_kind_t;

typedef struct jn jn_t;
struct jn {
    int kind;           /* jn_kind_t */
    int op;             /* operator character, or a flag, by kind */
    int line;           /* 1-based source line, for messages */
    const char *s;      /* name / text, NUL-terminated (parse arena) */
    size_t sn;          /* length of s */
    jv_t lit;           /* JN_LIT value (strings in the parse arena) */
    jn_t *a, *b, *c, *d; /* operands, by kind */
    jn_t **v;           /* (nv) body statements / arguments / items */
    size_t nv;
    jn_t **w;           /* (nw) else body / keyword values / dict values */
    size_t nw;
    const char **names; /* (nnames) targets / keyword names / parameters */
    size_t nnames;
    char *ops;          /* (nv - 1) JN_COMPARE operators */
};

struct pv_jinja {
    jv_arena_t *arena; /* owns every node and literal */
    jn_t *root;        /* root->v: the top-level statements */
};


#endif
