// report.go - a service's side: publish failure envelopes to the sidecar, through JetStream when a stream takes them.

package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Durability says whether reports go through JetStream or core NATS.
type Durability int

const (
	// DurableAuto publishes through JetStream when a stream captures the
	// failure subject (the sidecar's DLQ_FAILED with ingest.mode:
	// jetstream), else on core NATS. The default.
	DurableAuto Durability = iota
	// DurableAlways publishes through JetStream only: no stream is an
	// error ([ErrNoStream]), never a silent core publish.
	DurableAlways
	// DurableNever publishes on core NATS only.
	DurableNever
)

// Errors that Report wraps (test them with errors.Is).
var (
	// ErrNoSidecar: a core report that waited found no responders (no
	// sidecar listens on the failure subject). Wraps nats.ErrNoResponders.
	ErrNoSidecar = fmt.Errorf("dlq: no sidecar listens on the failure subject: %w", nats.ErrNoResponders)
	// ErrNoStream: DurableAlways, and no JetStream stream captures the
	// failure subject.
	ErrNoStream = errors.New("dlq: no JetStream stream captures the failure subject")
)

// RefusedError is the sidecar's or JetStream's "no" to a report: nothing
// was stored. Resend later (503) or fix the envelope (400).
type RefusedError struct {
	// JetStream is true when JetStream refused the publish (Code is then
	// its err_code), false when the sidecar answered.
	JetStream bool
	// Code is the sidecar's error code: 400 (invalid envelope), 503
	// (queue full, store unavailable); or JetStream's err_code.
	Code int
	// Message is the refusal's text ("queue full", "task_id: missing").
	Message string
}

// Error describes the refusal.
func (e *RefusedError) Error() string {
	if e.JetStream {
		return fmt.Sprintf("dlq: JetStream refused the failure (err_code %d): %s", e.Code, e.Message)
	}
	return fmt.Sprintf("dlq: the sidecar refused the failure (%d): %s", e.Code, e.Message)
}

// Ack is what answered a report that waited: JetStream's PubAck when
// Durable, else the sidecar's own acknowledgement (DESIGN section 3).
type Ack struct {
	Durable   bool   // a PubAck: the stream holds the failure until the sidecar takes it
	Stream    string // Durable: the stream ("DLQ_FAILED")
	Seq       uint64 // Durable: the failure's sequence in the stream
	Duplicate bool   // Durable: the stream had this Nats-Msg-Id already

	TaskID      string    // core: the task's id
	Status      string    // core: "pending", "exhausted" or "skipped"
	NextRetryAt time.Time // core: the first retry's time; zero when nothing is scheduled
	// Stored is, with a durable store, whether the sidecar's store has the
	// task (false: held in memory only); nil when the sidecar did not say.
	Stored      *bool
	UnknownKeys []string // core: envelope keys the sidecar did not know
}

type reportOptions struct {
	prefix     string
	durability Durability
	timeout    time.Duration
	wait       bool
}

// Option changes how Report and Protect publish.
type Option func(*reportOptions)

// WithPrefix sets the sidecar's subjects.prefix (default "dlq"):
// failures go to "<prefix>.failed.<service>".
func WithPrefix(prefix string) Option { return func(o *reportOptions) { o.prefix = prefix } }

// WithDurability chooses JetStream or core NATS (default DurableAuto).
func WithDurability(d Durability) Option { return func(o *reportOptions) { o.durability = d } }

// WithTimeout bounds the wait for an acknowledgement and for the stream
// lookup (default 5 s; the context's deadline applies too).
func WithTimeout(d time.Duration) Option { return func(o *reportOptions) { o.timeout = d } }

// WithoutWait publishes and returns without waiting for an
// acknowledgement: Report returns a nil Ack once nats.go has the message.
// Through JetStream it is a plain publish carrying Nats-Msg-Id, which the
// stream stores (and de-duplicates) all the same, but nobody confirms it.
func WithoutWait() Option { return func(o *reportOptions) { o.wait = false } }

func collect(opts []Option) reportOptions {
	o := reportOptions{prefix: "dlq", durability: DurableAuto, timeout: 5 * time.Second, wait: true}
	for _, opt := range opts {
		opt(&o)
	}
	if o.timeout <= 0 {
		o.timeout = 5 * time.Second
	}
	return o
}

// streamRecheck is how long a stream lookup is trusted; streamCacheSize
// bounds the remembered lookups.
const (
	streamRecheck   = 10 * time.Second
	streamCacheSize = 256
)

type streamKey struct {
	nc      *nats.Conn
	subject string
}

type streamSeen struct {
	captured bool
	at       time.Time
}

var streams = struct {
	sync.Mutex
	seen map[streamKey]streamSeen
}{seen: map[streamKey]streamSeen{}}

// streamCaptures tells whether a JetStream stream captures subject,
// remembered for streamRecheck per connection. No JetStream (not enabled,
// not answering) counts as no stream.
func streamCaptures(ctx context.Context, nc *nats.Conn, subject string) bool {
	key := streamKey{nc, subject}
	now := time.Now()
	streams.Lock()
	s, ok := streams.seen[key]
	streams.Unlock()
	if ok && now.Sub(s.at) < streamRecheck {
		return s.captured
	}
	captured := false
	if js, err := jetstream.New(nc); err == nil {
		_, err = js.StreamNameBySubject(ctx, subject)
		captured = err == nil
	}
	streams.Lock()
	if len(streams.seen) >= streamCacheSize {
		for k, v := range streams.seen {
			if now.Sub(v.at) >= streamRecheck || k.nc.IsClosed() {
				delete(streams.seen, k)
			}
		}
		if len(streams.seen) >= streamCacheSize {
			streams.seen = map[streamKey]streamSeen{}
		}
	}
	streams.seen[key] = streamSeen{captured, now}
	streams.Unlock()
	return captured
}

// Report checks the failure f and publishes it to the sidecar on
// "<prefix>.failed.<f.Service>" over nc (which must stay connected while
// it runs).
//
// With DurableAuto (the default) it publishes through JetStream when a
// stream captures that subject (asked once per subject and connection
// every 10 s), with the header Nats-Msg-Id (f.MsgID, else
// "<task_id>:<failed_at or now, in ms>"), so a resend with the same id is
// stored once; else it publishes on core NATS.
//
// It waits (unless [WithoutWait]) up to the timeout and ctx's deadline for
// the acknowledgement, and returns it: the PubAck, or the sidecar's answer
// to the core request.
//
// Errors: an [*EnvelopeError] when f breaks the contract (nothing is
// published; also for a Service that is not subject tokens and an envelope
// larger than the server's max_payload); a [*RefusedError] when the
// sidecar (400 invalid, 503 queue full or store unavailable: resend later)
// or JetStream said no; [ErrNoSidecar] or [ErrNoStream]; a timeout
// (errors.Is nats.ErrTimeout or context.DeadlineExceeded: the failure may
// have arrived, resend it with the same TaskID and MsgID, which updates one
// task); another nats.go error. Safe for concurrent use.
func Report(ctx context.Context, nc *nats.Conn, f Failure, opts ...Option) (*Ack, error) {
	o := collect(opts)
	if nc == nil {
		return nil, errors.New("dlq: Report: nil connection")
	}
	if !subjectOK(o.prefix, false) {
		return nil, fmt.Errorf("dlq: prefix %q is not subject tokens", cut(o.prefix, defaultFieldQuoted))
	}
	subject := o.prefix + ".failed." + f.Service
	if f.Service == "" || !subjectOK(subject, false) {
		return nil, refuse("service", "bad_value", "service: %q is not subject tokens (e.g. \"orders\")", cut(f.Service, defaultFieldQuoted))
	}
	body, err := Encode(f)
	if err != nil {
		return nil, err
	}
	if max := nc.MaxPayload(); max > 0 && int64(len(body)) > max {
		return nil, refuse("envelope", "too_big", "envelope: %d bytes, at most %d (the server's max_payload)", len(body), max)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	msg := nats.NewMsg(subject)
	msg.Data = body
	durable := o.durability == DurableAlways || (o.durability == DurableAuto && streamCaptures(ctx, nc, subject))
	if durable {
		return publishDurable(ctx, nc, msg, msgID(&f), o)
	}
	return publishCore(ctx, nc, msg, o)
}

func msgID(f *Failure) string {
	if f.MsgID != "" {
		return f.MsgID
	}
	at := time.Now()
	if !f.FailedAt.IsZero() {
		at = f.FailedAt
	}
	return f.TaskID + ":" + strconv.FormatInt(at.UnixMilli(), 10)
}

func publishDurable(ctx context.Context, nc *nats.Conn, msg *nats.Msg, id string, o reportOptions) (*Ack, error) {
	if !o.wait {
		msg.Header.Set(jetstream.MsgIDHeader, id)
		if err := nc.PublishMsg(msg); err != nil {
			return nil, fmt.Errorf("dlq: publish: %w", err)
		}
		return nil, nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("dlq: JetStream: %w", err)
	}
	pa, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
	if err != nil {
		var apiErr *jetstream.APIError
		switch {
		case errors.Is(err, jetstream.ErrNoStreamResponse):
			return nil, fmt.Errorf("%w (%s): %w", ErrNoStream, msg.Subject, err)
		case errors.As(err, &apiErr):
			return nil, &RefusedError{JetStream: true, Code: int(apiErr.ErrorCode), Message: apiErr.Description}
		}
		return nil, fmt.Errorf("dlq: JetStream publish: %w", err)
	}
	return &Ack{Durable: true, Stream: pa.Stream, Seq: pa.Sequence, Duplicate: pa.Duplicate}, nil
}

// coreAnswer is the sidecar's answer to a core report (DESIGN section 3).
type coreAnswer struct {
	OK          *bool           `json:"ok"`
	Stream      string          `json:"stream"` // a PubAck: a stream took the core request
	Seq         uint64          `json:"seq"`
	Duplicate   bool            `json:"duplicate"`
	TaskID      string          `json:"task_id"`
	Status      string          `json:"status"`
	NextRetryAt *string         `json:"next_retry_at"`
	Stored      *bool           `json:"stored"`
	UnknownKeys []string        `json:"unknown_keys"`
	Error       json.RawMessage `json:"error"`
}

func publishCore(ctx context.Context, nc *nats.Conn, msg *nats.Msg, o reportOptions) (*Ack, error) {
	if !o.wait {
		if err := nc.PublishMsg(msg); err != nil {
			return nil, fmt.Errorf("dlq: publish: %w", err)
		}
		return nil, nil
	}
	reply, err := nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("%w (%s)", ErrNoSidecar, msg.Subject)
		}
		return nil, fmt.Errorf("dlq: request on %s: %w", msg.Subject, err)
	}
	return readCoreAck(reply.Data)
}

// readCoreAck reads the sidecar's answer into an Ack, or its refusal into a
// *RefusedError. A PubAck (a stream captured the core request) is a durable Ack.
func readCoreAck(body []byte) (*Ack, error) {
	var a coreAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("dlq: the answer is not a JSON object: %.100q", body)
	}
	if a.OK == nil && a.Stream != "" && a.Seq > 0 {
		return &Ack{Durable: true, Stream: a.Stream, Seq: a.Seq, Duplicate: a.Duplicate}, nil
	}
	if a.OK == nil {
		return nil, fmt.Errorf("dlq: the answer has no boolean ok: %.100q", body)
	}
	if !*a.OK {
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(a.Error, &e)
		if e.Message == "" {
			e.Message = "(no message)"
		}
		return nil, &RefusedError{Code: e.Code, Message: e.Message}
	}
	ack := &Ack{TaskID: a.TaskID, Status: a.Status, Stored: a.Stored, UnknownKeys: a.UnknownKeys}
	if a.NextRetryAt != nil {
		ack.NextRetryAt, _ = time.Parse(time.RFC3339Nano, *a.NextRetryAt)
	}
	return ack, nil
}
