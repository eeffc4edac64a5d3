#ifndef ORC_CZLIB_SHIM_H
#define ORC_CZLIB_SHIM_H
#include <zlib.h>
/* deflateInit/inflateInit are macros; Swift cannot call macros. */
static inline int orc_zlib_deflate_init2(z_stream *s, int level, int window_bits, int mem_level) {
    return deflateInit2(s, level, Z_DEFLATED, window_bits, mem_level, Z_DEFAULT_STRATEGY);
}
static inline int orc_zlib_inflate_init2(z_stream *s, int window_bits) {
    return inflateInit2(s, window_bits);
}
#endif
