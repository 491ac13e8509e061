/* main.c - `pensieve COMMAND [options]`. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/jinja.h"
#include "cli/cli.h"

#define PV_VERSION "0.1.0"

static void usage(FILE *out) {
    fprintf(out,
            "pensieve %s - run and serve GGUF language models on the CPU\n"
            "\n"
            "usage: pensieve COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  info MODEL.gguf [--json]     describe a model file\n"
            "  run -m MODEL -p PROMPT ...   generate a continuation (pensieve run --help)\n"
            "  bench -m MODEL [-p N] [-n N] [-b B] [-t T] [-r R] [--json]   speed and bandwidth limit\n"
            "  tokenize -m MODEL [--ids] [--bos] [--special] TEXT | -   text to token ids\n"
            "  detokenize -m MODEL ID... | -                            token ids to text\n"
            "  template (-t FILE.jinja | -m MODEL) [-c CONTEXT.json]      render a chat template\n"
            "  serve -m MODEL [options]     the HTTP server (Anthropic Messages API; pensieve serve --help)\n"
            "  status [--port P]            ask a running server for /health\n"
            "  stop [--port P]              stop a running server (pid file + SIGTERM)\n"
            "  version                      print the version\n",
            PV_VERSION);
}

int cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "pensieve: bad value '%s' for %s (expected an integer in %ld..%ld)\n", s, opt, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_float(const char *opt, const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        fprintf(stderr, "pensieve: bad value '%s' for %s (expected a number)\n", s, opt);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_u64(const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "pensieve: bad value '%s' for %s (expected a non-negative integer)\n", s, opt);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_clock(struct tm *now, int *has_now) {
    const char *v = getenv("PENSIEVE_NOW");
    *has_now = 0;
    if (!v || !*v) return 0;
    if (pv_jinja_parse_time(v, now) != 0) {
        fprintf(stderr, "pensieve: bad PENSIEVE_NOW '%s' (expected ISO 8601, e.g. 2025-03-07T09:05:00)\n", v);
        return -1;
    }
    *has_now = 1;
    return 0;
}

char *cli_read_stream(FILE *f, const char *name, size_t max, size_t *len) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap || cap >= max) break;
        char *p = realloc(buf, 2 * cap + 1);
        if (!p) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = p;
        cap *= 2;
    }
    if (!buf || ferror(f) || n >= max) {
        fprintf(stderr, "pensieve: cannot read %s (or larger than %zu bytes)\n", name, max);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

char *cli_read_file(const char *path, size_t max, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "pensieve: cannot open %s\n", path);
        return NULL;
    }
    char *buf = cli_read_stream(f, path, max, len);
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0) return cmd_status(argc - 1, argv + 1);
    if (strcmp(cmd, "stop") == 0) return cmd_stop(argc - 1, argv + 1);
    if (strcmp(cmd, "tokenize") == 0) return cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "detokenize") == 0) return cmd_detokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "template") == 0) return cmd_template(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("pensieve %s\n", PV_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "pensieve: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
