#ifndef SHELCASTER_COPENSSL_SHIM_H
#define SHELCASTER_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/bio.h>
#include <openssl/rand.h>
/* Macros Swift cannot import. */
static inline long cssl_bio_ctrl_pending(BIO *b) { return BIO_ctrl_pending(b); }
static inline long cssl_set_mtu(SSL *s, long mtu) { return SSL_set_mtu(s, mtu); }
static inline long cssl_dtls_get_timeout(SSL *s, struct timeval *tv) { return DTLSv1_get_timeout(s, tv); }
static inline long cssl_dtls_handle_timeout(SSL *s) { return DTLSv1_handle_timeout(s); }
#endif

/* DTLS module: macros and variadic helpers Swift cannot import. */
#ifndef SHELCASTER_COPENSSL_DTLS_SHIM
#define SHELCASTER_COPENSSL_DTLS_SHIM
#include <openssl/ec.h>
#include <openssl/srtp.h>
/* EVP_EC_gen is a macro over the variadic EVP_PKEY_Q_keygen. */
static inline EVP_PKEY *cdtls_generate_p256_key(void) { return EVP_EC_gen("P-256"); }
/* Pin a DTLS context to DTLS 1.2 (min and max are SSL_CTX_ctrl macros). */
static inline int cdtls_ctx_pin_dtls12(SSL_CTX *ctx) {
    return SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION) == 1
        && SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION) == 1;
}
/* The MTU is set by hand: a memory BIO cannot be asked for a path MTU. */
static inline void cdtls_set_no_query_mtu(SSL *s) { SSL_set_options(s, SSL_OP_NO_QUERY_MTU); }
/* An empty memory BIO reports "retry" (-1) instead of EOF so OpenSSL waits for more datagrams. */
static inline void cdtls_bio_mem_eof_retry(BIO *b) { BIO_set_mem_eof_return(b, -1); }
static inline int cdtls_bio_reset(BIO *b) { return (int)BIO_reset(b); }
#endif
