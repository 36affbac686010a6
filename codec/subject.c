/* subject.c - NATS subject validation and wildcard matching for retry subjects. */
#include "codec-internal.h"

#include <string.h>

#define SUBJECT_MAX_BYTES 4096
#define SUBJECT_MAX_TOKENS 256

bool
codec_subject_valid(const char *s, size_t len, bool allow_wildcards)
{
    size_t start = 0, tokens = 0;
    bool wild = false; /* the current token holds a '*' or '>' */

    if (!s || len == 0 || len > SUBJECT_MAX_BYTES)
        return false;
    /* One pass: a token is checked at the '.' (or the end) that closes it. */
    for (size_t k = 0; k <= len; k++) {
        unsigned char ch = k < len ? (unsigned char)s[k] : '.';
        size_t tlen;

        if (ch <= 0x20 || ch == 0x7f)
            return false; /* whitespace, control characters, DEL */
        if (ch == '*' || ch == '>') {
            wild = true;
            continue;
        }
        if (ch != '.')
            continue;
        tlen = k - start;
        if (tlen == 0 || ++tokens > SUBJECT_MAX_TOKENS)
            return false;
        if (wild) {
            if (!allow_wildcards || tlen != 1)
                return false;
            if (s[start] == '>' && k != len)
                return false; /* '>' only as the last token */
            wild = false;
        }
        start = k + 1;
    }
    return true;
}

/*
 * The last valid subjects this thread checked: failures arrive from a few
 * services, so nearly every check is of a subject seen just before.
 */
#define RECENT_SLOTS 4
#define RECENT_MAX 256

bool
codec_subject_valid_recent(const char *s, size_t len)
{
    static _Thread_local char recent[RECENT_SLOTS][RECENT_MAX];
    static _Thread_local size_t recent_len[RECENT_SLOTS];
    static _Thread_local unsigned next;

    for (unsigned i = 0; i < RECENT_SLOTS; i++)
        if (recent_len[i] == len && len && memcmp(recent[i], s, len) == 0)
            return true;
    if (!codec_subject_valid(s, len, false))
        return false;
    if (len < RECENT_MAX) {
        unsigned slot = next++ % RECENT_SLOTS;
        memcpy(recent[slot], s, len);
        recent_len[slot] = len;
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
