#include "model/arch.h"

#include <string.h>

static const pv_arch_t archs[] = {
    {"llama", 0, 0},
    {"phi3", 1, PV_ARCH_FUSED_QKV | PV_ARCH_FUSED_UP | PV_ARCH_Q_PRESCALE},
    {"qwen2", 1, PV_ARCH_QKV_BIAS},
    {"qwen3", 1, PV_ARCH_QK_NORM},
};

const pv_arch_t *pv_arch_find(const char *name) {
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(archs[i].name, name) == 0) return &archs[i];
    return NULL;
}

const char *pv_arch_names(void) { return "llama, phi3, qwen2, qwen3"; }
