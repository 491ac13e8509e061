/* ops.h - the elementwise and normalisation operations of a transformer (scalar). */
#ifndef PV_OPS_H
#define PV_OPS_H

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

/* y[i] += x[i] */
void pv_add(float *y, const float *x, int n);

#endif
