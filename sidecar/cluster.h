/* cluster.h - cluster mode (DESIGN section 18, docs/cluster.md): this member's record and partition leases in a JetStream KV bucket, kept on a thread of its own, and the hooks that tell the daemon which partitions it owns. */
#ifndef DLQ_SIDECAR_CLUSTER_H
#define DLQ_SIDECAR_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct sc_daemon;
struct sc_cluster; /* opaque: d->cluster, NULL outside cluster mode */

/*
 * Who holds what, and when (docs/cluster.md has the argument):
 *  - The bucket (cluster.bucket) holds lease.<p> = the owner's member id;
 *    the server ages a key out cluster.lease_ms after it stored it.
 *  - The cluster thread makes every KV call (they block, DESIGN section 13)
 *    and hands each batch of answers to the loop; it decides nothing.
 *  - The loop owns the lease table: it plans, applies answers, calls the
 *    hooks and answers sc_cluster_may_dispatch(). A partition is this
 *    member's from gained() until lost() or sc_cluster_released(), and
 *    only while sc_cluster_may_dispatch() says true: that turns false at
 *    the lease's local deadline even when the loop has not run lost() yet
 *    (a stalled renewal, a process that was stopped). A hold that runs out
 *    is suspended() first (with those hooks set): not this member's to
 *    dispatch, its tasks kept, until resumed() (the key was still this
 *    member's: the partition is again from then) or lost().
 */
struct sc_cluster_hooks {
    /* p is now this member's; lease_revision is the fencing token to fold into store versions. */
    void (*gained)(void *ctx, uint32_t p, uint64_t lease_revision);
    /* p is no longer this member's: stop dispatching its tasks at once (it may already be another's soon). */
    void (*lost)(void *ctx, uint32_t p);
    /*
     * Another member wants p: stop taking new work for it, let what is in
     * flight finish, then call sc_cluster_released(d, p). Until then the
     * lease is renewed. NULL: answered at once.
     */
    void (*release_requested)(void *ctx, uint32_t p);
    void *ctx;
    /*
     * p's hold ran out here (not renewed in time) but the lease may still
     * be this member's: stop dispatching its tasks at once and take no new
     * failures of it, but keep its tasks. Exactly one of resumed(p) (a
     * renewal at the last revision went through: nobody held p meanwhile,
     * go on with what is held) or lost(p) (forget it) follows, within
     * about lease_ms. Both NULL: a hold that runs out is lost() at once.
     */
    void (*suspended)(void *ctx, uint32_t p);
    void (*resumed)(void *ctx, uint32_t p, uint64_t lease_revision);
};

/* Counters and state of the cluster member, read together (sc_cluster_get_stats()). */
struct sc_cluster_stats {
    bool enabled;              /* cluster mode is on */
    bool ready;                /* the bucket is set up and the last read of it succeeded */
    const char *member_id;     /* this member's id (lives as long as the cluster); "" when off */
    uint32_t partitions;       /* cluster.partitions */
    size_t members;            /* live members in the last read of the bucket (this one included) */
    size_t partitions_owned;   /* partitions valid here now */
    uint64_t lease_renewals;   /* renewals the bucket accepted */
    uint64_t lease_failures;   /* renewals refused, failed or unanswered, and holds that ran out */
    uint64_t gained, lost, released; /* partitions gained, lost, given back since start */
    uint64_t suspended, resumed; /* holds that ran out here and were suspended; of them resumed (struct cl_part in cluster.c) */
};

/*
 * sc_cluster_open() starts cluster mode when d->cfg->cluster_enabled (else
 * returns SC_OK and leaves d->cluster NULL): picks the member id
 * (cluster.member_id, or <hostname>-<pid>-<random>), sets up the bucket
 * when NATS is reachable now (created when missing: history 1, TTL
 * lease_ms, cluster.replicas), starts the cluster thread and the renew
 * timer on d->base. Needs d->conn. Returns SC_OK (d->cluster owns it all;
 * a bucket that could not be set up yet, NATS or JetStream away, is tried
 * again on every renew round, logged and shown as ready false), SC_EINVAL
 * when the existing bucket's TTL is not cluster.lease_ms (err names the
 * key: start-up must stop with exit 2), SC_EIO when the thread cannot
 * start. Main thread, before the loop runs.
 */
sc_status sc_cluster_open(struct sc_daemon *d, char *err, size_t errlen);

/*
 * sc_cluster_set_hooks() installs h (copied) for the hooks above; without
 * it (or with NULL members) gains and losses are only counted and logged,
 * and a release is answered at once. Loop thread (or main before the loop).
 */
void sc_cluster_set_hooks(struct sc_daemon *d, const struct sc_cluster_hooks *h);

/*
 * sc_cluster_released() answers release_requested(p): p is quiesced, give
 * the lease back (deleted with its revision, so that a newer owner's is
 * never removed). From this call on p is not this member's (no lost()
 * follows). A no-op for a partition not held, or outside cluster mode.
 * Loop thread.
 */
void sc_cluster_released(struct sc_daemon *d, uint32_t p);

/*
 * sc_cluster_may_dispatch() tells whether this member may schedule,
 * dispatch and write partition p's tasks at now_mono (sc_now_mono_ms()):
 * it holds the lease, its local deadline has not passed and p is not
 * being given back. Always true outside cluster mode. Loop thread.
 * sc_cluster_lease_revision() is p's lease revision while held (the last
 * one the bucket answered), 0 otherwise or outside cluster mode.
 */
bool sc_cluster_may_dispatch(const struct sc_daemon *d, uint32_t p, int64_t now_mono);
uint64_t sc_cluster_lease_revision(const struct sc_daemon *d, uint32_t p);

/*
 * sc_cluster_is_member() tells whether id (NUL-terminated) is a live member
 * in the last read of the bucket (this member always is). False outside
 * cluster mode. Loop thread.
 */
bool sc_cluster_is_member(const struct sc_daemon *d, const char *id);

/* sc_cluster_get_stats() reads the counters (enabled false, all zero, outside cluster mode). Loop thread. */
struct sc_cluster_stats sc_cluster_get_stats(const struct sc_daemon *d);

/*
 * sc_cluster_json() writes "cluster": {enabled, member_id, members,
 * partitions_owned, lease_renewals, lease_failures, ...} into w; with
 * detail (health) also the partitions owned and each lease (partition,
 * revision, since_mono_ms, valid_until_mono_ms, with the member's
 * mono_ms now: CLOCK_MONOTONIC, comparable between processes of one
 * host, for tests). Loop thread.
 */
struct sc_jw;
void sc_cluster_json(const struct sc_daemon *d, struct sc_jw *w, bool detail);

/*
 * sc_cluster_close() gives back every lease held (the loop no longer
 * dispatches: deleted with their revisions, and this member's record, so
 * that the others take over at once instead of after lease_ms), stops and
 * joins the thread and frees d->cluster (set to NULL). Waits at most about
 * 5 s for the bucket. NULL-safe. Call it before sc_conn_free(). Main
 * thread, after the loop.
 */
void sc_cluster_close(struct sc_daemon *d);

#endif
