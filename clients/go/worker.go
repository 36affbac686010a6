// worker.go - a worker's side: serve a retry subject, run the handler, reply the outcome of DESIGN section 6.

package dlq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"
)

// The headers of a retry (DESIGN section 5).
const (
	HeaderTaskID          = "Dlq-Task-Id"          // the task id
	HeaderAttempt         = "Dlq-Attempt"          // this attempt's number, 1-based
	HeaderMaxRetries      = "Dlq-Max-Retries"      // the task's budget of failed attempts
	HeaderErrorCategory   = "Dlq-Error-Category"   // the category of the last error
	HeaderOriginalSubject = "Dlq-Original-Subject" // the failure subject
	HeaderFirstFailedAt   = "Dlq-First-Failed-At"  // RFC 3339 UTC: the episode's first failure
	HeaderEpisode         = "Dlq-Episode"          // the episode id, decimal
	HeaderMsgID           = "Nats-Msg-Id"          // <task_id>:<episode>:<attempt>
)

// Retry is one retry of a task, as the sidecar sends it to a worker
// (DESIGN section 5). It belongs to the handler it is given to.
type Retry struct {
	Subject string // the retry subject it arrived on
	// Task is the task's MessagePack bytes, exactly as the service sent
	// them; see Decode and Bytes.
	Task            []byte
	TaskID          string      // Dlq-Task-Id; "" when absent
	Attempt         int         // Dlq-Attempt, 1-based; 0 when absent or unreadable
	MaxRetries      int         // Dlq-Max-Retries; -1 when absent or unreadable
	ErrorCategory   string      // Dlq-Error-Category: the category of the last error ("network" ...)
	OriginalSubject string      // Dlq-Original-Subject: the failure subject ("dlq.failed.orders")
	FirstFailedAt   time.Time   // Dlq-First-Failed-At; zero when absent or unreadable
	Episode         string      // Dlq-Episode: the episode id, decimal
	MsgID           string      // Nats-Msg-Id: "<task_id>:<episode>:<attempt>"
	Header          nats.Header // every header of the retry, for any other
	Msg             *nats.Msg   // the message itself
}

// Decode decodes the task's MessagePack bytes into v (a pointer), as
// msgpack.Unmarshal does.
func (r *Retry) Decode(v any) error {
	return msgpack.Unmarshal(r.Task, v)
}

// Bytes returns the task as opaque bytes: the content of a MessagePack bin
// (a service that reported a []byte task), or an error when the task is
// something else.
func (r *Retry) Bytes() ([]byte, error) {
	dec := msgpack.NewDecoder(bytes.NewReader(r.Task))
	b, err := dec.DecodeBytes()
	if err != nil {
		return nil, fmt.Errorf("dlq: the task is not a bin: %w", err)
	}
	return b, nil
}

// Handler does a task again. It returns nil for success (the task
// completes), or an error for a failed attempt, which the sidecar
// classifies from its message and [ErrorType] (use [Fail] to choose the
// type). A panic is recovered and replied as a failure ([PanicError]).
// ctx keeps Serve's values but is not cancelled when Serve stops, so that
// the retries delivered before are still done.
type Handler func(ctx context.Context, r *Retry) error

type serveOptions struct {
	queue string
}

// ServeOption changes how Serve subscribes.
type ServeOption func(*serveOptions)

// WithQueue sets the queue group (default "dlq-workers": each retry goes
// to one of the workers serving the subject); "" subscribes without one.
func WithQueue(queue string) ServeOption { return func(o *serveOptions) { o.queue = queue } }

// newRetry reads a retry message.
func newRetry(m *nats.Msg) *Retry {
	r := &Retry{
		Subject:         m.Subject,
		Task:            m.Data,
		TaskID:          m.Header.Get(HeaderTaskID),
		Attempt:         headerInt(m.Header, HeaderAttempt, 1, 0),
		MaxRetries:      headerInt(m.Header, HeaderMaxRetries, 0, -1),
		ErrorCategory:   m.Header.Get(HeaderErrorCategory),
		OriginalSubject: m.Header.Get(HeaderOriginalSubject),
		Episode:         m.Header.Get(HeaderEpisode),
		MsgID:           m.Header.Get(HeaderMsgID),
		Header:          m.Header,
		Msg:             m,
	}
	if r.Task == nil {
		r.Task = []byte{}
	}
	r.FirstFailedAt, _ = time.Parse(time.RFC3339Nano, m.Header.Get(HeaderFirstFailedAt))
	return r
}

// headerInt reads a header holding a decimal int >= lo; dflt when absent or unreadable.
func headerInt(h nats.Header, name string, lo, dflt int) int {
	n, err := strconv.Atoi(h.Get(name))
	if err != nil || n < lo {
		return dflt
	}
	return n
}

// Serve subscribes on nc to subject (a retry subject; wildcards allowed)
// in a queue group ([WithQueue]), calls handler for every retry, one at a
// time, and replies its outcome ([EncodeOutcome]) when the retry has a
// reply subject. Serve blocks: it runs until ctx is done, then
// drains the subscription (the retries already delivered are handled and
// answered, for up to 10 s; a handler still running then is waited for)
// and returns nil; or until nc is closed
// (nats.ErrConnectionClosed). A bad subject or a failed subscribe is
// returned at once. Run several Serve calls for handlers in parallel.
func Serve(ctx context.Context, nc *nats.Conn, subject string, handler Handler, opts ...ServeOption) error {
	o := serveOptions{queue: "dlq-workers"}
	for _, opt := range opts {
		opt(&o)
	}
	if nc == nil || handler == nil {
		return errors.New("dlq: Serve: nil connection or handler")
	}
	if !subjectOK(subject, true) {
		return fmt.Errorf("dlq: Serve: %q is not a NATS subject", cut(subject, defaultFieldQuoted))
	}
	if o.queue != "" && (!subjectOK(o.queue, false) || strings.Contains(o.queue, ".")) {
		return fmt.Errorf("dlq: Serve: %q is not a queue group name", cut(o.queue, defaultFieldQuoted))
	}
	hctx := context.WithoutCancel(ctx)
	var busy sync.Mutex // held while the handler runs
	cb := func(m *nats.Msg) {
		busy.Lock()
		defer busy.Unlock()
		r := newRetry(m)
		err := run(func() error { return handler(hctx, r) })
		if m.Reply != "" {
			_ = m.Respond(EncodeOutcome(err)) // a lost reply is a timeout for the sidecar: retried
		}
	}
	closed := nc.StatusChanged(nats.CLOSED)
	defer nc.RemoveStatusListener(closed)
	var sub *nats.Subscription
	var err error
	if o.queue != "" {
		sub, err = nc.QueueSubscribe(subject, o.queue, cb)
	} else {
		sub, err = nc.Subscribe(subject, cb)
	}
	if err != nil {
		return fmt.Errorf("dlq: subscribe %s: %w", subject, err)
	}
	// The subscription is known to the server before a retry can be missed.
	_ = nc.FlushTimeout(5 * time.Second)
	select {
	case <-closed:
		return nats.ErrConnectionClosed
	case <-ctx.Done():
	}
	done := sub.StatusChanged(nats.SubscriptionClosed)
	if sub.Drain() == nil {
		select {
		case <-done:
		case <-closed:
		case <-time.After(10 * time.Second):
			_ = sub.Unsubscribe()
		}
	} else {
		_ = sub.Unsubscribe()
	}
	busy.Lock() // a handler still running finishes first
	busy.Unlock()
	return nil
}
