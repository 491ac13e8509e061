#include "gguf/gtype.h"

static const pv_type_layout_t layouts[PV_TYPE_COUNT] = {
    [PV_TYPE_F32] = {"f32", 1, 4},
    [PV_TYPE_F16] = {"f16", 1, 2},
    [PV_TYPE_Q4_0] = {"q4_0", 32, 2 + 16},
    [PV_TYPE_Q4_1] = {"q4_1", 32, 2 + 2 + 16},
    [PV_TYPE_Q5_0] = {"q5_0", 32, 2 + 4 + 16},
    [PV_TYPE_Q5_1] = {"q5_1", 32, 2 + 2 + 4 + 16},
    [PV_TYPE_Q8_0] = {"q8_0", 32, 2 + 32},
    [PV_TYPE_Q8_1] = {"q8_1", 32, 4 + 32},
    [PV_TYPE_Q2_K] = {"q2_k", 256, 16 + 64 + 2 + 2},
    [PV_TYPE_Q3_K] = {"q3_k", 256, 32 + 64 + 12 + 2},
    [PV_TYPE_Q4_K] = {"q4_k", 256, 2 + 2 + 12 + 128},
    [PV_TYPE_Q5_K] = {"q5_k", 256, 2 + 2 + 12 + 32 + 128},
    [PV_TYPE_Q6_K] = {"q6_k", 256, 128 + 64 + 16 + 2},
    [PV_TYPE_Q8_K] = {"q8_k", 256, 4 + 256 + 32},
    [PV_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 2 + 64},
    [PV_TYPE_IQ2_XS] = {"iq2_xs", 256, 2 + 64 + 8},
    [PV_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 2 + 96},
    [PV_TYPE_IQ1_S] = {"iq1_s", 256, 2 + 32 + 16},
    [PV_TYPE_IQ4_NL] = {"iq4_nl", 32, 2 + 16},
    [PV_TYPE_IQ3_S] = {"iq3_s", 256, 2 + 64 + 32 + 8 + 4},
    [PV_TYPE_IQ2_S] = {"iq2_s", 256, 2 + 64 + 16},
    [PV_TYPE_IQ4_XS] = {"iq4_xs", 256, 2 + 2 + 4 + 128},
    [PV_TYPE_I8] = {"i8", 1, 1},
    [PV_TYPE_I16] = {"i16", 1, 2},
    [PV_TYPE_I32] = {"i32", 1, 4},
    [PV_TYPE_I64] = {"i64", 1, 8},
    [PV_TYPE_F64] = {"f64", 1, 8},
    [PV_TYPE_IQ1_M] = {"iq1_m", 256, 32 + 16 + 8},
    [PV_TYPE_BF16] = {"bf16", 1, 2},
    [PV_TYPE_TQ1_0] = {"tq1_0", 256, 2 + 4 * 13},
    [PV_TYPE_TQ2_0] = {"tq2_0", 256, 2 + 64},
    [PV_TYPE_MXFP4] = {"mxfp4", 32, 1 + 16},
};

const pv_type_layout_t *pv_type_layout(uint32_t t) {
    if (t >= PV_TYPE_COUNT || layouts[t].name == NULL) return NULL;
    return &layouts[t];
}

const char *pv_type_name(uint32_t t) {
    const pv_type_layout_t *l = pv_type_layout(t);
    return l ? l->name : "unknown";
}

size_t pv_type_row_size(pv_type_t t, int64_t n) {
    const pv_type_layout_t *l = pv_type_layout((uint32_t)t);
    if (!l || n < 0 || n % l->blck_size != 0) return 0;
    return (size_t)(n / l->blck_size) * l->type_size;
}
