/* json.c - MessagePack to JSON text (always valid) and JSON input to MessagePack. */
#include "codec-internal.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sc_status
puts_all(struct sc_buf *out, const char *s)
{
    return sc_buf_append_capped(out, s, strlen(s));
}

/* Shortest of %.15g/%.17g (float: %.7g/%.9g) that reads back as the same value. */
static void
format_float(double f, bool f32, char *buf, size_t size)
{
    snprintf(buf, size, "%.*g", f32 ? 7 : 15, f);
    if (f32 ? (float)strtod(buf, NULL) != (float)f : strtod(buf, NULL) != f)
        snprintf(buf, size, "%.*g", f32 ? 9 : 17, f);
}

/* Renders one scalar (not an array or map). */
static sc_status
put_scalar(struct sc_buf *out, const struct codec_mp_item *it)
{
    char num[64], ts[SC_RFC3339_LEN];
    sc_status st;
    int64_t ms;

    switch (it->kind) {
    case CODEC_MP_NIL: return puts_all(out, "null");
    case CODEC_MP_BOOL: return puts_all(out, it->u ? "true" : "false");
    case CODEC_MP_UINT:
        /*
         * Past INT64_MAX a ".0" keeps every digit while letting parsers
         * limited to int64 (jansson) read the number as a real.
         */
        snprintf(num, sizeof(num), "%" PRIu64 "%s", it->u, it->u > INT64_MAX ? ".0" : "");
        return puts_all(out, num);
    case CODEC_MP_INT:
        snprintf(num, sizeof(num), "%" PRId64, it->i);
        return puts_all(out, num);
    case CODEC_MP_FLOAT:
        if (!isfinite(it->f))
            return puts_all(out, "null");
        format_float(it->f, it->f32, num, sizeof(num));
        return puts_all(out, num);
    case CODEC_MP_STR: return sc_json_quote(out, (const char *)it->data, it->dlen);
    case CODEC_MP_BIN:
        if ((st = puts_all(out, "{\"$bin\":\"")) ||
            (st = sc_base64_encode(out, it->data, it->dlen)))
            return st;
        return puts_all(out, "\"}");
    case CODEC_MP_EXT:
        if (codec_msgpack_timestamp(it, &ms) && sc_format_rfc3339(ms, ts))
            return sc_json_quote(out, ts, strlen(ts));
        snprintf(num, sizeof(num), "{\"$ext\":%d,\"data\":\"", it->ext_type);
        if ((st = puts_all(out, num)) || (st = sc_base64_encode(out, it->data, it->dlen)))
            return st;
        return puts_all(out, "\"}");
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
};

/*
 * Renders a map key that is not a string. Scalars (nil, bool, numbers)
 * become their JSON text in quotes ("1", "null"); anything else (array,
 * map, bin, ext) becomes "$mp:<base64 of its MessagePack bytes>" and is
 * skipped whole. Rendering a container key as escaped JSON text would nest
 * the escaping once per level of keys inside keys, and the output would
 * grow as 2^depth: 54 bytes of input once asked for 200 MB. This way the
 * output stays linear in the input. *pos is moved past the key.
 */
static sc_status
put_key(struct sc_buf *out, const uint8_t *p, size_t len, size_t *pos,
        const struct codec_mp_item *it, unsigned max_depth)
{
    size_t start = *pos - it->size, klen;
    sc_status s;

    switch (it->kind) {
    case CODEC_MP_NIL:
    case CODEC_MP_BOOL:
    case CODEC_MP_UINT:
    case CODEC_MP_INT:
    case CODEC_MP_FLOAT:
        if ((s = sc_buf_appendc(out, '"')) || (s = put_scalar(out, it)))
            return s;
        return sc_buf_appendc(out, '"');
    default:
        break;
    }
    if (codec_msgpack_walk(p + start, len - start, max_depth, &klen, NULL))
        return SC_EPROTO;
    if ((s = puts_all(out, "\"$mp:")) || (s = sc_base64_encode(out, p + start, klen)))
        return s;
    *pos = start + klen;
    return sc_buf_appendc(out, '"');
}

/* ---- masking (secrets.mask_keys) -------------------------------------------------------------- */

/* The installed patterns: set once at start-up (codec_mask_set()), read by every renderer after. */
static char **mask_pats;
static size_t mask_n;

static unsigned char
lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* Case-insensitive glob of the whole key: '*' any run, '?' one byte. Iterative, O(key x pattern). */
static bool
glob_nocase(const char *pat, const uint8_t *k, size_t klen)
{
    const char *star = NULL;
    size_t i = 0, mark = 0;

    while (i < klen) {
        if (*pat == '*') {
            star = pat++;
            mark = i;
        } else if (*pat && (*pat == '?' || lower((unsigned char)*pat) == lower(k[i]))) {
            pat++;
            i++;
        } else if (star) {
            pat = star + 1;
            i = ++mark;
        } else {
            return false;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

/* Case-insensitive substring. */
static bool
contains_nocase(const char *pat, const uint8_t *k, size_t klen)
{
    size_t plen = strlen(pat);

    for (size_t i = 0; plen <= klen && i <= klen - plen; i++) {
        size_t j = 0;
        while (j < plen && lower((unsigned char)pat[j]) == lower(k[i + j]))
            j++;
        if (j == plen)
            return true;
    }
    return false;
}

void
codec_mask_set(const char *const *patterns, size_t n)
{
    for (size_t i = 0; i < mask_n; i++)
        free(mask_pats[i]);
    free(mask_pats);
    mask_pats = NULL;
    mask_n = 0;
    if (!n)
        return;
    mask_pats = sc_xcalloc(n, sizeof(*mask_pats));
    for (size_t i = 0; i < n; i++)
        if (patterns[i] && patterns[i][0])
            mask_pats[mask_n++] = sc_xstrdup(patterns[i]);
}

bool
codec_mask_key(const void *key, size_t len)
{
    for (size_t i = 0; i < mask_n; i++) {
        const char *pat = mask_pats[i];
        bool glob = strpbrk(pat, "*?") != NULL;
        if (glob ? glob_nocase(pat, key, len) : contains_nocase(pat, key, len))
            return true;
    }
    return false;
}

/* The body of codec_render_json() and codec_render_json_masked(). */
static sc_status
render(const void *buf, size_t len, unsigned max_depth, bool mask, struct sc_buf *out)
{
    struct render_frame st[CODEC_DEPTH_CAP];
    const uint8_t *p = buf;
    unsigned depth = 0;
    size_t pos = 0, used;
    sc_status s;
    bool hide = false; /* the value that comes next belongs to a masked key */

    /* Validate first: from here on every header is known to be complete. */
    if (codec_msgpack_walk(p, len, max_depth, &used, NULL) || used != len)
        return SC_EPROTO;
    for (;;) {
        struct codec_mp_item it;
        bool key_pos = false;

        if (codec_msgpack_head(p + pos, len - pos, &it))
            return SC_EPROTO;
        pos += it.size;
        if (depth) {
            struct render_frame *f = &st[depth - 1];
            const char *sep = NULL;
            if (f->is_map && f->left % 2 == 0) {
                key_pos = true;
                if (!f->first)
                    sep = ",";
            } else if (f->is_map) {
                sep = ":";
            } else if (!f->first) {
                sep = ",";
            }
            if (sep && (s = sc_buf_append_capped(out, sep, 1)))
                return s;
            f->first = 0;
            f->left--;
        }
        if (hide) { /* a masked key's value, whatever it is, skipped whole (validated above) */
            size_t start = pos - it.size, vlen;
            hide = false;
            if (codec_msgpack_walk(p + start, len - start, max_depth, &vlen, NULL))
                return SC_EPROTO;
            pos = start + vlen;
            if ((s = sc_buf_append_capped(out, "\"***\"", 5)))
                return s;
        } else if (key_pos && it.kind == CODEC_MP_STR) {
            if ((s = sc_json_quote_key(out, (const char *)it.data, it.dlen)))
                return s;
            hide = mask && codec_mask_key(it.data, it.dlen);
        } else if (key_pos) {
            if ((s = put_key(out, p, len, &pos, &it, max_depth)))
                return s;
        } else if (it.kind == CODEC_MP_ARRAY || it.kind == CODEC_MP_MAP) {
            bool map = it.kind == CODEC_MP_MAP;
            if ((s = sc_buf_append_capped(out, map ? "{" : "[", 1)))
                return s;
            st[depth].left = (size_t)it.count * (map ? 2 : 1);
            st[depth].is_map = map;
            st[depth].first = 1;
            depth++;
        } else if ((s = put_scalar(out, &it))) {
            return s;
        }
        while (depth && st[depth - 1].left == 0) {
            if ((s = sc_buf_append_capped(out, st[depth - 1].is_map ? "}" : "]", 1)))
                return s;
            depth--;
        }
        if (!depth)
            break;
    }
    return SC_OK;
}

sc_status
codec_render_json(const void *buf, size_t len, unsigned max_depth, struct sc_buf *out)
{
    return render(buf, len, max_depth, false, out);
}

sc_status
codec_render_json_masked(const void *buf, size_t len, unsigned max_depth, struct sc_buf *out)
{
    return render(buf, len, max_depth, true, out);
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

/*
 * big_literal() reads the number literal of tlen bytes at t: true, with
 * *value set, when it is a plain unsigned integer (no sign, fraction,
 * exponent or leading zero) above INT64_MAX and at most UINT64_MAX.
 */
static bool
big_literal(const char *t, size_t tlen, uint64_t *value)
{
    uint64_t v = 0;

    if (tlen < 19 || tlen > 20 || t[0] == '0')
        return false;
    for (size_t k = 0; k < tlen; k++) {
        unsigned d = (unsigned)(t[k] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *value = v;
    return v > INT64_MAX;
}

/*
 * find_big_uints() scans len bytes of JSON text at buf for the integer
 * literals jansson cannot hold (big_literal()) and lists them in c->bigs,
 * numbering every number literal outside strings in text order. When there
 * are some it copies the text into c->jtext with each of them blanked to a
 * "0" and spaces (same length: jansson's error positions stay true) and
 * returns true; the conversion then packs the listed values as uint64 in
 * place of those zeros (jansson keeps object members in text order).
 */
static bool
find_big_uints(struct codec *c, const char *buf, size_t len)
{
    size_t k = 0, index = 0, n;
    struct codec_big_uint *b;
    bool in_str = false;

    sc_buf_reset(&c->bigs);
    sc_buf_reset(&c->jtext);
    while (k < len) {
        char ch = buf[k];
        if (in_str) {
            if (ch == '\\')
                k++;
            else if (ch == '"')
                in_str = false;
            k++;
        } else if (ch == '"') {
            in_str = true;
            k++;
        } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
            struct codec_big_uint big = {k, 0, index++, 0};
            while (k < len && (buf[k] == '-' || buf[k] == '+' || buf[k] == '.' || buf[k] == 'e' ||
                               buf[k] == 'E' || (buf[k] >= '0' && buf[k] <= '9')))
                k++;
            big.len = k - big.start;
            if (big_literal(buf + big.start, big.len, &big.value) &&
                sc_buf_append(&c->bigs, &big, sizeof(big)))
                return false; /* past the cap: let jansson refuse the text */
        } else {
            k++;
        }
    }
    if (!c->bigs.len || sc_buf_append(&c->jtext, buf, len))
        return false;
    b = (struct codec_big_uint *)(void *)c->bigs.data;
    n = c->bigs.len / sizeof(*b);
    for (size_t i = 0; i < n; i++) {
        c->jtext.data[b[i].start] = '0';
        memset(c->jtext.data + b[i].start + 1, ' ', b[i].len - 1);
    }
    return true;
}

/* One conversion of JSON input to MessagePack in progress. */
struct conv {
    struct codec *c;
    msgpack_packer pk;
    unsigned depth;                                /* open containers, in c->frames */
    const struct codec_big_uint *big, *big_end;    /* big literals not yet placed */
    size_t number;                                 /* number literals converted so far */
};

/*
 * Packs the header of an object or array and opens a frame for it.
 * Returns the packer's result (0 or -1), or 1 after refusing it as too deep.
 */
static int
open_container(struct conv *cv, json_t *cur)
{
    struct codec *c = cv->c;
    int rc;

    if (cv->depth >= c->depth) {
        codec_fail(c, "too_deep", "json: nesting deeper than %u", c->depth);
        return 1;
    }
    if (json_is_object(cur)) {
        rc = msgpack_pack_map(&cv->pk, json_object_size(cur));
        c->frames[cv->depth].iter = json_object_iter(cur);
    } else {
        rc = msgpack_pack_array(&cv->pk, json_array_size(cur));
        c->frames[cv->depth].iter = NULL;
    }
    c->frames[cv->depth].value = cur;
    c->frames[cv->depth].idx = 0;
    cv->depth++;
    return rc;
}

/*
 * Packs an integer: a blanked big literal (find_big_uints()) as its uint64,
 * else as itself. Returns the packer's result, or 1 after refusing a big
 * literal jansson did not read as 0.
 */
static int
pack_integer(struct conv *cv, json_t *cur)
{
    json_int_t v = json_integer_value(cur);
    int rc;

    if (cv->big != cv->big_end && cv->big->index == cv->number) {
        if (v != 0) {
            codec_fail(cv->c, "bad_json", "json: cannot place the integer at byte %zu",
                       cv->big->start);
            return 1;
        }
        rc = msgpack_pack_uint64(&cv->pk, cv->big->value);
        cv->big++;
    } else if (v < 0) {
        rc = msgpack_pack_int64(&cv->pk, v);
    } else {
        rc = msgpack_pack_uint64(&cv->pk, (uint64_t)v);
    }
    cv->number++;
    return rc;
}

/* Packs one value (a container's header only). Returns as open_container(). */
static int
pack_value(struct conv *cv, json_t *cur)
{
    int rc;

    switch (json_typeof(cur)) {
    case JSON_OBJECT:
    case JSON_ARRAY: return open_container(cv, cur);
    case JSON_STRING:
        rc = msgpack_pack_str(&cv->pk, json_string_length(cur));
        if (!rc)
            rc = msgpack_pack_str_body(&cv->pk, json_string_value(cur), json_string_length(cur));
        return rc;
    case JSON_INTEGER: return pack_integer(cv, cur);
    case JSON_REAL:
        cv->number++;
        return msgpack_pack_double(&cv->pk, json_real_value(cur));
    case JSON_TRUE: return msgpack_pack_true(&cv->pk);
    case JSON_FALSE: return msgpack_pack_false(&cv->pk);
    case JSON_NULL: return msgpack_pack_nil(&cv->pk);
    }
    return 0;
}

/*
 * The next value: the next element of the innermost unfinished container
 * (an object's key is packed here), closing finished ones. Sets *next (NULL
 * when everything is done); returns the packer's result.
 */
static int
next_value(struct conv *cv, json_t **next)
{
    *next = NULL;
    while (cv->depth) {
        struct codec_json_frame *f = &cv->c->frames[cv->depth - 1];
        json_t *v = f->value;
        int rc;

        if (json_is_object(v)) {
            if (!f->iter) {
                cv->depth--;
                continue;
            }
            rc = msgpack_pack_str(&cv->pk, json_object_iter_key_len(f->iter));
            if (!rc)
                rc = msgpack_pack_str_body(&cv->pk, json_object_iter_key(f->iter),
                                           json_object_iter_key_len(f->iter));
            *next = json_object_iter_value(f->iter);
            f->iter = json_object_iter_next(v, f->iter);
            return rc;
        }
        if (f->idx >= json_array_size(v)) {
            cv->depth--;
            continue;
        }
        *next = json_array_get(v, f->idx++);
        return 0;
    }
    return 0;
}

sc_status
codec_json_to_msgpack(struct codec *c, const char *buf, size_t len, bool want_object)
{
    json_error_t jerr;
    json_t *root = NULL, *cur;
    struct conv cv = {.c = c};
    sc_status result = SC_EPROTO;

    sc_buf_reset(&c->conv);
    if (find_big_uints(c, buf, len)) {
        buf = c->jtext.data;
        cv.big = (const struct codec_big_uint *)(const void *)c->bigs.data;
        cv.big_end = cv.big + c->bigs.len / sizeof(*cv.big);
    }
    root = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        result = json_refuse(c, &jerr);
        goto done;
    }
    if (want_object && !json_is_object(root)) {
        result = codec_fail(c, "not_a_map", "envelope: expected a JSON object");
        goto done;
    }
    msgpack_packer_init(&cv.pk, &c->conv, conv_write);
    for (cur = root; cur;) {
        int rc = pack_value(&cv, cur);
        if (rc > 0)
            goto done; /* refused, codec_fail() called */
        if (!rc)
            rc = next_value(&cv, &cur);
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

void
codec_jw_msgpack(struct sc_jw *w, const char *k, const void *p, size_t len, unsigned max_depth)
{
    size_t mark;

    sc_jw_key(w, k);
    if (!p) {
        sc_jw_raw(w, "null", 4);
        return;
    }
    if (w->st)
        return;
    mark = w->b->len;
    if (codec_render_json_masked(p, len, max_depth, w->b) != SC_OK) {
        w->b->len = mark;
        sc_jw_raw(w, "null", 4);
    }
}
