/* avx2.c - AVX2/FMA/F16C dot products, the fast twins of ref.c's vec_dot routines.
 *
 * Each function computes exactly what its scalar twin computes: integer dot
 * products of the decoded weight block with the 8-bit activation block are
 * exact, and only the order of float additions differs. Functions carry a
 * target attribute so the rest of the build stays generic; dispatch.c uses
 * them only when the CPU reports AVX2, FMA and F16C. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kern.h"
#include "kernels/kern_internal.h"
#include "kernels/ops.h"

#define PV_AVX2 __attribute__((target("avx2,fma,f16c")))

/* Half to float in one instruction (F16C). */
PV_AVX2 static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

PV_AVX2 static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Sum of 32 products of signed bytes, as 8 int32 lanes (sign trick: |x| * (y * sign x)). */
PV_AVX2 static inline __m256i dot_i8(__m256i x, __m256i y) {
    __m256i ax = _mm256_sign_epi8(x, x), sy = _mm256_sign_epi8(y, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

/* 16 packed nibbles -> 32 bytes 0..15: low nibbles first, then high nibbles. */
PV_AVX2 static inline __m256i unpack_nibbles(const uint8_t *p) {
    __m128i b = _mm_loadu_si128((const __m128i *)p);
    __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
    return _mm256_set_m128i(hi, lo);
}

/* One q4_0 x q8_0 block: the int32 lane sums, scaled into acc. */
PV_AVX2 static inline __m256 q4_0_block(const pv_block_q4_0 *x, const pv_block_q8_0 *y, __m256 acc) {
    __m256i q = _mm256_sub_epi8(unpack_nibbles(x->qs), _mm256_set1_epi8(8));
    __m256i s = dot_i8(q, _mm256_loadu_si256((const __m256i *)y->qs));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(x->d) * h2f(y->d)), _mm256_cvtepi32_ps(s), acc);
}

/* Two accumulators so that consecutive blocks do not wait on each other's FMA. */
PV_AVX2 static float q4_0_q8_0(const void *w, const void *a, int64_t n) {
    const pv_block_q4_0 *x = w;
    const pv_block_q8_0 *y = a;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t nb = n / PV_QK, i = 0;
    for (; i + 2 <= nb; i += 2) {
        acc0 = q4_0_block(&x[i], &y[i], acc0);
        acc1 = q4_0_block(&x[i + 1], &y[i + 1], acc1);
    }
    if (i < nb) acc0 = q4_0_block(&x[i], &y[i], acc0);
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* One token's share of a block in the 4-token kernels: |q| (aq) and q are the
 * decoded weights; the sum lands in acc, scaled by the weight and token scales. */
PV_AVX2 static inline __m256 tok_block(__m256i aq, __m256i q, const pv_block_q8_0 *y, float dw, __m256 acc) {
    __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y->qs), q)),
                                  _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(_mm256_set1_ps(dw * h2f(y->d)), _mm256_cvtepi32_ps(s), acc);
}

/* One weight row against 4 activation rows: each block's weights are
 * decoded (and made non-negative for maddubs) once, then meet 4 tokens. The
 * four sums stay in registers (named, not an array, so the compiler keeps them there). */
#define DOT4_BODY(decode)                                                                                  \
    const pv_block_q8_0 *y0 = (const pv_block_q8_0 *)a, *y1 = (const pv_block_q8_0 *)((const uint8_t *)a + a_stride); \
    const pv_block_q8_0 *y2 = (const pv_block_q8_0 *)((const uint8_t *)a + 2 * a_stride);                 \
    const pv_block_q8_0 *y3 = (const pv_block_q8_0 *)((const uint8_t *)a + 3 * a_stride);                 \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),             \
           acc3 = _mm256_setzero_ps();                                                                     \
    for (int64_t i = 0; i < n / PV_QK; i++) {                                                              \
        __m256i q = decode;                                                                                \
        __m256i aq = _mm256_sign_epi8(q, q);                                                               \
        float dw = h2f(x[i].d);                                                                            \
        acc0 = tok_block(aq, q, &y0[i], dw, acc0);                                                         \
        acc1 = tok_block(aq, q, &y1[i], dw, acc1);                                                         \
        acc2 = tok_block(aq, q, &y2[i], dw, acc2);                                                         \
        acc3 = tok_block(aq, q, &y3[i], dw, acc3);                                                         \
    }                                                                                                      \
    out[0] = hsum_ps(acc0);                                                                                \
    out[1] = hsum_ps(acc1);                                                                                \
    out[2] = hsum_ps(acc2);                                                                                \
    out[3] = hsum_ps(acc3)

PV_AVX2 static void q4_0_q8_0_x4(const void *w, const void *a, size_t a_stride, int64_t n, float *out) {
    const pv_block_q4_0 *x = w;
    DOT4_BODY(_mm256_sub_epi8(unpack_nibbles(x[i].qs), _mm256_set1_epi8(8)));
}

PV_AVX2 static void q8_0_q8_0_x4(const void *w, const void *a, size_t a_stride, int64_t n, float *out) {
    const pv_block_q8_0 *x = w;
    DOT4_BODY(_mm256_loadu_si256((const __m256i *)x[i].qs));
}

PV_AVX2 static inline __m256 q8_0_block(const pv_block_q8_0 *x, const pv_block_q8_0 *y, __m256 acc) {
    __m256i s = dot_i8(_mm256_loadu_si256((const __m256i *)x->qs), _mm256_loadu_si256((const __m256i *)y->qs));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(x->d) * h2f(y->d)), _mm256_cvtepi32_ps(s), acc);
}

PV_AVX2 static float q8_0_q8_0(const void *w, const void *a, int64_t n) {
    const pv_block_q8_0 *x = w;
    const pv_block_q8_0 *y = a;
    __m256 acc0 = _mm256_setzero_ps();
    int64_t nb = n / PV_QK, i = 0;
    for (; i < nb; i++) acc0 = q8_0_block(&x[i], &y[i], acc0);
    return hsum_ps(acc0);
}

/* q4_K / q5_K x q8_K, in the order of llama.cpp's AVX2 ggml_vec_dot_q5_K_q8_K:
 * per 32-element sub-block, an unsigned-by-signed byte dot (maddubs) scaled
 * by the 6-bit scale into 8 int32 lanes, one fused multiply-add per block by
 * d_w d_a; the mins term, from the activation block's precomputed sums of
 * 16, goes into a separate float sum, one fused multiply-add per block by
 * -d_a dmin_w (its compiler contracts the statement). qh is NULL for q4_K. */
PV_AVX2 static float k_q8_K(const uint8_t *scales, uint16_t d16, uint16_t dmin16, const uint8_t *qs, const uint8_t *qh,
                            const pv_block_q8_K *y, __m256 *acc, float rest) {
    uint8_t sc[8], m[8];
    for (int s = 0; s < 8; s++) pv__k_scale_min(s, scales, &sc[s], &m[s]);
    int32_t mins = 0;
    for (int s = 0; s < 8; s++) mins += m[s] * (y->bsums[2 * s] + y->bsums[2 * s + 1]);
    __m256i sumi = _mm256_setzero_si256();
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(b, low4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), low4);
        if (qh) { /* fifth bits: bit 2c of qh[l] for lo, bit 2c+1 for hi, worth 16 */
            __m256i one = _mm256_set1_epi8(1);
            lo = _mm256_add_epi8(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c), one), 4));
            hi = _mm256_add_epi8(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c + 1), one), 4));
        }
        __m256i a_lo = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c));
        __m256i a_hi = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c + 32));
        __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), _mm256_set1_epi16(sc[2 * c]));
        __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi), _mm256_set1_epi16(sc[2 * c + 1]));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
    }
    float d = h2f(d16) * y->d, dmin = -y->d * h2f(dmin16);
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), *acc);
    return fmaf(dmin, (float)mins, rest);
}

/* One token's share of a 64-element chunk of a q4_K/q5_K block: lo/hi are
 * the chunk's two sub-blocks of 4/5-bit values, s_lo/s_hi their scales. */
PV_AVX2 static inline __m256i k_tok_chunk(__m256i lo, __m256i hi, __m256i s_lo, __m256i s_hi, const int8_t *aq,
                                          __m256i sumi) {
    __m256i a_lo = _mm256_loadu_si256((const __m256i *)aq), a_hi = _mm256_loadu_si256((const __m256i *)(aq + 32));
    return _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), s_lo),
                                                   _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi), s_hi)));
}

/* The mins term of one token for a q4_K/q5_K block: sum over sub-blocks of m * (sum of its activations). */
static inline int32_t k_tok_mins(const uint8_t *m, const pv_block_q8_K *y) {
    int32_t mins = 0;
    for (int s = 0; s < 8; s++) mins += m[s] * (y->bsums[2 * s] + y->bsums[2 * s + 1]);
    return mins;
}

/* k_q8_K for 4 activation rows: the weight block's scales and 4/5-bit values
 * are decoded once and meet each row's int8 values. Sums live in named
 * registers (an array would be kept on the stack). qh is NULL for q4_K. */
PV_AVX2 static void k_q8_K_x4(const void *w, size_t block_size, int has_qh, const void *a, size_t a_stride, int64_t n,
                              float *out) {
    const pv_block_q8_K *y0 = a, *y1 = (const pv_block_q8_K *)((const uint8_t *)a + a_stride);
    const pv_block_q8_K *y2 = (const pv_block_q8_K *)((const uint8_t *)a + 2 * a_stride);
    const pv_block_q8_K *y3 = (const pv_block_q8_K *)((const uint8_t *)a + 3 * a_stride);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    float rest0 = 0, rest1 = 0, rest2 = 0, rest3 = 0;
    const __m256i low4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / PV_QK_K; i++) {
        const uint8_t *blk = (const uint8_t *)w + (size_t)i * block_size, *scales, *qs, *qh = NULL;
        uint16_t d16, dmin16;
        if (has_qh) {
            const pv_block_q5_K *b = (const pv_block_q5_K *)blk;
            d16 = b->d, dmin16 = b->dmin, scales = b->scales, qs = b->qs, qh = b->qh;
        } else {
            const pv_block_q4_K *b = (const pv_block_q4_K *)blk;
            d16 = b->d, dmin16 = b->dmin, scales = b->scales, qs = b->qs;
        }
        uint8_t sc[8], m[8];
        for (int s = 0; s < 8; s++) pv__k_scale_min(s, scales, &sc[s], &m[s]);
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
        __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i bq = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(bq, low4), hi = _mm256_and_si256(_mm256_srli_epi16(bq, 4), low4);
            if (qh) {
                lo = _mm256_add_epi8(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c), one), 4));
                hi = _mm256_add_epi8(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c + 1), one), 4));
            }
            __m256i s_lo = _mm256_set1_epi16(sc[2 * c]), s_hi = _mm256_set1_epi16(sc[2 * c + 1]);
            s0 = k_tok_chunk(lo, hi, s_lo, s_hi, y0[i].qs + 64 * c, s0);
            s1 = k_tok_chunk(lo, hi, s_lo, s_hi, y1[i].qs + 64 * c, s1);
            s2 = k_tok_chunk(lo, hi, s_lo, s_hi, y2[i].qs + 64 * c, s2);
            s3 = k_tok_chunk(lo, hi, s_lo, s_hi, y3[i].qs + 64 * c, s3);
        }
        float d = h2f(d16), dmin = h2f(dmin16);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d * y0[i].d), _mm256_cvtepi32_ps(s0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d * y1[i].d), _mm256_cvtepi32_ps(s1), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_set1_ps(d * y2[i].d), _mm256_cvtepi32_ps(s2), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_set1_ps(d * y3[i].d), _mm256_cvtepi32_ps(s3), acc3);
        rest0 = fmaf(-y0[i].d * dmin, (float)k_tok_mins(m, &y0[i]), rest0);
        rest1 = fmaf(-y1[i].d * dmin, (float)k_tok_mins(m, &y1[i]), rest1);
        rest2 = fmaf(-y2[i].d * dmin, (float)k_tok_mins(m, &y2[i]), rest2);
        rest3 = fmaf(-y3[i].d * dmin, (float)k_tok_mins(m, &y3[i]), rest3);
    }
    out[0] = hsum_ps(acc0) + rest0;
    out[1] = hsum_ps(acc1) + rest1;
    out[2] = hsum_ps(acc2) + rest2;
    out[3] = hsum_ps(acc3) + rest3;
}

PV_AVX2 static void q4_K_q8_K_x4(const void *w, const void *a, size_t a_stride, int64_t n, float *out) {
    k_q8_K_x4(w, sizeof(pv_block_q4_K), 0, a, a_stride, n, out);
}

PV_AVX2 static void q5_K_q8_K_x4(const void *w, const void *a, size_t a_stride, int64_t n, float *out) {
    k_q8_K_x4(w, sizeof(pv_block_q5_K), 1, a, a_stride, n, out);
}

PV_AVX2 static float q4_K_q8_K(const void *w, const void *a, int64_t n) {
    const pv_block_q4_K *x = w;
    const pv_block_q8_K *y = a;
    __m256 acc = _mm256_setzero_ps();
    float rest = 0.0f;
    for (int64_t i = 0; i < n / PV_QK_K; i++) rest = k_q8_K(x[i].scales, x[i].d, x[i].dmin, x[i].qs, NULL, &y[i], &acc, rest);
    return hsum_ps(acc) + rest;
}

PV_AVX2 static float q5_K_q8_K(const void *w, const void *a, int64_t n) {
    const pv_block_q5_K *x = w;
    const pv_block_q8_K *y = a;
    __m256 acc = _mm256_setzero_ps();
    float rest = 0.0f;
    for (int64_t i = 0; i < n / PV_QK_K; i++) rest = k_q8_K(x[i].scales, x[i].d, x[i].dmin, x[i].qs, x[i].qh, &y[i], &acc, rest);
    return hsum_ps(acc) + rest;
}

/* q6_K x q8_K in the order of llama.cpp's AVX2 ggml_vec_dot_q6_K_q8_K (as the
 * x8 kernels): 6-bit values 0..63 (unsigned, so maddubs applies) into 8 int32
 * lanes, the offset of 32 taken out lane by lane through the activation sums
 * of 16 (lane m: sub-blocks 2m, 2m+1); 16 sub-blocks of 16. */
PV_AVX2 static float q6_K_q8_K(const void *w, const void *a, int64_t n) {
    const pv_block_q6_K *x = w;
    const pv_block_q8_K *y = a;
    const __m256i low4 = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / PV_QK_K; i++) {
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *aq = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        int32_t off[8];
        for (int m = 0; m < 8; m++)
            off[m] = -32 * (x[i].scales[2 * m] * y[i].bsums[2 * m] + x[i].scales[2 * m + 1] * y[i].bsums[2 * m + 1]);
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, aq += 128) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_slli_epi16(_mm256_and_si256(h, three), 4)),
                _mm256_or_si256(_mm256_and_si256(l1, low4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), three), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), three), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), three), 4)),
            };
            const int8_t *sc = x[i].scales + 8 * half;
            for (int k = 0; k < 4; k++) { /* 32 elements = sub-blocks 2k and 2k+1 of this half */
                __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(aq + 32 * k)));
                __m256i scl = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scl));
            }
        }
        float d = h2f(x[i].d) * y[i].d;
        sumi = _mm256_add_epi32(sumi, _mm256_loadu_si256((const __m256i *)off));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

PV_AVX2 static float f32_f32(const void *w, const void *a, int64_t n) {
    const float *x = w, *y = a;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), acc1);
    }
    float sum = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) sum += x[i] * y[i];
    return sum;
}

/* In llama.cpp's order (ggml_vec_dot_f16; pv_dot_f16_ggml is the twin): four
 * accumulators over chunks of 32, their reduction, the tail in double. */
PV_AVX2 static float f16_f16(const void *w, const void *a, int64_t n) {
    const uint16_t *x = w, *y = a;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t np = n & ~(int64_t)31;
    for (int64_t i = 0; i < np; i += 32) {
#define F16_LANE(acc, o)                                                                                     \
    acc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + (o)))),                   \
                          _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i + (o)))), acc)
        F16_LANE(a0, 0);
        F16_LANE(a1, 8);
        F16_LANE(a2, 16);
        F16_LANE(a3, 24);
#undef F16_LANE
    }
    __m256 r = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    t = _mm_hadd_ps(t, t);
    double sum = _mm_cvtss_f32(_mm_hadd_ps(t, t));
    for (int64_t i = np; i < n; i++) sum += (double)(h2f(x[i]) * h2f(y[i]));
    return (float)sum;
}

PV_AVX2 static inline __m256 load_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

/* One token, in the order of llama.cpp's AVX2 ggml_vec_dot_bf16 (its matmuls
 * of one token take it; batches take llamafile's order, bf16_bf16): four
 * accumulators over chunks of 32, each product rounded then added (a
 * multiply and an add), reduced as (c1 + c3) + (c2 + c4) and hsum_float_8;
 * the tail in double. */
PV_AVX2 static float bf16_bf16_1(const void *w, const void *a, int64_t n) {
    const uint16_t *x = w, *y = a;
    __m256 c1 = _mm256_setzero_ps(), c2 = c1, c3 = c1, c4 = c1;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        c1 = _mm256_add_ps(_mm256_mul_ps(load_bf16(x + i), load_bf16(y + i)), c1);
        c2 = _mm256_add_ps(_mm256_mul_ps(load_bf16(x + i + 8), load_bf16(y + i + 8)), c2);
        c3 = _mm256_add_ps(_mm256_mul_ps(load_bf16(x + i + 16), load_bf16(y + i + 16)), c3);
        c4 = _mm256_add_ps(_mm256_mul_ps(load_bf16(x + i + 24), load_bf16(y + i + 24)), c4);
    }
    double sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(c1, c3), _mm256_add_ps(c2, c4)));
    for (; i < n; i++) sum += (double)(pv_bf16_to_f32(x[i]) * pv_bf16_to_f32(y[i]));
    return (float)sum;
}

/* A batch of tokens, in the order of llama.cpp's llamafile tiles (n a
 * multiple of 8; they take no other): one accumulator of 8 lanes, a fused
 * multiply-add per 8 elements, hsum_float_8. */
PV_AVX2 static float bf16_bf16(const void *w, const void *a, int64_t n) {
    const uint16_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(load_bf16(x + i), load_bf16(y + i), acc);
    float sum = hsum_ps(acc);
    for (; i < n; i++) sum += pv_bf16_to_f32(x[i]) * pv_bf16_to_f32(y[i]);
    return sum;
}

/* e^x for 8 floats in exactly the arithmetic of ggml's AVX2 vector exp (an
 * Arm optimized-routines design; pv_exp_ggml is its scalar twin): x = n ln2 + b
 * with n rounded through the 1.5 * 2^23 shifter, a degree-5 polynomial in b,
 * 2^n from the shifter's low bits; beyond |n| > 126 the scale is split in two
 * factors so that the result over- or underflows only where e^x does.
 * exp_ggml_parts computes n, the shifter's bits z, the polynomial j and the
 * scale k = 2^n; e^x is k + j k wherever |n| <= 126. */
PV_AVX2 static inline __m256 exp_ggml_parts(__m256 x, __m256 *n, __m256 *z, __m256 *j) {
    const __m256 shift = _mm256_set1_ps(0x1.8p23f);
    *z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift), *n = _mm256_sub_ps(*z, shift);
    __m256 b = _mm256_fnmadd_ps(*n, _mm256_set1_ps(0x1.7f7d1cp-20f), _mm256_fnmadd_ps(*n, _mm256_set1_ps(0x1.62e4p-1f), x));
    __m256i e = _mm256_slli_epi32(_mm256_castps_si256(*z), 23);
    __m256 u = _mm256_mul_ps(b, b);
    __m256 hi = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                                _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f)));
    *j = _mm256_fmadd_ps(hi, u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    return _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0f))));
}

/* exp_ggml_ps for x in [-87, 87], where |n| <= 126 in every lane. */
PV_AVX2 static inline __m256 exp_ggml_near_ps(__m256 x) {
    __m256 n, z, j, k = exp_ggml_parts(x, &n, &z, &j);
    return _mm256_fmadd_ps(j, k, k);
}

PV_AVX2 static inline __m256 exp_ggml_ps(__m256 x) {
    __m256 n, z, j, k = exp_ggml_parts(x, &n, &z, &j);
    __m256 an = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
    __m256 big = _mm256_cmp_ps(an, _mm256_set1_ps(126.0f), _CMP_GT_OQ);
    if (!_mm256_movemask_ps(big)) return _mm256_fmadd_ps(j, k, k);
    __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                 _mm256_set1_epi32((int)0x82000000u));
    __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000))),
           s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    __m256 huge = _mm256_cmp_ps(an, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
    __m256 r = _mm256_blendv_ps(_mm256_fmadd_ps(k, j, k), _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1), big);
    return _mm256_blendv_ps(r, _mm256_mul_ps(s1, s1), huge);
}

/* 2^(i/32) rounded to double, less i << 47 (i in the exponent's place), so
 * that adding k << 47 for k = 32 m + i gives 2^(k/32). */
static const uint64_t exp2_32nds[32] = {
    0x3ff0000000000000ull, 0x3fefd9b0d3158574ull, 0x3fefb5586cf9890full, 0x3fef9301d0125b51ull,
    0x3fef72b83c7d517bull, 0x3fef54873168b9aaull, 0x3fef387a6e756238ull, 0x3fef1e9df51fdee1ull,
    0x3fef06fe0a31b715ull, 0x3feef1a7373aa9cbull, 0x3feedea64c123422ull, 0x3feece086061892dull,
    0x3feebfdad5362a27ull, 0x3feeb42b569d4f82ull, 0x3feeab07dd485429ull, 0x3feea47eb03a5585ull,
    0x3feea09e667f3bcdull, 0x3fee9f75e8ec5f74ull, 0x3feea11473eb0187ull, 0x3feea589994cce13ull,
    0x3feeace5422aa0dbull, 0x3feeb737b0cdc5e5ull, 0x3feec49182a3f090ull, 0x3feed503b23e255dull,
    0x3feee89f995ad3adull, 0x3feeff76f2fb5e47ull, 0x3fef199bdd85529cull, 0x3fef3720dcef9069ull,
    0x3fef5818dcfba487ull, 0x3fef7c97337b9b5full, 0x3fefa4afa2a490daull, 0x3fefd0765b6e4540ull,
};

/* e^x for 4 floats, as doubles, in the arithmetic of glibc's expf (since
 * 2.28; the build its dispatcher picks on FMA machines): k = round(x 32 /
 * ln 2) through the 1.5 * 2^52 shifter, r = x 32 / ln 2 - k fused, a degree-3
 * polynomial in r, times 2^(k/32) from the table. Rounded to float it is
 * expf(x) to the bit wherever |x| < 88 (expf_lanes_beyond picks the rest). */
PV_AVX2 static inline __m256d expf_glibc_pd(__m128 x) {
    const __m256d inv_ln2_32 = _mm256_set1_pd(0x1.71547652b82fep+5), shift = _mm256_set1_pd(0x1.8p+52);
    __m256d xd = _mm256_cvtps_pd(x), kd = _mm256_fmadd_pd(inv_ln2_32, xd, shift);
    __m256i ki = _mm256_castpd_si256(kd);
    __m256d r = _mm256_fmsub_pd(inv_ln2_32, xd, _mm256_sub_pd(kd, shift));
    __m256i t = _mm256_i64gather_epi64((const long long *)exp2_32nds, _mm256_and_si256(ki, _mm256_set1_epi64x(31)), 8);
    __m256d sc = _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64(ki, 47)));
    __m256d z = _mm256_fmadd_pd(r, _mm256_set1_pd(0x1.c6af84b912394p-20), _mm256_set1_pd(0x1.ebfce50fac4f3p-13));
    __m256d y = _mm256_fmadd_pd(r, _mm256_set1_pd(0x1.62e42ff0c52d6p-6), _mm256_set1_pd(1.0));
    return _mm256_mul_pd(_mm256_fmadd_pd(z, _mm256_mul_pd(r, r), y), sc);
}

/* Lanes of x that glibc's expf takes out of its main path (|x| >= 88, inf, NaN): a bit each. */
PV_AVX2 static inline unsigned expf_lanes_beyond(__m256 x) {
    __m256i top = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(x), 20), _mm256_set1_epi32(0x7ff));
    return (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(top, _mm256_set1_epi32(0x42a))));
}

/* y[i] = expf(x[i]) for 8 floats, to the bit. */
PV_AVX2 static inline void expf8(const float *x, float *y) {
    __m256 v = _mm256_loadu_ps(x);
    __m128 lo = _mm256_cvtpd_ps(expf_glibc_pd(_mm256_castps256_ps128(v)));
    __m128 hi = _mm256_cvtpd_ps(expf_glibc_pd(_mm256_extractf128_ps(v, 1)));
    _mm256_storeu_ps(y, _mm256_set_m128(hi, lo));
    for (unsigned m = expf_lanes_beyond(v); m; m &= m - 1) y[__builtin_ctz(m)] = expf(x[__builtin_ctz(m)]);
}

#define PV_INLINE inline __attribute__((always_inline))



/* Lane l of the dot products' 32 accumulator lanes (accumulators j = 0..3,
 * reduced as ggml_vec_dot_f16 reduces them) for the 8 positions at kt + g
 * into *a and, b not NULL, for the 8 at kt + g + 8 into *b: each broadcast of
 * the query meets both. */
PV_AVX2 static PV_INLINE void attn_lane(const float *q, const float *kt, int g, int l, int np, __m256 *a, __m256 *b) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int c = 0; c < np; c += 32) {
        const float *k = kt + (size_t)(c + l) * PV_ATTN_BLOCK + g;
        __m256 qj = _mm256_broadcast_ss(q + c + l); /* each broadcast used at once, for both groups */
        a0 = _mm256_fmadd_ps(qj, _mm256_loadu_ps(k), a0);
        if (b) b0 = _mm256_fmadd_ps(qj, _mm256_loadu_ps(k + 8), b0);
        qj = _mm256_broadcast_ss(q + c + 8 + l);
        a1 = _mm256_fmadd_ps(qj, _mm256_loadu_ps(k + 8 * PV_ATTN_BLOCK), a1);
        if (b) b1 = _mm256_fmadd_ps(qj, _mm256_loadu_ps(k + 8 + 8 * PV_ATTN_BLOCK), b1);
        qj = _mm256_broadcast_ss(q + c + 16 + l);
        a2 = _mm256_fmadd_ps(qj, _mm256_loadu_ps(k + 16 * PV_ATTN_BLOCK), a2);
        if (b) b2 = _mm256_fmadd_ps(qj, _mm256_loadu_ps(k + 8 + 16 * PV_ATTN_BLOCK), b2);
        qj = _mm256_broadcast_ss(q + c + 24 + l);
        a3 = _mm256_fmadd_ps(qj, _mm256_loadu_ps(k + 24 * PV_ATTN_BLOCK), a3);
        if (b) b3 = _mm256_fmadd_ps(qj, _mm256_loadu_ps(k + 8 + 24 * PV_ATTN_BLOCK), b3);
    }
    *a = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
    if (b) *b = _mm256_add_ps(_mm256_add_ps(b0, b2), _mm256_add_ps(b1, b3));
}

/* A lane's sums x, y done before the next lane's loads start (the compiler
 * would otherwise keep every lane's accumulators and add them at the end,
 * more than the 16 vector registers hold). */
#define LANE_DONE(x, y) __asm__ volatile("" : "+x"(x), "+x"(y)::"memory")

/* The unscaled scores of the 8 positions at kt + g into s + g and, two, of the
 * 8 after them: lane l's sums reduced as ggml_vec_dot_f16 reduces its lanes,
 * ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)). */
PV_AVX2 static PV_INLINE void attn_scores8(const float *q, const float *kt, int g, int np, float *s, int two) {
    __m256 x01 = _mm256_setzero_ps(), y01 = x01, x23 = x01, y23 = x01;
#pragma GCC unroll 4
    for (int l = 0; l < 4; l++) {
        __m256 x, x4, y = x01, y4 = x01;
        attn_lane(q, kt, g, l, np, &x, two ? &y : NULL);
        LANE_DONE(x, y);
        attn_lane(q, kt, g, l + 4, np, &x4, two ? &y4 : NULL);
        LANE_DONE(x4, y4);
        __m256 t = _mm256_add_ps(x, x4), u = _mm256_add_ps(y, y4);
        if (l == 0) x01 = t, y01 = u;
        else if (l == 1) x01 = _mm256_add_ps(x01, t), y01 = _mm256_add_ps(y01, u);
        else if (l == 2) x23 = t, y23 = u;
        else x23 = _mm256_add_ps(x23, t), y23 = _mm256_add_ps(y23, u);
    }
    _mm256_storeu_ps(s + g, _mm256_add_ps(x01, x23));
    if (two) _mm256_storeu_ps(s + g + 8, _mm256_add_ps(y01, y23));
}

/* The scores of one row over a block in the order of llama.cpp's AVX2
 * ggml_vec_dot_f16 (pv_dot_f16_ggml, the twin): kt holds the block's keys
 * transposed (hd rows of PV_ATTN_BLOCK positions), so that each of the dot
 * product's 32 accumulator lanes (accumulator j, lane l) is one vector over 8
 * positions; the dimensions past hd & ~31 are added in double from kf (the
 * keys as rows). Two groups of 8 positions at a time where a lane has two
 * chunks of 32 or more to share its broadcasts over (with one, the second
 * group's sums cost more registers than the broadcasts save). s[p] = scale *
 * (q . k_p) for the first n positions. */
PV_AVX2 static PV_INLINE void attn_scores(const float *q, const float *kt, const float *kf, int n, int hd, float scale,
                                          float *s) {
    static_assert(PV_ATTN_BLOCK == 16, "a block's scores are one or two groups of 8");
    int np = hd & ~31; /* no loops over the groups: the compiler would hoist their broadcasts and spill them */
    if (np >= 64 && n > 8) {
        attn_scores8(q, kt, 0, np, s, 1);
    } else {
        attn_scores8(q, kt, 0, np, s, 0);
        if (n > 8) attn_scores8(q, kt, 8, np, s, 0);
    }
    if (np < hd)
        for (int p = 0; p < n; p++) {
            double d = s[p];
            for (int i = np; i < hd; i++) d += (double)(kf[(size_t)p * hd + i] * q[i]);
            s[p] = (float)d;
        }
    for (int p = 0; p < n; p += 8) _mm256_storeu_ps(s + p, _mm256_mul_ps(_mm256_loadu_ps(s + p), _mm256_set1_ps(scale)));
}

PV_AVX2 static inline float hmax_ps(__m256 x) {
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    return _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
}

/* Lanes below k (k <= 0: none, k >= 8: all) as a mask. */
PV_AVX2 static inline __m256 lanes_below(int k) {
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}

/* x moved up by k lanes (a constant), lanes below k from fill (the blend replaces what wrapped around). */
#define LANES_UP(x, fill, k)                                                                                    \
    _mm256_blend_ps(_mm256_permutevar8x32_ps((x), _mm256_setr_epi32(-(k), 1 - (k), 2 - (k), 3 - (k), 4 - (k), 5 - (k), \
                                                                    6 - (k), 7 - (k))),                          \
                    (fill), (1 << (k)) - 1)

/* Lane p: the running maximum of lanes 0..p in the twin's sense, where a
 * value replaces the maximum only if greater (ties keep the earlier one,
 * which max_ps(later, earlier) does); no lane is NaN. */
PV_AVX2 static inline __m256 running_max8(__m256 x) {
    const __m256 none = _mm256_set1_ps(-INFINITY);
    x = _mm256_max_ps(x, LANES_UP(x, none, 1));
    x = _mm256_max_ps(x, LANES_UP(x, none, 2));
    return _mm256_max_ps(x, LANES_UP(x, none, 4));
}

/* What one row needs of a block in the half-precision order: the weight w[p]
 * of each of its first n positions (0 past them), and for the positions that
 * bring a new maximum, the factor ms[p] that rescales the sum so far (their
 * bit set in the mask returned). st advances to the block's end as the twin
 * (and llama.cpp) advances it position by position, M replaced by a greater
 * score, the exponential of the difference (expf), S = fma(S, ms, 1) or
 * S + w; here the maximum each position meets comes from a running maximum 8
 * positions at a time, the exponentials 8 at a time (expf8, the same bits),
 * and only the sum S goes position by position. */
PV_AVX2 static PV_INLINE unsigned attn_weights(const float *q, const float *kt, const float *kf, int n, int hd,
                                               float scale, pv_attn_state_t *st, float *w, float *ms) {
    float s[PV_ATTN_BLOCK], arg[PV_ATTN_BLOCK];
    attn_scores(q, kt, kf, n, hd, scale, s);
    const __m256 none = _mm256_set1_ps(-INFINITY), one = _mm256_set1_ps(1.0f);
    __m256 m = _mm256_set1_ps(st->M); /* the maximum before the 8 positions */
    unsigned new_max = 0;
    for (int p = 0; p < PV_ATTN_BLOCK; p += 8) {
        if (p >= n) {
            _mm256_storeu_ps(w + p, _mm256_setzero_ps());
            continue;
        }
        __m256 sv = _mm256_loadu_ps(s + p), live = lanes_below(n - p);
        __m256 seen = _mm256_blendv_ps(none, sv, _mm256_and_ps(live, _mm256_cmp_ps(sv, sv, _CMP_ORD_Q)));
        __m256 upto = _mm256_max_ps(running_max8(seen), m); /* through each lane */
        __m256 before = LANES_UP(upto, m, 1);
        __m256 nm = _mm256_and_ps(_mm256_cmp_ps(sv, before, _CMP_GT_OQ), live);
        __m256 a = _mm256_blendv_ps(_mm256_sub_ps(sv, before), _mm256_sub_ps(before, sv), nm);
        _mm256_storeu_ps(arg + p, _mm256_and_ps(a, live));
        expf8(arg + p, ms + p); /* every lane's exponential; read as a factor only where nm */
        __m256 e = _mm256_loadu_ps(ms + p);
        _mm256_storeu_ps(w + p, _mm256_and_ps(_mm256_blendv_ps(e, one, nm), live));
        new_max |= (unsigned)_mm256_movemask_ps(nm) << p;
        m = _mm256_permutevar8x32_ps(upto, _mm256_set1_epi32(7));
    }
    float S = st->S;
    if (!new_max)
#pragma GCC unroll 4
        for (int p = 0; p < n; p++) S += w[p];
    else
        for (int p = 0; p < n; p++) S = new_max >> p & 1 ? fmaf(S, ms[p], 1.0f) : S + w[p];
    st->S = S;
    st->M = _mm256_cvtss_f32(m);
    return new_max;
}

#define ROUND_HALF(x) _mm256_cvtph_ps(_mm256_cvtps_ph((x), _MM_FROUND_TO_NEAREST_INT))
#define ATTN_FMA(acc, vp, b) acc = ROUND_HALF(_mm256_fmadd_ps(_mm256_loadu_ps(vp), b, acc))
#define ATTN_ADD(acc, vp, b) acc = ROUND_HALF(_mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(vp), b)))
#define ATTN_RESCALE(acc, g) acc = ROUND_HALF(_mm256_mul_ps(acc, g))

/* The factor position p rescales a row's sum by: its e^(M_old - M) on a new maximum, else 1 (a no-op on halves). */
static inline float attn_factor(const float *ms, unsigned nm, int p) { return nm >> p & 1 ? ms[p] : 1.0f; }

/* Up to 12 vectors (96 dimensions) of a row's sums in the half-precision
 * order, in registers while a block's positions stream past; nv (a constant
 * where these are inlined) says how many are live. */
#define ATTN_PASS_MAX 12
typedef struct {
    __m256 s[ATTN_PASS_MAX];
} attn_sums_t;

PV_AVX2 static PV_INLINE attn_sums_t sums_load(const float *p, int nv) {
    attn_sums_t x;
#pragma GCC unroll 12
    for (int k = 0; k < nv; k++) x.s[k] = _mm256_loadu_ps(p + 8 * k);
    return x;
}

PV_AVX2 static PV_INLINE void sums_store(float *p, const attn_sums_t *x, int nv) {
#pragma GCC unroll 12
    for (int k = 0; k < nv; k++) _mm256_storeu_ps(p + 8 * k, x->s[k]);
}

/* x = half(x g), a new maximum's rescale. */
PV_AVX2 static PV_INLINE void sums_rescale(attn_sums_t *x, float g, int nv) {
    __m256 f = _mm256_set1_ps(g);
#pragma GCC unroll 12
    for (int k = 0; k < nv; k++) ATTN_RESCALE(x->s[k], f);
}

/* x = half(x + w v), one position's values v (read by the FMAs themselves). */
PV_AVX2 static PV_INLINE void sums_fma(attn_sums_t *x, const float *v, const float *w, int nv) {
    __m256 b = _mm256_broadcast_ss(w);
#pragma GCC unroll 12
    for (int k = 0; k < nv; k++) ATTN_FMA(x->s[k], v + 8 * k, b);
}

/* One row of the half-precision order: its sums, weights w over the block,
 * and the factors ms of the positions in nm (a bit each) that bring a new
 * maximum. */
typedef struct {
    float *acc;
    const float *w, *ms;
    unsigned nm;
} attn_row_t;

/* One pass of one to three rows (b, c NULL: fewer) over the block's values
 * as floats (vf): nv vectors of each row from dimension i, the values read
 * as memory operands, fused multiply-adds. */
PV_AVX2 static PV_INLINE void attn_pass(const attn_row_t *a, const attn_row_t *b, const attn_row_t *c,
                                        const float *vf, int n, int hd, int i, int nv) {
    attn_sums_t x = sums_load(a->acc + i, nv), y = x, z = x;
    if (b) y = sums_load(b->acc + i, nv);
    if (c) z = sums_load(c->acc + i, nv);
    for (int p = 0; p < n; p++) {
        const float *vp = vf + (size_t)p * hd + i;
        if ((a->nm | (b ? b->nm : 0) | (c ? c->nm : 0)) >> p & 1) { /* rare: a new maximum in a row */
            sums_rescale(&x, attn_factor(a->ms, a->nm, p), nv);
            if (b) sums_rescale(&y, attn_factor(b->ms, b->nm, p), nv);
            if (c) sums_rescale(&z, attn_factor(c->ms, c->nm, p), nv);
        }
        sums_fma(&x, vp, a->w + p, nv);
        if (b) sums_fma(&y, vp, b->w + p, nv);
        if (c) sums_fma(&z, vp, c->w + p, nv);
    }
    sums_store(a->acc + i, &x, nv);
    if (b) sums_store(b->acc + i, &y, nv);
    if (c) sums_store(c->acc + i, &z, nv);
}

/* The sums of one to three rows (b, c NULL: fewer) over the block's values.
 * Each 8 sums are a chain of a multiply-add and two conversions per
 * position, so a pass keeps up to 12 chains in flight: three rows 32
 * dimensions at a time, two rows 96 in two passes of 48, a lone row (a model
 * without grouped queries) 96, or the last 64 in one pass; then 32 at a time. Fused
 * multiply-adds on the first hd & ~31 dimensions, a multiply then an add on
 * the rest, 8 at a time, as the twin. */
PV_AVX2 static PV_INLINE void attn_accumulate(const attn_row_t *a, const attn_row_t *b, const attn_row_t *c,
                                              const float *vf, int n, int hd) {
    const attn_row_t *rows[3] = {a, b, c};
    int fused = hd & ~31, i = 0;
    if (!b) {
        for (; i + 96 <= fused; i += 96) attn_pass(a, NULL, NULL, vf, n, hd, i, 12);
        if (i + 64 == fused) attn_pass(a, NULL, NULL, vf, n, hd, i, 8), i += 64;
    } else if (!c) {
        for (; i + 96 <= fused; i += 96) {
            attn_pass(a, b, NULL, vf, n, hd, i, 6);
            attn_pass(a, b, NULL, vf, n, hd, i + 48, 6);
        }
    }
    for (; i < fused; i += 32) attn_pass(a, b, c, vf, n, hd, i, 4);
    for (int r = 0; r < 3 && rows[r]; r++) {
        const attn_row_t *t = rows[r];
        for (int j = i; j < hd; j += 8) {
            __m256 x = _mm256_loadu_ps(t->acc + j);
            for (int p = 0; p < n; p++) {
                if (t->nm >> p & 1) ATTN_RESCALE(x, _mm256_set1_ps(t->ms[p]));
                ATTN_ADD(x, vf + (size_t)p * hd + j, _mm256_broadcast_ss(t->w + p));
            }
            _mm256_storeu_ps(t->acc + j, x);
        }
    }
}

/* Tiled order: the scores of one row over a whole tile, its keys transposed
 * (kt: hd rows of PV_ATTN_TILE positions), eight sums of eight positions
 * each, one broadcast of the query per dimension. */
PV_AVX2 static PV_INLINE void attn_scores_tile(const float *q, const float *kt, int hd, float scale, float *s) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
#pragma GCC unroll 8
    for (int d = 0; d < hd; d++) {
        const float *k = kt + (size_t)d * PV_ATTN_TILE;
        __m256 b = _mm256_broadcast_ss(q + d);
        a0 = _mm256_fmadd_ps(b, _mm256_loadu_ps(k), a0);
        a1 = _mm256_fmadd_ps(b, _mm256_loadu_ps(k + 8), a1);
        a2 = _mm256_fmadd_ps(b, _mm256_loadu_ps(k + 16), a2);
        a3 = _mm256_fmadd_ps(b, _mm256_loadu_ps(k + 24), a3);
        a4 = _mm256_fmadd_ps(b, _mm256_loadu_ps(k + 32), a4);
        a5 = _mm256_fmadd_ps(b, _mm256_loadu_ps(k + 40), a5);
        a6 = _mm256_fmadd_ps(b, _mm256_loadu_ps(k + 48), a6);
        a7 = _mm256_fmadd_ps(b, _mm256_loadu_ps(k + 56), a7);
    }
    __m256 sc = _mm256_set1_ps(scale);
    _mm256_storeu_ps(s, _mm256_mul_ps(a0, sc));
    _mm256_storeu_ps(s + 8, _mm256_mul_ps(a1, sc));
    _mm256_storeu_ps(s + 16, _mm256_mul_ps(a2, sc));
    _mm256_storeu_ps(s + 24, _mm256_mul_ps(a3, sc));
    _mm256_storeu_ps(s + 32, _mm256_mul_ps(a4, sc));
    _mm256_storeu_ps(s + 40, _mm256_mul_ps(a5, sc));
    _mm256_storeu_ps(s + 48, _mm256_mul_ps(a6, sc));
    _mm256_storeu_ps(s + 56, _mm256_mul_ps(a7, sc));
}

/* Tiled order: the scores of two rows over a whole tile, half a tile at a
 * time so that the keys are loaded once for both rows (four loads and two
 * broadcasts per eight multiply-adds). */
PV_AVX2 static PV_INLINE void attn_scores_tile2(const float *q0, const float *q1, const float *kt, int hd, float scale,
                                                float *s0, float *s1) {
    __m256 sc = _mm256_set1_ps(scale);
    for (int h = 0; h < PV_ATTN_TILE; h += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
#pragma GCC unroll 8
        for (int d = 0; d < hd; d++) {
            const float *k = kt + (size_t)d * PV_ATTN_TILE + h;
            __m256 k0 = _mm256_loadu_ps(k), k1 = _mm256_loadu_ps(k + 8), k2 = _mm256_loadu_ps(k + 16);
            __m256 k3 = _mm256_loadu_ps(k + 24), x = _mm256_broadcast_ss(q0 + d), y = _mm256_broadcast_ss(q1 + d);
            a0 = _mm256_fmadd_ps(x, k0, a0);
            a1 = _mm256_fmadd_ps(x, k1, a1);
            a2 = _mm256_fmadd_ps(x, k2, a2);
            a3 = _mm256_fmadd_ps(x, k3, a3);
            b0 = _mm256_fmadd_ps(y, k0, b0);
            b1 = _mm256_fmadd_ps(y, k1, b1);
            b2 = _mm256_fmadd_ps(y, k2, b2);
            b3 = _mm256_fmadd_ps(y, k3, b3);
        }
        _mm256_storeu_ps(s0 + h, _mm256_mul_ps(a0, sc));
        _mm256_storeu_ps(s0 + h + 8, _mm256_mul_ps(a1, sc));
        _mm256_storeu_ps(s0 + h + 16, _mm256_mul_ps(a2, sc));
        _mm256_storeu_ps(s0 + h + 24, _mm256_mul_ps(a3, sc));
        _mm256_storeu_ps(s1 + h, _mm256_mul_ps(b0, sc));
        _mm256_storeu_ps(s1 + h + 8, _mm256_mul_ps(b1, sc));
        _mm256_storeu_ps(s1 + h + 16, _mm256_mul_ps(b2, sc));
        _mm256_storeu_ps(s1 + h + 24, _mm256_mul_ps(b3, sc));
    }
}

/* The exponentials of attn_weights_f32, w = e^(s - M) over len positions of
 * one or two rows (s1 NULL: one), and their sums in llama.cpp's order: each 8
 * summed in float, then in double. near: no position is masked and every
 * s - M is at least -87, so that no lane needs exp_ggml_ps's range checks. */
PV_AVX2 static PV_INLINE void attn_exp_pass(const float *s0, float M0, float *w0, double *sum0, const float *s1, float M1,
                                            float *w1, double *sum1, int len, int near) {
    __m256 none = _mm256_set1_ps(-INFINITY), m0 = _mm256_set1_ps(M0), m1 = _mm256_set1_ps(M1);
    double t0 = 0.0, t1 = 0.0;
    for (int p = 0; p < len; p += 8) {
        __m256 a = _mm256_loadu_ps(s0 + p);
        __m256 e = near ? exp_ggml_near_ps(_mm256_sub_ps(a, m0))
                        : _mm256_and_ps(exp_ggml_ps(_mm256_sub_ps(a, m0)), _mm256_cmp_ps(a, none, _CMP_NEQ_OQ));
        _mm256_storeu_ps(w0 + p, e);
        t0 += hsum_ps(e);
        if (s1) {
            __m256 b = _mm256_loadu_ps(s1 + p);
            __m256 g = near ? exp_ggml_near_ps(_mm256_sub_ps(b, m1))
                            : _mm256_and_ps(exp_ggml_ps(_mm256_sub_ps(b, m1)), _mm256_cmp_ps(b, none, _CMP_NEQ_OQ));
            _mm256_storeu_ps(w1 + p, g);
            t1 += hsum_ps(g);
        }
    }
    *sum0 = t0;
    *sum1 = t1;
}

/* Tiled order: a row's weights over a tile from its scores s (which this
 * overwrites past the row's n positions), w[p] = e^(s_p - M'), 0 past them up
 * to PV_ATTN_TILE; S and M advance; f = e^(M - M'), the factor for what the
 * row summed before. A second row (s1 not NULL) goes through the same loops
 * alongside, so that neither row waits alone on its horizontal max, its factor
 * and its exponentials. */
PV_AVX2 static PV_INLINE void attn_weights_f32(float *s0, int n0, pv_attn_state_t *st0, float *w0, float *f0, float *s1,
                                               int n1, pv_attn_state_t *st1, float *w1, float *f1) {
    int len = (n0 + 7) / 8 * 8;
    if (s1 && (n1 + 7) / 8 * 8 > len) len = (n1 + 7) / 8 * 8;
    for (int p = n0; p < len; p++) s0[p] = -INFINITY;
    if (s1)
        for (int p = n1; p < len; p++) s1[p] = -INFINITY;
    __m256 none = _mm256_set1_ps(-INFINITY), mx0 = none, mx1 = none, mn = _mm256_set1_ps(INFINITY);
    for (int p = 0; p < len; p += 8) {
        __m256 a = _mm256_loadu_ps(s0 + p);
        mx0 = _mm256_max_ps(mx0, a);
        mn = _mm256_min_ps(mn, a);
        if (s1) {
            __m256 b = _mm256_loadu_ps(s1 + p);
            mx1 = _mm256_max_ps(mx1, b);
            mn = _mm256_min_ps(mn, b);
        }
    }
    float top0 = hmax_ps(mx0), M0 = top0 > st0->M ? top0 : st0->M, top1 = 0, M1 = 0;
    *f0 = top0 > st0->M ? expf(st0->M - M0) : 1.0f;
    if (s1) {
        top1 = hmax_ps(mx1), M1 = top1 > st1->M ? top1 : st1->M;
        *f1 = top1 > st1->M ? expf(st1->M - M1) : 1.0f;
    }
    double sum0 = 0.0, sum1 = 0.0;
    float low = -hmax_ps(_mm256_sub_ps(_mm256_setzero_ps(), mn)); /* -inf where a position is masked */
    if (low - M0 >= -87.0f && (!s1 || low - M1 >= -87.0f))
        attn_exp_pass(s0, M0, w0, &sum0, s1, M1, w1, &sum1, len, 1);
    else
        attn_exp_pass(s0, M0, w0, &sum0, s1, M1, w1, &sum1, len, 0);
    for (int p = len; p < PV_ATTN_TILE; p += 8) {
        _mm256_storeu_ps(w0 + p, _mm256_setzero_ps());
        if (s1) _mm256_storeu_ps(w1 + p, _mm256_setzero_ps());
    }
    st0->S = (float)((double)(st0->S * *f0) + sum0);
    st0->M = M0;
    if (s1) {
        st1->S = (float)((double)(st1->S * *f1) + sum1);
        st1->M = M1;
    }
}

#define ATTN_FMA_F32(acc, v, b) acc = _mm256_fmadd_ps(v, b, acc)

/* Tiled order: acc = acc f + sum_p w[p] v_p for one or two rows (two = 0:
 * acc0 alone; a constant at each call, so that the loops test nothing), 32
 * dimensions of both in registers while the positions stream past, then 8 at
 * a time. */
PV_AVX2 static PV_INLINE void attn_accumulate_f32(float *acc0, const float *w0, float f0, float *acc1, const float *w1,
                                                  float f1, const float *vf, int n, int hd, int two) {
    __m256 g0 = _mm256_set1_ps(f0), g1 = _mm256_set1_ps(f1);
    int i = 0;
    for (; i + 32 <= hd; i += 32) {
        __m256 x0 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + i), g0), x1 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + i + 8), g0);
        __m256 x2 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + i + 16), g0), x3 = _mm256_mul_ps(_mm256_loadu_ps(acc0 + i + 24), g0);
        __m256 y0 = x0, y1 = x1, y2 = x2, y3 = x3;
        if (two) {
            y0 = _mm256_mul_ps(_mm256_loadu_ps(acc1 + i), g1), y1 = _mm256_mul_ps(_mm256_loadu_ps(acc1 + i + 8), g1);
            y2 = _mm256_mul_ps(_mm256_loadu_ps(acc1 + i + 16), g1), y3 = _mm256_mul_ps(_mm256_loadu_ps(acc1 + i + 24), g1);
        }
#pragma GCC unroll 2 /* half the loop's own instructions: 4% fewer in the tile, faster in 6 of 8 pinned pairs */
        for (int p = 0; p < n; p++) {
            const float *vp = vf + (size_t)p * hd + i;
            __m256 v0 = _mm256_loadu_ps(vp), v1 = _mm256_loadu_ps(vp + 8), v2 = _mm256_loadu_ps(vp + 16);
            __m256 v3 = _mm256_loadu_ps(vp + 24), b0 = _mm256_broadcast_ss(w0 + p);
            /* the values in registers: left to itself the compiler folds each load into both rows'
             * multiply-adds, 10 loads for 8 FMAs, and the load ports rather than the FMAs set the pace */
            __asm__("" : "+x"(v0), "+x"(v1), "+x"(v2), "+x"(v3));
            ATTN_FMA_F32(x0, v0, b0);
            ATTN_FMA_F32(x1, v1, b0);
            ATTN_FMA_F32(x2, v2, b0);
            ATTN_FMA_F32(x3, v3, b0);
            if (two) {
                __m256 b1 = _mm256_broadcast_ss(w1 + p);
                ATTN_FMA_F32(y0, v0, b1);
                ATTN_FMA_F32(y1, v1, b1);
                ATTN_FMA_F32(y2, v2, b1);
                ATTN_FMA_F32(y3, v3, b1);
            }
        }
        _mm256_storeu_ps(acc0 + i, x0);
        _mm256_storeu_ps(acc0 + i + 8, x1);
        _mm256_storeu_ps(acc0 + i + 16, x2);
        _mm256_storeu_ps(acc0 + i + 24, x3);
        if (two) {
            _mm256_storeu_ps(acc1 + i, y0);
            _mm256_storeu_ps(acc1 + i + 8, y1);
            _mm256_storeu_ps(acc1 + i + 16, y2);
            _mm256_storeu_ps(acc1 + i + 24, y3);
        }
    }
    for (int r = 0; r < (two ? 2 : 1); r++) {
        float *a = r ? acc1 : acc0;
        const float *w = r ? w1 : w0;
        for (int j = i; j < hd; j += 8) {
            __m256 x = _mm256_mul_ps(_mm256_loadu_ps(a + j), r ? g1 : g0);
            for (int p = 0; p < n; p++) ATTN_FMA_F32(x, _mm256_loadu_ps(vf + (size_t)p * hd + j), _mm256_broadcast_ss(w + p));
            _mm256_storeu_ps(a + j, x);
        }
    }
}

/* Where the half-precision order keeps, in its scratch after the block's keys
 * and values: three rows' weights, then their factors, then the keys
 * transposed. */
#define ATTN_HALF_MS (3 * PV_ATTN_BLOCK)
#define ATTN_HALF_KT (6 * PV_ATTN_BLOCK)

/* A group of rows (r[0..nr-1]) over a block (half-precision order, up to
 * three rows: kf the keys as rows) or a tile (tiled order, up to two: kf
 * the keys transposed); w is scratch for the rows' weights and factors. */
PV_AVX2 static PV_INLINE void attn_rows(const float *q, const int *r, int nr, const float *kf, const float *vf,
                                        const int *n_pos, int hd, float scale, pv_attn_state_t *st, float *acc,
                                        float *w, int tiled) {
    int n = 0;
    for (int k = 0; k < nr; k++)
        if (n_pos[r[k]] > n) n = n_pos[r[k]];
    float *a0 = acc + (size_t)r[0] * hd;
    if (tiled) {
        float *w1 = w + PV_ATTN_TILE;
        float s0[PV_ATTN_TILE], s1[PV_ATTN_TILE];
        if (nr == 1) { /* separate calls with a constant NULL, so that the inlined loops drop the second row */
            attn_scores_tile(q + (size_t)r[0] * hd, kf, hd, scale, s0);
            float f0;
            attn_weights_f32(s0, n_pos[r[0]], &st[r[0]], w, &f0, NULL, 0, NULL, NULL, NULL);
            attn_accumulate_f32(a0, w, f0, NULL, NULL, 1.0f, vf, n, hd, 0);
            return;
        }
        attn_scores_tile2(q + (size_t)r[0] * hd, q + (size_t)r[1] * hd, kf, hd, scale, s0, s1);
        float f0, f1;
        attn_weights_f32(s0, n_pos[r[0]], &st[r[0]], w, &f0, s1, n_pos[r[1]], &st[r[1]], w1, &f1);
        attn_accumulate_f32(a0, w, f0, acc + (size_t)r[1] * hd, w1, f1, vf, n, hd, 1);
        return;
    }
    attn_row_t row[3];
    for (int k = 0; k < nr; k++) {
        float *wk = w + k * PV_ATTN_BLOCK, *ms = w + ATTN_HALF_MS + k * PV_ATTN_BLOCK;
        unsigned nm = attn_weights(q + (size_t)r[k] * hd, w + ATTN_HALF_KT, kf, n_pos[r[k]], hd, scale, &st[r[k]], wk, ms);
        row[k] = (attn_row_t){acc + (size_t)r[k] * hd, wk, ms, nm};
    }
    if (nr == 3) attn_accumulate(&row[0], &row[1], &row[2], vf, n, hd); /* constant NULLs again */
    else if (nr == 2) attn_accumulate(&row[0], &row[1], NULL, vf, n, hd);
    else attn_accumulate(&row[0], NULL, NULL, vf, n, hd);
}

/* The rows that see the keys kf and values vf, in groups: two at a time in
 * the tiled order; three in the half-precision order, or two where that
 * would leave one alone (a lone row's sums are one chain at a time). */
PV_AVX2 static PV_INLINE void attn_groups(const float *q, int nr, const float *kf, const float *vf, const int *n_pos,
                                          int hd, float scale, pv_attn_state_t *st, float *acc, float *w, int tiled) {
    int left = 0;
    for (int r = 0; r < nr; r++) left += n_pos[r] > 0;
    int rows[3], k = 0, size = 0;
    for (int r = 0; r < nr; r++) {
        if (n_pos[r] <= 0) continue;
        if (k == 0) {
            size = tiled || left == 4 ? 2 : 3;
            if (size > left) size = left;
        }
        rows[k++] = r;
        left--;
        if (k < size) continue;
        attn_rows(q, rows, k, kf, vf, n_pos, hd, scale, st, acc, w, tiled);
        k = 0;
    }
}

/* dst[j][i] = src[i][j] for an 8x8 block of floats (row strides ss, ds). */
PV_AVX2 static inline void transpose8(const float *src, size_t ss, float *dst, size_t ds) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ss), r2 = _mm256_loadu_ps(src + 2 * ss);
    __m256 r3 = _mm256_loadu_ps(src + 3 * ss), r4 = _mm256_loadu_ps(src + 4 * ss), r5 = _mm256_loadu_ps(src + 5 * ss);
    __m256 r6 = _mm256_loadu_ps(src + 6 * ss), r7 = _mm256_loadu_ps(src + 7 * ss);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3);
    __m256 t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)), u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)), u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* The twins' arithmetic with the work rearranged: keys and values as floats
 * once for all rows (the block converted here; a tile by the caller), scores
 * 8 positions at a time (summed in float lanes where the twins sum in double),
 * rows accumulated in pairs (in the half-precision order each step rounded to
 * half as in its twin). hd is a multiple of 8; the dispatchers below compile
 * these once per common head size, so that their loops over the head unroll. */
PV_AVX2 static PV_INLINE void attn_block_hd(const float *q, int nr, const uint16_t *k, const uint16_t *v, size_t stride,
                                            const int *n_pos, int hd, float scale, pv_attn_state_t *st, float *acc,
                                            float *scratch) {
    int n_max = 0;
    for (int r = 0; r < nr; r++)
        if (n_pos[r] > n_max) n_max = n_pos[r];
    if (n_max <= 0) return;
    float *kf = scratch, *vf = kf + (size_t)PV_ATTN_BLOCK * hd, *w = vf + (size_t)PV_ATTN_BLOCK * hd;
    for (int p = 0; p < n_max; p++) {
        const uint16_t *kp = k + (size_t)p * stride, *vp = v + (size_t)p * stride;
        float *kd = kf + (size_t)p * hd, *vd = vf + (size_t)p * hd;
#pragma GCC unroll 16
        for (int i = 0; i < hd; i += 8) {
            _mm256_storeu_ps(kd + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kp + i))));
            _mm256_storeu_ps(vd + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vp + i))));
        }
    }
    for (int p = n_max; p < (n_max + 7) / 8 * 8; p++) /* scores of 8 positions at a time read past the live ones */
        for (int i = 0; i < hd; i += 8) _mm256_storeu_ps(kf + (size_t)p * hd + i, _mm256_setzero_ps());
    float *kt = w + ATTN_HALF_KT;
    for (int p = 0; p < n_max; p += 8)
        for (int d = 0; d < hd; d += 8) transpose8(kf + (size_t)p * hd + d, (size_t)hd, kt + (size_t)d * PV_ATTN_BLOCK + p, PV_ATTN_BLOCK);
    attn_groups(q, nr, kf, vf, n_pos, hd, scale, st, acc, w, 0);
}

PV_AVX2 static void attn_block(const float *q, int nr, const uint16_t *k, const uint16_t *v, size_t stride,
                               const int *n_pos, int hd, float scale, pv_attn_state_t *st, float *acc, float *scratch) {
    switch (hd) {
    case 32: attn_block_hd(q, nr, k, v, stride, n_pos, 32, scale, st, acc, scratch); break;
    case 64: attn_block_hd(q, nr, k, v, stride, n_pos, 64, scale, st, acc, scratch); break;
    case 128: attn_block_hd(q, nr, k, v, stride, n_pos, 128, scale, st, acc, scratch); break;
    default:
        if (hd % 8 == 0) attn_block_hd(q, nr, k, v, stride, n_pos, hd, scale, st, acc, scratch);
        else pv_attn_block_ref(q, nr, k, v, stride, n_pos, hd, scale, st, acc, scratch);
    }
}

/* The tile's keys transposed once for all rows (zero past the live ones), then the rows in pairs. */
PV_AVX2 static PV_INLINE void attn_tile_hd(const float *q, int nr, const float *kf, const float *vf, const int *n_pos,
                                           int hd, float scale, pv_attn_state_t *st, float *acc, float *scratch) {
    int n_max = 0;
    for (int r = 0; r < nr; r++)
        if (n_pos[r] > n_max) n_max = n_pos[r];
    if (n_max <= 0) return;
    float *w = scratch, *kt = w + 2 * PV_ATTN_TILE;
    int len = (n_max + 7) / 8 * 8;
    for (int p = 0; p < len; p += 8)
        for (int d = 0; d < hd; d += 8) transpose8(kf + (size_t)p * hd + d, (size_t)hd, kt + (size_t)d * PV_ATTN_TILE + p, PV_ATTN_TILE);
    if (len < PV_ATTN_TILE)
        for (int d = 0; d < hd; d++) memset(kt + (size_t)d * PV_ATTN_TILE + len, 0, (size_t)(PV_ATTN_TILE - len) * sizeof *kt);
    attn_groups(q, nr, kt, vf, n_pos, hd, scale, st, acc, w, 1);
}

PV_AVX2 static void attn_tile(const float *q, int nr, const float *kf, const float *vf, const int *n_pos, int hd,
                              float scale, pv_attn_state_t *st, float *acc, float *scratch) {
    switch (hd) {
    case 32: attn_tile_hd(q, nr, kf, vf, n_pos, 32, scale, st, acc, scratch); break;
    case 64: attn_tile_hd(q, nr, kf, vf, n_pos, 64, scale, st, acc, scratch); break;
    case 128: attn_tile_hd(q, nr, kf, vf, n_pos, 128, scale, st, acc, scratch); break;
    default:
        if (hd % 8 == 0) attn_tile_hd(q, nr, kf, vf, n_pos, hd, scale, st, acc, scratch);
        else pv_attn_tile_ref(q, nr, kf, vf, n_pos, hd, scale, st, acc, scratch);
    }
}

/* a = silu(a) * b, 8 at a time with ggml's vector exp; the twin's expf on the tail (as llama.cpp). */
PV_AVX2 static void swiglu(float *a, const float *b, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(a + i);
        __m256 e = exp_ggml_ps(_mm256_sub_ps(_mm256_setzero_ps(), x));
        __m256 silu = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(a + i, _mm256_mul_ps(silu, _mm256_loadu_ps(b + i)));
    }
    if (i < n) pv_swiglu_ref(a + i, b + i, n - i);
}

PV_AVX2 static void exp_shifted(float *y, const float *x, int n, float max, float scale) {
    const __m256 m = _mm256_set1_ps(max), s = _mm256_set1_ps(scale), none = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = exp_ggml_ps(_mm256_mul_ps(_mm256_sub_ps(v, m), s));
        _mm256_storeu_ps(y + i, _mm256_and_ps(e, _mm256_cmp_ps(v, none, _CMP_NEQ_OQ)));
    }
    if (i < n) pv_exp_shifted_ref(y + i, x + i, n - i, max, scale);
}

/* RoPE 4 pairs (pairs style) or 8 (NeoX halves) at a time, each element
 * with the twin's two roundings: x0 c - (x1 s) and x0 s + (x1 c), one fused
 * multiply-add on the first product. */
PV_AVX2 static void rope_apply(float *x, int n_rot, const float *cs, int neox) {
    int half = n_rot / 2, i = 0;
    if (!neox)
        for (; i + 4 <= half; i += 4) { /* x: x0 x1 of 4 pairs; cs: c s of the same 4 */
            __m256 v = _mm256_loadu_ps(x + 2 * i), t = _mm256_loadu_ps(cs + 2 * i);
            __m256 sw = _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)); /* x1 x0 */
            __m256 c = _mm256_moveldup_ps(t), s = _mm256_movehdup_ps(t);
            __m256 even = _mm256_fmsub_ps(v, c, _mm256_mul_ps(sw, s)); /* x0 c - (x1 s) */
            __m256 odd = _mm256_fmadd_ps(sw, s, _mm256_mul_ps(v, c));  /* x0 s + (x1 c) */
            _mm256_storeu_ps(x + 2 * i, _mm256_blend_ps(even, odd, 0xaa));
        }
    else
        for (; i + 8 <= half; i += 8) { /* x0: x[i..], x1: x[i + half..]; cs interleaved */
            __m256 lo = _mm256_loadu_ps(cs + 2 * i), hi = _mm256_loadu_ps(cs + 2 * i + 8);
            __m256 c = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0))), 0xd8));
            __m256 s = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))), 0xd8));
            __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + half);
            _mm256_storeu_ps(x + i, _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s)));
            _mm256_storeu_ps(x + i + half, _mm256_fmadd_ps(x0, s, _mm256_mul_ps(x1, c)));
        }
    pv_rope_apply_from(x, n_rot, cs, neox, i);
}

pv_attn_block_fn pv__avx2_attn_block(void) { return attn_block; }
pv_attn_tile_fn pv__avx2_attn_tile(void) { return attn_tile; }
pv_swiglu_fn pv__avx2_swiglu(void) { return swiglu; }
pv_exp_shifted_fn pv__avx2_exp_shifted(void) { return exp_shifted; }
pv_rope_fn pv__avx2_rope(void) { return rope_apply; }
PV_AVX2 static void expf8_call(const float *x, float *y) { expf8(x, y); }
pv_expf8_fn pv__avx2_expf8(void) { return expf8_call; }

pv_vec_dot4_fn pv__avx2_vec_dot4(pv_type_t t) {
    switch (t) {
    case PV_TYPE_Q4_0: return q4_0_q8_0_x4;
    case PV_TYPE_Q8_0: return q8_0_q8_0_x4;
    case PV_TYPE_Q4_K: return q4_K_q8_K_x4;
    case PV_TYPE_Q5_K: return q5_K_q8_K_x4;
    default: return NULL;
    }
}

pv_vec_dot_fn pv__avx2_vec_dot1(pv_type_t t) { return t == PV_TYPE_BF16 ? bf16_bf16_1 : NULL; }

pv_vec_dot_fn pv__avx2_vec_dot(pv_type_t t) {
    switch (t) {
    case PV_TYPE_F32: return f32_f32;
    case PV_TYPE_F16: return f16_f16;
    case PV_TYPE_BF16: return bf16_bf16;
    case PV_TYPE_Q4_0: return q4_0_q8_0;
    case PV_TYPE_Q8_0: return q8_0_q8_0;
    case PV_TYPE_Q4_K: return q4_K_q8_K;
    case PV_TYPE_Q5_K: return q5_K_q8_K;
    case PV_TYPE_Q6_K: return q6_K_q8_K;
    default: return NULL;
    }
}
