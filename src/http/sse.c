/* sse.c - SSE framing. JSON from jansson never holds a raw newline, so one data line suffices. */
#include "http/sse.h"

#include <stdlib.h>

int pv_sse_event(struct evbuffer *out, const char *event, const json_t *data) {
    char *s = json_dumps(data, JSON_COMPACT);
    if (!s) return -1;
    int rc = (event ? evbuffer_add_printf(out, "event: %s\ndata: %s\n\n", event, s)
                    : evbuffer_add_printf(out, "data: %s\n\n", s)) < 0 ? -1 : 0;
    free(s);
    return rc;
}
