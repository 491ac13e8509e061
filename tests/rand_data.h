/* rand_data.h - deterministic random inputs for the kernel tests and benchmarks. */
#ifndef PV_TESTS_RAND_DATA_H
#define PV_TESTS_RAND_DATA_H

#include <stdint.h>

#include "gguf/gtype.h"

/* The next value of one xorshift32 sequence (the same sequence on every run). */
uint32_t rd_u32(void);

/* A value in [-1, 1] on a grid of 1/10000. */
float rd_float(void);

/* A random row of n elements of type t (finite values throughout: random
 * quant bytes, small random scales); the caller frees it. */
uint8_t *rd_row(pv_type_t t, int64_t n);

#endif
