/* fingerprint.c - the failure fingerprint: subject + category + error text with numbers, ids and hex runs normalised away, as a 64-bit group id. */
#include <string.h>

#include "dlq.h"

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL
#define HEX_RUN_MIN 8 /* a run of hex letters this long is an id even without a digit ("deadbeef") */
#define ERROR_IN_MAX (64 * 1024) /* error bytes read: bounds the work per failure */

static bool
is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Separators that join the parts of one number or id: 10.0.0.7:5432, 550e8400-e29b-..., 12/05. */
static bool
is_joiner(unsigned char c)
{
    return c == '.' || c == ':' || c == '-' || c == '_' || c == '/' || c == ',';
}

/* True when the word of len bytes at w stands for a number or an id. */
static bool
variable_word(const char *w, size_t len)
{
    bool hex = true;

    for (size_t i = 0; i < len; i++) {
        if (w[i] >= '0' && w[i] <= '9')
            return true;
        hex = hex && is_hex((unsigned char)w[i]);
    }
    return hex && len >= HEX_RUN_MIN;
}

size_t
dlq_fingerprint_normalise(const char *in, size_t len, char *out, size_t cap)
{
    size_t i = 0, n = 0;

#define PUT(ch)                                                                                    \
    do {                                                                                           \
        if (n < cap)                                                                               \
            out[n] = (ch);                                                                         \
        n++;                                                                                       \
    } while (0)

    while (i < len) {
        unsigned char c = (unsigned char)in[i];
        if (is_alnum(c)) {
            size_t s = i;
            while (i < len && is_alnum((unsigned char)in[i]))
                i++;
            if (!variable_word(in + s, i - s)) {
                for (size_t k = s; k < i; k++)
                    PUT(in[k]);
                continue;
            }
            /* One '#' for a number or id and whatever more of them it is joined to. */
            if (!(n > 0 && n <= cap && out[n - 1] == '#'))
                PUT('#');
            while (i + 1 < len && is_joiner((unsigned char)in[i]) && is_alnum((unsigned char)in[i + 1])) {
                size_t e = i + 1;
                while (e < len && is_alnum((unsigned char)in[e]))
                    e++;
                if (!variable_word(in + i + 1, e - i - 1))
                    break;
                i = e;
            }
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            while (i < len && (in[i] == ' ' || in[i] == '\t' || in[i] == '\n' || in[i] == '\r'))
                i++;
            if (n > 0 && i < len)
                PUT(' ');
            continue;
        }
        PUT((char)c);
        i++;
    }
#undef PUT
    return n;
}

/* Folds len bytes into the FNV-1a hash h. */
static uint64_t
fnv(uint64_t h, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= FNV_PRIME;
    }
    return h;
}

uint64_t
dlq_error_hash(const char *error, size_t elen)
{
    char norm[DLQ_FINGERPRINT_TEXT];
    size_t n = dlq_fingerprint_normalise(error ? error : "", error ? (elen < ERROR_IN_MAX ? elen : ERROR_IN_MAX) : 0,
                                         norm, sizeof(norm));

    return fnv(FNV_OFFSET, norm, n < sizeof(norm) ? n : sizeof(norm));
}

uint64_t
dlq_fingerprint_mix(const char *subject, size_t slen, uint64_t error_hash)
{
    uint64_t h = fnv(FNV_OFFSET, subject ? subject : "", subject ? slen : 0);
    unsigned char eh[8];

    h = fnv(h, "\0", 1); /* "a.b" + "c" never meets "a.bc" + "" */
    for (int i = 0; i < 8; i++)
        eh[i] = (unsigned char)(error_hash >> (8 * i));
    return fnv(h, (const char *)eh, sizeof(eh));
}

uint64_t
dlq_fingerprint(const char *subject, size_t slen, const char *error, size_t elen)
{
    return dlq_fingerprint_mix(subject, slen, dlq_error_hash(error, elen));
}

uint64_t
dlq_fingerprint_group(uint64_t fp, unsigned category)
{
    /* splitmix64's finaliser over the fingerprint and the category: every bit of both moves the result. */
    uint64_t z = fp ^ (((uint64_t)category + 1) * 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z ? z : 1; /* 0 means "any group" in struct dlq_filter */
}

void
dlq_group_hex(uint64_t group, char out[17])
{
    static const char digits[] = "0123456789abcdef";

    for (int i = 15; i >= 0; i--) {
        out[i] = digits[group & 0xf];
        group >>= 4;
    }
    out[16] = '\0';
}

bool
dlq_group_parse(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len != 16)
        return false;
    for (size_t i = 0; i < 16; i++) {
        unsigned char c = (unsigned char)s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return false;
        v = v << 4 | d;
    }
    if (v == 0)
        return false;
    *out = v;
    return true;
}
