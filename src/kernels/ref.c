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
 *   q8_K  256   292    d (f32) | qs[256] int8 | bsums[16] int16 (sums of 16 qs): activations only
 *
 * Quantized dot products decode a weight block to its small integers, take the
 * integer dot product with the activation block's int8 values, and scale the
 * integer sum once per (sub-)block, as the formats are designed for.
 */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kern.h"
#include "kernels/kern_internal.h"
#include "kernels/ops.h"

#define QK PV_QK
#define QK_K PV_QK_K

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

/* ---- quantized blocks, decoded to small integers ----------------------------------------------
 *
 * Every quantized weight block decodes to integers q and, per sub-block s of
 * `sub` elements, a scale and an offset: element i = scale[s] * q[i] - min[s].
 * One decoder per format serves both dequantization and the dot product. */
typedef struct {
    int8_t q[QK_K];     /* small integers, one per element */
    float scale[16];    /* per sub-block multiplier */
    float min[16];      /* per sub-block offset (0 for symmetric formats) */
    int n;              /* elements in the block */
    int sub;            /* elements per sub-block */
} decoded_t;

static void q4_0_decode(const void *p, decoded_t *o) {
    const pv_block_q4_0 *b = p;
    o->n = o->sub = QK;
    o->scale[0] = pv_f16_to_f32(b->d);
    o->min[0] = 0.0f;
    for (int j = 0; j < QK / 2; j++) {
        o->q[j] = (int8_t)((b->qs[j] & 0x0f) - 8);
        o->q[j + QK / 2] = (int8_t)((b->qs[j] >> 4) - 8);
    }
}

static void q8_0_decode(const void *p, decoded_t *o) {
    const pv_block_q8_0 *b = p;
    o->n = o->sub = QK;
    o->scale[0] = pv_f16_to_f32(b->d);
    o->min[0] = 0.0f;
    for (int j = 0; j < QK; j++) o->q[j] = b->qs[j];
}

/* Scale and min of sub-block j (0..7) from the 12 packed bytes of q4_K/q5_K:
 * bytes 0-3 hold 6-bit scales 0-3 (top 2 bits: high bits of scales 4-7),
 * bytes 4-7 hold 6-bit mins 0-3 (top 2 bits: high bits of mins 4-7),
 * bytes 8-11 hold the low 4 bits of scales 4-7 (low nibble) and mins 4-7 (high nibble). */
void pv__k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* q4_K and q5_K share scales; qh is NULL for q4_K (no fifth bit). */
static void k_decode(uint16_t d16, uint16_t dmin16, const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                     decoded_t *o) {
    float d = pv_f16_to_f32(d16), dmin = pv_f16_to_f32(dmin16);
    o->n = QK_K;
    o->sub = 32;
    for (int s = 0; s < 8; s++) {
        uint8_t sc, m;
        pv__k_scale_min(s, scales, &sc, &m);
        o->scale[s] = d * sc;
        o->min[s] = dmin * m;
    }
    /* each 32 bytes of qs hold sub-blocks 2c (low nibbles) and 2c+1 (high nibbles) */
    for (int c = 0; c < 4; c++, qs += 32) {
        int8_t *lo = o->q + 64 * c, *hi = lo + 32;
        for (int l = 0; l < 32; l++) {
            lo[l] = (int8_t)(qs[l] & 0x0f);
            hi[l] = (int8_t)(qs[l] >> 4);
            if (qh) {
                lo[l] = (int8_t)(lo[l] + (qh[l] >> (2 * c) & 1) * 16);
                hi[l] = (int8_t)(hi[l] + (qh[l] >> (2 * c + 1) & 1) * 16);
            }
        }
    }
}

static void q4_K_decode(const void *p, decoded_t *o) {
    const pv_block_q4_K *b = p;
    k_decode(b->d, b->dmin, b->scales, b->qs, NULL, o);
}

static void q5_K_decode(const void *p, decoded_t *o) {
    const pv_block_q5_K *b = p;
    k_decode(b->d, b->dmin, b->scales, b->qs, b->qh, o);
}

/* q6_K: two halves of 128; in each, ql[l] and ql[l+32] give low nibbles of
 * elements l, l+32 (low) and l+64, l+96 (high); qh[l] gives their top 2 bits. */
void pv__q6_K_values(const pv_block_q6_K *b, int8_t q[QK_K]) {
    const uint8_t *ql = b->ql, *qh = b->qh;
    for (int half = 0; half < 2; half++, ql += 64, qh += 32, q += 128)
        for (int l = 0; l < 32; l++) {
            q[l] = (int8_t)(((ql[l] & 0x0f) | ((qh[l] >> 0 & 3) << 4)) - 32);
            q[l + 32] = (int8_t)(((ql[l + 32] & 0x0f) | ((qh[l] >> 2 & 3) << 4)) - 32);
            q[l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32);
            q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32);
        }
}

static void q6_K_decode(const void *p, decoded_t *o) {
    const pv_block_q6_K *b = p;
    float d = pv_f16_to_f32(b->d);
    o->n = QK_K;
    o->sub = 16;
    for (int s = 0; s < 16; s++) {
        o->scale[s] = d * b->scales[s];
        o->min[s] = 0.0f;
    }
    pv__q6_K_values(b, o->q);
}

/* ---- activations: q8_0 and q8_K ------------------------------------------------------------- */

/* Symmetric 8-bit quantization of 32 floats: d = max|x| / 127, values x * (127 / max|x|)
 * rounded to nearest even (llama.cpp's AVX2 quantize_row_q8_0, which its CPU backend runs,
 * rather than ggml's reference routine: 1/d and roundf). */
static void q8_0_from_float(const float *x, void *row, int64_t n) {
    pv_block_q8_0 *b = row;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        b[i].d = pv_f32_to_f16(d);
        for (int j = 0; j < QK; j++) b[i].qs[j] = (int8_t)lrintf(x[j] * id);
    }
}

/* 8-bit quantization of 256 floats scaled by the element of largest magnitude
 * (so that it maps to -127 exactly), with sums of each 16 for the K-quant mins. */
static void q8_K_from_float(const float *x, void *row, int64_t n) {
    pv_block_q8_K *b = row;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        memset(&b[i], 0, sizeof b[i]);
        if (amax == 0.0f) continue;
        float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            long v = lrintf(iscale * x[j]);
            b[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
            b[i].bsums[j / 16] = (int16_t)(b[i].bsums[j / 16] + b[i].qs[j]);
        }
        b[i].d = 1.0f / iscale;
    }
}

static void q8_K_to_float(const void *row, float *y, int64_t n) {
    const pv_block_q8_K *b = row;
    for (int64_t i = 0; i < n / QK_K; i++)
        for (int j = 0; j < QK_K; j++) y[i * QK_K + j] = b[i].d * b[i].qs[j];
}

/* int8 values and the scale of the activation block holding element i */
static const int8_t *q8_0_act(const void *a, int64_t i, float *d) {
    const pv_block_q8_0 *b = (const pv_block_q8_0 *)a + i / QK;
    *d = pv_f16_to_f32(b->d);
    return b->qs + i % QK;
}

static const int8_t *q8_K_act(const void *a, int64_t i, float *d) {
    const pv_block_q8_K *b = (const pv_block_q8_K *)a + i / QK_K;
    *d = b->d;
    return b->qs + i % QK_K;
}

typedef void (*decode_fn)(const void *block, decoded_t *o);
typedef const int8_t *(*act_fn)(const void *a, int64_t i, float *d);

static void quant_to_float(decode_fn decode, size_t block_bytes, const void *row, float *y, int64_t n) {
    decoded_t blk;
    const uint8_t *p = row;
    for (int64_t i = 0; i < n; p += block_bytes) {
        decode(p, &blk);
        for (int j = 0; j < blk.n; j++, i++) y[i] = blk.scale[j / blk.sub] * blk.q[j] - blk.min[j / blk.sub];
    }
}

/* sum over sub-blocks s of d_act * (scale[s] * sum(q * a) - min[s] * sum(a)): the
 * integer sums are exact; sub-blocks never straddle an activation block. */
static float quant_dot(decode_fn decode, size_t block_bytes, act_fn act, const void *w, const void *a, int64_t n) {
    decoded_t blk;
    const uint8_t *p = w;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; p += block_bytes) {
        decode(p, &blk);
        for (int s = 0; s < blk.n / blk.sub; s++, i += blk.sub) {
            float da;
            const int8_t *av = act(a, i, &da);
            const int8_t *q = blk.q + s * blk.sub;
            int32_t isum = 0, asum = 0;
            for (int j = 0; j < blk.sub; j++) {
                isum += q[j] * av[j];
                asum += av[j];
            }
            sum += da * (blk.scale[s] * (float)isum - blk.min[s] * (float)asum);
        }
    }
    return sum;
}

#define PV_QUANT_ROUTINES(name, block_t, act)                                               \
    static void name##_to_float(const void *row, float *y, int64_t n) {                     \
        quant_to_float(name##_decode, sizeof(block_t), row, y, n);                          \
    }                                                                                       \
    static float name##_vec_dot(const void *w, const void *a, int64_t n) {                  \
        return quant_dot(name##_decode, sizeof(block_t), act, w, a, n);                     \
    }

PV_QUANT_ROUTINES(q4_0, pv_block_q4_0, q8_0_act)
PV_QUANT_ROUTINES(q4_K, pv_block_q4_K, q8_K_act)

static void q8_0_to_float(const void *row, float *y, int64_t n) { quant_to_float(q8_0_decode, sizeof(pv_block_q8_0), row, y, n); }
static void q5_K_to_float(const void *row, float *y, int64_t n) { quant_to_float(q5_K_decode, sizeof(pv_block_q5_K), row, y, n); }
static void q6_K_to_float(const void *row, float *y, int64_t n) { quant_to_float(q6_K_decode, sizeof(pv_block_q6_K), row, y, n); }

/* The plain-layout twins of the kernels that follow llama.cpp's vec_dot
 * lanes: 8 float lanes, lane m collecting the elements whose place in their
 * 32 is 4m..4m+3 with one fused multiply-add per block, added as
 * hsum_float_8 does. */

/* q8_0 (ggml_vec_dot_q8_0_q8_0): each block's 8 integer lane sums by d_w d_a. */
static float q8_0_vec_dot(const void *w, const void *a, int64_t n) {
    const pv_block_q8_0 *x = w, *y = a;
    float l[8] = {0};
    for (int64_t b = 0; b < n / QK; b++) {
        float d = pv_f16_to_f32(x[b].d) * pv_f16_to_f32(y[b].d);
        for (int m = 0; m < 8; m++) {
            int32_t p = 0;
            for (int i = 4 * m; i < 4 * m + 4; i++) p += x[b].qs[i] * y[b].qs[i];
            l[m] = fmaf(d, (float)p, l[m]);
        }
    }
    return pv__lanes_sum(l);
}

/* q5_K (ggml_vec_dot_q5_K_q8_K): sc q a in integer lanes per block, by
 * d_w d_a; the mins' term in a float sum by fused multiply-adds of -d_a dmin_w. */
void pv__q5_K_block_dot(const pv_block_q5_K *x, const pv_block_q8_K *y, float l[8], float *mins) {
    decoded_t blk;
    q5_K_decode(x, &blk);
    int32_t lane[8] = {0}, m_sum = 0;
    for (int s = 0; s < 8; s++) {
        uint8_t sc, m;
        pv__k_scale_min(s, x->scales, &sc, &m);
        m_sum += m * (y->bsums[2 * s] + y->bsums[2 * s + 1]);
        for (int e = 32 * s; e < 32 * s + 32; e++) lane[e % 32 / 4] += sc * blk.q[e] * y->qs[e];
    }
    float d = pv_f16_to_f32(x->d) * y->d, dmin = -y->d * pv_f16_to_f32(x->dmin);
    for (int m = 0; m < 8; m++) l[m] = fmaf(d, (float)lane[m], l[m]);
    *mins = fmaf(dmin, (float)m_sum, *mins);
}

static float q5_K_vec_dot(const void *w, const void *a, int64_t n) {
    const pv_block_q5_K *x = w;
    const pv_block_q8_K *y = a;
    float l[8] = {0}, mins = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) pv__q5_K_block_dot(&x[b], &y[b], l, &mins);
    return pv__lanes_sum(l) + mins;
}

/* q6_K (ggml_vec_dot_q6_K_q8_K): sc q a (q = 0..63) in integer lanes per block,
 * less 32 sc_s (sum of a over s) for sub-blocks s = 2m, 2m + 1 in lane m. */
static float q6_K_vec_dot(const void *w, const void *a, int64_t n) {
    const pv_block_q6_K *x = w;
    const pv_block_q8_K *y = a;
    int8_t q[QK_K];
    float l[8] = {0};
    for (int64_t b = 0; b < n / QK_K; b++) {
        pv__q6_K_values(&x[b], q);
        int32_t lane[8] = {0};
        for (int e = 0; e < QK_K; e++) lane[e % 32 / 4] += x[b].scales[e / 16] * (q[e] + 32) * y[b].qs[e];
        float d = pv_f16_to_f32(x[b].d) * y[b].d;
        for (int m = 0; m < 8; m++) {
            lane[m] -= 32 * (x[b].scales[2 * m] * y[b].bsums[2 * m] + x[b].scales[2 * m + 1] * y[b].bsums[2 * m + 1]);
            l[m] = fmaf(d, (float)lane[m], l[m]);
        }
    }
    return pv__lanes_sum(l);
}

/* ---- float formats: activations take the weight's format, products summed in double ------- */

static void f32_from_float(const float *x, void *row, int64_t n) { memcpy(row, x, (size_t)n * sizeof *x); }

static void f16_from_float(const float *x, void *row, int64_t n) {
    uint16_t *y = row;
    for (int64_t i = 0; i < n; i++) y[i] = pv_f32_to_f16(x[i]);
}

static void bf16_from_float(const float *x, void *row, int64_t n) {
    uint16_t *y = row;
    for (int64_t i = 0; i < n; i++) y[i] = pv_f32_to_bf16(x[i]);
}

static float f32_vec_dot(const void *w, const void *a, int64_t n) {
    const float *x = w, *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += x[i] * y[i];
    return (float)sum;
}

/* llama.cpp's order (ggml_vec_dot_f16), which its plain f16 matmuls take. */
static float f16_vec_dot(const void *w, const void *a, int64_t n) { return pv_dot_f16_ggml(w, a, n); }

void pv__bf16_lanes_add(int one, float *l, int64_t i0, const uint16_t *x, const uint16_t *y, int64_t k) {
    for (int64_t i = 0; i < k; i++) {
        float a = pv_bf16_to_f32(x[i]), b = pv_bf16_to_f32(y[i]);
        if (one) l[(i0 + i) % 32] += a * b;
        else l[(i0 + i) % 8] = fmaf(a, b, l[(i0 + i) % 8]);
    }
}

/* one: (c1 + c3) + (c2 + c4) lane by lane (c_j = l[8 (j - 1)..]), then as hsum_float_8. */
float pv__bf16_lanes_sum(int one, const float *l) {
    if (!one) return pv__lanes_sum(l);
    float v[8];
    for (int m = 0; m < 8; m++) v[m] = (l[m] + l[16 + m]) + (l[8 + m] + l[24 + m]);
    return pv__lanes_sum(v);
}

/* bf16 in a batch (llamafile's order), the tail past n & ~7 in float. */
static float bf16_vec_dot(const void *w, const void *a, int64_t n) {
    const uint16_t *x = w, *y = a;
    float l[8] = {0};
    int64_t i = n & ~(int64_t)7;
    pv__bf16_lanes_add(0, l, 0, x, y, i);
    float sum = pv__bf16_lanes_sum(0, l);
    for (; i < n; i++) sum += pv_bf16_to_f32(x[i]) * pv_bf16_to_f32(y[i]);
    return sum;
}

/* bf16 for one token (ggml_vec_dot_bf16), the tail past n & ~31 in double. */
static float bf16_vec_dot1(const void *w, const void *a, int64_t n) {
    const uint16_t *x = w, *y = a;
    float c[32] = {0};
    int64_t i = n & ~(int64_t)31;
    pv__bf16_lanes_add(1, c, 0, x, y, i);
    double sum = pv__bf16_lanes_sum(1, c);
    for (; i < n; i++) sum += (double)(pv_bf16_to_f32(x[i]) * pv_bf16_to_f32(y[i]));
    return (float)sum;
}

static const pv_kern_traits_t traits[PV_TYPE_COUNT] = {
#define TRAITS(to, from, dot, dot_type) {.to_float = to, .from_float = from, .vec_dot = dot, .vec_dot_type = dot_type}
    [PV_TYPE_F32] = TRAITS(f32_to_float, f32_from_float, f32_vec_dot, PV_TYPE_F32),
    [PV_TYPE_F16] = TRAITS(f16_to_float, f16_from_float, f16_vec_dot, PV_TYPE_F16),
    [PV_TYPE_BF16] = {.to_float = bf16_to_float, .from_float = bf16_from_float, .vec_dot = bf16_vec_dot,
                      .vec_dot1 = bf16_vec_dot1, .vec_dot_type = PV_TYPE_BF16},
    [PV_TYPE_Q4_0] = TRAITS(q4_0_to_float, NULL, q4_0_vec_dot, PV_TYPE_Q8_0),
    [PV_TYPE_Q8_0] = TRAITS(q8_0_to_float, q8_0_from_float, q8_0_vec_dot, PV_TYPE_Q8_0),
    [PV_TYPE_Q4_K] = TRAITS(q4_K_to_float, NULL, q4_K_vec_dot, PV_TYPE_Q8_K),
    [PV_TYPE_Q5_K] = TRAITS(q5_K_to_float, NULL, q5_K_vec_dot, PV_TYPE_Q8_K),
    [PV_TYPE_Q6_K] = TRAITS(q6_K_to_float, NULL, q6_K_vec_dot, PV_TYPE_Q8_K),
    [PV_TYPE_Q8_K] = TRAITS(q8_K_to_float, q8_K_from_float, NULL, PV_TYPE_Q8_K),
#undef TRAITS
};

const pv_kern_traits_t *pv_kern_ref(pv_type_t t) {
    if ((unsigned)t >= PV_TYPE_COUNT || traits[t].to_float == NULL) return NULL;
    return &traits[t];
}

