/* docw.c - the task document's writer: JSON text through sc_jw, or the KV store's MessagePack record directly, from the same calls. */
#include <string.h>

#include <msgpack.h>

#include "docw.h"
#include "persist.h"

void
persist_dw_init_json(struct persist_dw *w, struct sc_jw *jw)
{
    memset(w, 0, sizeof(*w));
    w->jw = jw;
}

void
persist_dw_init_mp(struct persist_dw *w, struct sc_buf *out, struct codec *codec,
                   struct sc_buf *scratch)
{
    memset(w, 0, sizeof(*w));
    w->mp = out;
    w->codec = codec;
    w->scratch = scratch;
}

sc_status
persist_dw_status(const struct persist_dw *w)
{
    return w->jw ? w->jw->st : w->st;
}

/* ---- MessagePack ------------------------------------------------------------------------------ */

/* Appends n bytes: a copy into room the buffer has (the usual case), else sc_buf_append(). */
static void
mp_put(struct persist_dw *w, const void *p, size_t n)
{
    struct sc_buf *b = w->mp;

    if (w->st)
        return;
    if (n < b->cap - b->len && b->len + n <= b->max) { /* cap > len: room for the NUL too */
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return;
    }
    w->st = sc_buf_append(b, p, n);
}

/* A string header (fixstr, str8, str16, str32: msgpack_pack_str()'s choice). */
static void
mp_str_head(struct persist_dw *w, size_t n)
{
    unsigned char h[5];
    size_t hl;

    if (n < 32) {
        h[0] = (unsigned char)(0xa0 | n);
        hl = 1;
    } else if (n < 256) {
        h[0] = 0xd9;
        h[1] = (unsigned char)n;
        hl = 2;
    } else if (n < 65536) {
        h[0] = 0xda;
        h[1] = (unsigned char)(n >> 8);
        h[2] = (unsigned char)n;
        hl = 3;
    } else {
        h[0] = 0xdb;
        h[1] = (unsigned char)(n >> 24);
        h[2] = (unsigned char)(n >> 16);
        h[3] = (unsigned char)(n >> 8);
        h[4] = (unsigned char)n;
        hl = 5;
    }
    if (n > UINT32_MAX && !w->st)
        w->st = SC_ETOOBIG;
    mp_put(w, h, hl);
}

static void
mp_str(struct persist_dw *w, const char *s, size_t n)
{
    unsigned char small[32];

    if (n < 32) { /* a key or a short value: header and bytes in one copy */
        small[0] = (unsigned char)(0xa0 | n);
        if (n)
            memcpy(small + 1, s, n);
        mp_put(w, small, n + 1);
        return;
    }
    mp_str_head(w, n);
    mp_put(w, s, n);
}

/* Counts one member of the open container and writes its key, if any. */
static void
mp_member(struct persist_dw *w, const char *k)
{
    if (w->depth)
        w->n[w->depth - 1]++;
    if (k)
        mp_str(w, k, strlen(k));
}

static int
mp_write(void *data, const char *buf, size_t len)
{
    struct persist_dw *w = data;

    mp_put(w, buf, len);
    return w->st ? -1 : 0;
}

/* A JSON integer as codec_json_msgpack() packs it: negative as int64, else uint64 (smallest form). */
static void
mp_int(struct persist_dw *w, int64_t v, bool is_unsigned, uint64_t u)
{
    msgpack_packer pk;

    msgpack_packer_init(&pk, w, mp_write);
    if (!is_unsigned && v < 0)
        msgpack_pack_int64(&pk, v);
    else
        msgpack_pack_uint64(&pk, is_unsigned ? u : (uint64_t)v);
}

/*
 * The JSON text in w->scratch, converted as codec_json_msgpack() does. When
 * it cannot be (deeper than the codec allows) the record fails with
 * SC_ETOOBIG: the store cannot take the task, as when the whole document
 * could not be converted.
 */
static void
mp_json(struct persist_dw *w)
{
    const char *mp;
    size_t len;

    if (w->st)
        return;
    if (codec_json_msgpack(w->codec, w->scratch->data ? w->scratch->data : "", w->scratch->len, &mp,
                           &len) != SC_OK) {
        w->st = SC_ETOOBIG;
        return;
    }
    mp_put(w, mp, len);
}

/* ---- the fields ------------------------------------------------------------------------------- */

void
persist_dw_open(struct persist_dw *w, const char *k, char open)
{
    static const unsigned char hdr[2][5] = {{0xdd, 0, 0, 0, 0}, {0xdf, 0, 0, 0, 0}};

    if (w->jw) {
        sc_jw_open(w->jw, k, open);
        return;
    }
    mp_member(w, k);
    if (w->depth == PERSIST_DW_DEPTH) {
        w->st = w->st ? w->st : SC_EINVAL;
        return;
    }
    w->at[w->depth] = w->mp->len + 1;
    w->n[w->depth++] = 0;
    mp_put(w, hdr[open == '{'], 5);
}

void
persist_dw_close(struct persist_dw *w, char close)
{
    unsigned char *at;
    uint32_t n;

    if (w->jw) {
        sc_jw_close(w->jw, close);
        return;
    }
    if (!w->depth)
        return;
    n = w->n[--w->depth];
    if (w->st)
        return;
    at = (unsigned char *)w->mp->data + w->at[w->depth];
    at[0] = (unsigned char)(n >> 24);
    at[1] = (unsigned char)(n >> 16);
    at[2] = (unsigned char)(n >> 8);
    at[3] = (unsigned char)n;
}

void
persist_dw_int(struct persist_dw *w, const char *k, int64_t v)
{
    if (w->jw) {
        sc_jw_int(w->jw, k, v);
        return;
    }
    mp_member(w, k);
    mp_int(w, v, false, 0);
}

void
persist_dw_uint(struct persist_dw *w, const char *k, uint64_t v)
{
    if (w->jw) {
        sc_jw_uint(w->jw, k, v);
        return;
    }
    mp_member(w, k);
    mp_int(w, 0, true, v);
}

void
persist_dw_bool(struct persist_dw *w, const char *k, bool v)
{
    unsigned char b = v ? 0xc3 : 0xc2;

    if (w->jw) {
        sc_jw_bool(w->jw, k, v);
        return;
    }
    mp_member(w, k);
    mp_put(w, &b, 1);
}

void
persist_dw_null(struct persist_dw *w, const char *k)
{
    unsigned char nil = 0xc0;

    if (w->jw) {
        sc_jw_null(w->jw, k);
        return;
    }
    mp_member(w, k);
    mp_put(w, &nil, 1);
}

void
persist_dw_time(struct persist_dw *w, const char *k, int64_t wall_ms)
{
    char ts[SC_RFC3339_LEN];
    size_t n;

    if (w->jw) {
        sc_jw_time(w->jw, k, wall_ms);
        return;
    }
    if (!wall_ms || !(n = sc_format_rfc3339(wall_ms, ts))) {
        persist_dw_null(w, k);
        return;
    }
    mp_member(w, k);
    mp_str(w, ts, n);
}

void
persist_dw_bytes(struct persist_dw *w, const char *k, const void *p, size_t len)
{
    if (w->jw) {
        persist_doc_bytes(w->jw, k, p, len);
        return;
    }
    if (!p) {
        persist_dw_null(w, k);
        return;
    }
    mp_member(w, k);
    mp_str_head(w, (len + 2) / 3 * 4);
    if (!w->st)
        w->st = sc_base64_encode(w->mp, p, len);
}

void
persist_dw_str(struct persist_dw *w, const char *k, const char *v, size_t len)
{
    char raw[PERSIST_DOC_KEY_MAX + 8];

    if (w->jw) {
        persist_doc_str(w->jw, k, v, len);
        return;
    }
    if (!v) {
        persist_dw_null(w, k);
        return;
    }
    if (sc_utf8_valid(v, len, SC_UTF8_NO_NUL)) {
        mp_member(w, k); /* valid text: JSON quoting and reading back give these bytes */
        mp_str(w, v, len);
        return;
    }
    /* What the JSON text carries of other bytes (U+FFFD ...), then their exact copy. */
    mp_member(w, k);
    sc_buf_reset(w->scratch);
    if (!w->st)
        w->st = sc_json_quote(w->scratch, v, len);
    mp_json(w);
    snprintf(raw, sizeof(raw), "%s_raw", k);
    persist_dw_bytes(w, raw, v, len);
}

void
persist_dw_msgpack(struct persist_dw *w, const char *k, const void *p, size_t len,
                   unsigned max_depth)
{
    struct sc_jw jw;
    const char *mp;
    size_t mp_len;

    if (w->jw) {
        codec_jw_msgpack(w->jw, k, p, len, max_depth);
        return;
    }
    mp_member(w, k);
    if (!w->st && codec_msgpack_view(w->codec, p, len, max_depth, &mp, &mp_len) == SC_OK) {
        mp_put(w, mp, mp_len); /* the same bytes as below, without the JSON text */
        return;
    }
    sc_buf_reset(w->scratch);
    sc_jw_init(&jw, w->scratch);
    codec_jw_msgpack(&jw, NULL, p, len, max_depth);
    if (!w->st && jw.st)
        w->st = jw.st;
    mp_json(w);
}
