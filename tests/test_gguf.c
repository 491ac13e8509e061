/* test_gguf.c - the spec of the GGUF reader, against real files and hostile ones.
 *
 * Real files come from the shared folder (skipped when it is absent). Hostile
 * files are built byte by byte with tests/gguf_writer.h and opened from an
 * exactly-sized heap copy, so that AddressSanitizer catches any read one byte
 * past the image. Every refusal must return the documented code, leave *out
 * NULL, name the file in its message and leak nothing. Every success is
 * walked in full by check_invariants(), which touches every view the reader
 * hands out. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "gguf_writer.h"
#include "suites.h"

#define TEST_TIMEOUT_S 30
#define HOSTILE_NAME "hostile.gguf"

/* ck_assert marks a point on every pass (a write to the runner's pipe);
 * loops that check millions of things use this instead, which costs
 * nothing until it fails. */
#define CHECK(cond) \
    do { \
        if (!(cond)) ck_abort_msg("check failed: %s", #cond); \
    } while (0)
#define CHECK_MSG(cond, ...) \
    do { \
        if (!(cond)) ck_abort_msg(__VA_ARGS__); \
    } while (0)

// ---------------------------------------------------------------------------
// helpers

/* Bytes per scalar of each value type (0: strings and arrays). */
static const size_t vt_size[GGUF_VT_COUNT] = {
    [GGUF_VT_UINT8] = 1, [GGUF_VT_INT8] = 1,   [GGUF_VT_UINT16] = 2,  [GGUF_VT_INT16] = 2,
    [GGUF_VT_UINT32] = 4, [GGUF_VT_INT32] = 4, [GGUF_VT_FLOAT32] = 4, [GGUF_VT_BOOL] = 1,
    [GGUF_VT_UINT64] = 8, [GGUF_VT_INT64] = 8, [GGUF_VT_FLOAT64] = 8,
};

static uint64_t rd_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* 1 if [p, p + n) lies inside the file image. */
static int in_file(const gguf_file_t *f, const void *p, size_t n) {
    const uint8_t *q = p;
    return q >= f->base && q <= f->base + f->size && n <= (size_t)(f->base + f->size - q);
}

/* Walks the string array kv to its end, checking every element lies in the
 * file; returns the position after the last element. */
static size_t walk_strs(const gguf_file_t *f, const gguf_kv_t *kv) {
    size_t pos = 0;
    for (uint64_t i = 0; i < kv->n; i++) {
        size_t len = 0;
        const char *s = gguf_arr_str_next(kv, &pos, &len);
        CHECK_MSG(in_file(f, s, len), "%s[%llu] lies outside the file", kv->key, (unsigned long long)i);
    }
    CHECK(in_file(f, kv->data, pos));
    return pos;
}

/* A pointer that *out starts as: every open must reset it, to NULL on failure. */
static gguf_file_t g_poison;
#define POISON (&g_poison)

static volatile uint8_t g_sink; /* keeps the touches in check_invariants */

/* Everything the reader promises about an opened file, checked by touching
 * every view: keys, values, array elements, tensor infos and data. */
static void check_invariants(const gguf_file_t *f) {
    CHECK(f->version == 2 || f->version == 3);
    CHECK(f->alignment > 0 && (f->alignment & (f->alignment - 1)) == 0);
    CHECK(f->data_offset % f->alignment == 0);
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv_t *kv = &f->kv[i];
        CHECK(kv->key && kv->key[0]);
        CHECK(gguf_find_kv(f, kv->key) == kv); /* keys are unique */
        CHECK(kv->type < GGUF_VT_COUNT);
        if (kv->type == GGUF_VT_STRING) {
            CHECK(kv->n == 1);
            CHECK(in_file(f, kv->data, kv->str_len));
            CHECK(kv->str[kv->str_len] == 0);
            CHECK(memcmp(kv->str, kv->data, kv->str_len) == 0);
            CHECK(gguf_get_str(f, kv->key) == kv->str);
        } else if (kv->type == GGUF_VT_ARRAY) {
            CHECK(kv->el_type < GGUF_VT_COUNT);
            CHECK(kv->el_type != GGUF_VT_ARRAY);
            if (kv->el_type == GGUF_VT_STRING) {
                walk_strs(f, kv);
            } else {
                CHECK(kv->n <= f->size / vt_size[kv->el_type]);
                CHECK(in_file(f, kv->data, kv->n * vt_size[kv->el_type]));
                if (kv->n > 0 && kv->el_type != GGUF_VT_BOOL) {
                    (void)gguf_arr_int(kv, 0);
                    (void)gguf_arr_float(kv, kv->n - 1);
                }
            }
        } else {
            CHECK(kv->n == 1);
            CHECK(in_file(f, kv->data, vt_size[kv->type]));
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor_t *t = &f->tensors[i];
        CHECK(t->name && t->name[0] && strlen(t->name) < GGUF_MAX_NAME);
        CHECK(gguf_find_tensor(f, t->name) == t); /* names are unique */
        CHECK(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS);
        int64_t n = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
            CHECK(t->ne[d] >= 0);
            if (d >= t->n_dims) CHECK(t->ne[d] == 1);
            n *= t->ne[d];
        }
        CHECK(t->n_elems == n);
        CHECK(pv_type_layout(t->type) != NULL);
        size_t row = pv_type_row_size(t->type, t->ne[0]);
        CHECK(t->n_bytes == row * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]));
        CHECK(t->offset % f->alignment == 0);
        CHECK(t->data == f->base + f->data_offset + t->offset);
        CHECK(in_file(f, t->data, t->n_bytes));
        if (t->n_bytes) {
            g_sink ^= ((const uint8_t *)t->data)[0];
            g_sink ^= ((const uint8_t *)t->data)[t->n_bytes - 1];
        }
        for (uint64_t j = 0; j < i; j++) { /* no two tensors share a byte */
            const gguf_tensor_t *u = &f->tensors[j];
            CHECK(t->offset + t->n_bytes <= u->offset || u->offset + u->n_bytes <= t->offset);
        }
    }
}

/* A file image opened from an exactly-sized copy of a writer's bytes. */
typedef struct {
    uint8_t *img;          /* owned copy of the image */
    size_t size;           /* its length */
    gguf_file_t *f;        /* NULL unless rc == 0 */
    int rc;                /* gguf_open_buffer's result */
    char err[PV_ERRLEN];   /* its message */
} img_t;

static int img_open(img_t *o, const gw_t *w, const char *name) {
    memset(o, 0, sizeof *o);
    o->img = gw_dup(w);
    o->size = w->len;
    o->f = POISON;
    o->rc = gguf_open_buffer(o->img, o->size, name, &o->f, o->err, sizeof o->err);
    if (o->rc == 0) {
        ck_assert_ptr_nonnull(o->f);
        check_invariants(o->f);
    } else {
        ck_assert_ptr_null(o->f);
    }
    return o->rc;
}

static void img_close(img_t *o) {
    gguf_close(o->f);
    free(o->img);
    o->f = NULL;
    o->img = NULL;
}

/* Opens w, which must be refused with code and a message that names the
 * file and holds every needle. */
#define EXPECT_FAIL(w, code, ...) expect_fail(__LINE__, (w), (code), (const char *const[]){__VA_ARGS__, NULL})
static void expect_fail(int line, const gw_t *w, int code, const char *const *needles) {
    img_t o;
    img_open(&o, w, HOSTILE_NAME);
    ck_assert_msg(o.rc == code, "line %d: rc %d (%s), expected %d (%s); message: %s", line, o.rc,
                  pv_strerror(o.rc), code, pv_strerror(code), o.err);
    ck_assert_msg(strstr(o.err, HOSTILE_NAME) != NULL, "line %d: message lacks the file name: %s", line, o.err);
    for (; *needles; needles++)
        ck_assert_msg(strstr(o.err, *needles) != NULL, "line %d: message lacks '%s': %s", line, *needles, o.err);
    img_close(&o);
}

/* Opens w, which must succeed; the caller closes. */
#define EXPECT_OK(o, w) expect_ok(__LINE__, (o), (w))
static void expect_ok(int line, img_t *o, const gw_t *w) {
    img_open(o, w, HOSTILE_NAME);
    ck_assert_msg(o->rc == 0, "line %d: rc %d (%s): %s", line, o->rc, pv_strerror(o->rc), o->err);
}

/* The start of a file with one key/value and one tensor: header and kv are
 * written; the caller writes the tensor info (often a broken one) and then
 * calls tail_data. */
static void head_one_tensor(gw_t *w, uint32_t version) {
    gw_init(w);
    gw_header(w, version, 1, 1);
    gw_kv_str(w, "general.architecture", "llama");
}

/* Finishes a file whose infos are written: pads and appends n_data bytes of
 * a counting pattern. */
static void tail_data(gw_t *w, size_t align, size_t n_data) {
    gw_pad(w, align);
    for (size_t i = 0; i < n_data; i++) gw_u8(w, (uint8_t)(i * 7 + 1));
}

/* A minimal valid file: one kv, one F32 tensor of 8 elements. */
static void build_min(gw_t *w, uint32_t version) {
    head_one_tensor(w, version);
    gw_tensor(w, "w", 1, (const uint64_t[]){8}, PV_TYPE_F32, 0);
    tail_data(w, 32, 8 * 4);
}

/* A file exercising every value type, array element type and a few tensor
 * types, with general.alignment 64. Used by the getter and fuzz tests. */
static void build_rich(gw_t *w, uint32_t version) {
    uint64_t n_kv = 0;
    gw_init(w);
    gw_header(w, version, 3, 0); /* n_kv patched below */
#define KV(call) (call, n_kv++) /* writes one key/value and counts it */
    KV(gw_kv_str(w, "general.architecture", "llama"));
    KV(gw_kv_u32(w, "general.alignment", 64));
    KV(gw_kv_u8(w, "v.u8", 200));
    KV(gw_kv_i8(w, "v.i8", -5));
    KV(gw_kv_i8(w, "v.i8p", 5));
    KV(gw_kv_u16(w, "v.u16", 65535));
    KV(gw_kv_i16(w, "v.i16", -1));
    KV(gw_kv_u32(w, "v.u32", UINT32_MAX));
    KV(gw_kv_i32(w, "v.i32", -1));
    KV(gw_kv_i32(w, "v.i32p", 7));
    KV(gw_kv_u64(w, "v.u64", (uint64_t)1 << 32));
    KV(gw_kv_u64(w, "v.u64max32", UINT32_MAX));
    KV(gw_kv_u64(w, "v.u64big", ((uint64_t)1 << 63) + 1));
    KV(gw_kv_i64(w, "v.i64", -1));
    KV(gw_kv_i64(w, "v.i64p", 123));
    KV(gw_kv_f32(w, "v.f32", 1.5f));
    KV(gw_kv_f64(w, "v.f64", 2.25));
    KV(gw_kv_bool(w, "v.true", 1));
    KV(gw_kv_bool(w, "v.false", 0));
    KV(gw_kv_bool(w, "v.bool2", 2));
    KV(gw_kv_str(w, "v.str", "hello"));
    KV((gw_key(w, "v.strnul", GGUF_VT_STRING), gw_strn(w, "a\0b", 3)));
    KV(gw_kv_str(w, "v.empty", ""));
    KV((gw_kv_arr(w, "a.u8", GGUF_VT_UINT8, 2), gw_u8(w, 0), gw_u8(w, 255)));
    KV((gw_kv_arr(w, "a.i8", GGUF_VT_INT8, 2), gw_u8(w, 0x80), gw_u8(w, 0x7f)));
    KV((gw_kv_arr(w, "a.u16", GGUF_VT_UINT16, 1), gw_u16(w, 65535)));
    KV((gw_kv_arr(w, "a.i16", GGUF_VT_INT16, 2), gw_u16(w, 0x8000), gw_u16(w, 0x7fff)));
    KV((gw_kv_arr(w, "a.u32", GGUF_VT_UINT32, 1), gw_u32(w, UINT32_MAX)));
    KV((gw_kv_arr(w, "a.i32", GGUF_VT_INT32, 2), gw_u32(w, 0x80000000u), gw_u32(w, 2)));
    KV((gw_kv_arr(w, "a.u64", GGUF_VT_UINT64, 1), gw_u64(w, INT64_MAX)));
    KV((gw_kv_arr(w, "a.i64", GGUF_VT_INT64, 2), gw_u64(w, (uint64_t)INT64_MIN), gw_u64(w, UINT64_MAX)));
    KV((gw_kv_arr(w, "a.f32", GGUF_VT_FLOAT32, 2), gw_f32(w, 0.5f), gw_f32(w, -2.0f)));
    KV((gw_kv_arr(w, "a.f64", GGUF_VT_FLOAT64, 1), gw_f64(w, 1e300)));
    KV((gw_kv_arr(w, "a.bool", GGUF_VT_BOOL, 2), gw_u8(w, 1), gw_u8(w, 0)));
    KV((gw_kv_arr(w, "a.str", GGUF_VT_STRING, 4), gw_str(w, "x"), gw_str(w, ""), gw_strn(w, "a\0b", 3),
        gw_str(w, "h\xc3\xa9llo")));
    KV(gw_kv_arr(w, "a.empty", GGUF_VT_INT32, 0));
    KV(gw_kv_arr(w, "a.strempty", GGUF_VT_STRING, 0));
#undef KV
    gw_put_u64(w, 16, n_kv);
    gw_tensor(w, "t.f32", 2, (const uint64_t[]){4, 3}, PV_TYPE_F32, 0);           /* 48 bytes */
    gw_tensor(w, "t.q4_0", 1, (const uint64_t[]){64}, PV_TYPE_Q4_0, 64);          /* 36 bytes */
    gw_tensor(w, "t.f16", 4, (const uint64_t[]){2, 2, 2, 2}, PV_TYPE_F16, 128);  /* 32 bytes */
    gw_pad(w, 64);
    for (size_t i = 0; i < 160; i++) gw_u8(w, (uint8_t)(i ^ 0x5a));
}

/* splitmix64: a fixed-seed generator so fuzz failures reproduce. */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A fresh temp file path (created empty); tries the cache folder, then /tmp. */
static void tmp_path(char *buf, size_t len) {
    const char *dirs[] = {tu_cache_dir(), "/tmp"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(buf, len, "%s/pv-gguf-XXXXXX", dirs[i]);
        int fd = mkstemp(buf);
        if (fd >= 0) {
            close(fd);
            return;
        }
    }
    ck_abort_msg("cannot create a temp file: %s", strerror(errno));
}

/* Shared model path, or NULL (and the test passes as skipped). */
#define SHARED_OR_SKIP(buf, rel)                                  \
    const char *path_ = tu_shared((buf), sizeof(buf), (rel));    \
    if (!path_) return

// ---------------------------------------------------------------------------
// good files

/* Opens path with gguf_open, which must succeed; checks the invariants. */
static gguf_file_t *open_ok(const char *path) {
    char err[PV_ERRLEN] = "";
    gguf_file_t *f = NULL;
    int rc = gguf_open(path, &f, err, sizeof err);
    ck_assert_msg(rc == 0, "%s: rc %d: %s", path, rc, err);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(f->mapped, 1);
    ck_assert_str_eq(f->path, path);
    check_invariants(f);
    return f;
}

/* The offset just past the last tensor's data. */
static size_t data_end(const gguf_file_t *f) {
    size_t end = f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        size_t e = f->data_offset + f->tensors[i].offset + f->tensors[i].n_bytes;
        if (e > end) end = e;
    }
    return end;
}

static void check_tensor(const gguf_file_t *f, const char *name, uint32_t n_dims, int64_t ne0, int64_t ne1,
                         pv_type_t type, uint64_t offset, size_t n_bytes) {
    const gguf_tensor_t *t = gguf_find_tensor(f, name);
    ck_assert_msg(t != NULL, "tensor %s is missing", name);
    ck_assert_uint_eq(t->n_dims, n_dims);
    ck_assert_int_eq(t->ne[0], ne0);
    ck_assert_int_eq(t->ne[1], ne1);
    ck_assert_int_eq(t->ne[2], 1);
    ck_assert_int_eq(t->ne[3], 1);
    ck_assert_int_eq(t->n_elems, ne0 * ne1);
    ck_assert_int_eq(t->type, type);
    ck_assert_uint_eq(t->offset, offset);
    ck_assert_uint_eq(t->n_bytes, n_bytes);
    ck_assert_ptr_eq(t->data, f->base + f->data_offset + offset);
}

START_TEST(test_stories260k) {
    char buf[4096];
    SHARED_OR_SKIP(buf, "models/stories260K.gguf");
    gguf_file_t *f = open_ok(path_);
    ck_assert_uint_eq(f->version, 3);
    ck_assert_uint_eq(f->size, 1185376);
    ck_assert_uint_eq(f->n_kv, 19);
    ck_assert_uint_eq(f->n_tensors, 48);
    ck_assert_uint_eq(f->alignment, GGUF_DEFAULT_ALIGNMENT);
    ck_assert_uint_eq(f->data_offset, 14176); /* info ends at 14152, padded to 32 */
    ck_assert_uint_eq(data_end(f), f->size);

    ck_assert_str_eq(gguf_get_str(f, "general.architecture"), "llama");
    ck_assert_str_eq(gguf_get_str(f, "tokenizer.ggml.model"), "llama");
    uint32_t u = 0;
    ck_assert_int_eq(gguf_get_u32(f, "llama.embedding_length", &u), 0);
    ck_assert_uint_eq(u, 64);
    ck_assert_int_eq(gguf_get_u32(f, "llama.feed_forward_length", &u), 0);
    ck_assert_uint_eq(u, 172);
    ck_assert_int_eq(gguf_get_u32(f, "llama.block_count", &u), 0);
    ck_assert_uint_eq(u, 5);
    ck_assert_int_eq(gguf_get_u32(f, "llama.attention.head_count_kv", &u), 0);
    ck_assert_uint_eq(u, 4);
    ck_assert_int_eq(gguf_get_u32(f, "tokenizer.ggml.seperator_token_id", &u), 0);
    ck_assert_uint_eq(u, UINT32_MAX);
    float eps = 0;
    ck_assert_int_eq(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps), 0);
    ck_assert_float_eq_tol(eps, 1e-5f, 1e-10f);
    float fdim = 0; /* u32 -> f32 */
    ck_assert_int_eq(gguf_get_f32(f, "llama.embedding_length", &fdim), 0);
    ck_assert_float_eq(fdim, 64.0f);

    /* wrong types and absent keys */
    u = 1234;
    ck_assert_int_eq(gguf_get_u32(f, "general.architecture", &u), PV_ECORRUPT);
    ck_assert_int_eq(gguf_get_u32(f, "tokenizer.ggml.tokens", &u), PV_ECORRUPT);
    ck_assert_int_eq(gguf_get_u32(f, "llama.attention.layer_norm_rms_epsilon", &u), PV_ECORRUPT);
    ck_assert_int_eq(gguf_get_u32(f, "llama.no_such_key", &u), PV_ENOTFOUND);
    ck_assert_uint_eq(u, 1234); /* untouched on failure */
    int b = 7;
    ck_assert_int_eq(gguf_get_bool(f, "llama.block_count", &b), PV_ECORRUPT);
    ck_assert_int_eq(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b), PV_ENOTFOUND);
    ck_assert_int_eq(b, 7);
    ck_assert_int_eq(gguf_get_f32(f, "general.name", &eps), PV_ECORRUPT);
    ck_assert_ptr_null(gguf_get_str(f, "llama.block_count"));
    ck_assert_ptr_null(gguf_get_str(f, "tokenizer.ggml.tokens"));
    ck_assert_ptr_null(gguf_get_str(f, "no.such.key"));
    ck_assert_ptr_null(gguf_find_kv(f, "llama"));
    ck_assert_ptr_null(gguf_find_kv(f, ""));
    ck_assert_ptr_null(gguf_find_tensor(f, "token_embd"));

    /* the tokenizer arrays */
    const gguf_kv_t *tok = gguf_find_kv(f, "tokenizer.ggml.tokens");
    ck_assert_ptr_nonnull(tok);
    ck_assert_int_eq(tok->type, GGUF_VT_ARRAY);
    ck_assert_int_eq(tok->el_type, GGUF_VT_STRING);
    ck_assert_uint_eq(tok->n, 512);
    const char *want[] = {"<unk>", "<s>", "</s>"};
    size_t pos = 0, len = 0;
    for (int i = 0; i < 3; i++) {
        const char *s = gguf_arr_str_next(tok, &pos, &len);
        ck_assert_uint_eq(len, strlen(want[i]));
        ck_assert(memcmp(s, want[i], len) == 0);
    }
    /* the walk ends where the next key/value (the scores) begins */
    size_t end = walk_strs(f, tok);
    const uint8_t *next = tok->data + end;
    ck_assert_uint_eq(rd_le64(next), strlen("tokenizer.ggml.scores"));
    ck_assert(memcmp(next + 8, "tokenizer.ggml.scores", 21) == 0);
    const gguf_kv_t *scores = gguf_find_kv(f, "tokenizer.ggml.scores");
    ck_assert_int_eq(scores->el_type, GGUF_VT_FLOAT32);
    ck_assert_uint_eq(scores->n, 512);
    ck_assert_double_eq(gguf_arr_float(scores, 0), 0.0);
    const gguf_kv_t *types = gguf_find_kv(f, "tokenizer.ggml.token_type");
    ck_assert_int_eq(types->el_type, GGUF_VT_INT32);
    ck_assert_uint_eq(types->n, 512);
    ck_assert_int_eq(gguf_arr_int(types, 0), 2); /* unknown */
    ck_assert_int_eq(gguf_arr_int(types, 1), 3); /* control */
    ck_assert_int_eq(gguf_arr_int(types, 2), 3);
    ck_assert_double_eq(gguf_arr_float(types, 1), 3.0);

    /* tensors, with data views checked against the file's bytes */
    check_tensor(f, "token_embd.weight", 2, 64, 512, PV_TYPE_F32, 0, 64 * 512 * 4);
    check_tensor(f, "output_norm.weight", 1, 64, 1, PV_TYPE_F32, 131072, 64 * 4);
    check_tensor(f, "output.weight", 2, 64, 512, PV_TYPE_F32, 131328, 64 * 512 * 4);
    check_tensor(f, "blk.0.attn_q.weight", 2, 64, 64, PV_TYPE_F32, 262400, 64 * 64 * 4);
    check_tensor(f, "blk.4.ffn_norm.weight", 1, 64, 1, PV_TYPE_F32, 1170944, 64 * 4);
    ck_assert_str_eq(f->tensors[0].name, "token_embd.weight"); /* file order is kept */
    size_t n_file = 0;
    char *bytes = tu_read_file(path_, &n_file);
    ck_assert_ptr_nonnull(bytes);
    ck_assert_uint_eq(n_file, f->size);
    const gguf_tensor_t *t = gguf_find_tensor(f, "blk.4.ffn_norm.weight");
    ck_assert(memcmp(t->data, bytes + 14176 + 1170944, t->n_bytes) == 0);
    t = gguf_find_tensor(f, "token_embd.weight");
    ck_assert(memcmp(t->data, bytes + 14176, t->n_bytes) == 0);

    /* the same image through gguf_open_buffer parses identically */
    char err[PV_ERRLEN];
    gguf_file_t *g = NULL;
    ck_assert_int_eq(gguf_open_buffer(bytes, n_file, "copy", &g, err, sizeof err), 0);
    ck_assert_int_eq(g->mapped, 0);
    ck_assert_ptr_eq(g->base, bytes);
    ck_assert_uint_eq(g->n_kv, f->n_kv);
    ck_assert_uint_eq(g->n_tensors, f->n_tensors);
    ck_assert_uint_eq(g->data_offset, f->data_offset);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        ck_assert_str_eq(g->tensors[i].name, f->tensors[i].name);
        ck_assert_uint_eq(g->tensors[i].offset, f->tensors[i].offset);
        ck_assert_uint_eq(g->tensors[i].n_bytes, f->tensors[i].n_bytes);
        ck_assert_uint_eq((size_t)((const uint8_t *)g->tensors[i].data - g->base),
                          (size_t)((const uint8_t *)f->tensors[i].data - f->base));
    }
    for (uint64_t i = 0; i < f->n_kv; i++) ck_assert_str_eq(g->kv[i].key, f->kv[i].key);
    gguf_close(g);
    free(bytes);
    gguf_close(f);
}
END_TEST

START_TEST(test_stories260k_q8_0) {
    char buf[4096];
    SHARED_OR_SKIP(buf, "models/stories260K-q8_0.gguf");
    gguf_file_t *f = open_ok(path_);
    ck_assert_uint_eq(f->version, 3);
    ck_assert_uint_eq(f->n_kv, 21);
    ck_assert_uint_eq(f->n_tensors, 48);
    ck_assert_uint_eq(f->data_offset, 14240);
    ck_assert_uint_eq(data_end(f), f->size - 16); /* llama-quantize pads the last tensor */
    ck_assert_str_eq(gguf_get_str(f, "general.architecture"), "llama");
    uint32_t u = 0;
    ck_assert_int_eq(gguf_get_u32(f, "llama.embedding_length", &u), 0);
    ck_assert_uint_eq(u, 64);
    ck_assert_int_eq(gguf_get_u32(f, "general.file_type", &u), 0);
    ck_assert_uint_eq(u, 7);
    ck_assert_uint_eq(gguf_find_kv(f, "tokenizer.ggml.tokens")->n, 512);
    check_tensor(f, "output.weight", 2, 64, 512, PV_TYPE_Q8_0, 0, 64 / 32 * 34 * 512);
    check_tensor(f, "output_norm.weight", 1, 64, 1, PV_TYPE_F32, 34816, 256);
    check_tensor(f, "blk.0.attn_k.weight", 2, 64, 32, PV_TYPE_Q8_0, 69888, 2 * 34 * 32);
    /* rows of 172 cannot be Q8_0: the quantizer left ffn_down in F16 */
    check_tensor(f, "blk.0.ffn_down.weight", 2, 172, 64, PV_TYPE_F16, 83200, 172 * 64 * 2);
    check_tensor(f, "blk.4.ffn_up.weight", 2, 64, 172, PV_TYPE_Q8_0, 353216, 2 * 34 * 172);
    gguf_close(f);
}
END_TEST

START_TEST(test_tinyllama_q4_0) {
    char buf[4096];
    SHARED_OR_SKIP(buf, "models/tinyllama-v0-q4_0.gguf");
    gguf_file_t *f = open_ok(path_);
    ck_assert_uint_eq(f->version, 3);
    ck_assert_uint_eq(f->n_kv, 19);
    ck_assert_uint_eq(f->n_tensors, 75);
    ck_assert_uint_eq(f->data_offset, 762688);
    ck_assert_uint_eq(data_end(f), f->size);
    ck_assert_str_eq(gguf_get_str(f, "general.architecture"), "llama");
    ck_assert_str_eq(gguf_get_str(f, "general.name"), "TinyLLama-v0");
    uint32_t u = 0;
    ck_assert_int_eq(gguf_get_u32(f, "llama.block_count", &u), 0);
    ck_assert_uint_eq(u, 8);
    ck_assert_int_eq(gguf_get_u32(f, "llama.attention.head_count", &u), 0);
    ck_assert_uint_eq(u, 16);
    float eps = 0;
    ck_assert_int_eq(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps), 0);
    ck_assert_float_eq_tol(eps, 1e-6f, 1e-11f);
    const gguf_kv_t *tok = gguf_find_kv(f, "tokenizer.ggml.tokens");
    ck_assert_uint_eq(tok->n, 32000);
    walk_strs(f, tok);
    check_tensor(f, "token_embd.weight", 2, 64, 32000, PV_TYPE_Q4_0, 0, 2 * 18 * 32000);
    check_tensor(f, "output_norm.weight", 1, 64, 1, PV_TYPE_F32, 1152000, 256);
    check_tensor(f, "output.weight", 2, 64, 32000, PV_TYPE_Q4_0, 1152256, 2 * 18 * 32000);
    check_tensor(f, "blk.7.ffn_norm.weight", 1, 64, 1, PV_TYPE_F32, 2603008, 256);
    gguf_close(f);
}
END_TEST

START_TEST(test_llama2_tiny_f16) {
    char buf[4096];
    SHARED_OR_SKIP(buf, "models/llama-2-tiny-random-f16.gguf");
    gguf_file_t *f = open_ok(path_);
    ck_assert_uint_eq(f->version, 3);
    ck_assert_uint_eq(f->n_kv, 18);
    ck_assert_uint_eq(f->n_tensors, 12);
    ck_assert_uint_eq(f->data_offset, 724416);
    ck_assert_str_eq(gguf_get_str(f, "general.architecture"), "llama");
    ck_assert_str_eq(gguf_get_str(f, "general.name"), "LLaMA v2");
    uint32_t u = 0;
    ck_assert_int_eq(gguf_get_u32(f, "llama.embedding_length", &u), 0);
    ck_assert_uint_eq(u, 8);
    ck_assert_int_eq(gguf_get_u32(f, "llama.context_length", &u), 0);
    ck_assert_uint_eq(u, 4096);
    const gguf_kv_t *tok = gguf_find_kv(f, "tokenizer.ggml.tokens");
    ck_assert_uint_eq(tok->n, 32000);
    ck_assert_uint_eq(gguf_find_kv(f, "tokenizer.ggml.scores")->n, 32000);
    check_tensor(f, "token_embd.weight", 2, 8, 32000, PV_TYPE_F16, 0, 8 * 32000 * 2);
    check_tensor(f, "blk.0.attn_q.weight", 2, 8, 8, PV_TYPE_F16, 512000, 128);
    check_tensor(f, "output.weight", 2, 8, 32000, PV_TYPE_F16, 514144, 8 * 32000 * 2);
    gguf_close(f);
}
END_TEST

static const struct {
    const char *file;
    const char *arch;
    const char *model;   /* tokenizer.ggml.model */
    uint64_t n_tokens;
    uint64_t n_kv;
    uint64_t n_merges;   /* 0: no merges key */
    int add_bos;         /* -1: key absent */
} vocab_files[] = {
    {"ggml-vocab-bert-bge.gguf", "bert", "bert", 30522, 20, 0, -1},
    {"ggml-vocab-deepseek-coder.gguf", "llama", "gpt2", 32256, 25, 31757, 1},
    {"ggml-vocab-deepseek-llm.gguf", "llama", "gpt2", 102400, 23, 99757, 1},
    {"ggml-vocab-falcon.gguf", "falcon", "gpt2", 65024, 18, 64784, -1},
    {"ggml-vocab-gpt-2.gguf", "gpt2", "gpt2", 50257, 16, 50000, -1},
    {"ggml-vocab-llama-bpe.gguf", "llama", "gpt2", 128256, 23, 280147, 1},
    {"ggml-vocab-llama-spm.gguf", "llama", "llama", 32000, 22, 0, 1},
    {"ggml-vocab-mpt.gguf", "mpt", "gpt2", 50432, 17, 50009, -1},
    {"ggml-vocab-phi-3.gguf", "phi3", "llama", 32064, 26, 0, 1},
    {"ggml-vocab-qwen2.gguf", "qwen2", "gpt2", 151936, 23, 151387, 0},
    {"ggml-vocab-refact.gguf", "refact", "gpt2", 49216, 18, 48891, -1},
    {"ggml-vocab-starcoder.gguf", "starcoder2", "gpt2", 49152, 19, 48872, -1},
};

START_TEST(test_vocab_files) {
    char buf[4096], rel[256];
    snprintf(rel, sizeof rel, "vocab/%s", vocab_files[_i].file);
    SHARED_OR_SKIP(buf, rel);
    gguf_file_t *f = open_ok(path_);
    ck_assert_uint_eq(f->version, 3);
    ck_assert_uint_eq(f->n_tensors, 0);
    ck_assert_uint_eq(f->n_kv, vocab_files[_i].n_kv);
    ck_assert_str_eq(gguf_get_str(f, "general.architecture"), vocab_files[_i].arch);
    ck_assert_str_eq(gguf_get_str(f, "tokenizer.ggml.model"), vocab_files[_i].model);
    const gguf_kv_t *tok = gguf_find_kv(f, "tokenizer.ggml.tokens");
    ck_assert_ptr_nonnull(tok);
    ck_assert_int_eq(tok->el_type, GGUF_VT_STRING);
    ck_assert_uint_eq(tok->n, vocab_files[_i].n_tokens);
    const gguf_kv_t *ty = gguf_find_kv(f, "tokenizer.ggml.token_type");
    ck_assert_uint_eq(ty->n, vocab_files[_i].n_tokens);
    const gguf_kv_t *merges = gguf_find_kv(f, "tokenizer.ggml.merges");
    if (vocab_files[_i].n_merges) {
        ck_assert_ptr_nonnull(merges);
        ck_assert_uint_eq(merges->n, vocab_files[_i].n_merges);
        /* every merge is "left right": two pieces joined by one space */
        size_t pos = 0, len = 0;
        for (uint64_t i = 0; i < merges->n; i++) {
            const char *s = gguf_arr_str_next(merges, &pos, &len);
            CHECK_MSG(len >= 3 && memchr(s, ' ', len) != NULL, "merge %llu", (unsigned long long)i);
        }
    } else {
        ck_assert_ptr_null(merges);
    }
    int b = -7;
    int rc = gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b);
    if (vocab_files[_i].add_bos < 0) {
        ck_assert_int_eq(rc, PV_ENOTFOUND);
    } else {
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(b, vocab_files[_i].add_bos);
    }
    gguf_close(f);
}
END_TEST

// ---------------------------------------------------------------------------
// files the reader must refuse

START_TEST(test_v1_refused) {
    char buf[4096], err[PV_ERRLEN] = "";
    SHARED_OR_SKIP(buf, "models/stories260K-gguf-v1.gguf");
    gguf_file_t *f = POISON;
    ck_assert_int_eq(gguf_open(path_, &f, err, sizeof err), PV_EUNSUPPORTED);
    ck_assert_ptr_null(f);
    ck_assert_msg(strstr(err, "version 1") && strstr(err, path_), "message: %s", err);
}
END_TEST

START_TEST(test_bad_q8_0_rows) {
    char buf[4096], err[PV_ERRLEN] = "";
    SHARED_OR_SKIP(buf, "models/bad/q8_0-rows-not-multiple-of-block.gguf");
    gguf_file_t *f = POISON;
    ck_assert_int_eq(gguf_open(path_, &f, err, sizeof err), PV_ECORRUPT);
    ck_assert_ptr_null(f);
    /* the first tensor in file order with rows of 172 elements */
    ck_assert_msg(strstr(err, "blk.0.ffn_down.weight") && strstr(err, "block") && strstr(err, "172") &&
                      strstr(err, path_) && strstr(err, "offset"),
                  "message: %s", err);
}
END_TEST

// ---------------------------------------------------------------------------
// truncation: every prefix shorter than the data a file needs is refused

/* Opens the first n bytes of file (from an exactly-sized copy) and returns rc. */
static int open_prefix(const char *file, size_t n, const char *name, char *err, size_t errlen) {
    uint8_t *img = malloc(n ? n : 1);
    CHECK(img != NULL);
    memcpy(img, file, n);
    gguf_file_t *f = POISON;
    int rc = gguf_open_buffer(img, n, name, &f, err, errlen);
    if (rc == 0) {
        check_invariants(f);
        gguf_close(f);
    } else {
        CHECK(f == NULL);
    }
    free(img);
    return rc;
}

/* Truncates the shared file rel every meta_stride bytes through the
 * metadata (header, key/values, tensor infos, padding), then every
 * data_stride bytes through the tensor data, then at each of the last 64
 * bytes of data: every prefix short of the data must be refused with
 * PV_ECORRUPT and a message naming the file and the offset. A prefix that
 * holds all the data (trailing padding may be cut) opens. */
static void truncate_file(const char *rel, size_t meta_stride, size_t data_stride) {
    char buf[4096], err[PV_ERRLEN];
    const char *path = tu_shared(buf, sizeof buf, rel);
    if (!path) return;
    gguf_file_t *f = open_ok(path);
    size_t meta_end = f->data_offset, end = data_end(f), size = f->size;
    gguf_close(f);
    size_t n_file = 0;
    char *file = tu_read_file(path, &n_file);
    ck_assert_ptr_nonnull(file);
    ck_assert_uint_eq(n_file, size);
    size_t n_tried = 0;
    for (size_t n = 0; n < end; n += n < meta_end ? meta_stride : data_stride) {
        err[0] = 0;
        int rc = open_prefix(file, n, "cut.gguf", err, sizeof err);
        CHECK_MSG(rc == PV_ECORRUPT, "prefix of %zu bytes: rc %d: %s", n, rc, err);
        CHECK_MSG(strstr(err, "cut.gguf") && strstr(err, "offset"), "prefix of %zu bytes: %s", n, err);
        n_tried++;
    }
    /* the last bytes of the data, one at a time */
    for (size_t k = 1; k <= 64 && k <= end; k++) {
        int rc = open_prefix(file, end - k, "cut.gguf", err, sizeof err);
        ck_assert_msg(rc == PV_ECORRUPT, "prefix of %zu bytes: rc %d: %s", end - k, rc, err);
    }
    /* a prefix holding all the data opens */
    ck_assert_int_eq(open_prefix(file, end, "cut.gguf", err, sizeof err), 0);
    ck_assert_uint_gt(n_tried, 0);
    free(file);
}

START_TEST(test_truncate_stories_every_meta_byte) {
    truncate_file("models/stories260K.gguf", 1, 4099);
}
END_TEST

START_TEST(test_truncate_q8_0) {
    truncate_file("models/stories260K-q8_0.gguf", 1, 997);
}
END_TEST

START_TEST(test_truncate_q4_0) {
    /* 762 KB of metadata: a prime stride keeps it quick */
    truncate_file("models/tinyllama-v0-q4_0.gguf", 1013, 10007);
}
END_TEST

START_TEST(test_truncate_vocab) {
    char buf[4096], err[PV_ERRLEN];
    const char *path = tu_shared(buf, sizeof buf, "vocab/ggml-vocab-llama-spm.gguf");
    if (!path) return;
    size_t n_file = 0;
    char *file = tu_read_file(path, &n_file);
    ck_assert_ptr_nonnull(file);
    /* no tensors: any prefix that ends inside the metadata is refused */
    for (size_t n = 0; n < n_file; n += 211) {
        int rc = open_prefix(file, n, "cut.gguf", err, sizeof err);
        CHECK_MSG(rc == PV_ECORRUPT && strstr(err, "offset"), "prefix of %zu bytes: rc %d: %s", n, rc, err);
    }
    for (size_t k = 1; k <= 16; k++)
        ck_assert_int_eq(open_prefix(file, n_file - k, "cut.gguf", err, sizeof err), PV_ECORRUPT);
    ck_assert_int_eq(open_prefix(file, n_file, "cut.gguf", err, sizeof err), 0);
    free(file);
}
END_TEST

START_TEST(test_truncate_built) {
    /* every prefix of a built file with every value type */
    gw_t w;
    build_rich(&w, 3);
    char err[PV_ERRLEN];
    for (size_t n = 0; n < w.len; n++) {
        int rc = open_prefix((const char *)w.buf, n, "cut.gguf", err, sizeof err);
        CHECK_MSG(rc == PV_ECORRUPT && strstr(err, "cut.gguf") && strstr(err, "offset"),
                      "prefix of %zu bytes: rc %d: %s", n, rc, err);
    }
    ck_assert_int_eq(open_prefix((const char *)w.buf, w.len, "cut.gguf", err, sizeof err), 0);
    gw_free(&w);
}
END_TEST

// ---------------------------------------------------------------------------
// random byte flips: a clean error or a success that keeps every promise

/* Flips 1..max_flips random bytes of img[lo, hi), opens, restores; repeats. */
static void flip_fuzz(uint8_t *img, size_t size, size_t lo, size_t hi, int iters, int max_flips, uint64_t seed,
                      int *n_ok, int *n_fail) {
    char err[PV_ERRLEN];
    size_t at[16];
    uint8_t old[16];
    uint64_t s = seed;
    for (int it = 0; it < iters; it++) {
        int k = 1 + (int)(rng_next(&s) % (uint64_t)max_flips);
        for (int j = 0; j < k; j++) {
            at[j] = lo + (size_t)(rng_next(&s) % (hi - lo));
            old[j] = img[at[j]];
            uint64_t r = rng_next(&s);
            switch (r % 4) { /* mostly small changes, sometimes extremes */
            case 0: img[at[j]] = 0xff; break;
            case 1: img[at[j]] = 0x00; break;
            case 2: img[at[j]] ^= (uint8_t)(1u << (r >> 8) % 8); break;
            default: img[at[j]] ^= (uint8_t)(r >> 16 | 1); break;
            }
        }
        gguf_file_t *f = POISON;
        err[0] = 0;
        int rc = gguf_open_buffer(img, size, "flip.gguf", &f, err, sizeof err);
        if (rc == 0) {
            check_invariants(f);
            gguf_close(f);
            ++*n_ok;
        } else {
            CHECK_MSG(rc == PV_ECORRUPT || rc == PV_EUNSUPPORTED, "iteration %d: rc %d: %s", it, rc, err);
            CHECK(f == NULL);
            CHECK_MSG(strstr(err, "flip.gguf") != NULL, "iteration %d: %s", it, err);
            ++*n_fail;
        }
        for (int j = k - 1; j >= 0; j--) img[at[j]] = old[j]; /* undo in reverse: positions may repeat */
    }
}

START_TEST(test_flip_stories_meta) {
    char buf[4096];
    SHARED_OR_SKIP(buf, "models/stories260K.gguf");
    size_t size = 0;
    uint8_t *img = (uint8_t *)tu_read_file(path_, &size);
    ck_assert_ptr_nonnull(img);
    int n_ok = 0, n_fail = 0;
    flip_fuzz(img, size, 0, 14176, 3000, 4, 0x5eed0001, &n_ok, &n_fail);
    /* the structural bytes: header and the tensor infos (from 12k on) */
    flip_fuzz(img, size, 0, 24, 300, 2, 0x5eed0002, &n_ok, &n_fail);
    flip_fuzz(img, size, 12000, 14176, 3000, 3, 0x5eed0003, &n_ok, &n_fail);
    ck_assert_int_gt(n_ok, 0);
    ck_assert_int_gt(n_fail, 0);
    free(img);
}
END_TEST

START_TEST(test_flip_built) {
    gw_t w;
    build_rich(&w, 3);
    uint8_t *img = gw_dup(&w);
    int n_ok = 0, n_fail = 0;
    flip_fuzz(img, w.len, 0, w.len, 20000, 3, 0x5eed0004, &n_ok, &n_fail);
    ck_assert_int_gt(n_ok, 0);
    ck_assert_int_gt(n_fail, 0);
    free(img);
    gw_free(&w);
}
END_TEST

START_TEST(test_flip_and_truncate_built) {
    /* flips combined with a random truncation */
    gw_t w;
    build_rich(&w, 2);
    uint64_t s = 0x5eed0005;
    int n_ok = 0, n_fail = 0;
    for (int it = 0; it < 3000; it++) {
        size_t n = 1 + (size_t)(rng_next(&s) % w.len);
        uint8_t *img = malloc(n);
        memcpy(img, w.buf, n);
        int n_ok1 = 0, n_fail1 = 0;
        flip_fuzz(img, n, 0, n, 1, 3, rng_next(&s), &n_ok1, &n_fail1);
        n_ok += n_ok1;
        n_fail += n_fail1;
        free(img);
    }
    ck_assert_int_gt(n_fail, 0);
    (void)n_ok;
    gw_free(&w);
}
END_TEST

// ---------------------------------------------------------------------------
// headers

START_TEST(test_empty_and_short) {
    gw_t w;
    gw_init(&w);
    EXPECT_FAIL(&w, PV_ECORRUPT, "too small", "offset 0");
    gw_header(&w, 3, 0, 0);
    gw_t cut;
    for (size_t n = 1; n < 24; n++) {
        gw_init(&cut);
        gw_bytes(&cut, w.buf, n);
        EXPECT_FAIL(&cut, PV_ECORRUPT, "too small");
        gw_free(&cut);
    }
    gw_free(&w);
    /* no buffer: an empty image, or a caller's mistake */
    char err[PV_ERRLEN];
    gguf_file_t *f = POISON;
    ck_assert_int_eq(gguf_open_buffer(NULL, 0, "null.gguf", &f, err, sizeof err), PV_ECORRUPT);
    ck_assert_ptr_null(f);
    ck_assert_msg(strstr(err, "null.gguf") && strstr(err, "too small"), "%s", err);
    f = POISON;
    ck_assert_int_eq(gguf_open_buffer(NULL, 100, "null.gguf", &f, err, sizeof err), PV_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_msg(strstr(err, "null.gguf") != NULL, "%s", err);
}
END_TEST

START_TEST(test_bad_magic) {
    const char *magics[] = {"GGUG", "gguf", "GGML", "ggjt", "FUGG", "\0\0\0\0"};
    for (size_t i = 0; i < sizeof magics / sizeof *magics; i++) {
        gw_t w;
        gw_init(&w);
        gw_bytes(&w, magics[i], 4);
        gw_u32(&w, 3);
        gw_u64(&w, 0);
        gw_u64(&w, 0);
        EXPECT_FAIL(&w, PV_ECORRUPT, "magic", "offset 0");
        gw_free(&w);
    }
}
END_TEST

START_TEST(test_24_bytes_zero_counts) {
    for (uint32_t v = 2; v <= 3; v++) {
        gw_t w;
        gw_init(&w);
        gw_header(&w, v, 0, 0);
        ck_assert_uint_eq(w.len, 24);
        img_t o;
        EXPECT_OK(&o, &w);
        gguf_file_t *f = o.f;
        ck_assert_uint_eq(f->version, v);
        ck_assert_uint_eq(f->n_kv, 0);
        ck_assert_uint_eq(f->n_tensors, 0);
        ck_assert_uint_eq(f->size, 24);
        ck_assert_uint_eq(f->alignment, GGUF_DEFAULT_ALIGNMENT);
        ck_assert_ptr_null(gguf_find_kv(f, "general.architecture"));
        ck_assert_ptr_null(gguf_find_tensor(f, "w"));
        uint32_t u;
        float x;
        int b;
        ck_assert_int_eq(gguf_get_u32(f, "a", &u), PV_ENOTFOUND);
        ck_assert_int_eq(gguf_get_f32(f, "a", &x), PV_ENOTFOUND);
        ck_assert_int_eq(gguf_get_bool(f, "a", &b), PV_ENOTFOUND);
        ck_assert_ptr_null(gguf_get_str(f, "a"));
        img_close(&o);
        /* trailing bytes after an empty file are ignored */
        gw_zeros(&w, 100);
        EXPECT_OK(&o, &w);
        img_close(&o);
        gw_free(&w);
    }
}
END_TEST

START_TEST(test_versions) {
    gw_t w;
    /* v2 and v3 share the layout */
    for (uint32_t v = 2; v <= 3; v++) {
        build_min(&w, v);
        img_t o;
        EXPECT_OK(&o, &w);
        ck_assert_uint_eq(o.f->version, v);
        ck_assert_str_eq(gguf_get_str(o.f, "general.architecture"), "llama");
        ck_assert_ptr_nonnull(gguf_find_tensor(o.f, "w"));
        img_close(&o);
        gw_free(&w);
    }
    build_min(&w, 1);
    EXPECT_FAIL(&w, PV_EUNSUPPORTED, "version 1", "offset 4");
    gw_free(&w);
    const uint32_t bad[] = {0, 4, 5, 0xffff, 0x12345678, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char want[64];
        snprintf(want, sizeof want, "version %u", bad[i]);
        build_min(&w, bad[i]);
        EXPECT_FAIL(&w, PV_EUNSUPPORTED, want);
        gw_free(&w);
    }
    /* a big-endian file: the version reads byte-swapped */
    for (uint32_t v = 2; v <= 3; v++) {
        gw_init(&w);
        gw_bytes(&w, "GGUF", 4);
        gw_bytes(&w, (const uint8_t[]){0, 0, 0, (uint8_t)v}, 4);
        gw_bytes(&w, (const uint8_t[]){0, 0, 0, 0, 0, 0, 0, 0}, 8);
        gw_bytes(&w, (const uint8_t[]){0, 0, 0, 0, 0, 0, 0, 1}, 8);
        gw_zeros(&w, 64);
        EXPECT_FAIL(&w, PV_EUNSUPPORTED, "big-endian");
        gw_free(&w);
    }
}
END_TEST

START_TEST(test_absurd_counts) {
    const uint64_t kvs[] = {(uint64_t)1 << 63, UINT64_MAX, (uint64_t)1 << 32, 1000};
    for (size_t i = 0; i < sizeof kvs / sizeof *kvs; i++) {
        gw_t w;
        gw_init(&w);
        gw_header(&w, 3, 0, kvs[i]);
        gw_kv_u8(&w, "a", 1);
        EXPECT_FAIL(&w, PV_ECORRUPT, "key/value pairs", "offset 24");
        gw_free(&w);
    }
    const uint64_t tensors[] = {(uint64_t)1 << 60, UINT64_MAX, (uint64_t)1 << 40, 3};
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++) {
        gw_t w;
        gw_init(&w);
        gw_header(&w, 3, tensors[i], 0);
        gw_tensor(&w, "w", 1, (const uint64_t[]){8}, PV_TYPE_F32, 0);
        EXPECT_FAIL(&w, PV_ECORRUPT, "tensor infos", "offset 24");
        gw_free(&w);
    }
    /* both absurd */
    gw_t w;
    gw_init(&w);
    gw_header(&w, 3, (uint64_t)1 << 60, (uint64_t)1 << 63);
    EXPECT_FAIL(&w, PV_ECORRUPT, "cannot fit");
    gw_free(&w);
    /* counts that fit the size bound but run out of file while parsing */
    gw_init(&w);
    gw_header(&w, 3, 0, 3);
    gw_kv_u32(&w, "a", 1);
    gw_kv_u32(&w, "b", 1);
    gw_zeros(&w, 14);
    EXPECT_FAIL(&w, PV_ECORRUPT, "offset");
    gw_free(&w);
}
END_TEST

// ---------------------------------------------------------------------------
// key/value section

START_TEST(test_huge_string_lengths) {
    const uint64_t lens[] = {UINT64_MAX, (uint64_t)1 << 63, (uint64_t)1 << 32, 100};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        gw_t w;
        /* key length */
        gw_init(&w);
        gw_header(&w, 3, 0, 1);
        gw_u64(&w, lens[i]);
        gw_bytes(&w, "general.name", 12);
        gw_u32(&w, GGUF_VT_UINT8);
        gw_u8(&w, 0);
        gw_zeros(&w, 32);
        EXPECT_FAIL(&w, PV_ECORRUPT, "key length", "offset 24");
        gw_free(&w);
        /* string value length */
        gw_init(&w);
        gw_header(&w, 3, 0, 1);
        gw_key(&w, "general.name", GGUF_VT_STRING);
        size_t at = w.len;
        gw_u64(&w, lens[i]);
        gw_bytes(&w, "abcdefgh", 8);
        char want[32];
        snprintf(want, sizeof want, "offset %zu", at);
        EXPECT_FAIL(&w, PV_ECORRUPT, "string value length", want);
        gw_free(&w);
        /* an element of a string array */
        gw_init(&w);
        gw_header(&w, 3, 0, 1);
        gw_kv_arr(&w, "tokenizer.ggml.tokens", GGUF_VT_STRING, 3);
        gw_str(&w, "a");
        at = w.len;
        gw_u64(&w, lens[i]);
        gw_zeros(&w, 24);
        snprintf(want, sizeof want, "offset %zu", at);
        EXPECT_FAIL(&w, PV_ECORRUPT, "array string length", want);
        gw_free(&w);
        /* tensor name length */
        gw_init(&w);
        gw_header(&w, 3, 1, 0);
        gw_u64(&w, lens[i]);
        gw_bytes(&w, "w", 1);
        gw_u32(&w, 1);
        gw_u64(&w, 8);
        gw_u32(&w, PV_TYPE_F32);
        gw_u64(&w, 0);
        gw_zeros(&w, 64);
        EXPECT_FAIL(&w, PV_ECORRUPT, "tensor name length", "offset 24");
        gw_free(&w);
    }
}
END_TEST

START_TEST(test_huge_arrays) {
    static const struct {
        uint32_t el;
        uint64_t n;
    } cases[] = {
        {GGUF_VT_UINT8, UINT64_MAX},          {GGUF_VT_UINT8, 1000},
        {GGUF_VT_UINT32, (uint64_t)1 << 62},  /* n * 4 wraps to 0 */
        {GGUF_VT_INT32, ((uint64_t)1 << 62) + 1},
        {GGUF_VT_UINT64, (uint64_t)1 << 61},  /* n * 8 wraps to 0 */
        {GGUF_VT_FLOAT64, ((uint64_t)1 << 61) + 2},
        {GGUF_VT_UINT16, (uint64_t)1 << 63},  /* n * 2 wraps to 0 */
        {GGUF_VT_BOOL, UINT64_MAX - 1},
        {GGUF_VT_STRING, (uint64_t)1 << 61},  /* n * 8 wraps to 0 */
        {GGUF_VT_STRING, UINT64_MAX},
        {GGUF_VT_STRING, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        gw_t w;
        gw_init(&w);
        gw_header(&w, 3, 0, 1);
        gw_kv_arr(&w, "a", cases[i].el, cases[i].n);
        gw_zeros(&w, 32); /* room for 4 strings of length 0, not 5 */
        EXPECT_FAIL(&w, PV_ECORRUPT, "offset");
        gw_free(&w);
    }
    /* an empty array is fine, and so is one that ends exactly at the file's end */
    gw_t w;
    gw_init(&w);
    gw_header(&w, 3, 0, 2);
    gw_kv_arr(&w, "empty", GGUF_VT_FLOAT32, 0);
    gw_kv_arr(&w, "last", GGUF_VT_UINT16, 3);
    gw_u16(&w, 1);
    gw_u16(&w, 2);
    gw_u16(&w, 3);
    img_t o;
    EXPECT_OK(&o, &w);
    ck_assert_uint_eq(gguf_find_kv(o.f, "empty")->n, 0);
    ck_assert_int_eq(gguf_arr_int(gguf_find_kv(o.f, "last"), 2), 3);
    img_close(&o);
    gw_free(&w);
}
END_TEST

START_TEST(test_unknown_value_types) {
    const uint32_t types[] = {GGUF_VT_COUNT, 13, 14, 255, 0x80000000u, UINT32_MAX};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        gw_t w;
        gw_init(&w);
        gw_header(&w, 3, 0, 1);
        gw_key(&w, "general.name", types[i]);
        gw_zeros(&w, 16);
        char want[48];
        snprintf(want, sizeof want, "unknown value type %u", types[i]);
        EXPECT_FAIL(&w, PV_ECORRUPT, want, "general.name", "offset 44");
        gw_free(&w);
        gw_init(&w);
        gw_header(&w, 3, 0, 1);
        gw_kv_arr(&w, "a", types[i], 1);
        gw_zeros(&w, 16);
        EXPECT_FAIL(&w, PV_ECORRUPT, "unknown array element type");
        gw_free(&w);
    }
}
END_TEST

START_TEST(test_nested_arrays) {
    gw_t w;
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_arr(&w, "nested", GGUF_VT_ARRAY, 1);
    gw_u32(&w, GGUF_VT_UINT8); /* inner array: u8 x 1 */
    gw_u64(&w, 1);
    gw_u8(&w, 7);
    EXPECT_FAIL(&w, PV_EUNSUPPORTED, "nested");
    gw_free(&w);
    /* an empty nested array is still refused */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_arr(&w, "nested", GGUF_VT_ARRAY, 0);
    EXPECT_FAIL(&w, PV_EUNSUPPORTED, "nested");
    gw_free(&w);
}
END_TEST

START_TEST(test_duplicate_keys) {
    gw_t w;
    gw_init(&w);
    gw_header(&w, 3, 0, 2);
    gw_kv_u32(&w, "llama.block_count", 1);
    gw_kv_u32(&w, "llama.block_count", 2);
    EXPECT_FAIL(&w, PV_ECORRUPT, "llama.block_count", "twice");
    gw_free(&w);
    /* apart, and of different types */
    gw_init(&w);
    gw_header(&w, 3, 0, 4);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_u32(&w, "b", 1);
    gw_kv_f32(&w, "c", 1);
    gw_kv_u8(&w, "general.architecture", 3);
    EXPECT_FAIL(&w, PV_ECORRUPT, "general.architecture", "twice");
    gw_free(&w);
    /* keys that differ only past a prefix are distinct */
    gw_init(&w);
    gw_header(&w, 3, 0, 2);
    gw_kv_u32(&w, "a.b", 1);
    gw_kv_u32(&w, "a.bc", 2);
    img_t o;
    EXPECT_OK(&o, &w);
    uint32_t u = 0;
    ck_assert_int_eq(gguf_get_u32(o.f, "a.bc", &u), 0);
    ck_assert_uint_eq(u, 2);
    img_close(&o);
    gw_free(&w);
}
END_TEST

START_TEST(test_bad_keys) {
    gw_t w;
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_strn(&w, "", 0);
    gw_u32(&w, GGUF_VT_UINT8);
    gw_u8(&w, 1);
    gw_zeros(&w, 8);
    EXPECT_FAIL(&w, PV_ECORRUPT, "key 0", "empty");
    gw_free(&w);
    gw_init(&w);
    gw_header(&w, 3, 0, 2);
    gw_kv_u8(&w, "ok", 1);
    gw_strn(&w, "gen\0eral", 8);
    gw_u32(&w, GGUF_VT_UINT8);
    gw_u8(&w, 1);
    EXPECT_FAIL(&w, PV_ECORRUPT, "key 1", "NUL");
    gw_free(&w);
}
END_TEST

START_TEST(test_string_values) {
    gw_t w;
    gw_init(&w);
    gw_header(&w, 3, 0, 3);
    gw_key(&w, "nul", GGUF_VT_STRING);
    gw_strn(&w, "a\0b\0", 4);
    gw_kv_str(&w, "empty", "");
    gw_kv_str(&w, "utf8", "\xe6\x97\xa5\xe6\x9c\xac");
    img_t o;
    EXPECT_OK(&o, &w);
    const gguf_kv_t *kv = gguf_find_kv(o.f, "nul");
    ck_assert_uint_eq(kv->str_len, 4);
    ck_assert(memcmp(kv->str, "a\0b\0", 5) == 0); /* plus the added terminator */
    ck_assert_str_eq(gguf_get_str(o.f, "nul"), "a");
    kv = gguf_find_kv(o.f, "empty");
    ck_assert_uint_eq(kv->str_len, 0);
    ck_assert_str_eq(kv->str, "");
    ck_assert_str_eq(gguf_get_str(o.f, "utf8"), "\xe6\x97\xa5\xe6\x9c\xac");
    /* strings are copies: they survive the caller's buffer changing */
    memset(o.img, 0xee, o.size);
    ck_assert_str_eq(gguf_get_str(o.f, "utf8"), "\xe6\x97\xa5\xe6\x9c\xac");
    ck_assert_str_eq(o.f->kv[0].key, "nul");
    img_close(&o);
    gw_free(&w);
}
END_TEST

START_TEST(test_many_kvs) {
    /* the smallest key/values (14 bytes each) right up to the count bound */
    enum { N = 5000 };
    gw_t w;
    gw_init(&w);
    gw_header(&w, 3, 0, N);
    char key[16];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "%d", i);
        gw_kv_u8(&w, key, (uint8_t)i);
    }
    img_t o;
    EXPECT_OK(&o, &w);
    ck_assert_uint_eq(o.f->n_kv, N);
    uint32_t u = 0;
    ck_assert_int_eq(gguf_get_u32(o.f, "4999", &u), 0);
    ck_assert_uint_eq(u, 4999 & 0xff);
    img_close(&o);
    /* the same with the last key repeating the first */
    gw_free(&w);
    gw_init(&w);
    gw_header(&w, 3, 0, N);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "%d", i == N - 1 ? 0 : i);
        gw_kv_u8(&w, key, 1);
    }
    EXPECT_FAIL(&w, PV_ECORRUPT, "'0'", "twice");
    gw_free(&w);
}
END_TEST

// ---------------------------------------------------------------------------
// typed getters and arrays

START_TEST(test_getters) {
    gw_t w;
    build_rich(&w, 3);
    img_t o;
    EXPECT_OK(&o, &w);
    const gguf_file_t *f = o.f;
    static const struct {
        const char *key;
        int rc;
        uint32_t v;
    } u32s[] = {
        {"v.u8", 0, 200},          {"v.i8", PV_ECORRUPT, 0},       {"v.i8p", 0, 5},
        {"v.u16", 0, 65535},       {"v.i16", PV_ECORRUPT, 0},      {"v.u32", 0, UINT32_MAX},
        {"v.i32", PV_ECORRUPT, 0}, {"v.i32p", 0, 7},               {"v.u64", PV_ECORRUPT, 0},
        {"v.u64max32", 0, UINT32_MAX}, {"v.u64big", PV_ECORRUPT, 0}, {"v.i64", PV_ECORRUPT, 0},
        {"v.i64p", 0, 123},        {"v.f32", PV_ECORRUPT, 0},      {"v.f64", PV_ECORRUPT, 0},
        {"v.true", PV_ECORRUPT, 0}, {"v.str", PV_ECORRUPT, 0},     {"a.u32", PV_ECORRUPT, 0},
        {"a.str", PV_ECORRUPT, 0}, {"missing", PV_ENOTFOUND, 0},   {"general.alignment", 0, 64},
    };
    for (size_t i = 0; i < sizeof u32s / sizeof *u32s; i++) {
        uint32_t u = 0xdeadbeef;
        int rc = gguf_get_u32(f, u32s[i].key, &u);
        ck_assert_msg(rc == u32s[i].rc, "get_u32(%s): rc %d, expected %d", u32s[i].key, rc, u32s[i].rc);
        ck_assert_msg(u == (rc ? 0xdeadbeef : u32s[i].v), "get_u32(%s) = %u", u32s[i].key, u);
    }
    static const struct {
        const char *key;
        int rc;
        double v;
    } f32s[] = {
        {"v.f32", 0, 1.5},     {"v.f64", 0, 2.25},         {"v.u8", 0, 200},       {"v.i8", 0, -5},
        {"v.i16", 0, -1},      {"v.u32", 0, 4294967295.0}, {"v.i64", 0, -1},       {"v.u64", 0, 4294967296.0},
        {"v.true", PV_ECORRUPT, 0}, {"v.str", PV_ECORRUPT, 0}, {"a.f32", PV_ECORRUPT, 0},
        {"missing", PV_ENOTFOUND, 0},
    };
    for (size_t i = 0; i < sizeof f32s / sizeof *f32s; i++) {
        float x = -123.0f;
        int rc = gguf_get_f32(f, f32s[i].key, &x);
        ck_assert_msg(rc == f32s[i].rc, "get_f32(%s): rc %d, expected %d", f32s[i].key, rc, f32s[i].rc);
        ck_assert_msg(x == (rc ? -123.0f : (float)f32s[i].v), "get_f32(%s) = %g", f32s[i].key, (double)x);
    }
    static const struct {
        const char *key;
        int rc;
        int v;
    } bools[] = {
        {"v.true", 0, 1}, {"v.false", 0, 0}, {"v.bool2", 0, 1}, {"v.u8", PV_ECORRUPT, 0},
        {"v.str", PV_ECORRUPT, 0}, {"a.bool", PV_ECORRUPT, 0}, {"missing", PV_ENOTFOUND, 0},
    };
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++) {
        int b = -9;
        int rc = gguf_get_bool(f, bools[i].key, &b);
        ck_assert_msg(rc == bools[i].rc, "get_bool(%s): rc %d, expected %d", bools[i].key, rc, bools[i].rc);
        ck_assert_msg(b == (rc ? -9 : bools[i].v), "get_bool(%s) = %d", bools[i].key, b);
    }
    ck_assert_str_eq(gguf_get_str(f, "v.str"), "hello");
    ck_assert_str_eq(gguf_get_str(f, "v.empty"), "");
    ck_assert_ptr_null(gguf_get_str(f, "v.u32"));
    ck_assert_ptr_null(gguf_get_str(f, "a.str"));
    ck_assert_ptr_null(gguf_get_str(f, "missing"));
    const gguf_kv_t *kv = gguf_find_kv(f, "v.strnul");
    ck_assert_uint_eq(kv->str_len, 3);
    ck_assert(memcmp(kv->str, "a\0b", 4) == 0);
    /* alignment 64 was honoured */
    ck_assert_uint_eq(f->alignment, 64);
    ck_assert_uint_eq(f->data_offset % 64, 0);
    const gguf_tensor_t *t = gguf_find_tensor(f, "t.q4_0");
    ck_assert_uint_eq(t->n_bytes, 36);
    ck_assert_int_eq(((const uint8_t *)t->data)[0], 64 ^ 0x5a);
    t = gguf_find_tensor(f, "t.f16");
    ck_assert_uint_eq(t->n_dims, 4);
    ck_assert_int_eq(t->n_elems, 16);
    ck_assert_uint_eq(t->n_bytes, 32);
    ck_assert_int_eq(((const uint8_t *)t->data)[31], (128 + 31) ^ 0x5a);
    img_close(&o);
    gw_free(&w);
}
END_TEST

START_TEST(test_arrays) {
    gw_t w;
    build_rich(&w, 3);
    img_t o;
    EXPECT_OK(&o, &w);
    const gguf_file_t *f = o.f;
    static const struct {
        const char *key;
        gguf_vtype_t el;
        uint64_t n;
        int64_t v0, v1;
    } ints[] = {
        {"a.u8", GGUF_VT_UINT8, 2, 0, 255},
        {"a.i8", GGUF_VT_INT8, 2, -128, 127},
        {"a.u16", GGUF_VT_UINT16, 1, 65535, 0},
        {"a.i16", GGUF_VT_INT16, 2, -32768, 32767},
        {"a.u32", GGUF_VT_UINT32, 1, UINT32_MAX, 0},
        {"a.i32", GGUF_VT_INT32, 2, INT32_MIN, 2},
        {"a.u64", GGUF_VT_UINT64, 1, INT64_MAX, 0},
        {"a.i64", GGUF_VT_INT64, 2, INT64_MIN, -1},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        const gguf_kv_t *kv = gguf_find_kv(f, ints[i].key);
        ck_assert_ptr_nonnull(kv);
        ck_assert_int_eq(kv->type, GGUF_VT_ARRAY);
        ck_assert_int_eq(kv->el_type, ints[i].el);
        ck_assert_uint_eq(kv->n, ints[i].n);
        ck_assert_int_eq(gguf_arr_int(kv, 0), ints[i].v0);
        ck_assert_double_eq(gguf_arr_float(kv, 0), (double)ints[i].v0);
        if (kv->n > 1) ck_assert_int_eq(gguf_arr_int(kv, 1), ints[i].v1);
    }
    const gguf_kv_t *kv = gguf_find_kv(f, "a.f32");
    ck_assert_double_eq(gguf_arr_float(kv, 0), 0.5);
    ck_assert_double_eq(gguf_arr_float(kv, 1), -2.0);
    kv = gguf_find_kv(f, "a.f64");
    ck_assert_double_eq(gguf_arr_float(kv, 0), 1e300);
    kv = gguf_find_kv(f, "a.empty");
    ck_assert_int_eq(kv->el_type, GGUF_VT_INT32);
    ck_assert_uint_eq(kv->n, 0);
    kv = gguf_find_kv(f, "a.strempty");
    ck_assert_int_eq(kv->el_type, GGUF_VT_STRING);
    ck_assert_uint_eq(kv->n, 0);
    /* string arrays: lengths, empty elements and embedded NULs */
    kv = gguf_find_kv(f, "a.str");
    ck_assert_uint_eq(kv->n, 4);
    const struct {
        const char *s;
        size_t len;
    } want[] = {{"x", 1}, {"", 0}, {"a\0b", 3}, {"h\xc3\xa9llo", 6}};
    size_t pos = 0, len = 99;
    for (int i = 0; i < 4; i++) {
        const char *s = gguf_arr_str_next(kv, &pos, &len);
        ck_assert_uint_eq(len, want[i].len);
        ck_assert(memcmp(s, want[i].s, len) == 0);
    }
    ck_assert_uint_eq(pos, 4 * 8 + 1 + 0 + 3 + 6);
    img_close(&o);
    gw_free(&w);
}
END_TEST

START_TEST(test_vtype_names) {
    const char *names[GGUF_VT_COUNT] = {"u8", "i8",     "u16",   "i16", "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    for (int t = 0; t < GGUF_VT_COUNT; t++) ck_assert_str_eq(gguf_vtype_name((gguf_vtype_t)t), names[t]);
    ck_assert_str_eq(gguf_vtype_name(GGUF_VT_COUNT), "unknown");
    ck_assert_str_eq(gguf_vtype_name((gguf_vtype_t)-1), "unknown");
    ck_assert_str_eq(gguf_vtype_name((gguf_vtype_t)1000), "unknown");
}
END_TEST

// ---------------------------------------------------------------------------
// tensor infos

START_TEST(test_n_dims) {
    const uint32_t bad[] = {0, 5, 16, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gw_t w;
        head_one_tensor(&w, 3);
        gw_str(&w, "w");
        gw_u32(&w, bad[i]);
        for (int d = 0; d < 5; d++) gw_u64(&w, 1);
        gw_u32(&w, PV_TYPE_F32);
        gw_u64(&w, 0);
        tail_data(&w, 32, 64);
        char want[32];
        snprintf(want, sizeof want, "%u dimensions", bad[i]);
        EXPECT_FAIL(&w, PV_ECORRUPT, "'w'", want);
        gw_free(&w);
    }
    for (uint32_t n = 1; n <= 4; n++) {
        gw_t w;
        head_one_tensor(&w, 3);
        gw_tensor(&w, "w", n, (const uint64_t[]){2, 3, 4, 5}, PV_TYPE_F32, 0);
        tail_data(&w, 32, 120 * 4);
        img_t o;
        EXPECT_OK(&o, &w);
        const gguf_tensor_t *t = gguf_find_tensor(o.f, "w");
        ck_assert_uint_eq(t->n_dims, n);
        const int64_t all[] = {2, 3, 4, 5};
        int64_t prod = 1;
        for (uint32_t d = 0; d < 4; d++) {
            ck_assert_int_eq(t->ne[d], d < n ? all[d] : 1);
            prod *= t->ne[d];
        }
        ck_assert_int_eq(t->n_elems, prod);
        ck_assert_uint_eq(t->n_bytes, (size_t)prod * 4);
        img_close(&o);
        gw_free(&w);
    }
}
END_TEST

START_TEST(test_dim_overflow) {
    static const struct {
        uint32_t n_dims;
        uint64_t ne[4];
        uint32_t type;
        const char *want;
    } cases[] = {
        {2, {(uint64_t)1 << 32, (uint64_t)1 << 32}, PV_TYPE_F32, "overflow"},       /* 2^64 */
        {1, {(uint64_t)1 << 63}, PV_TYPE_F32, "overflow"},                          /* > INT64_MAX */
        {1, {UINT64_MAX}, PV_TYPE_I8, "overflow"},
        {4, {1u << 16, 1u << 16, 1u << 16, 1u << 16}, PV_TYPE_F32, "overflow"},    /* 2^64 */
        {2, {3037000500u, 3037000500u}, PV_TYPE_I8, "overflow"},                    /* just past INT64_MAX */
        {3, {2, (uint64_t)1 << 62, 2}, PV_TYPE_I8, "overflow"},
        {2, {3037000499u, 3037000499u}, PV_TYPE_I8, "cannot fit"},                  /* just under */
        {1, {(uint64_t)INT64_MAX}, PV_TYPE_I8, "cannot fit"},
        {1, {(uint64_t)1 << 62}, PV_TYPE_F32, "cannot fit"},                        /* bytes wrap to 0 */
        {1, {(uint64_t)1 << 61}, PV_TYPE_F64, "cannot fit"},                        /* bytes wrap to 0 */
        {1, {(uint64_t)1 << 62}, PV_TYPE_I64, "cannot fit"},                        /* bytes wrap to 2^64 */
        {2, {(uint64_t)1 << 32, (uint64_t)1 << 30}, PV_TYPE_Q8_0, "cannot fit"},
        {1, {(uint64_t)1 << 40}, PV_TYPE_Q4_K, "cannot fit"},
        {2, {64, 1 << 20}, PV_TYPE_F32, "cannot fit"},                              /* 256 MB in a tiny file */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        gw_t w;
        head_one_tensor(&w, 3);
        gw_tensor(&w, "big", cases[i].n_dims, cases[i].ne, cases[i].type, 0);
        tail_data(&w, 32, 256);
        EXPECT_FAIL(&w, PV_ECORRUPT, "'big'", cases[i].want, "offset");
        gw_free(&w);
    }
}
END_TEST

START_TEST(test_tensor_types) {
    /* every type id the layout table knows opens with a one-block row;
     * every other id is refused */
    for (uint32_t id = 0; id < PV_TYPE_COUNT + 8; id++) {
        const pv_type_layout_t *lay = pv_type_layout(id);
        gw_t w;
        head_one_tensor(&w, 3);
        gw_tensor(&w, "w", 2, (const uint64_t[]){lay ? lay->blck_size : 1, 2}, id, 0);
        tail_data(&w, 32, lay ? 2 * lay->type_size : 64);
        if (lay) {
            img_t o;
            EXPECT_OK(&o, &w);
            const gguf_tensor_t *t = gguf_find_tensor(o.f, "w");
            ck_assert_int_eq(t->type, (pv_type_t)id);
            ck_assert_uint_eq(t->n_bytes, 2 * lay->type_size);
            img_close(&o);
        } else {
            char want[48];
            snprintf(want, sizeof want, "unknown type id %u", id);
            EXPECT_FAIL(&w, PV_ECORRUPT, "'w'", want);
        }
        gw_free(&w);
    }
    /* ids 4 and 5 (the removed q4_2 and q4_3) and far-out ids */
    const uint32_t bad[] = {4, 5, 0x100, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_ptr_null(pv_type_layout(bad[i]));
        gw_t w;
        head_one_tensor(&w, 3);
        gw_tensor(&w, "w", 1, (const uint64_t[]){32}, bad[i], 0);
        tail_data(&w, 32, 128);
        EXPECT_FAIL(&w, PV_ECORRUPT, "unknown type id");
        gw_free(&w);
    }
}
END_TEST

START_TEST(test_rows_not_whole_blocks) {
    static const struct {
        uint32_t type;
        uint64_t ne0;
    } cases[] = {
        {PV_TYPE_Q4_0, 48}, {PV_TYPE_Q8_0, 172}, {PV_TYPE_Q8_0, 1}, {PV_TYPE_Q4_K, 128},
        {PV_TYPE_Q6_K, 300}, {PV_TYPE_MXFP4, 33},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        gw_t w;
        head_one_tensor(&w, 3);
        gw_tensor(&w, "blk.0.ffn_down.weight", 2, (const uint64_t[]){cases[i].ne0, 4}, cases[i].type, 0);
        tail_data(&w, 32, 4096);
        char want[64];
        snprintf(want, sizeof want, "%s blocks", pv_type_name(cases[i].type));
        EXPECT_FAIL(&w, PV_ECORRUPT, "blk.0.ffn_down.weight", want, "offset");
        gw_free(&w);
    }
    /* the whole-block check is on rows, not on the element count */
    gw_t w;
    head_one_tensor(&w, 3);
    gw_tensor(&w, "w", 2, (const uint64_t[]){16, 2}, PV_TYPE_Q8_0, 0); /* 32 elements, rows of 16 */
    tail_data(&w, 32, 64);
    EXPECT_FAIL(&w, PV_ECORRUPT, "q8_0 blocks");
    gw_free(&w);
}
END_TEST

START_TEST(test_tensor_names) {
    char name63[64], name64[65];
    memset(name63, 'n', 63);
    name63[63] = 0;
    memset(name64, 'n', 64);
    name64[64] = 0;
    gw_t w;
    head_one_tensor(&w, 3);
    gw_tensor(&w, name63, 1, (const uint64_t[]){8}, PV_TYPE_F32, 0);
    tail_data(&w, 32, 32);
    img_t o;
    EXPECT_OK(&o, &w);
    ck_assert_str_eq(o.f->tensors[0].name, name63);
    img_close(&o);
    gw_free(&w);

    head_one_tensor(&w, 3);
    gw_tensor(&w, name64, 1, (const uint64_t[]){8}, PV_TYPE_F32, 0);
    tail_data(&w, 32, 32);
    EXPECT_FAIL(&w, PV_ECORRUPT, "tensor 0", "64 bytes");
    gw_free(&w);

    head_one_tensor(&w, 3);
    gw_tensor(&w, "", 1, (const uint64_t[]){8}, PV_TYPE_F32, 0);
    tail_data(&w, 32, 32);
    EXPECT_FAIL(&w, PV_ECORRUPT, "tensor 0", "empty");
    gw_free(&w);

    head_one_tensor(&w, 3);
    gw_strn(&w, "a\0b", 3);
    gw_u32(&w, 1);
    gw_u64(&w, 8);
    gw_u32(&w, PV_TYPE_F32);
    gw_u64(&w, 0);
    tail_data(&w, 32, 32);
    EXPECT_FAIL(&w, PV_ECORRUPT, "tensor 0", "NUL");
    gw_free(&w);
}
END_TEST

START_TEST(test_duplicate_tensors) {
    gw_t w;
    gw_init(&w);
    gw_header(&w, 3, 3, 0);
    gw_tensor(&w, "a", 1, (const uint64_t[]){8}, PV_TYPE_F32, 0);
    gw_tensor(&w, "b", 1, (const uint64_t[]){8}, PV_TYPE_F32, 32);
    gw_tensor(&w, "a", 1, (const uint64_t[]){8}, PV_TYPE_F32, 64);
    tail_data(&w, 32, 96);
    EXPECT_FAIL(&w, PV_ECORRUPT, "'a'", "twice");
    gw_free(&w);
}
END_TEST

START_TEST(test_many_tensors) {
    /* listed in reverse order of their data */
    enum { N = 1000 };
    for (int dup = 0; dup <= 2; dup++) {
        gw_t w;
        gw_init(&w);
        gw_header(&w, 3, N, 0);
        char name[32];
        for (int i = N - 1; i >= 0; i--) {
            snprintf(name, sizeof name, "blk.%d.w", dup == 2 && i == 0 ? 1 : i);
            uint64_t off = (uint64_t)(dup == 1 && i == 0 ? 1 : i) * 32;
            gw_tensor(&w, name, 1, (const uint64_t[]){8}, PV_TYPE_F32, off);
        }
        tail_data(&w, 32, N * 32);
        if (dup == 0) {
            img_t o;
            EXPECT_OK(&o, &w);
            ck_assert_uint_eq(o.f->n_tensors, N);
            ck_assert_str_eq(o.f->tensors[0].name, "blk.999.w");
            ck_assert_ptr_eq(gguf_find_tensor(o.f, "blk.0.w")->data, o.img + o.f->data_offset);
            img_close(&o);
        } else if (dup == 1) {
            EXPECT_FAIL(&w, PV_ECORRUPT, "overlap", "'blk.0.w'", "'blk.1.w'");
        } else {
            EXPECT_FAIL(&w, PV_ECORRUPT, "'blk.1.w'", "twice");
        }
        gw_free(&w);
    }
}
END_TEST

// ---------------------------------------------------------------------------
// the data section

/* A file with two F32 tensors of n0 and n1 elements at off0 and off1, with
 * n_data bytes of data after the padding. */
static void build_two(gw_t *w, uint64_t n0, uint64_t off0, uint64_t n1, uint64_t off1, size_t n_data) {
    gw_init(w);
    gw_header(w, 3, 2, 0);
    gw_tensor(w, "first", 1, (const uint64_t[]){n0}, PV_TYPE_F32, off0);
    gw_tensor(w, "second", 1, (const uint64_t[]){n1}, PV_TYPE_F32, off1);
    tail_data(w, 32, n_data);
}

START_TEST(test_data_out_of_range) {
    gw_t w;
    /* exact fit opens; one byte less does not */
    build_two(&w, 8, 0, 8, 32, 64);
    img_t o;
    EXPECT_OK(&o, &w);
    ck_assert_ptr_eq(gguf_find_tensor(o.f, "second")->data, o.img + o.size - 32);
    img_close(&o);
    gw_free(&w);
    build_two(&w, 8, 0, 8, 32, 63);
    EXPECT_FAIL(&w, PV_ECORRUPT, "'second'", "outside the file", "offset");
    gw_free(&w);
    /* offsets past the end, and offsets that wrap when added to the size */
    const uint64_t offs[] = {64, 4096, (uint64_t)1 << 40, UINT64_MAX - 31, (uint64_t)INT64_MAX + 1};
    for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
        build_two(&w, 8, 0, 8, offs[i], 64);
        EXPECT_FAIL(&w, PV_ECORRUPT, "'second'", "outside the file");
        gw_free(&w);
    }
    /* the file ends inside the padding before the data section */
    gw_init(&w);
    gw_header(&w, 3, 1, 0);
    gw_tensor(&w, "w", 1, (const uint64_t[]){8}, PV_TYPE_F32, 0);
    ck_assert_uint_ne(w.len % 32, 0);
    EXPECT_FAIL(&w, PV_ECORRUPT, "data section", "offset");
    gw_free(&w);
    /* an empty tensor fits anywhere in the data section, even at its end */
    build_two(&w, 8, 0, 0, 32, 32);
    EXPECT_OK(&o, &w);
    ck_assert_uint_eq(gguf_find_tensor(o.f, "second")->n_bytes, 0);
    img_close(&o);
    gw_free(&w);
}
END_TEST

START_TEST(test_overlap) {
    static const struct {
        uint64_t n0, off0, n1, off1;
        int ok;
    } cases[] = {
        {8, 0, 8, 0, 0},    /* same bytes */
        {16, 0, 8, 32, 0},  /* second starts inside first */
        {8, 32, 16, 0, 0},  /* the same, listed in the other order */
        {24, 0, 8, 64, 0},  /* inside, at the tail */
        {8, 0, 8, 32, 1},   /* adjacent */
        {8, 32, 8, 0, 1},   /* adjacent, listed out of order */
        {8, 0, 8, 64, 1},   /* a gap between */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        gw_t w;
        build_two(&w, cases[i].n0, cases[i].off0, cases[i].n1, cases[i].off1, 128);
        if (cases[i].ok) {
            img_t o;
            EXPECT_OK(&o, &w);
            img_close(&o);
        } else {
            EXPECT_FAIL(&w, PV_ECORRUPT, "overlap", "'first'", "'second'");
        }
        gw_free(&w);
    }
}
END_TEST

START_TEST(test_misaligned) {
    const uint64_t offs[] = {4, 16, 31, 33};
    for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
        gw_t w;
        build_two(&w, 8, 0, 8, offs[i], 128);
        char want[64];
        snprintf(want, sizeof want, "offset %llu", (unsigned long long)offs[i]);
        EXPECT_FAIL(&w, PV_ECORRUPT, "'second'", "alignment", want);
        gw_free(&w);
    }
}
END_TEST

/* A file whose general.alignment is written by put, with one tensor at off. */
static void build_aligned(gw_t *w, void (*put)(gw_t *), uint64_t off) {
    gw_init(w);
    gw_header(w, 3, 1, 2);
    gw_kv_str(w, "general.architecture", "llama");
    put(w);
    gw_tensor(w, "w", 1, (const uint64_t[]){8}, PV_TYPE_F32, off);
}

static uint32_t g_align; /* the value the put_* helpers write */
static void put_u32(gw_t *w) { gw_kv_u32(w, "general.alignment", g_align); }
static void put_u64(gw_t *w) { gw_kv_u64(w, "general.alignment", g_align); }
static void put_i32(gw_t *w) { gw_kv_i32(w, "general.alignment", (int32_t)g_align); }
static void put_u16(gw_t *w) { gw_kv_u16(w, "general.alignment", (uint16_t)g_align); }
static void put_str(gw_t *w) { gw_kv_str(w, "general.alignment", "32"); }
static void put_f32(gw_t *w) { gw_kv_f32(w, "general.alignment", 32.0f); }
static void put_arr(gw_t *w) {
    gw_kv_arr(w, "general.alignment", GGUF_VT_UINT32, 1);
    gw_u32(w, 32);
}

START_TEST(test_alignment_kv) {
    /* not a power of two */
    const uint32_t bad[] = {0, 3, 48, 96, 0x80000001u, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gw_t w;
        g_align = bad[i];
        build_aligned(&w, put_u32, 0);
        tail_data(&w, 64, 64);
        EXPECT_FAIL(&w, PV_ECORRUPT, "general.alignment");
        gw_free(&w);
    }
    /* the right value in the wrong type */
    void (*wrong[])(gw_t *) = {put_u64, put_i32, put_u16, put_str, put_f32, put_arr};
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
        gw_t w;
        g_align = 32;
        build_aligned(&w, wrong[i], 0);
        tail_data(&w, 32, 64);
        EXPECT_FAIL(&w, PV_ECORRUPT, "general.alignment");
        gw_free(&w);
    }
    /* powers of two are honoured, for the data section and for offsets */
    const uint32_t good[] = {1, 2, 8, 32, 64, 4096};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        gw_t w;
        g_align = good[i];
        build_aligned(&w, put_u32, 0);
        size_t info_end = w.len;
        tail_data(&w, good[i], 32);
        img_t o;
        EXPECT_OK(&o, &w);
        ck_assert_uint_eq(o.f->alignment, good[i]);
        size_t want = (info_end + good[i] - 1) / good[i] * good[i];
        ck_assert_uint_eq(o.f->data_offset, want);
        ck_assert_ptr_eq(o.f->tensors[0].data, o.img + want);
        img_close(&o);
        gw_free(&w);
    }
    /* with alignment 8 an offset of 8 is aligned; with the default it is not */
    gw_t w;
    g_align = 8;
    build_aligned(&w, put_u32, 8);
    tail_data(&w, 8, 64);
    img_t o;
    EXPECT_OK(&o, &w);
    img_close(&o);
    gw_free(&w);
    build_two(&w, 8, 0, 8, 8, 128);
    EXPECT_FAIL(&w, PV_ECORRUPT, "alignment 32");
    gw_free(&w);
    /* a huge alignment pushes the data section past the end of the file */
    g_align = 1u << 31;
    build_aligned(&w, put_u32, 0);
    gw_zeros(&w, 64);
    EXPECT_FAIL(&w, PV_ECORRUPT, "data section");
    gw_free(&w);
}
END_TEST

// ---------------------------------------------------------------------------
// gguf_open on real files of the file system, and the err buffer

/* Writes w to a temp file and opens it with gguf_open; unlinks it. */
static int open_tmp(const gw_t *w, char *path, size_t path_len, gguf_file_t **out, char *err, size_t errlen) {
    tmp_path(path, path_len);
    ck_assert_int_eq(gw_write_file(w, path), 0);
    *out = POISON;
    int rc = gguf_open(path, out, err, errlen);
    if (rc == 0) {
        ck_assert_int_eq((*out)->mapped, 1);
        check_invariants(*out);
    } else {
        ck_assert_ptr_null(*out);
    }
    unlink(path); /* the mapping outlives the name */
    return rc;
}

START_TEST(test_open_files) {
    char path[4096], err[PV_ERRLEN];
    gguf_file_t *f;
    gw_t w;
    /* empty */
    gw_init(&w);
    ck_assert_int_eq(open_tmp(&w, path, sizeof path, &f, err, sizeof err), PV_ECORRUPT);
    ck_assert_msg(strstr(err, path) && strstr(err, "empty"), "%s", err);
    /* 24 bytes, zero counts */
    gw_header(&w, 3, 0, 0);
    ck_assert_int_eq(open_tmp(&w, path, sizeof path, &f, err, sizeof err), 0);
    ck_assert_uint_eq(f->size, 24);
    ck_assert_str_eq(f->path, path);
    gguf_close(f);
    gw_free(&w);
    /* a valid file: data views point into the mapping */
    build_rich(&w, 3);
    ck_assert_int_eq(open_tmp(&w, path, sizeof path, &f, err, sizeof err), 0);
    const gguf_tensor_t *t = gguf_find_tensor(f, "t.f32");
    ck_assert(memcmp(t->data, w.buf + ((const uint8_t *)t->data - f->base), t->n_bytes) == 0);
    ck_assert_ptr_eq(t->data, f->base + f->data_offset);
    ck_assert_str_eq(gguf_get_str(f, "general.architecture"), "llama");
    gguf_close(f);
    /* a hostile file: the mapping is released on the error path */
    gw_t cut;
    gw_init(&cut);
    gw_bytes(&cut, w.buf, w.len - 1);
    ck_assert_int_eq(open_tmp(&cut, path, sizeof path, &f, err, sizeof err), PV_ECORRUPT);
    ck_assert_msg(strstr(err, path) && strstr(err, "offset"), "%s", err);
    gw_free(&cut);
    gw_free(&w);
    build_min(&w, 1);
    ck_assert_int_eq(open_tmp(&w, path, sizeof path, &f, err, sizeof err), PV_EUNSUPPORTED);
    gw_free(&w);
    /* not there, and not a regular file */
    f = POISON;
    ck_assert_int_eq(gguf_open("/nonexistent/pv-gguf/none.gguf", &f, err, sizeof err), PV_EIO);
    ck_assert_ptr_null(f);
    ck_assert_msg(strstr(err, "/nonexistent/pv-gguf/none.gguf") != NULL, "%s", err);
    f = POISON;
    ck_assert_int_eq(gguf_open("/tmp", &f, err, sizeof err), PV_EIO);
    ck_assert_ptr_null(f);
    ck_assert_msg(strstr(err, "/tmp") && strstr(err, "regular"), "%s", err);
}
END_TEST

START_TEST(test_open_truncated_files) {
    char buf[4096], path[4096], err[PV_ERRLEN];
    SHARED_OR_SKIP(buf, "models/stories260K.gguf");
    size_t size = 0;
    char *file = tu_read_file(path_, &size);
    ck_assert_ptr_nonnull(file);
    const size_t cuts[] = {1, 23, 24, 25, 100, 5000, 14151, 14152, 14175, 14176, 600000, 1185375};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        gw_t w;
        gw_init(&w);
        gw_bytes(&w, file, cuts[i]);
        gguf_file_t *f;
        ck_assert_int_eq(open_tmp(&w, path, sizeof path, &f, err, sizeof err), PV_ECORRUPT);
        ck_assert_msg(strstr(err, path) && strstr(err, "offset"), "cut %zu: %s", cuts[i], err);
        gw_free(&w);
    }
    free(file);
}
END_TEST

START_TEST(test_err_buffer) {
    gw_t w;
    gw_init(&w);
    gw_header(&w, 3, 0, 2);
    gw_kv_u8(&w, "dup", 1);
    gw_kv_u8(&w, "dup", 1);
    uint8_t *img = gw_dup(&w);
    gguf_file_t *f = POISON;
    /* no buffer at all */
    ck_assert_int_eq(gguf_open_buffer(img, w.len, "x.gguf", &f, NULL, 0), PV_ECORRUPT);
    ck_assert_ptr_null(f);
    /* a short buffer is truncated and terminated */
    char err[8];
    memset(err, 'z', sizeof err);
    ck_assert_int_eq(gguf_open_buffer(img, w.len, "x.gguf", &f, err, sizeof err), PV_ECORRUPT);
    ck_assert_uint_eq(strlen(err), sizeof err - 1);
    ck_assert(memcmp(err, "x.gguf:", 7) == 0);
    /* a zero length leaves it alone */
    memset(err, 'z', sizeof err);
    ck_assert_int_eq(gguf_open_buffer(img, w.len, "x.gguf", &f, err, 0), PV_ECORRUPT);
    ck_assert_int_eq(err[0], 'z');
    /* success leaves no stale message to misread: the code is what counts */
    free(img);
    gw_free(&w);
    gguf_close(NULL);
}
END_TEST

// ---------------------------------------------------------------------------

Suite *gguf_suite(void) {
    Suite *s = suite_create("gguf");
    struct {
        const char *name;
        const TTest *tests[24];
        int loop_end; /* > 0: the first test is a loop test over [0, loop_end) */
    } groups[] = {
        {"good", {test_stories260k, test_stories260k_q8_0, test_tinyllama_q4_0, test_llama2_tiny_f16}, 0},
        {"vocab", {test_vocab_files}, (int)(sizeof vocab_files / sizeof *vocab_files)},
        {"refused", {test_v1_refused, test_bad_q8_0_rows}, 0},
        {"truncate",
         {test_truncate_stories_every_meta_byte, test_truncate_q8_0, test_truncate_q4_0, test_truncate_vocab,
          test_truncate_built, test_open_truncated_files},
         0},
        {"flip", {test_flip_stories_meta, test_flip_built, test_flip_and_truncate_built}, 0},
        {"header", {test_empty_and_short, test_bad_magic, test_24_bytes_zero_counts, test_versions, test_absurd_counts}, 0},
        {"kv",
         {test_huge_string_lengths, test_huge_arrays, test_unknown_value_types, test_nested_arrays, test_duplicate_keys,
          test_bad_keys, test_string_values, test_many_kvs},
         0},
        {"getters", {test_getters, test_arrays, test_vtype_names}, 0},
        {"tensors",
         {test_n_dims, test_dim_overflow, test_tensor_types, test_rows_not_whole_blocks, test_tensor_names,
          test_duplicate_tensors, test_many_tensors},
         0},
        {"data", {test_data_out_of_range, test_overlap, test_misaligned, test_alignment_kv}, 0},
        {"files", {test_open_files, test_err_buffer}, 0},
    };
    for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
        TCase *tc = tcase_create(groups[g].name);
        tcase_set_timeout(tc, TEST_TIMEOUT_S);
        for (size_t i = 0; i < 24 && groups[g].tests[i]; i++) {
            if (groups[g].loop_end > 0)
                tcase_add_loop_test(tc, groups[g].tests[i], 0, groups[g].loop_end);
            else
                tcase_add_test(tc, groups[g].tests[i]);
        }
        suite_add_tcase(s, tc);
    }
    return s;
}
