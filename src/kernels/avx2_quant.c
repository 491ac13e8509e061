/* avx2_quant.c - AVX2 activation quantizers (and f16 widening), the fast twins of ref.c's
 * from_float (to_float) routines, bit for bit: the same block maximum, the same scale
 * and multiplier computed in scalar float, the same products rounded to nearest even. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kern.h"
#include "kernels/kern_internal.h"

#define PV_AVX2 __attribute__((target("avx2,fma,f16c")))

PV_AVX2 static void q8_0_from_float(const float *x, void *row, int64_t n) {
    pv_block_q8_0 *b = row;
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n / PV_QK; i++, x += PV_QK) {
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16),
               v3 = _mm256_loadu_ps(x + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, abs_mask), _mm256_and_ps(v1, abs_mask)),
                                 _mm256_max_ps(_mm256_and_ps(v2, abs_mask), _mm256_and_ps(v3, abs_mask)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h), d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        b[i].d = pv_f32_to_f16(d);
        __m256 s = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, s));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, s));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, s));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, s));
        /* packs work within 128-bit lanes; the permute puts the 8 groups of 4 back in order */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)b[i].qs, p);
    }
}

PV_AVX2 static inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* q8_K: the scale comes from the first element of largest magnitude (its
 * sign included), products are rounded to nearest even as lrintf does in
 * the default rounding mode (cvtps_epi32), clamped at 127, and summed by 16. */
PV_AVX2 static void q8_K_from_float(const float *x, void *row, int64_t n) {
    pv_block_q8_K *b = row;
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n / PV_QK_K; i++, x += PV_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < PV_QK_K; j += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h), max = 0.0f;
        memset(&b[i], 0, sizeof b[i]);
        if (!(amax > 0.0f)) continue;
        __m256 target = _mm256_set1_ps(amax);
        for (int j = 0; j < PV_QK_K; j += 8) { /* the first element that reaches amax */
            int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask), target, _CMP_EQ_OQ));
            if (hit) {
                max = x[j + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        float iscale = -127.0f / max;
        __m256 s = _mm256_set1_ps(iscale);
        const __m256i top = _mm256_set1_epi32(127);
        for (int j = 0; j < PV_QK_K; j += 32) {
            __m256i i0 = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j), s)), top);
            __m256i i1 = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8), s)), top);
            __m256i i2 = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 16), s)), top);
            __m256i i3 = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 24), s)), top);
            b[i].bsums[j / 16] = (int16_t)hsum_epi32(_mm256_add_epi32(i0, i1));
            b[i].bsums[j / 16 + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(i2, i3));
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(b[i].qs + j), p);
        }
        b[i].d = 1.0f / iscale;
    }
}

/* f16: F16C rounds to nearest even, as pv_f32_to_f16 does. */
PV_AVX2 static void f16_from_float(const float *x, void *row, int64_t n) {
    uint16_t *y = row;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = pv_f32_to_f16(x[i]);
}

/* In ascending order, 8 at a time (x8.c widens a row's halves in place). */
PV_AVX2 static void f16_to_float(const void *row, float *y, int64_t n) {
    const uint16_t *x = row;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = pv_f16_to_f32(x[i]);
}

/* The x8 activation heads: maddubs by ones pairs the bytes (0, 1), (2, 3) of
 * each 4-byte piece into int16 lanes, which madd then picks apart: the even
 * lanes for the first sum, the odd ones for the second. */
PV_AVX2 static void x8_heads(const pv_block_q8_0 *y, pv_x8_head *h, int64_t nb) {
    const __m256i ones = _mm256_set1_epi8(1), lo = _mm256_set1_epi32(1), hi = _mm256_set1_epi32(1 << 16);
    for (int64_t b = 0; b < nb; b++) {
        __m256i pairs = _mm256_maddubs_epi16(ones, _mm256_loadu_si256((const __m256i *)y[b].qs));
        int32_t s0 = hsum_epi32(_mm256_madd_epi16(pairs, lo)), s1 = hsum_epi32(_mm256_madd_epi16(pairs, hi));
        h[b] = (pv_x8_head){_cvtsh_ss(y[b].d), {(int16_t)(-8 * s0), (int16_t)(-8 * s1)}};
    }
}

pv_x8_heads_fn pv__avx2_x8_heads(void) { return x8_heads; }

pv_to_float_fn pv__avx2_to_float(pv_type_t t) { return t == PV_TYPE_F16 ? f16_to_float : NULL; }

pv_from_float_fn pv__avx2_from_float(pv_type_t t) {
    switch (t) {
    case PV_TYPE_F16: return f16_from_float;
    case PV_TYPE_Q8_0: return q8_0_from_float;
    case PV_TYPE_Q8_K: return q8_K_from_float;
    default: return NULL;
    }
}
