/* tok_bench.c - how long tokenizing a 77 KB prompt takes (the size of a
 * Claude Code request: about 20k tokens).
 *
 * usage: tok_bench [-n RUNS] [SHARED [VOCAB...]]
 *
 * The prompt is built at run time from the .md files of SHARED/docs (claude-code.md first,
 * like a system prompt, then the other documents as if pasted by tools),
 * repeated as needed and cut to 77 KiB at a character boundary. Each
 * vocabulary (default: the byte-level BPE ones and llama-spm) tokenizes it
 * RUNS times (default 20) after two warm-up runs; the mean, the best run and
 * tokens per second (from the mean) are printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "tok/utf8.h"
#include "tok/vocab.h"

#define PROMPT_BYTES (77 * 1024)

static const char *const default_vocabs[] = {
    "llama-bpe", "qwen2", "gpt-2", "deepseek-coder", "deepseek-llm", "starcoder", "falcon", "llama-spm",
};

static const char *const docs[] = {"claude-code.md", "design.md", "style.md", "research.md"};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static char *read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 65536;
            char *p = realloc(buf, cap);
            if (!p) break;
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    fclose(fp);
    *len = n;
    return buf;
}

/* The prompt: the documents in turn until PROMPT_BYTES, cut at a character boundary. */
static char *build_prompt(const char *shared, size_t *len) {
    char *prompt = malloc(PROMPT_BYTES);
    if (!prompt) return NULL;
    size_t n = 0;
    while (n < PROMPT_BYTES) {
        size_t added = 0;
        for (size_t d = 0; d < sizeof docs / sizeof docs[0] && n < PROMPT_BYTES; d++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/docs/%s", shared, docs[d]);
            size_t flen;
            char *text = read_file(path, &flen);
            if (!text) continue;
            size_t take = flen < PROMPT_BYTES - n ? flen : PROMPT_BYTES - n;
            memcpy(prompt + n, text, take);
            n += take;
            added += take;
            free(text);
        }
        if (added == 0) break; /* no document could be read */
    }
    while (n > 0 && !pv_utf8_valid(prompt, n)) n--; /* drop a cut character */
    *len = n;
    return prompt;
}

static int bench_vocab(const char *shared, const char *name, const char *prompt, size_t len, int runs) {
    char path[1024], err[PV_ERRLEN];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", shared, name);
    gguf_file_t *f;
    if (gguf_open(path, &f, err, sizeof err)) {
        fprintf(stderr, "tok_bench: %s\n", err);
        return 1;
    }
    pv_vocab_t *v;
    double t0 = now_ms();
    int rc = pv_vocab_load(f, &v, err, sizeof err);
    double load_ms = now_ms() - t0;
    gguf_close(f);
    if (rc) {
        fprintf(stderr, "tok_bench: %s\n", err);
        return 1;
    }
    int n = -pv_tokenize(v, prompt, len, 0, NULL, 0);
    int32_t *ids = n > 0 ? malloc((size_t)n * sizeof *ids) : NULL;
    if (!ids) {
        fprintf(stderr, "tok_bench: %s: tokenizing failed\n", name);
        pv_vocab_free(v);
        return 1;
    }
    double total = 0, best = 1e30;
    for (int r = -2; r < runs; r++) {
        t0 = now_ms();
        int got = pv_tokenize(v, prompt, len, 0, ids, n);
        double ms = now_ms() - t0;
        if (got != n) {
            fprintf(stderr, "tok_bench: %s: run %d gave %d tokens, not %d\n", name, r, got, n);
            free(ids);
            pv_vocab_free(v);
            return 1;
        }
        if (r < 0) continue; /* warm-up */
        total += ms;
        if (ms < best) best = ms;
    }
    double mean = total / runs;
    printf("%-15s %6.1f KB -> %6d tokens: %7.2f ms mean of %d (best %6.2f), %5.2f M tokens/s  [load %.0f ms]\n", name,
           (double)len / 1024, n, mean, runs, best, n / mean / 1e3, load_ms);
    free(ids);
    pv_vocab_free(v);
    return 0;
}

int main(int argc, char **argv) {
    int runs = 20, i = 1;
    if (i + 1 < argc && strcmp(argv[i], "-n") == 0) {
        runs = atoi(argv[i + 1]);
        i += 2;
    }
    if (runs < 1 || (i < argc && argv[i][0] == '-')) {
        fprintf(stderr, "usage: tok_bench [-n RUNS] [SHARED [VOCAB...]]\n");
        return 2;
    }
    const char *shared = i < argc ? argv[i++] : "../shared";
    size_t len;
    char *prompt = build_prompt(shared, &len);
    if (!prompt || len == 0) {
        fprintf(stderr, "tok_bench: cannot read %s/docs/*.md\n", shared);
        free(prompt);
        return 1;
    }
    int fails = 0;
    if (i < argc)
        for (; i < argc; i++) fails += bench_vocab(shared, argv[i], prompt, len, runs);
    else
        for (size_t k = 0; k < sizeof default_vocabs / sizeof default_vocabs[0]; k++)
            fails += bench_vocab(shared, default_vocabs[k], prompt, len, runs);
    free(prompt);
    return fails ? 1 : 0;
}
