/* gguf.h - a bounds-checked reader for GGUF model files (versions 2 and 3).
 *
 * File layout (all integers little-endian):
 *
 *   OFFSET  SIZE  DESCRIPTION
 *   0       4     magic "GGUF"
 *   4       4     u32 version (2 or 3; version 1 used u32 counts and lengths)
 *   8       8     u64 n_tensors
 *   16      8     u64 n_kv
 *   24      ...   n_kv key/value pairs:  string key, u32 value type, value
 *   ...     ...   n_tensors tensor infos: string name, u32 n_dims,
 *                 u64 ne[n_dims] (innermost first), u32 ggml type,
 *                 u64 offset (relative to the data section)
 *   ...     ...   padding to general.alignment (u32, default 32)
 *   ...     ...   tensor data; each tensor starts at an aligned offset
 *
 *   string := u64 length, bytes (no terminator)
 *   value  := scalar of its type | string | array
 *   array  := u32 element type, u64 count, elements
 *
 * Every length, count, offset and dimension is checked against the file size
 * before use: a hostile file yields PV_ECORRUPT (or PV_EUNSUPPORTED) with a
 * message naming the file, the problem and the byte offset, never a crash or
 * a huge allocation: every count is checked against the bytes left, so the
 * reader's own memory stays within a small multiple (about 4x) of the file size.
 *
 * Ownership: gguf_open() returns a gguf_file_t that owns the read-only
 * mapping and all strings; every pointer handed out (keys, names, string
 * values, tensor data) is a view valid until gguf_close(). */
#ifndef PV_GGUF_H
#define PV_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "gguf/gtype.h"

#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64 /* tensor names are shorter than this, as in ggml */
#define GGUF_DEFAULT_ALIGNMENT 32

typedef enum {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
    GGUF_VT_COUNT
} gguf_vtype_t;

typedef struct {
    const char *key;      /* nul-terminated, owned by the file */
    gguf_vtype_t type;    /* value type */
    gguf_vtype_t el_type; /* element type when type == GGUF_VT_ARRAY */
    uint64_t n;           /* element count for arrays, 1 otherwise */
    const uint8_t *data;  /* view: the scalar, or the first array element */
    const char *str;      /* STRING values: nul-terminated copy (owned by file) */
    size_t str_len;       /* STRING values: length in bytes (may contain NULs) */
} gguf_kv_t;

typedef struct {
    const char *name;           /* nul-terminated, owned by the file */
    uint32_t n_dims;            /* 1..GGUF_MAX_DIMS */
    int64_t ne[GGUF_MAX_DIMS];  /* elements per dim, ne[0] innermost; unused = 1 */
    pv_type_t type;             /* known ggml type (layout checked) */
    uint64_t offset;            /* from the start of the data section */
    int64_t n_elems;            /* product of ne */
    size_t n_bytes;             /* size of the data */
    const void *data;           /* view into the mapping */
} gguf_tensor_t;

typedef struct {
    char *path;             /* owned copy, for messages */
    const uint8_t *base;    /* start of the file bytes (mapping or caller buffer) */
    size_t size;            /* file size in bytes */
    int mapped;             /* 1 if base is our mmap */
    uint32_t version;       /* 2 or 3 */
    uint32_t alignment;     /* general.alignment or the default */
    uint64_t n_kv;
    gguf_kv_t *kv;          /* [n_kv], owned */
    uint64_t n_tensors;
    gguf_tensor_t *tensors; /* [n_tensors], owned */
    size_t data_offset;     /* start of the data section */
    char *pool;             /* owned storage for keys, names and string values */
} gguf_file_t;

/* Maps path read-only and parses it. On success *out owns the mapping. */
int gguf_open(const char *path, gguf_file_t **out, char *err, size_t errlen);

/* Parses a file image held by the caller, who keeps buf alive until
 * gguf_close(). name is used in messages. (NULL, 0) reads as an empty file. */
int gguf_open_buffer(const void *buf, size_t size, const char *name, gguf_file_t **out,
                     char *err, size_t errlen);

void gguf_close(gguf_file_t *f); /* accepts NULL */

const gguf_kv_t *gguf_find_kv(const gguf_file_t *f, const char *key);
const gguf_tensor_t *gguf_find_tensor(const gguf_file_t *f, const char *name);

/* Typed getters: 0 on success, PV_ENOTFOUND when the key is absent,
 * PV_ECORRUPT when its type does not fit (integers convert when in range). */
int gguf_get_u32(const gguf_file_t *f, const char *key, uint32_t *out);
int gguf_get_f32(const gguf_file_t *f, const char *key, float *out);
int gguf_get_bool(const gguf_file_t *f, const char *key, int *out);
const char *gguf_get_str(const gguf_file_t *f, const char *key); /* NULL if absent or not a string */

/* Array elements (i < kv->n, el_type as named). */
int64_t gguf_arr_int(const gguf_kv_t *kv, uint64_t i);  /* any integer element type */
double gguf_arr_float(const gguf_kv_t *kv, uint64_t i); /* float or integer element types */

/* Walks a string array: *pos starts at 0; each call returns the next
 * element's bytes and length. The array was validated at open. */
const char *gguf_arr_str_next(const gguf_kv_t *kv, size_t *pos, size_t *len);

const char *gguf_vtype_name(gguf_vtype_t t);

#endif
