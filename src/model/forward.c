/* forward.c - the llama forward pass for one token of one sequence, top to bottom. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/fp16.h"
#include "kernels/kern.h"
#include "kernels/ops.h"
#include "model/model.h"

struct pv_ctx {
    const pv_model_t *m; /* borrowed; outlives the context */
    uint32_t n_ctx;      /* positions the KV cache holds */
    uint32_t kv_dim;     /* n_head_kv * head_dim */
    uint16_t *k_cache;   /* (n_layer, n_ctx, kv_dim) keys as IEEE half */
    uint16_t *v_cache;   /* (n_layer, n_ctx, kv_dim) values as IEEE half */
    float *k;            /* (kv_dim) this token's key before it is stored */
    float *v;            /* (kv_dim) this token's value before it is stored */
    float *x;            /* (n_embd) residual stream */
    float *xb;           /* (n_embd) normed input of a sub-block */
    float *xb2;          /* (n_embd) sub-block output */
    float *q;            /* (n_head * head_dim) queries; also the attention output */
    uint16_t *q16;       /* (head_dim) one head's query as halves */
    uint16_t *acc16;     /* (head_dim) one head's weighted sum of values, in halves */
    float *hb;           /* (n_ff) gate activations */
    float *hb2;          /* (n_ff) up activations */
    void *work;          /* activations converted for a matmul; f32 is the widest format */
    pv_pool_t *pool;     /* borrowed compute threads; NULL: the caller's thread alone */
};

int pv_ctx_new(const pv_model_t *m, uint32_t n_ctx, pv_ctx_t **out, char *err, size_t errlen) {
    *out = NULL;
    const pv_hparams_t *hp = &m->hp;
    if (n_ctx == 0) n_ctx = hp->n_ctx_train;
    if (n_ctx > 1u << 20) return pv_errorf(err, errlen, PV_ERANGE, "context of %u tokens is too large", n_ctx);
    pv_ctx_t *c = calloc(1, sizeof *c);
    if (!c) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    c->m = m;
    c->n_ctx = n_ctx;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    size_t kv_elems = (size_t)hp->n_layer * n_ctx * c->kv_dim;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    c->k_cache = calloc(kv_elems, sizeof *c->k_cache);
    c->v_cache = calloc(kv_elems, sizeof *c->v_cache);
    c->k = calloc(c->kv_dim, sizeof(float));
    c->v = calloc(c->kv_dim, sizeof(float));
    c->x = calloc(hp->n_embd, sizeof(float));
    c->xb = calloc(hp->n_embd > q_dim ? hp->n_embd : q_dim, sizeof(float));
    c->xb2 = calloc(hp->n_embd, sizeof(float));
    c->q = calloc(q_dim, sizeof(float));
    c->q16 = calloc(hp->head_dim, sizeof *c->q16);
    c->acc16 = calloc(hp->head_dim, sizeof *c->acc16);
    c->hb = calloc(hp->n_ff, sizeof(float));
    c->hb2 = calloc(hp->n_ff, sizeof(float));
    size_t max_cols = hp->n_embd > hp->n_ff ? hp->n_embd : hp->n_ff;
    c->work = calloc(max_cols > q_dim ? max_cols : q_dim, sizeof(float));
    if (!c->k_cache || !c->v_cache || !c->k || !c->v || !c->x || !c->xb || !c->xb2 || !c->q || !c->q16 || !c->acc16 || !c->hb || !c->hb2 || !c->work) {
        pv_ctx_free(c);
        return pv_errorf(err, errlen, PV_ENOMEM, "out of memory for a context of %u tokens", n_ctx);
    }
    *out = c;
    return 0;
}

void pv_ctx_free(pv_ctx_t *c) {
    if (!c) return;
    free(c->k_cache);
    free(c->v_cache);
    free(c->k);
    free(c->v);
    free(c->x);
    free(c->xb);
    free(c->xb2);
    free(c->q);
    free(c->q16);
    free(c->acc16);
    free(c->hb);
    free(c->hb2);
    free(c->work);
    free(c);
}

uint32_t pv_ctx_size(const pv_ctx_t *c) { return c->n_ctx; }

void pv_ctx_set_pool(pv_ctx_t *c, pv_pool_t *pool) { c->pool = pool; }

size_t pv_ctx_kv_bytes(const pv_ctx_t *c) {
    return 2 * (size_t)c->m->hp.n_layer * c->n_ctx * c->kv_dim * sizeof *c->k_cache;
}

static void matvec(pv_ctx_t *c, const pv_weight_t *w, const float *x, float *y) {
    pv_matvec(w->t->type, w->t->data, w->n_rows, w->n_cols, x, y, c->work, c->pool);
}

/* Grouped-query attention of the current token (queries in c->q) over
 * positions 0..pos of layer il's cache; writes (n_head * head_dim) to out.
 *
 * The numerics follow llama.cpp's CPU flash attention over its default F16
 * cache, so that results agree closely: queries are rounded to half, scores
 * go through an online softmax (running max M and sum S), and the weighted
 * sum of values is accumulated in half precision. */
static void attention(pv_ctx_t *c, uint32_t il, uint32_t pos, float *out) {
    const pv_hparams_t *hp = &c->m->hp;
    uint32_t hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    const uint16_t *kl = c->k_cache + (size_t)il * c->n_ctx * c->kv_dim;
    const uint16_t *vl = c->v_cache + (size_t)il * c->n_ctx * c->kv_dim;
    uint16_t *qh = c->q16, *acc = c->acc16;
    float scale = 1.0f / sqrtf((float)hd);
    for (uint32_t h = 0; h < hp->n_head; h++) {
        size_t kv_off = (size_t)(h / group) * hd;
        for (uint32_t i = 0; i < hd; i++) {
            qh[i] = pv_f32_to_f16(c->q[(size_t)h * hd + i]);
            acc[i] = 0;
        }
        float M = -INFINITY, S = 0.0f;
        for (uint32_t t = 0; t <= pos; t++) {
            const uint16_t *k = kl + (size_t)t * c->kv_dim + kv_off;
            const uint16_t *v = vl + (size_t)t * c->kv_dim + kv_off;
            double dot = 0.0;
            for (uint32_t i = 0; i < hd; i++) dot += pv_f16_to_f32(qh[i]) * pv_f16_to_f32(k[i]);
            float s = (float)dot * scale, ms = 1.0f, vs = 1.0f;
            if (s > M) { /* new maximum: rescale what has been summed so far */
                ms = expf(M - s);
                M = s;
                for (uint32_t i = 0; i < hd; i++) acc[i] = pv_f32_to_f16(pv_f16_to_f32(acc[i]) * ms);
            } else {
                vs = expf(s - M);
            }
            for (uint32_t i = 0; i < hd; i++) acc[i] = pv_f32_to_f16(pv_f16_to_f32(acc[i]) + pv_f16_to_f32(v[i]) * vs);
            S = S * ms + vs;
        }
        float *o = out + (size_t)h * hd;
        for (uint32_t i = 0; i < hd; i++) o[i] = pv_f16_to_f32(acc[i]) / S;
    }
}

/* Rounds this token's key and value to halves into the cache at pos. */
static void kv_store(pv_ctx_t *c, uint32_t il, uint32_t pos) {
    size_t off = ((size_t)il * c->n_ctx + pos) * c->kv_dim;
    for (uint32_t i = 0; i < c->kv_dim; i++) {
        c->k_cache[off + i] = pv_f32_to_f16(c->k[i]);
        c->v_cache[off + i] = pv_f32_to_f16(c->v[i]);
    }
}

int pv_forward(pv_ctx_t *c, int32_t token, uint32_t pos, float *logits) {
    const pv_model_t *m = c->m;
    const pv_hparams_t *hp = &m->hp;
    if (token < 0 || (uint32_t)token >= hp->n_vocab || pos >= c->n_ctx) return PV_ERANGE;
    int d = (int)hp->n_embd, hd = (int)hp->head_dim;

    // token embedding: x = token_embd[token]                      (n_embd)
    pv_get_row(m->tok_embd.t->type, m->tok_embd.t->data, token, d, c->x);

    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const pv_layer_t *L = &m->layers[il];

        // attention: q, k, v projections of the normed stream   (n_head*hd), (n_head_kv*hd) x2
        pv_rmsnorm(c->xb, c->x, L->attn_norm, d, hp->norm_eps);
        matvec(c, &L->wq, c->xb, c->q);
        matvec(c, &L->wk, c->xb, c->k);
        matvec(c, &L->wv, c->xb, c->v);

        // RoPE on each head of q and k, rotating adjacent pairs
        for (uint32_t h = 0; h < hp->n_head; h++) pv_rope_pairs(c->q + h * hd, (int)hp->n_rot, (int)pos, hp->rope_base);
        for (uint32_t h = 0; h < hp->n_head_kv; h++) pv_rope_pairs(c->k + h * hd, (int)hp->n_rot, (int)pos, hp->rope_base);
        kv_store(c, il, pos);

        // softmax(q k^T / sqrt(hd)) v over the cache, then the output projection
        attention(c, il, pos, c->xb);
        matvec(c, &L->wo, c->xb, c->xb2);
        pv_add(c->x, c->xb2, d);

        // feed-forward: w_down(silu(w_gate x) * w_up x)           (n_ff) -> (n_embd)
        pv_rmsnorm(c->xb, c->x, L->ffn_norm, d, hp->norm_eps);
        matvec(c, &L->w_gate, c->xb, c->hb);
        matvec(c, &L->w_up, c->xb, c->hb2);
        pv_swiglu(c->hb, c->hb2, (int)hp->n_ff);
        matvec(c, &L->w_down, c->hb, c->xb2);
        pv_add(c->x, c->xb2, d);
    }

    // final norm and output projection to the vocabulary        (n_vocab)
    if (logits) {
        pv_rmsnorm(c->x, c->x, m->output_norm, d, hp->norm_eps);
        matvec(c, &m->output, c->x, logits);
    }
    return 0;
}
