/* text.c - UTF-8 decoding and checks, JSON string quoting and base64, the one copy every module uses. */
#include "common.h"

#include <stdio.h>
#include <string.h>

size_t
sc_utf8_next(const void *s, size_t n, uint32_t *cp)
{
    const uint8_t *p = s;
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

bool
sc_utf8_valid(const char *s, size_t len, sc_utf8_allow allow)
{
    size_t i = 0;
    uint32_t cp;

    while (i < len) {
        size_t n;
        /*
         * ASCII without a call: eight bytes at a time while none has its
         * high bit (or is NUL, for NO_NUL), then byte by byte.
         */
        if (allow != SC_UTF8_NO_CONTROL) {
            while (len - i >= 8) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if ((w & 0x8080808080808080ull) ||
                    (allow == SC_UTF8_NO_NUL &&
                     ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull)))
                    break;
                i += 8;
            }
            if (i == len)
                break;
        }
        if ((unsigned char)s[i] < 0x80 && (allow != SC_UTF8_NO_NUL || s[i] != 0) &&
            (allow != SC_UTF8_NO_CONTROL || ((unsigned char)s[i] >= 0x20 && s[i] != 0x7f))) {
            i++;
            continue;
        }
        n = sc_utf8_next(s + i, len - i, &cp);
        if (n == 0)
            return false;
        if (allow == SC_UTF8_NO_NUL && cp == 0)
            return false;
        if (allow == SC_UTF8_NO_CONTROL && (cp < 0x20 || cp == 0x7f))
            return false;
        i += n;
    }
    return true;
}

/* True for the bytes a JSON string holds as they are: printable ASCII other than '"' and '\\'. */
static inline bool
json_plain(char c)
{
    return (unsigned char)c >= 0x20 && (unsigned char)c < 0x7f && c != '"' && c != '\\';
}

/*
 * plain_run() is how many bytes from s[k] on are json_plain(), up to len.
 * Eight at a time while it can: a word is plain when no byte is below 0x20,
 * at or above 0x7f, '"' or '\\' (the classic "has a byte less than n" and
 * "has a zero byte" tests, exact as yes/no answers for n <= 128).
 */
static size_t
plain_run(const char *s, size_t k, size_t len)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;

    while (len - k >= 8) {
        uint64_t w, q, b, d;
        memcpy(&w, s + k, 8);
        q = w ^ (ones * '"');
        b = w ^ (ones * '\\');
        d = w ^ (ones * 0x7f);
        if (((w - ones * 0x20) & ~w & highs) | (w & highs) | ((q - ones) & ~q & highs) |
            ((b - ones) & ~b & highs) | ((d - ones) & ~d & highs))
            break;
        k += 8;
    }
    while (k < len && json_plain(s[k]))
        k++;
    return k;
}

/*
 * Appends len bytes at s as a quoted JSON string. For an object key (key),
 * NUL becomes U+FFFD: "\u0000" is valid JSON but jansson refuses it in keys.
 */
static sc_status
quote(struct sc_buf *out, const char *s, size_t len, bool key)
{
    size_t run = 0, k = 0;
    sc_status st;
    char esc[8], *p;

    /* Nearly every string (keys, ids, subjects, most errors) is plain: one copy, quotes around it. */
    k = plain_run(s, 0, len);
    if (k == len && (p = sc_buf_grow(out, len + 2))) {
        p[0] = '"';
        memcpy(p + 1, s, len);
        p[len + 1] = '"';
        return SC_OK;
    }
    if ((st = sc_buf_append_capped(out, "\"", 1)))
        return st;
    while (k < len) {
        uint32_t cp;
        size_t n;
        const char *rep = NULL;

        k = plain_run(s, k, len);
        if (k == len)
            break;
        n = sc_utf8_next(s + k, len - k, &cp);
        if (n > 1 && cp > 0x9f) {
            k += n;
            continue;
        }
        /* Something to replace: flush the run before it. */
        if (run < k && (st = sc_buf_append_capped(out, s + run, k - run)))
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
        if ((st = sc_buf_append_capped(out, rep, strlen(rep))))
            return st;
        k += n;
        run = k;
    }
    if (run < len && (st = sc_buf_append_capped(out, s + run, len - run)))
        return st;
    return sc_buf_append_capped(out, "\"", 1);
}

size_t
sc_json_plain_len(const char *s, size_t len)
{
    return plain_run(s, 0, len);
}

sc_status
sc_json_quote(struct sc_buf *out, const char *s, size_t len)
{
    return quote(out, s, len, false);
}

sc_status
sc_json_quote_key(struct sc_buf *out, const char *s, size_t len)
{
    return quote(out, s, len, true);
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

sc_status
sc_base64_encode(struct sc_buf *out, const void *data, size_t len)
{
    const uint8_t *p = data;
    char chunk[256], *d;
    size_t n = 0, whole = len / 3 * 3;
    sc_status st;

    /* Room for all of it (the usual case): written in place, three bytes a step. */
    if (len && len / 3 < SIZE_MAX / 8 && (d = sc_buf_grow(out, 4 * ((len + 2) / 3)))) {
        size_t k = 0;
        for (; k < whole; k += 3, d += 4) {
            uint32_t v = (uint32_t)p[k] << 16 | (uint32_t)p[k + 1] << 8 | p[k + 2];
            d[0] = b64chars[v >> 18 & 63];
            d[1] = b64chars[v >> 12 & 63];
            d[2] = b64chars[v >> 6 & 63];
            d[3] = b64chars[v & 63];
        }
        if (k < len) {
            uint32_t v = (uint32_t)p[k] << 16 | (len - k > 1 ? (uint32_t)p[k + 1] << 8 : 0);
            d[0] = b64chars[v >> 18 & 63];
            d[1] = b64chars[v >> 12 & 63];
            d[2] = len - k > 1 ? b64chars[v >> 6 & 63] : '=';
            d[3] = '=';
        }
        return SC_OK;
    }
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
            if ((st = sc_buf_append_capped(out, chunk, n)))
                return st;
            n = 0;
        }
    }
    return n ? sc_buf_append_capped(out, chunk, n) : SC_OK;
}

/* The value of one base64 character, or -1 for anything else. */
static int
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

bool
sc_base64_padded(const char *s, size_t len)
{
    size_t pad = 0;

    while (pad < len && s[len - 1 - pad] == '=')
        pad++;
    return len % 4 == 0 && pad <= 2 && memchr(s, '=', len - pad) == NULL;
}

sc_status
sc_base64_decode(const char *s, size_t len, struct sc_buf *out)
{
    unsigned char q[3 * 256];
    size_t n = 0, i;
    uint32_t acc = 0;
    int bits = 0;
    sc_status st;

    while (len && s[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return SC_EPROTO;
    for (i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0)
            return SC_EPROTO;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            q[n++] = (unsigned char)(acc >> bits);
            if (n == sizeof(q)) {
                if ((st = sc_buf_append(out, q, n)))
                    return st;
                n = 0;
            }
        }
    }
    return n ? sc_buf_append(out, q, n) : SC_OK;
}

sc_status
sc_parse_duration_ms(const char *s, size_t len, int64_t *out_ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1}};
    int64_t v = 0;
    size_t i = 0, k;

    if (!s)
        return SC_EPROTO;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        int dig = s[i] - '0';
        if (v > (INT64_MAX - dig) / 10)
            return SC_ETOOBIG;
        v = v * 10 + dig;
        i++;
    }
    if (i == 0)
        return SC_EPROTO;
    for (k = 0; k < SC_ARRAY_LEN(units); k++) {
        size_t ul = strlen(units[k].unit);
        if (ul == len - i && memcmp(s + i, units[k].unit, ul) == 0) {
            if (v > INT64_MAX / units[k].ms)
                return SC_ETOOBIG;
            *out_ms = v * units[k].ms;
            return SC_OK;
        }
    }
    return SC_EPROTO;
}
