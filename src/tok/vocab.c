/* vocab.c - a vocabulary: loading from GGUF, lookup by text, special tokens
 * and decoding. The encoders are in spm.c (SentencePiece) and bpe.c
 * (byte-level BPE), behind tokenize.c.
 *
 * Behaviour follows llama.cpp's llama_vocab, including its load-time
 * adjustments:
 *   - default ids BOS 1, EOS 2, UNK 0 for SentencePiece; BOS 11, EOS 11 and
 *     no UNK for BPE (dropped when outside the vocabulary);
 *   - BPE: add_bos_token defaults to false except for the Llama 3 family,
 *     add_space_prefix to false;
 *   - empty token texts become "[EMPTY_<id>]", duplicate texts are refused;
 *   - EOT/EOM/FIM tokens are found by their text when no key names them, and
 *     those tokens (and every end-of-generation text such as "</s>" or
 *     "<|end|>") are forced to CONTROL type;
 *   - for models whose general.name contains "phi-3"/"phi3", special tokens
 *     swallow the whitespace after them when matched in text (RSTRIP).
 * Where llama.cpp only warns about a bad file (a special id out of range) we
 * refuse it: GGUF contents are hostile. An id of 0xFFFFFFFF means "none". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tok/tok_internal.h"
#include "tok/utf8.h"

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES "tokenizer.ggml.token_type"
#define KEY_ADD_BOS "tokenizer.ggml.add_bos_token"
#define KEY_ADD_EOS "tokenizer.ggml.add_eos_token"
#define KEY_ADD_SPACE "tokenizer.ggml.add_space_prefix"
#define KEY_BOS "tokenizer.ggml.bos_token_id"
#define KEY_EOS "tokenizer.ggml.eos_token_id"

/* ------------------------------------------------------------------ helpers */

/* Copies at most cap-1 bytes of src into dst for a message, '?' for bytes
 * that are not printable ASCII (hostile names must not garble a log line). */
static const char *printable(char *dst, size_t cap, const char *src, size_t len) {
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    dst[n] = 0;
    return dst;
}

static int is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_val(char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* The byte a "<0xNN>" text stands for, or -1 when the text has another form. */
static int byte_of_text(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>' || !is_hex(s[3]) || !is_hex(s[4])) return -1;
    return hex_val(s[3]) << 4 | hex_val(s[4]);
}

/* Case-insensitive (ASCII) substring test. */
static int contains_nocase(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && (hay[i] | 0x20) == (needle[i] | 0x20)) i++;
        if (i == n) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ model kind */

typedef struct {
    const char *model; /* tokenizer.ggml.model value */
    const char *why;   /* what the user is told */
} refusal_t;

static const refusal_t refusals[] = {
    {"gemma4", "the Gemma 4 tokenizer is not supported yet"},
    {"bert", "WordPiece (BERT) tokenizers are not supported"},
    {"t5", "Unigram (T5) tokenizers are not supported"},
    {"rwkv", "the RWKV tokenizer is not supported"},
    {"plamo2", "the PLaMo-2 tokenizer is not supported"},
    {"no_vocab", "the file has no vocabulary"},
    {"none", "the file has no vocabulary"},
};

/* Sets *kind from tokenizer.ggml.model, or refuses the file. */
static int check_model(const gguf_file_t *f, pv_vocab_kind_t *kind, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find_kv(f, KEY_MODEL);
    if (!kv)
        return pv_errorf(err, errlen, PV_ENOTFOUND, "%s: %s is missing (no tokenizer in this file)", f->path, KEY_MODEL);
    if (kv->type != GGUF_VT_STRING)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s must be a string, not %s", f->path, KEY_MODEL,
                         gguf_vtype_name(kv->type));
    if (kv->str_len == 5 && memcmp(kv->str, "llama", 5) == 0) {
        *kind = PV_VOCAB_SPM;
        return 0;
    }
    if (kv->str_len == 4 && memcmp(kv->str, "gpt2", 4) == 0) {
        *kind = PV_VOCAB_BPE;
        return 0;
    }
    char name[48];
    printable(name, sizeof name, kv->str, kv->str_len);
    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++)
        if (strcmp(kv->str, refusals[i].model) == 0 && strlen(refusals[i].model) == kv->str_len)
            return pv_errorf(err, errlen, PV_EUNSUPPORTED,
                             "%s: %s \"%s\": %s (\"llama\" SentencePiece and \"gpt2\" byte-level BPE are)", f->path,
                             KEY_MODEL, name, refusals[i].why);
    return pv_errorf(err, errlen, PV_EUNSUPPORTED,
                     "%s: %s \"%s\" is an unknown tokenizer (\"llama\" SentencePiece and \"gpt2\" byte-level BPE are "
                     "supported)",
                     f->path, KEY_MODEL, name);
}

/* The BPE pre-tokenizer named by tokenizer.ggml.pre ("default" when absent,
 * as llama.cpp takes it); an unknown name is refused. */
static int load_pretok(const gguf_file_t *f, pv__pretok_t **out, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find_kv(f, KEY_PRE);
    if (kv && kv->type != GGUF_VT_STRING)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s must be a string, not %s", f->path, KEY_PRE,
                         gguf_vtype_name(kv->type));
    const char *name = kv ? kv->str : "default";
    return pv__pretok_new(name, kv ? kv->str_len : strlen(name), f->path, out, err, errlen);
}

/* ------------------------------------------------------------------ token texts, scores, types */

/* Length a token's text takes in the pool (empty texts get a placeholder). */
static size_t text_len(size_t len, uint32_t id) {
    return len ? len : (size_t)snprintf(NULL, 0, "[EMPTY_%u]", id);
}

static int load_texts(pv_vocab_t *v, const gguf_file_t *f, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find_kv(f, KEY_TOKENS);
    if (!kv) return pv_errorf(err, errlen, PV_ENOTFOUND, "%s: %s is missing", f->path, KEY_TOKENS);
    if (kv->type != GGUF_VT_ARRAY || kv->el_type != GGUF_VT_STRING)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s must be an array of strings", f->path, KEY_TOKENS);
    if (kv->n == 0 || kv->n > PV__VOCAB_MAX_TOKENS)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s has %llu entries (expected 1 to %d)", f->path, KEY_TOKENS,
                         (unsigned long long)kv->n, PV__VOCAB_MAX_TOKENS);
    v->n_tokens = (int32_t)kv->n;
    /* first pass: sizes; the GGUF reader has bounded every string by the file */
    size_t pos = 0, len, need = 0;
    for (uint32_t i = 0; i < kv->n; i++) {
        gguf_arr_str_next(kv, &pos, &len);
        if (len > PV__VOCAB_MAX_TOKEN_BYTES)
            return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s: token %u is %zu bytes long (limit %d)", f->path,
                             KEY_TOKENS, i, len, PV__VOCAB_MAX_TOKEN_BYTES);
        need += text_len(len, i) + 1;
        if (need > UINT32_MAX)
            return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s: token texts exceed 4 GiB", f->path, KEY_TOKENS);
    }
    v->tokens = calloc((size_t)v->n_tokens, sizeof *v->tokens);
    v->pool = malloc(need);
    if (!v->tokens || !v->pool)
        return pv_errorf(err, errlen, PV_ENOMEM, "%s: out of memory for the vocabulary", f->path);
    /* second pass: copy */
    pos = 0;
    uint32_t off = 0;
    for (uint32_t i = 0; i < kv->n; i++) {
        const char *s = gguf_arr_str_next(kv, &pos, &len);
        size_t n = text_len(len, i);
        if (len) memcpy(v->pool + off, s, len);
        else snprintf(v->pool + off, n + 1, "[EMPTY_%u]", i);
        v->pool[off + n] = 0;
        v->tokens[i] = (pv__token_t){.off = off, .len = (uint32_t)n, .type = PV_TOKEN_NORMAL};
        if (n > v->max_len) v->max_len = (uint32_t)n;
        off += (uint32_t)n + 1;
    }
    return 0;
}

/* Checks that an optional per-token array has one element of an allowed type per token. */
static int check_per_token(const pv_vocab_t *v, const gguf_file_t *f, const gguf_kv_t *kv, const char *key,
                           gguf_vtype_t t1, gguf_vtype_t t2, char *err, size_t errlen) {
    if (kv->type != GGUF_VT_ARRAY || (kv->el_type != t1 && kv->el_type != t2))
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s must be an array of %s", f->path, key, gguf_vtype_name(t1));
    if (kv->n != (uint64_t)v->n_tokens)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s has %llu entries but %s has %d", f->path, key,
                         (unsigned long long)kv->n, KEY_TOKENS, v->n_tokens);
    return 0;
}

static int load_scores(pv_vocab_t *v, const gguf_file_t *f, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find_kv(f, KEY_SCORES);
    if (!kv) return 0; /* all scores 0: merges then go leftmost first */
    int rc = check_per_token(v, f, kv, KEY_SCORES, GGUF_VT_FLOAT32, GGUF_VT_INT32, err, errlen);
    if (rc) return rc;
    for (int32_t i = 0; i < v->n_tokens; i++) v->tokens[i].score = (float)gguf_arr_float(kv, (uint64_t)i);
    return 0;
}

static int load_types(pv_vocab_t *v, const gguf_file_t *f, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find_kv(f, KEY_TYPES);
    if (!kv) return 0; /* all NORMAL */
    int rc = check_per_token(v, f, kv, KEY_TYPES, GGUF_VT_INT32, GGUF_VT_INT32, err, errlen);
    if (rc) return rc;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        int64_t t = gguf_arr_int(kv, (uint64_t)i);
        /* llama.cpp reads unknown type values as UNDEFINED (decodes to nothing) */
        v->tokens[i].type = (uint8_t)(t >= PV_TOKEN_UNDEFINED && t <= PV_TOKEN_BYTE ? t : PV_TOKEN_UNDEFINED);
        if (v->tokens[i].type == PV_TOKEN_BYTE &&
            byte_of_text(pv__token_text(v, i), v->tokens[i].len) < 0) {
            char shown[32];
            return pv_errorf(err, errlen, PV_ECORRUPT,
                             "%s: %s: token %d \"%s\" has BYTE type but is not of the form <0xNN>", f->path, KEY_TYPES,
                             i, printable(shown, sizeof shown, pv__token_text(v, i), v->tokens[i].len));
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ lookup by text */

static int build_index(pv_vocab_t *v, const gguf_file_t *f, char *err, size_t errlen) {
    size_t n_slots = 1;
    while (n_slots < 2 * (size_t)v->n_tokens) n_slots <<= 1;
    v->slots = malloc(n_slots * sizeof *v->slots);
    if (!v->slots) return pv_errorf(err, errlen, PV_ENOMEM, "%s: out of memory for the token index", f->path);
    memset(v->slots, 0xff, n_slots * sizeof *v->slots); /* all -1 */
    v->slot_mask = (uint32_t)(n_slots - 1);
    for (int32_t id = 0; id < v->n_tokens; id++) {
        const char *s = pv__token_text(v, id);
        uint32_t len = v->tokens[id].len;
        uint32_t h = pv__hash_bytes(s, len) & v->slot_mask;
        for (; v->slots[h] >= 0; h = (h + 1) & v->slot_mask) {
            int32_t other = v->slots[h];
            if (v->tokens[other].len == len && memcmp(pv__token_text(v, other), s, len) == 0) {
                char shown[40];
                return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s: tokens %d and %d have the same text \"%s\"",
                                 f->path, KEY_TOKENS, other, id, printable(shown, sizeof shown, s, len));
            }
        }
        v->slots[h] = id;
    }
    return 0;
}

int32_t pv__vocab_find(const pv_vocab_t *v, const char *s, size_t len) {
    if (len == 0 || len > v->max_len) return -1;
    for (uint32_t h = pv__hash_bytes(s, len) & v->slot_mask; v->slots[h] >= 0; h = (h + 1) & v->slot_mask) {
        const pv__token_t *t = &v->tokens[v->slots[h]];
        if (t->len == len && memcmp(v->pool + t->off, s, len) == 0) return v->slots[h];
    }
    return -1;
}

static int32_t find_str(const pv_vocab_t *v, const char *s) {
    return pv__vocab_find(v, s, strlen(s));
}

/* ------------------------------------------------------------------ special ids and flags */

/* Reads an optional token id key into *id: absent keeps *id, 0xFFFFFFFF means
 * none, anything else must lie inside the vocabulary. */
static int read_id(const pv_vocab_t *v, const gguf_file_t *f, const char *key, int32_t *id, char *err, size_t errlen) {
    uint32_t u;
    int rc = gguf_get_u32(f, key, &u);
    if (rc == PV_ENOTFOUND) return 0;
    if (rc) return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s must be an unsigned integer", f->path, key);
    if (u == UINT32_MAX) {
        *id = -1;
        return 0;
    }
    if (u >= (uint32_t)v->n_tokens)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s = %u is outside the vocabulary of %d tokens", f->path, key,
                         u, v->n_tokens);
    *id = (int32_t)u;
    return 0;
}

static int read_flag(const gguf_file_t *f, const char *key, int *flag, char *err, size_t errlen) {
    int rc = gguf_get_bool(f, key, flag);
    if (rc == PV_ENOTFOUND) return 0;
    if (rc) return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s must be a bool", f->path, key);
    return 0;
}

static int load_special_ids(pv_vocab_t *v, const gguf_file_t *f, unsigned pre_flags, char *err, size_t errlen) {
    /* llama.cpp's defaults, dropped when the vocabulary is too small for them */
    if (v->kind == PV_VOCAB_BPE) {
        v->bos = v->eos = v->n_tokens > 11 ? 11 : -1;
        if (pre_flags & PV__PRE_NO_BOS) v->bos = -1;
        v->unk = -1;
    } else {
        v->bos = v->n_tokens > 1 ? 1 : -1;
        v->eos = v->n_tokens > 2 ? 2 : -1;
        v->unk = 0;
    }
    v->pad = v->eot = v->eom = -1;
    int rc = read_id(v, f, KEY_BOS, &v->bos, err, errlen);
    if (!rc) rc = read_id(v, f, KEY_EOS, &v->eos, err, errlen);
    if (!rc) rc = read_id(v, f, "tokenizer.ggml.unknown_token_id", &v->unk, err, errlen);
    if (!rc) rc = read_id(v, f, "tokenizer.ggml.padding_token_id", &v->pad, err, errlen);
    if (!rc) rc = read_id(v, f, "tokenizer.ggml.eot_token_id", &v->eot, err, errlen);
    if (!rc) rc = read_id(v, f, "tokenizer.ggml.eom_token_id", &v->eom, err, errlen);
    return rc;
}

static int load_flags(pv_vocab_t *v, const gguf_file_t *f, unsigned pre_flags, char *err, size_t errlen) {
    int bpe = v->kind == PV_VOCAB_BPE;
    v->add_bos = bpe ? (pre_flags & PV__PRE_ADD_BOS) != 0 : 1;
    v->add_eos = 0;
    v->add_space_prefix = !bpe;
    int rc = read_flag(f, KEY_ADD_BOS, &v->add_bos, err, errlen);
    if (!rc) rc = read_flag(f, KEY_ADD_EOS, &v->add_eos, err, errlen);
    if (!rc) rc = read_flag(f, KEY_ADD_SPACE, &v->add_space_prefix, err, errlen);
    if (rc) return rc;
    if (v->add_bos && v->bos < 0)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s is true but %s is not set", f->path, KEY_ADD_BOS, KEY_BOS);
    if (v->add_eos && v->eos < 0)
        return pv_errorf(err, errlen, PV_ECORRUPT, "%s: %s is true but %s is not set", f->path, KEY_ADD_EOS, KEY_EOS);
    return 0;
}

/* ------------------------------------------------------------------ control-looking tokens (llama.cpp's text rules) */

/* Texts with U+FF5C '｜' and U+2581 '▁' (DeepSeek, CodeLlama), spelled in bytes. */
#define FWBAR "\xef\xbd\x9c"
#define LOWBLK "\xe2\x96\x81"
#define DEEPSEEK_EOS ("<" FWBAR "end" LOWBLK "of" LOWBLK "sentence" FWBAR ">")

/* Special tokens llama.cpp also recognises by their text: end of turn, end of
 * message, and fill-in-the-middle markers. */
typedef enum {
    ROLE_EOT,
    ROLE_EOM,
    ROLE_FIM_PRE,
    ROLE_FIM_SUF,
    ROLE_FIM_MID,
    ROLE_FIM_PAD,
    ROLE_FIM_REP,
    ROLE_FIM_SEP,
    ROLE_COUNT
} role_t;

typedef struct {
    const char *keys[2];     /* GGUF keys naming the token (the second, deprecated, wins) */
    const char *texts[12];   /* texts that identify it when no key does; NULL-terminated */
    int eog;                 /* whether the token ends generation */
} role_info_t;

static const role_info_t roles[ROLE_COUNT] = {
    [ROLE_EOT] = {{NULL}, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
                           "<EOT>", "_<EOT>", "[EOT]", DEEPSEEK_EOS,
                           "<end_of_utterance>", NULL}, 1},
    [ROLE_EOM] = {{NULL}, {"<|eom_id|>", NULL}, 1},
    [ROLE_FIM_PRE] = {{"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"},
                      {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", ("<" FWBAR "fim" LOWBLK "begin" FWBAR ">"),
                       "<PRE>", (LOWBLK "<PRE>"), "<|code_prefix|>", "<|prefix|>", NULL}, 0},
    [ROLE_FIM_SUF] = {{"tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"},
                      {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", ("<" FWBAR "fim" LOWBLK "hole" FWBAR ">"),
                       "<SUF>", (LOWBLK "<SUF>"), "<|code_suffix|>", "<|suffix|>", NULL}, 0},
    [ROLE_FIM_MID] = {{"tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"},
                      {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", ("<" FWBAR "fim" LOWBLK "end" FWBAR ">"),
                       "<MID>", (LOWBLK "<MID>"), "<|code_middle|>", "<|middle|>", NULL}, 0},
    [ROLE_FIM_PAD] = {{"tokenizer.ggml.fim_pad_token_id", NULL},
                      {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL}, 1},
    [ROLE_FIM_REP] = {{"tokenizer.ggml.fim_rep_token_id", NULL},
                      {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL}, 1},
    [ROLE_FIM_SEP] = {{"tokenizer.ggml.fim_sep_token_id", NULL}, {"<|file_sep|>", NULL}, 1},
};

/* Texts that end generation wherever they appear (also forced to CONTROL). */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    DEEPSEEK_EOS, "[e~[",
};

static void force_control(pv_vocab_t *v, int32_t id) {
    v->tokens[id].type = PV_TOKEN_CONTROL;
}

/* Lowest id among the texts, or -1 (llama.cpp takes whichever its hash map yields first). */
static int32_t first_of(const pv_vocab_t *v, const char *const *texts) {
    int32_t best = -1;
    for (; *texts; texts++) {
        int32_t id = find_str(v, *texts);
        if (id >= 0 && (best < 0 || id < best)) best = id;
    }
    return best;
}

static int detect_roles(pv_vocab_t *v, const gguf_file_t *f, char *err, size_t errlen) {
    int32_t ids[ROLE_COUNT];
    ids[ROLE_EOT] = v->eot;
    ids[ROLE_EOM] = v->eom;
    for (int r = ROLE_FIM_PRE; r < ROLE_COUNT; r++) {
        ids[r] = -1;
        for (int k = 0; k < 2; k++) {
            int rc = roles[r].keys[k] ? read_id(v, f, roles[r].keys[k], &ids[r], err, errlen) : 0;
            if (rc) return rc;
        }
    }
    for (int r = 0; r < ROLE_COUNT; r++) {
        if (ids[r] < 0 && (ids[r] = first_of(v, roles[r].texts)) >= 0) force_control(v, ids[r]);
        if (ids[r] >= 0 && roles[r].eog) v->tokens[ids[r]].flags |= PV__TOK_EOG;
    }
    v->eot = ids[ROLE_EOT];
    v->eom = ids[ROLE_EOM];
    return 0;
}

static void mark_eog(pv_vocab_t *v) {
    for (size_t i = 0; i < sizeof eog_texts / sizeof eog_texts[0]; i++) {
        int32_t id = find_str(v, eog_texts[i]);
        if (id < 0) continue;
        v->tokens[id].flags |= PV__TOK_EOG;
        force_control(v, id);
    }
    if (v->eos >= 0) v->tokens[v->eos].flags |= PV__TOK_EOG;
}

/* ------------------------------------------------------------------ special text matching */

static int is_special_type(uint8_t t) {
    return t == PV_TOKEN_CONTROL || t == PV_TOKEN_USER_DEFINED || t == PV_TOKEN_UNKNOWN;
}

/* Phi-3's tokenizer strips the whitespace after its chat markers. */
static void apply_phi3_rstrip(pv_vocab_t *v, const gguf_file_t *f) {
    const char *name = gguf_get_str(f, "general.name");
    if (!name || !(contains_nocase(name, "phi-3") || contains_nocase(name, "phi3"))) return;
    for (int32_t id = 0; id < v->n_tokens; id++)
        if (is_special_type(v->tokens[id].type)) v->tokens[id].flags |= PV__TOK_RSTRIP;
    static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
    int32_t eos_text = find_str(v, "</s>");
    if (eos_text >= 0) v->tokens[eos_text].flags |= PV__TOK_RSTRIP;
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        int32_t id = find_str(v, keep[i]);
        if (id >= 0) v->tokens[id].flags &= (uint8_t)~PV__TOK_RSTRIP;
    }
}

static int cmp_special(const void *a, const void *b) {
    const pv__special_t *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The specials in matching order, and what lets tokenize.c find which of
 * them occur in a text in one pass: their first bytes, their distinct
 * lengths, and a hash table of their texts. */
static int build_specials(pv_vocab_t *v, const gguf_file_t *f, char *err, size_t errlen) {
    int32_t n = 0;
    for (int32_t id = 0; id < v->n_tokens; id++) n += is_special_type(v->tokens[id].type);
    size_t n_slots = 16;
    while (n_slots < 2 * (size_t)n) n_slots <<= 1;
    v->specials = malloc((size_t)(n ? n : 1) * sizeof *v->specials);
    v->special_lens = malloc((size_t)(n ? n : 1) * sizeof *v->special_lens);
    v->special_slots = malloc(n_slots * sizeof *v->special_slots);
    if (!v->specials || !v->special_lens || !v->special_slots)
        return pv_errorf(err, errlen, PV_ENOMEM, "%s: out of memory", f->path);
    memset(v->special_slots, 0xff, n_slots * sizeof *v->special_slots);
    v->special_mask = (uint32_t)(n_slots - 1);
    for (int32_t id = 0; id < v->n_tokens; id++) {
        if (!is_special_type(v->tokens[id].type)) continue;
        const char *text = pv__token_text(v, id);
        uint32_t len = v->tokens[id].len;
        v->special_lens[v->n_specials] = len;
        v->specials[v->n_specials++] = (pv__special_t){id, len};
        v->special_first[(unsigned char)text[0] >> 6] |= (uint64_t)1 << ((unsigned char)text[0] & 63);
        uint32_t h = pv__hash_bytes(text, len) & v->special_mask;
        while (v->special_slots[h] >= 0) h = (h + 1) & v->special_mask;
        v->special_slots[h] = id; /* texts are unique (build_index) */
    }
    qsort(v->specials, (size_t)v->n_specials, sizeof *v->specials, cmp_special);
    qsort(v->special_lens, (size_t)v->n_specials, sizeof *v->special_lens, cmp_u32);
    for (int32_t i = 0; i < v->n_specials; i++)
        if (i == 0 || v->special_lens[i] != v->special_lens[v->n_special_lens - 1])
            v->special_lens[v->n_special_lens++] = v->special_lens[i];
    return 0;
}

/* Sets the filter bit of every pair of characters adjacent in some token
 * (all tokens: the encoder may form any of them). About 8 bits per pair. */
static int build_pair_filter(pv_vocab_t *v, const gguf_file_t *f, char *err, size_t errlen) {
    size_t n_pairs = 0;
    for (int32_t id = 0; id < v->n_tokens; id++) n_pairs += v->tokens[id].len; /* bound: one per byte */
    size_t n_bits = 1024;
    while (n_bits < 8 * n_pairs && n_bits < ((size_t)1 << 31)) n_bits <<= 1;
    v->pair_bits = calloc(n_bits / 64, sizeof *v->pair_bits);
    if (!v->pair_bits) return pv_errorf(err, errlen, PV_ENOMEM, "%s: out of memory", f->path);
    v->pair_mask = (uint32_t)(n_bits - 1);
    for (int32_t id = 0; id < v->n_tokens; id++) {
        const char *s = pv__token_text(v, id);
        int32_t len = (int32_t)v->tokens[id].len, prev = 0, n_prev = 0;
        for (int32_t off = 0; off < len; off += n_prev) {
            int32_t n = pv__char_len(s + off, len - off);
            if (off > 0) {
                uint32_t bit = pv__pair_bit(v->pair_mask, s + prev, n_prev, s + off, n);
                v->pair_bits[bit >> 6] |= (uint64_t)1 << (bit & 63);
            }
            prev = off;
            n_prev = n;
        }
    }
    return 0;
}

static void build_byte_ids(pv_vocab_t *v) {
    for (int b = 0; b < 256; b++) {
        char hex[8], raw[1] = {(char)b};
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = find_str(v, hex);
        if (id < 0) id = pv__vocab_find(v, raw, 1);
        v->byte_ids[b] = id >= 0 ? id : v->unk;
    }
}

/* ------------------------------------------------------------------ load / free */

int pv_vocab_load(const gguf_file_t *f, pv_vocab_t **out, char *err, size_t errlen) {
    *out = NULL;
    pv_vocab_kind_t kind = PV_VOCAB_SPM;
    int rc = check_model(f, &kind, err, errlen);
    if (rc) return rc;
    pv__pretok_t *pretok = NULL; /* BPE: owned here until handed to pv__bpe_load */
    if (kind == PV_VOCAB_BPE && (rc = load_pretok(f, &pretok, err, errlen))) return rc;
    unsigned pre_flags = pretok ? pv__pretok_flags(pretok) : 0;
    pv_vocab_t *v = calloc(1, sizeof *v);
    if (!v) {
        pv__pretok_free(pretok);
        return pv_errorf(err, errlen, PV_ENOMEM, "%s: out of memory", f->path);
    }
    v->kind = kind;
    if ((rc = load_texts(v, f, err, errlen))) goto fail;
    if ((rc = load_scores(v, f, err, errlen))) goto fail;
    if ((rc = load_types(v, f, err, errlen))) goto fail;
    if ((rc = build_index(v, f, err, errlen))) goto fail;
    if ((rc = load_special_ids(v, f, pre_flags, err, errlen))) goto fail;
    if ((rc = load_flags(v, f, pre_flags, err, errlen))) goto fail;
    if ((rc = detect_roles(v, f, err, errlen))) goto fail;
    mark_eog(v);
    apply_phi3_rstrip(v, f);
    if ((rc = build_specials(v, f, err, errlen))) goto fail;
    if (kind == PV_VOCAB_BPE) {
        rc = pv__bpe_load(v, f, pretok, &v->bpe, err, errlen);
        pretok = NULL; /* pv__bpe_load took it, even on failure */
        if (rc) goto fail;
    } else {
        if ((rc = build_pair_filter(v, f, err, errlen))) goto fail;
        build_byte_ids(v);
    }
    *out = v;
    return 0;
fail:
    pv__pretok_free(pretok);
    pv_vocab_free(v);
    return rc;
}

void pv_vocab_free(pv_vocab_t *v) {
    if (!v) return;
    pv__bpe_free(v->bpe);
    free(v->pair_bits);
    free(v->specials);
    free(v->special_lens);
    free(v->special_slots);
    free(v->slots);
    free(v->pool);
    free(v->tokens);
    free(v);
}

/* ------------------------------------------------------------------ accessors */

pv_vocab_kind_t pv_vocab_kind(const pv_vocab_t *v) { return v->kind; }
const char *pv_vocab_kind_name(const pv_vocab_t *v) {
    return v->kind == PV_VOCAB_SPM ? "SentencePiece (llama)" : "byte-level BPE (gpt2)";
}
const char *pv_vocab_pre(const pv_vocab_t *v) { return v->bpe ? pv__bpe_pre_name(v->bpe) : NULL; }
int32_t pv_vocab_n_tokens(const pv_vocab_t *v) { return v->n_tokens; }
int32_t pv_vocab_bos(const pv_vocab_t *v) { return v->bos; }
int32_t pv_vocab_eos(const pv_vocab_t *v) { return v->eos; }
int32_t pv_vocab_unk(const pv_vocab_t *v) { return v->unk; }
int32_t pv_vocab_pad(const pv_vocab_t *v) { return v->pad; }
int pv_vocab_adds_bos(const pv_vocab_t *v) { return v->add_bos; }

int pv_vocab_is_eog(const pv_vocab_t *v, int32_t id) {
    return id >= 0 && id < v->n_tokens && (v->tokens[id].flags & PV__TOK_EOG);
}

const char *pv_vocab_text(const pv_vocab_t *v, int32_t id) {
    return id >= 0 && id < v->n_tokens ? pv__token_text(v, id) : NULL;
}

pv_token_type_t pv_vocab_type(const pv_vocab_t *v, int32_t id) {
    return id >= 0 && id < v->n_tokens ? (pv_token_type_t)v->tokens[id].type : PV_TOKEN_UNDEFINED;
}

/* ------------------------------------------------------------------ decoding */

/* Where decoded bytes go: written only while they fit in cap (buf may be NULL
 * to measure); strip drops one leading space of the first non-empty output. */
typedef struct {
    char *buf;  /* destination, or NULL to only count */
    size_t cap; /* bytes available at buf */
    size_t n;   /* bytes produced so far (may exceed cap) */
    int strip;  /* 1 until the first byte is produced, if a leading space is to go */
} sink_t;

static void sink_put(sink_t *s, const char *p, size_t len) {
    if (len == 0) return;
    if (s->strip) {
        s->strip = 0;
        if (*p == ' ') p++, len--;
    }
    if (s->buf && s->n + len <= s->cap) memcpy(s->buf + s->n, p, len);
    s->n += len;
}

/* Text of a NORMAL token with each U+2581 '▁' turned back into a space. */
static void put_unescaped(sink_t *s, const char *t, size_t len) {
    size_t start = 0;
    for (size_t i = 0; i + 3 <= len; i++) {
        if (memcmp(t + i, "\xe2\x96\x81", 3) != 0) continue;
        sink_put(s, t + start, i - start);
        sink_put(s, " ", 1);
        start = i + 3;
        i += 2;
    }
    sink_put(s, t + start, len - start);
}

/* Text of a NORMAL byte-level BPE token: each character stands for one byte
 * (pv__cp_to_byte). A token with a character outside that alphabet is copied
 * as it is (Hugging Face's ByteLevel decoder does so; llama.cpp writes a
 * debugging "[UNK_BYTE_0x..]" form instead). */
static void put_byte_level(sink_t *s, const char *t, size_t len) {
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = pv_utf8_next(t + i, len - i, &cp);
        if (k <= 0 || pv__cp_to_byte(cp) < 0) {
            sink_put(s, t, len);
            return;
        }
        i += (size_t)k;
    }
    char chunk[64];
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += (size_t)pv_utf8_next(t + i, len - i, &cp);
        chunk[n++] = (char)pv__cp_to_byte(cp);
        if (n == sizeof chunk) sink_put(s, chunk, n), n = 0;
    }
    sink_put(s, chunk, n);
}

/* One token's piece, as llama.cpp's token_to_piece renders it. */
static void put_piece(const pv_vocab_t *v, int32_t id, unsigned flags, sink_t *s) {
    if (id < 0 || id >= v->n_tokens) return; /* hostile ids print nothing */
    const pv__token_t *t = &v->tokens[id];
    const char *text = v->pool + t->off;
    char byte;
    switch ((pv_token_type_t)t->type) {
    case PV_TOKEN_CONTROL:
    case PV_TOKEN_UNKNOWN:
        if (flags & PV_DETOK_SPECIAL) sink_put(s, text, t->len);
        break;
    case PV_TOKEN_USER_DEFINED:
        sink_put(s, text, t->len);
        break;
    case PV_TOKEN_NORMAL:
        if (v->kind == PV_VOCAB_BPE) put_byte_level(s, text, t->len);
        else put_unescaped(s, text, t->len);
        break;
    case PV_TOKEN_BYTE: /* BPE prints nothing for BYTE tokens, as llama.cpp */
        if (v->kind == PV_VOCAB_BPE) break;
        byte = (char)byte_of_text(text, t->len); /* validated at load */
        sink_put(s, &byte, 1);
        break;
    default: /* UNDEFINED, UNUSED */
        break;
    }
}

static int finish(size_t n, size_t cap) {
    if (n > INT_MAX) return PV__TOK_FAILED;
    return n <= cap ? (int)n : -(int)n;
}

int pv_token_to_piece(const pv_vocab_t *v, int32_t id, unsigned flags, char *buf, size_t len) {
    int strip = (flags & PV_DETOK_STRIP_SPACE) && v->add_space_prefix;
    sink_t probe = {.strip = strip};
    put_piece(v, id, flags, &probe);
    size_t cap = buf ? len : 0;
    if (probe.n <= cap) {
        sink_t out = {.buf = buf, .cap = cap, .strip = strip};
        put_piece(v, id, flags, &out);
    }
    return finish(probe.n, cap);
}

int pv_detokenize(const pv_vocab_t *v, const int32_t *ids, int n, unsigned flags, char *buf, size_t len) {
    sink_t s = {.buf = buf, .cap = buf ? len : 0, .strip = (flags & PV_DETOK_STRIP_SPACE) && v->add_space_prefix};
    for (int i = 0; ids && i < n; i++) {
        /* like llama.cpp, stop writing at the first piece that does not fit */
        sink_t probe = {.strip = s.strip};
        put_piece(v, ids[i], flags, &probe);
        if (s.buf && s.n + probe.n > s.cap) s.buf = NULL;
        put_piece(v, ids[i], flags, &s);
        s.strip = 0;
    }
    return finish(s.n, buf ? len : 0);
}
