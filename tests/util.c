#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "suites.h"

const char *tu_shared(char *buf, size_t len, const char *rel) {
    const char *root = getenv("PV_SHARED");
    snprintf(buf, len, "%s/%s", root && *root ? root : "../shared", rel);
    struct stat st;
    if (stat(buf, &st) != 0) {
        printf("skipped: %s is absent (set PV_SHARED to the shared folder)\n", buf);
        return NULL;
    }
    return buf;
}

/* The folder tests write generated files to, made if it is not there (make's
 * `models` target makes it too; a suite run on its own may come first). */
const char *tu_cache_dir(void) {
    const char *d = getenv("PV_CACHE");
    d = d && *d ? d : "build/cache";
    mkdir(d, 0755); /* EEXIST is the usual answer */
    return d;
}

char *tu_read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    if (buf) {
        buf[n] = 0;
        if (len) *len = (size_t)n;
    }
    return buf;
}
