/* test_grammar.c - constrained decoding: the JSON automaton accepts and rejects
 * strings per schema type (nesting, escapes, numbers, enums, required
 * properties, arrays, bounded whitespace, UTF-8); the token mask equals a
 * token-by-token check; and generation under the mask with random logits over
 * a real vocabulary always ends in JSON that parses and validates against its
 * schema (checked here by a small validator of our own). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "model/grammar.h"
#include "model/sample.h"
#include "suites.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

static pv_gram_t *compile_text(const char *schema) {
    json_error_t je;
    json_t *s = json_loads(schema, JSON_DECODE_ANY, &je);
    ck_assert_msg(s != NULL, "bad test schema: %s", je.text);
    pv_gram_t *g = NULL;
    char err[PV_ERRLEN];
    int rc = pv_gram_from_schema(s, &g, err, sizeof err);
    json_decref(s);
    ck_assert_msg(rc == 0, "%s: %s", schema, err);
    return g;
}

/* 2: complete (done or accepting), 1: a valid unfinished prefix, 0: rejected. */
static int match(const pv_gram_t *g, const char *text) {
    pv_gram_state_t st;
    pv_gram_start(g, &st);
    if (!pv_gram_feed(&st, text, strlen(text))) return 0;
    return pv_gram_done(&st) || pv_gram_accepting(&st) ? 2 : 1;
}

#define ACCEPT(g, t) ck_assert_msg(match(g, t) == 2, "should accept: %s", t)
#define PREFIX(g, t) ck_assert_msg(match(g, t) == 1, "should be an unfinished prefix: %s", t)
#define REJECT(g, t) ck_assert_msg(match(g, t) == 0, "should reject: %s", t)

/* Code points of a UTF-8 string (as JSON Schema counts length). */
static size_t n_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* A validator of the schema subset, independent of the automaton. */
static int valid(const json_t *v, const json_t *s) {
    if (!json_is_object(s)) return 1;
    const json_t *en = json_object_get(s, "enum");
    if (en) {
        size_t i;
        const json_t *x;
        json_array_foreach(en, i, x) if (json_equal(v, x)) return 1;
        return 0;
    }
    const json_t *alts = json_object_get(s, "anyOf");
    if (alts) {
        size_t i;
        const json_t *x;
        json_array_foreach(alts, i, x) if (valid(v, x)) return 1;
        return 0;
    }
    const char *t = json_string_value(json_object_get(s, "type"));
    if (!t) return 1;
    if (!strcmp(t, "string")) {
        if (!json_is_string(v)) return 0;
        size_t n = n_chars(json_string_value(v));
        const json_t *lo = json_object_get(s, "minLength"), *hi = json_object_get(s, "maxLength");
        return (!lo || (json_int_t)n >= json_integer_value(lo)) && (!hi || (json_int_t)n <= json_integer_value(hi));
    }
    if (!strcmp(t, "integer")) return json_is_integer(v);
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    if (!strcmp(t, "null")) return json_is_null(v);
    if (!strcmp(t, "array")) {
        if (!json_is_array(v)) return 0;
        const json_t *lo = json_object_get(s, "minItems"), *hi = json_object_get(s, "maxItems");
        json_int_t n = (json_int_t)json_array_size(v);
        if ((lo && n < json_integer_value(lo)) || (hi && n > json_integer_value(hi))) return 0;
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) if (!valid(x, json_object_get(s, "items"))) return 0;
        return 1;
    }
    if (!strcmp(t, "object")) {
        if (!json_is_object(v)) return 0;
        const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
        size_t i;
        const json_t *x;
        json_array_foreach(req, i, x) if (!json_object_get(v, json_string_value(x))) return 0;
        const char *k;
        json_object_foreach((json_t *)v, k, x) {
            if (!props) continue;
            const json_t *ps = json_object_get(props, k);
            if (!ps || !valid(x, ps)) return 0;
        }
        return 1;
    }
    return 0;
}

/* ---- the automaton ----------------------------------------------------------------------------- */

START_TEST(test_strings) {
    pv_gram_t *g = compile_text("{\"type\":\"string\",\"minLength\":2,\"maxLength\":5}");
    ACCEPT(g, "\"ab\"");
    ACCEPT(g, "\"abcde\"");
    REJECT(g, " \"ab\""); /* nothing before the value */
    ACCEPT(g, "\"a\\\"\\\\\"");       /* escapes count one character each */
    ACCEPT(g, "\"\\u00e9\\n\\t/\"");
    ACCEPT(g, "\"h\xc3\xa9llo\"");     /* é is one character */
    ACCEPT(g, "\"\xe2\x82\xac\xf0\x9f\x98\x80\""); /* € and an emoji */
    PREFIX(g, "\"abc");
    PREFIX(g, "\"\xe2\x82");           /* inside a UTF-8 character */
    REJECT(g, "\"a\"");                /* too short */
    REJECT(g, "\"abcdef");             /* too long */
    REJECT(g, "\"a\nb\"");             /* raw control character */
    REJECT(g, "\"\\x\"");              /* unknown escape */
    REJECT(g, "\"\\u0000\"");          /* NUL */
    REJECT(g, "\"\\ud83d\\ude00\"");   /* surrogates */
    REJECT(g, "\"\xc0\xaf\"");         /* overlong */
    REJECT(g, "\"\xed\xa0\x80\"");     /* an encoded surrogate */
    REJECT(g, "\"\xe2\x28\xa1\"");     /* a broken continuation */
    REJECT(g, "\"ab\" ");              /* nothing after the value */
    REJECT(g, "'ab'");
    pv_gram_free(g);
}
END_TEST

START_TEST(test_numbers) {
    pv_gram_t *g = compile_text("{\"type\":\"number\"}");
    const char *ok[] = {"0", "-0", "12", "-3.25", "1e5", "1E+5", "2.5e-3", "0.0", NULL};
    for (int i = 0; ok[i]; i++) ACCEPT(g, ok[i]);
    PREFIX(g, "-");
    PREFIX(g, "1.");
    PREFIX(g, "1e");
    PREFIX(g, "1e+");
    const char *bad[] = {"01", "+1", ".5", "1.e5", "--1", "1e5.0", "0x10", "1..2", "1234567890123456", NULL};
    for (int i = 0; bad[i]; i++) REJECT(g, bad[i]);
    pv_gram_free(g);
    g = compile_text("{\"type\":\"integer\"}");
    ACCEPT(g, "-42");
    ACCEPT(g, "123456789012345");
    REJECT(g, "1.5");
    REJECT(g, "1e3");
    pv_gram_free(g);
}
END_TEST

START_TEST(test_enums_and_scalars) {
    pv_gram_t *g = compile_text("{\"enum\":[\"red\",\"green\",1,12,true,null]}");
    ACCEPT(g, "\"red\"");
    ACCEPT(g, "\"green\"");
    ACCEPT(g, "1");  /* a number literal may still grow: accepting, not done */
    ACCEPT(g, "12");
    ACCEPT(g, "true");
    ACCEPT(g, "null");
    PREFIX(g, "\"gr");
    REJECT(g, "\"blue\"");
    REJECT(g, "\"re\"");
    REJECT(g, "13");
    REJECT(g, "false");
    pv_gram_free(g);
    g = compile_text("{\"type\":\"boolean\"}");
    ACCEPT(g, "false");
    REJECT(g, "0");
    pv_gram_free(g);
    g = compile_text("{\"const\":\"x\"}");
    ACCEPT(g, "\"x\"");
    REJECT(g, "\"y\"");
    pv_gram_free(g);
}
END_TEST

START_TEST(test_objects) {
    pv_gram_t *g = compile_text("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                                "\"b\":{\"type\":\"string\",\"maxLength\":3},\"ab\":{\"type\":\"boolean\"}},"
                                "\"required\":[\"a\"]}");
    ACCEPT(g, "{\"a\":1}");
    ACCEPT(g, "{\"b\":\"x\",\"a\":-2}");         /* any order */
    ACCEPT(g, "{ \"a\" : 1 , \"ab\" : true }");
    ACCEPT(g, "{\n  \"ab\": false,\n  \"a\": 7\n}");
    PREFIX(g, "{\"a\":1,");
    REJECT(g, "{}");                             /* a is required */
    REJECT(g, "{\"b\":\"x\"}");
    REJECT(g, "{\"a\":1,\"a\":2}");              /* at most once */
    REJECT(g, "{\"c\":1}");                      /* additional properties */
    REJECT(g, "{\"a\":1,}");                     /* trailing comma */
    REJECT(g, "{\"a\":1.5}");
    REJECT(g, "{\"a\":1,\"b\":\"long\"}");
    REJECT(g, "{\"a\":1,\"b\":\"x\",\"ab\":true,"); /* no property left to write */
    pv_gram_free(g);
    g = compile_text("{\"type\":\"object\"}"); /* no properties: any object */
    ACCEPT(g, "{}");
    ACCEPT(g, "{\"x\":[1,{\"y\":null}],\"z\":\"w\"}");
    REJECT(g, "[]");
    REJECT(g, "{\"x\"}");
    pv_gram_free(g);
    g = compile_text("{\"type\":\"object\",\"properties\":{}}");
    ACCEPT(g, "{}");
    REJECT(g, "{\"x\":1}");
    pv_gram_free(g);
}
END_TEST

START_TEST(test_arrays_and_unions) {
    pv_gram_t *g = compile_text("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":3}");
    ACCEPT(g, "[1]");
    ACCEPT(g, "[1, 2,3]");
    ACCEPT(g, "[ 1 ]");
    REJECT(g, "[]");
    REJECT(g, "[1,2,3,4]");
    REJECT(g, "[1,]");
    REJECT(g, "[\"a\"]");
    pv_gram_free(g);
    g = compile_text("{\"type\":[\"string\",\"null\"],\"maxLength\":2}");
    ACCEPT(g, "null");
    ACCEPT(g, "\"ab\"");
    REJECT(g, "\"abc\"");
    REJECT(g, "1");
    pv_gram_free(g);
    g = compile_text("{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"array\",\"items\":{\"type\":\"boolean\"}}]}");
    ACCEPT(g, "[true,false]");
    ACCEPT(g, "5");
    REJECT(g, "[1]");
    pv_gram_free(g);
    g = compile_text("{}"); /* any value, nested */
    ACCEPT(g, "[{\"a\":[[],{}]},\"s\",-1.5e3,true,null]");
    ACCEPT(g, "\"x\"");
    REJECT(g, "[1 2]");
    REJECT(g, "{\"a\":}");
    pv_gram_free(g);
}
END_TEST

START_TEST(test_whitespace_and_depth) {
    pv_gram_t *g = compile_text("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}");
    char buf[128];
    snprintf(buf, sizeof buf, "{%*s\"a\":1}", PV_GRAM_MAX_WS, "");
    ACCEPT(g, buf);
    snprintf(buf, sizeof buf, "{%*s\"a\":1}", PV_GRAM_MAX_WS + 1, "");
    REJECT(g, buf); /* a bounded gap: no endless spaces */
    REJECT(g, " {}");
    pv_gram_free(g);
    g = compile_text("true");
    char deep[64] = {0}, *p = deep; /* any value: nesting stops at the frame bound */
    for (int i = 0; i < PV_GRAM_MAX_DEPTH - 1; i++) *p++ = '[';
    PREFIX(g, deep);
    *p = '[';
    REJECT(g, deep);
    *p = '1';
    PREFIX(g, deep);
    pv_gram_free(g);
}
END_TEST

START_TEST(test_tool_call_layout) {
    json_t *sa = json_loads("{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}", 0, NULL);
    const char *names[] = {"weather", "web"};
    const json_t *schemas[] = {sa, NULL};
    pv_gram_t *g = NULL;
    char err[PV_ERRLEN];
    ck_assert_int_eq(pv_gram_tool_call(names, schemas, 2, &g, err, sizeof err), 0);
    ACCEPT(g, "{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}");
    ACCEPT(g, "{\"name\": \"web\", \"arguments\": {}}");
    ACCEPT(g, "{\"name\":\"web\",\"arguments\":{}}");
    ACCEPT(g, "{\n  \"name\" : \"web\" ,\n  \"arguments\" : {}\n}");
    REJECT(g, " {\"name\":\"web\",\"arguments\":{}}");
    REJECT(g, "{\"na me\":\"web\",\"arguments\":{}}");
    REJECT(g, "{\"name\": \"web\", \"arguments\": {\"city\": \"Paris\"}}"); /* the name picks the schema */
    REJECT(g, "{\"name\": \"weather\", \"arguments\": {}}");
    REJECT(g, "{\"name\": \"we\", \"arguments\": {}}");
    REJECT(g, "{\"arguments\": {}, \"name\": \"web\"}");
    pv_gram_free(g);
    json_t *bad = json_loads("{\"type\":\"string\"}", 0, NULL);
    schemas[0] = bad;
    ck_assert_int_eq(pv_gram_tool_call(names, schemas, 1, &g, err, sizeof err), PV_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "weather"));
    json_decref(sa);
    json_decref(bad);
}
END_TEST

START_TEST(test_unsupported_keywords) {
    const char *cases[][2] = {
        {"{\"type\":\"string\",\"pattern\":\"^a\"}", "pattern"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":1}}}", "properties.n"},
        {"{\"$ref\":\"#/x\"}", "$ref"},
        {"{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"string\",\"maxLength\":2}]}", "differ"},
        {"{\"type\":\"object\",\"properties\":{},\"required\":[\"x\"]}", "required"},
        {"{\"enum\":[]}", "enum"},
        {"{\"type\":\"widget\"}", "widget"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *s = json_loads(cases[i][0], 0, NULL);
        pv_gram_t *g = NULL;
        char err[PV_ERRLEN] = "";
        ck_assert_int_lt(pv_gram_from_schema(s, &g, err, sizeof err), 0);
        ck_assert_ptr_null(g);
        ck_assert_msg(strstr(err, cases[i][1]) != NULL, "message \"%s\" should name %s", err, cases[i][1]);
        json_decref(s);
    }
    /* annotations are ignored */
    pv_gram_t *g = compile_text("{\"type\":\"string\",\"description\":\"d\",\"title\":\"t\",\"format\":\"date\"}");
    ACCEPT(g, "\"x\"");
    pv_gram_free(g);
}
END_TEST

/* ---- tokens ------------------------------------------------------------------------------------- */

static pv_vocab_t *load_vocab(const char *rel) {
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

static const char *const GEN_SCHEMAS[] = {
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":12},"
    "\"unit\":{\"enum\":[\"celsius\",\"fahrenheit\"]},\"days\":{\"type\":\"integer\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":4},\"maxItems\":3},"
    "\"exact\":{\"type\":\"boolean\"}},\"required\":[\"city\",\"unit\"]}",
    "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"number\"},{\"type\":\"null\"},"
    "{\"type\":\"object\",\"properties\":{\"k\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":3}},\"required\":[\"k\"]}]},"
    "\"minItems\":2,\"maxItems\":4}",
};

/* Random logits, masked, sampled (seeded): every run must end in valid JSON. */
static void generate(const pv_vocab_t *v, pv_gram_vocab_t *gv, const char *schema_text, uint64_t seed, int check_mask) {
    json_t *schema = json_loads(schema_text, 0, NULL);
    pv_gram_t *g = compile_text(schema_text);
    int32_t n = pv_vocab_n_tokens(v);
    float *logits = malloc((size_t)n * sizeof *logits), *twin = malloc((size_t)n * sizeof *twin);
    pv_sampler_params_t p = pv_sampler_plain();
    p.seed = seed;
    pv_sampler_t *smp = pv_sampler_new(&p, n);
    char out[8192];
    size_t len = 0;
    pv_gram_state_t st;
    pv_gram_start(g, &st);
    int steps = 0;
    for (; steps < 2000 && !pv_gram_done(&st); steps++) {
        for (int32_t i = 0; i < n; i++) logits[i] = 4.0f * pv_sampler_uniform(smp);
        memcpy(twin, logits, (size_t)n * sizeof *twin);
        int allowed = pv_gram_mask(gv, &st, logits);
        ck_assert_int_gt(allowed, 0); /* no dead ends */
        if (check_mask && steps < 60) { /* the prefix-sharing walk equals a check of each token on its own */
            int count = 0;
            for (int32_t i = 0; i < n; i++) {
                pv_gram_state_t t;
                pv_gram_copy(&t, &st);
                int ok = pv_gram_feed_token(gv, &t, i) || (pv_vocab_is_eog(v, i) && pv_gram_accepting(&st));
                ck_assert_msg(ok == !isinf(logits[i]), "token %d: mask %d, alone %d", i, !isinf(logits[i]), ok);
                count += ok;
            }
            ck_assert_int_eq(count, allowed);
        }
        int32_t id = pv_sampler_sample(smp, logits, NULL, 0);
        if (pv_vocab_is_eog(v, id)) break;
        char piece[256];
        int k = pv_token_to_piece(v, id, 0, piece, sizeof piece);
        ck_assert_int_ge(k, 1);
        ck_assert_int_eq(pv_gram_feed_token(gv, &st, id), 1);
        ck_assert_uint_lt(len + (size_t)k, sizeof out);
        memcpy(out + len, piece, (size_t)k);
        len += (size_t)k;
    }
    out[len] = 0;
    ck_assert_msg(pv_gram_done(&st) || pv_gram_accepting(&st), "unfinished after %d tokens: %s", steps, out);
    json_error_t je;
    json_t *val = json_loads(out, JSON_DECODE_ANY, &je);
    ck_assert_msg(val != NULL, "not JSON (%s): %s", je.text, out);
    ck_assert_msg(valid(val, schema), "does not match the schema: %s", out);
    json_decref(val);
    json_decref(schema);
    pv_gram_free(g);
    pv_sampler_free(smp);
    free(logits);
    free(twin);
}

START_TEST(test_generate_random_llama_spm) {
    pv_vocab_t *v = load_vocab("vocab/ggml-vocab-llama-spm.gguf");
    if (!v) return;
    pv_gram_vocab_t *gv = pv_gram_vocab_new(v);
    ck_assert_ptr_nonnull(gv);
    for (size_t s = 0; s < sizeof GEN_SCHEMAS / sizeof GEN_SCHEMAS[0]; s++)
        for (uint64_t seed = 1; seed <= 12; seed++) generate(v, gv, GEN_SCHEMAS[s], seed * 7919 + s, seed == 1);
    pv_gram_vocab_free(gv);
    pv_vocab_free(v);
}
END_TEST

START_TEST(test_generate_random_bpe) {
    pv_vocab_t *v = load_vocab("vocab/ggml-vocab-qwen2.gguf");
    if (!v) return;
    pv_gram_vocab_t *gv = pv_gram_vocab_new(v);
    ck_assert_ptr_nonnull(gv);
    for (uint64_t seed = 1; seed <= 6; seed++) generate(v, gv, GEN_SCHEMAS[seed % 2], seed, seed == 1);
    pv_gram_vocab_free(gv);
    pv_vocab_free(v);
}
END_TEST

Suite *grammar_suite(void) {
    Suite *s = suite_create("grammar");
    TCase *tc = tcase_create("grammar");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_strings);
    tcase_add_test(tc, test_numbers);
    tcase_add_test(tc, test_enums_and_scalars);
    tcase_add_test(tc, test_objects);
    tcase_add_test(tc, test_arrays_and_unions);
    tcase_add_test(tc, test_whitespace_and_depth);
    tcase_add_test(tc, test_tool_call_layout);
    tcase_add_test(tc, test_unsupported_keywords);
    tcase_add_test(tc, test_generate_random_llama_spm);
    tcase_add_test(tc, test_generate_random_bpe);
    suite_add_tcase(s, tc);
    return s;
}
