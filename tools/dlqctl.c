/* dlqctl.c - the dlq-sidecar admin API (<prefix>.admin.*) as a command: aligned tables for people, --json for scripts, exit codes that mean something. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <msgpack.h>
#include <nats/nats.h>

#include "codec.h"
#include "common.h"

/* Exit codes (documented in usage() and the README). */
enum {
    EXIT_OK = 0,
    EXIT_ERROR_REPLY = 1, /* the sidecar answered with an error (400, 404, 409, 503) */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_NO_SIDECAR = 3,  /* no sidecar answered: no server, no responders, timeout, refused */
};

#define DEFAULT_URL "nats://127.0.0.1:4222"
#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_PREFIX "dlq"
#define MAX_POSITIONAL 64
#define LIST_PAGE_MAX 1000
#define ERROR_COL_MIN 20     /* the ERROR column keeps at least this many characters */
#define DEFAULT_COLUMNS 160  /* the table width when stdout is no terminal and $COLUMNS is unset */

/* What the command line asked for. Strings are borrowed from argv or the environment. */
struct opts {
    const char *server, *creds, *prefix, *inbox_prefix;
    int64_t timeout_ms;
    bool json;
    /* filters and command options; NULL / -1 / false when absent */
    const char *status, *category, *subject, *cursor, *error, *error_type, *group;
    double older_than_s;  /* -1: absent */
    int64_t limit;        /* -1: absent */
    double rate;          /* -1: absent */
    bool confirm, all, cancel, dry_run, wait;
    const char *watch_subject, *watch_status; /* watch --filter subject=P / status=S */
    const char *pos[MAX_POSITIONAL];
    int npos;
};

static const char *prog = "dlqctl";

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: dlqctl [options] COMMAND [arguments]\n"
            "\n"
            "Commands (each is one request to <prefix>.admin.<verb>):\n"
            "  stats                          queue size, status breakdown, lifetime counters\n"
            "  health                         status of the sidecar, NATS and persistence\n"
            "  list [FILTER] [--limit N] [--cursor C] [--all]\n"
            "                                 task summaries with their last error, one page (--all: every page)\n"
            "  groups [FILTER] [--limit N]    failures grouped by fingerprint (subject, category and the\n"
            "                                 error with numbers and ids left out), largest first\n"
            "  get TASK_ID                    the whole task with its history and payload\n"
            "  retry TASK_ID                  retry one task now (an exhausted task gets one more attempt)\n"
            "  retry FILTER|--all [--rate N]  retry matching tasks (at N tasks/s in the background)\n"
            "  retry --cancel                 stop a running background redrive\n"
            "  archive TASK_ID | FILTER|--all archive tasks\n"
            "  clear FILTER|--all [--confirm] remove tasks (without --confirm: say how many)\n"
            "  --dry-run (retry, archive, clear): say how many tasks would change; change nothing\n"
            "  classify [--error-type T] [ERROR...]\n"
            "                                 dry run of the classifier and the first delays\n"
            "  pause | resume                 stop / restart automatic retries\n"
            "  watch [--filter subject=P|status=S]\n"
            "                                 follow <prefix>.events.> (one line per event, --json raw); Ctrl-C stops\n"
            "  retry FILTER|--all --rate N --wait\n"
            "                                 redrive and show its progress until done (Ctrl-C cancels it, exit 130)\n"
            "  export [FILTER] > FILE         the matching tasks (all without a filter) as JSON lines, exact payloads\n"
            "  import < FILE                  file export's tasks again as failure envelopes (<prefix>.failed.*)\n"
            "  audit [--limit N]              the latest admin actions that changed tasks (default 50),\n"
            "                                 newest first: when, who, verb, task or filter, count\n"
            "  members                        cluster mode: every member, the partitions it serves, its health\n"
            "                                 (asks <prefix>.cluster.admin.health; every member answers)\n"
            "\n"
            "FILTER (any combination; an empty filter needs --all):\n"
            "  --status S        pending (includes parked), parked, retrying, exhausted\n"
            "  --category C      transient, network, resource, permission, validation, permanent\n"
            "  --subject SUBJ    failure subject, wildcards allowed (dlq.failed.orders.>)\n"
            "  --older-than D    created at least D ago: seconds, or 90s, 15m, 2h, 7d\n"
            "  --group G         failure group: the 16 hex digits list and groups show\n"
            "--all: with list, every page (a filter may go with it); with retry, archive\n"
            "  and clear, every task (it sends \"all\": true and takes no filter).\n"
            "\n"
            "Options:\n"
            "  -s, --server URL  NATS server URL(s), comma-separated ($NATS_URL, default %s)\n"
            "      --creds FILE  NATS user credentials file ($NATS_CREDS)\n"
            "      --inbox-prefix P  prefix of this client's reply inboxes ($NATS_INBOX_PREFIX,\n"
            "                    default _INBOX); with docs/nats-auth.conf: _INBOX_operator or _INBOX_viewer\n"
            "      --timeout MS  how long to wait for the sidecar (default %d)\n"
            "      --prefix P    subject prefix of the sidecar (subjects.prefix, default %s)\n"
            "  -j, --json        print the sidecar's JSON reply instead of a table (times stay RFC 3339;\n"
            "                    tables show them relative: 3m ago, in 12s)\n"
            "  -h, --help        this text;  --version  the version\n"
            "\n"
            "Exit codes: 0 ok, 1 the sidecar answered with an error, 2 usage,\n"
            "3 no sidecar answered (no server, no responders, timeout, permission refused).\n",
            DEFAULT_URL, DEFAULT_TIMEOUT_MS, DEFAULT_PREFIX);
}

static int
usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* usage_error() prints "dlqctl: <message>" and a hint; returns EXIT_USAGE. */
static int
usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(dlqctl --help for usage)\n");
    return EXIT_USAGE;
}

/* ---- command-line parsing -------------------------------------------------------------------- */

/* parse_int() reads a whole decimal integer in [min, max]. */
static bool
parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* parse_number() reads a whole finite decimal number > 0 (rates). */
static bool
parse_positive(const char *s, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || v > 1e9)
        return false;
    *out = v;
    return true;
}

/* parse_duration() reads "90", "90s", "15m", "2h" or "7d" into seconds. */
static bool
parse_duration(const char *s, double *out)
{
    char *end;
    double v, mul = 1;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || !(v >= 0))
        return false;
    if (*end) {
        if (end[1])
            return false;
        switch (*end) {
        case 's': mul = 1; break;
        case 'm': mul = 60; break;
        case 'h': mul = 3600; break;
        case 'd': mul = 86400; break;
        default: return false;
        }
    }
    *out = v * mul;
    return *out <= 3.2e9;
}

/* The options, which take a value, and which commands accept them ("*": every command). */
struct optdef {
    const char *name;
    char short_name;
    bool has_value;
    const char *commands;
};

static const struct optdef optdefs[] = {
    {"server", 's', true, "*"},
    {"creds", 0, true, "*"},
    {"inbox-prefix", 0, true, "*"},
    {"timeout", 0, true, "*"},
    {"prefix", 0, true, "*"},
    {"json", 'j', false, "*"},
    {"help", 'h', false, "*"},
    {"version", 0, false, "*"},
    {"status", 0, true, " list retry archive clear groups export "},
    {"category", 0, true, " list retry archive clear groups export "},
    {"subject", 0, true, " list retry archive clear groups export "},
    {"older-than", 0, true, " list retry archive clear groups export "},
    {"group", 0, true, " list retry archive clear groups export "},
    {"dry-run", 0, false, " retry archive clear "},
    {"limit", 0, true, " list groups audit "},
    {"cursor", 0, true, " list "},
    {"all", 0, false, " list retry archive clear "},
    {"rate", 0, true, " retry "},
    {"cancel", 0, false, " retry "},
    {"wait", 0, false, " retry "},
    {"filter", 0, true, " watch "},
    {"confirm", 0, false, " clear "},
    {"error-type", 0, true, " classify "},
    {"error", 0, true, " classify "},
};

/* find_opt() looks an option up by long name (len bytes) or short letter. */
static const struct optdef *
find_opt(const char *name, size_t len, char short_name)
{
    for (size_t i = 0; i < sizeof(optdefs) / sizeof(optdefs[0]); i++) {
        if (short_name ? optdefs[i].short_name == short_name
                       : strlen(optdefs[i].name) == len && strncmp(optdefs[i].name, name, len) == 0)
            return &optdefs[i];
    }
    return NULL;
}

/* accepts() tells whether command cmd takes option d. */
static bool
accepts(const struct optdef *d, const char *cmd)
{
    char word[32];

    if (strcmp(d->commands, "*") == 0)
        return true;
    snprintf(word, sizeof(word), " %s ", cmd);
    return strstr(d->commands, word) != NULL;
}

/*
 * inbox_prefix_ok() tells whether v is a usable inbox prefix: 1-64 bytes,
 * tokens of A-Z a-z 0-9 _ - joined by single dots (the sidecar's
 * nats.inbox_prefix takes the same form).
 */
static bool
inbox_prefix_ok(const char *v)
{
    size_t n = strlen(v);

    if (n == 0 || n > 64 || v[0] == '.' || v[n - 1] == '.' || strstr(v, ".."))
        return false;
    return strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.") == n;
}

/* Returns -1 when parsing may go on, else the exit code (help and version exit 0). */
static int
set_opt(struct opts *o, const struct optdef *d, const char *v)
{
    const char *n = d->name;

    if (strcmp(n, "server") == 0)
        o->server = v;
    else if (strcmp(n, "creds") == 0)
        o->creds = v;
    else if (strcmp(n, "inbox-prefix") == 0) {
        if (!inbox_prefix_ok(v))
            return usage_error("--inbox-prefix: '%s' is not a subject prefix (tokens of A-Z a-z 0-9 "
                               "_ - joined by '.', no wildcard, at most 64 bytes)", v);
        o->inbox_prefix = v;
    }
    else if (strcmp(n, "prefix") == 0) {
        if (!*v || strpbrk(v, ". *>\t\r\n"))
            return usage_error("--prefix: '%s' is not one NATS subject token", v);
        o->prefix = v;
    } else if (strcmp(n, "timeout") == 0) {
        if (!parse_int(v, 1, 3600000, &o->timeout_ms))
            return usage_error("--timeout: '%s' is not a number of milliseconds 1-3600000", v);
    } else if (strcmp(n, "json") == 0)
        o->json = true;
    else if (strcmp(n, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    } else if (strcmp(n, "version") == 0) {
        printf("dlqctl %s (nats.c %s)\n", DLQ_VERSION, nats_GetVersion());
        return EXIT_OK;
    } else if (strcmp(n, "status") == 0)
        o->status = v;
    else if (strcmp(n, "category") == 0)
        o->category = v;
    else if (strcmp(n, "subject") == 0)
        o->subject = v;
    else if (strcmp(n, "group") == 0) {
        if (strlen(v) != 16 || strspn(v, "0123456789abcdefABCDEF") != 16)
            return usage_error("--group: '%s' is not a group (16 hex digits, as list and groups show)", v);
        o->group = v;
    } else if (strcmp(n, "dry-run") == 0)
        o->dry_run = true;
    else if (strcmp(n, "older-than") == 0) {
        if (!parse_duration(v, &o->older_than_s))
            return usage_error("--older-than: '%s' is not a duration (90, 90s, 15m, 2h, 7d)", v);
    } else if (strcmp(n, "limit") == 0) {
        if (!parse_int(v, 1, LIST_PAGE_MAX, &o->limit))
            return usage_error("--limit: '%s' is not a number 1-%d", v, LIST_PAGE_MAX);
    } else if (strcmp(n, "cursor") == 0)
        o->cursor = v;
    else if (strcmp(n, "all") == 0)
        o->all = true;
    else if (strcmp(n, "rate") == 0) {
        if (!parse_positive(v, &o->rate))
            return usage_error("--rate: '%s' is not a number of tasks per second > 0", v);
    } else if (strcmp(n, "cancel") == 0)
        o->cancel = true;
    else if (strcmp(n, "wait") == 0)
        o->wait = true;
    else if (strcmp(n, "filter") == 0) {
        if (strncmp(v, "subject=", 8) == 0 && v[8])
            o->watch_subject = v + 8;
        else if (strncmp(v, "status=", 7) == 0 && v[7])
            o->watch_status = v + 7;
        else
            return usage_error("--filter: '%s' is not subject=PATTERN or status=STATUS", v);
    }
    else if (strcmp(n, "confirm") == 0)
        o->confirm = true;
    else if (strcmp(n, "error-type") == 0)
        o->error_type = v;
    else if (strcmp(n, "error") == 0)
        o->error = v;
    return -1;
}

/*
 * parse_args() fills o from argv: options may come before or after the
 * command ("--name value", "--name=value", "-s value", "-j"); "--" ends
 * options. The command is the first positional argument. Returns -1 to go
 * on, or an exit code.
 */
static int
parse_args(int argc, char **argv, struct opts *o)
{
    const char *cmd = NULL;
    bool only_pos = false;
    int rc;

    /* The command decides which options are allowed: find it first. */
    for (int i = 1; i < argc; i++) {
        const struct optdef *d = NULL;
        if (strcmp(argv[i], "--") == 0)
            break;
        if (argv[i][0] != '-' || argv[i][1] == '\0') {
            cmd = argv[i];
            break;
        }
        if (argv[i][1] == '-') {
            const char *eq = strchr(argv[i] + 2, '=');
            d = find_opt(argv[i] + 2, eq ? (size_t)(eq - argv[i] - 2) : strlen(argv[i] + 2), 0);
            if (d && d->has_value && !eq)
                i++;
        } else if (!argv[i][2]) {
            d = find_opt(NULL, 0, argv[i][1]);
            if (d && d->has_value)
                i++;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        const struct optdef *d;

        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (o->npos == MAX_POSITIONAL)
                return usage_error("too many arguments");
            o->pos[o->npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            if (!(d = find_opt(a + 2, len, 0)))
                return usage_error("unknown option '%s'", a);
            if (eq) {
                if (!d->has_value)
                    return usage_error("option --%s takes no value", d->name);
                v = eq + 1;
            }
        } else {
            if (a[2] || !(d = find_opt(NULL, 0, a[1])))
                return usage_error("unknown option '%s'", a);
        }
        if (d->has_value && !v) {
            if (i + 1 >= argc)
                return usage_error("option --%s needs a value", d->name);
            v = argv[++i];
        }
        if (cmd && !accepts(d, cmd))
            return usage_error("'%s' takes no option --%s", cmd, d->name);
        if ((rc = set_opt(o, d, v)) >= 0)
            return rc;
    }
    return -1;
}

/* ---- NATS ------------------------------------------------------------------------------------ */

/* open_conn() opens a connection that gives up at once (no reconnects). Returns EXIT_OK or EXIT_NO_SIDECAR. */
static int
open_conn(const struct opts *o, natsConnection **nc)
{
    natsOptions *no = NULL;
    natsStatus s;
    char *urls = strdup(o->server), *save = NULL, *tok;
    const char *servers[32];
    int n = 0;

    if (!urls)
        return EXIT_NO_SIDECAR;
    for (tok = strtok_r(urls, ",", &save); tok && n < 32; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (*tok)
            servers[n++] = tok;
    }
    s = natsOptions_Create(&no);
    if (s == NATS_OK)
        s = n ? natsOptions_SetServers(no, servers, n) : NATS_INVALID_ARG;
    if (s == NATS_OK)
        s = natsOptions_SetName(no, "dlqctl");
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(no, o->timeout_ms);
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(no, false);
    if (s == NATS_OK && o->creds && *o->creds)
        s = natsOptions_SetUserCredentialsFromFiles(no, o->creds, NULL);
    if (s == NATS_OK && o->inbox_prefix && *o->inbox_prefix)
        s = natsOptions_SetCustomInboxPrefix(no, o->inbox_prefix);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, no);
    natsOptions_Destroy(no);
    if (s != NATS_OK) {
        fprintf(stderr, "%s: cannot connect to %s: %s\n", prog, o->server, natsStatus_GetText(s));
        const char *last = nats_GetLastError(NULL);
        /* nats.c prefixes its detail with "(file.c:line): "; users want the sentence only. */
        if (last && last[0] == '(' && strstr(last, "): "))
            last = strstr(last, "): ") + 3;
        if (last && *last && strcmp(last, natsStatus_GetText(s)) != 0)
            fprintf(stderr, "%s: %s\n", prog, last);
        free(urls);
        return EXIT_NO_SIDECAR;
    }
    free(urls);
    return EXIT_OK;
}

/*
 * request() sends body (a JSON object, may be NULL for an empty request) to
 * <prefix>.admin.<verb> and parses the reply into *reply (new reference).
 * Returns EXIT_OK, EXIT_ERROR_REPLY (the reply is an error; *reply holds it
 * when it was JSON and *code the error code) or EXIT_NO_SIDECAR, with a
 * message on stderr for the last two.
 */
/*
 * report_refusal() prints the server's permissions violation when the last
 * error of nc is one (a request that timed out because the server refused
 * its publish, or the subscription of this client's reply inbox: a missing
 * or wrong --inbox-prefix), with a hint. Returns true when it printed.
 */
static bool
report_refusal(natsConnection *nc, const char *subj)
{
    const char *txt = NULL;

    if (natsConnection_GetLastError(nc, &txt) != NATS_NOT_PERMITTED || !txt)
        return false;
    fprintf(stderr, "%s: the NATS server refused this user: %s (asking %s)\n", prog, txt, subj);
    if (strstr(txt, "Subscription"))
        fprintf(stderr, "%s: this user may not subscribe to its reply inbox: give --inbox-prefix "
                        "(or $NATS_INBOX_PREFIX) the prefix its permissions allow\n", prog);
    return true;
}

static int
request(natsConnection *nc, const struct opts *o, const char *verb, json_t *body, json_t **reply,
        int *code)
{
    char subj[256], *text = NULL;
    natsMsg *m = NULL;
    natsStatus s;
    const char *hv = NULL;
    json_error_t jerr;
    int rc = EXIT_NO_SIDECAR;

    *reply = NULL;
    *code = 0;
    snprintf(subj, sizeof(subj), "%s.admin.%s", o->prefix, verb);
    if (body && !(text = json_dumps(body, JSON_COMPACT)))
        return usage_error("cannot encode the request");
    s = natsConnection_Request(&m, nc, subj, text ? text : "", text ? (int)strlen(text) : 0,
                               o->timeout_ms);
    free(text);
    if (s == NATS_NO_RESPONDERS) {
        fprintf(stderr, "%s: no sidecar answered on %s (no responders: is dlq-sidecar running with "
                        "prefix '%s'?)\n", prog, subj, o->prefix);
        goto done;
    }
    if (s == NATS_TIMEOUT) {
        if (report_refusal(nc, subj))
            goto done;
        fprintf(stderr, "%s: no sidecar answered on %s within %lld ms (timeout)\n", prog, subj,
                (long long)o->timeout_ms);
        goto done;
    }
    if (s != NATS_OK) {
        fprintf(stderr, "%s: request on %s failed: %s\n", prog, subj, natsStatus_GetText(s));
        goto done;
    }
    *reply = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &jerr);
    if (natsMsgHeader_Get(m, "Nats-Service-Error-Code", &hv) == NATS_OK && hv) {
        const char *msg = NULL;
        *code = atoi(hv);
        natsMsgHeader_Get(m, "Nats-Service-Error", &msg);
        fprintf(stderr, "%s: %s: %s %s\n", prog, verb, hv, msg ? msg : "error");
        if (json_object_get(json_object_get(*reply, "error"), "would_clear"))
            fprintf(stderr, "%s: add --confirm to clear them\n", prog);
        rc = EXIT_ERROR_REPLY;
        goto done;
    }
    if (!*reply || !json_is_object(*reply)) {
        fprintf(stderr, "%s: %s: the reply is not a JSON object: %.*s\n", prog, verb,
                natsMsg_GetDataLength(m) > 200 ? 200 : natsMsg_GetDataLength(m), natsMsg_GetData(m));
        rc = EXIT_ERROR_REPLY;
        goto done;
    }
    if (json_is_object(json_object_get(*reply, "error"))) {
        json_t *e = json_object_get(*reply, "error");
        *code = (int)json_integer_value(json_object_get(e, "code"));
        fprintf(stderr, "%s: %s: %d %s\n", prog, verb, *code,
                json_string_value(json_object_get(e, "message")) ? json_string_value(json_object_get(e, "message")) : "error");
        rc = EXIT_ERROR_REPLY;
        goto done;
    }
    rc = EXIT_OK;
done:
    natsMsg_Destroy(m);
    return rc;
}

/* ---- output ---------------------------------------------------------------------------------- */

/* display_width() counts UTF-8 code points (good enough for alignment). */
static size_t
display_width(const char *s)
{
    size_t w = 0;

    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

static void
pad(size_t n)
{
    while (n--)
        putchar(' ');
}

/* The most columns a table has, the indent column of print_array_table() included. */
#define MAX_COLS 32

/* A table of strings: rows[0] is the header. Cells are owned by the table. */
struct table {
    char ***rows;
    size_t nrows, ncols;
};

static void
table_init(struct table *t, size_t ncols)
{
    t->rows = NULL;
    t->nrows = 0;
    t->ncols = ncols < MAX_COLS ? ncols : MAX_COLS;
}

/* table_add() appends a row of ncols cells (copied; NULL prints as "-"). */
static void
table_add(struct table *t, const char *const *cells)
{
    char ***rows = realloc(t->rows, (t->nrows + 1) * sizeof(*rows));
    char **row = calloc(t->ncols, sizeof(*row));

    if (!rows || !row) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(EXIT_NO_SIDECAR);
    }
    t->rows = rows;
    for (size_t c = 0; c < t->ncols; c++)
        row[c] = strdup(cells[c] ? cells[c] : "-");
    t->rows[t->nrows++] = row;
}

/* table_print() prints the rows with every column as wide as its widest cell, two spaces apart. */
static void
table_print(const struct table *t)
{
    size_t w[MAX_COLS] = {0};

    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols && c < MAX_COLS; c++)
            if (display_width(t->rows[r][c]) > w[c])
                w[c] = display_width(t->rows[r][c]);
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols && c < MAX_COLS; c++) {
            fputs(t->rows[r][c], stdout);
            if (c + 1 < t->ncols)
                pad(w[c] - display_width(t->rows[r][c]) + 2);
        }
        putchar('\n');
    }
}

static void
table_free(struct table *t)
{
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++)
            free(t->rows[r][c]);
        free(t->rows[r]);
    }
    free(t->rows);
    t->rows = NULL;
    t->nrows = 0;
}

/*
 * parse_rfc3339() reads "YYYY-MM-DDTHH:MM:SS[.fff...](Z|+HH:MM|-HH:MM)"
 * (what the sidecar writes) into ms since the epoch; false for anything else.
 */
static bool
parse_rfc3339(const char *s, int64_t *ms)
{
    struct tm tm = {0};
    int n = 0, frac_ms = 0, digits = 0;
    const char *p;
    int64_t off = 0;

    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec, &n) != 6 || n != 19)
        return false;
    p = s + n;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
        if (!digits)
            return false;
        for (; digits < 3; digits++)
            frac_ms *= 10;
    }
    if (*p == 'Z' && !p[1]) {
        off = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int h, m;
        if (sscanf(p + 1, "%2d:%2d", &h, &m) != 2)
            return false;
        off = (*p == '+' ? 1 : -1) * ((int64_t)h * 3600 + m * 60);
    } else {
        return false;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *ms = ((int64_t)timegm(&tm) - off) * 1000 + frac_ms;
    return true;
}

/* relative() writes the time at ms (epoch ms) relative to now: "3m ago", "in 12s", "now". */
static const char *
relative(int64_t ms, char *buf, size_t len)
{
    struct timespec ts;
    int64_t now, d, a;
    const char *unit = "s";

    clock_gettime(CLOCK_REALTIME, &ts);
    now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    d = (ms - now) / 1000;
    a = d < 0 ? -d : d;
    if (a == 0) {
        snprintf(buf, len, "now");
        return buf;
    }
    if (a >= 2 * 86400) {
        a /= 86400;
        unit = "d";
    } else if (a >= 2 * 3600) {
        a /= 3600;
        unit = "h";
    } else if (a >= 2 * 60) {
        a /= 60;
        unit = "m";
    }
    snprintf(buf, len, d < 0 ? "%lld%s ago" : "in %lld%s", (long long)a, unit);
    return buf;
}

/* time_cell() renders a JSON time (RFC 3339 string) for a table: relative; null or absent as "-". */
static const char *
time_cell(const json_t *v, char *buf, size_t len)
{
    int64_t ms;

    if (!json_is_string(v))
        return "-";
    if (!parse_rfc3339(json_string_value(v), &ms))
        return json_string_value(v);
    return relative(ms, buf, len);
}

/* term_columns() is the width tables fit: the terminal's, else $COLUMNS, else DEFAULT_COLUMNS. */
static size_t
term_columns(void)
{
    struct winsize ws;
    const char *c = getenv("COLUMNS");
    int64_t n;

    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    if (c && parse_int(c, 20, 10000, &n))
        return (size_t)n;
    return DEFAULT_COLUMNS;
}

/*
 * cut_text() returns a new string: s with control characters as spaces,
 * cut to at most width code points, the last of them "…" when anything was
 * left off (or when more is set: the sidecar already cut it).
 */
static char *
cut_text(const char *s, size_t width, bool more)
{
    size_t len = strlen(s), n = 0, cps = 0, i;
    char *out = malloc(len + 4);

    if (!out) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(EXIT_NO_SIDECAR);
    }
    if (width < 2)
        width = 2;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xc0) != 0x80) { /* a code point starts */
            if (cps == width - 1 && (display_width(s + i) > 1 || more))
                break;
            if (cps == width)
                break;
            cps++;
        }
        out[n++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    if (i < len || more) {
        memcpy(out + n, "\xe2\x80\xa6", 3); /* … */
        n += 3;
    }
    out[n] = '\0';
    return out;
}

/*
 * fit_last_column() cuts every cell of t's last column (row 0, the header,
 * stays) so that the table fits term_columns(), keeping at least
 * ERROR_COL_MIN characters; more[r] (NULL: none) marks rows whose text the
 * sidecar already cut.
 */
static void
fit_last_column(struct table *t, const bool *more)
{
    size_t used = 0, last = t->ncols - 1, cols = term_columns(), width;

    for (size_t c = 0; c < last; c++) {
        size_t w = 0;
        for (size_t r = 0; r < t->nrows; r++)
            if (display_width(t->rows[r][c]) > w)
                w = display_width(t->rows[r][c]);
        used += w + 2;
    }
    width = cols > used + ERROR_COL_MIN ? cols - used : ERROR_COL_MIN;
    for (size_t r = 1; r < t->nrows; r++) {
        char *cut = cut_text(t->rows[r][last], width, more && more[r]);
        free(t->rows[r][last]);
        t->rows[r][last] = cut;
    }
}

/* scalar() renders a JSON scalar (or compact JSON for the rest) into buf; a missing value (NULL) as "-". */
static const char *
scalar(const json_t *v, char *buf, size_t len)
{
    char *s;

    if (!v) {
        snprintf(buf, len, "-");
        return buf;
    }
    switch (json_typeof(v)) {
    case JSON_STRING: snprintf(buf, len, "%s", json_string_value(v)); break;
    case JSON_INTEGER: snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: snprintf(buf, len, "%g", json_real_value(v)); break;
    case JSON_TRUE: snprintf(buf, len, "true"); break;
    case JSON_FALSE: snprintf(buf, len, "false"); break;
    case JSON_NULL: snprintf(buf, len, "-"); break;
    default:
        s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(buf, len, "%s", s ? s : "?");
        free(s);
    }
    return buf;
}

/* is_section() tells whether v prints as its own indented block (an object, or an array of objects). */
static bool
is_section(const json_t *v, const char *k)
{
    /* Payloads stay one line of JSON: they are data, not structure. */
    if (strcmp(k, "task") == 0 || strcmp(k, "metadata") == 0 || strcmp(k, "repos") == 0)
        return false;
    if (json_is_object(v))
        return json_object_size(v) > 0;
    return json_is_array(v) && json_array_size(v) > 0 && json_is_object(json_array_get(v, 0));
}

/* title() turns "status_breakdown" into "status breakdown". */
static const char *
title(const char *k, char *buf, size_t len)
{
    size_t i = 0;

    for (; k[i] && i + 1 < len; i++)
        buf[i] = k[i] == '_' ? ' ' : k[i];
    buf[i] = '\0';
    return buf;
}

static void print_object(const json_t *obj, int indent);

/* print_array_table() prints an array of objects as a table with the union of their keys as columns. */
static void
print_array_table(const json_t *arr, int indent)
{
    /* Column 0 is the indent: at most MAX_COLS - 1 keys, the rest (if any) are dropped. */
    const char *cols[MAX_COLS - 1];
    size_t ncols = 0, i;
    const json_t *row;
    struct table t;
    char bufs[MAX_COLS - 1][512];
    const char *cells[MAX_COLS];

    json_array_foreach(arr, i, row) {
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)row, k, v) {
            size_t c;
            for (c = 0; c < ncols && strcmp(cols[c], k) != 0; c++)
                ;
            if (c == ncols && ncols < MAX_COLS - 1)
                cols[ncols++] = k;
        }
    }
    table_init(&t, ncols + 1);
    cells[0] = "";
    for (size_t c = 0; c < ncols; c++)
        cells[c + 1] = title(cols[c], bufs[c], sizeof(bufs[c]));
    table_add(&t, cells);
    json_array_foreach(arr, i, row) {
        for (size_t c = 0; c < ncols; c++) {
            const json_t *v = json_object_get(row, cols[c]);
            int64_t ms;
            if (json_is_string(v) && parse_rfc3339(json_string_value(v), &ms))
                cells[c + 1] = relative(ms, bufs[c], sizeof(bufs[c]));
            else
                cells[c + 1] = v ? scalar(v, bufs[c], sizeof(bufs[c])) : "";
        }
        table_add(&t, cells);
    }
    /* The empty first column carries the indent. */
    for (size_t r = 0; r < t.nrows; r++) {
        free(t.rows[r][0]);
        t.rows[r][0] = calloc((size_t)indent + 1, 1);
        if (t.rows[r][0])
            memset(t.rows[r][0], ' ', (size_t)(indent > 2 ? indent - 2 : 0));
    }
    table_print(&t);
    table_free(&t);
}

/*
 * print_object() prints obj as aligned "key  value" lines, then each nested
 * object or array of objects as a titled block indented two more columns.
 */
static void
print_object(const json_t *obj, int indent)
{
    const char *k;
    const json_t *v;
    size_t w = 0;
    char buf[4096], tbuf[128];

    json_object_foreach((json_t *)obj, k, v)
        if (!is_section(v, k) && display_width(k) > w)
            w = display_width(k);
    json_object_foreach((json_t *)obj, k, v) {
        if (is_section(v, k))
            continue;
        int64_t ms;
        pad((size_t)indent);
        fputs(title(k, tbuf, sizeof(tbuf)), stdout);
        pad(w - display_width(k) + 2);
        if (json_is_string(v) && parse_rfc3339(json_string_value(v), &ms))
            printf("%s (%s)\n", json_string_value(v), relative(ms, tbuf, sizeof(tbuf)));
        else
            puts(scalar(v, buf, sizeof(buf)));
    }
    json_object_foreach((json_t *)obj, k, v) {
        if (!is_section(v, k))
            continue;
        pad((size_t)indent);
        printf("%s:\n", title(k, tbuf, sizeof(tbuf)));
        if (json_is_object(v))
            print_object(v, indent + 2);
        else
            print_array_table(v, indent + 2);
    }
}

/*
 * shell_quote() prints s as one POSIX shell word: in single quotes, each ' as
 * '\'' (close, escaped quote, reopen). Unless always, a word of only safe
 * characters prints bare. The "next page" hint is meant to be pasted into a
 * shell, and the cursor (a task_id) and the subject may hold any character.
 */
static void
shell_quote(const char *s, bool always)
{
    static const char safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.,:/=@+%";

    if (!always && *s && strspn(s, safe) == strlen(s)) {
        fputs(s, stdout);
        return;
    }
    putchar('\'');
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*s);
    }
    putchar('\'');
}

/* shell_arg() prints flag (with its spaces), then value as one shell word. */
static void
shell_arg(const char *flag, const char *value, bool always)
{
    fputs(flag, stdout);
    shell_quote(value ? value : "", always);
}

/* print_tasks() prints list summaries as one table; times relative, the last error cut to fit. */
static void
print_tasks(const json_t *tasks)
{
    static const char *const head[] = {"TASK_ID", "STATUS", "CATEGORY", "RETRIES",
                                       "SUBJECT", "CREATED", "NEXT_RETRY", "ERROR"};
    struct table t;
    size_t i;
    const json_t *task;
    bool *more = calloc(json_array_size(tasks) + 1, sizeof(*more));

    table_init(&t, 8);
    table_add(&t, head);
    json_array_foreach(tasks, i, task) {
        char retries[64], b[4][512];
        const char *status = json_string_value(json_object_get(task, "status"));
        const char *cells[8];
        if (json_is_true(json_object_get(task, "parked")))
            status = "parked";
        else if (json_array_size(json_object_get(task, "waiting_for")) > 0)
            status = "pending (waiting)"; /* held by depends_on: never sent until released */
        else if (json_is_true(json_object_get(task, "no_workers")))
            status = "pending (no workers)"; /* its retry subject's last retry: no responders */
        snprintf(retries, sizeof(retries), "%s/%s",
                 scalar(json_object_get(task, "retry_count"), b[0], sizeof(b[0])),
                 scalar(json_object_get(task, "max_retries"), b[1], sizeof(b[1])));
        cells[0] = json_string_value(json_object_get(task, "task_id"));
        cells[1] = status;
        cells[2] = json_string_value(json_object_get(task, "error_category"));
        cells[3] = retries;
        cells[4] = json_string_value(json_object_get(task, "subject"));
        cells[5] = time_cell(json_object_get(task, "created_at"), b[2], sizeof(b[2]));
        cells[6] = time_cell(json_object_get(task, "next_retry_at"), b[3], sizeof(b[3]));
        cells[7] = json_string_value(json_object_get(task, "error"));
        if (more)
            more[i + 1] = json_is_true(json_object_get(task, "error_truncated"));
        table_add(&t, cells);
    }
    fit_last_column(&t, more);
    table_print(&t);
    table_free(&t);
    free(more);
}

/* print_groups() prints the groups verb's answer as one table, largest first, the error cut to fit. */
static void
print_groups(const json_t *groups)
{
    static const char *const head[] = {"COUNT", "GROUP", "SUBJECT", "CATEGORY", "LAST-SEEN", "ERROR"};
    struct table t;
    size_t i;
    const json_t *g;

    table_init(&t, 6);
    table_add(&t, head);
    json_array_foreach(groups, i, g) {
        char count[32], when[64];
        const char *cells[6];
        cells[0] = scalar(json_object_get(g, "count"), count, sizeof(count));
        cells[1] = json_string_value(json_object_get(g, "group"));
        cells[2] = json_string_value(json_object_get(g, "subject"));
        cells[3] = json_string_value(json_object_get(g, "category"));
        cells[4] = time_cell(json_object_get(g, "last_seen"), when, sizeof(when));
        cells[5] = json_string_value(json_object_get(g, "error"));
        table_add(&t, cells);
    }
    fit_last_column(&t, NULL);
    table_print(&t);
    table_free(&t);
}

/* print_json() prints v compactly on one line (what scripts read). */
static void
print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

    if (s)
        puts(s);
    free(s);
}

/* ---- commands -------------------------------------------------------------------------------- */

/* filter_body() builds the request's filter keys; returns the number of filter keys set. */
static int
filter_body(const struct opts *o, json_t *body)
{
    int n = 0;

    if (o->status && ++n)
        json_object_set_new(body, "status", json_string(o->status));
    if (o->category && ++n)
        json_object_set_new(body, "category", json_string(o->category));
    if (o->subject && ++n)
        json_object_set_new(body, "subject", json_string(o->subject));
    if (o->older_than_s >= 0 && ++n)
        json_object_set_new(body, "older_than_s", json_real(o->older_than_s));
    if (o->group && ++n)
        json_object_set_new(body, "group", json_string(o->group));
    return n;
}

/* cmd_list() lists one page, or every page with --all (merged into one table / one JSON object). */
static int
cmd_list(natsConnection *nc, const struct opts *o)
{
    json_t *all = json_array(), *reply = NULL, *body, *next = NULL, *total = NULL;
    json_t *missing = json_array(); /* cluster mode: partitions no member served, over every page */
    char cursor[2100] = ""; /* "<seq>:<task_id>": 20 digits, ':' and an id of up to 1024 bytes, escaped */
    int rc = EXIT_OK, code;

    if (o->cursor)
        snprintf(cursor, sizeof(cursor), "%s", o->cursor);
    for (;;) {
        body = json_object();
        filter_body(o, body);
        if (o->limit > 0)
            json_object_set_new(body, "limit", json_integer(o->limit));
        else if (o->all)
            json_object_set_new(body, "limit", json_integer(LIST_PAGE_MAX));
        if (*cursor)
            json_object_set_new(body, "cursor", json_string(cursor));
        rc = request(nc, o, "list", body, &reply, &code);
        json_decref(body);
        if (rc != EXIT_OK)
            goto done;
        json_array_extend(all, json_object_get(reply, "tasks"));
        /* Cluster mode: partitions whose owner did not answer; their tasks are not in the page. */
        json_t *pm = json_object_get(reply, "partitions_missing");
        if (json_array_size(pm)) {
            size_t i;
            json_t *v;
            json_array_foreach(pm, i, v) {
                size_t j;
                json_t *w;
                bool seen = false;
                json_array_foreach(missing, j, w) seen = seen || json_equal(v, w);
                if (!seen)
                    json_array_append(missing, v);
            }
        }
        json_decref(next);
        json_decref(total);
        next = json_incref(json_object_get(reply, "next_cursor"));
        total = json_incref(json_object_get(reply, "total"));
        json_decref(reply);
        reply = NULL;
        if (!o->all || !json_is_string(next))
            break;
        snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
    }
    if (json_array_size(missing)) {
        char *text = json_dumps(missing, JSON_COMPACT);
        fprintf(stderr, "%s: list: incomplete: partitions %s have no owner right now (a member "
                        "died or a takeover is loading); their tasks are not listed\n",
                prog, text ? text : "?");
        free(text);
    }
    if (o->json) {
        json_t *out = json_pack("{s:O,s:O,s:O}", "tasks", all, "next_cursor", next ? next : json_null(),
                                "total", total ? total : json_integer((json_int_t)json_array_size(all)));
        if (json_array_size(missing))
            json_object_set(out, "partitions_missing", missing);
        print_json(out);
        json_decref(out);
    } else {
        print_tasks(all);
        printf("\n%zu shown, %" JSON_INTEGER_FORMAT " match", json_array_size(all),
               json_integer_value(total));
        if (json_is_string(next)) {
            /* The hint repeats the filter and the page size: the cursor alone would list everything. */
            printf("; next page: dlqctl list");
            if (o->status)
                shell_arg(" --status ", o->status, false);
            if (o->category)
                shell_arg(" --category ", o->category, false);
            if (o->subject)
                shell_arg(" --subject ", o->subject, true);
            if (o->older_than_s >= 0)
                printf(" --older-than %.15g", o->older_than_s);  /* %g keeps fractions; 15 digits round-trip */
            if (o->group)
                printf(" --group %s", o->group);
            if (o->limit > 0)
                printf(" --limit %d", (int)o->limit);
            shell_arg(" --cursor ", json_string_value(next), true);
            printf(" (or --all)\n");
        }
        else
            printf("; end of list\n");
    }
done:
    if (rc == EXIT_ERROR_REPLY && o->json && reply)
        print_json(reply);
    json_decref(reply);
    json_decref(all);
    json_decref(next);
    json_decref(total);
    json_decref(missing);
    return rc;
}

/* cmd_groups() asks for the failure groups matching the filter and prints them (a table or JSON). */
static int
cmd_groups(natsConnection *nc, const struct opts *o)
{
    json_t *body = json_object(), *reply = NULL;
    int code, rc;

    filter_body(o, body);
    if (o->limit > 0)
        json_object_set_new(body, "limit", json_integer(o->limit));
    rc = request(nc, o, "groups", body, &reply, &code);
    json_decref(body);
    if (o->json && reply) {
        print_json(reply);
    } else if (rc == EXIT_OK) {
        json_t *groups = json_object_get(reply, "groups");
        print_groups(groups);
        printf("\n%zu group%s\n", json_array_size(groups), json_array_size(groups) == 1 ? "" : "s");
    }
    json_decref(reply);
    return rc;
}

/* run_simple() sends body to verb and prints the reply as a table or JSON. */
static int
run_simple(natsConnection *nc, const struct opts *o, const char *verb, json_t *body)
{
    json_t *reply = NULL;
    int code, rc = request(nc, o, verb, body, &reply, &code);

    if (rc == EXIT_OK || (rc == EXIT_ERROR_REPLY && o->json && reply)) {
        if (o->json)
            print_json(reply);
        else
            print_object(reply, 0);
    }
    json_decref(reply);
    return rc;
}

static int cmd_retry_wait(natsConnection *nc, const struct opts *o, json_t *body);

/*
 * cmd_audit() prints the latest audit records (the audit verb, newest
 * first) as a table: time, principal, verb, the task or the filter, count,
 * and "dry run" when nothing changed.
 */
static int
cmd_audit(natsConnection *nc, const struct opts *o)
{
    json_t *body = json_object(), *reply = NULL, *rec;
    struct table t;
    size_t i;
    int code, rc;

    if (o->limit > 0)
        json_object_set_new(body, "limit", json_integer(o->limit));
    rc = request(nc, o, "audit", body, &reply, &code);
    json_decref(body);
    if (o->json && reply && (rc == EXIT_OK || rc == EXIT_ERROR_REPLY)) {
        print_json(reply);
    } else if (rc == EXIT_OK) {
        const char *head[] = {"TIME", "PRINCIPAL", "VERB", "TASK / FILTER", "COUNT", "DRY RUN"};
        table_init(&t, 6);
        table_add(&t, head);
        json_array_foreach(json_object_get(reply, "records"), i, rec) {
            char what[256], count[32], when[64];
            const json_t *tid = json_object_get(rec, "task_id");
            char *filter = json_is_string(tid) ? NULL : json_dumps(json_object_get(rec, "filter"),
                                                                   JSON_COMPACT | JSON_SORT_KEYS);
            snprintf(what, sizeof(what), "%s", json_is_string(tid) ? json_string_value(tid)
                                               : filter               ? filter
                                                                      : "-");
            scalar(json_object_get(rec, "count"), count, sizeof(count));
            const char *row[] = {time_cell(json_object_get(rec, "time"), when, sizeof(when)),
                                 json_string_value(json_object_get(rec, "principal")),
                                 json_string_value(json_object_get(rec, "verb")), what, count,
                                 json_is_true(json_object_get(rec, "dry_run")) ? "yes" : "no"};
            table_add(&t, row);
            free(filter);
        }
        if (t.nrows == 1)
            printf("no audit records\n");
        else
            table_print(&t);
        table_free(&t);
    }
    json_decref(reply);
    return rc;
}

/* cmd_action() runs retry, archive or clear: one task (TASK_ID) or a filter. */
static int
cmd_action(natsConnection *nc, const struct opts *o, const char *verb)
{
    json_t *body = json_object();
    int rc, nfilter = filter_body(o, body);

    if (o->cancel) {
        if (o->npos > 1 || nfilter || o->rate > 0 || o->all) {
            json_decref(body);
            return usage_error("retry --cancel takes nothing else");
        }
        json_object_set_new(body, "cancel", json_true());
    } else if (o->npos == 2) {
        if (nfilter || o->all || o->rate > 0) {
            json_decref(body);
            return usage_error("%s: give a TASK_ID or a filter, not both", verb);
        }
        json_object_set_new(body, "task_id", json_string(o->pos[1]));
    } else if (o->npos > 2) {
        json_decref(body);
        return usage_error("%s: one TASK_ID at most", verb);
    } else if (!nfilter && !o->all) {
        json_decref(body);
        return usage_error("%s: give a TASK_ID, a filter (--status, --category, --subject, "
                           "--older-than, --group) or --all",
                           verb);
    } else if (nfilter && o->all) {
        json_decref(body);
        return usage_error("%s: --all means every task; give a filter or --all, not both", verb);
    } else if (o->all) {
        /* The sidecar refuses an empty filter unless the request says "all" (DESIGN section 8). */
        json_object_set_new(body, "all", json_true());
    }
    if (o->rate > 0)
        json_object_set_new(body, "rate", json_real(o->rate));
    if (o->confirm)
        json_object_set_new(body, "confirm", json_true());
    if (o->dry_run) {
        if (o->cancel || o->wait) {
            json_decref(body);
            return usage_error("--dry-run goes without --cancel and --wait");
        }
        json_object_set_new(body, "dry_run", json_true());
    }
    if (o->wait) {
        if (o->rate <= 0 || o->cancel || o->npos == 2) {
            json_decref(body);
            return usage_error("retry --wait goes with a filter (or --all) and --rate N");
        }
        rc = cmd_retry_wait(nc, o, body);
        json_decref(body);
        return rc;
    }
    rc = run_simple(nc, o, verb, body);
    json_decref(body);
    return rc;
}

/*
 * cmd_members() asks every cluster member for its own health on
 * <prefix>.cluster.admin.health and prints one row per member that answers
 * (member id, partitions served, status, NATS, persistence). Waits for
 * answers until 500 ms pass without one, at most --timeout.
 */
static int
cmd_members(natsConnection *nc, const struct opts *o)
{
    char subj[256], inbox[128];
    natsSubscription *sub = NULL;
    natsInbox *ib = NULL;
    json_t *all = json_array(), *a;
    int64_t deadline;
    struct table t;
    size_t i;

    snprintf(subj, sizeof(subj), "%s.cluster.admin.health", o->prefix);
    if (natsInbox_Create(&ib) != NATS_OK)
        return EXIT_NO_SIDECAR;
    /* "_INBOX.<nuid>" from nats.c: the nuid goes under --inbox-prefix. */
    snprintf(inbox, sizeof(inbox), "%s.%s",
             o->inbox_prefix && *o->inbox_prefix ? o->inbox_prefix : "_INBOX",
             strrchr((const char *)ib, '.') + 1);
    natsInbox_Destroy(ib);
    if (natsConnection_SubscribeSync(&sub, nc, inbox) != NATS_OK ||
        natsConnection_PublishRequest(nc, subj, inbox, "", 0) != NATS_OK) {
        fprintf(stderr, "%s: cannot ask on %s\n", prog, subj);
        natsSubscription_Destroy(sub);
        json_decref(all);
        return EXIT_NO_SIDECAR;
    }
    deadline = nats_Now() + o->timeout_ms;
    for (;;) {
        natsMsg *m = NULL;
        int64_t left = deadline - nats_Now();
        int64_t wait = json_array_size(all) ? (left < 500 ? left : 500) : left;
        if (wait <= 0 || natsSubscription_NextMsg(&m, sub, wait) != NATS_OK)
            break;
        a = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
        if (json_is_object(a) && json_is_object(json_object_get(a, "reply")))
            json_array_append(all, a);
        json_decref(a);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    if (!json_array_size(all)) {
        fprintf(stderr, "%s: no cluster member answered on %s (is cluster.enabled on, with prefix '%s'?)\n",
                prog, subj, o->prefix);
        json_decref(all);
        return EXIT_NO_SIDECAR;
    }
    if (o->json) {
        print_json(all);
        json_decref(all);
        return EXIT_OK;
    }
    table_init(&t, 6);
    table_add(&t, (const char *const[]){"MEMBER", "PARTITIONS", "SERVED", "STATUS", "NATS", "PERSISTENCE"});
    json_array_foreach(all, i, a) {
        json_t *r = json_object_get(a, "reply"), *ps = json_object_get(a, "partitions"), *p;
        char count[16], list[1024] = "";
        size_t j, n = 0;
        json_array_foreach(ps, j, p)
            if (n < sizeof(list) - 16)
                n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%lld", j ? "," : "",
                                      (long long)json_integer_value(p));
        snprintf(count, sizeof(count), "%zu", json_array_size(ps));
        const char *id = json_string_value(json_object_get(json_object_get(a, "member"), "id"));
        const char *cells[] = {id ? id : "?", count, list,
                               json_string_value(json_object_get(r, "status")) ? json_string_value(json_object_get(r, "status")) : "?",
                               json_string_value(json_object_get(r, "nats")) ? json_string_value(json_object_get(r, "nats")) : "?",
                               json_string_value(json_object_get(r, "persistence")) ? json_string_value(json_object_get(r, "persistence")) : "?"};
        table_add(&t, cells);
    }
    table_print(&t);
    table_free(&t);
    /* Partitions no answering member serves: a member that died, or a takeover under way. */
    {
        json_int_t parts = 0;
        unsigned char *served;
        char line[8192];
        size_t n = 0, unserved = 0;
        json_array_foreach(all, i, a) {
            json_int_t p = json_integer_value(
                json_object_get(json_object_get(json_object_get(a, "reply"), "cluster"), "partitions"));
            if (p > parts && p <= 65536)
                parts = p;
        }
        served = calloc((size_t)parts + 1, 1);
        json_array_foreach(all, i, a) {
            size_t j;
            json_t *p;
            json_array_foreach(json_object_get(a, "partitions"), j, p)
                if (served && json_integer_value(p) >= 0 && json_integer_value(p) < parts)
                    served[json_integer_value(p)] = 1;
        }
        line[0] = '\0';
        for (json_int_t p = 0; served && p < parts; p++)
            if (!served[p]) {
                unserved++;
                if (n < sizeof(line) - 16)
                    n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%lld", n ? "," : "", (long long)p);
            }
        if (unserved)
            printf("\n%zu of %lld partitions served by no member that answered: %s\n", unserved,
                   (long long)parts, line);
        free(served);
        /* The members the last read of the lease bucket counted, by any member's account. */
        json_int_t seen = 0;
        json_array_foreach(all, i, a) {
            json_int_t m = json_integer_value(
                json_object_get(json_object_get(json_object_get(a, "reply"), "cluster"), "members"));
            if (m > seen)
                seen = m;
        }
        if (seen > (json_int_t)json_array_size(all))
            printf("%zu of %lld members answered (a member stopped, paused or cut off does not)\n",
                   json_array_size(all), (long long)seen);
    }
    json_decref(all);
    return EXIT_OK;
}

/* cmd_classify() joins the positional words into the error text. */
static int
cmd_classify(natsConnection *nc, const struct opts *o)
{
    json_t *body = json_object();
    char text[4096] = "";
    size_t n = 0;
    int rc;

    for (int i = 1; i < o->npos && n < sizeof(text); i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s", i > 1 ? " " : "", o->pos[i]);
    if (o->error && o->npos > 1) {
        json_decref(body);
        return usage_error("classify: give the error as words or with --error, not both");
    }
    if (!o->error && o->npos <= 1 && !o->error_type) {
        json_decref(body);
        return usage_error("classify: give an ERROR text and/or --error-type");
    }
    json_object_set_new(body, "error", json_string(o->error ? o->error : text));
    if (o->error_type)
        json_object_set_new(body, "error_type", json_string(o->error_type));
    rc = run_simple(nc, o, "classify", body);
    json_decref(body);
    return rc;
}

/* ---- watch, redrive progress, export and import (issue 14 item 5) ----------------------------- */

static volatile sig_atomic_t interrupted; /* set by SIGINT / SIGTERM in watch and retry --wait */

static void
on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* catch_interrupt() makes Ctrl-C (and SIGTERM) set interrupted instead of ending the process. */
static void
catch_interrupt(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* subject_match() is NATS matching of subject against pattern (tokens, '*' one, '>' the rest). */
static bool
subject_match(const char *pattern, const char *subject)
{
    while (*pattern && *subject) {
        size_t pl = strcspn(pattern, "."), sl = strcspn(subject, ".");
        if (pl == 1 && pattern[0] == '>')
            return true;
        if (!(pl == 1 && pattern[0] == '*') && (pl != sl || strncmp(pattern, subject, pl) != 0))
            return false;
        pattern += pl;
        subject += sl;
        if (*pattern != *subject)
            return false;
        if (*pattern) {
            pattern++;
            subject++;
        }
    }
    return !*pattern && !*subject;
}

/* watch_wanted() applies --filter subject=PATTERN / status=S to one event (JSON object). */
static bool
watch_wanted(const struct opts *o, const json_t *ev)
{
    const char *subj = json_string_value(json_object_get(ev, "subject"));
    const char *status = json_string_value(json_object_get(ev, "status"));

    if (o->watch_subject && (!subj || !subject_match(o->watch_subject, subj)))
        return false;
    if (o->watch_status && (!status || strcmp(status, o->watch_status) != 0))
        return false;
    return true;
}

/* watch_line() prints one event as a line: time, kind, task id, subject, then what it has. */
static void
watch_line(const char *kind, const json_t *ev)
{
    const char *at = json_string_value(json_object_get(ev, "at"));
    const char *id = json_string_value(json_object_get(ev, "task_id"));
    const char *subj = json_string_value(json_object_get(ev, "subject"));
    static const char *const extra[] = {"status", "attempt", "category", "name", "state", "value",
                                        "threshold", "verb", "principal", "count", "error", NULL};
    char buf[64];

    if (!at)
        at = json_string_value(json_object_get(ev, "time"));
    printf("%-24s %-10s %-20s %s", at ? at : "-", kind, id ? id : "-", subj ? subj : "-");
    for (int i = 0; extra[i]; i++) {
        const json_t *v = json_object_get(ev, extra[i]);
        if (!v || json_is_null(v))
            continue;
        if (json_is_string(v)) {
            if (!strcmp(extra[i], "error") && !*json_string_value(v))
                continue;
            printf(" %s=", extra[i]);
            shell_quote(json_string_value(v), false);
        } else {
            printf(" %s=%s", extra[i], scalar(v, buf, sizeof(buf)));
        }
    }
    putchar('\n');
}

/*
 * cmd_watch() subscribes to <prefix>.events.> and prints each event (a
 * line, or with --json the event as it came) until Ctrl-C, which exits 0.
 */
static int
cmd_watch(natsConnection *nc, const struct opts *o)
{
    natsSubscription *sub = NULL;
    char subj[256];
    size_t plen;

    snprintf(subj, sizeof(subj), "%s.events.>", o->prefix);
    plen = strlen(subj) - 1; /* "<prefix>.events." */
    if (natsConnection_SubscribeSync(&sub, nc, subj) != NATS_OK || natsConnection_Flush(nc) != NATS_OK) {
        if (!report_refusal(nc, subj))
            fprintf(stderr, "%s: cannot subscribe to %s\n", prog, subj);
        natsSubscription_Destroy(sub);
        return EXIT_NO_SIDECAR;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    catch_interrupt();
    fprintf(stderr, "%s: watching %s (Ctrl-C to stop)\n", prog, subj);
    while (!interrupted) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, sub, 200);
        if (s == NATS_TIMEOUT)
            continue;
        if (s != NATS_OK) {
            fprintf(stderr, "%s: watch: %s\n", prog, natsStatus_GetText(s));
            natsSubscription_Destroy(sub);
            return EXIT_NO_SIDECAR;
        }
        const char *ms = natsMsg_GetSubject(m);
        const char *kind = strlen(ms) > plen ? ms + plen : ms;
        json_t *ev = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
        if (json_is_object(ev) && watch_wanted(o, ev)) {
            if (o->json)
                printf("%.*s\n", natsMsg_GetDataLength(m), natsMsg_GetData(m));
            else
                watch_line(kind, ev);
        } else if (!json_is_object(ev) && !o->watch_subject && !o->watch_status) {
            printf("%s %.*s\n", kind, natsMsg_GetDataLength(m), natsMsg_GetData(m));
        }
        json_decref(ev);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    return EXIT_OK;
}

/*
 * cmd_retry_wait() starts a redrive (retry FILTER|--all --rate N), then
 * polls stats' retry_processor.redrive every 500 ms and keeps one progress
 * line (on a terminal: rewritten in place on stderr) until it finishes;
 * prints the outcome on stdout. Ctrl-C sends {"cancel":true} and exits 130.
 */
static int
cmd_retry_wait(natsConnection *nc, const struct opts *o, json_t *body)
{
    json_t *reply = NULL, *rd;
    int code, rc = request(nc, o, "retry", body, &reply, &code);
    bool tty = isatty(2);
    json_int_t matched, scheduled = 0, skipped = 0;
    double rate;

    if (rc != EXIT_OK) {
        if (o->json && reply)
            print_json(reply);
        json_decref(reply);
        return rc;
    }
    matched = json_integer_value(json_object_get(reply, "scheduled"));
    rate = json_number_value(json_object_get(reply, "rate"));
    json_decref(reply);
    catch_interrupt();
    for (;;) {
        bool active;
        if (interrupted) {
            json_t *cancel = json_pack("{s:b}", "cancel", 1);
            /* {"cancelled":true,"scheduled":N}; a 409 says it had finished already. */
            int crc = request(nc, o, "retry", cancel, &reply, &code);
            json_decref(cancel);
            if (crc == EXIT_OK && json_integer_value(json_object_get(reply, "scheduled")) > scheduled)
                scheduled = json_integer_value(json_object_get(reply, "scheduled"));
            json_decref(reply);
            fprintf(stderr, "%s%s: redrive %s: %lld of %lld sent\n", tty ? "\n" : "", prog,
                    crc == EXIT_OK ? "cancelled" : "not cancelled (it had ended)",
                    (long long)scheduled, (long long)matched);
            return 130;
        }
        if (request(nc, o, "stats", NULL, &reply, &code) != EXIT_OK) {
            json_decref(reply);
            return EXIT_NO_SIDECAR;
        }
        rd = json_object_get(json_object_get(reply, "retry_processor"), "redrive");
        active = json_is_true(json_object_get(rd, "active"));
        scheduled = json_integer_value(json_object_get(rd, "scheduled"));
        skipped = json_integer_value(json_object_get(rd, "skipped"));
        json_decref(reply);
        if (tty) {
            double left = (double)(matched - scheduled - skipped);
            fprintf(stderr, "\rredrive: %lld/%lld sent, %lld skipped, %g/s, eta %.0fs   ",
                    (long long)scheduled, (long long)matched, (long long)skipped, rate,
                    left > 0 && rate > 0 ? left / rate : 0.0);
        }
        if (!active)
            break;
        for (int i = 0; i < 5 && !interrupted; i++)
            nats_Sleep(100);
    }
    if (tty)
        fputc('\n', stderr);
    if (o->json) {
        json_t *out = json_pack("{s:I,s:I,s:I,s:f}", "matched", matched, "scheduled", scheduled,
                                "skipped", skipped, "rate", rate);
        print_json(out);
        json_decref(out);
    } else {
        printf("redrive finished: %lld of %lld sent, %lld skipped (changed before their turn)\n",
               (long long)scheduled, (long long)matched, (long long)skipped);
    }
    return EXIT_OK;
}

/* The keys of a get reply that export copies as they are. */
static const char *const export_keys[] = {
    "task_id", "status", "parked", "subject", "retry_subject", "error", "error_type",
    "error_category", "retry_policy", "retry_count", "max_retries", "created_at",
    "first_failed_at", "updated_at", "episode", "repos", "payload_raw", "payload_b64",
    "metadata_b64", "headers", NULL};

/*
 * cmd_export() lists the tasks matching the filter (every task without
 * one), gets each with its payload ({"payload":true}) and writes one JSON
 * line per task on stdout. A task gone between list and get is skipped;
 * one whose get fails (a reply larger than the server's max_payload) is
 * reported and skipped, and the exit code is then 1.
 */
static int
cmd_export(natsConnection *nc, const struct opts *o)
{
    char cursor[2100] = "";
    json_int_t n = 0, gone = 0, failed = 0;
    int rc, code;

    for (;;) {
        json_t *body = json_object(), *reply = NULL, *t, *next;
        size_t i;
        filter_body(o, body);
        json_object_set_new(body, "limit", json_integer(LIST_PAGE_MAX));
        if (*cursor)
            json_object_set_new(body, "cursor", json_string(cursor));
        rc = request(nc, o, "list", body, &reply, &code);
        json_decref(body);
        if (rc != EXIT_OK) {
            json_decref(reply);
            return rc;
        }
        json_array_foreach(json_object_get(reply, "tasks"), i, t) {
            json_t *req = json_pack("{s:O,s:b}", "task_id", json_object_get(t, "task_id"), "payload", 1);
            json_t *full = NULL, *line = json_object();
            rc = request(nc, o, "get", req, &full, &code);
            json_decref(req);
            if (rc == EXIT_ERROR_REPLY && code == 404) {
                gone++;
            } else if (rc == EXIT_ERROR_REPLY) {
                failed++; /* e.g. 500 "reply exceeds max_payload": the rest still goes out */
            } else if (rc != EXIT_OK) {
                json_decref(full);
                json_decref(line);
                json_decref(reply);
                return rc;
            } else {
                for (int k = 0; export_keys[k]; k++)
                    if (json_object_get(full, export_keys[k]))
                        json_object_set(line, export_keys[k], json_object_get(full, export_keys[k]));
                print_json(line);
                n++;
            }
            json_decref(full);
            json_decref(line);
        }
        next = json_object_get(reply, "next_cursor");
        if (!json_is_string(next)) {
            json_decref(reply);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        json_decref(reply);
    }
    fprintf(stderr, "%s: exported %lld task%s", prog, (long long)n, n == 1 ? "" : "s");
    if (gone)
        fprintf(stderr, " (%lld gone before they were read)", (long long)gone);
    if (failed)
        fprintf(stderr, "; %lld could not be read (see above): not exported", (long long)failed);
    fputc('\n', stderr);
    return failed ? EXIT_ERROR_REPLY : EXIT_OK;
}

/* ---- the failure envelope (DESIGN section 4), packed with msgpack-c ---- */

/* msgpack-c's write callback: appends to the struct sc_buf at data (0, or -1 past its cap). */
static int
mp_write(void *data, const char *buf, size_t len)
{
    return sc_buf_append(data, buf, len) == SC_OK ? 0 : -1;
}

static void
mp_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);

    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* mp_b64() appends the bytes that base64 text v stands for (MessagePack already); false when v is not padded base64. */
static bool
mp_b64(struct sc_buf *b, const json_t *v)
{
    return json_is_string(v) && sc_base64_padded(json_string_value(v), json_string_length(v)) &&
           sc_base64_decode(json_string_value(v), json_string_length(v), b) == SC_OK;
}

/*
 * envelope() builds the failure envelope of an exported task (one JSON
 * object) into b: task_id, task (payload_b64's exact bytes), error,
 * error_type, error_category, retry_policy, max_retries, retry_subject,
 * repos, metadata (metadata_b64's bytes) and failed_at (first_failed_at).
 * Returns NULL, or why the line cannot be imported.
 */
static const char *
envelope(const json_t *t, struct sc_buf *b)
{
    static const char *const strs[] = {"task_id", "error", "error_type", "error_category",
                                       "retry_policy", "retry_subject", NULL};
    const json_t *repos = json_object_get(t, "repos"), *meta = json_object_get(t, "metadata_b64");
    const json_t *ff = json_object_get(t, "first_failed_at"), *mr = json_object_get(t, "max_retries");
    size_t keys = 1, i;
    const json_t *v;
    msgpack_packer pk;

    if (!json_is_string(json_object_get(t, "task_id")))
        return "no task_id";
    if (!json_is_string(json_object_get(t, "payload_b64")))
        return "no payload_b64 (exported without the payload?)";
    if (json_is_true(json_object_get(t, "payload_raw")))
        return "a JetStream advisory's raw payload: not a MessagePack task (not importable)";
    for (i = 0; strs[i]; i++)
        keys += json_is_string(json_object_get(t, strs[i]));
    keys += json_is_array(repos) + json_is_string(meta) + json_is_string(ff) +
            (json_is_integer(mr) && json_integer_value(mr) >= 0 && json_integer_value(mr) <= 100);
    msgpack_packer_init(&pk, b, mp_write);
    msgpack_pack_map(&pk, keys);
    for (i = 0; strs[i]; i++)
        if (json_is_string(json_object_get(t, strs[i]))) {
            mp_str(&pk, strs[i]);
            mp_str(&pk, json_string_value(json_object_get(t, strs[i])));
        }
    mp_str(&pk, "task"); /* the value: the exported bytes as they are */
    if (!mp_b64(b, json_object_get(t, "payload_b64")))
        return "payload_b64 is not base64";
    if (json_is_integer(mr) && json_integer_value(mr) >= 0 && json_integer_value(mr) <= 100) {
        mp_str(&pk, "max_retries");
        msgpack_pack_uint8(&pk, (uint8_t)json_integer_value(mr));
    }
    if (json_is_array(repos)) {
        mp_str(&pk, "repos");
        msgpack_pack_array(&pk, json_array_size(repos));
        json_array_foreach(repos, i, v)
            mp_str(&pk, json_is_string(v) ? json_string_value(v) : "");
    }
    if (json_is_string(meta)) {
        mp_str(&pk, "metadata");
        if (!mp_b64(b, meta))
            return "metadata_b64 is not base64";
    }
    if (json_is_string(ff)) {
        mp_str(&pk, "failed_at");
        mp_str(&pk, json_string_value(ff));
    }
    return NULL;
}

/*
 * cmd_import() reads export's JSON lines on stdin and files each task as a
 * failure envelope on its failure subject (the exported one, under this
 * --prefix), as a request: the sidecar's acknowledgement says it was taken.
 * Exits 1 when any line was refused or could not be read.
 */
static int
cmd_import(natsConnection *nc, const struct opts *o)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, ok = 0, bad = 0;
    struct sc_buf b;

    sc_buf_init(&b, (size_t)64 * 1024 * 1024);
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        json_error_t jerr;
        json_t *t;
        const char *why, *subj, *dot;
        char target[512];
        natsMsg *m = NULL;
        natsStatus s;

        lineno++;
        if (len == 0 || line[0] == '\n')
            continue;
        t = json_loadb(line, (size_t)len, 0, &jerr);
        sc_buf_reset(&b);
        subj = json_string_value(json_object_get(t, "subject"));
        why = !json_is_object(t) ? "not a JSON object" : !subj ? "no subject" : envelope(t, &b);
        /* <old prefix>.failed.<service>: keep what follows "failed.", under this prefix. */
        dot = subj ? strstr(subj, ".failed.") : NULL;
        if (!why && !dot)
            why = "the subject is not a failure subject (<prefix>.failed.<service>)";
        if (!why && !b.data)
            why = "the envelope is too large";
        if (!why) {
            /* A line's subject goes into the PUB line as it is: whitespace or CR/LF there
               would be NATS protocol of the line's choosing. Only a valid subject goes. */
            int n = snprintf(target, sizeof(target), "%s.failed.%s", o->prefix, dot + 8);
            if (n < 0 || (size_t)n >= sizeof(target) || !codec_subject_valid(target, (size_t)n, false))
                why = "the subject is not a valid NATS subject (no spaces, control characters or "
                      "wildcards)";
        }
        if (why) {
            fprintf(stderr, "%s: import: line %ld: %s\n", prog, lineno, why);
            bad++;
            json_decref(t);
            continue;
        }
        s = natsConnection_Request(&m, nc, target, b.data, (int)b.len, o->timeout_ms);
        if (s != NATS_OK) {
            fprintf(stderr, "%s: import: line %ld: %s: %s\n", prog, lineno, target, natsStatus_GetText(s));
            bad++;
        } else {
            json_t *ack = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
            /* A PubAck (JetStream ingest) or {"ok":true,...}: taken. */
            if (json_is_true(json_object_get(ack, "ok")) || json_object_get(ack, "seq")) {
                ok++;
            } else {
                const char *msg = json_string_value(json_object_get(json_object_get(ack, "error"), "message"));
                fprintf(stderr, "%s: import: line %ld: refused: %s\n", prog, lineno,
                        msg ? msg : "(no reason given)");
                bad++;
            }
            json_decref(ack);
        }
        natsMsg_Destroy(m);
        json_decref(t);
    }
    free(line);
    sc_buf_destroy(&b);
    fprintf(stderr, "%s: imported %ld task%s", prog, ok, ok == 1 ? "" : "s");
    if (bad)
        fprintf(stderr, ", %ld line%s refused or unreadable", bad, bad == 1 ? "" : "s");
    fputc('\n', stderr);
    return bad ? EXIT_ERROR_REPLY : EXIT_OK;
}

int
main(int argc, char **argv)
{
    struct opts o = {0};
    natsConnection *nc = NULL;
    const char *cmd;
    int rc;

    o.server = getenv("NATS_URL");
    o.creds = getenv("NATS_CREDS");
    o.inbox_prefix = getenv("NATS_INBOX_PREFIX");
    if (o.inbox_prefix && *o.inbox_prefix && !inbox_prefix_ok(o.inbox_prefix))
        return usage_error("$NATS_INBOX_PREFIX: '%s' is not a subject prefix (tokens of A-Z a-z "
                           "0-9 _ - joined by '.', no wildcard, at most 64 bytes)", o.inbox_prefix);
    o.prefix = DEFAULT_PREFIX;
    o.timeout_ms = DEFAULT_TIMEOUT_MS;
    o.older_than_s = -1;
    o.limit = -1;
    o.rate = -1;
    if (!o.server || !*o.server)
        o.server = DEFAULT_URL;
    if ((rc = parse_args(argc, argv, &o)) >= 0)
        return rc;
    if (o.npos == 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    cmd = o.pos[0];

    /* Check the arguments before connecting: a usage error never needs a server. */
    if (strcmp(cmd, "stats") == 0 || strcmp(cmd, "health") == 0 || strcmp(cmd, "pause") == 0 ||
        strcmp(cmd, "resume") == 0 || strcmp(cmd, "list") == 0 || strcmp(cmd, "members") == 0 ||
        strcmp(cmd, "groups") == 0 || strcmp(cmd, "watch") == 0 || strcmp(cmd, "export") == 0 ||
        strcmp(cmd, "import") == 0 || strcmp(cmd, "audit") == 0) {
        if (o.npos != 1)
            return usage_error("'%s' takes no arguments", cmd);
    } else if (strcmp(cmd, "get") == 0) {
        if (o.npos != 2)
            return usage_error("get: give exactly one TASK_ID");
    } else if (strcmp(cmd, "retry") != 0 && strcmp(cmd, "archive") != 0 &&
               strcmp(cmd, "clear") != 0 && strcmp(cmd, "classify") != 0) {
        return usage_error("unknown command '%s'", cmd);
    }
    if (strcmp(cmd, "clear") == 0 && o.npos != 1)
        return usage_error("clear: takes a filter or --all, not a TASK_ID (use archive for one task)");
    if (strcmp(cmd, "list") == 0 && o.all && o.cursor)
        return usage_error("list: --all starts from the beginning; drop --cursor");

    if ((rc = open_conn(&o, &nc)) != EXIT_OK)
        goto done;
    if (strcmp(cmd, "list") == 0) {
        rc = cmd_list(nc, &o);
    } else if (strcmp(cmd, "groups") == 0) {
        rc = cmd_groups(nc, &o);
    } else if (strcmp(cmd, "get") == 0) {
        json_t *body = json_pack("{s:s}", "task_id", o.pos[1]);
        rc = run_simple(nc, &o, "get", body);
        json_decref(body);
    } else if (strcmp(cmd, "retry") == 0 || strcmp(cmd, "archive") == 0 ||
               strcmp(cmd, "clear") == 0) {
        rc = cmd_action(nc, &o, cmd);
    } else if (strcmp(cmd, "classify") == 0) {
        rc = cmd_classify(nc, &o);
    } else if (strcmp(cmd, "members") == 0) {
        rc = cmd_members(nc, &o);
    } else if (strcmp(cmd, "watch") == 0) {
        rc = cmd_watch(nc, &o);
    } else if (strcmp(cmd, "export") == 0) {
        rc = cmd_export(nc, &o);
    } else if (strcmp(cmd, "import") == 0) {
        rc = cmd_import(nc, &o);
    } else if (strcmp(cmd, "audit") == 0) {
        rc = cmd_audit(nc, &o);
    } else {
        rc = run_simple(nc, &o, cmd, NULL);
    }
done:
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
