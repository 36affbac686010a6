/* service.c - example: a service reports a failed task to dlq-sidecar (build: cc service.c $(pkg-config --cflags --libs dlq-client); run: ./service [NATS_URL]). */
#include <stdio.h>
#include <stdlib.h>

#include <dlq_client.h>

int
main(int argc, char **argv)
{
    natsConnection *nc = NULL;
    struct dlq_client *dlq = NULL;
    struct dlq_client_error err;
    struct dlq_client_ack ack;
    static const char task[] = "\x81\xa5order\x2a"; /* the task as MessagePack: {"order": 42} */
    int rc = 1;
    /* The NATS URL: argv[1], else $NATS_URL (as nats, dlqctl and dlq-demo read it), else nats://localhost:4222. */
    const char *env = getenv("NATS_URL");
    const char *url = argc > 1 ? argv[1] : (env && *env ? env : NATS_DEFAULT_URL);

    if (natsConnection_ConnectTo(&nc, url) != NATS_OK) {
        fprintf(stderr, "service: cannot connect to NATS\n");
        return 1;
    }
    if (dlq_client_new(nc, NULL, &dlq, &err) == DLQ_CLIENT_OK) {
        /* The README's "For services". */
        struct dlq_client_failure f = {.task_id = "order-42", .task_mp = task, .task_mp_len = sizeof(task) - 1,
                                       .error_type = "TimeoutError", .error = "db timed out after 5 s"};
        if (dlq_client_report(dlq, "orders", &f, true, &ack, &err) == DLQ_CLIENT_OK) {
            if (ack.durable)
                printf("stored in stream %s, seq %llu\n", ack.stream, (unsigned long long)ack.seq);
            else
                printf("task order-42 is %s, next retry at %s\n", ack.status,
                       ack.next_retry_at[0] ? ack.next_retry_at : "(none)");
            rc = 0;
        }
    }
    if (rc)
        fprintf(stderr, "service: %s\n", err.message);
    dlq_client_free(dlq);
    natsConnection_Destroy(nc);
    return rc;
}
