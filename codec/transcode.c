/* transcode.c - JSON text to MessagePack in one pass, without a tree: the store's documents become KV records (codec_json_msgpack()); a rendered view straight from MessagePack with the same bytes (codec_msgpack_view()). */
#include "codec-internal.h"

#include <errno.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* One open object or array: where its 32-bit count goes, and its count so far. */
struct tc_frame {
    size_t count_at;
    uint32_t count;
    bool object;
    bool want_value; /* object: a key was read, its value comes next */
};

struct tc {
    struct codec *c;
    const char *p, *end;
    msgpack_packer pk;
    struct tc_frame frames[CODEC_DEPTH_CAP + 1];
    unsigned depth;
};

/*
 * The packer's output: most writes are a few bytes into room the buffer
 * has, copied here without a call (the NUL after them is written once, at
 * the end of codec_json_msgpack()).
 */
static int
tc_write(void *data, const char *buf, size_t len)
{
    struct sc_buf *b = data;

    if (len < b->cap - b->len && b->len + len <= b->max) { /* cap > len: room for the NUL too */
        char *d = b->data + b->len;
        if (len <= 8)
            for (size_t i = 0; i < len; i++)
                d[i] = buf[i];
        else
            memcpy(d, buf, len);
        b->len += len;
        return 0;
    }
    return sc_buf_append(b, buf, len) == SC_OK ? 0 : -1;
}

/* Packs the n bytes at p as a string (fixstr, str8, str16 or str32, as msgpack_pack_str() does) in one write. */
static int
tc_str(struct tc *t, const char *p, size_t n)
{
    unsigned char *d;
    size_t h = n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5;

    if (n > UINT32_MAX || !(d = (unsigned char *)sc_buf_grow(&t->c->conv, h + n)))
        return -1;
    if (h == 1) {
        d[0] = (unsigned char)(0xa0 | n);
    } else if (h == 2) {
        d[0] = 0xd9;
        d[1] = (unsigned char)n;
    } else if (h == 3) {
        d[0] = 0xda;
        d[1] = (unsigned char)(n >> 8);
        d[2] = (unsigned char)n;
    } else {
        d[0] = 0xdb;
        d[1] = (unsigned char)(n >> 24);
        d[2] = (unsigned char)(n >> 16);
        d[3] = (unsigned char)(n >> 8);
        d[4] = (unsigned char)n;
    }
    if (n)
        memcpy(d + h, p, n);
    return 0;
}

static void
skip_ws(struct tc *t)
{
    while (t->p < t->end && (*t->p == ' ' || *t->p == '\n' || *t->p == '\r' || *t->p == '\t'))
        t->p++;
}

static int
hex4(const char *s, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        char ch = s[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v |= (unsigned)(ch - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Appends code point cp as UTF-8 to b. */
static sc_status
put_utf8(struct sc_buf *b, unsigned cp)
{
    char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return sc_buf_append(b, u, n);
}

/* Reads a string at t->p (on its '"'); packs it. -1 when malformed or out of room. */
static int
tc_string(struct tc *t)
{
    const char *s = ++t->p, *q, *bs;
    struct sc_buf *u = &t->c->jtext;

    /* memchr() scans many bytes at a time: the closing quote, then a backslash before it. */
    q = memchr(s, '"', (size_t)(t->end - s));
    if (!q)
        q = t->end;
    bs = memchr(s, '\\', (size_t)(q - s));
    if (!bs && q < t->end) { /* no escape: the bytes as they are */
        t->p = q + 1;
        return tc_str(t, s, (size_t)(q - s));
    }
    q = bs ? bs : q;
    sc_buf_reset(u);
    if (sc_buf_append(u, s, (size_t)(q - s)))
        return -1;
    while (q < t->end && *q != '"') {
        if (*q != '\\') {
            const char *r = q;
            while (r < t->end && *r != '"' && *r != '\\')
                r++;
            if (sc_buf_append(u, q, (size_t)(r - q)))
                return -1;
            q = r;
            continue;
        }
        if (++q >= t->end)
            return -1;
        switch (*q) {
        case '"': case '\\': case '/':
            if (sc_buf_appendc(u, *q))
                return -1;
            q++;
            break;
        case 'b': if (sc_buf_appendc(u, '\b')) return -1; q++; break;
        case 'f': if (sc_buf_appendc(u, '\f')) return -1; q++; break;
        case 'n': if (sc_buf_appendc(u, '\n')) return -1; q++; break;
        case 'r': if (sc_buf_appendc(u, '\r')) return -1; q++; break;
        case 't': if (sc_buf_appendc(u, '\t')) return -1; q++; break;
        case 'u': {
            unsigned cp, lo;
            if (t->end - q < 5 || hex4(q + 1, &cp))
                return -1;
            q += 5;
            if (cp >= 0xd800 && cp < 0xdc00 && t->end - q >= 6 && q[0] == '\\' && q[1] == 'u' &&
                !hex4(q + 2, &lo) && lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                q += 6;
            } else if (cp >= 0xd800 && cp < 0xe000) {
                cp = 0xfffd; /* a lone surrogate, as jansson would refuse: kept as U+FFFD */
            }
            if (put_utf8(u, cp))
                return -1;
            break;
        }
        default:
            return -1;
        }
    }
    if (q >= t->end)
        return -1;
    t->p = q + 1;
    return tc_str(t, u->data, u->len);
}

/* Reads a number at t->p; packs it as an integer when it is one that fits, else as float64. */
static int
tc_number(struct tc *t)
{
    const char *s = t->p;
    char buf[64];
    bool integer = true;
    size_t n;

    while (t->p < t->end) {
        char ch = *t->p;
        if (ch == '.' || ch == 'e' || ch == 'E')
            integer = false;
        else if (!(ch >= '0' && ch <= '9') && ch != '+' && ch != '-')
            break;
        t->p++;
    }
    n = (size_t)(t->p - s);
    if (n == 0 || n >= sizeof(buf))
        return -1;
    if (integer && n <= 18 && (s[0] != '-' || n > 1) && (s[0] != '0' || n == 1)) {
        /* up to 18 digits fit an int64: no strtoull() (a leading '+' or zero goes the long way) */
        uint64_t v = 0;
        size_t i = s[0] == '-';
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            v = v * 10 + (uint64_t)(s[i] - '0');
        if (i == n)
            return s[0] == '-' ? msgpack_pack_int64(&t->pk, -(int64_t)v) : msgpack_pack_uint64(&t->pk, v);
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (integer) {
        char *e;
        errno = 0;
        if (buf[0] == '-') {
            long long v = strtoll(buf, &e, 10);
            if (!errno && *e == '\0')
                return msgpack_pack_int64(&t->pk, v);
        } else {
            unsigned long long v = strtoull(buf, &e, 10);
            if (!errno && *e == '\0')
                return msgpack_pack_uint64(&t->pk, v);
        }
    }
    {
        char *e;
        double v = strtod(buf, &e);
        if (*e != '\0')
            return -1;
        return msgpack_pack_double(&t->pk, v);
    }
}

/* Opens an object or array: a 32-bit header whose count is patched at its close. */
static int
tc_open(struct tc *t, bool object)
{
    static const char hdr[2][5] = {{(char)0xdd, 0, 0, 0, 0}, {(char)0xdf, 0, 0, 0, 0}};
    struct tc_frame *f;

    if (t->depth >= t->c->depth)
        return -1;
    f = &t->frames[t->depth++];
    f->count_at = t->c->conv.len + 1;
    f->count = 0;
    f->object = object;
    f->want_value = false;
    t->p++;
    return sc_buf_append(&t->c->conv, hdr[object], 5) == SC_OK ? 0 : -1;
}

static void
tc_close(struct tc *t)
{
    struct tc_frame *f = &t->frames[--t->depth];
    unsigned char *at = (unsigned char *)t->c->conv.data + f->count_at;

    at[0] = (unsigned char)(f->count >> 24);
    at[1] = (unsigned char)(f->count >> 16);
    at[2] = (unsigned char)(f->count >> 8);
    at[3] = (unsigned char)f->count;
    t->p++;
}

/* Reads one scalar or the start of a container. -1 when malformed or out of room. */
static int
tc_value(struct tc *t)
{
    size_t left = (size_t)(t->end - t->p);

    switch (*t->p) {
    case '{': return tc_open(t, true);
    case '[': return tc_open(t, false);
    case '"': return tc_string(t);
    case 't':
        if (left < 4 || memcmp(t->p, "true", 4) != 0)
            return -1;
        t->p += 4;
        return msgpack_pack_true(&t->pk);
    case 'f':
        if (left < 5 || memcmp(t->p, "false", 5) != 0)
            return -1;
        t->p += 5;
        return msgpack_pack_false(&t->pk);
    case 'n':
        if (left < 4 || memcmp(t->p, "null", 4) != 0)
            return -1;
        t->p += 4;
        return msgpack_pack_nil(&t->pk);
    default:
        return tc_number(t);
    }
}

/* The body of the walk: values, keys, commas and closes until the top value is done. */
static int
tc_walk(struct tc *t)
{
    bool started = false;

    for (;;) {
        struct tc_frame *f;
        skip_ws(t);
        if (t->p >= t->end)
            return -1;
        if (!t->depth) {
            if (started)
                return 0;
            started = true;
            if (tc_value(t))
                return -1;
            if (!t->depth)
                return 0; /* a scalar alone */
            continue;
        }
        f = &t->frames[t->depth - 1];
        if ((*t->p == '}' && f->object && !f->want_value) || (*t->p == ']' && !f->object)) {
            tc_close(t);
            if (!t->depth)
                return 0;
            t->frames[t->depth - 1].want_value = false;
            continue;
        }
        if (f->count > 0 && !f->want_value) {
            if (*t->p != ',')
                return -1;
            t->p++;
            skip_ws(t);
            if (t->p >= t->end)
                return -1;
        }
        if (f->object && !f->want_value) {
            if (*t->p != '"' || tc_string(t))
                return -1;
            skip_ws(t);
            if (t->p >= t->end || *t->p != ':')
                return -1;
            t->p++;
            f->want_value = true;
            f->count++;
            continue;
        }
        if (!f->object)
            f->count++;
        f->want_value = false;
        if (tc_value(t))
            return -1;
    }
}

sc_status
codec_json_msgpack(struct codec *c, const char *json, size_t len, const char **out, size_t *outlen)
{
    struct tc tcs, *t = &tcs; /* 16 KiB of frames on the stack: no allocation per record */
    int rc;

    *out = NULL;
    *outlen = 0;
    t->depth = 0;
    t->c = c;
    t->p = json;
    t->end = json + len;
    sc_buf_reset(&c->conv);
    msgpack_packer_init(&t->pk, &c->conv, tc_write);
    rc = tc_walk(t);
    if (!rc) {
        skip_ws(t);
        rc = t->p == t->end ? 0 : -1;
    }
    if (rc)
        return codec_fail(c, "bad_json", "json: malformed or too large for the store's record");
    if (c->conv.data)
        c->conv.data[c->conv.len] = '\0'; /* tc_write() leaves it out */
    *out = c->conv.data;
    *outlen = c->conv.len;
    return SC_OK;
}

/* ---- a rendered view straight from MessagePack (codec_msgpack_view()) ------------------------------- */

/* Views longer than this take the JSON path (its text could pass the renderer's buffer). */
#define VIEW_DIRECT_MAX (1u << 20)

/* Valid text without NUL: JSON quoting and reading back give the same bytes (key or value). */
static bool
view_text(const struct codec_mp_item *it)
{
    return sc_utf8_valid((const char *)it->data, it->dlen, SC_UTF8_NO_NUL);
}

/* A 32-bit container header with its count known, as tc_open() + tc_close() write it. */
static int
view_open(struct tc *t, bool object, uint64_t count)
{
    char h[5] = {object ? (char)0xdf : (char)0xdd, (char)(count >> 24), (char)(count >> 16),
                 (char)(count >> 8), (char)count};

    return tc_write(&t->c->conv, h, 5);
}

/*
 * A bin value as the renderer writes it, {"$bin":"<base64>"}, read back: a
 * map32 of one pair, its base64 text (padded, ASCII) as a string.
 */
static int
view_bin(struct tc *t, const struct codec_mp_item *it)
{
    static const char hdr[] = {(char)0xdf, 0, 0, 0, 1, (char)0xa4, '$', 'b', 'i', 'n'};
    size_t n = 4 * ((it->dlen + 2) / 3);
    char h[5];
    size_t hl;

    if (tc_write(&t->c->conv, hdr, sizeof(hdr)) || n > UINT32_MAX)
        return -1;
    if (n < 32) {
        h[0] = (char)(0xa0 | n);
        hl = 1;
    } else if (n < 256) {
        h[0] = (char)0xd9;
        h[1] = (char)n;
        hl = 2;
    } else if (n < 65536) {
        h[0] = (char)0xda;
        h[1] = (char)(n >> 8);
        h[2] = (char)n;
        hl = 3;
    } else {
        h[0] = (char)0xdb;
        h[1] = (char)(n >> 24);
        h[2] = (char)(n >> 16);
        h[3] = (char)(n >> 8);
        h[4] = (char)n;
        hl = 5;
    }
    if (tc_write(&t->c->conv, h, hl))
        return -1;
    return sc_base64_encode(&t->c->conv, it->data, it->dlen) == SC_OK ? 0 : -1;
}

/*
 * One value of the view: 0 written, 1 outside what is done here (the JSON
 * path decides), -1 out of room. *hide is set after a key that is masked.
 */
static int
view_value(struct tc *t, const struct codec_mp_item *it, bool key, bool *hide)
{
    switch (it->kind) {
    case CODEC_MP_STR:
        if (!view_text(it))
            return 1;
        if (key)
            *hide = codec_mask_key(it->data, it->dlen);
        return tc_str(t, (const char *)it->data, it->dlen);
    case CODEC_MP_NIL: return key ? 1 : msgpack_pack_nil(&t->pk);
    case CODEC_MP_BOOL:
        if (key)
            return 1;
        return it->u ? msgpack_pack_true(&t->pk) : msgpack_pack_false(&t->pk);
    case CODEC_MP_UINT:
        /* past INT64_MAX the text gets ".0" and reads back as a float64 */
        return key || it->u > INT64_MAX ? 1 : msgpack_pack_uint64(&t->pk, it->u);
    case CODEC_MP_INT: return key ? 1 : msgpack_pack_int64(&t->pk, it->i);
    case CODEC_MP_BIN: return key ? 1 : view_bin(t, it);
    default: return 1; /* floats (text form), ext, container keys: the JSON path */
    }
}

sc_status
codec_msgpack_view(struct codec *c, const void *buf, size_t len, unsigned max_depth,
                   const char **out, size_t *outlen)
{
    struct tc tcs, *t = &tcs;
    uint64_t left[CODEC_DEPTH_CAP];
    bool is_map[CODEC_DEPTH_CAP];
    const uint8_t *p = buf;
    size_t pos = 0, used;
    bool hide = false;

    *out = NULL;
    *outlen = 0;
    sc_buf_reset(&c->conv);
    if (!p) { /* rendered "null" */
        if (sc_buf_appendc(&c->conv, (char)0xc0))
            return SC_EINVAL;
        *out = c->conv.data;
        *outlen = c->conv.len;
        return SC_OK;
    }
    if (len > VIEW_DIRECT_MAX || codec_msgpack_walk(p, len, max_depth, &used, NULL) ||
        used != len)
        return SC_EINVAL; /* the JSON path renders null for these */
    t->depth = 0;
    t->c = c;
    msgpack_packer_init(&t->pk, &c->conv, tc_write);
    for (;;) {
        struct codec_mp_item it;
        bool key = false;
        int rc;

        if (codec_msgpack_head(p + pos, len - pos, &it))
            return SC_EINVAL;
        pos += it.size;
        if (t->depth) {
            key = is_map[t->depth - 1] && left[t->depth - 1] % 2 == 0;
            left[t->depth - 1]--;
        }
        if (hide) { /* a masked key's value, whatever it is: "***" */
            size_t start = pos - it.size, vlen;
            hide = false;
            if (codec_msgpack_walk(p + start, len - start, max_depth, &vlen, NULL))
                return SC_EINVAL;
            pos = start + vlen;
            rc = tc_str(t, "***", 3);
        } else if (!key && (it.kind == CODEC_MP_ARRAY || it.kind == CODEC_MP_MAP)) {
            bool map = it.kind == CODEC_MP_MAP;
            if (t->depth >= c->depth || t->depth >= CODEC_DEPTH_CAP || it.count > UINT32_MAX)
                return SC_EINVAL;
            rc = view_open(t, map, it.count);
            left[t->depth] = it.count * (map ? 2 : 1);
            is_map[t->depth] = map;
            t->depth++;
        } else {
            rc = view_value(t, &it, key, &hide);
        }
        if (rc)
            return SC_EINVAL;
        while (t->depth && left[t->depth - 1] == 0)
            t->depth--;
        if (!t->depth)
            break;
    }
    if (c->conv.data)
        c->conv.data[c->conv.len] = '\0'; /* tc_write() leaves it out */
    *out = c->conv.data;
    *outlen = c->conv.len;
    return SC_OK;
}
