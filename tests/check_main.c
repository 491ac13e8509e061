/* check_main.c - runs every suite, each test in its own process with a timeout. */
#include <stdio.h>
#include <stdlib.h>

#include "suites.h"

int main(int argc, char **argv) {
    SRunner *sr = srunner_create(NULL);
#define PV_ADD_SUITE(fn) srunner_add_suite(sr, fn());
    PV_TEST_SUITES(PV_ADD_SUITE)
#undef PV_ADD_SUITE
    srunner_set_fork_status(sr, CK_FORK);
    /* an optional suite name narrows the run: check_pensieve tok */
    const char *only = argc > 1 ? argv[1] : NULL;
    srunner_run(sr, only, NULL, CK_NORMAL);
    int n_run = srunner_ntests_run(sr), n_failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    printf("unit: %d passed, %d failed\n", n_run - n_failed, n_failed);
    return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
