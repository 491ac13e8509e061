/* model.c - bind a GGUF file's tensors to the llama architecture, checking every shape. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (hp->n_embd % hp->n_head != 0 || hp->n_head % hp->n_head_kv != 0)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %u heads (%u kv) do not divide width %u", f->path, hp->n_head,
                         hp->n_head_kv, hp->n_embd);
    hp->head_dim = hp->n_embd / hp->n_head;
    if ((rc = arch_u32(f, arch, "rope.dimension_count", &hp->n_rot, 0, hp->head_dim, err, errlen))) return rc;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: rope.dimension_count %u does not fit head size %u", f->path,
                         hp->n_rot, hp->head_dim);
    if (!(hp->norm_eps > 0.0f && hp->norm_eps < 1.0f) || !(hp->rope_base > 0.0f))
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: bad norm epsilon or rope base", f->path);
    if (hp->n_ctx_train == 0) hp->n_ctx_train = 2048;
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
    w->t = t;
    w->n_rows = n_rows;
    w->n_cols = n_cols;
    return 0;
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

static int bind_layer(const pv_model_t *m, uint32_t il, pv_layer_t *L, char *err, size_t errlen) {
    const gguf_file_t *f = m->file;
    const pv_hparams_t *hp = &m->hp;
    int64_t d = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim, kv = (int64_t)hp->n_head_kv * hp->head_dim;
    char name[GGUF_MAX_NAME];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%u." suffix, il), name)
    int rc;
    if ((rc = bind_norm(f, NAME("attn_norm.weight"), d, &L->attn_norm, err, errlen)) ||
        (rc = bind_weight(f, NAME("attn_q.weight"), d, q, &L->wq, err, errlen)) ||
        (rc = bind_weight(f, NAME("attn_k.weight"), d, kv, &L->wk, err, errlen)) ||
        (rc = bind_weight(f, NAME("attn_v.weight"), d, kv, &L->wv, err, errlen)) ||
        (rc = bind_weight(f, NAME("attn_output.weight"), q, d, &L->wo, err, errlen)) ||
        (rc = bind_norm(f, NAME("ffn_norm.weight"), d, &L->ffn_norm, err, errlen)) ||
        (rc = bind_weight(f, NAME("ffn_gate.weight"), d, hp->n_ff, &L->w_gate, err, errlen)) ||
        (rc = bind_weight(f, NAME("ffn_up.weight"), d, hp->n_ff, &L->w_up, err, errlen)) ||
        (rc = bind_weight(f, NAME("ffn_down.weight"), hp->n_ff, d, &L->w_down, err, errlen)))
        return rc;
#undef NAME
    return 0;
}

static int bind_model(pv_model_t *m, char *err, size_t errlen) {
    const gguf_file_t *f = m->file;
    const pv_hparams_t *hp = &m->hp;
    int rc;
    if ((rc = bind_weight(f, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->tok_embd, err, errlen)) ||
        (rc = bind_norm(f, "output_norm.weight", hp->n_embd, &m->output_norm, err, errlen)))
        return rc;
    m->tied_output = gguf_find_tensor(f, "output.weight") == NULL;
    if (m->tied_output) m->output = m->tok_embd;
    else if ((rc = bind_weight(f, "output.weight", hp->n_embd, hp->n_vocab, &m->output, err, errlen))) return rc;
    if (!(m->layers = calloc(hp->n_layer, sizeof *m->layers))) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    for (uint32_t il = 0; il < hp->n_layer; il++)
        if ((rc = bind_layer(m, il, &m->layers[il], err, errlen))) return rc;
    return 0;
}

int pv_model_load(const char *path, pv_model_t **out, char *err, size_t errlen) {
    *out = NULL;
    pv_model_t *m = calloc(1, sizeof *m);
    if (!m) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    int rc = gguf_open(path, &m->file, err, errlen);
    if (rc) goto fail;
    if ((rc = pv_hparams_read(m->file, &m->hp, err, errlen))) goto fail;
    if (strcmp(m->hp.arch, "llama") != 0) {
        rc = pv_errorf(err, errlen, PV_EUNSUPPORTED, "%s: architecture '%s' is not supported (supported: llama)", path,
                       m->hp.arch);
        goto fail;
    }
    if ((rc = pv_vocab_load(m->file, &m->vocab, err, errlen))) goto fail;
    m->hp.n_vocab = (uint32_t)pv_vocab_n_tokens(m->vocab);
    if ((rc = bind_model(m, err, errlen))) goto fail;
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
            free(m->layers[il].attn_norm);
            free(m->layers[il].ffn_norm);
        }
    free(m->layers);
    free(m->output_norm);
    pv_vocab_free(m->vocab);
    gguf_close(m->file);
    free(m);
}
