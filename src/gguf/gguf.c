/* gguf.c - parse a GGUF image with every read bounded by the file's end. */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"

/* A read position in the file image; every take_* checks against end. */
typedef struct {
    const uint8_t *base; /* start of the file */
    const uint8_t *p;    /* next byte to read */
    const uint8_t *end;  /* one past the last byte */
    const char *name;    /* file name for messages */
    char *err;
    size_t errlen;
} cursor_t;

static size_t cur_off(const cursor_t *c) { return (size_t)(c->p - c->base); }
static size_t cur_left(const cursor_t *c) { return (size_t)(c->end - c->p); }

static int cur_fail(cursor_t *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cur_fail(cursor_t *c, int code, const char *fmt, ...) {
    char what[PV_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pv_errorf(c->err, c->errlen, code, "%s: %s (at byte offset %zu)", c->name, what, cur_off(c));
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static int take_u32(cursor_t *c, uint32_t *v, const char *what) {
    if (cur_left(c) < 4) return cur_fail(c, PV_ECORRUPT, "file truncated in %s", what);
    *v = rd32(c->p);
    c->p += 4;
    return 0;
}

static int take_u64(cursor_t *c, uint64_t *v, const char *what) {
    if (cur_left(c) < 8) return cur_fail(c, PV_ECORRUPT, "file truncated in %s", what);
    *v = rd64(c->p);
    c->p += 8;
    return 0;
}

/* string := u64 length, bytes. Returns a view and its length. */
static int take_str(cursor_t *c, const char **s, size_t *len, const char *what) {
    uint64_t n = 0;
    int rc = take_u64(c, &n, what);
    if (rc) return rc;
    if (n > cur_left(c)) {
        c->p -= 8;
        return cur_fail(c, PV_ECORRUPT, "%s length %llu runs past the end of the file", what,
                        (unsigned long long)n);
    }
    *s = (const char *)c->p;
    *len = (size_t)n;
    c->p += n;
    return 0;
}

static const size_t vtype_size[GGUF_VT_COUNT] = {
    [GGUF_VT_UINT8] = 1, [GGUF_VT_INT8] = 1,  [GGUF_VT_UINT16] = 2, [GGUF_VT_INT16] = 2,
    [GGUF_VT_UINT32] = 4, [GGUF_VT_INT32] = 4, [GGUF_VT_FLOAT32] = 4, [GGUF_VT_BOOL] = 1,
    [GGUF_VT_STRING] = 0, [GGUF_VT_ARRAY] = 0, [GGUF_VT_UINT64] = 8, [GGUF_VT_INT64] = 8,
    [GGUF_VT_FLOAT64] = 8,
};

static const char *const vtype_names[GGUF_VT_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

const char *gguf_vtype_name(gguf_vtype_t t) {
    return (unsigned)t < GGUF_VT_COUNT ? vtype_names[t] : "unknown";
}

/* Parses one value of type t (already read) into kv; bounded by the file. */
static int take_value(cursor_t *c, gguf_kv_t *kv, size_t key_len, uint32_t t, size_t *pool_need) {
    if (t >= GGUF_VT_COUNT) {
        c->p -= 4;
        return cur_fail(c, PV_ECORRUPT, "key '%.*s': unknown value type %u", (int)(key_len > 200 ? 200 : key_len), kv->key, t);
    }
    kv->type = (gguf_vtype_t)t;
    kv->n = 1;
    if (t == GGUF_VT_STRING) {
        const char *s;
        size_t len;
        int rc = take_str(c, &s, &len, "string value");
        if (rc) return rc;
        kv->data = (const uint8_t *)s;
        kv->str_len = len;
        *pool_need += len + 1;
        return 0;
    }
    if (t != GGUF_VT_ARRAY) {
        if (cur_left(c) < vtype_size[t]) return cur_fail(c, PV_ECORRUPT, "file truncated in a %s value", vtype_names[t]);
        kv->data = c->p;
        c->p += vtype_size[t];
        return 0;
    }
    uint32_t et = 0;
    uint64_t n = 0;
    int rc = take_u32(c, &et, "array element type");
    if (!rc) rc = take_u64(c, &n, "array length");
    if (rc) return rc;
    if (et >= GGUF_VT_COUNT) return cur_fail(c, PV_ECORRUPT, "unknown array element type %u", et);
    if (et == GGUF_VT_ARRAY) return cur_fail(c, PV_EUNSUPPORTED, "nested arrays are not supported");
    kv->el_type = (gguf_vtype_t)et;
    kv->n = n;
    kv->data = c->p;
    if (et == GGUF_VT_STRING) {
        /* each element takes at least its 8-byte length: bound the loop first */
        if (n > cur_left(c) / 8)
            return cur_fail(c, PV_ECORRUPT, "array of %llu strings cannot fit in the file", (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++) {
            const char *s;
            size_t len;
            if ((rc = take_str(c, &s, &len, "array string"))) return rc;
        }
        return 0;
    }
    if (n > cur_left(c) / vtype_size[et])
        return cur_fail(c, PV_ECORRUPT, "array of %llu %s values runs past the end of the file",
                        (unsigned long long)n, vtype_names[et]);
    c->p += n * vtype_size[et];
    return 0;
}

static int cmp_kv_key(const void *a, const void *b) {
    return strcmp((*(const gguf_kv_t *const *)a)->key, (*(const gguf_kv_t *const *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const gguf_tensor_t *const *)a)->name, (*(const gguf_tensor_t *const *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    uint64_t x = (*(const gguf_tensor_t *const *)a)->offset, y = (*(const gguf_tensor_t *const *)b)->offset;
    return x < y ? -1 : x > y;
}

/* Key/value section. Keys are views until copied into the pool. */
static int parse_kvs(cursor_t *c, gguf_file_t *f, size_t *key_lens, size_t *pool_need) {
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv_t *kv = &f->kv[i];
        const char *key;
        size_t klen;
        uint32_t t;
        int rc = take_str(c, &key, &klen, "key");
        if (rc) return rc;
        if (klen == 0 || memchr(key, 0, klen)) return cur_fail(c, PV_ECORRUPT, "key %llu is empty or holds a NUL byte", (unsigned long long)i);
        kv->key = key;
        key_lens[i] = klen;
        *pool_need += klen + 1;
        if ((rc = take_u32(c, &t, "value type"))) return rc;
        if ((rc = take_value(c, kv, klen, t, pool_need))) return rc;
    }
    return 0;
}

/* Tensor info section: shape, type and offset checks that need no data. */
static int parse_tensor_infos(cursor_t *c, gguf_file_t *f, size_t *name_lens, size_t *pool_need) {
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor_t *t = &f->tensors[i];
        const char *name;
        size_t nlen;
        uint32_t n_dims = 0, type = 0;
        int rc = take_str(c, &name, &nlen, "tensor name");
        if (rc) return rc;
        if (nlen == 0 || nlen >= GGUF_MAX_NAME || memchr(name, 0, nlen))
            return cur_fail(c, PV_ECORRUPT, "tensor %llu: name is empty, holds a NUL or is %zu bytes long (limit %d)",
                            (unsigned long long)i, nlen, GGUF_MAX_NAME - 1);
        t->name = name;
        name_lens[i] = nlen;
        *pool_need += nlen + 1;
        if ((rc = take_u32(c, &n_dims, "tensor dimension count"))) return rc;
        if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
            return cur_fail(c, PV_ECORRUPT, "tensor '%.*s': %u dimensions (1..%d allowed)", (int)nlen, name, n_dims, GGUF_MAX_DIMS);
        t->n_dims = n_dims;
        int64_t n_elems = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
            uint64_t ne = 1;
            if (d < n_dims && (rc = take_u64(c, &ne, "tensor dimension"))) return rc;
            if (ne > (uint64_t)INT64_MAX || (ne > 0 && (uint64_t)n_elems > (uint64_t)INT64_MAX / ne))
                return cur_fail(c, PV_ECORRUPT, "tensor '%.*s': dimensions overflow", (int)nlen, name);
            t->ne[d] = (int64_t)ne;
            n_elems *= (int64_t)ne;
        }
        t->n_elems = n_elems;
        if ((rc = take_u32(c, &type, "tensor type"))) return rc;
        const pv_type_layout_t *lay = pv_type_layout(type);
        if (!lay) return cur_fail(c, PV_ECORRUPT, "tensor '%.*s': unknown type id %u", (int)nlen, name, type);
        t->type = (pv_type_t)type;
        if (t->ne[0] % lay->blck_size != 0)
            return cur_fail(c, PV_ECORRUPT,
                            "tensor '%.*s': rows of %lld elements are not a whole number of %s blocks of %u",
                            (int)nlen, name, (long long)t->ne[0], lay->name, lay->blck_size);
        uint64_t n_blocks = (uint64_t)n_elems / lay->blck_size;
        if (n_blocks > SIZE_MAX / lay->type_size || n_blocks * lay->type_size > (uint64_t)(c->end - c->base))
            return cur_fail(c, PV_ECORRUPT, "tensor '%.*s': %llu blocks cannot fit in the file", (int)nlen, name,
                            (unsigned long long)n_blocks);
        t->n_bytes = (size_t)(n_blocks * lay->type_size);
        if ((rc = take_u64(c, &t->offset, "tensor offset"))) return rc;
    }
    return 0;
}

/* Data section: alignment, bounds, overlaps, duplicate names. */
static int check_tensor_data(cursor_t *c, gguf_file_t *f) {
    size_t info_end = cur_off(c);
    size_t a = f->alignment;
    size_t data = info_end % a ? info_end + (a - info_end % a) : info_end;
    f->data_offset = data;
    if (f->n_tensors == 0) return 0;
    if (data > f->size) return cur_fail(c, PV_ECORRUPT, "file ends before its data section (needs %zu bytes)", data);
    size_t room = f->size - data;
    gguf_tensor_t **order = malloc(f->n_tensors * sizeof *order);
    if (!order) return pv_errorf(c->err, c->errlen, PV_ENOMEM, "%s: out of memory", c->name);
    int rc = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor_t *t = &f->tensors[i];
        order[i] = t;
        if (t->offset % a != 0)
            rc = pv_errorf(c->err, c->errlen, PV_ECORRUPT, "%s: tensor '%s': data offset %llu is not a multiple of the alignment %zu",
                           c->name, t->name, (unsigned long long)t->offset, a);
        else if (t->offset > room || t->n_bytes > room - t->offset)
            rc = pv_errorf(c->err, c->errlen, PV_ECORRUPT,
                           "%s: tensor '%s': data [%llu, +%zu) lies outside the file (data section holds %zu bytes from offset %zu)",
                           c->name, t->name, (unsigned long long)t->offset, t->n_bytes, room, data);
        if (rc) goto done;
        t->data = f->base + data + t->offset;
    }
    qsort(order, f->n_tensors, sizeof *order, cmp_tensor_offset);
    for (uint64_t i = 1; i < f->n_tensors; i++)
        if (order[i - 1]->offset + order[i - 1]->n_bytes > order[i]->offset) {
            rc = pv_errorf(c->err, c->errlen, PV_ECORRUPT, "%s: tensors '%s' and '%s' overlap in the data section",
                           c->name, order[i - 1]->name, order[i]->name);
            goto done;
        }
    qsort(order, f->n_tensors, sizeof *order, cmp_tensor_name);
    for (uint64_t i = 1; i < f->n_tensors; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            rc = pv_errorf(c->err, c->errlen, PV_ECORRUPT, "%s: tensor name '%s' appears twice", c->name, order[i]->name);
            goto done;
        }
done:
    free(order);
    return rc;
}

/* Copies keys, names and string values into one owned pool, nul-terminated. */
static int build_pool(gguf_file_t *f, const size_t *key_lens, const size_t *name_lens, size_t need) {
    f->pool = malloc(need ? need : 1);
    if (!f->pool) return PV_ENOMEM;
    char *q = f->pool;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv_t *kv = &f->kv[i];
        memcpy(q, kv->key, key_lens[i]);
        q[key_lens[i]] = 0;
        kv->key = q;
        q += key_lens[i] + 1;
        if (kv->type == GGUF_VT_STRING) {
            memcpy(q, kv->data, kv->str_len);
            q[kv->str_len] = 0;
            kv->str = q;
            q += kv->str_len + 1;
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        memcpy(q, f->tensors[i].name, name_lens[i]);
        q[name_lens[i]] = 0;
        f->tensors[i].name = q;
        q += name_lens[i] + 1;
    }
    return 0;
}

static int check_header(cursor_t *c, gguf_file_t *f) {
    if (f->size < 24) return cur_fail(c, PV_ECORRUPT, "file of %zu bytes is too small for a GGUF header", f->size);
    if (memcmp(c->p, "GGUF", 4) != 0) return cur_fail(c, PV_ECORRUPT, "not a GGUF file (bad magic)");
    c->p += 4;
    f->version = rd32(c->p);
    if (f->version == 1)
        return cur_fail(c, PV_EUNSUPPORTED, "GGUF version 1 (legacy) is not supported; versions 2 and 3 are");
    if (f->version > 0xffff && (f->version & 0xffff) == 0)
        return cur_fail(c, PV_EUNSUPPORTED, "big-endian GGUF files are not supported");
    if (f->version != 2 && f->version != 3)
        return cur_fail(c, PV_EUNSUPPORTED, "GGUF version %u is not supported; versions 2 and 3 are", f->version);
    c->p += 4;
    f->n_tensors = rd64(c->p);
    c->p += 8;
    f->n_kv = rd64(c->p);
    c->p += 8;
    /* smallest key/value: 8-byte key length + 1 byte key + 4-byte type + 1-byte value;
     * smallest tensor info: 8 + 1 + 4 + 8 + 4 + 8 */
    if (f->n_kv > cur_left(c) / 14)
        return cur_fail(c, PV_ECORRUPT, "%llu key/value pairs cannot fit in the file", (unsigned long long)f->n_kv);
    if (f->n_tensors > cur_left(c) / 33)
        return cur_fail(c, PV_ECORRUPT, "%llu tensor infos cannot fit in the file", (unsigned long long)f->n_tensors);
    return 0;
}

static int check_kvs(cursor_t *c, gguf_file_t *f) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv_t *al = gguf_find_kv(f, "general.alignment");
    if (al) {
        uint32_t a = al->type == GGUF_VT_UINT32 ? rd32(al->data) : 0;
        if (a == 0 || (a & (a - 1)) != 0)
            return pv_errorf(c->err, c->errlen, PV_ECORRUPT, "%s: general.alignment must be a power-of-two u32", c->name);
        f->alignment = a;
    }
    if (f->n_kv < 2) return 0;
    gguf_kv_t **order = malloc(f->n_kv * sizeof *order);
    if (!order) return pv_errorf(c->err, c->errlen, PV_ENOMEM, "%s: out of memory", c->name);
    for (uint64_t i = 0; i < f->n_kv; i++) order[i] = &f->kv[i];
    qsort(order, f->n_kv, sizeof *order, cmp_kv_key);
    int rc = 0;
    for (uint64_t i = 1; i < f->n_kv && !rc; i++)
        if (strcmp(order[i - 1]->key, order[i]->key) == 0)
            rc = pv_errorf(c->err, c->errlen, PV_ECORRUPT, "%s: key '%s' appears twice", c->name, order[i]->key);
    free(order);
    return rc;
}

int gguf_open_buffer(const void *buf, size_t size, const char *name, gguf_file_t **out, char *err,
                     size_t errlen) {
    *out = NULL;
    if (!buf) { /* NULL + 0 below would be undefined: read (NULL, 0) as an empty image */
        if (size) return pv_errorf(err, errlen, PV_EINVAL, "%s: no buffer for %zu bytes", name, size);
        buf = "";
    }
    gguf_file_t *f = calloc(1, sizeof *f);
    size_t *key_lens = NULL, *name_lens = NULL, pool_need = 0;
    if (!f || !(f->path = strdup(name))) {
        free(f);
        return pv_errorf(err, errlen, PV_ENOMEM, "%s: out of memory", name);
    }
    f->base = buf;
    f->size = size;
    cursor_t c = {.base = buf, .p = buf, .end = (const uint8_t *)buf + size, .name = f->path, .err = err, .errlen = errlen};
    int rc = check_header(&c, f);
    if (rc) goto fail;
    /* counts are bounded by the file size, so these allocations are too */
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    key_lens = calloc(f->n_kv ? f->n_kv : 1, sizeof *key_lens);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    name_lens = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *name_lens);
    if (!f->kv || !key_lens || !f->tensors || !name_lens) {
        rc = pv_errorf(err, errlen, PV_ENOMEM, "%s: out of memory", name);
        goto fail;
    }
    if ((rc = parse_kvs(&c, f, key_lens, &pool_need))) goto fail;
    if ((rc = parse_tensor_infos(&c, f, name_lens, &pool_need))) goto fail;
    if ((rc = build_pool(f, key_lens, name_lens, pool_need))) {
        rc = pv_errorf(err, errlen, PV_ENOMEM, "%s: out of memory", name);
        goto fail;
    }
    if ((rc = check_kvs(&c, f))) goto fail;
    if ((rc = check_tensor_data(&c, f))) goto fail;
    free(key_lens);
    free(name_lens);
    *out = f;
    return 0;
fail:
    free(key_lens);
    free(name_lens);
    gguf_close(f);
    return rc;
}

int gguf_open(const char *path, gguf_file_t **out, char *err, size_t errlen) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pv_errorf(err, errlen, PV_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pv_errorf(err, errlen, PV_EIO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: file is empty", path);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return pv_errorf(err, errlen, PV_EIO, "%s: cannot map: %s", path, strerror(errno));
    int rc = gguf_open_buffer(map, size, path, out, err, errlen);
    if (rc) {
        munmap(map, size);
        return rc;
    }
    (*out)->mapped = 1;
    return 0;
}

void gguf_close(gguf_file_t *f) {
    if (!f) return;
    if (f->mapped) munmap((void *)f->base, f->size);
    free(f->kv);
    free(f->tensors);
    free(f->pool);
    free(f->path);
    free(f);
}

const gguf_kv_t *gguf_find_kv(const gguf_file_t *f, const char *key) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (strcmp(f->kv[i].key, key) == 0) return &f->kv[i];
    return NULL;
}

const gguf_tensor_t *gguf_find_tensor(const gguf_file_t *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

/* Reads element i of an integer or float typed region at p. */
static int scalar_int(gguf_vtype_t t, const uint8_t *p, int64_t *out) {
    switch (t) {
    case GGUF_VT_UINT8: *out = p[0]; return 0;
    case GGUF_VT_INT8: *out = (int8_t)p[0]; return 0;
    case GGUF_VT_BOOL: *out = p[0] != 0; return 0;
    case GGUF_VT_UINT16: *out = (uint16_t)(p[0] | p[1] << 8); return 0;
    case GGUF_VT_INT16: *out = (int16_t)(uint16_t)(p[0] | p[1] << 8); return 0;
    case GGUF_VT_UINT32: *out = rd32(p); return 0;
    case GGUF_VT_INT32: *out = (int32_t)rd32(p); return 0;
    case GGUF_VT_UINT64: {
        uint64_t v = rd64(p);
        if (v > INT64_MAX) return PV_ERANGE;
        *out = (int64_t)v;
        return 0;
    }
    case GGUF_VT_INT64: *out = (int64_t)rd64(p); return 0;
    default: return PV_ECORRUPT;
    }
}

static int scalar_float(gguf_vtype_t t, const uint8_t *p, double *out) {
    if (t == GGUF_VT_FLOAT32) {
        uint32_t u = rd32(p);
        float v;
        memcpy(&v, &u, 4);
        *out = v;
        return 0;
    }
    if (t == GGUF_VT_FLOAT64) {
        uint64_t u = rd64(p);
        memcpy(out, &u, 8);
        return 0;
    }
    int64_t i;
    int rc = scalar_int(t, p, &i);
    if (!rc) *out = (double)i;
    return rc;
}

int gguf_get_u32(const gguf_file_t *f, const char *key, uint32_t *out) {
    const gguf_kv_t *kv = gguf_find_kv(f, key);
    if (!kv) return PV_ENOTFOUND;
    int64_t v;
    if (kv->type == GGUF_VT_BOOL || scalar_int(kv->type, kv->data, &v) || v < 0 || v > UINT32_MAX) return PV_ECORRUPT;
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_f32(const gguf_file_t *f, const char *key, float *out) {
    const gguf_kv_t *kv = gguf_find_kv(f, key);
    if (!kv) return PV_ENOTFOUND;
    double v;
    if (kv->type == GGUF_VT_BOOL || scalar_float(kv->type, kv->data, &v)) return PV_ECORRUPT;
    *out = (float)v;
    return 0;
}

int gguf_get_bool(const gguf_file_t *f, const char *key, int *out) {
    const gguf_kv_t *kv = gguf_find_kv(f, key);
    if (!kv) return PV_ENOTFOUND;
    if (kv->type != GGUF_VT_BOOL) return PV_ECORRUPT;
    *out = kv->data[0] != 0;
    return 0;
}

const char *gguf_get_str(const gguf_file_t *f, const char *key) {
    const gguf_kv_t *kv = gguf_find_kv(f, key);
    return kv && kv->type == GGUF_VT_STRING ? kv->str : NULL;
}

int64_t gguf_arr_int(const gguf_kv_t *kv, uint64_t i) {
    int64_t v = 0;
    if (scalar_int(kv->el_type, kv->data + i * vtype_size[kv->el_type], &v)) return 0;
    return v;
}

double gguf_arr_float(const gguf_kv_t *kv, uint64_t i) {
    double v = 0;
    if (scalar_float(kv->el_type, kv->data + i * vtype_size[kv->el_type], &v)) return 0;
    return v;
}

const char *gguf_arr_str_next(const gguf_kv_t *kv, size_t *pos, size_t *len) {
    const uint8_t *p = kv->data + *pos;
    *len = (size_t)rd64(p);
    *pos += 8 + *len;
    return (const char *)p + 8;
}
