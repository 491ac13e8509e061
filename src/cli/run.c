/* run.c - `pensieve run`: load a model, feed a prompt, stream the continuation to stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "cli/cli.h"
#include "model/model.h"
#include "model/sample.h"
#include "tok/utf8.h"

typedef struct {
    const char *model_path;
    const char *prompt;
    long n_predict;       /* tokens to generate; -1: until EOS or the context is full */
    long n_ctx;           /* 0: the model's trained context */
    int echo;             /* print the prompt before the continuation */
    int float_attn;       /* --attn-float */
    long n_threads;       /* compute threads (default: physical cores) */
    pv_sampler_params_t sp;
} run_opts_t;

static void run_usage(FILE *out) {
    fprintf(out,
            "usage: pensieve run -m MODEL.gguf -p PROMPT [options]\n"
            "  -m, --model FILE       GGUF model\n"
            "  -p, --prompt TEXT      prompt text\n"
            "  -n, --n-predict N      tokens to generate (default 128; -1: until end of text)\n"
            "  --ctx N                context size in tokens (default: the model's)\n"
            "  --temp T               temperature (default 0.8; 0: greedy)\n"
            "  --top-k K              top-k (default 40; 0: off)\n"
            "  --top-p P              top-p (default 0.95; 1: off)\n"
            "  --min-p P              min-p (default 0.05; 0: off)\n"
            "  --repeat-penalty R     repetition penalty (default 1.0: off)\n"
            "  --repeat-last-n N      tokens the penalty looks back over (default 64)\n"
            "  --seed S               RNG seed (default 0x5eed)\n"
            "  -t, --threads N        compute threads (default: physical cores)\n"
            "  --echo                 print the prompt before the continuation\n"
            "  --attn-float           decode with float attention sums: faster at long contexts, not llama.cpp's bits\n"
            "Prompt and generation speeds are printed on stderr.\n");
}

static int parse_run_opts(int argc, char **argv, run_opts_t *o) {
    *o = (run_opts_t){.n_predict = 128, .n_threads = pv_physical_cores(), .sp = pv_sampler_defaults()};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        int rc = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            run_usage(stdout);
            exit(0);
        } else if (strcmp(a, "--echo") == 0) {
            o->echo = 1;
            continue;
        } else if (strcmp(a, "--attn-float") == 0) {
            o->float_attn = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "pensieve run: unknown option or missing value: %s\n", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model_path = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) rc = cli_parse_int(a, v, -1, 1 << 24, &o->n_predict);
        else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) rc = cli_parse_int(a, v, 0, 1 << 20, &o->n_ctx);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) rc = cli_parse_int(a, v, 1, PV_MAX_THREADS, &o->n_threads);
        else if (!strcmp(a, "--temp")) rc = cli_parse_float(a, v, &o->sp.temperature);
        else if (!strcmp(a, "--top-k")) rc = cli_parse_int(a, v, 0, 1 << 30, &n), o->sp.top_k = (int)n;
        else if (!strcmp(a, "--top-p")) rc = cli_parse_float(a, v, &o->sp.top_p);
        else if (!strcmp(a, "--min-p")) rc = cli_parse_float(a, v, &o->sp.min_p);
        else if (!strcmp(a, "--repeat-penalty")) rc = cli_parse_float(a, v, &o->sp.repeat_penalty);
        else if (!strcmp(a, "--repeat-last-n")) rc = cli_parse_int(a, v, 0, 1 << 20, &n), o->sp.repeat_last_n = (int)n;
        else if (!strcmp(a, "--seed")) rc = cli_parse_u64(a, v, &o->sp.seed);
        else {
            fprintf(stderr, "pensieve run: unknown option %s\n", a);
            return -1;
        }
        if (rc) return -1;
    }
    if (!o->model_path || !o->prompt) {
        fprintf(stderr, "pensieve run: -m MODEL and -p PROMPT are required\n");
        return -1;
    }
    if (o->sp.repeat_penalty <= 0.0f) {
        fprintf(stderr, "pensieve run: --repeat-penalty must be positive\n");
        return -1;
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Writes the text a token completes to stdout as soon as it is chosen: only
 * whole UTF-8 characters (a character split over tokens waits for its end). */
static int emit_token(pv_detok_stream_t *ds, int32_t id) {
    const char *text;
    size_t len;
    if (pv_detok_stream_push(ds, id, &text, &len)) return -1;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* Feeds the prompt, then samples until n_predict, end of generation or a full context. */
static int generate(const run_opts_t *o, const pv_model_t *m, pv_ctx_t *ctx, int32_t *toks, int n_prompt,
                    float *logits, pv_sampler_t *smp) {
    uint32_t n_ctx = pv_ctx_size(ctx);
    double t0 = now_s();
    if (pv_prefill(ctx, toks, n_prompt, 0, logits)) return -1;
    double t1 = now_s();
    int n_gen = 0, n = n_prompt, rc = 0;
    pv_detok_stream_t ds;
    pv_detok_stream_init(&ds, m->vocab, 0);
    while ((o->n_predict < 0 || n_gen < o->n_predict) && (uint32_t)n < n_ctx) {
        int32_t id = pv_sampler_sample(smp, logits, toks, n);
        if (pv_vocab_is_eog(m->vocab, id)) break;
        if ((rc = emit_token(&ds, id))) break;
        toks[n] = id;
        n_gen++;
        if ((uint32_t)n + 1 >= n_ctx || (o->n_predict >= 0 && n_gen >= o->n_predict)) break;
        if ((rc = pv_forward(ctx, id, (uint32_t)n, logits))) break;
        n++;
    }
    const char *tail;
    size_t tail_len;
    pv_detok_stream_finish(&ds, &tail, &tail_len); /* a dangling partial character becomes U+FFFD */
    fwrite(tail, 1, tail_len, stdout);
    pv_detok_stream_close(&ds);
    if (rc) return -1;
    double t2 = now_s();
    printf("\n");
    fprintf(stderr, "prompt:     %d tokens in %.1f ms (%.1f tokens/s)\n", n_prompt, (t1 - t0) * 1e3,
            n_prompt / (t1 - t0 > 0 ? t1 - t0 : 1e-9));
    fprintf(stderr, "generation: %d tokens in %.1f ms (%.1f tokens/s)\n", n_gen, (t2 - t1) * 1e3,
            n_gen / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
    return 0;
}

int cmd_run(int argc, char **argv) {
    run_opts_t o;
    if (parse_run_opts(argc, argv, &o)) {
        run_usage(stderr);
        return 2;
    }
    char err[PV_ERRLEN];
    pv_model_t *m = NULL;
    pv_ctx_t *ctx = NULL;
    pv_sampler_t *smp = NULL;
    pv_pool_t *pool = NULL;
    int32_t *toks = NULL;
    float *logits = NULL;
    int status = 1;
    if (pv_model_load(o.model_path, &m, err, sizeof err) || pv_ctx_new(m, (uint32_t)o.n_ctx, &ctx, err, sizeof err)) {
        fprintf(stderr, "pensieve: %s\n", err);
        goto done;
    }
    uint32_t n_ctx = pv_ctx_size(ctx);
    toks = malloc((size_t)n_ctx * sizeof *toks);
    logits = malloc(m->hp.n_vocab * sizeof *logits);
    smp = pv_sampler_new(&o.sp, (int32_t)m->hp.n_vocab);
    pool = pv_pool_new((int)o.n_threads);
    if (!toks || !logits || !smp || !pool) {
        fprintf(stderr, "pensieve: out of memory\n");
        goto done;
    }
    pv_ctx_set_pool(ctx, pool);
    pv_ctx_set_float_attn(ctx, o.float_attn);
    unsigned flags = pv_vocab_adds_bos(m->vocab) ? PV_TOK_ADD_BOS : 0;
    int n_prompt = pv_tokenize(m->vocab, o.prompt, strlen(o.prompt), flags, toks, (int)n_ctx);
    if (n_prompt == PV_TOK_FAILED) {
        fprintf(stderr, "pensieve: cannot tokenize the prompt (out of memory or too long)\n");
        goto done;
    }
    if (n_prompt < 0 || (uint32_t)n_prompt >= n_ctx) {
        fprintf(stderr, "pensieve: the prompt (%d tokens) does not fit the context of %u tokens\n",
                n_prompt < 0 ? -n_prompt : n_prompt, n_ctx);
        goto done;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "pensieve: the prompt is empty and the model adds no BOS token\n");
        goto done;
    }
    if (o.echo) fputs(o.prompt, stdout);
    if (generate(&o, m, ctx, toks, n_prompt, logits, smp)) {
        fprintf(stderr, "pensieve: generation failed\n");
        goto done;
    }
    status = 0;
done:
    free(toks);
    free(logits);
    pv_sampler_free(smp);
    pv_ctx_free(ctx);
    pv_pool_free(pool);
    pv_model_free(m);
    return status;
}
