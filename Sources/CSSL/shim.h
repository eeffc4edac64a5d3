#ifndef ORC_CSSL_SHIM_H
#define ORC_CSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/err.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Function-like macros of libssl that Swift cannot import, as inline functions
 * (used by Sources/OrchestraNet/TLS). */
static inline int orc_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}
static inline long orc_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}
static inline int orc_ssl_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}
static inline void orc_bio_set_mem_eof_return(BIO *bio, int value) {
    (void)BIO_set_mem_eof_return(bio, value);
}
/* The options a liborchestra context sets: no renegotiation, no compression (CRIME), and
 * a peer that closes TCP without close_notify is reported as an error (truncation), which is
 * OpenSSL 3's default: SSL_OP_IGNORE_UNEXPECTED_EOF stays off. */
static inline uint64_t orc_ssl_ctx_set_default_options(SSL_CTX *ctx) {
    return SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
}
#endif
