/* envelope.c - checks a failure against the contract (DESIGN section 4) and packs its MessagePack envelope: dlq_client_encode(). */
#include "client-internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const policies[] = {"never", "linear", "exponential", "immediate"};
static const char *const priorities[] = {"high", "normal", "low"};

/* task_id: 1-256 bytes of UTF-8 without control characters (C0, DEL, C1). */
static dlq_client_status
check_task_id(const char *id, struct dlq_client_error *err)
{
    const uint8_t *p = (const uint8_t *)id;
    size_t len = id ? strlen(id) : 0;

    if (!id)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "task_id", "task_id_missing",
                                    "task_id: missing");
    if (len == 0)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "task_id", "task_id_missing",
                                    "task_id: empty");
    if (len > DLQC_MAX_TASK_ID)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "task_id", "too_big",
                                    "task_id: %zu bytes, at most %d", len, DLQC_MAX_TASK_ID);
    for (size_t k = 0; k < len;) {
        uint32_t cp;
        size_t n = dlq_client_utf8_next(p + k, len - k, &cp);
        if (!n)
            return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "task_id", "bad_utf8",
                                        "task_id: not valid UTF-8 at byte %zu", k);
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "task_id", "bad_chars",
                                        "task_id: control character at byte %zu", k);
        k += n;
    }
    return DLQ_CLIENT_OK;
}

/* An optional string of at most DLQC_MAX_STRING bytes. */
static dlq_client_status
check_string(const char *name, const char *s, struct dlq_client_error *err)
{
    size_t len = s ? strlen(s) : 0;

    if (len > DLQC_MAX_STRING)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, name, "too_big",
                                    "%s: %zu bytes, at most %d", name, len, DLQC_MAX_STRING);
    return DLQ_CLIENT_OK;
}

/* Depth of a msgpack-c object, up to limit + 1 (recursion bounded by limit). */
static unsigned
obj_depth(const msgpack_object *o, unsigned limit)
{
    unsigned d = 0, sub;

    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t k = 0; k < o->via.array.size && d < limit; k++)
            if ((sub = obj_depth(&o->via.array.ptr[k], limit - 1)) > d)
                d = sub;
        return d + 1;
    }
    if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t k = 0; k < o->via.map.size && d < limit; k++) {
            if ((sub = obj_depth(&o->via.map.ptr[k].key, limit - 1)) > d)
                d = sub;
            if ((sub = obj_depth(&o->via.map.ptr[k].val, limit - 1)) > d)
                d = sub;
        }
        return d + 1;
    }
    return 0;
}

/* Words for a walk's reason. */
static const char *
walk_text(const char *reason)
{
    if (strcmp(reason, "too_deep") == 0)
        return "nesting deeper than the limit";
    if (strcmp(reason, "bad_msgpack") == 0)
        return "reserved byte 0xc1";
    return "a declared length passes the end of the input";
}

/*
 * Checks raw MessagePack bytes given for key name: one complete value,
 * nesting within the envelope's limit (the envelope is level 1).
 */
static dlq_client_status
check_raw(const char *name, const void *p, size_t len, struct dlq_client_error *err)
{
    size_t used = 0, at = 0;
    const char *r = dlq_client_mp_walk(p, len, DLQC_MAX_DEPTH - 1, &used, &at);

    if (r)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, name, r, "%s: %s at byte %zu of its bytes",
                                    name, walk_text(r), at);
    if (used != len)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, name, "trailing_bytes",
                                    "%s: %zu trailing byte(s) after the value", name, len - used);
    return DLQ_CLIENT_OK;
}

/* The task: exactly one of task_mp, task_obj, task_bin. */
static dlq_client_status
check_task(const struct dlq_client_failure *f, struct dlq_client_error *err)
{
    int given = (f->task_mp != NULL) + (f->task_obj != NULL) + (f->task_bin != NULL);

    if (given == 0)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "task", "task_missing", "task: missing");
    if (given > 1)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "task", "bad_value",
                                    "task: give one of task_mp, task_obj and task_bin, not %d",
                                    given);
    if (f->task_mp)
        return check_raw("task", f->task_mp, f->task_mp_len, err);
    if (f->task_obj && obj_depth(f->task_obj, DLQC_MAX_DEPTH) > DLQC_MAX_DEPTH - 1)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "task", "too_deep",
                                    "task: nesting deeper than the limit (%d levels)",
                                    DLQC_MAX_DEPTH - 1);
    return DLQ_CLIENT_OK;
}

/* retry_policy: one of the four names, any case. */
static dlq_client_status
check_policy(const char *p, struct dlq_client_error *err)
{
    dlq_client_status s;

    if (!p)
        return DLQ_CLIENT_OK;
    if ((s = check_string("retry_policy", p, err)))
        return s;
    for (size_t k = 0; k < sizeof(policies) / sizeof(policies[0]); k++)
        if (strcasecmp(p, policies[k]) == 0)
            return DLQ_CLIENT_OK;
    return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "retry_policy", "bad_value",
                                "retry_policy: not one of never, linear, exponential, immediate");
}

static dlq_client_status
check_repos(const struct dlq_client_failure *f, struct dlq_client_error *err)
{
    if (f->nrepos > DLQC_MAX_REPOS)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "repos", "too_big",
                                    "repos: %zu entries, at most %d", f->nrepos, DLQC_MAX_REPOS);
    if (f->nrepos && !f->repos)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "repos", "bad_type",
                                    "repos: %zu entries but no array", f->nrepos);
    for (size_t k = 0; k < f->nrepos; k++) {
        size_t len;
        if (!f->repos[k])
            return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "repos", "bad_type",
                                        "repos: entry %zu must be a string, not nil", k);
        len = strlen(f->repos[k]);
        if (len > DLQC_MAX_STRING)
            return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "repos", "too_big",
                                        "repos: entry %zu is %zu bytes, at most %d", k, len,
                                        DLQC_MAX_STRING);
    }
    return DLQ_CLIENT_OK;
}

/* The head of a map in raw bytes: its entry count, or -1 when the value is not a map. */
static int64_t
raw_map_count(const uint8_t *p)
{
    if (p[0] >= 0x80 && p[0] <= 0x8f)
        return p[0] & 0x0f;
    if (p[0] == 0xde)
        return (int64_t)p[1] << 8 | p[2];
    if (p[0] == 0xdf)
        return (int64_t)p[1] << 24 | (int64_t)p[2] << 16 | (int64_t)p[3] << 8 | p[4];
    return -1;
}

/* metadata: one map (raw or object), at most 64 keys; its encoded size is checked once packed. */
static dlq_client_status
check_metadata(const struct dlq_client_failure *f, struct dlq_client_error *err)
{
    dlq_client_status s;
    int64_t keys;

    if (f->metadata_mp && f->metadata_obj)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "metadata", "bad_value",
                                    "metadata: give one of metadata_mp and metadata_obj");
    if (f->metadata_mp) {
        if ((s = check_raw("metadata", f->metadata_mp, f->metadata_mp_len, err)))
            return s;
        keys = raw_map_count(f->metadata_mp);
        if (keys < 0)
            return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "metadata", "bad_type",
                                        "metadata: must be a map, not %s",
                                        dlq_client_mp_kind(*(const uint8_t *)f->metadata_mp));
    } else if (f->metadata_obj) {
        if (f->metadata_obj->type != MSGPACK_OBJECT_MAP)
            return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "metadata", "bad_type",
                                        "metadata: must be a map (msgpack-c object type %d)",
                                        (int)f->metadata_obj->type);
        if (obj_depth(f->metadata_obj, DLQC_MAX_DEPTH) > DLQC_MAX_DEPTH - 1)
            return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "metadata", "too_deep",
                                        "metadata: nesting deeper than the limit (%d levels)",
                                        DLQC_MAX_DEPTH - 1);
        keys = f->metadata_obj->via.map.size;
    } else {
        return DLQ_CLIENT_OK;
    }
    if (keys > DLQC_MAX_META_KEYS)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "metadata", "too_many_keys",
                                    "metadata: %lld keys, at most %d", (long long)keys,
                                    DLQC_MAX_META_KEYS);
    return DLQ_CLIENT_OK;
}

/*
 * Issue 17's keys: priority one of three names (any case), backoff 1-32
 * delays of 1 ms - 7 days, template a string, depends_on task ids.
 */
static dlq_client_status
check_issue17(const struct dlq_client_failure *f, struct dlq_client_error *err)
{
    dlq_client_status s;
    size_t k;

    if (f->nbackoff > DLQC_MAX_DELAYS)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "backoff", "out_of_range",
                                    "backoff: %zu delays, at most %d", f->nbackoff, DLQC_MAX_DELAYS);
    if (f->nbackoff && !f->backoff_ms)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "backoff", "bad_type",
                                    "backoff: %zu delays but no array", f->nbackoff);
    for (k = 0; k < f->nbackoff; k++)
        if (f->backoff_ms[k] < 1 || f->backoff_ms[k] > DLQC_MAX_DELAY_MS)
            return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "backoff", "out_of_range",
                                        "backoff[%zu]: %lld ms is out of range 1-%lld (7 days)", k,
                                        (long long)f->backoff_ms[k], (long long)DLQC_MAX_DELAY_MS);
    if ((s = check_string("template", f->template_name, err)) ||
        (s = check_string("priority", f->priority, err)))
        return s;
    if (f->priority) {
        for (k = 0; k < sizeof(priorities) / sizeof(priorities[0]); k++)
            if (strcasecmp(f->priority, priorities[k]) == 0)
                break;
        if (k == sizeof(priorities) / sizeof(priorities[0]))
            return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "priority", "bad_value",
                                        "priority: not one of high, normal, low");
    }
    if (f->ndepends_on && !f->depends_on)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "depends_on", "bad_type",
                                    "depends_on: %zu ids but no array", f->ndepends_on);
    if (f->ndepends_on > DLQC_MAX_DEPENDS)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "depends_on", "out_of_range",
                                    "depends_on: %zu task ids, at most %d", f->ndepends_on,
                                    DLQC_MAX_DEPENDS);
    for (k = 0; k < f->ndepends_on; k++) {
        if (!f->depends_on[k] || check_task_id(f->depends_on[k], NULL))
            return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "depends_on", "bad_value",
                                        "depends_on: entry %zu is not a task id (1-%d bytes of "
                                        "UTF-8, no control characters)", k, DLQC_MAX_TASK_ID);
        /* The sidecar refuses these to dlq.invalid (the failure is not stored): say so here. */
        if (f->task_id && strcmp(f->depends_on[k], f->task_id) == 0)
            return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "depends_on", "bad_value",
                                        "depends_on: entry %zu is the task's own id", k);
        for (size_t j = 0; j < k; j++)
            if (strcmp(f->depends_on[j], f->depends_on[k]) == 0)
                return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "depends_on", "bad_value",
                                            "depends_on: entry %zu names '%s' again", k,
                                            f->depends_on[k]);
    }
    return DLQ_CLIENT_OK;
}

/* Every rule of DESIGN section 4 that does not need the packed bytes, in the contract's key order. */
static dlq_client_status
check_failure(const struct dlq_client_failure *f, struct dlq_client_error *err)
{
    dlq_client_status s;

    if ((s = check_task_id(f->task_id, err)) || (s = check_task(f, err)) ||
        (s = check_string("error_type", f->error_type, err)) ||
        (s = check_string("error_category", f->error_category, err)) ||
        (s = check_policy(f->retry_policy, err)))
        return s;
    if (f->has_max_retries && (f->max_retries < 0 || f->max_retries > 100))
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "max_retries", "out_of_range",
                                    "max_retries: %d is out of range 0-100", f->max_retries);
    if ((s = check_string("retry_subject", f->retry_subject, err)))
        return s;
    if (f->retry_subject && !dlq_client_subject_ok(f->retry_subject, false))
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "retry_subject", "bad_value",
                                    "retry_subject: \"%.100s\" is not a NATS subject to publish to "
                                    "(empty token, whitespace, control character or wildcard)",
                                    f->retry_subject);
    if ((s = check_repos(f, err)) || (s = check_metadata(f, err)))
        return s;
    if (f->has_failed_at && (f->failed_at_ms < DLQC_MIN_MS || f->failed_at_ms > DLQC_MAX_MS))
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "failed_at", "bad_timestamp",
                                    "failed_at: out of range (years 0000-9999)");
    return check_issue17(f, err);
}

static void
pack_str(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);

    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

/* Packs the checked failure into sb (keys in the contract's order). Returns the metadata's encoded size. */
static int
pack_failure(const struct dlq_client_failure *f, msgpack_sbuffer *sb, size_t *meta_len)
{
    msgpack_packer pk;
    size_t n = 2, before;
    int r = 0;

    n += (f->error != NULL) + (f->error_type != NULL) + (f->error_category != NULL) +
         (f->retry_policy != NULL) + f->has_max_retries +
         (f->retry_subject != NULL) + (f->repos != NULL && f->nrepos > 0) +
         (f->metadata_mp != NULL || f->metadata_obj != NULL) +
         f->has_failed_at + f->enqueue + (f->nbackoff > 0) + (f->template_name != NULL) +
         (f->priority != NULL) + (f->ndepends_on > 0);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    r |= msgpack_pack_map(&pk, n);
    pack_str(&pk, "task_id");
    pack_str(&pk, f->task_id);
    pack_str(&pk, "task");
    if (f->task_mp)
        r |= msgpack_sbuffer_write(sb, f->task_mp, f->task_mp_len);
    else if (f->task_obj)
        r |= msgpack_pack_object(&pk, *f->task_obj);
    else
        r |= msgpack_pack_bin(&pk, f->task_bin_len) |
             msgpack_pack_bin_body(&pk, f->task_bin, f->task_bin_len);
    if (f->error) {
        pack_str(&pk, "error");
        pack_str(&pk, f->error);
    }
    if (f->error_type) {
        pack_str(&pk, "error_type");
        pack_str(&pk, f->error_type);
    }
    if (f->error_category) {
        pack_str(&pk, "error_category");
        pack_str(&pk, f->error_category);
    }
    if (f->retry_policy) {
        pack_str(&pk, "retry_policy");
        pack_str(&pk, f->retry_policy);
    }
    if (f->has_max_retries) {
        pack_str(&pk, "max_retries");
        r |= msgpack_pack_int(&pk, f->max_retries);
    }
    if (f->retry_subject) {
        pack_str(&pk, "retry_subject");
        pack_str(&pk, f->retry_subject);
    }
    if (f->repos && f->nrepos > 0) {
        pack_str(&pk, "repos");
        r |= msgpack_pack_array(&pk, f->nrepos);
        for (size_t k = 0; k < f->nrepos; k++)
            pack_str(&pk, f->repos[k]);
    }
    *meta_len = 0;
    if (f->metadata_mp || f->metadata_obj) {
        pack_str(&pk, "metadata");
        before = sb->size;
        if (f->metadata_mp)
            r |= msgpack_sbuffer_write(sb, f->metadata_mp, f->metadata_mp_len);
        else
            r |= msgpack_pack_object(&pk, *f->metadata_obj);
        *meta_len = sb->size - before;
    }
    if (f->has_failed_at) {
        pack_str(&pk, "failed_at");
        r |= msgpack_pack_int64(&pk, f->failed_at_ms);
    }
    if (f->enqueue) {
        pack_str(&pk, "enqueue");
        r |= msgpack_pack_true(&pk);
    }
    if (f->nbackoff > 0) {
        pack_str(&pk, "backoff");
        r |= msgpack_pack_array(&pk, f->nbackoff);
        for (size_t k = 0; k < f->nbackoff; k++)
            r |= msgpack_pack_int64(&pk, f->backoff_ms[k]);
    }
    if (f->template_name) {
        pack_str(&pk, "template");
        pack_str(&pk, f->template_name);
    }
    if (f->priority) {
        pack_str(&pk, "priority");
        pack_str(&pk, f->priority);
    }
    if (f->ndepends_on > 0) {
        pack_str(&pk, "depends_on");
        r |= msgpack_pack_array(&pk, f->ndepends_on);
        for (size_t k = 0; k < f->ndepends_on; k++)
            pack_str(&pk, f->depends_on[k]);
    }
    return r;
}

dlq_client_status
dlq_client_encode(const struct dlq_client_failure *f, size_t max_bytes, msgpack_sbuffer *out,
                  struct dlq_client_error *err)
{
    dlq_client_status s = DLQ_CLIENT_ENOMEM;
    msgpack_sbuffer sb;
    size_t meta_len;

    dlq_client_clear_error(err);
    if (!f || !out)
        return dlq_client_set_error(err, DLQ_CLIENT_EINVAL, NULL, NULL,
                                    "dlq_client_encode: NULL failure or buffer");
    if ((s = check_failure(f, err)))
        return s;
    msgpack_sbuffer_init(&sb);
    if (pack_failure(f, &sb, &meta_len)) {
        s = dlq_client_set_error(err, DLQ_CLIENT_ENOMEM, NULL, NULL, "out of memory packing the envelope");
        goto done;
    }
    if (meta_len > DLQC_MAX_META_BYTES) {
        s = dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "metadata", "too_big",
                                 "metadata: %zu bytes, at most %d", meta_len, DLQC_MAX_META_BYTES);
        goto done;
    }
    if (max_bytes && sb.size > max_bytes) {
        s = dlq_client_set_error(err, DLQ_CLIENT_EINVAL, "envelope", "too_big",
                                 "envelope: %zu bytes, at most %zu (the server's max_payload)",
                                 sb.size, max_bytes);
        goto done;
    }
    if (msgpack_sbuffer_write(out, sb.data, sb.size)) {
        s = dlq_client_set_error(err, DLQ_CLIENT_ENOMEM, NULL, NULL, "out of memory");
        goto done;
    }
    s = DLQ_CLIENT_OK;

done:
    msgpack_sbuffer_destroy(&sb);
    return s;
}
