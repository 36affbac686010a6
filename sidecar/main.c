/* main.c - dlq-sidecar's entry point: configuration, exit codes, and the daemon's lifetime. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "config.h"
#include "log.h"
#include "prefault.h"
#include "sidecar.h"

extern char **environ;

/*
 * How far the heap's end runs ahead of what is in use, mapped by the
 * prefaulter's thread (common/prefault.h): 8 MiB is about 40 ms of ingest at
 * full speed, and at most 8 bytes a task with 1,000,000 stored.
 */
#define HEAP_AHEAD_BYTES ((size_t)8 << 20)

struct args {
    int argc;
    char **argv;
};

static sc_status
reload(void *ctx, struct config *out, char *err, size_t errlen)
{
    struct args *a = ctx;

    return config_load(out, a->argc, a->argv, environ, NULL, err, errlen);
}

int
main(int argc, char **argv)
{
    struct config cfg;
    struct config_cli cli;
    struct sc_daemon *d = NULL;
    struct sc_prefault *pf = NULL;
    struct args a = {argc, argv};
    char err[1024] = "";
    sc_status s, pfs;
    int rc;

    memset(&cli, 0, sizeof(cli));
    config_init(&cfg);
    s = config_load(&cfg, argc, argv, environ, &cli, err, sizeof(err));
    if (cli.help) {
        config_usage(stdout, "dlq-sidecar");
        config_destroy(&cfg);
        return 0;
    }
    if (cli.version) {
        printf("dlq-sidecar %s (nats.c %s)\n", DLQ_VERSION, nats_GetVersion());
        config_destroy(&cfg);
        return 0;
    }
    if (s) {
        fprintf(stderr, "dlq-sidecar: configuration error: %s\n", err);
        config_destroy(&cfg);
        return 2;
    }
    if (cli.print_config) {
        config_print(&cfg, stdout);
        config_destroy(&cfg);
        return 0;
    }
    if (cfg.saw_retry_interval_seconds)
        fprintf(stderr, "dlq-sidecar: warning: retry_interval_seconds is deprecated and ignored; "
                        "the timer wheel (timer.tick_ms) replaces polling\n");
    pfs = sc_prefault_start(HEAP_AHEAD_BYTES, &pf); /* without it the loop maps its own pages */
    s = sc_daemon_new(&cfg, &d, err, sizeof(err));
    if (s) {
        char shown[sizeof(err) + 64];
        config_redact(err, strlen(err), shown, sizeof(shown)); /* it may quote a URL */
        fprintf(stderr, "dlq-sidecar: %s\n", shown);
        config_destroy(&cfg);
        nats_Close();
        sc_prefault_stop(pf);
        return s == SC_EINVAL ? 2 : 1;
    }
    if (pfs) /* the log is set up by sc_daemon_new() */
        sc_log(SC_LOG_INFO, "heap prefaulter off: new tasks' pages are mapped by the loop itself",
               "reason", pfs == SC_EUNAVAIL ? "the kernel has no MADV_POPULATE_WRITE (Linux 5.14+)"
                                            : sc_status_str(pfs), NULL);
    sc_daemon_set_reload(d, reload, &a);
    rc = sc_daemon_run(d);
    sc_daemon_free(d);
    config_destroy(&cfg);
    nats_Close();
    sc_prefault_stop(pf);
    return rc;
}
