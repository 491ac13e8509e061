/* kern.h - per-type compute routines (the traits table) and the matmul entry point.
 *
 * Each supported weight type has a plain scalar twin written for clarity:
 * to_float dequantizes a row, dot_f32 takes the dot product of a quantized
 * row with float activations. Later fast kernels keep the same signatures and
 * are tested against these. Block layouts are pinned by static_asserts in
 * ref.c and documented there. */
#ifndef PV_KERN_H
#define PV_KERN_H

#include <stdint.h>

#include "gguf/gtype.h"

typedef void (*pv_to_float_fn)(const void *row, float *y, int64_t n);
typedef float (*pv_dot_f32_fn)(const void *row, const float *x, int64_t n);

typedef struct {
    pv_to_float_fn to_float; /* row of n elements (n a whole number of blocks) -> floats */
    pv_dot_f32_fn dot_f32;   /* sum_i row[i] * x[i] over n elements */
} pv_kern_traits_t;

/* Routines for type t, or NULL when pensieve cannot compute with it. */
const pv_kern_traits_t *pv_kern_traits(pv_type_t t);

/* y[r] = dot(row r of w, x) for r < n_rows; each row holds n_cols elements of type t. */
void pv_matvec(pv_type_t t, const void *w, int64_t n_rows, int64_t n_cols, const float *x, float *y);

/* Copies row r of w (n_cols elements) into y as floats (embedding lookup). */
void pv_get_row(pv_type_t t, const void *w, int64_t r, int64_t n_cols, float *y);

#endif
