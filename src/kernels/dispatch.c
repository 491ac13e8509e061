/* dispatch.c - chooses, once, the implementation of each routine (AVX2 or the
 * scalar twin), and runs matmuls on the thread pool.
 *
 * PV_KERNELS=scalar in the environment forces the scalar twins (for tests
 * and for comparing). The choice is made on first use and never changes. */
#include <assert.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern.h"
#include "kernels/kern_internal.h"

static pv_kern_traits_t active[PV_TYPE_COUNT]; /* written once under pthread_once */
static const char *active_isa = "scalar";
static pv_attn_block_fn active_attn_block = pv_attn_block_ref;
static pv_attn_tile_fn active_attn_tile = pv_attn_tile_ref;
static pv_swiglu_fn active_swiglu = pv_swiglu_ref;
static pv_exp_shifted_fn active_exp_shifted = pv_exp_shifted_ref;
static pv_x8_heads_fn active_x8_heads = pv__x8_heads_ref;
static pv_rope_fn active_rope = pv_rope_apply_ref;
static pthread_once_t active_once = PTHREAD_ONCE_INIT;

/* AVX2, FMA and F16C from CPUID, and the OS saving the AVX registers (XGETBV). */
static int cpu_has_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 6) != 6) return 0; /* XMM and YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1;
#else
    return 0;
#endif
}

static void choose_kernels(void) {
    const char *want = getenv("PV_KERNELS");
    int fast = cpu_has_avx2() && !(want && strcmp(want, "scalar") == 0);
    for (int t = 0; t < PV_TYPE_COUNT; t++) {
        const pv_kern_traits_t *ref = pv_kern_ref((pv_type_t)t);
        if (!ref) continue;
        active[t] = *ref;
        pv_vec_dot_fn f = fast ? pv__avx2_vec_dot((pv_type_t)t) : NULL;
        if (f) active[t].vec_dot = f;
        pv_vec_dot_fn f1 = fast ? pv__avx2_vec_dot1((pv_type_t)t) : NULL;
        if (f1) active[t].vec_dot1 = f1;
        if (fast) active[t].vec_dot4 = pv__avx2_vec_dot4((pv_type_t)t);
        pv_from_float_fn q = fast ? pv__avx2_from_float((pv_type_t)t) : NULL;
        if (q) active[t].from_float = q;
        pv_to_float_fn w = fast ? pv__avx2_to_float((pv_type_t)t) : NULL;
        if (w) active[t].to_float = w;
        active[t].dot_x8 = fast ? pv__avx2_dot_x8((pv_type_t)t) : pv__x8_ref((pv_type_t)t);
        active[t].dot1_x8 = fast ? pv__avx2_dot1_x8((pv_type_t)t) : pv__x8_ref1((pv_type_t)t);
        active[t].dot_x16 = fast ? pv__avx2_dot_x16((pv_type_t)t) : NULL;
    }
    if (fast) {
        active_isa = "avx2";
        active_attn_block = pv__avx2_attn_block();
        active_attn_tile = pv__avx2_attn_tile();
        active_swiglu = pv__avx2_swiglu();
        active_exp_shifted = pv__avx2_exp_shifted();
        active_x8_heads = pv__avx2_x8_heads();
        active_rope = pv__avx2_rope();
    }
}

const pv_kern_traits_t *pv_kern_traits(pv_type_t t) {
    pthread_once(&active_once, choose_kernels);
    if ((unsigned)t >= PV_TYPE_COUNT || active[t].to_float == NULL) return NULL;
    return &active[t];
}

const char *pv_kern_isa(void) {
    pthread_once(&active_once, choose_kernels);
    return active_isa;
}

void pv_swiglu(float *a, const float *b, int n) {
    pthread_once(&active_once, choose_kernels);
    active_swiglu(a, b, n);
}

void pv_rope_apply(float *x, int n_rot, const float *cs, int neox) {
    pthread_once(&active_once, choose_kernels);
    active_rope(x, n_rot, cs, neox);
}

void pv__x8_heads(const pv_block_q8_0 *y, pv_x8_head *h, int64_t nb) {
    pthread_once(&active_once, choose_kernels);
    active_x8_heads(y, h, nb);
}

void pv_exp_shifted(float *y, const float *x, int n, float max, float scale) {
    pthread_once(&active_once, choose_kernels);
    active_exp_shifted(y, x, n, max, scale);
}

void pv_attn_block(const float *q, int nr, const uint16_t *k, const uint16_t *v, size_t stride, const int *n_pos, int hd,
                   float scale, pv_attn_state_t *st, float *acc, float *scratch) {
    pthread_once(&active_once, choose_kernels);
    active_attn_block(q, nr, k, v, stride, n_pos, hd, scale, st, acc, scratch);
}

void pv_attn_tile(const float *q, int nr, const float *kf, const float *vf, const int *n_pos, int hd, float scale,
                  pv_attn_state_t *st, float *acc, float *scratch) {
    pthread_once(&active_once, choose_kernels);
    active_attn_tile(q, nr, kf, vf, n_pos, hd, scale, st, acc, scratch);
}

int pv_kern_supported(pv_type_t t) {
    const pv_kern_traits_t *k = pv_kern_traits(t);
    return k && k->vec_dot;
}

size_t pv_matvec_work_size(pv_type_t t, int64_t n_cols) {
    const pv_kern_traits_t *k = pv_kern_traits(t);
    return k ? pv_type_row_size(k->vec_dot_type, n_cols) : 0;
}

typedef struct {
    pv_vec_dot_fn dot;
    pv_vec_dot4_fn dot4; /* NULL: dot per token */
    const uint8_t *w;    /* first row */
    size_t row_size;     /* bytes per weight row */
    int64_t n_rows, n_cols;
    const uint8_t *act;  /* n_tok activation rows in the dot type */
    size_t act_size;     /* bytes per activation row */
    float *const *ys;    /* [n_tok] output rows */
    int n_tok;
} matmul_task_t;

#define ROW_TILE 8 /* rows whose weights stay in L1 while every token passes over them */

/* Thread ith of nth takes a contiguous slice of rows, in tiles. */
static void matmul_rows(void *arg, int ith, int nth) {
    const matmul_task_t *t = arg;
    int64_t per = (t->n_rows + nth - 1) / nth, r0 = per * ith, r1 = r0 + per < t->n_rows ? r0 + per : t->n_rows;
    for (int64_t rt = r0; rt < r1; rt += ROW_TILE) {
        int64_t rt_end = rt + ROW_TILE < r1 ? rt + ROW_TILE : r1;
        int b = 0;
        if (t->dot4)
            for (; b + 4 <= t->n_tok; b += 4) {
                const uint8_t *a = t->act + (size_t)b * t->act_size;
                float out[4];
                for (int64_t r = rt; r < rt_end; r++) {
                    t->dot4(t->w + (size_t)r * t->row_size, a, t->act_size, t->n_cols, out);
                    for (int j = 0; j < 4; j++) t->ys[b + j][r] = out[j];
                }
            }
        for (; b < t->n_tok; b++) {
            const uint8_t *a = t->act + (size_t)b * t->act_size;
            float *y = t->ys[b];
            for (int64_t r = rt; r < rt_end; r++) y[r] = t->dot(t->w + (size_t)r * t->row_size, a, t->n_cols);
        }
    }
}

typedef struct {
    pv_dot_x8_fn dot;
    pv_dot_x16_fn dot2; /* two groups at once, NULL: one at a time */
    const uint8_t *w;   /* first group */
    size_t group_size;  /* bytes per group of 8 rows */
    int64_t n_groups, n_cols;
    const uint8_t *act; /* n_tok activation rows in the x8 activation format */
    size_t act_size;    /* bytes per activation row */
    float *const *ys;   /* [n_tok] output rows */
    int n_tok;
    int64_t chunk;      /* groups a thread takes at a time, at least */
    atomic_int_fast64_t next; /* first group no thread has taken yet */
} x8_task_t;

#define X8_TOKENS 16      /* tokens one kernel call takes (it goes 4 at a time) */
#define X8_CHUNKS_PER_THREAD 32 /* the smallest chunk: this many per thread would cover the matmul */

/* Threads take chunks of consecutive groups from a shared counter until none
 * are left, so that a thread the OS holds back (on a machine shared with
 * other work) delays only its current chunk, not a fixed half of the matmul.
 * Chunks are guided: each takes 1 / (2 nth) of the groups left, down to
 * t->chunk, so that few are taken while much is left and the threads finish
 * within a small chunk of each other. Every token passes over a group (a
 * few KB) while it is in L1. Returns the chunk's size (0: none left) and
 * its first group in *g0. */
static int64_t x8_take(x8_task_t *t, int nth, int64_t *g0) {
    int64_t at = atomic_load_explicit(&t->next, memory_order_relaxed);
    for (;;) {
        int64_t left = t->n_groups - at, n = left / (2 * nth);
        if (left <= 0) return 0;
        if (n < t->chunk) n = t->chunk;
        if (t->dot2) n += n & 1; /* whole pairs of groups: chunks start on even groups */
        if (n > left) n = left;
        if (atomic_compare_exchange_weak_explicit(&t->next, &at, at + n, memory_order_relaxed, memory_order_relaxed)) {
            *g0 = at;
            return n;
        }
    }
}

static void matmul_x8_groups(void *arg, int ith, int nth) {
    x8_task_t *t = arg;
    float out[X8_TOKENS * 2 * PV_X8];
    for (int64_t g0, n; (n = x8_take(t, nth, &g0)) > 0;) {
        for (int64_t g = g0, g1 = g0 + n; g < g1;) {
            int pair = t->dot2 && g + 1 < g1 && t->n_tok >= 3, rows = pair ? 2 * PV_X8 : PV_X8;
            for (int b = 0; b < t->n_tok; b += X8_TOKENS) {
                int nt = t->n_tok - b < X8_TOKENS ? t->n_tok - b : X8_TOKENS;
                const uint8_t *w = t->w + (size_t)g * t->group_size, *a = t->act + (size_t)b * t->act_size;
                if (pair) t->dot2(w, t->group_size, a, t->act_size, nt, t->n_cols, out);
                else t->dot(w, a, t->act_size, nt, t->n_cols, out);
                for (int j = 0; j < nt; j++) /* fixed-size copies: a variable one became rep movsq, 3% of a prompt */
                    for (int r = 0; r < rows; r += PV_X8) memcpy(t->ys[b + j] + g * PV_X8 + r, out + rows * j + r, sizeof(float) * PV_X8);
            }
            g += pair ? 2 : 1;
        }
    }
}

/* Activation rows quantized for a matmul: by the vec_dot type's from_float
 * (quantize), or, quantize NULL, in the x8 activation format of weight type t. */
typedef struct {
    pv_type_t t;
    pv_from_float_fn quantize;
    const float *const *xs;
    uint8_t *work;
    size_t act_size;
    int64_t n_cols;
    int n_tok;
} act_task_t;

static void quantize_acts(void *arg, int ith, int nth) {
    act_task_t *a = arg;
    for (int b = ith; b < a->n_tok; b += nth) {
        uint8_t *row = a->work + (size_t)b * a->act_size;
        if (a->quantize) a->quantize(a->xs[b], row, a->n_cols);
        else pv__x8_act_quantize(a->t, a->xs[b], row, a->n_cols);
    }
}

/* Prompts quantize their rows on every thread (serial, the rows of a
 * 128-token prompt cost ~3% of it); a few tokens are not worth a hand-off. */
static void quantize_rows(act_task_t *a, pv_pool_t *pool) {
    if (a->n_tok >= 8) pv_pool_run(pool, quantize_acts, a);
    else quantize_acts(a, 0, 1);
}

size_t pv_matmul_work_size(pv_type_t t, int64_t n_cols, int n_tok) {
    size_t rows = pv_matvec_work_size(t, n_cols);
    if (pv_x8_supported(t, PV_X8, n_cols) && pv__x8_act_row_size(t, n_cols) > rows) rows = pv__x8_act_row_size(t, n_cols);
    return rows * (size_t)n_tok;
}

/* small products are not worth waking the pool for */
static void run_rows(pv_pool_t *pool, pv_task_fn fn, void *task, int64_t n_rows, int64_t n_cols, int n_tok) {
    if (n_rows * n_cols * n_tok < 16384) fn(task, 0, 1);
    else pv_pool_run(pool, fn, task);
}

/* The task of one x8 matmul over activations already converted into act. */
static void x8_task_init(x8_task_t *task, pv_type_t t, const void *w, int64_t n_rows, int64_t n_cols, float *const *ys,
                         int n_tok, const void *act, pv_pool_t *pool) {
    const pv_kern_traits_t *k = pv_kern_traits(t);
    assert(k && k->dot_x8 && pv_x8_supported(t, n_rows, n_cols));
    int64_t n_groups = n_rows / PV_X8, chunk = n_groups / (pv_pool_size(pool) * X8_CHUNKS_PER_THREAD);
    if (k->dot_x16) chunk += chunk & 1; /* whole pairs of groups */
    *task = (x8_task_t){.dot = n_tok == 1 && k->dot1_x8 ? k->dot1_x8 : k->dot_x8,
                        .dot2 = k->dot_x16,
                        .w = w,
                        .group_size = PV_X8 * pv_type_row_size(t, n_cols),
                        .n_groups = n_groups,
                        .n_cols = n_cols,
                        .act = act,
                        .act_size = pv__x8_act_row_size(t, n_cols),
                        .ys = ys,
                        .n_tok = n_tok,
                        .chunk = chunk > 0 ? chunk : 1};
    atomic_init(&task->next, 0);
}

typedef struct {
    x8_task_t part[PV_MATMUL_MAX_PARTS];
    int n;
} x8_parts_t;

/* Each part's groups in turn: a thread goes on to the next part as soon as
 * no chunk of this one is left, while others finish theirs. */
static void matmul_x8_parts(void *arg, int ith, int nth) {
    x8_parts_t *s = arg;
    for (int i = 0; i < s->n; i++) matmul_x8_groups(&s->part[i], ith, nth);
}

/* Interleaved weights that read one activation format (at most
 * PV_MATMUL_MAX_PARTS): the inputs converted once, one pool run. */
static void matmul_x8(const pv_matmul_part_t *parts, int n_parts, int64_t n_cols, const float *const *xs, int n_tok,
                      void *work, pv_pool_t *pool) {
    act_task_t acts = {.t = parts[0].t, .xs = xs, .work = work, .act_size = pv__x8_act_row_size(parts[0].t, n_cols),
                       .n_cols = n_cols, .n_tok = n_tok};
    quantize_rows(&acts, pool);
    x8_parts_t set = {.n = n_parts};
    int64_t rows = 0;
    for (int i = 0; i < n_parts; i++) {
        x8_task_init(&set.part[i], parts[i].t, parts[i].w, parts[i].n_rows, n_cols, parts[i].ys, n_tok, work, pool);
        rows += parts[i].n_rows;
    }
    run_rows(pool, matmul_x8_parts, &set, rows, n_cols, n_tok);
}

/* Whether the parts can share one conversion of the inputs and one pool run. */
static int parts_share(const pv_matmul_part_t *parts, int n_parts, int64_t n_cols) {
    for (int i = 0; i < n_parts; i++) {
        const pv_kern_traits_t *k = pv_kern_traits(parts[i].t);
        if (parts[i].layout != PV_LAYOUT_X8 || !k || !k->dot_x8 || !pv_x8_supported(parts[i].t, parts[i].n_rows, n_cols) ||
            pv__x8_act_format(parts[i].t) != pv__x8_act_format(parts[0].t))
            return 0;
    }
    return n_parts <= PV_MATMUL_MAX_PARTS;
}

void pv_matmul_parts(const pv_matmul_part_t *parts, int n_parts, int64_t n_cols, const float *const *xs, int n_tok,
                     void *work, pv_pool_t *pool) {
    if (parts_share(parts, n_parts, n_cols)) {
        matmul_x8(parts, n_parts, n_cols, xs, n_tok, work, pool);
        return;
    }
    for (int i = 0; i < n_parts; i++)
        pv_matmul(parts[i].t, parts[i].layout, parts[i].w, parts[i].n_rows, n_cols, xs, parts[i].ys, n_tok, work, pool);
}

void pv_matmul(pv_type_t t, pv_layout_t layout, const void *w, int64_t n_rows, int64_t n_cols, const float *const *xs,
               float *const *ys, int n_tok, void *work, pv_pool_t *pool) {
    if (layout == PV_LAYOUT_X8) {
        matmul_x8(&(pv_matmul_part_t){t, layout, w, n_rows, ys}, 1, n_cols, xs, n_tok, work, pool);
        return;
    }
    const pv_kern_traits_t *k = pv_kern_traits(t);
    size_t row_size = pv_type_row_size(t, n_cols), act_size = pv_matvec_work_size(t, n_cols);
    assert(k && k->vec_dot && row_size);
    act_task_t acts = {.quantize = pv_kern_traits(k->vec_dot_type)->from_float,
                       .xs = xs,
                       .work = work,
                       .act_size = act_size,
                       .n_cols = n_cols,
                       .n_tok = n_tok};
    quantize_rows(&acts, pool);
    pv_vec_dot_fn dot = n_tok == 1 && k->vec_dot1 ? k->vec_dot1 : k->vec_dot;
    matmul_task_t task = {dot, k->vec_dot4, w, row_size, n_rows, n_cols, work, act_size, ys, n_tok};
    run_rows(pool, matmul_rows, &task, n_rows, n_cols, n_tok);
}

void pv_matvec(pv_type_t t, const void *w, int64_t n_rows, int64_t n_cols, const float *x, float *y, void *work,
               pv_pool_t *pool) {
    pv_matmul(t, PV_LAYOUT_ROWS, w, n_rows, n_cols, &x, &y, 1, work, pool);
}

void pv_get_row(pv_type_t t, const void *w, int64_t r, int64_t n_cols, float *y) {
    const pv_kern_traits_t *k = pv_kern_traits(t);
    size_t row_size = pv_type_row_size(t, n_cols);
    assert(k && row_size);
    k->to_float((const uint8_t *)w + (size_t)r * row_size, y, n_cols);
}
