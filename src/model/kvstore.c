/* kvstore.c - saving cached KV blocks to a file and loading them back (format: kvstore.h). */
#include "model/kvstore.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"

#define KVS_MAGIC "PVKVBLK1"
#define KVS_HEADER_BYTES 48
#define KVS_RECORD_HEAD 88      /* hash, parent, tokens, checksum */
#define KVS_SAMPLE_BYTES 1024   /* bytes hashed from each end of every tensor for the model id */

typedef struct {
    char magic[8];       /* KVS_MAGIC */
    uint64_t model_id;   /* pv_kvstore_model_id */
    uint32_t n_layer;    /* layers per block */
    uint32_t kv_dim;     /* halves per position and layer */
    uint32_t block;      /* PV_KV_BLOCK */
    uint32_t elem_bytes; /* 2 */
    uint64_t n_records;  /* records that follow */
    uint64_t checksum;   /* of the fields above */
} kvs_header_t;
_Static_assert(sizeof(kvs_header_t) == KVS_HEADER_BYTES, "the header is the file's first 48 bytes");

typedef struct {
    uint64_t hash;                /* chain hash of the prefix ending with the block */
    uint64_t parent;              /* chain hash of the prefix before it */
    int32_t tokens[PV_KV_BLOCK];  /* the block's token ids */
    uint64_t checksum;            /* of the record's other bytes, keys and values included */
} kvs_record_t;
_Static_assert(sizeof(kvs_record_t) == KVS_RECORD_HEAD, "a record starts with 88 bytes");

/* A 64-bit checksum, a word at a time: each step is a bijection of the state,
 * so changing any one word always changes the result. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 32;
    }
    for (; n > 0; n--, b++) {
        h = (h ^ *b) * 0x100000001b3ull;
        h ^= h >> 32;
    }
    return h;
}

static uint64_t hash_u64(uint64_t h, uint64_t v) { return hash_bytes(h, &v, sizeof v); }

uint64_t pv_kvstore_model_id(const pv_model_t *m, const pv_ctx_t *c) {
    const gguf_file_t *f = m->file;
    uint64_t h = hash_bytes(0, KVS_MAGIC, 8);
    h = hash_u64(h, PV_KV_BLOCK);
    h = hash_u64(h, sizeof(uint16_t)); /* the KV element: IEEE half */
    h = hash_u64(h, (uint64_t)pv_ctx_long_rope(c));
    h = hash_u64(h, f->size);
    h = hash_bytes(h, f->base, f->data_offset); /* metadata and tensor infos, as stored */
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor_t *t = &f->tensors[i];
        size_t n = t->n_bytes < KVS_SAMPLE_BYTES ? t->n_bytes : KVS_SAMPLE_BYTES;
        h = hash_bytes(h, t->data, n);
        h = hash_bytes(h, (const char *)t->data + t->n_bytes - n, n);
    }
    return h ? h : 1;
}

static uint64_t header_checksum(const kvs_header_t *hd) { return hash_bytes(0, hd, offsetof(kvs_header_t, checksum)); }

static uint64_t record_checksum(const kvs_record_t *r, const uint16_t *k, const uint16_t *v, size_t elems) {
    uint64_t h = hash_bytes(0, r, offsetof(kvs_record_t, checksum));
    h = hash_bytes(h, k, elems * sizeof *k);
    return hash_bytes(h, v, elems * sizeof *v);
}

/* ---- saving -------------------------------------------------------------------------------- */

static int write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

int pv_kvstore_save(const pv_kv_t *kv, uint64_t model_id, const char *path, uint32_t *n_saved, char *err,
                    size_t errlen) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return pv_errorf(err, errlen, PV_EINVAL, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return pv_errorf(err, errlen, PV_EIO, "%s: %s", tmp, strerror(errno));
    kvs_header_t hd = {.model_id = model_id, .n_layer = kv->n_layer, .kv_dim = kv->kv_dim, .block = PV_KV_BLOCK,
                       .elem_bytes = sizeof *kv->k, .n_records = kv->n_cached};
    memcpy(hd.magic, KVS_MAGIC, 8);
    hd.checksum = header_checksum(&hd);
    size_t elems = pv_kv_block_elems(kv);
    int bad = write_all(f, &hd, sizeof hd);
    uint32_t n = 0;
    for (uint32_t b = kv->lru_tail; !bad && b != PV_KV_NONE; b = kv->blk[b].lru_prev, n++) {
        kvs_record_t r = {.hash = kv->blk[b].hash, .parent = kv->blk[b].parent};
        memcpy(r.tokens, kv->tokens + (size_t)b * PV_KV_BLOCK, sizeof r.tokens);
        const uint16_t *k = pv_kv_block_k(kv, b), *v = pv_kv_block_v(kv, b);
        r.checksum = record_checksum(&r, k, v, elems);
        bad = write_all(f, &r, sizeof r) || write_all(f, k, elems * sizeof *k) || write_all(f, v, elems * sizeof *v);
    }
    int e = errno;
    if (!bad && (fflush(f) || fsync(fileno(f)))) bad = 1, e = errno;
    if (fclose(f) && !bad) bad = 1, e = errno;
    if (!bad && rename(tmp, path)) bad = 1, e = errno;
    if (bad) {
        unlink(tmp);
        return pv_errorf(err, errlen, PV_EIO, "cannot write %s: %s", path, strerror(e));
    }
    if (n_saved) *n_saved = n;
    return 0;
}

/* ---- loading ------------------------------------------------------------------------------- */

/* Checks the header against kv and the file's size. */
static int check_header(const kvs_header_t *hd, const pv_kv_t *kv, uint64_t model_id, uint64_t file_size,
                        const char *path, char *err, size_t errlen) {
    if (memcmp(hd->magic, KVS_MAGIC, 8) || hd->checksum != header_checksum(hd))
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: not a pensieve KV cache file, or a damaged one", path);
    if (hd->model_id != model_id)
        return pv_errorf(err, errlen, PV_EINVAL, "%s: made for another model (or another version of the file)", path);
    if (hd->n_layer != kv->n_layer || hd->kv_dim != kv->kv_dim || hd->block != PV_KV_BLOCK ||
        hd->elem_bytes != sizeof *kv->k)
        return pv_errorf(err, errlen, PV_EINVAL, "%s: blocks of another shape", path);
    uint64_t rec = KVS_RECORD_HEAD + 2 * (uint64_t)pv_kv_block_elems(kv) * sizeof *kv->k;
    if (hd->n_records > (file_size - KVS_HEADER_BYTES) / rec ||
        file_size != KVS_HEADER_BYTES + hd->n_records * rec)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %llu bytes do not hold the %llu records of its header "
                         "(truncated or damaged)", path, (unsigned long long)file_size,
                         (unsigned long long)hd->n_records);
    return 0;
}

/* Reads the records into free blocks; on any error the caller forgets them. */
static int read_records(FILE *f, pv_kv_t *kv, uint64_t n_records, const char *path, uint32_t *n_loaded, char *err,
                        size_t errlen) {
    size_t elems = pv_kv_block_elems(kv), kv_bytes = 2 * elems * sizeof *kv->k;
    for (uint64_t i = 0; i < n_records && kv->n_free > 0; i++) {
        kvs_record_t r;
        if (fread(&r, sizeof r, 1, f) != 1) return pv_errorf(err, errlen, PV_EIO, "%s: read error", path);
        uint32_t b;
        int rc = pv_kv_restore(kv, r.hash, r.parent, r.tokens, &b);
        if (rc == PV_ENOTFOUND) { /* its prefix is not there (or is twice): nothing can attach it */
            if (fseeko(f, (off_t)kv_bytes, SEEK_CUR)) return pv_errorf(err, errlen, PV_EIO, "%s: seek error", path);
            continue;
        }
        if (rc) return pv_errorf(err, errlen, PV_ECORRUPT, "%s: record %llu: its hash does not follow from its tokens",
                                 path, (unsigned long long)i);
        uint16_t *k = pv_kv_block_k(kv, b), *v = pv_kv_block_v(kv, b);
        if (fread(k, sizeof *k, elems, f) != elems || fread(v, sizeof *v, elems, f) != elems)
            return pv_errorf(err, errlen, PV_EIO, "%s: read error", path);
        if (record_checksum(&r, k, v, elems) != r.checksum)
            return pv_errorf(err, errlen, PV_ECORRUPT, "%s: record %llu: checksum mismatch", path,
                             (unsigned long long)i);
        (*n_loaded)++;
    }
    return 0;
}

int pv_kvstore_load(pv_kv_t *kv, uint64_t model_id, const char *path, uint32_t *n_loaded, char *err,
                    size_t errlen) {
    uint32_t n = 0;
    if (n_loaded) *n_loaded = 0;
    if (kv->n_free != kv->n_blocks)
        return pv_errorf(err, errlen, PV_EINVAL, "the KV arena must be empty to load %s", path);
    FILE *f = fopen(path, "rb");
    if (!f) return pv_errorf(err, errlen, errno == ENOENT ? PV_ENOTFOUND : PV_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    kvs_header_t hd;
    int rc;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode))
        rc = pv_errorf(err, errlen, PV_EIO, "%s: not a regular file", path);
    else if ((uint64_t)st.st_size < sizeof hd || fread(&hd, sizeof hd, 1, f) != 1)
        rc = pv_errorf(err, errlen, PV_ECORRUPT, "%s: shorter than its header", path);
    else if (!(rc = check_header(&hd, kv, model_id, (uint64_t)st.st_size, path, err, errlen)))
        rc = read_records(f, kv, hd.n_records, path, &n, err, errlen);
    fclose(f);
    if (rc) {
        pv_kv_forget_cached(kv);
        return rc;
    }
    if (n_loaded) *n_loaded = n;
    return 0;
}
