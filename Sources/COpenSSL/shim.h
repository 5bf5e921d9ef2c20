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
