/* ops.h - the elementwise and normalisation operations of a transformer (scalar). */
#ifndef PV_OPS_H
#define PV_OPS_H

#include <stddef.h>
#include <stdint.h>

/* out[i] = x[i] / rms(x) * w[i]; out may alias x. */
void pv_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
/* pv_rmsnorm of rows consecutive rows of n (x and out row-major), the same bits. */
void pv_rmsnorm_rows(float *out, const float *x, const float *w, int n, float eps, int rows);

/* In-place softmax over n values. */
void pv_softmax(float *x, int n);

/* RoPE, in two steps: the angles of one position, then their application to
 * every head. Pair i (i < n_rot/2) turns by pos * base^(-2i/n_rot) / ff[i]
 * (ff: per-frequency divisors, NULL for none), computed as ggml does (the
 * base power by repeated multiplication); cos and sin are scaled by mscale.
 * cs receives n_rot floats: cos_i, sin_i interleaved. */
void pv_rope_angles(float *cs, int n_rot, int pos, float base, const float *ff, float mscale);

/* Rotates one head's first n_rot elements by the angles in cs: pairs
 * (x[2i], x[2i+1]) in the original llama style, or (x[i], x[i + n_rot/2])
 * in the NeoX style. Elements past n_rot stay as they are. */
void pv_rope_apply(float *x, int n_rot, const float *cs, int neox); /* dispatched: AVX2 or the twin, the same bits */
void pv_rope_apply_ref(float *x, int n_rot, const float *cs, int neox);
void pv_rope_apply_from(float *x, int n_rot, const float *cs, int neox, int from); /* the twin, pairs from.. only */
typedef void (*pv_rope_fn)(float *x, int n_rot, const float *cs, int neox);

/* a[i] = silu(a[i]) * b[i] (SwiGLU). */
void pv_swiglu(float *a, const float *b, int n); /* dispatched: AVX2 (a vector exp) or the twin */
void pv_swiglu_ref(float *a, const float *b, int n);
/* e^x in the arithmetic of ggml's AVX2 vector exp (within 2 ulp of expf), one value at a time. */
float pv_exp_ggml(float x);
typedef void (*pv_swiglu_fn)(float *a, const float *b, int n);
/* y[i] = e^((x[i] - max) * scale) through ggml's vector exp, 0 where x[i] is
 * -inf (a masked-out logit): a softmax's weights, for the sampler. */
void pv_exp_shifted(float *y, const float *x, int n, float max, float scale); /* dispatched: AVX2 or the twin */
void pv_exp_shifted_ref(float *y, const float *x, int n, float max, float scale);
typedef void (*pv_exp_shifted_fn)(float *y, const float *x, int n, float max, float scale);

/* Attention in the order of llama.cpp's CPU flash attention over its default
 * F16 cache, so that results agree closely with it: a block of keys and values
 * (at most PV_ATTN_BLOCK positions, consecutive positions stride halves apart)
 * meets nr query rows that share it (the query heads of one KV head, for
 * several tokens). Each row keeps an online softmax (running max M, sum S)
 * and its weighted sum of values rounded to half after every step. For each
 * of the row's first n_pos[r] positions p:
 *   s = scale * (q . k_p)                                  (pv_dot_f16_ggml's order)
 *   s > M:  acc = half(acc * e^(M - s)), M = s, w = 1      (a new maximum)
 *   else:   w = e^(s - M)                                  (expf)
 *   acc = half(acc + w v_p), S = fma(S, e^(M_old - M), w)
 * where acc + w v_p is one fused multiply-add on the first hd & ~31 dimensions
 * (llama.cpp's vector loop) and a multiply then an add on the rest (its
 * scalar tail); the attention output is acc / S once every block has been
 * folded. Every step is llama.cpp's, so decoding reproduces its results to the bit.
 * Queries should be rounded to half (llama.cpp's dot products take them so). */
#define PV_ATTN_BLOCK 16
#define PV_ATTN_MAX_HEAD 4096 /* largest head size (as the loader allows) */

typedef struct {
    float M; /* largest score so far (-inf before the first) */
    float S; /* sum of exp(score - M) so far */
} pv_attn_state_t;

/* Floats of scratch an attention call of either order needs for head size hd
 * (pv_attn_block: the block's keys and values as floats and two rows' weights;
 * pv_attn_tile: the first PV_ATTN_TILE_OWN(hd) floats, the caller's tile of
 * keys and values may follow). */
#define PV_ATTN_TILE_OWN(hd) ((size_t)PV_ATTN_TILE * ((size_t)(hd) + 2))
size_t pv_attn_scratch_size(int hd);

/* q: nr rows of hd floats; acc: nr rows of hd floats; st: nr states. */
typedef void (*pv_attn_block_fn)(const float *q, int nr, const uint16_t *k, const uint16_t *v, size_t stride,
                                 const int *n_pos, int hd, float scale, pv_attn_state_t *st, float *acc, float *scratch);
/* Dispatched: AVX2/F16C, or the scalar twin. */
void pv_attn_block(const float *q, int nr, const uint16_t *k, const uint16_t *v, size_t stride, const int *n_pos, int hd,
                   float scale, pv_attn_state_t *st, float *acc, float *scratch);
void pv_attn_block_ref(const float *q, int nr, const uint16_t *k, const uint16_t *v, size_t stride, const int *n_pos,
                       int hd, float scale, pv_attn_state_t *st, float *acc, float *scratch);

/* The same fold in the order of llama.cpp's tiled CPU flash attention, which
 * it runs for micro-batches of PV_ATTN_TILED_ROWS query rows or more (prompt
 * chunks): queries and sums in float, over tiles of up to PV_ATTN_TILE
 * positions whose keys and values the caller has converted to floats (kf, vf:
 * rows of hd; keys zero from the tile's last live position up to the next
 * multiple of 8). For each row, over its first n_pos[r] positions p:
 *   s_p = scale * (q . k_p), M' = max(M, max_p s_p), f = e^(M - M')
 *   acc = acc f + sum_p e^(s_p - M') v_p,  S = S f + sum_p e^(s_p - M'),  M = M'
 * Much faster than the half-precision order: no rounding per step, so the
 * positions of a tile are summed independently. */
#define PV_ATTN_TILED_ROWS 64
#define PV_ATTN_TILE 64
typedef void (*pv_attn_tile_fn)(const float *q, int nr, const float *kf, const float *vf, const int *n_pos, int hd,
                                float scale, pv_attn_state_t *st, float *acc, float *scratch);
void pv_attn_tile(const float *q, int nr, const float *kf, const float *vf, const int *n_pos, int hd, float scale,
                  pv_attn_state_t *st, float *acc, float *scratch); /* dispatched */
void pv_attn_tile_ref(const float *q, int nr, const float *kf, const float *vf, const int *n_pos, int hd, float scale,
                      pv_attn_state_t *st, float *acc, float *scratch);

/* x . y over halves, summed as llama.cpp's AVX2 ggml_vec_dot_f16 sums them
 * (the f16 matmul twin and the attention scores). */
float pv_dot_f16_ggml(const uint16_t *x, const uint16_t *y, int64_t n);

/* y[i] += x[i] */
void pv_add(float *y, const float *x, int n);

#endif
