/* ref.c - scalar reference routines for every supported block format.
 *
 * Block layouts (little-endian; d, dmin are IEEE half):
 *
 *   type  elems bytes  layout
 *   q4_0  32    18     d | qs[16]: element j = (qs[j] & 15) - 8, element j+16 = (qs[j] >> 4) - 8, times d
 *   q8_0  32    34     d | qs[32] int8: element j = qs[j] * d
 *   q4_K  256   144    d | dmin | scales[12] (8 6-bit scale/min pairs) | qs[128]
 *                      sub-block s (32 elems) = d*sc[s]*q - dmin*m[s], q a nibble; each 32 bytes of qs
 *                      hold two sub-blocks: low nibbles first, then high nibbles
 *   q5_K  256   176    d | dmin | scales[12] | qh[32] | qs[128]: as q4_K with a fifth bit from qh
 *                      (bit 2k and 2k+1 of qh[l] for the k-th pair of sub-blocks)
 *   q6_K  256   210    ql[128] | qh[64] | scales[16] int8 | d: 6-bit q = low 4 from ql, high 2 from qh,
 *                      element = d * scales[s] * (q - 32), 16 sub-blocks of 16
 */
#include <assert.h>
#include <stddef.h>

#include "base/fp16.h"
#include "kernels/kern.h"

#define QK 32   /* elements per q4_0 / q8_0 block */
#define QK_K 256 /* elements per K-quant super-block */

typedef struct {
    uint16_t d;
    uint8_t qs[QK / 2];
} block_q4_0;
typedef struct {
    uint16_t d;
    int8_t qs[QK];
} block_q8_0;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} block_q4_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} block_q6_K;

static_assert(sizeof(block_q4_0) == 18, "q4_0 block layout");
static_assert(sizeof(block_q8_0) == 34, "q8_0 block layout");
static_assert(sizeof(block_q4_K) == 144, "q4_K block layout");
static_assert(sizeof(block_q5_K) == 176, "q5_K block layout");
static_assert(sizeof(block_q6_K) == 210, "q6_K block layout");

/* ---- float formats ---------------------------------------------------------------------- */

static void f32_to_float(const void *row, float *y, int64_t n) {
    const float *x = row;
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
}

static void f16_to_float(const void *row, float *y, int64_t n) {
    const uint16_t *x = row;
    for (int64_t i = 0; i < n; i++) y[i] = pv_f16_to_f32(x[i]);
}

static void bf16_to_float(const void *row, float *y, int64_t n) {
    const uint16_t *x = row;
    for (int64_t i = 0; i < n; i++) y[i] = pv_bf16_to_f32(x[i]);
}

/* ---- 32-element blocks -------------------------------------------------------------------- */

static void q4_0_block(const block_q4_0 *b, float *y) {
    float d = pv_f16_to_f32(b->d);
    for (int j = 0; j < QK / 2; j++) {
        y[j] = ((b->qs[j] & 0x0f) - 8) * d;
        y[j + QK / 2] = ((b->qs[j] >> 4) - 8) * d;
    }
}

static void q8_0_block(const block_q8_0 *b, float *y) {
    float d = pv_f16_to_f32(b->d);
    for (int j = 0; j < QK; j++) y[j] = b->qs[j] * d;
}

/* ---- K-quants ------------------------------------------------------------------------------- */

/* Scale and min of sub-block j (0..7) from the 12 packed bytes of q4_K/q5_K:
 * bytes 0-3 hold 6-bit scales 0-3 (top 2 bits: high bits of scales 4-7),
 * bytes 4-7 hold 6-bit mins 0-3 (top 2 bits: high bits of mins 4-7),
 * bytes 8-11 hold the low 4 bits of scales 4-7 (low nibble) and mins 4-7 (high nibble). */
static void k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void q4_K_block(const block_q4_K *b, float *y) {
    float d = pv_f16_to_f32(b->d), dmin = pv_f16_to_f32(b->dmin);
    const uint8_t *q = b->qs;
    for (int s = 0; s < 8; s += 2, q += 32, y += 64) {
        uint8_t sc0, m0, sc1, m1;
        k_scale_min(s, b->scales, &sc0, &m0);
        k_scale_min(s + 1, b->scales, &sc1, &m1);
        for (int l = 0; l < 32; l++) {
            y[l] = d * sc0 * (q[l] & 0x0f) - dmin * m0;
            y[l + 32] = d * sc1 * (q[l] >> 4) - dmin * m1;
        }
    }
}

static void q5_K_block(const block_q5_K *b, float *y) {
    float d = pv_f16_to_f32(b->d), dmin = pv_f16_to_f32(b->dmin);
    const uint8_t *q = b->qs;
    for (int s = 0; s < 8; s += 2, q += 32, y += 64) {
        uint8_t sc0, m0, sc1, m1;
        k_scale_min(s, b->scales, &sc0, &m0);
        k_scale_min(s + 1, b->scales, &sc1, &m1);
        uint8_t lo_bit = (uint8_t)(1u << s), hi_bit = (uint8_t)(2u << s);
        for (int l = 0; l < 32; l++) {
            int q0 = (q[l] & 0x0f) + (b->qh[l] & lo_bit ? 16 : 0);
            int q1 = (q[l] >> 4) + (b->qh[l] & hi_bit ? 16 : 0);
            y[l] = d * sc0 * q0 - dmin * m0;
            y[l + 32] = d * sc1 * q1 - dmin * m1;
        }
    }
}

static void q6_K_block(const block_q6_K *b, float *y) {
    float d = pv_f16_to_f32(b->d);
    const uint8_t *ql = b->ql, *qh = b->qh;
    const int8_t *sc = b->scales;
    for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0x0f) | ((qh[l] >> 0 & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2 & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
    }
}

/* Row routines from a block routine: dequantize block by block. */
#define PV_BLOCK_ROW(name, block_t, qk)                                   \
    static void name##_to_float(const void *row, float *y, int64_t n) {   \
        const block_t *b = row;                                           \
        for (int64_t i = 0; i < n / (qk); i++) name##_block(&b[i], y + i * (qk)); \
    }                                                                     \
    static float name##_dot_f32(const void *row, const float *x, int64_t n) { \
        const block_t *b = row;                                           \
        float tmp[qk], sum = 0.0f;                                        \
        for (int64_t i = 0; i < n / (qk); i++) {                          \
            name##_block(&b[i], tmp);                                     \
            float s = 0.0f;                                               \
            for (int j = 0; j < (qk); j++) s += tmp[j] * x[i * (qk) + j]; \
            sum += s;                                                     \
        }                                                                 \
        return sum;                                                       \
    }

PV_BLOCK_ROW(q4_0, block_q4_0, QK)
PV_BLOCK_ROW(q8_0, block_q8_0, QK)
PV_BLOCK_ROW(q4_K, block_q4_K, QK_K)
PV_BLOCK_ROW(q5_K, block_q5_K, QK_K)
PV_BLOCK_ROW(q6_K, block_q6_K, QK_K)

/* Float formats: dot products accumulate in float, one element at a time. */
static float f32_dot_f32(const void *row, const float *x, int64_t n) {
    const float *w = row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += w[i] * x[i];
    return sum;
}

static float f16_dot_f32(const void *row, const float *x, int64_t n) {
    const uint16_t *w = row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += pv_f16_to_f32(w[i]) * x[i];
    return sum;
}

static float bf16_dot_f32(const void *row, const float *x, int64_t n) {
    const uint16_t *w = row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += pv_bf16_to_f32(w[i]) * x[i];
    return sum;
}

static const pv_kern_traits_t traits[PV_TYPE_COUNT] = {
    [PV_TYPE_F32] = {f32_to_float, f32_dot_f32},
    [PV_TYPE_F16] = {f16_to_float, f16_dot_f32},
    [PV_TYPE_BF16] = {bf16_to_float, bf16_dot_f32},
    [PV_TYPE_Q4_0] = {q4_0_to_float, q4_0_dot_f32},
    [PV_TYPE_Q8_0] = {q8_0_to_float, q8_0_dot_f32},
    [PV_TYPE_Q4_K] = {q4_K_to_float, q4_K_dot_f32},
    [PV_TYPE_Q5_K] = {q5_K_to_float, q5_K_dot_f32},
    [PV_TYPE_Q6_K] = {q6_K_to_float, q6_K_dot_f32},
};

const pv_kern_traits_t *pv_kern_traits(pv_type_t t) {
    if ((unsigned)t >= PV_TYPE_COUNT || traits[t].to_float == NULL) return NULL;
    return &traits[t];
}

void pv_matvec(pv_type_t t, const void *w, int64_t n_rows, int64_t n_cols, const float *x, float *y) {
    const pv_kern_traits_t *k = pv_kern_traits(t);
    size_t row_size = pv_type_row_size(t, n_cols);
    assert(k && row_size);
    const uint8_t *p = w;
    for (int64_t r = 0; r < n_rows; r++) y[r] = k->dot_f32(p + (size_t)r * row_size, x, n_cols);
}

void pv_get_row(pv_type_t t, const void *w, int64_t r, int64_t n_cols, float *y) {
    const pv_kern_traits_t *k = pv_kern_traits(t);
    size_t row_size = pv_type_row_size(t, n_cols);
    assert(k && row_size);
    k->to_float((const uint8_t *)w + (size_t)r * row_size, y, n_cols);
}
