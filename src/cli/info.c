/* info.c - `pensieve info MODEL.gguf [--json]`: what a model file holds.
 *
 * Works from the GGUF alone, so it also describes files the engine cannot
 * run (other architectures, unsupported types, vocab-only files). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "cli/cli.h"
#include "gguf/gguf.h"
#include "model/model.h"

/* jansson: json_object_set_new steals the value reference. */
static void set_u64(json_t *o, const char *k, uint64_t v) { json_object_set_new(o, k, json_integer((json_int_t)v)); }

static json_t *hparams_json(const gguf_file_t *f) {
    pv_hparams_t hp;
    char err[PV_ERRLEN];
    if (pv_hparams_read(f, &hp, err, sizeof err) != 0) return json_pack("{s:s}", "error", err);
    const pv_arch_t *a = pv_arch_find(hp.arch);
    json_t *o = json_pack("{s:b, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:s}", "supported", a != NULL,
                          "context_length", (json_int_t)hp.n_ctx_train, "embedding_length", (json_int_t)hp.n_embd,
                          "block_count", (json_int_t)hp.n_layer, "feed_forward_length", (json_int_t)hp.n_ff,
                          "head_count", (json_int_t)hp.n_head, "head_count_kv", (json_int_t)hp.n_head_kv,
                          "head_dim", (json_int_t)hp.head_dim, "rope_dimension_count", (json_int_t)hp.n_rot,
                          "rope_freq_base", (double)hp.rope_base, "rms_norm_eps", (double)hp.norm_eps, "rope_style",
                          hp.rope_neox ? "neox" : "pairs");
    /* what sets this architecture apart, as arch.h lists it */
    if (a && (a->flags & PV_ARCH_FUSED_QKV)) json_object_set_new(o, "fused_qkv", json_true());
    if (a && (a->flags & PV_ARCH_FUSED_UP)) json_object_set_new(o, "fused_gate_up", json_true());
    if (a && (a->flags & PV_ARCH_QKV_BIAS)) json_object_set_new(o, "qkv_bias", json_true());
    if (a && (a->flags & PV_ARCH_QK_NORM)) json_object_set_new(o, "qk_norm", json_true());
    if (gguf_find_tensor(f, "rope_freqs.weight")) json_object_set_new(o, "rope_freqs", json_true());
    if (gguf_find_tensor(f, "rope_factors_long.weight")) json_object_set_new(o, "long_rope", json_true());
    if (hp.n_ctx_orig) json_object_set_new(o, "original_context_length", json_integer(hp.n_ctx_orig));
    if (hp.rope_attn_factor != 1.0f) json_object_set_new(o, "rope_attn_factor", json_real(hp.rope_attn_factor));
    json_object_set_new(o, "tied_output", json_boolean(!gguf_find_tensor(f, "output.weight")));
    return o;
}

static json_t *types_json(const gguf_file_t *f, uint64_t *n_params) {
    uint64_t count[PV_TYPE_COUNT] = {0}, bytes[PV_TYPE_COUNT] = {0};
    *n_params = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor_t *t = &f->tensors[i];
        count[t->type]++;
        bytes[t->type] += t->n_bytes;
        *n_params += (uint64_t)t->n_elems;
    }
    json_t *types = json_object();
    for (int t = 0; t < PV_TYPE_COUNT; t++)
        if (count[t]) json_object_set_new(types, pv_type_name((uint32_t)t), json_pack("{s:I, s:I}", "tensors", (json_int_t)count[t], "bytes", (json_int_t)bytes[t]));
    return types;
}

static json_t *special_id(const gguf_file_t *f, const char *key) {
    uint32_t v;
    return gguf_get_u32(f, key, &v) == 0 ? json_integer(v) : json_null();
}

static json_t *tokenizer_json(const gguf_file_t *f) {
    const char *model = gguf_get_str(f, "tokenizer.ggml.model");
    const gguf_kv_t *tokens = gguf_find_kv(f, "tokenizer.ggml.tokens");
    const char *pre = gguf_get_str(f, "tokenizer.ggml.pre");
    const char *kind = !model ? "none"
                       : strcmp(model, "llama") == 0 ? "SentencePiece"
                       : strcmp(model, "gpt2") == 0  ? "byte-level BPE"
                       : strcmp(model, "bert") == 0  ? "WordPiece"
                                                     : "unknown";
    json_t *o = json_pack("{s:s, s:s?, s:s?, s:I}", "kind", kind, "model", model, "pre", pre, "vocab_size",
                          (json_int_t)(tokens && tokens->type == GGUF_VT_ARRAY ? tokens->n : 0));
    json_object_set_new(o, "bos_token_id", special_id(f, "tokenizer.ggml.bos_token_id"));
    json_object_set_new(o, "eos_token_id", special_id(f, "tokenizer.ggml.eos_token_id"));
    json_object_set_new(o, "unknown_token_id", special_id(f, "tokenizer.ggml.unknown_token_id"));
    json_object_set_new(o, "padding_token_id", special_id(f, "tokenizer.ggml.padding_token_id"));
    json_object_set_new(o, "chat_template", json_boolean(gguf_get_str(f, "tokenizer.chat_template") != NULL));
    return o;
}

static json_t *info_json(const gguf_file_t *f) {
    uint64_t n_params;
    json_t *types = types_json(f, &n_params);
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(f->path));
    set_u64(o, "file_size", f->size);
    set_u64(o, "gguf_version", f->version);
    const char *arch = gguf_get_str(f, "general.architecture");
    json_object_set_new(o, "architecture", arch ? json_string(arch) : json_null());
    const char *name = gguf_get_str(f, "general.name");
    json_object_set_new(o, "name", name ? json_string(name) : json_null());
    set_u64(o, "n_tensors", f->n_tensors);
    set_u64(o, "n_kv", f->n_kv);
    set_u64(o, "n_params", n_params);
    json_object_set_new(o, "hparams", f->n_tensors ? hparams_json(f) : json_null());
    json_object_set_new(o, "tensor_types", types);
    json_object_set_new(o, "tokenizer", tokenizer_json(f));
    return o;
}

static void print_special(const json_t *tok, const char *key, const char *label) {
    json_t *v = json_object_get(tok, key);
    if (json_is_integer(v)) printf(" %s=%lld", label, (long long)json_integer_value(v));
}

static void print_text(const json_t *o) {
    printf("file:          %s (%lld bytes, GGUF v%lld)\n", json_string_value(json_object_get(o, "file")),
           (long long)json_integer_value(json_object_get(o, "file_size")),
           (long long)json_integer_value(json_object_get(o, "gguf_version")));
    const char *arch = json_string_value(json_object_get(o, "architecture"));
    const char *name = json_string_value(json_object_get(o, "name"));
    printf("architecture:  %s%s%s%s\n", arch ? arch : "(none)", name ? " (" : "", name ? name : "", name ? ")" : "");
    printf("parameters:    %lld in %lld tensors\n", (long long)json_integer_value(json_object_get(o, "n_params")),
           (long long)json_integer_value(json_object_get(o, "n_tensors")));
    json_t *hp = json_object_get(o, "hparams");
    const char *key;
    json_t *v;
    if (json_is_object(hp)) {
        printf("hparams:      ");
        json_object_foreach(hp, key, v) {
            if (json_is_string(v)) printf(" %s=%s", key, json_string_value(v));
            else if (json_is_boolean(v)) printf(" %s=%s", key, json_is_true(v) ? "yes" : "no");
            else if (json_is_integer(v)) printf(" %s=%lld", key, (long long)json_integer_value(v));
            else printf(" %s=%g", key, json_real_value(v));
        }
        printf("\n");
    }
    printf("tensor types: ");
    json_object_foreach(json_object_get(o, "tensor_types"), key, v) {
        printf(" %s: %lld (%lld bytes)", key, (long long)json_integer_value(json_object_get(v, "tensors")),
               (long long)json_integer_value(json_object_get(v, "bytes")));
    }
    printf("\n");
    json_t *tok = json_object_get(o, "tokenizer");
    const char *model = json_string_value(json_object_get(tok, "model"));
    printf("tokenizer:     %s%s%s%s, %lld tokens", json_string_value(json_object_get(tok, "kind")), model ? " (" : "",
           model ? model : "", model ? ")" : "", (long long)json_integer_value(json_object_get(tok, "vocab_size")));
    print_special(tok, "bos_token_id", "bos");
    print_special(tok, "eos_token_id", "eos");
    print_special(tok, "unknown_token_id", "unk");
    print_special(tok, "padding_token_id", "pad");
    printf("\nchat template: %s\n", json_is_true(json_object_get(tok, "chat_template")) ? "present" : "absent");
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) as_json = 1;
        else if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) path = argv[++i];
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else {
            fprintf(stderr, "usage: pensieve info MODEL.gguf [--json]\n");
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: pensieve info MODEL.gguf [--json]\n");
        return 2;
    }
    char err[PV_ERRLEN];
    gguf_file_t *f;
    if (gguf_open(path, &f, err, sizeof err) != 0) {
        fprintf(stderr, "pensieve: %s\n", err);
        return 1;
    }
    json_t *o = info_json(f);
    if (as_json) {
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s) puts(s);
        free(s);
    } else {
        print_text(o);
    }
    json_decref(o);
    gguf_close(f);
    return 0;
}
