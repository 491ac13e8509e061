/* ops.h - the elementwise and normalisation operations of a transformer (scalar). */
#ifndef PV_OPS_H
#define PV_OPS_H

#include <stddef.h>
#include <stdint.h>

/* out[i] = x[i] / rms(x) * w[i]; out may alias x. */
void pv_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

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
void pv_rope_apply(float *x, int n_rot, const float *cs, int neox);

/* a[i] = silu(a[i]) * b[i] (SwiGLU). */
void pv_swiglu(float *a, const float *b, int n);

/* Running state of one head's attention: online softmax in the order of
 * llama.cpp's CPU flash attention, values accumulated in half precision. */
typedef struct {
    float M; /* largest score so far (-inf before the first) */
    float S; /* sum of exp(score - M) so far */
} pv_attn_state_t;

/* Folds n positions into (st, acc): for each, s = scale * (qh . k) in float,
 * then the accumulator acc[hd] (halves) becomes acc * exp(M_old - M) + v *
 * exp(s - M), each element rounded to half. Keys and values of consecutive
 * positions lie stride halves apart. Dispatched: AVX2/F16C or the scalar twin. */
typedef void (*pv_attn_fold_fn)(const uint16_t *qh, const uint16_t *k, const uint16_t *v, size_t stride, int n, int hd,
                                float scale, pv_attn_state_t *st, uint16_t *acc);
void pv_attn_fold(const uint16_t *qh, const uint16_t *k, const uint16_t *v, size_t stride, int n, int hd, float scale,
                  pv_attn_state_t *st, uint16_t *acc);
void pv_attn_fold_ref(const uint16_t *qh, const uint16_t *k, const uint16_t *v, size_t stride, int n, int hd,
                      float scale, pv_attn_state_t *st, uint16_t *acc);

/* The same for a group of nq queries over one block of keys and values:
 * query j folds the block's first n_pos[j] positions (0 skips it) into
 * (st[j], acc[j]). Results equal nq calls of pv_attn_fold; the fast version
 * interleaves the queries so their running sums do not wait on each other. */
typedef void (*pv_attn_fold_group_fn)(const uint16_t *const *qh, int nq, const uint16_t *k, const uint16_t *v,
                                      size_t stride, const int *n_pos, int hd, float scale, pv_attn_state_t *st,
                                      uint16_t *const *acc);
void pv_attn_fold_group(const uint16_t *const *qh, int nq, const uint16_t *k, const uint16_t *v, size_t stride,
                        const int *n_pos, int hd, float scale, pv_attn_state_t *st, uint16_t *const *acc);
void pv_attn_fold_group_ref(const uint16_t *const *qh, int nq, const uint16_t *k, const uint16_t *v, size_t stride,
                            const int *n_pos, int hd, float scale, pv_attn_state_t *st, uint16_t *const *acc);

/* y[i] += x[i] */
void pv_add(float *y, const float *x, int n);

#endif
