/* outcome.c - what a worker's reply to a retry says (DESIGN section 6): codec_decode_outcome(). */
#include "codec-internal.h"

#include <string.h>

/* True when the len bytes at p are all blanks (or there are none). */
static bool
all_blank(const uint8_t *p, size_t len)
{
    for (size_t k = 0; k < len; k++)
        if (p[k] != ' ' && p[k] != '\t' && p[k] != '\r' && p[k] != '\n')
            return false;
    return true;
}

/*
 * Renders a non-string error value (len bytes at v) as JSON text into
 * c->text, cut like codec_error_text() when longer than max_error_len.
 */
static void
render_error(struct codec *c, const uint8_t *v, size_t len, struct codec_str *out)
{
    size_t marker = sizeof(CODEC_TRUNC_MARKER) - 1, keep;
    sc_status s;

    sc_buf_reset(&c->text);
    s = codec_render_json_masked(v, len, c->depth, &c->text);
    if (s == SC_OK && c->text.len <= c->lim.max_error_len)
        goto done;
    if (s != SC_OK && s != SC_ETOOBIG) {
        sc_buf_reset(&c->text);
        goto done;
    }
    keep = c->lim.max_error_len > marker ? c->lim.max_error_len - marker : 0;
    keep = codec_utf8_cut((const uint8_t *)c->text.data, c->text.len, keep);
    c->text.len = keep;
    if (sc_buf_append(&c->text, CODEC_TRUNC_MARKER, marker))
        sc_buf_reset(&c->text);

done:
    out->ptr = c->text.len ? c->text.data : "";
    out->len = c->text.len;
}

/* What a reply map says: its boolean `ok` and where its error values are. */
struct reply_fields {
    int ok;                  /* -1: no boolean `ok` */
    const uint8_t *err_val;  /* `error` value, NULL when absent */
    size_t err_len;
    const uint8_t *type_val; /* `error_type` value, NULL when absent */
    size_t type_len;
};

/* True when the MessagePack item is the string of len bytes at name. */
static bool
key_is(const struct codec_mp_item *key, const char *name, size_t len)
{
    return key->kind == CODEC_MP_STR && key->dlen == len && memcmp(key->data, name, len) == 0;
}

/* Reads the reply map at p (n bytes, walked whole already; head in *it) into *f. */
static void
read_reply(const struct codec *c, const uint8_t *p, size_t n, const struct codec_mp_item *it,
           struct reply_fields *f)
{
    size_t pos = it->size, used;

    f->ok = -1;
    for (uint64_t k = 0; k < it->count; k++) {
        struct codec_mp_item key, v;

        codec_msgpack_head(p + pos, n - pos, &key);
        pos += key.size;
        codec_msgpack_walk(p + pos, n - pos, c->depth, &used, NULL);
        codec_msgpack_head(p + pos, used, &v);
        if (key_is(&key, "ok", 2)) {
            f->ok = v.kind == CODEC_MP_BOOL ? (int)v.u : -1;
        } else if (key_is(&key, "error", 5)) {
            f->err_val = p + pos;
            f->err_len = used;
        } else if (key_is(&key, "error_type", 10)) {
            f->type_val = p + pos;
            f->type_len = used;
        }
        pos += used;
    }
}

/*
 * The head of the error value at v (len bytes) into *e; for
 * {"error":{"code":..,"message":".."}} the message's head when it is a
 * string.
 */
static void
error_head(const struct codec *c, const uint8_t *v, size_t len, struct codec_mp_item *e)
{
    size_t q, u;

    codec_msgpack_head(v, len, e);
    if (e->kind != CODEC_MP_MAP)
        return;
    q = e->size;
    for (uint64_t k = 0, count = e->count; k < count; k++) {
        struct codec_mp_item key, m;
        codec_msgpack_head(v + q, len - q, &key);
        q += key.size;
        codec_msgpack_walk(v + q, len - q, c->depth, &u, NULL);
        codec_msgpack_head(v + q, u, &m);
        if (key_is(&key, "message", 7) && m.kind == CODEC_MP_STR) {
            *e = m;
            return;
        }
        q += u;
    }
}

/* Fills out->error and out->error_type from a reply that says ok: false. */
static void
reply_error(struct codec *c, const struct reply_fields *f, struct codec_outcome *out)
{
    struct codec_mp_item v;

    if (f->err_val) {
        error_head(c, f->err_val, f->err_len, &v);
        if (v.kind == CODEC_MP_STR || v.kind == CODEC_MP_BIN)
            codec_error_text(c, v.data, v.dlen, &out->error);
        else if (v.kind != CODEC_MP_NIL)
            render_error(c, f->err_val, f->err_len, &out->error);
    }
    if (f->type_val) {
        codec_msgpack_head(f->type_val, f->type_len, &v);
        if (v.kind == CODEC_MP_STR) {
            out->error_type.ptr = v.dlen ? (const char *)v.data : "";
            out->error_type.len = codec_utf8_cut(v.data, v.dlen, c->lim.max_string_len);
        }
    }
}

sc_status
codec_decode_outcome(struct codec *c, const void *buf, size_t len, struct codec_outcome *out)
{
    const uint8_t *p = buf;
    size_t n = len, used;
    struct codec_mp_item it;
    struct reply_fields f = {0};

    out->ok = false;
    out->error.ptr = "";
    out->error.len = 0;
    out->error_type.ptr = NULL;
    out->error_type.len = 0;
    sc_buf_reset(&c->text);
    sc_buf_reset(&c->conv);
    if (!buf || all_blank(p, len)) {
        out->ok = true;
        return SC_OK;
    }
    /* The usual success, {"ok":true} as JSON or MessagePack, without the parser (dispatch's hot path). */
    if ((len == 11 && memcmp(p, "{\"ok\":true}", 11) == 0) ||
        (len == 5 && memcmp(p, "\x81\xa2ok\xc3", 5) == 0)) {
        out->ok = true;
        return SC_OK;
    }
    if (len > c->lim.max_envelope_bytes)
        goto malformed;
    if (codec_looks_json(p, len)) {
        if (codec_json_to_msgpack(c, buf, len, false))
            goto malformed;
        p = (const uint8_t *)c->conv.data;
        n = c->conv.len;
    }
    if (codec_msgpack_walk(p, n, c->depth, &used, NULL) || used != n)
        goto malformed;
    codec_msgpack_head(p, n, &it);
    if (it.kind != CODEC_MP_MAP)
        goto unrecognised;
    read_reply(c, p, n, &it, &f);
    if (f.ok < 0)
        goto unrecognised;
    if (f.ok)
        out->ok = true;
    else
        reply_error(c, &f, out);
    return SC_OK;

unrecognised:
    out->error.ptr = "unrecognised reply";
    out->error.len = strlen(out->error.ptr);
    return SC_OK;

malformed:
    out->error.ptr = "malformed reply";
    out->error.len = strlen(out->error.ptr);
    return SC_OK;
}
