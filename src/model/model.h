/* model.h - a loaded model: hyper-parameters, tensor views into the mapped
 * GGUF, and its vocabulary; and the per-sequence context that runs it.
 *
 * Ownership: pv_model_t owns its gguf_file_t (the one read-only mapping that
 * every context shares), its vocab and the repacked copies of matmul weights
 * (which replace their pages of the mapping); other tensor pointers are views
 * into the mapping. A pv_ctx_t borrows the model (which must outlive it) and owns its
 * KV cache and scratch buffers, all sized at creation: pv_forward() never
 * allocates. */
#ifndef PV_MODEL_H
#define PV_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "kernels/kern.h"
#include "kernels/pool.h"
#include "model/arch.h"
#include "model/kv.h"
#include "tok/vocab.h"

typedef struct {
    char arch[32];        /* general.architecture */
    uint32_t n_vocab;     /* tokens in the vocabulary */
    uint32_t n_ctx_train; /* {arch}.context_length */
    uint32_t n_embd;      /* model width */
    uint32_t n_layer;     /* transformer blocks */
    uint32_t n_head;      /* query heads */
    uint32_t n_head_kv;   /* key/value heads (GQA when < n_head) */
    uint32_t head_dim;    /* attention.key_length, else n_embd / n_head */
    uint32_t n_ff;        /* feed-forward width */
    uint32_t n_rot;       /* RoPE dimensions per head (rope.dimension_count) */
    float rope_base;      /* rope.freq_base */
    int rope_neox;        /* RoPE style of the architecture (1: NeoX halves) */
    uint32_t n_ctx_orig;  /* rope.scaling.original_context_length (0: none) */
    float rope_attn_factor; /* rope.scaling.attn_factor (1: none) */
    float norm_eps;       /* attention.layer_norm_rms_epsilon */
} pv_hparams_t;

/* Reads and validates the hyper-parameters of a llama-family file (any
 * general.architecture; whether it can run is pv_arch_find's business). */
int pv_hparams_read(const gguf_file_t *f, pv_hparams_t *hp, char *err, size_t errlen);

typedef struct {
    const gguf_tensor_t *t; /* view of the tensor in the file (its type and shape) */
    int64_t n_rows;         /* ne[1]: output features */
    int64_t n_cols;         /* ne[0]: input features (row length) */
    const void *data;       /* the rows: t->data, or the model's repacked copy */
    pv_layout_t layout;     /* how data lies (PV_LAYOUT_X8 once repacked) */
} pv_weight_t;

#define PV_VIEWS_PER_LAYER 5 /* q, k, v of attn_qkv; gate, up of ffn_up */

typedef struct {
    float *attn_norm;       /* (n_embd) owned copy as floats */
    float *bq, *bk, *bv;    /* (q_dim), (kv_dim) x2 biases, owned; NULL without PV_ARCH_QKV_BIAS */
    float *q_norm, *k_norm; /* (head_dim) per-head norms, owned; NULL without PV_ARCH_QK_NORM */
    pv_weight_t wq;         /* (n_head*head_dim, n_embd); with PV_ARCH_FUSED_QKV, views of attn_qkv */
    pv_weight_t wk;         /* (n_head_kv*head_dim, n_embd) */
    pv_weight_t wv;         /* (n_head_kv*head_dim, n_embd) */
    pv_weight_t wo;         /* (n_embd, n_head*head_dim) */
    float *ffn_norm;        /* (n_embd) owned */
    pv_weight_t w_gate;     /* (n_ff, n_embd); with PV_ARCH_FUSED_UP, views of ffn_up */
    pv_weight_t w_up;       /* (n_ff, n_embd) */
    pv_weight_t w_down;     /* (n_embd, n_ff) */
} pv_layer_t;

typedef struct {
    gguf_file_t *file;      /* owned: the mapping every view points into */
    pv_vocab_t *vocab;      /* owned */
    const pv_arch_t *arch;  /* static table entry */
    pv_hparams_t hp;
    pv_weight_t tok_embd;   /* (n_vocab, n_embd) */
    float *output_norm;     /* (n_embd) owned */
    pv_weight_t output;     /* (n_vocab, n_embd); token_embd when the file ties them */
    int tied_output;        /* 1 when output.weight is absent */
    pv_layer_t *layers;     /* [n_layer] owned */
    gguf_tensor_t *views;   /* [n_layer * PV_VIEWS_PER_LAYER] row-range views of fused tensors, owned */
    float *rope_freqs;      /* (n_rot/2) frequency divisors (Llama 3 rope_freqs), owned; NULL if absent */
    float *rope_long;       /* (n_rot/2) long-context divisors (rope_factors_long), owned; NULL if absent */
    float *rope_short;      /* (n_rot/2) short-context divisors (rope_factors_short), owned; NULL if absent */
    uint64_t n_params;      /* elements over all tensors */
    void *packed;           /* anonymous mapping of the repacked matmul weights, owned; NULL if none */
    size_t packed_size;     /* its bytes */
} pv_model_t;

/* Loads and binds a model. Matmul weights that only matmuls read and whose
 * type has an interleaved layout (pv_x8_supported) are repacked into it,
 * tensor by tensor, and the file pages they came from are dropped from the
 * process, so that resident memory stays about the file's size.
 * PV_REPACK=0 in the environment keeps every weight in the file's layout. */
int pv_model_load(const char *path, pv_model_t **out, char *err, size_t errlen);
void pv_model_free(pv_model_t *m); /* accepts NULL */

/* ---- running sequences ---------------------------------------------------------------- */

typedef struct pv_ctx pv_ctx_t;

#define PV_DEFAULT_BATCH 64 /* tokens per forward pass unless asked otherwise */

/* A context: a KV arena, scratch for batches of up to max_batch tokens, and a
 * default sequence of up to n_ctx positions for pv_forward / pv_prefill.
 * n_ctx 0: the model's trained context; kv_tokens 0: n_ctx (the arena holds
 * kv_tokens positions over all sequences); max_batch 0: PV_DEFAULT_BATCH. */
int pv_ctx_new_arena(const pv_model_t *m, uint32_t n_ctx, uint32_t kv_tokens, int max_batch, pv_ctx_t **out,
                     char *err, size_t errlen);
int pv_ctx_new(const pv_model_t *m, uint32_t n_ctx, pv_ctx_t **out, char *err, size_t errlen);
void pv_ctx_free(pv_ctx_t *c); /* accepts NULL */
uint32_t pv_ctx_size(const pv_ctx_t *c);
int pv_ctx_max_batch(const pv_ctx_t *c);
size_t pv_ctx_kv_bytes(const pv_ctx_t *c);
pv_kv_t *pv_ctx_kv(pv_ctx_t *c); /* the arena, for sequences other than the default one */
int pv_ctx_long_rope(const pv_ctx_t *c); /* 1 when Phi-3's long RoPE factors apply (context > original) */

/* on: every token's attention takes the tiled order, with float sums, that
 * prompt chunks of PV_ATTN_TILED_ROWS rows or more take; off (the default):
 * shorter runs, decoding among them, take llama.cpp's decoding order, value
 * sums rounded to half at every position, and give its results to the bit.
 * On, decoding at long contexts runs about 1.5x as fast on a 1B model (4k
 * and 8k positions), and its results leave llama.cpp's: a last-bit change
 * that quantized models' 8-bit activations amplify (tests/test_model.c). */
void pv_ctx_set_float_attn(pv_ctx_t *c, int on);

#define PV_MAX_THREADS 64 /* largest pool a context takes (it keeps attention scratch per thread) */

/* Matmuls and attention run on pool's threads from now on (NULL: the caller's
 * thread). The pool is borrowed and must outlive its use by the context.
 * PV_ERANGE for a pool of more than PV_MAX_THREADS threads. */
int pv_ctx_set_pool(pv_ctx_t *c, pv_pool_t *pool);

typedef struct {
    pv_seq_t *seq;   /* the sequence (of this context's arena) the token belongs to */
    uint32_t pos;    /* its position; positions before it must already be in the cache
                        or earlier in the same batch */
    int32_t token;   /* token id */
    float *logits;   /* receives n_vocab logits, or NULL when not needed */
} pv_batch_entry_t;

/* One forward pass over n entries (n <= max_batch), any mix of sequences.
 * Blocks are reserved as positions grow. Returns 0, PV_ERANGE (bad token,
 * position past the sequence's capacity, n out of range) or PV_ENOMEM (the
 * arena is full); nothing is computed on error. */
int pv_forward_batch(pv_ctx_t *c, const pv_batch_entry_t *e, int n);

/* The default sequence: token at pos (pv_forward) or n tokens from pos0 in
 * batches (pv_prefill); logits of the last token when non-NULL. */
int pv_forward(pv_ctx_t *c, int32_t token, uint32_t pos, float *logits);
int pv_prefill(pv_ctx_t *c, const int32_t *tokens, int n, uint32_t pos0, float *logits);
/* pv_prefill for any sequence of the context's arena. */
int pv_prefill_seq(pv_ctx_t *c, pv_seq_t *seq, const int32_t *tokens, int n, uint32_t pos0, float *logits);

#endif
