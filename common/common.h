/* common.h - status codes, clocks, RFC 3339 time, capped buffers and text encoders. */
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

/*
 * A clock reading held for one batch of work on the calling thread: between
 * sc_clock_hold() (reads both clocks once) and sc_clock_release(),
 * sc_held_wall_ms() and sc_held_mono_ms() on that thread return that
 * reading; outside a hold they read the clock like sc_now_wall_ms() and
 * sc_now_mono_ms(). For per-message readings on a hot path (ingest read the
 * clocks five times a task), where a time up to one batch old is as good as
 * a fresh one; the holder says how long its batch may run. Holds do not
 * nest: hold again to refresh. Any thread (thread-local state).
 */
void sc_clock_hold(void);
void sc_clock_release(void);
int64_t sc_held_wall_ms(void);
int64_t sc_held_mono_ms(void);

/*
 * sc_fnv1a64() returns the 64-bit FNV-1a hash of the len bytes at p (p may
 * be NULL when len is 0): the partition of a task id (DESIGN section 18).
 * Any thread.
 */
uint64_t sc_fnv1a64(const void *p, size_t len);

/* Bytes needed by sc_format_int() including the NUL: a sign and 20 digits. */
#define SC_INT_LEN 22

/*
 * sc_format_int() writes v in decimal, after a '-' when neg (v is then the
 * magnitude: INT64_MIN's is 0 - (uint64_t)INT64_MIN), NUL-terminated, into
 * out, which must hold SC_INT_LEN bytes; returns the length. Without the
 * printf machinery: it runs for numbers of every event, reply and log line.
 * Any thread.
 */
size_t sc_format_int(uint64_t v, bool neg, char *out);

/* sc_format_i64() is sc_format_int() of a signed value. */
static inline size_t
sc_format_i64(int64_t v, char *out)
{
    return sc_format_int(v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0, out);
}

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
 * Backoff delay lists (issue 17): SC_DELAYS_MAX entries at most, each in
 * [1, SC_DELAY_MAX_MS] ms (1 ms to 7 days).
 */
#define SC_DELAYS_MAX 32
#define SC_DELAY_MAX_MS 604800000LL

/*
 * sc_parse_duration_ms() parses len bytes at s (not NUL-terminated) as a
 * duration: a decimal integer of ms ("1500"), or one with a unit: "ms",
 * "s", "m", "h" or "d" ("250ms", "10s", "1m", "2h", "7d"); no sign, no
 * fraction, no blanks. Sets *out_ms and returns SC_OK; SC_EPROTO when the
 * text is no duration (*out_ms untouched); SC_ETOOBIG when it is one but
 * larger than INT64_MAX ms. Range checks are the caller's. Any thread.
 */
sc_status sc_parse_duration_ms(const char *s, size_t len, int64_t *out_ms);

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
/*
 * sc_buf_grow() adds n bytes to the end, NUL-terminated after them, and
 * returns where they start: the caller fills all n. NULL when they do not
 * fit under max or memory runs out (nothing changed). The pointer is valid
 * until the buffer's next change.
 */
char *sc_buf_grow(struct sc_buf *b, size_t n);
/* sc_buf_appendc() appends one byte; errors as sc_buf_append(). */
sc_status sc_buf_appendc(struct sc_buf *b, char c);
/* sc_buf_appendf() appends printf-formatted text; errors as sc_buf_append(). */
sc_status sc_buf_appendf(struct sc_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * sc_buf_append_capped() appends n bytes at p; when they do not all fit
 * under max it appends the first max - len of them (so that a capped text
 * is as long as it can be) and returns SC_ETOOBIG. Otherwise as
 * sc_buf_append().
 */
sc_status sc_buf_append_capped(struct sc_buf *b, const void *p, size_t n);

/* ---- text: UTF-8, JSON strings, base64 (common/text.c) ---- */

/*
 * sc_utf8_next() decodes the one UTF-8 sequence that starts at s (n > 0
 * bytes readable there) into *cp. Returns its length (1-4), or 0 when the
 * bytes there are not well-formed UTF-8: a stray continuation byte, a lead
 * byte 0xc0, 0xc1 or 0xf5-0xff, an overlong form, a surrogate
 * (U+D800-U+DFFF), a code point past U+10FFFF or a sequence cut short by n;
 * *cp is then U+FFFD. Never reads past s + n. Any thread.
 */
size_t sc_utf8_next(const void *s, size_t n, uint32_t *cp);

/* Which well-formed code points sc_utf8_valid() refuses besides malformed UTF-8. */
typedef enum {
    SC_UTF8_ANY = 0,    /* none: every code point, U+0000 included */
    SC_UTF8_NO_NUL,     /* U+0000 (what a C string or an OpenSearch _id cannot hold) */
    SC_UTF8_NO_CONTROL, /* the C0 controls U+0000-U+001F and DEL U+007F */
} sc_utf8_allow;

/*
 * sc_utf8_valid() is true when the len bytes at s (need not be
 * NUL-terminated; s may be NULL when len is 0) are well-formed UTF-8 in the
 * sense of sc_utf8_next() and hold no code point that allow refuses. Never
 * fails; any thread.
 */
bool sc_utf8_valid(const char *s, size_t len, sc_utf8_allow allow);

/*
 * sc_json_quote() appends the len bytes at s (any bytes; s may be NULL when
 * len is 0) to out as one quoted JSON string that always parses: '"' and
 * '\' escaped; \n \r \t \b \f by their short escapes; other C0 controls,
 * DEL and the C1 controls U+0080-U+009F as \u00XX (NUL as \u0000); each
 * byte that does not start a well-formed UTF-8 sequence (see
 * sc_utf8_next()) replaced by U+FFFD; all other text copied as it is.
 * sc_json_quote_key() does the same for an object key, except that NUL
 * becomes U+FFFD (jansson, which reads our output, refuses "\u0000" in
 * keys). Return SC_OK, SC_ENOMEM, or SC_ETOOBIG when the text passes out's
 * cap: out then holds as much of it as fits (up to the cap exactly, which
 * may end inside a character or an escape), so that a capped rendering is
 * as long as it can be. Any thread; out belongs to the caller.
 */
sc_status sc_json_quote(struct sc_buf *out, const char *s, size_t len);
sc_status sc_json_quote_key(struct sc_buf *out, const char *s, size_t len);
/* sc_json_plain_len() is how many of the len bytes at s, from the first, a JSON string holds as they are (printable ASCII but '"' and '\\'): len when sc_json_quote() would only add the quotes. Any thread. */
size_t sc_json_plain_len(const char *s, size_t len);

/*
 * sc_base64_encode() appends the len bytes at data (may be NULL when len is
 * 0) to out as standard base64 with '=' padding (RFC 4648 section 4; no
 * line breaks, no quotes): 4 * ceil(len / 3) characters, nothing for len 0.
 * Returns SC_OK, SC_ENOMEM, or SC_ETOOBIG with out filled up to its cap, as
 * sc_json_quote(). Any thread.
 */
sc_status sc_base64_encode(struct sc_buf *out, const void *data, size_t len);

/*
 * sc_base64_decode() appends to out the bytes that the len characters of
 * standard base64 at s stand for. Trailing '=' are dropped whatever their
 * number, so padded and unpadded text both decode; the bits of a last
 * partial character group that make no whole byte are ignored. Returns
 * SC_OK; SC_EPROTO for any other character ('=' inside, '-', '_',
 * white space) or a length that leaves one character over after the
 * groups of four; or sc_buf_append()'s errors. After an error out may
 * hold a partial result. Any thread.
 */
sc_status sc_base64_decode(const char *s, size_t len, struct sc_buf *out);

/*
 * sc_base64_padded() tells whether the len characters at s have the shape
 * of padded standard base64 (RFC 4648 section 4): a multiple of four
 * characters, at most two '=' and only at the end. It does not check the
 * alphabet (sc_base64_decode() does). An input that must be base64 as
 * RFC 4648 writes it (payload_b64) asks both. Any thread.
 */
bool sc_base64_padded(const char *s, size_t len);

/* ---- JSON object writer (common/jw.c) ---- */

/*
 * A writer of JSON objects and arrays into an sc_buf, with the comma
 * handling inside: each sc_jw_* call that takes a key k writes `,"k":value`
 * (no comma before the first member of an object or array). A NULL k writes
 * the value alone, for array elements. The layout is public so that the
 * writer can live on the caller's stack; set it up with sc_jw_init().
 * The first failure of an append (SC_ETOOBIG past the buffer's cap,
 * SC_ENOMEM) is kept in st and every later call is then a no-op, so a
 * caller writes the whole object and checks st once; the buffer then holds
 * a cut-off text. Keys are quoted with sc_json_quote(). Any thread; the
 * writer and its buffer belong to the caller.
 */
struct sc_jw {
    struct sc_buf *b; /* borrowed: where the text goes */
    sc_status st;     /* SC_OK, or the first append that failed */
    bool first;       /* nothing written yet in the innermost open object or array */
};

/* sc_jw_init() points w at b (appending after what b holds) with no member written yet. */
void sc_jw_init(struct sc_jw *w, struct sc_buf *b);
/* sc_jw_raw() appends n bytes at s as they are (no comma, no key): for '{', '}' and pre-made JSON. */
void sc_jw_raw(struct sc_jw *w, const char *s, size_t n);
/*
 * sc_jw_key() writes the comma (unless first) and `"k":` (nothing more
 * when k is NULL), for a value the caller appends itself.
 */
void sc_jw_key(struct sc_jw *w, const char *k);
/* sc_jw_str() writes "k": v as a JSON string (sc_json_quote()), or null when v is NULL. */
void sc_jw_str(struct sc_jw *w, const char *k, const char *v);
/* sc_jw_strn() does the same for len bytes at v (any bytes; v NULL: null). */
void sc_jw_strn(struct sc_jw *w, const char *k, const char *v, size_t len);
/* sc_jw_int() writes "k": v in decimal. */
void sc_jw_int(struct sc_jw *w, const char *k, int64_t v);
/* sc_jw_uint() writes "k": v in decimal. */
void sc_jw_uint(struct sc_jw *w, const char *k, uint64_t v);
/* sc_jw_bool() writes "k": true or false. */
void sc_jw_bool(struct sc_jw *w, const char *k, bool v);
/* sc_jw_null() writes "k": null. */
void sc_jw_null(struct sc_jw *w, const char *k);
/*
 * sc_jw_time() writes "k": wall_ms (ms since the epoch) as an RFC 3339
 * string (sc_format_rfc3339()), or null when wall_ms is 0 or cannot be
 * represented.
 */
void sc_jw_time(struct sc_jw *w, const char *k, int64_t wall_ms);
/*
 * sc_jw_fmt() writes "k": the printf-formatted text as it is (a number such
 * as "%.2f"; no quoting). Text of SC_JW_FMT_MAX bytes or more is not
 * written and sets st to SC_ETOOBIG.
 */
#define SC_JW_FMT_MAX 512
void sc_jw_fmt(struct sc_jw *w, const char *k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * sc_jw_open() writes "k": and open ('{' or '['), and starts a new level
 * (its first member gets no comma); sc_jw_close() writes close ('}' or ']')
 * and leaves the enclosing level with a member written.
 */
void sc_jw_open(struct sc_jw *w, const char *k, char open);
void sc_jw_close(struct sc_jw *w, char close);

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
 * sc_find_str() looks key (NUL terminated) up in base: n entries of size
 * bytes each, sorted by strcmp of their first member, a `char *` (a
 * subject table of workers.c, breaker.c, dlq/effect.c). Returns its index,
 * or -(insertion point) - 1 when absent. O(log n). Pure; any thread that
 * owns the array.
 */
long sc_find_str(const void *base, size_t n, size_t size, const char *key);

/*
 * sc_hash64() mixes len bytes at p into seed (a multiply-xorshift over
 * 8-byte words, finished with a 64-bit avalanche) and returns the hash.
 * Not cryptographic; a random seed keeps client-chosen keys from being
 * aimed at one bucket. Never fails; any thread.
 */
uint64_t sc_hash64(uint64_t seed, const void *p, size_t len);

/*
 * sc_random_u64() returns 64 bits from the kernel's random source
 * (getrandom(), not waiting for its pool at early boot), never 0: the seeds
 * of the id table's hash and of backoff jitter, which two sidecars started
 * in the same millisecond must not share. Where the kernel gives nothing it
 * mixes the clocks, the process id and an address instead. Any thread.
 */
uint64_t sc_random_u64(void);

#define SC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* SC_SWAP() exchanges the values of a and b, both lvalues of type T. */
#define SC_SWAP(T, a, b)                                                                         \
    do {                                                                                         \
        T sc_swap_tmp_ = (a);                                                                    \
        (a) = (b);                                                                               \
        (b) = sc_swap_tmp_;                                                                      \
    } while (0)

#endif
