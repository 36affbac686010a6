/* dlq_client.c - the client library's shared pieces: status names, errors, UTF-8, subject checks, a bounded MessagePack walk. */
#include "client-internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *
dlq_client_status_text(dlq_client_status s)
{
    switch (s) {
    case DLQ_CLIENT_OK: return "ok";
    case DLQ_CLIENT_EINVAL: return "invalid argument or envelope";
    case DLQ_CLIENT_ENOMEM: return "out of memory";
    case DLQ_CLIENT_ENATS: return "NATS error";
    case DLQ_CLIENT_ETIMEOUT: return "timed out";
    case DLQ_CLIENT_ENORESPONDERS: return "no responders";
    case DLQ_CLIENT_EREFUSED: return "refused";
    case DLQ_CLIENT_EPROTO: return "unreadable answer";
    }
    return "unknown status";
}

dlq_client_status
dlq_client_set_error(struct dlq_client_error *err, dlq_client_status s, const char *field,
                     const char *reason, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return s;
    err->status = s;
    err->field = field;
    err->reason = reason ? reason : "";
    err->code = 0;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return s;
}

void
dlq_client_clear_error(struct dlq_client_error *err)
{
    if (!err)
        return;
    memset(err, 0, sizeof(*err));
    err->reason = "";
}

size_t
dlq_client_utf8_next(const uint8_t *p, size_t n, uint32_t *cp)
{
    uint32_t c;
    size_t len;

    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        c = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        c = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        c = p[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((p[k] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (p[k] & 0x3f);
    }
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

/* The piece of text the character at p (n > 0 bytes) becomes, and how many input bytes it takes. */
static size_t
text_piece(const uint8_t *p, size_t n, const char **piece, size_t *plen)
{
    uint32_t cp;
    size_t used = dlq_client_utf8_next(p, n, &cp);

    if (used == 0) {
        *piece = "\xef\xbf\xbd"; /* U+FFFD */
        *plen = 3;
        return 1;
    }
    *piece = cp == 0 ? " " : (const char *)p;
    *plen = used;
    return used;
}

size_t
dlq_client_text_copy(const char *s, size_t len, char *out, size_t cap, size_t max,
                     const char *marker)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t mlen = marker ? strlen(marker) : 0, total = 0, o = 0, keep;
    const char *piece;
    size_t plen;

    if (max >= cap)
        max = cap - 1;
    for (size_t k = 0; k < len;) {
        k += text_piece(p + k, len - k, &piece, &plen);
        total += plen;
    }
    keep = total <= max ? max : max > mlen ? max - mlen : 0;
    for (size_t k = 0; k < len;) {
        size_t n = text_piece(p + k, len - k, &piece, &plen);
        if (o + plen > keep)
            break;
        memcpy(out + o, piece, plen);
        o += plen;
        k += n;
    }
    if (total > max && marker) {
        size_t m = mlen < max - o ? mlen : max - o;
        memcpy(out + o, marker, m);
        o += m;
    }
    out[o] = '\0';
    return o;
}

bool
dlq_client_subject_ok(const char *s, bool wildcards)
{
    size_t len = s ? strlen(s) : 0, start = 0;

    if (len == 0 || len > 4096)
        return false;
    for (size_t k = 0; k <= len; k++) {
        unsigned char ch = k < len ? (unsigned char)s[k] : '.';
        if (ch == '.') {
            size_t tlen = k - start;
            if (tlen == 0)
                return false;
            if (tlen == 1 && (s[start] == '*' || s[start] == '>')) {
                if (!wildcards || (s[start] == '>' && k != len))
                    return false;
            }
            start = k + 1;
            continue;
        }
        if (ch <= 0x20 || ch == 0x7f)
            return false;
        if ((ch == '*' || ch == '>') && !(k == start && (k + 1 == len || s[k + 1] == '.')))
            return false;
    }
    return true;
}

const char *
dlq_client_mp_kind(uint8_t b)
{
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3))
        return "an integer";
    if (b <= 0x8f || b == 0xde || b == 0xdf)
        return "a map";
    if (b <= 0x9f || b == 0xdc || b == 0xdd)
        return "an array";
    if (b <= 0xbf || (b >= 0xd9 && b <= 0xdb))
        return "a string";
    switch (b) {
    case 0xc0: return "nil";
    case 0xc2:
    case 0xc3: return "a boolean";
    case 0xc4:
    case 0xc5:
    case 0xc6: return "binary";
    case 0xca:
    case 0xcb: return "a float";
    default: return "an extension";
    }
}

/* Reads a big-endian length of w bytes at p. */
static uint64_t
be(const uint8_t *p, size_t w)
{
    uint64_t v = 0;

    for (size_t k = 0; k < w; k++)
        v = v << 8 | p[k];
    return v;
}

/*
 * The head of the value at p (n > 0 bytes): its header length, payload
 * length and children (items of an array, 2 x entries of a map; -1 for a
 * scalar). Returns NULL or a reason.
 */
static const char *
mp_head(const uint8_t *p, size_t n, size_t *hdr, uint64_t *payload, int64_t *children)
{
    uint8_t b = p[0];
    size_t w = 0; /* width of a length field */

    *payload = 0;
    *children = -1;
    *hdr = 1;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return NULL;
    if (b <= 0x8f) {
        *children = 2 * (int64_t)(b & 0x0f);
        return NULL;
    }
    if (b <= 0x9f) {
        *children = b & 0x0f;
        return NULL;
    }
    if (b <= 0xbf) {
        *payload = b & 0x1f;
        return NULL;
    }
    switch (b) {
    case 0xc1: return "bad_msgpack";
    case 0xc4: case 0xd9: w = 1; break;
    case 0xc5: case 0xda: w = 2; break;
    case 0xc6: case 0xdb: w = 4; break;
    case 0xc7: w = 1; break;
    case 0xc8: w = 2; break;
    case 0xc9: w = 4; break;
    case 0xca: *payload = 4; return NULL;
    case 0xcb: *payload = 8; return NULL;
    case 0xcc: case 0xd0: *payload = 1; return NULL;
    case 0xcd: case 0xd1: *payload = 2; return NULL;
    case 0xce: case 0xd2: *payload = 4; return NULL;
    case 0xcf: case 0xd3: *payload = 8; return NULL;
    case 0xd4: *payload = 2; return NULL;
    case 0xd5: *payload = 3; return NULL;
    case 0xd6: *payload = 5; return NULL;
    case 0xd7: *payload = 9; return NULL;
    case 0xd8: *payload = 17; return NULL;
    case 0xdc: case 0xde: w = 2; break;
    case 0xdd: case 0xdf: w = 4; break;
    default: return "bad_msgpack";
    }
    if (n < 1 + w)
        return "truncated";
    *hdr = 1 + w;
    if (b >= 0xdc) {
        uint64_t count = be(p + 1, w);
        *children = (int64_t)(b >= 0xde ? 2 * count : count);
        return NULL;
    }
    *payload = be(p + 1, w);
    if (b >= 0xc7 && b <= 0xc9)
        *payload += 1; /* the extension's type byte */
    return NULL;
}

const char *
dlq_client_mp_walk(const uint8_t *p, size_t n, unsigned max_depth, size_t *used, size_t *at)
{
    uint64_t left[65]; /* values still to read at each open level; [0] is the root */
    unsigned top = 0;
    size_t pos = 0;

    if (max_depth > 64)
        max_depth = 64;
    left[0] = 1;
    for (;;) {
        size_t hdr;
        uint64_t payload;
        int64_t children;
        const char *r;

        while (left[top] == 0) {
            if (top == 0) {
                *used = pos;
                return NULL;
            }
            top--;
        }
        left[top]--;
        *at = pos;
        if (pos >= n)
            return "truncated";
        if ((r = mp_head(p + pos, n - pos, &hdr, &payload, &children)))
            return r;
        if (payload > n - pos - hdr)
            return "truncated";
        if (children >= 0) {
            if (top + 1 > max_depth)
                return "too_deep";
            /* Every child takes at least one byte: a count past the input is a lie. */
            if ((uint64_t)children > n - pos - hdr)
                return "truncated";
            left[++top] = (uint64_t)children;
        }
        pos += hdr + (size_t)payload;
    }
}
