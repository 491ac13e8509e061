/* suites.h - every Check suite of the unit tests, registered in one list. */
#ifndef PV_TEST_SUITES_H
#define PV_TEST_SUITES_H

#include <check.h>

Suite *gguf_suite(void);
Suite *kern_suite(void);
Suite *tok_suite(void);
Suite *sample_suite(void);
Suite *model_suite(void);
Suite *sched_suite(void);
Suite *chat_suite(void);
Suite *toolcall_suite(void);
Suite *kvstore_suite(void);
Suite *grammar_suite(void);

#define PV_TEST_SUITES(X) X(gguf_suite) X(kern_suite) X(tok_suite) X(sample_suite) X(model_suite) X(sched_suite) X(chat_suite) X(toolcall_suite) X(kvstore_suite) X(grammar_suite)

/* Helpers shared by the suites (tests/util.c). */

/* Path under the shared folder (PV_SHARED, default ../shared) in buf; returns
 * buf, or NULL (after printing a clear "skipped" line) when it is absent. */
const char *tu_shared(char *buf, size_t len, const char *rel);

/* Folder for generated files (PV_CACHE, default build/cache). */
const char *tu_cache_dir(void);

/* Reads a whole file; caller frees. NULL on failure. */
char *tu_read_file(const char *path, size_t *len);

#endif
