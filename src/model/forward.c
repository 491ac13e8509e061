/* forward.c - the llama forward pass for one token of one sequence, top to bottom. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kernels/kern.h"
#include "kernels/ops.h"
#include "model/model.h"

struct pv_ctx {
    const pv_model_t *m; /* borrowed; outlives the context */
    uint32_t n_ctx;      /* positions the KV cache holds */
    uint32_t kv_dim;     /* n_head_kv * head_dim */
    float *k_cache;      /* (n_layer, n_ctx, kv_dim) */
    float *v_cache;      /* (n_layer, n_ctx, kv_dim) */
    float *x;            /* (n_embd) residual stream */
    float *xb;           /* (n_embd) normed input of a sub-block */
    float *xb2;          /* (n_embd) sub-block output */
    float *q;            /* (n_head * head_dim) queries; also the attention output */
    float *att;          /* (n_head, n_ctx) attention scores */
    float *hb;           /* (n_ff) gate activations */
    float *hb2;          /* (n_ff) up activations */
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
    c->k_cache = calloc(kv_elems, sizeof(float));
    c->v_cache = calloc(kv_elems, sizeof(float));
    c->x = calloc(hp->n_embd, sizeof(float));
    c->xb = calloc(hp->n_embd > q_dim ? hp->n_embd : q_dim, sizeof(float));
    c->xb2 = calloc(hp->n_embd, sizeof(float));
    c->q = calloc(q_dim, sizeof(float));
    c->att = calloc((size_t)hp->n_head * n_ctx, sizeof(float));
    c->hb = calloc(hp->n_ff, sizeof(float));
    c->hb2 = calloc(hp->n_ff, sizeof(float));
    if (!c->k_cache || !c->v_cache || !c->x || !c->xb || !c->xb2 || !c->q || !c->att || !c->hb || !c->hb2) {
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
    free(c->x);
    free(c->xb);
    free(c->xb2);
    free(c->q);
    free(c->att);
    free(c->hb);
    free(c->hb2);
    free(c);
}

uint32_t pv_ctx_size(const pv_ctx_t *c) { return c->n_ctx; }

size_t pv_ctx_kv_bytes(const pv_ctx_t *c) {
    return 2 * (size_t)c->m->hp.n_layer * c->n_ctx * c->kv_dim * sizeof(float);
}

static void matvec(const pv_weight_t *w, const float *x, float *y) {
    pv_matvec(w->t->type, w->t->data, w->n_rows, w->n_cols, x, y);
}

/* Grouped-query attention of the current token (queries in c->q) over
 * positions 0..pos of layer il's cache; writes (n_head * head_dim) to out. */
static void attention(pv_ctx_t *c, uint32_t il, uint32_t pos, float *out) {
    const pv_hparams_t *hp = &c->m->hp;
    uint32_t hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    const float *kl = c->k_cache + (size_t)il * c->n_ctx * c->kv_dim;
    const float *vl = c->v_cache + (size_t)il * c->n_ctx * c->kv_dim;
    float scale = 1.0f / sqrtf((float)hd);
    for (uint32_t h = 0; h < hp->n_head; h++) {
        const float *q = c->q + (size_t)h * hd;
        float *att = c->att + (size_t)h * c->n_ctx;
        size_t kv_off = (size_t)(h / group) * hd;
        for (uint32_t t = 0; t <= pos; t++) {
            const float *k = kl + (size_t)t * c->kv_dim + kv_off;
            float s = 0.0f;
            for (uint32_t i = 0; i < hd; i++) s += q[i] * k[i];
            att[t] = s * scale;
        }
        pv_softmax(att, (int)pos + 1);
        float *o = out + (size_t)h * hd;
        memset(o, 0, hd * sizeof *o);
        for (uint32_t t = 0; t <= pos; t++) {
            const float *v = vl + (size_t)t * c->kv_dim + kv_off;
            for (uint32_t i = 0; i < hd; i++) o[i] += att[t] * v[i];
        }
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
        float *k = c->k_cache + ((size_t)il * c->n_ctx + pos) * c->kv_dim;
        float *v = c->v_cache + ((size_t)il * c->n_ctx + pos) * c->kv_dim;

        // attention: q, k, v projections of the normed stream   (n_head*hd), (n_head_kv*hd) x2
        pv_rmsnorm(c->xb, c->x, L->attn_norm, d, hp->norm_eps);
        matvec(&L->wq, c->xb, c->q);
        matvec(&L->wk, c->xb, k);
        matvec(&L->wv, c->xb, v);

        // RoPE on each head of q and k, rotating adjacent pairs
        for (uint32_t h = 0; h < hp->n_head; h++) pv_rope_pairs(c->q + h * hd, (int)hp->n_rot, (int)pos, hp->rope_base);
        for (uint32_t h = 0; h < hp->n_head_kv; h++) pv_rope_pairs(k + h * hd, (int)hp->n_rot, (int)pos, hp->rope_base);

        // softmax(q k^T / sqrt(hd)) v over the cache, then the output projection
        attention(c, il, pos, c->xb);
        matvec(&L->wo, c->xb, c->xb2);
        pv_add(c->x, c->xb2, d);

        // feed-forward: w_down(silu(w_gate x) * w_up x)           (n_ff) -> (n_embd)
        pv_rmsnorm(c->xb, c->x, L->ffn_norm, d, hp->norm_eps);
        matvec(&L->w_gate, c->xb, c->hb);
        matvec(&L->w_up, c->xb, c->hb2);
        pv_swiglu(c->hb, c->hb2, (int)hp->n_ff);
        matvec(&L->w_down, c->hb, c->xb2);
        pv_add(c->x, c->xb2, d);
    }

    // final norm and output projection to the vocabulary        (n_vocab)
    if (logits) {
        pv_rmsnorm(c->x, c->x, m->output_norm, d, hp->norm_eps);
        matvec(&m->output, c->x, logits);
    }
    return 0;
}
