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
    if (strcmp(kind, "refused") == 0 || strcmp(kind, "skipped") == 0 ||
        strcmp(kind, "invalid") == 0)
        return kind;
    return dlq_task_status_name(t->status);
}

void
sc_event(struct sc_daemon *d, const char *kind, const struct dlq_task *t, int32_t attempt,
         const char *error)
{
    struct sc_buf *b = &d->scratch;
    char subj[256], at[SC_RFC3339_LEN];
    struct sc_jw w;

    if (!d->cfg->events_enabled)
        return;
    sc_buf_reset(b);
    sc_format_rfc3339(sc_now_wall_ms(), at);
    sc_jw_init(&w, b);
    sc_jw_open(&w, NULL, '{');
    sc_jw_strn(&w, "task_id", t ? t->id : NULL, t ? t->id_len : 0);
    sc_jw_str(&w, "subject", t ? t->subject : NULL);
    sc_jw_str(&w, "category", t ? policy_category_name(t->category) : NULL);
    sc_jw_int(&w, "attempt", attempt);
    sc_jw_str(&w, "at", at);
    if (!error && t)
        error = t->error;
    sc_jw_str(&w, "error", error);
    if (t)
        sc_jw_str(&w, "status", event_status(kind, t));
    sc_jw_close(&w, '}');
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
