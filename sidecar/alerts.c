/* alerts.c - threshold alerts (queue utilization, exhausted tasks, retry success rate): events and webhooks. */
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

/* One webhook POST of one alert change to one URL, retried with backoff. */
struct delivery {
    struct sc_list link; /* in the owner's deliveries */
    struct sc_alerts *owner;
    const char *url;   /* borrowed from the configuration (lives longer) */
    char *body;        /* owned JSON */
    size_t len;
    int64_t tries;     /* posts started */
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
    struct sc_buf body;
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
    free(dl->body);
    free(dl);
}

/* Marks dl finished; on_reap() frees it after the current callback returns. */
static void
delivery_done(struct delivery *dl)
{
    dl->dead = true;
    event_active(dl->owner->reap_ev, EV_TIMEOUT, 0);
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
        sc_log(SC_LOG_WARN, "alert webhook failed; giving up", "url", dl->url, "status",
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
    sc_log(SC_LOG_DEBUG, "alert webhook failed; retrying", "url", dl->url, "status",
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
        sc_log(SC_LOG_DEBUG, "alert webhook delivered", "url", dl->url, "status",
               sc_log_int(status), NULL);
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
    s = persist_http_request(al->http, "POST", dl->url, "application/json", dl->body, dl->len,
                             (long)al->d->cfg->alerts_webhook_timeout_ms, on_posted, dl);
    if (s)
        post_failed(dl, 0, sc_status_str(s));
}

/* Queues one POST of body to every webhook URL. */
static void
deliver(struct sc_alerts *al, const char *body, size_t len)
{
    const struct config *cfg = al->d->cfg;

    if (!al->http)
        return;
    for (size_t i = 0; i < cfg->alerts_webhook_count; i++) {
        struct delivery *dl;
        if (al->ndeliveries >= MAX_DELIVERIES) {
            al->posts_dropped++;
            sc_log(SC_LOG_WARN, "alert webhook dropped: too many pending posts", "url",
                   cfg->alerts_webhook_urls[i], NULL);
            continue;
        }
        dl = sc_xcalloc(1, sizeof(*dl));
        dl->owner = al;
        dl->url = cfg->alerts_webhook_urls[i];
        dl->body = sc_xmalloc(len);
        memcpy(dl->body, body, len);
        dl->len = len;
        dl->timer = evtimer_new(al->d->base, on_retry_timer, dl);
        if (!dl->timer) {
            free(dl->body);
            free(dl);
            al->posts_dropped++;
            continue;
        }
        sc_list_push_front(&al->deliveries, &dl->link);
        al->ndeliveries++;
        post(dl);
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
    deliver(al, b->data, b->len);
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
    al = sc_xcalloc(1, sizeof(*al));
    sc_list_init(&al->deliveries);
    al->d = d;
    sc_buf_init(&al->body, 64 * 1024);
    for (int i = 0; i < A_COUNT; i++)
        al->a[i].value = NAN;
    al->sample_every_ms = cfg->alerts_window_s * 1000 / SAMPLES_PER_WINDOW;
    if (al->sample_every_ms < cfg->alerts_check_interval_ms)
        al->sample_every_ms = cfg->alerts_check_interval_ms;
    sample(al, sc_now_mono_ms());
    if (cfg->alerts_webhook_count) {
        memset(&opts, 0, sizeof(opts));
        al->http = persist_http_new(d->base, &opts);
        if (!al->http) {
            snprintf(err, errlen, "alerts.webhook_urls: cannot create the HTTP client (libcurl)");
            sc_buf_destroy(&al->body);
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
}
