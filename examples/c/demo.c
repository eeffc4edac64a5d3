/* orchestra-demo: the main job until the hub exists. It drives the library through the C ABI
 * only, the way a C user would, and prints what it did. */
#include <stdio.h>
#include "orchestra.h"

int main(void) {
    printf("liborchestra %s (ABI %d)\n", orc_version_string(), orc_version());
    return 0;
}
