/* harness.c - integration harness: child processes (nats-server, the daemon), NATS clients, recorders and admin helpers. */
#define _GNU_SOURCE /* strcasestr */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h> /* fail(), for IT_CHECK in the JetStream helpers */
#include <msgpack.h>

extern char **environ;

/* ---- child registry: every child is killed at exit, even when a test aborts ----------------- */

#define IT_MAX_CHILDREN 32
static pid_t children[IT_MAX_CHILDREN];
static bool atexit_done;

/* kill_children() SIGKILLs and reaps every child still registered (atexit handler). */
static void
kill_children(void)
{
    for (size_t i = 0; i < IT_MAX_CHILDREN; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    }
}

/* child_add() registers pid for the exit-time kill. */
static void
child_add(pid_t pid)
{
    if (!atexit_done) {
        atexit(kill_children);
        atexit_done = true;
    }
    for (size_t i = 0; i < IT_MAX_CHILDREN; i++) {
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
    }
    fprintf(stderr, "harness: too many children\n");
}

/* child_del() forgets pid once it is reaped. */
static void
child_del(pid_t pid)
{
    for (size_t i = 0; i < IT_MAX_CHILDREN; i++) {
        if (children[i] == pid)
            children[i] = 0;
    }
}

/*
 * spawn() forks and execs argv[0] with argv and envp, stdout and stderr
 * appended to log. The child asks for SIGKILL when the test process dies
 * (PR_SET_PDEATHSIG) so that a test killed by a ctest timeout leaves no
 * server or daemon behind. Returns the pid or -1.
 */
static pid_t
spawn(char *const argv[], char *const envp[], const char *log)
{
    pid_t parent = getpid();
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "harness: open %s: %s\n", log, strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        dup2(fd, 1);
        dup2(fd, 2);
        /* Signals blocked or ignored by the test process must not leak into the child. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execve(argv[0], argv, envp);
        dprintf(2, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    child_add(pid);
    return pid;
}

/*
 * reap() waits for pid up to timeout_ms, then SIGKILLs and waits for good.
 * Returns the exit status as a shell does (code, or 128+signal).
 */
static int
reap(pid_t pid, int timeout_ms)
{
    int st = 0;
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            child_del(pid);
            return -1;
        }
        if (sc_now_mono_ms() >= deadline) {
            fprintf(stderr, "harness: pid %d did not exit in %d ms; SIGKILL\n", (int)pid,
                    timeout_ms);
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        it_sleep_ms(10);
    }
    child_del(pid);
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* ---- misc ------------------------------------------------------------------------------------- */

void
it_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

uint64_t
it_fnv1a(const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)len;
    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t rand_state = 0x9e3779b97f4a7c15ULL;

void
it_rand_seed(uint64_t seed)
{
    rand_state = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

uint64_t
it_rand_u64(void)
{
    uint64_t x = rand_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rand_state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

const char *
it_unique_id(const char *prefix, char *out, size_t outlen)
{
    static unsigned counter;
    snprintf(out, outlen, "%s-%d-%u-%lld", prefix, (int)getpid(), ++counter,
             (long long)sc_now_mono_ms());
    return out;
}

void
it_print_tail(const char *title, const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "---- %s: %s unreadable ----\n", title, path);
        return;
    }
    /* The last 256 KiB hold the lines anyone wants to read; print their last `lines`. */
    enum { CHUNK = 256 * 1024 };
    char *buf = malloc(CHUNK + 1);
    if (!buf) {
        fclose(f);
        return;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long start = size > CHUNK ? size - CHUNK : 0;
    fseek(f, start, SEEK_SET);
    size_t n = fread(buf, 1, CHUNK, f);
    buf[n] = '\0';
    size_t i = n;
    int seen = 0;
    if (i > 0 && buf[i - 1] == '\n')
        i--;
    while (i > 0) {
        if (buf[i - 1] == '\n' && ++seen == lines)
            break;
        i--;
    }
    fprintf(stderr, "---- last %d lines of %s (%s) ----\n", lines, title, path);
    fwrite(buf + i, 1, n - i, stderr);
    fprintf(stderr, "---- end of %s ----\n", title);
    free(buf);
    fclose(f);
}

long
it_pid_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* rm_rf() removes path and everything under it (no symlinks followed). */
static void
rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *de;
            while ((de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                    continue;
                char sub[IT_PATH_MAX * 2];
                snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
                rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* ---- nats-server ------------------------------------------------------------------------------ */

int
it_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* tcp_accepts() tells whether 127.0.0.1:port accepts a TCP connection. */
static bool
tcp_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/*
 * it_server_bin() is the nats-server the tests run: $DLQ_TEST_NATS_SERVER
 * when set (CI runs the core-mode tests against Debian's 2.9.10 this way),
 * else the one CMake found (.deps/bin/nats-server, v2.15.3, first).
 */
const char *
it_server_bin(void)
{
    const char *b = getenv("DLQ_TEST_NATS_SERVER");

    return b && *b ? b : NATS_SERVER_BIN;
}

/* server_spawn() execs nats-server for s and waits until its port accepts. */
static int
server_spawn(struct it_server *s)
{
    char port[16], jsdir[IT_PATH_MAX + 8];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(jsdir, sizeof jsdir, "%s/js", s->dir);
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)it_server_bin();
    argv[n++] = (char *)"-a";
    argv[n++] = (char *)"127.0.0.1";
    argv[n++] = (char *)"-p";
    argv[n++] = port;
    if (s->jetstream) {
        argv[n++] = (char *)"-js";
        argv[n++] = (char *)"-sd";
        argv[n++] = jsdir;
    }
    if (s->conf[0]) {
        argv[n++] = (char *)"-c";
        argv[n++] = s->conf;
    }
    argv[n] = NULL;
    s->pid = spawn(argv, environ, s->log);
    if (s->pid < 0) {
        s->pid = 0;
        return -1;
    }
    int64_t deadline = sc_now_mono_ms() + IT_WAIT_MS;
    while (sc_now_mono_ms() < deadline) {
        if (tcp_accepts(s->port))
            return 0;
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            child_del(s->pid);
            s->pid = 0;
            fprintf(stderr, "harness: nats-server exited at start\n");
            it_print_tail("nats-server log", s->log, 30);
            return -1;
        }
        it_sleep_ms(20);
    }
    fprintf(stderr, "harness: nats-server did not accept on port %d\n", s->port);
    it_print_tail("nats-server log", s->log, 30);
    it_server_stop(s, SIGKILL);
    return -1;
}

int
it_server_start(struct it_server *s, const char *dir, bool jetstream)
{
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->log, sizeof s->log, "%s/nats.log", dir);
    s->jetstream = jetstream;
    s->pid = 0;
    /* A port picked by it_free_port() may be taken by the time the server binds: retry. */
    for (int tries = 0; tries < 5; tries++) {
        if (s->port == 0 || tries > 0)
            s->port = it_free_port();
        if (s->port <= 0)
            return -1;
        snprintf(s->url, sizeof s->url, "nats://127.0.0.1:%d", s->port);
        if (server_spawn(s) == 0)
            return 0;
    }
    return -1;
}

int
it_server_start_conf(struct it_server *s, const char *dir, const char *conf)
{
    snprintf(s->conf, sizeof s->conf, "%s", conf);
    return it_server_start(s, dir, false);
}

int
it_server_stop(struct it_server *s, int sig)
{
    if (s->pid > 0) {
        kill(s->pid, sig);
        reap(s->pid, 10000);
        s->pid = 0;
    }
    return 0;
}

int
it_server_restart(struct it_server *s)
{
    it_server_stop(s, SIGKILL);
    /* The same port: clients reconnect to the URL they know. TIME_WAIT does not stop a Go listener. */
    int64_t deadline = sc_now_mono_ms() + IT_WAIT_MS;
    while (sc_now_mono_ms() < deadline) {
        if (server_spawn(s) == 0)
            return 0;
        it_sleep_ms(200);
    }
    return -1;
}


/* ---- a nats-server cluster -------------------------------------------------------------------- */

/* Writes node i's config file: its ports, name, store, and routes to every node. */
static int
cluster_conf(struct it_cluster *c, size_t i, char *path, size_t pathlen)
{
    FILE *f;

    if (snprintf(path, pathlen, "%s/n%zu.conf", c->dir, i) >= (int)pathlen)
        return -1;
    f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "server_name: n%zu\n", i);
    fprintf(f, "jetstream { store_dir: \"%s/n%zu/js\" }\n", c->dir, i);
    if (c->n > 1) { /* one node: no cluster block (it would wait for routes to itself) */
        fprintf(f, "cluster {\n  name: dlq-it\n  listen: 127.0.0.1:%d\n  routes: [\n",
                c->route_port[i]);
        for (size_t k = 0; k < c->n; k++)
            fprintf(f, "    nats-route://127.0.0.1:%d\n", c->route_port[k]);
        fprintf(f, "  ]\n}\n");
    }
    return fclose(f) == 0 ? 0 : -1;
}

int
it_cluster_wait_js(const char *url, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    natsConnection *nc = it_connect(url, "it-cluster-probe");
    jsCtx *js = NULL;
    int rc = -1;

    if (!nc || natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
        goto done;
    while (rc != 0 && sc_now_mono_ms() < deadline) {
        jsAccountInfo *ai = NULL;
        if (js_GetAccountInfo(&ai, js, NULL, NULL) == NATS_OK)
            rc = 0;
        jsAccountInfo_Destroy(ai);
        if (rc != 0)
            it_sleep_ms(100);
    }
done:
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}

/*
 * A free port below the kernel's ephemeral range (32768 and up on Linux):
 * a port it_free_port() picked can be taken by the nodes' own outgoing
 * route connections before the node that should listen on it starts.
 */
static int
cluster_port(void)
{
    static unsigned seed;

    if (!seed)
        seed = (unsigned)getpid() * 2654435761u;
    for (int k = 0; k < 200; k++) {
        int port;
        struct sockaddr_in a;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        seed = seed * 1103515245u + 12345u;
        port = 20000 + (int)((seed >> 8) % 12000);
        if (fd < 0)
            return -1;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
            close(fd);
            return port;
        }
        close(fd);
    }
    return it_free_port();
}

/* One try of it_cluster_start(). */
static int
cluster_start_once(struct it_cluster *c, const char *dir, size_t n)
{
    size_t o = 0;

    memset(c, 0, sizeof(*c));
    c->n = n;
    snprintf(c->dir, sizeof(c->dir), "%s", dir);
    for (size_t i = 0; i < n; i++) {
        c->node[i].port = cluster_port();
        c->route_port[i] = cluster_port();
        if (c->node[i].port <= 0 || c->route_port[i] <= 0)
            return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct it_server *s = &c->node[i];
        if (snprintf(s->dir, sizeof(s->dir), "%s/n%zu", dir, i) >= (int)sizeof(s->dir) ||
            snprintf(s->log, sizeof(s->log), "%s/n%zu/nats.log", dir, i) >= (int)sizeof(s->log) ||
            (mkdir(s->dir, 0755) != 0 && errno != EEXIST) ||
            cluster_conf(c, i, s->conf, sizeof(s->conf)) != 0)
            goto fail;
        snprintf(c->node[i].url, sizeof(c->node[i].url), "nats://127.0.0.1:%d", c->node[i].port);
        if (server_spawn(&c->node[i]) != 0)
            goto fail;
        o += (size_t)snprintf(c->urls + o, sizeof(c->urls) - o, "%s%s", i ? "," : "", c->node[i].url);
    }
    if (it_cluster_wait_js(c->node[0].url, 2 * IT_WAIT_MS) == 0)
        return 0;
    fprintf(stderr, "harness: the cluster's JetStream has no meta leader\n");
    it_print_tail("node 0 log", c->node[0].log, 30);
fail:
    it_cluster_stop(c);
    return -1;
}

int
it_cluster_start(struct it_cluster *c, const char *dir, size_t n)
{
    if (n == 0 || n > IT_CLUSTER_MAX)
        return -1;
    /* A port taken between its pick and the node's start fails one try, not the test. */
    for (int attempt = 0; attempt < 3; attempt++) {
        if (cluster_start_once(c, dir, n) == 0)
            return 0;
        fprintf(stderr, "harness: the cluster did not start (try %d of 3)\n", attempt + 1);
    }
    return -1;
}

void
it_cluster_stop_node(struct it_cluster *c, size_t i, int sig)
{
    if (i < c->n)
        it_server_stop(&c->node[i], sig);
}

void
it_cluster_stop(struct it_cluster *c)
{
    for (size_t i = 0; i < c->n; i++)
        it_server_stop(&c->node[i], SIGTERM);
}

size_t
it_gather_json(natsConnection *nc, const char *subject, const char *body, int wait_ms,
               json_t **out, size_t max)
{
    return it_gather_json_in(nc, "_INBOX", subject, body, wait_ms, out, max);
}

size_t
it_gather_json_in(natsConnection *nc, const char *inbox_prefix, const char *subject,
                  const char *body, int wait_ms, json_t **out, size_t max)
{
    char inbox[128];
    natsSubscription *sub = NULL;
    natsMsg *m = NULL;
    size_t n = 0;
    int64_t deadline = sc_now_mono_ms() + wait_ms;

    static uint64_t seq;
    snprintf(inbox, sizeof(inbox), "%s.gather.%d.%llu", inbox_prefix, (int)getpid(),
             (unsigned long long)__atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
    if (natsConnection_SubscribeSync(&sub, nc, inbox) != NATS_OK)
        return 0;
    if (natsConnection_PublishRequest(nc, subject, inbox, body ? body : "",
                                      body ? (int)strlen(body) : 0) != NATS_OK)
        goto done;
    while (n < max) {
        int64_t left = deadline - sc_now_mono_ms();
        if (left <= 0 || natsSubscription_NextMsg(&m, sub, left) != NATS_OK)
            break;
        json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
        natsMsg_Destroy(m);
        if (j)
            out[n++] = j;
    }
done:
    natsSubscription_Destroy(sub);
    return n;
}

/* ---- the daemon ------------------------------------------------------------------------------- */

/*
 * The suite's default flags: fast timers so that tests take seconds, no
 * jitter so that delays can be measured, completed tasks kept so that they
 * can be inspected, no HTTP listener (ports would collide), debug logs.
 */
static const char *const it_default_flags[] = {
    "http.listen=",
    "timer.tick_ms=10",
    "backoff.exp_base_ms=200",
    "backoff.linear_step_ms=200",
    "backoff.jitter=0",
    "retry.timeout_ms=500",
    "store.keep_completed=true",
    "log.level=debug",
    "shutdown.drain_ms=1000",
    NULL,
};

/* flag_key_len() is the length of the key part of "key=value". */
static size_t
flag_key_len(const char *kv)
{
    const char *eq = strchr(kv, '=');
    return eq ? (size_t)(eq - kv) : strlen(kv);
}

int
it_daemon_start(struct it_daemon *d, const char *dir, const char *nats_url,
                const char *const *extra)
{
    /* Merge: defaults, then extras replacing a default with the same key or appended. */
    const char *kv[64];
    size_t nkv = 0;
    static char urlflag[128];
    snprintf(urlflag, sizeof urlflag, "nats.url=%s", nats_url);
    kv[nkv++] = urlflag;
    for (size_t i = 0; it_default_flags[i]; i++)
        kv[nkv++] = it_default_flags[i];
    for (size_t i = 0; extra && extra[i]; i++) {
        size_t kl = flag_key_len(extra[i]);
        size_t j;
        for (j = 0; j < nkv; j++) {
            if (flag_key_len(kv[j]) == kl && strncmp(kv[j], extra[i], kl) == 0)
                break;
        }
        if (j == nkv) {
            if (nkv >= SC_ARRAY_LEN(kv) - 1)
                return -1;
            nkv++;
        }
        kv[j] = extra[i];
    }

    char *argv[70];
    size_t argc = 0;
    argv[argc++] = (char *)DLQ_SIDECAR_BIN;
    for (size_t i = 0; i < nkv; i++) {
        size_t l = strlen(kv[i]) + 3;
        argv[argc] = malloc(l);
        if (!argv[argc])
            return -1;
        snprintf(argv[argc], l, "--%s", kv[i]);
        argc++;
    }
    argv[argc] = NULL;

    /* The environment without DLQ_* so that the caller's shell cannot change the config. */
    size_t ne = 0;
    while (environ[ne])
        ne++;
    char **envp = calloc(ne + 1, sizeof(char *));
    if (!envp)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < ne; i++) {
        if (strncmp(environ[i], "DLQ_", 4) != 0)
            envp[k++] = environ[i];
    }
    envp[k] = NULL;

    snprintf(d->log, sizeof d->log, "%s/dlq-sidecar.log", dir);
    FILE *f = fopen(d->log, "a");
    if (f) {
        fprintf(f, "==== harness: starting");
        for (size_t i = 0; i < argc; i++)
            fprintf(f, " '%s'", argv[i]);
        fprintf(f, "\n");
        fclose(f);
    }
    d->exit_status = -1;
    d->pid = spawn(argv, envp, d->log);
    for (size_t i = 1; i < argc; i++)
        free(argv[i]);
    free(envp);
    if (d->pid < 0) {
        d->pid = 0;
        return -1;
    }
    return 0;
}

bool
it_daemon_alive(struct it_daemon *d)
{
    if (d->pid <= 0)
        return false;
    int st;
    pid_t r = waitpid(d->pid, &st, WNOHANG);
    if (r == d->pid) {
        child_del(d->pid);
        d->pid = 0;
        d->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        fprintf(stderr, "harness: the daemon exited with status %d\n", d->exit_status);
        return false;
    }
    return true;
}

bool
it_daemon_wait_exit(struct it_daemon *d, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;

    while (it_daemon_alive(d)) {
        if (sc_now_mono_ms() >= deadline)
            return false;
        it_sleep_ms(20);
    }
    return true;
}

int
it_daemon_wait_ready(struct it_daemon *d, natsConnection *nc, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    while (sc_now_mono_ms() < deadline) {
        if (!it_daemon_alive(d)) {
            it_print_tail("daemon log", d->log, 60);
            return -1;
        }
        json_t *h = it_request_json(nc, "dlq.admin.health", "", 500);
        const char *st = it_json_str(h, "status");
        bool ok = st && strcmp(st, "ok") == 0;
        json_decref(h);
        if (ok)
            return 0;
        it_sleep_ms(50);
    }
    fprintf(stderr, "harness: the daemon did not answer dlq.admin.health in %d ms\n", timeout_ms);
    it_print_tail("daemon log", d->log, 60);
    return -1;
}

int
it_daemon_stop(struct it_daemon *d)
{
    if (d->pid <= 0)
        return d->exit_status < 0 ? 0 : d->exit_status;
    kill(d->pid, SIGTERM);
    d->exit_status = reap(d->pid, 30000); /* its drain and last flush may take shutdown.drain_ms */
    d->pid = 0;
    return d->exit_status;
}

/* ---- environment ------------------------------------------------------------------------------ */

/* env_start() is it_env_start(), with a JetStream-enabled server when jetstream. */
static struct it_env *
env_start(const char *name, const char *const *extra, bool jetstream)
{
    struct it_env *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->name = name;
    e->dmn.exit_status = -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(e->dir, sizeof e->dir, "%s/dlq-it-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    if (!mkdtemp(e->dir)) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", e->dir, strerror(errno));
        free(e);
        return NULL;
    }
    fprintf(stderr, "[%s] logs in %s\n", name, e->dir);
    if (it_server_start(&e->srv, e->dir, jetstream) != 0)
        goto fail;
    e->nc = it_connect(e->srv.url, "it-client");
    if (!e->nc)
        goto fail;
    if (it_daemon_start(&e->dmn, e->dir, e->srv.url, extra) != 0)
        goto fail;
    if (it_daemon_wait_ready(&e->dmn, e->nc, IT_WAIT_MS) != 0)
        goto fail;
    return e;
fail:
    it_env_stop(e);
    return NULL;
}

struct it_env *
it_env_start(const char *name, const char *const *extra)
{
    return env_start(name, extra, false);
}

struct it_env *
it_env_start_js(const char *name, const char *const *extra)
{
    return env_start(name, extra, true);
}

int
it_env_stop(struct it_env *e)
{
    if (!e)
        return 0;
    int rc = 0;
    for (size_t i = 0; i < IT_ENV_MAX_RECS; i++) {
        it_recorder_free(e->recs[i]);
        e->recs[i] = NULL;
    }
    for (size_t i = 0; i < IT_ENV_MAX_CONNS; i++) {
        if (e->conns[i]) {
            natsConnection_Close(e->conns[i]);
            natsConnection_Destroy(e->conns[i]);
            e->conns[i] = NULL;
        }
    }
    if (e->nc) {
        natsConnection_Close(e->nc);
        natsConnection_Destroy(e->nc);
        e->nc = NULL;
    }
    bool was_running = e->dmn.pid > 0;
    int st = it_daemon_stop(&e->dmn);
    if (was_running && st != 0) {
        fprintf(stderr, "[%s] FAIL: the daemon exited with status %d after SIGTERM (want 0, DESIGN section 14)\n",
                e->name, st);
        rc = -1;
    }
    it_server_stop(&e->srv, SIGTERM);
    if (!e->passed || rc != 0) {
        it_print_tail("daemon log", e->dmn.log, 80);
        it_print_tail("nats-server log", e->srv.log, 20);
        fprintf(stderr, "[%s] kept %s\n", e->name, e->dir);
    } else if (!getenv("DLQ_IT_KEEP")) {
        rm_rf(e->dir);
    }
    free(e);
    return rc;
}

natsConnection *
it_env_connect(struct it_env *e, const char *name)
{
    for (size_t i = 0; i < IT_ENV_MAX_CONNS; i++) {
        if (!e->conns[i]) {
            e->conns[i] = it_connect(e->srv.url, name);
            return e->conns[i];
        }
    }
    fprintf(stderr, "harness: too many connections\n");
    return NULL;
}

struct it_recorder *
it_env_recorder(struct it_env *e, natsConnection *nc, const char *subject, const char *queue,
                size_t cap, bool keep_body)
{
    for (size_t i = 0; i < IT_ENV_MAX_RECS; i++) {
        if (!e->recs[i]) {
            e->recs[i] = it_recorder_new(nc, subject, queue, cap, keep_body);
            return e->recs[i];
        }
    }
    fprintf(stderr, "harness: too many recorders\n");
    return NULL;
}

void
it_env_recorder_free(struct it_env *e, struct it_recorder *r)
{
    for (size_t i = 0; i < IT_ENV_MAX_RECS; i++) {
        if (e->recs[i] == r)
            e->recs[i] = NULL;
    }
    it_recorder_free(r);
}

int
it_teardown(void **state)
{
    struct it_env *e = *state;
    *state = NULL;
    return it_env_stop(e);
}

/* ---- NATS clients ------------------------------------------------------------------------------ */

natsConnection *
it_connect(const char *url, const char *name)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    char list[IT_CLUSTER_MAX * 32 + 64], *save = NULL, *tok;
    const char *servers[IT_CLUSTER_MAX + 1];
    int nservers = 0;
    natsStatus s = natsOptions_Create(&o);

    /* A cluster's comma-separated URLs become the server pool, one entry each. */
    snprintf(list, sizeof(list), "%s", url);
    for (tok = strtok_r(list, ",", &save); tok && nservers < (int)SC_ARRAY_LEN(servers);
         tok = strtok_r(NULL, ",", &save))
        servers[nservers++] = tok;
    if (s == NATS_OK)
        s = natsOptions_SetServers(o, servers, nservers);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, name);
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(o, true);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, 100);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(o, 64 * 1024 * 1024);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 5000);
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        fprintf(stderr, "harness: connect %s: %s\n", url, natsStatus_GetText(s));
        return NULL;
    }
    return nc;
}

void
it_envelope_init(struct it_envelope *env)
{
    memset(env, 0, sizeof *env);
    env->max_retries = -1;
}

/* pack_str() packs a NUL-terminated string. */
static void
pack_str(msgpack_packer *pk, const char *s)
{
    size_t l = strlen(s);
    msgpack_pack_str(pk, l);
    msgpack_pack_str_body(pk, s, l);
}

int
it_default_task(struct sc_buf *out)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    static const unsigned char blob[] = {0x00, 0xff, 0x10};
    msgpack_pack_map(&pk, 4);
    pack_str(&pk, "order");
    msgpack_pack_int(&pk, 42);
    pack_str(&pk, "items");
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 2);
    msgpack_pack_int(&pk, 3);
    pack_str(&pk, "blob");
    msgpack_pack_bin(&pk, sizeof blob);
    msgpack_pack_bin_body(&pk, blob, sizeof blob);
    pack_str(&pk, "note");
    pack_str(&pk, "h\xc3\xa9llo");
    sc_buf_reset(out);
    int rc = sc_buf_append(out, sb.data, sb.size) == SC_OK ? 0 : -1;
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int
it_envelope_pack(const struct it_envelope *env, struct sc_buf *out)
{
    struct sc_buf task;
    sc_buf_init(&task, 1 << 20);
    const void *tp = env->task_mp;
    size_t tl = env->task_len;
    if (!tp) {
        if (it_default_task(&task) != 0) {
            sc_buf_destroy(&task);
            return -1;
        }
        tp = task.data;
        tl = task.len;
    }
    size_t n = 2;
    n += env->error != NULL;
    n += env->error_type != NULL;
    n += env->error_category != NULL;
    n += env->retry_policy != NULL;
    n += env->retry_subject != NULL;
    n += env->max_retries >= 0;
    n += env->failed_at_ms != 0;

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, n);
    pack_str(&pk, "task_id");
    pack_str(&pk, env->task_id ? env->task_id : "");
    pack_str(&pk, "task");
    /* The task's bytes go in verbatim: they are already one MessagePack value. */
    msgpack_sbuffer_write(&sb, tp, tl);
    if (env->error) {
        pack_str(&pk, "error");
        pack_str(&pk, env->error);
    }
    if (env->error_type) {
        pack_str(&pk, "error_type");
        pack_str(&pk, env->error_type);
    }
    if (env->error_category) {
        pack_str(&pk, "error_category");
        pack_str(&pk, env->error_category);
    }
    if (env->retry_policy) {
        pack_str(&pk, "retry_policy");
        pack_str(&pk, env->retry_policy);
    }
    if (env->retry_subject) {
        pack_str(&pk, "retry_subject");
        pack_str(&pk, env->retry_subject);
    }
    if (env->max_retries >= 0) {
        pack_str(&pk, "max_retries");
        msgpack_pack_unsigned_int(&pk, (unsigned)env->max_retries);
    }
    if (env->failed_at_ms != 0) {
        pack_str(&pk, "failed_at");
        msgpack_pack_int64(&pk, env->failed_at_ms);
    }
    sc_buf_reset(out);
    int rc = sc_buf_append(out, sb.data, sb.size) == SC_OK ? 0 : -1;
    msgpack_sbuffer_destroy(&sb);
    sc_buf_destroy(&task);
    return rc;
}

int
it_publish_envelope(natsConnection *nc, const char *subject, const struct it_envelope *env)
{
    struct sc_buf b;
    sc_buf_init(&b, 1 << 20);
    int rc = -1;
    if (it_envelope_pack(env, &b) == 0 &&
        natsConnection_Publish(nc, subject, b.data, (int)b.len) == NATS_OK)
        rc = 0;
    sc_buf_destroy(&b);
    return rc;
}

json_t *
it_request_envelope(natsConnection *nc, const char *subject, const struct it_envelope *env)
{
    struct sc_buf b;
    sc_buf_init(&b, 1 << 20);
    json_t *j = NULL;
    natsMsg *reply = NULL;
    if (it_envelope_pack(env, &b) == 0 &&
        natsConnection_Request(&reply, nc, subject, b.data, (int)b.len, IT_REQUEST_MS) == NATS_OK) {
        j = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
        if (!j)
            fprintf(stderr, "harness: ingest ack is not JSON: %.*s\n",
                    natsMsg_GetDataLength(reply), natsMsg_GetData(reply));
    }
    natsMsg_Destroy(reply);
    sc_buf_destroy(&b);
    return j;
}

json_t *
it_request_json(natsConnection *nc, const char *subject, const char *body, int timeout_ms)
{
    return it_request_bytes(nc, subject, body ? body : "", body ? strlen(body) : 0, timeout_ms);
}

json_t *
it_request_bytes(natsConnection *nc, const char *subject, const void *body, size_t len,
                 int timeout_ms)
{
    natsMsg *reply = NULL;
    natsStatus s = natsConnection_Request(&reply, nc, subject, body, (int)len, timeout_ms);
    if (s != NATS_OK)
        return NULL;
    json_error_t jerr;
    json_t *j = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, &jerr);
    if (!j)
        fprintf(stderr, "harness: reply on %s is not JSON (%s): %.*s\n", subject, jerr.text,
                natsMsg_GetDataLength(reply), natsMsg_GetData(reply));
    natsMsg_Destroy(reply);
    return j;
}

json_t *
it_request_all(natsConnection *nc, const char *subject, const char *body, size_t want,
               int timeout_ms)
{
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    json_t *all = NULL;
    int64_t deadline = sc_now_mono_ms() + timeout_ms;

    if (natsInbox_Create(&inbox) != NATS_OK)
        return NULL;
    if (natsConnection_SubscribeSync(&sub, nc, inbox) != NATS_OK ||
        natsConnection_PublishRequestString(nc, subject, inbox, body ? body : "") != NATS_OK)
        goto done;
    all = json_array();
    while (json_array_size(all) < want) {
        natsMsg *m = NULL;
        int64_t left = deadline - sc_now_mono_ms();
        if (left <= 0 || natsSubscription_NextMsg(&m, sub, left) != NATS_OK)
            break;
        json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
        if (j)
            json_array_append_new(all, j);
        natsMsg_Destroy(m);
    }
done:
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    return all;
}

json_t *
it_admin_stats(natsConnection *nc)
{
    return it_request_json(nc, "dlq.admin.stats", "", IT_REQUEST_MS);
}

json_t *
it_admin_task(natsConnection *nc, const char *verb, const char *task_id)
{
    char subj[64];
    snprintf(subj, sizeof subj, "dlq.admin.%s", verb);
    json_t *req = json_pack("{s:s}", "task_id", task_id);
    char *body = json_dumps(req, JSON_COMPACT);
    json_t *j = body ? it_request_json(nc, subj, body, IT_REQUEST_MS) : NULL;
    free(body);
    json_decref(req);
    return j;
}

json_t *
it_admin_get(natsConnection *nc, const char *task_id)
{
    return it_admin_task(nc, "get", task_id);
}

bool
it_admin_health_ok(natsConnection *nc)
{
    json_t *h = it_request_json(nc, "dlq.admin.health", "", IT_REQUEST_MS);
    const char *st = it_json_str(h, "status");
    bool ok = st && strcmp(st, "ok") == 0;
    json_decref(h);
    return ok;
}

const json_t *
it_json_get(const json_t *obj, const char *path)
{
    char key[128];
    const json_t *cur = obj;
    while (cur && *path) {
        const char *dot = strchr(path, '.');
        size_t l = dot ? (size_t)(dot - path) : strlen(path);
        if (l >= sizeof key)
            return NULL;
        memcpy(key, path, l);
        key[l] = '\0';
        cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
        path += l + (dot ? 1 : 0);
    }
    return cur;
}

int64_t
it_json_int(const json_t *obj, const char *path)
{
    const json_t *v = it_json_get(obj, path);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return INT64_MIN;
}

const char *
it_json_str(const json_t *obj, const char *path)
{
    const json_t *v = it_json_get(obj, path);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

char *
it_json_dump(const json_t *obj)
{
    if (!obj)
        return strdup("(null)");
    char *s = json_dumps(obj, JSON_COMPACT);
    return s ? s : strdup("(undumpable)");
}

const char *
it_task_status(natsConnection *nc, const char *task_id, char *out, size_t outlen)
{
    json_t *j = it_admin_get(nc, task_id);
    if (!j)
        snprintf(out, outlen, "error");
    else if (it_json_int(j, "error.code") == 404)
        snprintf(out, outlen, "absent");
    else if (it_json_str(j, "status"))
        snprintf(out, outlen, "%s", it_json_str(j, "status"));
    else
        snprintf(out, outlen, "error");
    json_decref(j);
    return out;
}

json_t *
it_wait_task_status(natsConnection *nc, const char *task_id, const char *want, int timeout_ms,
                    bool *ok)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    json_t *j = NULL;
    *ok = false;
    for (;;) {
        json_decref(j);
        j = it_admin_get(nc, task_id);
        const char *st = it_json_str(j, "status");
        if (st && strcmp(st, want) == 0) {
            *ok = true;
            return j;
        }
        if (sc_now_mono_ms() >= deadline)
            return j;
        it_sleep_ms(20);
    }
}

/* ---- recorder ---------------------------------------------------------------------------------- */

struct it_recorder {
    natsConnection *nc;
    natsSubscription *sub;
    pthread_mutex_t mu;
    struct it_rec_msg *msgs;
    size_t cap, count, dropped, seen, next_slot;
    bool keep_body;
    struct it_step *plan;
    size_t nplan;
    struct it_step dflt;
    bool has_plan;
};

/* xstrdup_n() copies n bytes into a new NUL-terminated string (aborts on OOM). */
static char *
xstrdup_n(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* reply_body() renders the worker's reply for step into buf; returns its length. */
static int
reply_body(const struct it_step *st, char *buf, size_t cap)
{
    if (st->act == IT_ACT_OK)
        return snprintf(buf, cap, "{\"ok\":true}");
    if (st->act == IT_ACT_EMPTY)
        return 0;
    json_t *j = json_pack("{s:b,s:s}", "ok", 0, "error", st->error ? st->error : "failed");
    if (st->error_type)
        json_object_set_new(j, "error_type", json_string(st->error_type));
    char *s = json_dumps(j, JSON_COMPACT);
    int n = snprintf(buf, cap, "%s", s ? s : "{\"ok\":false}");
    free(s);
    json_decref(j);
    return n;
}

/* on_msg() is the nats.c callback: record, then act per the plan. Runs on a nats.c thread. */
static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    struct it_recorder *r = closure;
    int64_t at = sc_now_mono_ms();

    pthread_mutex_lock(&r->mu);
    size_t idx = r->seen++;
    struct it_step st = {.act = IT_ACT_RECORD};
    if (r->has_plan)
        st = idx < r->nplan ? r->plan[idx] : r->dflt;
    bool keep = r->next_slot < r->cap;
    size_t slot = r->next_slot;
    if (keep)
        r->next_slot++;
    else
        r->dropped++;
    pthread_mutex_unlock(&r->mu);

    struct it_rec_msg m = {0};
    const char *reply = natsMsg_GetReply(msg);
    if (keep) {
        const char *subj = natsMsg_GetSubject(msg);
        m.subject = xstrdup_n(subj, strlen(subj));
        m.reply = reply ? xstrdup_n(reply, strlen(reply)) : NULL;
        m.len = (size_t)natsMsg_GetDataLength(msg);
        m.hash = it_fnv1a(natsMsg_GetData(msg), m.len);
        if (r->keep_body)
            m.body = xstrdup_n(natsMsg_GetData(msg), m.len);
        const char **keys = NULL;
        int nkeys = 0;
        if (natsMsgHeader_Keys(msg, &keys, &nkeys) == NATS_OK) {
            for (int i = 0; i < nkeys && m.nhdr < IT_MAX_HDRS; i++) {
                const char *v = NULL;
                if (natsMsgHeader_Get(msg, keys[i], &v) != NATS_OK || !v)
                    v = "";
                m.hdr_name[m.nhdr] = xstrdup_n(keys[i], strlen(keys[i]));
                m.hdr_val[m.nhdr] = xstrdup_n(v, strlen(v));
                m.nhdr++;
            }
            free((void *)keys);
        }
        m.at_mono = at;
        m.act = st.act;
    }

    if (reply && *reply && st.act != IT_ACT_RECORD && st.act != IT_ACT_SILENT) {
        char body[1024];
        int n = reply_body(&st, body, sizeof body);
        if (n < 0 || (size_t)n >= sizeof body)
            n = 0;
        m.replied_mono = sc_now_mono_ms();
        natsConnection_Publish(nc, reply, body, n);
    }

    if (keep) {
        pthread_mutex_lock(&r->mu);
        r->msgs[slot] = m;
        /* Slots are handed out in order under the lock; count covers only finished ones. */
        while (r->count < r->cap && r->msgs[r->count].subject)
            r->count++;
        pthread_mutex_unlock(&r->mu);
    }
    natsMsg_Destroy(msg);
}

struct it_recorder *
it_recorder_new(natsConnection *nc, const char *subject, const char *queue, size_t cap,
                bool keep_body)
{
    struct it_recorder *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->msgs = calloc(cap ? cap : 1, sizeof *r->msgs);
    if (!r->msgs) {
        free(r);
        return NULL;
    }
    r->nc = nc;
    r->cap = cap;
    r->keep_body = keep_body;
    pthread_mutex_init(&r->mu, NULL);
    natsStatus s;
    if (queue)
        s = natsConnection_QueueSubscribe(&r->sub, nc, subject, queue, on_msg, r);
    else
        s = natsConnection_Subscribe(&r->sub, nc, subject, on_msg, r);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(r->sub, -1, -1);
    /* Make sure the server knows the subscription before the test goes on. */
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(nc, IT_REQUEST_MS);
    if (s != NATS_OK) {
        fprintf(stderr, "harness: subscribe %s: %s\n", subject, natsStatus_GetText(s));
        it_recorder_free(r);
        return NULL;
    }
    return r;
}

void
it_recorder_set_plan(struct it_recorder *r, const struct it_step *plan, size_t n,
                     struct it_step dflt)
{
    struct it_step *copy = NULL;
    if (n) {
        copy = malloc(n * sizeof *copy);
        if (!copy)
            abort();
        memcpy(copy, plan, n * sizeof *copy);
    }
    pthread_mutex_lock(&r->mu);
    free(r->plan);
    r->plan = copy;
    r->nplan = n;
    r->dflt = dflt;
    r->has_plan = true;
    pthread_mutex_unlock(&r->mu);
}

void
it_recorder_free(struct it_recorder *r)
{
    if (!r)
        return;
    if (r->sub) {
        /* Drain so that no callback runs any more once it completes. */
        if (natsSubscription_Drain(r->sub) != NATS_OK ||
            natsSubscription_WaitForDrainCompletion(r->sub, 5000) != NATS_OK) {
            natsSubscription_Unsubscribe(r->sub);
            it_sleep_ms(100);
        }
        natsSubscription_Destroy(r->sub);
    }
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->cap; i++) {
        struct it_rec_msg *m = &r->msgs[i];
        free(m->subject);
        free(m->reply);
        free(m->body);
        for (int h = 0; h < m->nhdr; h++) {
            free(m->hdr_name[h]);
            free(m->hdr_val[h]);
        }
    }
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_destroy(&r->mu);
    free(r->msgs);
    free(r->plan);
    free(r);
}

size_t
it_rec_count(struct it_recorder *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->count;
    pthread_mutex_unlock(&r->mu);
    return n;
}

const struct it_rec_msg *
it_rec_get(struct it_recorder *r, size_t i)
{
    return &r->msgs[i];
}

size_t
it_rec_dropped(struct it_recorder *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->dropped;
    pthread_mutex_unlock(&r->mu);
    return n;
}

const char *
it_rec_header(const struct it_rec_msg *m, const char *name)
{
    for (int i = 0; i < m->nhdr; i++) {
        if (strcasecmp(m->hdr_name[i], name) == 0)
            return m->hdr_val[i];
    }
    return NULL;
}

bool
it_rec_wait(struct it_recorder *r, size_t n, int timeout_ms)
{
    int64_t deadline = sc_now_mono_ms() + timeout_ms;
    while (it_rec_count(r) < n) {
        if (sc_now_mono_ms() >= deadline)
            return false;
        it_sleep_ms(5);
    }
    return true;
}

size_t
it_rec_count_matching(struct it_recorder *r, const char *subject, const char *hdr_name,
                      const char *hdr_val)
{
    size_t n = it_rec_count(r), c = 0;
    for (size_t i = 0; i < n; i++) {
        const struct it_rec_msg *m = &r->msgs[i];
        if (subject && strcmp(m->subject, subject) != 0)
            continue;
        if (hdr_name) {
            const char *v = it_rec_header(m, hdr_name);
            if (!v || (hdr_val && strcmp(v, hdr_val) != 0))
                continue;
        }
        c++;
    }
    return c;
}

/* ---- JetStream: streams, consumers, a worker that always fails (advisory tests) ------------- */

void
it_js_add_stream(jsCtx *js, const char *name, const char *subject)
{
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    const char *subjects[1] = {subject};
    jsErrCode je = 0;
    natsStatus s;

    jsStreamConfig_Init(&sc);
    sc.Name = name;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    s = js_AddStream(&si, js, &sc, NULL, &je);
    IT_CHECK(s == NATS_OK, "create stream %s: %s (%d)", name, natsStatus_GetText(s), (int)je);
    jsStreamInfo_Destroy(si);
}

natsSubscription *
it_js_add_worker(jsCtx *js, const char *stream, const char *subject, const char *durable,
                 int64_t max_deliver)
{
    jsConsumerConfig cc;
    jsConsumerInfo *ci = NULL;
    jsSubOptions so;
    natsSubscription *sub = NULL;
    jsErrCode je = 0;
    natsStatus s;

    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.AckPolicy = js_AckExplicit;
    cc.MaxDeliver = max_deliver;
    cc.AckWait = 30LL * 1000 * 1000 * 1000;
    s = js_AddConsumer(&ci, js, stream, &cc, NULL, &je);
    IT_CHECK(s == NATS_OK, "create consumer %s: %s (%d)", durable, natsStatus_GetText(s), (int)je);
    jsConsumerInfo_Destroy(ci);
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Consumer = durable;
    s = js_PullSubscribe(&sub, js, subject, durable, NULL, &so, &je);
    IT_CHECK(s == NATS_OK, "pull subscribe %s: %s (%d)", durable, natsStatus_GetText(s), (int)je);
    return sub;
}

void
it_js_publish(jsCtx *js, const void *body, size_t len, const char *subject, const char *trace,
              const char *msgid)
{
    natsMsg *m = NULL;
    jsPubAck *pa = NULL;
    jsErrCode je = 0;

    IT_CHECK(natsMsg_Create(&m, subject, NULL, body, (int)len) == NATS_OK, "message");
    natsMsgHeader_Set(m, "X-Trace", trace);
    if (msgid)
        natsMsgHeader_Set(m, "Nats-Msg-Id", msgid);
    IT_CHECK(js_PublishMsg(&pa, js, m, NULL, &je) == NATS_OK, "publish to %s (%d)", subject, (int)je);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
}

int
it_js_fail_worker(natsConnection *nc, natsSubscription *sub, int max, const char *term_reason)
{
    int deliveries = 0, idle = 0;

    for (int i = 0; i < 100 && idle < 3; i++) {
        natsMsgList list = {0};
        jsErrCode je = 0;
        natsStatus s = natsSubscription_Fetch(&list, sub, 1, 300, &je);
        if (s != NATS_OK || list.Count == 0) {
            idle += deliveries >= max || term_reason;
            natsMsgList_Destroy(&list);
            continue;
        }
        for (int k = 0; k < list.Count; k++) {
            deliveries++;
            if (term_reason) {
                char body[256];
                int n = snprintf(body, sizeof body, "+TERM %s", term_reason);
                natsConnection_Publish(nc, natsMsg_GetReply(list.Msgs[k]), body, n);
                natsConnection_Flush(nc);
            } else {
                natsMsg_Nak(list.Msgs[k], NULL);
            }
        }
        natsMsgList_Destroy(&list);
    }
    return deliveries;
}


/* ---- a tiny HTTP client ------------------------------------------------------------------------ */

#define IT_HTTP_RESP_MAX (8u << 20)

void
it_http_resp_free(struct it_http_resp *r)
{
    free(r->body);
    r->body = NULL;
}

int
it_http_read(int fd, struct it_http_resp *r)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1), *sep;
    int rc = -1;

    memset(r, 0, sizeof *r);
    if (!buf)
        return -1;
    for (;;) {
        ssize_t k;
        if (n == cap) {
            char *nb;
            if (cap >= IT_HTTP_RESP_MAX)
                goto done;
            nb = realloc(buf, cap * 2 + 1);
            if (!nb)
                goto done;
            buf = nb;
            cap *= 2;
        }
        k = read(fd, buf + n, cap - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && n > 0)
            break; /* a reset after the answer */
        if (k < 0)
            goto done;
        if (k == 0)
            break;
        n += (size_t)k;
    }
    buf[n] = '\0';
    sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1)
        goto done;
    snprintf(r->head, sizeof r->head, "%.*s", (int)(sep - buf), buf);
    r->len = n - (size_t)(sep + 4 - buf);
    r->body = malloc(r->len + 1);
    if (!r->body)
        goto done;
    memcpy(r->body, sep + 4, r->len);
    r->body[r->len] = '\0';
    rc = 0;
done:
    if (rc)
        r->status = 0;
    free(buf);
    return rc;
}

int
it_http_get(int port, const char *path, struct it_http_resp *r)
{
    return it_http_request(port, "GET", path, r);
}

int
it_http_request(int port, const char *method, const char *path, struct it_http_resp *r)
{
    return it_http(port, method, path, "User-Agent: dlq-it\r\nContent-Length: 0\r\n", NULL, r);
}

/* ---- a receiver: a tiny HTTP server on a thread that records every request ------------------ */

/* Copies the value of header name (e.g. "\r\nAuthorization:") in head into out. */
static void
it_header_value(const char *head, const char *name, char *out, size_t outlen)
{
    const char *h = strcasestr(head, name);
    char fmt[32];

    out[0] = '\0';
    if (!h)
        return;
    snprintf(fmt, sizeof fmt, " %%%zu[^\r\n]", outlen - 1);
    sscanf(h + strlen(name), fmt, out);
}

/* Reads one request from c (headers, then Content-Length bytes) and answers it. */
static void
it_recv_serve(struct it_recv *h, int c)
{
    char buf[65536], *eoh = NULL, *cl, resp[256];
    size_t n = 0, need = 0;
    struct it_recv_req q;
    struct timeval tv = {5, 0};
    int status;

    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    memset(&q, 0, sizeof q);
    while (n < sizeof buf - 1) {
        ssize_t k = read(c, buf + n, sizeof buf - 1 - n);
        if (k <= 0)
            return;
        n += (size_t)k;
        buf[n] = '\0';
        if (!eoh && (eoh = strstr(buf, "\r\n\r\n")) != NULL) {
            cl = strcasestr(buf, "\r\nContent-Length:");
            need = (size_t)(eoh + 4 - buf) + (cl ? strtoul(cl + 17, NULL, 10) : 0);
        }
        if (eoh && n >= need)
            break;
    }
    if (!eoh)
        return;
    sscanf(buf, "%15s %255s", q.method, q.path);
    *eoh = '\0';
    it_header_value(buf, "\r\nAuthorization:", q.auth, sizeof q.auth);
    it_header_value(buf, "\r\nContent-Type:", q.ctype, sizeof q.ctype);
    q.body = strndup(eoh + 4, n - (size_t)(eoh + 4 - buf));
    pthread_mutex_lock(&h->mu);
    status = (int)h->n < h->fail_first ? h->fail_status : 200;
    q.answered = status;
    if (h->n < IT_RECV_MAX)
        h->reqs[h->n++] = q;
    else
        free(q.body);
    pthread_mutex_unlock(&h->mu);
    snprintf(resp, sizeof resp,
             "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
             "Connection: close\r\n\r\n{}",
             status, status == 200 ? "OK" : "Failed");
    (void)!write(c, resp, strlen(resp));
}

static void *
it_recv_main(void *arg)
{
    struct it_recv *h = arg;

    while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd p = {h->fd, POLLIN, 0};
        int c;
        if (poll(&p, 1, 100) <= 0)
            continue;
        c = accept(h->fd, NULL, NULL);
        if (c < 0)
            continue;
        it_recv_serve(h, c);
        close(c);
    }
    return NULL;
}

int
it_recv_start(struct it_recv *h, int fail_first, int fail_status)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;

    memset(h, 0, sizeof *h);
    h->fail_first = fail_first;
    h->fail_status = fail_status;
    pthread_mutex_init(&h->mu, NULL);
    h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h->fd < 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(h->fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(h->fd, 16) != 0 ||
        getsockname(h->fd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    h->port = ntohs(sa.sin_port);
    return pthread_create(&h->thr, NULL, it_recv_main, h) == 0 ? 0 : -1;
}

void
it_recv_stop(struct it_recv *h)
{
    __atomic_store_n(&h->stop, 1, __ATOMIC_RELEASE);
    pthread_join(h->thr, NULL);
    close(h->fd);
    for (size_t i = 0; i < h->n; i++)
        free(h->reqs[i].body);
    pthread_mutex_destroy(&h->mu);
}


/* ---- shared test scaffolding ------------------------------------------------------------------ */

int
it_dial(const char *addr, int port)
{
    struct sockaddr_in sa;
    struct timeval tv = {10, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int
it_http(int port, const char *method, const char *path, const char *extra, const char *body,
        struct it_http_resp *r)
{
    char head[2048], cl[128] = "";
    size_t len = body ? strlen(body) : 0;
    int fd = it_dial("127.0.0.1", port), rc;

    memset(r, 0, sizeof *r);
    if (fd < 0)
        return -1;
    if (body)
        snprintf(cl, sizeof cl, "Content-Type: application/json\r\nContent-Length: %zu\r\n", len);
    snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s%s\r\n",
             method, path, port, cl, extra ? extra : "");
    if (send(fd, head, strlen(head), MSG_NOSIGNAL) < 0 || (len && send(fd, body, len, MSG_NOSIGNAL) < 0)) {
        close(fd);
        return -1;
    }
    rc = it_http_read(fd, r);
    close(fd);
    return rc;
}

char *
it_metrics(int port)
{
    struct it_http_resp r;
    char *body = NULL;

    if (it_http_get(port, "/metrics", &r) == 0 && r.status == 200)
        body = strdup(r.body);
    it_http_resp_free(&r);
    return body;
}

struct it_env *
it_env_start_http(const char *name, const char *const *extra, int *port)
{
    return it_env_start_on(name, "127.0.0.1", extra, port);
}

struct it_env *
it_env_start_on(const char *name, const char *addr, const char *const *extra, int *port)
{
    char listen_flag[96];
    const char *flags[48];
    size_t n = 0;

    *port = it_free_port();
    if (*port <= 0)
        return NULL;
    snprintf(listen_flag, sizeof listen_flag, "http.listen=%s:%d", addr, *port);
    flags[n++] = listen_flag;
    for (size_t i = 0; extra && extra[i] && n < SC_ARRAY_LEN(flags) - 1; i++)
        flags[n++] = extra[i];
    flags[n] = NULL;
    return it_env_start(name, flags);
}

void
it_cluster_two_members(struct it_cluster *cl, struct it_daemon sc[2], natsConnection **nc,
                       const char *dir, const char *name, int http_port, const char *extra)
{
    char sdir[IT_PATH_MAX + 16], listen_flag[64] = "http.listen=";
    int64_t until;

    IT_CHECK(it_cluster_start(cl, dir, 1) == 0, "a nats-server with JetStream starts");
    *nc = it_connect(cl->urls, name);
    IT_CHECK(*nc != NULL, "%s connects", name);
    if (http_port > 0)
        snprintf(listen_flag, sizeof listen_flag, "http.listen=127.0.0.1:%d", http_port);
    for (int i = 0; i < 2; i++) {
        char id[32];
        const char *flags[] = {"cluster.enabled=true", "cluster.replicas=1", id,
                               "store.backend=jetstream", "store.jetstream.replicas=1",
                               "ingest.mode=jetstream", "ingest.stream_replicas=1",
                               "log.level=info", i == 0 ? listen_flag : "http.listen=", extra, NULL};
        snprintf(id, sizeof id, "cluster.member_id=s%d", i);
        snprintf(sdir, sizeof sdir, "%s/s%d", dir, i);
        IT_CHECK(mkdir(sdir, 0755) == 0 || errno == EEXIST, "mkdir %s", sdir);
        IT_CHECK(it_daemon_start(&sc[i], sdir, cl->urls, flags) == 0, "sidecar s%d starts", i);
    }
    until = sc_now_mono_ms() + IT_WAIT_MS * 2;
    for (;;) {
        json_t *a = it_request_json(*nc, "dlq.admin.stats", NULL, IT_REQUEST_MS);
        json_t *ms = json_object_get(a, "members");
        /* Balanced (16 each of the 32): no partition moves while the test counts. */
        bool balanced = a && it_json_int(a, "members_answered") == 2 && json_array_size(ms) == 2 &&
                        json_array_size(json_object_get(json_array_get(ms, 0), "partitions")) == 16 &&
                        json_array_size(json_object_get(json_array_get(ms, 1), "partitions")) == 16 &&
                        json_array_size(json_object_get(a, "partitions_missing")) == 0;
        json_decref(a);
        if (balanced)
            break;
        IT_CHECK(sc_now_mono_ms() < until, "the two members did not share the partitions 16/16 in time");
        it_sleep_ms(200);
    }
}

void
it_cluster_seed_tasks(natsConnection *nc, int n)
{
    int64_t until;

    for (int i = 0; i < n; i++) {
        char body[160];
        snprintf(body, sizeof body,
                 "{\"task_id\":\"c-%02d\",\"task\":{\"n\":%d},\"error\":\"ValueError: bad\"}", i, i);
        IT_CHECK(natsConnection_PublishString(nc, "dlq.failed.orders", body) == NATS_OK, "publish");
    }
    until = sc_now_mono_ms() + IT_WAIT_MS;
    for (;;) {
        json_t *a = it_request_json(nc, "dlq.admin.stats", NULL, IT_REQUEST_MS);
        bool all = a && it_json_int(a, "queue_size") == n && it_json_int(a, "members_answered") == 2;
        json_decref(a);
        if (all)
            break;
        IT_CHECK(sc_now_mono_ms() < until, "%d tasks did not arrive", n);
        it_sleep_ms(100);
    }
}

pid_t
it_spawn_io(char *const argv[], const char *in_path, int out_fd, const char *out_path)
{
    pid_t parent = getpid(), pid = fork();

    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int in = open(in_path ? in_path : "/dev/null", O_RDONLY);
    int out = out_fd >= 0 ? out_fd : open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0)
        _exit(127);
    dup2(in, 0);
    dup2(out, 1);
    if (out_fd >= 0)
        dup2(out, 2);
    else
        dup2(open("/dev/null", O_WRONLY), 2);
    execv(argv[0], argv);
    _exit(127);
}

int
it_wait_exit(pid_t pid, int timeout_ms)
{
    int64_t end = sc_now_mono_ms() + timeout_ms;
    int st;

    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0 || sc_now_mono_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        it_sleep_ms(20);
    }
}

int
it_run_dlqctl(const char *url, const char *in_path, const char *out_path, const char *const *args)
{
    char *argv[32];
    size_t n = 0;

    argv[n++] = (char *)DLQCTL_BIN;
    argv[n++] = (char *)"--server";
    argv[n++] = (char *)url;
    for (size_t i = 0; args[i] && n < SC_ARRAY_LEN(argv) - 1; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    pid_t pid = it_spawn_io(argv, in_path, -1, out_path);
    return pid < 0 ? -1 : it_wait_exit(pid, 60000);
}

char *
it_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *s = calloc(1, 1);
    size_t n = 0;
    char buf[4096];
    size_t k;

    if (!f)
        return s;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
        s = realloc(s, n + k + 1);
        memcpy(s + n, buf, k);
        n += k;
        s[n] = '\0';
    }
    fclose(f);
    return s;
}
