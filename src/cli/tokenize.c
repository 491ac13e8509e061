/* tokenize.c - `pensieve tokenize` and `pensieve detokenize`: a model's
 * tokenizer from the command line. Both work from any GGUF that carries a
 * vocabulary, vocab-only files included (no tensors are read).
 *
 *   tokenize -m MODEL [--ids] [--bos] [--special] TEXT | -
 *       --ids: the ids on one line, separated by spaces; otherwise one line per
 *       token: the id and its piece, quoted, with \n, \t, \\ and bytes that
 *       are not printable UTF-8 escaped. No BOS unless --bos; special-token
 *       text is plain text unless --special. "-" reads the text from stdin,
 *       byte for byte (nothing stripped).
 *   detokenize -m MODEL ID... | -
 *       the text of the ids (special tokens rendered), exactly, with no
 *       newline added; "-" reads whitespace-separated ids from stdin.
 *
 * Exit status: 0, 1 for an unreadable model or input, 2 for usage errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "cli/cli.h"
#include "gguf/gguf.h"
#include "tok/utf8.h"
#include "tok/vocab.h"

#define TOKENIZE_USAGE "usage: pensieve tokenize -m MODEL [--ids] [--bos] [--special] TEXT | -\n"
#define DETOKENIZE_USAGE "usage: pensieve detokenize -m MODEL ID... | -\n"

/* ------------------------------------------------------------------ helpers */

/* Loads the vocabulary of path; NULL after printing the error. */
static pv_vocab_t *load_vocab(const char *path) {
    char err[PV_ERRLEN];
    gguf_file_t *f;
    if (gguf_open(path, &f, err, sizeof err) != 0) {
        fprintf(stderr, "pensieve: %s\n", err);
        return NULL;
    }
    pv_vocab_t *v = NULL;
    int rc = pv_vocab_load(f, &v, err, sizeof err);
    gguf_close(f); /* the vocab copies what it needs */
    if (rc) {
        fprintf(stderr, "pensieve: %s\n", err);
        return NULL;
    }
    return v;
}

/* Prints a piece quoted on one line: valid UTF-8 as it is, except the quote,
 * backslash and control characters; every other byte as \xNN. */
static void print_piece(const char *s, size_t len) {
    putchar('\'');
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        int k = pv_utf8_next(s + i, len - i, NULL);
        if (k > 1) {
            fwrite(s + i, 1, (size_t)k, stdout);
            i += (size_t)k;
            continue;
        }
        i++;
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\' || c == '\'') printf("\\%c", c);
        else if (c >= 0x20 && c < 0x7f) putchar(c);
        else printf("\\x%02x", c);
    }
    putchar('\'');
}

/* ------------------------------------------------------------------ tokenize */

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text_arg = NULL;
    int ids_only = 0, end_of_options = 0;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!end_of_options && strcmp(a, "--") == 0) end_of_options = 1;
        else if (!end_of_options && strcmp(a, "-m") == 0 && i + 1 < argc) model = argv[++i];
        else if (!end_of_options && strcmp(a, "--ids") == 0) ids_only = 1;
        else if (!end_of_options && strcmp(a, "--bos") == 0) flags |= PV_TOK_ADD_BOS;
        else if (!end_of_options && strcmp(a, "--special") == 0) flags |= PV_TOK_SPECIAL;
        else if (!end_of_options && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            fputs(TOKENIZE_USAGE, stdout);
            return 0;
        } else if ((end_of_options || a[0] != '-' || a[1] == 0) && !text_arg) text_arg = a;
        else {
            fprintf(stderr, "pensieve: unexpected argument '%s'\n" TOKENIZE_USAGE, a);
            return 2;
        }
    }
    if (!model || !text_arg) {
        fputs(TOKENIZE_USAGE, stderr);
        return 2;
    }
    pv_vocab_t *v = load_vocab(model);
    if (!v) return 1;
    size_t len = strlen(text_arg);
    char *input = NULL; /* owned when the text came from stdin */
    const char *text = text_arg;
    if (strcmp(text_arg, "-") == 0) {
        if (!(input = cli_read_stream(stdin, "stdin", CLI_STDIN_MAX_BYTES, &len))) {
            pv_vocab_free(v);
            return 1;
        }
        text = input;
    }
    int n = pv_tokenize(v, text, len, flags, NULL, 0);
    int32_t *ids = n == PV_TOK_FAILED ? NULL : malloc((size_t)(n < 0 ? -n : 1) * sizeof *ids);
    if (ids && n < 0) n = pv_tokenize(v, text, len, flags, ids, -n);
    if (!ids || n < 0) {
        fprintf(stderr, "pensieve: cannot tokenize %zu bytes (out of memory, or more than 256 MiB)\n", len);
        free(ids);
        free(input);
        pv_vocab_free(v);
        return 1;
    }
    char small[256];
    for (int i = 0; i < n; i++) {
        if (ids_only) {
            printf(i ? " %d" : "%d", ids[i]);
            continue;
        }
        int need = pv_token_to_piece(v, ids[i], PV_DETOK_SPECIAL, NULL, 0);
        size_t n_piece = (size_t)(need < 0 ? -need : 0);
        char *piece = n_piece <= sizeof small ? small : malloc(n_piece);
        if (piece) pv_token_to_piece(v, ids[i], PV_DETOK_SPECIAL, piece, n_piece);
        printf("%7d ", ids[i]);
        print_piece(piece ? piece : "", piece ? n_piece : 0);
        putchar('\n');
        if (piece != small) free(piece);
    }
    if (ids_only) putchar('\n');
    free(ids);
    free(input);
    pv_vocab_free(v);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ detokenize */

/* Parses the ids of words[0..n_words); *n_out gets their number. NULL after
 * printing why (*n_out = 2: a bad id, a usage error; 1: out of memory). */
static int32_t *parse_ids(const pv_vocab_t *v, char **words, size_t n_words, int *n_out) {
    int32_t *ids = malloc((n_words ? n_words : 1) * sizeof *ids);
    if (!ids || n_words > (size_t)1 << 28) {
        fprintf(stderr, "pensieve: too many token ids\n");
        free(ids);
        *n_out = 1;
        return NULL;
    }
    for (size_t i = 0; i < n_words; i++) {
        long id;
        if (cli_parse_int("token id", words[i], 0, (long)pv_vocab_n_tokens(v) - 1, &id)) {
            free(ids);
            *n_out = 2;
            return NULL;
        }
        ids[i] = (int32_t)id;
    }
    *n_out = (int)n_words;
    return ids;
}

/* The whitespace-separated words of s (modified in place); caller frees the array. */
static char **split_words(char *s, size_t len, size_t *n_words) {
    char **words = malloc((len / 2 + 1) * sizeof *words); /* a word and a separator take 2 bytes */
    size_t n = 0;
    char *save = NULL;
    for (char *w = words ? strtok_r(s, " \t\r\n", &save) : NULL; w; w = strtok_r(NULL, " \t\r\n", &save))
        words[n++] = w;
    *n_words = n;
    return words;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    int first = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) model = argv[++i];
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(DETOKENIZE_USAGE, stdout);
            return 0;
        } else {
            first = i;
            break;
        }
    }
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], "-m") == 0) {
            fputs("pensieve: -m goes before the ids\n" DETOKENIZE_USAGE, stderr);
            return 2;
        }
    if (!model || first >= argc) {
        fputs(DETOKENIZE_USAGE, stderr);
        return 2;
    }
    pv_vocab_t *v = load_vocab(model);
    if (!v) return 1;
    char *input = NULL, **words = argv + first; /* input, and words when read from stdin: owned */
    size_t n_words = (size_t)(argc - first);
    if (n_words == 1 && strcmp(argv[first], "-") == 0) {
        size_t len;
        if (!(input = cli_read_stream(stdin, "stdin", CLI_STDIN_MAX_BYTES, &len)) || !(words = split_words(input, len, &n_words))) {
            if (input) fprintf(stderr, "pensieve: out of memory\n");
            free(input);
            pv_vocab_free(v);
            return 1;
        }
    }
    int n;
    int32_t *ids = parse_ids(v, words, n_words, &n);
    if (input) free(words);
    free(input);
    if (!ids) {
        pv_vocab_free(v);
        return n;
    }
    /* control tokens rendered; SentencePiece's leading space dropped, so that
     * detokenize undoes tokenize */
    unsigned flags = PV_DETOK_SPECIAL | PV_DETOK_STRIP_SPACE;
    int need = pv_detokenize(v, ids, n, flags, NULL, 0);
    size_t len = (size_t)(need < 0 ? -need : 0);
    char *text = need == PV_TOK_FAILED ? NULL : malloc(len ? len : 1);
    int rc = 0;
    if (!text) {
        fprintf(stderr, "pensieve: out of memory\n");
        rc = 1;
    } else {
        pv_detokenize(v, ids, n, flags, text, len);
        if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) rc = 1;
    }
    free(text);
    free(ids);
    pv_vocab_free(v);
    return rc;
}
