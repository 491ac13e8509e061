/* utf8.c - UTF-8 validation and repair, and the streaming detokenizer.
 *
 * Well-formed sequences (Unicode, table 3-7): the second byte's range depends
 * on the lead byte, every later byte is 80..BF.
 *
 *   lead     bytes  second byte
 *   00..7F   1      -
 *   C2..DF   2      80..BF
 *   E0       3      A0..BF   (no overlong forms)
 *   E1..EC   3      80..BF
 *   ED       3      80..9F   (no surrogates)
 *   EE..EF   3      80..BF
 *   F0       4      90..BF   (no overlong forms)
 *   F1..F3   4      80..BF
 *   F4       4      80..8F   (nothing above U+10FFFF)
 *   other    invalid lead (80..C1, F5..FF)                                   */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tok/utf8.h"

/* ------------------------------------------------------------------ classification */

int pv_utf8_next(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *p = (const unsigned char *)s;
    unsigned char b = p[0];
    if (b < 0x80) {
        if (cp) *cp = b;
        return 1;
    }
    int len;
    unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
    uint32_t c;
    if (b >= 0xc2 && b <= 0xdf) len = 2, c = b & 0x1fu;
    else if (b >= 0xe0 && b <= 0xef) len = 3, c = b & 0x0fu;
    else if (b >= 0xf0 && b <= 0xf4) len = 4, c = b & 0x07u;
    else return -1;
    if (b == 0xe0) lo = 0xa0;
    else if (b == 0xed) hi = 0x9f;
    else if (b == 0xf0) lo = 0x90;
    else if (b == 0xf4) hi = 0x8f;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0; /* a valid prefix so far: needs more bytes */
        unsigned char x = p[i];
        if (i == 1 ? (x < lo || x > hi) : (x & 0xc0) != 0x80) return -i;
        c = c << 6 | (x & 0x3fu);
    }
    if (cp) *cp = c;
    return len;
}

int pv_utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* ASCII runs, eight bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080u) break;
            i += 8;
        }
        if (i >= n) break;
        int k = pv_utf8_next(s + i, n - i, NULL);
        if (k <= 0) return 0;
        i += (size_t)k;
    }
    return 1;
}

size_t pv_utf8_repair(const char *in, size_t n, int final, char *out, size_t *n_used) {
    size_t i = 0, o = 0;
    while (i < n) {
        int k = pv_utf8_next(in + i, n - i, NULL);
        if (k > 0) {
            memcpy(out + o, in + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else if (k == 0 && !final) {
            break; /* an incomplete character at the end: keep it for later */
        } else {
            memcpy(out + o, PV_UTF8_REPLACEMENT, 3);
            o += 3;
            i += k < 0 ? (size_t)-k : n - i;
        }
    }
    if (n_used) *n_used = i;
    return o;
}

/* ------------------------------------------------------------------ streaming */

void pv_detok_stream_init(pv_detok_stream_t *s, const pv_vocab_t *v, unsigned flags) {
    memset(s, 0, sizeof *s);
    s->vocab = v;
    s->flags = flags;
}

void pv_detok_stream_close(pv_detok_stream_t *s) {
    if (!s) return;
    free(s->raw);
    free(s->out);
    s->raw = s->out = NULL;
    s->raw_cap = s->out_cap = 0;
    s->n_held = 0;
}

/* Makes *buf hold at least need bytes. */
static int reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    char *p = realloc(*buf, n);
    if (!p) return PV_ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

int pv_detok_stream_push(pv_detok_stream_t *s, int32_t id, const char **text, size_t *len) {
    *text = "";
    *len = 0;
    unsigned flags = s->flags;
    if (s->pushed) flags &= ~PV_DETOK_STRIP_SPACE;
    int n_piece = pv_token_to_piece(s->vocab, id, flags, NULL, 0);
    if (n_piece == PV_TOK_FAILED) return PV_ENOMEM;
    size_t piece = (size_t)(n_piece < 0 ? -n_piece : n_piece);
    size_t n_raw = (size_t)s->n_held + piece;
    /* at least a few bytes, so that the buffers exist even for empty pieces */
    if (reserve(&s->raw, &s->raw_cap, n_raw + 4) || reserve(&s->out, &s->out_cap, 3 * n_raw + 4)) return PV_ENOMEM;
    memcpy(s->raw, s->held, (size_t)s->n_held);
    if (piece) pv_token_to_piece(s->vocab, id, flags, s->raw + s->n_held, piece);
    size_t used;
    size_t n_out = pv_utf8_repair(s->raw, n_raw, 0, s->out, &used);
    s->n_held = (int)(n_raw - used); /* a proper prefix of one character: at most 3 bytes */
    memcpy(s->held, s->raw + used, (size_t)s->n_held);
    s->pushed = 1;
    *text = s->out;
    *len = n_out;
    return 0;
}

int pv_detok_stream_finish(pv_detok_stream_t *s, const char **text, size_t *len) {
    /* held bytes are a proper prefix of a valid character: one maximal subpart */
    *text = s->n_held ? PV_UTF8_REPLACEMENT : "";
    *len = s->n_held ? 3 : 0;
    s->n_held = 0;
    s->pushed = 0;
    return 0;
}
