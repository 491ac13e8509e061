/* vocab.h - a model's vocabulary and its tokenizer (encode text to ids, decode ids to text).
 *
 * Loaded from the tokenizer.ggml.* keys of any GGUF (vocab-only files included).
 * Supported tokenizer.ggml.model values: "llama" (SentencePiece, scores with
 * byte fallback) and "gpt2" (byte-level BPE: merges ranked by
 * tokenizer.ggml.merges, words cut by the pre-tokenizer tokenizer.ggml.pre,
 * see tok/pretok.c for the names). Other models and unknown pre-tokenizers
 * are refused at load with a message naming them.
 *
 * Behaviour follows llama.cpp's (token for token on valid UTF-8), with two
 * deliberate differences: byte-level BPE encodes invalid UTF-8 byte for byte
 * wherever the vocabulary has the byte (llama.cpp turns every invalid byte
 * into U+FFFD first; we do so only for bytes the vocabulary lacks), and
 * decoding never applies clean_up_tokenization_spaces, so that a streamed
 * text equals the whole.
 * For text decoded token by token as it is generated, see tok/utf8.h.
 *
 * Ownership: pv_vocab_load() copies what it needs; the vocab does not borrow
 * from the gguf_file_t after it returns. */
#ifndef PV_VOCAB_H
#define PV_VOCAB_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"

/* tokenizer.ggml.token_type values */
typedef enum {
    PV_TOKEN_UNDEFINED = 0,
    PV_TOKEN_NORMAL = 1,
    PV_TOKEN_UNKNOWN = 2,
    PV_TOKEN_CONTROL = 3,
    PV_TOKEN_USER_DEFINED = 4,
    PV_TOKEN_UNUSED = 5,
    PV_TOKEN_BYTE = 6,
} pv_token_type_t;

typedef enum {
    PV_VOCAB_SPM = 1, /* tokenizer.ggml.model = "llama" */
    PV_VOCAB_BPE = 2, /* tokenizer.ggml.model = "gpt2" (byte-level BPE) */
} pv_vocab_kind_t;

#define PV_TOK_FAILED INT_MIN /* pv_tokenize / pv_detokenize could not run */

/* pv_tokenize flags */
#define PV_TOK_ADD_BOS 1u /* prepend BOS (when the vocab has one) */
#define PV_TOK_SPECIAL 2u /* recognise control/user-defined token text in the input */

/* pv_detokenize / pv_token_to_piece flags */
#define PV_DETOK_SPECIAL 1u     /* render control tokens' text (otherwise they print nothing) */
#define PV_DETOK_STRIP_SPACE 2u /* drop the leading space SentencePiece adds to the first token */

typedef struct pv_vocab pv_vocab_t;

int pv_vocab_load(const gguf_file_t *f, pv_vocab_t **out, char *err, size_t errlen);
void pv_vocab_free(pv_vocab_t *v); /* accepts NULL */

pv_vocab_kind_t pv_vocab_kind(const pv_vocab_t *v);
const char *pv_vocab_kind_name(const pv_vocab_t *v); /* "SentencePiece (llama)", "byte-level BPE (gpt2)" */
const char *pv_vocab_pre(const pv_vocab_t *v);       /* BPE pre-tokenizer name ("qwen2", ...); NULL for SPM */
int32_t pv_vocab_n_tokens(const pv_vocab_t *v);
int32_t pv_vocab_bos(const pv_vocab_t *v);  /* -1 if none */
int32_t pv_vocab_eos(const pv_vocab_t *v);  /* -1 if none */
int32_t pv_vocab_unk(const pv_vocab_t *v);  /* -1 if none */
int32_t pv_vocab_pad(const pv_vocab_t *v);  /* -1 if none */
int pv_vocab_adds_bos(const pv_vocab_t *v); /* tokenizer.ggml.add_bos_token (default 1 for SPM and Llama 3, else 0) */
int pv_vocab_is_eog(const pv_vocab_t *v, int32_t id); /* end of generation: EOS, EOT, ... */
const char *pv_vocab_text(const pv_vocab_t *v, int32_t id); /* raw vocab entry, nul-terminated; NULL if out of range */
pv_token_type_t pv_vocab_type(const pv_vocab_t *v, int32_t id);

/* Encodes len bytes of text. Returns the number of ids; when that exceeds
 * n_max, returns -(number needed) and writes only n_max ids. Any byte
 * sequence is accepted (invalid UTF-8 goes through byte fallback, or byte-level
 * BPE's byte alphabet). Control and unknown tokens' texts are recognised only
 * with PV_TOK_SPECIAL; user-defined tokens' texts always.
 * PV_TOK_FAILED (INT_MIN) means out of memory, NULL text with len > 0, or
 * more than 256 MiB of input. */
int pv_tokenize(const pv_vocab_t *v, const char *text, size_t len, unsigned flags, int32_t *ids, int n_max);

/* Bytes of one token as text (SentencePiece '▁' -> ' ', <0xNN> -> the byte;
 * byte-level BPE characters -> their bytes). May end inside a UTF-8 character.
 * Returns the length; when that exceeds len, returns -(length needed). Not nul-terminated. */
int pv_token_to_piece(const pv_vocab_t *v, int32_t id, unsigned flags, char *buf, size_t len);

/* Concatenated pieces of ids (flags as above; PV_DETOK_STRIP_SPACE applies to
 * the first token only). Same return convention as pv_token_to_piece. */
int pv_detokenize(const pv_vocab_t *v, const int32_t *ids, int n, unsigned flags, char *buf, size_t len);

#endif
