/* utf8.h - UTF-8 validation and repair, and a detokenizer that is safe for
 * streaming: it hands out only complete, valid UTF-8.
 *
 * A token may end inside a multi-byte character (byte-level BPE splits
 * characters freely; SentencePiece byte tokens carry one byte each). The
 * stream holds such a tail back until the character completes, so every
 * piece of text it hands out is valid UTF-8 on its own; bytes that can never
 * complete a character become U+FFFD at once, and a tail still held when the
 * generation ends becomes U+FFFD in pv_detok_stream_finish(). The
 * concatenation of everything handed out equals pv_utf8_repair() of the
 * concatenated pieces, however the bytes were split into tokens.
 *
 * Invalid input is repaired the way Unicode recommends ("maximal subparts",
 * also Python's and WHATWG's rule): each maximal prefix of a well-formed
 * sequence that cannot be completed becomes one U+FFFD, and so does each byte
 * that cannot start one. Overlong forms, surrogates (ED A0..BF) and values
 * above U+10FFFF are invalid.
 *
 * Ownership: pv_detok_stream_t is embedded by the caller (init/close) and
 * borrows the vocabulary, which must outlive it. Text handed out is borrowed
 * from the stream until its next call. */
#ifndef PV_UTF8_H
#define PV_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "tok/vocab.h"

#define PV_UTF8_REPLACEMENT "\xef\xbf\xbd" /* U+FFFD, 3 bytes */

/* Classifies the n >= 1 bytes at s:
 *   > 0  the first character is valid and that many bytes long (*cp gets it, if cp);
 *   0    all n bytes are a proper prefix of a valid character (more are needed);
 *   < 0  -(length of the maximal invalid subpart at s), which is one U+FFFD. */
int pv_utf8_next(const char *s, size_t n, uint32_t *cp);

/* 1 if s[0..n) is entirely valid UTF-8, else 0. */
int pv_utf8_valid(const char *s, size_t n);

/* Copies in[0..n) to out with every invalid subpart replaced by U+FFFD; out
 * must hold 3 * n bytes (the worst case). With final = 0 a trailing
 * incomplete character is left out (it may still complete) and *n_used says
 * how many input bytes were consumed; with final = 1 it becomes U+FFFD and
 * *n_used = n. n_used may be NULL. Returns the bytes written. */
size_t pv_utf8_repair(const char *in, size_t n, int final, char *out, size_t *n_used);

typedef struct {
    const pv_vocab_t *vocab; /* borrowed; outlives the stream */
    unsigned flags;          /* PV_DETOK_* for every token (STRIP_SPACE: the first token only) */
    int pushed;              /* 1 once a token was pushed (STRIP_SPACE applies before that only) */
    char held[4];            /* an incomplete character held back: its first n_held bytes */
    int n_held;              /* 0..3 */
    char *raw;               /* [raw_cap] held bytes + the current piece; owned */
    size_t raw_cap;          /* bytes allocated at raw */
    char *out;               /* [out_cap] text handed out by the last call; owned */
    size_t out_cap;          /* bytes allocated at out */
} pv_detok_stream_t;

void pv_detok_stream_init(pv_detok_stream_t *s, const pv_vocab_t *v, unsigned flags);
void pv_detok_stream_close(pv_detok_stream_t *s); /* frees the buffers; the stream may be init'ed again */

/* Decodes one token (ids outside the vocabulary decode to nothing). *text
 * and *len get the text completed by it: valid UTF-8, possibly empty, borrowed
 * until the next call. Returns 0, or PV_ENOMEM (the stream is unchanged). */
int pv_detok_stream_push(pv_detok_stream_t *s, int32_t id, const char **text, size_t *len);

/* Ends the stream: a held-back incomplete character comes out as U+FFFD.
 * Returns 0 (the stream can then be reused from an empty state). */
int pv_detok_stream_finish(pv_detok_stream_t *s, const char **text, size_t *len);

#endif
