/* httpauth.h - the admin API's basic-auth users (http.auth.users): a user's password checked against its crypt(3) hash. */
#ifndef DLQ_SIDECAR_HTTPAUTH_H
#define DLQ_SIDECAR_HTTPAUTH_H

#include <stddef.h>

#include "config.h"

/* What a basic-auth user may do: nothing (unknown user, wrong password), read, or everything. */
typedef enum {
    SC_HTTPAUTH_NONE = 0,
    SC_HTTPAUTH_VIEWER,
    SC_HTTPAUTH_OPERATOR,
} sc_httpauth_role;

/*
 * sc_httpauth_basic() checks the credentials of an "Authorization: Basic"
 * header: creds is the base64 text after "Basic " (len bytes, borrowed),
 * decoded to user:password and checked against cfg->http_auth_users
 * (entries "name:role:hash", already validated by config/; the first
 * entry of the name counts) with libxcrypt's crypt_rn(). Returns the
 * user's role and writes the user's name (NUL-terminated, at most 64
 * bytes) into user (usize bytes); SC_HTTPAUTH_NONE with user "" for a
 * malformed header, an unknown user (which pays a hash too, so that the
 * time taken does not tell which names exist) or a wrong password. The password
 * is wiped from the stack afterwards and never kept. The hash's own cost
 * is paid on every call (yescrypt: tens of ms by design): the caller,
 * the loop thread, waits that long. Any thread (crypt_rn keeps its state
 * on the caller's stack).
 */
sc_httpauth_role sc_httpauth_basic(const struct config *cfg, const char *creds, size_t len,
                                   char *user, size_t usize);

#endif
