#include "model/kv.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

int pv_kv_init(pv_kv_t *kv, uint32_t n_layer, uint32_t kv_dim, uint32_t n_blocks, char *err, size_t errlen) {
    memset(kv, 0, sizeof *kv);
    size_t elems = (size_t)n_blocks * n_layer * PV_KV_BLOCK * kv_dim;
    kv->n_layer = n_layer;
    kv->kv_dim = kv_dim;
    kv->n_blocks = n_blocks;
    kv->k = malloc(elems * sizeof *kv->k);
    kv->v = malloc(elems * sizeof *kv->v);
    kv->free_ids = malloc((size_t)n_blocks * sizeof *kv->free_ids);
    if (!kv->k || !kv->v || !kv->free_ids) {
        pv_kv_close(kv);
        return pv_errorf(err, errlen, PV_ENOMEM, "out of memory for a KV cache of %u blocks (%zu MiB)", n_blocks,
                         elems * 4 >> 20);
    }
    for (uint32_t i = 0; i < n_blocks; i++) kv->free_ids[i] = n_blocks - 1 - i; /* block 0 on top */
    kv->n_free = n_blocks;
    return 0;
}

void pv_kv_close(pv_kv_t *kv) {
    free(kv->k);
    free(kv->v);
    free(kv->free_ids);
    memset(kv, 0, sizeof *kv);
}

size_t pv_kv_bytes(const pv_kv_t *kv) {
    return 2 * (size_t)kv->n_blocks * kv->n_layer * PV_KV_BLOCK * kv->kv_dim * sizeof *kv->k;
}

size_t pv_kv_used_bytes(const pv_kv_t *kv) {
    return kv->n_blocks ? pv_kv_bytes(kv) / kv->n_blocks * (kv->n_blocks - kv->n_free) : 0;
}

int pv_seq_init(pv_seq_t *s, uint32_t max_pos) {
    s->max_blocks = (max_pos + PV_KV_BLOCK - 1) / PV_KV_BLOCK;
    s->n_blocks = 0;
    s->blocks = malloc((s->max_blocks ? s->max_blocks : 1) * sizeof *s->blocks);
    return s->blocks ? 0 : PV_ENOMEM;
}

void pv_seq_close(pv_seq_t *s) {
    free(s->blocks);
    memset(s, 0, sizeof *s);
}

uint32_t pv_seq_capacity(const pv_seq_t *s) { return s->max_blocks * PV_KV_BLOCK; }

int pv_kv_reserve(pv_kv_t *kv, pv_seq_t *s, uint32_t n_pos) {
    uint32_t need = (n_pos + PV_KV_BLOCK - 1) / PV_KV_BLOCK;
    if (need > s->max_blocks) return PV_ERANGE;
    if (need <= s->n_blocks) return 0;
    if (need - s->n_blocks > kv->n_free) return PV_ENOMEM;
    while (s->n_blocks < need) s->blocks[s->n_blocks++] = kv->free_ids[--kv->n_free];
    return 0;
}

void pv_kv_release(pv_kv_t *kv, pv_seq_t *s) {
    while (s->n_blocks > 0) kv->free_ids[kv->n_free++] = s->blocks[--s->n_blocks];
}
