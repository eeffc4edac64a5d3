/* A minimal test harness for the C ABI tests: CHECK never aborts, every test program ends
 * with a "N passed, N failed" line and exits non-zero if anything failed. */
#ifndef ORC_TEST_H
#define ORC_TEST_H
#include <stdio.h>
#include <string.h>
#include "orchestra.h"

static int orc_test_passed, orc_test_failed;

#define CHECK(cond) do { \
    if (cond) { orc_test_passed++; } else { orc_test_failed++; \
        fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, orc_last_error()); } \
} while (0)

/* Checks that `expr` returns `code` (an ORC_* constant). */
#define CHECK_RC(expr, code) do { \
    int rc_ = (expr); \
    if (rc_ == (code)) { orc_test_passed++; } else { orc_test_failed++; \
        fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__, __LINE__, \
                #expr, orc_err_name(rc_), orc_err_name(code), orc_last_error()); } \
} while (0)

#define CHECK_OK(expr) CHECK_RC(expr, ORC_OK)

static inline int orc_test_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, orc_test_passed, orc_test_failed);
    return orc_test_failed == 0 ? 0 : 1;
}
#endif
