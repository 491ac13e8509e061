#include "model/sample.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/ops.h"

pv_sampler_params_t pv_sampler_defaults(void) {
    return (pv_sampler_params_t){.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                                 .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0x5eed};
}

pv_sampler_params_t pv_sampler_plain(void) {
    static atomic_ulong counter; /* two requests in one second still differ */
    return (pv_sampler_params_t){.temperature = 1.0f, .top_p = 1.0f, .repeat_penalty = 1.0f, .repeat_last_n = 64,
                                 .seed = (uint64_t)time(NULL) * 1000003u + atomic_fetch_add(&counter, 1)};
}

pv_sampler_t *pv_sampler_new(const pv_sampler_params_t *p, int32_t n_vocab) {
    pv_sampler_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->w = malloc((size_t)n_vocab * sizeof *s->w);
    if (!s->cand || !s->w) {
        free(s->cand);
        free(s->w);
        free(s);
        return NULL;
    }
    /* splitmix64 of the seed, so that nearby seeds give unrelated streams */
    uint64_t z = p->seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s->rng = (z ^ (z >> 31)) | 1;
    return s;
}

void pv_sampler_free(pv_sampler_t *s) {
    if (!s) return;
    free(s->cand);
    free(s->w);
    free(s);
}

float pv_sampler_uniform(pv_sampler_t *s) {
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    uint64_t r = s->rng * 0x2545f4914f6cdd1dull;
    return (float)(r >> 40) / 16777216.0f; /* 24 random bits */
}

static void apply_repeat_penalty(const pv_sampler_params_t *p, float *logits, int32_t n_vocab,
                                 const int32_t *history, int n_hist) {
    if (p->repeat_penalty == 1.0f || p->repeat_last_n <= 0 || !history) return;
    int from = n_hist > p->repeat_last_n ? n_hist - p->repeat_last_n : 0;
    /* each distinct token is penalised once, however often it recurs */
    for (int i = from; i < n_hist; i++) {
        int32_t id = history[i];
        if (id < 0 || id >= n_vocab) continue;
        int seen = 0;
        for (int j = from; j < i && !seen; j++) seen = history[j] == id;
        if (seen) continue;
        logits[id] = logits[id] > 0 ? logits[id] / p->repeat_penalty : logits[id] * p->repeat_penalty;
    }
}

static int32_t argmax(const float *logits, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

static int cmp_cand_desc(const void *a, const void *b) {
    const pv_candidate_t *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Moves the k largest candidates to the front, sorted (partial selection then sort). */
static int keep_top_k(pv_candidate_t *c, int n, int k) {
    if (k <= 0 || k >= n) {
        qsort(c, (size_t)n, sizeof *c, cmp_cand_desc);
        return n;
    }
    /* keep a sorted front of k and insert anything that beats its last entry */
    qsort(c, (size_t)k, sizeof *c, cmp_cand_desc);
    for (int i = k; i < n; i++) {
        if (cmp_cand_desc(&c[i], &c[k - 1]) >= 0) continue;
        pv_candidate_t x = c[i];
        int j = k - 1;
        while (j > 0 && cmp_cand_desc(&x, &c[j - 1]) < 0) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = x;
    }
    return k;
}

/* Partitions c so that its k largest (by cmp_cand_desc) come first, in no
 * particular order: quickselect, expected O(n). */
static void select_top(pv_candidate_t *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        pv_candidate_t pivot = c[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (cmp_cand_desc(&c[i], &pivot) < 0) i++;
            while (cmp_cand_desc(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                pv_candidate_t t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else return;
    }
}

/* How many of the candidates (their .logit holding probabilities) the top-p
 * filter keeps: the fewest most likely whose mass reaches top_p, sorted to the
 * front. Sorts only as far as needed: the top 64, then 8x more at a time. */
static int keep_top_p(pv_candidate_t *c, int n, float top_p) {
    double mass = 0.0;
    int sorted = 0;
    for (int k = 64;; k *= 8) {
        if (k > n) k = n;
        select_top(c + sorted, n - sorted, k - sorted);
        qsort(c + sorted, (size_t)(k - sorted), sizeof *c, cmp_cand_desc);
        for (; sorted < k; sorted++) {
            mass += c[sorted].logit;
            if (mass >= top_p) return sorted + 1;
        }
        if (k == n) return n;
    }
}

/* Probabilities at temperature 1 of the candidates (logit -> probability, in
 * place, any order); returns the largest. */
static float cand_probs(pv_candidate_t *c, int n) {
    float max = c[0].logit;
    for (int i = 1; i < n; i++)
        if (c[i].logit > max) max = c[i].logit;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        c[i].logit = expf(c[i].logit - max);
        sum += c[i].logit;
    }
    float pmax = 0.0f;
    for (int i = 0; i < n; i++) {
        c[i].logit = (float)(c[i].logit / sum);
        if (c[i].logit > pmax) pmax = c[i].logit;
    }
    return pmax;
}

/* Softmax over the candidates at the given temperature (logit -> probability). */
static void cand_softmax(pv_candidate_t *c, int n, float temperature) {
    float max = c[0].logit;
    for (int i = 1; i < n; i++)
        if (c[i].logit > max) max = c[i].logit;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        c[i].logit = expf((c[i].logit - max) / temperature);
        sum += c[i].logit;
    }
    for (int i = 0; i < n; i++) c[i].logit = (float)(c[i].logit / sum);
}

/* Index of the draw r in [0, 1) from weights w[0..n) that sum to sum: the
 * first whose running total passes r * sum (never one of weight 0). */
static int32_t draw_weighted(const float *w, int32_t n, double sum, float r) {
    double target = (double)r * sum, acc = 0.0;
    int32_t last = -1;
    for (int32_t i = 0; i < n; i++) {
        if (w[i] <= 0.0f) continue;
        acc += w[i];
        last = i;
        if (target < acc) return i;
    }
    return last; /* rounding left target at the very end */
}

/* A draw from softmax(logits / temperature) over the whole vocabulary with no
 * filter: one pass of exponentials into scratch and one walk, no candidate
 * list and no sort (the APIs' default sampling). */
static int32_t draw_unfiltered(pv_sampler_t *s, const float *logits) {
    int32_t n = s->n_vocab;
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (logits[i] > max) max = logits[i];
    if (max == -INFINITY) return argmax(logits, n);
    pv_exp_shifted(s->w, logits, n, max, 1.0f / s->p.temperature); /* -inf (masked out) weighs 0 */
    double sum[4] = {0};
    int32_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) sum[k] += s->w[i + k];
    for (; i < n; i++) sum[0] += s->w[i];
    return draw_weighted(s->w, n, (sum[0] + sum[1]) + (sum[2] + sum[3]), pv_sampler_uniform(s));
}

/* Sampling: the filters narrow the candidates (top-k sorts the k best; min-p
 * drops the unlikely in place; top-p sorts only as far as its mass reaches),
 * so that an unfiltered draw over a 150k vocabulary never sorts it. */
int32_t pv_sampler_sample(pv_sampler_t *s, float *logits, const int32_t *history, int n_hist) {
    const pv_sampler_params_t *p = &s->p;
    apply_repeat_penalty(p, logits, s->n_vocab, history, n_hist);
    if (p->temperature <= 0.0f) return argmax(logits, s->n_vocab);
    int p_filters = p->min_p > 0.0f || p->top_p < 1.0f;
    if (!p_filters && (p->top_k <= 0 || p->top_k >= s->n_vocab)) return draw_unfiltered(s, logits);

    int n = 0;
    for (int32_t i = 0; i < s->n_vocab; i++) /* -inf: masked out (constrained decoding), never a candidate */
        if (logits[i] != -INFINITY) s->cand[n++] = (pv_candidate_t){i, logits[i]};
    if (n == 0) return argmax(logits, s->n_vocab);
    if (p->top_k > 0 && p->top_k < n) n = keep_top_k(s->cand, n, p->top_k);
    if (p_filters) {
        float pmax = cand_probs(s->cand, n); /* probabilities for the p filters */
        if (p->min_p > 0.0f) {
            float floor = p->min_p * pmax;
            int keep = 0;
            for (int i = 0; i < n; i++)
                if (s->cand[i].logit >= floor) s->cand[keep++] = s->cand[i];
            n = keep;
        }
        if (p->top_p < 1.0f) n = keep_top_p(s->cand, n, p->top_p);
        /* temperature on the survivors: p^(1/T) renormalised equals softmax(logit / T) */
        for (int i = 0; i < n; i++) s->cand[i].logit = logf(s->cand[i].logit);
    }
    cand_softmax(s->cand, n, p->temperature);
    float r = pv_sampler_uniform(s), acc = 0.0f;
    for (int i = 0; i < n; i++) {
        acc += s->cand[i].logit;
        if (r < acc) return s->cand[i].id;
    }
    return s->cand[n - 1].id;
}
