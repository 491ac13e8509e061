/* test_chat.c - the chat template engine: every reference case of
 * ../shared/templates (real templates rendered by Jinja2 with HF's settings,
 * byte for byte), the one-feature micro cases, and hostile templates that
 * must fail cleanly within the limits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "chat/jinja.h"
#include "suites.h"

/* Renders src with vars (NULL: none) at the fixed time iso; 0 or the error,
 * with the kind and message. *out is malloc'd (caller frees) on success. */
static int render_src(const char *src, size_t len, const json_t *vars, const char *iso,
                      const pv_jinja_limits_t *lim, char **out, pv_jinja_error_t *kind, char *err,
                      size_t errlen) {
    pv_jinja_t *t = NULL;
    pv_jinja_opts_t o = {0};
    *out = NULL;
    if (iso) ck_assert_int_eq(pv_jinja_parse_time(iso, &o.now), 0);
    o.has_now = iso != NULL;
    if (lim) o.limits = *lim;
    int rc = pv_jinja_parse(src, len, &t, err, errlen);
    if (rc) {
        *kind = PV_JINJA_SYNTAX;
        return rc;
    }
    size_t n; /* no case renders a NUL: callers use strlen */
    rc = pv_jinja_render(t, vars, &o, out, &n, kind, err, errlen);
    pv_jinja_free(t);
    return rc;
}

/* Compares one case: "expected" text, or an "error" (whose message must match
 * when it comes from raise_exception). 1 when it passes; prints why not. */
static int check_case(const char *id, const char *src, size_t len, const json_t *vars, const json_t *c) {
    char err[PV_ERRLEN], *out = NULL;
    pv_jinja_error_t kind;
    const char *now = json_string_value(json_object_get(c, "now"));
    int rc = render_src(src, len, vars, now, NULL, &out, &kind, err, sizeof err);
    const char *want = json_string_value(json_object_get(c, "expected"));
    const char *want_err = json_string_value(json_object_get(c, "error"));
    const char *err_kind = json_string_value(json_object_get(c, "error_kind"));
    int ok;
    if (want) {
        size_t wn = json_string_length(json_object_get(c, "expected"));
        ok = rc == 0 && strlen(out) == wn && memcmp(out, want, wn) == 0;
        if (!ok) printf("chat case %s: %s\n", id, rc ? err : "output differs");
    } else {
        int raised = err_kind && strcmp(err_kind, "raise_exception") == 0;
        ok = rc != 0 && (!raised || (kind == PV_JINJA_RAISED && want_err && strcmp(err, want_err) == 0));
        if (!ok) printf("chat case %s: want error '%s', got %s\n", id, want_err ? want_err : "?", rc ? err : "success");
    }
    free(out);
    return ok;
}

/* Each line of a .jsonl file under templates/cases, parsed; NULL if absent. */
static json_t *load_jsonl(const char *rel) {
    char path[1024];
    if (!tu_shared(path, sizeof path, rel)) return NULL;
    size_t n;
    char *text = tu_read_file(path, &n);
    ck_assert_ptr_nonnull(text);
    json_t *arr = json_array();
    for (char *line = text, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) nl = line + strlen(line) - 1;
        else *nl = 0;
        if (!*line) continue;
        json_error_t je;
        json_t *c = json_loads(line, 0, &je);
        ck_assert_msg(c != NULL, "%s: %s", rel, je.text);
        json_array_append_new(arr, c);
    }
    free(text);
    return arr;
}

START_TEST(test_micro_cases) {
    json_t *cases = load_jsonl("templates/cases/micro_cases.jsonl");
    if (!cases) return;
    size_t i, failed = 0;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *src = json_string_value(json_object_get(c, "template"));
        size_t len = json_string_length(json_object_get(c, "template"));
        failed += !check_case(json_string_value(json_object_get(c, "name")), src, len,
                              json_object_get(c, "context"), c);
    }
    printf("chat micro cases: %zu of %zu pass\n", json_array_size(cases) - failed, json_array_size(cases));
    ck_assert_uint_gt(json_array_size(cases), 60);
    ck_assert_uint_eq(failed, 0);
    json_decref(cases);
}
END_TEST

/* The template variables of a case, built as verify_cases.py documents. */
static json_t *case_globals(const json_t *c, const json_t *data) {
    const char *conv_name = json_string_value(json_object_get(c, "conversation"));
    json_t *msgs = NULL, *conv;
    size_t i;
    json_array_foreach(json_object_get(data, "conversations"), i, conv)
        if (strcmp(json_string_value(json_object_get(conv, "name")), conv_name) == 0)
            msgs = json_object_get(conv, "messages");
    ck_assert_msg(msgs != NULL, "no conversation %s", conv_name);
    json_t *g = json_object();
    json_object_set(g, "messages", msgs);
    json_object_set(g, "tools", json_is_true(json_object_get(c, "tools")) ? json_object_get(data, "tools") : json_null());
    json_object_set(g, "documents",
                    json_is_true(json_object_get(c, "documents")) ? json_object_get(data, "documents") : json_null());
    json_object_set(g, "add_generation_prompt", json_object_get(c, "add_generation_prompt"));
    json_object_set(g, "bos_token", json_object_get(c, "bos_token"));
    json_object_set(g, "eos_token", json_object_get(c, "eos_token"));
    json_object_update(g, json_object_get(c, "kwargs"));
    return g;
}

START_TEST(test_reference_cases) {
    char path[1024];
    json_t *cases = load_jsonl("templates/cases/cases.jsonl");
    if (!cases || !tu_shared(path, sizeof path, "templates/cases/conversations.json")) {
        json_decref(cases);
        return;
    }
    json_error_t je;
    json_t *data = json_load_file(path, 0, &je);
    ck_assert_msg(data != NULL, "conversations.json: %s", je.text);
    size_t i, failed = 0, n_raised = 0;
    json_t *c;
    json_array_foreach(cases, i, c) {
        char rel[512];
        snprintf(rel, sizeof rel, "templates/%s", json_string_value(json_object_get(c, "template")));
        size_t len;
        char *src = tu_shared(path, sizeof path, rel) ? tu_read_file(path, &len) : NULL;
        ck_assert_msg(src != NULL, "cannot read %s", rel);
        json_t *g = case_globals(c, data);
        failed += !check_case(json_string_value(json_object_get(c, "id")), src, len, g, c);
        n_raised += json_object_get(c, "error") != NULL;
        json_decref(g);
        free(src);
    }
    printf("chat reference cases: %zu of %zu pass (%zu expect an error)\n", json_array_size(cases) - failed,
           json_array_size(cases), n_raised);
    ck_assert_uint_ge(json_array_size(cases), 500);
    ck_assert_uint_eq(failed, 0);
    json_decref(data);
    json_decref(cases);
}
END_TEST

/* ---- direct checks of the API */

static char *render_ok(const char *src, const char *vars_json) {
    char err[PV_ERRLEN], *out;
    pv_jinja_error_t kind;
    json_t *vars = vars_json ? json_loads(vars_json, 0, NULL) : NULL;
    int rc = render_src(src, strlen(src), vars, "2025-03-07T09:05:00", NULL, &out, &kind, err, sizeof err);
    ck_assert_msg(rc == 0, "%s: %s", src, err);
    json_decref(vars);
    return out;
}

START_TEST(test_api_basics) {
    char *out = render_ok("{{ messages[0].content }}|{{ x|tojson }}", "{\"messages\":[{\"content\":\"hi\"}],\"x\":[1.5,null]}");
    ck_assert_str_eq(out, "hi|[1.5, null]");
    free(out);
    out = render_ok("{{ strftime_now('%A %d %B %Y %H:%M') }}", NULL);
    ck_assert_str_eq(out, "Friday 07 March 2025 09:05");
    free(out);
    out = render_ok("{% raw %}{{ x }}{% endraw %}{% filter upper %}a{{ 'b' }}{% endfilter %}"
                    "{% set b | trim %}  c  {% endset %}{{ b }}", NULL);
    ck_assert_str_eq(out, "{{ x }}ABc");
    free(out);
    out = render_ok("{{ '%s-%d'|format('a', 3) }} {{ 'x{}y'.format(1) }} {{ [3,1,2]|sort|join(',') }} "
                    "{{ {'b':1,'a':2}|dictsort }} {{ [1,2,2,'A','a']|unique|list }} {{ range(2, 9, 3)|list }}", NULL);
    ck_assert_str_eq(out, "a-3 x1y 1,2,3 [('a', 2), ('b', 1)] [1, 2, 'A'] [2, 5, 8]");
    free(out);
    out = render_ok("{{ 'héllo ωσ'|upper }} {{ 'ÀÉ ПРИВЕТ'|lower }} {{ 'élan vital'|title }}", NULL);
    ck_assert_str_eq(out, "HÉLLO ΩΣ àé привет Élan Vital");
    free(out);
    struct tm tm;
    ck_assert_int_eq(pv_jinja_parse_time("2025-13-01", &tm), PV_EINVAL);
    ck_assert_int_eq(pv_jinja_parse_time("not a date", &tm), PV_EINVAL);
    pv_jinja_free(NULL);
}
END_TEST

/* ---- hostile templates: each fails cleanly with the expected kind */

typedef struct hostile {
    const char *src;      /* the template; NULL ends the table */
    int kind;             /* expected pv_jinja_error_t */
    const char *contains; /* a piece of the message */
} hostile_t;

static const hostile_t HOSTILE[] = {
    {"{% if true %}never closed", PV_JINJA_SYNTAX, "endif"},
    {"{{ 'unterminated }}", PV_JINJA_SYNTAX, "string"},
    {"{# comment", PV_JINJA_SYNTAX, "comment"},
    {"{{ x ", PV_JINJA_SYNTAX, "end of template"},
    {"{% for %}", PV_JINJA_SYNTAX, "name"},
    {"{{ [1, 2 }}", PV_JINJA_SYNTAX, "unexpected"},
    {"{% include 'other.jinja' %}", PV_JINJA_SYNTAX, "unknown tag"},
    {"{% raw %}no end", PV_JINJA_SYNTAX, "raw"},
    {"{{ \"\\x4\" }}", PV_JINJA_SYNTAX, "escape"},
    {"{{ 99999999999999999999 }}", PV_JINJA_SYNTAX, "range"},
    {"{% for i in range(100000000) %}x{% endfor %}", PV_JINJA_LIMIT, "range()"},
    {"{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}",
     PV_JINJA_LIMIT, "iterations"},
    {"{{ 'ab' * 1000000000 }}", PV_JINJA_LIMIT, "limit"},
    {"{{ [1] * 1000000000000 }}", PV_JINJA_LIMIT, "limit"},
    {"{% set ns = namespace(s='xy') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     PV_JINJA_LIMIT, "limit"},
    {"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", PV_JINJA_LIMIT, "depth"},
    {"{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
     PV_JINJA_LIMIT, "exceeded"},
    {"{% set ns = namespace(x=[]) %}{% for i in range(2000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}",
     PV_JINJA_RUNTIME, "nested"},
    {"{% set ns = namespace(x=[]) %}{% for i in range(2000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|tojson }}",
     PV_JINJA_RUNTIME, "nested"},
    {"{{ 2 ** 100 }}", PV_JINJA_RUNTIME, "overflow"},
    {"{{ 1 // 0 }}", PV_JINJA_RUNTIME, "zero"},
    {"{{ 'a'[::0] }}", PV_JINJA_RUNTIME, "zero"},
    {"{{ nope() }}", PV_JINJA_RUNTIME, "'nope' is undefined"},
    {"{{ [].append(1) }}", PV_JINJA_RUNTIME, "unsafe"},
    {"{{ 'x'|no_such_filter }}", PV_JINJA_RUNTIME, "No filter named"},
    {"{{ raise_exception('Boom') }}", PV_JINJA_RAISED, "Boom"},
    {NULL, 0, NULL},
};

START_TEST(test_hostile_templates) {
    for (const hostile_t *h = HOSTILE; h->src; h++) {
        char err[PV_ERRLEN] = "", *out = NULL;
        pv_jinja_error_t kind = PV_JINJA_OK;
        clock_t t0 = clock();
        int rc = render_src(h->src, strlen(h->src), NULL, NULL, NULL, &out, &kind, err, sizeof err);
        double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
        ck_assert_msg(rc != 0, "%s: rendered instead of failing", h->src);
        ck_assert_msg((int)kind == h->kind, "%s: kind %d, want %d (%s)", h->src, kind, h->kind, err);
        ck_assert_msg(strstr(err, h->contains) != NULL, "%s: message '%s' lacks '%s'", h->src, err, h->contains);
        ck_assert_msg(secs < 3.0, "%s: took %.1f s", h->src, secs);
        ck_assert_ptr_null(out);
    }
}
END_TEST

START_TEST(test_deep_nesting) {
    /* 5000 open parentheses, 5000 nested ifs, then the same inside one tag */
    size_t n = 5000;
    char *src = malloc(20 * n + 64);
    ck_assert_ptr_nonnull(src);
    const char *pieces[] = {"(", "{% if true %}", "[", "not "};
    for (int k = 0; k < 4; k++) {
        size_t w = (size_t)sprintf(src, "{{ ");
        if (k == 1) w = 0;
        for (size_t i = 0; i < n; i++) w += (size_t)sprintf(src + w, "%s", pieces[k]);
        sprintf(src + w, k == 1 ? "x" : "1 }}");
        char err[PV_ERRLEN], *out;
        pv_jinja_error_t kind;
        int rc = render_src(src, strlen(src), NULL, NULL, NULL, &out, &kind, err, sizeof err);
        ck_assert_msg(rc != 0 && kind == PV_JINJA_SYNTAX, "piece %s: rc %d kind %d", pieces[k], rc, kind);
    }
    free(src);
}
END_TEST

START_TEST(test_small_limits) {
    pv_jinja_limits_t lim = {.max_output = 100, .max_steps = 50, .max_depth = 30};
    char err[PV_ERRLEN], *out;
    pv_jinja_error_t kind;
    const char *big = "{% for i in range(40) %}xxxx{% endfor %}";
    ck_assert_int_ne(render_src(big, strlen(big), NULL, NULL, &lim, &out, &kind, err, sizeof err), 0);
    ck_assert_int_eq(kind, PV_JINJA_LIMIT);
    const char *steps = "{% for i in range(10) %}{% for j in range(10) %}{% endfor %}{% endfor %}";
    ck_assert_int_ne(render_src(steps, strlen(steps), NULL, NULL, &lim, &out, &kind, err, sizeof err), 0);
    ck_assert_int_eq(kind, PV_JINJA_LIMIT);
    lim = (pv_jinja_limits_t){.max_memory = 1 << 20};
    const char *mem = "{% set ns = namespace(l=[]) %}{% for i in range(5000) %}{% set ns.l = ns.l + [i] %}{% endfor %}";
    ck_assert_int_ne(render_src(mem, strlen(mem), NULL, NULL, &lim, &out, &kind, err, sizeof err), 0);
    ck_assert_int_eq(kind, PV_JINJA_LIMIT);
    ck_assert_ptr_nonnull(strstr(err, "memory"));
}
END_TEST

/* Random byte edits of the real templates: parse and render must never crash. */
START_TEST(test_mutated_templates) {
    static const char *const names[] = {
        "Qwen-Qwen3-0.6B.jinja", "openai-gpt-oss-120b.jinja", "meta-llama-Llama-3.1-8B-Instruct.jinja",
        "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "mistralai-Mistral-Nemo-Instruct-2407.jinja"};
    char path[1024];
    if (!tu_shared(path, sizeof path, "templates/cases/conversations.json")) return;
    json_t *data = json_load_file(path, 0, NULL);
    ck_assert_ptr_nonnull(data);
    json_t *vars = json_object();
    json_object_set(vars, "messages", json_object_get(json_array_get(json_object_get(data, "conversations"), 0), "messages"));
    json_object_set(vars, "tools", json_object_get(data, "tools"));
    static const char alphabet[] = "{}%#-+()[]|.,'\"~ \nxis0";
    uint64_t seed = 12345;
    pv_jinja_limits_t lim = {.max_output = 1 << 20, .max_steps = 20000, .max_memory = 64 << 20};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        char rel[256];
        snprintf(rel, sizeof rel, "templates/%s", names[k]);
        size_t len;
        char *src = tu_shared(path, sizeof path, rel) ? tu_read_file(path, &len) : NULL;
        ck_assert_ptr_nonnull(src);
        char *mut = malloc(len + 1);
        for (int round = 0; round < 150; round++) {
            memcpy(mut, src, len + 1);
            for (int e = 0; e < 1 + round % 4; e++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                size_t at = (size_t)(seed >> 33) % len;
                mut[at] = alphabet[(seed >> 13) % (sizeof alphabet - 1)];
            }
            char err[PV_ERRLEN], *out = NULL;
            pv_jinja_error_t kind;
            render_src(mut, len, vars, NULL, &lim, &out, &kind, err, sizeof err);
            free(out);
        }
        free(mut);
        free(src);
    }
    json_decref(vars);
    json_decref(data);
}
END_TEST

Suite *chat_suite(void) {
    Suite *s = suite_create("chat");
    TCase *tc = tcase_create("jinja");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_micro_cases);
    tcase_add_test(tc, test_reference_cases);
    tcase_add_test(tc, test_api_basics);
    tcase_add_test(tc, test_hostile_templates);
    tcase_add_test(tc, test_deep_nesting);
    tcase_add_test(tc, test_small_limits);
    tcase_add_test(tc, test_mutated_templates);
    suite_add_tcase(s, tc);
    return s;
}
