// Package dlq is the Go client of dlq-sidecar, the dead-letter-queue daemon
// for NATS: services report their failed tasks to it, and workers serve the
// retries it sends back (DESIGN sections 4-6 and 20 of the project).
//
// A service reports a failure with [Report], or wraps its work in [Protect],
// which reports the error (or panic) of the function it runs:
//
//	err := dlq.Protect(ctx, func() error { return chargeOrder(ctx, order) },
//		nc, dlq.Failure{Service: "orders", TaskID: order.ID, Task: order})
//
// A worker serves a retry subject with [Serve]: its handler gets the task's
// exact bytes and the retry's headers, and its result is replied to the
// sidecar as the outcome of the attempt:
//
//	err := dlq.Serve(ctx, nc, "dlq.retry.orders", func(ctx context.Context, r *dlq.Retry) error {
//		var o Order
//		if err := r.Decode(&o); err != nil {
//			return err
//		}
//		return chargeOrder(ctx, o)
//	})
//
// Envelopes are checked against the contract before anything is published
// (an [*EnvelopeError] names the broken field), and are encoded the way the
// shared test vectors of tests/vectors say: keys in the contract's order,
// every value in its smallest MessagePack form.
package dlq
