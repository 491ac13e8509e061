/* meminfo.h - how much memory this machine (and this process) has left.
 *
 * Reads /proc/meminfo (MemAvailable), the cgroup v2 (or v1) memory limit of
 * this process, and /proc/self/status (VmRSS, VmHWM). Everything is plain
 * reads of small files into stack buffers: safe to call on every request. */
#ifndef PV_MEMINFO_H
#define PV_MEMINFO_H

#include <stdint.h>

typedef enum {
    PV_MEM_SAFE = 0,
    PV_MEM_CAUTION,
    PV_MEM_WARNING,
    PV_MEM_CRITICAL,  /* new work is refused */
    PV_MEM_EMERGENCY, /* new work is refused */
    PV_MEM_COUNT
} pv_mem_status_t;

typedef struct {
    uint64_t available_bytes; /* min(MemAvailable, cgroup limit - cgroup usage) */
    uint64_t rss_bytes;       /* VmRSS of this process */
    uint64_t hwm_bytes;       /* VmHWM: peak RSS of this process */
} pv_meminfo_t;

/* Thresholds in bytes of available memory: a level applies when available <= it. */
typedef struct {
    uint64_t caution;   /* default 4 GiB */
    uint64_t warning;   /* default 2 GiB */
    uint64_t critical;  /* default 1 GiB */
    uint64_t emergency; /* default 512 MiB */
} pv_mem_tiers_t;

pv_mem_tiers_t pv_mem_tiers_default(void);

/* Fills mi; fields that cannot be read are 0 (available_bytes: UINT64_MAX). */
void pv_meminfo_read(pv_meminfo_t *mi);

pv_mem_status_t pv_mem_classify(const pv_mem_tiers_t *t, uint64_t available_bytes);
const char *pv_mem_status_name(pv_mem_status_t s); /* "safe", "caution", ... */

#endif
