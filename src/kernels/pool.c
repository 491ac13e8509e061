#include "kernels/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPIN_ROUNDS 20000 /* polls before a worker sleeps (a few tens of microseconds) */

struct pv_pool {
    int n_threads;            /* including the caller */
    pthread_t *workers;       /* [n_threads - 1] */
    pv_task_fn fn;            /* current task; written before generation is bumped */
    void *arg;
    atomic_uint generation;   /* bumped once per run; workers wait for a change */
    atomic_int pending;       /* workers still running the current task */
    atomic_int stop;          /* set once, at free */
    pthread_mutex_t mu;       /* guards the sleeps below */
    pthread_cond_t wake;      /* workers sleep here between runs */
    pthread_cond_t done;      /* the caller sleeps here for stragglers */
    int n_sleeping;           /* workers in pthread_cond_wait(wake), under mu */
};

typedef struct {
    pv_pool_t *pool;
    int ith;
} worker_arg_t;

static unsigned wait_for_generation(pv_pool_t *p, unsigned seen) {
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        unsigned g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen || atomic_load(&p->stop)) return g;
        if (i % 64 == 63) sched_yield();
    }
    pthread_mutex_lock(&p->mu);
    p->n_sleeping++;
    unsigned g;
    while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->mu);
    p->n_sleeping--;
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *v) {
    worker_arg_t wa = *(worker_arg_t *)v;
    free(v);
    pv_pool_t *p = wa.pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_generation(p, seen);
        if (atomic_load(&p->stop)) return NULL;
        p->fn(p->arg, wa.ith, p->n_threads);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

pv_pool_t *pv_pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    pv_pool_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->workers) goto fail;
    for (int i = 1; i < n_threads; i++) {
        worker_arg_t *wa = malloc(sizeof *wa);
        if (!wa) goto fail_threads;
        *wa = (worker_arg_t){p, i};
        if (pthread_create(&p->workers[i - 1], NULL, worker_main, wa) != 0) {
            free(wa);
            goto fail_threads;
        }
        continue;
    fail_threads:
        p->n_threads = i; /* join only the ones started */
        pv_pool_free(p);
        return NULL;
    }
    return p;
fail:
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
    return NULL;
}

void pv_pool_free(pv_pool_t *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->workers[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->workers);
    free(p);
}

int pv_pool_size(const pv_pool_t *p) { return p ? p->n_threads : 1; }

void pv_pool_run(pv_pool_t *p, pv_task_fn fn, void *arg) {
    if (!p || p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n_threads - 1);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_mutex_lock(&p->mu);
    if (p->n_sleeping) pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n_threads);
    for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++)
        if (i % 64 == 63) sched_yield();
    if (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

/* Counts distinct (physical id, core id) pairs in /proc/cpuinfo. */
int pv_physical_cores(void) {
    FILE *fp = fopen("/proc/cpuinfo", "r");
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int fallback = online > 0 ? (int)online : 1;
    if (!fp) return fallback;
    char line[256];
    int phys = 0, n = 0;
    int seen[1024][2];
    while (fgets(line, sizeof line, fp)) {
        int v;
        if (sscanf(line, "physical id : %d", &v) == 1) phys = v;
        else if (sscanf(line, "core id : %d", &v) == 1) {
            int dup = 0;
            for (int i = 0; i < n && !dup; i++) dup = seen[i][0] == phys && seen[i][1] == v;
            if (!dup && n < 1024) {
                seen[n][0] = phys;
                seen[n][1] = v;
                n++;
            }
        }
    }
    fclose(fp);
    return n > 0 ? n : fallback;
}
