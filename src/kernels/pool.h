/* pool.h - a persistent compute thread pool.
 *
 * pv_pool_run() runs fn(arg, ith, nth) on every thread of the pool, the
 * calling thread taking ith = 0, and returns when all have finished. Workers
 * are created once; between runs they spin briefly, then sleep, so that the
 * many small runs of a forward pass cost little and an idle pool costs no CPU.
 * One thread at a time may call pv_pool_run on a given pool. */
#ifndef PV_POOL_H
#define PV_POOL_H

typedef void (*pv_task_fn)(void *arg, int ith, int nth);

typedef struct pv_pool pv_pool_t;

/* n_threads counts the caller; 1 gives a pool that runs everything inline. NULL on failure. */
pv_pool_t *pv_pool_new(int n_threads);
void pv_pool_free(pv_pool_t *p); /* accepts NULL; joins the workers */
int pv_pool_size(const pv_pool_t *p); /* 1 for NULL */
void pv_pool_run(pv_pool_t *p, pv_task_fn fn, void *arg); /* p may be NULL: runs inline */

/* Physical cores of this machine (hyper-threads not counted), at least 1. */
int pv_physical_cores(void);

#endif
