/* envelope.c - failure-envelope decoding (DESIGN section 4): codec_decode(). */
#include "codec-internal.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

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
    K_BACKOFF,
    K_TEMPLATE,
    K_PRIORITY,
    K_DEPENDS_ON,
    K_COUNT
};

static const char *const key_names[K_COUNT] = {
    "task_id", "task", "error", "error_type", "error_category", "retry_policy",
    "max_retries", "retry_subject", "repos", "metadata", "failed_at", "enqueue",
    "backoff", "template", "priority", "depends_on",
};

static int
key_lookup(const uint8_t *s, size_t len)
{
    for (int k = 0; k < K_COUNT; k++)
        if (strlen(key_names[k]) == len && memcmp(key_names[k], s, len) == 0)
            return k;
    return -1;
}

/* An optional string field (error_type, error_category, retry_policy, retry_subject, template, priority). */
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

/*
 * `backoff` (issue 17): an array of 1-SC_DELAYS_MAX delays, each an integer
 * of ms or a duration string ("10s"), in 1 ms - 7 d.
 */
static sc_status
get_backoff(struct codec *c, const uint8_t *p, size_t used, const struct codec_mp_item *v,
            struct codec_envelope *env)
{
    size_t pos = v->size;

    if (v->kind == CODEC_MP_NIL)
        return SC_OK;
    if (v->kind != CODEC_MP_ARRAY)
        return codec_fail(c, "bad_type", "backoff: must be an array of delays, not %s",
                          kind_name(v->kind));
    if (v->count == 0)
        return codec_fail(c, "out_of_range", "backoff: empty, give 1-%d delays", SC_DELAYS_MAX);
    if (v->count > SC_DELAYS_MAX)
        return codec_fail(c, "out_of_range", "backoff: %" PRIu64 " delays, at most %d", v->count,
                          SC_DELAYS_MAX);
    for (uint64_t k = 0; k < v->count; k++) {
        struct codec_mp_item e;
        int64_t ms = 0;

        if (codec_msgpack_head(p + pos, used - pos, &e))
            return codec_fail(c, "truncated", "backoff: truncated");
        if (e.kind == CODEC_MP_UINT) {
            ms = e.u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)e.u;
        } else if (e.kind == CODEC_MP_INT) {
            ms = e.i;
        } else if (e.kind == CODEC_MP_STR) {
            sc_status st = sc_parse_duration_ms((const char *)e.data, e.dlen, &ms);
            if (st == SC_ETOOBIG)
                ms = INT64_MAX;
            else if (st != SC_OK)
                return codec_fail(c, "bad_type",
                                  "backoff[%" PRIu64 "]: '%.*s' is not a delay (an integer of ms, "
                                  "or 500ms, 10s, 1m, 2h, 7d)",
                                  k, (int)(e.dlen > 40 ? 40 : e.dlen), (const char *)e.data);
        } else {
            return codec_fail(c, "bad_type",
                              "backoff[%" PRIu64 "]: must be an integer of ms or a duration string, not %s",
                              k, kind_name(e.kind));
        }
        if (ms < 1 || ms > SC_DELAY_MAX_MS)
            return codec_fail(c, "out_of_range",
                              "backoff[%" PRIu64 "]: %" PRId64 " ms is out of range 1-%lld (7 days)", k,
                              ms, SC_DELAY_MAX_MS);
        env->backoff_ms[env->backoff_n++] = ms;
        pos += e.size;
    }
    return SC_OK;
}

/*
 * `depends_on` (issue 17): an array of 1-CODEC_DEPENDS_MAX task ids, each
 * valid by task_id's rules, no two the same. Every refusal has the reason
 * "bad_depends_on" and a detail naming depends_on (the task's own id is
 * checked once task_id is known, in decode_map()).
 */
static sc_status
get_depends_on(struct codec *c, const uint8_t *p, size_t used, const struct codec_mp_item *v,
               struct codec_envelope *env)
{
    size_t pos = v->size;

    if (v->kind == CODEC_MP_NIL)
        return SC_OK;
    if (v->kind != CODEC_MP_ARRAY)
        return codec_fail(c, "bad_depends_on", "depends_on: must be an array of task ids, not %s",
                          kind_name(v->kind));
    if (v->count == 0)
        return codec_fail(c, "bad_depends_on", "depends_on: empty, give 1-%d task ids",
                          CODEC_DEPENDS_MAX);
    if (v->count > CODEC_DEPENDS_MAX)
        return codec_fail(c, "bad_depends_on", "depends_on: %" PRIu64 " task ids, at most %d",
                          v->count, CODEC_DEPENDS_MAX);
    for (uint64_t k = 0; k < v->count; k++) {
        struct codec_mp_item e;
        size_t b = 0;

        if (codec_msgpack_head(p + pos, used - pos, &e))
            return codec_fail(c, "truncated", "depends_on: truncated");
        if (e.kind != CODEC_MP_STR)
            return codec_fail(c, "bad_depends_on", "depends_on[%" PRIu64 "]: must be a task id string, not %s",
                              k, kind_name(e.kind));
        if (e.dlen == 0 || e.dlen > c->lim.max_task_id_len)
            return codec_fail(c, "bad_depends_on",
                              "depends_on[%" PRIu64 "]: %zu bytes, a task id has 1-%zu", k, e.dlen,
                              c->lim.max_task_id_len);
        while (b < e.dlen) {
            uint32_t cp;
            size_t n = sc_utf8_next(e.data + b, e.dlen - b, &cp);
            if (!n)
                return codec_fail(c, "bad_depends_on",
                                  "depends_on[%" PRIu64 "]: not valid UTF-8 at byte %zu", k, b);
            if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
                return codec_fail(c, "bad_depends_on",
                                  "depends_on[%" PRIu64 "]: control character at byte %zu", k, b);
            b += n;
        }
        for (uint32_t j = 0; j < env->depends_n; j++)
            if (env->depends_on[j].len == e.dlen && memcmp(env->depends_on[j].ptr, e.data, e.dlen) == 0)
                return codec_fail(c, "bad_depends_on",
                                  "depends_on[%" PRIu64 "]: '%.*s' is named twice", k,
                                  (int)(e.dlen > 64 ? 64 : e.dlen), (const char *)e.data);
        env->depends_on[env->depends_n].ptr = (const char *)e.data;
        env->depends_on[env->depends_n].len = e.dlen;
        env->depends_n++;
        pos += e.size;
    }
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

/*
 * Refuses an envelope whose first value is not a map (n > 0 bytes at p,
 * its head in *it when it has one): says what is broken first, then that it
 * is not a map.
 */
static sc_status
refuse_not_map(struct codec *c, const uint8_t *p, size_t n, const struct codec_mp_item *it)
{
    struct codec_mp_err err;
    char start[64];
    size_t used = 0;

    if (codec_msgpack_walk(p, n, c->depth, &used, &err))
        return codec_fail(c, err.reason, "envelope: %s at byte %zu", walk_text(&err), err.offset);
    /*
     * Not one MessagePack value (text such as "not json at all" reads as
     * a fixint followed by trailing bytes): neither format, so say that.
     */
    if (used != n) {
        quote_start(p, n, start, sizeof(start));
        return codec_fail(c, "not_a_map",
                          "envelope: neither MessagePack nor JSON (want a MessagePack map or "
                          "a JSON object; the body starts with %s)",
                          start);
    }
    return codec_fail(c, "not_a_map", "envelope: expected a map, not %s", kind_name(it->kind));
}

/* Counts a key outside the contract and keeps the first CODEC_UNKNOWN_NAMES names. */
static void
note_unknown(struct codec_envelope *env, const struct codec_mp_item *key)
{
    if (env->unknown_keys < CODEC_UNKNOWN_NAMES) {
        env->unknown[env->unknown_keys].ptr = (const char *)key->data;
        env->unknown[env->unknown_keys].len = key->dlen;
    }
    if (env->unknown_keys < UINT_MAX)
        env->unknown_keys++;
}

/* `error`: a string or binary (cut to max_error_len), or nil. */
static sc_status
get_error(struct codec *c, const struct codec_mp_item *v, struct codec_envelope *env)
{
    if (v->kind == CODEC_MP_STR || v->kind == CODEC_MP_BIN) {
        env->error_truncated = codec_error_text(c, v->data, v->dlen, &env->error);
        return SC_OK;
    }
    if (v->kind == CODEC_MP_NIL)
        return SC_OK;
    return codec_fail(c, "bad_type", "error: must be a string, not %s", kind_name(v->kind));
}

/* `enqueue`: a boolean, or nil. */
static sc_status
get_enqueue(struct codec *c, const struct codec_mp_item *v, struct codec_envelope *env)
{
    if (v->kind == CODEC_MP_BOOL)
        env->enqueue = v->u != 0;
    else if (v->kind != CODEC_MP_NIL)
        return codec_fail(c, "bad_type", "enqueue: must be a boolean, not %s", kind_name(v->kind));
    return SC_OK;
}

/* Checks and stores the value of contract key id (used bytes at val, one complete value). */
static sc_status
get_value(struct codec *c, enum env_key id, const uint8_t *val, size_t used,
          struct codec_envelope *env)
{
    struct codec_mp_item v;

    codec_msgpack_head(val, used, &v); /* cannot fail: the walk passed */
    switch (id) {
    case K_TASK_ID: return get_task_id(c, &v, &env->task_id);
    case K_TASK:
        env->task.ptr = (const char *)val;
        env->task.len = used;
        return SC_OK;
    case K_ERROR: return get_error(c, &v, env);
    case K_ERROR_TYPE: return get_str(c, "error_type", &v, &env->error_type);
    case K_ERROR_CATEGORY: return get_str(c, "error_category", &v, &env->error_category);
    case K_RETRY_POLICY: return get_str(c, "retry_policy", &v, &env->retry_policy);
    case K_RETRY_SUBJECT: return get_str(c, "retry_subject", &v, &env->retry_subject);
    case K_MAX_RETRIES: return get_max_retries(c, &v, env);
    case K_REPOS: return get_repos(c, val, used, &v, env);
    case K_METADATA: return get_metadata(c, val, used, &v, env);
    case K_FAILED_AT: return get_failed_at(c, &v, env);
    case K_ENQUEUE: return get_enqueue(c, &v, env);
    case K_BACKOFF: return get_backoff(c, val, used, &v, env);
    case K_TEMPLATE: return get_str(c, "template", &v, &env->template_name);
    case K_PRIORITY: return get_str(c, "priority", &v, &env->priority);
    case K_DEPENDS_ON: return get_depends_on(c, val, used, &v, env);
    case K_COUNT: break;
    }
    return SC_OK;
}

/*
 * Reads pair k of the envelope map (n bytes at p) from *pos: the key must be
 * a string, the value one complete value no deeper than the limit; a
 * contract key may appear once (bits of *seen). Moves *pos past the pair.
 */
static sc_status
decode_pair(struct codec *c, const uint8_t *p, size_t n, size_t *pos, uint64_t k,
            unsigned *seen, struct codec_envelope *env)
{
    struct codec_mp_item key;
    struct codec_mp_err err;
    const uint8_t *val;
    const char *r;
    size_t used;
    int id;

    if ((r = codec_msgpack_head(p + *pos, n - *pos, &key)))
        return codec_fail(c, r, "envelope: key %" PRIu64 " malformed at byte %zu", k, *pos);
    if (key.kind != CODEC_MP_STR)
        return codec_fail(c, "bad_type", "envelope: key %" PRIu64 " is %s, not a string", k,
                          kind_name(key.kind));
    *pos += key.size;
    id = key_lookup(key.data, key.dlen);
    if (codec_msgpack_walk(p + *pos, n - *pos, c->depth - 1, &used, &err))
        return codec_fail(c, err.reason, "%s: %s at byte %zu", id >= 0 ? key_names[id] : "envelope",
                          walk_text(&err), *pos + err.offset);
    val = p + *pos;
    *pos += used;
    if (id < 0) {
        note_unknown(env, &key);
        return SC_OK;
    }
    if (*seen & 1u << id)
        return codec_fail(c, "duplicate_key", "%s: duplicate key", key_names[id]);
    *seen |= 1u << id;
    return get_value(c, (enum env_key)id, val, used, env);
}

/* Decodes the MessagePack envelope at p (n bytes) into env; on error calls codec_fail(). */
static sc_status
decode_map(struct codec *c, const uint8_t *p, size_t n, struct codec_envelope *env)
{
    struct codec_mp_item it;
    unsigned seen = 0;
    size_t pos;
    sc_status s;

    if (n == 0)
        return codec_fail(c, "not_a_map", "envelope: empty message");
    if (codec_msgpack_head(p, n, &it) || it.kind != CODEC_MP_MAP)
        return refuse_not_map(c, p, n, &it);
    if (c->depth < 1)
        return codec_fail(c, "too_deep", "envelope: nesting deeper than %u", c->depth);
    pos = it.size;
    if (it.count > (n - pos) / 2)
        return codec_fail(c, "truncated", "envelope: %" PRIu64 " keys declared but only %zu byte(s) follow",
                          it.count, n - pos);
    for (uint64_t k = 0; k < it.count; k++) {
        if ((s = decode_pair(c, p, n, &pos, k, &seen, env)))
            return s;
    }
    if (pos != n)
        return codec_fail(c, "trailing_bytes", "envelope: %zu trailing byte(s) after the map", n - pos);
    if (!(seen & 1u << K_TASK_ID))
        return codec_fail(c, "task_id_missing", "task_id: missing");
    if (!(seen & 1u << K_TASK))
        return codec_fail(c, "task_missing", "task: missing");
    for (uint32_t j = 0; j < env->depends_n; j++)
        if (env->depends_on[j].len == env->task_id.len &&
            memcmp(env->depends_on[j].ptr, env->task_id.ptr, env->task_id.len) == 0)
            return codec_fail(c, "bad_depends_on", "depends_on[%u]: a task cannot depend on itself", j);
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
    if (is_json || codec_looks_json(p, len)) {
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

