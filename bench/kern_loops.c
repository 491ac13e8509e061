/* kern_loops.c - what the vector units allow for the int8 dot products'
 * instruction sequences, apart from memory and from the kernels' bookkeeping.
 *
 * Each loop is the arithmetic of one way to multiply 8 rows of bytes by a
 * token's bytes (the x8 layout: a 32-byte load is 4 bytes of each of 8 rows),
 * fed from a few kilobytes that stay in L1, so that nothing but the
 * instructions sets its pace:
 *   q4_0 x16     the q4_0 two-group kernel: nibbles 0..15 against activations,
 *                one maddubs and one int16 add per 32 multiply-adds (4 tokens
 *                share each unpacked piece of two groups);
 *   q8_0 lanes   llama.cpp's q8_0 order: sign, maddubs, madd, convert and a
 *                fused multiply-add per 32, the 8 float lanes in registers;
 *   q8_0 blocks  the same bytes with one float multiply-add per block: sign,
 *                maddubs, madd and an int32 add per 32;
 *   q8_0 nibbles each weight byte split into two nibbles, so that int16 sums
 *                hold a whole block: two maddubs and two adds per 32.
 * Signed bytes against signed bytes cannot keep int16 sums past one maddubs
 * (two products of 127 x 127 already make 32258), so every q8_0 form needs
 * twice the multiply instructions of q4_0 per multiply-add: the loops show
 * what that costs on this machine. The results are not the kernels' (the
 * inputs are arbitrary); only their speed is. */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#include "kern_loops.h"

#define PV_AVX2 __attribute__((target("avx2,fma")))
#define RING 16     /* blocks of weights and activations the loops cycle through */
#define N_BLOCKS (1 << 18)

typedef struct {
    __m256i w[RING][8];    /* q4_0: 4 pieces of each of two groups per block */
    int32_t a[RING][4][8]; /* 4 tokens x 8 broadcasts (4 activation bytes each) */
    /* q8_0: one block's 8 pieces, and what a kernel would derive from them
     * once for all its tokens (so the loops count a token's own work): the
     * magnitudes for the sign trick, the nibbles of the bytes offset by 128 */
    __m256i q8[8], q8_abs[8], q8_lo[8], q8_hi[8];
} loop_data_t;

#define BCAST(d, b, j, c) _mm256_set1_epi32((d)->a[b][j][c])

/* A block's (or piece's) int32 sums into float sums by a multiply-add, as the kernels finish them. */
PV_AVX2 static inline __m256 fold(__m256i s, __m256 acc) { return _mm256_fmadd_ps(_mm256_set1_ps(1e-6f), _mm256_cvtepi32_ps(s), acc); }

PV_AVX2 static double q4_0_x16(const loop_data_t *d, float *out) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi16(1);
    __m256 acc[8];
    for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < N_BLOCKS; i++) {
        int b = (int)(i % RING);
        __m256i s[4], t[4];
        for (int j = 0; j < 4; j++) s[j] = t[j] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i v = d->w[b][c], u = d->w[b][4 + c];
            __m256i l0 = _mm256_and_si256(v, low4), h0 = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            __m256i l1 = _mm256_and_si256(u, low4), h1 = _mm256_and_si256(_mm256_srli_epi16(u, 4), low4);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m256i q = BCAST(d, b, j, c), p = BCAST(d, b, j, 4 + c);
                __m256i x = _mm256_add_epi16(s[j], _mm256_maddubs_epi16(l0, q));
                __m256i y = _mm256_add_epi16(t[j], _mm256_maddubs_epi16(l1, q));
                x = _mm256_add_epi16(x, _mm256_maddubs_epi16(h0, p));
                y = _mm256_add_epi16(y, _mm256_maddubs_epi16(h1, p));
                __asm__("" : "+x"(x), "+x"(y)); /* as the kernel: sums kept, not regrouped */
                s[j] = x, t[j] = y;
            }
        }
        for (int j = 0; j < 4; j++) {
            acc[2 * j] = fold(_mm256_madd_epi16(s[j], one), acc[2 * j]);
            acc[2 * j + 1] = fold(_mm256_madd_epi16(t[j], one), acc[2 * j + 1]);
        }
    }
    for (int j = 0; j < 8; j++) _mm256_storeu_ps(out + 8 * j, acc[j]);
    return (double)N_BLOCKS * 16 * 32 * 4; /* 16 rows x 32 columns x 4 tokens per block */
}

/* The q8_0 loops: one token, 8 pieces (32 columns of 8 rows) per block. */
PV_AVX2 static double q8_0_lanes(const loop_data_t *d, float *out) {
    const __m256i one = _mm256_set1_epi16(1);
    __m256 l[8];
    for (int c = 0; c < 8; c++) l[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < N_BLOCKS; i++) {
        int b = (int)(i % RING);
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256i p = _mm256_maddubs_epi16(d->q8_abs[c], _mm256_sign_epi8(BCAST(d, b, 0, c), d->q8[c]));
            l[c] = fold(_mm256_madd_epi16(p, one), l[c]);
        }
    }
    for (int c = 0; c < 8; c++) _mm256_storeu_ps(out + 8 * c, l[c]);
    return (double)N_BLOCKS * 8 * 32;
}

PV_AVX2 static double q8_0_blocks(const loop_data_t *d, float *out) {
    const __m256i one = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < N_BLOCKS; i++) {
        int b = (int)(i % RING);
        __m256i s = _mm256_setzero_si256(), t = s;
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256i p = _mm256_maddubs_epi16(d->q8_abs[c], _mm256_sign_epi8(BCAST(d, b, 0, c), d->q8[c]));
            if (c % 2) t = _mm256_add_epi32(t, _mm256_madd_epi16(p, one)); /* two chains */
            else s = _mm256_add_epi32(s, _mm256_madd_epi16(p, one));
        }
        acc = fold(_mm256_add_epi32(s, t), acc);
    }
    _mm256_storeu_ps(out, acc);
    return (double)N_BLOCKS * 8 * 32;
}

PV_AVX2 static double q8_0_nibbles(const loop_data_t *d, float *out) {
    const __m256i one = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < N_BLOCKS; i++) {
        int b = (int)(i % RING);
        __m256i hs = _mm256_setzero_si256(), ls = hs;
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256i a = BCAST(d, b, 0, c);
            hs = _mm256_add_epi16(hs, _mm256_maddubs_epi16(d->q8_hi[c], a));
            ls = _mm256_add_epi16(ls, _mm256_maddubs_epi16(d->q8_lo[c], a));
        }
        acc = fold(_mm256_add_epi32(_mm256_madd_epi16(hs, sixteen), _mm256_madd_epi16(ls, one)), acc);
    }
    _mm256_storeu_ps(out, acc);
    return (double)N_BLOCKS * 8 * 32;
}

typedef double (*loop_fn)(const loop_data_t *, float *);
static const loop_fn loops[KERN_LOOPS] = {q4_0_x16, q8_0_lanes, q8_0_blocks, q8_0_nibbles};
const char *const kern_loop_names[KERN_LOOPS] = {"q4_0 x16", "q8_0 lanes", "q8_0 blocks", "q8_0 nibbles"};

int kern_loops_supported(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

PV_AVX2 void *kern_loops_data_new(void) {
    loop_data_t *d = aligned_alloc(64, sizeof *d);
    if (!d) return NULL;
    uint8_t *bytes = (uint8_t *)d;
    for (size_t i = 0; i < sizeof *d; i++) bytes[i] = (uint8_t)((i * 2654435761u) >> 13); /* any bytes */
    for (int c = 0; c < 8; c++) {
        __m256i w = _mm256_max_epi8(d->q8[c], _mm256_set1_epi8(-127)), u = _mm256_xor_si256(w, _mm256_set1_epi8(-128));
        d->q8[c] = w;
        d->q8_abs[c] = _mm256_abs_epi8(w);
        d->q8_lo[c] = _mm256_and_si256(u, _mm256_set1_epi8(0x0f));
        d->q8_hi[c] = _mm256_and_si256(_mm256_srli_epi16(u, 4), _mm256_set1_epi8(0x0f));
    }
    for (int b = 0; b < RING; b++) /* q8_0 activations lie in -127..127 */
        for (size_t k = 0; k < sizeof d->a[b]; k++) {
            int8_t *a = (int8_t *)d->a[b] + k;
            if (*a == -128) *a = -127;
        }
    return d;
}

double kern_loop_run(int v, const void *data, float out[64]) { return loops[v](data, out); }
