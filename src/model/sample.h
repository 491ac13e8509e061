/* sample.h - choosing the next token from logits.
 *
 * The chain, in order: repetition penalty over the last repeat_last_n tokens,
 * then (unless greedy) top-k, top-p, min-p, temperature, and a draw from the
 * seeded RNG. temperature <= 0 means greedy (argmax, ties to the lowest id).
 * The same seed and inputs always give the same tokens. Logits of -INFINITY
 * (a constrained decoding's mask) are never drawn.
 *
 * Ownership: pv_sampler_new() allocates its scratch once (n_vocab);
 * sampling never allocates. */
#ifndef PV_SAMPLE_H
#define PV_SAMPLE_H

#include <stdint.h>

typedef struct {
    float temperature;    /* <= 0: greedy */
    int top_k;            /* keep the k most likely; <= 0: off */
    float top_p;          /* keep the smallest set with mass >= p; >= 1: off */
    float min_p;          /* drop tokens below min_p * p(max); <= 0: off */
    float repeat_penalty; /* 1: off; > 1 discourages recent tokens */
    int repeat_last_n;    /* how many recent tokens the penalty looks at */
    uint64_t seed;        /* RNG seed */
} pv_sampler_params_t;

/* Defaults as llama.cpp's CLI uses them: temp 0.8, top-k 40, top-p 0.95, min-p 0.05. */
pv_sampler_params_t pv_sampler_defaults(void);
/* The HTTP APIs' defaults (Anthropic's and OpenAI's agree): plain sampling at
 * temperature 1 (no top-k, top-p or min-p, no penalty) with a fresh seed per call. */
pv_sampler_params_t pv_sampler_plain(void);

typedef struct {
    int32_t id; /* token id */
    float logit; /* logit, then probability after softmax */
} pv_candidate_t;

typedef struct {
    pv_sampler_params_t p;
    int32_t n_vocab;
    pv_candidate_t *cand; /* [n_vocab] owned scratch */
    float *w;             /* [n_vocab] owned scratch: an unfiltered draw's weights */
    uint64_t rng;         /* xorshift64* state, never 0 */
} pv_sampler_t;

pv_sampler_t *pv_sampler_new(const pv_sampler_params_t *p, int32_t n_vocab); /* NULL on OOM */
void pv_sampler_free(pv_sampler_t *s); /* accepts NULL */

/* Picks a token from logits[n_vocab] (modified in place by the penalty);
 * history holds the n_hist tokens seen so far (prompt and output). */
int32_t pv_sampler_sample(pv_sampler_t *s, float *logits, const int32_t *history, int n_hist);

/* Uniform float in [0, 1) from the sampler's RNG. */
float pv_sampler_uniform(pv_sampler_t *s);

#endif
