/* gguf_writer.c - in-memory GGUF image builder for tests (see gguf_writer.h). */
#include "gguf_writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gw_init(gw_t *w) { *w = (gw_t){0}; }

void gw_free(gw_t *w) {
    if (!w) return;
    free(w->buf);
    *w = (gw_t){0};
}

/* Makes room for n more bytes and returns where they go. */
static uint8_t *gw_grow(gw_t *w, size_t n) {
    if (n > SIZE_MAX - w->len) abort();
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n) cap = cap > SIZE_MAX / 2 ? w->len + n : cap * 2;
        uint8_t *b = realloc(w->buf, cap);
        if (!b) abort();
        w->buf = b;
        w->cap = cap;
    }
    uint8_t *p = w->buf + w->len;
    w->len += n;
    return p;
}

static void put_le(uint8_t *p, uint64_t v, size_t n_bytes) {
    for (size_t i = 0; i < n_bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

void gw_bytes(gw_t *w, const void *p, size_t n) {
    if (n) memcpy(gw_grow(w, n), p, n);
}

void gw_zeros(gw_t *w, size_t n) {
    if (n) memset(gw_grow(w, n), 0, n);
}

void gw_u8(gw_t *w, uint8_t v) { *gw_grow(w, 1) = v; }
void gw_u16(gw_t *w, uint16_t v) { put_le(gw_grow(w, 2), v, 2); }
void gw_u32(gw_t *w, uint32_t v) { put_le(gw_grow(w, 4), v, 4); }
void gw_u64(gw_t *w, uint64_t v) { put_le(gw_grow(w, 8), v, 8); }

void gw_f32(gw_t *w, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    gw_u32(w, u);
}

void gw_f64(gw_t *w, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    gw_u64(w, u);
}

void gw_strn(gw_t *w, const void *s, size_t n) {
    gw_u64(w, n);
    gw_bytes(w, s, n);
}

void gw_str(gw_t *w, const char *s) { gw_strn(w, s, strlen(s)); }

void gw_pad(gw_t *w, size_t align) {
    if (align && w->len % align) gw_zeros(w, align - w->len % align);
}

void gw_put_u32(gw_t *w, size_t at, uint32_t v) {
    if (at > w->len || w->len - at < 4) abort();
    put_le(w->buf + at, v, 4);
}

void gw_put_u64(gw_t *w, size_t at, uint64_t v) {
    if (at > w->len || w->len - at < 8) abort();
    put_le(w->buf + at, v, 8);
}

void gw_header(gw_t *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    gw_bytes(w, "GGUF", 4);
    gw_u32(w, version);
    gw_u64(w, n_tensors);
    gw_u64(w, n_kv);
}

void gw_key(gw_t *w, const char *key, uint32_t vtype) {
    gw_str(w, key);
    gw_u32(w, vtype);
}

void gw_kv_u8(gw_t *w, const char *key, uint8_t v) { gw_key(w, key, GGUF_VT_UINT8); gw_u8(w, v); }
void gw_kv_i8(gw_t *w, const char *key, int8_t v) { gw_key(w, key, GGUF_VT_INT8); gw_u8(w, (uint8_t)v); }
void gw_kv_u16(gw_t *w, const char *key, uint16_t v) { gw_key(w, key, GGUF_VT_UINT16); gw_u16(w, v); }
void gw_kv_i16(gw_t *w, const char *key, int16_t v) { gw_key(w, key, GGUF_VT_INT16); gw_u16(w, (uint16_t)v); }
void gw_kv_u32(gw_t *w, const char *key, uint32_t v) { gw_key(w, key, GGUF_VT_UINT32); gw_u32(w, v); }
void gw_kv_i32(gw_t *w, const char *key, int32_t v) { gw_key(w, key, GGUF_VT_INT32); gw_u32(w, (uint32_t)v); }
void gw_kv_u64(gw_t *w, const char *key, uint64_t v) { gw_key(w, key, GGUF_VT_UINT64); gw_u64(w, v); }
void gw_kv_i64(gw_t *w, const char *key, int64_t v) { gw_key(w, key, GGUF_VT_INT64); gw_u64(w, (uint64_t)v); }
void gw_kv_f32(gw_t *w, const char *key, float v) { gw_key(w, key, GGUF_VT_FLOAT32); gw_f32(w, v); }
void gw_kv_f64(gw_t *w, const char *key, double v) { gw_key(w, key, GGUF_VT_FLOAT64); gw_f64(w, v); }
void gw_kv_bool(gw_t *w, const char *key, uint8_t v) { gw_key(w, key, GGUF_VT_BOOL); gw_u8(w, v); }
void gw_kv_str(gw_t *w, const char *key, const char *v) { gw_key(w, key, GGUF_VT_STRING); gw_str(w, v); }

void gw_kv_arr(gw_t *w, const char *key, uint32_t el_type, uint64_t n) {
    gw_key(w, key, GGUF_VT_ARRAY);
    gw_u32(w, el_type);
    gw_u64(w, n);
}

void gw_tensor(gw_t *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
               uint64_t offset) {
    gw_str(w, name);
    gw_u32(w, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) gw_u64(w, ne[d]);
    gw_u32(w, type);
    gw_u64(w, offset);
}

uint8_t *gw_dup(const gw_t *w) {
    uint8_t *p = malloc(w->len ? w->len : 1);
    if (!p) abort();
    if (w->len) memcpy(p, w->buf, w->len);
    return p;
}

int gw_write_file(const gw_t *w, const char *path) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t n = w->len ? fwrite(w->buf, 1, w->len, fp) : 0;
    int rc = fclose(fp);
    return n == w->len && rc == 0 ? 0 : -1;
}
