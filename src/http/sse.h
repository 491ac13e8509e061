/* sse.h - Server-Sent Events framing: "event: NAME\ndata: JSON\n\n" (Anthropic),
 * or "data: JSON\n\n" without a name (OpenAI). */
#ifndef PV_SSE_H
#define PV_SSE_H

#include <event2/buffer.h>
#include <jansson.h>

/* Appends one event with data encoded compactly (borrows data); event NULL:
 * no event line. 0 or -1 on OOM. */
int pv_sse_event(struct evbuffer *out, const char *event, const json_t *data);

#endif
