/* handback.h - cluster mode: the outcome of an attempt sent for a partition this member no longer holds goes to the partition's owner, so the attempt is settled there and not sent again. */
#ifndef DLQ_SIDECAR_HANDBACK_H
#define DLQ_SIDECAR_HANDBACK_H

#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#include "common.h"

struct sc_daemon;
struct sc_handback; /* opaque: d->handback, NULL outside cluster mode */

/*
 * Why (docs/cluster.md, "Attempts of a lost lease"): a member whose lease
 * on p ran out while it was alive (a loaded host, a pause) forgets p, but
 * the attempts it sent still reach workers and their replies still come to
 * its inbox. The next owner loads such a task as "retrying" and sends the
 * attempt again only at its deadline (last_attempt_at + retry.timeout_ms,
 * dlq_machine_restore()); meanwhile the reply, handed back here, settles it.
 *
 * 1. sc_handback_keep(d, p) remembers, before p's tasks are forgotten, every
 *    attempt of p in flight here (flight slot, token, task id, attempt)
 *    until its deadline plus lease_ms;
 * 2. sc_handback_reply(d, m) takes a reply that came to this member's inbox
 *    for such an attempt (or for an attempt whose partition's lease is no
 *    longer valid here) and publishes a copy (its body and headers, plus
 *    Dlq-Fwd-Task-Id / Dlq-Fwd-Attempt / Dlq-Fwd-Stored) to
 *    <prefix>.cluster.outcome.<p>, asking again every 250 ms until an owner
 *    answers or the copy's deadline (lease_ms * 2 + 2 s) passes;
 * 3. every member subscribes <prefix>.cluster.outcome.*; only the member
 *    serving p with a valid lease answers: it applies the outcome
 *    (sc_dispatch_apply_reply()) when the task is there, pending or
 *    retrying, with that attempt next or out, and answers "+OK" either way
 *    (a task already past that attempt: the copy is stale, dropped).
 * 4. replies applied here are kept too (a copy, at most 16,384) until
 *    every write of their partition has been answered under a valid lease:
 *    a partition lost before that hands them back the same way (the owner
 *    applies those its loaded state has not passed);
 * 5. notes: when p is forgotten (lost or given back) its tasks held here
 *    pending (not sent) go back as lines "<retry_count> <next_retry_at>
 *    <id>" (header Dlq-Fwd-Kind: notes, up to 64 KiB a message); the owner
 *    lets each go at once (dlq_machine_release_due()), which it otherwise
 *    holds for retry.timeout_ms after loading it due.
 * A reply that finds no owner in time is dropped: the owner sends the
 * attempt again at its deadline (same Nats-Msg-Id), as after a kill -9.
 *
 * sc_handback_open() sets it up when d->cluster exists (else SC_OK,
 * nothing): the two subscriptions and the sweep. SC_EIO with err set when
 * a subscription or the timer cannot be made. Main thread, after
 * sc_conn_new(), before the loop. sc_handback_close() frees everything;
 * NULL-safe; main thread after the loop, before sc_conn_free().
 * sc_handback_keep(): loop thread, p < cluster.partitions.
 * sc_handback_reply(): loop thread, m is a message of the reply inbox
 * (still owned by the caller); returns true when it took the reply (the
 * caller must not apply it), false when the caller handles it as usual
 * (always outside cluster mode).
 */
sc_status sc_handback_open(struct sc_daemon *d, char *err, size_t errlen);
void sc_handback_close(struct sc_daemon *d);
void sc_handback_keep(struct sc_daemon *d, uint32_t p);
bool sc_handback_reply(struct sc_daemon *d, natsMsg *m);

/*
 * Counters for stats (takeover.json): replies handed back, applied here
 * for another member, dropped unanswered; messages of notes handed back,
 * tasks they let go at once here.
 */
struct sc_handback_stats {
    uint64_t handed, applied, dropped, notes, released;
};
struct sc_handback_stats sc_handback_get_stats(const struct sc_daemon *d);

#endif
