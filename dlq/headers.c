/* headers.c - the headers of a retry message (DESIGN section 5) and the most bytes they can take. */
#include <stdio.h>
#include <string.h>

#include "dlq.h"

/* The wire bytes of one header line "name: value\r\n". */
static size_t
hdr_line(const char *name, const char *value)
{
    return strlen(name) + 2 + strlen(value) + 2;
}

size_t
dlq_retry_headers(struct dlq_retry_hdrs *h, const char *id, size_t id_len, int32_t attempt,
                 int32_t max_retries, policy_category cat, const char *orig_subject,
                 int64_t first_failed_at, int64_t episode_id)
{
    size_t n = 0, wire = 10 + 2; /* "NATS/1.0\r\n" ... "\r\n" */
    size_t alen, elen;

    if (id_len > DLQ_RETRY_ID_MAX)
        id_len = DLQ_RETRY_ID_MAX; /* ids are capped below this by limits.max_task_id_len */
    memcpy(h->id, id, id_len);
    h->id[id_len] = '\0';
    /* sc_format_int, not snprintf: this runs once per retry (dispatch's hot path) */
    alen = sc_format_i64(attempt, h->attempt);
    sc_format_i64(max_retries, h->maxr);
    elen = sc_format_i64(episode_id, h->episode);
    memcpy(h->msgid, h->id, id_len); /* "<id>:<episode>:<attempt>" */
    h->msgid[id_len] = ':';
    memcpy(h->msgid + id_len + 1, h->episode, elen);
    h->msgid[id_len + 1 + elen] = ':';
    memcpy(h->msgid + id_len + 2 + elen, h->attempt, alen + 1);
    sc_format_rfc3339(first_failed_at, h->first);
    h->kv[n++] = CODEC_HDR_TASK_ID;
    h->kv[n++] = h->id;
    h->kv[n++] = CODEC_HDR_ATTEMPT;
    h->kv[n++] = h->attempt;
    h->kv[n++] = CODEC_HDR_MAX_RETRIES;
    h->kv[n++] = h->maxr;
    h->kv[n++] = CODEC_HDR_CATEGORY;
    h->kv[n++] = policy_category_name(cat);
    h->kv[n++] = CODEC_HDR_ORIG_SUBJECT;
    h->kv[n++] = orig_subject;
    h->kv[n++] = CODEC_HDR_FIRST_FAILED;
    h->kv[n++] = h->first;
    h->kv[n++] = DLQ_HDR_EPISODE;
    h->kv[n++] = h->episode;
    h->kv[n++] = CODEC_HDR_MSG_ID;
    h->kv[n++] = h->msgid;
    h->kv[n] = NULL;
    for (size_t i = 0; i < n; i += 2)
        wire += hdr_line(h->kv[i], h->kv[i + 1]);
    return wire;
}

size_t
dlq_retry_headers_max(const char *id, size_t id_len, const char *orig_subject)
{
    struct dlq_retry_hdrs h;
    policy_category longest = 0;
    size_t wire;

    for (int c = 0; c < POLICY_CAT_COUNT; c++)
        if (strlen(policy_category_name((policy_category)c)) >
            strlen(policy_category_name(longest)))
            longest = (policy_category)c;
    /* Attempts and budgets grow past 100 with operators' retries: take the widest numbers. */
    wire = dlq_retry_headers(&h, id, id_len, INT32_MAX, INT32_MAX, longest, orig_subject, 0,
                            INT64_MAX);
    return wire + (SC_RFC3339_LEN - 1 - strlen(h.first)); /* any first-failure time */
}

size_t
dlq_retry_headers_extra(struct dlq_retry_hdrs *h, const char *p, size_t len)
{
    size_t n = 0, wire = 0, pairs = 0;
    const char *end = p ? p + len : NULL;

    while (h->kv[n])
        n += 2;
    while (p && p < end && pairs < DLQ_HDRS_MAX && n + 2 < SC_ARRAY_LEN(h->kv)) {
        const char *name = p, *value, *z = memchr(p, '\0', (size_t)(end - p));
        if (!z || z + 1 >= end)
            break;
        value = z + 1;
        if (!(z = memchr(value, '\0', (size_t)(end - value))))
            break;
        h->kv[n++] = name;
        h->kv[n++] = value;
        wire += hdr_line(name, value);
        pairs++;
        p = z + 1;
    }
    h->kv[n] = NULL;
    return wire;
}
