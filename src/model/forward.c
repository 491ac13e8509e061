/* forward.c - the forward pass of every arch.h architecture over a batch of (sequence, position, token)
 * entries, top to bottom. Matmuls take every token of the batch at once (each
 * weight tile is read once per batch); attention runs per (token, head) on
 * the thread pool over each sequence's blocks of the KV arena. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kernels/kern.h"
#include "kernels/ops.h"
#include "model/model.h"

#define PV_ATTN_GROUP 64 /* consecutive tokens of one sequence that share each KV block read, at most */
_Static_assert(PV_ATTN_BLOCK == PV_KV_BLOCK, "attention folds whole KV blocks");

/* One thread's attention rows: the query heads of one KV head for a group of
 * tokens, R = PV_ATTN_GROUP * (n_head / n_head_kv) rows at most. */
typedef struct {
    float *q;              /* (R, head_dim) queries (rounded to half in the half-precision order) */
    float *acc;            /* (R, head_dim) weighted sums of values */
    float *work;           /* pv_attn_scratch_size(head_dim) floats */
    pv_attn_state_t *st;   /* [R] online-softmax states */
    int *n_pos;            /* [R] positions of the current block each row sees */
    uint16_t *half;        /* [head_dim] a query head rounded to half */
} attn_scratch_t;

struct pv_ctx {
    const pv_model_t *m;   /* borrowed; outlives the context */
    pv_kv_t kv;            /* the KV arena (the context's memory budget) */
    pv_seq_t seq;          /* the default sequence used by pv_forward */
    uint32_t n_ctx;        /* positions the default sequence may reach */
    int max_batch;         /* entries one pv_forward_batch call takes */
    uint32_t kv_dim;       /* n_head_kv * head_dim */
    uint32_t q_dim;        /* n_head * head_dim */
    /* per-token activations, (max_batch, width) row-major */
    float *x;              /* (B, n_embd) residual stream */
    float *xb;             /* (B, max(n_embd, q_dim)) normed input / attention output */
    float *xb2;            /* (B, n_embd) sub-block output */
    float *q;              /* (B, q_dim) queries */
    float *k;              /* (B, kv_dim) keys before they are stored */
    float *v;              /* (B, kv_dim) values before they are stored */
    float *hb;             /* (B, n_ff) gate activations */
    float *hb2;            /* (B, n_ff) up activations */
    float *rope_cs;        /* (B, n_rot) RoPE cos/sin of each token's position */
    const float *rope_ff;  /* (n_rot/2) frequency divisors for this context, or NULL; borrowed from the model */
    float rope_mscale;     /* scale of the rotated values (long-rope attention factor) */
    const float **in;      /* [B] row pointers handed to pv_matmul */
    float **out;           /* [PV_MATMUL_MAX_PARTS * B] row pointers handed to pv_matmul(_parts) */
    attn_scratch_t *att;   /* [n_att] one per pool thread */
    int n_att;
    int *groups;           /* [max_batch + 1] first entry of each attention group, then n (end marker) */
    unsigned char *tiled;  /* [max_batch] 1 where a group takes the tiled attention order */
    int float_attn;        /* every group takes the tiled order (pv_ctx_set_float_attn) */
    void *work;            /* activations converted for a matmul (B rows) */
    pv_pool_t *pool;       /* borrowed compute threads; NULL: the caller's thread alone */
};


static size_t attn_max_rows(const pv_hparams_t *hp) { return PV_ATTN_GROUP * (size_t)(hp->n_head / hp->n_head_kv); }

static void free_attn(pv_ctx_t *c) {
    for (int i = 0; i < c->n_att; i++) {
        free(c->att[i].q);
        free(c->att[i].st);
        free(c->att[i].n_pos);
        free(c->att[i].half);
    }
    free(c->att);
    c->att = NULL;
    c->n_att = 0;
}

/* Attention scratch for n_threads threads (each its own rows and block buffers). */
static int alloc_attn(pv_ctx_t *c, int n_threads) {
    free_attn(c);
    const pv_hparams_t *hp = &c->m->hp;
    size_t R = attn_max_rows(hp), hd = hp->head_dim;
    if (!(c->att = calloc((size_t)n_threads, sizeof *c->att))) return PV_ENOMEM;
    c->n_att = n_threads;
    for (int i = 0; i < n_threads; i++) {
        attn_scratch_t *a = &c->att[i];
        a->q = malloc((2 * R * hd + pv_attn_scratch_size((int)hd)) * sizeof(float));
        a->st = malloc(R * sizeof *a->st);
        a->n_pos = malloc(R * sizeof *a->n_pos);
        a->half = malloc(hd * sizeof *a->half);
        if (!a->q || !a->st || !a->n_pos || !a->half) return PV_ENOMEM;
        a->acc = a->q + R * hd;
        a->work = a->acc + R * hd;
    }
    return 0;
}

static size_t weight_work(const pv_weight_t *w, int n_tok, size_t most) {
    size_t n = pv_matmul_work_size(w->t->type, w->n_cols, n_tok);
    return n > most ? n : most;
}

/* The activations every matmul of the model converts for n_tok tokens, at most. */
static size_t matmul_work_size(const pv_model_t *m, int n_tok) {
    size_t most = weight_work(&m->output, n_tok, 0);
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        const pv_layer_t *L = &m->layers[il];
        const pv_weight_t *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) most = weight_work(ws[i], n_tok, most);
    }
    return most;
}

static int alloc_scratch(pv_ctx_t *c) {
    const pv_hparams_t *hp = &c->m->hp;
    size_t B = (size_t)c->max_batch, d = hp->n_embd;
    c->x = malloc(B * d * sizeof(float));
    c->xb = malloc(B * (d > c->q_dim ? d : c->q_dim) * sizeof(float));
    c->xb2 = malloc(B * d * sizeof(float));
    c->q = malloc(B * c->q_dim * sizeof(float));
    c->k = malloc(B * c->kv_dim * sizeof(float));
    c->v = malloc(B * c->kv_dim * sizeof(float));
    c->hb = malloc(B * hp->n_ff * sizeof(float));
    c->hb2 = malloc(B * hp->n_ff * sizeof(float));
    c->rope_cs = malloc(B * hp->n_rot * sizeof(float) + 1);
    c->in = malloc(B * sizeof *c->in);
    c->out = malloc(PV_MATMUL_MAX_PARTS * B * sizeof *c->out);
    c->groups = malloc((B + 1) * sizeof *c->groups);
    c->tiled = malloc(B);
    c->work = malloc(matmul_work_size(c->m, c->max_batch));
    return c->x && c->xb && c->xb2 && c->q && c->k && c->v && c->hb && c->hb2 && c->rope_cs && c->in && c->out && c->groups &&
                   c->tiled && c->work
               ? 0
               : PV_ENOMEM;
}

/* RoPE frequency divisors: Llama 3's rope_freqs, or Phi-3's long factors when
 * the context exceeds the original one, else its short factors. The choice is
 * the context's, as llama.cpp makes it; the file's attention factor scales
 * the rotation either way (so the reference outputs show). */
static void choose_rope(pv_ctx_t *c) {
    const pv_model_t *m = c->m;
    c->rope_ff = m->rope_freqs;
    c->rope_mscale = m->hp.rope_attn_factor;
    if (m->rope_long && m->rope_short) {
        int use_long = m->hp.n_ctx_orig > 0 && c->n_ctx > m->hp.n_ctx_orig;
        c->rope_ff = use_long ? m->rope_long : m->rope_short;
    }
}

int pv_ctx_long_rope(const pv_ctx_t *c) { return c->rope_ff && c->rope_ff == c->m->rope_long; }

int pv_ctx_new_arena(const pv_model_t *m, uint32_t n_ctx, uint32_t kv_tokens, int max_batch, pv_ctx_t **out,
                     char *err, size_t errlen) {
    *out = NULL;
    const pv_hparams_t *hp = &m->hp;
    if (n_ctx == 0) n_ctx = hp->n_ctx_train;
    if (kv_tokens == 0) kv_tokens = n_ctx;
    if (max_batch <= 0) max_batch = PV_DEFAULT_BATCH;
    if (n_ctx > 1u << 20 || kv_tokens > 1u << 24)
        return pv_errorf(err, errlen, PV_ERANGE, "context of %u tokens is too large", n_ctx);
    pv_ctx_t *c = calloc(1, sizeof *c);
    if (!c) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    c->m = m;
    c->n_ctx = n_ctx;
    c->max_batch = max_batch;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    c->q_dim = hp->n_head * hp->head_dim;
    uint32_t n_blocks = (kv_tokens + PV_KV_BLOCK - 1) / PV_KV_BLOCK;
    int rc = pv_kv_init(&c->kv, hp->n_layer, c->kv_dim, n_blocks, err, errlen);
    if (rc) {
        free(c);
        return rc;
    }
    choose_rope(c);
    if (pv_seq_init(&c->seq, n_ctx) || alloc_scratch(c) || alloc_attn(c, 1)) {
        pv_ctx_free(c);
        return pv_errorf(err, errlen, PV_ENOMEM, "out of memory for a context of %u tokens", n_ctx);
    }
    *out = c;
    return 0;
}

int pv_ctx_new(const pv_model_t *m, uint32_t n_ctx, pv_ctx_t **out, char *err, size_t errlen) {
    return pv_ctx_new_arena(m, n_ctx, 0, 0, out, err, errlen);
}

void pv_ctx_free(pv_ctx_t *c) {
    if (!c) return;
    pv_kv_release(&c->kv, &c->seq);
    pv_seq_close(&c->seq);
    pv_kv_close(&c->kv);
    free(c->x);
    free(c->xb);
    free(c->xb2);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->hb);
    free(c->hb2);
    free(c->rope_cs);
    free(c->in);
    free(c->out);
    free_attn(c);
    free(c->groups);
    free(c->tiled);
    free(c->work);
    free(c);
}

uint32_t pv_ctx_size(const pv_ctx_t *c) { return c->n_ctx; }
int pv_ctx_max_batch(const pv_ctx_t *c) { return c->max_batch; }
pv_kv_t *pv_ctx_kv(pv_ctx_t *c) { return &c->kv; }
void pv_ctx_set_float_attn(pv_ctx_t *c, int on) { c->float_attn = on != 0; }

int pv_ctx_set_pool(pv_ctx_t *c, pv_pool_t *pool) {
    if (pv_pool_size(pool) > PV_MAX_THREADS) return PV_ERANGE;
    if (pv_pool_size(pool) != c->n_att) {
        int rc = alloc_attn(c, pv_pool_size(pool));
        if (rc) return rc == PV_ENOMEM || alloc_attn(c, 1) ? PV_ENOMEM : rc;
    }
    c->pool = pool;
    return 0;
}
size_t pv_ctx_kv_bytes(const pv_ctx_t *c) { return pv_kv_bytes(&c->kv); }

/* ys[i][b] = ws[i] xs[b] for the n tokens and the n_w weights that read
 * the same input (rows of x of width x_width, of ys[i] of width y_width[i]). */
static void matmul_set(pv_ctx_t *c, int n_w, const pv_weight_t *const *ws, const float *x, size_t x_width,
                       float *const *ys, const size_t *y_width, int n) {
    pv_matmul_part_t parts[PV_MATMUL_MAX_PARTS];
    for (int b = 0; b < n; b++) c->in[b] = x + (size_t)b * x_width;
    for (int i = 0; i < n_w; i++) {
        float **out = c->out + (size_t)i * c->max_batch;
        for (int b = 0; b < n; b++) out[b] = ys[i] + (size_t)b * y_width[i];
        parts[i] = (pv_matmul_part_t){ws[i]->t->type, ws[i]->layout, ws[i]->data, ws[i]->n_rows, out};
    }
    pv_matmul_parts(parts, n_w, ws[0]->n_cols, c->in, n, c->work, c->pool);
}

/* ys[b] = w xs[b] for the n tokens, rows of xs/ys with the given widths. */
static void matmul(pv_ctx_t *c, const pv_weight_t *w, const float *x, size_t x_width, float *y, size_t y_width, int n) {
    matmul_set(c, 1, &w, x, x_width, &y, &y_width, n);
}

typedef struct {
    pv_ctx_t *c;
    const pv_batch_entry_t *e; /* the batch */
    int n_groups;              /* attention groups (c->groups) */
    uint32_t il;               /* layer */
    float scale;               /* 1 / sqrt(head_dim) */
} attn_task_t;

/* Splits the batch into groups of consecutive entries of one sequence (a
 * prompt chunk), whose queries then read and widen each KV block or tile once
 * for the whole group: each run of one sequence's entries in as few groups
 * (of at most PV_ATTN_GROUP) as keep every pool thread busy, given that each
 * KV head of a group is a task of its own. A run of PV_ATTN_TILED_ROWS or
 * more entries (a long prompt chunk) takes the tiled order, as llama.cpp's
 * micro-batches of that many rows do; fewer (decoding, short chunks) the
 * half-precision order. Returns the number of groups. */
static int attention_groups(pv_ctx_t *c, const pv_batch_entry_t *e, int n) {
    int kv_heads = (int)c->m->hp.n_head_kv, parts = (c->n_att + kv_heads - 1) / kv_heads, g = 0;
    for (int b0 = 0, b1; b0 < n; b0 = b1) {
        for (b1 = b0 + 1; b1 < n && e[b1].seq == e[b0].seq; b1++) {}
        int len = b1 - b0, size = (len + parts - 1) / parts;
        if (size > PV_ATTN_GROUP) size = PV_ATTN_GROUP;
        for (int b = b0; b < b1; b += size) {
            c->tiled[g] = c->float_attn || len >= PV_ATTN_TILED_ROWS;
            c->groups[g++] = b;
        }
    }
    c->groups[g] = n;
    return g;
}

/* How many of positions p.. (at most len) row j of a group sees. */
static int visible(const attn_task_t *t, int b0, int j, uint32_t p, int len) {
    uint32_t pos = t->e[b0 + j].pos;
    return pos < p ? 0 : pos + 1 - p < (uint32_t)len ? (int)(pos + 1 - p) : len;
}

static void set_visible(const attn_task_t *t, int b0, int n, uint32_t p, int len, attn_scratch_t *a) {
    size_t gq = t->c->m->hp.n_head / t->c->m->hp.n_head_kv;
    for (int j = 0; j < n; j++) {
        int np = visible(t, b0, j, p, len);
        for (size_t h = 0; h < gq; h++) a->n_pos[(size_t)j * gq + h] = np;
    }
}

/* The half-precision order, block by block of the KV arena (positions within a block are contiguous). */
static void fold_blocks(const attn_task_t *t, int b0, int n, uint32_t hk, uint32_t max_pos, attn_scratch_t *a) {
    const pv_ctx_t *c = t->c;
    size_t hd = c->m->hp.head_dim;
    int R = n * (int)(c->m->hp.n_head / c->m->hp.n_head_kv);
    const pv_seq_t *seq = t->e[b0].seq;
    for (uint32_t p = 0; p <= max_pos; p += PV_KV_BLOCK) {
        const uint16_t *k = pv_kv_k(&c->kv, seq, t->il, p) + hk * hd, *v = pv_kv_v(&c->kv, seq, t->il, p) + hk * hd;
        set_visible(t, b0, n, p, PV_KV_BLOCK, a);
        pv_attn_block(a->q, R, k, v, c->kv_dim, a->n_pos, (int)hd, t->scale, a->st, a->acc, a->work);
    }
}

/* Asks for every cache line of p[0..bytes-1] (p need not start one). */
static void prefetch_lines(const void *p, size_t bytes) {
    uintptr_t first = (uintptr_t)p & ~(uintptr_t)63, last = ((uintptr_t)p + bytes - 1) & ~(uintptr_t)63;
    for (uintptr_t l = first; l <= last; l += 64) __builtin_prefetch((const void *)l);
}

/* KV head hk's key and value at position at, asked for ahead of their use:
 * a sequence's blocks lie scattered over the arena, and while a long prompt's
 * chunks widen them tile by tile they come from memory a line or two per head
 * and position at a time, too few for the hardware prefetchers to follow
 * (widening was 5% of a 21k-token prompt, 2% with these and their cost). The
 * half-precision order, whose kernel reads a block while it folds it, gained
 * nothing from asking for the next block. */
#define KV_AHEAD 16 /* positions ahead of the one being widened */
static void kv_prefetch(const pv_ctx_t *c, const pv_seq_t *seq, uint32_t il, uint32_t hk, uint32_t at) {
    size_t hd = c->m->hp.head_dim;
    prefetch_lines(pv_kv_k(&c->kv, seq, il, at) + hk * hd, hd * sizeof(uint16_t));
    prefetch_lines(pv_kv_v(&c->kv, seq, il, at) + hk * hd, hd * sizeof(uint16_t));
}

/* The tiled order, PV_ATTN_TILE positions at a time, their keys and values
 * converted to floats from the blocks that hold them. */
static void fold_tiles(const attn_task_t *t, int b0, int n, uint32_t hk, uint32_t max_pos, attn_scratch_t *a) {
    const pv_ctx_t *c = t->c;
    size_t hd = c->m->hp.head_dim;
    int R = n * (int)(c->m->hp.n_head / c->m->hp.n_head_kv);
    const pv_seq_t *seq = t->e[b0].seq;
    pv_to_float_fn widen = pv_kern_traits(PV_TYPE_F16)->to_float;
    float *kf = a->work + PV_ATTN_TILE_OWN(hd), *vf = kf + PV_ATTN_TILE * hd;
    for (uint32_t p = 0; p <= max_pos; p += PV_ATTN_TILE) {
        int live = max_pos + 1 - p < PV_ATTN_TILE ? (int)(max_pos + 1 - p) : PV_ATTN_TILE;
        for (int i = 0; i < live; i++) {
            uint32_t at = p + (uint32_t)i;
            if (at + KV_AHEAD <= max_pos) kv_prefetch(c, seq, t->il, hk, at + KV_AHEAD);
            widen(pv_kv_k(&c->kv, seq, t->il, at) + hk * hd, kf + (size_t)i * hd, (int64_t)hd);
            widen(pv_kv_v(&c->kv, seq, t->il, at) + hk * hd, vf + (size_t)i * hd, (int64_t)hd);
        }
        memset(kf + (size_t)live * hd, 0, (size_t)((live + 7) / 8 * 8 - live) * hd * sizeof *kf);
        set_visible(t, b0, n, p, PV_ATTN_TILE, a);
        pv_attn_tile(a->q, R, kf, vf, a->n_pos, (int)hd, t->scale, a->st, a->acc, a->work);
    }
}

/* Attention of the query heads of KV head hk for a group of tokens of one
 * sequence over its positions 0..pos (each token its own pos), block by block
 * of the KV arena: each block is read once for all of the group's rows. In
 * the half-precision order the queries are rounded to half first, as
 * llama.cpp's CPU flash attention does over its default F16 cache. */
static void attend_group(const attn_task_t *t, int g, uint32_t hk, attn_scratch_t *a) {
    const pv_ctx_t *c = t->c;
    const pv_hparams_t *hp = &c->m->hp;
    size_t hd = hp->head_dim, gq = hp->n_head / hp->n_head_kv, width = gq * hd;
    int b0 = c->groups[g], n = c->groups[g + 1] - b0, R = n * (int)gq, tiled = c->tiled[g];
    uint32_t max_pos = 0;
    const pv_kern_traits_t *f16 = pv_kern_traits(PV_TYPE_F16);
    for (int j = 0; j < n; j++) {
        const float *q = c->q + (size_t)(b0 + j) * c->q_dim + hk * width;
        float *qr = a->q + (size_t)j * width;
        if (tiled) memcpy(qr, q, width * sizeof *qr);
        else
            for (size_t h = 0; h < gq; h++) { /* through a half and back, a head at a time */
                f16->from_float(q + h * hd, a->half, (int64_t)hd);
                f16->to_float(a->half, qr + h * hd, (int64_t)hd);
            }
        if (t->e[b0 + j].pos > max_pos) max_pos = t->e[b0 + j].pos;
    }
    memset(a->acc, 0, (size_t)R * hd * sizeof *a->acc);
    for (int r = 0; r < R; r++) a->st[r] = (pv_attn_state_t){-INFINITY, 0.0f};
    if (tiled) fold_tiles(t, b0, n, hk, max_pos, a);
    else fold_blocks(t, b0, n, hk, max_pos, a);
    for (int j = 0; j < n; j++) {
        float *o = c->xb + (size_t)(b0 + j) * c->q_dim + hk * width;
        for (size_t h = 0; h < gq; h++) {
            size_t r = (size_t)j * gq + h;
            float inv = 1.0f / a->st[r].S; /* times the inverse, as llama.cpp normalises */
            for (size_t i = 0; i < hd; i++) o[h * hd + i] = a->acc[r * hd + i] * inv;
        }
    }
}

static void attention_rows(void *arg, int ith, int nth) {
    const attn_task_t *t = arg;
    const pv_hparams_t *hp = &t->c->m->hp;
    int n_tasks = t->n_groups * (int)hp->n_head_kv;
    for (int i = ith; i < n_tasks; i += nth)
        attend_group(t, i / (int)hp->n_head_kv, (uint32_t)(i % (int)hp->n_head_kv), &t->c->att[ith]);
}

/* Rounds the batch's keys and values to halves into each sequence's blocks. */
static void kv_store(pv_ctx_t *c, const pv_batch_entry_t *e, int n, uint32_t il) {
    pv_from_float_fn to_half = pv_kern_traits(PV_TYPE_F16)->from_float;
    for (int b = 0; b < n; b++) {
        to_half(c->k + (size_t)b * c->kv_dim, pv_kv_k(&c->kv, e[b].seq, il, e[b].pos), c->kv_dim);
        to_half(c->v + (size_t)b * c->kv_dim, pv_kv_v(&c->kv, e[b].seq, il, e[b].pos), c->kv_dim);
    }
}

static int check_batch(pv_ctx_t *c, const pv_batch_entry_t *e, int n) {
    if (n < 1 || n > c->max_batch) return PV_ERANGE;
    for (int b = 0; b < n; b++) {
        if (e[b].token < 0 || (uint32_t)e[b].token >= c->m->hp.n_vocab || !e[b].seq) return PV_ERANGE;
        int rc = pv_kv_reserve(&c->kv, e[b].seq, e[b].pos + 1);
        if (!rc) rc = pv_kv_prepare_write(&c->kv, e[b].seq, e[b].pos);
        if (rc) return rc;
    }
    return 0;
}

int pv_forward_batch(pv_ctx_t *c, const pv_batch_entry_t *e, int n) {
    int rc = check_batch(c, e, n);
    if (rc) return rc;
    const pv_model_t *m = c->m;
    const pv_hparams_t *hp = &m->hp;
    size_t d = hp->n_embd, ff = hp->n_ff, hd = hp->head_dim;

    // token embeddings: x[b] = token_embd[token_b]                       (B, n_embd)
    for (int b = 0; b < n; b++) pv_get_row(m->tok_embd.t->type, m->tok_embd.t->data, e[b].token, (int64_t)d, c->x + b * d);

    int n_groups = attention_groups(c, e, n);
    float kq_scale = 1.0f / sqrtf((float)hd);
    int q_prescale = (m->arch->flags & PV_ARCH_Q_PRESCALE) != 0;

    // RoPE angles of each token's position, shared by every layer and head     (B, n_rot)
    for (int b = 0; b < n; b++)
        pv_rope_angles(c->rope_cs + b * hp->n_rot, (int)hp->n_rot, (int)e[b].pos, hp->rope_base, c->rope_ff, c->rope_mscale);

    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const pv_layer_t *L = &m->layers[il];

        // attention: q, k, v projections of the normed stream             (B, q_dim), (B, kv_dim) x2
        pv_rmsnorm_rows(c->xb, c->x, L->attn_norm, (int)d, hp->norm_eps, n);
        matmul_set(c, 3, (const pv_weight_t *[]){&L->wq, &L->wk, &L->wv}, c->xb, d, (float *[]){c->q, c->k, c->v},
                   (size_t[]){c->q_dim, c->kv_dim, c->kv_dim}, n);

        // biases (qwen2), per-head norms (qwen3), RoPE on each head of q and k, then k, v into the cache
        for (int b = 0; b < n; b++) {
            float *q = c->q + b * c->q_dim, *k = c->k + b * c->kv_dim, *cs = c->rope_cs + b * hp->n_rot;
            if (L->bq) {
                pv_add(q, L->bq, (int)c->q_dim);
                pv_add(k, L->bk, (int)c->kv_dim);
                pv_add(c->v + b * c->kv_dim, L->bv, (int)c->kv_dim);
            }
            for (uint32_t h = 0; h < hp->n_head; h++) {
                if (L->q_norm) pv_rmsnorm(q + h * hd, q + h * hd, L->q_norm, (int)hd, hp->norm_eps);
                pv_rope_apply(q + h * hd, (int)hp->n_rot, cs, hp->rope_neox);
            }
            if (q_prescale)
                for (uint32_t i = 0; i < c->q_dim; i++) q[i] *= kq_scale;
            for (uint32_t h = 0; h < hp->n_head_kv; h++) {
                if (L->k_norm) pv_rmsnorm(k + h * hd, k + h * hd, L->k_norm, (int)hd, hp->norm_eps);
                pv_rope_apply(k + h * hd, (int)hp->n_rot, cs, hp->rope_neox);
            }
        }
        kv_store(c, e, n, il);

        // softmax(q k^T / sqrt(hd)) v per (token, head), then the output projection
        attn_task_t at = {c, e, n_groups, il, q_prescale ? 1.0f : kq_scale};
        if (n * hp->n_head * (e[n - 1].pos + 1) * hd < 32768) attention_rows(&at, 0, 1);
        else pv_pool_run(c->pool, attention_rows, &at);
        matmul(c, &L->wo, c->xb, c->q_dim, c->xb2, d, n);
        for (int b = 0; b < n; b++) pv_add(c->x + b * d, c->xb2 + b * d, (int)d);

        // feed-forward: w_down(silu(w_gate x) * w_up x)                      (B, n_ff) -> (B, n_embd)
        pv_rmsnorm_rows(c->xb, c->x, L->ffn_norm, (int)d, hp->norm_eps, n);
        matmul_set(c, 2, (const pv_weight_t *[]){&L->w_gate, &L->w_up}, c->xb, d, (float *[]){c->hb, c->hb2},
                   (size_t[]){ff, ff}, n);
        for (int b = 0; b < n; b++) pv_swiglu(c->hb + b * ff, c->hb2 + b * ff, (int)ff);
        matmul(c, &L->w_down, c->hb, ff, c->xb2, d, n);
        for (int b = 0; b < n; b++) pv_add(c->x + b * d, c->xb2 + b * d, (int)d);
    }

    // final norm and output projection, only for the entries that want logits   (n_vocab)
    int n_out = 0;
    for (int b = 0; b < n; b++) {
        if (!e[b].logits) continue;
        pv_rmsnorm(c->xb + (size_t)n_out * d, c->x + b * d, m->output_norm, (int)d, hp->norm_eps);
        c->in[n_out] = c->xb + (size_t)n_out * d;
        c->out[n_out] = e[b].logits;
        n_out++;
    }
    if (n_out > 0)
        pv_matmul(m->output.t->type, m->output.layout, m->output.data, m->output.n_rows, m->output.n_cols, c->in, c->out, n_out, c->work,
                  c->pool);
    return 0;
}

int pv_forward(pv_ctx_t *c, int32_t token, uint32_t pos, float *logits) {
    if (pos >= c->n_ctx) return PV_ERANGE;
    pv_batch_entry_t e = {.seq = &c->seq, .pos = pos, .token = token, .logits = logits};
    return pv_forward_batch(c, &e, 1);
}

/* seq's positions pos0.. in batches of the context's size; a batch reaching
 * max_pos is refused (PV_ERANGE) and the rest with it. */
static int prefill(pv_ctx_t *c, pv_seq_t *seq, uint32_t max_pos, const int32_t *tokens, int n, uint32_t pos0,
                   float *logits) {
    pv_batch_entry_t *e = malloc((size_t)c->max_batch * sizeof *e);
    if (!e) return PV_ENOMEM;
    int rc = 0;
    for (int i = 0; i < n && !rc; i += c->max_batch) {
        int nb = n - i < c->max_batch ? n - i : c->max_batch;
        for (int j = 0; j < nb; j++) {
            uint32_t pos = pos0 + (uint32_t)(i + j);
            e[j] = (pv_batch_entry_t){.seq = seq, .pos = pos, .token = tokens[i + j],
                                      .logits = i + j == n - 1 ? logits : NULL};
            if (pos >= max_pos) rc = PV_ERANGE;
        }
        if (!rc) rc = pv_forward_batch(c, e, nb);
    }
    free(e);
    return rc;
}

int pv_prefill_seq(pv_ctx_t *c, pv_seq_t *seq, const int32_t *tokens, int n, uint32_t pos0, float *logits) {
    return prefill(c, seq, pv_seq_capacity(seq), tokens, n, pos0, logits);
}

/* The default sequence stops at the context's size, as pv_forward does. */
int pv_prefill(pv_ctx_t *c, const int32_t *tokens, int n, uint32_t pos0, float *logits) {
    return prefill(c, &c->seq, c->n_ctx, tokens, n, pos0, logits);
}
