/* kern_bench.c - one kernel alone, against its baseline in the same run.
 *
 * usage: kern_bench matmul TYPE ROWS COLS TOKENS [-t THREADS] [-r REPS]
 *        kern_bench attn HEAD_DIM ROWS [-r REPS]
 *        kern_bench loops [-r REPS]
 *
 * matmul: a random ROWS x COLS weight of TYPE (q4_0, q8_0, q4_K, q5_K, q6_K,
 * f16, bf16) against TOKENS random activation rows, in the interleaved layout
 * the model loads (x8) and in the file's layout (rows), and a plain read of
 * the weight's bytes (read: what the memory allows); G multiply-adds/s and
 * GB/s of weight. A weight that fits the caches (32 MB of L3 here) measures
 * arithmetic; a larger one (a few hundred MB), reading from memory.
 * attn: one tile (PV_ATTN_TILE positions) of the tiled attention order for
 * ROWS query rows of HEAD_DIM, the dispatched kernel against its scalar
 * twin; ns per (row, position).
 * loops: the int8 dot products' instruction sequences alone, in L1
 * (kern_loops.c): what the vector units allow q4_0 and q8_0 weights.
 *
 * The variants alternate repetition by repetition (REPS each, default 30), so
 * that the machine's changes of speed, which on a shared host come and go
 * within seconds, fall on all of them; best and median of each and the ratio
 * of the first two's medians are printed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kernels/kern.h"
#include "kernels/ops.h"
#include "kernels/pool.h"
#include "../tests/rand_data.h"
#include "kern_loops.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts each variant's times and prints best and median as work[v] / time
 * (per_time) or time / work[v], scaled (work[v] 0: none); bytes > 0 adds
 * GB/s of them. The first two variants' medians are compared. */
static void report(const char *what, const char *const *names, int n_var, double **t, int reps, const double *work,
                   const char *unit, int per_time, double bytes) {
    double med[2] = {0, 0};
    printf("%s\n| variant | best %s | median %s |%s\n|---|---|---|%s\n", what, unit, unit,
           bytes > 0 ? " best GB/s | median GB/s |" : "", bytes > 0 ? "---|---|" : "");
    for (int v = 0; v < n_var; v++) {
        qsort(t[v], (size_t)reps, sizeof *t[v], cmp_double);
        double best = t[v][0], m = t[v][reps / 2], w = work[v];
        if (v < 2) med[v] = per_time ? w / m : m / w;
        printf("| %s |", names[v]);
        if (w > 0) printf(" %.2f | %.2f |", per_time ? w / best : best / w, per_time ? w / m : m / w);
        else printf(" - | - |");
        if (bytes > 0) printf(" %.1f | %.1f |", bytes / best * 1e-9, bytes / m * 1e-9);
        printf("\n");
    }
    printf("%s against %s: %.2fx as fast (medians)\n", names[0], names[1], per_time ? med[0] / med[1] : med[1] / med[0]);
}

/* The plain read: every 8 bytes of the buffer xor-ed into four sums, the
 * threads splitting it (what `pensieve bench --memory` measures, without
 * its vector loads: memory, not the loads, bounds it). */
typedef struct {
    const uint8_t *buf;
    size_t n_bytes;
    uint64_t sums[64];
} read_task_t;

static void read_part(void *arg, int ith, int nth) {
    read_task_t *t = arg;
    size_t per = t->n_bytes / (size_t)nth / 32 * 32, off = per * (size_t)ith;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = off; i < off + per; i += 32) {
        uint64_t v[4];
        memcpy(v, t->buf + i, sizeof v);
        s0 ^= v[0], s1 ^= v[1], s2 ^= v[2], s3 ^= v[3];
    }
    t->sums[ith % 64] = s0 ^ s1 ^ s2 ^ s3; /* keeps the loads alive */
}

static pv_type_t type_named(const char *name) {
    for (int t = 0; t < PV_TYPE_COUNT; t++)
        if (pv_kern_supported((pv_type_t)t) && !strcasecmp(pv_type_name((uint32_t)t), name)) return (pv_type_t)t;
    return PV_TYPE_COUNT;
}

static int bench_matmul(pv_type_t t, int64_t rows, int64_t cols, int n_tok, int threads, int reps) {
    if (!pv_x8_supported(t, rows, cols)) {
        fprintf(stderr, "kern_bench: %s has no interleaved layout at %lld x %lld\n", pv_type_name(t), (long long)rows,
                (long long)cols);
        return 1;
    }
    uint8_t *w = rd_row(t, rows * cols), *x8 = malloc(pv_type_row_size(t, rows * cols));
    float **xs = calloc((size_t)n_tok, sizeof *xs), **ys = calloc((size_t)n_tok, sizeof *ys);
    void *work = malloc(pv_matmul_work_size(t, cols, n_tok));
    double *times[3] = {malloc(sizeof(double) * (size_t)reps), malloc(sizeof(double) * (size_t)reps),
                        malloc(sizeof(double) * (size_t)reps)};
    pv_pool_t *pool = threads > 1 ? pv_pool_new(threads) : NULL;
    int ok = w && x8 && xs && ys && work && times[0] && times[1] && times[2] && (threads == 1 || pool);
    for (int j = 0; ok && j < n_tok; j++) {
        xs[j] = malloc(sizeof(float) * (size_t)cols);
        ys[j] = malloc(sizeof(float) * (size_t)rows);
        ok = xs[j] && ys[j];
        for (int64_t i = 0; ok && i < cols; i++) xs[j][i] = rd_float();
    }
    if (!ok) {
        fprintf(stderr, "kern_bench: out of memory\n");
        exit(1);
    }
    pv_x8_repack(t, w, rows, cols, x8);
    const void *wl[2] = {x8, w};
    const pv_layout_t layout[2] = {PV_LAYOUT_X8, PV_LAYOUT_ROWS};
    size_t bytes = pv_type_row_size(t, rows * cols);
    read_task_t rd = {.buf = x8, .n_bytes = bytes};
    for (int v = 0; v < 2; v++) /* warm-up */
        pv_matmul(t, layout[v], wl[v], rows, cols, (const float *const *)xs, ys, n_tok, work, pool);
    for (int r = 0; r < reps; r++)
        for (int v = 0; v < 3; v++) {
            double t0 = now_s();
            if (v < 2) pv_matmul(t, layout[v], wl[v], rows, cols, (const float *const *)xs, ys, n_tok, work, pool);
            else pv_pool_run(pool, read_part, &rd);
            times[v][r] = now_s() - t0;
        }
    char what[160];
    snprintf(what, sizeof what, "matmul %s %lld x %lld, %d tokens, %d thread%s, %s kernels, %d reps:", pv_type_name(t),
             (long long)rows, (long long)cols, n_tok, threads, threads > 1 ? "s" : "", pv_kern_isa(), reps);
    double macs = (double)rows * (double)cols * n_tok * 1e-9;
    report(what, (const char *const[]){"x8", "rows", "read"}, 3, times, reps, (const double[]){macs, macs, 0},
           "G multiply-adds/s", 1, (double)bytes);
    pv_pool_free(pool);
    for (int j = 0; j < n_tok; j++) {
        free(xs[j]);
        free(ys[j]);
    }
    free(xs), free(ys), free(work), free(w), free(x8), free(times[0]), free(times[1]), free(times[2]);
    return 0;
}

static int bench_attn(int hd, int nr, int reps) {
    if (hd < 1 || hd > PV_ATTN_MAX_HEAD || nr < 1 || nr > 65536) {
        fprintf(stderr, "kern_bench: head size %d or rows %d out of range\n", hd, nr);
        return 1;
    }
    size_t qn = (size_t)nr * (size_t)hd, tn = (size_t)PV_ATTN_TILE * (size_t)hd;
    float *q = malloc(sizeof(float) * qn), *acc = malloc(sizeof(float) * qn);
    float *kf = calloc(tn, sizeof(float)), *vf = malloc(sizeof(float) * tn);
    float *scratch = malloc(sizeof(float) * pv_attn_scratch_size(hd));
    pv_attn_state_t *st = malloc(sizeof *st * (size_t)nr);
    int *n_pos = malloc(sizeof(int) * (size_t)nr);
    double *times[2] = {malloc(sizeof(double) * (size_t)reps), malloc(sizeof(double) * (size_t)reps)};
    if (!q || !acc || !kf || !vf || !scratch || !st || !n_pos || !times[0] || !times[1]) {
        fprintf(stderr, "kern_bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < qn; i++) q[i] = rd_float();
    for (size_t i = 0; i < tn; i++) kf[i] = rd_float(), vf[i] = rd_float();
    for (int r = 0; r < nr; r++) n_pos[r] = PV_ATTN_TILE;
    const pv_attn_tile_fn fn[2] = {pv_attn_tile, pv_attn_tile_ref};
    const int calls = 20; /* per timing: one tile is a few microseconds */
    for (int r = 0; r < reps; r++)
        for (int v = 0; v < 2; v++) {
            memset(acc, 0, sizeof(float) * qn);
            for (int k = 0; k < nr; k++) st[k] = (pv_attn_state_t){-INFINITY, 0.0f};
            double t0 = now_s();
            for (int c = 0; c < calls; c++) fn[v](q, nr, kf, vf, n_pos, hd, 1.0f / sqrtf((float)hd), st, acc, scratch);
            times[v][r] = now_s() - t0;
        }
    char what[160];
    snprintf(what, sizeof what, "tiled attention, head size %d, %d rows x %d positions, %s kernels, %d reps:", hd, nr,
             PV_ATTN_TILE, pv_kern_isa(), reps);
    double pairs = (double)calls * nr * PV_ATTN_TILE * 1e-9;
    report(what, (const char *const[]){pv_kern_isa(), "scalar"}, 2, times, reps, (const double[]){pairs, pairs},
           "ns per (row, position)", 0, 0);
    free(q), free(acc), free(kf), free(vf), free(scratch), free(st), free(n_pos), free(times[0]), free(times[1]);
    return 0;
}

static int bench_loops(int reps) {
    if (!kern_loops_supported()) { /* nothing to measure: not a failure of the tool */
        printf("int8 dot product loops: skipped, this CPU lacks AVX2 or FMA\n");
        return 0;
    }
    void *data = kern_loops_data_new();
    float *out = malloc(sizeof(float) * 64);
    double *times[KERN_LOOPS], work[KERN_LOOPS];
    int ok = data && out;
    for (int v = 0; v < KERN_LOOPS; v++) ok = (times[v] = malloc(sizeof(double) * (size_t)reps)) && ok;
    if (!ok) {
        fprintf(stderr, "kern_bench: out of memory\n");
        exit(1);
    }
    for (int r = 0; r < reps; r++)
        for (int v = 0; v < KERN_LOOPS; v++) {
            double t0 = now_s();
            work[v] = kern_loop_run(v, data, out) * 1e-9;
            times[v][r] = now_s() - t0;
        }
    char what[120];
    snprintf(what, sizeof what, "int8 dot product loops in L1, one thread, %d reps:", reps);
    report(what, kern_loop_names, KERN_LOOPS, times, reps, work, "G multiply-adds/s", 1, 0);
    for (int v = 0; v < KERN_LOOPS; v++) free(times[v]);
    free(data), free(out);
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: kern_bench matmul TYPE ROWS COLS TOKENS [-t THREADS] [-r REPS]\n"
                    "       kern_bench attn HEAD_DIM ROWS [-r REPS]\n"
                    "       kern_bench loops [-r REPS]\n");
    return 2;
}

int main(int argc, char **argv) {
    int threads = 1, reps = 30, n_pos = 0;
    const char *pos[5];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (n_pos < 5) pos[n_pos++] = argv[i];
        else return usage();
    }
    if (threads < 1 || threads > 256 || reps < 1 || reps > 100000 || n_pos < 1) return usage();
    if (!strcmp(pos[0], "matmul") && n_pos == 5) {
        pv_type_t t = type_named(pos[1]);
        long long rows = atoll(pos[2]), cols = atoll(pos[3]), n_tok = atoll(pos[4]);
        if (t == PV_TYPE_COUNT || rows < 1 || cols < 1 || n_tok < 1 || n_tok > 4096 || rows * cols > (1LL << 34)) return usage();
        return bench_matmul(t, rows, cols, (int)n_tok, threads, reps);
    }
    if (!strcmp(pos[0], "attn") && n_pos == 3) return bench_attn(atoi(pos[1]), atoi(pos[2]), reps);
    if (!strcmp(pos[0], "loops") && n_pos == 1) return bench_loops(reps);
    return usage();
}
