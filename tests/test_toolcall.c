/* test_toolcall.c - the streaming tool-call parser: every family's syntax fed
 * whole, at every split point into two chunks, and byte by byte (each must give
 * the same text and calls); several calls; text before a call; malformed or
 * unfinished calls coming out as the text they were. Also the flattened
 * conversation of chat.c (what a template does not render as text, found by
 * probing it) and /apply-template's verbatim render. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/anthropic.h"
#include "api/openai.h"
#include "api/toolcall.h"
#include "base/err.h"
#include "chat/chat.h"
#include "suites.h"

/* What the sink saw: text and calls in order, calls as "<<name args>>". */
typedef struct {
    char buf[4096]; /* the transcript */
    size_t n;       /* its length */
    int n_calls;    /* calls seen */
    int last_text;  /* the last event was text (adjacent text events merge) */
} seen_t;

static void put(seen_t *s, const char *t, size_t n) {
    ck_assert_uint_lt(s->n + n, sizeof s->buf);
    memcpy(s->buf + s->n, t, n);
    s->n += n;
    s->buf[s->n] = 0;
}

static void on_text(void *ud, const char *t, size_t n) {
    ck_assert_uint_gt(n, 0);
    put(ud, t, n);
}

static void on_call(void *ud, const char *name, const char *args) {
    seen_t *s = ud;
    put(s, "<<", 2);
    put(s, name, strlen(name));
    put(s, " ", 1);
    put(s, args, strlen(args));
    put(s, ">>", 2);
    s->n_calls++;
}

/* Feeds text in the chunks that cuts (sorted offsets, n_cuts of them) makes, then finishes. */
static void run_cuts(pv_tc_family_t f, const char *text, const size_t *cuts, int n_cuts, seen_t *s) {
    memset(s, 0, sizeof *s);
    pv_tc_t *p = pv_tc_new(f);
    ck_assert_ptr_nonnull(p);
    pv_tc_sink_t sink = {on_text, on_call, s};
    size_t at = 0, len = strlen(text);
    for (int i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        ck_assert_int_eq(pv_tc_feed(p, text + at, end - at, &sink), 0);
        at = end;
    }
    ck_assert_int_eq(pv_tc_finish(p, &sink), 0);
    ck_assert_int_eq(pv_tc_n_calls(p), s->n_calls);
    pv_tc_free(p);
}

/* text must parse to want (with n_calls calls) whole, at every split point, and byte by byte. */
static void expect(pv_tc_family_t f, const char *text, const char *want, int n_calls) {
    seen_t s;
    run_cuts(f, text, NULL, 0, &s);
    ck_assert_msg(!strcmp(s.buf, want), "%s whole: got [%s] want [%s]", pv_tc_family_name(f), s.buf, want);
    ck_assert_int_eq(s.n_calls, n_calls);
    size_t len = strlen(text);
    for (size_t i = 0; i <= len; i++) {
        run_cuts(f, text, &i, 1, &s);
        ck_assert_msg(!strcmp(s.buf, want), "%s split at %zu: got [%s] want [%s]", pv_tc_family_name(f), i, s.buf,
                      want);
    }
    size_t *cuts = malloc((len + 1) * sizeof *cuts);
    for (size_t i = 0; i < len; i++) cuts[i] = i;
    run_cuts(f, text, cuts, (int)len, &s);
    free(cuts);
    ck_assert_msg(!strcmp(s.buf, want), "%s byte by byte: got [%s] want [%s]", pv_tc_family_name(f), s.buf, want);
}

/* Output that is no call comes out exactly as it went in. */
static void expect_text(pv_tc_family_t f, const char *text) { expect(f, text, text, 0); }

START_TEST(test_detect) {
    ck_assert_int_eq(pv_tc_detect(NULL), PV_TC_JSON);
    ck_assert_int_eq(pv_tc_detect("{{ '<tool_call>' }}<|im_start|>"), PV_TC_HERMES);
    ck_assert_int_eq(pv_tc_detect("[AVAILABLE_TOOLS]{{ '[TOOL_CALLS]' }}"), PV_TC_MISTRAL);
    ck_assert_int_eq(pv_tc_detect("<|start_header_id|>{{ tools }}"), PV_TC_LLAMA3);
    ck_assert_int_eq(pv_tc_detect("{{ messages }}"), PV_TC_JSON);
}
END_TEST

START_TEST(test_hermes) {
    const pv_tc_family_t H = PV_TC_HERMES;
    expect(H, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
           "Let me check.\n<<get_weather {\"city\":\"Paris\"}>>", 1);
    /* several calls; whitespace between them is no text block */
    expect(H, "<tool_call>{\"name\":\"a\",\"arguments\":{\"x\":[1,2]}}</tool_call>\n<tool_call>{\"name\":\"b\","
              "\"arguments\":\"{\\\"y\\\":\\\"</tool\\\"}\"}</tool_call>",
           "<<a {\"x\":[1,2]}>><<b {\"y\":\"</tool\"}>>", 2);
    /* no end tag before the end of the output: a whole payload is still a call */
    expect(H, "<tool_call>{\"name\":\"a\",\"arguments\":{}}", "<<a {}>>", 1);
    /* text after a call */
    expect(H, "<tool_call>{\"name\":\"a\"}</tool_call>\nDone.", "<<a {}>>Done.", 1);
    /* malformed: the text as it was */
    expect_text(H, "<tool_call>{\"name\": oops}</tool_call> and more");
    expect_text(H, "see <tool_call>{\"arguments\":{}}</tool_call>"); /* no name */
    expect_text(H, "<tool_call>{\"name\":\"a\",\"arguments\":{\"x\":"); /* unfinished */
    expect_text(H, "a < b and <tool_ or <tool_call"); /* marker prefixes */
    expect_text(H, "  plain text, no calls  \n");
    expect_text(H, "{\"name\": \"a\", \"arguments\": {}}"); /* JSON alone is not this family's syntax */
}
END_TEST

START_TEST(test_llama3) {
    const pv_tc_family_t L = PV_TC_LLAMA3;
    expect(L, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"s\": \"}{\\\"]\"}}",
           "<<get_weather {\"city\":\"Paris\",\"s\":\"}{\\\"]\"}>>", 1);
    expect(L, "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"x\": 1}}", "<<f {\"x\":1}>>", 1);
    expect(L, "\n\n{\"name\": \"f\", \"parameters\": {}}; {\"name\": \"g\", \"parameters\": {\"k\": null}}",
           "<<f {}>><<g {\"k\":null}>>", 2);
    expect(L, "I will call it: {\"name\": \"f\", \"parameters\": {}}", "I will call it: <<f {}>>", 1);
    expect_text(L, "Hello {world}, {\"a\": 1}");
    expect_text(L, "{\"name\": \"f\", \"parameters\": {\"x\": 1}"); /* unfinished */
    expect_text(L, "{\"not\": \"a call\"} and text");
    expect_text(L, "<|python_tag|>print(1)");
}
END_TEST

START_TEST(test_mistral) {
    const pv_tc_family_t M = PV_TC_MISTRAL;
    expect(M, "[TOOL_CALLS][{\"name\":\"a\",\"arguments\":{\"k\":\"v\"}},{\"name\":\"b\",\"arguments\":\"{\\\"z\\\":2}\"}]",
           "<<a {\"k\":\"v\"}>><<b {\"z\":2}>>", 2);
    expect(M, "Sure.[TOOL_CALLS] [{\"name\":\"a\",\"arguments\":{}}]", "Sure.<<a {}>>", 1);
    expect(M, "[{\"name\":\"a\",\"arguments\":{}}]", "<<a {}>>", 1); /* the marker decoded to nothing */
    expect_text(M, "[TOOL_CALLS][{\"name\":\"a\",\"arguments\":{}},{\"oops\":1}]"); /* one bad call: none */
    expect_text(M, "[TOOL_CALLS]no json");
    expect_text(M, "[1, 2, 3] are numbers");
    expect_text(M, "[]");
}
END_TEST

START_TEST(test_json) {
    const pv_tc_family_t J = PV_TC_JSON;
    expect(J, "  {\"name\": \"Bash\", \"arguments\": {\"command\": \"ls -la\"}}\n", "<<Bash {\"command\":\"ls -la\"}>>", 1);
    expect(J, "Sure. {\"name\": \"Bash\", \"arguments\": {}}", "Sure. <<Bash {}>>", 1);
    expect(J, "[{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\"}]", "<<a {}>><<b {}>>", 2);
    expect(J, "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>", "<<a {}>>", 1);
    expect_text(J, "{\"name\": \"Bash\", \"argu");
    expect_text(J, "{\"name\": \"Bash\", \"arguments\": [1]}"); /* arguments must be an object */
    expect_text(J, "{\"a\": 1} done");
    expect_text(J, "Just words, {\"name\" and nothing more");
    expect_text(J, " \n ");
    expect_text(J, "");
}
END_TEST

static void count_text(void *ud, const char *t, size_t n) { ((size_t *)ud)[0] += n; }
static void count_call(void *ud, const char *name, const char *args) { ((size_t *)ud)[1]++; }

START_TEST(test_utf8_and_cap) {
    expect(PV_TC_HERMES, "héllo ✓ <tool_call>{\"name\":\"é\",\"arguments\":{\"t\":\"✓\"}}</tool_call>",
           "héllo ✓ <<é {\"t\":\"✓\"}>>", 1);
    /* a call longer than the cap is text: nothing is held back forever */
    size_t n = PV_TC_MAX_CALL + 100;
    char *big = malloc(n + 1);
    memcpy(big, "<tool_call>", 11);
    memset(big + 11, 'x', n - 11);
    big[n] = 0;
    size_t counts[2] = {0, 0}; /* text bytes, calls */
    pv_tc_t *p = pv_tc_new(PV_TC_HERMES);
    pv_tc_sink_t sink = {count_text, count_call, counts};
    for (size_t at = 0; at < n; at += 4096)
        ck_assert_int_eq(pv_tc_feed(p, big + at, n - at < 4096 ? n - at : 4096, &sink), 0);
    ck_assert_uint_eq(counts[0], n); /* given up on before the end */
    pv_tc_finish(p, &sink);
    ck_assert_uint_eq(counts[0], n);
    ck_assert_uint_eq(counts[1], 0);
    pv_tc_free(p);
    free(big);
}
END_TEST

/* The conversation flattened for a template without tools (here: no template, the plain format). */
START_TEST(test_flatten_plain) {
    char err[256];
    pv_chat_t *c = NULL;
    ck_assert_int_eq(pv_chat_new(NULL, NULL, 0, &c, err, sizeof err), 0);
    json_t *msgs = json_loads("[{\"role\":\"user\",\"content\":\"ls\"},{\"role\":\"assistant\",\"content\":\"\","
                              "\"tool_calls\":[{\"id\":\"1\",\"type\":\"function\",\"function\":{\"name\":\"Bash\","
                              "\"arguments\":{\"command\":\"ls\"}}}]},{\"role\":\"tool\",\"tool_call_id\":\"1\","
                              "\"content\":\"a.txt\"}]",
                              0, NULL);
    json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"Bash\",\"description\":\"Run\","
                               "\"parameters\":{\"type\":\"object\"}}}]",
                               0, NULL);
    char *out = NULL;
    ck_assert_int_eq(pv_chat_render(c, msgs, tools, &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "System: # Tools\n\nYou may call these functions. To call one, answer with a JSON object "
                          "{\"name\": NAME, \"arguments\": {...}} and nothing else.\n\n- Bash: Run\n  parameters: "
                          "{\"type\":\"object\"}\nUser: ls\nAssistant: {\"name\":\"Bash\",\"arguments\":{\"command\":"
                          "\"ls\"}}\nUser: [tool_result] a.txt\nAssistant:");
    free(out);
    ck_assert_int_eq(pv_chat_tool_family(c), PV_TC_JSON);
    pv_chat_free(c);
    /* a template that renders tools itself gets them in HF's shape; bos_token is its text */
    const char *src = "{{ bos_token }}{% for t in tools %}[{{ t.function.name }}]{% endfor %}{% for m in messages %}"
                      "{{ m.role }}:{{ m.content }}{% if m.tool_calls %}{{ m.tool_calls[0].function.arguments | tojson }}"
                      "{% endif %};{% endfor %}<tool_call>";
    ck_assert_int_eq(pv_chat_new(src, NULL, 0, &c, err, sizeof err), 0);
    ck_assert_int_eq(pv_chat_render(c, msgs, tools, &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "[Bash]user:ls;assistant:{\"command\": \"ls\"};tool:a.txt;<tool_call>");
    ck_assert_int_eq(pv_chat_tool_family(c), PV_TC_HERMES);
    ck_assert_uint_eq(pv_chat_tok_flags(c, out), PV_TOK_SPECIAL);
    free(out);
    pv_chat_free(c);
    ck_assert_int_eq(pv_chat_new("{{ raise_exception('no: ' + messages[0].content) }}", NULL, 0, &c, err, sizeof err), 0);
    ck_assert_int_eq(pv_chat_render(c, msgs, NULL, &out, err, sizeof err), PV_EINVAL);
    ck_assert_str_eq(err, "no: ls");
    pv_chat_free(c);
    ck_assert_int_ne(pv_chat_new("{% if %}", NULL, 0, &c, err, sizeof err), 0);
    ck_assert_int_eq(pv_chat_new("{% if %}<|im_start|>", NULL, PV_CHAT_BUILTIN, &c, err, sizeof err), 0);
    ck_assert_int_eq(pv_chat_fmt(c), PV_FMT_CHATML);
    ck_assert_int_eq(pv_chat_templated(c), 0);
    pv_chat_free(c);
    json_decref(msgs);
    json_decref(tools);
}
END_TEST

/* A client's template options: add_generation_prompt, documents, kwargs over the defaults; the fixed clock;
 * the framing of client text removed for display. */
START_TEST(test_render_opts) {
    char err[256];
    pv_chat_t *c = NULL;
    const char *src = "{{ bos_token }}|{{ add_generation_prompt }}|{{ documents | tojson }}|{{ extra }}|"
                      "{{ strftime_now('%Y-%m-%d') }}|{{ messages[0].content }}";
    ck_assert_int_eq(pv_chat_new(src, NULL, 0, &c, err, sizeof err), 0);
    struct tm now = {.tm_year = 124, .tm_mon = 1, .tm_mday = 29};
    pv_chat_set_clock(c, &now);
    json_t *msgs = json_loads("[{\"role\":\"user\",\"content\":\"a\xee\x80\x80z\"}]", 0, NULL);
    json_t *docs = json_loads("[{\"text\":\"d\"}]", 0, NULL);
    json_t *kw = json_loads("{\"bos_token\":\"<B>\",\"extra\":\"x\"}", 0, NULL);
    pv_chat_opts_t o = {.add_generation_prompt = 0, .documents = docs, .kwargs = kw};
    char *out = NULL;
    ck_assert_int_eq(pv_chat_render_opts(c, msgs, NULL, &o, &out, err, sizeof err), 0);
    ck_assert_ptr_null(strstr(out, "|a\xee\x80\x80z")); /* the client's marker character is framed */
    ck_assert_uint_eq(pv_chat_unframe(out), strlen(out));
    ck_assert_str_eq(out, "<B>|False|[{\"text\": \"d\"}]|x|2024-02-29|a\xee\x80\x80z");
    free(out);
    ck_assert_int_eq(pv_chat_render(c, msgs, NULL, &out, err, sizeof err), 0); /* the defaults */
    pv_chat_unframe(out);
    ck_assert_str_eq(out, "|True|null||2024-02-29|a\xee\x80\x80z");
    free(out);
    json_object_set_new(kw, "messages", json_array());
    ck_assert_int_eq(pv_chat_render_opts(c, msgs, NULL, &o, &out, err, sizeof err), PV_EINVAL);
    ck_assert_ptr_null(out);
    pv_chat_free(c);
    json_decref(msgs);
    json_decref(docs);
    json_decref(kw);
}
END_TEST

/* POST /apply-template's parse: the messages as /v1/chat/completions converts them (object arguments kept,
 * JSON-text arguments parsed, null content as ""), the template's own error message. */
START_TEST(test_apply_template) {
    char err[256];
    pv_chat_t *c = NULL;
    const char *src = "{{ tools }}{% for m in messages %}{{ m.role }}:{{ m.content }}{% for t in m.tool_calls or [] %}"
                      "={{ t.function.arguments | tojson }}{% endfor %};{% endfor %}{{ add_generation_prompt }}"
                      "{% if documents %}{{ raise_exception('no documents') }}{% endif %}";
    ck_assert_int_eq(pv_chat_new(src, NULL, 0, &c, err, sizeof err), 0);
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"ls\"},{\"role\":\"assistant\","
                       "\"content\":null,\"tool_calls\":[{\"id\":\"1\",\"type\":\"function\",\"function\":"
                       "{\"name\":\"Bash\",\"arguments\":{\"command\":\"ls\"}}},{\"id\":\"2\",\"type\":\"function\","
                       "\"function\":{\"name\":\"Bash\",\"arguments\":\"{\\\"n\\\": 1}\"}}]}],"
                       "\"add_generation_prompt\":false%s}";
    char b[1024];
    snprintf(b, sizeof b, body, "");
    char *prompt = NULL;
    pv_oai_err_t e;
    ck_assert_int_eq(pv_oai_apply_template(b, strlen(b), c, &prompt, &e), 0);
    ck_assert_str_eq(prompt, "Noneuser:ls;assistant:={\"command\": \"ls\"}={\"n\": 1};False");
    free(prompt);
    snprintf(b, sizeof b, body, ",\"documents\":[{\"text\":\"d\"}]");
    ck_assert_int_eq(pv_oai_apply_template(b, strlen(b), c, &prompt, &e), -1);
    ck_assert_str_eq(e.msg, "no documents");
    ck_assert_str_eq(e.param, "messages");
    snprintf(b, sizeof b, body, ",\"chat_template_kwargs\":[]");
    ck_assert_int_eq(pv_oai_apply_template(b, strlen(b), c, &prompt, &e), -1);
    ck_assert_str_eq(e.param, "chat_template_kwargs");
    pv_chat_free(c);
}
END_TEST

/* Renders msgs/tools (JSON texts) with c into a fresh string (unframed), asserting rc; NULL on an error. */
static char *render_json(const pv_chat_t *c, const char *msgs, const char *tools, int rc_want, char *err, size_t n) {
    json_t *m = json_loads(msgs, 0, NULL), *t = tools ? json_loads(tools, 0, NULL) : NULL;
    ck_assert_ptr_nonnull(m);
    char *out = NULL;
    ck_assert_int_eq(pv_chat_render(c, m, t, &out, err, n), rc_want);
    if (out) pv_chat_unframe(out);
    json_decref(m);
    json_decref(t);
    return out;
}

#define T_BASH "[{\"type\":\"function\",\"function\":{\"name\":\"Bash\",\"description\":\"Run\"}}]"
#define T_LOOP                                                                                                     \
    "[{\"role\":\"user\",\"content\":\"ls\"},{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"1\"," \
    "\"type\":\"function\",\"function\":{\"name\":\"Bash\",\"arguments\":{\"command\":\"ls\"}}}]},"                  \
    "{\"role\":\"tool\",\"tool_call_id\":\"1\",\"name\":\"Bash\",\"content\":\"a.txt\"}]"
#define T_BLOCK                                                                                                    \
    "# Tools\n\nYou may call these functions. To call one, answer with a JSON object {\"name\": NAME, "             \
    "\"arguments\": {...}} and nothing else.\n\n- Bash: Run"

/* What a template renders itself is found by rendering, and only the rest is flattened: a Gemma-like template
 * (no system role, strict alternation) gets the tools block in the first user message; a DeepSeek-like one
 * (calls and results its own way, no tools) keeps its own format for the turns and gets the tools as system
 * text; one that renders everything gets everything as given. */
START_TEST(test_caps) {
    char err[256];
    pv_chat_t *c = NULL;
    const char *gemma = "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}"
                        "{% endif %}{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}"
                        "{{ raise_exception('roles must alternate') }}{% endif %}<{{ m.role }}>{{ m.content }}|"
                        "{% endfor %}";
    ck_assert_int_eq(pv_chat_new(gemma, NULL, 0, &c, err, sizeof err), 0);
    ck_assert_uint_eq(pv_chat_caps(c), 0);
    char *out = render_json(c, "[{\"role\":\"user\",\"content\":\"hi\"}]", T_BASH, 0, err, sizeof err);
    ck_assert_str_eq(out, "<user>" T_BLOCK "\n\nhi|");
    free(out);
    out = render_json(c, "[{\"role\":\"assistant\",\"content\":\"hello\"}]", T_BASH, 0, err, sizeof err);
    ck_assert_str_eq(out, "<user>" T_BLOCK "|<assistant>hello|"); /* no user message: the block is one */
    free(out);
    out = render_json(c, T_LOOP, T_BASH, 0, err, sizeof err);
    ck_assert_str_eq(out, "<user>" T_BLOCK "\n\nls|<assistant>{\"name\":\"Bash\",\"arguments\":{\"command\":\"ls\"}}|"
                          "<user>[tool_result] a.txt|");
    free(out);
    /* two calls at once: their results and the user's next words are one user turn */
    out = render_json(c, "[{\"role\":\"user\",\"content\":\"ls\"},{\"role\":\"assistant\",\"content\":\"\","
                         "\"tool_calls\":[{\"function\":{\"name\":\"A\",\"arguments\":{}}},{\"function\":"
                         "{\"name\":\"B\",\"arguments\":{}}}]},{\"role\":\"tool\",\"content\":\"a\"},"
                         "{\"role\":\"tool\",\"content\":\"b\"},{\"role\":\"user\",\"content\":\"and?\"}]",
                      NULL, 0, err, sizeof err);
    ck_assert_str_eq(out, "<user>ls|<assistant>{\"name\":\"A\",\"arguments\":{}}\n{\"name\":\"B\",\"arguments\":{}}|"
                          "<user>[tool_result] a\n\n[tool_result] b\n\nand?|");
    free(out);
    out = render_json(c, "[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"hi\"}]", T_BASH,
                      PV_EINVAL, err, sizeof err); /* the client's own system message: the template's answer */
    ck_assert_str_eq(err, "System role not supported");
    pv_chat_free(c);

    const char *deepseek = "{% for m in messages %}{% if m.role == 'system' %}{{ m.content }}|{% endif %}"
                           "{% if m.role == 'user' %}<U>{{ m.content }}{% endif %}{% if m.role == 'assistant' %}<A>"
                           "{% for t in m.tool_calls or [] %}<call>{{ t.function.name }} "
                           "{{ t.function.arguments | tojson }}</call>{% endfor %}{{ m.content }}{% endif %}"
                           "{% if m.role == 'tool' %}<out>{{ m.content }}</out>{% endif %}{% endfor %}";
    ck_assert_int_eq(pv_chat_new(deepseek, NULL, 0, &c, err, sizeof err), 0);
    ck_assert_uint_eq(pv_chat_caps(c), PV_CHAT_RENDERS_CALLS | PV_CHAT_RENDERS_RESULTS | PV_CHAT_TAKES_SYSTEM);
    ck_assert_int_eq(pv_chat_tool_family(c), PV_TC_JSON); /* the block teaches the JSON syntax */
    out = render_json(c, T_LOOP, T_BASH, 0, err, sizeof err);
    ck_assert_str_eq(out, T_BLOCK "|<U>ls<A><call>Bash {\"command\": \"ls\"}</call><out>a.txt</out>");
    free(out);
    out = render_json(c, "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"x\"}]",
                      T_BASH, 0, err, sizeof err);
    ck_assert_str_eq(out, "Be brief.\n\n" T_BLOCK "|<U>x");
    free(out);
    pv_chat_free(c);

    const char *all = "{% for t in tools or [] %}[{{ t.function.name }}]{% endfor %}{% for m in messages %}"
                      "{{ m.role }}:{{ m.content }}{% for t in m.tool_calls or [] %}{{ t.function.arguments | tojson }}"
                      "{% endfor %};{% endfor %}";
    ck_assert_int_eq(pv_chat_new(all, NULL, 0, &c, err, sizeof err), 0);
    ck_assert_uint_eq(pv_chat_caps(c), PV_CHAT_RENDERS_TOOLS | PV_CHAT_RENDERS_CALLS | PV_CHAT_RENDERS_RESULTS |
                                           PV_CHAT_TAKES_SYSTEM);
    out = render_json(c, T_LOOP, T_BASH, 0, err, sizeof err);
    ck_assert_str_eq(out, "[Bash]user:ls;assistant:{\"command\": \"ls\"};tool:a.txt;");
    free(out);
    pv_chat_free(c);
    ck_assert_int_eq(pv_chat_new(NULL, NULL, 0, &c, err, sizeof err), 0); /* built-in: all flattened */
    ck_assert_uint_eq(pv_chat_caps(c), PV_CHAT_TAKES_SYSTEM);
    pv_chat_free(c);
}
END_TEST

/* /apply-template's "verbatim": messages and tools exactly as given (null content, JSON-text arguments, any
 * array elements, tools the template does not render); refused on /v1/chat/completions and without a template. */
START_TEST(test_verbatim) {
    char err[256];
    pv_chat_t *c = NULL;
    const char *src = "{{ tools | tojson }}|{% for m in messages %}{% if m is mapping %}{{ m.content }}"
                      "{% for t in m.tool_calls or [] %}={{ t.function.arguments | tojson }}{% endfor %}{% else %}"
                      "{{ m }}{% endif %};{% endfor %}";
    ck_assert_int_eq(pv_chat_new(src, NULL, 0, &c, err, sizeof err), 0);
    ck_assert_uint_eq(pv_chat_caps(c) & PV_CHAT_RENDERS_TOOLS, PV_CHAT_RENDERS_TOOLS);
    const char *body = "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"function\":"
                       "{\"name\":\"Bash\",\"arguments\":\"{\\\"n\\\": 1}\"}}]},7],\"tools\":[{\"x\":1}]%s}";
    char b[512];
    snprintf(b, sizeof b, body, ",\"verbatim\":true");
    char *prompt = NULL;
    pv_oai_err_t e;
    ck_assert_int_eq(pv_oai_apply_template(b, strlen(b), c, &prompt, &e), 0);
    pv_chat_unframe(prompt);
    ck_assert_str_eq(prompt, "[{\"x\": 1}]|None=\"{\\\"n\\\": 1}\";7;");
    free(prompt);
    snprintf(b, sizeof b, body, ""); /* adapted: messages must be messages, tools tools */
    ck_assert_int_eq(pv_oai_apply_template(b, strlen(b), c, &prompt, &e), -1);
    ck_assert_str_eq(e.param, "tools.0.function");
    snprintf(b, sizeof b, body, ",\"verbatim\":1");
    ck_assert_int_eq(pv_oai_apply_template(b, strlen(b), c, &prompt, &e), -1);
    ck_assert_str_eq(e.param, "verbatim");
    const char *chat = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"verbatim\":true}";
    pv_oai_req_t r;
    ck_assert_int_eq(pv_oai_parse(chat, strlen(chat), PV_OAI_CHAT, c, &r, &e), -1);
    ck_assert_str_eq(e.param, "verbatim");
    pv_chat_free(c);
    ck_assert_int_eq(pv_chat_new("{% if %}<|im_start|>", NULL, PV_CHAT_BUILTIN, &c, err, sizeof err), 0);
    const char *user = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"verbatim\":true}";
    ck_assert_int_eq(pv_oai_apply_template(user, strlen(user), c, &prompt, &e), -1);
    ck_assert_str_eq(e.msg, "a verbatim render needs a chat template (this model has built-in chatml)");
    pv_chat_free(c);
}
END_TEST

/* The response shapes of a parsed call, in both APIs. */
START_TEST(test_call_shapes) {
    json_t *b = pv_anth_tool_use("toolu_1", "Bash", "{\"command\":\"ls\"}");
    char *t = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_str_eq(t, "{\"id\":\"toolu_1\",\"input\":{\"command\":\"ls\"},\"name\":\"Bash\",\"type\":\"tool_use\"}");
    free(t);
    json_decref(b);
    pv_oai_meta_t m = {.kind = PV_OAI_CHAT, .id = "chatcmpl-1", .created = 1, .model = "m"};
    b = pv_oai_call_chunk(&m, 0, "call_1", "Bash", "{\"command\":\"ls\"}");
    t = json_dumps(json_object_get(json_array_get(json_object_get(b, "choices"), 0), "delta"), JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_str_eq(t, "{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"command\\\":\\\"ls\\\"}\",\"name\":\"Bash\"},"
                        "\"id\":\"call_1\",\"index\":0,\"type\":\"function\"}]}");
    free(t);
    ck_assert_str_eq(json_string_value(json_object_get(b, "object")), "chat.completion.chunk");
    json_decref(b);
}
END_TEST

Suite *toolcall_suite(void) {
    Suite *s = suite_create("toolcall");
    TCase *tc = tcase_create("toolcall");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_detect);
    tcase_add_test(tc, test_hermes);
    tcase_add_test(tc, test_llama3);
    tcase_add_test(tc, test_mistral);
    tcase_add_test(tc, test_json);
    tcase_add_test(tc, test_utf8_and_cap);
    tcase_add_test(tc, test_flatten_plain);
    tcase_add_test(tc, test_render_opts);
    tcase_add_test(tc, test_apply_template);
    tcase_add_test(tc, test_caps);
    tcase_add_test(tc, test_verbatim);
    tcase_add_test(tc, test_call_shapes);
    suite_add_tcase(s, tc);
    return s;
}
