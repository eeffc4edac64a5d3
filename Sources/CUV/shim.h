#ifndef ORC_CUV_SHIM_H
#define ORC_CUV_SHIM_H
#include <uv.h>

/* Whether the loop has descriptors waiting to be added to its epoll set (libuv adds them at
 * the start of its next poll phase). An embedded loop (Runtime, embedded) must run again
 * before its backend descriptor can report their events: uv_backend_timeout does not count
 * them (libuv issues #1565, #3234). libuv 1.x keeps the queue as `void *watcher_queue[2]`, an
 * intrusive circular list that is empty when it points at itself; libuv 1.46 made it a
 * `struct uv__queue` of the same layout (next, prev). */
static inline int orc_uv_watchers_pending(const uv_loop_t *loop) {
    const void *const *q = (const void *const *)&loop->watcher_queue;
    return q[0] != (const void *)q;
}
#endif
