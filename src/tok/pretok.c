/* pretok.c - the pre-tokenizers of byte-level BPE (tokenizer.ggml.pre):
 * regexes that cut text into words before the merges run, with PCRE2 (JIT).
 *
 * Each pre-tokenizer is a list of regexes applied in turn, as llama.cpp's
 * unicode_regex_split() does: every regex cuts each word of the previous
 * pass into its matches and the text between them (which also stays a word).
 * A word is matched as a subject of its own, so look-ahead and \z stop at its
 * end. The regex lists are llama.cpp's (from each model's tokenizer.json),
 * rewritten so that PCRE2 gives the same words:
 *
 *   - \s and \S become the class WS of White_Space characters, which is
 *     llama.cpp's whitespace (PCRE2's \s lacks U+0085);
 *   - llama.cpp replaces every non-ASCII whitespace character by a vertical
 *     tab before matching, so explicit ranges never match one there: the
 *     CJK-and-more class [一-龥ࠀ-一가-퟿] and the range 　-。 leave them out;
 *   - $ becomes \z (PCRE2's $ also matches before a final newline);
 *   - (?i:'s|'t...) is spelled '[sS]|'[tT]... (ASCII case only, as llama.cpp).
 * Non-ASCII characters are written as \x{...} escapes: the deepseek-llm class
 * uses code points such as U+1F7D and U+212A that Unicode normalisation would
 * silently turn into others.
 *
 * Invalid UTF-8: llama.cpp turns each byte that does not start a valid
 * character into U+FFFD before splitting (its bytes are then lost). We split
 * a copy in which each such byte is U+FFFD, so the words are cut in the same
 * places, and map the cuts onto a second copy in which the invalid bytes stay
 * as they are wherever the vocabulary has a token for them (keep): encoding
 * is lossless there. The others (bytes such as C0 or FF, which never occur in
 * valid UTF-8 and which many vocabularies lack or reuse for Latin-1 letters)
 * stay U+FFFD, as in llama.cpp. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tok/tok_internal.h"
#include "tok/utf8.h"

/* ------------------------------------------------------------------ the regexes */

/* llama.cpp's whitespace: the White_Space property (body of a character class) */
#define WS "\\t\\n\\x0b\\f\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])"

/* Llama 3 and Qwen 2 differ only in how many digits make a word */
#define RE_LLAMA3_LIKE(DIGITS)                                                                                        \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" DIGITS           \
    "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+"

/* [一-龥ࠀ-一가-퟿] without the whitespace characters inside U+0800..U+4E00 */
#define RE_CJK                                                                                                         \
    "[\\x{800}-\\x{167f}\\x{1681}-\\x{1fff}\\x{200b}-\\x{2027}\\x{202a}-\\x{202e}\\x{2030}-\\x{205e}\\x{2060}-\\x{2fff}" \
    "\\x{3001}-\\x{9fa5}\\x{ac00}-\\x{d7ff}]+"

/* DeepSeek LLM's cased letters */
#define RE_DEEPSEEK_LETTERS                                                                                            \
    "[" WS "]?[A-Za-z\\x{b5}\\x{c0}-\\x{d6}\\x{d8}-\\x{f6}\\x{f8}-\\x{1ba}\\x{1bc}-\\x{1bf}\\x{1c4}-\\x{293}"           \
    "\\x{295}-\\x{2af}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37b}-\\x{37d}\\x{37f}\\x{386}\\x{388}-\\x{38a}\\x{38c}"      \
    "\\x{38e}-\\x{3a1}\\x{3a3}-\\x{3f5}\\x{3f7}-\\x{481}\\x{48a}-\\x{52f}\\x{531}-\\x{556}\\x{10a0}-\\x{10c5}"          \
    "\\x{13a0}-\\x{13f5}\\x{13f8}-\\x{13fd}\\x{1c90}-\\x{1cba}\\x{1cbd}-\\x{1cbf}\\x{1d00}-\\x{1d2b}\\x{1d6b}-\\x{1d77}" \
    "\\x{1d79}-\\x{1d9a}\\x{1e00}-\\x{1f15}\\x{1f18}-\\x{1f1d}\\x{1f20}-\\x{1f45}\\x{1f48}-\\x{1f4d}\\x{1f50}-\\x{1f57}" \
    "\\x{1f59}\\x{1f5b}\\x{1f5d}\\x{1f5f}-\\x{1f7d}\\x{1f80}-\\x{1fb4}\\x{1fb6}-\\x{1fbc}\\x{1fbe}\\x{1fc2}-\\x{1fc4}"   \
    "\\x{1fc6}-\\x{1fcc}\\x{1fd0}-\\x{1fd3}\\x{1fd6}-\\x{1fdb}\\x{1fe0}-\\x{1fec}\\x{1ff2}-\\x{1ff4}\\x{1ff6}-\\x{1ffc}" \
    "\\x{2102}\\x{2107}\\x{210a}-\\x{2113}\\x{2115}\\x{2119}-\\x{211d}\\x{2124}\\x{2126}\\x{2128}\\x{212a}-\\x{212d}"    \
    "\\x{212f}-\\x{2134}\\x{2139}\\x{213c}-\\x{213f}\\x{2145}-\\x{2149}\\x{214e}\\x{2183}\\x{2184}\\x{2c00}-\\x{2c7b}"   \
    "\\x{2c7e}-\\x{2ce4}\\x{2ceb}-\\x{2cee}\\x{2cf2}\\x{2cf3}\\x{a640}-\\x{a66d}\\x{a680}-\\x{a69b}\\x{a722}-\\x{a76f}"  \
    "\\x{a771}-\\x{a787}\\x{a78b}-\\x{a78e}\\x{ab70}-\\x{abbf}\\x{fb00}-\\x{fb06}\\x{fb13}-\\x{fb17}\\x{ff21}-\\x{ff3a}" \
    "\\x{ff41}-\\x{ff5a}\\x{10400}-\\x{1044f}\\x{104b0}-\\x{104d3}\\x{104d8}-\\x{104fb}\\x{10c80}-\\x{10cb2}"            \
    "\\x{10cc0}-\\x{10cf2}\\x{118a0}-\\x{118df}\\x{1e900}-\\x{1e943}]+"

#define PRE_MAX_REGEX 6

typedef enum {
    PRE_DEFAULT,
    PRE_GPT2,
    PRE_LLAMA3,
    PRE_QWEN2,
    PRE_DEEPSEEK_LLM,
    PRE_DEEPSEEK_CODER,
    PRE_FALCON,
    PRE_STARCODER,
    PRE_COUNT
} pre_kind_t;

/* The regexes of each kind, applied in order; NULL-terminated. */
typedef struct {
    const char *regex[PRE_MAX_REGEX + 1];
} pre_traits_t;

static const pre_traits_t pre_traits[PRE_COUNT] = {
    [PRE_DEFAULT] = {{"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    [PRE_GPT2] = {{RE_GPT2}},
    [PRE_LLAMA3] = {{RE_LLAMA3_LIKE("{1,3}")}},
    [PRE_QWEN2] = {{RE_LLAMA3_LIKE("")}},
    [PRE_DEEPSEEK_LLM] = {{"[\\r\\n]", RE_DEEPSEEK_LETTERS,
                           "[" WS "]?[!-/:-~\\x{ff01}-\\x{ff0f}\\x{ff1a}-\\x{ff5e}\\x{2018}-\\x{201f}\\x{3001}-\\x{3002}]+",
                           "[" WS "]+\\z", RE_CJK, "\\p{N}+"}},
    [PRE_DEEPSEEK_CODER] = {{"[\\r\\n]", "[" WS "]?\\p{L}+", "[" WS "]?\\p{P}+", RE_CJK, "\\p{N}"}},
    [PRE_FALCON] = {{"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    [PRE_STARCODER] = {{"\\p{N}", RE_GPT2}},
};

/* tokenizer.ggml.pre values, with the loader settings llama.cpp ties to them.
 * "gpt-neox" is not a llama.cpp name (it would fall back to "default" with a
 * warning); the GPT-NeoX tokenizer's pre-tokenizer is GPT-2's, as for "mpt"
 * and "olmo", which use that tokenizer. */
typedef struct {
    const char *name;  /* tokenizer.ggml.pre */
    pre_kind_t kind;   /* regex list */
    unsigned flags;    /* PV__PRE_* */
} pre_name_t;

static const pre_name_t pre_names[] = {
    {"default", PRE_DEFAULT, 0},
    {"gpt-2", PRE_GPT2, 0},
    {"gpt-neox", PRE_GPT2, 0},
    {"mpt", PRE_GPT2, 0},
    {"olmo", PRE_GPT2, 0},
    {"phi-2", PRE_GPT2, 0},
    {"jais", PRE_GPT2, 0},
    {"llama-bpe", PRE_LLAMA3, PV__PRE_IGNORE_MERGES | PV__PRE_ADD_BOS},
    {"llama3", PRE_LLAMA3, PV__PRE_IGNORE_MERGES | PV__PRE_ADD_BOS},
    {"llama-v3", PRE_LLAMA3, PV__PRE_IGNORE_MERGES | PV__PRE_ADD_BOS},
    {"falcon3", PRE_LLAMA3, PV__PRE_IGNORE_MERGES | PV__PRE_ADD_BOS},
    {"pixtral", PRE_LLAMA3, PV__PRE_IGNORE_MERGES | PV__PRE_ADD_BOS},
    {"dbrx", PRE_LLAMA3, 0},
    {"smaug-bpe", PRE_LLAMA3, 0},
    {"chatglm-bpe", PRE_LLAMA3, PV__PRE_NO_BOS},
    {"glm4", PRE_LLAMA3, PV__PRE_NO_BOS},
    {"qwen2", PRE_QWEN2, 0},
    {"deepseek-r1-qwen", PRE_QWEN2, 0},
    {"stablelm2", PRE_QWEN2, 0},
    {"megrez", PRE_QWEN2, 0},
    {"deepseek-llm", PRE_DEEPSEEK_LLM, 0},
    {"deepseek-coder", PRE_DEEPSEEK_CODER, 0},
    {"falcon", PRE_FALCON, 0},
    {"starcoder", PRE_STARCODER, 0},
    {"refact", PRE_STARCODER, 0},
    {"smollm", PRE_STARCODER, 0},
    {"command-r", PRE_STARCODER, 0},
    {"codeshell", PRE_STARCODER, 0},
    {"exaone", PRE_STARCODER, 0},
    {"minerva-7b", PRE_STARCODER, 0},
};

struct pv__pretok {
    const pre_name_t *info;             /* entry of pre_names, static */
    int n_regex;                        /* 1..PRE_MAX_REGEX */
    pcre2_code *code[PRE_MAX_REGEX];    /* compiled regexes (JIT when available); owned */
};

/* ------------------------------------------------------------------ compile */

int pv__pretok_new(const char *name, size_t len, const char *path, pv__pretok_t **out, char *err, size_t errlen) {
    *out = NULL;
    const pre_name_t *info = NULL;
    for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
        if (strlen(pre_names[i].name) == len && memcmp(pre_names[i].name, name, len) == 0) info = &pre_names[i];
    if (!info) {
        char shown[48];
        size_t n = len < sizeof shown - 1 ? len : sizeof shown - 1;
        for (size_t i = 0; i < n; i++) shown[i] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
        shown[n] = 0;
        return pv_errorf(err, errlen, PV_EUNSUPPORTED,
                         "%s: tokenizer.ggml.pre \"%s\" is an unknown pre-tokenizer (known: gpt-2, llama-bpe, qwen2, "
                         "deepseek-llm, deepseek-coder, falcon, starcoder, refact, mpt, gpt-neox, smollm, default, ...)",
                         path, shown);
    }
    pv__pretok_t *p = calloc(1, sizeof *p);
    if (!p) return pv_errorf(err, errlen, PV_ENOMEM, "%s: out of memory", path);
    p->info = info;
    const pre_traits_t *t = &pre_traits[info->kind];
    for (; p->n_regex < PRE_MAX_REGEX && t->regex[p->n_regex]; p->n_regex++) {
        int code;
        PCRE2_SIZE at;
        pcre2_code *c = pcre2_compile((PCRE2_SPTR)t->regex[p->n_regex], PCRE2_ZERO_TERMINATED,
                                      PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &code, &at, NULL);
        if (!c) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(code, msg, sizeof msg);
            int which = p->n_regex;
            pv__pretok_free(p);
            return pv_errorf(err, errlen, PV_EUNSUPPORTED, "%s: pre-tokenizer \"%s\": regex %d: %s at %zu", path,
                             info->name, which, (const char *)msg, (size_t)at);
        }
        p->code[p->n_regex] = c;
        pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* without JIT (unsupported CPU) the interpreter runs */
    }
    *out = p;
    return 0;
}

void pv__pretok_free(pv__pretok_t *p) {
    if (!p) return;
    for (int i = 0; i < p->n_regex; i++) pcre2_code_free(p->code[i]);
    free(p);
}

const char *pv__pretok_name(const pv__pretok_t *p) { return p->info->name; }
unsigned pv__pretok_flags(const pv__pretok_t *p) { return p->info->flags; }

/* ------------------------------------------------------------------ split */

void pv__words_close(pv__words_t *w) {
    if (!w) return;
    free(w->ends);
    free(w->tmp);
    free(w->fixed);
    free(w->repaired);
    free(w->map);
    pcre2_match_data_free(w->md);
    memset(w, 0, sizeof *w);
}

/* Room for `need` word ends in ends and tmp. */
static int words_reserve(pv__words_t *w, size_t need) {
    if (need <= w->cap) return 0;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < need) cap *= 2;
    uint32_t *a = realloc(w->ends, cap * sizeof *a);
    if (!a) return -1;
    w->ends = a;
    uint32_t *b = realloc(w->tmp, cap * sizeof *b);
    if (!b) return -1;
    w->tmp = b;
    w->cap = cap;
    return 0;
}

/* Appends the end of a word to list `which` (0: ends, 1: tmp) of *n entries. */
static int push_end(pv__words_t *w, int which, size_t *n, size_t end) {
    if (*n == w->cap && words_reserve(w, *n + 1)) return -1;
    (which ? w->tmp : w->ends)[(*n)++] = (uint32_t)end;
    return 0;
}

/* Cuts subject[0..len) (which starts at byte base of the text) into the
 * matches of code and the gaps between them; appends the word ends. */
static int split_one(pv__words_t *w, const pcre2_code *code, const char *subject, size_t len, size_t base,
                     int which, size_t *n) {
    pcre2_match_data *md = w->md;
    size_t prev = 0, from = 0;
    while (from < len) {
        int rc = pcre2_match(code, (PCRE2_SPTR)subject, len, from, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* the interpreter keeps its frames on the heap */
            rc = pcre2_match(code, (PCRE2_SPTR)subject, len, from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return -1;
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t start = ov[0], end = ov[1];
        if (end <= start) { /* an empty match (none of our regexes has one): step over a character */
            int k = pv_utf8_next(subject + start, len - start, NULL);
            from = start + (size_t)(k > 0 ? k : 1);
            continue;
        }
        if (start > prev && push_end(w, which, n, base + start)) return -1; /* the gap before it */
        if (push_end(w, which, n, base + end)) return -1;
        prev = from = end;
    }
    if (prev < len && push_end(w, which, n, base + len)) return -1;
    return 0;
}

/* Writes w->fixed (each invalid byte as U+FFFD), w->repaired (the invalid
 * bytes in keep as they are, the others as U+FFFD) and w->map from the one to
 * the other; returns the length of fixed. */
static size_t fix_utf8(pv__words_t *w, const char *text, size_t len, const uint64_t keep[4]) {
    size_t o = 0, r = 0;
    for (size_t i = 0; i < len;) {
        int k = pv_utf8_next(text + i, len - i, NULL);
        if (k > 0) {
            for (int j = 0; j < k; j++, o++, r++) w->map[o] = (uint32_t)r, w->fixed[o] = w->repaired[r] = text[i + (size_t)j];
            i += (size_t)k;
            continue;
        }
        unsigned char c = (unsigned char)text[i++];
        for (int j = 0; j < 3; j++) w->map[o] = (uint32_t)r, w->fixed[o++] = PV_UTF8_REPLACEMENT[j];
        if (keep[c >> 6] >> (c & 63) & 1) {
            w->repaired[r++] = (char)c;
        } else {
            memcpy(w->repaired + r, PV_UTF8_REPLACEMENT, 3);
            r += 3;
        }
    }
    w->map[o] = (uint32_t)r;
    return o;
}

int pv__pretok_split(const pv__pretok_t *p, const char *text, size_t len, const uint64_t keep[4], pv__words_t *w) {
    w->n = 0;
    w->text = text;
    if (len == 0) return 0;
    if (!w->md && !(w->md = pcre2_match_data_create(1, NULL))) return -1;
    const char *subject = text;
    size_t n_subject = len;
    int fixed = !pv_utf8_valid(text, len);
    if (fixed) {
        if (len > (SIZE_MAX - 1) / 3 || 3 * len > UINT32_MAX) return -1;
        if (w->fixed_cap < 3 * len) {
            free(w->fixed);
            free(w->repaired);
            free(w->map);
            w->fixed = malloc(3 * len);
            w->repaired = malloc(3 * len);
            w->map = malloc((3 * len + 1) * sizeof *w->map);
            w->fixed_cap = w->fixed && w->repaired && w->map ? 3 * len : 0;
            if (!w->fixed_cap) return -1;
        }
        n_subject = fix_utf8(w, text, len, keep);
        subject = w->fixed;
        w->text = w->repaired;
    }
    if (words_reserve(w, 64)) return -1;
    /* regex 0 cuts the whole text; each later one cuts every word of the
     * previous pass; the lists alternate between ends (0) and tmp (1) */
    int cur = 0;
    size_t n_cur = 0;
    if (split_one(w, p->code[0], subject, n_subject, 0, cur, &n_cur)) return -1;
    for (int r = 1; r < p->n_regex; r++) {
        size_t n_next = 0, start = 0;
        for (size_t i = 0; i < n_cur; i++) {
            size_t end = (cur ? w->tmp : w->ends)[i]; /* re-read: push_end may move the lists */
            /* one character stays one word, matched or not: no need to ask */
            int one = pv_utf8_next(subject + start, end - start, NULL) == (int)(end - start);
            if (one ? push_end(w, !cur, &n_next, end)
                    : split_one(w, p->code[r], subject + start, end - start, start, !cur, &n_next))
                return -1;
            start = end;
        }
        cur = !cur;
        n_cur = n_next;
    }
    if (cur) memcpy(w->ends, w->tmp, n_cur * sizeof *w->ends);
    if (fixed)
        for (size_t i = 0; i < n_cur; i++) w->ends[i] = w->map[w->ends[i]];
    w->n = n_cur;
    return 0;
}
