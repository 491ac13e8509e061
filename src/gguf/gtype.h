/* gtype.h - ggml tensor element types as they appear in GGUF files.
 *
 * The numeric ids are the file format's. Every type is stored in blocks of
 * blck_size elements taking type_size bytes; a row of n elements must hold a
 * whole number of blocks. This table knows the layout of every id the format
 * has defined, so that a file can be validated (and described by `info`)
 * even when its types cannot be computed with; src/kernels/ adds compute
 * routines for the types the engine supports. */
#ifndef PV_GTYPE_H
#define PV_GTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PV_TYPE_F32 = 0,
    PV_TYPE_F16 = 1,
    PV_TYPE_Q4_0 = 2,
    PV_TYPE_Q4_1 = 3,
    PV_TYPE_Q5_0 = 6,
    PV_TYPE_Q5_1 = 7,
    PV_TYPE_Q8_0 = 8,
    PV_TYPE_Q8_1 = 9,
    PV_TYPE_Q2_K = 10,
    PV_TYPE_Q3_K = 11,
    PV_TYPE_Q4_K = 12,
    PV_TYPE_Q5_K = 13,
    PV_TYPE_Q6_K = 14,
    PV_TYPE_Q8_K = 15,
    PV_TYPE_IQ2_XXS = 16,
    PV_TYPE_IQ2_XS = 17,
    PV_TYPE_IQ3_XXS = 18,
    PV_TYPE_IQ1_S = 19,
    PV_TYPE_IQ4_NL = 20,
    PV_TYPE_IQ3_S = 21,
    PV_TYPE_IQ2_S = 22,
    PV_TYPE_IQ4_XS = 23,
    PV_TYPE_I8 = 24,
    PV_TYPE_I16 = 25,
    PV_TYPE_I32 = 26,
    PV_TYPE_I64 = 27,
    PV_TYPE_F64 = 28,
    PV_TYPE_IQ1_M = 29,
    PV_TYPE_BF16 = 30,
    PV_TYPE_TQ1_0 = 34,
    PV_TYPE_TQ2_0 = 35,
    PV_TYPE_MXFP4 = 39,
    PV_TYPE_COUNT = 40
} pv_type_t;

typedef struct {
    const char *name;  /* "q4_0"; NULL for ids the format never assigned */
    uint32_t blck_size; /* elements per block */
    uint32_t type_size; /* bytes per block */
} pv_type_layout_t;

/* Layout of type t, or NULL if t is not a known ggml type id. */
const pv_type_layout_t *pv_type_layout(uint32_t t);

/* Name of type t ("q8_0"), or "unknown". */
const char *pv_type_name(uint32_t t);

/* Bytes taken by a row of n elements; 0 if n is not a whole number of blocks. */
size_t pv_type_row_size(pv_type_t t, int64_t n);

#endif
