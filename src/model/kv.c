#include "model/kv.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

int pv_kv_init(pv_kv_t *kv, uint32_t n_layer, uint32_t kv_dim, uint32_t n_blocks, char *err, size_t errlen) {
    memset(kv, 0, sizeof *kv);
    kv->n_layer = n_layer;
    kv->kv_dim = kv_dim;
    kv->n_blocks = n_blocks;
    kv->table_size = 16;
    while (kv->table_size < 2 * (size_t)n_blocks) kv->table_size *= 2;
    size_t elems = (size_t)n_blocks * pv_kv_block_elems(kv);
    kv->k = malloc(elems * sizeof *kv->k);
    kv->v = malloc(elems * sizeof *kv->v);
    kv->blk = malloc((size_t)n_blocks * sizeof *kv->blk);
    kv->tokens = malloc((size_t)n_blocks * PV_KV_BLOCK * sizeof *kv->tokens);
    kv->free_ids = malloc((size_t)n_blocks * sizeof *kv->free_ids);
    kv->table = malloc((size_t)kv->table_size * sizeof *kv->table);
    if (!kv->k || !kv->v || !kv->blk || !kv->tokens || !kv->free_ids || !kv->table) {
        pv_kv_close(kv);
        return pv_errorf(err, errlen, PV_ENOMEM, "out of memory for a KV cache of %u blocks (%zu MiB)", n_blocks,
                         elems * 4 >> 20);
    }
    for (uint32_t i = 0; i < n_blocks; i++) {
        kv->free_ids[i] = n_blocks - 1 - i; /* block 0 on top */
        kv->blk[i] = (pv_kv_block_t){0, PV_KV_NONE, PV_KV_NONE, 0, 0};
    }
    kv->n_free = n_blocks;
    kv->lru_head = kv->lru_tail = PV_KV_NONE;
    for (uint32_t i = 0; i < kv->table_size; i++) kv->table[i] = PV_KV_NONE;
    return 0;
}

void pv_kv_close(pv_kv_t *kv) {
    free(kv->k);
    free(kv->v);
    free(kv->blk);
    free(kv->tokens);
    free(kv->free_ids);
    free(kv->table);
    memset(kv, 0, sizeof *kv);
}

size_t pv_kv_bytes(const pv_kv_t *kv) { return 2 * (size_t)kv->n_blocks * pv_kv_block_elems(kv) * sizeof *kv->k; }

size_t pv_kv_used_bytes(const pv_kv_t *kv) {
    return kv->n_blocks ? pv_kv_bytes(kv) / kv->n_blocks * (kv->n_blocks - kv->n_free - kv->n_cached) : 0;
}

size_t pv_kv_cached_bytes(const pv_kv_t *kv) {
    return kv->n_blocks ? pv_kv_bytes(kv) / kv->n_blocks * kv->n_cached : 0;
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

/* ---- the cached list (registered blocks with no holder), least recent first ------------- */

static void lru_unlink(pv_kv_t *kv, uint32_t b) {
    pv_kv_block_t *x = &kv->blk[b];
    if (x->lru_prev != PV_KV_NONE) kv->blk[x->lru_prev].lru_next = x->lru_next;
    else kv->lru_head = x->lru_next;
    if (x->lru_next != PV_KV_NONE) kv->blk[x->lru_next].lru_prev = x->lru_prev;
    else kv->lru_tail = x->lru_prev;
    x->lru_prev = x->lru_next = PV_KV_NONE;
    kv->n_cached--;
}

static void lru_push(pv_kv_t *kv, uint32_t b) {
    pv_kv_block_t *x = &kv->blk[b];
    x->lru_prev = kv->lru_tail;
    x->lru_next = PV_KV_NONE;
    if (kv->lru_tail != PV_KV_NONE) kv->blk[kv->lru_tail].lru_next = b;
    else kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_cached++;
}

/* As the least recent: for restored blocks, which arrive most recent first. */
static void lru_push_front(pv_kv_t *kv, uint32_t b) {
    pv_kv_block_t *x = &kv->blk[b];
    x->lru_prev = PV_KV_NONE;
    x->lru_next = kv->lru_head;
    if (kv->lru_head != PV_KV_NONE) kv->blk[kv->lru_head].lru_prev = b;
    else kv->lru_tail = b;
    kv->lru_head = b;
    kv->n_cached++;
}

/* ---- the hash table of registered blocks (linear probing, backward-shift deletion) ------- */

static uint32_t slot_of(const pv_kv_t *kv, uint64_t h) { return (uint32_t)(h ^ (h >> 29)) & (kv->table_size - 1); }

static uint32_t table_find(const pv_kv_t *kv, uint64_t h, const int32_t *tokens) {
    for (uint32_t i = slot_of(kv, h);; i = (i + 1) & (kv->table_size - 1)) {
        uint32_t b = kv->table[i];
        if (b == PV_KV_NONE) return PV_KV_NONE;
        if (kv->blk[b].hash == h && memcmp(kv->tokens + (size_t)b * PV_KV_BLOCK, tokens, PV_KV_BLOCK * sizeof *tokens) == 0)
            return b;
    }
}

/* Any registered block under hash h (a parent, whose tokens the caller does not have). */
static uint32_t table_find_hash(const pv_kv_t *kv, uint64_t h) {
    for (uint32_t i = slot_of(kv, h);; i = (i + 1) & (kv->table_size - 1)) {
        uint32_t b = kv->table[i];
        if (b == PV_KV_NONE || kv->blk[b].hash == h) return b;
    }
}

static void table_insert(pv_kv_t *kv, uint32_t b) {
    uint32_t i = slot_of(kv, kv->blk[b].hash);
    while (kv->table[i] != PV_KV_NONE) i = (i + 1) & (kv->table_size - 1);
    kv->table[i] = b;
}

static void table_remove(pv_kv_t *kv, uint32_t b) {
    uint32_t mask = kv->table_size - 1, i = slot_of(kv, kv->blk[b].hash);
    while (kv->table[i] != b) i = (i + 1) & mask;
    kv->table[i] = PV_KV_NONE;
    /* shift back any entry of the run after i that its home slot allows */
    for (uint32_t j = (i + 1) & mask; kv->table[j] != PV_KV_NONE; j = (j + 1) & mask) {
        uint32_t home = slot_of(kv, kv->blk[kv->table[j]].hash);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            kv->table[i] = kv->table[j];
            kv->table[j] = PV_KV_NONE;
            i = j;
        }
    }
}

static void unregister(pv_kv_t *kv, uint32_t b) {
    table_remove(kv, b);
    kv->blk[b].hash = 0;
}

/* A block for new content: a free one, else the least recently used cached one. */
static uint32_t take_block(pv_kv_t *kv) {
    uint32_t b;
    if (kv->n_free > 0) {
        b = kv->free_ids[--kv->n_free];
    } else if (kv->lru_head != PV_KV_NONE) {
        b = kv->lru_head;
        lru_unlink(kv, b);
        unregister(kv, b);
        kv->n_evicted++;
    } else {
        return PV_KV_NONE;
    }
    kv->blk[b].n_ref = 1;
    return b;
}

static void drop_block(pv_kv_t *kv, uint32_t b) {
    if (kv->blk[b].n_ref == 2) kv->n_shared--;
    if (--kv->blk[b].n_ref > 0) return;
    if (kv->blk[b].hash) lru_push(kv, b);
    else kv->free_ids[kv->n_free++] = b;
}

int pv_kv_reserve(pv_kv_t *kv, pv_seq_t *s, uint32_t n_pos) {
    uint32_t need = (n_pos + PV_KV_BLOCK - 1) / PV_KV_BLOCK;
    if (need > s->max_blocks) return PV_ERANGE;
    if (need <= s->n_blocks) return 0;
    if (need - s->n_blocks > kv->n_free + kv->n_cached) return PV_ENOMEM;
    while (s->n_blocks < need) s->blocks[s->n_blocks++] = take_block(kv);
    return 0;
}

int pv_kv_prepare_write(pv_kv_t *kv, pv_seq_t *s, uint32_t pos) {
    uint32_t i = pos / PV_KV_BLOCK, b = s->blocks[i];
    if (kv->blk[b].n_ref == 1 && kv->blk[b].hash == 0) return 0;
    if (kv->blk[b].n_ref == 1) { /* ours alone but registered: forget the registration instead of copying */
        unregister(kv, b);
        return 0;
    }
    uint32_t nb = take_block(kv);
    if (nb == PV_KV_NONE) return PV_ENOMEM;
    size_t n = pv_kv_block_elems(kv);
    memcpy(kv->k + nb * n, kv->k + (size_t)b * n, n * sizeof *kv->k);
    memcpy(kv->v + nb * n, kv->v + (size_t)b * n, n * sizeof *kv->v);
    s->blocks[i] = nb;
    drop_block(kv, b);
    return 0;
}

void pv_kv_release(pv_kv_t *kv, pv_seq_t *s) {
    while (s->n_blocks > 0) drop_block(kv, s->blocks[--s->n_blocks]);
}

/* FNV-1a over the block's token ids, seeded with the previous block's hash. */
static uint64_t chain_hash(uint64_t prev, const int32_t *tokens) {
    uint64_t h = prev ^ 0xcbf29ce484222325ull;
    for (int i = 0; i < PV_KV_BLOCK; i++) {
        uint32_t t = (uint32_t)tokens[i];
        for (int k = 0; k < 4; k++) h = (h ^ ((t >> (8 * k)) & 0xff)) * 0x100000001b3ull;
    }
    return h ? h : 1; /* 0 means "not registered" */
}

uint32_t pv_kv_attach_prefix(pv_kv_t *kv, pv_seq_t *s, const int32_t *tokens, uint32_t n) {
    if (s->n_blocks != 0) return 0; /* only a fresh sequence starts from a cached prefix */
    return pv_kv_extend_prefix(kv, s, tokens, n);
}

uint32_t pv_kv_extend_prefix(pv_kv_t *kv, pv_seq_t *s, const int32_t *tokens, uint32_t n) {
    uint64_t h = 0;
    uint32_t i = 0;
    for (; i < s->n_blocks; i++) h = chain_hash(h, tokens + (size_t)i * PV_KV_BLOCK); /* the blocks held */
    /* (i + 1) blocks must leave at least one token to compute, for its logits */
    for (; (i + 1) * PV_KV_BLOCK < n && i < s->max_blocks; i++) {
        const int32_t *t = tokens + (size_t)i * PV_KV_BLOCK;
        h = chain_hash(h, t);
        uint32_t b = table_find(kv, h, t);
        if (b == PV_KV_NONE) break;
        if (kv->blk[b].n_ref == 0) lru_unlink(kv, b);
        if (++kv->blk[b].n_ref == 2) kv->n_shared++;
        s->blocks[s->n_blocks++] = b;
    }
    return i * PV_KV_BLOCK;
}

void pv_kv_register(pv_kv_t *kv, pv_seq_t *s, const int32_t *tokens, uint32_t n_pos) {
    uint64_t h = 0;
    for (uint32_t i = 0; (i + 1) * PV_KV_BLOCK <= n_pos && i < s->n_blocks; i++) {
        const int32_t *t = tokens + (size_t)i * PV_KV_BLOCK;
        uint64_t parent = h;
        h = chain_hash(h, t);
        uint32_t b = s->blocks[i];
        if (kv->blk[b].hash == h) continue;       /* already registered (attached or registered before) */
        if (kv->blk[b].hash) unregister(kv, b);   /* stale registration: content changed */
        if (table_find(kv, h, t) != PV_KV_NONE) continue; /* another block holds the same prefix */
        kv->blk[b].hash = h;
        kv->blk[b].parent = parent;
        memcpy(kv->tokens + (size_t)b * PV_KV_BLOCK, t, PV_KV_BLOCK * sizeof *t);
        table_insert(kv, b);
    }
}

int pv_kv_restore(pv_kv_t *kv, uint64_t hash, uint64_t parent, const int32_t *tokens, uint32_t *block) {
    if (chain_hash(parent, tokens) != hash) return PV_ECORRUPT;
    if (parent && table_find_hash(kv, parent) == PV_KV_NONE) return PV_ENOTFOUND; /* unreachable without it */
    if (table_find(kv, hash, tokens) != PV_KV_NONE) return PV_ENOTFOUND;
    if (kv->n_free == 0) return PV_ENOMEM;
    uint32_t b = kv->free_ids[--kv->n_free];
    kv->blk[b] = (pv_kv_block_t){0, PV_KV_NONE, PV_KV_NONE, hash, parent};
    memcpy(kv->tokens + (size_t)b * PV_KV_BLOCK, tokens, PV_KV_BLOCK * sizeof *tokens);
    table_insert(kv, b);
    lru_push_front(kv, b);
    *block = b;
    return 0;
}

void pv_kv_forget_cached(pv_kv_t *kv) {
    while (kv->lru_head != PV_KV_NONE) {
        uint32_t b = kv->lru_head;
        lru_unlink(kv, b);
        unregister(kv, b);
        kv->free_ids[kv->n_free++] = b;
    }
}
