/* err.h - error codes as values, with messages.
 *
 * Every fallible function returns 0 on success or a negative PV_E* code and,
 * where it takes one, writes a one-line human message into a caller-supplied
 * buffer (err, errlen). Only src/cli/ turns an error into an exit status. */
#ifndef PV_ERR_H
#define PV_ERR_H

#include <stddef.h>

#define PV_ERRLEN 512 /* a comfortable size for err buffers */

/* X(name, value, description) */
#define PV_ERRNO_MAP(X)                                              \
    X(OK, 0, "success")                                              \
    X(NOMEM, -1, "out of memory")                                    \
    X(IO, -2, "input/output error")                                  \
    X(CORRUPT, -3, "malformed or corrupt data")                      \
    X(UNSUPPORTED, -4, "unsupported feature")                        \
    X(INVAL, -5, "invalid argument")                                 \
    X(RANGE, -6, "value out of range")                               \
    X(NOTFOUND, -7, "not found")

typedef enum {
#define PV_ERR_ENUM(name, value, desc) PV_E##name = value,
    PV_ERRNO_MAP(PV_ERR_ENUM)
#undef PV_ERR_ENUM
} pv_errno_t;

/* Description of a PV_E* code; never NULL. */
const char *pv_strerror(int code);

/* Formats a message into err (if non-NULL) and returns code, so that a
 * failure path reads: return pv_errorf(err, errlen, PV_ECORRUPT, "...", ...); */
int pv_errorf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
