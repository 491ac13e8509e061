/* template.c - `pensieve template`: render a chat template from the command line.
 *
 *   template (-t FILE.jinja | -m MODEL.gguf) [-c CONTEXT.json]
 *       renders the template (a file, or the model's tokenizer.chat_template)
 *       with the variables of CONTEXT.json, a JSON object (messages, tools,
 *       documents, add_generation_prompt, bos_token, eos_token and any extra
 *       keys), and prints the result exactly, with no newline added. As in
 *       Hugging Face's apply_chat_template, tools and documents default to
 *       null and add_generation_prompt to false when the context omits them.
 *       strftime_now() formats PENSIEVE_NOW (ISO 8601 local time) when it is
 *       set, else the current time.
 *
 * Exit status: 0; 1 when the template fails (its message on stderr) or a file
 * cannot be read; 2 for usage errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "chat/jinja.h"
#include "cli/cli.h"
#include "gguf/gguf.h"

#define TEMPLATE_USAGE "usage: pensieve template (-t FILE.jinja | -m MODEL.gguf) [-c CONTEXT.json]\n"

/* The model's tokenizer.chat_template, copied; NULL after printing the error. */
static char *model_template(const char *path, size_t *len) {
    char err[PV_ERRLEN];
    gguf_file_t *f;
    if (gguf_open(path, &f, err, sizeof err) != 0) {
        fprintf(stderr, "pensieve: %s\n", err);
        return NULL;
    }
    const char *t = gguf_get_str(f, "tokenizer.chat_template");
    char *copy = t ? strdup(t) : NULL;
    gguf_close(f);
    if (!t) fprintf(stderr, "pensieve: %s has no tokenizer.chat_template\n", path);
    if (copy) *len = strlen(copy);
    return copy;
}

/* The context object with HF's always-defined variables filled in; owned
 * reference. NULL after printing the error. */
static json_t *load_context(const char *path) {
    json_error_t je;
    json_t *ctx = path ? json_load_file(path, 0, &je) : json_object();
    if (!ctx) {
        fprintf(stderr, "pensieve: %s:%d: %s\n", path, je.line, je.text);
        return NULL;
    }
    if (!json_is_object(ctx)) {
        fprintf(stderr, "pensieve: %s: the context must be a JSON object\n", path);
        json_decref(ctx);
        return NULL;
    }
    if (!json_object_get(ctx, "tools")) json_object_set_new(ctx, "tools", json_null());
    if (!json_object_get(ctx, "documents")) json_object_set_new(ctx, "documents", json_null());
    if (!json_object_get(ctx, "add_generation_prompt"))
        json_object_set_new(ctx, "add_generation_prompt", json_false());
    return ctx;
}

int cmd_template(int argc, char **argv) {
    const char *tpath = NULL, *mpath = NULL, *cpath = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(TEMPLATE_USAGE, stdout);
            return 0;
        }
        const char **slot = !strcmp(argv[i], "-t") ? &tpath : !strcmp(argv[i], "-m") ? &mpath
                          : !strcmp(argv[i], "-c") ? &cpath : NULL;
        if (!slot || i + 1 >= argc) {
            fputs(TEMPLATE_USAGE, stderr);
            return 2;
        }
        *slot = argv[++i];
    }
    if (!tpath == !mpath) {
        fputs(TEMPLATE_USAGE, stderr);
        return 2;
    }
    pv_jinja_opts_t opts = {0};
    if (cli_clock(&opts.now, &opts.has_now)) return 2;
    size_t len = 0;
    char *src = tpath ? cli_read_file(tpath, CLI_TEMPLATE_MAX_BYTES, &len) : model_template(mpath, &len);
    json_t *ctx = src ? load_context(cpath) : NULL;
    int status = 1;
    char err[PV_ERRLEN];
    pv_jinja_t *t = NULL;
    char *out = NULL;
    size_t out_len = 0;
    if (!ctx) goto done;
    if (pv_jinja_parse(src, len, &t, err, sizeof err) != 0 ||
        pv_jinja_render(t, ctx, &opts, &out, &out_len, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "pensieve: %s\n", err);
        goto done;
    }
    status = fwrite(out, 1, out_len, stdout) == out_len && fflush(stdout) == 0 ? 0 : 1;
done:
    free(out);
    pv_jinja_free(t);
    json_decref(ctx);
    free(src);
    return status;
}
