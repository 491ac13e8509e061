/* model.c - bind a GGUF file's tensors to an architecture of arch.h, checking every shape. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/err.h"
#include "kernels/kern.h"

/* Reads {arch}.{suffix} as u32; absent -> def (or an error when required). */
static int arch_u32(const gguf_file_t *f, const char *arch, const char *suffix, uint32_t *out, int required,
                    uint32_t def, char *err, size_t errlen) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_u32(f, key, out);
    if (rc == PV_ENOTFOUND && !required) {
        *out = def;
        return 0;
    }
    if (rc == PV_ENOTFOUND) return pv_errorf(err, errlen, PV_ECORRUPT, "%s: missing key %s", f->path, key);
    if (rc) return pv_errorf(err, errlen, PV_ECORRUPT, "%s: key %s is not an unsigned 32-bit integer", f->path, key);
    return 0;
}

static int arch_f32(const gguf_file_t *f, const char *arch, const char *suffix, float *out, float def, char *err,
                    size_t errlen) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_f32(f, key, out);
    if (rc == PV_ENOTFOUND) *out = def;
    else if (rc) return pv_errorf(err, errlen, PV_ECORRUPT, "%s: key %s is not a number", f->path, key);
    return 0;
}

int pv_hparams_read(const gguf_file_t *f, pv_hparams_t *hp, char *err, size_t errlen) {
    memset(hp, 0, sizeof *hp);
    const char *arch = gguf_get_str(f, "general.architecture");
    if (!arch) return pv_errorf(err, errlen, PV_ECORRUPT, "%s: missing general.architecture", f->path);
    if (strlen(arch) >= sizeof hp->arch)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: architecture name is too long", f->path);
    strcpy(hp->arch, arch);
    int rc = 0;
    if ((rc = arch_u32(f, arch, "context_length", &hp->n_ctx_train, 0, 2048, err, errlen)) ||
        (rc = arch_u32(f, arch, "embedding_length", &hp->n_embd, 1, 0, err, errlen)) ||
        (rc = arch_u32(f, arch, "block_count", &hp->n_layer, 1, 0, err, errlen)) ||
        (rc = arch_u32(f, arch, "feed_forward_length", &hp->n_ff, 1, 0, err, errlen)) ||
        (rc = arch_u32(f, arch, "attention.head_count", &hp->n_head, 1, 0, err, errlen)) ||
        (rc = arch_u32(f, arch, "attention.head_count_kv", &hp->n_head_kv, 0, hp->n_head, err, errlen)) ||
        (rc = arch_f32(f, arch, "rope.freq_base", &hp->rope_base, 10000.0f, err, errlen)) ||
        (rc = arch_f32(f, arch, "attention.layer_norm_rms_epsilon", &hp->norm_eps, 1e-5f, err, errlen)))
        return rc;
    if (hp->n_embd == 0 || hp->n_layer == 0 || hp->n_head == 0 || hp->n_head_kv == 0 || hp->n_ff == 0)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: a model dimension is zero", f->path);
    if (hp->n_embd > 1u << 20 || hp->n_layer > 4096 || hp->n_ff > 1u << 22 || hp->n_head > hp->n_embd)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: model dimensions are implausibly large", f->path);
    /* head size: attention.key_length where the file gives it (qwen3), else width / heads */
    if ((rc = arch_u32(f, arch, "attention.key_length", &hp->head_dim, 0, 0, err, errlen))) return rc;
    if (hp->head_dim == 0 && hp->n_embd % hp->n_head == 0) hp->head_dim = hp->n_embd / hp->n_head;
    if (hp->head_dim == 0 || hp->head_dim > 4096 || hp->n_head % hp->n_head_kv != 0)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %u heads (%u kv) of size %u do not fit width %u", f->path,
                         hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_embd);
    if ((rc = arch_u32(f, arch, "rope.dimension_count", &hp->n_rot, 0, hp->head_dim, err, errlen))) return rc;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: rope.dimension_count %u does not fit head size %u", f->path,
                         hp->n_rot, hp->head_dim);
    if (!(hp->norm_eps > 0.0f && hp->norm_eps < 1.0f) || !(hp->rope_base > 0.0f))
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: bad norm epsilon or rope base", f->path);
    if (hp->n_ctx_train == 0) hp->n_ctx_train = 2048;
    const pv_arch_t *a = pv_arch_find(arch);
    hp->rope_neox = a ? a->rope_neox : 0;
    if ((rc = arch_u32(f, arch, "rope.scaling.original_context_length", &hp->n_ctx_orig, 0, 0, err, errlen)) ||
        (rc = arch_f32(f, arch, "rope.scaling.attn_factor", &hp->rope_attn_factor, 1.0f, err, errlen)))
        return rc;
    if (!(hp->rope_attn_factor > 0.0f && hp->rope_attn_factor < 100.0f))
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: bad rope.scaling.attn_factor", f->path);
    return 0;
}

/* Binds a 2-D weight of shape (n_cols, n_rows) (ne order) that pensieve can compute with. */
static int bind_weight(const gguf_file_t *f, const char *name, int64_t n_cols, int64_t n_rows, pv_weight_t *w,
                       char *err, size_t errlen) {
    const gguf_tensor_t *t = gguf_find_tensor(f, name);
    if (!t) return pv_errorf(err, errlen, PV_ECORRUPT, "%s: missing tensor %s", f->path, name);
    if (t->n_dims > 2 || t->ne[0] != n_cols || t->ne[1] != n_rows)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: tensor %s has shape [%lld, %lld], expected [%lld, %lld]",
                         f->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)n_cols,
                         (long long)n_rows);
    if (!pv_kern_supported(t->type))
        return pv_errorf(err, errlen, PV_EUNSUPPORTED, "%s: tensor %s has type %s, which pensieve cannot compute with",
                         f->path, name, pv_type_name(t->type));
    *w = (pv_weight_t){t, n_rows, n_cols, t->data, PV_LAYOUT_ROWS};
    return 0;
}

/* Rows [r0, r0 + n_rows) of a bound weight, as a weight of its own (fused tensors). */
static pv_weight_t weight_rows(const pv_weight_t *w, int64_t r0, int64_t n_rows, gguf_tensor_t *view) {
    *view = *w->t;
    view->data = (const uint8_t *)w->t->data + (size_t)r0 * pv_type_row_size(w->t->type, w->n_cols);
    view->ne[1] = n_rows;
    view->n_elems = n_rows * w->n_cols;
    view->n_bytes = (size_t)n_rows * pv_type_row_size(w->t->type, w->n_cols);
    return (pv_weight_t){view, n_rows, w->n_cols, view->data, PV_LAYOUT_ROWS};
}

/* Copies a 1-D norm weight of n elements into an owned float array. */
static int bind_norm(const gguf_file_t *f, const char *name, int64_t n, float **out, char *err, size_t errlen) {
    pv_weight_t w;
    int rc = bind_weight(f, name, n, 1, &w, err, errlen);
    if (rc) return rc;
    if (!(*out = malloc((size_t)n * sizeof **out))) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    pv_get_row(w.t->type, w.t->data, 0, n, *out);
    return 0;
}

#define NAME(suffix) (snprintf(name, sizeof name, "blk.%u." suffix, il), name)

/* q, k, v projections: separate tensors, or row ranges of attn_qkv. */
static int bind_qkv(pv_model_t *m, uint32_t il, pv_layer_t *L, char *err, size_t errlen) {
    const gguf_file_t *f = m->file;
    const pv_hparams_t *hp = &m->hp;
    int64_t d = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim, kv = (int64_t)hp->n_head_kv * hp->head_dim;
    char name[GGUF_MAX_NAME];
    int rc;
    if (m->arch->flags & PV_ARCH_FUSED_QKV) {
        pv_weight_t qkv;
        if ((rc = bind_weight(f, NAME("attn_qkv.weight"), d, q + 2 * kv, &qkv, err, errlen))) return rc;
        gguf_tensor_t *views = m->views + (size_t)il * PV_VIEWS_PER_LAYER;
        L->wq = weight_rows(&qkv, 0, q, &views[0]);
        L->wk = weight_rows(&qkv, q, kv, &views[1]);
        L->wv = weight_rows(&qkv, q + kv, kv, &views[2]);
    } else if ((rc = bind_weight(f, NAME("attn_q.weight"), d, q, &L->wq, err, errlen)) ||
               (rc = bind_weight(f, NAME("attn_k.weight"), d, kv, &L->wk, err, errlen)) ||
               (rc = bind_weight(f, NAME("attn_v.weight"), d, kv, &L->wv, err, errlen))) {
        return rc;
    }
    if ((m->arch->flags & PV_ARCH_QKV_BIAS) &&
        ((rc = bind_norm(f, NAME("attn_q.bias"), q, &L->bq, err, errlen)) ||
         (rc = bind_norm(f, NAME("attn_k.bias"), kv, &L->bk, err, errlen)) ||
         (rc = bind_norm(f, NAME("attn_v.bias"), kv, &L->bv, err, errlen))))
        return rc;
    if ((m->arch->flags & PV_ARCH_QK_NORM) &&
        ((rc = bind_norm(f, NAME("attn_q_norm.weight"), hp->head_dim, &L->q_norm, err, errlen)) ||
         (rc = bind_norm(f, NAME("attn_k_norm.weight"), hp->head_dim, &L->k_norm, err, errlen))))
        return rc;
    return 0;
}

/* gate and up projections: separate tensors, or the two halves of ffn_up. */
static int bind_gate_up(pv_model_t *m, uint32_t il, pv_layer_t *L, char *err, size_t errlen) {
    const gguf_file_t *f = m->file;
    int64_t d = m->hp.n_embd, ff = m->hp.n_ff;
    char name[GGUF_MAX_NAME];
    int rc;
    if (m->arch->flags & PV_ARCH_FUSED_UP) {
        pv_weight_t up;
        if ((rc = bind_weight(f, NAME("ffn_up.weight"), d, 2 * ff, &up, err, errlen))) return rc;
        gguf_tensor_t *views = m->views + (size_t)il * PV_VIEWS_PER_LAYER;
        L->w_gate = weight_rows(&up, 0, ff, &views[3]);
        L->w_up = weight_rows(&up, ff, ff, &views[4]);
        return 0;
    }
    if ((rc = bind_weight(f, NAME("ffn_gate.weight"), d, ff, &L->w_gate, err, errlen)) ||
        (rc = bind_weight(f, NAME("ffn_up.weight"), d, ff, &L->w_up, err, errlen)))
        return rc;
    return 0;
}

static int bind_layer(pv_model_t *m, uint32_t il, pv_layer_t *L, char *err, size_t errlen) {
    const gguf_file_t *f = m->file;
    const pv_hparams_t *hp = &m->hp;
    int64_t d = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim;
    char name[GGUF_MAX_NAME];
    int rc;
    if ((rc = bind_norm(f, NAME("attn_norm.weight"), d, &L->attn_norm, err, errlen)) ||
        (rc = bind_qkv(m, il, L, err, errlen)) ||
        (rc = bind_weight(f, NAME("attn_output.weight"), q, d, &L->wo, err, errlen)) ||
        (rc = bind_norm(f, NAME("ffn_norm.weight"), d, &L->ffn_norm, err, errlen)) ||
        (rc = bind_gate_up(m, il, L, err, errlen)) ||
        (rc = bind_weight(f, NAME("ffn_down.weight"), hp->n_ff, d, &L->w_down, err, errlen)))
        return rc;
    return 0;
}
#undef NAME

/* Optional per-frequency RoPE divisors of n_rot/2 floats: absent is fine. */
static int bind_rope_factors(const gguf_file_t *f, const char *name, uint32_t n_rot, float **out, char *err,
                             size_t errlen) {
    return gguf_find_tensor(f, name) ? bind_norm(f, name, n_rot / 2, out, err, errlen) : 0;
}

static int bind_model(pv_model_t *m, char *err, size_t errlen) {
    const gguf_file_t *f = m->file;
    const pv_hparams_t *hp = &m->hp;
    int rc;
    if ((rc = bind_rope_factors(f, "rope_freqs.weight", hp->n_rot, &m->rope_freqs, err, errlen)) ||
        (rc = bind_rope_factors(f, "rope_factors_long.weight", hp->n_rot, &m->rope_long, err, errlen)) ||
        (rc = bind_rope_factors(f, "rope_factors_short.weight", hp->n_rot, &m->rope_short, err, errlen)))
        return rc;
    if ((rc = bind_weight(f, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->tok_embd, err, errlen)) ||
        (rc = bind_norm(f, "output_norm.weight", hp->n_embd, &m->output_norm, err, errlen)))
        return rc;
    m->tied_output = gguf_find_tensor(f, "output.weight") == NULL;
    if (m->tied_output) m->output = m->tok_embd;
    else if ((rc = bind_weight(f, "output.weight", hp->n_embd, hp->n_vocab, &m->output, err, errlen))) return rc;
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    m->views = calloc((size_t)hp->n_layer * PV_VIEWS_PER_LAYER, sizeof *m->views);
    if (!m->layers || !m->views) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    for (uint32_t il = 0; il < hp->n_layer; il++)
        if ((rc = bind_layer(m, il, &m->layers[il], err, errlen))) return rc;
    return 0;
}

/* ---- repacking matmul weights (PV_LAYOUT_X8) ---------------------------------------- */

/* The weights that only matmuls read: every layer's projections, and the
 * output unless it is token_embd (which embedding lookups read by row).
 * Fused tensors appear as their row ranges. Returns the count (list holds
 * MATMULS_PER_LAYER per layer + 1). */
#define MATMULS_PER_LAYER 7
static size_t matmul_weights(pv_model_t *m, pv_weight_t **list) {
    size_t n = 0;
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        pv_layer_t *L = &m->layers[il];
        pv_weight_t *w[MATMULS_PER_LAYER] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < MATMULS_PER_LAYER; i++) list[n++] = w[i];
    }
    if (!m->tied_output) list[n++] = &m->output;
    return n;
}

static int repackable(const pv_weight_t *w) { return pv_x8_supported(w->t->type, w->n_rows, w->n_cols); }

static size_t weight_bytes(const pv_weight_t *w) { return (size_t)w->n_rows * pv_type_row_size(w->t->type, w->n_cols); }

/* The process no longer needs bytes [p, p + n) of the file mapping: the
 * whole pages inside the range leave its resident set (they would be read
 * back from the file if touched again). */
static void drop_file_pages(const gguf_file_t *f, const void *p, size_t n) {
    if (!f->mapped) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)p + n) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

#define HUGE_PAGE ((size_t)2 << 20)

/* n bytes of zeroed anonymous memory on a huge-page boundary, with
 * transparent huge pages asked for: the kernels stream through the weights,
 * and 4 KB pages would cost a TLB miss every 4 KB. *size receives the
 * rounded size to unmap. NULL when out of memory. */
static void *map_huge(size_t n, size_t *size) {
    *size = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    uint8_t *p = mmap(NULL, *size + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    uint8_t *a = (uint8_t *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    if (a + *size < p + *size + HUGE_PAGE) munmap(a + *size, (size_t)(p + *size + HUGE_PAGE - (a + *size)));
    madvise(a, *size, MADV_HUGEPAGE); /* a hint: without it the pages are 4 KB */
    return a;
}

#define REPACK_SLICE ((size_t)4 << 20) /* source bytes repacked before their pages are dropped */

/* Repacks w into dst a slice of row groups at a time, dropping each slice's
 * file pages once copied: the source and its copy are both resident for at
 * most one slice. */
static void repack_slices(const gguf_file_t *f, const pv_weight_t *w, uint8_t *dst) {
    size_t row_size = pv_type_row_size(w->t->type, w->n_cols);
    int64_t step = (int64_t)(REPACK_SLICE / (row_size * PV_X8_ROWS)) * PV_X8_ROWS;
    if (step < PV_X8_ROWS) step = PV_X8_ROWS;
    for (int64_t r0 = 0; r0 < w->n_rows; r0 += step) {
        int64_t rows = w->n_rows - r0 < step ? w->n_rows - r0 : step;
        const uint8_t *src = (const uint8_t *)w->data + (size_t)r0 * row_size;
        pv_x8_repack(w->t->type, src, rows, w->n_cols, dst + (size_t)r0 * row_size);
        drop_file_pages(f, src, (size_t)rows * row_size);
    }
}

/* Repacks the weights of matmul_weights that have an interleaved layout into
 * one anonymous mapping, slice by slice, dropping each slice's file pages as
 * soon as it is copied: resident memory never holds both copies of more
 * than a slice. */
static int repack_weights(pv_model_t *m, char *err, size_t errlen) {
    const char *env = getenv("PV_REPACK");
    if (env && strcmp(env, "0") == 0) return 0;
    pv_weight_t **list = malloc(((size_t)m->hp.n_layer * MATMULS_PER_LAYER + 1) * sizeof *list);
    if (!list) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    size_t n = matmul_weights(m, list), total = 0;
    for (size_t i = 0; i < n; i++)
        if (repackable(list[i])) total += weight_bytes(list[i]);
    if (total == 0) {
        free(list);
        return 0;
    }
    void *p = map_huge(total, &m->packed_size);
    if (!p) {
        free(list);
        return pv_errorf(err, errlen, PV_ENOMEM, "out of memory for %zu bytes of repacked weights", total);
    }
    m->packed = p;
    uint8_t *dst = p;
    for (size_t i = 0; i < n; i++) {
        pv_weight_t *w = list[i];
        if (!repackable(w)) continue;
        repack_slices(m->file, w, dst);
        w->data = dst;
        w->layout = PV_LAYOUT_X8;
        dst += weight_bytes(w);
    }
    mprotect(p, m->packed_size, PROT_READ); /* read-only from now on, like the file's pages */
    free(list);
    return 0;
}

int pv_model_load(const char *path, pv_model_t **out, char *err, size_t errlen) {
    *out = NULL;
    pv_model_t *m = calloc(1, sizeof *m);
    if (!m) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    int rc = gguf_open(path, &m->file, err, errlen);
    if (rc) goto fail;
    if ((rc = pv_hparams_read(m->file, &m->hp, err, errlen))) goto fail;
    if (!(m->arch = pv_arch_find(m->hp.arch))) {
        rc = pv_errorf(err, errlen, PV_EUNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)", path,
                       m->hp.arch, pv_arch_names());
        goto fail;
    }
    if ((rc = pv_vocab_load(m->file, &m->vocab, err, errlen))) goto fail;
    m->hp.n_vocab = (uint32_t)pv_vocab_n_tokens(m->vocab);
    if ((rc = bind_model(m, err, errlen)) || (rc = repack_weights(m, err, errlen))) goto fail;
    for (uint64_t i = 0; i < m->file->n_tensors; i++) m->n_params += (uint64_t)m->file->tensors[i].n_elems;
    *out = m;
    return 0;
fail:
    pv_model_free(m);
    return rc;
}

void pv_model_free(pv_model_t *m) {
    if (!m) return;
    if (m->layers)
        for (uint32_t il = 0; il < m->hp.n_layer; il++) {
            pv_layer_t *L = &m->layers[il];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->bq);
            free(L->bk);
            free(L->bv);
            free(L->q_norm);
            free(L->k_norm);
        }
    free(m->layers);
    free(m->views);
    free(m->rope_freqs);
    free(m->rope_long);
    free(m->rope_short);
    free(m->output_norm);
    if (m->packed) munmap(m->packed, m->packed_size);
    pv_vocab_free(m->vocab);
    gguf_close(m->file);
    free(m);
}
