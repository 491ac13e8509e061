/* test_kvstore.c - the prefix cache on disk: a save/load round trip gives the
 * same blocks and lookups, a smaller arena takes the most recent blocks, and
 * damaged, truncated or foreign files are refused leaving the arena empty. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "model/kvstore.h"
#include "suites.h"

#define N_LAYER 2
#define KV_DIM 8
#define MODEL_ID 0x1234abcdull

static char dir[64];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/pv-kvstore-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void file_in_dir(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", dir, name); }

static void remove_dir(void) {
    char p[128];
    file_in_dir(p, sizeof p, "a.kvcache");
    unlink(p);
    file_in_dir(p, sizeof p, "b.kvcache");
    unlink(p);
    rmdir(dir);
}

/* Gives s the blocks of tokens[0..n) (after those it attached), fills their
 * keys and values with numbers derived from the tokens, registers them. */
static void fill_seq(pv_kv_t *kv, pv_seq_t *s, const int32_t *tokens, uint32_t n) {
    uint32_t from = s->n_blocks;
    ck_assert_int_eq(pv_kv_reserve(kv, s, n), 0);
    for (uint32_t i = from; i < s->n_blocks; i++) {
        uint16_t *k = pv_kv_block_k(kv, s->blocks[i]), *v = pv_kv_block_v(kv, s->blocks[i]);
        for (size_t e = 0; e < pv_kv_block_elems(kv); e++) {
            k[e] = (uint16_t)(tokens[i * PV_KV_BLOCK + e % PV_KV_BLOCK] * 31 + e);
            v[e] = (uint16_t)(tokens[i * PV_KV_BLOCK + e % PV_KV_BLOCK] * 17 + 3 * e);
        }
    }
    pv_kv_register(kv, s, tokens, n);
}

/* Two prompts sharing 2 blocks: a (5 full blocks) then b (2 shared + 2 own), both released. */
static int32_t ta[80], tb[64];

static void build_arena(pv_kv_t *kv, uint32_t n_blocks) {
    char err[PV_ERRLEN];
    ck_assert_int_eq(pv_kv_init(kv, N_LAYER, KV_DIM, n_blocks, err, sizeof err), 0);
    for (int i = 0; i < 80; i++) ta[i] = (int32_t)((i * 37 + 11) % 1000);
    for (int i = 0; i < 64; i++) tb[i] = i < 32 ? ta[i] : (int32_t)((i * 13 + 7) % 1000);
    pv_seq_t s;
    ck_assert_int_eq(pv_seq_init(&s, 256), 0);
    fill_seq(kv, &s, ta, 80);
    pv_kv_release(kv, &s);
    ck_assert_uint_eq(pv_kv_attach_prefix(kv, &s, tb, 64), 32);
    fill_seq(kv, &s, tb, 64);
    pv_kv_release(kv, &s); /* b's blocks are now the most recent, its first block most of all */
    pv_seq_close(&s);
    ck_assert_uint_eq(kv->n_cached, 7);
}

/* Attaches tokens[0..n) in both arenas: the same positions, bit-identical keys and values. */
static uint32_t same_prefix(pv_kv_t *a, pv_kv_t *b, const int32_t *tokens, uint32_t n) {
    pv_seq_t sa, sb;
    ck_assert_int_eq(pv_seq_init(&sa, 256), 0);
    ck_assert_int_eq(pv_seq_init(&sb, 256), 0);
    uint32_t got = pv_kv_attach_prefix(b, &sb, tokens, n);
    ck_assert_uint_le(got, pv_kv_attach_prefix(a, &sa, tokens, n));
    size_t bytes = pv_kv_block_elems(a) * sizeof(uint16_t);
    for (uint32_t i = 0; i < sb.n_blocks; i++) {
        ck_assert(memcmp(pv_kv_block_k(a, sa.blocks[i]), pv_kv_block_k(b, sb.blocks[i]), bytes) == 0);
        ck_assert(memcmp(pv_kv_block_v(a, sa.blocks[i]), pv_kv_block_v(b, sb.blocks[i]), bytes) == 0);
    }
    pv_kv_release(a, &sa);
    pv_kv_release(b, &sb);
    pv_seq_close(&sa);
    pv_seq_close(&sb);
    return got;
}

START_TEST(test_round_trip) {
    char err[PV_ERRLEN], path[128];
    make_dir();
    file_in_dir(path, sizeof path, "a.kvcache");
    pv_kv_t a, b;
    build_arena(&a, 32);
    uint32_t n = 0;
    ck_assert_msg(pv_kvstore_save(&a, MODEL_ID, path, &n, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(n, 7);
    ck_assert_int_eq(access(path, F_OK), 0);
    ck_assert_int_eq(pv_kv_init(&b, N_LAYER, KV_DIM, 32, err, sizeof err), 0);
    ck_assert_msg(pv_kvstore_load(&b, MODEL_ID, path, &n, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(n, 7);
    ck_assert_uint_eq(b.n_cached, 7);
    ck_assert_uint_eq(pv_kv_used_bytes(&b), 0);
    /* the same lookups find the same contents: a's 4 attachable blocks, b's 3 (each leaves a token) */
    ck_assert_uint_eq(same_prefix(&a, &b, ta, 80), 64);
    ck_assert_uint_eq(same_prefix(&a, &b, tb, 64), 48);
    ck_assert_uint_eq(same_prefix(&a, &b, ta, 40), 32);
    /* a load needs an untouched arena */
    ck_assert_int_eq(pv_kvstore_load(&b, MODEL_ID, path, &n, err, sizeof err), PV_EINVAL);
    /* loaded blocks are ordinary cached blocks, evicted least recently used first: a's last two go
     * (in a fresh load: the lookups above made their blocks the most recent) */
    pv_kv_close(&b);
    ck_assert_int_eq(pv_kv_init(&b, N_LAYER, KV_DIM, 32, err, sizeof err), 0);
    ck_assert_int_eq(pv_kvstore_load(&b, MODEL_ID, path, &n, err, sizeof err), 0);
    pv_seq_t big;
    ck_assert_int_eq(pv_seq_init(&big, 32 * PV_KV_BLOCK), 0);
    ck_assert_int_eq(pv_kv_reserve(&b, &big, 27 * PV_KV_BLOCK), 0);
    ck_assert_uint_eq(b.n_evicted, 2);
    ck_assert_uint_eq(same_prefix(&a, &b, ta, 80), 48);
    ck_assert_uint_eq(same_prefix(&a, &b, tb, 64), 48);
    ck_assert_int_eq(pv_kv_reserve(&b, &big, 32 * PV_KV_BLOCK), 0);
    ck_assert_uint_eq(b.n_cached, 0);
    ck_assert_uint_eq(b.n_evicted, 7);
    pv_kv_release(&b, &big);
    pv_seq_close(&big);
    pv_kv_close(&a);
    pv_kv_close(&b);
    remove_dir();
}
END_TEST

/* An arena with room for 3 blocks takes the 3 most recently used: b's chain. */
START_TEST(test_budget_most_recent_first) {
    char err[PV_ERRLEN], path[128];
    make_dir();
    file_in_dir(path, sizeof path, "a.kvcache");
    pv_kv_t a, c;
    build_arena(&a, 32);
    ck_assert_int_eq(pv_kvstore_save(&a, MODEL_ID, path, NULL, err, sizeof err), 0);
    ck_assert_int_eq(pv_kv_init(&c, N_LAYER, KV_DIM, 3, err, sizeof err), 0);
    uint32_t n = 0;
    ck_assert_msg(pv_kvstore_load(&c, MODEL_ID, path, &n, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(same_prefix(&a, &c, tb, 64), 48);
    ck_assert_uint_eq(same_prefix(&a, &c, ta, 80), 32);
    pv_kv_close(&a);
    pv_kv_close(&c);
    remove_dir();
}
END_TEST

static void write_file(const char *path, const unsigned char *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* Loads path into a fresh arena (of kv_dim): the code, and the arena must stay empty on failure. */
static int load_fresh(const char *path, uint32_t kv_dim, uint64_t id) {
    char err[PV_ERRLEN];
    pv_kv_t kv;
    ck_assert_int_eq(pv_kv_init(&kv, N_LAYER, kv_dim, 32, err, sizeof err), 0);
    int rc = pv_kvstore_load(&kv, id, path, NULL, err, sizeof err);
    if (rc) {
        ck_assert_uint_eq(kv.n_cached, 0);
        ck_assert_uint_eq(kv.n_free, kv.n_blocks);
        ck_assert_msg(strstr(err, path) != NULL, "the message names the file: %s", err);
    }
    pv_kv_close(&kv);
    return rc;
}

START_TEST(test_refusals) {
    char err[PV_ERRLEN], path[128], bad[128];
    make_dir();
    file_in_dir(path, sizeof path, "a.kvcache");
    file_in_dir(bad, sizeof bad, "b.kvcache");
    pv_kv_t a;
    build_arena(&a, 32);
    ck_assert_int_eq(pv_kvstore_save(&a, MODEL_ID, path, NULL, err, sizeof err), 0);
    pv_kv_close(&a);
    size_t len = 0;
    unsigned char *img = (unsigned char *)tu_read_file(path, &len);
    ck_assert_ptr_nonnull(img);

    ck_assert_int_eq(load_fresh(path, KV_DIM, MODEL_ID), 0);
    ck_assert_int_eq(load_fresh(bad, KV_DIM, MODEL_ID), PV_ENOTFOUND);      /* no file yet */
    ck_assert_int_eq(load_fresh(path, KV_DIM, MODEL_ID + 1), PV_EINVAL);    /* another model */
    ck_assert_int_eq(load_fresh(path, KV_DIM * 2, MODEL_ID), PV_EINVAL);    /* another KV shape */
    write_file(bad, img, 0);
    ck_assert_int_eq(load_fresh(bad, KV_DIM, MODEL_ID), PV_ECORRUPT);       /* empty */
    write_file(bad, img, len - 1);
    ck_assert_int_eq(load_fresh(bad, KV_DIM, MODEL_ID), PV_ECORRUPT);       /* truncated */
    write_file(bad, img, 100);
    ck_assert_int_eq(load_fresh(bad, KV_DIM, MODEL_ID), PV_ECORRUPT);       /* truncated in the first record */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, img, len);
    longer[len] = 0;
    write_file(bad, longer, len + 1);
    ck_assert_int_eq(load_fresh(bad, KV_DIM, MODEL_ID), PV_ECORRUPT);       /* trailing bytes */
    free(longer);
    /* any one byte changed, anywhere (header, hashes, tokens, checksums, keys, values), is caught */
    for (size_t off = 0; off < len; off += 1 + off / 16) {
        img[off] ^= 0x40;
        write_file(bad, img, len);
        img[off] ^= 0x40;
        int rc = load_fresh(bad, KV_DIM, MODEL_ID);
        ck_assert_msg(rc == PV_ECORRUPT || rc == PV_EINVAL, "byte %zu changed: loaded (%d)", off, rc);
    }
    /* a header that promises a huge number of records (its checksum no longer matching) reads nothing */
    uint64_t huge = UINT64_MAX / 2;
    memcpy(img + 32, &huge, sizeof huge);
    write_file(bad, img, len);
    ck_assert_int_eq(load_fresh(bad, KV_DIM, MODEL_ID), PV_ECORRUPT);
    free(img);
    remove_dir();
}
END_TEST

/* The model id: the same file gives the same id, another model another one. */
START_TEST(test_model_id) {
    char p1[512], p2[512], err[PV_ERRLEN];
    if (!tu_shared(p1, sizeof p1, "models/stories260K.gguf") ||
        !tu_shared(p2, sizeof p2, "models/tinyllama-v0-q4_0.gguf"))
        return;
    pv_model_t *m1, *m1b, *m2;
    ck_assert_msg(pv_model_load(p1, &m1, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(pv_model_load(p1, &m1b, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(pv_model_load(p2, &m2, err, sizeof err) == 0, "%s", err);
    pv_ctx_t *c1, *c1b, *c2;
    ck_assert_int_eq(pv_ctx_new(m1, 64, &c1, err, sizeof err), 0);
    ck_assert_int_eq(pv_ctx_new(m1b, 128, &c1b, err, sizeof err), 0);
    ck_assert_int_eq(pv_ctx_new(m2, 64, &c2, err, sizeof err), 0);
    ck_assert_uint_eq(pv_kvstore_model_id(m1, c1), pv_kvstore_model_id(m1b, c1b));
    ck_assert_uint_ne(pv_kvstore_model_id(m1, c1), pv_kvstore_model_id(m2, c2));
    pv_ctx_free(c1);
    pv_ctx_free(c1b);
    pv_ctx_free(c2);
    pv_model_free(m1);
    pv_model_free(m1b);
    pv_model_free(m2);
}
END_TEST

/* Through the model: a prefix computed in one context, saved, loaded into
 * another, continues to the logits of computing everything from scratch. */
START_TEST(test_restored_prefix_equals_scratch) {
    char path[512], file[128], err[PV_ERRLEN];
    if (!tu_shared(path, sizeof path, "models/stories260K.gguf")) return;
    make_dir();
    file_in_dir(file, sizeof file, "a.kvcache");
    pv_model_t *m;
    ck_assert_msg(pv_model_load(path, &m, err, sizeof err) == 0, "%s", err);
    int32_t t[70];
    for (int i = 0; i < 70; i++) t[i] = (int32_t)((i * 53 + 5) % 512);
    float want[512], got[512];
    pv_ctx_t *c, *d;
    /* from scratch, in passes short enough to take the same attention order as one token at a time */
    ck_assert_int_eq(pv_ctx_new_arena(m, 128, 0, 8, &c, err, sizeof err), 0);
    ck_assert_int_eq(pv_prefill(c, t, 70, 0, want), 0);
    pv_ctx_free(c);

    ck_assert_int_eq(pv_ctx_new_arena(m, 128, 16 * PV_KV_BLOCK, 8, &c, err, sizeof err), 0);
    pv_seq_t s;
    ck_assert_int_eq(pv_seq_init(&s, 128), 0);
    for (uint32_t i = 0; i < 50; i++) { /* 3 full blocks */
        pv_batch_entry_t e = {&s, i, t[i], NULL};
        ck_assert_int_eq(pv_forward_batch(c, &e, 1), 0);
    }
    pv_kv_register(pv_ctx_kv(c), &s, t, 50);
    pv_kv_release(pv_ctx_kv(c), &s);
    ck_assert_int_eq(pv_kvstore_save(pv_ctx_kv(c), pv_kvstore_model_id(m, c), file, NULL, err, sizeof err), 0);
    pv_ctx_free(c);

    ck_assert_int_eq(pv_ctx_new_arena(m, 128, 16 * PV_KV_BLOCK, 8, &d, err, sizeof err), 0);
    uint32_t n = 0;
    ck_assert_msg(pv_kvstore_load(pv_ctx_kv(d), pv_kvstore_model_id(m, d), file, &n, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(pv_kv_attach_prefix(pv_ctx_kv(d), &s, t, 70), 48);
    for (uint32_t i = 48; i < 70; i++) {
        pv_batch_entry_t e = {&s, i, t[i], i == 69 ? got : NULL};
        ck_assert_int_eq(pv_forward_batch(d, &e, 1), 0);
    }
    ck_assert_msg(memcmp(want, got, sizeof want) == 0, "restored prefix: logits differ from scratch");
    pv_kv_release(pv_ctx_kv(d), &s);
    pv_seq_close(&s);
    pv_ctx_free(d);
    pv_model_free(m);
    remove_dir();
}
END_TEST

Suite *kvstore_suite(void) {
    Suite *s = suite_create("kvstore");
    TCase *tc = tcase_create("kvstore");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_budget_most_recent_first);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_model_id);
    tcase_add_test(tc, test_restored_prefix_equals_scratch);
    suite_add_tcase(s, tc);
    return s;
}
