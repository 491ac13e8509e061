/* kvstore.h - the prefix cache on disk: cached KV blocks saved to a file,
 * and loaded back into a fresh arena, so that a restarted server finds the
 * prefixes it had computed.
 *
 * File layout (the host's byte order, little-endian on every supported
 * machine; the magic read back as a u64 catches another byte order):
 *
 *   OFFSET  SIZE  DESCRIPTION
 *   0       8     magic "PVKVBLK1" (the last byte is the format version)
 *   8       8     u64 model id (pv_kvstore_model_id): the blocks are valid for that model only
 *   16      4     u32 n_layer
 *   20      4     u32 kv_dim
 *   24      4     u32 positions per block (PV_KV_BLOCK)
 *   28      4     u32 bytes per cached element (2: IEEE half)
 *   32      8     u64 n_records
 *   40      8     u64 checksum of bytes 0..40
 *   48      ...   n_records records, the most recently used block first
 *
 *   record (88 + 2 * B bytes, B = n_layer * PV_KV_BLOCK * kv_dim * 2):
 *   0       8     u64 chain hash of the prefix ending with this block
 *   8       8     u64 chain hash of the prefix before it (0: the first block)
 *   16      64    i32 token ids [PV_KV_BLOCK]
 *   80      8     u64 checksum of the record's other bytes
 *   88      B     keys   (n_layer, PV_KV_BLOCK, kv_dim) halves
 *   88+B    B     values (n_layer, PV_KV_BLOCK, kv_dim) halves
 *
 * Every byte read is hostile: the size must be exactly the header's promise,
 * every chain hash must follow from its parent and tokens, every checksum
 * must match, and nothing is allocated from a count in the file (records are
 * read straight into arena blocks). A file that fails any check leaves the
 * arena as it was. */
#ifndef PV_KVSTORE_H
#define PV_KVSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "model/kv.h"
#include "model/model.h"

/* What the cached keys and values depend on: the GGUF's header (every
 * hyper-parameter and tensor info), its size, samples of every tensor's data,
 * the KV element type and block size, and whether c runs Phi-3's long RoPE
 * factors. Another model, or a changed file, gives another id. */
uint64_t pv_kvstore_model_id(const pv_model_t *m, const pv_ctx_t *c);

/* Writes kv's cached blocks (registered, held by nobody), most recent first,
 * to path: a temporary file beside it, renamed over path once complete.
 * *n_saved (may be NULL) receives the blocks written. 0 or PV_EIO. */
int pv_kvstore_save(const pv_kv_t *kv, uint64_t model_id, const char *path, uint32_t *n_saved, char *err,
                    size_t errlen);

/* Reads path into kv, which must hold no block and cache none: as many
 * blocks as are free, most recent first, each as a cached block (evictable
 * as usual). Blocks whose prefix did not make it are skipped. *n_loaded (may
 * be NULL) receives the blocks loaded. PV_ENOTFOUND when path does not
 * exist; PV_ECORRUPT for a truncated or damaged file, PV_EINVAL for one made
 * for another model or KV shape, PV_EIO on a read error: then nothing is
 * loaded. */
int pv_kvstore_load(pv_kv_t *kv, uint64_t model_id, const char *path, uint32_t *n_loaded, char *err,
                    size_t errlen);

#endif
