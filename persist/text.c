/* text.c - base64, JSON string quoting, UTF-8 checks and SHA-256 for the store's documents. */
#include <stdio.h>
#include <string.h>

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

/* ---- SHA-256 (FIPS 180-4), for ids that cannot be an OpenSearch _id ------------------------- */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t
ror32(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

/* One 64-byte block into the state h. */
static void
sha256_block(uint32_t h[8], const unsigned char *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, hh;

    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) +
                      sha_k[i] + w[i];
        uint32_t t2 = (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void
persist_sha256(const void *p, size_t len, unsigned char out[32])
{
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const unsigned char *s = p;
    unsigned char tail[128];
    size_t rest = len % 64, tlen = rest < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;

    for (size_t i = 0; i + 64 <= len; i += 64)
        sha256_block(h, s + i);
    memset(tail, 0, sizeof(tail));
    if (rest)
        memcpy(tail, s + len - rest, rest);
    tail[rest] = 0x80;
    for (int i = 0; i < 8; i++)
        tail[tlen - 1 - i] = (unsigned char)(bits >> (8 * i));
    sha256_block(h, tail);
    if (tlen == 128)
        sha256_block(h, tail + 64);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}
