/* spm.c - SentencePiece encoding (tokenizer.ggml.model = "llama"), as
 * llama.cpp's llm_tokenizer_spm does it.
 *
 * pv_tokenize() works in two stages:
 *
 *  1. Partition. The input is cut at the texts of special tokens: user-defined
 *     tokens always, control and unknown tokens only with PV_TOK_SPECIAL. The
 *     tokens are tried longest text first; each claims every leftmost,
 *     non-overlapping occurrence in the text not yet claimed. Tokens flagged
 *     RSTRIP (Phi-3) also swallow the whitespace after them.
 *
 *  2. Encoding of each text fragment. Spaces become U+2581 '▁', and a '▁' is
 *     prepended when add_space_prefix is set and the fragment is the first or
 *     follows a special token. The bytes are split into UTF-8 characters: the
 *     lead byte gives the length, as in llama.cpp, but a lead byte that would
 *     take in a non-continuation byte stands alone (see pv__char_len). Then
 *     the adjacent pair whose concatenation is a token with the highest score
 *     is merged, repeatedly (ties: leftmost), with a binary heap of candidate
 *     pairs; stale candidates are recognised by their size. Each final symbol
 *     is a token, or (a lone character missing from the vocabulary) falls back
 *     to byte tokens "<0xNN>".
 *
 *     For speed the characters are first cut into runs wherever two
 *     neighbours never appear side by side in any token (a filter built at
 *     load): no merge can cross such a cut, so each run is merged on its own
 *     with a heap that stays in cache. The result is the same as one queue
 *     over the whole fragment, since that queue's order restricted to a run is
 *     the run's own order.
 *
 *     llama.cpp also keeps a "reverse merge" map to re-split a final symbol
 *     along its merge history when it is not a token; that cannot happen,
 *     since only pairs whose concatenation is a token are ever merged, so
 *     every merged symbol is a token by construction.
 *
 * Cost: O(n log n) for the merges of an n-byte fragment (at most n - 1 merges,
 * each pushing two candidates; in practice O(n) since runs are word-sized),
 * plus O(k n) for the partition over the k special tokens (memmem per token).
 * Scratch memory is linear in the input (about 70 bytes per input byte) and
 * freed before returning. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* ------------------------------------------------------------------ output */

/* Ids produced so far; only the first n_max are stored. */
typedef struct {
    int32_t *ids; /* caller's array of n_max ids (NULL when n_max is 0) */
    size_t n_max; /* capacity of ids */
    size_t n;     /* ids produced (may exceed n_max) */
} ids_t;

static void ids_push(ids_t *o, int32_t id) {
    if (o->n < o->n_max) o->ids[o->n] = id;
    o->n++;
}

/* ------------------------------------------------------------------ stage 1: partition */

typedef struct {
    uint32_t off; /* first byte in the input */
    uint32_t len; /* length in bytes, > 0 */
    int32_t id;   /* special token id, or -1 for text still to encode */
} frag_t;

typedef struct {
    frag_t *a;  /* [cap], owned */
    size_t n;   /* fragments in use */
    size_t cap; /* fragments allocated */
} frags_t;

static int frags_push(frags_t *l, size_t off, size_t len, int32_t id) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        frag_t *a = realloc(l->a, cap * sizeof *a);
        if (!a) return -1;
        l->a = a;
        l->cap = cap;
    }
    l->a[l->n++] = (frag_t){(uint32_t)off, (uint32_t)len, id};
    return 0;
}

/* C-locale isspace(), as llama.cpp uses for RSTRIP. */
static int is_ws(char c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Whether special token id is matched at all under the flags. */
static int special_active(const pv_vocab_t *v, int32_t id, int parse_special) {
    uint8_t t = v->tokens[id].type;
    return parse_special || (t != PV_TOKEN_CONTROL && t != PV_TOKEN_UNKNOWN);
}

/* Whether token id's text occurs in any text fragment of l. */
static int occurs(const pv_vocab_t *v, const char *text, const frags_t *l, int32_t id) {
    const pv__token_t *t = &v->tokens[id];
    for (size_t i = 0; i < l->n; i++)
        if (l->a[i].id < 0 && memmem(text + l->a[i].off, l->a[i].len, v->pool + t->off, t->len)) return 1;
    return 0;
}

/* Appends fragment f to dst, cut at every occurrence of token id's text. */
static int split_fragment(const pv_vocab_t *v, const char *text, frag_t f, int32_t id, frags_t *dst) {
    const pv__token_t *t = &v->tokens[id];
    const char *needle = v->pool + t->off;
    size_t off = f.off, end = (size_t)f.off + f.len;
    while (off < end) {
        const char *hit = memmem(text + off, end - off, needle, t->len);
        if (!hit) return frags_push(dst, off, end - off, -1);
        size_t at = (size_t)(hit - text);
        if (at > off && frags_push(dst, off, at - off, -1)) return -1;
        if (frags_push(dst, at, t->len, id)) return -1;
        off = at + t->len;
        if (t->flags & PV__TOK_RSTRIP)
            while (off < end && is_ws(text[off])) off++;
    }
    return 0;
}

/* Cuts text[0..len) at special-token texts; on success *out owns the list. */
static int partition(const pv_vocab_t *v, const char *text, size_t len, int parse_special, frags_t *out) {
    frags_t cur = {0}, next = {0};
    if (frags_push(&cur, 0, len, -1)) goto fail;
    for (int32_t k = 0; k < v->n_specials; k++) {
        int32_t id = v->specials[k].id;
        if (!special_active(v, id, parse_special) || !occurs(v, text, &cur, id)) continue;
        next.n = 0;
        for (size_t i = 0; i < cur.n; i++) {
            int rc = cur.a[i].id >= 0 ? frags_push(&next, cur.a[i].off, cur.a[i].len, cur.a[i].id)
                                      : split_fragment(v, text, cur.a[i], id, &next);
            if (rc) goto fail;
        }
        frags_t tmp = cur;
        cur = next;
        next = tmp;
    }
    free(next.a);
    *out = cur;
    return 0;
fail:
    free(cur.a);
    free(next.a);
    return -1;
}

/* ------------------------------------------------------------------ stage 2: SentencePiece merges */

typedef struct {
    int32_t off;  /* first byte in the escaped text */
    int32_t n;    /* length in bytes; 0 once merged into its left neighbour */
    int32_t prev; /* previous live symbol of the same run, -1 at its start */
    int32_t next; /* next live symbol of the same run, -1 at its end */
} sym_t;

typedef struct {
    float score;   /* score of the token the pair would form */
    int32_t left;  /* left symbol */
    int32_t right; /* right symbol */
    int32_t size;  /* bytes of the pair when queued; a mismatch later means stale */
} bigram_t;

/* Scratch for one fragment, sized for the longest fragment of the input. */
typedef struct {
    char *esc;      /* [3 * (max_len + 1)] escaped fragment text */
    sym_t *syms;    /* [max_len + 1] symbols */
    bigram_t *heap; /* [3 * (max_len + 1)] binary max-heap of candidate pairs */
    size_t n_heap;  /* entries in heap */
} spm_work_t;

static int work_init(spm_work_t *w, size_t max_len) {
    size_t n = max_len + 1; /* + the '▁' prefix; max_len <= PV__TOK_MAX_BYTES, no overflow */
    w->esc = malloc(3 * n);
    w->syms = malloc(n * sizeof *w->syms);
    w->heap = malloc(3 * n * sizeof *w->heap); /* n - 1 initial pairs + 2 per merge (at most n - 1) */
    w->n_heap = 0;
    return w->esc && w->syms && w->heap ? 0 : -1;
}

static void work_close(spm_work_t *w) {
    free(w->esc);
    free(w->syms);
    free(w->heap);
}

/* a is popped before b: higher score, then the leftmost pair. */
static int bigram_first(const bigram_t *a, const bigram_t *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void sift_down(bigram_t *h, size_t n, size_t i, bigram_t b) {
    for (size_t c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && bigram_first(&h[c + 1], &h[c])) c++;
        if (!bigram_first(&h[c], &b)) break;
        h[i] = h[c];
    }
    h[i] = b;
}

static void heap_push(spm_work_t *w, bigram_t b) {
    size_t i = w->n_heap++;
    for (size_t parent; i > 0 && bigram_first(&b, &w->heap[parent = (i - 1) / 2]); i = parent)
        w->heap[i] = w->heap[parent];
    w->heap[i] = b;
}

static bigram_t heap_pop(spm_work_t *w) {
    bigram_t top = w->heap[0];
    if (--w->n_heap > 0) sift_down(w->heap, w->n_heap, 0, w->heap[w->n_heap]);
    return top;
}

/* Orders the entries appended without sifting (Floyd's heap construction, O(n)). */
static void heapify(spm_work_t *w) {
    for (size_t i = w->n_heap / 2; i-- > 0;) sift_down(w->heap, w->n_heap, i, w->heap[i]);
}

/* Queues the pair (left, right) if its concatenation is a token; with
 * sift 0 it is only appended, for heapify(). */
static void try_pair(const pv_vocab_t *v, spm_work_t *w, int32_t left, int32_t right, int sift) {
    if (left < 0 || right < 0) return;
    int32_t size = w->syms[left].n + w->syms[right].n;
    int32_t id = pv__vocab_find(v, w->esc + w->syms[left].off, (size_t)size);
    if (id < 0) return;
    bigram_t b = {v->tokens[id].score, left, right, size};
    if (sift) heap_push(w, b);
    else w->heap[w->n_heap++] = b;
}

/* Writes the escaped fragment into w->esc; returns its length. */
static int32_t escape(spm_work_t *w, const char *s, size_t len, int prefix) {
    static const char lower_block[3] = {'\xe2', '\x96', '\x81'}; /* U+2581 */
    int32_t n = 0;
    if (prefix) memcpy(w->esc, lower_block, 3), n = 3;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') memcpy(w->esc + n, lower_block, 3), n += 3;
        else w->esc[n++] = s[i];
    }
    return n;
}

/* Splits the escaped text into one symbol per character (pv__char_len), linked
 * into runs: a run ends where no token holds the two characters side by side
 * (pv__pair_maybe), so no merge can ever join them. Returns the symbol count. */
static int32_t split_runs(const pv_vocab_t *v, spm_work_t *w, int32_t len) {
    int32_t n_syms = 0;
    for (int32_t off = 0; off < len; n_syms++) {
        int32_t n = pv__char_len(w->esc + off, len - off);
        const sym_t *prev = n_syms > 0 ? &w->syms[n_syms - 1] : NULL;
        int linked = prev && pv__pair_maybe(v, w->esc + prev->off, prev->n, w->esc + off, n);
        w->syms[n_syms] = (sym_t){off, n, linked ? n_syms - 1 : -1, -1};
        if (linked) w->syms[n_syms - 1].next = n_syms;
        off += n;
    }
    return n_syms;
}

/* Runs the merges on the run starting at symbol first (whose last symbol is last). */
static void merge_run(const pv_vocab_t *v, spm_work_t *w, int32_t first, int32_t last) {
    w->n_heap = 0;
    for (int32_t i = first + 1; i <= last; i++) try_pair(v, w, i - 1, i, 0);
    heapify(w);
    while (w->n_heap > 0) {
        bigram_t b = heap_pop(w);
        sym_t *l = &w->syms[b.left], *r = &w->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->syms[r->next].prev = b.left;
        try_pair(v, w, l->prev, b.left, 1);
        try_pair(v, w, b.left, l->next, 1);
    }
}

static void emit_run(const pv_vocab_t *v, const spm_work_t *w, int32_t first, ids_t *out) {
    for (int32_t i = first; i >= 0; i = w->syms[i].next) {
        const sym_t *s = &w->syms[i];
        int32_t id = pv__vocab_find(v, w->esc + s->off, (size_t)s->n);
        if (id >= 0) {
            ids_push(out, id);
            continue;
        }
        for (int32_t j = 0; j < s->n; j++) {
            int32_t b = v->byte_ids[(unsigned char)w->esc[s->off + j]];
            if (b >= 0) ids_push(out, b); /* no byte token and no unk: the byte is dropped */
        }
    }
}

static void encode_fragment(const pv_vocab_t *v, spm_work_t *w, const char *s, size_t len, int prefix, ids_t *out) {
    int32_t n_bytes = escape(w, s, len, prefix);
    int32_t n_syms = split_runs(v, w, n_bytes);
    for (int32_t first = 0, last; first < n_syms; first = last + 1) {
        for (last = first; w->syms[last].next >= 0; last++) {}
        merge_run(v, w, first, last);
        emit_run(v, w, first, out);
    }
}

/* ------------------------------------------------------------------ pv_tokenize */

static size_t longest_text(const frags_t *l) {
    size_t m = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->a[i].id < 0 && l->a[i].len > m) m = l->a[i].len;
    return m;
}

int pv_tokenize(const pv_vocab_t *v, const char *text, size_t len, unsigned flags, int32_t *ids, int n_max) {
    if ((!text && len) || len > PV__TOK_MAX_BYTES) return PV__TOK_FAILED;
    ids_t out = {.ids = ids, .n_max = ids && n_max > 0 ? (size_t)n_max : 0};
    if ((flags & PV_TOK_ADD_BOS) && v->bos >= 0) ids_push(&out, v->bos);
    if (len > 0) {
        frags_t frags;
        if (partition(v, text, len, (flags & PV_TOK_SPECIAL) != 0, &frags)) return PV__TOK_FAILED;
        spm_work_t w;
        if (work_init(&w, longest_text(&frags))) {
            work_close(&w);
            free(frags.a);
            return PV__TOK_FAILED;
        }
        int prev_special = 1; /* the first fragment gets the space prefix too */
        for (size_t i = 0; i < frags.n; i++) {
            const frag_t *f = &frags.a[i];
            if (f->id >= 0) ids_push(&out, f->id);
            else encode_fragment(v, &w, text + f->off, f->len, v->add_space_prefix && prev_special, &out);
            prev_special = f->id >= 0;
        }
        work_close(&w);
        free(frags.a);
    }
    if (out.n > INT_MAX) return PV__TOK_FAILED; /* cannot happen below PV__TOK_MAX_BYTES */
    return out.n <= out.n_max ? (int)out.n : -(int)out.n;
}
