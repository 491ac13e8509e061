/* kv.h - the KV cache: one arena of fixed-size blocks, shared by sequences, with a prefix cache.
 *
 * The arena is allocated once (its size is the KV budget); sequences own
 * lists of block ids in position order. Nothing here allocates per token.
 * Keys and values are IEEE halves, laid out per block as (n_layer,
 * PV_KV_BLOCK, kv_dim), so one layer's positions of a block are contiguous.
 *
 * Prefix cache: a full block whose contents are known is registered under a
 * hash of its tokens chained with the hash of every block before it, so equal
 * hashes mean equal prefixes. A new sequence attaches the longest registered
 * run of its prompt's blocks instead of computing them (pv_kv_attach_prefix).
 * Blocks are reference-counted: shared blocks are read-only, and a sequence
 * about to write into one gets a private copy first (pv_kv_prepare_write).
 * Registered blocks nobody holds stay cached, least recently used first out,
 * and are evicted only when the arena needs a block.
 *
 * Ownership: pv_kv_t owns its storage; a pv_seq_t owns its block list (not
 * the blocks, which belong to the arena and go back with pv_kv_release). */
#ifndef PV_KV_H
#define PV_KV_H

#include <stddef.h>
#include <stdint.h>

#define PV_KV_BLOCK 16 /* positions per block */
#define PV_KV_NONE UINT32_MAX

typedef struct {
    uint32_t n_ref;      /* sequences holding the block */
    uint32_t lru_prev;   /* cached (registered, unheld) blocks: doubly linked, PV_KV_NONE ends */
    uint32_t lru_next;
    uint64_t hash;       /* chain hash of the prefix ending with this block; 0: not registered */
    uint64_t parent;     /* registered blocks: chain hash of the prefix before it (0: the first block) */
} pv_kv_block_t;

typedef struct {
    uint32_t n_layer;    /* layers per block */
    uint32_t kv_dim;     /* n_head_kv * head_dim */
    uint32_t n_blocks;   /* blocks in the arena */
    uint16_t *k;         /* (n_blocks, n_layer, PV_KV_BLOCK, kv_dim) keys */
    uint16_t *v;         /* (n_blocks, n_layer, PV_KV_BLOCK, kv_dim) values */
    pv_kv_block_t *blk;  /* [n_blocks] bookkeeping */
    int32_t *tokens;     /* (n_blocks, PV_KV_BLOCK) token ids of registered blocks, to confirm hash hits */
    uint32_t *free_ids;  /* [n_blocks] stack of blocks neither held nor cached */
    uint32_t n_free;     /* entries on the stack */
    uint32_t lru_head;   /* least recently released cached block (evicted first) */
    uint32_t lru_tail;   /* most recently released cached block */
    uint32_t n_cached;   /* registered blocks that nobody holds */
    uint32_t *table;     /* [table_size] open-addressing hash table of registered block ids */
    uint32_t table_size; /* a power of two, at least 2 * n_blocks */
    uint32_t n_shared;   /* blocks held by more than one sequence */
    uint64_t n_evicted;  /* cached blocks reused for new content, since init */
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
size_t pv_kv_cached_bytes(const pv_kv_t *kv); /* registered blocks nobody holds (reusable, evictable) */

/* A sequence that may grow to max_pos positions (holds no blocks yet). */
int pv_seq_init(pv_seq_t *s, uint32_t max_pos);
void pv_seq_close(pv_seq_t *s); /* the blocks must have been released */
uint32_t pv_seq_capacity(const pv_seq_t *s); /* positions it may reach */

/* Makes positions [0, n_pos) of s backed by blocks. PV_ERANGE past the
 * sequence's capacity, PV_ENOMEM when the arena has no free or cached block
 * (nothing is taken then). */
int pv_kv_reserve(pv_kv_t *kv, pv_seq_t *s, uint32_t n_pos);

/* Makes the block holding pos private to s (copying it when shared or
 * registered), so that writing there changes no other sequence or cache entry. */
int pv_kv_prepare_write(pv_kv_t *kv, pv_seq_t *s, uint32_t pos);

/* Returns every block of s to the arena (registered ones stay cached). */
void pv_kv_release(pv_kv_t *kv, pv_seq_t *s);

/* For an empty s about to process tokens[0..n): attaches the longest run of
 * registered blocks equal to its leading full blocks, leaving at least one
 * token to compute. Returns the positions attached (a multiple of PV_KV_BLOCK). */
uint32_t pv_kv_attach_prefix(pv_kv_t *kv, pv_seq_t *s, const int32_t *tokens, uint32_t n);

/* The same for an s part-way through tokens[0..n): its blocks must be full
 * and hold tokens[0 .. PV_KV_BLOCK * s->n_blocks). Attaches the registered
 * blocks that continue them (leaving at least one token to compute) and
 * returns the positions s then holds. */
uint32_t pv_kv_extend_prefix(pv_kv_t *kv, pv_seq_t *s, const int32_t *tokens, uint32_t n);

/* Registers s's full blocks among positions [0, n_pos), whose tokens are
 * tokens[0..n_pos), so that later sequences can attach them. */
void pv_kv_register(pv_kv_t *kv, pv_seq_t *s, const int32_t *tokens, uint32_t n_pos);

/* ---- restoring saved blocks (model/kvstore.c) ---- */

/* Puts the block of tokens[0..PV_KV_BLOCK) that follows the registered prefix
 * whose chain hash is parent (0: it is the first block) into a free block,
 * registered under hash and cached as older than every other cached block,
 * and returns its id in *block: the caller fills its keys and values
 * (pv_kv_block_k / _v) before anything attaches it. PV_ECORRUPT when hash is
 * not the chain hash of parent and tokens; PV_ENOTFOUND when the parent is not
 * registered or the prefix already is (nothing taken); PV_ENOMEM when no block
 * is free (cached blocks are not evicted for it). */
int pv_kv_restore(pv_kv_t *kv, uint64_t hash, uint64_t parent, const int32_t *tokens, uint32_t *block);

/* Returns every cached block (registered, held by nobody) to the free stack. */
void pv_kv_forget_cached(pv_kv_t *kv);

/* Halves per block in each of k and v: n_layer * PV_KV_BLOCK * kv_dim. */
static inline size_t pv_kv_block_elems(const pv_kv_t *kv) { return (size_t)kv->n_layer * PV_KV_BLOCK * kv->kv_dim; }
/* The keys (values) of block b: (n_layer, PV_KV_BLOCK, kv_dim) halves. */
static inline uint16_t *pv_kv_block_k(const pv_kv_t *kv, uint32_t b) { return kv->k + b * pv_kv_block_elems(kv); }
static inline uint16_t *pv_kv_block_v(const pv_kv_t *kv, uint32_t b) { return kv->v + b * pv_kv_block_elems(kv); }

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
