/* sched.c - slots, the bounded queue, one batched step over every active sequence.
 *
 * One pv_ctx_t holds the KV arena for every slot (n_slots x n_ctx positions,
 * in blocks); each slot is a pv_seq_t of that arena, reserving blocks as it
 * grows and returning them when its request ends. Prompts start from the
 * longest cached prefix in the arena (blocks of earlier or running requests,
 * shared read-only); a slot registers its full blocks after every prompt chunk
 * and again when it ends, so other requests, in any slot, can reuse them. A
 * slot reading a prompt whose next block another slot is computing (the same
 * tokens from position 0, further along) waits for that block and attaches
 * it, so that concurrent requests with a common prefix compute and hold it
 * once. A step is one pv_forward_batch(): one decode token per generating
 * slot, then of the slots still reading their prompts, least left first,
 * whole prompts shorter than a chunk and full chunks (ending on block
 * boundaries), up to a prompt batch of each. */
#include "sched/sched.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "model/kvstore.h"

#define PV_SCHED_DEFAULT_CHUNK 64

/* ---- requests ------------------------------------------------------------------------------ */

struct pv_req {
    pthread_mutex_t mu;        /* guards pending, st, notified */
    atomic_int refs;           /* references: the submitter's, the scheduler's, the notify queue's */
    atomic_int cancelled;      /* set by pv_req_cancel (any thread) */
    int32_t *prompt;           /* [n_prompt] owned copy, immutable */
    int n_prompt;              /* prompt tokens */
    int max_tokens;            /* generation bound (>= 1) */
    pv_sampler_params_t sp;    /* sampling parameters */
    char *stops[PV_SCHED_MAX_STOPS]; /* owned copies of the stop sequences */
    size_t stop_len[PV_SCHED_MAX_STOPS]; /* their lengths in bytes */
    int n_stops;               /* stop sequences */
    pv_gram_t *gram;           /* owned: the output's constraint, NULL if none */
    double t_submit;           /* monotonic seconds at submission (scheduler-owned after submit) */
    pv_text_t pending;         /* text not yet polled (mu) */
    pv_req_status_t st;        /* status (mu) */
    int notified;              /* notify was called and poll has not run since (mu) */
    pv_req_t *next;            /* queue link (the scheduler's mu) */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

pv_req_t *pv_req_new(const int32_t *prompt, int n_prompt, int max_tokens, const pv_sampler_params_t *sp,
                     const char *const *stops, int n_stops) {
    if (n_prompt <= 0 || max_tokens < 1 || n_stops < 0 || n_stops > PV_SCHED_MAX_STOPS || !sp) return NULL;
    pv_req_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    atomic_init(&r->refs, 1);
    atomic_init(&r->cancelled, 0);
    r->prompt = malloc((size_t)n_prompt * sizeof *r->prompt);
    if (!r->prompt) goto fail;
    memcpy(r->prompt, prompt, (size_t)n_prompt * sizeof *r->prompt);
    r->n_prompt = n_prompt;
    r->max_tokens = max_tokens;
    r->sp = *sp;
    for (int i = 0; i < n_stops; i++) {
        size_t len = strlen(stops[i]);
        if (len == 0 || len > PV_SCHED_MAX_STOP_LEN) goto fail;
        if (!(r->stops[i] = strdup(stops[i]))) goto fail;
        r->stop_len[i] = len;
        r->n_stops = i + 1;
    }
    r->st.n_prompt = n_prompt;
    r->st.stop_index = -1;
    r->st.t_first_s = -1;
    return r;
fail:
    r->refs = 1;
    pv_req_unref(r);
    return NULL;
}

void pv_req_set_grammar(pv_req_t *r, pv_gram_t *g) {
    pv_gram_free(r->gram);
    r->gram = g;
}

void pv_req_ref(pv_req_t *r) { atomic_fetch_add(&r->refs, 1); }

void pv_req_unref(pv_req_t *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    free(r->prompt);
    pv_gram_free(r->gram);
    pv_text_free(&r->pending);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void pv_req_cancel(pv_req_t *r) { atomic_store(&r->cancelled, 1); }

const char *pv_req_stop_sequence(const pv_req_t *r, int i) {
    return i >= 0 && i < r->n_stops ? r->stops[i] : NULL;
}

void pv_req_poll(pv_req_t *r, pv_req_status_t *st, pv_text_t *text) {
    pthread_mutex_lock(&r->mu);
    *st = r->st;
    pv_text_t t = r->pending;
    pv_text_clear(text);
    r->pending = *text;
    *text = t;
    r->notified = 0;
    pthread_mutex_unlock(&r->mu);
}

int pv_text_append(pv_text_t *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1) cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) return PV_ENOMEM;
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
    if (t->n_pieces == t->cap_pieces) { /* on failure the bytes join the next piece: text is never lost */
        int cap = t->cap_pieces ? 2 * t->cap_pieces : 16;
        size_t *e = realloc(t->ends, (size_t)cap * sizeof *e);
        if (!e) return 0;
        t->ends = e;
        t->cap_pieces = cap;
    }
    t->ends[t->n_pieces++] = t->len;
    return 0;
}

void pv_text_clear(pv_text_t *t) {
    t->len = 0;
    t->n_pieces = 0;
}

void pv_text_free(pv_text_t *t) {
    free(t->p);
    free(t->ends);
    memset(t, 0, sizeof *t);
}

/* ---- the scheduler ------------------------------------------------------------------------- */

typedef struct {
    pv_seq_t seq;          /* this slot's sequence in the shared arena (blocks held while running) */
    int seq_ok;            /* seq was initialised */
    float *logits;         /* [n_vocab] owned: logits of this slot's last batch entry */
    int n_take;            /* batch entries this step */
    int32_t *toks;         /* [n_ctx] owned: prompt then generated tokens (sampler history) */
    pv_req_t *req;         /* running request (a reference), NULL when free */
    pv_sampler_t *smp;     /* owned per request (seeded from its parameters) */
    int n_fed;             /* tokens of toks already in the KV cache */
    int n_tok;             /* tokens in toks */
    int n_gen;             /* tokens generated */
    char utf8[4];          /* bytes of an incomplete UTF-8 character held back */
    int n_utf8;            /* 0..3 */
    char hold[PV_SCHED_MAX_STOP_LEN]; /* text held back: it may begin a stop sequence */
    size_t n_hold;         /* bytes in hold (< the longest stop sequence) */
    int constrained;       /* the request has a grammar: gram masks every draw */
    pv_gram_state_t gram;  /* where the output is in the request's grammar */
} slot_t;

struct pv_sched {
    const pv_model_t *m;   /* borrowed */
    pv_sched_opts_t o;     /* options, defaults filled in */
    uint32_t n_ctx;        /* positions per slot */
    size_t kv_per_pos;     /* KV bytes per position of one slot */
    pv_pool_t *pool;       /* owned: the compute pool the forward pass runs on */
    pv_ctx_t *ctx;         /* owned: the KV arena of every slot, and batch scratch */
    pv_gram_vocab_t *gv;   /* owned: token bytes for constrained requests (scheduler thread) */
    pv_batch_entry_t *batch; /* [2 prompt_batch + n_slots] owned: the step's entries */
    int prompt_batch;      /* prompt tokens per forward pass */
    slot_t *slots;         /* [n_slots] owned */
    pthread_mutex_t mu;    /* guards everything below */
    pthread_cond_t cv;     /* signalled on submit and stop */
    pv_req_t *q_head;      /* waiting requests (references), FIFO */
    pv_req_t *q_tail;      /* last waiting request */
    int n_queued;          /* requests in the queue */
    int n_busy;            /* slots with a request (published after each step) */
    int stopping;          /* no new submissions */
    int cancel_all;        /* cancel every request */
    uint64_t kv_used;      /* published after each step */
    uint32_t kv_blocks_used, kv_blocks_shared, kv_blocks_cached; /* published after each step */
    uint64_t kv_cached_bytes, n_evicted; /* published after each step */
    uint64_t n_prompt_tok; /* counters since start */
    uint64_t n_gen_tok;    /* counters since start */
    uint64_t n_cached_tok; /* counters since start */
    pthread_t th;          /* the scheduler thread */
    int started;           /* th is running */
};

int pv_sched_new(const pv_model_t *m, const pv_sched_opts_t *o, pv_sched_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (o->n_slots < 1 || o->n_slots > PV_SCHED_MAX_SLOTS || o->queue_limit < 0)
        return pv_errorf(err, errlen, PV_EINVAL, "bad scheduler options (slots %d, queue %d)", o->n_slots,
                         o->queue_limit);
    pv_sched_t *s = calloc(1, sizeof *s);
    if (!s) return pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
    s->m = m;
    s->o = *o;
    if (s->o.prefill_chunk <= 0) s->o.prefill_chunk = PV_SCHED_DEFAULT_CHUNK;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc;
    s->pool = pv_pool_new(o->n_threads > 0 ? o->n_threads : 1);
    s->slots = calloc((size_t)o->n_slots, sizeof *s->slots);
    if (!s->pool || !s->slots) {
        rc = pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
        goto fail;
    }
    uint32_t n_ctx = o->n_ctx ? o->n_ctx : m->hp.n_ctx_train;
    n_ctx = (n_ctx + PV_KV_BLOCK - 1) / PV_KV_BLOCK * PV_KV_BLOCK;
    if ((uint64_t)n_ctx * (uint64_t)o->n_slots > 1u << 24) {
        rc = pv_errorf(err, errlen, PV_ERANGE, "%d slots of %u positions are too many", o->n_slots, n_ctx);
        goto fail;
    }
    s->prompt_batch = o->prompt_batch > 0 ? o->prompt_batch : PV_DEFAULT_BATCH;
    /* room for a prompt batch of full chunks, one of prompts shorter than a chunk, and a decode token per slot
     * (step_slots): none of them cuts another's chunk below the tiled attention order's threshold */
    if ((rc = pv_ctx_new_arena(m, n_ctx, n_ctx * (uint32_t)o->n_slots, 2 * s->prompt_batch + o->n_slots, &s->ctx,
                               err, errlen)))
        goto fail;
    pv_ctx_set_pool(s->ctx, s->pool);
    pv_ctx_set_float_attn(s->ctx, o->float_attn);
    if (!(s->gv = pv_gram_vocab_new(m->vocab))) {
        rc = pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
        goto fail;
    }
    s->n_ctx = n_ctx;
    if (!(s->batch = calloc((size_t)pv_ctx_max_batch(s->ctx), sizeof *s->batch))) {
        rc = pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < o->n_slots; i++) {
        slot_t *sl = &s->slots[i];
        sl->toks = malloc((size_t)s->n_ctx * sizeof *sl->toks);
        sl->logits = malloc(m->hp.n_vocab * sizeof *sl->logits);
        if (!sl->toks || !sl->logits || pv_seq_init(&sl->seq, n_ctx)) {
            rc = pv_errorf(err, errlen, PV_ENOMEM, "out of memory");
            goto fail;
        }
        sl->seq_ok = 1;
    }
    s->kv_per_pos = pv_ctx_kv_bytes(s->ctx) / ((size_t)s->n_ctx * (size_t)o->n_slots);
    *out = s;
    return 0;
fail:
    pv_sched_free(s);
    return rc;
}

void pv_sched_stop(pv_sched_t *s, int cancel) {
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    if (cancel) s->cancel_all = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

uint32_t pv_sched_n_ctx(const pv_sched_t *s) { return s->n_ctx; }

int pv_sched_submit(pv_sched_t *s, pv_req_t *r) {
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) rc = PV_SCHED_ESTOPPED;
    else if (s->n_queued >= s->o.queue_limit + (s->o.n_slots - s->n_busy)) rc = PV_SCHED_EFULL;
    else {
        pv_req_ref(r);
        r->t_submit = now_s();
        r->next = NULL;
        if (s->q_tail) s->q_tail->next = r;
        else s->q_head = r;
        s->q_tail = r;
        s->n_queued++;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void pv_sched_stats(pv_sched_t *s, pv_sched_stats_t *st) {
    pthread_mutex_lock(&s->mu);
    int q = s->n_queued, busy = s->n_busy;
    /* requests popped but not yet in a slot do not exist: admission happens under mu */
    *st = (pv_sched_stats_t){.n_busy = busy, .n_slots = s->o.n_slots, .n_queued = q,
                             .queue_limit = s->o.queue_limit, .n_ctx = s->n_ctx, .kv_used_bytes = s->kv_used,
                             .kv_bytes = pv_ctx_kv_bytes(s->ctx),
                             .n_prompt_tokens = s->n_prompt_tok, .n_gen_tokens = s->n_gen_tok,
                             .n_cached_tokens = s->n_cached_tok,
                             .kv_cached_bytes = s->kv_cached_bytes, .n_evicted_blocks = s->n_evicted,
                             .kv_blocks = pv_ctx_kv(s->ctx)->n_blocks, .kv_blocks_used = s->kv_blocks_used,
                             .kv_blocks_shared = s->kv_blocks_shared, .kv_blocks_cached = s->kv_blocks_cached};
    pthread_mutex_unlock(&s->mu);
}

/* Tells the request's owner there is news (at most once between polls). */
static void notify(pv_sched_t *s, pv_req_t *r, int force) {
    pthread_mutex_lock(&r->mu);
    int call = force || !r->notified;
    r->notified = 1;
    pthread_mutex_unlock(&r->mu);
    if (call && s->o.notify) s->o.notify(s->o.notify_ud, r);
}

/* Ends a request: final status, last notification, the scheduler's reference dropped. */
static void req_finish(pv_sched_t *s, pv_req_t *r, pv_stop_t why, int stop_index, const char *msg) {
    pthread_mutex_lock(&r->mu);
    r->st.done = 1;
    r->st.stop = why;
    r->st.stop_index = stop_index;
    if (msg) snprintf(r->st.error, sizeof r->st.error, "%s", msg);
    pthread_mutex_unlock(&r->mu);
    notify(s, r, 1);
    pv_req_unref(r);
}

/* ---- text: complete UTF-8 only, stop sequences held back -------------------------------------- */

/* Length of the valid UTF-8 character at s[0..n): > 0 valid, 0 incomplete but
 * possibly valid, -1 invalid first byte / sequence. */
static int utf8_char(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else return -1;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0;
        unsigned b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return -1;
    }
    return len;
}

/* Hands text to the request, checking stop sequences across the held-back
 * text. Returns the index of a matched stop sequence, or -1. */
static int emit_text(pv_sched_t *s, slot_t *sl, const char *text, size_t n, int final) {
    pv_req_t *r = sl->req;
    char buf[PV_SCHED_MAX_STOP_LEN + 1024]; /* hold + new text */
    size_t len = 0;
    memcpy(buf, sl->hold, sl->n_hold);
    len = sl->n_hold;
    if (n > sizeof buf - len) n = sizeof buf - len;
    memcpy(buf + len, text, n);
    len += n;
    size_t out = len, keep = 0;
    int hit = -1;
    for (int i = 0; i < r->n_stops; i++) { /* the earliest full match wins */
        const char *p = memmem(buf, len, r->stops[i], r->stop_len[i]);
        if (p && (size_t)(p - buf) < out) out = (size_t)(p - buf), hit = i;
    }
    if (hit < 0 && !final) { /* hold back the longest suffix that begins some stop sequence */
        for (int i = 0; i < r->n_stops; i++) {
            size_t k = r->stop_len[i] - 1 < len ? r->stop_len[i] - 1 : len;
            for (; k > keep; k--)
                if (!memcmp(buf + len - k, r->stops[i], k)) break;
            if (k > keep) keep = k;
        }
        out = len - keep;
    }
    memmove(sl->hold, buf + out, keep);
    sl->n_hold = keep;
    if (out > 0) {
        pthread_mutex_lock(&r->mu);
        pv_text_append(&r->pending, buf, out); /* on OOM the text is lost, the request goes on */
        pthread_mutex_unlock(&r->mu);
        notify(s, r, 0);
    }
    return hit;
}

/* Decodes one token to text; returns a matched stop sequence index or -1. */
static int emit_token(pv_sched_t *s, slot_t *sl, int32_t id) {
    char raw[4 + 512], text[3 * sizeof raw];
    memcpy(raw, sl->utf8, (size_t)sl->n_utf8);
    int n = pv_token_to_piece(s->m->vocab, id, 0, raw + sl->n_utf8, sizeof raw - (size_t)sl->n_utf8);
    size_t len = (size_t)sl->n_utf8 + (size_t)(n > 0 ? n : 0), i = 0, o = 0;
    sl->n_utf8 = 0;
    while (i < len) {
        int c = utf8_char((const unsigned char *)raw + i, len - i);
        if (c > 0) {
            memcpy(text + o, raw + i, (size_t)c);
            o += (size_t)c, i += (size_t)c;
        } else if (c == 0) { /* incomplete: wait for the next token */
            memcpy(sl->utf8, raw + i, len - i);
            sl->n_utf8 = (int)(len - i);
            break;
        } else {
            memcpy(text + o, "\xef\xbf\xbd", 3);
            o += 3, i++;
        }
    }
    return emit_text(s, sl, text, o, 0);
}

/* Frees the slot: flushes held text (unless cancelled) and finishes the request. */
static void slot_end(pv_sched_t *s, slot_t *sl, pv_stop_t why, int stop_index, const char *msg) {
    if (why == PV_STOP_END_TURN || why == PV_STOP_MAX_TOKENS) {
        char tail[16];
        size_t n = 0;
        if (sl->n_utf8) memcpy(tail, "\xef\xbf\xbd", 3), n = 3;
        emit_text(s, sl, tail, n, 1);
    }
    req_finish(s, sl->req, why, stop_index, msg);
    if (why != PV_STOP_ERROR) /* what is in the cache stays findable for the next turn */
        pv_kv_register(pv_ctx_kv(s->ctx), &sl->seq, sl->toks, (uint32_t)sl->n_fed);
    pv_kv_release(pv_ctx_kv(s->ctx), &sl->seq);
    pv_sampler_free(sl->smp);
    sl->smp = NULL;
    sl->req = NULL;
}

/* Puts a request into a free slot. */
static void slot_begin(pv_sched_t *s, slot_t *sl, pv_req_t *r) {
    sl->req = r;
    memcpy(sl->toks, r->prompt, (size_t)r->n_prompt * sizeof *sl->toks);
    sl->n_tok = r->n_prompt;
    sl->n_fed = (int)pv_kv_attach_prefix(pv_ctx_kv(s->ctx), &sl->seq, r->prompt, (uint32_t)r->n_prompt);
    s->n_cached_tok += (uint64_t)sl->n_fed; /* under s->mu: admission holds it */
    sl->n_gen = 0;
    sl->n_utf8 = 0;
    sl->n_hold = 0;
    sl->smp = pv_sampler_new(&r->sp, (int32_t)s->m->hp.n_vocab);
    sl->constrained = r->gram != NULL;
    if (r->gram) pv_gram_start(r->gram, &sl->gram);
    pthread_mutex_lock(&r->mu);
    r->st.admitted = 1;
    r->st.n_cached = sl->n_fed;
    pthread_mutex_unlock(&r->mu);
}

/* Samples the next token from s->logits and hands out its text; ends the request when due. */
static void slot_sample(pv_sched_t *s, slot_t *sl) {
    pv_req_t *r = sl->req;
    if (sl->constrained && pv_gram_mask(s->gv, &sl->gram, sl->logits) == 0) { /* cannot happen: no dead ends */
        slot_end(s, sl, PV_STOP_ERROR, -1, "no token continues the constrained output");
        return;
    }
    int32_t id = pv_sampler_sample(sl->smp, sl->logits, sl->toks, sl->n_tok);
    double t = now_s();
    if (sl->n_gen == 0) {
        pthread_mutex_lock(&r->mu);
        r->st.t_first_s = t - r->t_submit;
        pthread_mutex_unlock(&r->mu);
    }
    if (pv_vocab_is_eog(s->m->vocab, id)) {
        slot_end(s, sl, PV_STOP_END_TURN, -1, NULL);
        return;
    }
    sl->toks[sl->n_tok++] = id;
    sl->n_gen++;
    pthread_mutex_lock(&r->mu);
    r->st.n_gen = sl->n_gen;
    r->st.t_gen_s = t - r->t_submit - r->st.t_first_s;
    pthread_mutex_unlock(&r->mu);
    if (sl->constrained) pv_gram_feed_token(s->gv, &sl->gram, id); /* the mask allowed it */
    int hit = emit_token(s, sl, id);
    if (hit >= 0) slot_end(s, sl, PV_STOP_SEQUENCE, hit, NULL);
    else if (sl->constrained && pv_gram_done(&sl->gram)) slot_end(s, sl, PV_STOP_END_TURN, -1, NULL);
    else if (sl->n_gen >= r->max_tokens || (uint32_t)sl->n_tok >= s->n_ctx)
        slot_end(s, sl, PV_STOP_MAX_TOKENS, -1, NULL);
}

/* Adds n tokens of sl (from n_fed on) to the batch; logits for the last one
 * when it completes the slot's known tokens. */
static int batch_add(pv_sched_t *s, slot_t *sl, int n, int n_batch) {
    for (int k = 0; k < n; k++) {
        int pos = sl->n_fed + k;
        s->batch[n_batch + k] = (pv_batch_entry_t){.seq = &sl->seq, .pos = (uint32_t)pos, .token = sl->toks[pos],
                                                   .logits = pos + 1 == sl->n_tok ? sl->logits : NULL};
    }
    sl->n_take = n;
    return n_batch + n;
}

static int reading_prompt(const slot_t *sl) { return sl->req && sl->n_fed < sl->req->n_prompt; }

/* Whether another slot reading its prompt will compute sl's next block: the
 * same tokens from position 0 through that block, and it is further along
 * (or as far, and first in slot order, so that exactly one of them computes). */
static int next_block_coming(const pv_sched_t *s, const slot_t *sl) {
    int end = sl->n_fed + PV_KV_BLOCK;
    if (sl->n_fed % PV_KV_BLOCK || end >= sl->req->n_prompt) return 0; /* it could not attach the block */
    for (const slot_t *o = s->slots; o < s->slots + s->o.n_slots; o++) {
        if (o == sl || !reading_prompt(o) || o->req->n_prompt < end) continue;
        if (o->n_fed < sl->n_fed || (o->n_fed == sl->n_fed && o > sl) || o->n_fed >= end) continue;
        if (!memcmp(o->toks, sl->toks, (size_t)end * sizeof *sl->toks)) return 1;
    }
    return 0;
}

/* Before sl reads more of its prompt: attaches the blocks that other slots
 * registered since (adding them to *n_cached). 1 when sl should wait this step
 * for a block another slot is computing. */
static int catch_up(pv_sched_t *s, slot_t *sl, uint64_t *n_cached) {
    if (sl->n_fed % PV_KV_BLOCK || sl->seq.n_blocks != (uint32_t)sl->n_fed / PV_KV_BLOCK) return 0;
    int got = (int)pv_kv_extend_prefix(pv_ctx_kv(s->ctx), &sl->seq, sl->toks, (uint32_t)sl->req->n_prompt) - sl->n_fed;
    if (got > 0) {
        sl->n_fed += got;
        *n_cached += (uint64_t)got;
        pthread_mutex_lock(&sl->req->mu);
        sl->req->st.n_cached += got;
        pthread_mutex_unlock(&sl->req->mu);
    }
    return next_block_coming(s, sl);
}

static int prompt_left(const slot_t *sl) { return sl->req->n_prompt - sl->n_fed; }

/* The slots that read their prompts this step (into order), least of the
 * prompt left first, ties in slot order: a short prompt is not held behind a
 * long one, and of two long ones the nearer is finished first (round robin
 * would finish both at the later one's time). Each first attaches what other
 * slots registered; one waiting for a block another slot computes is left out. */
static int prompt_readers(pv_sched_t *s, int *order, uint64_t *n_cached) {
    int n = 0;
    for (int i = 0; i < s->o.n_slots; i++) {
        slot_t *sl = &s->slots[i];
        if (!reading_prompt(sl) || catch_up(s, sl, n_cached)) continue;
        int k = n++;
        for (; k > 0 && prompt_left(&s->slots[order[k - 1]]) > prompt_left(sl); k--) order[k] = order[k - 1];
        order[k] = i;
    }
    return n;
}

/* Advances every active slot: one decode token for each generating slot,
 * then the prompts in prompt_readers' order, each either whole (less than a
 * chunk left: a short prompt or a long one's tail, up to a prompt batch of
 * them) or a full chunk (up to a prompt batch of those). A chunk is never cut
 * to fill the batch: fewer than PV_ATTN_TILED_ROWS tokens of a long prompt
 * would leave the tiled attention order, at several times the cost per token
 * on a long context. One forward pass. */
static void step_slots(pv_sched_t *s, uint64_t *n_prompt, uint64_t *n_gen, uint64_t *n_cached) {
    int n_slots = s->o.n_slots, nb = 0, order[PV_SCHED_MAX_SLOTS];
    int chunk = s->o.prefill_chunk < s->prompt_batch ? s->o.prefill_chunk : s->prompt_batch;
    int room = s->prompt_batch, tails = s->prompt_batch; /* for full chunks; for whole prompts shorter than one */
    for (int i = 0; i < n_slots; i++) {
        slot_t *sl = &s->slots[i];
        sl->n_take = 0;
        if (sl->req && sl->n_fed >= sl->req->n_prompt) nb = batch_add(s, sl, 1, nb);
    }
    int n_read = prompt_readers(s, order, n_cached);
    for (int j = 0; j < n_read; j++) {
        slot_t *sl = &s->slots[order[j]];
        int n = prompt_left(sl), *budget = n < chunk ? &tails : &room;
        if (n > chunk) {
            int end = (sl->n_fed + chunk) / PV_KV_BLOCK * PV_KV_BLOCK; /* a cut chunk ends on a block boundary */
            n = end > sl->n_fed ? end - sl->n_fed : chunk;
        }
        if (n > *budget) continue;
        nb = batch_add(s, sl, n, nb);
        *budget -= n;
    }
    if (nb == 0) return;
    int rc = pv_forward_batch(s->ctx, s->batch, nb);
    for (int i = 0; i < n_slots; i++) {
        slot_t *sl = &s->slots[i];
        if (!sl->req || !sl->n_take) continue;
        if (rc) {
            slot_end(s, sl, PV_STOP_ERROR, -1, rc == PV_ENOMEM ? "the KV cache is full" : "the forward pass failed");
            continue;
        }
        int prefill = sl->n_fed < sl->req->n_prompt;
        if (prefill) *n_prompt += (uint64_t)sl->n_take;
        else *n_gen += 1;
        sl->n_fed += sl->n_take;
        if (prefill) /* its full blocks so far: others may share them now */
            pv_kv_register(pv_ctx_kv(s->ctx), &sl->seq, sl->toks, (uint32_t)sl->n_fed);
        if (sl->n_fed == sl->n_tok) slot_sample(s, sl);
    }
}

int pv_sched_step(pv_sched_t *s) {
    /* cancelled requests leave their slots first, so that waiting ones can take them now */
    for (int i = 0; i < s->o.n_slots; i++)
        if (s->slots[i].req && atomic_load(&s->slots[i].req->cancelled))
            slot_end(s, &s->slots[i], PV_STOP_CANCELLED, -1, NULL);
    pthread_mutex_lock(&s->mu);
    if (s->cancel_all) {
        for (pv_req_t *r = s->q_head; r; r = r->next) pv_req_cancel(r);
        for (int i = 0; i < s->o.n_slots; i++)
            if (s->slots[i].req) pv_req_cancel(s->slots[i].req);
    }
    /* admit: cancelled waiting requests end here; the others take free slots */
    pv_req_t *dropped = NULL;
    for (int i = 0; i < s->o.n_slots && s->q_head; i++) {
        if (s->slots[i].req) continue;
        while (s->q_head) {
            pv_req_t *r = s->q_head;
            s->q_head = r->next;
            if (!s->q_head) s->q_tail = NULL;
            s->n_queued--;
            if (atomic_load(&r->cancelled)) {
                r->next = dropped;
                dropped = r;
                continue;
            }
            slot_begin(s, &s->slots[i], r);
            break;
        }
    }
    if (s->cancel_all) /* cancelled requests still waiting (no free slot) */
        while (s->q_head) {
            pv_req_t *r = s->q_head;
            s->q_head = r->next;
            r->next = dropped;
            dropped = r;
            s->n_queued--;
        }
    if (!s->q_head) s->q_tail = NULL;
    int busy = 0;
    for (int i = 0; i < s->o.n_slots; i++) busy += s->slots[i].req != NULL;
    s->n_busy = busy;
    pthread_mutex_unlock(&s->mu);
    while (dropped) {
        pv_req_t *r = dropped;
        dropped = r->next;
        req_finish(s, r, PV_STOP_CANCELLED, -1, NULL);
    }

    uint64_t n_prompt = 0, n_gen = 0, n_cached = 0;
    step_slots(s, &n_prompt, &n_gen, &n_cached);
    const pv_kv_t *kv = pv_ctx_kv(s->ctx);

    pthread_mutex_lock(&s->mu);
    uint64_t used = 0;
    busy = 0;
    for (int i = 0; i < s->o.n_slots; i++)
        busy += s->slots[i].req != NULL;
    used = pv_kv_used_bytes(kv);
    s->n_busy = busy;
    s->kv_used = used;
    s->kv_blocks_used = kv->n_blocks - kv->n_free - kv->n_cached;
    s->kv_blocks_shared = kv->n_shared;
    s->kv_blocks_cached = kv->n_cached;
    s->kv_cached_bytes = pv_kv_cached_bytes(kv);
    s->n_evicted = kv->n_evicted;
    s->n_cached_tok += n_cached;
    s->n_prompt_tok += n_prompt;
    s->n_gen_tok += n_gen;
    int left = busy + s->n_queued;
    pthread_mutex_unlock(&s->mu);
    return left;
}

static void *sched_main(void *arg) {
    pv_sched_t *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && !s->q_head && s->n_busy == 0) pthread_cond_wait(&s->cv, &s->mu);
        int quit = s->stopping && !s->q_head && s->n_busy == 0;
        pthread_mutex_unlock(&s->mu);
        if (quit) break;
        pv_sched_step(s);
    }
    return NULL;
}

int pv_sched_start(pv_sched_t *s) {
    if (pthread_create(&s->th, NULL, sched_main, s)) return PV_ENOMEM;
    s->started = 1;
    return 0;
}

void pv_sched_join(pv_sched_t *s) {
    if (s->started) pthread_join(s->th, NULL);
    else if (s->slots)
        while (pv_sched_step(s) > 0) {
        }
    s->started = 0;
}

int pv_sched_cache_load(pv_sched_t *s, const char *path, uint32_t *n_blocks, char *err, size_t errlen) {
    pv_kv_t *kv = pv_ctx_kv(s->ctx);
    int rc = pv_kvstore_load(kv, pv_kvstore_model_id(s->m, s->ctx), path, n_blocks, err, errlen);
    pthread_mutex_lock(&s->mu);
    s->kv_blocks_cached = kv->n_cached;
    s->kv_cached_bytes = pv_kv_cached_bytes(kv);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int pv_sched_cache_save(pv_sched_t *s, const char *path, uint32_t *n_blocks, char *err, size_t errlen) {
    return pv_kvstore_save(pv_ctx_kv(s->ctx), pv_kvstore_model_id(s->m, s->ctx), path, n_blocks, err, errlen);
}

void pv_sched_free(pv_sched_t *s) {
    if (!s) return;
    pv_sched_stop(s, 1);
    pv_sched_join(s);
    for (int i = 0; s->slots && i < s->o.n_slots; i++) {
        slot_t *sl = &s->slots[i];
        if (sl->seq_ok) {
            pv_kv_release(pv_ctx_kv(s->ctx), &sl->seq);
            pv_seq_close(&sl->seq);
        }
        free(sl->toks);
        free(sl->logits);
    }
    free(s->slots);
    free(s->batch);
    pv_ctx_free(s->ctx);
    pv_gram_vocab_free(s->gv);
    pv_pool_free(s->pool);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
