/* text.c - the SHA-256 of ids for the store's documents (UTF-8, JSON and base64: common/). */
#include <openssl/sha.h>

#include "persist.h"

/* ---- SHA-256, for ids that cannot be an OpenSearch _id (OpenSSL's libcrypto) ----------------- */

void
persist_sha256(const void *p, size_t len, unsigned char out[32])
{
    SHA256(p, len, out);
}
