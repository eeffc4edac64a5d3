#ifndef ORC_CPQ_SHIM_H
#define ORC_CPQ_SHIM_H
/* libpq, PostgreSQL's C client library (Debian libpq-dev; pkg-config libpq gives the include
 * directory). Pipeline mode needs libpq 14 or later. */
#include <libpq-fe.h>

#ifndef LIBPQ_HAS_PIPELINING
#error "libpq 14 or later is required (pipeline mode)"
#endif

/* A pipeline sync without a write: libpq 17's PQsendPipelineSync; before it PQpipelineSync,
 * which also flushes (one send() per sync: the client corks the socket meanwhile). */
static inline int orc_pq_pipeline_sync(PGconn *conn) {
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC
    return PQsendPipelineSync(conn);
#else
    return PQpipelineSync(conn);
#endif
}

/* The PG_DIAG_* field codes are character-literal macros, which Swift does not import. */
static inline int orc_pq_diag_sqlstate(void) { return PG_DIAG_SQLSTATE; }
static inline int orc_pq_diag_message_primary(void) { return PG_DIAG_MESSAGE_PRIMARY; }
static inline int orc_pq_diag_message_detail(void) { return PG_DIAG_MESSAGE_DETAIL; }
static inline int orc_pq_diag_severity(void) { return PG_DIAG_SEVERITY_NONLOCALIZED; }
#endif
