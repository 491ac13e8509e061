/* test_kern.c - the scalar routines: float conversions, block decoding by hand,
 * dot products against dequantize-then-multiply, and the elementwise ops. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fp16.h"
#include "kernels/kern.h"
#include "kernels/kern_internal.h"
#include "kernels/ops.h"
#include "rand_data.h"
#include "suites.h"

static const pv_type_t supported[] = {PV_TYPE_F32,  PV_TYPE_F16,  PV_TYPE_BF16, PV_TYPE_Q4_0,
                                      PV_TYPE_Q8_0, PV_TYPE_Q4_K, PV_TYPE_Q5_K, PV_TYPE_Q6_K};
#define N_SUPPORTED (int)(sizeof supported / sizeof supported[0])

START_TEST(test_f16_roundtrip_exhaustive) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = pv_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        ck_assert_uint_eq(pv_f32_to_f16(f), h);
    }
    ck_assert_float_eq(pv_f16_to_f32(0x3c00), 1.0f);
    ck_assert_float_eq(pv_f16_to_f32(0xc000), -2.0f);
    ck_assert_float_eq(pv_f16_to_f32(0x0001), 5.9604644775390625e-8f);
    ck_assert_uint_eq(pv_f32_to_f16(1e6f), 0x7c00);       /* overflow -> inf */
    ck_assert_uint_eq(pv_f32_to_f16(1.0f + 1.0f / 4096), 0x3c00); /* ties to even */
    ck_assert_uint_eq(pv_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_float_eq(pv_bf16_to_f32(0xbf80), -1.0f);
}
END_TEST

START_TEST(test_q4_0_by_hand) {
    uint8_t b[18];
    uint16_t d = pv_f32_to_f16(0.5f);
    memcpy(b, &d, 2);
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)((j & 15) | ((15 - j) << 4));
    float y[32];
    pv_kern_traits(PV_TYPE_Q4_0)->to_float(b, y, 32);
    for (int j = 0; j < 16; j++) {
        ck_assert_float_eq(y[j], (j - 8) * 0.5f);
        ck_assert_float_eq(y[j + 16], (15 - j - 8) * 0.5f);
    }
}
END_TEST

START_TEST(test_q8_0_by_hand) {
    uint8_t b[34];
    uint16_t d = pv_f32_to_f16(0.25f);
    memcpy(b, &d, 2);
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)(j * 8 - 128);
    float y[32];
    pv_kern_traits(PV_TYPE_Q8_0)->to_float(b, y, 32);
    for (int j = 0; j < 32; j++) ck_assert_float_eq(y[j], (j * 8 - 128) * 0.25f);
}
END_TEST

/* q4_K: scales packed 6-bit; sub-block 5's scale is (low nibble of byte 9) | (top bits of byte 1) << 4. */
START_TEST(test_q4_K_by_hand) {
    uint8_t b[144] = {0};
    uint16_t d = pv_f32_to_f16(1.0f), dmin = pv_f32_to_f16(0.5f);
    memcpy(b, &d, 2);
    memcpy(b + 2, &dmin, 2);
    uint8_t *sc = b + 4, *qs = b + 16;
    sc[0] = 3;                /* sub-block 0: scale 3 */
    sc[4] = 2;                /* sub-block 0: min 2 */
    sc[1] = 0x40;             /* high bits 01 of scale 5 */
    sc[9] = 0x1 | (0x2 << 4); /* scale 5 low 1, min 5 low 2 */
    qs[0] = 0x07;             /* element 0: q 7 */
    qs[64 + 5] = 0x90;        /* elements 128+5 (low) 0 and 160+5 (high, sub-block 5) 9 */
    float y[256];
    pv_kern_traits(PV_TYPE_Q4_K)->to_float(b, y, 256);
    ck_assert_float_eq(y[0], 1.0f * 3 * 7 - 0.5f * 2);
    ck_assert_float_eq(y[1], -1.0f);
    ck_assert_float_eq(y[160 + 5], 1.0f * (1 | 1 << 4) * 9 - 0.5f * 2);
}
END_TEST

/* q6_K: element 0 = d * scales[0] * ((ql[0] & 15 | (qh[0] & 3) << 4) - 32). */
START_TEST(test_q6_K_by_hand) {
    uint8_t b[210] = {0};
    uint16_t d = pv_f32_to_f16(0.5f);
    memcpy(b + 208, &d, 2);
    b[0] = 0x05;              /* ql[0]: low nibble 5 (element 0), high 0 (element 64) */
    b[128] = 0x02 | (3 << 6); /* qh[0]: element 0 gets 2<<4, element 96 gets 3<<4 */
    b[192] = 4;               /* scales[0] */
    b[192 + 6] = (uint8_t)-2; /* scales[6] covers element 96 */
    float y[256];
    pv_kern_traits(PV_TYPE_Q6_K)->to_float(b, y, 256);
    ck_assert_float_eq(y[0], 0.5f * 4 * (5 + 32 - 32));
    ck_assert_float_eq(y[96], 0.5f * -2 * (48 - 32));
    ck_assert_float_eq(y[1], 0.5f * 4 * -32);
}
END_TEST

/* Activations x converted to t's vec_dot_type (caller frees), and back to floats in xa. */
static void *activations(pv_type_t t, const float *x, float *xa, int64_t n) {
    const pv_kern_traits_t *a = pv_kern_traits(pv_kern_traits(t)->vec_dot_type);
    void *q = malloc(pv_type_row_size(pv_kern_traits(t)->vec_dot_type, n));
    a->from_float(x, q, n);
    a->to_float(q, xa, n);
    return q;
}

/* For every type: vec_dot equals dequantize-both-then-multiply (in double),
 * and stays close to the float dot product of the unquantized activations. */
START_TEST(test_dot_matches_dequant) {
    pv_type_t t = supported[_i];
    const pv_type_layout_t *l = pv_type_layout(t);
    const pv_kern_traits_t *k = pv_kern_traits(t);
    ck_assert(pv_kern_supported(t));
    int64_t blk = pv_type_layout(k->vec_dot_type)->blck_size > l->blck_size ? pv_type_layout(k->vec_dot_type)->blck_size : l->blck_size;
    for (int rep = 0; rep < 20; rep++) {
        int64_t n = blk * (1 + rd_u32() % 6);
        if (blk == 1) n = 1 + rd_u32() % 700; /* odd sizes */
        uint8_t *row = rd_row(t, n);
        float *x = malloc((size_t)n * sizeof *x), *xa = malloc((size_t)n * sizeof *xa), *y = malloc((size_t)n * sizeof *y);
        for (int64_t i = 0; i < n; i++) x[i] = rd_float() * (rep % 3 == 0 ? 1e4f : 1.0f); /* extreme scales too */
        void *q = activations(t, x, xa, n);
        k->to_float(row, y, n);
        double want = 0.0, exact = 0.0, mag = 0.0;
        for (int64_t i = 0; i < n; i++) {
            ck_assert(isfinite(y[i]));
            want += (double)y[i] * xa[i];
            exact += (double)y[i] * x[i];
            mag += fabs((double)y[i] * x[i]);
        }
        float got = k->vec_dot(row, q, n);
        ck_assert_msg(fabs(got - want) <= 1e-5 * mag + 1e-6, "%s n=%lld: %g vs %g", l->name, (long long)n, got, want);
        ck_assert_msg(fabs(got - exact) <= 0.02 * mag + 1e-6, "%s n=%lld: %g vs float %g", l->name, (long long)n, got, exact);
        free(q);
        free(row);
        free(x);
        free(xa);
        free(y);
    }
}
END_TEST

START_TEST(test_zero_blocks) {
    pv_type_t t = supported[_i];
    int64_t n = 512; /* a whole number of blocks of every format */
    uint8_t *row = calloc(1, pv_type_row_size(t, n));
    float *x = malloc((size_t)n * sizeof *x), *xa = malloc((size_t)n * sizeof *xa), *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++) x[i] = 1000.0f;
    pv_kern_traits(t)->to_float(row, y, n);
    for (int64_t i = 0; i < n; i++) ck_assert_float_eq(y[i], 0.0f);
    void *q = activations(t, x, xa, n);
    ck_assert_float_eq(pv_kern_traits(t)->vec_dot(row, q, n), 0.0f);
    free(q);
    /* all-zero activations quantize to zero scales, not NaN */
    for (int64_t i = 0; i < n; i++) x[i] = 0.0f;
    q = activations(t, x, xa, n);
    for (int64_t i = 0; i < n; i++) ck_assert_float_eq(xa[i], 0.0f);
    free(q);
    free(row);
    free(x);
    free(xa);
    free(y);
}
END_TEST

/* q8_0 and q8_K round-trip floats within half a quantization step (plus the
 * rounding of q8_0's half-precision scale, at most 127 * 2^-11 of a step). */
START_TEST(test_activation_quantizers) {
    pv_type_t types[2] = {PV_TYPE_Q8_0, PV_TYPE_Q8_K};
    float x[512], xa[512];
    for (int i = 0; i < 512; i++) x[i] = rd_float() * (i < 256 ? 1.0f : 300.0f);
    for (int k = 0; k < 2; k++) {
        int blk = (int)pv_type_layout(types[k])->blck_size;
        void *q = malloc(pv_type_row_size(types[k], 512));
        pv_kern_traits(types[k])->from_float(x, q, 512);
        pv_kern_traits(types[k])->to_float(q, xa, 512);
        for (int b = 0; b < 512 / blk; b++) {
            float amax = 0.0f;
            for (int j = 0; j < blk; j++) amax = fmaxf(amax, fabsf(x[b * blk + j]));
            for (int j = 0; j < blk; j++)
                ck_assert_float_le(fabsf(xa[b * blk + j] - x[b * blk + j]), amax / 127.0f * 0.6f + 1e-7f);
        }
        free(q);
    }
}
END_TEST

/* The dispatched activation quantizers give their scalar twins' bytes
 * exactly, halfway products (rounded away from zero) and zero blocks included. */
START_TEST(test_activation_quantizers_match_twins) {
    pv_type_t types[3] = {PV_TYPE_Q8_0, PV_TYPE_Q8_K, PV_TYPE_F16};
    int64_t n = 1024;
    float *x = malloc(n * sizeof *x);
    for (int rep = 0; rep < 40; rep++) {
        for (int64_t i = 0; i < n; i++) x[i] = rd_float() * (rep % 3 == 0 ? 1e-5f : rep % 3 == 1 ? 5e3f : 1.0f);
        for (int64_t i = 0; i < 32; i++) x[i] = (float)((int)i - 16) + 0.5f; /* scale 1: every product a tie */
        x[0] = 127.0f;
        if (rep % 4 == 0) memset(x + 256, 0, 256 * sizeof *x); /* zero blocks */
        float big = 2.0f * fabsf(x[600]) + 1e-3f; /* +-big in one q8_K block: the first one sets the sign */
        x[520] = -big, x[530] = big, x[800] = big, x[810] = -big;
        if (rep % 5 == 1) x[700] = 1e6f, x[701] = -7e4f, x[702] = 3e-8f; /* beyond half range, subnormal */
        for (int k = 0; k < 3; k++) {
            size_t size = pv_type_row_size(types[k], n);
            uint8_t *a = malloc(size), *b = malloc(size);
            pv_kern_traits(types[k])->from_float(x, a, n);
            pv_kern_ref(types[k])->from_float(x, b, n);
            ck_assert_mem_eq(a, b, size);
            if (types[k] == PV_TYPE_F16) { /* and back to floats (f16 activations of the x8 kernels) */
                float *fa = malloc(n * sizeof *fa), *fb = malloc(n * sizeof *fb);
                pv_kern_traits(PV_TYPE_F16)->to_float(a, fa, n);
                pv_kern_ref(PV_TYPE_F16)->to_float(a, fb, n);
                ck_assert_mem_eq(fa, fb, n * sizeof *fa);
                free(fa);
                free(fb);
            }
            free(a);
            free(b);
        }
    }
    free(x);
}
END_TEST

/* The dispatched (AVX2) dot products against their scalar twins: random
 * blocks, odd sizes, extreme activation scales and all-zero blocks. */
START_TEST(test_fast_matches_scalar_twin) {
    pv_type_t t = supported[_i];
    const pv_kern_traits_t *fast = pv_kern_traits(t), *ref = pv_kern_ref(t);
    const pv_type_layout_t *l = pv_type_layout(t);
    const pv_kern_traits_t *act = pv_kern_ref(ref->vec_dot_type);
    int64_t blk = pv_type_layout(ref->vec_dot_type)->blck_size > l->blck_size ? pv_type_layout(ref->vec_dot_type)->blck_size : l->blck_size;
    printf("kern: %s dot products use %s\n", l->name, pv_kern_isa());
    for (int rep = 0; rep < 200; rep++) {
        int64_t n = blk == 1 ? 1 + rd_u32() % 1100 : blk * (1 + rd_u32() % 12);
        uint8_t *row = rd_row(t, n);
        if (rep % 10 == 0) memset(row, 0, pv_type_row_size(t, n)); /* all-zero blocks */
        float *x = malloc((size_t)n * sizeof *x);
        float scale = rep % 4 == 0 ? 1e-6f : rep % 4 == 1 ? 3e4f : 1.0f;
        for (int64_t i = 0; i < n; i++) x[i] = rd_float() * scale;
        if (rep % 7 == 0) x[rd_u32() % n] = scale * 2.0f; /* one outlier sets the block scale (within half range) */
        void *q = malloc(pv_type_row_size(ref->vec_dot_type, n));
        act->from_float(x, q, n);
        float *y = malloc((size_t)n * sizeof *y), *xa = malloc((size_t)n * sizeof *xa);
        ref->to_float(row, y, n);
        act->to_float(q, xa, n);
        double mag = 0.0;
        for (int64_t i = 0; i < n; i++) mag += fabs((double)y[i] * xa[i]);
        float want = ref->vec_dot(row, q, n), got = fast->vec_dot(row, q, n);
        ck_assert_msg(fabs(got - want) <= 2e-5 * mag + 1e-30, "%s n=%lld rep %d: fast %g, scalar %g", l->name,
                      (long long)n, rep, got, want);
        /* where the twin follows llama.cpp's order as the kernel does, to the bit */
        int same = t == PV_TYPE_Q8_0 || t == PV_TYPE_Q5_K || t == PV_TYPE_Q6_K || t == PV_TYPE_BF16 || t == PV_TYPE_F16;
        if (same && strcmp(pv_kern_isa(), "avx2") == 0)
            ck_assert_msg(got == want, "%s n=%lld rep %d: fast %.9g, twin %.9g", l->name, (long long)n, rep, got, want);
        if (ref->vec_dot1) { /* a one-token matmul's order */
            float one = fast->vec_dot1(row, q, n), one_want = ref->vec_dot1(row, q, n);
            ck_assert_msg(one == one_want, "%s n=%lld rep %d: one token %.9g, twin %.9g", l->name, (long long)n, rep, one,
                          one_want);
        }
        if (fast->vec_dot4) { /* 4 activation rows at once: row j is the same activations, rotated */
            size_t asz = pv_type_row_size(ref->vec_dot_type, n);
            uint8_t *q4 = malloc(4 * asz);
            for (int j = 0; j < 4; j++) memcpy(q4 + j * asz, q, asz);
            float out[4];
            fast->vec_dot4(row, q4, asz, n, out);
            for (int j = 0; j < 4; j++)
                ck_assert_msg(same ? out[j] == got : fabs(out[j] - want) <= 2e-5 * mag + 1e-30, "%s dot4[%d]: %g vs %g",
                              l->name, j, out[j], want);
            free(q4);
        }
        free(row);
        free(x);
        free(q);
        free(y);
        free(xa);
    }
}
END_TEST

/* Attention over n positions of random halves, folded block by block as the
 * KV arena does (or tile by tile), in both orders (half-precision and tiled), by the dispatched
 * kernel and the scalar twin (bit for bit: both follow llama.cpp's order); both against a plain softmax in double, within what sums rounded to half at
 * every step allow (the tiled order, in float, much closer). Rows see
 * different numbers of positions (as the tokens of a prompt chunk do), head
 * sizes 8..256 and odd ones; also scores so far apart that most weights
 * underflow (and expf leaves its main path). */
START_TEST(test_attn_block_matches_twin) {
    int sizes[] = {8, 32, 64, 128, 256, 12, 40};
    enum { R = 5 };
    for (int si = 0; si < 28; si++) { /* the last 14: scores 200 apart, where e^(s - M) underflows */
        int hd = sizes[si % 7], n = 1 + (int)(rd_u32() % 150), tiled = si / 7 % 2;
        float qscale = si >= 14 ? 80.0f : 3.0f;
        double tol = tiled ? 2e-5 : 4e-3;
        size_t stride = (size_t)hd * 3;
        uint16_t *k = malloc((size_t)n * stride * 2), *v = malloc((size_t)n * stride * 2);
        float *q = malloc((size_t)R * hd * sizeof *q), *acc[2], *work = malloc(pv_attn_scratch_size(hd) * sizeof *work);
        float *kf = calloc((size_t)PV_ATTN_TILE * hd, sizeof *kf), *vf = calloc((size_t)PV_ATTN_TILE * hd, sizeof *vf);
        for (size_t i = 0; i < (size_t)n * stride; i++) {
            k[i] = pv_f32_to_f16(rd_float() * 3);
            v[i] = pv_f32_to_f16(rd_float());
        }
        for (int i = 0; i < R * hd; i++) q[i] = pv_f16_to_f32(pv_f32_to_f16(rd_float() * qscale));
        int last[R]; /* the last position row r sees */
        for (int r = 0; r < R; r++) last[r] = r == 0 ? n - 1 : (int)(rd_u32() % (unsigned)n);
        pv_attn_state_t st[2][R];
        for (int w = 0; w < 2; w++) {
            acc[w] = calloc((size_t)R * hd, sizeof *acc[w]);
            for (int r = 0; r < R; r++) st[w][r] = (pv_attn_state_t){-INFINITY, 0};
            int len = tiled ? PV_ATTN_TILE : PV_ATTN_BLOCK;
            for (int p0 = 0; p0 < n; p0 += len) {
                int np[R];
                for (int r = 0; r < R; r++) np[r] = last[r] < p0 ? 0 : last[r] - p0 + 1 > len ? len : last[r] - p0 + 1;
                if (!tiled) {
                    (w ? pv_attn_block_ref : pv_attn_block)(q, R, k + p0 * stride, v + p0 * stride, stride, np, hd, 0.125f,
                                                            st[w], acc[w], work);
                    continue;
                }
                int live = n - p0 < len ? n - p0 : len; /* the tile as floats, keys zero past it */
                memset(kf, 0, (size_t)PV_ATTN_TILE * hd * sizeof *kf);
                for (int p = 0; p < live; p++)
                    for (int i = 0; i < hd; i++) {
                        kf[p * hd + i] = pv_f16_to_f32(k[(p0 + p) * stride + i]);
                        vf[p * hd + i] = pv_f16_to_f32(v[(p0 + p) * stride + i]);
                    }
                (w ? pv_attn_tile_ref : pv_attn_tile)(q, R, kf, vf, np, hd, 0.125f, st[w], acc[w], work);
            }
        }
        for (int r = 0; r < R; r++) {
            double s[160], mx = -INFINITY, sum = 0;
            for (int p = 0; p <= last[r]; p++) {
                double dot = 0;
                for (int i = 0; i < hd; i++) dot += q[r * hd + i] * pv_f16_to_f32(k[p * stride + i]);
                s[p] = dot * 0.125;
                if (s[p] > mx) mx = s[p];
            }
            for (int p = 0; p <= last[r]; p++) sum += exp(s[p] - mx);
            for (int i = 0; i < hd; i++) {
                double want = 0;
                for (int p = 0; p <= last[r]; p++) want += exp(s[p] - mx) / sum * pv_f16_to_f32(v[p * stride + i]);
                for (int w = 0; w < 2; w++)
                    ck_assert_msg(fabs(acc[w][r * hd + i] / st[w][r].S - want) < tol,
                                  "hd %d row %d dim %d (%s, %s order): %g, want %g", hd, r, i, w ? "twin" : "fast",
                                  tiled ? "tiled" : "half", acc[w][r * hd + i] / st[w][r].S, want);
                ck_assert_msg(acc[0][r * hd + i] == acc[1][r * hd + i], "hd %d row %d dim %d (%s order): %.9g, twin %.9g", hd,
                              r, i, tiled ? "tiled" : "half", acc[0][r * hd + i], acc[1][r * hd + i]);
            }
            ck_assert(st[0][r].M == st[1][r].M && st[0][r].S == st[1][r].S); /* both orders are the twins' to the bit */
        }
        free(acc[0]);
        free(acc[1]);
        free(k);
        free(v);
        free(q);
        free(work);
        free(kf);
        free(vf);
    }
}
END_TEST

/* Threads split rows: any pool size gives the same result as one thread. */
START_TEST(test_matvec_threads) {
    int64_t rows = 301, cols = 512;
    uint8_t *w = rd_row(PV_TYPE_Q4_K, rows * cols);
    float *x = malloc(cols * sizeof *x), *y1 = malloc(rows * sizeof *y1), *y3 = malloc(rows * sizeof *y3);
    void *work = malloc(pv_matvec_work_size(PV_TYPE_Q4_K, cols));
    for (int64_t i = 0; i < cols; i++) x[i] = rd_float();
    pv_pool_t *pool = pv_pool_new(3);
    ck_assert_ptr_nonnull(pool);
    pv_matvec(PV_TYPE_Q4_K, w, rows, cols, x, y1, work, NULL);
    for (int rep = 0; rep < 50; rep++) { /* many runs: exercises wake-up and sleep paths */
        memset(y3, 0, rows * sizeof *y3);
        pv_matvec(PV_TYPE_Q4_K, w, rows, cols, x, y3, work, pool);
        ck_assert_mem_eq(y1, y3, rows * sizeof *y1);
        if (rep % 10 == 9) usleep(2000);
    }
    pv_pool_free(pool);
    ck_assert_int_ge(pv_physical_cores(), 1);
    free(w);
    free(x);
    free(y1);
    free(y3);
    free(work);
}
END_TEST

/* ---- the interleaved layout (PV_LAYOUT_X8) ------------------------------------------------- */

static const pv_type_t x8_types[] = {PV_TYPE_Q4_0, PV_TYPE_Q8_0, PV_TYPE_Q4_K, PV_TYPE_Q5_K, PV_TYPE_Q6_K, PV_TYPE_F16, PV_TYPE_BF16};
#define N_X8 (int)(sizeof x8_types / sizeof x8_types[0])

/* n_rows random rows of t, some blocks all zero, with extreme scales now and then. */
static uint8_t *random_weights(pv_type_t t, int64_t n_rows, int64_t n_cols, int rep) {
    size_t row_size = pv_type_row_size(t, n_cols), bsz = pv_type_layout(t)->type_size;
    uint8_t *w = rd_row(t, n_rows * n_cols);
    for (size_t b = 0; b < row_size * n_rows / bsz; b++) {
        uint8_t *blk = w + b * bsz;
        if (rd_u32() % 9 == 0) memset(blk, 0, bsz);
        float v = rep % 3 == 0 ? 6e4f : rep % 3 == 1 ? 6e-8f : 0.01f;
        uint16_t d = t == PV_TYPE_BF16 ? pv_f32_to_bf16(v) : pv_f32_to_f16(v);
        if (rep % 3 != 2 && rd_u32() % 2) memcpy(blk, &d, 2);
    }
    return w;
}

/* Repacking moves bytes only: every block comes back out of a group as it was. */
START_TEST(test_x8_repack_roundtrip) {
    pv_type_t t = x8_types[_i];
    int64_t blk = pv__x8_block_cols(t), n_rows = 24, n_cols = t == PV_TYPE_F16 ? 40 : t == PV_TYPE_BF16 ? 96 : 5 * blk;
    size_t row_size = pv_type_row_size(t, n_cols), bsz = pv_type_row_size(t, blk);
    ck_assert(pv_x8_supported(t, n_rows, n_cols));
    ck_assert(!pv_x8_supported(t, 20, n_cols));
    ck_assert(!pv_x8_supported(PV_TYPE_F32, 24, 256));
    ck_assert(!pv_x8_supported(PV_TYPE_F16, 24, 36));  /* f16 kernels take 8 columns at a time */
    ck_assert(!pv_x8_supported(PV_TYPE_BF16, 24, 40)); /* bf16 kernels, 32 (llama.cpp's one-token order) */
    uint8_t *w = random_weights(t, n_rows, n_cols, 2), *x8 = malloc(row_size * n_rows), blocks[PV_X8][sizeof(pv_block_q6_K)];
    pv_x8_repack(t, w, n_rows, n_cols, x8);
    void *rows[PV_X8];
    for (int r = 0; r < PV_X8; r++) rows[r] = blocks[r];
    for (int64_t g = 0; g < n_rows / PV_X8; g++)
        for (int64_t b = 0; b < n_cols / blk; b++) {
            pv__x8_unpack(t, x8 + (size_t)g * PV_X8 * row_size, b, rows);
            for (int r = 0; r < PV_X8; r++)
                ck_assert_mem_eq(blocks[r], w + (size_t)(PV_X8 * g + r) * row_size + (size_t)b * bsz, bsz);
        }
    free(w);
    free(x8);
}
END_TEST

/* The activations ref.c's vec_dot takes, inside an x8 activation row (for
 * f16, its rounded floats back in halves, exactly, in halves[n]). */
static const void *x8_dot_act(pv_type_t t, const uint8_t *row, int64_t n, uint16_t *halves) {
    if (t == PV_TYPE_F16 || t == PV_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            float v = ((const float *)row)[i];
            halves[i] = t == PV_TYPE_F16 ? pv_f32_to_f16(v) : pv_f32_to_bf16(v);
        }
        return halves;
    }
    return pv_type_layout(t)->blck_size == PV_QK_K ? (const void *)row : (const void *)pv__x8_act_blocks(row, n);
}

/* The x8 scalar twin gives ref.c's dot product of each row (the quantized
 * types' and bf16's twins sum in llama.cpp's orders, and their AVX2 kernels
 * are the twins' to the bit; f16's twin sums in double); the
 * dispatched (AVX2) kernel is within float rounding of it, for 1 to 16 tokens, odd
 * column counts, extreme scales, all-zero blocks and activations. Where a
 * type has a two-group kernel, it gives exactly what the one-group kernel
 * gives for each of the two groups; calls of 8 to 16 tokens (prompts) give
 * every whole 4 tokens exactly what a call of those 4 gives. */
START_TEST(test_x8_fast_matches_twin) {
    pv_type_t t = x8_types[_i];
    pv_dot_x8_fn twin = pv__x8_ref(t), fast = pv_kern_traits(t)->dot_x8;
    pv_dot_x16_fn fast2 = pv_kern_traits(t)->dot_x16;
    pv_vec_dot_fn ref_dot = pv_kern_ref(t)->vec_dot;
    ck_assert_ptr_nonnull(twin);
    ck_assert_ptr_nonnull(fast);
    printf("kern: %s x8 kernels use %s%s\n", pv_type_name(t), pv_kern_isa(), fast2 ? " (and two groups at once)" : "");
    pv_type_t act_t = pv_kern_ref(t)->vec_dot_type;
    int64_t blk = pv_type_layout(t)->blck_size;
    int same = t != PV_TYPE_F16; /* llama.cpp's orders: the kernel is the twin's to the bit */
    enum { ROWS = 2 * PV_X8 };
    for (int rep = 0; rep < 60; rep++) {
        int64_t n = t == PV_TYPE_F16 ? 8 * (1 + rd_u32() % 40) : t == PV_TYPE_BF16 ? 32 * (1 + rd_u32() % 40) /* 1-3 spans */
                                                                 : blk * (1 + rd_u32() % (blk == PV_QK ? 13 : 4));
        int n_tok = rep % 3 == 2 ? 8 + rep % 9 : 1 + rep % 7;
        size_t row_size = pv_type_row_size(t, n), act_size = pv__x8_act_row_size(t, n), group_size = PV_X8 * row_size;
        uint8_t *w = random_weights(t, ROWS, n, rep), *x8 = malloc(ROWS * row_size), *act = malloc(act_size * n_tok);
        pv_x8_repack(t, w, ROWS, n, x8);
        float *x = malloc(n * sizeof *x), *xa = malloc(n * sizeof *xa), *y = malloc(n * sizeof *y);
        uint16_t *halves = malloc(n * sizeof *halves);
        double mag[16] = {0};
        for (int j = 0; j < n_tok; j++) {
            float scale = (rep + j) % 4 == 0 ? 1e-6f : (rep + j) % 4 == 1 ? 3e4f : 1.0f;
            for (int64_t i = 0; i < n; i++) x[i] = j == 3 && rep % 5 == 0 ? 0.0f : rd_float() * scale;
            pv__x8_act_quantize(t, x, act + j * act_size, n);
            pv_kern_ref(act_t)->to_float(x8_dot_act(t, act + j * act_size, n, halves), xa, n);
            for (int r = 0; r < ROWS; r++) {
                pv_kern_ref(t)->to_float(w + r * row_size, y, n);
                for (int64_t i = 0; i < n; i++) mag[j] += fabs((double)y[i] * xa[i]);
            }
        }
        float want[16 * PV_X8], got[2][16 * PV_X8], both[16 * ROWS], quad[4 * PV_X8];
        if (fast2) fast2(x8, group_size, act, act_size, n_tok, n, both);
        for (int g = 0; g < 2; g++) {
            twin(x8 + g * group_size, act, act_size, n_tok, n, want);
            fast(x8 + g * group_size, act, act_size, n_tok, n, got[g]);
            for (int j = 0; n_tok >= 8 && j + 4 <= n_tok; j += 4) {
                fast(x8 + g * group_size, act + j * act_size, act_size, 4, n, quad);
                for (int i = 0; i < 4 * PV_X8; i++)
                    ck_assert_msg(quad[i] == got[g][PV_X8 * j + i], "%s n=%lld rep %d: %d tokens at once, token %d row %d: %g, "
                                  "4 at once %g", pv_type_name(t), (long long)n, rep, n_tok, j + i / PV_X8, i % PV_X8,
                                  got[g][PV_X8 * j + i], quad[i]);
            }
            for (int j = 0; j < n_tok; j++)
                for (int r = 0; r < PV_X8; r++) {
                    const uint8_t *row = w + (size_t)(PV_X8 * g + r) * row_size;
                    float row_dot = ref_dot(row, x8_dot_act(t, act + j * act_size, n, halves), n);
                    double twin_tol = 1e-6 * mag[j];
                    ck_assert_msg(fabs(want[PV_X8 * j + r] - row_dot) <= twin_tol, "%s twin row %d tok %d: %g vs %g",
                                  pv_type_name(t), r, j, want[PV_X8 * j + r], row_dot);
                    if (same)
                        ck_assert_msg(got[g][PV_X8 * j + r] == want[PV_X8 * j + r], "%s n=%lld rep %d row %d tok %d: %.9g, twin %.9g",
                                      pv_type_name(t), (long long)n, rep, r, j, got[g][PV_X8 * j + r], want[PV_X8 * j + r]);
                    ck_assert_msg(fabs(got[g][PV_X8 * j + r] - row_dot) <= 2e-5 * mag[j] + 1e-30,
                                  "%s n=%lld rep %d group %d row %d tok %d: fast %g, scalar %g", pv_type_name(t),
                                  (long long)n, rep, g, r, j, got[g][PV_X8 * j + r], row_dot);
                    if (fast2)
                        ck_assert_msg(both[ROWS * j + PV_X8 * g + r] == got[g][PV_X8 * j + r],
                                      "%s n=%lld rep %d: two groups at once, group %d row %d tok %d: %g, one group %g",
                                      pv_type_name(t), (long long)n, rep, g, r, j, both[ROWS * j + PV_X8 * g + r],
                                      got[g][PV_X8 * j + r]);
                }
        }
        free(w);
        free(x8);
        free(act);
        free(x);
        free(xa);
        free(y);
        free(halves);
    }
}
END_TEST

/* bf16 matmuls of one token take ggml_vec_dot_bf16's order (vec_dot1),
 * batches llamafile's: the one-token x8 kernel, its twin and ref.c's
 * vec_dot1 of each row agree to the bit, and so do pv_matmul of one token on
 * the interleaved weights and on the file's rows. */
START_TEST(test_x8_bf16_one_token) {
    const pv_kern_traits_t *k = pv_kern_traits(PV_TYPE_BF16);
    pv_dot_x8_fn twin = pv__x8_ref1(PV_TYPE_BF16);
    ck_assert_ptr_nonnull(k->dot1_x8);
    ck_assert_ptr_nonnull(twin);
    enum { ROWS = 3 * PV_X8 };
    for (int rep = 0; rep < 30; rep++) {
        int64_t n = 32 * (1 + rd_u32() % 12);
        size_t row_size = pv_type_row_size(PV_TYPE_BF16, n);
        uint8_t *w = random_weights(PV_TYPE_BF16, ROWS, n, rep), *x8 = malloc(row_size * ROWS);
        pv_x8_repack(PV_TYPE_BF16, w, ROWS, n, x8);
        float *x = malloc(n * sizeof *x), *act = malloc(pv__x8_act_row_size(PV_TYPE_BF16, n)), y_rows[ROWS], y_x8[ROWS];
        uint16_t *halves = malloc(n * sizeof *halves);
        float scale = rep % 3 == 0 ? 1e-6f : rep % 3 == 1 ? 3e4f : 1.0f;
        for (int64_t i = 0; i < n; i++) x[i] = rd_float() * scale;
        pv__x8_act_quantize(PV_TYPE_BF16, x, act, n);
        for (int g = 0; g < ROWS / PV_X8; g++) {
            float want[PV_X8], got[PV_X8];
            twin(x8 + (size_t)g * PV_X8 * row_size, act, 0, 1, n, want);
            k->dot1_x8(x8 + (size_t)g * PV_X8 * row_size, act, 0, 1, n, got);
            for (int r = 0; r < PV_X8; r++) {
                float row_dot = pv_kern_ref(PV_TYPE_BF16)->vec_dot1(w + (size_t)(PV_X8 * g + r) * row_size,
                                                                    x8_dot_act(PV_TYPE_BF16, (const uint8_t *)act, n, halves), n);
                ck_assert_msg(want[r] == row_dot, "n=%lld rep %d row %d: twin %.9g, vec_dot1 %.9g", (long long)n, rep, r,
                              want[r], row_dot);
                ck_assert_msg(got[r] == want[r], "n=%lld rep %d row %d: fast %.9g, twin %.9g", (long long)n, rep, r, got[r],
                              want[r]);
            }
        }
        const float *xs[1] = {x};
        float *ys_rows[1] = {y_rows}, *ys_x8[1] = {y_x8};
        void *work = malloc(pv_matmul_work_size(PV_TYPE_BF16, n, 1));
        pv_matmul(PV_TYPE_BF16, PV_LAYOUT_ROWS, w, ROWS, n, xs, ys_rows, 1, work, NULL);
        pv_matmul(PV_TYPE_BF16, PV_LAYOUT_X8, x8, ROWS, n, xs, ys_x8, 1, work, NULL);
        ck_assert_mem_eq(y_rows, y_x8, sizeof y_rows);
        free(work);
        free(w);
        free(x8);
        free(x);
        free(act);
        free(halves);
    }
}
END_TEST

/* pv_matmul on the repacked weight, on 1 and 3 threads, against pv_matmul on
 * the file layout: the same products, so within float rounding of their
 * magnitudes (q8_0's and q6_K's x8 kernels sum in llama.cpp's lanes). */
START_TEST(test_x8_matmul_matches_rows) {
    pv_type_t t = x8_types[_i];
    int64_t n_rows = 8 * 37, n_cols = pv_type_layout(t)->blck_size == PV_QK_K ? 256 * 3 : 32 * 23;
    int n_tok = 9;
    size_t row_size = pv_type_row_size(t, n_cols);
    uint8_t *w = random_weights(t, n_rows, n_cols, 2), *x8 = malloc(row_size * n_rows);
    pv_x8_repack(t, w, n_rows, n_cols, x8);
    float *x = malloc(n_tok * n_cols * sizeof *x), *y = malloc(3 * n_tok * n_rows * sizeof *y);
    const float *xs[9];
    float *ys_rows[9], *ys_x8[9], *ys_x8_t[9];
    for (int j = 0; j < n_tok; j++) {
        for (int64_t i = 0; i < n_cols; i++) x[j * n_cols + i] = rd_float();
        xs[j] = x + j * n_cols;
        ys_rows[j] = y + j * n_rows;
        ys_x8[j] = y + (n_tok + j) * n_rows;
        ys_x8_t[j] = y + (2 * n_tok + j) * n_rows;
    }
    void *work = malloc(pv_matmul_work_size(t, n_cols, n_tok));
    pv_pool_t *pool = pv_pool_new(3);
    ck_assert_ptr_nonnull(pool);
    pv_matmul(t, PV_LAYOUT_ROWS, w, n_rows, n_cols, xs, ys_rows, n_tok, work, NULL);
    pv_matmul(t, PV_LAYOUT_X8, x8, n_rows, n_cols, xs, ys_x8, n_tok, work, NULL);
    pv_matmul(t, PV_LAYOUT_X8, x8, n_rows, n_cols, xs, ys_x8_t, n_tok, work, pool);
    float *wf = malloc(n_cols * sizeof *wf);
    for (int64_t r = 0; r < n_rows; r++) {
        pv_kern_ref(t)->to_float(w + (size_t)r * row_size, wf, n_cols);
        for (int j = 0; j < n_tok; j++) {
            double mag = 0; /* the products' magnitudes: the two layouts may sum them in other orders */
            for (int64_t i = 0; i < n_cols; i++) mag += fabs((double)wf[i] * xs[j][i]);
            ck_assert_msg(fabs(ys_x8[j][r] - ys_rows[j][r]) <= 1e-5 * mag + 1e-30, "%s row %lld tok %d: x8 %g, rows %g",
                          pv_type_name(t), (long long)r, j, ys_x8[j][r], ys_rows[j][r]);
        }
    }
    free(wf);
    for (int j = 0; j < n_tok; j++)
        ck_assert_mem_eq(ys_x8[j], ys_x8_t[j], n_rows * sizeof(float)); /* threads split groups, not sums */
    pv_pool_free(pool);
    free(w);
    free(x8);
    free(x);
    free(y);
    free(work);
}
END_TEST

/* A set of matmuls over one input (q, k, v; gate, up) gives what one
 * pv_matmul per weight gives, bit for bit: shared formats (q4_0 with q8_0;
 * q4_K or q5_K with q6_K, as in Q4_K_M and Q5_K_M layers) in one pool run,
 * and a set that mixes formats (q4_0 with q4_K) or layouts one by one. */
START_TEST(test_matmul_parts_match_singles) {
    static const pv_type_t sets[][3] = {{PV_TYPE_Q4_0, PV_TYPE_Q8_0, PV_TYPE_Q4_0}, {PV_TYPE_Q4_K, PV_TYPE_Q6_K, PV_TYPE_Q4_K},
                                        {PV_TYPE_Q5_K, PV_TYPE_Q6_K, PV_TYPE_Q5_K}, {PV_TYPE_F16, PV_TYPE_F16, PV_TYPE_F16},
                                        {PV_TYPE_Q4_0, PV_TYPE_Q4_K, PV_TYPE_F16}};
    const pv_type_t *ts = sets[_i];
    int64_t n_cols = 256 * 3, rows[3] = {8 * 21, 8 * 5, 8 * 4};
    enum { NT = 7 };
    float *x = malloc(NT * n_cols * sizeof *x), *y = malloc(2 * 3 * NT * rows[0] * sizeof *y);
    const float *xs[NT];
    float *ys[2][3][NT];
    for (int j = 0; j < NT; j++) {
        for (int64_t i = 0; i < n_cols; i++) x[j * n_cols + i] = rd_float();
        xs[j] = x + j * n_cols;
    }
    uint8_t *w[3];
    size_t work_size = 0;
    pv_matmul_part_t parts[3];
    for (int i = 0; i < 3; i++) {
        uint8_t *file = random_weights(ts[i], rows[i], n_cols, 3);
        w[i] = malloc(pv_type_row_size(ts[i], n_cols) * rows[i]);
        pv_x8_repack(ts[i], file, rows[i], n_cols, w[i]);
        free(file);
        size_t ws = pv_matmul_work_size(ts[i], n_cols, NT);
        if (ws > work_size) work_size = ws;
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < NT; j++) ys[k][i][j] = y + ((size_t)(k * 3 + i) * NT + j) * rows[0];
        parts[i] = (pv_matmul_part_t){ts[i], PV_LAYOUT_X8, w[i], rows[i], ys[0][i]};
    }
    void *work = malloc(work_size);
    pv_pool_t *pool = pv_pool_new(2);
    for (int n_tok = 1; n_tok <= NT; n_tok += 3) {
        pv_matmul_parts(parts, 3, n_cols, xs, n_tok, work, pool);
        for (int i = 0; i < 3; i++) {
            pv_matmul(ts[i], PV_LAYOUT_X8, w[i], rows[i], n_cols, xs, ys[1][i], n_tok, work, pool);
            for (int j = 0; j < n_tok; j++)
                ck_assert_msg(!memcmp(ys[0][i][j], ys[1][i][j], rows[i] * sizeof(float)), "set %d part %d (%s), %d tokens, token %d",
                              _i, i, pv_type_name(ts[i]), n_tok, j);
        }
    }
    pv_pool_free(pool);
    for (int i = 0; i < 3; i++) free(w[i]);
    free(work);
    free(x);
    free(y);
}
END_TEST

/* A long prompt's matmul (its tokens go through the kernels 16 at a time,
 * the threads splitting the groups) gives the same numbers as calls of at
 * most 16 tokens each on one thread. */
START_TEST(test_x8_matmul_token_blocks) {
    static const pv_type_t ts[] = {PV_TYPE_Q4_0, PV_TYPE_Q4_K, PV_TYPE_F16};
    pv_type_t t = ts[_i];
    int64_t n_rows = 8 * 40, n_cols = t == PV_TYPE_F16 ? 4096 : 8192;
    enum { NT = 37 };
    uint8_t *file = random_weights(t, n_rows, n_cols, 1), *w = malloc(pv_type_row_size(t, n_cols) * n_rows);
    pv_x8_repack(t, file, n_rows, n_cols, w);
    float *x = malloc(NT * n_cols * sizeof *x), *y = malloc(2 * NT * n_rows * sizeof *y);
    const float *xs[NT];
    float *ys[NT], *ys_b[NT];
    for (int j = 0; j < NT; j++) {
        for (int64_t i = 0; i < n_cols; i++) x[j * n_cols + i] = rd_float();
        xs[j] = x + j * n_cols;
        ys[j] = y + j * n_rows;
        ys_b[j] = y + (NT + j) * n_rows;
    }
    void *work = malloc(pv_matmul_work_size(t, n_cols, NT));
    pv_pool_t *pool = pv_pool_new(2);
    pv_matmul(t, PV_LAYOUT_X8, w, n_rows, n_cols, xs, ys, NT, work, pool);
    for (int b = 0; b < NT; b += 16)
        pv_matmul(t, PV_LAYOUT_X8, w, n_rows, n_cols, xs + b, ys_b + b, NT - b < 16 ? NT - b : 16, work, NULL);
    for (int j = 0; j < NT; j++)
        ck_assert_msg(!memcmp(ys[j], ys_b[j], n_rows * sizeof(float)), "%s token %d", pv_type_name(t), j);
    pv_pool_free(pool);
    free(file);
    free(w);
    free(x);
    free(y);
    free(work);
}
END_TEST

START_TEST(test_matvec_rows) {
    float w[3 * 4] = {1, 2, 3, 4, 0, 1, 0, 1, -1, -1, -1, -1};
    float x[4] = {1, 1, 2, 0.5f}, y[3], row[4], work[4];
    ck_assert_uint_eq(pv_matvec_work_size(PV_TYPE_F32, 4), sizeof work);
    pv_matvec(PV_TYPE_F32, w, 3, 4, x, y, work, NULL);
    ck_assert_float_eq(y[0], 1 + 2 + 6 + 2);
    ck_assert_float_eq(y[1], 1.5f);
    ck_assert_float_eq(y[2], -4.5f);
    pv_get_row(PV_TYPE_F32, w, 2, 4, row);
    ck_assert_float_eq(row[3], -1.0f);
    ck_assert_ptr_null(pv_kern_traits(PV_TYPE_Q2_K));
    ck_assert(!pv_kern_supported(PV_TYPE_Q8_K)); /* activations only */
    ck_assert_ptr_null(pv_kern_traits(PV_TYPE_COUNT));
}
END_TEST

/* Several rows normalised at once are each what pv_rmsnorm gives, bit for bit. */
START_TEST(test_rmsnorm_rows) {
    enum { N = 203, ROWS = 9 };
    float x[ROWS * N], w[N], out[ROWS * N], want[N];
    for (int i = 0; i < N; i++) w[i] = rd_float() * 2;
    for (int i = 0; i < ROWS * N; i++) x[i] = rd_float() * (i % 37 == 0 ? 300.0f : 3.0f);
    for (int rows = 1; rows <= ROWS; rows++) {
        pv_rmsnorm_rows(out, x, w, N, 1e-5f, rows);
        for (int r = 0; r < rows; r++) {
            pv_rmsnorm(want, x + r * N, w, N, 1e-5f);
            ck_assert_msg(!memcmp(out + r * N, want, sizeof want), "%d rows: row %d differs", rows, r);
        }
    }
}
END_TEST

/* RoPE (dispatched) equals its twin bit for bit, both styles, tails included. */
START_TEST(test_rope_matches_twin) {
    static const int rots[] = {2, 4, 6, 16, 24, 32, 40, 64, 96, 128};
    float x[128], y[128], want[128], cs[128];
    for (size_t k = 0; k < sizeof rots / sizeof rots[0]; k++)
        for (int neox = 0; neox < 2; neox++) {
            int n = rots[k];
            pv_rope_angles(cs, n, 1 + 37 * (int)k, 10000.0f, NULL, 1.0f);
            for (int i = 0; i < n; i++) x[i] = rd_float() * (i % 9 == 0 ? 1000.0f : 2.0f);
            memcpy(y, x, sizeof x);
            memcpy(want, x, sizeof x);
            pv_rope_apply(y, n, cs, neox);
            pv_rope_apply_ref(want, n, cs, neox);
            for (int i = 0; i < n; i++)
                ck_assert_msg(y[i] == want[i], "n_rot %d neox %d [%d]: %.9g vs %.9g", n, neox, i, y[i], want[i]);
        }
}
END_TEST

START_TEST(test_ops) {
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 1}, out[4];
    pv_rmsnorm(out, x, w, 4, 0.0f);
    float rms = sqrtf((1 + 4 + 9 + 16) / 4.0f);
    ck_assert_float_eq_tol(out[2], 3 / rms * 2, 1e-6f);

    float s[3] = {1000, 1000, 1000};
    pv_softmax(s, 3); /* large values must not overflow */
    ck_assert_float_eq_tol(s[0], 1.0f / 3, 1e-6f);

    float r[4] = {1, 0, 1, 0}, cs[4];
    pv_rope_angles(cs, 4, 1, 10000.0f, NULL, 1.0f); /* pair 0 turns by 1 rad, pair 1 by 1/100 rad */
    pv_rope_apply(r, 4, cs, 0);
    ck_assert_float_eq_tol(r[0], cosf(1), 1e-6f);
    ck_assert_float_eq_tol(r[1], sinf(1), 1e-6f);
    ck_assert_float_eq_tol(r[2], cosf(0.01f), 1e-6f);
    ck_assert_float_eq_tol(r[3], sinf(0.01f), 1e-6f);
    float n[4] = {1, 1, 0, 0}; /* NeoX pairs (0, 2) and (1, 3); frequency divisors and scale */
    float ff[2] = {2.0f, 1.0f};
    pv_rope_angles(cs, 4, 1, 10000.0f, ff, 2.0f);
    pv_rope_apply(n, 4, cs, 1);
    ck_assert_float_eq_tol(n[0], 2 * cosf(0.5f), 1e-6f);
    ck_assert_float_eq_tol(n[2], 2 * sinf(0.5f), 1e-6f);
    ck_assert_float_eq_tol(n[1], 2 * cosf(0.01f), 1e-6f);
    ck_assert_float_eq_tol(n[3], 2 * sinf(0.01f), 1e-6f);
    float r0[2] = {0.3f, -0.7f};
    pv_rope_angles(cs, 2, 0, 10000.0f, NULL, 1.0f);
    pv_rope_apply(r0, 2, cs, 0); /* position 0 is the identity */
    ck_assert_float_eq(r0[0], 0.3f);

    float a[2] = {0, 2}, b[2] = {5, 3};
    pv_swiglu(a, b, 2);
    ck_assert_float_eq(a[0], 0.0f);
    ck_assert_float_eq_tol(a[1], 2 / (1 + expf(-2)) * 3, 1e-6f);
}
END_TEST

/* The dispatched SwiGLU against its twin: odd lengths, large and tiny inputs. */
START_TEST(test_swiglu_matches_twin) {
    enum { N = 203 };
    float a[N], b[N], x[N];
    for (int i = 0; i < N; i++) {
        x[i] = i % 17 == 0 ? (i % 2 ? 100.0f : -100.0f) : i % 13 == 0 ? (i % 2 ? 130.0f : -130.0f) : rd_float() * 12;
        b[i] = rd_float() * 3;
    }
    for (int n = 1; n <= N; n += 29) {
        float want[N];
        memcpy(a, x, sizeof a);
        memcpy(want, x, sizeof want);
        pv_swiglu(a, b, n);
        pv_swiglu_ref(want, b, n);
        for (int i = 0; i < n; i++) /* the same arithmetic (ggml's vector exp, expf on the tail): bit for bit */
            ck_assert_msg(a[i] == want[i], "n %d [%d]: %.9g vs %.9g (x %g)", n, i, a[i], want[i], x[i]);
    }
    /* the exp itself over its whole range, overflow and underflow included, within 2 ulp of expf */
    for (float t = -110.0f; t < 95.0f; t += 0.37f) {
        float e = pv_exp_ggml(t), want = expf(t);
        ck_assert_msg(e == want || fabsf(e - want) <= 2.5e-7f * want, "exp(%g) = %.9g, expf %.9g", t, e, want);
    }
}
END_TEST

/* The x8 activation heads (dispatched) equal the twin's over any bytes, extremes included. */
START_TEST(test_x8_heads_match_twin) {
    enum { NB = 37 };
    pv_block_q8_0 y[NB];
    pv_x8_head h[NB], want[NB];
    for (int b = 0; b < NB; b++) {
        y[b].d = pv_f32_to_f16(rd_float() * (b % 5 == 0 ? 1e-6f : 3.0f));
        for (int j = 0; j < PV_QK; j++)
            y[b].qs[j] = (int8_t)(b % 7 == 1 ? -128 : b % 7 == 2 ? 127 : b % 7 == 3 ? 0 : (int)(rd_u32() % 256) - 128);
    }
    memset(h, 0, sizeof h);
    memset(want, 0, sizeof want);
    pv__x8_heads(y, h, NB);
    pv__x8_heads_ref(y, want, NB);
    for (int b = 0; b < NB; b++)
        ck_assert_msg(h[b].d == want[b].d && h[b].offset[0] == want[b].offset[0] && h[b].offset[1] == want[b].offset[1],
                      "block %d: (%g, %d, %d) vs (%g, %d, %d)", b, h[b].d, h[b].offset[0], h[b].offset[1], want[b].d,
                      want[b].offset[0], want[b].offset[1]);
    ck_assert_int_eq(want[1].offset[0], -8 * 16 * -128); /* all -128: 16 bytes per half */
}
END_TEST

START_TEST(test_exp_shifted_matches_twin) {
    enum { N = 203 };
    float x[N], y[N], want[N];
    for (int i = 0; i < N; i++)
        x[i] = i % 11 == 0 ? -INFINITY : i % 17 == 0 ? -300.0f : i % 19 == 0 ? 5.0f : rd_float() * 40;
    for (int n = 1; n <= N; n += 29) {
        pv_exp_shifted(y, x, n, 5.0f, 1.0f / 0.7f);
        pv_exp_shifted_ref(want, x, n, 5.0f, 1.0f / 0.7f);
        for (int i = 0; i < n; i++) {
            ck_assert_msg(y[i] == want[i], "n %d [%d]: %.9g vs %.9g (x %g)", n, i, y[i], want[i], x[i]);
            float e = expf((x[i] - 5.0f) * (1.0f / 0.7f)); /* masked logits weigh 0; the rest within 2 ulp of expf */
            ck_assert_msg(x[i] == -INFINITY ? y[i] == 0.0f : y[i] == e || fabsf(y[i] - e) <= 2.5e-7f * e + 1e-37f,
                          "[%d] e^%g: %.9g vs %.9g", i, x[i], y[i], e);
        }
    }
}
END_TEST

/* The decode attention's vector expf against libm's expf, bit for bit, on
 * every 4099th float of all 2^32 and on the edges of its main path. With
 * PV_EXPF_STEP=1 CK_TIMEOUT_MULTIPLIER=4, every float (about a minute; all
 * 2^32 agree with glibc 2.36). */
START_TEST(test_expf8_matches_libm) {
    if (strcmp(pv_kern_isa(), "avx2") != 0) return;
    pv_expf8_fn f = pv__avx2_expf8();
    const char *env = getenv("PV_EXPF_STEP");
    uint64_t step = env && atoi(env) > 0 ? (uint64_t)atoi(env) : 4099, bad = 0;
    float edges[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 88.0f, -88.0f, 0x1.62e42ep6f, 0x1.62e430p6f, -0x1.9fe368p6f,
                     -0x1.9fe36ap6f, -0x1.9d1d9ep6f, -0x1.9d1da0p6f, -87.9999f, 1e-40f, -1e-40f, -150.0f, 100.0f};
    float x[8], y[8];
    for (int i = 0; i < (int)(sizeof edges / sizeof *edges); i += 8) {
        for (int j = 0; j < 8; j++) x[j] = edges[(i + j) % (sizeof edges / sizeof *edges)];
        f(x, y);
        for (int j = 0; j < 8; j++)
            ck_assert_msg(memcmp(&y[j], &(float){expf(x[j])}, 4) == 0 || (isnan(x[j]) && isnan(y[j])), "expf(%a): %a, libm %a",
                          x[j], y[j], expf(x[j]));
    }
    for (uint64_t b = 0; b < (1ull << 32); b += 8 * step) {
        for (int j = 0; j < 8; j++) {
            uint32_t u = (uint32_t)(b + (uint64_t)j * step);
            memcpy(&x[j], &u, 4);
        }
        f(x, y);
        for (int j = 0; j < 8; j++) {
            float want = expf(x[j]);
            if (memcmp(&y[j], &want, 4) != 0 && !(isnan(want) && isnan(y[j])) && bad++ < 5)
                fprintf(stderr, "expf(%a): %a, libm %a\n", x[j], y[j], want);
        }
    }
    ck_assert_msg(bad == 0, "%llu values differ from libm's expf", (unsigned long long)bad);
}
END_TEST

Suite *kern_suite(void) {
    Suite *s = suite_create("kern");
    TCase *tc = tcase_create("scalar");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_f16_roundtrip_exhaustive);
    tcase_add_test(tc, test_expf8_matches_libm);
    tcase_add_test(tc, test_q4_0_by_hand);
    tcase_add_test(tc, test_q8_0_by_hand);
    tcase_add_test(tc, test_q4_K_by_hand);
    tcase_add_test(tc, test_q6_K_by_hand);
    tcase_add_loop_test(tc, test_dot_matches_dequant, 0, N_SUPPORTED);
    tcase_add_loop_test(tc, test_zero_blocks, 0, N_SUPPORTED);
    tcase_add_test(tc, test_activation_quantizers);
    tcase_add_test(tc, test_activation_quantizers_match_twins);
    tcase_add_loop_test(tc, test_fast_matches_scalar_twin, 0, N_SUPPORTED);
    tcase_add_test(tc, test_matvec_threads);
    tcase_add_test(tc, test_attn_block_matches_twin);
    tcase_add_test(tc, test_swiglu_matches_twin);
    tcase_add_test(tc, test_exp_shifted_matches_twin);
    tcase_add_test(tc, test_x8_heads_match_twin);
    tcase_add_test(tc, test_rmsnorm_rows);
    tcase_add_test(tc, test_rope_matches_twin);
    tcase_add_loop_test(tc, test_matmul_parts_match_singles, 0, 5);
    tcase_add_loop_test(tc, test_x8_matmul_token_blocks, 0, 3);
    tcase_add_test(tc, test_matvec_rows);
    tcase_add_loop_test(tc, test_x8_repack_roundtrip, 0, N_X8);
    tcase_add_loop_test(tc, test_x8_fast_matches_twin, 0, N_X8);
    tcase_add_loop_test(tc, test_x8_matmul_matches_rows, 0, N_X8);
    tcase_add_test(tc, test_x8_bf16_one_token);
    tcase_add_test(tc, test_ops);
    suite_add_tcase(s, tc);
    return s;
}
