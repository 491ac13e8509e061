/* test_tok.c - the tokenizers (SentencePiece and byte-level BPE): llama.cpp's
 * test vectors, round trips of random bytes, special tokens, the shared
 * models' prompts, hostile vocabularies built in memory, UTF-8 repair and the
 * streaming detokenizer. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "suites.h"
#include "tok/utf8.h"
#include "tok/vocab.h"

#define VEC_SEP "\n__ggml_vocab_test__\n" /* as llama.cpp's test-tokenizer-0 splits .inp files */

/* ------------------------------------------------------------------ helpers */

/* Loads the vocabulary of a shared GGUF; NULL (test skipped) when absent. The
 * GGUF is closed at once: the vocab must not borrow from it. */
static pv_vocab_t *load_shared(const char *rel) {
    char path[1024], err[PV_ERRLEN];
    if (!tu_shared(path, sizeof path, rel)) return NULL;
    gguf_file_t *f = NULL;
    ck_assert_msg(gguf_open(path, &f, err, sizeof err) == 0, "%s", err);
    pv_vocab_t *v = NULL;
    int rc = pv_vocab_load(f, &v, err, sizeof err);
    gguf_close(f);
    ck_assert_msg(rc == 0, "%s", err);
    return v;
}

/* Tokenizes into a fresh array (caller frees); *n gets the count. */
static int32_t *encode(const pv_vocab_t *v, const char *text, size_t len, unsigned flags, int *n) {
    int cap = (int)(4 * len + 8);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    *n = pv_tokenize(v, text, len, flags, ids, cap);
    ck_assert_int_ge(*n, 0);
    return ids;
}

/* Detokenizes into a fresh nul-terminated string (caller frees). */
static char *decode(const pv_vocab_t *v, const int32_t *ids, int n, unsigned flags, int *len) {
    int need = pv_detokenize(v, ids, n, flags, NULL, 0);
    ck_assert_int_le(need, 0);
    char *s = malloc((size_t)-need + 1);
    ck_assert_ptr_nonnull(s);
    *len = pv_detokenize(v, ids, n, flags, s, (size_t)-need);
    ck_assert_int_eq(*len, -need);
    s[*len] = 0;
    return s;
}

static int same_ids(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static void print_ids(const char *label, const int32_t *ids, int n) {
    printf("  %s:", label);
    for (int i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");
}

static void expect_ids(const pv_vocab_t *v, const char *text, unsigned flags, const int32_t *want, int n_want) {
    int n;
    int32_t *got = encode(v, text, strlen(text), flags, &n);
    if (!same_ids(got, n, want, n_want)) {
        printf("tokenizing \"%s\" (flags %u):\n", text, flags);
        print_ids("want", want, n_want);
        print_ids("got ", got, n);
    }
    ck_assert(same_ids(got, n, want, n_want));
    free(got);
}
#define EXPECT_IDS(v, text, flags, ...)                                              \
    do {                                                                             \
        static const int32_t want_[] = {__VA_ARGS__};                                \
        expect_ids(v, text, flags, want_, (int)(sizeof want_ / sizeof want_[0]));   \
    } while (0)

/* Decoding encode(text) with STRIP_SPACE gives text back. */
static int round_trips(const pv_vocab_t *v, const char *text, size_t len) {
    int n, back_len;
    int32_t *ids = encode(v, text, len, 0, &n);
    char *back = decode(v, ids, n, PV_DETOK_STRIP_SPACE, &back_len);
    int ok = (size_t)back_len == len && memcmp(back, text, len) == 0;
    free(ids);
    free(back);
    return ok;
}

/* Parses one line of space-separated ids; returns the count. */
static int parse_ids(const char *line, const char *end, int32_t *ids, int cap) {
    int n = 0;
    while (line < end) {
        char *stop;
        long id = strtol(line, &stop, 10);
        if (stop == line) {
            line++;
            continue;
        }
        ck_assert_int_lt(n, cap);
        ids[n++] = (int32_t)id;
        line = stop;
    }
    return n;
}

/* ------------------------------------------------------------------ llama.cpp's vectors */

/* Runs every vector of vocab/<name>.{inp,out} (no BOS, no special parsing),
 * and checks that each text also round-trips. */
static void run_vectors(const char *name) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "vocab/%s", name);
    pv_vocab_t *v = load_shared(rel);
    if (!v) return;
    size_t n_inp, n_out;
    snprintf(rel, sizeof rel, "vocab/%s.inp", name);
    char *inp = tu_shared(path, sizeof path, rel) ? tu_read_file(path, &n_inp) : NULL;
    snprintf(rel, sizeof rel, "vocab/%s.out", name);
    char *out = tu_shared(path, sizeof path, rel) ? tu_read_file(path, &n_out) : NULL;
    ck_assert_ptr_nonnull(inp);
    ck_assert_ptr_nonnull(out);
    int n_total = 0, n_pass = 0, n_trip = 0;
    char *text = inp, *line = out;
    for (char *sep; (sep = strstr(text, VEC_SEP)) != NULL; text = sep + strlen(VEC_SEP)) {
        char *eol = strchr(line, '\n');
        ck_assert_msg(eol != NULL, "%s.out has fewer lines than %s.inp has texts", name, name);
        int32_t want[1024];
        int n_want = parse_ids(line, eol, want, 1024), n_got;
        line = eol + 1;
        size_t len = (size_t)(sep - text);
        int32_t *got = encode(v, text, len, 0, &n_got);
        n_total++;
        if (same_ids(got, n_got, want, n_want)) n_pass++;
        else {
            printf("%s vector %d \"%.*s\":\n", name, n_total, (int)len, text);
            print_ids("want", want, n_want);
            print_ids("got ", got, n_got);
        }
        n_trip += round_trips(v, text, len);
        free(got);
    }
    ck_assert_msg(*line == 0, "%s.out has more lines than %s.inp has texts", name, name);
    printf("%s: %d/%d vectors pass, %d/%d round trip\n", name, n_pass, n_total, n_trip, n_total);
    ck_assert_int_gt(n_total, 40);
    ck_assert_int_eq(n_pass, n_total);
    ck_assert_int_eq(n_trip, n_total);
    free(inp);
    free(out);
    pv_vocab_free(v);
}

START_TEST(test_vectors_llama_spm) { run_vectors("ggml-vocab-llama-spm.gguf"); }
END_TEST

START_TEST(test_vectors_phi3) { run_vectors("ggml-vocab-phi-3.gguf"); }
END_TEST

/* byte-level BPE, one test per pre-tokenizer (llama.cpp's vectors, no BOS) */
static const char *const bpe_vocabs[] = {
    "ggml-vocab-gpt-2.gguf",     "ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen2.gguf",  "ggml-vocab-deepseek-llm.gguf",
    "ggml-vocab-deepseek-coder.gguf", "ggml-vocab-falcon.gguf", "ggml-vocab-starcoder.gguf", "ggml-vocab-refact.gguf",
    "ggml-vocab-mpt.gguf",
};
#define N_BPE_VOCABS ((int)(sizeof bpe_vocabs / sizeof bpe_vocabs[0]))

START_TEST(test_vectors_bpe) { run_vectors(bpe_vocabs[_i]); }
END_TEST

/* ------------------------------------------------------------------ round trips of arbitrary bytes */

static uint32_t xorshift(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Random bytes: ASCII, spaces, and any byte at all (invalid UTF-8 included).
 * U+2581 itself is avoided: it decodes to a space by design. */
static size_t random_text(uint32_t *seed, char *buf, size_t cap) {
    size_t len = xorshift(seed) % cap;
    for (size_t i = 0; i < len; i++) {
        uint32_t r = xorshift(seed) % 100;
        buf[i] = r < 45 ? (char)(0x20 + xorshift(seed) % 95) : r < 60 ? ' ' : (char)(xorshift(seed) & 0xff);
        if (i >= 2 && memcmp(buf + i - 2, "\xe2\x96\x81", 3) == 0) buf[i] = 'x';
    }
    return len;
}

static void random_round_trips(const char *rel) {
    pv_vocab_t *v = load_shared(rel);
    if (!v) return;
    uint32_t seed = 0x2545f491u;
    char buf[96];
    for (int i = 0; i < 3000; i++) {
        size_t len = random_text(&seed, buf, sizeof buf);
        ck_assert_msg(round_trips(v, buf, len), "%s: random text %d does not round trip", rel, i);
    }
    pv_vocab_free(v);
}

START_TEST(test_random_round_trip_llama) { random_round_trips("vocab/ggml-vocab-llama-spm.gguf"); }
END_TEST

START_TEST(test_random_round_trip_phi3) { random_round_trips("vocab/ggml-vocab-phi-3.gguf"); }
END_TEST

/* ------------------------------------------------------------------ flags, specials, limits */

START_TEST(test_bos_and_empty) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-llama-spm.gguf");
    if (!v) return;
    EXPECT_IDS(v, "Hello world", PV_TOK_ADD_BOS, 1, 15043, 3186);
    EXPECT_IDS(v, "Hello world", 0, 15043, 3186);
    EXPECT_IDS(v, "", PV_TOK_ADD_BOS, 1);
    int32_t id = -7;
    ck_assert_int_eq(pv_tokenize(v, "", 0, 0, &id, 1), 0);
    ck_assert_int_eq(pv_tokenize(v, NULL, 0, PV_TOK_ADD_BOS, &id, 1), 1);
    ck_assert_int_eq(id, 1);
    pv_vocab_free(v);
}
END_TEST

START_TEST(test_special_parsing) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-llama-spm.gguf");
    if (!v) return;
    const char *text = "<s>Hello</s>";
    EXPECT_IDS(v, text, PV_TOK_SPECIAL, 1, 15043, 2);
    EXPECT_IDS(v, "Hello<s>world", PV_TOK_SPECIAL, 15043, 1, 3186);
    EXPECT_IDS(v, "<unk>", PV_TOK_SPECIAL, 0);
    EXPECT_IDS(v, "<s>", PV_TOK_SPECIAL | PV_TOK_ADD_BOS, 1, 1);
    /* without the flag the markers are plain text */
    int n;
    int32_t *ids = encode(v, text, strlen(text), 0, &n);
    ck_assert_int_gt(n, 3);
    for (int i = 0; i < n; i++) ck_assert(ids[i] != 0 && ids[i] != 1 && ids[i] != 2);
    free(ids);
    ck_assert(round_trips(v, text, strlen(text)));
    pv_vocab_free(v);
}
END_TEST

/* Phi-3's chat markers swallow the newline after them (llama.cpp's RSTRIP
 * for models named phi-3/phi3), except <s>, <unk> and <|endoftext|>. */
START_TEST(test_special_phi3_rstrip) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-phi-3.gguf");
    if (!v) return;
    EXPECT_IDS(v, "<|user|>\nHello<|end|>\n<|assistant|>", PV_TOK_SPECIAL, 32010, 15043, 32007, 32001);
    EXPECT_IDS(v, "<s> Hello", PV_TOK_SPECIAL, 1, 29871, 15043); /* <s> keeps the space */
    /* "</s>" is user-defined in this file, but llama.cpp makes it control */
    ck_assert_int_eq(pv_vocab_type(v, 2), PV_TOKEN_CONTROL);
    EXPECT_IDS(v, "</s>", PV_TOK_SPECIAL, 2);
    pv_vocab_free(v);
}
END_TEST

START_TEST(test_n_max_too_small) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-llama-spm.gguf");
    if (!v) return;
    int32_t ids[3] = {-7, -7, -7};
    ck_assert_int_eq(pv_tokenize(v, "Hello world", 11, 0, ids, 1), -2);
    ck_assert_int_eq(ids[0], 15043);
    ck_assert_int_eq(ids[1], -7);
    ck_assert_int_eq(pv_tokenize(v, "Hello world", 11, PV_TOK_ADD_BOS, NULL, 0), -3);
    ck_assert_int_eq(pv_tokenize(v, "Hello world", 11, 0, ids, 2), 2);
    ck_assert_int_eq(pv_tokenize(v, "Hello world", 11, 0, ids, 3), 2);
    ck_assert_int_eq(ids[2], -7);
    pv_vocab_free(v);
}
END_TEST

/* Invalid UTF-8: a lead byte not followed by its continuation bytes stands
 * alone and falls back to its byte token. (llama.cpp would make "\xC3 A" the
 * symbols "\xC3\xE2" "\x96" "\x81" "A", i.e. bytes that decode to "\xC3▁A".) */
START_TEST(test_invalid_utf8) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-llama-spm.gguf");
    if (!v) return;
    EXPECT_IDS(v, "\xC3 A", 0, 29871, 0xC3 + 3, 319); /* ▁ <0xC3> ▁A */
    EXPECT_IDS(v, "\xC3" "A", 0, 29871, 0xC3 + 3, 29909);
    EXPECT_IDS(v, "\xff", 0, 29871, 0xff + 3);
    EXPECT_IDS(v, "\xe2\x96", 0, 29871, 0xe2 + 3, 0x96 + 3); /* truncated at the end */
    EXPECT_IDS(v, "\xc3\xa9", 0, 904);                      /* valid: "▁é" is a token */
    ck_assert(round_trips(v, "\xC3 A", 4));
    ck_assert(round_trips(v, "\xF0\x9F  x", 6));
    static const char nul_text[] = {'a', 0, 'b'};
    int n;
    int32_t *ids = encode(v, nul_text, 3, 0, &n);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(ids[1], 3); /* <0x00> */
    free(ids);
    ck_assert(round_trips(v, nul_text, 3));
    pv_vocab_free(v);
}
END_TEST

START_TEST(test_decode) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-llama-spm.gguf");
    if (!v) return;
    char buf[64];
    ck_assert_int_eq(pv_token_to_piece(v, 1, 0, buf, sizeof buf), 0);
    ck_assert_int_eq(pv_token_to_piece(v, 1, PV_DETOK_SPECIAL, buf, sizeof buf), 3);
    ck_assert(memcmp(buf, "<s>", 3) == 0);
    ck_assert_int_eq(pv_token_to_piece(v, 0, 0, buf, sizeof buf), 0); /* unknown prints nothing, as in llama.cpp */
    ck_assert_int_eq(pv_token_to_piece(v, 0, PV_DETOK_SPECIAL, buf, sizeof buf), 5);
    ck_assert_int_eq(pv_token_to_piece(v, 13, 0, buf, sizeof buf), 1);
    ck_assert_int_eq(buf[0], '\n');
    ck_assert_int_eq(pv_token_to_piece(v, 15043, 0, buf, sizeof buf), 6);
    ck_assert(memcmp(buf, " Hello", 6) == 0);
    ck_assert_int_eq(pv_token_to_piece(v, 15043, PV_DETOK_STRIP_SPACE, buf, sizeof buf), 5);
    ck_assert(memcmp(buf, "Hello", 5) == 0);
    ck_assert_int_eq(pv_token_to_piece(v, 15043, 0, buf, 3), -6);
    ck_assert_int_eq(pv_token_to_piece(v, 1678, 0, buf, sizeof buf), 3); /* "▁▁▁" */
    ck_assert(memcmp(buf, "   ", 3) == 0);
    ck_assert_int_eq(pv_token_to_piece(v, -1, 0, buf, sizeof buf), 0);
    ck_assert_int_eq(pv_token_to_piece(v, 32000, 0, buf, sizeof buf), 0);

    static const int32_t ids[] = {1, 15043, 3186, 2};
    int len;
    char *s = decode(v, ids, 4, 0, &len);
    ck_assert_str_eq(s, " Hello world");
    free(s);
    s = decode(v, ids + 1, 2, PV_DETOK_STRIP_SPACE, &len); /* the first token loses its space */
    ck_assert_str_eq(s, "Hello world");
    free(s);
    s = decode(v, ids, 4, PV_DETOK_STRIP_SPACE, &len); /* ... but here the first token is BOS */
    ck_assert_str_eq(s, " Hello world");
    free(s);
    s = decode(v, ids, 4, PV_DETOK_SPECIAL, &len);
    ck_assert_str_eq(s, "<s> Hello world</s>");
    free(s);
    ck_assert_int_eq(pv_detokenize(v, ids, 4, 0, buf, 5), -12);
    pv_vocab_free(v);
}
END_TEST

START_TEST(test_accessors) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-llama-spm.gguf");
    if (!v) return;
    ck_assert_int_eq(pv_vocab_kind(v), PV_VOCAB_SPM);
    ck_assert_str_eq(pv_vocab_kind_name(v), "SentencePiece (llama)");
    ck_assert_int_eq(pv_vocab_n_tokens(v), 32000);
    ck_assert_int_eq(pv_vocab_bos(v), 1);
    ck_assert_int_eq(pv_vocab_eos(v), 2);
    ck_assert_int_eq(pv_vocab_unk(v), 0);
    ck_assert_int_eq(pv_vocab_pad(v), -1);
    ck_assert_int_eq(pv_vocab_adds_bos(v), 1);
    ck_assert(pv_vocab_is_eog(v, 2));
    ck_assert(!pv_vocab_is_eog(v, 1));
    ck_assert(!pv_vocab_is_eog(v, -1));
    ck_assert(!pv_vocab_is_eog(v, 1 << 30));
    ck_assert_str_eq(pv_vocab_text(v, 15043), "\xe2\x96\x81Hello");
    ck_assert_ptr_null(pv_vocab_text(v, -1));
    ck_assert_ptr_null(pv_vocab_text(v, 32000));
    ck_assert_int_eq(pv_vocab_type(v, 0), PV_TOKEN_UNKNOWN);
    ck_assert_int_eq(pv_vocab_type(v, 1), PV_TOKEN_CONTROL);
    ck_assert_int_eq(pv_vocab_type(v, 13), PV_TOKEN_BYTE);
    ck_assert_int_eq(pv_vocab_type(v, 15043), PV_TOKEN_NORMAL);
    ck_assert_int_eq(pv_vocab_type(v, 99999), PV_TOKEN_UNDEFINED);
    pv_vocab_free(v);
    pv_vocab_free(NULL);

    v = load_shared("vocab/ggml-vocab-phi-3.gguf");
    if (!v) return;
    ck_assert_int_eq(pv_vocab_eos(v), 32000);
    ck_assert_int_eq(pv_vocab_pad(v), 32000);
    ck_assert(pv_vocab_is_eog(v, 32000)); /* <|endoftext|> */
    ck_assert(pv_vocab_is_eog(v, 32007)); /* <|end|> */
    ck_assert(pv_vocab_is_eog(v, 2));     /* </s> */
    ck_assert(!pv_vocab_is_eog(v, 32010)); /* <|user|> */
    pv_vocab_free(v);
}
END_TEST

/* Long hostile inputs (200 kB of one repeated character, random bytes, many
 * special tokens): no crash, exact round trips, within the test timeout. */
START_TEST(test_long_inputs) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-llama-spm.gguf");
    if (!v) return;
    size_t len = 200000;
    char *text = malloc(len);
    ck_assert_ptr_nonnull(text);
    static const char fills[][4] = {"a", " ", "\xf0", "\x80", "\xe2\x96\x81"};
    for (size_t k = 0; k < sizeof fills / sizeof fills[0]; k++) {
        size_t step = strlen(fills[k]);
        for (size_t i = 0; i < len; i++) text[i] = fills[k][i % step];
        size_t n = len - len % step;
        int n_ids = pv_tokenize(v, text, n, 0, NULL, 0);
        ck_assert_int_lt(n_ids, 0);
        if (k != 4) ck_assert_msg(round_trips(v, text, n), "fill %zu does not round trip", k);
    }
    uint32_t seed = 12345;
    for (size_t i = 0; i < len; i++) text[i] = (char)(xorshift(&seed) & 0xff);
    ck_assert(round_trips(v, text, len));
    for (size_t i = 0; i < len; i++) text[i] = "<s>"[i % 3];
    int n_ids = pv_tokenize(v, text, len - len % 3, PV_TOK_SPECIAL, NULL, 0);
    ck_assert_int_eq(n_ids, -(int)(len / 3));
    free(text);
    pv_vocab_free(v);
}
END_TEST

/* ------------------------------------------------------------------ the shared models' prompts */

START_TEST(test_stories260k_prompt) {
    pv_vocab_t *v = load_shared("models/stories260K.gguf");
    if (!v) return;
    ck_assert_int_eq(pv_vocab_n_tokens(v), 512);
    ck_assert_int_eq(pv_vocab_pad(v), -1); /* stored as 0xFFFFFFFF */
    EXPECT_IDS(v, "Once upon a time", PV_TOK_ADD_BOS, 1, 403, 407, 261, 378);
    pv_vocab_free(v);
}
END_TEST

/* Every case of ref/<json>: tokenizing prompt (with BOS) gives prompt_ids. */
static void check_ref_prompts(const char *model_rel, const char *json_rel) {
    char path[1024];
    if (!tu_shared(path, sizeof path, json_rel)) return;
    pv_vocab_t *v = load_shared(model_rel);
    if (!v) return;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr); /* owned */
    ck_assert_msg(root != NULL, "%s: %s", path, jerr.text);
    json_t *cases = json_object_get(root, "cases"); /* borrows */
    ck_assert(json_is_array(cases) && json_array_size(cases) > 0);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *prompt = json_string_value(json_object_get(c, "prompt")); /* borrows */
        json_t *want_json = json_object_get(c, "prompt_ids");                /* borrows */
        ck_assert(prompt && json_is_array(want_json));
        int32_t want[256];
        int n_want = (int)json_array_size(want_json);
        ck_assert_int_le(n_want, 256);
        for (int k = 0; k < n_want; k++) want[k] = (int32_t)json_integer_value(json_array_get(want_json, (size_t)k));
        expect_ids(v, prompt, pv_vocab_adds_bos(v) ? PV_TOK_ADD_BOS : 0, want, n_want);
    }
    printf("%s: %zu prompts tokenize as in %s\n", model_rel, json_array_size(cases), json_rel);
    json_decref(root);
    pv_vocab_free(v);
}

START_TEST(test_stories260k_ref) { check_ref_prompts("models/stories260K.gguf", "ref/stories260K.json"); }
END_TEST

START_TEST(test_tinyllama_ref) { check_ref_prompts("models/tinyllama-v0-q4_0.gguf", "ref/tinyllama-v0-q4_0.json"); }
END_TEST

START_TEST(test_bert_refused) {
    char path[1024], err[PV_ERRLEN] = "";
    if (!tu_shared(path, sizeof path, "vocab/ggml-vocab-bert-bge.gguf")) return;
    gguf_file_t *f = NULL;
    ck_assert_msg(gguf_open(path, &f, err, sizeof err) == 0, "%s", err);
    static int dummy;
    pv_vocab_t *v = (pv_vocab_t *)&dummy; /* must be reset to NULL */
    ck_assert_int_eq(pv_vocab_load(f, &v, err, sizeof err), PV_EUNSUPPORTED);
    ck_assert_ptr_null(v);
    ck_assert_msg(strstr(err, "\"bert\"") && strstr(err, "WordPiece"), "message: %s", err);
    gguf_close(f);
}
END_TEST

/* ------------------------------------------------------------------ byte-level BPE */

START_TEST(test_bpe_accessors) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-qwen2.gguf");
    if (!v) return;
    ck_assert_int_eq(pv_vocab_kind(v), PV_VOCAB_BPE);
    ck_assert_str_eq(pv_vocab_kind_name(v), "byte-level BPE (gpt2)");
    ck_assert_str_eq(pv_vocab_pre(v), "qwen2");
    ck_assert_int_eq(pv_vocab_n_tokens(v), 151936);
    ck_assert_int_eq(pv_vocab_bos(v), 151643);
    ck_assert_int_eq(pv_vocab_eos(v), 151643);
    ck_assert_int_eq(pv_vocab_unk(v), -1);
    ck_assert_int_eq(pv_vocab_adds_bos(v), 0);
    ck_assert(pv_vocab_is_eog(v, 151643)); /* <|endoftext|> */
    ck_assert(pv_vocab_is_eog(v, 151645)); /* <|im_end|> */
    ck_assert(!pv_vocab_is_eog(v, 151644)); /* <|im_start|> */
    ck_assert_int_eq(pv_vocab_type(v, 151644), PV_TOKEN_CONTROL);
    ck_assert_str_eq(pv_vocab_text(v, 9707), "Hello");
    EXPECT_IDS(v, "Hello world", 0, 9707, 1879);
    pv_vocab_free(v);

    v = load_shared("vocab/ggml-vocab-llama-bpe.gguf");
    if (!v) return;
    ck_assert_str_eq(pv_vocab_pre(v), "llama-bpe");
    ck_assert_int_eq(pv_vocab_adds_bos(v), 1); /* the Llama 3 default, no key in the file */
    ck_assert_int_eq(pv_vocab_bos(v), 128000);
    ck_assert(pv_vocab_is_eog(v, 128009)); /* <|eot_id|> */
    EXPECT_IDS(v, "Hello world", PV_TOK_ADD_BOS, 128000, 9906, 1917);
    pv_vocab_free(v);

    v = load_shared("vocab/ggml-vocab-gpt-2.gguf");
    if (!v) return;
    ck_assert_str_eq(pv_vocab_pre(v), "gpt-2");
    ck_assert_int_eq(pv_vocab_adds_bos(v), 0);
    ck_assert_int_eq(pv_vocab_bos(v), 50256);
    pv_vocab_free(v);
    v = load_shared("vocab/ggml-vocab-llama-spm.gguf");
    if (!v) return;
    ck_assert_ptr_null(pv_vocab_pre(v)); /* SentencePiece has no pre-tokenizer */
    pv_vocab_free(v);
}
END_TEST

/* Does ids[0..n) contain id? */
static int has_id(const int32_t *ids, int n, int32_t id) {
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

/* Control tokens are recognised only when asked; their text is otherwise
 * plain text that round-trips. Special text is never split by the merges. */
START_TEST(test_bpe_specials) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-qwen2.gguf");
    if (!v) return;
    const char *chat = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n";
    int n, n_plain;
    int32_t *ids = encode(v, chat, strlen(chat), PV_TOK_SPECIAL, &n);
    int32_t *plain = encode(v, "user\nHi there", 13, 0, &n_plain);
    ck_assert_int_eq(ids[0], 151644);
    ck_assert_int_gt(n, n_plain + 3);
    ck_assert(same_ids(ids + 1, n_plain, plain, n_plain)); /* the text between is encoded on its own */
    ck_assert_int_eq(ids[1 + n_plain], 151645);
    int n_start = 0, n_end = 0;
    for (int i = 0; i < n; i++) n_start += ids[i] == 151644, n_end += ids[i] == 151645;
    ck_assert(n_start == 2 && n_end == 1);
    free(ids);
    free(plain);
    /* user text cannot inject the markers */
    ids = encode(v, chat, strlen(chat), 0, &n);
    ck_assert(!has_id(ids, n, 151644) && !has_id(ids, n, 151645) && !has_id(ids, n, 151643));
    free(ids);
    ck_assert(round_trips(v, chat, strlen(chat)));
    int len;
    static const int32_t end[] = {151645};
    char *s = decode(v, end, 1, 0, &len);
    ck_assert_int_eq(len, 0); /* control tokens print nothing unless asked */
    free(s);
    s = decode(v, end, 1, PV_DETOK_SPECIAL, &len);
    ck_assert_str_eq(s, "<|im_end|>");
    free(s);
    pv_vocab_free(v);

    /* Llama 3: BOS twice when the text also starts with it (as llama.cpp) */
    v = load_shared("vocab/ggml-vocab-llama-bpe.gguf");
    if (!v) return;
    EXPECT_IDS(v, "<|begin_of_text|>Hello", PV_TOK_ADD_BOS | PV_TOK_SPECIAL, 128000, 128000, 9906);
    EXPECT_IDS(v, "Hello<|eot_id|>", PV_TOK_SPECIAL, 9906, 128009);
    pv_vocab_free(v);

    /* MPT: user-defined tokens (runs of spaces) match without PV_TOK_SPECIAL, whole */
    v = load_shared("vocab/ggml-vocab-mpt.gguf");
    if (!v) return;
    char text[40];
    snprintf(text, sizeof text, "x%24sy", "");
    ids = encode(v, text, strlen(text), 0, &n);
    int found = 0;
    for (int i = 0; i < n; i++)
        if (pv_vocab_type(v, ids[i]) == PV_TOKEN_USER_DEFINED && strlen(pv_vocab_text(v, ids[i])) == 24) found = 1;
    ck_assert_msg(found, "the 24-space user-defined token was not used");
    free(ids);
    ck_assert(round_trips(v, text, strlen(text)));
    pv_vocab_free(v);
}
END_TEST

/* Random code points of every kind the pre-tokenizers care about: ASCII,
 * letters with marks, CJK, Hangul, emoji, digits of other scripts, and the
 * White_Space characters (U+0085, U+00A0, U+3000, ...). */
static size_t random_utf8(uint32_t *seed, char *buf, size_t cap) {
    static const uint32_t picks[] = {0x85,   0xa0,   0xb5,   0xc4,   0xe9,   0x301,  0x3b1,  0x416,  0x5d0,
                                     0x627,  0x663,  0x915,  0x94d,  0xe01,  0x1680, 0x1f7d, 0x2003, 0x2028,
                                     0x2019, 0x2126, 0x212a, 0x3000, 0x3001, 0x4e2d, 0x6587, 0xac00, 0xff01,
                                     0xff21, 0x1f600, 0x1f680, 0x200d, 0xfe0f, 0x10400, 0xfffd};
    size_t len = 0, want = xorshift(seed) % (cap - 4);
    while (len < want) {
        uint32_t r = xorshift(seed) % 100, cp;
        if (r < 50) cp = 0x20 + xorshift(seed) % 95;
        else if (r < 60) cp = "\t\n\r  "[xorshift(seed) % 5];
        else if (r < 65) cp = '0' + xorshift(seed) % 10;
        else cp = picks[xorshift(seed) % (sizeof picks / sizeof picks[0])];
        char tmp[4];
        size_t n = cp < 0x80 ? (tmp[0] = (char)cp, 1)
                   : cp < 0x800 ? (tmp[0] = (char)(0xc0 | cp >> 6), tmp[1] = (char)(0x80 | (cp & 0x3f)), 2)
                   : cp < 0x10000
                       ? (tmp[0] = (char)(0xe0 | cp >> 12), tmp[1] = (char)(0x80 | (cp >> 6 & 0x3f)),
                          tmp[2] = (char)(0x80 | (cp & 0x3f)), 3)
                       : (tmp[0] = (char)(0xf0 | cp >> 18), tmp[1] = (char)(0x80 | (cp >> 12 & 0x3f)),
                          tmp[2] = (char)(0x80 | (cp >> 6 & 0x3f)), tmp[3] = (char)(0x80 | (cp & 0x3f)), 4);
        if (len + n > want) break;
        memcpy(buf + len, tmp, n);
        len += n;
    }
    return len;
}

/* What decode(encode(text)) gives with a BPE vocabulary, from covered[b]
 * (byte b alone encodes and decodes to itself): a valid character keeps its
 * covered bytes (a byte the vocabulary lacks is dropped, as llama.cpp and
 * Hugging Face drop it); an invalid byte stays when covered, else becomes
 * U+FFFD (as llama.cpp makes every invalid byte). out holds 3 * n bytes. */
static size_t bpe_expected(const int covered[256], const char *in, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int k = pv_utf8_next(in + i, n - i, NULL);
        for (int j = 0; j < (k > 0 ? k : 1); j++) {
            unsigned char c = (unsigned char)in[i + (size_t)j];
            if (covered[c]) out[o++] = (char)c;
            else if (k <= 0) memcpy(out + o, "\xef\xbf\xbd", 3), o += 3;
        }
        i += (size_t)(k > 0 ? k : 1);
    }
    return o;
}

/* Property: decode(encode(text)) == text, for valid UTF-8 of every script and
 * for arbitrary bytes (invalid UTF-8 included), with every pre-tokenizer,
 * except for the bytes a vocabulary cannot spell (bpe_expected). */
START_TEST(test_bpe_random_round_trip) {
    char rel[256];
    snprintf(rel, sizeof rel, "vocab/%s", bpe_vocabs[_i]);
    pv_vocab_t *v = load_shared(rel);
    if (!v) return;
    int covered[256], n_covered = 0;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        int n, len;
        int32_t *ids = encode(v, &c, 1, 0, &n);
        char *back = decode(v, ids, n, 0, &len);
        covered[b] = len == 1 && back[0] == c;
        n_covered += covered[b];
        free(ids);
        free(back);
    }
    /* GPT-2, Llama 3, Qwen 2 and DeepSeek spell every byte that valid UTF-8 uses */
    for (int b = 0; b < 256; b++) ck_assert(covered[b] || strstr(rel, "falcon") || b == 0xc0 || b == 0xc1 || b >= 0xf1);
    if (strstr(rel, "gpt-2") || strstr(rel, "llama-bpe") || strstr(rel, "qwen2")) ck_assert_int_eq(n_covered, 256);
    uint32_t seed = 0x9e3779b9u + (uint32_t)_i;
    char buf[160], want[3 * 160];
    for (int i = 0; i < 1500; i++) {
        for (int kind = 0; kind < 2; kind++) {
            size_t len = kind == 0 ? random_utf8(&seed, buf, sizeof buf) : random_text(&seed, buf, 96);
            ck_assert(kind == 1 || pv_utf8_valid(buf, len));
            size_t n_want = bpe_expected(covered, buf, len, want);
            int n, back_len;
            int32_t *ids = encode(v, buf, len, 0, &n);
            char *back = decode(v, ids, n, 0, &back_len);
            ck_assert_msg((size_t)back_len == n_want && memcmp(back, want, n_want) == 0,
                          "%s: random %s %d does not round trip", rel, kind ? "bytes" : "UTF-8 text", i);
            free(ids);
            free(back);
        }
    }
    printf("%s: %d of 256 bytes spelled; 3000 random texts round trip\n", rel, n_covered);
    pv_vocab_free(v);
}
END_TEST

/* Invalid bytes are cut into words as llama.cpp cuts its U+FFFD, but keep
 * their own bytes. */
START_TEST(test_bpe_invalid_utf8) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-gpt-2.gguf");
    if (!v) return;
    int n1, n2, n3;
    int32_t *a = encode(v, "a", 1, 0, &n1), *b = encode(v, "\xe2\x82", 2, 0, &n2);
    int32_t *ab = encode(v, "a\xe2\x82", 3, 0, &n3); /* a letter word, then a word of two "symbols" */
    ck_assert_int_eq(n3, n1 + n2);
    ck_assert(same_ids(ab, n1, a, n1) && same_ids(ab + n1, n2, b, n2));
    free(a);
    free(b);
    free(ab);
    static const char *const cases[] = {"\xff", "\xc3", "a\xff b", "\xe2\x82\xac\xe2\x82", "\xed\xa0\x80",
                                        "\xc0\x80 x", "\xf4\x90\x80\x80!", " \x80\x80\x80 "};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(round_trips(v, cases[i], strlen(cases[i])), "case %zu", i);
    static const char nul_text[] = {'a', 0, 'b'};
    ck_assert(round_trips(v, nul_text, 3));
    pv_vocab_free(v);
}
END_TEST

/* A repeated word gives the same tokens each time (bpe.c caches words within
 * a call): with GPT-2's pre-tokenizer " alpha" and " beta" are words of
 * their own, so the whole is the concatenation of the parts. */
START_TEST(test_bpe_word_cache) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-gpt-2.gguf");
    if (!v) return;
    static const char *const words[] = {" alpha", " beta", " \xe4\xb8\xad\xe6\x96\x87", " x", " 12345"};
    int32_t want[256];
    int n_want = 0;
    char text[512] = "";
    for (int rep = 0; rep < 6; rep++)
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
            int n;
            int32_t *ids = encode(v, words[i], strlen(words[i]), 0, &n);
            ck_assert_int_le(n_want + n, 256);
            memcpy(want + n_want, ids, (size_t)n * sizeof *ids);
            n_want += n;
            free(ids);
            strcat(text, words[i]);
        }
    expect_ids(v, text, 0, want, n_want);
    pv_vocab_free(v);
}
END_TEST

/* Long hostile inputs: runs of one character (one huge word), random bytes,
 * many special tokens; no crash, exact round trips, in time. */
START_TEST(test_bpe_long_inputs) {
    static const char *const vocabs[] = {"vocab/ggml-vocab-qwen2.gguf", "vocab/ggml-vocab-deepseek-llm.gguf",
                                         "vocab/ggml-vocab-gpt-2.gguf"};
    pv_vocab_t *v = load_shared(vocabs[_i]);
    if (!v) return;
    size_t len = 200000;
    char *text = malloc(len);
    ck_assert_ptr_nonnull(text);
    static const char fills[][4] = {"a", " ", "\n", "\xff", "1", "\xe4\xb8\xad", " \t", "!"};
    for (size_t k = 0; k < sizeof fills / sizeof fills[0]; k++) {
        size_t step = strlen(fills[k]);
        for (size_t i = 0; i < len; i++) text[i] = fills[k][i % step];
        size_t n = len - len % step;
        ck_assert_int_lt(pv_tokenize(v, text, n, 0, NULL, 0), 0);
        int lossy = k == 3 && strstr(vocabs[_i], "deepseek"); /* DeepSeek has no token for byte FF: U+FFFD */
        ck_assert_msg(lossy || round_trips(v, text, n), "%s: fill %zu does not round trip", vocabs[_i], k);
    }
    uint32_t seed = 777;
    for (size_t i = 0; i < len; i++) text[i] = (char)(xorshift(&seed) & 0xff);
    int n_random = pv_tokenize(v, text, len, 0, NULL, 0);
    ck_assert(n_random < 0 && n_random != PV_TOK_FAILED);
    if (!strstr(vocabs[_i], "deepseek")) ck_assert(round_trips(v, text, len));
    const char *eot = "<|endoftext|>";
    size_t step = strlen(eot), reps = len / step;
    for (size_t i = 0; i < reps * step; i++) text[i] = eot[i % step];
    int32_t id = -1;
    if (pv_tokenize(v, eot, step, PV_TOK_SPECIAL, &id, 1) == 1 && pv_vocab_type(v, id) == PV_TOKEN_CONTROL)
        ck_assert_int_eq(pv_tokenize(v, text, reps * step, PV_TOK_SPECIAL, NULL, 0), -(int)reps);
    ck_assert(round_trips(v, text, reps * step));
    free(text);
    pv_vocab_free(v);
}
END_TEST

/* ------------------------------------------------------------------ vocabularies built in memory */

/* A GGUF image under construction: header, then key/value pairs, no tensors. */
typedef struct {
    unsigned char *p; /* bytes, owned */
    size_t n;         /* bytes written */
    size_t cap;       /* bytes allocated */
    uint64_t n_kv;    /* pairs written; patched into the header by gb_image */
} gb_t;

static void gb_put(gb_t *g, const void *d, size_t n) {
    if (g->n + n > g->cap) {
        g->cap = 2 * (g->n + n) + 64;
        g->p = realloc(g->p, g->cap);
        ck_assert_ptr_nonnull(g->p);
    }
    memcpy(g->p + g->n, d, n);
    g->n += n;
}
static void gb_u32(gb_t *g, uint32_t x) {
    unsigned char b[4];
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(x >> (8 * i));
    gb_put(g, b, 4);
}
static void gb_u64(gb_t *g, uint64_t x) {
    gb_u32(g, (uint32_t)x);
    gb_u32(g, (uint32_t)(x >> 32));
}
static void gb_str(gb_t *g, const char *s) {
    gb_u64(g, strlen(s));
    gb_put(g, s, strlen(s));
}
static void gb_key(gb_t *g, const char *key, gguf_vtype_t t) {
    gb_str(g, key);
    gb_u32(g, t);
    g->n_kv++;
}
static void gb_begin(gb_t *g) {
    memset(g, 0, sizeof *g);
    gb_put(g, "GGUF", 4);
    gb_u32(g, 3);
    gb_u64(g, 0); /* tensors */
    gb_u64(g, 0); /* key/value pairs, patched */
}
static void kv_string(gb_t *g, const char *key, const char *val) {
    gb_key(g, key, GGUF_VT_STRING);
    gb_str(g, val);
}
static void kv_u32(gb_t *g, const char *key, uint32_t val) {
    gb_key(g, key, GGUF_VT_UINT32);
    gb_u32(g, val);
}
static void kv_bool(gb_t *g, const char *key, int val) {
    gb_key(g, key, GGUF_VT_BOOL);
    unsigned char b = (unsigned char)val;
    gb_put(g, &b, 1);
}
static void kv_strings(gb_t *g, const char *key, const char *const *s, int n) {
    gb_key(g, key, GGUF_VT_ARRAY);
    gb_u32(g, GGUF_VT_STRING);
    gb_u64(g, (uint64_t)n);
    for (int i = 0; i < n; i++) gb_str(g, s[i]);
}
static void kv_numbers(gb_t *g, const char *key, gguf_vtype_t t, const void *vals, int n) {
    gb_key(g, key, GGUF_VT_ARRAY);
    gb_u32(g, t);
    gb_u64(g, (uint64_t)n);
    gb_put(g, vals, 4 * (size_t)n); /* 4-byte types only; the host is little-endian */
}

/* A tiny SentencePiece vocabulary: enough to pin merge order and fallbacks. */
static const char *const mini_tokens[] = {
    "<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", "ab", "ba", "<0x63>", "<|user|>",
};
static const float mini_scores[] = {0, 0, 0, -1, -2, -2, -1, -1, 0, 0};
static const int32_t mini_types[] = {2, 3, 3, 1, 1, 1, 1, 1, 6, 4};
#define MINI_N 10

static void mini_base(gb_t *g) {
    gb_begin(g);
    kv_string(g, "tokenizer.ggml.model", "llama");
    kv_strings(g, "tokenizer.ggml.tokens", mini_tokens, MINI_N);
    kv_numbers(g, "tokenizer.ggml.token_type", GGUF_VT_INT32, mini_types, MINI_N);
}

/* Opens the image and loads its vocabulary; returns pv_vocab_load's code. */
static int gb_load(gb_t *g, pv_vocab_t **v, char *err, size_t errlen) {
    for (int i = 0; i < 8; i++) g->p[16 + i] = (unsigned char)(g->n_kv >> (8 * i));
    gguf_file_t *f = NULL;
    int rc = gguf_open_buffer(g->p, g->n, "mini.gguf", &f, err, errlen);
    ck_assert_msg(rc == 0, "%s", err);
    rc = pv_vocab_load(f, v, err, errlen);
    gguf_close(f);
    free(g->p);
    return rc;
}

static pv_vocab_t *mini_vocab(const float *scores, int add_space_prefix) {
    gb_t g;
    mini_base(&g);
    kv_numbers(&g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, MINI_N);
    if (!add_space_prefix) kv_bool(&g, "tokenizer.ggml.add_space_prefix", 0);
    char err[PV_ERRLEN];
    pv_vocab_t *v = NULL;
    ck_assert_msg(gb_load(&g, &v, err, sizeof err) == 0, "%s", err);
    return v;
}

START_TEST(test_mini_merges) {
    pv_vocab_t *v = mini_vocab(mini_scores, 1);
    EXPECT_IDS(v, "aba", 0, 3, 6, 4);      /* "ab" and "ba" tie: the leftmost pair merges */
    EXPECT_IDS(v, "c", 0, 3, 8);           /* no token "c": byte token <0x63> */
    EXPECT_IDS(v, "d", 0, 3, 0);           /* no token and no byte token: unk */
    EXPECT_IDS(v, "<s>", 0, 3, 0, 0, 0);   /* plain text without PV_TOK_SPECIAL */
    EXPECT_IDS(v, "<s>", PV_TOK_SPECIAL, 1);
    EXPECT_IDS(v, "a<|user|>b", 0, 3, 4, 9, 3, 5); /* user-defined tokens always match */
    char buf[16];
    ck_assert_int_eq(pv_token_to_piece(v, 9, 0, buf, sizeof buf), 8);
    pv_vocab_free(v);

    float favour_ba[MINI_N];
    memcpy(favour_ba, mini_scores, sizeof favour_ba);
    favour_ba[7] = 0;
    v = mini_vocab(favour_ba, 0);
    EXPECT_IDS(v, "aba", 0, 4, 7); /* no space prefix; pairs ab (-1) and ba (0): ba wins */
    pv_vocab_free(v);
}
END_TEST

/* NaN and infinite scores must not upset the queue (any order, no crash). */
START_TEST(test_mini_odd_scores) {
    float odd[MINI_N];
    memcpy(odd, mini_scores, sizeof odd);
    odd[6] = __builtin_nanf("");
    odd[7] = -__builtin_inff();
    odd[3] = __builtin_inff();
    pv_vocab_t *v = mini_vocab(odd, 1);
    char text[4001];
    for (int i = 0; i < 4000; i++) text[i] = "ab a"[i % 4];
    text[4000] = 0;
    int n1, n2;
    int32_t *a = encode(v, text, 4000, 0, &n1), *b = encode(v, text, 4000, 0, &n2);
    ck_assert(n1 > 0 && same_ids(a, n1, b, n2));
    free(a);
    free(b);
    ck_assert(round_trips(v, "ab ba abba", 10));
    pv_vocab_free(v);
}
END_TEST

/* One malformed vocabulary: what to write and the error it must produce. */
typedef struct {
    const char *name;          /* what is wrong */
    void (*build)(gb_t *g);    /* writes the whole image */
    int code;                  /* expected PV_E* */
    const char *needle;        /* must appear in the message */
} bad_case_t;

static void bad_scores_len(gb_t *g) {
    mini_base(g);
    kv_numbers(g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, mini_scores, MINI_N - 1);
}
static void bad_types_f32(gb_t *g) {
    gb_begin(g);
    kv_string(g, "tokenizer.ggml.model", "llama");
    kv_strings(g, "tokenizer.ggml.tokens", mini_tokens, MINI_N);
    kv_numbers(g, "tokenizer.ggml.token_type", GGUF_VT_FLOAT32, mini_scores, MINI_N);
}
static void bad_bos_range(gb_t *g) {
    mini_base(g);
    kv_u32(g, "tokenizer.ggml.bos_token_id", 99);
}
static void bad_eos_type(gb_t *g) {
    mini_base(g);
    kv_string(g, "tokenizer.ggml.eos_token_id", "2");
}
static void bad_duplicate(gb_t *g) {
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "a", "a"};
    gb_begin(g);
    kv_string(g, "tokenizer.ggml.model", "llama");
    kv_strings(g, "tokenizer.ggml.tokens", toks, 5);
}
static void bad_no_tokens(gb_t *g) {
    gb_begin(g);
    kv_string(g, "tokenizer.ggml.model", "llama");
}
static void bad_no_model(gb_t *g) {
    gb_begin(g);
    kv_strings(g, "tokenizer.ggml.tokens", mini_tokens, MINI_N);
}
static void bad_model_type(gb_t *g) {
    gb_begin(g);
    kv_u32(g, "tokenizer.ggml.model", 1);
}
static void bad_model_name(gb_t *g) {
    gb_begin(g);
    kv_string(g, "tokenizer.ggml.model", "wordz\x01\x7f");
}
static void bad_byte_text(gb_t *g) {
    static const int32_t types[] = {2, 3, 3, 1, 6, 1, 1, 1, 6, 4}; /* "a" typed BYTE */
    gb_begin(g);
    kv_string(g, "tokenizer.ggml.model", "llama");
    kv_strings(g, "tokenizer.ggml.tokens", mini_tokens, MINI_N);
    kv_numbers(g, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, MINI_N);
}
static void bad_add_bos_type(gb_t *g) {
    mini_base(g);
    kv_u32(g, "tokenizer.ggml.add_bos_token", 1);
}
static void bad_tokens_type(gb_t *g) {
    gb_begin(g);
    kv_string(g, "tokenizer.ggml.model", "llama");
    kv_numbers(g, "tokenizer.ggml.tokens", GGUF_VT_INT32, mini_types, MINI_N);
}
static void bad_add_bos_without_bos(gb_t *g) {
    mini_base(g);
    kv_u32(g, "tokenizer.ggml.bos_token_id", 0xffffffffu);
}
static void bad_empty_tokens(gb_t *g) {
    gb_begin(g);
    kv_string(g, "tokenizer.ggml.model", "llama");
    kv_strings(g, "tokenizer.ggml.tokens", mini_tokens, 0);
}

static const bad_case_t bad_cases[] = {
    {"scores shorter than tokens", bad_scores_len, PV_ECORRUPT, "tokenizer.ggml.scores"},
    {"token_type of f32", bad_types_f32, PV_ECORRUPT, "tokenizer.ggml.token_type"},
    {"BOS id out of range", bad_bos_range, PV_ECORRUPT, "tokenizer.ggml.bos_token_id = 99"},
    {"EOS id as a string", bad_eos_type, PV_ECORRUPT, "tokenizer.ggml.eos_token_id"},
    {"duplicate token text", bad_duplicate, PV_ECORRUPT, "tokens 3 and 4"},
    {"no token list", bad_no_tokens, PV_ENOTFOUND, "tokenizer.ggml.tokens"},
    {"no model", bad_no_model, PV_ENOTFOUND, "tokenizer.ggml.model"},
    {"model of u32", bad_model_type, PV_ECORRUPT, "tokenizer.ggml.model"},
    {"unknown model", bad_model_name, PV_EUNSUPPORTED, "\"wordz??\""},
    {"BYTE token not <0xNN>", bad_byte_text, PV_ECORRUPT, "token 4 \"a\""},
    {"add_bos_token of u32", bad_add_bos_type, PV_ECORRUPT, "tokenizer.ggml.add_bos_token"},
    {"token list of i32", bad_tokens_type, PV_ECORRUPT, "tokenizer.ggml.tokens"},
    {"add_bos_token without BOS", bad_add_bos_without_bos, PV_ECORRUPT, "tokenizer.ggml.bos_token_id is not set"},
    {"empty token list", bad_empty_tokens, PV_ECORRUPT, "tokenizer.ggml.tokens"},
};

START_TEST(test_bad_vocab) {
    const bad_case_t *c = &bad_cases[_i];
    gb_t g;
    c->build(&g);
    char err[PV_ERRLEN] = "";
    static int dummy;
    pv_vocab_t *v = (pv_vocab_t *)&dummy; /* must be reset to NULL */
    int rc = gb_load(&g, &v, err, sizeof err);
    ck_assert_msg(rc == c->code, "%s: got %d (%s), want %d", c->name, rc, err, c->code);
    ck_assert_ptr_null(v);
    ck_assert_msg(strstr(err, c->needle) && strstr(err, "mini.gguf"), "%s: message \"%s\" lacks \"%s\"", c->name, err,
                  c->needle);
}
END_TEST

START_TEST(test_odd_but_valid_vocab) {
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "", "x"};
    gb_t g;
    gb_begin(&g);
    kv_string(&g, "tokenizer.ggml.model", "llama");
    kv_strings(&g, "tokenizer.ggml.tokens", toks, 5);
    kv_u32(&g, "tokenizer.ggml.padding_token_id", 0xffffffffu);
    kv_bool(&g, "tokenizer.ggml.add_bos_token", 0);
    char err[PV_ERRLEN];
    pv_vocab_t *v = NULL;
    ck_assert_msg(gb_load(&g, &v, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(pv_vocab_text(v, 3), "[EMPTY_3]"); /* as llama.cpp names it */
    ck_assert_int_eq(pv_vocab_pad(v), -1);
    ck_assert_int_eq(pv_vocab_adds_bos(v), 0);
    ck_assert_int_eq(pv_vocab_type(v, 0), PV_TOKEN_NORMAL); /* no token_type array */
    /* "▁" and "y" are not tokens and there are no byte tokens: unk per byte */
    EXPECT_IDS(v, "xy", 0, 0, 0, 0, 4, 0);
    pv_vocab_free(v);
}
END_TEST

/* A tiny byte-level BPE vocabulary: enough to pin merge order, ties, merge
 * results that are not tokens, fallbacks and special tokens. */
static const char *const bmini_tokens[] = {
    "a", "b", "c", "ab", "bc", "abc", "\xc4\xa0" /* Ġ: space */, "\xc4\xa0\x61" /* Ġa */, "ccc", "<|end|>", "<u>", "aa",
    "x", "\xe4\xb8\xad" /* not in the byte alphabet */, "<0x41>",
};
static const int32_t bmini_types[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 4, 1, 1, 1, 6};
#define BMINI_N 15
static const char *const bmini_merges[] = {
    "b c", "a b", "ab c", "\xc4\xa0 a", "a a",
    "c c",     /* "cc" is not a token */
    "cc c",    /* ... but a part of this merge, whose result is */
    "nospace", /* never applies */
    "x ",      /* empty right part: never applies */
    "a b",     /* duplicate: the first rank stays */
};
#define BMINI_MERGES 10

static void bmini_base(gb_t *g, const char *pre) {
    gb_begin(g);
    kv_string(g, "tokenizer.ggml.model", "gpt2");
    if (pre) kv_string(g, "tokenizer.ggml.pre", pre);
    kv_strings(g, "tokenizer.ggml.tokens", bmini_tokens, BMINI_N);
    kv_numbers(g, "tokenizer.ggml.token_type", GGUF_VT_INT32, bmini_types, BMINI_N);
    kv_u32(g, "tokenizer.ggml.eos_token_id", 9);
}

static pv_vocab_t *bmini_vocab(const char *pre) {
    gb_t g;
    bmini_base(&g, pre);
    kv_strings(&g, "tokenizer.ggml.merges", bmini_merges, BMINI_MERGES);
    char err[PV_ERRLEN];
    pv_vocab_t *v = NULL;
    ck_assert_msg(gb_load(&g, &v, err, sizeof err) == 0, "%s", err);
    return v;
}

START_TEST(test_bpe_mini) {
    pv_vocab_t *v = bmini_vocab("gpt-2");
    ck_assert_int_eq(pv_vocab_kind(v), PV_VOCAB_BPE);
    ck_assert_int_eq(pv_vocab_bos(v), 11); /* llama.cpp's BPE default */
    ck_assert_int_eq(pv_vocab_adds_bos(v), 0);
    EXPECT_IDS(v, "abc", 0, 0, 4);       /* "b c" (rank 0) before "a b" (rank 1); no "a bc" */
    EXPECT_IDS(v, "ab", 0, 3);
    EXPECT_IDS(v, "aaa", 0, 11, 0);      /* two "a a" candidates: the leftmost merges */
    EXPECT_IDS(v, "ccc", 0, 8);          /* through "cc", which is not a token */
    EXPECT_IDS(v, "cc", 0, 2, 2);        /* a final "cc" falls back to its single bytes */
    EXPECT_IDS(v, " a", 0, 7);           /* one word " a": Ġ a -> Ġa */
    EXPECT_IDS(v, "a d", 0, 0, 6);       /* no token for "d": dropped, as llama.cpp */
    EXPECT_IDS(v, "a<u>b", 0, 0, 10, 1); /* user-defined text always matches */
    EXPECT_IDS(v, "<|end|>", PV_TOK_SPECIAL, 9);
    int n;
    int32_t *ids = encode(v, "<|end|>", 7, 0, &n);
    ck_assert(!has_id(ids, n, 9));
    free(ids);
    char buf[16];
    ck_assert_int_eq(pv_token_to_piece(v, 7, 0, buf, sizeof buf), 2);
    ck_assert(memcmp(buf, " a", 2) == 0);
    ck_assert_int_eq(pv_token_to_piece(v, 9, 0, buf, sizeof buf), 0);
    ck_assert_int_eq(pv_token_to_piece(v, 9, PV_DETOK_SPECIAL, buf, sizeof buf), 7);
    ck_assert_int_eq(pv_token_to_piece(v, 10, 0, buf, sizeof buf), 3);
    ck_assert_int_eq(pv_token_to_piece(v, 13, 0, buf, sizeof buf), 3); /* outside the alphabet: as it is */
    ck_assert(memcmp(buf, "\xe4\xb8\xad", 3) == 0);
    ck_assert_int_eq(pv_token_to_piece(v, 14, 0, buf, sizeof buf), 0); /* BPE prints no BYTE tokens */
    ck_assert_int_eq(pv_token_to_piece(v, 6, PV_DETOK_STRIP_SPACE, buf, sizeof buf), 1); /* no space prefix in BPE */
    pv_vocab_free(v);

    v = bmini_vocab(NULL); /* no tokenizer.ggml.pre: "default", as llama.cpp */
    ck_assert_str_eq(pv_vocab_pre(v), "default");
    pv_vocab_free(v);
    v = bmini_vocab("llama-bpe"); /* Llama 3: BOS by default, whole-word tokens */
    ck_assert_int_eq(pv_vocab_adds_bos(v), 1);
    EXPECT_IDS(v, "abc", 0, 5); /* "abc" is a token: no merges */
    pv_vocab_free(v);
}
END_TEST

static void bad_bpe_pre(gb_t *g) {
    bmini_base(g, "bogus-pre");
    kv_strings(g, "tokenizer.ggml.merges", bmini_merges, BMINI_MERGES);
}
static void bad_bpe_pre_type(gb_t *g) {
    gb_begin(g);
    kv_string(g, "tokenizer.ggml.model", "gpt2");
    kv_u32(g, "tokenizer.ggml.pre", 2);
    kv_strings(g, "tokenizer.ggml.tokens", bmini_tokens, BMINI_N);
}
static void bad_bpe_no_merges(gb_t *g) { bmini_base(g, "gpt-2"); }
static void bad_bpe_merges_i32(gb_t *g) {
    bmini_base(g, "gpt-2");
    kv_numbers(g, "tokenizer.ggml.merges", GGUF_VT_INT32, bmini_types, BMINI_N);
}

static const bad_case_t bad_bpe_cases[] = {
    {"unknown pre-tokenizer", bad_bpe_pre, PV_EUNSUPPORTED, "tokenizer.ggml.pre \"bogus-pre\" is an unknown"},
    {"pre of u32", bad_bpe_pre_type, PV_ECORRUPT, "tokenizer.ggml.pre must be a string"},
    {"no merges", bad_bpe_no_merges, PV_ENOTFOUND, "tokenizer.ggml.merges is missing"},
    {"merges of i32", bad_bpe_merges_i32, PV_ECORRUPT, "tokenizer.ggml.merges must be an array of strings"},
};

START_TEST(test_bad_bpe_vocab) {
    const bad_case_t *c = &bad_bpe_cases[_i];
    gb_t g;
    c->build(&g);
    char err[PV_ERRLEN] = "";
    pv_vocab_t *v = NULL;
    int rc = gb_load(&g, &v, err, sizeof err);
    ck_assert_msg(rc == c->code, "%s: got %d (%s), want %d", c->name, rc, err, c->code);
    ck_assert_ptr_null(v);
    ck_assert_msg(strstr(err, c->needle) && strstr(err, "mini.gguf"), "%s: message \"%s\" lacks \"%s\"", c->name, err,
                  c->needle);
}
END_TEST

/* ------------------------------------------------------------------ UTF-8 repair and streaming */

#define RC "\xef\xbf\xbd"

START_TEST(test_utf8_repair) {
    static const struct {
        const char *in;  /* input bytes */
        size_t n;        /* input length */
        int final;       /* end of input */
        const char *out; /* expected text */
        size_t used;     /* input bytes consumed */
    } cases[] = {
        {"abc", 3, 1, "abc", 3},
        {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, 1, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9},
        /* Unicode's example of maximal subparts (U+FFFD substitution, chapter 3) */
        {"\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64", 13, 1, "a" RC RC RC "b" RC "c" RC RC "d", 13},
        {"\xc0\xaf", 2, 1, RC RC, 2},                      /* overlong */
        {"\xe0\x80\x80", 3, 1, RC RC RC, 3},               /* overlong */
        {"\xed\xa0\x80", 3, 1, RC RC RC, 3},               /* surrogate */
        {"\xf4\x90\x80\x80", 4, 1, RC RC RC RC, 4},        /* above U+10FFFF */
        {"\xf0\x9f\x98", 3, 1, RC, 3},                     /* cut short, at the end */
        {"\xf0\x9f\x98", 3, 0, "", 0},                     /* ... which may still complete */
        {"ab\xe2\x82", 4, 0, "ab", 2},
        {"\xe2\x28\xa1", 3, 0, RC "(" RC, 3},              /* cannot complete: replaced at once */
        {"\xff\xfe", 2, 0, RC RC, 2},
    };
    char out[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t used = 99;
        size_t n = pv_utf8_repair(cases[i].in, cases[i].n, cases[i].final, out, &used);
        ck_assert_msg(n == strlen(cases[i].out) && memcmp(out, cases[i].out, n) == 0 && used == cases[i].used,
                      "case %zu: got %zu bytes, used %zu", i, n, used);
        ck_assert(pv_utf8_valid(out, n));
        ck_assert_int_eq(pv_utf8_valid(cases[i].in, cases[i].n), strcmp(cases[i].in, cases[i].out) == 0);
    }
    uint32_t cp;
    ck_assert_int_eq(pv_utf8_next("\xe2\x82\xac", 3, &cp), 3);
    ck_assert_int_eq(cp, 0x20ac);
    ck_assert_int_eq(pv_utf8_next("\xe2\x82", 2, &cp), 0);
    ck_assert_int_eq(pv_utf8_next("\xe2\x82x", 3, &cp), -2);
    ck_assert_int_eq(pv_utf8_next("\x80", 1, &cp), -1);
}
END_TEST

/* Pushes ids through a stream: every piece handed out must be valid UTF-8,
 * and all of them together the repaired whole. */
static void check_stream(const pv_vocab_t *v, const int32_t *ids, int n, unsigned flags) {
    pv_detok_stream_t st;
    pv_detok_stream_init(&st, v, flags);
    size_t cap = 64, got = 0;
    char *acc = malloc(cap);
    ck_assert_ptr_nonnull(acc);
    for (int i = 0; i <= n; i++) {
        const char *text;
        size_t len;
        if (i < n) ck_assert_int_eq(pv_detok_stream_push(&st, ids[i], &text, &len), 0);
        else ck_assert_int_eq(pv_detok_stream_finish(&st, &text, &len), 0);
        ck_assert_msg(pv_utf8_valid(text, len), "piece %d of %d is not valid UTF-8", i, n);
        if (got + len > cap) {
            cap = 2 * (got + len);
            acc = realloc(acc, cap);
            ck_assert_ptr_nonnull(acc);
        }
        memcpy(acc + got, text, len);
        got += len;
    }
    pv_detok_stream_close(&st);
    int whole_len;
    char *whole = decode(v, ids, n, flags, &whole_len);
    char *want = malloc(3 * (size_t)whole_len + 1);
    ck_assert_ptr_nonnull(want);
    size_t n_want = pv_utf8_repair(whole, (size_t)whole_len, 1, want, NULL);
    ck_assert_msg(got == n_want && memcmp(acc, want, got) == 0, "streamed text differs from the whole");
    free(want);
    free(whole);
    free(acc);
}

START_TEST(test_detok_stream) {
    pv_vocab_t *v = load_shared("vocab/ggml-vocab-llama-spm.gguf");
    if (!v) return;
    /* byte tokens <0xNN> = NN + 3: "€" arrives in three pieces */
    static const int32_t euro[] = {0xe2 + 3, 0x82 + 3, 0xac + 3};
    pv_detok_stream_t st;
    pv_detok_stream_init(&st, v, 0);
    const char *text;
    size_t len;
    ck_assert_int_eq(pv_detok_stream_push(&st, 1, &text, &len), 0); /* <s>: no text, nothing held */
    ck_assert_int_eq(len, 0);
    ck_assert_int_eq(pv_detok_stream_push(&st, euro[0], &text, &len), 0);
    ck_assert_int_eq(len, 0);
    ck_assert_int_eq(pv_detok_stream_push(&st, euro[1], &text, &len), 0);
    ck_assert_int_eq(len, 0);
    ck_assert_int_eq(pv_detok_stream_push(&st, euro[2], &text, &len), 0);
    ck_assert(len == 3 && memcmp(text, "\xe2\x82\xac", 3) == 0);
    /* a dangling lead byte at the end becomes U+FFFD */
    ck_assert_int_eq(pv_detok_stream_push(&st, 0xf0 + 3, &text, &len), 0);
    ck_assert_int_eq(len, 0);
    ck_assert_int_eq(pv_detok_stream_finish(&st, &text, &len), 0);
    ck_assert(len == 3 && memcmp(text, RC, 3) == 0);
    /* ... and one that cannot complete comes out at once, before the next text */
    ck_assert_int_eq(pv_detok_stream_push(&st, 0xc3 + 3, &text, &len), 0);
    ck_assert_int_eq(pv_detok_stream_push(&st, 29909, &text, &len), 0); /* "A" */
    ck_assert(len == 4 && memcmp(text, RC "A", 4) == 0);
    pv_detok_stream_close(&st);
    pv_detok_stream_close(&st); /* closing twice is harmless */
    pv_vocab_free(v);

    /* property: random id sequences (out-of-range ids included) and the
     * tokens of random multilingual text, for SentencePiece and BPE */
    static const char *const vocabs[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                                         "vocab/ggml-vocab-qwen2.gguf"};
    for (size_t k = 0; k < sizeof vocabs / sizeof vocabs[0]; k++) {
        v = load_shared(vocabs[k]);
        if (!v) return;
        uint32_t seed = 4242 + (uint32_t)k;
        int32_t ids[64];
        for (int i = 0; i < 400; i++) {
            int n = (int)(xorshift(&seed) % 64);
            for (int j = 0; j < n; j++) ids[j] = (int32_t)(xorshift(&seed) % (uint32_t)(pv_vocab_n_tokens(v) + 10)) - 5;
            check_stream(v, ids, n, i % 3 == 0 ? PV_DETOK_SPECIAL : i % 3 == 1 ? PV_DETOK_STRIP_SPACE : 0);
        }
        char buf[160];
        for (int i = 0; i < 300; i++) {
            size_t len2 = random_utf8(&seed, buf, sizeof buf);
            int n;
            int32_t *tok = encode(v, buf, len2, 0, &n);
            check_stream(v, tok, n, 0);
            free(tok);
        }
        pv_vocab_free(v);
    }
}
END_TEST

/* ------------------------------------------------------------------ suite */

Suite *tok_suite(void) {
    Suite *s = suite_create("tok");
    TCase *tc = tcase_create("vectors");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_vectors_llama_spm);
    tcase_add_test(tc, test_vectors_phi3);
    tcase_add_loop_test(tc, test_vectors_bpe, 0, N_BPE_VOCABS);
    tcase_add_test(tc, test_random_round_trip_llama);
    tcase_add_test(tc, test_random_round_trip_phi3);
    tcase_add_test(tc, test_long_inputs);
    suite_add_tcase(s, tc);

    tc = tcase_create("api");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bos_and_empty);
    tcase_add_test(tc, test_special_parsing);
    tcase_add_test(tc, test_special_phi3_rstrip);
    tcase_add_test(tc, test_n_max_too_small);
    tcase_add_test(tc, test_invalid_utf8);
    tcase_add_test(tc, test_decode);
    tcase_add_test(tc, test_accessors);
    suite_add_tcase(s, tc);

    tc = tcase_create("models");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_stories260k_prompt);
    tcase_add_test(tc, test_stories260k_ref);
    tcase_add_test(tc, test_tinyllama_ref);
    tcase_add_test(tc, test_bert_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("hostile");
    tcase_add_test(tc, test_mini_merges);
    tcase_add_test(tc, test_mini_odd_scores);
    tcase_add_loop_test(tc, test_bad_vocab, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(tc, test_odd_but_valid_vocab);
    tcase_add_test(tc, test_bpe_mini);
    tcase_add_loop_test(tc, test_bad_bpe_vocab, 0, (int)(sizeof bad_bpe_cases / sizeof bad_bpe_cases[0]));
    suite_add_tcase(s, tc);

    tc = tcase_create("bpe");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_bpe_accessors);
    tcase_add_test(tc, test_bpe_specials);
    tcase_add_loop_test(tc, test_bpe_random_round_trip, 0, N_BPE_VOCABS);
    tcase_add_test(tc, test_bpe_invalid_utf8);
    tcase_add_test(tc, test_bpe_word_cache);
    tcase_add_loop_test(tc, test_bpe_long_inputs, 0, 3);
    suite_add_tcase(s, tc);

    tc = tcase_create("utf8");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_utf8_repair);
    tcase_add_test(tc, test_detok_stream);
    suite_add_tcase(s, tc);
    return s;
}
