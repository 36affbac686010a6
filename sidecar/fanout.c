/* fanout.c - cluster mode's admin API: a request on <prefix>.admin.<verb> (a queue group: one member takes it) is asked of every member on <prefix>.cluster.admin.<verb>, and their answers are merged into one (DESIGN section 18). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "admin.h"
#include "audit.h"
#include "cluster.h"
#include "daemon.h"
#include "fanout.h"
#include "log.h"
#include "workers.h"
#include "breaker.h"

#define FANOUT_WAIT_MS 3000 /* the longest wait for the members' answers */
#define FANOUT_MAX 64       /* requests gathered at once; one more is answered 503 */
#define LIST_DEFAULT 50     /* admin.c's default page */
#define GROUPS_DEFAULT 50   /* admin.c's default number of groups */
#define RATE_MAX 1e7        /* admin.c's largest redrive rate, tasks/s */
#define PRINCIPAL_HEADER "Dlq-Principal" /* who asked, on a member's part of a request */

/*
 * Who holds a request (docs/cluster.md, "Admin"): the member that took it
 * from the queue group keeps the requester's reply subject in a slot from
 * the moment it asks the members until every member answered, every
 * partition is accounted for, or FANOUT_WAIT_MS passed; then it answers
 * once and frees the slot. A write reaches every member whatever happens
 * to the answers: one that answers too late still did it, and the reply
 * counts only the members that answered (members_answered).
 */
struct fo_slot {
    bool used;
    uint64_t id;
    uint64_t token;   /* random, in the answer subject: an answer sent there by anyone else finds no match */
    char verb[16];
    char principal[SC_AUDIT_PRINCIPAL_LEN]; /* who asks, for the one audit record of a mutating verb */
    char *reply;      /* the requester's reply subject (NULL for an in-process request) */
    sc_fanout_answer_fn fn; /* an in-process requester (sc_fanout_ask()), or NULL */
    void *ctx;        /* fn's context */
    json_t *body;     /* the request (NULL when empty) */
    json_t *answers;  /* the members' answers so far */
    size_t expected;  /* members in the last view of the cluster */
    struct event *ev; /* the deadline */
    struct sc_fanout *f;
};

struct sc_fanout {
    struct sc_daemon *d;
    char answer_prefix[128]; /* "<inbox>.adm" */
    uint64_t next_id;
    struct sc_buf buf;
    struct fo_slot slots[FANOUT_MAX];
};

/* The verbs asked of every member; the others (health, classify) are answered by the member that took them. */
static const char *const fan_verbs[] = {"stats", "list", "get", "retry", "archive", "clear",
                                        "pause", "resume", "groups", "edit", "audit"};

static bool
fans_out(const char *verb)
{
    for (size_t i = 0; i < SC_ARRAY_LEN(fan_verbs); i++)
        if (strcmp(verb, fan_verbs[i]) == 0)
            return true;
    return false;
}

static const char *
last_token(const char *subject)
{
    const char *v = strrchr(subject, '.');
    return v ? v + 1 : subject;
}

/* ---- merging ---------------------------------------------------------------------------------- */

/*
 * Merges array src into dst: two series of integers of one length (stats'
 * last_hour) are summed entry by entry; strings (alerts_firing) are taken
 * once each; anything else keeps dst.
 */
static void
merge_array(json_t *dst, json_t *src)
{
    size_t i, j, n = json_array_size(dst);
    json_t *v;

    if (n == json_array_size(src) && n > 0 && json_is_integer(json_array_get(dst, 0))) {
        for (i = 0; i < n; i++) {
            json_t *a = json_array_get(dst, i), *b = json_array_get(src, i);
            json_int_t sum;
            if (!json_is_integer(a) || !json_is_integer(b) ||
                __builtin_add_overflow(json_integer_value(a), json_integer_value(b), &sum))
                return;
            json_integer_set(a, sum);
        }
        return;
    }
    json_array_foreach(src, i, v) {
        bool seen = !json_is_string(v);
        for (j = 0; j < json_array_size(dst) && !seen; j++)
            seen = json_equal(json_array_get(dst, j), v);
        if (!seen)
            json_array_append(dst, v);
    }
}

/*
 * merge_sum() folds src into dst (both objects): integers and reals add up,
 * except uptime_s, eta_s and progress_percent (the largest) and
 * utilization_percent (worked out again by the caller), and saturate
 * instead of overflowing; booleans OR (one member paused says paused),
 * except ready (AND); strings keep the first, except next_due_at (the
 * earliest) and state/status (the first that is not "ok"); null gives way
 * to a value; objects merge the same way; arrays as merge_array() says. "cluster"
 * (one member's own) is left out.
 */
static void
merge_sum(json_t *dst, json_t *src)
{
    const char *k;
    json_t *v;

    json_object_foreach(src, k, v) {
        json_t *o = json_object_get(dst, k);
        bool largest = !strcmp(k, "uptime_s") || !strcmp(k, "eta_s") || !strcmp(k, "progress_percent");

        if (!strcmp(k, "cluster"))
            continue;
        if (!o || json_is_null(o)) {
            if (!json_is_null(v) || !o)
                json_object_set(dst, k, v);
        } else if (json_is_integer(o) && json_is_integer(v)) {
            json_int_t a = json_integer_value(o), b = json_integer_value(v), sum;
            if (__builtin_add_overflow(a, b, &sum)) /* a forged answer must not overflow */
                sum = b > 0 ? LLONG_MAX : LLONG_MIN; /* json_int_t is long long */
            json_object_set_new(dst, k, json_integer(largest ? (a > b ? a : b) : sum));
        } else if (json_is_number(o) && json_is_number(v)) {
            double a = json_number_value(o), b = json_number_value(v);
            json_object_set_new(dst, k, json_real(largest ? (a > b ? a : b) : a + b));
        } else if (json_is_boolean(o) && json_is_boolean(v)) {
            /* ready: every member must be; anything else (paused, active): one says so */
            if (!strcmp(k, "ready") ? json_is_false(v) : json_is_true(v))
                json_object_set(dst, k, v);
        } else if (json_is_object(o) && json_is_object(v)) {
            merge_sum(o, v);
        } else if (json_is_array(o) && json_is_array(v)) {
            merge_array(o, v);
        } else if (json_is_string(o) && json_is_string(v) && !strcmp(k, "next_due_at") &&
                   strcmp(json_string_value(v), json_string_value(o)) < 0) {
            json_object_set(dst, k, v); /* RFC 3339 UTC: text order is time order */
        } else if (json_is_string(o) && json_is_string(v) && (!strcmp(k, "state") || !strcmp(k, "status")) &&
                   !strcmp(json_string_value(o), "ok") && strcmp(json_string_value(v), "ok") != 0) {
            json_object_set(dst, k, v); /* a degraded member is not hidden behind an ok one */
        }
    }
}

static int
str_cmp(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/*
 * merge_workers() sets stats' "retry_subjects_without_workers" of reply to
 * the union of the members' lists (sorted, at most SC_WORKERS_LISTED) and
 * its count to the largest of the union's size and each member's count
 * (lists past the cap are cut, so the exact union is not known beyond it).
 */
static void
merge_workers(json_t *reply, json_t *oks)
{
    const char *names[SC_WORKERS_LISTED * 4];
    size_t n = 0, i, j, k;
    json_int_t count = 0;
    json_t *a, *v, *out;

    json_array_foreach(oks, i, a) {
        json_t *list = json_object_get(a, "retry_subjects_without_workers");
        json_int_t c = json_integer_value(json_object_get(a, "retry_subjects_without_workers_count"));
        if (c > count)
            count = c;
        json_array_foreach(list, j, v)
            if (json_is_string(v) && n < sizeof(names) / sizeof(names[0]))
                names[n++] = json_string_value(v);
    }
    if (!json_object_get(reply, "retry_subjects_without_workers"))
        return;
    qsort(names, n, sizeof(names[0]), str_cmp);
    out = json_array();
    for (i = 0, k = 0; i < n; i++) {
        if (i && !strcmp(names[i], names[i - 1]))
            continue;
        if (k++ < SC_WORKERS_LISTED)
            json_array_append_new(out, json_string(names[i]));
    }
    json_object_set_new(reply, "retry_subjects_without_workers", out);
    json_object_set_new(reply, "retry_subjects_without_workers_count",
                        json_integer((json_int_t)k > count ? (json_int_t)k : count));
}

static int
circuit_rank(const json_t *c)
{
    const char *s = json_string_value(json_object_get(c, "state"));
    return !s ? 0 : !strcmp(s, "open") ? 3 : !strcmp(s, "half-open") ? 2 : 1;
}

static int
circuit_cmp(const void *x, const void *y)
{
    const char *a = json_string_value(json_object_get(*(json_t *const *)x, "subject"));
    const char *b = json_string_value(json_object_get(*(json_t *const *)y, "subject"));
    int c = strcmp(a, b);

    return c ? c : circuit_rank(*(json_t *const *)y) - circuit_rank(*(json_t *const *)x);
}

/*
 * merge_breaker() sets stats' "circuits" of reply to the union of the
 * members' lists (each member's breaker is its own: a subject listed by two
 * keeps its most severe state, open before half-open before closed; sorted,
 * at most SC_BREAKER_LISTED); circuits_open and circuits_opened_total stay
 * the members' sums. In "retry_effectiveness" the counts add up (done by
 * merge_sum()); success_rate is worked out again from them and the
 * recovery quantiles are the largest member's (a bound, not a merge).
 */
static void
merge_breaker(json_t *reply, json_t *oks)
{
    json_t *all[SC_BREAKER_LISTED * 4], *a, *v, *out;
    size_t n = 0, i, j, k;

    json_array_foreach(oks, i, a)
        json_array_foreach(json_object_get(a, "circuits"), j, v)
            if (json_is_string(json_object_get(v, "subject")) && n < SC_ARRAY_LEN(all))
                all[n++] = v;
    if (json_object_get(reply, "circuits")) {
        qsort(all, n, sizeof(all[0]), circuit_cmp);
        out = json_array();
        for (i = 0, k = 0; i < n && k < SC_BREAKER_LISTED; i++) {
            if (i && !strcmp(json_string_value(json_object_get(all[i], "subject")),
                             json_string_value(json_object_get(all[i - 1], "subject"))))
                continue;
            json_array_append(out, all[i]);
            k++;
        }
        json_object_set_new(reply, "circuits", out);
    }
    static const char *const groups[] = {"by_category", "by_subject"};
    json_t *eff = json_object_get(reply, "retry_effectiveness");
    for (size_t g = 0; eff && g < SC_ARRAY_LEN(groups); g++) {
        const char *key;
        json_t *o;
        json_object_foreach(json_object_get(eff, groups[g]), key, o) {
            json_int_t ok = json_integer_value(json_object_get(o, "succeeded"));
            json_int_t ex = json_integer_value(json_object_get(o, "exhausted"));
            json_object_set_new(o, "success_rate",
                                ok + ex > 0 ? json_real((double)ok / (double)(ok + ex)) : json_null());
            for (int q = 0; q < 2; q++) {
                const char *qk = q ? "recovery_p90_ms" : "recovery_p50_ms";
                json_t *best = json_null();
                json_array_foreach(oks, i, a) {
                    json_t *m = json_object_get(
                        json_object_get(json_object_get(json_object_get(a, "retry_effectiveness"), groups[g]), key), qk);
                    if (json_is_integer(m) && (!json_is_integer(best) || json_integer_value(m) > json_integer_value(best))) {
                        json_decref(best);
                        best = json_integer(json_integer_value(m));
                    }
                }
                json_object_set_new(o, qk, best);
            }
        }
    }
}

/* The partition of a task id (cluster.partitions). */
static uint32_t
part_of(const struct sc_fanout *f, const char *id, size_t len)
{
    return dlq_partition_of(id, len, (uint32_t)f->d->cfg->cluster_partitions);
}

/* Sorts a list page's tasks by (partition, task id): the order every member pages in. */
static const struct sc_fanout *sort_f; /* qsort has no context argument; loop thread only */

static int
task_cmp(const void *x, const void *y)
{
    json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
    json_t *ia = json_object_get(a, "task_id"), *ib = json_object_get(b, "task_id");
    const char *sa = json_string_value(ia), *sb = json_string_value(ib);
    size_t la = json_string_length(ia), lb = json_string_length(ib);

    return sc_admin_part_cmp(part_of(sort_f, sa ? sa : "", la), sa ? sa : "", la,
                             part_of(sort_f, sb ? sb : "", lb), sb ? sb : "", lb);
}

/*
 * merge_list() makes one page of the members' pages: each member sent its
 * first tasks after the cursor in (partition, id) order; the page is the
 * first limit of them all, and the next cursor is its last task's when any
 * member had more, or more came than fit.
 */
static json_t *
merge_list(struct sc_fanout *f, json_t *oks, const json_t *body)
{
    json_t *lim = body ? json_object_get(body, "limit") : NULL, *tasks, *out, *v;
    size_t n = 0, k, total = 0, limit = json_is_integer(lim) ? (size_t)json_integer_value(lim) : LIST_DEFAULT;
    bool more = false;
    json_t **all;

    json_array_foreach(oks, k, v) {
        n += json_array_size(json_object_get(v, "tasks"));
        total += (size_t)json_integer_value(json_object_get(v, "total"));
        more |= json_is_string(json_object_get(v, "next_cursor"));
    }
    all = sc_xcalloc(n + 1, sizeof(*all));
    n = 0;
    json_array_foreach(oks, k, v) {
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(v, "tasks"), i, t)
            if (json_is_string(json_object_get(t, "task_id")))
                all[n++] = t;
    }
    sort_f = f;
    qsort(all, n, sizeof(*all), task_cmp);
    more |= n > limit;
    tasks = json_array();
    for (size_t i = 0; i < n && i < limit; i++)
        json_array_append(tasks, all[i]);
    out = json_object();
    json_object_set_new(out, "tasks", tasks);
    if (more && json_array_size(tasks)) {
        json_t *id = json_object_get(json_array_get(tasks, json_array_size(tasks) - 1), "task_id");
        struct sc_buf *c = &f->d->scratch;
        sc_buf_reset(c);
        sc_admin_part_cursor(c, part_of(f, json_string_value(id), json_string_length(id)),
                             json_string_value(id), json_string_length(id));
        json_object_set_new(out, "next_cursor", json_stringn(c->data, c->len));
    } else {
        json_object_set_new(out, "next_cursor", json_null());
    }
    json_object_set_new(out, "total", json_integer((json_int_t)total));
    free(all);
    return out;
}

/* Largest count first, then the latest last_seen (RFC 3339 UTC: text order is time order), then the id. */
static int
group_cmp(const void *x, const void *y)
{
    json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
    json_int_t ca = json_integer_value(json_object_get(a, "count"));
    json_int_t cb = json_integer_value(json_object_get(b, "count"));
    const char *la = json_string_value(json_object_get(a, "last_seen"));
    const char *lb = json_string_value(json_object_get(b, "last_seen"));
    const char *ga = json_string_value(json_object_get(a, "group"));
    const char *gb = json_string_value(json_object_get(b, "group"));
    int c;

    if (ca != cb)
        return ca > cb ? -1 : 1;
    if ((c = strcmp(lb ? lb : "", la ? la : "")) != 0)
        return c;
    return strcmp(ga ? ga : "", gb ? gb : "");
}

/*
 * merge_groups() adds up the members' groups (each member answered up to
 * 1000 of its own, admin.c's GROUPS_MAX): counts add, first_seen is the
 * earliest, last_seen the latest (whose member's example error is kept);
 * then the largest limit of them, largest count first. A group that no
 * member ranked in its own first 1000 is missing from the sums.
 */
static json_t *
merge_groups(json_t *oks, const json_t *body)
{
    json_t *lim = body ? json_object_get(body, "limit") : NULL, *byid = json_object(), *v, *g;
    size_t limit = json_is_integer(lim) ? (size_t)json_integer_value(lim) : GROUPS_DEFAULT, k, n = 0;
    const char *id;
    json_t **all, *out = json_array();

    json_array_foreach(oks, k, v) {
        size_t i;
        json_array_foreach(json_object_get(v, "groups"), i, g) {
            const char *gid = json_string_value(json_object_get(g, "group"));
            json_t *have;
            if (!gid)
                continue;
            if (!(have = json_object_get(byid, gid))) {
                json_object_set_new(byid, gid, json_deep_copy(g));
                continue;
            }
            json_int_t a = json_integer_value(json_object_get(have, "count"));
            json_int_t b = json_integer_value(json_object_get(g, "count")), sum;
            if (__builtin_add_overflow(a, b, &sum))
                sum = LLONG_MAX;
            json_object_set_new(have, "count", json_integer(sum));
            const char *hf = json_string_value(json_object_get(have, "first_seen"));
            const char *gf = json_string_value(json_object_get(g, "first_seen"));
            if (gf && (!hf || strcmp(gf, hf) < 0))
                json_object_set(have, "first_seen", json_object_get(g, "first_seen"));
            const char *hl = json_string_value(json_object_get(have, "last_seen"));
            const char *gl = json_string_value(json_object_get(g, "last_seen"));
            if (gl && (!hl || strcmp(gl, hl) > 0)) {
                json_object_set(have, "last_seen", json_object_get(g, "last_seen"));
                json_object_set(have, "error", json_object_get(g, "error"));
            }
        }
    }
    all = sc_xcalloc(json_object_size(byid) + 1, sizeof(*all));
    json_object_foreach(byid, id, g)
        all[n++] = g;
    qsort(all, n, sizeof(*all), group_cmp);
    for (size_t i = 0; i < n && i < limit; i++)
        json_array_append(out, all[i]);
    free(all);
    json_decref(byid);
    return json_pack("{s:o}", "groups", out);
}

/* Newest first: RFC 3339 UTC times of one format compare as text. */
static int
record_cmp(const void *x, const void *y)
{
    const char *a = json_string_value(json_object_get(*(json_t *const *)x, "time"));
    const char *b = json_string_value(json_object_get(*(json_t *const *)y, "time"));

    return strcmp(b ? b : "", a ? a : "");
}

/* merge_audit() makes one {"records":[...]} of the members' latest records: newest first, at most limit. */
static json_t *
merge_audit(json_t *oks, const json_t *body)
{
    json_t *lim = body ? json_object_get(body, "limit") : NULL, *records = json_array(), *v, *r;
    size_t n = 0, k, i, limit = json_is_integer(lim) ? (size_t)json_integer_value(lim) : 50;
    json_t **all;

    json_array_foreach(oks, k, v)
        n += json_array_size(json_object_get(v, "records"));
    all = sc_xcalloc(n + 1, sizeof(*all));
    n = 0;
    json_array_foreach(oks, k, v)
        json_array_foreach(json_object_get(v, "records"), i, r)
            if (json_is_object(r))
                all[n++] = r;
    qsort(all, n, sizeof(*all), record_cmp);
    for (i = 0; i < n && i < limit; i++)
        json_array_append(records, all[i]);
    free(all);
    return json_pack("{s:o}", "records", records);
}

/*
 * Whether a member's reply is an error: {"error":{code,message}}. A task's
 * own "error" text (a get's reply) is a string, not an error.
 */
static bool
is_error(const json_t *r)
{
    return json_is_object(json_object_get(r, "error"));
}

/*
 * Sends the merged reply (an error when it holds "error") to s's requester:
 * its reply subject, or its callback (once; nobody when it was cancelled).
 */
static void
send_reply(struct sc_fanout *f, struct fo_slot *s, json_t *reply)
{
    json_t *e = is_error(reply) ? json_object_get(reply, "error") : NULL;
    char *text = json_dumps(reply, JSON_COMPACT);
    int code = e ? (int)json_integer_value(json_object_get(e, "code")) : 0;
    const char *msg = e ? json_string_value(json_object_get(e, "message")) : NULL;
    sc_fanout_answer_fn fn = s->fn;

    s->fn = NULL;
    if (text && s->reply)
        sc_conn_respond_to(f->d->conn, s->reply, text, strlen(text), code, msg);
    else if (fn)
        fn(s->ctx, code ? code : 200, text ? text : "{}", text ? strlen(text) : 2);
    free(text);
}

/* A new {"error":{code,message}} object. */
static json_t *
error_reply(int code, const char *msg)
{
    return json_pack("{s:{s:i,s:s}}", "error", "code", code, "message", msg);
}

/*
 * Answers s with its members' answers merged, then frees it. Reads merge
 * (stats sums, list pages in one order); a single task's get or action is
 * the owner's answer; filter actions add up what each member did. Every
 * reply names the partitions no answering member serves
 * (partitions_missing), how many members answered and which member took
 * the request (answered_by).
 */
static void
finish(struct sc_fanout *f, struct fo_slot *s)
{
    uint32_t parts = (uint32_t)f->d->cfg->cluster_partitions;
    unsigned char *covered = sc_xcalloc(parts ? parts : 1, 1);
    json_t *oks = json_array(), *errs = json_array(), *members = json_array(), *missing = json_array();
    json_t *tid = s->body ? json_object_get(s->body, "task_id") : NULL, *reply = NULL, *a;
    bool single = json_is_string(tid) && strcmp(s->verb, "clear") != 0;
    size_t i;

    json_array_foreach(s->answers, i, a) {
        json_t *r = json_object_get(a, "reply"), *ps = json_object_get(a, "partitions"), *p;
        size_t j;
        json_array_foreach(ps, j, p)
            if (json_is_integer(p) && json_integer_value(p) >= 0 && json_integer_value(p) < parts)
                covered[json_integer_value(p)] = 1;
        json_array_append(is_error(r) ? errs : oks, r);
        json_t *m = json_pack("{s:O?,s:O?}", "member_id", json_object_get(json_object_get(a, "member"), "id"),
                              "partitions", ps);
        if (m && json_object_get(r, "queue_size"))
            json_object_set(m, "queue_size", json_object_get(r, "queue_size"));
        if (m && is_error(r))
            json_object_set(m, "error", json_object_get(r, "error"));
        json_array_append_new(members, m);
    }
    for (uint32_t p = 0; p < parts; p++)
        if (!covered[p])
            json_array_append_new(missing, json_integer(p));

    if (single) {
        /* The owner answers; the others do not hold the task (404). */
        uint32_t p = part_of(f, json_string_value(tid), json_string_length(tid));
        json_array_foreach(oks, i, a) {
            reply = json_deep_copy(a);
            break;
        }
        json_array_foreach(errs, i, a) {
            if (reply)
                break;
            if (json_integer_value(json_object_get(json_object_get(a, "error"), "code")) != 404)
                reply = json_deep_copy(a);
        }
        if (!reply && p < parts && !covered[p]) {
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "task_id: its partition %u has no owner right now (a takeover is under way); "
                     "try again in a few seconds", (unsigned)p);
            reply = error_reply(503, msg);
        }
        if (!reply)
            reply = json_array_size(errs) ? json_deep_copy(json_array_get(errs, 0))
                                          : error_reply(503, "no member answered");
    } else if (json_array_size(oks) == 0) {
        /* Every member refused the same way (a bad request), or none answered. */
        reply = json_array_size(errs) ? json_deep_copy(json_array_get(errs, 0))
                                      : error_reply(503, "no member answered");
        json_t *e = json_object_get(reply, "error");
        if (json_object_get(e, "would_clear")) {
            json_int_t n = 0;
            char msg[160];
            json_array_foreach(errs, i, a)
                n += json_integer_value(json_object_get(json_object_get(a, "error"), "would_clear"));
            snprintf(msg, sizeof(msg), "confirm: clear would remove %lld task%s; send \"confirm\": true",
                     (long long)n, n == 1 ? "" : "s");
            json_object_set_new(e, "would_clear", json_integer(n));
            json_object_set_new(e, "message", json_string(msg));
        }
    } else if (!strcmp(s->verb, "list")) {
        reply = merge_list(f, oks, s->body);
    } else if (!strcmp(s->verb, "groups")) {
        reply = merge_groups(oks, s->body);
    } else if (!strcmp(s->verb, "audit")) {
        reply = merge_audit(oks, s->body);
    } else {
        reply = json_deep_copy(json_array_get(oks, 0));
        for (i = 1; i < json_array_size(oks); i++)
            merge_sum(reply, json_array_get(oks, i));
        json_object_del(reply, "cluster");
        if (!strcmp(s->verb, "stats")) {
            merge_workers(reply, oks);
            merge_breaker(reply, oks);
        }
        json_int_t size = json_integer_value(json_object_get(reply, "queue_size"));
        json_int_t max = json_integer_value(json_object_get(reply, "max_size"));
        if (json_object_get(reply, "utilization_percent") && max > 0)
            json_object_set_new(reply, "utilization_percent", /* 2 decimals, as one member says */
                                json_real((double)(int64_t)((double)size * 10000.0 / (double)max) / 100.0));
        if (json_array_size(errs)) {
            json_t *me = json_array();
            json_array_foreach(members, i, a)
                if (is_error(a))
                    json_array_append(me, a);
            json_object_set_new(reply, "member_errors", me);
        }
    }
    if (!strcmp(s->verb, "stats"))
        json_object_set(reply, "members", members);
    json_object_set_new(reply, "partitions_missing", missing);
    json_object_set_new(reply, "members_answered", json_integer((json_int_t)json_array_size(s->answers)));
    json_object_set_new(reply, "answered_by", json_string(sc_cluster_get_stats(f->d).member_id));
    if (sc_admin_verb_mutates(s->verb) && !is_error(reply)) {
        /* The one audit record: here, with what every member that answered changed. */
        json_int_t count = 0;
        json_array_foreach(s->answers, i, a)
            if (!is_error(json_object_get(a, "reply")) && json_is_integer(json_object_get(a, "audit_count")) &&
                __builtin_add_overflow(count, json_integer_value(json_object_get(a, "audit_count")), &count))
                count = LLONG_MAX; /* a forged answer must not overflow */
        sc_audit_record(f->d, s->principal, s->verb, s->body, (int64_t)count,
                        s->body && json_is_true(json_object_get(s->body, "dry_run")));
    }
    send_reply(f, s, reply);
    json_decref(reply);
    json_decref(oks);
    json_decref(errs);
    json_decref(members);
    free(covered);
    free(s->reply);
    json_decref(s->body);
    json_decref(s->answers);
    evtimer_del(s->ev);
    s->reply = NULL;
    s->body = s->answers = NULL;
    s->used = false;
}

/* True when s may be answered now: every member answered, or the answers cover every partition. */
static bool
complete(const struct sc_fanout *f, const struct fo_slot *s)
{
    uint32_t parts = (uint32_t)f->d->cfg->cluster_partitions, n = 0;
    unsigned char *covered;
    size_t i, j;
    json_t *a, *p;

    if (json_array_size(s->answers) >= s->expected)
        return true;
    covered = sc_xcalloc(parts ? parts : 1, 1);
    json_array_foreach(s->answers, i, a) {
        json_array_foreach(json_object_get(a, "partitions"), j, p) {
            json_int_t x = json_integer_value(p);
            if (json_is_integer(p) && x >= 0 && x < parts && !covered[x]) {
                covered[x] = 1;
                n++;
            }
        }
    }
    free(covered);
    return n == parts;
}

/* Adds one member's answer (len bytes of JSON) to s; answers s when it is complete. */
static void
add_answer(struct sc_fanout *f, struct fo_slot *s, const char *data, size_t len)
{
    json_t *a = json_loadb(data, len, 0, NULL), *b;
    const char *id = json_string_value(json_object_get(json_object_get(a, "member"), "id"));
    size_t i;

    /*
     * Only one answer per live member counts: anyone who may publish into
     * this member's inbox could otherwise end the wait with a forged "every
     * partition" answer (docs/nats-auth.conf keeps others out of it).
     */
    if (!json_is_object(a) || !json_is_object(json_object_get(a, "reply")) ||
        !json_is_array(json_object_get(a, "partitions")) || !sc_cluster_is_member(f->d, id)) {
        sc_log(SC_LOG_WARN, "cluster admin: an answer that is not a member's was ignored", "verb",
               s->verb, "member", id ? id : "", NULL);
        json_decref(a);
        return;
    }
    json_array_foreach(s->answers, i, b) {
        if (!strcmp(json_string_value(json_object_get(json_object_get(b, "member"), "id")), id)) {
            json_decref(a); /* a second answer from the same member */
            return;
        }
    }
    json_array_append_new(s->answers, a);
    if (complete(f, s))
        finish(f, s);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct fo_slot *s = arg;

    (void)fd;
    (void)what;
    if (!s->used)
        return;
    sc_log(SC_LOG_WARN, "cluster admin: answering without every member", "verb", s->verb, "answered",
           sc_log_int((int64_t)json_array_size(s->answers)), "members",
           sc_log_int((int64_t)s->expected), NULL);
    finish(s->f, s);
}

/* ---- the subscriptions ------------------------------------------------------------------------ */

/*
 * fan_start() asks every member verb with len bytes of data (body: the
 * same, parsed; the slot takes it) for a requester that is either a reply
 * subject or fn(ctx); returns the slot's id, or 0 when every slot is taken
 * (nothing was asked; body freed). The slot may be answered before this
 * returns (a cluster of one).
 */
static uint64_t
fan_start(struct sc_fanout *f, const char *verb, json_t *body, const char *data, int len,
          const char *principal, const char *reply, sc_fanout_answer_fn fn, void *ctx)
{
    const char *hdrs[3] = {PRINCIPAL_HEADER, principal, NULL};
    struct sc_daemon *d = f->d;
    struct sc_cluster_stats cs = sc_cluster_get_stats(d);
    struct fo_slot *s = NULL;
    char subj[256], answer_to[200];
    json_t *rate;
    char *rewritten = NULL;
    uint64_t id;

    for (size_t i = 0; i < FANOUT_MAX && !s; i++)
        if (!f->slots[i].used)
            s = &f->slots[i];
    if (!s) {
        json_decref(body);
        return 0;
    }
    s->used = true;
    id = s->id = ++f->next_id;
    s->token = d->m.ports.token(d->m.ports.ctx);
    snprintf(s->verb, sizeof(s->verb), "%s", verb);
    snprintf(s->principal, sizeof(s->principal), "%s", principal);
    s->reply = reply ? sc_xstrdup(reply) : NULL;
    s->fn = fn;
    s->ctx = ctx;
    s->body = body;
    s->answers = json_array();
    s->expected = cs.members ? cs.members : 1;
    /*
     * A redrive's rate is the cluster's: each member runs its share. A rate
     * out of range (each member refuses it) or whose share would round to
     * nothing goes as it came, so that the members judge the rate asked.
     */
    rate = body ? json_object_get(body, "rate") : NULL;
    if (!strcmp(verb, "retry") && json_is_number(rate) && s->expected > 1 &&
        json_number_value(rate) > 0 && json_number_value(rate) <= RATE_MAX &&
        json_number_value(rate) / (double)s->expected > 0) {
        json_t *copy = json_deep_copy(body);
        json_object_set_new(copy, "rate", json_real(json_number_value(rate) / (double)s->expected));
        rewritten = json_dumps(copy, JSON_COMPACT);
        json_decref(copy);
        if (rewritten) {
            data = rewritten;
            len = (int)strlen(rewritten);
        }
    }
    snprintf(subj, sizeof(subj), "%s.cluster.admin.%s", d->cfg->subjects_prefix, verb);
    snprintf(answer_to, sizeof(answer_to), "%s.%llu.%016llx", f->answer_prefix,
             (unsigned long long)s->id, (unsigned long long)s->token);
    if (cs.members > 1 && sc_publish(d, subj, answer_to, data, (size_t)len, hdrs) != SC_OK)
        sc_log(SC_LOG_WARN, "cluster admin: cannot ask the other members", "verb", verb, NULL);
    struct timeval wait = {FANOUT_WAIT_MS / 1000, (FANOUT_WAIT_MS % 1000) * 1000};
    evtimer_add(s->ev, &wait);
    sc_admin_member(d, verb, data, len, principal, &f->buf); /* this member's own part, here */
    free(rewritten);
    add_answer(f, s, f->buf.data, f->buf.len);
    return id;
}

/*
 * Parses a request's body when verb is asked of every member; returns
 * false when it is answered by this member alone (health, classify, an
 * unknown verb, a body that is not a JSON object), *body NULL then.
 */
static bool
fan_body(const char *verb, const char *data, int len, json_t **body)
{
    *body = NULL;
    if (!fans_out(verb) || strlen(verb) >= sizeof(((struct fo_slot *)0)->verb))
        return false;
    if (sc_admin_blank(data, len))
        return true;
    *body = json_loadb(data, (size_t)len, 0, NULL); /* parsed once: json_is_object() is a macro */
    if (json_is_object(*body))
        return true;
    json_decref(*body);
    *body = NULL;
    return false;
}

static const char fan_busy[] = "{\"error\":{\"code\":503,\"message\":\"too many admin requests "
                               "under way on this member; try again\"}}";

/* A request on <prefix>.admin.<verb>, taken by this member from the queue group. */
static void
on_request(void *ctx, natsMsg *m)
{
    struct sc_daemon *d = ctx;
    struct sc_fanout *f = d->fanout;
    const char *verb = last_token(natsMsg_GetSubject(m)), *reply = natsMsg_GetReply(m);
    char who[SC_AUDIT_PRINCIPAL_LEN];
    json_t *body;

    if (!f || !reply || !*reply)
        return;
    if (!fan_body(verb, natsMsg_GetData(m), natsMsg_GetDataLength(m), &body)) {
        sc_admin(d, m); /* answered here alone: health, classify, an unknown verb, a bad body */
        return;
    }
    if (!fan_start(f, verb, body, natsMsg_GetData(m), natsMsg_GetDataLength(m),
                   sc_audit_nats_principal(reply, who, sizeof(who)), reply, NULL, NULL))
        sc_conn_respond_to(d->conn, reply, fan_busy, sizeof(fan_busy) - 1, 503, "busy");
}

uint64_t
sc_fanout_ask(struct sc_daemon *d, const char *verb, const char *data, int len,
              const char *principal, sc_fanout_answer_fn fn, void *ctx)
{
    struct sc_fanout *f = d->fanout;
    json_t *body;
    uint64_t id;

    if (!f || !fan_body(verb, data, len, &body)) {
        int code = sc_admin_call(d, verb, data, len, principal);
        fn(ctx, code ? code : 200, d->out.data, d->out.len);
        return 0;
    }
    if (!principal)
        principal = "local";
    if (!(id = fan_start(f, verb, body, data, len, principal, NULL, fn, ctx))) {
        fn(ctx, 503, fan_busy, sizeof(fan_busy) - 1);
        return 0;
    }
    for (size_t i = 0; i < FANOUT_MAX; i++)
        if (f->slots[i].used && f->slots[i].id == id && f->slots[i].fn)
            return id; /* still gathering */
    return 0;
}

void
sc_fanout_cancel(struct sc_daemon *d, uint64_t ticket)
{
    struct sc_fanout *f = d->fanout;

    for (size_t i = 0; f && ticket && i < FANOUT_MAX; i++) {
        if (f->slots[i].used && f->slots[i].id == ticket) {
            f->slots[i].fn = NULL;
            f->slots[i].ctx = NULL;
        }
    }
}

/* Another member's request on <prefix>.cluster.admin.<verb>: this member's part. */
static void
on_member(void *ctx, natsMsg *m)
{
    struct sc_daemon *d = ctx;
    const char *reply = natsMsg_GetReply(m), *inbox = sc_conn_inbox(d->conn), *who = NULL;
    size_t plen = strlen(inbox);

    if (!d->fanout || !reply || !*reply)
        return;
    if (!strncmp(reply, inbox, plen) && reply[plen] == '.')
        return; /* our own question: on_request() answered it here already */
    /* Who asked, for the history notes: <prefix>.cluster.> is for sidecars only (docs/nats-auth.conf). */
    if (natsMsgHeader_Get(m, PRINCIPAL_HEADER, &who) != NATS_OK || !who || !*who ||
        strlen(who) >= SC_AUDIT_PRINCIPAL_LEN)
        who = "cluster";
    sc_admin_member(d, last_token(natsMsg_GetSubject(m)), natsMsg_GetData(m),
                    natsMsg_GetDataLength(m), who, &d->fanout->buf);
    sc_conn_respond_to(d->conn, reply, d->fanout->buf.data, d->fanout->buf.len, 0, NULL);
}

/*
 * A member's answer on <inbox>.adm.<id>.<token>. A subject whose token is
 * not the slot's was not sent by a member asked (anyone may make a member
 * answer anywhere: the token keeps such answers out of the merge).
 */
static void
on_answer(void *ctx, natsMsg *m)
{
    struct sc_daemon *d = ctx;
    struct sc_fanout *f = d->fanout;
    const char *subject = natsMsg_GetSubject(m);
    const char *tok = last_token(subject), *id;
    char *end;
    unsigned long long x, t;

    if (!f || tok == subject)
        return;
    for (id = tok - 1; id > subject && id[-1] != '.'; id--)
        ;
    x = strtoull(id, &end, 10);
    if (end == id || *end != '.')
        return;
    t = strtoull(tok, &end, 16);
    if (end == tok || *end || strlen(tok) != 16)
        return;
    for (size_t i = 0; i < FANOUT_MAX; i++) {
        struct fo_slot *s = &f->slots[i];
        if (s->used && s->id == x && s->token == t) {
            add_answer(f, s, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
            return;
        }
    }
    sc_log(SC_LOG_DEBUG, "cluster admin: a late answer was dropped", "id", id, NULL);
}

sc_status
sc_fanout_open(struct sc_daemon *d, char *err, size_t errlen)
{
    struct sc_fanout *f;
    char subj[256];
    sc_status s;

    f = sc_xcalloc(1, sizeof(*f));
    f->d = d;
    d->fanout = f;
    sc_buf_init(&f->buf, 64u << 20);
    snprintf(f->answer_prefix, sizeof(f->answer_prefix), "%s.adm", sc_conn_inbox(d->conn));
    for (size_t i = 0; i < FANOUT_MAX; i++) {
        f->slots[i].f = f;
        if (!(f->slots[i].ev = evtimer_new(d->base, on_deadline, &f->slots[i]))) {
            snprintf(err, errlen, "libevent: evtimer_new failed");
            return SC_EIO;
        }
    }
    snprintf(subj, sizeof(subj), "%s.*.*", f->answer_prefix);
    if ((s = sc_conn_subscribe(d->conn, subj, NULL, 0, on_answer, d, NULL, err, errlen)))
        return s;
    snprintf(subj, sizeof(subj), "%s.cluster.admin.*", d->cfg->subjects_prefix);
    if ((s = sc_conn_subscribe(d->conn, subj, NULL, 0, on_member, d, NULL, err, errlen)))
        return s;
    snprintf(subj, sizeof(subj), "%s.admin.*", d->cfg->subjects_prefix);
    return sc_conn_subscribe(d->conn, subj, SC_ADMIN_QUEUE, 0, on_request, d, NULL, err, errlen);
}

void
sc_fanout_close(struct sc_daemon *d)
{
    struct sc_fanout *f = d->fanout;

    if (!f)
        return;
    for (size_t i = 0; i < FANOUT_MAX; i++) {
        struct fo_slot *s = &f->slots[i];
        if (s->used) {
            json_t *e = error_reply(503, "the member that took the request is stopping");
            send_reply(f, s, e);
            json_decref(e);
            free(s->reply);
            json_decref(s->body);
            json_decref(s->answers);
        }
        if (s->ev)
            event_free(s->ev);
    }
    sc_buf_destroy(&f->buf);
    free(f);
    d->fanout = NULL;
}
