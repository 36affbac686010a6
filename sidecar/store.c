/* store.c - mirrors task changes into the configured store; the memory backend keeps nothing else. */
#include "sidecar-internal.h"

void
sc_store_changed(struct sc_daemon *d, struct sc_task *t)
{
    (void)d;
    t->version++;
}

void
sc_store_removed(struct sc_daemon *d, struct sc_task *t)
{
    (void)d;
    (void)t;
}
