/* prompt.c - the built-in chat formats (see prompt.h). */
#include "api/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pv_prompt_fmt_t pv_prompt_detect(const char *t) {
    if (!t) return PV_FMT_PLAIN;
    if (strstr(t, "<|im_start|>")) return PV_FMT_CHATML;
    if (strstr(t, "<|start_header_id|>")) return PV_FMT_LLAMA3;
    if (strstr(t, "<|user|>")) return PV_FMT_PHI3;
    if (strstr(t, "[INST]")) return PV_FMT_LLAMA2;
    return PV_FMT_PLAIN;
}

const char *pv_prompt_fmt_name(pv_prompt_fmt_t f) {
    static const char *names[PV_FMT_COUNT] = {"plain", "chatml", "llama3", "phi3", "llama2"};
    return (unsigned)f < PV_FMT_COUNT ? names[f] : "?";
}

int pv_prompt_fmt_special(pv_prompt_fmt_t f) { return f != PV_FMT_PLAIN; }

const char *pv_prompt_fmt_stop(pv_prompt_fmt_t f) { return f == PV_FMT_PLAIN ? "\nUser:" : NULL; }

static const char *role_name(pv_role_t r) {
    return r == PV_ROLE_SYSTEM ? "system" : r == PV_ROLE_USER ? "user" : "assistant";
}

/* Llama 2: the system prompt goes inside the first [INST]; turns pair up. */
static void render_llama2(FILE *f, const char *system, const pv_chat_msg_t *m, int n) {
    int open = 0; /* an [INST] is open */
    const char *sys = system;
    for (int i = 0; i < n; i++) {
        if (m[i].role == PV_ROLE_SYSTEM) { sys = m[i].text; continue; }
        if (m[i].role == PV_ROLE_USER) {
            fputs(open ? "\n\n" : "[INST] ", f);
            if (sys && !open) fprintf(f, "<<SYS>>\n%s\n<</SYS>>\n\n", sys), sys = NULL;
            fputs(m[i].text, f);
            open = 1;
        } else {
            if (open) fputs(" [/INST]", f);
            fprintf(f, " %s </s><s>", m[i].text);
            open = 0;
        }
    }
    if (open) fputs(" [/INST]", f);
}

char *pv_prompt_render(pv_prompt_fmt_t fmt, const char *system, const pv_chat_msg_t *m, int n) {
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f) return NULL;
    if (fmt == PV_FMT_LLAMA2) {
        render_llama2(f, system, m, n);
    } else {
        for (int i = -1; i < n; i++) {
            pv_role_t role = i < 0 ? PV_ROLE_SYSTEM : m[i].role;
            const char *text = i < 0 ? system : m[i].text;
            if (!text) continue;
            switch (fmt) {
            case PV_FMT_CHATML: fprintf(f, "<|im_start|>%s\n%s<|im_end|>\n", role_name(role), text); break;
            case PV_FMT_LLAMA3:
                fprintf(f, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>", role_name(role), text);
                break;
            case PV_FMT_PHI3: fprintf(f, "<|%s|>\n%s<|end|>\n", role_name(role), text); break;
            default:
                fprintf(f, "%s: %s\n",
                        role == PV_ROLE_SYSTEM ? "System" : role == PV_ROLE_USER ? "User" : "Assistant", text);
            }
        }
        switch (fmt) {
        case PV_FMT_CHATML: fputs("<|im_start|>assistant\n", f); break;
        case PV_FMT_LLAMA3: fputs("<|start_header_id|>assistant<|end_header_id|>\n\n", f); break;
        case PV_FMT_PHI3: fputs("<|assistant|>\n", f); break;
        default: fputs("Assistant:", f);
        }
    }
    if (fclose(f)) {
        free(out);
        return NULL;
    }
    return out;
}

char *pv_prompt_tools_text(const pv_prompt_tool_t *t, int n) {
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f) return NULL;
    fputs("# Tools\n\nYou may call these functions. To call one, answer with a JSON object "
          "{\"name\": NAME, \"arguments\": {...}} and nothing else.\n",
          f);
    for (int i = 0; i < n; i++) {
        fprintf(f, "\n- %s", t[i].name);
        if (t[i].description && *t[i].description) fprintf(f, ": %s", t[i].description);
        if (t[i].parameters) fprintf(f, "\n  parameters: %s", t[i].parameters);
    }
    if (fclose(f)) {
        free(out);
        return NULL;
    }
    return out;
}
