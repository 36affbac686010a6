/* json.c - MessagePack to JSON text (always valid), JSON strings, and JSON input to MessagePack. */
#include "codec-internal.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t
codec_utf8_next(const uint8_t *p, size_t n, uint32_t *cp)
{
    uint8_t b0 = p[0], lo = 0x80, hi = 0xbf;
    size_t len;
    uint32_t v;

    *cp = 0xfffd;
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    if (b0 >= 0xc2 && b0 <= 0xdf) {
        len = 2;
        v = b0 & 0x1f;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
        len = 3;
        v = b0 & 0x0f;
        if (b0 == 0xe0)
            lo = 0xa0; /* no overlongs */
        else if (b0 == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
        len = 4;
        v = b0 & 0x07;
        if (b0 == 0xf0)
            lo = 0x90;
        else if (b0 == 0xf4)
            hi = 0x8f; /* nothing past U+10FFFF */
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    v = v << 6 | (p[1] & 0x3f);
    for (size_t k = 2; k < len; k++) {
        if ((p[k] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[k] & 0x3f);
    }
    *cp = v;
    return len;
}

/*
 * Output with an escape level. A map key that is not a string is rendered
 * as JSON text and that text becomes the key, a JSON string: everything
 * rendered inside such a key is escaped once more than its surroundings.
 * Text put at level L is JSON-escaped L times. Only '"', '\' and control
 * characters change under escaping, so L-fold escaping has a closed form
 * and no recursion is needed: '\' becomes 2^L backslashes, '"' becomes
 * 2^L - 1 backslashes and '"', and a control character (which only appears
 * once string contents have been escaped, so L >= 1) becomes 2^(L-1)
 * backslashes and "u00XX". Deep levels hit out's cap and fail with
 * SC_ETOOBIG instead of overflowing anything.
 */

/* 2^lvl, saturated. */
static size_t
pow2(unsigned lvl)
{
    return lvl >= sizeof(size_t) * 8 - 1 ? SIZE_MAX / 2 : (size_t)1 << lvl;
}

static sc_status
put_backslashes(struct sc_buf *out, size_t n)
{
    char bs[64];
    sc_status s;

    if (n > out->max - out->len)
        return SC_ETOOBIG;
    memset(bs, '\\', sizeof(bs));
    while (n) {
        size_t k = n < sizeof(bs) ? n : sizeof(bs);
        if ((s = sc_buf_append(out, bs, k)))
            return s;
        n -= k;
    }
    return SC_OK;
}

/*
 * Appends n bytes at s; when they do not all fit under out's cap, appends
 * what fits (so that a capped rendering is as long as it can be) and
 * returns SC_ETOOBIG.
 */
static sc_status
append_fill(struct sc_buf *out, const char *s, size_t n)
{
    size_t room = out->max > out->len ? out->max - out->len : 0;
    sc_status st;

    if (n <= room)
        return sc_buf_append(out, s, n);
    if (room && (st = sc_buf_append(out, s, room)))
        return st;
    return SC_ETOOBIG;
}

/* Appends n bytes of JSON text at s, escaped lvl times. */
static sc_status
put(struct sc_buf *out, unsigned lvl, const char *s, size_t n)
{
    sc_status st = SC_OK;
    size_t run = 0;

    if (lvl == 0)
        return append_fill(out, s, n);
    for (size_t k = 0; k < n; k++) {
        unsigned char ch = (unsigned char)s[k];
        if (ch != '"' && ch != '\\' && ch >= 0x20 && ch != 0x7f)
            continue;
        if ((st = append_fill(out, s + run, k - run)))
            return st;
        run = k + 1;
        if (ch == '"') {
            if ((st = put_backslashes(out, pow2(lvl) - 1)) || (st = sc_buf_appendc(out, '"')))
                return st;
        } else if (ch == '\\') {
            if ((st = put_backslashes(out, pow2(lvl))))
                return st;
        } else {
            if ((st = put_backslashes(out, pow2(lvl - 1))) ||
                (st = sc_buf_appendf(out, "u%04x", ch)))
                return st;
        }
    }
    return append_fill(out, s + run, n - run);
}

static sc_status
puts_lvl(struct sc_buf *out, unsigned lvl, const char *s)
{
    return put(out, lvl, s, strlen(s));
}

/*
 * Appends len bytes at s as a quoted JSON string, then escaped lvl more
 * times. For an object key (key), NUL becomes U+FFFD: "\u0000" is valid
 * JSON but jansson, which reads our output, refuses it in keys.
 */
static sc_status
put_string(struct sc_buf *out, unsigned lvl, const char *s, size_t len, bool key)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t run = 0, k = 0;
    sc_status st;
    char esc[8];

    if ((st = put(out, lvl, "\"", 1)))
        return st;
    while (k < len) {
        uint32_t cp;
        size_t n = codec_utf8_next(p + k, len - k, &cp);
        const char *rep = NULL;

        if (n == 1 && cp >= 0x20 && cp != '"' && cp != '\\' && cp != 0x7f) {
            k++;
            continue;
        }
        if (n > 1 && cp > 0x9f) {
            k += n;
            continue;
        }
        /* Something to replace: flush the run before it. */
        if (run < k && (st = put(out, lvl, s + run, k - run)))
            return st;
        if (n == 0 || (key && cp == 0)) {
            rep = "\xef\xbf\xbd"; /* U+FFFD for each byte that is not UTF-8 */
            n = 1;
        } else if (cp == '"') {
            rep = "\\\"";
        } else if (cp == '\\') {
            rep = "\\\\";
        } else if (cp == '\n') {
            rep = "\\n";
        } else if (cp == '\r') {
            rep = "\\r";
        } else if (cp == '\t') {
            rep = "\\t";
        } else if (cp == '\b') {
            rep = "\\b";
        } else if (cp == '\f') {
            rep = "\\f";
        } else {
            /* C0, DEL and the C1 controls U+0080-U+009F. */
            snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
            rep = esc;
        }
        if ((st = puts_lvl(out, lvl, rep)))
            return st;
        k += n;
        run = k;
    }
    if (run < len && (st = put(out, lvl, s + run, len - run)))
        return st;
    return put(out, lvl, "\"", 1);
}

sc_status
codec_json_string(struct sc_buf *out, const char *s, size_t len)
{
    return put_string(out, 0, s, len, false);
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Appends len bytes at p as standard base64 with padding (no quotes). */
static sc_status
put_base64(struct sc_buf *out, unsigned lvl, const uint8_t *p, size_t len)
{
    char chunk[256];
    size_t n = 0;
    sc_status st;

    for (size_t k = 0; k < len; k += 3) {
        uint32_t v = (uint32_t)p[k] << 16;
        size_t rem = len - k;

        if (rem > 1)
            v |= (uint32_t)p[k + 1] << 8;
        if (rem > 2)
            v |= p[k + 2];
        chunk[n++] = b64chars[v >> 18 & 63];
        chunk[n++] = b64chars[v >> 12 & 63];
        chunk[n++] = rem > 1 ? b64chars[v >> 6 & 63] : '=';
        chunk[n++] = rem > 2 ? b64chars[v & 63] : '=';
        if (n + 4 > sizeof(chunk)) {
            if ((st = put(out, lvl, chunk, n)))
                return st;
            n = 0;
        }
    }
    return put(out, lvl, chunk, n);
}

/* Shortest of %.15g/%.17g (float: %.7g/%.9g) that reads back as the same value. */
static void
format_float(double f, bool f32, char *buf, size_t size)
{
    snprintf(buf, size, "%.*g", f32 ? 7 : 15, f);
    if (f32 ? (float)strtod(buf, NULL) != (float)f : strtod(buf, NULL) != f)
        snprintf(buf, size, "%.*g", f32 ? 9 : 17, f);
}

/* Renders one scalar (not an array or map) at level lvl. */
static sc_status
put_scalar(struct sc_buf *out, unsigned lvl, const struct codec_mp_item *it)
{
    char num[64], ts[SC_RFC3339_LEN];
    sc_status st;
    int64_t ms;

    switch (it->kind) {
    case CODEC_MP_NIL: return puts_lvl(out, lvl, "null");
    case CODEC_MP_BOOL: return puts_lvl(out, lvl, it->u ? "true" : "false");
    case CODEC_MP_UINT:
        /*
         * Past INT64_MAX a ".0" keeps every digit while letting parsers
         * limited to int64 (jansson) read the number as a real.
         */
        snprintf(num, sizeof(num), "%" PRIu64 "%s", it->u, it->u > INT64_MAX ? ".0" : "");
        return puts_lvl(out, lvl, num);
    case CODEC_MP_INT:
        snprintf(num, sizeof(num), "%" PRId64, it->i);
        return puts_lvl(out, lvl, num);
    case CODEC_MP_FLOAT:
        if (!isfinite(it->f))
            return puts_lvl(out, lvl, "null");
        format_float(it->f, it->f32, num, sizeof(num));
        return puts_lvl(out, lvl, num);
    case CODEC_MP_STR: return put_string(out, lvl, (const char *)it->data, it->dlen, false);
    case CODEC_MP_BIN:
        if ((st = puts_lvl(out, lvl, "{\"$bin\":\"")) || (st = put_base64(out, lvl, it->data, it->dlen)))
            return st;
        return puts_lvl(out, lvl, "\"}");
    case CODEC_MP_EXT:
        if (codec_msgpack_timestamp(it, &ms) && sc_format_rfc3339(ms, ts))
            return put_string(out, lvl, ts, strlen(ts), false);
        snprintf(num, sizeof(num), "{\"$ext\":%d,\"data\":\"", it->ext_type);
        if ((st = puts_lvl(out, lvl, num)) || (st = put_base64(out, lvl, it->data, it->dlen)))
            return st;
        return puts_lvl(out, lvl, "\"}");
    case CODEC_MP_ARRAY:
    case CODEC_MP_MAP: break;
    }
    return SC_EPROTO;
}

/* One open array or map while rendering. */
struct render_frame {
    size_t left;          /* items still to render (a map's pairs count twice) */
    unsigned char is_map;
    unsigned char first;  /* nothing rendered in it yet */
    unsigned char is_key; /* it is a map key: close the key's quote after it */
};

sc_status
codec_render_json(const void *buf, size_t len, unsigned max_depth, struct sc_buf *out)
{
    struct render_frame st[CODEC_DEPTH_CAP];
    const uint8_t *p = buf;
    unsigned depth = 0, lvl = 0;
    size_t pos = 0, used;
    sc_status s;

    /* Validate first: from here on every header is known to be complete. */
    if (codec_msgpack_walk(p, len, max_depth, &used, NULL) || used != len)
        return SC_EPROTO;
    for (;;) {
        struct codec_mp_item it;
        bool as_key = false, key_pos = false;

        if (codec_msgpack_head(p + pos, len - pos, &it))
            return SC_EPROTO;
        pos += it.size;
        if (depth) {
            struct render_frame *f = &st[depth - 1];
            const char *sep = NULL;
            if (f->is_map && f->left % 2 == 0) {
                key_pos = true;
                as_key = it.kind != CODEC_MP_STR;
                if (!f->first)
                    sep = ",";
            } else if (f->is_map) {
                sep = ":";
            } else if (!f->first) {
                sep = ",";
            }
            if (sep && (s = put(out, lvl, sep, 1)))
                return s;
            f->first = 0;
            f->left--;
        }
        if (as_key) {
            if ((s = put(out, lvl, "\"", 1)))
                return s;
            lvl++;
        }
        if (it.kind == CODEC_MP_ARRAY || it.kind == CODEC_MP_MAP) {
            bool map = it.kind == CODEC_MP_MAP;
            if ((s = put(out, lvl, map ? "{" : "[", 1)))
                return s;
            st[depth].left = (size_t)it.count * (map ? 2 : 1);
            st[depth].is_map = map;
            st[depth].first = 1;
            st[depth].is_key = as_key;
            depth++;
        } else {
            if (key_pos && it.kind == CODEC_MP_STR)
                s = put_string(out, lvl, (const char *)it.data, it.dlen, true);
            else
                s = put_scalar(out, lvl, &it);
            if (s)
                return s;
            if (as_key) {
                lvl--;
                if ((s = put(out, lvl, "\"", 1)))
                    return s;
            }
        }
        while (depth && st[depth - 1].left == 0) {
            struct render_frame *f = &st[depth - 1];
            if ((s = put(out, lvl, f->is_map ? "}" : "]", 1)))
                return s;
            if (f->is_key) {
                lvl--;
                if ((s = put(out, lvl, "\"", 1)))
                    return s;
            }
            depth--;
        }
        if (!depth)
            break;
    }
    return SC_OK;
}

/* msgpack_packer write callback: appends to the codec's sc_buf. */
static int
conv_write(void *data, const char *buf, size_t len)
{
    return sc_buf_append(data, buf, len) == SC_OK ? 0 : -1;
}

/* Maps a jansson load error to a refusal. */
static sc_status
json_refuse(struct codec *c, const json_error_t *e)
{
    const char *reason;

    switch (json_error_code(e)) {
    case json_error_stack_overflow: reason = "too_deep"; break;
    case json_error_duplicate_key: reason = "duplicate_key"; break;
    case json_error_end_of_input_expected: reason = "trailing_bytes"; break;
    case json_error_premature_end_of_input: reason = "truncated"; break;
    case json_error_invalid_utf8: reason = "bad_utf8"; break;
    default: reason = "bad_json"; break;
    }
    return codec_fail(c, reason, "json: %s at byte %d", e->text, e->position);
}

sc_status
codec_json_to_msgpack(struct codec *c, const char *buf, size_t len, bool want_object)
{
    json_error_t jerr;
    json_t *root = NULL, *cur;
    msgpack_packer pk;
    unsigned depth = 0;
    sc_status result = SC_EPROTO;

    sc_buf_reset(&c->conv);
    root = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        result = json_refuse(c, &jerr);
        goto done;
    }
    if (want_object && !json_is_object(root)) {
        result = codec_fail(c, "not_a_map", "envelope: expected a JSON object");
        goto done;
    }
    msgpack_packer_init(&pk, &c->conv, conv_write);
    cur = root;
    while (cur) {
        int rc = 0;

        switch (json_typeof(cur)) {
        case JSON_OBJECT:
        case JSON_ARRAY:
            if (depth >= c->depth) {
                result = codec_fail(c, "too_deep", "json: nesting deeper than %u", c->depth);
                goto done;
            }
            if (json_is_object(cur)) {
                rc = msgpack_pack_map(&pk, json_object_size(cur));
                c->frames[depth].iter = json_object_iter(cur);
            } else {
                rc = msgpack_pack_array(&pk, json_array_size(cur));
                c->frames[depth].iter = NULL;
            }
            c->frames[depth].value = cur;
            c->frames[depth].idx = 0;
            depth++;
            break;
        case JSON_STRING:
            rc = msgpack_pack_str(&pk, json_string_length(cur));
            if (!rc)
                rc = msgpack_pack_str_body(&pk, json_string_value(cur), json_string_length(cur));
            break;
        case JSON_INTEGER:
            if (json_integer_value(cur) < 0)
                rc = msgpack_pack_int64(&pk, json_integer_value(cur));
            else
                rc = msgpack_pack_uint64(&pk, (uint64_t)json_integer_value(cur));
            break;
        case JSON_REAL: rc = msgpack_pack_double(&pk, json_real_value(cur)); break;
        case JSON_TRUE: rc = msgpack_pack_true(&pk); break;
        case JSON_FALSE: rc = msgpack_pack_false(&pk); break;
        case JSON_NULL: rc = msgpack_pack_nil(&pk); break;
        }
        /* Next value: the next element of the innermost unfinished container. */
        cur = NULL;
        while (!rc && depth) {
            struct codec_json_frame *f = &c->frames[depth - 1];
            json_t *v = f->value;
            if (json_is_object(v)) {
                if (!f->iter) {
                    depth--;
                    continue;
                }
                rc = msgpack_pack_str(&pk, json_object_iter_key_len(f->iter));
                if (!rc)
                    rc = msgpack_pack_str_body(&pk, json_object_iter_key(f->iter),
                                               json_object_iter_key_len(f->iter));
                cur = json_object_iter_value(f->iter);
                f->iter = json_object_iter_next(v, f->iter);
            } else {
                if (f->idx >= json_array_size(v)) {
                    depth--;
                    continue;
                }
                cur = json_array_get(v, f->idx++);
            }
            break;
        }
        if (rc) {
            result = codec_fail(c, "too_big", "json: the converted envelope passes %zu bytes",
                                c->conv.max);
            goto done;
        }
    }
    result = SC_OK;

done:
    json_decref(root);
    return result;
}
