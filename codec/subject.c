/* subject.c - NATS subject validation and wildcard matching for retry subjects. */
#include "codec-internal.h"

#include <string.h>

#define SUBJECT_MAX_BYTES 4096
#define SUBJECT_MAX_TOKENS 256

bool
codec_subject_valid(const char *s, size_t len, bool allow_wildcards)
{
    size_t start = 0, tokens = 0;

    if (!s || len == 0 || len > SUBJECT_MAX_BYTES)
        return false;
    for (size_t k = 0; k <= len; k++) {
        unsigned char ch = k < len ? (unsigned char)s[k] : '.';
        size_t tlen;

        if (ch <= 0x20 || ch == 0x7f)
            return false; /* whitespace, control characters, DEL */
        if (ch != '.')
            continue;
        tlen = k - start;
        if (tlen == 0 || ++tokens > SUBJECT_MAX_TOKENS)
            return false;
        for (size_t t = start; t < k; t++) {
            if (s[t] != '*' && s[t] != '>')
                continue;
            if (!allow_wildcards || tlen != 1)
                return false;
            if (s[t] == '>' && k != len)
                return false; /* '>' only as the last token */
        }
        start = k + 1;
    }
    return true;
}

bool
codec_subject_match(const char *pattern, const char *s, size_t len)
{
    size_t pi = 0, si = 0, plen;

    if (!pattern || !s)
        return false;
    plen = strlen(pattern);
    for (;;) {
        /* The current token of each: [pi, pe) and [si, se). */
        size_t pe = pi, se = si;

        while (pe < plen && pattern[pe] != '.')
            pe++;
        while (se < len && s[se] != '.')
            se++;
        if (pe - pi == 1 && pattern[pi] == '>' && pe == plen)
            return si < len; /* '>' takes one or more tokens */
        if (pe - pi == 1 && pattern[pi] == '*') {
            if (se == si)
                return false; /* '*' takes exactly one non-empty token */
        } else if (pe - pi != se - si || memcmp(pattern + pi, s + si, pe - pi) != 0) {
            return false;
        }
        if (pe == plen || se == len)
            return pe == plen && se == len;
        pi = pe + 1;
        si = se + 1;
    }
}
