/* The ABI basics: version, the error table, last-error text, NULL handling of shared calls. */
#include "orc_test.h"

int main(void) {
    CHECK(orc_version() == ORC_VERSION_NUMBER);
    CHECK(strcmp(orc_version_string(), "0.1.0") == 0 || orc_version() != 100);

    /* Every code in the header has its own name and description in the library's table. */
#define NAME_IS(code) CHECK(strcmp(orc_err_name(code), #code) == 0)
    NAME_IS(ORC_OK);
    NAME_IS(ORC_EINVAL);
    NAME_IS(ORC_ENOMEM);
    NAME_IS(ORC_EPARSE);
    NAME_IS(ORC_ETOOBIG);
    NAME_IS(ORC_EAGAIN);
    NAME_IS(ORC_ETIMEDOUT);
    NAME_IS(ORC_ECLOSED);
    NAME_IS(ORC_EFAILED);
    NAME_IS(ORC_EFULL);
    NAME_IS(ORC_ENOSPC);
    NAME_IS(ORC_ECRYPTO);
    NAME_IS(ORC_ENOTFOUND);
    NAME_IS(ORC_ESTATE);
    NAME_IS(ORC_ENOTSUP);
    NAME_IS(ORC_EVERSION);
    NAME_IS(ORC_EIO);
    NAME_IS(ORC_EINTERNAL);
    NAME_IS(ORC_ETLS);
#undef NAME_IS
    CHECK(strcmp(orc_err_name(-9999), "ORC_EUNKNOWN") == 0);
    CHECK(strcmp(orc_err_name(42), "ORC_EUNKNOWN") == 0);
    CHECK(strcmp(orc_strerror(ORC_EINVAL), "invalid argument") == 0);
    CHECK(strcmp(orc_strerror(ORC_OK), "success") == 0);
    CHECK(strcmp(orc_strerror(-9999), "unknown error code") == 0);
    for (int c = ORC_ETLS; c < 0; c++) {
        CHECK(strcmp(orc_strerror(c), "unknown error code") != 0);
    }
    CHECK(orc_last_error() != NULL);
    orc_buf_free(NULL);
    return orc_test_finish("test_abi");
}
