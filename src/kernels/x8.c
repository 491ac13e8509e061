/* x8.c - the row-interleaved weight layout (PV_LAYOUT_X8, described in
 * kern_internal.h): repacking at load, the activation rows its kernels read,
 * and the scalar twins of those kernels.
 *
 * The layout only moves bytes: block b of row r keeps its half-precision
 * scales and its other bytes (quants, packed sub-block scales), the latter
 * cut into 4-byte pieces that are spread so that the 8 rows of a group sit
 * side by side. So a twin can take any block back out (pv__x8_unpack) and
 * hand it to ref.c's vec_dot; summed block after block, that is the scalar
 * dot product of the whole row (exactly so where a block is one sub-block,
 * as for q4_0 and q8_0). */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kern.h"
#include "kernels/kern_internal.h"

#define PIECE 4 /* bytes of one row that lie together */

int pv_x8_supported(pv_type_t t, int64_t n_rows, int64_t n_cols) {
    int quant = t == PV_TYPE_Q4_0 || t == PV_TYPE_Q8_0 || t == PV_TYPE_Q4_K || t == PV_TYPE_Q5_K || t == PV_TYPE_Q6_K;
    int half = (t == PV_TYPE_F16 && n_cols % 8 == 0) || (t == PV_TYPE_BF16 && n_cols % 32 == 0);
    return (quant || half) && n_rows > 0 && n_rows % PV_X8 == 0;
}

/* Where a file block keeps its half-precision scales (n_half of them from
 * byte half_at); its other bytes are the quants and packed sub-scales. */
typedef struct {
    size_t bytes; /* of one file block */
    size_t half_at;
    int n_half;
} x8_format_t;

static x8_format_t x8_format(pv_type_t t) {
    switch (t) {
    case PV_TYPE_Q4_K: return (x8_format_t){sizeof(pv_block_q4_K), 0, 2};
    case PV_TYPE_Q5_K: return (x8_format_t){sizeof(pv_block_q5_K), 0, 2};
    case PV_TYPE_Q6_K: return (x8_format_t){sizeof(pv_block_q6_K), offsetof(pv_block_q6_K, d), 1};
    case PV_TYPE_F16:
    case PV_TYPE_BF16: return (x8_format_t){PV_X8_F16_COLS * sizeof(uint16_t), 0, 0}; /* 2 columns, no scale */
    default: return (x8_format_t){pv_type_row_size(t, PV_QK), 0, 1}; /* q4_0, q8_0 */
    }
}

#define MAX_REST 256 /* bytes of a file block besides its scales, at most */

void pv__x8_unpack(pv_type_t t, const void *group, int64_t b, void *rows[PV_X8]) {
    x8_format_t f = x8_format(t);
    size_t rest = f.bytes - 2 * (size_t)f.n_half, halves = 2 * (size_t)f.n_half * PV_X8;
    const uint8_t *x = (const uint8_t *)group + (size_t)b * PV_X8 * f.bytes, *pieces = x + halves;
    for (int r = 0; r < PV_X8; r++) {
        uint8_t *out = rows[r], other[MAX_REST];
        for (int h = 0; h < f.n_half; h++) memcpy(out + f.half_at + 2 * h, x + 2 * (PV_X8 * h + r), 2);
        for (size_t k = 0; k < rest / PIECE; k++) memcpy(other + PIECE * k, pieces + PV_X8 * PIECE * k + PIECE * r, PIECE);
        memcpy(out, other, f.half_at);
        memcpy(out + f.half_at + 2 * f.n_half, other + f.half_at, rest - f.half_at);
    }
}

/* The inverse of pv__x8_unpack: row r's block from rows[r] into x8 block x. */
static void pack_block(x8_format_t f, const uint8_t *const rows[PV_X8], uint8_t *x) {
    size_t rest = f.bytes - 2 * (size_t)f.n_half, halves = 2 * (size_t)f.n_half * PV_X8;
    for (int r = 0; r < PV_X8; r++) {
        uint8_t other[MAX_REST];
        for (int h = 0; h < f.n_half; h++) memcpy(x + 2 * (PV_X8 * h + r), rows[r] + f.half_at + 2 * h, 2);
        memcpy(other, rows[r], f.half_at);
        memcpy(other + f.half_at, rows[r] + f.half_at + 2 * f.n_half, rest - f.half_at);
        for (size_t k = 0; k < rest / PIECE; k++) memcpy(x + halves + PV_X8 * PIECE * k + PIECE * r, other + PIECE * k, PIECE);
    }
}

void pv_x8_repack(pv_type_t t, const void *src, int64_t n_rows, int64_t n_cols, void *dst) {
    x8_format_t f = x8_format(t);
    size_t row_size = pv_type_row_size(t, n_cols);
    int64_t nb = (int64_t)(row_size / f.bytes);
    const uint8_t *s = src;
    uint8_t *d = dst;
    for (int64_t g = 0; g < n_rows / PV_X8; g++, s += PV_X8 * row_size)
        for (int64_t b = 0; b < nb; b++, d += PV_X8 * f.bytes) {
            const uint8_t *rows[PV_X8];
            for (int r = 0; r < PV_X8; r++) rows[r] = s + (size_t)r * row_size + (size_t)b * f.bytes;
            pack_block(f, rows, d);
        }
}

/* q4_0 and q8_0 read the x8 activation rows; K-quants read plain q8_K rows. */
static int reads_q8_K(pv_type_t t) { return t == PV_TYPE_Q4_K || t == PV_TYPE_Q5_K || t == PV_TYPE_Q6_K; }

static int reads_halves(pv_type_t t) { return t == PV_TYPE_F16 || t == PV_TYPE_BF16; }

int pv__x8_act_format(pv_type_t t) { return t == PV_TYPE_F16 ? 2 : t == PV_TYPE_BF16 ? 3 : reads_q8_K(t); }

size_t pv__x8_act_row_size(pv_type_t t, int64_t n) {
    if (reads_halves(t)) return (size_t)n * sizeof(float);
    return reads_q8_K(t) ? pv_type_row_size(PV_TYPE_Q8_K, n) : pv__x8_act_size(n);
}

/* f16 (bf16) weights dot f16 (bf16) activations (as ref.c's vec_dot does,
 * and llama.cpp): the activations are rounded to half precision (bf16) and
 * kept as floats, so that the kernels broadcast them without converting. The
 * halves are written to the row's second half, then widened in place:
 * converting in ascending order never overwrites a half not yet read. */
static void halves_act_quantize(pv_type_t t, const float *x, void *row, int64_t n) {
    const pv_kern_traits_t *k = pv_kern_traits(t);
    uint16_t *halves = (uint16_t *)((float *)row + n / 2);
    k->from_float(x, halves, n);
    k->to_float(halves, row, n);
}

void pv__x8_act_quantize(pv_type_t t, const float *x, void *row, int64_t n) {
    if (reads_halves(t)) halves_act_quantize(t, x, row, n);
    else if (reads_q8_K(t)) pv_kern_traits(PV_TYPE_Q8_K)->from_float(x, row, n);
    else pv__x8_quantize(x, row, n);
}

int64_t pv__x8_block_cols(pv_type_t t) {
    return reads_halves(t) ? PV_X8_F16_COLS : (int64_t)pv_type_layout(t)->blck_size;
}

size_t pv__x8_act_size(int64_t n) {
    size_t bytes = (size_t)(n / PV_QK) * (sizeof(pv_x8_head) + sizeof(pv_block_q8_0));
    return (bytes + 31) & ~(size_t)31;
}

void pv__x8_heads_ref(const pv_block_q8_0 *y, pv_x8_head *h, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        int32_t sum[2] = {0, 0};
        for (int j = 0; j < PV_QK; j++) sum[j % 4 / 2] += y[b].qs[j];
        h[b] = (pv_x8_head){pv_f16_to_f32(y[b].d), {(int16_t)(-8 * sum[0]), (int16_t)(-8 * sum[1])}};
    }
}

void pv__x8_quantize(const float *x, void *row, int64_t n) {
    int64_t nb = n / PV_QK;
    pv_x8_head *h = row;
    pv_block_q8_0 *y = (pv_block_q8_0 *)(h + nb);
    pv_kern_traits(PV_TYPE_Q8_0)->from_float(x, y, n);
    pv__x8_heads(y, h, nb);
}

/* f16: ref.c's f16 vec_dot over each row (one double sum per row and token,
 * the activations being halves widened to floats). */
static void f16_x8_ref(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    uint16_t blocks[PV_X8][PV_X8_F16_COLS];
    void *rows[PV_X8];
    for (int r = 0; r < PV_X8; r++) rows[r] = blocks[r];
    for (int j = 0; j < n_tok; j++) {
        const float *y = (const float *)((const uint8_t *)a + (size_t)j * a_stride);
        double sum[PV_X8] = {0};
        for (int64_t b = 0; b < n / PV_X8_F16_COLS; b++) {
            pv__x8_unpack(PV_TYPE_F16, w, b, rows);
            for (int r = 0; r < PV_X8; r++)
                for (int i = 0; i < PV_X8_F16_COLS; i++)
                    sum[r] += pv_f16_to_f32(blocks[r][i]) * y[PV_X8_F16_COLS * b + i];
        }
        for (int r = 0; r < PV_X8; r++) out[PV_X8 * j + r] = (float)sum[r];
    }
}

/* bf16: ref.c's running lanes (pv__bf16_lanes_add), fed each row a piece of 2
 * columns at a time, in a batch's order (one = 0) or a one-token matmul's
 * (one = 1); n is a multiple of 32 (pv_x8_supported). The activations are
 * bf16 values widened to floats, so narrowing them back is exact. */
static void bf16_x8_order(int one, const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    uint16_t blocks[PV_X8][PV_X8_F16_COLS];
    void *rows[PV_X8];
    for (int r = 0; r < PV_X8; r++) rows[r] = blocks[r];
    for (int j = 0; j < n_tok; j++) {
        const float *y = (const float *)((const uint8_t *)a + (size_t)j * a_stride);
        float l[PV_X8][32] = {{0}};
        for (int64_t b = 0; b < n / PV_X8_F16_COLS; b++) {
            int64_t at = PV_X8_F16_COLS * b;
            uint16_t yb[PV_X8_F16_COLS] = {pv_f32_to_bf16(y[at]), pv_f32_to_bf16(y[at + 1])};
            pv__x8_unpack(PV_TYPE_BF16, w, b, rows);
            for (int r = 0; r < PV_X8; r++) pv__bf16_lanes_add(one, l[r], at, blocks[r], yb, PV_X8_F16_COLS);
        }
        for (int r = 0; r < PV_X8; r++) out[PV_X8 * j + r] = pv__bf16_lanes_sum(one, l[r]);
    }
}

static void bf16_x8_ref(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    bf16_x8_order(0, w, a, a_stride, n_tok, n, out);
}

static void bf16_x8_ref1(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    bf16_x8_order(1, w, a, a_stride, n_tok, n, out);
}

/* q4_0 and q8_0 in llama.cpp's orders (as avx2_x8.c's kernels): q8_0 keeps
 * 8 float lanes per row (vec_dot and llamafile), lane c summing elements
 * 4c..4c+3 of each block times d_w d_a with one fused multiply-add, added as
 * hsum_float_8 does; q4_0 (its q4_0_8x8 gemv/gemm) one fused multiply-add of
 * the block's integer sum. */
static void q32_x8_ref(pv_type_t t, const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    uint8_t blocks[PV_X8][sizeof(pv_block_q8_0)]; /* the larger block; both start with d */
    void *rows[PV_X8];
    int lanes = t == PV_TYPE_Q8_0;
    for (int r = 0; r < PV_X8; r++) rows[r] = blocks[r];
    for (int j = 0; j < n_tok; j++) {
        const uint8_t *a_row = (const uint8_t *)a + (size_t)j * a_stride;
        const pv_x8_head *h = (const pv_x8_head *)a_row;
        const pv_block_q8_0 *y = pv__x8_act_blocks(a_row, n);
        float l[PV_X8][8] = {{0}};
        for (int64_t b = 0; b < n / PV_QK; b++) {
            pv__x8_unpack(t, w, b, rows);
            for (int r = 0; r < PV_X8; r++) {
                const pv_block_q8_0 *q8 = (const pv_block_q8_0 *)blocks[r];
                const pv_block_q4_0 *q4 = (const pv_block_q4_0 *)blocks[r];
                float d = pv_f16_to_f32(q8->d) * h[b].d;
                int32_t all = 0;
                for (int c = 0; c < 8; c++) {
                    int32_t p = 0;
                    for (int i = 4 * c; i < 4 * c + 4; i++)
                        p += (lanes ? q8->qs[i] : (i < 16 ? q4->qs[i] & 0x0f : q4->qs[i - 16] >> 4) - 8) * y[b].qs[i];
                    if (lanes) l[r][c] = fmaf(d, (float)p, l[r][c]);
                    all += p;
                }
                if (!lanes) l[r][0] = fmaf(d, (float)all, l[r][0]);
            }
        }
        for (int r = 0; r < PV_X8; r++) out[PV_X8 * j + r] = lanes ? pv__lanes_sum(l[r]) : l[r][0];
    }
}

static void q8_0_x8_ref(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    q32_x8_ref(PV_TYPE_Q8_0, w, a, a_stride, n_tok, n, out);
}

static void q4_0_x8_ref(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    q32_x8_ref(PV_TYPE_Q4_0, w, a, a_stride, n_tok, n, out);
}

/* q6_K in llama.cpp's order (as avx2_x8.c's q6_K kernels): per row and block
 * 8 int32 lanes, lane m summing sc q a (q = 0..63) over the elements 4m..4m+3
 * of every 32, less 32 sc_s bsum_s for sub-blocks s = 2m, 2m + 1; then 8
 * float lanes across blocks (one fused multiply-add per block by d_w d_a),
 * added as the q8_0 twin adds them. */
static void q6_K_x8_ref(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    pv_block_q6_K blocks[PV_X8];
    void *rows[PV_X8];
    int8_t q[PV_QK_K];
    for (int r = 0; r < PV_X8; r++) rows[r] = &blocks[r];
    for (int j = 0; j < n_tok; j++) {
        const pv_block_q8_K *y = (const pv_block_q8_K *)((const uint8_t *)a + (size_t)j * a_stride);
        float l[PV_X8][8] = {{0}};
        for (int64_t b = 0; b < n / PV_QK_K; b++) {
            pv__x8_unpack(PV_TYPE_Q6_K, w, b, rows);
            for (int r = 0; r < PV_X8; r++) {
                int32_t lane[8] = {0};
                pv__q6_K_values(&blocks[r], q);
                for (int e = 0; e < PV_QK_K; e++) lane[e % 32 / 4] += blocks[r].scales[e / 16] * (q[e] + 32) * y[b].qs[e];
                for (int m = 0; m < 8; m++)
                    lane[m] -= 32 * (blocks[r].scales[2 * m] * y[b].bsums[2 * m] + blocks[r].scales[2 * m + 1] * y[b].bsums[2 * m + 1]);
                float d = pv_f16_to_f32(blocks[r].d) * y[b].d;
                for (int m = 0; m < 8; m++) l[r][m] = fmaf(d, (float)lane[m], l[r][m]);
            }
        }
        for (int r = 0; r < PV_X8; r++)
            out[PV_X8 * j + r] = pv__lanes_sum(l[r]);
    }
}

/* q5_K: ref.c's vec_dot block after block (ggml_vec_dot_q5_K_q8_K: 8 float
 * lanes and a mins' sum per row, carried from block to block), for any
 * number of tokens (llama.cpp has no repacked q5_K kernels). */
static void q5_K_x8_ref(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    pv_block_q5_K blocks[PV_X8];
    void *rows[PV_X8];
    for (int r = 0; r < PV_X8; r++) rows[r] = &blocks[r];
    for (int j = 0; j < n_tok; j++) {
        const pv_block_q8_K *y = (const pv_block_q8_K *)((const uint8_t *)a + (size_t)j * a_stride);
        float l[PV_X8][8] = {{0}}, mins[PV_X8] = {0};
        for (int64_t b = 0; b < n / PV_QK_K; b++) {
            pv__x8_unpack(PV_TYPE_Q5_K, w, b, rows);
            for (int r = 0; r < PV_X8; r++) pv__q5_K_block_dot(&blocks[r], &y[b], l[r], &mins[r]);
        }
        for (int r = 0; r < PV_X8; r++) out[PV_X8 * j + r] = pv__lanes_sum(l[r]) + mins[r];
    }
}

/* q4_K in llama.cpp's order (its q4_K_8x8 kernels, as avx2_x8.c's): two
 * float sums per row, d_w d_a times the scaled products and dmin_w d_a times
 * the mins against the activation sums, each by fused multiply-adds, then
 * subtracted. A token of a full group of 4 (its gemm) adds each pair of
 * sub-blocks; a leftover token (its gemv) whole blocks. */
static void q4_K_x8_ref(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    pv_block_q4_K blocks[PV_X8];
    void *rows[PV_X8];
    for (int r = 0; r < PV_X8; r++) rows[r] = &blocks[r];
    for (int j = 0; j < n_tok; j++) {
        const pv_block_q8_K *y = (const pv_block_q8_K *)((const uint8_t *)a + (size_t)j * a_stride);
        int pairs = j - j % 4 + 4 <= n_tok; /* in a full group of 4 */
        float acc[PV_X8] = {0}, accm[PV_X8] = {0};
        for (int64_t b = 0; b < n / PV_QK_K; b++) {
            pv__x8_unpack(PV_TYPE_Q4_K, w, b, rows);
            for (int r = 0; r < PV_X8; r++) {
                float d = pv_f16_to_f32(blocks[r].d) * y[b].d, dmin = pv_f16_to_f32(blocks[r].dmin) * y[b].d;
                int32_t isum = 0, mins = 0;
                for (int s = 0; s < 8; s++) { /* sub-block s: low (s even) or high nibbles of bytes 32 (s / 2).. */
                    uint8_t sc, m;
                    pv__k_scale_min(s, blocks[r].scales, &sc, &m);
                    int32_t dot = 0;
                    for (int i = 0; i < 32; i++)
                        dot += (s % 2 ? blocks[r].qs[32 * (s / 2) + i] >> 4 : blocks[r].qs[32 * (s / 2) + i] & 0x0f) *
                               y[b].qs[32 * s + i];
                    isum += sc * dot;
                    mins += m * (y[b].bsums[2 * s] + y[b].bsums[2 * s + 1]);
                    if (pairs && s % 2) {
                        acc[r] = fmaf((float)isum, d, acc[r]);
                        accm[r] = fmaf((float)mins, dmin, accm[r]);
                        isum = mins = 0;
                    }
                }
                if (!pairs) {
                    acc[r] = fmaf((float)isum, d, acc[r]);
                    accm[r] = fmaf((float)mins, dmin, accm[r]);
                }
            }
        }
        for (int r = 0; r < PV_X8; r++) out[PV_X8 * j + r] = acc[r] - accm[r];
    }
}


pv_dot_x8_fn pv__x8_ref(pv_type_t t) {
    switch (t) {
    case PV_TYPE_Q4_0: return q4_0_x8_ref;
    case PV_TYPE_Q8_0: return q8_0_x8_ref;
    case PV_TYPE_Q4_K: return q4_K_x8_ref;
    case PV_TYPE_Q5_K: return q5_K_x8_ref;
    case PV_TYPE_Q6_K: return q6_K_x8_ref;
    case PV_TYPE_F16: return f16_x8_ref;
    case PV_TYPE_BF16: return bf16_x8_ref;
    default: return NULL;
    }
}

pv_dot_x8_fn pv__x8_ref1(pv_type_t t) { return t == PV_TYPE_BF16 ? bf16_x8_ref1 : NULL; }
