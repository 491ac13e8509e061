/* spm.c - SentencePiece encoding (tokenizer.ggml.model = "llama"), as
 * llama.cpp's llm_tokenizer_spm does it.
 *
 * Each text fragment (special tokens were cut out by tokenize.c) is encoded
 * on its own. Spaces become U+2581 '▁', and a '▁' is prepended when
 * add_space_prefix is set and the fragment is the first or follows a special
 * token. The bytes are split into UTF-8 characters: the lead byte gives the
 * length, as in llama.cpp, but a lead byte that would take in a
 * non-continuation byte stands alone (see pv__char_len). Then the adjacent
 * pair whose concatenation is a token with the highest score is merged,
 * repeatedly (ties: leftmost), with a binary heap of candidate pairs; stale
 * candidates are recognised by their size. Each final symbol is a token, or
 * (a lone character missing from the vocabulary) falls back to byte tokens
 * "<0xNN>".
 *
 * For speed the characters are first cut into runs wherever two neighbours
 * never appear side by side in any token (a filter built at load): no merge
 * can cross such a cut, so each run is merged on its own with a heap that
 * stays in cache. The result is the same as one queue over the whole
 * fragment, since that queue's order restricted to a run is the run's own
 * order.
 *
 * llama.cpp also keeps a "reverse merge" map to re-split a final symbol along
 * its merge history when it is not a token; that cannot happen, since only
 * pairs whose concatenation is a token are ever merged, so every merged symbol
 * is a token by construction.
 *
 * Cost: O(n log n) for the merges of an n-byte fragment (at most n - 1 merges,
 * each pushing two candidates; in practice O(n) since runs are word-sized).
 * Scratch memory is linear in the input (about 70 bytes per input byte) and
 * freed before returning. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* ------------------------------------------------------------------ merges */

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

static void emit_run(const pv_vocab_t *v, const spm_work_t *w, int32_t first, pv__ids_t *out) {
    for (int32_t i = first; i >= 0; i = w->syms[i].next) {
        const sym_t *s = &w->syms[i];
        int32_t id = pv__vocab_find(v, w->esc + s->off, (size_t)s->n);
        if (id >= 0) {
            pv__ids_push(out, id);
            continue;
        }
        for (int32_t j = 0; j < s->n; j++) {
            int32_t b = v->byte_ids[(unsigned char)w->esc[s->off + j]];
            if (b >= 0) pv__ids_push(out, b); /* no byte token and no unk: the byte is dropped */
        }
    }
}

static void encode_fragment(const pv_vocab_t *v, spm_work_t *w, const char *s, size_t len, int prefix, pv__ids_t *out) {
    int32_t n_bytes = escape(w, s, len, prefix);
    int32_t n_syms = split_runs(v, w, n_bytes);
    for (int32_t first = 0, last; first < n_syms; first = last + 1) {
        for (last = first; w->syms[last].next >= 0; last++) {}
        merge_run(v, w, first, last);
        emit_run(v, w, first, out);
    }
}

/* ------------------------------------------------------------------ pv__spm_encode */

static size_t longest_text(const pv__frags_t *l) {
    size_t m = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->a[i].id < 0 && l->a[i].len > m) m = l->a[i].len;
    return m;
}

int pv__spm_encode(const pv_vocab_t *v, const char *text, const pv__frags_t *frags, pv__ids_t *out) {
    spm_work_t w;
    if (work_init(&w, longest_text(frags))) {
        work_close(&w);
        return -1;
    }
    int prev_special = 1; /* the first fragment gets the space prefix too */
    for (size_t i = 0; i < frags->n; i++) {
        const pv__frag_t *f = &frags->a[i];
        if (f->id >= 0) pv__ids_push(out, f->id);
        else encode_fragment(v, &w, text + f->off, f->len, v->add_space_prefix && prev_special, out);
        prev_special = f->id >= 0;
    }
    work_close(&w);
    return 0;
}
