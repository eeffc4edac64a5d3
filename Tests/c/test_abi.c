/* The ABI basics: version, the error table, last-error text, NULL handling of shared calls. */
#include "orc_test.h"

/* Each row of the header's ORC_ERRNO_MAP: the enum value, the library's name and text. */
#define CHECK_ERRNO_ROW(name, value, text)                              \
    CHECK(ORC_##name == (value));                                       \
    CHECK(strcmp(orc_err_name(value), "ORC_" #name) == 0);              \
    CHECK(strcmp(orc_strerror(value), text) == 0);                      \
    rows++;                                                             \
    if ((value) < lowest) lowest = (value);

int main(void) {
    CHECK(orc_version() == ORC_VERSION_NUMBER);
    CHECK(strcmp(orc_version_string(), "0.1.0") == 0 || orc_version() != 100);

    /* The library's table is the header's: every row of ORC_ERRNO_MAP, codes -1 ... lowest
     * with no gap, nothing beyond. */
    int rows = 0, lowest = 0;
    ORC_ERRNO_MAP(CHECK_ERRNO_ROW)
    CHECK(rows == -lowest);
    CHECK(strcmp(orc_err_name(lowest - 1), "ORC_EUNKNOWN") == 0);
    CHECK(strcmp(orc_strerror(lowest - 1), "unknown error code") == 0);
    for (int c = lowest; c < 0; c++) {
        CHECK(strcmp(orc_err_name(c), "ORC_EUNKNOWN") != 0);
    }
    CHECK(strcmp(orc_err_name(ORC_OK), "ORC_OK") == 0);
    CHECK(strcmp(orc_strerror(ORC_OK), "success") == 0);
    CHECK(strcmp(orc_err_name(-9999), "ORC_EUNKNOWN") == 0);
    CHECK(strcmp(orc_err_name(42), "ORC_EUNKNOWN") == 0);
    CHECK(strcmp(orc_strerror(-9999), "unknown error code") == 0);
    CHECK(orc_last_error() != NULL);
    orc_buf_free(NULL);
    return orc_test_finish("test_abi");
}
