/* bpe.c - byte-level BPE (tokenizer.ggml.model = "gpt2"), as llama.cpp's
 * llm_tokenizer_bpe does it.
 *
 * Encoding one text fragment (special tokens were cut out by tokenize.c):
 *
 *  1. The pre-tokenizer (pretok.c) cuts it into words. Invalid UTF-8 is
 *     kept byte for byte where the vocabulary has a token for the byte, else
 *     becomes U+FFFD as in llama.cpp (see pretok.c).
 *  2. Each word's bytes are spelled in GPT-2's byte-level alphabet (every
 *     byte one printable character, pv__byte_to_cp). With ignore_merges
 *     (Llama 3), a word whose spelling is a token is that token.
 *  3. Otherwise each byte starts as one symbol, and the adjacent pair with
 *     the lowest merge rank is joined, repeatedly (ties: leftmost), through a
 *     binary heap of candidate pairs; stale candidates are recognised by
 *     their size, as in spm.c.
 *  4. Each final symbol is a token; one that is not (a character missing
 *     from the vocabulary, or a merge result that is not a token) falls back
 *     to the tokens of the single bytes of its spelling, as llama.cpp does.
 *
 * Symbols are ids, so a merge is one hash lookup of a pair of ids: ids below
 * n_tokens are tokens; a string that some merge names but that is not a
 * token (a broken but loadable file) gets an extra id from n_tokens on, so
 * merges behave exactly as llama.cpp's string-keyed map. Duplicate pairs keep
 * their first (lowest) rank, as std::map::emplace does.
 *
 * Words of up to 64 bytes are cached for the rest of the call (a word's
 * tokens do not depend on its neighbours, and prompts repeat words).
 *
 * Cost: O(n log n) per word of n bytes; words are short. Scratch memory is
 * about 76 bytes per byte of the longest word, plus the cache (linear in the
 * input), all freed before returning. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tok/tok_internal.h"

#define KEY_MERGES "tokenizer.ggml.merges"
#define BPE_MAX_MERGES (1 << 24)                               /* real vocabularies have < 1M */
#define BPE_MAX_MERGE_BYTES (2 * PV__VOCAB_MAX_TOKEN_BYTES + 1) /* two token texts and a space */

typedef struct {
    int32_t left;   /* symbol id of the left part; -1 marks an empty slot */
    int32_t right;  /* symbol id of the right part */
    int32_t rank;   /* index in tokenizer.ggml.merges: lower merges first */
    int32_t result; /* symbol id of left + right */
} merge_t;

struct pv__bpe {
    pv__pretok_t *pretok;      /* the word splitter; owned */
    int ignore_merges;         /* a word that is a token is emitted whole (Llama 3) */
    merge_t *merges;           /* [merge_mask + 1] open-addressing table keyed by (left, right); owned */
    uint32_t merge_mask;       /* table size - 1; the size is a power of two >= 2 * entries */
    int32_t byte_sym[256];     /* symbol id of each byte's character: a token, an extra id, or -1 */
    char enc[256][2];          /* each byte's character in UTF-8 (pv__byte_to_cp) */
    uint8_t enc_len[256];      /* 1 or 2 */
    int32_t fallback[256][2];  /* tokens of the single bytes of enc[b], for symbols that are not tokens */
    uint8_t n_fallback[256];   /* 0..2 */
    uint64_t keep[4];          /* bit b: byte b has a NORMAL token, so invalid UTF-8 can keep it (pretok.c) */
};

/* ------------------------------------------------------------------ merge table */

static uint32_t pair_hash(int32_t left, int32_t right) {
    uint64_t k = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    k *= 0x9e3779b97f4a7c15u; /* Fibonacci hashing: the high bits mix every input bit */
    return (uint32_t)(k >> 32);
}

static const merge_t *merge_find(const pv__bpe_t *b, int32_t left, int32_t right) {
    for (uint32_t h = pair_hash(left, right) & b->merge_mask;; h = (h + 1) & b->merge_mask) {
        const merge_t *m = &b->merges[h];
        if (m->left < 0) return NULL;
        if (m->left == left && m->right == right) return m;
    }
}

/* Adds a pair unless present (the first rank stays). */
static void merge_add(pv__bpe_t *b, int32_t left, int32_t right, int32_t rank, int32_t result) {
    uint32_t h = pair_hash(left, right) & b->merge_mask;
    for (; b->merges[h].left >= 0; h = (h + 1) & b->merge_mask)
        if (b->merges[h].left == left && b->merges[h].right == right) return;
    b->merges[h] = (merge_t){left, right, rank, result};
}

/* ------------------------------------------------------------------ strings named by merges that are not tokens */

/* Load-time set of such strings; string k has symbol id n_tokens + k. */
typedef struct {
    char *pool;      /* the strings, back to back; owned */
    size_t n_pool;   /* bytes used in pool */
    size_t cap_pool; /* bytes allocated */
    uint32_t *off;   /* [n] offset of each string in pool; owned */
    uint32_t *len;   /* [n] length of each string; owned */
    int32_t n;       /* strings */
    int32_t cap;     /* entries allocated in off and len */
    int32_t *slots;  /* [mask + 1] hash table of string numbers, -1 = empty; owned */
    uint32_t mask;   /* table size - 1 */
} extras_t;

static void extras_close(extras_t *x) {
    free(x->pool);
    free(x->off);
    free(x->len);
    free(x->slots);
}

static int32_t extras_find(const extras_t *x, const char *s, size_t len) {
    if (!x->slots) return -1;
    for (uint32_t h = pv__hash_bytes(s, len) & x->mask; x->slots[h] >= 0; h = (h + 1) & x->mask) {
        int32_t k = x->slots[h];
        if (x->len[k] == len && memcmp(x->pool + x->off[k], s, len) == 0) return k;
    }
    return -1;
}

static int extras_rehash(extras_t *x, uint32_t n_slots) {
    int32_t *slots = malloc(n_slots * sizeof *slots);
    if (!slots) return -1;
    memset(slots, 0xff, n_slots * sizeof *slots);
    for (int32_t k = 0; k < x->n; k++) {
        uint32_t h = pv__hash_bytes(x->pool + x->off[k], x->len[k]) & (n_slots - 1);
        while (slots[h] >= 0) h = (h + 1) & (n_slots - 1);
        slots[h] = k;
    }
    free(x->slots);
    x->slots = slots;
    x->mask = n_slots - 1;
    return 0;
}

/* Number of the string (added if new), or -1 when out of memory. */
static int32_t extras_add(extras_t *x, const char *s, size_t len) {
    int32_t k = extras_find(x, s, len);
    if (k >= 0) return k;
    if (x->n == x->cap) {
        int32_t cap = x->cap ? 2 * x->cap : 64;
        uint32_t *off = realloc(x->off, (size_t)cap * sizeof *off);
        if (!off) return -1;
        x->off = off;
        uint32_t *lens = realloc(x->len, (size_t)cap * sizeof *lens);
        if (!lens) return -1;
        x->len = lens;
        x->cap = cap;
    }
    if (x->n_pool + len > x->cap_pool) {
        size_t cap = x->cap_pool ? 2 * x->cap_pool : 4096;
        while (cap < x->n_pool + len) cap *= 2;
        if (cap > UINT32_MAX) return -1;
        char *pool = realloc(x->pool, cap);
        if (!pool) return -1;
        x->pool = pool;
        x->cap_pool = cap;
    }
    memcpy(x->pool + x->n_pool, s, len);
    x->off[x->n] = (uint32_t)x->n_pool;
    x->len[x->n] = (uint32_t)len;
    x->n_pool += len;
    x->n++;
    if (!x->slots || 2 * (uint32_t)x->n > x->mask + 1) /* grow: the rehash places the new string too */
        return extras_rehash(x, x->slots ? 2 * (x->mask + 1) : 128) ? -1 : x->n - 1;
    uint32_t h = pv__hash_bytes(s, len) & x->mask;
    while (x->slots[h] >= 0) h = (h + 1) & x->mask;
    x->slots[h] = x->n - 1;
    return x->n - 1;
}

/* Symbol id of string s: its token, else its extra id (added), or -2 when out of memory. */
static int32_t symbol_of(const pv_vocab_t *v, extras_t *x, const char *s, size_t len) {
    int32_t id = pv__vocab_find(v, s, len);
    if (id >= 0) return id;
    int32_t k = extras_add(x, s, len);
    return k < 0 ? -2 : v->n_tokens + k;
}

/* ------------------------------------------------------------------ load / free */

static int load_merges(const pv_vocab_t *v, const gguf_file_t *f, pv__bpe_t *b, extras_t *x, char *err,
                       size_t errlen) {
    const gguf_kv_t *kv = gguf_find_kv(f, KEY_MERGES);
    if (!kv)
        return pv_errorf(err, errlen, PV_ENOTFOUND, "%s: %s is missing (byte-level BPE needs its merges)", f->path,
                         KEY_MERGES);
    if (kv->type != GGUF_VT_ARRAY || kv->el_type != GGUF_VT_STRING)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s must be an array of strings", f->path, KEY_MERGES);
    if (kv->n > BPE_MAX_MERGES)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s has %llu entries (limit %d)", f->path, KEY_MERGES,
                         (unsigned long long)kv->n, BPE_MAX_MERGES);
    size_t n_slots = 16;
    while (n_slots < 2 * (size_t)kv->n) n_slots <<= 1;
    b->merges = malloc(n_slots * sizeof *b->merges);
    char *joined = malloc(BPE_MAX_MERGE_BYTES);
    if (!b->merges || !joined) {
        free(joined);
        return pv_errorf(err, errlen, PV_ENOMEM, "%s: out of memory for %s", f->path, KEY_MERGES);
    }
    memset(b->merges, 0xff, n_slots * sizeof *b->merges); /* left = -1: empty */
    b->merge_mask = (uint32_t)(n_slots - 1);
    size_t pos = 0, len;
    for (uint32_t i = 0; i < kv->n; i++) {
        const char *s = gguf_arr_str_next(kv, &pos, &len);
        if (len > BPE_MAX_MERGE_BYTES) {
            free(joined);
            return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s: merge %u is %zu bytes long (limit %d)", f->path,
                             KEY_MERGES, i, len, BPE_MAX_MERGE_BYTES);
        }
        /* "left right": the first space after the first byte splits it; a
         * merge without one, or with an empty right part, can never apply */
        const char *space = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!space || space == s + len - 1) continue;
        size_t n_left = (size_t)(space - s), n_right = len - n_left - 1;
        memcpy(joined, s, n_left);
        memcpy(joined + n_left, space + 1, n_right);
        int32_t left = symbol_of(v, x, s, n_left);
        int32_t right = left >= 0 ? symbol_of(v, x, space + 1, n_right) : -2;
        int32_t result = right >= 0 ? symbol_of(v, x, joined, n_left + n_right) : -2;
        if (result < 0) {
            free(joined);
            return pv_errorf(err, errlen, PV_ENOMEM, "%s: out of memory for %s", f->path, KEY_MERGES);
        }
        merge_add(b, left, right, (int32_t)i, result);
    }
    free(joined);
    if ((int64_t)v->n_tokens + x->n > INT32_MAX) /* cannot happen below the caps; ids must stay int32 */
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s names too many strings", f->path, KEY_MERGES);
    return 0;
}

static void build_byte_maps(const pv_vocab_t *v, pv__bpe_t *b, const extras_t *x) {
    for (unsigned c = 0; c < 256; c++) {
        uint32_t cp = pv__byte_to_cp(c); /* < 0x800: one or two UTF-8 bytes */
        char *e = b->enc[c];
        if (cp < 0x80) {
            e[0] = (char)cp;
            b->enc_len[c] = 1;
        } else {
            e[0] = (char)(0xc0 | cp >> 6);
            e[1] = (char)(0x80 | (cp & 0x3f));
            b->enc_len[c] = 2;
        }
        int32_t id = pv__vocab_find(v, e, b->enc_len[c]);
        if (id < 0 && (id = extras_find(x, e, b->enc_len[c])) >= 0) id += v->n_tokens;
        b->byte_sym[c] = id;
        if (id >= 0 && id < v->n_tokens && v->tokens[id].type == PV_TOKEN_NORMAL)
            b->keep[c >> 6] |= (uint64_t)1 << (c & 63);
        b->n_fallback[c] = 0;
        for (int i = 0; i < b->enc_len[c]; i++) {
            int32_t t = pv__vocab_find(v, &e[i], 1);
            if (t >= 0) b->fallback[c][b->n_fallback[c]++] = t;
        }
    }
}

int pv__bpe_load(const pv_vocab_t *v, const gguf_file_t *f, pv__pretok_t *pretok, pv__bpe_t **out, char *err,
                 size_t errlen) {
    *out = NULL;
    pv__bpe_t *b = calloc(1, sizeof *b);
    if (!b) {
        pv__pretok_free(pretok);
        return pv_errorf(err, errlen, PV_ENOMEM, "%s: out of memory", f->path);
    }
    b->pretok = pretok;
    b->ignore_merges = (pv__pretok_flags(pretok) & PV__PRE_IGNORE_MERGES) != 0;
    extras_t x = {0};
    int rc = load_merges(v, f, b, &x, err, errlen);
    if (rc) {
        extras_close(&x);
        pv__bpe_free(b);
        return rc;
    }
    build_byte_maps(v, b, &x);
    extras_close(&x);
    *out = b;
    return 0;
}

void pv__bpe_free(pv__bpe_t *b) {
    if (!b) return;
    pv__pretok_free(b->pretok);
    free(b->merges);
    free(b);
}

const char *pv__bpe_pre_name(const pv__bpe_t *b) { return pv__pretok_name(b->pretok); }

/* ------------------------------------------------------------------ encoding one word */

typedef struct {
    int32_t id;   /* symbol id (see the top); -1 for a character no merge names */
    int32_t n;    /* bytes; the symbol starts at its own index; 0 once merged into its left neighbour */
    int32_t prev; /* previous live symbol, -1 at the start */
    int32_t next; /* next live symbol, -1 at the end */
} sym_t;

typedef struct {
    int32_t rank;   /* merge rank: lowest first */
    int32_t left;   /* left symbol */
    int32_t right;  /* right symbol */
    int32_t size;   /* bytes of the pair when queued; a mismatch later means stale */
    int32_t result; /* symbol id after the merge */
} bigram_t;

/* A word already encoded during this call. */
typedef struct {
    uint32_t hash;  /* pv__hash_bytes of the word */
    uint32_t len;   /* word length in bytes */
    uint32_t text;  /* offset of its bytes in the cache pool */
    uint32_t first; /* offset of its ids in the cache ids */
    uint32_t n_ids; /* how many */
} cached_t;

/* Per-call cache of encoded words: prompts repeat words all the time (JSON
 * keys, identifiers, prose), and a word's tokens do not depend on its
 * neighbours. Words of 2..CACHE_MAX_WORD bytes only. */
#define CACHE_MAX_WORD 64

typedef struct {
    int32_t *slots;     /* [mask + 1] hash table of entry numbers, -1 = empty; owned */
    uint32_t mask;      /* table size - 1 (0 before the first use) */
    cached_t *entries;  /* [cap] owned */
    size_t n, cap;      /* entries in use and allocated */
    char *pool;         /* word bytes; owned */
    size_t n_pool, cap_pool; /* bytes in use and allocated */
    int32_t *ids;       /* ids of the words; owned */
    size_t n_ids, cap_ids;   /* ids in use and allocated */
} word_cache_t;

/* Scratch for one pv_tokenize call. */
typedef struct {
    pv__words_t words; /* the pre-tokenizer's output for the current fragment */
    sym_t *syms;       /* [cap] symbols of the current word */
    bigram_t *heap;    /* [3 * cap] binary min-heap of candidate merges */
    size_t n_heap;     /* entries in heap */
    char *spelled;     /* [2 * cap] the word in the byte-level alphabet (ignore_merges) */
    size_t cap;        /* longest word the arrays fit */
    word_cache_t cache; /* words encoded so far */
} bpe_work_t;

static int work_reserve(bpe_work_t *w, size_t n) {
    if (n <= w->cap) return 0;
    size_t cap = w->cap ? w->cap : 64;
    while (cap < n) cap *= 2;
    free(w->syms);
    free(w->heap);
    free(w->spelled);
    w->syms = malloc(cap * sizeof *w->syms);
    w->heap = malloc(3 * cap * sizeof *w->heap); /* n - 1 initial pairs + 2 per merge (at most n - 1) */
    w->spelled = malloc(2 * cap);
    w->cap = w->syms && w->heap && w->spelled ? cap : 0;
    return w->cap ? 0 : -1;
}

static void work_close(bpe_work_t *w) {
    pv__words_close(&w->words);
    free(w->syms);
    free(w->heap);
    free(w->spelled);
    free(w->cache.slots);
    free(w->cache.entries);
    free(w->cache.pool);
    free(w->cache.ids);
}

/* Makes *p (of *cap elements of size el) hold need elements. */
static int grow(void **p, size_t *cap, size_t need, size_t el) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * el);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* The cached entry of word s[0..n), or NULL. */
static const cached_t *cache_find(const word_cache_t *c, const char *s, uint32_t n, uint32_t hash) {
    if (!c->slots) return NULL;
    for (uint32_t h = hash & c->mask; c->slots[h] >= 0; h = (h + 1) & c->mask) {
        const cached_t *e = &c->entries[c->slots[h]];
        if (e->hash == hash && e->len == n && memcmp(c->pool + e->text, s, n) == 0) return e;
    }
    return NULL;
}

/* Records the last entry in the table, growing it as needed. */
static int cache_index(word_cache_t *c) {
    if (2 * c->n > c->mask) { /* keep the load under one half */
        uint32_t size = c->slots ? 2 * (c->mask + 1) : 1024;
        int32_t *slots = malloc(size * sizeof *slots);
        if (!slots) return -1;
        memset(slots, 0xff, size * sizeof *slots);
        free(c->slots);
        c->slots = slots;
        c->mask = size - 1;
        for (size_t k = 0; k + 1 < c->n; k++) {
            uint32_t h = c->entries[k].hash & c->mask;
            while (c->slots[h] >= 0) h = (h + 1) & c->mask;
            c->slots[h] = (int32_t)k;
        }
    }
    uint32_t h = c->entries[c->n - 1].hash & c->mask;
    while (c->slots[h] >= 0) h = (h + 1) & c->mask;
    c->slots[h] = (int32_t)(c->n - 1);
    return 0;
}

/* a is popped before b: lower rank, then the leftmost pair. */
static int bigram_first(const bigram_t *a, const bigram_t *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(bpe_work_t *w, bigram_t b) {
    size_t i = w->n_heap++;
    for (size_t parent; i > 0 && bigram_first(&b, &w->heap[parent = (i - 1) / 2]); i = parent)
        w->heap[i] = w->heap[parent];
    w->heap[i] = b;
}

static bigram_t heap_pop(bpe_work_t *w) {
    bigram_t top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (size_t c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && bigram_first(&w->heap[c + 1], &w->heap[c])) c++;
        if (!bigram_first(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

/* Queues the pair (left, right) when some merge joins their symbols. */
static void try_pair(const pv__bpe_t *b, bpe_work_t *w, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const sym_t *l = &w->syms[left], *r = &w->syms[right];
    if (l->id < 0 || r->id < 0) return;
    const merge_t *m = merge_find(b, l->id, r->id);
    if (m) heap_push(w, (bigram_t){m->rank, left, right, l->n + r->n, m->result});
}

/* The tokens of a final symbol covering bytes s[0..n). */
static void emit_symbol(const pv_vocab_t *v, const pv__bpe_t *b, int32_t id, const char *s, int32_t n,
                        pv__ids_t *out) {
    if (id >= 0 && id < v->n_tokens) {
        pv__ids_push(out, id);
        return;
    }
    for (int32_t i = 0; i < n; i++) { /* not a token: the tokens of its spelling's single bytes */
        unsigned c = (unsigned char)s[i];
        for (int k = 0; k < b->n_fallback[c]; k++) pv__ids_push(out, b->fallback[c][k]);
    }
}

static void encode_word(const pv_vocab_t *v, const pv__bpe_t *b, bpe_work_t *w, const char *s, int32_t n,
                        pv__ids_t *out) {
    if (n == 1) {
        emit_symbol(v, b, b->byte_sym[(unsigned char)s[0]], s, 1, out);
        return;
    }
    if (b->ignore_merges) {
        size_t len = 0;
        for (int32_t i = 0; i < n; i++) {
            unsigned c = (unsigned char)s[i];
            memcpy(w->spelled + len, b->enc[c], b->enc_len[c]);
            len += b->enc_len[c];
        }
        int32_t id = pv__vocab_find(v, w->spelled, len);
        if (id >= 0) {
            pv__ids_push(out, id);
            return;
        }
    }
    for (int32_t i = 0; i < n; i++) w->syms[i] = (sym_t){b->byte_sym[(unsigned char)s[i]], 1, i - 1, i + 1};
    w->syms[n - 1].next = -1;
    w->n_heap = 0;
    for (int32_t i = 1; i < n; i++) try_pair(b, w, i - 1, i);
    while (w->n_heap > 0) {
        bigram_t g = heap_pop(w);
        sym_t *l = &w->syms[g.left], *r = &w->syms[g.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != g.size) continue; /* stale */
        l->n += r->n;
        l->id = g.result;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->syms[r->next].prev = g.left;
        try_pair(b, w, l->prev, g.left);
        try_pair(b, w, g.left, l->next);
    }
    for (int32_t i = 0; i >= 0; i = w->syms[i].next) emit_symbol(v, b, w->syms[i].id, s + i, w->syms[i].n, out);
}

/* Encodes a word through the cache. 0, or -1 when out of memory. */
static int encode_cached(const pv_vocab_t *v, const pv__bpe_t *b, bpe_work_t *w, const char *s, uint32_t n,
                         pv__ids_t *out) {
    if (n < 2 || n > CACHE_MAX_WORD) {
        encode_word(v, b, w, s, (int32_t)n, out);
        return 0;
    }
    word_cache_t *c = &w->cache;
    uint32_t hash = pv__hash_bytes(s, n);
    const cached_t *e = cache_find(c, s, n, hash);
    if (!e) {
        /* a word of n bytes gives at most 2 n ids (two fallback tokens per byte) */
        if (grow((void **)&c->ids, &c->cap_ids, c->n_ids + 2 * (size_t)n, sizeof *c->ids) ||
            grow((void **)&c->pool, &c->cap_pool, c->n_pool + n, 1) ||
            grow((void **)&c->entries, &c->cap, c->n + 1, sizeof *c->entries) || c->n_ids + 2 * (size_t)n > UINT32_MAX ||
            c->n_pool + n > UINT32_MAX)
            return -1;
        pv__ids_t ids = {.ids = c->ids + c->n_ids, .n_max = 2 * (size_t)n};
        encode_word(v, b, w, s, (int32_t)n, &ids);
        memcpy(c->pool + c->n_pool, s, n);
        c->entries[c->n++] = (cached_t){hash, n, (uint32_t)c->n_pool, (uint32_t)c->n_ids, (uint32_t)ids.n};
        c->n_pool += n;
        c->n_ids += ids.n;
        if (cache_index(c)) return -1;
        e = &c->entries[c->n - 1];
    }
    for (uint32_t i = 0; i < e->n_ids; i++) pv__ids_push(out, c->ids[e->first + i]);
    return 0;
}

/* ------------------------------------------------------------------ pv__bpe_encode */

int pv__bpe_encode(const pv_vocab_t *v, const char *text, const pv__frags_t *frags, pv__ids_t *out) {
    const pv__bpe_t *b = v->bpe;
    bpe_work_t w = {0};
    int rc = 0;
    for (size_t i = 0; i < frags->n && rc == 0; i++) {
        const pv__frag_t *f = &frags->a[i];
        if (f->id >= 0) {
            pv__ids_push(out, f->id);
            continue;
        }
        if ((rc = pv__pretok_split(b->pretok, text + f->off, f->len, b->keep, &w.words)) != 0) break;
        const char *s = w.words.text; /* the fragment, or its repair when it is not valid UTF-8 */
        uint32_t start = 0, longest = 0;
        for (size_t k = 0; k < w.words.n; k++) {
            if (w.words.ends[k] - start > longest) longest = w.words.ends[k] - start;
            start = w.words.ends[k];
        }
        if ((rc = work_reserve(&w, longest)) != 0) break;
        start = 0;
        for (size_t k = 0; k < w.words.n && rc == 0; k++) {
            uint32_t end = w.words.ends[k];
            rc = encode_cached(v, b, &w, s + start, end - start, out);
            start = end;
        }
    }
    work_close(&w);
    return rc;
}
