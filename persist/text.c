/* text.c - base64, JSON string quoting, UTF-8 checks and the SHA-256 of ids for the store's documents. */
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "persist.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

sc_status
persist_base64_encode(struct sc_buf *out, const void *p, size_t len)
{
    const unsigned char *s = p;
    char q[4 * 256];
    size_t n = 0;
    sc_status st;

    while (len >= 3) {
        q[n++] = b64[s[0] >> 2];
        q[n++] = b64[((s[0] & 3) << 4) | (s[1] >> 4)];
        q[n++] = b64[((s[1] & 15) << 2) | (s[2] >> 6)];
        q[n++] = b64[s[2] & 63];
        s += 3;
        len -= 3;
        if (n == sizeof(q)) {
            if ((st = sc_buf_append(out, q, n)))
                return st;
            n = 0;
        }
    }
    if (len) {
        q[n++] = b64[s[0] >> 2];
        if (len == 1) {
            q[n++] = b64[(s[0] & 3) << 4];
            q[n++] = '=';
        } else {
            q[n++] = b64[((s[0] & 3) << 4) | (s[1] >> 4)];
            q[n++] = b64[(s[1] & 15) << 2];
        }
        q[n++] = '=';
    }
    return n ? sc_buf_append(out, q, n) : SC_OK;
}

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

sc_status
persist_base64_decode(const char *s, size_t len, struct sc_buf *out)
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

/*
 * Reads one UTF-8 sequence of at most n bytes at p. Returns its length and
 * sets *cp, or 0 when the bytes do not start a valid sequence (overlong,
 * surrogate, past U+10FFFF, truncated).
 */
static size_t
utf8_next(const unsigned char *p, size_t n, uint32_t *cp)
{
    uint32_t c;
    size_t need, i;

    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        need = 2;
        c = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        need = 3;
        c = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        need = 4;
        c = p[0] & 0x07;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (i = 1; i < need; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3f);
    }
    if ((need == 3 && c < 0x800) || (need == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return need;
}

bool
persist_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;

    while (i < len) {
        size_t n = utf8_next(p + i, len - i, &cp);
        if (!n || cp == 0)
            return false;
        i += n;
    }
    return true;
}

sc_status
persist_json_string(struct sc_buf *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    uint32_t cp;
    sc_status st;
    char esc[8];

    if ((st = sc_buf_appendc(out, '"')))
        return st;
    while (i < len) {
        size_t n = utf8_next(p + i, len - i, &cp);
        const char *rep = NULL;
        size_t replen = 0;

        if (n == 1 && cp >= 0x20 && cp != '"' && cp != '\\' && cp != 0x7f) {
            i++;
            run++;
            continue;
        }
        if (n > 1) {
            i += n;
            run += n;
            continue;
        }
        /* flush the plain run before p + i */
        if (run && (st = sc_buf_append(out, p + i - run, run)))
            return st;
        run = 0;
        if (n == 0) {
            rep = "\xef\xbf\xbd"; /* U+FFFD for one invalid byte */
            replen = 3;
            i++;
        } else {
            switch (cp) {
            case '"': rep = "\\\""; break;
            case '\\': rep = "\\\\"; break;
            case '\n': rep = "\\n"; break;
            case '\r': rep = "\\r"; break;
            case '\t': rep = "\\t"; break;
            default:
                snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
                rep = esc;
            }
            replen = strlen(rep);
            i++;
        }
        if ((st = sc_buf_append(out, rep, replen)))
            return st;
    }
    if (run && (st = sc_buf_append(out, p + i - run, run)))
        return st;
    return sc_buf_appendc(out, '"');
}

/* ---- SHA-256, for ids that cannot be an OpenSearch _id (OpenSSL's libcrypto) ----------------- */

void
persist_sha256(const void *p, size_t len, unsigned char out[32])
{
    SHA256(p, len, out);
}
