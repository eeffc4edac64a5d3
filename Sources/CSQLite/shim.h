#ifndef ORC_CSQLITE_SHIM_H
#define ORC_CSQLITE_SHIM_H
#include <sqlite3.h>
/* SQLITE_TRANSIENT is a cast macro Swift cannot import. */
static inline void (*orc_sqlite_transient(void))(void *) { return SQLITE_TRANSIENT; }
/* sqlite3_config is variadic (Swift cannot call it). Memory statistics take a global mutex
 * on every allocation; nothing here reads them. Before sqlite3_initialize only (later:
 * SQLITE_MISUSE, no change). */
static inline int orc_sqlite_disable_memstatus(void) { return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }
#endif
