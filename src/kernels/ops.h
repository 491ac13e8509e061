/* ops.h - the elementwise and normalisation operations of a transformer (scalar). */
#ifndef PV_OPS_H
#define PV_OPS_H

#include <stddef.h>
#include <stdint.h>

/* out[i] = x[i] / rms(x) * w[i]; out may alias x. */
void pv_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* In-place softmax over n values. */
void pv_softmax(float *x, int n);

/* RoPE on adjacent pairs (x[2i], x[2i+1]) of one head for i < n_rot/2, at position pos:
 * angle = pos * base^(-2i / n_rot). Elements past n_rot stay as they are. */
void pv_rope_pairs(float *x, int n_rot, int pos, float base);

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

/* y[i] += x[i] */
void pv_add(float *y, const float *x, int n);

#endif
