/* httpauth.c - the admin API's basic-auth users (http.auth.users): a user's password checked against its crypt(3) hash. */
#include <crypt.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "httpauth.h"

#define CREDS_MAX 512 /* decoded user:password bytes at most; longer is refused */

/* Are the n bytes at a and b equal? Compares every byte whatever the first difference. */
static bool
same_bytes(const char *a, const char *b, size_t n)
{
    unsigned char diff = 0;

    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

/*
 * Finds the entry of user (ulen bytes) in cfg's users; sets *role and
 * *hash (borrowed from cfg). Returns false when there is none.
 */
static bool
find_user(const struct config *cfg, const char *user, size_t ulen, sc_httpauth_role *role,
          const char **hash)
{
    for (size_t i = 0; i < cfg->http_auth_users_count; i++) {
        const char *e = cfg->http_auth_users[i], *c1 = strchr(e, ':'), *c2;
        if (!c1 || (size_t)(c1 - e) != ulen || memcmp(e, user, ulen) != 0 || !(c2 = strchr(c1 + 1, ':')))
            continue;
        *role = c2 - c1 - 1 == 8 && memcmp(c1 + 1, "operator", 8) == 0 ? SC_HTTPAUTH_OPERATOR
                                                                       : SC_HTTPAUTH_VIEWER;
        *hash = c2 + 1;
        return true;
    }
    return false;
}

sc_httpauth_role
sc_httpauth_basic(const struct config *cfg, const char *creds, size_t len, char *user, size_t usize)
{
    struct sc_buf dec;
    struct crypt_data cd;
    sc_httpauth_role role = SC_HTTPAUTH_NONE, found = SC_HTTPAUTH_NONE;
    const char *hash = NULL, *colon, *out;
    char password[CREDS_MAX + 1];
    size_t ulen, plen;

    if (usize)
        user[0] = '\0';
    if (!cfg->http_auth_users_count || len == 0 || len > CREDS_MAX * 4 / 3 + 4)
        return SC_HTTPAUTH_NONE;
    sc_buf_init(&dec, CREDS_MAX);
    if (sc_base64_decode(creds, len, &dec) != SC_OK || !dec.data ||
        !(colon = memchr(dec.data, ':', dec.len)))
        goto done;
    ulen = (size_t)(colon - dec.data);
    plen = dec.len - ulen - 1;
    if (ulen == 0 || ulen > 64 || memchr(colon + 1, '\0', plen))
        goto done;
    if (!find_user(cfg, dec.data, ulen, &found, &hash)) {
        /*
         * An unknown user costs a hash too (against the first user's, and
         * refused whatever it gives): an answer as quick as a bad header's
         * would tell a guesser which names exist.
         */
        const char *c = strchr(cfg->http_auth_users[0], ':');
        hash = c ? strchr(c + 1, ':') : NULL;
        hash = hash ? hash + 1 : "";
        found = SC_HTTPAUTH_NONE;
    }
    memcpy(password, colon + 1, plen);
    password[plen] = '\0';
    memset(&cd, 0, sizeof(cd));
    out = crypt_rn(password, hash, &cd, (int)sizeof(cd));
    explicit_bzero(password, sizeof(password));
    if (found != SC_HTTPAUTH_NONE && out && out[0] != '*' && strlen(out) == strlen(hash) &&
        same_bytes(out, hash, strlen(hash))) {
        role = found;
        snprintf(user, usize, "%.*s", (int)ulen, dec.data);
    }
    explicit_bzero(&cd, sizeof(cd));
done:
    if (dec.data)
        explicit_bzero(dec.data, dec.len);
    sc_buf_destroy(&dec);
    return role;
}
