/* codec.h - decode failure envelopes into borrowed views, render MessagePack as JSON, check subjects. */
#ifndef DLQ_CODEC_H
#define DLQ_CODEC_H

#include "common.h"

/*
 * Limits applied to every envelope. All sizes are in bytes. The defaults
 * come from codec_limits_default(); config/ fills them from the
 * `limits.*` keys.
 */
struct codec_limits {
    size_t max_envelope_bytes; /* whole message; default 1 MiB (nats max_payload) */
    unsigned max_depth;        /* nesting of arrays/maps anywhere; default 32, range 1-1000 */
    size_t max_task_id_len;    /* default 256, range 1-1024 */
    size_t max_error_len;      /* longer error text is truncated with a marker; default 4096 */
    size_t max_metadata_keys;  /* default 64 */
    size_t max_metadata_bytes; /* encoded size of the metadata map; default 16384 */
    size_t max_repos;          /* entries of `repos`; default 64 */
    size_t max_string_len;     /* any other string field (error_type, subjects ...); default 1024 */
};

/* codec_limits_default() fills l with the documented defaults. Any thread. */
void codec_limits_default(struct codec_limits *l);

/* A borrowed byte range. ptr is NULL (and len 0) when the field was absent or nil. */
struct codec_str {
    const char *ptr;
    size_t len;
};

/* The most task ids an envelope's `depends_on` may name (issue 17). */
#define CODEC_DEPENDS_MAX 32

/* How many unknown envelope keys a decoded envelope names (it counts them all). */
#define CODEC_UNKNOWN_NAMES 8

/*
 * A decoded failure envelope (DESIGN section 4). Every codec_str points either
 * into the caller's input buffer or into the codec's own arena; both stay
 * valid until the next codec_decode() on the same codec or until the input
 * buffer is freed, whichever comes first. Copy what must outlive that.
 */
struct codec_envelope {
    struct codec_str task_id;        /* 1..max_task_id_len bytes, valid UTF-8, no control chars */
    struct codec_str task;           /* the task value's exact MessagePack bytes (JSON input: converted) */
    struct codec_str error;          /* "" (ptr non-NULL, len 0) when absent or nil; UTF-8 not checked */
    bool error_truncated;            /* error was cut to max_error_len and ends in CODEC_TRUNC_MARKER */
    struct codec_str error_type;     /* NULL when absent */
    struct codec_str error_category; /* NULL when absent; value not checked here (policy/ does it) */
    struct codec_str retry_policy;   /* NULL when absent; value not checked here (policy/ does it) */
    struct codec_str retry_subject;  /* NULL when absent; NOT yet validated as a subject */
    bool has_max_retries;            /* false when absent or nil */
    int max_retries;                 /* 0..100 when has_max_retries */
    struct codec_str repos;          /* MessagePack array bytes, NULL when absent; entries are str */
    struct codec_str metadata;       /* MessagePack map bytes, NULL when absent */
    bool has_failed_at;
    int64_t failed_at_ms;            /* ms since the epoch when has_failed_at */
    bool enqueue;                    /* `"enqueue": true` (manual strategy) */
    struct codec_str template_name;  /* `template`: NULL when absent; not checked here (config names them) */
    struct codec_str priority;       /* `priority`: NULL when absent; value not checked here (policy/ does it) */
    uint32_t backoff_n;              /* `backoff`: 0 when absent or nil, else 1..SC_DELAYS_MAX */
    int64_t backoff_ms[SC_DELAYS_MAX]; /* its delays, each 1..SC_DELAY_MAX_MS ms */
    uint32_t depends_n;              /* `depends_on`: 0 when absent or nil, else 1..CODEC_DEPENDS_MAX */
    struct codec_str depends_on[CODEC_DEPENDS_MAX]; /* its task ids: each valid as task_id, distinct,
                                                       none the task's own */
    unsigned unknown_keys;           /* keys not in the contract; ignored */
    /* The names of the first CODEC_UNKNOWN_NAMES of them (borrowed like the rest; unused ones NULL). */
    struct codec_str unknown[CODEC_UNKNOWN_NAMES];
    /*
     * On refusal: reason is a static snake_case code of low cardinality for
     * counters and the Dlq-Invalid-Reason header (e.g. "task_id_missing",
     * "too_deep", "truncated", "not_a_map", "bad_type", "out_of_range",
     * "too_big", "bad_json", "bad_utf8", "bad_timestamp", "duplicate_key",
     * "too_many_keys", "trailing_bytes"), and why is a NUL-terminated human
     * message naming the key, e.g. "task_id: missing" or "max_retries: -1 is
     * out of range 0-100". Both are "" on success.
     */
    const char *reason;
    const char *why;
};

#define CODEC_TRUNC_MARKER "...[truncated]"

/*
 * The complete set of refusal reasons codec_decode() uses (for counters and
 * Dlq-Invalid-Reason): "too_big" (the message, a string field, task_id,
 * metadata bytes or repos entries pass a limit), "truncated" (a declared
 * length or count passes the end of the input), "too_deep", "bad_msgpack"
 * (the reserved byte 0xc1), "not_a_map" (also: an empty message),
 * "trailing_bytes", "bad_json", "bad_utf8", "bad_chars" (task_id holds a
 * control character: C0, DEL or C1), "bad_type", "out_of_range",
 * "bad_timestamp", "duplicate_key" (a contract key given twice; in JSON any
 * key given twice in one object), "too_many_keys" (metadata),
 * "task_id_missing" (absent, nil or empty), "task_missing" and
 * "bad_depends_on" (depends_on is not an array of 1-CODEC_DEPENDS_MAX
 * distinct valid task ids, or names the task itself).
 *
 * A truncated error is cut at a UTF-8 boundary so that the text plus
 * CODEC_TRUNC_MARKER is at most max_error_len bytes (when max_error_len is
 * shorter than the marker, error is the marker alone). Nesting limits above
 * 1000 act as 1000.
 */

struct codec; /* opaque: limits plus reusable arenas */

/*
 * codec_new() returns a decoder with a copy of *limits (NULL: defaults).
 * Never returns NULL (aborts on OOM). Free with codec_free(); codec_free(NULL)
 * is a no-op. A codec is used by one thread at a time.
 */
struct codec *codec_new(const struct codec_limits *limits);
void codec_free(struct codec *c);

/* codec_limits() returns the codec's limits (borrowed, lives as long as c). */
const struct codec_limits *codec_limits_get(const struct codec *c);

/*
 * codec_decode() parses one failure envelope of len bytes at buf into *env.
 * The input is JSON when is_json is true or buf's first non-blank byte is '{';
 * otherwise MessagePack (one map, nothing after it). Every declared length is
 * checked against the bytes that remain before anything is allocated or read,
 * nesting is checked against max_depth without recursion on the C stack, and
 * no byte past buf+len is read. MessagePack input needs no allocation in
 * steady state; JSON input (the shell convenience) is parsed by jansson.
 * Returns SC_OK, SC_EPROTO (contract broken: env->reason/why say how) or
 * SC_ETOOBIG (len > max_envelope_bytes; reason "too_big"). *env is always
 * fully written (zeroed fields plus reason/why on error). Thread: the one
 * using c.
 */
sc_status codec_decode(struct codec *c, const void *buf, size_t len, bool is_json,
                       struct codec_envelope *env);

/*
 * codec_msgpack_check() walks one MessagePack value of len bytes at buf and
 * checks that it is complete, that every declared length fits the input and
 * that nesting stays within max_depth. On SC_OK *used (may be NULL) is the
 * byte length of the value. Returns SC_EPROTO otherwise. Never allocates.
 * Any thread.
 */
sc_status codec_msgpack_check(const void *buf, size_t len, unsigned max_depth, size_t *used);

/*
 * codec_render_json() appends one MessagePack value (len bytes at buf) to out
 * as JSON text that always parses: str as a JSON string (invalid UTF-8
 * replaced by U+FFFD, control characters escaped); bin as
 * {"$bin":"<base64>"}; ext as {"$ext":type,"data":"<base64>"} except the
 * timestamp ext (-1), rendered as an RFC 3339 string; a map key that is a
 * nil, bool or number becomes its JSON text as a string ("1", "null"), and
 * any other non-string key (array, map, bin, ext) becomes
 * "$mp:<base64 of its MessagePack bytes>", so the output stays linear in
 * the input whatever the nesting of keys inside keys; floats that are NaN or
 * infinite as null. Returns SC_OK, SC_EPROTO (malformed or deeper than
 * max_depth) or SC_ETOOBIG (out's cap reached). out may hold a partial
 * rendering after an error. Any thread.
 * Two details keep the text loadable by jansson: an unsigned integer above
 * INT64_MAX is written with a ".0" suffix (every digit kept, read as a
 * real), and a NUL inside a map key string becomes U+FFFD (NUL in other
 * strings is written as \u0000).
 */
sc_status codec_render_json(const void *buf, size_t len, unsigned max_depth, struct sc_buf *out);

/*
 * codec_json_msgpack() converts len bytes of JSON text at json (one value,
 * any kind) to MessagePack: *out points at the result (len *outlen) in c's
 * buffer, valid until c's next call. Numbers keep their kind (integers up to
 * UINT64_MAX, reals as float64), strings their bytes. Returns SC_OK or
 * SC_EPROTO (malformed JSON, deeper than c's max_depth, or past c's buffer:
 * 3 x max_envelope_bytes). Thread of c.
 */
sc_status codec_json_msgpack(struct codec *c, const char *json, size_t len, const char **out,
                             size_t *outlen);

/*
 * codec_msgpack_view() is codec_render_json_masked() of the len bytes at buf
 * then codec_json_msgpack() of that text, byte for byte, without the text:
 * the KV store's rendered views (persist_dw_msgpack()). It does the common
 * values (maps with text keys, arrays, text without NUL, integers up to
 * INT64_MAX, nil, booleans, bin, masked values; buf NULL: nil) and returns
 * SC_EINVAL for anything else (a float, ext, a key that is not text, text the
 * renderer would change, a value that cannot be rendered, deeper than c
 * allows, larger than 1 MiB or past c's buffer): the caller then takes the
 * JSON path, which decides. On SC_OK *out points at the result (len
 * *outlen) in c's buffer, valid until c's next call. Thread of c.
 */
sc_status codec_msgpack_view(struct codec *c, const void *buf, size_t len, unsigned max_depth,
                             const char **out, size_t *outlen);

/*
 * Masking of secrets (README "Secrets", config secrets.mask_keys): in every
 * rendered view (codec_jw_msgpack(), codec_render_json_masked()), the value
 * of a map key that matches a pattern is rendered as the string "***",
 * whatever it is (a scalar, or a map or array skipped whole), at any depth,
 * in maps nested in maps or arrays. A pattern holding '*' or '?' is a glob
 * of the whole key ('*' any run of bytes, '?' one byte), any other a
 * substring of the key; both compare ASCII letters case-insensitively. Only
 * str keys are matched (a number, bin or container key never is). The
 * stored and republished MessagePack bytes are never changed.
 *
 * codec_mask_set() installs a copy of n patterns (NULL or "" entries are
 * skipped; n = 0 masks nothing, the state before any call). Main thread, at
 * start-up, before any thread renders: the renderers read the list without
 * a lock. Aborts on OOM.
 * codec_mask_key() tells whether len bytes at key match a pattern. Any thread.
 * codec_render_json_masked() is codec_render_json() with masking; errors and
 * bounds the same (skipping is linear, the walk is never recursive).
 */
void codec_mask_set(const char *const *patterns, size_t n);
bool codec_mask_key(const void *key, size_t len);
sc_status codec_render_json_masked(const void *buf, size_t len, unsigned max_depth,
                                   struct sc_buf *out);

/*
 * codec_jw_msgpack() writes "k": the MessagePack value at p (len bytes)
 * rendered by codec_render_json_masked() into w's object, or "k":null when p is
 * NULL or the value cannot be rendered (malformed, deeper than max_depth,
 * or past the buffer's cap: the partial rendering is taken back). Errors
 * stick in w->st as for every sc_jw call. Any thread.
 */
void codec_jw_msgpack(struct sc_jw *w, const char *k, const void *p, size_t len,
                      unsigned max_depth);

/*
 * codec_subject_valid() checks len bytes at s as a NATS subject to publish
 * to: tokens separated by '.', none empty, no whitespace, control characters
 * or DEL, no '*' or '>' (wildcards) unless allow_wildcards, where '*' must be
 * a whole token and '>' a whole last token. At most 256 tokens and 4096
 * bytes. Returns true when valid. Any thread.
 */
bool codec_subject_valid(const char *s, size_t len, bool allow_wildcards);

/*
 * codec_subject_valid_recent() is codec_subject_valid(s, len, false) with a
 * memory: the last few valid subjects (under 256 bytes) this thread checked
 * are kept, and one of them again is valid after a compare (ingest checks
 * the same few subjects for every failure). Any thread (each its own memory).
 */
bool codec_subject_valid_recent(const char *s, size_t len);

/*
 * codec_subject_match() tells whether the literal subject (len bytes at s)
 * matches pattern (NUL-terminated, may hold '*' and '>' tokens). Any thread.
 */
bool codec_subject_match(const char *pattern, const char *s, size_t len);

/* Header names of the retry message (DESIGN section 5). */
#define CODEC_HDR_TASK_ID "Dlq-Task-Id"
#define CODEC_HDR_ATTEMPT "Dlq-Attempt"
#define CODEC_HDR_MAX_RETRIES "Dlq-Max-Retries"
#define CODEC_HDR_CATEGORY "Dlq-Error-Category"
#define CODEC_HDR_ORIG_SUBJECT "Dlq-Original-Subject"
#define CODEC_HDR_FIRST_FAILED "Dlq-First-Failed-At"
#define CODEC_HDR_MSG_ID "Nats-Msg-Id"
#define CODEC_HDR_INVALID_REASON "Dlq-Invalid-Reason"
#define CODEC_HDR_SERVICE_ERROR "Nats-Service-Error"
#define CODEC_HDR_SERVICE_ERROR_CODE "Nats-Service-Error-Code"

/*
 * codec_outcome is what a worker's reply to a retry says (DESIGN section 6).
 * error/error_type borrow from the reply body and live as long as it does.
 */
struct codec_outcome {
    bool ok;
    struct codec_str error;      /* "" when absent */
    struct codec_str error_type; /* NULL when absent */
};

/*
 * codec_decode_outcome() reads a worker's reply body (len bytes at buf, JSON
 * or MessagePack as in codec_decode()). An empty body, {"ok":true} or a map
 * with ok=true is success. {"ok":false,"error":..,"error_type":..} is a
 * failure. Anything else that parses is a failure whose error says
 * "unrecognised reply"; bytes that do not parse are a failure with error
 * "malformed reply". Always returns SC_OK and fills *out; the caller
 * handles the Nats-Service-Error header itself. Thread: the one using c.
 * When the reply was JSON, or error had to be truncated (as in
 * codec_decode(), max_error_len) or rendered, error and error_type point
 * into c's arena instead and live until the next codec_decode() or
 * codec_decode_outcome() on c. An error that is a map with a string
 * "message" gives that message; any other non-string error gives its JSON
 * text. error_type is cut to max_string_len bytes.
 */
sc_status codec_decode_outcome(struct codec *c, const void *buf, size_t len,
                               struct codec_outcome *out);

#endif
