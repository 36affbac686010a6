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
	// DurableAuto sends Nats-Msg-Id with every report, so that a stream
	// capturing the failure subject (the sidecar's DLQ_FAILED with
	// ingest.mode: jetstream) stores it once and answers with its PubAck;
	// without a stream the sidecar answers. The default.
	DurableAuto Durability = iota
	// DurableAlways publishes through JetStream only, after asking which
	// stream captures the subject: no stream is an error ([ErrNoStream]),
	// never a silent core publish.
	DurableAlways
	// DurableNever sends no Nats-Msg-Id (a stream, if one captures the
	// subject, keeps every resend).
	DurableNever
)

// Errors that Report wraps (test them with errors.Is).
var (
	// ErrNoSidecar: a report that waited found no responders (neither a
	// sidecar nor a stream takes the failure subject). Wraps
	// nats.ErrNoResponders.
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
// acknowledgement: Report returns a nil Ack once nats.go has the message
// (a stream stores it, and de-duplicates it by its Nats-Msg-Id, all the
// same, but nobody confirms it; nc.Flush waits until it left).
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

// streamRecheck is how long a stream lookup of DurableAlways is trusted;
// streamCacheSize bounds the remembered lookups.
const (
	streamRecheck   = 10 * time.Second
	streamCacheSize = 256
)

type streamKey struct {
	nc      *nats.Conn
	subject string
}

var streams = struct {
	sync.Mutex
	seen map[streamKey]time.Time // when a stream was last seen capturing the subject
}{seen: map[streamKey]time.Time{}}

// streamCaptures tells whether a JetStream stream captures subject (asking
// $JS.API.STREAM.NAMES), a yes remembered for streamRecheck per
// connection. No JetStream, or no answer, counts as no stream.
func streamCaptures(ctx context.Context, nc *nats.Conn, subject string) bool {
	key := streamKey{nc, subject}
	now := time.Now()
	streams.Lock()
	at, ok := streams.seen[key]
	streams.Unlock()
	if ok && now.Sub(at) < streamRecheck {
		return true
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	if _, err = js.StreamNameBySubject(ctx, subject); err != nil {
		return false
	}
	streams.Lock()
	if len(streams.seen) >= streamCacheSize {
		streams.seen = map[streamKey]time.Time{}
	}
	streams.seen[key] = now
	streams.Unlock()
	return true
}

// Report checks the failure f and publishes it to the sidecar on
// "<prefix>.failed.<f.Service>" over nc (which must stay connected while
// it runs), with the header Nats-Msg-Id (f.MsgID, else "<task_id>:<failed_at
// or now, in ms>") unless DurableNever.
//
// It waits (unless [WithoutWait]) up to the timeout and ctx's deadline for
// the acknowledgement, and returns it. The report is a request on the
// failure subject, and whoever takes the subject answers: a JetStream
// stream that captures it (the sidecar's DLQ_FAILED with ingest.mode:
// jetstream) with its PubAck (the failure is stored durably, and a resend
// with the same Nats-Msg-Id is stored once), else the sidecar itself (core
// mode). So the durable path needs no JetStream API call, and works for a
// user allowed to publish only <prefix>.failed.> (docs/nats-auth.conf).
// With DurableAlways it first asks JetStream which stream captures the
// subject (a yes is trusted for 10 s; the user needs
// $JS.API.STREAM.NAMES) and publishes through JetStream only.
//
// Errors: an [*EnvelopeError] when f breaks the contract (nothing is
// published; also for a Service that is not subject tokens and an envelope
// larger than the server's max_payload); a [*RefusedError] when the
// sidecar (400 invalid, 503 queue full or store unavailable: resend later)
// or JetStream said no; [ErrNoSidecar] (nobody took the subject) or
// [ErrNoStream]; a timeout (errors.Is nats.ErrTimeout or
// context.DeadlineExceeded: the failure may have arrived, resend it with
// the same TaskID and MsgID, which updates one task); another nats.go
// error. Safe for concurrent use.
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
	if o.durability != DurableNever {
		msg.Header.Set(jetstream.MsgIDHeader, msgID(&f))
	}
	if o.durability == DurableAlways {
		if !streamCaptures(ctx, nc, subject) {
			return nil, fmt.Errorf("%w (%s)", ErrNoStream, subject)
		}
		if o.wait {
			return publishJetStream(ctx, nc, msg)
		}
	}
	if !o.wait {
		if err := nc.PublishMsg(msg); err != nil {
			return nil, fmt.Errorf("dlq: publish: %w", err)
		}
		return nil, nil
	}
	reply, err := nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("%w (%s)", ErrNoSidecar, subject)
		}
		return nil, fmt.Errorf("dlq: request on %s: %w", subject, err)
	}
	return readAck(reply.Data)
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

// publishJetStream publishes msg (with its Nats-Msg-Id) through JetStream and returns the PubAck.
func publishJetStream(ctx context.Context, nc *nats.Conn, msg *nats.Msg) (*Ack, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("dlq: JetStream: %w", err)
	}
	pa, err := js.PublishMsg(ctx, msg)
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

// answer is what answers a report: the sidecar's acknowledgement (DESIGN
// section 3), or a stream's PubAck or JetStream error.
type answer struct {
	OK          *bool    `json:"ok"`
	TaskID      string   `json:"task_id"`
	Status      string   `json:"status"`
	NextRetryAt *string  `json:"next_retry_at"`
	Stored      *bool    `json:"stored"`
	UnknownKeys []string `json:"unknown_keys"`
	Stream      string   `json:"stream"` // a PubAck
	Seq         uint64   `json:"seq"`
	Duplicate   bool     `json:"duplicate"`
	Error       *struct {
		Code        int    `json:"code"`
		Message     string `json:"message"`     // the sidecar's refusal
		ErrCode     int    `json:"err_code"`    // JetStream's
		Description string `json:"description"` // JetStream's
	} `json:"error"`
}

// readAck reads the answer to a report: the sidecar's acknowledgement or
// a PubAck into an Ack, a refusal of either into a *RefusedError.
func readAck(body []byte) (*Ack, error) {
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("dlq: the answer is not a JSON object: %.100q", body)
	}
	switch {
	case a.OK == nil && a.Stream != "" && a.Error == nil:
		return &Ack{Durable: true, Stream: a.Stream, Seq: a.Seq, Duplicate: a.Duplicate}, nil
	case a.OK == nil && a.Error != nil && a.Error.ErrCode != 0:
		return nil, &RefusedError{JetStream: true, Code: a.Error.ErrCode, Message: a.Error.Description}
	case a.OK == nil:
		return nil, fmt.Errorf("dlq: the answer is neither an acknowledgement nor a PubAck: %.100q", body)
	case !*a.OK:
		r := &RefusedError{Message: "(no message)"}
		if a.Error != nil {
			r.Code = a.Error.Code
			if a.Error.Message != "" {
				r.Message = a.Error.Message
			}
		}
		return nil, r
	}
	ack := &Ack{TaskID: a.TaskID, Status: a.Status, Stored: a.Stored, UnknownKeys: a.UnknownKeys}
	if a.NextRetryAt != nil {
		ack.NextRetryAt, _ = time.Parse(time.RFC3339Nano, *a.NextRetryAt)
	}
	return ack, nil
}
