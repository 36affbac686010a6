/* seal.c - AES-256-GCM sealing of stored payload and metadata bytes (secrets.encryption_key_file), with old keys for reading. */
#include "persist.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEAL_VERSION 1
#define SEAL_KEY_LEN 32
#define SEAL_ID_LEN 4
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
#define SEAL_HEAD (1 + SEAL_ID_LEN + SEAL_NONCE_LEN)

struct seal_key {
    unsigned char key[SEAL_KEY_LEN];
    unsigned char id[SEAL_ID_LEN]; /* the first bytes of SHA-256 of the key */
};

struct persist_keyring {
    struct seal_key *keys; /* keys[0]: the current key, the rest read only */
    size_t n;
};

struct persist_keyring *
persist_keyring_new(const unsigned char (*keys)[32], size_t n)
{
    struct persist_keyring *kr;

    if (!n)
        return NULL;
    kr = sc_xcalloc(1, sizeof(*kr));
    kr->keys = sc_xcalloc(n, sizeof(*kr->keys));
    kr->n = n;
    for (size_t i = 0; i < n; i++) {
        unsigned char h[SHA256_DIGEST_LENGTH];
        memcpy(kr->keys[i].key, keys[i], SEAL_KEY_LEN);
        SHA256(keys[i], SEAL_KEY_LEN, h);
        memcpy(kr->keys[i].id, h, SEAL_ID_LEN);
    }
    return kr;
}

void
persist_keyring_free(struct persist_keyring *kr)
{
    if (!kr)
        return;
    OPENSSL_cleanse(kr->keys, kr->n * sizeof(*kr->keys));
    free(kr->keys);
    free(kr);
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

sc_status
persist_key_read(const char *path, const char *name, unsigned char key[32], char *err,
                 size_t errlen)
{
    unsigned char buf[130];
    size_t n;
    FILE *f = fopen(path, "rb");

    if (!f) {
        snprintf(err, errlen, "%s: cannot read %s: %s", name, path, strerror(errno));
        return SC_ENOTFOUND;
    }
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    if (n == SEAL_KEY_LEN) {
        memcpy(key, buf, SEAL_KEY_LEN);
        OPENSSL_cleanse(buf, sizeof(buf));
        return SC_OK;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) /* hex text with its newline */
        n--;
    if (n == 2 * SEAL_KEY_LEN) {
        size_t i;
        for (i = 0; i < SEAL_KEY_LEN; i++) {
            int hi = hexval(buf[2 * i]), lo = hexval(buf[2 * i + 1]);
            if (hi < 0 || lo < 0)
                break;
            key[i] = (unsigned char)(hi << 4 | lo);
        }
        OPENSSL_cleanse(buf, sizeof(buf));
        if (i == SEAL_KEY_LEN)
            return SC_OK;
        snprintf(err, errlen, "%s: %s holds 64 bytes that are not hex digits", name, path);
        return SC_EINVAL;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    snprintf(err, errlen,
             "%s: %s must hold an AES-256 key: 32 raw bytes or 64 hex digits (it holds %s%zu bytes)",
             name, path, n >= sizeof(buf) ? "more than " : "", n >= sizeof(buf) ? sizeof(buf) - 1 : n);
    return SC_EINVAL;
}

sc_status
persist_keyring_load(const char *current, char *const *old, size_t n_old,
                     struct persist_keyring **out, char *err, size_t errlen)
{
    unsigned char(*keys)[32];
    sc_status s = SC_OK;

    *out = NULL;
    if (!current || !current[0])
        return SC_OK;
    keys = sc_xcalloc(n_old + 1, sizeof(*keys));
    if ((s = persist_key_read(current, "secrets.encryption_key_file", keys[0], err, errlen)))
        goto done;
    for (size_t i = 0; i < n_old; i++)
        if ((s = persist_key_read(old[i], "secrets.encryption_old_key_files", keys[i + 1], err,
                                  errlen)))
            goto done;
    *out = persist_keyring_new((const unsigned char(*)[32])keys, n_old + 1);
done:
    OPENSSL_cleanse(keys, (n_old + 1) * sizeof(*keys));
    free(keys);
    return s;
}

size_t
persist_seal_overhead(void)
{
    return SEAL_HEAD + SEAL_TAG_LEN;
}

/* The calling thread's cipher context, made on its first seal or open and freed when it exits. */
static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void
ctx_free(void *x)
{
    EVP_CIPHER_CTX_free(x);
}

static void
ctx_key_make(void)
{
    if (pthread_key_create(&ctx_key, ctx_free) != 0)
        abort();
}

/* The calling thread's context (gcm() resets it after each use); NULL when out of memory. */
static EVP_CIPHER_CTX *
thread_ctx(void)
{
    EVP_CIPHER_CTX *x;

    pthread_once(&ctx_once, ctx_key_make);
    x = pthread_getspecific(ctx_key);
    if (x)
        return x;
    x = EVP_CIPHER_CTX_new();
    if (x && pthread_setspecific(ctx_key, x) != 0) {
        EVP_CIPHER_CTX_free(x);
        x = NULL;
    }
    return x;
}

/* One AES-256-GCM pass; the header (version, key id, nonce) is the additional data. */
static sc_status
gcm(bool enc, const unsigned char *key, const unsigned char *head, const unsigned char *in,
    size_t len, unsigned char *out, unsigned char *tag)
{
    EVP_CIPHER_CTX *x;
    int n = 0, ok;

    if (len > INT32_MAX)
        return SC_EPROTO;
    if (!(x = thread_ctx()))
        return SC_ENOMEM;
    ok = EVP_CipherInit_ex(x, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) &&
         EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_LEN, NULL) &&
         EVP_CipherInit_ex(x, NULL, NULL, key, head + 1 + SEAL_ID_LEN, enc) &&
         EVP_CipherUpdate(x, NULL, &n, head, SEAL_HEAD) &&
         (len == 0 || EVP_CipherUpdate(x, out, &n, in, (int)len)) &&
         (enc || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag)) &&
         EVP_CipherFinal_ex(x, out + (len ? (size_t)n : 0), &n) &&
         (!enc || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, tag));
    EVP_CIPHER_CTX_reset(x); /* the key schedule does not wait in memory for the next use */
    return ok ? SC_OK : SC_EPROTO;
}

sc_status
persist_seal(const struct persist_keyring *kr, const void *in, size_t len, struct sc_buf *out)
{
    unsigned char head[SEAL_HEAD];
    size_t at = out->len;
    sc_status s;

    head[0] = SEAL_VERSION;
    memcpy(head + 1, kr->keys[0].id, SEAL_ID_LEN);
    if (RAND_bytes(head + 1 + SEAL_ID_LEN, SEAL_NONCE_LEN) != 1)
        return SC_EIO;
    {
        unsigned char *o = (unsigned char *)sc_buf_grow(out, SEAL_HEAD + len + SEAL_TAG_LEN);
        if (!o)
            return SC_ETOOBIG;
        memcpy(o, head, SEAL_HEAD);
        s = gcm(true, kr->keys[0].key, o, in, len, o + SEAL_HEAD, o + SEAL_HEAD + len);
    }
    if (s)
        out->len = at;
    return s;
}

bool
persist_sealed(const void *in, size_t len)
{
    return len >= SEAL_HEAD + SEAL_TAG_LEN && ((const unsigned char *)in)[0] == SEAL_VERSION;
}

sc_status
persist_open(const struct persist_keyring *kr, const void *in, size_t len, struct sc_buf *out)
{
    const unsigned char *p = in;
    const struct seal_key *k = NULL;
    size_t at = out->len, clen;
    unsigned char tag[SEAL_TAG_LEN];
    sc_status s;

    if (!persist_sealed(in, len))
        return SC_EPROTO;
    for (size_t i = 0; kr && i < kr->n && !k; i++)
        if (memcmp(kr->keys[i].id, p + 1, SEAL_ID_LEN) == 0)
            k = &kr->keys[i];
    if (!k)
        return SC_ENOTFOUND;
    clen = len - SEAL_HEAD - SEAL_TAG_LEN;
    memcpy(tag, p + len - SEAL_TAG_LEN, SEAL_TAG_LEN);
    if (!sc_buf_grow(out, clen))
        return SC_ETOOBIG;
    s = gcm(false, k->key, p, p + SEAL_HEAD, clen, (unsigned char *)out->data + at, tag);
    if (s) {
        OPENSSL_cleanse(out->data + at, clen);
        out->len = at;
    }
    return s;
}
