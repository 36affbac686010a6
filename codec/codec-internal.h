/* codec-internal.h - MessagePack cursor and JSON helpers shared by the codec's files. */
#ifndef DLQ_CODEC_INTERNAL_H
#define DLQ_CODEC_INTERNAL_H

/*
 * Private to codec/ (tests/codec/ may include it for the test-only accessor
 * at the bottom). Nothing here is part of the module's contract.
 *
 * Calls go one way: envelope.c (codec_decode) and outcome.c
 * (codec_decode_outcome) -> json.c (JSON in and out) -> codec.c (the codec
 * object, codec_fail, shared text helpers) and msgpack.c (the cursor), which
 * call nothing else in codec/. subject.c stands alone.
 */

#include "codec.h"

#include <stdarg.h>

/*
 * Hard ceiling on nesting whatever the limits say: the walkers keep one
 * small frame per open container in a fixed array on the C stack, so
 * max_depth values above this are treated as this.
 */
#define CODEC_DEPTH_CAP 1000u

/* Kinds of MessagePack value. Signed integers >= 0 are reported as UINT. */
enum codec_mp_kind {
    CODEC_MP_NIL,
    CODEC_MP_BOOL,
    CODEC_MP_UINT,
    CODEC_MP_INT, /* negative values only */
    CODEC_MP_FLOAT,
    CODEC_MP_STR,
    CODEC_MP_BIN,
    CODEC_MP_ARRAY,
    CODEC_MP_MAP,
    CODEC_MP_EXT,
};

/*
 * One decoded MessagePack header. For str, bin and ext the payload has been
 * checked to fit and data/dlen point at it; for arrays and maps only the
 * header is covered by size and count is NOT yet checked against the input
 * (codec_msgpack_walk() does that).
 */
struct codec_mp_item {
    enum codec_mp_kind kind;
    size_t size;          /* bytes of header + payload (containers: header only) */
    uint64_t u;           /* UINT value; BOOL as 0/1 */
    int64_t i;            /* INT value (< 0) */
    double f;             /* FLOAT value (float32 widened) */
    bool f32;             /* FLOAT was a float32 */
    const uint8_t *data;  /* STR/BIN/EXT payload */
    size_t dlen;          /* its length */
    int8_t ext_type;      /* EXT type */
    uint64_t count;       /* ARRAY elements or MAP pairs */
};

/*
 * codec_msgpack_head() reads the header of the value at p, of which avail
 * bytes may be read. Returns NULL on success, else the static reason
 * "truncated" (a declared length passes avail) or "bad_msgpack" (the
 * reserved byte 0xc1). Never reads past p + avail.
 */
const char *codec_msgpack_head(const uint8_t *p, size_t avail, struct codec_mp_item *it);

/* Where and why a walk failed. */
struct codec_mp_err {
    const char *reason; /* "truncated", "too_deep" or "bad_msgpack" */
    size_t offset;      /* byte offset of the offending header */
};

/*
 * codec_msgpack_walk() is codec_msgpack_check() with the failure detail:
 * it walks one value at p (len bytes available) without recursion, checking
 * every declared length (and the elements still owed by open containers)
 * against the bytes remaining, and nesting against max_depth (an empty
 * container counts; max_depth 0 allows scalars only). On SC_OK sets *used.
 * On SC_EPROTO fills *err (may be NULL).
 */
sc_status codec_msgpack_walk(const uint8_t *p, size_t len, unsigned max_depth, size_t *used,
                             struct codec_mp_err *err);

/*
 * codec_msgpack_timestamp() converts a timestamp ext (type -1, 4, 8 or 12
 * data bytes) to ms since the epoch. Returns false for another ext, a bad
 * length, nanoseconds above 999999999 or a time outside years 0000-9999.
 */
bool codec_msgpack_timestamp(const struct codec_mp_item *it, int64_t *ms);

/* Milliseconds of 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z. */
#define CODEC_MIN_MS (-62167219200000LL)
#define CODEC_MAX_MS 253402300799999LL

/* One open container while JSON input is converted to MessagePack. */
struct codec_json_frame {
    void *value; /* json_t *, kept opaque so this header does not need jansson */
    void *iter;  /* object iterator */
    size_t idx;  /* next array index */
};

struct codec {
    struct codec_limits lim;
    unsigned depth;                  /* min(lim.max_depth, CODEC_DEPTH_CAP) */
    struct sc_buf text;              /* truncated error text or a rendered outcome error */
    struct sc_buf conv;              /* MessagePack converted from JSON input */
    struct sc_buf jtext;             /* JSON input with its big unsigned literals blanked (rare) */
    struct sc_buf bigs;              /* struct codec_big_uint entries found in that input */
    struct codec_json_frame *frames; /* depth entries */
    const char *reason;              /* of the last refusal */
    char why[256];                   /* of the last refusal */
};

/*
 * An integer literal of JSON input above INT64_MAX and at most UINT64_MAX,
 * which jansson cannot hold: where it is in the text, its place among the
 * text's number literals (0-based, text order), and its value.
 */
struct codec_big_uint {
    size_t start, len;
    size_t index;
    uint64_t value;
};

/*
 * codec_fail() records a refusal on c (reason: a static code; why: printf
 * format) and returns SC_EPROTO.
 */
sc_status codec_fail(struct codec *c, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * codec_looks_json() is true when the first byte of p (len bytes) that is
 * not blank is '{': the input is taken as JSON.
 */
bool codec_looks_json(const uint8_t *p, size_t len);

/*
 * codec_utf8_cut() returns the largest cut <= want (want < len) that does not
 * split a UTF-8 sequence of p (len bytes): it backs off over at most three
 * continuation bytes (not UTF-8 anyway: want). want >= len returns len.
 */
size_t codec_utf8_cut(const uint8_t *p, size_t len, size_t want);

/*
 * codec_error_text() puts text (len bytes) into *out: borrowed when it fits
 * max_error_len, else a copy in c->text cut at a UTF-8 boundary so that the
 * copy plus CODEC_TRUNC_MARKER is at most max_error_len bytes (when
 * max_error_len is shorter than the marker, the copy is the marker alone).
 * Returns true when it truncated. The copy lives until c->text is next reset.
 */
bool codec_error_text(struct codec *c, const uint8_t *text, size_t len, struct codec_str *out);

/*
 * codec_json_to_msgpack() parses len bytes of JSON at buf with jansson and
 * writes the value as MessagePack into c->conv (reset first). When
 * want_object, anything but an object is refused as "not_a_map". Nesting
 * beyond c->depth is refused as "too_deep" without recursion. Returns SC_OK
 * or SC_EPROTO (codec_fail() called).
 */
sc_status codec_json_to_msgpack(struct codec *c, const char *buf, size_t len, bool want_object);

/*
 * Test only: codec_arena_capacity() returns the bytes currently reserved by
 * c's reusable buffers, to show that decoding does not grow them.
 */
size_t codec_arena_capacity(const struct codec *c);

#endif
