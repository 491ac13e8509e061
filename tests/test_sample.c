/* test_sample.c - the sampler: greedy, determinism by seed, and the filters' statistics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/sample.h"
#include "suites.h"

static pv_sampler_params_t greedy(void) {
    pv_sampler_params_t p = pv_sampler_defaults();
    p.temperature = 0.0f;
    return p;
}

START_TEST(test_greedy_argmax) {
    pv_sampler_params_t p = greedy();
    pv_sampler_t *s = pv_sampler_new(&p, 5);
    float l[5] = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f};
    ck_assert_int_eq(pv_sampler_sample(s, l, NULL, 0), 1); /* ties go to the lowest id */
    pv_sampler_free(s);
}
END_TEST

START_TEST(test_repeat_penalty) {
    pv_sampler_params_t p = greedy();
    p.repeat_penalty = 2.0f;
    pv_sampler_t *s = pv_sampler_new(&p, 4);
    float l[4] = {1.0f, 1.5f, -1.0f, 0.8f};
    int32_t hist[] = {1, 1, 2};
    ck_assert_int_eq(pv_sampler_sample(s, l, hist, 3), 0);
    ck_assert_float_eq(l[1], 0.75f); /* penalised once although seen twice */
    ck_assert_float_eq(l[2], -2.0f); /* negative logits are multiplied */
    pv_sampler_free(s);
}
END_TEST

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void draw(const pv_sampler_params_t *p, const float *logits, int n, int draws, int *counts) {
    pv_sampler_t *s = pv_sampler_new(p, n);
    float l[16];
    memset(counts, 0, (size_t)n * sizeof *counts);
    for (int i = 0; i < draws; i++) {
        memcpy(l, logits, (size_t)n * sizeof *l);
        counts[pv_sampler_sample(s, l, NULL, 0)]++;
    }
    pv_sampler_free(s);
}

START_TEST(test_seed_determinism) {
    pv_sampler_params_t p = pv_sampler_defaults();
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.temperature = 1.0f;
    p.seed = 42;
    float logits[8] = {1, 2, 3, 4, 4, 3, 2, 1};
    int seq_a[200], seq_b[200], seq_c[200];
    pv_sampler_t *a = pv_sampler_new(&p, 8), *b = pv_sampler_new(&p, 8);
    p.seed = 43;
    pv_sampler_t *c = pv_sampler_new(&p, 8);
    for (int i = 0; i < 200; i++) {
        float l[8];
        memcpy(l, logits, sizeof l);
        seq_a[i] = pv_sampler_sample(a, l, NULL, 0);
        memcpy(l, logits, sizeof l);
        seq_b[i] = pv_sampler_sample(b, l, NULL, 0);
        memcpy(l, logits, sizeof l);
        seq_c[i] = pv_sampler_sample(c, l, NULL, 0);
    }
    ck_assert_mem_eq(seq_a, seq_b, sizeof seq_a);
    ck_assert_int_ne(memcmp(seq_a, seq_c, sizeof seq_a), 0);
    pv_sampler_free(a);
    pv_sampler_free(b);
    pv_sampler_free(c);
}
END_TEST

/* At temperature 1 with no filters, frequencies follow softmax(logits). */
START_TEST(test_temperature_distribution) {
    pv_sampler_params_t p = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .repeat_penalty = 1.0f, .seed = 7};
    float logits[4] = {0.0f, 1.0f, 2.0f, 0.5f};
    int counts[4], n = 40000;
    draw(&p, logits, 4, n, counts);
    double z = 1 + exp(1) + exp(2) + exp(0.5);
    for (int i = 0; i < 4; i++) {
        double want = exp(logits[i]) / z, got = (double)counts[i] / n;
        ck_assert_msg(fabs(got - want) < 0.01, "token %d: %f vs %f", i, got, want);
    }
    /* a low temperature sharpens towards the top token */
    p.temperature = 0.25f;
    draw(&p, logits, 4, 4000, counts);
    ck_assert_int_gt(counts[2], 3600);
}
END_TEST

START_TEST(test_filters) {
    float logits[6] = {5.0f, 4.0f, 3.0f, 2.0f, 1.0f, 0.0f};
    int counts[6];
    pv_sampler_params_t p = {.temperature = 1.0f, .top_k = 2, .top_p = 1.0f, .min_p = 0.0f, .repeat_penalty = 1.0f, .seed = 1};
    draw(&p, logits, 6, 3000, counts);
    ck_assert_int_eq(counts[2] + counts[3] + counts[4] + counts[5], 0);
    ck_assert_int_gt(counts[1], 0);

    /* top-p 0.5: the top token alone holds 0.64 of the mass */
    p.top_k = 0;
    p.top_p = 0.5f;
    draw(&p, logits, 6, 1000, counts);
    ck_assert_int_eq(counts[0], 1000);

    /* min-p 0.3 keeps tokens with p >= 0.3 p(max): e^-1 = 0.37 survives, e^-2 does not */
    p.top_p = 1.0f;
    p.min_p = 0.3f;
    draw(&p, logits, 6, 3000, counts);
    ck_assert_int_gt(counts[1], 0);
    ck_assert_int_eq(counts[2] + counts[3] + counts[4] + counts[5], 0);
}
END_TEST

/* Top-p over a large vocabulary, where the kept set reaches well past the
 * first 64 and 512 candidates that are sorted first: every draw lies in the
 * set a full sort gives, and draws reach its far end. */
START_TEST(test_top_p_large_vocab) {
    enum { N = 50000 };
    float *logits = malloc(N * sizeof *logits), *l = malloc(N * sizeof *l);
    double *sorted = malloc(N * sizeof *sorted), sum = 0, mass = 0;
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) { /* a long tail: probabilities fall slowly, shuffled over the ids */
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        logits[i] = -4.0f * (float)((x >> 33) % 10000) / 10000.0f;
        sum += exp(logits[i]);
    }
    for (int i = 0; i < N; i++) sorted[i] = exp(logits[i]) / sum;
    qsort(sorted, N, sizeof *sorted, cmp_desc);
    int keep = 0;
    while (mass < 0.9 && keep < N) mass += sorted[keep++];
    double floor = sorted[keep - 1]; /* the least likely probability the filter keeps */
    ck_assert_int_gt(keep, 4096);
    pv_sampler_params_t p = {.temperature = 1.0f, .top_k = 0, .top_p = 0.9f, .min_p = 0.0f, .repeat_penalty = 1.0f, .seed = 3};
    pv_sampler_t *sm = pv_sampler_new(&p, N);
    double least = 1.0;
    for (int d = 0; d < 400; d++) {
        memcpy(l, logits, N * sizeof *l);
        int id = pv_sampler_sample(sm, l, NULL, 0);
        double pr = exp(logits[id]) / sum;
        ck_assert_msg(pr >= floor * (1 - 1e-5), "draw %d: token %d (p %g) is outside the top-p set (least %g)", d, id, pr, floor);
        if (pr < least) least = pr;
    }
    ck_assert_msg(least < sorted[512], "draws stay among the first 512 candidates (least p %g)", least);
    pv_sampler_free(sm);
    free(logits);
    free(l);
    free(sorted);
}
END_TEST

/* Unfiltered draws over a large vocabulary (the APIs' default) never pick a
 * masked-out (-inf) token and follow softmax(logits / T) over the rest. */
START_TEST(test_unfiltered_masked) {
    enum { N = 32000 };
    float *logits = malloc(N * sizeof *logits), *l = malloc(N * sizeof *l);
    for (int i = 0; i < N; i++) logits[i] = -INFINITY;
    logits[7] = 1.0f, logits[20000] = 0.0f, logits[N - 1] = 1.0f;
    pv_sampler_params_t p = pv_sampler_plain();
    p.temperature = 0.5f;
    p.seed = 11;
    pv_sampler_t *sm = pv_sampler_new(&p, N);
    int c7 = 0, c20000 = 0, clast = 0, n = 20000;
    for (int d = 0; d < n; d++) {
        memcpy(l, logits, N * sizeof *l);
        int id = pv_sampler_sample(sm, l, NULL, 0);
        ck_assert_msg(id == 7 || id == 20000 || id == N - 1, "draw %d: masked token %d", d, id);
        c7 += id == 7, c20000 += id == 20000, clast += id == N - 1;
    }
    double z = 2 * exp(2.0) + 1; /* logits / 0.5 */
    ck_assert_msg(fabs((double)c20000 / n - 1 / z) < 0.01, "token 20000: %f vs %f", (double)c20000 / n, 1 / z);
    ck_assert_msg(fabs((double)c7 / n - exp(2.0) / z) < 0.015, "token 7: %f", (double)c7 / n);
    ck_assert_msg(fabs((double)clast / n - exp(2.0) / z) < 0.015, "last token: %f", (double)clast / n);
    /* one token left: always it */
    logits[7] = logits[20000] = -INFINITY;
    for (int d = 0; d < 100; d++) {
        memcpy(l, logits, N * sizeof *l);
        ck_assert_int_eq(pv_sampler_sample(sm, l, NULL, 0), N - 1);
    }
    pv_sampler_free(sm);
    free(logits);
    free(l);
}
END_TEST

Suite *sample_suite(void) {
    Suite *s = suite_create("sample");
    TCase *tc = tcase_create("sampler");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_greedy_argmax);
    tcase_add_test(tc, test_repeat_penalty);
    tcase_add_test(tc, test_seed_determinism);
    tcase_add_test(tc, test_temperature_distribution);
    tcase_add_test(tc, test_filters);
    tcase_add_test(tc, test_top_p_large_vocab);
    tcase_add_test(tc, test_unfiltered_masked);
    suite_add_tcase(s, tc);
    return s;
}
