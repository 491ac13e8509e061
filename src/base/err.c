#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *pv_strerror(int code) {
    switch (code) {
#define PV_ERR_CASE(name, value, desc) \
    case value: return desc;
        PV_ERRNO_MAP(PV_ERR_CASE)
#undef PV_ERR_CASE
    default: return "unknown error";
    }
}

int pv_errorf(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
