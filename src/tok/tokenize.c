/* tokenize.c - pv_tokenize(): the input is cut at the texts of special
 * tokens, then each piece of plain text goes to the vocabulary's encoder
 * (spm.c or bpe.c).
 *
 * The partition follows llama.cpp's tokenizer_st_partition: user-defined
 * tokens are always recognised, control and unknown tokens only with
 * PV_TOK_SPECIAL (chat templates produce them; user text must not be able to
 * inject "<|im_end|>"). The tokens are tried longest text first; each claims
 * every leftmost, non-overlapping occurrence in the text not yet claimed.
 * Tokens flagged RSTRIP (Phi-3) also swallow the whitespace after them.
 * Special text is never seen by BPE or SentencePiece merges.
 *
 * Speed: one pass first finds which special texts occur at all (at each
 * byte that starts one, an incremental hash over the next bytes is looked up
 * at each special length); the longest-first partition then runs only over
 * those, so the many special tokens of some vocabularies (2400 in
 * deepseek-llm) cost nothing when absent. Cost: O(n * L) for the scan (L, the
 * longest special text, bounds the bytes hashed at each candidate byte), plus
 * O(k n) memmem for the k special tokens present, plus the encoder's. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* ------------------------------------------------------------------ partition */

static int frags_push(pv__frags_t *l, size_t off, size_t len, int32_t id) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        pv__frag_t *a = realloc(l->a, cap * sizeof *a);
        if (!a) return -1;
        l->a = a;
        l->cap = cap;
    }
    l->a[l->n++] = (pv__frag_t){(uint32_t)off, (uint32_t)len, id};
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

/* Special tokens whose text occurs in the input (active under the flags). */
typedef struct {
    int32_t *ids; /* [n] token ids, increasing; owned */
    size_t n;     /* ids in use */
    size_t cap;   /* ids allocated */
} present_t;

static int cmp_id(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int is_present(const present_t *p, int32_t id) {
    return p->n && bsearch(&id, p->ids, p->n, sizeof id, cmp_id) != NULL;
}

/* Finds every active special token whose text starts at some byte of text. */
static int find_present(const pv_vocab_t *v, const char *text, size_t len, int parse_special, present_t *p) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (!(v->special_first[c >> 6] >> (c & 63) & 1)) continue;
        uint32_t h = 2166136261u; /* pv__hash_bytes, extended one byte at a time */
        size_t done = 0;
        for (int32_t k = 0; k < v->n_special_lens && v->special_lens[k] <= len - i; k++) {
            size_t n = v->special_lens[k];
            for (; done < n; done++) h = (h ^ (unsigned char)text[i + done]) * 16777619u;
            for (uint32_t s = h & v->special_mask; v->special_slots[s] >= 0; s = (s + 1) & v->special_mask) {
                int32_t id = v->special_slots[s];
                if (v->tokens[id].len != n || memcmp(pv__token_text(v, id), text + i, n) != 0) continue;
                if (!special_active(v, id, parse_special)) break;
                if (p->n == p->cap) {
                    size_t cap = p->cap ? 2 * p->cap : 16;
                    int32_t *ids = realloc(p->ids, cap * sizeof *ids);
                    if (!ids) return -1;
                    p->ids = ids;
                    p->cap = cap;
                }
                p->ids[p->n++] = id;
                break;
            }
        }
    }
    if (p->n > 1) qsort(p->ids, p->n, sizeof *p->ids, cmp_id);
    return 0;
}

/* Appends fragment f to dst, cut at every occurrence of token id's text. */
static int split_fragment(const pv_vocab_t *v, const char *text, pv__frag_t f, int32_t id, pv__frags_t *dst) {
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
static int partition(const pv_vocab_t *v, const char *text, size_t len, int parse_special, pv__frags_t *out) {
    pv__frags_t cur = {0}, next = {0};
    present_t present = {0};
    if (find_present(v, text, len, parse_special, &present) || frags_push(&cur, 0, len, -1)) goto fail;
    for (int32_t k = 0; k < v->n_specials && present.n > 0; k++) {
        int32_t id = v->specials[k].id;
        if (!is_present(&present, id)) continue;
        next.n = 0;
        for (size_t i = 0; i < cur.n; i++) {
            int rc = cur.a[i].id >= 0 ? frags_push(&next, cur.a[i].off, cur.a[i].len, cur.a[i].id)
                                      : split_fragment(v, text, cur.a[i], id, &next);
            if (rc) goto fail;
        }
        pv__frags_t tmp = cur;
        cur = next;
        next = tmp;
    }
    free(present.ids);
    free(next.a);
    *out = cur;
    return 0;
fail:
    free(present.ids);
    free(cur.a);
    free(next.a);
    return -1;
}

/* ------------------------------------------------------------------ pv_tokenize */

int pv_tokenize(const pv_vocab_t *v, const char *text, size_t len, unsigned flags, int32_t *ids, int n_max) {
    if ((!text && len) || len > PV__TOK_MAX_BYTES) return PV__TOK_FAILED;
    pv__ids_t out = {.ids = ids, .n_max = ids && n_max > 0 ? (size_t)n_max : 0};
    if ((flags & PV_TOK_ADD_BOS) && v->bos >= 0) pv__ids_push(&out, v->bos);
    if (len > 0) {
        pv__frags_t frags;
        if (partition(v, text, len, (flags & PV_TOK_SPECIAL) != 0, &frags)) return PV__TOK_FAILED;
        int rc = v->kind == PV_VOCAB_BPE ? pv__bpe_encode(v, text, &frags, &out) : pv__spm_encode(v, text, &frags, &out);
        free(frags.a);
        if (rc) return PV__TOK_FAILED;
    }
    if (out.n > INT_MAX) return PV__TOK_FAILED; /* cannot happen below PV__TOK_MAX_BYTES */
    return out.n <= out.n_max ? (int)out.n : -(int)out.n;
}
