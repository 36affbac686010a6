/* serving.h - which partitions this member serves now (cluster mode): the one question ingest, dispatch, forwarding and the store ask. */
#ifndef DLQ_SIDECAR_SERVING_H
#define DLQ_SIDECAR_SERVING_H

#include <stdbool.h>
#include <stdint.h>

struct sc_daemon;

/*
 * takeover.c marks a partition served once its claim is over (its tasks
 * loaded, its fence in place) and unmarks it when it is lost or given
 * back. sc_serving() tells whether partition p's failures are taken and its
 * tasks dispatched and written here at now_mono: marked, and the lease
 * valid (sc_cluster_may_dispatch(): false at the lease's local deadline
 * even before the loop hears of the loss). Always true outside cluster
 * mode. sc_serving_held() tells whether p is still this member's to write
 * (served, or being given back: its last writes must still land) and its
 * lease is held. sc_serving_open() makes the table when d->cluster exists
 * (never fails: aborts on OOM); sc_serving_close() frees it, NULL-safe.
 * sc_serving_mark() sets p's mark: SC_SERVING_NONE, _HELD or _ON. Loop
 * thread (open and close: main).
 */
enum { SC_SERVING_NONE = 0, SC_SERVING_HELD = 1, SC_SERVING_ON = 2 };
void sc_serving_open(struct sc_daemon *d);
void sc_serving_close(struct sc_daemon *d);
void sc_serving_mark(struct sc_daemon *d, uint32_t p, int mark);
bool sc_serving(const struct sc_daemon *d, uint32_t p, int64_t now_mono);
bool sc_serving_held(const struct sc_daemon *d, uint32_t p);

/*
 * sc_serving_list() appends the partitions served at now_mono
 * (sc_serving() true) to out, in order, separated by commas ("0,3,6";
 * nothing when none): for JSON arrays and service metadata. Cluster mode
 * only (outside it: nothing). Loop thread.
 */
struct sc_buf;
void sc_serving_list(const struct sc_daemon *d, int64_t now_mono, struct sc_buf *out);

#endif
