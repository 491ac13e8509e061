/* kern_internal.h - block structs shared by the scalar (ref.c) and AVX2 (avx2.c)
 * routines. The layouts are described in ref.c's table and pinned here. */
#ifndef PV_KERN_INTERNAL_H
#define PV_KERN_INTERNAL_H

#include <assert.h>
#include <stdint.h>

#include "kernels/kern.h"
#include "kernels/ops.h"

#define PV_QK 32    /* elements per q4_0 / q8_0 block */
#define PV_QK_K 256 /* elements per K-quant super-block */

typedef struct {
    uint16_t d;
    uint8_t qs[PV_QK / 2];
} pv_block_q4_0;
typedef struct {
    uint16_t d;
    int8_t qs[PV_QK];
} pv_block_q8_0;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[PV_QK_K / 2];
} pv_block_q4_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[PV_QK_K / 8];
    uint8_t qs[PV_QK_K / 2];
} pv_block_q5_K;
typedef struct {
    float d;
    int8_t qs[PV_QK_K];
    int16_t bsums[PV_QK_K / 16];
} pv_block_q8_K;
typedef struct {
    uint8_t ql[PV_QK_K / 2];
    uint8_t qh[PV_QK_K / 4];
    int8_t scales[PV_QK_K / 16];
    uint16_t d;
} pv_block_q6_K;

/* 8 float lanes added as llama.cpp's hsum_float_8 adds them: (l0 + l4) + (l2 + l6), plus (l1 + l5) + (l3 + l7). */
static inline float pv__lanes_sum(const float l[8]) { return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])); }

/* A q6_K block's 256 values, q - 32 (ref.c). */
void pv__q6_K_values(const pv_block_q6_K *b, int8_t q[256]);
/* One q5_K block's share of its dot product (ref.c): its integer lanes into
 * the 8 float lanes l, its mins' term into *mins; the row's dot product is
 * pv__lanes_sum(l) + *mins once every block is in. */
void pv__q5_K_block_dot(const pv_block_q5_K *x, const pv_block_q8_K *y, float l[8], float *mins);
/* bf16 dot products in llama.cpp's two orders (ref.c), as running lanes that
 * take a row's products k elements at a time from element i0 on (the x8 twin
 * feeds them 2 columns at a time): one = 0, a batch (llamafile's tiles: lane
 * i % 8 by fused multiply-adds) in l[8]; one = 1, a matmul of one token
 * (ggml_vec_dot_bf16: four accumulators over chunks of 32, lane i % 32, each
 * product rounded then added) in l[32]. pv__bf16_lanes_sum adds the lanes
 * as llama.cpp does; elements past n & ~7 (batch) or n & ~31 (one token) are
 * the caller's tail. */
void pv__bf16_lanes_add(int one, float *l, int64_t i0, const uint16_t *x, const uint16_t *y, int64_t k);
float pv__bf16_lanes_sum(int one, const float *l);

static_assert(sizeof(pv_block_q4_0) == 18, "q4_0 block layout");
static_assert(sizeof(pv_block_q8_0) == 34, "q8_0 block layout");
static_assert(sizeof(pv_block_q4_K) == 144, "q4_K block layout");
static_assert(sizeof(pv_block_q5_K) == 176, "q5_K block layout");
static_assert(sizeof(pv_block_q6_K) == 210, "q6_K block layout");
static_assert(sizeof(pv_block_q8_K) == 292, "q8_K block layout");

/* PV_LAYOUT_X8: a weight of n_rows rows is n_rows / 8 groups one after the
 * other; a group holds, for each block column b, one x8 block made of the 8
 * rows' block b: their half-precision scales together (the 8 d, then for
 * q4_K the 8 dmin), then the rest of each block (quants; q4_K's 12 bytes of
 * packed sub-block scales first) cut into 4-byte pieces, piece k of row r
 * at 32 k + 4 r. A 32-byte load thus holds one piece of each row, row r in
 * 32-bit lane r, so that one broadcast of 4 activation bytes meets all 8
 * rows. For q4_0 a piece is 4 bytes of nibbles (low: elements 4k..4k+3,
 * high: elements 16+4k..16+4k+3); for q8_0 it is elements 4k..4k+3; for
 * q4_K's quants, piece k holds elements 64c + 4i.. (low nibbles) and
 * 64c + 32 + 4i.. (high), c = k / 8, i = k % 8. q5_K is q4_K with its qh
 * pieces between: qh piece i holds bytes 4i..4i+3, whose bits 2c and 2c + 1
 * are the fifth bits of the low and high nibbles of quant piece 8c + i.
 * q6_K keeps its d (last in its file block) with the others in front, then
 * ql, qh, scales in pieces. */
#define PV_X8 PV_X8_ROWS
/* f16 (no scales) is cut into 4-byte pieces of 2 columns: a 32-byte load
 * holds columns 2k, 2k + 1 of the 8 rows, row by row. Its activation row is
 * n floats, each rounded to half precision. */
#define PV_X8_F16_COLS 2
typedef struct {
    uint16_t d[PV_X8];
    uint8_t qs[PV_X8 * PV_QK / 2];
} pv_block_q4_0x8;
typedef struct {
    uint16_t d[PV_X8];
    int8_t qs[PV_X8 * PV_QK];
} pv_block_q8_0x8;

typedef struct {
    uint16_t d[PV_X8], dmin[PV_X8];
    uint8_t scales[PV_X8 * 12]; /* pieces 0..2: bytes 0-3, 4-7, 8-11 of each row's scales */
    uint8_t qs[PV_X8 * PV_QK_K / 2];
} pv_block_q4_Kx8;

typedef struct {
    uint16_t d[PV_X8], dmin[PV_X8];
    uint8_t scales[PV_X8 * 12];     /* pieces 0..2, as q4_K's */
    uint8_t qh[PV_X8 * PV_QK_K / 8]; /* pieces 3..10: bytes 4i..4i+3 of each row's qh */
    uint8_t qs[PV_X8 * PV_QK_K / 2]; /* pieces 11..42, as q4_K's */
} pv_block_q5_Kx8;

typedef struct {
    uint16_t d[PV_X8];
    uint8_t ql[PV_X8 * PV_QK_K / 2]; /* pieces 0..31 */
    uint8_t qh[PV_X8 * PV_QK_K / 4]; /* pieces 32..47 */
    int8_t scales[PV_X8 * 16];       /* pieces 48..51 */
} pv_block_q6_Kx8;

static_assert(sizeof(pv_block_q4_0x8) == PV_X8 * sizeof(pv_block_q4_0), "q4_0x8 block layout");
static_assert(sizeof(pv_block_q6_Kx8) == PV_X8 * sizeof(pv_block_q6_K), "q6_Kx8 block layout");
static_assert(sizeof(pv_block_q4_Kx8) == PV_X8 * sizeof(pv_block_q4_K), "q4_Kx8 block layout");
static_assert(sizeof(pv_block_q5_Kx8) == PV_X8 * sizeof(pv_block_q5_K), "q5_Kx8 block layout");
static_assert(sizeof(pv_block_q8_0x8) == PV_X8 * sizeof(pv_block_q8_0), "q8_0x8 block layout");

/* The activation row the x8 kernels read, for n columns (nb = n / 32 blocks):
 * nb heads, then the nb q8_0 blocks themselves. A head holds the block's
 * scale as a float and -8 times the sums of its values at bytes 0, 1 and at
 * bytes 2, 3 of each 4-byte piece: the two int16 halves of a 32-bit lane
 * that maddubs sums those bytes into. The q4_0 kernels start their int16
 * sums there, which takes q4_0's offset of 8 out of the integer dot product
 * at no cost: every value then counts -8 or (q - 8) times, so the running
 * sums stay within 8 * 16 * 127 in magnitude. */
typedef struct {
    float d;
    int16_t offset[2];
} pv_x8_head;

size_t pv__x8_act_size(int64_t n);                       /* bytes of one row, a multiple of 32 */
void pv__x8_quantize(const float *x, void *row, int64_t n); /* floats -> that row */
/* The heads of nb quantized blocks; dispatched (AVX2 or the twin, which agree to the bit). */
typedef void (*pv_x8_heads_fn)(const pv_block_q8_0 *y, pv_x8_head *h, int64_t nb);
void pv__x8_heads(const pv_block_q8_0 *y, pv_x8_head *h, int64_t nb);
void pv__x8_heads_ref(const pv_block_q8_0 *y, pv_x8_head *h, int64_t nb);
pv_x8_heads_fn pv__avx2_x8_heads(void);
static inline const pv_block_q8_0 *pv__x8_act_blocks(const void *row, int64_t n) {
    return (const pv_block_q8_0 *)((const pv_x8_head *)row + n / PV_QK);
}

/* What the x8 kernels of weight type t read: the activation row above for
 * q4_0 and q8_0, a plain q8_K row for K-quants, rounded floats for f16 and bf16. */
size_t pv__x8_act_row_size(pv_type_t t, int64_t n);
void pv__x8_act_quantize(pv_type_t t, const float *x, void *row, int64_t n);
/* Which of those formats t reads (types with equal values share a quantized row). */
int pv__x8_act_format(pv_type_t t);

/* Columns of one x8 block of type t (the file's block; 2 for f16 and bf16). */
int64_t pv__x8_block_cols(pv_type_t t);

/* Block b of the 8 rows of one x8 group, back in the file's block format
 * (rows[r] receives row r's block). */
void pv__x8_unpack(pv_type_t t, const void *group, int64_t b, void *rows[PV_X8]);

/* Scale and min (6 bits each) of sub-block j of a q4_K/q5_K block. */
void pv__k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m);

/* The scalar twins (ref.c), and the AVX2 dot products (avx2.c; NULL where
 * none is written for t). */
const pv_kern_traits_t *pv_kern_ref(pv_type_t t);
pv_vec_dot_fn pv__avx2_vec_dot(pv_type_t t);
pv_vec_dot_fn pv__avx2_vec_dot1(pv_type_t t);
pv_vec_dot4_fn pv__avx2_vec_dot4(pv_type_t t);
pv_dot_x8_fn pv__x8_ref(pv_type_t t);   /* x8.c: the scalar twins, over pv__x8_unpack and ref.c's vec_dot */
pv_dot_x8_fn pv__x8_ref1(pv_type_t t);  /* x8.c: one-token matmuls where they sum in another order (bf16) */
pv_dot_x8_fn pv__avx2_dot_x8(pv_type_t t); /* avx2_x8.c */
pv_dot_x8_fn pv__avx2_dot1_x8(pv_type_t t);
pv_dot_x16_fn pv__avx2_dot_x16(pv_type_t t);
pv_from_float_fn pv__avx2_from_float(pv_type_t t); /* avx2_quant.c: activation quantizers */
pv_to_float_fn pv__avx2_to_float(pv_type_t t);     /* avx2_quant.c: f16 rows to floats */
pv_attn_block_fn pv__avx2_attn_block(void);
pv_attn_tile_fn pv__avx2_attn_tile(void);
pv_swiglu_fn pv__avx2_swiglu(void);
pv_exp_shifted_fn pv__avx2_exp_shifted(void);
pv_rope_fn pv__avx2_rope(void);
/* y[i] = expf(x[i]) for 8 floats, glibc's expf to the bit (the decode attention's weights), for tests. */
typedef void (*pv_expf8_fn)(const float *x, float *y);
pv_expf8_fn pv__avx2_expf8(void);

#endif
