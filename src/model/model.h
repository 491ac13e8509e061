/* model.h - a loaded model: hyper-parameters, tensor views into the mapped
 * GGUF, and its vocabulary; and the per-sequence context that runs it.
 *
 * Ownership: pv_model_t owns its gguf_file_t (the one read-only mapping that
 * every context shares) and its vocab; tensor pointers are views into the
 * mapping. A pv_ctx_t borrows the model (which must outlive it) and owns its
 * KV cache and scratch buffers, all sized at creation: pv_forward() never
 * allocates. */
#ifndef PV_MODEL_H
#define PV_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "kernels/pool.h"
#include "tok/vocab.h"

typedef struct {
    char arch[32];        /* general.architecture */
    uint32_t n_vocab;     /* tokens in the vocabulary */
    uint32_t n_ctx_train; /* {arch}.context_length */
    uint32_t n_embd;      /* model width */
    uint32_t n_layer;     /* transformer blocks */
    uint32_t n_head;      /* query heads */
    uint32_t n_head_kv;   /* key/value heads (GQA when < n_head) */
    uint32_t head_dim;    /* n_embd / n_head */
    uint32_t n_ff;        /* feed-forward width */
    uint32_t n_rot;       /* RoPE dimensions per head (rope.dimension_count) */
    float rope_base;      /* rope.freq_base */
    float norm_eps;       /* attention.layer_norm_rms_epsilon */
} pv_hparams_t;

/* Reads and validates the hyper-parameters of a llama-family file. */
int pv_hparams_read(const gguf_file_t *f, pv_hparams_t *hp, char *err, size_t errlen);

typedef struct {
    const gguf_tensor_t *t; /* view of the tensor in the file */
    int64_t n_rows;         /* ne[1]: output features */
    int64_t n_cols;         /* ne[0]: input features (row length) */
} pv_weight_t;

typedef struct {
    float *attn_norm;       /* (n_embd) owned copy as floats */
    pv_weight_t wq;         /* (n_head*head_dim, n_embd) */
    pv_weight_t wk;         /* (n_head_kv*head_dim, n_embd) */
    pv_weight_t wv;         /* (n_head_kv*head_dim, n_embd) */
    pv_weight_t wo;         /* (n_embd, n_head*head_dim) */
    float *ffn_norm;        /* (n_embd) owned */
    pv_weight_t w_gate;     /* (n_ff, n_embd) */
    pv_weight_t w_up;       /* (n_ff, n_embd) */
    pv_weight_t w_down;     /* (n_embd, n_ff) */
} pv_layer_t;

typedef struct {
    gguf_file_t *file;      /* owned: the mapping every view points into */
    pv_vocab_t *vocab;      /* owned */
    pv_hparams_t hp;
    pv_weight_t tok_embd;   /* (n_vocab, n_embd) */
    float *output_norm;     /* (n_embd) owned */
    pv_weight_t output;     /* (n_vocab, n_embd); token_embd when the file ties them */
    int tied_output;        /* 1 when output.weight is absent */
    pv_layer_t *layers;     /* [n_layer] owned */
    uint64_t n_params;      /* elements over all tensors */
} pv_model_t;

int pv_model_load(const char *path, pv_model_t **out, char *err, size_t errlen);
void pv_model_free(pv_model_t *m); /* accepts NULL */

/* ---- running a sequence ---------------------------------------------------------------- */

typedef struct pv_ctx pv_ctx_t;

/* n_ctx: positions the KV cache holds (0: the model's trained context). */
int pv_ctx_new(const pv_model_t *m, uint32_t n_ctx, pv_ctx_t **out, char *err, size_t errlen);
void pv_ctx_free(pv_ctx_t *c); /* accepts NULL */
uint32_t pv_ctx_size(const pv_ctx_t *c);

/* Matmuls run on pool's threads from now on (NULL: the caller's thread). The
 * pool is borrowed and must outlive its use by the context. */
void pv_ctx_set_pool(pv_ctx_t *c, pv_pool_t *pool);
size_t pv_ctx_kv_bytes(const pv_ctx_t *c);

/* Runs token at position pos (positions before it must already be in the
 * cache). When logits is non-NULL it receives n_vocab values. Returns 0, or
 * PV_ERANGE for a bad token id or a position past the context. */
int pv_forward(pv_ctx_t *c, int32_t token, uint32_t pos, float *logits);

#endif
