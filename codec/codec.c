/* codec.c - the codec object: limits, reusable buffers, refusals, and the text helpers both decoders share. */
#include "codec-internal.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
codec_limits_default(struct codec_limits *l)
{
    l->max_envelope_bytes = 1024 * 1024;
    l->max_depth = 32;
    l->max_task_id_len = 256;
    l->max_error_len = 4096;
    l->max_metadata_keys = 64;
    l->max_metadata_bytes = 16384;
    l->max_repos = 64;
    l->max_string_len = 1024;
}

/* a * b, or SIZE_MAX when that overflows. */
static size_t
mul_sat(size_t a, size_t b)
{
    return b && a > SIZE_MAX / b ? SIZE_MAX : a * b;
}

struct codec *
codec_new(const struct codec_limits *limits)
{
    struct codec *c = sc_xcalloc(1, sizeof(*c));
    size_t marker = sizeof(CODEC_TRUNC_MARKER) - 1;

    if (limits)
        c->lim = *limits;
    else
        codec_limits_default(&c->lim);
    c->depth = c->lim.max_depth < CODEC_DEPTH_CAP ? c->lim.max_depth : CODEC_DEPTH_CAP;
    /* A truncated error, or an outcome's error rendered as JSON, is at most this long. */
    sc_buf_init(&c->text, c->lim.max_error_len < SIZE_MAX / 2 ? c->lim.max_error_len + marker
                                                              : SIZE_MAX / 2);
    /* MessagePack from JSON can outgrow its text (a 4-byte "1e0," is a 9-byte float64). */
    sc_buf_init(&c->conv, mul_sat(c->lim.max_envelope_bytes, 3));
    c->conv.max = c->conv.max < SIZE_MAX / 2 ? c->conv.max + 64 : SIZE_MAX / 2;
    c->frames = sc_xcalloc(c->depth ? c->depth : 1, sizeof(*c->frames));
    sc_buf_init(&c->jtext, c->lim.max_envelope_bytes);
    /* Each big literal takes at least 19 bytes of text. */
    sc_buf_init(&c->bigs, mul_sat(c->lim.max_envelope_bytes / 19 + 1, sizeof(struct codec_big_uint)));
    c->reason = "";
    return c;
}

void
codec_free(struct codec *c)
{
    if (!c)
        return;
    sc_buf_destroy(&c->text);
    sc_buf_destroy(&c->conv);
    sc_buf_destroy(&c->jtext);
    sc_buf_destroy(&c->bigs);
    free(c->frames);
    free(c);
}

const struct codec_limits *
codec_limits_get(const struct codec *c)
{
    return &c->lim;
}

size_t
codec_arena_capacity(const struct codec *c)
{
    return c->text.cap + c->conv.cap + c->jtext.cap + c->bigs.cap;
}

sc_status
codec_fail(struct codec *c, const char *reason, const char *fmt, ...)
{
    va_list ap;

    c->reason = reason;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
    return SC_EPROTO;
}

bool
codec_looks_json(const uint8_t *p, size_t len)
{
    for (size_t k = 0; k < len; k++) {
        if (p[k] == ' ' || p[k] == '\t' || p[k] == '\r' || p[k] == '\n')
            continue;
        return p[k] == '{';
    }
    return false;
}

size_t
codec_utf8_cut(const uint8_t *p, size_t len, size_t want)
{
    size_t cut = want;

    if (want >= len)
        return len;
    while (cut > 0 && want - cut < 3 && (p[cut] & 0xc0) == 0x80)
        cut--;
    if ((p[cut] & 0xc0) == 0x80)
        cut = want; /* not UTF-8 anyway: cut where asked */
    return cut;
}

bool
codec_error_text(struct codec *c, const uint8_t *text, size_t len, struct codec_str *out)
{
    size_t marker = sizeof(CODEC_TRUNC_MARKER) - 1, keep;

    if (len <= c->lim.max_error_len) {
        out->ptr = len ? (const char *)text : "";
        out->len = len;
        return false;
    }
    keep = c->lim.max_error_len > marker ? c->lim.max_error_len - marker : 0;
    keep = codec_utf8_cut(text, len, keep);
    sc_buf_reset(&c->text);
    /* text.max is max_error_len + marker, so these cannot pass the cap; on ENOMEM keep the marker only. */
    if (sc_buf_append(&c->text, text, keep) || sc_buf_append(&c->text, CODEC_TRUNC_MARKER, marker)) {
        out->ptr = CODEC_TRUNC_MARKER;
        out->len = marker;
        return true;
    }
    out->ptr = c->text.data;
    out->len = c->text.len;
    return true;
}
