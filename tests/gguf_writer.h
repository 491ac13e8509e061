/* gguf_writer.h - builds GGUF images in memory for tests, well-formed or not.
 *
 * A gw_t is a growable byte buffer with little-endian emitters for every
 * piece of the format (see the layout table in src/gguf/gguf.h). Nothing is
 * validated: the caller chooses the counts, lengths, types and offsets, so
 * a test can write exactly the malformed bytes it means to. A typical file:
 *
 *   gw_t w;
 *   gw_init(&w);
 *   gw_header(&w, 3, 1, 1);                       // version, n_tensors, n_kv
 *   gw_kv_str(&w, "general.architecture", "llama");
 *   gw_tensor(&w, "w", 1, (uint64_t[]){8}, PV_TYPE_F32, 0);
 *   gw_pad(&w, 32);
 *   gw_zeros(&w, 8 * 4);
 *   ... gw_dup(&w) ... gw_free(&w);
 *
 * Out of memory aborts: this is test scaffolding, not library code. */
#ifndef PV_TEST_GGUF_WRITER_H
#define PV_TEST_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"

typedef struct {
    uint8_t *buf; /* owned, [cap]; the image is buf[0 .. len) */
    size_t len;   /* bytes written so far */
    size_t cap;   /* bytes allocated */
} gw_t;

void gw_init(gw_t *w);
void gw_free(gw_t *w); /* accepts NULL; leaves w empty and reusable */

/* Raw emitters, appended at the end. */
void gw_bytes(gw_t *w, const void *p, size_t n);
void gw_zeros(gw_t *w, size_t n);
void gw_u8(gw_t *w, uint8_t v);
void gw_u16(gw_t *w, uint16_t v);
void gw_u32(gw_t *w, uint32_t v);
void gw_u64(gw_t *w, uint64_t v);
void gw_f32(gw_t *w, float v);
void gw_f64(gw_t *w, double v);
void gw_strn(gw_t *w, const void *s, size_t n); /* string := u64 n, bytes */
void gw_str(gw_t *w, const char *s);            /* nul-terminated s, without the nul */
void gw_pad(gw_t *w, size_t align);              /* zero bytes up to a multiple of align */

/* Overwrites bytes already written (at + size must be <= len). */
void gw_put_u32(gw_t *w, size_t at, uint32_t v);
void gw_put_u64(gw_t *w, size_t at, uint64_t v);

/* Format pieces. */
void gw_header(gw_t *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv);
void gw_key(gw_t *w, const char *key, uint32_t vtype); /* key string + u32 value type */
void gw_kv_u8(gw_t *w, const char *key, uint8_t v);
void gw_kv_i8(gw_t *w, const char *key, int8_t v);
void gw_kv_u16(gw_t *w, const char *key, uint16_t v);
void gw_kv_i16(gw_t *w, const char *key, int16_t v);
void gw_kv_u32(gw_t *w, const char *key, uint32_t v);
void gw_kv_i32(gw_t *w, const char *key, int32_t v);
void gw_kv_u64(gw_t *w, const char *key, uint64_t v);
void gw_kv_i64(gw_t *w, const char *key, int64_t v);
void gw_kv_f32(gw_t *w, const char *key, float v);
void gw_kv_f64(gw_t *w, const char *key, double v);
void gw_kv_bool(gw_t *w, const char *key, uint8_t v); /* the raw byte, so 2 can be written */
void gw_kv_str(gw_t *w, const char *key, const char *v);
/* Array header only (key, ARRAY, element type, count); the caller appends
 * the elements with the raw emitters (gw_u32, gw_str, ...). */
void gw_kv_arr(gw_t *w, const char *key, uint32_t el_type, uint64_t n);

/* Tensor info: name, n_dims, ne[n_dims], type, offset. */
void gw_tensor(gw_t *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
               uint64_t offset);

/* An exactly-sized heap copy of the image (at least 1 byte is allocated, so
 * that an empty image is still a valid pointer); caller frees. Reading one
 * byte past len is caught by AddressSanitizer, which the spare capacity of
 * buf would hide. */
uint8_t *gw_dup(const gw_t *w);

/* Writes the image to path; 0 on success, -1 on failure. */
int gw_write_file(const gw_t *w, const char *path);

#endif
