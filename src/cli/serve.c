/* serve.c - `pensieve serve` (the persistent server), `pensieve status`, `pensieve stop`. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/err.h"
#include "chat/jinja.h"
#include "cli/cli.h"
#include "http/server.h"
#include "kernels/pool.h"
#include "model/model.h"
#include "sched/sched.h"

typedef struct {
    const char *model_path; /* -m */
    const char *host;       /* --host */
    long port;              /* --port */
    long parallel;          /* --parallel: slots */
    long queue;             /* --queue: waiting requests */
    long ctx_size;          /* --ctx-size: positions per slot (0: min(trained, 32768)) */
    long kv_budget_mb;      /* --kv-budget: MB for the KV arena (0: from ctx-size) */
    const char *api_key;    /* --api-key */
    long threads;           /* --threads */
    const char *alias;      /* --alias: served model name */
    long insecure_public;   /* --insecure-public */
    long float_attn;        /* --attn-float */
    long max_body;          /* --max-body bytes */
    long max_conns;         /* --max-connections */
    long idle_timeout;      /* --idle-timeout s */
    long grace;             /* --grace s */
    long ping;              /* --ping-interval s */
    long batch;             /* --batch: prompt tokens per forward pass */
    long mem_critical_mb;   /* --mem-critical MB */
    long mem_emergency_mb;  /* --mem-emergency MB */
    const char *pid_file;   /* --pid-file */
    const char *chat_template; /* --chat-template: a Jinja file replacing the GGUF's template */
    const char *cache_dir;  /* --cache-dir: where the prefix cache is kept across restarts */
    char cache_path[4096];  /* the cache file in cache_dir ("" without one) */
} serve_opts_t;

typedef struct {
    const char *flag; /* command-line flag */
    const char *env;  /* environment variable */
    char kind;        /* 's' string, 'i' integer, 'b' boolean (flag without value) */
    long lo, hi;      /* integer range */
    size_t off;       /* field offset in serve_opts_t */
    const char *help; /* usage text */
} opt_t;

#define O(f) offsetof(serve_opts_t, f)
static const opt_t opts[] = {
    {"-m", "PENSIEVE_MODEL", 's', 0, 0, O(model_path), "GGUF model (required)"},
    {"--host", "PENSIEVE_HOST", 's', 0, 0, O(host), "address to bind (default 127.0.0.1)"},
    {"--port", "PENSIEVE_PORT", 'i', 0, 65535, O(port), "TCP port (default 7777; 0: any free port)"},
    {"--parallel", "PENSIEVE_PARALLEL", 'i', 1, PV_SCHED_MAX_SLOTS, O(parallel),
     "requests generated together (default 2)"},
    {"--queue", "PENSIEVE_QUEUE", 'i', 0, 100000, O(queue), "requests that may wait for a slot (default 16)"},
    {"--ctx-size", "PENSIEVE_CTX_SIZE", 'i', 0, 1 << 20, O(ctx_size),
     "context per slot in tokens (default: the model's, at most 32768)"},
    {"--kv-budget", "PENSIEVE_KV_BUDGET", 'i', 0, 1 << 24, O(kv_budget_mb),
     "MB for the whole KV cache; caps the context per slot"},
    {"--api-key", "PENSIEVE_API_KEY", 's', 0, 0, O(api_key), "require this key (x-api-key or Bearer)"},
    {"--threads", "PENSIEVE_THREADS", 'i', 1, PV_MAX_THREADS, O(threads), "compute threads (default: physical cores)"},
    {"--alias", "PENSIEVE_ALIAS", 's', 0, 0, O(alias), "model name to report (default: the file name)"},
    {"--insecure-public", "PENSIEVE_INSECURE_PUBLIC", 'b', 0, 1, O(insecure_public),
     "allow a non-loopback --host without an API key"},
    {"--attn-float", "PENSIEVE_ATTN_FLOAT", 'b', 0, 1, O(float_attn),
     "decode with float attention sums: faster at long contexts, not llama.cpp's bits"},
    {"--max-body", "PENSIEVE_MAX_BODY", 'i', 1024, 1L << 30, O(max_body),
     "request body limit in bytes (default: max(1 MiB, 24 x context))"},
    {"--max-connections", "PENSIEVE_MAX_CONNECTIONS", 'i', 1, 100000, O(max_conns),
     "open connections at most (default 256)"},
    {"--idle-timeout", "PENSIEVE_IDLE_TIMEOUT", 'i', 1, 86400, O(idle_timeout),
     "seconds before an idle connection is closed (default 600)"},
    {"--grace", "PENSIEVE_GRACE", 'i', 0, 86400, O(grace), "seconds running requests get at shutdown (default 30)"},
    {"--ping-interval", "PENSIEVE_PING_INTERVAL", 'i', 1, 3600, O(ping),
     "seconds between keep-alive pings of a stream waiting for tokens (default 3)"},
    {"--batch", "PENSIEVE_BATCH", 'i', 1, 4096, O(batch),
     "prompt tokens per forward pass in full chunks; short prompts and decode tokens on top (default 64)"},
    {"--mem-critical", "PENSIEVE_MEM_CRITICAL", 'i', 0, 1L << 30, O(mem_critical_mb),
     "refuse new requests at or below this many MB available (default 1024)"},
    {"--mem-emergency", "PENSIEVE_MEM_EMERGENCY", 'i', 0, 1L << 30, O(mem_emergency_mb),
     "emergency tier in MB (default 512)"},
    {"--pid-file", "PENSIEVE_PID_FILE", 's', 0, 0, O(pid_file), "pid file (default /tmp/pensieve-PORT.pid)"},
    {"--chat-template", "PENSIEVE_CHAT_TEMPLATE", 's', 0, 0, O(chat_template),
     "Jinja chat template file (default: the model's tokenizer.chat_template)"},
    {"--cache-dir", "PENSIEVE_CACHE_DIR", 's', 0, 0, O(cache_dir),
     "keep the prefix cache here: saved at shutdown, loaded at start-up"},
};
#define N_OPTS ((int)(sizeof opts / sizeof *opts))

static void serve_usage(FILE *out) {
    fprintf(out, "usage: pensieve serve -m MODEL.gguf [options]   (every option also as its environment variable)\n");
    for (int i = 0; i < N_OPTS; i++)
        fprintf(out, "  %-18s %-26s %s\n", opts[i].flag, opts[i].env, opts[i].help);
    fprintf(out, "Also: --model for -m; PENSIEVE_NOW (ISO 8601) fixes the time templates' strftime_now() formats.\n"
                 "Endpoints: POST /v1/messages, POST /v1/messages/count_tokens, POST /v1/chat/completions,\n"
                 "POST /v1/completions, POST /apply-template, GET /v1/models, GET /health, GET /metrics. See README.md.\n");
}

static int set_opt(serve_opts_t *o, const opt_t *d, const char *v) {
    char *base = (char *)o + d->off;
    if (d->kind == 's') {
        *(const char **)base = v;
        return 0;
    }
    if (d->kind == 'b') {
        *(long *)base = !v || !*v || strcmp(v, "0") != 0;
        return 0;
    }
    return cli_parse_int(d->flag, v, d->lo, d->hi, (long *)base);
}

static int parse_serve_opts(int argc, char **argv, serve_opts_t *o) {
    *o = (serve_opts_t){.host = "127.0.0.1", .port = 7777, .parallel = 2, .queue = 16, .threads = pv_physical_cores(),
                        .max_conns = 256, .idle_timeout = 600, .grace = 30, .ping = 3, .mem_critical_mb = 1024,
                        .mem_emergency_mb = 512};
    for (int i = 0; i < N_OPTS; i++) {
        const char *v = getenv(opts[i].env);
        if (v && *v && set_opt(o, &opts[i], v)) return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            serve_usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--model")) a = "-m";
        const opt_t *d = NULL;
        for (int k = 0; k < N_OPTS; k++)
            if (!strcmp(a, opts[k].flag)) d = &opts[k];
        if (!d) {
            fprintf(stderr, "pensieve serve: unknown option %s\n", a);
            return -1;
        }
        if (d->kind == 'b') {
            set_opt(o, d, NULL);
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "pensieve serve: %s needs a value\n", a);
            return -1;
        }
        if (set_opt(o, d, argv[++i])) return -1;
    }
    if (!o->model_path) {
        fprintf(stderr, "pensieve serve: -m MODEL is required\n");
        return -1;
    }
    return 0;
}

/* ---- loading on its own thread, so that /health answers 503 meanwhile ---------------------- */

typedef struct {
    const serve_opts_t *o; /* options */
    pv_server_t *srv;      /* where to attach */
    pv_model_t *model;     /* loaded model (owned by cmd_serve) */
    pv_sched_t *sched;     /* created scheduler (owned by cmd_serve) */
} loader_t;

static void *load_main(void *arg) {
    loader_t *L = arg;
    const serve_opts_t *o = L->o;
    char err[PV_ERRLEN];
    if (pv_model_load(o->model_path, &L->model, err, sizeof err)) {
        pv_server_fail(L->srv, err);
        return NULL;
    }
    const pv_hparams_t *hp = &L->model->hp;
    uint64_t n_ctx = o->ctx_size ? (uint64_t)o->ctx_size : hp->n_ctx_train < 32768 ? hp->n_ctx_train : 32768;
    if (o->kv_budget_mb) {
        uint64_t per_pos = 2ull * 2u * hp->n_layer * hp->n_head_kv * hp->head_dim; /* K and V halves */
        uint64_t fit = ((uint64_t)o->kv_budget_mb << 20) / (per_pos * (uint64_t)o->parallel);
        if (fit < 16) {
            snprintf(err, sizeof err, "--kv-budget %ld MB holds only %llu positions per slot", o->kv_budget_mb,
                     (unsigned long long)fit);
            pv_server_fail(L->srv, err);
            return NULL;
        }
        if (fit < n_ctx) n_ctx = fit / 16 * 16;
    }
    pv_sched_opts_t so = {.n_slots = (int)o->parallel, .queue_limit = (int)o->queue, .n_ctx = (uint32_t)n_ctx,
                          .n_threads = (int)o->threads, .prompt_batch = (int)o->batch, .float_attn = (int)o->float_attn,
                          .notify = pv_server_notify, .notify_ud = L->srv};
    if (pv_sched_new(L->model, &so, &L->sched, err, sizeof err)) {
        pv_server_fail(L->srv, err);
        return NULL;
    }
    if (o->cache_path[0]) {
        uint32_t n = 0;
        int rc = pv_sched_cache_load(L->sched, o->cache_path, &n, err, sizeof err);
        if (!rc) fprintf(stderr, "pensieve: prefix cache: %u blocks loaded from %s\n", n, o->cache_path);
        else if (rc != PV_ENOTFOUND) fprintf(stderr, "pensieve: warning: prefix cache not loaded: %s\n", err);
    }
    pv_server_attach(L->srv, L->model, L->sched);
    return NULL;
}

/* The cache file for the served model name in --cache-dir (created if missing):
 * one file per name, so that servers of different models can share the folder. */
static int cache_path(serve_opts_t *o, const char *name) {
    if (mkdir(o->cache_dir, 0700) && errno != EEXIST) {
        fprintf(stderr, "pensieve: --cache-dir %s: %s\n", o->cache_dir, strerror(errno));
        return -1;
    }
    int n = snprintf(o->cache_path, sizeof o->cache_path, "%s/%s.kvcache", o->cache_dir, name);
    if (n < 0 || (size_t)n >= sizeof o->cache_path) {
        fprintf(stderr, "pensieve: --cache-dir: path too long\n");
        return -1;
    }
    for (char *p = o->cache_path + strlen(o->cache_dir) + 1; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_') *p = '_';
    return 0;
}

/* After the scheduler has stopped: writes what the prefix cache holds. */
static void save_cache(const serve_opts_t *o, pv_sched_t *sched) {
    char err[PV_ERRLEN];
    uint32_t n = 0;
    if (pv_sched_cache_save(sched, o->cache_path, &n, err, sizeof err))
        fprintf(stderr, "pensieve: warning: prefix cache not saved: %s\n", err);
    else fprintf(stderr, "pensieve: prefix cache: %u blocks saved to %s\n", n, o->cache_path);
}

int cmd_serve(int argc, char **argv) {
    serve_opts_t o;
    if (parse_serve_opts(argc, argv, &o)) {
        serve_usage(stderr);
        return 2;
    }
    const char *slash = strrchr(o.model_path, '/');
    char name[256];
    snprintf(name, sizeof name, "%s", o.alias ? o.alias : slash ? slash + 1 : o.model_path);
    size_t nl = strlen(name);
    if (!o.alias && nl > 5 && !strcmp(name + nl - 5, ".gguf")) name[nl - 5] = 0;
    if (o.cache_dir && cache_path(&o, name)) return 1;
    long ctx_guess = o.ctx_size ? o.ctx_size : 32768;
    pv_server_opts_t so = {.host = o.host, .port = (int)o.port, .api_key = o.api_key,
                           .insecure_public = (int)o.insecure_public, .model_name = name,
                           .max_body = o.max_body ? (size_t)o.max_body
                                                  : (size_t)(ctx_guess * 24 > (1 << 20) ? ctx_guess * 24 : 1 << 20),
                           .max_headers = 64 * 1024, .max_conns = (int)o.max_conns,
                           .idle_timeout_s = (int)o.idle_timeout, .grace_s = (int)o.grace, .ping_s = (int)o.ping,
                           .tiers = pv_mem_tiers_default()};
    so.tiers.critical = (uint64_t)o.mem_critical_mb << 20;
    so.tiers.emergency = (uint64_t)o.mem_emergency_mb << 20;
    if (so.tiers.warning < so.tiers.critical) so.tiers.warning = so.tiers.critical;
    if (so.tiers.caution < so.tiers.warning) so.tiers.caution = so.tiers.warning;
    if (cli_clock(&so.now, &so.has_now)) return 2;
    char err[PV_ERRLEN];
    char *tmpl = NULL; /* --chat-template's text, checked now so that a bad file fails at once */
    if (o.chat_template) {
        size_t tlen = 0;
        pv_jinja_t *t = NULL;
        if (!(tmpl = cli_read_file(o.chat_template, CLI_TEMPLATE_MAX_BYTES, &tlen))) return 1;
        if (strlen(tmpl) != tlen || pv_jinja_parse(tmpl, tlen, &t, err, sizeof err)) {
            fprintf(stderr, "pensieve: %s: %s\n", o.chat_template, strlen(tmpl) != tlen ? "contains a NUL byte" : err);
            free(tmpl);
            return 1;
        }
        pv_jinja_free(t);
        so.chat_template = tmpl;
    }
    signal(SIGPIPE, SIG_IGN);
    pv_server_t *srv = NULL;
    if (pv_server_new(&so, &srv, err, sizeof err)) {
        fprintf(stderr, "pensieve: %s\n", err);
        free(tmpl);
        return 1;
    }
    char pid_path[512];
    snprintf(pid_path, sizeof pid_path, "%s", o.pid_file ? o.pid_file : "");
    if (!o.pid_file) snprintf(pid_path, sizeof pid_path, "/tmp/pensieve-%d.pid", pv_server_port(srv));
    FILE *pf = fopen(pid_path, "w");
    if (pf) {
        fprintf(pf, "%ld\n", (long)getpid());
        fclose(pf);
    }
    fprintf(stderr, "pensieve: listening on http://%s:%d (loading %s)\n", o.host, pv_server_port(srv), o.model_path);
    loader_t L = {.o = &o, .srv = srv};
    pthread_t th;
    int status = 1;
    if (pthread_create(&th, NULL, load_main, &L)) {
        fprintf(stderr, "pensieve: cannot start the loader thread\n");
        pv_server_free(srv);
        free(tmpl);
        return 1;
    }
    status = pv_server_run(srv) == 0 ? 0 : 1;
    pthread_join(th, NULL);
    if (L.sched && o.cache_path[0]) {
        pv_sched_stop(L.sched, 1); /* cancels what is left (registering what it computed) */
        pv_sched_join(L.sched);
        save_cache(&o, L.sched);
    }
    pv_sched_free(L.sched); /* cancels what is left, joins the scheduler thread */
    pv_server_free(srv);
    pv_model_free(L.model);
    free(tmpl);
    if (pf) unlink(pid_path);
    fprintf(stderr, "pensieve: stopped\n");
    return status;
}

/* ---- status and stop ---------------------------------------------------------------------- */

static int parse_host_port(int argc, char **argv, const char **host, long *port, const char **pid_file) {
    *host = getenv("PENSIEVE_HOST") && *getenv("PENSIEVE_HOST") ? getenv("PENSIEVE_HOST") : "127.0.0.1";
    *port = 7777;
    if (getenv("PENSIEVE_PORT") && cli_parse_int("PENSIEVE_PORT", getenv("PENSIEVE_PORT"), 1, 65535, port)) return -1;
    if (pid_file) *pid_file = getenv("PENSIEVE_PID_FILE");
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "pensieve: unknown option or missing value: %s\n", argv[i]);
            return -1;
        }
        if (!strcmp(argv[i], "--host")) *host = argv[++i];
        else if (!strcmp(argv[i], "--port")) {
            if (cli_parse_int("--port", argv[++i], 1, 65535, port)) return -1;
        } else if (pid_file && !strcmp(argv[i], "--pid-file")) *pid_file = argv[++i];
        else {
            fprintf(stderr, "pensieve: unknown option %s\n", argv[i]);
            return -1;
        }
    }
    return 0;
}

int cmd_status(int argc, char **argv) {
    const char *host;
    long port;
    if (parse_host_port(argc, argv, &host, &port, NULL)) return 2;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%ld", port);
    if (getaddrinfo(host, ps, &hints, &ai) || !ai) {
        fprintf(stderr, "pensieve: cannot resolve %s\n", host);
        return 1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype, 0);
    struct timeval tv = {5, 0};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
        fprintf(stderr, "pensieve: no server at %s:%ld (%s)\n", host, port, strerror(errno));
        freeaddrinfo(ai);
        if (fd >= 0) close(fd);
        return 1;
    }
    freeaddrinfo(ai);
    char req[256], buf[16384];
    int n = snprintf(req, sizeof req, "GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host);
    size_t got = 0;
    if (write(fd, req, (size_t)n) == n) {
        ssize_t k;
        while (got < sizeof buf - 1 && (k = read(fd, buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)k;
    }
    close(fd);
    buf[got] = 0;
    int code = 0;
    sscanf(buf, "HTTP/1.%*d %d", &code);
    const char *body = strstr(buf, "\r\n\r\n");
    printf("%s\n", body ? body + 4 : "");
    return code == 200 ? 0 : 1;
}

int cmd_stop(int argc, char **argv) {
    const char *host, *pid_file;
    long port;
    if (parse_host_port(argc, argv, &host, &port, &pid_file)) return 2;
    char path[512];
    snprintf(path, sizeof path, "%s", pid_file ? pid_file : "");
    if (!pid_file) snprintf(path, sizeof path, "/tmp/pensieve-%ld.pid", port);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
        fprintf(stderr, "pensieve: no server pid in %s\n", path);
        if (f) fclose(f);
        return 1;
    }
    fclose(f);
    if (kill((pid_t)pid, SIGTERM)) {
        fprintf(stderr, "pensieve: cannot signal %ld: %s\n", pid, strerror(errno));
        return 1;
    }
    for (int i = 0; i < 600 && kill((pid_t)pid, 0) == 0; i++) usleep(100000); /* up to 60 s */
    if (kill((pid_t)pid, 0) == 0) {
        fprintf(stderr, "pensieve: server %ld still running after 60 s\n", pid);
        return 1;
    }
    printf("pensieve: stopped server %ld\n", pid);
    return 0;
}
