#ifndef SHELCASTER_CCURL_SHIM_H
#define SHELCASTER_CCURL_SHIM_H
#include <curl/curl.h>
/* curl_easy_setopt / getinfo are variadic: typed wrappers. */
static inline CURLcode ccurl_setopt_long(CURL *c, CURLoption o, long v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode ccurl_setopt_ptr(CURL *c, CURLoption o, void *v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode ccurl_setopt_str(CURL *c, CURLoption o, const char *v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode ccurl_getinfo_long(CURL *c, CURLINFO i, long *v) { return curl_easy_getinfo(c, i, v); }
#endif

/* HTTPClient: typed wrappers for the remaining variadic setopt/getinfo forms. */
#ifndef SHELCASTER_CCURL_SHIM_HTTPCLIENT
#define SHELCASTER_CCURL_SHIM_HTTPCLIENT
typedef size_t (*ccurl_data_callback)(char *data, size_t size, size_t count, void *context);
static inline CURLcode ccurl_setopt_data_callback(CURL *c, CURLoption o, ccurl_data_callback cb) { return curl_easy_setopt(c, o, cb); }
static inline CURLcode ccurl_setopt_off(CURL *c, CURLoption o, curl_off_t v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode ccurl_setopt_slist(CURL *c, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode ccurl_getinfo_off(CURL *c, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(c, i, v); }
static inline long ccurl_global_default(void) { return CURL_GLOBAL_DEFAULT; }
static inline long ccurl_error_size(void) { return CURL_ERROR_SIZE; }
#endif
