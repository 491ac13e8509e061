#include "rand_data.h"

#include <stdlib.h>
#include <string.h>

#include "base/fp16.h"

static uint32_t rng_state = 12345;

uint32_t rd_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

float rd_float(void) { return (float)(rd_u32() % 20001) / 10000.0f - 1.0f; }

/* Offset of each f16 scale inside a block, so random blocks get finite scales. */
static void fix_scales(pv_type_t t, uint8_t *row, size_t n_blocks, size_t bsize) {
    for (size_t b = 0; b < n_blocks; b++) {
        uint8_t *p = row + b * bsize;
        uint16_t d = pv_f32_to_f16(rd_float() * 0.1f), m = pv_f32_to_f16(rd_float() * 0.1f);
        switch (t) {
        case PV_TYPE_Q4_0:
        case PV_TYPE_Q8_0: memcpy(p, &d, 2); break;
        case PV_TYPE_Q4_K:
        case PV_TYPE_Q5_K:
            memcpy(p, &d, 2);
            memcpy(p + 2, &m, 2);
            break;
        case PV_TYPE_Q6_K: memcpy(p + 208, &d, 2); break;
        default: break;
        }
    }
}

uint8_t *rd_row(pv_type_t t, int64_t n) {
    size_t size = pv_type_row_size(t, n);
    uint8_t *row = malloc(size);
    const pv_type_layout_t *l = pv_type_layout(t);
    if (!row) return NULL;
    if (l->blck_size == 1) {
        for (int64_t i = 0; i < n; i++) {
            float v = rd_float();
            if (t == PV_TYPE_F32) memcpy(row + 4 * i, &v, 4);
            else {
                uint16_t h = t == PV_TYPE_F16 ? pv_f32_to_f16(v) : pv_f32_to_bf16(v);
                memcpy(row + 2 * i, &h, 2);
            }
        }
        return row;
    }
    for (size_t i = 0; i < size; i++) row[i] = (uint8_t)rd_u32();
    fix_scales(t, row, size / l->type_size, l->type_size);
    return row;
}
