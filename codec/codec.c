/* codec.c - the codec object, failure-envelope decoding (DESIGN section 4) and retry outcomes (section 6). */
#include "codec-internal.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
codec_limits_default(struct codec_limits *l)
{
    l->max_envelope_bytes = 1024 * 1024;
    l->max_depth = 32;
    l->max_task_id_len = 256;
    l->max_error_len = 4096;
    l->max_metadata_keys = 64;
    l->max_metadata_bytes = 16384;
    l->max_repos = 64;
    l->max_string_len = 1024;
}

/* a * b, or SIZE_MAX when that overflows. */
static size_t
mul_sat(size_t a, size_t b)
{
    return b && a > SIZE_MAX / b ? SIZE_MAX : a * b;
}

struct codec *
codec_new(const struct codec_limits *limits)
{
    struct codec *c = sc_xcalloc(1, sizeof(*c));
    size_t marker = sizeof(CODEC_TRUNC_MARKER) - 1;

    if (limits)
        c->lim = *limits;
    else
        codec_limits_default(&c->lim);
    c->depth = c->lim.max_depth < CODEC_DEPTH_CAP ? c->lim.max_depth : CODEC_DEPTH_CAP;
    /* A truncated error, or an outcome's error rendered as JSON, is at most this long. */
    sc_buf_init(&c->text, c->lim.max_error_len < SIZE_MAX / 2 ? c->lim.max_error_len + marker
                                                              : SIZE_MAX / 2);
    /* MessagePack from JSON can outgrow its text (a 4-byte "1e0," is a 9-byte float64). */
    sc_buf_init(&c->conv, mul_sat(c->lim.max_envelope_bytes, 3));
    c->conv.max = c->conv.max < SIZE_MAX / 2 ? c->conv.max + 64 : SIZE_MAX / 2;
    c->frames = sc_xcalloc(c->depth ? c->depth : 1, sizeof(*c->frames));
    sc_buf_init(&c->jtext, c->lim.max_envelope_bytes);
    /* Each big literal takes at least 19 bytes of text. */
    sc_buf_init(&c->bigs, mul_sat(c->lim.max_envelope_bytes / 19 + 1, sizeof(struct codec_big_uint)));
    c->reason = "";
    return c;
}

void
codec_free(struct codec *c)
{
    if (!c)
        return;
    sc_buf_destroy(&c->text);
    sc_buf_destroy(&c->conv);
    sc_buf_destroy(&c->jtext);
    sc_buf_destroy(&c->bigs);
    free(c->frames);
    free(c);
}

const struct codec_limits *
codec_limits_get(const struct codec *c)
{
    return &c->lim;
}

size_t
codec_arena_capacity(const struct codec *c)
{
    return c->text.cap + c->conv.cap + c->jtext.cap + c->bigs.cap;
}

sc_status
codec_fail(struct codec *c, const char *reason, const char *fmt, ...)
{
    va_list ap;

    c->reason = reason;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
    return SC_EPROTO;
}

/* True when the first byte that is not blank is '{'. */
static bool
looks_json(const uint8_t *p, size_t len)
{
    for (size_t k = 0; k < len; k++) {
        if (p[k] == ' ' || p[k] == '\t' || p[k] == '\r' || p[k] == '\n')
            continue;
        return p[k] == '{';
    }
    return false;
}

static bool
all_blank(const uint8_t *p, size_t len)
{
    for (size_t k = 0; k < len; k++)
        if (p[k] != ' ' && p[k] != '\t' && p[k] != '\r' && p[k] != '\n')
            return false;
    return true;
}

static const char *
kind_name(enum codec_mp_kind k)
{
    switch (k) {
    case CODEC_MP_NIL: return "nil";
    case CODEC_MP_BOOL: return "a boolean";
    case CODEC_MP_UINT:
    case CODEC_MP_INT: return "an integer";
    case CODEC_MP_FLOAT: return "a float";
    case CODEC_MP_STR: return "a string";
    case CODEC_MP_BIN: return "binary";
    case CODEC_MP_ARRAY: return "an array";
    case CODEC_MP_MAP: return "a map";
    case CODEC_MP_EXT: return "an extension";
    }
    return "unknown";
}

/*
 * Largest cut <= want (want < len) that does not split a UTF-8 sequence:
 * backs off over at most three continuation bytes.
 */
static size_t
utf8_cut(const uint8_t *p, size_t len, size_t want)
{
    size_t cut = want;

    if (want >= len)
        return len;
    while (cut > 0 && want - cut < 3 && (p[cut] & 0xc0) == 0x80)
        cut--;
    if ((p[cut] & 0xc0) == 0x80)
        cut = want; /* not UTF-8 anyway: cut where asked */
    return cut;
}

/*
 * Puts text (len bytes) into *out: borrowed when it fits max_error_len,
 * else a copy in c->text cut at a UTF-8 boundary so that the copy plus
 * CODEC_TRUNC_MARKER is at most max_error_len bytes (when max_error_len is
 * shorter than the marker, the copy is the marker alone). Returns true when
 * it truncated.
 */
static bool
set_error_text(struct codec *c, const uint8_t *text, size_t len, struct codec_str *out)
{
    size_t marker = sizeof(CODEC_TRUNC_MARKER) - 1, keep;

    if (len <= c->lim.max_error_len) {
        out->ptr = len ? (const char *)text : "";
        out->len = len;
        return false;
    }
    keep = c->lim.max_error_len > marker ? c->lim.max_error_len - marker : 0;
    keep = utf8_cut(text, len, keep);
    sc_buf_reset(&c->text);
    /* text.max is max_error_len + marker, so these cannot pass the cap; on ENOMEM keep the marker only. */
    if (sc_buf_append(&c->text, text, keep) || sc_buf_append(&c->text, CODEC_TRUNC_MARKER, marker)) {
        out->ptr = CODEC_TRUNC_MARKER;
        out->len = marker;
        return true;
    }
    out->ptr = c->text.data;
    out->len = c->text.len;
    return true;
}

/* The contract's keys, in the order of the bits of `seen`. */
enum env_key {
    K_TASK_ID,
    K_TASK,
    K_ERROR,
    K_ERROR_TYPE,
    K_ERROR_CATEGORY,
    K_RETRY_POLICY,
    K_MAX_RETRIES,
    K_RETRY_SUBJECT,
    K_REPOS,
    K_METADATA,
    K_FAILED_AT,
    K_ENQUEUE,
    K_COUNT
};

static const char *const key_names[K_COUNT] = {
    "task_id", "task", "error", "error_type", "error_category", "retry_policy",
    "max_retries", "retry_subject", "repos", "metadata", "failed_at", "enqueue",
};

static int
key_lookup(const uint8_t *s, size_t len)
{
    for (int k = 0; k < K_COUNT; k++)
        if (strlen(key_names[k]) == len && memcmp(key_names[k], s, len) == 0)
            return k;
    return -1;
}

/* An optional string field (error_type, error_category, retry_policy, retry_subject). */
static sc_status
get_str(struct codec *c, const char *name, const struct codec_mp_item *v, struct codec_str *out)
{
    if (v->kind == CODEC_MP_NIL)
        return SC_OK;
    if (v->kind != CODEC_MP_STR)
        return codec_fail(c, "bad_type", "%s: must be a string, not %s", name, kind_name(v->kind));
    if (v->dlen > c->lim.max_string_len)
        return codec_fail(c, "too_big", "%s: %zu bytes, at most %zu", name, v->dlen,
                          c->lim.max_string_len);
    out->ptr = v->dlen ? (const char *)v->data : "";
    out->len = v->dlen;
    return SC_OK;
}

static sc_status
get_task_id(struct codec *c, const struct codec_mp_item *v, struct codec_str *out)
{
    size_t k = 0;

    if (v->kind == CODEC_MP_NIL)
        return codec_fail(c, "task_id_missing", "task_id: missing (nil)");
    if (v->kind != CODEC_MP_STR)
        return codec_fail(c, "bad_type", "task_id: must be a string, not %s", kind_name(v->kind));
    if (v->dlen == 0)
        return codec_fail(c, "task_id_missing", "task_id: empty");
    if (v->dlen > c->lim.max_task_id_len)
        return codec_fail(c, "too_big", "task_id: %zu bytes, at most %zu", v->dlen,
                          c->lim.max_task_id_len);
    while (k < v->dlen) {
        uint32_t cp;
        size_t n = sc_utf8_next(v->data + k, v->dlen - k, &cp);
        if (!n)
            return codec_fail(c, "bad_utf8", "task_id: not valid UTF-8 at byte %zu", k);
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return codec_fail(c, "bad_chars", "task_id: control character at byte %zu", k);
        k += n;
    }
    out->ptr = (const char *)v->data;
    out->len = v->dlen;
    return SC_OK;
}

static sc_status
get_max_retries(struct codec *c, const struct codec_mp_item *v, struct codec_envelope *env)
{
    switch (v->kind) {
    case CODEC_MP_NIL: return SC_OK;
    case CODEC_MP_UINT:
        if (v->u > 100)
            return codec_fail(c, "out_of_range", "max_retries: %" PRIu64 " is out of range 0-100",
                              v->u);
        env->has_max_retries = true;
        env->max_retries = (int)v->u;
        return SC_OK;
    case CODEC_MP_INT:
        return codec_fail(c, "out_of_range", "max_retries: %" PRId64 " is out of range 0-100", v->i);
    default: return codec_fail(c, "bad_type", "max_retries: must be an integer 0-100");
    }
}

static sc_status
get_failed_at(struct codec *c, const struct codec_mp_item *v, struct codec_envelope *env)
{
    int64_t ms = 0;

    switch (v->kind) {
    case CODEC_MP_NIL: return SC_OK;
    case CODEC_MP_UINT:
        if (v->u > (uint64_t)CODEC_MAX_MS)
            goto range;
        ms = (int64_t)v->u;
        break;
    case CODEC_MP_INT:
        if (v->i < CODEC_MIN_MS)
            goto range;
        ms = v->i;
        break;
    case CODEC_MP_STR:
        if (sc_parse_rfc3339((const char *)v->data, v->dlen, &ms))
            return codec_fail(c, "bad_timestamp", "failed_at: not an RFC 3339 date-time");
        if (ms < CODEC_MIN_MS || ms > CODEC_MAX_MS)
            goto range;
        break;
    case CODEC_MP_EXT:
        if (v->ext_type != -1)
            return codec_fail(c, "bad_type", "failed_at: extension type %d is not a timestamp (-1)",
                              v->ext_type);
        if (!codec_msgpack_timestamp(v, &ms))
            return codec_fail(c, "bad_timestamp",
                              "failed_at: bad timestamp extension (%zu bytes, or out of range)",
                              v->dlen);
        break;
    default:
        return codec_fail(c, "bad_type",
                          "failed_at: must be a timestamp, an integer (ms) or an RFC 3339 string");
    }
    env->has_failed_at = true;
    env->failed_at_ms = ms;
    return SC_OK;

range:
    return codec_fail(c, "bad_timestamp", "failed_at: out of range (years 0000-9999)");
}

/* Checks `repos` (val: used bytes at p, known to be one complete value). */
static sc_status
get_repos(struct codec *c, const uint8_t *p, size_t used, const struct codec_mp_item *v,
          struct codec_envelope *env)
{
    size_t pos = v->size;

    if (v->kind == CODEC_MP_NIL)
        return SC_OK;
    if (v->kind != CODEC_MP_ARRAY)
        return codec_fail(c, "bad_type", "repos: must be an array of strings, not %s",
                          kind_name(v->kind));
    if (v->count > c->lim.max_repos)
        return codec_fail(c, "too_big", "repos: %" PRIu64 " entries, at most %zu", v->count,
                          c->lim.max_repos);
    for (uint64_t k = 0; k < v->count; k++) {
        struct codec_mp_item e;
        if (codec_msgpack_head(p + pos, used - pos, &e))
            return codec_fail(c, "truncated", "repos: truncated");
        if (e.kind != CODEC_MP_STR)
            return codec_fail(c, "bad_type", "repos: entry %" PRIu64 " must be a string, not %s", k,
                              kind_name(e.kind));
        if (e.dlen > c->lim.max_string_len)
            return codec_fail(c, "too_big", "repos: entry %" PRIu64 " is %zu bytes, at most %zu", k,
                              e.dlen, c->lim.max_string_len);
        pos += e.size;
    }
    env->repos.ptr = (const char *)p;
    env->repos.len = used;
    return SC_OK;
}

static sc_status
get_metadata(struct codec *c, const uint8_t *p, size_t used, const struct codec_mp_item *v,
             struct codec_envelope *env)
{
    if (v->kind == CODEC_MP_NIL)
        return SC_OK;
    if (v->kind != CODEC_MP_MAP)
        return codec_fail(c, "bad_type", "metadata: must be a map, not %s", kind_name(v->kind));
    if (v->count > c->lim.max_metadata_keys)
        return codec_fail(c, "too_many_keys", "metadata: %" PRIu64 " keys, at most %zu", v->count,
                          c->lim.max_metadata_keys);
    if (used > c->lim.max_metadata_bytes)
        return codec_fail(c, "too_big", "metadata: %zu bytes, at most %zu", used,
                          c->lim.max_metadata_bytes);
    env->metadata.ptr = (const char *)p;
    env->metadata.len = used;
    return SC_OK;
}

/* Words for a failed walk, for why. */
static const char *
walk_text(const struct codec_mp_err *err)
{
    if (strcmp(err->reason, "too_deep") == 0)
        return "nesting deeper than the limit";
    if (strcmp(err->reason, "bad_msgpack") == 0)
        return "reserved byte 0xc1";
    return "a declared length passes the end of the input";
}

/*
 * quote_start() writes the first bytes of p (n bytes) into out as a quoted
 * string for a message: printable ASCII as is, anything else as \xNN or
 * \n, cut with "..." to fit outlen.
 */
static void
quote_start(const uint8_t *p, size_t n, char *out, size_t outlen)
{
    size_t o = 0;

    out[o++] = '"';
    for (size_t k = 0; k < n; k++) {
        char esc[8];
        if (p[k] == '\n')
            snprintf(esc, sizeof(esc), "\\n");
        else if (p[k] >= 0x20 && p[k] < 0x7f && p[k] != '"' && p[k] != '\\')
            snprintf(esc, sizeof(esc), "%c", p[k]);
        else
            snprintf(esc, sizeof(esc), "\\x%02x", p[k]);
        if (o + strlen(esc) + 5 > outlen) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, esc, strlen(esc));
        o += strlen(esc);
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* Decodes the MessagePack envelope at p (n bytes) into env; on error calls codec_fail(). */
static sc_status
decode_map(struct codec *c, const uint8_t *p, size_t n, struct codec_envelope *env)
{
    struct codec_mp_item it;
    struct codec_mp_err err;
    const char *r;
    unsigned seen = 0;
    size_t pos;

    if (n == 0)
        return codec_fail(c, "not_a_map", "envelope: empty message");
    r = codec_msgpack_head(p, n, &it);
    if (r || it.kind != CODEC_MP_MAP) {
        /* Say what is broken first, then that it is not a map. */
        size_t used = 0;
        if (codec_msgpack_walk(p, n, c->depth, &used, &err))
            return codec_fail(c, err.reason, "envelope: %s at byte %zu", walk_text(&err),
                              err.offset);
        /*
         * Not one MessagePack value (text such as "not json at all" reads as
         * a fixint followed by trailing bytes): neither format, so say that.
         */
        if (used != n) {
            char start[64];
            quote_start(p, n, start, sizeof(start));
            return codec_fail(c, "not_a_map",
                              "envelope: neither MessagePack nor JSON (want a MessagePack map or "
                              "a JSON object; the body starts with %s)",
                              start);
        }
        return codec_fail(c, "not_a_map", "envelope: expected a map, not %s", kind_name(it.kind));
    }
    if (c->depth < 1)
        return codec_fail(c, "too_deep", "envelope: nesting deeper than %u", c->depth);
    pos = it.size;
    if (it.count > (n - pos) / 2)
        return codec_fail(c, "truncated", "envelope: %" PRIu64 " keys declared but only %zu byte(s) follow",
                          it.count, n - pos);
    for (uint64_t k = 0; k < it.count; k++) {
        struct codec_mp_item key, v;
        const uint8_t *val;
        size_t used;
        int id;
        sc_status s;

        if ((r = codec_msgpack_head(p + pos, n - pos, &key)))
            return codec_fail(c, r, "envelope: key %" PRIu64 " malformed at byte %zu", k, pos);
        if (key.kind != CODEC_MP_STR)
            return codec_fail(c, "bad_type", "envelope: key %" PRIu64 " is %s, not a string", k,
                              kind_name(key.kind));
        pos += key.size;
        id = key_lookup(key.data, key.dlen);
        if (codec_msgpack_walk(p + pos, n - pos, c->depth - 1, &used, &err))
            return codec_fail(c, err.reason, "%s: %s at byte %zu", id >= 0 ? key_names[id] : "envelope",
                              walk_text(&err), pos + err.offset);
        val = p + pos;
        pos += used;
        if (id < 0) {
            if (env->unknown_keys < CODEC_UNKNOWN_NAMES) {
                env->unknown[env->unknown_keys].ptr = (const char *)key.data;
                env->unknown[env->unknown_keys].len = key.dlen;
            }
            if (env->unknown_keys < UINT_MAX)
                env->unknown_keys++;
            continue;
        }
        if (seen & 1u << id)
            return codec_fail(c, "duplicate_key", "%s: duplicate key", key_names[id]);
        seen |= 1u << id;
        codec_msgpack_head(val, used, &v); /* cannot fail: the walk passed */
        switch ((enum env_key)id) {
        case K_TASK_ID: s = get_task_id(c, &v, &env->task_id); break;
        case K_TASK:
            env->task.ptr = (const char *)val;
            env->task.len = used;
            s = SC_OK;
            break;
        case K_ERROR:
            if (v.kind == CODEC_MP_STR || v.kind == CODEC_MP_BIN) {
                env->error_truncated = set_error_text(c, v.data, v.dlen, &env->error);
                s = SC_OK;
            } else if (v.kind == CODEC_MP_NIL) {
                s = SC_OK;
            } else {
                s = codec_fail(c, "bad_type", "error: must be a string, not %s", kind_name(v.kind));
            }
            break;
        case K_ERROR_TYPE: s = get_str(c, "error_type", &v, &env->error_type); break;
        case K_ERROR_CATEGORY: s = get_str(c, "error_category", &v, &env->error_category); break;
        case K_RETRY_POLICY: s = get_str(c, "retry_policy", &v, &env->retry_policy); break;
        case K_RETRY_SUBJECT: s = get_str(c, "retry_subject", &v, &env->retry_subject); break;
        case K_MAX_RETRIES: s = get_max_retries(c, &v, env); break;
        case K_REPOS: s = get_repos(c, val, used, &v, env); break;
        case K_METADATA: s = get_metadata(c, val, used, &v, env); break;
        case K_FAILED_AT: s = get_failed_at(c, &v, env); break;
        case K_ENQUEUE:
            if (v.kind == CODEC_MP_BOOL)
                env->enqueue = v.u != 0;
            else if (v.kind != CODEC_MP_NIL)
                return codec_fail(c, "bad_type", "enqueue: must be a boolean, not %s",
                                  kind_name(v.kind));
            s = SC_OK;
            break;
        default: s = SC_OK; break;
        }
        if (s)
            return s;
    }
    if (pos != n)
        return codec_fail(c, "trailing_bytes", "envelope: %zu trailing byte(s) after the map", n - pos);
    if (!(seen & 1u << K_TASK_ID))
        return codec_fail(c, "task_id_missing", "task_id: missing");
    if (!(seen & 1u << K_TASK))
        return codec_fail(c, "task_missing", "task: missing");
    if (!env->error.ptr)
        env->error.ptr = "";
    return SC_OK;
}

sc_status
codec_decode(struct codec *c, const void *buf, size_t len, bool is_json,
             struct codec_envelope *env)
{
    const uint8_t *p = buf;
    size_t n = len;
    sc_status s;

    memset(env, 0, sizeof(*env));
    c->reason = "";
    c->why[0] = '\0';
    sc_buf_reset(&c->text);
    sc_buf_reset(&c->conv);
    if (!buf)
        len = 0;
    if (len > c->lim.max_envelope_bytes) {
        codec_fail(c, "too_big", "envelope: %zu bytes, at most %zu", len, c->lim.max_envelope_bytes);
        s = SC_ETOOBIG;
        goto done;
    }
    if (is_json || looks_json(p, len)) {
        if ((s = codec_json_to_msgpack(c, buf, len, true)))
            goto done;
        p = (const uint8_t *)c->conv.data;
        n = c->conv.len;
    } else {
        n = len;
    }
    s = decode_map(c, p, n, env);

done:
    if (s) {
        memset(env, 0, sizeof(*env));
        env->reason = c->reason;
        env->why = c->why;
    } else {
        env->reason = "";
        env->why = "";
    }
    return s;
}

/*
 * Renders a non-string error value (len bytes at v) as JSON text into
 * c->text, cut like set_error_text() when longer than max_error_len.
 */
static void
render_error(struct codec *c, const uint8_t *v, size_t len, struct codec_str *out)
{
    size_t marker = sizeof(CODEC_TRUNC_MARKER) - 1, keep;
    sc_status s;

    sc_buf_reset(&c->text);
    s = codec_render_json(v, len, c->depth, &c->text);
    if (s == SC_OK && c->text.len <= c->lim.max_error_len)
        goto done;
    if (s != SC_OK && s != SC_ETOOBIG) {
        sc_buf_reset(&c->text);
        goto done;
    }
    keep = c->lim.max_error_len > marker ? c->lim.max_error_len - marker : 0;
    keep = utf8_cut((const uint8_t *)c->text.data, c->text.len, keep);
    c->text.len = keep;
    if (sc_buf_append(&c->text, CODEC_TRUNC_MARKER, marker))
        sc_buf_reset(&c->text);

done:
    out->ptr = c->text.len ? c->text.data : "";
    out->len = c->text.len;
}

sc_status
codec_decode_outcome(struct codec *c, const void *buf, size_t len, struct codec_outcome *out)
{
    const uint8_t *p = buf;
    size_t n = len, pos, used;
    struct codec_mp_item it;
    const uint8_t *err_val = NULL, *type_val = NULL;
    size_t err_len = 0, type_len = 0;
    int ok = -1; /* -1: no boolean `ok` */

    out->ok = false;
    out->error.ptr = "";
    out->error.len = 0;
    out->error_type.ptr = NULL;
    out->error_type.len = 0;
    sc_buf_reset(&c->text);
    sc_buf_reset(&c->conv);
    if (!buf || all_blank(p, len)) {
        out->ok = true;
        return SC_OK;
    }
    if (len > c->lim.max_envelope_bytes)
        goto malformed;
    if (looks_json(p, len)) {
        if (codec_json_to_msgpack(c, buf, len, false))
            goto malformed;
        p = (const uint8_t *)c->conv.data;
        n = c->conv.len;
    }
    if (codec_msgpack_walk(p, n, c->depth, &used, NULL) || used != n)
        goto malformed;
    codec_msgpack_head(p, n, &it);
    if (it.kind != CODEC_MP_MAP)
        goto unrecognised;
    pos = it.size;
    for (uint64_t k = 0; k < it.count; k++) {
        struct codec_mp_item key, v;

        codec_msgpack_head(p + pos, n - pos, &key);
        pos += key.size;
        codec_msgpack_walk(p + pos, n - pos, c->depth, &used, NULL);
        codec_msgpack_head(p + pos, used, &v);
        if (key.kind == CODEC_MP_STR && key.dlen == 2 && memcmp(key.data, "ok", 2) == 0) {
            ok = v.kind == CODEC_MP_BOOL ? (int)v.u : -1;
        } else if (key.kind == CODEC_MP_STR && key.dlen == 5 && memcmp(key.data, "error", 5) == 0) {
            err_val = p + pos;
            err_len = used;
        } else if (key.kind == CODEC_MP_STR && key.dlen == 10 &&
                   memcmp(key.data, "error_type", 10) == 0) {
            type_val = p + pos;
            type_len = used;
        }
        pos += used;
    }
    if (ok < 0)
        goto unrecognised;
    if (ok) {
        out->ok = true;
        return SC_OK;
    }
    if (err_val) {
        struct codec_mp_item v;
        codec_msgpack_head(err_val, err_len, &v);
        if (v.kind == CODEC_MP_MAP) {
            /* {"error":{"code":..,"message":".."}}: take the message when there is one. */
            size_t q = v.size, u;
            for (uint64_t k = 0; k < v.count; k++) {
                struct codec_mp_item key, e;
                codec_msgpack_head(err_val + q, err_len - q, &key);
                q += key.size;
                codec_msgpack_walk(err_val + q, err_len - q, c->depth, &u, NULL);
                codec_msgpack_head(err_val + q, u, &e);
                if (key.kind == CODEC_MP_STR && key.dlen == 7 && memcmp(key.data, "message", 7) == 0 &&
                    e.kind == CODEC_MP_STR) {
                    v = e;
                    break;
                }
                q += u;
            }
        }
        if (v.kind == CODEC_MP_STR || v.kind == CODEC_MP_BIN) {
            set_error_text(c, v.data, v.dlen, &out->error);
        } else if (v.kind != CODEC_MP_NIL) {
            render_error(c, err_val, err_len, &out->error);
        }
    }
    if (type_val) {
        struct codec_mp_item v;
        codec_msgpack_head(type_val, type_len, &v);
        if (v.kind == CODEC_MP_STR) {
            out->error_type.ptr = v.dlen ? (const char *)v.data : "";
            out->error_type.len = utf8_cut(v.data, v.dlen, c->lim.max_string_len);
        }
    }
    return SC_OK;

unrecognised:
    out->error.ptr = "unrecognised reply";
    out->error.len = strlen(out->error.ptr);
    return SC_OK;

malformed:
    out->error.ptr = "malformed reply";
    out->error.len = strlen(out->error.ptr);
    return SC_OK;
}
