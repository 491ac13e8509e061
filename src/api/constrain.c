/* constrain.c - forced tool calls -> a tool-call grammar. */
#include "api/constrain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

int pv_constrain_tool_call(const json_t *tools, const char *only, pv_gram_t **out, char *err, size_t errlen) {
    *out = NULL;
    size_t n = json_array_size(tools);
    if (n == 0) {
        snprintf(err, errlen, "tool_choice: a tool call is required but no tools are offered");
        return -1;
    }
    const char **names = calloc(n, sizeof *names);
    const json_t **schemas = calloc(n, sizeof *schemas);
    int m = 0, rc = -1;
    if (!names || !schemas) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *fn = json_object_get(json_array_get(tools, i), "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name || (only && strcmp(name, only))) continue;
        names[m] = name;
        schemas[m++] = json_object_get(fn, "parameters");
    }
    if (m == 0) {
        snprintf(err, errlen, "tool_choice: \"%.100s\" is not among the tools offered", only ? only : "");
        goto done;
    }
    char msg[PV_ERRLEN];
    int r = pv_gram_tool_call(names, schemas, m, out, msg, sizeof msg);
    if (r) snprintf(err, errlen, "tool_choice: %s", msg);
    else rc = 0;
done:
    free(names);
    free((void *)schemas);
    return rc;
}
