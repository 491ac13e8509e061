/* cli.h - the pensieve command-line commands. Only src/cli/ may exit(). */
#ifndef PV_CLI_H
#define PV_CLI_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <time.h>

#define CLI_TEMPLATE_MAX_BYTES (16u << 20) /* chat template files: at most this many bytes */

int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);

/* Strict number parsing for option values: 0 on success, -1 (after printing
 * "pensieve: bad value for OPT") otherwise. */
int cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *opt, const char *s, float *out);
int cli_parse_u64(const char *opt, const char *s, uint64_t *out);

/* A whole file (less than max bytes), NUL-terminated, owned by the caller;
 * NULL after printing "pensieve: cannot open/read PATH". */
char *cli_read_file(const char *path, size_t max, size_t *len);

/* The same for what remains of an open stream (name: for the message). */
char *cli_read_stream(FILE *f, const char *name, size_t max, size_t *len);
#define CLI_STDIN_MAX_BYTES ((size_t)1 << 30) /* what tokenize reads from stdin at most */

/* The fixed clock strftime_now() formats in chat templates: PENSIEVE_NOW (ISO
 * 8601 local time) into *now with *has_now = 1, or *has_now = 0 when it is
 * unset. 0, or -1 after printing "pensieve: bad PENSIEVE_NOW ...". */
int cli_clock(struct tm *now, int *has_now);

#endif
