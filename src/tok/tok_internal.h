/* tok_internal.h - what the tokenizer's files share: vocab.c (loading,
 * lookup, decoding), tokenize.c (special-token partition, pv_tokenize),
 * spm.c (SentencePiece encoding), bpe.c (byte-level BPE encoding) and
 * pretok.c (BPE pre-tokenizers). Not part of the public API: include
 * tok/vocab.h instead.
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

typedef struct pv__bpe pv__bpe_t;       /* bpe.c: merges and byte maps of a byte-level BPE vocab */
typedef struct pv__pretok pv__pretok_t; /* pretok.c: a compiled pre-tokenizer */

typedef struct {
    int32_t id;   /* a CONTROL, USER_DEFINED or UNKNOWN token */
    uint32_t len; /* its text length, the sort key (longest first, then lowest id) */
} pv__special_t;

struct pv_vocab {
    pv_vocab_kind_t kind;      /* tokenizer family */
    int32_t n_tokens;          /* entries in tokens, 1..PV__VOCAB_MAX_TOKENS */
    pv__token_t *tokens;       /* [n_tokens], owned */
    char *pool;                /* owned; every token's text, each followed by a NUL */
    int32_t *slots;            /* [slot_mask + 1] hash table of token ids keyed by text; -1 = empty; owned */
    uint32_t slot_mask;        /* table size - 1; the size is a power of two >= 2 * n_tokens */
    uint32_t max_len;          /* longest token text in bytes: longer strings are never tokens */
    int32_t byte_ids[256];     /* SPM: id for raw byte b: "<0xBB>", else the 1-byte token, else unk, else -1 (dropped) */
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
    uint64_t special_first[4]; /* bit b set: some special token's text starts with byte b */
    uint32_t *special_lens;    /* [n_special_lens] distinct text lengths of the specials, increasing; owned */
    int32_t n_special_lens;    /* entries in special_lens */
    int32_t *special_slots;    /* [special_mask + 1] hash table (pv__hash_bytes) of special ids by text; -1 = empty; owned */
    uint32_t special_mask;     /* table size - 1; the size is a power of two >= 2 * n_specials */
    uint64_t *pair_bits;       /* SPM only: [(pair_mask + 1) / 64] filter of the character pairs adjacent in some token; owned */
    uint32_t pair_mask;        /* bits in pair_bits - 1 (a power of two, >= 1024) */
    pv__bpe_t *bpe;            /* BPE only (else NULL): merges, byte maps, pre-tokenizer; owned */
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

/* FNV-1a: fast enough for short token texts, and deterministic. */
static inline uint32_t pv__hash_bytes(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* Id of the token whose text is exactly s[0..len), or -1. */
int32_t pv__vocab_find(const pv_vocab_t *v, const char *s, size_t len);

/* Text of token id (caller guarantees 0 <= id < n_tokens); borrowed. */
static inline const char *pv__token_text(const pv_vocab_t *v, int32_t id) {
    return v->pool + v->tokens[id].off;
}

/* ------------------------------------------------------------------ encoder output and the special-token partition (tokenize.c) */

/* Ids produced so far; only the first n_max are stored. */
typedef struct {
    int32_t *ids; /* caller's array of n_max ids (NULL when n_max is 0) */
    size_t n_max; /* capacity of ids */
    size_t n;     /* ids produced (may exceed n_max) */
} pv__ids_t;

static inline void pv__ids_push(pv__ids_t *o, int32_t id) {
    if (o->n < o->n_max) o->ids[o->n] = id;
    o->n++;
}

/* A piece of the input: a special token matched by its text, or text to encode. */
typedef struct {
    uint32_t off; /* first byte in the input */
    uint32_t len; /* length in bytes, > 0 */
    int32_t id;   /* special token id, or -1 for text still to encode */
} pv__frag_t;

typedef struct {
    pv__frag_t *a; /* [cap], owned */
    size_t n;      /* fragments in use */
    size_t cap;    /* fragments allocated */
} pv__frags_t;

/* Encoders: every fragment in order (special ones as their id). 0, or -1
 * when out of memory (or, for BPE, when the regex engine fails). */
int pv__spm_encode(const pv_vocab_t *v, const char *text, const pv__frags_t *frags, pv__ids_t *out);
int pv__bpe_encode(const pv_vocab_t *v, const char *text, const pv__frags_t *frags, pv__ids_t *out);

/* ------------------------------------------------------------------ byte-level BPE (bpe.c) */

/* GPT-2's byte-level alphabet: every byte stands for a printable character,
 * itself when it is printable (33..126, 161..172, 174..255), else the next
 * unused code point from U+0100 on, in byte order (0..32 -> U+0100..U+0120,
 * 127..160 -> U+0121..U+0142, 173 -> U+0143). */
static inline uint32_t pv__byte_to_cp(unsigned b) {
    if (b <= 32) return 256 + b;
    if (b >= 127 && b <= 160) return b + 162;
    if (b == 173) return 323;
    return b;
}

/* The byte a character of the alphabet stands for, or -1. */
static inline int pv__cp_to_byte(uint32_t c) {
    if ((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255)) return (int)c;
    if (c >= 256 && c <= 288) return (int)(c - 256);
    if (c >= 289 && c <= 322) return (int)(c - 162);
    if (c == 323) return 173;
    return -1;
}

/* Loads tokenizer.ggml.merges and the pre-tokenizer into *out (owned by the
 * vocab). The vocab's tokens and index must be loaded. */
int pv__bpe_load(const pv_vocab_t *v, const gguf_file_t *f, pv__pretok_t *pretok, pv__bpe_t **out, char *err,
                 size_t errlen);
void pv__bpe_free(pv__bpe_t *b); /* accepts NULL; frees the pre-tokenizer too */
const char *pv__bpe_pre_name(const pv__bpe_t *b);

/* ------------------------------------------------------------------ pre-tokenizers (pretok.c) */

/* pv__pretok_flags() bits: what llama.cpp's loader sets along with the pre type */
#define PV__PRE_IGNORE_MERGES 1u /* a word that is a token is emitted whole (Llama 3) */
#define PV__PRE_ADD_BOS 2u       /* add_bos_token defaults to true */
#define PV__PRE_NO_BOS 4u        /* no default BOS id (GLM-4) */

/* Compiles the pre-tokenizer named name[0..len) (tokenizer.ggml.pre).
 * PV_EUNSUPPORTED for an unknown name, naming it and path. */
int pv__pretok_new(const char *name, size_t len, const char *path, pv__pretok_t **out, char *err, size_t errlen);
void pv__pretok_free(pv__pretok_t *p); /* accepts NULL */
const char *pv__pretok_name(const pv__pretok_t *p); /* the canonical name, static */
unsigned pv__pretok_flags(const pv__pretok_t *p);

/* Words of one text, from the pre-tokenizer; scratch reused across calls. */
typedef struct {
    const char *text; /* the text the words cut: the input, or repaired (below); borrowed or = repaired */
    uint32_t *ends;   /* [n] byte offset in text where each word ends, increasing; the last is its length; owned */
    size_t n;         /* words */
    size_t cap;       /* entries allocated in ends and tmp */
    uint32_t *tmp;    /* [cap] the previous regex's words, while several regexes run; owned */
    char *fixed;      /* invalid UTF-8 only: the input with every invalid byte as U+FFFD (what the regexes see); owned */
    char *repaired;   /* invalid UTF-8 only: the input with the invalid bytes keep[] rejects as U+FFFD; owned */
    uint32_t *map;    /* invalid UTF-8 only: offset in repaired of each byte of fixed, and of its end; owned */
    size_t fixed_cap; /* bytes allocated in fixed and repaired (entries in map: + 1) */
    void *md;         /* pcre2_match_data_8, created on first use; owned */
} pv__words_t;

/* Splits text[0..len) into words as llama.cpp's unicode_regex_split does.
 * llama.cpp first turns every byte that does not start a valid UTF-8
 * character into U+FFFD; the regexes here see the same, but the words keep
 * such a byte when keep (a 256-bit set) holds it, so that encoding stays
 * lossless where the vocabulary can spell the byte. w->text and w->ends give
 * the words. 0, or -1 (out of memory, or the regex engine failed). */
int pv__pretok_split(const pv__pretok_t *p, const char *text, size_t len, const uint64_t keep[4], pv__words_t *w);
void pv__words_close(pv__words_t *w);

#endif
