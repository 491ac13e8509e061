/* avx2_x8.c - AVX2 kernels for the row-interleaved layout (PV_LAYOUT_X8), the
 * fast twins of x8.c's scalar routines.
 *
 * A 32-byte load of an x8 block holds 4 bytes of each of 8 rows (row r in
 * 32-bit lane r); one broadcast of the 4 matching activation bytes meets all
 * 8 rows in one maddubs, and one convert and one FMA with the 8 rows' scales
 * finish a block. Integer sums are exact; only the order of float additions
 * differs from the twins. 4 tokens share each decoded load; their sums stay
 * in named registers (an array would be kept on the stack). */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kern.h"
#include "kernels/kern_internal.h"

#define PV_AVX2 __attribute__((target("avx2,fma,f16c")))

/* 4 activation bytes in every 32-bit lane. */
PV_AVX2 static inline __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Software prefetch, PREFETCH_AHEAD bytes ahead, of a block's worth of
 * weights: a group's blocks are read in order, but q6_K's x8 block is read
 * out of order (scales at its end first) and every kernel reads several
 * places of a block, which keeps the hardware prefetchers from running far
 * enough ahead to hide memory latency; with one token there is little work
 * per byte to hide it behind, and the 4-token kernels, whose work per byte
 * is 4 times larger, still stall on every miss without it. */
#define PREFETCH_AHEAD 3072
PV_AVX2 static inline void prefetch_ahead(const void *block, size_t size) {
    for (size_t off = 0; off < size; off += 64) _mm_prefetch((const char *)block + PREFETCH_AHEAD + off, _MM_HINT_T0);
}

/* The first 4-token pass over two groups (a decode step of 4 streams: the
 * weights come from memory once) does four times the work per byte of one
 * token, and runs faster fetching much further ahead into L2 than the
 * one-token kernels do into L1 (4 streams on the 1.1B models, alternated:
 * Q4_0 84 -> 93 tok/s, Q4_K_M 63 -> 67; the same change measured nothing for
 * one token, and -5% for q8_0's one-group kernel). */
#define PREFETCH_FAR 32768
PV_AVX2 static inline void prefetch_far(const void *block, size_t size) {
    for (size_t off = 0; off < size; off += 64) _mm_prefetch((const char *)block + PREFETCH_FAR + off, _MM_HINT_T1);
}

/* The 8 rows' scales times the token's scale. */
PV_AVX2 static inline __m256 scales(const uint16_t *d, const pv_x8_head *h) {
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d)), _mm256_set1_ps(h->d));
}

/* A token's int32 sums of one block of 8 rows -> its 8 float row sums added into acc. */
PV_AVX2 static inline __m256 finish32(__m256i s, const uint16_t *d, const pv_x8_head *h, __m256 acc) {
    return _mm256_fmadd_ps(scales(d, h), _mm256_cvtepi32_ps(s), acc);
}

/* A two-group kernel's start: its float sums zeroed, and token j's
 * activation row (nt = 3: the third token twice). */
PV_AVX2 static inline void x16_zero(float *acc) {
    for (int i = 0; i < 4 * 2 * PV_X8; i += 8) _mm256_storeu_ps(acc + i, _mm256_setzero_ps());
}
static inline const uint8_t *x16_row(const uint8_t *a, size_t a_stride, int nt, int j) {
    return a + (size_t)(j < nt ? j : nt - 1) * a_stride;
}

/* Where up to 4 tokens' heads and q8_0 blocks start, for the two-group
 * q4_0 and q8_0 kernels; x16_begin also zeroes their float sums. */
typedef struct {
    const pv_x8_head *h[4];
    const pv_block_q8_0 *y[4];
} x16_acts_t;

PV_AVX2 static inline x16_acts_t x16_begin(const uint8_t *a, size_t a_stride, int64_t n, int nt, float *acc) {
    x16_acts_t t;
    for (int j = 0; j < 4; j++) {
        t.h[j] = (const pv_x8_head *)x16_row(a, a_stride, nt, j);
        t.y[j] = pv__x8_act_blocks(t.h[j], n);
    }
    x16_zero(acc);
    return t;
}

/* A block's int32 sums of two groups x, u against 4 tokens (sj: token j of
 * x, tj: of u) into the rows' float sums, token j's 16 at acc + 16 j. */
PV_AVX2 static inline void x16_finish(float *acc, const uint16_t *dx, const uint16_t *du, const pv_x8_head *const *h,
                                      int64_t b, __m256i s0, __m256i t0, __m256i s1, __m256i t1, __m256i s2,
                                      __m256i t2, __m256i s3, __m256i t3) {
    _mm256_storeu_ps(acc, finish32(s0, dx, &h[0][b], _mm256_loadu_ps(acc)));
    _mm256_storeu_ps(acc + 8, finish32(t0, du, &h[0][b], _mm256_loadu_ps(acc + 8)));
    _mm256_storeu_ps(acc + 16, finish32(s1, dx, &h[1][b], _mm256_loadu_ps(acc + 16)));
    _mm256_storeu_ps(acc + 24, finish32(t1, du, &h[1][b], _mm256_loadu_ps(acc + 24)));
    _mm256_storeu_ps(acc + 32, finish32(s2, dx, &h[2][b], _mm256_loadu_ps(acc + 32)));
    _mm256_storeu_ps(acc + 40, finish32(t2, du, &h[2][b], _mm256_loadu_ps(acc + 40)));
    _mm256_storeu_ps(acc + 48, finish32(s3, dx, &h[3][b], _mm256_loadu_ps(acc + 48)));
    _mm256_storeu_ps(acc + 56, finish32(t3, du, &h[3][b], _mm256_loadu_ps(acc + 56)));
}

/* q4_0: nibbles 0..15 are unsigned, so maddubs takes them against signed
 * activations directly. The offset of 8 comes out through where the int16
 * sums start, the token's head (-8 times its block sums, per int16 half):
 * sum (q - 8) a = sum q a - 8 sum a. */
PV_AVX2 static inline __m256i q4_0_tok(__m256i lo, __m256i hi, const int8_t *aq, int c, __m256i s) {
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(lo, bcast4(aq + 4 * c)));
    return _mm256_add_epi16(s, _mm256_maddubs_epi16(hi, bcast4(aq + 16 + 4 * c)));
}

/* Where a token's int16 sums of a block start (see pv_x8_head). */
PV_AVX2 static inline __m256i q4_0_start(const pv_x8_head *h) { return bcast4((const int8_t *)h->offset); }

/* A token's int16 sums of one block as int32, a pair of lanes per row. */
PV_AVX2 static inline __m256i q4_0_widen(__m256i s16) { return _mm256_madd_epi16(s16, _mm256_set1_epi16(1)); }

/* A token's int16 sums of one block -> its 8 float row sums added into acc. */
PV_AVX2 static inline __m256 q4_0_finish(__m256i s16, const uint16_t *d, const pv_x8_head *h, __m256 acc) {
    return finish32(q4_0_widen(s16), d, h, acc);
}

PV_AVX2 static void q4_0_x8_1(const pv_block_q4_0x8 *x, const uint8_t *a, int64_t n, float *out) {
    const pv_x8_head *h = (const pv_x8_head *)a;
    const pv_block_q8_0 *y = pv__x8_act_blocks(a, n);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / PV_QK; b++) {
        __m256i s = q4_0_start(&h[b]);
        prefetch_ahead(&x[b], sizeof x[b]);
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * c));
            s = q4_0_tok(_mm256_and_si256(v, low4), _mm256_and_si256(_mm256_srli_epi16(v, 4), low4), y[b].qs, c, s);
        }
        acc = q4_0_finish(s, x[b].d, &h[b], acc);
    }
    _mm256_storeu_ps(out, acc);
}

PV_AVX2 static void q4_0_x8_4(const pv_block_q4_0x8 *x, const uint8_t *a, size_t a_stride, int64_t n, float *out, int nt, int ahead) {
    const pv_x8_head *h0 = (const pv_x8_head *)a, *h1 = (const pv_x8_head *)(a + a_stride);
    const pv_x8_head *h2 = (const pv_x8_head *)(a + 2 * a_stride), *h3 = (const pv_x8_head *)(a + (nt > 3 ? 3 : 2) * a_stride);
    const pv_block_q8_0 *y0 = pv__x8_act_blocks(h0, n), *y1 = pv__x8_act_blocks(h1, n);
    const pv_block_q8_0 *y2 = pv__x8_act_blocks(h2, n), *y3 = pv__x8_act_blocks(h3, n);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int64_t b = 0; b < n / PV_QK; b++) {
        __m256i s0 = q4_0_start(&h0[b]), s1 = q4_0_start(&h1[b]), s2 = q4_0_start(&h2[b]), s3 = q4_0_start(&h3[b]);
        if (ahead) prefetch_ahead(&x[b], sizeof x[b]);
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * c));
            __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            s0 = q4_0_tok(lo, hi, y0[b].qs, c, s0);
            s1 = q4_0_tok(lo, hi, y1[b].qs, c, s1);
            s2 = q4_0_tok(lo, hi, y2[b].qs, c, s2);
            s3 = q4_0_tok(lo, hi, y3[b].qs, c, s3);
        }
        acc0 = q4_0_finish(s0, x[b].d, &h0[b], acc0);
        acc1 = q4_0_finish(s1, x[b].d, &h1[b], acc1);
        acc2 = q4_0_finish(s2, x[b].d, &h2[b], acc2);
        acc3 = q4_0_finish(s3, x[b].d, &h3[b], acc3);
    }
    _mm256_storeu_ps(out, acc0);
    _mm256_storeu_ps(out + 8, acc1);
    _mm256_storeu_ps(out + 16, acc2);
    if (nt > 3) _mm256_storeu_ps(out + 24, acc3);
}

/* Keeps v in a register at this point: without it the compiler regroups a
 * block's int16 additions (they are associative) into a tree that computes
 * every product first and spills them. */
#define PIN(v) __asm__("" : "+x"(v))

/* Two groups' sums of a step, pinned (above) and stored back. */
PV_AVX2 static inline void keep2(__m256i a, __m256i b, __m256i *s, __m256i *t) {
    PIN(a);
    PIN(b);
    *s = a;
    *t = b;
}

/* One token's int16 sums for one 32-byte piece of two groups at once: each
 * broadcast of 4 activation bytes meets both groups' nibbles. */
PV_AVX2 static inline void q4_0_tok2(__m256i l0, __m256i h0, __m256i l1, __m256i h1, const int8_t *aq, int c, __m256i *s,
                                     __m256i *t) {
    __m256i q = bcast4(aq + 4 * c), p = bcast4(aq + 16 + 4 * c);
    __m256i a = _mm256_add_epi16(*s, _mm256_maddubs_epi16(l0, q)), b = _mm256_add_epi16(*t, _mm256_maddubs_epi16(l1, q));
    a = _mm256_add_epi16(a, _mm256_maddubs_epi16(h0, p));
    b = _mm256_add_epi16(b, _mm256_maddubs_epi16(h1, p));
    keep2(a, b, s, t);
}

/* Two adjacent groups (16 rows) against up to 4 tokens: three instructions
 * per 32 multiply-adds where two passes of q4_0_x8_4 take four. The 8 int16
 * sums of a block stay in registers; the rows' float sums live in acc
 * (token j's 16 rows at acc + 16 j), updated once per block. */
PV_AVX2 static void q4_0_x16_4(const pv_block_q4_0x8 *x, const pv_block_q4_0x8 *u, const uint8_t *a, size_t a_stride,
                               int64_t n, float *acc, int nt, int ahead) {
    const x16_acts_t ac = x16_begin(a, a_stride, n, nt, acc);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    for (int64_t b = 0; b < n / PV_QK; b++) {
        __m256i s0 = q4_0_start(&ac.h[0][b]), s1 = q4_0_start(&ac.h[1][b]), s2 = q4_0_start(&ac.h[2][b]), s3 = q4_0_start(&ac.h[3][b]);
        __m256i t0 = s0, t1 = s1, t2 = s2, t3 = s3;
        if (ahead) {
            prefetch_far(&x[b], sizeof x[b]);
            prefetch_far(&u[b], sizeof u[b]);
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * c));
            __m256i w = _mm256_loadu_si256((const __m256i *)(u[b].qs + 32 * c));
            __m256i l0 = _mm256_and_si256(v, low4), h0 = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            __m256i l1 = _mm256_and_si256(w, low4), h1 = _mm256_and_si256(_mm256_srli_epi16(w, 4), low4);
            q4_0_tok2(l0, h0, l1, h1, ac.y[0][b].qs, c, &s0, &t0);
            q4_0_tok2(l0, h0, l1, h1, ac.y[1][b].qs, c, &s1, &t1);
            q4_0_tok2(l0, h0, l1, h1, ac.y[2][b].qs, c, &s2, &t2);
            q4_0_tok2(l0, h0, l1, h1, ac.y[3][b].qs, c, &s3, &t3);
        }
        x16_finish(acc, x[b].d, u[b].d, ac.h, b, q4_0_widen(s0), q4_0_widen(t0), q4_0_widen(s1), q4_0_widen(t1),
                   q4_0_widen(s2), q4_0_widen(t2), q4_0_widen(s3), q4_0_widen(t3));
    }
}

/* q8_0, in the order of llama.cpp's q8_0 dot products (ggml_vec_dot_q8_0_q8_0
 * and the llamafile tiles, which agree): each row keeps 8 float lanes, lane c
 * summing piece c (elements 4c..4c+3) of every block, one fused multiply-add
 * per block by the block's scale, and the lanes are added at the end as
 * hsum_float_8 does. In the x8 layout piece c of the 8 rows is one load, so
 * lane c of the 8 rows is one register. Signed by signed through the sign
 * trick, |w| times a with w's sign (activations are never -128: q8_0 rounds
 * to +-127, so negating them is exact). */
PV_AVX2 static inline __m256 q8_0_piece(__m256i aw, __m256i w, const int8_t *aq, int c, __m256 d, __m256 acc) {
    __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(bcast4(aq + 4 * c), w));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1))), acc);
}

/* The 8 lanes of each row added: (l0 + l4) + (l2 + l6), plus (l1 + l5) + (l3 + l7). */
PV_AVX2 static inline __m256 q8_0_lanes(const __m256 *l) {
    return _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(l[0], l[4]), _mm256_add_ps(l[2], l[6])),
                         _mm256_add_ps(_mm256_add_ps(l[1], l[5]), _mm256_add_ps(l[3], l[7])));
}

PV_AVX2 static void q8_0_x8_1(const pv_block_q8_0x8 *x, const uint8_t *a, int64_t n, float *out) {
    const pv_x8_head *h = (const pv_x8_head *)a;
    const pv_block_q8_0 *y = pv__x8_act_blocks(a, n);
    __m256 l[8];
    for (int c = 0; c < 8; c++) l[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / PV_QK; b++) {
        prefetch_ahead(&x[b], sizeof x[b]);
        __m256 d = scales(x[b].d, &h[b]);
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256i w = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * c));
            l[c] = q8_0_piece(_mm256_sign_epi8(w, w), w, y[b].qs, c, d, l[c]);
        }
    }
    _mm256_storeu_ps(out, q8_0_lanes(l));
}

/* 4 tokens share each piece's load; their 32 lanes live in memory (L1). */
PV_AVX2 static void q8_0_x8_4(const pv_block_q8_0x8 *x, const uint8_t *a, size_t a_stride, int64_t n, float *out, int nt, int ahead) {
    const pv_x8_head *h[4];
    const pv_block_q8_0 *y[4];
    __m256 l[4][8];
    for (int j = 0; j < 4; j++) {
        h[j] = (const pv_x8_head *)(a + (size_t)(j < nt ? j : nt - 1) * a_stride);
        y[j] = pv__x8_act_blocks(h[j], n);
        for (int c = 0; c < 8; c++) l[j][c] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / PV_QK; b++) {
        if (ahead) prefetch_ahead(&x[b], sizeof x[b]);
        __m256 d0 = scales(x[b].d, &h[0][b]), d1 = scales(x[b].d, &h[1][b]);
        __m256 d2 = scales(x[b].d, &h[2][b]), d3 = scales(x[b].d, &h[3][b]);
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256i w = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * c)), aw = _mm256_sign_epi8(w, w);
            l[0][c] = q8_0_piece(aw, w, y[0][b].qs, c, d0, l[0][c]);
            l[1][c] = q8_0_piece(aw, w, y[1][b].qs, c, d1, l[1][c]);
            l[2][c] = q8_0_piece(aw, w, y[2][b].qs, c, d2, l[2][c]);
            l[3][c] = q8_0_piece(aw, w, y[3][b].qs, c, d3, l[3][c]);
        }
    }
    for (int j = 0; j < nt; j++) _mm256_storeu_ps(out + PV_X8 * j, q8_0_lanes(l[j]));
}

/* q4_K: per sub-block of 32, the nibbles' sums (int16, 8 maddubs each, as for
 * q4_0) are weighted by the 6-bit scales in one madd; the mins come out
 * through the token's sums of 32 (from q8_K's sums of 16):
 * dot = d_a (d sum_s sc_s sum q a - dmin sum_s m_s sum a). */

/* The 6-bit scales and mins of 8 rows, as 4 vectors of bytes, 4 per lane:
 * sc[0..3] in sc03, sc[4..7] in sc47, mins likewise (ref.c's
 * pv__k_scale_min, for all 8 rows at once). */
typedef struct {
    __m256i sc03, sc47, m03, m47;
} k_scales_t;

PV_AVX2 static inline k_scales_t k_scales(const uint8_t *p) {
    const __m256i m63 = _mm256_set1_epi8(63), low4 = _mm256_set1_epi8(0x0f), top2 = _mm256_set1_epi8(0x30);
    __m256i v0 = _mm256_loadu_si256((const __m256i *)p), v1 = _mm256_loadu_si256((const __m256i *)(p + 32));
    __m256i v2 = _mm256_loadu_si256((const __m256i *)(p + 64));
    k_scales_t s;
    s.sc03 = _mm256_and_si256(v0, m63);
    s.m03 = _mm256_and_si256(v1, m63);
    s.sc47 = _mm256_or_si256(_mm256_and_si256(v2, low4), _mm256_and_si256(_mm256_srli_epi16(v0, 2), top2));
    s.m47 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v2, 4), low4), _mm256_and_si256(_mm256_srli_epi16(v1, 2), top2));
    return s;
}

/* Bytes i and j of each lane as two int16 (0x80: zero). */
#define LANE_PAIR(i, j)                                                                                          \
    _mm256_setr_epi8(i, -128, j, -128, 4 + i, -128, 4 + j, -128, 8 + i, -128, 8 + j, -128, 12 + i, -128, 12 + j, \
                     -128, i, -128, j, -128, 4 + i, -128, 4 + j, -128, 8 + i, -128, 8 + j, -128, 12 + i, -128, 12 + j, -128)

/* Scale of sub-block s of each row, twice per lane (for madd). */
PV_AVX2 static inline __m256i k_sub_scale(const k_scales_t *k, int s) {
    __m256i v = s < 4 ? k->sc03 : k->sc47;
    switch (s & 3) {
    case 0: return _mm256_shuffle_epi8(v, LANE_PAIR(0, 0));
    case 1: return _mm256_shuffle_epi8(v, LANE_PAIR(1, 1));
    case 2: return _mm256_shuffle_epi8(v, LANE_PAIR(2, 2));
    default: return _mm256_shuffle_epi8(v, LANE_PAIR(3, 3));
    }
}

/* The token's sums of 32 (from its sums of 16): 0-3 twice in the low half, 4-7 twice in the high half. */
PV_AVX2 static inline __m256i k_sums32(const pv_block_q8_K *y) {
    __m256i b = _mm256_loadu_si256((const __m256i *)y->bsums);
    return _mm256_hadd_epi16(b, b);
}

/* m_s * (token's sum over sub-block s) per row, summed over the pair of
 * sub-blocks 2c, 2c + 1 (the mins against the sums of 32, k_sums32). */
PV_AVX2 static inline __m256i k_mins_of(const k_scales_t *k, __m256i sums32, int c) {
    __m256i p = _mm256_permutevar8x32_epi32(sums32, _mm256_set1_epi32(c < 2 ? c : c + 2));
    __m256i m = c < 2 ? k->m03 : k->m47;
    return _mm256_madd_epi16(_mm256_shuffle_epi8(m, c % 2 ? LANE_PAIR(2, 3) : LANE_PAIR(0, 1)), p);
}

PV_AVX2 static inline __m256i k_mins_pair(const k_scales_t *k, const pv_block_q8_K *y, int c) {
    return k_mins_of(k, k_sums32(y), c);
}

/* sum_s m_s * (token's sum over sub-block s) per row, the sums of 32 read once. */
PV_AVX2 static inline __m256i k_mins(const k_scales_t *k, const pv_block_q8_K *y) {
    __m256i b = k_sums32(y);
    __m256i s = _mm256_add_epi32(k_mins_of(k, b, 0), k_mins_of(k, b, 1));
    return _mm256_add_epi32(s, _mm256_add_epi32(k_mins_of(k, b, 2), k_mins_of(k, b, 3)));
}

/* One token's share of the 64 elements of chunk c (aq: the token's), each
 * piece decoded as it is used (16 decoded vectors held at once would not
 * stay in registers): the two sub-blocks' int16 sums, weighted by their
 * scales into isum. */
PV_AVX2 static inline __m256i q4_K_chunk_tok(const pv_block_q4_Kx8 *x, int c, const int8_t *aq, __m256i sc_lo,
                                             __m256i sc_hi, __m256i isum) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256i s_lo = _mm256_setzero_si256(), s_hi = s_lo;
    for (int i = 0; i < 8; i++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 256 * c + 32 * i));
        s_lo = _mm256_add_epi16(s_lo, _mm256_maddubs_epi16(_mm256_and_si256(v, low4), bcast4(aq + 4 * i)));
        s_hi = _mm256_add_epi16(s_hi, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), bcast4(aq + 32 + 4 * i)));
    }
    return _mm256_add_epi32(isum, _mm256_add_epi32(_mm256_madd_epi16(s_lo, sc_lo), _mm256_madd_epi16(s_hi, sc_hi)));
}

/* A token's integer sums of one super-block into its 8 float row sums. */
/* Sums into the rows' two float sums, as llama.cpp's q4_K_8x8 kernels keep
 * them: acc gets d_w d_a times the scaled products' sum, accm dmin_w d_a
 * times the mins' sum, each by one fused multiply-add; the result is
 * acc - accm once every block is in. Its gemv (one token) adds a whole
 * block at a time (mins = k_mins), its gemm (4 tokens) each pair of
 * sub-blocks (mins = k_mins_pair). */
PV_AVX2 static inline void q4_K_add(const pv_block_q4_Kx8 *x, const pv_block_q8_K *y, __m256i isum, __m256i mins,
                                    __m256 *acc, __m256 *accm) {
    __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x->d)), _mm256_set1_ps(y->d));
    __m256 dmin = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x->dmin)), _mm256_set1_ps(y->d));
    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, *acc);
    *accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), dmin, *accm);
}

PV_AVX2 static void q4_K_x8_1(const pv_block_q4_Kx8 *x, const uint8_t *a, int64_t n, float *out) {
    const pv_block_q8_K *y = (const pv_block_q8_K *)a;
    __m256 acc = _mm256_setzero_ps(), accm = acc;
    for (int64_t b = 0; b < n / PV_QK_K; b++) {
        prefetch_ahead(&x[b], sizeof x[b]);
        k_scales_t k = k_scales(x[b].scales);
        __m256i isum = _mm256_setzero_si256();
        /* chunks spelled out, so that each k_sub_scale is one shuffle (no switch) */
        isum = q4_K_chunk_tok(&x[b], 0, y[b].qs, k_sub_scale(&k, 0), k_sub_scale(&k, 1), isum);
        isum = q4_K_chunk_tok(&x[b], 1, y[b].qs + 64, k_sub_scale(&k, 2), k_sub_scale(&k, 3), isum);
        isum = q4_K_chunk_tok(&x[b], 2, y[b].qs + 128, k_sub_scale(&k, 4), k_sub_scale(&k, 5), isum);
        isum = q4_K_chunk_tok(&x[b], 3, y[b].qs + 192, k_sub_scale(&k, 6), k_sub_scale(&k, 7), isum);
        q4_K_add(&x[b], &y[b], isum, k_mins(&k, &y[b]), &acc, &accm);
    }
    _mm256_storeu_ps(out, _mm256_sub_ps(acc, accm));
}

/* One sub-block (32 elements: the low (hi = 0) or high nibbles of chunk c)
 * of 8 rows against 4 tokens: each piece is decoded once and meets every
 * token; the int16 sums are weighted by the sub-block's scales into s0..s3. */
#define Q4_K_SUB_X4(x, c, hi, sc)                                                                         \
    {                                                                                                    \
        __m256i p0 = _mm256_setzero_si256(), p1 = p0, p2 = p0, p3 = p0;                                  \
        for (int i = 0; i < 8; i++) {                                                                    \
            __m256i v = _mm256_loadu_si256((const __m256i *)((x)->qs + 256 * (c) + 32 * i));             \
            __m256i q = _mm256_and_si256(hi ? _mm256_srli_epi16(v, 4) : v, low4);                         \
            int at = 64 * (c) + 32 * (hi) + 4 * i;                                                       \
            p0 = _mm256_add_epi16(p0, _mm256_maddubs_epi16(q, bcast4(y0[b].qs + at)));                   \
            p1 = _mm256_add_epi16(p1, _mm256_maddubs_epi16(q, bcast4(y1[b].qs + at)));                   \
            p2 = _mm256_add_epi16(p2, _mm256_maddubs_epi16(q, bcast4(y2[b].qs + at)));                   \
            p3 = _mm256_add_epi16(p3, _mm256_maddubs_epi16(q, bcast4(y3[b].qs + at)));                   \
        }                                                                                                \
        s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(p0, sc));                                            \
        s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(p1, sc));                                            \
        s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(p2, sc));                                            \
        s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(p3, sc));                                            \
    }

/* 4 tokens, a sub-block at a time (16 vectors of a whole chunk would not
 * stay in registers). A full group of 4 tokens (nt = 4) is llama.cpp's gemm
 * and adds each pair of sub-blocks into the float sums; fewer (its leftover
 * rows, which its gemv takes) add whole blocks. */
#define Q4_K_PAIR_X4(c)                                                                                   \
    Q4_K_SUB_X4(&x[b], c, 0, k_sub_scale(&k, 2 * (c)))                                                   \
    Q4_K_SUB_X4(&x[b], c, 1, k_sub_scale(&k, 2 * (c) + 1))                                               \
    if (nt == 4) {                                                                                       \
        q4_K_add(&x[b], &y0[b], s0, k_mins_pair(&k, &y0[b], c), &acc0, &m0);                            \
        q4_K_add(&x[b], &y1[b], s1, k_mins_pair(&k, &y1[b], c), &acc1, &m1);                            \
        q4_K_add(&x[b], &y2[b], s2, k_mins_pair(&k, &y2[b], c), &acc2, &m2);                            \
        q4_K_add(&x[b], &y3[b], s3, k_mins_pair(&k, &y3[b], c), &acc3, &m3);                            \
        s0 = s1 = s2 = s3 = _mm256_setzero_si256();                                                      \
    }

PV_AVX2 static void q4_K_x8_4(const pv_block_q4_Kx8 *x, const uint8_t *a, size_t a_stride, int64_t n, float *out, int nt, int ahead) {
    const pv_block_q8_K *y0 = (const pv_block_q8_K *)a, *y1 = (const pv_block_q8_K *)(a + a_stride);
    const pv_block_q8_K *y2 = (const pv_block_q8_K *)(a + 2 * a_stride), *y3 = (const pv_block_q8_K *)(a + (nt > 3 ? 3 : 2) * a_stride);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, m0 = acc0, m1 = acc0, m2 = acc0, m3 = acc0;
    for (int64_t b = 0; b < n / PV_QK_K; b++) {
        if (ahead) prefetch_ahead(&x[b], sizeof x[b]);
        k_scales_t k = k_scales(x[b].scales);
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
        /* sub-blocks spelled out, so that each k_sub_scale is one shuffle (no switch) */
        Q4_K_PAIR_X4(0)
        Q4_K_PAIR_X4(1)
        Q4_K_PAIR_X4(2)
        Q4_K_PAIR_X4(3)
        if (nt < 4) {
            q4_K_add(&x[b], &y0[b], s0, k_mins(&k, &y0[b]), &acc0, &m0);
            q4_K_add(&x[b], &y1[b], s1, k_mins(&k, &y1[b]), &acc1, &m1);
            q4_K_add(&x[b], &y2[b], s2, k_mins(&k, &y2[b]), &acc2, &m2);
        }
    }
    _mm256_storeu_ps(out, _mm256_sub_ps(acc0, m0));
    _mm256_storeu_ps(out + 8, _mm256_sub_ps(acc1, m1));
    _mm256_storeu_ps(out + 16, _mm256_sub_ps(acc2, m2));
    if (nt > 3) _mm256_storeu_ps(out + 24, _mm256_sub_ps(acc3, m3));
}

/* A sub-block's int16 sums weighted by its scales: the int32 sums of its
 * pair (add = 0: the first of the pair) or added to them. */
PV_AVX2 static inline void q4_K_weigh(__m256i *is, __m256i p, __m256i sc, int add) {
    __m256i m = _mm256_madd_epi16(p, sc);
    _mm256_storeu_si256(is, add ? _mm256_add_epi32(_mm256_loadu_si256(is), m) : m);
}

/* One sub-block (the low (hi = 0) or high nibbles of one chunk: xq, uq its
 * pieces in groups x and u) against 4 tokens (aq: their 32 activations of
 * it): each broadcast meets both groups' pieces, and the int16 sums,
 * weighted by the sub-block's scales (sc[g]: group g's), become the int32
 * sums is[2 j + g] (hi = 0) or are added to them (hi = 1). */
PV_AVX2 static inline void q4_K_sub_x16(const uint8_t *xq, const uint8_t *uq, int hi, const __m256i *sc,
                                        const int8_t *const *aq, __m256i *is) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256i p0 = _mm256_setzero_si256(), p1 = p0, p2 = p0, p3 = p0, t0 = p0, t1 = p0, t2 = p0, t3 = p0;
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(xq + 32 * i));
        __m256i w = _mm256_loadu_si256((const __m256i *)(uq + 32 * i));
        __m256i q = _mm256_and_si256(hi ? _mm256_srli_epi16(v, 4) : v, low4);
        __m256i r = _mm256_and_si256(hi ? _mm256_srli_epi16(w, 4) : w, low4);
        __m256i b = bcast4(aq[0] + 4 * i);
        p0 = _mm256_add_epi16(p0, _mm256_maddubs_epi16(q, b));
        t0 = _mm256_add_epi16(t0, _mm256_maddubs_epi16(r, b));
        b = bcast4(aq[1] + 4 * i);
        p1 = _mm256_add_epi16(p1, _mm256_maddubs_epi16(q, b));
        t1 = _mm256_add_epi16(t1, _mm256_maddubs_epi16(r, b));
        b = bcast4(aq[2] + 4 * i);
        p2 = _mm256_add_epi16(p2, _mm256_maddubs_epi16(q, b));
        t2 = _mm256_add_epi16(t2, _mm256_maddubs_epi16(r, b));
        b = bcast4(aq[3] + 4 * i);
        p3 = _mm256_add_epi16(p3, _mm256_maddubs_epi16(q, b));
        t3 = _mm256_add_epi16(t3, _mm256_maddubs_epi16(r, b));
        PIN(p0);
        PIN(p1);
        PIN(p2);
        PIN(p3);
        PIN(t0);
        PIN(t1);
        PIN(t2);
        PIN(t3);
    }
    q4_K_weigh(&is[0], p0, sc[0], hi);
    q4_K_weigh(&is[1], t0, sc[1], hi);
    q4_K_weigh(&is[2], p1, sc[0], hi);
    q4_K_weigh(&is[3], t1, sc[1], hi);
    q4_K_weigh(&is[4], p2, sc[0], hi);
    q4_K_weigh(&is[5], t2, sc[1], hi);
    q4_K_weigh(&is[6], p3, sc[0], hi);
    q4_K_weigh(&is[7], t3, sc[1], hi);
}

/* A block's integer sums of two groups (is[c][2 j + g]: pair of sub-blocks
 * c, token j, group g) into their float sums (acc, accm: token j's 16 rows
 * at 16 j), as q4_K_add does them: a full group of 4 tokens (nt = 4) one
 * pair of sub-blocks after the other, fewer a whole block at once (see
 * q4_K_x8_4). The tokens' sums of 32 are taken once per block, not per
 * pair. The loops over groups and pairs unroll and nt is a constant at the
 * call for a full group: as plain loops, with the mins kept in an array,
 * their own counting and tests and the array's stores were a quarter of the
 * kernel's instructions. */
PV_AVX2 static inline void q4_K_x16_fold(const pv_block_q4_Kx8 *x, const pv_block_q4_Kx8 *u, const k_scales_t *kx,
                                         const k_scales_t *ku, const pv_block_q8_K *const *yb, const int nt,
                                         __m256i is[4][8], float *acc, float *accm) {
    const k_scales_t *k[2] = {kx, ku};
    const __m256 dw[2] = {_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x->d)),
                          _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)u->d))};
    const __m256 mw[2] = {_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x->dmin)),
                          _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)u->dmin))};
    for (int j = 0; j < 4; j++) {
        __m256i s32 = k_sums32(yb[j]);
        __m256 ya = _mm256_set1_ps(yb[j]->d);
#pragma GCC unroll 2
        for (int g = 0; g < 2; g++) {
            float *o = acc + 2 * PV_X8 * j + PV_X8 * g, *om = accm + 2 * PV_X8 * j + PV_X8 * g;
            __m256 d = _mm256_mul_ps(dw[g], ya), dmin = _mm256_mul_ps(mw[g], ya);
            __m256 sum = _mm256_loadu_ps(o), msum = _mm256_loadu_ps(om);
            if (nt == 4) {
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    sum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[c][2 * j + g]), d, sum);
                    msum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(k_mins_of(k[g], s32, c)), dmin, msum);
                }
            } else {
                __m256i s = _mm256_add_epi32(_mm256_add_epi32(is[0][2 * j + g], is[1][2 * j + g]),
                                             _mm256_add_epi32(is[2][2 * j + g], is[3][2 * j + g]));
                __m256i m = _mm256_add_epi32(_mm256_add_epi32(k_mins_of(k[g], s32, 0), k_mins_of(k[g], s32, 1)),
                                             _mm256_add_epi32(k_mins_of(k[g], s32, 2), k_mins_of(k[g], s32, 3)));
                sum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, sum);
                msum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), dmin, msum);
            }
            _mm256_storeu_ps(o, sum);
            _mm256_storeu_ps(om, msum);
        }
    }
}

/* Two adjacent groups (x, u: 16 rows) against up to 4 tokens (nt = 3: the
 * third token twice), as q4_0_x16_4 does for q4_0; token j's 16 rows at
 * acc + 16 j. A block's sub-block scales are taken apart once, its chunks
 * go through one loop (a body small enough for the op cache with its
 * pieces unrolled), and its integer sums reach the float sums at its end. */
PV_AVX2 static void q4_K_x16_4(const pv_block_q4_Kx8 *x, const pv_block_q4_Kx8 *u, const uint8_t *a, size_t a_stride,
                               int64_t n, float *acc, int nt, int ahead) {
    const pv_block_q8_K *y[4];
    float accm[4 * 2 * PV_X8]; /* the mins' sums, subtracted at the end */
    for (int j = 0; j < 4; j++) y[j] = (const pv_block_q8_K *)x16_row(a, a_stride, nt, j);
    x16_zero(acc);
    x16_zero(accm);
    for (int64_t b = 0; b < n / PV_QK_K; b++) {
        if (ahead) {
            prefetch_far(&x[b], sizeof x[b]);
            prefetch_far(&u[b], sizeof u[b]);
        }
        k_scales_t kx = k_scales(x[b].scales), ku = k_scales(u[b].scales);
        __m256i sc[8][2], is[4][8];
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            sc[s][0] = k_sub_scale(&kx, s);
            sc[s][1] = k_sub_scale(&ku, s);
        }
        const pv_block_q8_K *yb[4] = {&y[0][b], &y[1][b], &y[2][b], &y[3][b]};
#pragma GCC unroll 1
        for (int c = 0; c < 4; c++) {
            const int8_t *lo[4] = {yb[0]->qs + 64 * c, yb[1]->qs + 64 * c, yb[2]->qs + 64 * c, yb[3]->qs + 64 * c};
            const int8_t *hi[4] = {lo[0] + 32, lo[1] + 32, lo[2] + 32, lo[3] + 32};
            q4_K_sub_x16(x[b].qs + 256 * c, u[b].qs + 256 * c, 0, sc[2 * c], lo, is[c]);
            q4_K_sub_x16(x[b].qs + 256 * c, u[b].qs + 256 * c, 1, sc[2 * c + 1], hi, is[c]);
        }
        if (nt == 4) q4_K_x16_fold(&x[b], &u[b], &kx, &ku, yb, 4, is, acc, accm); /* a constant: no test per row group */
        else q4_K_x16_fold(&x[b], &u[b], &kx, &ku, yb, nt, is, acc, accm);
    }
    for (int i = 0; i < 4 * 2 * PV_X8; i += 8)
        _mm256_storeu_ps(acc + i, _mm256_sub_ps(_mm256_loadu_ps(acc + i), _mm256_loadu_ps(accm + i)));
}

/* q6_K, in the order of llama.cpp's ggml_vec_dot_q6_K_q8_K: each row keeps 8
 * int32 lanes per block, lane m summing sc q a (q = 0..63, unsigned, so
 * maddubs applies) over the elements whose place in their 32 is 4m..4m+3
 * (piece m of each value set), less 32 sc_s (sum of a over s) for sub-blocks
 * s = 2m, 2m + 1 (the -32 offset through the token's sums of 16, lane by
 * lane as llama.cpp takes it out); then 8 float lanes across blocks, one
 * fused multiply-add per block by d_w d_a, added at the end as
 * hsum_float_8 does (q8_0_lanes). */

/* Values of piece i (elements 128h + 32t + 4i..+3 of each row), t = 0..3:
 * ql's low (t < 2) or high nibbles of bytes 32(t & 1) + 4i of the half,
 * with bits 2t, 2t+1 of qh's bytes 4i of the half on top. */
PV_AVX2 static inline __m256i q6_K_vals(const pv_block_q6_Kx8 *x, int h, int i, int t) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), top2 = _mm256_set1_epi8(0x30);
    __m256i l = _mm256_loadu_si256((const __m256i *)(x->ql + 32 * (16 * h + 8 * (t & 1) + i)));
    __m256i hb = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * (8 * h + i)));
    __m256i lo = _mm256_and_si256(t < 2 ? l : _mm256_srli_epi16(l, 4), low4);
    __m256i hi = t == 0 ? _mm256_slli_epi16(hb, 4) : t == 1 ? _mm256_slli_epi16(hb, 2) : t == 2 ? hb : _mm256_srli_epi16(hb, 2);
    return _mm256_or_si256(lo, _mm256_and_si256(hi, top2));
}

/* Bytes i and j of each lane as the high bytes of two int16; an arithmetic
 * shift by 8 then sign-extends them. */
static const int8_t hi_pair_masks[6][32] = {
#define HI_PAIR(i, j)                                                                                           \
    {-128, i, -128, j, -128, 4 + i, -128, 4 + j, -128, 8 + i, -128, 8 + j, -128, 12 + i, -128, 12 + j, \
     -128, i, -128, j, -128, 4 + i, -128, 4 + j, -128, 8 + i, -128, 8 + j, -128, 12 + i, -128, 12 + j}
    HI_PAIR(0, 0), HI_PAIR(1, 1), HI_PAIR(2, 2), HI_PAIR(3, 3), HI_PAIR(0, 1), HI_PAIR(2, 3),
#undef HI_PAIR
};

/* Signed bytes i, j of each lane of v (masks above) as two int16. */
PV_AVX2 static inline __m256i signed_pair(__m256i v, int mask) {
    return _mm256_srai_epi16(_mm256_shuffle_epi8(v, _mm256_loadu_si256((const __m256i *)hi_pair_masks[mask])), 8);
}

/* Scale of sub-block s (of 16) of each row, twice per lane. */
PV_AVX2 static inline __m256i q6_K_sub_scale(const pv_block_q6_Kx8 *x, int s) {
    return signed_pair(_mm256_loadu_si256((const __m256i *)(x->scales + 32 * (s / 4))), s % 4);
}

/* One token's piece: sc q a of its 4 elements into the piece's lane (q6_K, q5_K). */
PV_AVX2 static inline __m256i lane_piece(__m256i v, __m256i sc, const int8_t *aq, __m256i lane) {
    return _mm256_add_epi32(lane, _mm256_madd_epi16(_mm256_maddubs_epi16(v, bcast4(aq)), sc));
}

/* A lane's int32 sums into its float lane, times d_w d_a. */
PV_AVX2 static inline __m256 lane_fma(__m256 d, __m256i lane, __m256 acc) { return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lane), acc); }

/* Lane m of a block's int32 sums, less its -32 offset (sub-blocks 2m, 2m + 1:
 * bytes 2(m % 2), +1 of scales piece m / 2, against the token's sums of 16),
 * into float lane m: acc + d_w d_a (lane - offset). */
PV_AVX2 static inline __m256 q6_K_finish(const pv_block_q6_Kx8 *x, const pv_block_q8_K *y, int m, __m256i lane, __m256 d,
                                         __m256 acc) {
    __m256i sc = signed_pair(_mm256_loadu_si256((const __m256i *)(x->scales + 32 * (m / 2))), 4 + m % 2);
    __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(sc, bcast4((const int8_t *)(y->bsums + 2 * m))), 5);
    return lane_fma(d, _mm256_sub_epi32(lane, off), acc);
}

/* d_w d_a of a K-quant block's 8 rows (their d) for one token. */
PV_AVX2 static inline __m256 k_d(const uint16_t *d, const pv_block_q8_K *y) {
    return _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d)), _mm256_set1_ps(y->d));
}

/* One piece (v: its values, sc: its sub-block's scales) against 4 tokens'
 * sums of its lane, l0..l3 (y, b: the tokens' q8_K rows and the block). */
#define LANE_PIECE_X4(v, sc, at)                                                                         \
    l0 = lane_piece(v, sc, y[0][b].qs + (at), l0);                                                       \
    l1 = lane_piece(v, sc, y[1][b].qs + (at), l1);                                                       \
    l2 = lane_piece(v, sc, y[2][b].qs + (at), l2);                                                       \
    l3 = lane_piece(v, sc, y[3][b].qs + (at), l3);                                                       \
    PIN(l0);                                                                                             \
    PIN(l1);                                                                                             \
    PIN(l2);                                                                                             \
    PIN(l3)

/* The 16 sub-block scales of a block's 8 rows (q6_K_sub_scale). */
PV_AVX2 static inline void q6_K_scales(const pv_block_q6_Kx8 *x, __m256i *sc) {
#pragma GCC unroll 16
    for (int s = 0; s < 16; s++) sc[s] = q6_K_sub_scale(x, s);
}

/* Lane m of a block one lane at a time: its 8 pieces (h, t), elements
 * 128h + 32t + 4m..+3 of each row, in sub-block 8h + 2t + m / 4. Integer
 * sums, so the order of the pieces is free; taking a lane whole keeps 4
 * tokens' sums of it in registers (all 8 lanes of 4 tokens would not fit).
 * t is spelled out so that q6_K_vals folds to its branch-free case; STEP(v,
 * sc, at) runs for each piece, at its element offset. */
#define Q6_K_PIECE(x, sc16, m, h, t, STEP)                                           \
    {                                                                                \
        __m256i v = q6_K_vals(x, h, m, t), sc = (sc16)[8 * (h) + 2 * (t) + (m) / 4]; \
        int at = 128 * (h) + 32 * (t) + 4 * (m);                                     \
        STEP;                                                                        \
    }
#define Q6_K_LANE(x, sc16, m, STEP)                                                                      \
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {                                                \
        Q6_K_PIECE(x, sc16, m, h, 0, STEP) Q6_K_PIECE(x, sc16, m, h, 1, STEP) Q6_K_PIECE(x, sc16, m, h, 2, STEP) \
        Q6_K_PIECE(x, sc16, m, h, 3, STEP)                                                               \
    }

PV_AVX2 static void q6_K_x8_1(const pv_block_q6_Kx8 *x, const uint8_t *a, int64_t n, float *out) {
    const pv_block_q8_K *y = (const pv_block_q8_K *)a;
    __m256 acc[8];
    for (int m = 0; m < 8; m++) acc[m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / PV_QK_K; b++) {
        __m256i sc16[16];
        prefetch_ahead(&x[b], sizeof x[b]);
        q6_K_scales(&x[b], sc16);
        __m256 d = k_d(x[b].d, &y[b]);
#pragma GCC unroll 8
        for (int m = 0; m < 8; m++) {
            __m256i l = _mm256_setzero_si256();
            Q6_K_LANE(&x[b], sc16, m, l = lane_piece(v, sc, y[b].qs + at, l); PIN(l))
            acc[m] = q6_K_finish(&x[b], &y[b], m, l, d, acc[m]);
        }
    }
    _mm256_storeu_ps(out, q8_0_lanes(acc));
}

PV_AVX2 static void q6_K_x8_4(const pv_block_q6_Kx8 *x, const uint8_t *a, size_t a_stride, int64_t n, float *out, int nt, int ahead) {
    const pv_block_q8_K *y[4];
    __m256 acc[4][8];
    for (int j = 0; j < 4; j++) {
        y[j] = (const pv_block_q8_K *)(a + (size_t)(j < nt ? j : nt - 1) * a_stride);
        for (int m = 0; m < 8; m++) acc[j][m] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / PV_QK_K; b++) {
        __m256i sc16[16];
        if (ahead) prefetch_ahead(&x[b], sizeof x[b]);
        q6_K_scales(&x[b], sc16);
        __m256 d0 = k_d(x[b].d, &y[0][b]), d1 = k_d(x[b].d, &y[1][b]);
        __m256 d2 = k_d(x[b].d, &y[2][b]), d3 = k_d(x[b].d, &y[3][b]);
        for (int m = 0; m < 8; m++) {
            __m256i l0 = _mm256_setzero_si256(), l1 = l0, l2 = l0, l3 = l0;
            Q6_K_LANE(&x[b], sc16, m, LANE_PIECE_X4(v, sc, at))
            acc[0][m] = q6_K_finish(&x[b], &y[0][b], m, l0, d0, acc[0][m]);
            acc[1][m] = q6_K_finish(&x[b], &y[1][b], m, l1, d1, acc[1][m]);
            acc[2][m] = q6_K_finish(&x[b], &y[2][b], m, l2, d2, acc[2][m]);
            acc[3][m] = q6_K_finish(&x[b], &y[3][b], m, l3, d3, acc[3][m]);
        }
    }
    for (int j = 0; j < nt; j++) _mm256_storeu_ps(out + PV_X8 * j, q8_0_lanes(acc[j]));
}

/* q5_K, in the order of llama.cpp's ggml_vec_dot_q5_K_q8_K (it has no
 * repacked q5_K kernels, so one token and four add alike): per row and block
 * 8 int32 lanes, lane m summing sc q a (q = 0..31) over the elements
 * 4m..4m+3 of every sub-block of 32; 8 float lanes across blocks, one fused
 * multiply-add per block by d_w d_a, added at the end as hsum_float_8 does
 * (q8_0_lanes); plus a float sum of the mins' terms, one fused multiply-add
 * per block of -d_a dmin_w and sum_s m_s (sum of a over s) (k_mins). A
 * block goes one lane at a time, as q6_K's does. */

/* The 5-bit values of quant piece 8c + i, its low (hi = 0) or high nibbles,
 * with their fifth bits (bit 2c + hi of qh piece i, in h) moved to bit 4. */
PV_AVX2 static inline __m256i q5_K_vals(const pv_block_q5_Kx8 *x, __m256i h, int c, int i, int hi) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), bit4 = _mm256_set1_epi8(0x10);
    __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * (8 * c + i)));
    __m256i q = _mm256_and_si256(hi ? _mm256_srli_epi16(v, 4) : v, low4);
    int bit = 2 * c + hi; /* one bit per byte is kept: 16-bit shifts move it within its byte */
    __m256i f = bit < 4 ? _mm256_slli_epi16(h, 4 - bit) : bit > 4 ? _mm256_srli_epi16(h, bit - 4) : h;
    return _mm256_or_si256(q, _mm256_and_si256(f, bit4));
}

/* Lane m's pieces of a block (sub-block s = 2c + hi: elements 32s + 4m..+3),
 * c and hi spelled out so that q5_K_vals folds; STEP(v, sc, at) runs for each. */
#define Q5_K_PIECE(x, h, sc8, m, c, hi, STEP)                                         \
    {                                                                                 \
        __m256i v = q5_K_vals(x, h, c, m, hi), sc = (sc8)[2 * (c) + (hi)];            \
        int at = 64 * (c) + 32 * (hi) + 4 * (m);                                      \
        STEP;                                                                         \
    }
#define Q5_K_LANE(x, sc8, m, STEP)                                                                      \
    {                                                                                                   \
        __m256i h = _mm256_loadu_si256((const __m256i *)((x)->qh + 32 * (m)));                         \
        Q5_K_PIECE(x, h, sc8, m, 0, 0, STEP) Q5_K_PIECE(x, h, sc8, m, 0, 1, STEP)                       \
        Q5_K_PIECE(x, h, sc8, m, 1, 0, STEP) Q5_K_PIECE(x, h, sc8, m, 1, 1, STEP)                       \
        Q5_K_PIECE(x, h, sc8, m, 2, 0, STEP) Q5_K_PIECE(x, h, sc8, m, 2, 1, STEP)                       \
        Q5_K_PIECE(x, h, sc8, m, 3, 0, STEP) Q5_K_PIECE(x, h, sc8, m, 3, 1, STEP)                       \
    }

/* The 8 sub-block scales of a block's 8 rows, each twice per lane (for madd). */
PV_AVX2 static inline void q5_K_scales(const k_scales_t *k, __m256i *sc8) {
#pragma GCC unroll 8
    for (int s = 0; s < 8; s++) sc8[s] = k_sub_scale(k, s);
}

/* A token's block after its lanes: the mins' term into rest. */
PV_AVX2 static inline __m256 q5_K_mins(const pv_block_q5_Kx8 *x, const k_scales_t *k, const pv_block_q8_K *y, __m256 rest) {
    __m256 dmin = _mm256_mul_ps(_mm256_set1_ps(-y->d), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x->dmin)));
    return _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(k_mins(k, y)), rest);
}

PV_AVX2 static void q5_K_x8_1(const pv_block_q5_Kx8 *x, const uint8_t *a, int64_t n, float *out) {
    const pv_block_q8_K *y = (const pv_block_q8_K *)a;
    __m256 acc[8], rest = _mm256_setzero_ps();
    for (int m = 0; m < 8; m++) acc[m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / PV_QK_K; b++) {
        __m256i sc8[8];
        prefetch_ahead(&x[b], sizeof x[b]);
        k_scales_t k = k_scales(x[b].scales);
        q5_K_scales(&k, sc8);
        __m256 d = k_d(x[b].d, &y[b]);
#pragma GCC unroll 8
        for (int m = 0; m < 8; m++) {
            __m256i l = _mm256_setzero_si256();
            Q5_K_LANE(&x[b], sc8, m, l = lane_piece(v, sc, y[b].qs + at, l); PIN(l))
            acc[m] = lane_fma(d, l, acc[m]);
        }
        rest = q5_K_mins(&x[b], &k, &y[b], rest);
    }
    _mm256_storeu_ps(out, _mm256_add_ps(q8_0_lanes(acc), rest));
}

PV_AVX2 static void q5_K_x8_4(const pv_block_q5_Kx8 *x, const uint8_t *a, size_t a_stride, int64_t n, float *out, int nt, int ahead) {
    const pv_block_q8_K *y[4];
    __m256 acc[4][8], rest[4];
    for (int j = 0; j < 4; j++) {
        y[j] = (const pv_block_q8_K *)(a + (size_t)(j < nt ? j : nt - 1) * a_stride);
        rest[j] = _mm256_setzero_ps();
        for (int m = 0; m < 8; m++) acc[j][m] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / PV_QK_K; b++) {
        __m256i sc8[8];
        if (ahead) prefetch_ahead(&x[b], sizeof x[b]);
        k_scales_t k = k_scales(x[b].scales);
        q5_K_scales(&k, sc8);
        __m256 d0 = k_d(x[b].d, &y[0][b]), d1 = k_d(x[b].d, &y[1][b]);
        __m256 d2 = k_d(x[b].d, &y[2][b]), d3 = k_d(x[b].d, &y[3][b]);
        for (int m = 0; m < 8; m++) {
            __m256i l0 = _mm256_setzero_si256(), l1 = l0, l2 = l0, l3 = l0;
            Q5_K_LANE(&x[b], sc8, m, LANE_PIECE_X4(v, sc, at))
            acc[0][m] = lane_fma(d0, l0, acc[0][m]);
            acc[1][m] = lane_fma(d1, l1, acc[1][m]);
            acc[2][m] = lane_fma(d2, l2, acc[2][m]);
            acc[3][m] = lane_fma(d3, l3, acc[3][m]);
        }
        for (int j = 0; j < 4; j++) rest[j] = q5_K_mins(&x[b], &k, &y[j][b], rest[j]);
    }
    for (int j = 0; j < nt; j++) _mm256_storeu_ps(out + PV_X8 * j, _mm256_add_ps(q8_0_lanes(acc[j]), rest[j]));
}

/* f16: a 32-byte piece holds columns 2k, 2k + 1 of the 8 rows; its halves
 * widen to floats for rows 0-3 (lo) and rows 4-7 (hi), and one 8-byte
 * broadcast of the token's 2 activations meets both in two FMAs. Each
 * accumulator lane sums one row's even or odd columns; f16_rows adds the
 * pairs. The weights are read as they are: only the activations were rounded. */
PV_AVX2 static inline __m256 f16_lo(const uint16_t *w) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w)); }
PV_AVX2 static inline __m256 f16_hi(const uint16_t *w) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 8))); }
PV_AVX2 static inline __m256 bcast2(const float *a) { return _mm256_castpd_ps(_mm256_broadcast_sd((const double *)a)); }

/* A token's two activations (y) against two vectors of row-column pairs (ra, rb) into its sums a, b. */
PV_AVX2 static inline void pairs_fma(__m256 ra, __m256 rb, const float *y, __m256 *a, __m256 *b) {
    __m256 t = bcast2(y);
    *a = _mm256_fmadd_ps(ra, t, *a);
    *b = _mm256_fmadd_ps(rb, t, *b);
}

/* Rows 0-3 (lo) and 4-7 (hi), each as (even, odd) column sums -> the 8 row sums in order. */
PV_AVX2 static inline __m256 f16_rows(__m256 lo, __m256 hi) {
    __m256 h = _mm256_hadd_ps(lo, hi); /* rows 0 1 4 5 | 2 3 6 7 */
    return _mm256_permutevar8x32_ps(h, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
}

/* One token: two column pairs per step with their own sums (an FMA's latency
 * would otherwise hold every step back). n is a multiple of 8. */
PV_AVX2 static void f16_x8_1(const uint16_t *w, const uint8_t *a, int64_t n, float *out) {
    const float *y = (const float *)a;
    __m256 lo0 = _mm256_setzero_ps(), hi0 = lo0, lo1 = lo0, hi1 = lo0;
    for (int64_t i = 0; i < n; i += 4, w += 32) {
        prefetch_ahead(w, 64);
        __m256 y0 = bcast2(y + i), y1 = bcast2(y + i + 2);
        lo0 = _mm256_fmadd_ps(f16_lo(w), y0, lo0);
        hi0 = _mm256_fmadd_ps(f16_hi(w), y0, hi0);
        lo1 = _mm256_fmadd_ps(f16_lo(w + 16), y1, lo1);
        hi1 = _mm256_fmadd_ps(f16_hi(w + 16), y1, hi1);
    }
    _mm256_storeu_ps(out, f16_rows(_mm256_add_ps(lo0, lo1), _mm256_add_ps(hi0, hi1)));
}

/* 4 or 6 tokens (six): each column pair is widened once and meets every
 * token, 2 sums per token in registers (8 or 12 FMAs in flight). Tokens 0-2
 * are reached from one pointer and the stride, 3-5 from another (4 tokens,
 * nt = 3: token 2 again as token 3), so that the loop does no address
 * arithmetic per token; the pass with prefetches (ahead) and the one without
 * are loops of their own (no test per step). Per token the same FMAs in the
 * same order either way (the same bits); 6 tokens take fewer instructions
 * per FMA, which is what counts when the core's other hardware thread is
 * busy: one core, 2048 x 5632 against 128 tokens, 21-22 -> 29-32 G
 * multiply-adds/s in the machine's slow spells, level (44-46) otherwise. */
PV_AVX2 static inline void f16_x8_pass(const uint16_t *w, const uint8_t *a, size_t a_stride, int64_t n, float *out, int nt,
                                       const int six, const int ahead) {
    const uint8_t *p = a, *q = a + (six || nt > 3 ? 3 : 2) * a_stride;
    __m256 lo0 = _mm256_setzero_ps(), hi0 = lo0, lo1 = lo0, hi1 = lo0, lo2 = lo0, hi2 = lo0, lo3 = lo0, hi3 = lo0;
    __m256 lo4 = lo0, hi4 = lo0, lo5 = lo0, hi5 = lo0;
    for (int64_t i = 0; i < n; i += 2, w += 16, p += 2 * sizeof(float), q += 2 * sizeof(float)) {
        if (ahead && i % 4 == 0) prefetch_ahead(w, 64);
        __m256 wl = f16_lo(w), wh = f16_hi(w);
        pairs_fma(wl, wh, (const float *)p, &lo0, &hi0);
        pairs_fma(wl, wh, (const float *)(p + a_stride), &lo1, &hi1);
        pairs_fma(wl, wh, (const float *)(p + 2 * a_stride), &lo2, &hi2);
        pairs_fma(wl, wh, (const float *)q, &lo3, &hi3);
        if (six) {
            pairs_fma(wl, wh, (const float *)(q + a_stride), &lo4, &hi4);
            pairs_fma(wl, wh, (const float *)(q + 2 * a_stride), &lo5, &hi5);
        }
    }
    _mm256_storeu_ps(out, f16_rows(lo0, hi0));
    _mm256_storeu_ps(out + 8, f16_rows(lo1, hi1));
    _mm256_storeu_ps(out + 16, f16_rows(lo2, hi2));
    if (six || nt > 3) _mm256_storeu_ps(out + 24, f16_rows(lo3, hi3));
    if (six) {
        _mm256_storeu_ps(out + 32, f16_rows(lo4, hi4));
        _mm256_storeu_ps(out + 40, f16_rows(lo5, hi5));
    }
}

PV_AVX2 static void f16_x8_4(const uint16_t *w, const uint8_t *a, size_t a_stride, int64_t n, float *out, int nt, int ahead) {
    if (ahead) f16_x8_pass(w, a, a_stride, n, out, nt, 0, 1);
    else f16_x8_pass(w, a, a_stride, n, out, nt, 0, 0);
}

PV_AVX2 static void f16_x8_6(const uint16_t *w, const uint8_t *a, size_t a_stride, int64_t n, float *out, int ahead) {
    if (ahead) f16_x8_pass(w, a, a_stride, n, out, 6, 1, 1);
    else f16_x8_pass(w, a, a_stride, n, out, 6, 1, 0);
}

/* bf16: the pieces are f16's (columns 2k, 2k + 1 of the 8 rows, row r's two
 * in 32-bit lane r). Interleaved with zeros a piece becomes two vectors of
 * floats, rows 0, 1, 4, 5 (bf16_rows_a) and 2, 3, 6, 7 (bf16_rows_b), each
 * row's column 2k then 2k + 1, which meet a broadcast of the token's two
 * activations (bcast2) in one multiply each. llama.cpp adds bf16 products in
 * two orders (ref.c's pv__bf16_lanes_add): a batch (llamafile) in 8 lanes
 * per row, lane m the columns 8i + m by fused multiply-adds; a matmul of one
 * token (ggml_vec_dot_bf16) in 32, lane (k, e) the columns 32i + 8k + e, each
 * product rounded then added. A sum over pieces 4i + p holds lanes 2p, 2p + 1
 * of a batch (over pieces 16i + q, lanes 2q, 2q + 1 of one token): the
 * 4-token kernel passes over the group once per p with 4 tokens' sums in
 * registers, the one-token kernels pass once. bf16_rows_out adds a row's
 * lanes as hsum_float_8 does, from such sums. (The batch kernels took two
 * broadcasts per piece and token with the rows in lanes, as bf16_x8_one
 * does; one broadcast made prompts ~10% faster.) */
PV_AVX2 static inline __m256 bf16_rows_a(__m256i v) { return _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), v)); }
PV_AVX2 static inline __m256 bf16_rows_b(__m256i v) { return _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), v)); }
PV_AVX2 static inline __m256i bf16_piece(const uint16_t *w, int64_t k) {
    return _mm256_loadu_si256((const __m256i *)(w + 2 * PV_X8 * k));
}

/* The 8 rows' sums from the lane pairs' sums a[p], b[p] (lanes 2p, 2p + 1 of
 * rows 0, 1, 4, 5 and of 2, 3, 6, 7): ((l0 + l4) + (l2 + l6)) + ((l1 + l5) +
 * (l3 + l7)), the even lanes' part plus the odd lanes'. */
PV_AVX2 static inline __m256 bf16_rows_out(const __m256 *a, const __m256 *b) {
    __m256 ea = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
    __m256 eb = _mm256_add_ps(_mm256_add_ps(b[0], b[2]), _mm256_add_ps(b[1], b[3]));
    return _mm256_hadd_ps(ea, eb); /* rows 0 1 2 3 | 4 5 6 7 */
}

/* A batch's order, one token: the 8 lanes in registers, one pass. */
PV_AVX2 static void bf16_x8_1(const uint16_t *w, const uint8_t *a, int64_t n, float *out) {
    const float *y = (const float *)a;
    __m256 la[4], lb[4];
    for (int p = 0; p < 4; p++) la[p] = lb[p] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 8; i++) {
        prefetch_ahead(w + 2 * PV_X8 * 4 * i, 4 * 32);
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            __m256i v = bf16_piece(w, 4 * i + p);
            pairs_fma(bf16_rows_a(v), bf16_rows_b(v), y + 8 * i + 2 * p, &la[p], &lb[p]);
        }
    }
    _mm256_storeu_ps(out, bf16_rows_out(la, lb));
}

/* One pass of bf16_x8_4 over the pieces 4i + p, i0 <= i < i1: lanes 2p and
 * 2p + 1 of the 4 tokens (la, lb: token j's at 4 j) carried on in registers
 * (pf: with prefetches; a constant at each call, as p is). */
PV_AVX2 static inline void bf16_x8_pass(const uint16_t *w, const float *const *y, int64_t i0, int64_t i1, const int p,
                                        const int pf, __m256 *la, __m256 *lb) {
    __m256 a0 = la[0], a1 = la[4], a2 = la[8], a3 = la[12], b0 = lb[0], b1 = lb[4], b2 = lb[8], b3 = lb[12];
#pragma GCC unroll 2
    for (int64_t i = i0; i < i1; i++) {
        if (pf) prefetch_ahead(w + 2 * PV_X8 * 4 * i, 4 * 32);
        __m256i v = bf16_piece(w, 4 * i + p);
        __m256 ra = bf16_rows_a(v), rb = bf16_rows_b(v);
        int64_t c = 8 * i + 2 * p;
        pairs_fma(ra, rb, y[0] + c, &a0, &b0);
        pairs_fma(ra, rb, y[1] + c, &a1, &b1);
        pairs_fma(ra, rb, y[2] + c, &a2, &b2);
        pairs_fma(ra, rb, y[3] + c, &a3, &b3);
    }
    la[0] = a0, la[4] = a1, la[8] = a2, la[12] = a3;
    lb[0] = b0, lb[4] = b1, lb[8] = b2, lb[12] = b3;
}

/* A batch's order, 4 tokens: a pass per pair of lanes, the 4 tokens' sums of
 * the pair in registers, over spans of BF16_SPAN columns, so that a span's
 * weights and activations (8 + 8 KB) stay in L1 for its four passes. Each
 * lane still adds its columns in order: the same bits as four passes over
 * whole rows, which read a 2048-column group (32 KB) four times from L2 and
 * tested the prefetch in every step (one core, 512 x 2048 x 128, alternated
 * in one run: 21 -> 23 G multiply-adds/s without the test, 26 -> 33 with the
 * spans; 25 -> 34 at 5632 columns). */
#define BF16_SPAN 512
PV_AVX2 static void bf16_x8_4(const uint16_t *w, const uint8_t *a, size_t a_stride, int64_t n, float *out, int nt, int ahead) {
    const float *y[4];
    __m256 la[4][4], lb[4][4];
    for (int j = 0; j < 4; j++) {
        y[j] = (const float *)(a + (size_t)(j < nt ? j : nt - 1) * a_stride);
        for (int p = 0; p < 4; p++) la[j][p] = lb[j][p] = _mm256_setzero_ps();
    }
    for (int64_t i0 = 0; i0 < n / 8; i0 += BF16_SPAN / 8) {
        int64_t i1 = i0 + BF16_SPAN / 8 < n / 8 ? i0 + BF16_SPAN / 8 : n / 8;
        if (ahead) bf16_x8_pass(w, y, i0, i1, 0, 1, &la[0][0], &lb[0][0]);
        else bf16_x8_pass(w, y, i0, i1, 0, 0, &la[0][0], &lb[0][0]);
        bf16_x8_pass(w, y, i0, i1, 1, 0, &la[0][1], &lb[0][1]);
        bf16_x8_pass(w, y, i0, i1, 2, 0, &la[0][2], &lb[0][2]);
        bf16_x8_pass(w, y, i0, i1, 3, 0, &la[0][3], &lb[0][3]);
    }
    for (int j = 0; j < nt; j++) _mm256_storeu_ps(out + PV_X8 * j, bf16_rows_out(la[j], lb[j]));
}

/* The columns 2k (shifted left by 16) and 2k + 1 (masked to the top halves)
 * of a piece's 8 rows as floats, row r in lane r. */
PV_AVX2 static inline __m256 bf16_even(__m256i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); }
PV_AVX2 static inline __m256 bf16_odd(__m256i v) {
    return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
}

/* A matmul of one token, in ggml_vec_dot_bf16's order: the weights come from
 * memory (generation), so one pass, the 32 lanes of the 8 rows in memory
 * (L1; each is updated once per 16 pieces, so its loads wait on nothing);
 * then c_1..c_4 added as (c1 + c3) + (c2 + c4) lane by lane, and the lanes as
 * hsum_float_8. Here the rows stay in lanes (bf16_even/odd, two broadcasts per
 * piece): it measured ~5% faster than bf16_rows_a/b with one (8.6-9.5 against
 * 8.0-8.7 tok/s, TinyLlama shape, four alternations). */
PV_AVX2 static void bf16_x8_one(const void *wv, const void *av, size_t a_stride, int n_tok, int64_t n, float *out) {
    const uint16_t *w = wv;
    for (int j = 0; j < n_tok; j++) {
        const float *y = (const float *)((const uint8_t *)av + (size_t)j * a_stride);
        __m256 c[32];
        for (int e = 0; e < 32; e++) c[e] = _mm256_setzero_ps();
        for (int64_t i = 0; i < n / 32; i++) {
            prefetch_ahead(w + 2 * PV_X8 * 16 * i, 16 * 32);
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++) { /* piece 16i + q: columns 32i + 2q, + 1, lanes 2q, 2q + 1 */
                __m256i v = bf16_piece(w, 16 * i + q);
                c[2 * q] = _mm256_add_ps(_mm256_mul_ps(bf16_even(v), _mm256_broadcast_ss(y + 32 * i + 2 * q)), c[2 * q]);
                c[2 * q + 1] = _mm256_add_ps(_mm256_mul_ps(bf16_odd(v), _mm256_broadcast_ss(y + 32 * i + 2 * q + 1)), c[2 * q + 1]);
            }
        }
        __m256 v[8];
        for (int e = 0; e < 8; e++) v[e] = _mm256_add_ps(_mm256_add_ps(c[e], c[16 + e]), _mm256_add_ps(c[8 + e], c[24 + e]));
        _mm256_storeu_ps(out + PV_X8 * j, q8_0_lanes(v));
    }
}

/* 4 tokens at a time through the 4-token kernel (nt = 3: the third token
 * twice, its second sums dropped, which costs less than 3 one-token
 * passes), the rest one by one. Only the first pass over the group
 * prefetches: the later ones find it in cache (prompts are compute-bound,
 * and the prefetches would cost them ~5%). */
#define X8_ENTRY(name)                                                                                 \
    PV_AVX2 static void name(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) { \
        const uint8_t *ap = a;                                                                                  \
        int j = 0;                                                                                              \
        for (; j + 3 <= n_tok; j += 4) {                                                                       \
            int nt = n_tok - j < 4 ? n_tok - j : 4;                                                            \
            name##_4(w, ap + (size_t)j * a_stride, a_stride, n, out + PV_X8 * j, nt, j == 0);                  \
        }                                                                                                       \
        for (; j < n_tok; j++) name##_1(w, ap + (size_t)j * a_stride, n, out + PV_X8 * j);                      \
    }

X8_ENTRY(q4_0_x8)
X8_ENTRY(q8_0_x8)
X8_ENTRY(q4_K_x8)
X8_ENTRY(q5_K_x8)
X8_ENTRY(q6_K_x8)
X8_ENTRY(bf16_x8)

/* f16 takes tokens 6 at a time while 6 are left (16: 6, 6, then 4). */
PV_AVX2 static void f16_x8(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    const uint8_t *ap = a;
    int j = 0;
    for (; j + 6 <= n_tok; j += 6) f16_x8_6(w, ap + (size_t)j * a_stride, a_stride, n, out + PV_X8 * j, j == 0);
    for (; j + 3 <= n_tok; j += 4)
        f16_x8_4(w, ap + (size_t)j * a_stride, a_stride, n, out + PV_X8 * j, n_tok - j < 4 ? n_tok - j : 4, j == 0);
    for (; j < n_tok; j++) f16_x8_1(w, ap + (size_t)j * a_stride, n, out + PV_X8 * j);
}

/* Two adjacent groups 4 tokens at a time (nt = 3: the third token twice),
 * the rest of the tokens one group and one token at a time. */
#define X16_ENTRY(name, block)                                                                                   \
    PV_AVX2 static void name##_x16(const void *w, size_t group_size, const void *a, size_t a_stride, int n_tok,  \
                                   int64_t n, float *out) {                                                      \
        const block *x = w, *u = (const block *)((const uint8_t *)w + group_size);                               \
        const uint8_t *ap = a;                                                                                   \
        float acc[4 * 2 * PV_X8];                                                                                \
        int j = 0;                                                                                               \
        for (; j + 3 <= n_tok; j += 4) {                                                                        \
            int nt = n_tok - j < 4 ? n_tok - j : 4;                                                             \
            name##_x16_4(x, u, ap + (size_t)j * a_stride, a_stride, n, acc, nt, j == 0);                        \
            memcpy(out + 2 * PV_X8 * j, acc, sizeof(float) * 2 * PV_X8 * (size_t)nt);                           \
        }                                                                                                        \
        for (; j < n_tok; j++) {                                                                                 \
            name##_x8_1(x, ap + (size_t)j * a_stride, n, out + 2 * PV_X8 * j);                                  \
            name##_x8_1(u, ap + (size_t)j * a_stride, n, out + 2 * PV_X8 * j + PV_X8);                          \
        }                                                                                                        \
    }

X16_ENTRY(q4_0, pv_block_q4_0x8)
X16_ENTRY(q4_K, pv_block_q4_Kx8)

pv_dot_x16_fn pv__avx2_dot_x16(pv_type_t t) {
    switch (t) {
    case PV_TYPE_Q4_0: return q4_0_x16;
    case PV_TYPE_Q4_K: return q4_K_x16;
    default: return NULL;
    }
}

pv_dot_x8_fn pv__avx2_dot_x8(pv_type_t t) {
    switch (t) {
    case PV_TYPE_Q4_0: return q4_0_x8;
    case PV_TYPE_Q8_0: return q8_0_x8;
    case PV_TYPE_Q4_K: return q4_K_x8;
    case PV_TYPE_Q5_K: return q5_K_x8;
    case PV_TYPE_Q6_K: return q6_K_x8;
    case PV_TYPE_F16: return f16_x8;
    case PV_TYPE_BF16: return bf16_x8;
    default: return NULL;
    }
}

pv_dot_x8_fn pv__avx2_dot1_x8(pv_type_t t) { return t == PV_TYPE_BF16 ? bf16_x8_one : NULL; }
