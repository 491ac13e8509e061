/* kern.h - per-type compute routines (the traits table) and the matmul entry point.
 *
 * As in ggml, a matmul with weights of type t first converts the float
 * activations to t's vec_dot_type (f32 -> f32, f16 -> f16, bf16 -> bf16,
 * q4_0/q8_0 -> q8_0, K-quants -> q8_K), so that the inner loop of a
 * quantized dot product is an integer one; this is also what makes results
 * match llama.cpp's. Every routine here is a plain scalar twin written for
 * clarity; later fast kernels keep the same signatures and are tested
 * against these. Block layouts are documented and pinned in ref.c. */
#ifndef PV_KERN_H
#define PV_KERN_H

#include <stddef.h>
#include <stdint.h>

#include "gguf/gtype.h"
#include "kernels/pool.h"

/* row of n elements (a whole number of blocks) -> floats */
typedef void (*pv_to_float_fn)(const void *row, float *y, int64_t n);
/* floats -> row of n elements (only for types that serve as vec_dot_type) */
typedef void (*pv_from_float_fn)(const float *x, void *row, int64_t n);
/* sum_i w[i] * a[i] over n elements; a is in the weight type's vec_dot_type */
typedef float (*pv_vec_dot_fn)(const void *w, const void *a, int64_t n);
/* The same for one weight row and 4 activation rows a_stride bytes apart:
 * out[j] = vec_dot(w, a + j * a_stride, n). Decodes each weight block once. */
typedef void (*pv_vec_dot4_fn)(const void *w, const void *a, size_t a_stride, int64_t n, float *out);

#define PV_X8_ROWS 8 /* rows of one interleaved group */

/* How a matmul weight's rows lie in memory. */
typedef enum {
    PV_LAYOUT_ROWS = 0, /* row after row, as in the file */
    PV_LAYOUT_X8 = 1,   /* groups of 8 rows interleaved block by block (pv_x8_repack) */
} pv_layout_t;

/* One group of 8 interleaved rows (PV_LAYOUT_X8, n columns) against n_tok
 * activation rows (any number; the AVX2 kernels go 4 at a time) in the format pv__x8_act_quantize writes (kern_internal.h),
 * a_stride bytes apart: out[8 * j + r] = dot(row r, token j). */
typedef void (*pv_dot_x8_fn)(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out);

/* Two adjacent groups (w and w + group_size) at once, the same sums as two
 * pv_dot_x8_fn calls: out[16 * j + 8 * g + r] = dot(row r of group g, token j). */
typedef void (*pv_dot_x16_fn)(const void *w, size_t group_size, const void *a, size_t a_stride, int n_tok, int64_t n,
                              float *out);

typedef struct {
    pv_to_float_fn to_float;
    pv_from_float_fn from_float; /* NULL unless some type dots against this one */
    pv_vec_dot_fn vec_dot;       /* NULL for activation-only types (q8_K) */
    pv_vec_dot_fn vec_dot1;      /* a matmul of one token, where llama.cpp sums it in another order than a batch; else NULL */
    pv_vec_dot4_fn vec_dot4;     /* NULL where only vec_dot is written (matmuls call it 4 times) */
    pv_dot_x8_fn dot_x8;         /* NULL for types without an interleaved layout */
    pv_dot_x8_fn dot1_x8;        /* a matmul of one token, where it takes vec_dot1's order; else NULL */
    pv_dot_x16_fn dot_x16;       /* NULL where two groups cost what two dot_x8 calls do */
    pv_type_t vec_dot_type;      /* the activation format vec_dot expects */
} pv_kern_traits_t;

/* Routines for type t as dispatched on this CPU (AVX2 where available, the
 * scalar twins otherwise or with PV_KERNELS=scalar), or NULL when pensieve
 * cannot compute with t. */
const pv_kern_traits_t *pv_kern_traits(pv_type_t t);

/* "avx2" or "scalar": what pv_kern_traits dispatches to. */
const char *pv_kern_isa(void);

/* 1 when t is a weight type that matmuls support. */
int pv_kern_supported(pv_type_t t);

/* Bytes of scratch pv_matvec needs for weights of type t and rows of n_cols. */
size_t pv_matvec_work_size(pv_type_t t, int64_t n_cols);

/* y[r] = dot(row r of w, x) for r < n_rows; each row holds n_cols elements of
 * type t, in PV_LAYOUT_ROWS. work holds at least pv_matvec_work_size(t,
 * n_cols) bytes. Rows are split over the pool's threads (pool may be NULL:
 * the caller alone). */
void pv_matvec(pv_type_t t, const void *w, int64_t n_rows, int64_t n_cols, const float *x, float *y, void *work,
               pv_pool_t *pool);

/* Batched: ys[b][r] = dot(row r of w, xs[b]) for n_tok tokens, the weight
 * laid out as layout says. Each weight tile is reused from cache by every
 * token before the next is read. work holds pv_matmul_work_size(t, n_cols,
 * n_tok) bytes (enough for either layout). */
size_t pv_matmul_work_size(pv_type_t t, int64_t n_cols, int n_tok);
void pv_matmul(pv_type_t t, pv_layout_t layout, const void *w, int64_t n_rows, int64_t n_cols, const float *const *xs,
               float *const *ys, int n_tok, void *work, pv_pool_t *pool);

/* Matmuls that read the same input rows (a layer's q, k and v; gate and up),
 * each its own weight and outputs: ys[b][r] = dot(row r of w, xs[b]). */
typedef struct {
    pv_type_t t;
    pv_layout_t layout;
    const void *w;
    int64_t n_rows;
    float *const *ys; /* [n_tok] output rows */
} pv_matmul_part_t;

#define PV_MATMUL_MAX_PARTS 3

/* The parts' matmuls over n_tok input rows of n_cols, with the results of
 * one pv_matmul per part, bit for bit. Interleaved parts whose kernels read
 * one activation format share one conversion of the inputs and one hand-off
 * to the pool (a thread that runs out of one part's rows takes the next
 * part's); others run one after the other. work holds the largest
 * pv_matmul_work_size of the parts. */
void pv_matmul_parts(const pv_matmul_part_t *parts, int n_parts, int64_t n_cols, const float *const *xs, int n_tok,
                     void *work, pv_pool_t *pool);

/* 1 when a weight of type t with n_rows rows of n_cols can take
 * PV_LAYOUT_X8: q4_0, q8_0, q4_K, q6_K and f16 (n_cols a multiple of 8),
 * n_rows a multiple of 8. */
int pv_x8_supported(pv_type_t t, int64_t n_rows, int64_t n_cols);

/* Writes the n_rows rows of src (PV_LAYOUT_ROWS) to dst in PV_LAYOUT_X8,
 * which takes the same number of bytes; pv_x8_supported(t, n_rows, n_cols). */
void pv_x8_repack(pv_type_t t, const void *src, int64_t n_rows, int64_t n_cols, void *dst);

/* Copies row r of w (n_cols elements) into y as floats (embedding lookup). */
void pv_get_row(pv_type_t t, const void *w, int64_t r, int64_t n_cols, float *y);

#endif
