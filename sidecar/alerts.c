/* alerts.c - threshold alerts (queue utilization, exhausted tasks, retry success rate): events and webhooks (generic, Slack, PagerDuty, Opsgenie). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "breaker.h"
#include "daemon.h"
#include "list.h"
#include "persist.h"
#include "workers.h"

#define SAMPLES 130            /* ring of counter samples covering the success-rate window */
#define SAMPLES_PER_WINDOW 120 /* one sample every window/120 (or every check, if rarer) */
#define MAX_DELIVERIES 256     /* webhook posts waiting or in flight; more are dropped */
#define BACKOFF_CAP_MS 600000  /* longest wait between two posts of one delivery */

enum { A_UTILIZATION = 0, A_EXHAUSTED, A_SUCCESS_RATE, A_NO_WORKERS, A_CIRCUITS, A_COUNT };

/* What a webhook's body looks like (alerts.webhook_urls are generic; the others have their own keys). */
enum { F_GENERIC = 0, F_SLACK, F_PAGERDUTY, F_OPSGENIE, F_COUNT };

static const char *const format_names[F_COUNT] = {"generic", "slack", "pagerduty", "opsgenie"};

static const char *const alert_names[A_COUNT] = {"queue_utilization", "exhausted_tasks",
                                                 "retry_success_rate",
                                                 "retry_subjects_without_workers",
                                                 "retry_circuits_open"};

struct alert {
    bool firing;
    double value;      /* last measured; NaN when unknown */
    double threshold;
    int64_t changed_wall;
    uint64_t fired;    /* times it went firing */
};

/* Cumulative retry outcomes at one moment. */
struct sample {
    int64_t mono;
    uint64_t ok, bad;
};

/*
 * One webhook POST of one alert change to one URL, retried with backoff.
 * Changes of one alert to one URL go in order: a delivery queued while an
 * older one of the same alert and URL is still trying waits for it (so a
 * resolve never overtakes its trigger).
 */
struct delivery {
    struct sc_list link; /* in the owner's deliveries */
    struct sc_alerts *owner;
    int format;        /* F_* */
    int alert;         /* A_* */
    char *url;         /* owned */
    char *header;      /* owned extra header line ("Authorization: GenieKey ...") or NULL */
    char *body;        /* owned JSON; may hold a secret (routing key): never logged */
    size_t len;
    int64_t tries;     /* posts started */
    bool waiting;      /* behind an older delivery of the same alert and URL */
    bool dead;         /* finished: freed by on_reap(), never inside its own callbacks */
    struct event *timer;
};

struct sc_alerts {
    struct sc_daemon *d;
    struct event *check_ev;
    struct alert a[A_COUNT];
    struct sample ring[SAMPLES];
    size_t head, len;  /* ring: oldest at head */
    int64_t sample_every_ms;
    struct persist_http *http; /* NULL without webhook URLs */
    struct sc_list deliveries; /* struct delivery, newest first */
    size_t ndeliveries;
    struct event *reap_ev;     /* frees finished deliveries on the next loop turn */
    uint64_t posts_ok, posts_retried, posts_failed, posts_dropped;
    uint64_t f_ok[F_COUNT], f_retried[F_COUNT], f_failed[F_COUNT], f_dropped[F_COUNT];
    struct sc_buf body;
    struct sc_buf hook; /* a format's body */
};

/* ---- webhooks -------------------------------------------------------------------------------- */

static void post(struct delivery *dl);

static void
delivery_free(struct delivery *dl)
{
    struct sc_alerts *al = dl->owner;

    sc_list_remove(&dl->link);
    al->ndeliveries--;
    if (dl->timer)
        event_free(dl->timer);
    free(dl->url);
    free(dl->header);
    free(dl->body);
    free(dl);
}

/* The oldest live delivery of dl's alert to dl's URL other than dl, or NULL. */
static struct delivery *
oldest_same(struct delivery *dl)
{
    struct sc_list *it;
    struct delivery *found = NULL;

    SC_LIST_FOREACH(it, &dl->owner->deliveries) {
        struct delivery *o = SC_LIST_ENTRY(it, struct delivery, link);
        if (o != dl && !o->dead && o->alert == dl->alert && o->format == dl->format &&
            strcmp(o->url, dl->url) == 0)
            found = o; /* newest first: the last one seen is the oldest */
    }
    return found;
}

/* Marks dl finished, starts the next change of its alert to its URL; on_reap() frees dl later. */
static void
delivery_done(struct delivery *dl)
{
    struct delivery *next;

    dl->dead = true;
    event_active(dl->owner->reap_ev, EV_TIMEOUT, 0);
    next = oldest_same(dl);
    if (next && next->waiting) {
        struct timeval now = {0, 0};
        next->waiting = false;
        evtimer_add(next->timer, &now); /* posted from the loop, not inside this callback */
    }
}

static void
on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct sc_alerts *al = arg;
    struct sc_list *it, *tmp;

    (void)fd;
    (void)what;
    SC_LIST_FOREACH_SAFE(it, tmp, &al->deliveries) {
        struct delivery *dl = SC_LIST_ENTRY(it, struct delivery, link);
        if (dl->dead)
            delivery_free(dl);
    }
}

static void
on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    post(arg);
}

/* A post failed (status 0: no response): retry after backoff when allowed, else give up. */
static void
post_failed(struct delivery *dl, long status, const char *error)
{
    struct sc_alerts *al = dl->owner;
    struct sc_daemon *d = al->d;
    bool retryable = status == 0 || status == 408 || status == 429 || status >= 500;
    int64_t wait = d->cfg->alerts_webhook_backoff_ms;
    struct timeval tv;

    if (!retryable || dl->tries > d->cfg->alerts_webhook_retries) {
        al->posts_failed++;
        al->f_failed[dl->format]++;
        sc_log(SC_LOG_WARN, "alert webhook failed; giving up", "format", format_names[dl->format],
               "url", dl->format == F_SLACK ? "(alerts.slack.url)" : dl->url, "status",
               sc_log_int(status), "error", error ? error : "", "tries", sc_log_int(dl->tries),
               NULL);
        delivery_done(dl);
        return;
    }
    for (int64_t i = 1; i < dl->tries && wait < BACKOFF_CAP_MS; i++)
        wait *= 2;
    if (wait > BACKOFF_CAP_MS)
        wait = BACKOFF_CAP_MS;
    al->posts_retried++;
    al->f_retried[dl->format]++;
    sc_log(SC_LOG_DEBUG, "alert webhook failed; retrying", "format", format_names[dl->format],
           "url", dl->format == F_SLACK ? "(alerts.slack.url)" : dl->url, "status",
           sc_log_int(status), "error", error ? error : "", "retry_in_ms", sc_log_int(wait), NULL);
    tv.tv_sec = wait / 1000;
    tv.tv_usec = (wait % 1000) * 1000;
    evtimer_add(dl->timer, &tv);
}

static void
on_posted(void *ctx, long status, const char *body, size_t len, const char *error)
{
    struct delivery *dl = ctx;

    (void)body;
    (void)len;
    if (status >= 200 && status < 300) {
        dl->owner->posts_ok++;
        dl->owner->f_ok[dl->format]++;
        sc_log(SC_LOG_DEBUG, "alert webhook delivered", "format", format_names[dl->format],
               "status", sc_log_int(status), NULL);
        delivery_done(dl);
        return;
    }
    post_failed(dl, status, error ? error : "unexpected HTTP status");
}

static void
post(struct delivery *dl)
{
    struct sc_alerts *al = dl->owner;
    sc_status s;

    dl->tries++;
    s = persist_http_request_hdr(al->http, "POST", dl->url, "application/json", dl->header,
                                 dl->body, dl->len, (long)al->d->cfg->alerts_webhook_timeout_ms,
                                 on_posted, dl);
    if (s)
        post_failed(dl, 0, sc_status_str(s));
}

/*
 * Queues one POST of body (len bytes, copied) to url (copied) with header
 * (copied, may be NULL) for alert i in format f; past MAX_DELIVERIES it is
 * dropped and counted.
 */
static void
enqueue(struct sc_alerts *al, int f, int i, const char *url, const char *header,
        const char *body, size_t len)
{
    struct delivery *dl;

    if (al->ndeliveries >= MAX_DELIVERIES) {
        al->posts_dropped++;
        al->f_dropped[f]++;
        sc_log(SC_LOG_WARN, "alert webhook dropped: too many pending posts", "format",
               format_names[f], NULL);
        return;
    }
    dl = sc_xcalloc(1, sizeof(*dl));
    dl->owner = al;
    dl->format = f;
    dl->alert = i;
    dl->url = sc_xstrndup(url, strlen(url));
    dl->header = header ? sc_xstrndup(header, strlen(header)) : NULL;
    dl->body = sc_xmalloc(len);
    memcpy(dl->body, body, len);
    dl->len = len;
    dl->timer = evtimer_new(al->d->base, on_retry_timer, dl);
    if (!dl->timer) {
        free(dl->url);
        free(dl->header);
        free(dl->body);
        free(dl);
        al->posts_dropped++;
        al->f_dropped[f]++;
        return;
    }
    sc_list_push_front(&al->deliveries, &dl->link);
    al->ndeliveries++;
    dl->waiting = oldest_same(dl) != NULL;
    if (!dl->waiting)
        post(dl);
}

/* ---- incident formats ------------------------------------------------------------------------ */

/* PagerDuty severity (critical, error, warning, info) of alert i. */
static const char *
severity(int i)
{
    switch (i) {
    case A_EXHAUSTED:
    case A_SUCCESS_RATE: return "error";
    case A_NO_WORKERS: return "critical";
    default: return "warning";
    }
}

/* Opsgenie priority (P1 highest .. P5) of alert i: the same order as severity(). */
static const char *
priority(int i)
{
    const char *sev = severity(i);
    return strcmp(sev, "critical") == 0 ? "P1" : strcmp(sev, "error") == 0 ? "P2" : "P3";
}

/*
 * The dedup key of alert i: the same for every change of the alert, so a
 * firing alert is one PagerDuty incident / one open Opsgenie alert, and its
 * resolve closes that one: "dlq-sidecar.<prefix>.<alert>".
 */
static void
dedup_key(const struct sc_alerts *al, int i, char *out, size_t outlen)
{
    snprintf(out, outlen, "dlq-sidecar.%s.%s", al->d->cfg->subjects_prefix, alert_names[i]);
}

/* One line saying what changed: "dlq-sidecar dlq: queue_utilization firing (value 5, threshold 4)". */
static void
summary(const struct sc_alerts *al, int i, char *out, size_t outlen)
{
    const struct alert *a = &al->a[i];
    char val[32], thr[32];

    if (isnan(a->value))
        snprintf(val, sizeof(val), "unknown");
    else
        snprintf(val, sizeof(val), "%.4g", a->value);
    snprintf(thr, sizeof(thr), "%.4g", a->threshold);
    snprintf(out, outlen, "dlq-sidecar %s: %s %s (value %s, threshold %s)",
             al->d->cfg->subjects_prefix, alert_names[i], a->firing ? "firing" : "resolved", val,
             thr);
}

/* Appends "," "key":"value" (both quoted) to b. */
static void
json_kv(struct sc_buf *b, const char *key, const char *value)
{
    sc_buf_appendc(b, ',');
    sc_json_quote(b, key, strlen(key));
    sc_buf_appendc(b, ':');
    sc_json_quote(b, value, strlen(value));
}

/* Slack incoming webhook: "text" (also the notification fallback) and the same in blocks. */
static void
slack_body(struct sc_alerts *al, int i, const char *sum, struct sc_buf *b)
{
    const struct alert *a = &al->a[i];
    char at[SC_RFC3339_LEN], ctx[256];

    sc_format_rfc3339(a->changed_wall, at);
    snprintf(ctx, sizeof(ctx), "alert %s, since %s", alert_names[i], at);
    sc_buf_append(b, "{\"text\":", 8);
    sc_json_quote(b, sum, strlen(sum));
    sc_buf_append(b, ",\"blocks\":[{\"type\":\"section\",\"text\":{\"type\":\"plain_text\",\"text\":",
                  64);
    sc_json_quote(b, sum, strlen(sum));
    sc_buf_append(b, "}},{\"type\":\"context\",\"elements\":[{\"type\":\"plain_text\",\"text\":", 61);
    sc_json_quote(b, ctx, strlen(ctx));
    sc_buf_append(b, "}]}]}", 5);
}

/*
 * PagerDuty Events API v2: a firing alert triggers, a resolved one resolves,
 * both with the alert's dedup_key; a trigger carries the payload (summary,
 * source, severity, timestamp, component, group, class, custom_details:
 * the generic body).
 */
static void
pagerduty_body(struct sc_alerts *al, int i, const char *sum, const char *generic, size_t glen,
               struct sc_buf *b)
{
    const struct config *cfg = al->d->cfg;
    const struct alert *a = &al->a[i];
    char key[512], at[SC_RFC3339_LEN];

    dedup_key(al, i, key, sizeof(key));
    sc_buf_append(b, "{\"routing_key\":", 15);
    sc_json_quote(b, cfg->alerts_pagerduty_routing_key, strlen(cfg->alerts_pagerduty_routing_key));
    json_kv(b, "event_action", a->firing ? "trigger" : "resolve");
    json_kv(b, "dedup_key", key);
    if (a->firing) {
        sc_format_rfc3339(a->changed_wall, at);
        sc_buf_append(b, ",\"payload\":{\"summary\":", 22);
        sc_json_quote(b, sum, strlen(sum));
        json_kv(b, "source", cfg->nats_name);
        json_kv(b, "severity", severity(i));
        json_kv(b, "timestamp", at);
        json_kv(b, "component", "dlq-sidecar");
        json_kv(b, "group", cfg->subjects_prefix);
        json_kv(b, "class", alert_names[i]);
        sc_buf_append(b, ",\"custom_details\":", 18);
        sc_buf_append(b, generic, glen);
        sc_buf_appendc(b, '}');
    }
    sc_buf_appendc(b, '}');
}

/* Appends s to out percent-encoded for a URL path segment (RFC 3986 unreserved kept). */
static void
path_escape(struct sc_buf *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~')
            sc_buf_appendc(out, (char)c);
        else
            sc_buf_appendf(out, "%%%02X", c);
    }
}

/*
 * Opsgenie Alert API: a firing alert is created (POST <url>/v2/alerts with
 * message, alias = the dedup key, description, priority, source, entity,
 * tags, details); a resolved one closed by its alias (POST
 * <url>/v2/alerts/<alias>/close?identifierType=alias). Writes the request's
 * URL into u and its body into b.
 */
static void
opsgenie_request(struct sc_alerts *al, int i, const char *sum, struct sc_buf *u, struct sc_buf *b)
{
    const struct config *cfg = al->d->cfg;
    const struct alert *a = &al->a[i];
    const char *base = cfg->alerts_opsgenie_url;
    size_t blen = strlen(base);
    char key[512], msg[131], val[32], thr[32];

    while (blen && base[blen - 1] == '/')
        blen--;
    dedup_key(al, i, key, sizeof(key));
    sc_buf_append(u, base, blen);
    if (!a->firing) {
        sc_buf_append(u, "/v2/alerts/", 11);
        path_escape(u, key);
        sc_buf_append(u, "/close?identifierType=alias", 28); /* with the NUL */
        sc_buf_append(b, "{\"source\":\"dlq-sidecar\"", 23);
        json_kv(b, "note", sum);
        sc_buf_appendc(b, '}');
        return;
    }
    sc_buf_append(u, "/v2/alerts", 11); /* with the NUL */
    /* message: at most 130 bytes (so characters), cut on a UTF-8 boundary */
    {
        size_t n = strlen(sum);
        if (n > sizeof(msg) - 1) {
            n = sizeof(msg) - 1;
            while (n && ((unsigned char)sum[n] & 0xC0) == 0x80)
                n--;
        }
        memcpy(msg, sum, n);
        msg[n] = '\0';
    }
    snprintf(val, sizeof(val), "%.4g", a->value);
    snprintf(thr, sizeof(thr), "%.4g", a->threshold);
    sc_buf_append(b, "{\"message\":", 11);
    sc_json_quote(b, msg, strlen(msg));
    json_kv(b, "alias", key);
    json_kv(b, "description", sum);
    json_kv(b, "priority", priority(i));
    json_kv(b, "source", cfg->nats_name);
    json_kv(b, "entity", cfg->subjects_prefix);
    sc_buf_append(b, ",\"tags\":[\"dlq-sidecar\",", 23);
    sc_json_quote(b, alert_names[i], strlen(alert_names[i]));
    sc_buf_append(b, "],\"details\":{\"alert\":", 21);
    sc_json_quote(b, alert_names[i], strlen(alert_names[i]));
    json_kv(b, "value", val);
    json_kv(b, "threshold", thr);
    json_kv(b, "prefix", cfg->subjects_prefix);
    sc_buf_append(b, "}}", 2);
}

/* Queues alert i's change to every configured webhook; generic is the generic body. */
static void
deliver(struct sc_alerts *al, int i, const char *generic, size_t glen)
{
    const struct config *cfg = al->d->cfg;
    struct sc_buf *b = &al->hook, url;
    char sum[512], *auth;

    if (!al->http)
        return;
    for (size_t k = 0; k < cfg->alerts_webhook_count; k++)
        enqueue(al, F_GENERIC, i, cfg->alerts_webhook_urls[k], NULL, generic, glen);
    summary(al, i, sum, sizeof(sum));
    if (cfg->alerts_slack_url[0]) {
        sc_buf_reset(b);
        slack_body(al, i, sum, b);
        if (b->data)
            enqueue(al, F_SLACK, i, cfg->alerts_slack_url, NULL, b->data, b->len);
    }
    if (cfg->alerts_pagerduty_routing_key[0]) {
        sc_buf_reset(b);
        pagerduty_body(al, i, sum, generic, glen, b);
        if (b->data)
            enqueue(al, F_PAGERDUTY, i, cfg->alerts_pagerduty_url, NULL, b->data, b->len);
    }
    if (cfg->alerts_opsgenie_api_key[0]) {
        sc_buf_init(&url, 4096);
        sc_buf_reset(b);
        opsgenie_request(al, i, sum, &url, b);
        size_t alen = strlen(cfg->alerts_opsgenie_api_key) + 32;
        auth = sc_xmalloc(alen);
        snprintf(auth, alen, "Authorization: GenieKey %s", cfg->alerts_opsgenie_api_key);
        if (b->data && url.data)
            enqueue(al, F_OPSGENIE, i, url.data, auth, b->data, b->len);
        sc_buf_destroy(&url);
        explicit_bzero(auth, alen);
        free(auth);
    }
}

/* ---- the check ------------------------------------------------------------------------------- */

static void
json_number(struct sc_buf *b, double v)
{
    if (isnan(v) || isinf(v))
        sc_buf_append(b, "null", 4);
    else if (v > -1e15 && v < 1e15 && v == (double)(long long)v)
        sc_buf_appendf(b, "%.0f", v);
    else
        sc_buf_appendf(b, "%.4g", v);
}

/*
 * Publishes <prefix>.events.alert and posts to the webhooks for a change of
 * alert i; extra is the success rate's window_retries, or the subjects past
 * the threshold of retry_subjects_without_workers.
 */
static void
announce(struct sc_alerts *al, int i, int64_t extra)
{
    struct sc_daemon *d = al->d;
    struct alert *a = &al->a[i];
    struct sc_buf *b = &al->body;
    char at[SC_RFC3339_LEN], subj[256], val[32], thr[32];
    const char *state = a->firing ? "firing" : "resolved";

    sc_buf_reset(b);
    sc_format_rfc3339(a->changed_wall, at);
    sc_buf_append(b, "{\"name\":", 8);
    sc_json_quote(b, alert_names[i], strlen(alert_names[i]));
    sc_buf_appendf(b, ",\"state\":\"%s\",\"value\":", state);
    json_number(b, a->value);
    sc_buf_append(b, ",\"threshold\":", 13);
    json_number(b, a->threshold);
    sc_buf_appendf(b, ",\"at\":\"%s\",\"prefix\":", at);
    sc_json_quote(b, d->cfg->subjects_prefix, strlen(d->cfg->subjects_prefix));
    if (i == A_SUCCESS_RATE)
        sc_buf_appendf(b, ",\"window_s\":%lld,\"window_retries\":%lld",
                       (long long)d->cfg->alerts_window_s, (long long)extra);
    if (i == A_NO_WORKERS) /* value: the longest time without workers, s; which subjects: stats */
        sc_buf_appendf(b, ",\"subjects\":%lld", (long long)extra);
    sc_buf_appendc(b, '}');
    if (!b->data)
        return;

    snprintf(val, sizeof(val), "%.4g", a->value);
    snprintf(thr, sizeof(thr), "%.4g", a->threshold);
    sc_log(a->firing ? SC_LOG_WARN : SC_LOG_INFO, a->firing ? "alert firing" : "alert resolved",
           "alert", alert_names[i], "value", val, "threshold", thr, NULL);
    snprintf(subj, sizeof(subj), "%s.events.alert", d->cfg->subjects_prefix);
    sc_publish(d, subj, NULL, b->data, b->len, NULL);
    deliver(al, i, b->data, b->len);
}

/* Sets alert i from a fresh measurement; announces a change. */
static void
judge(struct sc_alerts *al, int i, double value, double threshold, bool crossed, int64_t extra)
{
    struct alert *a = &al->a[i];

    a->value = value;
    a->threshold = threshold;
    if (crossed == a->firing)
        return;
    a->firing = crossed;
    a->changed_wall = sc_now_wall_ms();
    if (crossed)
        a->fired++;
    announce(al, i, extra);
}

/* Records a sample of the retry outcomes when one is due. */
static void
sample(struct sc_alerts *al, int64_t now)
{
    struct sc_daemon *d = al->d;
    struct sample *last = al->len ? &al->ring[(al->head + al->len - 1) % SAMPLES] : NULL;
    struct sample *s;

    if (last && now - last->mono < al->sample_every_ms)
        return;
    if (al->len == SAMPLES) {
        al->head = (al->head + 1) % SAMPLES;
        al->len--;
    }
    s = &al->ring[(al->head + al->len) % SAMPLES];
    s->mono = now;
    s->ok = d->m.c.retry_success;
    s->bad = d->m.c.retry_failed;
    al->len++;
}

/* The newest sample at least window old, else the oldest one (the window reaches back to start). */
static const struct sample *
window_base(const struct sc_alerts *al, int64_t now, int64_t window_ms)
{
    const struct sample *base = &al->ring[al->head];

    for (size_t i = 0; i < al->len; i++) {
        const struct sample *s = &al->ring[(al->head + i) % SAMPLES];
        if (now - s->mono < window_ms)
            break;
        base = s;
    }
    return base;
}

static void
check(struct sc_alerts *al)
{
    struct sc_daemon *d = al->d;
    const struct config *cfg = d->cfg;
    int64_t now = sc_now_mono_ms();
    size_t active = dlq_queue_active(&d->m.q);
    uint64_t exhausted = d->m.q.counts[DLQ_TASK_EXHAUSTED], ok, bad, n;
    double util = cfg->max_size ? 100.0 * (double)active / (double)cfg->max_size : 0.0;
    const struct sample *base;
    double rate;

    judge(al, A_UTILIZATION, util, cfg->alerts_utilization_percent,
          util > cfg->alerts_utilization_percent, 0);
    judge(al, A_EXHAUSTED, (double)exhausted, (double)cfg->alerts_exhausted_count,
          exhausted > (uint64_t)cfg->alerts_exhausted_count, 0);

    sample(al, now);
    base = window_base(al, now, cfg->alerts_window_s * 1000);
    ok = d->m.c.retry_success - base->ok;
    bad = d->m.c.retry_failed - base->bad;
    n = ok + bad;
    rate = n ? (double)ok / (double)n : NAN;
    /* Too few outcomes in the window say nothing: the alert resolves (or stays quiet). */
    judge(al, A_SUCCESS_RATE, rate, cfg->alerts_success_rate,
          n >= (uint64_t)cfg->alerts_min_retries && rate < cfg->alerts_success_rate, (int64_t)n);

    /* Subjects whose retries have found no worker for longer than alerts.no_workers_after_s. */
    {
        int64_t oldest;
        size_t over = sc_workers_overdue(d, now, cfg->alerts_no_workers_after_s * 1000, &oldest);
        judge(al, A_NO_WORKERS, (double)oldest / 1000.0, (double)cfg->alerts_no_workers_after_s,
              over > 0, (int64_t)over);
    }
    /* Retry subjects whose circuit is open or half-open (breaker.c); which ones: stats "circuits". */
    {
        size_t open = sc_breaker_not_closed(d);
        judge(al, A_CIRCUITS, (double)open, 0, open > 0, 0);
    }
}

static void
on_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    check(arg);
}

/* ---- lifetime and metrics -------------------------------------------------------------------- */

sc_status
sc_alerts_start(struct sc_daemon *d, char *err, size_t errlen)
{
    const struct config *cfg = d->cfg;
    struct sc_alerts *al;
    struct timeval tv;
    struct persist_http_opts opts;

    if (!cfg->alerts_enabled)
        return SC_OK;
    if (strcmp(cfg->alerts_slack_url, "********") == 0) {
        snprintf(err, errlen, "alerts.slack.url: '********' is the mask --print-config shows, not "
                              "a URL (http:// or https://)");
        return SC_EINVAL;
    }
    al = sc_xcalloc(1, sizeof(*al));
    sc_list_init(&al->deliveries);
    al->d = d;
    sc_buf_init(&al->body, 64 * 1024);
    sc_buf_init(&al->hook, 128 * 1024);
    for (int i = 0; i < A_COUNT; i++)
        al->a[i].value = NAN;
    al->sample_every_ms = cfg->alerts_window_s * 1000 / SAMPLES_PER_WINDOW;
    if (al->sample_every_ms < cfg->alerts_check_interval_ms)
        al->sample_every_ms = cfg->alerts_check_interval_ms;
    sample(al, sc_now_mono_ms());
    if (cfg->alerts_webhook_count || cfg->alerts_slack_url[0] ||
        cfg->alerts_pagerduty_routing_key[0] || cfg->alerts_opsgenie_api_key[0]) {
        memset(&opts, 0, sizeof(opts));
        al->http = persist_http_new(d->base, &opts);
        if (!al->http) {
            snprintf(err, errlen, "alerts webhooks: cannot create the HTTP client (libcurl)");
            sc_buf_destroy(&al->body);
            sc_buf_destroy(&al->hook);
            free(al);
            return SC_EIO;
        }
    }
    al->reap_ev = event_new(d->base, -1, 0, on_reap, al);
    al->check_ev = event_new(d->base, -1, EV_PERSIST, on_check, al);
    d->alerts = al;
    if (!al->reap_ev || !al->check_ev) {
        snprintf(err, errlen, "alerts: libevent cannot create the check timer");
        sc_alerts_stop(d);
        return SC_EIO;
    }
    tv.tv_sec = cfg->alerts_check_interval_ms / 1000;
    tv.tv_usec = (cfg->alerts_check_interval_ms % 1000) * 1000;
    event_add(al->check_ev, &tv);
    return SC_OK;
}

void
sc_alerts_stop(struct sc_daemon *d)
{
    struct sc_alerts *al = d->alerts;
    struct sc_list *it;
    int64_t pending = 0;

    if (!al)
        return;
    SC_LIST_FOREACH(it, &al->deliveries) {
        pending += !SC_LIST_ENTRY(it, struct delivery, link)->dead;
    }
    if (pending)
        sc_log(SC_LOG_WARN, "alert webhooks not delivered at exit", "pending",
               sc_log_int(pending), NULL);
    /* Cancels outstanding requests without calling back: the deliveries are ours to free. */
    persist_http_free(al->http);
    while ((it = sc_list_first(&al->deliveries)) != NULL)
        delivery_free(SC_LIST_ENTRY(it, struct delivery, link));
    if (al->check_ev)
        event_free(al->check_ev);
    if (al->reap_ev)
        event_free(al->reap_ev);
    sc_buf_destroy(&al->body);
    sc_buf_destroy(&al->hook);
    free(al);
    d->alerts = NULL;
}

void
sc_alerts_render(struct sc_daemon *d, struct sc_buf *b)
{
    struct sc_alerts *al = d->alerts;

    sc_buf_appendf(b, "# HELP dlq_alert_firing 1 while the alert fires (alerts.*).\n"
                      "# TYPE dlq_alert_firing gauge\n");
    for (int i = 0; i < A_COUNT; i++)
        sc_buf_appendf(b, "dlq_alert_firing{alert=\"%s\"} %d\n", alert_names[i],
                       al && al->a[i].firing);
    sc_buf_appendf(b, "# HELP dlq_alert_webhook_posts_total Alert webhook posts by result.\n"
                      "# TYPE dlq_alert_webhook_posts_total counter\n");
    sc_buf_appendf(b, "dlq_alert_webhook_posts_total{result=\"delivered\"} %llu\n",
                   (unsigned long long)(al ? al->posts_ok : 0));
    sc_buf_appendf(b, "dlq_alert_webhook_posts_total{result=\"retried\"} %llu\n",
                   (unsigned long long)(al ? al->posts_retried : 0));
    sc_buf_appendf(b, "dlq_alert_webhook_posts_total{result=\"failed\"} %llu\n",
                   (unsigned long long)(al ? al->posts_failed : 0));
    sc_buf_appendf(b, "dlq_alert_webhook_posts_total{result=\"dropped\"} %llu\n",
                   (unsigned long long)(al ? al->posts_dropped : 0));
    sc_buf_appendf(b, "# HELP dlq_alert_hook_posts_total Alert webhook posts by format "
                      "(generic, slack, pagerduty, opsgenie) and result.\n"
                      "# TYPE dlq_alert_hook_posts_total counter\n");
    for (int f = 0; f < F_COUNT; f++) {
        static const char *const results[] = {"delivered", "retried", "failed", "dropped"};
        const uint64_t *counts[] = {al ? al->f_ok : NULL, al ? al->f_retried : NULL,
                                    al ? al->f_failed : NULL, al ? al->f_dropped : NULL};
        for (int r = 0; r < 4; r++)
            sc_buf_appendf(b, "dlq_alert_hook_posts_total{format=\"%s\",result=\"%s\"} %llu\n",
                           format_names[f], results[r],
                           (unsigned long long)(counts[r] ? counts[r][f] : 0));
    }
}

void
sc_alerts_json(struct sc_daemon *d, struct sc_jw *w)
{
    struct sc_alerts *al = d->alerts;

    sc_jw_open(w, "alerts_firing", '[');
    for (int i = 0; al && i < A_COUNT; i++)
        if (al->a[i].firing)
            sc_jw_str(w, NULL, alert_names[i]);
    sc_jw_close(w, ']');
}
