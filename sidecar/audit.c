/* audit.c - the audit trail of admin actions: one record per action, in the log, on <prefix>.events.audit and in a ring of the latest ones (DESIGN section 19). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "daemon.h"
#include "log.h"

#define AUDIT_FILTER_MAX 2048 /* bytes of a request's filter kept in a record */
#define AUDIT_USER_MAX 64     /* bytes of a NATS user taken from an inbox prefix */

/*
 * The ring: cap slots of rendered records (owned JSON text); head is the
 * slot the next record takes, len how many slots hold one. The oldest is
 * freed when a record comes past cap.
 */
struct sc_audit {
    char **ring;
    size_t cap, head, len;
};

struct sc_audit *
sc_audit_new(size_t keep)
{
    struct sc_audit *a = sc_xcalloc(1, sizeof(*a));

    a->cap = keep;
    a->ring = keep ? sc_xcalloc(keep, sizeof(*a->ring)) : NULL;
    return a;
}

void
sc_audit_free(struct sc_audit *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->cap; i++)
        free(a->ring[i]);
    free(a->ring);
    free(a);
}

/* Keeps a copy of the len bytes of record at p in a's ring (nothing when a keeps none). */
static void
ring_push(struct sc_audit *a, const char *p, size_t len)
{
    if (!a || !a->cap)
        return;
    free(a->ring[a->head]);
    a->ring[a->head] = sc_xstrndup(p, len);
    a->head = (a->head + 1) % a->cap;
    if (a->len < a->cap)
        a->len++;
}

/*
 * The filter of a request as compact JSON text (owned): the body without
 * task_id ("{}" when empty), or a note that it was too long to keep.
 */
static char *
filter_text(const json_t *body)
{
    json_t *f = body ? json_deep_copy(body) : json_object();
    char *text;

    json_object_del(f, "task_id");
    text = json_dumps(f, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(f);
    if (!text || strlen(text) > AUDIT_FILTER_MAX) {
        free(text);
        text = sc_xstrdup("{\"omitted\":\"the filter is longer than 2048 bytes\"}");
    }
    return text;
}

void
sc_audit_record(struct sc_daemon *d, const char *principal, const char *verb, const json_t *body,
                int64_t count, bool dry_run)
{
    struct sc_buf *b = &d->scratch;
    const json_t *tid = body ? json_object_get(body, "task_id") : NULL;
    char *filter = json_is_string(tid) ? NULL : filter_text(body);
    char subj[256];
    struct sc_jw w;

    sc_buf_reset(b);
    sc_jw_init(&w, b);
    sc_jw_open(&w, NULL, '{');
    sc_jw_time(&w, "time", sc_now_wall_ms());
    sc_jw_str(&w, "principal", principal);
    sc_jw_str(&w, "verb", verb);
    if (filter) {
        sc_jw_key(&w, "filter");
        sc_jw_raw(&w, filter, strlen(filter));
    } else {
        sc_jw_strn(&w, "task_id", json_string_value(tid), json_string_length(tid));
    }
    sc_jw_int(&w, "count", count);
    sc_jw_bool(&w, "dry_run", dry_run);
    sc_jw_close(&w, '}');
    /* sc_log(), not a per-task line: the task-line cap (log.task_lines_per_s) never drops it. */
    sc_log(SC_LOG_INFO, "audit", "principal", principal, "verb", verb,
           filter ? "filter" : "task_id", filter ? filter : json_string_value(tid), "count",
           sc_log_int(count), "dry_run", dry_run ? "true" : "false", NULL);
    free(filter);
    if (!b->data)
        return;
    ring_push(d->audit, b->data, b->len);
    if (d->cfg->events_enabled) {
        snprintf(subj, sizeof(subj), "%s.events.audit", d->cfg->subjects_prefix);
        sc_publish(d, subj, NULL, b->data, b->len, NULL);
    }
}

void
sc_audit_list(const struct sc_audit *a, size_t limit, struct sc_buf *out)
{
    size_t n = a ? a->len : 0;

    if (limit < n)
        n = limit;
    sc_buf_append(out, "{\"records\":[", 12);
    for (size_t i = 0; i < n; i++) {
        const char *r = a->ring[(a->head + a->cap - 1 - i) % a->cap];
        if (i)
            sc_buf_appendc(out, ',');
        sc_buf_append(out, r, strlen(r));
    }
    sc_buf_append(out, "]}", 2);
}

const char *
sc_audit_nats_principal(const char *reply, char *buf, size_t size)
{
    static const char pre[] = "_INBOX_";
    const char *u, *dot;
    size_t n;

    snprintf(buf, size, "nats");
    if (!reply || strncmp(reply, pre, sizeof(pre) - 1) != 0)
        return buf;
    u = reply + sizeof(pre) - 1;
    dot = strchr(u, '.');
    n = dot ? (size_t)(dot - u) : 0;
    if (n == 0 || n > AUDIT_USER_MAX)
        return buf;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= ' ' || u[i] == '*' || u[i] == '>' || u[i] == '"' ||
            u[i] == '\\' || (unsigned char)u[i] >= 0x7f)
            return buf;
    snprintf(buf, size, "nats:%.*s", (int)n, u);
    return buf;
}
