/* meminfo.c - MemAvailable, cgroup limits, VmRSS/VmHWM. */
#include "base/meminfo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pv_mem_tiers_t pv_mem_tiers_default(void) {
    return (pv_mem_tiers_t){.caution = 4ull << 30, .warning = 2ull << 30, .critical = 1ull << 30,
                            .emergency = 512ull << 20};
}

/* Reads a small file into buf (nul-terminated); 0 on success. */
static int read_small(const char *path, char *buf, size_t len) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = 0;
    return 0;
}

/* Value in kB of "key:" in a /proc file's text, times 1024; 0 if absent. */
static uint64_t kb_field(const char *text, const char *key) {
    const char *p = strstr(text, key);
    if (!p) return 0;
    p += strlen(key);
    return strtoull(p, NULL, 10) * 1024u;
}

/* A cgroup file holding one number ("max" means none): UINT64_MAX if absent. */
static uint64_t cg_value(const char *path) {
    char buf[64];
    if (read_small(path, buf, sizeof buf) || !strncmp(buf, "max", 3)) return UINT64_MAX;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    return end == buf ? UINT64_MAX : v;
}

/* Room left under this process's cgroup limit; UINT64_MAX when unlimited. */
static uint64_t cgroup_room(void) {
    char buf[512], path[600];
    uint64_t lim = UINT64_MAX, cur = 0;
    /* cgroup v2: "0::/path" */
    if (!read_small("/proc/self/cgroup", buf, sizeof buf)) {
        char *p = strstr(buf, "0::");
        if (p) {
            p += 3;
            char *nl = strchr(p, '\n');
            if (nl) *nl = 0;
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", p);
            lim = cg_value(path);
            if (lim != UINT64_MAX) {
                snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.current", p);
                cur = cg_value(path);
            }
        }
    }
    if (lim == UINT64_MAX) { /* cgroup v1 */
        lim = cg_value("/sys/fs/cgroup/memory/memory.limit_in_bytes");
        if (lim >= (1ull << 60)) return UINT64_MAX; /* v1 writes a huge number for "none" */
        cur = cg_value("/sys/fs/cgroup/memory/memory.usage_in_bytes");
    }
    if (lim == UINT64_MAX) return UINT64_MAX;
    if (cur == UINT64_MAX) cur = 0;
    return cur >= lim ? 0 : lim - cur;
}

void pv_meminfo_read(pv_meminfo_t *mi) {
    char buf[4096];
    *mi = (pv_meminfo_t){.available_bytes = UINT64_MAX};
    if (!read_small("/proc/meminfo", buf, sizeof buf)) {
        uint64_t a = kb_field(buf, "MemAvailable:");
        if (a) mi->available_bytes = a;
    }
    uint64_t room = cgroup_room();
    if (room < mi->available_bytes) mi->available_bytes = room;
    if (!read_small("/proc/self/status", buf, sizeof buf)) {
        mi->rss_bytes = kb_field(buf, "VmRSS:");
        mi->hwm_bytes = kb_field(buf, "VmHWM:");
    }
}

pv_mem_status_t pv_mem_classify(const pv_mem_tiers_t *t, uint64_t a) {
    if (a <= t->emergency) return PV_MEM_EMERGENCY;
    if (a <= t->critical) return PV_MEM_CRITICAL;
    if (a <= t->warning) return PV_MEM_WARNING;
    if (a <= t->caution) return PV_MEM_CAUTION;
    return PV_MEM_SAFE;
}

const char *pv_mem_status_name(pv_mem_status_t s) {
    static const char *names[PV_MEM_COUNT] = {"safe", "caution", "warning", "critical", "emergency"};
    return (unsigned)s < PV_MEM_COUNT ? names[s] : "unknown";
}
