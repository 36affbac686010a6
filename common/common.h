/* common.h - status codes, clocks, RFC 3339 time and capped buffers shared by every module. */
#ifndef DLQ_COMMON_H
#define DLQ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * One status enum for every fallible function of the project (the nats.c
 * pattern). SC_OK is zero so that `if (s) goto done;` reads naturally.
 */
typedef enum {
    SC_OK = 0,
    SC_ENOMEM,    /* an allocation failed */
    SC_EINVAL,    /* a bad argument or configuration value */
    SC_EPROTO,    /* bytes from the wire break the contract */
    SC_ETOOBIG,   /* a size cap was exceeded */
    SC_ENOTFOUND, /* no such task, key or file */
    SC_ECONFLICT, /* the operation conflicts with the current state */
    SC_EFULL,     /* a bounded queue is full */
    SC_EIO,       /* an I/O, network or remote-server failure */
    SC_EUNAVAIL,  /* a dependency is not available right now */
} sc_status;

/*
 * sc_status_str() returns a static, lower-case name for s ("ok", "enomem",
 * ...); never NULL, "unknown" for values outside the enum. Any thread.
 */
const char *sc_status_str(sc_status s);

/*
 * sc_now_mono_ms() returns CLOCK_MONOTONIC in milliseconds; only differences
 * mean anything. sc_now_wall_ms() returns CLOCK_REALTIME in milliseconds
 * since the Unix epoch. Both are thread-safe and never fail.
 */
int64_t sc_now_mono_ms(void);
int64_t sc_now_wall_ms(void);

/* Bytes needed by sc_format_rfc3339() including the NUL. */
#define SC_RFC3339_LEN 32

/*
 * sc_format_rfc3339() writes wall_ms (ms since the epoch, may be negative)
 * as "YYYY-MM-DDTHH:MM:SS.mmmZ" into out, which must hold SC_RFC3339_LEN
 * bytes. Returns the string length (24 for years 0-9999), or 0 when the
 * time cannot be represented (out is then ""). Any thread.
 */
size_t sc_format_rfc3339(int64_t wall_ms, char *out);

/*
 * sc_parse_rfc3339() parses len bytes at s (not NUL-terminated) as an
 * RFC 3339 date-time: "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)";
 * 't', 'z' and a space for 'T' are accepted. Fractions beyond milliseconds
 * are truncated. On success sets *out_ms (ms since the epoch) and returns
 * SC_OK; returns SC_EPROTO for anything else, leaving *out_ms at 0. Any
 * thread.
 */
sc_status sc_parse_rfc3339(const char *s, size_t len, int64_t *out_ms);

/*
 * A growable byte buffer with a hard cap (curl's dynbuf idea). Embed it
 * (its layout is public so callers can read data/len); data is always
 * NUL-terminated after len when non-NULL. Reuse it with sc_buf_reset() to
 * avoid allocation in steady state.
 */
struct sc_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* most bytes len may reach; appends past it fail */
};

/* sc_buf_init() sets an empty buffer that may grow to max bytes. */
void sc_buf_init(struct sc_buf *b, size_t max);
/* sc_buf_destroy() frees the storage; the buffer is empty afterwards. */
void sc_buf_destroy(struct sc_buf *b);
/* sc_buf_reset() empties the buffer and keeps its storage. */
void sc_buf_reset(struct sc_buf *b);
/*
 * sc_buf_append() copies n bytes at p to the end. Returns SC_OK,
 * SC_ETOOBIG when len + n would pass max (nothing appended) or SC_ENOMEM.
 */
sc_status sc_buf_append(struct sc_buf *b, const void *p, size_t n);
/* sc_buf_appendc() appends one byte; errors as sc_buf_append(). */
sc_status sc_buf_appendc(struct sc_buf *b, char c);
/* sc_buf_appendf() appends printf-formatted text; errors as sc_buf_append(). */
sc_status sc_buf_appendf(struct sc_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * sc_xmalloc()/sc_xcalloc()/sc_xrealloc()/sc_xstrdup()/sc_xstrndup() are for
 * sizes the process itself chooses: they abort with a message when memory
 * runs out (redis' zmalloc). Sizes that come from the wire must use plain
 * malloc and fail softly. Any thread.
 */
void *sc_xmalloc(size_t n);
void *sc_xcalloc(size_t n, size_t size);
void *sc_xrealloc(void *p, size_t n);
char *sc_xstrdup(const char *s);
char *sc_xstrndup(const char *s, size_t n);

/*
 * sc_hash64() mixes len bytes at p into seed (a multiply-xorshift over
 * 8-byte words, finished with a 64-bit avalanche) and returns the hash.
 * Not cryptographic; a random seed keeps client-chosen keys from being
 * aimed at one bucket. Never fails; any thread.
 */
uint64_t sc_hash64(uint64_t seed, const void *p, size_t len);

#define SC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
