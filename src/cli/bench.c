/* bench.c - `pensieve bench`: prompt-processing and generation speed, as llama-bench
 * reports them, next to the limit that memory bandwidth sets for generation. */
#include <immintrin.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "cli/cli.h"
#include "kernels/kern.h"
#include "model/model.h"

typedef struct {
    const char *model_path;
    long n_prompt, n_gen, n_threads, reps;
    long n_seq;   /* > 1: also generation of this many sequences at once (batched decoding) */
    long n_depth; /* tokens every test finds in its sequences' KV cache first (llama-bench's -d) */
    int as_json, memory_only, float_attn;
} bench_opts_t;

typedef struct {
    double mean, stddev; /* tokens per second over the repetitions */
} rate_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- memory bandwidth --------------------------------------------------------------------- */

typedef struct {
    const uint8_t *buf;
    size_t n_bytes;
    double sums[64];
} bw_task_t;

__attribute__((target("avx2"))) static void bw_read(void *arg, int ith, int nth) {
    bw_task_t *t = arg;
    size_t per = t->n_bytes / (size_t)nth / 128 * 128, off = per * (size_t)ith;
    __m256i acc = _mm256_setzero_si256();
    for (size_t i = off; i < off + per; i += 128) {
        const __m256i *p = (const __m256i *)(t->buf + i);
        acc = _mm256_xor_si256(acc, _mm256_xor_si256(_mm256_xor_si256(_mm256_load_si256(p), _mm256_load_si256(p + 1)),
                                                     _mm256_xor_si256(_mm256_load_si256(p + 2), _mm256_load_si256(p + 3))));
    }
    t->sums[ith % 64] = (double)_mm256_extract_epi64(acc, 0); /* keeps the loads alive */
}

/* Best-of-5 read bandwidth in bytes/s over a 512 MiB buffer with n_threads,
 * measured in a child process so that its buffer never counts in our RSS. */
static double measure_bandwidth(int n_threads) {
    int fd[2];
    if (pipe(fd) != 0) return 0;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        size_t n = (size_t)512 << 20;
        double best = 0;
        uint8_t *buf = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        pv_pool_t *pool = pv_pool_new(n_threads);
        if (buf != MAP_FAILED && pool && __builtin_cpu_supports("avx2")) {
            memset(buf, 1, n);
            bw_task_t t = {.buf = buf, .n_bytes = n};
            for (int r = 0; r < 5; r++) {
                double t0 = now_s();
                pv_pool_run(pool, bw_read, &t);
                double bw = (double)n / (now_s() - t0);
                if (bw > best) best = bw;
            }
        }
        if (write(fd[1], &best, sizeof best) != sizeof best) _exit(1);
        _exit(0);
    }
    close(fd[1]);
    double bw = 0;
    if (pid < 0 || read(fd[0], &bw, sizeof bw) != sizeof bw) bw = 0;
    close(fd[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    return bw;
}

/* ---- model runs --------------------------------------------------------------------------- */

/* Weight bytes read to generate one token: every matrix once, one embedding row. */
static double bytes_per_token(const pv_model_t *m) {
    double total = 0;
    for (uint64_t i = 0; i < m->file->n_tensors; i++) total += (double)m->file->tensors[i].n_bytes;
    const gguf_tensor_t *e = m->tok_embd.t;
    double row = (double)e->n_bytes / (double)e->ne[1];
    return m->tied_output ? total + row : total - (double)e->n_bytes + row;
}

static long peak_rss_bytes(void) {
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    if (fp) fclose(fp);
    return kb * 1024;
}

/* What a timed run does with its n tokens. */
typedef enum { RUN_PROMPT, RUN_GEN, RUN_GEN_BATCHED } run_kind_t;

/* The streams a batched generation run decodes together, one forward pass
 * per step with one token of each (as the scheduler runs concurrent requests). */
typedef struct {
    pv_seq_t *seqs;         /* [n_seq], in the context's arena */
    pv_batch_entry_t *e;    /* [n_seq] */
    long n_seq;
} streams_t;

/* n steps of n_seq streams from position pos0, logits for every entry. */
static void run_streams(pv_ctx_t *ctx, streams_t *s, long n, uint32_t pos0, const int32_t *toks, float *logits,
                        uint32_t n_vocab) {
    for (long i = 0; i < n; i++) {
        for (long j = 0; j < s->n_seq; j++)
            s->e[j] = (pv_batch_entry_t){.seq = &s->seqs[j], .pos = pos0 + (uint32_t)i, .token = toks[(i + 7 * j) % n],
                                         .logits = logits + (size_t)j * n_vocab};
        pv_forward_batch(ctx, s->e, (int)s->n_seq);
    }
}

/* n tokens of a fixed, varied token stream. */
static void bench_tokens(const pv_model_t *m, long n, int32_t *toks) {
    uint32_t id = 1;
    for (long i = 0; i < n; i++) toks[i] = (int32_t)(id = (id * 1103515245u + 12345u) % m->hp.n_vocab);
}

/* Seconds to run n tokens after the depth already in the cache: as one
 * prompt (batched, logits of the last only), as generation (one token per
 * pass, logits each time) or as n steps of s's streams. */
static double time_tokens(pv_ctx_t *ctx, const pv_model_t *m, long n, long depth, run_kind_t kind, streams_t *s,
                          float *logits, int32_t *toks) {
    bench_tokens(m, n, toks);
    double t0 = now_s();
    if (kind == RUN_PROMPT) pv_prefill(ctx, toks, (int)n, (uint32_t)depth, logits);
    else if (kind == RUN_GEN)
        for (long i = 0; i < n; i++) pv_forward(ctx, toks[i], (uint32_t)(depth + i), logits);
    else run_streams(ctx, s, n, (uint32_t)depth, toks, logits, m->hp.n_vocab);
    return now_s() - t0;
}

/* Tokens per second over reps runs (every stream's tokens counted). */
static rate_t measure(pv_ctx_t *ctx, const pv_model_t *m, long n, long depth, run_kind_t kind, streams_t *s, long reps,
                      float *logits, int32_t *toks) {
    double sum = 0, sum2 = 0, per_run = kind == RUN_GEN_BATCHED ? (double)(n * s->n_seq) : (double)n;
    time_tokens(ctx, m, n < 8 ? n : 8, depth, kind, s, logits, toks); /* warm-up: pages in the weights */
    for (long r = 0; r < reps; r++) {
        double ts = per_run / time_tokens(ctx, m, n, depth, kind, s, logits, toks);
        sum += ts;
        sum2 += ts * ts;
    }
    double mean = sum / (double)reps, var = reps > 1 ? (sum2 - sum * mean) / (double)(reps - 1) : 0;
    return (rate_t){mean, var > 0 ? sqrt(var) : 0};
}

static json_t *result_json(const char *test, long n_prompt, long n_gen, const bench_opts_t *o, rate_t r,
                           const pv_model_t *m, double bpt, double bw) {
    return json_pack("{s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:I, s:f, s:f, s:s}", "test", test, "n_prompt",
                     (json_int_t)n_prompt, "n_gen", (json_int_t)n_gen, "n_depth", (json_int_t)o->n_depth,
                     "n_threads", (json_int_t)o->n_threads, "avg_ts", r.mean,
                     "stddev_ts", r.stddev, "model_size", (json_int_t)m->file->size, "bytes_per_token", bpt,
                     "bandwidth_limit_ts", bw > 0 ? bw / bpt : 0.0, "kernels", pv_kern_isa());
}

static int parse_bench_opts(int argc, char **argv, bench_opts_t *o) {
    *o = (bench_opts_t){.n_prompt = 512, .n_gen = 128, .n_threads = pv_physical_cores(), .reps = 3, .n_seq = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--json")) o->as_json = 1;
        else if (!strcmp(a, "--memory")) o->memory_only = 1;
        else if (!strcmp(a, "--attn-float")) o->float_attn = 1;
        else if (!v) rc = -1;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model_path = argv[++i];
        else if (!strcmp(a, "-p")) rc = cli_parse_int(a, argv[++i], 0, 1 << 16, &o->n_prompt);
        else if (!strcmp(a, "-n")) rc = cli_parse_int(a, argv[++i], 0, 1 << 16, &o->n_gen);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) rc = cli_parse_int(a, argv[++i], 1, PV_MAX_THREADS, &o->n_threads);
        else if (!strcmp(a, "-r")) rc = cli_parse_int(a, argv[++i], 1, 1000, &o->reps);
        else if (!strcmp(a, "-b")) rc = cli_parse_int(a, argv[++i], 1, PV_DEFAULT_BATCH, &o->n_seq);
        else if (!strcmp(a, "-d")) rc = cli_parse_int(a, argv[++i], 0, 1 << 20, &o->n_depth);
        else rc = -1;
        if (rc) return -1;
    }
    return o->model_path || o->memory_only ? 0 : -1;
}

static int bench_model(const bench_opts_t *o, double bw) {
    char err[PV_ERRLEN];
    pv_model_t *m = NULL;
    pv_ctx_t *ctx = NULL;
    pv_pool_t *pool = pv_pool_new((int)o->n_threads);
    uint32_t n_ctx = (uint32_t)(o->n_depth + (o->n_prompt > o->n_gen ? o->n_prompt : o->n_gen)) + 1;
    uint32_t kv_tokens = n_ctx + (uint32_t)((o->n_seq > 1 ? o->n_seq : 0) * (o->n_depth + o->n_gen + PV_KV_BLOCK));
    if (pv_model_load(o->model_path, &m, err, sizeof err) ||
        pv_ctx_new_arena(m, n_ctx, kv_tokens, 0, &ctx, err, sizeof err) || !pool) {
        fprintf(stderr, "pensieve: %s\n", pool ? err : "cannot start threads");
        pv_ctx_free(ctx);
        pv_model_free(m);
        pv_pool_free(pool);
        return 1;
    }
    pv_ctx_set_pool(ctx, pool);
    pv_ctx_set_float_attn(ctx, o->float_attn);
    float *logits = malloc((size_t)o->n_seq * m->hp.n_vocab * sizeof *logits);
    int32_t *toks = malloc(n_ctx * sizeof *toks);
    streams_t streams = {calloc((size_t)o->n_seq, sizeof(pv_seq_t)), calloc((size_t)o->n_seq, sizeof(pv_batch_entry_t)),
                         o->n_seq};
    int batched = o->n_gen > 0 && o->n_seq > 1 && streams.seqs && streams.e;
    for (long j = 0; streams.seqs && j < o->n_seq; j++) pv_seq_init(&streams.seqs[j], n_ctx);
    int rc = 0;
    if (o->n_depth > 0 && (o->n_prompt > 0 || o->n_gen > 0)) { /* every sequence's first n_depth positions, once, untimed */
        bench_tokens(m, o->n_depth, toks);
        rc = pv_prefill(ctx, toks, (int)o->n_depth, 0, NULL);
        for (long j = 0; batched && j < o->n_seq && !rc; j++)
            rc = pv_prefill_seq(ctx, &streams.seqs[j], toks, (int)o->n_depth, 0, NULL);
        if (rc) fprintf(stderr, "pensieve: cannot fill the KV cache to depth %ld: %s\n", o->n_depth, pv_strerror(rc));
    }
    double bpt = bytes_per_token(m);
    json_t *out = json_array();
    char name[64], at[32] = "";
    if (o->n_depth > 0) snprintf(at, sizeof at, " @ d%ld", o->n_depth);
    if (!rc && o->n_prompt > 0) {
        snprintf(name, sizeof name, "pp%ld%s", o->n_prompt, at);
        json_array_append_new(out, result_json(name, o->n_prompt, 0, o, measure(ctx, m, o->n_prompt, o->n_depth, RUN_PROMPT, NULL, o->reps, logits, toks), m, bpt, bw));
    }
    if (!rc && o->n_gen > 0) {
        snprintf(name, sizeof name, "tg%ld%s", o->n_gen, at);
        json_array_append_new(out, result_json(name, 0, o->n_gen, o, measure(ctx, m, o->n_gen, o->n_depth, RUN_GEN, NULL, o->reps, logits, toks), m, bpt, bw));
    }
    if (!rc && batched) {
        snprintf(name, sizeof name, "tg%ldx%ld%s", o->n_gen, o->n_seq, at);
        rate_t r = measure(ctx, m, o->n_gen, o->n_depth, RUN_GEN_BATCHED, &streams, o->reps, logits, toks);
        json_array_append_new(out, result_json(name, 0, o->n_gen, o, r, m, bpt / (double)o->n_seq, bw));
    }
    long rss = peak_rss_bytes();
    if (!rc && o->as_json) { /* rc: nothing was measured */
        char *s = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
    } else if (!rc) {
        printf("model: %s (%.1f MiB, %s), %ld threads, %s kernels\n", o->model_path, (double)m->file->size / 1048576,
               m->hp.arch, o->n_threads, pv_kern_isa());
        printf("read bandwidth: %.1f GB/s; weights read per token: %.1f MiB; peak RSS %.1f MiB (file + KV %.1f MiB)\n",
               bw / 1e9, bpt / 1048576, (double)rss / 1048576,
               (double)(m->file->size + pv_ctx_kv_bytes(ctx)) / 1048576);
        int wide = o->n_depth > 0 ? 20 : 8; /* "tg128x4 @ d20000" */
        printf("| %-*s | %14s | %22s |\n", wide, "test", "t/s", "bandwidth limit t/s");
        printf("|%.*s|----------------|------------------------|\n", wide + 2, "----------------------");
        size_t i;
        json_t *r;
        json_array_foreach(out, i, r) {
            double ts = json_real_value(json_object_get(r, "avg_ts")), lim = json_real_value(json_object_get(r, "bandwidth_limit_ts"));
            char pct[32] = "";
            if (json_integer_value(json_object_get(r, "n_gen")) > 0 && lim > 0)
                snprintf(pct, sizeof pct, " (%.0f%% of limit)", 100 * ts / lim);
            printf("| %-*s | %7.2f ± %-4.2f | %8.1f%-14s |\n", wide, json_string_value(json_object_get(r, "test")), ts,
                   json_real_value(json_object_get(r, "stddev_ts")), lim, pct);
        }
    }
    json_decref(out);
    for (long j = 0; streams.seqs && j < o->n_seq; j++) {
        pv_kv_release(pv_ctx_kv(ctx), &streams.seqs[j]);
        pv_seq_close(&streams.seqs[j]);
    }
    free(streams.seqs);
    free(streams.e);
    free(logits);
    free(toks);
    pv_ctx_free(ctx);
    pv_pool_free(pool);
    pv_model_free(m);
    return rc ? 1 : 0;
}

int cmd_bench(int argc, char **argv) {
    bench_opts_t o;
    if (parse_bench_opts(argc, argv, &o)) {
        fprintf(stderr, "usage: pensieve bench -m MODEL [-p 512] [-n 128] [-b STREAMS] [-d DEPTH] [-t THREADS] [-r REPS] [--json]\n"
                        "       pensieve bench --memory [-t THREADS]\n");
        return 2;
    }
    double bw = measure_bandwidth((int)o.n_threads);
    if (o.memory_only) {
        if (o.as_json) printf("{\"n_threads\": %ld, \"read_bandwidth_bytes_per_s\": %.0f}\n", o.n_threads, bw);
        else printf("read bandwidth with %ld threads: %.1f GB/s\n", o.n_threads, bw / 1e9);
        return bw > 0 ? 0 : 1;
    }
    return bench_model(&o, bw);
}
