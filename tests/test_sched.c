/* test_sched.c - the scheduler driven step by step: batched decoding equals
 * one-at-a-time decoding, stop sequences, cancellation, the queue bound; and
 * the Anthropic request parser and prompt formats. */
#include <stdlib.h>
#include <string.h>

#include "api/anthropic.h"
#include "api/prompt.h"
#include "sched/sched.h"
#include "suites.h"

static pv_model_t *load_model(void) {
    char path[512], err[512];
    if (!tu_shared(path, sizeof path, "models/stories260K.gguf")) return NULL;
    pv_model_t *m = NULL;
    ck_assert_msg(pv_model_load(path, &m, err, sizeof err) == 0, "%s", err);
    return m;
}

static pv_sched_t *make_sched(pv_model_t *m, int n_slots, int queue, int chunk) {
    char err[512];
    pv_sched_opts_t o = {.n_slots = n_slots, .queue_limit = queue, .n_ctx = 256, .n_threads = 1,
                         .prefill_chunk = chunk};
    pv_sched_t *s = NULL;
    ck_assert_msg(pv_sched_new(m, &o, &s, err, sizeof err) == 0, "%s", err);
    return s;
}

static pv_req_t *make_req(pv_model_t *m, const char *prompt, int max_tokens, float temp, uint64_t seed,
                          const char *stop) {
    int32_t toks[256];
    int n = pv_tokenize(m->vocab, prompt, strlen(prompt), PV_TOK_ADD_BOS, toks, 256);
    ck_assert_int_gt(n, 0);
    pv_sampler_params_t sp = pv_sampler_defaults();
    sp.temperature = temp;
    sp.seed = seed;
    const char *stops[1] = {stop};
    pv_req_t *r = pv_req_new(toks, n, max_tokens, &sp, stops, stop ? 1 : 0);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* A request whose prompt is well over two chunks (128 tokens) but fits n_ctx. */
static pv_req_t *long_req(pv_model_t *m, int max_tokens) {
    char text[1024] = "";
    while (strlen(text) < 600) strcat(text, "The little dog ran to the park to play with a red ball. ");
    int32_t toks[256];
    ck_assert_int_gt(pv_tokenize(m->vocab, text, strlen(text), PV_TOK_ADD_BOS, toks, 256), 128);
    return make_req(m, text, max_tokens, 0.0f, 1, NULL);
}

/* One step; the prompt tokens it computed (and, n_gen not NULL, the tokens it generated). */
static uint64_t step_counting(pv_sched_t *s, uint64_t *n_gen) {
    pv_sched_stats_t before, after;
    pv_sched_stats(s, &before);
    pv_sched_step(s);
    pv_sched_stats(s, &after);
    if (n_gen) *n_gen = after.n_gen_tokens - before.n_gen_tokens;
    return after.n_prompt_tokens - before.n_prompt_tokens;
}

/* Steps until every request is done; collects each one's text (owned by the caller). */
static void run_all(pv_sched_t *s, pv_req_t **r, int n, char **texts, pv_req_status_t *st) {
    pv_text_t acc[8] = {0}, t = {0};
    for (int guard = 0; guard < 10000; guard++) {
        int left = pv_sched_step(s);
        for (int i = 0; i < n; i++) {
            pv_req_poll(r[i], &st[i], &t);
            size_t old = acc[i].len;
            acc[i].p = realloc(acc[i].p, old + t.len + 1);
            memcpy(acc[i].p + old, t.p ? t.p : "", t.len);
            acc[i].len = old + t.len;
            acc[i].p[acc[i].len] = 0;
        }
        if (!left) break;
    }
    pv_text_free(&t);
    for (int i = 0; i < n; i++) {
        ck_assert(st[i].done);
        texts[i] = acc[i].p;
    }
}

static const char *prompts[3] = {"Once upon a time", "The little dog", "Lily wanted to"};

static void batched_vs_alone(float temp) {
    pv_model_t *m = load_model();
    if (!m) return;
    char *alone[3], *together[3];
    pv_req_status_t st[3];
    pv_sched_t *s = make_sched(m, 1, 4, 5);
    for (int i = 0; i < 3; i++) {
        pv_req_t *r = make_req(m, prompts[i], 24, temp, 42 + (uint64_t)i, NULL);
        ck_assert_int_eq(pv_sched_submit(s, r), 0);
        run_all(s, &r, 1, &alone[i], &st[0]);
        ck_assert_int_eq(st[0].n_gen, 24);
        ck_assert_int_eq(st[0].stop, PV_STOP_MAX_TOKENS);
        pv_req_unref(r);
    }
    pv_sched_free(s);
    s = make_sched(m, 2, 4, 3); /* two slots, a third request waits; odd chunks mix prefill and decode */
    pv_req_t *r[3];
    for (int i = 0; i < 3; i++) {
        r[i] = make_req(m, prompts[i], 24, temp, 42 + (uint64_t)i, NULL);
        ck_assert_int_eq(pv_sched_submit(s, r[i]), 0);
    }
    run_all(s, r, 3, together, st);
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(together[i], alone[i]);
        ck_assert_int_eq(st[i].n_gen, 24);
        pv_req_unref(r[i]);
        free(alone[i]);
        free(together[i]);
    }
    pv_sched_free(s);
    pv_model_free(m);
}

START_TEST(test_batched_equals_alone_greedy) { batched_vs_alone(0.0f); }
END_TEST

START_TEST(test_batched_equals_alone_seeded) { batched_vs_alone(0.9f); }
END_TEST

START_TEST(test_stop_sequence) {
    pv_model_t *m = load_model();
    if (!m) return;
    pv_sched_t *s = make_sched(m, 1, 1, 0);
    char *full, *cut;
    pv_req_status_t st;
    pv_req_t *r = make_req(m, prompts[0], 40, 0.0f, 1, NULL);
    pv_sched_submit(s, r);
    run_all(s, &r, 1, &full, &st);
    pv_req_unref(r);
    ck_assert_int_gt(strlen(full), 20);
    char stop[8];
    memcpy(stop, full + 10, 4); /* four bytes from the middle of the text */
    stop[4] = 0;
    r = make_req(m, prompts[0], 40, 0.0f, 1, stop);
    pv_sched_submit(s, r);
    run_all(s, &r, 1, &cut, &st);
    ck_assert_int_eq(st.stop, PV_STOP_SEQUENCE);
    ck_assert_int_eq(st.stop_index, 0);
    const char *at = strstr(full, stop);
    ck_assert_int_eq(strlen(cut), (size_t)(at - full));
    ck_assert(!strncmp(cut, full, strlen(cut)));
    pv_req_unref(r);
    free(full);
    free(cut);
    pv_sched_free(s);
    pv_model_free(m);
}
END_TEST

/* A grammar on one request: its output is the schema's JSON and ends there
 * (temperature 0 and 1); the unconstrained request beside it is unchanged. */
START_TEST(test_constrained_output) {
    pv_model_t *m = load_model();
    if (!m) return;
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":10},"
                         "\"n\":{\"type\":\"integer\"},\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"ok\"]}";
    json_t *js = json_loads(schema, 0, NULL);
    pv_sched_t *s = make_sched(m, 1, 1, 0);
    char *alone, *texts[2];
    pv_req_status_t st[2];
    pv_req_t *r = make_req(m, prompts[1], 30, 0.0f, 1, NULL);
    pv_sched_submit(s, r);
    run_all(s, &r, 1, &alone, st);
    pv_req_unref(r);
    pv_sched_free(s);
    for (int k = 0; k < 4; k++) {
        s = make_sched(m, 2, 1, 0);
        pv_req_t *rs[2] = {make_req(m, prompts[0], 400, k ? 1.0f : 0.0f, (uint64_t)k, NULL),
                           make_req(m, prompts[1], 30, 0.0f, 1, NULL)};
        pv_gram_t *g = NULL;
        char err[256];
        ck_assert_int_eq(pv_gram_from_schema(js, &g, err, sizeof err), 0);
        pv_req_set_grammar(rs[0], g);
        for (int i = 0; i < 2; i++) ck_assert_int_eq(pv_sched_submit(s, rs[i]), 0);
        run_all(s, rs, 2, texts, st);
        ck_assert_msg(st[0].stop == PV_STOP_END_TURN, "stop %d: %s", st[0].stop, texts[0]);
        json_t *v = json_loads(texts[0], 0, NULL);
        ck_assert_msg(json_is_object(v), "not a JSON object: %s", texts[0]);
        ck_assert(json_is_string(json_object_get(v, "name")) && json_string_length(json_object_get(v, "name")) <= 10);
        ck_assert(json_is_boolean(json_object_get(v, "ok")));
        const json_t *n = json_object_get(v, "n");
        ck_assert(!n || json_is_integer(n));
        ck_assert_int_le(json_object_size(v), 3);
        ck_assert_str_eq(texts[1], alone);
        json_decref(v);
        for (int i = 0; i < 2; i++) {
            pv_req_unref(rs[i]);
            free(texts[i]);
        }
        pv_sched_free(s);
    }
    free(alone);
    json_decref(js);
    pv_model_free(m);
}
END_TEST

START_TEST(test_cancel_and_queue_bound) {
    pv_model_t *m = load_model();
    if (!m) return;
    pv_sched_t *s = make_sched(m, 1, 1, 0);
    pv_req_t *a = make_req(m, prompts[0], 100, 0.0f, 1, NULL);
    pv_req_t *b = make_req(m, prompts[1], 100, 0.0f, 1, NULL);
    pv_req_t *c = make_req(m, prompts[2], 100, 0.0f, 1, NULL);
    ck_assert_int_eq(pv_sched_submit(s, a), 0);
    ck_assert_int_eq(pv_sched_step(s), 1);
    ck_assert_int_eq(pv_sched_submit(s, b), 0);            /* waits in the queue of 1 */
    ck_assert_int_eq(pv_sched_submit(s, c), PV_SCHED_EFULL); /* the queue is full */
    pv_sched_stats_t stats;
    pv_sched_stats(s, &stats);
    ck_assert_int_eq(stats.n_busy, 1);
    ck_assert_int_eq(stats.n_queued, 1);
    ck_assert_uint_gt(stats.kv_used_bytes, 0);
    pv_req_cancel(a);
    pv_sched_step(s); /* a ends, b is admitted */
    pv_req_status_t st;
    pv_text_t t = {0};
    pv_req_poll(a, &st, &t);
    ck_assert(st.done);
    ck_assert_int_eq(st.stop, PV_STOP_CANCELLED);
    pv_req_poll(b, &st, &t);
    ck_assert(st.admitted && !st.done);
    pv_sched_free(s); /* cancels b */
    pv_req_poll(b, &st, &t);
    ck_assert(st.done);
    pv_text_free(&t);
    pv_req_unref(a);
    pv_req_unref(b);
    pv_req_unref(c);
    pv_model_free(m);
}
END_TEST

/* A stream that decodes does not shrink another's prompt chunk: the step
 * holds its decode token and a full chunk (64 tokens, which keeps a long
 * prompt in the tiled attention order), not 63 cut back to 48. */
START_TEST(test_decoding_keeps_full_chunks) {
    pv_model_t *m = load_model();
    if (!m) return;
    pv_sched_t *s = make_sched(m, 2, 2, 64);
    pv_req_t *a = make_req(m, prompts[0], 100, 0.0f, 1, NULL);
    ck_assert_int_eq(pv_sched_submit(s, a), 0);
    pv_sched_step(s); /* a reads its prompt and draws its first token */
    pv_req_t *b = long_req(m, 4);
    ck_assert_int_eq(pv_sched_submit(s, b), 0);
    for (int k = 0; k < 2; k++) {
        uint64_t n_gen, n_prompt = step_counting(s, &n_gen);
        ck_assert_uint_eq(n_gen, 1);     /* a's decode token */
        ck_assert_uint_eq(n_prompt, 64); /* and a whole chunk of b's */
    }
    pv_sched_free(s);
    pv_req_unref(a);
    pv_req_unref(b);
    pv_model_free(m);
}
END_TEST

/* Prompts are read least left first, and a short one comes on top of a long
 * one's full chunk: submitted beside a long prompt (in the slot after it), it
 * draws its first token in the first step, while the long one reads 64. */
START_TEST(test_short_prompt_first) {
    pv_model_t *m = load_model();
    if (!m) return;
    pv_sched_t *s = make_sched(m, 2, 2, 64);
    pv_req_t *a = long_req(m, 4), *b = make_req(m, prompts[1], 4, 0.0f, 1, NULL);
    ck_assert_int_eq(pv_sched_submit(s, a), 0); /* slot 0 */
    ck_assert_int_eq(pv_sched_submit(s, b), 0); /* slot 1 */
    int32_t toks[64];
    int n_b = pv_tokenize(m->vocab, prompts[1], strlen(prompts[1]), PV_TOK_ADD_BOS, toks, 64);
    ck_assert_uint_eq(step_counting(s, NULL), (uint64_t)(64 + n_b));
    pv_req_status_t st;
    pv_text_t t = {0};
    pv_req_poll(b, &st, &t);
    ck_assert_int_eq(st.n_gen, 1);
    pv_req_poll(a, &st, &t);
    ck_assert_int_eq(st.n_gen, 0);
    pv_text_free(&t);
    pv_sched_free(s);
    pv_req_unref(a);
    pv_req_unref(b);
    pv_model_free(m);
}
END_TEST

static int parse(const char *body, pv_anth_req_t *r, char *err) {
    pv_chat_t *plain = NULL;
    ck_assert_int_eq(pv_chat_new(NULL, NULL, 0, &plain, err, 256), 0);
    int rc = pv_anth_parse(body, strlen(body), plain, 0, r, err, 256);
    pv_chat_free(plain);
    return rc;
}

START_TEST(test_anthropic_parse) {
    pv_anth_req_t r;
    char err[256];
    ck_assert_int_eq(parse("{\"model\":\"x\",\"max_tokens\":5,\"system\":[{\"type\":\"text\",\"text\":"
                           "\"x-anthropic-billing-header: cc=1;\"},{\"type\":\"text\",\"text\":\"Be brief.\","
                           "\"cache_control\":{\"type\":\"ephemeral\"}}],\"messages\":[{\"role\":\"user\","
                           "\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]},{\"role\":\"system\",\"content\":"
                           "\"more\"}],\"thinking\":{\"type\":\"adaptive\"},\"stop_sequences\":[\"END\"]}",
                           &r, err),
                     0);
    ck_assert_str_eq(r.prompt, "System: Be brief.\nUser: hi\nSystem: more\nAssistant:");
    ck_assert_str_eq(r.model, "x");
    ck_assert_int_eq(r.max_tokens, 5);
    ck_assert_int_eq(r.n_stops, 1);
    pv_api_req_close(&r);
    const char *bad[] = {
        "{\"model\":\"x\",\"max_tokens\":5}",                                            /* no messages */
        "{\"model\":\"x\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}", /* empty */
        "{\"model\":\"x\",\"max_tokens\":\"5\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
        "{\"model\":\"x\",\"max_tokens\":5,\"messages\":\"hi\"}",
        "{\"model\":\"x\",\"max_tokens\":5,\"messages\":[{\"role\":\"bot\",\"content\":\"a\"}]}",
        "{\"model\":\"x\",\"max_tokens\":5,\"temperature\":\"hot\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
        "{\"model\":\"x\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", /* bad UTF-8 */
        "{\"model\":\"x\",", "[1,2]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        ck_assert_msg(parse(bad[i], &r, err) == -1, "accepted %s", bad[i]);
        ck_assert_msg(err[0], "no message for %s", bad[i]);
    }
}
END_TEST

START_TEST(test_prompt_formats) {
    pv_chat_msg_t m[3] = {{PV_ROLE_USER, "hi"}, {PV_ROLE_ASSISTANT, "hello"}, {PV_ROLE_USER, "bye"}};
    char *p = pv_prompt_render(PV_FMT_CHATML, "sys", m, 3);
    ck_assert_str_eq(p, "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
                        "hello<|im_end|>\n<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n");
    free(p);
    p = pv_prompt_render(PV_FMT_LLAMA2, "sys", m, 3);
    ck_assert_str_eq(p, "[INST] <<SYS>>\nsys\n<</SYS>>\n\nhi [/INST] hello </s><s>[INST] bye [/INST]");
    free(p);
    ck_assert_int_eq(pv_prompt_detect("{% for m in messages %}<|im_start|>"), PV_FMT_CHATML);
    ck_assert_int_eq(pv_prompt_detect("<|user|>"), PV_FMT_PHI3);
    ck_assert_int_eq(pv_prompt_detect(NULL), PV_FMT_PLAIN);
}
END_TEST

Suite *sched_suite(void) {
    Suite *s = suite_create("sched");
    TCase *tc = tcase_create("sched");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_batched_equals_alone_greedy);
    tcase_add_test(tc, test_batched_equals_alone_seeded);
    tcase_add_test(tc, test_stop_sequence);
    tcase_add_test(tc, test_constrained_output);
    tcase_add_test(tc, test_cancel_and_queue_bound);
    tcase_add_test(tc, test_decoding_keeps_full_chunks);
    tcase_add_test(tc, test_short_prompt_first);
    tcase_add_test(tc, test_anthropic_parse);
    tcase_add_test(tc, test_prompt_formats);
    suite_add_tcase(s, tc);
    return s;
}
