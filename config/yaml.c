/* yaml.c - the file layer: a bounded, streaming libyaml reader applying one YAML document to a config. */
#include "config-internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/*
 * The reader never builds a tree. It walks libyaml's events with an explicit
 * stack of at most CONFIG_MAX_DEPTH frames and applies each scalar as soon as
 * its key is known, so memory stays bounded by the largest list being read
 * (CONFIG_MAX_LIST entries or CONFIG_MAX_RULES rules of CONFIG_MAX_STRING
 * bytes each). Aliases are refused, so no document can expand (billion
 * laughs). Each key may appear once, whether nested or dotted.
 */

enum frame_kind {
    FR_SECTION, /* a mapping of keys: the root, "nats", "store.opensearch" ... */
    FR_LIST,    /* the sequence of a LIST key */
    FR_RULES,   /* the sequence of classifier.rules */
    FR_RULE,    /* one rule's mapping */
    FR_TEMPLATES, /* the mapping of templates: name -> template */
    FR_TEMPLATE,  /* one template's mapping */
    FR_TBACKOFF,  /* the sequence of one template's backoff */
};

struct frame {
    enum frame_kind kind;
    bool want_value;             /* mappings: a key was read, its value comes next */
    size_t base;                 /* FR_SECTION: length of its path in y->path */
    const struct config_key *key; /* FR_LIST/FR_RULES: the key being read */
};

enum rule_part { RP_ID = 0, RP_PATTERN, RP_CATEGORY, RP_FIELD, RP_COUNT };

static const char *const rule_part_names[RP_COUNT] = {"id", "pattern", "category", "field"};
#define RULE_SHAPE "{id, pattern, category, field}"

enum tpl_part { TP_POLICY = 0, TP_MAX_RETRIES, TP_BACKOFF, TP_PRIORITY, TP_RETRY_SUBJECT, TP_COUNT };

static const char *const tpl_part_names[TP_COUNT] = {"policy", "max_retries", "backoff", "priority",
                                                     "retry_subject"};
#define TPL_SHAPE "{policy, max_retries, backoff, priority, retry_subject}"

struct yload {
    struct config *cfg;
    const char *origin;
    const char *text;
    char *err;
    size_t errlen;
    struct frame st[CONFIG_MAX_DEPTH];
    size_t depth;
    char path[CONFIG_MAX_PATH + 1];
    size_t pathlen;
    const struct config_key *key; /* FR_SECTION value pending: its key (NULL: unknown) */
    bool seen[CONFIG_MAX_KEYS];
    unsigned docs;
    char **list; /* entries of the FR_LIST being read, NULL-terminated */
    size_t nlist, caplist;
    struct config_rule *rules; /* rules being read; the last is in progress in FR_RULE */
    size_t nrules, caprules;
    enum rule_part part;  /* FR_RULE value pending: which part */
    unsigned rule_have;   /* parts given for the rule in progress, one bit each */
    struct config_template *tpls; /* templates being read; the last is in progress in FR_TEMPLATE */
    size_t ntpls, captpls;
    enum tpl_part tpart;  /* FR_TEMPLATE value pending: which part */
    unsigned tpl_have;    /* parts given for the template in progress */
    struct policy_delays tdelays; /* FR_TBACKOFF: the delays read so far */
};

/* Writes "<origin>:<line>: <message>" into y->err. */
static sc_status
fail(struct yload *y, size_t line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static sc_status
fail(struct yload *y, size_t line, const char *fmt, ...)
{
    char msg[CONFIG_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (y->origin != NULL)
        config_errf(y->err, y->errlen, "%s:%zu: %s", y->origin, line, msg);
    else
        config_errf(y->err, y->errlen, "line %zu: %s", line, msg);
    return SC_EINVAL;
}

static bool
is_null(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;

    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    return n == 0 || (n == 1 && v[0] == '~') ||
           (n == 4 && (memcmp(v, "null", 4) == 0 || memcmp(v, "Null", 4) == 0 ||
                       memcmp(v, "NULL", 4) == 0));
}

static struct frame *
top(struct yload *y)
{
    return y->depth > 0 ? &y->st[y->depth - 1] : NULL;
}

static sc_status
push(struct yload *y, size_t line, enum frame_kind kind)
{
    if (y->depth == CONFIG_MAX_DEPTH)
        return fail(y, line, "nesting deeper than %d levels", CONFIG_MAX_DEPTH);
    memset(&y->st[y->depth], 0, sizeof(y->st[0]));
    y->st[y->depth].kind = kind;
    y->depth++;
    return SC_OK;
}

/* The key path being read, for messages. */
static const char *
shown_path(struct yload *y, char *buf, size_t buflen)
{
    config_show(buf, buflen, y->path, y->pathlen);
    return buf;
}

static sc_status
unknown_key(struct yload *y, size_t line)
{
    char p[300];

    return fail(y, line, "%s: unknown key", shown_path(y, p, sizeof(p)));
}

/* Marks the pending key seen; refuses a second occurrence. */
static sc_status
mark_seen(struct yload *y, size_t line, const struct config_key *k)
{
    size_t i = config_key_index(k);

    if (y->seen[i])
        return fail(y, line, "%s: duplicate key", k->info.path);
    y->seen[i] = true;
    return SC_OK;
}

/* A mapping key inside a section: extends the section's path. */
static sc_status
section_key(struct yload *y, struct frame *fr, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length, line = ev->start_mark.line + 1;
    size_t need = fr->base + (fr->base > 0) + n;

    y->pathlen = fr->base;
    if (need > CONFIG_MAX_PATH) {
        /* Show what fits: the section's path (always short) and the key's start. */
        if (fr->base > 0 && y->pathlen < CONFIG_MAX_PATH)
            y->path[y->pathlen++] = '.';
        n = CONFIG_MAX_PATH - y->pathlen;
        memcpy(y->path + y->pathlen, v, n);
        y->pathlen += n;
        return unknown_key(y, line);
    }
    if (fr->base > 0)
        y->path[y->pathlen++] = '.';
    memcpy(y->path + y->pathlen, v, n);
    y->pathlen += n;
    y->path[y->pathlen] = '\0';
    if (n == 0 || memchr(v, '\0', n) != NULL)
        return unknown_key(y, line);
    y->key = config_key_lookup(y->path, y->pathlen);
    fr->want_value = true;
    return SC_OK;
}

/* A scalar value inside a section. */
static sc_status
section_value(struct yload *y, struct frame *fr, const yaml_event_t *ev)
{
    const struct config_key *k = y->key;
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length, line = ev->start_mark.line + 1;
    char msg[CONFIG_ERR_MAX], p[300];
    bool null = is_null(ev);
    sc_status s;

    fr->want_value = false;
    if (k == NULL) {
        if (!config_key_is_section(y->path, y->pathlen))
            return unknown_key(y, line);
        if (null)
            return SC_OK; /* an empty section */
        return fail(y, line, "%s: expected a mapping of keys", shown_path(y, p, sizeof(p)));
    }
    s = mark_seen(y, line, k);
    if (s != SC_OK)
        return s;
    if (null) {
        v = "";
        n = 0;
    }
    if (k->info.type == CONFIG_TYPE_RULES) {
        if (!null)
            return fail(y, line, "%s: expected a sequence of rules", k->info.path);
        config_rules_replace(y->cfg, NULL, 0);
        return SC_OK;
    }
    if (k->info.type == CONFIG_TYPE_TEMPLATES) {
        if (!null)
            return fail(y, line, "%s: expected a mapping of name: %s", k->info.path, TPL_SHAPE);
        config_templates_replace(y->cfg, NULL, 0);
        return SC_OK;
    }
    if (config_key_set(y->cfg, k, v, n, msg, sizeof(msg)) != SC_OK)
        return fail(y, line, "%s", msg);
    return SC_OK;
}

/* A scalar entry of a list. */
static sc_status
list_entry(struct yload *y, struct frame *fr, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length, line = ev->start_mark.line + 1;
    char msg[CONFIG_ERR_MAX];

    if (y->nlist == CONFIG_MAX_LIST)
        return fail(y, line, "%s: more than %d entries", fr->key->info.path, CONFIG_MAX_LIST);
    if (config_list_check(fr->key, v, n, y->list, y->nlist, msg, sizeof(msg)) != SC_OK)
        return fail(y, line, "%s", msg);
    /* Grow by doubling; the slot after the last entry stays NULL. */
    if (y->nlist + 2 > y->caplist) {
        y->caplist = y->caplist == 0 ? 8 : 2 * y->caplist;
        y->list = sc_xrealloc(y->list, y->caplist * sizeof(*y->list));
    }
    y->list[y->nlist++] = sc_xstrndup(v, n);
    y->list[y->nlist] = NULL;
    return SC_OK;
}

/* Line of a scalar event, 1-based. */
static size_t
scalar_line(const yaml_event_t *ev)
{
    return ev->start_mark.line + 1;
}

/* Refuses a rule's value: "classifier.rules[<idx>].<part>: '<shown value>' <rest>". */
static sc_status
rule_refuse(struct yload *y, const yaml_event_t *ev, const char *rest)
{
    char shown[300];

    config_show(shown, sizeof(shown), (const char *)ev->data.scalar.value,
                ev->data.scalar.length);
    return fail(y, scalar_line(ev), "classifier.rules[%zu].%s: '%s' %s", y->nrules - 1,
                rule_part_names[y->part], shown, rest);
}

/* A key inside one rule's mapping: one of rule_part_names, once each. */
static sc_status
rule_key(struct yload *y, struct frame *fr, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length, i;
    char shown[300];

    for (i = 0; i < RP_COUNT; i++) {
        if (strlen(rule_part_names[i]) == n && memcmp(rule_part_names[i], v, n) == 0)
            break;
    }
    if (i == RP_COUNT) {
        config_show(shown, sizeof(shown), v, n);
        return fail(y, scalar_line(ev),
                    "classifier.rules[%zu].%s: unknown key (id, pattern, category, field)",
                    y->nrules - 1, shown);
    }
    if (y->rule_have & (1u << i))
        return fail(y, scalar_line(ev), "classifier.rules[%zu].%s: duplicate key", y->nrules - 1,
                    rule_part_names[i]);
    y->rule_have |= 1u << i;
    y->part = (enum rule_part)i;
    fr->want_value = true;
    return SC_OK;
}

/* A rule's id: 1-64 characters of A-Z a-z 0-9 _ . -, unique among the rules. */
static sc_status
rule_id(struct yload *y, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length, idx = y->nrules - 1, i;
    char rest[64];

    for (i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            break;
    }
    if (n == 0 || n > 64 || i < n)
        return rule_refuse(y, ev, "is not 1-64 characters of A-Z a-z 0-9 _ . -");
    for (i = 0; i < idx; i++) {
        if (strlen(y->rules[i].id) == n && memcmp(y->rules[i].id, v, n) == 0) {
            snprintf(rest, sizeof(rest), "is already used by rule %zu", i);
            return rule_refuse(y, ev, rest);
        }
    }
    y->rules[idx].id = sc_xstrndup(v, n);
    return SC_OK;
}

/* A rule's category: one of policy_category_names. */
static sc_status
rule_category(struct yload *y, const yaml_event_t *ev)
{
    char names[200], rest[220];
    policy_category cat;

    if (policy_category_parse((const char *)ev->data.scalar.value, ev->data.scalar.length,
                              &cat) != SC_OK) {
        config_join_names(names, sizeof(names), policy_category_names);
        snprintf(rest, sizeof(rest), "is not one of %s", names);
        return rule_refuse(y, ev, rest);
    }
    y->rules[y->nrules - 1].category = cat;
    return SC_OK;
}

/* A rule's field: one of policy_match_field_names. */
static sc_status
rule_field(struct yload *y, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length, i;

    for (i = 0; policy_match_field_names[i] != NULL; i++) {
        const char *name = policy_match_field_names[i];
        if (strlen(name) == n && strncasecmp(name, v, n) == 0) /* any ASCII case, as every enum */
            break;
    }
    if (policy_match_field_names[i] == NULL)
        return rule_refuse(y, ev, "is not one of any, error, error_type");
    y->rules[y->nrules - 1].field = (policy_match_field)i;
    return SC_OK;
}

/* A key or value inside one rule's mapping. */
static sc_status
rule_scalar(struct yload *y, struct frame *fr, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length, line = scalar_line(ev), idx = y->nrules - 1;

    if (!fr->want_value)
        return rule_key(y, fr, ev);
    fr->want_value = false;
    if (n > CONFIG_MAX_STRING)
        return fail(y, line, "classifier.rules[%zu].%s: longer than %d bytes", idx,
                    rule_part_names[y->part], CONFIG_MAX_STRING);
    if (!config_text_ok(v, n))
        return rule_refuse(y, ev, "contains control characters or invalid UTF-8");
    switch (y->part) {
    case RP_ID: return rule_id(y, ev);
    case RP_PATTERN:
        if (n == 0)
            return fail(y, line, "classifier.rules[%zu].pattern: empty", idx);
        y->rules[idx].pattern = sc_xstrndup(v, n);
        return SC_OK;
    case RP_CATEGORY: return rule_category(y, ev);
    case RP_FIELD: return rule_field(y, ev);
    case RP_COUNT: break;
    }
    return SC_OK;
}

/* The template in progress. */
static struct config_template *
tpl_cur(struct yload *y)
{
    return &y->tpls[y->ntpls - 1];
}

/* Refuses a template's value: "templates.<name>.<part>: '<shown value>' <rest>". */
static sc_status
tpl_refuse(struct yload *y, const yaml_event_t *ev, const char *rest)
{
    char shown[300];

    config_show(shown, sizeof(shown), (const char *)ev->data.scalar.value,
                ev->data.scalar.length);
    return fail(y, scalar_line(ev), "templates.%s.%s: '%s' %s", tpl_cur(y)->name,
                tpl_part_names[y->tpart], shown, rest);
}

/* A template's name (a key of the templates mapping): a new template. */
static sc_status
tpl_name(struct yload *y, struct frame *fr, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length, line = scalar_line(ev), i;
    char shown[300];

    config_show(shown, sizeof(shown), v, n);
    if (!config_template_name_ok(v, n))
        return fail(y, line, "templates.%s: the name is not 1-64 characters of A-Z a-z 0-9 _ . -",
                    shown);
    for (i = 0; i < y->ntpls; i++) {
        if (strlen(y->tpls[i].name) == n && memcmp(y->tpls[i].name, v, n) == 0)
            return fail(y, line, "templates.%s: duplicate template", shown);
    }
    if (y->ntpls == CONFIG_MAX_TEMPLATES)
        return fail(y, line, "templates: more than %d templates", CONFIG_MAX_TEMPLATES);
    if (y->ntpls == y->captpls) {
        y->captpls = y->captpls == 0 ? 8 : 2 * y->captpls;
        y->tpls = sc_xrealloc(y->tpls, y->captpls * sizeof(*y->tpls));
    }
    memset(&y->tpls[y->ntpls], 0, sizeof(y->tpls[0]));
    y->tpls[y->ntpls].name = sc_xstrndup(v, n);
    y->ntpls++;
    fr->want_value = true;
    return SC_OK;
}

/* A key inside one template's mapping: one of tpl_part_names, once each. */
static sc_status
tpl_key(struct yload *y, struct frame *fr, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length, i;
    char shown[300];

    for (i = 0; i < TP_COUNT; i++) {
        if (strlen(tpl_part_names[i]) == n && memcmp(tpl_part_names[i], v, n) == 0)
            break;
    }
    if (i == TP_COUNT) {
        config_show(shown, sizeof(shown), v, n);
        return fail(y, scalar_line(ev), "templates.%s.%s: unknown key (policy, max_retries, backoff, priority, retry_subject)",
                    tpl_cur(y)->name, shown);
    }
    if (y->tpl_have & (1u << i))
        return fail(y, scalar_line(ev), "templates.%s.%s: duplicate key", tpl_cur(y)->name,
                    tpl_part_names[i]);
    y->tpl_have |= 1u << i;
    y->tpart = (enum tpl_part)i;
    fr->want_value = true;
    return SC_OK;
}

/* Stores d as the template's backoff. */
static void
tpl_set_backoff(struct yload *y, const struct policy_delays *d)
{
    char text[POLICY_DELAYS_TEXT_MAX];
    size_t n = policy_delays_format(d, text, sizeof(text));

    free(tpl_cur(y)->backoff);
    tpl_cur(y)->backoff = sc_xstrndup(text, n);
}

/* A key or value inside one template's mapping. */
static sc_status
tpl_scalar(struct yload *y, struct frame *fr, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    struct config_template *t;
    struct policy_delays d;
    char rest[200];
    int64_t mr;

    if (!fr->want_value)
        return tpl_key(y, fr, ev);
    fr->want_value = false;
    t = tpl_cur(y);
    if (n > CONFIG_MAX_STRING || !config_text_ok(v, n))
        return tpl_refuse(y, ev, "is not valid text (at most 4096 bytes of UTF-8, no control characters)");
    switch (y->tpart) {
    case TP_POLICY:
        if (policy_retry_parse(v, n, &t->policy) != SC_OK)
            return tpl_refuse(y, ev, "is not one of never, linear, exponential, immediate");
        t->has_policy = true;
        return SC_OK;
    case TP_MAX_RETRIES:
        mr = -1;
        if (n > 0 && n <= 3 && strspn(v, "0123456789") == n)
            mr = strtoll(v, NULL, 10);
        if (mr < 0 || mr > 100)
            return tpl_refuse(y, ev, "is out of range 0-100");
        t->max_retries = (int)mr;
        t->has_max_retries = true;
        return SC_OK;
    case TP_BACKOFF:
        if (policy_delays_parse(v, n, &d, rest, sizeof(rest)) != SC_OK)
            return fail(y, scalar_line(ev), "templates.%s.backoff: %s", t->name, rest);
        tpl_set_backoff(y, &d);
        return SC_OK;
    case TP_PRIORITY:
        if (policy_priority_parse(v, n, &t->priority) != SC_OK)
            return tpl_refuse(y, ev, "is not one of high, normal, low");
        t->has_priority = true;
        return SC_OK;
    case TP_RETRY_SUBJECT:
        if (!codec_subject_valid(v, n, false))
            return tpl_refuse(y, ev, "is not a NATS subject without wildcards");
        t->retry_subject = sc_xstrndup(v, n);
        return SC_OK;
    case TP_COUNT: break;
    }
    return SC_OK;
}

/* One entry of a template's backoff sequence: a delay of 1 ms - 7 d. */
static sc_status
tpl_delay(struct yload *y, const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    char shown[300];
    int64_t ms = 0;
    sc_status st;

    if (y->tdelays.n == SC_DELAYS_MAX)
        return fail(y, scalar_line(ev), "templates.%s.backoff: more than %d delays",
                    tpl_cur(y)->name, SC_DELAYS_MAX);
    st = sc_parse_duration_ms(v, n, &ms);
    if (st != SC_OK || ms < 1 || ms > SC_DELAY_MAX_MS) {
        config_show(shown, sizeof(shown), v, n);
        return fail(y, scalar_line(ev), "templates.%s.backoff[%u]: '%s' %s", tpl_cur(y)->name,
                    y->tdelays.n, shown,
                    st == SC_EPROTO ? "is not a delay (500ms, 10s, 1m, 2h, 7d; a bare integer is ms)"
                                    : "is out of range 1ms-7d");
    }
    y->tdelays.ms[y->tdelays.n++] = ms;
    return SC_OK;
}

static sc_status
on_scalar(struct yload *y, const yaml_event_t *ev)
{
    struct frame *fr = top(y);
    size_t line = ev->start_mark.line + 1;

    if (fr == NULL) {
        if (is_null(ev))
            return SC_OK; /* an empty document */
        return fail(y, line, "the top level must be a mapping of keys");
    }
    switch (fr->kind) {
    case FR_SECTION:
        return fr->want_value ? section_value(y, fr, ev) : section_key(y, fr, ev);
    case FR_LIST: return list_entry(y, fr, ev);
    case FR_RULES:
        return fail(y, line, "classifier.rules[%zu]: expected a mapping %s", y->nrules, RULE_SHAPE);
    case FR_RULE: return rule_scalar(y, fr, ev);
    case FR_TEMPLATES:
        if (!fr->want_value)
            return tpl_name(y, fr, ev);
        return fail(y, line, "templates.%s: expected a mapping %s", tpl_cur(y)->name, TPL_SHAPE);
    case FR_TEMPLATE: return tpl_scalar(y, fr, ev);
    case FR_TBACKOFF: return tpl_delay(y, ev);
    }
    return SC_EINVAL;
}

static sc_status
on_mapping_start(struct yload *y, const yaml_event_t *ev)
{
    struct frame *fr = top(y);
    size_t line = ev->start_mark.line + 1, base;
    sc_status s;

    if (fr == NULL)
        return push(y, line, FR_SECTION);
    switch (fr->kind) {
    case FR_SECTION:
        if (!fr->want_value)
            return fail(y, line, "mapping keys must be plain text");
        if (y->key != NULL && y->key->info.type == CONFIG_TYPE_TEMPLATES) {
            s = mark_seen(y, line, y->key);
            if (s != SC_OK)
                return s;
            fr->want_value = false;
            s = push(y, line, FR_TEMPLATES);
            if (s == SC_OK)
                top(y)->key = y->key;
            return s;
        }
        if (y->key != NULL) {
            if (y->key->info.type == CONFIG_TYPE_TEMPLATES)
                return fail(y, line, "%s: expected a mapping", y->key->info.path);
            if (y->key->info.type == CONFIG_TYPE_RULES)
                return fail(y, line, "%s: expected a sequence of rules", y->key->info.path);
            if (y->key->info.type == CONFIG_TYPE_LIST)
                return fail(y, line, "%s: expected a list", y->key->info.path);
            return fail(y, line, "%s: expected a single value, not a mapping", y->key->info.path);
        }
        if (!config_key_is_section(y->path, y->pathlen))
            return unknown_key(y, line);
        fr->want_value = false;
        base = y->pathlen;
        s = push(y, line, FR_SECTION);
        if (s == SC_OK)
            top(y)->base = base;
        return s;
    case FR_LIST:
        return fail(y, line, "%s: entries must be text, not mappings", fr->key->info.path);
    case FR_RULES:
        if (y->nrules == CONFIG_MAX_RULES)
            return fail(y, line, "classifier.rules: more than %d rules", CONFIG_MAX_RULES);
        s = push(y, line, FR_RULE);
        if (s != SC_OK)
            return s;
        if (y->nrules == y->caprules) {
            y->caprules = y->caprules == 0 ? 8 : 2 * y->caprules;
            y->rules = sc_xrealloc(y->rules, y->caprules * sizeof(*y->rules));
        }
        memset(&y->rules[y->nrules], 0, sizeof(y->rules[0]));
        y->rules[y->nrules].field = POLICY_MATCH_ANY;
        y->nrules++;
        y->rule_have = 0;
        return SC_OK;
    case FR_RULE:
        if (fr->want_value)
            return fail(y, line, "classifier.rules[%zu].%s: expected text", y->nrules - 1,
                        rule_part_names[y->part]);
        return fail(y, line, "mapping keys must be plain text");
    case FR_TEMPLATES:
        if (!fr->want_value)
            return fail(y, line, "mapping keys must be plain text");
        fr->want_value = false;
        y->tpl_have = 0;
        return push(y, line, FR_TEMPLATE);
    case FR_TEMPLATE:
        if (fr->want_value)
            return fail(y, line, "templates.%s.%s: expected %s", tpl_cur(y)->name,
                        tpl_part_names[y->tpart], y->tpart == TP_BACKOFF ? "a list of delays" : "text");
        return fail(y, line, "mapping keys must be plain text");
    case FR_TBACKOFF:
        return fail(y, line, "templates.%s.backoff: entries must be delays, not mappings",
                    tpl_cur(y)->name);
    }
    return SC_EINVAL;
}

static sc_status
on_sequence_start(struct yload *y, const yaml_event_t *ev)
{
    struct frame *fr = top(y);
    const struct config_key *k = y->key;
    size_t line = ev->start_mark.line + 1;
    char p[300];
    sc_status s;

    if (fr == NULL)
        return fail(y, line, "the top level must be a mapping of keys");
    switch (fr->kind) {
    case FR_SECTION:
        if (!fr->want_value)
            return fail(y, line, "mapping keys must be plain text");
        if (k == NULL) {
            if (!config_key_is_section(y->path, y->pathlen))
                return unknown_key(y, line);
            return fail(y, line, "%s: expected a mapping of keys", shown_path(y, p, sizeof(p)));
        }
        if (k->info.type != CONFIG_TYPE_LIST && k->info.type != CONFIG_TYPE_RULES)
            return fail(y, line, "%s: expected a single value, not a list", k->info.path);
        s = mark_seen(y, line, k);
        if (s != SC_OK)
            return s;
        fr->want_value = false;
        s = push(y, line, k->info.type == CONFIG_TYPE_LIST ? FR_LIST : FR_RULES);
        if (s != SC_OK)
            return s;
        top(y)->key = k;
        return SC_OK;
    case FR_LIST:
        return fail(y, line, "%s: entries must be text, not lists", fr->key->info.path);
    case FR_RULES:
        return fail(y, line, "classifier.rules[%zu]: expected a mapping %s", y->nrules, RULE_SHAPE);
    case FR_RULE:
        if (fr->want_value)
            return fail(y, line, "classifier.rules[%zu].%s: expected text", y->nrules - 1,
                        rule_part_names[y->part]);
        return fail(y, line, "mapping keys must be plain text");
    case FR_TEMPLATES:
        if (!fr->want_value)
            return fail(y, line, "mapping keys must be plain text");
        return fail(y, line, "templates.%s: expected a mapping %s", tpl_cur(y)->name, TPL_SHAPE);
    case FR_TEMPLATE:
        if (!fr->want_value)
            return fail(y, line, "mapping keys must be plain text");
        if (y->tpart != TP_BACKOFF)
            return fail(y, line, "templates.%s.%s: expected text", tpl_cur(y)->name,
                        tpl_part_names[y->tpart]);
        fr->want_value = false;
        memset(&y->tdelays, 0, sizeof(y->tdelays));
        return push(y, line, FR_TBACKOFF);
    case FR_TBACKOFF:
        return fail(y, line, "templates.%s.backoff: entries must be delays, not lists",
                    tpl_cur(y)->name);
    }
    return SC_EINVAL;
}

static void
tpls_drop(struct yload *y)
{
    for (size_t i = 0; i < y->ntpls; i++) {
        free(y->tpls[i].name);
        free(y->tpls[i].backoff);
        free(y->tpls[i].retry_subject);
    }
    free(y->tpls);
    y->tpls = NULL;
    y->ntpls = y->captpls = 0;
}

static void
rules_drop(struct yload *y)
{
    size_t i;

    for (i = 0; i < y->nrules; i++) {
        free(y->rules[i].id);
        free(y->rules[i].pattern);
    }
    free(y->rules);
    y->rules = NULL;
    y->nrules = y->caprules = 0;
}

static void
list_drop(struct yload *y)
{
    size_t i;

    for (i = 0; i < y->nlist; i++)
        free(y->list[i]);
    free(y->list);
    y->list = NULL;
    y->nlist = y->caplist = 0;
}

static sc_status
on_end(struct yload *y, const yaml_event_t *ev)
{
    struct frame *fr = top(y);
    size_t line = ev->start_mark.line + 1, i;

    if (fr == NULL)
        return fail(y, line, "unbalanced YAML events");
    switch (fr->kind) {
    case FR_SECTION: break;
    case FR_LIST:
        if (y->list == NULL)
            y->list = sc_xcalloc(1, sizeof(*y->list));
        config_list_replace(y->cfg, fr->key, y->list, y->nlist);
        y->list = NULL;
        y->nlist = y->caplist = 0;
        break;
    case FR_RULES:
        config_rules_replace(y->cfg, y->rules, y->nrules);
        y->rules = NULL;
        y->nrules = y->caprules = 0;
        break;
    case FR_RULE:
        for (i = 0; i < RP_FIELD; i++) {
            if (!(y->rule_have & (1u << i)))
                return fail(y, line, "classifier.rules[%zu]: missing %s", y->nrules - 1,
                            rule_part_names[i]);
        }
        break;    case FR_TEMPLATES:
        config_templates_replace(y->cfg, y->tpls, y->ntpls);
        y->tpls = NULL;
        y->ntpls = y->captpls = 0;
        break;
    case FR_TEMPLATE: break;
    case FR_TBACKOFF:
        if (y->tdelays.n == 0)
            return fail(y, line, "templates.%s.backoff: empty, give 1-%d delays", tpl_cur(y)->name,
                        SC_DELAYS_MAX);
        tpl_set_backoff(y, &y->tdelays);
        break;
    }
    y->depth--;
    return SC_OK;
}

/* The line (1-based) of byte offset off in the text. */
static size_t
line_of(const struct yload *y, size_t off, size_t len)
{
    size_t i, line = 1;

    for (i = 0; i < off && i < len; i++)
        line += y->text[i] == '\n';
    return line;
}

sc_status
config_yaml_apply(struct config *cfg, const char *origin, const char *text, size_t len,
                  char *err, size_t errlen)
{
    struct yload *y = NULL;
    yaml_parser_t parser;
    yaml_event_t ev;
    bool parser_live = false;
    sc_status s = SC_EINVAL;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    y = sc_xcalloc(1, sizeof(*y));
    y->cfg = cfg;
    y->origin = origin;
    y->text = text;
    y->err = err;
    y->errlen = errlen;
    if (len > CONFIG_MAX_FILE_BYTES) {
        s = fail(y, 1, "the configuration is larger than %d bytes", CONFIG_MAX_FILE_BYTES);
        goto done;
    }
    if (!yaml_parser_initialize(&parser)) {
        s = fail(y, 1, "cannot initialise the YAML parser");
        goto done;
    }
    parser_live = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    for (;;) {
        yaml_event_type_t type;
        size_t line;

        if (!yaml_parser_parse(&parser, &ev)) {
            const char *problem = parser.problem != NULL ? parser.problem : "malformed YAML";
            line = parser.error == YAML_READER_ERROR
                       ? line_of(y, parser.problem_offset, len)
                       : parser.problem_mark.line + 1;
            if (parser.context != NULL)
                s = fail(y, line, "%s (%s)", problem, parser.context);
            else
                s = fail(y, line, "%s", problem);
            goto done;
        }
        type = ev.type;
        line = ev.start_mark.line + 1;
        switch (type) {
        case YAML_DOCUMENT_START_EVENT:
            s = ++y->docs > 1 ? fail(y, line, "only one YAML document is allowed") : SC_OK;
            break;
        case YAML_ALIAS_EVENT: s = fail(y, line, "aliases (*name) are not supported"); break;
        case YAML_SCALAR_EVENT: s = on_scalar(y, &ev); break;
        case YAML_MAPPING_START_EVENT: s = on_mapping_start(y, &ev); break;
        case YAML_SEQUENCE_START_EVENT: s = on_sequence_start(y, &ev); break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT: s = on_end(y, &ev); break;
        default: s = SC_OK; break;
        }
        yaml_event_delete(&ev);
        if (s != SC_OK || type == YAML_STREAM_END_EVENT)
            goto done;
    }
done:
    if (parser_live)
        yaml_parser_delete(&parser);
    if (y != NULL) {
        list_drop(y);
        rules_drop(y);
        tpls_drop(y);
        free(y);
    }
    return s;
}

sc_status
config_load_yaml(struct config *cfg, const char *text, size_t len, char *err, size_t errlen)
{
    return config_yaml_apply(cfg, NULL, text, len, err, errlen);
}
