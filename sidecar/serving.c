/* serving.c - the partitions this member serves now (serving.h). */
#include <stdlib.h>

#include "cluster.h"
#include "daemon.h"
#include "serving.h"

void
sc_serving_open(struct sc_daemon *d)
{
    if (!d->cluster)
        return;
    d->serving_n = (uint32_t)d->cfg->cluster_partitions;
    d->serving = sc_xcalloc(d->serving_n, 1);
    d->part_subs = sc_xcalloc(d->serving_n, sizeof(*d->part_subs));
}

void
sc_serving_close(struct sc_daemon *d)
{
    free(d->serving);
    free(d->part_subs);
    d->serving = NULL;
    d->part_subs = NULL;
    d->serving_n = 0;
}

void
sc_serving_mark(struct sc_daemon *d, uint32_t p, int mark)
{
    if (d->serving && p < d->serving_n)
        d->serving[p] = (unsigned char)mark;
}

bool
sc_serving(const struct sc_daemon *d, uint32_t p, int64_t now_mono)
{
    if (!d->serving)
        return true;
    return p < d->serving_n && d->serving[p] == SC_SERVING_ON &&
           sc_cluster_may_dispatch(d, p, now_mono);
}

bool
sc_serving_held(const struct sc_daemon *d, uint32_t p)
{
    if (!d->serving)
        return true;
    return p < d->serving_n && d->serving[p] != SC_SERVING_NONE &&
           sc_cluster_lease_revision(d, p) != 0;
}

void
sc_serving_list(const struct sc_daemon *d, int64_t now_mono, struct sc_buf *out)
{
    bool first = true;

    for (uint32_t p = 0; d->serving && p < d->serving_n; p++) {
        if (!sc_serving(d, p, now_mono))
            continue;
        sc_buf_appendf(out, first ? "%u" : ",%u", (unsigned)p);
        first = false;
    }
}
