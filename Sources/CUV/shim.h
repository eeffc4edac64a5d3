#ifndef ORC_CUV_SHIM_H
#define ORC_CUV_SHIM_H
#include <uv.h>
#endif
