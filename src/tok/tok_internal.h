/* tok_internal.h - what vocab.c (loading, lookup, decoding) and spm.c
 * (encoding) share. Not part of the public API: include tok/vocab.h instead.
 *
 * Return values beyond vocab.h: pv_tokenize() and pv_detokenize() return
 * PV__TOK_FAILED (INT_MIN) when they cannot answer at all: out of memory,
 * NULL text with a non-zero length, or an input longer than
 * PV__TOK_MAX_BYTES. It cannot be mistaken for -(ids needed), which is at
 * least -(INT_MAX). */
#ifndef PV_TOK_INTERNAL_H
#define PV_TOK_INTERNAL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "tok/vocab.h"

#define PV__TOK_FAILED PV_TOK_FAILED

/* Longest input pv_tokenize() accepts, in bytes (256 MiB): keeps every index
 * of the escaped text (up to 3 bytes per input byte) inside int32_t, and the
 * id count (at most 4 per input byte, byte fallback of '▁' included) inside int. */
#define PV__TOK_MAX_BYTES ((size_t)(INT32_MAX / 8))

/* Load-time caps on hostile vocabularies (real ones stay far below). */
#define PV__VOCAB_MAX_TOKENS (1 << 24)     /* entries in tokenizer.ggml.tokens */
#define PV__VOCAB_MAX_TOKEN_BYTES (1 << 20) /* bytes in one token's text */

/* pv__token_t.flags */
#define PV__TOK_EOG 1u    /* ends generation (EOS, EOT, EOM, <|end|>, ...) */
#define PV__TOK_RSTRIP 2u /* when matched as special text, swallows the whitespace after it (Phi-3) */

typedef struct {
    uint32_t off;  /* byte offset of the text in pv_vocab.pool */
    uint32_t len;  /* text length in bytes, >= 1; the pool holds a NUL after it */
    float score;   /* tokenizer.ggml.scores entry (0 if absent); higher merges first */
    uint8_t type;  /* pv_token_type_t, after llama.cpp's adjustments (control-looking texts become CONTROL) */
    uint8_t flags; /* PV__TOK_* bits */
} pv__token_t;

typedef struct {
    int32_t id;   /* a CONTROL, USER_DEFINED or UNKNOWN token */
    uint32_t len; /* its text length, the sort key (longest first, then lowest id) */
} pv__special_t;

struct pv_vocab {
    pv_vocab_kind_t kind;      /* tokenizer family (only SPM so far) */
    int32_t n_tokens;          /* entries in tokens, 1..PV__VOCAB_MAX_TOKENS */
    pv__token_t *tokens;       /* [n_tokens], owned */
    char *pool;                /* owned; every token's text, each followed by a NUL */
    int32_t *slots;            /* [slot_mask + 1] hash table of token ids keyed by text; -1 = empty; owned */
    uint32_t slot_mask;        /* table size - 1; the size is a power of two >= 2 * n_tokens */
    uint32_t max_len;          /* longest token text in bytes: longer strings are never tokens */
    int32_t byte_ids[256];     /* id for raw byte b: "<0xBB>", else the 1-byte token, else unk, else -1 (dropped) */
    int32_t bos;               /* beginning of sequence, -1 if none */
    int32_t eos;               /* end of sequence, -1 if none */
    int32_t eot;               /* end of turn (key or detected by text), -1 if none */
    int32_t eom;               /* end of message (Llama 3.1 tools), -1 if none */
    int32_t unk;               /* unknown, -1 if none */
    int32_t pad;               /* padding, -1 if none */
    int add_bos;               /* tokenizer.ggml.add_bos_token (default 1) */
    int add_eos;               /* tokenizer.ggml.add_eos_token (default 0); not applied by pv_tokenize */
    int add_space_prefix;      /* tokenizer.ggml.add_space_prefix (default 1) */
    pv__special_t *specials;   /* [n_specials] tokens matched as text before encoding, longest first; owned */
    int32_t n_specials;        /* entries in specials */
    uint64_t *pair_bits;       /* [(pair_mask + 1) / 64] filter of the character pairs adjacent in some token; owned */
    uint32_t pair_mask;        /* bits in pair_bits - 1 (a power of two, >= 1024) */
};

/* Bytes of the character at s (left > 0 bytes remain), as the encoder splits
 * text. llama.cpp takes the length its lead byte announces whatever follows
 * (cut at the end of the text), so an invalid lead byte swallows the next
 * characters; when one of them is an escaped space its bytes come out as byte
 * tokens that decode to '▁', not ' '. We take that length only when the bytes
 * after the lead are all continuation bytes, else the lead byte stands alone:
 * identical on valid UTF-8, lossless on invalid input. */
static inline int32_t pv__char_len(const char *s, int32_t left) {
    static const uint8_t by_high_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    int32_t n = by_high_nibble[(unsigned char)s[0] >> 4];
    if (n > left) n = left;
    for (int32_t i = 1; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80) return 1;
    return n;
}

/* Filter bit of the character pair (a, b), each 1..4 bytes. */
static inline uint32_t pv__pair_bit(uint32_t mask, const char *a, int32_t na, const char *b, int32_t nb) {
    uint64_t k = 0;
    for (int32_t i = 0; i < na; i++) k |= (uint64_t)(unsigned char)a[i] << (8 * i + 32);
    for (int32_t i = 0; i < nb; i++) k |= (uint64_t)(unsigned char)b[i] << (8 * i);
    k ^= k >> 31; /* splitmix64 finaliser */
    k *= 0xbf58476d1ce4e5b9u;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebu;
    k ^= k >> 31;
    return (uint32_t)k & mask;
}

/* 0 when no token has character a right before character b (so no merge can
 * ever join them); 1 when some token may (false positives are harmless). */
static inline int pv__pair_maybe(const pv_vocab_t *v, const char *a, int32_t na, const char *b, int32_t nb) {
    uint32_t bit = pv__pair_bit(v->pair_mask, a, na, b, nb);
    return (int)(v->pair_bits[bit >> 6] >> (bit & 63) & 1);
}

/* Id of the token whose text is exactly s[0..len), or -1. */
int32_t pv__vocab_find(const pv_vocab_t *v, const char *s, size_t len);

/* Text of token id (caller guarantees 0 <= id < n_tokens); borrowed. */
static inline const char *pv__token_text(const pv_vocab_t *v, int32_t id) {
    return v->pool + v->tokens[id].off;
}

#endif
