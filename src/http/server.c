/* server.c - evhttp routes, limits, auth, streaming, disconnects, shutdown.
 *
 * A generation request (/v1/messages, /v1/chat/completions, /v1/completions)
 * is parsed by its API module into API-neutral terms (gen_t) and becomes an hreq_t (owned by the loop thread) that
 * holds a pv_req_t reference. The scheduler's notify queues the pv_req_t on
 * the server's ready list and wakes the loop; the loop polls it and writes
 * SSE events (stream) or collects the text (non-stream); when the request
 * offered tools, the text first goes through the tool-call parser of the
 * model's syntax (api/toolcall.h), whose calls become tool_use blocks or
 * tool_calls. The hreq lives until
 * the scheduler reports the request done, even when its client left: a
 * client that leaves only cancels. Disconnects are seen by the connection's
 * close callback and, every PV_CHECK_MS, by a recv(MSG_PEEK) on the socket. */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "api/anthropic.h"
#include "api/metrics.h"
#include "api/openai.h"
#include "api/toolcall.h"
#include "base/err.h"
#include "http/sse.h"

#define PV_CHECK_MS 200 /* disconnect checks and pings */

typedef struct hreq hreq_t;

/* The response shapes: one row of api_traits per API (see the table below). */
typedef enum { API_ANTHROPIC = 0, API_OAI_CHAT, API_OAI_TEXT, API_COUNT } api_t;

typedef struct {
    struct evhttp_connection *evcon; /* the connection (NULL: free entry) */
    hreq_t *cur;                     /* the generation it is waiting for, if any */
} conn_t;

struct hreq {
    pv_server_t *srv;             /* owner */
    struct evhttp_request *ev;    /* libevent's request; still ours to finish (reply) */
    conn_t *conn;                 /* its connection entry, NULL once the client left */
    pv_req_t *req;                /* our reference */
    api_t api;                    /* which API's shapes it answers in */
    int stream;                   /* SSE response */
    int include_usage;            /* OpenAI stream: a usage chunk before [DONE] */
    int gone;                     /* the client left: finish silently */
    char id[40];                  /* msg_..., chatcmpl-..., cmpl-... */
    long long created;            /* Unix seconds at submission (OpenAI's "created") */
    char model[256];              /* the model name echoed back */
    int n_prompt;                 /* prompt tokens */
    int n_user_stops;             /* stop sequences of the request (implicit ones follow) */
    pv_text_t text;               /* poll buffer */
    pv_text_t all;                /* non-stream: the whole text so far */
    pv_tc_t *tc;                  /* owned: the tool-call parser when tools were offered, else NULL */
    json_t *calls;                /* non-stream: [{name, arguments}] parsed so far (owned) */
    int n_calls;                  /* tool calls parsed so far */
    int n_blocks;                 /* Anthropic stream: content blocks started */
    int text_open;                /* Anthropic stream: the last block is a text block still open */
    double t_last_write;          /* monotonic seconds of the last SSE write */
    hreq_t *next;                 /* active list */
};

struct pv_server {
    pv_server_opts_t o;             /* options (strings borrowed) */
    struct event_base *base;        /* owned */
    struct evhttp *http;            /* owned */
    struct evhttp_bound_socket *sock; /* the listening socket (owned by http) */
    int port;                       /* bound port */
    struct event *wake;             /* activated by other threads */
    struct event *tick;             /* PV_CHECK_MS timer */
    struct event *sigint, *sigterm; /* shutdown signals */
    struct event *grace;            /* grace-period timer after a signal */
    pthread_mutex_t mu;             /* guards ready, pending_*, failed */
    pv_req_t **ready;               /* [n_ready] requests with news (references) */
    int n_ready, cap_ready;         /* entries, allocated */
    const pv_model_t *pending_model; /* attach(), not yet taken by the loop */
    pv_sched_t *pending_sched;       /* attach(), not yet taken by the loop */
    int failed;                     /* loading failed */
    char fail_msg[PV_ERRLEN];       /* why */
    /* loop-thread state */
    const pv_model_t *model;        /* the model once loaded */
    pv_sched_t *sched;              /* the running scheduler once loaded */
    pv_chat_t *chat;                /* owned: its prompt renderer (template or built-in format) */
    uint64_t weights_bytes;         /* the file's size */
    long long t_created;            /* Unix seconds of start-up: /v1/models' created */
    conn_t *conns;                  /* [max_conns] */
    hreq_t *active;                 /* generations in flight */
    int n_active;                   /* their number */
    int stopping;                   /* a signal came: no new work */
    int rc;                         /* pv_server_run's result */
    pv_metrics_t metrics;           /* counters */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- replies ------------------------------------------------------------------------------ */

static void reply_json(pv_server_t *s, struct evhttp_request *ev, pv_endpoint_t ep, int status, const char *body) {
    struct evkeyvalq *h = evhttp_request_get_output_headers(ev);
    evhttp_add_header(h, "Content-Type", "application/json");
    struct evbuffer *b = evbuffer_new();
    if (b && body) evbuffer_add(b, body, strlen(body));
    const char *reason = status == 200 ? "OK" : status == 400 ? "Bad Request" : status == 401 ? "Unauthorized"
                       : status == 404 ? "Not Found" : status == 405 ? "Method Not Allowed"
                       : status == 413 ? "Payload Too Large" : status == 429 ? "Too Many Requests"
                       : status == 503 ? "Service Unavailable" : status == 529 ? "Overloaded" : "Error";
    evhttp_send_reply(ev, status, reason, b);
    if (b) evbuffer_free(b);
    pv_metrics_request(&s->metrics, ep, status);
}

/* The error body in the shape of the endpoint's API: OpenAI's on its routes,
 * Anthropic's on its own, and on the shared ones (/v1/models, unknown routes)
 * one body both SDKs read: {"type":"error","error":{"type","message","param","code"}}.
 * type is Anthropic's name; OpenAI's comes from the status. param may be NULL. */
static char *error_body(pv_endpoint_t ep, int status, const char *type, const char *msg, const char *param) {
    if (ep == PV_EP_CHAT_COMPLETIONS || ep == PV_EP_COMPLETIONS || ep == PV_EP_APPLY_TEMPLATE)
        return pv_oai_error_body(status, msg, param);
    if (ep != PV_EP_MODELS && ep != PV_EP_OTHER) return pv_anth_error_body(type, msg);
    json_t *j = json_pack("{s:s, s:{s:s, s:s, s:n, s:n}}", "type", "error", "error", "type", type, "message", msg,
                          "param", "code");
    char *b = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return b;
}

static void reply_error_param(pv_server_t *s, struct evhttp_request *ev, pv_endpoint_t ep, int status,
                              const char *type, const char *msg, const char *param) {
    char *body = error_body(ep, status, type, msg, param);
    reply_json(s, ev, ep, status, body ? body : "{\"type\":\"error\"}");
    free(body);
}

static void reply_error(pv_server_t *s, struct evhttp_request *ev, pv_endpoint_t ep, int status, const char *type,
                        const char *msg) {
    reply_error_param(s, ev, ep, status, type, msg, NULL);
}

static void reply_obj(pv_server_t *s, struct evhttp_request *ev, pv_endpoint_t ep, int status, json_t *j) {
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!body) {
        reply_error(s, ev, ep, 500, "api_error", "out of memory");
        return;
    }
    reply_json(s, ev, ep, status, body);
    free(body);
}

/* ---- state for /health and /metrics ------------------------------------------------------- */

static void server_state(pv_server_t *s, pv_server_state_t *st) {
    memset(st, 0, sizeof *st);
    st->model = s->o.model_name;
    st->ready = s->sched != NULL;
    if (s->sched) pv_sched_stats(s->sched, &st->stats);
    pv_meminfo_read(&st->mem);
    st->mem_status = pv_mem_classify(&s->o.tiers, st->mem.available_bytes);
    st->weights_bytes = s->weights_bytes;
    st->accepting = st->ready && !s->stopping && st->mem_status < PV_MEM_CRITICAL;
    st->status = !st->ready ? "loading" : st->accepting ? "ok" : "degraded";
}

/* ---- connections -------------------------------------------------------------------------- */

static void conn_closed(struct evhttp_connection *evcon, void *arg) {
    conn_t *c = arg;
    hreq_t *h = c->cur;
    if (h) { /* the client left while we were generating for it: cancel, finish silently later */
        h->gone = 1;
        h->conn = NULL;
        pv_req_cancel(h->req);
        h->srv->metrics.cancelled++;
    }
    c->evcon = NULL;
    c->cur = NULL;
}

/* The entry for ev's connection (new when first seen; NULL when full). */
static conn_t *conn_get(pv_server_t *s, struct evhttp_request *ev) {
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
    conn_t *free_e = NULL;
    for (int i = 0; i < s->o.max_conns; i++) {
        if (s->conns[i].evcon == evcon) return &s->conns[i];
        if (!s->conns[i].evcon && !free_e) free_e = &s->conns[i];
    }
    if (!free_e) return NULL;
    free_e->evcon = evcon;
    free_e->cur = NULL;
    evhttp_connection_set_closecb(evcon, conn_closed, free_e);
    return free_e;
}

/* ---- generation requests ------------------------------------------------------------------ */

/* Shutting down with nothing left to run: the last replies may still sit in
 * their connections' output buffers, so the loop ends a moment later, when
 * evhttp has had the chance to write them. */
static void exit_after_drain(pv_server_t *s) {
    struct timeval tv = {0, 250000};
    event_base_loopexit(s->base, &tv);
}

static void hreq_free(hreq_t *h) {
    pv_server_t *s = h->srv;
    for (hreq_t **p = &s->active; *p; p = &(*p)->next)
        if (*p == h) {
            *p = h->next;
            s->n_active--;
            break;
        }
    if (h->conn) h->conn->cur = NULL;
    pv_req_unref(h->req);
    pv_text_free(&h->text);
    pv_text_free(&h->all);
    pv_tc_free(h->tc);
    json_decref(h->calls);
    free(h);
    if (s->stopping && s->n_active == 0) exit_after_drain(s);
}

/* Writes one SSE event (event NULL: a bare data line; steals data). */
static void sse_send(hreq_t *h, const char *event, json_t *data) {
    if (!h->gone && data) {
        struct evbuffer *b = evbuffer_new();
        if (b && !pv_sse_event(b, event, data)) evhttp_send_reply_chunk(h->ev, b);
        if (b) evbuffer_free(b);
        h->t_last_write = now_s();
    }
    json_decref(data);
}

/* Writes raw SSE text (an OpenAI ping comment, "data: [DONE]"). */
static void sse_raw(hreq_t *h, const char *text) {
    if (h->gone) return;
    struct evbuffer *b = evbuffer_new();
    if (b && !evbuffer_add(b, text, strlen(text))) evhttp_send_reply_chunk(h->ev, b);
    if (b) evbuffer_free(b);
    h->t_last_write = now_s();
}

/* ---- the APIs' response shapes ------------------------------------------------------------ */

/* How one generation ends, in API-neutral terms. */
typedef struct {
    const pv_req_status_t *st; /* the final status */
    pv_stop_t stop;            /* its stop, the format's implicit stop sequence mapped to END_TURN */
    const char *stop_seq;      /* the user's stop sequence that matched, or NULL */
    const char *text;          /* non-stream: the whole text (nul-terminated) */
    size_t len;                /* its length */
    int n_calls;               /* tool calls parsed from the output: the turn ends for them */
    const json_t *calls;       /* non-stream: [{name, arguments}] */
} gen_end_t;

/* Per-API behaviour of a generation request; indexed by api_t. */
typedef struct {
    pv_endpoint_t ep;                                /* metrics, and the error shape */
    void (*start)(hreq_t *h);                        /* a stream's opening events */
    void (*delta)(hreq_t *h, const char *text, size_t len); /* a stream's new text */
    void (*call)(hreq_t *h, const char *name, const char *args); /* a stream's tool call (args: JSON) */
    void (*ping)(hreq_t *h);                         /* a stream's keep-alive */
    void (*end)(hreq_t *h, const gen_end_t *e);      /* a stream's closing events */
    void (*fail)(hreq_t *h, int status, const char *type, const char *msg); /* a stream's error event */
    json_t *(*whole)(hreq_t *h, const gen_end_t *e); /* the non-streaming response */
} api_traits_t;

static void anth_ping(hreq_t *h) { sse_send(h, "ping", json_pack("{s:s}", "type", "ping")); }

/* A tool call's id: the response's id, the call's number ("toolu_...", "call_..."). */
static void call_id(const hreq_t *h, int k, char *buf, size_t len) {
    const char *hex = strrchr(h->id, '_') ? strrchr(h->id, '_') + 1 : strrchr(h->id, '-') ? strrchr(h->id, '-') + 1 : h->id;
    snprintf(buf, len, "%s%s%02d", h->api == API_ANTHROPIC ? "toolu_" : "call_", hex, k);
}

static void anth_block_stop(hreq_t *h) {
    sse_send(h, "content_block_stop", json_pack("{s:s, s:i}", "type", "content_block_stop", "index", h->n_blocks - 1));
    h->text_open = 0;
}

static void anth_text_open(hreq_t *h) {
    sse_send(h, "content_block_start", json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_start", "index",
                                                 h->n_blocks++, "content_block", "type", "text", "text", ""));
    h->text_open = 1;
}

/* With tools, blocks open as the output comes (text, tool_use, text...); without, one text block at once. */
static void anth_start(hreq_t *h) {
    sse_send(h, "message_start", json_pack("{s:s, s:o}", "type", "message_start", "message",
                                           pv_anth_message_start(h->id, h->model, h->n_prompt)));
    if (!h->tc) anth_text_open(h);
    anth_ping(h);
}

static void anth_delta(hreq_t *h, const char *text, size_t len) {
    if (!h->text_open) anth_text_open(h);
    sse_send(h, "content_block_delta", json_pack("{s:s, s:i, s:{s:s, s:s%}}", "type", "content_block_delta", "index",
                                                 h->n_blocks - 1, "delta", "type", "text_delta", "text", text, len));
}

/* A tool_use block: its start (input {}), the input as one input_json_delta, its stop. */
static void anth_call(hreq_t *h, const char *name, const char *args) {
    char id[64];
    call_id(h, h->n_calls - 1, id, sizeof id);
    if (h->text_open) anth_block_stop(h);
    sse_send(h, "content_block_start",
             json_pack("{s:s, s:i, s:{s:s, s:s, s:s, s:{}}}", "type", "content_block_start", "index", h->n_blocks++,
                       "content_block", "type", "tool_use", "id", id, "name", name, "input"));
    sse_send(h, "content_block_delta", json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_delta", "index",
                                                 h->n_blocks - 1, "delta", "type", "input_json_delta", "partial_json", args));
    anth_block_stop(h);
}

static void anth_end(hreq_t *h, const gen_end_t *e) {
    if (h->text_open) anth_block_stop(h);
    sse_send(h, "message_delta",
             json_pack("{s:s, s:{s:s, s:o}, s:o}", "type", "message_delta", "delta", "stop_reason",
                       e->n_calls ? "tool_use" : pv_anth_stop_reason(e->stop), "stop_sequence",
                       e->stop_seq && !e->n_calls ? json_string(e->stop_seq) : json_null(), "usage",
                       pv_anth_usage(e->st->n_prompt, e->st->n_cached, e->st->n_gen)));
    sse_send(h, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

static void anth_fail(hreq_t *h, int status, const char *type, const char *msg) {
    sse_send(h, "error", json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", type, "message", msg));
}

/* The whole reply's calls appended to arr, each in the API's shape (mk: id, name, arguments). */
static void append_calls(const hreq_t *h, const gen_end_t *e, json_t *arr,
                         json_t *(*mk)(const char *id, const char *name, const char *args)) {
    size_t i;
    const json_t *c;
    json_array_foreach(e->calls, i, c) {
        char id[64];
        call_id(h, (int)i, id, sizeof id);
        json_array_append_new(arr, mk(id, json_string_value(json_object_get(c, "name")),
                                      json_string_value(json_object_get(c, "arguments"))));
    }
}

static json_t *anth_whole(hreq_t *h, const gen_end_t *e) {
    json_t *j = pv_anth_message(h->id, h->model, e->text, e->len, e->n_calls ? "tool_use" : pv_anth_stop_reason(e->stop),
                                e->n_calls ? NULL : e->stop_seq, e->st->n_prompt, e->st->n_cached, e->st->n_gen);
    append_calls(h, e, json_object_get(j, "content"), pv_anth_tool_use);
    return j;
}

static pv_oai_meta_t oai_meta(const hreq_t *h) {
    return (pv_oai_meta_t){.kind = h->api == API_OAI_TEXT ? PV_OAI_TEXT : PV_OAI_CHAT, .id = h->id,
                           .created = h->created, .model = h->model, .include_usage = h->include_usage};
}

static void oai_start(hreq_t *h) {
    pv_oai_meta_t m = oai_meta(h);
    if (m.kind == PV_OAI_CHAT) sse_send(h, NULL, pv_oai_chunk(&m, 1, NULL, 0, NULL)); /* the role */
}

static void oai_delta(hreq_t *h, const char *text, size_t len) {
    pv_oai_meta_t m = oai_meta(h);
    sse_send(h, NULL, pv_oai_chunk(&m, 0, text, len, NULL));
}

static void oai_call(hreq_t *h, const char *name, const char *args) {
    pv_oai_meta_t m = oai_meta(h);
    char id[64];
    call_id(h, h->n_calls - 1, id, sizeof id);
    sse_send(h, NULL, pv_oai_call_chunk(&m, h->n_calls - 1, id, name, args));
}

static void oai_ping(hreq_t *h) { sse_raw(h, ": ping\n\n"); } /* a comment: SDKs skip it */

static void oai_end(hreq_t *h, const gen_end_t *e) {
    pv_oai_meta_t m = oai_meta(h);
    sse_send(h, NULL, pv_oai_chunk(&m, 0, NULL, 0, e->n_calls ? "tool_calls" : pv_oai_finish_reason(e->stop)));
    if (h->include_usage) sse_send(h, NULL, pv_oai_usage_chunk(&m, e->st->n_prompt, e->st->n_cached, e->st->n_gen));
    sse_raw(h, "data: [DONE]\n\n");
}

static void oai_fail(hreq_t *h, int status, const char *type, const char *msg) {
    sse_send(h, NULL, pv_oai_error(status, msg, NULL));
    sse_raw(h, "data: [DONE]\n\n");
}

static json_t *oai_whole(hreq_t *h, const gen_end_t *e) {
    pv_oai_meta_t m = oai_meta(h);
    json_t *j = pv_oai_response(&m, e->text, e->len, e->n_calls ? "tool_calls" : pv_oai_finish_reason(e->stop),
                                e->st->n_prompt, e->st->n_cached, e->st->n_gen);
    json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    if (msg && e->n_calls) {
        json_t *calls = json_array();
        append_calls(h, e, calls, pv_oai_tool_call);
        json_object_set_new(msg, "tool_calls", calls);
        if (!e->len) json_object_set_new(msg, "content", json_null());
    }
    return j;
}

static const api_traits_t api_traits[API_COUNT] = {
    [API_ANTHROPIC] = {.ep = PV_EP_MESSAGES, .start = anth_start, .delta = anth_delta, .call = anth_call, .ping = anth_ping,
                       .end = anth_end, .fail = anth_fail, .whole = anth_whole},
    [API_OAI_CHAT] = {.ep = PV_EP_CHAT_COMPLETIONS, .start = oai_start, .delta = oai_delta, .call = oai_call, .ping = oai_ping,
                      .end = oai_end, .fail = oai_fail, .whole = oai_whole},
    [API_OAI_TEXT] = {.ep = PV_EP_COMPLETIONS, .start = oai_start, .delta = oai_delta, .call = oai_call, .ping = oai_ping,
                      .end = oai_end, .fail = oai_fail, .whole = oai_whole},
};

/* ---- generation requests: streaming and collecting ---------------------------------------- */

static void stream_start(hreq_t *h) {
    struct evkeyvalq *hd = evhttp_request_get_output_headers(h->ev);
    evhttp_add_header(hd, "Content-Type", "text/event-stream");
    evhttp_add_header(hd, "Cache-Control", "no-cache");
    evhttp_send_reply_start(h->ev, 200, "OK");
    pv_metrics_request(&h->srv->metrics, api_traits[h->api].ep, 200);
    api_traits[h->api].start(h);
}

/* Output text, after the tool-call parser when there is one. */
static void out_text(void *ud, const char *t, size_t len) {
    hreq_t *h = ud;
    if (h->stream) api_traits[h->api].delta(h, t, len);
    else pv_text_append(&h->all, t, len);
}

static void out_call(void *ud, const char *name, const char *args) {
    hreq_t *h = ud;
    h->n_calls++;
    if (h->stream) api_traits[h->api].call(h, name, args);
    else if (h->calls || (h->calls = json_array()))
        json_array_append_new(h->calls, json_pack("{s:s, s:s}", "name", name, "arguments", args));
}

/* Polls the scheduler's output for h and writes it; finishes h when done. */
static void hreq_pump(hreq_t *h) {
    pv_server_t *s = h->srv;
    const api_traits_t *api = &api_traits[h->api];
    pv_req_status_t st;
    pv_req_poll(h->req, &st, &h->text);
    const pv_tc_sink_t sink = {out_text, out_call, h};
    size_t from = 0;
    for (int i = 0; i <= h->text.n_pieces; i++) { /* a delta per token's text, however many came since the last poll */
        size_t to = i < h->text.n_pieces ? h->text.ends[i] : h->text.len;
        if (to == from) continue;
        const char *piece = h->text.p + from;
        if (!h->tc) out_text(h, piece, to - from);
        else if (pv_tc_feed(h->tc, piece, to - from, &sink)) { /* out of memory: the rest as plain text */
            pv_tc_free(h->tc);
            h->tc = NULL;
            out_text(h, piece, to - from);
        }
        from = to;
    }
    if (!st.done) return;
    if (h->tc && st.stop != PV_STOP_CANCELLED && st.stop != PV_STOP_ERROR) pv_tc_finish(h->tc, &sink);
    /* the end */
    if (st.t_first_s >= 0) {
        pv_hist_observe(&s->metrics.ttft, st.t_first_s, 1);
        if (st.n_gen > 1) pv_hist_observe(&s->metrics.token_latency, st.t_gen_s / (st.n_gen - 1), (uint64_t)st.n_gen - 1);
    }
    s->metrics.tokens_in += (uint64_t)st.n_prompt;
    s->metrics.tokens_out += (uint64_t)st.n_gen;
    gen_end_t e = {.st = &st, .stop = st.stop, .text = h->all.p ? h->all.p : "", .len = h->all.len,
                   .n_calls = h->n_calls, .calls = h->calls};
    if (e.stop == PV_STOP_SEQUENCE) {
        if (st.stop_index < h->n_user_stops) e.stop_seq = pv_req_stop_sequence(h->req, st.stop_index);
        else e.stop = PV_STOP_END_TURN; /* the format's implicit stop: the turn ended */
    }
    if (h->conn) h->conn->cur = NULL; /* keep-alive: the connection is free for its next request */
    if (e.stop == PV_STOP_CANCELLED || e.stop == PV_STOP_ERROR) {
        const char *type = e.stop == PV_STOP_ERROR ? "api_error" : "overloaded_error";
        const char *msg = e.stop == PV_STOP_ERROR ? st.error : "the request was cancelled (server shutting down)";
        int status = e.stop == PV_STOP_ERROR ? 500 : 503;
        if (h->stream) {
            api->fail(h, status, type, msg);
            evhttp_send_reply_end(h->ev);
        } else if (h->gone) {
            evhttp_send_reply(h->ev, 499, "Client Closed Request", NULL);
        } else
            reply_error(s, h->ev, api->ep, status, type, msg);
    } else if (h->stream) {
        api->end(h, &e);
        evhttp_send_reply_end(h->ev);
    } else {
        reply_obj(s, h->ev, api->ep, 200, api->whole(h, &e));
    }
    hreq_free(h);
}

/* ---- routes ------------------------------------------------------------------------------- */

/* Constant-time comparison of the presented key with ours. */
static int key_ok(const char *want, const char *got) {
    if (!got) return 0;
    size_t lw = strlen(want), lg = strlen(got);
    unsigned char d = lw != lg;
    for (size_t i = 0; i < lw; i++) d |= (unsigned char)want[i] ^ (unsigned char)(i < lg ? got[i] : 0);
    return d == 0;
}

static int authorized(pv_server_t *s, struct evhttp_request *ev) {
    if (!s->o.api_key || !*s->o.api_key) return 1;
    struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
    const char *k = evhttp_find_header(h, "x-api-key");
    if (k && key_ok(s->o.api_key, k)) return 1;
    const char *a = evhttp_find_header(h, "authorization");
    return a && !strncasecmp(a, "Bearer ", 7) && key_ok(s->o.api_key, a + 7);
}

/* Body as a nul-terminated string (owned), or NULL after replying 413. */
static char *read_body(pv_server_t *s, struct evhttp_request *ev, pv_endpoint_t ep, size_t *len) {
    struct evbuffer *in = evhttp_request_get_input_buffer(ev);
    size_t n = evbuffer_get_length(in);
    if (n > s->o.max_body) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body of %zu bytes exceeds the limit of %zu bytes", n, s->o.max_body);
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Connection", "close");
        reply_error(s, ev, ep, 413, "request_too_large", msg);
        return NULL;
    }
    char *b = malloc(n + 1);
    if (!b) {
        reply_error(s, ev, ep, 500, "api_error", "out of memory");
        return NULL;
    }
    evbuffer_remove(in, b, n);
    b[n] = 0;
    *len = n;
    return b;
}

/* Refuses new work while loading, shutting down, or short of memory; 1 if refused. */
static int gate(pv_server_t *s, struct evhttp_request *ev, pv_endpoint_t ep) {
    if (!s->sched) {
        reply_error(s, ev, ep, 503, "overloaded_error", "the model is loading");
        return 1;
    }
    if (s->stopping) {
        reply_error(s, ev, ep, 503, "overloaded_error", "the server is shutting down");
        return 1;
    }
    pv_meminfo_t mi;
    pv_meminfo_read(&mi);
    pv_mem_status_t ms = pv_mem_classify(&s->o.tiers, mi.available_bytes);
    if (ms >= PV_MEM_CRITICAL) {
        char v[32], msg[160];
        struct evkeyvalq *h = evhttp_request_get_output_headers(ev);
        evhttp_add_header(h, "x-memory-status", pv_mem_status_name(ms));
        snprintf(v, sizeof v, "%llu", (unsigned long long)mi.available_bytes);
        evhttp_add_header(h, "x-available-memory-bytes", v);
        evhttp_add_header(h, "Retry-After", "5");
        snprintf(msg, sizeof msg, "memory is %s (%llu MB available): try again later", pv_mem_status_name(ms),
                 (unsigned long long)(mi.available_bytes >> 20));
        reply_error(s, ev, ep, 503, "overloaded_error", msg);
        return 1;
    }
    return 0;
}

/* The prompt's tokens (owned) into *toks; 0, or -1 after replying. */
static int tokenize_prompt(pv_server_t *s, struct evhttp_request *ev, pv_endpoint_t ep, const char *prompt,
                           int32_t **toks, int *n_toks) {
    const pv_vocab_t *v = s->model->vocab;
    unsigned flags = pv_chat_tok_flags(s->chat, prompt);
    size_t plen = strlen(prompt);
    int cap = (int)(plen + 8 < (1u << 28) ? plen + 8 : 1u << 28);
    *toks = malloc((size_t)cap * sizeof **toks);
    int n = *toks ? pv_chat_tokenize(s->chat, v, prompt, flags, *toks, cap) : PV_TOK_FAILED;
    if (n < 0) {
        free(*toks);
        *toks = NULL;
        reply_error(s, ev, ep, 500, "api_error", "cannot tokenize the prompt");
        return -1;
    }
    *n_toks = n;
    return 0;
}

/* Parses an Anthropic body and tokenizes its prompt; 0, or -1 after replying. */
static int prepare(pv_server_t *s, struct evhttp_request *ev, pv_endpoint_t ep, int count_only, pv_anth_req_t *ar,
                   int32_t **toks, int *n_toks) {
    size_t len = 0;
    char *body = read_body(s, ev, ep, &len);
    if (!body) return -1;
    char err[PV_ERRLEN];
    int rc = pv_anth_parse(body, len, s->chat, count_only, ar, err, sizeof err);
    free(body);
    if (rc) {
        reply_error(s, ev, ep, 400, "invalid_request_error", err);
        return -1;
    }
    if (tokenize_prompt(s, ev, ep, ar->prompt, toks, n_toks)) {
        pv_api_req_close(ar);
        return -1;
    }
    return 0;
}

/* A parsed generation request in API-neutral terms (everything borrowed). */
typedef struct {
    api_t api;                     /* whose shapes answer it */
    const char *model;             /* the name echoed back */
    const int32_t *toks;           /* [n] prompt tokens */
    int n;                         /* prompt tokens */
    int max_tokens;                /* 0: as many as the context leaves */
    const pv_sampler_params_t *sp; /* sampling */
    char *const *stops;            /* [n_stops] the request's stop sequences */
    int n_stops;                   /* how many */
    int chat;                      /* a rendered chat prompt: the format's implicit stop applies */
    int tools;                     /* tools were offered: the output is parsed for tool calls */
    int forced_call;               /* the output is constrained to one call in the generic JSON syntax */
    pv_gram_t *gram;               /* the output's constraint (owned: start_generation takes it), or NULL */
    int stream;                    /* SSE */
    int include_usage;             /* OpenAI stream: the usage chunk */
} gen_t;

/* Checks the prompt against the context, submits it to the scheduler and
 * registers the hreq (starting the stream); every failure is replied to.
 * Takes g->gram. A forced call is read back with the generic JSON tool-call
 * parser, whatever the model's own syntax (api/constrain.h says why). */
static void start_generation(pv_server_t *s, struct evhttp_request *ev, const gen_t *g) {
    const pv_endpoint_t ep = api_traits[g->api].ep;
    uint32_t n_ctx = pv_sched_n_ctx(s->sched);
    hreq_t *h = NULL;
    pv_req_t *r = NULL;
    char msg[200];
    if (g->n == 0 || (uint32_t)g->n >= n_ctx) {
        snprintf(msg, sizeof msg, "prompt is too long: %d tokens > %u maximum", g->n, n_ctx - 1);
        reply_error_param(s, ev, ep, 400, "invalid_request_error", g->n ? msg : "the prompt is empty",
                          g->api == API_ANTHROPIC ? NULL : g->chat ? "messages" : "prompt");
        pv_gram_free(g->gram);
        return;
    }
    int max_tokens = g->max_tokens, room = (int)(n_ctx - (uint32_t)g->n);
    if (max_tokens <= 0 || max_tokens > room) max_tokens = room; /* clamp */
    const char *stops[PV_SCHED_MAX_STOPS];
    int n_stops = 0;
    for (int i = 0; i < g->n_stops && n_stops < PV_SCHED_MAX_STOPS - 1; i++) stops[n_stops++] = g->stops[i];
    int n_user_stops = n_stops;
    if (g->chat && pv_chat_stop(s->chat)) stops[n_stops++] = pv_chat_stop(s->chat);
    pv_gram_t *gram = g->gram;
    r = pv_req_new(g->toks, g->n, max_tokens, g->sp, stops, n_stops);
    if (r) pv_req_set_grammar(r, gram);
    else pv_gram_free(gram);
    h = calloc(1, sizeof *h);
    int tools = g->tools || g->forced_call;
    pv_tc_t *tc = tools ? pv_tc_new(g->forced_call ? PV_TC_JSON : pv_chat_tool_family(s->chat)) : NULL;
    if (tools && !tc) {
        reply_error(s, ev, ep, 500, "api_error", "out of memory");
        goto done;
    }
    conn_t *c = conn_get(s, ev);
    if (!r || !h) {
        reply_error(s, ev, ep, 500, "api_error", "out of memory");
        goto done;
    }
    if (!c) {
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Connection", "close");
        reply_error(s, ev, ep, 503, "overloaded_error", "too many connections");
        goto done;
    }
    int rc = pv_sched_submit(s->sched, r);
    if (rc == PV_SCHED_EFULL) {
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Retry-After", "1");
        reply_error(s, ev, ep, 429, "rate_limit_error", "all slots are busy and the queue is full; retry later");
        goto done;
    } else if (rc) {
        reply_error(s, ev, ep, 503, "overloaded_error", "the server is shutting down");
        goto done;
    }
    *h = (hreq_t){.srv = s, .ev = ev, .conn = c, .req = r, .api = g->api, .stream = g->stream,
                  .include_usage = g->include_usage, .created = (long long)time(NULL), .n_prompt = g->n,
                  .n_user_stops = n_user_stops, .t_last_write = now_s(), .next = s->active, .tc = tc};
    r = NULL;
    tc = NULL;
    if (g->api == API_ANTHROPIC) pv_anth_new_id(h->id, sizeof h->id);
    else pv_oai_new_id(g->api == API_OAI_TEXT ? PV_OAI_TEXT : PV_OAI_CHAT, h->id, sizeof h->id);
    snprintf(h->model, sizeof h->model, "%s", g->model);
    c->cur = h;
    s->active = h;
    s->n_active++;
    if (h->stream) stream_start(h);
    h = NULL;
done:
    free(h);
    pv_tc_free(tc);
    pv_req_unref(r);
}

static void route_messages(pv_server_t *s, struct evhttp_request *ev) {
    const pv_endpoint_t ep = PV_EP_MESSAGES;
    if (gate(s, ev, ep)) return;
    pv_anth_req_t ar;
    int32_t *toks = NULL;
    int n = 0;
    if (prepare(s, ev, ep, 0, &ar, &toks, &n)) return;
    start_generation(s, ev,
                     &(gen_t){.api = API_ANTHROPIC, .model = ar.model, .toks = toks, .n = n, .max_tokens = ar.max_tokens,
                              .sp = &ar.sp, .stops = ar.stops, .n_stops = ar.n_stops, .chat = 1, .tools = ar.n_tools > 0,
                              .forced_call = ar.forced_call, .gram = ar.gram, .stream = ar.stream});
    ar.gram = NULL; /* start_generation took it */
    free(toks);
    pv_api_req_close(&ar);
}

/* POST /v1/chat/completions and /v1/completions. */
static void route_openai(pv_server_t *s, struct evhttp_request *ev, pv_oai_kind_t kind) {
    const pv_endpoint_t ep = kind == PV_OAI_CHAT ? PV_EP_CHAT_COMPLETIONS : PV_EP_COMPLETIONS;
    if (gate(s, ev, ep)) return;
    size_t len = 0;
    char *body = read_body(s, ev, ep, &len);
    if (!body) return;
    pv_oai_req_t orq;
    pv_oai_err_t err;
    int rc = pv_oai_parse(body, len, kind, s->chat, &orq, &err);
    free(body);
    if (rc) {
        reply_error_param(s, ev, ep, 400, "invalid_request_error", err.msg, err.param);
        return;
    }
    int32_t *toks = NULL;
    int n = 0;
    if (!tokenize_prompt(s, ev, ep, orq.prompt, &toks, &n)) {
        start_generation(s, ev,
                         &(gen_t){.api = kind == PV_OAI_CHAT ? API_OAI_CHAT : API_OAI_TEXT, .model = orq.model,
                                  .toks = toks, .n = n, .max_tokens = orq.max_tokens, .sp = &orq.sp,
                                  .stops = orq.stops, .n_stops = orq.n_stops, .chat = kind == PV_OAI_CHAT,
                                  .tools = orq.n_tools > 0, .forced_call = orq.forced_call, .gram = orq.gram,
                                  .stream = orq.stream, .include_usage = orq.include_usage});
        orq.gram = NULL; /* start_generation took it */
    }
    free(toks);
    pv_api_req_close(&orq);
}

/* POST /apply-template: {"prompt": the text /v1/chat/completions would feed the
 * model for this body, "prompt_tokens": its length in tokens}; no generation. */
static void route_apply_template(pv_server_t *s, struct evhttp_request *ev) {
    const pv_endpoint_t ep = PV_EP_APPLY_TEMPLATE;
    if (!s->sched) {
        reply_error(s, ev, ep, 503, "overloaded_error", "the model is loading");
        return;
    }
    size_t len = 0;
    char *body = read_body(s, ev, ep, &len);
    if (!body) return;
    char *prompt = NULL;
    pv_oai_err_t err;
    int rc = pv_oai_apply_template(body, len, s->chat, &prompt, &err);
    free(body);
    if (rc) {
        reply_error_param(s, ev, ep, 400, "invalid_request_error", err.msg, err.param);
        return;
    }
    int32_t *toks = NULL;
    int n = 0;
    if (!tokenize_prompt(s, ev, ep, prompt, &toks, &n)) {
        size_t plen = pv_chat_unframe(prompt);
        reply_obj(s, ev, ep, 200, json_pack("{s:s%, s:i}", "prompt", prompt, plen, "prompt_tokens", n));
    }
    free(toks);
    free(prompt);
}

static void route_count_tokens(pv_server_t *s, struct evhttp_request *ev) {
    const pv_endpoint_t ep = PV_EP_COUNT_TOKENS;
    if (!s->sched) {
        reply_error(s, ev, ep, 503, "overloaded_error", "the model is loading");
        return;
    }
    pv_anth_req_t ar;
    int32_t *toks = NULL;
    int n = 0;
    if (prepare(s, ev, ep, 1, &ar, &toks, &n)) return;
    reply_obj(s, ev, ep, 200, json_pack("{s:i}", "input_tokens", n));
    free(toks);
    pv_api_req_close(&ar);
}

/* The served model in both SDKs' terms: Anthropic's (type, id, display_name,
 * created_at) and OpenAI's (id, object, created, owned_by). */
static json_t *model_obj(pv_server_t *s) {
    const char *name = s->o.model_name;
    char iso[32];
    struct tm tm;
    time_t t = (time_t)s->t_created;
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "id", name, "type", "model", "display_name", name,
                     "created_at", iso, "object", "model", "created", (json_int_t)s->t_created, "owned_by", "pensieve");
}

/* GET /v1/models: the list (Anthropic's paging fields and OpenAI's "object":"list");
 * GET /v1/models/ID: that model, or 404. */
static void route_models(pv_server_t *s, struct evhttp_request *ev, const char *path) {
    const char *name = s->o.model_name;
    if (strlen(path) > 11) {
        if (strcmp(path + 11, name)) {
            char msg[200];
            snprintf(msg, sizeof msg, "model not found: %s (this server serves %s)", path + 11, name);
            reply_error(s, ev, PV_EP_MODELS, 404, "not_found_error", msg);
        } else
            reply_obj(s, ev, PV_EP_MODELS, 200, model_obj(s));
        return;
    }
    reply_obj(s, ev, PV_EP_MODELS, 200,
              json_pack("{s:s, s:[o], s:b, s:s, s:s}", "object", "list", "data", model_obj(s), "has_more", 0,
                        "first_id", name, "last_id", name));
}

static void route_health(pv_server_t *s, struct evhttp_request *ev) {
    pv_server_state_t st;
    server_state(s, &st);
    reply_obj(s, ev, PV_EP_HEALTH, st.ready ? 200 : 503, pv_health_json(&st));
}

static void route_metrics(pv_server_t *s, struct evhttp_request *ev) {
    pv_server_state_t st;
    server_state(s, &st);
    pv_metrics_request(&s->metrics, PV_EP_METRICS, 200); /* counts itself */
    char *text = pv_metrics_render(&s->metrics, &st);
    struct evbuffer *b = evbuffer_new();
    if (!text || !b) {
        s->metrics.requests[PV_EP_METRICS][200]--;
        reply_error(s, ev, PV_EP_METRICS, 500, "api_error", "out of memory");
    } else {
        evbuffer_add(b, text, strlen(text));
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Content-Type", "text/plain; version=0.0.4");
        evhttp_send_reply(ev, 200, "OK", b);
    }
    if (b) evbuffer_free(b);
    free(text);
}

static void on_request(struct evhttp_request *ev, void *arg) {
    pv_server_t *s = arg;
    const char *uri = evhttp_request_get_uri(ev);
    size_t plen = strcspn(uri ? uri : "", "?#");
    char path[128];
    if (plen >= sizeof path) plen = sizeof path - 1;
    memcpy(path, uri ? uri : "", plen);
    path[plen] = 0;
    while (plen > 1 && path[plen - 1] == '/') path[--plen] = 0; /* "/v1/messages/" routes too */
    enum evhttp_cmd_type cmd = evhttp_request_get_command(ev);
    int is_get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD, is_post = cmd == EVHTTP_REQ_POST;
    pv_endpoint_t ep = !strcmp(path, "/v1/messages")                ? PV_EP_MESSAGES
                       : !strcmp(path, "/v1/messages/count_tokens") ? PV_EP_COUNT_TOKENS
                       : !strcmp(path, "/v1/models")                ? PV_EP_MODELS
                       : !strcmp(path, "/health")                   ? PV_EP_HEALTH
                       : !strcmp(path, "/metrics")                  ? PV_EP_METRICS
                       : !strcmp(path, "/v1/chat/completions")      ? PV_EP_CHAT_COMPLETIONS
                       : !strcmp(path, "/v1/completions")           ? PV_EP_COMPLETIONS
                       : !strcmp(path, "/apply-template")           ? PV_EP_APPLY_TEMPLATE
                                                                    : PV_EP_OTHER;
    if (ep == PV_EP_OTHER && !strncmp(path, "/v1/models/", 11)) ep = PV_EP_MODELS;
    if (ep == PV_EP_OTHER) {
        char msg[200];
        snprintf(msg, sizeof msg, "not found: %s", path);
        reply_error(s, ev, ep, 404, "not_found_error", msg);
        return;
    }
    int want_post = ep == PV_EP_MESSAGES || ep == PV_EP_COUNT_TOKENS || ep == PV_EP_CHAT_COMPLETIONS ||
                    ep == PV_EP_COMPLETIONS || ep == PV_EP_APPLY_TEMPLATE;
    if (want_post ? !is_post : !is_get) {
        reply_error(s, ev, ep, 405, "invalid_request_error", want_post ? "use POST" : "use GET");
        return;
    }
    if (ep != PV_EP_HEALTH && ep != PV_EP_METRICS && !authorized(s, ev)) {
        reply_error(s, ev, ep, 401, "authentication_error", "invalid API key (x-api-key or Authorization: Bearer)");
        return;
    }
    switch (ep) {
    case PV_EP_MESSAGES: route_messages(s, ev); break;
    case PV_EP_COUNT_TOKENS: route_count_tokens(s, ev); break;
    case PV_EP_CHAT_COMPLETIONS: route_openai(s, ev, PV_OAI_CHAT); break;
    case PV_EP_COMPLETIONS: route_openai(s, ev, PV_OAI_TEXT); break;
    case PV_EP_APPLY_TEMPLATE: route_apply_template(s, ev); break;
    case PV_EP_MODELS: route_models(s, ev, path); break;
    case PV_EP_HEALTH: route_health(s, ev); break;
    default: route_metrics(s, ev); break;
    }
}

/* ---- wake-ups, timers, signals ------------------------------------------------------------ */

void pv_server_notify(void *ud, pv_req_t *r) {
    pv_server_t *s = ud;
    pthread_mutex_lock(&s->mu);
    if (s->n_ready == s->cap_ready) {
        int cap = s->cap_ready ? 2 * s->cap_ready : 64;
        pv_req_t **p = realloc(s->ready, (size_t)cap * sizeof *p);
        if (!p) { /* dropped: the request's next notification (or its end) carries the news */
            pthread_mutex_unlock(&s->mu);
            return;
        }
        s->ready = p;
        s->cap_ready = cap;
    }
    pv_req_ref(r);
    s->ready[s->n_ready++] = r;
    pthread_mutex_unlock(&s->mu);
    event_active(s->wake, EV_READ, 0);
}

void pv_server_attach(pv_server_t *s, const pv_model_t *m, pv_sched_t *sched) {
    pthread_mutex_lock(&s->mu);
    s->pending_model = m;
    s->pending_sched = sched;
    pthread_mutex_unlock(&s->mu);
    event_active(s->wake, EV_READ, 0);
}

void pv_server_fail(pv_server_t *s, const char *msg) {
    pthread_mutex_lock(&s->mu);
    s->failed = 1;
    snprintf(s->fail_msg, sizeof s->fail_msg, "%s", msg);
    pthread_mutex_unlock(&s->mu);
    event_active(s->wake, EV_READ, 0);
}

static hreq_t *find_hreq(pv_server_t *s, pv_req_t *r) {
    for (hreq_t *h = s->active; h; h = h->next)
        if (h->req == r) return h;
    return NULL;
}

/* The prompt renderer for the loaded model: --chat-template's source, else
 * the GGUF's tokenizer.chat_template; a GGUF template the engine cannot parse
 * falls back to the built-in format its text suggests. 0, or -1 after logging. */
static int make_chat(pv_server_t *s) {
    char err[PV_ERRLEN];
    const char *src = s->o.chat_template ? s->o.chat_template : gguf_get_str(s->model->file, "tokenizer.chat_template");
    if (!pv_chat_new(src, s->model->vocab, 0, &s->chat, err, sizeof err)) {
        if (s->o.has_now) pv_chat_set_clock(s->chat, &s->o.now);
        return 0;
    }
    if (s->o.chat_template) {
        fprintf(stderr, "pensieve: --chat-template: %s\n", err);
        return -1;
    }
    fprintf(stderr, "pensieve: warning: the model's %s; using a built-in format\n", err);
    if (!pv_chat_new(src, s->model->vocab, PV_CHAT_BUILTIN, &s->chat, err, sizeof err)) return 0;
    fprintf(stderr, "pensieve: %s\n", err);
    return -1;
}

static void on_wake(evutil_socket_t fd, short what, void *arg) {
    pv_server_t *s = arg;
    pthread_mutex_lock(&s->mu);
    pv_req_t **ready = s->ready;
    int n = s->n_ready;
    s->ready = NULL;
    s->n_ready = s->cap_ready = 0;
    const pv_model_t *m = s->pending_model;
    pv_sched_t *sched = s->pending_sched;
    s->pending_model = NULL;
    s->pending_sched = NULL;
    int failed = s->failed;
    pthread_mutex_unlock(&s->mu);
    if (failed) {
        fprintf(stderr, "pensieve: %s\n", s->fail_msg);
        s->rc = -1;
        event_base_loopexit(s->base, NULL);
    }
    if (sched && !s->sched) {
        s->model = m;
        s->weights_bytes = m->file->size;
        if (make_chat(s)) {
            s->rc = -1;
            event_base_loopexit(s->base, NULL);
        } else if (pv_sched_start(sched)) {
            fprintf(stderr, "pensieve: cannot start the scheduler thread\n");
            s->rc = -1;
            event_base_loopexit(s->base, NULL);
        } else {
            s->sched = sched;
            fprintf(stderr, "pensieve: ready: %s (prompt: %s%s; tool calls: %s) on http://%s:%d\n",
                    s->o.model_name, pv_chat_describe(s->chat), s->o.chat_template ? " from --chat-template" : "",
                    pv_chat_caps(s->chat) & PV_CHAT_RENDERS_TOOLS ? pv_tc_family_name(pv_chat_tool_family(s->chat))
                                                                  : "json (tools as text)",
                    s->o.host, s->port);
        }
    }
    for (int i = 0; i < n; i++) {
        hreq_t *h = find_hreq(s, ready[i]);
        if (h) hreq_pump(h);
        pv_req_unref(ready[i]);
    }
    free(ready);
}

/* Every PV_CHECK_MS: notice clients that left (a read of 0 bytes), ping idle streams. */
static void on_tick(evutil_socket_t fd, short what, void *arg) {
    pv_server_t *s = arg;
    double now = now_s();
    for (hreq_t *h = s->active; h; h = h->next) {
        if (h->gone) continue;
        struct evhttp_connection *evcon = evhttp_request_get_connection(h->ev);
        struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
        evutil_socket_t sfd = bev ? bufferevent_getfd(bev) : -1;
        char c;
        ssize_t k = sfd >= 0 ? recv(sfd, &c, 1, MSG_PEEK | MSG_DONTWAIT) : 0;
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            h->gone = 1;
            pv_req_cancel(h->req);
            s->metrics.cancelled++;
            continue;
        }
        if (h->stream && now - h->t_last_write >= s->o.ping_s)
            api_traits[h->api].ping(h);
    }
}

static void on_grace(evutil_socket_t fd, short what, void *arg) {
    pv_server_t *s = arg;
    if (s->n_active) fprintf(stderr, "pensieve: grace period over: cancelling %d request(s)\n", s->n_active);
    if (s->sched) pv_sched_stop(s->sched, 1);
    if (!s->sched || s->n_active == 0) event_base_loopexit(s->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    pv_server_t *s = arg;
    if (s->stopping) { /* a second signal: do not wait */
        on_grace(-1, 0, s);
        return;
    }
    fprintf(stderr, "pensieve: signal %d: no new requests; %d running get %d s to finish\n", (int)sig, s->n_active,
            s->o.grace_s);
    s->stopping = 1;
    if (s->sock) {
        evhttp_del_accept_socket(s->http, s->sock);
        s->sock = NULL;
    }
    if (s->sched) pv_sched_stop(s->sched, 0);
    if (!s->sched || s->n_active == 0) {
        event_base_loopexit(s->base, NULL);
        return;
    }
    struct timeval tv = {s->o.grace_s, 0};
    evtimer_add(s->grace, &tv);
}

/* ---- life cycle --------------------------------------------------------------------------- */

static int is_loopback(const char *host) {
    return !strcmp(host, "127.0.0.1") || !strcmp(host, "localhost") || !strcmp(host, "::1") ||
           !strncmp(host, "127.", 4);
}

int pv_server_new(const pv_server_opts_t *o, pv_server_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (!is_loopback(o->host) && (!o->api_key || !*o->api_key) && !o->insecure_public)
        return pv_errorf(err, errlen, PV_EINVAL,
                         "refusing to listen on %s without an API key (set --api-key, or --insecure-public)", o->host);
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, (void (*)(void))evthread_use_pthreads);
    pv_server_t *s = calloc(1, sizeof *s);
    if (!s) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    pv_metrics_init(&s->metrics);
    s->t_created = (long long)time(NULL);
    int rc = PV_ENOMEM;
    s->conns = calloc((size_t)o->max_conns, sizeof *s->conns);
    s->base = event_base_new();
    if (!s->conns || !s->base || !(s->http = evhttp_new(s->base))) goto fail;
    s->wake = event_new(s->base, -1, 0, on_wake, s);
    s->tick = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    s->grace = evtimer_new(s->base, on_grace, s);
    s->sigint = evsignal_new(s->base, SIGINT, on_signal, s);
    s->sigterm = evsignal_new(s->base, SIGTERM, on_signal, s);
    if (!s->wake || !s->tick || !s->grace || !s->sigint || !s->sigterm) goto fail;
    /* libevent's own limit is a backstop: bodies up to 4x ours are read and refused with our 413 JSON */
    evhttp_set_max_body_size(s->http, (ev_ssize_t)(o->max_body * 4 + 65536));
    evhttp_set_max_headers_size(s->http, (ev_ssize_t)o->max_headers);
    evhttp_set_timeout(s->http, o->idle_timeout_s);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(s->http, on_request, s);
    s->sock = evhttp_bind_socket_with_handle(s->http, o->host, (ev_uint16_t)o->port);
    if (!s->sock) {
        rc = pv_errorf(err, errlen, PV_EIO, "cannot listen on %s:%d: %s", o->host, o->port, strerror(errno));
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (!getsockname(evhttp_bound_socket_get_fd(s->sock), (struct sockaddr *)&ss, &sl))
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    *out = s;
    return 0;
fail:
    if (rc == PV_ENOMEM) pv_errorf(err, errlen, rc, "out of memory");
    pv_server_free(s);
    return rc;
}

int pv_server_port(const pv_server_t *s) { return s->port; }

int pv_server_run(pv_server_t *s) {
    struct timeval tv = {0, PV_CHECK_MS * 1000};
    evtimer_add(s->tick, &tv);
    evsignal_add(s->sigint, NULL);
    evsignal_add(s->sigterm, NULL);
    event_base_dispatch(s->base);
    return s->rc;
}

void pv_server_free(pv_server_t *s) {
    if (!s) return;
    while (s->active) { /* only after a failed start: requests the scheduler will never finish */
        hreq_t *h = s->active;
        s->active = h->next;
        pv_req_unref(h->req);
        pv_text_free(&h->text);
        pv_text_free(&h->all);
        pv_tc_free(h->tc);
        json_decref(h->calls);
        free(h);
    }
    for (int i = 0; i < s->n_ready; i++) pv_req_unref(s->ready[i]);
    free(s->ready);
    if (s->http) evhttp_free(s->http);
    if (s->wake) event_free(s->wake);
    if (s->tick) event_free(s->tick);
    if (s->grace) event_free(s->grace);
    if (s->sigint) event_free(s->sigint);
    if (s->sigterm) event_free(s->sigterm);
    if (s->base) event_base_free(s->base);
    free(s->conns);
    pv_chat_free(s->chat);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
