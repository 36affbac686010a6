// example_test.go - the README's examples as go doc examples, compiled with the tests.

package dlq_test

import (
	"context"
	"errors"
	"log"
	"time"

	dlq "github.com/dlq-sidecar/dlq-sidecar/clients/go"
	"github.com/nats-io/nats.go"
)

type Order struct {
	ID    string `msgpack:"id"`
	Total int64  `msgpack:"total"`
}

func chargeOrder(ctx context.Context, o Order) error { return errors.New("db timed out after 5 s") }

// A service reports a failed task and waits for the sidecar's acknowledgement.
func ExampleReport() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	order := Order{ID: "order-42", Total: 1999}
	ack, err := dlq.Report(context.Background(), nc, dlq.Failure{
		Service: "orders", TaskID: order.ID, Task: order,
		ErrorType: "TimeoutError", Error: "db timed out after 5 s",
		MaxRetries: dlq.Retries(5), Metadata: map[string]any{"tenant": "acme"},
	})
	var bad *dlq.EnvelopeError
	switch {
	case errors.As(err, &bad):
		log.Fatalf("not sent: %s is wrong: %s", bad.Field, bad.Message)
	case err != nil:
		log.Fatal(err) // *dlq.RefusedError (400, 503: resend later), dlq.ErrNoSidecar, a timeout
	case ack.Durable:
		log.Printf("held by stream %s as #%d", ack.Stream, ack.Seq)
	default:
		log.Printf("task %s is %s, first retry at %v", ack.TaskID, ack.Status, ack.NextRetryAt)
	}
}

// A service runs its work in Protect: an error or a panic is reported with its Go type name.
func ExampleProtect() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	order := Order{ID: "order-42", Total: 1999}
	err = dlq.Protect(ctx, func() error { return chargeOrder(ctx, order) },
		nc, dlq.Failure{Service: "orders", TaskID: order.ID, Task: order})
	if err != nil {
		log.Printf("charge failed, and was handed to the dead-letter queue: %v", err)
	}
}

// A worker serves the retries of the orders service until its context ends.
func ExampleServe() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx, stop := context.WithTimeout(context.Background(), time.Hour)
	defer stop()
	err = dlq.Serve(ctx, nc, "dlq.retry.orders", func(ctx context.Context, r *dlq.Retry) error {
		var o Order
		if err := r.Decode(&o); err != nil {
			return dlq.Fail("ValueError", "attempt %d of %s: %v", r.Attempt, r.TaskID, err)
		}
		return chargeOrder(ctx, o)
	}, dlq.WithQueue("orders-workers"))
	if err != nil {
		log.Fatal(err)
	}
}
