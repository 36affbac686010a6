/* worker.c - example: a worker serves dlq.retry.orders and answers each retry (build: cc worker.c $(pkg-config --cflags --libs dlq-client); run: ./worker [NATS_URL] [SECONDS]). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <dlq_client.h>

/* Does the task again (here: any task of more than 100 bytes fails). */
static int
retry_order(const struct dlq_client_retry *r, struct dlq_client_reply *reply, void *closure)
{
    (void)closure;
    printf("retry %d/%d of %s: %zu bytes\n", r->attempt, r->max_retries, r->task_id, r->task_len);
    if (r->task_len > 100)
        return dlq_client_reply_fail(reply, "ValueError", "order too large: %zu bytes", r->task_len);
    return DLQ_CLIENT_RETRY_OK;
}

int
main(int argc, char **argv)
{
    natsConnection *nc = NULL;
    struct dlq_client_worker *w = NULL;
    struct dlq_client_error err;
    /* The NATS URL: argv[1], else $NATS_URL (as nats, dlqctl and dlq-demo read it), else nats://localhost:4222. */
    const char *env = getenv("NATS_URL");
    const char *url = argc > 1 ? argv[1] : (env && *env ? env : NATS_DEFAULT_URL);

    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per retry, also when stdout is a file or a pipe */
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK) {
        fprintf(stderr, "worker: cannot connect to NATS\n");
        return 1;
    }
    /* The line of the README's "For workers" (with retry_order above). */
    if (dlq_client_serve(nc, "dlq.retry.orders", "orders-workers", retry_order, NULL, &w, &err)) {
        fprintf(stderr, "worker: %s\n", err.message);
        natsConnection_Destroy(nc);
        return 1;
    }
    sleep(argc > 2 ? (unsigned)atoi(argv[2]) : 3600);
    dlq_client_worker_free(w);
    natsConnection_Destroy(nc);
    return 0;
}
