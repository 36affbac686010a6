/* persist.h - the store behind the in-memory queue (memory, OpenSearch) and the libcurl-on-libevent HTTP client it uses. */
#ifndef DLQ_PERSIST_H
#define DLQ_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "common.h"

/* ---- HTTP client: libcurl's multi interface driven by a libevent loop ------------------------ */

struct persist_http; /* opaque: one CURLM, its sockets and timer on the caller's event_base */

/* TLS and auth settings shared by every request of one client (strings copied). */
struct persist_http_opts {
    const char *ca_file;  /* "" or NULL: the system's CAs */
    bool insecure;        /* skip certificate and host verification (local testing only) */
    const char *username; /* "" or NULL: no basic auth */
    const char *password;
};

/*
 * Called once per request on the loop thread: status is the HTTP status
 * (0 when the request failed before a response; error then says why, else
 * NULL); body/len is the response body, borrowed for the call only.
 */
typedef void (*persist_http_cb)(void *ctx, long status, const char *body, size_t len,
                                const char *error);

/*
 * persist_http_new() makes a client on base (borrowed; must outlive it).
 * Returns NULL when libcurl cannot be initialised. persist_http_free()
 * cancels outstanding requests without calling their callbacks; NULL is a
 * no-op. Loop thread.
 */
struct persist_http *persist_http_new(struct event_base *base, const struct persist_http_opts *o);
void persist_http_free(struct persist_http *h);

/*
 * persist_http_request() starts a request; it never blocks. method is
 * "GET", "PUT", "POST", "DELETE" or "HEAD"; url NUL-terminated; body (len
 * bytes, may be NULL) is copied; content_type may be NULL; timeout_ms > 0
 * bounds the whole request. cb(ctx, ...) runs later on the loop thread,
 * exactly once, unless the client is freed first. Returns SC_OK, or
 * SC_ENOMEM / SC_EIO when the request could not be started (cb is then not
 * called). Loop thread.
 */
sc_status persist_http_request(struct persist_http *h, const char *method, const char *url,
                               const char *content_type, const void *body, size_t len,
                               long timeout_ms, persist_http_cb cb, void *ctx);

/* persist_http_pending() returns the number of requests in flight. */
size_t persist_http_pending(const struct persist_http *h);

#endif
