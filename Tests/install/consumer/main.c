/* A program that knows liborchestra only through its installed header and library. */
#include <stdio.h>
#include <string.h>
#include <orchestra.h>

int main(void) {
    if (orc_version() != ORC_VERSION_NUMBER) {
        fprintf(stderr, "header %d != library %d\n", ORC_VERSION_NUMBER, orc_version());
        return 1;
    }
    if (strcmp(orc_err_name(ORC_EINVAL), "ORC_EINVAL") != 0) return 1;
    printf("consumer ok: liborchestra %s\n", orc_version_string());
    return 0;
}
