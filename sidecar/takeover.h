/* takeover.h - what a member does when the cluster gives it a partition, takes one away, or asks for one back: claim and load, serve, hold, quiesce, forget. */
#ifndef DLQ_SIDECAR_TAKEOVER_H
#define DLQ_SIDECAR_TAKEOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

struct sc_daemon;
struct sc_jw;

/*
 * A partition's life on one member (docs/cluster.md, "Takeover"):
 * 1. gained (cluster.c: the lease is held): the store claims it
 *    (sc_mirror_claim(): the fence is put, so a former owner's writes are
 *    refused from then on, and its tasks are loaded back; a task that was
 *    retrying goes out again with the same attempt and Nats-Msg-Id);
 * 2. claimed: it is served: failures of it are taken here (pulled or
 *    forwarded), its due tasks dispatched while the lease is valid;
 * 3a. lost (the lease could not be renewed in time): its tasks are
 *    forgotten at once, unwritten changes and all (another member may own
 *    it already; the store refuses this member's late writes anyway), and
 *    the answers held for them go as not stored (naked);
 * 3b. release requested (another member wants it): no new failure or
 *    attempt, the attempts in flight get their outcome (at most
 *    retry.timeout_ms), its writes reach the store, then its tasks are
 *    forgotten and the lease given back (sc_cluster_released()).
 * sc_takeover_open() installs the hooks when d->cluster exists (else SC_OK,
 * nothing). Returns SC_OK, SC_EINVAL (cluster mode without a store that
 * can claim: store.backend must be jetstream; err says so). Main thread,
 * after sc_cluster_open() and sc_forward_open(). sc_takeover_close() frees
 * it; NULL-safe.
 */
sc_status sc_takeover_open(struct sc_daemon *d, char *err, size_t errlen);
/*
 * sc_takeover_check() is cluster mode's needs of cfg, checked before
 * anything is set up on the servers: SC_OK, or SC_EINVAL with err naming
 * every key that must change (start-up stops with exit 2). Any thread.
 */
struct config;
sc_status sc_takeover_check(const struct config *cfg, char *err, size_t errlen);
void sc_takeover_close(struct sc_daemon *d);

/*
 * sc_takeover_json() writes "takeover": {claiming, serving, releasing:
 * partitions in each state now; claimed, released, lost: since start; the
 * forwarding counters of forward.h} into w's open object; nothing outside
 * cluster mode. Loop thread.
 */
void sc_takeover_json(const struct sc_daemon *d, struct sc_jw *w);

#endif
