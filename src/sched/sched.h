/* sched.h - the scheduler: the one owner of the model and the KV cache.
 *
 * HTTP threads build a pv_req_t (prompt tokens + sampling), submit it, then
 * poll it for text whenever the scheduler's notify callback says there is
 * news. One scheduler thread runs pv_sched_step() in a loop: each step it
 * admits waiting requests into free slots, advances every active slot (a
 * prompt chunk, or one decode token), samples, turns tokens into text
 * (complete UTF-8 only, stop sequences held back until they cannot match)
 * and appends it to each request. Nothing else touches the model.
 *
 * Memory: one KV arena of n_slots x n_ctx positions, created at start-up and
 * handed to slots in blocks (the KV budget); stepping allocates nothing but a
 * request's text buffer growth. A step is one batched forward pass.
 *
 * Lifecycle of a request: pv_req_new() (refcount 1, the caller's), then
 * pv_sched_submit() (the scheduler takes its own reference). The scheduler
 * always ends a submitted request with done = 1 (finished, cancelled or
 * failed), notifies a last time and drops its reference. pv_req_cancel()
 * from any thread makes the next step free the slot.
 *
 * Threads: pv_req_* functions are thread-safe; pv_sched_step() must be
 * called by one thread at a time (the scheduler thread once started). */
#ifndef PV_SCHED_H
#define PV_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "model/grammar.h"
#include "model/model.h"
#include "model/sample.h"

#define PV_SCHED_MAX_SLOTS 256    /* slots (--parallel) at most */
#define PV_SCHED_MAX_STOPS 16     /* stop sequences per request */
#define PV_SCHED_MAX_STOP_LEN 256 /* bytes per stop sequence */

/* pv_sched_submit results (besides 0) */
#define PV_SCHED_EFULL (-100)    /* the queue is full: try later (HTTP 429) */
#define PV_SCHED_ESTOPPED (-101) /* shutting down */

typedef enum {
    PV_STOP_NONE = 0,   /* still running */
    PV_STOP_END_TURN,   /* the model emitted an end-of-generation token */
    PV_STOP_MAX_TOKENS, /* max_tokens reached, or the context is full */
    PV_STOP_SEQUENCE,   /* a stop sequence matched (it is not part of the text) */
    PV_STOP_CANCELLED,  /* pv_req_cancel() or shutdown */
    PV_STOP_ERROR,      /* the forward pass failed */
} pv_stop_t;

typedef struct pv_req pv_req_t;

typedef struct {
    char *p;        /* text bytes, owned by whoever holds the pv_text_t */
    size_t len;     /* bytes used */
    size_t cap;     /* bytes allocated */
    size_t *ends;   /* owned: where each piece ends (one piece per token's text handed out), in p */
    int n_pieces;   /* entries in ends; bytes past the last end (a failed growth) are one more piece */
    int cap_pieces; /* entries allocated */
} pv_text_t;

/* Appends n bytes as one piece. 0, or PV_ENOMEM with nothing appended. */
int pv_text_append(pv_text_t *t, const char *s, size_t n);
void pv_text_clear(pv_text_t *t); /* empty, storage kept */
void pv_text_free(pv_text_t *t);  /* storage freed, zeroed */

typedef struct {
    int admitted;      /* it has a slot (its prompt is being processed or it is generating) */
    int done;          /* final: no more text will come */
    pv_stop_t stop;    /* why it ended (when done) */
    int stop_index;    /* which stop sequence matched, -1 if none */
    int n_prompt;      /* prompt tokens */
    int n_cached;      /* of those, reused from the prefix cache (not computed) */
    int n_gen;         /* generated tokens (the end-of-generation token not counted) */
    double t_first_s;  /* seconds from submission to the first generated token; < 0 before */
    double t_gen_s;    /* seconds from the first to the last generated token */
    char error[160];   /* message when stop == PV_STOP_ERROR */
} pv_req_status_t;

/* Copies the prompt and the stop sequences (each 1..PV_SCHED_MAX_STOP_LEN
 * bytes, at most PV_SCHED_MAX_STOPS). max_tokens >= 1. NULL on bad arguments or OOM. */
pv_req_t *pv_req_new(const int32_t *prompt, int n_prompt, int max_tokens, const pv_sampler_params_t *sp,
                     const char *const *stops, int n_stops);
/* Constrains the output to what g matches (takes ownership of g; call before
 * submitting): before each draw, tokens g rejects get -inf logits (end of
 * generation only where the value may end), and the request ends
 * (PV_STOP_END_TURN) as soon as the value is complete. */
void pv_req_set_grammar(pv_req_t *r, pv_gram_t *g);
void pv_req_ref(pv_req_t *r);
void pv_req_unref(pv_req_t *r); /* accepts NULL; frees at zero */
void pv_req_cancel(pv_req_t *r);
const char *pv_req_stop_sequence(const pv_req_t *r, int i); /* borrowed; NULL if out of range */

/* Snapshot of the status, and the text produced since the last poll: *text
 * is swapped with the request's pending buffer (its len reset first), so that
 * steady-state polling allocates nothing. Free text->p when done with it. */
void pv_req_poll(pv_req_t *r, pv_req_status_t *st, pv_text_t *text);

typedef struct pv_sched pv_sched_t;

/* Called by the scheduler thread when a request has news (text or the end).
 * It must not block and must not call back into the scheduler's step. */
typedef void (*pv_sched_notify_fn)(void *ud, pv_req_t *r);

typedef struct {
    int n_slots;               /* sequences run together (--parallel) */
    int queue_limit;           /* requests that may wait for a slot (--queue) */
    uint32_t n_ctx;            /* positions per slot (0: the model's) */
    int n_threads;             /* compute threads of the shared pool */
    int prefill_chunk;         /* prompt tokens per slot per step (0: 64) */
    int prompt_batch;          /* prompt tokens per forward pass in full chunks (0: PV_DEFAULT_BATCH); as
                                  many again of prompts shorter than a chunk, and each generating slot's
                                  decode token, come on top, so that none of them cuts a long prompt's chunk */
    int float_attn;            /* every token's attention in the tiled order (pv_ctx_set_float_attn) */
    pv_sched_notify_fn notify; /* may be NULL (tests that poll) */
    void *notify_ud;           /* passed to notify */
} pv_sched_opts_t;

typedef struct {
    int n_busy;             /* slots running a request */
    int n_slots;            /* slots in all */
    int n_queued;           /* requests waiting for a slot */
    int queue_limit;        /* the queue's bound */
    uint32_t n_ctx;         /* positions per slot */
    uint64_t kv_used_bytes; /* KV bytes holding live positions */
    uint64_t kv_bytes;      /* the whole KV budget (every slot's cache) */
    uint64_t n_prompt_tokens; /* prompt tokens processed (computed) since start */
    uint64_t n_cached_tokens; /* prompt tokens reused from the prefix cache since start */
    uint64_t kv_cached_bytes; /* KV bytes of cached prefix blocks that no request holds */
    uint64_t n_evicted_blocks; /* cached blocks evicted for room since start */
    uint64_t n_gen_tokens;    /* tokens generated since start */
    uint32_t kv_blocks;        /* blocks of PV_KV_BLOCK positions in the KV arena */
    uint32_t kv_blocks_used;   /* blocks held by running requests (each counted once, however many share it) */
    uint32_t kv_blocks_shared; /* of those, blocks held by more than one request */
    uint32_t kv_blocks_cached; /* cached prefix blocks no request holds */
} pv_sched_stats_t;

/* Creates the slots and their caches (borrows m, which must outlive the
 * scheduler). Does not start the thread. */
int pv_sched_new(const pv_model_t *m, const pv_sched_opts_t *o, pv_sched_t **out, char *err, size_t errlen);
int pv_sched_start(pv_sched_t *s); /* starts the scheduler thread; 0 or PV_ENOMEM */
/* Refuses new submissions from now on; with cancel, also cancels every queued
 * and running request. The thread exits once nothing is left. */
void pv_sched_stop(pv_sched_t *s, int cancel);
void pv_sched_free(pv_sched_t *s); /* accepts NULL: stops (cancelling), joins, frees */

/* 0, PV_SCHED_EFULL or PV_SCHED_ESTOPPED. The prompt must fit n_ctx (the
 * caller checks it; pv_sched_n_ctx() says how much). */
int pv_sched_submit(pv_sched_t *s, pv_req_t *r);
uint32_t pv_sched_n_ctx(const pv_sched_t *s);
void pv_sched_stats(pv_sched_t *s, pv_sched_stats_t *st);

/* Waits for the scheduler thread to end (after pv_sched_stop); without a
 * thread, steps until nothing is left. Every slot is free afterwards. */
void pv_sched_join(pv_sched_t *s);

/* The prefix cache on disk (model/kvstore.h). Load only before
 * pv_sched_start, into the untouched arena: as many blocks as it holds, most
 * recently used first; *n_blocks receives how many. Save only after
 * pv_sched_join: every cached block, written atomically. Errors as
 * pv_kvstore_load / pv_kvstore_save (PV_ENOTFOUND: no file yet). */
int pv_sched_cache_load(pv_sched_t *s, const char *path, uint32_t *n_blocks, char *err, size_t errlen);
int pv_sched_cache_save(pv_sched_t *s, const char *path, uint32_t *n_blocks, char *err, size_t errlen);

/* One step over every active slot; returns how many slots are active or
 * waiting afterwards (0: idle). For tests that drive it without the thread. */
int pv_sched_step(pv_sched_t *s);

#endif
