/* events.c - the event emitter: dlq.events.<kind> messages about tasks (DESIGN section 9). */
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "events.h"

/*
 * The status an event reports: the task's own, except for a failure that
 * was not stored (a refused, skipped or invalid one has no task, and its
 * view's status field means nothing), where it is what happened to it.
 */
static const char *
event_status(const char *kind, const struct dlq_task *t)
{
    /* The first letter rules out most kinds (enqueued, retrying ...) without a compare. */
    if ((kind[0] == 'r' && strcmp(kind, "refused") == 0) ||
        (kind[0] == 's' && strcmp(kind, "skipped") == 0) ||
        (kind[0] == 'i' && strcmp(kind, "invalid") == 0))
        return kind;
    return dlq_task_status_name(t->status);
}

/*
 * Appends key (a literal such as ,"subject": with its comma and colon) and
 * the JSON string of the len bytes at v (null when v is NULL). A plain
 * string (sc_json_plain_len(); known_plain: a name of this program's own)
 * goes in one piece with its key; anything else through sc_json_quote().
 * Returns the writer's state: nonzero once an append failed.
 */
static sc_status
ev_str(struct sc_buf *b, const char *key, size_t klen, const char *v, size_t len, bool known_plain)
{
    char *p;

    if (!v)
        return sc_buf_append(b, key, klen) ? SC_ENOMEM : sc_buf_append(b, "null", 4);
    if ((known_plain || sc_json_plain_len(v, len) == len) && (p = sc_buf_grow(b, klen + len + 2))) {
        memcpy(p, key, klen);
        p[klen] = '"';
        memcpy(p + klen + 1, v, len);
        p[klen + 1 + len] = '"';
        return SC_OK;
    }
    if (sc_buf_append(b, key, klen))
        return SC_ENOMEM;
    return sc_json_quote(b, v, len);
}

#define EV_KEY(k) k, sizeof(k) - 1

/*
 * The event's "at": the wall clock as RFC 3339 (the reading held for the
 * loop's batch, at most one batch old: common.h), formatted again only when
 * the millisecond changed (events come in bursts: at 100,000 a second a
 * hundred share one). Returns its length; the text stays in the thread's slot.
 */
static size_t
event_at(const char **at)
{
    static _Thread_local int64_t last_ms = -1;
    static _Thread_local char text[SC_RFC3339_LEN];
    static _Thread_local size_t len;
    int64_t now = sc_held_wall_ms();

    if (now != last_ms) {
        len = sc_format_rfc3339(now, text);
        last_ms = now;
    }
    *at = text;
    return len;
}

/* One "key":value of the event: the key as a literal (with its comma and colon), the value's bytes. */
struct ev_field {
    const char *key;
    size_t klen;
    const char *v; /* NULL: null */
    size_t len;
    bool plain; /* v is written as it is between quotes */
};

/* Copies f's value at p as "value" (or null); returns the end. Its key is written before. */
static char *
ev_put(char *p, const struct ev_field *f)
{
    static const char null_text[4] = {'n', 'u', 'l', 'l'};

    if (!f->v) {
        memcpy(p, null_text, sizeof(null_text));
        return p + sizeof(null_text);
    }
    *p++ = '"';
    memcpy(p, f->v, f->len);
    p += f->len;
    *p++ = '"';
    return p;
}

/*
 * Writes the event's JSON object into b (reset first): the keys in the
 * order of DESIGN section 9. When every string is plain (ids, subjects and
 * most error texts are) the object is sized first and copied in one pass;
 * otherwise each string goes through sc_json_quote(). The category and
 * status names are this program's own (plain). Returns 0, or nonzero when
 * the buffer refused an append.
 */
static int
event_json(struct sc_buf *b, const char *kind, const struct dlq_task *t, int32_t attempt,
           const char *error)
{
    char num[SC_INT_LEN];
    const char *at, *cat = t ? policy_category_name(t->category) : NULL;
    const char *status = t ? event_status(kind, t) : NULL;
    size_t atlen = event_at(&at), numlen = sc_format_i64(attempt, num), total = 1 + numlen; /* the "}" */
    struct ev_field f[6] = {
        {EV_KEY("{\"task_id\":"), t ? t->id : NULL, t && t->id ? t->id_len : 0, false},
        {EV_KEY(",\"subject\":"), t ? t->subject : NULL, 0, false},
        {EV_KEY(",\"category\":"), cat, cat ? strlen(cat) : 0, true},
        {EV_KEY(",\"at\":"), at, atlen, true},
        {EV_KEY(",\"error\":"), error ? error : t ? t->error : NULL, 0, false},
        {EV_KEY(",\"status\":"), status, status ? strlen(status) : 0, true},
    };
    static const char attempt_key[] = ",\"attempt\":";
    bool plain = true;
    char *p;
    int st = 0;

    if (t) { /* a task's own strings: length and plainness kept with the pooled text */
        f[1].plain = dlq_task_str_plain(t, DLQ_TS_SUBJECT, f[1].v, &f[1].len);
        f[4].plain = dlq_task_str_plain(t, DLQ_TS_ERROR, f[4].v, &f[4].len);
    } else {
        f[4].len = f[4].v ? strlen(f[4].v) : 0;
    }
    for (int i = 0; i < 6; i++) {
        if (i == 5 && !t)
            break; /* no status without a task */
        if (f[i].v && !f[i].plain)
            f[i].plain = sc_json_plain_len(f[i].v, f[i].len) == f[i].len;
        plain = plain && f[i].plain;
        total += f[i].klen + (f[i].v ? f[i].len + 2 : 4);
    }
    total += sizeof(attempt_key) - 1;
    sc_buf_reset(b);
    if (plain && (p = sc_buf_grow(b, total))) {
        /* The keys as literals of known length: copied inline, no call per key. */
#define EV_LIT(lit) (memcpy(p, lit, sizeof(lit) - 1), p += sizeof(lit) - 1)
        EV_LIT("{\"task_id\":");
        p = ev_put(p, &f[0]);
        EV_LIT(",\"subject\":");
        p = ev_put(p, &f[1]);
        EV_LIT(",\"category\":");
        p = ev_put(p, &f[2]);
        EV_LIT(",\"attempt\":");
        memcpy(p, num, numlen);
        p += numlen;
        EV_LIT(",\"at\":");
        p = ev_put(p, &f[3]);
        EV_LIT(",\"error\":");
        p = ev_put(p, &f[4]);
        if (t) {
            EV_LIT(",\"status\":");
            p = ev_put(p, &f[5]);
        }
#undef EV_LIT
        *p = '}';
        return 0;
    }
    sc_buf_reset(b);
    for (int i = 0; i < 6; i++) {
        if (i == 5 && !t)
            break;
        st |= ev_str(b, f[i].key, f[i].klen, f[i].v, f[i].len, f[i].plain);
        if (i == 2) {
            st |= sc_buf_append(b, attempt_key, sizeof(attempt_key) - 1);
            st |= sc_buf_append(b, num, numlen);
        }
    }
    st |= sc_buf_append(b, "}", 1);
    return st;
}

void
sc_event(struct sc_daemon *d, const char *kind, const struct dlq_task *t, int32_t attempt,
         const char *error)
{
    struct sc_buf *b = &d->scratch;
    char subj[256];

    if (!d->cfg->events_enabled)
        return;
    if (event_json(b, kind, t, attempt, error))
        return; /* the scratch buffer's cap: nothing half-written goes out */
    {
        /* <prefix>.events.<kind> without printf (it runs for every event); a prefix too long is cut as before. */
        size_t pl = strlen(d->cfg->subjects_prefix), kl = strlen(kind);
        if (pl + 8 + kl < sizeof(subj)) {
            static const char mid[] = ".events.";
            memcpy(subj, d->cfg->subjects_prefix, pl);
            memcpy(subj + pl, mid, sizeof(mid) - 1);
            memcpy(subj + pl + sizeof(mid) - 1, kind, kl);
            subj[pl + sizeof(mid) - 1 + kl] = '\0';
        } else {
            snprintf(subj, sizeof(subj), "%s.events.%s", d->cfg->subjects_prefix, kind);
        }
    }
    if (b->data)
        sc_publish(d, subj, NULL, b->data, b->len, NULL);
}
