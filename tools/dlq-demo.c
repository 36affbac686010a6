/* dlq-demo.c - a tiny service and worker for the README demo: publish a failure, serve its retries. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>
#include <nats/nats.h>

static volatile sig_atomic_t stop;

/* on_signal() asks the worker loop to stop. */
static void
on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: dlq-demo fail   [-s URL] [-I PREFIX] [-S SERVICE] [-i TASK_ID] [-e ERROR]\n"
            "                       [-t ERROR_TYPE] [-r MAX_RETRIES] [-p POLICY]\n"
            "       dlq-demo worker [-s URL] [-j SUBJECT] [-q QUEUE] [-f FAILS]\n"
            "\n"
            "fail    publishes one MessagePack failure envelope on dlq.failed.SERVICE as a\n"
            "        request and prints the answer: the sidecar's acknowledgement (ingest.mode\n"
            "        core) or the stream's PubAck (jetstream); exits 1 when it is an error\n"
            "        (default SERVICE orders, ERROR \"connection refused\").\n"
            "worker  subscribes to SUBJECT (default dlq.retry.>) in QUEUE (default workers),\n"
            "        prints one line per retry (subject, Dlq-Task-Id, Dlq-Attempt,\n"
            "        Dlq-Error-Category, payload bytes, the answer) and replies {\"ok\":false,...}\n"
            "        to the first FAILS attempts of a task (by Dlq-Attempt; default 1), {\"ok\":true} afterwards.\n"
            "-s URL  NATS server ($NATS_URL, default nats://127.0.0.1:4222).\n"
            "-I PREFIX  prefix of this client's reply inboxes ($NATS_INBOX_PREFIX, default _INBOX;\n"
            "        with docs/nats-auth.conf a service uses _INBOX_service).\n");
}

/* pack_kv() packs one string key and string value. */
static void
pack_kv(msgpack_packer *pk, const char *k, const char *v)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
    msgpack_pack_str(pk, strlen(v));
    msgpack_pack_str_body(pk, v, strlen(v));
}

/*
 * demo_fail() publishes one failure envelope and prints the ingest ack.
 * Returns the process exit code: 0 when the sidecar accepted it.
 */
static int
demo_fail(natsConnection *nc, const char *service, const char *task_id, const char *error,
          const char *error_type, int max_retries, const char *policy)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char subject[256], idbuf[64];
    natsMsg *reply = NULL;
    int rc = 1;

    if (!task_id) {
        snprintf(idbuf, sizeof idbuf, "demo-%ld", (long)getpid());
        task_id = idbuf;
    }
    snprintf(subject, sizeof subject, "dlq.failed.%s", service);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3 + (error_type != NULL) + (max_retries >= 0) + (policy != NULL));
    pack_kv(&pk, "task_id", task_id);
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "task", 4);
    msgpack_pack_map(&pk, 2); /* the task: {"order": 42, "action": "charge"} */
    pack_kv(&pk, "action", "charge");
    msgpack_pack_str(&pk, 5);
    msgpack_pack_str_body(&pk, "order", 5);
    msgpack_pack_int(&pk, 42);
    pack_kv(&pk, "error", error);
    if (error_type)
        pack_kv(&pk, "error_type", error_type);
    if (max_retries >= 0) {
        msgpack_pack_str(&pk, 11);
        msgpack_pack_str_body(&pk, "max_retries", 11);
        msgpack_pack_unsigned_int(&pk, (unsigned)max_retries);
    }
    if (policy)
        pack_kv(&pk, "retry_policy", policy);

    natsStatus s = natsConnection_Request(&reply, nc, subject, sb.data, (int)sb.size, 5000);
    if (s == NATS_OK) {
        printf("%s -> %.*s\n", subject, natsMsg_GetDataLength(reply), natsMsg_GetData(reply));
        /* core mode: {"ok":true,...}; jetstream mode: the PubAck {"stream":..,"seq":N} */
        const char *body = natsMsg_GetData(reply);
        bool puback = strstr(body, "\"stream\"") && strstr(body, "\"seq\"") &&
                      !strstr(body, "\"error\"");
        rc = strstr(body, "\"ok\":true") || puback ? 0 : 1;
    } else {
        fprintf(stderr, "dlq-demo: request on %s: %s (is dlq-sidecar running?)\n", subject,
                natsStatus_GetText(s));
    }
    natsMsg_Destroy(reply);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* on_retry() prints one retry and answers it per the fail count in closure. nats.c thread. */
static void
on_retry(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    int fails = *(const int *)closure;
    const char *id = NULL, *att = NULL, *cat = NULL;
    (void)sub;

    natsMsgHeader_Get(msg, "Dlq-Task-Id", &id);
    natsMsgHeader_Get(msg, "Dlq-Attempt", &att);
    natsMsgHeader_Get(msg, "Dlq-Error-Category", &cat);
    int attempt = att ? atoi(att) : 0;
    bool ok = attempt > fails;
    printf("%s task_id=%s attempt=%s category=%s bytes=%d -> %s\n", natsMsg_GetSubject(msg),
           id ? id : "?", att ? att : "?", cat ? cat : "?", natsMsg_GetDataLength(msg),
           ok ? "ok" : "fail");
    fflush(stdout);
    if (natsMsg_GetReply(msg)) {
        const char *body = ok ? "{\"ok\":true}"
                              : "{\"ok\":false,\"error\":\"connection refused (demo)\"}";
        natsConnection_PublishString(nc, natsMsg_GetReply(msg), body);
    }
    natsMsg_Destroy(msg);
}

/* demo_worker() serves retries until SIGINT/SIGTERM. Returns the exit code. */
static int
demo_worker(natsConnection *nc, const char *subject, const char *queue, int fails)
{
    natsSubscription *sub = NULL;
    static int fails_arg;

    fails_arg = fails;
    natsStatus s = natsConnection_QueueSubscribe(&sub, nc, subject, queue, on_retry, &fails_arg);
    if (s != NATS_OK) {
        fprintf(stderr, "dlq-demo: subscribe %s: %s\n", subject, natsStatus_GetText(s));
        return 1;
    }
    printf("serving %s in queue %s (failing the first %d attempt(s)); Ctrl-C stops\n", subject,
           queue, fails);
    fflush(stdout);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    while (!stop)
        nats_Sleep(100);
    natsSubscription_Drain(sub);
    natsSubscription_WaitForDrainCompletion(sub, 2000);
    natsSubscription_Destroy(sub);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *env_url = getenv("NATS_URL");
    const char *url = env_url && *env_url ? env_url : "nats://127.0.0.1:4222";
    const char *inbox_prefix = getenv("NATS_INBOX_PREFIX");
    const char *service = "orders", *task_id = NULL;
    const char *error = "connection refused", *error_type = NULL, *policy = NULL;
    const char *subject = "dlq.retry.>", *queue = "workers";
    int max_retries = -1, fails = 1, opt, rc = 1;
    natsConnection *nc = NULL;

    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *mode = argv[1];
    optind = 2;
    while ((opt = getopt(argc, argv, "s:I:S:i:e:t:r:p:j:q:f:h")) != -1) {
        switch (opt) {
        case 's': url = optarg; break;
        case 'I': inbox_prefix = optarg; break;
        case 'S': service = optarg; break;
        case 'i': task_id = optarg; break;
        case 'e': error = optarg; break;
        case 't': error_type = optarg; break;
        case 'r': max_retries = atoi(optarg); break;
        case 'p': policy = optarg; break;
        case 'j': subject = optarg; break;
        case 'q': queue = optarg; break;
        case 'f': fails = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (strcmp(mode, "fail") != 0 && strcmp(mode, "worker") != 0) {
        usage(stderr);
        return 2;
    }
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, url);
    if (s == NATS_OK && inbox_prefix && *inbox_prefix)
        s = natsOptions_SetCustomInboxPrefix(opts, inbox_prefix);
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, opts);
    natsOptions_Destroy(opts);
    if (s != NATS_OK) {
        fprintf(stderr, "dlq-demo: connect %s: %s\n", url, natsStatus_GetText(s));
        return 1;
    }
    if (strcmp(mode, "fail") == 0)
        rc = demo_fail(nc, service, task_id, error, error_type, max_retries, policy);
    else
        rc = demo_worker(nc, subject, queue, fails);
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
