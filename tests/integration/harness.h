/* harness.h - integration harness: a real nats-server and the real daemon as child processes, plus NATS clients that play service, worker and operator. */
#ifndef DLQ_IT_HARNESS_H
#define DLQ_IT_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <nats/nats.h>

#include "common.h"

#ifndef DLQ_SIDECAR_BIN
#error "DLQ_SIDECAR_BIN must name the daemon binary (set by tests/integration/CMakeLists.txt)"
#endif
#ifndef NATS_SERVER_BIN
#error "NATS_SERVER_BIN must name the nats-server binary (set by tests/integration/CMakeLists.txt)"
#endif

/* Generous waits: the suite must pass on a loaded 2-core machine. */
#define IT_WAIT_MS 20000       /* waiting for something that should happen soon */
#define IT_REQUEST_MS 5000     /* one request/reply round trip */
#define IT_PATH_MAX 512

/* ---- processes ------------------------------------------------------------------------------ */

/*
 * A nats-server child. port is chosen once by it_server_start() (0 on entry
 * means "pick a free one") and kept across it_server_restart() so that
 * clients reconnect to the same URL.
 */
struct it_server {
    pid_t pid;            /* 0 when not running */
    int port;
    bool jetstream;       /* -js -sd <dir>/js */
    char conf[IT_PATH_MAX]; /* -c <conf> when not empty (see it_server_start_conf()) */
    char url[64];         /* "nats://127.0.0.1:PORT" */
    char dir[IT_PATH_MAX];
    char log[IT_PATH_MAX];
};

/*
 * it_free_port() binds 127.0.0.1:0, reads back the port the kernel chose and
 * closes the socket. Returns the port, or -1 (errno set). Racy by nature;
 * good enough for a test that starts its server right away.
 */
int it_free_port(void);

/* ---- a tiny blocking HTTP/1.x client for the tests (the test thread only) ---- */

/* One HTTP response as read by it_http_read(). */
struct it_http_resp {
    int status;      /* 0 when the request failed */
    char head[8192]; /* status line and headers */
    char *body;      /* malloc'ed, NUL-terminated (it_http_resp_free()) */
    size_t len;
};

/*
 * it_http_read() reads the response on fd to EOF (a reset after some bytes
 * ends it too) into r: status, head and body, at most 8 MiB. Returns 0, or
 * -1 (r->status 0) when nothing that parses as a response came. The caller
 * closes fd and frees r with it_http_resp_free().
 */
int it_http_read(int fd, struct it_http_resp *r);
void it_http_resp_free(struct it_http_resp *r);

/*
 * it_http_request() sends "<method> path" without a body (HTTP/1.1,
 * Connection: close, 10 s timeouts) to 127.0.0.1:port and reads the answer
 * into r (it_http_read()). Returns 0 or -1. it_http_get() is the GET.
 */
int it_http_request(int port, const char *method, const char *path, struct it_http_resp *r);
int it_http_get(int port, const char *path, struct it_http_resp *r);

/* it_server_bin() is the path of the nats-server binary the tests start ($DLQ_TEST_NATS_SERVER, else the build's). */
const char *it_server_bin(void);

/*
 * it_server_start() starts nats-server on 127.0.0.1 in dir (its log goes to
 * dir/nats.log; with s->jetstream its store goes to dir/js), picking a free
 * port when s->port is 0, and waits up to IT_WAIT_MS until it accepts TCP.
 * Returns 0, or -1 with a message on stderr (the child is then killed).
 */
int it_server_start(struct it_server *s, const char *dir, bool jetstream);

/*
 * it_server_start_conf() is it_server_start() (no JetStream) with
 * "-c conf": a configuration file (authorization blocks, for example; the
 * command line's -a and -p still win). The server reads the environment of
 * the test process, so "$VAR" in conf resolves from setenv(). s must be
 * zeroed or come from a previous start. Errors as it_server_start().
 */
int it_server_start_conf(struct it_server *s, const char *dir, const char *conf);

/*
 * it_server_stop() sends sig (SIGTERM for a clean stop, SIGKILL for a
 * crash) and reaps the child, with a SIGKILL fallback after 10 s. Safe when
 * not running. Returns 0.
 */
int it_server_stop(struct it_server *s, int sig);

/* it_server_restart() starts the server again on the same port. Errors as it_server_start(). */
int it_server_restart(struct it_server *s);

/*
 * A daemon child: DLQ_SIDECAR_BIN with one flag per config key, stdout and
 * stderr to log. exit_status is what it_daemon_stop() saw (-1 before).
 */
struct it_daemon {
    pid_t pid;
    int exit_status;      /* exit code, 128+signal when killed, -1 unknown */
    char log[IT_PATH_MAX];
};

/*
 * it_daemon_start() runs the daemon with argv = the suite's defaults
 * (it_default_flags) overridden and extended by extra, a NULL-terminated
 * list of "key=value" strings (YAML key paths as in config/config.h; a
 * value may be empty), with DLQ_* removed from the environment. It does not
 * wait for readiness (see it_daemon_wait_ready()). Returns 0 or -1.
 */
int it_daemon_start(struct it_daemon *d, const char *dir, const char *nats_url,
                    const char *const *extra);

/*
 * it_daemon_wait_ready() asks dlq.admin.health on nc until it answers
 * {"status":"ok"} or timeout_ms pass, failing fast when the child exits.
 * Returns 0 when ready, -1 otherwise (the log tail is printed).
 */
int it_daemon_wait_ready(struct it_daemon *d, natsConnection *nc, int timeout_ms);

/* it_daemon_alive() tells whether the child still runs (reaping it when it exited). */
bool it_daemon_alive(struct it_daemon *d);

/*
 * it_daemon_wait_exit() waits up to timeout_ms for the child to exit by
 * itself (no signal is sent: after a SIGTERM a second one means "stop
 * now"), reaping it into d->exit_status. True when it exited. Test thread.
 */
bool it_daemon_wait_exit(struct it_daemon *d, int timeout_ms);

/*
 * it_daemon_stop() sends SIGTERM, waits up to 10 s, then SIGKILLs. Returns
 * the exit status (0 for a clean stop, 128+signal when killed by one) and
 * stores it in d->exit_status; 0 when it was not running.
 */
int it_daemon_stop(struct it_daemon *d);

/* it_print_tail() prints the last `lines` lines of the file at path to stderr under a title. */
void it_print_tail(const char *title, const char *path, int lines);

/* it_pid_rss_kb() returns VmRSS of pid in kB from /proc/PID/status, or -1. */
long it_pid_rss_kb(pid_t pid);

/* ---- a nats-server cluster -------------------------------------------------------------------- */

/*
 * An N-node nats-server cluster on loopback: each node has its own client
 * port, route port, server_name (n0, n1, ...), JetStream store dir
 * (<dir>/n<i>/js) and config file (<dir>/n<i>.conf, routes to every node,
 * cluster name "dlq-it"; a single node has no cluster block). urls lists
 * every node's client URL, comma-separated (nats.url of a sidecar; a test
 * client connects to one node's url).
 */
#define IT_CLUSTER_MAX 5
struct it_cluster {
    size_t n;
    struct it_server node[IT_CLUSTER_MAX];
    int route_port[IT_CLUSTER_MAX];
    char dir[IT_PATH_MAX];
    char urls[IT_CLUSTER_MAX * 32];
};

/*
 * it_cluster_start() starts n (1..IT_CLUSTER_MAX) nodes in dir and waits
 * (up to IT_WAIT_MS * 2) until JetStream answers with a meta leader (an
 * account info request succeeds through a client of node 0). Returns 0, or
 * -1 with a message on stderr (every node started is stopped).
 */
int it_cluster_start(struct it_cluster *c, const char *dir, size_t n);

/*
 * it_cluster_wait_js() waits up to timeout_ms until JetStream answers an
 * account info request through a client connected to url. Returns 0 or -1.
 */
int it_cluster_wait_js(const char *url, int timeout_ms);

/* it_cluster_stop_node() stops node i with sig (SIGTERM, SIGKILL). it_cluster_stop() stops every node. */
void it_cluster_stop_node(struct it_cluster *c, size_t i, int sig);
void it_cluster_stop(struct it_cluster *c);

/*
 * it_gather_json() sends body (NULL: empty) as a request on subject and
 * collects every JSON reply that arrives within wait_ms (or until max
 * came) into out[0..max): an admin subject that every instance answers
 * (health) gives one reply per live instance. Returns the count; the
 * caller json_decref()s each.
 */
size_t it_gather_json(natsConnection *nc, const char *subject, const char *body, int wait_ms,
                      json_t **out, size_t max);

/*
 * it_gather_json_in() is it_gather_json() with the replies collected on
 * "<inbox_prefix>.gather.…" (a client whose permissions allow only its own
 * inbox prefix, docs/nats-auth.conf). Same returns; any thread.
 */
size_t it_gather_json_in(natsConnection *nc, const char *inbox_prefix, const char *subject,
                         const char *body, int wait_ms, json_t **out, size_t max);

/* ---- the per-test environment ---------------------------------------------------------------- */

/*
 * One test's world: a temp dir, a server, a daemon and an operator/service
 * client connection nc (reconnecting forever). Set passed = true as the
 * test body's last statement: it_env_stop() keeps the dir and prints the
 * logs when it is false.
 */
#define IT_ENV_MAX_CONNS 8
#define IT_ENV_MAX_RECS 16
struct it_recorder;
struct it_env {
    const char *name;
    char dir[IT_PATH_MAX];
    struct it_server srv;
    struct it_daemon dmn;
    natsConnection *nc;
    bool passed;
    /* Owned by the env and released by it_env_stop(), even when a test aborts. */
    natsConnection *conns[IT_ENV_MAX_CONNS];
    struct it_recorder *recs[IT_ENV_MAX_RECS];
};

/*
 * it_env_start() creates the temp dir, starts nats-server, the daemon with
 * extra flags (see it_daemon_start()), connects nc and waits until the
 * daemon answers health. Returns a new env or NULL (everything started is
 * stopped again).
 */
struct it_env *it_env_start(const char *name, const char *const *extra);

/*
 * it_env_start_js() is it_env_start() with nats-server run with JetStream
 * (-js, its store in the env's dir/js), for tests that capture subjects in
 * streams. Errors as it_env_start().
 */
struct it_env *it_env_start_js(const char *name, const char *const *extra);

/*
 * it_env_stop() closes the clients, stops the daemon (a non-zero exit
 * status after SIGTERM is reported and makes it return -1), stops the
 * server, and removes the temp dir when the test passed. NULL is a no-op
 * returning 0. Use it as the cmocka teardown via it_teardown().
 */
int it_env_stop(struct it_env *e);

/* cmocka teardown: it_env_stop(*state). */
int it_teardown(void **state);

/*
 * it_env_connect() opens another client connection (it_connect()) owned by
 * e: a worker's or a spy's. Returns it or NULL.
 */
natsConnection *it_env_connect(struct it_env *e, const char *name);

/*
 * it_env_recorder() is it_recorder_new() with the recorder owned by e
 * (freed by it_env_stop() before the connections close). Returns it or NULL.
 */
struct it_recorder *it_env_recorder(struct it_env *e, natsConnection *nc, const char *subject,
                                    const char *queue, size_t cap, bool keep_body);

/* it_env_recorder_free() frees r now (a worker that goes away) and forgets it. */
void it_env_recorder_free(struct it_env *e, struct it_recorder *r);

/* ---- NATS clients ---------------------------------------------------------------------------- */

/*
 * it_connect() opens a connection to url (one URL, or a cluster's
 * comma-separated list: the server pool) that reconnects forever every
 * 100 ms and buffers while disconnected. Returns the connection or NULL.
 */
natsConnection *it_connect(const char *url, const char *name);

/* What a failure envelope holds; NULL / -1 / 0 fields are left out. */
struct it_envelope {
    const char *task_id;
    const void *task_mp;      /* the task value, already MessagePack; NULL: a small default map */
    size_t task_len;
    const char *error;
    const char *error_type;
    const char *error_category;
    const char *retry_policy;
    const char *retry_subject;
    int max_retries;          /* -1: absent */
    int64_t failed_at_ms;     /* 0: absent; else sent as an int (ms since epoch) */
};

/* it_envelope_init() sets every field to "absent". */
void it_envelope_init(struct it_envelope *env);

/*
 * it_envelope_pack() encodes env as a MessagePack map into out (reset
 * first; out's cap must hold it). Returns 0 or -1.
 */
int it_envelope_pack(const struct it_envelope *env, struct sc_buf *out);

/*
 * it_default_task() writes the MessagePack of the default task value
 * {"order":42,"items":[1,2,3],"blob":bin(0x00 0xff 0x10),"note":"héllo"}
 * into out (reset first). Returns 0 or -1.
 */
int it_default_task(struct sc_buf *out);

/* it_publish_envelope() packs env and publishes it on subject (no reply). Returns 0 or -1. */
int it_publish_envelope(natsConnection *nc, const char *subject, const struct it_envelope *env);

/*
 * it_request_envelope() packs env, sends it as a request on subject and
 * parses the ingest acknowledgement. Returns the JSON reply (caller
 * json_decref()s) or NULL on timeout/parse error.
 */
json_t *it_request_envelope(natsConnection *nc, const char *subject,
                            const struct it_envelope *env);

/*
 * it_request_json() sends body (NULL: empty) on subject and parses the reply
 * as JSON. Returns a new reference or NULL (timeout, no responders, not
 * JSON). timeout_ms bounds the wait.
 */
json_t *it_request_json(natsConnection *nc, const char *subject, const char *body,
                        int timeout_ms);

/*
 * it_request_all() sends body (NULL: empty) on subject with a fresh inbox as
 * the reply subject and collects the JSON replies of every responder (the
 * admin subjects have no queue group: each sidecar answers) until want came
 * or timeout_ms passed; replies that are not JSON are skipped. Returns a
 * new JSON array (possibly empty), or NULL when the request could not be
 * sent.
 */
json_t *it_request_all(natsConnection *nc, const char *subject, const char *body, size_t want,
                       int timeout_ms);

/* it_request_bytes() is it_request_json() with a binary body of len bytes. */
json_t *it_request_bytes(natsConnection *nc, const char *subject, const void *body, size_t len,
                         int timeout_ms);

/* it_admin_stats() asks dlq.admin.stats. Returns a new reference or NULL. */
json_t *it_admin_stats(natsConnection *nc);

/* it_admin_get() asks dlq.admin.get for task_id. Returns a new reference or NULL. */
json_t *it_admin_get(natsConnection *nc, const char *task_id);

/*
 * it_admin_task() asks dlq.admin.<verb> with {"task_id": task_id} (retry,
 * archive, get ...). Returns a new reference or NULL.
 */
json_t *it_admin_task(natsConnection *nc, const char *verb, const char *task_id);

/* it_admin_health_ok() tells whether dlq.admin.health answers {"status":"ok"}. */
bool it_admin_health_ok(natsConnection *nc);

/*
 * it_json_int() reads the integer at a dotted path ("lifetime_stats.invalid")
 * of obj. Returns it, or INT64_MIN when absent or not a number.
 */
/*
 * it_json_get() walks a dotted path of object keys ("lifetime_stats.invalid")
 * and returns the value there (borrowed from obj; a JSON null counts as
 * present), or NULL when a key is missing. Any thread.
 */
const json_t *it_json_get(const json_t *obj, const char *path);
int64_t it_json_int(const json_t *obj, const char *path);

/* it_json_str() reads the string at a dotted path; NULL when absent or not a string (borrowed). */
const char *it_json_str(const json_t *obj, const char *path);

/* it_json_dump() returns a malloc'ed compact dump for messages ("(null)" when obj is NULL). */
char *it_json_dump(const json_t *obj);

/*
 * it_task_status() returns the task's status into out (outlen bytes):
 * "pending", "completed", ... or "absent" for a 404, "error" when the
 * request failed. Returns out.
 */
const char *it_task_status(natsConnection *nc, const char *task_id, char *out, size_t outlen);

/*
 * it_wait_task_status() polls dlq.admin.get every 20 ms until the task has
 * status want or timeout_ms pass. Returns the last get reply (new reference,
 * may be NULL) and sets *ok.
 */
json_t *it_wait_task_status(natsConnection *nc, const char *task_id, const char *want,
                            int timeout_ms, bool *ok);

/* ---- recorder / worker ------------------------------------------------------------------------ */

/* What a worker does with one retry message. */
typedef enum {
    IT_ACT_RECORD = 0, /* just record (a plain listener) */
    IT_ACT_OK,         /* reply {"ok":true} */
    IT_ACT_EMPTY,      /* reply with an empty body (success too) */
    IT_ACT_FAIL,       /* reply {"ok":false,"error":<error>,"error_type":<error_type>} */
    IT_ACT_SILENT,     /* never answer */
} it_action;

struct it_step {
    it_action act;
    const char *error;      /* IT_ACT_FAIL; static or outliving the recorder */
    const char *error_type; /* IT_ACT_FAIL; may be NULL */
};

#define IT_MAX_HDRS 16

/*
 * One received message. Written once by the callback before the count that
 * covers it is published under the lock, then never changed: once
 * it_rec_count() returned n, entries [0, n) may be read without the lock.
 */
struct it_rec_msg {
    char *subject;
    char *reply;                  /* NULL when none */
    int nhdr;
    char *hdr_name[IT_MAX_HDRS];
    char *hdr_val[IT_MAX_HDRS];
    char *body;                   /* NULL unless keep_body */
    size_t len;
    uint64_t hash;                /* FNV-1a 64 of the body */
    int64_t at_mono;              /* arrival, sc_now_mono_ms() in the callback */
    int64_t replied_mono;         /* when the reply was published; 0 none */
    it_action act;                /* what was done */
};

struct it_recorder; /* opaque */

/*
 * it_recorder_new() subscribes on nc to subject (queue group when queue is
 * non-NULL) with no pending limits, recording up to cap messages (later
 * ones are counted in it_rec_dropped() only). keep_body copies bodies.
 * The recorder acts as a worker when given a plan: the i-th message
 * (0-based, all subjects) follows plan[i], later ones dflt. A recorder
 * without plan only records. Returns NULL on failure.
 */
struct it_recorder *it_recorder_new(natsConnection *nc, const char *subject, const char *queue,
                                    size_t cap, bool keep_body);

/* it_recorder_set_plan() sets the reply plan (copied; strings borrowed). Any thread. */
void it_recorder_set_plan(struct it_recorder *r, const struct it_step *plan, size_t n,
                          struct it_step dflt);

/* it_recorder_free() unsubscribes and frees everything; NULL is a no-op. */
void it_recorder_free(struct it_recorder *r);

/* it_rec_count() returns how many messages were recorded so far (see struct it_rec_msg). */
size_t it_rec_count(struct it_recorder *r);

/* it_rec_get() returns entry i (< it_rec_count()). */
const struct it_rec_msg *it_rec_get(struct it_recorder *r, size_t i);

/* it_rec_dropped() counts messages that arrived past cap. */
size_t it_rec_dropped(struct it_recorder *r);

/* it_rec_header() returns the value of header name in m, or NULL. */
const char *it_rec_header(const struct it_rec_msg *m, const char *name);

/*
 * it_rec_wait() waits until at least n messages were recorded or timeout_ms
 * passed. Returns true when they were.
 */
bool it_rec_wait(struct it_recorder *r, size_t n, int timeout_ms);

/*
 * it_rec_count_matching() counts recorded messages whose subject equals
 * subject (NULL: any) and, when hdr_name is non-NULL, whose header hdr_name
 * equals hdr_val (hdr_val NULL: merely present).
 */
size_t it_rec_count_matching(struct it_recorder *r, const char *subject, const char *hdr_name,
                             const char *hdr_val);

/* ---- misc ------------------------------------------------------------------------------------- */

/* it_sleep_ms() sleeps ms milliseconds (restarting on EINTR). */
void it_sleep_ms(int64_t ms);

/* it_fnv1a() hashes len bytes (FNV-1a 64; the length is mixed in so "" and "\0" differ). */
uint64_t it_fnv1a(const void *p, size_t len);

/* it_rand_u64() is a seeded xorshift for test data (not thread-safe; main thread). */
void it_rand_seed(uint64_t seed);
uint64_t it_rand_u64(void);

/* it_unique_id() writes "<prefix>-<pid>-<counter>-<mono ms>" into out (outlen bytes). */
const char *it_unique_id(const char *prefix, char *out, size_t outlen);

/*
 * IT_CHECK(cond, fmt, ...) is assert_true() with a formatted message printed
 * first, so that a failure says what was expected and what came.
 */
#define IT_CHECK(cond, ...)                                                                   \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "CHECK FAILED %s:%d: %s\n  ", __FILE__, __LINE__, #cond);        \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fprintf(stderr, "\n");                                                            \
            fail();                                                                           \
        }                                                                                     \
    } while (0)

/* ---- JetStream: streams, consumers, a worker that always fails ---------------------------- */

/* it_js_add_stream() creates stream name over subject (limits retention, file storage); fails the test otherwise. */
void it_js_add_stream(jsCtx *js, const char *name, const char *subject);

/*
 * it_js_add_worker() creates the durable pull consumer durable on stream
 * (explicit acks, ack wait 30 s, max_deliver deliveries, -1: no limit) and
 * returns its pull subscription on subject (the caller destroys it).
 */
natsSubscription *it_js_add_worker(jsCtx *js, const char *stream, const char *subject,
                                   const char *durable, int64_t max_deliver);

/*
 * it_js_publish() publishes len bytes of body to subject through JetStream
 * with header X-Trace: trace and, when msgid is set, Nats-Msg-Id.
 */
void it_js_publish(jsCtx *js, const void *body, size_t len, const char *subject, const char *trace,
                   const char *msgid);

/*
 * it_js_fail_worker() is a worker that always fails: it fetches and naks
 * every delivery of sub (or, with term_reason, answers "+TERM <reason>")
 * until max deliveries were made, then keeps a pull request open a few
 * times so that the server finds the message out of deliveries and sends
 * its advisory. Returns the deliveries seen.
 */
int it_js_fail_worker(natsConnection *nc, natsSubscription *sub, int max, const char *term_reason);

/* ---- a receiver: a tiny HTTP server on a thread that records every request (webhook tests) ---- */

#include <pthread.h>

#define IT_RECV_MAX 64

struct it_recv_req {
    char method[16];
    char path[256];   /* with the query */
    char auth[256];   /* the Authorization header's value, "" when absent */
    char ctype[128];
    char *body;
    int answered;     /* status sent back */
};

struct it_recv {
    int fd;
    int port;
    int fail_first;   /* answer the first N requests with fail_status */
    int fail_status;
    int stop;         /* __atomic */
    pthread_t thr;
    pthread_mutex_t mu;
    struct it_recv_req reqs[IT_RECV_MAX];
    size_t n;
};

/*
 * it_recv_start() listens on 127.0.0.1 (a port the kernel picks, in
 * h->port) and serves one request per connection on a thread of its own:
 * the first fail_first requests are answered fail_status (a 5xx for a
 * retry test), the rest 200 "{}"; each is recorded in h->reqs (at most
 * IT_RECV_MAX; read them under h->mu). Returns 0 or -1. it_recv_stop()
 * stops the thread and frees what it recorded. Test thread.
 */
int it_recv_start(struct it_recv *h, int fail_first, int fail_status);
void it_recv_stop(struct it_recv *h);

/* ---- shared test scaffolding: HTTP, /metrics, a two-member cluster, dlqctl ------------------- */

/* it_dial() connects a blocking TCP socket to addr:port (IPv4 text) with 10 s timeouts; the fd, or -1. */
int it_dial(const char *addr, int port);

/*
 * it_http() sends method path to 127.0.0.1:port with body (NULL: no body,
 * no Content-Length; "" an empty one) as application/json and the extra
 * header lines (NULL or "Name: v\r\n...") and reads the answer into r
 * (it_http_read(); the caller frees it with it_http_resp_free()). Returns
 * 0, or -1 when nothing could be sent or read (r->status 0). Any thread.
 */
int it_http(int port, const char *method, const char *path, const char *extra, const char *body,
            struct it_http_resp *r);

/* it_metrics() GETs /metrics on 127.0.0.1:port; returns the body (malloc'ed, caller frees) or NULL. */
char *it_metrics(int port);

/*
 * it_env_start_http() is it_env_start() with the daemon's HTTP listener on
 * 127.0.0.1 at a free port (in *port) before the extra flags (at most 46).
 * Same returns and owner as it_env_start(); test thread.
 */
struct it_env *it_env_start_http(const char *name, const char *const *extra, int *port);

/* it_env_start_on() is it_env_start_http() with the listener on addr (IPv4 text: "0.0.0.0" for every interface). */
struct it_env *it_env_start_on(const char *name, const char *addr, const char *const *extra, int *port);

/*
 * it_cluster_two_members() starts, in dir (an existing directory), a
 * one-node JetStream server (into *cl), connects *nc to it (named name)
 * and two sidecars s0 and s1 in cluster mode (into sc[0], sc[1]; s0 with
 * its HTTP listener on http_port, 0: none; extra, NULL or one more
 * "key=value" for both), then waits (IT_WAIT_MS * 2) until both members
 * answer stats and own 16 of the 32 partitions each, so that nothing
 * moves while a test counts. Fails the test (IT_CHECK) otherwise; the
 * caller stops what was started (it_daemon_stop(), it_cluster_stop()).
 */
void it_cluster_two_members(struct it_cluster *cl, struct it_daemon sc[2], natsConnection **nc,
                            const char *dir, const char *name, int http_port, const char *extra);

/*
 * it_cluster_seed_tasks() publishes n failures "c-00".. on dlq.failed.orders
 * (task {"n":i}, a ValueError) and waits (IT_WAIT_MS) until stats of both
 * members count n. Fails the test (IT_CHECK) otherwise. Test thread.
 */
void it_cluster_seed_tasks(natsConnection *nc, int n);

/*
 * it_spawn_io() starts argv (argv[0] a path) with stdin from in_path (NULL:
 * /dev/null) and stdout and stderr to out_fd (-1: stdout to out_path,
 * created, stderr to /dev/null). The child dies with the test. Returns its
 * pid, or -1. it_wait_exit() waits up to timeout_ms for it and returns its
 * exit code (128+signal), or -1 (then it is killed). Test thread.
 */
pid_t it_spawn_io(char *const argv[], const char *in_path, int out_fd, const char *out_path);
int it_wait_exit(pid_t pid, int timeout_ms);

/*
 * it_run_dlqctl() runs dlqctl --server url with args (NULL-terminated, at
 * most 28), stdin from in_path (NULL: /dev/null), stdout to out_path; waits
 * up to 60 s. Returns its exit code, or -1 (could not start, or killed).
 */
int it_run_dlqctl(const char *url, const char *in_path, const char *out_path, const char *const *args);

/* it_slurp() reads the file at path into a malloc'ed NUL-terminated string ("" when unreadable). */
char *it_slurp(const char *path);

#endif
