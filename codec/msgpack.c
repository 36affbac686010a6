/* msgpack.c - a bounded, non-recursive MessagePack cursor: headers, whole-value walks, timestamps. */
#include "codec-internal.h"

#include <string.h>

/* Reads n (1, 2, 4 or 8) big-endian bytes. */
static uint64_t
be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    for (size_t k = 0; k < n; k++)
        v = v << 8 | p[k];
    return v;
}

/* Sets a signed integer, folding values >= 0 into UINT. */
static void
set_int(struct codec_mp_item *it, int64_t v)
{
    if (v >= 0) {
        it->kind = CODEC_MP_UINT;
        it->u = (uint64_t)v;
    } else {
        it->kind = CODEC_MP_INT;
        it->i = v;
    }
}

/* The two's-complement value of the low n bytes held in v. */
static int64_t
sext(uint64_t v, size_t n)
{
    switch (n) {
    case 1: return (int8_t)(uint8_t)v;
    case 2: return (int16_t)(uint16_t)v;
    case 4: return (int32_t)(uint32_t)v;
    default: return (int64_t)v;
    }
}

/*
 * The one-byte forms (positive and negative fixint, fixmap, fixarray) and
 * fixstr. Returns true when b is one of them, with *reason set (NULL or
 * "truncated").
 */
static bool
head_fix(const uint8_t *p, size_t avail, uint8_t b, struct codec_mp_item *it, const char **reason)
{
    *reason = NULL;
    if (b <= 0x7f) {
        it->kind = CODEC_MP_UINT;
        it->u = b;
    } else if (b <= 0x8f) {
        it->kind = CODEC_MP_MAP;
        it->count = b & 0x0f;
    } else if (b <= 0x9f) {
        it->kind = CODEC_MP_ARRAY;
        it->count = b & 0x0f;
    } else if (b <= 0xbf) {
        it->kind = CODEC_MP_STR;
        it->dlen = b & 0x1f;
        if (it->dlen > avail - 1) {
            *reason = "truncated";
            return true;
        }
        it->data = p + 1;
        it->size = 1 + it->dlen;
    } else if (b >= 0xe0) {
        set_int(it, (int8_t)b);
    } else {
        return false;
    }
    return true;
}

/* How a tag from 0xc0 to 0xdf lays out what follows it. */
struct tag_shape {
    size_t lenbytes; /* bytes of an explicit length or count after the tag */
    size_t fixed;    /* payload bytes known from the tag alone */
    bool has_type;   /* an ext type byte follows the length */
};

/*
 * Sets it->kind and *sh for tag b (0xc0-0xdf). nil and bool are complete
 * here (*done set). Returns NULL or "bad_msgpack" (0xc1).
 */
static const char *
tag_kind(uint8_t b, struct codec_mp_item *it, struct tag_shape *sh, bool *done)
{
    *done = false;
    switch (b) {
    case 0xc0: it->kind = CODEC_MP_NIL; *done = true; return NULL;
    case 0xc1: return "bad_msgpack";
    case 0xc2:
    case 0xc3:
        it->kind = CODEC_MP_BOOL;
        it->u = b == 0xc3;
        *done = true;
        return NULL;
    case 0xc4: case 0xc5: case 0xc6:
        it->kind = CODEC_MP_BIN;
        sh->lenbytes = (size_t)1 << (b - 0xc4);
        return NULL;
    case 0xc7: case 0xc8: case 0xc9:
        it->kind = CODEC_MP_EXT;
        sh->lenbytes = (size_t)1 << (b - 0xc7);
        sh->has_type = true;
        return NULL;
    case 0xca: case 0xcb:
        it->kind = CODEC_MP_FLOAT;
        sh->fixed = b == 0xca ? 4 : 8;
        return NULL;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        it->kind = CODEC_MP_UINT; /* refined by read_number() */
        sh->fixed = (size_t)1 << ((b - 0xcc) & 3);
        return NULL;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        it->kind = CODEC_MP_EXT;
        sh->fixed = (size_t)1 << (b - 0xd4);
        sh->has_type = true;
        return NULL;
    case 0xd9: case 0xda: case 0xdb:
        it->kind = CODEC_MP_STR;
        sh->lenbytes = (size_t)1 << (b - 0xd9);
        return NULL;
    case 0xdc: case 0xdd:
        it->kind = CODEC_MP_ARRAY;
        sh->lenbytes = b == 0xdc ? 2 : 4;
        return NULL;
    case 0xde: case 0xdf:
        it->kind = CODEC_MP_MAP;
        sh->lenbytes = b == 0xde ? 2 : 4;
        return NULL;
    default:
        return "bad_msgpack"; /* unreachable: every byte is covered */
    }
}

/*
 * The header (tag, explicit length, ext type) and, except for containers,
 * the payload, checked against avail. Returns NULL or "truncated".
 */
static const char *
read_sized(const uint8_t *p, size_t avail, const struct tag_shape *sh, struct codec_mp_item *it)
{
    size_t head = 1 + sh->lenbytes + (sh->has_type ? 1 : 0);
    uint64_t dlen;

    if (head > avail)
        return "truncated";
    if (it->kind == CODEC_MP_ARRAY || it->kind == CODEC_MP_MAP) {
        it->count = be(p + 1, sh->lenbytes);
        it->size = head;
        return NULL;
    }
    dlen = sh->lenbytes ? be(p + 1, sh->lenbytes) : sh->fixed;
    if (dlen > avail - head)
        return "truncated";
    it->size = head + (size_t)dlen;
    it->data = p + head;
    it->dlen = (size_t)dlen;
    if (sh->has_type)
        it->ext_type = (int8_t)p[1 + sh->lenbytes];
    return NULL;
}

/* The value of a float or sized integer (tag b, fixed payload bytes at it->data). */
static void
read_number(uint8_t b, size_t fixed, struct codec_mp_item *it)
{
    if (b == 0xca) {
        uint32_t w = (uint32_t)be(it->data, 4);
        float f;
        memcpy(&f, &w, sizeof(f));
        it->f = f;
        it->f32 = true;
    } else if (b == 0xcb) {
        uint64_t w = be(it->data, 8);
        memcpy(&it->f, &w, sizeof(it->f));
    } else if (b >= 0xcc && b <= 0xcf) {
        it->u = be(it->data, fixed);
    } else if (b >= 0xd0 && b <= 0xd3) {
        set_int(it, sext(be(it->data, fixed), fixed));
    }
    if (it->kind == CODEC_MP_FLOAT || it->kind == CODEC_MP_UINT || it->kind == CODEC_MP_INT) {
        it->data = NULL;
        it->dlen = 0;
    }
}

const char *
codec_msgpack_head(const uint8_t *p, size_t avail, struct codec_mp_item *it)
{
    struct tag_shape sh = {0};
    const char *reason;
    bool done;

    memset(it, 0, sizeof(*it));
    if (avail == 0)
        return "truncated";
    it->size = 1;
    if (head_fix(p, avail, p[0], it, &reason))
        return reason;
    if ((reason = tag_kind(p[0], it, &sh, &done)) || done)
        return reason;
    if ((reason = read_sized(p, avail, &sh, it)))
        return reason;
    if (it->kind != CODEC_MP_ARRAY && it->kind != CODEC_MP_MAP)
        read_number(p[0], sh.fixed, it);
    return NULL;
}

sc_status
codec_msgpack_walk(const uint8_t *p, size_t len, unsigned max_depth, size_t *used,
                   struct codec_mp_err *err)
{
    size_t left[CODEC_DEPTH_CAP]; /* elements still owed by each open container */
    unsigned depth = 0;
    size_t pos = 0, owed = 0; /* owed: sum of left[] */
    struct codec_mp_item it;
    const char *reason;

    if (used)
        *used = 0;
    if (max_depth > CODEC_DEPTH_CAP)
        max_depth = CODEC_DEPTH_CAP;
    if (!p || !len) {
        reason = "truncated";
        goto fail;
    }
    for (;;) {
        if ((reason = codec_msgpack_head(p + pos, len - pos, &it)))
            goto fail;
        if (depth) {
            left[depth - 1]--;
            owed--;
        }
        if (it.kind == CODEC_MP_ARRAY || it.kind == CODEC_MP_MAP) {
            size_t room = len - pos - it.size, n;

            if (depth >= max_depth) {
                reason = "too_deep";
                goto fail;
            }
            /* Every element owed, here or above, takes at least one byte. */
            if (owed > room) {
                reason = "truncated";
                goto fail;
            }
            room -= owed;
            if (it.kind == CODEC_MP_MAP) {
                if (it.count > room / 2) {
                    reason = "truncated";
                    goto fail;
                }
                n = (size_t)it.count * 2;
            } else {
                if (it.count > room) {
                    reason = "truncated";
                    goto fail;
                }
                n = (size_t)it.count;
            }
            pos += it.size;
            if (n) {
                left[depth++] = n;
                owed += n;
                continue;
            }
        } else {
            pos += it.size;
        }
        while (depth && left[depth - 1] == 0)
            depth--;
        if (!depth)
            break;
    }
    if (used)
        *used = pos;
    return SC_OK;

fail:
    if (err) {
        err->reason = reason;
        err->offset = pos;
    }
    return SC_EPROTO;
}

sc_status
codec_msgpack_check(const void *buf, size_t len, unsigned max_depth, size_t *used)
{
    return codec_msgpack_walk(buf, len, max_depth, used, NULL);
}

bool
codec_msgpack_timestamp(const struct codec_mp_item *it, int64_t *ms)
{
    int64_t sec;
    uint64_t nsec;

    *ms = 0;
    if (it->kind != CODEC_MP_EXT || it->ext_type != -1)
        return false;
    switch (it->dlen) {
    case 4:
        sec = (int64_t)be(it->data, 4);
        nsec = 0;
        break;
    case 8: {
        uint64_t v = be(it->data, 8);
        nsec = v >> 34;
        sec = (int64_t)(v & 0x3ffffffffULL);
        break;
    }
    case 12:
        nsec = be(it->data, 4);
        sec = (int64_t)be(it->data + 4, 8);
        break;
    default:
        return false;
    }
    if (nsec > 999999999u)
        return false;
    if (sec < CODEC_MIN_MS / 1000 || sec > CODEC_MAX_MS / 1000)
        return false;
    *ms = sec * 1000 + (int64_t)(nsec / 1000000u);
    return true;
}
