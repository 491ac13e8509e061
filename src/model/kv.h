/* kv.h - the KV cache: one arena of fixed-size blocks, handed to sequences as they grow.
 *
 * The arena is allocated once (its size is the KV budget); sequences own
 * lists of block ids in position order and return them when they end.
 * Nothing here allocates per token. Keys and values are IEEE halves, laid out
 * per block as (n_layer, PV_KV_BLOCK, kv_dim), so one layer's positions of a
 * block are contiguous for attention.
 *
 * Ownership: pv_kv_t owns its storage; a pv_seq_t owns its block list (not
 * the blocks, which belong to the arena and go back with pv_kv_release). */
#ifndef PV_KV_H
#define PV_KV_H

#include <stddef.h>
#include <stdint.h>

#define PV_KV_BLOCK 16 /* positions per block */

typedef struct {
    uint32_t n_layer;    /* layers per block */
    uint32_t kv_dim;     /* n_head_kv * head_dim */
    uint32_t n_blocks;   /* blocks in the arena */
    uint16_t *k;         /* (n_blocks, n_layer, PV_KV_BLOCK, kv_dim) keys */
    uint16_t *v;         /* (n_blocks, n_layer, PV_KV_BLOCK, kv_dim) values */
    uint32_t *free_ids;  /* [n_blocks] stack of free block ids */
    uint32_t n_free;     /* entries on the stack */
} pv_kv_t;

typedef struct {
    uint32_t *blocks;    /* [max_blocks] block ids, position order; owned */
    uint32_t n_blocks;   /* blocks held */
    uint32_t max_blocks; /* capacity: the sequence's longest context / PV_KV_BLOCK */
} pv_seq_t;

/* An arena of n_blocks blocks; PV_ENOMEM when the budget cannot be allocated. */
int pv_kv_init(pv_kv_t *kv, uint32_t n_layer, uint32_t kv_dim, uint32_t n_blocks, char *err, size_t errlen);
void pv_kv_close(pv_kv_t *kv);
size_t pv_kv_bytes(const pv_kv_t *kv);        /* the whole arena */
size_t pv_kv_used_bytes(const pv_kv_t *kv);   /* blocks held by sequences */

/* A sequence that may grow to max_pos positions (holds no blocks yet). */
int pv_seq_init(pv_seq_t *s, uint32_t max_pos);
void pv_seq_close(pv_seq_t *s); /* the blocks must have been released */
uint32_t pv_seq_capacity(const pv_seq_t *s); /* positions it may reach */

/* Makes positions [0, n_pos) of s backed by blocks. PV_ERANGE past the
 * sequence's capacity, PV_ENOMEM when the arena has no free block (nothing
 * is taken then). */
int pv_kv_reserve(pv_kv_t *kv, pv_seq_t *s, uint32_t n_pos);

/* Returns every block of s to the arena. */
void pv_kv_release(pv_kv_t *kv, pv_seq_t *s);

/* Keys (or values) of layer il at position pos of s: kv_dim halves, and the
 * PV_KV_BLOCK - pos % PV_KV_BLOCK positions after it in the same block follow. */
static inline uint16_t *pv_kv_k(const pv_kv_t *kv, const pv_seq_t *s, uint32_t il, uint32_t pos) {
    size_t b = s->blocks[pos / PV_KV_BLOCK];
    return kv->k + ((b * kv->n_layer + il) * PV_KV_BLOCK + pos % PV_KV_BLOCK) * kv->kv_dim;
}
static inline uint16_t *pv_kv_v(const pv_kv_t *kv, const pv_seq_t *s, uint32_t il, uint32_t pos) {
    size_t b = s->blocks[pos / PV_KV_BLOCK];
    return kv->v + ((b * kv->n_layer + il) * PV_KV_BLOCK + pos % PV_KV_BLOCK) * kv->kv_dim;
}

#endif
