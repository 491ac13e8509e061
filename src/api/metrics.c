/* metrics.c - Prometheus text for /metrics. */
#include "api/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *ep_names[PV_EP_COUNT] = {"/v1/messages", "/v1/messages/count_tokens", "/v1/models",
                                           "/health", "/metrics", "/v1/chat/completions",
                                           "/v1/completions", "/apply-template", "other"};

static void hist_init(pv_hist_t *h, const double *b, int n) {
    memset(h, 0, sizeof *h);
    h->n_bounds = n;
    memcpy(h->bounds, b, (size_t)n * sizeof *b);
}

void pv_metrics_init(pv_metrics_t *m) {
    memset(m, 0, sizeof *m);
    static const double ttft[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
    static const double tok[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
    hist_init(&m->ttft, ttft, (int)(sizeof ttft / sizeof *ttft));
    hist_init(&m->token_latency, tok, (int)(sizeof tok / sizeof *tok));
}

void pv_metrics_request(pv_metrics_t *m, pv_endpoint_t ep, int status) {
    if ((unsigned)ep < PV_EP_COUNT && status >= 100 && status < 600) m->requests[ep][status]++;
}

void pv_hist_observe(pv_hist_t *h, double v, uint64_t times) {
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) i++;
    h->counts[i] += times;
    h->sum += v * (double)times;
    h->n += times;
}

static void hist_render(FILE *f, const char *name, const char *help, const pv_hist_t *h) {
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[h->n_bounds];
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)cum, name,
            h->sum, name, (unsigned long long)h->n);
}

char *pv_metrics_render(const pv_metrics_t *m, const pv_server_state_t *st) {
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f) return NULL;
    fprintf(f, "# HELP pensieve_requests_total HTTP requests by endpoint and status.\n"
               "# TYPE pensieve_requests_total counter\n");
    for (int e = 0; e < PV_EP_COUNT; e++)
        for (int s = 100; s < 600; s++)
            if (m->requests[e][s])
                fprintf(f, "pensieve_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", ep_names[e], s,
                        (unsigned long long)m->requests[e][s]);
    fprintf(f,
            "# HELP pensieve_tokens_in_total Prompt tokens of finished requests.\n"
            "# TYPE pensieve_tokens_in_total counter\npensieve_tokens_in_total %llu\n"
            "# HELP pensieve_tokens_out_total Generated tokens of finished requests.\n"
            "# TYPE pensieve_tokens_out_total counter\npensieve_tokens_out_total %llu\n"
            "# HELP pensieve_cancelled_total Requests cancelled because the client left.\n"
            "# TYPE pensieve_cancelled_total counter\npensieve_cancelled_total %llu\n"
            "# HELP pensieve_queue_length Requests waiting for a slot.\n"
            "# TYPE pensieve_queue_length gauge\npensieve_queue_length %d\n"
            "# HELP pensieve_queue_limit Bound of the queue.\n"
            "# TYPE pensieve_queue_limit gauge\npensieve_queue_limit %d\n"
            "# HELP pensieve_slots_busy Slots running a request.\n"
            "# TYPE pensieve_slots_busy gauge\npensieve_slots_busy %d\n"
            "# HELP pensieve_slots_total Slots in all.\n"
            "# TYPE pensieve_slots_total gauge\npensieve_slots_total %d\n"
            "# HELP pensieve_kv_used_bytes KV cache bytes held by running sequences.\n"
            "# TYPE pensieve_kv_used_bytes gauge\npensieve_kv_used_bytes %llu\n"
            "# HELP pensieve_kv_budget_bytes The KV arena allocated at start-up.\n"
            "# TYPE pensieve_kv_budget_bytes gauge\npensieve_kv_budget_bytes %llu\n"
            "# HELP pensieve_memory_available_bytes MemAvailable (or the cgroup's room, if smaller).\n"
            "# TYPE pensieve_memory_available_bytes gauge\npensieve_memory_available_bytes %llu\n"
            "# HELP pensieve_memory_rss_bytes Resident set size of the server.\n"
            "# TYPE pensieve_memory_rss_bytes gauge\npensieve_memory_rss_bytes %llu\n"
            "# HELP pensieve_memory_status Memory tier (0 safe, 1 caution, 2 warning, 3 critical, 4 emergency).\n"
            "# TYPE pensieve_memory_status gauge\npensieve_memory_status %d\n",
            (unsigned long long)m->tokens_in, (unsigned long long)m->tokens_out, (unsigned long long)m->cancelled,
            st->stats.n_queued, st->stats.queue_limit, st->stats.n_busy, st->stats.n_slots,
            (unsigned long long)st->stats.kv_used_bytes, (unsigned long long)st->stats.kv_bytes,
            (unsigned long long)(st->mem.available_bytes == UINT64_MAX ? 0 : st->mem.available_bytes),
            (unsigned long long)st->mem.rss_bytes, (int)st->mem_status);
    /* the prefix cache: prompt tokens computed vs reused, what stays cached, what was evicted */
    uint64_t computed = st->stats.n_prompt_tokens, reused = st->stats.n_cached_tokens;
    fprintf(f,
            "# HELP pensieve_prompt_tokens_computed_total Prompt tokens run through the model.\n"
            "# TYPE pensieve_prompt_tokens_computed_total counter\npensieve_prompt_tokens_computed_total %llu\n"
            "# HELP pensieve_prompt_tokens_cached_total Prompt tokens reused from the prefix cache.\n"
            "# TYPE pensieve_prompt_tokens_cached_total counter\npensieve_prompt_tokens_cached_total %llu\n"
            "# HELP pensieve_prefix_cache_hit_ratio Share of prompt tokens reused from the prefix cache.\n"
            "# TYPE pensieve_prefix_cache_hit_ratio gauge\npensieve_prefix_cache_hit_ratio %.6f\n"
            "# HELP pensieve_kv_cached_bytes KV bytes of cached prefix blocks no request holds.\n"
            "# TYPE pensieve_kv_cached_bytes gauge\npensieve_kv_cached_bytes %llu\n"
            "# HELP pensieve_prefix_cache_evictions_total Cached blocks evicted to make room.\n"
            "# TYPE pensieve_prefix_cache_evictions_total counter\npensieve_prefix_cache_evictions_total %llu\n",
            (unsigned long long)computed, (unsigned long long)reused,
            computed + reused ? (double)reused / (double)(computed + reused) : 0.0,
            (unsigned long long)st->stats.kv_cached_bytes, (unsigned long long)st->stats.n_evicted_blocks);
    /* the KV arena in blocks: a prefix shared by several requests counts once in "used" */
    const pv_sched_stats_t *k = &st->stats;
    fprintf(f,
            "# HELP pensieve_kv_blocks KV arena blocks (%d positions each) by state: used (held by requests, each once), "
            "shared (of those, held by more than one), cached (held by none, reusable), free.\n"
            "# TYPE pensieve_kv_blocks gauge\n"
            "pensieve_kv_blocks{state=\"used\"} %u\npensieve_kv_blocks{state=\"shared\"} %u\n"
            "pensieve_kv_blocks{state=\"cached\"} %u\npensieve_kv_blocks{state=\"free\"} %u\n"
            "# HELP pensieve_kv_blocks_total KV arena blocks in all.\n"
            "# TYPE pensieve_kv_blocks_total gauge\npensieve_kv_blocks_total %u\n",
            PV_KV_BLOCK, k->kv_blocks_used, k->kv_blocks_shared, k->kv_blocks_cached,
            k->kv_blocks - k->kv_blocks_used - k->kv_blocks_cached, k->kv_blocks);
    hist_render(f, "pensieve_time_to_first_token_seconds", "Time from submission to the first generated token.",
                &m->ttft);
    hist_render(f, "pensieve_token_latency_seconds", "Time per generated token after the first.",
                &m->token_latency);
    if (fclose(f)) {
        free(out);
        return NULL;
    }
    return out;
}

json_t *pv_health_json(const pv_server_state_t *st) {
    uint64_t avail = st->mem.available_bytes == UINT64_MAX ? 0 : st->mem.available_bytes;
    const pv_sched_stats_t *k = &st->stats;
    return json_pack("{s:s, s:s, s:{s:i, s:i}, s:{s:i, s:i}, s:{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b},"
                     " s:{s:i, s:I, s:I, s:I, s:I, s:I}}", "status",
                     st->status, "model", st->model, "slots", "busy", st->stats.n_busy, "total", st->stats.n_slots,
                     "queue", "length", st->stats.n_queued, "limit", st->stats.queue_limit, "memory", "status",
                     pv_mem_status_name(st->mem_status), "available_bytes", (json_int_t)avail, "rss_bytes",
                     (json_int_t)st->mem.rss_bytes, "kv_used_bytes", (json_int_t)st->stats.kv_used_bytes,
                     "kv_budget_bytes", (json_int_t)st->stats.kv_bytes, "kv_cached_bytes",
                     (json_int_t)st->stats.kv_cached_bytes, "weights_bytes",
                     (json_int_t)st->weights_bytes, "accepting_requests", st->accepting, "kv_blocks",
                     "positions_per_block", PV_KV_BLOCK, "total", (json_int_t)k->kv_blocks, "used",
                     (json_int_t)k->kv_blocks_used, "shared", (json_int_t)k->kv_blocks_shared, "cached",
                     (json_int_t)k->kv_blocks_cached, "free",
                     (json_int_t)(k->kv_blocks - k->kv_blocks_used - k->kv_blocks_cached));
}
