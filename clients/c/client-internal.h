/* client-internal.h - what the files of clients/c share: errors, UTF-8, subjects, a bounded MessagePack walk. */
#ifndef DLQ_CLIENT_INTERNAL_H
#define DLQ_CLIENT_INTERNAL_H

#include "dlq_client.h"

/* The sidecar's default limits (DESIGN section 4, README "Wire contract"), which a client checks. */
#define DLQC_MAX_TASK_ID 256
#define DLQC_MAX_STRING 1024
#define DLQC_MAX_ERROR 4096
#define DLQC_MAX_REPOS 64
#define DLQC_MAX_META_KEYS 64
#define DLQC_MAX_META_BYTES 16384
#define DLQC_MAX_DEPTH 32 /* the envelope map is level 1 */
#define DLQC_MAX_DELAYS 32                /* backoff: delays in one list (issue 17) */
#define DLQC_MAX_DELAY_MS 604800000LL     /* backoff: 7 days */
#define DLQC_MAX_DEPENDS 32               /* depends_on: task ids in one list (issue 17) */
#define DLQC_MIN_MS (-62167219200000LL) /* 0000-01-01T00:00:00Z */
#define DLQC_MAX_MS 253402300799999LL   /* 9999-12-31T23:59:59.999Z */
#define DLQC_TRUNC_MARKER "...[truncated]"

/*
 * dlq_client_set_error() fills *err (NULL: nothing) with status s, field
 * and reason (static strings; NULL reason means "") and a printf-style
 * message, and returns s. Any thread.
 */
dlq_client_status dlq_client_set_error(struct dlq_client_error *err, dlq_client_status s,
                                       const char *field, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* dlq_client_clear_error() resets *err (NULL: nothing) to DLQ_CLIENT_OK. */
void dlq_client_clear_error(struct dlq_client_error *err);

/*
 * dlq_client_utf8_next() decodes one UTF-8 character of the n > 0 bytes at
 * p into *cp (shortest form, no surrogates, at most U+10FFFF). Returns its
 * length (1-4), or 0 when the bytes are not valid UTF-8.
 */
size_t dlq_client_utf8_next(const uint8_t *p, size_t n, uint32_t *cp);

/*
 * dlq_client_text_copy() copies len bytes of text at s into out (cap > 0
 * bytes, NUL-terminated), each invalid UTF-8 byte replaced by U+FFFD and
 * NUL by a space; when the result would pass max bytes (max < cap), it is
 * cut at a character boundary and ends with marker (NULL: no marker).
 * Returns the length written.
 */
size_t dlq_client_text_copy(const char *s, size_t len, char *out, size_t cap, size_t max,
                            const char *marker);

/*
 * dlq_client_subject_ok() checks s as a NATS subject: tokens separated by
 * '.', none empty, no whitespace, control characters or DEL; '*' (a whole
 * token) and '>' (a whole last token) only when wildcards. At most 4096
 * bytes.
 */
bool dlq_client_subject_ok(const char *s, bool wildcards);

/*
 * dlq_client_mp_walk() checks that the n bytes at p start with one complete
 * MessagePack value whose containers nest at most max_depth (<= 64) deep,
 * never reading past p + n. On success sets *used to its length and returns
 * NULL; else returns the sidecar's reason ("truncated", "too_deep",
 * "bad_msgpack") and sets *at to the offset of the offending byte.
 */
const char *dlq_client_mp_walk(const uint8_t *p, size_t n, unsigned max_depth, size_t *used,
                               size_t *at);

/* dlq_client_mp_kind() names the kind of the MessagePack value starting with byte b ("a map" ...). */
const char *dlq_client_mp_kind(uint8_t b);

#endif
