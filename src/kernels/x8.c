/* x8.c - the row-interleaved weight layout (PV_LAYOUT_X8, described in
 * kern_internal.h): repacking at load, the activation rows its kernels read,
 * and the scalar twins of those kernels.
 *
 * The layout only moves bytes: block b of row r keeps its scale and its
 * quants, cut into 4-byte pieces that are spread so that the 8 rows of a
 * group sit side by side. So a twin can take any block back out
 * (pv__x8_unpack) and hand it to ref.c's vec_dot; summed block after block,
 * that is exactly the scalar dot product of the whole row. */
#include <string.h>

#include "base/fp16.h"
#include "kernels/kern.h"
#include "kernels/kern_internal.h"

#define PIECE 4 /* bytes of one row that lie together */

int pv_x8_supported(pv_type_t t, int64_t n_rows) {
    return (t == PV_TYPE_Q4_0 || t == PV_TYPE_Q8_0) && n_rows > 0 && n_rows % PV_X8 == 0;
}

/* Bytes of one file block of t; its scale takes the first 2, quants the rest. */
static size_t block_bytes(pv_type_t t) { return pv_type_row_size(t, PV_QK); }

void pv__x8_unpack(pv_type_t t, const void *group, int64_t b, void *rows[PV_X8]) {
    size_t bsz = block_bytes(t), qbytes = bsz - 2;
    const uint8_t *x = (const uint8_t *)group + (size_t)b * PV_X8 * bsz, *qs = x + 2 * PV_X8;
    for (int r = 0; r < PV_X8; r++) {
        uint8_t *out = rows[r];
        memcpy(out, x + 2 * r, 2);
        for (size_t k = 0; k < qbytes / PIECE; k++) memcpy(out + 2 + PIECE * k, qs + PV_X8 * PIECE * k + PIECE * r, PIECE);
    }
}

/* The inverse of pv__x8_unpack: row r's block from rows[r] into x8 block x. */
static void pack_block(size_t bsz, const uint8_t *const rows[PV_X8], uint8_t *x) {
    size_t qbytes = bsz - 2;
    uint8_t *qs = x + 2 * PV_X8;
    for (int r = 0; r < PV_X8; r++) {
        memcpy(x + 2 * r, rows[r], 2);
        for (size_t k = 0; k < qbytes / PIECE; k++) memcpy(qs + PV_X8 * PIECE * k + PIECE * r, rows[r] + 2 + PIECE * k, PIECE);
    }
}

void pv_x8_repack(pv_type_t t, const void *src, int64_t n_rows, int64_t n_cols, void *dst) {
    size_t bsz = block_bytes(t), row_size = pv_type_row_size(t, n_cols);
    int64_t nb = n_cols / PV_QK;
    const uint8_t *s = src;
    uint8_t *d = dst;
    for (int64_t g = 0; g < n_rows / PV_X8; g++, s += PV_X8 * row_size)
        for (int64_t b = 0; b < nb; b++, d += PV_X8 * bsz) {
            const uint8_t *rows[PV_X8];
            for (int r = 0; r < PV_X8; r++) rows[r] = s + (size_t)r * row_size + (size_t)b * bsz;
            pack_block(bsz, rows, d);
        }
}

size_t pv__x8_act_size(int64_t n) {
    size_t bytes = (size_t)(n / PV_QK) * (sizeof(pv_x8_head) + sizeof(pv_block_q8_0));
    return (bytes + 31) & ~(size_t)31;
}

void pv__x8_quantize(const float *x, void *row, int64_t n) {
    int64_t nb = n / PV_QK;
    pv_x8_head *h = row;
    pv_block_q8_0 *y = (pv_block_q8_0 *)(h + nb);
    pv_kern_traits(PV_TYPE_Q8_0)->from_float(x, y, n);
    for (int64_t b = 0; b < nb; b++) {
        int32_t sum = 0;
        for (int j = 0; j < PV_QK; j++) sum += y[b].qs[j];
        h[b] = (pv_x8_head){pv_f16_to_f32(y[b].d), sum};
    }
}

/* Block by block: the 8 rows' blocks taken out, each dotted by ref.c. */
static void x8_dot_ref(pv_type_t t, const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    pv_vec_dot_fn dot = pv_kern_ref(t)->vec_dot;
    uint8_t blocks[PV_X8][sizeof(pv_block_q8_0)]; /* the larger of the two block formats */
    void *rows[PV_X8];
    for (int r = 0; r < PV_X8; r++) rows[r] = blocks[r];
    for (int i = 0; i < PV_X8 * n_tok; i++) out[i] = 0.0f;
    for (int64_t b = 0; b < n / PV_QK; b++) {
        pv__x8_unpack(t, w, b, rows);
        for (int j = 0; j < n_tok; j++) {
            const pv_block_q8_0 *y = pv__x8_act_blocks((const uint8_t *)a + (size_t)j * a_stride, n) + b;
            for (int r = 0; r < PV_X8; r++) out[PV_X8 * j + r] += dot(blocks[r], y, PV_QK);
        }
    }
}

static void q4_0_x8_ref(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    x8_dot_ref(PV_TYPE_Q4_0, w, a, a_stride, n_tok, n, out);
}

static void q8_0_x8_ref(const void *w, const void *a, size_t a_stride, int n_tok, int64_t n, float *out) {
    x8_dot_ref(PV_TYPE_Q8_0, w, a, a_stride, n_tok, n, out);
}

pv_dot_x8_fn pv__x8_ref(pv_type_t t) {
    switch (t) {
    case PV_TYPE_Q4_0: return q4_0_x8_ref;
    case PV_TYPE_Q8_0: return q8_0_x8_ref;
    default: return NULL;
    }
}
