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

static_assert(sizeof(pv_block_q4_0) == 18, "q4_0 block layout");
static_assert(sizeof(pv_block_q8_0) == 34, "q8_0 block layout");
static_assert(sizeof(pv_block_q4_K) == 144, "q4_K block layout");
static_assert(sizeof(pv_block_q5_K) == 176, "q5_K block layout");
static_assert(sizeof(pv_block_q6_K) == 210, "q6_K block layout");
static_assert(sizeof(pv_block_q8_K) == 292, "q8_K block layout");

/* Scale and min (6 bits each) of sub-block j of a q4_K/q5_K block. */
void pv__k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m);

/* The scalar twins (ref.c), and the AVX2 dot products (avx2.c; NULL where
 * none is written for t). */
const pv_kern_traits_t *pv_kern_ref(pv_type_t t);
pv_vec_dot_fn pv__avx2_vec_dot(pv_type_t t);
pv_vec_dot4_fn pv__avx2_vec_dot4(pv_type_t t);
pv_attn_block_fn pv__avx2_attn_block(void);

#endif
