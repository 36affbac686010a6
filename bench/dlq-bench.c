/* dlq-bench.c - load generator for dlq-sidecar: ingest, dispatch, timer accuracy, memory, admin latency and JetStream as a peer, durable ingest, the JetStream KV store and cluster mode on 3 nats-server nodes, each against a bare nats.c baseline measured in the same run. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <nats/adapters/libevent.h>
#include <nats/nats.h>

#include "codec.h"
#include "common.h"

extern char **environ;

/* ---- constants ------------------------------------------------------------------------------- */

#define SUBJ_FAILED "dlq.failed.bench"       /* service "bench": retries go to dlq.retry.bench */
#define SUBJ_RETRY "dlq.retry.bench"
#define SUBJ_FAILED_TIMER "dlq.failed.timer" /* service "timer": retries go to dlq.retry.timer */
#define SUBJ_RETRY_TIMER "dlq.retry.timer"
#define JS_STREAM_TPUT "DLQBENCH_TPUT"
#define JS_SUBJ_TPUT "bench.js.tput"
#define JS_STREAM_TIMER "DLQBENCH_TIMER"
#define JS_SUBJ_TIMER "bench.js.timer"
#define INGEST_TASK_BYTES 128 /* makes the whole ingest envelope about 200 bytes */
#define TASK_BYTES 200        /* the task payload of the other scenarios */
#define NERRORS 1000          /* distinct error strings */
#define OK_REPLY "{\"ok\":true}"
#define LONG_DELAY_MS "3600000" /* keeps stored tasks from coming due during a scenario */
#define MAX_ROWS 40

/* ---- options, results ------------------------------------------------------------------------ */

struct opts {
    const char *url;      /* nats-server URL (127.0.0.1 only) */
    const char *sidecar;  /* dlq-sidecar binary */
    const char *workdir;  /* logs and config files of the sidecars */
    const char *out;      /* results.json; NULL: none */
    const char *nats_log; /* nats-server log: slow consumers are counted from it; may be NULL */
    pid_t nats_pid;       /* nats-server pid: its RSS per JetStream message; 0: unknown */
    long n;               /* tasks of ingest, dispatch, memory, admin and the JetStream throughput */
    long timer_n;         /* tasks of the timer scenarios */
    long timer_min_ms, timer_max_ms, timer_batches;
    bool timer_burst;     /* timer: each batch published as fast as nats.c can (not spread) */
    long timer_held;      /* timer: tasks due in an hour stored first, so the wheels hold this many more */
    long admin_samples;   /* requests of each kind and condition */
    long admin_rate;      /* background ingest during the admin measurement, per second */
    long tick_ms;         /* timer.tick_ms of every sidecar */
    long js_batch;        /* jsingest: messages per pull request, bare and sidecar (ingest.fetch_batch) */
    long kv_n;            /* kvstore: failures ingested and written */
    long kv_batch;        /* kvstore: store.jetstream.batch_max of the sidecar; 0: its default */
    long kv_pending;      /* kvstore: PubAcks the bare clients may await at once */
    const char *nats_server; /* cluster: the nats-server binary of its 3 nodes; NULL: no cluster */
    long cluster_n;       /* cluster: failures ingested and dispatched per configuration */
    long cluster_kills;   /* cluster: kill -9 of the takeover measurement */
    long cluster_lease_ms; /* cluster: cluster.lease_ms of the throughput runs */
    bool quick;
    unsigned scen;        /* SC_* bits */
};

enum { S_INGEST = 1, S_DISPATCH = 2, S_TIMER = 4, S_MEMORY = 8, S_ADMIN = 16, S_PEER = 32,
       S_JSINGEST = 64, S_KVSTORE = 128, S_CLUSTER = 256 };

/* One line of the printed table. */
struct row {
    char cell[7][96];
};

static struct opts O;
static json_t *R;                    /* results.json, one object per scenario */
static struct row rows[MAX_ROWS];
static int nrows;
static char errors_txt[NERRORS][64]; /* the 1,000 distinct error strings */
static pid_t live_sidecar;           /* killed at exit if still running */
static int64_t start_ns;
static int failures;                 /* scenarios that could not complete */
static int losses;                   /* tasks lost somewhere */

/* Atomic helpers for fields shared with nats.c callback threads. */
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#define INC(x) __atomic_add_fetch(&(x), 1, __ATOMIC_ACQ_REL)

/* ---- small utilities ------------------------------------------------------------------------- */

/* mono_ns() returns CLOCK_MONOTONIC in nanoseconds. */
static int64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* wall_ms() returns CLOCK_REALTIME in milliseconds since the epoch, with microseconds. */
static double
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* sleep_ns() sleeps ns nanoseconds, restarting on EINTR. */
static void
sleep_ns(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* sleep_ms() sleeps ms milliseconds. */
static void
sleep_ms(long ms)
{
    sleep_ns((int64_t)ms * 1000000LL);
}

/* note() prints a progress line with the seconds since start to stderr. */
static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
note(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "[bench %6.1fs] ", (double)(mono_ns() - start_ns) / 1e9);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* cmp_double() orders doubles for qsort. */
static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* pct() returns the nearest-rank percentile p (0-100) of n sorted values; 0 when n is 0. */
static double
pct(const double *sorted, size_t n, double p)
{
    size_t k;

    if (n == 0)
        return 0;
    k = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return sorted[k - 1];
}

/* fmt_count() writes v rounded to an integer with thousands separators into out (32 bytes). */
static const char *
fmt_count(char *out, double v)
{
    char tmp[32];
    long long x = (long long)(v + (v >= 0 ? 0.5 : -0.5));
    int n, o = 0, lead;

    n = snprintf(tmp, sizeof(tmp), "%lld", x < 0 ? -x : x);
    if (x < 0)
        out[o++] = '-';
    lead = n % 3 ? n % 3 : 3;
    for (int i = 0; i < n; i++) {
        if (i && (i - lead) % 3 == 0 && i >= lead)
            out[o++] = ',';
        out[o++] = tmp[i];
    }
    out[o] = '\0';
    return out;
}

/* rss_kb() returns VmRSS of pid in kB from /proc/PID/status, or -1. */
static long
rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* cpu_s() returns the CPU time (user + system, s) pid has used, from /proc/PID/stat; 0 when unknown. */
static double
cpu_s(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    size_t n;
    FILE *f;

    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r")))
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* after "pid (comm) ": state is field 3, utime 14 and stime 15 */
    if (!(p = strrchr(buf, ')')) ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* slow_consumers() counts "Slow Consumer" lines in the nats-server log (0 when no log is known). */
static long
slow_consumers(void)
{
    char line[1024];
    long n = 0;
    FILE *f;

    if (!O.nats_log || !(f = fopen(O.nats_log, "r")))
        return 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "Slow Consumer"))
            n++;
    fclose(f);
    return n;
}

/* loadavg() returns the 1-minute load average, or -1. */
static double
loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");

    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* add_row() appends one line to the table; NULL cells print empty. */
static void
add_row(const char *scen, const char *metric, const char *sidecar, const char *base,
        const char *ratio, const char *target, const char *met)
{
    const char *c[7] = {scen, metric, sidecar, base, ratio, target, met};

    if (nrows == MAX_ROWS)
        return;
    for (int i = 0; i < 7; i++)
        snprintf(rows[nrows].cell[i], sizeof(rows[nrows].cell[i]), "%s", c[i] ? c[i] : "");
    nrows++;
}

/* jobj() returns R's object for a scenario, creating it. */
static json_t *
jobj(const char *name)
{
    json_t *o = json_object_get(R, name);

    if (!o) {
        o = json_object();
        json_object_set_new(R, name, o);
    }
    return o;
}

/* jnum() sets key to the number v in o. */
static void
jnum(json_t *o, const char *key, double v)
{
    json_object_set_new(o, key, json_real(v));
}

/* jint() sets key to the integer v in o. */
static void
jint(json_t *o, const char *key, long long v)
{
    json_object_set_new(o, key, json_integer(v));
}

/* jpath_int() reads the integer at a dotted path of obj; -1 when absent. */
static long long
jpath_int(const json_t *obj, const char *path)
{
    char buf[128], *save = NULL, *tok;
    const json_t *v = obj;

    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save))
        v = json_object_get(v, tok);
    return v && json_is_integer(v) ? json_integer_value(v) : -1;
}

/* ---- envelopes (MessagePack written by hand: the bench must not depend on the codec it measures) */

/* Per-scenario envelope shape. */
struct env_spec {
    const char *prefix; /* task_id = "<prefix>-<index>" */
    size_t task_bytes;  /* exact size of the task value's MessagePack (17 - 60000) */
    const char *policy; /* retry_policy, or NULL for the category's policy */
};

/* init_errors() fills the 1,000 distinct error strings: 10 shapes (network, transient, resource) x 100. */
static void
init_errors(void)
{
    static const char *const shapes[10] = {
        "connection refused by db-%02u.internal:5432",
        "HTTP 503 Service Unavailable from api-%02u",
        "upstream timeout after %u ms",
        "rate limit exceeded for tenant %u",
        "ECONNRESET while calling payments-%02u",
        "502 Bad Gateway from edge-%02u",
        "resource temporarily unavailable on shard %u",
        "disk full on volume vol-%02u",
        "too many open files in worker %u",
        "connection reset by peer: cache-%02u",
    };

    for (unsigned k = 0; k < NERRORS; k++) {
        unsigned v = k / 10;
        if (k % 10 == 2)
            v = 100 + v * 10;
        snprintf(errors_txt[k], sizeof(errors_txt[k]), shapes[k % 10], v);
    }
}

/* mp_str() writes a MessagePack str of n bytes; returns bytes written. */
static size_t
mp_str(uint8_t *p, const char *s, size_t n)
{
    size_t h;

    if (n < 32) {
        p[0] = (uint8_t)(0xa0 | n);
        h = 1;
    } else if (n < 256) {
        p[0] = 0xd9;
        p[1] = (uint8_t)n;
        h = 2;
    } else {
        p[0] = 0xda;
        p[1] = (uint8_t)(n >> 8);
        p[2] = (uint8_t)n;
        h = 3;
    }
    memcpy(p + h, s, n);
    return h + n;
}

/* make_id() writes "<prefix>-<i>" into out (64 bytes); returns its length. */
static size_t
make_id(char *out, const char *prefix, uint64_t i)
{
    char tmp[24];
    size_t n = strlen(prefix), k = 0;

    memcpy(out, prefix, n);
    out[n++] = '-';
    do {
        tmp[k++] = (char)('0' + i % 10);
        i /= 10;
    } while (i);
    while (k)
        out[n++] = tmp[--k];
    out[n] = '\0';
    return n;
}

/*
 * build_task() writes the task value for index i, a map {"seq": uint32, "blob": bin},
 * padded to exactly bytes bytes (17 - 60000). Returns bytes.
 */
static size_t
build_task(uint8_t *p, size_t bytes, uint64_t i)
{
    size_t n = 0, fill;

    p[n++] = 0x82;
    n += mp_str(p + n, "seq", 3);
    p[n++] = 0xce;
    p[n++] = (uint8_t)(i >> 24);
    p[n++] = (uint8_t)(i >> 16);
    p[n++] = (uint8_t)(i >> 8);
    p[n++] = (uint8_t)i;
    n += mp_str(p + n, "blob", 4);
    if (bytes - n - 2 <= 255) {
        fill = bytes - n - 2;
        p[n++] = 0xc4;
        p[n++] = (uint8_t)fill;
    } else {
        fill = bytes - n - 3;
        p[n++] = 0xc5;
        p[n++] = (uint8_t)(fill >> 8);
        p[n++] = (uint8_t)fill;
    }
    memset(p + n, 'a' + (int)(i % 26), fill);
    return n + fill;
}

/* build_envelope() writes the failure envelope of index i into p (task_bytes + 256 bytes); returns its length. */
static size_t
build_envelope(uint8_t *p, const struct env_spec *s, uint64_t i)
{
    char id[64];
    size_t n = 0, idn = make_id(id, s->prefix, i);
    const char *err = errors_txt[i % NERRORS];

    p[n++] = (uint8_t)(0x80 | (s->policy ? 4 : 3));
    n += mp_str(p + n, "task_id", 7);
    n += mp_str(p + n, id, idn);
    n += mp_str(p + n, "task", 4);
    n += build_task(p + n, s->task_bytes, i);
    n += mp_str(p + n, "error", 5);
    n += mp_str(p + n, err, strlen(err));
    if (s->policy) {
        n += mp_str(p + n, "retry_policy", 12);
        n += mp_str(p + n, s->policy, strlen(s->policy));
    }
    return n;
}

/* delay_of() is the delay (ms) of task i of n in the timer scenarios: batch b of timer_batches. */
static long
delay_of(long i, long n)
{
    long b = (long)((int64_t)i * O.timer_batches / n);

    if (O.timer_batches <= 1)
        return O.timer_min_ms;
    return O.timer_min_ms + (O.timer_max_ms - O.timer_min_ms) * b / (O.timer_batches - 1);
}

/*
 * timer_rate() is the ingest rate of the timer scenarios: each batch is
 * spread over 90% of the gap between two batches' delays, so that the due
 * times cover the whole min-max window evenly (a timer test, not a burst).
 */
static double
timer_rate(void)
{
    long per_batch = (O.timer_n + O.timer_batches - 1) / O.timer_batches;
    long gap = O.timer_batches > 1 ? (O.timer_max_ms - O.timer_min_ms) / (O.timer_batches - 1) : 0;

    if (O.timer_burst)
        return (double)per_batch / 0.12; /* the burst case: 10,000 due within 120 ms per batch */
    if (gap <= 0)
        gap = O.timer_min_ms;
    return (double)per_batch / (0.9 * (double)gap / 1000.0);
}

/* pace() sleeps until message k of a stream started at t0 is due at rate per second. */
static void
pace(int64_t t0, long k, double rate)
{
    int64_t due, now;

    if (rate <= 0)
        return;
    due = t0 + (int64_t)((double)k * 1e9 / rate);
    now = mono_ns();
    if (due > now)
        sleep_ns(due - now);
}

/* ---- child processes ------------------------------------------------------------------------- */

/* kill_live_sidecar() SIGKILLs the sidecar still running at exit. */
static void
kill_live_sidecar(void)
{
    if (live_sidecar > 0) {
        kill(live_sidecar, SIGKILL);
        waitpid(live_sidecar, NULL, 0);
        live_sidecar = 0;
    }
}

/*
 * spawn_logged() forks and execs argv[0] with stdout and stderr appended to
 * log and the environment without DLQ_* (the sidecar reads them as its
 * configuration: the caller's shell must not change what is measured); the
 * child dies with the bench (PR_SET_PDEATHSIG). Returns the pid or -1.
 */
static pid_t
spawn_logged(char *const argv[], const char *log)
{
    pid_t parent = getpid(), pid;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

    if (fd < 0) {
        note("open %s: %s", log, strerror(errno));
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        int dn;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        if ((dn = open("/dev/null", O_RDONLY)) >= 0) {
            dup2(dn, 0);
            close(dn);
        }
        for (size_t i = 0; environ[i];) {
            char name[256];
            size_t k = strcspn(environ[i], "=");
            if (strncmp(environ[i], "DLQ_", 4) == 0 && k < sizeof(name)) {
                memcpy(name, environ[i], k);
                name[k] = '\0';
                unsetenv(name);
            } else {
                i++;
            }
        }
        execv(argv[0], argv);
        dprintf(2, "dlq-bench: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    return pid;
}

/* print_tail() prints the last bytes of a log file to stderr. */
static void
print_tail(const char *path)
{
    char buf[4096];
    FILE *f = fopen(path, "r");
    size_t n;

    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    if (ftell(f) > (long)sizeof(buf) - 1)
        fseek(f, -(long)sizeof(buf) + 1, SEEK_END);
    else
        fseek(f, 0, SEEK_SET);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "---- tail of %s ----\n%s---- end ----\n", path, buf);
}

/* A running sidecar. */
struct sidecar {
    pid_t pid;
    bool termed; /* SIGTERM sent (cl_stop_all()): a second one would cut its drain or, mid-teardown, kill it */
    char log[600];
};

/* request_json() sends body on subj and parses the JSON reply; *lat_ms (may be NULL) gets the round trip. */
static json_t *
request_json(natsConnection *nc, const char *subj, const char *body, int timeout_ms, double *lat_ms)
{
    natsMsg *reply = NULL;
    int64_t t0 = mono_ns();
    natsStatus s = natsConnection_Request(&reply, nc, subj, body, (int)strlen(body), timeout_ms);
    json_t *j;

    if (lat_ms)
        *lat_ms = (double)(mono_ns() - t0) / 1e6;
    if (s != NATS_OK)
        return NULL;
    j = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
    natsMsg_Destroy(reply);
    return j;
}

/*
 * sidecar_spawn() runs the sidecar on nats_url (one URL or a comma list)
 * with the bench's base flags plus extra (NULL-terminated "--key=value"
 * strings), logging to workdir/sidecar-<name>.log, without waiting for it.
 * It becomes live_sidecar (the newest is killed at exit; every child dies
 * with the bench anyway). Returns 0 or -1 (sc->pid 0).
 */
static int
sidecar_spawn(struct sidecar *sc, const char *nats_url, const char *name, const char *const *extra)
{
    char url[600], tick[64], maxsz[64];
    char *argv[64];
    int n = 0;
    long maxsize = O.n * 2 < 2000000 ? 2000000 : O.n * 2;
    char maxbytes[64];

    if (maxsize > 10000000)
        maxsize = 10000000;
    /* max_bytes counts each task's strings (an upper bound): 1 KiB a task leaves room at any n. */
    snprintf(maxbytes, sizeof(maxbytes), "--max_bytes=%ld",
             maxsize * 1024L < 1073741824L ? 1073741824L : maxsize * 1024L);
    snprintf(url, sizeof(url), "--nats.url=%s", nats_url);
    snprintf(tick, sizeof(tick), "--timer.tick_ms=%ld", O.tick_ms);
    snprintf(maxsz, sizeof(maxsz), "--max_size=%ld", maxsize);
    argv[n++] = (char *)O.sidecar;
    argv[n++] = url;
    argv[n++] = tick;
    argv[n++] = maxsz;
    argv[n++] = maxbytes;
    argv[n++] = (char *)"--retry.max_per_second=1000000";
    argv[n++] = (char *)"--retry.max_in_flight=100000";
    argv[n++] = (char *)"--http.listen=";
    argv[n++] = (char *)"--events.enabled=false";
    argv[n++] = (char *)"--log.level=warn";
    argv[n++] = (char *)"--shutdown.drain_ms=0";
    argv[n++] = (char *)"--nats.name=dlq-sidecar-bench";
    for (size_t i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    snprintf(sc->log, sizeof(sc->log), "%s/sidecar-%s.log", O.workdir, name);
    sc->termed = false;
    sc->pid = spawn_logged(argv, sc->log);
    if (sc->pid < 0) {
        sc->pid = 0;
        return -1;
    }
    live_sidecar = sc->pid;
    return 0;
}

/*
 * sidecar_start() runs the sidecar on the bench's server (--url) with the
 * base flags plus extra, as sidecar_spawn(), and waits until
 * dlq.admin.health answers ok on nc. Returns 0 or -1.
 */
static int
sidecar_start(struct sidecar *sc, natsConnection *nc, const char *name, const char *const *extra)
{
    int64_t deadline;

    if (sidecar_spawn(sc, O.url, name, extra))
        return -1;
    deadline = mono_ns() + 20000000000LL;
    while (mono_ns() < deadline) {
        json_t *h = request_json(nc, "dlq.admin.health", "", 500, NULL);
        const char *st = h ? json_string_value(json_object_get(h, "status")) : NULL;
        bool ok = st && strcmp(st, "ok") == 0;
        int wst;
        json_decref(h);
        if (ok)
            return 0;
        if (waitpid(sc->pid, &wst, WNOHANG) == sc->pid) {
            note("sidecar %s exited at start", name);
            print_tail(sc->log);
            sc->pid = live_sidecar = 0;
            return -1;
        }
        sleep_ms(20);
    }
    note("sidecar %s never answered dlq.admin.health", name);
    print_tail(sc->log);
    return -1;
}

/* sidecar_stop() sends SIGTERM (unless sent already) and waits up to 60 s (then SIGKILL). Returns the exit status or -1. */
static int
sidecar_stop(struct sidecar *sc)
{
    int st = 0;
    int64_t deadline = mono_ns() + 60000000000LL;

    if (sc->pid <= 0)
        return -1;
    if (!sc->termed)
        kill(sc->pid, SIGTERM);
    sc->termed = false;
    for (;;) {
        pid_t r = waitpid(sc->pid, &st, WNOHANG);
        if (r == sc->pid)
            break;
        if (r < 0 || mono_ns() > deadline) {
            kill(sc->pid, SIGKILL);
            waitpid(sc->pid, &st, 0);
            break;
        }
        sleep_ms(10);
    }
    sc->pid = live_sidecar = 0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    note("sidecar exited with status 0x%x; log: %s", st, sc->log);
    print_tail(sc->log);
    return -1;
}

/* stats() asks dlq.admin.stats (10 s timeout). Returns a new reference or NULL. */
static json_t *
stats(natsConnection *nc)
{
    return request_json(nc, "dlq.admin.stats", "", 10000, NULL);
}

/* ---- NATS clients ---------------------------------------------------------------------------- */

/*
 * connect_url() opens a plain nats.c connection (its own I/O threads) to url
 * (one URL, or a comma-separated list of a cluster's nodes). Returns it
 * (the caller destroys it) or NULL.
 */
static natsConnection *
connect_url(const char *url, const char *name)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    natsStatus s;
    char list[600], *save = NULL, *servers[8];
    int n = 0;

    /* nats.c 3.4's SetURL takes one URL: a list goes through SetServers */
    snprintf(list, sizeof(list), "%s", url);
    for (char *t = strtok_r(list, ",", &save); t && n < 8; t = strtok_r(NULL, ",", &save))
        servers[n++] = t;
    if (n == 0 || natsOptions_Create(&o) != NATS_OK)
        return NULL;
    s = n == 1 ? natsOptions_SetURL(o, url) : natsOptions_SetServers(o, (const char **)servers, n);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPendingMsgs(o, 10000000);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 5000);
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        note("connect %s to %s: %s", name, url, natsStatus_GetText(s));
        return NULL;
    }
    return nc;
}

/* connect_plain() opens a plain nats.c connection to the bench's server (--url). Returns it or NULL. */
static natsConnection *
connect_plain(const char *name)
{
    return connect_url(O.url, name);
}

/* A connection whose socket I/O runs on a libevent loop thread, as in the sidecar. */
struct evconn {
    struct event_base *base;
    pthread_t th;
    bool th_ok;
    natsConnection *nc;
};

/* evloop_main() runs the loop until evconn_close() breaks it. */
static void *
evloop_main(void *arg)
{
    struct evconn *c = arg;

    event_base_loop(c->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* evconn_close() closes the connection, stops the loop and frees everything. */
static void
evconn_close(struct evconn *c)
{
    if (c->nc)
        natsConnection_Close(c->nc);
    if (c->th_ok) {
        sleep_ms(50); /* let the adapter's detach run on the loop */
        event_base_loopbreak(c->base);
        pthread_join(c->th, NULL);
    }
    natsConnection_Destroy(c->nc);
    if (c->base)
        event_base_free(c->base);
    memset(c, 0, sizeof(*c));
}

/* evconn_open() starts a loop thread and connects with the libevent adapter. Returns 0 or -1. */
static int
evconn_open(struct evconn *c, const char *name)
{
    natsOptions *o = NULL;
    natsStatus s;

    memset(c, 0, sizeof(*c));
    if (!(c->base = event_base_new()))
        return -1;
    if (pthread_create(&c->th, NULL, evloop_main, c) != 0) {
        evconn_close(c);
        return -1;
    }
    c->th_ok = true;
    if (natsOptions_Create(&o) != NATS_OK) {
        evconn_close(c);
        return -1;
    }
    s = natsOptions_SetURL(o, O.url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPendingMsgs(o, 10000000);
    if (s == NATS_OK)
        s = natsOptions_SetEventLoop(o, c->base, natsLibevent_Attach, natsLibevent_Read,
                                     natsLibevent_Write, natsLibevent_Detach);
    if (s == NATS_OK)
        s = natsConnection_Connect(&c->nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        note("connect %s (libevent): %s", name, natsStatus_GetText(s));
        evconn_close(c);
        return -1;
    }
    return 0;
}

/* unlimited() lifts a subscription's pending limits so that nothing is dropped client-side. */
static void
unlimited(natsSubscription *sub)
{
    if (natsSubscription_SetPendingLimits(sub, -1, -1) != NATS_OK)
        natsSubscription_SetPendingLimits(sub, INT_MAX, INT_MAX);
}

/* ---- ingest acknowledgements ----------------------------------------------------------------- */

/* Counts ingest acks on <prefix>.<index>; optionally records next_retry_at per index. */
struct acks {
    natsSubscription *sub;
    char prefix[128];
    long count, errors, last_index; /* atomics */
    int64_t last_ns;                /* atomic: arrival of the latest ack */
    double *due_ms;                 /* optional: next_retry_at (wall ms) by index */
    long due_cap;
};

/* on_ack() runs on nats.c's delivery thread for each ingest acknowledgement. */
static void
on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    struct acks *a = closure;
    const char *subj = natsMsg_GetSubject(m), *dot = strrchr(subj, '.');
    const char *d = natsMsg_GetData(m);
    long idx = dot ? strtol(dot + 1, NULL, 10) : -1, cur;

    (void)nc;
    (void)sub;
    if (!d || strncmp(d, "{\"ok\":true", 10) != 0) {
        INC(a->errors);
    } else if (a->due_ms && idx >= 0 && idx < a->due_cap) {
        const char *p = strstr(d, "\"next_retry_at\":\"");
        const char *q = p ? strchr(p + 17, '"') : NULL;
        int64_t ms;
        if (q && sc_parse_rfc3339(p + 17, (size_t)(q - p - 17), &ms) == SC_OK)
            a->due_ms[idx] = (double)ms;
    }
    cur = LOAD(a->last_index);
    while (idx > cur &&
           !__atomic_compare_exchange_n(&a->last_index, &cur, idx, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
        ;
    STORE(a->last_ns, mono_ns());
    INC(a->count);
    natsMsg_Destroy(m);
}

/* acks_open() subscribes a fresh inbox on nc. Returns 0 or -1. */
static int
acks_open(struct acks *a, natsConnection *nc, double *due, long cap)
{
    natsInbox *inbox = NULL;
    char subj[160];

    memset(a, 0, sizeof(*a));
    a->last_index = -1;
    a->due_ms = due;
    a->due_cap = cap;
    if (natsInbox_Create(&inbox) != NATS_OK)
        return -1;
    snprintf(a->prefix, sizeof(a->prefix), "%s", (const char *)inbox);
    natsInbox_Destroy(inbox);
    snprintf(subj, sizeof(subj), "%s.*", a->prefix);
    if (natsConnection_Subscribe(&a->sub, nc, subj, on_ack, a) != NATS_OK)
        return -1;
    unlimited(a->sub);
    return natsConnection_FlushTimeout(nc, 5000) == NATS_OK ? 0 : -1;
}

/* acks_close() unsubscribes. */
static void
acks_close(struct acks *a)
{
    if (a->sub) {
        natsSubscription_Unsubscribe(a->sub);
        natsSubscription_Destroy(a->sub);
    }
    a->sub = NULL;
}

/* ---- publisher ------------------------------------------------------------------------------- */

/* What to publish. */
struct pubspec {
    const struct env_spec *env;
    const char *subject;
    long first, count;  /* indexes [first, first + count) */
    long ack_every;     /* with acks: every ack_every-th message is a request (0: only the last) */
    long window;        /* with acks: at most window messages past the last ack (0: no limit) */
    double rate;        /* messages per second; 0: as fast as nats.c can */
    const int *stop;    /* optional: stop when it becomes non-zero */
};

/*
 * publish_envelopes() publishes envelopes as ps says; with ack, the last one
 * (and every ack_every-th) is a request answered to ack's inbox. Returns how
 * many were published, or -1 on an error (a window that stalls 30 s too).
 */
static long
publish_envelopes(natsConnection *nc, const struct pubspec *ps, struct acks *ack)
{
    uint8_t *buf = malloc(ps->env->task_bytes + 512);
    char reply[200];
    int64_t t0 = mono_ns();
    long k;

    if (!buf)
        return -1;
    for (k = 0; k < ps->count; k++) {
        long i = ps->first + k;
        bool req = ack && (k == ps->count - 1 || (ps->ack_every && (k + 1) % ps->ack_every == 0));
        size_t len;
        natsStatus s;

        if (ps->stop && LOAD(*ps->stop))
            break;
        if ((k & 7) == 0)
            pace(t0, k, ps->rate);
        if (ack && ps->window && i - LOAD(ack->last_index) > ps->window) {
            int64_t stall = mono_ns();
            long seen = LOAD(ack->last_index);
            natsConnection_Flush(nc);
            while (i - LOAD(ack->last_index) > ps->window) {
                if (LOAD(ack->last_index) != seen) {
                    seen = LOAD(ack->last_index);
                    stall = mono_ns();
                } else if (mono_ns() - stall > 30000000000LL) {
                    note("publisher: no ack for 30 s (index %ld, last acked %ld)", i, seen);
                    free(buf);
                    return -1;
                }
                sleep_ns(100000);
            }
        }
        len = build_envelope(buf, ps->env, (uint64_t)i);
        if (req) {
            snprintf(reply, sizeof(reply), "%s.%ld", ack->prefix, i);
            s = natsConnection_PublishRequest(nc, ps->subject, reply, buf, (int)len);
        } else {
            s = natsConnection_Publish(nc, ps->subject, buf, (int)len);
        }
        if (s != NATS_OK) {
            note("publish: %s", natsStatus_GetText(s));
            free(buf);
            return -1;
        }
    }
    natsConnection_FlushTimeout(nc, 60000);
    free(buf);
    return k;
}

/* ---- workers --------------------------------------------------------------------------------- */

/* A worker on a retry subject: counts, optionally records arrivals by task index, replies ok. */
struct worker {
    natsSubscription *sub;
    bool reply;
    long count;                 /* atomic */
    int64_t first_ns, last_ns;  /* atomics */
    double *arrival_ms;         /* optional, by the index in Dlq-Task-Id "<prefix>-<index>" */
    long cap;
};

/* on_work() runs on nats.c's delivery thread for each retry. */
static void
on_work(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    struct worker *w = closure;
    double wall = wall_ms();
    int64_t now = mono_ns(), zero = 0;
    const char *reply = natsMsg_GetReply(m), *id = NULL;

    (void)sub;
    if (w->arrival_ms && natsMsgHeader_Get(m, "Dlq-Task-Id", &id) == NATS_OK && id) {
        const char *dash = strrchr(id, '-');
        long idx = dash ? strtol(dash + 1, NULL, 10) : -1;
        if (idx >= 0 && idx < w->cap)
            w->arrival_ms[idx] = wall;
    }
    if (w->reply && reply && *reply)
        natsConnection_Publish(nc, reply, OK_REPLY, (int)strlen(OK_REPLY));
    __atomic_compare_exchange_n(&w->first_ns, &zero, now, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    STORE(w->last_ns, now);
    INC(w->count);
    natsMsg_Destroy(m);
}

/* worker_open() subscribes w on nc to subject (queue group "workers"). Returns 0 or -1. */
static int
worker_open(struct worker *w, natsConnection *nc, const char *subject, double *arrival, long cap)
{
    memset(w, 0, sizeof(*w));
    w->reply = true;
    w->arrival_ms = arrival;
    w->cap = cap;
    if (natsConnection_QueueSubscribe(&w->sub, nc, subject, "workers", on_work, w) != NATS_OK)
        return -1;
    unlimited(w->sub);
    return natsConnection_FlushTimeout(nc, 5000) == NATS_OK ? 0 : -1;
}

/* worker_close() unsubscribes. */
static void
worker_close(struct worker *w)
{
    if (w->sub) {
        natsSubscription_Unsubscribe(w->sub);
        natsSubscription_Destroy(w->sub);
    }
    w->sub = NULL;
}

/* A bare counter of messages (replies to the bare dispatch publisher, the bare ingest subscriber). */
struct counter {
    natsSubscription *sub;
    struct codec *codec; /* set: decode each message as a failure envelope */
    long count, bad;     /* atomics */
    int64_t first_ns, last_ns;
};

/* on_count() counts (and, with a codec, decodes) one message. */
static void
on_count(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    struct counter *c = closure;
    int64_t zero = 0, now;

    (void)nc;
    (void)sub;
    if (c->codec) {
        struct codec_envelope env;
        if (codec_decode(c->codec, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), false,
                         &env) != SC_OK)
            INC(c->bad);
    }
    now = mono_ns();
    __atomic_compare_exchange_n(&c->first_ns, &zero, now, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    STORE(c->last_ns, now);
    INC(c->count);
    natsMsg_Destroy(m);
}

/*
 * wait_count() waits until *counter reaches want. Gives up when it has not
 * moved for stall_ms, or when max_ms (0: no limit) have passed. Returns true
 * when reached.
 */
static bool
wait_count(long *counter, long want, long stall_ms, long max_ms)
{
    int64_t start = mono_ns(), moved = start;
    long last = LOAD(*counter);

    while (LOAD(*counter) < want) {
        long c;
        int64_t now;
        sleep_ns(1000000);
        c = LOAD(*counter);
        now = mono_ns();
        if (c != last) {
            last = c;
            moved = now;
        }
        if (now - moved > (int64_t)stall_ms * 1000000LL ||
            (max_ms > 0 && now - start > (int64_t)max_ms * 1000000LL))
            return false;
    }
    return true;
}

/*
 * wait_final_ack() waits for the ack of the last published message. While it
 * is missing, dlq.admin.stats is polled every 3 s; when enqueued stops moving
 * for stall_ms the wait gives up. Returns true when the ack came.
 */
static bool
wait_final_ack(natsConnection *nc, struct acks *a, long want, long stall_ms)
{
    int64_t moved = mono_ns(), polled = moved;
    long long last = -2;

    while (LOAD(a->count) < want) {
        int64_t now;
        sleep_ns(1000000);
        now = mono_ns();
        if (now - polled > 3000000000LL) {
            json_t *st = stats(nc);
            long long e = st ? jpath_int(st, "lifetime_stats.enqueued") : -1;
            json_decref(st);
            polled = mono_ns();
            if (e != last) {
                last = e;
                moved = polled;
            }
        }
        if (now - moved > (int64_t)stall_ms * 1000000LL)
            return false;
    }
    return true;
}

/* ---- scenario: ingest ------------------------------------------------------------------------ */

/*
 * ingest_sidecar() runs one sidecar (the bench's base flags, long backoffs,
 * then the NULL-terminated flags more, which win) against the envelopes of
 * ps, the last one a request whose ack closes the measurement. It writes
 * "<key>_..." fields into res, *lost (sent minus enqueued; -1 unknown) and
 * *cpu_us (CPU per task of the sidecar, this process and nats-server, from
 * the first publish to the final ack, /proc/PID/stat). Returns the accepted
 * tasks/s (0 when the final ack never came).
 */
static double
ingest_sidecar(natsConnection *pub, struct pubspec *ps, json_t *res, const char *key,
               const char *const *more, long long *lost, double *cpu_us)
{
    const char *extra[16] = {"--backoff.exp_base_ms=" LONG_DELAY_MS, "--backoff.linear_step_ms=" LONG_DELAY_MS};
    struct sidecar sc;
    struct acks ak;
    int64_t t0, tpub;
    bool ok;
    json_t *st;
    long long enq, qsize, invalid, refused;
    long sc0, sc1;
    double rate, c_sc, c_me, c_srv;
    char a[32], k[96];
    size_t n = 2;

    for (size_t i = 0; more && more[i] && n < 15; i++)
        extra[n++] = more[i];
    extra[n] = NULL;
    *lost = -1;
    if (sidecar_start(&sc, pub, key, extra) || acks_open(&ak, pub, NULL, 0)) {
        failures++;
        return 0;
    }
    sc0 = slow_consumers();
    c_sc = cpu_s(sc.pid);
    c_me = cpu_s(getpid());
    c_srv = cpu_s(O.nats_pid);
    t0 = mono_ns();
    publish_envelopes(pub, ps, &ak);
    tpub = mono_ns();
    ok = wait_final_ack(pub, &ak, 1, 20000);
    c_sc = cpu_s(sc.pid) - c_sc;
    c_me = cpu_s(getpid()) - c_me;
    c_srv = cpu_s(O.nats_pid) - c_srv;
    sc1 = slow_consumers();
    *cpu_us = (c_sc + c_me + c_srv) * 1e6 / (double)O.n;
    rate = ok ? (double)O.n / ((double)(LOAD(ak.last_ns) - t0) / 1e9) : 0;
    st = stats(pub);
    enq = st ? jpath_int(st, "lifetime_stats.enqueued") : -1;
    qsize = st ? jpath_int(st, "queue_size") : -1;
    invalid = st ? jpath_int(st, "lifetime_stats.invalid") : -1;
    refused = st ? jpath_int(st, "lifetime_stats.refused_full") : -1;
#define KEY(suffix) (snprintf(k, sizeof(k), "%s_%s", key, suffix), k)
    if (st)
        json_object_set(res, KEY("error_categories"), json_object_get(st, "error_categories"));
    json_decref(st);
    jnum(res, KEY("tasks_per_s"), rate);
    jnum(res, KEY("publisher_msgs_per_s"), (double)O.n / ((double)(tpub - t0) / 1e9));
    jint(res, KEY("enqueued"), enq);
    jint(res, KEY("queue_size"), qsize);
    jint(res, KEY("invalid"), invalid);
    jint(res, KEY("refused_full"), refused);
    jint(res, KEY("slow_consumer_events"), sc1 - sc0);
    jnum(res, KEY("cpu_us_per_task_sidecar"), c_sc * 1e6 / (double)O.n);
    jnum(res, KEY("cpu_us_per_task_bench"), c_me * 1e6 / (double)O.n);
    jnum(res, KEY("cpu_us_per_task_server"), c_srv * 1e6 / (double)O.n);
    jnum(res, KEY("cpu_us_per_task"), *cpu_us);
#undef KEY
    note("ingest: %s %s/s; enqueued %lld of %ld, invalid %lld, refused %lld%s; CPU per task: "
         "sidecar %.2f, bench %.2f, nats-server %.2f us",
         key, fmt_count(a, rate), enq, O.n, invalid, refused, ok ? "" : " (no final ack)",
         c_sc * 1e6 / (double)O.n, c_me * 1e6 / (double)O.n, c_srv * 1e6 / (double)O.n);
    acks_close(&ak);
    if (sidecar_stop(&sc) || !ok)
        failures++;
    if (enq != O.n)
        losses++;
    *lost = enq >= 0 ? O.n - enq : O.n;
    return rate;
}

/* scenario_ingest() measures accepted tasks/s of the sidecar against a bare libevent subscriber. */
static void
scenario_ingest(natsConnection *pub)
{
    struct env_spec env = {"in", INGEST_TASK_BYTES, NULL};
    json_t *res = jobj("ingest");
    uint8_t sample[INGEST_TASK_BYTES + 512];
    struct pubspec ps = {&env, SUBJ_FAILED, 0, O.n, 0, 0, 0, NULL};
    double bare_rate = 0, sc_rate = 0, sc_rate_defaults = 0;
    double bare_cpu = 0, sc_cpu = 0, sc_cpu_defaults = 0; /* us per task, every process */
    long long lost = -1, lost_defaults = -1;
    long sc0;
    char a[32], b[32], r[32], buf[96];

    jint(res, "tasks", O.n);
    jint(res, "envelope_bytes", (long long)build_envelope(sample, &env, O.n / 2));
    jint(res, "distinct_errors", NERRORS);
    note("ingest: %ld envelopes of ~%zu bytes, 1,000 distinct errors", O.n,
         build_envelope(sample, &env, O.n / 2));

    /* 1. the bare subscriber: libevent loop for the socket, decode on nats.c's delivery thread */
    {
        struct evconn ec;
        struct counter c;
        int64_t t0, tpub;
        double c0;
        bool ok;

        memset(&c, 0, sizeof(c));
        if (evconn_open(&ec, "bench-bare-subscriber")) {
            failures++;
            return;
        }
        c.codec = codec_new(NULL);
        if (natsConnection_QueueSubscribe(&c.sub, ec.nc, SUBJ_FAILED, "bare", on_count, &c) != NATS_OK ||
            natsConnection_FlushTimeout(ec.nc, 5000) != NATS_OK) {
            note("ingest: bare subscribe failed");
            failures++;
            evconn_close(&ec);
            codec_free(c.codec);
            return;
        }
        unlimited(c.sub);
        sc0 = slow_consumers();
        c0 = cpu_s(getpid()) + cpu_s(O.nats_pid);
        t0 = mono_ns();
        publish_envelopes(pub, &ps, NULL);
        tpub = mono_ns();
        ok = wait_count(&c.count, O.n, 10000, 0);
        bare_cpu = (cpu_s(getpid()) + cpu_s(O.nats_pid) - c0) * 1e6 / (double)O.n;
        jnum(res, "bare_cpu_us_per_task", bare_cpu);
        bare_rate = c.last_ns > t0 ? (double)LOAD(c.count) / ((double)(c.last_ns - t0) / 1e9) : 0;
        jnum(res, "bare_tasks_per_s", bare_rate);
        jnum(res, "bare_publisher_msgs_per_s", (double)O.n / ((double)(tpub - t0) / 1e9));
        jint(res, "bare_received", LOAD(c.count));
        jint(res, "bare_decode_errors", LOAD(c.bad));
        jint(res, "bare_slow_consumer_events", slow_consumers() - sc0);
        note("ingest: bare subscriber %s/s (%ld received, %ld decode errors)%s",
             fmt_count(a, bare_rate), LOAD(c.count), LOAD(c.bad), ok ? "" : " INCOMPLETE");
        natsSubscription_Unsubscribe(c.sub);
        natsSubscription_Destroy(c.sub);
        evconn_close(&ec);
        codec_free(c.codec);
        if (!ok)
            failures++;
    }

    /* 2. the sidecar, lean (events off, log level warn), then with the defaults (events on, info) */
    {
        static const char *const defaults[] = {"--events.enabled=true", "--log.level=info", NULL};

        sc_rate = ingest_sidecar(pub, &ps, res, "sidecar", NULL, &lost, &sc_cpu);
        sc_rate_defaults = ingest_sidecar(pub, &ps, res, "sidecar_defaults", defaults,
                                          &lost_defaults, &sc_cpu_defaults);
    }
    jnum(res, "ratio", bare_rate > 0 ? sc_rate / bare_rate : 0);
    jnum(res, "ratio_defaults", bare_rate > 0 ? sc_rate_defaults / bare_rate : 0);
    jnum(res, "cpu_ratio", sc_cpu > 0 ? bare_cpu / sc_cpu : 0);
    jnum(res, "cpu_ratio_defaults", sc_cpu_defaults > 0 ? bare_cpu / sc_cpu_defaults : 0);
    note("ingest: CPU per task of every process (publisher, nats-server, subscriber): "
         "bare %.2f us, defaults %.2f us (%.2fx), lean %.2f us (%.2fx)",
         bare_cpu, sc_cpu_defaults, sc_cpu_defaults > 0 ? bare_cpu / sc_cpu_defaults : 0, sc_cpu,
         sc_cpu > 0 ? bare_cpu / sc_cpu : 0);
    snprintf(buf, sizeof(buf), "bare libevent subscriber %s/s", fmt_count(b, bare_rate));
    snprintf(r, sizeof(r), "%.2fx", bare_rate > 0 ? sc_rate_defaults / bare_rate : 0);
    fmt_count(a, sc_rate_defaults);
    strcat(a, "/s");
    add_row("ingest", "accepted tasks/s, defaults (events on, log info)", a, buf, r, ">= 0.5x",
            bare_rate > 0 && sc_rate_defaults / bare_rate >= 0.5 ? "yes" : "NO");
    snprintf(r, sizeof(r), "%.2fx", bare_rate > 0 ? sc_rate / bare_rate : 0);
    fmt_count(a, sc_rate);
    strcat(a, "/s");
    add_row("ingest", "accepted tasks/s, lean (events off, log warn)", a, buf, r, ">= 0.8x (aim)",
            bare_rate > 0 && sc_rate / bare_rate >= 0.8 ? "yes" : "NO");
    if (bare_cpu > 0 && sc_cpu > 0 && sc_cpu_defaults > 0) {
        snprintf(a, sizeof(a), "%.2f / %.2f us", sc_cpu_defaults, sc_cpu);
        snprintf(buf, sizeof(buf), "bare libevent subscriber %.2f us", bare_cpu);
        snprintf(r, sizeof(r), "%.2fx / %.2fx", bare_cpu / sc_cpu_defaults, bare_cpu / sc_cpu);
        add_row("ingest",
                "CPU per task, all processes, defaults / lean (bare / sidecar: the rate ratio on "
                "idle cores)",
                a, buf, r, "report", "");
    }
    snprintf(buf, sizeof(buf), "%lld / %lld", lost_defaults, lost);
    add_row("ingest", "lost (stats: enqueued vs sent), defaults / lean", buf, "", "", "0",
            lost == 0 && lost_defaults == 0 ? "yes" : "NO");
}

/* ---- scenario: dispatch ---------------------------------------------------------------------- */

/*
 * dispatch_headers() sets the eight retry headers a sidecar sets on m for
 * task index i (DESIGN section 5: Dlq-Episode too, and Nats-Msg-Id
 * "<id>:<episode>:<attempt>"), one natsMsgHeader_Set() each, as a client
 * of nats.c's API writes them.
 */
static natsStatus
dispatch_headers(natsMsg *m, uint64_t i)
{
    static const char episode[] = "1764849600123456"; /* an episode's start in microseconds */
    char id[64], msgid[120];
    natsStatus s;

    make_id(id, "dp", i);
    snprintf(msgid, sizeof(msgid), "%s:%s:1", id, episode);
    s = natsMsgHeader_Set(m, "Dlq-Task-Id", id);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Dlq-Attempt", "1");
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Dlq-Max-Retries", "3");
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Dlq-Error-Category", "network");
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Dlq-Original-Subject", SUBJ_FAILED);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Dlq-First-Failed-At", "2024-05-01T12:00:00.000Z");
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Dlq-Episode", episode);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Nats-Msg-Id", msgid);
    return s;
}

/* The bare dispatch baseline's figures. */
struct bare_dispatch {
    double rate;            /* messages per second seen by the worker, from the first publish */
    long received, replies; /* at the worker; replies back at the publisher */
    bool complete;          /* every message reached the worker */
};

/*
 * bare_dispatch() publishes n task payloads (TASK_BYTES, the retry headers a
 * sidecar sets, a reply subject) on pub to SUBJ_RETRY as fast as nats.c can;
 * a worker on its own connection to url (one URL or a comma list) replies ok
 * to each. Waits until every message (10 s without progress) and every reply
 * (5 s) arrived. Returns 0 with the figures in *out, or -1 when it could not start.
 */
static int
bare_dispatch(natsConnection *pub, const char *url, long n, struct bare_dispatch *out)
{
    natsConnection *wc = connect_url(url, "bench-worker");
    struct worker w;
    struct counter replies;
    natsInbox *inbox = NULL;
    char subj[200], reply[200];
    uint8_t task[TASK_BYTES + 64];
    int64_t t0;

    memset(out, 0, sizeof(*out));
    memset(&replies, 0, sizeof(replies));
    if (!wc || worker_open(&w, wc, SUBJ_RETRY, NULL, 0) || natsInbox_Create(&inbox) != NATS_OK) {
        natsConnection_Destroy(wc);
        return -1;
    }
    snprintf(subj, sizeof(subj), "%s.*.*", (const char *)inbox);
    natsConnection_Subscribe(&replies.sub, pub, subj, on_count, &replies);
    unlimited(replies.sub);
    natsConnection_FlushTimeout(pub, 5000);
    t0 = mono_ns();
    for (long i = 0; i < n; i++) {
        natsMsg *m = NULL;
        size_t len = build_task(task, TASK_BYTES, (uint64_t)i);
        snprintf(reply, sizeof(reply), "%s.%ld.1", (const char *)inbox, i % 100000);
        if (natsMsg_Create(&m, SUBJ_RETRY, reply, (const char *)task, (int)len) != NATS_OK ||
            dispatch_headers(m, (uint64_t)i) != NATS_OK || natsConnection_PublishMsg(pub, m) != NATS_OK) {
            note("dispatch: bare publish failed at %ld", i);
            natsMsg_Destroy(m);
            break;
        }
        natsMsg_Destroy(m);
    }
    natsConnection_FlushTimeout(pub, 60000);
    out->complete = wait_count(&w.count, n, 10000, 0);
    wait_count(&replies.count, n, 5000, 0);
    out->rate = w.last_ns > t0 ? (double)LOAD(w.count) / ((double)(w.last_ns - t0) / 1e9) : 0;
    out->received = LOAD(w.count);
    out->replies = LOAD(replies.count);
    natsSubscription_Unsubscribe(replies.sub);
    natsSubscription_Destroy(replies.sub);
    worker_close(&w);
    natsInbox_Destroy(inbox);
    natsConnection_Destroy(wc);
    return 0;
}

/* scenario_dispatch() measures retries/s seen by a worker: sidecar (immediate policy) vs bare publish. */
static void
scenario_dispatch(natsConnection *pub)
{
    struct env_spec env = {"dp", TASK_BYTES, "immediate"};
    json_t *res = jobj("dispatch");
    double sc_rate = 0, bare_rate = 0, bare_cpu = 0, sc_cpu = 0;
    char a[32], b[32], r[32], buf[96];

    jint(res, "tasks", O.n);
    jint(res, "task_bytes", TASK_BYTES);
    note("dispatch: %ld tasks with retry_policy immediate", O.n);

    /* 1. bare publish: the same payload and headers, a reply subject, a worker that replies ok */
    {
        struct bare_dispatch bd;
        double c0 = cpu_s(getpid()) + cpu_s(O.nats_pid);
        if (bare_dispatch(pub, O.url, O.n, &bd)) {
            failures++;
            return;
        }
        bare_cpu = cpu_s(getpid()) + cpu_s(O.nats_pid) - c0;
        bare_rate = bd.rate;
        jnum(res, "bare_retries_per_s", bare_rate);
        jint(res, "bare_received", bd.received);
        jint(res, "bare_replies", bd.replies);
        note("dispatch: bare publish %s/s (%ld received, %ld replies)%s", fmt_count(a, bare_rate),
             bd.received, bd.replies, bd.complete ? "" : " INCOMPLETE");
        if (!bd.complete)
            failures++;
    }

    /* 2. the sidecar: ingest paused, then resume with a worker replying ok */
    {
        static const char *const extra[] = {"--retry_processor_enabled=false", NULL};
        natsConnection *wc = NULL;
        struct sidecar sc;
        struct acks ak;
        struct worker w;
        struct pubspec ps = {&env, SUBJ_FAILED, 0, O.n, 0, 0, 0, NULL};
        int64_t t0;
        double c0;
        bool ok;
        json_t *st, *rs;
        long long enq, succ = -1;

        if (sidecar_start(&sc, pub, "dispatch", extra) || acks_open(&ak, pub, NULL, 0)) {
            failures++;
            return;
        }
        publish_envelopes(pub, &ps, &ak);
        ok = wait_final_ack(pub, &ak, 1, 20000);
        st = stats(pub);
        enq = st ? jpath_int(st, "lifetime_stats.enqueued") : -1;
        json_decref(st);
        acks_close(&ak);
        note("dispatch: %lld tasks stored (paused); resuming with a worker", enq);
        wc = connect_plain("bench-worker");
        if (!ok || enq != O.n || !wc || worker_open(&w, wc, SUBJ_RETRY, NULL, 0)) {
            failures++;
            natsConnection_Destroy(wc);
            sidecar_stop(&sc);
            return;
        }
        t0 = mono_ns();
        c0 = cpu_s(sc.pid) + cpu_s(getpid()) + cpu_s(O.nats_pid);
        rs = request_json(pub, "dlq.admin.resume", "", 5000, NULL);
        json_decref(rs);
        ok = wait_count(&w.count, O.n, 10000, 0);
        sc_cpu = cpu_s(sc.pid) + cpu_s(getpid()) + cpu_s(O.nats_pid) - c0;
        sc_rate = w.last_ns > t0 ? (double)LOAD(w.count) / ((double)(w.last_ns - t0) / 1e9) : 0;
        for (int k = 0; k < 100; k++) {
            st = stats(pub);
            succ = st ? jpath_int(st, "lifetime_stats.retry_success") : -1;
            json_decref(st);
            if (succ >= O.n)
                break;
            sleep_ms(100);
        }
        jnum(res, "sidecar_retries_per_s", sc_rate);
        jnum(res, "sidecar_retries_per_s_first_to_last",
             w.last_ns > w.first_ns ? (double)(LOAD(w.count) - 1) / ((double)(w.last_ns - w.first_ns) / 1e9) : 0);
        jint(res, "sidecar_received", LOAD(w.count));
        jint(res, "sidecar_retry_success", succ);
        note("dispatch: sidecar %s/s (%ld received, retry_success %lld)%s", fmt_count(a, sc_rate),
             LOAD(w.count), succ, ok ? "" : " INCOMPLETE");
        worker_close(&w);
        natsConnection_Destroy(wc);
        if (sidecar_stop(&sc) || !ok)
            failures++;
        if (succ != O.n)
            losses++;
    }
    jnum(res, "ratio", bare_rate > 0 ? sc_rate / bare_rate : 0);
    snprintf(buf, sizeof(buf), "bare nats.c publish %s/s", fmt_count(b, bare_rate));
    snprintf(r, sizeof(r), "%.2fx", bare_rate > 0 ? sc_rate / bare_rate : 0);
    fmt_count(a, sc_rate);
    strcat(a, "/s");
    add_row("dispatch", "retries/s seen by the worker", a, buf, r, ">= 0.8x",
            bare_rate > 0 && sc_rate / bare_rate >= 0.8 ? "yes" : "NO");
    /*
     * The same work in CPU time of every process taking part (this bench's
     * publisher or worker, nats-server, the sidecar): what the rates would
     * be on an otherwise idle machine, and steadier than they on a shared one.
     */
    jnum(res, "bare_cpu_us_per_retry", bare_cpu * 1e6 / (double)O.n);
    jnum(res, "sidecar_cpu_us_per_retry", sc_cpu * 1e6 / (double)O.n);
    jnum(res, "cpu_ratio", sc_cpu > 0 ? bare_cpu / sc_cpu : 0);
    if (bare_cpu > 0 && sc_cpu > 0) {
        snprintf(a, sizeof(a), "%.1f us", sc_cpu * 1e6 / (double)O.n);
        snprintf(buf, sizeof(buf), "bare nats.c publish %.1f us", bare_cpu * 1e6 / (double)O.n);
        snprintf(r, sizeof(r), "%.2fx", bare_cpu / sc_cpu);
        add_row("dispatch", "CPU per retry, all processes (bare / sidecar: the rate ratio on idle cores)", a,
                buf, r, "report", "");
    }
}

/* ---- scenario: timer accuracy ---------------------------------------------------------------- */

/* Lateness summary in ms. */
struct late {
    double p50, p99, max, min;
    long n, missing;
};

/* lateness() computes arrival - due over n tasks (entries <= 0 are missing). */
static struct late
lateness(const double *due, const double *arrival, long n)
{
    struct late l = {0, 0, 0, 0, 0, 0};
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));

    if (!v)
        return l;
    for (long i = 0; i < n; i++) {
        if (due[i] > 0 && arrival[i] > 0)
            v[l.n++] = arrival[i] - due[i];
        else
            l.missing++;
    }
    qsort(v, (size_t)l.n, sizeof(double), cmp_double);
    l.p50 = pct(v, (size_t)l.n, 50);
    l.p99 = pct(v, (size_t)l.n, 99);
    l.max = l.n ? v[l.n - 1] : 0;
    l.min = l.n ? v[0] : 0;
    free(v);
    return l;
}

/* jlate() stores a lateness summary under key in o. */
static void
jlate(json_t *o, const char *key, const struct late *l)
{
    json_t *x = json_object();

    jnum(x, "p50_ms", l->p50);
    jnum(x, "p99_ms", l->p99);
    jnum(x, "max_ms", l->max);
    jnum(x, "min_ms", l->min);
    jint(x, "measured", l->n);
    jint(x, "missing", l->missing);
    json_object_set_new(o, key, x);
}

/* jlate_batches() stores p50/p99/max lateness per delay batch under key in o (diagnostics). */
static void
jlate_batches(json_t *o, const char *key, const double *due, const double *arrival, long n)
{
    json_t *arr = json_array();

    for (long bt = 0; bt < O.timer_batches; bt++) {
        long first = n * bt / O.timer_batches, last = n * (bt + 1) / O.timer_batches;
        struct late l = lateness(due + first, arrival + first, last - first);
        json_t *x = json_object();
        jint(x, "delay_ms", delay_of(first, n));
        jnum(x, "p50_ms", l.p50);
        jnum(x, "p99_ms", l.p99);
        jnum(x, "max_ms", l.max);
        json_array_append_new(arr, x);
    }
    json_object_set_new(o, key, arr);
}

/* write_step() writes the timer scenario's config file with backoff.linear_step_ms = step. */
static int
write_step(const char *path, long step)
{
    FILE *f = fopen(path, "w");

    if (!f)
        return -1;
    fprintf(f, "# written by dlq-bench: one batch of the timer scenario\nbackoff:\n  linear_step_ms: %ld\n",
            step);
    return fclose(f) == 0 ? 0 : -1;
}

/* wait_step() polls dlq.admin.classify until the linear delay is step ms (after a SIGHUP). */
static bool
wait_step(natsConnection *nc, long step)
{
    for (int k = 0; k < 250; k++) {
        json_t *j = request_json(nc, "dlq.admin.classify", "{\"error\":\"disk full\"}", 2000, NULL);
        json_t *d = j ? json_array_get(json_object_get(j, "delays_ms"), 0) : NULL;
        bool ok = d && json_is_integer(d) && json_integer_value(d) == step;
        json_decref(j);
        if (ok)
            return true;
        sleep_ms(20);
    }
    return false;
}

/* scenario_timer() measures how late retries arrive against the due time the ingest ack announced. */
static void
scenario_timer(natsConnection *pub, struct late *out)
{
    static char cfgflag[700];
    const char *extra[] = {cfgflag, "--backoff.jitter=0", "--backoff.exp_base_ms=" LONG_DELAY_MS, NULL};
    struct env_spec env = {"tm", TASK_BYTES, "linear"};
    json_t *res = jobj("timer");
    long n = O.timer_n;
    double *due = calloc((size_t)n, sizeof(double)), *arr = calloc((size_t)n, sizeof(double));
    char path[600], a[96], b[64], c[96];
    natsConnection *wc = NULL;
    struct sidecar sc;
    struct acks ak;
    struct worker w;
    struct late l;
    bool ok = true;

    memset(&ak, 0, sizeof(ak));
    memset(&w, 0, sizeof(w));
    memset(out, 0, sizeof(*out));
    jint(res, "tasks", n);
    jint(res, "tick_ms", O.tick_ms);
    jint(res, "delay_min_ms", O.timer_min_ms);
    jint(res, "delay_max_ms", O.timer_max_ms);
    jint(res, "batches", O.timer_batches);
    note("timer: %ld tasks due %ld-%ld ms after ingest, %ld batches ingested at %s (linear step set "
         "per batch by SIGHUP), %ld more held an hour",
         n, O.timer_min_ms, O.timer_max_ms, O.timer_batches, O.timer_burst ? "a burst (one batch in 120 ms)" : "a paced rate",
         O.timer_held);
    jnum(res, "ingest_per_s", timer_rate());
    json_object_set_new(res, "burst", json_boolean(O.timer_burst));
    jint(res, "held", O.timer_held);
    snprintf(path, sizeof(path), "%s/timer.yaml", O.workdir);
    snprintf(cfgflag, sizeof(cfgflag), "--config=%s", path);
    if (!due || !arr || write_step(path, delay_of(0, n)) || sidecar_start(&sc, pub, "timer", extra)) {
        failures++;
        free(due);
        free(arr);
        return;
    }
    wc = connect_plain("bench-worker");
    if (!wc || worker_open(&w, wc, SUBJ_RETRY_TIMER, arr, n) || acks_open(&ak, pub, due, n)) {
        failures++;
        goto done;
    }
    if (O.timer_held > 0) {
        /* exponential, base an hour (a flag): they stay in the wheels for the whole measurement */
        struct env_spec henv = {"th", TASK_BYTES, "exponential"};
        struct pubspec hs = {&henv, SUBJ_FAILED, 0, O.timer_held, 1000, 50000, 0, NULL};
        struct acks hk;
        bool hok;
        if (acks_open(&hk, pub, NULL, 0)) {
            failures++;
            goto done;
        }
        publish_envelopes(pub, &hs, &hk);
        hok = wait_final_ack(pub, &hk, (O.timer_held + 999) / 1000, 20000);
        acks_close(&hk);
        if (!hok) {
            note("timer: the %ld held tasks were not all acknowledged", O.timer_held);
            failures++;
            goto done;
        }
    }
    for (long bt = 0; bt < O.timer_batches && ok; bt++) {
        long first = n * bt / O.timer_batches, last = n * (bt + 1) / O.timer_batches;
        long step = delay_of(first, n);
        struct pubspec ps = {&env, SUBJ_FAILED_TIMER, first, last - first, 1, 2000, timer_rate(), NULL};
        if (last <= first)
            continue;
        if (bt > 0 && (write_step(path, step) || kill(sc.pid, SIGHUP) != 0)) {
            ok = false;
            break;
        }
        if (!wait_step(pub, step)) {
            note("timer: the sidecar did not take linear_step_ms=%ld", step);
            ok = false;
            break;
        }
        if (publish_envelopes(pub, &ps, &ak) != last - first || !wait_count(&ak.count, last, 10000, 0)) {
            note("timer: batch %ld not acknowledged (%ld acks)", bt, LOAD(ak.count));
            ok = false;
        }
    }
    if (ok && !wait_count(&w.count, n, O.timer_max_ms + 15000, O.timer_max_ms * 2 + 60000))
        note("timer: only %ld of %ld retries arrived", LOAD(w.count), n);
    l = lateness(due, arr, n);
    *out = l;
    if (getenv("BENCH_DUMP_LATENESS")) {
        FILE *f = fopen(getenv("BENCH_DUMP_LATENESS"), "w");
        for (long i = 0; f && i < n; i++)
            fprintf(f, "%ld %.3f %.3f\n", i, due[i], arr[i] - due[i]);
        if (f)
            fclose(f);
    }
    jlate(res, "sidecar_lateness", &l);
    jlate_batches(res, "sidecar_lateness_by_batch", due, arr, n);
    jint(res, "ack_errors", LOAD(ak.errors));
    note("timer: sidecar lateness p50 %.1f ms, p99 %.1f ms, max %.1f ms (%ld measured, %ld missing)",
         l.p50, l.p99, l.max, l.n, l.missing);
    if (!ok || l.missing)
        failures++;
    if (l.missing)
        losses++;
    snprintf(a, sizeof(a), "%.1f / %.1f / %.1f ms", l.p50, l.p99, l.max);
    snprintf(b, sizeof(b), "%.2f ticks", l.p99 / (double)O.tick_ms);
    snprintf(c, sizeof(c), "lateness p50 / p99 / max%s%s", O.timer_burst ? ", burst" : "",
             O.timer_held ? ", 1,000,000 scheduled" : "");
    if (O.timer_held && O.timer_held + n != 1000000)
        snprintf(c, sizeof(c), "lateness p50 / p99 / max%s, %ld scheduled", O.timer_burst ? ", burst" : "",
                 O.timer_held + n);
    add_row("timer", c, a, "", b, "p99 <= 1 tick", l.n && l.p99 <= (double)O.tick_ms ? "yes" : "NO");
done:
    acks_close(&ak);
    worker_close(&w);
    natsConnection_Destroy(wc);
    if (sidecar_stop(&sc))
        failures++;
    free(due);
    free(arr);
}

/* ---- scenario: memory and admin latency (one sidecar holding N tasks) ------------------------ */

/* Background ingest for the admin measurement. */
struct bg {
    natsConnection *nc;
    double rate;
    int stop;
    long sent;
    pthread_t th;
};

/* bg_main() publishes new tasks at bg->rate until told to stop. */
static void *
bg_main(void *arg)
{
    struct bg *g = arg;
    struct env_spec env = {"bg", TASK_BYTES, NULL};
    struct pubspec ps = {&env, SUBJ_FAILED, 0, LONG_MAX / 4, 0, 0, g->rate, &g->stop};

    g->sent = publish_envelopes(g->nc, &ps, NULL);
    return NULL;
}

/*
 * A bare responder shaped like the sidecar's admin path: nats.c delivers on
 * its thread, the message is handed to a libevent loop thread, which
 * publishes a fixed reply. Its round trip is the floor under any admin verb.
 */
struct responder {
    struct evconn ec;
    natsSubscription *sub;
    struct event *wake;
    pthread_mutex_t mu;
    natsMsg *q[256];
    int qn;
};

/* responder_wake() answers the handed-off requests on the loop thread. */
static void
responder_wake(evutil_socket_t fd, short what, void *arg)
{
    struct responder *r = arg;
    natsMsg *q[256];
    int n;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&r->mu);
    n = r->qn;
    memcpy(q, r->q, sizeof(natsMsg *) * (size_t)n);
    r->qn = 0;
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < n; i++) {
        const char *reply = natsMsg_GetReply(q[i]);
        if (reply && *reply)
            natsConnection_Publish(r->ec.nc, reply, "{\"status\":\"ok\"}", 15);
        natsMsg_Destroy(q[i]);
    }
}

/* responder_msg() hands a request from nats.c's delivery thread to the loop. */
static void
responder_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    struct responder *r = closure;

    (void)nc;
    (void)sub;
    pthread_mutex_lock(&r->mu);
    if (r->qn < 256) {
        r->q[r->qn++] = m;
        m = NULL;
    }
    pthread_mutex_unlock(&r->mu);
    natsMsg_Destroy(m);
    event_active(r->wake, EV_READ, 0);
}

/* responder_open() starts the bare responder on subject. Returns 0 or -1. */
static int
responder_open(struct responder *r, const char *subject)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    if (evconn_open(&r->ec, "bench-bare-responder"))
        return -1;
    r->wake = event_new(r->ec.base, -1, 0, responder_wake, r);
    if (!r->wake ||
        natsConnection_Subscribe(&r->sub, r->ec.nc, subject, responder_msg, r) != NATS_OK ||
        natsConnection_FlushTimeout(r->ec.nc, 5000) != NATS_OK)
        return -1;
    return 0;
}

/* responder_close() stops it. */
static void
responder_close(struct responder *r)
{
    if (r->sub) {
        natsSubscription_Unsubscribe(r->sub);
        natsSubscription_Destroy(r->sub);
    }
    evconn_close(&r->ec);
    if (r->wake)
        event_free(r->wake);
    for (int i = 0; i < r->qn; i++)
        natsMsg_Destroy(r->q[i]);
    pthread_mutex_destroy(&r->mu);
    memset(r, 0, sizeof(*r));
}

/* Latency summary of one admin verb. */
struct lat {
    double p50, p99, max;
    long n, failed;
};

/* lat_summarize() sorts the n samples of v and fills l's percentiles. */
static void
lat_summarize(double *v, struct lat *l)
{
    qsort(v, (size_t)l->n, sizeof(double), cmp_double);
    l->p50 = pct(v, (size_t)l->n, 50);
    l->p99 = pct(v, (size_t)l->n, 99);
    l->max = l->n ? v[l->n - 1] : 0;
}

/*
 * admin_samples() times k requests each of stats, list(100) and health
 * (a verb that does no work: the fixed cost of a round trip through the
 * sidecar), and of the bare responder (the same round trip without the
 * sidecar), interleaved, 5 ms apart.
 */
static void
admin_samples(natsConnection *nc, long k, struct lat *st, struct lat *ls, struct lat *hl,
              struct lat *bl)
{
    double *vs = calloc((size_t)k, sizeof(double)), *vl = calloc((size_t)k, sizeof(double));
    double *vh = calloc((size_t)k, sizeof(double)), *vb = calloc((size_t)k, sizeof(double));

    memset(st, 0, sizeof(*st));
    memset(ls, 0, sizeof(*ls));
    memset(hl, 0, sizeof(*hl));
    memset(bl, 0, sizeof(*bl));
    if (!vs || !vl || !vh || !vb) {
        free(vs);
        free(vl);
        free(vh);
        free(vb);
        return;
    }
    for (long i = 0; i < k; i++) {
        double ms;
        json_t *j = request_json(nc, "dlq.admin.stats", "", 10000, &ms);
        if (j && json_object_get(j, "queue_size"))
            vs[st->n++] = ms;
        else
            st->failed++;
        json_decref(j);
        sleep_ms(5);
        j = request_json(nc, "dlq.admin.list", "{\"limit\":100}", 10000, &ms);
        if (j && json_array_size(json_object_get(j, "tasks")) == 100)
            vl[ls->n++] = ms;
        else
            ls->failed++;
        json_decref(j);
        sleep_ms(5);
        j = request_json(nc, "dlq.admin.health", "", 10000, &ms);
        if (j && json_object_get(j, "status"))
            vh[hl->n++] = ms;
        else
            hl->failed++;
        json_decref(j);
        sleep_ms(5);
        j = request_json(nc, "bench.bare.responder", "", 10000, &ms);
        if (j && json_object_get(j, "status"))
            vb[bl->n++] = ms;
        else
            bl->failed++;
        json_decref(j);
        sleep_ms(5);
    }
    lat_summarize(vs, st);
    lat_summarize(vl, ls);
    lat_summarize(vh, hl);
    lat_summarize(vb, bl);
    free(vs);
    free(vl);
    free(vh);
    free(vb);
}

/* jlat() stores a latency summary under key in o. */
static void
jlat(json_t *o, const char *key, const struct lat *l)
{
    json_t *x = json_object();

    jnum(x, "p50_ms", l->p50);
    jnum(x, "p99_ms", l->p99);
    jnum(x, "max_ms", l->max);
    jint(x, "samples", l->n);
    jint(x, "failed", l->failed);
    json_object_set_new(o, key, x);
}

/* scenario_store() fills one sidecar with N tasks: RSS per task, then admin latency idle and under ingest. */
static void
scenario_store(natsConnection *pub, double *bytes_per_task)
{
    static const char *const extra[] = {"--backoff.exp_base_ms=" LONG_DELAY_MS,
                                        "--backoff.linear_step_ms=" LONG_DELAY_MS, NULL};
    struct env_spec env = {"mem", TASK_BYTES, NULL};
    struct pubspec ps = {&env, SUBJ_FAILED, 0, O.n, 1000, 50000, 0, NULL};
    json_t *mem = jobj("memory"), *adm = NULL, *st;
    struct sidecar sc;
    struct acks ak;
    long rss0, rss1;
    long long enq;
    bool ok;
    char a[96], b[96], c[48], x[32], m[96];

    *bytes_per_task = 0;
    note("memory: %ld tasks with %d-byte payloads into one sidecar", O.n, TASK_BYTES);
    if (sidecar_start(&sc, pub, "store", extra) || acks_open(&ak, pub, NULL, 0)) {
        failures++;
        return;
    }
    sleep_ms(300);
    rss0 = rss_kb(sc.pid);
    publish_envelopes(pub, &ps, &ak);
    ok = wait_final_ack(pub, &ak, (O.n + 999) / 1000, 20000);
    acks_close(&ak);
    st = stats(pub);
    enq = st ? jpath_int(st, "lifetime_stats.enqueued") : -1;
    json_decref(st);
    sleep_ms(500);
    rss1 = rss_kb(sc.pid);
    *bytes_per_task = enq > 0 ? (double)(rss1 - rss0) * 1024.0 / (double)enq : 0;
    jint(mem, "tasks", enq);
    jint(mem, "task_bytes", TASK_BYTES);
    jint(mem, "rss_before_kb", rss0);
    jint(mem, "rss_after_kb", rss1);
    jnum(mem, "rss_bytes_per_task", *bytes_per_task);
    note("memory: RSS %ld kB -> %ld kB for %lld tasks: %.0f bytes per task", rss0, rss1, enq,
         *bytes_per_task);
    if (!ok || enq != O.n) {
        failures++;
        sidecar_stop(&sc);
        return;
    }

    if (O.scen & S_ADMIN) {
        struct lat s_idle, l_idle, h_idle, b_idle, s_load, l_load, h_load, b_load;
        struct responder rsp;
        struct bg g;
        int64_t t0;
        double secs;
        long long enq2, ref0, ref2;

        adm = jobj("admin");
        st = stats(pub);
        ref0 = st ? jpath_int(st, "lifetime_stats.refused_full") : -1;
        json_decref(st);
        jint(adm, "stored_tasks", enq);
        note("admin: %ld stats + %ld list(100) requests with %lld tasks stored, idle", O.admin_samples,
             O.admin_samples, enq);
        if (responder_open(&rsp, "bench.bare.responder")) {
            note("admin: the bare responder did not start");
            failures++;
        }
        admin_samples(pub, O.admin_samples, &s_idle, &l_idle, &h_idle, &b_idle);
        jlat(adm, "stats_idle", &s_idle);
        jlat(adm, "health_idle", &h_idle);
        jlat(adm, "bare_responder_idle", &b_idle);
        jlat(adm, "list100_idle", &l_idle);
        note("admin: idle: stats p50 %.2f p99 %.2f ms; list(100) p50 %.2f p99 %.2f ms; health p50 "
             "%.2f p99 %.2f ms; bare responder p50 %.2f p99 %.2f ms",
             s_idle.p50, s_idle.p99, l_idle.p50, l_idle.p99, h_idle.p50, h_idle.p99, b_idle.p50,
             b_idle.p99);

        memset(&g, 0, sizeof(g));
        g.rate = (double)O.admin_rate;
        g.nc = connect_plain("bench-bg-ingest");
        if (!g.nc || pthread_create(&g.th, NULL, bg_main, &g) != 0) {
            failures++;
            natsConnection_Destroy(g.nc);
            sidecar_stop(&sc);
            return;
        }
        note("admin: the same while ingest runs at %ld tasks/s", O.admin_rate);
        t0 = mono_ns();
        sleep_ms(200);
        admin_samples(pub, O.admin_samples, &s_load, &l_load, &h_load, &b_load);
        STORE(g.stop, 1);
        pthread_join(g.th, NULL);
        secs = (double)(mono_ns() - t0) / 1e9;
        natsConnection_Destroy(g.nc);
        sleep_ms(300);
        st = stats(pub);
        enq2 = st ? jpath_int(st, "lifetime_stats.enqueued") : -1;
        ref2 = st ? jpath_int(st, "lifetime_stats.refused_full") : -1;
        json_decref(st);
        jlat(adm, "stats_under_ingest", &s_load);
        jlat(adm, "list100_under_ingest", &l_load);
        jlat(adm, "health_under_ingest", &h_load);
        jlat(adm, "bare_responder_under_ingest", &b_load);
        responder_close(&rsp);
        jint(adm, "background_ingest_sent", g.sent);
        jnum(adm, "background_ingest_per_s", (double)g.sent / secs);
        jint(adm, "background_ingest_enqueued", enq2 - enq);
        note("admin: under ingest (%ld sent, %lld enqueued): stats p50 %.2f p99 %.2f ms; list(100) "
             "p50 %.2f p99 %.2f ms; health p50 %.2f p99 %.2f ms; bare responder p50 %.2f p99 %.2f ms",
             g.sent, enq2 - enq, s_load.p50, s_load.p99, l_load.p50, l_load.p99, h_load.p50,
             h_load.p99, b_load.p50, b_load.p99);
        if (s_load.failed || l_load.failed || s_idle.failed || l_idle.failed)
            failures++;
        jint(adm, "background_ingest_refused_full", ref2 - ref0);
        /*
         * With 10,000,000 stored (--full) the queue is at max_size's upper
         * bound: the background failures are refused (queue full, a 503 by
         * design), which still loads the loop. Only then are refusals no loss.
         */
        if (enq2 - enq != g.sent &&
            !(enq >= 10000000 && enq2 - enq + (ref2 - ref0) == g.sent))
            losses++;
        snprintf(a, sizeof(a), "%.2f / %.2f ms", s_load.p50, s_load.p99);
        snprintf(b, sizeof(b), "idle: %.2f / %.2f; bare responder: %.2f / %.2f ms", s_idle.p50,
                 s_idle.p99, b_load.p50, b_load.p99);
        snprintf(c, sizeof(c), "%s", fmt_count(x, (double)enq));
        snprintf(m, sizeof(m), "stats p50 / p99 (%s tasks, ingest %s/s)", c,
                 fmt_count(x, (double)O.admin_rate));
        add_row("admin", m, a, b, "", "p99 <= 2 ms", s_load.n && s_load.p99 <= 2.0 ? "yes" : "NO");
        snprintf(a, sizeof(a), "%.2f / %.2f ms", l_load.p50, l_load.p99);
        snprintf(b, sizeof(b), "idle: %.2f / %.2f ms", l_idle.p50, l_idle.p99);
        snprintf(m, sizeof(m), "list(100) p50 / p99 (%s tasks, ingest %s/s)", c,
                 fmt_count(x, (double)O.admin_rate));
        add_row("admin", m, a, b, "", "p99 <= 10 ms", l_load.n && l_load.p99 <= 10.0 ? "yes" : "NO");
    }
    if (sidecar_stop(&sc))
        failures++;
}

/* ---- scenario: JetStream as a peer ----------------------------------------------------------- */

/* js_reset() deletes and re-creates a memory stream name on subject. Returns 0 or -1. */
static int
js_reset(jsCtx *js, const char *name, const char *subject)
{
    jsStreamConfig cfg;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    const char *subjects[1] = {subject};
    natsStatus s;

    js_DeleteStream(js, name, NULL, &jerr);
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_MemoryStorage;
    s = js_AddStream(&si, js, &cfg, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK)
        note("peer: js_AddStream %s: %s (%d)", name, natsStatus_GetText(s), (int)jerr);
    return s == NATS_OK ? 0 : -1;
}

/*
 * js_fill() publishes n task payloads (with a Dlq-Task-Id header) to subject,
 * at rate per second (0: as fast as acks allow), and waits until stored.
 * Returns the stream's message count, or -1.
 */
static long
js_fill(jsCtx *js, const char *stream, const char *subject, const char *prefix, long n, double rate)
{
    uint8_t task[TASK_BYTES + 64];
    char id[64];
    jsPubOptions po;
    jsStreamInfo *si = NULL;
    long stored = -1;
    int64_t t0 = mono_ns();

    for (long i = 0; i < n; i++) {
        natsMsg *m = NULL;
        size_t len = build_task(task, TASK_BYTES, (uint64_t)i);
        make_id(id, prefix, (uint64_t)i);
        if ((i & 7) == 0)
            pace(t0, i, rate);
        if (natsMsg_Create(&m, subject, NULL, (const char *)task, (int)len) != NATS_OK ||
            natsMsgHeader_Set(m, "Dlq-Task-Id", id) != NATS_OK ||
            js_PublishMsgAsync(js, &m, NULL) != NATS_OK) {
            natsMsg_Destroy(m);
            note("peer: publish failed at %ld", i);
            return -1;
        }
    }
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    js_PublishAsyncComplete(js, &po);
    if (js_GetStreamInfo(&si, js, stream, NULL, NULL) == NATS_OK)
        stored = (long)si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return stored;
}

/* Shared state of the JetStream consumers. */
struct jsw {
    long count;                /* atomic: acked (throughput) or redelivered (lateness) */
    int64_t first_ns, last_ns; /* atomics */
    double *due, *arr;         /* lateness: by stream sequence - 1 */
    long n;
};

/* on_js_tput() acks each delivery. */
static void
on_js_tput(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    struct jsw *j = closure;
    int64_t now = mono_ns(), zero = 0;

    (void)nc;
    (void)sub;
    natsMsg_Ack(m, NULL);
    __atomic_compare_exchange_n(&j->first_ns, &zero, now, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    STORE(j->last_ns, now);
    INC(j->count);
    natsMsg_Destroy(m);
}

/* on_js_timer() naks a first delivery with the task's delay and acks (and times) the redelivery. */
static void
on_js_timer(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    struct jsw *j = closure;
    double wall = wall_ms();
    jsMsgMetaData *meta = NULL;

    (void)nc;
    (void)sub;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
        long i = (long)meta->Sequence.Stream - 1;
        if (i >= 0 && i < j->n) {
            if (meta->NumDelivered == 1) {
                long d = delay_of(i, j->n);
                j->due[i] = wall_ms() + (double)d;
                natsMsg_NakWithDelay(m, d, NULL);
            } else {
                j->arr[i] = wall;
                natsMsg_Ack(m, NULL);
                INC(j->count);
            }
        }
        jsMsgMetaData_Destroy(meta);
    }
    natsMsg_Destroy(m);
}

/* js_consume() creates a push consumer on subject with explicit acks and cb. */
static natsSubscription *
js_consume(jsCtx *js, const char *subject, long max_ack_pending, natsMsgHandler cb, void *closure)
{
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    natsStatus s;

    jsSubOptions_Init(&so);
    so.ManualAck = true;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.MaxAckPending = max_ack_pending;
    so.Config.AckWait = 30000LL * 1000000LL; /* the server default, explicit */
    s = js_Subscribe(&sub, js, subject, cb, closure, NULL, &so, &jerr);
    if (s != NATS_OK) {
        note("peer: js_Subscribe %s: %s (%d)", subject, natsStatus_GetText(s), (int)jerr);
        return NULL;
    }
    unlimited(sub);
    return sub;
}

/* scenario_peer() runs the retry workload with JetStream alone: throughput, lateness, server RSS. */
static void
scenario_peer(double *rate_out, struct late *late_out, double *bytes_out)
{
    json_t *res = jobj("peer");
    natsConnection *nc = connect_plain("bench-jetstream");
    jsCtx *js = NULL;
    jsOptions jo;
    struct jsw j;
    natsSubscription *sub;
    long stored, rss0 = 0, rss1 = 0;
    int64_t t0;
    bool ok;

    *rate_out = 0;
    *bytes_out = 0;
    memset(late_out, 0, sizeof(*late_out));
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    jo.PublishAsync.StallWait = 30000; /* nats.c's 200 ms default fails the fill on a busy 2.15 server */
    if (!nc || natsConnection_JetStream(&js, nc, &jo) != NATS_OK || js_reset(js, JS_STREAM_TPUT, JS_SUBJ_TPUT)) {
        note("peer: JetStream unavailable (is nats-server running with -js?)");
        failures++;
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
        return;
    }

    /* 1. throughput: N stored messages delivered to a push consumer that acks each */
    note("peer: JetStream (memory stream, push consumer, explicit ack): %ld messages", O.n);
    if (O.nats_pid > 0) {
        sleep_ms(300);
        rss0 = rss_kb(O.nats_pid);
    }
    stored = js_fill(js, JS_STREAM_TPUT, JS_SUBJ_TPUT, "js", O.n, 0);
    if (O.nats_pid > 0) {
        sleep_ms(500);
        rss1 = rss_kb(O.nats_pid);
        *bytes_out = stored > 0 ? (double)(rss1 - rss0) * 1024.0 / (double)stored : 0;
        jint(res, "server_rss_before_kb", rss0);
        jint(res, "server_rss_after_kb", rss1);
        jnum(res, "server_rss_bytes_per_msg", *bytes_out);
    }
    jint(res, "stored", stored);
    memset(&j, 0, sizeof(j));
    t0 = mono_ns();
    sub = stored == O.n ? js_consume(js, JS_SUBJ_TPUT, O.n + 1000, on_js_tput, &j) : NULL;
    ok = sub && wait_count(&j.count, O.n, 10000, 0);
    *rate_out = j.last_ns > t0 ? (double)LOAD(j.count) / ((double)(j.last_ns - t0) / 1e9) : 0;
    jnum(res, "js_tasks_per_s", *rate_out);
    jint(res, "js_acked", LOAD(j.count));
    note("peer: JetStream %.0f tasks/s (%ld acked)%s", *rate_out, LOAD(j.count), ok ? "" : " INCOMPLETE");
    if (!ok)
        failures++;
    if (sub) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
    js_DeleteStream(js, JS_STREAM_TPUT, NULL, NULL);

    /* 2. lateness: each message is nak'ed with its batch's delay, the redelivery is timed */
    if (O.scen & S_TIMER) {
        long n = O.timer_n;
        memset(&j, 0, sizeof(j));
        j.n = n;
        j.due = calloc((size_t)n, sizeof(double));
        j.arr = calloc((size_t)n, sizeof(double));
        note("peer: JetStream NakWithDelay: %ld messages due %ld-%ld ms later, published at %.0f/s", n,
             O.timer_min_ms, O.timer_max_ms, timer_rate());
        /* the consumer exists first: each message is nak'ed as it is published, at the timer pace */
        sub = NULL;
        if (j.due && j.arr && js_reset(js, JS_STREAM_TIMER, JS_SUBJ_TIMER) == 0)
            sub = js_consume(js, JS_SUBJ_TIMER, n + 1000, on_js_timer, &j);
        if (sub && js_fill(js, JS_STREAM_TIMER, JS_SUBJ_TIMER, "jt", n, timer_rate()) == n) {
            if (!wait_count(&j.count, n, O.timer_max_ms + 15000, O.timer_max_ms * 2 + 60000))
                note("peer: only %ld of %ld redeliveries arrived", LOAD(j.count), n);
            *late_out = lateness(j.due, j.arr, n);
            jlate(res, "js_lateness", late_out);
            jlate_batches(res, "js_lateness_by_batch", j.due, j.arr, n);
            note("peer: JetStream lateness p50 %.1f ms, p99 %.1f ms, max %.1f ms (%ld measured, %ld missing)",
                 late_out->p50, late_out->p99, late_out->max, late_out->n, late_out->missing);
            if (late_out->missing)
                failures++;
        } else {
            failures++;
        }
        if (sub) {
            natsSubscription_Unsubscribe(sub);
            natsSubscription_Destroy(sub);
        }
        js_DeleteStream(js, JS_STREAM_TIMER, NULL, NULL);
        free(j.due);
        free(j.arr);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* ---- scenario: JetStream ingest ------------------------------------------------------------- */

#define JSI_STREAM "DLQ_FAILED"        /* ingest.stream's default */
#define JSI_SUBJECTS "dlq.failed.>"    /* what the sidecar's stream captures */
#define JSI_BARE_DURABLE "bench-bare"
#define JSI_MAX_ACK_PENDING 10000      /* ingest.max_ack_pending's default */
#define JSI_POLL_NS 5000000LL          /* stream-state samples, 5 ms apart */

/*
 * The drain of the stream as the server sees it, the same measure for both
 * consumers: a thread samples the stream's message count (work-queue
 * retention: an acked message leaves the stream) until it reaches 0. The
 * rate is the messages left at the first sample below n over the time from
 * that sample to the first sample at 0.
 */
struct drain {
    jsCtx *js;
    long n;                    /* messages in the stream at the start */
    int stop;                  /* atomic: give up */
    pthread_t th;
    int64_t t_first, t_last;   /* mono ns: first sample below n, first sample at 0 */
    long m_first;              /* messages left at t_first */
    long left;                 /* atomic: the latest sample */
};

/* drain_main() samples the stream every JSI_POLL_NS until it is empty or told to stop. */
static void *
drain_main(void *arg)
{
    struct drain *d = arg;

    while (!LOAD(d->stop)) {
        jsStreamInfo *si = NULL;
        if (js_GetStreamInfo(&si, d->js, JSI_STREAM, NULL, NULL) == NATS_OK) {
            long msgs = (long)si->State.Msgs;
            int64_t now = mono_ns();
            jsStreamInfo_Destroy(si);
            STORE(d->left, msgs);
            if (!d->t_first && msgs < d->n) {
                d->t_first = now;
                d->m_first = msgs;
            }
            if (msgs == 0) {
                d->t_last = now;
                break;
            }
        }
        sleep_ns(JSI_POLL_NS);
    }
    return NULL;
}

/* drain_rate() is the measured rate in messages per second (0 when the stream never emptied). */
static double
drain_rate(const struct drain *d)
{
    if (!d->t_last || d->t_last <= d->t_first)
        return 0;
    return (double)d->m_first / ((double)(d->t_last - d->t_first) / 1e9);
}

/*
 * drain_wait() waits until the stream is empty; gives up (and stops the
 * sampler) when the count has not moved for stall_ms. Returns true when empty.
 */
static bool
drain_wait(struct drain *d, long stall_ms)
{
    int64_t moved = mono_ns();
    long last = LOAD(d->left);

    while (LOAD(d->left) > 0) {
        long left;
        sleep_ms(10);
        left = LOAD(d->left);
        if (left != last) {
            last = left;
            moved = mono_ns();
        } else if (mono_ns() - moved > (int64_t)stall_ms * 1000000LL) {
            break;
        }
    }
    STORE(d->stop, 1);
    pthread_join(d->th, NULL); /* t_first, t_last and m_first are read after the join */
    return d->t_last > 0;
}

/* jsi_reset() deletes and re-creates the sidecar's stream as the sidecar would: work-queue, memory. */
static int
jsi_reset(jsCtx *js)
{
    jsStreamConfig cfg;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    const char *subjects[1] = {JSI_SUBJECTS};
    natsStatus s;

    js_DeleteStream(js, JSI_STREAM, NULL, &jerr);
    jsStreamConfig_Init(&cfg);
    cfg.Name = JSI_STREAM;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Retention = js_WorkQueuePolicy;
    cfg.Storage = js_MemoryStorage;
    s = js_AddStream(&si, js, &cfg, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK)
        note("jsingest: js_AddStream %s: %s (%d)", JSI_STREAM, natsStatus_GetText(s), (int)jerr);
    return s == NATS_OK ? 0 : -1;
}

/*
 * jsi_fill() publishes the n ingest envelopes (the core ingest scenario's,
 * indexes 0..n-1) to SUBJ_FAILED with PubAcks and waits for them. Returns
 * the stream's message count, or -1.
 */
static long
jsi_fill(jsCtx *js, long n)
{
    struct env_spec env = {"js", INGEST_TASK_BYTES, NULL};
    uint8_t buf[INGEST_TASK_BYTES + 512];
    jsPubOptions po;
    jsStreamInfo *si = NULL;
    long stored = -1;

    for (long i = 0; i < n; i++) {
        size_t len = build_envelope(buf, &env, (uint64_t)i);
        if (js_PublishAsync(js, SUBJ_FAILED, buf, (int)len, NULL) != NATS_OK) {
            note("jsingest: publish failed at %ld", i);
            return -1;
        }
    }
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    js_PublishAsyncComplete(js, &po);
    if (js_GetStreamInfo(&si, js, JSI_STREAM, NULL, NULL) == NATS_OK)
        stored = (long)si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return stored;
}

/* drain_start() starts the sampler on a stream holding n messages. Returns 0 or -1. */
static int
drain_start(struct drain *d, jsCtx *js, long n)
{
    memset(d, 0, sizeof(*d));
    d->js = js;
    d->n = n;
    d->left = n;
    return pthread_create(&d->th, NULL, drain_main, d) == 0 ? 0 : -1;
}

/*
 * jsi_bare() drains the stream with a bare nats.c pull consumer configured
 * as the sidecar's (explicit acks, max_ack_pending, unlimited deliveries):
 * natsSubscription_Fetch of O.js_batch, natsMsg_Ack of each message,
 * on this thread, then waits for d (started by the caller) to see the
 * stream empty (*drained). Returns the messages acked, or -1 when it could not start.
 */
static long
jsi_bare(natsConnection *nc, jsCtx *js, long n, struct drain *d, bool *drained)
{
    jsConsumerConfig cc;
    jsConsumerInfo *ci = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    natsSubscription *sub = NULL;
    long acked = 0, idle = 0;

    jsConsumerConfig_Init(&cc);
    cc.Durable = JSI_BARE_DURABLE;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = 30000LL * 1000000LL;
    cc.MaxDeliver = -1;
    cc.MaxAckPending = JSI_MAX_ACK_PENDING;
    cc.FilterSubject = JSI_SUBJECTS;
    if (js_AddConsumer(&ci, js, JSI_STREAM, &cc, NULL, &jerr) != NATS_OK) {
        note("jsingest: bare consumer: %d", (int)jerr);
        return -1;
    }
    jsConsumerInfo_Destroy(ci);
    jsSubOptions_Init(&so);
    so.Stream = JSI_STREAM;
    so.Consumer = JSI_BARE_DURABLE;
    if (js_PullSubscribe(&sub, js, JSI_SUBJECTS, JSI_BARE_DURABLE, NULL, &so, &jerr) != NATS_OK) {
        note("jsingest: bare pull subscribe: %d", (int)jerr);
        js_DeleteConsumer(js, JSI_STREAM, JSI_BARE_DURABLE, NULL, NULL);
        return -1;
    }
    while (acked < n && idle < 10) {
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, sub, (int)O.js_batch, 1000, &jerr);
        if (s != NATS_OK) {
            idle++;
            natsMsgList_Destroy(&list);
            continue;
        }
        idle = 0;
        for (int i = 0; i < list.Count; i++)
            if (natsMsg_Ack(list.Msgs[i], NULL) == NATS_OK)
                acked++;
        natsMsgList_Destroy(&list);
    }
    /* the acks still in nats.c's buffer must reach the server before the consumer goes: a
       work-queue stream keeps what a deleted consumer had not acked */
    natsConnection_FlushTimeout(nc, 10000);
    *drained = drain_wait(d, 10000);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    js_DeleteConsumer(js, JSI_STREAM, JSI_BARE_DURABLE, NULL, NULL);
    return acked;
}

/* jsi_sidecar() drains the stream with the sidecar (ingest.mode jetstream). Returns tasks enqueued or -1. */
static long long
jsi_sidecar(natsConnection *pub, jsCtx *js, long n, struct drain *d, json_t *res)
{
    static char batch[64];
    const char *const extra[] = {"--ingest.mode=jetstream", "--ingest.stream_storage=memory", batch,
                                 "--backoff.exp_base_ms=" LONG_DELAY_MS,
                                 "--backoff.linear_step_ms=" LONG_DELAY_MS, NULL};
    struct sidecar sc;
    json_t *st;
    long long enq = -1;
    bool ok;

    snprintf(batch, sizeof(batch), "--ingest.fetch_batch=%ld", O.js_batch);
    if (drain_start(d, js, n))
        return -1;
    if (sidecar_start(&sc, pub, "jsingest", extra)) {
        STORE(d->stop, 1);
        pthread_join(d->th, NULL);
        return -1;
    }
    ok = drain_wait(d, 20000);
    st = stats(pub);
    enq = st ? jpath_int(st, "lifetime_stats.enqueued") : -1;
    jint(res, "sidecar_invalid", st ? jpath_int(st, "lifetime_stats.invalid") : -1);
    jint(res, "sidecar_refused_full", st ? jpath_int(st, "lifetime_stats.refused_full") : -1);
    json_decref(st);
    if (sidecar_stop(&sc) || !ok)
        failures++;
    js_DeleteConsumer(js, JSI_STREAM, "dlq-sidecar", NULL, NULL);
    return enq;
}

/*
 * scenario_jsingest() measures tasks/s of the sidecar draining a pre-filled
 * DLQ_FAILED stream (memory storage) against a bare nats.c pull consumer
 * draining the same contents, both timed by the stream's count.
 */
static void
scenario_jsingest(natsConnection *pub)
{
    json_t *res = jobj("jsingest");
    natsConnection *nc = connect_plain("bench-js-ingest");
    jsCtx *js = NULL;
    jsOptions jo;
    struct drain d;
    double bare_rate = 0, sc_rate = 0;
    long stored, acked;
    long long enq = -1, lost;
    bool drained = false;
    char a[32], b[32], r[32], buf[128];

    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    jo.PublishAsync.StallWait = 30000; /* a busy server: wait for PubAcks, do not fail the fill */
    if (!nc || natsConnection_JetStream(&js, nc, &jo) != NATS_OK || jsi_reset(js)) {
        note("jsingest: JetStream unavailable (is nats-server running with -js?)");
        failures++;
        goto done;
    }
    jint(res, "tasks", O.n);
    jint(res, "fetch_batch", O.js_batch);
    jint(res, "max_ack_pending", JSI_MAX_ACK_PENDING);
    note("jsingest: %ld envelopes in %s (memory, work queue); bare pull consumer first", O.n,
         JSI_STREAM);

    /* 1. the bare pull consumer */
    stored = jsi_fill(js, O.n);
    if (stored != O.n || drain_start(&d, js, O.n)) {
        note("jsingest: stream holds %ld of %ld", stored, O.n);
        failures++;
        goto done;
    }
    acked = jsi_bare(nc, js, O.n, &d, &drained);
    if (acked < 0) {
        STORE(d.stop, 1);
        pthread_join(d.th, NULL);
    }
    if (!drained || acked != O.n)
        failures++;
    bare_rate = drain_rate(&d);
    jnum(res, "bare_tasks_per_s", bare_rate);
    jint(res, "bare_acked", acked);
    note("jsingest: bare pull consumer %s/s (%ld acked)", fmt_count(a, bare_rate), acked);

    /* 2. the sidecar, the same contents */
    stored = jsi_fill(js, O.n);
    if (stored != O.n) {
        note("jsingest: stream holds %ld of %ld", stored, O.n);
        failures++;
        goto done;
    }
    enq = jsi_sidecar(pub, js, O.n, &d, res);
    sc_rate = drain_rate(&d);
    lost = enq >= 0 ? O.n - enq : O.n;
    jnum(res, "sidecar_tasks_per_s", sc_rate);
    jint(res, "sidecar_enqueued", enq);
    jint(res, "lost", lost);
    jnum(res, "ratio", bare_rate > 0 ? sc_rate / bare_rate : 0);
    note("jsingest: sidecar %s/s; enqueued %lld of %ld", fmt_count(a, sc_rate), enq, O.n);
    if (enq != O.n)
        losses++;
    snprintf(buf, sizeof(buf), "bare nats.c pull consumer (Fetch %ld, ack each) %s/s", O.js_batch,
             fmt_count(b, bare_rate));
    snprintf(r, sizeof(r), "%.2fx", bare_rate > 0 ? sc_rate / bare_rate : 0);
    fmt_count(a, sc_rate);
    strcat(a, "/s");
    add_row("jsingest", "tasks/s draining DLQ_FAILED", a, buf, r, ">= 0.8x",
            bare_rate > 0 && sc_rate / bare_rate >= 0.8 ? "yes" : "NO");
    snprintf(buf, sizeof(buf), "%lld", lost);
    add_row("jsingest", "lost (stats: enqueued vs stored)", buf, "", "", "0", lost == 0 ? "yes" : "NO");
done:
    if (js)
        js_DeleteStream(js, JSI_STREAM, NULL, NULL);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* ---- scenario: kvstore (store.backend: jetstream) --------------------------------------------- */

#define KV_BUCKET "DLQ_TASKS"        /* store.jetstream.bucket's default */
#define KV_STREAM "KV_" KV_BUCKET
#define KV_PARTITIONS 32             /* the partitions of a task's key (persist/kv.c) */
#define KV_POLL_NS 10000000LL        /* stats samples, 10 ms apart */
#define KV_RECORD_MAX 65536          /* largest record the bare client copies */

/* kv_fnv1a64() is FNV-1a 64 of len bytes: the partition of a task's key is it mod 32 (DESIGN 18). */
static uint64_t
kv_fnv1a64(const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* kv_subject() writes "$KV.DLQ_TASKS.<p>.<id>" of task index i (id "kv-<i>", as the sidecar keys it). */
static void
kv_subject(char *out, size_t cap, uint64_t i)
{
    char id[64];
    size_t n = make_id(id, "kv", i);

    snprintf(out, cap, "$KV." KV_BUCKET ".%u.%s", (unsigned)(kv_fnv1a64(id, n) % KV_PARTITIONS),
             id);
}

/* kv_reset() deletes the bucket; with create, makes it as the sidecar would (history 1, R1, file). */
static int
kv_reset(jsCtx *js, bool create)
{
    kvConfig kc;
    kvStore *kv = NULL;
    natsStatus s;

    js_DeleteKeyValue(js, KV_BUCKET);
    if (!create)
        return 0;
    kvConfig_Init(&kc);
    kc.Bucket = KV_BUCKET;
    kc.History = 1;
    kc.Replicas = 1;
    kc.StorageType = js_FileStorage;
    s = js_CreateKeyValue(&kv, js, &kc);
    kvStore_Destroy(kv);
    if (s != NATS_OK)
        note("kvstore: js_CreateKeyValue: %s", natsStatus_GetText(s));
    return s == NATS_OK ? 0 : -1;
}

/* kv_msgs() returns the messages and bytes of the bucket's stream, or -1. */
static long
kv_msgs(jsCtx *js, long long *bytes)
{
    jsStreamInfo *si = NULL;
    long n = -1;

    *bytes = -1;
    if (js_GetStreamInfo(&si, js, KV_STREAM, NULL, NULL) == NATS_OK) {
        n = (long)si->State.Msgs;
        *bytes = (long long)si->State.Bytes;
    }
    jsStreamInfo_Destroy(si);
    return n;
}

/* The sidecar seen through dlq.admin.stats, sampled by a thread of its own. */
struct kvpoll {
    natsConnection *nc;
    long n;
    bool durable;                /* wait for persistence.written too */
    int stop, done;              /* atomics */
    pthread_t th;
    int64_t t_enq, t_written;    /* mono ns of the first sample with enqueued >= n / written >= n, queue 0 */
    long long enq, written, queued; /* atomics: the latest sample */
    int64_t t_moved;             /* atomic: the last sample that changed a count */
};

/* kv_poll_main() samples stats every KV_POLL_NS until both times are set or it is told to stop. */
static void *
kv_poll_main(void *arg)
{
    struct kvpoll *p = arg;

    while (!LOAD(p->stop)) {
        json_t *st = request_json(p->nc, "dlq.admin.stats", "", 2000, NULL);
        int64_t now = mono_ns();
        if (st) {
            long long e = jpath_int(st, "lifetime_stats.enqueued");
            long long w = jpath_int(st, "persistence.written");
            long long q = jpath_int(st, "persistence.queued_writes");
            json_decref(st);
            if (e != LOAD(p->enq) || w != LOAD(p->written) || q != LOAD(p->queued))
                STORE(p->t_moved, now);
            STORE(p->enq, e);
            STORE(p->written, w);
            STORE(p->queued, q);
            if (!p->t_enq && e >= p->n)
                p->t_enq = now;
            if (p->durable && !p->t_written && w >= p->n && q == 0)
                p->t_written = now;
            if (p->t_enq && (!p->durable || p->t_written))
                break;
        }
        sleep_ns(KV_POLL_NS);
    }
    STORE(p->done, 1);
    return NULL;
}

/* The figures of one sidecar run. */
struct kvrun {
    double ingest_rate, write_rate; /* per second from the first publish; 0 when not reached */
    long long enq, written, queued, rejected, retried, batches, failed_batches;
    size_t rec_len;                 /* kv: one record's length; 0 when none could be read */
    double cpu_sidecar, cpu_server; /* CPU s (/proc/PID/stat) from the first publish until done */
};

/*
 * kv_sidecar() runs a sidecar (kv: store.backend jetstream on a fresh bucket)
 * and publishes O.kv_n ingest envelopes at full speed in core mode, until
 * stats say every task was enqueued (and written, queue empty). With kv,
 * one record (index kv_n / 2) is copied into rec (KV_RECORD_MAX bytes).
 * Returns 0 or -1 (a failure was counted).
 */
static int
kv_sidecar(natsConnection *pub, jsCtx *js, bool kv, char *rec, struct kvrun *out)
{
    static char batch[64];
    struct env_spec env = {"kv", INGEST_TASK_BYTES, NULL};
    struct pubspec ps = {&env, SUBJ_FAILED, 0, O.kv_n, 0, 0, 0, NULL};
    const char *extra[8] = {"--backoff.exp_base_ms=" LONG_DELAY_MS,
                            "--backoff.linear_step_ms=" LONG_DELAY_MS, NULL};
    struct kvpoll p;
    struct sidecar sc;
    int64_t t0;
    json_t *st;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    memset(&p, 0, sizeof(p));
    if (kv) {
        extra[2] = "--store.backend=jetstream";
        if (O.kv_batch > 0) {
            snprintf(batch, sizeof(batch), "--store.jetstream.batch_max=%ld", O.kv_batch);
            extra[3] = batch;
        }
        kv_reset(js, false); /* the sidecar makes its bucket */
    }
    if (sidecar_start(&sc, pub, kv ? "kvstore-kv" : "kvstore-memory", extra))
        goto fail;
    p.n = O.kv_n;
    p.durable = kv;
    p.enq = p.written = p.queued = -1;
    if (!(p.nc = connect_plain("bench-kv-stats")) || pthread_create(&p.th, NULL, kv_poll_main, &p)) {
        natsConnection_Destroy(p.nc);
        sidecar_stop(&sc);
        goto fail;
    }
    out->cpu_sidecar = -cpu_s(sc.pid);
    out->cpu_server = -cpu_s(O.nats_pid);
    t0 = mono_ns();
    STORE(p.t_moved, t0);
    publish_envelopes(pub, &ps, NULL);
    /* the poller ends by itself once done; give up after 20 s without a change */
    while (!LOAD(p.done) && mono_ns() - LOAD(p.t_moved) < 20000000000LL)
        sleep_ms(20);
    STORE(p.stop, 1);
    pthread_join(p.th, NULL);
    out->cpu_sidecar += cpu_s(sc.pid);
    out->cpu_server += cpu_s(O.nats_pid);
    if (!p.t_enq || (kv && !p.t_written))
        note("kvstore: sidecar stalled: enqueued %lld, written %lld, queued %lld", p.enq, p.written,
             p.queued);
    natsConnection_Destroy(p.nc);
    out->ingest_rate = p.t_enq ? (double)O.kv_n / ((double)(p.t_enq - t0) / 1e9) : 0;
    out->write_rate = p.t_written ? (double)O.kv_n / ((double)(p.t_written - t0) / 1e9) : 0;
    st = stats(pub);
    out->enq = st ? jpath_int(st, "lifetime_stats.enqueued") : -1;
    out->written = st ? jpath_int(st, "persistence.written") : -1;
    out->queued = st ? jpath_int(st, "persistence.queued_writes") : -1;
    out->rejected = st ? jpath_int(st, "persistence.rejected") : -1;
    out->retried = st ? jpath_int(st, "persistence.retried") : -1;
    out->batches = st ? jpath_int(st, "persistence.batches") : -1;
    out->failed_batches = st ? jpath_int(st, "persistence.failed_batches") : -1;
    json_decref(st);
    if (kv) {
        kvStore *kvs = NULL;
        kvEntry *e = NULL;
        char subj[128];
        kv_subject(subj, sizeof(subj), (uint64_t)(O.kv_n / 2));
        if (js_KeyValue(&kvs, js, KV_BUCKET) == NATS_OK &&
            kvStore_Get(&e, kvs, subj + strlen("$KV." KV_BUCKET ".")) == NATS_OK &&
            kvEntry_ValueLen(e) > 0 && kvEntry_ValueLen(e) <= KV_RECORD_MAX) {
            out->rec_len = (size_t)kvEntry_ValueLen(e);
            memcpy(rec, kvEntry_Value(e), out->rec_len);
        }
        kvEntry_Destroy(e);
        kvStore_Destroy(kvs);
    }
    rc = sidecar_stop(&sc);
    if (out->enq != O.kv_n || (kv && (out->written < O.kv_n || out->queued != 0)))
        losses++;
    if (out->ingest_rate > 0 && (!kv || out->write_rate > 0) && rc == 0)
        return 0;
fail:
    failures++;
    return -1;
}

/* Counts PubAcks of the raw bare client on <inbox>.<i>. */
struct kvacks {
    long count, errors; /* atomics */
    int64_t last_ns;    /* atomic */
};

/* on_kv_puback() counts one PubAck (an answer with "error" counts as an error). */
static void
on_kv_puback(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    struct kvacks *a = closure;
    const char *d = natsMsg_GetData(m);

    (void)nc;
    (void)sub;
    if (!d || natsMsg_GetDataLength(m) == 0 || strstr(d, "\"error\""))
        INC(a->errors);
    STORE(a->last_ns, mono_ns());
    INC(a->count);
    natsMsg_Destroy(m);
}

/*
 * kv_bare_raw() publishes O.kv_n copies of rec (len bytes) to the sidecar's
 * keys with natsConnection_PublishRequest, at most O.kv_pending without their
 * PubAck (the sidecar's own technique, without its batching), and waits for
 * every PubAck. Returns writes/s (0 on failure); *errors gets refused writes.
 */
static double
kv_bare_raw(natsConnection *nc, const char *rec, size_t len, long *errors)
{
    struct kvacks a;
    natsSubscription *sub = NULL;
    natsInbox *inbox = NULL;
    char prefix[128], subj[160], reply[160];
    int64_t t0, stall;
    double rate = 0;

    memset(&a, 0, sizeof(a));
    if (natsInbox_Create(&inbox) != NATS_OK)
        return 0;
    snprintf(prefix, sizeof(prefix), "%s", (const char *)inbox);
    natsInbox_Destroy(inbox);
    snprintf(subj, sizeof(subj), "%s.*", prefix);
    if (natsConnection_Subscribe(&sub, nc, subj, on_kv_puback, &a) != NATS_OK)
        return 0;
    unlimited(sub);
    natsConnection_FlushTimeout(nc, 5000);
    t0 = mono_ns();
    for (long i = 0; i < O.kv_n; i++) {
        stall = mono_ns();
        while (i - LOAD(a.count) >= O.kv_pending) {
            if (mono_ns() - stall > 30000000000LL)
                goto done;
            sleep_ns(20000);
        }
        kv_subject(subj, sizeof(subj), (uint64_t)i);
        snprintf(reply, sizeof(reply), "%s.%ld", prefix, i);
        if (natsConnection_PublishRequest(nc, subj, reply, rec, (int)len) != NATS_OK)
            goto done;
    }
    if (wait_count(&a.count, O.kv_n, 20000, 0))
        rate = (double)O.kv_n / ((double)(LOAD(a.last_ns) - t0) / 1e9);
done:
    *errors = LOAD(a.errors) + (O.kv_n - LOAD(a.count));
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return rate;
}

/* Counts the failed PubAcks of js_PublishAsync. */
static void
on_kv_pub_err(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)pae;
    INC(*(long *)closure);
}

/*
 * kv_bare_async() publishes O.kv_n copies of rec (len bytes) to the
 * sidecar's keys with nats.c's js_PublishAsync (PublishAsync.MaxPending
 * O.kv_pending) and js_PublishAsyncComplete. Returns writes/s (0 on
 * failure); *errors gets refused writes.
 */
static double
kv_bare_async(natsConnection *nc, const char *rec, size_t len, long *errors)
{
    jsCtx *js = NULL;
    jsOptions jo;
    jsPubOptions po;
    char subj[160];
    long errs = 0;
    int64_t t0;
    double rate = 0;
    natsStatus s = NATS_OK;

    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = O.kv_pending;
    jo.PublishAsync.StallWait = 30000;
    jo.PublishAsync.ErrHandler = on_kv_pub_err;
    jo.PublishAsync.ErrHandlerClosure = &errs;
    if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK)
        return 0;
    t0 = mono_ns();
    for (long i = 0; i < O.kv_n && s == NATS_OK; i++) {
        kv_subject(subj, sizeof(subj), (uint64_t)i);
        s = js_PublishAsync(js, subj, rec, (int)len, NULL);
    }
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    if (s == NATS_OK && js_PublishAsyncComplete(js, &po) == NATS_OK)
        rate = (double)O.kv_n / ((double)(mono_ns() - t0) / 1e9);
    *errors = LOAD(errs) + (s != NATS_OK);
    jsCtx_Destroy(js);
    return rate;
}

/* kv_bare() runs one bare client on a fresh bucket and checks the bucket holds every key. */
static double
kv_bare(natsConnection *nc, jsCtx *js, bool raw, const char *rec, size_t len, json_t *res,
        double *cpu_us)
{
    const char *name = raw ? "bare_raw" : "bare_js_async";
    long errors = 0, msgs;
    long long bytes;
    double rate;
    char key[64], a[32];

    if (kv_reset(js, true)) {
        failures++;
        return 0;
    }
    *cpu_us = cpu_s(getpid()) + cpu_s(O.nats_pid);
    rate = raw ? kv_bare_raw(nc, rec, len, &errors) : kv_bare_async(nc, rec, len, &errors);
    *cpu_us = (cpu_s(getpid()) + cpu_s(O.nats_pid) - *cpu_us) * 1e6 / (double)O.kv_n;
    msgs = kv_msgs(js, &bytes);
    snprintf(key, sizeof(key), "%s_cpu_us_per_write", name);
    jnum(res, key, *cpu_us);
    snprintf(key, sizeof(key), "%s_writes_per_s", name);
    jnum(res, key, rate);
    snprintf(key, sizeof(key), "%s_errors", name);
    jint(res, key, errors);
    snprintf(key, sizeof(key), "%s_stored", name);
    jint(res, key, msgs);
    note("kvstore: %s %s writes/s (%ld errors, %ld stored)", name, fmt_count(a, rate), errors, msgs);
    if (rate <= 0 || errors || msgs != O.kv_n)
        failures++;
    return rate;
}

/*
 * scenario_kvstore() measures the JetStream KV store's writes/s (a sidecar
 * ingesting at full speed in core mode with store.backend jetstream, until
 * every task is written) against a bare nats.c client writing records of the
 * same size to the same keys of the same kind of bucket, and the sidecar's
 * ingest rate with the memory store and with the KV store.
 */
static void
scenario_kvstore(natsConnection *pub)
{
    json_t *res = jobj("kvstore");
    natsConnection *nc = connect_plain("bench-kv-bare");
    jsCtx *js = NULL;
    struct kvrun mem, kv;
    char *rec = calloc(1, KV_RECORD_MAX);
    double raw_rate = 0, async_rate = 0, base, raw_cpu = 0, async_cpu = 0, base_cpu, kv_cpu;
    long long bytes, lost;
    long msgs;
    char a[32], b[32], r[32], buf[128];

    if (!rec || !nc || natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
        note("kvstore: JetStream unavailable (is nats-server running with -js?)");
        failures++;
        goto done;
    }
    jint(res, "tasks", O.kv_n);
    jint(res, "bare_max_pending", O.kv_pending);
    jint(res, "sidecar_batch_max", O.kv_batch > 0 ? O.kv_batch : 1000);
    note("kvstore: %ld failures; sidecar with the memory store, then with store.backend=jetstream, "
         "then the bare clients", O.kv_n);

    /* 1. the sidecar's ingest with the memory store, 2. with the KV store */
    kv_sidecar(pub, js, false, rec, &mem);
    note("kvstore: memory store: ingest %s/s, enqueued %lld", fmt_count(a, mem.ingest_rate), mem.enq);
    kv_sidecar(pub, js, true, rec, &kv);
    msgs = kv_msgs(js, &bytes);
    note("kvstore: KV store: ingest %s/s, writes %s/s; written %lld, batches %lld, retried %lld, "
         "record %zu bytes, stream %ld msgs, %lld bytes", fmt_count(a, kv.ingest_rate),
         fmt_count(b, kv.write_rate), kv.written, kv.batches, kv.retried, kv.rec_len, msgs, bytes);
    jnum(res, "memory_ingest_per_s", mem.ingest_rate);
    jint(res, "memory_enqueued", mem.enq);
    jnum(res, "kv_ingest_per_s", kv.ingest_rate);
    jnum(res, "kv_writes_per_s", kv.write_rate);
    jint(res, "kv_enqueued", kv.enq);
    jint(res, "kv_written", kv.written);
    jint(res, "kv_queued_writes", kv.queued);
    jint(res, "kv_rejected", kv.rejected);
    jint(res, "kv_retried", kv.retried);
    jint(res, "kv_batches", kv.batches);
    jint(res, "kv_failed_batches", kv.failed_batches);
    jint(res, "kv_stream_msgs", msgs);
    jint(res, "kv_stream_bytes", bytes);
    jint(res, "record_bytes", (long long)kv.rec_len);
    if (kv.rec_len == 0) { /* no record to copy: a MessagePack-like blob of the usual size */
        kv.rec_len = 1024;
        memset(rec, 'r', kv.rec_len);
        note("kvstore: no record could be read; the bare clients write 1,024-byte values");
    }

    /* 3. the bare clients, the same record for every key */
    async_rate = kv_bare(nc, js, false, rec, kv.rec_len, res, &async_cpu);
    raw_rate = kv_bare(nc, js, true, rec, kv.rec_len, res, &raw_cpu);
    kv_reset(js, false);
    base = raw_rate > async_rate ? raw_rate : async_rate;
    jnum(res, "ratio", base > 0 ? kv.write_rate / base : 0);
    /*
     * CPU per write, which the machine's load does not stretch as it does
     * wall time: the sidecar (its ingest too) and nats-server against the
     * faster bare client's process and nats-server. The bench's own
     * publishing of the failures is not counted for the sidecar.
     */
    base_cpu = raw_rate > async_rate ? raw_cpu : async_cpu;
    kv_cpu = (kv.cpu_sidecar + kv.cpu_server) * 1e6 / (double)O.kv_n;
    jnum(res, "kv_sidecar_cpu_us_per_write", kv.cpu_sidecar * 1e6 / (double)O.kv_n);
    jnum(res, "kv_server_cpu_us_per_write", kv.cpu_server * 1e6 / (double)O.kv_n);
    jnum(res, "kv_cpu_us_per_write", kv_cpu);
    jnum(res, "bare_cpu_us_per_write", base_cpu);
    jnum(res, "cpu_ratio", kv_cpu > 0 ? base_cpu / kv_cpu : 0);
    note("kvstore: CPU per write: sidecar %.1f + nats-server %.1f us; bare client + nats-server "
         "%.1f us (ratio %.2fx)", kv.cpu_sidecar * 1e6 / (double)O.kv_n,
         kv.cpu_server * 1e6 / (double)O.kv_n, base_cpu, kv_cpu > 0 ? base_cpu / kv_cpu : 0);

    snprintf(buf, sizeof(buf), "bare nats.c %s, %zu-byte values, %s/s",
             raw_rate > async_rate ? "PublishRequest + PubAck count" : "js_PublishAsync", kv.rec_len,
             fmt_count(b, base));
    snprintf(r, sizeof(r), "%.2fx", base > 0 ? kv.write_rate / base : 0);
    snprintf(a, sizeof(a), "%s/s", fmt_count(b, kv.write_rate));
    add_row("kvstore", "KV writes/s (core ingest at full speed, until all written)", a, buf, r,
            ">= 0.8x", base > 0 && kv.write_rate / base >= 0.8 ? "yes" : "NO");
    snprintf(a, sizeof(a), "%s/s", fmt_count(b, kv.ingest_rate));
    snprintf(buf, sizeof(buf), "memory store %s/s", fmt_count(b, mem.ingest_rate));
    snprintf(r, sizeof(r), "%.2fx", mem.ingest_rate > 0 ? kv.ingest_rate / mem.ingest_rate : 0);
    add_row("kvstore", "ingest tasks/s with the KV store", a, buf, r, "report", "");
    lost = kv.enq < kv.written ? kv.enq : kv.written;
    lost = lost >= 0 && lost < O.kv_n ? O.kv_n - lost : lost < 0 ? O.kv_n : 0;
    jint(res, "lost", lost);
    snprintf(a, sizeof(a), "%lld", lost);
    add_row("kvstore", "lost (stats: enqueued, written vs sent)", a, "", "", "0",
            lost == 0 ? "yes" : "NO");
done:
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    free(rec);
}

/* ---- scenario: cluster (3 nats-server nodes; R3 stream and buckets) --------------------------- */

#define CL_NODES 3
#define CL_MEMBERS 3                  /* sidecars at most */
#define CL_PARTITIONS 32              /* cluster.partitions' default */
#define CL_STREAM "DLQ_FAILED"        /* ingest.stream's default */
#define CL_POLL_NS 50000000LL         /* merged stats samples, 50 ms apart */
#define CL_TAKEOVER_LEASE_MS 2500     /* the lease of the takeover measurement (the tests' lease) */

/* One nats-server node of the bench's cluster. */
struct cl_node {
    pid_t pid;
    int port, route; /* client and route ports on 127.0.0.1 */
    char conf[600], log[600];
};

/* The cluster: its nodes and their client URLs as a comma list. */
struct ncluster {
    struct cl_node node[CL_NODES];
    char urls[256];
};

/* What the members' own health answers (dlq.cluster.admin.health) say about ownership. */
struct cl_view {
    int members;  /* members that answered */
    int covered;  /* partitions some answering member serves */
    int dup;      /* partitions more than one member serves */
    int min, max; /* partitions served per answering member */
};

/* One sidecar configuration's figures (1 or 3 members). */
struct cl_run {
    int members;
    double balance_ms;             /* from the spawn to every partition served, balanced */
    double ingest_rate;            /* per second, first publish to merged queue_size >= n */
    double stored_rate;            /* per second, first publish to DLQ_FAILED empty (all acked) */
    double dispatch_rate;          /* per second, resume to the n-th retry at the worker */
    long long enq, written, succ;  /* merged lifetime_stats.enqueued, persistence.written, retry_success */
    long long lease_failures, lost_partitions; /* summed over the members' cluster sections */
    long long fenced, redelivered; /* merged persistence.fenced, lifetime_stats.redelivered */
    long long queue_size;          /* merged queue_size at the end (after dispatch) */
    long received;                 /* retries at the worker (more than n: some sent twice) */
    long stream_left;              /* DLQ_FAILED's messages after ingest (acked ones leave it) */
};

/*
 * low_port() picks a port in 20000-31999 that can be bound on 127.0.0.1 now:
 * below Linux's ephemeral range, so that the nodes' own outgoing route
 * connections cannot take it before its node listens. Returns it or -1.
 */
static int
low_port(void)
{
    static unsigned seed;

    if (!seed)
        seed = ((unsigned)getpid() * 2654435761u) ^ (unsigned)mono_ns();
    for (int k = 0; k < 200; k++) {
        struct sockaddr_in a;
        int port, fd = socket(AF_INET, SOCK_STREAM, 0), ok;
        seed = seed * 1103515245u + 12345u;
        port = 20000 + (int)((seed >> 8) % 12000);
        if (fd < 0)
            return -1;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok)
            return port;
    }
    return -1;
}

/* tcp_up() is true when something accepts TCP connections on 127.0.0.1:port. */
static bool
tcp_up(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool up;

    if (fd < 0)
        return false;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    up = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return up;
}

/* ncl_stop() stops every node that runs: SIGTERM, then SIGKILL after 10 s. */
static void
ncl_stop(struct ncluster *c)
{
    for (int i = 0; i < CL_NODES; i++)
        if (c->node[i].pid > 0)
            kill(c->node[i].pid, SIGTERM);
    for (int i = 0; i < CL_NODES; i++) {
        int64_t deadline = mono_ns() + 10000000000LL;
        if (c->node[i].pid <= 0)
            continue;
        while (waitpid(c->node[i].pid, NULL, WNOHANG) == 0) {
            if (mono_ns() > deadline) {
                kill(c->node[i].pid, SIGKILL);
                waitpid(c->node[i].pid, NULL, 0);
                break;
            }
            sleep_ms(20);
        }
        c->node[i].pid = 0;
    }
}

/* ncl_conf() writes node i's configuration (ports, name, JetStream store, routes to every node) under dir. */
static int
ncl_conf(struct ncluster *c, int i, const char *dir)
{
    FILE *f;

    snprintf(c->node[i].conf, sizeof(c->node[i].conf), "%s/n%d.conf", dir, i);
    snprintf(c->node[i].log, sizeof(c->node[i].log), "%s/n%d.log", dir, i);
    if (!(f = fopen(c->node[i].conf, "w")))
        return -1;
    fprintf(f, "server_name: n%d\nlisten: 127.0.0.1:%d\n", i, c->node[i].port);
    fprintf(f, "jetstream { store_dir: \"%s/n%d-js\" }\n", dir, i);
    fprintf(f, "cluster {\n  name: dlq-bench\n  listen: 127.0.0.1:%d\n  routes: [\n", c->node[i].route);
    for (int k = 0; k < CL_NODES; k++)
        fprintf(f, "    nats-route://127.0.0.1:%d\n", c->node[k].route);
    fprintf(f, "  ]\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* ncl_js_ready() waits up to ms for the cluster's JetStream to answer (a meta leader). Returns 0 or -1. */
static int
ncl_js_ready(const char *urls, long ms)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    int64_t deadline = mono_ns() + ms * 1000000LL;
    int rc = -1;

    /* a node that listens may still refuse clients for a moment while its JetStream starts */
    while (!(nc = connect_url(urls, "bench-cluster-probe")) && mono_ns() < deadline)
        sleep_ms(200);
    if (!nc || natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
        goto done;
    while (rc && mono_ns() < deadline) {
        jsAccountInfo *ai = NULL;
        if (js_GetAccountInfo(&ai, js, NULL, NULL) == NATS_OK)
            rc = 0;
        jsAccountInfo_Destroy(ai);
        if (rc)
            sleep_ms(100);
    }
done:
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}

/* ncl_start_once() is one try of ncl_start(): fresh ports, configs and nodes. Returns 0 or -1 (all stopped). */
static int
ncl_start_once(struct ncluster *c, const char *dir)
{
    size_t o = 0;
    int used[2 * CL_NODES], nused = 0;

    memset(c, 0, sizeof(*c));
    for (int i = 0; i < CL_NODES; i++) {
        for (int which = 0; which < 2; which++) {
            int p, dup;
            do {
                p = low_port();
                dup = 0;
                for (int k = 0; k < nused; k++)
                    dup |= used[k] == p;
            } while (p > 0 && dup);
            if (p <= 0)
                return -1;
            used[nused++] = p;
            *(which ? &c->node[i].route : &c->node[i].port) = p;
        }
    }
    for (int i = 0; i < CL_NODES; i++) {
        char *argv[4] = {(char *)O.nats_server, (char *)"-c", c->node[i].conf, NULL};
        if (ncl_conf(c, i, dir) || (c->node[i].pid = spawn_logged(argv, c->node[i].log)) < 0) {
            c->node[i].pid = 0;
            ncl_stop(c);
            return -1;
        }
        o += (size_t)snprintf(c->urls + o, sizeof(c->urls) - o, "%snats://127.0.0.1:%d", i ? "," : "",
                              c->node[i].port);
    }
    for (int i = 0; i < CL_NODES; i++) {
        int64_t deadline = mono_ns() + 10000000000LL;
        while (!tcp_up(c->node[i].port)) {
            if (mono_ns() > deadline || waitpid(c->node[i].pid, NULL, WNOHANG) == c->node[i].pid) {
                note("cluster: node n%d did not listen on %d", i, c->node[i].port);
                print_tail(c->node[i].log);
                ncl_stop(c);
                return -1;
            }
            sleep_ms(50);
        }
    }
    if (ncl_js_ready(c->urls, 30000) == 0)
        return 0;
    note("cluster: JetStream has no meta leader after 30 s");
    print_tail(c->node[0].log);
    ncl_stop(c);
    return -1;
}

/*
 * ncl_start() starts 3 nats-server nodes (O.nats_server) with JetStream, routed
 * to each other on 127.0.0.1, their files under O.workdir/cluster, and waits
 * for JetStream. A port taken between its pick and the bind fails one of
 * 3 tries. Returns 0 or -1.
 */
static int
ncl_start(struct ncluster *c)
{
    char dir[512];

    snprintf(dir, sizeof(dir), "%s/cluster", O.workdir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -1;
    for (int attempt = 1; attempt <= 3; attempt++) {
        if (ncl_start_once(c, dir) == 0)
            return 0;
        note("cluster: the nats-server cluster did not start (try %d of 3)", attempt);
    }
    return -1;
}

/*
 * cl_view_get() asks every member on dlq.cluster.admin.health (each answers
 * for itself) and fills *v from the partitions each serves; it waits until
 * expect members answered or wait_ms passed.
 */
static void
cl_view_get(natsConnection *nc, int expect, long wait_ms, struct cl_view *v)
{
    natsSubscription *sub = NULL;
    natsInbox *inbox = NULL;
    int count[CL_PARTITIONS] = {0};
    int64_t deadline = mono_ns() + wait_ms * 1000000LL;

    memset(v, 0, sizeof(*v));
    v->min = INT_MAX;
    if (natsInbox_Create(&inbox) != NATS_OK)
        return;
    if (natsConnection_SubscribeSync(&sub, nc, (const char *)inbox) != NATS_OK ||
        natsConnection_PublishRequest(nc, "dlq.cluster.admin.health", (const char *)inbox, "", 0) != NATS_OK)
        goto done;
    while (v->members < expect) {
        int64_t left = (deadline - mono_ns()) / 1000000LL;
        natsMsg *m = NULL;
        json_t *j, *p;
        size_t i;
        int served = 0;
        if (left <= 0 || natsSubscription_NextMsg(&m, sub, left) != NATS_OK)
            break;
        j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
        natsMsg_Destroy(m);
        if (!j)
            continue;
        json_array_foreach(json_object_get(j, "partitions"), i, p) {
            json_int_t k = json_integer_value(p);
            if (json_is_integer(p) && k >= 0 && k < CL_PARTITIONS) {
                count[k]++;
                served++;
            }
        }
        json_decref(j);
        v->members++;
        v->min = served < v->min ? served : v->min;
        v->max = served > v->max ? served : v->max;
    }
done:
    for (int k = 0; k < CL_PARTITIONS; k++) {
        v->covered += count[k] > 0;
        v->dup += count[k] > 1;
    }
    if (!v->members)
        v->min = 0;
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
}

/* cl_balanced() is true when k members answered, every partition is served once and shares differ by at most 1. */
static bool
cl_balanced(const struct cl_view *v, int k)
{
    return v->members == k && v->covered == CL_PARTITIONS && v->dup == 0 && v->max - v->min <= 1;
}

/* cl_wait_balanced() polls the members' health until cl_balanced(k). Returns the ms it took, or -1 after max_ms. */
static double
cl_wait_balanced(natsConnection *nc, int k, long max_ms)
{
    int64_t t0 = mono_ns();
    struct cl_view v;

    for (;;) {
        cl_view_get(nc, k, 1000, &v);
        if (cl_balanced(&v, k))
            return (double)(mono_ns() - t0) / 1e6;
        if (mono_ns() - t0 > max_ms * 1000000LL) {
            note("cluster: not balanced after %ld ms: %d members answered, %d of %d partitions "
                 "served, %d twice, %d-%d each", max_ms, v.members, v.covered, CL_PARTITIONS, v.dup,
                 v.min, v.max);
            return -1;
        }
        sleep_ms(50);
    }
}

/*
 * cl_spawn() starts sidecar member i (id <tag>, log sidecar-cluster-<tag>.log)
 * on the cluster: cluster mode, JetStream ingest and KV store, everything R3,
 * the given lease; paused: the retry processor off until dlq.admin.resume.
 * Returns 0 or -1.
 */
static int
cl_spawn(struct sidecar *sc, const struct ncluster *c, const char *tag, long lease_ms, bool paused)
{
    char id[96], lease[64], name[96];
    const char *extra[] = {"--cluster.enabled=true", "--cluster.replicas=3",
                           "--store.backend=jetstream", "--store.jetstream.replicas=3",
                           "--ingest.mode=jetstream", "--ingest.stream_replicas=3",
                           "--nats.reconnect_wait_ms=100", "--retry.timeout_ms=15000",
                           "--backoff.exp_base_ms=" LONG_DELAY_MS,
                           "--backoff.linear_step_ms=" LONG_DELAY_MS, id, lease,
                           paused ? "--retry_processor_enabled=false" : NULL, NULL};

    snprintf(id, sizeof(id), "--cluster.member_id=%s", tag);
    snprintf(lease, sizeof(lease), "--cluster.lease_ms=%ld", lease_ms);
    snprintf(name, sizeof(name), "cluster-%s", tag);
    return sidecar_spawn(sc, c->urls, name, extra);
}

/* cl_stop_all() sends SIGTERM to every running member at once, then waits for each. Returns how many failed. */
static int
cl_stop_all(struct sidecar *sc, int k)
{
    int bad = 0;

    for (int i = 0; i < k; i++)
        if (sc[i].pid > 0)
            sc[i].termed = kill(sc[i].pid, SIGTERM) == 0;
    for (int i = 0; i < k; i++)
        if (sc[i].pid > 0 && sidecar_stop(&sc[i]))
            bad++;
    return bad;
}

/* cl_reset() deletes the stream and both buckets the members share (each start makes them anew). */
static void
cl_reset(jsCtx *js)
{
    js_DeleteStream(js, CL_STREAM, NULL, NULL);
    js_DeleteKeyValue(js, KV_BUCKET);
    js_DeleteKeyValue(js, "DLQ_CLUSTER");
}

/* cl_stream_msgs() returns DLQ_FAILED's message count, or -1. */
static long
cl_stream_msgs(jsCtx *js)
{
    jsStreamInfo *si = NULL;
    long n = -1;

    if (js_GetStreamInfo(&si, js, CL_STREAM, NULL, NULL) == NATS_OK)
        n = (long)si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

/*
 * The members seen during ingest, sampled by a thread of its own on its own
 * connection: the merged dlq.admin.stats (queue_size counts distinct tasks;
 * lifetime enqueued counts a failure again when it is redelivered before its
 * owner stored it) and DLQ_FAILED's message count (a work-queue stream: a
 * failure leaves it once its owner stored it and acked it).
 */
struct clpoll {
    natsConnection *nc;
    jsCtx *js;
    long n;
    int pub_done;              /* atomic: every PubAck of the publisher came */
    int stop, done;            /* atomics */
    pthread_t th;
    int64_t t_queued;          /* mono ns of the first sample with queue_size >= n */
    int64_t t_acked;           /* the first sample after pub_done with the stream empty */
    long long queued, enq;     /* atomics: the latest queue_size and lifetime enqueued */
    long left;                 /* atomic: the latest stream count */
    int64_t t_moved;           /* atomic: the last sample that changed a count */
};

/* cl_poll_main() samples every CL_POLL_NS until both times are set or it is told to stop. */
static void *
cl_poll_main(void *arg)
{
    struct clpoll *p = arg;

    while (!LOAD(p->stop)) {
        json_t *st = request_json(p->nc, "dlq.admin.stats", "", 2000, NULL);
        long left = cl_stream_msgs(p->js);
        int64_t now = mono_ns();
        if (st) {
            long long q = jpath_int(st, "queue_size"), e = jpath_int(st, "lifetime_stats.enqueued");
            json_decref(st);
            if (q != LOAD(p->queued) || e != LOAD(p->enq) || left != LOAD(p->left))
                STORE(p->t_moved, now);
            STORE(p->queued, q);
            STORE(p->enq, e);
            STORE(p->left, left);
            if (!p->t_queued && q >= p->n)
                p->t_queued = now;
            if (!p->t_acked && LOAD(p->pub_done) && left == 0)
                p->t_acked = now;
            if (p->t_queued && p->t_acked)
                break;
        }
        sleep_ns(CL_POLL_NS);
    }
    STORE(p->done, 1);
    return NULL;
}

/*
 * cl_publish() publishes n envelopes ("cl-<i>", the ingest scenario's size,
 * retry_policy immediate) to SUBJ_FAILED with js_PublishAsync and waits for
 * every PubAck (the stream stored it). Returns 0, or -1 when a publish or a
 * PubAck failed.
 */
static int
cl_publish(jsCtx *js, long n)
{
    struct env_spec env = {"cl", INGEST_TASK_BYTES, "immediate"};
    uint8_t buf[INGEST_TASK_BYTES + 512];
    jsPubOptions po;

    for (long i = 0; i < n; i++) {
        size_t len = build_envelope(buf, &env, (uint64_t)i);
        if (js_PublishAsync(js, SUBJ_FAILED, buf, (int)len, NULL) != NATS_OK) {
            note("cluster: publish failed at %ld", i);
            return -1;
        }
    }
    jsPubOptions_Init(&po);
    po.MaxWait = 120000;
    return js_PublishAsyncComplete(js, &po) == NATS_OK ? 0 : -1;
}

/* cl_member_sum() sums key (e.g. "lease_failures") of every member's cluster section in a merged stats reply. */
static long long
cl_member_sum(const json_t *st, const char *key)
{
    const json_t *m;
    size_t i;
    long long sum = 0;

    json_array_foreach(json_object_get(st, "members"), i, m)
        sum += json_integer_value(json_object_get(json_object_get(m, "cluster"), key));
    return sum;
}

/*
 * cl_lost() is how many of the n failures a configuration did not count as
 * retried with success (every task is retried once, so this is every task
 * that never became one; a failure counted twice is not a loss).
 */
static long long
cl_lost(const struct cl_run *r)
{
    long long succ = r->succ < 0 ? 0 : r->succ;

    return succ >= O.cluster_n ? 0 : O.cluster_n - succ;
}

/*
 * cl_sidecars() runs k sidecar members (paused) on a fresh stream and fresh
 * buckets: waits until they serve every partition, balanced; publishes
 * O.cluster_n failures and times them until the merged stats count them
 * enqueued (and written); then resumes them with a worker that answers ok
 * and times the retries reaching it. nc is a connection to the cluster.
 * Returns 0, or -1 (a failure was counted; *out holds what was measured).
 */
static int
cl_sidecars(const struct ncluster *c, natsConnection *nc, jsCtx *js, int k, long lease_ms,
            struct cl_run *out)
{
    struct sidecar sc[CL_MEMBERS];
    struct clpoll p;
    struct worker w;
    natsConnection *wc = NULL;
    int64_t t0;
    json_t *st;
    int rc = -1;
    bool ok;

    memset(out, 0, sizeof(*out));
    memset(sc, 0, sizeof(sc));
    memset(&p, 0, sizeof(p));
    out->members = k;
    out->stream_left = -1;
    cl_reset(js);
    t0 = mono_ns();
    for (int i = 0; i < k; i++) {
        char tag[32];
        snprintf(tag, sizeof(tag), "m%d-%d", k, i);
        if (cl_spawn(&sc[i], c, tag, lease_ms, true))
            goto done;
    }
    if (cl_wait_balanced(nc, k, 90000) < 0)
        goto done;
    out->balance_ms = (double)(mono_ns() - t0) / 1e6;
    note("cluster: %d sidecar(s) serve the %d partitions after %.1f s; publishing %ld failures", k,
         CL_PARTITIONS, out->balance_ms / 1000, O.cluster_n);

    /* ingest: the first publish until every failure is a task (queue_size) and acked (stream empty) */
    p.n = O.cluster_n;
    p.queued = p.enq = -1;
    p.left = -1;
    if (!(p.nc = connect_url(c->urls, "bench-cluster-stats")) ||
        natsConnection_JetStream(&p.js, p.nc, NULL) != NATS_OK ||
        pthread_create(&p.th, NULL, cl_poll_main, &p)) {
        jsCtx_Destroy(p.js);
        natsConnection_Destroy(p.nc);
        goto done;
    }
    t0 = mono_ns();
    STORE(p.t_moved, t0);
    if (cl_publish(js, O.cluster_n))
        note("cluster: the publisher's PubAcks did not all come");
    STORE(p.pub_done, 1);
    while (!LOAD(p.done) && mono_ns() - LOAD(p.t_moved) < 30000000000LL)
        sleep_ms(20);
    STORE(p.stop, 1);
    pthread_join(p.th, NULL);
    jsCtx_Destroy(p.js);
    natsConnection_Destroy(p.nc);
    out->ingest_rate = p.t_queued ? (double)O.cluster_n / ((double)(p.t_queued - t0) / 1e9) : 0;
    out->stored_rate = p.t_acked ? (double)O.cluster_n / ((double)(p.t_acked - t0) / 1e9) : 0;
    out->stream_left = cl_stream_msgs(js);
    if (!p.t_queued || !p.t_acked) {
        note("cluster: %d sidecar(s) stalled: queue_size %lld, enqueued %lld, left in the stream %ld",
             k, p.queued, p.enq, p.left);
        goto done;
    }

    /* dispatch: resume every member; a worker answers ok */
    if (!(wc = connect_url(c->urls, "bench-cluster-worker")) || worker_open(&w, wc, SUBJ_RETRY, NULL, 0))
        goto done;
    t0 = mono_ns();
    json_decref(request_json(nc, "dlq.admin.resume", "", 10000, NULL));
    ok = wait_count(&w.count, O.cluster_n, 20000, 0);
    out->received = LOAD(w.count);
    out->dispatch_rate = ok && w.last_ns > t0 ? (double)O.cluster_n / ((double)(w.last_ns - t0) / 1e9) : 0;
    for (int i = 0; i < 100; i++) {
        st = stats(nc);
        out->succ = st ? jpath_int(st, "lifetime_stats.retry_success") : -1;
        json_decref(st);
        if (out->succ >= O.cluster_n)
            break;
        sleep_ms(100);
    }
    worker_close(&w);
    rc = ok ? 0 : -1;
done:
    st = stats(nc);
    out->enq = st ? jpath_int(st, "lifetime_stats.enqueued") : -1;
    out->written = st ? jpath_int(st, "persistence.written") : -1;
    out->fenced = st ? jpath_int(st, "persistence.fenced") : -1;
    out->redelivered = st ? jpath_int(st, "lifetime_stats.redelivered") : -1;
    out->queue_size = st ? jpath_int(st, "queue_size") : -1;
    out->lease_failures = st ? cl_member_sum(st, "lease_failures") : -1;
    out->lost_partitions = st ? cl_member_sum(st, "partitions_lost") : -1;
    json_decref(st);
    natsConnection_Destroy(wc);
    if (cl_stop_all(sc, k))
        rc = -1;
    note("cluster: %d sidecar(s): ingest %.0f/s (all acked %.0f/s), dispatch %.0f/s; enqueued %lld, "
         "written %lld, fenced %lld, redelivered %lld, retry_success %lld, at the worker %ld, lease "
         "failures %lld", k, out->ingest_rate, out->stored_rate, out->dispatch_rate, out->enq,
         out->written, out->fenced, out->redelivered, out->succ, out->received, out->lease_failures);
    if (cl_lost(out))
        losses++;
    if (rc)
        failures++;
    return rc;
}

/* jrun() writes one configuration's figures into o under keys starting with prefix. */
static void
jrun(json_t *o, const char *prefix, const struct cl_run *r)
{
    static const char *const names[] = {"balance_ms", "ingest_per_s", "stored_per_s",
                                        "dispatch_per_s"};
    const double v[] = {r->balance_ms, r->ingest_rate, r->stored_rate, r->dispatch_rate};
    static const char *const inames[] = {"enqueued", "written", "retry_success", "lease_failures",
                                         "partitions_lost", "received", "stream_left", "fenced",
                                         "redelivered", "queue_size_end"};
    const long long iv[] = {r->enq, r->written, r->succ, r->lease_failures, r->lost_partitions,
                            r->received, r->stream_left, r->fenced, r->redelivered, r->queue_size};
    char key[96];

    for (size_t i = 0; i < SC_ARRAY_LEN(names); i++) {
        snprintf(key, sizeof(key), "%s_%s", prefix, names[i]);
        jnum(o, key, v[i]);
    }
    for (size_t i = 0; i < SC_ARRAY_LEN(inames); i++) {
        snprintf(key, sizeof(key), "%s_%s", prefix, inames[i]);
        jint(o, key, iv[i]);
    }
}

/*
 * cl_takeover() runs 3 members with a lease of CL_TAKEOVER_LEASE_MS and,
 * O.cluster_kills times, kills one with SIGKILL (in turn), times until the
 * 2 survivors serve every partition (own_ms[i]) and are balanced (bal_ms[i]),
 * then starts a new member in its place and waits for balance again.
 * Returns the kills measured (both arrays hold that many), or -1.
 */
static int
cl_takeover(const struct ncluster *c, natsConnection *nc, jsCtx *js, double *own_ms, double *bal_ms)
{
    struct sidecar sc[CL_MEMBERS];
    int done = 0;

    memset(sc, 0, sizeof(sc));
    cl_reset(js);
    for (int i = 0; i < CL_MEMBERS; i++) {
        char tag[32];
        snprintf(tag, sizeof(tag), "t%d", i);
        if (cl_spawn(&sc[i], c, tag, CL_TAKEOVER_LEASE_MS, false))
            goto out;
    }
    if (cl_wait_balanced(nc, CL_MEMBERS, 90000) < 0)
        goto out;
    for (long kill_i = 0; kill_i < O.cluster_kills; kill_i++) {
        int v = (int)(kill_i % CL_MEMBERS);
        int64_t t0 = mono_ns(), t_own = 0;
        struct cl_view view;
        char tag[32];

        kill(sc[v].pid, SIGKILL);
        waitpid(sc[v].pid, NULL, 0);
        sc[v].pid = live_sidecar = 0;
        for (;;) {
            int64_t now;
            cl_view_get(nc, CL_MEMBERS - 1, 1000, &view);
            now = mono_ns();
            if (!t_own && view.covered == CL_PARTITIONS)
                t_own = now;
            if (cl_balanced(&view, CL_MEMBERS - 1))
                break;
            if (now - t0 > 60000000000LL) {
                note("cluster: kill %ld: not balanced 60 s after the kill (%d served)", kill_i + 1,
                     view.covered);
                goto out;
            }
            sleep_ms(20);
        }
        own_ms[done] = (double)(t_own - t0) / 1e6;
        bal_ms[done] = (double)(mono_ns() - t0) / 1e6;
        note("cluster: kill -9 %ld of %ld (member %d): every partition served again after %.0f ms, "
             "balanced after %.0f ms", kill_i + 1, O.cluster_kills, v, own_ms[done], bal_ms[done]);
        done++;
        snprintf(tag, sizeof(tag), "t%d-%ld", v, kill_i + 1);
        if (cl_spawn(&sc[v], c, tag, CL_TAKEOVER_LEASE_MS, false) ||
            cl_wait_balanced(nc, CL_MEMBERS, 90000) < 0)
            goto out;
    }
out:
    if (cl_stop_all(sc, CL_MEMBERS))
        note("cluster: a member of the takeover run did not stop cleanly");
    return done;
}

/*
 * cl_row_rate() adds one "rate vs baseline" row of the cluster scenario;
 * stored > 0 adds the rate until every task was also written to the store.
 */
static void
cl_row_rate(const char *metric, double rate, double stored, const char *base_what, double base)
{
    char a[96], b[32], c[32], buf[128], r[32];

    if (stored > 0)
        snprintf(a, sizeof(a), "%s/s (all acked, i.e. stored: %s/s)", fmt_count(b, rate),
                 fmt_count(c, stored));
    else
        snprintf(a, sizeof(a), "%s/s", fmt_count(b, rate));
    snprintf(buf, sizeof(buf), "%s %s/s", base_what, fmt_count(b, base));
    snprintf(r, sizeof(r), "%.2fx", base > 0 ? rate / base : 0);
    add_row("cluster", metric, a, buf, r, "report", "");
}

/*
 * scenario_cluster() starts a 3-node nats-server cluster and measures, side by
 * side, 1 sidecar in cluster mode and 3 sidecars (R3 stream and buckets):
 * ingest (failures/s published into DLQ_FAILED until the merged stats count
 * every one) and dispatch (retries/s reaching a worker that answers ok),
 * against a bare nats.c JetStream publisher into the same stream and a bare
 * core publisher and worker; then the takeover time after kill -9 with a
 * 2.5 s lease, O.cluster_kills times. The cluster is stopped at the end.
 */
static void
scenario_cluster(void)
{
    json_t *res = jobj("cluster");
    struct ncluster c;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsOptions jo;
    struct cl_run one, three;
    struct bare_dispatch bd;
    double bare_ingest = 0, *own = NULL, *bal = NULL;
    int kills;
    char a[64], b[96], r[32];

    memset(&c, 0, sizeof(c));
    memset(&bd, 0, sizeof(bd));
    if (!O.nats_server) {
        note("cluster: needs --nats-server (bench/run.sh passes it)");
        failures++;
        return;
    }
    note("cluster: starting a 3-node nats-server cluster (%s)", O.nats_server);
    if (ncl_start(&c)) {
        failures++;
        return;
    }
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    jo.PublishAsync.StallWait = 30000;
    jo.Wait = 10000; /* R3 stream and bucket calls on a busy cluster */
    if (!(nc = connect_url(c.urls, "bench-cluster")) || natsConnection_JetStream(&js, nc, &jo) != NATS_OK) {
        failures++;
        goto done;
    }
    jint(res, "tasks", O.cluster_n);
    jint(res, "nodes", CL_NODES);
    jint(res, "replicas", 3);
    jint(res, "partitions", CL_PARTITIONS);
    jint(res, "lease_ms", O.cluster_lease_ms);
    jint(res, "takeover_lease_ms", CL_TAKEOVER_LEASE_MS);
    note("cluster: %s; %ld failures per configuration", c.urls, O.cluster_n);

    /* 1. one member, 2. three members (the 1-minute load average before each phase goes into the JSON) */
    jnum(res, "loadavg_before_one", loadavg());
    cl_sidecars(&c, nc, js, 1, O.cluster_lease_ms, &one);
    jrun(res, "one", &one);
    jnum(res, "loadavg_before_three", loadavg());
    cl_sidecars(&c, nc, js, 3, O.cluster_lease_ms, &three);
    jrun(res, "three", &three);
    jnum(res, "loadavg_before_bare", loadavg());

    /* 3. the bare JetStream publisher into the same (R3) stream, no sidecar running */
    if (cl_stream_msgs(js) >= 0 && js_PurgeStream(js, CL_STREAM, NULL, NULL) == NATS_OK) {
        int64_t t0 = mono_ns();
        if (cl_publish(js, O.cluster_n) == 0 && cl_stream_msgs(js) == O.cluster_n)
            bare_ingest = (double)O.cluster_n / ((double)(mono_ns() - t0) / 1e9);
        else
            failures++;
        js_PurgeStream(js, CL_STREAM, NULL, NULL);
    } else {
        note("cluster: no DLQ_FAILED stream left for the bare publisher");
        failures++;
    }
    jnum(res, "bare_ingest_per_s", bare_ingest);
    note("cluster: bare js_PublishAsync into %s (R3): %.0f/s", CL_STREAM, bare_ingest);

    /* 4. the bare core publisher and worker, connections to the cluster */
    if (bare_dispatch(nc, c.urls, O.cluster_n, &bd) || !bd.complete)
        failures++;
    jnum(res, "bare_dispatch_per_s", bd.rate);
    jint(res, "bare_dispatch_received", bd.received);
    note("cluster: bare core publish to a worker: %.0f/s (%ld received)", bd.rate, bd.received);

    /* 5. takeover after kill -9 */
    jnum(res, "loadavg_before_takeover", loadavg());
    own = calloc((size_t)O.cluster_kills, sizeof(double));
    bal = calloc((size_t)O.cluster_kills, sizeof(double));
    kills = own && bal ? cl_takeover(&c, nc, js, own, bal) : -1;
    if (kills < O.cluster_kills)
        failures++;
    if (kills > 0) {
        json_t *ao = json_array(), *ab = json_array();
        for (int i = 0; i < kills; i++) {
            json_array_append_new(ao, json_real(own[i]));
            json_array_append_new(ab, json_real(bal[i]));
        }
        json_object_set_new(res, "takeover_owned_ms", ao);
        json_object_set_new(res, "takeover_balanced_ms", ab);
        qsort(own, (size_t)kills, sizeof(double), cmp_double);
        qsort(bal, (size_t)kills, sizeof(double), cmp_double);
        jnum(res, "takeover_owned_p50_ms", pct(own, (size_t)kills, 50));
        jnum(res, "takeover_owned_max_ms", own[kills - 1]);
        jnum(res, "takeover_balanced_p50_ms", pct(bal, (size_t)kills, 50));
        jnum(res, "takeover_balanced_max_ms", bal[kills - 1]);
    }
    jint(res, "takeover_kills", kills > 0 ? kills : 0);
    jnum(res, "loadavg_end", loadavg());

    /* rows */
    cl_row_rate("ingest failures/s into DLQ_FAILED (R3) until all are tasks: 1 sidecar (cluster mode)",
                one.ingest_rate, one.stored_rate, "bare nats.c js_PublishAsync", bare_ingest);
    cl_row_rate("ingest, the same: 3 sidecars", three.ingest_rate, three.stored_rate,
                "bare nats.c js_PublishAsync", bare_ingest);
    cl_row_rate("dispatch retries/s to a worker answering ok: 1 sidecar", one.dispatch_rate, 0,
                "bare core publish + worker", bd.rate);
    cl_row_rate("dispatch, the same: 3 sidecars", three.dispatch_rate, 0, "bare core publish + worker",
                bd.rate);
    snprintf(a, sizeof(a), "ingest %.2fx, dispatch %.2fx",
             one.ingest_rate > 0 ? three.ingest_rate / one.ingest_rate : 0,
             one.dispatch_rate > 0 ? three.dispatch_rate / one.dispatch_rate : 0);
    add_row("cluster", "3 sidecars / 1 sidecar (2 cores: the cost of coordination)", a, "", "",
            "report", "");
    jnum(res, "three_vs_one_ingest", one.ingest_rate > 0 ? three.ingest_rate / one.ingest_rate : 0);
    jnum(res, "three_vs_one_dispatch",
         one.dispatch_rate > 0 ? three.dispatch_rate / one.dispatch_rate : 0);
    if (kills > 0) {
        snprintf(a, sizeof(a), "%.2f / %.2f s", pct(own, (size_t)kills, 50) / 1000,
                 own[kills - 1] / 1000);
        snprintf(b, sizeof(b), "balanced again: %.2f / %.2f s", pct(bal, (size_t)kills, 50) / 1000,
                 bal[kills - 1] / 1000);
        snprintf(r, sizeof(r), "%d kills", kills);
        add_row("cluster", "takeover after kill -9, lease 2.5 s: all 32 served again, p50 / max", a,
                b, r, "report", "");
    }
    snprintf(a, sizeof(a), "%lld / %lld", cl_lost(&one), cl_lost(&three));
    add_row("cluster", "lost (stats: retry_success vs sent), 1 / 3 sidecars", a, "", "",
            "0", cl_lost(&one) == 0 && cl_lost(&three) == 0 ? "yes" : "NO");
    jint(res, "one_lost", cl_lost(&one));
    jint(res, "three_lost", cl_lost(&three));
done:
    free(own);
    free(bal);
    if (js)
        cl_reset(js);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    ncl_stop(&c);
}

/* ---- output ---------------------------------------------------------------------------------- */

/* table_markdown() renders the rows as a Markdown table into a new string. */
static char *
table_markdown(void)
{
    static const char *const head[7] = {"scenario", "metric", "dlq-sidecar", "baseline, same run",
                                        "ratio", "target", "met"};
    size_t cap = 256 + (size_t)(nrows + 2) * 7 * 100, len = 0;
    char *s = malloc(cap);

    if (!s)
        return NULL;
    len += (size_t)snprintf(s + len, cap - len, "|");
    for (int c = 0; c < 7; c++)
        len += (size_t)snprintf(s + len, cap - len, " %s |", head[c]);
    len += (size_t)snprintf(s + len, cap - len, "\n|");
    for (int c = 0; c < 7; c++)
        len += (size_t)snprintf(s + len, cap - len, "---|");
    len += (size_t)snprintf(s + len, cap - len, "\n");
    for (int r = 0; r < nrows; r++) {
        len += (size_t)snprintf(s + len, cap - len, "|");
        for (int c = 0; c < 7; c++)
            len += (size_t)snprintf(s + len, cap - len, " %s |", rows[r].cell[c]);
        len += (size_t)snprintf(s + len, cap - len, "\n");
    }
    return s;
}

/* usage() prints the command line help. */
static void
usage(FILE *f)
{
    fprintf(f,
            "usage: dlq-bench --url nats://127.0.0.1:PORT --sidecar PATH [options]\n"
            "  --workdir DIR         logs and config files (default /tmp)\n"
            "  --out FILE            write results as JSON\n"
            "  --nats-log FILE       nats-server log, to count slow-consumer events\n"
            "  --nats-pid PID        nats-server pid, for its RSS per JetStream message\n"
            "  --n N                 tasks of ingest, dispatch, memory, admin, peer (default 1000000)\n"
            "  --timer-n N           tasks of the timer scenarios (default 100000)\n"
            "  --timer-min-ms MS     --timer-max-ms MS  --timer-batches B  (default 1000 10000 10)\n"
            "  --timer-burst         timer: publish each batch within 120 ms (default: spread over 0.9 of\n"
            "                        the gap between two batches' delays)\n"
            "  --timer-held N        timer: store N tasks due in an hour first (default 0)\n"
            "  --admin-samples K     requests of each admin verb and condition (default 100)\n"
            "  --admin-rate R        background ingest during the admin test, tasks/s (default 10000)\n"
            "  --tick-ms MS          timer.tick_ms of the sidecars (default 10)\n"
            "  --js-batch B          jsingest: messages per pull request, bare consumer and sidecar\n"
            "                        (ingest.fetch_batch; default 256)\n"
            "  --kv-n N              kvstore: failures ingested and written (default 200000)\n"
            "  --kv-batch B          kvstore: the sidecar's store.jetstream.batch_max (default: its own)\n"
            "  --kv-pending P        kvstore: PubAcks the bare clients await at once (default 4096)\n"
            "  --nats-server PATH    cluster: the nats-server of its 3 nodes (bench/run.sh passes its own)\n"
            "  --cluster-n N         cluster: failures per configuration (default 20000; quick 2000)\n"
            "  --cluster-kills K     cluster: kill -9 of the takeover measurement (default 10; quick 1)\n"
            "  --cluster-lease-ms MS cluster: cluster.lease_ms of the throughput runs (default 5000)\n"
            "  --scenarios LIST      comma list of ingest,dispatch,timer,memory,admin,peer,jsingest,\n"
            "                        kvstore,cluster\n"
            "                        (default all)\n"
            "  --quick               small sizes: a smoke run of a few seconds\n"
            "  --free-port           print a free TCP port on 127.0.0.1 and exit\n");
}

/* free_port() prints a port the kernel just chose on 127.0.0.1. Returns the exit code. */
static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    int port = -1;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(0x7f000001);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    if (port < 0)
        return 1;
    printf("%d\n", port);
    return 0;
}

/* parse_scenarios() turns a comma list into S_* bits; 0 on an unknown name. */
static unsigned
parse_scenarios(const char *list)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"ingest", S_INGEST}, {"dispatch", S_DISPATCH}, {"timer", S_TIMER},
                 {"memory", S_MEMORY}, {"admin", S_ADMIN},       {"peer", S_PEER},
                 {"jsingest", S_JSINGEST}, {"kvstore", S_KVSTORE}, {"cluster", S_CLUSTER}};
    char buf[256], *save = NULL, *tok;
    unsigned bits = 0;

    snprintf(buf, sizeof(buf), "%s", list);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t i;
        for (i = 0; i < SC_ARRAY_LEN(names); i++)
            if (strcmp(tok, names[i].name) == 0)
                break;
        if (i == SC_ARRAY_LEN(names))
            return 0;
        bits |= names[i].bit;
    }
    return bits;
}

/* num_arg() parses a positive integer option value or exits with 2. */
static long
num_arg(const char *opt, const char *v)
{
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;

    if (!v || *end || x <= 0) {
        fprintf(stderr, "dlq-bench: %s needs a positive integer\n", opt);
        exit(2);
    }
    return x;
}

/*
 * main() parses the options, runs the chosen scenarios in a fixed order,
 * prints the Markdown table and writes the JSON results. Exit code: 0, 1
 * when a scenario could not complete, 3 when tasks were lost, 2 on usage.
 */
int
main(int argc, char **argv)
{
    long n = -1, kv_n = -1, timer_n = -1, tmin = -1, tmax = -1, tbat = -1, samples = -1, arate = -1;
    long cl_n = -1, cl_kills = -1;
    const char *scen = "ingest,dispatch,timer,memory,admin,peer,jsingest,kvstore,cluster";
    struct late tl = {0, 0, 0, 0, 0, 0}, jl = {0, 0, 0, 0, 0, 0};
    double js_rate = 0, js_bytes = 0, mem_bytes = 0;
    natsConnection *pub;
    char *md;

    start_ns = mono_ns();
    O.workdir = "/tmp";
    O.tick_ms = 10;
    O.js_batch = 256; /* ingest.fetch_batch's default */
    O.kv_pending = 4096;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--free-port") == 0) {
            return free_port();
        } else if (strcmp(a, "--quick") == 0) {
            O.quick = true;
            continue;
        } else if (strcmp(a, "--timer-burst") == 0) {
            O.timer_burst = true;
            continue;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--url") == 0)
            O.url = v;
        else if (strcmp(a, "--sidecar") == 0)
            O.sidecar = v;
        else if (strcmp(a, "--workdir") == 0)
            O.workdir = v;
        else if (strcmp(a, "--out") == 0)
            O.out = v;
        else if (strcmp(a, "--nats-log") == 0)
            O.nats_log = v;
        else if (strcmp(a, "--nats-pid") == 0)
            O.nats_pid = (pid_t)num_arg(a, v);
        else if (strcmp(a, "--n") == 0)
            n = num_arg(a, v);
        else if (strcmp(a, "--timer-n") == 0)
            timer_n = num_arg(a, v);
        else if (strcmp(a, "--timer-min-ms") == 0)
            tmin = num_arg(a, v);
        else if (strcmp(a, "--timer-max-ms") == 0)
            tmax = num_arg(a, v);
        else if (strcmp(a, "--timer-held") == 0)
            O.timer_held = num_arg(a, v);
        else if (strcmp(a, "--timer-batches") == 0)
            tbat = num_arg(a, v);
        else if (strcmp(a, "--admin-samples") == 0)
            samples = num_arg(a, v);
        else if (strcmp(a, "--admin-rate") == 0)
            arate = num_arg(a, v);
        else if (strcmp(a, "--tick-ms") == 0)
            O.tick_ms = num_arg(a, v);
        else if (strcmp(a, "--js-batch") == 0)
            O.js_batch = num_arg(a, v);
        else if (strcmp(a, "--kv-n") == 0)
            kv_n = num_arg(a, v);
        else if (strcmp(a, "--kv-batch") == 0)
            O.kv_batch = num_arg(a, v);
        else if (strcmp(a, "--kv-pending") == 0)
            O.kv_pending = num_arg(a, v);
        else if (strcmp(a, "--nats-server") == 0)
            O.nats_server = v;
        else if (strcmp(a, "--cluster-n") == 0)
            cl_n = num_arg(a, v);
        else if (strcmp(a, "--cluster-kills") == 0)
            cl_kills = num_arg(a, v);
        else if (strcmp(a, "--cluster-lease-ms") == 0)
            O.cluster_lease_ms = num_arg(a, v);
        else if (strcmp(a, "--scenarios") == 0)
            scen = v;
        else {
            fprintf(stderr, "dlq-bench: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    O.n = n > 0 ? n : O.quick ? 20000 : 1000000;
    O.kv_n = kv_n > 0 ? kv_n : O.quick ? 20000 : 200000;
    O.timer_n = timer_n > 0 ? timer_n : O.quick ? 2000 : 100000;
    O.timer_min_ms = tmin > 0 ? tmin : O.quick ? 200 : 1000;
    O.timer_max_ms = tmax > 0 ? tmax : O.quick ? 600 : 10000;
    O.timer_batches = tbat > 0 ? tbat : O.quick ? 3 : 10;
    O.admin_samples = samples > 0 ? samples : O.quick ? 20 : 100;
    O.admin_rate = arate > 0 ? arate : O.quick ? 2000 : 10000;
    O.cluster_n = cl_n > 0 ? cl_n : O.quick ? 2000 : 20000;
    O.cluster_kills = cl_kills > 0 ? cl_kills : O.quick ? 1 : 10;
    if (O.cluster_lease_ms <= 0)
        O.cluster_lease_ms = 5000;
    O.scen = parse_scenarios(scen);
    if (!O.url || !O.sidecar || !O.scen || O.timer_max_ms < O.timer_min_ms || O.n > 10000000 || O.kv_n > 5000000 ||
        O.cluster_n > 5000000 || O.cluster_kills > 1000 ||
        O.timer_n > O.n * 10) {
        usage(stderr);
        return 2;
    }
    if (O.scen & S_ADMIN)
        O.scen |= S_MEMORY; /* the admin test runs against the memory scenario's full sidecar */

    natsLibevent_Init(); /* before any event_base_new() */
    atexit(kill_live_sidecar);
    signal(SIGPIPE, SIG_IGN);
    init_errors();
    R = json_object();
    {
        json_t *meta = jobj("meta");
        char host[256] = "";
        gethostname(host, sizeof(host) - 1);
        jint(meta, "n", O.n);
        jint(meta, "kv_n", O.kv_n);
        jint(meta, "cluster_n", O.cluster_n);
        if (O.nats_server)
            json_object_set_new(meta, "nats_server", json_string(O.nats_server));
        jint(meta, "timer_n", O.timer_n);
        jint(meta, "timer_held", O.timer_held);
        json_object_set_new(meta, "timer_burst", json_boolean(O.timer_burst));
        jint(meta, "tick_ms", O.tick_ms);
        json_object_set_new(meta, "quick", json_boolean(O.quick));
        jint(meta, "cpus", sysconf(_SC_NPROCESSORS_ONLN));
        jnum(meta, "loadavg_start", loadavg());
        json_object_set_new(meta, "nats_c", json_string(nats_GetVersion()));
        jint(meta, "started_unix", (long long)time(NULL));
    }
    if (nats_Open(-1) != NATS_OK || !(pub = connect_plain("bench-publisher")))
        return 1;

    if (O.scen & S_INGEST)
        scenario_ingest(pub);
    if (O.scen & S_DISPATCH)
        scenario_dispatch(pub);
    if (O.scen & S_TIMER)
        scenario_timer(pub, &tl);
    if (O.scen & S_MEMORY)
        scenario_store(pub, &mem_bytes);
    if (O.scen & S_PEER)
        scenario_peer(&js_rate, &jl, &js_bytes);
    if (O.scen & S_JSINGEST)
        scenario_jsingest(pub);
    if (O.scen & S_KVSTORE)
        scenario_kvstore(pub);
    if (O.scen & S_CLUSTER)
        scenario_cluster();

    /* memory and peer rows are written last: they need the JetStream figures */
    if (O.scen & S_MEMORY) {
        char a[48], b[96];
        snprintf(a, sizeof(a), "%.0f B", mem_bytes);
        if (js_bytes > 0)
            snprintf(b, sizeof(b), "JetStream server: %.0f B per stored msg", js_bytes);
        else
            b[0] = '\0';
        add_row("memory", "RSS per stored task (200-byte payload)", a, b, "", "<= 600 B",
                mem_bytes > 0 && mem_bytes <= 600 ? "yes" : "NO");
    }
    if (O.scen & S_PEER) {
        char a[48], b[96], r[32], x[32];
        double sc_rate = 0;
        json_t *d = json_object_get(R, "dispatch");
        if (d)
            sc_rate = json_real_value(json_object_get(d, "sidecar_retries_per_s"));
        snprintf(a, sizeof(a), "%s/s", fmt_count(x, sc_rate));
        snprintf(b, sizeof(b), "JetStream push consumer + ack: %s/s", fmt_count(x, js_rate));
        snprintf(r, sizeof(r), "%.2fx", js_rate > 0 ? sc_rate / js_rate : 0);
        add_row("peer", "retry throughput (tasks/s)", d ? a : "", b, r, "report", "");
        if (O.scen & S_TIMER) {
            snprintf(a, sizeof(a), "%.1f / %.1f / %.1f ms", tl.p50, tl.p99, tl.max);
            snprintf(b, sizeof(b), "JetStream NakWithDelay: %.1f / %.1f / %.1f ms", jl.p50, jl.p99,
                     jl.max);
            add_row("peer", "lateness p50 / p99 / max", a, b, "", "report", "");
        }
    }

    md = table_markdown();
    if (md) {
        printf("\n%s\n", md);
        json_object_set_new(R, "table_markdown", json_string(md));
        free(md);
    }
    jnum(jobj("meta"), "loadavg_end", loadavg());
    jnum(jobj("meta"), "seconds", (double)(mono_ns() - start_ns) / 1e9);
    jint(jobj("meta"), "failures", failures);
    jint(jobj("meta"), "losses", losses);
    if (O.out && json_dump_file(R, O.out, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
        note("cannot write %s", O.out);
    else if (O.out)
        note("results written to %s", O.out);
    json_decref(R);
    natsConnection_Destroy(pub);
    nats_Close();
    if (failures)
        note("%d scenario step(s) failed", failures);
    if (losses)
        note("tasks were lost in %d scenario(s)", losses);
    return failures ? 1 : losses ? 3 : 0;
}
